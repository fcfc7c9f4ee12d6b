//! Chat templates through the real `tunellama template` command (runtime/src/chat_template.rs,
//! minijinja) against Python's jinja2 set up as Hugging Face's `apply_chat_template` sets it up
//! (tests/fixtures/hf_chat_template.py, run live with the system's python3-jinja2): real public
//! templates (tests/fixtures/chat_templates/SOURCES.md), several conversations each, with and
//! without the generation prompt, compared byte for byte; the template's own refusals
//! (`raise_exception`) must be refusals on both sides, with the same message.

#[path = "support/runtime.rs"]
mod rt;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Each fixture with the BOS and EOS token texts of its model's tokenizer (Qwen2.5 has no BOS
/// token: transformers leaves `bos_token` undefined, which renders as the empty string).
const TEMPLATES: [(&str, &str, &str); 8] = [
    ("Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>"),
    (
        "meta-llama-Llama-3.1-8B-Instruct",
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    (
        "meta-llama-Llama-3.2-3B-Instruct",
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    ("google-gemma-2-2b-it", "<bos>", "<eos>"),
    ("microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>"),
    ("mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>"),
    (
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
    ),
    // The one whose output depends on trim_blocks and lstrip_blocks (the others use `{%-`).
    (
        "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
        "<BOS_TOKEN>",
        "<|END_OF_TURN_TOKEN|>",
    ),
];

fn template_path(name: &str) -> PathBuf {
    rt::repo()
        .join("tests/fixtures/chat_templates")
        .join(format!("{name}.jinja"))
}

fn m(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content})
}

/// The conversations every template renders (each with and without the generation prompt).
fn conversations() -> Vec<(&'static str, Value)> {
    // Whitespace at both ends (incl. U+001C, which Python's str.strip() removes and Rust's
    // trim() keeps), non-ASCII, quotes, and text that looks like Jinja or JSON.
    let tricky =
        "\u{1c}  Grüße, 世界 👋 \"quoted\" 'single' <b>&amp;</b> {{ not_jinja }} {\"a\": 1}\t\n";
    vec![
        (
            "system+user",
            json!([m("system", "You are terse."), m("user", "Hi!")]),
        ),
        ("user only", json!([m("user", "What is 2+2?")])),
        (
            "multi-turn",
            json!([
                m("user", "Name a colour."),
                m("assistant", "Blue."),
                m("user", "Another one?")
            ]),
        ),
        (
            "history ending with the assistant",
            json!([
                m("system", "Answer in French."),
                m("user", "Hello"),
                m("assistant", "Bonjour"),
                m("user", "Thanks"),
                m("assistant", "De rien")
            ]),
        ),
        (
            "whitespace, unicode and markup in content",
            json!([m("user", tricky), m("assistant", tricky), m("user", "  \n")]),
        ),
        (
            "reasoning in an assistant turn",
            json!([
                m("user", "Why?"),
                m("assistant", "<think>\nlet me see\n</think>\n\nBecause."),
                m("user", "Sure?")
            ]),
        ),
        (
            "a tool result",
            json!([
                m("user", "Weather?"),
                m("assistant", "Let me check."),
                m("tool", "{\"temp\": 21}")
            ]),
        ),
        (
            "roles that do not alternate",
            json!([m("user", "one"), m("user", "two")]),
        ),
        ("no messages", json!([])),
    ]
}

/// What jinja2 made of one case.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Text(String),
    /// `raise_exception(message)`.
    Raised(String),
    /// jinja2 itself failed (e.g. `messages[0]` of an empty list).
    Failed(String),
}

