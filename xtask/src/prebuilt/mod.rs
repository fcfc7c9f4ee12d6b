//! Prebuilt binaries: the index of published artifacts, choosing one for a Machine, fetching it
//! through the one download path, and packing/extracting archives safely.
//!
//! `dist` (pack + manifest) and `setup --prebuilt-index` (select → fetch → extract → verify)
//! are thin layers over these modules: [`index`], [`select`], [`archive`], [`manifest`].

pub mod archive;
pub mod index;
pub mod install;
pub mod manifest;
pub mod reference;
pub mod select;

use crate::download::{self, DownloadError, Expected, Sha256Hex};
use crate::machine::Machine;
use crate::profile::cuda::CudaTable;
use crate::profile::Profile;
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use index::{Artifact, Index, LlamaRef};
pub use select::{select, Rejected, Selection};

/// The GPU backend an artifact was built with (`cpu`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }
}

/// What a machine must have to run an artifact. Computed (pure) from the variant's declared
/// Machine and its planned Profile; recorded in the manifest and the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// `std::env::consts::OS` spelling: linux, macos, windows.
    pub os: String,
    /// `std::env::consts::ARCH` spelling: x86_64, aarch64.
    pub arch: String,
    /// CPU features the code may execute, as `is_x86_feature_detected!` spells them; sorted.
    pub cpu_features: Vec<String>,
    /// The GPU backend compiled in.
    pub backend: Backend,
    /// Minimum NVIDIA driver (CUDA builds: the toolkit's minimum, from profiles/cuda.toml).
    pub cuda_driver_min: Option<String>,
    /// CMake CUDA architecture entries: `86` (sm_86 code + compute_86 PTX), `86-real` (code
    /// only), `90-virtual` (PTX only, JIT-compiled by the driver for newer GPUs).
    pub gpu_archs: Vec<String>,
}

impl Requirements {
    /// The requirements of what `profile` builds for `machine`.
    pub fn of(machine: &Machine, profile: &Profile, table: &CudaTable) -> Requirements {
        let chosen = |n: &str| profile.backends.iter().any(|b| b.name == n && b.chosen);
        let backend = if chosen("cuda") {
            Backend::Cuda
        } else if chosen("metal") {
            Backend::Metal
        } else {
            Backend::Cpu
        };
        let (cuda_driver_min, gpu_archs) = if backend == Backend::Cuda {
            let driver = machine
                .cuda
                .found()
                .and_then(|tk| table.toolkit_min_driver(&tk.version))
                .map(|t| t.min_driver.clone());
            let archs = profile
                .decision("CMAKE_CUDA_ARCHITECTURES")
                .map(|v| v.split(';').map(str::to_string).collect())
                .unwrap_or_default();
            (driver, archs)
        } else {
            (None, Vec::new())
        };
        Requirements {
            os: machine.os.value.clone(),
            arch: machine.arch.value.clone(),
            cpu_features: crate::requirements::required_cpu_features(machine, profile),
            backend,
            cuda_driver_min,
            gpu_archs,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrebuiltError {
    #[error("prebuilt {variant}: {url} is not a usable artifact URL: {reason}")]
    BadArtifactUrl {
        variant: String,
        url: String,
        reason: String,
    },
    #[error("prebuilt {variant}: cannot download {url}")]
    Download {
        variant: String,
        url: String,
        #[source]
        source: Box<DownloadError>,
    },
    #[error("prebuilt {variant}: no manifests (*.manifest.json) in {dir}")]
    NoManifests { variant: String, dir: PathBuf },
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("prebuilt {variant}: {path} does not match its manifest: {reason}")]
    Mismatch {
        variant: String,
        path: PathBuf,
        reason: String,
    },
    #[error("prebuilt {variant}: cannot read its manifest {url}: {reason}")]
    ManifestUnavailable {
        variant: String,
        url: String,
        reason: String,
    },
    #[error(
        "prebuilt {variant}: the manifest {url} has sha256 {actual}, the index says {expected}"
    )]
    ManifestChecksum {
        variant: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("prebuilt {variant}: file `{file}` in the archive {what}")]
    TamperedFile {
        variant: String,
        url: String,
        file: String,
        what: String,
    },
}

