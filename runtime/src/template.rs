//! `tunellama template`: renders a chat with a model's own chat template (or a given one) through
//! `chat_template`, printing the exact prompt bytes; the model is not loaded.

use std::io::{Read, Write};

use crate::chat_template::{ChatMessage, ChatTemplate, GgufChatTemplate, TemplateError};
use crate::cli::TemplateArgs;
use crate::error::{CliError, Result};
use crate::output::{print_json, quiet_pipe, Out};

#[derive(serde::Serialize)]
struct Rendered<'a> {
    /// `model` (its `tokenizer.chat_template`) or `file` (`--template`).
    template_source: &'static str,
    bos_token: &'a str,
    eos_token: &'a str,
    add_generation_prompt: bool,
    prompt: &'a str,
}

pub fn run(a: TemplateArgs) -> Result<()> {
    let meta = match &a.model {
        Some(m) => GgufChatTemplate::read(m)?,
        None => GgufChatTemplate::default(),
    };
    let (source, from) = match &a.template {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| {
                CliError::bad_input(format!("cannot read template file {}: {e}", p.display()))
            })?,
            "file",
        ),
        None => match meta.template.clone() {
            Some(t) => (t, "model"),
            None => {
                return Err(CliError::bad_input(format!(
                    "{} has no chat template (no `tokenizer.chat_template` metadata)",
                    a.model.as_deref().unwrap_or(std::path::Path::new("-")).display()
                ))
                .hint("pass one with --template FILE; the server falls back to llama.cpp's built-in templates for such models"))
            }
        },
    };
    let bos = a.bos_token.or(meta.bos_token).unwrap_or_default();
    let eos = a.eos_token.or(meta.eos_token).unwrap_or_default();
    let messages = read_messages(&a.messages)?;
    let t = ChatTemplate::new(&source, &bos, &eos).map_err(template_error)?;
    let prompt = t
        .render(&messages, a.add_generation_prompt)
        .map_err(template_error)?;
    if a.json {
        return print_json(&Rendered {
            template_source: from,
            bos_token: t.bos_token(),
            eos_token: t.eos_token(),
            add_generation_prompt: a.add_generation_prompt,
            prompt: &prompt,
        });
    }
    let mut o = Out::stdout();
    quiet_pipe(o.0.write_all(prompt.as_bytes()))?;
    o.flush()
}

fn template_error(e: TemplateError) -> CliError {
    let hint = e.remedy();
    let message = match &e {
        TemplateError::Raised { .. } => format!(
            "the chat template refuses these messages (raise_exception): {}",
            e.message()
        ),
        other => {
            let s = other.to_string();
            s.strip_suffix(&format!("; {hint}"))
                .unwrap_or(&s)
                .to_string()
        }
    };
    CliError::bad_input(message).hint(hint)
}

fn read_messages(path: &std::path::Path) -> Result<Vec<ChatMessage>> {
    let shown = path.display();
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            CliError::bad_input(format!("cannot read the messages from stdin: {e}"))
        })?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::bad_input(format!("cannot read messages file {shown}: {e}")))?
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::bad_input(format!(
            "messages ({shown}) are not a JSON array of {{\"role\", \"content\"}} strings: {e}"
        ))
    })
}
