//! The model's vocabulary: tokenize, render tokens as bytes, end-of-generation tokens.

use super::LlamaError;
use crate::ffi;
use std::marker::PhantomData;

pub type Token = ffi::llama_token;

/// Borrowed from a `Model`; valid as long as it.
#[derive(Clone, Copy)]
pub struct Vocab<'m> {
    ptr: *const ffi::llama_vocab,
    _model: PhantomData<&'m ()>,
}

impl<'m> Vocab<'m> {
    pub(super) fn from_raw(ptr: *const ffi::llama_vocab) -> Self {
        Vocab {
            ptr,
            _model: PhantomData,
        }
    }

    pub fn n_tokens(&self) -> i32 {
        // SAFETY: valid vocab handle (borrowed from a live model).
        unsafe { ffi::llama_vocab_n_tokens(self.ptr) }
    }

    pub fn is_eog(&self, t: Token) -> bool {
        // SAFETY: valid vocab handle.
        unsafe { ffi::llama_vocab_is_eog(self.ptr, t) }
    }

    /// Tokens of `text`, with BOS when the model asks for it; special-token text is parsed.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>, LlamaError> {
        let len = i32::try_from(text.len()).map_err(|_| {
            LlamaError::new(format!(
                "the prompt is {} bytes; llama.cpp takes at most {} bytes",
                text.len(),
                i32::MAX
            ))
        })?;
        let mut out: Vec<Token> = vec![0; text.len() + 2];
        for _ in 0..2 {
            // SAFETY: `text` is valid for `len` bytes and `out` for `out.len()` tokens; a
            // negative result is the size needed and writes nothing.
            let n = unsafe {
                ffi::llama_tokenize(
                    self.ptr,
                    text.as_ptr().cast(),
                    len,
                    out.as_mut_ptr(),
                    out.len() as i32,
                    true,
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
        Err(LlamaError::new("llama.cpp could not tokenize the prompt"))
    }

    /// The bytes a token stands for (special tokens are not rendered); may be part of a UTF-8
    /// sequence, so callers buffer.
    pub fn piece(&self, t: Token) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        for _ in 0..2 {
            // SAFETY: `buf` is valid for its length; a negative result is the size needed.
            let n = unsafe {
                ffi::llama_token_to_piece(
                    self.ptr,
                    t,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    0,
                    false,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize(n.unsigned_abs() as usize, 0);
        }
        Vec::new()
    }
}
