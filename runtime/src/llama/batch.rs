//! A token batch (`llama_batch_init`): tokens with explicit positions, each for one or more
//! sequences, and which of them produce logits. Freed on drop.

use super::{LlamaError, SeqId, Token};
use crate::ffi;

/// Tokens for one `Context::decode`: every active sequence's next tokens can go in one batch
/// (continuous batching). `add` returns the token's index in the batch, the `i` to pass to
/// `Context::logits_ith` / `Sampler::sample` when it asked for logits.
pub struct Batch {
    raw: ffi::llama_batch,
    capacity: usize,
    max_seqs: usize,
}

// SAFETY: the batch owns its arrays (malloc'd by llama_batch_init) and nothing else.
#[allow(unsafe_code)]
unsafe impl Send for Batch {}

impl Batch {
    /// A batch of up to `capacity` tokens, each in one sequence.
    pub fn new(capacity: usize) -> Batch {
        Batch::with_seqs(capacity, 1)
    }

    /// A batch of up to `capacity` tokens, each in up to `max_seqs` sequences at once (more than
    /// one only to share a token between sequences, e.g. a common prompt prefix).
    pub fn with_seqs(capacity: usize, max_seqs: usize) -> Batch {
        let cap = i32::try_from(capacity.max(1)).unwrap_or(i32::MAX);
        let seqs = i32::try_from(max_seqs.max(1)).unwrap_or(i32::MAX);
        // SAFETY: allocates `cap` slots for tokens, positions, seq ids (each with room for
        // `seqs` ids) and output flags.
        let raw = unsafe { ffi::llama_batch_init(cap, 0, seqs) };
        Batch {
            raw,
            capacity: cap as usize,
            max_seqs: seqs as usize,
        }
    }

    /// Empties the batch (keeps its memory).
    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Tokens in the batch.
    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most tokens the batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_full(&self) -> bool {
        self.len() == self.capacity
    }

    /// Appends `token` at position `pos` of every sequence in `seq_ids`; `logits`: compute its
    /// output row. Returns its index in the batch. Errors (nothing added) when the batch is
    /// full, `seq_ids` is empty or longer than the batch was made for, or an id is negative.
    pub fn add(
        &mut self,
        token: Token,
        pos: i32,
        seq_ids: &[SeqId],
        logits: bool,
    ) -> Result<usize, LlamaError> {
        let i = self.len();
        if i == self.capacity {
            return Err(LlamaError::new(format!(
                "the batch is full ({} tokens)",
                self.capacity
            )));
        }
        if seq_ids.is_empty() || seq_ids.len() > self.max_seqs || seq_ids.iter().any(|&s| s < 0) {
            return Err(LlamaError::new(format!(
                "a batch token needs 1 to {} non-negative sequence ids, got {seq_ids:?}",
                self.max_seqs
            )));
        }
        // SAFETY: i < capacity; every array was allocated with `capacity` entries and seq_id[i]
        // with room for `max_seqs` ids (checked above).
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = seq_ids.len() as i32;
            let ids = *self.raw.seq_id.add(i);
            for (k, &s) in seq_ids.iter().enumerate() {
                *ids.add(k) = s;
            }
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        Ok(i)
    }

    /// Replaces the contents with `tokens` at positions `pos0..` of sequence 0; only the last
    /// one outputs logits when `logits_last` is set. Panics if the batch is too small (a bug of
    /// the caller, not input).
    pub fn fill(&mut self, tokens: &[Token], pos0: i32, logits_last: bool) {
        assert!(tokens.len() <= self.capacity, "batch capacity exceeded");
        self.clear();
        for (i, &t) in tokens.iter().enumerate() {
            self.add(
                t,
                pos0 + i as i32,
                &[0],
                logits_last && i + 1 == tokens.len(),
            )
            .expect("checked: capacity and sequence 0");
        }
    }

    pub(super) fn raw(&self) -> ffi::llama_batch {
        self.raw
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { ffi::llama_batch_free(self.raw) }
    }
}
