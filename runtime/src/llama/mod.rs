//! The safe, low-level wrapper over llama.cpp: every `unsafe` of the runtime (outside the
//! generated `ffi` and the pre-main CPU check) lives in this module tree. Owned handles free
//! themselves on drop; llama.cpp's failures come back as `LlamaError` with its own last error
//! lines attached.
//!
//! What a continuous-batching server needs: one [`Model`] shared by threads; a [`Context`] with
//! `n_seq_max` sequences whose KV memory is edited per sequence (`seq_rm`, `seq_cp`,
//! `seq_pos_max`, ...); a [`Batch`] carrying tokens of several sequences into one `decode`;
//! per-sequence [`Sampler`]s from [`SamplingParams`]; a [`TextStream`] per sequence for valid
//! UTF-8 text without stop strings; a [`CancelToken`] checked between steps.
//!
//! Call [`init`] once before loading a model (`load::open` does).

mod backend;
mod batch;
mod cancel;
mod context;
mod log;
mod model;
mod sampler;
mod stop;
mod vocab;

pub use backend::{devices, system_info, Device};
pub use batch::Batch;
pub use cancel::CancelToken;
pub use context::{Context, ContextOptions, ContextTimings, FlashAttention, DEFAULT_BATCH};
pub use log::{recent_errors, take_load_report, LoadReport, ModelBuffer};
pub use model::{ChatMessage, Model, Tuned};
pub use sampler::{
    ParamError, Sampler, SamplingParams, JSON_OBJECT_GBNF, MAX_LOGIT_BIAS, MAX_PENALTY,
    MAX_PRESENCE_FREQUENCY, MAX_TEMPERATURE,
};
pub use stop::{StopMatcher, TextPiece, TextStream};
pub use vocab::{Token, Vocab};

/// A sequence id: 0 to the context's `n_seq_max - 1`.
pub type SeqId = crate::ffi::llama_seq_id;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// A failure inside llama.cpp, with what it logged just before.
#[derive(Debug)]
pub struct LlamaError {
    pub what: String,
    pub log: Vec<String>,
    /// The work was stopped through a [`CancelToken`], not failed.
    pub cancelled: bool,
}

impl LlamaError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        LlamaError {
            what: what.into(),
            log: recent_errors(),
            cancelled: false,
        }
    }

    pub(crate) fn cancelled() -> Self {
        LlamaError {
            what: "cancelled".into(),
            log: Vec::new(),
            cancelled: true,
        }
    }
}

impl std::error::Error for LlamaError {}

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
        // Before any backend starts: ggml reads GGML_VK_VISIBLE_DEVICES once, at registration.
        select_vulkan_device();
        // SAFETY: called once, before any other llama call; the static build registers its
        // backends itself (no ggml_backend_load_all: it would dlopen stray libggml-*.so files).
        unsafe { crate::ffi::llama_backend_init() };
    });
    log::set_verbose(verbose);
}

/// The name of ggml's Vulkan device selection variable.
pub const VK_VISIBLE_DEVICES: &str = "GGML_VK_VISIBLE_DEVICES";

/// How the Vulkan device was selected, for `info` (None: not a Vulkan build for a selected
/// device).
pub fn vulkan_selection() -> Option<String> {
    let d = crate::settings::info()
        .compiled_for
        .vulkan_device
        .as_ref()?;
    if !d.select {
        return None;
    }
    Some(match std::env::var(VK_VISIBLE_DEVICES) {
        Ok(v) if v != d.index.to_string() || !SELECTED_BY_US.load(Ordering::Relaxed) => {
            format!("{VK_VISIBLE_DEVICES}={v} (from the environment)")
        }
        _ => format!(
            "{VK_VISIBLE_DEVICES}={} (set by tunellama: {} is a {}-type device, which ggml skips unless selected)",
            d.index, d.name, d.device_type
        ),
    })
}

static SELECTED_BY_US: AtomicBool = AtomicBool::new(false);

/// A build made for a CPU-type Vulkan device (lavapipe) must use it: ggml skips such devices and
/// silently computes on the CPU unless `GGML_VK_VISIBLE_DEVICES` names them. The user's own
/// setting wins.
fn select_vulkan_device() {
    let Some(d) = crate::settings::info().compiled_for.vulkan_device.as_ref() else {
        return;
    };
    if d.select && std::env::var_os(VK_VISIBLE_DEVICES).is_none() {
        // Single-threaded here: nothing else has started (no backend, no thread pool).
        std::env::set_var(VK_VISIBLE_DEVICES, d.index.to_string());
        SELECTED_BY_US.store(true, Ordering::Relaxed);
    }
}
