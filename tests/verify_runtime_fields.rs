//! The verifier (`xtask/src/verify/runtime.rs`) reads the real runtime's `--json` outputs by the
//! exact field names the runtime writes: run the `tunellama` binary `setup` built and parse its
//! `generate`, `logits` and `info` output with the verifier's own readers.

#[path = "support/runtime.rs"]
mod rt;

use xtask::verify::runtime as verify;

fn json(args: &[&str]) -> serde_json::Value {
    let out = rt::run(args, None);
    assert!(
        out.status.success(),
        "{args:?}: exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_verifier_reads_the_runtimes_own_json_fields() {
    let m = rt::python_model(&[]);
    let m = m.to_str().unwrap();
    let g = json(&[
        "generate", "-m", m, "-n", "5", "--temp", "0", "--json", "Hello",
    ]);
    let n = verify::generated_tokens_of(&g).unwrap();
    assert!(n > 0 && n <= 5, "{g}");
    assert!(!verify::generated_text_of(&g).unwrap().is_empty() || n > 0);
    let l = json(&["logits", "-m", m, "--json", "Hello"]);
    let logits = verify::logits_of(&l).unwrap();
    assert_eq!(logits.len() as u64, l["n_vocab"].as_u64().unwrap());
    // A CPU build: the offload fields are all there (a missing one would be an `Output` error),
    // and they say no layer went to a GPU.
    let err = verify::check_offload("vulkan", &l).unwrap_err();
    assert!(
        matches!(err, verify::RuntimeVerifyError::NotOffloaded { .. }),
        "{err}"
    );
}
