//! `setup`'s plan through the real binary: a dry run changes nothing (no package installed, no
//! download, no cache write) and lists the whole plan (tools it would install and why, source,
//! key, cache state, prebuilt candidate and whether it is taken); a fresh tuned build wins over a
//! prebuilt and `setup` says why; `--force` rebuilds from source instead of taking either.
//!
//! The prebuilt index here is written by the test: its artifact fits this machine, and its URL
//! points at a file that does not exist, so any attempt to download it fails the run.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn xtask(args: &[&str], path: Option<&str>) -> Output {
    let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    c.args(args)
        .env("CI", "true")
        .env_remove("TUNELLAMA_PREBUILT_INDEX");
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

fn ok_json(args: &[&str], path: Option<&str>) -> Value {
    let out = xtask(args, path);
    assert!(
        out.status.success(),
        "xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "xtask {args:?}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn pin_digest() -> String {
    let pin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/llama.pin.toml"),
    )
    .unwrap();
    let v: toml::Value = toml::from_str(&pin).unwrap();
    v["tree"]["digest"].as_str().unwrap().to_string()
}

/// An index in `dir` offering one CPU artifact that fits any x86-64 Linux machine with SSE4.2,
/// built from the pinned tree; its archive does not exist.
fn index(dir: &Path) -> PathBuf {
    let index = serde_json::json!({
        "schema": 1,
        "generated_by": "tests/setup_plan.rs",
        "artifacts": [{
            "variant": "linux-x86_64-v2",
            "target": "x86_64-unknown-linux-gnu",
            "requirements": {
                "os": "linux", "arch": "x86_64", "cpu_features": ["sse4.2"],
                "backend": "cpu", "cuda_driver_min": null, "gpu_archs": []
            },
            "llama": {"commit": "tree-test", "tree_digest": pin_digest()},
            "url": "does-not-exist/tunellama-linux-x86_64-v2.tar.gz",
            "sha256": "0".repeat(64),
            "size": 1
        }]
    });
    let path = dir.join("index.json");
    std::fs::write(&path, index.to_string()).unwrap();
    path
}

/// An empty overrides file, so profiles/local.toml of a developer does not change the key.
fn no_overrides(dir: &Path) -> PathBuf {
    let p = dir.join("none.toml");
    std::fs::write(&p, "").unwrap();
    p
}

/// Every regular file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A PATH with every program of the real PATH except `ninja`, and stand-ins for the package
/// tools (`apt-get`, `sudo`, `dnf`, `pacman`, `brew`) that record that they were called and fail:
/// a dry run must never run them. Returns (PATH, the record file).
fn path_without_ninja(dir: &Path) -> (String, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.join("package-tool-called");
    let tripwires = ["apt-get", "sudo", "dnf", "pacman", "brew"];
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n == "ninja" || tripwires.contains(&&*n) || bin.join(&name).exists() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), bin.join(&name)).unwrap();
        }
    }
    for t in tripwires {
        let p = bin.join(t);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{t} $*\" >> '{}'\nexit 1\n",
                record.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (bin.to_str().unwrap().to_string(), record)
}

