//! The prebuilt path end to end through the real binary: `dist --variant linux-x86_64-v2` builds
//! the variant here (in the test cache, so a machine pays the build once) and packs it; the
//! archive is served from 127.0.0.1 by an index; `setup --prebuilt-index` installs it into a fresh
//! cache for a recorded AVX2 Machine (download, checksum, safe extraction, the same runtime
//! verification as a source build) with provenance "prebuilt"; Machines lacking SSE4.2 or
//! running arm64 are refused with the reason; a tampered archive, a file changed inside it (checked
//! against the dist manifest published beside it) or a manifest that is not the index's installs
//! nothing; without `--machine` this host's probe selects the variant, and with a recording the
//! recording selects it while this host fingerprints and verifies it.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::server::{Reply, Server};

const VARIANT: &str = "linux-x86_64-v2";

fn xtask(args: &[&str]) -> Output {
    xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CI", "true")
        .env_remove("TUNELLAMA_PREBUILT_INDEX")
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let out = xtask(args);
    assert!(
        out.status.success(),
        "xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Dist output once per test process: (dir, archive bytes, index with relative URLs).
fn dist() -> &'static (PathBuf, Vec<u8>, Value) {
    static D: std::sync::OnceLock<(PathBuf, Vec<u8>, Value)> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist-v2");
        let _ = std::fs::remove_dir_all(&dir);
        let report = ok_json(&["dist", "--variant", VARIANT, "--out", s(&dir), "--json"]);
        // v2 runs here, so dist verified it (not skipped), and its manifest says so.
        assert!(report["verification_skipped"].is_null(), "{report}");
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(report["manifest"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["verification"]["status"], "verified", "{manifest}");
        assert!(
            manifest["verification"]["detail"]
                .as_str()
                .unwrap()
                .contains("logits within"),
            "{manifest}"
        );
        // The portable reference logits travel in the archive with the test model's sha256.
        assert!(
            manifest["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == "reference-logits.json"),
            "{manifest}"
        );
        let archive = std::fs::read(report["archive"].as_str().unwrap()).unwrap();
        let index_path = dir.join("index.json");
        let out = xtask(&["prebuilt", "index", "--from", s(&dir), "-o", s(&index_path)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
        (dir, archive, index)
    })
}

/// The manifest `dist` wrote beside the archive.
fn dist_manifest() -> Vec<u8> {
    let (dir, _, _) = dist();
    std::fs::read(dir.join(format!("tunellama-{VARIANT}.manifest.json"))).unwrap()
}

/// Serves the index (relative URL), `archive` and `dist`'s manifest under /p/.
fn serve(archive: Vec<u8>) -> (Server, String) {
    let (_, _, index) = dist();
    serve_all(archive, dist_manifest(), index)
}

/// Serves `index`, `archive` and `manifest` (beside the archive, as `dist` publishes it).
fn serve_all(archive: Vec<u8>, manifest: Vec<u8>, index: &Value) -> (Server, String) {
    let server = Server::start();
    let name = format!("tunellama-{VARIANT}.tar.gz");
    server.route(&format!("/p/{name}"), archive, vec![Reply::ok()]);
    server.route(
        &format!("/p/tunellama-{VARIANT}.manifest.json"),
        manifest,
        vec![Reply::ok()],
    );
    server.route(
        "/p/index.json",
        serde_json::to_vec(index).unwrap(),
        vec![Reply::ok()],
    );
    let url = server.url("/p/index.json");
    (server, url)
}

fn machine(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/machines")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// `setup` from the loopback index, for the recorded AVX2 desktop, into `cache`.
fn setup_args(url: &str, cache: &Path) -> Vec<String> {
    let haswell = machine("avx2-desktop-haswell.json");
    [
        "setup",
        "--prebuilt-index",
        url,
        "--allow-http",
        "--machine",
        &haswell,
        "--cache-dir",
        s(cache),
        "--json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn entries(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("builds-v1"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.ends_with(".lock") && !n.starts_with('.') && n != "current.json")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn setup_installs_a_matching_prebuilt_from_a_loopback_index_with_provenance_prebuilt() {
    let (_, archive, _) = dist();
    let (_server, url) = serve(archive.clone());
    let cache = tempfile::tempdir().unwrap();
    let c = s(cache.path());
    let args = setup_args(&url, cache.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = ok_json(&args);
    assert_eq!(report["provenance"], "prebuilt", "{report}");
    assert_eq!(report["variant"], VARIANT);
    assert_eq!(report["outcome"], "built");
    let entry = PathBuf::from(report["entry"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["provenance"], "prebuilt");
    // The same verification as a source build ran, against the reference the archive carries.
    let rt = &manifest["verification"]["runtime"];
    assert!(rt["generate"]["tokens"].as_u64().unwrap() > 0, "{rt}");
    assert!(
        rt["logits"]["reference"]
            .as_str()
            .unwrap()
            .contains("shipped in the archive"),
        "{rt}"
    );

    let status = ok_json(&["status", "--cache-dir", c, "--json"]);
    assert_eq!(status["provenance"], "prebuilt");
    assert_eq!(status["current"], report["key"]);
    let bin = status["runtime_bin"].as_str().unwrap();
    let info = Command::new(bin).args(["info", "--json"]).output().unwrap();
    assert!(info.status.success());

    // A second run is a hit.
    assert_eq!(ok_json(&args)["outcome"], "hit");
}

#[test]
fn setup_fetches_index_manifest_and_archive_through_the_environment_proxy_prebuilt() {
    let (_, archive, _) = dist();
    let (server, _) = serve(archive.clone());
    // The made-up host resolves nowhere: only the proxy named by `http_proxy` (which tunnels
    // every CONNECT to the server) can reach it.
    let proxy = support::proxy::Proxy::start(server.addr);
    let url = "http://prebuilt.example.invalid/p/index.json";
    let cache = tempfile::tempdir().unwrap();
    let args = setup_args(url, cache.path());
    let mut cmd = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(&args)
        .env("CI", "true")
        .env_remove("TUNELLAMA_PREBUILT_INDEX")
        .env("http_proxy", proxy.url());
    for v in [
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["provenance"], "prebuilt", "{report}");
    let lines = proxy.lines();
    assert!(
        lines.len() >= 3
            && lines
                .iter()
                .all(|l| l == "CONNECT prebuilt.example.invalid:80 HTTP/1.1"),
        "{lines:?}"
    );
    for path in [
        "/p/index.json".to_string(),
        format!("/p/tunellama-{VARIANT}.manifest.json"),
        format!("/p/tunellama-{VARIANT}.tar.gz"),
    ] {
        let seen = server.seen(&path);
        assert!(
            !seen.is_empty()
                && seen
                    .iter()
                    .all(|r| r.host.as_deref() == Some("prebuilt.example.invalid")),
            "{path}: {seen:?}"
        );
    }
}

#[test]
fn machines_lacking_sse42_or_on_arm64_are_refused_with_the_reason() {
    let (_, archive, _) = dist();
    let (_server, url) = serve(archive.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut old: Value = serde_json::from_str(
        &std::fs::read_to_string(machine("avx2-desktop-haswell.json")).unwrap(),
    )
    .unwrap();
    old["cpu"]["features"] = serde_json::json!([]);
    old["cpu"]["x86_64_level"] = serde_json::json!(1);
    let no_sse42 = dir.path().join("no-sse42.json");
    std::fs::write(&no_sse42, old.to_string()).unwrap();
    for (m, reason) in [
        (s(&no_sse42).to_string(), "sse4.2"),
        (machine("arm64-linux-server-graviton3.json"), "aarch64"),
    ] {
        let out = xtask(&[
            "prebuilt",
            "select",
            "--index",
            &url,
            "--allow-http",
            "--machine",
            &m,
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains(VARIANT) && text.contains(reason),
            "{m}: {text}"
        );
    }
}

#[test]
fn a_tampered_archive_fails_its_checksum_and_installs_nothing() {
    let (_, archive, _) = dist();
    let mut bad = archive.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let (_server, url) = serve(bad);
    let cache = tempfile::tempdir().unwrap();
    let args = setup_args(&url, cache.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("sha256"), "{err}");
    assert!(
        entries(cache.path()).is_empty(),
        "{:?}",
        entries(cache.path())
    );
    assert!(!cache.path().join("builds-v1/current.json").exists());
}

/// The dist archive repacked with `edit` applied to its extracted files: the archive, the index
/// pointing at it (sha256 and size updated, `manifest_sha256` still that of dist's manifest).
fn repacked(edit: impl Fn(&Path)) -> (Vec<u8>, Value) {
    let (_, archive, index) = dist();
    let t = tempfile::tempdir().unwrap();
    let packed = t.path().join("in.tar.gz");
    std::fs::write(&packed, archive).unwrap();
    let tree = t.path().join("tree");
    xtask::prebuilt::archive::extract_safe(&packed, &tree).unwrap();
    edit(&tree);
    let out = t.path().join("out.tar.gz");
    let p = xtask::prebuilt::archive::pack_dir(&tree, &out).unwrap();
    let mut index = index.clone();
    index["artifacts"][0]["sha256"] = p.sha256.clone().into();
    index["artifacts"][0]["size"] = p.size.into();
    (std::fs::read(&out).unwrap(), index)
}

/// [`repacked`] as a publisher would do it honestly: a manifest describing the new files and
/// archive, and the index carrying that manifest's sha256.
fn republished(edit: impl Fn(&Path)) -> (Vec<u8>, Vec<u8>, Value) {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let (archive, mut index) = repacked(|dir| {
        edit(dir);
        copy_tree(dir, &tree);
    });
    let mut manifest: Value = serde_json::from_slice(&dist_manifest()).unwrap();
    let files: Vec<Value> = xtask::prebuilt::manifest::file_entries(&tree)
        .unwrap()
        .into_iter()
        .map(|f| serde_json::to_value(f).unwrap())
        .collect();
    manifest["files"] = files.into();
    manifest["archive"]["sha256"] = index["artifacts"][0]["sha256"].clone();
    manifest["archive"]["size"] = index["artifacts"][0]["size"].clone();
    let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
    index["artifacts"][0]["manifest_sha256"] = support::sha256_hex(text.as_bytes()).into();
    (archive, text.into_bytes(), index)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn a_file_changed_inside_the_archive_is_refused_naming_it_and_nothing_is_installed() {
    // One byte of a header changed after packing, the tarball rebuilt and the index's archive
    // sha256 and size updated to match: only the manifest's per-file sha256 can tell.
    let file = "include/llama.h";
    let (bad, index) = repacked(|tree| {
        let p = tree.join(file);
        let mut b = std::fs::read(&p).unwrap();
        b[10] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    });
    let manifest: Value = serde_json::from_slice(&dist_manifest()).unwrap();
    let expected = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == file)
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let (_server, url) = serve_all(bad, dist_manifest(), &index);
    let cache = tempfile::tempdir().unwrap();
    let args = setup_args(&url, cache.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a tampered file was installed:\n{err}"
    );
    assert!(
        err.contains(file) && err.contains(&expected) && err.contains("hint:"),
        "{err}"
    );
    assert!(
        entries(cache.path()).is_empty(),
        "{:?}",
        entries(cache.path())
    );
    assert!(!cache.path().join("builds-v1/current.json").exists());
    // Not even a staging dir or a download is left behind (only the key's lock file).
    let left: Vec<String> = std::fs::read_dir(cache.path().join("builds-v1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_manifest_that_differs_from_the_index_is_refused() {
    let (_, archive, index) = dist();
    let mut manifest = dist_manifest();
    manifest.extend_from_slice(b" ");
    let (_server, url) = serve_all(archive.clone(), manifest.clone(), index);
    let cache = tempfile::tempdir().unwrap();
    let args = setup_args(&url, cache.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("manifest") && err.contains(&support::sha256_hex(&manifest)),
        "{err}"
    );
    assert!(entries(cache.path()).is_empty());
}

#[test]
fn reference_logits_of_another_test_model_are_refused_and_nothing_is_installed() {
    let (bad, manifest, index) = republished(|tree| {
        let path = tree.join("reference-logits.json");
        let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        r["model"] = "tiny-from-another-writer.gguf".into();
        r["model_sha256"] = "0".repeat(64).into();
        std::fs::write(&path, r.to_string()).unwrap();
    });
    let (_server, url) = serve_all(bad, manifest, &index);
    let cache = tempfile::tempdir().unwrap();
    let args = setup_args(&url, cache.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("tiny-from-another-writer.gguf") && err.contains(&"0".repeat(64)),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(
        entries(cache.path()).is_empty(),
        "{:?}",
        entries(cache.path())
    );
}

/// This machine's fingerprint, as `probe` sees it (GPU names and driver; none here).
fn host_fingerprint_gpus() -> Value {
    let probe = ok_json(&["probe", "--json"]);
    let gpus: Vec<Value> = probe["nvidia"]["gpus"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Value::from(gpus.len())
}

#[test]
fn without_machine_the_probe_of_this_host_selects_installs_and_verifies_the_prebuilt() {
    let (_, archive, _) = dist();
    let (_server, url) = serve(archive.clone());
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "setup",
        "--prebuilt-index",
        &url,
        "--allow-http",
        "--cache-dir",
        s(cache.path()),
        "--json",
    ];
    let report = ok_json(&args);
    assert_eq!(report["provenance"], "prebuilt", "{report}");
    assert_eq!(report["variant"], VARIANT);
    assert!(
        report["chosen_because"]
            .as_str()
            .unwrap()
            .contains(&format!("prebuilt {VARIANT} fits this machine")),
        "{report}"
    );
    let entry = PathBuf::from(report["entry"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("manifest.json")).unwrap())
            .unwrap();
    assert!(manifest["verification"]["runtime"]["generate"]["tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
}

#[test]
fn a_recorded_machine_selects_the_variant_but_this_host_fingerprints_and_verifies_it() {
    // The recording has an RTX 4050 and its driver; this machine runs the check, so the entry's
    // fingerprint is this machine's, and a plain `setup` here afterwards is a cache hit.
    let (_, archive, _) = dist();
    let (_server, url) = serve(archive.clone());
    let cache = tempfile::tempdir().unwrap();
    let c = s(cache.path());
    let laptop = machine("laptop-rtx4050-cuda12.4.json");
    let report = ok_json(&[
        "setup",
        "--prebuilt-index",
        &url,
        "--allow-http",
        "--machine",
        &laptop,
        "--cache-dir",
        c,
        "--json",
    ]);
    assert_eq!(report["variant"], VARIANT, "{report}");
    let entry = PathBuf::from(report["entry"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("manifest.json")).unwrap())
            .unwrap();
    let gpus = manifest["fingerprint"]["gpus"].as_array().unwrap();
    assert_eq!(
        Value::from(gpus.len()),
        host_fingerprint_gpus(),
        "the recording's GPUs were taken as this machine's: {manifest:#}"
    );
    assert!(
        !gpus.iter().any(|g| g.as_str().unwrap().contains("4050")),
        "{manifest:#}"
    );
    assert_ne!(manifest["fingerprint"]["cuda"], "12.4", "{manifest:#}");
    let again = ok_json(&[
        "setup",
        "--prebuilt-index",
        &url,
        "--allow-http",
        "--from-source",
        "--dry-run",
        "--cache-dir",
        c,
        "--json",
    ]);
    assert_eq!(again["host"]["what"], "this machine (probed)");
    let plain = ok_json(&[
        "setup",
        "--prebuilt-index",
        &url,
        "--allow-http",
        "--cache-dir",
        c,
        "--json",
    ]);
    assert_eq!(plain["provenance"], "prebuilt", "{plain}");
    assert_eq!(plain["outcome"], "hit", "{plain}");
}
