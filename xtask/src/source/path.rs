//! Path transport: a local llama.cpp checkout, used in place (the build writes only to its own
//! build folder); like every transport it is verified by digest before use.

use super::{Fetched, SourceError};
use std::path::Path;

pub(crate) fn obtain(root: &Path) -> Result<Fetched, SourceError> {
    if !root.is_dir() {
        return Err(SourceError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    Ok(Fetched {
        origin: root.display().to_string(),
        root,
        commit: None,
        expected_commit: None,
        crate_checksum: None,
    })
}
