//! The prebuilt matrix `ci/matrix.toml`: variants, each a runner, a Rust target and a declared
//! Machine in `ci/machines/<name>.json`; loading validates it and computes each variant's
//! requirements (pure) from the Machine and its planned profile.

use crate::machine::{Machine, Origin};
use crate::prebuilt::Requirements;
use crate::profile::cuda::CudaTable;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MATRIX_PATH: &str = "ci/matrix.toml";
pub const MACHINES_DIR: &str = "ci/machines";
pub const MATRIX_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveFormat {
    /// gzip-compressed tar (Windows 10+ ships `tar` too, so one format serves every variant).
    #[serde(rename = "tar.gz")]
    TarGz,
}

impl ArchiveFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
        }
    }
}

/// One row of `ci/matrix.toml` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDecl {
    pub name: String,
    /// The CI runner label (`ubuntu-24.04`, `macos-14`, ...).
    pub runner: String,
    /// Rust target triple.
    pub target: String,
    pub archive: ArchiveFormat,
    /// CUDA variants: the full toolkit release CI installs (`12.4.1`); must start with the
    /// Machine's `cuda.version`.
    #[serde(default)]
    pub cuda_installer: Option<String>,
    /// How much of this variant a machine without its hardware proves (see [`Status`]).
    pub status: Status,
    /// What proves it (a test or a documented command with its recorded run), or, for an
    /// experimental variant, why it is not proven.
    pub proof: String,
}

/// How far a variant is proven by this repository, on a Linux x86-64 machine with no GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Built, and its runtime verified (logits vs the portable build) on such a machine.
    Verified,
    /// Built with a cross compiler; its C verification program runs under emulation.
    Emulated,
    /// Compiled and linked for real; not run on its hardware.
    Compiled,
    /// Not proven here: published for trial only, with the reason in `proof`.
    Experimental,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Verified => "verified",
            Status::Emulated => "emulated",
            Status::Compiled => "compiled",
            Status::Experimental => "experimental",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    schema: u32,
    variant: Vec<toml::Spanned<VariantDecl>>,
}

/// Reads a variant's Machine by name; returns its repository-relative path too.
pub type MachineLookup<'a> =
    dyn Fn(&str) -> (String, Result<Machine, crate::machine::MachineFileError>) + 'a;

/// A validated variant with its Machine and computed requirements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub name: String,
    pub runner: String,
    pub target: String,
    pub archive: ArchiveFormat,
    pub cuda_installer: Option<String>,
    pub status: Status,
    pub proof: String,
    /// Repository-relative path of the declared Machine.
    pub machine_file: String,
    #[serde(skip)]
    pub machine: Machine,
    pub requirements: Requirements,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    pub variants: Vec<Variant>,
}

/// One entry of the GitHub Actions `strategy.matrix.include` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncludeEntry {
    pub name: String,
    pub runner: String,
    pub target: String,
    pub archive: String,
    /// Full CUDA release to install, or "" (so `if: matrix.cuda != ''` works).
    pub cuda: String,
    pub os: String,
    pub arch: String,
    /// `verified`, `emulated`, `compiled` or `experimental` (see `ci/matrix.toml`).
    pub status: String,
}

/// `ci matrix --json`: what a workflow's `matrix:` consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncludeMatrix {
    pub include: Vec<IncludeEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}:{column}: variant `{name}`: {message}")]
    Variant {
        path: PathBuf,
        line: usize,
        column: usize,
        name: String,
        message: String,
    },
    #[error("variant `{name}`: machine file {machine_file}")]
    Machine {
        name: String,
        machine_file: String,
        #[source]
        source: crate::machine::MachineFileError,
    },
    #[error("unknown variant `{name}`; the matrix has: {}", known.join(", "))]
    UnknownVariant { name: String, known: Vec<String> },
}

