//! One cached build (llama.cpp libraries + runtime binary), from plan to published cache entry:
//! lookup, lock, build, verify, publish. `setup` (the tuned build), `bench` (the portable
//! baseline) and `dist` (CI variants) all go through here, so they share one cache and one
//! verification.

use crate::cache::{self, Cache, Fingerprint, KeyInputs, Lookup, Manifest};
use crate::context::Ctx;
use crate::machine::{Detection, Machine, Origin};
use crate::profile::Profile;
use crate::progress::Progress;
use crate::runtime_build::{self, RuntimeInfo};
use crate::source::Tree;
use crate::verify::runtime::{Expectation, RuntimeReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the runtime's logits are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Against the portable CPU build of the same tree (built on demand, cached).
    Portable,
    /// This build is the reference itself (the portable build).
    SelfIsReference,
    /// `setup`: the logits shipped beside the pin when they match this tree, model and
    /// architecture, else the portable build (`shipped_logits.rs`).
    ShippedOrPortable,
}

pub struct Request<'a> {
    /// For messages: "tuned", "portable", a variant name.
    pub label: &'a str,
    /// The machine the profile was planned for (probed here, or declared).
    pub target: &'a Machine,
    /// This machine: its toolchain builds, and it runs the verification.
    pub host: &'a Machine,
    pub profile: &'a Profile,
    pub tree: &'a Tree,
    pub force: bool,
    pub reference: Reference,
    /// Build and verify the runtime too; `false` (`setup --lib-only`) stops at the libraries and
    /// the link smoke test.
    pub with_runtime: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Hit,
    Reverified,
    Built,
}

#[derive(Debug)]
pub struct Ensured {
    pub outcome: Outcome,
    pub key: String,
    pub entry: PathBuf,
    pub changes: Vec<String>,
    pub manifest: Manifest,
}

impl Ensured {
    pub fn prefix(&self) -> PathBuf {
        self.entry.join("prefix")
    }
    pub fn runtime_bin(&self) -> PathBuf {
        runtime_build::binary_in(&self.prefix())
    }
}

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

/// The toolchain that compiles `profile`: nvcc only counts when the profile compiles CUDA, so
/// installing a toolkit does not invalidate CPU builds.
pub fn toolchain_for(profile: &Profile, host: &Machine) -> cache::Toolchain {
    let mut t = crate::setup::toolchain_of(host);
    if profile.decision("GGML_CUDA") != Some("ON") {
        t.nvcc = None;
    }
    if profile.decision("GGML_VULKAN") == Some("ON") {
        t.vulkan_headers = vulkan_headers_identity(host);
    }
    t
}

/// The machine fingerprint of a build of `profile` on `host`: what it runs on but what does not
/// change its bytes (a change re-verifies). Vulkan builds add the Vulkan devices and driver.
pub fn fingerprint_for(profile: &Profile, host: &Machine) -> Fingerprint {
    let mut f = crate::setup::fingerprint_of(host);
    if profile.decision("GGML_VULKAN") == Some("ON") {
        f.gpus.extend(vulkan_devices_identity(host));
    }
    f
}

/// The key inputs of a build of `profile` on `host` (everything that changes its bytes).
pub fn key_inputs(
    profile: &Profile,
    host: &Machine,
    tree_digest: &str,
    runtime_source: Option<String>,
) -> KeyInputs {
    KeyInputs {
        tree_digest: tree_digest.to_string(),
        profile_hash: profile.hash.clone(),
        toolchain: toolchain_for(profile, host),
        runtime_source,
    }
}

/// The Vulkan headers a Vulkan build compiles against (`version include_dir`).
pub fn vulkan_headers_identity(host: &Machine) -> Option<String> {
    host.vulkan
        .found()
        .and_then(|v| v.headers.as_ref())
        .map(|h| format!("{} {}", h.version, h.include_dir))
}

