//! User overrides from a gitignored `profiles/local.toml`: force a backend on or off, pin CUDA
//! architectures, add CMake defines, change runtime defaults. Unknown keys are errors.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Obsolete option names and what replaced them; using one is an error, never passed through.
const OBSOLETE: &[(&str, &str)] = &[
    ("LLAMA_CUBLAS", "GGML_CUDA"),
    ("LLAMA_CUDA", "GGML_CUDA"),
    ("LLAMA_METAL", "GGML_METAL"),
    ("LLAMA_METAL_EMBED_LIBRARY", "GGML_METAL_EMBED_LIBRARY"),
    ("LLAMA_NATIVE", "GGML_NATIVE"),
    ("LLAMA_RPC", "GGML_RPC"),
    ("LLAMA_SYCL", "GGML_SYCL"),
    ("LLAMA_VULKAN", "GGML_VULKAN"),
    ("LLAMA_HIPBLAS", "GGML_HIP"),
    ("GGML_HIPBLAS", "GGML_HIP"),
    ("LLAMA_AVX", "GGML_AVX"),
    ("LLAMA_AVX2", "GGML_AVX2"),
    ("LLAMA_AVX512", "GGML_AVX512"),
    ("LLAMA_FMA", "GGML_FMA"),
    ("LLAMA_F16C", "GGML_F16C"),
    (
        "LLAMA_CURL",
        "(nothing: HTTP support is LLAMA_OPENSSL in this llama.cpp)",
    ),
    ("GGML_CUDA_F16", "(nothing: removed from this llama.cpp)"),
    ("GGML_CUDA_FA_ALL_QUANTS", "GGML_CUDA_FA_QUANTS"),
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub backends: Backends,
    #[serde(default)]
    pub cuda: CudaOverrides,
    /// Extra CMake cache entries (`NAME = "VALUE"` or `NAME = true|false`).
    #[serde(default)]
    pub defines: BTreeMap<String, DefineValue>,
    #[serde(default)]
    pub runtime: RuntimeOverrides,
    /// Where these came from (not part of the file).
    #[serde(skip)]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backends {
    #[serde(default)]
    pub cuda: Switch,
    #[serde(default)]
    pub metal: Switch,
    #[serde(default)]
    pub hip: Switch,
    #[serde(default)]
    pub vulkan: Switch,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaOverrides {
    /// Replaces the architectures derived from the GPUs (`["86", "89"]`).
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DefineValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl DefineValue {
    pub fn cmake(&self) -> (String, &'static str) {
        match self {
            DefineValue::Bool(b) => ((if *b { "ON" } else { "OFF" }).into(), "BOOL"),
            DefineValue::Int(i) => (i.to_string(), "STRING"),
            DefineValue::Text(s) if matches!(s.as_str(), "ON" | "OFF") => (s.clone(), "BOOL"),
            DefineValue::Text(s) => (s.clone(), "STRING"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeOverrides {
    #[serde(default)]
    pub threads: Option<u32>,
    #[serde(default)]
    pub ctx_size: Option<u32>,
    #[serde(default)]
    pub gpu_layers: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: define `{name}` is obsolete; the current name is {replacement}")]
    Obsolete {
        path: String,
        name: String,
        replacement: String,
    },
    #[error(
        "{path}: define `{name}` is not a CMake variable name (expected letters, digits and `_`)"
    )]
    BadName { path: String, name: String },
}

impl crate::error::Hint for OverrideError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            OverrideError::Read { .. } => "check the file's permissions, or remove it".into(),
            _ => "the override file knows [backends] cuda/metal/hip/vulkan = \"on\"|\"off\"|\"auto\", [cuda] architectures = [\"89\"], [defines] NAME = \"VALUE\", [runtime] threads/ctx_size/gpu_layers; see the Profiles section of README.md".into(),
        })
    }
}

use crate::hashing::line_col;

impl Overrides {
    /// Loads the file if it exists; a missing file means no overrides.
    pub fn load(path: &Path) -> Result<Overrides, OverrideError> {
        if !path.exists() {
            return Ok(Overrides::default());
        }
        let text = fs_err::read_to_string(path).map_err(|e| OverrideError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Overrides, OverrideError> {
        let mut o: Overrides = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            OverrideError::Parse {
                path: path.to_string(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        for name in o.defines.keys() {
            if let Some((_, new)) = OBSOLETE.iter().find(|(old, _)| old == name) {
                return Err(OverrideError::Obsolete {
                    path: path.into(),
                    name: name.clone(),
                    replacement: new.to_string(),
                });
            }
            let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(OverrideError::BadName {
                    path: path.into(),
                    name: name.clone(),
                });
            }
        }
        o.origin = Some(path.to_string());
        Ok(o)
    }

    pub fn is_empty(&self) -> bool {
        Overrides {
            origin: None,
            ..self.clone()
        } == Overrides::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let text = "[backends]\ncuda = \"on\"\nrocm = \"off\"\n";
        let e = Overrides::parse(text, "local.toml").unwrap_err();
        match e {
            OverrideError::Parse {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((line, column), (3, 1));
                assert!(message.contains("unknown field `rocm`"), "{message}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn obsolete_define_names_its_replacement() {
        let e = Overrides::parse("[defines]\nLLAMA_CUBLAS = true\n", "l.toml").unwrap_err();
        assert!(e.to_string().contains("GGML_CUDA"), "{e}");
    }

    #[test]
    fn bool_and_text_defines_map_to_cmake_types() {
        let o = Overrides::parse(
            "[defines]\nGGML_LTO = true\nGGML_CUDA_COMPRESSION_MODE = \"size\"\n",
            "l",
        )
        .unwrap();
        assert_eq!(o.defines["GGML_LTO"].cmake(), ("ON".into(), "BOOL"));
        assert_eq!(
            o.defines["GGML_CUDA_COMPRESSION_MODE"].cmake(),
            ("size".into(), "STRING")
        );
    }
}
