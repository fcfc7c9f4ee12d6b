//! CI: the prebuilt matrix (`ci/matrix.toml`), the workflow generated from it, and its lint.
//!
//! `cargo xtask ci matrix [--json]` prints the matrix (JSON: the `{"include": [...]}` object an
//! Actions matrix consumes); `ci generate [--check]` renders `.github/workflows/prebuilt.yml`;
//! `ci lint` runs actionlint on it.

pub mod actionlint;
pub mod matrix;
pub mod readme_table;
pub mod runners;
pub mod workflow;

use crate::context::Ctx;
use std::process::ExitCode;

pub fn run(ctx: &Ctx, args: &CiArgs) -> anyhow::Result<ExitCode> {
    let root = &ctx.repo_root;
    match &args.command {
        CiCommand::Matrix => {
            let m = matrix::Matrix::load(root)?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&m.include())?);
            } else {
                print!("{}", m.human());
            }
        }
        CiCommand::Generate { check } => {
            if *check {
                workflow::check(root)?;
                workflow::check_readme(root)?;
                ctx.info(format!(
                    "{} and the variant table in {} are up to date",
                    workflow::WORKFLOW_PATH,
                    readme_table::README_PATH
                ));
            } else {
                workflow::generate(root, &root.join(workflow::WORKFLOW_PATH))?;
                ctx.info(format!("wrote {}", workflow::WORKFLOW_PATH));
                if workflow::generate_readme(root)? {
                    ctx.info(format!(
                        "updated the variant table in {}",
                        readme_table::README_PATH
                    ));
                }
            }
        }
        CiCommand::Lint => actionlint::lint_workflow(ctx)?,
    }
    Ok(ExitCode::SUCCESS)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    #[command(subcommand)]
    pub command: CiCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CiCommand {
    /// Print ci/matrix.toml's variants and their requirements (--json: `{"include": [...]}`)
    Matrix,
    /// Render .github/workflows/prebuilt.yml from ci/matrix.toml and ci/workflow.yml.j2
    Generate {
        /// Write nothing; fail with a diff when the checked-in file differs
        #[arg(long)]
        check: bool,
    },
    /// Run actionlint on the generated workflow (installs it into target/actionlint first)
    Lint,
}
