//! tunellama's xtask library: every pipeline stage as a module with plain data in and out.
//!
//! `main.rs` only parses flags and dispatches; everything testable lives here.

pub mod artifact;
pub mod bench;
pub mod bindings;
pub mod build;
pub mod cache;
pub mod ci;
pub mod cli;
pub mod cmd;
pub mod context;
pub mod cross;
pub mod cuda_wheels;
pub mod dist;
pub mod download;
pub mod env;
pub mod error;
pub mod fsx;
pub mod gguf;
pub mod gguf_write;
pub mod hashing;
pub mod key;
pub mod machine;
pub mod models;
pub mod prebuilt;
pub mod prereq;
pub mod probe;
pub mod profile;
pub mod progress;
pub mod report;
pub mod requirements;
pub mod runtime_build;
pub mod serve;
pub mod setup;
pub mod setup_plan;
pub mod shipped_logits;
pub mod source;
pub mod status;
pub mod test_python;
pub mod testcmd;
pub mod testmodel;
pub mod tune;
pub mod verify;
pub mod vulkan_headers;
pub mod wasm;
pub mod wasm_serve;
