//! Verify a cross-built (arm64) prefix at the C level under user-mode emulation: a small C program,
//! compiled with the cross compiler and linked `-static` exactly as the prefix's link.json says,
//! first checks the CPU's HWCAPs (`getauxval`) against the features the build requires and exits
//! 3 naming the missing one (the runtime's exit code for "CPU lacks a feature", runtime/README.md),
//! else prints the last-position logits of the verification prompt on the tiny model, computed as
//! `tunellama logits` does. They must match the x86 portable build's within the verification
//! tolerance; a v8.2 build must also be refused on an Armv8.0 core. No Rust runtime is involved.

use super::features::{self, FeatureCheck};
use super::runtime::{compare, LogitsCheck, PROMPT};
use crate::build::LinkDescription;
use crate::cmd::Cmd;
use crate::cross::{self, CrossToolchain, EmulatedCpu};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The runtime's exit code for "this build needs a CPU feature this CPU lacks" (runtime/README.md).
pub const EXIT_CPU_LACKS_FEATURE: i32 = 3;
/// Where the program is kept in a prefix (so an archive carries it to the target machine).
pub const PROGRAM: &str = "bin/tunellama-logits-check";

/// What the Rust runtime would have done, and why it was not built here.
pub const NO_RUST_RUNTIME: &str = "no Rust runtime: this host's rustup has no aarch64 target, so the runtime is not cross-built; the proof is at the C level (libllama linked -static into a C program)";

const PROGRAM_C: &str = r#"/* tunellama's C-level verification program (xtask/src/verify/emulated.rs). */
#include <math.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <asm/hwcap.h>
#include "llama.h"

struct need { const char *feature; const char *hwcap; int word; unsigned long bit; };
/* The features this build requires (generated from its profile) and every HWCAP we report. */
static const struct need REQUIRED[] = {
@REQUIRED@    { 0, 0, 0, 0 }
};
static const struct need KNOWN[] = {
@KNOWN@    { 0, 0, 0, 0 }
};

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s >= 0x20) putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    /* Before any llama.cpp code runs: a missing feature is a refusal, not a SIGILL. */
    unsigned long hw[2] = { getauxval(AT_HWCAP), getauxval(AT_HWCAP2) };
    int missing = 0;
    for (const struct need *n = REQUIRED; n->feature; n++) {
        if (!(hw[n->word] & n->bit)) {
            fprintf(stderr, missing ? ", %s (HWCAP %s)"
                                    : "error: this build needs CPU features this CPU lacks: %s (HWCAP %s)",
                    n->feature, n->hwcap);
            missing++;
        }
    }
    if (missing) {
        fprintf(stderr, "\nhint: use a build for this CPU (the portable armv8-a one runs everywhere)\n");
        return 3;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL THREADS PROMPT\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "error: llama.cpp could not load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    /* As the runtime: the context is the model's trained one (the tiny model's 256) when smaller
       than the default 4096; batch = min(512, context); one thread per the reference. */
    int n_ctx = llama_model_n_ctx_train(model);
    if (n_ctx <= 0 || n_ctx > 4096) n_ctx = 4096;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = n_ctx < 512 ? (uint32_t)n_ctx : 512;
    cp.n_ubatch = cp.n_batch;
    cp.n_threads = cp.n_threads_batch = atoi(argv[2]);
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "error: llama.cpp could not create a context\n"); return 1; }
    const char *prompt = argv[3];
    int cap = (int)strlen(prompt) + 2;
    llama_token *toks = malloc(sizeof(llama_token) * (size_t)cap);
    int n = llama_tokenize(vocab, prompt, (int32_t)strlen(prompt), toks, cap, true, true);
    if (n < 0 && n != INT32_MIN) { /* -n is the size needed */
        cap = -n;
        toks = realloc(toks, sizeof(llama_token) * (size_t)cap);
        n = llama_tokenize(vocab, prompt, (int32_t)strlen(prompt), toks, cap, true, true);
    }
    if (n <= 0 || n > (int)cp.n_batch) { fprintf(stderr, "error: tokenize gave %d tokens\n", n); return 1; }
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = toks[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = i == n - 1;
    }
    b.n_tokens = n;
    int rc = llama_decode(ctx, b);
    if (rc != 0) { fprintf(stderr, "error: llama_decode returned %d\n", rc); return 1; }
    const float *lg = llama_get_logits_ith(ctx, -1);
    int nv = llama_vocab_n_tokens(vocab);
    if (!lg) { fprintf(stderr, "error: no logits\n"); return 1; }
    printf("{\"system_info\":");
    json_string(llama_print_system_info());
    printf(",\"hwcaps\":[");
    int first = 1;
    for (const struct need *k = KNOWN; k->feature; k++) {
        if (hw[k->word] & k->bit) { printf(first ? "\"%s\"" : ",\"%s\"", k->hwcap); first = 0; }
    }
    printf("],\"tokens\":[");
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", toks[i]);
    printf("],\"n_vocab\":%d,\"logits\":[", nv);
    for (int i = 0; i < nv; i++) {
        if (i) putchar(',');
        if (isfinite(lg[i])) printf("%.9g", lg[i]); else printf("null");
    }
    printf("]}\n");
    llama_batch_free(b);
    free(toks);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatedReport {
    /// One line saying exactly what ran.
    pub summary: String,
    /// `qemu-aarch64 7.2.22 -cpu neoverse-n1`.
    pub emulator: String,
    pub cpu: String,
    /// HWCAPs the emulated CPU reported to the program.
    pub hwcaps: Vec<String>,
    pub required_cpu_features: Vec<String>,
    /// The tiny verification model the program ran on.
    pub model: String,
    pub link_command: String,
    pub system_info: String,
    pub features: Vec<FeatureCheck>,
    pub tokens: Vec<i64>,
    pub logits: LogitsCheck,
    /// The same program on an older emulated CPU lacking a required feature; `None` when the build
    /// needs nothing beyond Armv8.0.
    pub refusal: Option<RefusalCheck>,
    pub rust_runtime: String,
    /// For a tuned arm64 variant: the portable arm64 (armv8-a) build checked alongside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portable_arm64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalCheck {
    pub cpu: String,
    pub missing: Vec<String>,
    pub exit_code: i32,
    pub message: String,
}

