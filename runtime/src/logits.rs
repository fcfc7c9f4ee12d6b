//! `tunellama logits`: evaluates a prompt and prints the logits of its last position (all n_vocab
//! values) with the prompt's tokens. `setup` compares these between a tuned build and a portable
//! reference to prove the tuned one computes the same thing.

use crate::cli::LogitsArgs;
use crate::error::{CliError, Result};
use crate::llama::{Context, ContextOptions};
use crate::output::{print_json, quiet_pipe, Out};
use crate::{eval, load, settings};
use std::io::Write;

pub fn run(a: LogitsArgs) -> Result<()> {
    let threads = settings::threads(a.model.threads)?;
    let header = load::header(&a.model.model)?;
    let ctx_size = settings::ctx_size(a.ctx_size, &header)?;
    let gpu = settings::gpu_layers(a.model.gpu_layers.as_deref(), &header)?;
    let (model, _) = load::model(&a.model.model, &header, gpu.value, a.model.verbose)?;
    let tokens = model.vocab().tokenize(&a.prompt)?;
    if tokens.is_empty() {
        return Err(CliError::bad_input("the prompt is empty (0 tokens)"));
    }
    if tokens.len() > ctx_size.value as usize {
        return Err(CliError::bad_input(format!(
            "the prompt is {} tokens but the context holds {} (--ctx-size)",
            tokens.len(),
            ctx_size.value
        )));
    }
    let mut ctx = Context::new(
        &model,
        ContextOptions::new(
            ctx_size.value,
            eval::BATCH.min(ctx_size.value),
            threads.value,
        ),
    )?;
    eval::prompt(&mut ctx, &tokens)?;
    let logits = ctx.last_logits()?;
    if a.json {
        return print_json(&serde_json::json!({
            "tokens": tokens,
            "n_vocab": logits.len(),
            "logits": logits,
            "gpu_layers": gpu,
            "offload": model.load,
        }));
    }
    let mut o = Out::stdout();
    let text = (|| -> std::io::Result<()> {
        let toks: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        writeln!(o.0, "tokens: {}", toks.join(" "))?;
        writeln!(o.0, "n_vocab: {}", logits.len())?;
        for l in &logits {
            writeln!(o.0, "{l}")?;
        }
        Ok(())
    })();
    quiet_pipe(text)?;
    o.flush()
}
