//! Cache: build entries under a key that changes with everything that changes the compiled output,
//! staged in a temp dir and published by atomic rename, one file lock per key, a manifest with the
//! sha256 of every file (an entry whose files do not match is treated as absent).
//!
//! Layout: `<root>/builds-v1/<key>/{manifest.json, prefix/, build.log}`, `<root>/builds-v1/<key>.lock`,
//! staging dirs `<root>/builds-v1/.staging-<key>-<random>/`, and `<root>/builds-v1/current.json`.
//!
//! Lock files are never deleted: a process waiting on a deleted lock file would own a key that a
//! later process owns too (it locks a new file of the same name). Whether a staging dir's maker
//! still runs comes from the key's lock, not from process ids: a staging dir is made and used only
//! while its key's lock is held, so it is stale exactly when that lock can be taken.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const BUCKET: &str = "builds-v1";
pub const MANIFEST: &str = "manifest.json";
const CURRENT: &str = "current.json";

/// Everything that changes the compiled output. Its hash is the key (`key.rs` computes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyInputs {
    pub tree_digest: String,
    pub profile_hash: String,
    pub toolchain: Toolchain,
    /// sha256 of the runtime's sources, once the runtime is part of the build.
    #[serde(default)]
    pub runtime_source: Option<String>,
    /// `key::GENERATOR_VERSION`: the code that writes link.json, llama.pc and runtime-info.json
    /// (0 in manifests written before it was recorded).
    #[serde(default)]
    pub generator: u32,
    /// Builds with a runtime: `rustc -vV` and the RUSTFLAGS-style variables cargo passes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<String>,
    /// Builds with a runtime: sha256 of the runtime-info.json it embeds (runtime defaults, what
    /// it was compiled for, provenance), written with an empty key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_info: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Toolchain {
    /// `family version path` of each compiler.
    pub c: String,
    pub cxx: String,
    pub cmake: String,
    #[serde(default)]
    pub ninja: Option<String>,
    #[serde(default)]
    pub nvcc: Option<String>,
    /// Cross builds only (`cross.rs`): the target triple and the toolchain file's hash; absent
    /// from native keys, so their keys are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross: Option<String>,
    /// `version include_dir` of the Vulkan headers, for Vulkan builds only (absent otherwise, so
    /// the keys of other builds do not change when Vulkan headers appear on the machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulkan_headers: Option<String>,
    /// The environment variables CMake and the compilers read that are set (`key::CMAKE_ENV`):
    /// CFLAGS, CMAKE_PREFIX_PATH, CUDAToolkit_ROOT, ... (absent when none is set).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub build_env: std::collections::BTreeMap<String, String>,
}

/// What the build runs on but that does not change its bytes: a change means re-verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fingerprint {
    pub gpus: Vec<String>,
    pub driver: Option<String>,
    pub cuda: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A published entry's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub key: String,
    pub inputs: KeyInputs,
    /// The profile's decisions (name = value), to explain a later rebuild.
    pub decisions: Vec<(String, String)>,
    pub fingerprint: Fingerprint,
    /// `source` or `prebuilt`.
    pub provenance: String,
    /// Where the llama.cpp tree came from and whether it matched the pin.
    pub tree_origin: String,
    pub pinned: bool,
    pub build_seconds: f64,
    /// Files under the entry (relative, `/`-separated) with their sha256.
    pub files: Vec<FileEntry>,
    /// The verification report (what it was compiled for, what ran).
    #[serde(default)]
    pub verification: Option<serde_json::Value>,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == name)
    }
}

