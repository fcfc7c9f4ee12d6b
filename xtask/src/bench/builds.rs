//! `cargo xtask bench`: what tuning buys on this machine. Builds (cached) the tuned and the
//! portable llama.cpp of the same pin through `setup`'s path, writes a realistic-shape random model
//! once per weight type, runs both runtimes' `bench` in alternating rounds (so drift and noise
//! hit both alike), and prints pp/tg tokens/s for each build and the tuned/portable ratio.

use crate::artifact::{self, Ensured, Reference, Request};
use crate::cmd::Cmd;
use crate::context::Ctx;
use crate::progress::Progress;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub tuned: BuildRef,
    pub portable: BuildRef,
    pub threads: u32,
    pub rounds: u32,
    pub results: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct BuildRef {
    pub key: String,
    pub runtime_bin: PathBuf,
    pub system_info: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub model: String,
    pub quant: String,
    /// `pp512`, `tg128`.
    pub test: String,
    pub tuned: Stat,
    pub portable: Stat,
    /// tuned mean / portable mean.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    pub tps_mean: f64,
    pub tps_stddev: f64,
    pub samples: Vec<f64>,
}

impl Stat {
    fn of(samples: Vec<f64>) -> Stat {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = if samples.len() > 1 {
            samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Stat {
            tps_mean: mean,
            tps_stddev: var.sqrt(),
            samples,
        }
    }
}

fn build_ref(e: &Ensured) -> BuildRef {
    BuildRef {
        key: e.key.clone(),
        runtime_bin: e.runtime_bin(),
        system_info: e
            .manifest
            .verification
            .as_ref()
            .and_then(|v| v.pointer("/smoke/system_info"))
            .and_then(|s| s.as_str())
            .map(str::to_string),
    }
}

/// The benchmark model for `quant`, written once into the cache (deterministic, so reusable).
pub(crate) fn model(
    ctx: &Ctx,
    shape: &str,
    quant: &str,
    progress: &dyn Progress,
) -> anyhow::Result<PathBuf> {
    use crate::testmodel::{Quant, ShapeName, Spec};
    use clap::ValueEnum;
    let shape_name = ShapeName::from_str(shape, true)
        .map_err(|_| anyhow::anyhow!("unknown --shape {shape:?}: use `bench` or `tiny`"))?;
    let q = Quant::from_str(quant, true)
        .map_err(|_| anyhow::anyhow!("unknown --quant {quant:?}: use f32, f16, q8_0 or q4_0"))?;
    let spec = Spec::named(shape_name, Some(q), 1);
    let path = ctx.cache_dir.join("bench").join(format!(
        "{shape}-{quant}-seed{}-w{}.gguf",
        spec.seed,
        env!("CARGO_PKG_VERSION")
    ));
    if !path.is_file() {
        fs_err::create_dir_all(path.parent().expect("has parent"))?;
        ctx.info(format!(
            "writing the {shape} {quant} benchmark model ({} parameters) to {}",
            spec.param_count(),
            path.display()
        ));
        crate::testmodel::write_with_progress(&spec, &path, progress)?;
    }
    Ok(path)
}

/// One `bench` run of one runtime; returns (test name, tokens/s) per test.
fn run_once(
    bin: &Path,
    model: &Path,
    a: &BenchBuildsArgs,
    threads: u32,
) -> anyhow::Result<Vec<(String, f64)>> {
    let out = Cmd::new(bin)
        .arg("bench")
        .arg("-m")
        .arg(model)
        .args([
            "-p",
            &a.prompt_tokens.to_string(),
            "-n",
            &a.gen_tokens.to_string(),
        ])
        .args(["-r", "1", "-t", &threads.to_string(), "--json"])
        .timeout(Duration::from_secs(3600))
        .run()?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| anyhow::anyhow!("`{} bench --json` printed no JSON: {e}", bin.display()))?;
    let results = v["results"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("`bench --json` has no results array"))?;
    Ok(results
        .iter()
        .filter_map(|r| Some((r["test"].as_str()?.to_string(), r["tps_mean"].as_f64()?)))
        .collect())
}

