//! Git transport (the `git` command line, as the user cloned this repository with): fetch one
//! revision from a URL or local repository into the source cache, check it out, and report the
//! commit for verification. HTTPS and SSH work as they do for the user's own `git`.

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

pub fn plan(pin: &Pin, opts: &SourceOptions, sources: &Path) -> Result<GitStep, SourceError> {
    let url = opts
        .url
        .clone()
        .unwrap_or_else(|| pin.upstream.repository.clone());
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

/// `git ARGS` in `dir` (the one door for subprocesses); failures become `SourceError::Git` with
/// git's own message.
fn git(dir: &Path, action: &'static str, url: &str, args: &[&str]) -> Result<String, SourceError> {
    let out = crate::cmd::Cmd::new("git")
        .args(args)
        .cwd(dir)
        // Never ask for credentials on a terminal: a refused fetch is an error to report.
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| SourceError::Git {
            action,
            url: url.to_string(),
            message: if e.is_not_found() {
                "the `git` command is not installed (install git, or use the default registry transport)".into()
            } else {
                e.to_string()
            },
        })?;
    if !out.success() {
        return Err(SourceError::Git {
            action,
            url: url.to_string(),
            message: format!(
                "`git {}` failed: {}",
                args.join(" "),
                crate::cmd::tail(out.stderr.trim(), 10)
            ),
        });
    }
    Ok(out.stdout.trim().to_string())
}

fn is_full_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `rev` names in the repository at `dir` without fetching, if it is there.
fn resolve_local(dir: &Path, url: &str, rev: &str) -> Option<String> {
    let spec = if is_full_commit_id(rev) {
        format!("{rev}^{{commit}}")
    } else {
        format!("refs/tunellama/{rev}^{{commit}}")
    };
    git(
        dir,
        "rev-parse",
        url,
        &["rev-parse", "--verify", "--quiet", &spec],
    )
    .ok()
    .filter(|s| is_full_commit_id(s))
}

pub(crate) fn obtain(step: &GitStep, progress: &dyn Progress) -> Result<Fetched, SourceError> {
    let url = step.url.as_str();
    let dir = step.checkout.as_path();
    open_or_init(dir, url)?;
    let oid = if is_full_commit_id(&step.rev) {
        match resolve_local(dir, url, &step.rev) {
            Some(oid) => oid,
            None if step.offline => return Err(offline(step)),
            None => fetch(step, progress)?,
        }
    } else if step.offline {
        resolve_local(dir, url, &step.rev).ok_or_else(|| offline(step))?
    } else {
        fetch(step, progress)?
    };
    // Force the working tree to the commit (restoring tampered files) and drop untracked files.
    git(
        dir,
        "checkout",
        url,
        &["checkout", "--quiet", "--force", "--detach", &oid],
    )?;
    git(dir, "checkout", url, &["clean", "--quiet", "-ffd"])?;
    Ok(Fetched {
        root: step.checkout.clone(),
        origin: format!("{url} {}", step.rev),
        commit: Some(oid),
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

fn open_or_init(dir: &Path, url: &str) -> Result<(), SourceError> {
    if !dir.join(".git").exists() {
        std::fs::create_dir_all(dir).map_err(|e| SourceError::Git {
            action: "init",
            url: url.to_string(),
            message: format!("{}: {e}", dir.display()),
        })?;
        git(dir, "init", url, &["init", "--quiet"])?;
    }
    // The digest hashes bytes as committed: never convert line endings on checkout.
    git(dir, "init", url, &["config", "core.autocrlf", "false"])?;
    Ok(())
}

/// Fetches `step.rev` (one commit, shallow for network URLs) and returns its commit id.
fn fetch(step: &GitStep, progress: &dyn Progress) -> Result<String, SourceError> {
    let url = step.url.as_str();
    let mut args: Vec<String> = vec!["fetch".into(), "--quiet".into(), "--no-tags".into()];
    if is_network_url(url) {
        args.push("--depth=1".into());
    }
    args.push(url.into());
    let tag_or_branch = !is_full_commit_id(&step.rev);
    if tag_or_branch {
        // A tag or a branch; kept under a private ref so `--offline` can find it later.
        let dst = format!("refs/tunellama/{}", step.rev);
        progress.start(&format!("git fetch {url} {}", step.rev), None, Unit::Steps);
        let mut last = None;
        for src in ["tags", "heads"] {
            let mut a = args.clone();
            a.push(format!("+refs/{src}/{}:{dst}", step.rev));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            match git(&step.checkout, "fetch", url, &a) {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        progress.finish("fetched");
        if let Some(e) = last.filter(|_| resolve_local(&step.checkout, url, &step.rev).is_none()) {
            // Both refspecs failed: a missing revision, or the fetch itself failed.
            let SourceError::Git { message, .. } = &e else {
                return Err(e);
            };
            if !message.contains("couldn't find remote ref") {
                return Err(e);
            }
        }
    } else {
        args.push(step.rev.clone());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        progress.start(&format!("git fetch {url} {}", step.rev), None, Unit::Steps);
        let r = git(&step.checkout, "fetch", url, &a);
        progress.finish("fetched");
        if let Err(e) = r {
            let missing = matches!(&e, SourceError::Git { message, .. }
                if message.contains("not our ref") || message.contains("couldn't find remote ref")
                    || message.contains("upload-pack: not our ref"));
            if !missing {
                return Err(e);
            }
        }
    }
    resolve_local(&step.checkout, url, &step.rev).ok_or_else(|| SourceError::Git {
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