pub fn key_of(inputs: &KeyInputs) -> String {
    let json = serde_json::to_vec(inputs).expect("serialisable");
    crate::profile::hex(&Sha256::digest(&json))[..20].to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache I/O error at {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {path} is unreadable: {message}")]
    BadManifest { path: String, message: String },
}

impl crate::error::Hint for CacheError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            CacheError::Io { .. } => "check free space and permissions of the cache dir (--cache-dir or TUNELLAMA_CACHE_DIR)".into(),
            CacheError::BadManifest { .. } => "run `cargo xtask cache gc` or `cargo xtask setup --force`".into(),
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<Manifest>),
    Absent,
    /// Present but its files do not match the manifest: treated as absent.
    Corrupt {
        reason: String,
    },
}

pub struct Cache {
    root: PathBuf,
}

/// Held while working on a key; dropping it releases the lock.
pub struct KeyLock {
    _file: std::fs::File,
}

impl Cache {
    pub fn new(cache_dir: &Path) -> Cache {
        Cache {
            root: cache_dir.join(BUCKET),
        }
    }

    pub fn bucket(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn ensure_root(&self) -> Result<(), CacheError> {
        fs_err::create_dir_all(&self.root).map_err(io(&self.root))?;
        let tag = self
            .root
            .parent()
            .unwrap_or(&self.root)
            .join("CACHEDIR.TAG");
        if !tag.exists() {
            // https://bford.info/cachedir/: backup tools skip directories with this tag.
            let _ = crate::fsx::write_atomic(&tag, b"Signature: 8a477f597d28d172789f06886806bc55\n# This is a cache directory of tunellama; it can be rebuilt.\n");
        }
        Ok(())
    }

    /// Takes the key's lock, waiting (and saying so) while another process holds it.
    pub fn lock(&self, key: &str, on_wait: impl FnOnce()) -> Result<KeyLock, CacheError> {
        self.ensure_root()?;
        let path = self.lock_path(key);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock().map_err(io(&path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        // We own the key now: staging dirs of earlier, killed runs for it are garbage.
        self.remove_stale_staging(Some(key));
        Ok(KeyLock { _file: file })
    }

    pub fn read_manifest(dir: &Path) -> Result<Manifest, CacheError> {
        let path = dir.join(MANIFEST);
        let text = fs_err::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| CacheError::BadManifest {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Finds the entry and checks every file against its manifest.
    pub fn lookup(&self, key: &str) -> Lookup {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return Lookup::Absent;
        }
        let m = match Self::read_manifest(&dir) {
            Ok(m) => m,
            Err(e) => {
                return Lookup::Corrupt {
                    reason: e.to_string(),
                }
            }
        };
        match verify_files(&dir, &m.files) {
            Ok(()) => Lookup::Hit(Box::new(m)),
            Err(reason) => Lookup::Corrupt { reason },
        }
    }

    /// A fresh staging dir for `key` (caller holds the key's lock), created exclusively under a
    /// random name.
    pub fn stage(&self, key: &str) -> Result<PathBuf, CacheError> {
        self.ensure_root()?;
        tempfile::Builder::new()
            .prefix(&format!(".staging-{key}-"))
            .tempdir_in(&self.root)
            .map(tempfile::TempDir::keep)
            .map_err(io(&self.root))
    }

    /// Hashes the staged files, writes the manifest, and renames the staging dir into place.
    pub fn publish(&self, staging: &Path, mut manifest: Manifest) -> Result<Manifest, CacheError> {
        manifest.files = hash_dir(staging, &[MANIFEST])?;
        let path = staging.join(MANIFEST);
        crate::fsx::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&manifest).expect("serialisable"),
        )
        .map_err(io(&path))?;
        let target = self.entry_dir(&manifest.key);
        if target.exists() {
            // A corrupt entry under the same key: move it aside first so the rename is atomic.
            let trash = tempfile::Builder::new()
                .prefix(&format!(".trash-{}-", manifest.key))
                .tempdir_in(&self.root)
                .map(tempfile::TempDir::keep)
                .map_err(io(&self.root))?;
            let trash = trash.join("entry");
            fs_err::rename(&target, &trash).map_err(io(&target))?;
            let _ = fs_err::remove_dir_all(trash.parent().expect("inside the trash dir"));
        }
        fs_err::rename(staging, &target).map_err(io(&target))?;
        Ok(manifest)
    }

    /// Rewrites a published entry's manifest (after a re-verification), atomically.
    pub fn update_manifest(&self, manifest: &Manifest) -> Result<(), CacheError> {
        let path = self.entry_dir(&manifest.key).join(MANIFEST);
        crate::fsx::write_atomic(
            &path,
            &serde_json::to_vec_pretty(manifest).expect("serialisable"),
        )
        .map_err(io(&path))
    }

    pub fn set_current(&self, key: &str) -> Result<(), CacheError> {
        let path = self.root.join(CURRENT);
        crate::fsx::write_atomic(
            &path,
            &serde_json::to_vec(&serde_json::json!({ "key": key })).expect("json"),
        )
        .map_err(io(&path))
    }

    pub fn current(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join(CURRENT)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["key"].as_str().map(str::to_string)
    }

    /// Every published entry's manifest (unreadable ones are skipped).
    pub fn list(&self) -> Vec<(PathBuf, Manifest)> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, Manifest, std::time::SystemTime)> = rd
            .flatten()
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let m = Self::read_manifest(&e.path()).ok()?;
                let t = e
                    .path()
                    .join(MANIFEST)
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()?;
                Some((e.path(), m, t))
            })
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.2));
        out.into_iter().map(|(p, m, _)| (p, m)).collect()
    }

    /// Removes staging (and trash) dirs whose maker no longer runs (killed builds): those whose
    /// key's lock can be taken. With `only_key`, the caller holds that key's lock, so every
    /// staging dir of that key is stale.
    pub fn remove_stale_staging(&self, only_key: Option<&str>) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name
                .strip_prefix(".staging-")
                .or_else(|| name.strip_prefix(".trash-"))
            else {
                continue;
            };
            let Some((key, _)) = rest.rsplit_once('-') else {
                continue;
            };
            let stale = match only_key {
                Some(k) => k == key,
                // Held while we remove it, so no one starts staging under it meanwhile.
                None => match self.try_lock(key) {
                    Ok(Some(lock)) => {
                        let removed = std::fs::remove_dir_all(e.path()).is_ok();
                        drop(lock);
                        n += usize::from(removed);
                        continue;
                    }
                    _ => false,
                },
            };
            if stale && std::fs::remove_dir_all(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// The key's lock if no one holds it, without waiting.
    pub fn try_lock(&self, key: &str) -> Result<Option<KeyLock>, CacheError> {
        let path = self.lock_path(key);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// `<bucket>/<key>.lock`: created on first use, never deleted.
    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.lock"))
    }

    /// Keeps the current entry and the `keep` most recent others.
    pub fn gc(&self, keep: usize) -> Result<Vec<String>, CacheError> {
        let current = self.current();
        let mut removed = Vec::new();
        let mut kept = 0;
        for (dir, m) in self.list() {
            if Some(&m.key) == current.as_ref() {
                continue;
            }
            if kept < keep {
                kept += 1;
                continue;
            }
            // The lock file stays: deleting it while held would let a process that opened it
            // before, and one that creates it anew after, both own the key.
            let _lock = self.lock(&m.key, || {})?;
            fs_err::remove_dir_all(&dir).map_err(io(&dir))?;
            removed.push(m.key);
        }
        self.remove_stale_staging(None);
        Ok(removed)
    }
}

