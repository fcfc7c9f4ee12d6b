//! Verify a build through its runtime binary, on a tiny deterministic model of our own: it loads and
//! generates, `info` reports the CPU features and backends the profile asked for, the logits of a
//! fixed prompt agree with those of a portable CPU build (a miscompiled or wrong-architecture build
//! loads fine but computes garbage), and a short bench is recorded. Any failure keeps the build
//! from being published.

use super::features::{self, FeatureCheck};
use crate::cmd::Cmd;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The prompt whose last-position logits are compared.
pub const PROMPT: &str = "The quick brown fox jumps over the lazy dog";

/// Tolerance for tuned vs portable logits: |tuned - reference| <= ABS + REL * |reference| for every
/// logit. Builds differ only in summation order and SIMD width (f32 weights, f16 KV cache in
/// both); the measured difference here is far below this, while a wrong kernel differs by O(1).
pub const TOLERANCE_ABS: f32 = 1e-2;
pub const TOLERANCE_REL: f32 = 1e-2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeReport {
    pub runtime: String,
    pub model: String,
    pub system_info: String,
    pub features: Vec<FeatureCheck>,
    /// Backends the profile chose, each with the device `info` reported for it.
    pub backends: Vec<BackendCheck>,
    pub generate: GenerateCheck,
    /// Absent for the portable build itself (it is the reference).
    pub logits: Option<LogitsCheck>,
    /// `bench --json` of a short run.
    pub bench: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendCheck {
    pub backend: String,
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateCheck {
    pub tokens: u64,
    pub text_bytes: usize,
    /// Same seed twice gave the same text.
    pub deterministic: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitsCheck {
    pub n_vocab: usize,
    pub max_abs_diff: f32,
    /// The largest |diff| / (ABS + REL * |reference|): at most 1 passes.
    pub worst_ratio: f32,
    pub tolerance: String,
    pub top_token: usize,
    pub reference_top_token: usize,
    pub reference: String,
    /// The reference logits themselves: a prebuilt archive carries them, so the machine that
    /// installs it checks its own run against them without building the portable reference.
    #[serde(default)]
    pub reference_values: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeVerifyError {
    #[error("the runtime failed its check `{what}`")]
    Run {
        what: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("the runtime's `{what}` output is not what verification expects: {message}")]
    Output { what: String, message: String },
    #[error("compiled CPU features do not match the profile: {0}")]
    Features(String),
    #[error("backend {0} was chosen by the profile but `info` reports no device for it")]
    Backend(String),
    #[error("generation is not deterministic: the same seed gave different text")]
    Nondeterministic,
    #[error("generation produced no tokens")]
    NoTokens,
    #[error(
        "logits disagree with the portable reference ({reference}): max |diff| {max_abs_diff} \
         at token {at} (tuned {tuned}, reference {expected}); tolerance {tolerance}"
    )]
    Logits {
        reference: String,
        max_abs_diff: f32,
        at: usize,
        tuned: f32,
        expected: f32,
        tolerance: String,
    },
}

impl RuntimeVerifyError {
    pub fn hint(&self) -> String {
        match self {
            RuntimeVerifyError::Logits { .. } | RuntimeVerifyError::Features(_) => {
                "the build computes differently than the profile intends (miscompiled or built for another CPU); it was not published: report it with the build log, or try `cargo xtask setup --force`".into()
            }
            _ => "the build was not published; `cargo xtask setup --force` rebuilds it, the build log is in the cache's logs/".into(),
        }
    }
}

fn run_json(
    bin: &Path,
    what: &str,
    args: &[&str],
) -> Result<serde_json::Value, RuntimeVerifyError> {
    let out = Cmd::new(bin)
        .args(args)
        .timeout(Duration::from_secs(600))
        .run()
        .map_err(|source| RuntimeVerifyError::Run {
            what: what.into(),
            source: Box::new(source),
        })?;
    serde_json::from_str(&out.stdout).map_err(|e| RuntimeVerifyError::Output {
        what: what.into(),
        message: format!("not JSON ({e}): {}", crate::cmd::tail(&out.stdout, 5)),
    })
}

/// The last-position logits of `PROMPT`.
pub fn logits(bin: &Path, model: &Path, threads: u32) -> Result<Vec<f32>, RuntimeVerifyError> {
    let m = model.to_string_lossy();
    let t = threads.to_string();
    let v = run_json(
        bin,
        "logits",
        &["logits", "-m", &m, "-t", &t, "--json", PROMPT],
    )?;
    v.get("logits")
        .and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect()
        })
        .ok_or_else(|| RuntimeVerifyError::Output {
            what: "logits".into(),
            message: "no `logits` array".into(),
        })
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// Compares tuned logits with the reference; `Err` names the worst logit.
pub fn compare(
    tuned: &[f32],
    reference: &[f32],
    reference_name: &str,
) -> Result<LogitsCheck, RuntimeVerifyError> {
    let tolerance = format!("|diff| <= {TOLERANCE_ABS} + {TOLERANCE_REL} * |reference| per logit");
    if tuned.len() != reference.len() {
        return Err(RuntimeVerifyError::Output {
            what: "logits".into(),
            message: format!(
                "{} logits, the reference has {}",
                tuned.len(),
                reference.len()
            ),
        });
    }
    let (mut worst, mut at, mut max_abs) = (0f32, 0usize, 0f32);
    for (i, (&t, &r)) in tuned.iter().zip(reference).enumerate() {
        let diff = (t - r).abs();
        // NaN must fail: treat it as an infinitely large difference.
        let diff = if diff.is_nan() { f32::INFINITY } else { diff };
        let ratio = diff / (TOLERANCE_ABS + TOLERANCE_REL * r.abs());
        if ratio > worst {
            worst = ratio;
            at = i;
        }
        max_abs = max_abs.max(diff);
    }
    if worst > 1.0 {
        return Err(RuntimeVerifyError::Logits {
            reference: reference_name.into(),
            max_abs_diff: max_abs,
            at,
            tuned: tuned[at],
            expected: reference[at],
            tolerance,
        });
    }
    Ok(LogitsCheck {
        n_vocab: tuned.len(),
        max_abs_diff: max_abs,
        worst_ratio: worst,
        tolerance,
        top_token: argmax(tuned),
        reference_top_token: argmax(reference),
        reference: reference_name.into(),
        reference_values: reference.to_vec(),
    })
}

/// The raw system-info string (`CPU : SSE3 = 1 | ...`) of `info --json`.
fn system_info_in(v: &serde_json::Value) -> Option<String> {
    v.pointer("/compiled_for/system_info/raw")
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

/// The backend device names of `info --json` (`CPU`, `CUDA0`, `Metal`, ...).
fn device_names(v: &serde_json::Value) -> Vec<String> {
    v.pointer("/compiled_for/devices")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub struct Expectation<'a> {
    pub arch: &'a str,
    pub required_cpu_features: &'a [String],
    /// Lower-case non-CPU backends the profile chose (cuda, metal, vulkan, hip).
    pub gpu_backends: &'a [String],
    pub threads: u32,
}

/// Runs every check; `reference` is the portable build's logits for `PROMPT` on `model`.
pub fn verify(
    bin: &Path,
    model: &Path,
    expect: &Expectation,
    reference: Option<(&[f32], &str)>,
) -> Result<RuntimeReport, RuntimeVerifyError> {
    let info = run_json(bin, "info", &["info", "--json"])?;
    let system_info = system_info_in(&info).ok_or_else(|| RuntimeVerifyError::Output {
        what: "info".into(),
        message: "no llama_print_system_info string".into(),
    })?;
    let checks = features::check(expect.arch, expect.required_cpu_features, &system_info);
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| {
            format!(
                "{} {} but the profile {} it",
                c.name,
                if c.compiled { "compiled in" } else { "missing" },
                if c.expected {
                    "requires"
                } else {
                    "does not allow"
                }
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(RuntimeVerifyError::Features(bad.join("; ")));
    }
    let devices = device_names(&info);
    let mut backends = Vec::new();
    for b in expect.gpu_backends {
        let device = devices
            .iter()
            .find(|d| d.to_lowercase().starts_with(&b.to_lowercase()))
            .cloned();
        if device.is_none() {
            return Err(RuntimeVerifyError::Backend(b.clone()));
        }
        backends.push(BackendCheck {
            backend: b.clone(),
            device,
        });
    }

    let m = model.to_string_lossy();
    let t = expect.threads.to_string();
    let gen_args = [
        "generate", "-m", &m, "-t", &t, "-n", "24", "--seed", "7", "--temp", "0.8", "--json",
        PROMPT,
    ];
    let first = run_json(bin, "generate", &gen_args)?;
    let second = run_json(bin, "generate", &gen_args)?;
    let text = |v: &serde_json::Value| {
        v.get("text")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let tokens = [
        "generated_tokens",
        "tokens_generated",
        "n_generated",
        "completion_tokens",
    ]
    .iter()
    .find_map(|k| first.get(*k).and_then(|x| x.as_u64()))
    .unwrap_or(0);
    if tokens == 0 {
        return Err(RuntimeVerifyError::NoTokens);
    }
    if text(&first) != text(&second) {
        return Err(RuntimeVerifyError::Nondeterministic);
    }

    let logits_check = match reference {
        Some((reference, name)) => Some(compare(
            &logits(bin, model, expect.threads)?,
            reference,
            name,
        )?),
        None => None,
    };
    let bench = run_json(
        bin,
        "bench",
        &[
            "bench", "-m", &m, "-t", &t, "-p", "64", "-n", "16", "-r", "2", "--json",
        ],
    )?;
    Ok(RuntimeReport {
        runtime: bin.display().to_string(),
        model: model.display().to_string(),
        system_info,
        features: checks,
        backends,
        generate: GenerateCheck {
            tokens,
            text_bytes: text(&first).len(),
            deterministic: true,
        },
        logits: logits_check,
        bench,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_within_tolerance_pass_and_report_the_largest_difference() {
        let r = vec![1.0, -2.0, 3.0];
        let t = vec![1.001, -2.002, 3.0];
        let c = compare(&t, &r, "portable").unwrap();
        assert!((c.max_abs_diff - 0.002).abs() < 1e-5);
        assert_eq!(c.top_token, 2);
    }

    #[test]
    fn garbage_logits_fail_naming_the_worst_token() {
        let r = vec![1.0, -2.0, 3.0];
        let err = compare(&[1.0, 5.0, 3.0], &r, "portable").unwrap_err();
        assert!(
            matches!(err, RuntimeVerifyError::Logits { at: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn nan_logits_fail() {
        assert!(compare(&[f32::NAN, 0.0], &[0.0, 0.0], "p").is_err());
        assert!(compare(&[0.0, f32::NAN], &[0.0, 0.0], "p").is_err());
    }

    #[test]
    fn system_info_and_devices_are_read_from_info_json() {
        let v = serde_json::json!({"compiled_for": {
            "system_info": {"raw": "CPU : AVX2 = 1 |", "features": {"AVX2": "1"}},
            "devices": [{"name": "CPU", "type": "cpu"}, {"name": "CUDA0", "type": "gpu"}]
        }});
        assert_eq!(system_info_in(&v).unwrap(), "CPU : AVX2 = 1 |");
        assert_eq!(device_names(&v), ["CPU", "CUDA0"]);
    }
}
