//! `cargo xtask bench ...`: measurements that are too slow or too machine-dependent for tests:
//! tuned vs portable llama.cpp (the default), download throughput (`bench download`), the first
//! setup against a cold build of the `llama-cpp-2` crate (`bench first-setup`), the (tuned) build
//! against a native build of that crate and the bandwidth limit (`bench peer-native`), the
//! server under concurrent clients (`bench serve`).

pub mod builds;
pub mod download;
pub mod first_setup;
pub mod peer_native;
pub mod serve;

use crate::context::Ctx;
use std::process::ExitCode;

pub fn run(
    ctx: &Ctx,
    args: &BenchArgs,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<ExitCode> {
    match &args.command {
        None => builds::run(ctx, &args.builds, progress),
        Some(BenchCommand::Download(a)) => download::run(ctx, a),
        Some(BenchCommand::FirstSetup(a)) => first_setup::run(ctx, a),
        Some(BenchCommand::PeerNative(a)) => peer_native::run(ctx, a, progress),
        Some(BenchCommand::Serve(a)) => serve::run(ctx, a, progress),
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub builds: crate::bench::builds::BenchBuildsArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Download throughput with hashing, against `curl -o` on the same loopback server
    Download(crate::bench::download::BenchDownloadArgs),
    /// The first setup (fresh clone, empty target dir and cache) against a cold release build of
    /// a project depending on the `llama-cpp-2` crate (same llama.cpp tree), in one run
    FirstSetup(crate::bench::first_setup::BenchFirstSetupArgs),
    /// This machine's (tuned) build against a `target-cpu=native` build of the `llama-cpp-2`
    /// crate (same tree) in alternating rounds, and tg against the memory-bandwidth limit
    PeerNative(crate::bench::peer_native::BenchPeerNativeArgs),
    /// `tunellama serve` on the bench model: aggregate tokens/s and time to first token with 1,
    /// 2, 4, 8 concurrent clients and one after another, against `tunellama bench`'s tg
    Serve(crate::bench::serve::BenchServeArgs),
}
