//! The sampler chain built from plain [`SamplingParams`]: logit bias, penalties (repetition,
//! presence, frequency), a GBNF grammar, then greedy at temperature 0, else top-k, top-p, min-p,
//! temperature and a seeded draw, in llama.cpp's usual order. Parameters are checked first: a
//! bad value is a [`ParamError`] naming the field and the limit, never a crash in llama.cpp.

use super::{Context, Token, Vocab};
use crate::ffi;
use std::ffi::CString;
use std::ptr::NonNull;

/// GBNF for "one JSON object" (`response_format: {"type": "json_object"}`). The pinned tree
/// (crate llama-cpp-sys-2 0.1.161, `llama.cpp/grammars/`) ships only the grammar README, no
/// `.gbnf` files, so this is llama.cpp's JSON grammar as the sibling crate llama-cpp-2 0.1.160
/// ships it (`src/grammar/json.gbnf`, MIT OR Apache-2.0), byte for byte: `json.gbnf` here.
pub const JSON_OBJECT_GBNF: &str = include_str!("json.gbnf");

/// Upper limits of the checks (larger values are surely mistakes).
pub const MAX_TEMPERATURE: f32 = 100.0;
pub const MAX_PENALTY: f32 = 100.0;
/// OpenAI's range for presence and frequency penalties is -2 to 2.
pub const MAX_PRESENCE_FREQUENCY: f32 = 2.0;
/// OpenAI's range for a logit bias is -100 to 100.
pub const MAX_LOGIT_BIAS: f32 = 100.0;

/// How to pick each next token. `Default` is `tunellama generate`'s defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (the most likely token after bias, penalties and grammar); 0 to 100.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 = off.
    pub top_k: i32,
    /// Keep the most likely tokens up to this cumulative probability; 0 to 1 (1 = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the best one; 0 to 1 (0 = off).
    pub min_p: f32,
    /// Divide (positive logits) by this for tokens among the last `penalty_last_n`; above 0 to
    /// 100 (1 = off).
    pub repeat_penalty: f32,
    /// Subtract this once from tokens that appeared; -2 to 2 (0 = off).
    pub presence_penalty: f32,
    /// Subtract this times the count of each token; -2 to 2 (0 = off).
    pub frequency_penalty: f32,
    /// How many recent tokens, prompt and generated alike, the penalties look at (0 = none). For
    /// "the whole context" give the context size: this tree's `llama_sampler_init_penalties`
    /// turns llama.cpp's usual -1 into 0 (penalties off), so -1 is refused rather than ignored.
    pub penalty_last_n: i32,
    /// Seed of the random draw: the same seed, model, prompt and parameters give the same text.
    pub seed: u32,
    /// (token, bias) added to the token's logit; -100 to 100, `f32::NEG_INFINITY` bans it.
    pub logit_bias: Vec<(Token, f32)>,
    /// A GBNF grammar (start rule `root`) the output must follow.
    pub grammar: Option<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 42,
            logit_bias: Vec::new(),
            grammar: None,
        }
    }
}

/// A sampling parameter out of range, or a grammar llama.cpp cannot parse.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The field, as named in [`SamplingParams`] (`temperature`, `grammar`, ...).
    pub field: &'static str,
    /// What is wrong, with the value and the limit.
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParamError {}

fn range(field: &'static str, v: f32, lo: f32, hi: f32, lo_open: bool) -> Result<(), ParamError> {
    let ok = v.is_finite() && v <= hi && if lo_open { v > lo } else { v >= lo };
    if ok {
        return Ok(());
    }
    let low = if lo_open { "more than" } else { "from" };
    Err(ParamError {
        field,
        message: format!("{field} {v} is out of range: give {low} {lo} to {hi}"),
    })
}

impl SamplingParams {
    /// Greedy decoding: temperature 0, no penalties.
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Output constrained to one JSON object ([`JSON_OBJECT_GBNF`]).
    pub fn json_object(mut self) -> SamplingParams {
        self.grammar = Some(JSON_OBJECT_GBNF.to_string());
        self
    }

