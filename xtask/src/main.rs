//! `cargo xtask`: parse flags, build one context, dispatch to a stage.

mod bars;

use clap::Parser;
use std::process::ExitCode;
use xtask::cli::{Cli, Command};
use xtask::context::Ctx;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    let ctx = Ctx::new(g.cache_dir.clone(), g.json, g.quiet, g.verbose, g.yes);
    match run(&ctx, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", xtask::error::render(&e));
            ExitCode::from(2)
        }
    }
}

fn run(ctx: &Ctx, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Probe(a) => xtask::probe::run(ctx, &a),
        Command::Models(a) => xtask::models::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Bench(a) => xtask::bench::run(ctx, &a),
    }
}
