//! The tree digest: which files of a llama.cpp tree are build inputs, their per-file manifest,
//! and the one sha256 that names the tree (format defined in `docs/pin.md`).
//!
//! The manifest is the text `sha256sum` prints (`<64 hex>  <path>\n` per file, paths relative to
//! the tree root with `/` separators, sorted byte-wise), and the digest is the sha256 of exactly
//! those lines. So `grep -v '^#' profiles/llama.pin.files | sha256sum` prints the digest, and
//! `sha256sum -c` run in a tree checks it file by file.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// What a library-only configure + build reads (`LLAMA_BUILD_COMMON=OFF`, tests, examples, tools,
/// server and app OFF, `LLAMA_BUILD_MTMD` OFF). See `docs/pin.md` for why each is here.
pub const DEFAULT_INPUTS: &[&str] = &[
    "CMakeLists.txt",
    "LICENSE",
    "cmake",
    "ggml",
    "include",
    "src",
    "vendor",
];

/// One build input: its path relative to the tree root and the sha256 of its content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

/// The build inputs of a tree, sorted by path (byte-wise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<FileHash>,
    /// Bytes hashed (for reporting only; not part of the digest).
    pub bytes: u64,
}

/// How one path differs between the pinned manifest and a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathDiff {
    pub path: String,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Present in both, content differs.
    Modified,
    /// Pinned, absent from the tree.
    Missing,
    /// In the tree, not pinned.
    Added,
}

impl std::fmt::Display for PathDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = match self.change {
            Change::Modified => "modified",
            Change::Missing => "missing",
            Change::Added => "added",
        };
        write!(f, "{c}: {}", self.path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}:{line}: not a manifest line (`<64 hex>  <path>` expected)")]
    ManifestSyntax { path: PathBuf, line: usize },
}

impl crate::error::Hint for DigestError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            DigestError::Io { .. } | DigestError::Unsupported { .. } => {
                "the tree must be readable and hold only files, folders and links inside it".into()
            }
            DigestError::ManifestSyntax { .. } => {
                "the pin's file list is damaged: regenerate it with `cargo xtask pin --tree DIR --write`".into()
            }
        })
    }
}

impl Manifest {
    /// The manifest lines, exactly the bytes the digest hashes.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(self.files.len() * 110);
        for f in &self.files {
            s.push_str(&f.sha256);
            s.push_str("  ");
            s.push_str(&f.path);
            s.push('\n');
        }
        s
    }

    /// The tree digest: sha256 (lowercase hex) of [`Manifest::render`].
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.render().as_bytes()))
    }

    /// Reads a manifest written by `cargo xtask pin`; lines starting with `#` are comments.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, DigestError> {
        let mut files = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let bad = || DigestError::ManifestSyntax {
                path: origin.to_path_buf(),
                line: i + 1,
            };
            let (hash, path) = line.split_once("  ").ok_or_else(bad)?;
            if !is_sha256_hex(hash) || path.is_empty() {
                return Err(bad());
            }
            files.push(FileHash {
                path: path.to_string(),
                sha256: hash.to_string(),
            });
        }
        files.sort();
        Ok(Manifest { files, bytes: 0 })
    }

    /// Every path that differs, in path order.
    pub fn diff(&self, actual: &Manifest) -> Vec<PathDiff> {
        let (mut a, mut b) = (self.files.iter().peekable(), actual.files.iter().peekable());
        let mut out = Vec::new();
        loop {
            let d = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(x), None) => (x.path.clone(), Change::Missing, true, false),
                (None, Some(y)) => (y.path.clone(), Change::Added, false, true),
                (Some(x), Some(y)) => match x.path.cmp(&y.path) {
                    std::cmp::Ordering::Less => (x.path.clone(), Change::Missing, true, false),
                    std::cmp::Ordering::Greater => (y.path.clone(), Change::Added, false, true),
                    std::cmp::Ordering::Equal => {
                        let path = x.path.clone();
                        let same = x.sha256 == y.sha256;
                        a.next();
                        b.next();
                        if !same {
                            out.push(PathDiff {
                                path,
                                change: Change::Modified,
                            });
                        }
                        continue;
                    }
                },
            };
            let (path, change, step_a, step_b) = d;
            if step_a {
                a.next();
            }
            if step_b {
                b.next();
            }
            out.push(PathDiff { path, change });
        }
        out
    }
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub use crate::hashing::hex;

