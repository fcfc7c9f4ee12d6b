//! `cargo xtask setup`: the main job, one stage after another. Each stage is a module of its own;
//! this file only sequences them and reports.

use crate::context::Ctx;

pub fn run(ctx: &Ctx, args: &crate::cli::SetupArgs) -> anyhow::Result<std::process::ExitCode> {
    ctx.info("probe: reading this machine's facts");
    let machine = crate::prereq::ensure_build_tools(ctx)?;
    let overrides = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
    let profile = crate::profile::plan(&machine, &overrides);
    for w in &profile.warnings {
        eprintln!("warning: {w}");
    }
    for h in &profile.hints {
        eprintln!("hint: {h}");
    }
    let chosen: Vec<&str> = profile
        .backends
        .iter()
        .filter(|b| b.chosen)
        .map(|b| b.why.as_str())
        .collect();
    ctx.info(format!(
        "profile: {} (hash {}), GPU backend: {}",
        profile.machine,
        profile.short_hash(),
        if chosen.is_empty() {
            "none (CPU build)".to_string()
        } else {
            chosen.join(", ")
        }
    ));
    let dir = ctx.cache_dir.join("profiles-v1");
    let path = dir.join(format!("{}.cmake", profile.short_hash()));
    crate::fsx::write_atomic(&path, profile.cmake.as_bytes())?;
    ctx.info(format!("profile written to {}", path.display()));
    ctx.info("next: fetch and verify the pinned llama.cpp, build it with this profile, verify and cache (not implemented yet)");
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "profile": path, "hash": profile.hash })
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
