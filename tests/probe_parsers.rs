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
