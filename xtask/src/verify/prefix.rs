//! Verification of an install prefix with a runtime, source-built or prebuilt: the smoke link
//! test, then the runtime's own checks (features, generation, logits against a reference, a short
//! bench), or, for a GPU build on a host without that GPU, the documented refusal. What the
//! manifest records about it ([`Verification`]) and the verification model live here too.

use crate::context::Ctx;
use crate::machine::Machine;
use crate::runtime_build::{self, RuntimeInfo};
use crate::verify::runtime::{Expectation, RuntimeReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a manifest's `verification` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub smoke: crate::verify::SmokeReport,
    /// `None` with `skipped` when this machine cannot run the build (a CI variant for another CPU).
    pub runtime: Option<RuntimeReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// A GPU build on a host without that GPU: the runtime was started and reported the missing
    /// device as documented (exit code 4) instead of running on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_device: Option<NoDeviceCheck>,
    /// Cross builds (arm64 on x86-64): the C-level checks under qemu-aarch64 (`verify::emulated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulated: Option<crate::verify::emulated::EmulatedReport>,
}

/// What `tunellama info` said on a host without the build's GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoDeviceCheck {
    pub command: String,
    pub exit_code: Option<i32>,
    /// Its `error:` line.
    pub message: String,
}

/// The runtime's documented exit code for "built for CUDA but no CUDA device is usable"
/// (runtime/README.md).
pub const RUNTIME_EXIT_NO_GPU: i32 = 4;

/// Starts a CUDA build's runtime on a host without an NVIDIA GPU and checks that it refuses with
/// the documented exit code and a message naming the missing driver/device.
pub fn check_no_device_report(bin: &Path) -> anyhow::Result<NoDeviceCheck> {
    let cmd = crate::cmd::Cmd::new(bin)
        .arg("info")
        .timeout(std::time::Duration::from_secs(120));
    let out = cmd.output()?;
    let message = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("")
        .to_string();
    if out.status != Some(RUNTIME_EXIT_NO_GPU)
        || !message.contains("built for CUDA but no CUDA device is usable")
    {
        anyhow::bail!(
            "`{}` on a machine without an NVIDIA GPU should exit with {RUNTIME_EXIT_NO_GPU} and say that no CUDA device is usable; it exited with {:?}:\n{}",
            cmd.display(),
            out.status,
            out.combined()
        );
    }
    Ok(NoDeviceCheck {
        command: cmd.display(),
        exit_code: out.status,
        message,
    })
}

/// The portable logits of the tiny model and where they came from; `None`: this build is the
/// reference itself.
pub type ReferenceLogits = Option<(Vec<f32>, String)>;

