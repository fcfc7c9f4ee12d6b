//! The model's vocabulary: tokenize, detokenize, render tokens as bytes, special tokens.

use super::LlamaError;
use crate::ffi;
use std::marker::PhantomData;

/// A token id.
pub type Token = ffi::llama_token;

/// Borrowed from a `Model`; valid as long as it.
#[derive(Clone, Copy)]
pub struct Vocab<'m> {
    ptr: *const ffi::llama_vocab,
    _model: PhantomData<&'m ()>,
}

// SAFETY: the vocabulary is read-only after the model loaded (see `Model`'s Send/Sync).
#[allow(unsafe_code)]
unsafe impl Send for Vocab<'_> {}
#[allow(unsafe_code)]
unsafe impl Sync for Vocab<'_> {}

fn token_or_none(t: Token) -> Option<Token> {
    (t >= 0).then_some(t)
}

impl<'m> Vocab<'m> {
    pub(super) fn from_raw(ptr: *const ffi::llama_vocab) -> Self {
        Vocab {
            ptr,
            _model: PhantomData,
        }
    }

    pub(super) fn raw(&self) -> *const ffi::llama_vocab {
        self.ptr
    }

    /// Tokens in the vocabulary.
    pub fn n_tokens(&self) -> i32 {
        // SAFETY: valid vocab handle (borrowed from a live model).
        unsafe { ffi::llama_vocab_n_tokens(self.ptr) }
    }

    /// Whether `t` ends a generation (EOS, EOT, ...).
    pub fn is_eog(&self, t: Token) -> bool {
        // SAFETY: valid vocab handle.
        unsafe { ffi::llama_vocab_is_eog(self.ptr, t) }
    }

    /// Whether `t` is a control token (rendered only with `special`).
    pub fn is_control(&self, t: Token) -> bool {
        // SAFETY: valid vocab handle.
        unsafe { ffi::llama_vocab_is_control(self.ptr, t) }
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: valid vocab handle.
        token_or_none(unsafe { ffi::llama_vocab_bos(self.ptr) })
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<Token> {
        // SAFETY: valid vocab handle.
        token_or_none(unsafe { ffi::llama_vocab_eos(self.ptr) })
    }

    /// Whether tokenizing with `add_special` puts BOS in front.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: valid vocab handle.
        unsafe { ffi::llama_vocab_get_add_bos(self.ptr) }
    }

    /// Tokens of `text`, with BOS when the model asks for it; special-token text is parsed.
    /// (What `tunellama generate` does: `tokenize_with(text, true, true)`.)
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>, LlamaError> {
        self.tokenize_with(text, true, true)
    }

    /// Tokens of `text`. `add_special`: add BOS/EOS as the model's tokenizer settings ask;
    /// `parse_special`: text such as `<|im_start|>` becomes the special token instead of
    /// plain text (wanted for a rendered chat template, not for user text).
    pub fn tokenize_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, LlamaError> {
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
                    out.len().min(i32::MAX as usize) as i32,
                    add_special,
                    parse_special,
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
    /// sequence, so callers buffer (see [`TextStream`](super::TextStream)).
    pub fn piece(&self, t: Token) -> Vec<u8> {
        self.token_to_piece(t, false)
    }

    /// The bytes of a token; `special` renders control tokens as their text (`<|im_end|>`).
    /// An id outside the vocabulary gives no bytes.
    pub fn token_to_piece(&self, t: Token, special: bool) -> Vec<u8> {
        if t < 0 || t >= self.n_tokens() {
            return Vec::new();
        }
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
                    special,
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

    /// The text of `tokens` (`llama_detokenize`): `remove_special` drops a leading BOS and
    /// trailing EOS as the model adds them; `unparse_special` renders control tokens as text.
    /// Ids outside the vocabulary are an error; bytes that are not UTF-8 become U+FFFD.
    pub fn detokenize(
        &self,
        tokens: &[Token],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<String, LlamaError> {
        let n_vocab = self.n_tokens();
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(LlamaError::new(format!(
                "token id {bad} is outside the vocabulary (0 to {})",
                n_vocab - 1
            )));
        }
        let n_tokens = i32::try_from(tokens.len())
            .map_err(|_| LlamaError::new("too many tokens to detokenize"))?;
        let mut buf = vec![0u8; tokens.len() * 8 + 16];
        for _ in 0..2 {
            // SAFETY: `tokens` is valid for `n_tokens` ids (all inside the vocabulary) and `buf`
            // for its length; a negative result is the size needed and writes nothing.
            let n = unsafe {
                ffi::llama_detokenize(
                    self.ptr,
                    tokens.as_ptr(),
                    n_tokens,
                    buf.as_mut_ptr().cast(),
                    buf.len().min(i32::MAX as usize) as i32,
                    remove_special,
                    unparse_special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
            if n == i32::MIN {
                break;
            }
            buf.resize(n.unsigned_abs() as usize, 0);
        }
        Err(LlamaError::new("llama.cpp could not detokenize the tokens"))
    }
}
