//! The safe wrapper over llama.cpp: every `unsafe` of the runtime (outside the generated `ffi`
//! and the pre-main CPU check) lives in this module tree. Owned handles free themselves on drop;
//! llama.cpp's failures come back as `LlamaError` with its own last error lines attached.

mod backend;
mod batch;
mod context;
mod log;
mod model;
mod sampler;
mod vocab;

pub use backend::{devices, system_info, Device};
pub use batch::Batch;
pub use context::{Context, ContextOptions};
pub use log::recent_errors;
pub use model::Model;
pub use sampler::{Sampler, SamplerOptions};
pub use vocab::{Token, Vocab};

use std::sync::Once;

/// A failure inside llama.cpp, with what it logged just before.
#[derive(Debug)]
pub struct LlamaError {
    pub what: String,
    pub log: Vec<String>,
}

impl LlamaError {
    fn new(what: impl Into<String>) -> Self {
        LlamaError {
            what: what.into(),
            log: recent_errors(),
        }
    }
}

impl std::fmt::Display for LlamaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        for l in &self.log {
            write!(f, "\n  llama.cpp: {l}")?;
        }
        Ok(())
    }
}

/// Installs the log capture and initialises the backend, once per process. `verbose` lets
/// llama.cpp's own messages through to stderr; otherwise they are kept only for errors.
pub fn init(verbose: bool) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::install(verbose);
        // SAFETY: called once, before any other llama call; the static build registers its
        // backends itself (no ggml_backend_load_all: it would dlopen stray libggml-*.so files).
        unsafe { crate::ffi::llama_backend_init() };
    });
}
