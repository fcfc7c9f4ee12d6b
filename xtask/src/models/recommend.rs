//! Which model fits a Machine, and the runtime defaults (threads, GPU layers, context) for a model
//! file on that Machine. Pure functions of plain data: tested on recorded Machines.

use super::catalog::{Catalog, Model, Purpose};
use crate::gguf::Facts;
use crate::machine::Machine;
use crate::progress::human_bytes;
use serde::Serialize;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Models bigger than this answer too slowly on a CPU to be a good default there.
const CPU_MAX_PARAMS: u64 = 4_500_000_000;
/// Default context when the model allows more (runtime can ask for more explicitly).
const DEFAULT_CONTEXT: u64 = 8192;

/// The memory a Machine offers to a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub ram_total: u64,
    /// RAM a model may use: total minus what the system keeps (a quarter, at least 1 GiB).
    pub ram_usable: u64,
    /// The largest GPU's VRAM and what a model may use of it (minus 10%, at least 512 MiB).
    pub gpu: Option<GpuBudget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuBudget {
    pub name: String,
    pub vram_total: u64,
    pub vram_usable: u64,
}

impl Budget {
    pub fn of(m: &Machine) -> Option<Budget> {
        let ram_total = m.memory.as_ref()?.total_bytes;
        let keep = (ram_total / 4).max(GIB);
        let gpu = m.gpus().iter().max_by_key(|g| g.vram_mib).map(|g| {
            let total = g.vram_mib * MIB;
            GpuBudget {
                name: g.name.clone(),
                vram_total: total,
                vram_usable: total.saturating_sub((total / 10).max(512 * MIB)),
            }
        });
        Some(Budget {
            ram_total,
            ram_usable: ram_total.saturating_sub(keep),
            gpu,
        })
    }
}

/// Where a model would run on a Machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Does not fit.
    None,
    /// In RAM, computed on the CPU.
    Cpu,
    /// Entirely in VRAM.
    Gpu,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::None => "no",
            Placement::Cpu => "cpu",
            Placement::Gpu => "gpu",
        }
    }
}

