//! Helpers of the wasm tests (tests/wasm_*.rs): the cached wasm build through `cargo xtask cross`,
//! and node with the flag node 20 needs for emscripten's output.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// The wasm tests share one build; one build at a time on a small machine.
static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Held while a test runs a command that may build the variant.
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    BUILDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `cargo xtask ARGS` in the repository with the test cache, `CI=true` (installs without
/// asking); its JSON stdout, after asserting success.
pub fn xtask_json(args: &[&str]) -> Value {
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CI", "true")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `cargo xtask cross --machine ci/machines/wasm32-emscripten.json --json` (built once, cached).
pub fn cross_wasm() -> Value {
    let _one = lock();
    xtask_json(&[
        "cross",
        "--machine",
        "ci/machines/wasm32-emscripten.json",
        "--json",
    ])
}

/// The module's JavaScript file and the tiny model of a `cross_wasm` report.
pub fn module_and_model(r: &Value) -> (PathBuf, PathBuf) {
    let entry = PathBuf::from(r["entry"].as_str().unwrap());
    (
        entry.join("prefix/wasm/tunellama.js"),
        PathBuf::from(r["verification"]["emulated"]["model"].as_str().unwrap()),
    )
}

/// `node --no-experimental-fetch ARGS`; its stdout, after asserting success.
pub fn node(args: &[&str]) -> String {
    let out = std::process::Command::new("node")
        .arg(xtask::wasm::NODE_FLAG)
        .args(args)
        .output()
        .expect("node (package nodejs; cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "node {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect()
}

pub fn script(name: &str) -> String {
    repo().join("tests/wasm").join(name).display().to_string()
}
