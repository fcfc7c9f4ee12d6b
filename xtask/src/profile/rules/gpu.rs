//! GPU backend decisions, in priority order CUDA, Metal, HIP, Vulkan: one GPU backend per build,
//! each backend not chosen carrying why not. CUDA and Vulkan have modules of their own.

use super::super::cuda::CudaTable;
use super::super::overrides::{Overrides, Switch};
use super::super::{Backend, Decision};
use crate::machine::Machine;

/// Every GPU backend's verdict, and the one chosen (if any).
pub struct Gpus {
    pub backends: Vec<Backend>,
    pub chosen: Option<&'static str>,
}

pub fn decide(
    m: &Machine,
    o: &Overrides,
    table: &CudaTable,
    override_src: &str,
    d: &mut Vec<Decision>,
    warnings: &mut Vec<String>,
    hints: &mut Vec<String>,
) -> Gpus {
    let mut backends = Vec::new();
    let mut gpu_chosen: Option<&'static str> = None;
    // CUDA
    let cuda_choice = super::nvidia::decide(m, o, table, override_src, d, warnings, hints);
    if cuda_choice.is_ok() {
        gpu_chosen = Some("cuda");
    }
    backends.push(Backend::from_result("cuda", cuda_choice));

    // Metal
    let metal: Result<String, String> = if o.backends.metal == Switch::Off {
        Err(format!("disabled by {override_src}"))
    } else if let Some(g) = gpu_chosen {
        Err(format!("{g} already chosen"))
    } else if m.metal.found().is_some()
        && (m.arch.value == "aarch64" || o.backends.metal == Switch::On)
    {
        d.push(Decision::new(
            "GGML_METAL",
            "ON",
            "BOOL",
            "Apple GPU through Metal",
            format!("os = macos, arch = {}", m.arch.value),
        ));
        d.push(Decision::new(
            "GGML_METAL_EMBED_LIBRARY",
            "ON",
            "BOOL",
            "embed the shader library so the static binary needs no default.metallib beside it",
            "static runtime binary",
        ));
        gpu_chosen = Some("metal");
        Ok("Metal".into())
    } else if m.metal.found().is_some() {
        d.push(Decision::new(
            "GGML_METAL",
            "OFF",
            "BOOL",
            "Metal on Intel Macs is slower than the CPU backend",
            format!("arch = {}", m.arch.value),
        ));
        Err(format!(
            "Intel Mac ({}): Metal is slower than the CPU here",
            m.arch.value
        ))
    } else {
        Err(m.metal.why_absent())
    };
    backends.push(Backend::from_result("metal", metal));

    // HIP
    let hip: Result<String, String> = if o.backends.hip == Switch::Off {
        Err(format!("disabled by {override_src}"))
    } else if let Some(g) = gpu_chosen {
        Err(format!("{g} already chosen"))
    } else {
        match m.rocm.found() {
            Some(r) if !r.gfx_targets.is_empty() => {
                let targets = r.gfx_targets.join(";");
                d.push(Decision::new(
                    "GGML_HIP",
                    "ON",
                    "BOOL",
                    "AMD GPU through ROCm/HIP",
                    format!("rocm found ({})", r.source),
                ));
                d.push(Decision::new(
                    "GPU_TARGETS",
                    &targets,
                    "STRING",
                    "exactly the local AMD GPUs' gfx targets",
                    format!("rocminfo agents: {targets}"),
                ));
                gpu_chosen = Some("hip");
                Ok(format!("HIP: {targets}"))
            }
            Some(_) => Err("ROCm present but rocminfo lists no GPU agent".into()),
            None => Err(m.rocm.why_absent()),
        }
    };
    backends.push(Backend::from_result("hip", hip));

    // Vulkan
    let vulkan: Result<String, String> = if o.backends.vulkan == Switch::Off {
        Err(format!("disabled by {override_src}"))
    } else if let Some(g) = gpu_chosen {
        Err(format!("{g} already chosen"))
    } else {
        match m.vulkan.found() {
            Some(v) => super::vulkan::decide(v, o, override_src, d, warnings),
            None => Err(m.vulkan.why_absent()),
        }
    };
    if vulkan.is_ok() {
        gpu_chosen = Some("vulkan");
    }
    backends.push(Backend::from_result("vulkan", vulkan));
    Gpus {
        backends,
        chosen: gpu_chosen,
    }
}
