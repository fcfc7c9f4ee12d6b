//! The runtime as a library (`tunellama_runtime`), against the tuned build in the test cache:
//! its example streams exactly what `tunellama generate` prints for the same greedy request and
//! cancels from another thread; its own API tests (runtime/tests/*.rs) pass on the tiny model;
//! another cargo project with a path dependency on `runtime/` builds and runs against the
//! cached build without compiling llama.cpp, and without a build fails with one line naming
//! `cargo xtask setup`.
//!
//! Builds go to target dirs under `target/runtime-library/`, so a second run only relinks.

#[path = "support/runtime.rs"]
mod rt;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn tiny() -> PathBuf {
    rt::python_model(&[])
}

fn target(name: &str) -> PathBuf {
    rt::repo().join("target/runtime-library").join(name)
}

/// `cargo <args> [-- <program_args>]` on runtime/ against the tuned build (`TUNELLAMA_PREFIX`
/// = the test cache's current prefix), release, in its own target dir.
fn cargo_runtime(args: &[&str], program_args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(rt::repo())
        .args(args)
        .arg("--manifest-path")
        .arg(rt::repo().join("runtime/Cargo.toml"))
        .arg("--release")
        .arg("--target-dir")
        .arg(target("runtime"))
        .env("TUNELLAMA_PREFIX", rt::prefix())
        .env_remove("CARGO_TARGET_DIR");
    if !program_args.is_empty() {
        c.arg("--").args(program_args);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn example(args: &[&str]) -> Output {
    cargo_runtime(&["run", "--quiet", "--example", "stream"], args, &[])
}

#[test]
fn the_stream_example_prints_what_generate_prints_for_the_same_greedy_request() {
    let m = tiny();
    let m = m.to_str().unwrap();
    let want = rt::run(
        &["generate", "-m", m, "-n", "40", "--temp", "0", "Hello"],
        None,
    );
    ok("tunellama generate", &want);
    assert!(!want.stdout.is_empty());
    let got = example(&[m, "Hello", "-n", "40", "--temp", "0"]);
    ok("the stream example", &got);
    assert_eq!(
        got.stdout,
        want.stdout,
        "example:\n{:?}\ngenerate:\n{:?}",
        text(&got.stdout),
        text(&want.stdout)
    );
    let err = text(&got.stderr);
    for w in [
        "stopped: ",
        "prompt: ",
        "generated: ",
        "time to first token: ",
    ] {
        assert!(err.contains(w), "timings lack {w:?}:\n{err}");
    }

    // Cancelled from another thread after 5 tokens: a prefix of the same text.
    let cut = example(&[m, "Hello", "-n", "40", "--temp", "0", "--cancel-after", "5"]);
    ok("the stream example with --cancel-after", &cut);
    let err = text(&cut.stderr);
    assert!(err.contains("stopped: cancelled"), "{err}");
    assert!(err.contains("generated: 5 tokens"), "{err}");
    assert!(want.stdout.starts_with(&cut.stdout));
    assert!(cut.stdout.len() < want.stdout.len());
}

#[test]
fn the_runtime_package_api_tests_pass_on_the_tiny_model() {
    let m = tiny();
    let out = cargo_runtime(&["test"], &[], &[("TUNELLAMA_TEST_MODEL", &m)]);
    ok("cargo test in runtime/", &out);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    // The library's unit tests and both API test files ran.
    for w in [
        "llama::stop::tests::a_stop_string_spanning_tokens_is_never_emitted",
        "llama::sampler::tests::each_out_of_range_value_names_its_field_and_limit",
        "Running tests/llama_api.rs",
        "Running tests/engine_api.rs",
    ] {
        assert!(
            all.contains(w),
            "the runtime's tests did not run {w:?}:\n{all}"
        );
    }
}

const DEP_MAIN: &str = r#"
use std::io::Write;
use std::ops::ControlFlow;
use tunellama_runtime::llama::SamplingParams;
use tunellama_runtime::load::{open, ModelOptions};
use tunellama_runtime::{GenerateOptions, Session};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = open(args[1].as_ref(), &ModelOptions::default()).unwrap_or_else(|e| panic!("{}", e.message));
    let mut session = Session::new(&model).unwrap();
    let options = GenerateOptions {
        max_tokens: args[3].parse().unwrap(),
        sampling: SamplingParams::greedy(),
        ..GenerateOptions::default()
    };
    let mut out = std::io::stdout().lock();
    let done = session
        .run(&args[2], &options, |chunk| {
            out.write_all(&chunk.bytes).unwrap();
            ControlFlow::Continue(())
        })
        .unwrap();
    eprintln!("stopped: {}", done.stop.as_str());
}
"#;

/// A scratch cargo project in `dir` with a path dependency on runtime/ (library only).
fn scratch_project(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let runtime = rt::repo().join("runtime");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"uses-tunellama\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\ntunellama-runtime = {{ path = {:?}, default-features = false }}\n",
            runtime.to_str().unwrap()
        ),
    )
    .unwrap();
    // The runtime's own lock file: the same dependency versions, no resolution needed.
    std::fs::copy(runtime.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::write(dir.join("src/main.rs"), DEP_MAIN).unwrap();
}

