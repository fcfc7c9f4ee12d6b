//! Choosing a prebuilt artifact for a Machine (pure): every candidate is accepted or rejected
//! with one human reason per failed requirement; among those that fit, a GPU build wins, then
//! the highest CPU level (the most required CPU features).

use super::{Artifact, Backend, Index};
use crate::machine::{Gpu, Machine};
use crate::probe::tools::version_at_least;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub variant: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The best fitting artifact, if any fits.
    pub chosen: Option<Artifact>,
    /// Variants that fit, best first (the first is `chosen`).
    pub fitting: Vec<String>,
    /// Variants that do not fit, in index order, each with its reasons.
    pub rejected: Vec<Rejected>,
}

/// Picks the artifact of `index` for `machine`; only artifacts built from the llama.cpp tree
/// whose digest is `pinned_digest` are candidates.
pub fn select(index: &Index, machine: &Machine, pinned_digest: &str) -> Selection {
    let mut fitting: Vec<(&Artifact, (u8, usize))> = Vec::new();
    let mut rejected = Vec::new();
    for a in &index.artifacts {
        let reasons = reasons_against(a, machine, pinned_digest);
        if reasons.is_empty() {
            let gpu = u8::from(a.requirements.backend != Backend::Cpu);
            fitting.push((a, (gpu, a.requirements.cpu_features.len())));
        } else {
            rejected.push(Rejected {
                variant: a.variant.clone(),
                reasons,
            });
        }
    }
    // Stable sort: equal scores keep index order.
    fitting.sort_by_key(|x| std::cmp::Reverse(x.1));
    Selection {
        chosen: fitting.first().map(|(a, _)| (*a).clone()),
        fitting: fitting.iter().map(|(a, _)| a.variant.clone()).collect(),
        rejected,
    }
}

/// Why `a` cannot run on `m` (empty: it can).
pub fn reasons_against(a: &Artifact, m: &Machine, pinned_digest: &str) -> Vec<String> {
    let r = &a.requirements;
    let mut out = Vec::new();
    if r.os != m.os.value {
        out.push(format!(
            "built for {}, this machine runs {}",
            r.os, m.os.value
        ));
    }
    if r.arch != m.arch.value {
        out.push(format!(
            "built for {}, this machine is {}",
            r.arch, m.arch.value
        ));
    }
    // CPU features only mean something on the same architecture.
    if r.arch == m.arch.value {
        for f in &r.cpu_features {
            if !m.cpu.has(f) {
                out.push(format!("needs CPU feature {f}, this machine lacks it"));
            }
        }
    }
    if r.backend == Backend::Cuda {
        cuda_reasons(a, m, &mut out);
    }
    if a.llama.tree_digest != pinned_digest {
        out.push(format!(
            "built from llama.cpp tree {}…, the pin is {}…",
            short(&a.llama.tree_digest),
            short(pinned_digest)
        ));
    }
    out
}

fn cuda_reasons(a: &Artifact, m: &Machine, out: &mut Vec<String>) {
    let r = &a.requirements;
    let gpus = m.gpus();
    let min = r.cuda_driver_min.as_deref().unwrap_or("0");
    if gpus.is_empty() {
        out.push(format!(
            "a CUDA build needs an NVIDIA GPU and driver ≥ {min}; this machine has none ({})",
            m.nvidia.why_absent()
        ));
        return;
    }
    // All GPUs of one machine share the driver; report it once.
    let driver = &gpus[0].driver_version;
    if !version_at_least(driver, min) {
        out.push(format!("needs NVIDIA driver ≥ {min}, found {driver}"));
    }
    if !gpus.iter().any(|g| runs_on(&r.gpu_archs, g)) {
        let have: Vec<String> = gpus
            .iter()
            .map(|g| format!("{} is compute capability {}", g.name, g.compute_capability))
            .collect();
        out.push(format!(
            "has CUDA code for {} only; {}",
            r.gpu_archs.join(";"),
            have.join(", ")
        ));
    }
}

