//! `setup --tune`: choose build variants and runtime knobs by measurement instead of by rule.
//! Stages: [`candidates`] (what to try, pure) → [`measure`] (`tunellama bench` in alternating
//! rounds) → [`choose`] (the noise rule, pure) → the record (`tune.json` in the rule-based build's
//! cache entry) → the tuned build (the rule-based profile plus the record, through the normal
//! cached build path).
//!
//! Keys: the rule-based build's key (the *base key*) identifies what was measured and where the
//! record lives; the tuned build is the base profile with the record's defines and runtime
//! defaults (and their evidence) applied, so its key comes from the one key computation (key.rs)
//! like any other build: a different runtime-info.json, a different key. A later `setup`
//! re-applies the record while the base key is unchanged; a changed base key (new pin,
//! toolchain, rules, runtime) has no record, so tuning starts over.

pub mod candidates;
pub mod choose;
pub mod measure;

use crate::artifact::{self, Ensured, Reference, Request};
use crate::cache::Cache;
use crate::context::Ctx;
use crate::machine::Machine;
use crate::profile::overrides::{DefineValue, Overrides};
use crate::profile::{Profile, TunedEvidence};
use crate::progress::Progress;
use candidates::{BuildCandidate, Knobs, DEFAULT_BUILD};
use choose::StageResult;
use measure::{Arm, Workload};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The record's file name inside the base build's cache entry.
pub const RECORD: &str = "tune.json";
pub const RECORD_SCHEMA: u32 = 2;

/// Everything `setup --tune` measured and chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneRecord {
    pub schema: u32,
    /// The rule-based build measured against (the entry holding this file).
    pub base_key: String,
    /// `YYYY-MM-DD HH:MM UTC`.
    pub on: String,
    pub budget_seconds: f64,
    pub spent_seconds: f64,
    pub workload: Workload,
    /// The runtime defaults of the rule-based build.
    pub default_knobs: Knobs,
    /// The winning build (`default`: the rule-based one) and knobs.
    pub build: BuildCandidate,
    pub knobs: Knobs,
    /// Every measured stage: every arm's samples, spread and verdict.
    pub stages: Vec<StageResult>,
    /// Candidates and stages not measured, and why (the budget, a failed build).
    pub skipped: Vec<String>,
    /// One line per stage: the choice and its evidence.
    pub evidence: Vec<String>,
    /// The tuned build's key (set once it is built).
    pub tuned_key: Option<String>,
}

/// What `setup` says about tuning (in `setup --json` too).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `tuned` (measured now) or `reused`.
    pub state: String,
    pub on: String,
    pub base_key: String,
    pub tuned_key: String,
    pub record: PathBuf,
    pub build: String,
    pub knobs: Knobs,
    pub evidence: Vec<String>,
    pub skipped: Vec<String>,
}

/// The record of `base_key`, if tuning ran for it.
pub fn record_path(cache: &Cache, base_key: &str) -> PathBuf {
    cache.entry_dir(base_key).join(RECORD)
}

pub fn load(cache: &Cache, base_key: &str) -> Option<TuneRecord> {
    let text = std::fs::read_to_string(record_path(cache, base_key)).ok()?;
    let r: TuneRecord = serde_json::from_str(&text).ok()?;
    (r.schema == RECORD_SCHEMA && r.base_key == base_key).then_some(r)
}

