//! Chat messages to prompt text. The model's own `tokenizer.chat_template` is rendered as Hugging
//! Face does (`crate::chat_template`, Jinja); a model without one, or whose template does not
//! compile or render, gets llama.cpp's built-in templates (`llama_chat_apply_template`, which
//! recognise common templates by their markers), and ChatML when those do not know it either.
//! Which one is used is decided once at load and shown in the log, `/props` and `/v1/models`; a
//! request whose messages the model's template refuses falls back the same way, logged.

use super::api::{ApiError, Message};
use super::scheduler::ModelInfo;
use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::llama::Model;

/// How prompts are rendered for this model.
pub enum Choice {
    /// The model's template, rendered as Hugging Face does.
    Jinja(Box<ChatTemplate>),
    /// The model's template, as llama.cpp's built-in support renders it, and why not Jinja.
    ModelBuiltin(String),
    /// ChatML, with the reason.
    Chatml(String),
}

impl Choice {
    pub fn describe(&self) -> String {
        match self {
            Choice::Jinja(_) => "the model's own tokenizer.chat_template (Jinja, rendered as Hugging Face does)".into(),
            Choice::ModelBuiltin(why) => format!("the model's tokenizer.chat_template as llama.cpp's built-in templates render it ({why})"),
            Choice::Chatml(why) => format!("llama.cpp's built-in chatml template ({why})"),
        }
    }
}

fn probe() -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: "user".into(),
        content: "hi".into(),
    }]
}

/// Decides once, with a trial render, which template this model gets.
pub fn choose(model: &Model, info: &ModelInfo) -> Choice {
    let Some(src) = info.chat_template.as_deref() else {
        return Choice::Chatml("the model has no tokenizer.chat_template".into());
    };
    let jinja = ChatTemplate::new(src, &info.bos_token, &info.eos_token)
        .and_then(|t| t.render(&probe(), true).map(|_| t));
    let why = match jinja {
        Ok(t) => return Choice::Jinja(Box::new(t)),
        Err(e) => format!("the Jinja template failed: {}", e.message()),
    };
    match model.apply_builtin_chat_template(Some(src), &[("user", "hi")], true) {
        Ok(_) => Choice::ModelBuiltin(why),
        Err(_) => Choice::Chatml(format!(
            "{why}; llama.cpp's built-in templates do not recognise it either"
        )),
    }
}

fn builtin(model: &Model, choice: &Choice, msgs: &[Message]) -> Result<String, ApiError> {
    let m: Vec<(&str, &str)> = msgs
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    // The model's own template as llama.cpp knows it, else ChatML.
    let first = match choice {
        Choice::Chatml(_) => Some("chatml"),
        _ => None,
    };
    model
        .apply_builtin_chat_template(first, &m, true)
        .or_else(|_| model.apply_builtin_chat_template(Some("chatml"), &m, true))
        .map_err(|e| {
            ApiError::invalid(format!(
                "the chat template could not render these messages: {e}"
            ))
        })
}

/// The prompt, and whether tokenizing it should add the model's BOS (not when the rendered text
/// already starts with it).
pub fn render(
    model: &Model,
    info: &ModelInfo,
    choice: &Choice,
    msgs: &[Message],
) -> Result<(String, bool), ApiError> {
    let text = match choice {
        Choice::Jinja(t) => {
            let m: Vec<ChatMessage> = msgs
                .iter()
                .map(|m| ChatMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            match t.render(&m, true) {
                Ok(p) => p,
                Err(e) => {
                    log!(
                        "serve: the model's chat template refused a request ({}); using llama.cpp's built-in template for it",
                        e.message()
                    );
                    builtin(model, choice, msgs)?
                }
            }
        }
        Choice::ModelBuiltin(_) | Choice::Chatml(_) => builtin(model, choice, msgs)?,
    };
    let add_bos = info.bos_token.is_empty() || !text.starts_with(&info.bos_token);
    Ok((text, add_bos))
}