    /// Checks every value against its range (and token ids against `n_vocab`); the grammar is
    /// checked when the sampler is built.
    pub fn validate(&self, n_vocab: i32) -> Result<(), ParamError> {
        range("temperature", self.temperature, 0.0, MAX_TEMPERATURE, false)?;
        if self.top_k < 0 {
            return Err(ParamError {
                field: "top_k",
                message: format!("top_k {} is out of range: give 0 (off) or more", self.top_k),
            });
        }
        range("top_p", self.top_p, 0.0, 1.0, false)?;
        range("min_p", self.min_p, 0.0, 1.0, false)?;
        range(
            "repeat_penalty",
            self.repeat_penalty,
            0.0,
            MAX_PENALTY,
            true,
        )?;
        let pf = MAX_PRESENCE_FREQUENCY;
        range("presence_penalty", self.presence_penalty, -pf, pf, false)?;
        range("frequency_penalty", self.frequency_penalty, -pf, pf, false)?;
        if self.penalty_last_n < 0 {
            return Err(ParamError {
                field: "penalty_last_n",
                message: format!(
                    "penalty_last_n {} is out of range: give 0 (off) or a token count (for the whole context, the context size; this llama.cpp tree would silently turn -1 into 0)",
                    self.penalty_last_n
                ),
            });
        }
        for &(t, b) in &self.logit_bias {
            if t < 0 || t >= n_vocab {
                return Err(ParamError {
                    field: "logit_bias",
                    message: format!(
                        "logit_bias names token {t}, outside the vocabulary (0 to {})",
                        n_vocab - 1
                    ),
                });
            }
            if !(b == f32::NEG_INFINITY || b.is_finite() && b.abs() <= MAX_LOGIT_BIAS) {
                return Err(ParamError {
                    field: "logit_bias",
                    message: format!(
                        "logit_bias {b} for token {t} is out of range: give -{MAX_LOGIT_BIAS} to {MAX_LOGIT_BIAS}"
                    ),
                });
            }
        }
        if let Some(g) = &self.grammar {
            if g.contains('\0') {
                return Err(ParamError {
                    field: "grammar",
                    message: "grammar contains a NUL byte".into(),
                });
            }
        }
        Ok(())
    }

    fn penalties_on(&self) -> bool {
        self.penalty_last_n != 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }
}

/// A sampler chain for one sequence. `Send`: it may move with its sequence between threads.
pub struct Sampler {
    chain: NonNull<ffi::llama_sampler>,
    /// The penalties sampler inside `chain` (owned by it, freed with it), fed the prompt by
    /// [`Sampler::accept_prompt`]; `None` when no penalty is on.
    penalties: Option<NonNull<ffi::llama_sampler>>,
    /// How many recent tokens the penalties look at (`penalty_last_n`).
    penalty_window: usize,
    seed: u32,
}

// SAFETY: the chain and its samplers are owned by this value alone and used through `&mut self`.
#[allow(unsafe_code)]
unsafe impl Send for Sampler {}

/// Frees a sampler not (yet) handed to a chain.
struct Owned(*mut ffi::llama_sampler);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a sampler we created and did not give away.
            unsafe { ffi::llama_sampler_free(self.0) }
        }
    }
}

