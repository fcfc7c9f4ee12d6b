//! Prebuilt artifacts: hostile archives are refused without leaving anything behind, a tampered
//! download fails its checksum and installs nothing, and `prebuilt index` gathers manifests.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use support::server::{Reply, Server};
use xtask::prebuilt::archive::{extract_safe, pack_dir, ArchiveError};
use xtask::prebuilt::manifest::{self, ArchiveRef, Manifest};
use xtask::prebuilt::{Artifact, Backend, Index, LlamaRef, Requirements};

/// A .tar.gz with one raw entry whose name bytes are written as given (bypassing the tar crate's
/// own path checks, like a hostile archiver would).
fn hostile(dir: &Path, name: &[u8], kind: tar::EntryType, link: Option<&[u8]>) -> PathBuf {
    let path = dir.join("hostile.tar.gz");
    let f = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    // A harmless entry first, so a refusal has something to clean up.
    let mut ok = tar::Header::new_gnu();
    ok.set_path("ok.txt").unwrap();
    ok.set_size(2);
    ok.set_mode(0o644);
    ok.set_cksum();
    b.append(&ok, &b"ok"[..]).unwrap();

    let body: &[u8] = if kind == tar::EntryType::Regular {
        b"pwned"
    } else {
        b""
    };
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name);
    if let Some(l) = link {
        gnu.linkname[..l.len()].copy_from_slice(l);
    }
    h.set_cksum();
    b.append(&h, body).unwrap();
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

fn assert_refused(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, reason: &str) {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("a/b");
    std::fs::create_dir_all(&work).unwrap();
    let archive = hostile(&work, name, kind, link);
    let dest = work.join("out");
    let e = extract_safe(&archive, &dest).unwrap_err();
    let shown = String::from_utf8_lossy(name);
    assert!(matches!(e, ArchiveError::Refused { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("`{shown}`")),
        "names the entry: {msg}"
    );
    assert!(msg.contains(reason), "{msg}");
    // Nothing left behind: no destination, no staging folder, nothing escaped.
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["hostile.tar.gz"], "{left:?}");
    assert!(!t.path().join("a/evil").exists() && !work.join("evil").exists());
    assert!(!Path::new("/abs-tunellama-test").exists());
}

#[test]
fn dot_dot_entry_is_refused() {
    assert_refused(b"../evil", tar::EntryType::Regular, None, "`..` component");
}

#[test]
fn nested_dot_dot_entry_is_refused() {
    assert_refused(b"bin/../../evil", tar::EntryType::Regular, None, "`..`");
}

#[test]
fn absolute_entry_is_refused() {
    assert_refused(
        b"/abs-tunellama-test",
        tar::EntryType::Regular,
        None,
        "absolute path",
    );
}

#[test]
fn symlink_to_etc_passwd_is_refused() {
    assert_refused(
        b"bin/passwd",
        tar::EntryType::Symlink,
        Some(b"/etc/passwd"),
        "symlink to `/etc/passwd`",
    );
}

#[test]
fn symlink_out_of_the_destination_is_refused() {
    assert_refused(
        b"x",
        tar::EntryType::Symlink,
        Some(b"../../x"),
        "symlink to `../../x`",
    );
}

#[test]
fn hardlink_is_refused() {
    assert_refused(b"h", tar::EntryType::Link, Some(b"ok.txt"), "hardlink");
}

#[test]
fn fifo_and_device_entries_are_refused() {
    assert_refused(b"fifo", tar::EntryType::Fifo, None, "device or fifo");
    assert_refused(b"dev", tar::EntryType::Char, None, "device or fifo");
}

fn requirements() -> Requirements {
    Requirements {
        os: "linux".into(),
        arch: "x86_64".into(),
        cpu_features: vec!["sse4.2".into()],
        backend: Backend::Cpu,
        cuda_driver_min: None,
        gpu_archs: vec![],
    }
}

/// A packed archive of a small tree, and its manifest, written into `dist`.
fn dist(dist: &Path, variant: &str) -> Manifest {
    let tree = dist.parent().unwrap().join(format!("tree-{variant}"));
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("bin/tunellama"), support::data(5000, 3)).unwrap();
    std::fs::write(tree.join("LICENSE"), b"MIT").unwrap();
    std::fs::create_dir_all(dist).unwrap();
    let name = manifest::archive_name(variant);
    let packed = pack_dir(&tree, &dist.join(&name)).unwrap();
    let m = Manifest {
        schema: manifest::MANIFEST_SCHEMA,
        variant: variant.into(),
        target: "x86_64-unknown-linux-gnu".into(),
        requirements: requirements(),
        llama: LlamaRef {
            commit: "tree-6a52492e".into(),
            tree_digest: "6a".repeat(32),
        },
        profile_hash: "ab".repeat(32),
        verification: manifest::VerificationSummary {
            status: manifest::VerificationStatus::NotRun,
            detail: "test archive".into(),
        },
        files: manifest::file_entries(&tree).unwrap(),
        archive: ArchiveRef {
            name,
            sha256: packed.sha256,
            size: packed.size,
        },
    };
    std::fs::write(dist.join(manifest::manifest_name(variant)), m.to_json()).unwrap();
    m
}

fn artifact(m: &Manifest, url: String) -> Artifact {
    Artifact {
        variant: m.variant.clone(),
        target: m.target.clone(),
        requirements: m.requirements.clone(),
        llama: m.llama.clone(),
        url,
        sha256: m.archive.sha256.clone(),
        size: m.archive.size,
        manifest_sha256: None,
    }
}

