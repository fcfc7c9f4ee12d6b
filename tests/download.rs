//! The generic download path against real HTTP servers on 127.0.0.1: completion, resume after a
//! cut, servers that ignore Range, retries, stalls, redirects, integrity failures.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::proxy::Proxy;
use support::server::{Reply, Server};
use xtask::download::{
    download, partial_path, Bearer, DownloadError, Expected, Options, Proxies, Secret, Sha256Hex,
};
use xtask::error::Hint;
use xtask::progress::Silent;

const SIZE: usize = 300_000;

fn fast() -> Options {
    Options {
        allow_http: true,
        retries: 3,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_millis(400),
        ..Options::default()
    }
}

fn expect(body: &[u8]) -> Expected {
    Expected {
        size: body.len() as u64,
        sha256: Sha256Hex::parse(&support::sha256_hex(body)).unwrap(),
    }
}

fn setup(script: Vec<Reply>) -> (Server, Vec<u8>, tempfile::TempDir) {
    let server = Server::start();
    let body = support::data(SIZE, 7);
    server.route("/m.gguf", body.clone(), script);
    (server, body, tempfile::tempdir().unwrap())
}

fn only_target(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn complete_download_is_verified_and_renamed_into_place() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let dest = dir.path().join("out.gguf");
    let o = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &fast(),
        &Silent,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(o.bytes_fetched, SIZE as u64);
    assert_eq!(o.attempts, 1);
    assert_eq!(only_target(dir.path()), vec!["out.gguf"]);
}

#[test]
fn cut_connection_resumes_with_range_and_fetches_less_than_a_restart() {
    let cut = 123_457;
    let (server, body, dir) = setup(vec![Reply::cut(cut), Reply::ok()]);
    let dest = dir.path().join("out.gguf");
    let o = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &fast(),
        &Silent,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(o.attempts, 2);
    let resumed = o.resumed_from.expect("the second attempt resumes");
    assert!(resumed > 0 && resumed <= cut, "resumed from {resumed}");
    let seen = server.seen("/m.gguf");
    assert_eq!(
        seen[1].range.as_deref(),
        Some(&*format!("bytes={resumed}-"))
    );
    // A restart would send cut + SIZE bytes; a resume sends only what the client lacked.
    assert_eq!(server.body_bytes(), cut + SIZE as u64 - resumed);
    assert!(server.body_bytes() < cut + SIZE as u64);
    assert!(!partial_path(&dest).exists());
}

#[test]
fn server_that_ignores_range_restarts_from_zero_and_is_still_correct() {
    let (server, body, dir) = setup(vec![Reply::cut(100_000), Reply::ignoring_range()]);
    let dest = dir.path().join("out.gguf");
    let o = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &fast(),
        &Silent,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(o.resumed_from, None);
    assert!(
        server.seen("/m.gguf")[1].range.is_some(),
        "a resume was asked for"
    );
    assert_eq!(server.body_bytes(), 100_000 + SIZE as u64);
}

#[test]
fn two_503s_then_success_is_retried_with_backoff() {
    let (server, body, dir) = setup(vec![Reply::Status(503), Reply::Status(503), Reply::ok()]);
    let dest = dir.path().join("out.gguf");
    let o = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &fast(),
        &Silent,
    )
    .unwrap();
    assert_eq!(o.attempts, 3);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn not_found_fails_at_once_with_the_url_and_a_hint() {
    let (server, body, dir) = setup(vec![Reply::Status(404)]);
    let dest = dir.path().join("out.gguf");
    let started = Instant::now();
    let e = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &fast(),
        &Silent,
    )
    .unwrap_err();
    assert!(
        matches!(e, DownloadError::Status { status: 404, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("/m.gguf"), "{e}");
    assert!(e.hint().unwrap().contains("catalog"));
    assert_eq!(server.seen("/m.gguf").len(), 1, "4xx is not retried");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(only_target(dir.path()).is_empty());
}

#[test]
fn wrong_bytes_fail_with_expected_and_actual_and_leave_no_file() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let mut wrong = body.clone();
    wrong[SIZE / 2] ^= 0xff;
    let exp = expect(&wrong);
    let dest = dir.path().join("out.gguf");
    let e = download(&server.url("/m.gguf"), &exp, &dest, &fast(), &Silent).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DownloadError::Checksum { .. }), "{msg}");
    assert!(msg.contains(exp.sha256.as_str()), "{msg}");
    assert!(msg.contains(&support::sha256_hex(&body)), "{msg}");
    assert!(e.is_integrity());
    assert_eq!(server.seen("/m.gguf").len(), 1, "a mismatch is not retried");
    assert!(
        only_target(dir.path()).is_empty(),
        "{:?}",
        only_target(dir.path())
    );
}

