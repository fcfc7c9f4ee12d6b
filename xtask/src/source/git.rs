//! Git transport (libgit2, built in, no system libraries): fetch one revision from a URL or local
//! repository into the source cache, check it out, and report the commit for verification.
//!
//! HTTPS and SSH need libgit2's OpenSSL/libssh2 backends, which need system headers; they are
//! behind the `git-https` cargo feature. Without it, such URLs fail with a message saying what to
//! do instead (see `docs/pin.md`).

use super::digest::hex;
use super::pin::Pin;
use super::{Fetched, SourceError, SourceOptions};
use crate::progress::{Progress, Unit};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitStep {
    /// URL or absolute local path.
    pub url: String,
    /// What to fetch: a commit id, tag or branch.
    pub rev: String,
    /// The pin's upstream commit, which the checkout must be (unless unpinned trees are allowed).
    pub expected_commit: Option<String>,
    /// The working tree in the source cache (`<cache>/sources-v1/git/<hash of url>`).
    pub checkout: PathBuf,
    pub offline: bool,
}

/// URL kinds this build of xtask can fetch from.
pub fn is_network_url(url: &str) -> bool {
    url.contains("://") && !url.starts_with("file://") || is_scp_like(url)
}

fn is_scp_like(url: &str) -> bool {
    // `user@host:path` (git's scp syntax), but not a Windows drive (`C:\...`).
    !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, _)| host.len() > 1 && !host.contains('/'))
}

pub fn network_supported() -> bool {
    cfg!(feature = "git-https")
}

pub fn plan(pin: &Pin, opts: &SourceOptions, sources: &Path) -> Result<GitStep, SourceError> {
    let url = opts
        .url
        .clone()
        .unwrap_or_else(|| pin.upstream.repository.clone());
    if is_network_url(&url) && !network_supported() {
        return Err(SourceError::GitUnsupportedUrl { url });
    }
    let url = if url.contains("://") {
        url
    } else {
        std::path::absolute(&url)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or(url)
    };
    let rev = match (&opts.rev, &pin.upstream.commit) {
        (Some(r), _) => r.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(SourceError::Options(
                "the pin records no upstream commit; name the revision to fetch with --rev REV"
                    .into(),
            ))
        }
    };
    let key = hex(&Sha256::digest(url.as_bytes()));
    Ok(GitStep {
        checkout: sources.join("git").join(&key[..16]),
        url,
        rev,
        expected_commit: pin.upstream.commit.clone(),
        offline: opts.offline,
    })
}

fn git_err(action: &'static str, url: &str) -> impl Fn(git2::Error) -> SourceError {
    let url = url.to_string();
    move |e| SourceError::Git {
        action,
        url: url.clone(),
        message: e.message().to_string(),
    }
}

fn is_full_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `rev` names in `repo` without fetching, if it is there.
fn resolve_local(repo: &git2::Repository, rev: &str) -> Option<git2::Oid> {
    if is_full_commit_id(rev) {
        let oid = git2::Oid::from_str(rev).ok()?;
        return repo.find_commit(oid).ok().map(|c| c.id());
    }
    let local = format!("refs/tunellama/{rev}");
    repo.revparse_single(&local)
        .ok()?
        .peel_to_commit()
        .ok()
        .map(|c| c.id())
}

pub(crate) fn obtain(step: &GitStep, progress: &dyn Progress) -> Result<Fetched, SourceError> {
    let url = step.url.as_str();
    let repo = open_or_init(&step.checkout, url)?;
    let oid = if is_full_commit_id(&step.rev) {
        match resolve_local(&repo, &step.rev) {
            Some(oid) => oid,
            None if step.offline => return Err(offline(step)),
            None => fetch(&repo, step, progress)?,
        }
    } else if step.offline {
        resolve_local(&repo, &step.rev).ok_or_else(|| offline(step))?
    } else {
        fetch(&repo, step, progress)?
    };
    let commit = repo.find_commit(oid).map_err(git_err("checkout", url))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force().remove_untracked(true);
    repo.checkout_tree(commit.as_object(), Some(&mut co))
        .map_err(git_err("checkout", url))?;
    repo.set_head_detached(oid)
        .map_err(git_err("checkout", url))?;
    Ok(Fetched {
        root: step.checkout.clone(),
        origin: format!("{url} {}", step.rev),
        commit: Some(oid.to_string()),
        expected_commit: step.expected_commit.clone(),
        crate_checksum: None,
    })
}

fn offline(step: &GitStep) -> SourceError {
    SourceError::GitOffline {
        url: step.url.clone(),
        rev: step.rev.clone(),
    }
}

fn open_or_init(dir: &Path, url: &str) -> Result<git2::Repository, SourceError> {
    let repo = match git2::Repository::open(dir) {
        Ok(r) => r,
        Err(_) => {
            std::fs::create_dir_all(dir).map_err(|e| SourceError::Git {
                action: "init",
                url: url.to_string(),
                message: format!("{}: {e}", dir.display()),
            })?;
            git2::Repository::init(dir).map_err(git_err("init", url))?
        }
    };
    // The digest hashes bytes as committed: never convert line endings on checkout.
    let mut cfg = repo.config().map_err(git_err("init", url))?;
    cfg.set_bool("core.autocrlf", false)
        .map_err(git_err("init", url))?;
    Ok(repo)
}

/// Fetches `step.rev` (one commit, shallow for network URLs) and returns its commit id.
fn fetch(
    repo: &git2::Repository,
    step: &GitStep,
    progress: &dyn Progress,
) -> Result<git2::Oid, SourceError> {
    let url = step.url.as_str();
    let mut remote = repo.remote_anonymous(url).map_err(git_err("fetch", url))?;
    let mut cb = git2::RemoteCallbacks::new();
    cb.transfer_progress(|p| {
        progress.update(p.received_bytes() as u64, None);
        true
    });
    let mut fo = git2::FetchOptions::new();
    fo.remote_callbacks(cb);
    fo.download_tags(git2::AutotagOption::None);
    if is_network_url(url) {
        fo.depth(1);
    }
    let refspecs: Vec<String> = if is_full_commit_id(&step.rev) {
        vec![step.rev.clone()]
    } else {
        // A tag or a branch; kept under a private ref so `--offline` can find it later.
        let dst = format!("refs/tunellama/{}", step.rev);
        vec![
            format!("+refs/tags/{}:{dst}", step.rev),
            format!("+refs/heads/{}:{dst}", step.rev),
        ]
    };
    progress.start(&format!("git fetch {url} {}", step.rev), None, Unit::Bytes);
    remote
        .fetch(&refspecs, Some(&mut fo), None)
        .map_err(git_err("fetch", url))?;
    progress.finish("fetched");
    resolve_local(repo, &step.rev).ok_or_else(|| SourceError::Git {
        action: "fetch",
        url: url.to_string(),
        message: format!(
            "the repository has no commit, tag or branch named {}",
            step.rev
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_kinds_are_told_apart() {
        assert!(is_network_url("https://example.invalid/llama.cpp"));
        assert!(is_network_url("ssh://git@example.invalid/x"));
        assert!(is_network_url("git@example.invalid:org/x.git"));
        assert!(!is_network_url("file:///tmp/repo"));
        assert!(!is_network_url("/tmp/repo"));
        assert!(!is_network_url("relative/repo"));
        assert!(!is_network_url("C:\\repo"));
    }
}
