//! What a build demands of the machine that runs it: the CPU features its code may use.
//!
//! A probed machine builds with `GGML_NATIVE=ON` (`-march=native`), so the compiler may use every
//! feature it enabled for the build host: on x86-64 exactly the instruction-set macros that
//! `cc -march=native -dM -E -` predefines beyond `-march=x86-64` (recorded by the probe as
//! `compilers.c/cxx.native_cpu_features`), mapped to names by the runtime's own table
//! (`runtime/src/cpu_table.rs`, shared as source), so the runtime's pre-main check knows every name
//! it can be asked for. A macro the table lacks becomes a name the runtime does not know, and the
//! runtime refuses to start (exit 3) instead of letting it pass. A declared machine builds with
//! explicit ISA options, so exactly the features behind the options set to ON. The runtime
//! refuses to start when one is missing (instead of dying with SIGILL), and prebuilt selection
//! rejects machines that lack one.

use crate::machine::{Machine, Origin};
use crate::profile::Profile;

#[path = "../../runtime/src/cpu_table.rs"]
pub mod cpu_table;

/// CPU features (as `runtime/src/cpu_table.rs` / `is_aarch64_feature_detected!` spell them) that
/// code built from `profile` for `machine` may execute. Sorted, without duplicates.
pub fn required_cpu_features(machine: &Machine, profile: &Profile) -> Vec<String> {
    let native = match profile.decisions.iter().find(|d| d.name == "GGML_NATIVE") {
        Some(d) => d.value.eq_ignore_ascii_case("ON"),
        None => machine.origin == Origin::Probed,
    };
    let mut out: Vec<String> = if native {
        // -march=native: what the compilers enabled (C and C++ objects both end up in the
        // binary); a recording made before the probe asked them: what the host has.
        let asked: Vec<&Vec<String>> = [&machine.compilers.c, &machine.compilers.cxx]
            .into_iter()
            .filter_map(|c| c.found()?.native_cpu_features.as_ref())
            .collect();
        if asked.is_empty() {
            machine.cpu.features.clone()
        } else {
            asked.into_iter().flatten().cloned().collect()
        }
    } else if machine.is_x86_64() {
        crate::profile::rules::X86_ISA
            .iter()
            .filter(|(opt, _)| option_on(profile, opt))
            .flat_map(|(_, needs)| needs.iter().map(|f| f.to_string()))
            .collect()
    } else if crate::wasm::is_wasm(machine) {
        // ggml compiles every Emscripten build with -msimd128 (profile/rules/wasm.rs).
        vec!["simd128".into()]
    } else {
        // arm64: the extensions named in GGML_CPU_ARM_ARCH ("armv8.2-a+fp16+dotprod").
        profile
            .decisions
            .iter()
            .find(|d| d.name == "GGML_CPU_ARM_ARCH")
            .map(|d| arm_extensions(&d.value))
            .unwrap_or_default()
    };
    out.sort();
    out.dedup();
    out
}

/// Whether `host` has the CPU feature `name` as a build requires it: on the running x86-64 machine
/// the runtime's own table decides (CPUID, as its pre-main check does: a native build requires
/// every feature the compiler enabled, most of which the probe's short list does not name);
/// otherwise the machine's recorded features.
pub fn host_has(host: &Machine, name: &str) -> bool {
    if host.cpu.has(name) {
        return true;
    }
    let running_here = host.origin == Origin::Probed && host.arch.value == std::env::consts::ARCH;
    #[cfg(target_arch = "x86_64")]
    if running_here {
        return cpu_table::x86_detect(name) == Some(true);
    }
    let _ = running_here;
    false
}

