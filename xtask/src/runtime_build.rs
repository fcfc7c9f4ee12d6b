//! Build the runtime binary (`runtime/`) against a llama.cpp install prefix: write the prefix's
//! `runtime-info.json` (provenance, the CPU features the build may execute, tuned defaults),
//! run cargo on `runtime/` with `TUNELLAMA_PREFIX` pointing at the prefix in a target dir of this
//! build's own (seeded with the compiled dependencies of earlier builds), copy the binary to
//! `prefix/bin/`, and check that it embeds this build's key. The runtime embeds runtime-info.json
//! at compile time, so the binary knows what it was built for without any file beside it; facts of
//! the machine it runs on (RAM, free VRAM) are read when it runs, never baked in.

use crate::cmd::Cmd;
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const INFO_FILE: &str = "runtime-info.json";
/// `<cache>/runtime-target`: compiled dependencies shared between runtime builds (a seed only:
/// no build writes its binary there).
pub const SHARED_TARGET: &str = "runtime-target";

/// The runtime's file name on this OS.
pub fn binary_name() -> &'static str {
    if cfg!(windows) {
        "tunellama.exe"
    } else {
        "tunellama"
    }
}

/// Where the runtime lives inside a prefix.
pub fn binary_in(prefix: &Path) -> PathBuf {
    prefix.join("bin").join(binary_name())
}

/// `runtime-info.json`: the contract between `setup` and the runtime's build script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub schema: u32,
    pub provenance: Provenance,
    pub compiled_for: CompiledFor,
    pub defaults: Defaults,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub llama_commit: String,
    pub build_number: u64,
    pub tree_digest: String,
    pub pinned: bool,
    pub origin: String,
    pub profile_hash: String,
    pub key: String,
    /// `source` or `prebuilt`.
    pub provenance: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledFor {
    pub target_arch: String,
    /// Lower-case backend names: cpu, cuda, metal, vulkan, hip.
    pub backends: Vec<String>,
    pub ggml_native: bool,
    /// As `is_x86_feature_detected!` spells them; the runtime refuses to start without them.
    pub required_cpu_features: Vec<String>,
    /// The Vulkan device a Vulkan build is for; with `select` the runtime sets
    /// `GGML_VK_VISIBLE_DEVICES` to it before the backend starts (a CPU-type device, which ggml
    /// would otherwise skip, silently computing on the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulkan_device: Option<VulkanChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulkanChoice {
    pub index: u32,
    pub name: String,
    pub device_type: String,
    pub select: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    /// threads, gpu_layers (`all`, `auto` or a number), ctx_size, each with its why.
    #[serde(flatten)]
    pub profile: crate::profile::RuntimeDefaults,
    /// Always `null` since generator version 2: the runtime reads the RAM of the machine it runs
    /// on. Kept (and required by the runtime's schema 1) so older runtimes read newer files.
    pub ram_bytes: Option<u64>,
    // No VRAM figure: `--gpu-layers auto` reads the devices' free memory at run time.
}

/// Everything runtime-info.json says, from the plan's plain data.
pub fn info_for(
    machine: &crate::machine::Machine,
    profile: &crate::profile::Profile,
    tree: &crate::key::SourceId,
    key: &str,
) -> RuntimeInfo {
    let backends = std::iter::once("cpu".to_string())
        .chain(
            profile
                .backends
                .iter()
                .filter(|b| b.chosen && b.name.to_lowercase() != "cpu")
                .map(|b| b.name.to_lowercase()),
        )
        .collect();
    let vulkan_device = profile
        .backends
        .iter()
        .any(|b| b.chosen && b.name == "vulkan")
        .then(|| {
            let v = machine.vulkan.found()?;
            let d = crate::profile::rules::vulkan_target(v, true)?;
            Some(VulkanChoice {
                index: d.index,
                name: d.name.clone(),
                device_type: d.device_type.as_str().to_string(),
                select: !d.device_type.is_gpu(),
            })
        })
        .flatten();
    RuntimeInfo {
        schema: 1,
        provenance: Provenance {
            llama_commit: tree
                .commit
                .clone()
                .unwrap_or_else(|| tree.build_commit.clone()),
            build_number: tree.build_number,
            tree_digest: tree.digest.clone(),
            pinned: tree.pinned,
            origin: tree.origin.clone(),
            profile_hash: profile.hash.clone(),
            key: key.to_string(),
            provenance: "source".into(),
        },
        compiled_for: CompiledFor {
            target_arch: machine.arch.value.clone(),
            backends,
            ggml_native: profile
                .decisions
                .iter()
                .any(|d| d.name == "GGML_NATIVE" && d.value == "ON"),
            required_cpu_features: crate::requirements::required_cpu_features(machine, profile),
            vulkan_device,
        },
        defaults: Defaults {
            profile: profile.runtime.clone(),
            ram_bytes: None,
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeBuildError {
    #[error("building the runtime against {prefix} failed")]
    Cargo {
        prefix: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("cargo finished but left no runtime binary at {0}")]
    Missing(String),
    #[error("the runtime binary {binary} embeds build key {found}, but it was built for {expected}: another build's binary")]
    WrongKey {
        binary: String,
        expected: String,
        found: String,
    },
    #[error("cannot read the runtime sources under {path}: {source}")]
    Source {
        path: String,
        source: std::io::Error,
    },
    #[error("I/O error at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl crate::error::Hint for RuntimeBuildError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RuntimeBuildError::Source { .. } => {
                "run tunellama from a complete checkout (runtime/ must be present)".into()
            }
            RuntimeBuildError::WrongKey { .. } => {
                "nothing was published; run `cargo xtask setup` again (each build compiles in its own target dir; report this if it repeats)".into()
            }
            _ => "the cargo output above names the failing crate; the llama.cpp build was not published".into(),
        })
    }
}