/// sha256 of every regular file under `dir` (relative `/` paths, sorted), skipping `skip`.
pub fn hash_dir(dir: &Path, skip: &[&str]) -> Result<Vec<FileEntry>, CacheError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let p = e.path();
            let ft = e.file_type().map_err(io(&p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .replace('\\', "/");
                if skip.contains(&rel.as_str()) {
                    continue;
                }
                let (sha256, size) = sha256_file(&p).map_err(io(&p))?;
                out.push(FileEntry {
                    path: rel,
                    sha256,
                    size,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub use crate::hashing::sha256_file;

fn verify_files(dir: &Path, files: &[FileEntry]) -> Result<(), String> {
    for f in files {
        let p = dir.join(&f.path);
        match sha256_file(&p) {
            Ok((sha, size)) if sha == f.sha256 && size == f.size => {}
            Ok((sha, _)) => {
                return Err(format!(
                    "{} changed (sha256 {} expected, {} found)",
                    f.path,
                    &f.sha256[..12],
                    &sha[..12]
                ))
            }
            Err(e) => return Err(format!("{} unreadable: {e}", f.path)),
        }
    }
    Ok(())
}

/// Human lines naming what differs between two key inputs / decision lists.
pub fn explain_changes(
    old: &Manifest,
    inputs: &KeyInputs,
    decisions: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (&old.inputs, inputs);
    if a.tree_digest != b.tree_digest {
        out.push(format!(
            "source: tree {} → {}",
            &a.tree_digest[..12.min(a.tree_digest.len())],
            &b.tree_digest[..12.min(b.tree_digest.len())]
        ));
    }
    if a.profile_hash != b.profile_hash {
        let old_map: std::collections::BTreeMap<_, _> = old.decisions.iter().cloned().collect();
        let new_map: std::collections::BTreeMap<_, _> = decisions.iter().cloned().collect();
        let mut changed = Vec::new();
        for (k, v) in &new_map {
            match old_map.get(k) {
                Some(o) if o != v => changed.push(format!("{k} {o}→{v}")),
                None => changed.push(format!("{k} (unset)→{v}")),
                _ => {}
            }
        }
        for (k, o) in &old_map {
            if !new_map.contains_key(k) {
                changed.push(format!("{k} {o}→(unset)"));
            }
        }
        if changed.is_empty() {
            changed.push("comments/explanations only".into());
        }
        out.push(format!("profile: {}", changed.join(", ")));
    }
    let t = |name: &str, x: &str, y: &str, out: &mut Vec<String>| {
        if x != y {
            out.push(format!("toolchain: {name} {x} → {y}"));
        }
    };
    t("C compiler", &a.toolchain.c, &b.toolchain.c, &mut out);
    t("C++ compiler", &a.toolchain.cxx, &b.toolchain.cxx, &mut out);
    t("cmake", &a.toolchain.cmake, &b.toolchain.cmake, &mut out);
    let none = || "none".to_string();
    t(
        "ninja",
        &a.toolchain.ninja.clone().unwrap_or_else(none),
        &b.toolchain.ninja.clone().unwrap_or_else(none),
        &mut out,
    );
    t(
        "nvcc",
        &a.toolchain.nvcc.clone().unwrap_or_else(none),
        &b.toolchain.nvcc.clone().unwrap_or_else(none),
        &mut out,
    );
    t(
        "Vulkan headers",
        &a.toolchain.vulkan_headers.clone().unwrap_or_else(none),
        &b.toolchain.vulkan_headers.clone().unwrap_or_else(none),
        &mut out,
    );
    if a.toolchain.build_env != b.toolchain.build_env {
        let show = |m: &std::collections::BTreeMap<String, String>| {
            if m.is_empty() {
                "none set".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        out.push(format!(
            "build environment: {} → {}",
            show(&a.toolchain.build_env),
            show(&b.toolchain.build_env)
        ));
    }
    if a.toolchain.cross != b.toolchain.cross {
        out.push("toolchain: cross toolchain changed".into());
    }
    if a.runtime_source != b.runtime_source {
        out.push("runtime: sources changed".into());
    }
    if a.generator != b.generator {
        out.push(format!(
            "generator of link.json/llama.pc/runtime-info.json: version {} → {}",
            a.generator, b.generator
        ));
    }
    if a.rust != b.rust {
        // `rustc -vV`'s first line (the release) and the flag variables; its other lines
        // (commit hash, LLVM, ...) change only with the release.
        let first = |r: &Option<String>| {
            r.as_deref()
                .map(|r| {
                    r.lines()
                        .enumerate()
                        .filter(|(i, l)| {
                            *i == 0
                                || l.split('=').next().is_some_and(|k| {
                                    k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                                        && l.contains('=')
                                })
                        })
                        .map(|(_, l)| l)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| "none".into())
        };
        out.push(format!("rust: {} → {}", first(&a.rust), first(&b.rust)));
    }
    if a.runtime_info != b.runtime_info {
        out.push("runtime-info.json (runtime defaults, compiled-for, provenance) changed".into());
    }
    out
}

/// Human lines naming what differs between two fingerprints.
pub fn explain_fingerprint(old: &Fingerprint, new: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    let list = |g: &[String]| {
        if g.is_empty() {
            "none".to_string()
        } else {
            g.join(", ")
        }
    };
    if old.gpus != new.gpus {
        out.push(format!("GPU: {} → {}", list(&old.gpus), list(&new.gpus)));
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
    if old.driver != new.driver {
        out.push(format!(
            "driver: {} → {}",
            opt(&old.driver),
            opt(&new.driver)
        ));
    }
    if old.cuda != new.cuda {
        out.push(format!("CUDA: {} → {}", opt(&old.cuda), opt(&new.cuda)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn manifest(key: &str) -> Manifest {
        Manifest {
            schema: 1,
            key: key.into(),
            inputs: KeyInputs {
                tree_digest: "t".into(),
                profile_hash: "p".into(),
                toolchain: Toolchain {
                    c: "gcc".into(),
                    cxx: "g++".into(),
                    cmake: "cmake".into(),
                    ninja: None,
                    nvcc: None,
                    cross: None,
                    vulkan_headers: None,
                    ..Default::default()
                },
                runtime_source: None,
                ..Default::default()
            },
            decisions: Vec::new(),
            fingerprint: Fingerprint::default(),
            provenance: "source".into(),
            tree_origin: "test".into(),
            pinned: true,
            build_seconds: 0.0,
            files: Vec::new(),
            verification: None,
        }
    }

    fn publish(cache: &Cache, key: &str) {
        let _l = cache.lock(key, || {}).unwrap();
        let s = cache.stage(key).unwrap();
        std::fs::write(s.join("file"), key).unwrap();
        cache.publish(&s, manifest(key)).unwrap();
    }

    /// Whether taking `key`'s lock now would have to wait (it is owned by someone else).
    fn would_wait(cache: &Cache, key: &str) -> bool {
        cache.try_lock(key).unwrap().is_none()
    }

    #[test]
    fn gc_keeps_the_lock_file_of_an_entry_it_removes() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        publish(&cache, "aaaa");
        publish(&cache, "bbbb");
        cache.set_current("bbbb").unwrap();
        assert_eq!(cache.gc(0).unwrap(), ["aaaa"]);
        assert!(!cache.entry_dir("aaaa").exists());
        assert!(
            cache.lock_path("aaaa").exists(),
            "gc deleted aaaa.lock: a process waiting on the old file and one creating a new one would both own the key"
        );
    }

    /// A setup holds the key; gc and a second setup wait for it. Whoever of them gets it first,
    /// the key has one owner at a time afterwards: a third party always has to wait while the
    /// second setup holds it (with a deleted lock file it would get a new file and not wait).
    #[test]
    fn gc_while_a_holder_waits_leaves_the_key_with_one_owner() {
        for _ in 0..5 {
            let d = tempfile::tempdir().unwrap();
            let cache = &Cache::new(d.path());
            publish(cache, "aaaa");
            publish(cache, "bbbb");
            cache.set_current("bbbb").unwrap();
            let holder = cache.lock("aaaa", || {}).unwrap();
            std::thread::scope(|s| {
                let gc = s.spawn(|| cache.gc(0).unwrap());
                let (waiting_tx, waiting_rx) = mpsc::channel();
                let (release_tx, release_rx) = mpsc::channel::<()>();
                let (got_tx, got_rx) = mpsc::channel();
                s.spawn(move || {
                    let l = cache.lock("aaaa", || waiting_tx.send(()).unwrap()).unwrap();
                    got_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    drop(l);
                });
                waiting_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the second setup waits for the holder");
                // Let gc reach its wait too, then release.
                std::thread::sleep(Duration::from_millis(200));
                drop(holder);
                got_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the second setup gets the key");
                assert!(
                    would_wait(cache, "aaaa"),
                    "a third party took the key while the second setup owns it"
                );
                release_tx.send(()).unwrap();
                gc.join().unwrap();
            });
            assert!(cache.lock_path("aaaa").exists());
        }
    }

    /// Linux: the other process is util-linux's `flock(1)` (Essential in Debian).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_staging_dir_whose_holder_runs_is_kept_and_one_whose_holder_died_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        // A holder in this process (the old check took our own pid for a dead one).
        let live_lock = cache.lock("live", || {}).unwrap();
        let live = cache.stage("live").unwrap();
        // A holder in another process: `flock(1)` takes the key's lock with flock(2) and, with
        // --no-fork, becomes the `sleep` that holds it (killing it releases the lock).
        let other = cache.lock_path("other");
        let other_dir = {
            let _l = cache.lock("other", || {}).unwrap();
            cache.stage("other").unwrap()
        };
        let mut child = std::process::Command::new("flock")
            .args(["--exclusive", "--no-fork"])
            .arg(&other)
            .args(["sleep", "60"])
            .spawn()
            .expect("flock (util-linux) runs");
        let t = Instant::now();
        while !would_wait(&cache, "other") {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "flock never took the lock"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A maker that died: its staging dir exists, no one holds its key.
        let dead = {
            let _l = cache.lock("dead", || {}).unwrap();
            cache.stage("dead").unwrap()
        };
        // An old-style name with a pid that cannot run.
        let old_style = cache.bucket().join(".staging-older-4294967295");
        std::fs::create_dir(&old_style).unwrap();

        cache.gc(0).unwrap();
        assert!(live.exists(), "the live holder's staging dir was removed");
        assert!(
            other_dir.exists(),
            "the other process's staging dir was removed"
        );
        assert!(
            !dead.exists(),
            "the dead maker's staging dir is still there"
        );
        assert!(!old_style.exists());

        child.kill().unwrap();
        child.wait().unwrap();
        drop(live_lock);
        cache.gc(0).unwrap();
        assert!(
            !other_dir.exists(),
            "the killed process's staging dir is still there"
        );
        assert!(
            !live.exists(),
            "a released key's staging dir is still there"
        );
        assert!(cache.lock_path("other").exists() && cache.lock_path("dead").exists());
    }

    #[test]
    fn staging_dirs_are_fresh_and_unpredictable() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let _l = cache.lock("kkkk", || {}).unwrap();
        let a = cache.stage("kkkk").unwrap();
        let b = cache.stage("kkkk").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".staging-kkkk-"), "{name}");
        assert!(!name.ends_with(&std::process::id().to_string()), "{name}");
    }

    #[test]
    fn a_rust_change_is_named_by_release_and_flags_not_by_every_rustc_line() {
        let old = manifest("a");
        let mut now = old.inputs.clone();
        now.rust = Some(
            "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 59807616e\nRUSTFLAGS=-Ctarget-cpu=native".into(),
        );
        let why = explain_changes(&old, &now, &[]).join("; ");
        assert!(
            why.contains(
                "rust: none → rustc 1.95.0 (59807616e 2026-04-14); RUSTFLAGS=-Ctarget-cpu=native"
            ),
            "{why}"
        );
        assert!(!why.contains("commit-hash"), "{why}");
    }
}
