//! The engine thread: owns the model and the context and runs continuous batching. Each step
//! puts every generating slot's next token and, in the room left, chunks of newcomers' prompts
//! into one batch (at most one batch per step, so a newcomer stalls running streams by at most
//! one batch), calls `llama_decode` once, and samples every slot that produced logits. Requests
//! wait in a bounded queue for a free slot; a slot keeps its KV cache after a request. The next
//! request goes to the free slot that keeps the busy slots' sequence ids consecutive (see
//! [`pick_slot`]: llama.cpp decodes a batch of non-consecutive sequences in several passes),
//! preferring among those the one sharing the longest prefix with it, re-evaluating only the
//! rest.

use super::api::{ApiError, GenRequest};
use super::metrics::Metrics;
use crate::llama::{Batch, Context, ContextOptions, Model, Sampler, TextStream, Token};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What the engine tells the connection serving a request, in order: `Admitted` (once, after
/// the prompt was tokenized and checked), `Progress` while its prompt is evaluated, `Delta`s,
/// then `Done` or `Failed` (a `Failed` may also come first, before `Admitted`).
#[derive(Debug)]
pub enum Event {
    Admitted,
    Progress,
    Delta(String),
    Done(Summary),
    Failed(ApiError),
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub prompt_n: usize,
    pub prompt_ms: f64,
    pub prompt_per_second: f64,
    pub predicted_n: usize,
    pub predicted_ms: f64,
    pub predicted_per_second: f64,
    pub cache_n: usize,
}

#[derive(Debug, Clone)]
pub struct Summary {
    /// `stop` (end of text or a stop string) or `length` (max_tokens or the context is full).
    pub finish: &'static str,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub timings: Timings,
}

pub struct Job {
    pub req: GenRequest,
    /// The rendered prompt text.
    pub prompt: String,
    /// Whether tokenizing adds the model's BOS (false when the text already has it).
    pub add_special: bool,
    pub events: Sender<Event>,
    /// Set by the connection when its client went away.
    pub cancel: Arc<AtomicBool>,
}

pub enum Command {
    Generate(Job),
    Tokenize {
        text: String,
        add_special: bool,
        reply: Sender<Result<Vec<Token>, ApiError>>,
    },
    Detokenize {
        tokens: Vec<Token>,
        reply: Sender<Result<String, ApiError>>,
    },
    /// Top logits of one prompt alone (for checking near-ties): `(token, logit)` best first.
    TopLogits {
        text: String,
        n: usize,
        reply: Sender<Result<Vec<(Token, f32)>, ApiError>>,
    },
}

/// What the loaded model offers, published once the engine is ready.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub n_vocab: i32,
    pub n_ctx_slot: u32,
    pub parallel: u32,
    pub n_batch: u32,
    pub chat_template: Option<String>,
    pub bos_token: String,
    pub eos_token: String,
    pub desc: String,
}

/// State shared by the accept loop, connection threads and the engine.
#[derive(Default)]
pub struct Shared {
    pub metrics: Metrics,
    /// Requests submitted and not yet in a slot (the wait queue).
    pub waiting: AtomicUsize,
    pub info: OnceLock<ModelInfo>,
    /// The loaded model, for what connection threads do with it (chat templates).
    pub model: OnceLock<Arc<Model>>,
    pub load_error: OnceLock<String>,
    pub shutdown: AtomicBool,
    /// Set by the engine when it has ended every stream after a shutdown.
    pub engine_done: AtomicBool,
}

pub struct EngineConfig {
    pub model_path: std::path::PathBuf,
    pub header: crate::gguf::Header,
    pub gpu_layers: i32,
    pub threads: u32,
    pub n_ctx_slot: u32,
    pub parallel: u32,
    pub n_batch: u32,
    pub verbose: bool,
}