/// The x86 features a compiler enables with `-march=native`: every instruction-set macro (a
/// `__NAME__` defined to 1, with an upper-case letter; lower-case ones name CPUs for tuning) in
/// `native` but not in `baseline` (the same compiler's `-march=x86-64` output), as the runtime's
/// table names it. A macro the table does not know becomes its own lower-cased name (`__AVX10_1__`
/// → `avx10_1`), which the runtime refuses as unknown. Sorted, without duplicates.
pub fn native_x86_features(baseline: &str, native: &str) -> Vec<String> {
    let macros = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "#define").then_some(())?;
                let (name, value) = (w.next()?, w.next()?);
                (value == "1"
                    && w.next().is_none()
                    && name.len() > 4
                    && name.starts_with("__")
                    && name.ends_with("__")
                    && name.bytes().any(|b| b.is_ascii_uppercase()))
                .then(|| name.to_string())
            })
            .collect()
    };
    let base = macros(baseline);
    let mut out: Vec<String> = macros(native)
        .into_iter()
        .filter(|m| !base.contains(m) && !cpu_table::NON_FEATURE_MACROS.contains(&m.as_str()))
        .map(|m| match cpu_table::x86_feature_for_macro(&m) {
            Some(f) => f.name.to_string(),
            None => m.trim_matches('_').to_ascii_lowercase(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The extensions of a `GGML_CPU_ARM_ARCH` value: `armv8.2-a+fp16+dotprod` → fp16, dotprod.
pub fn arm_extensions(arch: &str) -> Vec<String> {
    arch.split('+').skip(1).map(str::to_string).collect()
}

fn option_on(profile: &Profile, name: &str) -> bool {
    profile
        .decisions
        .iter()
        .any(|d| d.name == name && d.value.eq_ignore_ascii_case("ON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(file: &str) -> Machine {
        let path = format!(
            "{}/../tests/fixtures/machines/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_machine_has_what_cpuid_reports_even_when_the_probe_list_omits_it() {
        // A native build requires every feature the compiler enabled (`sse3`, `popcnt`, ...);
        // the probe lists only the ones profiles decide on, so the host check asks CPUID.
        let f = cpu_table::X86_FEATURES
            .iter()
            .map(|f| f.name)
            .find(|f| cpu_table::x86_detect(f) == Some(true))
            .expect("this x86-64 CPU reports some feature of the table");
        let mut host = machine("avx2-desktop-haswell.json");
        host.cpu.features.clear();
        host.arch.value = "x86_64".into();
        host.origin = Origin::Probed;
        assert!(host_has(&host, f), "{f}");
        assert!(!host_has(&host, "no-such-feature"));
        // A recorded machine has only what it recorded.
        host.origin = Origin::Declared;
        assert!(!host_has(&host, f), "{f}");
        host.cpu.features.push(f.to_string());
        assert!(host_has(&host, f));
    }

    fn required(file: &str) -> Vec<String> {
        let m = machine(file);
        let p = crate::profile::plan(&m, &Default::default());
        required_cpu_features(&m, &p)
    }

    #[test]
    fn declared_v3_requires_exactly_the_avx2_level_features() {
        let r = required("declared-linux-x86_64-v3.json");
        assert_eq!(r, ["avx", "avx2", "bmi2", "f16c", "fma", "sse4.2"]);
    }

    #[test]
    fn probed_machine_requires_every_feature_it_has() {
        let m = machine("this-machine-epyc-avx512.json");
        let r = required("this-machine-epyc-avx512.json");
        assert!(r.contains(&"avx512f".to_string()), "{r:?}");
        assert_eq!(r.len(), m.cpu.features.len());
    }

    fn recorded(name: &str) -> String {
        let p = format!(
            "{}/../tests/fixtures/recorded/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn native_macros_of_a_recorded_gcc_map_to_names_the_runtime_knows() {
        let r = native_x86_features(
            &recorded("gcc-12.2-dM-march-x86-64.txt"),
            &recorded("gcc-12.2-dM-march-native-znver3-avx512.txt"),
        );
        for want in [
            "avx2",
            "avx512f",
            "avx512bitalg",
            "avx512vpopcntdq",
            "avx512vp2intersect",
            "gfni",
            "vaes",
            "vpclmulqdq",
            "movbe",
            "sse4.2",
            "lzcnt",
            "shstk",
            "clzero",
        ] {
            assert!(r.contains(&want.to_string()), "{want} missing from {r:?}");
        }
        // The -march=x86-64 baseline is not a requirement; CPU names (__znver3__) are no features.
        assert!(
            !r.iter().any(|f| f == "sse2" || f.contains("znver")),
            "{r:?}"
        );
        let unknown: Vec<_> = r
            .iter()
            .filter(|f| cpu_table::x86_feature(f).is_none())
            .collect();
        assert!(
            unknown.is_empty(),
            "not in runtime/src/cpu_table.rs: {unknown:?}"
        );
    }

    #[test]
    fn a_native_macro_the_table_lacks_becomes_a_name_the_runtime_refuses() {
        let base = "#define __SSE2__ 1\n";
        let native = "#define __SSE2__ 1\n#define __AVX2__ 1\n#define __AVX10_1__ 1\n#define __znver9__ 1\n#define __BIGGEST_ALIGNMENT__ 64\n";
        let r = native_x86_features(base, native);
        assert_eq!(r, ["avx10_1", "avx2"]);
        assert!(cpu_table::x86_feature("avx10_1").is_none());
    }

    #[test]
    fn the_cpu_table_has_unique_names_and_macros() {
        let mut names = std::collections::BTreeSet::new();
        let mut macros = std::collections::BTreeSet::new();
        for f in cpu_table::X86_FEATURES {
            assert!(names.insert(f.name), "{} twice", f.name);
            for m in f.macros {
                assert!(macros.insert(*m), "{m} twice");
            }
        }
        // Every name a declared build can require is in the table.
        for (_, needs) in crate::profile::rules::X86_ISA {
            for n in *needs {
                assert!(cpu_table::x86_feature(n).is_some(), "{n}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_cpu_table_agrees_with_std_detection_for_names_std_knows() {
        macro_rules! same {
            ($($f:tt),*) => {$(
                assert_eq!(cpu_table::x86_detect($f), Some(std::arch::is_x86_feature_detected!($f)), $f);
            )*};
        }
        same!(
            "mmx",
            "fxsr",
            "sse",
            "sse2",
            "sse3",
            "pclmulqdq",
            "ssse3",
            "fma",
            "cmpxchg16b",
            "sse4.1",
            "sse4.2",
            "movbe",
            "popcnt",
            "aes",
            "xsave",
            "avx",
            "f16c",
            "rdrand",
            "bmi1",
            "avx2",
            "bmi2",
            "rtm",
            "avx512f",
            "avx512dq",
            "rdseed",
            "adx",
            "avx512ifma",
            "avx512cd",
            "sha",
            "avx512bw",
            "avx512vl",
            "avx512vbmi",
            "avx512vbmi2",
            "gfni",
            "vaes",
            "vpclmulqdq",
            "avx512vnni",
            "avx512bitalg",
            "avx512vpopcntdq",
            "avx512vp2intersect",
            "avx512fp16",
            "avxvnni",
            "avx512bf16",
            "xsaveopt",
            "xsavec",
            "xsaves",
            "lzcnt",
            "sse4a",
            "tbm"
        );
        assert_eq!(cpu_table::x86_detect("no-such-feature"), None);
    }

    /// Runs this machine's C compiler: a native profile requires every feature whose macro
    /// `cc -march=native` predefines, and this CPU has each of them (else the build could not run
    /// where it was built).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_native_profile_requires_every_feature_the_compilers_macros_show() {
        let cache = tempfile::tempdir().unwrap();
        let mut opts = crate::probe::ProbeOptions::for_host(cache.path());
        opts.cc = None;
        opts.cxx = None;
        let m = crate::probe::probe(&opts);
        let cc = m.compilers.c.found().expect("a C compiler on this machine");
        assert!(
            cc.native_cpu_features.is_some(),
            "the probe did not ask {} for -march=native: {cc:?}",
            cc.path
        );
        let p = crate::profile::plan(&m, &Default::default());
        assert!(p
            .decisions
            .iter()
            .any(|d| d.name == "GGML_NATIVE" && d.value == "ON"));
        let required = required_cpu_features(&m, &p);
        let out = std::process::Command::new(&cc.path)
            .args(["-march=native", "-dM", "-E", "-x", "c", "-"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let mut seen = 0;
        for f in cpu_table::X86_FEATURES {
            if f.macros
                .iter()
                .any(|mac| text.lines().any(|l| l == format!("#define {mac} 1")))
            {
                // The x86-64 baseline (SSE2, FXSR, MMX) is implied by the architecture.
                if !["mmx", "fxsr", "sse", "sse2"].contains(&f.name) {
                    assert!(
                        required.iter().any(|r| r == f.name),
                        "{} ({:?}) not required: {required:?}",
                        f.name,
                        f.macros
                    );
                    seen += 1;
                }
            }
        }
        assert!(
            seen > 0,
            "the compiler enabled nothing beyond x86-64? {required:?}"
        );
        for r in &required {
            assert_eq!(
                cpu_table::x86_detect(r),
                Some(true),
                "{r} is required by a native build but this CPU's check says otherwise"
            );
        }
    }

    #[test]
    fn declared_arm64_requires_the_extensions_of_its_arch_string() {
        let mut m = machine("arm64-linux-server-graviton3.json");
        m.origin = Origin::Declared;
        let p = crate::profile::plan(&m, &Default::default());
        let r = required_cpu_features(&m, &p);
        assert!(r.contains(&"dotprod".to_string()), "{r:?}");
        assert!(!r.iter().any(|f| f.contains("armv8")), "{r:?}");
    }
}
