//! The library-only build shape: decisions that do not depend on the machine, each explained by
//! a fact of the pinned tree (LLAMA_CPP_FACTS.md).

use super::super::Decision;

/// The fixed decisions every build starts from.
pub fn decide() -> Vec<Decision> {
    let mut d: Vec<Decision> = Vec::new();
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
    d
}
