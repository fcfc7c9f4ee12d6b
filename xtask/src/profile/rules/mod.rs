//! The decision rules: from Machine facts (+ overrides) to CMake cache entries, each carrying the
//! fact that chose it, plus a "why not" for every backend not chosen. GPU generations come from
//! the data table in `profiles/cuda.toml` (see `../cuda.rs`), not from code. One module per concern:
//! the fixed build shape, the CPU, the GPU backends (CUDA, Vulkan), the runtime defaults.

mod cpu;
mod gpu;
mod nvidia;
mod runtime;
mod shape;
mod vulkan;
mod wasm;

#[cfg(test)]
pub(crate) use cpu::ARM_V82_EXTENSIONS;
pub(crate) use cpu::X86_ISA;
pub use nvidia::CUDA_PROOF;
pub use vulkan::vulkan_target;
pub use wasm::THREADS_NOTE as WASM_THREADS_NOTE;

use super::cuda::CudaTable;
use super::overrides::Overrides;
use super::{Backend, Decision, RuntimeDefaults};
use crate::machine::Machine;

pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub backends: Vec<Backend>,
    pub runtime: RuntimeDefaults,
    pub warnings: Vec<String>,
    pub hints: Vec<String>,
}

fn on(b: bool) -> String {
    (if b { "ON" } else { "OFF" }).to_string()
}

pub fn decide(m: &Machine, o: &Overrides, table: &CudaTable) -> Outcome {
    let mut warnings = Vec::new();
    let mut hints = Vec::new();
    let override_src = o
        .origin
        .clone()
        .unwrap_or_else(|| "profiles/local.toml".into());

    let mut d = shape::decide();
    cpu::decide(m, &mut d, &mut hints);
    let gpus = gpu::decide(
        m,
        o,
        table,
        &override_src,
        &mut d,
        &mut warnings,
        &mut hints,
    );

    // --- user defines last, so they win (and say so).
    for (name, value) in &o.defines {
        let (v, kind) = value.cmake();
        d.retain(|x| &x.name != name);
        let mut dec = Decision::new(name, &v, kind, "user define", format!("[defines] {name}"));
        dec.overridden = Some(override_src.clone());
        d.push(dec);
    }

    let runtime = runtime::runtime_defaults(m, o, gpus.chosen, &override_src);
    Outcome {
        decisions: d,
        backends: gpus.backends,
        runtime,
        warnings,
        hints,
    }
}
