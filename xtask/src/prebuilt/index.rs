//! The prebuilt index: which artifacts exist, what each requires, where it is and its sha256.
//! Read from a file or an http(s) URL; relative artifact URLs resolve against the index's location.
//! Its JSON Schema is `prebuilt/index.schema.json`; `prebuilt/index.example.json` is an example.

use super::Requirements;
use crate::download;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use url::Url;

/// Bumped when the index's JSON shape changes incompatibly.
pub const INDEX_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub schema: u32,
    /// The command (and tool version) that wrote it.
    pub generated_by: String,
    pub artifacts: Vec<Artifact>,
}

/// The llama.cpp tree an artifact was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaRef {
    /// Upstream commit, or the pin's build commit (`tree-6a52492e`) when upstream is unknown.
    pub commit: String,
    /// The pin's tree digest (sha256, 64 hex): the identity that selection compares.
    pub tree_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The matrix variant (`linux-x86_64-v3`).
    pub variant: String,
    /// Rust target triple.
    pub target: String,
    pub requirements: Requirements,
    pub llama: LlamaRef,
    /// Where the archive is: absolute, or relative to the index (resolved by [`Index::load`]).
    pub url: String,
    /// sha256 of the archive (64 lowercase hex).
    pub sha256: String,
    /// Archive size in bytes.
    pub size: u64,
    /// sha256 of the manifest file published beside the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read the prebuilt index {source_name}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch the prebuilt index {source_name}: {reason}")]
    Fetch { source_name: String, reason: String },
    #[error("{source_name}:{line}:{column}: not a valid prebuilt index: {message}")]
    Parse {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{source_name}: index schema {found} is not supported (this tool reads schema {INDEX_SCHEMA})")]
    Schema { source_name: String, found: u32 },
    #[error("{source_name}: artifact {variant}: {reason}")]
    Invalid {
        source_name: String,
        variant: String,
        reason: String,
    },
}

impl crate::error::Hint for IndexError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            IndexError::Read { .. } | IndexError::Fetch { .. } => {
                "check the index location (a path, or an https:// URL)".into()
            }
            _ => "compare with prebuilt/index.example.json and prebuilt/index.schema.json; `cargo xtask prebuilt index` writes valid ones".into(),
        })
    }
}

