//! One cached build (llama.cpp libraries + runtime binary), from plan to published cache entry:
//! lookup, lock, build, verify, publish. `setup` (the tuned build), `bench` (the portable
//! baseline) and `dist` (CI variants) all go through here, so they share one cache and one
//! verification.

use crate::cache::{self, Cache, Fingerprint, KeyInputs, Lookup, Manifest};
use crate::context::Ctx;
use crate::machine::{Detection, Machine, Origin};
use crate::profile::Profile;
use crate::progress::Progress;
use crate::runtime_build;
use crate::source::Tree;
use crate::verify::prefix::{smoke, tiny_model, verify_prefix, ReferenceLogits, Verification};
use serde::Serialize;
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
    let fingerprint = crate::key::fingerprint_for(req.profile, req.host);
    let runtime_source = if req.with_runtime {
        Some(runtime_build::source_digest(&ctx.repo_root)?)
    } else {
        None
    };
    let env = crate::key::BuildEnv::capture(&ctx.repo_root);
    let inputs = crate::key::inputs(&crate::key::KeyRequest {
        profile: req.profile,
        target: req.target,
        host: req.host,
        source: &crate::key::SourceId::of_tree(req.tree),
        runtime_source,
        env: &env,
        cross,
    });
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
                && crate::verify::prefix::skipped_but_runnable_here(
                    &m,
                    &entry.join("prefix"),
                    req.host,
                )
                .is_none() =>
        {
            (Outcome::Hit, Vec::new(), *m)
        }
        Lookup::Hit(mut m) => {
            let mut changes = cache::explain_fingerprint(&m.fingerprint, &fingerprint);
            changes.extend(crate::verify::prefix::skipped_but_runnable_here(
                &m,
                &entry.join("prefix"),
                req.host,
            ));
            ctx.info(format!(
                "{}: same build inputs; re-verifying the existing build: {}",
                req.label,
                changes.join("; ")
            ));
            let (v, program) =
                verification(ctx, req, cross, &entry.join("prefix"), &key, progress)?;
            // The program's private scratch dir is removed when it drops.
            drop(program);
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

/// An entry with the same llama.cpp inputs (tree, profile, toolchain with the build environment)
/// but another key (another runtime, runtime defaults, generator version, or none with
/// `--lib-only`): its libraries are reused, so such a change costs a cargo build, not a llama.cpp
/// build; link.json and llama.pc are written afresh by this version's generator.
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
    let sibling = sibling_with_same_libraries(cache, inputs).filter(|_| !req.force);
    if let Some(sibling) = sibling {
        ctx.info(format!(
            "{}: same llama.cpp inputs (tree, profile, toolchain, build environment): reusing the libraries of {}",
            req.label,
            sibling.display()
        ));
        for part in ["include", "lib"] {
            crate::fsx::copy_dir(&sibling.join("prefix").join(part), &prefix.join(part))?;
        }
        // Described afresh, so a fixed link rule applies without recompiling llama.cpp.
        crate::build::write_link_files(&prefix)?;
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
            env: if cross.is_some_and(is_wasm_toolchain) {
                crate::wasm::env()
            } else {
                Vec::new()
            },
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
        let source = crate::key::SourceId::of_tree(req.tree);
        let info = runtime_build::info_for(req.target, req.profile, &source, key);
        runtime_build::build(
            &ctx.repo_root,
            &prefix,
            &info,
            &runtime_build::TargetDirs {
                seed: ctx.cache_dir.join(runtime_build::SHARED_TARGET),
                own: staging.join("runtime-target"),
            },
            progress,
        )?;
    }
    if let Some(tc) = cross.filter(|tc| is_wasm_toolchain(tc)) {
        // The WebAssembly module (C shim + JavaScript API) is part of the build: verified below.
        let cmd = crate::wasm::build_module(tc, &prefix, &log)?;
        ctx.info(format!("{}: linked the wasm module: {cmd}", req.label));
    }
    let (v, program) = verification(ctx, req, cross, &prefix, key, progress)?;
    if let Some(program) = program {
        // Kept in the prefix (and so in a dist archive): the target machine can run it too.
        let to = prefix.join(crate::verify::emulated::PROGRAM);
        fs_err::create_dir_all(to.parent().expect("has parent"))?;
        fs_err::copy(&program.path, &to)?;
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

/// The verification program of a cross build, in the private scratch dir that holds it (removed
/// when this drops).
pub struct Program {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
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
) -> anyhow::Result<(Verification, Option<Program>)> {
    if let Some(tc) = cross.filter(|tc| is_wasm_toolchain(tc)) {
        return Ok((wasm_verification(ctx, req, tc, prefix, progress)?, None));
    }
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
) -> anyhow::Result<(Verification, Program)> {
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
    // A private scratch dir (created exclusively, removed when it drops), never a path another
    // process could predict.
    let work = crate::fsx::private_temp_dir(Some(&ctx.cache_dir), &format!("verify-{key}-"))?;
    let (mut report, exe) = crate::verify::emulated::verify(
        tc,
        prefix,
        &required,
        &model,
        (&reference, &name),
        work.path(),
    )?;
    report.portable_arm64 = portable_arm64;
    ctx.info(format!("{}: verified: {}", req.label, report.summary));
    Ok((
        emulated_verification(report, crate::verify::emulated::NO_RUST_RUNTIME),
        Program {
            _dir: work,
            path: exe,
        },
    ))
}

fn is_wasm_toolchain(tc: &crate::cross::CrossToolchain) -> bool {
    tc.target_arch == "wasm32"
}

/// A WebAssembly build: its module under node against this host's portable (x86) build's logits,
/// and the SIMD128 kernels compiled in (`verify::wasm`).
fn wasm_verification(
    ctx: &Ctx,
    req: &Request,
    tc: &crate::cross::CrossToolchain,
    prefix: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<Verification> {
    let model = tiny_model(ctx)?;
    let (reference, name) = portable_reference(ctx, req, &model, progress)?;
    let work = crate::fsx::private_temp_dir(Some(&ctx.cache_dir), "verify-wasm-")?;
    let report = crate::verify::wasm::verify(tc, prefix, &model, (&reference, &name), work.path())?;
    ctx.info(format!("{}: verified: {}", req.label, report.summary));
    Ok(emulated_verification(
        report,
        crate::verify::wasm::NO_RUST_RUNTIME,
    ))
}

/// The verification record of a build proven without the Rust runtime (arm64 under qemu, wasm
/// under node): the report, and why the runtime checks did not run.
fn emulated_verification(
    report: crate::verify::emulated::EmulatedReport,
    no_runtime: &str,
) -> Verification {
    Verification {
        smoke: crate::verify::SmokeReport {
            system_info: report.system_info.clone(),
            link_command: report.link_command.clone(),
        },
        runtime: None,
        skipped: Some(format!(
            "{no_runtime}; verified at the C level instead: {}",
            report.summary
        )),
        no_device: None,
        emulated: Some(report),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Vulkan, VulkanHeaders};
    use crate::runtime_build::RuntimeInfo;
    use crate::verify::prefix::cannot_run_here;

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
            crate::key::vulkan_headers_identity(&host).as_deref(),
            Some("1.4.309 /c/toolchains/vulkan-headers-1.4.309/usr/include")
        );
        let devs = crate::key::vulkan_devices_identity(&host);
        assert_eq!(devs.len(), 1);
        assert!(
            devs[0].contains("llvmpipe") && devs[0].contains("vulkan cpu"),
            "{devs:?}"
        );
        // A build without Vulkan serialises its toolchain exactly as before the field existed,
        // so its cache key does not move when Vulkan headers appear on the machine.
        let t = crate::key::toolchain_of(&host);
        assert!(t.vulkan_headers.is_none());
        assert!(!serde_json::to_string(&t).unwrap().contains("vulkan"));
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
