//! `setup --prebuilt-index`: install the best prebuilt artifact for this machine instead of
//! building. Select (requirements vs the probed Machine, pin digest) → download through the
//! verified download path → extract safely into a staging dir → the same verification as a
//! source build (the portable reference logits travel in the archive's verification report) →
//! publish into the build cache with provenance "prebuilt". Nothing is installed on any failure.

use super::{index::Index, select};
use crate::artifact::{Outcome, Verification};
use crate::cache::{self, Cache, KeyInputs, Lookup, Manifest, Toolchain};
use crate::context::Ctx;
use crate::machine::Machine;
use crate::progress::Progress;
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

/// Tries each index in turn; `Ok(None)` (after saying why each candidate was rejected) when no
/// artifact fits, so the caller builds from source.
pub fn try_install(
    ctx: &Ctx,
    host: &Machine,
    indexes: &[String],
    allow_http: bool,
    progress: &dyn Progress,
) -> anyhow::Result<Option<Installed>> {
    let pin = crate::source::pin::Pin::load(&ctx.repo_root.join(crate::source::pin::PIN_PATH))?;
    let opts = crate::download::Options {
        allow_http,
        ..Default::default()
    };
    for location in indexes {
        let index = Index::load(location, &opts)?;
        let sel = select(&index, host, &pin.tree.digest);
        for r in &sel.rejected {
            ctx.info(format!(
                "prebuilt {} does not fit: {}",
                r.variant,
                r.reasons.join("; ")
            ));
        }
        let Some(chosen) = sel.chosen else {
            ctx.info(format!("no prebuilt in {location} fits this machine"));
            continue;
        };
        ctx.info(format!(
            "prebuilt {} fits this machine (from {location})",
            chosen.variant
        ));
        return install(ctx, host, &chosen, &pin.tree.digest, &opts, progress).map(Some);
    }
    Ok(None)
}

fn install(
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
        let downloads = staging.join("download");
        fs_err::create_dir_all(&downloads)?;
        let archive = super::fetch_with(artifact, &downloads, opts, progress)?;
        let prefix = staging.join("prefix");
        super::archive::extract_safe(&archive, &prefix)?;
        fs_err::remove_dir_all(&downloads)?;
        if !crate::runtime_build::binary_in(&prefix).is_file() {
            anyhow::bail!(
                "prebuilt {} has no runtime binary ({}): it was cross-built and checked at the C level only; build from source with `cargo xtask setup --from-source`",
                artifact.variant,
                crate::runtime_build::binary_in(Path::new("")).display()
            );
        }
        // The archive carries the portable reference logits of the verification model
        // (reference-logits.json; older archives only inside their verification report).
        let ours = crate::artifact::tiny_model(ctx)?;
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
        let from_archive = |_: &Path| -> anyhow::Result<crate::artifact::ReferenceLogits> {
            reference.clone().map(Some).ok_or_else(|| {
                anyhow::anyhow!(
                    "prebuilt {} carries no reference logits to verify against",
                    artifact.variant
                )
            })
        };
        let v = crate::artifact::verify_prefix(
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