pub fn placement(m: &Model, b: &Budget) -> Placement {
    let need = m.memory_needed();
    if b.gpu.as_ref().is_some_and(|g| need <= g.vram_usable) {
        Placement::Gpu
    } else if need <= b.ram_usable {
        Placement::Cpu
    } else {
        Placement::None
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub name: String,
    pub placement: Placement,
    pub memory_needed: u64,
    pub budget: Budget,
    /// Why this one, one reason a line.
    pub why: Vec<String>,
    /// The next best candidates, best first.
    pub alternatives: Vec<String>,
}

/// Ranking: fully on the GPU beats the CPU; then more parameters; then a bigger file (a finer
/// quantisation); on the CPU, models above ~4.5B parameters only when nothing smaller fits.
fn rank(m: &Model, p: Placement) -> (Placement, bool, u64, u64) {
    let params = m.parameter_count.unwrap_or(0);
    let cpu_ok = p != Placement::Cpu || params <= CPU_MAX_PARAMS;
    (p, cpu_ok, params, m.size)
}

pub fn recommend(
    cat: &Catalog,
    machine: &Machine,
    purpose: Purpose,
) -> Result<Recommendation, RecommendError> {
    let budget = Budget::of(machine).ok_or(RecommendError::NoMemory)?;
    let mut cands: Vec<(&Model, Placement)> = cat
        .models
        .iter()
        .filter(|m| m.purpose == purpose)
        .map(|m| (m, placement(m, &budget)))
        .filter(|(_, p)| *p != Placement::None)
        .collect();
    cands.sort_by(|a, b| {
        rank(b.0, b.1)
            .cmp(&rank(a.0, a.1))
            .then(a.0.name.cmp(&b.0.name))
    });
    let Some(&(best, place)) = cands.first() else {
        let smallest = cat
            .models
            .iter()
            .filter(|m| m.purpose == purpose)
            .map(|m| m.memory_needed())
            .min();
        return Err(RecommendError::NothingFits {
            purpose: purpose.as_str().into(),
            usable: human_bytes(budget.ram_usable),
            smallest: smallest.map(human_bytes),
        });
    };
    let mut why = vec![match &budget.gpu {
        Some(g) => format!(
            "machine: {} RAM ({} usable), GPU {} with {} VRAM ({} usable)",
            human_bytes(budget.ram_total),
            human_bytes(budget.ram_usable),
            g.name,
            human_bytes(g.vram_total),
            human_bytes(g.vram_usable)
        ),
        None => format!(
            "machine: {} RAM, {} usable after keeping {} for the system; no GPU with known VRAM, so models run on the CPU",
            human_bytes(budget.ram_total),
            human_bytes(budget.ram_usable),
            human_bytes(budget.ram_total - budget.ram_usable)
        ),
    }];
    why.push(format!(
        "{}: {} parameters, {}, needs about {}",
        best.name,
        best.parameters.as_deref().unwrap_or("?"),
        best.quantization
            .as_deref()
            .unwrap_or("unknown quantisation"),
        human_bytes(best.memory_needed())
    ));
    why.push(match place {
        Placement::Gpu => "fits entirely in VRAM: every layer runs on the GPU".into(),
        _ => "fits in RAM and runs on the CPU".into(),
    });
    why.push(format!(
        "largest {} model in the catalog that fits{}",
        purpose.as_str(),
        if place == Placement::Cpu && budget.gpu.is_some() {
            " (none larger fits in VRAM)"
        } else if place == Placement::Cpu {
            " and answers at a usable speed on a CPU"
        } else {
            ""
        }
    ));
    Ok(Recommendation {
        name: best.name.clone(),
        placement: place,
        memory_needed: best.memory_needed(),
        alternatives: cands
            .iter()
            .skip(1)
            .take(3)
            .map(|(m, _)| m.name.clone())
            .collect(),
        budget,
        why,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("the machine description does not state its memory, so nothing can be sized for it")]
    NoMemory,
    #[error("no {purpose} model in the catalog fits in {usable} of usable memory{}", smallest.as_ref().map(|s| format!(" (the smallest needs {s})")).unwrap_or_default())]
    NothingFits {
        purpose: String,
        usable: String,
        smallest: Option<String>,
    },
}

impl crate::error::Hint for RecommendError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RecommendError::NoMemory => {
                "add `memory.total_bytes` to the machine file, or run without --machine to probe this one".into()
            }
            RecommendError::NothingFits { .. } => {
                "add a smaller model to models/local.toml (or --catalog FILE)".into()
            }
        })
    }
}

/// How to run one model file on one Machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeDefaults {
    pub threads: u32,
    /// Layers offloaded to the GPU (`block_count + 1` = everything, output layer included).
    pub gpu_layers: u64,
    pub context: u64,
    pub why: Vec<String>,
}

