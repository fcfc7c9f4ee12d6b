//! The high-level library API (`tunellama_runtime::Session`) on a real model: the iterator and
//! the callback give the same text, stop strings are cut (never emitted), max tokens, cancel
//! from another thread, prompt reuse, timings, and bad input as errors.
//!
//! Needs `TUNELLAMA_TEST_MODEL` (a GGUF file): `cargo test --test runtime_library` in the
//! repository's workspace sets it to the tiny test model and runs these.

use std::ops::ControlFlow;
use tunellama_runtime::llama::{CancelToken, Model, SamplingParams};
use tunellama_runtime::load::{self, ModelOptions};
use tunellama_runtime::{GenerateOptions, Session, StopReason};

fn model() -> &'static Model {
    static M: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let path = std::env::var_os("TUNELLAMA_TEST_MODEL").expect(
            "set TUNELLAMA_TEST_MODEL to a GGUF model (`cargo test --test runtime_library` in the workspace does)",
        );
        load::open(std::path::Path::new(&path), &ModelOptions::default())
            .unwrap_or_else(|e| panic!("{}", e.message))
    })
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ..GenerateOptions::default()
    }
}

#[test]
fn the_iterator_and_the_callback_stream_the_same_text() {
    let mut s = Session::new(model()).unwrap();
    let mut g = s.generate("Hello", &greedy(24)).unwrap();
    let mut bytes = Vec::new();
    let mut text = String::new();
    let mut tokens = 0;
    for c in g.by_ref() {
        let c = c.unwrap();
        tokens += usize::from(c.token.is_some());
        bytes.extend_from_slice(&c.bytes);
        text.push_str(&c.text);
        assert_eq!(c.text, String::from_utf8_lossy(&c.bytes));
    }
    let reason = g.stop_reason().unwrap();
    let t = g.timings();
    drop(g);
    assert_eq!(t.generated_tokens, tokens);
    if reason == StopReason::MaxTokens {
        assert_eq!(tokens, 24);
    } else {
        assert_eq!(reason, StopReason::Eog);
    }
    assert!(t.time_to_first_token_s >= t.prompt_s && t.prompt_tokens > 0);

    let mut seen = Vec::new();
    let done = s
        .run("Hello", &greedy(24), |c| {
            seen.extend_from_slice(&c.bytes);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(done.bytes, bytes);
    assert_eq!(seen, bytes);
    assert_eq!(done.text, text);
    assert_eq!(done.stop, reason);
    // The same prompt again: everything but its last token came from memory.
    assert_eq!(done.timings.cached_tokens, done.timings.prompt_tokens - 1);
}

#[test]
fn a_stop_string_ends_the_text_before_it() {
    let mut s = Session::new(model()).unwrap();
    let full = s
        .run("Once", &greedy(40), |_| ControlFlow::Continue(()))
        .unwrap();
    // A stop string from the middle of the text: three bytes of valid UTF-8 after byte 8.
    let (at, stop) = (8..full.bytes.len().saturating_sub(3))
        .find_map(|i| {
            let w = &full.bytes[i..i + 3];
            std::str::from_utf8(w).ok().map(|t| (i, t.to_string()))
        })
        .expect("the greedy text has a run of 3 valid UTF-8 bytes");
    let first = full
        .bytes
        .windows(stop.len())
        .position(|w| w == stop.as_bytes())
        .unwrap();
    assert!(first <= at);
    let o = GenerateOptions {
        stop: vec!["never appears \u{1}".into(), stop.clone()],
        ..greedy(40)
    };
    let mut pieces = Vec::new();
    let cut = s
        .run("Once", &o, |c| {
            pieces.push(c.bytes.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(cut.stop, StopReason::StopString);
    assert_eq!(cut.bytes, &full.bytes[..first], "stop {stop:?}");
    // No piece handed out ever contained the stop string's text.
    assert!(!pieces
        .concat()
        .windows(stop.len())
        .any(|w| w == stop.as_bytes()));
}

#[test]
fn max_tokens_and_a_callback_break_end_the_generation() {
    let mut s = Session::new(model()).unwrap();
    let o = GenerateOptions {
        max_tokens: 3,
        // A strong bias keeps the model from ending the text first.
        sampling: SamplingParams {
            logit_bias: vec![(70, 100.0)],
            ..SamplingParams::greedy()
        },
        ..GenerateOptions::default()
    };
    let r = s.run("Hi", &o, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(
        (r.stop, r.timings.generated_tokens),
        (StopReason::MaxTokens, 3)
    );
    assert_eq!(r.tokens, vec![70, 70, 70]);
    let o = GenerateOptions {
        max_tokens: 50,
        ..o
    };
    let mut calls = 0;
    let r = s
        .run("Hi", &o, |_| {
            calls += 1;
            if calls == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(r.stop, StopReason::Cancelled);
    assert_eq!(r.timings.generated_tokens, 2);
}

#[test]
fn another_thread_cancels_a_running_generation() {
    let mut s = Session::new(model()).unwrap();
    let cancel = CancelToken::new();
    let o = GenerateOptions {
        max_tokens: 200,
        cancel: Some(cancel.clone()),
        sampling: SamplingParams {
            logit_bias: vec![(70, 100.0)],
            ..SamplingParams::greedy()
        },
        ..GenerateOptions::default()
    };
    let mut g = s.generate("Hi", &o).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let canceller = std::thread::spawn(move || {
        rx.recv().unwrap();
        cancel.cancel();
    });
    let mut n = 0;
    for c in g.by_ref() {
        c.unwrap();
        n += 1;
        if n == 5 {
            tx.send(()).unwrap();
            canceller.join().unwrap();
            break;
        }
    }
    // The next step sees the token and ends the iterator.
    assert!(g.next().is_none());
    assert_eq!(g.stop_reason(), Some(StopReason::Cancelled));
    assert_eq!(g.timings().generated_tokens, 5);
    drop(g);
    // The session still works, and a new generation has its own token.
    let r = s
        .run("Hi", &greedy(2), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_ne!(r.stop, StopReason::Cancelled);
}

#[test]
fn a_longer_prompt_reuses_the_shared_prefix() {
    let mut s = Session::new(model()).unwrap();
    let first = "User: hello there\nAssistant:";
    let r = s
        .run(first, &greedy(4), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(r.timings.cached_tokens, 0);
    let n_first = model().vocab().tokenize(first).unwrap().len();
    let second = format!("{first} hi\nUser: and more\nAssistant:");
    let r2 = s
        .run(&second, &greedy(4), |_| ControlFlow::Continue(()))
        .unwrap();
    let n_second = model().vocab().tokenize(&second).unwrap().len();
    assert_eq!(r2.timings.prompt_tokens, n_second);
    // At least the whole first prompt came from memory (the byte tokenizer keeps it a prefix).
    assert!(r2.timings.cached_tokens >= n_first, "{:?}", r2.timings);
    // A fresh session gives the same text: reuse does not change results.
    let mut fresh = Session::new(model()).unwrap();
    let r3 = fresh
        .run(&second, &greedy(4), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(r3.bytes, r2.bytes);
    s.reset();
    assert!(s.tokens().is_empty());
}

#[test]
fn bad_requests_are_errors_with_exit_code_2() {
    let mut s = Session::new(model()).unwrap();
    let long = "word ".repeat(s.n_ctx());
    let e = s.generate(&long, &greedy(4)).err().unwrap();
    assert_eq!(e.code, 2);
    assert!(
        e.message.contains("leaving no room to generate"),
        "{}",
        e.message
    );
    let e = s
        .generate(
            "",
            &GenerateOptions {
                add_special: false,
                ..greedy(4)
            },
        )
        .err()
        .unwrap();
    assert!(e.message.contains("empty"), "{}", e.message);
    let e = s.generate("Hi", &greedy(0)).err().unwrap();
    assert!(e.message.contains("max_tokens"), "{}", e.message);
    let bad = GenerateOptions {
        sampling: SamplingParams {
            top_p: 2.0,
            ..SamplingParams::default()
        },
        ..greedy(4)
    };
    let e = s.generate("Hi", &bad).err().unwrap();
    assert!(
        e.message.contains("top_p 2 is out of range"),
        "{}",
        e.message
    );
    let e = load::open("/nonexistent/model.gguf".as_ref(), &ModelOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.code, 2);
}

/// As in `tunellama serve`, penalties see the prompt: with a strong presence penalty the greedy
/// first token changes exactly when the unpenalised one is among the prompt's tokens (only
/// printable non-space ASCII byte tokens may be drawn, so there is always another choice).
#[test]
fn penalties_count_the_prompt_tokens() {
    let vocab = model().vocab();
    let printable = |t: i32| (3 + 0x21..3 + 0x7f).contains(&t);
    let banned: Vec<(i32, f32)> = (0..vocab.n_tokens())
        .filter(|&t| !printable(t))
        .map(|t| (t, f32::NEG_INFINITY))
        .collect();
    let first = |s: &mut Session, prompt: &str, presence: f32| {
        let o = GenerateOptions {
            max_tokens: 1,
            sampling: SamplingParams {
                presence_penalty: presence,
                logit_bias: banned.clone(),
                ..SamplingParams::greedy()
            },
            ..GenerateOptions::default()
        };
        let r = s.run(prompt, &o, |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(r.tokens.len(), 1, "{r:?}");
        r.tokens[0]
    };
    let chars: String = (0x21u8..0x7f).map(char::from).collect();
    let mut s = Session::new(model()).unwrap();
    let (mut inside, mut outside) = (0, 0);
    for i in 0..14 {
        let prompt: String = chars.chars().cycle().skip(i * 7).take(60).collect();
        let tokens = vocab.tokenize(&prompt).unwrap();
        assert!(tokens.len() <= 64, "the penalties' window is 64 tokens");
        let plain = first(&mut s, &prompt, 0.0);
        let penalised = first(&mut s, &prompt, 2.0);
        let in_prompt = tokens.contains(&plain);
        if in_prompt {
            inside += 1;
        } else {
            outside += 1;
        }
        assert_eq!(
            penalised != plain,
            in_prompt,
            "{prompt:?}: first token {plain} became {penalised} with presence_penalty 2"
        );
    }
    assert!(
        inside >= 2 && outside >= 2,
        "{inside} in the prompt, {outside} not"
    );
}
