//! The JavaScript API of the wasm variant (issue 14, point 3), under node: a model loaded from
//! bytes, a streamed generation (one callback per token, the pieces valid UTF-8 and concatenating
//! to the text), the sampling options and their seed, greedy = argmax, stop(), free(), and the C
//! shim's UTF-8 hold-back on sequences split across tokens (tests/wasm/api-test.js).

#[path = "support/wasm.rs"]
mod wasm;
use serde_json::Value;
use wasm::{cross_wasm, module_and_model, node, script};

#[test]
fn the_js_api_streams_a_generation_and_stops_and_frees() {
    let r = cross_wasm();
    let (module, model) = module_and_model(&r);
    let out = node(&[
        &script("api-test.js"),
        module.to_str().unwrap(),
        model.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["systemInfo"].as_str().unwrap().contains("WASM_SIMD = 1"),
        "{v}"
    );

    // Streaming: one callback per token, the pieces concatenate to the text and the tokens.
    let sampled = &v["sampled"];
    let tokens = sampled["tokens"].as_array().unwrap();
    assert!(!tokens.is_empty() && tokens.len() <= 24, "{sampled}");
    assert_eq!(v["streamedTokens"], sampled["tokens"]);
    assert_eq!(v["streamedText"], sampled["text"]);
    assert!(v["callbacks"].as_u64().unwrap() >= tokens.len() as u64);
    assert!(sampled["promptTokens"].as_u64().unwrap() > 1);
    // The text is what a fatal UTF-8 decoder accepted, piece by piece: never a broken sequence.
    assert!(!sampled["text"].as_str().unwrap().is_empty());

    // The seed reproduces; another seed is another sample; greedy ignores the seed and starts
    // with the argmax of the prompt's logits.
    assert_eq!(v["sampledAgain"], sampled["tokens"]);
    assert_ne!(
        v["otherSeed"], sampled["tokens"],
        "seed 8 sampled what seed 7 did"
    );
    assert_eq!(v["greedy"], v["greedyAgain"]);
    assert_eq!(v["greedy"][0], v["argmax"]);

    assert_eq!(v["stoppedTokens"], 3, "stop() after the third token");
    assert_eq!(v["concurrentRefused"], true);
    assert!(
        v["afterFreeRefused"].as_str().unwrap().contains("freed"),
        "{v}"
    );

    // UTF-8: incomplete sequences wait for their next bytes; invalid bytes become U+FFFD.
    let utf8: Vec<&str> = v["utf8"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        utf8,
        [
            "",
            "é",
            "",
            "€A",
            "",
            "",
            "😀",
            "\u{FFFD}B",
            "\u{FFFD}\u{FFFD}",
            "",
            "\u{FFFD}"
        ]
    );
}
