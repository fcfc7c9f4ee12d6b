//! How the runtime tests get a `tunellama` binary and GGUF models: a llama.cpp prefix (env
//! `TUNELLAMA_TEST_PREFIX`, else a copy of the current cached build under `target/`), a release
//! build of `runtime/` against it (once per test process), and tiny models written by llama.cpp's
//! own gguf-py in a venv under `target/`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The x86 feature names runtime-info.json uses, as `is_x86_feature_detected!` spells them.
const X86_FEATURES: &[&str] = &[
    "sse4.2",
    "avx",
    "avx2",
    "bmi2",
    "fma",
    "f16c",
    "avx512f",
    "avx512cd",
    "avx512vl",
    "avx512dq",
    "avx512bw",
    "avx512vbmi",
    "avx512vnni",
    "avx512bf16",
];

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn work() -> PathBuf {
    let d = repo().join("target/runtime-test");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The cache root as `setup` resolves it.
pub fn cache_root() -> PathBuf {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(d) = var("TUNELLAMA_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(x) = var("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("tunellama");
    }
    PathBuf::from(var("HOME").expect("HOME")).join(".cache/tunellama")
}

/// The current cached build's prefix (what `cargo xtask setup` published).
fn cached_prefix() -> (PathBuf, serde_json::Value) {
    let root = cache_root().join("builds-v1");
    let current = std::fs::read_to_string(root.join("current.json")).unwrap_or_else(|e| {
        panic!(
            "no current llama.cpp build in {} ({e}): run `cargo xtask setup` or set TUNELLAMA_TEST_PREFIX",
            root.display()
        )
    });
    let key = serde_json::from_str::<serde_json::Value>(&current).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = std::fs::read_to_string(root.join(&key).join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::json!({ "key": key }));
    (root.join(&key).join("prefix"), manifest)
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

/// A runtime-info.json for a native build on this machine (what setup writes), for a cached
/// prefix that predates it.
fn synthesized_runtime_info(manifest: &serde_json::Value) -> serde_json::Value {
    let inputs = &manifest["inputs"];
    let digest = inputs["tree_digest"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let features: Vec<&str> = X86_FEATURES
        .iter()
        .copied()
        .filter(|f| this_cpu_has(f))
        .collect();
    serde_json::json!({
        "schema": 1,
        "provenance": {
            "llama_commit": format!("tree-{}", &digest[..8.min(digest.len())]),
            "build_number": 0,
            "tree_digest": digest,
            "pinned": true,
            "origin": "llama-cpp-sys-2",
            "profile_hash": inputs["profile_hash"].as_str().unwrap_or(""),
            "key": manifest["key"].as_str().unwrap_or(""),
            "provenance": "source",
        },
        "compiled_for": {
            "target_arch": std::env::consts::ARCH,
            "backends": ["cpu"],
            "ggml_native": true,
            "required_cpu_features": features,
        },
        "defaults": {
            "threads": 2, "threads_why": "test prefix",
            "gpu_layers": "0", "gpu_layers_why": "no GPU backend in this build",
            "ctx_size": 4096, "ctx_why": "test prefix",
            "ram_bytes": null, "vram_bytes": null,
        },
    })
}

/// Whether this CPU has an x86 feature (false for names std does not know, and off x86).
pub fn this_cpu_has(f: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match f {
            "sse4.2" => is_x86_feature_detected!("sse4.2"),
            "avx" => is_x86_feature_detected!("avx"),
            "avx2" => is_x86_feature_detected!("avx2"),
            "bmi2" => is_x86_feature_detected!("bmi2"),
            "fma" => is_x86_feature_detected!("fma"),
            "f16c" => is_x86_feature_detected!("f16c"),
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512cd" => is_x86_feature_detected!("avx512cd"),
            "avx512vl" => is_x86_feature_detected!("avx512vl"),
            "avx512dq" => is_x86_feature_detected!("avx512dq"),
            "avx512bw" => is_x86_feature_detected!("avx512bw"),
            "avx512vbmi" => is_x86_feature_detected!("avx512vbmi"),
            "avx512vnni" => is_x86_feature_detected!("avx512vnni"),
            "avx512bf16" => is_x86_feature_detected!("avx512bf16"),
            // CPUID leaf 7 subleaf 0, EDX bit 24 (std's name is not stable everywhere).
            "amx-tile" => {
                // SAFETY: CPUID is available on every x86_64 CPU.
                #[allow(unused_unsafe)]
                let r = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
                r.edx & (1 << 24) != 0
            }
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = f;
        false
    }
}

/// The llama.cpp prefix the tests build against (with a runtime-info.json).
pub fn prefix() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("TUNELLAMA_TEST_PREFIX") {
            return PathBuf::from(p);
        }
        let (cached, manifest) = cached_prefix();
        let dev = work().join("prefix");
        let _ = std::fs::remove_dir_all(&dev);
        for d in ["include", "lib"] {
            copy_dir(&cached.join(d), &dev.join(d));
        }
        std::fs::copy(cached.join("link.json"), dev.join("link.json")).unwrap();
        let info = match std::fs::read_to_string(cached.join("runtime-info.json")) {
            Ok(t) => t,
            Err(_) => serde_json::to_string_pretty(&synthesized_runtime_info(&manifest)).unwrap(),
        };
        std::fs::write(dev.join("runtime-info.json"), info).unwrap();
        dev
    })
    .clone()
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

/// The `tunellama` binary under test, built once per test process.
pub fn binary() -> PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| build_ok(&prefix(), &repo().join("target/runtime")))
        .clone()
}

/// A second binary from a prefix copy whose runtime-info.json also requires `feature`.
pub fn binary_requiring(feature: &str) -> PathBuf {
    let dir = repo().join("target/runtime-refuse");
    let p = dir.join("prefix");
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
    build_ok(&p, &dir)
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
