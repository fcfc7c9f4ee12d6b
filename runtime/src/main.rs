//! `tunellama`: the thin inference binary over the llama.cpp build `cargo xtask setup` tuned for
//! this machine. `main` checks the CPU, parses flags and dispatches to one module per command.
//!
//! The engine itself is the library `tunellama_runtime` (`lib.rs`); this binary holds only the
//! commands. Unsafe code is denied here and in the library, except in the library's `ffi`,
//! `llama`, `cpu_check` and one function of `gpu_check`.
#![deny(unsafe_code)]

mod bench;
mod chat_template;
mod cli;
mod eval;
mod generate;
mod info;
mod logits;
mod output;
mod serve;
mod template;

use tunellama_runtime::{cpu_check, error, gguf, gpu_check, llama, load, settings};

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // On Linux this already ran before any constructor (.preinit_array); elsewhere it runs here,
    // still before any llama.cpp code.
    cpu_check::check_at_main();
    let cli = cli::Cli::parse();
    // A GPU build without a usable device stops here, saying why (never a silent CPU run).
    let r = gpu_check::check(&settings::info().compiled_for.backends).and_then(|()| {
        match cli.command {
            cli::Command::Info { json } => info::run(json),
            cli::Command::Generate(a) => generate::run(a),
            cli::Command::Logits(a) => logits::run(a),
            cli::Command::Bench(a) => bench::run(a),
            cli::Command::Serve(a) => serve::run(a),
            cli::Command::Template(a) => template::run(a),
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(h) = e.hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(e.code)
        }
    }
}
