//! What `setup` proves about a build of a profile, by its backend and CPU (docs/matrix.md,
//! docs/vulkan.md, docs/cuda.md, docs/arm64.md): one sentence `profile --explain` prints, so no
//! one reads "verified" where only "compiled" is true.

use super::Backend;
use crate::machine::Machine;

/// The sentence for a profile planned for `m` with these backends (pure).
pub fn statement(m: &Machine, backends: &[Backend]) -> String {
    let chosen = backends.iter().find(|b| b.chosen).map(|b| b.name.as_str());
    let logits = "logits of the verification prompt within |d| <= 0.01 + 0.01*|ref| of the portable CPU build, generation, and the compiled-in features";
    match chosen {
        Some("cuda") => format!("CUDA: {}", super::rules::CUDA_PROOF),
        Some("vulkan") => format!(
            "Vulkan: the runtime runs with every layer offloaded to the Vulkan device (checked from llama.cpp's load report; a build that stays on the CPU fails verification) and its {logits} are checked; on Mesa's lavapipe (a CPU-type device) this proves the offload path and numerics, not GPU speed (docs/vulkan.md)"
        ),
        Some("metal") => format!(
            "Metal: on an Apple machine setup checks the runtime's {logits}; never run by this project's tests (no Apple machine)"
        ),
        Some("hip") => format!(
            "HIP: on a machine with the AMD GPU setup checks the runtime's {logits}; never compiled or run by this project's tests (no ROCm)"
        ),
        _ if m.arch.value == "aarch64" => format!(
            "arm64 CPU: built on arm64, setup checks the runtime's {logits}; cross-built on x86-64 Linux (`cross`, `dist`) it is proven at the C level only, under qemu-aarch64 (docs/arm64.md)"
        ),
        _ => format!(
            "CPU: setup checks the runtime's {logits} on the machine that builds it; a build for CPU features that machine lacks is recorded as not run and verified where it is installed (docs/matrix.md)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(arch: &str) -> Machine {
        serde_json::from_value(serde_json::json!({
            "schema": 1, "origin": "declared",
            "os": {"value": "linux", "source": "t"}, "arch": {"value": arch, "source": "t"},
            "cpu": {}
        }))
        .unwrap()
    }

    fn backend(name: &str, chosen: bool) -> Backend {
        Backend {
            name: name.into(),
            chosen,
            why: String::new(),
        }
    }

    #[test]
    fn each_backend_says_what_is_proven_and_never_claims_more() {
        let x86 = machine("x86_64");
        let cuda = statement(&x86, &[backend("cuda", true)]);
        assert!(cuda.contains("compiles, links and starts"), "{cuda}");
        let vk = statement(&x86, &[backend("cuda", false), backend("vulkan", true)]);
        assert!(
            vk.contains("every layer offloaded") && vk.contains("not GPU speed"),
            "{vk}"
        );
        let metal = statement(&machine("aarch64"), &[backend("metal", true)]);
        assert!(
            metal.contains("never run by this project's tests"),
            "{metal}"
        );
        let arm = statement(&machine("aarch64"), &[backend("cuda", false)]);
        assert!(
            arm.contains("C level only") && arm.contains("qemu"),
            "{arm}"
        );
        let cpu = statement(&x86, &[]);
        assert!(
            cpu.contains("portable CPU build") && cpu.contains("not run"),
            "{cpu}"
        );
    }
}
