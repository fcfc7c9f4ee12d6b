//! Registry transport, for real: cargo fetches the pinned crate into a fresh workspace, and the
//! tree it ships must have exactly the checked-in pin's digest. This test proves the pin.

mod common;

use common::*;
use xtask::progress::Silent;
use xtask::source::pin::{Pin, PIN_PATH};
use xtask::source::{obtain, plan, SourceError, Transport};

fn checked_in_pin() -> (std::path::PathBuf, Pin) {
    let path = xtask::env::repo_root().join(PIN_PATH);
    let pin = Pin::load(&path).unwrap();
    (path, pin)
}

#[test]
fn registry_transport_obtains_the_pinned_crate_and_its_tree_matches_the_checked_in_pin() {
    let (path, pin) = checked_in_pin();
    let cache = tempfile::tempdir().unwrap();
    let p = plan(&pin, &path, &opts(Transport::Registry), cache.path()).unwrap();
    let t = obtain(&p, &Silent).unwrap_or_else(|e| panic!("{e}"));
    assert!(t.pinned);
    assert_eq!(t.digest, pin.tree.digest);
    let reg = pin.registry.as_ref().unwrap();
    assert_eq!(t.crate_checksum.as_deref(), Some(reg.checksum.as_str()));
    assert!(t.root.ends_with(&reg.subfolder));
    assert!(t.root.join("include/llama.h").is_file());
    // The versions recorded in the pin are the tree's own.
    let (ggml, llama) = xtask::source::pin::versions_from_tree(&t.root).unwrap();
    assert_eq!(
        (ggml.as_str(), llama.as_str()),
        (
            pin.upstream.ggml_version.as_str(),
            pin.upstream.llama_version.as_str()
        )
    );
    // The throw-away workspace lives in the cache, not in the repository.
    assert!(cache
        .path()
        .join("sources-v1/registry")
        .join(format!("{}-{}/Cargo.lock", reg.crate_name, reg.version))
        .is_file());
}

#[test]
fn registry_transport_refuses_a_crate_whose_checksum_is_not_the_pinned_one() {
    let (path, mut pin) = checked_in_pin();
    pin.registry.as_mut().unwrap().checksum = "0".repeat(64);
    let cache = tempfile::tempdir().unwrap();
    let p = plan(&pin, &path, &opts(Transport::Registry), cache.path()).unwrap();
    let err = obtain(&p, &Silent).unwrap_err();
    assert!(matches!(err, SourceError::CrateChecksum { .. }), "{err}");
    assert!(err.to_string().contains(&"0".repeat(64)), "{err}");
}

#[test]
fn source_command_uses_the_registry_by_default_and_prints_json() {
    let cache = tempfile::tempdir().unwrap();
    let out = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["source", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["transport"], "registry");
    assert_eq!(t["pinned"], true);
    let (_, pin) = checked_in_pin();
    assert_eq!(t["digest"], pin.tree.digest.as_str());
    assert_eq!(t["build_commit"], pin.build.commit.as_str());
}
