//! The contract with `cargo xtask setup`: `prefix/runtime-info.json`, which says where the build
//! came from, what it was compiled for and this machine's tuned runtime defaults. Shared with
//! build.rs (through `#[path]`), so a file the runtime cannot read fails the build, not a run.

use serde::{Deserialize, Deserializer, Serialize};

/// The schema this runtime reads; setup bumps it on incompatible changes.
pub const SCHEMA: u32 = 1;

// No `deny_unknown_fields`: setup may add fields; every field below is required.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub schema: u32,
    pub provenance: Provenance,
    pub compiled_for: CompiledFor,
    pub defaults: Defaults,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub llama_commit: String,
    pub build_number: u64,
    pub tree_digest: String,
    pub pinned: bool,
    pub origin: String,
    pub profile_hash: String,
    pub key: String,
    pub provenance: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompiledFor {
    pub target_arch: String,
    /// Lower-case backend names: cpu, cuda, metal, vulkan, hip.
    pub backends: Vec<String>,
    pub ggml_native: bool,
    /// Spelled as `is_x86_feature_detected!` / `is_aarch64_feature_detected!` spell them.
    pub required_cpu_features: Vec<String>,
    /// The Vulkan device a Vulkan build was made for (absent for other builds).
    #[serde(default)]
    pub vulkan_device: Option<VulkanDevice>,
}

/// The Vulkan physical device the build was planned for, as the loader enumerated it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VulkanDevice {
    /// Index in the loader's enumeration: what `GGML_VK_VISIBLE_DEVICES` takes.
    pub index: u32,
    pub name: String,
    /// discrete, integrated, virtual, cpu.
    pub device_type: String,
    /// Select it with `GGML_VK_VISIBLE_DEVICES` before the backend starts: ggml skips CPU-type
    /// devices unless they are named there, and would silently compute on the CPU.
    pub select: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Defaults {
    pub threads: u32,
    pub threads_why: String,
    /// `"all"`, `"auto"` or a number of layers.
    pub gpu_layers: String,
    pub gpu_layers_why: String,
    pub ctx_size: u32,
    pub ctx_why: String,
    #[serde(deserialize_with = "present")]
    pub ram_bytes: Option<u64>,
    /// `"on"` or `"off"`; absent: llama.cpp's own default (auto). Set by `setup --tune`.
    #[serde(default)]
    pub flash_attn: Option<String>,
    #[serde(default)]
    pub flash_attn_why: Option<String>,
    /// Physical batch (`n_ubatch`); absent: the whole logical batch. Set by `setup --tune`.
    #[serde(default)]
    pub ubatch: Option<u32>,
    #[serde(default)]
    pub ubatch_why: Option<String>,
    /// The measurement behind tuned values (`setup --tune`); absent for a rule-based build.
    #[serde(default)]
    pub tuned: Option<Tuned>,
}

/// Where tuned defaults came from: when, on which base build, and the evidence lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tuned {
    /// `YYYY-MM-DD HH:MM UTC`.
    pub on: String,
    /// The key of the rule-based build that was measured against.
    pub base_key: String,
    /// One line per tuned value, e.g. `threads 1: measured 1.31x tg over 2 (noise 2.0%)`.
    pub evidence: Vec<String>,
}

/// A field that must be present but may be `null` (serde lets a plain `Option` go missing).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

impl RuntimeInfo {
    pub fn parse(text: &str) -> Result<RuntimeInfo, String> {
        let info: RuntimeInfo = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if info.schema != SCHEMA {
            return Err(format!(
                "schema {} but this runtime reads schema {SCHEMA}",
                info.schema
            ));
        }
        Ok(info)
    }
}
