//! `cargo xtask setup`: the main job, one stage after another: probe (+ install missing build
//! tools) → profile → source → cache lookup → build → verify → publish. This file only sequences
//! the stages and reports; each stage is a module of its own.

use crate::cache::{self, Cache, Fingerprint, KeyInputs, Lookup, Manifest, Toolchain};
use crate::context::Ctx;
use crate::machine::{Detection, Machine};
use serde::Serialize;
use std::time::Instant;

/// What `setup --json` prints.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    /// `hit`, `reverified` or `built`.
    pub outcome: String,
    pub key: String,
    pub entry: std::path::PathBuf,
    pub prefix: std::path::PathBuf,
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

    let inputs = KeyInputs {
        tree_digest: tree.digest.clone(),
        profile_hash: profile.hash.clone(),
        toolchain: toolchain_of(&machine),
        runtime_source: None,
    };
    let key = cache::key_of(&inputs);
    let fingerprint = fingerprint_of(&machine);
    let decisions: Vec<(String, String)> = profile
        .decisions
        .iter()
        .map(|d| (d.name.clone(), d.value.clone()))
        .collect();
    let cache = Cache::new(&ctx.cache_dir);
    let _lock = cache.lock(&key, || {
        ctx.info(format!(
            "another setup is working on build {key}; waiting for it"
        ))
    })?;
    let entry = cache.entry_dir(&key);
    let cc = machine
        .compilers
        .c
        .found()
        .map(|c| c.path.clone())
        .unwrap_or_else(|| "cc".into());

    let lookup = if args.force {
        Lookup::Absent
    } else {
        cache.lookup(&key)
    };
    let (outcome, changes) = match lookup {
        Lookup::Hit(m) if m.fingerprint == fingerprint => ("hit", Vec::new()),
        Lookup::Hit(mut m) => {
            let changes = cache::explain_fingerprint(&m.fingerprint, &fingerprint);
            ctx.info(format!(
                "same build inputs, but the machine changed ({}): re-verifying the existing build",
                changes.join("; ")
            ));
            let report = crate::verify::smoke(&entry.join("prefix"), &cc, &scratch(ctx, &key))?;
            m.fingerprint = fingerprint.clone();
            m.verification = Some(serde_json::to_value(&report)?);
            cache.update_manifest(&m)?;
            ("reverified", changes)
        }
        other => {
            let mut changes = Vec::new();
            if let Lookup::Corrupt { reason } = &other {
                changes.push(format!(
                    "cache entry {key} is damaged ({reason}): treated as absent"
                ));
            }
            if args.force {
                changes.push("--force".into());
            } else if let Some(old) = cache
                .current()
                .filter(|c| c != &key)
                .and_then(|c| Cache::read_manifest(&cache.entry_dir(&c)).ok())
            {
                changes.extend(cache::explain_changes(&old, &inputs, &decisions));
                changes.extend(cache::explain_fingerprint(&old.fingerprint, &fingerprint));
            } else if changes.is_empty() {
                changes.push("no cached build for these inputs yet".into());
            }
            ctx.info(format!("building llama.cpp: {}", changes.join("; ")));
            build_and_publish(
                ctx,
                &cache,
                &machine,
                &profile,
                &tree,
                &inputs,
                &key,
                &decisions,
                &fingerprint,
                &cc,
                progress,
            )?;
            ("built", changes)
        }
    };
    cache.set_current(&key)?;
    let model = match &args.model {
        Some(name) => Some(crate::models::ensure(ctx, name, &machine, progress)?),
        None => None,
    };
    let report = SetupReport {
        outcome: outcome.into(),
        key: key.clone(),
        prefix: entry.join("prefix"),
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
            "hit" => "up to date (cache hit)",
            "reverified" => "re-verified the cached build on this machine",
            _ => "built, verified and cached",
        };
        println!(
            "{what}: build {key}{}",
            if tree.pinned { "" } else { " (UNPINNED)" }
        );
        println!("  prefix: {}", report.prefix.display());
        if let Some(m) = &report.model {
            println!("  model:  {}", m.display());
        }
        println!("  ({:.2} s)", report.seconds);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn scratch(ctx: &Ctx, key: &str) -> std::path::PathBuf {
    ctx.cache_dir
        .join("tmp")
        .join(format!("verify-{key}-{}", std::process::id()))
}

#[allow(clippy::too_many_arguments)]
fn build_and_publish(
    ctx: &Ctx,
    cache: &Cache,
    machine: &Machine,
    profile: &crate::profile::Profile,
    tree: &crate::source::Tree,
    inputs: &KeyInputs,
    key: &str,
    decisions: &[(String, String)],
    fingerprint: &Fingerprint,
    cc: &str,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<Manifest> {
    let staging = cache.stage(key)?;
    // The log lives outside the staging dir so its path stays valid when a build fails.
    let logs = ctx.cache_dir.join("logs");
    fs_err::create_dir_all(&logs)?;
    let log = logs.join(format!("build-{key}.log"));
    let plan = crate::build::BuildPlan {
        tree: tree.root.clone(),
        profile_cmake: profile.cmake.clone(),
        build_dir: staging.join("build"),
        prefix: staging.join("prefix"),
        log: log.clone(),
        generator: machine.tools.ninja.found().map(|_| "Ninja".to_string()),
        jobs: machine.cpu.logical_cores.unwrap_or(2).max(1) as usize,
        defines: vec![
            ("LLAMA_BUILD_NUMBER".into(), tree.build_number.to_string()),
            ("LLAMA_BUILD_COMMIT".into(), tree.build_commit.clone()),
        ],
        cmake: machine
            .tools
            .cmake
            .found()
            .map(|t| t.path.clone())
            .unwrap_or_else(|| "cmake".into())
            .into(),
    };
    let out = crate::build::run(&plan, progress)?;
    ctx.info(format!(
        "compiled in {:.0} s; verifying the install tree",
        out.seconds
    ));
    let report = crate::verify::smoke(&out.prefix, cc, &staging.join("verify"))?;
    ctx.info(format!("verified: {}", report.system_info));
    fs_err::remove_dir_all(staging.join("build"))?;
    fs_err::remove_dir_all(staging.join("verify"))?;
    fs_err::copy(&log, staging.join("build.log"))?;
    let manifest = Manifest {
        schema: 1,
        key: key.to_string(),
        inputs: inputs.clone(),
        decisions: decisions.to_vec(),
        fingerprint: fingerprint.clone(),
        provenance: "source".into(),
        tree_origin: tree.origin.clone(),
        pinned: tree.pinned,
        build_seconds: out.seconds,
        files: Vec::new(),
        verification: Some(serde_json::to_value(&report)?),
    };
    Ok(cache.publish(&staging, manifest)?)
}
