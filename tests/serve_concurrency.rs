//! `tunellama serve` with several requests at once, through the real binary: simultaneous
//! greedy streams give exactly the text each gives alone while sharing decode calls; a request
//! arriving mid-generation streams before the running one ends; a client that disconnects frees
//! its slot within a second; the second turn of a chat reuses the first turn's KV cache
//! (`cached_tokens`); SIGTERM ends running streams with a final event and exits 0.

#[path = "support/runtime.rs"]
mod rt;
#[path = "support/serve.rs"]
mod serve;

use serde_json::{json, Value};
use serve::{stream_text, Server, Sse};
use std::time::{Duration, Instant};

fn tiny() -> String {
    rt::python_model(&[]).to_string_lossy().into_owned()
}

/// A tiny model trained for 8192 positions: room for long generations.
fn tiny_long() -> String {
    rt::python_model(&["--ctx", "8192"])
        .to_string_lossy()
        .into_owned()
}

/// Bans the end-of-text token (id 2 in the tiny vocabulary) and, with `printable`, every byte
/// token but the printable non-space ASCII ones (ids 3 + byte): a generation that runs to
/// max_tokens with text that re-tokenizes byte for byte.
fn bias(printable: bool) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("2".into(), json!(-100));
    if printable {
        for b in (0u32..=0x20).chain(0x7f..=0xff) {
            m.insert((3 + b).to_string(), json!(-100));
        }
    }
    Value::Object(m)
}

/// A server on the long-context tiny model with `parallel` slots of 8192 tokens.
fn long_server(parallel: &str) -> Server {
    Server::start(
        &rt::binary(),
        &["-m", &tiny_long(), "-c", "8192", "--parallel", parallel],
    )
}

/// A greedy stream of up to 8000 tokens that never ends early (the end token is banned).
fn long_request() -> Value {
    json!({"prompt": "Long:", "max_tokens": 8000, "temperature": 0, "stream": true,
           "logit_bias": bias(false)})
}

/// `long_request` on its own `Connection: close` connection.
fn long_stream(s: &Server) -> Sse {
    Sse::open(s, "/v1/completions", &long_request())
}

/// Reads three events of `a` (the one stream of a one-slot server), disconnects, and checks
/// that the slot is free within a second.
fn leave_mid_stream(s: &Server, mut a: Sse) {
    for _ in 0..3 {
        a.next().unwrap();
    }
    assert_eq!(s.metrics()["tunellama_busy_slots"], 1.0);
    drop(a);
    let t = Instant::now();
    while s.metrics()["tunellama_busy_slots"] != 0.0 {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the slot is still busy {:?} after the client left",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn completion(prompt: &str, max_tokens: u32, stream: bool) -> Value {
    json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream})
}

