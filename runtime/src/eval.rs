//! Feeding a prompt to a context in batches (shared by generate and logits).

use crate::error::Result;
use crate::llama::{Batch, Context, Token};

/// Tokens per decode call for prompts; larger prompts go in several calls.
pub const BATCH: u32 = 512;

/// Decodes `tokens` from position 0; logits are produced for the last one only.
pub fn prompt(ctx: &mut Context<'_>, tokens: &[Token]) -> Result<()> {
    let n = BATCH.min(ctx.n_ctx()).max(1) as usize;
    let mut batch = Batch::new(n);
    let chunks = tokens.len().div_ceil(n);
    for (i, chunk) in tokens.chunks(n).enumerate() {
        batch.fill(chunk, (i * n) as i32, i + 1 == chunks);
        ctx.decode(&batch)?;
    }
    Ok(())
}
