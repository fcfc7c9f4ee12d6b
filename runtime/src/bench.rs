//! `tunellama bench`: prompt processing (pp: one batch of N seeded random tokens) and token
//! generation (tg: N tokens one at a time), like llama-bench. The KV memory is cleared before
//! every run and, with `--n-depth D`, refilled with D tokens that are not timed (llama-bench's
//! `-d`: the speed after a prompt of D tokens, as a server's requests see it); one warm-up run
//! per test is not counted; mean and stddev of tokens/s are reported.

use crate::cli::BenchArgs;
use crate::error::{CliError, Result};
use crate::llama::{self, Batch, Context, ContextOptions, Token};
use crate::load;
use crate::output::{print_json, quiet_pipe, Out};
use crate::settings::{self, info, int_in};
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

const MAX_TEST_TOKENS: i64 = 1 << 16;
/// Fixed so two bench runs process the same tokens.
const TOKEN_SEED: u64 = 42;
/// The depth's tokens differ from the tests' (the same seed would repeat them).
const DEPTH_SEED: u64 = 7;

/// One timed run of a test: tokens/s.
type RunFn = fn(&mut Context<'_>, &mut Batch, usize, &[Token]) -> Result<f64>;

#[derive(Serialize)]
struct TestResult {
    test: String,
    n: usize,
    /// Tokens in the KV memory before the test (`--n-depth`).
    depth: usize,
    reps: usize,
    tps_mean: f64,
    tps_stddev: f64,
    samples: Vec<f64>,
}

/// xorshift64: seeded, dependency-free token ids in `0..n_vocab`.
fn random_tokens(n: usize, n_vocab: i32, seed: u64) -> Vec<Token> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n_vocab.max(1) as u64) as Token
        })
        .collect()
}

