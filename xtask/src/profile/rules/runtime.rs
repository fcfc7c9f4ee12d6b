//! Runtime defaults baked into the build's runtime-info.json: threads, GPU layers and context
//! size, each with why (an override from the user's profile wins and says so).

use super::super::overrides::Overrides;
use super::super::RuntimeDefaults;
use crate::machine::Machine;

pub fn runtime_defaults(
    m: &Machine,
    o: &Overrides,
    gpu: Option<&str>,
    src: &str,
) -> RuntimeDefaults {
    let (threads, threads_why) = match (o.runtime.threads, m.cpu.physical_cores, m.cpu.logical_cores) {
        (Some(t), _, _) => (t, format!("override from {src}")),
        _ if crate::wasm::is_wasm(m) => (1, "WebAssembly module without -pthread: one thread in this first version (docs/wasm.md)".into()),
        (None, Some(p), _) => (p, "physical cores: more threads than cores slows llama.cpp (measured 0.5-0.8x with fewer, no gain with SMT)".into()),
        (None, None, Some(l)) => (l, "logical cores (physical count unknown)".into()),
        (None, None, None) => (4, "core count unknown: a conservative 4".into()),
    };
    let (gpu_layers, gpu_layers_why) = match (&o.runtime.gpu_layers, gpu) {
        (Some(g), _) => (g.clone(), format!("override from {src}")),
        (None, Some("metal")) => ("all".into(), "unified memory: every layer on the GPU".into()),
        (None, Some(b)) => ("auto".into(), format!("{b}: as many layers as fit in the device's free memory, read from the device at run time")),
        (None, None) => ("0".into(), "CPU-only build".into()),
    };
    let ram_gib = m.memory.as_ref().map(|x| x.total_bytes >> 30);
    let (ctx_size, ctx_why) = match (o.runtime.ctx_size, ram_gib) {
        (Some(c), _) => (c, format!("override from {src}")),
        // The text names the RAM class, not the figure: it is embedded in the binary, and a
        // different amount of RAM in the same class must not change the build's key.
        (None, Some(r)) if r < 4 => (2048, "under 4 GiB RAM: a small KV cache".to_string()),
        (None, Some(_)) => (4096, "4 GiB RAM or more; capped at load time to the model's trained context and to free memory".to_string()),
        (None, None) => (4096, "RAM unknown; capped at load time to the model's trained context".into()),
    };
    RuntimeDefaults {
        threads,
        threads_why,
        gpu_layers,
        gpu_layers_why,
        ctx_size,
        ctx_why,
        flash_attn: None,
        flash_attn_why: None,
        ubatch: None,
        ubatch_why: None,
        tuned: None,
    }
}