pub fn run(ctx: &Ctx, a: &BenchBuildsArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    if a.rounds == 0 || a.prompt_tokens == 0 || a.gen_tokens == 0 {
        anyhow::bail!("--rounds, --prompt-tokens and --gen-tokens must be at least 1");
    }
    let host = crate::prereq::ensure_build_tools(ctx)?;
    let overrides = crate::profile::load_overrides(ctx, None)?;
    let profile = crate::profile::plan(&host, &overrides);
    let plan = crate::source::plan_from_args(ctx, &crate::source::SourceArgs::default())?;
    let tree = crate::source::obtain(&plan, progress)?;
    let tuned = artifact::ensure(
        ctx,
        &Request {
            label: "tuned",
            target: &host,
            host: &host,
            profile: &profile,
            tree: &tree,
            force: false,
            reference: Reference::Portable,
            with_runtime: true,
        },
        progress,
    )?;
    let portable_machine = artifact::portable_machine(&host);
    let portable_profile = crate::profile::plan(&portable_machine, &Default::default());
    let portable = artifact::ensure(
        ctx,
        &Request {
            label: "portable",
            target: &portable_machine,
            host: &host,
            profile: &portable_profile,
            tree: &tree,
            force: false,
            reference: Reference::SelfIsReference,
            with_runtime: true,
        },
        progress,
    )?;
    let threads = a.threads.unwrap_or(profile.runtime.threads).max(1);
    let mut rows = Vec::new();
    for quant in &a.quant {
        let model = model(ctx, &a.shape, quant, progress)?;
        let mut samples: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
        for round in 0..a.rounds {
            ctx.info(format!("{quant}: round {}/{}", round + 1, a.rounds));
            // Alternate which build goes first, so neither always runs on a warmer machine.
            let order: [(bool, &Ensured); 2] = if round % 2 == 0 {
                [(true, &tuned), (false, &portable)]
            } else {
                [(false, &portable), (true, &tuned)]
            };
            for (is_tuned, e) in order {
                for (test, tps) in run_once(&e.runtime_bin(), &model, a, threads)? {
                    let slot = match samples.iter().position(|s| s.0 == test) {
                        Some(i) => i,
                        None => {
                            samples.push((test, Vec::new(), Vec::new()));
                            samples.len() - 1
                        }
                    };
                    if is_tuned {
                        samples[slot].1.push(tps);
                    } else {
                        samples[slot].2.push(tps);
                    }
                }
            }
        }
        for (test, t, p) in samples {
            let (t, p) = (Stat::of(t), Stat::of(p));
            rows.push(Row {
                model: format!("{} {quant}", a.shape),
                quant: quant.clone(),
                test,
                ratio: if p.tps_mean > 0.0 {
                    t.tps_mean / p.tps_mean
                } else {
                    f64::NAN
                },
                tuned: t,
                portable: p,
            });
        }
    }
    let report = BenchReport {
        tuned: build_ref(&tuned),
        portable: build_ref(&portable),
        threads,
        rounds: a.rounds,
        results: rows,
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &BenchReport) {
    println!(
        "tuned    {} ({})",
        r.tuned.key,
        r.tuned.system_info.as_deref().unwrap_or("?")
    );
    println!(
        "portable {} ({})",
        r.portable.key,
        r.portable.system_info.as_deref().unwrap_or("?")
    );
    println!(
        "{} threads, {} rounds (mean ± stddev tokens/s)\n",
        r.threads, r.rounds
    );
    println!("| model | test | tuned t/s | portable t/s | tuned/portable |");
    println!("|---|---|---:|---:|---:|");
    for row in &r.results {
        println!(
            "| {} | {} | {:.1} ± {:.1} | {:.1} ± {:.1} | {:.2}× |",
            row.model,
            row.test,
            row.tuned.tps_mean,
            row.tuned.tps_stddev,
            row.portable.tps_mean,
            row.portable.tps_stddev,
            row.ratio
        );
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

/// `cargo xtask bench` without a subcommand: the tuned build against the portable baseline.
#[derive(Debug, clap::Args, Clone)]
pub struct BenchBuildsArgs {
    /// Model shape: `bench` (~0.4B parameters, realistic) or `tiny` (seconds; for tests)
    #[arg(long, default_value = "bench", value_name = "SHAPE")]
    pub shape: String,
    /// Weight types to measure, comma-separated
    #[arg(
        long,
        default_value = "q8_0,q4_0",
        value_delimiter = ',',
        value_name = "TYPES"
    )]
    pub quant: Vec<String>,
    /// Prompt-processing test size (tokens in one batch)
    #[arg(short = 'p', long, default_value_t = 512, value_name = "N")]
    pub prompt_tokens: u32,
    /// Generation test size (tokens, one at a time)
    #[arg(short = 'n', long, default_value_t = 128, value_name = "N")]
    pub gen_tokens: u32,
    /// Rounds; each round runs both builds once, alternating, so drift hits both alike
    #[arg(short = 'r', long, default_value_t = 3, value_name = "N")]
    pub rounds: u32,
    /// Threads for both builds [default: the profile's]
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_mean_and_sample_stddev() {
        let s = Stat::of(vec![2.0, 4.0, 6.0]);
        assert_eq!(s.tps_mean, 4.0);
        assert!((s.tps_stddev - 2.0).abs() < 1e-12);
        assert_eq!(Stat::of(vec![5.0]).tps_stddev, 0.0);
    }
}
