//! Verify a build through its runtime binary, on a tiny deterministic model of our own: it loads and
//! generates, `info` reports the CPU features and backends the profile asked for, the logits of a
//! fixed prompt agree with those of a portable CPU build (a miscompiled or wrong-architecture build
//! loads fine but computes garbage), and a short bench is recorded. Any failure keeps the build
//! from being published.
//!
//! The runtime's `--json` outputs are read by exactly the field names the runtime writes
//! (`runtime/src/generate.rs` `Report`, `logits.rs`, `info.rs`, `llama/log.rs` `LoadReport`); a
//! missing or mistyped field is an error naming it, never a guess among other spellings.

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
    /// sha256 of the verification model the logits (own and reference) were computed on.
    #[serde(default)]
    pub model_sha256: String,
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

impl RuntimeReport {
    /// The reference logits this report recorded and their description, if they were computed on
    /// the model whose sha256 is `model_sha256` (reports made before the sha256 was recorded
    /// never qualify): logits of another test model are never passed on as its reference.
    pub fn reference_logits_for(&self, model_sha256: &str) -> Option<(Vec<f32>, String)> {
        let l = self.logits.as_ref()?;
        (!self.model_sha256.is_empty()
            && self.model_sha256 == model_sha256
            && !l.reference_values.is_empty())
        .then(|| (l.reference_values.clone(), l.reference.clone()))
    }
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

impl crate::error::Hint for RuntimeVerifyError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RuntimeVerifyError::NotOffloaded { .. } => {
                "a GPU build that computes on the CPU is not verified: check the device with `tunellama info` (for a CPU-type Vulkan device the runtime must select it with GGML_VK_VISIBLE_DEVICES) and run with --verbose to see llama.cpp's load log".into()
            }
            RuntimeVerifyError::Logits { .. } | RuntimeVerifyError::Features(_) => {
                "the build computes differently than the profile intends (miscompiled or built for another CPU); it was not published: report it with the build log, or try `cargo xtask setup --force`".into()
            }
            _ => "the build was not published; `cargo xtask setup --force` rebuilds it, the build log is in the cache's logs/".into(),
        })
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

/// `what --json`'s field at `pointer` (`/generated_tokens`), or an error naming it.
fn field<'a>(
    v: &'a serde_json::Value,
    what: &str,
    pointer: &str,
    kind: &str,
) -> Result<&'a serde_json::Value, RuntimeVerifyError> {
    v.pointer(pointer)
        .ok_or_else(|| RuntimeVerifyError::Output {
            what: what.into(),
            message: format!(
                "no `{}` field ({kind}) in `{what} --json`; fields present: {}",
                pointer.trim_start_matches('/'),
                v.as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| "none (not an object)".into())
            ),
        })
}

fn wrong_type(
    what: &str,
    pointer: &str,
    kind: &str,
    got: &serde_json::Value,
) -> RuntimeVerifyError {
    let got = got.to_string();
    RuntimeVerifyError::Output {
        what: what.into(),
        message: format!(
            "`{}` of `{what} --json` is not {kind}: {}",
            pointer.trim_start_matches('/'),
            &got[..got.len().min(80)]
        ),
    }
}

/// `logits --json`: `logits` (one number per vocabulary entry) and `n_vocab` (their count).
pub fn logits_of(v: &serde_json::Value) -> Result<Vec<f32>, RuntimeVerifyError> {
    const KIND: &str = "an array of numbers";
    let arr = field(v, "logits", "/logits", KIND)?;
    let arr = arr
        .as_array()
        .ok_or_else(|| wrong_type("logits", "/logits", KIND, arr))?;
    let logits = arr
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| wrong_type("logits", "/logits", KIND, x))
        })
        .collect::<Result<Vec<f32>, _>>()?;
    let n = field(v, "logits", "/n_vocab", "a count")?;
    let n = n
        .as_u64()
        .ok_or_else(|| wrong_type("logits", "/n_vocab", "a count", n))?;
    if n != logits.len() as u64 || n == 0 {
        return Err(RuntimeVerifyError::Output {
            what: "logits".into(),
            message: format!("n_vocab is {n} but `logits` has {} entries", logits.len()),
        });
    }
    Ok(logits)
}

