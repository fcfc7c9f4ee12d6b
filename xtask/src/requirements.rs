//! What a build demands of the machine that runs it: the CPU features its code may use.
//!
//! A probed machine builds with `GGML_NATIVE=ON` (`-march=native`), so the compiler may use every
//! feature the build host has; a declared machine builds with explicit ISA options, so exactly the
//! features behind the options set to ON. The runtime refuses to start when one is missing (instead
//! of dying with SIGILL), and prebuilt selection rejects machines that lack one.

use crate::machine::{Machine, Origin};
use crate::profile::Profile;

/// CPU features (as `is_x86_feature_detected!` / `is_aarch64_feature_detected!` spell them) that
/// code built from `profile` for `machine` may execute. Sorted, without duplicates.
pub fn required_cpu_features(machine: &Machine, profile: &Profile) -> Vec<String> {
    let mut out: Vec<String> = if machine.origin == Origin::Probed {
        // -march=native: everything the host has that we track.
        machine.cpu.features.clone()
    } else if machine.is_x86_64() {
        crate::profile::rules::X86_ISA
            .iter()
            .filter(|(opt, _)| option_on(profile, opt))
            .flat_map(|(_, needs)| needs.iter().map(|f| f.to_string()))
            .collect()
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
