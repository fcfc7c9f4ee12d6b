//! The WebAssembly variant (issue 14, points 1 and 2): `cargo xtask cross --machine
//! ci/machines/wasm32-emscripten.json` builds the pinned tree with Debian's Emscripten through the
//! same source/build/cache stages (its own key), links the tunellama module (C shim + JavaScript
//! API) and verifies it under node: the logits of the verification prompt match the x86 portable
//! build's within the tolerance, argmax equal, and the SIMD128 kernels are compiled in. The test
//! checks the recorded verification and then runs the kept module under node itself. Cached in
//! TUNELLAMA_CACHE_DIR (`cargo xtask test` points it at the test cache): a second run is a hit.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/wasm.rs"]
mod wasm;
use wasm::{cross_wasm, floats, node};

/// The verification tolerance (xtask/src/verify/runtime.rs): |d| <= 0.01 + 0.01 |ref|.
fn assert_close(ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "n_vocab");
    for (i, (a, r)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - r).abs() <= 0.01 + 0.01 * r.abs(),
            "logit {i} is {a}, the x86 portable build's is {r}"
        );
    }
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    assert_eq!(argmax(ours), argmax(reference), "argmax");
}

#[test]
fn the_wasm_build_matches_x86_logits_under_node_with_simd128_kernels() {
    let r = cross_wasm();
    assert_eq!(r["machine"], "wasm32-emscripten", "{r}");
    let e = &r["verification"]["emulated"];
    assert!(
        e["emulator"].as_str().unwrap().starts_with("node 20.")
            || e["emulator"].as_str().unwrap().starts_with("node "),
        "{e}"
    );
    assert!(e["emulator"]
        .as_str()
        .unwrap()
        .contains("--no-experimental-fetch"));
    for f in e["features"].as_array().unwrap() {
        assert_eq!(f["compiled"], true, "{f}");
    }
    assert!(
        e["system_info"].as_str().unwrap().contains("WASM_SIMD = 1"),
        "{e}"
    );
    assert!(e["logits"]["worst_ratio"].as_f64().unwrap() <= 1.0, "{e}");
    assert_eq!(e["logits"]["top_token"], e["logits"]["reference_top_token"]);
    assert!(
        e["logits"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("portable build "),
        "the reference is the x86 portable build's runtime: {e}"
    );

    // The entry's profile carries the wasm decisions and the key its own toolchain.
    let entry = PathBuf::from(r["entry"].as_str().unwrap());
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("manifest.json")).unwrap())
            .unwrap();
    let decisions = m["decisions"].to_string();
    for d in [
        r#"["EMSCRIPTEN_SYSTEM_PROCESSOR","wasm32"]"#,
        r#"["GGML_OPENMP","OFF"]"#,
        r#"["LLAMA_WASM_MEM64","OFF"]"#,
        r#"["GGML_NATIVE","OFF"]"#,
    ] {
        assert!(decisions.contains(d), "{d} not in {decisions}");
    }
    let cross = m["inputs"]["toolchain"]["cross"].as_str().unwrap();
    assert!(
        cross.starts_with("wasm32-emscripten toolchain file sha256:"),
        "{cross}"
    );
    // The module's sources are the entry's runtime source: a shim or API change relinks the
    // module and reuses the llama.cpp libraries.
    assert!(
        m["inputs"]["runtime_source"]
            .as_str()
            .unwrap()
            .starts_with("wasm module "),
        "{}",
        m["inputs"]
    );
    assert!(m["inputs"]["rust"].is_null(), "no Rust in a wasm build");
    assert!(m["inputs"]["toolchain"]["c"]
        .as_str()
        .unwrap()
        .starts_with("emscripten 3."));

    // Again here, on the module the entry keeps: our own run under node, our own comparison.
    let prefix = entry.join("prefix");
    for f in ["tunellama.js", "tunellama.wasm", "tunellama.d.ts"] {
        assert!(prefix.join("wasm").join(f).is_file(), "{f} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("logits.js");
    std::fs::write(&script, xtask::verify::wasm::LOGITS_JS).unwrap();
    let model = e["model"].as_str().unwrap();
    let out = node(&[
        script.to_str().unwrap(),
        prefix.join("wasm/tunellama.js").to_str().unwrap(),
        model,
        xtask::verify::runtime::PROMPT,
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_close(
        &floats(&v["logits"]),
        &floats(&e["logits"]["reference_values"]),
    );

    // The SIMD check on the entry's own library: the arch/wasm kernels are in it.
    let nm = Command::new("emnm")
        .arg("--defined-only")
        .arg(prefix.join("lib/libggml-cpu.a"))
        .output()
        .expect("emnm (package emscripten; cargo xtask test installs it)");
    assert!(xtask::verify::wasm::wasm_kernels_in(
        &String::from_utf8_lossy(&nm.stdout)
    ));

    // A second run is a cache hit: the build is not repeated.
    let again = cross_wasm();
    assert_eq!(again["outcome"], "hit", "{again}");
    assert_eq!(again["key"], r["key"]);
}

#[test]
fn the_wasm_profile_explains_simd128_memory_openmp_and_threads() {
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "profile",
            "--machine",
            "ci/machines/wasm32-emscripten.json",
            "--explain",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for needle in [
        "EMSCRIPTEN_SYSTEM_PROCESSOR  wasm32",
        "falls back to its generic code",
        "LLAMA_WASM_MEM64",
        "GGML_OPENMP",
        "threads: off in this first version",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}
