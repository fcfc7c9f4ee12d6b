//! The Machine: facts about a computer (probed here, or declared in a file), each with its source.
//!
//! This is plain data: `probe` produces it, `profile` and every later stage consume it, and
//! `--machine FILE` replays one recorded elsewhere (a CI variant, a GPU box, a Mac).

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Bumped when the JSON shape changes incompatibly.
pub const MACHINE_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub schema: u32,
    /// `probed`: facts read off the machine the build runs on, so `-march=native` is right.
    /// `declared`: a description of some other machine (CI variant), so nothing may be native.
    pub origin: Origin,
    /// A label for declared machines ("linux-x86_64-v3"); the host name is never recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub os: Fact<String>,
    pub arch: Fact<String>,
    pub cpu: Cpu,
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub disk: Option<Disk>,
    #[serde(default)]
    pub compilers: Compilers,
    #[serde(default)]
    pub tools: Tools,
    #[serde(default)]
    pub cuda: Detection<CudaToolkit>,
    #[serde(default)]
    pub nvidia: Detection<NvidiaGpus>,
    #[serde(default)]
    pub vulkan: Detection<Vulkan>,
    #[serde(default)]
    pub metal: Detection<Metal>,
    #[serde(default)]
    pub rocm: Detection<Rocm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Probed,
    Declared,
}

/// One value and where it came from (a file, a command line, an API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact<T> {
    pub value: T,
    pub source: String,
}

impl<T> Fact<T> {
    pub fn new(value: T, source: impl Into<String>) -> Self {
        Fact {
            value,
            source: source.into(),
        }
    }
}

/// The outcome of looking for something. A missing tool is a fact, never an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Detection<T> {
    Found(T),
    /// Looked in these places and found nothing.
    NotFound {
        looked_in: Vec<String>,
    },
    /// The tool exists but did not answer usefully (timeout, crash, unreadable output).
    Failed {
        command: String,
        reason: String,
    },
    /// Does not apply to this platform (Metal on Linux).
    NotApplicable {
        reason: String,
    },
    /// Not stated (declared machines leave out what they do not care about).
    #[default]
    Unknown,
}

