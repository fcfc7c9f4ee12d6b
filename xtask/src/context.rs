//! The context every command receives: global options resolved once.

use crate::machine::Machine;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Ctx {
    pub cache_dir: PathBuf,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// Questions may be asked (a terminal on stdin, not CI, no `--yes`).
    pub interactive: bool,
    pub repo_root: PathBuf,
}

impl Ctx {
    pub fn new(cache_dir: Option<PathBuf>, json: bool, quiet: bool, verbose: u8, yes: bool) -> Ctx {
        Ctx {
            cache_dir: cache_dir.unwrap_or_else(crate::env::default_cache_dir),
            json,
            quiet,
            verbose,
            interactive: !yes && !crate::env::is_ci() && std::io::stdin().is_terminal(),
            repo_root: crate::env::repo_root(),
        }
    }

    /// Human progress lines go to stderr so stdout stays clean for data.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// The Machine to plan for: the recorded one from `--machine`, or a fresh probe.
    pub fn machine(&self, file: Option<&std::path::Path>) -> anyhow::Result<Machine> {
        match file {
            Some(f) => Ok(Machine::from_json_file(f)?),
            None => Ok(crate::probe::probe(&crate::probe::ProbeOptions::for_host(
                &self.cache_dir,
            ))),
        }
    }
}
