//! `cargo xtask setup`: the main job, one stage after another: probe (+ install missing build
//! tools) → profile → source → cache lookup → build → verify → publish. This file only sequences
//! the stages and reports; each stage is a module of its own.

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
    /// `source` or `prebuilt`.
    pub provenance: String,
    /// The prebuilt variant installed.
    pub variant: Option<String>,
    /// The verified model file, with `--model`.
    pub model: Option<std::path::PathBuf>,
    pub seconds: f64,
}

pub fn run(
    ctx: &Ctx,
    args: &crate::cli::SetupArgs,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    let mut host = crate::prereq::ensure_build_tools(ctx)?;
    // A recorded Machine (--machine) is planned and matched against prebuilts instead of this
    // one; this machine's tools still build and its CPU still runs the verification.
    let mut machine = match &args.machine.machine {
        Some(file) => ctx.machine(Some(file))?,
        None => host.clone(),
    };
    if args.machine.cuda_toolkit.as_deref() == Some("wheels") {
        // The wheel toolkit compiles for the target and is part of this host's toolchain.
        let tk = crate::cuda_wheels::substitute(ctx, &mut machine)?;
        host.cuda = Detection::Found(tk);
    }
    let overrides = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
    let mut profile = crate::profile::plan(&machine, &overrides);
    // A Vulkan build needs glslc, SPIR-V headers and Vulkan headers new enough for the pinned
    // tree: provide them (saying what and why), then plan again with the headers found.
    if profile.decision("GGML_VULKAN") == Some("ON") && !args.source.dry_run {
        host = crate::prereq::ensure_vulkan(ctx, false)?;
        if args.machine.machine.is_none() {
            machine = host.clone();
            profile = crate::profile::plan(&machine, &overrides);
        }
    }
    for w in &profile.warnings {
        eprintln!("warning: {w}");
    }
    for h in &profile.hints {
        eprintln!("hint: {h}");
    }
    if !args.from_source && !args.lib_only && !args.prebuilt_index.is_empty() {
        if let Some(p) = crate::prebuilt::install::try_install(
            ctx,
            &machine,
            &args.prebuilt_index,
            args.allow_http,
            progress,
        )? {
            let cache = crate::cache::Cache::new(&ctx.cache_dir);
            cache.set_current(&p.key)?;
            let prefix = p.entry.join("prefix");
            let report = SetupReport {
                outcome: p.outcome,
                key: p.key.clone(),
                runtime_bin: Some(crate::runtime_build::binary_in(&prefix)),
                prefix,
                entry: p.entry.clone(),
                changes: p.changes.clone(),
                pinned: true,
                provenance: "prebuilt".into(),
                variant: Some(p.variant.clone()),
                model: None,
                seconds: started.elapsed().as_secs_f64(),
            };
            return finish(ctx, args, &machine, progress, report);
        }
        ctx.info("no prebuilt fits: building from source");
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
            host: &host,
            profile: &profile,
            tree: &tree,
            force: args.force,
            reference: crate::artifact::Reference::Portable,
            with_runtime: !args.lib_only,
        },
        progress,
    )?;
    let cache = crate::cache::Cache::new(&ctx.cache_dir);
    if args.keep_current {
        ctx.info(format!(
            "--keep-current: build {} is cached and verified; the current build stays {}",
            ensured.key,
            cache.current().unwrap_or_else(|| "unset".into())
        ));
    } else {
        cache.set_current(&ensured.key)?;
    }
    let (outcome, key, entry, changes) = (
        ensured.outcome,
        ensured.key.clone(),
        ensured.entry.clone(),
        ensured.changes.clone(),
    );
    let report = SetupReport {
        outcome,
        key: key.clone(),
        prefix: entry.join("prefix"),
        runtime_bin: Some(ensured.runtime_bin()).filter(|p| p.is_file()),
        entry,
        changes,
        pinned: tree.pinned,
        provenance: "source".into(),
        variant: None,
        model: None,
        seconds: started.elapsed().as_secs_f64(),
    };
    finish(ctx, args, &machine, progress, report)
}

/// The model (with `--model`) and the report, for both source builds and prebuilts.
fn finish(
    ctx: &Ctx,
    args: &crate::cli::SetupArgs,
    machine: &Machine,
    progress: &dyn crate::progress::Progress,
    mut report: SetupReport,
) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    if let Some(name) = &args.model {
        report.model = Some(crate::models::ensure(ctx, name, machine, progress)?);
    }
    report.seconds += started.elapsed().as_secs_f64();
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let what = match report.outcome {
            crate::artifact::Outcome::Hit => "up to date (cache hit)",
            crate::artifact::Outcome::Reverified => "re-verified the cached build on this machine",
            crate::artifact::Outcome::Built if report.provenance == "prebuilt" => {
                "installed and verified a prebuilt"
            }
            crate::artifact::Outcome::Built => "built, verified and cached",
        };
        println!(
            "{what}: build {}{}",
            report.key,
            if report.pinned { "" } else { " (UNPINNED)" }
        );
        if let Some(v) = &report.variant {
            println!("  variant: {v}");
        }
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