impl Sampler {
    /// Builds the chain for `params` after checking them; a grammar llama.cpp cannot parse is a
    /// `ParamError` for `grammar` with llama.cpp's own reason.
    pub fn new(vocab: Vocab<'_>, params: &SamplingParams) -> Result<Sampler, ParamError> {
        let n_vocab = vocab.n_tokens();
        params.validate(n_vocab)?;
        // The grammar first: it is the one part that can fail.
        let grammar = match &params.grammar {
            None => None,
            Some(g) => {
                let text = CString::new(g.as_str()).expect("validated: no NUL");
                super::log::recent_errors();
                // SAFETY: valid vocab (borrowed from a live model); C strings valid for the
                // call. NULL means the grammar did not parse (llama.cpp logs why).
                let p = unsafe {
                    ffi::llama_sampler_init_grammar(vocab.raw(), text.as_ptr(), c"root".as_ptr())
                };
                if p.is_null() {
                    let log = super::log::recent_errors();
                    return Err(ParamError {
                        field: "grammar",
                        message: format!(
                            "the grammar is not valid GBNF with a `root` rule{}",
                            if log.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", log.join("; "))
                            }
                        ),
                    });
                }
                Some(Owned(p))
            }
        };
        // SAFETY: the chain takes ownership of every sampler added to it and frees them with
        // itself; the init functions return fresh objects; the bias array is copied.
        unsafe {
            let chain = ffi::llama_sampler_chain_init(ffi::llama_sampler_chain_default_params());
            let add = |s: *mut ffi::llama_sampler| ffi::llama_sampler_chain_add(chain, s);
            if !params.logit_bias.is_empty() {
                let bias: Vec<ffi::llama_logit_bias> = params
                    .logit_bias
                    .iter()
                    .map(|&(token, bias)| ffi::llama_logit_bias { token, bias })
                    .collect();
                add(ffi::llama_sampler_init_logit_bias(
                    n_vocab,
                    bias.len() as i32,
                    bias.as_ptr(),
                ));
            }
            let mut penalties = None;
            if params.penalties_on() {
                let p = ffi::llama_sampler_init_penalties(
                    n_vocab,
                    params.penalty_last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                );
                penalties = NonNull::new(p);
                add(p);
            }
            if let Some(mut g) = grammar {
                add(std::mem::replace(&mut g.0, std::ptr::null_mut()));
            }
            if params.temperature <= 0.0 {
                add(ffi::llama_sampler_init_greedy());
            } else {
                if params.top_k > 0 {
                    add(ffi::llama_sampler_init_top_k(params.top_k));
                }
                add(ffi::llama_sampler_init_top_p(params.top_p, 1));
                add(ffi::llama_sampler_init_min_p(params.min_p, 1));
                add(ffi::llama_sampler_init_temp(params.temperature));
                add(ffi::llama_sampler_init_dist(params.seed));
            }
            Ok(Sampler {
                chain: NonNull::new(chain).expect("llama_sampler_chain_init returned NULL"),
                penalties,
                penalty_window: usize::try_from(params.penalty_last_n).unwrap_or(usize::MAX),
                seed: params.seed,
            })
        }
    }

    /// Picks the next token from the logits of batch index `idx` of `ctx`'s last decode
    /// (`-1`: the last token with logits), and records it in the chain's state (penalties,
    /// grammar) as `accept` would: do not `accept` it again.
    pub fn sample(&mut self, ctx: &Context<'_>, idx: i32) -> Token {
        // SAFETY: valid context and chain; llama.cpp checks the index.
        unsafe { ffi::llama_sampler_sample(self.chain.as_ptr(), ctx.raw(), idx) }
    }

    /// Records a token chosen elsewhere (not by `sample`), e.g. a forced one, in the chain's
    /// state. With a grammar, the token must be one the grammar allows.
    pub fn accept(&mut self, token: Token) {
        // SAFETY: valid chain.
        unsafe { ffi::llama_sampler_accept(self.chain.as_ptr(), token) }
    }

    /// Feeds the prompt's tokens into the penalties' history only (not the grammar, which
    /// constrains the output alone), so repeat/presence/frequency penalties also see the
    /// prompt, as llama.cpp's server does: after a slot's prompt is processed it passes every
    /// prompt token to `common_sampler_accept(smpl, id, /*accept_grammar=*/ false)`
    /// (llama.cpp `tools/server/server-context.cpp`, "Process all prompt tokens through sampler
    /// system"; `tools/server/server.cpp` in older trees). Only the last `penalty_last_n`
    /// tokens can matter, so only those are fed. Without penalties this does nothing.
    pub fn accept_prompt(&mut self, prompt: &[Token]) {
        let Some(p) = self.penalties else { return };
        let tail = &prompt[prompt.len().saturating_sub(self.penalty_window)..];
        for &t in tail {
            // SAFETY: `p` is a sampler the live chain owns; it lives as long as `self`.
            unsafe { ffi::llama_sampler_accept(p.as_ptr(), t) }
        }
    }

    /// Whether the chain has a penalties sampler (some penalty is on).
    pub fn has_penalties(&self) -> bool {
        self.penalties.is_some()
    }

    /// Forgets the recorded tokens (penalty window, grammar state) to start a new text. The
    /// random generator keeps its state; make a new sampler to restart from the seed.
    pub fn reset(&mut self) {
        // SAFETY: valid chain.
        unsafe { ffi::llama_sampler_reset(self.chain.as_ptr()) }
    }

    /// The seed the draw was made with.
    pub fn seed(&self) -> u32 {
        self.seed
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: frees the chain and the samplers it owns, once.
        unsafe { ffi::llama_sampler_free(self.chain.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(p: SamplingParams) -> &'static str {
        p.validate(100).expect_err("out of range").field
    }

    #[test]
    fn defaults_and_greedy_and_json_object_are_valid() {
        assert_eq!(SamplingParams::default().validate(100), Ok(()));
        assert_eq!(SamplingParams::greedy().validate(100), Ok(()));
        let j = SamplingParams::greedy().json_object();
        assert!(j.grammar.as_deref().unwrap().starts_with("root"));
        assert_eq!(j.validate(100), Ok(()));
    }

    #[test]
    fn each_out_of_range_value_names_its_field_and_limit() {
        let d = SamplingParams::default;
        let e = SamplingParams {
            temperature: 101.0,
            ..d()
        }
        .validate(100)
        .unwrap_err();
        assert_eq!(e.field, "temperature");
        assert!(
            e.message.contains("101") && e.message.contains("100"),
            "{e}"
        );
        assert_eq!(
            field(SamplingParams {
                temperature: f32::INFINITY,
                ..d()
            }),
            "temperature"
        );
        assert_eq!(field(SamplingParams { top_k: -2, ..d() }), "top_k");
        assert_eq!(field(SamplingParams { top_p: -0.1, ..d() }), "top_p");
        assert_eq!(field(SamplingParams { min_p: 1.01, ..d() }), "min_p");
        assert_eq!(
            field(SamplingParams {
                repeat_penalty: 0.0,
                ..d()
            }),
            "repeat_penalty"
        );
        assert_eq!(
            field(SamplingParams {
                presence_penalty: -2.01,
                ..d()
            }),
            "presence_penalty"
        );
        assert_eq!(
            field(SamplingParams {
                frequency_penalty: f32::NAN,
                ..d()
            }),
            "frequency_penalty"
        );
        assert_eq!(
            field(SamplingParams {
                penalty_last_n: -1,
                ..d()
            }),
            "penalty_last_n"
        );
        assert_eq!(
            field(SamplingParams {
                logit_bias: vec![(100, 0.0)],
                ..d()
            }),
            "logit_bias"
        );
        assert_eq!(
            field(SamplingParams {
                logit_bias: vec![(-1, 0.0)],
                ..d()
            }),
            "logit_bias"
        );
        assert_eq!(
            field(SamplingParams {
                logit_bias: vec![(5, f32::NAN)],
                ..d()
            }),
            "logit_bias"
        );
        assert_eq!(
            field(SamplingParams {
                grammar: Some("a\0b".into()),
                ..d()
            }),
            "grammar"
        );
    }

    #[test]
    fn edges_of_each_range_are_accepted() {
        let d = SamplingParams::default;
        for p in [
            SamplingParams {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..d()
            },
            SamplingParams {
                temperature: MAX_TEMPERATURE,
                top_p: 0.0,
                min_p: 1.0,
                ..d()
            },
            SamplingParams {
                presence_penalty: 2.0,
                frequency_penalty: -2.0,
                penalty_last_n: 4096,
                ..d()
            },
            SamplingParams {
                logit_bias: vec![(0, -100.0), (99, 100.0), (5, f32::NEG_INFINITY)],
                ..d()
            },
        ] {
            assert_eq!(p.validate(100), Ok(()), "{p:?}");
        }
    }

    #[test]
    fn penalties_are_added_only_when_one_is_on() {
        assert!(!SamplingParams::default().penalties_on());
        assert!(SamplingParams {
            presence_penalty: 0.5,
            ..Default::default()
        }
        .penalties_on());
        assert!(!SamplingParams {
            repeat_penalty: 1.2,
            penalty_last_n: 0,
            ..Default::default()
        }
        .penalties_on());
    }
}
