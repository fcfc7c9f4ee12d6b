//! How the runtime tests get a `tunellama` binary and GGUF models: the runtime `cargo xtask setup`
//! built and verified (found through `status --json`, as scripts find it; or a release build
//! against `TUNELLAMA_TEST_PREFIX`), and tiny models written by another tool, llama.cpp's own
//! gguf-py, in a venv under `target/`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn work() -> PathBuf {
    let d = repo().join("target/runtime-test");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// `cargo xtask <args> --json`, parsed.
pub fn xtask_json(args: &[&str]) -> serde_json::Value {
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .arg("--json")
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `cargo xtask setup` (a cache hit once a machine has built it; in TUNELLAMA_CACHE_DIR, the test cache),
/// then `status --json`: what a script does to find the runtime.
fn setup_status() -> &'static serde_json::Value {
    static S: OnceLock<serde_json::Value> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none.toml");
        std::fs::write(&none, "").unwrap();
        let o = none.to_str().unwrap();
        xtask_json(&["setup", "--overrides", o]);
        xtask_json(&["status", "--overrides", o])
    })
}

/// The runtime's own table of x86 CPU features (CPUID leaf/bit per name), shared as source.
#[path = "../../runtime/src/cpu_table.rs"]
pub mod cpu_table;

/// Whether this CPU has an x86 feature, as the runtime's pre-main check decides it (false for
/// names the table does not know, and off x86).
pub fn this_cpu_has(f: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cpu_table::x86_detect(f) == Some(true)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = f;
        false
    }
}

/// A feature of the runtime's table that this CPU lacks, chosen here and now (an AMX CPU gets
/// another one); panics, saying why, when the CPU has every feature the table knows.
pub fn a_feature_this_cpu_lacks() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        cpu_table::X86_FEATURES
            .iter()
            .map(|f| f.name)
            .find(|f| cpu_table::x86_detect(f) == Some(false))
            .expect("this CPU has every feature of runtime/src/cpu_table.rs: no build requirement can be shown missing here; add newer features to the table")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        panic!("the refusal test picks a missing feature from the x86 table; this is not x86-64")
    }
}

/// The llama.cpp prefix of the current build (with its runtime-info.json), or
/// `TUNELLAMA_TEST_PREFIX`.
pub fn prefix() -> PathBuf {
    match std::env::var_os("TUNELLAMA_TEST_PREFIX") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(
            setup_status()["prefix"]
                .as_str()
                .expect("status names a prefix"),
        ),
    }
}

pub fn runtime_info() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(prefix().join("runtime-info.json")).unwrap())
        .unwrap()
}

/// `cargo build --release` of runtime/ against `prefix` into `target_dir`.
pub fn cargo_build(prefix: &Path, target_dir: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(repo())
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(repo().join("runtime/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("TUNELLAMA_PREFIX", prefix)
        .env_remove("CARGO_TARGET_DIR");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn build_ok(prefix: &Path, target_dir: &Path) -> PathBuf {
    let out = cargo_build(prefix, target_dir, &[]);
    assert!(
        out.status.success(),
        "building the runtime against {} failed:\n{}",
        prefix.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("release/tunellama")
}

/// The `tunellama` binary under test: the one `setup` built and verified, found the way scripts
/// find it (`status --json`'s `runtime_bin`); with `TUNELLAMA_TEST_PREFIX`, built against it.
pub fn binary() -> PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| match std::env::var_os("TUNELLAMA_TEST_PREFIX") {
        Some(_) => build_ok(&prefix(), &repo().join("target/runtime")),
        None => PathBuf::from(
            setup_status()["runtime_bin"]
                .as_str()
                .expect("status --json names runtime_bin"),
        ),
    })
    .clone()
}

/// A second binary from a prefix copy whose runtime-info.json also requires `feature`, copied to
/// its own path (tests build these one at a time in one target dir).
pub fn binary_requiring(feature: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("target/runtime-refuse");
    let p = dir.join(format!("prefix-{feature}"));
    let _ = std::fs::remove_dir_all(&p);
    for d in ["include", "lib"] {
        copy_dir(&prefix().join(d), &p.join(d));
    }
    std::fs::copy(prefix().join("link.json"), p.join("link.json")).unwrap();
    let mut info = runtime_info();
    info["compiled_for"]["required_cpu_features"]
        .as_array_mut()
        .unwrap()
        .push(feature.into());
    std::fs::write(p.join("runtime-info.json"), info.to_string()).unwrap();
    let built = build_ok(&p, &dir);
    let bin = dir.join(format!("tunellama-requiring-{feature}"));
    std::fs::copy(&built, &bin).unwrap();
    let _ = std::fs::remove_dir_all(&p);
    bin
}

fn venv_python() -> PathBuf {
    static V: OnceLock<PathBuf> = OnceLock::new();
    V.get_or_init(|| {
        let venv = work().join("venv");
        let py = venv.join("bin/python");
        if !py.exists() {
            let s = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap();
            assert!(
                s.success(),
                "python3 -m venv failed (apt-get install python3-venv)"
            );
        }
        let ok = Command::new(&py)
            .args(["-c", "import gguf, numpy"])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        if !ok {
            let s = Command::new(&py)
                .args(["-m", "pip", "install", "--quiet", "gguf", "numpy"])
                .status()
                .unwrap();
            assert!(s.success(), "pip install gguf numpy failed");
        }
        py
    })
    .clone()
}

/// A tiny llama GGUF from `tests/fixtures/make_llama_gguf.py` (extra args: `--ctx N`, `--arch A`),
/// written once per distinct argument list.
pub fn python_model(args: &[&str]) -> PathBuf {
    static MODELS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let map = MODELS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!(
        "tiny{}.gguf",
        args.iter()
            .map(|a| a.trim_start_matches('-'))
            .collect::<Vec<_>>()
            .join("-")
    );
    if let Some(p) = map.get(&name) {
        return p.clone();
    }
    let out = work().join(&name);
    let s = Command::new(venv_python())
        .arg(repo().join("tests/fixtures/make_llama_gguf.py"))
        .arg(&out)
        .args(args)
        .status()
        .unwrap();
    assert!(s.success(), "make_llama_gguf.py {args:?} failed");
    map.insert(name, out.clone());
    out
}

/// Runs the binary under test; stdin is empty unless given.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    run_bin(&binary(), args, stdin)
}

pub fn run_bin(bin: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut si = child.stdin.take().unwrap();
    let w = std::thread::spawn(move || {
        let _ = si.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    out
}
