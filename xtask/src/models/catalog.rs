//! The model catalog: TOML files listing models by name with their sources, size and sha256.
//! Loading validates everything that later becomes a path or a URL, and reports problems as
//! `file:line:column: what is wrong`.

use crate::download::Sha256Hex;
use crate::gguf::Facts;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;
use url::Url;

/// The catalog format this tool reads.
pub const CATALOG_SCHEMA: u32 = 1;
/// The checked-in catalog, relative to the repository root.
pub const BUILTIN: &str = "models/catalog.toml";
/// The user's own gitignored catalog, relative to the repository root.
pub const LOCAL: &str = "models/local.toml";

/// What a model is for; `recommend` looks for chat models unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    #[default]
    Chat,
    Code,
    Embedding,
    /// Tiny models for smoke tests; never recommended.
    Test,
}

impl Purpose {
    pub fn parse(s: &str) -> Option<Purpose> {
        Some(match s {
            "chat" => Purpose::Chat,
            "code" => Purpose::Code,
            "embedding" => Purpose::Embedding,
            "test" => Purpose::Test,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Chat => "chat",
            Purpose::Code => "code",
            Purpose::Embedding => "embedding",
            Purpose::Test => "test",
        }
    }
}

/// One validated catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub name: String,
    /// The file name it is stored under (a plain name, never a path).
    pub file: String,
    /// Download URLs, tried in order (`hf://` shorthands already expanded).
    pub urls: Vec<String>,
    pub size: u64,
    #[serde(serialize_with = "ser_sha")]
    pub sha256: Sha256Hex,
    pub quantization: Option<String>,
    /// As published ("0.5B", "260K").
    pub parameters: Option<String>,
    pub parameter_count: Option<u64>,
    pub architecture: Option<String>,
    pub context_length: Option<u64>,
    /// Memory to run it at a 4096-token context; `None` means "use the estimate".
    pub memory_bytes: Option<u64>,
    pub purpose: Purpose,
    /// Where the sha256 (and size) are publicly stated.
    pub sources: Vec<String>,
    pub license: Option<String>,
    pub note: Option<String>,
    /// The catalog file this entry came from.
    pub catalog: PathBuf,
    /// Facts from the stored file's GGUF header, when it is stored (filled in by the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gguf: Option<Facts>,
}

fn ser_sha<S: serde::Serializer>(s: &Sha256Hex, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl Model {
    /// Memory needed to run the model at a 4096-token context: the catalog's figure; else, when
    /// the file's header is known, weights + its f16 KV cache + 256 MiB of buffers; else the
    /// estimate file size + 15% + 256 MiB.
    pub fn memory_needed(&self) -> u64 {
        if let Some(b) = self.memory_bytes {
            return b;
        }
        let from_header = self.gguf.as_ref().and_then(|f| {
            let ctx = f.context_length.unwrap_or(4096).min(4096);
            Some(self.size + f.kv_bytes_per_token()? * ctx + (256 << 20))
        });
        from_header.unwrap_or_else(|| estimate_memory(self.size))
    }
}

pub fn estimate_memory(size: u64) -> u64 {
    size + size / 100 * 15 + (256 << 20)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    schema: Option<Spanned<u32>>,
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    file: Spanned<String>,
    urls: Spanned<Vec<String>>,
    size: Spanned<u64>,
    sha256: Spanned<String>,
    quantization: Option<String>,
    parameters: Option<Spanned<String>>,
    architecture: Option<String>,
    context_length: Option<u64>,
    memory_bytes: Option<u64>,
    #[serde(default)]
    purpose: Purpose,
    #[serde(default)]
    sources: Vec<String>,
    license: Option<String>,
    note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl crate::error::Hint for CatalogError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            CatalogError::Read { .. } => "check the path given to --catalog".into(),
            CatalogError::Invalid { .. } => {
                "fix the entry; docs/models.md describes the catalog format".into()
            }
        })
    }
}

/// All models from one or more catalog files; later files override entries of the same name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: Vec<Model>,
    pub files: Vec<PathBuf>,
}

impl Catalog {
    /// The built-in catalog, then `models/local.toml` when present, then `extra` in order.
    pub fn load_default(repo_root: &Path, extra: &[PathBuf]) -> Result<Catalog, CatalogError> {
        let mut files = vec![repo_root.join(BUILTIN)];
        let local = repo_root.join(LOCAL);
        if local.is_file() {
            files.push(local);
        }
        files.extend(extra.iter().cloned());
        Catalog::load_files(&files)
    }

