//! A CUDA toolkit from NVIDIA's Python wheels, installed with pip into a private directory of the
//! cache (`<cache>/toolchains/cuda-<nvcc version>/`), for machines with an NVIDIA GPU and no
//! toolkit, and for compiling CUDA builds on machines without a GPU (LLAMA_CPP_FACTS.md, "CUDA,
//! compile only").
//!
//! Only the CUDA 13 wheels are a complete toolkit: they install into one prefix,
//! `site-packages/nvidia/cu13`, with `bin/nvcc`, the headers, cudart (shared and static), cuBLAS
//! and CCCL. The CUDA 12 wheels (`nvidia-cuda-nvcc-cu12`, 12.9) ship `ptxas` and headers but no
//! `nvcc`, so they cannot build anything. Opt-in only: `prereqs --install --cuda-wheels`, or
//! `setup/profile --cuda-toolkit wheels`; never installed behind the user's back.

use crate::cmd::{which_in, Cmd};
use crate::context::Ctx;
use std::path::{Path, PathBuf};

/// The wheels, pinned exactly (all from the same CUDA 13 release train; cuBLAS and CCCL carry
/// their own version numbers). Bump them together and re-run `tests/cuda_compile.rs`.
pub const WHEELS: &[(&str, &str)] = &[
    ("nvidia-cuda-nvcc", "13.5.37"),
    ("nvidia-cuda-crt", "13.5.37"),
    ("nvidia-nvvm", "13.5.37"),
    ("nvidia-cuda-runtime", "13.5.37"),
    ("nvidia-cublas", "13.10.0.20"),
    ("nvidia-cuda-cccl", "13.3.5.0.6"),
];

/// The nvcc release the pinned wheels provide (`nvcc --version`: `release 13.5`).
pub const NVCC_VERSION: &str = "13.5.37";
/// Where the wheels put the toolkit inside pip's `--target` directory.
pub const PREFIX_IN_SITE: &str = "nvidia/cu13";
/// Written last into an installed toolkit: what was installed, so an incomplete dir is never used.
pub const MARKER: &str = "tunellama-cuda-wheels.json";
/// Shared libraries CMake looks for by their unversioned names (FindCUDAToolkit, ggml-cuda's
/// `find_library(NAMES cudart)`); the wheels only ship the `.so.13` files.
pub const UNVERSIONED_LINKS: &[(&str, &str)] = &[
    ("libcudart.so", "libcudart.so.13"),
    ("libcublas.so", "libcublas.so.13"),
    ("libcublasLt.so", "libcublasLt.so.13"),
];

/// What the CUDA 12 wheels lack, for messages where a user would look.
pub const CU12_NOTE: &str = "the CUDA 12 wheels (nvidia-cuda-nvcc-cu12) contain no nvcc, only ptxas and headers: only the CUDA 13 wheels are a complete toolkit";

/// `<cache>/toolchains/cuda-<version>`: the install directory.
pub fn install_dir(cache_dir: &Path) -> PathBuf {
    cache_dir
        .join("toolchains")
        .join(format!("cuda-{NVCC_VERSION}"))
}

/// The toolkit root (what `CUDAToolkit_ROOT` points at) of an installed toolkit.
pub fn toolkit_root(cache_dir: &Path) -> PathBuf {
    install_dir(cache_dir).join("site").join(PREFIX_IN_SITE)
}

/// The root when the toolkit is completely installed (marker present, nvcc present).
pub fn installed(cache_dir: &Path) -> Option<PathBuf> {
    let dir = install_dir(cache_dir);
    let root = toolkit_root(cache_dir);
    (dir.join(MARKER).is_file() && root.join("bin/nvcc").is_file()).then_some(root)
}

/// The pip requirement strings (`name==version`).
pub fn requirements() -> Vec<String> {
    WHEELS.iter().map(|(n, v)| format!("{n}=={v}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum WheelsError {
    #[error("no python3 with pip on PATH (needed to install the CUDA wheels)")]
    NoPip,
    #[error("`{command}` failed")]
    Pip {
        command: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("the CUDA wheels installed into {dir} but {what} is missing")]
    Incomplete { dir: String, what: String },
    #[error("I/O error at {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the CUDA wheels are published for linux x86_64 and aarch64 only (this is {os} {arch})"
    )]
    Unsupported { os: String, arch: String },
}

impl crate::error::Hint for WheelsError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            WheelsError::NoPip => "install python3 and pip (Debian/Ubuntu: `apt-get install python3-pip`); `cargo xtask prereqs --install --cuda-wheels` does it".into(),
            WheelsError::Pip { command, .. } => format!("check that the package index is reachable; run `{command}` to see pip's own message"),
            WheelsError::Incomplete { .. } => "the pinned wheel versions may have changed layout: see docs/cuda.md".into(),
            WheelsError::Io { .. } => "check free space (about 1 GiB) and permissions of the cache dir".into(),
            WheelsError::Unsupported { .. } => "install NVIDIA's CUDA toolkit for your platform and set CUDA_PATH".into(),
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WheelsError + '_ {
    move |source| WheelsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A python3 whose `-m pip` works.
