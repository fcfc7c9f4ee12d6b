//! Human-readable renderings of stage data (the `--json` forms are the serde structs themselves).

use crate::machine::*;
use std::fmt::Write;

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn detection<T>(d: &Detection<T>, found: impl Fn(&T) -> String) -> String {
    match d {
        Detection::Found(t) => found(t),
        other => other.why_absent(),
    }
}

pub fn machine_text(m: &Machine) -> String {
    let mut s = String::new();
    let origin = match m.origin {
        Origin::Probed => "probed".to_string(),
        Origin::Declared => format!(
            "declared{}",
            m.name
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
    };
    let _ = writeln!(s, "machine      {origin}: {} {}", m.os.value, m.arch.value);
    let c = &m.cpu;
    let _ = writeln!(
        s,
        "cpu          {} {}  [{}]",
        c.vendor.as_deref().unwrap_or("?"),
        c.model.as_deref().unwrap_or("?"),
        c.source
    );
    if let Some(l) = c.x86_64_level {
        let _ = writeln!(s, "x86-64 level v{l}");
    }
    let _ = writeln!(
        s,
        "features     {}",
        if c.features.is_empty() {
            "(none listed)".into()
        } else {
            c.features.join(" ")
        }
    );
    let _ = writeln!(
        s,
        "cores        {} physical, {} logical",
        c.physical_cores
            .map(|n| n.to_string())
            .unwrap_or("?".into()),
        c.logical_cores.map(|n| n.to_string()).unwrap_or("?".into())
    );
    if let Some(mem) = &m.memory {
        let _ = writeln!(
            s,
            "memory       {} total, {} available  [{}]",
            gib(mem.total_bytes),
            mem.available_bytes.map(gib).unwrap_or("?".into()),
            mem.source
        );
    }
    if let Some(d) = &m.disk {
        let _ = writeln!(
            s,
            "disk         {} free at {}  [{}]",
            gib(d.free_bytes),
            d.path,
            d.source
        );
    }
    let comp = |d: &Detection<Compiler>| {
        detection(d, |c| {
            format!(
                "{} {} at {}  [{}]",
                c.family.as_str(),
                c.version,
                c.path,
                c.source
            )
        })
    };
    let _ = writeln!(s, "C compiler   {}", comp(&m.compilers.c));
    let _ = writeln!(s, "C++ compiler {}", comp(&m.compilers.cxx));
    let tool = |d: &Detection<Tool>| detection(d, |t| format!("{} at {}", t.version, t.path));
    let _ = writeln!(s, "cmake        {}", tool(&m.tools.cmake));
    let _ = writeln!(s, "ninja        {}", tool(&m.tools.ninja));
    let _ = writeln!(s, "git          {}", tool(&m.tools.git));
    // The WebAssembly toolchain (docs/wasm.md); absent from recordings made before it was probed.
    for (name, d) in [("emcc", &m.tools.emcc), ("node", &m.tools.node)] {
        if !d.is_unknown() {
            let _ = writeln!(s, "{name:<12} {}", tool(d));
        }
    }
    let _ = writeln!(
        s,
        "CUDA         {}",
        detection(&m.cuda, |c| format!("{} (nvcc at {})", c.version, c.nvcc))
    );
    let _ = writeln!(
        s,
        "NVIDIA GPUs  {}",
        detection(&m.nvidia, |n| if n.gpus.is_empty() {
            "none".into()
        } else {
            n.gpus
                .iter()
                .map(|g| {
                    format!(
                        "#{} {} (sm {}, {} MiB, driver {})",
                        g.index, g.name, g.compute_capability, g.vram_mib, g.driver_version
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
    );
    let _ = writeln!(
        s,
        "Vulkan       {}",
        detection(&m.vulkan, |v| format!(
            "loader {}, devices [{}], glslc {}, headers {}",
            v.loader,
            if v.physical_devices.is_empty() {
                v.devices.join(", ")
            } else {
                v.physical_devices
                    .iter()
                    .map(|d| {
                        format!(
                            "{}: {} ({}{})",
                            d.index,
                            d.name,
                            d.device_type.as_str(),
                            d.memory_bytes
                                .map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            v.glslc.as_deref().unwrap_or("missing"),
            v.headers
                .as_ref()
                .map(|h| format!(
                    "{} ({}, {}{})",
                    h.version,
                    h.include_dir,
                    h.provider,
                    if h.sufficient {
                        ""
                    } else {
                        ", too old for the pinned tree"
                    }
                ))
                .unwrap_or_else(|| "missing".into())
        ))
    );
    let _ = writeln!(
        s,
        "Metal        {}",
        detection(&m.metal, |mt| mt.source.clone())
    );
    let _ = writeln!(
        s,
        "ROCm         {}",
        detection(&m.rocm, |r| format!(
            "targets [{}], HIP {}",
            r.gfx_targets.join(", "),
            r.hip_version.as_deref().unwrap_or("?")
        ))
    );
    s
}

/// `profile --explain`: every decision with its fact, then the backends and runtime defaults.
pub fn profile_explain(p: &crate::profile::Profile) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "profile for {} (hash {})", p.machine, p.short_hash());
    let w = p.decisions.iter().map(|d| d.name.len()).max().unwrap_or(10);
    let wv = p
        .decisions
        .iter()
        .map(|d| d.value.len())
        .max()
        .unwrap_or(5)
        .min(24);
    let _ = writeln!(s, "\n{:<w$}  {:<wv$}  why (fact)", "option", "value");
    for d in &p.decisions {
        let src = d
            .overridden
            .as_ref()
            .map(|o| format!(" [override: {o}]"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<w$}  {:<wv$}  {} ({}){src}",
            d.name, d.value, d.reason, d.fact
        );
    }
    let _ = writeln!(s, "\nbackends");
    for b in &p.backends {
        let _ = writeln!(
            s,
            "  {:<7} {}  {}",
            b.name,
            if b.chosen { "yes" } else { "no " },
            b.why
        );
    }
    let _ = writeln!(s, "\nwhat setup proves for this build\n  {}", p.proof);
    let r = &p.runtime;
    let _ = writeln!(s, "\nruntime defaults");
    let _ = writeln!(s, "  threads     {:<6} {}", r.threads, r.threads_why);
    let _ = writeln!(s, "  gpu layers  {:<6} {}", r.gpu_layers, r.gpu_layers_why);
    let _ = writeln!(s, "  context     {:<6} {}", r.ctx_size, r.ctx_why);
    if let Some(fa) = &r.flash_attn {
        let why = r.flash_attn_why.as_deref().unwrap_or("");
        let _ = writeln!(s, "  flash attn  {fa:<6} {why}");
    }
    if let Some(u) = r.ubatch {
        let why = r.ubatch_why.as_deref().unwrap_or("");
        let _ = writeln!(s, "  ubatch      {u:<6} {why}");
    }
    if let Some(t) = &r.tuned {
        let _ = writeln!(
            s,
            "\ntuned by measurement on {} (setup --tune; record tune.json of build {})",
            t.on, t.base_key
        );
        for e in &t.evidence {
            let _ = writeln!(s, "  {e}");
        }
    }
    for x in &p.warnings {
        let _ = writeln!(s, "warning: {x}");
    }
    for h in &p.hints {
        let _ = writeln!(s, "hint: {h}");
    }
    s
}
