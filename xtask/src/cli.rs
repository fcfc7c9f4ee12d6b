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
    /// Print this machine's facts (compilers, CPU features, GPUs, toolkits), each with its source
    Probe(ProbeArgs),
    /// Model catalog: list, recommend, fetch (checksummed), verify, path, rm
    Models(ModelsArgs),
    /// Measurements (`bench download`: download throughput against curl on loopback)
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Seconds after which a probe command (e.g. a wedged nvidia-smi) is stopped
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// Extra catalogs, read after `models/catalog.toml` and `models/local.toml`.
#[derive(Debug, Args, Clone, Default)]
pub struct CatalogArg {
    /// A catalog file of your own (repeatable); its entries override same-named ones
    #[arg(long = "catalog", value_name = "FILE")]
    pub catalog: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the catalog's models with what fits this machine and what is stored
    List {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        machine: MachineArg,
    },
    /// The best model for this machine's RAM/VRAM, and why
    Recommend {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        machine: MachineArg,
        /// What the model is for
        #[arg(long, default_value = "chat", value_parser = ["chat", "code", "embedding"])]
        purpose: String,
    },
    /// Download models, verify size and sha256, and store them
    Fetch(FetchArgs),
    /// Re-hash stored models (all stored ones, or NAME); a mismatching file is removed
    Verify {
        name: Option<String>,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Print the absolute path of a stored, verified model (exit status 1 when absent)
    Path {
        name: String,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Remove a stored model
    Rm {
        name: String,
        #[command(flatten)]
        catalog: CatalogArg,
    },
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Catalog names of the models to fetch
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub catalog: CatalogArg,
    /// Accept plain http:// sources (no integrity or privacy on the way; the sha256 still holds)
    #[arg(long)]
    pub allow_http: bool,
    /// Use only what is stored; fail instead of downloading
    #[arg(long)]
    pub offline: bool,
    /// Retries after transient failures (connection errors, timeouts, 5xx)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// First wait before a retry, doubled each time [default: 1000]
    #[arg(long, value_name = "MS", hide = true)]
    pub backoff_ms: Option<u64>,
    /// Seconds without data after which a transfer counts as stalled [default: 60]
    #[arg(long, value_name = "SECS")]
    pub stall_timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Download throughput with hashing, against `curl -o` on the same loopback server
    Download(BenchDownloadArgs),
}

#[derive(Debug, Args)]
pub struct BenchDownloadArgs {
    /// Size of the served file
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub size_mib: u64,
    /// Runs of each client (the best run counts)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub runs: u32,
}
