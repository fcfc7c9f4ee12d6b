//! `cargo xtask dist --variant NAME`: build one CI matrix variant and pack it as a prebuilt
//! artifact. The variant's declared Machine is planned (nothing is probed for it), built and
//! verified through the same path as `setup` (so the same cache), then its prefix, profile and
//! verification report are packed into a deterministic archive with a manifest beside it.

use crate::artifact::{self, Reference, Request};
use crate::context::Ctx;
use crate::prebuilt::manifest::{
    self, ArchiveRef, Manifest, VerificationStatus, VerificationSummary, MANIFEST_SCHEMA,
};
use crate::prebuilt::{archive, LlamaRef};
use crate::progress::Progress;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Files of an archive besides the prefix contents.
pub const PROFILE_FILE: &str = "profile.cmake";
pub const VERIFICATION_FILE: &str = "verification.json";

#[derive(Debug, Serialize)]
pub struct DistReport {
    pub variant: String,
    pub key: String,
    pub archive: PathBuf,
    pub manifest: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Why the runtime checks did not run here, when they did not.
    pub verification_skipped: Option<String>,
    /// Cross builds: what ran instead (C-level logits under qemu-aarch64 -cpu X, max |diff|).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulated: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("variant {variant} is built on {runner} for {want}; this machine is {have}")]
    WrongHost {
        variant: String,
        runner: String,
        want: String,
        have: String,
    },
    #[error("variant {variant} builds with CUDA {cuda}; this machine has no CUDA toolkit")]
    NoCuda { variant: String, cuda: String },
}

impl crate::error::Hint for DistError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            DistError::WrongHost { runner, .. } => format!(
                "build it on its CI runner ({runner}); `cargo xtask ci matrix` lists which variant builds where"
            ),
            DistError::NoCuda { .. } => "install the CUDA toolkit the variant names (ci/matrix.toml) or build it on its CI runner".into(),
        })
    }
}

