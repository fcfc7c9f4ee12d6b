//! Does a build's `llama_print_system_info` match what its profile asked for? The CPU features
//! the profile requires must be compiled in, and the x86 ones it does not require must not be
//! (a portable build that reports AVX2 was not built portable).

use serde::{Deserialize, Serialize};

/// Required CPU feature (our spelling) → the name `llama_print_system_info` prints when compiled in
/// (ggml-cpu.cpp, `ggml_backend_cpu_get_features`).
const SYSTEM_INFO_NAMES: &[(&str, &str)] = &[
    ("avx", "AVX"),
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("f16c", "F16C"),
    ("bmi2", "BMI2"),
    ("avxvnni", "AVX_VNNI"),
    ("avx512f", "AVX512"),
    ("avx512vbmi", "AVX512_VBMI"),
    ("avx512vnni", "AVX512_VNNI"),
    ("avx512bf16", "AVX512_BF16"),
    ("amx-int8", "AMX_INT8"),
    ("dotprod", "DOTPROD"),
    ("i8mm", "MATMUL_INT8"),
    ("sve", "SVE"),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCheck {
    /// The name in `llama_print_system_info`.
    pub name: String,
    pub expected: bool,
    pub compiled: bool,
}

impl FeatureCheck {
    pub fn ok(&self) -> bool {
        self.expected == self.compiled
    }
}

/// `NAME = 1` entries of a system-info string.
pub fn enabled(system_info: &str) -> Vec<String> {
    system_info
        .split('|')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim().rsplit(':').next()?.trim();
            (v.trim() == "1").then(|| k.to_string())
        })
        .collect()
}

/// One check per feature this architecture's system info can report.
pub fn check(arch: &str, required: &[String], system_info: &str) -> Vec<FeatureCheck> {
    let on = enabled(system_info);
    let arm = arch == "aarch64" || arch == "arm64";
    SYSTEM_INFO_NAMES
        .iter()
        .filter(|(ours, _)| arm == matches!(*ours, "dotprod" | "i8mm" | "sve"))
        .map(|(ours, name)| FeatureCheck {
            name: name.to_string(),
            expected: required.iter().any(|r| r == ours),
            compiled: on.iter().any(|e| e == name),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |";

    fn req(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_native_build_matches_a_profile_requiring_avx512() {
        let r = req(&[
            "avx",
            "avx2",
            "avxvnni",
            "avx512f",
            "avx512vbmi",
            "avx512vnni",
            "avx512bf16",
            "fma",
            "f16c",
            "bmi2",
            "sse4.2",
        ]);
        let c = check("x86_64", &r, NATIVE);
        assert!(c.iter().all(FeatureCheck::ok), "{c:?}");
        assert!(c.iter().any(|f| f.name == "AVX512" && f.compiled));
    }

    #[test]
    fn a_portable_profile_rejects_a_build_with_avx2_compiled_in() {
        let c = check("x86_64", &[], NATIVE);
        let bad: Vec<_> = c
            .iter()
            .filter(|f| !f.ok())
            .map(|f| f.name.as_str())
            .collect();
        assert!(bad.contains(&"AVX2") && bad.contains(&"AVX512"), "{bad:?}");
    }

    #[test]
    fn a_missing_required_feature_is_reported() {
        let c = check("x86_64", &req(&["avx512f"]), "CPU : SSE3 = 1 | AVX2 = 1 |");
        let f = c.iter().find(|f| f.name == "AVX512").unwrap();
        assert!(f.expected && !f.compiled && !f.ok());
    }
}