    pub fn load_files(files: &[PathBuf]) -> Result<Catalog, CatalogError> {
        let mut cat = Catalog::default();
        for f in files {
            let text = fs_err::read_to_string(f).map_err(|e| CatalogError::Read {
                path: f.clone(),
                source: e,
            })?;
            for m in parse(&text, f)? {
                match cat.models.iter_mut().find(|x| x.name == m.name) {
                    Some(slot) => *slot = m,
                    None => cat.models.push(m),
                }
            }
            cat.files.push(f.clone());
        }
        Ok(cat)
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Parses and validates one catalog file's text (`path` is for messages and provenance).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Model>, CatalogError> {
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        CatalogError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let raw: RawCatalog = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        at(e.span().unwrap_or(0..0), msg)
    })?;
    if let Some(s) = &raw.schema {
        if *s.get_ref() != CATALOG_SCHEMA {
            return Err(at(
                s.span(),
                format!(
                    "catalog schema {} is not supported (this tool reads schema {CATALOG_SCHEMA})",
                    s.get_ref()
                ),
            ));
        }
    }
    let mut out: Vec<Model> = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for r in raw.model {
        let name = r.name.get_ref().clone();
        check_plain_name(&name, "name").map_err(|m| at(r.name.span(), m))?;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(at(
                r.name.span(),
                format!("model `{name}` is listed twice (first on line {first})"),
            ));
        }
        seen.push((name.clone(), line_col(text, r.name.span().start).0));
        let file = r.file.get_ref().clone();
        check_plain_name(&file, "file").map_err(|m| at(r.file.span(), m))?;
        let sha256 = Sha256Hex::parse(r.sha256.get_ref()).map_err(|m| at(r.sha256.span(), m))?;
        if *r.size.get_ref() == 0 {
            return Err(at(
                r.size.span(),
                "size must be the file's size in bytes".into(),
            ));
        }
        if r.urls.get_ref().is_empty() {
            return Err(at(
                r.urls.span(),
                "urls must list at least one source".into(),
            ));
        }
        let mut urls = Vec::new();
        for u in r.urls.get_ref() {
            urls.push(expand_url(u).map_err(|m| at(r.urls.span(), m))?);
        }
        let parameter_count = match &r.parameters {
            Some(p) => Some(parse_count(p.get_ref()).ok_or_else(|| {
                at(
                    p.span(),
                    format!(
                        "parameters `{}` is not a count like \"0.5B\" or \"260K\"",
                        p.get_ref()
                    ),
                )
            })?),
            None => None,
        };
        out.push(Model {
            name,
            file,
            urls,
            size: *r.size.get_ref(),
            sha256,
            quantization: r.quantization,
            parameters: r.parameters.map(|p| p.into_inner()),
            parameter_count,
            architecture: r.architecture,
            context_length: r.context_length,
            memory_bytes: r.memory_bytes,
            purpose: r.purpose,
            sources: r.sources,
            license: r.license,
            note: r.note,
            catalog: path.to_path_buf(),
            gguf: None,
        });
    }
    Ok(out)
}

/// A name that is safe as one path component on every platform: letters, digits, `._+-`, not
/// starting with a dot (so never `.` or `..`), at most 200 characters.
pub fn check_plain_name(s: &str, what: &str) -> Result<(), String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if s.is_empty() || s.len() > 200 || s.starts_with('.') || !ok_chars {
        return Err(format!(
            "{what} `{s}` is not a plain file name (allowed: letters, digits, `._+-`, not starting with `.`; no `/`, `\\`, `..` or absolute paths)"
        ));
    }
    Ok(())
}

/// `hf://<org>/<repo>/<path>@<revision>` → `https://huggingface.co/<org>/<repo>/resolve/<revision>/<path>`;
/// other URLs must be http(s) and are returned as given.
pub fn expand_url(u: &str) -> Result<String, String> {
    if let Some(rest) = u.strip_prefix("hf://") {
        let (path, rev) = match rest.rsplit_once('@') {
            Some((p, r)) => (p, r),
            None => (rest, "main"),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let bad_seg = |s: &&str| s.is_empty() || *s == "." || *s == ".." || s.contains('\\');
        if parts.len() < 3 || parts.iter().any(bad_seg) {
            return Err(format!(
                "`{u}` is not hf://<org>/<repo>/<file>[@<revision>] (each part non-empty, no `.`/`..`)"
            ));
        }
        if rev.is_empty()
            || !rev
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "`{u}`: revision `{rev}` is not a commit or branch name"
            ));
        }
        return Ok(format!(
            "https://huggingface.co/{}/{}/resolve/{rev}/{}",
            parts[0],
            parts[1],
            parts[2..].join("/")
        ));
    }
    let parsed = Url::parse(u).map_err(|e| format!("`{u}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" | "http" => Ok(u.to_string()),
        s => Err(format!(
            "`{u}`: the `{s}` scheme is not supported (https, http, hf)"
        )),
    }
}

