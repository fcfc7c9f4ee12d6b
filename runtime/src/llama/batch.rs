//! A token batch (`llama_batch_init`) for one sequence with explicit positions, freed on drop.

use super::Token;
use crate::ffi;

pub struct Batch {
    raw: ffi::llama_batch,
    capacity: usize,
}

impl Batch {
    pub fn new(capacity: usize) -> Batch {
        let cap = i32::try_from(capacity.max(1)).unwrap_or(i32::MAX);
        // SAFETY: allocates `cap` slots for tokens, positions, seq ids and output flags.
        let raw = unsafe { ffi::llama_batch_init(cap, 0, 1) };
        Batch {
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

    /// Adds `tokens` at positions `pos0..` in sequence 0; only the last one outputs logits
    /// when `logits_last` is set. Panics if the batch is too small (a bug of ours, not input).
    pub fn fill(&mut self, tokens: &[Token], pos0: i32, logits_last: bool) {
        assert!(tokens.len() <= self.capacity, "batch capacity exceeded");
        self.clear();
        for (i, &t) in tokens.iter().enumerate() {
            // SAFETY: i < capacity; every array was allocated with `capacity` entries and
            // seq_id[i] with room for one sequence id.
            unsafe {
                *self.raw.token.add(i) = t;
                *self.raw.pos.add(i) = pos0 + i as i32;
                *self.raw.n_seq_id.add(i) = 1;
                **self.raw.seq_id.add(i) = 0;
                *self.raw.logits.add(i) = i8::from(logits_last && i + 1 == tokens.len());
            }
        }
        self.raw.n_tokens = tokens.len() as i32;
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
