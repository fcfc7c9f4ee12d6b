//! `tunellama_runtime`: the llama.cpp build `cargo xtask setup` tuned for this machine, as a Rust
//! library. The `tunellama` binary is built on it; another cargo project can link it in-process
//! (a path dependency on `runtime/`: its build script finds the cached build, see README.md).
//!
//! Two levels:
//! - [`llama`]: a safe, low-level wrapper for callers that schedule work themselves (a
//!   continuous-batching server): [`Model`](llama::Model), [`Context`](llama::Context) with
//!   several sequences and per-sequence KV memory, a multi-sequence [`Batch`](llama::Batch),
//!   a [`Sampler`](llama::Sampler) chain built from plain [`SamplingParams`](llama::SamplingParams)
//!   (penalties, logit bias, GBNF grammar), the [`TextStream`](llama::TextStream) stop-string
//!   matcher, and a [`CancelToken`](llama::CancelToken).
//! - [`engine`]: one sequence end to end: [`Session`](engine::Session) feeds a prompt and
//!   streams text (an iterator or a callback), stops on stop strings, end of generation or a
//!   token limit, can be cancelled from another thread, and reports timings.
//!
//! `unsafe` is denied everywhere except in `ffi` (generated bindings), `llama` (the wrapper),
//! `cpu_check` (CPUID and the pre-main refusal) and one function of `gpu_check` (`dlopen`).
#![deny(unsafe_code)]

#[doc(hidden)]
#[allow(unsafe_code)]
pub mod cpu_check;
pub mod engine;
pub mod error;
#[allow(unsafe_code)]
mod ffi;
pub mod gguf;
pub mod gpu_check;
#[allow(unsafe_code)]
pub mod llama;
pub mod load;
pub mod runtime_info;
pub mod settings;
pub mod utf8_stream;

pub use engine::{Chunk, Completion, GenerateOptions, Generation, Session, StopReason, Timings};
pub use error::{CliError as Error, Result};
