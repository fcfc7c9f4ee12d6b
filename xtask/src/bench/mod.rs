//! `cargo xtask bench ...`: measurements that are too slow or too machine-dependent for tests:
//! tuned vs portable llama.cpp (the default), download throughput (`bench download`), the first
//! setup against a cold build of the `llama-cpp-2` crate (`bench first-setup`).

pub mod builds;
pub mod download;
pub mod first_setup;

use crate::cli::{BenchArgs, BenchCommand};
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
    }
}
