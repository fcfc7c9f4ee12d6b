//! Checks several test files make on `cargo xtask ... --json` output: success and the JSON
//! itself, a profile's decision, and an emulated run's logits against the x86 portable build.
#![allow(dead_code)]

use serde_json::Value;
use std::process::Output;

/// The JSON on stdout of a command that must have succeeded (its stderr in the failure).
pub fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// The value a rendered profile (`profile --json`) decided for `name`.
pub fn decision<'a>(profile: &'a Value, name: &str) -> Option<&'a str> {
    profile["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .map(|d| d["value"].as_str().unwrap())
}

/// An emulated verification (`verification.emulated` of `cargo xtask cross --json`): every
/// logit within tolerance of the x86 portable build's, the same top token.
pub fn assert_emulated_logits_match_the_portable_build(e: &Value) {
    assert!(e["logits"]["worst_ratio"].as_f64().unwrap() <= 1.0, "{e}");
    assert_eq!(e["logits"]["top_token"], e["logits"]["reference_top_token"]);
    assert!(
        e["logits"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("portable build "),
        "the reference is the x86 portable build's runtime: {e}"
    );
}
