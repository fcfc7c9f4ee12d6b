//! `models::ensure` (what `setup --model NAME|auto` calls): `auto` resolves through `recommend`,
//! and a stored model is returned without touching the network.

mod support;

use support::server::{Reply, Server};
use xtask::context::Ctx;
use xtask::machine::Machine;
use xtask::progress::Silent;

#[test]
fn ensure_auto_picks_the_recommended_model_and_returns_it_once_stored() {
    let server = Server::start();
    let small = support::data(20_000, 1);
    let big = support::data(60_000, 2);
    server.route("/small.gguf", small.clone(), vec![Reply::ok()]);
    server.route("/big.gguf", big.clone(), vec![Reply::ok()]);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("models")).unwrap();
    let catalog = root.path().join("models/catalog.toml");
    let entry = |name: &str, params: &str, path: &str, body: &[u8]| {
        format!(
            "[[model]]\nname = \"{name}\"\nfile = \"{name}.gguf\"\nurls = [\"{}\"]\nsize = {}\nsha256 = \"{}\"\nparameters = \"{params}\"\n\n",
            server.url(path),
            body.len(),
            support::sha256_hex(body)
        )
    };
    std::fs::write(
        &catalog,
        entry("small-chat", "100M", "/small.gguf", &small)
            + &entry("big-chat", "300M", "/big.gguf", &big),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let ctx = Ctx {
        cache_dir: cache.path().to_path_buf(),
        json: false,
        quiet: true,
        verbose: 0,
        interactive: false,
        repo_root: root.path().to_path_buf(),
    };
    let machine =
        Machine::from_json_file(&support::fixture("machines/models-laptop-8gb-cpu.json")).unwrap();

    // Not stored yet: `auto` picks big-chat and tries its (plain http, so refused) source.
    let e = xtask::models::ensure(&ctx, "auto", &machine, &Silent).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("refusing insecure URL") && msg.contains("/big.gguf"),
        "{msg}"
    );
    assert!(server.seen("/big.gguf").is_empty());

    // Stored by the CLI (which may allow http), then `ensure` just returns it.
    let o = xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["models", "fetch", "big-chat", "--allow-http", "--catalog"])
        .arg(&catalog)
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = xtask::models::ensure(&ctx, "auto", &machine, &Silent).unwrap();
    assert_eq!(path.file_name().unwrap(), "big-chat.gguf");
    assert_eq!(std::fs::read(&path).unwrap(), big);
    let again = xtask::models::ensure(&ctx, "big-chat", &machine, &Silent).unwrap();
    assert_eq!(again, path);
    assert_eq!(server.seen("/big.gguf").len(), 1);
    assert!(server.seen("/small.gguf").is_empty());
}
