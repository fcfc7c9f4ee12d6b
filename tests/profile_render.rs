//! Rendered profiles of recorded machines, snapshot-tested, and the determinism promise.

use std::path::{Path, PathBuf};
use xtask::machine::Machine;
use xtask::profile::overrides::Overrides;
use xtask::profile::{plan, Profile};

fn machine(name: &str) -> Machine {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/machines")
        .join(format!("{name}.json"));
    Machine::from_json_file(&p).unwrap()
}

/// What a reviewer needs to see: the script, the backends with their reasons, runtime defaults.
fn snapshot_text(p: &Profile) -> String {
    let mut s = p.cmake.clone();
    s.push_str("\n# --- backends\n");
    for b in &p.backends {
        s.push_str(&format!("# {} chosen={} : {}\n", b.name, b.chosen, b.why));
    }
    s.push_str(&format!("# --- runtime\n# {:?}\n", p.runtime));
    for w in &p.warnings {
        s.push_str(&format!("# warning: {w}\n"));
    }
    for h in &p.hints {
        s.push_str(&format!("# hint: {h}\n"));
    }
    s
}

macro_rules! snapshot_test {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            let p = plan(&machine($file), &Overrides::default());
            insta::assert_snapshot!($file, snapshot_text(&p));
        }
    };
}

snapshot_test!(this_machine_epyc_avx512, "this-machine-epyc-avx512");
snapshot_test!(avx2_desktop, "avx2-desktop-haswell");
snapshot_test!(laptop_rtx4050_cuda124, "laptop-rtx4050-cuda12.4");
snapshot_test!(apple_m2, "apple-m2");
snapshot_test!(arm64_linux_server, "arm64-linux-server-graviton3");
snapshot_test!(nvidia_gpu_without_toolkit, "nvidia-gpu-no-toolkit");
snapshot_test!(declared_ci_variant_v3, "declared-linux-x86_64-v3");
snapshot_test!(declared_arm64_armv8, "declared-linux-arm64-armv8");
snapshot_test!(
    declared_arm64_v82_dotprod,
    "declared-linux-arm64-v82-dotprod"
);

#[test]
fn rendering_twice_gives_identical_bytes_and_hash() {
    for name in [
        "this-machine-epyc-avx512",
        "laptop-rtx4050-cuda12.4",
        "declared-linux-x86_64-v3",
    ] {
        let m = machine(name);
        let a = plan(&m, &Overrides::default());
        let b = plan(&m.clone(), &Overrides::default());
        assert_eq!(a.cmake.as_bytes(), b.cmake.as_bytes(), "{name}");
        assert_eq!(a.hash, b.hash);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }
}

#[test]
fn a_changed_fact_changes_the_hash() {
    let m = machine("laptop-rtx4050-cuda12.4");
    let mut other = m.clone();
    if let xtask::machine::Detection::Found(n) = &mut other.nvidia {
        n.gpus[0].compute_capability = "8.6".into();
    }
    assert_ne!(
        plan(&m, &Overrides::default()).hash,
        plan(&other, &Overrides::default()).hash
    );
}

#[test]
fn declared_machine_sets_every_isa_option_explicitly() {
    let p = plan(&machine("declared-linux-x86_64-v3"), &Overrides::default());
    assert_eq!(p.decision("GGML_NATIVE"), Some("OFF"));
    // With NATIVE off these six default to ON in this llama.cpp: each must be explicit.
    for opt in [
        "GGML_SSE42",
        "GGML_AVX",
        "GGML_AVX2",
        "GGML_BMI2",
        "GGML_FMA",
        "GGML_F16C",
    ] {
        assert_eq!(p.decision(opt), Some("ON"), "{opt}");
    }
    for opt in [
        "GGML_AVX512",
        "GGML_AVX512_VNNI",
        "GGML_AVX_VNNI",
        "GGML_AMX_INT8",
    ] {
        assert_eq!(p.decision(opt), Some("OFF"), "{opt}");
    }
    let mut baseline = machine("declared-linux-x86_64-v3");
    baseline.cpu.features.clear();
    let p = plan(&baseline, &Overrides::default());
    for opt in [
        "GGML_SSE42",
        "GGML_AVX",
        "GGML_AVX2",
        "GGML_BMI2",
        "GGML_FMA",
        "GGML_F16C",
    ] {
        assert_eq!(p.decision(opt), Some("OFF"), "baseline {opt}");
    }
}

