//! Parsers for the other GPU stacks: Vulkan (`vulkaninfo --summary`) and ROCm (`rocminfo`,
//! `hipconfig --version`).

use crate::machine::{VulkanDevice, VulkanDeviceType};

/// Device names from `vulkaninfo --summary` (`deviceName = ...` lines).
pub fn parse_vulkaninfo_devices(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "deviceName").then(|| v.trim().to_string())
        })
        .collect()
}

/// The physical devices of `vulkaninfo` output, full or `--summary`: one per `GPU<n>:` section,
/// with `deviceName`, `deviceType`, `apiVersion`, `driverName`/`driverInfo` and (full output only)
/// the sizes of the memory heaps flagged `MEMORY_HEAP_DEVICE_LOCAL_BIT`.
pub fn parse_vulkaninfo(text: &str) -> Vec<VulkanDevice> {
    let mut out: Vec<VulkanDevice> = Vec::new();
    // The size of the heap being read, until its flags say whether it is device-local.
    let mut heap: Option<u64> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(n) = t
            .strip_prefix("GPU")
            .and_then(|r| r.strip_suffix(':'))
            .and_then(|n| n.parse::<u32>().ok())
        {
            heap = None;
            out.push(VulkanDevice {
                index: n,
                name: String::new(),
                device_type: VulkanDeviceType::Other,
                memory_bytes: None,
                api_version: None,
                driver: None,
            });
            continue;
        }
        let Some(dev) = out.last_mut() else { continue };
        if t.starts_with("memoryHeaps[") {
            heap = None;
        }
        if t == "MEMORY_HEAP_DEVICE_LOCAL_BIT" {
            if let Some(size) = heap.take() {
                *dev.memory_bytes.get_or_insert(0) += size;
            }
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let v = v.trim();
        // `1.3.230 (4206822)` → `1.3.230`; `2147483648 (0x80000000) (2.00 GiB)` → 2147483648.
        let first = v.split_whitespace().next().unwrap_or("");
        match k.trim() {
            "deviceName" => dev.name = v.to_string(),
            "deviceType" => dev.device_type = VulkanDeviceType::from_vulkaninfo(v),
            "apiVersion" => dev.api_version = Some(first.to_string()),
            "driverInfo" if !v.is_empty() && !dev.driver.as_deref().unwrap_or("").contains(v) => {
                dev.driver = Some(match dev.driver.take() {
                    Some(name) => format!("{name} ({v})"),
                    None => v.to_string(),
                })
            }
            "driverName" if dev.driver.is_none() => dev.driver = Some(v.to_string()),
            "size" => heap = first.parse().ok(),
            _ => {}
        }
    }
    out.retain(|d| !d.name.is_empty());
    out
}

/// `vulkan_core.h` → (`1.3.239`, defines `VK_EXT_layer_settings`). The version is
/// `VK_HEADER_VERSION_COMPLETE`'s major.minor with `VK_HEADER_VERSION` as the patch.
pub fn parse_vulkan_core_h(text: &str) -> Option<(String, bool)> {
    let mut patch = None;
    let mut major_minor = None;
    let mut layer_settings = false;
    for l in text.lines() {
        let Some(rest) = l.trim().strip_prefix("#define ") else {
            continue;
        };
        let mut parts = rest.splitn(2, char::is_whitespace);
        let (name, value) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("").trim(),
        );
        match name {
            "VK_HEADER_VERSION" => patch = value.parse::<u32>().ok(),
            "VK_HEADER_VERSION_COMPLETE" => {
                // VK_MAKE_API_VERSION(0, 1, 3, VK_HEADER_VERSION)
                let args = value.split_once('(')?.1.trim_end_matches(')');
                let v: Vec<&str> = args.split(',').map(str::trim).collect();
                if v.len() == 4 {
                    major_minor = Some(format!("{}.{}", v[1], v[2]));
                }
            }
            "VK_EXT_layer_settings" => layer_settings = true,
            _ => {}
        }
    }
    Some((format!("{}.{}", major_minor?, patch?), layer_settings))
}

/// Distinct `gfx*` agent names from `rocminfo`, in order of appearance.
pub fn parse_rocminfo_targets(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        let Some(v) = l.trim().strip_prefix("Name:") else {
            continue;
        };
        let v = v.trim();
        if v.starts_with("gfx") && !out.iter().any(|x| x == v) {
            out.push(v.to_string());
        }
    }
    out
}

/// `6.0.32830-d62f6a171` → `6.0.32830`.
pub fn parse_hipconfig_version(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let v = first.split('-').next()?;
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}
