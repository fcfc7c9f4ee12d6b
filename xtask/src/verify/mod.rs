//! Verify: prove an install prefix is usable, not just present: compile and link a small C program
//! against it with exactly the link description, run it, and read back what llama.cpp says it
//! was compiled for (`llama_print_system_info`).

use crate::build::{LinkDescription, LINK_FILE};
pub mod emulated;
pub mod features;
pub mod prefix;
pub mod runtime;
pub mod wasm;

use crate::cmd::Cmd;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

const SMOKE_C: &str = r#"#include <stdio.h>
#include "llama.h"
int main(void) {
    llama_backend_init();
    printf("%s\n", llama_print_system_info());
    llama_backend_free();
    return 0;
}
"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmokeReport {
    /// `llama_print_system_info()` of the linked build, e.g. `CPU : SSE3 = 1 | AVX512 = 1 | ...`.
    pub system_info: String,
    /// The link line that worked (what the runtime's build script will do).
    pub link_command: String,
}

impl SmokeReport {
    /// `NAME = 1` entries of the system info.
    pub fn enabled_features(&self) -> Vec<String> {
        features::enabled(&self.system_info)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read the link description {path}: {message}")]
    Link { path: String, message: String },
    #[error("linking a test program against {prefix} failed")]
    LinkFailed {
        prefix: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("the linked test program failed to run")]
    RunFailed {
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("I/O error at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl crate::error::Hint for VerifyError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            VerifyError::RunFailed { .. } => "the build does not run on this machine (a CPU feature or driver mismatch?): run `cargo xtask setup --force`".into(),
            _ => "run `cargo xtask setup --force` to rebuild; the entry was not published".into(),
        })
    }
}

pub fn read_link(prefix: &Path) -> Result<LinkDescription, VerifyError> {
    let path = prefix.join(LINK_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| VerifyError::Link {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| VerifyError::Link {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Links and runs the smoke program in `work` (a scratch dir) with compiler `cc`.
pub fn smoke(prefix: &Path, cc: &str, work: &Path) -> Result<SmokeReport, VerifyError> {
    let link = read_link(prefix)?;
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| VerifyError::Io { path, source }
    };
    fs_err::create_dir_all(work).map_err(io(work))?;
    let src = work.join("smoke.c");
    fs_err::write(&src, SMOKE_C).map_err(io(&src))?;
    let exe = work.join("smoke");
    let cmd = Cmd::new(cc)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .args(link.c_args(prefix, cfg!(target_os = "macos")));
    let link_command = cmd.display();
    cmd.clone()
        .timeout(Duration::from_secs(300))
        .run()
        .map_err(|source| VerifyError::LinkFailed {
            prefix: prefix.display().to_string(),
            source: Box::new(source),
        })?;
    let out = Cmd::new(&exe)
        .timeout(Duration::from_secs(120))
        .run()
        .map_err(|source| VerifyError::RunFailed {
            source: Box::new(source),
        })?;
    Ok(SmokeReport {
        system_info: out.stdout.trim().to_string(),
        link_command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_features_are_read_from_system_info() {
        let r = SmokeReport {
            system_info:
                "CPU : SSE3 = 1 | AVX512 = 1 | AVX512_VNNI = 0 | OPENMP = 1 | REPACK = 1 |".into(),
            link_command: String::new(),
        };
        assert_eq!(r.enabled_features(), ["SSE3", "AVX512", "OPENMP", "REPACK"]);
    }
}
