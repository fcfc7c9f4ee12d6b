//! `tunellama info`: where this build came from, what it was compiled for (as llama.cpp itself
//! reports it), this machine's tuned defaults with their reasons, and the CPU features it needs.

use crate::cpu_check;
use crate::error::Result;
use crate::llama;
use crate::output::{print_json, quiet_pipe, Out};
use crate::settings::info;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Serialize)]
struct Feature {
    name: String,
    /// `present`, `absent`, or `unchecked` (a name this runtime cannot test).
    status: &'static str,
}

#[derive(Serialize)]
struct SystemInfo {
    raw: String,
    features: BTreeMap<String, String>,
}

/// `CPU : SSE3 = 1 | AVX = 1 | ... |` → {"SSE3": "1", "AVX": "1", ...}; keys of non-CPU
/// backends are prefixed with the backend (`CUDA.ARCHS`).
pub fn parse_system_info(raw: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut backend = String::from("CPU");
    for seg in raw.split('|') {
        let mut seg = seg.trim();
        if let (Some(c), Some(e)) = (seg.find(':'), seg.find('=')) {
            if c < e {
                backend = seg[..c].trim().to_string();
                seg = seg[c + 1..].trim();
            }
        }
        if let Some((k, v)) = seg.split_once('=') {
            let k = k.trim();
            let key = if backend == "CPU" || backend.is_empty() {
                k.to_string()
            } else {
                format!("{backend}.{k}")
            };
            map.insert(key, v.trim().to_string());
        }
    }
    map
}

pub fn run(json: bool) -> Result<()> {
    llama::init(false);
    let i = info();
    let raw = llama::system_info();
    let sys = SystemInfo {
        features: parse_system_info(&raw),
        raw: raw.trim().to_string(),
    };
    let devices = llama::devices();
    let features: Vec<Feature> = i
        .compiled_for
        .required_cpu_features
        .iter()
        .map(|f| Feature {
            name: f.clone(),
            status: match cpu_check::detect(f) {
                Some(true) => "present",
                Some(false) => "absent",
                None => "unchecked",
            },
        })
        .collect();
    if json {
        return print_json(&serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "provenance": i.provenance,
            "compiled_for": {
                "target_arch": i.compiled_for.target_arch,
                "backends": i.compiled_for.backends,
                "ggml_native": i.compiled_for.ggml_native,
                "system_info": sys,
                "devices": devices,
                "vulkan_device": i.compiled_for.vulkan_device,
                "vulkan_selection": llama::vulkan_selection(),
            },
            "defaults": i.defaults,
            "serve": serve_defaults(),
            "required_cpu_features": features,
        }));
    }
    let mut o = Out::stdout();
    quiet_pipe(text(&mut o.0, &sys, &devices, &features))?;
    o.flush()
}

/// `serve --parallel`'s default on this machine (before a model's RAM check).
fn serve_parallel() -> (u32, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::serve::default_parallel(cores)
}

fn serve_defaults() -> serde_json::Value {
    let (parallel, why) = serve_parallel();
    serde_json::json!({"parallel": parallel, "parallel_why": why})
}

fn text(
    s: &mut impl Write,
    sys: &SystemInfo,
    devices: &[llama::Device],
    features: &[Feature],
) -> std::io::Result<()> {
    let i = info();
    let p = &i.provenance;
    let d = &i.defaults;
    writeln!(s, "tunellama {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(s, "\nbuild")?;
    writeln!(
        s,
        "  llama.cpp     {} (build {}, {})",
        p.llama_commit,
        p.build_number,
        if p.pinned { "pinned" } else { "NOT pinned" }
    )?;
    writeln!(s, "  tree digest   {}", p.tree_digest)?;
    writeln!(s, "  origin        {} ({})", p.origin, p.provenance)?;
    writeln!(s, "  profile hash  {}", p.profile_hash)?;
    writeln!(s, "  cache key     {}", p.key)?;
    writeln!(s, "\ncompiled for")?;
    writeln!(
        s,
        "  {} backends [{}], GGML_NATIVE={}",
        i.compiled_for.target_arch,
        i.compiled_for.backends.join(", "),
        if i.compiled_for.ggml_native {
            "ON"
        } else {
            "OFF"
        }
    )?;
    writeln!(s, "  llama.cpp says: {}", sys.raw)?;
    for dv in devices {
        writeln!(
            s,
            "  device {} ({}): {} — {:.1} of {:.1} GiB free",
            dv.name,
            dv.kind,
            dv.description,
            dv.memory_free as f64 / (1u64 << 30) as f64,
            dv.memory_total as f64 / (1u64 << 30) as f64
        )?;
    }
    if let Some(v) = &i.compiled_for.vulkan_device {
        writeln!(
            s,
            "  vulkan device {} ({}, type {}){}",
            v.index,
            v.name,
            v.device_type,
            llama::vulkan_selection()
                .map(|x| format!(", selected with {x}"))
                .unwrap_or_default()
        )?;
    }
    writeln!(s, "\ndefaults on this machine")?;
    writeln!(s, "  threads     {:<6} {}", d.threads, d.threads_why)?;
    writeln!(s, "  gpu layers  {:<6} {}", d.gpu_layers, d.gpu_layers_why)?;
    writeln!(s, "  ctx size    {:<6} {}", d.ctx_size, d.ctx_why)?;
    if let Some(fa) = &d.flash_attn {
        let why = d.flash_attn_why.as_deref().unwrap_or("");
        writeln!(s, "  flash attn  {fa:<6} {why}")?;
    }
    if let Some(u) = d.ubatch {
        let why = d.ubatch_why.as_deref().unwrap_or("");
        writeln!(s, "  ubatch      {u:<6} {why}")?;
    }
    if let Some(t) = &d.tuned {
        writeln!(
            s,
            "\ntuned by measurement on {} (against build {})",
            t.on, t.base_key
        )?;
        for e in &t.evidence {
            writeln!(s, "  {e}")?;
        }
    }
    let (parallel, why) = serve_parallel();
    writeln!(s, "  parallel    {parallel:<6} {why} (`serve --parallel`)")?;
    writeln!(s, "\nrequired CPU features")?;
    for f in features {
        writeln!(s, "  {:<12} {}", f.name, f.status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn system_info_becomes_a_feature_map_with_backend_prefixes() {
        let m = super::parse_system_info(
            "CPU : SSE3 = 1 | AVX512 = 1 | OPENMP = 1 | CUDA : ARCHS = 890 | USE_GRAPHS = 1 | ",
        );
        assert_eq!(m["SSE3"], "1");
        assert_eq!(m["AVX512"], "1");
        assert_eq!(m["OPENMP"], "1");
        assert_eq!(m["CUDA.ARCHS"], "890");
        assert_eq!(m["CUDA.USE_GRAPHS"], "1");
    }
}