/// sha256 over the runtime's sources (Cargo.toml, Cargo.lock, build.rs, src/): the cache key's
/// `runtime_source`, so a changed runtime is rebuilt (and its llama.cpp libraries reused).
pub fn source_digest(repo_root: &Path) -> Result<String, RuntimeBuildError> {
    let root = repo_root.join("runtime");
    let mut files = Vec::new();
    for top in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        let p = root.join(top);
        if p.exists() {
            files.push(p);
        }
    }
    collect(&root.join("src"), &mut files)?;
    files.sort();
    let mut listing = String::new();
    for f in &files {
        let (sum, _) =
            crate::hashing::sha256_file(f).map_err(|source| RuntimeBuildError::Source {
                path: f.display().to_string(),
                source,
            })?;
        let rel = f.strip_prefix(&root).unwrap_or(f);
        listing.push_str(&format!(
            "{sum}  {}\n",
            rel.to_string_lossy().replace('\\', "/")
        ));
    }
    use sha2::Digest;
    Ok(crate::hashing::hex(&sha2::Sha256::digest(
        listing.as_bytes(),
    )))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RuntimeBuildError> {
    let err = |source| RuntimeBuildError::Source {
        path: dir.display().to_string(),
        source,
    };
    for e in std::fs::read_dir(dir).map_err(err)? {
        let p = e.map_err(err)?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Where a runtime build compiles: its own target dir (`own`, in the build's staging dir, so
/// concurrent builds of different keys never share an output), seeded from `seed` (the compiled
/// dependencies of earlier builds, so each build does not recompile clap and serde).
pub struct TargetDirs {
    pub seed: PathBuf,
    pub own: PathBuf,
}

/// Writes `prefix/runtime-info.json`, builds the runtime in its own target dir, installs it as
/// `prefix/bin/tunellama`, checks that it embeds `info`'s key, and removes the target dir (after
/// refreshing the shared seed with its dependencies).
pub fn build(
    repo_root: &Path,
    prefix: &Path,
    info: &RuntimeInfo,
    dirs: &TargetDirs,
    progress: &dyn Progress,
) -> Result<PathBuf, RuntimeBuildError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| RuntimeBuildError::Io { path, source }
    };
    let info_path = prefix.join(INFO_FILE);
    let text = serde_json::to_string_pretty(info).expect("plain data serializes");
    crate::fsx::write_atomic(&info_path, text.as_bytes()).map_err(io(&info_path))?;

    let target_dir = &dirs.own;
    seed_target_dir(&dirs.seed, target_dir).map_err(io(target_dir))?;
    let started = Instant::now();
    progress.start(
        "building the runtime (cargo)",
        None,
        crate::progress::Unit::Steps,
    );
    let mut crates = 0u64;
    let cmd = Cmd::new(crate::env::cargo())
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(repo_root.join("runtime").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("TUNELLAMA_PREFIX", prefix)
        .timeout(Duration::from_secs(1800));
    let mut lines = Vec::new();
    let code = cmd
        .stream_lines(|line| {
            let l = line.trim();
            if l.starts_with("Compiling ") {
                crates += 1;
                progress.update(crates, None);
            }
            lines.push(line.to_string());
        })
        .map_err(|source| RuntimeBuildError::Cargo {
            prefix: prefix.display().to_string(),
            source: Box::new(source),
        })?;
    progress.finish(&format!(
        "runtime built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    if code != Some(0) {
        let output = lines.join("\n");
        return Err(RuntimeBuildError::Cargo {
            prefix: prefix.display().to_string(),
            source: Box::new(cmd.failed(&crate::cmd::Output {
                status: code,
                stdout: output,
                stderr: String::new(),
            })),
        });
    }
    let built = target_dir.join("release").join(binary_name());
    if !built.is_file() {
        return Err(RuntimeBuildError::Missing(built.display().to_string()));
    }
    let dest = binary_in(prefix);
    let bin_dir = dest.parent().expect("bin/ has a parent");
    fs_err::create_dir_all(bin_dir).map_err(io(bin_dir))?;
    // Copy to a temp name and rename, so a half-copied binary never carries the final name.
    let tmp = bin_dir.join(format!(".{}.tmp", binary_name()));
    fs_err::copy(&built, &tmp).map_err(io(&tmp))?;
    fs_err::rename(&tmp, &dest).map_err(io(&dest))?;
    check_embedded_key(&dest, &info.provenance.key)?;
    refresh_seed(target_dir, &dirs.seed);
    fs_err::remove_dir_all(target_dir).map_err(io(target_dir))?;
    Ok(dest)
}

/// The parts of a target dir that hold compiled dependencies (not the runtime's own outputs).
const SEED_PARTS: &[&str] = &["release/deps", "release/build", "release/.fingerprint"];

/// Copies the seed's compiled dependencies into a fresh `own` target dir. Cargo keeps what is
/// fresh (the registry crates) and rebuilds the runtime and its build script output (its inputs,
/// `TUNELLAMA_PREFIX` and the prefix files, differ per build).
fn seed_target_dir(seed: &Path, own: &Path) -> std::io::Result<()> {
    if own.exists() {
        std::fs::remove_dir_all(own)?;
    }
    std::fs::create_dir_all(own)?;
    let _lock = seed_lock(seed, false)?;
    for part in SEED_PARTS {
        let from = seed.join(part);
        if from.is_dir() {
            copy_keeping_mtimes(&from, &own.join(part))?;
        }
    }
    Ok(())
}

/// Puts a finished build's dependencies back into the seed (best effort: a failure only costs
/// the next build some compile time).
fn refresh_seed(own: &Path, seed: &Path) {
    let Ok(_lock) = seed_lock(seed, true) else {
        return;
    };
    for part in SEED_PARTS {
        let from = own.join(part);
        let to = seed.join(part);
        if from.is_dir() {
            let fresh = to.with_extension(format!("new-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&fresh);
            if copy_keeping_mtimes(&from, &fresh).is_ok() {
                let _ = std::fs::remove_dir_all(&to);
                let _ = std::fs::rename(&fresh, &to);
            } else {
                let _ = std::fs::remove_dir_all(&fresh);
            }
        }
    }
}

/// Copies a tree keeping every file's modification time: cargo decides what is fresh from them
/// (a copy stamped "now" in arbitrary order makes it recompile every dependency).
fn copy_keeping_mtimes(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dest) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_keeping_mtimes(&src, &dest)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dest)?;
            let mtime = e.metadata()?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&dest)?
                .set_modified(mtime)?;
        }
    }
    Ok(())
}

