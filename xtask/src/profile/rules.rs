//! The decision rules: from Machine facts (+ overrides) to CMake cache entries, each carrying the
//! fact that chose it, plus a "why not" for every backend not chosen. GPU generations come from
//! the data table in `profiles/cuda.toml` (see `cuda.rs`), not from code.

use super::cuda::{plan_architectures, CudaTable};
use super::overrides::{Overrides, Switch};
use super::{Backend, Decision, RuntimeDefaults};
use crate::machine::{CompilerFamily, Machine, Origin, Vulkan, VulkanDevice};
use crate::probe::tools::version_at_least;

/// ISA options of this llama.cpp, with the declared features that must all be present for ON.
/// With GGML_NATIVE=OFF the first six default to ON (a Haswell-level build), so every one is set
/// explicitly (LLAMA_CPP_FACTS.md, "CMake options").
pub(crate) const X86_ISA: &[(&str, &[&str])] = &[
    ("GGML_SSE42", &["sse4.2"]),
    ("GGML_AVX", &["avx"]),
    ("GGML_AVX2", &["avx2"]),
    ("GGML_BMI2", &["bmi2"]),
    ("GGML_FMA", &["fma"]),
    ("GGML_F16C", &["f16c"]),
    ("GGML_AVX_VNNI", &["avxvnni"]),
    // ggml's GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
    (
        "GGML_AVX512",
        &["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
    ),
    ("GGML_AVX512_VBMI", &["avx512vbmi"]),
    ("GGML_AVX512_VNNI", &["avx512vnni"]),
    ("GGML_AVX512_BF16", &["avx512bf16"]),
    ("GGML_AMX_TILE", &["amx-tile"]),
    ("GGML_AMX_INT8", &["amx-int8"]),
    ("GGML_AMX_BF16", &["amx-bf16"]),
];

/// Declared arm64 features that need an Armv8.2-A base, with the `-march` extension that enables
/// each. They are optional extensions from v8.2 on (Arm ARM, "Armv8.2 extensions"; GCC's
/// "AArch64 Options" accepts them only on an `armv8.2-a` or later base), so a machine declaring
/// none of them gets plain `armv8-a`.
pub(crate) const ARM_V82_EXTENSIONS: &[(&str, &str)] = &[
    ("fp16", "+fp16"),
    ("dotprod", "+dotprod"),
    ("i8mm", "+i8mm"),
    ("sve", "+sve"),
];

/// `GGML_CPU_ARM_ARCH` for a declared arm64 machine, with why and the fact that chose it.
///
/// The base is `armv8-a` (Armv8.0: Cortex-A53/A72, Raspberry Pi 3/4, Graviton1): code built for it
/// runs on every arm64 CPU, so it is the portable reference. `armv8.2-a` is used only when a
/// declared feature needs it (fp16, dotprod, i8mm, sve), and then every such feature is added
/// explicitly: `armv8.2-a` alone implies none of them, and a v8.2 build runs only where they exist
/// (a v8.2+dotprod build dies with SIGILL on a Cortex-A72; LLAMA_CPP_FACTS.md, arm64).
fn arm_arch(m: &Machine) -> (String, String, String) {
    let used: Vec<&str> = ARM_V82_EXTENSIONS
        .iter()
        .filter(|(f, _)| m.cpu.has(f))
        .map(|(f, _)| *f)
        .collect();
    if used.is_empty() {
        let ignored = if m.cpu.features.is_empty() {
            "none".to_string()
        } else {
            m.cpu.features.join(", ")
        };
        return (
            "armv8-a".into(),
            "Armv8.0 base: no declared feature needs more, so the code runs on every arm64 CPU (Cortex-A53/A72 included)".into(),
            format!("cpu.features = [{ignored}]: none of fp16, dotprod, i8mm, sve"),
        );
    }
    let mut arch = String::from("armv8.2-a");
    for (f, ext) in ARM_V82_EXTENSIONS {
        if used.contains(f) {
            arch.push_str(ext);
        }
    }
    (
        arch,
        format!(
            "Armv8.2 base because the declared {} need it; each extension named explicitly (armv8.2-a alone implies none); this build needs a CPU with them and is refused on older ones",
            used.join(", ")
        ),
        format!("cpu.features has {}", used.join(", ")),
    )
}

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
    let mut d: Vec<Decision> = Vec::new();
    let mut warnings = Vec::new();
    let mut hints = Vec::new();

    // --- the library-only build shape: fixed, explained by the pinned tree's facts.
    let fixed = "the pinned tree ships no app/tools/tests sources (LLAMA_CPP_FACTS.md)";
    d.push(Decision::new(
        "CMAKE_BUILD_TYPE",
        "Release",
        "STRING",
        "optimised build",
        "always",
    ));
    d.push(Decision::new(
        "BUILD_SHARED_LIBS",
        "OFF",
        "BOOL",
        "static libraries: the runtime is one self-contained binary",
        "always",
    ));
    for opt in [
        "LLAMA_BUILD_TESTS",
        "LLAMA_BUILD_EXAMPLES",
        "LLAMA_BUILD_TOOLS",
        "LLAMA_BUILD_SERVER",
        "LLAMA_BUILD_APP",
    ] {
        d.push(Decision::new(
            opt,
            "OFF",
            "BOOL",
            "not part of a library-only build",
            fixed,
        ));
    }
    d.push(Decision::new(
        "LLAMA_BUILD_COMMON",
        "OFF",
        "BOOL",
        "the runtime does not use libcommon; off halves the build time",
        "always (LLAMA_CPP_FACTS.md: 1 m 32 s vs 2 m 44 s)",
    ));
    d.push(Decision::new(
        "LLAMA_OPENSSL",
        "OFF",
        "BOOL",
        "no HTTP(S) download code in the library (models are fetched by tunellama)",
        "always",
    ));
    d.push(Decision::new(
        "GGML_CCACHE",
        "OFF",
        "BOOL",
        "tunellama caches whole builds; ccache would only add a warning when absent",
        "always",
    ));
    d.push(Decision::new(
        "GGML_OPENMP",
        "ON",
        "BOOL",
        "OpenMP thread pool (the link description adds gomp/omp)",
        "always",
    ));

    // --- CPU
    let declared = m.origin == Origin::Declared;
    if declared {
        d.push(Decision::new(
            "GGML_NATIVE",
            "OFF",
            "BOOL",
            "declared machine: code must run on any CPU with the declared features, not on the build host's",
            format!("machine.origin = declared{}", m.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()),
        ));
        if m.is_x86_64() {
            for (opt, needs) in X86_ISA {
                let have = needs.iter().all(|f| m.cpu.has(f));
                let fact = if have {
                    format!("cpu.features has {}", needs.join(", "))
                } else {
                    let missing: Vec<_> = needs.iter().filter(|f| !m.cpu.has(f)).copied().collect();
                    format!("cpu.features lacks {}", missing.join(", "))
                };
                d.push(Decision::new(
                    opt,
                    &on(have),
                    "BOOL",
                    format!(
                        "explicit ISA level ({} declared)",
                        if have { "feature" } else { "feature not" }
                    ),
                    fact,
                ));
            }
        } else if m.arch.value == "aarch64" {
            let (arch, why, fact) = arm_arch(m);
            hints.push(format!(
                "what is proven for this arm64 build: on arm64 hardware the runtime is built and verified as usual; on an x86-64 Linux host (`cargo xtask cross`, `dist`) it is cross-built and proven at the C level only: logits under `qemu-aarch64 -cpu {}` vs the x86 portable build, and refusal (exit 3) on a CPU lacking a required feature; no Rust runtime (docs/arm64.md)",
                crate::cross::cpu_for(&crate::requirements::arm_extensions(&arch))
                    .map_or("max", |c| c.model)
            ));
            d.push(Decision::new(
                "GGML_CPU_ARM_ARCH",
                &arch,
                "STRING",
                why,
                fact,
            ));
        }
    } else {
        d.push(Decision::new(
            "GGML_NATIVE",
            "ON",
            "BOOL",
            "local build: compile for exactly this CPU (-march=native)",
            format!(
                "machine.origin = probed; cpu {} with {}",
                m.cpu.model.as_deref().unwrap_or("?"),
                m.cpu
                    .x86_64_level
                    .map(|l| format!("x86-64-v{l}"))
                    .unwrap_or_else(|| m.cpu.features.join(" "))
            ),
        ));
        let gcc = matches!(m.compilers.c.found(), Some(c) if c.family == CompilerFamily::Gcc);
        if m.is_x86_64() && gcc {
            for var in ["CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"] {
                d.push(Decision::new(
                    var,
                    "-mtune=generic",
                    "STRING",
                    "keep -march=native's instructions but generic scheduling: +4-7% prompt speed measured with gcc 12 (LLAMA_CPP_FACTS.md)",
                    "compilers.c.family = gcc on x86_64",
                ));
            }
        }
    }

    // --- GPU backends, in priority order: CUDA, Metal, HIP, Vulkan (one GPU backend per build).
    let mut backends = Vec::new();
    let mut gpu_chosen: Option<&'static str> = None;
    let override_src = o
        .origin
        .clone()
        .unwrap_or_else(|| "profiles/local.toml".into());

    // CUDA
    let cuda_choice = decide_cuda(
        m,
        o,
        table,
        &override_src,
        &mut d,
        &mut warnings,
        &mut hints,
    );
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
            Some(v) => decide_vulkan(v, o, &override_src, &mut d, &mut warnings),
            None => Err(m.vulkan.why_absent()),
        }
    };
    if vulkan.is_ok() {
        gpu_chosen = Some("vulkan");
    }
    backends.push(Backend::from_result("vulkan", vulkan));

    // --- user defines last, so they win (and say so).
    for (name, value) in &o.defines {
        let (v, kind) = value.cmake();
        d.retain(|x| &x.name != name);
        let mut dec = Decision::new(name, &v, kind, "user define", format!("[defines] {name}"));
        dec.overridden = Some(override_src.clone());
        d.push(dec);
    }

    let runtime = runtime_defaults(m, o, gpu_chosen, &override_src);
    Outcome {
        decisions: d,
        backends,
        runtime,
        warnings,
        hints,
    }
}

