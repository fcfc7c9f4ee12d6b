//! CUDA toolkits found the way users announce them (`CUDAToolkit_ROOT`, `CUDA_PATH`, the wheel
//! toolkit in the cache), the profile that points CMake at them, and the build key that ignores
//! GPU names and drivers (a GPU/driver change re-verifies instead of rebuilding). Through the real
//! binary, with stand-in `nvcc`/`nvidia-smi` printing recorded real outputs.

#[path = "support/checks.rs"]
mod checks;
use checks::{decision, json};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use xtask::machine::{Detection, Machine};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recorded(name: &str) -> PathBuf {
    repo().join("tests/fixtures/recorded").join(name)
}

fn fake(path: &Path, fixture: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!("#!/bin/sh\ncat '{}'\n", recorded(fixture).display()),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A toolkit root whose `bin/nvcc` prints a recorded `nvcc --version`.
fn toolkit(dir: &Path, fixture: &str) -> PathBuf {
    fake(&dir.join("bin/nvcc"), fixture);
    dir.to_path_buf()
}

fn xtask(args: &[&str], cache: &Path, path: &str, env: &[(&str, &Path)]) -> Output {
    let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).arg("--cache-dir").arg(cache).env("PATH", path);
    for v in ["CUDAToolkit_ROOT", "CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[test]
fn cudatoolkit_root_and_cuda_path_are_honoured_and_cudatoolkit_root_wins() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let a = toolkit(&t.path().join("cuda-13"), "nvcc-13.5.37-wheels.txt");
    let b = toolkit(&t.path().join("cuda-12.8"), "nvcc-12.8.txt");

    let m = json(&xtask(
        &["probe", "--json"],
        &cache,
        SYSTEM_PATH,
        &[("CUDA_PATH", &b)],
    ));
    assert_eq!(m["cuda"]["status"], "found", "{}", m["cuda"]);
    assert_eq!(m["cuda"]["version"], "12.8");
    assert_eq!(m["cuda"]["root"], b.display().to_string());
    assert!(
        m["cuda"]["source"]
            .as_str()
            .unwrap()
            .ends_with("nvcc --version"),
        "the release comes from the compiler itself: {}",
        m["cuda"]
    );

    let m = json(&xtask(
        &["probe", "--json"],
        &cache,
        SYSTEM_PATH,
        &[("CUDA_PATH", &b), ("CUDAToolkit_ROOT", &a)],
    ));
    assert_eq!(m["cuda"]["version"], "13.5", "CMake's own variable first");
    assert_eq!(m["cuda"]["root"], a.display().to_string());
    assert_eq!(m["cuda"]["from_wheels"], Value::Null);
}

#[test]
fn a_named_toolkit_is_passed_to_cmake_with_its_nvcc_and_no_driver_link() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let root = toolkit(&t.path().join("cuda"), "nvcc-13.5.37-wheels.txt");
    let tools = t.path().join("tools");
    fake(&tools.join("nvidia-smi"), "nvidia-smi-rtx4090d.csv");
    let path = format!("{}:{SYSTEM_PATH}", tools.display());
    let p = json(&xtask(
        &["--json", "profile"],
        &cache,
        &path,
        &[("CUDAToolkit_ROOT", &root)],
    ));
    assert_eq!(decision(&p, "GGML_CUDA"), Some("ON"));
    assert_eq!(decision(&p, "CMAKE_CUDA_ARCHITECTURES"), Some("89"));
    assert_eq!(
        decision(&p, "CUDAToolkit_ROOT"),
        Some(root.display().to_string().as_str())
    );
    assert_eq!(
        decision(&p, "CMAKE_CUDA_COMPILER"),
        Some(root.join("bin/nvcc").display().to_string().as_str())
    );
    assert_eq!(decision(&p, "GGML_CUDA_NO_VMM"), Some("ON"));
    // Driver 550 (the recorded 4090 D) is too old for a CUDA 13 build: said, not hidden.
    let warnings = p["warnings"].to_string();
    assert!(warnings.contains("580.65.06"), "{warnings}");
}

#[test]
fn the_wheel_toolkit_in_the_cache_is_found_like_a_system_toolkit() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let root = xtask::cuda_wheels::toolkit_root(&cache);
    toolkit(&root, "nvcc-13.5.37-wheels.txt");
    // Without the marker (an interrupted install) it is not used.
    let m = json(&xtask(&["probe", "--json"], &cache, SYSTEM_PATH, &[]));
    if !Path::new("/usr/local/cuda/bin/nvcc").exists() {
        assert_eq!(m["cuda"]["status"], "not_found", "{}", m["cuda"]);
    }
    std::fs::write(
        xtask::cuda_wheels::install_dir(&cache).join(xtask::cuda_wheels::MARKER),
        "{}",
    )
    .unwrap();
    let m = json(&xtask(&["probe", "--json"], &cache, SYSTEM_PATH, &[]));
    if !Path::new("/usr/local/cuda/bin/nvcc").exists() {
        assert_eq!(m["cuda"]["status"], "found", "{}", m["cuda"]);
        assert_eq!(m["cuda"]["version"], "13.5");
        assert_eq!(m["cuda"]["from_wheels"], true);
        assert_eq!(m["cuda"]["root"], root.display().to_string());
    }
}

