//! WebAssembly decisions for a declared `wasm32` machine (Emscripten): the SIMD128 kernels through
//! the right system processor, no OpenMP, wasm32 memory, and a single thread in this first version
//! (LLAMA_CPP_FACTS.md, "Other backends and targets"; docs/wasm.md).

use super::super::Decision;

/// What a wasm build proves and what it leaves out: shown by `profile --explain`.
pub const THREADS_NOTE: &str = "threads: off in this first version: no -pthread, so llama.cpp runs on one thread (a threaded build needs SharedArrayBuffer, which a page only gets with COOP/COEP headers, plus Emscripten's pthread libc); what is proven on an x86-64 Linux host (`cargo xtask cross`, `dist`): logits of the module under node vs the x86 portable build, the SIMD128 kernels compiled in, the JavaScript API under node and the page in headless Chromium (docs/wasm.md)";

/// The wasm32 decisions; replaces the shape's OpenMP decision.
pub fn decide(m: &crate::machine::Machine, d: &mut Vec<Decision>, hints: &mut Vec<String>) {
    let simd = m.cpu.has("simd128");
    d.push(Decision::new(
        "EMSCRIPTEN_SYSTEM_PROCESSOR",
        "wasm32",
        "STRING",
        "ggml picks its CPU kernels by CMAKE_SYSTEM_PROCESSOR: `wasm32` compiles arch/wasm (SIMD128 intrinsics); Debian's Emscripten.cmake defaults it to `x86`, and ggml then falls back to its generic code",
        format!(
            "arch = wasm32, cpu.features {} simd128 (LLAMA_CPP_FACTS.md: Emscripten 3.1.6's default processor gives no SIMD128)",
            if simd { "has" } else { "lacks (declared anyway: ggml compiles every Emscripten build with -msimd128)" }
        ),
    ));
    d.retain(|x| x.name != "GGML_OPENMP");
    d.push(Decision::new(
        "GGML_OPENMP",
        "OFF",
        "BOOL",
        "Emscripten has no OpenMP runtime; ggml's own thread pool is used (one thread here)",
        "arch = wasm32",
    ));
    d.push(Decision::new(
        "LLAMA_WASM_MEM64",
        "OFF",
        "BOOL",
        "wasm32 memory (4 GiB heap at most): the pinned tree defaults to Memory64, which node 20 and most browsers do not run without a flag; the tiny and small models fit",
        "arch = wasm32 (LLAMA_CPP_FACTS.md: wasm32 truncates two 4/8 GiB constants, harmless for models below 4 GiB)",
    ));
    hints.push(THREADS_NOTE.into());
}

#[cfg(test)]
mod tests {
    use crate::machine::Machine;

    fn profile(path: &str) -> crate::profile::Profile {
        let m = Machine::from_json_file(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path),
        )
        .unwrap();
        crate::profile::plan(&m, &Default::default())
    }

    #[test]
    fn wasm32_gets_the_simd128_processor_no_openmp_and_wasm32_memory() {
        let p = profile("ci/machines/wasm32-emscripten.json");
        assert_eq!(p.decision("EMSCRIPTEN_SYSTEM_PROCESSOR"), Some("wasm32"));
        assert_eq!(p.decision("GGML_OPENMP"), Some("OFF"));
        assert_eq!(p.decision("LLAMA_WASM_MEM64"), Some("OFF"));
        assert_eq!(p.decision("GGML_NATIVE"), Some("OFF"));
        let openmp = p.decisions.iter().filter(|d| d.name == "GGML_OPENMP");
        assert_eq!(openmp.count(), 1, "the shape's ON is replaced, not doubled");
        assert!(p.hints.iter().any(|h| h.starts_with("threads: off")));
        assert_eq!(p.runtime.threads, 1);
        assert!(p.cmake.contains("EMSCRIPTEN_SYSTEM_PROCESSOR"));
    }

    #[test]
    fn other_targets_get_no_emscripten_decision() {
        for m in [
            "ci/machines/linux-arm64.json",
            "ci/machines/linux-x86_64-v3.json",
        ] {
            let p = profile(m);
            assert_eq!(p.decision("EMSCRIPTEN_SYSTEM_PROCESSOR"), None, "{m}");
            assert_eq!(p.decision("GGML_OPENMP"), Some("ON"), "{m}");
        }
    }
}
