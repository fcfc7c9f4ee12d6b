//! The model store on disk: content-addressed blobs, friendly names linking to them, one lock
//! file per blob.
//!
//! ```text
//! <cache>/models-v1/
//!   blobs/sha256/<hex>          verified content (only ever created by an atomic rename)
//!   blobs/sha256/<hex>.part     a download in progress or interrupted by a network error
//!   locks/<hex>.lock            held while a fetch of that blob runs
//!   by-name/<name>/<file>       link to ../../blobs/sha256/<hex> (what `models path` prints)
//! ```

use super::catalog::Model;
use crate::download::{partial_path, Sha256Hex};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temporary link names unique within this process too.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Held while one blob is fetched or removed; released when dropped (the file is closed).
#[derive(Debug)]
pub struct BlobLock {
    _file: std::fs::File,
}

/// Bumped instead of migrating when the layout changes.
pub const BUCKET: &str = "models-v1";

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by tunellama (cargo xtask).\n# For information about cache directory tags see https://bford.info/cachedir/\n";

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// What the store holds for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Absent,
    /// An interrupted download holding this many bytes.
    Partial(u64),
    /// The blob exists with the expected size (its hash was verified when it was stored).
    Present,
}

impl Store {
    pub fn new(cache_dir: &Path) -> Store {
        let root = std::path::absolute(cache_dir)
            .unwrap_or_else(|_| cache_dir.to_path_buf())
            .join(BUCKET);
        Store { root }
    }

    /// Creates the layout and the cache directory tag.
    pub fn init(&self) -> io::Result<()> {
        fs_err::create_dir_all(self.root.join("blobs/sha256"))?;
        fs_err::create_dir_all(self.root.join("locks"))?;
        fs_err::create_dir_all(self.root.join("by-name"))?;
        if let Some(cache) = self.root.parent() {
            let tag = cache.join("CACHEDIR.TAG");
            if !tag.exists() {
                fs_err::write(tag, CACHEDIR_TAG)?;
            }
        }
        Ok(())
    }

    pub fn blob(&self, sha: &Sha256Hex) -> PathBuf {
        self.root.join("blobs/sha256").join(sha.as_str())
    }

    pub fn lock_file(&self, sha: &Sha256Hex) -> PathBuf {
        self.root.join("locks").join(format!("{sha}.lock"))
    }

    /// Takes the blob's lock, calling `on_wait` first when another process holds it.
    pub fn lock(&self, sha: &Sha256Hex, on_wait: impl FnOnce(&Path)) -> io::Result<BlobLock> {
        let path = self.lock_file(sha);
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?
            .into_parts()
            .0;
        let failed =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display()));
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                on_wait(&path);
                fs4::FileExt::lock(&file).map_err(failed)?;
            }
            Err(fs4::TryLockError::Error(e)) => return Err(failed(e)),
        }
        Ok(BlobLock { _file: file })
    }

    /// `by-name/<name>/<file>`; both parts were validated as plain names by the catalog.
    pub fn friendly(&self, m: &Model) -> PathBuf {
        self.root.join("by-name").join(&m.name).join(&m.file)
    }

    pub fn status(&self, m: &Model) -> Stored {
        let blob = self.blob(&m.sha256);
        match std::fs::metadata(&blob) {
            Ok(md) if md.is_file() && md.len() == m.size => Stored::Present,
            _ => match std::fs::metadata(partial_path(&blob)) {
                Ok(md) => Stored::Partial(md.len()),
                Err(_) => Stored::Absent,
            },
        }
    }

    /// Points `by-name/<name>/<file>` at the model's blob (replacing whatever was there).
    pub fn link(&self, m: &Model) -> io::Result<PathBuf> {
        let link = self.friendly(m);
        let dir = link.parent().expect("friendly path has a parent");
        fs_err::create_dir_all(dir)?;
        // Remove stale entries (an older file name for this model).
        for e in fs_err::read_dir(dir)? {
            let p = e?.path();
            if p.file_name() != link.file_name() {
                let _ = fs_err::remove_file(&p);
            }
        }
        if link.symlink_metadata().is_ok()
            && fs_err::canonicalize(&link).ok() == fs_err::canonicalize(self.blob(&m.sha256)).ok()
        {
            return Ok(link);
        }
        // Made under a temporary name beside `by-name/<name>/` and renamed into place, so a
        // concurrent fetch of the same model never sees a half-made or missing link.
        let tmp = self.root.join("by-name").join(format!(
            ".{}.{}-{}.tmp",
            m.name,
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        {
            // Relative, so the store can be moved as a whole.
            let target = Path::new("../../blobs/sha256").join(m.sha256.as_str());
            fs_err::os::unix::fs::symlink(&target, &tmp)?;
        }
        #[cfg(not(unix))]
        {
            // Symbolic links need privileges on Windows; a hard link needs none.
            if fs_err::hard_link(self.blob(&m.sha256), &tmp).is_err() {
                fs_err::copy(self.blob(&m.sha256), &tmp)?;
            }
        }
        fs_err::rename(&tmp, &link)?;
        Ok(link)
    }

    /// Removes the model's friendly name, its partial file, and its blob unless another name
    /// still links to it. Returns what was removed.
    pub fn remove(&self, m: &Model, on_wait: impl FnOnce(&Path)) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        if !self.root.exists() {
            return Ok(removed);
        }
        self.init()?;
        let _lock = self.lock(&m.sha256, on_wait)?;
        let dir = self.root.join("by-name").join(&m.name);
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
            removed.push(dir);
        }
        let blob = self.blob(&m.sha256);
        let part = partial_path(&blob);
        if part.exists() {
            fs_err::remove_file(&part)?;
            removed.push(part);
        }
        if blob.exists() && !self.linked_elsewhere(&m.sha256)? {
            fs_err::remove_file(&blob)?;
            removed.push(blob);
        }
        Ok(removed)
    }

    fn linked_elsewhere(&self, sha: &Sha256Hex) -> io::Result<bool> {
        let by_name = self.root.join("by-name");
        if !by_name.exists() {
            return Ok(false);
        }
        for d in fs_err::read_dir(&by_name)? {
            let d = d?.path();
            if !d.is_dir() {
                continue;
            }
            for f in fs_err::read_dir(&d)? {
                let target = std::fs::read_link(f?.path()).unwrap_or_default();
                if target.file_name().is_some_and(|n| n == sha.as_str()) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