/// `generate --json`: `generated_tokens`, the number of tokens generated.
pub fn generated_tokens_of(v: &serde_json::Value) -> Result<u64, RuntimeVerifyError> {
    let x = field(v, "generate", "/generated_tokens", "a count")?;
    x.as_u64()
        .ok_or_else(|| wrong_type("generate", "/generated_tokens", "a count", x))
}

/// `generate --json`: `text`, the generated text.
pub fn generated_text_of(v: &serde_json::Value) -> Result<String, RuntimeVerifyError> {
    let x = field(v, "generate", "/text", "a string")?;
    x.as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong_type("generate", "/text", "a string", x))
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
    // `offload` is always written; its layer counts are null when llama.cpp logged no offload
    // line (a CPU-only build), which is the "not offloaded" case below.
    let o = field(v, "logits", "/offload", "an object")?;
    let num = |k: &str| -> Result<Option<u32>, RuntimeVerifyError> {
        let p = format!("/offload/{k}");
        let x = field(v, "logits", &p, "a count or null")?;
        match x {
            serde_json::Value::Null => Ok(None),
            x => x
                .as_u64()
                .map(|n| Some(n as u32))
                .ok_or_else(|| wrong_type("logits", &p, "a count or null", x)),
        }
    };
    let fail = |detail: String| RuntimeVerifyError::NotOffloaded {
        backend: backend.into(),
        detail,
    };
    let (Some(n), Some(total)) = (num("offloaded_layers")?, num("total_layers")?) else {
        return Err(fail(
            "llama.cpp logged no `offloaded N/M layers to GPU` line (no GPU offload support in this build)".into(),
        ));
    };
    const BUF: &str = "an array of {name, mib}";
    let list = field(o, "logits", "/buffers", BUF)?;
    let buffers: Vec<(String, f64)> = list
        .as_array()
        .ok_or_else(|| wrong_type("logits", "/offload/buffers", BUF, list))?
        .iter()
        .map(|b| {
            match (
                b.get("name").and_then(|n| n.as_str()),
                b.get("mib").and_then(|m| m.as_f64()),
            ) {
                (Some(n), Some(m)) => Ok((n.to_string(), m)),
                _ => Err(wrong_type("logits", "/offload/buffers", BUF, b)),
            }
        })
        .collect::<Result<_, _>>()?;
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
fn system_info_in(v: &serde_json::Value) -> Result<String, RuntimeVerifyError> {
    let p = "/compiled_for/system_info/raw";
    let x = field(v, "info", p, "llama_print_system_info's string")?;
    x.as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong_type("info", p, "a string", x))
}

