//! Renders a model's own chat template (`tokenizer.chat_template` in the GGUF metadata) the way
//! Hugging Face's `apply_chat_template` does, with minijinja plus Python-compatible methods.
//!
//! What transformers sets up (`transformers/utils/chat_template_utils.py`, `_compile_jinja_template`
//! and `render`), and what this module does to match it:
//! - a jinja2 `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[...,
//!   loopcontrols])`: minijinja with trim_blocks, lstrip_blocks, `loop_controls`, no auto-escape,
//!   and jinja2's default of dropping one trailing newline of the template;
//! - filter `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` =
//!   Python's `json.dumps` with those arguments: [`py_json`] writes the same bytes (`", "` and
//!   `": "` separators, non-ASCII kept, insertion order);
//! - globals `raise_exception(message)` (→ [`TemplateError::Raised`]) and `strftime_now(format)`
//!   (the current time through `strftime`; here always UTC, where transformers uses local time: the
//!   two agree on machines whose zone is UTC);
//! - variables `messages`, `tools` (None), `documents` (None), `add_generation_prompt`, and the
//!   tokenizer's special tokens (`bos_token`, `eos_token`);
//! - Python's string and dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`, ...)
//!   through `minijinja_contrib::pycompat`; `.strip()`/`.lstrip()`/`.rstrip()` without arguments
//!   and the `trim` filter strip what Python's `str.isspace` calls whitespace.
//!
//! Not supported: transformers' `{% generation %}` tag (assistant-token masks for training).
//! Known difference: a loop over `none` (a tool-use template's `{% for tool in tools %}` when no
//! tools are given) is an empty loop here, where jinja2 raises `TypeError: 'NoneType' object is not
//! iterable`; every other render of llama.cpp's `models/templates/` (c392e5094) with the test
//! conversations was byte-identical to jinja2's.

use std::fmt::{self, Write as _};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// One chat message as the OpenAI API and Hugging Face templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    #[allow(dead_code)] // API for the server and library (issue 13)
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

const NAME: &str = "tokenizer.chat_template";

/// A compiled chat template with the special tokens it renders with.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The template is not valid Jinja (or uses syntax minijinja lacks).
    Syntax {
        message: String,
        line: Option<usize>,
        col: Option<usize>,
    },
    /// The template called `raise_exception(message)`: it refuses these messages (e.g. roles that
    /// do not alternate, a system message the model does not support). Bad input, not a bug.
    Raised { message: String },
    /// Rendering failed for another reason (an undefined method, a type error, ...).
    Render {
        message: String,
        line: Option<usize>,
        col: Option<usize>,
    },
}

impl TemplateError {
    /// What to do about it, one line.
    pub fn remedy(&self) -> &'static str {
        match self {
            TemplateError::Syntax { .. } | TemplateError::Render { .. } => {
                "the model's chat template cannot be rendered here; use llama.cpp's built-in template for the model (the fallback) or pass a template that Hugging Face's jinja2 renders"
            }
            TemplateError::Raised { .. } => {
                "change the messages as the template asks (e.g. alternate user/assistant turns, or fold the system message into the first user message)"
            }
        }
    }

    pub fn message(&self) -> &str {
        match self {
            TemplateError::Syntax { message, .. }
            | TemplateError::Raised { message }
            | TemplateError::Render { message, .. } => message,
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |line: &Option<usize>, col: &Option<usize>| match (line, col) {
            (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
            (Some(l), None) => format!(" at line {l}"),
            _ => String::new(),
        };
        match self {
            TemplateError::Syntax { message, line, col } => write!(
                f,
                "the chat template ({NAME}) does not compile{}: {message}",
                at(line, col)
            )?,
            TemplateError::Raised { message } => write!(
                f,
                "the chat template refuses these messages (raise_exception): {message}"
            )?,
            TemplateError::Render { message, line, col } => write!(
                f,
                "rendering the chat template ({NAME}) failed{}: {message}",
                at(line, col)
            )?,
        }
        write!(f, "; {}", self.remedy())
    }
}

impl std::error::Error for TemplateError {}

/// The payload `raise_exception` attaches to its minijinja error, found again in [`convert`].
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template) with the tokenizer's BOS and EOS token text.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(py_method);
        env.add_filter("tojson", tojson);
        env.add_filter("trim", trim);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| convert(&e, source, true))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The prompt for `messages`; with `add_generation_prompt` it ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| convert(&e, &self.source, true))?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            tools => Value::from(()),
            documents => Value::from(()),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        tmpl.render(ctx)
            .map_err(|e| convert(&e, &self.source, false))
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }
}

