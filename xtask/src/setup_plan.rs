//! `setup`'s plan: everything `setup` will do, decided before anything happens, as plain data.
//! `setup --dry-run` prints it (text, or JSON with `--json`); `setup` executes the same plan, so a
//! dry run and a real run cannot disagree. Computing it probes and reads (the pin, the cache's
//! manifests, prebuilt indexes) but installs, downloads and writes nothing.
//!
//! Which build `setup` uses, in order ([`decide`]): `--force` rebuilds from source; a fresh tuned
//! build of this machine (its key is cached) wins; `--from-source` / `--lib-only` build; a
//! prebuilt is installed only when an index offers one that fits the target and this machine can
//! run (verify) it; otherwise the build is from source.

use crate::cache::{Cache, KeyInputs, Lookup};
use crate::context::Ctx;
use crate::machine::Machine;
use crate::prebuilt::install::{Candidate, Offer};
use crate::prereq::InstallPlan;
use serde::Serialize;
use std::path::PathBuf;

/// What `setup` will do with the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// This machine's tuned build for the key is cached and its fingerprint matches.
    UseCached,
    /// Cached for the key, but the machine fingerprint (GPU, driver) changed: re-verify it.
    Reverify,
    /// Download, check and verify the prebuilt candidate (or reuse it when already cached).
    InstallPrebuilt,
    /// Install missing build tools, obtain the tree, build, verify, publish.
    Build,
}

/// The cache's answer for the planned key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CacheState {
    Hit {
        entry: PathBuf,
    },
    /// Same key, other machine fingerprint: what changed.
    Reverify {
        entry: PathBuf,
        changes: Vec<String>,
    },
    /// Not cached (or damaged, or `--force`): why.
    Build {
        reason: String,
    },
    /// The key cannot be known before something is installed or fetched.
    Unknown {
        why: String,
    },
}

/// A machine, in one line each for os/arch/cpu.
#[derive(Debug, Clone, Serialize)]
pub struct MachineSummary {
    /// `this machine (probed)`, or the recording's path.
    pub what: String,
    pub os: String,
    pub arch: String,
    pub cpu: String,
}

impl MachineSummary {
    fn of(m: &Machine, what: String) -> MachineSummary {
        MachineSummary {
            what,
            os: m.os.value.clone(),
            arch: m.arch.value.clone(),
            cpu: m.cpu.model.clone().unwrap_or_else(|| "unknown CPU".into()),
        }
    }
}

/// System tools `setup` installs before a source build (nothing is installed otherwise).
#[derive(Debug, Clone, Serialize)]
pub struct ToolsPlan {
    /// Whether this run installs them (only when it builds from source).
    pub will_install: bool,
    pub build: InstallPlan,
    /// Vulkan builds: the loader, glslc, SPIR-V headers, vulkaninfo.
    pub vulkan: Option<InstallPlan>,
    /// Vulkan builds: newer headers fetched into the cache (the system's are too old).
    pub vulkan_headers: bool,
    /// `--cuda-toolkit wheels`: the toolkit installed into the cache first (pip), or its path.
    pub cuda_wheels: Option<String>,
}

/// The pinned llama.cpp tree: where from, its digest, whether it is already here.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    pub transport: String,
    pub origin: String,
    pub expected_digest: String,
    /// `cached` (obtained before: cargo's registry or the source cache), `to_fetch`, or `local`.
    pub state: String,
    pub location: Option<PathBuf>,
}

