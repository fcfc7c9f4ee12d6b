//! The cheap, real proof that the CUDA variant of a recorded GPU machine compiles on this machine
//! (no GPU needed): the CUDA 13 toolkit from NVIDIA's wheels (installed once into the cache), the
//! profile of the RTX 4050 laptop (sm_89) with that toolkit, a real CMake configure of the pinned
//! tree, then ONE CUDA translation unit compiled with exactly the command CMake generated for it
//! (compile_commands.json), and cuobjdump shows the object holds sm_89 code. The full build (all
//! 144 CUDA files, about 20+ minutes on 2 cores) is the documented command in docs/cuda.md.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> std::process::Output {
    xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CI", "true")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = xtask(args);
    assert!(
        out.status.success(),
        "cargo xtask {args:?} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The smallest CUDA file of the pinned tree that still instantiates kernels (argmax.cu).
const TU: &str = "ggml/src/ggml-cuda/argmax.cu";

#[test]
fn the_rtx4050_cuda_variant_configures_and_one_cuda_file_compiles_for_sm_89() {
    let cache = xtask::env::default_cache_dir();
    // 1. The toolkit (pip, once per cache) and cuobjdump (its own wheel, once per cache).
    ok(&["prereqs", "--install", "--cuda-wheels", "--yes"]);
    let root = xtask::cuda_wheels::installed(&cache).expect("prereqs installed the wheels");
    let ctx = xtask::context::Ctx::new(Some(cache.clone()), false, true, 0, true);
    let cuobjdump = xtask::cuda_wheels::ensure_cuobjdump(&ctx).expect("cuobjdump wheel");

    // 2. The profile of the recorded laptop with the wheel toolkit substituted.
    let machine = repo().join("tests/fixtures/machines/laptop-rtx4050-cuda12.4.json");
    let work = cache.join("tmp").join("cuda-compile-test");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let profile_file = work.join("profile.cmake");
    let p: Value = serde_json::from_str(&ok(&[
        "--json",
        "profile",
        "--machine",
        machine.to_str().unwrap(),
        "--cuda-toolkit",
        "wheels",
        "--output",
        profile_file.to_str().unwrap(),
    ]))
    .unwrap();
    let decision = |n: &str| {
        p["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .map(|d| d["value"].as_str().unwrap().to_string())
    };
    assert_eq!(decision("CMAKE_CUDA_ARCHITECTURES").as_deref(), Some("89"));
    assert_eq!(
        decision("CUDAToolkit_ROOT").as_deref(),
        Some(root.to_str().unwrap())
    );

    // 3. The pinned tree, configured with the profile exactly as `setup` does (-C profile).
    let tree: Value = serde_json::from_str(&ok(&["--json", "source"])).unwrap();
    let tree = PathBuf::from(tree["root"].as_str().unwrap());
    let build = work.join("build");
    let started = std::time::Instant::now();
    let out = Command::new("cmake")
        .arg("-C")
        .arg(&profile_file)
        .arg("-S")
        .arg(&tree)
        .arg("-B")
        .arg(&build)
        .args(["-G", "Ninja", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"])
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "configure failed:\n{log}");
    assert!(
        log.contains("The CUDA compiler identification is NVIDIA 13."),
        "{log}"
    );
    assert!(log.contains("CMAKE_CUDA_ARCHITECTURES=89"), "{log}");

    // 4. One CUDA translation unit with the generated command (the profile's exact flags).
    let commands: Value =
        serde_json::from_slice(&std::fs::read(build.join("compile_commands.json")).unwrap())
            .unwrap();
    let entry = commands
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"].as_str().unwrap().ends_with(TU))
        .unwrap_or_else(|| panic!("{TU} is not in compile_commands.json"));
    let command = entry["command"].as_str().unwrap();
    assert!(
        command.starts_with(root.join("bin/nvcc").to_str().unwrap()),
        "{command}"
    );
    assert!(
        command.contains("GGML_CUDA_NO_VMM"),
        "the profile's NO_VMM reaches the compiler: {command}"
    );
    assert!(
        command.contains("sm_89") || command.contains("compute_89"),
        "{command}"
    );
    let object = build.join(
        command
            .split_whitespace()
            .skip_while(|w| *w != "-o")
            .nth(1)
            .expect("-o OBJECT in the command"),
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(entry["directory"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(object.is_file(), "{} was not written", object.display());
    eprintln!(
        "configure + {TU}: {:.0} s, object {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&object).unwrap().len()
    );

    // 5. The object carries sm_89 machine code (an ELF cubin), not only PTX.
    let out = Command::new(&cuobjdump)
        .arg("--list-elf")
        .arg(&object)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains("sm_89"),
        "cuobjdump --list-elf {}:\n{listing}{}",
        object.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
}
