//! Source stage: obtain the pinned llama.cpp tree through a transport (registry, git, path) and
//! verify it against the pin's tree digest before anything else may use it.
//!
//! [`plan`] is pure (what would happen, as data); [`obtain`] does it and returns a [`Tree`].
//! A tree whose digest differs from the pin is refused with expected vs actual digest and the
//! first differing paths, unless the caller allows unpinned trees; then `Tree::pinned` is false.

pub mod digest;
pub mod git;
pub mod path;
pub mod pin;
pub mod pin_cmd;
pub mod registry;

use crate::progress::Progress;
use digest::{Manifest, PathDiff};
use pin::Pin;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Folder of the source cache under the cache root (bump instead of migrating).
pub const SOURCES_BUCKET: &str = "sources-v1";
/// How many differing paths an error lists.
pub const SHOWN_DIFFERENCES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The tree shipped inside the pinned crate, fetched by cargo (default)
    #[default]
    Registry,
    /// One commit fetched from a git URL (upstream by default; `file://` and local paths work)
    Git,
    /// A local checkout
    Path,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Registry => "registry",
            Transport::Git => "git",
            Transport::Path => "path",
        })
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceOptions {
    pub transport: Transport,
    /// git: repository URL or local path [default: the pin's upstream repository].
    pub url: Option<String>,
    /// git: commit, tag or branch [default: the pin's upstream commit].
    pub rev: Option<String>,
    /// path: the llama.cpp checkout.
    pub path: Option<PathBuf>,
    /// Accept a tree whose digest (or commit) differs from the pin, marking it unpinned.
    pub allow_unpinned: bool,
    /// Never touch the network (cargo `--offline`; git uses only what the cache holds).
    pub offline: bool,
    /// The cargo to run [default: `cargo`]; the CLI passes `$CARGO` (see `env::cargo`).
    pub cargo: Option<PathBuf>,
    /// Where cargo runs, so project-level cargo configuration (mirrors) applies.
    pub workdir: Option<PathBuf>,
}

/// Everything [`obtain`] will do, decided up front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePlan {
    pub transport: Transport,
    pub expected_digest: String,
    pub inputs: Vec<String>,
    /// The pin's per-file manifest, read only to name differing paths.
    pub manifest: PathBuf,
    pub allow_unpinned: bool,
    pub build_number: u64,
    pub build_commit: String,
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Registry(registry::RegistryStep),
    Git(git::GitStep),
    Path { root: PathBuf },
}

/// A verified llama.cpp tree, ready for the build stage (which writes only to its own build dir).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub root: PathBuf,
    pub digest: String,
    pub expected_digest: String,
    /// False only when the caller allowed an unpinned tree and it differs from the pin.
    pub pinned: bool,
    pub transport: Transport,
    /// Where it came from: `crate@version`, a URL, or a path.
    pub origin: String,
    /// git: the checked-out commit.
    pub commit: Option<String>,
    /// registry: the crate checksum cargo verified.
    pub crate_checksum: Option<String>,
    /// For CMake's LLAMA_BUILD_NUMBER / LLAMA_BUILD_COMMIT.
    pub build_number: u64,
    pub build_commit: String,
    pub files: usize,
    pub bytes: u64,
    /// For unpinned trees: the first paths that differ from the pin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<PathDiff>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error(transparent)]
    Digest(#[from] digest::DigestError),
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error(
        "crate {name} {version}: Cargo.lock records checksum {actual}, the pin says {expected}"
    )]
    CrateChecksum {
        name: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("{command}: {message}")]
    Cargo { command: String, message: String },
    #[error("git {action} {url}: {message}")]
    Git {
        action: &'static str,
        url: String,
        message: String,
    },
    #[error("git: {url} has no revision {rev} in the cache and --offline forbids fetching it")]
    GitOffline { url: String, rev: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
}

/// A tree that is not the pinned one: the facts, and a Display that lists differing paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub transport: Transport,
    pub origin: String,
    pub root: PathBuf,
    pub expected_digest: String,
    pub actual_digest: String,
    pub expected_commit: Option<String>,
    pub actual_commit: Option<String>,
    /// The first differing paths (at most [`SHOWN_DIFFERENCES`]).
    pub differences: Vec<PathDiff>,
    pub total_differences: usize,
    /// Why no paths are listed, when none are.
    pub note: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} tree from {} is not the pinned one",
            self.transport, self.origin
        )?;
        write!(f, "\n  tree:     {}", self.root.display())?;
        if let (Some(e), Some(a)) = (&self.expected_commit, &self.actual_commit) {
            if e != a {
                write!(f, "\n  commit:   {a}, pinned {e}")?;
            }
        }
        write!(f, "\n  expected: {}", self.expected_digest)?;
        write!(f, "\n  actual:   {}", self.actual_digest)?;
        if self.expected_digest == self.actual_digest {
            write!(f, " (the digest matches; the commit does not)")?;
        }
        if let Some(n) = &self.note {
            write!(f, "\n  {n}")?;
        }
        for d in &self.differences {
            write!(f, "\n  {d}")?;
        }
        if self.total_differences > self.differences.len() {
            write!(
                f,
                "\n  ... and {} more differing paths",
                self.total_differences - self.differences.len()
            )?;
        }
        Ok(())
    }
}

