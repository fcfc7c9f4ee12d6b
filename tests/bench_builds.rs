//! `cargo xtask bench --json` through the real binary: the tuned and the portable build of the
//! pin (both cached by `setup`'s verification) run their runtimes' bench on a model our writer
//! produced, and the report carries pp and tg tokens/s for each build and the ratio. The tiny
//! shape keeps this a functional test; real numbers come from `cargo xtask bench` itself.

use serde_json::Value;

#[test]
fn bench_json_reports_pp_and_tg_for_tuned_and_portable_and_their_ratio() {
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench", "--shape", "tiny", "--quant", "q8_0", "-p", "32", "-n", "8", "-r", "2",
        ])
        .arg("--json")
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v["tuned"]["key"], v["portable"]["key"], "{v}");
    // The portable build really is portable: no AVX compiled in.
    let portable_info = v["portable"]["system_info"].as_str().unwrap();
    assert!(!portable_info.contains("AVX = 1"), "{portable_info}");
    let results = v["results"].as_array().unwrap();
    let tests: Vec<&str> = results
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    assert_eq!(tests, ["pp32", "tg8"], "{v}");
    for r in results {
        let (t, p) = (
            r["tuned"]["tps_mean"].as_f64().unwrap(),
            r["portable"]["tps_mean"].as_f64().unwrap(),
        );
        assert!(t > 0.0 && p > 0.0, "{r}");
        assert!((r["ratio"].as_f64().unwrap() - t / p).abs() < 1e-9, "{r}");
        assert_eq!(r["tuned"]["samples"].as_array().unwrap().len(), 2, "{r}");
    }
}
