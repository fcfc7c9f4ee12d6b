//! What llama.cpp reports about itself: the compiled-in feature string and the backend devices.

use crate::ffi;
use std::ffi::{c_char, CStr};

/// One ggml backend device (CPU, GPU, ...), with its memory as the backend reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub memory_free: u64,
    pub memory_total: u64,
}

fn string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: llama.cpp returns NUL-terminated strings it owns for the process lifetime.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `llama_print_system_info()`: e.g. `CPU : SSE3 = 1 | AVX = 1 | ... |`.
pub fn system_info() -> String {
    // SAFETY: returns a pointer to a static buffer; copied at once.
    string(unsafe { ffi::llama_print_system_info() })
}

pub fn devices() -> Vec<Device> {
    // SAFETY: the device registry is filled by static registration; indices below the count
    // are valid, and the device handles live for the process.
    unsafe {
        (0..ffi::ggml_backend_dev_count())
            .map(|i| {
                let d = ffi::ggml_backend_dev_get(i);
                let (mut free, mut total) = (0usize, 0usize);
                ffi::ggml_backend_dev_memory(d, &mut free, &mut total);
                Device {
                    name: string(ffi::ggml_backend_dev_name(d)),
                    description: string(ffi::ggml_backend_dev_description(d)),
                    kind: match ffi::ggml_backend_dev_type(d) {
                        ffi::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_CPU => "cpu",
                        ffi::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_GPU => "gpu",
                        ffi::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_IGPU => "igpu",
                        ffi::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_ACCEL => "accel",
                        ffi::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_META => "meta",
                        _ => "unknown",
                    },
                    memory_free: free as u64,
                    memory_total: total as u64,
                }
            })
            .collect()
    }
}
