//! `probe`, `profile` and the global options, through the real binary, with recorded
//! `nvidia-smi`/`nvcc` outputs served by small executables on PATH.

#[path = "support/checks.rs"]
mod checks;
use checks::{decision, json};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recorded(name: &str) -> PathBuf {
    repo().join("tests/fixtures/recorded").join(name)
}

/// A directory of fake tools, each printing a recorded real output.
struct FakeTools {
    dir: tempfile::TempDir,
}

impl FakeTools {
    fn new() -> FakeTools {
        FakeTools {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn script(&self, name: &str, body: &str) -> &Self {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }
    fn prints(&self, name: &str, fixture: &str) -> &Self {
        self.script(name, &format!("cat '{}'", recorded(fixture).display()))
    }
    /// PATH with the fakes first, then the system (compilers, git).
    fn path(&self) -> String {
        format!("{}:/usr/local/bin:/usr/bin:/bin", self.dir.path().display())
    }
}

fn xtask(args: &[&str], path: Option<&str>) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).arg("--cache-dir").arg(cache.path());
    c.env_remove("CUDA_PATH")
        .env_remove("CUDAToolkit_ROOT")
        .env_remove("CUDA_HOME")
        .env_remove("CUDA_ROOT");
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

fn write_machine(dir: &Path, probe_json: &Value) -> PathBuf {
    let p = dir.join("machine.json");
    std::fs::write(&p, serde_json::to_vec_pretty(probe_json).unwrap()).unwrap();
    p
}

#[test]
fn probe_of_this_machine_matches_the_kernel_and_asks_the_compilers() {
    let fakes = FakeTools::new(); // empty: no GPU tools on PATH
    let m = json(&xtask(&["probe", "--json"], Some(&fakes.path())));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let features: Vec<&str> = m["cpu"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        features.contains(&"avx512f"),
        flags.split_whitespace().any(|f| f == "avx512f"),
        "avx512f must be reported exactly when the kernel lists it"
    );
    if [
        "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx2", "movbe",
    ]
    .iter()
    .all(|f| flags.split_whitespace().any(|x| x == *f))
    {
        assert_eq!(m["cpu"]["x86_64_level"], 4);
    }
    for lang in ["c", "cxx"] {
        let c = &m["compilers"][lang];
        assert_eq!(c["status"], "found", "{lang}: {c}");
        assert!(
            ["gcc", "clang"].contains(&c["family"].as_str().unwrap()),
            "{c}"
        );
        assert!(
            c["version"].as_str().unwrap().split('.').count() >= 2,
            "{c}"
        );
    }
    assert_eq!(m["nvidia"]["status"], "not_found");
    if !Path::new("/usr/local/cuda/bin/nvcc").exists() && !Path::new("/opt/cuda/bin/nvcc").exists()
    {
        assert_eq!(m["cuda"]["status"], "not_found");
        assert!(m["cuda"]["looked_in"].as_array().unwrap().len() >= 2);
    }
    assert!(m["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(m["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
}

#[test]
fn rtx4090_with_cuda_12_4_renders_a_cuda_build_for_sm_89() {
    let fakes = FakeTools::new();
    fakes
        .prints("nvidia-smi", "nvidia-smi-rtx4090d.csv")
        .prints("nvcc", "nvcc-12.4.txt");
    let m = json(&xtask(&["probe", "--json"], Some(&fakes.path())));
    let gpu = &m["nvidia"]["gpus"][0];
    assert_eq!(gpu["compute_capability"], "8.9");
    assert_eq!(gpu["vram_mib"], 24564);
    assert!(gpu["driver_version"].as_str().unwrap().starts_with("550."));
    assert_eq!(m["cuda"]["version"], "12.4");

    let p = json(&xtask(
        &["profile", "--json", "--overrides", "/dev/null"],
        Some(&fakes.path()),
    ));
    assert_eq!(decision(&p, "GGML_CUDA"), Some("ON"));
    assert_eq!(decision(&p, "CMAKE_CUDA_ARCHITECTURES"), Some("89"));
    let cmake = p["cmake"].as_str().unwrap();
    assert!(
        cmake.contains(r#"set(GGML_CUDA "ON" CACHE BOOL"#),
        "{cmake}"
    );
    assert!(!cmake.contains("LLAMA_CUBLAS"));
}

#[test]
fn two_different_gpus_give_both_architectures() {
    let fakes = FakeTools::new();
    fakes
        .prints("nvidia-smi", "nvidia-smi-rtx5090-rtx4090.csv")
        .prints("nvcc", "nvcc-12.8.txt");
    let p = json(&xtask(
        &["profile", "--json", "--overrides", "/dev/null"],
        Some(&fakes.path()),
    ));
    assert_eq!(decision(&p, "CMAKE_CUDA_ARCHITECTURES"), Some("89;120"));
}

#[test]
fn rtx5090_with_cuda_11_8_falls_back_to_ptx_and_names_the_toolkit_needed() {
    let fakes = FakeTools::new();
    fakes
        .prints("nvidia-smi", "nvidia-smi-rtx5090.csv")
        .prints("nvcc", "nvcc-11.8-partial.txt");
    let p = json(&xtask(
        &["profile", "--json", "--overrides", "/dev/null"],
        Some(&fakes.path()),
    ));
    assert_eq!(decision(&p, "GGML_CUDA"), Some("ON"));
    assert_eq!(decision(&p, "CMAKE_CUDA_ARCHITECTURES"), Some("90-virtual"));
    let warnings = p["warnings"].to_string();
    assert!(warnings.contains("CUDA 12.8 or newer"), "{warnings}");
}

#[test]
fn gpu_without_toolkit_builds_for_cpu_and_says_how_to_get_cuda() {
    let fakes = FakeTools::new();
    fakes.prints("nvidia-smi", "nvidia-smi-rtx3060.csv");
    let out = xtask(
        &["profile", "--explain", "--overrides", "/dev/null"],
        Some(&fakes.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("cuda    no"), "{text}");
    assert!(text.contains("no nvcc"), "{text}");
    assert!(
        text.contains("hint: NVIDIA GPU found (NVIDIA GeForce RTX 3060) but no CUDA toolkit"),
        "{text}"
    );
    assert!(!text.contains("GGML_CUDA "), "{text}");
}

#[test]
fn wedged_nvidia_smi_is_cut_off_and_reported_as_a_fact() {
    let fakes = FakeTools::new();
    fakes.script("nvidia-smi", "sleep 30");
    let started = Instant::now();
    let m = json(&xtask(
        &["probe", "--json", "--timeout", "1"],
        Some(&fakes.path()),
    ));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(m["nvidia"]["status"], "failed");
    assert!(
        m["nvidia"]["reason"]
            .as_str()
            .unwrap()
            .contains("did not finish"),
        "{}",
        m["nvidia"]
    );
}

#[test]
fn recorded_machine_replays_without_probing() {
    let dir = tempfile::tempdir().unwrap();
    let mut m: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("tests/fixtures/machines/laptop-rtx4050-cuda12.4.json"),
        )
        .unwrap(),
    )
    .unwrap();
    m["nvidia"]["gpus"][0]["compute_capability"] = "8.6".into();
    let f = write_machine(dir.path(), &m);
    // PATH is empty of GPU tools: the CUDA decision can only come from the file.
    let p = json(&xtask(
        &[
            "profile",
            "--json",
            "--overrides",
            "/dev/null",
            "--machine",
            f.to_str().unwrap(),
        ],
        Some("/usr/bin:/bin"),
    ));
    assert_eq!(decision(&p, "CMAKE_CUDA_ARCHITECTURES"), Some("86"));
}

#[test]
fn malformed_machine_file_names_file_line_column_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.json");
    std::fs::write(
        &f,
        "{\n  \"schema\": 1,\n  \"origin\": \"probed\",\n  \"os\": oops\n}\n",
    )
    .unwrap();
    let out = xtask(&["profile", "--machine", f.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", f.display())), "{err}");
    assert!(err.contains("hint: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_field_in_machine_file_is_an_error_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut m: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/machines/avx2-desktop-haswell.json"))
            .unwrap(),
    )
    .unwrap();
    m["gpu_count"] = 3.into();
    let f = write_machine(dir.path(), &m);
    let out = xtask(&["profile", "--machine", f.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `gpu_count`"));
}

#[test]
fn override_file_errors_carry_line_column_and_unknown_keys_fail() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("local.toml");
    std::fs::write(&f, "[backends]\ncuda = \"off\"\n\n[runtime]\nthreds = 4\n").unwrap();
    let out = xtask(&["profile", "--overrides", f.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5:1", f.display())), "{err}");
    assert!(err.contains("threds"), "{err}");
    assert!(err.contains("hint: "), "{err}");
}

#[test]
fn overrides_show_up_in_explain_as_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("local.toml");
    std::fs::write(&f, "[defines]\nGGML_LTO = true\n\n[runtime]\nthreads = 3\n").unwrap();
    let m = repo().join("tests/fixtures/machines/avx2-desktop-haswell.json");
    let out = xtask(
        &[
            "profile",
            "--explain",
            "--machine",
            m.to_str().unwrap(),
            "--overrides",
            f.to_str().unwrap(),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lto = text
        .lines()
        .find(|l| l.starts_with("GGML_LTO"))
        .expect("GGML_LTO listed");
    assert!(lto.contains("ON") && lto.contains("override"), "{lto}");
    assert!(text.contains("threads     3"), "{text}");
}

#[test]
fn help_lists_every_command_with_a_line() {
    use clap::CommandFactory;
    let out = xtask(&["--help"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    // Every subcommand clap knows (so a new command cannot be forgotten here), hidden ones aside.
    let cli = xtask::cli::Cli::command();
    let commands: Vec<String> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    for cmd in &commands {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("  {cmd} ")))
            .unwrap_or_else(|| panic!("{cmd} missing from --help:\n{text}"));
        assert!(
            line.trim_start().len() > cmd.len() + 10,
            "{cmd} has no description: {line}"
        );
        let out = xtask(&[cmd, "--help"], None);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(help.contains("Usage:"), "{cmd} --help:\n{help}");
    }
    for cmd in ["probe", "profile", "setup", "status"] {
        let out = xtask(&[cmd, "--help"], None);
        assert!(String::from_utf8_lossy(&out.stdout).contains("--json"));
    }
}
