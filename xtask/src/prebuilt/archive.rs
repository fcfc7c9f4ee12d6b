//! Deterministic `.tar.gz` packing of a folder, and safe extraction into a staging folder.
//!
//! Packing: regular files and folders only, sorted by path, mtime 0, uid/gid 0, no user/group
//! names, mode 0755 for executables and 0644 otherwise (0755 for folders), gzip header without
//! name or time: the same folder gives the same bytes on every machine. Links are refused.
//!
//! Extraction refuses, naming the entry: absolute paths (`/x`, `C:\x`), any `..` component,
//! backslashes, **every** symlink and hardlink (our archives never contain links, so refusing all
//! of them is simpler and safer than resolving targets), device and fifo entries, and duplicate
//! paths. Entries are written into a fresh staging folder beside the destination, which is
//! renamed into place only when every entry was accepted; on any error it is removed, so nothing
//! is left behind.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{archive}: refusing entry `{entry}`: {reason}")]
    Refused {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{archive}: not a readable .tar.gz: {reason}")]
    Corrupt { archive: PathBuf, reason: String },
    #[error("cannot pack {path}: {reason}")]
    Unpackable { path: PathBuf, reason: String },
    #[error("{path} already exists; extraction needs a fresh destination")]
    DestinationExists { path: PathBuf },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl crate::error::Hint for ArchiveError {
    fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::Refused { .. } | ArchiveError::Corrupt { .. } => Some(
                "do not use this archive: it was not written by `cargo xtask dist`; report where it came from"
                    .into(),
            ),
            ArchiveError::Unpackable { .. } => {
                Some("dist packs regular files only: replace links with copies".into())
            }
            ArchiveError::DestinationExists { .. } => {
                Some("remove it, or extract into another folder".into())
            }
            ArchiveError::Io(_) => None,
        }
    }
}