impl Index {
    /// Parses an index and checks its schema, sha256s and URLs; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Index, IndexError> {
        let index: Index = serde_json::from_str(text).map_err(|e| IndexError::Parse {
            source_name: source_name.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if index.schema != INDEX_SCHEMA {
            return Err(IndexError::Schema {
                source_name: source_name.to_string(),
                found: index.schema,
            });
        }
        for a in &index.artifacts {
            let invalid = |reason: String| IndexError::Invalid {
                source_name: source_name.to_string(),
                variant: a.variant.clone(),
                reason,
            };
            download::Sha256Hex::parse(&a.sha256).map_err(|e| invalid(format!("sha256: {e}")))?;
            if let Some(m) = &a.manifest_sha256 {
                download::Sha256Hex::parse(m)
                    .map_err(|e| invalid(format!("manifest_sha256: {e}")))?;
            }
            if a.url.is_empty() {
                return Err(invalid("url is empty".into()));
            }
        }
        Ok(index)
    }

    /// Loads an index from a path or an `http(s)://` URL and makes every artifact URL absolute
    /// (`https://…`, or `file://…` for an index read from disk).
    pub fn load(location: &str, opts: &download::Options) -> Result<Index, IndexError> {
        let (text, base) = if location.starts_with("http://") || location.starts_with("https://") {
            let url = download::check_url(location, opts).map_err(|e| IndexError::Fetch {
                source_name: location.to_string(),
                reason: e.to_string(),
            })?;
            (fetch_text(&url, opts)?, url)
        } else {
            let path = Path::new(location);
            let text = fs_err::read_to_string(path).map_err(|e| IndexError::Read {
                source_name: location.to_string(),
                source: e,
            })?;
            let abs = std::path::absolute(path).map_err(|e| IndexError::Read {
                source_name: location.to_string(),
                source: e,
            })?;
            let base = Url::from_file_path(&abs).map_err(|_| IndexError::Fetch {
                source_name: location.to_string(),
                reason: "not an absolute path".into(),
            })?;
            (text, base)
        };
        let mut index = Index::parse(&text, location)?;
        index.resolve_urls(&base, location)?;
        Ok(index)
    }

    /// Makes relative artifact URLs absolute against `base` (the index's own URL).
    pub fn resolve_urls(&mut self, base: &Url, source_name: &str) -> Result<(), IndexError> {
        for a in &mut self.artifacts {
            let joined = base.join(&a.url).map_err(|e| IndexError::Invalid {
                source_name: source_name.to_string(),
                variant: a.variant.clone(),
                reason: format!("url `{}`: {e}", a.url),
            })?;
            a.url = joined.to_string();
        }
        Ok(())
    }
}

/// Most bytes a text document may have (an index with thousands of artifacts is far smaller).
const MAX_TEXT: u64 = 64 << 20;

/// GETs a small text document (the index, a manifest beside an archive), following up to
/// `opts.max_redirects` redirects (https → https only, unless `opts.allow_http`). Proxies:
/// `opts.proxies`, or when it names none the environment's (`https_proxy`, `http_proxy`,
/// `no_proxy`), as the HTTP client did on its own before.
pub(crate) fn fetch_text(url: &Url, opts: &download::Options) -> Result<String, IndexError> {
    let fail = |reason: String| IndexError::Fetch {
        source_name: url.to_string(),
        reason,
    };
    let proxies = if opts.proxies.is_empty() {
        download::Proxies::from_env()
    } else {
        opts.proxies.clone()
    };
    let t = crate::http::Timeouts {
        connect: opts.connect_timeout,
        stall: opts.stall_timeout,
        total: Some(Duration::from_secs(60).max(opts.stall_timeout)),
    };
    let agents = crate::http::Agents::new(&proxies, &opts.user_agent, t).map_err(fail)?;
    // Names the hop that failed when it is not the URL asked for.
    let via = |at: &Url| {
        if at == url {
            String::new()
        } else {
            format!(" (redirected to {at})")
        }
    };
    let mut at = url.clone();
    for _ in 0..=opts.max_redirects {
        if at.scheme() != "https" && !opts.allow_http {
            return Err(fail(format!("redirect to a non-https URL ({at})")));
        }
        let mut resp = agents
            .for_url(&at)
            .get(at.as_str())
            .call()
            .map_err(|e| fail(format!("{}{}", crate::http::reason(&e), via(&at))))?;
        let status = resp.status();
        if status.is_redirection() {
            if let Some(loc) = resp
                .headers()
                .get(ureq::http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            {
                at = at
                    .join(loc)
                    .map_err(|e| fail(format!("bad redirect from {at} to `{loc}`: {e}")))?;
                continue;
            }
        }
        if !status.is_success() {
            return Err(fail(format!("the server answered {status}{}", via(&at))));
        }
        return resp
            .body_mut()
            .with_config()
            .limit(MAX_TEXT)
            .read_to_string()
            .map_err(|e| fail(format!("reading the answer: {}", crate::http::reason(&e))));
    }
    Err(fail(format!("more than {} redirects", opts.max_redirects)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_path() -> String {
        format!(
            "{}/../prebuilt/index.example.json",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn checked_in_example_parses_with_our_types() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let index = Index::parse(&text, "prebuilt/index.example.json").unwrap();
        assert!(index.artifacts.len() >= 3);
        // And it round-trips without losing fields.
        let again: Index = serde_json::from_str(&serde_json::to_string(&index).unwrap()).unwrap();
        assert_eq!(again, index);
    }

    #[test]
    fn relative_urls_resolve_against_a_file_index() {
        let index = Index::load(&example_path(), &Default::default()).unwrap();
        let rel = index
            .artifacts
            .iter()
            .find(|a| a.url.starts_with("file://"))
            .expect("the example has a relative URL");
        assert!(rel.url.contains("/prebuilt/"), "{}", rel.url);
    }

    #[test]
    fn parse_errors_name_the_source_with_line_and_column() {
        let e = Index::parse("{\n  \"schema\": 1,\n  oops\n}", "idx.json").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("idx.json:3:"), "{msg}");
    }

    #[test]
    fn bad_sha256_is_refused_naming_the_variant() {
        let text = r#"{"schema":1,"generated_by":"t","artifacts":[{"variant":"v","target":"t",
          "requirements":{"os":"linux","arch":"x86_64","cpu_features":[],"backend":"cpu",
          "cuda_driver_min":null,"gpu_archs":[]},"llama":{"commit":"c","tree_digest":"d"},
          "url":"a.tar.gz","sha256":"xyz","size":1}]}"#;
        let msg = Index::parse(text, "i.json").unwrap_err().to_string();
        assert!(
            msg.contains("artifact v") && msg.contains("sha256"),
            "{msg}"
        );
    }
}
