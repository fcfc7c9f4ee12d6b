//! Checks a model file ourselves (exists, GGUF magic and version, an architecture) and then has
//! llama.cpp load it, so bad input gets our message and llama.cpp's refusal gets its own words.
//! [`open`] is the library's front door: the same checks plus the build's tuned defaults.

use crate::error::{CliError, Result};
use crate::gguf::{self, Header};
use crate::llama::{self, Model};
use crate::settings;
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

/// GPU layers to offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    All,
    /// As many as fit in 90% of the GPU devices' free memory, read now.
    Auto,
    Count(u32),
}

/// How [`open`] loads a model; `Default` takes every tuned default of the build.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// `None`: the tuned default (`tunellama info`).
    pub gpu_layers: Option<GpuLayers>,
    /// `None`: the tuned default, capped at the model's trained context and at RAM.
    pub ctx_size: Option<u32>,
    /// `None`: the tuned default.
    pub threads: Option<u32>,
    /// Let llama.cpp's own log through to stderr (otherwise kept for error messages only).
    pub verbose: bool,
}

/// Checks and loads a GGUF model with the build's tuned defaults for whatever `o` leaves
/// unset (threads, context size, GPU layers: `model.tuned` holds them with their reasons, and
/// [`ContextOptions::tuned`](llama::ContextOptions::tuned) uses them). Bad input (a missing
/// or invalid file, a value out of range) is an error with exit code 2 (`Error::code`).
pub fn open(path: &Path, o: &ModelOptions) -> Result<Model> {
    let threads = settings::threads(o.threads.map(i64::from))?;
    let h = header(path)?;
    let ctx_size = settings::ctx_size(o.ctx_size.map(i64::from), &h)?;
    let gpu_flag = o.gpu_layers.map(|g| match g {
        GpuLayers::All => "all".to_string(),
        GpuLayers::Auto => "auto".to_string(),
        GpuLayers::Count(n) => n.to_string(),
    });
    let gpu = settings::gpu_layers(gpu_flag.as_deref(), &h)?;
    let (mut m, _) = model(path, &h, gpu.value, o.verbose)?;
    m.tuned = llama::Tuned {
        threads,
        ctx_size,
        gpu_layers: gpu,
    };
    Ok(m)
}