fn python_with_pip() -> Option<PathBuf> {
    let py = which_in("python3", &crate::env::path_var())?;
    Cmd::new(&py)
        .args(["-m", "pip", "--version"])
        .run()
        .ok()
        .map(|_| py)
}

/// Installs python3-pip through the system package manager when pip is missing (saying so).
fn ensure_pip(ctx: &Ctx) -> Result<PathBuf, WheelsError> {
    if let Some(p) = python_with_pip() {
        return Ok(p);
    }
    let need = crate::prereq::Need {
        tool: "python3 + pip".into(),
        why: "installs the CUDA 13 toolkit wheels (nvcc, cudart, cuBLAS) into the cache".into(),
        apt: "python3-pip",
        dnf: "python3-pip",
        pacman: "python-pip",
        brew: "python",
        winget: "Python.Python.3.12",
    };
    crate::prereq::install(ctx, &[need]).map_err(|_| WheelsError::NoPip)?;
    python_with_pip().ok_or(WheelsError::NoPip)
}

/// Installs the pinned wheels (once; later calls return the installed root): pip into a staging
/// dir, add the unversioned library links, write the marker, rename into place.
pub fn ensure(ctx: &Ctx) -> Result<PathBuf, WheelsError> {
    if let Some(root) = installed(&ctx.cache_dir) {
        return Ok(root);
    }
    if std::env::consts::OS != "linux" || !matches!(std::env::consts::ARCH, "x86_64" | "aarch64") {
        return Err(WheelsError::Unsupported {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        });
    }
    let py = ensure_pip(ctx)?;
    let dir = install_dir(&ctx.cache_dir);
    let parent = dir.parent().expect("has parent").to_path_buf();
    fs_err::create_dir_all(&parent).map_err(io(&parent))?;
    // Created exclusively under a random name (removed on any failure when the guard drops).
    let stage_guard = tempfile::Builder::new()
        .prefix(&format!(".staging-cuda-{NVCC_VERSION}-"))
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let stage = stage_guard.path().to_path_buf();
    let site = stage.join("site");
    ctx.info(format!(
        "installing the CUDA {NVCC_VERSION} toolkit from NVIDIA's Python wheels into {} (about 1 GiB; {}): {}",
        dir.display(),
        "nvcc, headers, cudart, cuBLAS, CCCL",
        requirements().join(" ")
    ));
    let cmd = pip_install(&py).arg(site.as_os_str()).args(requirements());
    cmd.run_to_stderr().map_err(|e| WheelsError::Pip {
        command: cmd.display(),
        source: Box::new(e),
    })?;
    let root = site.join(PREFIX_IN_SITE);
    for what in ["bin/nvcc", "lib/libcudart.so.13", "lib/libcublas.so.13"] {
        if !root.join(what).is_file() {
            return Err(WheelsError::Incomplete {
                dir: root.display().to_string(),
                what: what.into(),
            });
        }
    }
    add_unversioned_links(&root.join("lib"))?;
    let marker = serde_json::json!({
        "wheels": requirements(),
        "root": format!("site/{PREFIX_IN_SITE}"),
        "installed_by": "cargo xtask prereqs --install --cuda-wheels",
    });
    let m = stage.join(MARKER);
    fs_err::write(&m, serde_json::to_vec_pretty(&marker).expect("json")).map_err(io(&m))?;
    match fs_err::rename(&stage, &dir) {
        Ok(()) => {}
        // Another process finished first: use its copy.
        Err(_) if installed(&ctx.cache_dir).is_some() => {
            let _ = fs_err::remove_dir_all(&stage);
        }
        Err(e) => return Err(io(&dir)(e)),
    }
    ctx.info(format!(
        "CUDA toolkit ready: {}",
        toolkit_root(&ctx.cache_dir).join("bin/nvcc").display()
    ));
    Ok(toolkit_root(&ctx.cache_dir))
}

/// Replaces the Machine's CUDA toolkit with the wheel toolkit, installing it first when needed
/// (`--cuda-toolkit wheels`): a recorded GPU machine's CUDA variant compiled here, or a GPU
/// machine without a toolkit.
pub fn substitute(
    ctx: &Ctx,
    m: &mut crate::machine::Machine,
) -> Result<crate::machine::CudaToolkit, WheelsError> {
    let root = ensure(ctx)?;
    let nvcc = root.join("bin/nvcc");
    match crate::probe::ask_nvcc(&nvcc, Some(&root), true, std::time::Duration::from_secs(30)) {
        crate::machine::Detection::Found(tk) => {
            m.cuda = crate::machine::Detection::Found(tk.clone());
            Ok(tk)
        }
        other => Err(WheelsError::Incomplete {
            dir: root.display().to_string(),
            what: format!("a working nvcc ({})", other.why_absent()),
        }),
    }
}

