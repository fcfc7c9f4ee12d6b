//! The Vulkan decision: which device a Vulkan build is for (a real GPU, or a CPU-type device only
//! when forced on), the headers it compiles against, and why not when there is none.

use super::super::overrides::{Overrides, Switch};
use super::super::Decision;
use crate::machine::{Vulkan, VulkanDevice};

/// The device a Vulkan build is for: the first real GPU (discrete, integrated, virtual) the
/// loader lists; a CPU-type device (lavapipe, SwiftShader) only when the override forces Vulkan
/// on. `None`: no device to build for.
pub fn vulkan_target(v: &Vulkan, forced: bool) -> Option<&VulkanDevice> {
    v.physical_devices
        .iter()
        .find(|d| d.device_type.is_gpu())
        .or_else(|| forced.then(|| v.physical_devices.first()).flatten())
}

fn describe_device(d: &VulkanDevice) -> String {
    format!(
        "{} (device {}, type {}{})",
        d.name,
        d.index,
        d.device_type.as_str(),
        d.memory_bytes
            .map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_default()
    )
}

pub fn decide(
    v: &Vulkan,
    o: &Overrides,
    src: &str,
    d: &mut Vec<Decision>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let forced = o.backends.vulkan == Switch::On;
    let glslc = v.glslc.as_deref().unwrap_or("missing");
    // Machine files recorded before device types were probed list names only.
    let legacy_software = v.physical_devices.is_empty()
        && !v.devices.is_empty()
        && v.devices.iter().all(|n| is_software_device(n));
    let target = vulkan_target(v, forced);
    let (fact, reason) = match target {
        Some(dev) if dev.device_type.is_gpu() => (
            format!("vulkaninfo lists {}", describe_device(dev)),
            "GPU through Vulkan (no CUDA/Metal/HIP)".to_string(),
        ),
        Some(dev) => (
            format!("vulkaninfo lists only CPU-type devices; {} forced on by {src}", describe_device(dev)),
            format!("Vulkan on the CPU-type device {} because {src} asks for it: proves the offload path and numerics, not GPU speed; the runtime selects it with GGML_VK_VISIBLE_DEVICES={} (ggml skips CPU-type devices otherwise)", dev.name, dev.index),
        ),
        None if forced => (
            format!("forced on by {src}; no device listed ({})", v.source),
            "Vulkan forced on by the override".to_string(),
        ),
        None if v.physical_devices.is_empty() && !v.devices.is_empty() && !legacy_software => (
            format!("vulkaninfo lists {}", v.devices.join(", ")),
            "GPU through Vulkan (no CUDA/Metal/HIP)".to_string(),
        ),
        None if !v.physical_devices.is_empty() || legacy_software => {
            let cpu: Vec<String> = if v.physical_devices.is_empty() {
                v.devices.iter().map(|n| format!("{n} (software)")).collect()
            } else {
                v.physical_devices.iter().map(describe_device).collect()
            };
            return Err(format!(
                "only CPU-type Vulkan devices: {}; ggml skips them and a Vulkan build would compute on the CPU anyway (set [backends] vulkan = \"on\" in {src} to build for one: it proves the offload path, not speed)",
                cpu.join(", ")
            ));
        }
        None => {
            return Err(format!(
                "loader present ({}) but no Vulkan device listed ({}); `cargo xtask prereqs --vulkan --install` installs vulkaninfo so the probe can ask the loader",
                v.loader, v.source
            ))
        }
    };
    if v.glslc.is_none() {
        warnings.push("no glslc to compile ggml's Vulkan shaders: `cargo xtask prereqs --install` (or setup) installs it".into());
    }
    d.push(Decision::new(
        "GGML_VULKAN",
        "ON",
        "BOOL",
        reason,
        format!("{fact}; loader {}, glslc {glslc}", v.loader),
    ));
    match &v.headers {
        Some(h) if h.sufficient && h.provider != "system" => d.push(Decision::new(
            "Vulkan_INCLUDE_DIR",
            &h.include_dir,
            "PATH",
            format!("Vulkan headers {} (the system's are too old for the pinned tree: it uses VK_EXT_layer_settings)", h.version),
            h.source.clone(),
        )),
        Some(h) if h.sufficient => {}
        Some(h) => warnings.push(format!(
            "Vulkan headers {} ({}) are too old for the pinned llama.cpp (no VK_EXT_layer_settings): `cargo xtask prereqs --install` (or setup) fetches newer ones into the cache",
            h.version, h.include_dir
        )),
        None => warnings.push("no Vulkan headers found: `cargo xtask prereqs --install` installs them".into()),
    }
    Ok(match target {
        Some(dev) => format!("Vulkan: {}", describe_device(dev)),
        None => format!("Vulkan: {}", v.devices.join(", ")),
    })
}

fn is_software_device(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("llvmpipe") || n.contains("swiftshader") || n.contains("lavapipe")
}
