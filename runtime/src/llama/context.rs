//! An inference context (`llama_context`): the KV memory of up to `n_seq_max` sequences,
//! threads, batch sizes; decode, logits, per-sequence memory edits, timings. Freed on drop.

use super::{Batch, CancelToken, LlamaError, Model, Sampler, SeqId, Token};
use crate::ffi;
use std::ffi::c_void;
use std::ptr::NonNull;

/// Whether attention uses the flash-attention kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// llama.cpp decides per device (its default).
    #[default]
    Auto,
    On,
    Off,
}

/// How to make a [`Context`]. [`ContextOptions::tuned`] gives the build's tuned values.
#[derive(Debug, Clone, Copy)]
pub struct ContextOptions {
    /// KV memory in tokens, for all sequences together (see `kv_unified`).
    pub n_ctx: u32,
    /// Largest batch one `decode` may take (logical batch).
    pub n_batch: u32,
    /// Physical batch: `decode` splits a batch into pieces of at most this many tokens.
    pub n_ubatch: u32,
    /// Sequences (0 to n_seq_max - 1) that may hold tokens at once.
    pub n_seq_max: u32,
    /// Threads for generation and for batch (prompt) processing.
    pub threads: u32,
    pub flash_attention: FlashAttention,
    /// false (llama.cpp's default): each sequence gets its own `n_ctx / n_seq_max` tokens of
    /// memory (rounded up to a multiple of 256); true: one pool of `n_ctx` shared by all.
    pub kv_unified: bool,
}

impl ContextOptions {
    /// One sequence of `n_ctx` tokens, `n_batch` for both batch sizes, flash attention auto.
    pub fn new(n_ctx: u32, n_batch: u32, threads: u32) -> ContextOptions {
        ContextOptions {
            n_ctx,
            n_batch,
            n_ubatch: n_batch,
            n_seq_max: 1,
            threads,
            flash_attention: FlashAttention::Auto,
            kv_unified: false,
        }
    }

    /// The build's tuned defaults for `model` (threads and context size from runtime-info.json,
    /// the context capped at the model's trained context and at RAM, as `tunellama` does),
    /// batch 512 (at most the context), one sequence.
    pub fn tuned(model: &Model) -> ContextOptions {
        let t = &model.tuned;
        let ctx = t.ctx_size.value;
        ContextOptions::new(ctx, DEFAULT_BATCH.min(ctx), t.threads.value)
    }

    /// The same with `n` sequences; the context holds `n_ctx_per_seq` tokens for each.
    pub fn with_seqs(mut self, n: u32, n_ctx_per_seq: u32) -> ContextOptions {
        self.n_seq_max = n.max(1);
        self.n_ctx = n_ctx_per_seq.saturating_mul(self.n_seq_max);
        self
    }
}

/// Tokens per decode call for prompts unless told otherwise.
pub const DEFAULT_BATCH: u32 = 512;

/// llama.cpp's own counters for a context (`llama_perf_context`), since it was made or
/// [`Context::reset_timings`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ContextTimings {
    /// Milliseconds and tokens of batches of more than one token (prompt processing).
    pub prompt_ms: f64,
    pub prompt_tokens: u64,
    /// Milliseconds and tokens of single-token decodes (generation).
    pub eval_ms: f64,
    pub eval_tokens: u64,
}

/// A context over a borrowed model. `Send`: it may move to (and live in) another thread.
pub struct Context<'m> {
    ptr: NonNull<ffi::llama_context>,
    model: &'m Model,
    /// Keeps the flag the abort callback reads alive as long as the context.
    cancel: Option<CancelToken>,
}

// SAFETY: a llama_context is used from one thread at a time (`&mut self` for everything that
// changes it); moving it between threads is what llama.cpp's server does.
#[allow(unsafe_code)]
unsafe impl Send for Context<'_> {}

