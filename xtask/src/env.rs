//! Every environment variable the tool reads, in one place, so behaviour never depends on a read
//! hidden somewhere else.

use std::ffi::OsString;
use std::path::PathBuf;

/// Moves everything the tool writes outside `target/` (same as `--cache-dir`).
pub const CACHE_DIR_VAR: &str = "TUNELLAMA_CACHE_DIR";
/// The project's name, used for the cache folder.
pub const APP: &str = "tunellama";

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn path_var() -> OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// CI systems set `CI`; there we never ask questions and never draw bars.
pub fn is_ci() -> bool {
    var("CI").is_some_and(|v| v != "false" && v != "0")
}

/// The platform cache directory for this tool (XDG on Linux).
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = var(CACHE_DIR_VAR) {
        return PathBuf::from(d);
    }
    if cfg!(target_os = "macos") {
        if let Some(h) = var("HOME") {
            return PathBuf::from(h).join("Library/Caches").join(APP);
        }
    } else if cfg!(windows) {
        if let Some(l) = var("LOCALAPPDATA") {
            return PathBuf::from(l).join(APP).join("cache");
        }
    } else {
        if let Some(x) = var("XDG_CACHE_HOME") {
            return PathBuf::from(x).join(APP);
        }
        if let Some(h) = var("HOME") {
            return PathBuf::from(h).join(".cache").join(APP);
        }
    }
    std::env::temp_dir().join(APP)
}

/// Where CUDA toolkits announce themselves, in the order nvcc is looked for: CMake's own
/// `CUDAToolkit_ROOT` first (FindCUDAToolkit reads it), then the installers' variables.
pub fn cuda_roots() -> Vec<(String, PathBuf)> {
    ["CUDAToolkit_ROOT", "CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"]
        .iter()
        .filter_map(|v| var(v).map(|p| (format!("${v}"), PathBuf::from(p))))
        .collect()
}

pub fn rocm_path() -> Option<PathBuf> {
    var("ROCM_PATH").map(PathBuf::from)
}

pub fn vulkan_sdk() -> Option<PathBuf> {
    var("VULKAN_SDK").map(PathBuf::from)
}

/// Compilers chosen by the user the way CMake and cc-rs honour them.
pub fn cc() -> Option<String> {
    var("CC")
}
pub fn cxx() -> Option<String> {
    var("CXX")
}

/// A Hugging Face access token; sent only to huggingface.co and never printed.
pub fn hf_token() -> Option<String> {
    var("HF_TOKEN")
}

/// Proxy settings as curl reads them: (https, http, no_proxy); lowercase names first.
pub fn proxies() -> (Option<String>, Option<String>, Option<String>) {
    let first = |names: &[&str]| names.iter().find_map(|n| var(n));
    (
        first(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
        first(&["http_proxy", "all_proxy", "ALL_PROXY"]),
        first(&["no_proxy", "NO_PROXY"]),
    )
}

/// The repository root (this crate lives in `<root>/xtask`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the repository")
        .to_path_buf()
}

/// The cargo that runs us (`$CARGO`, set by cargo for `cargo xtask`), else `cargo` on PATH.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// Where bindgen's libclang lives, when the user says so (clang-sys honours the same variable).
pub fn libclang_path() -> Option<PathBuf> {
    var("LIBCLANG_PATH").map(PathBuf::from)
}