/// The prebuilt part of the plan (with `--prebuilt-index`).
#[derive(Debug, Clone, Serialize)]
pub struct PrebuiltPlan {
    pub indexes: Vec<String>,
    pub candidate: Option<Candidate>,
    pub rejected: Vec<String>,
    /// Whether `setup` installs the candidate.
    pub taken: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupPlan {
    /// The machine running the build and every check (always probed).
    pub host: MachineSummary,
    /// The machine the build is for: selects the profile and the prebuilt variant.
    pub target: MachineSummary,
    pub tools: ToolsPlan,
    pub source: SourceSummary,
    /// The cache key of the tuned build (absent: see `cache`).
    pub key: Option<String>,
    pub key_inputs: Option<KeyInputs>,
    pub cache: CacheState,
    pub prebuilt: Option<PrebuiltPlan>,
    pub action: Action,
    /// Why `action`, in one sentence.
    pub chosen_because: String,
    /// The model fetched afterwards (`--model`).
    pub model: Option<String>,
    /// Whether `current` (what `status` and `run` use) moves to the result.
    pub sets_current: bool,
    /// A tuned choice for the key (`setup --tune`): reused, measured, or none.
    pub tune: Option<crate::tune::TunePlan>,
}

/// The options of the decision (from `setup`'s flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub force: bool,
    pub from_source: bool,
    pub lib_only: bool,
}

/// Which build `setup` uses, and why (pure). See the module docs for the order.
pub fn decide(
    flags: Flags,
    key: Option<&str>,
    cache: &CacheState,
    prebuilt: Option<&Offer>,
) -> (Action, String) {
    let key = key.unwrap_or("(unknown)");
    let offered = prebuilt.and_then(|o| o.candidate.as_ref());
    let passed_over = |what: &str| match offered {
        Some(c) => format!("{what}; prebuilt {} is not installed", c.variant),
        None => what.to_string(),
    };
    if flags.force {
        return (
            Action::Build,
            passed_over("--force: rebuilding from source (the cache and prebuilts are not used)"),
        );
    }
    match cache {
        CacheState::Hit { .. } => {
            return (
                Action::UseCached,
                passed_over(&format!(
                    "this machine's tuned build {key} is cached and fresh (a fresh tuned build wins)"
                )),
            )
        }
        CacheState::Reverify { changes, .. } => {
            return (
                Action::Reverify,
                passed_over(&format!(
                    "this machine's tuned build {key} is cached; the machine changed ({}), so it is re-verified (a cached tuned build wins)",
                    changes.join("; ")
                )),
            )
        }
        _ => {}
    }
    let why_no_tuned = match cache {
        CacheState::Build { reason } => format!("no fresh tuned build ({reason})"),
        CacheState::Unknown { why } => format!("the tuned build's key is not known yet ({why})"),
        _ => unreachable!("hits returned above"),
    };
    if flags.from_source {
        return (
            Action::Build,
            format!("{why_no_tuned}; --from-source: building from source"),
        );
    }
    let Some(offer) = prebuilt else {
        return (
            Action::Build,
            format!("{why_no_tuned} and no prebuilt index is configured: building from source"),
        );
    };
    if flags.lib_only {
        return (
            Action::Build,
            format!("{why_no_tuned}; --lib-only builds the libraries from source (prebuilts are installed with their runtime)"),
        );
    }
    match &offer.candidate {
        None => (
            Action::Build,
            format!(
                "{why_no_tuned} and no prebuilt fits ({}): building from source",
                if offer.rejected.is_empty() {
                    "the indexes list none".to_string()
                } else {
                    offer.rejected.join(" | ")
                }
            ),
        ),
        Some(c) if !c.host_cannot_run.is_empty() => (
            Action::Build,
            format!(
                "{why_no_tuned}; prebuilt {} fits the target, but this machine, which verifies it, cannot run it ({}): building from source",
                c.variant,
                c.host_cannot_run.join("; ")
            ),
        ),
        Some(c) => (
            Action::InstallPrebuilt,
            format!(
                "{why_no_tuned}; prebuilt {} fits this machine ({}){}",
                c.variant,
                c.index,
                if c.cached { ", already cached" } else { "" }
            ),
        ),
    }
}

