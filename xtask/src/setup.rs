//! `cargo xtask setup`: the main job, one stage after another: probe (+ install missing build
//! tools) → profile → source → cache lookup → build → verify → publish. This file only sequences
//! the stages and reports; each stage is a module of its own.

use crate::cache::{Fingerprint, Toolchain};
use crate::context::Ctx;
use crate::machine::{Detection, Machine};
use serde::Serialize;
use std::time::Instant;

/// What `setup --json` prints.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    pub outcome: crate::artifact::Outcome,
    pub key: String,
    pub entry: std::path::PathBuf,
    pub prefix: std::path::PathBuf,
    /// The verified runtime binary of this build (absent with `--lib-only`).
    pub runtime_bin: Option<std::path::PathBuf>,
    /// What changed since the previous current build (empty on a hit).
    pub changes: Vec<String>,
    pub pinned: bool,
    /// The verified model file, with `--model`.
    pub model: Option<std::path::PathBuf>,
    pub seconds: f64,
}

pub fn toolchain_of(m: &Machine) -> Toolchain {
    let comp = |d: &Detection<crate::machine::Compiler>| match d {
        Detection::Found(c) => format!("{} {} {}", c.family.as_str(), c.version, c.path),
        other => other.why_absent(),
    };
    let tool = |d: &Detection<crate::machine::Tool>| {
        d.found().map(|t| format!("{} {}", t.version, t.path))
    };
    Toolchain {
        c: comp(&m.compilers.c),
        cxx: comp(&m.compilers.cxx),
        cmake: tool(&m.tools.cmake).unwrap_or_else(|| "none".into()),
        ninja: tool(&m.tools.ninja),
        nvcc: m.cuda.found().map(|c| format!("{} {}", c.version, c.nvcc)),
    }
}

pub fn fingerprint_of(m: &Machine) -> Fingerprint {
    let gpus = m.gpus();
    Fingerprint {
        gpus: gpus
            .iter()
            .map(|g| format!("{} (sm_{})", g.name, g.compute_capability.replace('.', "")))
            .collect(),
        driver: gpus.first().map(|g| g.driver_version.clone()),
        cuda: m.cuda.found().map(|c| c.version.clone()),
    }
}

pub fn run(
    ctx: &Ctx,
    args: &crate::cli::SetupArgs,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    let machine = crate::prereq::ensure_build_tools(ctx)?;
    let overrides = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
    let profile = crate::profile::plan(&machine, &overrides);
    for w in &profile.warnings {
        eprintln!("warning: {w}");
    }
    for h in &profile.hints {
        eprintln!("hint: {h}");
    }
    let source_plan = crate::source::plan_from_args(ctx, &args.source)?;
    if args.source.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "profile": &profile, "source": &source_plan })
            )?
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let tree = crate::source::obtain(&source_plan, progress)?;
    if !tree.pinned {
        eprintln!(
            "warning: UNPINNED llama.cpp tree {} (digest {}, pin expects {})",
            tree.origin, tree.digest, tree.expected_digest
        );
    }

    let ensured = crate::artifact::ensure(
        ctx,
        &crate::artifact::Request {
            label: "tuned",
            target: &machine,
            host: &machine,
            profile: &profile,
            tree: &tree,
            force: args.force,
            reference: crate::artifact::Reference::Portable,
            with_runtime: !args.lib_only,
        },
        progress,
    )?;
    let cache = crate::cache::Cache::new(&ctx.cache_dir);
    cache.set_current(&ensured.key)?;
    let (outcome, key, entry, changes) = (
        ensured.outcome,
        ensured.key.clone(),
        ensured.entry.clone(),
        ensured.changes.clone(),
    );
    let model = match &args.model {
        Some(name) => Some(crate::models::ensure(ctx, name, &machine, progress)?),
        None => None,
    };
    let report = SetupReport {
        outcome,
        key: key.clone(),
        prefix: entry.join("prefix"),
        runtime_bin: Some(ensured.runtime_bin()).filter(|p| p.is_file()),
        entry,
        changes,
        pinned: tree.pinned,
        model,
        seconds: started.elapsed().as_secs_f64(),
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let what = match outcome {
            crate::artifact::Outcome::Hit => "up to date (cache hit)",
            crate::artifact::Outcome::Reverified => "re-verified the cached build on this machine",
            crate::artifact::Outcome::Built => "built, verified and cached",
        };
        println!(
            "{what}: build {key}{}",
            if tree.pinned { "" } else { " (UNPINNED)" }
        );
        println!("  prefix:  {}", report.prefix.display());
        if let Some(b) = &report.runtime_bin {
            println!("  runtime: {}", b.display());
        }
        if let Some(m) = &report.model {
            println!("  model:   {}", m.display());
        }
        println!("  ({:.2} s)", report.seconds);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
