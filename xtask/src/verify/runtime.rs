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
    /// GPU builds: where `--gpu-layers all` put the layers (every one must be on the device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadCheck>,
    /// `bench --json` of a short run.
    pub bench: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendCheck {
    pub backend: String,
    pub device: Option<String>,
}

/// The layers of the verification model really went to the GPU backend's device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadCheck {
    pub backend: String,
    pub offloaded_layers: u32,
    pub total_layers: u32,
    /// The model weight buffers on the backend's devices (`Vulkan0`), with MiB.
    pub device_buffers: Vec<String>,
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
    #[error("the {backend} build did not offload the model to its device: {detail}")]
    NotOffloaded { backend: String, detail: String },
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
            RuntimeVerifyError::NotOffloaded { .. } => {
                "a GPU build that computes on the CPU is not verified: check the device with `tunellama info` (for a CPU-type Vulkan device the runtime must select it with GGML_VK_VISIBLE_DEVICES) and run with --verbose to see llama.cpp's load log".into()
            }
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
    logits_of(&v)
}

fn logits_of(v: &serde_json::Value) -> Result<Vec<f32>, RuntimeVerifyError> {
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

/// Checks the `offload` object of `logits --json --gpu-layers all`: every layer offloaded and
/// the weights in a buffer of `backend`'s device (`Vulkan0`, `CUDA0`, ...).
pub fn check_offload(
    backend: &str,
    v: &serde_json::Value,
) -> Result<OffloadCheck, RuntimeVerifyError> {
    let o = v.get("offload");
    let num = |k: &str| {
        o.and_then(|o| o.get(k))
            .and_then(|x| x.as_u64())
            .map(|x| x as u32)
    };
    let fail = |detail: String| RuntimeVerifyError::NotOffloaded {
        backend: backend.into(),
        detail,
    };
    let (Some(n), Some(total)) = (num("offloaded_layers"), num("total_layers")) else {
        return Err(fail(
            "llama.cpp logged no `offloaded N/M layers to GPU` line (no GPU offload support in this build)".into(),
        ));
    };
    let buffers: Vec<(String, f64)> = o
        .and_then(|o| o.get("buffers"))
        .and_then(|b| b.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|b| {
                    Some((
                        b.get("name")?.as_str()?.to_string(),
                        b.get("mib")?.as_f64().unwrap_or(0.0),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let on_device: Vec<String> = buffers
        .iter()
        .filter(|(name, mib)| {
            name.to_lowercase().starts_with(&backend.to_lowercase()) && *mib > 0.0
        })
        .map(|(name, mib)| format!("{name} {mib:.2} MiB"))
        .collect();
    if total == 0 || n < total {
        return Err(fail(format!(
            "offloaded {n}/{total} layers with --gpu-layers all"
        )));
    }
    if on_device.is_empty() {
        return Err(fail(format!(
            "offloaded {n}/{total} layers, but no model buffer is on a {backend} device (buffers: {})",
            buffers
                .iter()
                .map(|(n, m)| format!("{n} {m:.2} MiB"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(OffloadCheck {
        backend: backend.into(),
        offloaded_layers: n,
        total_layers: total,
        device_buffers: on_device,
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

    // A GPU build computes the logits with every layer on its device, and must show it did.
    let (own_logits, offload) = match expect.gpu_backends.first() {
        Some(backend) => {
            let v = run_json(
                bin,
                "logits --gpu-layers all",
                &[
                    "logits",
                    "-m",
                    &m,
                    "-t",
                    &t,
                    "--gpu-layers",
                    "all",
                    "--json",
                    PROMPT,
                ],
            )?;
            (logits_of(&v)?, Some(check_offload(backend, &v)?))
        }
        None => (Vec::new(), None),
    };
    let logits_check = match reference {
        Some((reference, name)) => {
            let own = if offload.is_some() {
                own_logits
            } else {
                logits(bin, model, expect.threads)?
            };
            Some(compare(&own, reference, name)?)
        }
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
        offload,
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
    fn a_gpu_build_whose_layers_stayed_on_the_cpu_fails() {
        let on_cpu = serde_json::json!({"offload": {"offloaded_layers": 0, "total_layers": 9,
            "buffers": [{"name": "CPU_Mapped", "mib": 1.5}]}});
        assert!(matches!(
            check_offload("vulkan", &on_cpu),
            Err(RuntimeVerifyError::NotOffloaded { .. })
        ));
        // All layers claimed, but the weights are in a CPU buffer: still not offloaded.
        let no_buffer = serde_json::json!({"offload": {"offloaded_layers": 9, "total_layers": 9,
            "buffers": [{"name": "CPU", "mib": 1.5}]}});
        assert!(check_offload("vulkan", &no_buffer).is_err());
        // No offload line at all (a CPU-only library).
        let none = serde_json::json!({"offload": {"offloaded_layers": null, "total_layers": null, "buffers": []}});
        assert!(check_offload("vulkan", &none).is_err());
        let ok = serde_json::json!({"offload": {"offloaded_layers": 9, "total_layers": 9,
            "buffers": [{"name": "Vulkan0", "mib": 1.2}, {"name": "CPU_Mapped", "mib": 0.3}]}});
        let c = check_offload("vulkan", &ok).unwrap();
        assert_eq!((c.offloaded_layers, c.total_layers), (9, 9));
        assert_eq!(c.device_buffers, ["Vulkan0 1.20 MiB"]);
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
