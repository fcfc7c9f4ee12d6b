//! The wire format: OpenAI-style requests checked field by field (a wrong type, a value out of
//! range, an unknown or unsupported field is a 400 naming the field and the limit, never ignored),
//! turned into a `GenRequest`; and the error body `{"error": {"message", "type", "code"}}`.

use crate::llama::{SamplingParams, JSON_OBJECT_GBNF};
use serde_json::{json, Map, Value};

/// An error answer: HTTP status, OpenAI error `type`, message, and extra fields for the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub extra: Vec<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable_error", message)
    }

    pub fn server(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "server_error", message)
    }

    pub fn body(&self) -> Value {
        let mut e = json!({"message": self.message, "type": self.kind, "code": self.status});
        for (k, v) in &self.extra {
            e[*k] = v.clone();
        }
        json!({ "error": e })
    }
}

/// Which endpoint a generation request came through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Chat,
    Completion,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A completion prompt: tokenized with the model's BOS.
    Text(String),
    Chat(Vec<Message>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub kind: Kind,
    pub model: Option<String>,
    pub prompt: Prompt,
    pub stream: bool,
    pub include_usage: bool,
    /// None: until the context is full.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub sampling: SamplingParams,
}

/// Most tokens one request may ask for (as `tunellama generate`).
pub const MAX_TOKENS: i64 = 1 << 20;
pub const MAX_STOPS: usize = 16;
pub const MAX_STOP_LEN: usize = 256;
pub const REPEAT_LAST_N: i32 = 64;

struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(field: &str, want: &str, v: &Value) -> ApiError {
    ApiError::invalid(format!("`{field}` must be {want}, got {}", type_name(v)))
}

impl<'a> Fields<'a> {
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.obj.get(k).filter(|v| !v.is_null())
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        self.get(k)
            .map(|v| v.as_bool().ok_or_else(|| wrong(k, "a boolean", v)))
            .transpose()
    }

    fn int(&self, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) if n.is_i64() => n.as_i64().unwrap(),
            Value::Number(n) if n.is_u64() => i64::MAX,
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(wrong(k, "an integer", v));
                }
                f.clamp(i64::MIN as f64, i64::MAX as f64) as i64
            }
            _ => return Err(wrong(k, "an integer", v)),
        };
        if !(lo..=hi).contains(&n) {
            return Err(ApiError::invalid(format!(
                "`{k}` is {n}; it must be between {lo} and {hi}"
            )));
        }
        Ok(Some(n))
    }

    fn float(&self, k: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let f = v.as_f64().ok_or_else(|| wrong(k, "a number", v))?;
        if !(lo..=hi).contains(&f) {
            return Err(ApiError::invalid(format!(
                "`{k}` is {f}; it must be between {lo} and {hi}"
            )));
        }
        Ok(Some(f as f32))
    }

    fn string(&self, k: &str) -> Result<Option<&'a str>, ApiError> {
        self.get(k)
            .map(|v| v.as_str().ok_or_else(|| wrong(k, "a string", v)))
            .transpose()
    }
}

/// Fields every generation request may carry, and what each endpoint adds.
const COMMON_FIELDS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "logit_bias",
    "grammar",
    "n",
    "user",
];
const CHAT_FIELDS: &[&str] = &["messages", "max_completion_tokens", "response_format"];
const COMPLETION_FIELDS: &[&str] = &["prompt"];