#[test]
fn no_profile_ever_uses_obsolete_option_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/machines");
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let p = plan(
                &Machine::from_json_file(&path).unwrap(),
                &Overrides::default(),
            );
            for bad in [
                "LLAMA_CUBLAS",
                "LLAMA_CUDA",
                "LLAMA_METAL",
                "LLAMA_NATIVE",
                "LLAMA_CURL",
                "GGML_CUDA_F16",
            ] {
                assert!(
                    !p.cmake.contains(&format!("set({bad} ")),
                    "{} uses {bad}",
                    path.display()
                );
            }
            // Library-only, static, Release: always.
            for (opt, v) in [
                ("BUILD_SHARED_LIBS", "OFF"),
                ("LLAMA_BUILD_TESTS", "OFF"),
                ("LLAMA_BUILD_TOOLS", "OFF"),
                ("LLAMA_BUILD_SERVER", "OFF"),
                ("CMAKE_BUILD_TYPE", "Release"),
            ] {
                assert_eq!(p.decision(opt), Some(v), "{} {opt}", path.display());
            }
        }
    }
}

#[test]
fn forcing_a_backend_off_is_explained_as_an_override() {
    let o = Overrides::parse("[backends]\ncuda = \"off\"\n", "profiles/local.toml").unwrap();
    let p = plan(&machine("laptop-rtx4050-cuda12.4"), &o);
    assert_eq!(p.decision("GGML_CUDA"), None);
    let cuda = p.backends.iter().find(|b| b.name == "cuda").unwrap();
    assert!(
        !cuda.chosen && cuda.why.contains("profiles/local.toml"),
        "{cuda:?}"
    );
}

#[test]
fn pinned_architectures_override_the_detected_ones() {
    let o = Overrides::parse("[cuda]\narchitectures = [\"86\", \"89\"]\n", "local.toml").unwrap();
    let p = plan(&machine("laptop-rtx4050-cuda12.4"), &o);
    assert_eq!(p.decision("CMAKE_CUDA_ARCHITECTURES"), Some("86;89"));
}

#[test]
fn strict_templates_reject_an_unknown_variable() {
    let err = xtask::profile::render_cmake(
        "{{ machine }} {{ no_such_thing }}",
        &xtask::profile::TemplateContext {
            machine: "m",
            decisions: &[],
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("undefined"), "{err}");
}

/// A recorded machine given the Vulkan facts of a recorded `vulkaninfo` output.
fn with_vulkan(recorded: &str, headers_sufficient: bool) -> Machine {
    use xtask::machine::{Detection, Vulkan, VulkanHeaders};
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/recorded")
            .join(recorded),
    )
    .unwrap();
    let devices = xtask::probe::accel::parse_vulkaninfo(&text);
    let mut m = machine("this-machine-epyc-avx512");
    m.vulkan = Detection::Found(Vulkan {
        loader: "/usr/lib/x86_64-linux-gnu/libvulkan.so.1".into(),
        devices: devices.iter().map(|d| d.name.clone()).collect(),
        physical_devices: devices,
        glslc: Some("/usr/bin/glslc".into()),
        spirv_headers: Some("/usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake".into()),
        headers: Some(if headers_sufficient {
            VulkanHeaders {
                include_dir: "/cache/toolchains/vulkan-headers-1.4.309/usr/include".into(),
                version: "1.4.309".into(),
                sufficient: true,
                provider: "cache".into(),
                source: "test".into(),
            }
        } else {
            VulkanHeaders {
                include_dir: "/usr/include".into(),
                version: "1.3.239".into(),
                sufficient: false,
                provider: "system".into(),
                source: "test".into(),
            }
        }),
        source: format!("recorded {recorded}"),
    });
    m
}

