//! `tunellama serve` driven by the official `openai` Python client (pinned, in a venv of the test
//! cache): chat and completions, streamed and not, `stop`, `max_tokens` → `length`, usage and
//! the `include_usage` chunk, `seed` determinism, and the errors the client maps to its
//! exceptions (401, 400 `exceed_context_size_error`, 404), against the real binary.

#[path = "support/runtime.rs"]
mod rt;
#[path = "support/serve.rs"]
mod serve;

use serde_json::Value;

const KEY: &str = "sk-test-7f3a9c";

const SCRIPT: &str = r#"
import json, sys
import openai

base, key = sys.argv[1], sys.argv[2]
c = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
out = {}
msgs = [{"role": "user", "content": "Say something."}]

# Chat, not streamed: greedy, a few tokens, usage.
r = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, temperature=0)
out["chat"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
               "role": r.choices[0].message.role, "usage": r.usage.model_dump(),
               "object": r.object}

# Chat, streamed, with the usage chunk.
chunks = list(c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, temperature=0,
                                        stream=True, stream_options={"include_usage": True}))
out["chat_stream"] = {
    "first_role": chunks[0].choices[0].delta.role,
    "text": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
    "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1],
    "last_choices": len(chunks[-1].choices),
    "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
    "objects": sorted({ch.object for ch in chunks}),
}

# Completions, not streamed and streamed.
r = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=10, temperature=0)
out["completion"] = {"text": r.choices[0].text, "finish": r.choices[0].finish_reason,
                     "usage": r.usage.model_dump()}
chunks = list(c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=10,
                                   temperature=0, stream=True))
out["completion_stream"] = {"text": "".join(ch.choices[0].text for ch in chunks if ch.choices),
                            "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1]}

# stop: a piece of the greedy text, cut where it first appears; never emitted itself.
long = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=24, temperature=0)
t = long.choices[0].text
stop = None
for i in range(3, len(t) - 2):
    s = t[i:i + 2]
    if "\ufffd" not in s and t.index(s) >= 2 and s.strip() == s and s:
        stop = s
        break
assert stop is not None, f"no usable stop string in {t!r}"
r = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=24, temperature=0,
                         stop=[stop, "\u0000never"])
out["stop"] = {"full": t, "stop": stop, "text": r.choices[0].text, "finish": r.choices[0].finish_reason}
chunks = list(c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=24,
                                   temperature=0, stop=stop, stream=True))
