//! The pin: the checked-in description of the llama.cpp tree we build (`profiles/llama.pin.toml`),
//! loaded strictly (unknown keys and malformed values are errors with file:line:column) and
//! rendered back by `cargo xtask pin`.

use super::digest::is_sha256_hex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped when the pin's shape changes incompatibly.
pub const PIN_SCHEMA: u32 = 1;
/// Where the pin lives, relative to the repository root.
pub const PIN_PATH: &str = "profiles/llama.pin.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub schema: u32,
    pub upstream: Upstream,
    pub build: BuildInfo,
    pub tree: TreePin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryPin>,
}

/// Where the tree comes from upstream and what it calls itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub repository: String,
    /// Full 40-hex commit id; `None` when not known (the crate does not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Release tag (`b6123`) when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub ggml_version: String,
    pub llama_version: String,
}

/// Passed to CMake as `LLAMA_BUILD_NUMBER` / `LLAMA_BUILD_COMMIT` (the tree has no `.git`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    pub number: u64,
    pub commit: String,
}

/// The identity of the tree: which paths are build inputs, and their digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreePin {
    /// Files and folders (relative to the tree root) hashed into the digest.
    pub inputs: Vec<String>,
    /// sha256 (lowercase hex) of the manifest lines; see `docs/pin.md`.
    pub digest: String,
    /// The per-file manifest, relative to the pin file (used to name differing paths).
    pub files: String,
}

/// The crate that ships the tree, for the registry transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryPin {
    #[serde(rename = "crate")]
    pub crate_name: String,
    /// Exact version (requested as `=<version>`).
    pub version: String,
    /// The folder inside the crate that holds the llama.cpp tree.
    pub subfolder: String,
    /// sha256 of the `.crate` file, as cargo records it in `Cargo.lock`.
    pub checksum: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot read the pin {path}: {source}")]
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
    #[error("{path}: pin schema {found} is not supported (this tool reads schema {PIN_SCHEMA})")]
    Schema { path: PathBuf, found: u32 },
    #[error("{path}: `{field}` {problem}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },
}

impl crate::error::Hint for PinError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PinError::Read { .. } => format!(
                "the pin is checked in at {PIN_PATH}; pass another with --pin FILE, or make one with `cargo xtask pin --tree DIR --write`"
            ),
            _ => "fix the pin by hand, or regenerate it with `cargo xtask pin --tree DIR --write` and review the diff".into(),
        })
    }
}