fn python() -> PathBuf {
    let py = xtask::prereq::system_python();
    let ok = Command::new(&py)
        .args(["-c", "import jinja2"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import jinja2: `cargo xtask test` installs it (python3-jinja2), or apt-get install python3-jinja2",
        py.display()
    );
    py
}

/// jinja2's renders of `cases` (each `(messages, add_generation_prompt)`), in UTC like ours.
fn jinja2_render(template: &str, bos: &str, eos: &str, cases: &[(Value, bool)]) -> Vec<Want> {
    use std::io::Write;
    let req = json!({
        "bos_token": bos,
        "eos_token": eos,
        "cases": cases.iter().map(|(msgs, agp)| json!({"messages": msgs, "add_generation_prompt": agp})).collect::<Vec<_>>(),
    });
    let mut child = Command::new(python())
        .arg(rt::repo().join("tests/fixtures/hf_chat_template.py"))
        .arg(template_path(template))
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hf_chat_template.py {template} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|r| match (&r["ok"], &r["error"], &r["raised"]) {
            (Value::String(t), _, _) => Want::Text(t.clone()),
            (_, Value::String(e), Value::Bool(true)) => Want::Raised(e.clone()),
            (_, Value::String(e), _) => Want::Failed(e.clone()),
            _ => panic!("unexpected result {r}"),
        })
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tunellama_render(args: &[&str], messages: &Value, agp: bool) -> Output {
    let mut a = vec!["template"];
    a.extend_from_slice(args);
    if agp {
        a.push("--add-generation-prompt");
    }
    rt::run(&a, Some(&messages.to_string()))
}

/// `None` when tunellama did what jinja2 did, else what differs.
fn mismatch(want: &Want, got: &Output) -> Option<String> {
    let (stdout, stderr) = (text(&got.stdout), text(&got.stderr));
    match want {
        Want::Text(t) if got.status.success() && got.stdout == t.as_bytes() => None,
        Want::Text(t) => {
            let at = t
                .bytes()
                .zip(got.stdout.iter())
                .take_while(|(a, b)| a == *b)
                .count();
            let window = |s: &[u8]| text(&s[at.saturating_sub(40)..s.len().min(at + 40)]);
            Some(format!(
                "tunellama (exit {:?}) differs from jinja2 at byte {at}:\n  jinja2:    {:?}\n  tunellama: {:?}\nstderr: {stderr}",
                got.status.code(),
                window(t.as_bytes()),
                window(&got.stdout)
            ))
        }
        Want::Raised(msg)
            if got.status.code() == Some(2)
                && stderr.contains(&format!("(raise_exception): {msg}\n")) =>
        {
            None
        }
        Want::Raised(msg) => Some(format!(
            "jinja2 raised {msg:?}; tunellama exit {:?}, stdout {stdout:?}, stderr: {stderr}",
            got.status.code()
        )),
        Want::Failed(_) if got.status.code() == Some(2) && stderr.contains("chat template") => None,
        Want::Failed(e) => Some(format!(
            "jinja2 failed ({e}); tunellama exit {:?}, stdout {stdout:?}, stderr: {stderr}",
            got.status.code()
        )),
    }
}

#[test]
fn real_templates_render_byte_for_byte_as_hugging_faces_jinja2_does() {
    let convs = conversations();
    let mut failures = Vec::new();
    let (mut texts, mut raised) = (0, 0);
    for (name, bos, eos) in TEMPLATES {
        let path = template_path(name);
        let p = path.to_str().unwrap();
        let cases: Vec<(Value, bool)> = convs
            .iter()
            .flat_map(|(_, msgs)| [(msgs.clone(), true), (msgs.clone(), false)])
            .collect();
        // jinja2 before and after ours: a template with strftime_now (Llama 3.2) could render
        // another date across midnight; then the whole template is compared again.
        for attempt in 0.. {
            let before = jinja2_render(name, bos, eos, &cases);
            let got: Vec<Output> = cases
                .iter()
                .map(|(msgs, agp)| {
                    tunellama_render(
                        &["--template", p, "--bos-token", bos, "--eos-token", eos],
                        msgs,
                        *agp,
                    )
                })
                .collect();
            if before != jinja2_render(name, bos, eos, &cases) && attempt == 0 {
                continue;
            }
            for (i, (want, out)) in before.iter().zip(&got).enumerate() {
                match want {
                    Want::Text(_) => texts += 1,
                    Want::Raised(_) => raised += 1,
                    Want::Failed(_) => {}
                }
                if let Some(why) = mismatch(want, out) {
                    failures.push(format!(
                        "{name}, {} (add_generation_prompt={}): {why}",
                        convs[i / 2].0,
                        cases[i].1
                    ));
                }
            }
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the renders differ from jinja2's:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The comparison covered real prompts and real refusals, not only errors.
    assert!(texts >= 60, "only {texts} texts compared");
    assert!(
        raised >= 4,
        "only {raised} raise_exception refusals compared"
    );
}

#[test]
fn every_fixture_template_is_listed_in_sources_md_with_its_sha256() {
    use sha2::Digest;
    let dir = rt::repo().join("tests/fixtures/chat_templates");
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".jinja") {
            continue;
        }
        let sha = sha2::Sha256::digest(std::fs::read(dir.join(&name)).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let row = sources
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("{name} has no row in SOURCES.md"));
        assert!(
            row.contains(&format!("`{sha}`")),
            "{name}: sha256 {sha} is not in its row: {row}"
        );
        assert!(
            TEMPLATES.iter().any(|t| format!("{}.jinja", t.0) == name),
            "{name} is not tested"
        );
        n += 1;
    }
    assert_eq!(n, TEMPLATES.len());
}

#[test]
fn a_models_own_template_and_special_tokens_come_from_its_gguf() {
    let name = "mistralai-Mistral-Nemo-Instruct-2407";
    let model = rt::python_model(&["--chat-template", &format!("{name}.jinja")]);
    let model = model.to_str().unwrap();
    let convs = conversations();
    let history = &convs[3].1;
    // The tiny model's vocabulary has <s> (id 1) and </s> (id 2) as BOS and EOS.
    let want = jinja2_render(name, "<s>", "</s>", &[(history.clone(), false)]);
    let out = tunellama_render(&["-m", model], history, false);
    if let Some(why) = mismatch(&want[0], &out) {
        panic!("{why}");
    }
    assert!(text(&out.stdout).starts_with("<s>[INST]"));
    assert!(text(&out.stdout).ends_with("De rien</s>"));

    let out = tunellama_render(&["-m", model, "--json"], history, true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["template_source"], "model");
    assert_eq!(v["bos_token"], "<s>");
    assert_eq!(v["eos_token"], "</s>");
    assert_eq!(v["add_generation_prompt"], true);

    // --template replaces the model's template; its tokens stay.
    let phi = template_path("microsoft-Phi-3.5-mini-instruct");
    let out = tunellama_render(
        &["-m", model, "--template", phi.to_str().unwrap()],
        &json!([m("user", "Hi")]),
        false,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "<|user|>\nHi<|end|>\n</s>");
}

/// Asserts exit 2 (bad input); returns stderr.
fn bad_input(out: Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

#[test]
fn a_model_without_a_template_is_refused_with_the_fallback_named() {
    let err = bad_input(tunellama_render(
        &["-m", rt::python_model(&[]).to_str().unwrap()],
        &json!([m("user", "Hi")]),
        true,
    ));
    assert!(err.contains("has no chat template"), "{err}");
    assert!(err.contains("built-in templates"), "{err}");
}

#[test]
fn a_broken_template_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("broken.jinja");
    std::fs::write(&t, "{% for m in messages %}\n{{ m.content }\n{% endfor %}").unwrap();
    let err = bad_input(tunellama_render(
        &["--template", t.to_str().unwrap()],
        &json!([m("user", "Hi")]),
        false,
    ));
    assert!(err.contains("does not compile at line 2, column"), "{err}");
    assert!(err.contains("hint: "), "{err}");
}

#[test]
fn messages_that_are_not_role_content_pairs_are_bad_input() {
    let phi = template_path("microsoft-Phi-3.5-mini-instruct");
    let err = bad_input(rt::run(
        &["template", "--template", phi.to_str().unwrap()],
        Some("[{\"role\": \"user\"}]"),
    ));
    assert!(err.contains("missing field `content`"), "{err}");
}

/// The renderer's pure pieces (strftime, Python's float repr, error conversion) have unit tests
/// in the runtime crate; they run here, built against the same prefix.
#[test]
fn runtime_unit_tests_of_the_chat_template_module_pass() {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(rt::repo())
        .args(["test", "--quiet", "--manifest-path"])
        .arg(rt::repo().join("runtime/Cargo.toml"))
        .arg("--target-dir")
        .arg(rt::repo().join("target/runtime-unit"))
        // The module is the binary's; the library's test targets would each report 0 passed.
        .args(["--bin", "tunellama", "chat_template::"])
        .env("TUNELLAMA_PREFIX", rt::prefix())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "runtime unit tests failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("test result: ok. "), "{stdout}");
    assert!(!stdout.contains("ok. 0 passed"), "{stdout}");
}
