//! The low-level library API (`tunellama_runtime::llama`) on a real model: several sequences in
//! one batch, per-sequence KV memory, sampler parameters (bias, grammar), chat templates,
//! metadata, tokenize/detokenize, cancellation, timings.
//!
//! Needs `TUNELLAMA_TEST_MODEL` (a GGUF file): `cargo test --test runtime_library` in the
//! repository's workspace sets it to the tiny test model and runs these.

use tunellama_runtime::llama::{
    self, Batch, CancelToken, Context, ContextOptions, Model, Sampler, SamplingParams, Token,
};
use tunellama_runtime::load::{self, ModelOptions};

fn model() -> &'static Model {
    static M: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let path = std::env::var_os("TUNELLAMA_TEST_MODEL").expect(
            "set TUNELLAMA_TEST_MODEL to a GGUF model (`cargo test --test runtime_library` in the workspace does)",
        );
        load::open(
            std::path::Path::new(&path),
            &ModelOptions {
                ctx_size: Some(256),
                ..ModelOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.message))
    })
}

fn argmax(l: &[f32]) -> Token {
    l.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0 as Token
}

/// Greedy continuation of `prompt` alone in a one-sequence context: (tokens, first logits).
fn alone(prompt: &[Token], n: usize) -> (Vec<Token>, Vec<f32>) {
    let m = model();
    let mut ctx = Context::new(m, ContextOptions::new(256, 64, 2)).unwrap();
    let mut b = Batch::new(64);
    b.fill(prompt, 0, true);
    ctx.decode(&b).unwrap();
    let first = ctx.logits_ith(-1).unwrap().to_vec();
    let mut out = Vec::new();
    for pos in (prompt.len() as i32..).take(n) {
        let t = argmax(ctx.logits_ith(-1).unwrap());
        out.push(t);
        b.fill(&[t], pos, true);
        ctx.decode(&b).unwrap();
    }
    (out, first)
}

#[test]
fn two_sequences_decoded_in_one_batch_match_each_decoded_alone() {
    let m = model();
    let v = m.vocab();
    let pa = v.tokenize("Hello world").unwrap();
    let pb = v.tokenize("Another, longer prompt here").unwrap();
    let n = 8;
    let (want_a, first_a) = alone(&pa, n);
    let (want_b, first_b) = alone(&pb, n);

    let mut ctx = Context::new(m, ContextOptions::new(256, 64, 2).with_seqs(2, 128)).unwrap();
    assert_eq!(ctx.n_seq_max(), 2);
    let mut b = Batch::with_seqs(64, 1);
    let mut last = [0usize; 2];
    for (s, p) in [(0, &pa), (1, &pb)] {
        for (i, &t) in p.iter().enumerate() {
            let idx = b.add(t, i as i32, &[s], i + 1 == p.len()).unwrap();
            if i + 1 == p.len() {
                last[s as usize] = idx;
            }
        }
    }
    ctx.decode(&b).unwrap();
    for (s, first) in [(0usize, &first_a), (1, &first_b)] {
        let l = ctx.logits_ith(last[s] as i32).unwrap();
        let diff = l
            .iter()
            .zip(first)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-3,
            "sequence {s}: logits differ by {diff} from the lone run"
        );
    }
    let mut got = [Vec::new(), Vec::new()];
    let mut pos = [pa.len() as i32, pb.len() as i32];
    for _ in 0..n {
        let next: Vec<Token> = (0..2)
            .map(|s| argmax(ctx.logits_ith(last[s] as i32).unwrap()))
            .collect();
        b.clear();
        for s in 0..2 {
            got[s].push(next[s]);
            last[s] = b.add(next[s], pos[s], &[s as i32], true).unwrap();
            pos[s] += 1;
        }
        ctx.decode(&b).unwrap();
    }
    assert_eq!(got[0], want_a);
    assert_eq!(got[1], want_b);
    assert_eq!(ctx.seq_pos_max(0), Some(pa.len() as i32 + n as i32 - 1));
}

