//! Renders an error chain for people: the failure, its causes, and one `hint:` line saying what to
//! do next. Only the binary calls this; library code returns typed errors with facts in them.

use crate::cmd::CmdError;
use crate::download::DownloadError;
use crate::gguf::GgufError;
use crate::machine::MachineFileError;
use crate::models::catalog::CatalogError;
use crate::models::recommend::RecommendError;
use crate::models::ModelsError;
use crate::source::pin::PinError;
use crate::source::SourceError;

/// The hint of the first error in the chain that has one.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CmdError>() {
            if let Some(h) = e.hint() {
                return Some(h.to_string());
            }
        }
        if let Some(e) = cause.downcast_ref::<crate::profile::overrides::OverrideError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::prereq::PrereqError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::build::BuildError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::verify::VerifyError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::cross::CrossError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::verify::emulated::EmulatedError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::cache::CacheError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<MachineFileError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            return e.hint();
        }
        if let Some(e) = cause.downcast_ref::<PinError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<ModelsError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<DownloadError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<CatalogError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<RecommendError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::dist::DistError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::status::NoRuntime>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::runtime_build::RuntimeBuildError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::verify::runtime::RuntimeVerifyError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<GgufError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::testmodel::TestModelError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::gguf_write::GgufWriteError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::ci::matrix::MatrixError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::ci::workflow::StaleError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::prebuilt::index::IndexError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::prebuilt::reference::ReferenceError>() {
            return Some(e.hint());
        }
        if let Some(e) = cause.downcast_ref::<crate::prebuilt::PrebuiltError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
        if let Some(e) = cause.downcast_ref::<crate::prebuilt::archive::ArchiveError>() {
            if let Some(h) = e.hint() {
                return Some(h);
            }
        }
    }
    None
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
