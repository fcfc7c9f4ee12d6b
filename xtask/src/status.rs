//! `cargo xtask status` and `cargo xtask cache ls|gc`: what is cached, which build is current for
//! this machine, and whether it is fresh (its key still matches what `setup` would build now).

use crate::cache::{self, Cache};
use crate::context::Ctx;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Status {
    /// The current entry's key, if any build was ever made here.
    pub current: Option<String>,
    pub entry: Option<std::path::PathBuf>,
    pub prefix: Option<std::path::PathBuf>,
    /// Absolute path of the current build's runtime binary (`cargo xtask run -- ARGS` runs it).
    pub runtime_bin: Option<std::path::PathBuf>,
    /// True when the key `setup` would compute now equals the current key and the files verify.
    pub fresh: bool,
    /// Why not fresh (empty when fresh).
    pub stale_because: Vec<String>,
    /// The key `setup` would compute now for this machine, the pin and the current sources and
    /// environment (source builds only).
    pub expected_key: Option<String>,
    pub key_inputs: Option<cache::KeyInputs>,
    pub fingerprint: Option<cache::Fingerprint>,
    pub provenance: Option<String>,
    pub pinned: Option<bool>,
    pub verification: Option<serde_json::Value>,
}

pub fn status(ctx: &Ctx, args: &StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let cache = Cache::new(&ctx.cache_dir);
    let current = cache.current();
    let manifest = current
        .as_ref()
        .and_then(|k| Cache::read_manifest(&cache.entry_dir(k)).ok());
    let mut stale = Vec::new();
    let mut expected_key = None;
    if let Some(m) = manifest.as_ref().filter(|m| m.provenance == "prebuilt") {
        let machine = crate::probe::probe(&crate::probe::ProbeOptions::for_host(&ctx.cache_dir));
        let pin = crate::source::pin::Pin::load(&ctx.repo_root.join(crate::source::pin::PIN_PATH))?;
        stale.extend(crate::prebuilt::install::stale_because(
            m,
            &pin.tree.digest,
            &machine,
        ));
        if let cache::Lookup::Corrupt { reason } = cache.lookup(&m.key) {
            stale.push(format!("entry damaged: {reason}"));
        }
    } else if let Some(m) = &manifest {
        // What would setup build now? The same key computation (key.rs), without fetching or
        // building anything: the pin's digest is the digest of the tree setup would verify.
        let machine = crate::probe::probe(&crate::probe::ProbeOptions::for_host(&ctx.cache_dir));
        let overrides = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
        let mut profile = crate::profile::plan(&machine, &overrides);
        let plan = crate::source::plan_from_args(ctx, &args.source)?;
        let source = match &plan.step {
            // A local tree is hashed as setup hashes it (nothing is fetched).
            crate::source::Step::Path { .. } => crate::key::SourceId::of_tree(
                &crate::source::obtain(&plan, &crate::progress::Silent)?,
            ),
            _ => crate::key::SourceId::of_plan(&plan),
        };
        let env = crate::key::BuildEnv::capture(&ctx.repo_root);
        // A --lib-only entry has no runtime; otherwise the runtime's sources as they are now.
        let runtime_source = match &m.inputs.runtime_source {
            Some(_) => Some(crate::runtime_build::source_digest(&ctx.repo_root)?),
            None => None,
        };
        let inputs_of = |profile: &crate::profile::Profile| {
            crate::key::inputs(&crate::key::KeyRequest {
                profile,
                target: &machine,
                host: &machine,
                source: &source,
                runtime_source: runtime_source.clone(),
                env: &env,
                cross: None,
            })
        };
        let mut now = inputs_of(&profile);
        // A tuned choice recorded for the rule-based key (`setup --tune`) is what setup applies.
        if runtime_source.is_some() {
            if let Some(r) = crate::tune::load(&cache, &cache::key_of(&now)) {
                profile = crate::tune::tuned_profile(&machine, &overrides, &r);
                now = inputs_of(&profile);
            }
        }
        let now_key = cache::key_of(&now);
        let decisions: Vec<(String, String)> = profile
            .decisions
            .iter()
            .map(|d| (d.name.clone(), d.value.clone()))
            .collect();
        if now_key != m.key {
            let mut why = cache::explain_changes(m, &now, &decisions);
            if why.is_empty() {
                why.push(format!("build key {} → {now_key}", m.key));
            }
            stale.extend(why);
        }
        expected_key = Some(now_key);
        stale.extend(cache::explain_fingerprint(
            &m.fingerprint,
            &crate::key::fingerprint_for(&profile, &machine),
        ));
        if let cache::Lookup::Corrupt { reason } = cache.lookup(&m.key) {
            stale.push(format!("entry damaged: {reason}"));
        }
    } else {
        stale.push("no build yet: run `cargo xtask setup`".into());
    }
    let s = Status {
        entry: current.as_ref().map(|k| cache.entry_dir(k)),
        prefix: current.as_ref().map(|k| cache.entry_dir(k).join("prefix")),
        runtime_bin: current
            .as_ref()
            .map(|k| crate::runtime_build::binary_in(&cache.entry_dir(k).join("prefix")))
            .filter(|p| p.is_file()),
        current,
        fresh: stale.is_empty(),
        stale_because: stale,
        expected_key,
        key_inputs: manifest.as_ref().map(|m| m.inputs.clone()),
        fingerprint: manifest.as_ref().map(|m| m.fingerprint.clone()),
        provenance: manifest.as_ref().map(|m| m.provenance.clone()),
        pinned: manifest.as_ref().map(|m| m.pinned),
        verification: manifest.as_ref().and_then(|m| m.verification.clone()),
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        match &s.current {
            None => println!("no build yet: run `cargo xtask setup`"),
            Some(k) => {
                println!(
                    "current build {k} ({}{})",
                    s.provenance.as_deref().unwrap_or("?"),
                    if s.pinned == Some(false) {
                        ", UNPINNED"
                    } else {
                        ""
                    }
                );
                println!("  prefix:  {}", s.prefix.as_ref().unwrap().display());
                match &s.runtime_bin {
                    Some(b) => println!("  runtime: {}", b.display()),
                    None => println!("  runtime: none (built before the runtime existed: run `cargo xtask setup`)"),
                }
                if let Some(i) = &s.key_inputs {
                    println!(
                        "  tree {}  profile {}",
                        &i.tree_digest[..12.min(i.tree_digest.len())],
                        &i.profile_hash[..12]
                    );
                    println!(
                        "  toolchain: {} | {} | cmake {}",
                        i.toolchain.c, i.toolchain.cxx, i.toolchain.cmake
                    );
                }
                if s.fresh {
                    println!("  fresh: yes (the key setup would compute now)");
                } else {
                    println!("  fresh: no ({})", s.stale_because.join("; "));
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub fn cache_cmd(ctx: &Ctx, args: &CacheArgs) -> anyhow::Result<std::process::ExitCode> {
    let cache = Cache::new(&ctx.cache_dir);
    match &args.command {
        CacheCommand::Ls => {
            let current = cache.current();
            let entries = cache.list();
            if ctx.json {
                let v: Vec<_> = entries
                    .iter()
                    .map(|(dir, m)| {
                        serde_json::json!({
                            "key": m.key, "dir": dir, "current": Some(&m.key) == current.as_ref(),
                            "provenance": m.provenance, "pinned": m.pinned,
                            "bytes": m.files.iter().map(|f| f.size).sum::<u64>(),
                            "profile_hash": m.inputs.profile_hash, "tree_digest": m.inputs.tree_digest,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if entries.is_empty() {
                println!("cache {} is empty", cache.bucket().display());
            } else {
                for (_, m) in &entries {
                    let size: u64 = m.files.iter().map(|f| f.size).sum();
                    let cur = if Some(&m.key) == current.as_ref() {
                        "*"
                    } else {
                        " "
                    };
                    println!(
                        "{cur} {}  {:>10}  {}  {}",
                        m.key,
                        crate::progress::human_bytes(size),
                        m.provenance,
                        m.tree_origin
                    );
                }
            }
        }
        CacheCommand::Gc { keep } => {
            let removed = cache.gc(*keep)?;
            if ctx.json {
                println!("{}", serde_json::json!({ "removed": removed }));
            } else {
                println!(
                    "removed {} entr{}{}",
                    removed.len(),
                    if removed.len() == 1 { "y" } else { "ies" },
                    if removed.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", removed.join(", "))
                    }
                );
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The current build's runtime binary (what `run` and `serve` start).
pub fn current_runtime(ctx: &Ctx) -> Result<std::path::PathBuf, NoRuntime> {
    let cache = Cache::new(&ctx.cache_dir);
    cache
        .current()
        .map(|k| crate::runtime_build::binary_in(&cache.entry_dir(&k).join("prefix")))
        .filter(|p| p.is_file())
        .ok_or_else(|| NoRuntime(cache.bucket().display().to_string()))
}

/// `cargo xtask run -- ARGS`: runs the current build's runtime with ARGS, so scripts never guess
/// where it lives. Its exit code is passed through.
pub fn run_runtime(
    ctx: &Ctx,
    args: &[std::ffi::OsString],
) -> anyhow::Result<std::process::ExitCode> {
    let bin = current_runtime(ctx)?;
    let status = std::process::Command::new(&bin)
        .args(args)
        .status()
        .map_err(|e| anyhow::anyhow!("could not start {}: {e}", bin.display()))?;
    Ok(match status.code() {
        Some(c) => std::process::ExitCode::from(c.clamp(0, 255) as u8),
        // Killed by a signal: report like a shell would (128 + signal) where we can.
        None => std::process::ExitCode::from(1),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("no runtime has been built yet (looked for the current build in {0})")]
pub struct NoRuntime(pub String);

impl crate::error::Hint for NoRuntime {
    fn hint(&self) -> Option<String> {
        Some("run `cargo xtask setup` first; it builds and verifies the runtime".into())
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Arguments for the runtime (after `--`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<std::path::PathBuf>,
    /// The source `setup` would use (freshness compares with the key it would compute)
    #[command(flatten)]
    pub source: crate::source::SourceArgs,
}

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// List cached builds (the current one is marked *)
    Ls,
    /// Remove cached builds except the current one and the N most recent others
    Gc {
        /// How many non-current entries to keep
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
}
