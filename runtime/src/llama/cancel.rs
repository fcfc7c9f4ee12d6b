//! A cancellation flag shared between threads: the generating side checks it between decode
//! steps (and a [`Context`](super::Context) can also stop inside `decode`), any other thread
//! sets it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cloning gives another handle to the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every holder of the token to stop; cannot be undone.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag, for llama.cpp's abort callback (valid while a clone of the token lives).
    pub(super) fn flag_ptr(&self) -> *const AtomicBool {
        Arc::as_ptr(&self.0)
    }
}
