//! Path transport: a local checkout is used in place, verified by digest, refused when it differs
//! unless unpinned trees are allowed (and then marked unpinned).

mod common;

use common::*;
use xtask::error::Hint;
use xtask::progress::Silent;
use xtask::source::digest::Change;
use xtask::source::pin::Pin;
use xtask::source::{obtain, plan, SourceError, Transport};

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("llama.cpp");
    small_tree(&tree);
    let pin = make_pin(d.path(), &tree, None);
    (d, tree, pin)
}

fn obtain_path(
    pin_path: &std::path::Path,
    tree: &std::path::Path,
    allow_unpinned: bool,
) -> Result<xtask::source::Tree, SourceError> {
    let pin = Pin::load(pin_path).unwrap();
    let mut o = opts(Transport::Path);
    o.path = Some(tree.to_path_buf());
    o.allow_unpinned = allow_unpinned;
    let p = plan(
        &pin,
        pin_path,
        &o,
        &pin_path.parent().unwrap().join("cache"),
    )
    .unwrap();
    obtain(&p, &Silent)
}

#[test]
fn path_transport_accepts_the_pinned_tree_in_place() {
    let (_d, tree, pin) = setup();
    let t = obtain_path(&pin, &tree, false).unwrap();
    assert!(t.pinned);
    assert_eq!(t.root, tree);
    assert_eq!(t.files, 8);
    assert_eq!((t.build_number, t.build_commit.as_str()), (7, "testpin"));
    // Files that are not build inputs may change freely.
    write(&tree, "README.md", "edited");
    write(&tree, "common/new.cpp", "new");
    assert!(obtain_path(&pin, &tree, false).unwrap().pinned);
}

#[test]
fn path_transport_refuses_a_tampered_file_and_names_it() {
    let (_d, tree, pin) = setup();
    write(&tree, "ggml/src/ggml.c", "int ggml = 1; /* tampered */\n");
    std::fs::remove_file(tree.join("include/llama.h")).unwrap();
    write(&tree, "src/extra.cpp", "extra");
    let err = obtain_path(&pin, &tree, false).unwrap_err();
    let SourceError::Mismatch(m) = &err else {
        panic!("{err}")
    };
    let diffs: Vec<(String, Change)> = m
        .differences
        .iter()
        .map(|d| (d.path.clone(), d.change))
        .collect();
    assert_eq!(
        diffs,
        [
            ("ggml/src/ggml.c".to_string(), Change::Modified),
            ("include/llama.h".to_string(), Change::Missing),
            ("src/extra.cpp".to_string(), Change::Added),
        ]
    );
    let msg = err.to_string();
    assert!(msg.contains("modified: ggml/src/ggml.c"), "{msg}");
    assert!(
        msg.contains(&m.expected_digest) && msg.contains(&m.actual_digest),
        "{msg}"
    );
    assert!(err.hint().unwrap().contains("--allow-unpinned"));
}

#[test]
fn path_transport_with_allow_unpinned_accepts_and_marks_the_tree_unpinned() {
    let (_d, tree, pin) = setup();
    write(&tree, "src/llama.cpp", "changed");
    let t = obtain_path(&pin, &tree, true).unwrap();
    assert!(!t.pinned);
    assert_ne!(t.digest, t.expected_digest);
    assert_eq!(t.differences.len(), 1);
    assert_eq!(t.differences[0].path, "src/llama.cpp");
    assert!(
        t.build_commit.starts_with("unpinned-"),
        "{}",
        t.build_commit
    );
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["pinned"], false);
}

#[test]
fn stale_manifest_is_reported_instead_of_wrong_paths() {
    let (d, tree, pin) = setup();
    std::fs::write(d.path().join("pin.files"), "").unwrap();
    write(&tree, "src/llama.cpp", "changed");
    let err = obtain_path(&pin, &tree, false).unwrap_err();
    assert!(err.to_string().contains("stale manifest"), "{err}");
}

#[test]
fn source_command_prints_the_verified_tree_and_refuses_with_a_hint() {
    let (d, tree, pin) = setup();
    let run = |extra: &[&str]| {
        xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
            .arg("--cache-dir")
            .arg(d.path().join("cache"))
            .args(["source", "--transport", "path", "--path"])
            .arg(&tree)
            .arg("--pin")
            .arg(&pin)
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = run(&["--json", "--quiet"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(t["pinned"], true);
    assert_eq!(t["transport"], "path");

    write(&tree, "cmake/common.cmake", "# tampered\n");
    let bad = run(&[]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("modified: cmake/common.cmake"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let unpinned = run(&["--allow-unpinned"]);
    assert!(unpinned.status.success());
    assert!(String::from_utf8_lossy(&unpinned.stdout).contains("UNPINNED"));
}

#[test]
fn pin_command_writes_a_pin_that_the_tree_then_verifies_against() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("llama.cpp");
    small_tree(&tree);
    write(&tree, "CMakeLists.txt", "set(LLAMA_VERSION_MAJOR 1)\nset(LLAMA_VERSION_MINOR 2)\nset(LLAMA_VERSION_PATCH 3)\noption(LLAMA_BUILD_IS_DEV \"dev\" OFF)\n");
    write(
        &tree,
        "ggml/CMakeLists.txt",
        "set(GGML_VERSION_MAJOR 0)\nset(GGML_VERSION_MINOR 9)\nset(GGML_VERSION_PATCH 1)\n",
    );
    let pin = d.path().join("profiles/llama.pin.toml");
    let xtask = |args: &[&str]| {
        xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
            .arg("--cache-dir")
            .arg(d.path().join("cache"))
            .args(args)
            .arg("--pin")
            .arg(&pin)
            .output()
            .unwrap()
    };
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let tree_s = tree.to_str().unwrap();
    let out = xtask(&[
        "pin",
        "--tree",
        tree_s,
        "--commit",
        sha,
        "--tag",
        "b4242",
        "--write",
        // The tree is no llama.cpp: no reference logits can be computed from it.
        "--no-reference",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Pin::load(&pin).unwrap();
    assert_eq!(p.upstream.commit.as_deref(), Some(sha));
    assert_eq!(
        (
            p.upstream.ggml_version.as_str(),
            p.upstream.llama_version.as_str()
        ),
        ("0.9.1", "1.2.3")
    );
    assert_eq!(
        (p.build.number, p.build.commit.as_str()),
        (4242, "01234567")
    );
    assert!(p.registry.is_none());
    assert!(d.path().join("profiles/llama.pin.files").is_file());

    let ok = xtask(&[
        "source",
        "--transport",
        "path",
        "--path",
        tree_s,
        "--json",
        "-q",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Re-pinning an unchanged tree keeps what it knew; a changed tree reports the changed paths.
    write(&tree, "src/llama.cpp", "newer");
    let out = xtask(&["pin", "--tree", tree_s]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 paths changed"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(sha),
        "a changed tree must not keep the old commit"
    );
}