#[test]
fn prereqs_names_the_wheels_and_says_the_cu12_wheel_has_no_nvcc() {
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["prereqs", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--cuda-wheels"), "{help}");
    assert!(xtask::cuda_wheels::CU12_NOTE.contains("no nvcc"));
    // Opt-in: the flag needs --install.
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["prereqs", "--cuda-wheels"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

// --- the key: decisions, not explanations (a GPU or driver change re-verifies) ---

fn laptop() -> Machine {
    Machine::from_json_file(&repo().join("tests/fixtures/machines/laptop-rtx4050-cuda12.4.json"))
        .unwrap()
}

fn key(m: &Machine) -> String {
    let p = xtask::profile::plan(m, &Default::default());
    let source = xtask::key::SourceId {
        digest: "tree".into(),
        origin: "o".into(),
        commit: None,
        build_number: 0,
        build_commit: "c".into(),
        pinned: true,
    };
    xtask::key::key(&xtask::key::KeyRequest {
        profile: &p,
        target: m,
        host: m,
        source: &source,
        runtime_source: None,
        env: &Default::default(),
        cross: None,
    })
}

fn gpus_mut(m: &mut Machine) -> &mut Vec<xtask::machine::Gpu> {
    match &mut m.nvidia {
        Detection::Found(n) => &mut n.gpus,
        _ => panic!("fixture has GPUs"),
    }
}

#[test]
fn same_architectures_with_another_gpu_name_count_or_driver_keep_the_key_but_change_the_fingerprint(
) {
    let base = laptop();
    let mut renamed = base.clone();
    gpus_mut(&mut renamed)[0].name = "NVIDIA GeForce RTX 4060 Laptop GPU".into();
    gpus_mut(&mut renamed)[0].vram_mib = 8188;
    let mut two = base.clone();
    let mut second = gpus_mut(&mut two)[0].clone();
    second.index = 1;
    second.name = "NVIDIA GeForce RTX 4090".into();
    gpus_mut(&mut two).push(second);
    let mut new_driver = base.clone();
    gpus_mut(&mut new_driver)[0].driver_version = "580.95.05".into();

    let fp = xtask::key::fingerprint_of(&base);
    for (what, m) in [
        ("GPU name", &renamed),
        ("GPU count", &two),
        ("driver", &new_driver),
    ] {
        assert_eq!(key(m), key(&base), "{what}: same compiled output");
        assert_ne!(
            xtask::key::fingerprint_of(m),
            fp,
            "{what}: the fingerprint records it"
        );
        // The rendered file does mention the GPU (its explanations), the key does not.
        let (a, b) = (
            xtask::profile::plan(m, &Default::default()),
            xtask::profile::plan(&base, &Default::default()),
        );
        assert_eq!(a.hash, b.hash, "{what}");
        if what != "driver" {
            assert_ne!(a.cmake, b.cmake, "{what}: explanations differ");
        }
    }
    // Another architecture compiles other code: a new key.
    let mut ampere = base.clone();
    gpus_mut(&mut ampere)[0].compute_capability = "8.6".into();
    assert_ne!(key(&ampere), key(&base));
}

#[test]
fn the_profile_hash_covers_name_value_and_type_of_every_decision() {
    let p = xtask::profile::plan(&laptop(), &Default::default());
    let mut d = p.decisions.clone();
    let h = xtask::profile::decisions_hash(&d);
    assert_eq!(h, p.hash);
    d[0].reason = "another explanation".into();
    d[0].fact = "another fact".into();
    assert_eq!(xtask::profile::decisions_hash(&d), h);
    d[0].kind = if p.decisions[0].kind == "STRING" {
        "BOOL".into()
    } else {
        "STRING".into()
    };
    assert_ne!(xtask::profile::decisions_hash(&d), h, "type");
    let mut v = p.decisions.clone();
    v[0].value.push('x');
    assert_ne!(xtask::profile::decisions_hash(&v), h, "value");
    let mut n = p.decisions.clone();
    n[0].name.push('X');
    assert_ne!(xtask::profile::decisions_hash(&n), h, "name");
}

#[test]
fn installing_a_cuda_toolkit_does_not_change_the_key_of_a_cpu_build() {
    let mut cpu = Machine::from_json_file(
        &repo().join("tests/fixtures/machines/this-machine-epyc-avx512.json"),
    )
    .unwrap();
    let before = key(&cpu);
    cpu.cuda = laptop().cuda.clone();
    assert_eq!(
        key(&cpu),
        before,
        "no GPU: CUDA is not built, nvcc is not an input"
    );
    // ... but for a CUDA build nvcc is an input.
    let mut l = laptop();
    let k = key(&l);
    if let Detection::Found(t) = &mut l.cuda {
        t.nvcc = "/opt/other/bin/nvcc".into();
    }
    assert_ne!(key(&l), k);
}