/// What the program printed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProgramOutput {
    pub system_info: String,
    pub hwcaps: Vec<String>,
    pub tokens: Vec<i64>,
    pub n_vocab: usize,
    pub logits: Vec<Option<f32>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatedError {
    #[error("the build requires CPU feature `{0}`, which the verification program cannot check (no HWCAP known for it)")]
    UnknownFeature(String),
    #[error("no QEMU CPU model has every feature this build requires ({0})")]
    NoCpu(String),
    #[error("linking the verification program against {prefix} failed")]
    Link {
        prefix: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Run {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("the verification program printed something else than its JSON: {0}")]
    Output(String),
    #[error("compiled CPU features do not match the profile: {0}")]
    Features(String),
    #[error(
        "the build was not refused on {cpu}, which lacks {missing}: `{command}` exited with {status} (expected {EXIT_CPU_LACKS_FEATURE} naming the feature)\n{stderr}"
    )]
    NotRefused {
        cpu: String,
        missing: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("I/O error at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl crate::error::Hint for EmulatedError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            EmulatedError::Run { .. } | EmulatedError::Link { .. } => {
                "run `cargo xtask prereqs --install --cross aarch64`; the build was not published"
                    .into()
            }
            _ => "the arm64 build does not behave as its profile says; it was not published".into(),
        })
    }
}

/// The program's C source with the required-feature table of this build.
pub fn program_source(required: &[String]) -> Result<String, EmulatedError> {
    let row = |feature: &str, mac: &str, name: &str| {
        let word = usize::from(mac.starts_with("HWCAP2_"));
        format!("    {{ \"{feature}\", \"{name}\", {word}, {mac} }},\n")
    };
    let mut req = String::new();
    for f in required {
        let caps = cross::hwcaps_of(f).ok_or_else(|| EmulatedError::UnknownFeature(f.clone()))?;
        for (mac, name) in caps {
            req.push_str(&row(f, mac, name));
        }
    }
    let mut known = String::new();
    for (f, caps) in cross::HWCAPS {
        for (mac, name) in *caps {
            known.push_str(&row(f, mac, name));
        }
    }
    Ok(PROGRAM_C
        .replace("@REQUIRED@", &req)
        .replace("@KNOWN@", &known))
}

