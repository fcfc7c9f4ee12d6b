//! Vulkan end to end on Mesa's lavapipe, a real Vulkan device of type CPU: `setup` with
//! `[backends] vulkan = "on"` builds the Vulkan variant (cached like every build), the runtime
//! selects the device the build was made for, `info` lists it with its memory, layers go to it
//! (`--gpu-layers` N / all / auto, auto from the device's free memory read at run time), and the
//! verification compared its logits with the portable CPU build's. This proves the offload code
//! path and the numerics, not GPU speed (lavapipe computes on this CPU).
//!
//! `setup --keep-current` leaves `current` (what `status` and the other test binaries use) on the
//! machine's tuned build. `cargo xtask test` installs the prerequisites (lavapipe, loader, glslc,
//! SPIR-V headers, vulkaninfo, newer Vulkan headers into the cache); without them this test fails
//! saying so. Mesa's shader cache lives in the tunellama cache (`mesa-shader-cache-tests/`): the
//! first decode of a process compiles ggml's pipelines (8-12 s), later ones reuse them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn cache_dir() -> PathBuf {
    // The suite's own cache (never the user's): `xtask::testcmd::command` runs xtask with it.
    xtask::testcmd::test_cache_dir()
}

fn shader_cache() -> PathBuf {
    let d = cache_dir().join("mesa-shader-cache-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn work() -> &'static Path {
    static W: OnceLock<tempfile::TempDir> = OnceLock::new();
    W.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The override file that turns Vulkan on for the CPU-type device.
const OVERRIDES: &str = "vulkan-lavapipe.toml";

fn xtask(args: &[&str]) -> Output {
    xtask_in(work(), args)
}

fn xtask_in(dir: &Path, args: &[&str]) -> Output {
    xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(dir)
        .args(args)
        .env("CI", "true")
        .env("MESA_SHADER_CACHE_DIR", shader_cache())
        .env_remove("GGML_VK_VISIBLE_DEVICES")
        .output()
        .unwrap()
}

fn json_of(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn current() -> Option<String> {
    std::fs::read_to_string(cache_dir().join("builds-v1/current.json")).ok()
}

struct Built {
    report: serde_json::Value,
    manifest: serde_json::Value,
    current_before: Option<String>,
    current_after: Option<String>,
}

/// The Vulkan build on lavapipe: built once per cache (about 10-20 min on 2 cores), a cache hit
/// afterwards.
fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let probe = json_of(&xtask(&["probe", "--json"]), "probe");
        let lavapipe = probe["vulkan"]["physical_devices"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["device_type"] == "cpu"));
        assert!(
            lavapipe,
            "no CPU-type Vulkan device (lavapipe) here: run `cargo xtask test`, which installs mesa-vulkan-drivers, libvulkan-dev, glslc, spirv-headers and vulkan-tools (probe: {})",
            probe["vulkan"]
        );
        // Given by a relative name from the work dir: the override's name appears in the
        // profile's explanations, and a temp path would change the profile (and the cache key)
        // on every run.
        std::fs::write(work().join(OVERRIDES), "[backends]\nvulkan = \"on\"\n").unwrap();
        let current_before = current();
        let report = json_of(
            &xtask_in(
                work(),
                &["setup", "--keep-current", "--overrides", OVERRIDES, "--json"],
            ),
            "setup (Vulkan on lavapipe)",
        );
        let entry = PathBuf::from(report["entry"].as_str().unwrap());
        let manifest =
            serde_json::from_str(&std::fs::read_to_string(entry.join("manifest.json")).unwrap())
                .unwrap();
        Built {
            report,
            manifest,
            current_before,
            current_after: current(),
        }
    })
}

fn runtime() -> PathBuf {
    PathBuf::from(
        built().report["runtime_bin"]
            .as_str()
            .expect("setup names the runtime"),
    )
}

fn model() -> &'static Path {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| {
        let p = work().join("tiny.gguf");
        let out = xtask(&["testmodel", "--shape", "tiny", "-o", p.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    })
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(runtime());
    c.args(args)
        .env("MESA_SHADER_CACHE_DIR", shader_cache())
        .env_remove("GGML_VK_VISIBLE_DEVICES");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn logits(gpu_layers: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let m = model().to_str().unwrap();
    json_of(
        &run(
            &[
                "logits",
                "-m",
                m,
                "--gpu-layers",
                gpu_layers,
                "--json",
                "The quick brown fox",
            ],
            env,
        ),
        &format!("logits --gpu-layers {gpu_layers}"),
    )
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn setup_builds_and_verifies_the_vulkan_variant_without_moving_current() {
    let b = built();
    assert_eq!(
        b.current_before, b.current_after,
        "--keep-current must leave current.json alone"
    );
    let m = &b.manifest;
    let decisions = m["decisions"].as_array().unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d[0] == "GGML_VULKAN" && d[1] == "ON"),
        "{decisions:?}"
    );
    // The newer headers are part of the build's identity.
    let headers = m["inputs"]["toolchain"]["vulkan_headers"].as_str().unwrap();
    assert!(headers.contains("vulkan-headers-"), "{headers}");
    let v = &m["verification"]["runtime"];
    assert_eq!(v["backends"][0]["backend"], "vulkan");
    assert_eq!(v["backends"][0]["device"], "Vulkan0");
    let off = &v["offload"];
    assert_eq!(off["backend"], "vulkan");
    assert!(off["total_layers"].as_u64().unwrap() > 1);
    assert_eq!(off["offloaded_layers"], off["total_layers"]);
    assert!(
        off["device_buffers"][0]
            .as_str()
            .unwrap()
            .starts_with("Vulkan0"),
        "{off}"
    );
    // Compared with the portable CPU build within the stated tolerance.
    let l = &v["logits"];
    assert!(l["worst_ratio"].as_f64().unwrap() <= 1.0, "{l}");
    // The portable build's logits: shipped beside the pin (profiles/reference-logits.json) or
    // computed by the portable build here when none match this tree, model and architecture.
    let reference = l["reference"].as_str().unwrap();
    assert!(
        reference.starts_with("shipped logits for pin ") || reference.starts_with("portable build"),
        "{reference}"
    );
    assert_eq!(l["top_token"], l["reference_top_token"]);
}

