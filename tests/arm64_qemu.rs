//! arm64 under emulation (issue 10, section 3): declared arm64 machines are cross-built on this
//! x86-64 host with the same profile rules (Debian's aarch64 cross compilers, a generated CMake
//! toolchain file), and a static C verification program runs under `qemu-aarch64 -cpu MODEL`: the
//! portable armv8-a build on a Cortex-A72, the armv8.2-a+dotprod build on a Neoverse-N1, both
//! matching the x86 portable build's logits; the v8.2 build is refused on the Cortex-A72 (exit 3,
//! the missing feature named) instead of dying with SIGILL. No Rust runtime is involved (rustup here
//! has no aarch64 target). `cargo xtask test` installs the cross compilers and qemu-user first.
//! The builds are cached in TUNELLAMA_CACHE_DIR (`cargo xtask test` points it at the test cache), so a second run is fast.

#[path = "support/checks.rs"]
mod checks;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROMPT: &str = "The quick brown fox jumps over the lazy dog";

/// The two tests build llama.cpp; one build at a time on a small machine.
static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Value {
    let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("--json")
        .env("CI", "true")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn qemu(cpu: &str, program: &Path, model: &str) -> std::process::Output {
    Command::new("qemu-aarch64")
        .args(["-cpu", cpu])
        .arg(program)
        .args([model, "1", PROMPT])
        .output()
        .expect("qemu-aarch64 must be installed (cargo xtask test installs qemu-user)")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect()
}

/// The verification tolerance (xtask/src/verify/runtime.rs): |d| <= 0.01 + 0.01 |ref|.
fn assert_close(ours: &[f32], reference: &[f32], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: n_vocab");
    for (i, (a, r)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - r).abs() <= 0.01 + 0.01 * r.abs(),
            "{what}: logit {i} is {a}, the x86 portable build's is {r}"
        );
    }
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    assert_eq!(argmax(ours), argmax(reference), "{what}: argmax");
}

/// Runs the program kept in an entry's prefix on `cpu` and checks its logits ourselves.
fn run_and_compare(entry: &Path, cpu: &str, model: &str, reference: &[f32]) {
    let program = entry.join("prefix/bin/tunellama-logits-check");
    let out = qemu(cpu, &program, model);
    assert!(
        out.status.success(),
        "{} on -cpu {cpu}: {:?}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_close(&floats(&v["logits"]), reference, &format!("-cpu {cpu}"));
}

#[test]
fn arm64_builds_match_x86_logits_under_qemu_and_a_v82_build_is_refused_on_cortex_a72() {
    let r = xtask(&[
        "cross",
        "--machine",
        "tests/fixtures/machines/declared-linux-arm64-v82-dotprod.json",
    ]);
    assert_eq!(r["arm_arch"], "armv8.2-a+dotprod", "{r}");
    let e = &r["verification"]["emulated"];
    assert_eq!(e["cpu"], "neoverse-n1", "{e}");
    assert!(
        e["emulator"].as_str().unwrap().starts_with("qemu-aarch64 "),
        "{e}"
    );
    assert!(e["rust_runtime"]
        .as_str()
        .unwrap()
        .contains("no Rust runtime"));
    assert!(
        e["hwcaps"].as_array().unwrap().contains(&"asimddp".into()),
        "{e}"
    );
    assert!(
        e["system_info"].as_str().unwrap().contains("DOTPROD = 1"),
        "{e}"
    );
    checks::assert_emulated_logits_match_the_portable_build(e);
    // The refusal, as the pipeline recorded it...
    let refusal = &e["refusal"];
    assert_eq!(refusal["cpu"], "cortex-a72");
    assert_eq!(refusal["exit_code"], 3);
    assert!(refusal["message"].as_str().unwrap().contains("asimddp"));

    // ...and again here, on the program the entry keeps: exit 3 naming the feature, not SIGILL.
    let entry = PathBuf::from(r["entry"].as_str().unwrap());
    let model = e["model"].as_str().unwrap();
    let program = entry.join("prefix/bin/tunellama-logits-check");
    let out = qemu("cortex-a72", &program, model);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{:?}: {stderr}", out.status);
    assert!(
        stderr.contains("dotprod") && stderr.contains("asimddp"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no logits from a refused run");

    let reference = floats(&e["logits"]["reference_values"]);
    run_and_compare(&entry, "neoverse-n1", model, &reference);

    // The portable arm64 reference (armv8-a), built alongside, runs on an Armv8.0 core.
    let portable = e["portable_arm64"].as_str().unwrap();
    assert!(portable.contains("-cpu cortex-a72"), "{portable}");
    let key = portable
        .strip_prefix("portable arm64 build ")
        .and_then(|s| s.split(':').next())
        .unwrap();
    let portable_entry = entry.parent().unwrap().join(key);
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(portable_entry.join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        m["decisions"]
            .to_string()
            .contains(r#"["GGML_CPU_ARM_ARCH","armv8-a"]"#),
        "{}",
        m["decisions"]
    );
    let pe = &m["verification"]["emulated"];
    assert_eq!(pe["cpu"], "cortex-a72", "{pe}");
    assert!(pe["refusal"].is_null(), "armv8-a needs nothing to refuse");
    assert!(!pe["system_info"].as_str().unwrap().contains("DOTPROD = 1"));
    run_and_compare(&portable_entry, "cortex-a72", model, &reference);
}

#[test]
fn dist_cross_builds_the_linux_arm64_variant_and_says_what_ran() {
    let out = tempfile::tempdir().unwrap();
    let r = xtask(&[
        "dist",
        "--variant",
        "linux-arm64",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let emulated = r["emulated"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(
        emulated.contains("C-level logits under qemu-aarch64")
            && emulated.contains("-cpu ")
            && emulated.contains("max |diff|")
            && emulated.contains("no Rust runtime"),
        "{emulated}"
    );
    assert!(Path::new(r["archive"].as_str().unwrap()).is_file());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(r["manifest"].as_str().unwrap()).unwrap())
            .unwrap();
    let files = manifest["files"].to_string();
    assert!(files.contains("bin/tunellama-logits-check"), "{files}");
    assert!(files.contains("lib/libllama.a"), "{files}");
}
