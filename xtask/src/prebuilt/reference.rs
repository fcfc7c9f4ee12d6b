//! The portable reference logits a prebuilt archive carries (`reference-logits.json`): the
//! logits of the verification prompt on the deterministic tiny model, computed by the portable
//! build on the machine that ran `dist` (which can always run it). `setup` compares the
//! installed runtime's own logits with them on the target, so an archive built where it could
//! not run is still verified where it is installed. The model's sha256 travels with them: logits
//! of another test model are refused, never compared.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FILE: &str = "reference-logits.json";
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedReference {
    pub schema: u32,
    /// Which build computed them ("portable build <key>"), on which machine (os arch).
    pub reference: String,
    /// The verification model they were computed on (file name and sha256).
    pub model: String,
    pub model_sha256: String,
    pub logits: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the archive's reference logits are for test model {shipped} ({shipped_sha256}); this tool's verification model is {ours} ({ours_sha256})"
    )]
    OtherModel {
        shipped: String,
        shipped_sha256: String,
        ours: String,
        ours_sha256: String,
    },
}

impl crate::error::Hint for ReferenceError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ReferenceError::Unreadable { .. } => {
                "the archive is damaged or from another tool version: install another prebuilt or build from source (`setup --from-source`)".into()
            }
            ReferenceError::OtherModel { .. } => {
                "the prebuilt was made by a tunellama whose test-model writer differs from this one: use a prebuilt index made by this version, or `setup --from-source`".into()
            }
        })
    }
}

/// Reads `<prefix>/reference-logits.json`; `Ok(None)` when the archive has none.
pub fn read(prefix: &Path) -> Result<Option<ShippedReference>, ReferenceError> {
    let path = prefix.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ReferenceError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    let r: ShippedReference =
        serde_json::from_str(&text).map_err(|e| ReferenceError::Unreadable {
            path: path.display().to_string(),
            reason: format!("not a reference-logits file: {e}"),
        })?;
    if r.schema != SCHEMA || r.logits.is_empty() {
        return Err(ReferenceError::Unreadable {
            path: path.display().to_string(),
            reason: format!(
                "schema {} with {} logits (this tool reads schema {SCHEMA}, non-empty)",
                r.schema,
                r.logits.len()
            ),
        });
    }
    Ok(Some(r))
}

impl ShippedReference {
    /// The logits and their description, if they were computed on the model `ours` (a path)
    /// whose sha256 is `ours_sha256`.
    pub fn for_model(
        &self,
        ours: &Path,
        ours_sha256: &str,
    ) -> Result<(Vec<f32>, String), ReferenceError> {
        if self.model_sha256 != ours_sha256 {
            return Err(ReferenceError::OtherModel {
                shipped: self.model.clone(),
                shipped_sha256: self.model_sha256.clone(),
                ours: ours
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                ours_sha256: ours_sha256.into(),
            });
        }
        Ok((
            self.logits.clone(),
            format!("{} (shipped in the archive)", self.reference),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> ShippedReference {
        ShippedReference {
            schema: SCHEMA,
            reference: "portable build abc on linux x86_64".into(),
            model: "tiny.gguf".into(),
            model_sha256: "aa".repeat(32),
            logits: vec![0.5, -1.0],
        }
    }

    #[test]
    fn logits_of_the_same_model_are_used() {
        let (l, name) = shipped()
            .for_model(Path::new("/x/tiny.gguf"), &"aa".repeat(32))
            .unwrap();
        assert_eq!(l, [0.5, -1.0]);
        assert!(name.contains("portable build abc"), "{name}");
    }

    #[test]
    fn logits_of_another_test_model_are_refused_naming_both() {
        let e = shipped()
            .for_model(Path::new("/x/tiny-new.gguf"), &"bb".repeat(32))
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("tiny.gguf") && msg.contains("tiny-new.gguf"),
            "{msg}"
        );
        assert!(msg.contains(&"bb".repeat(32)), "{msg}");
    }

    #[test]
    fn a_missing_file_is_none_and_a_broken_one_an_error() {
        let t = tempfile::tempdir().unwrap();
        assert!(read(t.path()).unwrap().is_none());
        std::fs::write(t.path().join(FILE), "{").unwrap();
        assert!(read(t.path()).unwrap_err().to_string().contains(FILE));
        let mut empty = shipped();
        empty.logits.clear();
        std::fs::write(t.path().join(FILE), serde_json::to_vec(&empty).unwrap()).unwrap();
        assert!(read(t.path()).is_err());
        std::fs::write(t.path().join(FILE), serde_json::to_vec(&shipped()).unwrap()).unwrap();
        assert_eq!(read(t.path()).unwrap(), Some(shipped()));
    }
}
