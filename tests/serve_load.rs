//! `tunellama serve` under load, through the real binary: 8 clients x 20 requests of random
//! kinds and lengths, streamed and not, some clients leaving mid-answer. Bounded in time; no 5xx
//! but 503 (past the queue bound); every stream read to its end is well-formed; afterwards every
//! slot is free, the queue empty, the server still answers, and its RSS is back to its level.

#[path = "support/runtime.rs"]
mod rt;
#[path = "support/serve.rs"]
mod serve;

use serde_json::{json, Value};
use serve::{Server, Sse};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    busy: usize,
    left: usize,
}

fn one_request(s: &Server, rng: &mut Rng, t: &mut Tally) {
    let chat = rng.below(2) == 0;
    let stream = rng.below(3) != 0;
    let words = ["alpha ", "beta ", "gamma ", "delta ", "é ", "日本 "];
    let prompt: String = (0..1 + rng.below(30))
        .map(|_| words[rng.below(words.len() as u64) as usize])
        .collect();
    let max_tokens = 1 + rng.below(48);
    let mut body = json!({"max_tokens": max_tokens, "temperature": (rng.below(3) as f64) * 0.5,
                          "seed": rng.below(1000), "stream": stream});
    let path = if chat {
        body["messages"] = json!([{"role": "user", "content": prompt}]);
        "/v1/chat/completions"
    } else {
        body["prompt"] = json!(prompt);
        "/v1/completions"
    };
    let leave = rng.below(6) == 0;
    let conn = s.send("POST", path, &[], body.to_string().as_bytes());
    if leave && !stream {
        drop(conn); // gone before the answer
        t.left += 1;
        return;
    }
    let mut sse = Sse::read(conn);
    match sse.status {
        200 => {}
        503 => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut sse.reader, &mut b).unwrap();
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["error"]["type"], "unavailable_error", "{v}");
            t.busy += 1;
            return;
        }
        other => panic!("status {other} for {body}"),
    }
    if !stream {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut sse.reader, &mut b).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        let n = v["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(n <= max_tokens, "{v}");
        let f = &v["choices"][0]["finish_reason"];
        assert!(f == "stop" || f == "length", "{v}");
        t.ok += 1;
        return;
    }
    if leave {
        for _ in 0..rng.below(4) {
            sse.next();
        }
        drop(sse);
        t.left += 1;
        return;
    }
    let ev = sse.collect();
    if chat {
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant", "{ev:?}");
    }
    let last = ev.last().unwrap();
    let f = &last["choices"][0]["finish_reason"];
    assert!(f == "stop" || f == "length", "{last}");
    for e in &ev[..ev.len() - 1] {
        assert!(e["choices"][0]["finish_reason"].is_null(), "{e}");
    }
    t.ok += 1;
}

#[test]
fn eight_clients_times_twenty_random_requests_leave_the_server_as_it_was() {
    let s = Server::start(
        &rt::binary(),
        &[
            "-m",
            &rt::python_model(&["--ctx", "8192"]).to_string_lossy(),
            "-c",
            "512",
            "--parallel",
            "2",
        ],
    );
    // Warm up (every slot used once), then take the reference RSS.
    std::thread::scope(|sc| {
        for i in 0..2 {
            let s = &s;
            sc.spawn(move || {
                let mut t = Tally::default();
                let mut rng = Rng(99 + i);
                for _ in 0..5 {
                    one_request(s, &mut rng, &mut t);
                }
            });
        }
    });
    let rss0 = s.rss();

    let t0 = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8u64)
            .map(|c| {
                let s = &s;
                sc.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1));
                    let mut t = Tally::default();
                    for _ in 0..20 {
                        one_request(s, &mut rng, &mut t);
                    }
                    t
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(180),
        "160 requests took {took:?}"
    );
    let ok: usize = tallies.iter().map(|t| t.ok).sum();
    let busy: usize = tallies.iter().map(|t| t.busy).sum();
    let left: usize = tallies.iter().map(|t| t.left).sum();
    assert_eq!(ok + busy + left, 160, "{tallies:?}");
    assert!(
        ok > 80,
        "only {ok} of 160 requests were answered: {tallies:?}"
    );

    // Every slot comes free and the queue empties (the clients that left are noticed).
    let t = Instant::now();
    loop {
        let m = s.metrics();
        if m["tunellama_busy_slots"] == 0.0 && m["tunellama_queue_depth"] == 0.0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, v) = s.post_json(
        "/v1/completions",
        &json!({"prompt": "still there?", "max_tokens": 3}),
    );
    assert_eq!(st, 200, "{v}");
    let rss1 = s.rss();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    assert!(
        rss1 <= rss0 + rss0 / 10 + (8 << 20),
        "RSS grew from {:.1} MiB to {:.1} MiB over the load",
        mib(rss0),
        mib(rss1)
    );
    eprintln!(
        "load: {ok} answered, {busy} refused busy, {left} left early in {took:?}; RSS {:.1} → {:.1} MiB",
        mib(rss0),
        mib(rss1)
    );
    assert!(s.stop().success());
}