impl crate::error::Hint for SourceError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            SourceError::Pin(e) => return e.hint(),
            SourceError::Digest(_) => "the tree must be readable and hold only files, folders and links inside it".into(),
            SourceError::Options(_) => "see `cargo xtask source --help`".into(),
            SourceError::Mismatch(_) => "this tree is not the pinned llama.cpp: use the default registry transport, fix the tree, pass --allow-unpinned to build it anyway (marked unpinned), or move the pin with `cargo xtask pin --tree DIR --write`".into(),
            SourceError::CrateChecksum { .. } => "the registry served a different crate than the one pinned: check your registry/mirror configuration, or re-pin with `cargo xtask pin --crate-version VERSION --write` and review".into(),
            SourceError::Cargo { .. } => "check that cargo can reach its registry (or mirror), or pass --offline when the crate is already in cargo's cache".into(),
            SourceError::Git { .. } => "check the URL and the revision; a local path or file:// URL needs a git repository that holds the commit".into(),
            SourceError::GitOffline { .. } => "run once without --offline, or name a local repository with --url".into(),
            SourceError::NotADirectory { .. } => "pass the llama.cpp checkout folder (the one holding CMakeLists.txt, ggml/ and src/)".into(),
        })
    }
}

/// Decides what [`obtain`] will do. Pure: reads nothing, writes nothing.
pub fn plan(
    pin: &Pin,
    pin_path: &Path,
    opts: &SourceOptions,
    cache_dir: &Path,
) -> Result<SourcePlan, SourceError> {
    let sources = cache_dir.join(SOURCES_BUCKET);
    let step = match opts.transport {
        Transport::Registry => Step::Registry(registry::plan(pin, opts, &sources)?),
        Transport::Git => Step::Git(git::plan(pin, opts, &sources)?),
        Transport::Path => Step::Path {
            root: opts
                .path
                .clone()
                .ok_or_else(|| SourceError::Options("--transport path needs --path DIR".into()))?,
        },
    };
    Ok(SourcePlan {
        transport: opts.transport,
        expected_digest: pin.tree.digest.clone(),
        inputs: pin.tree.inputs.clone(),
        manifest: pin.manifest_path(pin_path),
        allow_unpinned: opts.allow_unpinned,
        build_number: pin.build.number,
        build_commit: pin.build.commit.clone(),
        step,
    })
}

/// What a transport hands to verification.
pub(crate) struct Fetched {
    root: PathBuf,
    origin: String,
    commit: Option<String>,
    expected_commit: Option<String>,
    crate_checksum: Option<String>,
}

/// Obtains the planned tree and verifies it; nothing unverified is ever returned.
pub fn obtain(plan: &SourcePlan, progress: &dyn Progress) -> Result<Tree, SourceError> {
    let fetched = match &plan.step {
        Step::Registry(s) => registry::obtain(s, progress)?,
        Step::Git(s) => git::obtain(s, progress)?,
        Step::Path { root } => path::obtain(root)?,
    };
    verify(plan, fetched, progress)
}

fn verify(plan: &SourcePlan, f: Fetched, progress: &dyn Progress) -> Result<Tree, SourceError> {
    progress.start("verifying tree digest", None, crate::progress::Unit::Steps);
    let manifest = digest::hash_tree(&f.root, &plan.inputs)?;
    let actual = manifest.digest();
    progress.finish(&format!(
        "{} files, {}",
        manifest.files.len(),
        crate::progress::human_bytes(manifest.bytes)
    ));
    let commit_ok = match (&f.expected_commit, &f.commit) {
        (Some(e), Some(a)) => e == a,
        _ => true,
    };
    let pinned = actual == plan.expected_digest && commit_ok;
    let mut tree = Tree {
        root: f.root.clone(),
        digest: actual.clone(),
        expected_digest: plan.expected_digest.clone(),
        pinned,
        transport: plan.transport,
        origin: f.origin.clone(),
        commit: f.commit.clone(),
        crate_checksum: f.crate_checksum,
        build_number: plan.build_number,
        build_commit: plan.build_commit.clone(),
        files: manifest.files.len(),
        bytes: manifest.bytes,
        differences: Vec::new(),
    };
    if pinned {
        return Ok(tree);
    }
    let (differences, total, note) = differences(&plan.manifest, &plan.expected_digest, &manifest);
    if plan.allow_unpinned {
        tree.differences = differences;
        if let Some(c) = &f.commit {
            tree.build_commit = c.chars().take(8).collect();
        } else {
            tree.build_commit = format!("unpinned-{}", &actual[..8]);
        }
        return Ok(tree);
    }
    Err(SourceError::Mismatch(Box::new(Mismatch {
        transport: plan.transport,
        origin: f.origin,
        root: f.root,
        expected_digest: plan.expected_digest.clone(),
        actual_digest: actual,
        expected_commit: f.expected_commit,
        actual_commit: f.commit,
        differences,
        total_differences: total,
        note,
    })))
}

