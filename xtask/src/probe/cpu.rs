//! CPU facts: vendor, model, the ISA features llama.cpp cares about, and the x86-64 level.
//!
//! On Linux the kernel's `/proc/cpuinfo` is the source (it already hides features the OS does not
//! enable); elsewhere Rust's runtime feature detection is asked. Parsing is pure and tested on
//! recorded files in `tests/fixtures/cpuinfo/`.

use std::collections::BTreeSet;

/// What a cpuinfo file says, before it becomes part of a Machine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuInfo {
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// Raw kernel flag names (x86 `flags`, arm64 `Features`).
    pub raw_flags: BTreeSet<String>,
    pub logical_cores: u32,
    /// Distinct (physical id, core id) pairs; `None` when the file does not say.
    pub physical_cores: Option<u32>,
}

/// Kernel flag name → normalised name (as `is_x86_feature_detected!` spells it), x86.
const X86_FEATURES: &[(&str, &str)] = &[
    ("sse4_2", "sse4.2"),
    ("avx", "avx"),
    ("avx2", "avx2"),
    ("fma", "fma"),
    ("f16c", "f16c"),
    ("bmi2", "bmi2"),
    ("avx512f", "avx512f"),
    ("avx512bw", "avx512bw"),
    ("avx512vl", "avx512vl"),
    ("avx512dq", "avx512dq"),
    ("avx512cd", "avx512cd"),
    ("avx512_vnni", "avx512vnni"),
    ("avx512_bf16", "avx512bf16"),
    ("avx512vbmi", "avx512vbmi"),
    ("avx_vnni", "avxvnni"),
    ("amx_tile", "amx-tile"),
    ("amx_int8", "amx-int8"),
    ("amx_bf16", "amx-bf16"),
];

/// Kernel `Features` name → normalised name, arm64.
const ARM_FEATURES: &[(&str, &str)] = &[
    ("asimd", "neon"),
    ("asimddp", "dotprod"),
    ("i8mm", "i8mm"),
    ("sve", "sve"),
    ("sve2", "sve2"),
    ("sme", "sme"),
];

/// x86-64 psABI micro-architecture levels: each level's kernel flags (on top of the previous level).
/// Source: the x86-64 psABI, "Micro-Architecture Levels" (v2: 2008-era, v3: Haswell, v4: AVX-512).
const X86_LEVELS: &[(u8, &[&str])] = &[
    (
        2,
        &[
            "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
        ],
    ),
    (
        3,
        &[
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ],
    ),
    (
        4,
        &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"],
    ),
];

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut cores: BTreeSet<(String, String)> = BTreeSet::new();
    let mut phys_id = String::new();
    let mut saw_core_ids = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        match key {
            // arm64 kernels print a summary "Processor : ..." line; only numbered entries count.
            "processor" if value.parse::<u32>().is_ok() => info.logical_cores += 1,
            "vendor_id" if info.vendor.is_none() => info.vendor = Some(value.to_string()),
            "CPU implementer" if info.vendor.is_none() => {
                info.vendor = Some(arm_implementer(value).to_string())
            }
            "model name" | "Model" | "Hardware" if info.model.is_none() => {
                info.model = Some(value.to_string())
            }
            "physical id" => phys_id = value.to_string(),
            "core id" => {
                saw_core_ids = true;
                cores.insert((phys_id.clone(), value.to_string()));
            }
            "flags" | "Features" if info.raw_flags.is_empty() => {
                info.raw_flags = value.split_whitespace().map(str::to_string).collect();
            }
            _ => {}
        }
    }
    if saw_core_ids {
        info.physical_cores = Some(cores.len() as u32);
    }
    info
}

fn arm_implementer(code: &str) -> &'static str {
    match code {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x51" => "Qualcomm",
        "0x61" => "Apple",
        "0xc0" => "Ampere",
        _ => "unknown",
    }
}

/// Normalised features present in `raw` for `arch`.
pub fn features(arch: &str, raw: &BTreeSet<String>) -> Vec<String> {
    let table = match arch {
        "x86_64" => X86_FEATURES,
        "aarch64" => ARM_FEATURES,
        _ => &[],
    };
    table
        .iter()
        .filter(|(k, _)| raw.contains(*k))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// The highest x86-64 level whose flags are all present (1 is the baseline every x86-64 has).
pub fn x86_64_level(raw: &BTreeSet<String>) -> u8 {
    let mut level = 1;
    for (l, flags) in X86_LEVELS {
        if flags.iter().all(|f| raw.contains(*f)) {
            level = *l;
        } else {
            break;
        }
    }
    level
}

/// Features from Rust's runtime detection, for platforms without `/proc/cpuinfo`.
pub fn detected_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut out: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) { out.push($f.to_string()); }
            )*};
        }
        check!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512cd",
            "avx512vnni",
            "avx512bf16",
            "avx512vbmi",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$(
                if std::arch::is_aarch64_feature_detected!($f) { out.push($f.to_string()); }
            )*};
        }
        check!("neon", "dotprod", "i8mm", "sve", "sve2");
    }
    out
}

/// The level implied by normalised features alone (used where no raw flags exist).
pub fn level_from_features(features: &[String]) -> u8 {
    let has = |f: &str| features.iter().any(|x| x == f);
    if ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]
        .iter()
        .all(|f| has(f))
        && has("avx2")
    {
        4
    } else if ["avx", "avx2", "bmi2", "f16c", "fma"]
        .iter()
        .all(|f| has(f))
    {
        3
    } else if has("sse4.2") {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &str) -> BTreeSet<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn level_stops_at_first_missing_level() {
        // v3 flags present but one v2 flag (popcnt) missing: still v1.
        let raw = flags(
            "cx16 lahf_lm pni sse4_1 sse4_2 ssse3 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave",
        );
        assert_eq!(x86_64_level(&raw), 1);
        let raw = flags("cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3 avx");
        assert_eq!(x86_64_level(&raw), 2);
    }

    #[test]
    fn arm_summary_processor_line_is_not_a_core() {
        let text = "Processor\t: AArch64 Processor rev 1\nprocessor\t: 0\nFeatures\t: fp asimd asimddp\nprocessor\t: 1\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.logical_cores, 2);
        assert_eq!(
            features("aarch64", &info.raw_flags),
            vec!["neon", "dotprod"]
        );
    }
}
