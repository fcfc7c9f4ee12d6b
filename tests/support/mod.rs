//! Shared helpers for the integration tests: a scripted HTTP server on 127.0.0.1, a CONNECT proxy
//! in front of it, an HTTPS server with a test CA, and test data.
#![allow(dead_code)]

pub mod proxy;
pub mod server;
pub mod tls;

/// Deterministic, incompressible-looking test bytes.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

/// Reads an HTTP request head up to its blank line; returns the request line, trimmed.
pub fn read_request_head(r: &mut impl std::io::BufRead) -> std::io::Result<String> {
    let mut first = String::new();
    r.read_line(&mut first)?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(first.trim().to_string());
        }
    }
}