/// Parses and checks a request body for `kind`; `n_vocab` bounds `logit_bias` token ids.
pub fn parse(kind: Kind, body: &[u8], n_vocab: i32) -> Result<GenRequest, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::invalid(format!(
            "the request body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::invalid(format!(
            "the request body must be a JSON object, got {}",
            type_name(&v)
        ))
    })?;
    let own = match kind {
        Kind::Chat => CHAT_FIELDS,
        Kind::Completion => COMPLETION_FIELDS,
    };
    for k in obj.keys() {
        if !COMMON_FIELDS.contains(&k.as_str()) && !own.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!(
                "`{k}` is not supported by this server; it is refused rather than ignored"
            )));
        }
    }
    let f = Fields { obj };
    if let Some(n) = f.int("n", i64::MIN, i64::MAX)? {
        if n != 1 {
            return Err(ApiError::invalid(format!(
                "`n` is {n}; this server generates one choice per request (n = 1)"
            )));
        }
    }
    let stream = f.bool("stream")?.unwrap_or(false);
    let mut include_usage = false;
    if let Some(so) = f.get("stream_options") {
        let o = so
            .as_object()
            .ok_or_else(|| wrong("stream_options", "an object", so))?;
        for k in o.keys() {
            if k != "include_usage" {
                return Err(ApiError::invalid(format!(
                    "`stream_options.{k}` is not supported"
                )));
            }
        }
        include_usage = Fields { obj: o }.bool("include_usage")?.unwrap_or(false);
        if !stream {
            return Err(ApiError::invalid(
                "`stream_options` is only allowed when `stream` is true",
            ));
        }
    }
    let max_tokens = match (
        f.int("max_tokens", 1, MAX_TOKENS)?,
        f.int("max_completion_tokens", 1, MAX_TOKENS)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give `max_tokens` or `max_completion_tokens`, not both",
            ))
        }
        (a, b) => a.or(b).map(|n| n as usize),
    };
    let stop = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong("stop[]", "a string", s))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(wrong("stop", "a string or an array of strings", v)),
    };
    if stop.len() > MAX_STOPS {
        return Err(ApiError::invalid(format!(
            "`stop` has {} entries; at most {MAX_STOPS}",
            stop.len()
        )));
    }
    if let Some(s) = stop.iter().find(|s| s.is_empty() || s.len() > MAX_STOP_LEN) {
        return Err(ApiError::invalid(format!(
            "`stop` entry {s:?} is {} bytes; each must be 1 to {MAX_STOP_LEN} bytes",
            s.len()
        )));
    }
    let mut grammar = f.string("grammar")?.map(str::to_string);
    if let Some(rf) = f.get("response_format") {
        let t = rf
            .as_object()
            .and_then(|o| o.get("type"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::invalid("`response_format` must be an object with a string `type`")
            })?;
        match t {
            "text" => {}
            "json_object" => {
                if grammar.is_some() {
                    return Err(ApiError::invalid(
                        "give `grammar` or `response_format: json_object`, not both",
                    ));
                }
                grammar = Some(JSON_OBJECT_GBNF.to_string());
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "`response_format.type` {other:?} is not supported; use \"text\" or \"json_object\""
                )))
            }
        }
    }
    let mut logit_bias = Vec::new();
    if let Some(lb) = f.get("logit_bias") {
        let o = lb
            .as_object()
            .ok_or_else(|| wrong("logit_bias", "an object of token id → bias", lb))?;
        for (k, b) in o {
            let t: i32 = k
                .parse()
                .ok()
                .filter(|t| (0..n_vocab).contains(t))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`logit_bias` key {k:?} is not a token id of this model (0 to {})",
                        n_vocab - 1
                    ))
                })?;
            let b = b
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`logit_bias[{k}]` must be a number between -100 and 100"
                    ))
                })?;
            logit_bias.push((t, b as f32));
        }
    }
    let sampling = SamplingParams {
        temperature: f.float("temperature", 0.0, 2.0)?.unwrap_or(0.8),
        top_k: f.int("top_k", 0, i64::from(n_vocab.max(1)))?.unwrap_or(40) as i32,
        top_p: f.float("top_p", 0.0, 1.0)?.unwrap_or(0.95),
        min_p: f.float("min_p", 0.0, 1.0)?.unwrap_or(0.05),
        repeat_penalty: f.float("repeat_penalty", 0.0, 10.0)?.unwrap_or(1.0),
        presence_penalty: f.float("presence_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        frequency_penalty: f.float("frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        penalty_last_n: REPEAT_LAST_N,
        seed: f
            .int("seed", i64::MIN, i64::MAX)?
            .map(|s| s as u64 as u32)
            .unwrap_or_else(random_seed),
        logit_bias,
        grammar,
    };
    if sampling.repeat_penalty == 0.0 {
        return Err(ApiError::invalid(
            "`repeat_penalty` must be above 0 (1 = off)",
        ));
    }
    let prompt = match kind {
        Kind::Chat => Prompt::Chat(messages(f.get("messages"))?),
        Kind::Completion => Prompt::Text(completion_prompt(f.get("prompt"))?),
    };
    Ok(GenRequest {
        kind,
        model: f.string("model")?.map(str::to_string),
        prompt,
        stream,
        include_usage,
        max_tokens,
        stop,
        sampling,
    })
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

fn completion_prompt(v: Option<&Value>) -> Result<String, ApiError> {
    match v {
        None => Err(ApiError::invalid("`prompt` is required")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(a[0].as_str().unwrap().to_string())
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Err(ApiError::invalid(format!(
            "`prompt` holds {} prompts; this server takes one per request",
            a.len()
        ))),
        Some(v) => Err(wrong("prompt", "a string", v)),
    }
}

const ROLES: &[&str] = &["system", "developer", "user", "assistant"];

fn messages(v: Option<&Value>) -> Result<Vec<Message>, ApiError> {
    let a = match v {
        None => return Err(ApiError::invalid("`messages` is required")),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong("messages", "an array", v)),
    };
    if a.is_empty() {
        return Err(ApiError::invalid(
            "`messages` is empty; give at least one message",
        ));
    }
    a.iter()
        .enumerate()
        .map(|(i, m)| {
            let o = m
                .as_object()
                .ok_or_else(|| wrong(&format!("messages[{i}]"), "an object", m))?;
            for k in o.keys() {
                if !["role", "content", "name"].contains(&k.as_str()) {
                    return Err(ApiError::invalid(format!(
                        "`messages[{i}].{k}` is not supported by this server"
                    )));
                }
            }
            let role = match o.get("role") {
                Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {
                    if r == "developer" {
                        "system".to_string()
                    } else {
                        r.clone()
                    }
                }
                Some(Value::String(r)) => {
                    return Err(ApiError::invalid(format!(
                        "`messages[{i}].role` {r:?} is not one of {}",
                        ROLES.join(", ")
                    )))
                }
                Some(v) => return Err(wrong(&format!("messages[{i}].role"), "a string", v)),
                None => {
                    return Err(ApiError::invalid(format!(
                        "`messages[{i}].role` is required"
                    )))
                }
            };
            let content = match o.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut s = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.get("type").and_then(Value::as_str), p.get("text")) {
                            (Some("text"), Some(Value::String(t))) => s.push_str(t),
                            _ => {
                                return Err(ApiError::invalid(format!(
                                    "`messages[{i}].content[{j}]` is not a text part; this server takes text only"
                                )))
                            }
                        }
                    }
                    s
                }
                Some(v) => {
                    return Err(wrong(
                        &format!("messages[{i}].content"),
                        "a string or an array of text parts",
                        v,
                    ))
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "`messages[{i}].content` is required"
                    )))
                }
            };
            Ok(Message { role, content })
        })
        .collect()
}

