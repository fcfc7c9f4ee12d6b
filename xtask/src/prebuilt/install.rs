//! `setup --prebuilt-index`: install the best prebuilt artifact for this machine instead of
//! building. [`offer`] reads the indexes and selects (requirements vs the target Machine, pin
//! digest; the machine running the check must be able to run it too); `setup`'s plan decides
//! whether it is taken (a fresh tuned build always wins). [`install`] then downloads through the
//! verified download path, reads the dist manifest beside the archive (its sha256 checked against
//! the index's `manifest_sha256`), extracts safely into a staging dir, checks every extracted file
//! against the manifest (size and sha256), runs the same verification as a source build on this
//! machine (the portable reference logits travel in the archive) and publishes into the build
//! cache with provenance "prebuilt". Nothing is installed on any failure.

use super::{index::Index, select};
use crate::artifact::Outcome;
use crate::cache::{self, Cache, KeyInputs, Lookup, Manifest, Toolchain};
use crate::context::Ctx;
use crate::machine::Machine;
use crate::progress::Progress;
use crate::verify::prefix::Verification;
use serde::Serialize;
use std::path::Path;

pub struct Installed {
    pub outcome: Outcome,
    pub key: String,
    pub entry: std::path::PathBuf,
    pub variant: String,
    pub changes: Vec<String>,
}

/// Cache keys of prebuilt entries: the archive's sha256 is their whole identity.
pub fn key_of(archive_sha256: &str) -> String {
    format!(
        "prebuilt-{}",
        &archive_sha256[..20.min(archive_sha256.len())]
    )
}

/// The prebuilt an index offers for the target machine (plain data, for the setup plan).
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The index it is listed in.
    pub index: String,
    pub variant: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// Its cache key, and whether the cache already holds it.
    pub key: String,
    pub cached: bool,
    /// Why this machine, which runs the verification, cannot run it (empty: it can). Differs
    /// from the selection only when `--machine` names another machine as the target.
    pub host_cannot_run: Vec<String>,
    #[serde(skip)]
    pub artifact: super::Artifact,
}

/// What the indexes offer for a target: the best candidate, and why each other one does not fit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Offer {
    pub candidate: Option<Candidate>,
    /// `variant: reason; reason` for every rejected artifact, per index.
    pub rejected: Vec<String>,
}

/// Reads the indexes (no archive is downloaded, nothing is written) and picks the best artifact
/// for `target` (the machine the artifact is for: selects the variant); `host` (the machine
/// running the check) must be able to run it too, or it cannot be verified here.
pub fn offer(
    ctx: &Ctx,
    target: &Machine,
    host: &Machine,
    indexes: &[String],
    allow_http: bool,
) -> anyhow::Result<Offer> {
    let pin = crate::source::pin::Pin::load(&ctx.repo_root.join(crate::source::pin::PIN_PATH))?;
    let opts = download_options(allow_http);
    let cache = Cache::new(&ctx.cache_dir);
    let mut out = Offer::default();
    for location in indexes {
        let index = Index::load(location, &opts)?;
        let sel = select(&index, target, &pin.tree.digest);
        for r in &sel.rejected {
            out.rejected
                .push(format!("{}: {}", r.variant, r.reasons.join("; ")));
        }
        let Some(chosen) = sel.chosen else {
            out.rejected
                .push(format!("(no artifact in {location} fits this machine)"));
            continue;
        };
        let key = key_of(&chosen.sha256);
        out.candidate = Some(Candidate {
            index: location.clone(),
            variant: chosen.variant.clone(),
            url: chosen.url.clone(),
            sha256: chosen.sha256.clone(),
            size: chosen.size,
            cached: matches!(cache.lookup(&key), Lookup::Hit(_)),
            key,
            host_cannot_run: super::select::reasons_against(&chosen, host, &pin.tree.digest),
            artifact: chosen,
        });
        break;
    }
    Ok(out)
}

fn download_options(allow_http: bool) -> crate::download::Options {
    crate::download::Options {
        allow_http,
        proxies: crate::download::Proxies::from_env(),
        ..Default::default()
    }
}

/// Installs `candidate` (from [`offer`]) for `host`: download, check against the index and the
/// manifest beside the archive, extract, verify on this machine, publish. Nothing is installed
/// on any failure.
pub fn install(
    ctx: &Ctx,
    host: &Machine,
    candidate: &Candidate,
    allow_http: bool,
    progress: &dyn Progress,
) -> anyhow::Result<Installed> {
    if !candidate.host_cannot_run.is_empty() {
        anyhow::bail!(
            "prebuilt {} cannot be verified on this machine: {}",
            candidate.variant,
            candidate.host_cannot_run.join("; ")
        );
    }
    let pin = crate::source::pin::Pin::load(&ctx.repo_root.join(crate::source::pin::PIN_PATH))?;
    install_artifact(
        ctx,
        host,
        &candidate.artifact,
        &pin.tree.digest,
        &download_options(allow_http),
        progress,
    )
}

