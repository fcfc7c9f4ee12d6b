//! A loaded model (`llama_model`), freed on drop: its vocabulary, GGUF metadata, and llama.cpp's
//! built-in chat templates.

use super::{LlamaError, Vocab};
use crate::ffi;
use crate::settings::Chosen;
use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;

/// A loaded GGUF model. Shareable between threads: llama.cpp only reads a model after loading,
/// and each thread works in its own [`Context`](super::Context).
pub struct Model {
    ptr: NonNull<ffi::llama_model>,
    /// Where the load put the layers (llama.cpp's log lines).
    pub load: super::LoadReport,
    /// The values contexts get by default ([`ContextOptions::tuned`](super::ContextOptions::tuned)),
    /// each with the reason it has that value.
    pub tuned: Tuned,
}

/// The build's tuned defaults as they apply to one model on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tuned {
    pub threads: Chosen<u32>,
    pub ctx_size: Chosen<u32>,
    pub gpu_layers: Chosen<i32>,
}

// SAFETY: a llama_model is immutable after load; llama.cpp documents sharing one model between
// contexts on several threads (its server does). Freeing happens once, in Drop.
#[allow(unsafe_code)]
unsafe impl Send for Model {}
#[allow(unsafe_code)]
unsafe impl Sync for Model {}

/// A message for [`Model::apply_builtin_chat_template`]: (role, content).
pub type ChatMessage<'a> = (&'a str, &'a str);

fn cstring(what: &str, s: &str) -> Result<CString, LlamaError> {
    CString::new(s).map_err(|_| LlamaError::new(format!("{what} contains a NUL byte")))
}