#[test]
fn a_dry_run_installs_nothing_downloads_nothing_writes_nothing_and_lists_the_plan() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let idx = index(t.path());
    let (path, record) = path_without_ninja(t.path());
    let overrides = no_overrides(t.path());
    let plan = ok_json(
        &[
            "setup",
            "--dry-run",
            "--json",
            "--cache-dir",
            s(&cache),
            "--overrides",
            s(&overrides),
            "--prebuilt-index",
            s(&idx),
        ],
        Some(&path),
    );
    // Nothing ran, nothing was written.
    assert!(
        !record.exists(),
        "a dry run ran a package tool: {}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
    assert_eq!(files_under(&cache), Vec::<PathBuf>::new(), "{plan:#}");

    // The tools it would install, why, and the exact command.
    let tools = plan["tools"]["build"]["tools"].as_array().unwrap();
    let ninja = tools
        .iter()
        .find(|t| t["tool"] == "ninja")
        .unwrap_or_else(|| panic!("ninja is missing from PATH: {plan:#}"));
    assert_eq!(ninja["package"], "ninja-build", "{plan:#}");
    assert!(!ninja["why"].as_str().unwrap().is_empty());
    assert_eq!(plan["tools"]["build"]["manager"], "Apt", "{plan:#}");
    assert!(
        plan["tools"]["build"]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c
                .as_str()
                .unwrap()
                .ends_with("install -y --no-install-recommends ninja-build")),
        "{plan:#}"
    );
    // The source: the pinned tree from the crate registry.
    assert_eq!(plan["source"]["transport"], "registry");
    assert_eq!(plan["source"]["expected_digest"], pin_digest().as_str());
    assert!(
        ["cached", "to_fetch"].contains(&plan["source"]["state"].as_str().unwrap()),
        "{plan:#}"
    );
    // Without ninja the toolchain (part of the key) is not known until it is installed, so no
    // tuned build can be found: the fitting prebuilt would be taken, and no tool installed.
    assert!(plan["key"].is_null(), "{plan:#}");
    assert_eq!(plan["cache"]["state"], "unknown", "{plan:#}");
    assert!(
        plan["cache"]["why"].as_str().unwrap().contains("ninja"),
        "{plan:#}"
    );
    assert_eq!(plan["prebuilt"]["candidate"]["variant"], "linux-x86_64-v2");
    assert_eq!(plan["prebuilt"]["candidate"]["cached"], false);
    assert_eq!(plan["prebuilt"]["taken"], true, "{plan:#}");
    assert_eq!(plan["action"], "install_prebuilt");
    assert_eq!(plan["tools"]["will_install"], false);
    assert_eq!(plan["host"]["what"], "this machine (probed)");
    assert_eq!(plan["target"]["what"], "this machine (probed)");
}

