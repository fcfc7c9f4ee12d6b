//! The probe's parsers on outputs recorded from real machines (tests/fixtures/recorded/, sources
//! in its SOURCES.md).

use xtask::probe::{accel, cpu, nvidia};

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/recorded")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn haswell_cpuinfo_is_x86_64_v3_with_avx2_and_no_avx512() {
    let info = cpu::parse_cpuinfo(&fixture("cpuinfo-haswell.txt"));
    let f = cpu::features("x86_64", &info.raw_flags);
    assert!(f.contains(&"avx2".to_string()), "{f:?}");
    assert!(f.contains(&"fma".to_string()));
    assert!(!f.iter().any(|x| x.starts_with("avx512")), "{f:?}");
    assert_eq!(cpu::x86_64_level(&info.raw_flags), 3);
    assert!(info.model.unwrap().contains("i7-4770K"));
}

#[test]
fn graviton3_cpuinfo_has_neon_dotprod_and_sve() {
    let info = cpu::parse_cpuinfo(&fixture("cpuinfo-graviton.txt"));
    let f = cpu::features("aarch64", &info.raw_flags);
    for want in ["neon", "dotprod", "sve"] {
        assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
    }
    assert_eq!(
        cpu::x86_64_level(&info.raw_flags),
        1,
        "level is meaningless but must not claim v2+"
    );
}

#[test]
fn raspberry_pi5_cpuinfo_counts_four_cores_and_names_the_board() {
    let info = cpu::parse_cpuinfo(&fixture("cpuinfo-rpi.txt"));
    assert_eq!(info.logical_cores, 4);
    let f = cpu::features("aarch64", &info.raw_flags);
    assert!(
        f.contains(&"neon".to_string()) && f.contains(&"dotprod".to_string()),
        "{f:?}"
    );
    assert!(!f.contains(&"sve".to_string()));
}

#[test]
fn nvcc_releases_are_read_from_real_outputs() {
    assert_eq!(
        nvidia::parse_nvcc_version(&fixture("nvcc-12.4.txt")).as_deref(),
        Some("12.4")
    );
    assert_eq!(
        nvidia::parse_nvcc_version(&fixture("nvcc-12.4.99.txt")).as_deref(),
        Some("12.4")
    );
    assert_eq!(
        nvidia::parse_nvcc_version(&fixture("nvcc-12.8.txt")).as_deref(),
        Some("12.8")
    );
    assert_eq!(
        nvidia::parse_nvcc_version(&fixture("nvcc-11.8-partial.txt")).as_deref(),
        Some("11.8")
    );
}

#[test]
fn nvidia_smi_csv_lines_become_gpus() {
    let gpus = nvidia::parse_gpu_csv(&fixture("nvidia-smi-rtx5090-rtx4090.csv")).unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].name, "NVIDIA GeForce RTX 5090");
    assert_eq!(gpus[0].compute_capability, "12.0");
    assert_eq!(gpus[0].vram_mib, 32607);
    assert_eq!(gpus[1].compute_capability, "8.9");
    assert_eq!(gpus[1].driver_version, "580.82.09");
}

#[test]
fn nvidia_smi_output_in_another_field_order_is_rejected_not_misread() {
    // A real query with other fields (and a header): must not be taken for our query's output.
    assert!(
        nvidia::parse_gpu_csv(&fixture("nvidia-smi-query-titanv-rtx5880-verbatim.csv")).is_err()
    );
}

#[test]
fn vulkaninfo_summary_lists_hardware_and_software_devices() {
    let d =
        accel::parse_vulkaninfo_devices(&fixture("vulkaninfo-summary-nvidia-llvmpipe-devices.txt"));
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].contains("RTX 2060"), "{d:?}");
    assert!(d[1].contains("llvmpipe"), "{d:?}");
}

