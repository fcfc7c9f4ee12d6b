//! The start check of a GPU build: a binary compiled for CUDA refuses to run (exit code 4, see
//! README.md) when no CUDA device is usable, and says why: no NVIDIA driver (`libcuda.so.1`
//! cannot be loaded), or a driver that reports no device. It never silently computes on the CPU.
//!
//! The build uses `GGML_CUDA_NO_VMM=ON`, so nothing links `libcuda` and the binary starts on a
//! machine without the driver; cudart opens the driver itself at the first CUDA call, which is
//! where ggml finds no device (docs/cuda.md).

use crate::error::{CliError, Result};
use crate::llama;

/// Exit code of "built for a GPU backend, but no device of it is usable here".
pub const EXIT_NO_GPU: u8 = 4;

/// The NVIDIA driver's user-space library, as cudart loads it.
const LIBCUDA: &str = "libcuda.so.1";

/// Whether the NVIDIA driver library can be loaded; `Err` carries the loader's message.
/// (Elsewhere than Unix the reason is left to llama.cpp's own log line.)
#[cfg(not(unix))]
fn driver_loadable() -> Option<std::result::Result<(), String>> {
    None
}

/// Whether the NVIDIA driver library can be loaded; `Err` carries the loader's message.
#[cfg(unix)]
#[allow(unsafe_code)]
fn driver_loadable() -> Option<std::result::Result<(), String>> {
    let name = std::ffi::CString::new(LIBCUDA).expect("no NUL");
    // SAFETY: dlopen/dlclose/dlerror with a valid C string; the handle is closed at once.
    unsafe {
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if h.is_null() {
            let e = libc::dlerror();
            return Some(Err(if e.is_null() {
                "not found".into()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }));
        }
        libc::dlclose(h);
    }
    Some(Ok(()))
}

/// The message for a CUDA build on a machine where ggml found no CUDA device.
/// `driver`: whether `libcuda.so.1` loads (`None`: not checked on this platform).
pub fn no_cuda_device_message(
    driver: Option<std::result::Result<(), String>>,
    log: &[String],
) -> String {
    let ggml = log
        .last()
        .map(|l| format!(" (llama.cpp: {l})"))
        .unwrap_or_default();
    let why = match driver {
        Some(Err(e)) => format!("no NVIDIA driver ({LIBCUDA} not found: {e})"),
        Some(Ok(())) => {
            format!("the NVIDIA driver is installed but reports no usable device{ggml}")
        }
        None => format!("no NVIDIA driver or no device{ggml}"),
    };
    format!("built for CUDA but no CUDA device is usable: {why}")
}

/// Refuses a CUDA build without a usable CUDA device. Called before every command.
pub fn check(backends: &[String]) -> Result<()> {
    if !backends.iter().any(|b| b == "cuda") {
        return Ok(());
    }
    llama::init(false);
    let devices = llama::devices();
    if devices
        .iter()
        .any(|d| d.kind != "cpu" && d.name.starts_with("CUDA"))
    {
        return Ok(());
    }
    let log = llama::recent_errors();
    Err(CliError {
        code: EXIT_NO_GPU,
        message: no_cuda_device_message(driver_loadable(), &log),
        hint: Some(
            "install the NVIDIA driver (and check `nvidia-smi`), or run `cargo xtask setup` on this machine for a build without CUDA".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_driver_is_named() {
        let m = no_cuda_device_message(
            Some(Err("libcuda.so.1: cannot open shared object file".into())),
            &[],
        );
        assert!(m.starts_with("built for CUDA but no CUDA device is usable: no NVIDIA driver (libcuda.so.1 not found"), "{m}");
    }

    #[test]
    fn driver_without_device_shows_ggml_reason() {
        let m = no_cuda_device_message(
            Some(Ok(())),
            &[
                "ggml_cuda_init: failed to initialize CUDA: no CUDA-capable device is detected"
                    .into(),
            ],
        );
        assert!(
            m.contains("reports no usable device") && m.contains("no CUDA-capable"),
            "{m}"
        );
    }
}
