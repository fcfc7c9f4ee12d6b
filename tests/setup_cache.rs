//! Cache, lock, key and rebuild logic of `setup`, exercised through the real binary on a tiny
//! real CMake project the test writes (a static `libllama.a` with the few symbols the smoke
//! verification links against), so every scenario runs a real configure/compile/install in seconds.
//! `--lib-only` keeps the runtime out: the tiny tree cannot run a model (tests/runtime_cli.rs can).

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CMAKELISTS: &str = r#"cmake_minimum_required(VERSION 3.14)
project(tiny C CXX)
option(TINY_SLOW "sleep during the build (for kill tests)" OFF)
add_library(llama STATIC src/llama.cpp)
target_include_directories(llama PUBLIC include)
add_library(ggml STATIC src/ggml.c)
add_library(ggml-cpu STATIC src/ggml-cpu.c)
add_library(ggml-base STATIC src/ggml-base.c)
if(TINY_SLOW)
  add_custom_target(slow ALL COMMAND ${CMAKE_COMMAND} -E sleep 20)
  add_dependencies(llama slow)
endif()
install(TARGETS llama ggml ggml-cpu ggml-base ARCHIVE DESTINATION lib)
install(FILES include/llama.h DESTINATION include)
"#;

const LLAMA_H: &str = "#ifdef __cplusplus\nextern \"C\" {\n#endif\nvoid llama_backend_init(void);\nvoid llama_backend_free(void);\nconst char * llama_print_system_info(void);\n#ifdef __cplusplus\n}\n#endif\n";
const LLAMA_CPP: &str = "#include \"llama.h\"\n#include <string>\nextern \"C\" int ggml_tiny(void);\nstatic std::string info;\nvoid llama_backend_init(void) {}\nvoid llama_backend_free(void) {}\nconst char * llama_print_system_info(void) { info = \"CPU : TINY = \" + std::to_string(ggml_tiny()) + \" |\"; return info.c_str(); }\n";

fn tiny_tree(dir: &Path) -> PathBuf {
    let root = dir.join("tiny");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("include")).unwrap();
    std::fs::write(root.join("CMakeLists.txt"), CMAKELISTS).unwrap();
    std::fs::write(root.join("include/llama.h"), LLAMA_H).unwrap();
    std::fs::write(root.join("src/llama.cpp"), LLAMA_CPP).unwrap();
    std::fs::write(
        root.join("src/ggml.c"),
        "int ggml_cpu_tiny(void);\nint ggml_tiny(void) { return ggml_cpu_tiny(); }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("src/ggml-cpu.c"),
        "int ggml_base_tiny(void);\nint ggml_cpu_tiny(void) { return ggml_base_tiny(); }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("src/ggml-base.c"),
        "int ggml_base_tiny(void) { return 1; }\n",
    )
    .unwrap();
    root
}