struct Active {
    events: Sender<Event>,
    cancel: Arc<AtomicBool>,
    prompt: Vec<Token>,
    /// Prompt tokens already in the KV cache (reused or evaluated).
    fed: usize,
    cached: usize,
    sampler: Sampler,
    /// The last sampled token, to be evaluated in the next step.
    next: Option<Token>,
    /// This step's batch row with logits for this slot.
    row: Option<i32>,
    generated: usize,
    max_tokens: Option<usize>,
    /// Token bytes to valid UTF-8 text, stop strings held back and cut.
    text: TextStream,
    t_admit: Instant,
    t_first: Option<Instant>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV is in this slot's sequence, positions 0..len.
    cache: Vec<Token>,
    last_used: u64,
    job: Option<Active>,
}

pub fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A slot's cache matches a prompt when their common prefix is more than this fraction of the
/// prompt: llama.cpp's server rule (`--slot-prompt-similarity`, default 0.1, in
/// `get_available_slot` of its tools/server).
pub const SIMILARITY: f64 = 0.1;

/// Runs of consecutive ids in `ids` (sorted or not).
pub fn runs(ids: &[usize]) -> usize {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v.windows(2).filter(|w| w[1] != w[0] + 1).count() + usize::from(!v.is_empty())
}

/// The free slot for `prompt`: `(slot, shared prefix length)`. As llama.cpp's server does,
/// the slot whose cache matches the prompt best ([`SIMILARITY`]), else the least recently used
/// slot; but among slots that tie on that, and whenever nothing matches, the one that keeps the
/// busy slots consecutive. With one KV stream per slot, llama.cpp puts only sequences with
/// consecutive ids into one ubatch (llama.cpp PR #16442, "Split KV cache requires the sequence
/// ids in an ubatch to be sequential"; `split_equal` with `sequential`), so busy slots 0, 2, 5
/// and 7 cost four weight reads per step where 0 to 3 cost one (measured: 4 clients at 1.07x
/// one client's speed instead of 2.17x).
pub fn pick_slot(
    free: &[(usize, &[Token], u64)],
    busy: &[usize],
    prompt: &[Token],
) -> Option<(usize, usize)> {
    let scored = free.iter().map(|&(i, cache, used)| {
        let lcp = common_prefix(cache, prompt);
        let mut with = busy.to_vec();
        with.push(i);
        // Only a match counts; below the threshold every slot is as good as empty.
        let matched = if lcp as f64 > SIMILARITY * prompt.len() as f64 {
            lcp
        } else {
            0
        };
        (i, lcp, used, runs(&with), matched)
    });
    scored
        .max_by(|a, b| a.4.cmp(&b.4).then(b.3.cmp(&a.3)).then(b.2.cmp(&a.2)))
        .map(|(i, l, _, _, _)| (i, l))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_s(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

pub fn run(cfg: EngineConfig, shared: Arc<Shared>, rx: Receiver<Command>) {
    let model = match crate::load::model(&cfg.model_path, &cfg.header, cfg.gpu_layers, cfg.verbose)
    {
        Ok((m, s)) => {
            log!("serve: model loaded in {s:.2} s");
            Arc::new(m)
        }
        Err(e) => {
            let _ = shared.load_error.set(e.message);
            return;
        }
    };
    // One KV stream per slot (kv_unified off): a sequence's attention never sees another's
    // cells, so its numbers do not depend on what else is in the batch.
    let opts = ContextOptions::new(cfg.n_ctx_slot, cfg.n_batch, cfg.threads)
        .with_seqs(cfg.parallel, cfg.n_ctx_slot);
    let ctx = match Context::new(&model, opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = shared.load_error.set(e.to_string());
            return;
        }
    };
    let vocab = model.vocab();
    let text = |t: Option<Token>| {
        t.map_or(String::new(), |t| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true)).into_owned()
        })
    };
    let (bos, eos) = (text(vocab.bos()), text(vocab.eos()));
    let info = ModelInfo {
        id: cfg
            .model_path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
        n_vocab: model.vocab().n_tokens(),
        n_ctx_slot: cfg.n_ctx_slot,
        parallel: cfg.parallel,
        n_batch: cfg.n_batch,
        chat_template: model.chat_template(None),
        bos_token: bos,
        eos_token: eos,
        desc: model.desc(),
    };
    shared.metrics.slots.store(u64::from(cfg.parallel), Relaxed);
    let _ = shared.model.set(model.clone());
    let _ = shared.info.set(info);
    Engine {
        model: &model,
        ctx,
        batch: Batch::with_seqs(cfg.n_batch as usize, 1),
        slots: (0..cfg.parallel)
            .map(|i| Slot {
                seq: i as i32,
                cache: Vec::new(),
                last_used: 0,
                job: None,
            })
            .collect(),
        queue: VecDeque::new(),
        n_ctx_slot: cfg.n_ctx_slot as usize,
        clock: 0,
        shared: &shared,
    }
    .run(rx);
    shared.engine_done.store(true, Relaxed);
}

