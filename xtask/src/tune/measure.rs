//! `setup --tune`, stage 2: measure. Runs `tunellama bench` for every arm (a build with a set of
//! runtime knobs) in alternating rounds (round r starts at arm r mod n, so no arm always runs on
//! a warmer or busier machine), one repetition per run, and keeps every sample. Stops between
//! rounds when the next round would pass the deadline, and says so.

use super::candidates::Knobs;
use crate::cmd::Cmd;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One thing to measure: a runtime binary with knobs.
#[derive(Debug, Clone)]
pub struct Arm {
    /// `threads 1`, `build threadpool`.
    pub name: String,
    /// The build candidate's name.
    pub build: String,
    pub bin: PathBuf,
    pub knobs: Knobs,
}

/// The bench workload: the model and the test sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub model: PathBuf,
    /// `bench q4_0`: shape and weight type.
    pub model_desc: String,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
}

/// Every sample of one arm (tokens/s, one per round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSamples {
    pub name: String,
    pub build: String,
    pub knobs: Knobs,
    pub pp: Vec<f64>,
    pub tg: Vec<f64>,
}

/// One measured comparison; arm 0 is the reference (the current choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `build`, `threads`, `flash_attn`, `ubatch`.
    pub stage: String,
    pub arms: Vec<ArmSamples>,
    pub rounds: u32,
    /// Why fewer rounds than asked for ran (the budget).
    pub stopped: Option<String>,
    pub seconds: f64,
}

/// `tunellama bench` once with `knobs`: (pp tokens/s, tg tokens/s).
pub fn bench_once(bin: &Path, w: &Workload, knobs: &Knobs) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Cmd::new(bin)
        .arg("bench")
        .arg("-m")
        .arg(&w.model)
        .args(["-p", &w.prompt_tokens.to_string()])
        .args(["-n", &w.gen_tokens.to_string()])
        .args(["-r", "1", "--json"])
        .args(["-t", &knobs.threads.to_string()])
        .args(["--flash-attn", &knobs.flash_attn]);
    if let Some(u) = knobs.ubatch {
        cmd = cmd.args(["--ubatch-size", &u.to_string()]);
    }
    let out = cmd.timeout(Duration::from_secs(1800)).run()?;
    parse_bench(&out.stdout).map_err(|e| anyhow::anyhow!("`{} bench --json`: {e}", bin.display()))
}

/// (pp, tg) tokens/s from `tunellama bench --json`.
pub fn parse_bench(stdout: &str) -> Result<(f64, f64), String> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| format!("printed no JSON: {e}"))?;
    let results = v["results"].as_array().ok_or("no results array")?;
    let get = |prefix: &str| {
        results
            .iter()
            .find(|r| r["test"].as_str().is_some_and(|t| t.starts_with(prefix)))
            .and_then(|r| r["tps_mean"].as_f64())
            .ok_or(format!("no {prefix} result"))
    };
    Ok((get("pp")?, get("tg")?))
}

/// Rounds of every arm, alternating the order. `rounds` is the most; a round starts only when
/// the previous round's duration still fits before `deadline` (the first two always run: two
/// rounds are the least that show the noise).
pub fn run(
    stage: &str,
    arms: &[Arm],
    w: &Workload,
    rounds: u32,
    deadline: Instant,
    say: &dyn Fn(String),
) -> anyhow::Result<Session> {
    let started = Instant::now();
    let mut samples: Vec<ArmSamples> = arms
        .iter()
        .map(|a| ArmSamples {
            name: a.name.clone(),
            build: a.build.clone(),
            knobs: a.knobs.clone(),
            pp: Vec::new(),
            tg: Vec::new(),
        })
        .collect();
    let mut done = 0;
    let mut stopped = None;
    let mut last_round = Duration::ZERO;
    for round in 0..rounds {
        if round >= 2 && Instant::now() + last_round > deadline {
            stopped = Some(format!(
                "stopped after {round} of {rounds} rounds: another round (~{:.0} s) would pass the tuning budget",
                last_round.as_secs_f64()
            ));
            break;
        }
        let t = Instant::now();
        for i in 0..arms.len() {
            let k = (i + round as usize) % arms.len();
            let (pp, tg) = bench_once(&arms[k].bin, w, &arms[k].knobs)?;
            say(format!(
                "tune {stage}: round {}/{rounds}, {}: pp {pp:.1} t/s, tg {tg:.1} t/s",
                round + 1,
                arms[k].name
            ));
            samples[k].pp.push(pp);
            samples[k].tg.push(tg);
        }
        last_round = t.elapsed();
        done += 1;
    }
    Ok(Session {
        stage: stage.into(),
        arms: samples,
        rounds: done,
        stopped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bench_json_gives_pp_and_tg() {
        let out =
            r#"{"results":[{"test":"pp64","tps_mean":812.5},{"test":"tg16","tps_mean":95.25}]}"#;
        assert_eq!(super::parse_bench(out), Ok((812.5, 95.25)));
        assert!(super::parse_bench(r#"{"results":[]}"#)
            .unwrap_err()
            .contains("no pp"));
    }
}
