//! `cargo xtask bench ...`: measurements that are too slow or too machine-dependent for tests.

pub mod download;

use crate::cli::{BenchArgs, BenchCommand};
use crate::context::Ctx;
use std::process::ExitCode;

pub fn run(ctx: &Ctx, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        BenchCommand::Download(a) => download::run(ctx, a),
    }
}