struct Engine<'m, 's> {
    model: &'m Model,
    ctx: Context<'m>,
    batch: Batch,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    n_ctx_slot: usize,
    clock: u64,
    shared: &'s Shared,
}

impl Engine<'_, '_> {
    fn busy(&self) -> bool {
        self.slots.iter().any(|s| s.job.is_some())
    }

    fn run(mut self, rx: Receiver<Command>) {
        loop {
            // Intake: wait when idle, otherwise take what is there and go on decoding.
            if !self.busy() && self.queue.is_empty() {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(c) => self.command(c),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            while let Ok(c) = rx.try_recv() {
                self.command(c);
            }
            if self.shared.shutdown.load(Relaxed) {
                self.shut_down(&rx);
                return;
            }
            self.drop_cancelled();
            self.admit();
            self.step();
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Generate(job) => self.queue.push_back(job),
            Command::Tokenize {
                text,
                add_special,
                reply,
            } => {
                let r = self
                    .model
                    .vocab()
                    .tokenize_with(&text, add_special, true)
                    .map_err(|e| ApiError::server(e.to_string()));
                let _ = reply.send(r);
            }
            Command::Detokenize { tokens, reply } => {
                let r = self
                    .model
                    .vocab()
                    .detokenize(&tokens, false, false)
                    .map_err(|e| ApiError::invalid(e.to_string()));
                let _ = reply.send(r);
            }
            Command::TopLogits { text, n, reply } => {
                let _ = reply.send(self.top_logits(&text, n));
            }
        }
    }

    /// Evaluates `text` alone in a free slot (forgetting that slot's cache) and returns its
    /// last position's `n` best logits.
    fn top_logits(&mut self, text: &str, n: usize) -> Result<Vec<(Token, f32)>, ApiError> {
        let tokens = self
            .model
            .vocab()
            .tokenize(text)
            .map_err(|e| ApiError::server(e.to_string()))?;
        if tokens.is_empty() || tokens.len() >= self.n_ctx_slot {
            return Err(ApiError::invalid("the text must be 1 to n_ctx-1 tokens"));
        }
        let Some(slot) = self.slots.iter_mut().find(|s| s.job.is_none()) else {
            return Err(ApiError::unavailable("no free slot"));
        };
        let seq = slot.seq;
        slot.cache.clear();
        self.ctx.seq_rm(seq, None, None);
        let mut last = 0;
        for (c, chunk) in tokens.chunks(self.batch_cap()).enumerate() {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let pos = c * self.batch_cap() + i;
                last = self
                    .batch
                    .add(t, pos as i32, &[seq], pos + 1 == tokens.len())
                    .map_err(|e| ApiError::server(e.to_string()))?;
            }
            self.ctx
                .decode(&self.batch)
                .map_err(|e| ApiError::server(e.to_string()))?;
        }
        let logits = self
            .ctx
            .logits_ith(last as i32)
            .map_err(|e| ApiError::server(e.to_string()))?;
        let mut v: Vec<(Token, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as Token, l))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(n);
        self.ctx.seq_rm(seq, None, None);
        Ok(v)
    }

    fn batch_cap(&self) -> usize {
        self.batch.capacity()
    }

    fn release(&mut self, i: usize) {
        if self.slots[i].job.take().is_some() {
            self.shared.metrics.busy_slots.fetch_sub(1, Relaxed);
        }
    }

    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .job
                .as_ref()
                .is_some_and(|a| a.cancel.load(Relaxed))
            {
                self.shared.metrics.requests_cancelled.fetch_add(1, Relaxed);
                self.release(i);
            }
        }
        let before = self.queue.len();
        self.queue.retain(|j| !j.cancel.load(Relaxed));
        let gone = before - self.queue.len();
        if gone > 0 {
            self.shared.waiting.fetch_sub(gone, Relaxed);
            self.shared
                .metrics
                .requests_cancelled
                .fetch_add(gone as u64, Relaxed);
        }
        self.shared
            .metrics
            .queue_depth
            .store(self.queue.len() as u64, Relaxed);
    }

    fn admit(&mut self) {
        while !self.queue.is_empty() && self.slots.iter().any(|s| s.job.is_none()) {
            let job = self.queue.pop_front().expect("not empty");
            self.shared.waiting.fetch_sub(1, Relaxed);
            self.start(job);
        }
        self.shared
            .metrics
            .queue_depth
            .store(self.queue.len() as u64, Relaxed);
    }

    fn start(&mut self, job: Job) {
        let prompt = match self
            .model
            .vocab()
            .tokenize_with(&job.prompt, job.add_special, true)
        {
            Ok(t) => t,
            Err(e) => {
                let _ = job
                    .events
                    .send(Event::Failed(ApiError::server(e.to_string())));
                return;
            }
        };
        if prompt.is_empty() {
            let _ = job.events.send(Event::Failed(ApiError::invalid(
                "the prompt is empty (0 tokens)",
            )));
            return;
        }
        if prompt.len() >= self.n_ctx_slot {
            let mut e = ApiError::new(
                400,
                "exceed_context_size_error",
                format!(
                    "the request has {} prompt tokens but a slot's context holds {} (--ctx-size), leaving no room to generate",
                    prompt.len(),
                    self.n_ctx_slot
                ),
            );
            e.extra = vec![
                ("n_prompt_tokens", prompt.len().into()),
                ("n_ctx", self.n_ctx_slot.into()),
            ];
            let _ = job.events.send(Event::Failed(e));
            return;
        }
        let mut sampler = match Sampler::new(self.model.vocab(), &job.req.sampling) {
            Ok(s) => s,
            Err(e) => {
                let _ = job.events.send(Event::Failed(ApiError::invalid(format!(
                    "`{}`: {}",
                    e.field, e.message
                ))));
                return;
            }
        };
        // Penalties see the prompt too (as in llama.cpp's server; `Sampler::accept_prompt`).
        sampler.accept_prompt(&prompt);
        let free: Vec<(usize, &[Token], u64)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .map(|(i, s)| (i, s.cache.as_slice(), s.last_used))
            .collect();
        let busy: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].job.is_some())
            .collect();
        let (i, lcp) = pick_slot(&free, &busy, &prompt).expect("a free slot exists");
        // At least the last prompt token is evaluated again: its logits start the generation.
        let keep = lcp.min(prompt.len() - 1);
        let slot = &mut self.slots[i];
        if !self.ctx.seq_rm(slot.seq, Some(keep as i32), None) {
            self.ctx.seq_rm(slot.seq, None, None);
            slot.cache.clear();
        }
        slot.cache.truncate(keep);
        let cached = slot.cache.len();
        self.clock += 1;
        slot.last_used = self.clock;
        if job.events.send(Event::Admitted).is_err() {
            return;
        }
        self.shared.metrics.busy_slots.fetch_add(1, Relaxed);
        self.shared
            .metrics
            .prompt_tokens_cached
            .fetch_add(cached as u64, Relaxed);
        slot.job = Some(Active {
            events: job.events,
            cancel: job.cancel,
            prompt,
            fed: cached,
            cached,
            sampler,
            next: None,
            row: None,
            generated: 0,
            max_tokens: job.req.max_tokens,
            text: TextStream::new(job.req.stop),
            t_admit: Instant::now(),
            t_first: None,
        });
    }

    /// One decode carrying every active slot; then sampling.
    fn step(&mut self) {
        self.batch.clear();
        // Running streams get one token each; newcomers' prompts share the room left, in
        // admission order.
        let running = self
            .slots
            .iter()
            .filter(|s| s.job.as_ref().is_some_and(|a| a.next.is_some()))
            .count();
        let mut prompting: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .job
                    .as_ref()
                    .is_some_and(|a| a.fed < a.prompt.len())
            })
            .collect();
        prompting.sort_by_key(|&i| self.slots[i].last_used);
        let mut share = vec![0; self.slots.len()];
        let mut room = self.batch.capacity() - running;
        for i in prompting {
            let a = self.slots[i].job.as_ref().expect("active");
            share[i] = room.min(a.prompt.len() - a.fed);
            room -= share[i];
        }
        // Into the batch in sequence order: llama.cpp takes consecutive sequence ids into one
        // ubatch only in the order their tokens come (see `pick_slot`).
        let mut prompt_tokens = 0;
        for (s, &n) in self.slots.iter_mut().zip(&share) {
            let Some(a) = s.job.as_mut() else { continue };
            a.row = None;
            if let Some(t) = a.next.take() {
                let row = self.batch.add(t, s.cache.len() as i32, &[s.seq], true);
                a.row = Some(row.expect("one token per slot fits the batch") as i32);
                s.cache.push(t);
                continue;
            }
            for k in 0..n {
                let t = a.prompt[a.fed + k];
                let last = a.fed + k + 1 == a.prompt.len();
                let row = self
                    .batch
                    .add(t, s.cache.len() as i32, &[s.seq], last)
                    .expect("within the room counted above") as i32;
                s.cache.push(t);
                if last {
                    a.row = Some(row);
                }
            }
            a.fed += n;
            prompt_tokens += n;
            if a.fed < a.prompt.len() && a.events.send(Event::Progress).is_err() {
                a.cancel.store(true, Relaxed);
            }
        }
        if self.batch.is_empty() {
            return;
        }
        let t = Instant::now();
        let r = self.ctx.decode(&self.batch);
        let took = t.elapsed().as_micros() as u64;
        self.shared.metrics.decode_calls.fetch_add(1, Relaxed);
        let m = &self.shared.metrics;
        m.prompt_tokens.fetch_add(prompt_tokens as u64, Relaxed);
        let generating = self.batch.len() - prompt_tokens;
        // Split the step's time between prompt and generation by their share of the batch.
        let share = |n: usize| took * n as u64 / self.batch.len().max(1) as u64;
        m.prompt_micros.fetch_add(share(prompt_tokens), Relaxed);
        m.generate_micros.fetch_add(share(generating), Relaxed);
        if let Err(e) = r {
            log!("serve: {e}");
            for i in 0..self.slots.len() {
                if let Some(a) = self.slots[i].job.as_ref() {
                    let _ = a
                        .events
                        .send(Event::Failed(ApiError::server(e.to_string())));
                    let seq = self.slots[i].seq;
                    self.ctx.seq_rm(seq, None, None);
                    self.slots[i].cache.clear();
                    self.release(i);
                }
            }
            return;
        }
        for i in 0..self.slots.len() {
            self.sample_slot(i);
        }
    }

    fn sample_slot(&mut self, i: usize) {
        let n_ctx = self.n_ctx_slot;
        let s = &mut self.slots[i];
        let Some(a) = s.job.as_mut() else { return };
        let Some(row) = a.row.take() else { return };
        let tok = a.sampler.sample(&self.ctx, row);
        if a.t_first.is_none() {
            a.t_first = Some(Instant::now());
        }
        let vocab = self.model.vocab();
        let mut finish = None;
        if vocab.is_eog(tok) {
            finish = Some("stop");
        } else {
            a.generated += 1;
            self.shared.metrics.generated_tokens.fetch_add(1, Relaxed);
            let piece = a.text.push(&vocab.piece(tok));
            let stopped = piece.stopped;
            if !piece.text.is_empty() && a.events.send(Event::Delta(piece.text)).is_err() {
                a.cancel.store(true, Relaxed);
                return;
            }
            if stopped {
                finish = Some("stop");
            } else if a.max_tokens.is_some_and(|m| a.generated >= m) || s.cache.len() + 1 >= n_ctx {
                finish = Some("length");
            } else {
                a.next = Some(tok);
            }
        }
        let Some(finish) = finish else { return };
        // Text held back (an incomplete character, a possible stop-string start) goes out
        // unless a stop string ended the text.
        let tail = a.text.finish();
        if !tail.text.is_empty() {
            let _ = a.events.send(Event::Delta(tail.text));
        }
        let now = Instant::now();
        let first = a.t_first.unwrap_or(now);
        let prompt_n = a.prompt.len() - a.cached;
        let prompt_ms = ms(first - a.t_admit);
        let predicted_ms = ms(now - first);
        let summary = Summary {
            finish,
            prompt_tokens: a.prompt.len(),
            cached_tokens: a.cached,
            completion_tokens: a.generated,
            timings: Timings {
                prompt_n,
                prompt_ms,
                prompt_per_second: per_s(prompt_n, prompt_ms),
                predicted_n: a.generated,
                predicted_ms,
                predicted_per_second: per_s(a.generated, predicted_ms),
                cache_n: a.cached,
            },
        };
        let _ = a.events.send(Event::Done(summary));
        self.shared.metrics.requests_ok.fetch_add(1, Relaxed);
        self.release(i);
    }

    /// Ends every running stream and queued request with a final event.
    fn shut_down(&mut self, rx: &Receiver<Command>) {
        while let Ok(c) = rx.try_recv() {
            self.command(c);
        }
        let e = ApiError::unavailable("the server is shutting down");
        for i in 0..self.slots.len() {
            if let Some(a) = self.slots[i].job.as_ref() {
                let _ = a.events.send(Event::Failed(e.clone()));
            }
            self.release(i);
        }
        for j in self.queue.drain(..) {
            let _ = j.events.send(Event::Failed(e.clone()));
            self.shared.waiting.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_matching_slot_is_chosen_as_llama_cpp_chooses_it() {
        let a: Vec<Token> = vec![1, 2, 3, 4];
        let b: Vec<Token> = vec![1, 2, 9];
        let c: Vec<Token> = vec![];
        let free = [
            (0, a.as_slice(), 5),
            (1, b.as_slice(), 1),
            (2, c.as_slice(), 0),
        ];
        assert_eq!(pick_slot(&free, &[], &[1, 2, 3, 7]), Some((0, 3)));
        assert_eq!(pick_slot(&free, &[], &[1, 2, 9, 9]), Some((1, 3)));
        // A match wins even where it splits the busy slots (slot 7 runs).
        assert_eq!(pick_slot(&free, &[7], &[1, 2, 9, 9]), Some((1, 3)));
        // No match anywhere: the least recently used.
        assert_eq!(pick_slot(&free, &[], &[5]), Some((2, 0)));
    }

    #[test]
    fn without_a_match_the_busy_slots_stay_consecutive() {
        let none: Vec<Token> = vec![];
        let one: Vec<Token> = vec![1, 50];
        // Slots 2 and 3 run; 0, 1, 4 and 7 are free. Slot 7 shares 1 token of 20: below the
        // similarity threshold, so it is no match. Slots 1 and 4 both extend the run; 4 was
        // used longer ago.
        let free = [
            (0, none.as_slice(), 1),
            (1, none.as_slice(), 6),
            (4, none.as_slice(), 2),
            (7, one.as_slice(), 0),
        ];
        let prompt: Vec<Token> = (1..=20).collect();
        assert_eq!(pick_slot(&free, &[2, 3], &prompt), Some((4, 0)));
        // Two equal matches: the one next to the busy slots.
        let m: Vec<Token> = (1..=10).collect();
        let free = [(0, m.as_slice(), 0), (4, m.as_slice(), 9)];
        assert_eq!(pick_slot(&free, &[2, 3], &prompt), Some((4, 10)));
        assert_eq!(runs(&[5, 2, 3, 7, 0]), 4);
        assert_eq!(runs(&[]), 0);
        assert_eq!(runs(&[3, 4, 5]), 1);
    }
}
