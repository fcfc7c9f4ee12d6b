//! One sequence end to end: a [`Session`] owns a context on a loaded model, feeds it a prompt
//! (reusing the tokens its memory already holds from the previous prompt), and streams the
//! completion as [`Chunk`]s of valid UTF-8 text, through an iterator ([`Session::generate`]) or
//! a callback ([`Session::run`]). It stops at a stop string (never emitted), the model's end of
//! generation, `max_tokens`, a full context, or a [`CancelToken`] set from any thread, and
//! reports [`Timings`]. `tunellama generate` is built on it.

use crate::error::{CliError, Result};
use crate::llama::{
    Batch, CancelToken, Context, ContextOptions, Model, Sampler, SamplingParams, TextPiece,
    TextStream, Token,
};
use std::ops::ControlFlow;
use std::time::Instant;

/// What to generate. `Default`: 128 tokens with `tunellama generate`'s sampling defaults.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Stop after this many generated tokens (at least 1).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Stop before any of these strings; the stop string itself is never emitted.
    pub stop: Vec<String>,
    /// Tokenize the prompt adding BOS as the model asks (true by default).
    pub add_special: bool,
    /// Turn special-token text in the prompt (`<|im_start|>`) into those tokens (true by
    /// default: what a rendered chat template needs).
    pub parse_special: bool,
    /// Cancel through this token (e.g. one a Ctrl-C handler holds); `None`: a fresh one per
    /// generation, see [`Generation::cancel_token`].
    pub cancel: Option<CancelToken>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            add_special: true,
            parse_special: true,
            cancel: None,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eog,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// A stop string was reached.
    StopString,
    /// The sequence's context is full.
    ContextFull,
    /// The cancel token was set.
    Cancelled,
}

impl StopReason {
    /// `eog`, `max_tokens`, `stop_string`, `context_full`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopString => "stop_string",
            StopReason::ContextFull => "context_full",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// Counts and seconds of one generation, measured here (wall clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Tokens of the prompt, including those reused from the session's memory.
    pub prompt_tokens: usize,
    /// Prompt tokens the memory already held from the previous prompt (not decoded again).
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    /// Decoding the prompt (the tokens not cached).
    pub prompt_s: f64,
    pub prompt_tokens_per_s: f64,
    /// From the end of the prompt to the end of generation.
    pub generate_s: f64,
    pub generate_tokens_per_s: f64,
    /// From the start of the prompt to the first sampled token.
    pub time_to_first_token_s: f64,
}

/// One generated token's worth of output. `text` may be empty while text is held back (a
/// possible stop string, or half a character); the last chunk may carry held-back text with
/// no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub token: Option<Token>,
    /// Valid UTF-8.
    pub text: String,
    /// The same with bytes that are not UTF-8 as they came (see [`TextPiece`]).
    pub bytes: Vec<u8>,
}

/// The result of [`Session::run`].
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub bytes: Vec<u8>,
    pub tokens: Vec<Token>,
    pub stop: StopReason,
    pub timings: Timings,
}

/// A model context for one sequence (sequence 0), reused across generations.
pub struct Session<'m> {
    ctx: Context<'m>,
    batch: Batch,
    /// The tokens the KV memory holds, position by position.
    tokens: Vec<Token>,
    /// Tokens the sequence may hold: the context asked for (llama.cpp may allocate more).
    n_ctx: usize,
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

