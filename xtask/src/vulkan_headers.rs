//! Vulkan headers new enough for the pinned llama.cpp, provided into the cache when the system's
//! are too old (Debian 12 ships 1.3.239; the pinned `ggml-vulkan.cpp` uses `VK_EXT_layer_settings`
//! unconditionally and does not compile with them: LLAMA_CPP_FACTS.md, "Other backends").
//!
//! How: the headers alone of Debian trixie's `libvulkan-dev` (1.4.309, known to compile the tree),
//! fetched with `apt-get download` through a SEPARATE source list, state and cache directory under
//! the cache, so the system's apt configuration, lists and installed packages stay untouched; then
//! `dpkg -x` into `<cache>/toolchains/vulkan-headers-<version>/`. The archive URI and keyring are
//! read from the system's own apt sources (never a host name written here). The build links the
//! system loader (any 1.x loader works with newer headers) and passes `-DVulkan_INCLUDE_DIR=`; the
//! headers' path and version are part of the build's toolchain identity (cache key).

use crate::cmd::Cmd;
use std::path::{Path, PathBuf};

/// The Debian suite whose `libvulkan-dev` headers are known to compile the pinned tree.
pub const SUITE: &str = "trixie";
/// The package holding the headers (only its `usr/include` is used).
pub const PACKAGE: &str = "libvulkan-dev";
/// The keyring Debian installs for its archive, used when the system's entry names none.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where the headers go: `<cache>/toolchains/`.
pub fn toolchains_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("toolchains")
}

/// Include directories of headers already provided into the cache.
pub fn installed(cache_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(toolchains_dir(cache_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("vulkan-headers-")
        })
        .map(|e| e.path().join("usr/include"))
        .filter(|p| p.join("vulkan/vulkan_core.h").is_file())
        .collect();
    out.sort();
    out
}

/// One `deb` source of the system's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
}

/// Parses apt sources in both formats: deb822 (`*.sources`: `Types:`/`URIs:`/`Suites:`
/// stanzas) and one-line (`sources.list`, `*.list`: `deb [opts] URI suite comp...`). Only `deb`
/// entries are returned; comments are ignored.
pub fn parse_apt_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    if text
        .lines()
        .any(|l| l.trim_start().to_ascii_lowercase().starts_with("types:"))
    {
        for stanza in text.split("\n\n") {
            let mut fields: std::collections::HashMap<String, String> = Default::default();
            for l in stanza.lines() {
                if l.trim_start().starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if !l.starts_with(char::is_whitespace) {
                        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
            }
            let words = |k: &str| -> Vec<String> {
                fields
                    .get(k)
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default()
            };
            if !words("types").iter().any(|t| t == "deb")
                || fields
                    .get("enabled")
                    .is_some_and(|e| e.eq_ignore_ascii_case("no"))
            {
                continue;
            }
            for uri in words("uris") {
                out.push(AptSource {
                    uri,
                    suites: words("suites"),
                    components: words("components"),
                    signed_by: fields
                        .get("signed-by")
                        .cloned()
                        .filter(|s| s.starts_with('/')),
                });
            }
        }
        return out;
    }
    for l in text.lines() {
        let l = l.split('#').next().unwrap_or("").trim();
        let Some(rest) = l.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            signed_by = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_string);
            rest = after.trim();
        }
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() >= 2 {
            out.push(AptSource {
                uri: w[0].to_string(),
                suites: vec![w[1].to_string()],
                components: w[2..].iter().map(|s| s.to_string()).collect(),
                signed_by,
            });
        }
    }
    out
}

/// The Debian archive among `sources`: a `deb` entry for a release suite of Debian itself
/// (`bookworm`, `trixie`, `stable`, ...; not `-security`/`-updates`), with component `main`.
pub fn debian_archive(sources: &[AptSource]) -> Option<&AptSource> {
    const DEBIAN: &[&str] = &[
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "sid",
        "oldstable",
        "stable",
        "testing",
        "unstable",
    ];
    sources.iter().find(|s| {
        s.components.iter().any(|c| c == "main")
            && s.suites.iter().any(|x| DEBIAN.contains(&x.as_str()))
    })
}

/// The system's apt sources, read from `/etc/apt/sources.list` and `/etc/apt/sources.list.d/`.
pub fn system_sources() -> Vec<AptSource> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| parse_apt_sources(&t))
        .collect()
}

