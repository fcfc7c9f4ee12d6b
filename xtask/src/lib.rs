//! tunellama's xtask library: every pipeline stage as a module with plain data in and out.
//!
//! `main.rs` only parses flags and dispatches; everything testable lives here.

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod context;
pub mod download;
pub mod env;
pub mod error;
pub mod gguf;
pub mod machine;
pub mod models;
pub mod probe;
pub mod progress;
pub mod report;