fn install_artifact(
    ctx: &Ctx,
    host: &Machine,
    artifact: &super::Artifact,
    pin_digest: &str,
    opts: &crate::download::Options,
    progress: &dyn Progress,
) -> anyhow::Result<Installed> {
    let key = key_of(&artifact.sha256);
    let fingerprint = crate::key::fingerprint_of(host);
    let cache = Cache::new(&ctx.cache_dir);
    let _lock = cache.lock(&key, || {
        ctx.info(format!(
            "another process is installing {key}; waiting for it"
        ))
    })?;
    let entry = cache.entry_dir(&key);
    if let Lookup::Hit(m) = cache.lookup(&key) {
        if m.fingerprint == fingerprint {
            return Ok(Installed {
                outcome: Outcome::Hit,
                key,
                entry,
                variant: artifact.variant.clone(),
                changes: Vec::new(),
            });
        }
    }
    let staging = cache.stage(&key)?;
    let result = (|| -> anyhow::Result<Manifest> {
        // The manifest `dist` wrote beside the archive: checked against the index first, then
        // every extracted file against it (size and sha256), before anything runs.
        let manifest = super::manifest::fetch_checked(artifact, opts)?;
        let downloads = staging.join("download");
        fs_err::create_dir_all(&downloads)?;
        let archive = super::fetch_with(artifact, &downloads, opts, progress)?;
        let prefix = staging.join("prefix");
        super::archive::extract_safe(&archive, &prefix)?;
        fs_err::remove_dir_all(&downloads)?;
        super::manifest::check_extracted(&manifest, artifact, &prefix)?;
        if !crate::runtime_build::binary_in(&prefix).is_file() {
            anyhow::bail!(
                "prebuilt {} has no runtime binary ({}): it was cross-built and checked at the C level only; build from source with `cargo xtask setup --from-source`",
                artifact.variant,
                crate::runtime_build::binary_in(Path::new("")).display()
            );
        }
        // The archive carries the portable reference logits of the verification model
        // (reference-logits.json; older archives only inside their verification report).
        let ours = crate::verify::prefix::tiny_model(ctx)?;
        let (ours_sha256, _) = crate::hashing::sha256_file(&ours)?;
        let carried = super::reference::read(&prefix)?
            .map(|r| r.for_model(&ours, &ours_sha256))
            .transpose()?;
        let shipped: Option<Verification> =
            fs_err::read_to_string(prefix.join(crate::dist::VERIFICATION_FILE))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let reference = carried.or_else(|| {
            shipped
                .and_then(|v| v.runtime)
                .and_then(|r| r.logits)
                .filter(|l| !l.reference_values.is_empty())
                .map(|l| {
                    (
                        l.reference_values,
                        format!("{} (recorded by dist)", l.reference),
                    )
                })
        });
        let from_archive = |_: &Path| -> anyhow::Result<crate::verify::prefix::ReferenceLogits> {
            reference.clone().map(Some).ok_or_else(|| {
                anyhow::anyhow!(
                    "prebuilt {} carries no reference logits to verify against",
                    artifact.variant
                )
            })
        };
        let v = crate::verify::prefix::verify_prefix(
            ctx,
            host,
            &format!("prebuilt {}", artifact.variant),
            &prefix,
            &key,
            &from_archive,
        )?;
        if let Some(why) = &v.skipped {
            anyhow::bail!(
                "prebuilt {} cannot be verified here: {why}",
                artifact.variant
            );
        }
        let inputs = KeyInputs {
            tree_digest: artifact.llama.tree_digest.clone(),
            profile_hash: format!("prebuilt {}", artifact.variant),
            toolchain: Toolchain {
                c: format!("prebuilt ({})", artifact.target),
                cxx: format!("prebuilt ({})", artifact.target),
                cmake: "prebuilt".into(),
                ninja: None,
                nvcc: None,
                cross: None,
                vulkan_headers: None,
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(Manifest {
            schema: 1,
            key: key.clone(),
            inputs,
            decisions: Vec::new(),
            fingerprint: fingerprint.clone(),
            provenance: "prebuilt".into(),
            tree_origin: artifact.url.clone(),
            pinned: artifact.llama.tree_digest == pin_digest,
            build_seconds: 0.0,
            files: Vec::new(),
            verification: Some(serde_json::to_value(&v)?),
        })
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            // Nothing half-installed: the staging dir goes, the cache keeps what it had.
            let _ = fs_err::remove_dir_all(&staging);
            return Err(e);
        }
    };
    cache.publish(&staging, manifest)?;
    Ok(Installed {
        outcome: Outcome::Built,
        key,
        entry,
        variant: artifact.variant.clone(),
        changes: vec![format!("installed prebuilt {}", artifact.variant)],
    })
}

/// Lines explaining a prebuilt entry's staleness (for `status`): only the pin and the machine
/// matter, the profile and toolchain were the CI runner's.
pub fn stale_because(m: &Manifest, pin_digest: &str, host: &Machine) -> Vec<String> {
    let mut out = Vec::new();
    if m.inputs.tree_digest != pin_digest {
        out.push(format!(
            "prebuilt from tree {}, the pin is {}",
            &m.inputs.tree_digest[..12.min(m.inputs.tree_digest.len())],
            &pin_digest[..12.min(pin_digest.len())]
        ));
    }
    out.extend(cache::explain_fingerprint(
        &m.fingerprint,
        &crate::key::fingerprint_of(host),
    ));
    out
}
