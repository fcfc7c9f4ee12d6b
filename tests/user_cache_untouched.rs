//! `cargo xtask test` never touches the user's cache. The suite's setup helpers run here with a
//! sentinel user cache (`TUNELLAMA_CACHE_DIR`, as a user's shell may set it): they use the test
//! cache (`xtask::testcmd::command`) and leave the sentinel byte for byte as it was.

#[path = "support/runtime.rs"]
mod rt;

use std::collections::BTreeMap;
use std::path::Path;

/// The helper every runtime test starts from: `setup` then `status --json`, then the binary.
#[test]
fn setup_helper_yields_a_verified_runtime() {
    let bin = rt::binary();
    assert!(bin.is_file(), "{}", bin.display());
    let info = rt::runtime_info();
    assert!(info["provenance"]["key"].is_string(), "{info}");
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_suites_setup_helpers_leave_a_sentinel_user_cache_untouched() {
    let user = tempfile::tempdir().unwrap();
    let builds = user.path().join("builds-v1");
    std::fs::create_dir_all(&builds).unwrap();
    std::fs::write(
        builds.join("current.json"),
        r#"{"key":"sentinel0000000000000"}"#,
    )
    .unwrap();
    std::fs::write(user.path().join("CACHEDIR.TAG"), "sentinel\n").unwrap();
    let before = snapshot(user.path());

    // This very test binary, running only the helper test, as `cargo test` would with the
    // user's cache variable set; the test cache is the one this run uses.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "setup_helper_yields_a_verified_runtime"])
        .env("TUNELLAMA_CACHE_DIR", user.path())
        .env(
            xtask::testcmd::TEST_CACHE_VAR,
            xtask::testcmd::test_cache_dir(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the helper test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = snapshot(user.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the suite wrote into the user's cache"
    );
    assert_eq!(
        before, after,
        "the suite changed a file in the user's cache"
    );
}