/// The Vulkan devices of this host with type and driver, for a Vulkan build's fingerprint.
pub fn vulkan_devices_identity(host: &Machine) -> Vec<String> {
    host.vulkan
        .found()
        .map(|v| {
            v.physical_devices
                .iter()
                .map(|d| {
                    format!(
                        "{} (vulkan {}, driver {})",
                        d.name,
                        d.device_type.as_str(),
                        d.driver.as_deref().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The portable baseline of this host: a declared machine with no optional CPU features and no
/// GPU, so every ISA option is OFF (with GGML_NATIVE=OFF six of them default to ON: an AVX2 build).
pub fn portable_machine(host: &Machine) -> Machine {
    let mut m = host.clone();
    m.origin = Origin::Declared;
    m.name = Some("portable".into());
    m.cpu.features.clear();
    m.cpu.x86_64_level = host.is_x86_64().then_some(1);
    let why = "portable baseline: CPU only".to_string();
    m.cuda = Detection::NotApplicable {
        reason: why.clone(),
    };
    m.nvidia = Detection::NotApplicable {
        reason: why.clone(),
    };
    m.vulkan = Detection::NotApplicable {
        reason: why.clone(),
    };
    m.metal = Detection::NotApplicable {
        reason: why.clone(),
    };
    m.rocm = Detection::NotApplicable { reason: why };
    m
}

/// Finds or builds the entry for `req`, verifies it, and publishes it.
pub fn ensure(ctx: &Ctx, req: &Request, progress: &dyn Progress) -> anyhow::Result<Ensured> {
    // A target of another architecture (arm64 on x86-64) is cross-built with its own toolchain
    // (part of the key) and verified at the C level under emulation: no Rust runtime (cross.rs).
    let cross = if crate::cross::is_cross(req.host, req.target) {
        Some(crate::cross::detect(req.host, req.target)?)
    } else {
        None
    };
    let req = &Request {
        with_runtime: req.with_runtime && cross.is_none(),
        ..*req
    };
    let cross = cross.as_ref();
    let fingerprint = fingerprint_for(req.profile, req.host);
    let mut inputs = key_inputs(
        req.profile,
        req.host,
        &req.tree.digest,
        if req.with_runtime {
            Some(runtime_build::source_digest(&ctx.repo_root)?)
        } else {
            None
        },
    );
    if let Some(tc) = cross {
        inputs.toolchain = tc.key_toolchain(&inputs.toolchain);
    }
    let key = cache::key_of(&inputs);
    let decisions: Vec<(String, String)> = req
        .profile
        .decisions
        .iter()
        .map(|d| (d.name.clone(), d.value.clone()))
        .collect();
    let cache = Cache::new(&ctx.cache_dir);
    let _lock = cache.lock(&key, || {
        ctx.info(format!(
            "another process is working on build {key}; waiting for it"
        ))
    })?;
    let entry = cache.entry_dir(&key);
    let lookup = if req.force {
        Lookup::Absent
    } else {
        cache.lookup(&key)
    };
    let (outcome, changes, manifest) = match lookup {
        Lookup::Hit(m)
            if m.fingerprint == fingerprint
                && not_run_but_runs_here(
                    m.verification.as_ref(),
                    req.host,
                    &entry.join("prefix"),
                )
                .is_none() =>
        {
            (Outcome::Hit, Vec::new(), *m)
        }
        Lookup::Hit(mut m) => {
            let mut changes = cache::explain_fingerprint(&m.fingerprint, &fingerprint);
            let mut why = Vec::new();
            if !changes.is_empty() {
                why.push(format!("the machine changed ({})", changes.join("; ")));
            }
            let stale =
                not_run_but_runs_here(m.verification.as_ref(), req.host, &entry.join("prefix"));
            why.extend(stale.clone());
            changes.extend(stale);
            ctx.info(format!(
                "{}: same build inputs, but {}: re-verifying the existing build",
                req.label,
                why.join("; ")
            ));
            let (v, program) =
                verification(ctx, req, cross, &entry.join("prefix"), &key, progress)?;
            if let Some(p) = program {
                let _ = fs_err::remove_file(p);
            }
            m.fingerprint = fingerprint.clone();
            m.verification = Some(serde_json::to_value(&v)?);
            cache.update_manifest(&m)?;
            (Outcome::Reverified, changes, *m)
        }
        other => {
            let mut changes = Vec::new();
            if let Lookup::Corrupt { reason } = &other {
                changes.push(format!(
                    "cache entry {key} is damaged ({reason}): treated as absent"
                ));
            }
            if req.force {
                changes.push("--force".into());
            } else if req.reference != Reference::SelfIsReference && cross.is_none() {
                if let Some(old) = cache
                    .current()
                    .filter(|c| c != &key)
                    .and_then(|c| Cache::read_manifest(&cache.entry_dir(&c)).ok())
                {
                    changes.extend(cache::explain_changes(&old, &inputs, &decisions));
                    changes.extend(cache::explain_fingerprint(&old.fingerprint, &fingerprint));
                }
            }
            if changes.is_empty() {
                changes.push("no cached build for these inputs yet".into());
            }
            ctx.info(format!("{}: building: {}", req.label, changes.join("; ")));
            let m = build_and_publish(
                ctx,
                req,
                &cache,
                &inputs,
                &key,
                &decisions,
                &fingerprint,
                cross,
                progress,
            )?;
            (Outcome::Built, changes, m)
        }
    };
    Ok(Ensured {
        outcome,
        key,
        entry,
        changes,
        manifest,
    })
}

/// Why a cached entry whose verification did not run its runtime ("not run on this machine:
/// ...") must be verified now: this host can run it after all (an entry published while the host
/// check misread this CPU's features). `None` when it was run, or still cannot run here.
fn not_run_but_runs_here(
    verification: Option<&serde_json::Value>,
    host: &Machine,
    prefix: &Path,
) -> Option<String> {
    let v: Verification = serde_json::from_value(verification?.clone()).ok()?;
    let skipped = v.skipped.filter(|s| {
        v.runtime.is_none()
            && v.emulated.is_none()
            && v.no_device.is_none()
            && !s.starts_with("--lib-only")
    })?;
    let info = read_info(prefix).ok()?;
    let required = info.compiled_for.required_cpu_features.clone();
    cannot_run_here(host, &required, &info).is_none().then(|| {
        format!("its verification did not run the runtime ({skipped}), and this machine can run it")
    })
}

/// An entry with the same llama.cpp inputs (tree, profile, toolchain) but another runtime: its
/// libraries can be reused, so a runtime change costs a cargo build, not a llama.cpp build.
fn sibling_with_same_libraries(cache: &Cache, inputs: &KeyInputs) -> Option<PathBuf> {
    cache.list().into_iter().find_map(|(dir, m)| {
        let same = m.inputs.tree_digest == inputs.tree_digest
            && m.inputs.profile_hash == inputs.profile_hash
            && m.inputs.toolchain == inputs.toolchain;
        (same && matches!(cache.lookup(&m.key), Lookup::Hit(_))).then_some(dir)
    })
}

#[allow(clippy::too_many_arguments)]
fn build_and_publish(
    ctx: &Ctx,
    req: &Request,
    cache: &Cache,
    inputs: &KeyInputs,
    key: &str,
    decisions: &[(String, String)],
    fingerprint: &Fingerprint,
    cross: Option<&crate::cross::CrossToolchain>,
    progress: &dyn Progress,
) -> anyhow::Result<Manifest> {
    let staging = cache.stage(key)?;
    let prefix = staging.join("prefix");
    // The log lives outside the staging dir so its path stays valid when a build fails.
    let logs = ctx.cache_dir.join("logs");
    fs_err::create_dir_all(&logs)?;
    let log = logs.join(format!("build-{key}.log"));
    let build_seconds;
    let sibling =
        sibling_with_same_libraries(cache, inputs).filter(|_| !req.force && req.with_runtime);
    if let Some(sibling) = sibling {
        ctx.info(format!(
            "{}: only the runtime changed: reusing the llama.cpp libraries of {}",
            req.label,
            sibling.display()
        ));
        for part in ["include", "lib"] {
            crate::fsx::copy_dir(&sibling.join("prefix").join(part), &prefix.join(part))?;
        }
        // Described afresh, so a fixed link rule applies without recompiling llama.cpp.
        let link = crate::build::describe_link(&prefix)?;
        crate::fsx::write_atomic(
            &prefix.join(crate::build::LINK_FILE),
            &serde_json::to_vec_pretty(&link)?,
        )?;
        fs_err::copy(sibling.join("build.log"), &log)?;
        build_seconds = Cache::read_manifest(&sibling)
            .map(|m| m.build_seconds)
            .unwrap_or(0.0);
    } else {
        let host = req.host;
        let plan = crate::build::BuildPlan {
            tree: req.tree.root.clone(),
            profile_cmake: req.profile.cmake.clone(),
            build_dir: staging.join("build"),
            prefix: prefix.clone(),
            log: log.clone(),
            generator: host.tools.ninja.found().map(|_| "Ninja".to_string()),
            jobs: host.cpu.logical_cores.unwrap_or(2).max(1) as usize,
            defines: vec![
                (
                    "LLAMA_BUILD_NUMBER".into(),
                    req.tree.build_number.to_string(),
                ),
                ("LLAMA_BUILD_COMMIT".into(), req.tree.build_commit.clone()),
            ],
            cmake: host
                .tools
                .cmake
                .found()
                .map(|t| t.path.clone())
                .unwrap_or_else(|| "cmake".into())
                .into(),
            toolchain_file: cross.map(|tc| tc.toolchain_file()),
        };
        let out = crate::build::run(&plan, progress)?;
        ctx.info(format!(
            "{}: compiled llama.cpp in {:.0} s",
            req.label, out.seconds
        ));
        build_seconds = out.seconds;
        fs_err::remove_dir_all(staging.join("build"))?;
    }
    if req.with_runtime {
        let info = runtime_build::info_for(req.target, req.profile, req.tree, key);
        runtime_build::build(
            &ctx.repo_root,
            &prefix,
            &info,
            &ctx.cache_dir.join("runtime-target"),
            progress,
        )?;
    }
    let (v, program) = verification(ctx, req, cross, &prefix, key, progress)?;
    if let Some(program) = program {
        // Kept in the prefix (and so in a dist archive): the target machine can run it too.
        let to = prefix.join(crate::verify::emulated::PROGRAM);
        fs_err::create_dir_all(to.parent().expect("has parent"))?;
        fs_err::copy(&program, &to)?;
        let _ = fs_err::remove_file(&program);
    }
    fs_err::copy(&log, staging.join("build.log"))?;
    let manifest = Manifest {
        schema: 1,
        key: key.to_string(),
        inputs: inputs.clone(),
        decisions: decisions.to_vec(),
        fingerprint: fingerprint.clone(),
        provenance: "source".into(),
        tree_origin: req.tree.origin.clone(),
        pinned: req.tree.pinned,
        build_seconds,
        files: Vec::new(),
        verification: Some(serde_json::to_value(&v)?),
    };
    Ok(cache.publish(&staging, manifest)?)
}

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

/// The smoke link test plus the runtime checks (the reference logits come from the portable build);
/// for a cross build the C-level checks under emulation, and the verification program to keep.
fn verification(
    ctx: &Ctx,
    req: &Request,
    cross: Option<&crate::cross::CrossToolchain>,
    prefix: &Path,
    key: &str,
    progress: &dyn Progress,
) -> anyhow::Result<(Verification, Option<PathBuf>)> {
    if let Some(tc) = cross {
        let (v, program) = cross_verification(ctx, req, tc, prefix, key, progress)?;
        return Ok((v, Some(program)));
    }
    if !req.with_runtime {
        return Ok((
            Verification {
                smoke: smoke(ctx, req.host, prefix, key)?,
                runtime: None,
                skipped: Some("--lib-only: no runtime built".into()),
                no_device: None,
                emulated: None,
            },
            None,
        ));
    }
    let reference = |model: &Path| -> anyhow::Result<ReferenceLogits> {
        Ok(match req.reference {
            Reference::SelfIsReference => None,
            Reference::Portable => Some(portable_reference(ctx, req, model, progress)?),
            Reference::ShippedOrPortable => Some(crate::shipped_logits::shipped_or_portable(
                ctx, req.host, req.tree, model, progress,
            )?),
        })
    };
    Ok((
        verify_prefix(ctx, req.host, req.label, prefix, key, &reference)?,
        None,
    ))
}

/// A cross build (arm64 on this x86-64 host): the C verification program under qemu-aarch64 on the
/// oldest emulated CPU with the build's features, against this host's portable (x86) build's
/// logits, and its refusal on an older CPU. A tuned variant also brings the portable arm64 build
/// (armv8-a, run on a Cortex-A72) so one `dist` proves both.
fn cross_verification(
    ctx: &Ctx,
    req: &Request,
    tc: &crate::cross::CrossToolchain,
    prefix: &Path,
    key: &str,
    progress: &dyn Progress,
) -> anyhow::Result<(Verification, PathBuf)> {
    let required = crate::requirements::required_cpu_features(req.target, req.profile);
    let mut portable_arm64 = None;
    if !required.is_empty() {
        let portable = portable_machine(req.target);
        let profile = crate::profile::plan(&portable, &Default::default());
        let e = ensure(
            ctx,
            &Request {
                label: "portable arm64 reference",
                target: &portable,
                host: req.host,
                profile: &profile,
                tree: req.tree,
                force: false,
                reference: Reference::Portable,
                with_runtime: false,
            },
            progress,
        )?;
        let summary = e
            .manifest
            .verification
            .as_ref()
            .and_then(|v| v.pointer("/emulated/summary"))
            .and_then(|s| s.as_str())
            .unwrap_or("?")
            .to_string();
        portable_arm64 = Some(format!("portable arm64 build {}: {summary}", e.key));
    }
    let model = tiny_model(ctx)?;
    let (reference, name) = portable_reference(ctx, req, &model, progress)?;
    let work = ctx
        .cache_dir
        .join("tmp")
        .join(format!("verify-{key}-{}", std::process::id()));
    let result =
        crate::verify::emulated::verify(tc, prefix, &required, &model, (&reference, &name), &work);
    let (mut report, exe) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs_err::remove_dir_all(&work);
            return Err(e.into());
        }
    };
    report.portable_arm64 = portable_arm64;
    ctx.info(format!("{}: verified: {}", req.label, report.summary));
    // Moved out of the scratch dir before it is removed.
    let kept = ctx
        .cache_dir
        .join("tmp")
        .join(format!("logits-check-{key}-{}", std::process::id()));
    fs_err::rename(&exe, &kept)?;
    let _ = fs_err::remove_dir_all(&work);
    Ok((
        Verification {
            smoke: crate::verify::SmokeReport {
                system_info: report.system_info.clone(),
                link_command: report.link_command.clone(),
            },
            runtime: None,
            skipped: Some(format!(
                "{}; verified at the C level instead: {}",
                crate::verify::emulated::NO_RUST_RUNTIME,
                report.summary
            )),
            no_device: None,
            emulated: Some(report),
        },
        kept,
    ))
}

/// The link smoke test of a prefix, compiled with the host's C compiler.
fn smoke(
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
    let scratch = ctx
        .cache_dir
        .join("tmp")
        .join(format!("verify-{key}-{}", std::process::id()));
    let smoke = crate::verify::smoke(prefix, &cc, &scratch);
    let _ = fs_err::remove_dir_all(&scratch);
    Ok(smoke?)
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

/// The portable build's logits for the verification prompt (building it first if needed).
fn portable_reference(
    ctx: &Ctx,
    req: &Request,
    model: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<(Vec<f32>, String)> {
    portable_reference_of(ctx, req.host, req.tree, model, progress)
}

/// The portable build of `host` (built on demand, cached) run on `model`: the reference logits
/// every other build of the same tree is compared with. `host` can always run it.
pub fn portable_reference_of(
    ctx: &Ctx,
    host: &Machine,
    tree: &Tree,
    model: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<(Vec<f32>, String)> {
    let portable = portable_machine(host);
    let profile = crate::profile::plan(&portable, &Default::default());
    let e = ensure(
        ctx,
        &Request {
            label: "portable reference",
            target: &portable,
            host,
            profile: &profile,
            tree,
            force: false,
            reference: Reference::SelfIsReference,
            with_runtime: true,
        },
        progress,
    )?;
    let logits = crate::verify::runtime::logits(&e.runtime_bin(), model, 1)?;
    Ok((logits, format!("portable build {}", e.key)))
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
    use crate::machine::{Vulkan, VulkanHeaders};

    fn lavapipe_host() -> Machine {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/recorded/vulkaninfo-lavapipe-mesa22.3.6.txt"),
        )
        .unwrap();
        let mut m: Machine = serde_json::from_value(serde_json::json!({
            "schema": 1, "origin": "probed",
            "os": {"value": "linux", "source": "t"}, "arch": {"value": "x86_64", "source": "t"},
            "cpu": {}
        }))
        .unwrap();
        let devices = crate::probe::accel::parse_vulkaninfo(&text);
        m.vulkan = Detection::Found(Vulkan {
            loader: "/usr/lib/x86_64-linux-gnu/libvulkan.so.1".into(),
            devices: devices.iter().map(|d| d.name.clone()).collect(),
            physical_devices: devices,
            glslc: Some("/usr/bin/glslc".into()),
            spirv_headers: None,
            headers: Some(VulkanHeaders {
                include_dir: "/c/toolchains/vulkan-headers-1.4.309/usr/include".into(),
                version: "1.4.309".into(),
                sufficient: true,
                provider: "cache".into(),
                source: "t".into(),
            }),
            source: "t".into(),
        });
        m
    }

    #[test]
    fn vulkan_headers_and_devices_identify_only_vulkan_builds() {
        let host = lavapipe_host();
        assert_eq!(
            vulkan_headers_identity(&host).as_deref(),
            Some("1.4.309 /c/toolchains/vulkan-headers-1.4.309/usr/include")
        );
        let devs = vulkan_devices_identity(&host);
        assert_eq!(devs.len(), 1);
        assert!(
            devs[0].contains("llvmpipe") && devs[0].contains("vulkan cpu"),
            "{devs:?}"
        );
        // A build without Vulkan serialises its toolchain exactly as before the field existed,
        // so its cache key does not move when Vulkan headers appear on the machine.
        let t = crate::setup::toolchain_of(&host);
        assert!(t.vulkan_headers.is_none());
        assert!(!serde_json::to_string(&t).unwrap().contains("vulkan"));
    }

    #[test]
    fn an_entry_whose_runtime_was_not_run_is_reverified_when_this_host_can_run_it() {
        let host = lavapipe_host();
        let prefix = tempfile::tempdir().unwrap();
        std::fs::write(
            prefix.path().join(runtime_build::INFO_FILE),
            serde_json::json!({
                "schema": 1,
                "provenance": {"llama_commit": "x", "build_number": 0, "tree_digest": "d",
                    "pinned": true, "origin": "o", "profile_hash": "h", "key": "k", "provenance": "source"},
                "compiled_for": {"target_arch": "x86_64", "backends": ["cpu"],
                    "ggml_native": true, "required_cpu_features": []},
                "defaults": {"threads": 1, "threads_why": "", "gpu_layers": "auto", "gpu_layers_why": "",
                    "ctx_size": 1, "ctx_why": "", "ram_bytes": null}
            })
            .to_string(),
        )
        .unwrap();
        let smoke = serde_json::json!({"system_info": "CPU", "link_command": "cc"});
        let skipped = serde_json::json!({"smoke": smoke, "runtime": null,
            "skipped": "needs CPU features this machine lacks: sse3"});
        let why = not_run_but_runs_here(Some(&skipped), &host, prefix.path()).unwrap();
        assert!(
            why.contains("needs CPU features this machine lacks: sse3"),
            "{why}"
        );
        // --lib-only entries, and entries whose runtime still cannot run here, stay hits.
        let lib_only = serde_json::json!({"smoke": smoke, "runtime": null,
            "skipped": "--lib-only: no runtime built"});
        assert_eq!(
            not_run_but_runs_here(Some(&lib_only), &host, prefix.path()),
            None
        );
        let mut arm = host.clone();
        arm.arch.value = "aarch64".into();
        assert_eq!(
            not_run_but_runs_here(Some(&skipped), &arm, prefix.path()),
            None
        );
        assert_eq!(not_run_but_runs_here(None, &host, prefix.path()), None);
    }

    #[test]
    fn a_vulkan_build_runs_where_the_loader_lists_a_device() {
        let host = lavapipe_host();
        let info: RuntimeInfo = serde_json::from_value(serde_json::json!({
            "schema": 1,
            "provenance": {"llama_commit": "x", "build_number": 0, "tree_digest": "d",
                "pinned": true, "origin": "o", "profile_hash": "h", "key": "k", "provenance": "source"},
            "compiled_for": {"target_arch": "x86_64", "backends": ["cpu", "vulkan"],
                "ggml_native": false, "required_cpu_features": []},
            "defaults": {"threads": 1, "threads_why": "", "gpu_layers": "auto", "gpu_layers_why": "",
                "ctx_size": 1, "ctx_why": "", "ram_bytes": null}
        }))
        .unwrap();
        assert_eq!(cannot_run_here(&host, &[], &info), None);
        let mut none = host.clone();
        none.vulkan = Detection::NotFound { looked_in: vec![] };
        assert!(cannot_run_here(&none, &[], &info)
            .unwrap()
            .contains("vulkan"));
    }
}
