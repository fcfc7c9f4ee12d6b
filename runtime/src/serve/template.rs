//! Chat messages to prompt text. The model's own `tokenizer.chat_template` is tried through
//! llama.cpp's built-in templates (`llama_chat_apply_template`, which recognises the common
//! templates by their markers); a model without one, or with one llama.cpp does not recognise,
//! gets ChatML. Which one is used is decided once at load and shown in the log, `/props` and
//! `/v1/models`.

use super::api::{ApiError, Message};
use super::scheduler::ModelInfo;
use crate::llama::serve_ops::apply_builtin_template;

/// How prompts are rendered for this model.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// The model's template, as llama.cpp's built-in support renders it.
    ModelBuiltin,
    /// ChatML, with the reason.
    Chatml(String),
}

impl Choice {
    pub fn describe(&self) -> String {
        match self {
            Choice::ModelBuiltin => "the model's tokenizer.chat_template, rendered by llama.cpp's built-in template support (llama_chat_apply_template)".into(),
            Choice::Chatml(why) => format!("llama.cpp's built-in chatml template ({why})"),
        }
    }
}

/// Decides once, with a trial render, which template this model gets.
pub fn choose(info: &ModelInfo) -> Choice {
    let Some(src) = info.chat_template.as_deref() else {
        return Choice::Chatml("the model has no tokenizer.chat_template".into());
    };
    let probe = [("user".to_string(), "hi".to_string())];
    match apply_builtin_template(Some(src), &probe, true) {
        Ok(_) => Choice::ModelBuiltin,
        Err(_) => Choice::Chatml(
            "llama.cpp's built-in templates do not recognise the model's tokenizer.chat_template"
                .into(),
        ),
    }
}

pub fn render(info: &ModelInfo, choice: &Choice, msgs: &[Message]) -> Result<String, ApiError> {
    let m: Vec<(String, String)> = msgs
        .iter()
        .map(|m| (m.role.clone(), m.content.clone()))
        .collect();
    let tmpl = match choice {
        Choice::ModelBuiltin => info.chat_template.as_deref(),
        Choice::Chatml(_) => None,
    };
    apply_builtin_template(tmpl, &m, true).map_err(|e| {
        ApiError::invalid(format!(
            "the chat template could not render these messages: {e}"
        ))
    })
}
