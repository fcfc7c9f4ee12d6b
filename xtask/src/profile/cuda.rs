//! CUDA architecture selection, driven by the data table `profiles/cuda.toml`.
//!
//! Given the local GPUs and the toolkit's release, picks `CMAKE_CUDA_ARCHITECTURES`: each GPU's own
//! architecture when the toolkit can compile for it; the newest architecture the toolkit knows as
//! PTX (`NN-virtual`, JIT-compiled by the driver) when the GPU is too new; nothing, with a warning,
//! when the toolkit has dropped the GPU.

use crate::machine::Gpu;
use crate::probe::tools::version_at_least;
use serde::Deserialize;

/// The checked-in table, embedded so a build of xtask is self-contained.
pub const TABLE_TOML: &str = include_str!("../../../profiles/cuda.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaTable {
    pub arch: Vec<ArchEntry>,
    pub toolkit: Vec<ToolkitEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchEntry {
    pub compute_capability: String,
    pub sm: String,
    pub family: String,
    pub first_cuda: String,
    #[serde(default)]
    pub last_cuda: Option<String>,
    pub min_driver: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolkitEntry {
    pub version: String,
    pub min_driver: String,
    /// The oldest `sm` this release still compiles for (CUDA 13: `75`, Turing), when the release
    /// dropped older ones; informational, the `[[arch]]` entries' `last_cuda` decide.
    #[serde(default)]
    pub oldest_arch: Option<String>,
}

impl CudaTable {
    pub fn embedded() -> CudaTable {
        toml::from_str(TABLE_TOML).expect("profiles/cuda.toml is valid (checked by a test)")
    }

    fn lookup(&self, cc: &str) -> Option<&ArchEntry> {
        self.arch.iter().find(|a| a.compute_capability == cc)
    }

    fn supports(a: &ArchEntry, toolkit: &str) -> bool {
        version_at_least(toolkit, &a.first_cuda)
            && a.last_cuda
                .as_ref()
                .is_none_or(|l| version_at_least(l, toolkit))
    }

    /// The newest architecture this toolkit can compile for.
    fn newest_supported(&self, toolkit: &str) -> Option<&ArchEntry> {
        self.arch
            .iter()
            .filter(|a| Self::supports(a, toolkit))
            .max_by(|a, b| cc_cmp(&a.compute_capability, &b.compute_capability))
    }

    /// The oldest toolkit release that can compile for `cc`.
    pub fn first_toolkit_for(&self, cc: &str) -> Option<&str> {
        self.lookup(cc).map(|a| a.first_cuda.as_str())
    }

    /// Minimum driver for a toolkit release: the entry with the highest version not above it.
    pub fn toolkit_min_driver(&self, toolkit: &str) -> Option<&ToolkitEntry> {
        self.toolkit
            .iter()
            .filter(|t| version_at_least(toolkit, &t.version))
            .max_by(|a, b| cc_cmp(&a.version, &b.version))
    }
}

fn cc_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a == b {
        std::cmp::Ordering::Equal
    } else if version_at_least(a, b) {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Less
    }
}

/// The outcome for the machine's GPUs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchPlan {
    /// CMake architecture entries, deduplicated, ascending (`89`, `90-virtual`).
    pub architectures: Vec<String>,
    /// One line per GPU saying what was chosen for it and why.
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn plan_architectures(table: &CudaTable, gpus: &[Gpu], toolkit: &str) -> ArchPlan {
    let mut plan = ArchPlan::default();
    let mut chosen: Vec<(String, String)> = Vec::new(); // (compute capability for ordering, entry)
    for g in gpus {
        let cc = g.compute_capability.as_str();
        let known = table.lookup(cc);
        match known {
            Some(a) if CudaTable::supports(a, toolkit) => {
                plan.reasons.push(format!(
                    "GPU {} {} is compute capability {cc} ({}): sm_{}",
                    g.index, g.name, a.family, a.sm
                ));
                chosen.push((cc.to_string(), a.sm.clone()));
                if !version_at_least(&g.driver_version, &a.min_driver) {
                    plan.warnings.push(format!(
                        "GPU {} {} runs driver {}, older than {} which first supports {}: update the NVIDIA driver",
                        g.index, g.name, g.driver_version, a.min_driver, a.family
                    ));
                }
            }
            Some(a) if !version_at_least(toolkit, &a.first_cuda) => {
                fallback(table, g, toolkit, Some(a), &mut plan, &mut chosen)
            }
            Some(a) => {
                let last = a.last_cuda.as_deref().unwrap_or("?");
                plan.warnings.push(format!(
                    "GPU {} {} (sm_{}, {}) is not supported by CUDA {toolkit}: the last toolkit that compiles for it is CUDA {last}; it gets no CUDA code. Install CUDA {last} to use it",
                    g.index, g.name, a.sm, a.family
                ));
            }
            None => {
                // Newer than anything in the table: treat as too new for this toolkit.
                let newest = table
                    .arch
                    .iter()
                    .map(|a| a.compute_capability.as_str())
                    .max_by(|a, b| cc_cmp(a, b))
                    .unwrap_or("0.0");
                if version_at_least(cc, newest) {
                    fallback(table, g, toolkit, None, &mut plan, &mut chosen)
                } else {
                    plan.warnings.push(format!(
                        "GPU {} {} reports compute capability {cc}, which profiles/cuda.toml does not list: it gets no CUDA code (add the generation to the table)",
                        g.index, g.name
                    ));
                }
            }
        }
    }
    chosen.sort_by(|a, b| cc_cmp(&a.0, &b.0));
    for (_, entry) in chosen {
        if !plan.architectures.contains(&entry) {
            plan.architectures.push(entry);
        }
    }
    plan
}

fn fallback(
    table: &CudaTable,
    g: &Gpu,
    toolkit: &str,
    known: Option<&ArchEntry>,
    plan: &mut ArchPlan,
    chosen: &mut Vec<(String, String)>,
) {
    let cc = &g.compute_capability;
    let need = known
        .map(|a| format!("CUDA {} or newer", a.first_cuda))
        .unwrap_or_else(|| "a toolkit newer than any in profiles/cuda.toml".into());
    match table.newest_supported(toolkit) {
        Some(n) => {
            plan.reasons.push(format!(
                "GPU {} {} is compute capability {cc}, newer than CUDA {toolkit} knows: PTX for compute_{} (sm_{}-virtual), JIT-compiled by the driver",
                g.index, g.name, n.sm, n.sm
            ));
            plan.warnings.push(format!(
                "CUDA {toolkit} cannot compile for GPU {} {} (compute capability {cc}); building PTX for compute_{} instead, which the driver compiles at first use (slow first start, possibly slower kernels). Install {need} for native code",
                g.index, g.name, n.sm
            ));
            chosen.push((n.compute_capability.clone(), format!("{}-virtual", n.sm)));
        }
        None => plan.warnings.push(format!(
            "CUDA {toolkit} supports no architecture in profiles/cuda.toml; GPU {} {} gets no CUDA code. Install {need}",
            g.index, g.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(i: u32, name: &str, cc: &str, driver: &str) -> Gpu {
        Gpu {
            index: i,
            name: name.into(),
            compute_capability: cc.into(),
            vram_mib: 8192,
            driver_version: driver.into(),
        }
    }

    #[test]
    fn embedded_table_parses_and_is_ordered_by_capability() {
        let t = CudaTable::embedded();
        assert!(t.arch.len() >= 10);
        for w in t.arch.windows(2) {
            assert!(cc_cmp(&w[0].compute_capability, &w[1].compute_capability).is_lt());
        }
    }

    #[test]
    fn same_architecture_twice_is_listed_once() {
        let t = CudaTable::embedded();
        let gpus = [
            gpu(0, "A", "8.6", "550.54.14"),
            gpu(1, "B", "8.6", "550.54.14"),
        ];
        assert_eq!(
            plan_architectures(&t, &gpus, "12.4").architectures,
            vec!["86"]
        );
    }

    #[test]
    fn cuda13_drops_pascal_with_a_warning() {
        let t = CudaTable::embedded();
        let p = plan_architectures(&t, &[gpu(0, "GTX 1080", "6.1", "580.65.06")], "13.0");
        assert!(p.architectures.is_empty());
        assert!(p.warnings[0].contains("CUDA 12.9"), "{:?}", p.warnings);
    }

    #[test]
    fn old_driver_for_new_gpu_is_warned() {
        let t = CudaTable::embedded();
        let p = plan_architectures(&t, &[gpu(0, "RTX 5090", "12.0", "560.35.03")], "12.8");
        assert_eq!(p.architectures, vec!["120"]);
        assert!(p.warnings[0].contains("570.26"), "{:?}", p.warnings);
    }

    #[test]
    fn cuda13_compiles_for_turing_and_newer_only() {
        let t = CudaTable::embedded();
        for tk in ["13.0", "13.5"] {
            let oldest = t.toolkit_min_driver(tk).unwrap().oldest_arch.clone();
            assert_eq!(oldest.as_deref(), Some("75"), "{tk}");
            for a in &t.arch {
                let sm: u32 = a.sm.parse().unwrap();
                assert_eq!(
                    CudaTable::supports(a, tk),
                    sm >= 75,
                    "CUDA {tk} and sm_{} ({})",
                    a.sm,
                    a.family
                );
            }
        }
        // Volta under the wheel toolkit: no code, and the warning names the last toolkit for it.
        let p = plan_architectures(&t, &[gpu(0, "Tesla V100", "7.0", "580.65.06")], "13.5");
        assert!(p.architectures.is_empty());
        assert!(p.warnings[0].contains("CUDA 12.9"), "{:?}", p.warnings);
        // Turing and Ada still compile natively.
        let p = plan_architectures(
            &t,
            &[
                gpu(0, "RTX 2080", "7.5", "580.65.06"),
                gpu(1, "RTX 4050 Laptop", "8.9", "580.65.06"),
            ],
            "13.5",
        );
        assert_eq!(p.architectures, vec!["75", "89"]);
    }

    #[test]
    fn each_toolkit_needs_its_driver() {
        let t = CudaTable::embedded();
        let need = |tk: &str| t.toolkit_min_driver(tk).unwrap().min_driver.clone();
        assert_eq!(need("12.4"), "550.54.14");
        assert_eq!(need("12.9"), "575.51.03");
        assert_eq!(need("13.0"), "580.65.06");
        // 13.5 (the wheels) runs on the 13.0 driver branch (minor version compatibility).
        assert_eq!(need("13.5"), "580.65.06");
        // Releases between table rows take the row below them.
        assert_eq!(need("12.6"), "550.54.14");
    }

    #[test]
    fn unknown_future_gpu_falls_back_to_ptx() {
        let t = CudaTable::embedded();
        let p = plan_architectures(&t, &[gpu(0, "Future", "15.0", "900.1")], "12.9");
        assert_eq!(p.architectures, vec!["121-virtual"]);
    }
}
