//! Fetching a catalog model into the store: one lock per blob, sources tried in order through
//! the generic `download` path, never another source after an integrity failure.

use super::catalog::Model;
use super::store::{Store, Stored};
use super::ModelsError;
use crate::download::{self, Bearer, DownloadError, Expected, Secret};
use crate::progress::Progress;
use std::path::PathBuf;

/// The host `HF_TOKEN` is sent to (compared exactly, on every redirect hop).
pub const HF_HOST: &str = "huggingface.co";

#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    pub download: download::Options,
    /// Use only what is stored; never touch the network.
    pub offline: bool,
}

impl FetchOptions {
    /// Defaults plus, from the environment, `HF_TOKEN` (for huggingface.co only) and proxies.
    pub fn from_env() -> FetchOptions {
        let mut o = FetchOptions::default();
        o.download.proxies = download::Proxies::from_env();
        o.download.bearer = crate::env::hf_token().map(|t| Bearer {
            host: HF_HOST.into(),
            token: Secret::new(t),
        });
        o
    }
}

/// The result of a fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The friendly path (a link to the verified blob).
    pub path: PathBuf,
    /// False when the model was already stored (possibly by a concurrent fetch).
    pub downloaded: bool,
    pub outcome: Option<download::Outcome>,
}

/// Makes sure the model's verified file is in the store and returns its friendly path.
pub fn fetch(
    store: &Store,
    m: &Model,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<Fetched, ModelsError> {
    store.init().map_err(ModelsError::Io)?;
    if store.status(m) == Stored::Present {
        return done(store, m, None);
    }
    if opts.offline {
        return Err(ModelsError::Offline {
            name: m.name.clone(),
        });
    }
    let _lock = store
        .lock(&m.sha256, |path| {
            progress.note(&format!(
                "{}: another fetch is running; waiting for it (lock {})",
                m.name,
                path.display()
            ))
        })
        .map_err(ModelsError::Io)?;
    // The lock is released when `_lock` is dropped, on every path out.
    if store.status(m) == Stored::Present {
        return done(store, m, None);
    }
    let blob = store.blob(&m.sha256);
    let expected = Expected {
        size: m.size,
        sha256: m.sha256.clone(),
    };
    let dl = download::Options {
        label: Some(m.name.clone()),
        ..opts.download.clone()
    };
    let mut last: Option<DownloadError> = None;
    for url in &m.urls {
        match download::download(url, &expected, &blob, &dl, progress) {
            Ok(o) => return done(store, m, Some(o)),
            // Wrong bytes are a fact about the model, not the mirror: stop here.
            Err(e) if e.is_integrity() => return Err(e.into()),
            Err(e) => {
                if m.urls.len() > 1 {
                    progress.note(&format!("{}: {e}", m.name));
                }
                last = Some(e);
            }
        }
    }
    Err(last.expect("a catalog model has at least one URL").into())
}

fn done(
    store: &Store,
    m: &Model,
    outcome: Option<download::Outcome>,
) -> Result<Fetched, ModelsError> {
    let path = store.link(m).map_err(ModelsError::Io)?;
    Ok(Fetched {
        path,
        downloaded: outcome.is_some(),
        outcome,
    })
}