/// What a GGUF file says about its chat template, read with our own GGUF reader (no model load).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GgufChatTemplate {
    /// `tokenizer.chat_template`; `None` when the model has none (use llama.cpp's built-in
    /// templates then).
    pub template: Option<String>,
    /// `tokenizer.ggml.bos_token_id` and that token's text.
    pub bos_token_id: Option<u64>,
    pub bos_token: Option<String>,
    /// `tokenizer.ggml.eos_token_id` and that token's text.
    pub eos_token_id: Option<u64>,
    pub eos_token: Option<String>,
}

impl GgufChatTemplate {
    /// Reads `path`'s header and vocabulary; errors are bad input naming the file.
    pub fn read(path: &std::path::Path) -> crate::error::Result<Self> {
        let h = crate::gguf::read_with_tokens(path)?;
        Ok(Self::from_header(&h))
    }

    pub fn from_header(h: &crate::gguf::Header) -> Self {
        let token = |key: &str| {
            let id = h.ints.get(key).copied();
            let text = id.and_then(|i| {
                h.tokens
                    .as_ref()
                    .and_then(|t| t.get(usize::try_from(i).ok()?).cloned())
            });
            (id, text)
        };
        let (bos_token_id, bos_token) = token("tokenizer.ggml.bos_token_id");
        let (eos_token_id, eos_token) = token("tokenizer.ggml.eos_token_id");
        GgufChatTemplate {
            template: h.strings.get(NAME).cloned(),
            bos_token_id,
            bos_token,
            eos_token_id,
            eos_token,
        }
    }

    /// The compiled template, `None` when the model has none; a missing BOS/EOS token renders
    /// as the empty string (transformers leaves such a variable undefined, which prints empty).
    #[allow(dead_code)] // API for the server and library (issue 13)
    pub fn compile(&self) -> Result<Option<ChatTemplate>, TemplateError> {
        self.template
            .as_deref()
            .map(|src| {
                ChatTemplate::new(
                    src,
                    self.bos_token.as_deref().unwrap_or(""),
                    self.eos_token.as_deref().unwrap_or(""),
                )
            })
            .transpose()
    }
}

/// minijinja's error → ours, with the line and column where minijinja knows them.
fn convert(e: &Error, source: &str, compiling: bool) -> TemplateError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return TemplateError::Raised {
                message: r.0.clone(),
            };
        }
        cur = err.source();
    }
    let message = match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    };
    let line = e.line();
    let col = match e.range() {
        Some(r) => source.get(..r.start).map(|before| {
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            before[start..].chars().count() + 1
        }),
        _ => None,
    };
    if compiling || e.kind() == ErrorKind::SyntaxError {
        TemplateError::Syntax { message, line, col }
    } else {
        TemplateError::Render { message, line, col }
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// jinja2's `trim(value, chars=None)`: Python's `str.strip(chars)`.
fn trim(s: &str, chars: Option<&str>) -> String {
    match chars {
        Some(cs) => s.trim_matches(|c| cs.contains(c)).to_string(),
        None => s.trim_matches(py_space).to_string(),
    }
}

/// pycompat's methods, with Python's whitespace for argument-less `strip`/`lstrip`/`rstrip`.
fn py_method(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(s), true) = (value.as_str(), args.is_empty()) {
        match method {
            "strip" => return Ok(Value::from(s.trim_matches(py_space))),
            "lstrip" => return Ok(Value::from(s.trim_start_matches(py_space))),
            "rstrip" => return Ok(Value::from(s.trim_end_matches(py_space))),
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let indent = kwargs.get::<Option<Value>>("indent")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators = kwargs.get::<Option<Vec<String>>>("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                let n = i64::try_from(v.clone()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be a number or a string",
                    )
                })?;
                Some(" ".repeat(n.max(0) as usize))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item, key)",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        ensure_ascii,
        indent,
        sort_keys,
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    py_json(value, &opts, 0, &mut out)?;
    Ok(Value::from(out))
}

/// How [`py_json`] writes, as Python's `json.dumps` arguments.
pub struct JsonOpts {
    pub ensure_ascii: bool,
    pub indent: Option<String>,
    pub sort_keys: bool,
    pub item_sep: String,
    pub key_sep: String,
}

