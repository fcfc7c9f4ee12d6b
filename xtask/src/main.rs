//! `cargo xtask`: parse flags, build one context, dispatch to a stage.

mod bars;

use clap::Parser;
use std::process::ExitCode;
use xtask::cli::{Cli, Command};
use xtask::context::Ctx;

fn main() -> ExitCode {
    // `cargo xtask status --json | head` must end quietly, not panic on the closed pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        Command::Setup(a) => xtask::setup::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Probe(a) => xtask::probe::run(ctx, &a),
        Command::Profile(a) => xtask::profile::run(ctx, &a),
        Command::Prereqs(a) => xtask::prereq::run(ctx, &a),
        Command::Status(a) => xtask::status::status(ctx, &a),
        Command::Cache(a) => xtask::status::cache_cmd(ctx, &a),
        Command::Test(a) => xtask::testcmd::run(ctx, &a),
        Command::Pin(a) => xtask::source::pin_cmd::run(ctx, &a),
        Command::Source(a) => xtask::source::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Models(a) => xtask::models::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Testmodel(a) => xtask::testmodel::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Bench(a) => xtask::bench::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Dist(a) => xtask::dist::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Cross(a) => xtask::cross::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::ServeWasm(a) => xtask::wasm_serve::run(ctx, &a, &*bars::for_ctx(ctx)),
        Command::Run(a) => xtask::status::run_runtime(ctx, &a.args),
        Command::Serve(a) => xtask::serve::run(ctx, &a),
        Command::Bindings(a) => xtask::bindings::run(ctx, &a),
        Command::Ci(a) => xtask::ci::run(ctx, &a),
        Command::Prebuilt(a) => xtask::prebuilt::run(ctx, &a),
    }
}
