//! The dist manifest (what one artifact is: variant, requirements, llama.cpp tree, profile, the
//! sha256 of every file and of the archive), and building the prebuilt index from manifests.

use super::index::{Artifact, Index, LlamaRef, INDEX_SCHEMA};
use super::{PrebuiltError, Requirements};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped when the manifest's JSON shape changes incompatibly.
pub const MANIFEST_SCHEMA: u32 = 2;
/// Manifests are `<variant>.manifest.json` beside `<archive>`.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub variant: String,
    /// Rust target triple.
    pub target: String,
    pub requirements: Requirements,
    pub llama: LlamaRef,
    /// The profile's hash (sha256 of its CMake script): the build decisions' identity.
    pub profile_hash: String,
    /// Whether the runtime checks ran where the archive was built.
    pub verification: VerificationSummary,
    /// Every file in the archive, sorted by path (`/`-separated).
    pub files: Vec<FileEntry>,
    pub archive: ArchiveRef,
}

/// What `dist` proved before packing: an archive is never published as verified when it was not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSummary {
    pub status: VerificationStatus,
    /// What ran and what it showed, or why nothing ran (and what verifies it instead).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// The runtime's checks (features, generation, logits vs the portable build) passed on the
    /// build host.
    Verified,
    /// Cross-built: the C verification program ran under emulation (qemu-user) and matched the
    /// portable reference; the archive has no Rust runtime.
    Emulated,
    /// The build host cannot run it (another CPU, GPU or OS); it is verified at install time
    /// against the reference logits in the archive.
    NotRun,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRef {
    /// File name of the archive, beside the manifest (`tunellama-linux-x86_64-v3.tar.gz`).
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// The archive file name of a variant.
pub fn archive_name(variant: &str) -> String {
    format!("tunellama-{variant}.tar.gz")
}

/// The manifest file name of a variant.
pub fn manifest_name(variant: &str) -> String {
    format!("tunellama-{variant}{MANIFEST_SUFFIX}")
}

/// The files under `dir` with their sha256 and size, sorted by path (for `Manifest::files`).
pub fn file_entries(dir: &Path) -> std::io::Result<Vec<FileEntry>> {
    fn rec(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> std::io::Result<()> {
        for e in fs_err::read_dir(dir)? {
            let path = e?.path();
            let meta = fs_err::symlink_metadata(&path)?;
            if meta.is_dir() {
                rec(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let (sha256, size) = crate::hashing::sha256_file(&path)?;
                out.push(FileEntry {
                    path: rel,
                    sha256,
                    size,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    rec(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Checks that `dir` holds exactly `files` (an extracted archive against its manifest).
pub fn verify_files(files: &[FileEntry], dir: &Path) -> Result<(), String> {
    let actual = file_entries(dir).map_err(|e| e.to_string())?;
    if actual == files {
        return Ok(());
    }
    for f in files {
        match actual.iter().find(|a| a.path == f.path) {
            None => return Err(format!("{} is missing", f.path)),
            Some(a) if a.sha256 != f.sha256 => {
                return Err(format!(
                    "{}: sha256 {} instead of {}",
                    f.path, a.sha256, f.sha256
                ))
            }
            Some(_) => {}
        }
    }
    let extra: Vec<_> = actual
        .iter()
        .filter(|a| !files.iter().any(|f| f.path == a.path))
        .map(|a| a.path.as_str())
        .collect();
    Err(format!("files not in the manifest: {}", extra.join(", ")))
}

/// Where `dist` publishes the manifest of `artifact`: beside its archive (resolved URL).
pub fn manifest_url(artifact: &Artifact) -> Result<url::Url, PrebuiltError> {
    let unavailable = |reason: String| PrebuiltError::ManifestUnavailable {
        variant: artifact.variant.clone(),
        url: artifact.url.clone(),
        reason,
    };
    let archive = url::Url::parse(&artifact.url).map_err(|e| unavailable(e.to_string()))?;
    archive
        .join(&manifest_name(&artifact.variant))
        .map_err(|e| unavailable(e.to_string()))
}

/// Reads the manifest published beside `artifact`'s archive and checks it against the index:
/// its own sha256 (when the index records `manifest_sha256`), its schema, and that it describes
/// this artifact (variant, tree digest). Reads only; writes nothing.
pub fn fetch_checked(
    artifact: &Artifact,
    opts: &crate::download::Options,
) -> Result<Manifest, PrebuiltError> {
    let url = manifest_url(artifact)?;
    let unavailable = |reason: String| PrebuiltError::ManifestUnavailable {
        variant: artifact.variant.clone(),
        url: url.to_string(),
        reason,
    };
    let text = if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|_| unavailable("not a local path".into()))?;
        fs_err::read_to_string(&path).map_err(|e| unavailable(e.to_string()))?
    } else {
        crate::download::check_url(url.as_str(), opts).map_err(|e| unavailable(e.to_string()))?;
        super::index::fetch_text(&url, opts).map_err(|e| unavailable(e.to_string()))?
    };
    let actual = crate::hashing::hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
    if let Some(expected) = &artifact.manifest_sha256 {
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(PrebuiltError::ManifestChecksum {
                variant: artifact.variant.clone(),
                url: url.to_string(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    let m: Manifest = serde_json::from_str(&text).map_err(|e| {
        unavailable(format!(
            "{}:{}: not a dist manifest: {e}",
            e.line(),
            e.column()
        ))
    })?;
    if m.schema != MANIFEST_SCHEMA {
        return Err(unavailable(format!(
            "manifest schema {} (this tool reads {MANIFEST_SCHEMA})",
            m.schema
        )));
    }
    if m.variant != artifact.variant || m.llama.tree_digest != artifact.llama.tree_digest {
        return Err(unavailable(format!(
            "it describes variant {} from tree {}, the index says {} from tree {}",
            m.variant, m.llama.tree_digest, artifact.variant, artifact.llama.tree_digest
        )));
    }
    Ok(m)
}

/// Checks an extracted archive against its manifest: every listed file present with its size
/// and sha256, no file that the manifest does not list, and the archive the index pointed at is
/// the one the manifest describes. The first difference is the error, naming the file.
pub fn check_extracted(m: &Manifest, artifact: &Artifact, dir: &Path) -> Result<(), PrebuiltError> {
    let tampered = |file: &str, what: String| PrebuiltError::TamperedFile {
        variant: artifact.variant.clone(),
        url: artifact.url.clone(),
        file: file.to_string(),
        what,
    };
    let actual = file_entries(dir).map_err(|e| PrebuiltError::Mismatch {
        variant: artifact.variant.clone(),
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    for f in &m.files {
        match actual.iter().find(|a| a.path == f.path) {
            None => {
                return Err(tampered(
                    &f.path,
                    "is missing (the manifest lists it)".into(),
                ))
            }
            Some(a) if a.sha256 != f.sha256 || a.size != f.size => {
                return Err(tampered(
                    &f.path,
                    format!(
                        "has sha256 {} ({} bytes); the manifest says {} ({} bytes)",
                        a.sha256, a.size, f.sha256, f.size
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = actual
        .iter()
        .find(|a| !m.files.iter().any(|f| f.path == a.path))
    {
        return Err(tampered(
            &extra.path,
            format!("is not in the manifest (sha256 {})", extra.sha256),
        ));
    }
    if m.archive.sha256 != artifact.sha256 || m.archive.size != artifact.size {
        return Err(tampered(
            &m.archive.name,
            format!(
                "(the archive itself) has sha256 {} ({} bytes) per the index; the manifest says {} ({} bytes)",
                artifact.sha256, artifact.size, m.archive.sha256, m.archive.size
            ),
        ));
    }
    Ok(())
}

impl Manifest {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a manifest serialises");
        s.push('\n');
        s
    }
}

/// A manifest read from disk, with the sha256 of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadManifest {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub sha256: String,
}

/// Reads every `*.manifest.json` in `dir` (not recursive; sorted by file name) and checks that
/// each archive beside it has the recorded size and sha256.
pub fn read_manifests(dir: &Path) -> Result<Vec<ReadManifest>, PrebuiltError> {
    let mut paths: Vec<PathBuf> = fs_err::read_dir(dir)
        .map_err(|e| PrebuiltError::Manifest {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(MANIFEST_SUFFIX))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(PrebuiltError::NoManifests {
            variant: "*".into(),
            dir: dir.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    for path in paths {
        let bad = |reason: String| PrebuiltError::Manifest {
            path: path.clone(),
            reason,
        };
        let text = fs_err::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "{}:{}: not a dist manifest: {e}",
                e.line(),
                e.column()
            ))
        })?;
        if manifest.schema != MANIFEST_SCHEMA {
            return Err(bad(format!(
                "manifest schema {} (this tool reads {MANIFEST_SCHEMA})",
                manifest.schema
            )));
        }
        let archive = dir.join(&manifest.archive.name);
        let (sha256, size) =
            crate::hashing::sha256_file(&archive).map_err(|e| PrebuiltError::Mismatch {
                variant: manifest.variant.clone(),
                path: archive.clone(),
                reason: e.to_string(),
            })?;
        if sha256 != manifest.archive.sha256 || size != manifest.archive.size {
            return Err(PrebuiltError::Mismatch {
                variant: manifest.variant.clone(),
                path: archive,
                reason: format!(
                    "sha256 {sha256} ({size} bytes), the manifest says {} ({} bytes)",
                    manifest.archive.sha256, manifest.archive.size
                ),
            });
        }
        out.push(ReadManifest {
            path,
            sha256: crate::hashing::hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
            manifest,
        });
    }
    Ok(out)
}

/// The index of `manifests` (pure): artifacts sorted by variant, each URL `base_url/<archive>`
/// (just `<archive>`, relative to the index, when `base_url` is empty).
pub fn build_index(manifests: &[ReadManifest], base_url: &str) -> Index {
    let base = base_url.trim_end_matches('/');
    let mut artifacts: Vec<Artifact> = manifests
        .iter()
        .map(|r| {
            let m = &r.manifest;
            Artifact {
                variant: m.variant.clone(),
                target: m.target.clone(),
                requirements: m.requirements.clone(),
                llama: m.llama.clone(),
                url: if base.is_empty() {
                    m.archive.name.clone()
                } else {
                    format!("{base}/{}", m.archive.name)
                },
                sha256: m.archive.sha256.clone(),
                size: m.archive.size,
                manifest_sha256: Some(r.sha256.clone()),
            }
        })
        .collect();
    artifacts.sort_by(|a, b| a.variant.cmp(&b.variant));
    Index {
        schema: INDEX_SCHEMA,
        generated_by: format!(
            "cargo xtask prebuilt index (xtask {})",
            env!("CARGO_PKG_VERSION")
        ),
        artifacts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact_for(m: &Manifest) -> Artifact {
        Artifact {
            variant: m.variant.clone(),
            target: m.target.clone(),
            requirements: m.requirements.clone(),
            llama: m.llama.clone(),
            url: "file:///x/tunellama-v.tar.gz".into(),
            sha256: m.archive.sha256.clone(),
            size: m.archive.size,
            manifest_sha256: None,
        }
    }

    #[test]
    fn extracted_files_are_checked_against_the_manifest_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/tunellama"), b"runtime").unwrap();
        std::fs::write(dir.join("profile.cmake"), b"set(X ON)").unwrap();
        let mut m = sample();
        m.files = file_entries(dir).unwrap();
        let a = artifact_for(&m);
        check_extracted(&m, &a, dir).unwrap();

        std::fs::write(dir.join("profile.cmake"), b"set(X OFF)").unwrap();
        let e = check_extracted(&m, &a, dir).unwrap_err().to_string();
        let want = &m
            .files
            .iter()
            .find(|f| f.path == "profile.cmake")
            .unwrap()
            .sha256;
        assert!(
            e.contains("`profile.cmake`") && e.contains(want.as_str()),
            "{e}"
        );
        std::fs::write(dir.join("profile.cmake"), b"set(X ON)").unwrap();

        std::fs::write(dir.join("bin/extra"), b"?").unwrap();
        let e = check_extracted(&m, &a, dir).unwrap_err().to_string();
        assert!(
            e.contains("`bin/extra`") && e.contains("not in the manifest"),
            "{e}"
        );
        std::fs::remove_file(dir.join("bin/extra")).unwrap();

        std::fs::remove_file(dir.join("bin/tunellama")).unwrap();
        let e = check_extracted(&m, &a, dir).unwrap_err().to_string();
        assert!(
            e.contains("`bin/tunellama`") && e.contains("missing"),
            "{e}"
        );
        std::fs::write(dir.join("bin/tunellama"), b"runtime").unwrap();

        // The index points at another archive than the manifest describes.
        let mut other = a.clone();
        other.sha256 = "c".repeat(64);
        let e = check_extracted(&m, &other, dir).unwrap_err().to_string();
        assert!(
            e.contains(&"c".repeat(64)) && e.contains(&m.archive.sha256),
            "{e}"
        );
    }

    fn sample() -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            variant: "v".into(),
            target: "t".into(),
            requirements: Requirements {
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu_features: vec![],
                backend: super::super::Backend::Cpu,
                cuda_driver_min: None,
                gpu_archs: vec![],
            },
            llama: LlamaRef {
                commit: "c".into(),
                tree_digest: "d".into(),
            },
            profile_hash: "p".into(),
            verification: VerificationSummary {
                status: VerificationStatus::Verified,
                detail: "t".into(),
            },
            files: vec![],
            archive: ArchiveRef {
                name: archive_name("v"),
                sha256: "a".repeat(64),
                size: 3,
            },
        }
    }

    #[test]
    fn index_urls_join_the_base_and_keep_relative_names_without_one() {
        let m = Manifest {
            schema: 1,
            variant: "v".into(),
            target: "t".into(),
            requirements: Requirements {
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu_features: vec![],
                backend: super::super::Backend::Cpu,
                cuda_driver_min: None,
                gpu_archs: vec![],
            },
            llama: LlamaRef {
                commit: "c".into(),
                tree_digest: "d".into(),
            },
            profile_hash: "p".into(),
            verification: VerificationSummary {
                status: VerificationStatus::Verified,
                detail: "t".into(),
            },
            files: vec![],
            archive: ArchiveRef {
                name: archive_name("v"),
                sha256: "a".repeat(64),
                size: 3,
            },
        };
        let r = ReadManifest {
            path: "x".into(),
            manifest: m,
            sha256: "b".repeat(64),
        };
        let i = build_index(std::slice::from_ref(&r), "https://example.invalid/rel/");
        assert_eq!(
            i.artifacts[0].url,
            "https://example.invalid/rel/tunellama-v.tar.gz"
        );
        assert_eq!(
            i.artifacts[0].manifest_sha256.as_deref(),
            Some(&*"b".repeat(64))
        );
        assert_eq!(build_index(&[r], "").artifacts[0].url, "tunellama-v.tar.gz");
    }
}
