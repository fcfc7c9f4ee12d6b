//! The runtime's one error type: a message with the facts in it, an optional `hint:` line, and
//! the exit code it maps to (2 bad input, 1 anything else; 3, the CPU refusal, never gets here).

use crate::llama::LlamaError;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    /// Input we can name as wrong (a flag value, a model file, a prompt): exit code 2.
    pub fn bad_input(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_BAD_INPUT,
            message: message.into(),
            hint: None,
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILURE,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<LlamaError> for CliError {
    fn from(e: LlamaError) -> Self {
        CliError::failure(e.to_string())
    }
}

/// stdout went away (e.g. `| head`): stop quietly, like other command-line tools.
impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::failure(format!("writing output: {e}"))
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
