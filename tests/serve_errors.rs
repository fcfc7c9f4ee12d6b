//! `tunellama serve` refusing what it must refuse, through the real binary: every bad input is a
//! 4xx with `{"error": {"message", "type", "code"}}` naming the field (and the limit), a 100 MB
//! body is a 413 without being read, unknown routes are 404, a full wait queue is 503, CORS
//! headers appear only with `--cors-origin`, and the server keeps serving after all of it.

#[path = "support/runtime.rs"]
mod rt;
#[path = "support/serve.rs"]
mod serve;

use serde_json::{json, Value};
use serve::{Server, Sse};
use std::io::Write;

fn tiny() -> String {
    rt::python_model(&[]).to_string_lossy().into_owned()
}

fn error_of(status: u16, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    let e = &v["error"];
    assert!(e["message"].is_string(), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert_eq!(e["code"], status, "{v}");
    (status, e.clone())
}

fn still_serving(s: &Server) {
    let (st, v) = s.post_json(
        "/v1/completions",
        &json!({"prompt": "ok", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn bad_input_is_a_4xx_naming_the_problem_and_the_server_keeps_serving() {
    let s = Server::start(
        &rt::binary(),
        &["-m", &tiny(), "-c", "128", "--parallel", "1"],
    );
    let msg = |m: &str| json!([{"role": "user", "content": m}]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"messages\": [".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "not an object",
            b"[1, 2]".to_vec(),
            400,
            "must be a JSON object",
        ),
        (
            "wrong type",
            json!({"messages": msg("hi"), "max_tokens": "ten"})
                .to_string()
                .into_bytes(),
            400,
            "`max_tokens` must be an integer, got a string",
        ),
        (
            "wrong type of temperature",
            json!({"messages": msg("hi"), "temperature": [1]})
                .to_string()
                .into_bytes(),
            400,
            "`temperature` must be a number, got an array",
        ),
        (
            "negative max_tokens",
            json!({"messages": msg("hi"), "max_tokens": -5})
                .to_string()
                .into_bytes(),
            400,
            "`max_tokens` is -5; it must be between 1 and 1048576",
        ),
        (
            "huge max_tokens",
            json!({"messages": msg("hi"), "max_tokens": 10_000_000_000u64})
                .to_string()
                .into_bytes(),
            400,
            "`max_tokens` is 10000000000; it must be between 1 and 1048576",
        ),
        (
            "unknown role",
            json!({"messages": [{"role": "wizard", "content": "hi"}]})
                .to_string()
                .into_bytes(),
            400,
            "`messages[0].role` \"wizard\" is not one of",
        ),
        (
            "empty messages",
            json!({"messages": []}).to_string().into_bytes(),
            400,
            "`messages` is empty",
        ),
        (
            "invalid UTF-8",
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "n other than 1",
            json!({"messages": msg("hi"), "n": 3})
                .to_string()
                .into_bytes(),
            400,
            "`n` is 3",
        ),
        (
            "an unknown feature",
            json!({"messages": msg("hi"), "tools": []})
                .to_string()
                .into_bytes(),
            400,
            "`tools` is not supported",
        ),
        (
            "an unparsable grammar",
            json!({"messages": msg("hi"), "grammar": "root ::= ("})
                .to_string()
                .into_bytes(),
            400,
            "`grammar`",
        ),
        (
            "a token id outside the vocabulary",
            json!({"messages": msg("hi"), "logit_bias": {"99999": 1}})
                .to_string()
                .into_bytes(),
            400,
            "is not a token id of this model",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (st, _, b) = s.request("POST", "/v1/chat/completions", &[], &body);
        let (_, e) = error_of(st, &b);
        assert_eq!(st, status, "{what}: {e}");
        assert_eq!(e["type"], "invalid_request_error", "{what}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{what}: {e} does not say {needle:?}"
        );
    }
    // A prompt longer than a slot's context: its own error type with both numbers.
    let (st, _, b) = s.request(
        "POST",
        "/v1/completions",
        &[],
        json!({"prompt": "y".repeat(300)}).to_string().as_bytes(),
    );
    let (_, e) = error_of(st, &b);
    assert_eq!(st, 400);
    assert_eq!(e["type"], "exceed_context_size_error");
    assert_eq!(e["n_ctx"], 128);
    assert!(e["n_prompt_tokens"].as_u64().unwrap() >= 300, "{e}");
    still_serving(&s);

    // 100 MB: refused from its Content-Length, before the body is read.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n",
    )
    .unwrap();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..100 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let (st, _, b) = serve::read_response(&mut c);
    let (_, e) = error_of(st, &b);
    assert_eq!(st, 413, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 8388608 bytes"),
        "{e}"
    );
    writer.join().unwrap();
    still_serving(&s);

    // Routes.
    let (st, _, b) = s.request("GET", "/v1/nothing", &[], b"");
    assert_eq!(error_of(st, &b).1["type"], "not_found_error");
    assert_eq!(st, 404);
    let (st, _, b) = s.request("GET", "/v1/chat/completions", &[], b"");
    assert_eq!(st, 405, "{}", String::from_utf8_lossy(&b));
    // A request head that is not HTTP.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(b"garbage\r\n\r\n").unwrap();
    let (st, _, _) = serve::read_response(&mut c);
    assert!((400..500).contains(&st), "{st}");
    still_serving(&s);

    // No CORS without --cors-origin.
    let (_, h, _) = s.request("GET", "/health", &[("Origin", "http://evil.test")], b"");
    assert!(!h.contains_key("access-control-allow-origin"), "{h:?}");
    assert!(s.stop().success());
}

#[test]
fn cors_headers_only_for_the_given_origin_and_keys_are_required() {
    let s = Server::start(
        &rt::binary(),
        &[
            "-m",
            &tiny(),
            "-c",
            "128",
            "--parallel",
            "1",
            "--cors-origin",
            "http://app.test",
            "--api-key",
            "k-1",
        ],
    );
    let (st, h, _) = s.request(
        "OPTIONS",
        "/v1/chat/completions",
        &[("Origin", "http://app.test")],
        b"",
    );
    assert_eq!(st, 204);
    assert_eq!(h["access-control-allow-origin"], "http://app.test");
    assert!(h["access-control-allow-headers"].contains("Authorization"));
    // /health is open; everything else needs the key.
    let (st, _, _) = s.request("GET", "/health", &[], b"");
    assert_eq!(st, 200);
    let (st, h, b) = s.request("GET", "/v1/models", &[], b"");
    assert_eq!(st, 401);
    assert_eq!(error_of(st, &b).1["type"], "authentication_error");
    assert_eq!(h["access-control-allow-origin"], "http://app.test");
    let (st, _, _) = s.request("GET", "/v1/models", &[("Authorization", "Bearer k-2")], b"");
    assert_eq!(st, 401);
    let (st, _, b) = s.request("GET", "/v1/models", &[("Authorization", "Bearer k-1")], b"");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert!(!s.log().contains("k-1"), "the key was logged:\n{}", s.log());
}

#[test]
fn a_full_wait_queue_answers_503_and_the_rest_are_served() {
    let model = rt::python_model(&["--ctx", "8192"]);
    // One slot, a queue of 4: of 8 long requests at once, some must be refused.
    let s = Server::start(
        &rt::binary(),
        &[
            "-m",
            model.to_str().unwrap(),
            "-c",
            "8192",
            "--parallel",
            "1",
        ],
    );
    let long = json!({"prompt": "Long:", "max_tokens": 600, "temperature": 0, "stream": true,
                      "logit_bias": {"2": -100}});
    // All eight are sent before any answer is read (a queued request's answer starts when it
    // gets the slot).
    let sent: Vec<_> = (0..8)
        .map(|_| s.send("POST", "/v1/completions", &[], long.to_string().as_bytes()))
        .collect();
    let mut streams: Vec<Sse> = sent.into_iter().map(Sse::read).collect();
    let statuses: Vec<u16> = streams.iter().map(|x| x.status).collect();
    let refused = statuses.iter().filter(|&&c| c == 503).count();
    assert!(refused >= 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|&c| c == 200 || c == 503),
        "{statuses:?}"
    );
    for x in streams.iter_mut().filter(|x| x.status == 503) {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut x.reader, &mut b).unwrap();
        let (_, e) = error_of(503, &b);
        assert_eq!(e["type"], "unavailable_error");
        assert!(e["message"].as_str().unwrap().contains("queue"), "{e}");
    }
    assert_eq!(
        s.metrics()["tunellama_requests_rejected_total"],
        refused as f64
    );
    // The admitted ones all finish, one after another, well-formed.
    for x in streams.into_iter().filter(|x| x.status == 200) {
        let ev = x.collect();
        assert_eq!(ev.last().unwrap()["choices"][0]["finish_reason"], "length");
    }
}

#[test]
fn a_grammar_and_json_object_constrain_what_is_generated() {
    let s = Server::start(
        &rt::binary(),
        &["-m", &tiny(), "-c", "128", "--parallel", "1"],
    );
    for seed in 0..4 {
        let (st, v) = s.post_json(
            "/v1/completions",
            &json!({"prompt": "Answer:", "max_tokens": 20, "temperature": 1.0, "seed": seed,
                    "grammar": "root ::= \"yes\" | \"no\""}),
        );
        assert_eq!(st, 200, "{v}");
        let text = v["choices"][0]["text"].as_str().unwrap();
        assert!(text == "yes" || text == "no", "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    }
    // json_object: with `}` (token 3 + 0x7d) pushed up, the grammar closes the object at once
    // and then allows only whitespace and the end.
    let (st, v) = s.post_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "JSON please"}], "max_tokens": 40,
                "temperature": 0, "response_format": {"type": "json_object"},
                "logit_bias": {"128": 30}}),
    );
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(parsed.is_object(), "{text:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
}

