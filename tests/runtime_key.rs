//! Everything embedded in the runtime is part of its build's key, and every build installs its
//! own binary: two `setup`s with different runtime defaults, run at the same time, each give
//! their own key, and each entry's `tunellama` embeds that entry's key and defaults. Uses the
//! test cache; the llama.cpp libraries of the cached tuned build are reused (runtime builds only),
//! and a second run is two cache hits.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn setup(overrides: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["setup", "--keep-current", "--json", "--overrides"])
        .arg(overrides)
        .env("CI", "true");
    c
}

fn parse(out: std::process::Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn info(bin: &Path) -> Value {
    let out = Command::new(bin).args(["info", "--json"]).output().unwrap();
    parse(out, "tunellama info --json")
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    p.metadata().and_then(|m| m.modified()).ok()
}

#[test]
fn concurrent_setups_with_other_runtime_defaults_build_and_install_their_own_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let none = write("none.toml", "");
    let base = parse(setup(&none).output().unwrap(), "setup");
    let base_key = base["key"].as_str().unwrap().to_string();
    let cache = PathBuf::from(base["entry"].as_str().unwrap())
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    // The shared dependency dir never receives a build's binary.
    let shared_bin = cache.join("runtime-target/release/tunellama");
    let shared_before = mtime(&shared_bin);

    let one = write("one.toml", "[runtime]\nthreads = 1\n");
    let three = write("three.toml", "[runtime]\nthreads = 3\n");
    let a = setup(&one).spawn_output();
    let b = setup(&three).spawn_output();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let (a, b) = (parse(a, "setup threads=1"), parse(b, "setup threads=3"));

    let keys = [
        base_key.as_str(),
        a["key"].as_str().unwrap(),
        b["key"].as_str().unwrap(),
    ];
    assert!(
        keys[0] != keys[1] && keys[0] != keys[2] && keys[1] != keys[2],
        "a runtime default is embedded in the binary, so it is part of the key: {keys:?}"
    );
    for (r, threads) in [(&a, 1), (&b, 3)] {
        let bin = PathBuf::from(r["runtime_bin"].as_str().unwrap());
        let i = info(&bin);
        assert_eq!(i["provenance"]["key"], r["key"], "{i}");
        assert_eq!(i["defaults"]["threads"], threads, "{i}");
        assert_eq!(
            xtask::runtime_build::embedded_key(&bin).as_deref(),
            r["key"].as_str()
        );
    }
    assert_eq!(
        mtime(&shared_bin),
        shared_before,
        "no build compiles its binary in the shared runtime-target"
    );
    // A binary with another build's key is refused, naming both keys.
    let bin_a = PathBuf::from(a["runtime_bin"].as_str().unwrap());
    let err = xtask::runtime_build::check_embedded_key(&bin_a, keys[2])
        .unwrap_err()
        .to_string();
    assert!(err.contains(keys[1]) && err.contains(keys[2]), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("builds-v1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Only this test's keys: the shared test cache may hold staging dirs of other, killed
        // runs, which `cache gc` or the next setup of their key removes.
        .filter(|n| n.starts_with(".staging-") && (n.contains(keys[1]) || n.contains(keys[2])))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A started child whose output is collected on `join`.
trait SpawnOutput {
    fn spawn_output(&mut self) -> std::thread::JoinHandle<std::process::Output>;
}

impl SpawnOutput for Command {
    fn spawn_output(&mut self) -> std::thread::JoinHandle<std::process::Output> {
        let child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::spawn(move || child.wait_with_output().unwrap())
    }
}