#[test]
fn wrong_size_is_refused_and_leaves_no_file() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let dest = dir.path().join("out.gguf");
    for size in [SIZE as u64 - 1, SIZE as u64 + 1] {
        let exp = Expected {
            size,
            sha256: expect(&body).sha256,
        };
        let e = download(&server.url("/m.gguf"), &exp, &dest, &fast(), &Silent).unwrap_err();
        assert!(matches!(e, DownloadError::WrongSize { .. }), "{e}");
        assert!(e.to_string().contains(&size.to_string()), "{e}");
        assert!(only_target(dir.path()).is_empty());
    }
}

#[test]
fn stalled_server_times_out_and_the_retry_resumes() {
    let (server, body, dir) = setup(vec![
        Reply::stall(50_000, Duration::from_secs(3)),
        Reply::ok(),
    ]);
    let dest = dir.path().join("out.gguf");
    let started = Instant::now();
    let o = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &fast(),
        &Silent,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(o.attempts, 2);
    assert!(o.resumed_from.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn redirect_chain_is_followed_to_the_file() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    server.route("/a", vec![], vec![Reply::Redirect(server.url("/b"))]);
    server.route("/b", vec![], vec![Reply::Redirect("/c".into())]);
    server.route("/c", vec![], vec![Reply::Redirect("/m.gguf".into())]);
    let dest = dir.path().join("out.gguf");
    let o = download(&server.url("/a"), &expect(&body), &dest, &fast(), &Silent).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(o.requests, 4);
}

#[test]
fn redirect_loop_is_stopped() {
    let server = Server::start();
    server.route("/loop", vec![], vec![Reply::Redirect("/loop".into())]);
    let dir = tempfile::tempdir().unwrap();
    let body = support::data(10, 1);
    let e = download(
        &server.url("/loop"),
        &expect(&body),
        &dir.path().join("x"),
        &fast(),
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(e, DownloadError::TooManyRedirects { .. }), "{e}");
}

#[test]
fn plain_http_is_refused_by_default_before_any_request() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let opts = Options {
        allow_http: false,
        ..fast()
    };
    let e = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dir.path().join("x"),
        &opts,
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(e, DownloadError::InsecureUrl { .. }), "{e}");
    assert!(e.hint().unwrap().contains("--allow-http"));
    assert!(server.seen("/m.gguf").is_empty());
}

#[test]
fn bearer_token_goes_only_to_its_exact_host_also_after_redirects() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    // localhost:PORT/start → 127.0.0.1:PORT/m.gguf: same machine, different host name.
    server.route(
        "/start",
        vec![],
        vec![Reply::Redirect(server.url("/m.gguf"))],
    );
    let opts = Options {
        bearer: Some(Bearer {
            host: "localhost".into(),
            token: Secret::new("hf_test_token"),
        }),
        ..fast()
    };
    download(
        &server.url_localhost("/start"),
        &expect(&body),
        &dir.path().join("x"),
        &opts,
        &Silent,
    )
    .unwrap();
    assert_eq!(
        server.seen("/start")[0].authorization.as_deref(),
        Some("Bearer hf_test_token")
    );
    assert_eq!(server.seen("/m.gguf")[0].authorization, None);
}

#[test]
fn network_failure_keeps_the_partial_file_and_the_next_call_resumes_it() {
    let (server, body, dir) = setup(vec![Reply::cut(70_000), Reply::cut(70_000), Reply::ok()]);
    let dest = dir.path().join("out.gguf");
    let opts = Options {
        retries: 0,
        ..fast()
    };
    let e = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &opts,
        &Silent,
    )
    .unwrap_err();
    let DownloadError::Network { kept, partial, .. } = &e else {
        panic!("{e}")
    };
    assert!(*kept > 0 && partial.exists(), "{e}");
    assert!(e.hint().unwrap().contains("resumed"));
    assert!(!dest.exists());
    let e2 = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &opts,
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(e2, DownloadError::Network { .. }));
    let o = download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &opts,
        &Silent,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let resumed = o.resumed_from.unwrap();
    assert!(resumed > 70_000, "two cuts were kept: {resumed}");
    assert!(server.body_bytes() < 70_000 * 2 + SIZE as u64);
}

