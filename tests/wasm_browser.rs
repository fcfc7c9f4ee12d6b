//! The wasm variant's page in a real browser (issue 14, points 4 and 5): `cargo xtask serve-wasm`
//! serves web/, the cached build's module and the tiny model on 127.0.0.1; headless Chromium
//! (Debian's `chromium`, driven over the DevTools protocol on a pipe by tests/wasm/drive-chromium.js)
//! opens the page with `?autorun=1`; the generated tokens read from the page equal what the
//! JavaScript API produced under node for the same prompt, options and seed. A second load with
//! the same browser profile takes the model from Cache Storage: the server's log shows exactly one
//! model download. A page pinning another sha256 refuses the model and stores nothing.
//! Screenshots of the loads go to target/wasm-browser/.

#[path = "support/wasm.rs"]
mod wasm;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use wasm::{cross_wasm, module_and_model, node, repo, script};

/// The server process, stopped when the test ends (pass or fail).
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PROMPT: &str = "The quick brown fox";

/// Starts `cargo xtask serve-wasm --port 0` for `model`, logging to `log`; the server and the URL
/// it printed.
fn serve(model: &Path, log: &Path) -> (Server, String) {
    let mut child = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve-wasm", "--port", "0", "--model"])
        .arg(model)
        .arg("--log")
        .arg(log)
        .env("CI", "true")
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut base = String::new();
    BufReader::new(stdout).read_line(&mut base).unwrap();
    let base = base.trim().to_string();
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "server said {base:?}"
    );
    (server, base)
}

fn drive(user_data: &Path, url: &str, shot: &Path) -> Value {
    let browser = xtask::prereq::chromium().unwrap_or_else(|| {
        panic!(
            "none of {:?} is installed: `cargo xtask test` installs chromium",
            xtask::prereq::CHROMIUM_NAMES
        )
    });
    let out = Command::new("node")
        .arg(script("drive-chromium.js"))
        .arg(browser)
        .arg(user_data)
        .arg(url)
        .arg(shot)
        .arg("240000")
        .output()
        .expect("node (package nodejs)");
    assert!(
        out.status.success(),
        "the page in chromium: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "screenshot"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The page's result, failing the test with the page's error if it reported one.
fn result(outcome: Value) -> Value {
    assert!(
        outcome["error"].is_null(),
        "the page failed: {}",
        outcome["error"]
    );
    outcome["result"].clone()
}

#[test]
fn the_page_streams_the_node_tokens_and_a_reload_uses_browser_storage() {
    let r = cross_wasm();
    let (module, model) = module_and_model(&r);
    let options = r#"{"maxTokens":24,"temperature":0.8,"topK":40,"topP":0.95,"minP":0.05,"repeatPenalty":1.0,"seed":42}"#;
    let expected: Value = serde_json::from_str(&node(&[
        &script("generate.js"),
        module.to_str().unwrap(),
        model.to_str().unwrap(),
        PROMPT,
        options,
    ]))
    .unwrap();
    assert!(!expected["tokens"].as_array().unwrap().is_empty());

    let out_dir = repo().join("target/wasm-browser");
    std::fs::create_dir_all(&out_dir).unwrap();
    let log = out_dir.join("server.log");
    let _ = std::fs::remove_file(&log);
    let (server, base) = serve(&model, &log);
    let url = format!(
        "{base}?autorun=1&seed=42&temperature=0.8&topK=40&topP=0.95&minP=0.05&repeatPenalty=1&maxTokens=24&prompt={}",
        PROMPT.replace(' ', "%20")
    );
    let profile = tempfile::tempdir().unwrap();
    let downloads = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("GET /model.gguf ") && l.contains(" 200 "))
            .count()
    };

    let first = result(drive(profile.path(), &url, &out_dir.join("first-load.png")));
    assert_eq!(first["modelSource"], "network", "{first}");
    assert_eq!(first["tokens"], expected["tokens"], "page vs node");
    assert_eq!(first["text"], expected["text"]);
    assert!(first["systemInfo"]
        .as_str()
        .unwrap()
        .contains("WASM_SIMD = 1"));
    assert_eq!(downloads(), 1, "first load downloads the model once");
    let served = std::fs::read_to_string(&log).unwrap();
    assert!(served.contains("GET /tunellama.wasm 200"), "{served}");

    let second = result(drive(
        profile.path(),
        &url,
        &out_dir.join("second-load.png"),
    ));
    assert_eq!(second["modelSource"], "cache-storage", "{second}");
    assert_eq!(second["tokens"], expected["tokens"]);
    assert_eq!(
        downloads(),
        1,
        "the reload must take the model from browser storage:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // The sha256 is checked before use: a page pinning another hash refuses the model (with a
    // fresh profile, so it is downloaded) and stores nothing.
    let wrong = format!("{url}&sha256={}", "0".repeat(64));
    let fresh = tempfile::tempdir().unwrap();
    let refused = drive(fresh.path(), &wrong, &out_dir.join("sha256-mismatch.png"));
    let error = refused["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{refused}"));
    assert!(error.contains("model sha256 mismatch"), "{error}");
    assert_eq!(downloads(), 2, "downloaded, then refused");
    let again = drive(fresh.path(), &wrong, &out_dir.join("sha256-mismatch.png"));
    assert!(again["error"].is_string(), "{again}");
    assert_eq!(downloads(), 3, "nothing was stored: downloaded again");
    drop(server);
}

#[test]
fn serve_wasm_sends_wasm_with_its_mime_type_and_logs_requests() {
    let r = cross_wasm();
    let (_, model) = module_and_model(&r);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (_server, base) = serve(&model, &log);
    let addr = base
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        text.split("\r\n\r\n").next().unwrap().to_string()
    };
    let wasm = get("/tunellama.wasm");
    assert!(wasm.starts_with("HTTP/1.1 200"), "{wasm}");
    assert!(wasm.contains("Content-Type: application/wasm"), "{wasm}");
    assert!(wasm.contains("Cache-Control: no-store"), "{wasm}");
    let json = get("/model.json");
    assert!(json.contains("application/json"), "{json}");
    assert!(get("/index.html").contains("text/html"));
    assert!(get("/../Cargo.toml").starts_with("HTTP/1.1 404"));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("GET /tunellama.wasm 200"), "{logged}");
    assert!(logged.contains("GET /../Cargo.toml 404"), "{logged}");
}