/// The device a Vulkan build is for: the first real GPU (discrete, integrated, virtual) the
/// loader lists; a CPU-type device (lavapipe, SwiftShader) only when the override forces Vulkan
/// on. `None`: no device to build for.
pub fn vulkan_target(v: &Vulkan, forced: bool) -> Option<&VulkanDevice> {
    v.physical_devices
        .iter()
        .find(|d| d.device_type.is_gpu())
        .or_else(|| forced.then(|| v.physical_devices.first()).flatten())
}

fn describe_device(d: &VulkanDevice) -> String {
    format!(
        "{} (device {}, type {}{})",
        d.name,
        d.index,
        d.device_type.as_str(),
        d.memory_bytes
            .map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_default()
    )
}

fn decide_vulkan(
    v: &Vulkan,
    o: &Overrides,
    src: &str,
    d: &mut Vec<Decision>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let forced = o.backends.vulkan == Switch::On;
    let glslc = v.glslc.as_deref().unwrap_or("missing");
    // Machine files recorded before device types were probed list names only.
    let legacy_software = v.physical_devices.is_empty()
        && !v.devices.is_empty()
        && v.devices.iter().all(|n| is_software_device(n));
    let target = vulkan_target(v, forced);
    let (fact, reason) = match target {
        Some(dev) if dev.device_type.is_gpu() => (
            format!("vulkaninfo lists {}", describe_device(dev)),
            "GPU through Vulkan (no CUDA/Metal/HIP)".to_string(),
        ),
        Some(dev) => (
            format!("vulkaninfo lists only CPU-type devices; {} forced on by {src}", describe_device(dev)),
            format!("Vulkan on the CPU-type device {} because {src} asks for it: proves the offload path and numerics, not GPU speed; the runtime selects it with GGML_VK_VISIBLE_DEVICES={} (ggml skips CPU-type devices otherwise)", dev.name, dev.index),
        ),
        None if forced => (
            format!("forced on by {src}; no device listed ({})", v.source),
            "Vulkan forced on by the override".to_string(),
        ),
        None if v.physical_devices.is_empty() && !v.devices.is_empty() && !legacy_software => (
            format!("vulkaninfo lists {}", v.devices.join(", ")),
            "GPU through Vulkan (no CUDA/Metal/HIP)".to_string(),
        ),
        None if !v.physical_devices.is_empty() || legacy_software => {
            let cpu: Vec<String> = if v.physical_devices.is_empty() {
                v.devices.iter().map(|n| format!("{n} (software)")).collect()
            } else {
                v.physical_devices.iter().map(describe_device).collect()
            };
            return Err(format!(
                "only CPU-type Vulkan devices: {}; ggml skips them and a Vulkan build would compute on the CPU anyway (set [backends] vulkan = \"on\" in {src} to build for one: it proves the offload path, not speed)",
                cpu.join(", ")
            ));
        }
        None => {
            return Err(format!(
                "loader present ({}) but no Vulkan device listed ({}); `cargo xtask prereqs --vulkan --install` installs vulkaninfo so the probe can ask the loader",
                v.loader, v.source
            ))
        }
    };
    if v.glslc.is_none() {
        warnings.push("no glslc to compile ggml's Vulkan shaders: `cargo xtask prereqs --install` (or setup) installs it".into());
    }
    d.push(Decision::new(
        "GGML_VULKAN",
        "ON",
        "BOOL",
        reason,
        format!("{fact}; loader {}, glslc {glslc}", v.loader),
    ));
    match &v.headers {
        Some(h) if h.sufficient && h.provider != "system" => d.push(Decision::new(
            "Vulkan_INCLUDE_DIR",
            &h.include_dir,
            "PATH",
            format!("Vulkan headers {} (the system's are too old for the pinned tree: it uses VK_EXT_layer_settings)", h.version),
            h.source.clone(),
        )),
        Some(h) if h.sufficient => {}
        Some(h) => warnings.push(format!(
            "Vulkan headers {} ({}) are too old for the pinned llama.cpp (no VK_EXT_layer_settings): `cargo xtask prereqs --install` (or setup) fetches newer ones into the cache",
            h.version, h.include_dir
        )),
        None => warnings.push("no Vulkan headers found: `cargo xtask prereqs --install` installs them".into()),
    }
    Ok(match target {
        Some(dev) => format!("Vulkan: {}", describe_device(dev)),
        None => format!("Vulkan: {}", v.devices.join(", ")),
    })
}

