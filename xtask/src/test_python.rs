//! The Python the server tests run: a venv in the test cache holding the official `openai`
//! client at a pinned version (tests/serve_openai.rs drives `tunellama serve` with it, as an
//! application would). Made once per version by `cargo xtask test` (and by the test itself when
//! run alone), from the user's configured package index through pip.

use crate::cmd::Cmd;
use std::path::{Path, PathBuf};

/// The pinned client version (its 3.x API: `client.chat.completions.create`, `stream_options`).
pub const OPENAI_VERSION: &str = "3.51.0";

/// `<test cache>/python-openai-<version>`.
pub fn openai_venv(cache: &Path) -> PathBuf {
    cache.join(format!("python-openai-{OPENAI_VERSION}"))
}

fn python_in(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts/python.exe")
    } else {
        venv.join("bin/python")
    }
}

/// The venv's python, after making the venv and installing `openai==OPENAI_VERSION` when it is
/// not there yet (saying so on stderr).
pub fn ensure_openai(cache: &Path) -> anyhow::Result<PathBuf> {
    let venv = openai_venv(cache);
    let py = python_in(&venv);
    let check = format!(
        "import openai, sys; sys.exit(0 if openai.__version__ == '{OPENAI_VERSION}' else 1)"
    );
    if py.exists() && Cmd::new(&py).args(["-c", &check]).run().is_ok() {
        return Ok(py);
    }
    eprintln!(
        "== installing the openai Python client {OPENAI_VERSION} into {} (tests/serve_openai.rs drives the server with it)",
        venv.display()
    );
    // The system's Python: the one `prereqs` installs python3-venv for.
    Cmd::new(crate::prereq::system_python())
        .args(["-m", "venv"])
        .arg(&venv)
        .hint(
            "install Python's venv module (`cargo xtask prereqs --install` installs python3-venv)",
        )
        .run_to_stderr()?;
    Cmd::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
        ])
        .arg(format!("openai=={OPENAI_VERSION}"))
        .hint("pip needs the package index (or a configured mirror) to fetch the openai client")
        .run_to_stderr()?;
    Cmd::new(&py).args(["-c", &check]).run()?;
    Ok(py)
}
