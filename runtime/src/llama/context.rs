//! An inference context (`llama_context`: KV memory, threads, batch sizes), freed on drop.

use super::{Batch, LlamaError, Model, Sampler, Token};
use crate::ffi;
use std::ptr::NonNull;

#[derive(Debug, Clone, Copy)]
pub struct ContextOptions {
    pub n_ctx: u32,
    /// Largest batch one `decode` may take (and, here, the physical batch too).
    pub n_batch: u32,
    pub threads: u32,
    /// Physical batch (llama.cpp's `n_ubatch`); `None`: the whole logical batch.
    pub n_ubatch: Option<u32>,
    /// Flash attention on/off; `None`: llama.cpp's own default (auto).
    pub flash_attn: Option<bool>,
}

pub struct Context<'m> {
    ptr: NonNull<ffi::llama_context>,
    model: &'m Model,
}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, o: ContextOptions) -> Result<Context<'m>, LlamaError> {
        super::log::recent_errors();
        // SAFETY: default params are plain data; the model outlives the context (borrow).
        let ptr = unsafe {
            let mut p = ffi::llama_context_default_params();
            p.n_ctx = o.n_ctx;
            p.n_batch = o.n_batch;
            p.n_ubatch = o.n_ubatch.unwrap_or(o.n_batch).min(o.n_batch).max(1);
            if let Some(fa) = o.flash_attn {
                p.flash_attn_type = if fa {
                    ffi::llama_flash_attn_type_LLAMA_FLASH_ATTN_TYPE_ENABLED
                } else {
                    ffi::llama_flash_attn_type_LLAMA_FLASH_ATTN_TYPE_DISABLED
                };
            }
            p.n_threads = o.threads as i32;
            p.n_threads_batch = o.threads as i32;
            // We time ourselves; llama's perf counters are not needed.
            p.no_perf = true;
            ffi::llama_init_from_model(model.raw(), p)
        };
        NonNull::new(ptr)
            .map(|ptr| Context { ptr, model })
            .ok_or_else(|| {
                LlamaError::new(format!(
                    "llama.cpp could not create a context of {} tokens",
                    o.n_ctx
                ))
            })
    }

    pub fn n_ctx(&self) -> u32 {
        // SAFETY: valid context handle.
        unsafe { ffi::llama_n_ctx(self.ptr.as_ptr()) }
    }

    pub fn decode(&mut self, batch: &Batch) -> Result<(), LlamaError> {
        // SAFETY: valid context; the batch's arrays are valid for `n_tokens` entries.
        let rc = unsafe { ffi::llama_decode(self.ptr.as_ptr(), batch.raw()) };
        match rc {
            0 => Ok(()),
            1 => Err(LlamaError::new(format!(
                "llama_decode found no room in the KV cache for {} tokens (context {})",
                batch.len(),
                self.n_ctx()
            ))),
            2 => Err(LlamaError::new("llama_decode was aborted")),
            -1 => Err(LlamaError::new(
                "llama_decode rejected the batch as invalid",
            )),
            rc => Err(LlamaError::new(format!(
                "llama_decode failed with code {rc}"
            ))),
        }
    }

    /// The logits of the last output of the previous `decode` (n_vocab floats).
    pub fn last_logits(&mut self) -> Result<Vec<f32>, LlamaError> {
        let n = self.model.vocab().n_tokens().max(0) as usize;
        // SAFETY: index -1 is the last output row; it holds n_vocab floats owned by the context
        // until the next decode, and is copied out at once.
        let p = unsafe { ffi::llama_get_logits_ith(self.ptr.as_ptr(), -1) };
        if p.is_null() {
            return Err(LlamaError::new("llama.cpp returned no logits"));
        }
        Ok(unsafe { std::slice::from_raw_parts(p, n) }.to_vec())
    }

    /// Samples from the last output of the previous `decode` (and records it in the sampler).
    pub fn sample(&mut self, sampler: &mut Sampler) -> Token {
        // SAFETY: valid context and sampler; -1 selects the last output row.
        unsafe { ffi::llama_sampler_sample(sampler.raw(), self.ptr.as_ptr(), -1) }
    }

    /// Forgets every token (the KV memory), so the next decode starts at position 0.
    pub fn clear_memory(&mut self) {
        // SAFETY: valid context; the memory handle belongs to it.
        unsafe { ffi::llama_memory_clear(ffi::llama_get_memory(self.ptr.as_ptr()), true) }
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, before the model it borrows.
        unsafe { ffi::llama_free(self.ptr.as_ptr()) }
    }
}