/// What [`pack_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// Relative paths (with `/`) of the regular files under `dir`, sorted, and the folders.
fn walk(dir: &Path) -> Result<(Vec<String>, Vec<String>), ArchiveError> {
    fn rec(
        root: &Path,
        dir: &Path,
        files: &mut Vec<String>,
        dirs: &mut Vec<String>,
    ) -> Result<(), ArchiveError> {
        for e in fs_err::read_dir(dir)? {
            let e = e?;
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .expect("walk stays under its root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let ft = fs_err::symlink_metadata(&path)?.file_type();
            if ft.is_dir() {
                dirs.push(rel);
                rec(root, &path, files, dirs)?;
            } else if ft.is_file() {
                files.push(rel);
            } else {
                return Err(ArchiveError::Unpackable {
                    path,
                    reason: "not a regular file or folder (links are not packed)".into(),
                });
            }
        }
        Ok(())
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    rec(dir, dir, &mut files, &mut dirs)?;
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata, _rel: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata, rel: &str) -> bool {
    rel.ends_with(".exe") || rel.ends_with(".sh")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Packs the contents of `dir` (not `dir` itself) into `out` (`.tar.gz`), deterministically,
/// writing beside `out` first and renaming into place. Returns the archive's sha256 and size.
pub fn pack_dir(dir: &Path, out: &Path) -> Result<Packed, ArchiveError> {
    let (files, dirs) = walk(dir)?;
    let tmp = crate::download::partial_path(out);
    let write = || -> Result<(), ArchiveError> {
        let file = fs_err::File::create(&tmp)?;
        // GzEncoder's header has no file name, mtime 0 and OS "unknown": the same on every host.
        let gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::best());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        for d in &dirs {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
        }
        for f in &files {
            let path = dir.join(f);
            let meta = fs_err::metadata(&path)?;
            let mode = if is_executable(&meta, f) {
                0o755
            } else {
                0o644
            };
            let mut h = header(tar::EntryType::Regular, mode, meta.len());
            tar.append_data(&mut h, f, fs_err::File::open(&path)?)?;
        }
        let gz = tar.into_inner()?;
        let mut w = gz.finish()?;
        w.flush()?;
        w.into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .map_err(ArchiveError::from)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    fs_err::rename(&tmp, out)?;
    let (sha256, size) = crate::hashing::sha256_file(out)?;
    Ok(Packed {
        path: out.to_path_buf(),
        sha256,
        size,
    })
}

/// Checks an entry's path and returns it as a safe relative path (`None`: the root itself).
fn safe_relative(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "the path is not UTF-8".to_string())?;
    if s.contains('\\') {
        return Err("backslash in path".into());
    }
    if s.starts_with('/') {
        return Err("absolute path".into());
    }
    if s.contains('\0') {
        return Err("NUL in path".into());
    }
    let mut out = PathBuf::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` component (would escape the destination)".into()),
            p if p.contains(':') => {
                return Err("`:` in a path component (a drive or stream name)".into())
            }
            p => out.push(p),
        }
    }
    // Belt and braces: what the platform makes of it must be plain names only.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("not a plain relative path".into());
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// A fresh folder beside `dest` for staging.
fn staging_dir(dest: &Path) -> std::io::Result<PathBuf> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "extract".into());
    for i in 0u32.. {
        let p = parent.join(format!(".{name}.staging-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!()
}

/// Extracts `archive` (`.tar.gz`) into `dest`, which must not exist yet; see the module docs for
/// what is refused. Returns the relative paths of the files written, sorted.
pub fn extract_safe(archive: &Path, dest: &Path) -> Result<Vec<PathBuf>, ArchiveError> {
    if dest.exists() {
        return Err(ArchiveError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    let staging = staging_dir(dest)?;
    match extract_into(archive, &staging) {
        Ok(files) => match fs_err::rename(&staging, dest) {
            Ok(()) => Ok(files),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn extract_into(archive: &Path, into: &Path) -> Result<Vec<PathBuf>, ArchiveError> {
    let corrupt = |e: std::io::Error| ArchiveError::Corrupt {
        archive: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let file = fs_err::File::open(archive)?;
    let mut tar = tar::Archive::new(GzDecoder::new(std::io::BufReader::new(file)));
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: &str| ArchiveError::Refused {
            archive: archive.to_path_buf(),
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                return Err(refuse(&format!(
                    "a {} to `{target}` (links are never extracted)",
                    if kind == tar::EntryType::Symlink {
                        "symlink"
                    } else {
                        "hardlink"
                    }
                )));
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(refuse("a device or fifo entry"));
            }
            // Metadata records (pax/GNU); their content is applied by the tar reader.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            other => return Err(refuse(&format!("unsupported entry type {other:?}"))),
        }
        let Some(rel) = safe_relative(&raw).map_err(|r| refuse(&r))? else {
            continue;
        };
        if !seen.insert(rel.clone()) && kind != tar::EntryType::Directory {
            return Err(refuse("the path appears twice"));
        }
        let path = into.join(&rel);
        if kind == tar::EntryType::Directory {
            fs_err::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut out = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::io::copy(&mut entry, &mut out).map_err(corrupt)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(m))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        files.push(rel);
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("share/empty")).unwrap();
        std::fs::write(root.join("bin/tunellama"), b"\x7fELF pretend").unwrap();
        std::fs::write(root.join("README.txt"), b"hello").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                root.join("bin/tunellama"),
                std::fs::Permissions::from_mode(0o775),
            )
            .unwrap();
        }
    }

    #[test]
    fn packing_is_deterministic_and_round_trips_with_modes() {
        let t = tempfile::tempdir().unwrap();
        tree(&t.path().join("a"));
        let p1 = pack_dir(&t.path().join("a"), &t.path().join("1.tar.gz")).unwrap();
        // Same content, different mtimes and creation order.
        std::thread::sleep(std::time::Duration::from_millis(20));
        tree(&t.path().join("b"));
        let p2 = pack_dir(&t.path().join("b"), &t.path().join("2.tar.gz")).unwrap();
        assert_eq!(p1.sha256, p2.sha256);
        assert_eq!(
            std::fs::read(&p1.path).unwrap(),
            std::fs::read(&p2.path).unwrap()
        );

        let out = t.path().join("out");
        let files = extract_safe(&p1.path, &out).unwrap();
        assert_eq!(
            files,
            [PathBuf::from("README.txt"), PathBuf::from("bin/tunellama")]
        );
        assert_eq!(std::fs::read(out.join("README.txt")).unwrap(), b"hello");
        assert!(out.join("share/empty").is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode();
            assert_eq!(mode("bin/tunellama") & 0o777, 0o755);
            assert_eq!(mode("README.txt") & 0o777, 0o644);
        }
    }

    #[cfg(unix)]
    #[test]
    fn packing_refuses_links() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        tree(&src);
        std::os::unix::fs::symlink("/etc/passwd", src.join("bin/link")).unwrap();
        let e = pack_dir(&src, &t.path().join("x.tar.gz")).unwrap_err();
        assert!(e.to_string().contains("bin/link"), "{e}");
        assert!(!t.path().join("x.tar.gz").exists());
        assert!(!t.path().join("x.tar.gz.part").exists());
    }

    #[test]
    fn extraction_into_an_existing_folder_is_refused() {
        let t = tempfile::tempdir().unwrap();
        tree(&t.path().join("a"));
        let p = pack_dir(&t.path().join("a"), &t.path().join("a.tar.gz")).unwrap();
        let e = extract_safe(&p.path, &t.path().join("a")).unwrap_err();
        assert!(matches!(e, ArchiveError::DestinationExists { .. }), "{e}");
    }

    #[test]
    fn path_checks() {
        assert!(safe_relative(b"a/./b").unwrap() == Some(PathBuf::from("a/b")));
        assert!(safe_relative(b"./").unwrap().is_none());
        assert!(safe_relative(b"a/../../b").is_err());
        assert!(safe_relative(b"/abs").is_err());
        assert!(safe_relative(b"C:/x").is_err());
        assert!(safe_relative(b"a\\..\\b").is_err());
    }
}
