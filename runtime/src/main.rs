//! `tunellama`: the thin inference binary over the llama.cpp build `cargo xtask setup` tuned for
//! this machine. `main` checks the CPU, parses flags and dispatches to one module per command.
//!
//! Unsafe code is denied everywhere except in `ffi` (generated bindings), `llama` (the safe
//! wrapper over them), `cpu_check` (CPUID and the pre-main refusal) and one function of
//! `gpu_check` (`dlopen` of the NVIDIA driver library).
#![deny(unsafe_code)]

mod bench;
mod chat_template;
mod cli;
#[allow(unsafe_code)]
mod cpu_check;
mod error;
mod eval;
#[allow(unsafe_code)]
mod ffi;
mod generate;
mod gguf;
mod gpu_check;
mod info;
#[allow(unsafe_code)]
mod llama;
mod load;
mod logits;
mod output;
mod runtime_info;
mod serve;
mod settings;
mod template;
mod utf8_stream;

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
