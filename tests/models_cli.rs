//! `cargo xtask models ...` as a user runs it: the real binary, a user catalog pointing at a
//! server on 127.0.0.1, and a temporary `--cache-dir`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::server::{Reply, Server};

fn xtask(cache: &Path, args: &[&str]) -> Command {
    let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
    c.arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("HF_TOKEN")
        .env_remove("TUNELLAMA_CACHE_DIR")
        .env("CI", "true");
    c
}

fn run(cache: &Path, args: &[&str]) -> Output {
    xtask(cache, args).output().expect("run xtask")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

struct Fixture {
    server: Server,
    body: Vec<u8>,
    cache: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(size: usize, script: Vec<Reply>) -> Fixture {
        Fixture::with_body(support::data(size, 11), script)
    }

    fn with_body(body: Vec<u8>, script: Vec<Reply>) -> Fixture {
        let server = Server::start();
        server.route("/m.gguf", body.clone(), script);
        Fixture {
            server,
            body,
            cache: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn entry(&self, name: &str, file: &str, sha: &str) -> String {
        format!(
            "[[model]]\nname = \"{name}\"\nfile = {file:?}\nurls = [\"{}\"]\nsize = {}\nsha256 = \"{sha}\"\nparameters = \"1M\"\nsources = [\"made by the test\"]\n",
            self.server.url("/m.gguf"),
            self.body.len()
        )
    }

    fn catalog(&self, entries: &str) -> PathBuf {
        let p = self.dir.path().join("cat.toml");
        std::fs::write(&p, format!("schema = 1\n\n{entries}")).unwrap();
        p
    }

    fn good_catalog(&self) -> PathBuf {
        self.catalog(&self.entry(
            "test-model",
            "test-model.gguf",
            &support::sha256_hex(&self.body),
        ))
    }

    fn models(&self, args: &[&str], catalog: &Path) -> Output {
        let mut a = vec!["models"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--catalog", catalog.to_str().unwrap()]);
        run(self.cache.path(), &a)
    }

    fn blobs(&self) -> Vec<String> {
        let d = self.cache.path().join("models-v1/blobs/sha256");
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

#[test]
fn fetch_from_a_user_catalog_then_path_verify_and_rm() {
    let f = Fixture::new(200_000, vec![Reply::ok()]);
    let cat = f.good_catalog();
    let o = f.models(&["fetch", "test-model", "--allow-http"], &cat);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let fetched = PathBuf::from(out.trim());

    let o = f.models(&["path", "test-model"], &cat);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let path = PathBuf::from(out.trim());
    assert_eq!(path, fetched);
    assert!(path.is_absolute(), "{}", path.display());
    assert!(
        path.starts_with(f.cache.path().canonicalize().unwrap())
            || path.starts_with(f.cache.path())
    );
    assert_eq!(path.file_name().unwrap(), "test-model.gguf");
    assert_eq!(std::fs::read(&path).unwrap(), f.body);
    assert_eq!(f.blobs(), vec![support::sha256_hex(&f.body)]);

    let o = f.models(&["verify", "test-model"], &cat);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("test-model: ok"), "{out}");

    let o = f.models(&["rm", "test-model"], &cat);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(f.blobs().is_empty());
    let o = f.models(&["path", "test-model"], &cat);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn path_of_a_model_that_is_not_stored_exits_1() {
    let f = Fixture::new(1000, vec![Reply::ok()]);
    let o = f.models(&["path", "test-model"], &f.good_catalog());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.is_empty());
    assert!(err.contains("models fetch test-model"), "{err}");
}

#[test]
fn http_sources_are_refused_without_allow_http() {
    let f = Fixture::new(1000, vec![Reply::ok()]);
    let o = f.models(&["fetch", "test-model"], &f.good_catalog());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("refusing insecure URL"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("--allow-http"),
        "{err}"
    );
    assert!(f.server.seen("/m.gguf").is_empty());
}

#[test]
fn catalog_entries_whose_file_name_escapes_the_store_are_refused() {
    let f = Fixture::new(1000, vec![Reply::ok()]);
    let sha = support::sha256_hex(&f.body);
    let outside = f.dir.path().join("escaped.gguf");
    for bad in [
        "../x",
        "../../../../escaped.gguf",
        outside.to_str().unwrap(),
        "sub/dir.gguf",
    ] {
        let cat = f.catalog(&f.entry("test-model", bad, &sha));
        let o = f.models(&["fetch", "test-model", "--allow-http"], &cat);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(&format!("{}:5:", cat.display())),
            "{bad}: {err}"
        );
        assert!(err.contains("not a plain file name"), "{bad}: {err}");
    }
    let bad_name = f.entry("../evil", "x.gguf", &sha);
    let o = f.models(&["fetch", "../evil", "--allow-http"], &f.catalog(&bad_name));
    assert_eq!(o.status.code(), Some(2));
    assert!(f.server.seen("/m.gguf").is_empty());
    assert!(!outside.exists());
}

#[test]
fn malformed_catalog_reports_file_line_and_what_is_wrong() {
    let f = Fixture::new(1000, vec![Reply::ok()]);
    let entry = f
        .entry("test-model", "t.gguf", &support::sha256_hex(&f.body))
        .replace("size = 1000", "size = \"a thousand\"");
    let cat = f.catalog(&entry);
    let o = f.models(&["list"], &cat);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:7:", cat.display())), "{err}");
    assert!(err.contains("invalid type"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn checksum_mismatch_leaves_nothing_in_the_store() {
    let f = Fixture::new(50_000, vec![Reply::ok()]);
    let wrong = "ab".repeat(32);
    let cat = f.catalog(&f.entry("test-model", "t.gguf", &wrong));
    let o = f.models(&["fetch", "test-model", "--allow-http"], &cat);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(&wrong), "{err}");
    assert!(err.contains(&support::sha256_hex(&f.body)), "{err}");
    assert!(f.blobs().is_empty(), "{:?}", f.blobs());
    assert_eq!(
        f.models(&["path", "test-model"], &cat).status.code(),
        Some(1)
    );
}

#[test]
fn two_concurrent_fetches_of_one_model_download_once_and_both_succeed() {
    // Slow enough (about 0.6 s) that the second process starts while the first downloads.
    let f = Fixture::new(2 << 20, vec![Reply::slow(Duration::from_millis(20))]);
    let cat = f.good_catalog();
    let args = [
        "models",
        "fetch",
        "test-model",
        "--allow-http",
        "--catalog",
        cat.to_str().unwrap(),
    ];
    let a = xtask(f.cache.path(), &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = xtask(f.cache.path(), &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a).1);
    assert!(b.status.success(), "{}", text(&b).1);
    assert_eq!(text(&a).0, text(&b).0, "both print the same path");
    assert_eq!(f.server.seen("/m.gguf").len(), 1, "one download");
    assert_eq!(f.server.body_bytes(), 2 << 20);
    let path = PathBuf::from(text(&a).0.trim());
    assert_eq!(std::fs::read(path).unwrap(), f.body);
}

#[test]
fn offline_uses_only_what_is_stored() {
    let f = Fixture::new(10_000, vec![Reply::ok()]);
    let cat = f.good_catalog();
    let o = f.models(&["fetch", "test-model", "--offline", "--allow-http"], &cat);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--offline"), "{err}");
    assert!(f.server.seen("/m.gguf").is_empty());
    assert!(f
        .models(&["fetch", "test-model", "--allow-http"], &cat)
        .status
        .success());
    let o = f.models(&["fetch", "test-model", "--offline"], &cat);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(f.server.seen("/m.gguf").len(), 1);
}

#[test]
fn verify_finds_and_removes_a_corrupted_file() {
    let f = Fixture::new(10_000, vec![Reply::ok()]);
    let cat = f.good_catalog();
    assert!(f
        .models(&["fetch", "test-model", "--allow-http"], &cat)
        .status
        .success());
    let blob = f
        .cache
        .path()
        .join("models-v1/blobs/sha256")
        .join(support::sha256_hex(&f.body));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let o = f.models(&["verify"], &cat);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("CHECKSUM MISMATCH"), "{err}");
    assert_eq!(
        f.models(&["path", "test-model"], &cat).status.code(),
        Some(1)
    );
}

#[test]
fn transient_server_errors_are_retried_through_the_cli() {
    let f = Fixture::new(
        10_000,
        vec![Reply::Status(503), Reply::Status(503), Reply::ok()],
    );
    let cat = f.good_catalog();
    let o = f.models(
        &["fetch", "test-model", "--allow-http", "--backoff-ms", "10"],
        &cat,
    );
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(f.server.seen("/m.gguf").len(), 3);
}

#[test]
fn list_json_shows_the_user_model_with_fit_and_stored_state() {
    let f = Fixture::new(10_000, vec![Reply::ok()]);
    let cat = f.good_catalog();
    let machine = support::fixture("machines/models-laptop-8gb-cpu.json");
    let o = f.models(
        &["list", "--json", "--machine", machine.to_str().unwrap()],
        &cat,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 7, "the built-in catalog is listed too");
    let mine = rows.iter().find(|r| r["name"] == "test-model").unwrap();
    assert_eq!(mine["stored"], "no");
    assert_eq!(mine["fits"], "cpu");
    let big = rows
        .iter()
        .find(|r| r["name"] == "qwen2.5-coder-7b-instruct-q4_k_m")
        .unwrap();
    assert_eq!(big["fits"], "cpu");
}

#[test]
fn unknown_model_names_the_catalogs_and_gives_a_hint() {
    let f = Fixture::new(1000, vec![Reply::ok()]);
    let o = f.models(&["fetch", "no-such-model"], &f.good_catalog());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("no model named `no-such-model`") && err.contains("cat.toml"),
        "{err}"
    );
    assert!(err.contains("hint: `cargo xtask models list`"), "{err}");
}

#[test]
fn stored_gguf_files_size_models_from_their_own_header() {
    let mut body = Vec::new();
    let meta = xtask::gguf::sample_metadata("llama", 16, 2048, 32, 8, 131072);
    let refs: Vec<(&str, xtask::gguf::Value)> =
        meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    xtask::gguf::write_header(&mut body, &refs).unwrap();
    body.resize(100_000, 0);
    let f = Fixture::with_body(body, vec![Reply::ok()]);
    let entry = f
        .entry("test-model", "t.gguf", &support::sha256_hex(&f.body))
        .replace(
            "parameters = \"1M\"",
            "parameters = \"100M\"\npurpose = \"embedding\"",
        );
    let cat = f.catalog(&entry);
    assert!(f
        .models(&["fetch", "test-model", "--allow-http"], &cat)
        .status
        .success());

    let machine = support::fixture("machines/models-desktop-24gb-vram.json");
    let machine = machine.to_str().unwrap();
    let o = f.models(&["list", "--json", "--machine", machine], &cat);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mine = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "test-model")
        .unwrap();
    assert_eq!(mine["stored"], "yes");
    assert_eq!(mine["gguf"]["block_count"], 16);
    assert_eq!(mine["gguf"]["context_length"], 131072);
    // 16 layers × 8 kv heads × 128 dims × 2 bytes = 32 KiB per token, 4096 tokens.
    assert_eq!(
        mine["memory_needed"],
        100_000 + (32 << 10) * 4096 + (256 << 20)
    );

    let o = f.models(
        &[
            "recommend",
            "--json",
            "--purpose",
            "embedding",
            "--machine",
            machine,
        ],
        &cat,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["name"], "test-model");
    assert_eq!(r["runtime"]["gpu_layers"], 17);
    assert_eq!(r["runtime"]["context"], 8192);
    assert_eq!(r["runtime"]["threads"], 16);
}