/// Threads = physical cores; context = the model's own (at most 8192) shrunk until its KV cache
/// fits beside the weights; GPU layers = as many as fit in usable VRAM with that context.
pub fn runtime_defaults(facts: &Facts, file_size: u64, machine: &Machine) -> RuntimeDefaults {
    let mut why = Vec::new();
    let threads = machine
        .cpu
        .physical_cores
        .or(machine.cpu.logical_cores)
        .unwrap_or(4)
        .max(1);
    why.push(format!("threads = {threads} (physical cores)"));
    let budget = Budget::of(machine);
    let overhead = 256 * MIB;
    let kv = facts.kv_bytes_per_token();
    let wanted = facts.context_length.unwrap_or(4096).min(DEFAULT_CONTEXT);
    let gpu = budget.as_ref().and_then(|b| b.gpu.clone());
    // Memory the KV cache may use: VRAM when the whole model fits there, otherwise RAM.
    let (room, place) = match (&budget, &gpu) {
        (_, Some(g)) if file_size + overhead < g.vram_usable => {
            (g.vram_usable - file_size - overhead, "VRAM")
        }
        (Some(b), _) => (b.ram_usable.saturating_sub(file_size + overhead), "RAM"),
        (None, _) => (u64::MAX, "memory"),
    };
    let context = match kv {
        Some(per) if per > 0 => {
            let fit = (room / per) / 256 * 256;
            let c = wanted.min(fit).max(512.min(wanted));
            why.push(format!(
                "context = {c} tokens (model allows {}; KV cache {} per token must fit in {} of free {place})",
                facts.context_length.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                human_bytes(per),
                human_bytes(room.min(1 << 50))
            ));
            c
        }
        _ => {
            why.push(format!(
                "context = {wanted} tokens (the header does not say enough to size the KV cache)"
            ));
            wanted
        }
    };
    let layers = facts.block_count.unwrap_or(0);
    let gpu_layers = match gpu {
        None => {
            why.push("gpu_layers = 0 (no GPU with known VRAM)".into());
            0
        }
        Some(g) => {
            let kv_total = kv.unwrap_or(0) * context;
            let total_layers = layers + 1;
            let avail = g.vram_usable.saturating_sub(overhead + kv_total);
            let n = if file_size <= avail {
                total_layers
            } else {
                let per_layer = (file_size / total_layers).max(1);
                (avail / per_layer).min(total_layers)
            };
            why.push(format!(
                "gpu_layers = {n} of {total_layers} ({} usable VRAM on {}, {} weights)",
                human_bytes(g.vram_usable),
                g.name,
                human_bytes(file_size)
            ));
            n
        }
    };
    RuntimeDefaults {
        threads,
        gpu_layers,
        context,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{sample_metadata, Header};

    fn machine(name: &str) -> Machine {
        let p = crate::env::repo_root().join(format!("tests/fixtures/machines/{name}.json"));
        Machine::from_json_file(&p).unwrap()
    }

    fn facts(layers: u32, embd: u32, heads: u32, kv: u32, ctx: u32) -> Facts {
        Header {
            version: 3,
            tensor_count: 0,
            metadata: sample_metadata("llama", layers, embd, heads, kv, ctx)
                .into_iter()
                .collect(),
        }
        .facts()
    }

    #[test]
    fn a_model_larger_than_vram_is_split_between_the_gpu_and_the_cpu() {
        let f = facts(32, 4096, 32, 8, 32768);
        let d = runtime_defaults(&f, 6_000_000_000, &machine("models-laptop-6gb-vram"));
        assert!(d.gpu_layers > 0 && d.gpu_layers < 33, "{d:?}");
        assert_eq!(d.context, 8192);
        assert_eq!(d.threads, 8);
    }

    #[test]
    fn a_7b_q4_model_fits_a_6_gb_gpu_with_all_layers() {
        let f = facts(32, 4096, 32, 8, 32768);
        let d = runtime_defaults(&f, 4_400_000_000, &machine("models-laptop-6gb-vram"));
        assert_eq!(d.gpu_layers, 33, "{d:?}");
    }

    #[test]
    fn a_small_model_goes_entirely_onto_a_24_gb_gpu() {
        let f = facts(16, 2048, 32, 8, 131072);
        let d = runtime_defaults(&f, 800_000_000, &machine("models-desktop-24gb-vram"));
        assert_eq!(d.gpu_layers, 17, "{d:?}");
        assert_eq!(d.context, 8192);
    }

    #[test]
    fn context_shrinks_until_the_kv_cache_fits_in_ram() {
        // No grouped-query attention: 32 layers × 3072 × 2 × 2 bytes = 384 KiB per token.
        let f = facts(32, 3072, 32, 32, 4096);
        let d = runtime_defaults(&f, 700_000_000, &machine("models-pi-2gb"));
        assert_eq!(d.gpu_layers, 0);
        assert!(d.context < 4096 && d.context >= 256, "{d:?}");
        assert_eq!(d.context % 256, 0);
        let kv = f.kv_bytes_per_token().unwrap() * d.context;
        assert!(kv + 700_000_000 <= Budget::of(&machine("models-pi-2gb")).unwrap().ram_usable);
    }
}