impl Pin {
    pub fn load(path: &Path) -> Result<Pin, PinError> {
        let text = std::fs::read_to_string(path).map_err(|source| PinError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Pin::from_toml_str(&text, path)
    }

    pub fn from_toml_str(text: &str, path: &Path) -> Result<Pin, PinError> {
        let pin: Pin = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            PinError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        if pin.schema != PIN_SCHEMA {
            return Err(PinError::Schema {
                path: path.to_path_buf(),
                found: pin.schema,
            });
        }
        pin.validate(path)?;
        Ok(pin)
    }

    fn validate(&self, path: &Path) -> Result<(), PinError> {
        let bad = |field, problem: &str| PinError::Invalid {
            path: path.to_path_buf(),
            field,
            problem: problem.to_string(),
        };
        if !is_sha256_hex(&self.tree.digest) {
            return Err(bad("tree.digest", "must be 64 lowercase hex digits"));
        }
        if self.tree.inputs.is_empty() {
            return Err(bad("tree.inputs", "must name at least one path"));
        }
        for i in &self.tree.inputs {
            let p = Path::new(i);
            if i.is_empty()
                || i.contains('\\')
                || p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad(
                    "tree.inputs",
                    "entries must be plain relative paths with `/` separators",
                ));
            }
        }
        if let Some(c) = &self.upstream.commit {
            if c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("upstream.commit", "must be a full 40-hex commit id"));
            }
        }
        if let Some(r) = &self.registry {
            if !is_sha256_hex(&r.checksum) {
                return Err(bad("registry.checksum", "must be 64 lowercase hex digits"));
            }
            if r.version.starts_with('=') || r.version.is_empty() {
                return Err(bad(
                    "registry.version",
                    "must be a plain exact version like `0.1.161`",
                ));
            }
        }
        Ok(())
    }

    /// The per-file manifest named by `tree.files`, resolved against the pin's own folder.
    pub fn manifest_path(&self, pin_path: &Path) -> PathBuf {
        pin_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.tree.files)
    }

    /// The pin as checked-in TOML, with comments saying what each part is for.
    pub fn render(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut o = String::new();
        o.push_str("# generated by `cargo xtask pin --write`, do not edit by hand; review changes like code.\n# The pinned llama.cpp tree.\n");
        o.push_str("# The tree digest, not the transport, makes a tree \"the pinned one\" (docs/pin.md).\n");
        o.push_str(&format!("schema = {}\n\n[upstream]\n", self.schema));
        o.push_str(&format!("repository = {}\n", q(&self.upstream.repository)));
        match &self.upstream.commit {
            Some(c) => o.push_str(&format!("commit = {}\n", q(c))),
            None => o.push_str(
                "# commit: unknown. The crate this tree comes from does not record the upstream commit,\n\
                 # so the git transport needs `--rev` and the digest below is the tree's identity.\n",
            ),
        }
        if let Some(t) = &self.upstream.tag {
            o.push_str(&format!("tag = {}\n", q(t)));
        }
        o.push_str("# Read from the tree's CMakeLists.txt (GGML_VERSION_*, LLAMA_VERSION_* + LLAMA_BUILD_IS_DEV).\n");
        o.push_str(&format!(
            "ggml_version = {}\n",
            q(&self.upstream.ggml_version)
        ));
        o.push_str(&format!(
            "llama_version = {}\n",
            q(&self.upstream.llama_version)
        ));
        o.push_str("\n# Passed to CMake as LLAMA_BUILD_NUMBER / LLAMA_BUILD_COMMIT (the tree has no .git).\n[build]\n");
        o.push_str(&format!("number = {}\n", self.build.number));
        o.push_str(&format!("commit = {}\n", q(&self.build.commit)));
        o.push_str("\n# Build inputs of a library-only build and their digest (docs/pin.md).\n[tree]\ninputs = [");
        let inputs: Vec<String> = self.tree.inputs.iter().map(|i| q(i)).collect();
        o.push_str(&inputs.join(", "));
        o.push_str("]\n");
        o.push_str(&format!("digest = {}\n", q(&self.tree.digest)));
        o.push_str(
            "# Per-file sha256 of the inputs (sha256sum format), to name the paths that differ.\n",
        );
        o.push_str(&format!("files = {}\n", q(&self.tree.files)));
        if let Some(r) = &self.registry {
            o.push_str("\n# The registry transport (default): the crate that ships this tree.\n[registry]\n");
            o.push_str(&format!("crate = {}\n", q(&r.crate_name)));
            o.push_str(&format!("version = {}\n", q(&r.version)));
            o.push_str(&format!("subfolder = {}\n", q(&r.subfolder)));
            o.push_str("# sha256 of the .crate file, as cargo records it in Cargo.lock.\n");
            o.push_str(&format!("checksum = {}\n", q(&r.checksum)));
        }
        o
    }
}

use crate::hashing::line_col;

/// `(ggml_version, llama_version)` read from a tree's CMake files, as CMake would compute them.
pub fn versions_from_tree(root: &Path) -> Option<(String, String)> {
    let top = std::fs::read_to_string(root.join("CMakeLists.txt")).ok()?;
    let ggml = std::fs::read_to_string(root.join("ggml/CMakeLists.txt")).ok()?;
    Some((ggml_version(&ggml)?, llama_version(&top)?))
}

fn cmake_set(text: &str, var: &str) -> Option<String> {
    let prefix = format!("set({var} ");
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            rest.trim_end_matches(')')
                .trim()
                .trim_matches('"')
                .to_string()
        })
}

