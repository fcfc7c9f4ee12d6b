//! Command-line surface: the top-level parser, the global options and the list of commands. Each
//! command's options type lives in the stage that runs it (`setup_plan::SetupArgs`,
//! `probe::ProbeArgs`, ...): this module composes them, and no stage imports this module.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Probe this machine, render its llama.cpp build profile, build, verify and cache it",
    version
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where everything the tool writes outside `target/` goes [default: the platform cache dir]
    #[arg(long, global = true, env = crate::env::CACHE_DIR_VAR, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print data as JSON on stdout (human messages stay on stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Answer yes to questions (installing missing prerequisites); implied when not interactive
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: probe, install missing build tools, render the profile, build and cache llama.cpp
    Setup(crate::setup_plan::SetupArgs),
    /// Print this machine's facts (compilers, CPU features, GPUs, toolkits), each with its source
    Probe(crate::probe::ProbeArgs),
    /// Render this machine's CMake profile and runtime defaults; --explain says why for each flag
    Profile(crate::profile::ProfileArgs),
    /// Show the system tools a source build needs (cmake, ninja, compilers); --install installs them
    Prereqs(crate::prereq::PrereqArgs),
    /// Which build is current for this machine, its key inputs, and whether it is fresh
    Status(crate::status::StatusArgs),
    /// List or garbage-collect cached builds
    Cache(crate::status::CacheArgs),
    /// Run the project's checks: install test prerequisites, cargo fmt --check, clippy, cargo test
    Test(crate::testcmd::TestArgs),
    /// Hash a llama.cpp tree and show (or --write) the pin: moving to a newer llama.cpp
    Pin(crate::source::pin_cmd::PinArgs),
    /// Obtain the pinned llama.cpp tree and verify its digest; prints the verified tree
    Source(crate::source::SourceArgs),
    /// Model catalog: list, recommend, fetch (checksummed), verify, path, rm
    Models(crate::models::ModelsArgs),
    /// Tuned vs portable llama.cpp: pp and tg tokens/s of both runtimes and their ratio
    /// (`bench download`: download throughput against curl on loopback)
    Bench(crate::bench::BenchArgs),
    /// The prebuilt CI matrix: print it (--json for an Actions matrix), generate or lint the workflow
    Ci(crate::ci::CiArgs),
    /// The prebuilt index: gather dist manifests into it, or show which artifact fits this machine
    Prebuilt(crate::prebuilt::PrebuiltArgs),
    /// Write a deterministic llama-architecture test model (GGUF) from a seed
    Testmodel(crate::testmodel::TestModelArgs),
    /// Build one CI matrix variant (ci/matrix.toml) and pack it as a prebuilt archive + manifest
    Dist(crate::dist::DistArgs),
    /// Cross-build a declared arm64 Machine on this x86-64 host and verify it under qemu-aarch64,
    /// or the wasm32 one (ci/machines/wasm32-emscripten.json) with Emscripten, verified under node
    Cross(crate::cross::CrossArgs),
    /// Serve the wasm variant's page, module and a model on 127.0.0.1 (docs/wasm.md)
    ServeWasm(crate::wasm_serve::ServeArgs),
    /// Run the current build's runtime binary with ARGS (`cargo xtask run -- info --json`)
    Run(crate::status::RunArgs),
    /// Serve a model (a file or a catalog name) over an OpenAI-compatible HTTP API with the current runtime
    Serve(crate::serve::ServeArgs),
    /// Regenerate the runtime's FFI bindings from the pinned llama.h (needs libclang; installs it)
    Bindings(crate::bindings::BindingsArgs),
}
