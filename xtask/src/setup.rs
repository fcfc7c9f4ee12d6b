//! `cargo xtask setup`: the main job. Probe this machine, compute the plan (`setup_plan.rs`: the
//! tuned build's key and cache state, the prebuilt candidate, which is used and why), then either
//! print it (`--dry-run`) or execute it: reuse the cached tuned build, install the prebuilt, or
//! install missing build tools → profile → source → build → verify → publish. This file only
//! sequences the stages and reports; each stage is a module of its own.

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
    /// Why this build was used (a fresh tuned build, a prebuilt, a source build, `--force`).
    pub chosen_because: String,
    /// The verified model file, with `--model`.
    pub model: Option<std::path::PathBuf>,
    /// The tuned choice applied (`--tune`, or a record of an earlier `--tune` reused); then
    /// `key`, `entry`, `prefix` and `runtime_bin` are the tuned build's.
    pub tune: Option<crate::tune::Summary>,
    pub seconds: f64,
}

pub fn run(
    ctx: &Ctx,
    args: &crate::setup_plan::SetupArgs,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    if args.tune.tune && (args.lib_only || args.machine.machine.is_some()) {
        anyhow::bail!(
            "--tune measures this machine's runtime: it cannot be combined with --lib-only or --machine"
        );
    }
    crate::tune::parse_budget(&args.tune.tune_budget).map_err(|e| anyhow::anyhow!(e))?;
    // This machine as it is: nothing is installed before the plan says a source build needs it.
    let mut host = ctx.machine(None)?;
    // A recorded Machine (--machine) is the target: planned, and it selects the prebuilt variant.
    // This machine (host) builds, fingerprints and runs every verification.
    let mut target = match &args.machine.machine {
        Some(file) => ctx.machine(Some(file))?,
        None => host.clone(),
    };
    let mut cuda_wheels = None;
    if args.machine.cuda_toolkit.as_deref() == Some("wheels") {
        match crate::cuda_wheels::installed(&ctx.cache_dir) {
            Some(root) if args.source.dry_run => {
                cuda_wheels = Some(format!("the wheel toolkit at {}", root.display()));
                if let crate::machine::Detection::Found(tk) = crate::probe::ask_nvcc(
                    &root.join("bin/nvcc"),
                    Some(&root),
                    true,
                    std::time::Duration::from_secs(30),
                ) {
                    target.cuda = Detection::Found(tk.clone());
                    host.cuda = Detection::Found(tk);
                }
            }
            None if args.source.dry_run => {
                cuda_wheels = Some(format!(
                    "would install NVIDIA's CUDA wheels ({}) into the cache with pip",
                    crate::cuda_wheels::requirements().join(" ")
                ));
            }
            _ => {
                // The wheel toolkit compiles for the target and is part of this host's toolchain.
                let tk = crate::cuda_wheels::substitute(ctx, &mut target)?;
                cuda_wheels = Some(format!("the wheel toolkit {}", tk.nvcc));
                host.cuda = Detection::Found(tk);
            }
        }
    }
    let plan = crate::setup_plan::plan(ctx, args, &host, &target, cuda_wheels)?;
    if args.source.dry_run {
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", crate::setup_plan::text(&plan));
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    ctx.info(format!("setup: {}", plan.chosen_because));
    if plan.action == crate::setup_plan::Action::InstallPrebuilt {
        let candidate = plan
            .prebuilt
            .as_ref()
            .and_then(|p| p.candidate.as_ref())
            .expect("the plan installs a prebuilt only when it has a candidate");
        let p =
            crate::prebuilt::install::install(ctx, &host, candidate, args.allow_http, progress)?;
        let cache = crate::cache::Cache::new(&ctx.cache_dir);
        if args.keep_current {
            ctx.info(format!(
                "--keep-current: prebuilt {} is cached and verified; the current build stays {}",
                p.key,
                cache.current().unwrap_or_else(|| "unset".into())
            ));
        } else {
            cache.set_current(&p.key)?;
        }
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
            chosen_because: plan.chosen_because.clone(),
            model: None,
            tune: None,
            seconds: started.elapsed().as_secs_f64(),
        };
        return finish(ctx, args, &target, progress, report);
    }
    if plan.action == crate::setup_plan::Action::Build {
        // Only a source build needs the build tools (and, for Vulkan, the Vulkan tools).
        // Both re-probe this machine; the wheel toolkit (not on PATH) stays its CUDA toolkit.
        let cuda = host.cuda.clone();
        host = crate::prereq::ensure_build_tools(ctx)?;
        if plan.tools.vulkan.is_some() {
            host = crate::prereq::ensure_vulkan(ctx, false)?;
        }
        if args.machine.cuda_toolkit.as_deref() == Some("wheels") {
            host.cuda = cuda;
        }
        if args.machine.machine.is_none() {
            let cuda = target.cuda.clone();
            target = host.clone();
            target.cuda = cuda;
        }
    }
    let overrides = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
    let profile = crate::profile::plan(&target, &overrides);
    for w in &profile.warnings {
        eprintln!("warning: {w}");
    }
    for h in &profile.hints {
        eprintln!("hint: {h}");
    }
    let source_plan = crate::source::plan_from_args(ctx, &args.source)?;
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
            target: &target,
            host: &host,
            profile: &profile,
            tree: &tree,
            force: args.rebuild(),
            reference: crate::artifact::Reference::ShippedOrPortable,
            with_runtime: !args.lib_only,
        },
        progress,
    )?;
    let tuned = if args.lib_only || args.machine.machine.is_some() {
        None
    } else {
        crate::tune::after_setup(
            ctx,
            &args.tune,
            args.force,
            &crate::tune::Inputs {
                target: &target,
                host: &host,
                overrides: &overrides,
                profile: &profile,
                tree: &tree,
                base: &ensured,
            },
            progress,
        )?
    };
    let mut chosen_because = plan.chosen_because.clone();
    let (ensured, tune) = match tuned {
        Some((t, summary)) => {
            chosen_because.push_str(&format!(
                "; tuned on {}, {}: build {} with {} (rule-based build {})",
                summary.on,
                summary.state,
                summary.build,
                summary.knobs.describe(),
                summary.base_key
            ));
            (t, Some(summary))
        }
        None => (ensured, None),
    };
    let base_key = tune.as_ref().map_or(&ensured.key, |t| &t.base_key);
    if let Some(planned) = plan.key.as_ref().filter(|k| *k != base_key) {
        // Installing tools (or an unpinned tree) changed the toolchain or the tree: say so.
        chosen_because.push_str(&format!(
            " (planned key {planned}; after installing tools and obtaining the tree the key is {})",
            ensured.key
        ));
    }
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
        chosen_because,
        model: None,
        tune,
        seconds: started.elapsed().as_secs_f64(),
    };
    finish(ctx, args, &target, progress, report)
}

/// The model (with `--model`) and the report, for both source builds and prebuilts.
fn finish(
    ctx: &Ctx,
    args: &crate::setup_plan::SetupArgs,
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
        println!("  because: {}", report.chosen_because);
        println!("  prefix:  {}", report.prefix.display());
        if let Some(b) = &report.runtime_bin {
            println!("  runtime: {}", b.display());
        }
        if let Some(m) = &report.model {
            println!("  model:   {}", m.display());
        }
        if let Some(t) = &report.tune {
            println!(
                "  tuned:   {} on {} (record {})",
                t.state,
                t.on,
                t.record.display()
            );
            for e in &t.evidence {
                println!("           {e}");
            }
        }
        println!("  ({:.2} s)", report.seconds);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