/// `cuobjdump` (lists the GPU code inside an object), from its own wheel into its own directory
/// (`<cache>/toolchains/cuobjdump-<version>/`): only the checks need it, not the build, so it is
/// not part of the toolkit (and adding it does not move the toolkit's path, a key input).
pub const CUOBJDUMP_WHEEL: (&str, &str) = ("nvidia-cuda-cuobjdump", "13.5.37");

/// Installs the cuobjdump wheel once (stage + rename, like the toolkit) and returns the program.
pub fn ensure_cuobjdump(ctx: &Ctx) -> Result<PathBuf, WheelsError> {
    let (name, version) = CUOBJDUMP_WHEEL;
    let dir = ctx
        .cache_dir
        .join("toolchains")
        .join(format!("cuobjdump-{version}"));
    let exe = dir.join("site").join(PREFIX_IN_SITE).join("bin/cuobjdump");
    if dir.join(MARKER).is_file() && exe.is_file() {
        return Ok(exe);
    }
    let py = ensure_pip(ctx)?;
    let parent = dir.parent().expect("has parent").to_path_buf();
    fs_err::create_dir_all(&parent).map_err(io(&parent))?;
    // Created exclusively under a random name (removed on any failure when the guard drops).
    let stage_guard = tempfile::Builder::new()
        .prefix(&format!(".staging-cuobjdump-{version}-"))
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let stage = stage_guard.path().to_path_buf();
    ctx.info(format!(
        "installing cuobjdump from NVIDIA's wheel {name}=={version} into {} (to list the GPU code in compiled objects)",
        dir.display()
    ));
    let cmd = pip_install(&py)
        .arg(stage.join("site").as_os_str())
        .arg(format!("{name}=={version}"));
    cmd.run_to_stderr().map_err(|e| WheelsError::Pip {
        command: cmd.display(),
        source: Box::new(e),
    })?;
    let staged = stage
        .join("site")
        .join(PREFIX_IN_SITE)
        .join("bin/cuobjdump");
    if !staged.is_file() {
        return Err(WheelsError::Incomplete {
            dir: stage.display().to_string(),
            what: "bin/cuobjdump".into(),
        });
    }
    let m = stage.join(MARKER);
    fs_err::write(&m, format!("{{\"wheels\": [\"{name}=={version}\"]}}\n")).map_err(io(&m))?;
    if fs_err::rename(&stage, &dir).is_err() && exe.is_file() {
        let _ = fs_err::remove_dir_all(&stage);
    }
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(WheelsError::Incomplete {
            dir: dir.display().to_string(),
            what: "bin/cuobjdump".into(),
        })
    }
}

/// `libcudart.so -> libcudart.so.13` etc., relative links beside the real files.
pub fn add_unversioned_links(lib: &Path) -> Result<(), WheelsError> {
    for (link, target) in UNVERSIONED_LINKS {
        let l = lib.join(link);
        if !l.exists() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(target, &l).map_err(io(&l))?;
        }
    }
    Ok(())
}

/// `python -m pip install` of exact wheels only (no source builds, no dependencies pulled in
/// behind our back, no questions); the caller adds `--target DIR` and the requirements.
fn pip_install(py: &std::path::Path) -> Cmd {
    Cmd::new(py).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--target",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wheel_is_pinned_exactly_and_is_a_cuda13_wheel() {
        for (name, version) in WHEELS {
            assert!(
                !name.ends_with("-cu12"),
                "{name}: the cu12 wheels have no nvcc"
            );
            assert!(version.starts_with("13."), "{name}=={version}");
        }
        assert!(requirements().iter().all(|r| r.contains("==")));
    }

    #[test]
    fn unversioned_links_point_at_the_versioned_files() {
        let dir = tempfile::tempdir().unwrap();
        for (_, t) in UNVERSIONED_LINKS {
            std::fs::write(dir.path().join(t), b"x").unwrap();
        }
        add_unversioned_links(dir.path()).unwrap();
        add_unversioned_links(dir.path()).unwrap(); // idempotent
        for (l, t) in UNVERSIONED_LINKS {
            assert_eq!(
                std::fs::read_link(dir.path().join(l)).unwrap(),
                Path::new(t)
            );
        }
    }

    #[test]
    fn a_half_installed_toolkit_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let root = toolkit_root(dir.path());
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/nvcc"), b"").unwrap();
        assert_eq!(installed(dir.path()), None, "no marker yet");
        std::fs::write(install_dir(dir.path()).join(MARKER), b"{}").unwrap();
        assert_eq!(installed(dir.path()), Some(root));
    }
}
