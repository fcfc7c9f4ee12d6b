//! `setup --tune` through the real binary on the test cache: it measures (tiny bench model, one
//! extra build candidate, the thread-pool build, which then stays cached), records every arm's
//! samples and verdicts in `tune.json` in the rule-based build's entry, builds the tuned runtime,
//! whose `info` shows the evidence; the next `setup` reuses the record without measuring; the
//! recorded verdicts are exactly what the choice rule gives on the recorded samples, so a
//! candidate within the noise of the default was not chosen. (The rule itself on plain data:
//! `tune::choose` unit tests.) The record is removed at the end: other tests share the test cache
//! and expect the rule-based build. Cold: one llama.cpp build (about 100 s on a quiet 2-core
//! machine, 435 s measured under load 8-10); warm: one runtime build for the re-tuned defaults plus
//! the measurements (48-61 s measured).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use xtask::tune::{choose, TuneRecord};

fn xtask(args: &[&str]) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "cargo xtask {} failed:\n{stderr}",
        args.join(" ")
    );
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (v, stderr)
}

const TUNE: &[&str] = &[
    "setup",
    "--keep-current",
    "--json",
    "--tune",
    "--force",
    "--tune-shape",
    "tiny",
    "--tune-quant",
    "q8_0",
    "--tune-builds",
    "threadpool",
    "--tune-budget",
    "15m",
    "--tune-rounds",
    "3",
];

fn info(bin: &Path) -> Value {
    let out = Command::new(bin).args(["info", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text_info(bin: &Path) -> String {
    let out = Command::new(bin).arg("info").output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Removes the record when the test ends (passed or not): the test cache is shared with other
/// tests, and a record there would make every later `setup` of this machine use the tuned build.
struct RemoveRecord(Option<PathBuf>);

impl Drop for RemoveRecord {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn tune_records_its_evidence_info_shows_it_and_the_next_setup_reuses_it() {
    let mut cleanup = RemoveRecord(None);
    // (a) --tune --force measures now (a warm cache holds an older record).
    let (tuned, stderr) = xtask(TUNE);
    let t = &tuned["tune"];
    assert_eq!(t["state"], "tuned", "{tuned}\n{stderr}");
    assert!(stderr.contains("tune threads: round 1/3"), "{stderr}");
    let record_path = PathBuf::from(t["record"].as_str().unwrap());
    cleanup.0 = Some(record_path.clone());
    let base_key = t["base_key"].as_str().unwrap();
    assert_eq!(
        record_path.parent().unwrap().file_name().unwrap(),
        base_key,
        "the record lives in the rule-based build's cache entry"
    );
    let text = std::fs::read_to_string(&record_path).unwrap();
    let record: TuneRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(record.base_key, base_key);
    assert_eq!(record.tuned_key.as_deref(), tuned["key"].as_str());
    assert_ne!(tuned["key"].as_str(), Some(base_key));
    let stages: Vec<&str> = record
        .stages
        .iter()
        .map(|s| s.session.stage.as_str())
        .collect();
    assert!(stages.contains(&"build"), "{stages:?} {:?}", record.skipped);
    assert!(
        stages.contains(&"threads"),
        "{stages:?} {:?}",
        record.skipped
    );
    let build = record
        .stages
        .iter()
        .find(|s| s.session.stage == "build")
        .unwrap();
    let arms: Vec<&str> = build.session.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(arms, ["build default", "build threadpool"]);
    for s in &record.stages {
        for a in &s.session.arms {
            assert_eq!(a.pp.len() as u32, s.session.rounds, "{}", a.name);
            assert!(a.pp.iter().chain(&a.tg).all(|x| *x > 0.0), "{a:?}");
        }
        // (c) the rule as recorded is the rule as coded: re-deciding the recorded samples gives
        // the recorded verdicts, and every arm within the noise lost to the reference.
        // (JSON keeps the samples to the last digit or so: compare the decisions, not floats.)
        let again = choose::choose(s.session.clone());
        let decisions = |r: &choose::StageResult| {
            let v: Vec<(String, bool, String)> = r
                .verdicts
                .iter()
                .map(|v| (v.arm.clone(), v.beats_reference, v.why.clone()))
                .collect();
            (r.winner.clone(), v)
        };
        assert_eq!(decisions(&again), decisions(s), "stage {}", s.session.stage);
        for v in &s.verdicts {
            if v.why.starts_with("within the noise") {
                assert!(!v.beats_reference);
                assert_ne!(s.winner, v.arm, "{v:?}");
            }
            if v.arm == s.winner && s.winner != s.reference {
                assert!(
                    v.pp_ratio - 1.0 > v.pp_noise || v.tg_ratio - 1.0 > v.tg_noise,
                    "{v:?}"
                );
            }
        }
    }
    // info (text and JSON) shows the tuned values with their evidence.
    let bin = PathBuf::from(tuned["runtime_bin"].as_str().unwrap());
    let i = info(&bin);
    assert_eq!(i["provenance"]["key"], tuned["key"]);
    let d = &i["defaults"];
    assert_eq!(d["threads"], record.knobs.threads);
    assert!(
        d["threads_why"]
            .as_str()
            .unwrap()
            .starts_with(&format!("measured by setup --tune on {}", record.on)),
        "{d}"
    );
    assert_eq!(d["tuned"]["base_key"], base_key);
    assert_eq!(
        d["tuned"]["evidence"],
        serde_json::to_value(&record.evidence).unwrap()
    );
    let txt = text_info(&bin);
    assert!(
        txt.contains(&format!("tuned by measurement on {}", record.on)),
        "{txt}"
    );
    assert!(txt.contains(&record.evidence[0]), "{txt}");

    // (b) the next setup (no --tune) reuses the record: no measuring, the same tuned build.
    let (dry, _) = xtask(&["setup", "--dry-run", "--json"]);
    assert_eq!(dry["tune"]["action"], "reuse", "{dry}");
    let (again, stderr) = xtask(&["setup", "--keep-current", "--json"]);
    assert_eq!(again["tune"]["state"], "reused", "{again}");
    assert_eq!(again["key"], tuned["key"]);
    assert_eq!(again["outcome"], "hit");
    assert!(
        stderr.contains(&format!("tuned on {}, reused", record.on)),
        "{stderr}"
    );
    assert!(
        !stderr.contains("tune threads: round"),
        "measured again:\n{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&record_path).unwrap(), text);
}