/// "0.5B" → 500_000_000, "260K" → 260_000, "15M" → 15_000_000.
pub fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1e3),
        'M' | 'm' => (&s[..s.len() - 1], 1e6),
        'B' | 'b' | 'G' | 'g' => (&s[..s.len() - 1], 1e9),
        'T' | 't' => (&s[..s.len() - 1], 1e12),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then(|| (v * mult).round() as u64)
}

use crate::hashing::line_col;

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"
[[model]]
name = "tiny"
file = "tiny.gguf"
urls = ["hf://org/repo/sub/tiny.gguf@abc123"]
size = 10
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
parameters = "260K"
"#;

    fn p(text: &str) -> Result<Vec<Model>, CatalogError> {
        parse(text, Path::new("cat.toml"))
    }

    #[test]
    fn hf_shorthand_expands_to_a_pinned_resolve_url() {
        let m = &p(ENTRY).unwrap()[0];
        assert_eq!(
            m.urls,
            vec!["https://huggingface.co/org/repo/resolve/abc123/sub/tiny.gguf"]
        );
        assert_eq!(m.parameter_count, Some(260_000));
        assert_eq!(m.purpose, Purpose::Chat);
        assert_eq!(
            expand_url("hf://o/r/f.gguf").unwrap(),
            "https://huggingface.co/o/r/resolve/main/f.gguf"
        );
        assert!(expand_url("hf://o/../f.gguf@x").is_err());
        assert!(expand_url("hf://o/r").is_err());
        assert!(expand_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn file_names_that_escape_are_refused_with_their_line() {
        for bad in ["../x", "/etc/passwd", "a/b.gguf", "..", "C:\\x", ".hidden"] {
            let text = ENTRY.replace("\"tiny.gguf\"", &format!("{bad:?}"));
            let e = p(&text).unwrap_err().to_string();
            assert!(e.starts_with("cat.toml:4:"), "{bad}: {e}");
            assert!(e.contains("not a plain file name"), "{e}");
        }
    }

    #[test]
    fn malformed_toml_reports_file_line_and_problem() {
        let e = p("[[model]]\nname = \"x\"\nsize = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cat.toml:3:"), "{e}");
        let e = p("[[model]]\nname = \"x\nfile = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cat.toml:2:"), "{e}");
        let e = p(&ENTRY.replace("size = 10", "size = 10\nsizee = 3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sizee"), "{e}");
    }

    #[test]
    fn duplicates_and_bad_checksums_are_refused() {
        let e = p(&format!("{ENTRY}{ENTRY}")).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = p(&ENTRY.replace(&"0".repeat(64), "abc"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cat.toml:7:") && e.contains("not a sha256"),
            "{e}"
        );
    }

    #[test]
    fn memory_need_comes_from_the_header_when_the_file_is_known() {
        let mut m = p(ENTRY).unwrap().remove(0);
        m.size = 2_000_000_000;
        assert_eq!(m.memory_needed(), estimate_memory(m.size));
        let h = crate::gguf::Header {
            version: 3,
            tensor_count: 0,
            metadata: crate::gguf::sample_metadata("phi3", 32, 3072, 32, 32, 4096)
                .into_iter()
                .collect(),
        };
        m.gguf = Some(h.facts());
        // No grouped-query attention: 384 KiB per token, 1.5 GiB for 4096 tokens.
        assert_eq!(
            m.memory_needed(),
            2_000_000_000 + (1536 << 20) + (256 << 20)
        );
        m.memory_bytes = Some(5);
        assert_eq!(m.memory_needed(), 5);
    }

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("0.5B"), Some(500_000_000));
        assert_eq!(parse_count("3.8B"), Some(3_800_000_000));
        assert_eq!(parse_count("15M"), Some(15_000_000));
        assert_eq!(parse_count("big"), None);
    }

    #[test]
    fn the_checked_in_catalog_is_valid_and_sourced() {
        let path = crate::env::repo_root().join(BUILTIN);
        let cat = Catalog::load_files(&[path]).unwrap();
        assert!(cat.models.len() >= 6);
        assert!(cat.models.iter().filter(|m| m.size < 1_000_000_000).count() >= 3);
        for m in &cat.models {
            assert!(
                !m.sources.is_empty(),
                "{}: no source for its checksum",
                m.name
            );
            assert!(
                m.urls.iter().all(|u| u.starts_with("https://")),
                "{}",
                m.name
            );
        }
    }
}
