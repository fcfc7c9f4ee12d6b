//! Checks a model file ourselves (exists, GGUF magic and version, an architecture) and then has
//! llama.cpp load it, so bad input gets our message and llama.cpp's refusal gets its own words.

use crate::error::{CliError, Result};
use crate::gguf::{self, Header};
use crate::llama::{self, Model};
use std::path::Path;
use std::time::Instant;

pub fn header(path: &Path) -> Result<Header> {
    let h = gguf::read(path)?;
    if h.architecture().is_none() {
        return Err(CliError::bad_input(format!(
            "{} has no `general.architecture` in its GGUF metadata, so no model type can load it",
            path.display()
        )));
    }
    Ok(h)
}

/// Loads the model; returns it with the seconds the load took.
pub fn model(path: &Path, h: &Header, gpu_layers: i32, verbose: bool) -> Result<(Model, f64)> {
    llama::init(verbose);
    let t = Instant::now();
    match Model::load(path, gpu_layers) {
        Ok(m) => Ok((m, t.elapsed().as_secs_f64())),
        Err(e) => {
            let arch = h.architecture().unwrap_or("?");
            let unknown_arch = e
                .log
                .iter()
                .any(|l| l.contains("unknown model architecture"));
            let err = CliError::bad_input(format!(
                "{e}\n  (GGUF v{}, architecture `{arch}`)",
                h.version
            ));
            Err(if unknown_arch {
                err.hint(format!(
                    "this llama.cpp build does not know the architecture `{arch}`; use a model of a supported architecture"
                ))
            } else {
                err.hint("run with --verbose to see llama.cpp's full log")
            })
        }
    }
}