struct Env {
    dir: tempfile::TempDir,
    tree: PathBuf,
    overrides: PathBuf,
    path: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let tree = tiny_tree(dir.path());
        let overrides = dir.path().join("local.toml");
        std::fs::write(&overrides, "").unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        Env {
            dir,
            tree,
            overrides,
            path,
        }
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    /// A fake tool in the env's own bin dir (first on PATH).
    fn tool(&self, name: &str, body: &str) {
        let p = self.dir.path().join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fn command(&self) -> Command {
        let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
        c.args([
            "setup",
            "--json",
            // The tiny tree is no llama.cpp: test the cache logic on the libraries alone.
            "--lib-only",
            "--transport",
            "path",
            "--allow-unpinned",
            "--path",
        ])
        .arg(&self.tree)
        .arg("--overrides")
        .arg(&self.overrides)
        .arg("--cache-dir")
        .arg(self.cache())
        .env("PATH", &self.path)
        .env("CI", "true")
        .env_remove("CUDA_PATH")
        .env_remove("CUDA_HOME");
        c
    }
    fn setup(&self) -> Value {
        let out = self.command().output().unwrap();
        parse(&out)
    }
}

fn parse(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "setup failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn changes(v: &Value) -> String {
    v["changes"].to_string()
}

#[test]
fn second_run_is_a_cache_hit_and_an_override_define_rebuilds_then_reuses() {
    let env = Env::new();
    let first = env.setup();
    assert_eq!(first["outcome"], "built");
    assert_eq!(
        first["pinned"], false,
        "a tree that is not the pin is marked unpinned"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(first["entry"].as_str().unwrap()).join("manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"prefix/lib/libllama.a"), "{files:?}");
    assert!(manifest["verification"]["smoke"]["system_info"]
        .as_str()
        .unwrap()
        .contains("TINY = 1"));

    let second = env.setup();
    assert_eq!(second["outcome"], "hit");
    assert_eq!(second["key"], first["key"]);

    std::fs::write(&env.overrides, "[defines]\nGGML_LTO = true\n").unwrap();
    let third = env.setup();
    assert_eq!(third["outcome"], "built");
    assert_ne!(third["key"], first["key"]);
    assert!(
        changes(&third).contains("profile: GGML_LTO (unset)→ON"),
        "{}",
        changes(&third)
    );

    std::fs::write(&env.overrides, "").unwrap();
    let fourth = env.setup();
    assert_eq!(
        fourth["outcome"], "hit",
        "removing the define reuses the first entry"
    );
    assert_eq!(fourth["key"], first["key"]);
}

#[test]
fn a_driver_or_gpu_change_alone_reverifies_instead_of_rebuilding() {
    let env = Env::new();
    let first = env.setup();
    assert_eq!(first["outcome"], "built");
    // A GPU appears (no CUDA toolkit, so the profile stays a CPU build): fingerprint-only change.
    env.tool(
        "nvidia-smi",
        "echo '0, NVIDIA GeForce RTX 3060, 8.6, 12288, 580.95.05'",
    );
    let second = env.setup();
    assert_eq!(second["outcome"], "reverified", "{second}");
    assert_eq!(second["key"], first["key"]);
    assert!(
        changes(&second).contains("GPU: none → NVIDIA GeForce RTX 3060 (sm_86)"),
        "{}",
        changes(&second)
    );
    env.tool(
        "nvidia-smi",
        "echo '0, NVIDIA GeForce RTX 3060, 8.6, 12288, 590.44.01'",
    );
    let third = env.setup();
    assert_eq!(third["outcome"], "reverified");
    assert!(
        changes(&third).contains("driver: 580.95.05 → 590.44.01"),
        "{}",
        changes(&third)
    );
    assert_eq!(env.setup()["outcome"], "hit");
}

#[test]
fn a_toolchain_change_is_named_and_rebuilds() {
    let env = Env::new();
    env.setup();
    // Same gcc behind another path: the toolchain identity (path + version) changes.
    let real = which("cc");
    env.tool("cc", &format!("exec {} \"$@\"", real.display()));
    let out = env
        .command()
        .env("CC", env.dir.path().join("bin/cc"))
        .output()
        .unwrap();
    let v = parse(&out);
    assert_eq!(v["outcome"], "built");
    assert!(
        changes(&v).contains("toolchain: C compiler"),
        "{}",
        changes(&v)
    );
}

#[test]
fn a_damaged_entry_is_detected_and_rebuilt() {
    let env = Env::new();
    let first = env.setup();
    let lib = Path::new(first["prefix"].as_str().unwrap()).join("lib/libggml.a");
    std::fs::write(&lib, b"garbage").unwrap();
    let second = env.setup();
    assert_eq!(second["outcome"], "built");
    assert!(changes(&second).contains("damaged"), "{}", changes(&second));
    assert!(
        changes(&second).contains("prefix/lib/libggml.a"),
        "{}",
        changes(&second)
    );
    assert_eq!(env.setup()["outcome"], "hit");
}

#[test]
fn two_concurrent_setups_build_once_and_both_succeed() {
    let env = Env::new();
    let a = env
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = env
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (
        parse(&a.wait_with_output().unwrap()),
        parse(&b.wait_with_output().unwrap()),
    );
    let mut outcomes = [
        a["outcome"].as_str().unwrap(),
        b["outcome"].as_str().unwrap(),
    ];
    outcomes.sort();
    assert_eq!(outcomes, ["built", "hit"]);
    assert_eq!(a["key"], b["key"]);
}

#[test]
fn a_build_killed_midway_leaves_no_half_entry_and_the_next_run_recovers() {
    let env = Env::new();
    std::fs::write(&env.overrides, "[defines]\nTINY_SLOW = true\n").unwrap();
    let mut child = env
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bucket = env.cache().join("builds-v1");
    let started = Instant::now();
    // Wait until the build is under way (its staging dir exists and cmake has configured).
    loop {
        let staging = std::fs::read_dir(&bucket).ok().and_then(|rd| {
            rd.flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        });
        if staging.is_some_and(|s| s.path().join("build/CMakeCache.txt").exists()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "build never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let visible: Vec<String> = std::fs::read_dir(&bucket)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".lock") && n != "current.json")
        .collect();
    assert!(visible.is_empty(), "a half entry is visible: {visible:?}");

    std::fs::write(&env.overrides, "").unwrap();
    let v = env.setup();
    assert_eq!(v["outcome"], "built");
    std::fs::write(&env.overrides, "[defines]\nTINY_SLOW = true\n").unwrap();
    // The killed key: its stale staging dir is cleaned when the key is next taken.
    let out = env.command().output().unwrap();
    assert_eq!(parse(&out)["outcome"], "built");
    let leftovers: Vec<String> = std::fs::read_dir(&bucket)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn status_json_names_the_current_entry_its_inputs_and_freshness() {
    let env = Env::new();
    let built = env.setup();
    let status = |overrides: &Path| {
        let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
            .args(["status", "--json", "--overrides"])
            .arg(overrides)
            // The source setup used: freshness compares with the key setup would compute.
            .args(["--transport", "path", "--allow-unpinned", "--path"])
            .arg(&env.tree)
            .arg("--cache-dir")
            .arg(env.cache())
            .env("PATH", &env.path)
            .output()
            .unwrap();
        parse(&out)
    };
    let s = status(&env.overrides);
    assert_eq!(s["current"], built["key"]);
    assert_eq!(s["fresh"], true, "{s}");
    assert!(s["key_inputs"]["profile_hash"].as_str().unwrap().len() == 64);
    std::fs::write(&env.overrides, "[defines]\nGGML_LTO = true\n").unwrap();
    let s = status(&env.overrides);
    assert_eq!(s["fresh"], false);
    assert!(s["stale_because"].to_string().contains("GGML_LTO"), "{s}");

    let ls = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["cache", "ls", "--json", "--cache-dir"])
        .arg(env.cache())
        .output()
        .unwrap();
    let ls: Value = parse(&ls);
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["current"], true);
}

#[test]
fn status_compares_the_current_entry_with_the_key_setup_would_compute_from_the_pin() {
    let env = Env::new();
    let built = env.setup();
    // `status` as a user runs it after a plain `setup` (default transport), against a pin file.
    let status = |pin: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["status", "--json", "--overrides"])
            .arg(&env.overrides)
            .arg("--pin")
            .arg(pin)
            .arg("--cache-dir")
            .arg(env.cache())
            .env("PATH", &env.path)
            .output()
            .unwrap();
        parse(&out)
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let real = std::fs::read_to_string(repo.join("profiles/llama.pin.toml")).unwrap();
    let real_digest = real
        .lines()
        .find_map(|l| l.strip_prefix("digest = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    std::fs::copy(
        repo.join("profiles/llama.pin.files"),
        env.dir.path().join("llama.pin.files"),
    )
    .unwrap();
    let pin = env.dir.path().join("llama.pin.toml");
    // A pin whose digest is the tiny tree's: setup would verify this very tree, same key.
    let tiny = status(&repo.join("profiles/llama.pin.toml"))["key_inputs"]["tree_digest"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&pin, real.replace(&real_digest, &tiny)).unwrap();
    let s = status(&pin);
    assert_eq!(s["fresh"], true, "{s}");
    assert_eq!(s["expected_key"], built["key"], "{s}");
    // The pin moves on: setup would fetch and build another tree, so the entry is not fresh.
    std::fs::write(&pin, real.replace(&real_digest, &"ab".repeat(32))).unwrap();
    let s = status(&pin);
    assert_eq!(s["fresh"], false, "{s}");
    let why = s["stale_because"].to_string();
    assert!(
        why.contains(&format!("source: tree {} → abababababab", &tiny[..12])),
        "{s}"
    );
    assert_ne!(s["expected_key"], built["key"], "{s}");
}

#[test]
fn missing_cmake_when_not_interactive_is_installed_through_the_package_manager() {
    // A PATH that has compilers and git but no cmake/ninja, and an `apt-get` that records what it
    // was asked and provides the tools (the real package manager would change this machine).
    let env = Env::new();
    let bin = env.dir.path().join("bin");
    for tool in ["cc", "c++", "git", "sh", "cat", "id", "cargo"] {
        if let Some(p) = which_opt(tool) {
            std::os::unix::fs::symlink(p, bin.join(tool)).unwrap();
        }
    }
    let log = env.dir.path().join("apt.log");
    env.tool(
        "apt-get",
        &format!(
            "echo \"$@\" >> {log}\necho 'Reading package lists... Done'\ncase \"$*\" in *install*) /bin/ln -sf {cmake} {bin}/cmake; /bin/ln -sf {ninja} {bin}/ninja;; esac",
            log = log.display(),
            cmake = which("cmake").display(),
            ninja = which("ninja").display(),
            bin = bin.display()
        ),
    );
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["prereqs", "--install", "--json", "--cache-dir"])
        .arg(env.cache())
        .env("PATH", bin.display().to_string())
        .env("CI", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("cmake (configures the llama.cpp build): package cmake"),
        "{err}"
    );
    assert!(err.contains("it will run: apt-get update && apt-get install -y --no-install-recommends cmake ninja-build"), "{err}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "update",
            "install -y --no-install-recommends cmake ninja-build"
        ]
    );
    // The package manager's chatter goes to stderr: stdout stays the JSON report.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("Reading package lists"), "{stdout}");
    assert!(err.contains("Reading package lists"), "{err}");
    let report = serde_json::from_str::<serde_json::Value>(&stdout)
        .unwrap_or_else(|e| panic!("prereqs --json stdout is not JSON ({e}):\n{stdout}"));
    assert_eq!(report["installed"], true, "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
}

fn which_opt(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn which(name: &str) -> PathBuf {
    which_opt(name).unwrap_or_else(|| panic!("{name} not on PATH"))
}
