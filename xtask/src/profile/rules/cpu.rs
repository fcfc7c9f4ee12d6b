//! CPU decisions: `-march=native` for a probed machine, explicit ISA options for a declared
//! x86-64 machine, `GGML_CPU_ARM_ARCH` for a declared arm64 machine.

use super::super::Decision;
use super::on;
use crate::machine::{CompilerFamily, Machine, Origin};

/// ISA options of this llama.cpp, with the declared features that must all be present for ON.
/// With GGML_NATIVE=OFF the first six default to ON (a Haswell-level build), so every one is set
/// explicitly (LLAMA_CPP_FACTS.md, "CMake options").
pub(crate) const X86_ISA: &[(&str, &[&str])] = &[
    ("GGML_SSE42", &["sse4.2"]),
    ("GGML_AVX", &["avx"]),
    ("GGML_AVX2", &["avx2"]),
    ("GGML_BMI2", &["bmi2"]),
    ("GGML_FMA", &["fma"]),
    ("GGML_F16C", &["f16c"]),
    ("GGML_AVX_VNNI", &["avxvnni"]),
    // ggml's GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
    (
        "GGML_AVX512",
        &["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
    ),
    ("GGML_AVX512_VBMI", &["avx512vbmi"]),
    ("GGML_AVX512_VNNI", &["avx512vnni"]),
    ("GGML_AVX512_BF16", &["avx512bf16"]),
    ("GGML_AMX_TILE", &["amx-tile"]),
    ("GGML_AMX_INT8", &["amx-int8"]),
    ("GGML_AMX_BF16", &["amx-bf16"]),
];

/// Declared arm64 features that need an Armv8.2-A base, with the `-march` extension that enables
/// each. They are optional extensions from v8.2 on (Arm ARM, "Armv8.2 extensions"; GCC's
/// "AArch64 Options" accepts them only on an `armv8.2-a` or later base), so a machine declaring
/// none of them gets plain `armv8-a`.
pub(crate) const ARM_V82_EXTENSIONS: &[(&str, &str)] = &[
    ("fp16", "+fp16"),
    ("dotprod", "+dotprod"),
    ("i8mm", "+i8mm"),
    ("sve", "+sve"),
];

/// `GGML_CPU_ARM_ARCH` for a declared arm64 machine, with why and the fact that chose it.
///
/// The base is `armv8-a` (Armv8.0: Cortex-A53/A72, Raspberry Pi 3/4, Graviton1): code built for it
/// runs on every arm64 CPU, so it is the portable reference. `armv8.2-a` is used only when a
/// declared feature needs it (fp16, dotprod, i8mm, sve), and then every such feature is added
/// explicitly: `armv8.2-a` alone implies none of them, and a v8.2 build runs only where they exist
/// (a v8.2+dotprod build dies with SIGILL on a Cortex-A72; LLAMA_CPP_FACTS.md, arm64).
fn arm_arch(m: &Machine) -> (String, String, String) {
    let used: Vec<&str> = ARM_V82_EXTENSIONS
        .iter()
        .filter(|(f, _)| m.cpu.has(f))
        .map(|(f, _)| *f)
        .collect();
    if used.is_empty() {
        let ignored = if m.cpu.features.is_empty() {
            "none".to_string()
        } else {
            m.cpu.features.join(", ")
        };
        return (
            "armv8-a".into(),
            "Armv8.0 base: no declared feature needs more, so the code runs on every arm64 CPU (Cortex-A53/A72 included)".into(),
            format!("cpu.features = [{ignored}]: none of fp16, dotprod, i8mm, sve"),
        );
    }
    let mut arch = String::from("armv8.2-a");
    for (f, ext) in ARM_V82_EXTENSIONS {
        if used.contains(f) {
            arch.push_str(ext);
        }
    }
    (
        arch,
        format!(
            "Armv8.2 base because the declared {} need it; each extension named explicitly (armv8.2-a alone implies none); this build needs a CPU with them and is refused on older ones",
            used.join(", ")
        ),
        format!("cpu.features has {}", used.join(", ")),
    )
}

/// The CPU decisions for `m`, plus hints about what a build for it proves.
pub fn decide(m: &Machine, d: &mut Vec<Decision>, hints: &mut Vec<String>) {
    let declared = m.origin == Origin::Declared;
    if declared {
        d.push(Decision::new(
            "GGML_NATIVE",
            "OFF",
            "BOOL",
            "declared machine: code must run on any CPU with the declared features, not on the build host's",
            format!("machine.origin = declared{}", m.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()),
        ));
        if m.is_x86_64() {
            for (opt, needs) in X86_ISA {
                let have = needs.iter().all(|f| m.cpu.has(f));
                let fact = if have {
                    format!("cpu.features has {}", needs.join(", "))
                } else {
                    let missing: Vec<_> = needs.iter().filter(|f| !m.cpu.has(f)).copied().collect();
                    format!("cpu.features lacks {}", missing.join(", "))
                };
                d.push(Decision::new(
                    opt,
                    &on(have),
                    "BOOL",
                    format!(
                        "explicit ISA level ({} declared)",
                        if have { "feature" } else { "feature not" }
                    ),
                    fact,
                ));
            }
        } else if crate::wasm::is_wasm(m) {
            super::wasm::decide(m, d, hints);
        } else if m.arch.value == "aarch64" {
            let (arch, why, fact) = arm_arch(m);
            hints.push(format!(
                "what is proven for this arm64 build: on arm64 hardware the runtime is built and verified as usual; on an x86-64 Linux host (`cargo xtask cross`, `dist`) it is cross-built and proven at the C level only: logits under `qemu-aarch64 -cpu {}` vs the x86 portable build, and refusal (exit 3) on a CPU lacking a required feature; no Rust runtime (docs/arm64.md)",
                crate::cross::cpu_for(&crate::requirements::arm_extensions(&arch))
                    .map_or("max", |c| c.model)
            ));
            d.push(Decision::new(
                "GGML_CPU_ARM_ARCH",
                &arch,
                "STRING",
                why,
                fact,
            ));
        }
    } else {
        d.push(Decision::new(
            "GGML_NATIVE",
            "ON",
            "BOOL",
            "local build: compile for exactly this CPU (-march=native)",
            format!(
                "machine.origin = probed; cpu {} with {}",
                m.cpu.model.as_deref().unwrap_or("?"),
                m.cpu
                    .x86_64_level
                    .map(|l| format!("x86-64-v{l}"))
                    .unwrap_or_else(|| m.cpu.features.join(" "))
            ),
        ));
        let gcc = matches!(m.compilers.c.found(), Some(c) if c.family == CompilerFamily::Gcc);
        if m.is_x86_64() && gcc {
            for var in ["CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"] {
                d.push(Decision::new(
                    var,
                    "-mtune=generic",
                    "STRING",
                    "keep -march=native's instructions but generic scheduling: +4-7% prompt speed measured with gcc 12 (LLAMA_CPP_FACTS.md)",
                    "compilers.c.family = gcc on x86_64",
                ));
            }
        }
    }
}

#[cfg(test)]
mod arm_tests {
    use super::*;

    fn arm(features: &[&str]) -> String {
        let mut m: Machine = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/machines/declared-linux-arm64-armv8.json"
        ))
        .unwrap();
        m.cpu.features = features.iter().map(|f| f.to_string()).collect();
        arm_arch(&m).0
    }

    #[test]
    fn arm64_base_is_armv8_0_unless_a_declared_feature_needs_armv8_2() {
        assert_eq!(arm(&[]), "armv8-a");
        // NEON (AdvSIMD) is part of every Armv8.0-A core: no reason for v8.2.
        assert_eq!(arm(&["neon"]), "armv8-a");
        assert_eq!(arm(&["neon", "dotprod"]), "armv8.2-a+dotprod");
        assert_eq!(arm(&["fp16"]), "armv8.2-a+fp16");
        assert_eq!(
            arm(&["sve", "i8mm", "dotprod", "fp16"]),
            "armv8.2-a+fp16+dotprod+i8mm+sve"
        );
    }

    #[test]
    fn the_portable_arm64_reference_is_armv8_0() {
        let m: Machine = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/machines/declared-linux-arm64-v82-dotprod.json"
        ))
        .unwrap();
        let p = crate::artifact::portable_machine(&m);
        assert_eq!(arm_arch(&p).0, "armv8-a");
        assert_eq!(arm_arch(&m).0, "armv8.2-a+dotprod");
    }
}