out["stop_stream"] = {"text": "".join(ch.choices[0].text for ch in chunks if ch.choices),
                      "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1]}

# seed: the same seed at temperature 1 gives the same text.
a = [c.completions.create(model="tiny", prompt="Roll:", max_tokens=16, temperature=1.0, seed=s)
     .choices[0].text for s in (11, 11, 12)]
out["seed"] = a

# Errors as the client sees them.
def err(f):
    try:
        f()
    except openai.APIStatusError as e:
        return {"status": e.status_code, "class": type(e).__name__, "body": e.body}
    return None

out["no_key"] = err(lambda: openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
                    .chat.completions.create(model="tiny", messages=msgs, max_tokens=2))
out["too_long"] = err(lambda: c.completions.create(model="tiny", prompt="x" * 400, max_tokens=2))
out["not_found"] = err(lambda: c.models.retrieve("tiny"))
out["models"] = [m.id for m in c.models.list().data]
print(json.dumps(out))
"#;

#[test]
fn the_official_openai_client_works_unchanged() {
    let cache = xtask::testcmd::test_cache_dir();
    let py = xtask::test_python::ensure_openai(&cache).expect("the openai venv");
    let model = rt::python_model(&["--chat-template", "Qwen-Qwen2.5-7B-Instruct.jinja"]);
    let server = serve::Server::start(
        &rt::binary(),
        &[
            "-m",
            model.to_str().unwrap(),
            "-c",
            "256",
            "--parallel",
            "2",
            "--api-key",
            KEY,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(server.url("/v1"))
        .arg(KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client script failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let chat = &v["chat"];
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["role"], "assistant");
    let u = &chat["usage"];
    let n = u["completion_tokens"].as_u64().unwrap();
    assert!(n <= 12 && n > 0, "{u}");
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + n
    );
    // 12 tokens unless the model ended first ("stop").
    assert_eq!(
        chat["finish"],
        if n == 12 { "length" } else { "stop" },
        "{chat}"
    );

    // Streamed and not, greedy: the same text; the first chunk carries the role; the usage chunk
    // has no choices.
    let cs = &v["chat_stream"];
    assert_eq!(cs["first_role"], "assistant");
    assert_eq!(cs["text"], chat["text"], "{v}");
    assert_eq!(cs["finish"], chat["finish"]);
    assert_eq!(cs["last_choices"], 0);
    assert_eq!(cs["usage"]["completion_tokens"], u["completion_tokens"]);
    assert_eq!(cs["usage"]["prompt_tokens"], u["prompt_tokens"]);
    assert_eq!(cs["objects"], serde_json::json!(["chat.completion.chunk"]));

    let c = &v["completion"];
    assert_eq!(v["completion_stream"]["text"], c["text"]);
    assert_eq!(c["usage"]["completion_tokens"], 10, "{c}");
    assert_eq!(c["finish"], "length");
    assert_eq!(v["completion_stream"]["finish"], "length");

    // stop: the text up to the stop string's first appearance, without it.
    let s = &v["stop"];
    let full = s["full"].as_str().unwrap();
    let stop = s["stop"].as_str().unwrap();
    let want = &full[..full.find(stop).unwrap()];
    assert_eq!(s["text"], want, "{s}");
    assert_eq!(s["finish"], "stop");
    assert_eq!(v["stop_stream"]["text"], want);
    assert_eq!(v["stop_stream"]["finish"], "stop");

    let seed = v["seed"].as_array().unwrap();
    assert_eq!(
        seed[0], seed[1],
        "the same seed gave different text: {seed:?}"
    );

    assert_eq!(v["no_key"]["status"], 401, "{}", v["no_key"]);
    assert_eq!(v["no_key"]["class"], "AuthenticationError");
    assert_eq!(v["too_long"]["status"], 400);
    assert_eq!(v["too_long"]["class"], "BadRequestError");
    let body = &v["too_long"]["body"];
    // The client hands over the `error` object (or the whole body, by version).
    let e = if body["error"].is_object() {
        &body["error"]
    } else {
        body
    };
    assert_eq!(e["type"], "exceed_context_size_error", "{body}");
    assert_eq!(e["n_ctx"], 256);
    assert!(e["n_prompt_tokens"].as_u64().unwrap() > 256, "{body}");
    assert_eq!(v["not_found"]["status"], 404);
    assert_eq!(v["not_found"]["class"], "NotFoundError");
    // The model's id is its file name without `.gguf`.
    let id = model.file_stem().unwrap().to_str().unwrap();
    assert_eq!(v["models"], serde_json::json!([id]));

    // The key never shows in the log.
    assert!(!server.log().contains(KEY), "{}", server.log());
    assert!(server.stop().success());
}

/// Penalties see the prompt's tokens (as llama.cpp's server feeds them to the sampler): with a
/// strong presence or frequency penalty, the greedy first token changes exactly when the
/// unpenalised one occurs in the prompt. Only printable non-space ASCII bytes may be drawn
/// (ids 3 + byte in the tiny vocabulary; the control tokens 0 to 2 and other bytes are banned),
/// so each answer is one character naming its token.
#[test]
fn penalties_count_the_prompt_tokens_as_llama_cpp_server_does() {
    use serde_json::json;
    let model = rt::python_model(&[]);
    let s = serve::Server::start(
        &rt::binary(),
        &[
            "-m",
            model.to_str().unwrap(),
            "-c",
            "128",
            "--parallel",
            "1",
        ],
    );
    let mut bias = serde_json::Map::new();
    for b in (0u32..=0x20).chain(0x7f..=0xff) {
        bias.insert((3 + b).to_string(), json!(-100));
    }
    for control in ["0", "1", "2"] {
        bias.insert(control.into(), json!(-100));
    }
    let first_token = |prompt: &str, extra: &[(&str, Value)]| -> i64 {
        let mut req = json!({"prompt": prompt, "max_tokens": 1, "temperature": 0,
                             "logit_bias": bias});
        for (k, v) in extra {
            req[k] = v.clone();
        }
        let (st, v) = s.post_json("/v1/completions", &req);
        assert_eq!(st, 200, "{v}");
        let text = v["choices"][0]["text"].as_str().unwrap();
        assert_eq!(text.len(), 1, "{v}");
        3 + i64::from(text.as_bytes()[0])
    };
    let printable: String = (0x21u8..0x7f).map(char::from).collect();
    // Prompts of many distinct characters (the answer is likely among them) and of few.
    let mut prompts: Vec<String> = (0..14)
        .map(|i| printable.chars().cycle().skip(i * 7).take(60).collect())
        .collect();
    prompts.extend(["zzzz", "Q", "ab", "mmmmnnnn", "Hello", "7"].map(String::from));
    let (mut inside, mut outside) = (0, 0);
    for p in &prompts {
        let (st, t) = s.post_json("/tokenize", &json!({"content": p, "add_special": true}));
        assert_eq!(st, 200, "{t}");
        let tokens: Vec<i64> = t["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        // All within the penalties' window (64 tokens).
        assert!(tokens.len() <= 64, "{p:?} is {} tokens", tokens.len());
        let plain = first_token(p, &[]);
        let in_prompt = tokens.contains(&plain);
        if in_prompt {
            inside += 1;
        } else {
            outside += 1;
        }
        for penalty in [
            ("presence_penalty", json!(2.0)),
            ("frequency_penalty", json!(2.0)),
        ] {
            let penalised = first_token(p, std::slice::from_ref(&penalty));
            assert_eq!(
                penalised != plain,
                in_prompt,
                "{p:?} ({tokens:?}) with {penalty:?}: the first token {plain} became {penalised}; it is {}in the prompt",
                if in_prompt { "" } else { "not " }
            );
        }
    }
    assert!(
        inside >= 2 && outside >= 2,
        "the prompts must show both cases: {inside} answers in their prompt, {outside} not"
    );
    assert!(s.stop().success());
}