/// The cross link line: the prefix's static libraries in link.json's order, `-static`.
pub fn link_command(
    tc: &CrossToolchain,
    src: &Path,
    exe: &Path,
    prefix: &Path,
    link: &LinkDescription,
) -> Cmd {
    // The cross link carries no rpath (a static program) and no frameworks (Linux).
    Cmd::new(&tc.cc)
        .arg(src)
        .arg("-o")
        .arg(exe)
        .arg("-O2")
        .arg("-static")
        .args(link.c_args(prefix, false))
}

/// `qemu-aarch64 -cpu MODEL PROGRAM ARGS`.
pub fn run_command(tc: &CrossToolchain, cpu: &str, exe: &Path, model: &Path, threads: u32) -> Cmd {
    Cmd::new(&tc.runner)
        .args(["-cpu", cpu])
        .arg(exe)
        .arg(model)
        .arg(threads.to_string())
        .arg(PROMPT)
        .timeout(Duration::from_secs(600))
}

pub fn parse_output(stdout: &str) -> Result<ProgramOutput, EmulatedError> {
    let out: ProgramOutput = serde_json::from_str(stdout.trim())
        .map_err(|e| EmulatedError::Output(format!("{e}: {}", crate::cmd::tail(stdout, 3))))?;
    if out.logits.len() != out.n_vocab {
        return Err(EmulatedError::Output(format!(
            "{} logits for n_vocab {}",
            out.logits.len(),
            out.n_vocab
        )));
    }
    Ok(out)
}

/// Builds the program in `work` and runs every check; returns the report and the program's path
/// (the caller keeps it in the prefix).
pub fn verify(
    tc: &CrossToolchain,
    prefix: &Path,
    required: &[String],
    model: &Path,
    reference: (&[f32], &str),
    work: &Path,
) -> Result<(EmulatedReport, PathBuf), EmulatedError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| EmulatedError::Io { path, source }
    };
    let link = super::read_link(prefix).map_err(|e| EmulatedError::Output(e.to_string()))?;
    fs_err::create_dir_all(work).map_err(io(work))?;
    let src = work.join("logits-check.c");
    fs_err::write(&src, program_source(required)?).map_err(io(&src))?;
    let exe = work.join("tunellama-logits-check");
    let cmd = link_command(tc, &src, &exe, prefix, &link);
    cmd.clone()
        .timeout(Duration::from_secs(300))
        .run()
        .map_err(|source| EmulatedError::Link {
            prefix: prefix.display().to_string(),
            source: Box::new(source),
        })?;

    let cpu: EmulatedCpu =
        cross::cpu_for(required).ok_or_else(|| EmulatedError::NoCpu(required.join(", ")))?;
    let run = run_command(tc, cpu.model, &exe, model, 1);
    let out = run.output().map_err(|e| EmulatedError::Run {
        command: run.display(),
        status: "not run".into(),
        stderr: e.to_string(),
    })?;
    if !out.success() {
        return Err(EmulatedError::Run {
            command: run.display(),
            status: format!("{:?}", out.status),
            stderr: crate::cmd::tail(&out.stderr, 20),
        });
    }
    let p = parse_output(&out.stdout)?;
    let checks = features::check("aarch64", required, &p.system_info);
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| format!("{} compiled={} expected={}", c.name, c.compiled, c.expected))
        .collect();
    if !bad.is_empty() {
        return Err(EmulatedError::Features(bad.join("; ")));
    }
    let ours: Vec<f32> = p.logits.iter().map(|l| l.unwrap_or(f32::NAN)).collect();
    let logits = compare(&ours, reference.0, reference.1)
        .map_err(|e| EmulatedError::Output(e.to_string()))?;
    if logits.top_token != logits.reference_top_token {
        return Err(EmulatedError::Output(format!(
            "argmax {} differs from the reference's {}",
            logits.top_token, logits.reference_top_token
        )));
    }

    let refusal = match cross::cpu_lacking(required) {
        None => None,
        Some((older, missing)) => Some(refusal(tc, older, &missing, &exe, model)?),
    };
    let emulator = format!("qemu-aarch64 {} -cpu {}", tc.runner_version, cpu.model);
    let summary = format!(
        "C-level logits under {emulator} ({}): max |diff| {:.2e} vs {}, argmax {} equal{}; {}",
        cpu.arch,
        logits.max_abs_diff,
        logits.reference,
        logits.top_token,
        refusal
            .as_ref()
            .map(|r| format!(
                "; refused on -cpu {} (exit {}, missing {})",
                r.cpu,
                r.exit_code,
                r.missing.join(", ")
            ))
            .unwrap_or_default(),
        NO_RUST_RUNTIME
    );
    Ok((
        EmulatedReport {
            summary,
            emulator,
            cpu: cpu.model.into(),
            hwcaps: p.hwcaps,
            required_cpu_features: required.to_vec(),
            model: model.display().to_string(),
            link_command: cmd.display(),
            system_info: p.system_info,
            features: checks,
            tokens: p.tokens,
            logits,
            refusal,
            rust_runtime: NO_RUST_RUNTIME.into(),
            portable_arm64: None,
        },
        exe,
    ))
}