#[test]
fn a_dry_run_names_the_key_and_the_cache_state_in_text_and_json() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let overrides = no_overrides(t.path());
    let args = [
        "setup",
        "--dry-run",
        "--cache-dir",
        s(&cache),
        "--overrides",
        s(&overrides),
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let plan = ok_json(&json_args, None);
    let key = plan["key"].as_str().unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(key.len(), 20, "{plan:#}");
    assert_eq!(plan["cache"]["state"], "build", "{plan:#}");
    assert_eq!(plan["action"], "build");
    assert_eq!(plan["tools"]["will_install"], true);
    assert!(plan["prebuilt"].is_null());
    assert_eq!(
        plan["key_inputs"]["tree_digest"],
        pin_digest().as_str(),
        "{plan:#}"
    );
    assert!(
        plan["chosen_because"]
            .as_str()
            .unwrap()
            .contains("no prebuilt index is configured"),
        "{plan:#}"
    );

    let out = xtask(&args, None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "dry run: nothing was installed or written; no archive, tree or toolkit was downloaded",
        &format!("key:     {key}"),
        "action:  build",
        "source:  crate ",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert_eq!(files_under(&cache), Vec::<PathBuf>::new());
}

/// The key of this machine's tuned build (empty overrides) in the test cache, building it there
/// once (`--keep-current`: the test cache's current build stays) when it is not cached yet.
fn cached_tuned_key(overrides: &Path) -> String {
    let plan = ok_json(
        &["setup", "--dry-run", "--json", "--overrides", s(overrides)],
        None,
    );
    if plan["cache"]["state"] != "hit" {
        eprintln!("building this machine's tuned build into the test cache (once)");
        ok_json(
            &[
                "setup",
                "--keep-current",
                "--json",
                "--overrides",
                s(overrides),
            ],
            None,
        );
    }
    let plan = ok_json(
        &["setup", "--dry-run", "--json", "--overrides", s(overrides)],
        None,
    );
    assert_eq!(plan["cache"]["state"], "hit", "{plan:#}");
    plan["key"].as_str().unwrap().to_string()
}

fn test_cache() -> PathBuf {
    xtask::testcmd::test_cache_dir()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn a_fresh_tuned_build_wins_over_a_prebuilt_and_setup_says_why() {
    let t = tempfile::tempdir().unwrap();
    let overrides = no_overrides(t.path());
    let key = cached_tuned_key(&overrides);
    // A cache holding only this machine's tuned build (a copy: the test cache stays as it is).
    let cache = t.path().join("cache");
    copy_dir(
        &test_cache().join("builds-v1").join(&key),
        &cache.join("builds-v1").join(&key),
    );
    // The probe counts toolkits installed in the cache (the CUDA wheels) as this machine's, and
    // they are part of its fingerprint: the copy sees the same ones, so the machine is the same.
    let toolchains = test_cache().join("toolchains");
    if toolchains.is_dir() {
        std::os::unix::fs::symlink(&toolchains, cache.join("toolchains")).unwrap();
    }
    let idx = index(t.path());
    let base = [
        "setup",
        "--json",
        "--cache-dir",
        s(&cache),
        "--overrides",
        s(&overrides),
        "--prebuilt-index",
        s(&idx),
    ];

    let mut dry = base.to_vec();
    dry.push("--dry-run");
    let plan = ok_json(&dry, None);
    assert_eq!(plan["action"], "use_cached", "{plan:#}");
    assert_eq!(plan["prebuilt"]["candidate"]["variant"], "linux-x86_64-v2");
    assert_eq!(plan["prebuilt"]["taken"], false, "{plan:#}");

    // The real run uses the tuned build (the prebuilt's archive does not even exist).
    let report = ok_json(&base, None);
    assert_eq!(report["provenance"], "source", "{report:#}");
    assert_eq!(report["outcome"], "hit", "{report:#}");
    assert_eq!(report["key"], key.as_str());
    let why = report["chosen_because"].as_str().unwrap();
    assert!(
        why.contains(&format!("tuned build {key} is cached and fresh"))
            && why.contains("prebuilt linux-x86_64-v2 is not installed"),
        "{why}"
    );
    let current: Value = serde_json::from_str(
        &std::fs::read_to_string(cache.join("builds-v1/current.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(current["key"], key.as_str());

    // --force means a rebuild from source: neither the cached build nor the prebuilt.
    let mut forced = dry.clone();
    forced.push("--force");
    let plan = ok_json(&forced, None);
    assert_eq!(plan["action"], "build", "{plan:#}");
    assert_eq!(plan["prebuilt"]["taken"], false);
    assert!(
        plan["chosen_because"]
            .as_str()
            .unwrap()
            .starts_with("--force"),
        "{plan:#}"
    );
    // --from-source with the tuned build cached: the tuned build, still.
    let mut from_source = dry.clone();
    from_source.push("--from-source");
    assert_eq!(ok_json(&from_source, None)["action"], "use_cached");
}

#[test]
fn without_a_tuned_build_a_dry_run_would_take_the_prebuilt_unless_from_source() {
    let t = tempfile::tempdir().unwrap();
    let overrides = no_overrides(t.path());
    let idx = index(t.path());
    let cache = t.path().join("cache");
    let base = [
        "setup",
        "--dry-run",
        "--json",
        "--cache-dir",
        s(&cache),
        "--overrides",
        s(&overrides),
        "--prebuilt-index",
        s(&idx),
    ];
    let plan = ok_json(&base, None);
    assert_eq!(plan["cache"]["state"], "build", "{plan:#}");
    assert_eq!(plan["action"], "install_prebuilt", "{plan:#}");
    assert!(
        plan["chosen_because"]
            .as_str()
            .unwrap()
            .contains("prebuilt linux-x86_64-v2 fits this machine"),
        "{plan:#}"
    );
    let mut from_source = base.to_vec();
    from_source.push("--from-source");
    let plan = ok_json(&from_source, None);
    assert_eq!(plan["action"], "build", "{plan:#}");
    assert_eq!(plan["prebuilt"]["taken"], false);
    assert_eq!(files_under(&cache), Vec::<PathBuf>::new());
}