impl crate::error::Hint for PrebuiltError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PrebuiltError::BadArtifactUrl { .. } => {
                "fix the artifact's url in the index (absolute https:// or relative to the index)"
                    .into()
            }
            PrebuiltError::Download { source, .. } => return source.hint(),
            PrebuiltError::NoManifests { .. } => {
                "point --from at the folder `cargo xtask dist --out` wrote (archives + manifests)"
                    .into()
            }
            PrebuiltError::Manifest { .. } => {
                "regenerate it with `cargo xtask dist --variant NAME`".into()
            }
            PrebuiltError::Mismatch { .. } => {
                "the file changed after `dist` wrote the manifest: rebuild the variant".into()
            }
            PrebuiltError::ManifestUnavailable { .. } => {
                "publish `dist`'s manifest beside the archive (`prebuilt index` reads it from there), or build from source with `setup --from-source`".into()
            }
            PrebuiltError::ManifestChecksum { .. } | PrebuiltError::TamperedFile { .. } => {
                "nothing was installed; do not use this artifact: it is not what `dist` packed. Report it to whoever publishes the index, or build from source with `setup --from-source`".into()
            }
        })
    }
}

/// Downloads `artifact`'s archive into `dest_dir` and verifies size and sha256 (through
/// [`download::download`]: resume, atomic rename). On a mismatch nothing is left in `dest_dir`.
/// Returns the archive's path. `file://` URLs (an index read from a folder) are copied.
pub fn fetch(
    artifact: &Artifact,
    dest_dir: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf, PrebuiltError> {
    fetch_with(artifact, dest_dir, &download::Options::default(), progress)
}

/// [`fetch`] with explicit download options (tests: `allow_http` for 127.0.0.1).
pub fn fetch_with(
    artifact: &Artifact,
    dest_dir: &Path,
    opts: &download::Options,
    progress: &dyn Progress,
) -> Result<PathBuf, PrebuiltError> {
    let bad = |reason: String| PrebuiltError::BadArtifactUrl {
        variant: artifact.variant.clone(),
        url: artifact.url.clone(),
        reason,
    };
    let sha256 = Sha256Hex::parse(&artifact.sha256).map_err(bad)?;
    let url = url::Url::parse(&artifact.url).map_err(|e| bad(e.to_string()))?;
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_string)
        .ok_or_else(|| bad("the URL names no file".into()))?;
    let dest = dest_dir.join(&name);
    let expected = Expected {
        size: artifact.size,
        sha256,
    };
    let wrap = |source: DownloadError| PrebuiltError::Download {
        variant: artifact.variant.clone(),
        url: artifact.url.clone(),
        source: Box::new(source),
    };
    if url.scheme() == "file" {
        let src = url
            .to_file_path()
            .map_err(|_| bad("not a local path".into()))?;
        copy_verified(&src, &dest, &expected, &artifact.url).map_err(wrap)?;
    } else {
        let mut opts = opts.clone();
        opts.label.get_or_insert_with(|| name.clone());
        download::download(&artifact.url, &expected, &dest, &opts, progress).map_err(wrap)?;
    }
    Ok(dest)
}

