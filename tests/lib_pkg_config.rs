//! `setup --lib-only` is for linking your own program: after publish, the installed `llama.pc`
//! must give working paths. A C program is compiled through `pkg-config --cflags --libs llama`
//! against the published entry and run. Uses the test cache's llama.cpp build (the libraries of
//! the cached tuned build are reused, so this costs seconds once that build exists).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn xtask_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
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

const PROGRAM: &str = r#"#include <stdio.h>
#include "llama.h"
int main(void) {
    llama_backend_init();
    printf("system info: %s\n", llama_print_system_info());
    llama_backend_free();
    return 0;
}
"#;

#[test]
fn llama_pc_of_a_published_lib_only_build_links_and_runs_a_c_program() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.toml");
    std::fs::write(&none, "").unwrap();
    let r = xtask_json(&[
        "setup",
        "--lib-only",
        "--keep-current",
        "--overrides",
        none.to_str().unwrap(),
    ]);
    let entry = PathBuf::from(r["entry"].as_str().unwrap());
    let pc_dir = entry.join("prefix/lib/pkgconfig");
    let pc = std::fs::read_to_string(pc_dir.join("llama.pc")).unwrap();
    assert!(
        !pc.contains(".staging-") && pc.contains("prefix=${pcfiledir}/../.."),
        "llama.pc must not name the staging dir:\n{pc}"
    );
    // The entry's recorded sha256 is the file's (a rewrite after publish would break lookup).
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).unwrap()).unwrap();
    let recorded = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "prefix/lib/pkgconfig/llama.pc")
        .expect("llama.pc is in the manifest")["sha256"]
        .clone();
    let (actual, _) = xtask::hashing::sha256_file(&pc_dir.join("llama.pc")).unwrap();
    assert_eq!(recorded, actual.as_str());

    let pkg_config = |args: &[&str]| {
        let out = Command::new("pkg-config")
            .args(args)
            .arg("llama")
            .env("PKG_CONFIG_PATH", &pc_dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "pkg-config: {e} (`cargo xtask test` installs it: prereq::ensure_test_tools)"
                )
            });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let flags = pkg_config(&["--cflags", "--libs"]);
    for f in flags.split_whitespace() {
        if let Some(d) = f.strip_prefix("-I").or_else(|| f.strip_prefix("-L")) {
            assert!(Path::new(d).is_dir(), "{f} is not a directory: {flags}");
        }
    }
    let src = dir.path().join("hello.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let exe = dir.path().join("hello");
    let out = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc {} -o hello {flags} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("system info: CPU :"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
