//! The sampler chain: repetition penalty, top-k, top-p, min-p, temperature, then a seeded draw
//! (or greedy at temperature 0), in llama.cpp's usual order.

use crate::ffi;
use std::ptr::NonNull;

#[derive(Debug, Clone, Copy)]
pub struct SamplerOptions {
    pub temp: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: i32,
    pub seed: u32,
}

pub struct Sampler {
    chain: NonNull<ffi::llama_sampler>,
}

impl Sampler {
    pub fn new(o: &SamplerOptions, n_vocab: i32) -> Sampler {
        // SAFETY: the chain takes ownership of every sampler added to it and frees them with
        // itself; the init functions return fresh objects.
        unsafe {
            let chain = ffi::llama_sampler_chain_init(ffi::llama_sampler_chain_default_params());
            let add = |s: *mut ffi::llama_sampler| ffi::llama_sampler_chain_add(chain, s);
            if o.repeat_penalty != 1.0 {
                add(ffi::llama_sampler_init_penalties(
                    n_vocab,
                    o.repeat_last_n,
                    o.repeat_penalty,
                    0.0,
                    0.0,
                ));
            }
            if o.temp <= 0.0 {
                add(ffi::llama_sampler_init_greedy());
            } else {
                if o.top_k > 0 {
                    add(ffi::llama_sampler_init_top_k(o.top_k));
                }
                add(ffi::llama_sampler_init_top_p(o.top_p, 1));
                add(ffi::llama_sampler_init_min_p(o.min_p, 1));
                add(ffi::llama_sampler_init_temp(o.temp));
                add(ffi::llama_sampler_init_dist(o.seed));
            }
            Sampler {
                chain: NonNull::new(chain).expect("llama_sampler_chain_init returned NULL"),
            }
        }
    }

    pub(super) fn raw(&mut self) -> *mut ffi::llama_sampler {
        self.chain.as_ptr()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: frees the chain and the samplers it owns, once.
        unsafe { ffi::llama_sampler_free(self.chain.as_ptr()) }
    }
}
