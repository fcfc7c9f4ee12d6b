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
//! - [`engine`]: one sequence end to end: [`Session`] feeds a prompt and
//!   streams text (an iterator or a callback), stops on stop strings, end of generation or a
//!   token limit, can be cancelled from another thread, and reports timings.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use tunellama_runtime::load::{open, ModelOptions};
//! use tunellama_runtime::{GenerateOptions, Session};
//!
//! # fn main() -> tunellama_runtime::Result<()> {
//! let model = open("model.gguf".as_ref(), &ModelOptions::default())?; // tuned defaults
//! let mut session = Session::new(&model)?;
//! // Iterator: every chunk's `text` is valid UTF-8.
//! let mut generation = session.generate("Once upon a time", &GenerateOptions::default())?;
//! let stop = generation.cancel_token(); // Send + Clone: `stop.cancel()` from any thread
//! for chunk in generation.by_ref() {
//!     print!("{}", chunk?.text);
//! }
//! println!("\n{:?} {:?}", generation.stop_reason(), generation.timings());
//! drop(generation);
//! // Callback: the same, ending with the whole text, the stop reason and timings.
//! let done = session.run("Once upon a time", &GenerateOptions::default(), |chunk| {
//!     print!("{}", chunk.text);
//!     ControlFlow::Continue(())
//! })?;
//! # let _ = (stop, done);
//! # Ok(())
//! # }
//! ```
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
