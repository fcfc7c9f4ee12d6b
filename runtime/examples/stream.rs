//! Streams a completion with the `tunellama_runtime` library, in-process, on the llama.cpp
//! build `cargo xtask setup` tuned for this machine:
//!
//! ```sh
//! cargo run --release --manifest-path runtime/Cargo.toml --example stream -- MODEL.gguf "Once upon a time" \
//!     [-n 64] [--temp 0] [--seed 42] [--stop TEXT]... [--cancel-after N]
//! ```
//!
//! The text goes to stdout as it is generated (the iterator of `Session::generate`); the stop
//! reason and timings to stderr. `--cancel-after N` cancels from another thread once N tokens
//! came; Ctrl-C cancels too (the partial text and the timings are still printed).

use std::io::Write;
use std::sync::mpsc;
use tunellama_runtime::llama::SamplingParams;
use tunellama_runtime::load::{self, ModelOptions};
use tunellama_runtime::{GenerateOptions, Session};

struct Args {
    model: String,
    prompt: String,
    max_tokens: usize,
    temperature: f32,
    seed: u32,
    stop: Vec<String>,
    cancel_after: Option<usize>,
}

fn parse() -> Result<Args, String> {
    let usage = "usage: stream MODEL [PROMPT] [-n N] [--temp T] [--seed S] [--stop TEXT]... [--cancel-after N]";
    let mut it = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut a = Args {
        model: String::new(),
        prompt: String::new(),
        max_tokens: 64,
        temperature: 0.0,
        seed: 42,
        stop: Vec::new(),
        cancel_after: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{usage}"));
        match arg.as_str() {
            "-n" | "--max-tokens" => {
                a.max_tokens = value(&arg)?.parse().map_err(|e| format!("-n: {e}"))?
            }
            "--temp" => a.temperature = value(&arg)?.parse().map_err(|e| format!("--temp: {e}"))?,
            "--seed" => a.seed = value(&arg)?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--stop" => a.stop.push(value(&arg)?),
            "--cancel-after" => {
                a.cancel_after = Some(
                    value(&arg)?
                        .parse()
                        .map_err(|e| format!("--cancel-after: {e}"))?,
                )
            }
            "-h" | "--help" => return Err(usage.into()),
            _ => positional.push(arg),
        }
    }
    let mut p = positional.into_iter();
    a.model = p.next().ok_or(usage)?;
    a.prompt = p.next().unwrap_or_else(|| "Once upon a time".into());
    Ok(a)
}

fn main() -> std::process::ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(h) = e.hint {
                eprintln!("hint: {h}");
            }
            std::process::ExitCode::from(e.code)
        }
    }
}

fn run(a: &Args) -> tunellama_runtime::Result<()> {
    // Tuned defaults for threads, context and GPU layers; the same checks as `tunellama`.
    let model = load::open(a.model.as_ref(), &ModelOptions::default())?;
    let mut session = Session::new(&model)?;
    let options = GenerateOptions {
        max_tokens: a.max_tokens,
        sampling: SamplingParams {
            temperature: a.temperature,
            seed: a.seed,
            ..SamplingParams::default()
        },
        stop: a.stop.clone(),
        ..GenerateOptions::default()
    };
    let mut generation = session.generate(&a.prompt, &options)?;
    let cancel = generation.cancel_token();
    cancel.cancel_on_interrupt();

    // Another thread watches the token count and cancels: what a UI's "stop" button does.
    let (counted, seen) = mpsc::channel::<usize>();
    let watcher = a.cancel_after.map(|limit| {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            for n in seen {
                if n >= limit {
                    cancel.cancel();
                    break;
                }
            }
        })
    });

    let mut out = std::io::stdout().lock();
    let mut n = 0;
    for chunk in generation.by_ref() {
        let chunk = chunk?;
        if chunk.token.is_some() {
            n += 1;
            let _ = counted.send(n);
        }
        // `chunk.text` is always valid UTF-8; the raw bytes are what `tunellama generate`
        // writes, so the two outputs can be compared byte for byte.
        out.write_all(&chunk.bytes)?;
        out.flush()?;
        if a.cancel_after.is_some() {
            // Let the watcher act before the next token (this example wants a sharp cut).
            while a.cancel_after.is_some_and(|l| n >= l) && !cancel.is_cancelled() {
                std::thread::yield_now();
            }
        }
    }
    drop(counted);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    let t = generation.timings();
    let reason = generation.stop_reason().map_or("?", |r| r.as_str());
    eprintln!();
    eprintln!("stopped: {reason}");
    eprintln!(
        "prompt: {} tokens ({} cached) in {:.3} s ({:.1} tokens/s)",
        t.prompt_tokens, t.cached_tokens, t.prompt_s, t.prompt_tokens_per_s
    );
    eprintln!(
        "generated: {} tokens in {:.3} s ({:.1} tokens/s)",
        t.generated_tokens, t.generate_s, t.generate_tokens_per_s
    );
    eprintln!("time to first token: {:.3} s", t.time_to_first_token_s);
    Ok(())
}
