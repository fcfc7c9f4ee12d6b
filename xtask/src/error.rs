//! Renders an error chain for people: the failure, its causes, and one `hint:` line saying what to
//! do next. Only the binary calls this; library code returns typed errors with facts in them.
//!
//! Every error type of the crate implements [`Hint`] and is named once in [`hinted!`] below; a
//! test reads the sources and fails when an error type is missing from that list, so no error
//! silently loses its hint.

/// What to do next after this error, when there is something to say.
pub trait Hint: std::error::Error + 'static {
    fn hint(&self) -> Option<String>;
}

/// The hint of `cause` when it is one of `$t` (the only place that downcasts).
macro_rules! hinted {
    ($($t:ty),* $(,)?) => {
        fn hint_of(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
            $(
                if let Some(e) = cause.downcast_ref::<$t>() {
                    return Hint::hint(e);
                }
            )*
            None
        }

        /// The type names in the list, for the completeness test.
        #[cfg(test)]
        const HINTED: &[&str] = &[$(stringify!($t)),*];
    };
}

hinted![
    crate::build::BuildError,
    crate::cache::CacheError,
    crate::ci::matrix::MatrixError,
    crate::ci::workflow::StaleError,
    crate::cmd::CmdError,
    crate::cross::CrossError,
    crate::cuda_wheels::WheelsError,
    crate::dist::DistError,
    crate::download::DownloadError,
    crate::gguf::GgufError,
    crate::gguf_write::GgufWriteError,
    crate::machine::MachineFileError,
    crate::models::ModelsError,
    crate::models::catalog::CatalogError,
    crate::models::recommend::RecommendError,
    crate::prebuilt::PrebuiltError,
    crate::prebuilt::archive::ArchiveError,
    crate::prebuilt::index::IndexError,
    crate::prebuilt::reference::ReferenceError,
    crate::prereq::PrereqError,
    crate::profile::overrides::OverrideError,
    crate::runtime_build::RuntimeBuildError,
    crate::serve::ServeError,
    crate::source::SourceError,
    crate::source::pin::PinError,
    crate::source::digest::DigestError,
    crate::status::NoRuntime,
    crate::testmodel::TestModelError,
    crate::verify::VerifyError,
    crate::verify::emulated::EmulatedError,
    crate::verify::wasm::WasmVerifyError,
    crate::verify::runtime::RuntimeVerifyError,
    crate::vulkan_headers::HeadersError,
];

/// The hint of the first error in the chain that has one.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(hint_of)
}

pub fn render(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    for cause in err.chain().skip(1) {
        out.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(h) = hint(err) {
        out.push_str(&format!("\nhint: {h}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `thiserror` type under src/ (module path + name), read from the sources.
    fn error_types() -> Vec<String> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut stack = vec![src.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let rel = p.strip_prefix(&src).unwrap().with_extension("");
                let mut module: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let mut lines = text.lines();
                while let Some(l) = lines.next() {
                    if !(l.starts_with("#[derive(") && l.contains("thiserror::Error")) {
                        continue;
                    }
                    let decl = lines
                        .by_ref()
                        .find(|l| l.starts_with("pub enum ") || l.starts_with("pub struct "))
                        .unwrap();
                    let name = decl
                        .split_whitespace()
                        .nth(2)
                        .unwrap()
                        .trim_end_matches(['{', '(', ';'])
                        .split(['(', '<'])
                        .next()
                        .unwrap()
                        .to_string();
                    let path = std::iter::once("crate".to_string())
                        .chain(module.iter().cloned())
                        .chain(std::iter::once(name))
                        .collect::<Vec<_>>()
                        .join("::");
                    found.push(path);
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn every_error_type_of_the_crate_is_in_the_hint_list() {
        let types = error_types();
        assert!(types.len() >= 20, "{types:?}");
        let listed: Vec<String> = HINTED.iter().map(|t| t.replace(' ', "")).collect();
        let missing: Vec<&String> = types.iter().filter(|t| !listed.contains(t)).collect();
        assert!(
            missing.is_empty(),
            "error types without a place in error.rs's hinted! list (their hints would be lost): {missing:?}"
        );
    }

    #[test]
    fn a_hint_is_found_below_a_context_layer() {
        let e = anyhow::Error::new(crate::status::NoRuntime("lib-only build".into()))
            .context("running the runtime");
        assert!(
            hint(&e).is_some_and(|h| h.contains("setup")),
            "{:?}",
            hint(&e)
        );
    }
}