/// A lock on the seed: shared while copying out, exclusive while replacing it.
fn seed_lock(seed: &Path, exclusive: bool) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(seed)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(seed.join(".seed.lock"))?;
    if exclusive {
        f.lock()?;
    } else {
        f.lock_shared()?;
    }
    Ok(f)
}

/// The build key a runtime binary embeds: `tunellama info --json`'s `provenance.key` where the
/// binary runs here, else read from the runtime-info.json embedded in its bytes (a binary for a
/// CPU feature or GPU this machine lacks refuses to start, by design).
pub fn embedded_key(bin: &Path) -> Option<String> {
    let ran = Cmd::new(bin)
        .args(["info", "--json"])
        .timeout(Duration::from_secs(120))
        .output()
        .ok()
        .filter(|o| o.status == Some(0))
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v.pointer("/provenance/key")?.as_str().map(str::to_string));
    ran.or_else(|| key_in_bytes(&std::fs::read(bin).ok()?))
}

/// The `"key": "..."` of the pretty-printed runtime-info.json embedded in a binary.
fn key_in_bytes(bytes: &[u8]) -> Option<String> {
    let needle = b"\"provenance\": {";
    let start = bytes.windows(needle.len()).position(|w| w == needle)?;
    let rest = &bytes[start..(start + 4096).min(bytes.len())];
    let k = b"\"key\": \"";
    let at = rest.windows(k.len()).position(|w| w == k)? + k.len();
    let end = rest[at..].iter().position(|&b| b == b'"')?;
    String::from_utf8(rest[at..at + end].to_vec()).ok()
}

/// Refuses a binary that embeds another build's key.
pub fn check_embedded_key(bin: &Path, expected: &str) -> Result<(), RuntimeBuildError> {
    let found = embedded_key(bin).unwrap_or_else(|| "none (no runtime-info.json found)".into());
    if found != expected {
        return Err(RuntimeBuildError::WrongKey {
            binary: bin.display().to_string(),
            expected: expected.to_string(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_digest_changes_when_a_runtime_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let rt = dir.path().join("runtime");
        std::fs::create_dir_all(rt.join("src/llama")).unwrap();
        std::fs::write(rt.join("Cargo.toml"), "[package]\n").unwrap();
        std::fs::write(rt.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(rt.join("src/llama/mod.rs"), "\n").unwrap();
        let a = source_digest(dir.path()).unwrap();
        assert_eq!(a, source_digest(dir.path()).unwrap());
        std::fs::write(rt.join("src/llama/mod.rs"), "// changed\n").unwrap();
        assert_ne!(a, source_digest(dir.path()).unwrap());
    }
}
