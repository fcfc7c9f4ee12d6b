//! `setup --tune`, stage 1: what to measure. Pure: from the rule-based profile and the Machine,
//! the build variants worth building (each its own cache key) and the runtime knob values worth
//! sweeping. Every candidate says why it is meaningful for this profile.

use crate::machine::Machine;
use crate::profile::Profile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the rule-based build (no extra defines).
pub const DEFAULT_BUILD: &str = "default";

/// A build variant: CMake defines on top of the rule-based profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildCandidate {
    pub name: String,
    /// CMake cache entries that replace the rule's (name → value).
    pub defines: BTreeMap<String, String>,
    pub why: String,
}

/// Runtime knobs `tunellama bench` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knobs {
    pub threads: u32,
    /// `auto` (llama.cpp's default), `on` or `off`.
    pub flash_attn: String,
    /// Physical batch; `None`: the whole batch (the runtime's default).
    pub ubatch: Option<u32>,
}

impl Knobs {
    /// The runtime's defaults for `profile` (what a build without tuning uses).
    pub fn default_for(profile: &Profile) -> Knobs {
        Knobs {
            threads: profile.runtime.threads.max(1),
            flash_attn: "auto".into(),
            ubatch: None,
        }
    }

    /// `threads 2, flash-attn auto, ubatch whole batch`.
    pub fn describe(&self) -> String {
        format!(
            "threads {}, flash-attn {}, ubatch {}",
            self.threads,
            self.flash_attn,
            self.ubatch
                .map_or("whole batch".to_string(), |u| u.to_string())
        )
    }
}

fn define(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The build variants meaningful for `profile` on `m`, most promising first. Only knobs the
/// profile decides by rule are varied; a variant equal to the rule is never listed.
pub fn builds(profile: &Profile, m: &Machine) -> Vec<BuildCandidate> {
    let mut out = Vec::new();
    if profile.decision("GGML_OPENMP") == Some("ON") {
        out.push(BuildCandidate {
            name: "threadpool".into(),
            defines: define(&[("GGML_OPENMP", "OFF")]),
            why: "ggml's own thread pool instead of OpenMP: the per-op barrier costs differ, \
                  most for token generation (many small ops) on few-core and SMT machines"
                .into(),
        });
    }
    if profile.decision("CMAKE_C_FLAGS") == Some("-mtune=generic") {
        out.push(BuildCandidate {
            name: "mtune-native".into(),
            defines: define(&[
                ("CMAKE_C_FLAGS", "-mtune=native"),
                ("CMAKE_CXX_FLAGS", "-mtune=native"),
            ]),
            why: "the rule keeps generic instruction scheduling (+4-7% pp measured with gcc 12 \
                  on one CPU); this CPU's own scheduling model is the alternative"
                .into(),
        });
    }
    if profile.decision("GGML_NATIVE") == Some("ON") && m.is_x86_64() {
        let mut d = define(&[("GGML_NATIVE", "OFF")]);
        for (opt, needs) in crate::profile::rules::X86_ISA {
            let have = needs.iter().all(|f| m.cpu.has(f));
            d.insert(opt.to_string(), if have { "ON" } else { "OFF" }.into());
        }
        out.push(BuildCandidate {
            name: "explicit-isa".into(),
            defines: d,
            why: "ggml's explicit ISA options (from the probed CPU features) instead of \
                  -march=native: the same instructions per ggml's own selection, without the \
                  compiler's native tuning of everything else"
                .into(),
        });
    }
    out
}

/// Which build candidates `--tune-builds` selects: all (none given), or the named ones in the
/// given order; `none` selects none. Unknown names are an error naming the known ones.
pub fn select(
    all: Vec<BuildCandidate>,
    names: Option<&[String]>,
) -> Result<Vec<BuildCandidate>, String> {
    let Some(names) = names else { return Ok(all) };
    if names.iter().any(|n| n == "none") {
        return Ok(Vec::new());
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|c| &c.name == n).cloned().ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "--tune-builds: `{n}` is not a build candidate for this profile (known: {}, or none)",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// Thread counts to try: the default first, then the logical core count (SMT), three quarters
/// and half of the default (efficiency cores, memory-bound generation). At most four, no repeats.
pub fn threads(default: u32, logical: u32) -> Vec<u32> {
    let mut v = vec![default.max(1)];
    for t in [
        logical,
        default * 3 / 4,
        default / 2,
        default.saturating_sub(1),
    ] {
        if t >= 1 && !v.contains(&t) && v.len() < 4 {
            v.push(t);
        }
    }
    v
}

/// Flash attention: llama.cpp's default (auto) first, then explicitly off and on.
pub fn flash_attn() -> Vec<String> {
    ["auto", "off", "on"].map(String::from).to_vec()
}

/// Physical batch sizes for a pp test of `prompt` tokens: the whole batch first, then halves
/// down to 128 (smaller tiles stay in cache; larger ones amortize more).
pub fn ubatch(prompt: u32) -> Vec<Option<u32>> {
    let mut v = vec![None];
    let mut u = prompt / 2;
    while u >= 128 && v.len() < 3 {
        v.push(Some(u));
        u /= 2;
    }
    v
}

/// The recorded Machine of this project's 2-core AVX-512 host (tests).
#[cfg(test)]
pub(crate) fn fixture_machine() -> Machine {
    Machine::from_json_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/machines/this-machine-epyc-avx512.json"),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::fixture_machine as machine;
    use super::*;

    #[test]
    fn build_candidates_vary_only_what_the_rules_decided() {
        let m = machine();
        let p = crate::profile::plan(&m, &Default::default());
        let c = builds(&p, &m);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[0], "threadpool", "{names:?}");
        for cand in &c {
            for (k, v) in &cand.defines {
                assert!(
                    p.decision(k) != Some(v.as_str()) || cand.defines.len() > 1,
                    "{} sets {k}={v}, which the rule already chose",
                    cand.name
                );
            }
        }
        // OpenMP off in the profile already: no thread-pool candidate.
        let o =
            crate::profile::overrides::Overrides::parse("[defines]\nGGML_OPENMP = false\n", "l")
                .unwrap();
        let p = crate::profile::plan(&m, &o);
        assert!(builds(&p, &m).iter().all(|c| c.name != "threadpool"));
    }

    #[test]
    fn tune_builds_selects_by_name_and_refuses_unknown_names() {
        let m = machine();
        let p = crate::profile::plan(&m, &Default::default());
        let all = builds(&p, &m);
        let one = select(all.clone(), Some(&["threadpool".to_string()])).unwrap();
        assert_eq!(one.len(), 1);
        assert!(select(all.clone(), Some(&["none".to_string()]))
            .unwrap()
            .is_empty());
        let e = select(all, Some(&["fast".to_string()])).unwrap_err();
        assert!(e.contains("known: threadpool"), "{e}");
    }

    #[test]
    fn knob_grids_start_with_the_default_and_have_no_repeats() {
        assert_eq!(threads(2, 2), vec![2, 1]);
        assert_eq!(threads(8, 16), vec![8, 16, 6, 4]);
        assert_eq!(threads(1, 1), vec![1]);
        assert_eq!(ubatch(512), vec![None, Some(256), Some(128)]);
        assert_eq!(ubatch(64), vec![None]);
        assert_eq!(flash_attn()[0], "auto");
    }
}