fn http_opts() -> xtask::download::Options {
    xtask::download::Options {
        allow_http: true,
        retries: 0,
        backoff: std::time::Duration::from_millis(1),
        fsync: false,
        ..Default::default()
    }
}

#[test]
fn fetched_archive_extracts_and_matches_its_manifest() {
    let t = tempfile::tempdir().unwrap();
    let m = dist(&t.path().join("dist"), "linux-x86_64-v2");
    let bytes = std::fs::read(t.path().join("dist").join(&m.archive.name)).unwrap();
    let server = Server::start();
    server.route("/a.tar.gz", bytes, vec![Reply::ok()]);
    let a = artifact(&m, server.url("/a.tar.gz"));
    let got = xtask::prebuilt::fetch_with(
        &a,
        &t.path().join("dl"),
        &http_opts(),
        &xtask::progress::Silent,
    )
    .unwrap();
    let out = t.path().join("install");
    extract_safe(&got, &out).unwrap();
    manifest::verify_files(&m.files, &out).unwrap();
}

#[test]
fn tampered_archive_fails_its_checksum_and_installs_nothing() {
    let t = tempfile::tempdir().unwrap();
    let m = dist(&t.path().join("dist"), "linux-x86_64-v2");
    let mut bytes = std::fs::read(t.path().join("dist").join(&m.archive.name)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff; // same size, different bytes; the index keeps the old sha256
    let server = Server::start();
    server.route("/a.tar.gz", bytes, vec![Reply::ok()]);
    let a = artifact(&m, server.url("/a.tar.gz"));
    let dl = t.path().join("dl");
    let e =
        xtask::prebuilt::fetch_with(&a, &dl, &http_opts(), &xtask::progress::Silent).unwrap_err();
    let e = anyhow::Error::new(e);
    let msg = xtask::error::render(&e);
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains(&m.archive.sha256), "{msg}");
    let left: Vec<_> = std::fs::read_dir(&dl)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing installed, no partial file: {left:?}"
    );
}

#[test]
fn index_from_manifests_round_trips_and_resolves_relative_urls() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("dist");
    dist(&d, "linux-x86_64-v3");
    dist(&d, "linux-x86_64-v2");
    let out = t.path().join("index.json");
    let status = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["prebuilt", "index", "--from"])
        .arg(&d)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let index = Index::load(out.to_str().unwrap(), &Default::default()).unwrap();
    let names: Vec<_> = index.artifacts.iter().map(|a| a.variant.as_str()).collect();
    assert_eq!(names, ["linux-x86_64-v2", "linux-x86_64-v3"]);
    // Relative URLs resolve next to the index; a file:// artifact is fetched by copying.
    let a = &index.artifacts[0];
    assert!(a.url.starts_with("file://") && a.url.ends_with("/tunellama-linux-x86_64-v2.tar.gz"));
    assert!(a.manifest_sha256.is_some());
    // The archives are next to dist/, not next to the index: a fetch from there must fail cleanly.
    let got = xtask::prebuilt::fetch(a, &t.path().join("dl"), &xtask::progress::Silent);
    assert!(got.is_err());
}

#[test]
fn index_refuses_an_archive_that_differs_from_its_manifest() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("dist");
    let m = dist(&d, "linux-x86_64-v3");
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join(&m.archive.name))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let e = manifest::read_manifests(&d).unwrap_err();
    assert!(e.to_string().contains("does not match its manifest"), "{e}");
}

#[test]
fn index_schema_names_exactly_the_fields_our_types_write() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::fixture("../../prebuilt/index.schema.json")).unwrap(),
    )
    .unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let m = dist(&tempfile::tempdir().unwrap().path().join("dist"), "v");
    let mut a = serde_json::to_value(artifact(&m, "u".into())).unwrap();
    a["manifest_sha256"] = serde_json::json!("0");
    assert_eq!(keys(&schema["$defs"]["artifact"]["properties"]), keys(&a));
    assert_eq!(
        keys(&schema["$defs"]["requirements"]["properties"]),
        keys(&a["requirements"])
    );
}

/// `prebuilt select` from an https:// index on 127.0.0.1 whose certificate a test CA signed.
fn select_over_tls(server: &support::tls::TlsServer, cert_file: &Path) -> (bool, String) {
    let machine = support::fixture("machines/avx2-desktop-haswell.json");
    let mut cmd = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["prebuilt", "select", "--index", &server.url("/index.json")])
        .arg("--machine")
        .arg(machine)
        .env("SSL_CERT_FILE", cert_file)
        .env_remove("SSL_CERT_DIR");
    for v in ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn an_https_index_is_trusted_through_the_system_roots_and_refused_without_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let index = std::fs::read(root.join("prebuilt/index.example.json")).unwrap();
    let server = support::tls::TlsServer::start("/index.json", index);
    // The test CA as the system's store (SSL_CERT_FILE, read as the system roots are): trusted.
    let (ok, text) = select_over_tls(&server, &support::tls::ca_file());
    assert!(ok, "{text}");
    assert!(text.contains("chosen:"), "{text}");
    assert_eq!(server.seen(), ["/index.json"]);
    // An empty system store leaves the bundled roots only, which do not know the test CA.
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("none.pem");
    std::fs::write(&empty, "").unwrap();
    let (ok, text) = select_over_tls(&server, &empty);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&server.url("/index.json")) && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert_eq!(
        server.seen(),
        ["/index.json"],
        "no request after a refused handshake"
    );
}