/// `/tokenize` body: `{"content": "...", "add_special": bool}`.
pub fn parse_tokenize(body: &[u8]) -> Result<(String, bool), ApiError> {
    let v = json_object(body)?;
    let f = Fields { obj: &v };
    let content = f
        .string("content")?
        .ok_or_else(|| ApiError::invalid("`content` is required"))?;
    Ok((content.to_string(), f.bool("add_special")?.unwrap_or(false)))
}

/// `/detokenize` body: `{"tokens": [ids]}` with ids below `n_vocab`.
pub fn parse_detokenize(body: &[u8], n_vocab: i32) -> Result<Vec<i32>, ApiError> {
    let v = json_object(body)?;
    let a = match v.get("tokens") {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong("tokens", "an array of token ids", v)),
        None => return Err(ApiError::invalid("`tokens` is required")),
    };
    a.iter()
        .map(|t| {
            t.as_i64()
                .filter(|t| (0..i64::from(n_vocab)).contains(t))
                .map(|t| t as i32)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`tokens` entry {t} is not a token id of this model (0 to {})",
                        n_vocab - 1
                    ))
                })
        })
        .collect()
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("the request body is not valid UTF-8"))?;
    match serde_json::from_str(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(v) => Err(ApiError::invalid(format!(
            "the request body must be a JSON object, got {}",
            type_name(&v)
        ))),
        Err(e) => Err(ApiError::invalid(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<GenRequest, ApiError> {
        parse(Kind::Chat, body.as_bytes(), 259)
    }

    #[test]
    fn a_minimal_chat_request_gets_the_defaults() {
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(
            r.prompt,
            Prompt::Chat(vec![Message {
                role: "user".into(),
                content: "hi".into()
            }])
        );
        assert!(!r.stream);
        assert_eq!(r.max_tokens, None);
        assert_eq!(r.sampling.temperature, 0.8);
    }

    #[test]
    fn bad_fields_are_named_with_their_limit() {
        let e =
            chat(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":-1}"#).unwrap_err();
        assert!(e.message.contains("`max_tokens` is -1"), "{}", e.message);
        let e =
            chat(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":"5"}"#).unwrap_err();
        assert!(
            e.message
                .contains("`max_tokens` must be an integer, got a string"),
            "{}",
            e.message
        );
        let e = chat(r#"{"messages":[{"role":"wizard","content":"hi"}]}"#).unwrap_err();
        assert!(e.message.contains("\"wizard\""), "{}", e.message);
        let e = chat(r#"{"messages":[]}"#).unwrap_err();
        assert!(e.message.contains("`messages` is empty"), "{}", e.message);
        let e = chat(r#"{"messages":[{"role":"user","content":"hi"}],"n":2}"#).unwrap_err();
        assert!(e.message.contains("`n` is 2"), "{}", e.message);
        let e = chat(r#"{"messages":[{"role":"user","content":"hi"}],"tools":[]}"#).unwrap_err();
        assert!(
            e.message.contains("`tools` is not supported"),
            "{}",
            e.message
        );
        let e = parse(Kind::Chat, b"{\"messages\":\xff}", 10).unwrap_err();
        assert!(e.message.contains("not valid UTF-8"), "{}", e.message);
        assert_eq!(e.status, 400);
    }

    #[test]
    fn json_object_turns_into_a_grammar_and_stop_takes_a_string_or_a_list() {
        let r = chat(r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"},"stop":"x"}"#).unwrap();
        assert_eq!(r.sampling.grammar.as_deref(), Some(JSON_OBJECT_GBNF));
        assert_eq!(r.stop, vec!["x"]);
        let r = parse(
            Kind::Completion,
            br#"{"prompt":"a","stop":["x","y"],"seed":7}"#,
            10,
        )
        .unwrap();
        assert_eq!(r.stop, vec!["x", "y"]);
        assert_eq!(r.sampling.seed, 7);
    }
}