#[test]
fn info_lists_the_lavapipe_device_with_its_memory_and_how_it_was_selected() {
    let info = json_of(&run(&["info", "--json"], &[]), "info");
    let c = &info["compiled_for"];
    assert!(c["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b == "vulkan"));
    let dev = c["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Vulkan0")
        .unwrap_or_else(|| panic!("no Vulkan0 device: {c}"));
    assert!(
        dev["description"].as_str().unwrap().contains("llvmpipe"),
        "{dev}"
    );
    assert!(dev["memory_total"].as_u64().unwrap() > 0, "{dev}");
    assert!(dev["memory_free"].as_u64().unwrap() > 0, "{dev}");
    assert_eq!(c["vulkan_device"]["device_type"], "cpu");
    assert!(
        c["vulkan_selection"]
            .as_str()
            .unwrap()
            .starts_with("GGML_VK_VISIBLE_DEVICES=0 (set by tunellama"),
        "{c}"
    );
    let text = run(&["info"], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("device Vulkan0"), "{text}");
}

#[test]
fn gpu_layers_put_that_many_layers_on_the_device_with_the_same_logits() {
    let none = logits("0", &[]);
    assert_eq!(
        none["offload"]["offloaded_layers"], 0,
        "{}",
        none["offload"]
    );
    let two = logits("2", &[]);
    assert_eq!(two["offload"]["offloaded_layers"], 2, "{}", two["offload"]);
    let all = logits("all", &[]);
    let total = all["offload"]["total_layers"].as_u64().unwrap();
    assert_eq!(all["offload"]["offloaded_layers"].as_u64().unwrap(), total);
    let on_device = |v: &serde_json::Value| {
        v["offload"]["buffers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "Vulkan0" && b["mib"].as_f64().unwrap() > 0.0)
    };
    assert!(on_device(&two) && on_device(&all), "{}", all["offload"]);
    assert!(!on_device(&none), "{}", none["offload"]);
    let cpu = xtask::verify::runtime::compare(&floats(&all), &floats(&none), "0 layers")
        .expect("all layers on lavapipe vs none: same logits within the tolerance");
    assert!(cpu.max_abs_diff < 0.05, "{cpu:?}");
}

#[test]
fn gpu_layers_auto_fits_the_free_memory_the_device_reports_now() {
    let info = json_of(&run(&["info", "--json"], &[]), "info");
    let free = info["compiled_for"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Vulkan0")
        .unwrap()["memory_free"]
        .as_u64()
        .unwrap();
    let v = logits("auto", &[]);
    let why = v["gpu_layers"]["why"].as_str().unwrap();
    assert!(
        why.contains("auto") && why.contains("Vulkan0") && why.contains("read from the device"),
        "{why}"
    );
    // The runtime's own arithmetic, from the device's figure: (file / layers) per layer, 90% of
    // the free memory usable.
    let total = v["offload"]["total_layers"].as_u64().unwrap();
    let size = std::fs::metadata(model()).unwrap().len();
    let per_layer = (size / total).max(1);
    let expected = (free / 10 * 9 / per_layer).min(total);
    assert_eq!(
        v["gpu_layers"]["value"].as_u64().unwrap(),
        expected,
        "{why}"
    );
    assert_eq!(v["offload"]["offloaded_layers"].as_u64().unwrap(), expected);
    assert!(
        why.contains(&format!("{expected} of {total} layers")),
        "{why}"
    );
}

#[test]
fn without_the_device_selection_ggml_skips_lavapipe_and_verification_would_fail() {
    // The user's own (empty) GGML_VK_VISIBLE_DEVICES wins over the runtime's selection: ggml then
    // sees no Vulkan device and computes on the CPU, as it does by default for CPU-type devices.
    let v = logits("all", &[("GGML_VK_VISIBLE_DEVICES", "")]);
    let err = xtask::verify::runtime::check_offload("vulkan", &v)
        .expect_err("a run that stayed on the CPU must not pass the offload check");
    assert!(err.to_string().contains("did not offload"), "{err}");
    // The same run with the build's selection passes it.
    let ok = logits("all", &[]);
    xtask::verify::runtime::check_offload("vulkan", &ok).unwrap();
}
