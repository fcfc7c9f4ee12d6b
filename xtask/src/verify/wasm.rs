//! Verify a WebAssembly build under node: the module (`wasm.rs`) loads the tiny model from bytes
//! and prints the last-position logits of the verification prompt, computed as `tunellama logits`
//! does; they must match the x86 portable build's within the verification tolerance, argmax
//! equal. A build that fell back to ggml's generic code is refused: Emscripten compiles every
//! build with `-msimd128` (so `WASM_SIMD = 1` alone proves nothing), but only a build for the
//! `wasm32` processor compiles ggml's arch/wasm kernels, which leave the portable kernels under
//! their `_generic` names (arch-fallback.h renames them in a generic build).

use super::emulated::{parse_output, EmulatedReport};
use super::features::{self, FeatureCheck};
use super::runtime::{compare, PROMPT};
use crate::cmd::Cmd;
use crate::cross::CrossToolchain;
use std::path::Path;
use std::time::Duration;

/// Why there is no Rust runtime for this variant.
pub const NO_RUST_RUNTIME: &str = "no Rust runtime: the wasm variant is a JavaScript module (C shim over libllama + wasm/api.js); the proof is the module itself under node";

/// The kernel arch/wasm/quants.c provides; with it, the portable one keeps its `_generic` name.
pub const WASM_KERNEL: &str = "ggml_vec_dot_q8_0_q8_0";

/// The node script: loads the module, writes the model into MEMFS through the JavaScript API and
/// prints what `emulated::ProgramOutput` reads.
pub const LOGITS_JS: &str = r#"// tunellama's wasm verification (xtask/src/verify/wasm.rs)
const fs = require('fs');
const [moduleJs, model, prompt] = process.argv.slice(2);
require(moduleJs)().then((M) => {
  const m = M.loadModel(fs.readFileSync(model));
  const r = m.logits(prompt);
  m.free();
  const logits = r.logits.map((x) => (Number.isFinite(x) ? x : null));
  process.stdout.write(JSON.stringify({
    system_info: M.systemInfo(), hwcaps: [], tokens: r.tokens, n_vocab: logits.length, logits,
  }) + '\n');
}).catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
"#;

#[derive(Debug, thiserror::Error)]
pub enum WasmVerifyError {
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Run {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("the wasm build has no SIMD128 kernels: {0}")]
    NoSimd(String),
    #[error("the wasm module's logits do not match: {0}")]
    Logits(String),
}

impl crate::error::Hint for WasmVerifyError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            WasmVerifyError::NoSimd(_) => "the profile must set EMSCRIPTEN_SYSTEM_PROCESSOR=wasm32 (Debian's Emscripten.cmake defaults to x86, and ggml then compiles its generic code); the build was not published".into(),
            WasmVerifyError::Run { .. } => "run `cargo xtask prereqs --install --cross wasm32` (emscripten, nodejs); the build was not published".into(),
            WasmVerifyError::Logits(_) => "the wasm build computes something else than the portable build; it was not published".into(),
        })
    }
}

/// Whether `llvm-nm --defined-only` output of libggml-cpu.a shows the arch/wasm kernels: the
/// kernel itself and the portable one under its `_generic` name, both defined (`T`).
pub fn wasm_kernels_in(nm: &str) -> bool {
    let defined = |sym: &str| {
        nm.lines().any(|l| {
            let mut w = l.split_whitespace().rev();
            w.next() == Some(sym) && w.next().is_some_and(|t| t.eq_ignore_ascii_case("t"))
        })
    };
    defined(WASM_KERNEL) && defined(&format!("{WASM_KERNEL}_generic"))
}

/// The two SIMD checks: ggml reports `WASM_SIMD = 1`, and the arch/wasm kernels are compiled in.
pub fn simd_checks(system_info: &str, nm: &str) -> Vec<FeatureCheck> {
    vec![
        FeatureCheck {
            name: "WASM_SIMD".into(),
            expected: true,
            compiled: features::enabled(system_info)
                .iter()
                .any(|f| f == "WASM_SIMD"),
        },
        FeatureCheck {
            name: format!("arch/wasm kernels ({WASM_KERNEL} beside {WASM_KERNEL}_generic)"),
            expected: true,
            compiled: wasm_kernels_in(nm),
        },
    ]
}

/// Fails unless every check passed.
pub fn require_simd(checks: &[FeatureCheck]) -> Result<(), WasmVerifyError> {
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| format!("{} not compiled in", c.name))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(WasmVerifyError::NoSimd(bad.join("; ")))
    }
}

