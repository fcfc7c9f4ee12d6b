//! `tunellama generate`: streams a completion of the prompt to stdout token by token (flushed
//! per token), then a summary (load time, prompt and generation speed, time to first token) on
//! stderr; or, with `--json`, one JSON object with the text, token counts and timings.

use crate::cli::GenerateArgs;
use crate::error::{CliError, Result};
use crate::llama::{ContextOptions, SamplingParams};
use crate::output::{print_json, quiet_pipe};
use crate::settings::{self, float_in, int_in};
use crate::{eval, load};
use serde::Serialize;
use std::io::{IsTerminal, Read, Write};
use tunellama_runtime::engine::{GenerateOptions, Session, StopReason};

/// The repetition penalty looks this far back (llama.cpp's usual window).
const REPEAT_LAST_N: i32 = 64;

#[derive(Serialize)]
struct Timings {
    load_s: f64,
    prompt_s: f64,
    prompt_tokens_per_s: f64,
    generate_s: f64,
    generate_tokens_per_s: f64,
    time_to_first_token_s: f64,
}

#[derive(Serialize)]
struct Report {
    text: String,
    prompt_tokens: usize,
    generated_tokens: usize,
    /// `eog` (the model ended), `max_tokens`, or `context_full`.
    stop: &'static str,
    seed: u32,
    threads: settings::Chosen<u32>,
    ctx_size: settings::Chosen<u32>,
    gpu_layers: settings::Chosen<i32>,
    /// Where the layers went (llama.cpp's load log).
    offload: crate::llama::LoadReport,
    timings: Timings,
}

fn read_prompt(arg: Option<&str>) -> Result<String> {
    match arg {
        Some(p) if p != "-" => Ok(p.to_string()),
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| {
                CliError::bad_input(format!(
                    "reading the prompt from stdin: {e} (the prompt must be UTF-8 text)"
                ))
            })?;
            Ok(s)
        }
    }
}

pub fn run(a: GenerateArgs) -> Result<()> {
    // Everything checkable is checked before the model file is even opened.
    let threads = settings::threads(a.model.threads)?;
    let max_tokens = int_in("--max-tokens", a.max_tokens, 1, settings::MAX_TOKENS)? as usize;
    let temp = float_in("--temp", a.temp, 0.0, settings::MAX_TEMP, false)?;
    let top_k = int_in("--top-k", a.top_k, 0, i64::from(i32::MAX))? as i32;
    let top_p = float_in("--top-p", a.top_p, 0.0, 1.0, false)?;
    let min_p = float_in("--min-p", a.min_p, 0.0, 1.0, false)?;
    let repeat_penalty = float_in(
        "--repeat-penalty",
        a.repeat_penalty,
        0.0,
        settings::MAX_REPEAT_PENALTY,
        true,
    )?;
    let header = load::header(&a.model.model)?;
    let ctx_size = settings::ctx_size(a.ctx_size, &header)?;
    let gpu = settings::gpu_layers(a.model.gpu_layers.as_deref(), &header)?;
    let prompt = read_prompt(a.prompt.as_deref())?;
    if a.model.verbose {
        eprintln!("threads {} ({})", threads.value, threads.why);
        eprintln!("ctx size {} ({})", ctx_size.value, ctx_size.why);
        eprintln!("gpu layers {} ({})", gpu.value, gpu.why);
    }

    let (model, load_s) = load::model(&a.model.model, &header, gpu.value, a.model.verbose)?;
    let vocab = model.vocab();
    let tokens = vocab.tokenize(&prompt)?;
    let n_ctx = ctx_size.value as usize;
    if tokens.is_empty() {
        return Err(CliError::bad_input("the prompt is empty (0 tokens)"));
    }
    if tokens.len() >= n_ctx {
        return Err(CliError::bad_input(format!(
            "the prompt is {} tokens but the context holds {n_ctx} (--ctx-size), leaving no room to generate",
            tokens.len()
        ))
        .hint(format!(
            "shorten the prompt or raise --ctx-size (the model was trained for {} tokens)",
            model.n_ctx_train()
        )));
    }
    let mut session = Session::with_options(
        &model,
        ContextOptions::new(
            ctx_size.value,
            eval::BATCH.min(ctx_size.value),
            threads.value,
        ),
    )?;
    let options = GenerateOptions {
        max_tokens,
        sampling: SamplingParams {
            temperature: temp,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            penalty_last_n: REPEAT_LAST_N,
            seed: a.seed,
            ..SamplingParams::default()
        },
        ..GenerateOptions::default()
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut text: Vec<u8> = Vec::new();
    let mut reader_gone = false;
    let mut generation = session.generate_tokens(&tokens, &options)?;
    for chunk in generation.by_ref() {
        let ready = chunk?.bytes;
        text.extend_from_slice(&ready);
        if !a.json && !reader_gone && !ready.is_empty() {
            let r = out.write_all(&ready).and_then(|_| out.flush());
            if r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                reader_gone = true;
            } else {
                r?;
            }
        }
    }
    let t = generation.timings();
    let stop = match generation.stop_reason() {
        Some(StopReason::Eog) => "eog",
        Some(StopReason::MaxTokens) => "max_tokens",
        _ => "context_full",
    };
    drop(generation);
    if !a.json && !reader_gone {
        quiet_pipe((|| {
            if std::io::stdout().is_terminal() && !text.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            out.flush()
        })())?;
    }
    drop(out);
    let (prompt_s, generate_s, ttft, generated) = (
        t.prompt_s,
        t.generate_s,
        t.time_to_first_token_s,
        t.generated_tokens,
    );

    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let timings = Timings {
        load_s,
        prompt_s,
        prompt_tokens_per_s: rate(tokens.len(), prompt_s),
        generate_s,
        generate_tokens_per_s: rate(generated, generate_s),
        time_to_first_token_s: ttft,
    };
    if a.json {
        return print_json(&Report {
            text: String::from_utf8_lossy(&text).into_owned(),
            prompt_tokens: tokens.len(),
            generated_tokens: generated,
            stop,
            seed: a.seed,
            threads,
            ctx_size,
            gpu_layers: gpu,
            offload: model.load.clone(),
            timings,
        });
    }
    let why = match stop {
        "eog" => "the model ended the text",
        "max_tokens" => "reached --max-tokens",
        _ => "the context is full",
    };
    eprintln!("load: {:.3} s", timings.load_s);
    eprintln!(
        "prompt: {} tokens in {:.3} s ({:.1} tokens/s)",
        tokens.len(),
        prompt_s,
        timings.prompt_tokens_per_s
    );
    eprintln!(
        "generated: {generated} tokens in {:.3} s ({:.1} tokens/s), stopped: {why}",
        generate_s, timings.generate_tokens_per_s
    );
    eprintln!("time to first token: {:.3} s", ttft);
    Ok(())
}
