//! `cargo xtask bindings [--check]`: regenerate the runtime's checked-in FFI bindings from the
//! pinned llama.cpp headers. bindgen needs libclang, so only this command needs it (and installs
//! it after saying so); building the runtime never does. The generator is the workspace member
//! `xtask/bindgen`, so bindgen is compiled only when bindings are regenerated or linted.

use crate::cmd::Cmd;
use crate::context::Ctx;
use std::path::{Path, PathBuf};

/// The checked-in bindings, relative to the repository root.
pub const BINDINGS: &str = "runtime/src/ffi/bindings.rs";

/// libclang shared libraries in the places distributions put them.
pub(crate) fn find_libclang() -> Option<PathBuf> {
    if let Some(p) = crate::env::libclang_path() {
        return Some(p);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for base in [
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/opt/homebrew/opt/llvm/lib",
    ] {
        let base = Path::new(base);
        dirs.push(base.to_path_buf());
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("llvm") || name.ends_with("-linux-gnu") {
                    dirs.push(e.path().join("lib"));
                    dirs.push(e.path());
                }
            }
        }
    }
    dirs.into_iter().find(|d| {
        std::fs::read_dir(d).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("libclang.")
                    || n.starts_with("libclang-")
                        && n.contains(".so")
                        && !n.starts_with("libclang-cpp")
            })
        })
    })
}

pub(crate) fn libclang_need() -> crate::prereq::Need {
    crate::prereq::Need {
        tool: "libclang".into(),
        why: "bindgen parses llama.h with it (only when regenerating bindings)".into(),
        apt: "libclang-dev",
        dnf: "clang-devel",
        pacman: "clang",
        brew: "llvm",
        winget: "LLVM.LLVM",
    }
}

/// The pinned tree's public headers gathered in one folder, as an install prefix has them.
fn pinned_headers(ctx: &Ctx, into: &Path) -> anyhow::Result<()> {
    let plan = crate::source::plan_from_args(ctx, &crate::source::SourceArgs::default())?;
    let tree = crate::source::obtain(&plan, &crate::progress::Silent)?;
    fs_err::create_dir_all(into)?;
    for dir in [
        tree.root.join("include"),
        tree.root.join("ggml").join("include"),
    ] {
        for e in fs_err::read_dir(&dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "h") {
                fs_err::copy(&p, into.join(p.file_name().expect("file")))?;
            }
        }
    }
    Ok(())
}

pub fn run(ctx: &Ctx, args: &BindingsArgs) -> anyhow::Result<std::process::ExitCode> {
    if find_libclang().is_none() {
        crate::prereq::install(ctx, &[libclang_need()])?;
    }
    // A private directory created exclusively; removed when `tmp` drops.
    let tmp = crate::fsx::private_temp_dir(Some(&ctx.cache_dir), "bindings-headers-")?;
    let headers = tmp.path().join("include");
    pinned_headers(ctx, &headers)?;
    let mut cmd = Cmd::new(crate::env::cargo())
        .args(["run", "--quiet", "--package", "xtask-bindgen", "--"])
        .arg("--include")
        .arg(&headers)
        .arg("--out")
        .arg(ctx.repo_root.join(BINDINGS))
        .cwd(&ctx.repo_root);
    if let Some(dir) = find_libclang() {
        cmd = cmd.env("LIBCLANG_PATH", dir);
    }
    if args.check {
        cmd = cmd.arg("--check");
    }
    let result = cmd.run_inherit();
    let _ = fs_err::remove_dir_all(&headers);
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct BindingsArgs {
    /// Compare instead of writing: fail with a diff when the checked-in bindings are stale
    #[arg(long)]
    pub check: bool,
}