fn save(cache: &Cache, r: &TuneRecord) -> anyhow::Result<PathBuf> {
    let path = record_path(cache, &r.base_key);
    crate::fsx::write_atomic(&path, serde_json::to_string_pretty(r)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// `10m`, `90s`, `1h`, `600` (seconds).
pub fn parse_budget(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("--tune-budget `{s}`: expected a duration like 10m, 90s or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("--tune-budget `{s}`: the unit must be s, m or h")),
    };
    if secs <= 0.0 {
        return Err(format!("--tune-budget `{s}` must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The profile of the tuned build: the base profile's overrides plus the record's defines, and
/// the record's runtime defaults with their evidence. Pure: the same record gives the same
/// profile (so the same key) on every `setup`.
pub fn tuned_profile(target: &Machine, overrides: &Overrides, r: &TuneRecord) -> Profile {
    let mut o = overrides.clone();
    for (k, v) in &r.build.defines {
        o.defines.insert(k.clone(), DefineValue::Text(v.clone()));
    }
    let mut p = crate::profile::plan(target, &o);
    let line = |stage: &str| {
        r.stages
            .iter()
            .find(|s| s.session.stage == stage)
            .map(choose::evidence)
    };
    let tag = |l: String| format!("measured by setup --tune on {}: {l}", r.on);
    if !r.build.defines.is_empty() {
        let ev = line("build").unwrap_or_default();
        for d in p
            .decisions
            .iter_mut()
            .filter(|d| r.build.defines.contains_key(&d.name))
        {
            d.reason = format!("tuned build `{}`: {}", r.build.name, r.build.why);
            d.fact = tag(ev.clone());
            d.overridden = Some(format!("{RECORD} of build {}", r.base_key));
        }
        p.cmake = crate::profile::render_cmake(
            crate::profile::CMAKE_TEMPLATE,
            &crate::profile::TemplateContext {
                machine: &p.machine,
                decisions: &p.decisions,
            },
        )
        .expect("the embedded template renders");
    }
    let rt = &mut p.runtime;
    if let Some(l) = line("threads") {
        rt.threads = r.knobs.threads;
        rt.threads_why = tag(l);
    }
    if let Some(l) = line("flash_attn").filter(|_| r.knobs.flash_attn != "auto") {
        rt.flash_attn = Some(r.knobs.flash_attn.clone());
        rt.flash_attn_why = Some(tag(l));
    }
    if let (Some(l), Some(u)) = (line("ubatch"), r.knobs.ubatch) {
        rt.ubatch = Some(u);
        rt.ubatch_why = Some(tag(l));
    }
    rt.tuned = Some(TunedEvidence {
        on: r.on.clone(),
        base_key: r.base_key.clone(),
        evidence: r.evidence.clone(),
    });
    p
}

/// What `setup` gives the tuning step.
pub struct Inputs<'a> {
    pub target: &'a Machine,
    pub host: &'a Machine,
    pub overrides: &'a Overrides,
    /// The rule-based profile.
    pub profile: &'a Profile,
    pub tree: &'a crate::source::Tree,
    /// The rule-based build (the base key).
    pub base: &'a Ensured,
}

/// After the rule-based build: tune (with `--tune`, when no record exists or with `--force`) or
/// reuse the record, then ensure the tuned build. `None` when there is no record and no `--tune`.
pub fn after_setup(
    ctx: &Ctx,
    args: &TuneArgs,
    force: bool,
    inp: &Inputs,
    progress: &dyn Progress,
) -> anyhow::Result<Option<(Ensured, Summary)>> {
    let cache = Cache::new(&ctx.cache_dir);
    let existing = load(&cache, &inp.base.key);
    let (mut record, state) = match existing {
        Some(r) if !(args.tune && force) => {
            ctx.info(format!(
                "setup: tuned on {}, reused (record {})",
                r.on,
                record_path(&cache, &r.base_key).display()
            ));
            (r, "reused")
        }
        _ if args.tune => (tune(ctx, args, inp, progress)?, "tuned"),
        _ => return Ok(None),
    };
    let profile = tuned_profile(inp.target, inp.overrides, &record);
    let tuned = artifact::ensure(
        ctx,
        &Request {
            label: "tuned (measured)",
            target: inp.target,
            host: inp.host,
            profile: &profile,
            tree: inp.tree,
            force: false,
            reference: Reference::ShippedOrPortable,
            with_runtime: true,
        },
        progress,
    )?;
    if record.tuned_key.as_deref() != Some(tuned.key.as_str()) {
        record.tuned_key = Some(tuned.key.clone());
        save(&cache, &record)?;
    }
    let summary = Summary {
        state: state.into(),
        on: record.on.clone(),
        base_key: record.base_key.clone(),
        tuned_key: tuned.key.clone(),
        record: record_path(&cache, &record.base_key),
        build: record.build.name.clone(),
        knobs: record.knobs.clone(),
        evidence: record.evidence.clone(),
        skipped: record.skipped.clone(),
    };
    Ok(Some((tuned, summary)))
}

/// The pp/tg test sizes for a bench shape: pp256/tg64 on the bench model (half of `bench`'s
/// default; docs/bench.md's figures use the same), pp64/tg16 on the tiny one.
fn sizes(shape: &str) -> (u32, u32) {
    if shape == "tiny" {
        (64, 16)
    } else {
        (256, 64)
    }
}

fn now_utc() -> String {
    crate::cmd::Cmd::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .run()
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_else(|_| "unknown date".into())
}

/// Measure and choose, within the budget; writes the record.
fn tune(
    ctx: &Ctx,
    args: &TuneArgs,
    inp: &Inputs,
    progress: &dyn Progress,
) -> anyhow::Result<TuneRecord> {
    let started = Instant::now();
    let budget = parse_budget(&args.tune_budget).map_err(|e| anyhow::anyhow!(e))?;
    let deadline = started + budget;
    let left = || deadline.saturating_duration_since(Instant::now());
    let say = |m: String| ctx.info(m);
    let model = crate::bench::builds::model(ctx, &args.tune_shape, &args.tune_quant, progress)?;
    let (prompt_tokens, gen_tokens) = sizes(&args.tune_shape);
    let w = Workload {
        model,
        model_desc: format!("{} {}", args.tune_shape, args.tune_quant),
        prompt_tokens,
        gen_tokens,
    };
    let default_knobs = Knobs::default_for(inp.profile);
    let mut skipped = Vec::new();
    // One timed run: checks the binary takes the knobs and sizes every later estimate.
    let t = Instant::now();
    measure::bench_once(&inp.base.runtime_bin(), &w, &default_knobs)?;
    let per_run = t.elapsed();
    say(format!(
        "tune: budget {:.0} s; one bench run of {} (pp{prompt_tokens}, tg{gen_tokens}) takes {:.1} s",
        budget.as_secs_f64(),
        w.model_desc,
        per_run.as_secs_f64()
    ));
    // The slowest bench run seen so far sizes the next stage (load can change while tuning).
    let per_run = std::cell::Cell::new(per_run);
    let stage_cost = |arms: usize| per_run.get() * (2 * arms as u32);

    // Build candidates, each through the normal cached path.
    let default_build = BuildCandidate {
        name: DEFAULT_BUILD.into(),
        defines: Default::default(),
        why: "the rule-based profile".into(),
    };
    let mut builds: Vec<(BuildCandidate, PathBuf)> =
        vec![(default_build.clone(), inp.base.runtime_bin())];
    let all = candidates::builds(inp.profile, inp.target);
    let chosen =
        candidates::select(all, args.tune_builds.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    let build_estimate = Duration::from_secs_f64(inp.base.manifest.build_seconds + 60.0);
    for c in chosen {
        let probe = TuneRecord {
            build: c.clone(),
            ..empty_record(&inp.base.key, &w, &default_knobs)
        };
        let profile = tuned_profile(inp.target, inp.overrides, &probe);
        let cached = is_cached(ctx, inp, &profile)?;
        // A build may take at most half of what is left: the rest is for measuring.
        if !cached && build_estimate > left() / 2 {
            skipped.push(format!(
                "build {}: not built, ~{:.0} s of building would leave too little of the budget ({:.0} s left) to measure",
                c.name,
                build_estimate.as_secs_f64(),
                left().as_secs_f64()
            ));
            say(format!("tune: {}", skipped.last().expect("pushed")));
            continue;
        }
        say(format!(
            "tune: build candidate {} ({}): {}",
            c.name,
            if cached { "cached" } else { "building" },
            c.why
        ));
        // Only the build variant matters here: no tuned runtime defaults in the candidate.
        let mut profile = profile;
        profile.runtime = inp.profile.runtime.clone();
        match artifact::ensure(
            ctx,
            &Request {
                label: &format!("tune candidate {}", c.name),
                target: inp.target,
                host: inp.host,
                profile: &profile,
                tree: inp.tree,
                force: false,
                reference: Reference::ShippedOrPortable,
                with_runtime: true,
            },
            progress,
        ) {
            Ok(e) => builds.push((c, e.runtime_bin())),
            Err(e) => {
                skipped.push(format!(
                    "build {}: failed to build or verify: {e:#}",
                    c.name
                ));
                say(format!("tune: {}", skipped.last().expect("pushed")));
            }
        }
    }

    let mut stages = Vec::new();
    let mut stage = |name: &str,
                     arms: Vec<Arm>,
                     skipped: &mut Vec<String>|
     -> anyhow::Result<usize> {
        if arms.len() < 2 {
            return Ok(0);
        }
        if stage_cost(arms.len()) > left() {
            skipped.push(format!(
                "{name}: not measured, {} arms x 2 rounds (~{:.0} s) do not fit in the {:.0} s left of the budget",
                arms.len(),
                stage_cost(arms.len()).as_secs_f64(),
                left().as_secs_f64()
            ));
            say(format!("tune: {}", skipped.last().expect("pushed")));
            return Ok(0);
        }
        let s = measure::run(name, &arms, &w, args.tune_rounds.max(2), deadline, &say)?;
        let runs = (s.rounds as usize * arms.len()).max(1) as f64;
        per_run.set(per_run.get().max(Duration::from_secs_f64(s.seconds / runs)));
        if let Some(why) = &s.stopped {
            say(format!("tune {name}: {why}"));
        }
        let r = choose::choose(s);
        say(format!("tune {name}: {}", choose::evidence(&r)));
        let i = r.winner_index();
        stages.push(r);
        Ok(i)
    };

    let arm = |name: String, b: &(BuildCandidate, PathBuf), knobs: Knobs| Arm {
        name,
        build: b.0.name.clone(),
        bin: b.1.clone(),
        knobs,
    };
    let build_arms: Vec<Arm> = builds
        .iter()
        .map(|b| arm(format!("build {}", b.0.name), b, default_knobs.clone()))
        .collect();
    let won = stage("build", build_arms, &mut skipped)?;
    let build = builds[won].clone();
    let mut knobs = default_knobs.clone();

    let logical = inp.host.cpu.logical_cores.unwrap_or(knobs.threads).max(1);
    let arms: Vec<Arm> = candidates::threads(knobs.threads, logical)
        .into_iter()
        .map(|t| {
            let k = Knobs {
                threads: t,
                ..knobs.clone()
            };
            arm(format!("threads {t}"), &build, k)
        })
        .collect();
    let i = stage("threads", arms.clone(), &mut skipped)?;
    knobs = arms[i].knobs.clone();

    let arms: Vec<Arm> = candidates::flash_attn()
        .into_iter()
        .map(|f| {
            let k = Knobs {
                flash_attn: f.clone(),
                ..knobs.clone()
            };
            arm(format!("flash-attn {f}"), &build, k)
        })
        .collect();
    let i = stage("flash_attn", arms.clone(), &mut skipped)?;
    knobs = arms[i].knobs.clone();

    let arms: Vec<Arm> = candidates::ubatch(prompt_tokens)
        .into_iter()
        .map(|u| {
            let k = Knobs {
                ubatch: u,
                ..knobs.clone()
            };
            let name = u.map_or("ubatch whole".into(), |u| format!("ubatch {u}"));
            arm(name, &build, k)
        })
        .collect();
    let i = stage("ubatch", arms.clone(), &mut skipped)?;
    knobs = arms[i].knobs.clone();

    let mut evidence: Vec<String> = stages.iter().map(choose::evidence).collect();
    evidence.extend(skipped.iter().cloned());
    let record = TuneRecord {
        schema: RECORD_SCHEMA,
        base_key: inp.base.key.clone(),
        on: now_utc(),
        budget_seconds: budget.as_secs_f64(),
        spent_seconds: started.elapsed().as_secs_f64(),
        workload: w,
        default_knobs,
        build: build.0,
        knobs,
        stages,
        skipped,
        evidence,
        tuned_key: None,
    };
    let path = save(&Cache::new(&ctx.cache_dir), &record)?;
    ctx.info(format!(
        "tune: chose build {} with {} in {:.0} s of a {:.0} s budget; evidence in {}",
        record.build.name,
        record.knobs.describe(),
        record.spent_seconds,
        record.budget_seconds,
        path.display()
    ));
    Ok(record)
}

fn empty_record(base_key: &str, w: &Workload, k: &Knobs) -> TuneRecord {
    TuneRecord {
        schema: RECORD_SCHEMA,
        base_key: base_key.into(),
        on: String::new(),
        budget_seconds: 0.0,
        spent_seconds: 0.0,
        workload: w.clone(),
        default_knobs: k.clone(),
        build: BuildCandidate {
            name: DEFAULT_BUILD.into(),
            defines: Default::default(),
            why: String::new(),
        },
        knobs: k.clone(),
        stages: Vec::new(),
        skipped: Vec::new(),
        evidence: Vec::new(),
        tuned_key: None,
    }
}

/// Whether a build candidate's llama.cpp libraries are already cached (any entry with the same
/// tree, profile hash and toolchain): then trying it costs a runtime build at most.
fn is_cached(ctx: &Ctx, inp: &Inputs, profile: &Profile) -> anyhow::Result<bool> {
    let env = crate::key::BuildEnv::capture(&ctx.repo_root);
    let inputs = crate::key::inputs(&crate::key::KeyRequest {
        profile,
        target: inp.target,
        host: inp.host,
        source: &crate::key::SourceId::of_tree(inp.tree),
        runtime_source: None,
        env: &env,
        cross: None,
    });
    Ok(Cache::new(&ctx.cache_dir).list().into_iter().any(|(_, m)| {
        m.inputs.tree_digest == inputs.tree_digest
            && m.inputs.profile_hash == inputs.profile_hash
            && m.inputs.toolchain == inputs.toolchain
    }))
}

/// `setup --dry-run`'s tuning line for the rule-based key.
#[derive(Debug, Clone, Serialize)]
pub struct TunePlan {
    /// `reuse` (a record exists), `tune` (`--tune` measures), `none`.
    pub action: String,
    pub record: Option<PathBuf>,
    pub line: String,
}

pub fn plan(ctx: &Ctx, base_key: &str, args: &TuneArgs, force: bool) -> TunePlan {
    let cache = Cache::new(&ctx.cache_dir);
    let path = record_path(&cache, base_key);
    match load(&cache, base_key) {
        Some(r) if !(args.tune && force) => TunePlan {
            action: "reuse".into(),
            line: format!(
                "tuned on {} (build {}, {}), would be reused{}",
                r.on,
                r.build.name,
                r.knobs.describe(),
                r.tuned_key
                    .map(|k| format!(" (tuned build {k})"))
                    .unwrap_or_default()
            ),
            record: Some(path),
        },
        Some(r) => TunePlan {
            action: "tune".into(),
            line: format!(
                "--tune --force: would measure again within {} (the record of {} is replaced)",
                args.tune_budget, r.on
            ),
            record: Some(path),
        },
        None if args.tune => TunePlan {
            action: "tune".into(),
            line: format!(
                "no tuned choice for this key: would measure build candidates and runtime knobs within {}",
                args.tune_budget
            ),
            record: None,
        },
        None => TunePlan {
            action: "none".into(),
            line: "no tuned choice for this key (rule-based defaults; `setup --tune` measures)"
                .into(),
            record: None,
        },
    }
}

/// The record for this machine's rule-based build, for `profile --explain` (the pinned tree, this
/// machine's toolchain and the runtime sources as they are now).
pub fn record_for_this_machine(ctx: &Ctx, m: &Machine, profile: &Profile) -> Option<TuneRecord> {
    let plan = crate::source::plan_from_args(ctx, &crate::source::SourceArgs::default()).ok()?;
    let env = crate::key::BuildEnv::capture(&ctx.repo_root);
    let key = crate::key::key(&crate::key::KeyRequest {
        profile,
        target: m,
        host: m,
        source: &crate::key::SourceId::of_plan(&plan),
        runtime_source: Some(crate::runtime_build::source_digest(&ctx.repo_root).ok()?),
        env: &env,
        cross: None,
    });
    load(&Cache::new(&ctx.cache_dir), &key)
}

// --- command-line options of this stage (flattened into `setup_plan::SetupArgs`)

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TuneArgs {
    /// Choose build variants and runtime knobs (threads, flash attention, ubatch) by measurement
    /// with `tunellama bench`; the choice is recorded (tune.json) and reused while the key is
    /// unchanged (`--tune --force` measures again)
    #[arg(long)]
    pub tune: bool,
    /// Time limit for the whole tuning (builds and measurements): 10m, 90s, 1h
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub tune_budget: String,
    /// Build candidates to try, comma-separated (threadpool, mtune-native, explicit-isa, or none)
    /// [default: all that differ from this profile's rules]
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub tune_builds: Option<Vec<String>>,
    /// Bench model shape for the measurements: `bench` (~0.4B parameters) or `tiny` (tests)
    #[arg(long, default_value = "bench", value_name = "SHAPE")]
    pub tune_shape: String,
    /// Weight type of the bench model
    #[arg(long, default_value = "q4_0", value_name = "TYPE")]
    pub tune_quant: String,
    /// Rounds per comparison (at least 2: the noise is their spread)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub tune_rounds: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use candidates::fixture_machine as machine;
    use measure::{ArmSamples, Session};

    fn samples(name: &str, knobs: &Knobs, pp: f64, tg: f64) -> ArmSamples {
        ArmSamples {
            name: name.into(),
            build: DEFAULT_BUILD.into(),
            knobs: knobs.clone(),
            pp: vec![pp, pp * 1.002, pp * 0.998],
            tg: vec![tg, tg * 1.002, tg * 0.998],
        }
    }

    /// A record where `threads 1` clearly beat the default and the thread-pool build won.
    fn record(p: &Profile) -> TuneRecord {
        let d = Knobs::default_for(p);
        let one = Knobs {
            threads: 1,
            ..d.clone()
        };
        let threads = choose::choose(Session {
            stage: "threads".into(),
            arms: vec![
                samples(&format!("threads {}", d.threads), &d, 100.0, 40.0),
                samples("threads 1", &one, 100.0, 52.0),
            ],
            rounds: 3,
            stopped: None,
            seconds: 1.0,
        });
        assert!(threads.changed());
        let w = Workload {
            model: "m.gguf".into(),
            model_desc: "tiny q8_0".into(),
            prompt_tokens: 64,
            gen_tokens: 16,
        };
        let mut r = empty_record("base", &w, &d);
        r.on = "2026-11-29 23:00 UTC".into();
        r.build = candidates::builds(p, &machine())
            .into_iter()
            .find(|c| c.name == "threadpool")
            .unwrap();
        r.knobs = one;
        r.evidence = vec![choose::evidence(&threads)];
        r.stages = vec![threads];
        r
    }

    fn key_of(m: &Machine, p: &Profile) -> String {
        crate::key::key(&crate::key::KeyRequest {
            profile: p,
            target: m,
            host: m,
            source: &crate::key::SourceId::fixture(),
            runtime_source: Some("runtime".into()),
            env: &Default::default(),
            cross: None,
        })
    }

    #[test]
    fn a_record_gives_the_tuned_profile_with_its_evidence_and_its_own_key() {
        let m = machine();
        let base = crate::profile::plan(&m, &Overrides::default());
        let r = record(&base);
        let tuned = tuned_profile(&m, &Overrides::default(), &r);
        assert_eq!(tuned.decision("GGML_OPENMP"), Some("OFF"));
        assert_eq!(tuned.runtime.threads, 1);
        assert!(
            tuned
                .runtime
                .threads_why
                .contains("threads 1: measured 1.30x tg"),
            "{}",
            tuned.runtime.threads_why
        );
        assert_eq!(tuned.runtime.tuned.as_ref().unwrap().evidence, r.evidence);
        // Knobs that were not measured keep the runtime's default (absent).
        assert_eq!(tuned.runtime.flash_attn, None);
        assert!(tuned.cmake.contains("GGML_OPENMP \"OFF\""));
        assert!(
            crate::report::profile_explain(&tuned).contains("tuned by measurement on 2026-11-29")
        );
        // Deterministic (the same key on every setup), and not the base key.
        let again = tuned_profile(&m, &Overrides::default(), &r);
        assert_eq!(key_of(&m, &tuned), key_of(&m, &again));
        assert_ne!(key_of(&m, &tuned), key_of(&m, &base));
    }

    #[test]
    fn a_record_round_trips_through_its_file_and_is_found_only_under_its_base_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let m = machine();
        let r = record(&crate::profile::plan(&m, &Overrides::default()));
        std::fs::create_dir_all(cache.entry_dir("base")).unwrap();
        save(&cache, &r).unwrap();
        assert_eq!(load(&cache, "base"), Some(r));
        assert_eq!(load(&cache, "other"), None);
    }

    #[test]
    fn budgets_parse_with_units() {
        assert_eq!(parse_budget("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_budget("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_budget("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_budget("45"), Ok(Duration::from_secs(45)));
        assert!(parse_budget("10x").is_err());
        assert!(parse_budget("0m").is_err());
    }
}
