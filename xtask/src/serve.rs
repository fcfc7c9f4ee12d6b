//! `cargo xtask serve --model NAME|PATH [-- ARGS]`: the current build's `tunellama serve` on a
//! GGUF file, or on a catalog model by name (its stored, verified file), so scripts need not know
//! where either lives.

use crate::context::Ctx;
use crate::models::catalog::Catalog;
use crate::models::store::{Store, Stored};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0} does not exist")]
    NoFile(PathBuf),
    #[error("`{0}` is neither a file nor a model of the catalog")]
    Unknown(String),
    #[error("the catalog model {0} is not stored yet")]
    NotStored(String),
}

impl crate::error::Hint for ServeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ServeError::NoFile(_) => "give the path of a GGUF model file".into(),
            ServeError::Unknown(_) => {
                "`cargo xtask models list` shows the catalog's names; or give a GGUF file's path"
                    .into()
            }
            ServeError::NotStored(n) => format!("fetch it with `cargo xtask models fetch {n}`"),
        })
    }
}

/// A path (anything that exists, or looks like a path) or a catalog name → the model file.
pub fn resolve(ctx: &Ctx, model: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(model);
    if p.is_file() {
        return Ok(p);
    }
    if model.contains(std::path::MAIN_SEPARATOR) || model.contains('/') || model.ends_with(".gguf")
    {
        return Err(ServeError::NoFile(p).into());
    }
    let cat = Catalog::load_default(&ctx.repo_root, &[])?;
    let m = cat
        .get(model)
        .ok_or_else(|| ServeError::Unknown(model.to_string()))?;
    let store = Store::new(&ctx.cache_dir);
    if store.status(m) != Stored::Present {
        return Err(ServeError::NotStored(m.name.clone()).into());
    }
    Ok(store.link(m)?)
}

pub fn run(ctx: &Ctx, a: &ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let model = resolve(ctx, &a.model)?;
    ctx.info(format!("serving {}", model.display()));
    let mut args: Vec<OsString> = vec!["serve".into(), "--model".into(), model.into()];
    args.extend(a.args.iter().cloned());
    // Ctrl-C (or SIGTERM to the process group) is for the server: it stops gracefully and we
    // pass its exit code on, instead of dying first. The server installs its own handlers, so
    // the ignored disposition it inherits does not matter to it.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    crate::status::run_runtime(ctx, &args)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A GGUF model file, or a catalog model's name (its stored file)
    #[arg(short = 'm', long, value_name = "NAME|PATH")]
    pub model: String,
    /// More `tunellama serve` flags, after `--` (`-- --port 9000 --parallel 2`)
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}