#[test]
fn rocminfo_gives_gfx_targets_and_hipconfig_its_version() {
    assert_eq!(
        accel::parse_rocminfo_targets(&fixture("rocminfo-gfx1100-agent-excerpt.txt")),
        vec!["gfx1100"]
    );
    assert!(
        accel::parse_rocminfo_targets(&fixture("rocminfo-header-cpu-agent-excerpt.txt")).is_empty()
    );
    assert_eq!(
        accel::parse_hipconfig_version(&fixture("hipconfig-version.txt")).as_deref(),
        Some("6.0.32830")
    );
}

#[test]
fn vulkaninfo_of_lavapipe_gives_a_cpu_type_device_with_its_heap_memory() {
    use xtask::machine::VulkanDeviceType;
    let full = accel::parse_vulkaninfo(&fixture("vulkaninfo-lavapipe-mesa22.3.6.txt"));
    assert_eq!(full.len(), 1, "{full:?}");
    let d = &full[0];
    assert_eq!(d.index, 0);
    assert_eq!(d.name, "llvmpipe (LLVM 15.0.6, 256 bits)");
    assert_eq!(d.device_type, VulkanDeviceType::Cpu);
    assert!(!d.device_type.is_gpu());
    assert_eq!(d.memory_bytes, Some(2147483648));
    assert_eq!(d.api_version.as_deref(), Some("1.3.230"));
    // The summary names the same device and type but has no memory heaps.
    let summary = accel::parse_vulkaninfo(&fixture("vulkaninfo-summary-lavapipe-mesa22.3.6.txt"));
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].name, d.name);
    assert_eq!(summary[0].device_type, VulkanDeviceType::Cpu);
    assert_eq!(summary[0].memory_bytes, None);
}

#[test]
fn vulkaninfo_summary_types_tell_a_discrete_gpu_from_llvmpipe() {
    use xtask::machine::VulkanDeviceType;
    let devs = accel::parse_vulkaninfo(&fixture("vulkaninfo-summary-nvidia-llvmpipe-devices.txt"));
    let types: Vec<_> = devs.iter().map(|d| (d.index, d.device_type)).collect();
    assert_eq!(
        types,
        [(0, VulkanDeviceType::Discrete), (1, VulkanDeviceType::Cpu)]
    );
    assert!(devs[0].name.contains("RTX 2060"), "{devs:?}");
    let amd = accel::parse_vulkaninfo(&fixture("vulkaninfo-summary-amd-devices.txt"));
    assert_eq!(amd.len(), 1);
    assert!(amd[0].device_type.is_gpu(), "{amd:?}");
}

#[test]
fn vulkan_headers_version_and_layer_settings_are_read_from_vulkan_core_h() {
    assert_eq!(
        accel::parse_vulkan_core_h(&fixture("vulkan_core-h-1.3.239-excerpt.txt")),
        Some(("1.3.239".to_string(), false))
    );
    assert_eq!(
        accel::parse_vulkan_core_h(&fixture("vulkan_core-h-1.4.309-excerpt.txt")),
        Some(("1.4.309".to_string(), true))
    );
    assert_eq!(accel::parse_vulkan_core_h("int x;"), None);
}

#[test]
fn the_debian_archive_is_found_in_the_systems_apt_sources_not_the_security_one() {
    use xtask::vulkan_headers::{debian_archive, parse_apt_sources};
    let sources = parse_apt_sources(&fixture("apt-debian12-deb822.sources"));
    assert_eq!(sources.len(), 2, "{sources:?}");
    let a = debian_archive(&sources).expect("a Debian archive");
    assert_eq!(a.uri, "http://mirror.example/debian");
    assert_eq!(
        a.signed_by.as_deref(),
        Some("/usr/share/keyrings/debian-archive-keyring.gpg")
    );
    // One-line format, with options; security-only lists have no archive.
    let one = parse_apt_sources(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n",
    );
    assert_eq!(
        debian_archive(&one).unwrap().signed_by.as_deref(),
        Some("/k.gpg")
    );
    let sec = parse_apt_sources("deb http://m.example/debian-security bookworm-security main\n");
    assert!(debian_archive(&sec).is_none());
}