/// sha256 of a file's content (streamed).
pub fn sha256_file(path: &Path) -> Result<(String, u64), DigestError> {
    crate::hashing::sha256_file(path).map_err(|source| DigestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Lists the build inputs of the tree at `root` (relative paths, sorted) without reading them.
/// A missing input contributes nothing (the digest then differs and the diff names its files).
pub fn list_inputs(root: &Path, inputs: &[String]) -> Result<Vec<(String, PathBuf)>, DigestError> {
    let canon_root = root.canonicalize().map_err(|source| DigestError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for input in inputs {
        let p = root.join(input);
        match std::fs::symlink_metadata(&p) {
            Ok(_) => walk(&canon_root, &p, input.clone(), &mut out)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DigestError::Io { path: p, source }),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

fn walk(
    canon_root: &Path,
    path: &Path,
    rel: String,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), DigestError> {
    let io = |source| DigestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let unsupported = |reason: &str| DigestError::Unsupported {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        // The build reads what the link points at: hash that content under the link's path, but
        // only for links to regular files inside the tree.
        let target = path
            .canonicalize()
            .map_err(|_| unsupported("dangling symbolic link"))?;
        if !target.starts_with(canon_root) {
            return Err(unsupported("symbolic link points outside the tree"));
        }
        if !target.is_file() {
            return Err(unsupported(
                "symbolic link to a directory (not supported in build inputs)",
            ));
        }
        check_rel(&rel, path)?;
        out.push((rel, path.to_path_buf()));
    } else if ft.is_file() {
        check_rel(&rel, path)?;
        out.push((rel, path.to_path_buf()));
    } else if ft.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| unsupported("a file name inside is not UTF-8"))?;
            walk(canon_root, &entry.path(), format!("{rel}/{name}"), out)?;
        }
    } else {
        return Err(unsupported(
            "neither a file, a directory nor a symbolic link",
        ));
    }
    Ok(())
}

fn check_rel(rel: &str, path: &Path) -> Result<(), DigestError> {
    if rel.contains(['\n', '\r', '\\']) {
        return Err(DigestError::Unsupported {
            path: path.to_path_buf(),
            reason: "path contains a newline or a backslash".into(),
        });
    }
    Ok(())
}

/// Hashes the build inputs of the tree at `root`, spreading files over `threads` threads.
pub fn hash_tree(root: &Path, inputs: &[String]) -> Result<Manifest, DigestError> {
    let list = list_inputs(root, inputs)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Hashed = Vec<(usize, String, u64)>;
    let results: Vec<Result<Hashed, DigestError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, p)) = list.get(i) else {
                            return Ok(mine);
                        };
                        let (h, n) = sha256_file(p)?;
                        mine.push((i, h, n));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("hashing thread"))
            .collect()
    });
    let mut hashes = vec![String::new(); list.len()];
    let mut bytes = 0;
    for r in results {
        for (i, h, n) in r? {
            hashes[i] = h;
            bytes += n;
        }
    }
    let files = list
        .into_iter()
        .zip(hashes)
        .map(|((path, _), sha256)| FileHash { path, sha256 })
        .collect();
    Ok(Manifest { files, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<String> {
        DEFAULT_INPUTS.iter().map(|s| s.to_string()).collect()
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn digest_is_sha256_of_sha256sum_style_lines() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "CMakeLists.txt", "project(x)\n");
        write(d.path(), "src/a.c", "int a;\n");
        let m = hash_tree(d.path(), &inputs()).unwrap();
        let a = hex(&Sha256::digest(b"int a;\n"));
        let top = hex(&Sha256::digest(b"project(x)\n"));
        let text = format!("{top}  CMakeLists.txt\n{a}  src/a.c\n");
        assert_eq!(m.render(), text);
        assert_eq!(m.digest(), hex(&Sha256::digest(text.as_bytes())));
        assert_eq!(m.bytes, 18);
    }

    #[test]
    fn only_build_inputs_count() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "src/a.c", "int a;\n");
        let before = hash_tree(d.path(), &inputs()).unwrap().digest();
        write(d.path(), "common/x.cpp", "ignored");
        write(d.path(), "README.md", "ignored");
        write(d.path(), "docs/y.md", "ignored");
        assert_eq!(hash_tree(d.path(), &inputs()).unwrap().digest(), before);
        write(d.path(), "ggml/new.c", "counted");
        assert_ne!(hash_tree(d.path(), &inputs()).unwrap().digest(), before);
    }

    #[test]
    fn order_is_bytewise_on_paths_not_walk_order() {
        let d = tempfile::tempdir().unwrap();
        for f in ["src/b.c", "src/B.c", "src/a/z.c", "src/a.c", "src/a-b.c"] {
            write(d.path(), f, f);
        }
        let m = hash_tree(d.path(), &inputs()).unwrap();
        let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["src/B.c", "src/a-b.c", "src/a.c", "src/a/z.c", "src/b.c"]
        );
    }

    #[test]
    fn manifest_round_trips_and_ignores_comments() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "include/x.h", "x");
        write(d.path(), "src/y.c", "y");
        let m = hash_tree(d.path(), &inputs()).unwrap();
        let text = format!("# generated\n{}", m.render());
        let back = Manifest::parse(&text, Path::new("t")).unwrap();
        assert_eq!(back.files, m.files);
        assert_eq!(back.digest(), m.digest());
        assert!(Manifest::parse("nothex  a\n", Path::new("t")).is_err());
    }

    #[test]
    fn diff_names_modified_missing_and_added_paths_in_order() {
        let f = |p: &str, h: char| FileHash {
            path: p.into(),
            sha256: h.to_string().repeat(64),
        };
        let pinned = Manifest {
            files: vec![f("a", '1'), f("b", '2'), f("d", '4')],
            bytes: 0,
        };
        let tree = Manifest {
            files: vec![f("a", '1'), f("b", '9'), f("c", '3')],
            bytes: 0,
        };
        let d: Vec<String> = pinned.diff(&tree).iter().map(|d| d.to_string()).collect();
        assert_eq!(d, ["modified: b", "added: c", "missing: d"]);
        assert!(pinned.diff(&pinned).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_hash_their_target_content_and_must_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "src/real.h", "r");
        std::os::unix::fs::symlink("real.h", d.path().join("src/link.h")).unwrap();
        let m = hash_tree(d.path(), &inputs()).unwrap();
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files[0].sha256, m.files[1].sha256);
        let out = tempfile::tempdir().unwrap();
        write(out.path(), "o.h", "o");
        std::os::unix::fs::symlink(out.path().join("o.h"), d.path().join("src/out.h")).unwrap();
        let e = hash_tree(d.path(), &inputs()).unwrap_err();
        assert!(e.to_string().contains("outside the tree"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn executable_bit_does_not_change_the_digest() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "src/run.sh", "#!/bin/sh\n");
        let before = hash_tree(d.path(), &inputs()).unwrap().digest();
        let p = d.path().join("src/run.sh");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(hash_tree(d.path(), &inputs()).unwrap().digest(), before);
    }
}