/// What `provide` will do, decided before anything happens (printed before asking).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The one-line source written into the private list.
    pub source_line: String,
    /// `<cache>/toolchains/apt-trixie`: private lists, cache and status for apt.
    pub apt_dir: PathBuf,
    pub toolchains: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadersError {
    #[error("no Debian archive (a `deb` source for a Debian release with component main) in /etc/apt/sources.list or /etc/apt/sources.list.d/")]
    NoArchive,
    #[error("fetching {PACKAGE} from Debian {SUITE} failed: `{command}`")]
    Command {
        command: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("{path}: {message}")]
    Unusable { path: String, message: String },
    #[error("I/O error at {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for HeadersError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            HeadersError::NoArchive => "install Vulkan headers 1.3.26x or newer yourself (e.g. the LunarG Vulkan SDK, then set VULKAN_SDK) and run the command again".into(),
            _ => format!("check network access to the Debian archive, or install Vulkan headers that define VK_EXT_layer_settings and set VULKAN_SDK; the private apt state is under {}", "<cache>/toolchains/apt-trixie"),
        })
    }
}

pub fn plan(cache_dir: &Path) -> Result<Plan, HeadersError> {
    let sources = system_sources();
    let archive = debian_archive(&sources).ok_or(HeadersError::NoArchive)?;
    let keyring = archive
        .signed_by
        .clone()
        .unwrap_or_else(|| DEFAULT_KEYRING.to_string());
    Ok(Plan {
        source_line: format!("deb [signed-by={keyring}] {} {SUITE} main", archive.uri),
        apt_dir: toolchains_dir(cache_dir).join(format!("apt-{SUITE}")),
        toolchains: toolchains_dir(cache_dir),
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HeadersError + '_ {
    move |source| HeadersError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The apt options that point every apt path at the private directory.
fn apt_options(dir: &Path) -> Vec<String> {
    let d = dir.display();
    [
        format!("Dir::Etc::SourceList={d}/sources.list"),
        format!("Dir::Etc::SourceParts={d}/sources.list.d"),
        format!("Dir::Etc::PreferencesParts={d}/preferences.d"),
        format!("Dir::State::Lists={d}/lists"),
        format!("Dir::State::Status={d}/status"),
        format!("Dir::Cache={d}/cache"),
        "Acquire::Languages=none".to_string(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect()
}

/// Runs the plan: private `apt-get update` + `apt-get download`, `dpkg -x`, and publishes the
/// headers as `<cache>/toolchains/vulkan-headers-<version>/`. Returns its include directory.
pub fn provide(plan: &Plan) -> Result<PathBuf, HeadersError> {
    let d = &plan.apt_dir;
    for sub in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
        "download",
    ] {
        fs_err::create_dir_all(d.join(sub)).map_err(io(d))?;
    }
    let list = d.join("sources.list");
    fs_err::write(&list, format!("{}\n", plan.source_line)).map_err(io(&list))?;
    let status = d.join("status");
    if !status.exists() {
        fs_err::write(&status, "").map_err(io(&status))?;
    }
    let opts = apt_options(d);
    let run = |c: Cmd| -> Result<(), HeadersError> {
        c.run().map(|_| ()).map_err(|e| HeadersError::Command {
            command: c.display(),
            source: Box::new(e),
        })
    };
    run(Cmd::new("apt-get")
        .args(&opts)
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let dl = d.join("download");
    for e in fs_err::read_dir(&dl).map_err(io(&dl))?.flatten() {
        let _ = fs_err::remove_file(e.path());
    }
    run(Cmd::new("apt-get")
        .args(&opts)
        .args(["download", PACKAGE])
        .cwd(&dl))?;
    let deb = fs_err::read_dir(&dl)
        .map_err(io(&dl))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| HeadersError::Unusable {
            path: dl.display().to_string(),
            message: format!("apt-get download left no {PACKAGE} .deb"),
        })?;
    // Created exclusively under a random name (removed on any failure when the guard drops).
    fs_err::create_dir_all(&plan.toolchains).map_err(io(&plan.toolchains))?;
    let staging_guard = tempfile::Builder::new()
        .prefix(".staging-vulkan-headers-")
        .tempdir_in(&plan.toolchains)
        .map_err(io(&plan.toolchains))?;
    let staging = staging_guard.path().to_path_buf();
    run(Cmd::new("dpkg").arg("-x").arg(&deb).arg(&staging))?;
    let core = staging.join("usr/include/vulkan/vulkan_core.h");
    let text = fs_err::read_to_string(&core).map_err(io(&core))?;
    let (version, sufficient) =
        crate::probe::accel::parse_vulkan_core_h(&text).ok_or_else(|| HeadersError::Unusable {
            path: core.display().to_string(),
            message: "no VK_HEADER_VERSION_COMPLETE in it".into(),
        })?;
    if !sufficient {
        return Err(HeadersError::Unusable {
            path: core.display().to_string(),
            message: format!("Vulkan headers {version} do not define VK_EXT_layer_settings either"),
        });
    }
    let dest = plan.toolchains.join(format!("vulkan-headers-{version}"));
    if dest.exists() {
        let _ = fs_err::remove_dir_all(&staging);
    } else {
        fs_err::rename(&staging, &dest).map_err(io(&dest))?;
    }
    Ok(dest.join("usr/include"))
}
