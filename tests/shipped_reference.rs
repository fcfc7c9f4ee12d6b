//! The reference logits shipped beside the pin (profiles/reference-logits.json): they agree with
//! the portable build of the pinned tree on this machine (recomputed from the test cache's
//! portable build), and `setup` verifies against them without building the portable reference.
//! The refusals (other pin, model, architecture) are decided on plain data in
//! `xtask/src/shipped_logits.rs`'s unit tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask() -> Command {
    let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    c.env("CI", "true")
        .env_remove("CUDA_PATH")
        .env_remove("CUDA_HOME");
    c
}

fn json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_shipped_logits_agree_with_the_portable_build_of_the_pinned_tree() {
    // Recomputes this machine's entry from the portable build (cached in the test cache) and
    // compares it with the checked-in one; --write is not passed, so the file is left alone.
    let before = std::fs::read(repo().join("profiles/reference-logits.json")).unwrap();
    let out = xtask()
        .args(["pin", "--reference", "--json"])
        .output()
        .unwrap();
    let r = json(&out, "pin --reference");
    let worst = r["previous_worst_ratio"].as_f64().unwrap_or_else(|| {
        panic!(
            "profiles/reference-logits.json has no logits for this pin, architecture and model: {r}\nregenerate with `cargo xtask pin --reference --write`"
        )
    });
    assert!(worst <= 1.0, "{r}");
    assert_eq!(r["n_vocab"], 320, "{r}");
    assert_eq!(
        std::fs::read(repo().join("profiles/reference-logits.json")).unwrap(),
        before,
        "without --write the shipped file must not change"
    );
}

#[test]
fn setup_verifies_against_the_shipped_logits_without_building_the_portable_reference() {
    if cfg!(not(target_arch = "x86_64")) {
        panic!("the shipped reference logits are checked in for x86_64 only; this test needs them (`cargo xtask pin --reference --write` adds this architecture)");
    }
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.toml");
    std::fs::write(&none, "").unwrap();
    // The tuned build, from the test cache (built there once).
    let first = json(
        &xtask()
            .args(["setup", "--json", "--overrides"])
            .arg(&none)
            .output()
            .unwrap(),
        "setup",
    );
    let key = first["key"].as_str().unwrap();
    let pin = xtask::source::pin::Pin::load(&repo().join("profiles/llama.pin.toml")).unwrap();
    let shipped = format!("shipped logits for pin {}", &pin.tree.digest[..12]);
    // A fresh cache holding only that entry: whatever setup needs it must make here.
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("builds-v1")).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(first["entry"].as_str().unwrap())
        .arg(cache.join("builds-v1").join(key))
        .status()
        .unwrap();
    assert!(st.success());
    // A GPU appears (no CUDA toolkit: the profile stays a CPU build): same key, new machine
    // fingerprint, so setup re-runs every verification of the existing build.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("nvidia-smi"),
        "#!/bin/sh\necho '0, NVIDIA GeForce RTX 3060, 8.6, 12288, 580.95.05'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("nvidia-smi"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = xtask()
        .args(["setup", "--json", "--overrides"])
        .arg(&none)
        .arg("--cache-dir")
        .arg(&cache)
        .env("PATH", &path)
        .output()
        .unwrap();
    let second = json(&out, "setup in the fresh cache");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(second["outcome"], "reverified", "{second}\n{stderr}");
    assert_eq!(second["key"], key);
    assert!(
        stderr.contains(&format!("reference: {shipped}, model tiny-")),
        "{stderr}"
    );
    let entries: Vec<String> = std::fs::read_dir(cache.join("builds-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && !n.ends_with(".json") && !n.starts_with('.'))
        .collect();
    assert_eq!(
        entries,
        [key.to_string()],
        "setup built another entry (the portable reference?)"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(cache.join("builds-v1").join(key).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let logits = &manifest["verification"]["runtime"]["logits"];
    assert!(
        logits["reference"].as_str().unwrap().starts_with(&shipped),
        "{logits}"
    );
    assert!(logits["worst_ratio"].as_f64().unwrap() <= 1.0, "{logits}");
}
