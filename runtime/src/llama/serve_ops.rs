//! What the server needs beyond one-sequence generation: a context with several sequences
//! (`n_seq_max`, one KV stream each), a batch that carries tokens of many sequences, per-sequence
//! KV removal, sampling at a batch row, a sampler chain with penalties, logit bias and a GBNF
//! grammar, and the model's chat template and special tokens. The llama.cpp calls it needs that the
//! checked-in bindings do not list are declared here, by their signatures in the pinned `llama.h`.

use super::{LlamaError, Model, Token};
use crate::ffi;
use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;

#[repr(C)]
struct LogitBias {
    token: Token,
    bias: f32,
}

#[repr(C)]
struct ChatMessage {
    role: *const c_char,
    content: *const c_char,
}

unsafe extern "C" {
    fn llama_memory_seq_rm(mem: ffi::llama_memory_t, seq: i32, p0: i32, p1: i32) -> bool;
    fn llama_sampler_init_grammar(
        vocab: *const ffi::llama_vocab,
        grammar: *const c_char,
        root: *const c_char,
    ) -> *mut ffi::llama_sampler;
    fn llama_sampler_init_logit_bias(
        n_vocab: i32,
        n: i32,
        bias: *const LogitBias,
    ) -> *mut ffi::llama_sampler;
    fn llama_sampler_accept(smpl: *mut ffi::llama_sampler, token: Token);
    fn llama_chat_apply_template(
        tmpl: *const c_char,
        chat: *const ChatMessage,
        n_msg: usize,
        add_ass: bool,
        buf: *mut c_char,
        length: i32,
    ) -> i32;
    fn llama_model_chat_template(
        model: *const ffi::llama_model,
        name: *const c_char,
    ) -> *const c_char;
    fn llama_vocab_get_text(vocab: *const ffi::llama_vocab, token: Token) -> *const c_char;
    fn llama_vocab_bos(vocab: *const ffi::llama_vocab) -> Token;
    fn llama_vocab_eos(vocab: *const ffi::llama_vocab) -> Token;
}

/// A context whose KV memory holds `n_seq` independent sequences of `n_ctx_seq` tokens each.
pub struct SeqContext<'m> {
    ptr: NonNull<ffi::llama_context>,
    model: &'m Model,
}

// SAFETY: a llama_context is used by one thread at a time; the server moves it into its engine
// thread and never shares it.
unsafe impl Send for SeqContext<'_> {}

impl<'m> SeqContext<'m> {
    pub fn new(
        model: &'m Model,
        n_ctx_seq: u32,
        n_seq: u32,
        n_batch: u32,
        threads: u32,
    ) -> Result<SeqContext<'m>, LlamaError> {
        super::log::recent_errors();
        // SAFETY: default params are plain data; the model outlives the context (borrow).
        let ptr = unsafe {
            let mut p = ffi::llama_context_default_params();
            p.n_ctx = n_ctx_seq * n_seq;
            p.n_seq_max = n_seq;
            // One KV stream per sequence: a sequence's attention never sees another's cells, so
            // its numbers do not depend on what else is in the batch.
            p.kv_unified = false;
            p.n_batch = n_batch;
            p.n_ubatch = n_batch;
            p.n_threads = threads as i32;
            p.n_threads_batch = threads as i32;
            p.no_perf = true;
            ffi::llama_init_from_model(model.raw(), p)
        };
        NonNull::new(ptr)
            .map(|ptr| SeqContext { ptr, model })
            .ok_or_else(|| {
                LlamaError::new(format!(
                    "llama.cpp could not create a context of {n_seq} sequences x {n_ctx_seq} tokens"
                ))
            })
    }

    pub fn decode(&mut self, batch: &SeqBatch) -> Result<(), LlamaError> {
        // SAFETY: valid context; the batch's arrays are valid for `n_tokens` entries.
        let rc = unsafe { ffi::llama_decode(self.ptr.as_ptr(), batch.raw) };
        match rc {
            0 => Ok(()),
            rc => Err(LlamaError::new(format!(
                "llama_decode failed with code {rc} on a batch of {} tokens",
                batch.len()
            ))),
        }
    }

    /// Forgets the tokens of sequence `seq` from position `p0` on (all of them for 0).
    pub fn seq_rm(&mut self, seq: i32, p0: i32) -> bool {
        // SAFETY: valid context; the memory handle belongs to it.
        unsafe { llama_memory_seq_rm(ffi::llama_get_memory(self.ptr.as_ptr()), seq, p0.max(0), -1) }
    }

    /// The logits at row `i` of the previous batch (a row that asked for them).
    pub fn logits(&mut self, i: i32) -> Option<&[f32]> {
        let n = self.model.vocab().n_tokens().max(0) as usize;
        // SAFETY: row i produced output in the last decode; n_vocab floats owned by the context
        // until the next decode, which needs `&mut self` and so ends this borrow.
        let p = unsafe { ffi::llama_get_logits_ith(self.ptr.as_ptr(), i) };
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p, n) })
    }

    /// Samples from row `i` of the previous batch (and records the token in the chain).
    pub fn sample(&mut self, s: &mut SeqSampler, i: i32) -> Token {
        // SAFETY: valid context and sampler; row i produced output in the last decode.
        unsafe { ffi::llama_sampler_sample(s.chain.as_ptr(), self.ptr.as_ptr(), i) }
    }
}

