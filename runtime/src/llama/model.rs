//! A loaded model (`llama_model`), freed on drop.

use super::{LlamaError, Vocab};
use crate::ffi;
use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;

pub struct Model {
    ptr: NonNull<ffi::llama_model>,
    /// Where the load put the layers (llama.cpp's log lines).
    pub load: super::LoadReport,
}

impl Model {
    /// Loads a GGUF file; `gpu_layers < 0` offloads every layer. Call `llama::init` first.
    pub fn load(path: &Path, gpu_layers: i32) -> Result<Model, LlamaError> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            LlamaError::new(format!("{}: path contains a NUL byte", path.display()))
        })?;
        // Only this load's complaints and layer placement should be reported.
        super::log::recent_errors();
        super::take_load_report();
        // SAFETY: default params are plain data; the path is a valid C string for the call.
        let ptr = unsafe {
            let mut p = ffi::llama_model_default_params();
            p.n_gpu_layers = gpu_layers;
            ffi::llama_model_load_from_file(c.as_ptr(), p)
        };
        let load = super::take_load_report();
        NonNull::new(ptr)
            .map(|ptr| Model { ptr, load })
            .ok_or_else(|| LlamaError::new(format!("llama.cpp could not load {}", path.display())))
    }

    pub(super) fn raw(&self) -> *mut ffi::llama_model {
        self.ptr.as_ptr()
    }

    pub fn vocab(&self) -> Vocab<'_> {
        // SAFETY: the vocab is owned by the model and lives as long as the borrow of `self`.
        Vocab::from_raw(unsafe { ffi::llama_model_get_vocab(self.raw()) })
    }

    /// e.g. `llama ?B F32`.
    pub fn desc(&self) -> String {
        let mut buf = vec![0u8; 256];
        // SAFETY: the buffer is valid for its length; llama NUL-terminates within it.
        let n = unsafe { ffi::llama_model_desc(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(n.clamp(0, 255) as usize);
        String::from_utf8_lossy(&buf).into_owned()
    }

    pub fn size_bytes(&self) -> u64 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_size(self.raw()) }
    }

    pub fn n_params(&self) -> u64 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_n_params(self.raw()) }
    }

    pub fn n_ctx_train(&self) -> i32 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_n_ctx_train(self.raw()) }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: contexts borrow the model, so none outlives this; freed exactly once.
        unsafe { ffi::llama_model_free(self.raw()) }
    }
}