/// Writes `value` as Python's `json.dumps` does with `opts`.
pub fn py_json(
    value: &Value,
    opts: &JsonOpts,
    level: usize,
    out: &mut String,
) -> Result<(), Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match value.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: an undefined value is not JSON serializable",
            ))
        }
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(f) = f64::try_from(value.clone())
                .ok()
                .filter(|_| !value.is_integer())
            {
                out.push_str(&py_float(f));
            } else {
                out.push_str(&value.to_string());
            }
        }
        ValueKind::String | ValueKind::Bytes => {
            json_string(value.as_str().unwrap_or_default(), opts.ensure_ascii, out)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, level + 1);
                py_json(item, opts, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map | ValueKind::Plain => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, level + 1);
                let k = match key.as_str() {
                    Some(s) => s.to_string(),
                    None if key.is_none() => "null".to_string(),
                    None => key.to_string(),
                };
                json_string(&k, opts.ensure_ascii, out);
                out.push_str(&opts.key_sep);
                py_json(&value.get_item(key)?, opts, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        k => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {k} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

/// Python's `json.dumps` string: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
/// characters as lowercase `\u00XX`; with `ensure_ascii`, everything past ASCII as `\uXXXX`
/// (surrogate pairs beyond the BMP).
fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` as `json.dumps` writes it: shortest round-trip digits, exponent form
/// below 1e-4 and from 1e16 (`1e-05`, `1e+16`), `NaN`, `Infinity`.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mant}e{sign}{digits:0>2}");
    }
    format!("{f:?}")
}

/// transformers' `strftime_now(format)`: the current time (UTC here) through C's `strftime`
/// directives.
fn strftime_now(format: &str) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime(format, secs)))
}

/// `strftime` in the C locale for a UTC time: `%a %A %b %B %d %e %H %I %j %m %M %p %S %y %Y %Z
/// %z %%` and glibc's `%-d`-style no-padding flag; other directives are copied as written.
pub fn strftime(format: &str, unix_secs: i64) -> String {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut it = format.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = it.peek() == Some(&'-');
        if no_pad {
            it.next();
        }
        let num = |out: &mut String, v: i64, width: usize| {
            if no_pad {
                let _ = write!(out, "{v}");
            } else {
                let _ = write!(out, "{v:0width$}");
            }
        };
        match it.next() {
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('b') | Some('h') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('d') => num(&mut out, d, 2),
            Some('e') => {
                let _ = if no_pad {
                    write!(out, "{d}")
                } else {
                    write!(out, "{d:>2}")
                };
            }
            Some('H') => num(&mut out, hh, 2),
            Some('I') => num(&mut out, (hh + 11) % 12 + 1, 2),
            Some('j') => num(&mut out, yday, 3),
            Some('m') => num(&mut out, m, 2),
            Some('M') => num(&mut out, mm, 2),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('S') => num(&mut out, ss, 2),
            Some('y') => num(&mut out, y.rem_euclid(100), 2),
            Some('Y') => {
                let _ = write!(out, "{y}");
            }
            Some('Z') => out.push_str("UTC"),
            Some('z') => out.push_str("+0000"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chatml() -> ChatTemplate {
        ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
            "",
            "<|im_end|>",
        )
        .unwrap()
    }

    #[test]
    fn chatml_renders_turns_and_the_generation_prompt() {
        let m = [ChatMessage::new("user", "hi")];
        assert_eq!(
            chatml().render(&m, true).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            chatml().render(&m, false).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn raise_exception_becomes_raised_with_the_templates_message() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], false).unwrap_err();
        assert_eq!(
            e,
            TemplateError::Raised {
                message: "roles must alternate".into()
            }
        );
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let e = ChatTemplate::new("ok\n{% if %}", "", "").unwrap_err();
        match &e {
            TemplateError::Syntax { line, .. } => assert_eq!(*line, Some(2), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn a_template_can_be_shared_between_server_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<ChatTemplate>();
        shared::<TemplateError>();
    }

    #[test]
    fn tojson_writes_what_pythons_json_dumps_writes() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'é\"\u{1}' | tojson(ensure_ascii=true) }}|{{ {} | tojson }}",
            "",
            "",
        )
        .unwrap();
        let env = &t.env;
        let out = env
            .get_template(NAME)
            .unwrap()
            .render(minijinja::context! { x => serde_json_like() })
            .unwrap();
        // json.dumps({"b": [1, 2.5, None, True], "a": "<é>"}) and with indent=2, in Python 3.
        assert_eq!(
            out,
            "{\"b\": [1, 2.5, null, true], \"a\": \"<é>\"}|{\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"a\": \"<é>\"\n}|\"\\u00e9\\\"\\u0001\"|{}"
        );
    }

    fn serde_json_like() -> Value {
        Value::from_iter([
            (
                "b",
                Value::from(vec![
                    Value::from(1),
                    Value::from(2.5),
                    Value::from(()),
                    Value::from(true),
                ]),
            ),
            ("a", Value::from("<é>")),
        ])
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26 00:00:00 UTC was a Friday (the date Llama 3.1 templates default to).
        assert_eq!(strftime("%d %b %Y", 1_721_952_000), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %-d %j %H:%M:%S %p", 1_721_952_000 + 13 * 3600 + 61),
            "Friday July 26 208 13:01:01 PM"
        );
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }

    #[test]
    fn py_float_matches_python_repr() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.1), "0.1");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e-7), "1.5e-07");
        assert_eq!(py_float(0.0001), "0.0001");
    }
}