#[test]
fn a_cpu_type_vulkan_device_is_not_built_for_unless_asked_and_explain_says_why() {
    let m = with_vulkan("vulkaninfo-lavapipe-mesa22.3.6.txt", true);
    let p = plan(&m, &Overrides::default());
    assert_eq!(p.decision("GGML_VULKAN"), None);
    let v = p.backends.iter().find(|b| b.name == "vulkan").unwrap();
    assert!(!v.chosen);
    assert!(
        v.why.contains("llvmpipe (LLVM 15.0.6, 256 bits)") && v.why.contains("type cpu"),
        "the why-not must name the device and its type: {v:?}"
    );
    assert!(v.why.contains("vulkan = \"on\""), "{v:?}");
    let text = xtask::report::profile_explain(&p);
    assert!(text.contains("only CPU-type Vulkan devices"), "{text}");
}

#[test]
fn the_vulkan_override_builds_for_lavapipe_with_the_cached_headers() {
    let o = Overrides::parse("[backends]\nvulkan = \"on\"\n", "profiles/local.toml").unwrap();
    let p = plan(&with_vulkan("vulkaninfo-lavapipe-mesa22.3.6.txt", true), &o);
    assert_eq!(p.decision("GGML_VULKAN"), Some("ON"));
    assert_eq!(
        p.decision("Vulkan_INCLUDE_DIR"),
        Some("/cache/toolchains/vulkan-headers-1.4.309/usr/include")
    );
    let d = p
        .decisions
        .iter()
        .find(|d| d.name == "GGML_VULKAN")
        .unwrap();
    assert!(
        d.reason.contains("GGML_VK_VISIBLE_DEVICES=0") && d.reason.contains("profiles/local.toml"),
        "{d:?}"
    );
    assert!(p.backends.iter().any(|b| b.name == "vulkan" && b.chosen));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Too-old system headers: still planned, with a warning saying what provides newer ones.
    let old = plan(
        &with_vulkan("vulkaninfo-lavapipe-mesa22.3.6.txt", false),
        &o,
    );
    assert_eq!(old.decision("Vulkan_INCLUDE_DIR"), None);
    assert!(
        old.warnings
            .iter()
            .any(|w| w.contains("1.3.239") && w.contains("prereqs")),
        "{:?}",
        old.warnings
    );
}

#[test]
fn a_real_vulkan_gpu_is_built_for_by_default() {
    // RTX 2060 (discrete) + llvmpipe, no CUDA toolkit or nvidia-smi in this machine record.
    let p = plan(
        &with_vulkan("vulkaninfo-summary-nvidia-llvmpipe-devices.txt", true),
        &Overrides::default(),
    );
    assert_eq!(p.decision("GGML_VULKAN"), Some("ON"));
    let v = p.backends.iter().find(|b| b.name == "vulkan").unwrap();
    assert!(
        v.chosen && v.why.contains("NVIDIA GeForce RTX 2060") && v.why.contains("discrete"),
        "{v:?}"
    );
    let d = p
        .decisions
        .iter()
        .find(|d| d.name == "GGML_VULKAN")
        .unwrap();
    assert!(!d.reason.contains("GGML_VK_VISIBLE_DEVICES"), "{d:?}");
    // Without glslc the GPU still decides the build; the warning says what provides glslc.
    let mut no_glslc = with_vulkan("vulkaninfo-summary-nvidia-llvmpipe-devices.txt", true);
    if let xtask::machine::Detection::Found(v) = &mut no_glslc.vulkan {
        v.glslc = None;
    }
    let p = plan(&no_glslc, &Overrides::default());
    assert_eq!(p.decision("GGML_VULKAN"), Some("ON"));
    assert!(
        p.warnings.iter().any(|w| w.contains("glslc")),
        "{:?}",
        p.warnings
    );
    let off = Overrides::parse("[backends]\nvulkan = \"off\"\n", "local.toml").unwrap();
    let p = plan(
        &with_vulkan("vulkaninfo-summary-nvidia-llvmpipe-devices.txt", true),
        &off,
    );
    assert_eq!(p.decision("GGML_VULKAN"), None);
}
