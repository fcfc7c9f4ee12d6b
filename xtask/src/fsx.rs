//! Small filesystem helpers that keep the "nothing half-written" promise.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it into place, so a
/// reader sees the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    // Created exclusively under a random name (O_EXCL, mode 0600): a file or link planted at a
    // predictable name is never followed or overwritten.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.tmp-",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
        .tempfile_in(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    tmp.write_all(bytes)?;
    // Readable as an ordinary file would be (the temporary file starts private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| {
        std::io::Error::new(e.error.kind(), format!("{}: {}", path.display(), e.error))
    })
}

/// A private temporary directory (created exclusively, mode 0700 on Unix, removed when the
/// returned guard drops) under `<cache_dir>/tmp/`, or under the system's temporary directory
/// when there is no cache dir. Never a predictable path another user could plant a link at.
pub fn private_temp_dir(
    cache_dir: Option<&Path>,
    prefix: &str,
) -> std::io::Result<tempfile::TempDir> {
    let root = match cache_dir {
        Some(c) => {
            let t = c.join("tmp");
            fs_err::create_dir_all(&t)?;
            t
        }
        None => std::env::temp_dir(),
    };
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&root)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Copies a directory tree (files and folders; the build prefixes it is used on hold no links).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs_err::create_dir_all(to)?;
    for e in fs_err::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            fs_err::copy(e.path(), dest)?;
        }
    }
    Ok(())
}