/// Why this host cannot run a build for `target`, if it cannot.
pub fn cannot_run_here(host: &Machine, required: &[String], info: &RuntimeInfo) -> Option<String> {
    if host.arch.value != info.compiled_for.target_arch {
        return Some(format!(
            "built for {}, this machine is {}",
            info.compiled_for.target_arch, host.arch.value
        ));
    }
    let missing: Vec<&String> = required
        .iter()
        .filter(|f| !crate::requirements::host_has(host, f))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "needs CPU features this machine lacks: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let gpu: Vec<&String> = info
        .compiled_for
        .backends
        .iter()
        .filter(|b| *b != "cpu")
        .collect();
    let runs_here = |b: &str| match b {
        "vulkan" => host
            .vulkan
            .found()
            .is_some_and(|v| !v.physical_devices.is_empty()),
        "metal" => host.metal.found().is_some(),
        _ => !host.gpus().is_empty(),
    };
    let gpu: Vec<&String> = gpu.into_iter().filter(|b| !runs_here(b)).collect();
    if !gpu.is_empty() {
        return Some(format!(
            "needs a GPU for {}, this machine has none",
            gpu.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    None
}

/// The link smoke test of a prefix, compiled with the host's C compiler.
pub fn smoke(
    ctx: &Ctx,
    host: &Machine,
    prefix: &Path,
    key: &str,
) -> anyhow::Result<crate::verify::SmokeReport> {
    let cc = host
        .compilers
        .c
        .found()
        .map(|c| c.path.clone())
        .unwrap_or_else(|| "cc".into());
    // A private scratch dir (created exclusively, removed when it drops).
    let scratch = crate::fsx::private_temp_dir(Some(&ctx.cache_dir), &format!("verify-{key}-"))?;
    Ok(crate::verify::smoke(prefix, &cc, scratch.path())?)
}

/// Why a cached entry must be verified again on `host` although its inputs and fingerprint are
/// unchanged: its runtime checks were skipped because the machine that verified it could not run
/// the build, and this one can (a CPU check that once misjudged this machine, a build made for
/// another CPU). `None`: its verification stands.
pub fn skipped_but_runnable_here(
    m: &crate::cache::Manifest,
    prefix: &Path,
    host: &Machine,
) -> Option<String> {
    let v: Verification = serde_json::from_value(m.verification.clone()?).ok()?;
    let skipped = v
        .skipped
        .filter(|_| v.runtime.is_none() && v.emulated.is_none())?;
    if !runtime_build::binary_in(prefix).is_file() {
        return None;
    }
    let info = read_info(prefix).ok()?;
    cannot_run_here(host, &info.compiled_for.required_cpu_features, &info)
        .is_none()
        .then(|| {
            format!("its runtime checks were skipped ({skipped}), and this machine can run it")
        })
}

/// What a prefix's runtime was built for (its runtime-info.json).
pub fn read_info(prefix: &Path) -> anyhow::Result<RuntimeInfo> {
    let path = prefix.join(runtime_build::INFO_FILE);
    let text = fs_err::read_to_string(&path)?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a runtime description: {e}", path.display()))
}

/// Every check of a prefix with a runtime, source-built or prebuilt: the smoke link test, then
/// the runtime's own checks; `reference` gives the portable logits for the tiny model (or none
/// when this build is the reference).
pub fn verify_prefix(
    ctx: &Ctx,
    host: &Machine,
    label: &str,
    prefix: &Path,
    key: &str,
    reference: &dyn Fn(&Path) -> anyhow::Result<ReferenceLogits>,
) -> anyhow::Result<Verification> {
    let smoke = smoke(ctx, host, prefix, key)?;
    let info = read_info(prefix)?;
    let required = info.compiled_for.required_cpu_features.clone();
    if let Some(why) = cannot_run_here(host, &required, &info) {
        let cuda_without_gpu = info.compiled_for.backends.iter().any(|b| b == "cuda")
            && host.gpus().is_empty()
            && why.starts_with("needs a GPU");
        if cuda_without_gpu {
            // Not verified (no GPU to compute on), but started: it must say so clearly.
            let check = check_no_device_report(&runtime_build::binary_in(prefix))?;
            let what = format!(
                "compiled, started, no driver: reported clearly (exit {}: {})",
                check.exit_code.unwrap_or(-1),
                check.message
            );
            ctx.info(format!(
                "{label}: not verified on this machine ({why}); {what}"
            ));
            return Ok(Verification {
                smoke,
                runtime: None,
                skipped: Some(what),
                no_device: Some(check),
                emulated: None,
            });
        }
        ctx.info(format!("{label}: not run on this machine: {why}"));
        return Ok(Verification {
            smoke,
            runtime: None,
            skipped: Some(why),
            no_device: None,
            emulated: None,
        });
    }
    let model = tiny_model(ctx)?;
    let gpu_backends: Vec<String> = info
        .compiled_for
        .backends
        .iter()
        .filter(|b| *b != "cpu")
        .cloned()
        .collect();
    let expect = Expectation {
        arch: &info.compiled_for.target_arch,
        required_cpu_features: &required,
        gpu_backends: &gpu_backends,
        threads: info.defaults.profile.threads.max(1),
    };
    let reference = reference(&model)?;
    let bin = runtime_build::binary_in(prefix);
    let report = crate::verify::runtime::verify(
        &bin,
        &model,
        &expect,
        reference
            .as_ref()
            .map(|(l, name)| (l.as_slice(), name.as_str())),
    )?;
    ctx.info(format!(
        "{label}: verified: {} tokens generated{}",
        report.generate.tokens,
        report
            .logits
            .as_ref()
            .map(|l| format!(
                ", logits within {:.1e} of the reference ({})",
                l.max_abs_diff, l.reference
            ))
            .unwrap_or_default()
    ));
    Ok(Verification {
        smoke,
        runtime: Some(report),
        skipped: None,
        no_device: None,
        emulated: None,
    })
}

/// The deterministic tiny verification model, written once per cache.
pub fn tiny_model(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    use crate::testmodel::{ShapeName, Spec};
    let spec = Spec::named(ShapeName::Tiny, None, 1);
    // Deterministic from (shape, type, seed); the writer's version is part of the name so a
    // changed writer never reuses an old file.
    let path = ctx.cache_dir.join("verify").join(
        format!(
            "tiny-{:?}-seed{}-w{}.gguf",
            spec.quant,
            spec.seed,
            env!("CARGO_PKG_VERSION")
        )
        .to_lowercase(),
    );
    if !path.is_file() {
        fs_err::create_dir_all(path.parent().expect("has parent"))?;
        crate::testmodel::write(&spec, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Origin;

    /// A published entry whose runtime checks were skipped, with a runtime requiring `required`.
    fn entry(dir: &Path, required: &[&str]) -> crate::cache::Manifest {
        let m = Machine::from_json_file(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/machines/this-machine-epyc-avx512.json"),
        )
        .unwrap();
        let p = crate::profile::plan(&m, &Default::default());
        let source = crate::key::SourceId::fixture();
        let mut info = runtime_build::info_for(&m, &p, &source, "k");
        info.compiled_for.required_cpu_features = required.iter().map(|f| f.to_string()).collect();
        let prefix = dir.join("prefix");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::write(runtime_build::binary_in(&prefix), "bin").unwrap();
        std::fs::write(
            prefix.join(runtime_build::INFO_FILE),
            serde_json::to_string(&info).unwrap(),
        )
        .unwrap();
        let v = Verification {
            smoke: crate::verify::SmokeReport {
                system_info: String::new(),
                link_command: String::new(),
            },
            runtime: None,
            skipped: Some("needs CPU features this machine lacks: sse3".into()),
            no_device: None,
            emulated: None,
        };
        crate::cache::Manifest {
            schema: 1,
            key: "k".into(),
            inputs: Default::default(),
            decisions: Vec::new(),
            fingerprint: Default::default(),
            provenance: "source".into(),
            tree_origin: String::new(),
            pinned: true,
            build_seconds: 0.0,
            files: Vec::new(),
            verification: Some(serde_json::to_value(&v).unwrap()),
        }
    }

    #[test]
    fn an_entry_whose_runtime_checks_were_skipped_is_reverified_where_it_can_run() {
        let t = tempfile::tempdir().unwrap();
        let mut host = Machine::from_json_file(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/machines/this-machine-epyc-avx512.json"),
        )
        .unwrap();
        // A recorded machine has exactly its recorded features (no CPUID of the test host).
        host.origin = Origin::Declared;
        let m = entry(t.path(), &["avx2"]);
        let why = skipped_but_runnable_here(&m, &t.path().join("prefix"), &host);
        assert!(
            why.as_deref().is_some_and(|w| w.contains("sse3")),
            "{why:?}"
        );
        // Still not runnable here: the skip stands.
        let m = entry(t.path(), &["avx2", "no-such-feature"]);
        assert_eq!(
            skipped_but_runnable_here(&m, &t.path().join("prefix"), &host),
            None
        );
        // Verified entries are left alone.
        let mut m = entry(t.path(), &["avx2"]);
        m.verification = None;
        assert_eq!(
            skipped_but_runnable_here(&m, &t.path().join("prefix"), &host),
            None
        );
    }
}