impl Model {
    /// Loads a GGUF file; `gpu_layers < 0` offloads every layer. Call `llama::init` first.
    /// [`load::open`](crate::load::open) adds our file checks and the tuned defaults.
    pub fn load(path: &Path, gpu_layers: i32) -> Result<Model, LlamaError> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            LlamaError::new(format!("{}: path contains a NUL byte", path.display()))
        })?;
        // Only this load's complaints and layer placement should be reported.
        super::log::recent_errors();
        super::take_load_report();
        // SAFETY: default params are plain data; the path is a valid C string for the call.
        let ptr = unsafe {
            let mut p = ffi::llama_model_default_params();
            p.n_gpu_layers = gpu_layers;
            ffi::llama_model_load_from_file(c.as_ptr(), p)
        };
        let load = super::take_load_report();
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            LlamaError::new(format!("llama.cpp could not load {}", path.display()))
        })?;
        let mut model = Model {
            ptr,
            load,
            tuned: Tuned {
                threads: crate::settings::threads(None).unwrap_or_else(|_| Chosen {
                    value: 1,
                    why: "fallback".into(),
                }),
                ctx_size: Chosen {
                    value: 0,
                    why: String::new(),
                },
                gpu_layers: Chosen {
                    value: gpu_layers,
                    why: "given to Model::load".into(),
                },
            },
        };
        model.tuned.ctx_size = crate::settings::ctx_size_for_trained(model.n_ctx_train());
        Ok(model)
    }

    /// [`load::open`](crate::load::open): our file checks, then the load, with the build's tuned
    /// defaults for whatever `options` leaves unset.
    pub fn open(path: &Path, options: &crate::load::ModelOptions) -> crate::error::Result<Model> {
        crate::load::open(path, options)
    }

    pub(super) fn raw(&self) -> *mut ffi::llama_model {
        self.ptr.as_ptr()
    }

    /// The vocabulary: tokenize, detokenize, special tokens.
    pub fn vocab(&self) -> Vocab<'_> {
        // SAFETY: the vocab is owned by the model and lives as long as the borrow of `self`.
        Vocab::from_raw(unsafe { ffi::llama_model_get_vocab(self.raw()) })
    }

    /// Tokens in the vocabulary (the length of a logits row).
    pub fn n_vocab(&self) -> i32 {
        self.vocab().n_tokens()
    }

    /// e.g. `llama ?B F32`.
    pub fn desc(&self) -> String {
        let mut buf = vec![0u8; 256];
        // SAFETY: the buffer is valid for its length; llama NUL-terminates within it.
        let n = unsafe { ffi::llama_model_desc(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(n.clamp(0, 255) as usize);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Bytes of the model's weights.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_size(self.raw()) }
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_n_params(self.raw()) }
    }

    /// The context length the model was trained for (`<arch>.context_length`).
    pub fn n_ctx_train(&self) -> i32 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_n_ctx_train(self.raw()) }
    }

    /// Transformer blocks.
    pub fn n_layer(&self) -> i32 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_n_layer(self.raw()) }
    }

    /// Embedding width.
    pub fn n_embd(&self) -> i32 {
        // SAFETY: valid model handle.
        unsafe { ffi::llama_model_n_embd(self.raw()) }
    }

    /// A GGUF metadata value as text (`llama_model_meta_val_str`), e.g.
    /// `meta("tokenizer.chat_template")` or `meta("general.name")`; `None` when the key is absent.
    /// Arrays come back as llama.cpp renders them (`[a, b, ...]`, long ones shortened).
    pub fn meta(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        let mut buf = vec![0u8; 256];
        for _ in 0..2 {
            // SAFETY: valid model; `key` is a C string and `buf` is valid for its length. The
            // result is the full length (snprintf-style), or -1 when the key is absent.
            let n = unsafe {
                ffi::llama_model_meta_val_str(
                    self.raw(),
                    key.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return None;
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n + 1, 0);
        }
        None
    }

    /// The model's chat template (`tokenizer.chat_template`, or `tokenizer.chat_template.<name>`
    /// for a named one), as llama.cpp reads it; `None` when the model has none.
    pub fn chat_template(&self, name: Option<&str>) -> Option<String> {
        let name = name.map(CString::new).transpose().ok()?;
        // SAFETY: valid model; the name is a C string or NULL; the result is owned by the model.
        let p = unsafe {
            ffi::llama_model_chat_template(
                self.raw(),
                name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
            )
        };
        if p.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string owned by the model, copied at once.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// Formats `messages` with one of llama.cpp's built-in chat templates
    /// (`llama_chat_apply_template`, no Jinja): `template` is a built-in name (`chatml`,
    /// `llama3`, `gemma`, `phi3`, `mistral-v7`, ...) or a template text llama.cpp recognises by
    /// its markers; `None` uses the model's own `tokenizer.chat_template`, and `chatml` when the
    /// model has none. `add_assistant` ends the prompt with the start of an assistant turn.
    /// A template llama.cpp does not know is an error.
    pub fn apply_builtin_chat_template(
        &self,
        template: Option<&str>,
        messages: &[ChatMessage<'_>],
        add_assistant: bool,
    ) -> Result<String, LlamaError> {
        let tmpl = match template {
            Some(t) => t.to_string(),
            None => self.chat_template(None).unwrap_or_else(|| "chatml".into()),
        };
        let c_tmpl = cstring("the chat template", &tmpl)?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|(r, c)| Ok((cstring("a role", r)?, cstring("a message", c)?)))
            .collect::<Result<_, LlamaError>>()?;
        let msgs: Vec<ffi::llama_chat_message> = owned
            .iter()
            .map(|(r, c)| ffi::llama_chat_message {
                role: r.as_ptr(),
                content: c.as_ptr(),
            })
            .collect();
        let total: usize = messages.iter().map(|(r, c)| r.len() + c.len()).sum();
        let mut buf = vec![0u8; (2 * total + 256).min(i32::MAX as usize)];
        for _ in 0..2 {
            // SAFETY: every pointer in `msgs` points into `owned`, alive for the call; `buf` is
            // valid for its length. The result is the full length needed, or negative on error.
            let n = unsafe {
                ffi::llama_chat_apply_template(
                    c_tmpl.as_ptr(),
                    msgs.as_ptr(),
                    msgs.len(),
                    add_assistant,
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len().min(i32::MAX as usize) as i32,
                )
            };
            if n < 0 {
                let shown: String = tmpl.chars().take(60).collect();
                return Err(LlamaError::new(format!(
                    "llama.cpp has no built-in chat template matching `{shown}`{}",
                    if tmpl.chars().count() > 60 { "..." } else { "" }
                )));
            }
            let n = n as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return String::from_utf8(buf).map_err(|_| {
                    LlamaError::new("llama.cpp's chat template produced invalid UTF-8")
                });
            }
            buf.resize(n, 0);
        }
        Err(LlamaError::new("llama_chat_apply_template kept growing"))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: contexts borrow the model, so none outlives this; freed exactly once.
        unsafe { ffi::llama_model_free(self.raw()) }
    }
}
