//! The WebAssembly variant (issue 14, points 1 and 2): `cargo xtask cross --machine
//! ci/machines/wasm32-emscripten.json` builds the pinned tree with Debian's Emscripten through the
//! same source/build/cache stages (its own key), links the tunellama module (C shim + JavaScript
//! API) and verifies it under node: the logits of the verification prompt match the x86 portable
//! build's within the tolerance, argmax equal, and the SIMD128 kernels are compiled in. The test
//! checks the recorded verification and then runs the kept module under node itself. Cached in
//! TUNELLAMA_CACHE_DIR (`cargo xtask test` points it at the test cache): a second run is a hit.

#[path = "support/checks.rs"]
mod checks;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/wasm.rs"]
mod wasm;
use wasm::{cross_wasm, floats, node};

/// Our own comparison with the reference, through the library's tolerance check
/// (|d| <= 0.01 + 0.01 |ref| per logit), argmax equal.
fn assert_close(ours: &[f32], reference: &[f32]) {
    let c = xtask::verify::runtime::compare(ours, reference, "x86 portable build")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.worst_ratio <= 1.0, "{c:?}");
    assert_eq!(c.top_token, c.reference_top_token, "argmax");
}

#[test]
fn the_wasm_build_matches_x86_logits_under_node_with_simd128_kernels() {
    let r = cross_wasm();
    assert_eq!(r["machine"], "wasm32-emscripten", "{r}");
    let e = &r["verification"]["emulated"];
    let emulator = e["emulator"].as_str().unwrap();
    assert!(emulator.starts_with("node "), "{e}");
    assert!(emulator.contains("--no-experimental-fetch"), "{e}");
    for f in e["features"].as_array().unwrap() {
        assert_eq!(f["compiled"], true, "{f}");
    }
    assert!(
        e["system_info"].as_str().unwrap().contains("WASM_SIMD = 1"),
        "{e}"
    );
    checks::assert_emulated_logits_match_the_portable_build(e);

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

    // One key computation: `setup --dry-run` plans the same key for this machine, as a hit.
    let plan = wasm::xtask_json(&[
        "setup",
        "--machine",
        "ci/machines/wasm32-emscripten.json",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(plan["key"], r["key"], "{plan}");
    assert_eq!(plan["cache"]["state"], "hit", "{plan}");
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

#[test]
fn dist_packs_the_module_its_types_and_the_page_with_sha256() {
    let out_dir = tempfile::tempdir().unwrap();
    let _one = wasm::lock();
    let r = wasm::xtask_json(&[
        "dist",
        "--variant",
        "wasm32-emscripten",
        "--out",
        out_dir.path().to_str().unwrap(),
        "--json",
    ]);
    let emulated = r["emulated"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(emulated.contains("wasm module under node"), "{emulated}");
    let archive = PathBuf::from(r["archive"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(r["manifest"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(manifest["target"], "wasm32-unknown-emscripten");
    assert_eq!(manifest["verification"]["status"], "emulated", "{manifest}");
    let files = manifest["files"].as_array().unwrap();
    let sha_of = |path: &str| {
        files
            .iter()
            .find(|f| f["path"] == path)
            .and_then(|f| f["sha256"].as_str())
            .unwrap_or_else(|| panic!("{path} not in the manifest: {files:?}"))
            .to_string()
    };
    for p in [
        "web/index.html",
        "web/app.js",
        "web/tunellama.js",
        "web/tunellama.wasm",
        "web/tunellama.d.ts",
        "wasm/tunellama.wasm",
        "lib/libllama.a",
    ] {
        assert_eq!(sha_of(p).len(), 64, "{p}");
    }
    // The page's module is the verified one, and the .d.ts is ours.
    assert_eq!(sha_of("web/tunellama.wasm"), sha_of("wasm/tunellama.wasm"));
    use sha2::Digest;
    let dts = std::fs::read(wasm::repo().join("wasm/tunellama.d.ts")).unwrap();
    assert_eq!(
        sha_of("web/tunellama.d.ts"),
        xtask::hashing::hex(&sha2::Sha256::digest(&dts))
    );
    let bytes = std::fs::read(&archive).unwrap();
    assert_eq!(
        manifest["archive"]["sha256"],
        xtask::hashing::hex(&sha2::Sha256::digest(&bytes))
    );
}

#[test]
fn the_probe_finds_emcc_and_node_by_asking_them() {
    let m = wasm::xtask_json(&["probe", "--json"]);
    for (tool, version) in [("emcc", "3."), ("node", "")] {
        let t = &m["tools"][tool];
        assert_eq!(
            t["status"], "found",
            "{tool}: {t} (cargo xtask test installs it)"
        );
        assert!(t["version"].as_str().unwrap().starts_with(version), "{t}");
        assert_eq!(
            t["source"].as_str().unwrap(),
            format!("{} --version", t["path"].as_str().unwrap())
        );
    }
}