impl crate::error::Hint for MatrixError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            MatrixError::UnknownVariant { .. } => "`cargo xtask ci matrix` lists the variants".into(),
            MatrixError::Machine { .. } => format!(
                "each variant needs a declared Machine in {MACHINES_DIR}/<name>.json (origin \"declared\", name = the variant)"
            ),
            _ => format!("fix {MATRIX_PATH}; each [[variant]] has name, runner, target, archive = \"tar.gz\" and optionally cuda_installer"),
        })
    }
}

fn is_valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The target triple's OS and arch in `std::env::consts` spelling.
fn triple_os_arch(target: &str) -> Option<(&'static str, &'static str)> {
    if target == "wasm32-unknown-emscripten" {
        return Some(("emscripten", "wasm32"));
    }
    let arch = match target.split('-').next()? {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        _ => return None,
    };
    let os = if target.contains("-linux-") {
        "linux"
    } else if target.ends_with("-apple-darwin") {
        "macos"
    } else if target.contains("-windows-") {
        "windows"
    } else {
        return None;
    };
    Some((os, arch))
}

impl Matrix {
    /// `ci/matrix.toml` of this checkout.
    pub fn load_checked_in() -> Result<Matrix, MatrixError> {
        Matrix::load(&crate::env::repo_root())
    }

    /// Loads and validates `<root>/ci/matrix.toml` and the Machines it names.
    pub fn load(root: &Path) -> Result<Matrix, MatrixError> {
        let path = root.join(MATRIX_PATH);
        let text = fs_err::read_to_string(&path).map_err(|e| MatrixError::Read {
            path: path.clone(),
            source: e,
        })?;
        Matrix::parse(&text, Path::new(MATRIX_PATH), &|name| {
            let rel = format!("{MACHINES_DIR}/{name}.json");
            let m = Machine::from_json_file(&root.join(&rel));
            (rel, m)
        })
    }