/// Runs the program on `older` and requires exit 3 with every missing feature named.
fn refusal(
    tc: &CrossToolchain,
    older: EmulatedCpu,
    missing: &[String],
    exe: &Path,
    model: &Path,
) -> Result<RefusalCheck, EmulatedError> {
    let run = run_command(tc, older.model, exe, model, 1);
    let out = run.output().map_err(|e| EmulatedError::Run {
        command: run.display(),
        status: "not run".into(),
        stderr: e.to_string(),
    })?;
    let named = missing.iter().all(|f| out.stderr.contains(f.as_str()));
    if out.status != Some(EXIT_CPU_LACKS_FEATURE) || !named {
        return Err(EmulatedError::NotRefused {
            cpu: older.model.into(),
            missing: missing.join(", "),
            command: run.display(),
            status: format!("{:?}", out.status),
            stderr: crate::cmd::tail(&out.stderr, 10),
        });
    }
    Ok(RefusalCheck {
        cpu: older.model.into(),
        missing: missing.to_vec(),
        exit_code: EXIT_CPU_LACKS_FEATURE,
        message: out.stderr.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_checks_exactly_the_hwcaps_of_the_required_features() {
        let src = program_source(&["dotprod".into(), "i8mm".into()]).unwrap();
        let req = src
            .split("REQUIRED[] = {")
            .nth(1)
            .unwrap()
            .split("};")
            .next()
            .unwrap();
        assert!(
            req.contains(r#"{ "dotprod", "asimddp", 0, HWCAP_ASIMDDP }"#),
            "{req}"
        );
        assert!(
            req.contains(r#"{ "i8mm", "i8mm", 1, HWCAP2_I8MM }"#),
            "{req}"
        );
        assert!(!req.contains("HWCAP_FPHP"), "{req}");
        assert!(!src.contains('@'), "placeholder left in the source");
        // armv8-a requires nothing: the table is empty and nothing can be refused.
        let v8 = program_source(&[]).unwrap();
        assert!(v8.contains("REQUIRED[] = {\n    { 0, 0, 0, 0 }"));
    }

    #[test]
    fn a_feature_without_hwcap_is_an_error_not_an_unchecked_build() {
        assert!(matches!(
            program_source(&["sme".into()]),
            Err(EmulatedError::UnknownFeature(f)) if f == "sme"
        ));
    }

    #[test]
    fn program_output_is_parsed_and_nan_becomes_null() {
        let o = parse_output(
            r#"{"system_info":"CPU : NEON = 1 | DOTPROD = 1 |","hwcaps":["asimd","asimddp"],"tokens":[1,84],"n_vocab":3,"logits":[0.5,-1.25,null]}"#,
        )
        .unwrap();
        assert_eq!(o.hwcaps, ["asimd", "asimddp"]);
        assert_eq!(o.logits, [Some(0.5), Some(-1.25), None]);
        assert!(parse_output(
            r#"{"system_info":"","hwcaps":[],"tokens":[],"n_vocab":2,"logits":[1]}"#
        )
        .is_err());
    }
}