fn mean_stddev(s: &[f64]) -> (f64, f64) {
    let n = s.len() as f64;
    let mean = s.iter().sum::<f64>() / n;
    if s.len() < 2 {
        return (mean, 0.0);
    }
    let var = s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Clears the KV memory and puts `depth` tokens into it (untimed), in batches.
fn fill_depth(ctx: &mut Context<'_>, batch: &mut Batch, depth: usize) -> Result<()> {
    ctx.clear_memory();
    let tokens = random_tokens(depth, ctx.model().vocab().n_tokens(), DEPTH_SEED);
    for (i, chunk) in tokens.chunks(batch.capacity().max(1)).enumerate() {
        batch.fill(chunk, (i * batch.capacity()) as i32, false);
        ctx.decode(batch)?;
    }
    Ok(())
}

fn pp(ctx: &mut Context<'_>, batch: &mut Batch, depth: usize, tokens: &[Token]) -> Result<f64> {
    fill_depth(ctx, batch, depth)?;
    batch.fill(tokens, depth as i32, true);
    let t = Instant::now();
    ctx.decode(batch)?;
    Ok(tokens.len() as f64 / t.elapsed().as_secs_f64())
}

fn tg(ctx: &mut Context<'_>, batch: &mut Batch, depth: usize, tokens: &[Token]) -> Result<f64> {
    fill_depth(ctx, batch, depth)?;
    let t = Instant::now();
    for (i, &tok) in tokens.iter().enumerate() {
        batch.fill(&[tok], (depth + i) as i32, true);
        ctx.decode(batch)?;
    }
    Ok(tokens.len() as f64 / t.elapsed().as_secs_f64())
}

pub fn run(a: BenchArgs) -> Result<()> {
    let threads = settings::threads(a.model.threads)?;
    let n_prompt = int_in("--n-prompt", a.n_prompt, 0, MAX_TEST_TOKENS)? as usize;
    let n_gen = int_in("--n-gen", a.n_gen, 0, MAX_TEST_TOKENS)? as usize;
    let depth = int_in("--n-depth", a.n_depth, 0, MAX_TEST_TOKENS)? as usize;
    let reps = int_in("--repetitions", a.repetitions, 1, settings::MAX_REPS)? as usize;
    if n_prompt == 0 && n_gen == 0 {
        return Err(CliError::bad_input(
            "-p 0 and -n 0 leave nothing to measure: give at least one of them a token count",
        ));
    }
    let flash_attn = settings::flash_attn(a.flash_attn.as_deref())?;
    let ubatch = settings::ubatch(a.ubatch_size)?;
    let header = load::header(&a.model.model)?;
    let gpu = settings::gpu_layers(a.model.gpu_layers.as_deref(), &header)?;
    let (model, _) = load::model(&a.model.model, &header, gpu.value, a.model.verbose)?;
    let n_vocab = model.vocab().n_tokens();
    let n_ctx = (depth + n_prompt.max(n_gen)).max(1) as u32;
    // The whole pp prompt must be one batch: that is what pp measures. The depth is filled
    // in batches of the same size (at least the default batch).
    let n_batch = n_prompt
        .max(depth.min(llama::DEFAULT_BATCH as usize))
        .max(1);
    let mut ctx = Context::new(
        &model,
        ContextOptions::new(n_ctx, n_batch as u32, threads.value)
            .with_knobs(ubatch.value, flash_attn.value),
    )?;
    let mut batch = Batch::new(n_batch);
    let mut results = Vec::new();
    let tests: [(&str, usize, RunFn); 2] = [("pp", n_prompt, pp), ("tg", n_gen, tg)];
    for (name, n, f) in tests {
        if n == 0 {
            continue;
        }
        let tokens = random_tokens(n, n_vocab, TOKEN_SEED);
        f(&mut ctx, &mut batch, depth, &tokens)?; // warm-up, not counted
        let samples = (0..reps)
            .map(|_| f(&mut ctx, &mut batch, depth, &tokens))
            .collect::<Result<Vec<f64>>>()?;
        let (m, sd) = mean_stddev(&samples);
        results.push(TestResult {
            // llama-bench's names: `tg64`, and `tg64 @ d512` after a depth.
            test: if depth > 0 {
                format!("{name}{n} @ d{depth}")
            } else {
                format!("{name}{n}")
            },
            n,
            depth,
            reps,
            tps_mean: m,
            tps_stddev: sd,
            samples,
        });
    }
    let backends = info().compiled_for.backends.clone();
    let devices: Vec<String> = llama::devices().into_iter().map(|d| d.name).collect();
    if a.json {
        return print_json(&serde_json::json!({
            "model": model.desc(),
            "model_path": a.model.model,
            "model_size": model.size_bytes(),
            "model_params": model.n_params(),
            "threads": threads.value,
            "threads_why": threads.why,
            "flash_attn": flash_attn.value,
            "flash_attn_why": flash_attn.why,
            "ubatch": ubatch.value,
            "ubatch_why": ubatch.why,
            "gpu_layers": gpu.value,
            "gpu_layers_why": gpu.why,
            "offload": model.load,
            "backends": backends,
            "devices": devices,
            "results": results,
        }));
    }
    let mut o = Out::stdout();
    let text = (|| -> std::io::Result<()> {
        writeln!(
            o.0,
            "| model | size | params | backend | threads | test | t/s |\n| --- | ---: | ---: | --- | ---: | ---: | ---: |"
        )?;
        for r in &results {
            writeln!(
                o.0,
                "| {} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} |",
                model.desc(),
                model.size_bytes() as f64 / (1u64 << 20) as f64,
                model.n_params() as f64 / 1e6,
                backends.join(","),
                threads.value,
                r.test,
                r.tps_mean,
                r.tps_stddev
            )?;
        }
        Ok(())
    })();
    quiet_pipe(text)?;
    o.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stddev_is_the_sample_stddev() {
        let (m, sd) = super::mean_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        assert!((sd - 2.138).abs() < 1e-3);
    }

    #[test]
    fn random_tokens_are_seeded_and_in_range() {
        let a = super::random_tokens(100, 7, 42);
        assert_eq!(a, super::random_tokens(100, 7, 42));
        assert!(a.iter().all(|&t| (0..7).contains(&t)));
    }
}