impl<T> Detection<T> {
    /// Not stated (the default).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Detection::Unknown)
    }
    pub fn found(&self) -> Option<&T> {
        match self {
            Detection::Found(t) => Some(t),
            _ => None,
        }
    }
    /// One line saying why this is not `Found` (for "why not" explanations).
    pub fn why_absent(&self) -> String {
        match self {
            Detection::Found(_) => "found".into(),
            Detection::NotFound { looked_in } if looked_in.is_empty() => "not found".into(),
            Detection::NotFound { looked_in } => {
                format!("not found (looked in {})", looked_in.join(", "))
            }
            Detection::Failed { command, reason } => format!("`{command}` failed: {reason}"),
            Detection::NotApplicable { reason } => reason.clone(),
            Detection::Unknown => "not stated in the machine description".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Normalised feature names, as Rust's `is_x86_feature_detected!`/`is_aarch64_feature_detected!`
    /// spell them (`sse4.2`, `avx2`, `avx512f`, `avx512vnni`, `avxvnni`, `amx-tile`, `neon`, `i8mm`, ...).
    #[serde(default)]
    pub features: Vec<String>,
    /// x86-64 micro-architecture level 1..=4 (psABI levels); `None` on other architectures.
    #[serde(default)]
    pub x86_64_level: Option<u8>,
    #[serde(default)]
    pub physical_cores: Option<u32>,
    #[serde(default)]
    pub logical_cores: Option<u32>,
    #[serde(default)]
    pub source: String,
}

impl Cpu {
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    pub total_bytes: u64,
    #[serde(default)]
    pub available_bytes: Option<u64>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The directory whose file system was measured (the cache root).
    pub path: String,
    pub free_bytes: u64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Compilers {
    #[serde(default)]
    pub c: Detection<Compiler>,
    #[serde(default)]
    pub cxx: Detection<Compiler>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompilerFamily {
    Gcc,
    Clang,
    AppleClang,
    Msvc,
    Unknown,
}

impl CompilerFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            CompilerFamily::Gcc => "gcc",
            CompilerFamily::Clang => "clang",
            CompilerFamily::AppleClang => "apple-clang",
            CompilerFamily::Msvc => "msvc",
            CompilerFamily::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compiler {
    pub path: String,
    pub family: CompilerFamily,
    pub version: String,
    pub source: String,
    /// x86-64 hosts: the CPU features `-march=native` lets this compiler use here (the
    /// instruction-set macros it predefines beyond `-march=x86-64`, named as the runtime's CPU
    /// check names them; `requirements.rs`). Absent elsewhere, for MSVC, and in older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_cpu_features: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    #[serde(default)]
    pub cmake: Detection<Tool>,
    #[serde(default)]
    pub ninja: Detection<Tool>,
    #[serde(default)]
    pub git: Detection<Tool>,
    /// Emscripten's compiler and node: the WebAssembly variant's toolchain (docs/wasm.md).
    /// Left out of the JSON when not probed, so recorded machines read and write as before.
    #[serde(default, skip_serializing_if = "Detection::is_unknown")]
    pub emcc: Detection<Tool>,
    #[serde(default, skip_serializing_if = "Detection::is_unknown")]
    pub node: Detection<Tool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub path: String,
    pub version: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaToolkit {
    pub nvcc: String,
    /// Release as `major.minor` ("12.4").
    pub version: String,
    pub source: String,
    /// The toolkit root, when CMake would not find it by itself (named by `CUDAToolkit_ROOT`,
    /// `CUDA_PATH`, ... or installed from the Python wheels): the profile passes it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Installed from NVIDIA's Python wheels into the cache (`crate::cuda_wheels`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_wheels: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvidiaGpus {
    pub gpus: Vec<Gpu>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    /// `major.minor` ("8.9").
    pub compute_capability: String,
    pub vram_mib: u64,
    pub driver_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vulkan {
    /// Path of the Vulkan loader library.
    pub loader: String,
    /// Device names reported by `vulkaninfo` (empty when vulkaninfo is absent). Kept beside
    /// `physical_devices` so machine files written before it still read the same.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The physical devices the loader enumerates (`vulkaninfo`), in enumeration order: the
    /// order of `GGML_VK_VISIBLE_DEVICES` indices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub physical_devices: Vec<VulkanDevice>,
    /// `glslc` path: llama.cpp's Vulkan backend compiles its shaders with it.
    #[serde(default)]
    pub glslc: Option<String>,
    /// `SPIRV-HeadersConfig.cmake`, which ggml-vulkan's CMake requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spirv_headers: Option<String>,
    /// The Vulkan headers a build would compile against (`vulkan_core.h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<VulkanHeaders>,
    pub source: String,
}

/// One physical device as the Vulkan loader reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VulkanDevice {
    /// Position in the loader's enumeration (`GPU<n>` in vulkaninfo).
    pub index: u32,
    pub name: String,
    pub device_type: VulkanDeviceType,
    /// Sum of the device-local memory heaps (absent from `vulkaninfo --summary`).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Vulkan API version the driver supports ("1.3.230").
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
}

/// `VkPhysicalDeviceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VulkanDeviceType {
    Discrete,
    Integrated,
    Virtual,
    Cpu,
    Other,
}

impl VulkanDeviceType {
    /// `PHYSICAL_DEVICE_TYPE_DISCRETE_GPU` (vulkaninfo's spelling) → `Discrete`.
    pub fn from_vulkaninfo(s: &str) -> VulkanDeviceType {
        match s.trim().trim_start_matches("PHYSICAL_DEVICE_TYPE_") {
            "DISCRETE_GPU" => VulkanDeviceType::Discrete,
            "INTEGRATED_GPU" => VulkanDeviceType::Integrated,
            "VIRTUAL_GPU" => VulkanDeviceType::Virtual,
            "CPU" => VulkanDeviceType::Cpu,
            _ => VulkanDeviceType::Other,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            VulkanDeviceType::Discrete => "discrete",
            VulkanDeviceType::Integrated => "integrated",
            VulkanDeviceType::Virtual => "virtual",
            VulkanDeviceType::Cpu => "cpu",
            VulkanDeviceType::Other => "other",
        }
    }
    /// A real GPU (discrete, integrated or virtual): what a Vulkan build is for by default.
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            VulkanDeviceType::Discrete | VulkanDeviceType::Integrated | VulkanDeviceType::Virtual
        )
    }
}

/// Vulkan headers: where, which version, and whether they are new enough for the pinned tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VulkanHeaders {
    /// The directory holding `vulkan/vulkan_core.h` (what `-DVulkan_INCLUDE_DIR=` takes).
    pub include_dir: String,
    /// `1.3.239` (`VK_HEADER_VERSION_COMPLETE`).
    pub version: String,
    /// The headers define everything the pinned ggml-vulkan.cpp uses unconditionally
    /// (`VK_EXT_layer_settings`).
    pub sufficient: bool,
    /// `system` (the distribution's package) or `cache` (provided by `prereqs` into the cache).
    pub provider: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metal {
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rocm {
    /// gfx targets of the agents `rocminfo` lists ("gfx1100").
    pub gfx_targets: Vec<String>,
    #[serde(default)]
    pub hip_version: Option<String>,
    pub source: String,
}

impl Machine {
    pub fn gpus(&self) -> &[Gpu] {
        self.nvidia
            .found()
            .map(|n| n.gpus.as_slice())
            .unwrap_or(&[])
    }
    pub fn is_x86_64(&self) -> bool {
        self.arch.value == "x86_64"
    }
    pub fn is_apple(&self) -> bool {
        self.os.value == "macos"
    }

    /// Reads a Machine recorded as JSON (what `probe --json` prints).
    pub fn from_json_file(path: &Path) -> Result<Machine, MachineFileError> {
        let text = fs_err::read_to_string(path).map_err(|e| MachineFileError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    pub fn from_json_str(text: &str, path: &str) -> Result<Machine, MachineFileError> {
        let m: Machine = serde_json::from_str(text).map_err(|e| MachineFileError::Parse {
            path: path.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if m.schema != MACHINE_SCHEMA {
            return Err(MachineFileError::Schema {
                path: path.to_string(),
                found: m.schema,
            });
        }
        Ok(m)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MachineFileError {
    #[error("cannot read machine file")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: not a valid machine description: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path}: machine schema {found} is not supported (this tool reads schema {MACHINE_SCHEMA})"
    )]
    Schema { path: String, found: u32 },
}

impl crate::error::Hint for MachineFileError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            MachineFileError::Read { .. } => "check the path given to --machine".into(),
            _ => "record a valid one with `cargo xtask probe --json > machine.json`, or compare with the examples in tests/fixtures/machines/".into(),
        })
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

/// Where the Machine comes from.
#[derive(Debug, clap::Args, Clone, Default)]
pub struct MachineArg {
    /// Use a recorded Machine (JSON printed by `probe --json`) instead of probing this one
    #[arg(long, value_name = "FILE")]
    pub machine: Option<std::path::PathBuf>,
    /// `wheels`: compile CUDA with the toolkit from NVIDIA's CUDA 13 Python wheels, installed
    /// into the cache on first use (replaces the machine's own toolkit; see docs/cuda.md)
    #[arg(long, value_name = "wheels", value_parser = ["wheels"])]
    pub cuda_toolkit: Option<String>,
}