#[test]
fn sequence_memory_can_be_copied_trimmed_and_refilled() {
    let m = model();
    let p = m.vocab().tokenize("The quick brown fox").unwrap();
    let mut ctx = Context::new(m, ContextOptions::new(256, 64, 2).with_seqs(2, 128)).unwrap();
    assert_eq!(ctx.seq_pos_max(0), None);
    let mut b = Batch::new(64);
    b.fill(&p, 0, true);
    ctx.decode(&b).unwrap();
    let full = ctx.logits_ith(-1).unwrap().to_vec();
    assert_eq!(ctx.seq_pos_max(0), Some(p.len() as i32 - 1));
    assert_eq!(ctx.seq_pos_min(0), Some(0));
    ctx.seq_cp(0, 1, None, None);
    assert_eq!(ctx.seq_pos_max(1), Some(p.len() as i32 - 1));
    // Keep the first two positions of sequence 0 and decode the rest again: same logits.
    assert!(ctx.seq_rm(0, Some(2), None));
    assert_eq!(ctx.seq_pos_max(0), Some(1));
    b.fill(&p[2..], 2, true);
    ctx.decode(&b).unwrap();
    let again = ctx.logits_ith(-1).unwrap();
    let diff = again
        .iter()
        .zip(&full)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-3, "re-decoded suffix differs by {diff}");
    // Sequence 1 was untouched by all of that; removing it empties it.
    assert_eq!(ctx.seq_pos_max(1), Some(p.len() as i32 - 1));
    assert!(ctx.seq_rm(1, None, None));
    assert_eq!(ctx.seq_pos_max(1), None);
    ctx.clear_memory();
    assert_eq!(ctx.seq_pos_max(0), None);
}

#[test]
fn logits_of_a_token_that_asked_for_none_are_an_error_not_a_crash() {
    let m = model();
    let mut ctx = Context::new(m, ContextOptions::new(256, 64, 2)).unwrap();
    let mut b = Batch::new(64);
    b.fill(&m.vocab().tokenize("abc").unwrap(), 0, true);
    ctx.decode(&b).unwrap();
    assert!(ctx.logits_ith(0).is_err());
    assert!(ctx.logits_ith(b.len() as i32 - 1).is_ok());
    // A full batch refuses more tokens instead of writing past its arrays.
    let mut small = Batch::new(1);
    small.add(5, 0, &[0], false).unwrap();
    assert!(small.add(5, 1, &[0], false).is_err());
    assert!(Batch::new(2).add(5, 0, &[0, 1], false).is_err());
}

fn greedy_after(params: &SamplingParams, prompt: &str, n: usize) -> Vec<Token> {
    let m = model();
    let mut ctx = Context::new(m, ContextOptions::new(256, 64, 2)).unwrap();
    let mut s = Sampler::new(m.vocab(), params).unwrap();
    let p = m.vocab().tokenize(prompt).unwrap();
    let mut b = Batch::new(64);
    b.fill(&p, 0, true);
    ctx.decode(&b).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let t = s.sample(&ctx, -1);
        if m.vocab().is_eog(t) {
            break;
        }
        out.push(t);
        b.fill(&[t], (p.len() + i) as i32, true);
        ctx.decode(&b).unwrap();
    }
    out
}

#[test]
fn logit_bias_forces_and_bans_tokens() {
    let plain = greedy_after(&SamplingParams::greedy(), "Hello", 1);
    let forced = SamplingParams {
        logit_bias: vec![(65, 100.0)],
        ..SamplingParams::greedy()
    };
    assert_eq!(greedy_after(&forced, "Hello", 3), vec![65, 65, 65]);
    let banned = SamplingParams {
        logit_bias: vec![(plain[0], f32::NEG_INFINITY)],
        ..SamplingParams::greedy()
    };
    assert_ne!(greedy_after(&banned, "Hello", 1)[0], plain[0]);
}