impl Drop for SeqContext<'_> {
    fn drop(&mut self) {
        // SAFETY: freed exactly once, before the model it borrows.
        unsafe { ffi::llama_free(self.ptr.as_ptr()) }
    }
}

/// A batch of tokens for several sequences (one sequence id per token).
pub struct SeqBatch {
    raw: ffi::llama_batch,
    capacity: usize,
}

// SAFETY: plain heap arrays owned by this value.
unsafe impl Send for SeqBatch {}

impl SeqBatch {
    pub fn new(capacity: usize) -> SeqBatch {
        let cap = i32::try_from(capacity.max(1)).unwrap_or(i32::MAX);
        // SAFETY: allocates `cap` slots for tokens, positions, seq ids (one each) and flags.
        let raw = unsafe { ffi::llama_batch_init(cap, 0, 1) };
        SeqBatch {
            raw,
            capacity: cap as usize,
        }
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    pub fn room(&self) -> usize {
        self.capacity - self.len()
    }

    /// Appends a token of sequence `seq` at `pos`; returns its row. Panics when full (a bug).
    pub fn push(&mut self, token: Token, pos: i32, seq: i32, logits: bool) -> i32 {
        let i = self.len();
        assert!(i < self.capacity, "batch capacity exceeded");
        // SAFETY: i < capacity; every array holds `capacity` entries, seq_id[i] room for one.
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            **self.raw.seq_id.add(i) = seq;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        i as i32
    }
}

impl Drop for SeqBatch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { ffi::llama_batch_free(self.raw) }
    }
}

/// Sampling parameters of one request, in llama.cpp's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub repeat_last_n: i32,
    pub seed: u32,
    pub logit_bias: Vec<(Token, f32)>,
    /// GBNF text with a `root` rule.
    pub grammar: Option<String>,
}

pub struct SeqSampler {
    chain: NonNull<ffi::llama_sampler>,
}

// SAFETY: owned by one request and used by the engine thread only.
unsafe impl Send for SeqSampler {}

impl SeqSampler {
    /// The chain logit bias → penalties (primed with the prompt's last tokens) → grammar →
    /// greedy, or top-k → top-p → min-p → temperature → seeded draw. A grammar llama.cpp cannot
    /// parse is an error carrying its log lines.
    pub fn new(
        p: &SamplingParams,
        model: &Model,
        prompt: &[Token],
    ) -> Result<SeqSampler, LlamaError> {
        let n_vocab = model.vocab().n_tokens();
        // SAFETY: the chain owns every sampler added to it and frees them with itself; the
        // init functions return fresh objects; strings outlive the calls that read them.
        unsafe {
            let chain = ffi::llama_sampler_chain_init(ffi::llama_sampler_chain_default_params());
            let chain = NonNull::new(chain).expect("llama_sampler_chain_init returned NULL");
            let s = SeqSampler { chain };
            let add = |x: *mut ffi::llama_sampler| ffi::llama_sampler_chain_add(chain.as_ptr(), x);
            if !p.logit_bias.is_empty() {
                let b: Vec<LogitBias> = p
                    .logit_bias
                    .iter()
                    .map(|&(token, bias)| LogitBias { token, bias })
                    .collect();
                add(llama_sampler_init_logit_bias(
                    n_vocab,
                    b.len() as i32,
                    b.as_ptr(),
                ));
            }
            if p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
                let pen = ffi::llama_sampler_init_penalties(
                    n_vocab,
                    p.repeat_last_n,
                    p.repeat_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                );
                let from = prompt.len().saturating_sub(p.repeat_last_n.max(0) as usize);
                for &t in &prompt[from..] {
                    llama_sampler_accept(pen, t);
                }
                add(pen);
            }
            if let Some(g) = &p.grammar {
                super::log::recent_errors();
                let text = CString::new(g.as_str())
                    .map_err(|_| LlamaError::new("the grammar contains a NUL byte"))?;
                let gs =
                    llama_sampler_init_grammar(vocab_ptr(model), text.as_ptr(), c"root".as_ptr());
                if gs.is_null() {
                    return Err(LlamaError::new("llama.cpp could not parse the grammar"));
                }
                add(gs);
            }
            if p.temperature <= 0.0 {
                add(ffi::llama_sampler_init_greedy());
            } else {
                if p.top_k > 0 {
                    add(ffi::llama_sampler_init_top_k(p.top_k));
                }
                add(ffi::llama_sampler_init_top_p(p.top_p, 1));
                add(ffi::llama_sampler_init_min_p(p.min_p, 1));
                add(ffi::llama_sampler_init_temp(p.temperature));
                add(ffi::llama_sampler_init_dist(p.seed));
            }
            Ok(s)
        }
    }
}