impl<'m> Session<'m> {
    /// A session with the build's tuned context ([`ContextOptions::tuned`]).
    pub fn new(model: &'m Model) -> Result<Session<'m>> {
        Session::with_options(model, ContextOptions::tuned(model))
    }

    /// A session with explicit context options (one sequence is used).
    pub fn with_options(model: &'m Model, o: ContextOptions) -> Result<Session<'m>> {
        let ctx = Context::new(model, o)?;
        let batch = Batch::new(ctx.n_batch().max(1) as usize);
        let asked = if o.kv_unified {
            o.n_ctx
        } else {
            o.n_ctx / o.n_seq_max.max(1)
        };
        Ok(Session {
            n_ctx: (asked.min(ctx.n_ctx_seq()) as usize).max(1),
            ctx,
            batch,
            tokens: Vec::new(),
        })
    }

    pub fn model(&self) -> &'m Model {
        self.ctx.model()
    }

    /// Tokens the sequence can hold (prompt and generated together).
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The context, for what the session does not wrap (its memory is sequence 0; changing it
    /// behind the session's back makes the session forget what it held: call `reset`).
    pub fn context(&mut self) -> &mut Context<'m> {
        &mut self.ctx
    }

    /// Tokens the session's memory holds (the last prompt and what was generated after it).
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Forgets everything the memory holds.
    pub fn reset(&mut self) {
        self.ctx.clear_memory();
        self.tokens.clear();
    }

    /// Tokenizes `prompt` and starts generating; the returned iterator yields the chunks.
    pub fn generate(&mut self, prompt: &str, o: &GenerateOptions) -> Result<Generation<'_, 'm>> {
        let tokens =
            self.ctx
                .model()
                .vocab()
                .tokenize_with(prompt, o.add_special, o.parse_special)?;
        self.generate_tokens(&tokens, o)
    }

    /// Starts generating after `prompt` tokens. The longest prefix the memory already holds is
    /// reused (a chat that grows by a turn decodes only the new turn).
    pub fn generate_tokens(
        &mut self,
        prompt: &[Token],
        o: &GenerateOptions,
    ) -> Result<Generation<'_, 'm>> {
        let model = self.ctx.model();
        if o.max_tokens == 0 {
            return Err(CliError::bad_input(
                "max_tokens 0 is out of range: generate at least 1 token",
            ));
        }
        if prompt.is_empty() {
            return Err(CliError::bad_input("the prompt is empty (0 tokens)"));
        }
        let n_ctx = self.n_ctx;
        if prompt.len() >= n_ctx {
            return Err(CliError::bad_input(format!(
                "the prompt is {} tokens but the context holds {n_ctx}, leaving no room to generate",
                prompt.len()
            ))
            .hint(format!(
                "shorten the prompt or use a larger context (the model was trained for {} tokens)",
                model.n_ctx_train()
            )));
        }
        let mut sampler =
            Sampler::new(model.vocab(), &o.sampling).map_err(|e| CliError::bad_input(e.message))?;
        // Penalties see the prompt too, as in `tunellama serve` (`Sampler::accept_prompt`).
        sampler.accept_prompt(prompt);
        let cancel = o.cancel.clone().unwrap_or_default();
        self.ctx.set_cancel(Some(cancel.clone()));

        // Reuse what the memory holds; at least the last prompt token is decoded again, for
        // its logits.
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        if !self.ctx.seq_rm(0, Some(common as i32), None) {
            self.ctx.seq_rm(0, None, None);
            self.tokens.clear();
        }
        let common = common.min(self.tokens.len());
        self.tokens.truncate(common);

        let t_prompt = Instant::now();
        let rest = &prompt[common..];
        let n = self.batch.capacity();
        let chunks = rest.len().div_ceil(n);
        let mut reason = None;
        for (i, chunk) in rest.chunks(n).enumerate() {
            let pos0 = (common + i * n) as i32;
            self.batch.fill(chunk, pos0, i + 1 == chunks);
            match self.ctx.decode(&self.batch) {
                Ok(()) => self.tokens.extend_from_slice(chunk),
                Err(e) if e.cancelled => {
                    // Part of the chunk may be in memory: drop it, keep what is known.
                    self.ctx.seq_rm(0, Some(self.tokens.len() as i32), None);
                    reason = Some(StopReason::Cancelled);
                    break;
                }
                Err(e) => {
                    self.ctx.seq_rm(0, Some(self.tokens.len() as i32), None);
                    return Err(e.into());
                }
            }
        }
        let prompt_s = t_prompt.elapsed().as_secs_f64();
        let timings = Timings {
            prompt_tokens: prompt.len(),
            cached_tokens: common,
            prompt_s,
            prompt_tokens_per_s: rate(rest.len(), prompt_s),
            ..Timings::default()
        };
        Ok(Generation {
            session: self,
            sampler,
            text: TextStream::new(o.stop.iter().cloned()),
            cancel,
            max_tokens: o.max_tokens,
            n_ctx,
            pending: None,
            t_prompt,
            t_gen: Instant::now(),
            timings,
            reason,
            done: false,
        })
    }

    /// Generates to the end, handing each chunk with text to `on_chunk` as it comes;
    /// `ControlFlow::Break` stops (as cancelled). Returns the whole text with the reason and
    /// timings.
    pub fn run(
        &mut self,
        prompt: &str,
        o: &GenerateOptions,
        mut on_chunk: impl FnMut(&Chunk) -> ControlFlow<()>,
    ) -> Result<Completion> {
        let mut g = self.generate(prompt, o)?;
        let (mut text, mut bytes, mut tokens) = (String::new(), Vec::new(), Vec::new());
        while let Some(c) = g.next() {
            let c = c?;
            text.push_str(&c.text);
            bytes.extend_from_slice(&c.bytes);
            tokens.extend(c.token);
            if !c.bytes.is_empty() && on_chunk(&c).is_break() {
                g.cancel_token().cancel();
            }
        }
        Ok(Completion {
            text,
            bytes,
            tokens,
            stop: g.stop_reason().unwrap_or(StopReason::Cancelled),
            timings: g.timings(),
        })
    }
}

/// A running generation: an iterator of chunks. Dropping it early leaves the session usable
/// (its memory holds what was decoded).
pub struct Generation<'s, 'm> {
    session: &'s mut Session<'m>,
    sampler: Sampler,
    text: TextStream,
    cancel: CancelToken,
    max_tokens: usize,
    n_ctx: usize,
    /// The last sampled token, decoded at the start of the next step.
    pending: Option<Token>,
    t_prompt: Instant,
    t_gen: Instant,
    timings: Timings,
    reason: Option<StopReason>,
    done: bool,
}

impl Generation<'_, '_> {
    /// Cancels this generation from any thread: the iterator ends (with
    /// [`StopReason::Cancelled`]) at the next step, or inside a decode in progress.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Why it ended; `None` while it runs.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.reason.filter(|_| self.done)
    }