    /// Parses matrix text; `machine_for(name)` reads a variant's Machine (and names its file).
    pub fn parse(
        text: &str,
        path: &Path,
        machine_for: &MachineLookup<'_>,
    ) -> Result<Matrix, MatrixError> {
        let at = |span: Option<std::ops::Range<usize>>| {
            crate::hashing::line_col(text, span.map(|s| s.start).unwrap_or(0))
        };
        let file: MatrixFile = toml::from_str(text).map_err(|e| {
            let (line, column) = at(e.span());
            MatrixError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        if file.schema != MATRIX_SCHEMA {
            return Err(MatrixError::Parse {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!(
                    "matrix schema {} is not supported (this tool reads {MATRIX_SCHEMA})",
                    file.schema
                ),
            });
        }
        let table = CudaTable::embedded();
        let mut variants: Vec<Variant> = Vec::new();
        for spanned in &file.variant {
            let (line, column) = at(Some(spanned.span()));
            let decl = spanned.get_ref();
            let fail = |message: String| MatrixError::Variant {
                path: path.to_path_buf(),
                line,
                column,
                name: decl.name.clone(),
                message,
            };
            if !is_valid_name(&decl.name) {
                return Err(fail(
                    "names are lowercase letters, digits, `-` and `_`".into(),
                ));
            }
            if variants.iter().any(|v| v.name == decl.name) {
                return Err(fail("the name appears twice".into()));
            }
            let (machine_file, machine) = machine_for(&decl.name);
            let machine = machine.map_err(|source| MatrixError::Machine {
                name: decl.name.clone(),
                machine_file: machine_file.clone(),
                source,
            })?;
            if machine.origin != Origin::Declared {
                return Err(fail(format!(
                    "{machine_file} must be a declared machine (origin \"declared\"), not a probed one"
                )));
            }
            if machine.name.as_deref() != Some(decl.name.as_str()) {
                return Err(fail(format!(
                    "{machine_file} is named {:?}; it must be named like the variant",
                    machine.name
                )));
            }
            let runner = super::runners::find(&decl.runner).map_err(&fail)?;
            if decl.proof.trim().is_empty() {
                return Err(fail(format!(
                    "`proof` is empty: say what proves a `{}` variant (a test or a documented command), or why it is experimental",
                    decl.status.as_str()
                )));
            }
            let Some((os, arch)) = triple_os_arch(&decl.target) else {
                return Err(fail(format!(
                    "target `{}` is not a supported triple (x86_64/aarch64 on linux, apple-darwin or windows; wasm32-unknown-emscripten)",
                    decl.target
                )));
            };
            // WebAssembly is cross-built with Emscripten on a Linux runner (docs/wasm.md).
            let wasm_on_linux = os == "emscripten" && runner.os == "linux";
            if os == "emscripten" && !wasm_on_linux {
                return Err(fail(format!(
                    "runner {} is {} {}: a wasm32 variant is cross-built with Emscripten on a Linux runner",
                    runner.name, runner.os, runner.arch
                )));
            }
            if !wasm_on_linux && (os, arch) != (runner.os.as_str(), runner.arch.as_str()) {
                return Err(fail(format!(
                    "runner {} is {} {}, but target {} is {os} {arch}: each variant builds natively on its runner",
                    runner.name, runner.os, runner.arch, decl.target
                )));
            }
            if (os, arch) != (machine.os.value.as_str(), machine.arch.value.as_str()) {
                return Err(fail(format!(
                    "target {} is {os} {arch}, but {machine_file} declares {} {}",
                    decl.target, machine.os.value, machine.arch.value
                )));
            }
            let toolkit = machine.cuda.found().map(|c| c.version.clone());
            match (&decl.cuda_installer, &toolkit) {
                (Some(i), Some(tk)) if i == tk || i.starts_with(&format!("{tk}.")) => {}
                (Some(i), Some(tk)) => {
                    return Err(fail(format!(
                        "cuda_installer {i} is not a release of CUDA {tk} ({machine_file})"
                    )))
                }
                (Some(_), None) => {
                    return Err(fail(format!(
                        "cuda_installer is set but {machine_file} declares no CUDA toolkit"
                    )))
                }
                (None, Some(tk)) => {
                    return Err(fail(format!(
                        "{machine_file} declares CUDA {tk}: set cuda_installer to the release CI installs"
                    )))
                }
                (None, None) => {}
            }
            let profile = crate::profile::plan(&machine, &Default::default());
            let requirements = Requirements::of(&machine, &profile, &table);
            if toolkit.is_some() && requirements.backend != crate::prebuilt::Backend::Cuda {
                return Err(fail(format!(
                    "{machine_file} declares CUDA but its profile does not build CUDA: {}",
                    profile
                        .backends
                        .iter()
                        .find(|b| b.name == "cuda")
                        .map(|b| b.why.as_str())
                        .unwrap_or("?")
                )));
            }
            variants.push(Variant {
                name: decl.name.clone(),
                runner: decl.runner.clone(),
                target: decl.target.clone(),
                archive: decl.archive,
                cuda_installer: decl.cuda_installer.clone(),
                status: decl.status,
                proof: decl.proof.trim().to_string(),
                machine_file,
                machine,
                requirements,
            });
        }
        if variants.is_empty() {
            return Err(MatrixError::Parse {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: "no [[variant]]".into(),
            });
        }
        Ok(Matrix { variants })
    }

    pub fn variant(&self, name: &str) -> Result<&Variant, MatrixError> {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| MatrixError::UnknownVariant {
                name: name.to_string(),
                known: self.variants.iter().map(|v| v.name.clone()).collect(),
            })
    }

    /// The `{"include": [...]}` object for a GitHub Actions matrix.
    pub fn include(&self) -> IncludeMatrix {
        IncludeMatrix {
            include: self
                .variants
                .iter()
                .map(|v| IncludeEntry {
                    name: v.name.clone(),
                    runner: v.runner.clone(),
                    target: v.target.clone(),
                    archive: v.archive.as_str().to_string(),
                    cuda: v.cuda_installer.clone().unwrap_or_default(),
                    os: v.requirements.os.clone(),
                    arch: v.requirements.arch.clone(),
                    status: v.status.as_str().to_string(),
                })
                .collect(),
        }
    }

    /// One line per variant for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for v in &self.variants {
            let r = &v.requirements;
            let gpu = match (&r.cuda_driver_min, r.backend) {
                (Some(d), _) => format!("; CUDA archs {} (driver ≥ {d})", r.gpu_archs.join(";")),
                (None, crate::prebuilt::Backend::Metal) => "; Metal".into(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{:<24} {:<13} {:<18} {:<26} {} {}; cpu [{}]{gpu}\n",
                v.name,
                v.status.as_str(),
                v.runner,
                v.target,
                r.os,
                r.arch,
                r.cpu_features.join(" ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn parse(text: &str) -> Result<Matrix, MatrixError> {
        let r = root();
        Matrix::parse(text, Path::new("m.toml"), &|name| {
            let rel = format!("{MACHINES_DIR}/{name}.json");
            (rel.clone(), Machine::from_json_file(&r.join(&rel)))
        })
    }

    const V3: &str = "[[variant]]\nname = \"linux-x86_64-v3\"\nrunner = \"ubuntu-24.04\"\ntarget = \"x86_64-unknown-linux-gnu\"\narchive = \"tar.gz\"\nstatus = \"verified\"\nproof = \"t\"\n";

    #[test]
    fn checked_in_matrix_loads_with_the_expected_variants() {
        let m = Matrix::load(&root()).unwrap();
        let names: Vec<_> = m.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-x86_64-v2",
                "linux-x86_64-v3",
                "linux-x86_64-v4",
                "linux-x86_64-cuda12",
                "linux-arm64",
                "linux-arm64-v82",
                "macos-arm64-metal",
                "windows-x86_64",
                "windows-x86_64-cuda12",
                "wasm32-emscripten"
            ]
        );
        let wasm = m.variant("wasm32-emscripten").unwrap();
        assert_eq!(wasm.requirements.cpu_features, ["simd128"]);
        assert_eq!(wasm.runner, "ubuntu-24.04");
        let v2 = m.variant("linux-x86_64-v2").unwrap();
        assert_eq!(v2.requirements.cpu_features, ["sse4.2"]);
        let win = m.variant("windows-x86_64-cuda12").unwrap();
        assert_eq!(win.requirements.gpu_archs, ["75", "80", "86", "89", "90"]);
    }

    #[test]
    fn a_wasm_variant_is_cross_built_on_a_linux_runner_only() {
        let ok = "schema = 1\n[[variant]]\nname = \"wasm32-emscripten\"\nrunner = \"ubuntu-24.04\"\ntarget = \"wasm32-unknown-emscripten\"\narchive = \"tar.gz\"\nstatus = \"emulated\"\nproof = \"t\"\n";
        let m = parse(ok).unwrap();
        assert_eq!(m.variants[0].requirements.arch, "wasm32");
        let e = parse(&ok.replace("ubuntu-24.04", "macos-15")).unwrap_err();
        assert!(e.to_string().contains("on a Linux runner"), "{e}");
    }

    #[test]
    fn bad_toml_is_reported_with_line_and_column() {
        let e = parse("schema = 1\n[[variant]]\nname = \n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("m.toml:3:"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_reported_with_their_position() {
        let e = parse(&format!("schema = 1\n{V3}runnr = \"x\"\n")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("m.toml:9:1:") && msg.contains("runnr"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_names_are_refused_at_the_second() {
        let e = parse(&format!("schema = 1\n{V3}\n{V3}")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("m.toml:10:"), "{msg}");
        assert!(msg.contains("appears twice"), "{msg}");
    }

    #[test]
    fn variant_without_a_machine_file_names_the_file() {
        let text = V3.replace("linux-x86_64-v3", "linux-x86_64-v9");
        let e = parse(&format!("schema = 1\n{text}")).unwrap_err();
        assert!(
            e.to_string().contains("ci/machines/linux-x86_64-v9.json"),
            "{e}"
        );
    }

    #[test]
    fn target_must_agree_with_the_machine() {
        let text = V3
            .replace("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu")
            .replace("\"ubuntu-24.04\"", "\"ubuntu-24.04-arm\"");
        let e = parse(&format!("schema = 1\n{text}")).unwrap_err();
        assert!(e.to_string().contains("declares linux x86_64"), "{e}");
    }

    #[test]
    fn a_runner_label_typo_fails_when_the_matrix_loads() {
        let text = V3.replace("\"ubuntu-24.04\"", "\"ubuntu-24.4\"");
        let e = parse(&format!("schema = 1\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.toml:2:"), "{e}");
        assert!(
            e.contains("`ubuntu-24.4` is not a known GitHub-hosted runner label"),
            "{e}"
        );
        assert!(e.contains("did you mean `ubuntu-24.04`?"), "{e}");
    }

    #[test]
    fn a_runner_of_another_os_or_cpu_is_refused() {
        let text = V3.replace("\"ubuntu-24.04\"", "\"ubuntu-24.04-arm\"");
        let e = parse(&format!("schema = 1\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("runner ubuntu-24.04-arm is linux aarch64"),
            "{e}"
        );
    }

    #[test]
    fn status_and_proof_are_required() {
        let text = V3.replace("proof = \"t\"\n", "");
        let e = parse(&format!("schema = 1\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("proof"), "{e}");
        let text = V3.replace("proof = \"t\"", "proof = \" \"");
        let e = parse(&format!("schema = 1\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`proof` is empty"), "{e}");
        let text = V3.replace("\"verified\"", "\"probably\"");
        assert!(parse(&format!("schema = 1\n{text}")).is_err());
    }

    #[test]
    fn every_test_a_proof_names_exists() {
        let m = Matrix::load(&root()).unwrap();
        for v in &m.variants {
            for word in v.proof.split_whitespace() {
                let w = word.trim_matches(|c: char| "`,.;:()".contains(c));
                if w.starts_with("tests/") || w.starts_with("docs/") {
                    assert!(root().join(w).is_file(), "{}: {w} does not exist", v.name);
                }
            }
            if v.status == Status::Experimental {
                assert!(v.proof.len() > 20, "{}: say why it is experimental", v.name);
            }
        }
    }

    #[test]
    fn the_arm64_variants_build_exactly_what_the_arm64_test_proves() {
        // tests/arm64_qemu.rs cross-builds these fixtures; the variants' proof rests on their
        // profiles (and so their build keys) being the same.
        let m = Matrix::load(&root()).unwrap();
        for (variant, fixture) in [
            ("linux-arm64", "declared-linux-arm64-armv8.json"),
            ("linux-arm64-v82", "declared-linux-arm64-v82-dotprod.json"),
        ] {
            let v = m.variant(variant).unwrap();
            let f = Machine::from_json_file(&root().join("tests/fixtures/machines").join(fixture))
                .unwrap();
            let a = crate::profile::plan(&v.machine, &Default::default());
            let b = crate::profile::plan(&f, &Default::default());
            assert_eq!(a.hash, b.hash, "{variant} vs {fixture}");
        }
    }

    #[test]
    fn unknown_variant_lists_the_known_ones() {
        let m = parse(&format!("schema = 1\n{V3}")).unwrap();
        let e = m.variant("nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("linux-x86_64-v3"), "{e}");
    }

    #[test]
    fn include_json_is_what_an_actions_matrix_consumes() {
        let m = Matrix::load(&root()).unwrap();
        let v = serde_json::to_value(m.include()).unwrap();
        let cuda = &v["include"][3];
        assert_eq!(cuda["name"], "linux-x86_64-cuda12");
        assert_eq!(cuda["runner"], "ubuntu-24.04");
        assert_eq!(cuda["cuda"], "12.4.1");
        assert_eq!(v["include"][0]["cuda"], "");
    }
}