impl Drop for SeqSampler {
    fn drop(&mut self) {
        // SAFETY: frees the chain and the samplers it owns, once.
        unsafe { ffi::llama_sampler_free(self.chain.as_ptr()) }
    }
}

fn vocab_ptr(model: &Model) -> *const ffi::llama_vocab {
    // SAFETY: valid model; the vocab lives as long as it.
    unsafe { ffi::llama_model_get_vocab(model.raw()) }
}

fn owned(p: *const c_char) -> Option<String> {
    // SAFETY: llama.cpp returns NUL-terminated strings it owns, or NULL.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The model's `tokenizer.chat_template`, if it has one.
pub fn chat_template(model: &Model) -> Option<String> {
    // SAFETY: valid model; NULL name = the default template; the string lives with the model.
    owned(unsafe { llama_model_chat_template(model.raw(), std::ptr::null()) })
}

/// The text of a special token (e.g. `<s>`), for templates' `bos_token`/`eos_token`.
pub fn bos_eos_text(model: &Model) -> (String, String) {
    let v = vocab_ptr(model);
    // SAFETY: valid vocab; token ids come from the vocab itself; strings live with the model.
    let text = |t: Token| {
        if t < 0 {
            String::new()
        } else {
            owned(unsafe { llama_vocab_get_text(v, t) }).unwrap_or_default()
        }
    };
    // SAFETY: valid vocab handle.
    let (b, e) = unsafe { (llama_vocab_bos(v), llama_vocab_eos(v)) };
    (text(b), text(e))
}

/// llama.cpp's built-in template rendering (`llama_chat_apply_template`): `tmpl` is a template
/// name or a Jinja source it recognises by its markers; `None` means chatml.
pub fn apply_builtin_template(
    tmpl: Option<&str>,
    messages: &[(String, String)],
    add_assistant: bool,
) -> Result<String, LlamaError> {
    let t = CString::new(tmpl.unwrap_or("chatml"))
        .map_err(|_| LlamaError::new("the chat template contains a NUL byte"))?;
    let strings: Vec<(CString, CString)> = messages
        .iter()
        .map(|(r, c)| Ok((CString::new(r.as_str())?, CString::new(c.as_str())?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|_| LlamaError::new("a chat message contains a NUL byte"))?;
    let msgs: Vec<ChatMessage> = strings
        .iter()
        .map(|(r, c)| ChatMessage {
            role: r.as_ptr(),
            content: c.as_ptr(),
        })
        .collect();
    let total: usize = messages.iter().map(|(r, c)| r.len() + c.len()).sum();
    let mut buf = vec![0u8; 2 * total + 256];
    for _ in 0..2 {
        // SAFETY: the messages point at live C strings; the buffer is valid for its length; a
        // result larger than the buffer is the size needed.
        let n = unsafe {
            llama_chat_apply_template(
                t.as_ptr(),
                msgs.as_ptr(),
                msgs.len(),
                add_assistant,
                buf.as_mut_ptr().cast(),
                i32::try_from(buf.len()).unwrap_or(i32::MAX),
            )
        };
        if n < 0 {
            return Err(LlamaError::new(
                "llama.cpp's built-in chat templates do not know this model's template",
            ));
        }
        if (n as usize) <= buf.len() {
            buf.truncate(n as usize);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n as usize, 0);
    }
    Err(LlamaError::new(
        "llama_chat_apply_template did not settle on a size",
    ))
}

/// Tokens of `text`; BOS (and what else the model adds) only with `add_special`; special-token
/// text is parsed.
pub fn tokenize(model: &Model, text: &str, add_special: bool) -> Result<Vec<Token>, LlamaError> {
    let len = i32::try_from(text.len())
        .map_err(|_| LlamaError::new(format!("the text is {} bytes; too long", text.len())))?;
    let mut out: Vec<Token> = vec![0; text.len() + 2];
    for _ in 0..2 {
        // SAFETY: `text` is valid for `len` bytes and `out` for `out.len()` tokens; a negative
        // result is the size needed and writes nothing.
        let n = unsafe {
            ffi::llama_tokenize(
                vocab_ptr(model),
                text.as_ptr().cast(),
                len,
                out.as_mut_ptr(),
                out.len() as i32,
                add_special,
                true,
            )
        };
        if n >= 0 {
            out.truncate(n as usize);
            return Ok(out);
        }
        if n == i32::MIN {
            break;
        }
        out.resize(n.unsigned_abs() as usize, 0);
    }
    Err(LlamaError::new("llama.cpp could not tokenize the text"))
}