#[test]
fn unreachable_server_is_retried_then_reported_as_network_error() {
    // Port 9 (discard) is outside the ephemeral range other tests' servers get, and closed on
    // ordinary machines; were a discard service listening, it would never answer: a timeout.
    let port = 9;
    let dir = tempfile::tempdir().unwrap();
    let body = support::data(10, 1);
    let e = download(
        &format!("http://127.0.0.1:{port}/x"),
        &expect(&body),
        &dir.path().join("x"),
        &Options {
            retries: 2,
            ..fast()
        },
        &Silent,
    )
    .unwrap_err();
    assert!(
        matches!(e, DownloadError::Network { attempts: 3, .. }),
        "{e}"
    );
}

#[test]
fn configured_proxy_carries_requests_for_other_hosts() {
    let server = Server::start();
    let body = support::data(SIZE, 3);
    server.route("/m.gguf", body.clone(), vec![Reply::ok()]);
    // The proxy is asked to CONNECT to the made-up host and tunnels to the server: no DNS lookup
    // happens here, so only a request through the proxy can succeed.
    let proxy = Proxy::start(server.addr);
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        proxies: Proxies {
            http: Some(proxy.url()),
            https: Some("http://127.0.0.1:9".into()),
            no_proxy: None,
        },
        ..fast()
    };
    let dest = dir.path().join("out.gguf");
    download(
        "http://models.example.invalid/m.gguf",
        &expect(&body),
        &dest,
        &opts,
        &Silent,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        proxy.lines(),
        ["CONNECT models.example.invalid:80 HTTP/1.1"]
    );
    let seen = server.seen("/m.gguf");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].host.as_deref(), Some("models.example.invalid"));
}

#[test]
fn no_proxy_entries_are_reached_directly_and_others_through_the_proxy() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let proxy = Proxy::start(server.addr);
    let opts = |no_proxy: &str| Options {
        proxies: Proxies {
            http: Some(proxy.url()),
            https: None,
            no_proxy: Some(no_proxy.into()),
        },
        retries: 0,
        connect_timeout: Duration::from_millis(300),
        ..fast()
    };
    // Loopback by name stays direct whatever the list says.
    download(
        &server.url_localhost("/m.gguf"),
        &expect(&body),
        &dir.path().join("a.gguf"),
        &opts("mirror.example.invalid"),
        &Silent,
    )
    .unwrap();
    assert!(proxy.lines().is_empty(), "{:?}", proxy.lines());
    // An address in a no_proxy CIDR is tried directly (it fails: nothing there serves the file;
    // a sandbox's network may answer 404 or nothing) and the proxy sees nothing...
    let far = "http://10.255.255.1:9/m.gguf";
    let e = download(
        far,
        &expect(&body),
        &dir.path().join("b.gguf"),
        &opts("mirror.example.invalid, 10.0.0.0/8"),
        &Silent,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DownloadError::Network { .. } | DownloadError::Status { .. }
        ),
        "{e}"
    );
    assert!(proxy.lines().is_empty(), "{:?}", proxy.lines());
    // ...and without that entry it goes through the proxy, which tunnels it to the server.
    download(
        far,
        &expect(&body),
        &dir.path().join("c.gguf"),
        &opts("mirror.example.invalid"),
        &Silent,
    )
    .unwrap();
    assert_eq!(proxy.lines(), ["CONNECT 10.255.255.1:9 HTTP/1.1"]);
}

#[test]
fn loopback_is_reached_directly_even_with_a_proxy_configured() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let opts = Options {
        proxies: Proxies {
            http: Some("http://127.0.0.1:9".into()),
            https: Some("http://127.0.0.1:9".into()),
            no_proxy: None,
        },
        retries: 0,
        ..fast()
    };
    let dest = dir.path().join("out.gguf");
    download(
        &server.url("/m.gguf"),
        &expect(&body),
        &dest,
        &opts,
        &Silent,
    )
    .unwrap();
}

#[test]
fn a_file_larger_than_the_free_space_is_refused_before_any_request() {
    let (server, body, dir) = setup(vec![Reply::ok()]);
    let exp = Expected {
        size: 1 << 60,
        sha256: expect(&body).sha256,
    };
    let e = download(
        &server.url("/m.gguf"),
        &exp,
        &dir.path().join("x"),
        &fast(),
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(e, DownloadError::NoSpace { .. }), "{e}");
    assert!(e.hint().unwrap().contains("--cache-dir"));
    assert!(server.seen("/m.gguf").is_empty());
}