/// The backend device names of `info --json` (`CPU`, `CUDA0`, `Metal`, ...).
fn device_names(v: &serde_json::Value) -> Result<Vec<String>, RuntimeVerifyError> {
    let p = "/compiled_for/devices";
    const KIND: &str = "an array of {name, ...}";
    let x = field(v, "info", p, KIND)?;
    x.as_array()
        .ok_or_else(|| wrong_type("info", p, KIND, x))?
        .iter()
        .map(|d| {
            d.get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .ok_or_else(|| wrong_type("info", p, KIND, d))
        })
        .collect()
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
    let system_info = system_info_in(&info)?;
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
    let devices = device_names(&info)?;
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
    let tokens = generated_tokens_of(&first)?;
    if tokens == 0 {
        return Err(RuntimeVerifyError::NoTokens);
    }
    let text = generated_text_of(&first)?;
    if text != generated_text_of(&second)? {
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
        model_sha256: crate::hashing::sha256_file(model)
            .map_err(|e| RuntimeVerifyError::Output {
                what: "model".into(),
                message: format!("{}: {e}", model.display()),
            })?
            .0,
        system_info,
        features: checks,
        backends,
        generate: GenerateCheck {
            tokens,
            text_bytes: text.len(),
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
        assert_eq!(device_names(&v).unwrap(), ["CPU", "CUDA0"]);
        let err = device_names(&serde_json::json!({"compiled_for": {}})).unwrap_err();
        assert!(err.to_string().contains("compiled_for/devices"), "{err}");
    }

    /// The old verifier took the first of four spellings it found; another spelling than the
    /// runtime's own is now an error that names the field it wanted.
    #[test]
    fn generate_json_is_read_by_the_runtimes_field_names_only() {
        let v = serde_json::json!({"text": "abc", "generated_tokens": 3, "prompt_tokens": 2});
        assert_eq!(generated_tokens_of(&v).unwrap(), 3);
        assert_eq!(generated_text_of(&v).unwrap(), "abc");
        for other in ["tokens_generated", "n_generated", "completion_tokens"] {
            let v = serde_json::json!({"text": "abc", other: 3});
            let err = generated_tokens_of(&v).unwrap_err().to_string();
            assert!(
                err.contains("no `generated_tokens` field") && err.contains(other),
                "{err}"
            );
        }
        let err = generated_text_of(&serde_json::json!({"generated_tokens": 3}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `text` field"), "{err}");
        let err = generated_tokens_of(&serde_json::json!({"generated_tokens": "3"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`generated_tokens`") && err.contains("not a count"),
            "{err}"
        );
    }

    #[test]
    fn recorded_reference_logits_are_reused_only_for_the_model_they_were_computed_on() {
        let check = compare(&[0.5, -1.0], &[0.5, -1.0], "portable build k").unwrap();
        let report = |sha: &str| RuntimeReport {
            runtime: "tunellama".into(),
            model: "tiny.gguf".into(),
            model_sha256: sha.into(),
            system_info: String::new(),
            features: Vec::new(),
            backends: Vec::new(),
            generate: GenerateCheck {
                tokens: 1,
                text_bytes: 1,
                deterministic: true,
            },
            logits: Some(check.clone()),
            offload: None,
            bench: serde_json::Value::Null,
        };
        let a = "aa".repeat(32);
        let (l, name) = report(&a).reference_logits_for(&a).unwrap();
        assert_eq!(l, [0.5, -1.0]);
        assert_eq!(name, "portable build k");
        assert!(report(&a).reference_logits_for(&"bb".repeat(32)).is_none());
        // A manifest written before the model's sha256 was recorded.
        let old: RuntimeReport = serde_json::from_value({
            let mut v = serde_json::to_value(report(&a)).unwrap();
            v.as_object_mut().unwrap().remove("model_sha256");
            v
        })
        .unwrap();
        assert!(old.reference_logits_for(&a).is_none());
    }

    #[test]
    fn logits_json_must_hold_n_vocab_numbers() {
        let ok = serde_json::json!({"tokens": [1], "n_vocab": 2, "logits": [0.5, -1.0]});
        assert_eq!(logits_of(&ok).unwrap(), [0.5, -1.0]);
        let not_number = serde_json::json!({"n_vocab": 2, "logits": [0.5, "x"]});
        assert!(logits_of(&not_number)
            .unwrap_err()
            .to_string()
            .contains("not an array of numbers"));
        let short = serde_json::json!({"n_vocab": 3, "logits": [0.5, -1.0]});
        assert!(logits_of(&short)
            .unwrap_err()
            .to_string()
            .contains("n_vocab is 3"));
        let no_count = serde_json::json!({"logits": [0.5]});
        assert!(logits_of(&no_count)
            .unwrap_err()
            .to_string()
            .contains("no `n_vocab` field"));
        let renamed = serde_json::json!({"n_vocab": 1, "values": [0.5]});
        assert!(logits_of(&renamed)
            .unwrap_err()
            .to_string()
            .contains("no `logits` field"));
    }

    #[test]
    fn offload_json_without_its_documented_fields_is_an_error_not_a_cpu_build() {
        let no_buffers = serde_json::json!({"offload": {"offloaded_layers": 9, "total_layers": 9}});
        let err = check_offload("vulkan", &no_buffers)
            .unwrap_err()
            .to_string();
        assert!(err.contains("buffers"), "{err}");
        let no_offload = serde_json::json!({"logits": []});
        let err = check_offload("vulkan", &no_offload)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `offload` field"), "{err}");
    }
}