    /// Timings so far (complete once the iterator has ended).
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// Ends the generation: the held-back text, as a last chunk when there is any.
    fn end(&mut self, reason: StopReason, last: Option<(Token, TextPiece)>) -> Option<Chunk> {
        self.done = true;
        self.reason = Some(reason);
        self.timings.generate_s = self.t_gen.elapsed().as_secs_f64();
        self.timings.generate_tokens_per_s =
            rate(self.timings.generated_tokens, self.timings.generate_s);
        let tail = self.text.finish();
        let (token, mut piece) = match last {
            Some((t, p)) => (Some(t), p),
            None => (None, TextPiece::default()),
        };
        piece.text.push_str(&tail.text);
        piece.bytes.extend_from_slice(&tail.bytes);
        (token.is_some() || !piece.bytes.is_empty()).then_some(Chunk {
            token,
            text: piece.text,
            bytes: piece.bytes,
        })
    }

    fn step(&mut self) -> Result<Option<Chunk>> {
        if let Some(reason) = self.reason.filter(|_| !self.done) {
            return Ok(self.end(reason, None));
        }
        if self.done {
            return Ok(None);
        }
        if let Some(t) = self.pending.take() {
            if self.cancel.is_cancelled() {
                return Ok(self.end(StopReason::Cancelled, None));
            }
            let s = &mut *self.session;
            let pos = s.tokens.len() as i32;
            s.batch.fill(&[t], pos, true);
            match s.ctx.decode(&s.batch) {
                Ok(()) => s.tokens.push(t),
                Err(e) if e.cancelled => {
                    s.ctx.seq_rm(0, Some(pos), None);
                    return Ok(self.end(StopReason::Cancelled, None));
                }
                Err(e) => {
                    s.ctx.seq_rm(0, Some(pos), None);
                    self.done = true;
                    return Err(e.into());
                }
            }
        }
        if self.cancel.is_cancelled() {
            return Ok(self.end(StopReason::Cancelled, None));
        }
        let tok = self.sampler.sample(&self.session.ctx, -1);
        if self.timings.generated_tokens == 0 {
            self.timings.time_to_first_token_s = self.t_prompt.elapsed().as_secs_f64();
        }
        let vocab = self.session.ctx.model().vocab();
        if vocab.is_eog(tok) {
            return Ok(self.end(StopReason::Eog, None));
        }
        self.timings.generated_tokens += 1;
        let piece = self.text.push(&vocab.piece(tok));
        if piece.stopped {
            return Ok(self.end(StopReason::StopString, Some((tok, piece))));
        }
        if self.timings.generated_tokens == self.max_tokens {
            return Ok(self.end(StopReason::MaxTokens, Some((tok, piece))));
        }
        if self.session.tokens.len() >= self.n_ctx {
            return Ok(self.end(StopReason::ContextFull, Some((tok, piece))));
        }
        self.pending = Some(tok);
        Ok(Some(Chunk {
            token: Some(tok),
            text: piece.text,
            bytes: piece.bytes,
        }))
    }
}

impl Iterator for Generation<'_, '_> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.step().transpose()
    }
}

impl Drop for Generation<'_, '_> {
    fn drop(&mut self) {
        // The context must not keep reading a token that belongs to a finished generation.
        self.session.ctx.set_cancel(None);
    }
}