/// The local-file twin of `download::download`: copy beside the target, verify, rename.
fn copy_verified(
    src: &Path,
    dest: &Path,
    expected: &Expected,
    url: &str,
) -> Result<(), DownloadError> {
    if let Some(dir) = dest.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let part = download::partial_path(dest);
    fs_err::copy(src, &part)?;
    let check = || -> Result<(), DownloadError> {
        let (hex, size) = crate::hashing::sha256_file(&part)?;
        if size != expected.size {
            return Err(DownloadError::WrongSize {
                url: url.to_string(),
                expected: expected.size,
                actual: format!("sent {size}"),
            });
        }
        let actual = Sha256Hex::parse(&hex).expect("sha256 hex");
        if actual != expected.sha256 {
            return Err(DownloadError::Checksum {
                url: url.to_string(),
                expected: expected.sha256.clone(),
                actual,
            });
        }
        Ok(())
    };
    match check() {
        Ok(()) => Ok(fs_err::rename(&part, dest)?),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// `cargo xtask prebuilt ...`.
pub fn run(
    ctx: &crate::context::Ctx,
    args: &PrebuiltArgs,
) -> anyhow::Result<std::process::ExitCode> {
    match &args.command {
        PrebuiltCommand::Index {
            from,
            base_url,
            output,
        } => {
            let manifests = manifest::read_manifests(from)?;
            let index = manifest::build_index(&manifests, base_url.as_deref().unwrap_or(""));
            let mut text = serde_json::to_string_pretty(&index)?;
            text.push('\n');
            match output {
                Some(o) => {
                    crate::fsx::write_atomic(o, text.as_bytes())
                        .map_err(|e| anyhow::Error::new(e).context(o.display().to_string()))?;
                    ctx.info(format!(
                        "wrote {} ({} artifacts)",
                        o.display(),
                        index.artifacts.len()
                    ));
                }
                None => print!("{text}"),
            }
        }
        PrebuiltCommand::Select {
            index,
            machine,
            allow_http,
        } => {
            let opts = download::Options {
                allow_http: *allow_http,
                ..Default::default()
            };
            let idx = Index::load(index, &opts)?;
            let m = ctx.machine(machine.machine.as_deref())?;
            let pin =
                crate::source::pin::Pin::load(&ctx.repo_root.join("profiles/llama.pin.toml"))?;
            let s = select(&idx, &m, &pin.tree.digest);
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                match &s.chosen {
                    Some(a) => println!("chosen: {} ({})", a.variant, a.url),
                    None => println!("no prebuilt fits this machine"),
                }
                for r in &s.rejected {
                    println!("rejected {}:", r.variant);
                    for why in &r.reasons {
                        println!("  - {why}");
                    }
                }
            }
            if s.chosen.is_none() {
                return Ok(std::process::ExitCode::from(1));
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn machine(rel: &str) -> Machine {
        let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
        Machine::from_json_file(Path::new(&path)).unwrap()
    }

    fn reqs(rel: &str) -> Requirements {
        let m = machine(rel);
        let p = crate::profile::plan(&m, &Default::default());
        Requirements::of(&m, &p, &CudaTable::embedded())
    }

    #[test]
    fn cuda_variant_requires_the_toolkits_driver_and_lists_its_architectures() {
        let r = reqs("ci/machines/linux-x86_64-cuda12.json");
        assert_eq!(r.backend, Backend::Cuda);
        assert_eq!(r.cuda_driver_min.as_deref(), Some("550.54.14"));
        assert_eq!(r.gpu_archs, ["75", "80", "86", "89", "90"]);
        assert!(r.cpu_features.contains(&"avx2".to_string()));
    }

    #[test]
    fn metal_variant_is_a_gpu_build_without_cuda_requirements() {
        let r = reqs("ci/machines/macos-arm64-metal.json");
        assert_eq!(r.backend, Backend::Metal);
        assert_eq!((r.os.as_str(), r.arch.as_str()), ("macos", "aarch64"));
        assert_eq!(r.cuda_driver_min, None);
        assert_eq!(r.cpu_features, ["dotprod", "fp16"]);
    }

    #[test]
    fn v4_variant_requires_avx512() {
        let r = reqs("ci/machines/linux-x86_64-v4.json");
        assert_eq!(r.backend, Backend::Cpu);
        assert!(r.cpu_features.contains(&"avx512f".to_string()));
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct PrebuiltArgs {
    #[command(subcommand)]
    pub command: PrebuiltCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PrebuiltCommand {
    /// Build the prebuilt index from the manifests (and archives) `dist` wrote into DIR
    Index {
        /// Folder with `*.manifest.json` and the archives they name
        #[arg(long, value_name = "DIR")]
        from: std::path::PathBuf,
        /// URL the archives will be published under [default: none: URLs relative to the index]
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Write the index to FILE (atomically) instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Which artifact of an index fits this machine, and why each other one does not
    Select {
        /// The index: a path or an https:// URL
        #[arg(long, value_name = "PATH|URL")]
        index: String,
        #[command(flatten)]
        machine: crate::machine::MachineArg,
        /// Accept plain http:// URLs
        #[arg(long)]
        allow_http: bool,
    },
}