/// Computes the plan. `host` is this machine as probed (nothing installed yet); `target` the
/// machine the build is for (`host`, or the `--machine` recording).
pub fn plan(
    ctx: &Ctx,
    args: &SetupArgs,
    host: &Machine,
    target: &Machine,
    cuda_wheels: Option<String>,
) -> anyhow::Result<SetupPlan> {
    let overrides = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
    let profile = crate::profile::plan(target, &overrides);
    let vulkan_build = profile.decision("GGML_VULKAN") == Some("ON");
    let (vulkan, vulkan_headers) = if vulkan_build {
        let (p, h) = crate::prereq::would_install_vulkan(host, false);
        (Some(p), h)
    } else {
        (None, false)
    };
    let build_tools = crate::prereq::would_install_build_tools(host);
    let source_plan = crate::source::plan_from_args(ctx, &args.source)?;
    let source = summarize_source(&source_plan);

    // The key, exactly as `artifact::ensure` computes it.
    let mut unknown = Vec::new();
    if !build_tools.tools.is_empty() {
        unknown.push(format!(
            "missing build tools are part of the toolchain identity: {}",
            names(&build_tools)
        ));
    }
    if let Some(v) = vulkan.as_ref().filter(|v| !v.tools.is_empty()) {
        unknown.push(format!("Vulkan tools to install: {}", names(v)));
    }
    if vulkan_headers {
        unknown.push("newer Vulkan headers to fetch".into());
    }
    if args.machine.cuda_toolkit.as_deref() == Some("wheels")
        && crate::cuda_wheels::installed(&ctx.cache_dir).is_none()
    {
        unknown.push("the CUDA wheel toolkit to install".into());
    }
    let digest = match &source_plan.step {
        crate::source::Step::Path { root } => {
            match crate::source::digest::hash_tree(root, &source_plan.inputs) {
                Ok(m) => Some(m.digest()),
                Err(e) => {
                    unknown.push(format!("cannot hash {}: {e}", root.display()));
                    None
                }
            }
        }
        // Anything else is refused unless it has the pin's digest.
        _ if !source_plan.allow_unpinned => Some(source_plan.expected_digest.clone()),
        _ => {
            unknown.push("--allow-unpinned: the tree's digest is known once it is fetched".into());
            None
        }
    };
    let with_runtime = !args.lib_only && !crate::cross::is_cross(host, target);
    let mut key_inputs = None;
    if let (Some(digest), true) = (digest, unknown.is_empty()) {
        // The one key computation (key.rs), from the pin (or the hashed local tree): nothing
        // is fetched, so the key is the one `artifact::ensure` computes after fetching.
        let mut source = crate::key::SourceId::of_plan(&source_plan);
        source.digest = digest;
        let cross = if crate::cross::is_cross(host, target) {
            match crate::cross::detect(host, target) {
                Ok(tc) => Some(tc),
                Err(e) => {
                    unknown.push(format!("cross toolchain: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let env = crate::key::BuildEnv::capture(&ctx.repo_root);
        let inputs = crate::key::inputs(&crate::key::KeyRequest {
            profile: &profile,
            target,
            host,
            source: &source,
            runtime_source: if with_runtime {
                Some(crate::runtime_build::source_digest(&ctx.repo_root)?)
            } else {
                None
            },
            env: &env,
            cross: cross.as_ref(),
        });
        if unknown.is_empty() {
            key_inputs = Some(inputs);
        }
    }
    let key = key_inputs.as_ref().map(crate::cache::key_of);
    let cache = match &key {
        None => CacheState::Unknown {
            why: unknown.join("; "),
        },
        Some(key) => {
            let cache = Cache::new(&ctx.cache_dir);
            let entry = cache.entry_dir(key);
            match cache.lookup(key) {
                _ if args.rebuild() => CacheState::Build {
                    reason: "--force".into(),
                },
                Lookup::Hit(m) => {
                    let now = crate::key::fingerprint_for(&profile, host);
                    let mut changes = crate::cache::explain_fingerprint(&m.fingerprint, &now);
                    changes.extend(crate::verify::prefix::skipped_but_runnable_here(
                        &m,
                        &entry.join("prefix"),
                        host,
                    ));
                    if changes.is_empty() {
                        CacheState::Hit { entry }
                    } else {
                        CacheState::Reverify { entry, changes }
                    }
                }
                Lookup::Absent => CacheState::Build {
                    reason: format!("no cached build for key {key}"),
                },
                Lookup::Corrupt { reason } => CacheState::Build {
                    reason: format!("cache entry {key} is damaged ({reason}): treated as absent"),
                },
            }
        }
    };
    let offer = if args.prebuilt_index.is_empty() {
        None
    } else {
        match crate::prebuilt::install::offer(
            ctx,
            target,
            host,
            &args.prebuilt_index,
            args.allow_http,
        ) {
            Ok(o) => Some(o),
            // An unreadable index does not matter when the tuned build is used anyway.
            Err(e) if matches!(cache, CacheState::Hit { .. } | CacheState::Reverify { .. }) => {
                Some(Offer {
                    candidate: None,
                    rejected: vec![format!("(index unreadable: {e:#})")],
                })
            }
            Err(e) => return Err(e),
        }
    };
    let flags = Flags {
        force: args.rebuild(),
        from_source: args.from_source,
        lib_only: args.lib_only,
    };
    let (action, chosen_because) = decide(flags, key.as_deref(), &cache, offer.as_ref());
    let tune = key
        .as_deref()
        .filter(|_| {
            action != Action::InstallPrebuilt && !args.lib_only && args.machine.machine.is_none()
        })
        .map(|k| crate::tune::plan(ctx, k, &args.tune, args.force));
    Ok(SetupPlan {
        host: MachineSummary::of(host, "this machine (probed)".into()),
        target: MachineSummary::of(
            target,
            match &args.machine.machine {
                Some(f) => format!("recorded Machine {}", f.display()),
                None => "this machine (probed)".into(),
            },
        ),
        tools: ToolsPlan {
            will_install: action == Action::Build,
            build: build_tools,
            vulkan,
            vulkan_headers,
            cuda_wheels,
        },
        source,
        key,
        key_inputs,
        cache,
        prebuilt: offer.map(|o| PrebuiltPlan {
            indexes: args.prebuilt_index.clone(),
            taken: action == Action::InstallPrebuilt,
            candidate: o.candidate,
            rejected: o.rejected,
        }),
        action,
        chosen_because,
        model: args.model.clone(),
        sets_current: !args.keep_current,
        tune,
    })
}

fn names(p: &InstallPlan) -> String {
    p.tools
        .iter()
        .map(|t| t.tool.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn summarize_source(p: &crate::source::SourcePlan) -> SourceSummary {
    use crate::source::Step;
    let (origin, state, location) = match &p.step {
        Step::Registry(r) => {
            let found = cargo_registry_src(&format!("{}-{}", r.crate_name, r.version));
            (
                format!("crate {}@{} ({})", r.crate_name, r.version, r.subfolder),
                if found.is_some() {
                    "cached"
                } else {
                    "to_fetch"
                },
                found,
            )
        }
        Step::Git(g) => (
            format!("git {} at {}", g.url, g.rev),
            if g.checkout.join(".git").exists() {
                "cached"
            } else {
                "to_fetch"
            },
            Some(g.checkout.clone()),
        ),
        Step::Path { root } => (
            format!("path {}", root.display()),
            "local",
            Some(root.clone()),
        ),
    };
    SourceSummary {
        transport: p.transport.to_string(),
        origin,
        expected_digest: p.expected_digest.clone(),
        state: state.into(),
        location,
    }
}

/// Where cargo has unpacked `<crate>-<version>` (`$CARGO_HOME/registry/src/*/`), if it has.
fn cargo_registry_src(name: &str) -> Option<PathBuf> {
    let home = crate::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| crate::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .map(|e| e.path().join(name))
        .find(|p| p.is_dir())
}

/// The plan for people.
pub fn text(p: &SetupPlan) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line("setup plan (dry run: nothing was installed or written; no archive, tree or toolkit was downloaded)".into());
    line(format!(
        "  host:    {} ({} {}, {})",
        p.host.what, p.host.os, p.host.arch, p.host.cpu
    ));
    line(format!(
        "  target:  {} ({} {}, {})",
        p.target.what, p.target.os, p.target.arch, p.target.cpu
    ));
    let verb = if p.tools.will_install {
        "would install"
    } else {
        "missing, not needed by this plan"
    };
    for (what, plan) in [
        ("build", Some(&p.tools.build)),
        ("vulkan", p.tools.vulkan.as_ref()),
    ] {
        let Some(plan) = plan else { continue };
        for t in &plan.tools {
            line(format!(
                "  tools:   {verb} {} (package {}): {} [{what}]",
                t.tool, t.package, t.why
            ));
        }
        for c in &plan.commands {
            line(format!("           command: {c}"));
        }
        if !plan.tools.is_empty() && plan.manager.is_none() {
            line("           no supported package manager found: installing would fail".into());
        }
    }
    if p.tools.vulkan_headers {
        line(format!(
            "  tools:   {verb} newer Vulkan headers into the cache"
        ));
    }
    if let Some(w) = &p.tools.cuda_wheels {
        line(format!("  tools:   CUDA toolkit: {w}"));
    }
    if p.tools.build.tools.is_empty() && p.tools.vulkan.as_ref().is_none_or(|v| v.tools.is_empty())
    {
        line("  tools:   nothing to install".into());
    }
    line(format!(
        "  source:  {} ({}), digest {}{}",
        p.source.origin,
        p.source.state,
        p.source.expected_digest,
        p.source
            .location
            .as_ref()
            .map(|l| format!(", at {}", l.display()))
            .unwrap_or_default()
    ));
    line(format!(
        "  key:     {}",
        p.key
            .as_deref()
            .unwrap_or("unknown before installing/fetching")
    ));
    line(format!(
        "  cache:   {}",
        match &p.cache {
            CacheState::Hit { entry } => format!("hit ({})", entry.display()),
            CacheState::Reverify { changes, .. } => {
                format!("cached, re-verify: {}", changes.join("; "))
            }
            CacheState::Build { reason } => format!("build ({reason})"),
            CacheState::Unknown { why } => format!("unknown ({why})"),
        }
    ));
    if let Some(pb) = &p.prebuilt {
        match &pb.candidate {
            Some(c) => line(format!(
                "  prebuilt: {} from {} (sha256 {}, {}): {}",
                c.variant,
                c.url,
                c.sha256,
                if c.cached { "cached" } else { "to download" },
                if pb.taken {
                    "would be installed"
                } else {
                    "not taken"
                }
            )),
            None => line("  prebuilt: none fits".into()),
        }
        for r in &pb.rejected {
            line(format!("           rejected {r}"));
        }
    }
    line(format!(
        "  action:  {}",
        serde_json::to_value(p.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    ));
    line(format!("  because: {}", p.chosen_because));
    if let Some(t) = &p.tune {
        line(format!("  tune:    {}", t.line));
    }
    if !p.sets_current {
        line("  current: unchanged (--keep-current)".into());
    }
    if let Some(m) = &p.model {
        line(format!("  model:   {m} (fetched afterwards)"));
    }
    s
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub machine: crate::machine::MachineArg,
    /// Rebuild from source even when the cache holds this machine's build for the key; no
    /// prebuilt is installed
    #[arg(long)]
    pub force: bool,
    /// Build and verify only the llama.cpp libraries (for linking your own program): no runtime
    #[arg(long)]
    pub lib_only: bool,
    /// Build, verify and cache, but leave `current` (what `status` and `run` use) unchanged:
    /// for a second variant beside the machine's tuned build (e.g. Vulkan on lavapipe)
    #[arg(long)]
    pub keep_current: bool,
    /// Prebuilt index (a path or an https:// URL; repeatable): a fitting prebuilt is installed
    /// only when this machine's tuned build is not cached for the current key (a fresh tuned
    /// build always wins) and neither --from-source nor --force is given
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "TUNELLAMA_PREBUILT_INDEX",
        value_delimiter = ' '
    )]
    pub prebuilt_index: Vec<String>,
    /// Never install a prebuilt (even with indexes configured): always build from source
    #[arg(long)]
    pub from_source: bool,
    /// Accept plain http:// prebuilt URLs (loopback test servers)
    #[arg(long)]
    pub allow_http: bool,
    /// Also fetch (checksummed) a model from the catalog: a name, or `auto` for the recommended one
    #[arg(long, value_name = "NAME|auto")]
    pub model: Option<String>,
    #[command(flatten)]
    pub source: crate::source::SourceArgs,
    #[command(flatten)]
    pub tune: crate::tune::TuneArgs,
}

impl SetupArgs {
    /// `--force` rebuilds the rule-based build, except with `--tune`, where it means: measure
    /// again (the builds stay cached).
    pub fn rebuild(&self) -> bool {
        self.force && !self.tune.tune
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(host_cannot_run: Vec<String>) -> Offer {
        let index: crate::prebuilt::Index = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../prebuilt/index.example.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let a = index.artifacts[0].clone();
        Offer {
            candidate: Some(Candidate {
                index: "idx.json".into(),
                variant: a.variant.clone(),
                url: a.url.clone(),
                sha256: a.sha256.clone(),
                size: a.size,
                key: "prebuilt-x".into(),
                cached: false,
                host_cannot_run,
                artifact: a,
            }),
            rejected: vec![],
        }
    }

    fn hit() -> CacheState {
        CacheState::Hit {
            entry: "/c/builds-v1/k".into(),
        }
    }

    fn absent() -> CacheState {
        CacheState::Build {
            reason: "no cached build for key k".into(),
        }
    }

    #[test]
    fn a_fresh_tuned_build_wins_over_a_fitting_prebuilt() {
        let (a, why) = decide(Flags::default(), Some("k"), &hit(), Some(&offer(vec![])));
        assert_eq!(a, Action::UseCached);
        assert!(why.contains("tuned build k is cached and fresh"), "{why}");
        assert!(why.contains("is not installed"), "{why}");
        let reverify = CacheState::Reverify {
            entry: "/c".into(),
            changes: vec!["driver 1 → 2".into()],
        };
        let (a, _) = decide(Flags::default(), Some("k"), &reverify, Some(&offer(vec![])));
        assert_eq!(a, Action::Reverify);
    }

    #[test]
    fn a_prebuilt_is_taken_only_without_a_tuned_build_and_without_from_source() {
        let (a, why) = decide(Flags::default(), Some("k"), &absent(), Some(&offer(vec![])));
        assert_eq!(a, Action::InstallPrebuilt, "{why}");
        let from_source = Flags {
            from_source: true,
            ..Flags::default()
        };
        let (a, why) = decide(from_source, Some("k"), &absent(), Some(&offer(vec![])));
        assert_eq!(a, Action::Build);
        assert!(why.contains("--from-source"), "{why}");
    }

    #[test]
    fn force_rebuilds_from_source_even_with_a_cached_build_or_a_prebuilt() {
        let force = Flags {
            force: true,
            ..Flags::default()
        };
        for cache in [hit(), absent()] {
            let (a, why) = decide(force, Some("k"), &cache, Some(&offer(vec![])));
            assert_eq!(a, Action::Build);
            assert!(why.starts_with("--force"), "{why}");
        }
    }

    #[test]
    fn a_prebuilt_this_machine_cannot_run_is_not_taken() {
        let o = offer(vec![
            "needs CPU feature avx512f, this machine lacks it".into()
        ]);
        let (a, why) = decide(Flags::default(), Some("k"), &absent(), Some(&o));
        assert_eq!(a, Action::Build);
        assert!(why.contains("avx512f"), "{why}");
    }
}