extern "C" fn abort_cb(data: *mut c_void) -> bool {
    // SAFETY: `data` is the AtomicBool inside the CancelToken the context keeps alive.
    let flag = unsafe { &*(data as *const std::sync::atomic::AtomicBool) };
    flag.load(std::sync::atomic::Ordering::Relaxed)
}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, o: ContextOptions) -> Result<Context<'m>, LlamaError> {
        super::log::recent_errors();
        // SAFETY: default params are plain data; the model outlives the context (borrow).
        let ptr = unsafe {
            let mut p = ffi::llama_context_default_params();
            p.n_ctx = o.n_ctx;
            p.n_batch = o.n_batch;
            p.n_ubatch = o.n_ubatch.min(o.n_batch);
            p.n_seq_max = o.n_seq_max.max(1);
            p.n_threads = o.threads as i32;
            p.n_threads_batch = o.threads as i32;
            p.flash_attn_type = match o.flash_attention {
                FlashAttention::Auto => ffi::llama_flash_attn_type_LLAMA_FLASH_ATTN_TYPE_AUTO,
                FlashAttention::On => ffi::llama_flash_attn_type_LLAMA_FLASH_ATTN_TYPE_ENABLED,
                FlashAttention::Off => ffi::llama_flash_attn_type_LLAMA_FLASH_ATTN_TYPE_DISABLED,
            };
            p.kv_unified = o.kv_unified;
            // Per-context timings (`timings()`); the counters cost two clock reads per decode.
            p.no_perf = false;
            ffi::llama_init_from_model(model.raw(), p)
        };
        NonNull::new(ptr)
            .map(|ptr| Context {
                ptr,
                model,
                cancel: None,
            })
            .ok_or_else(|| {
                LlamaError::new(format!(
                    "llama.cpp could not create a context of {} tokens for {} sequence(s)",
                    o.n_ctx, o.n_seq_max
                ))
            })
    }

    /// The model this context runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// KV memory in tokens, all sequences together (as llama.cpp rounded it).
    pub fn n_ctx(&self) -> u32 {
        // SAFETY: valid context handle.
        unsafe { ffi::llama_n_ctx(self.ptr.as_ptr()) }
    }

    /// Tokens one sequence can hold (`n_ctx / n_seq_max` unless the KV memory is unified).
    pub fn n_ctx_seq(&self) -> u32 {
        // SAFETY: valid context handle.
        unsafe { ffi::llama_n_ctx_seq(self.ptr.as_ptr()) }
    }

    pub fn n_batch(&self) -> u32 {
        // SAFETY: valid context handle.
        unsafe { ffi::llama_n_batch(self.ptr.as_ptr()) }
    }

    pub fn n_ubatch(&self) -> u32 {
        // SAFETY: valid context handle.
        unsafe { ffi::llama_n_ubatch(self.ptr.as_ptr()) }
    }

    pub fn n_seq_max(&self) -> u32 {
        // SAFETY: valid context handle.
        unsafe { ffi::llama_n_seq_max(self.ptr.as_ptr()) }
    }

    /// Runs the model on `batch` (at most `n_batch` tokens). Errors: no room in the KV memory
    /// (nothing of the batch was kept), cancelled through [`Context::set_cancel`] (the
    /// sequences' memory may hold part of the batch: `seq_pos_max` says how far it got), an
    /// invalid batch (positions or sequence ids out of range; llama.cpp logs which).
    pub fn decode(&mut self, batch: &Batch) -> Result<(), LlamaError> {
        if batch.is_empty() {
            return Ok(());
        }
        // SAFETY: valid context; the batch's arrays are valid for `n_tokens` entries.
        let rc = unsafe { ffi::llama_decode(self.ptr.as_ptr(), batch.raw()) };
        match rc {
            0 => Ok(()),
            1 => Err(LlamaError::new(format!(
                "llama_decode found no room in the KV cache for {} tokens (context {})",
                batch.len(),
                self.n_ctx()
            ))),
            2 => Err(LlamaError::cancelled()),
            -1 => Err(LlamaError::new(
                "llama_decode rejected the batch as invalid",
            )),
            rc => Err(LlamaError::new(format!(
                "llama_decode failed with code {rc}"
            ))),
        }
    }

    /// Makes `decode` stop early (between compute graph nodes) once `token` is cancelled;
    /// `None` removes it. The same token can be checked by the caller between steps.
    pub fn set_cancel(&mut self, token: Option<CancelToken>) {
        let data = token
            .as_ref()
            .map_or(std::ptr::null_mut(), |t| t.flag_ptr() as *mut c_void);
        // SAFETY: valid context; `data` points into the CancelToken stored in `self` (kept
        // alive until replaced or the context is freed), or is NULL with no callback.
        unsafe {
            ffi::llama_set_abort_callback(
                self.ptr.as_ptr(),
                token.as_ref().map(|_| abort_cb as _),
                data,
            )
        };
        self.cancel = token;
    }

    /// The logits (n_vocab floats) of the `i`-th token of the last decoded batch, which must
    /// have asked for logits; `i = -1` is the last such token. Valid until the next decode.
    pub fn logits_ith(&self, i: i32) -> Result<&[f32], LlamaError> {
        let n = self.model.n_vocab().max(0) as usize;
        // SAFETY: valid context; llama.cpp checks `i` and returns NULL (logging why) for a
        // token without logits. The row holds n_vocab floats owned by the context until the
        // next decode, which needs `&mut self` and so ends this borrow first.
        let p = unsafe { ffi::llama_get_logits_ith(self.ptr.as_ptr(), i) };
        if p.is_null() {
            return Err(LlamaError::new(format!(
                "no logits for batch index {i} (the token did not ask for logits)"
            )));
        }
        Ok(unsafe { std::slice::from_raw_parts(p, n) })
    }

    /// The logits of the last output of the previous `decode` (n_vocab floats), copied.
    pub fn last_logits(&mut self) -> Result<Vec<f32>, LlamaError> {
        self.logits_ith(-1)
            .map(<[f32]>::to_vec)
            .map_err(|_| LlamaError::new("llama.cpp returned no logits"))
    }

    /// Samples from the last output of the previous `decode` (and records it in the sampler).
    pub fn sample(&mut self, sampler: &mut Sampler) -> Token {
        sampler.sample(self, -1)
    }

    pub(super) fn raw(&self) -> *mut ffi::llama_context {
        self.ptr.as_ptr()
    }

    fn memory(&self) -> ffi::llama_memory_t {
        // SAFETY: valid context; the memory handle belongs to it.
        unsafe { ffi::llama_get_memory(self.ptr.as_ptr()) }
    }

    /// Forgets every token of every sequence, so the next decode starts at position 0.
    pub fn clear_memory(&mut self) {
        // SAFETY: valid context and its memory.
        unsafe { ffi::llama_memory_clear(self.memory(), true) }
    }

    /// Removes positions `p0..p1` of sequence `seq` (`None` ends are open: `seq_rm(s, None,
    /// None)` empties the sequence). false when the memory cannot remove a part (recurrent
    /// models can only drop a whole sequence).
    pub fn seq_rm(&mut self, seq: SeqId, p0: Option<i32>, p1: Option<i32>) -> bool {
        // SAFETY: valid memory; negative bounds mean "open" to llama.cpp.
        unsafe { ffi::llama_memory_seq_rm(self.memory(), seq, p0.unwrap_or(-1), p1.unwrap_or(-1)) }
    }

    /// Copies positions `p0..p1` of sequence `src` to `dst` (shares the cells, no compute).
    pub fn seq_cp(&mut self, src: SeqId, dst: SeqId, p0: Option<i32>, p1: Option<i32>) {
        // SAFETY: valid memory; negative bounds mean "open".
        unsafe {
            ffi::llama_memory_seq_cp(self.memory(), src, dst, p0.unwrap_or(-1), p1.unwrap_or(-1))
        }
    }

    /// Removes every sequence but `seq`.
    pub fn seq_keep(&mut self, seq: SeqId) {
        // SAFETY: valid memory.
        unsafe { ffi::llama_memory_seq_keep(self.memory(), seq) }
    }

    /// Shifts positions `p0..p1` of `seq` by `delta` (context shifting); only when
    /// [`Context::can_shift`].
    pub fn seq_add(&mut self, seq: SeqId, p0: Option<i32>, p1: Option<i32>, delta: i32) {
        // SAFETY: valid memory; negative bounds mean "open".
        unsafe {
            ffi::llama_memory_seq_add(
                self.memory(),
                seq,
                p0.unwrap_or(-1),
                p1.unwrap_or(-1),
                delta,
            )
        }
    }

    /// Whether the memory supports `seq_add`.
    pub fn can_shift(&self) -> bool {
        // SAFETY: valid memory.
        unsafe { ffi::llama_memory_can_shift(self.memory()) }
    }

    /// The lowest position sequence `seq` holds; `None` when it is empty.
    pub fn seq_pos_min(&self, seq: SeqId) -> Option<i32> {
        // SAFETY: valid memory; -1 means empty.
        let p = unsafe { ffi::llama_memory_seq_pos_min(self.memory(), seq) };
        (p >= 0).then_some(p)
    }

    /// The highest position sequence `seq` holds; `None` when it is empty. The next token of
    /// the sequence goes at `seq_pos_max + 1`.
    pub fn seq_pos_max(&self, seq: SeqId) -> Option<i32> {
        // SAFETY: valid memory; -1 means empty.
        let p = unsafe { ffi::llama_memory_seq_pos_max(self.memory(), seq) };
        (p >= 0).then_some(p)
    }

    /// llama.cpp's counters of this context: prompt (multi-token batches) and generation
    /// (single-token decodes) time and tokens. Waits for the last decode to finish first (the
    /// counters are updated then; llama.cpp books a decode when it waits for it, so a decode
    /// whose logits were never read is counted together with the next one). llama.cpp
    /// reports each token count as at least 1.
    pub fn timings(&mut self) -> ContextTimings {
        // SAFETY: valid context; waits for queued work, then returns plain data.
        let d = unsafe {
            ffi::llama_synchronize(self.ptr.as_ptr());
            ffi::llama_perf_context(self.ptr.as_ptr())
        };
        ContextTimings {
            prompt_ms: d.t_p_eval_ms,
            prompt_tokens: d.n_p_eval.max(0) as u64,
            eval_ms: d.t_eval_ms,
            eval_tokens: d.n_eval.max(0) as u64,
        }
    }

    /// Zeroes the counters `timings` reads.
    pub fn reset_timings(&mut self) {
        // SAFETY: valid context.
        unsafe { ffi::llama_perf_context_reset(self.ptr.as_ptr()) }
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, before the model it borrows (and before `cancel`, which
        // the abort callback reads, is dropped after this).
        unsafe { ffi::llama_free(self.ptr.as_ptr()) }
    }
}