#[test]
fn cargo_xtask_serve_resolves_a_file_or_a_stored_catalog_model() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let xtask = |cache: Option<&std::path::Path>, args: &[&str]| {
        let mut c = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"));
        c.arg("serve").args(args);
        if let Some(d) = cache {
            c.env("TUNELLAMA_CACHE_DIR", d);
        }
        c
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let o = xtask(None, &["--model", "/nonexistent/m.gguf"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("/nonexistent/m.gguf does not exist"),
        "{}",
        text(&o)
    );
    let o = xtask(None, &["--model", "no-such-model"]).output().unwrap();
    assert!(
        text(&o).contains("neither a file nor a model of the catalog"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("cargo xtask models list"), "{}", text(&o));
    let empty = tempfile::tempdir().unwrap();
    let o = xtask(Some(empty.path()), &["--model", "stories15m-q4_0"])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("stories15m-q4_0 is not stored yet"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("cargo xtask models fetch stories15m-q4_0"),
        "{}",
        text(&o)
    );

    // A file: the current runtime (the one `setup` made, as rt::binary finds it) serves it,
    // with the flags after `--`.
    rt::binary();
    let mut child = xtask(
        None,
        &[
            "--model",
            &tiny(),
            "--",
            "--port",
            "0",
            "-c",
            "64",
            "--parallel",
            "1",
        ],
    )
    .stderr(std::process::Stdio::piped())
    .process_group(0)
    .spawn()
    .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if let Some(p) = line.split("listening on http://127.0.0.1:").nth(1) {
                let _ = tx.send(p.trim().parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(std::time::Duration::from_secs(600))
        .ok()
        .flatten()
        .expect("cargo xtask serve started the server");
    let t = std::time::Instant::now();
    let ok = loop {
        let r = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(b"GET /props HTTP/1.1\r\nConnection: close\r\n\r\n")?;
            Ok(serve::read_response(&mut s))
        });
        if let Ok((200, _, body)) = r {
            break serde_json::from_slice::<Value>(&body).unwrap();
        }
        assert!(t.elapsed().as_secs() < 60, "not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(ok["n_ctx_slot"], 64);
    assert_eq!(ok["total_slots"], 1);
    // SIGTERM to the group (xtask and the server it runs): the server exits 0, and so xtask.
    // SAFETY: kill(2) with a process group id and a signal number.
    assert_eq!(
        unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) },
        0
    );
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}");
}

/// The stderr lines of `tunellama serve ARGS` up to the one saying where it listens.
fn lines_until_listening(args: &[&str]) -> Vec<String> {
    use std::io::BufRead;
    let mut c = std::process::Command::new(rt::binary())
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    for l in std::io::BufReader::new(c.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let done = l.contains("serve: listening on http://");
        out.push(l);
        if done {
            break;
        }
    }
    let _ = c.kill();
    let _ = c.wait();
    out
}

#[test]
fn listening_beyond_loopback_without_a_key_prints_a_warning() {
    let warned = |ls: &[String]| {
        ls.iter()
            .any(|l| l.starts_with("warning: listening on 0.0.0.0"))
    };
    let open = lines_until_listening(&["-m", &tiny(), "-c", "64", "--host", "0.0.0.0"]);
    assert!(warned(&open), "{open:?}");
    assert!(open.last().unwrap().contains("http://0.0.0.0:"), "{open:?}");
    let keyed = lines_until_listening(&[
        "-m",
        &tiny(),
        "-c",
        "64",
        "--host",
        "0.0.0.0",
        "--api-key",
        "k-9",
    ]);
    assert!(!warned(&keyed), "{keyed:?}");
    assert!(!keyed.iter().any(|l| l.contains("k-9")), "{keyed:?}");
    let local = lines_until_listening(&["-m", &tiny(), "-c", "64"]);
    assert!(!warned(&local), "{local:?}");
}

/// Writes `head` (a request head without its empty line, `Transfer-Encoding: chunked` added
/// here) and `body` (already chunk-encoded) on a new connection.
fn send_chunked(s: &Server, head: &str, body: &[u8]) -> std::net::TcpStream {
    let mut c = s.connect();
    c.write_all(format!("{head}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes())
        .unwrap();
    let _ = c.write_all(body);
    c
}

#[test]
fn chunked_request_bodies_are_decoded_limited_and_checked() {
    let s = Server::start(
        &rt::binary(),
        &["-m", &tiny(), "-c", "128", "--parallel", "1"],
    );
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json";
    let req = json!({"messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 4,
                     "temperature": 0});
    let (st, want) = s.post_json("/v1/chat/completions", &req);
    assert_eq!(st, 200, "{want}");
    // The same request in three chunks (one with an extension) and a trailer field: the same
    // greedy answer as with Content-Length.
    let text = req.to_string();
    let (a, rest) = text.split_at(7);
    let (b, c) = rest.split_at(20);
    let body = format!(
        "{:x}\r\n{a}\r\n{:X};note=1\r\n{b}\r\n{:x}\r\n{c}\r\n0\r\nX-Checksum: none\r\n\r\n",
        a.len(),
        b.len(),
        c.len()
    );
    let (st, _, got) = serve::read_response(&mut send_chunked(&s, head, body.as_bytes()));
    let got: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(st, 200, "{got}");
    assert_eq!(
        got["choices"][0]["message"]["content"],
        want["choices"][0]["message"]["content"]
    );
    // The same prompt: all of it but the last token came from the slot's cache.
    let (n, cached) = (
        &got["usage"]["prompt_tokens"],
        &got["usage"]["prompt_tokens_details"],
    );
    assert_eq!(n, &want["usage"]["prompt_tokens"]);
    assert_eq!(cached["cached_tokens"], n.as_u64().unwrap() - 1, "{got}");

    // Over the limit: 413 once the chunks pass 8 MiB, while the client is still sending (it
    // offers 100 chunks of 1 MiB; the answer comes before it finished).
    let mut c = send_chunked(&s, head, b"");
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = [
            b"100000\r\n".to_vec(),
            vec![b' '; 1 << 20],
            b"\r\n".to_vec(),
        ]
        .concat();
        let mut sent = 0;
        for _ in 0..100 {
            if w.write_all(&chunk).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let (st, _, b) = serve::read_response(&mut c);
    let (_, e) = error_of(st, &b);
    assert_eq!(st, 413, "{e}");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("chunked request body passes the limit") && m.contains("8388608 bytes"),
        "{e}"
    );
    writer.join().unwrap();
    still_serving(&s);

    // Malformed chunking: 400 naming what was wrong.
    for (body, needle) in [
        (&b"zz\r\n{}\r\n0\r\n\r\n"[..], "malformed chunk size \"zz\""),
        (&b"2\r\n{}}\r\n0\r\n\r\n"[..], "not followed by CRLF"),
    ] {
        let (st, _, b) = serve::read_response(&mut send_chunked(&s, head, body));
        let (_, e) = error_of(st, &b);
        assert_eq!(st, 400, "{e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{e} does not say {needle:?}"
        );
    }
    still_serving(&s);
    assert!(s.stop().success());
}
