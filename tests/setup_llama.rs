//! The real thing: `setup` fetches the pinned llama.cpp through the crate registry, verifies it,
//! builds it with this machine's profile, verifies the result and publishes a cache entry.
//! It uses TUNELLAMA_CACHE_DIR (`cargo xtask test` points it at the test cache) so a machine pays the build once.

use serde_json::Value;

fn xtask(args: &[&str], overrides: &std::path::Path) -> Value {
    let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).arg("--json").env("CI", "true");
    if args[0] != "probe" {
        c.arg("--overrides").arg(overrides);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn setup_builds_the_pinned_llama_cpp_natively_and_the_second_run_is_a_hit() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("no-overrides.toml");
    std::fs::write(&none, "").unwrap();

    let first = xtask(&["setup"], &none);
    assert!(
        ["built", "hit", "reverified"].contains(&first["outcome"].as_str().unwrap()),
        "{first}"
    );
    assert_eq!(first["pinned"], true);
    let entry = std::path::Path::new(first["entry"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("manifest.json")).unwrap())
            .unwrap();
    let files = manifest["files"].as_array().unwrap();
    let sha_of = |p: &str| {
        files
            .iter()
            .find(|f| f["path"] == p)
            .map(|f| f["sha256"].as_str().unwrap().to_string())
    };
    for lib in ["libllama.a", "libggml.a", "libggml-base.a", "libggml-cpu.a"] {
        let sha =
            sha_of(&format!("prefix/lib/{lib}")).unwrap_or_else(|| panic!("{lib} not in manifest"));
        assert_eq!(sha.len(), 64);
    }
    assert!(sha_of("prefix/include/llama.h").is_some());
    assert!(
        manifest["decisions"]
            .to_string()
            .contains("[\"GGML_NATIVE\",\"ON\"]"),
        "{}",
        manifest["decisions"]
    );

    // What llama.cpp says it was compiled for matches what the probe found in this CPU.
    let machine = xtask(&["probe"], &none);
    let info = manifest["verification"]["smoke"]["system_info"]
        .as_str()
        .unwrap();
    let has = |f: &str| {
        machine["cpu"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == f)
    };
    assert_eq!(info.contains("AVX512 = 1"), has("avx512f"), "{info}");
    assert_eq!(info.contains("AVX2 = 1"), has("avx2"), "{info}");

    // The runtime was built, verified against the portable build, and its report recorded.
    let rt = &manifest["verification"]["runtime"];
    assert!(rt["generate"]["tokens"].as_u64().unwrap() > 0, "{rt}");
    let logits = &rt["logits"];
    assert!(
        logits["max_abs_diff"].as_f64().unwrap() <= 0.01,
        "tuned vs portable logits: {logits}"
    );
    // The portable build's logits: shipped beside the pin (profiles/reference-logits.json) or
    // computed by the portable build here when none match this tree, model and architecture.
    let reference = logits["reference"].as_str().unwrap();
    assert!(
        reference.starts_with("shipped logits for pin ") || reference.starts_with("portable build"),
        "{reference}"
    );
    assert!(rt["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["expected"] == f["compiled"]));
    assert!(
        rt["bench"]["results"]
            .as_array()
            .is_some_and(|r| r.len() == 2),
        "{rt}"
    );
    assert!(sha_of("prefix/bin/tunellama").is_some());

    let second = xtask(&["setup"], &none);
    assert_eq!(second["outcome"], "hit");
    assert_eq!(second["key"], first["key"]);
    let status = xtask(&["status"], &none);
    assert_eq!(status["current"], first["key"]);
    assert_eq!(status["fresh"], true, "{status}");

    // status names the runtime binary by absolute path, and `xtask run` runs it.
    let bin = std::path::PathBuf::from(status["runtime_bin"].as_str().expect("runtime_bin"));
    assert!(bin.is_absolute() && bin.is_file(), "{}", bin.display());
    assert_eq!(second["runtime_bin"].as_str(), bin.to_str());
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["run", "--", "info", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pin = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/llama.pin.toml"),
    )
    .unwrap();
    let commit = info["provenance"]["llama_commit"].as_str().unwrap();
    assert!(
        pin.contains(commit),
        "info names commit {commit}, not the pin's"
    );
    assert_eq!(info["provenance"]["key"], first["key"]);
    if has("avx512f") {
        assert!(info.to_string().contains("AVX512 = 1"), "{info}");
    }
}
