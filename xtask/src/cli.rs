//! Command-line surface: typed options for every command. Parsing only; no work happens here.

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

/// Where the Machine comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct MachineArg {
    /// Use a recorded Machine (JSON printed by `probe --json`) instead of probing this one
    #[arg(long, value_name = "FILE")]
    pub machine: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: probe, install missing build tools, render the profile, build and cache llama.cpp
    Setup(SetupArgs),
    /// Print this machine's facts (compilers, CPU features, GPUs, toolkits), each with its source
    Probe(ProbeArgs),
    /// Render this machine's CMake profile and runtime defaults; --explain says why for each flag
    Profile(ProfileArgs),
    /// Show the system tools a source build needs (cmake, ninja, compilers); --install installs them
    Prereqs(PrereqArgs),
    /// Run the project's checks: install test prerequisites, cargo fmt --check, clippy, cargo test
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Seconds after which a probe command (e.g. a wedged nvidia-smi) is stopped
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub machine: MachineArg,
    /// Print every decision with the fact that chose it, and why each backend was or was not chosen
    #[arg(long)]
    pub explain: bool,
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
    /// Also write the CMake script to FILE (atomically)
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PrereqArgs {
    /// Install what is missing through the system package manager (asks first unless --yes/CI)
    #[arg(long)]
    pub install: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Extra arguments passed to `cargo test` (e.g. a test name filter)
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
}