/// `cargo <args>` in `dir` with `--target-dir` (before any `--` and program arguments).
fn cargo_in(dir: &Path, args: &[&str], target_dir: &Path) -> Command {
    let mut c = xtask::testcmd::command(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let (cargo_args, program_args) = match args.iter().position(|a| *a == "--") {
        Some(i) => args.split_at(i),
        None => (args, &[][..]),
    };
    c.current_dir(dir)
        .args(cargo_args)
        .arg("--target-dir")
        .arg(target_dir)
        .args(program_args)
        .env_remove("TUNELLAMA_PREFIX")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// Every file name under the cache's build bucket, with current.json's content: what a
/// llama.cpp build (or a new cache entry) would change.
fn builds_listing(cache: &Path) -> Vec<String> {
    let bucket = cache.join("builds-v1");
    let mut names: Vec<String> = std::fs::read_dir(&bucket)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.push(std::fs::read_to_string(bucket.join("current.json")).unwrap());
    names
}

#[test]
fn another_project_links_the_cached_build_in_process_without_compiling_llama_cpp() {
    // The test cache's current build exists (setup ran: a cache hit after the first time).
    let prefix = rt::prefix();
    let cache = xtask::testcmd::test_cache_dir();
    assert!(
        prefix.starts_with(cache.join("builds-v1")),
        "{} is not in the test cache {}",
        prefix.display(),
        cache.display()
    );
    let before = builds_listing(&cache);
    let dir = tempfile::tempdir().unwrap();
    scratch_project(dir.path());
    let m = tiny();
    let m = m.to_str().unwrap();
    // No TUNELLAMA_PREFIX: the build script finds the cache's current entry by itself.
    let out = cargo_in(
        dir.path(),
        &["run", "--release", "--", m, "Hello", "40"],
        &target("dep"),
    )
    .output()
    .unwrap();
    ok("cargo run in the scratch project", &out);
    let err = text(&out.stderr);
    assert!(!err.to_lowercase().contains("cmake"), "{err}");
    assert!(err.contains("stopped: "), "{err}");
    let want = rt::run(
        &["generate", "-m", m, "-n", "40", "--temp", "0", "Hello"],
        None,
    );
    ok("tunellama generate", &want);
    assert_eq!(out.stdout, want.stdout);
    // Nothing was built into or published in the cache.
    assert_eq!(builds_listing(&cache), before);
}

#[test]
fn another_project_without_any_build_fails_with_one_line_naming_cargo_xtask_setup() {
    let dir = tempfile::tempdir().unwrap();
    scratch_project(dir.path());
    let empty = dir.path().join("empty-cache");
    std::fs::create_dir_all(&empty).unwrap();
    let out = cargo_in(dir.path(), &["build", "--release"], &target("dep-none"))
        .env("TUNELLAMA_CACHE_DIR", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let naming: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cargo xtask setup"))
        .collect();
    assert_eq!(naming.len(), 1, "{err}");
    assert!(
        naming[0].starts_with("error: ") && naming[0].contains("no llama.cpp build found"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