fn is_software_device(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("llvmpipe") || n.contains("swiftshader") || n.contains("lavapipe")
}

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

fn runtime_defaults(m: &Machine, o: &Overrides, gpu: Option<&str>, src: &str) -> RuntimeDefaults {
    let (threads, threads_why) = match (o.runtime.threads, m.cpu.physical_cores, m.cpu.logical_cores) {
        (Some(t), _, _) => (t, format!("override from {src}")),
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
        (None, Some(r)) if r < 4 => (2048, format!("{r} GiB RAM: a small KV cache")),
        (None, Some(r)) => (4096, format!("{r} GiB RAM; capped at load time to the model's trained context and to free memory")),
        (None, None) => (4096, "RAM unknown; capped at load time to the model's trained context".into()),
    };
    RuntimeDefaults {
        threads,
        threads_why,
        gpu_layers,
        gpu_layers_why,
        ctx_size,
        ctx_why,
    }
}

fn decide_cuda(
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

#[cfg(test)]
mod arm_tests {
    use super::*;

    fn arm(features: &[&str]) -> String {
        let mut m: Machine = serde_json::from_str(include_str!(
            "../../../tests/fixtures/machines/declared-linux-arm64-armv8.json"
        ))
        .unwrap();
        m.cpu.features = features.iter().map(|f| f.to_string()).collect();
        arm_arch(&m).0
    }

    #[test]
    fn arm64_base_is_armv8_0_unless_a_declared_feature_needs_armv8_2() {
        assert_eq!(arm(&[]), "armv8-a");
        // NEON (AdvSIMD) is part of every Armv8.0-A core: no reason for v8.2.
        assert_eq!(arm(&["neon"]), "armv8-a");
        assert_eq!(arm(&["neon", "dotprod"]), "armv8.2-a+dotprod");
        assert_eq!(arm(&["fp16"]), "armv8.2-a+fp16");
        assert_eq!(
            arm(&["sve", "i8mm", "dotprod", "fp16"]),
            "armv8.2-a+fp16+dotprod+i8mm+sve"
        );
    }

    #[test]
    fn the_portable_arm64_reference_is_armv8_0() {
        let m: Machine = serde_json::from_str(include_str!(
            "../../../tests/fixtures/machines/declared-linux-arm64-v82-dotprod.json"
        ))
        .unwrap();
        let p = crate::artifact::portable_machine(&m);
        assert_eq!(arm_arch(&p).0, "armv8-a");
        assert_eq!(arm_arch(&m).0, "armv8.2-a+dotprod");
    }
}