pub fn run(ctx: &Ctx, args: &DistArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    let matrix = crate::ci::matrix::Matrix::load(&ctx.repo_root)?;
    let mut variant = matrix.variant(&args.variant)?.clone();
    let mut host = crate::prereq::ensure_build_tools(ctx)?;
    if args.cuda_toolkit.as_deref() == Some("wheels") && variant.machine.cuda.found().is_some() {
        let tk = crate::cuda_wheels::substitute(ctx, &mut variant.machine)?;
        host.cuda = crate::machine::Detection::Found(tk);
    }
    let (want_os, want_arch) = (&variant.machine.os.value, &variant.machine.arch.value);
    // An arm64 Linux variant on an x86-64 Linux host is cross-built and verified under
    // qemu-aarch64 at the C level (cross.rs, verify/emulated.rs): same ensure path, no runtime.
    let cross = crate::cross::is_cross(&host, &variant.machine)
        && crate::cross::supported(&host, &variant.machine);
    if cross {
        crate::prereq::ensure_cross_tools(ctx, want_arch)?;
    }
    if !cross && (want_os != &host.os.value || want_arch != &host.arch.value) {
        return Err(DistError::WrongHost {
            variant: variant.name.clone(),
            runner: variant.runner.clone(),
            want: format!("{want_os} {want_arch}"),
            have: format!("{} {}", host.os.value, host.arch.value),
        }
        .into());
    }
    if let Some(cuda) = variant.machine.cuda.found() {
        if host.cuda.found().is_none() {
            return Err(DistError::NoCuda {
                variant: variant.name.clone(),
                cuda: cuda.version.clone(),
            }
            .into());
        }
    }
    let profile = crate::profile::plan(&variant.machine, &Default::default());
    let plan = crate::source::plan_from_args(ctx, &crate::source::SourceArgs::default())?;
    let tree = crate::source::obtain(&plan, progress)?;
    let built = artifact::ensure(
        ctx,
        &Request {
            label: &variant.name,
            target: &variant.machine,
            host: &host,
            profile: &profile,
            tree: &tree,
            force: args.force,
            reference: Reference::Portable,
            with_runtime: true,
        },
        progress,
    )?;

    // Stage what the archive holds: the prefix (runtime, libraries, headers, link description,
    // runtime-info.json), the profile and the verification report.
    fs_err::create_dir_all(&args.out)?;
    // Created exclusively under a random name (`--out` may be a shared directory such as /tmp);
    // removed when the guard drops.
    let stage_guard = tempfile::Builder::new()
        .prefix(&format!(".stage-{}-", variant.name))
        .tempdir_in(&args.out)?;
    let stage = stage_guard.path().join("prefix");
    crate::fsx::copy_dir(&built.prefix(), &stage)?;
    fs_err::write(stage.join(PROFILE_FILE), &profile.cmake)?;
    if crate::wasm::is_wasm(&variant.machine) {
        // The page beside the module: `web/` of the archive is a complete site
        // (`cargo xtask serve-wasm --site web/`, or any static server with application/wasm).
        crate::wasm::stage_site(&ctx.repo_root, &built.prefix(), &stage.join("web"))?;
    }
    let verification = built.manifest.verification.clone().unwrap_or_default();
    fs_err::write(
        stage.join(VERIFICATION_FILE),
        serde_json::to_vec_pretty(&verification)?,
    )?;
    // The portable reference logits always travel in the archive, computed here (this host can
    // always run its portable build), so the target verifies the archive where it is installed
    // even when nothing could run here.
    let checked: Option<crate::verify::prefix::Verification> =
        serde_json::from_value(verification.clone()).ok();
    let ran = checked.as_ref().and_then(|v| v.runtime.as_ref());
    let model = crate::verify::prefix::tiny_model(ctx)?;
    let (model_sha256, _) = crate::hashing::sha256_file(&model)?;
    // The recorded reference logits travel only when they were computed on this very model (the
    // report records its sha256); otherwise they are computed again on it.
    let (logits, reference_name) = match ran.and_then(|r| r.reference_logits_for(&model_sha256)) {
        Some(recorded) => recorded,
        None => artifact::portable_reference_of(ctx, &host, &tree, &model, progress)?,
    };
    let shipped = crate::prebuilt::reference::ShippedReference {
        schema: crate::prebuilt::reference::SCHEMA,
        reference: format!("{reference_name} on {} {}", host.os.value, host.arch.value),
        model: model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        model_sha256,
        logits,
    };
    fs_err::write(
        stage.join(crate::prebuilt::reference::FILE),
        serde_json::to_vec_pretty(&shipped)?,
    )?;
    let summary = summarize(checked.as_ref(), ran);
    let archive_path = args.out.join(manifest::archive_name(&variant.name));
    let packed = archive::pack_dir(&stage, &archive_path);
    let files = manifest::file_entries(&stage);
    fs_err::remove_dir_all(&stage)?;
    let packed = packed?;
    let m = Manifest {
        schema: MANIFEST_SCHEMA,
        variant: variant.name.clone(),
        target: variant.target.clone(),
        requirements: variant.requirements.clone(),
        llama: LlamaRef {
            commit: tree
                .commit
                .clone()
                .unwrap_or_else(|| tree.build_commit.clone()),
            tree_digest: tree.digest.clone(),
        },
        profile_hash: profile.hash.clone(),
        verification: summary,
        files: files?,
        archive: ArchiveRef {
            name: manifest::archive_name(&variant.name),
            sha256: packed.sha256.clone(),
            size: packed.size,
        },
    };
    let manifest_path = args.out.join(manifest::manifest_name(&variant.name));
    crate::fsx::write_atomic(&manifest_path, m.to_json().as_bytes())?;
    let report = DistReport {
        variant: variant.name.clone(),
        key: built.key.clone(),
        archive: archive_path,
        manifest: manifest_path,
        sha256: packed.sha256,
        size: packed.size,
        verification_skipped: (m.verification.status == VerificationStatus::NotRun)
            .then(|| m.verification.detail.clone()),
        emulated: verification
            .pointer("/emulated/summary")
            .and_then(|s| s.as_str())
            .map(str::to_string),
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} ({}, sha256 {})",
            report.variant,
            report.archive.display(),
            crate::progress::human_bytes(report.size),
            report.sha256
        );
        println!("  manifest: {}", report.manifest.display());
        if let Some(what) = &report.emulated {
            println!("  verified under emulation: {what}");
        }
        if let Some(why) = &report.verification_skipped {
            println!("  NOT VERIFIED HERE: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest's verification summary: `verified` only when the runtime's checks ran and
/// passed here; otherwise `not_run` with the reason.
fn summarize(
    checked: Option<&crate::verify::prefix::Verification>,
    ran: Option<&crate::verify::runtime::RuntimeReport>,
) -> VerificationSummary {
    match (checked, ran) {
        (_, Some(r)) => VerificationSummary {
            status: VerificationStatus::Verified,
            detail: format!(
                "runtime verified on the build host: {} tokens generated{}",
                r.generate.tokens,
                r.logits
                    .as_ref()
                    .map(|l| format!(
                        ", logits within {:.1e} of {}",
                        l.max_abs_diff, l.reference
                    ))
                    .unwrap_or_default()
            ),
        },
        (Some(v), None) if v.emulated.is_some() => VerificationSummary {
            status: VerificationStatus::Emulated,
            detail: format!(
                "{}; the archive has no Rust runtime (bin/tunellama): it cannot be installed by `setup --prebuilt-index`",
                v.emulated.as_ref().map(|e| e.summary.as_str()).unwrap_or_default()
            ),
        },
        (v, None) => VerificationSummary {
            status: VerificationStatus::NotRun,
            detail: format!(
                "the runtime checks did not run on the build host ({}); `setup` verifies the archive on its target against the reference logits it carries ({})",
                v.and_then(|v| v.skipped.clone())
                    .unwrap_or_else(|| "no verification report".into()),
                crate::prebuilt::reference::FILE
            ),
        },
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct DistArgs {
    /// The variant to build (`cargo xtask ci matrix` lists them)
    #[arg(long, value_name = "NAME")]
    pub variant: String,
    /// Folder for the archive and its manifest
    #[arg(long, default_value = "dist", value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Rebuild even when the cache holds the variant's build
    #[arg(long)]
    pub force: bool,
    /// `wheels`: compile a CUDA variant with the CUDA 13 toolkit from NVIDIA's Python wheels
    /// (installed into the cache on first use; docs/cuda.md)
    #[arg(long, value_name = "wheels", value_parser = ["wheels"])]
    pub cuda_toolkit: Option<String>,
}
