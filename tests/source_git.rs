//! Git transport: a repository made by the test (with libgit2) is fetched through the `git`
//! command line (local path and `file://` URL), checked out into the source cache and verified by
//! commit and tree digest.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use xtask::progress::Silent;
use xtask::source::digest::Change;
use xtask::source::pin::Pin;
use xtask::source::{obtain, plan, SourceError, Transport, Tree};

/// Commits the whole working tree of `repo` on HEAD; returns the commit id.
fn commit_all(repo: &git2::Repository, msg: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@example.invalid").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, msg, &tree, &parents)
        .unwrap()
        .to_string()
}

struct Fixture {
    dir: tempfile::TempDir,
    upstream: PathBuf,
    pinned: String,
    later: String,
}

/// An "upstream" repository: the pinned commit, then a commit that changes a build input,
/// tagged `v2`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    small_tree(&upstream);
    let repo = git2::Repository::init(&upstream).unwrap();
    let pinned = commit_all(&repo, "pinned");
    write(&upstream, "ggml/src/ggml.c", "int ggml = 2;\n");
    write(&upstream, "src/new.cpp", "new\n");
    let later = commit_all(&repo, "later");
    let obj = repo.revparse_single(&later).unwrap();
    repo.tag_lightweight("v2", &obj, false).unwrap();
    // Leave upstream's working tree at the pinned content so the pin is made from it.
    let mut co = git2::build::CheckoutBuilder::new();
    co.force().remove_untracked(true);
    repo.checkout_tree(&repo.revparse_single(&pinned).unwrap(), Some(&mut co))
        .unwrap();
    Fixture {
        dir,
        upstream,
        pinned,
        later,
    }
}

fn fetch(
    f: &Fixture,
    pin_path: &Path,
    url: &str,
    rev: Option<&str>,
    allow_unpinned: bool,
    offline: bool,
) -> Result<Tree, SourceError> {
    let pin = Pin::load(pin_path).unwrap();
    let mut o = opts(Transport::Git);
    o.url = Some(url.to_string());
    o.rev = rev.map(str::to_string);
    o.allow_unpinned = allow_unpinned;
    o.offline = offline;
    let p = plan(&pin, pin_path, &o, &f.dir.path().join("cache"))?;
    obtain(&p, &Silent)
}

#[test]
fn git_transport_fetches_the_pinned_commit_from_a_local_path_and_a_file_url() {
    let f = fixture();
    let pin = make_pin(f.dir.path(), &f.upstream, Some(f.pinned.clone()));
    let url = f.upstream.to_str().unwrap();
    let t = fetch(&f, &pin, url, None, false, false).unwrap();
    assert!(t.pinned);
    assert_eq!(t.commit.as_deref(), Some(f.pinned.as_str()));
    assert!(t
        .root
        .starts_with(f.dir.path().join("cache/sources-v1/git")));
    assert_eq!(
        std::fs::read_to_string(t.root.join("ggml/src/ggml.c")).unwrap(),
        "int ggml;\n"
    );
    assert!(!t.root.join("src/new.cpp").exists());

    let file_url = format!("file://{url}");
    let t2 = fetch(&f, &pin, &file_url, None, false, false).unwrap();
    assert!(t2.pinned);
    assert_eq!(t2.digest, t.digest);
}

#[test]
fn git_transport_refuses_another_commit_naming_the_differing_paths() {
    let f = fixture();
    let pin = make_pin(f.dir.path(), &f.upstream, Some(f.pinned.clone()));
    let url = f.upstream.to_str().unwrap();
    let err = fetch(&f, &pin, url, Some(&f.later), false, false).unwrap_err();
    let SourceError::Mismatch(m) = &err else {
        panic!("{err}")
    };
    assert_eq!(m.actual_commit.as_deref(), Some(f.later.as_str()));
    assert_eq!(m.expected_commit.as_deref(), Some(f.pinned.as_str()));
    let paths: Vec<(&str, Change)> = m
        .differences
        .iter()
        .map(|d| (d.path.as_str(), d.change))
        .collect();
    assert_eq!(
        paths,
        [
            ("ggml/src/ggml.c", Change::Modified),
            ("src/new.cpp", Change::Added)
        ]
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("commit:   {}", f.later)), "{msg}");
}

#[test]
fn git_transport_without_pinned_commit_verifies_a_named_tag_by_digest() {
    let f = fixture();
    let pin = make_pin(f.dir.path(), &f.upstream, None);
    let url = f.upstream.to_str().unwrap();
    // No commit in the pin and no --rev: the user must say what to fetch.
    let err = fetch(&f, &pin, url, None, false, false).unwrap_err();
    assert!(err.to_string().contains("--rev"), "{err}");
    // A tag whose files differ from the pin is refused, naming the files.
    let err = fetch(&f, &pin, url, Some("v2"), false, false).unwrap_err();
    assert!(
        err.to_string().contains("modified: ggml/src/ggml.c"),
        "{err}"
    );
    // ... and accepted as unpinned when asked, with its commit recorded.
    let t = fetch(&f, &pin, url, Some("v2"), true, false).unwrap();
    assert!(!t.pinned);
    assert_eq!(t.commit.as_deref(), Some(f.later.as_str()));
    assert_eq!(t.build_commit, f.later[..8]);
    // The pinned content under a commit id passes on digest alone.
    let t = fetch(&f, &pin, url, Some(&f.pinned), false, false).unwrap();
    assert!(t.pinned);
}

#[test]
fn git_transport_restores_a_tampered_cache_checkout_and_works_offline() {
    let f = fixture();
    let pin = make_pin(f.dir.path(), &f.upstream, Some(f.pinned.clone()));
    let url = f.upstream.to_str().unwrap().to_string();
    let t = fetch(&f, &pin, &url, None, false, false).unwrap();
    write(&t.root, "src/llama.cpp", "tampered in the cache");
    write(&t.root, "ggml/stray.c", "stray");
    // Offline, with upstream gone: the cached commit is checked out again and verifies.
    std::fs::rename(&f.upstream, f.dir.path().join("moved")).unwrap();
    let t2 = fetch(&f, &pin, &url, None, false, true).unwrap();
    assert!(t2.pinned, "{t2:?}");
    assert!(!t2.root.join("ggml/stray.c").exists());
    // A revision the cache does not hold cannot be had offline.
    let err = fetch(&f, &pin, &url, Some("v2"), false, true).unwrap_err();
    assert!(matches!(err, SourceError::GitOffline { .. }), "{err}");
}

#[test]
fn a_missing_revision_is_an_error_naming_it() {
    let f = fixture();
    let pin = make_pin(f.dir.path(), &f.upstream, None);
    let url = f.upstream.to_str().unwrap();
    let err = fetch(&f, &pin, url, Some("no-such-tag"), false, false).unwrap_err();
    assert!(err.to_string().contains("no-such-tag"), "{err}");
}

#[test]
fn a_network_url_that_cannot_be_reached_is_a_fetch_error_naming_it() {
    // The transport is the `git` command line: HTTPS works as for the user's git. A host that
    // never resolves (the reserved .invalid domain) fails the fetch with git's own message.
    let f = fixture();
    let pin = make_pin(f.dir.path(), &f.upstream, None);
    let err = fetch(
        &f,
        &pin,
        "https://example.invalid/llama.cpp",
        Some("b1"),
        false,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Git {
                action: "fetch",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("https://example.invalid/llama.cpp"), "{msg}");
    assert!(msg.contains("example.invalid"), "{msg}");
}