#[test]
fn a_json_object_grammar_constrains_the_output_and_a_bad_grammar_is_an_error() {
    let m = model();
    let toks = greedy_after(&SamplingParams::greedy().json_object(), "Say:", 24);
    let text: Vec<u8> = toks.iter().flat_map(|&t| m.vocab().piece(t)).collect();
    assert!(
        text.starts_with(b"{"),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    let bad = SamplingParams {
        grammar: Some("root ::= [unterminated".into()),
        ..SamplingParams::greedy()
    };
    let e = Sampler::new(m.vocab(), &bad)
        .err()
        .expect("a bad grammar is refused");
    assert_eq!(e.field, "grammar");
    let no_root = SamplingParams {
        grammar: Some("start ::= \"a\"".into()),
        ..SamplingParams::greedy()
    };
    assert_eq!(
        Sampler::new(m.vocab(), &no_root).err().unwrap().field,
        "grammar"
    );
}

#[test]
fn out_of_range_sampling_parameters_name_the_field() {
    let m = model();
    let n_vocab = m.n_vocab();
    let cases: Vec<(SamplingParams, &str)> = vec![
        (
            SamplingParams {
                temperature: -0.5,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                min_p: f32::NAN,
                ..Default::default()
            },
            "min_p",
        ),
        (
            SamplingParams {
                top_k: -1,
                ..Default::default()
            },
            "top_k",
        ),
        (
            SamplingParams {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            "repeat_penalty",
        ),
        (
            SamplingParams {
                presence_penalty: 2.5,
                ..Default::default()
            },
            "presence_penalty",
        ),
        (
            SamplingParams {
                frequency_penalty: -3.0,
                ..Default::default()
            },
            "frequency_penalty",
        ),
        (
            SamplingParams {
                logit_bias: vec![(n_vocab, 1.0)],
                ..Default::default()
            },
            "logit_bias",
        ),
        (
            SamplingParams {
                logit_bias: vec![(3, 101.0)],
                ..Default::default()
            },
            "logit_bias",
        ),
    ];
    for (p, field) in cases {
        let e = Sampler::new(m.vocab(), &p).err().expect(field);
        assert_eq!(e.field, field, "{e}");
    }
    assert!(SamplingParams::default().validate(n_vocab).is_ok());
}

#[test]
fn vocabulary_metadata_and_builtin_chat_templates() {
    let m = model();
    let v = m.vocab();
    assert_eq!(
        m.meta("general.name").as_deref(),
        Some("tunellama-test-tiny")
    );
    assert_eq!(m.meta("no.such.key"), None);
    assert_eq!(m.chat_template(None), None);
    assert!(m.n_ctx_train() > 0 && m.n_vocab() > 0);
    assert_eq!((v.bos(), v.eos()), (Some(1), Some(2)));
    assert!(v.is_eog(2));
    let toks = v.tokenize_with("héllo", false, false).unwrap();
    assert_ne!(toks.first(), Some(&1));
    let with_bos = v.tokenize("héllo").unwrap();
    assert_eq!(with_bos[0], 1);
    assert_eq!(&with_bos[1..], &toks[..]);
    let pieces: Vec<u8> = toks.iter().flat_map(|&t| v.piece(t)).collect();
    let text = v.detokenize(&toks, false, false).unwrap();
    assert_eq!(text.as_bytes(), &pieces[..]);
    assert!(text.ends_with("héllo"), "{text}");
    assert!(v.detokenize(&[m.n_vocab()], false, false).is_err());
    let msgs = [("system", "Be brief."), ("user", "Hi")];
    let chatml = m
        .apply_builtin_chat_template(Some("chatml"), &msgs, true)
        .unwrap();
    assert_eq!(
        chatml,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    // No template in the model: chatml, as llama.cpp's own default.
    assert_eq!(
        m.apply_builtin_chat_template(None, &msgs, true).unwrap(),
        chatml
    );
    let e = m
        .apply_builtin_chat_template(Some("no-such-template"), &msgs, true)
        .unwrap_err();
    assert!(e.to_string().contains("no built-in chat template"), "{e}");
}

#[test]
fn a_cancelled_token_stops_decode_and_timings_count_tokens() {
    let m = model();
    let mut ctx = Context::new(m, ContextOptions::new(256, 64, 2)).unwrap();
    let p = m.vocab().tokenize("counting tokens").unwrap();
    let mut b = Batch::new(64);
    b.fill(&p, 0, true);
    ctx.decode(&b).unwrap();
    // Reading the logits waits for the decode, which books it (as a prompt batch).
    ctx.logits_ith(-1).unwrap();
    b.fill(&[5], p.len() as i32, true);
    ctx.decode(&b).unwrap();
    let t = ctx.timings();
    assert_eq!(t.prompt_tokens, p.len() as u64);
    assert_eq!(t.eval_tokens, 1);
    ctx.reset_timings();
    // llama.cpp reports "at least 1" for empty counters.
    assert!(ctx.timings().prompt_tokens <= 1);

    let cancel = CancelToken::new();
    ctx.set_cancel(Some(cancel.clone()));
    b.fill(&[6], p.len() as i32 + 1, true);
    ctx.decode(&b).unwrap();
    cancel.cancel();
    b.fill(&[7], p.len() as i32 + 2, true);
    let e = ctx.decode(&b).unwrap_err();
    assert!(e.cancelled, "{e}");
    ctx.set_cancel(None);
    let _ = llama::recent_errors();
}