/// Whether code for these CMake CUDA architecture entries runs on `gpu`: machine code (`NN`,
/// `NN-real`) runs on the same major capability with an equal or higher minor; PTX (`NN`,
/// `NN-virtual`) is JIT-compiled by the driver for any GPU of equal or higher capability.
pub fn runs_on(archs: &[String], gpu: &Gpu) -> bool {
    let Some(cc) = parse_cc(&gpu.compute_capability) else {
        return false;
    };
    archs.iter().any(|entry| {
        let (sm, kind) = match entry.split_once('-') {
            Some((sm, k)) => (sm, k),
            None => (entry.as_str(), "both"),
        };
        let Some(arch) = sm_to_cc(sm) else {
            return false;
        };
        let sass = kind != "virtual" && arch.0 == cc.0 && arch.1 <= cc.1;
        let ptx = kind != "real" && arch <= cc;
        sass || ptx
    })
}

fn parse_cc(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `86` → (8, 6); `120` → (12, 0); `100a` style suffixes are not accepted.
fn sm_to_cc(sm: &str) -> Option<(u32, u32)> {
    let n: u32 = sm.parse().ok()?;
    Some((n / 10, n % 10))
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine;
    use super::super::{LlamaRef, Requirements};
    use super::*;
    use crate::profile::cuda::CudaTable;

    const PIN: &str = "6a52492e4d9844c6b892f15be36b123ce0aaf8a967da7805088956e1786368df";

    /// An index with one artifact per matrix variant, requirements computed from ci/machines.
    fn index() -> Index {
        let table = CudaTable::embedded();
        let artifacts = crate::ci::matrix::Matrix::load_checked_in()
            .unwrap()
            .variants
            .iter()
            .map(|v| {
                let m = machine(&format!("ci/machines/{}.json", v.name));
                let p = crate::profile::plan(&m, &Default::default());
                Artifact {
                    variant: v.name.clone(),
                    target: v.target.clone(),
                    requirements: Requirements::of(&m, &p, &table),
                    llama: LlamaRef {
                        commit: "tree-6a52492e".into(),
                        tree_digest: PIN.into(),
                    },
                    url: format!("{}.tar.gz", v.name),
                    sha256: "0".repeat(64),
                    size: 1,
                    manifest_sha256: None,
                }
            })
            .collect();
        Index {
            schema: 1,
            generated_by: "test".into(),
            artifacts,
        }
    }

    fn pick(fixture: &str) -> Selection {
        select(
            &index(),
            &machine(&format!("tests/fixtures/machines/{fixture}")),
            PIN,
        )
    }

    fn reasons<'a>(s: &'a Selection, variant: &str) -> &'a [String] {
        &s.rejected
            .iter()
            .find(|r| r.variant == variant)
            .unwrap_or_else(|| panic!("{variant} not rejected: {s:#?}"))
            .reasons
    }

    #[test]
    fn avx2_desktop_picks_v3_not_v4() {
        let s = pick("avx2-desktop-haswell.json");
        assert_eq!(s.chosen.as_ref().unwrap().variant, "linux-x86_64-v3");
        assert_eq!(s.fitting, ["linux-x86_64-v3", "linux-x86_64-v2"]);
        assert!(reasons(&s, "linux-x86_64-v4")
            .contains(&"needs CPU feature avx512f, this machine lacks it".to_string()));
    }

    #[test]
    fn avx512_server_picks_v4() {
        let s = pick("this-machine-epyc-avx512.json");
        assert_eq!(s.chosen.as_ref().unwrap().variant, "linux-x86_64-v4");
    }

    #[test]
    fn machine_without_sse42_gets_nothing_with_reasons() {
        let mut m = machine("tests/fixtures/machines/avx2-desktop-haswell.json");
        m.cpu.features = vec!["sse2".into()];
        let s = select(&index(), &m, PIN);
        assert_eq!(s.chosen, None);
        assert_eq!(s.rejected.len(), index().artifacts.len());
        assert!(reasons(&s, "linux-x86_64-v2")
            .contains(&"needs CPU feature sse4.2, this machine lacks it".to_string()));
        assert!(s.rejected.iter().all(|r| !r.reasons.is_empty()));
    }

    #[test]
    fn arm64_rejects_x86_variants_and_picks_arm64() {
        // Graviton3 has dotprod: the armv8.2 build, not the armv8.0 baseline.
        let s = pick("arm64-linux-server-graviton3.json");
        assert_eq!(s.chosen.as_ref().unwrap().variant, "linux-arm64-v82");
        // An armv8.0 core (no dotprod) gets the baseline, and is told why not the v8.2 one.
        let mut a72 = machine("tests/fixtures/machines/arm64-linux-server-graviton3.json");
        a72.cpu.features = vec!["neon".into()];
        let s = select(&index(), &a72, PIN);
        assert_eq!(s.chosen.as_ref().unwrap().variant, "linux-arm64");
        assert!(reasons(&s, "linux-arm64-v82")
            .iter()
            .any(|r| r.contains("dotprod")));
        assert!(reasons(&s, "linux-x86_64-v3")
            .contains(&"built for x86_64, this machine is aarch64".to_string()));
    }

    #[test]
    fn apple_silicon_picks_metal() {
        let s = pick("apple-m2.json");
        assert_eq!(s.chosen.as_ref().unwrap().variant, "macos-arm64-metal");
    }

    #[test]
    fn rtx_laptop_picks_cuda_when_its_driver_is_new_enough() {
        let s = pick("laptop-rtx4050-cuda12.4.json");
        assert_eq!(s.chosen.as_ref().unwrap().variant, "linux-x86_64-cuda12");
        assert_eq!(s.fitting[1], "linux-x86_64-v3");
    }

    #[test]
    fn old_driver_rejects_cuda_and_falls_back_to_the_cpu_build() {
        let mut m = machine("tests/fixtures/machines/laptop-rtx4050-cuda12.4.json");
        if let crate::machine::Detection::Found(n) = &mut m.nvidia {
            n.gpus[0].driver_version = "470.82.01".into();
        }
        let s = select(&index(), &m, PIN);
        assert_eq!(s.chosen.as_ref().unwrap().variant, "linux-x86_64-v3");
        assert!(reasons(&s, "linux-x86_64-cuda12")
            .contains(&"needs NVIDIA driver ≥ 550.54.14, found 470.82.01".to_string()));
    }

    #[test]
    fn cpu_only_machine_rejects_cuda_for_lack_of_a_gpu() {
        let s = pick("avx2-desktop-haswell.json");
        assert!(reasons(&s, "linux-x86_64-cuda12")[0].contains("this machine has none"));
    }

    #[test]
    fn another_llama_tree_is_rejected_naming_both_digests() {
        let m = machine("tests/fixtures/machines/avx2-desktop-haswell.json");
        let s = select(&index(), &m, &"1234".repeat(16));
        assert_eq!(s.chosen, None);
        assert!(reasons(&s, "linux-x86_64-v3").contains(
            &"built from llama.cpp tree 6a52492e4d98…, the pin is 123412341234…".to_string()
        ));
    }

    #[test]
    fn ptx_covers_newer_gpus_and_sass_only_the_same_major() {
        let gpu = |cc: &str| Gpu {
            index: 0,
            name: "g".into(),
            compute_capability: cc.into(),
            vram_mib: 0,
            driver_version: "999".into(),
        };
        let archs: Vec<String> = vec!["75".into(), "86-real".into()];
        assert!(runs_on(&archs, &gpu("8.9")), "compute_75 PTX JITs on 8.9");
        assert!(!runs_on(&archs, &gpu("7.0")));
        let real_only: Vec<String> = vec!["86-real".into()];
        assert!(runs_on(&real_only, &gpu("8.9")));
        assert!(!runs_on(&real_only, &gpu("9.0")));
        assert!(!runs_on(&real_only, &gpu("8.0")));
        let virt: Vec<String> = vec!["90-virtual".into()];
        assert!(runs_on(&virt, &gpu("12.0")));
    }
}
