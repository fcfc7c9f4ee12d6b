//! `models recommend --machine F` on recorded machines: the pick fits, uses the GPU when it can,
//! and stays small where memory is small.

mod support;

fn recommend(machine: &str, purpose: &str) -> (Option<serde_json::Value>, String) {
    let cache = tempfile::tempdir().unwrap();
    let m = support::fixture(&format!("machines/{machine}.json"));
    let o = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args([
            "models",
            "recommend",
            "--json",
            "--purpose",
            purpose,
            "--machine",
        ])
        .arg(m)
        .env("CI", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let json = o
        .status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).expect("JSON on stdout"));
    (json, err)
}

fn num(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn laptop_with_8_gb_and_no_gpu_gets_a_model_a_cpu_can_run() {
    let (r, err) = recommend("models-laptop-8gb-cpu", "chat");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["placement"], "cpu");
    assert_eq!(r["name"], "phi-3-mini-4k-instruct-q4");
    assert!(num(&r, "memory_needed") <= num(&r["budget"], "ram_usable"));
    // For code the 7B model fits in RAM but is too slow on a CPU: the 1.5B coder wins.
    let (r, err) = recommend("models-laptop-8gb-cpu", "code");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["name"], "qwen2.5-coder-1.5b-instruct-q4_k_m");
    assert!(r["why"].as_array().unwrap().len() >= 3);
}

#[test]
fn laptop_with_6_gb_vram_runs_its_pick_entirely_on_the_gpu() {
    let (r, err) = recommend("models-laptop-6gb-vram", "chat");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["placement"], "gpu");
    assert!(num(&r, "memory_needed") <= num(&r["budget"]["gpu"], "vram_usable"));
    assert!(num(&r["budget"]["gpu"], "vram_usable") < 6 << 30);
    let why = r["why"].to_string();
    assert!(why.contains("RTX 3060"), "{why}");
}

#[test]
fn desktop_with_24_gb_vram_gets_the_largest_models_on_the_gpu() {
    let (r, err) = recommend("models-desktop-24gb-vram", "code");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["name"], "qwen2.5-coder-7b-instruct-q4_k_m");
    assert_eq!(r["placement"], "gpu");
    let (r, err) = recommend("models-desktop-24gb-vram", "chat");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["placement"], "gpu");
    assert_eq!(
        r["name"], "phi-3-mini-4k-instruct-q4",
        "the largest chat model in the catalog"
    );
}

#[test]
fn raspberry_pi_class_board_with_2_gb_gets_a_sub_gigabyte_model() {
    let (r, err) = recommend("models-pi-2gb", "chat");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["placement"], "cpu");
    assert_eq!(r["name"], "qwen3-0.6b-q4_k_m-bartowski");
    assert!(num(&r, "memory_needed") <= num(&r["budget"], "ram_usable"));
    assert!(
        num(&r["budget"], "ram_usable") <= 1 << 30,
        "the system keeps at least 1 GiB"
    );
    // Nothing for code fits: a clear error instead of a model that would swap.
    let (r, err) = recommend("models-pi-2gb", "code");
    assert!(r.is_none());
    assert!(err.contains("no code model in the catalog fits"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}