/// The first differing paths against the pin's manifest, if that manifest is usable.
fn differences(
    manifest_path: &Path,
    expected_digest: &str,
    actual: &Manifest,
) -> (Vec<PathDiff>, usize, Option<String>) {
    let pinned = match std::fs::read_to_string(manifest_path) {
        Ok(text) => match Manifest::parse(&text, manifest_path) {
            Ok(m) => m,
            Err(e) => return (Vec::new(), 0, Some(format!("cannot list paths: {e}"))),
        },
        Err(e) => {
            let note = format!("cannot list paths: {}: {e}", manifest_path.display());
            return (Vec::new(), 0, Some(note));
        }
    };
    if pinned.digest() != expected_digest {
        let note = format!(
            "cannot list paths: {} does not belong to the pinned digest (stale manifest)",
            manifest_path.display()
        );
        return (Vec::new(), 0, Some(note));
    }
    let mut all = pinned.diff(actual);
    let total = all.len();
    all.truncate(SHOWN_DIFFERENCES);
    (all, total, None)
}

/// One-screen human summary of a verified tree.
pub fn tree_text(t: &Tree) -> String {
    let mut s = format!(
        "tree:      {}\ntransport: {} ({})\ndigest:    {}{}\nfiles:     {} ({})\nbuild:     LLAMA_BUILD_NUMBER={} LLAMA_BUILD_COMMIT={}\n",
        t.root.display(),
        t.transport,
        t.origin,
        t.digest,
        if t.pinned { " (pinned)" } else { " (UNPINNED)" },
        t.files,
        crate::progress::human_bytes(t.bytes),
        t.build_number,
        t.build_commit,
    );
    if let Some(c) = &t.commit {
        s.push_str(&format!("commit:    {c}\n"));
    }
    if let Some(c) = &t.crate_checksum {
        s.push_str(&format!("crate sha256: {c}\n"));
    }
    if !t.pinned {
        s.push_str(&format!("pinned digest: {}\n", t.expected_digest));
        for d in &t.differences {
            s.push_str(&format!("  {d}\n"));
        }
    }
    s
}

/// The pin and options the CLI flags describe, planned (shared by `source` and `setup`).
pub fn plan_from_args(ctx: &crate::context::Ctx, args: &SourceArgs) -> anyhow::Result<SourcePlan> {
    let pin_path = args
        .pin
        .clone()
        .unwrap_or_else(|| ctx.repo_root.join(pin::PIN_PATH));
    let pin = Pin::load(&pin_path)?;
    let opts = SourceOptions {
        transport: args.transport,
        url: args.url.clone(),
        rev: args.rev.clone(),
        path: args.path.clone(),
        allow_unpinned: args.allow_unpinned,
        offline: args.offline,
        cargo: Some(crate::env::cargo()),
        workdir: Some(ctx.repo_root.clone()),
    };
    Ok(plan(&pin, &pin_path, &opts, &ctx.cache_dir)?)
}

/// `cargo xtask source`: obtain + verify, print the Tree.
pub fn run(
    ctx: &crate::context::Ctx,
    args: &SourceArgs,
    progress: &dyn Progress,
) -> anyhow::Result<std::process::ExitCode> {
    let plan = plan_from_args(ctx, args)?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let tree = obtain(&plan, progress)?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&tree)?);
    } else {
        print!("{}", tree_text(&tree));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args, Default)]
pub struct SourceArgs {
    /// How to obtain the tree
    #[arg(long, value_enum, default_value_t)]
    pub transport: crate::source::Transport,
    /// git: repository URL or local path [default: the pin's upstream repository]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// git: commit, tag or branch to fetch [default: the pin's upstream commit]
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// path: the llama.cpp checkout to use
    #[arg(long, value_name = "DIR", required_if_eq("transport", "path"))]
    pub path: Option<std::path::PathBuf>,
    /// Accept a tree that differs from the pin; it is marked unpinned everywhere it is shown
    #[arg(long)]
    pub allow_unpinned: bool,
    /// Use only what cargo's cache (or the git cache) already holds
    #[arg(long)]
    pub offline: bool,
    /// The pin to verify against [default: profiles/llama.pin.toml]
    #[arg(long, value_name = "FILE")]
    pub pin: Option<std::path::PathBuf>,
    /// Print the plan and change nothing (`setup`: tools it would install, source, key, cache hit
    /// or build, prebuilt candidate and which is used and why; text, or JSON with --json.
    /// `source`: the source plan as JSON)
    #[arg(long)]
    pub dry_run: bool,
}