#[test]
fn four_simultaneous_greedy_streams_each_give_the_text_they_give_alone() {
    let s = Server::start(
        &rt::binary(),
        &["-m", &tiny(), "-c", "256", "--parallel", "4"],
    );
    let prompts = [
        "The quick brown fox",
        "Once upon a time there was",
        "1, 2, 3, 4,",
        "Lorem ipsum dolor sit amet, consectetur",
    ];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let (st, v) = s.post_json("/v1/completions", &completion(p, 40, false));
            assert_eq!(st, 200, "{v}");
            v["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let before = s.metrics();
    let together: Vec<(String, usize)> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                let s = &s;
                sc.spawn(move || {
                    let ev = Sse::open(s, "/v1/completions", &completion(p, 40, true)).collect();
                    (stream_text(&ev), ev.len())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = s.metrics();
    for (i, ((text, _), want)) in together.iter().zip(&alone).enumerate() {
        if text != want {
            near_tie(&s, prompts[i], want, text);
        }
    }
    // They were decoded together: far fewer decode calls than generated tokens.
    let calls = after["tunellama_decode_calls_total"] - before["tunellama_decode_calls_total"];
    let tokens =
        after["tunellama_generated_tokens_total"] - before["tunellama_generated_tokens_total"];
    assert!(
        calls < tokens * 0.75,
        "{calls} decode calls for {tokens} tokens of 4 simultaneous streams: not batched together"
    );
}

/// Where a simultaneous stream's text left the lone one's, the model's two best logits must
/// have been within 1e-3 (a near-tie that batched kernels may flip); anything else is a bug.
fn near_tie(s: &Server, prompt: &str, alone: &str, together: &str) {
    let k = alone
        .char_indices()
        .zip(together.chars())
        .find(|((_, a), b)| a != b)
        .map_or(alone.len().min(together.len()), |((i, _), _)| i);
    let common = &alone[..k];
    assert!(
        !common.contains('\u{fffd}'),
        "texts differ after {k} bytes and the common part is not re-tokenizable:\nalone:    {alone:?}\ntogether: {together:?}"
    );
    let (st, v) = s.post_json(
        "/top_logits",
        &json!({"prompt": format!("{prompt}{common}"), "n": 2}),
    );
    assert_eq!(st, 200, "{v}");
    let gap = v["top"][0]["logit"].as_f64().unwrap() - v["top"][1]["logit"].as_f64().unwrap();
    assert!(
        gap < 1e-3,
        "simultaneous and lone greedy texts differ at byte {k} where the top-2 logits are {gap} apart (not a near-tie):\nalone:    {alone:?}\ntogether: {together:?}"
    );
}

#[test]
fn a_request_arriving_mid_generation_streams_before_the_running_one_ends() {
    let s = long_server("2");
    let mut a = long_stream(&s);
    assert_eq!(a.status, 200);
    for _ in 0..5 {
        a.next().expect("the long stream's first events");
    }
    let t0 = Instant::now();
    let b = Sse::open(&s, "/v1/completions", &completion("Short:", 4, true)).collect();
    let b_done = t0.elapsed();
    assert!(stream_text(&b).len() <= 4 * 4);
    // The long stream is still running: it has not finished, and it keeps streaming.
    for i in 0..100 {
        let d = a.next().expect("the long stream goes on");
        assert_ne!(
            d, "[DONE]",
            "the long stream ended {i} events after the short request finished in {b_done:?}: it was not running alongside"
        );
    }
}

#[test]
fn a_client_that_disconnects_frees_its_slot_within_a_second() {
    let s = long_server("1");
    leave_mid_stream(&s, long_stream(&s));
    assert_eq!(s.metrics()["tunellama_requests_cancelled_total"], 1.0);
    // The freed slot serves the next request.
    let (st, v) = s.post_json("/v1/completions", &completion("next", 3, false));
    assert_eq!(st, 200, "{v}");
}

#[test]
fn the_second_turn_of_a_chat_reuses_the_first_turns_cache() {
    // Qwen2.5's template (with its default system prompt), on a model trained for 8192 tokens.
    let model = rt::python_model(&[
        "--ctx",
        "8192",
        "--chat-template",
        "Qwen-Qwen2.5-7B-Instruct.jinja",
    ]);
    let s = Server::start(
        &rt::binary(),
        &[
            "-m",
            model.to_str().unwrap(),
            "-c",
            "1024",
            "--parallel",
            "2",
        ],
    );
    let turn1 = vec![json!({"role": "user", "content": "Hello there"})];
    let (st, v1) = s.post_json(
        "/v1/chat/completions",
        &json!({"messages": turn1, "max_tokens": 12, "temperature": 0, "logit_bias": bias(true)}),
    );
    assert_eq!(st, 200, "{v1}");
    let reply = v1["choices"][0]["message"]["content"].as_str().unwrap();
    let p1 = v1["usage"]["prompt_tokens"].as_u64().unwrap();
    let n1 = v1["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(n1, 12);
    assert_eq!(v1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let mut turn2 = turn1.clone();
    turn2.push(json!({"role": "assistant", "content": reply}));
    turn2.push(json!({"role": "user", "content": "Tell me more"}));
    let (st, v2) = s.post_json(
        "/v1/chat/completions",
        &json!({"messages": turn2, "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(st, 200, "{v2}");
    // The slot holds turn 1's prompt and every generated token but the last (sampled, never
    // evaluated); the second prompt repeats all of them (one byte token per printable character,
    // the template copies the reply as it is), so exactly that much is reused.
    let shared = p1 + n1 - 1;
    assert_eq!(
        v2["usage"]["prompt_tokens_details"]["cached_tokens"], shared,
        "turn 1: {v1}\nturn 2: {v2}"
    );
    assert_eq!(
        v2["timings"]["prompt_n"],
        v2["usage"]["prompt_tokens"].as_u64().unwrap() - shared
    );
}

#[test]
fn sigterm_ends_running_streams_with_a_final_event_and_exits_0() {
    let s = long_server("1");
    let mut a = long_stream(&s);
    a.next().unwrap();
    let pid = s.pid();
    let reader = std::thread::spawn(move || {
        let mut last = None;
        while let Some(d) = a.next() {
            last = Some(d);
        }
        last
    });
    std::thread::sleep(Duration::from_millis(100));
    let status = s.stop();
    assert!(
        status.success(),
        "tunellama serve (pid {pid}) exited with {status}"
    );
    let last: Value = serde_json::from_str(&reader.join().unwrap().expect("events")).unwrap();
    assert_eq!(last["error"]["type"], "unavailable_error", "{last}");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shutting down"));
}

#[test]
fn parallel_defaults_to_two_slots_per_core_as_info_shows() {
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let want = (2 * cores).clamp(2, 8);
    let out = rt::run(&["info", "--json"], None);
    assert!(out.status.success());
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["serve"]["parallel"], want, "{}", info["serve"]);
    let text = String::from_utf8(rt::run(&["info"], None).stdout).unwrap();
    assert!(
        text.contains(&format!("parallel    {want:<6} 2 per core")),
        "{text}"
    );
    // A tiny model fits in RAM with every default slot: the server uses exactly that many.
    let s = Server::start(&rt::binary(), &["-m", &tiny(), "-c", "128"]);
    let (st, _, body) = s.request("GET", "/props", &[], b"");
    assert_eq!(st, 200);
    let props: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(props["total_slots"], want, "{props}");
    assert_eq!(s.metrics()["tunellama_slots"], want as f64);
}

#[test]
fn a_prompt_longer_than_a_batch_gets_comment_keep_alives_while_it_is_processed() {
    let s = long_server("1");
    // About 1500 byte tokens: three batches of 512.
    let prompt = "keep alive ".repeat(140);
    let body = json!({"prompt": prompt, "max_tokens": 2, "temperature": 0, "stream": true});
    let mut sse = Sse::open(&s, "/v1/completions", &body);
    assert_eq!(sse.status, 200);
    let mut lines = Vec::new();
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut sse.reader, &mut line).unwrap() > 0 {
        lines.push(line.trim_end().to_string());
        line.clear();
    }
    let first_comment = lines.iter().position(|l| l == ": processing the prompt");
    let first_text = lines.iter().position(|l| {
        l.starts_with("data: ")
            && l.contains("\"finish_reason\":null")
            && !l.contains("\"text\":\"\"")
    });
    assert!(first_comment.is_some(), "{lines:?}");
    assert!(
        first_text.is_none_or(|t| first_comment.unwrap() < t),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().rev().find(|l| !l.is_empty()).unwrap(),
        "data: [DONE]"
    );
}

#[test]
fn streams_to_a_keep_alive_client_are_chunked_and_the_connection_carries_the_next_requests() {
    let s = long_server("1");
    let chat = json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8,
                      "temperature": 0, "stream": true});
    let comp = completion("Once upon a time", 8, true);
    // What the same streams give over their own `Connection: close` connections.
    let want_chat = stream_text(&Sse::open(&s, "/v1/chat/completions", &chat).collect());
    let want_comp = stream_text(&Sse::open(&s, "/v1/completions", &comp).collect());
    let plain = completion("Once upon a time", 8, false);
    let (st, want_plain) = s.post_json("/v1/completions", &plain);
    assert_eq!(st, 200, "{want_plain}");

    // One TCP connection, HTTP/1.1 keep-alive: two streams, then a plain request.
    let mut conn = std::io::BufReader::new(s.connect());
    for (path, body, want) in [
        ("/v1/chat/completions", &chat, &want_chat),
        ("/v1/completions", &comp, &want_comp),
    ] {
        let b = body.to_string();
        serve::write_request(conn.get_mut(), "POST", path, &[], b.as_bytes(), false);
        let mut sse = Sse::read_on(conn);
        assert_eq!(sse.status, 200);
        assert!(sse.chunked(), "{:?}", sse.headers);
        assert!(!sse.headers.contains_key("connection"), "{:?}", sse.headers);
        let ev = sse.collect_events();
        assert_eq!(&stream_text(&ev), want, "{path}");
        assert_eq!(ev.last().unwrap()["choices"][0]["finish_reason"], "length");
        conn = sse.into_reader();
    }
    let b = plain.to_string();
    serve::write_request(
        conn.get_mut(),
        "POST",
        "/v1/completions",
        &[],
        b.as_bytes(),
        false,
    );
    let (st, _, body) = serve::read_sized_response(&mut conn);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], want_plain["choices"][0]["text"]);

    // HTTP/1.0: the stream is not chunked and ends by closing.
    let mut c = s.connect();
    let b = comp.to_string();
    std::io::Write::write_all(
        &mut c,
        format!(
            "POST /v1/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let sse = Sse::read(c);
    assert!(!sse.chunked(), "{:?}", sse.headers);
    assert_eq!(sse.headers["connection"], "close");
    assert_eq!(stream_text(&sse.collect()), want_comp);

    // A keep-alive client that leaves mid-stream still frees its slot within a second.
    let mut c = s.connect();
    let b = long_request().to_string();
    serve::write_request(&mut c, "POST", "/v1/completions", &[], b.as_bytes(), false);
    let a = Sse::read(c);
    assert!(a.chunked());
    let cancelled = s.metrics()["tunellama_requests_cancelled_total"];
    leave_mid_stream(&s, a);
    assert_eq!(
        s.metrics()["tunellama_requests_cancelled_total"],
        cancelled + 1.0
    );
}
