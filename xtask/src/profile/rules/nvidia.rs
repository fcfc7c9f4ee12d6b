//! The CUDA decision: toolkit and GPUs, the architectures to compile (from `profiles/cuda.toml`),
//! driver warnings, and why not when CUDA is not chosen.

use super::super::cuda::{plan_architectures, CudaTable};
use super::super::overrides::{Overrides, Switch};
use super::super::Decision;
use crate::machine::Machine;
use crate::probe::tools::version_at_least;

fn cuda_fact(m: &Machine) -> String {
    let tk = m
        .cuda
        .found()
        .map(|c| format!("nvcc {} at {}", c.version, c.nvcc))
        .unwrap_or_default();
    let g: Vec<String> = m
        .gpus()
        .iter()
        .map(|g| format!("{} (cc {})", g.name, g.compute_capability))
        .collect();
    format!(
        "{tk}; GPUs: {}",
        if g.is_empty() {
            "none".into()
        } else {
            g.join(", ")
        }
    )
}

pub fn decide(
    m: &Machine,
    o: &Overrides,
    table: &CudaTable,
    src: &str,
    d: &mut Vec<Decision>,
    warnings: &mut Vec<String>,
    hints: &mut Vec<String>,
) -> Result<String, String> {
    if o.backends.cuda == Switch::Off {
        return Err(format!("disabled by {src}"));
    }
    let forced = o.backends.cuda == Switch::On;
    let gpus = m.gpus();
    let tk = m.cuda.found();
    if tk.is_none() && !forced {
        if gpus.is_empty() {
            return Err(format!(
                "no NVIDIA GPU ({}); no nvcc ({})",
                m.nvidia.why_absent(),
                m.cuda.why_absent()
            ));
        }
        let needed = gpus
            .iter()
            .filter_map(|g| table.first_toolkit_for(&g.compute_capability))
            .fold("11.8", |a, b| if version_at_least(b, a) { b } else { a });
        hints.push(format!(
            "NVIDIA GPU found ({}) but no CUDA toolkit: install CUDA {needed} or newer (Debian/Ubuntu: NVIDIA's cuda-toolkit packages, or `apt-get install nvidia-cuda-toolkit` where that version suffices), or let `cargo xtask prereqs --install --cuda-wheels` install CUDA {} from NVIDIA's Python wheels into the cache (GPUs from Turing, sm_75, on; the CUDA 12 wheels have no nvcc), then run `cargo xtask setup` again for a GPU build",
            gpus.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", "),
            crate::cuda_wheels::NVCC_VERSION
        ));
        return Err(format!(
            "NVIDIA GPU present but no nvcc ({})",
            m.cuda.why_absent()
        ));
    }
    if gpus.is_empty() && !forced {
        return Err(format!(
            "CUDA toolkit present but no NVIDIA GPU ({})",
            m.nvidia.why_absent()
        ));
    }
    let (archs, why) = if let Some(list) = &o.cuda.architectures {
        (list.clone(), format!("override from {src}"))
    } else if let Some(tk) = tk {
        let plan = plan_architectures(table, gpus, &tk.version);
        warnings.extend(plan.warnings.iter().cloned());
        if let Some(t) = table.toolkit_min_driver(&tk.version) {
            for g in gpus {
                if !version_at_least(&g.driver_version, &t.min_driver) {
                    warnings.push(format!(
                        "driver {} of GPU {} is older than {} required by CUDA {}: the build will not run until the driver is updated",
                        g.driver_version, g.index, t.min_driver, tk.version
                    ));
                }
            }
        }
        (plan.architectures, plan.reasons.join("; "))
    } else {
        (Vec::new(), String::new())
    };
    if archs.is_empty() && !forced {
        let v = tk.map(|t| t.version.as_str()).unwrap_or("?");
        return Err(format!("CUDA {v} cannot compile for any local GPU"));
    }
    let fact = if forced {
        format!("override from {src}")
    } else {
        cuda_fact(m)
    };
    d.push(Decision::new(
        "GGML_CUDA",
        "ON",
        "BOOL",
        "NVIDIA GPU + CUDA toolkit: offload to the GPU",
        fact,
    ));
    if tk.is_none() {
        warnings.push(format!(
            "CUDA forced on by {src} but no nvcc was found: configure will fail"
        ));
    }
    d.push(Decision::new(
        "GGML_CUDA_NO_VMM",
        "ON",
        "BOOL",
        "no direct driver-API calls (cuMemCreate pool), so the binary does not link libcuda: it starts without the NVIDIA driver and says why CUDA is unusable (docs/cuda.md)",
        "static runtime binary that must report a missing driver instead of failing to load",
    ));
    if let Some(tk) = tk {
        if let Some(root) = &tk.root {
            let whence = if tk.from_wheels {
                "installed from NVIDIA's CUDA wheels into the cache"
            } else {
                "named by CUDAToolkit_ROOT/CUDA_PATH"
            };
            d.push(Decision::new(
                "CUDAToolkit_ROOT",
                root,
                "PATH",
                "the CUDA toolkit CMake must use (it would not find this one by itself)",
                format!("cuda.root: {whence}"),
            ));
            d.push(Decision::new(
                "CMAKE_CUDA_COMPILER",
                &tk.nvcc,
                "FILEPATH",
                "that toolkit's nvcc",
                format!("nvcc {} at {} ({})", tk.version, tk.nvcc, tk.source),
            ));
        }
    }
    if archs.is_empty() {
        warnings.push("CUDA forced on without a usable local GPU: llama.cpp's default architecture list is used".into());
    } else {
        d.push(Decision::new(
            "CMAKE_CUDA_ARCHITECTURES",
            &archs.join(";"),
            "STRING",
            "exactly the local GPUs' architectures (a smaller, faster build than the default list)",
            why,
        ));
    }
    Ok(format!(
        "CUDA {}{}: {}; {}",
        tk.map(|t| t.version.as_str()).unwrap_or("?"),
        if tk.is_some_and(|t| t.from_wheels) {
            " (wheels)"
        } else {
            ""
        },
        if archs.is_empty() {
            "default architectures".into()
        } else {
            archs.join(";")
        },
        CUDA_PROOF
    ))
}

/// What a CUDA build proves where it is built (docs/cuda.md), for `profile --explain`.
pub const CUDA_PROOF: &str = "verified (logits vs the portable build) only on a machine with a usable NVIDIA GPU; elsewhere setup proves it compiles, links and starts, and that the runtime reports the missing driver/device (exit 4)";