fn triple(text: &str, stem: &str) -> Option<String> {
    let part = |p| cmake_set(text, &format!("{stem}_VERSION_{p}"));
    Some(format!(
        "{}.{}.{}",
        part("MAJOR")?,
        part("MINOR")?,
        part("PATCH")?
    ))
}

pub fn ggml_version(ggml_cmakelists: &str) -> Option<String> {
    triple(ggml_cmakelists, "GGML")
}

/// `X.Y.Z-dev` when `LLAMA_BUILD_IS_DEV` defaults to ON, as in upstream's top CMakeLists.txt.
pub fn llama_version(top_cmakelists: &str) -> Option<String> {
    let base = triple(top_cmakelists, "LLAMA")?;
    let dev = top_cmakelists
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("option(LLAMA_BUILD_IS_DEV "))
        .is_some_and(|l| l.trim_end_matches(')').trim_end().ends_with("ON"));
    Some(if dev { format!("{base}-dev") } else { base })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
schema = 1
[upstream]
repository = "https://example.invalid/llama.cpp"
ggml_version = "0.26.0"
llama_version = "0.6.0-dev"
[build]
number = 0
commit = "unknown"
[tree]
inputs = ["CMakeLists.txt", "ggml"]
digest = "0000000000000000000000000000000000000000000000000000000000000000"
files = "llama.pin.files"
"#;

    #[test]
    fn pin_renders_and_loads_back_identically() {
        let pin = Pin::from_toml_str(GOOD, Path::new("p.toml")).unwrap();
        let again = Pin::from_toml_str(&pin.render(), Path::new("p.toml")).unwrap();
        assert_eq!(pin, again);
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let text = GOOD.replace("[build]\n", "[build]\nnumbr = 3\n");
        let e = Pin::from_toml_str(&text, Path::new("p.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("p.toml:8:1:"), "{msg}");
        assert!(msg.contains("numbr"), "{msg}");
    }

    #[test]
    fn malformed_digest_and_commit_are_refused() {
        let text = GOOD.replace("\"000000", "\"ZZ0000");
        let e = Pin::from_toml_str(&text, Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("tree.digest"), "{e}");
        let text = GOOD.replace("ggml_version", "commit = \"abc\"\nggml_version");
        let e = Pin::from_toml_str(&text, Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("upstream.commit"), "{e}");
        let text = GOOD.replace("\"ggml\"]", "\"../ggml\"]");
        assert!(Pin::from_toml_str(&text, Path::new("p.toml")).is_err());
    }

    #[test]
    fn versions_are_read_like_cmake_computes_them() {
        let top = "set(LLAMA_VERSION_MAJOR 0)\nset(LLAMA_VERSION_MINOR 6)\nset(LLAMA_VERSION_PATCH 0)\noption(LLAMA_BUILD_IS_DEV \"llama: dev build\" ON)\n";
        assert_eq!(llama_version(top).unwrap(), "0.6.0-dev");
        let rel = top.replace("\" ON)", "\" OFF)");
        assert_eq!(llama_version(&rel).unwrap(), "0.6.0");
        let g =
            "set(GGML_VERSION_MAJOR 0)\nset(GGML_VERSION_MINOR 26)\nset(GGML_VERSION_PATCH 0)\n";
        assert_eq!(ggml_version(g).unwrap(), "0.26.0");
    }

    #[test]
    fn checked_in_pin_loads_and_matches_its_manifest() {
        let path = crate::env::repo_root().join(PIN_PATH);
        let pin = Pin::load(&path).unwrap();
        let mpath = pin.manifest_path(&path);
        let text = std::fs::read_to_string(&mpath).unwrap();
        let m = super::super::digest::Manifest::parse(&text, &mpath).unwrap();
        assert_eq!(
            m.digest(),
            pin.tree.digest,
            "{} is stale: regenerate with `cargo xtask pin --tree DIR --write`",
            mpath.display()
        );
        assert!(text.len() < 1_000_000, "manifest grew past 1 MB");
        assert!(text.starts_with("# generated by `cargo xtask pin"));
        let on_disk = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            on_disk,
            pin.render(),
            "{} is not in the form `cargo xtask pin --write` writes; regenerate it",
            path.display()
        );
    }
}