/// Runs `cmd`; its stdout, or the error naming the command with the end of its stderr.
fn stdout_of(cmd: &Cmd) -> Result<String, WasmVerifyError> {
    let out = cmd.output().map_err(|e| WasmVerifyError::Run {
        command: cmd.display(),
        status: "not run".into(),
        stderr: e.to_string(),
    })?;
    if !out.success() {
        return Err(WasmVerifyError::Run {
            command: cmd.display(),
            status: format!("{:?}", out.status),
            stderr: crate::cmd::tail(&out.stderr, 20),
        });
    }
    Ok(out.stdout)
}

/// `emnm --defined-only LIB` (Emscripten's llvm-nm).
pub fn nm(tc: &CrossToolchain, lib: &Path) -> Result<String, WasmVerifyError> {
    let emnm = Path::new(&tc.cc).with_file_name("emnm");
    stdout_of(
        &Cmd::new(&emnm)
            .arg("--defined-only")
            .arg(lib)
            .timeout(Duration::from_secs(120)),
    )
}

/// Runs the checks on `prefix` (libraries + `wasm/tunellama.{js,wasm}`); `work` holds the script.
pub fn verify(
    tc: &CrossToolchain,
    prefix: &Path,
    model: &Path,
    reference: (&[f32], &str),
    work: &Path,
) -> anyhow::Result<EmulatedReport> {
    let script = work.join("logits.js");
    fs_err::write(&script, LOGITS_JS)?;
    let module = prefix
        .join(crate::wasm::MODULE_DIR)
        .join(crate::wasm::MODULE_JS);
    let run = crate::wasm::node(&tc.runner, &script)
        .arg(&module)
        .arg(model)
        .arg(PROMPT);
    let p = parse_output(&stdout_of(&run)?)?;
    let link = super::read_link(prefix)?;
    let lib = prefix.join(&link.lib_dir).join("libggml-cpu.a");
    let checks = simd_checks(&p.system_info, &nm(tc, &lib)?);
    require_simd(&checks)?;
    let ours: Vec<f32> = p.logits.iter().map(|l| l.unwrap_or(f32::NAN)).collect();
    let logits = compare(&ours, reference.0, reference.1)
        .map_err(|e| WasmVerifyError::Logits(e.to_string()))?;
    if logits.top_token != logits.reference_top_token {
        return Err(WasmVerifyError::Logits(format!(
            "argmax {} differs from the reference's {}",
            logits.top_token, logits.reference_top_token
        ))
        .into());
    }
    let emulator = format!("node {} {}", tc.runner_version, crate::wasm::NODE_FLAG);
    let summary = format!(
        "wasm module under {emulator}: max |diff| {:.2e} vs {}, argmax {} equal; WASM_SIMD = 1 and the arch/wasm SIMD128 kernels compiled in; {}",
        logits.max_abs_diff, logits.reference, logits.top_token, NO_RUST_RUNTIME
    );
    Ok(EmulatedReport {
        summary,
        emulator,
        cpu: "wasm32 simd128".into(),
        hwcaps: Vec::new(),
        required_cpu_features: vec!["simd128".into()],
        model: model.display().to_string(),
        link_command: format!(
            "{} (module: {})",
            crate::wasm::link_settings().join(" "),
            module.display()
        ),
        system_info: p.system_info,
        features: checks,
        tokens: p.tokens,
        logits,
        refusal: None,
        rust_runtime: NO_RUST_RUNTIME.into(),
        portable_arm64: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wasm::tests::recorded;

    #[test]
    fn a_simd128_build_passes_both_checks() {
        let checks = simd_checks(
            &recorded("wasm-system-info-simd128.txt"),
            &recorded("emnm-libggml-cpu-wasm32.txt"),
        );
        assert!(require_simd(&checks).is_ok(), "{checks:?}");
    }

    #[test]
    fn a_generic_build_is_caught_although_it_reports_wasm_simd() {
        // Emscripten's default processor (x86): ggml compiled its generic code with -msimd128, so
        // the system info still says WASM_SIMD = 1, but the portable kernel has the plain name.
        let info = recorded("wasm-system-info-simd128.txt");
        let nm = recorded("emnm-libggml-cpu-generic.txt");
        let err = require_simd(&simd_checks(&info, &nm)).unwrap_err();
        assert!(err.to_string().contains("arch/wasm kernels"), "{err}");
    }

    #[test]
    fn a_system_info_without_wasm_simd_is_caught() {
        // A recorded non-SIMD line: the x86 portable build's.
        let info = "CPU : SSE3 = 1 | SSSE3 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |";
        let err =
            require_simd(&simd_checks(info, &recorded("emnm-libggml-cpu-wasm32.txt"))).unwrap_err();
        assert!(
            err.to_string().contains("WASM_SIMD not compiled in"),
            "{err}"
        );
    }
}
