//! Access control: the API key (compared in constant time, never logged) and CORS headers,
//! sent only when `--cors-origin` names an origin.

/// Constant-time equality of two byte strings: the time depends on the lengths only.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Whether an `Authorization` header value carries the key (`Bearer KEY`).
pub fn authorized(key: Option<&str>, header: Option<&str>) -> bool {
    let Some(key) = key else {
        return true;
    };
    let given = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .unwrap_or("")
        .trim();
    ct_eq(given.as_bytes(), key.as_bytes())
}

/// The CORS headers of every answer (none without an origin).
pub fn cors_headers(origin: Option<&str>) -> Vec<(&'static str, String)> {
    match origin {
        None => Vec::new(),
        Some(o) => vec![
            ("Access-Control-Allow-Origin", o.to_string()),
            ("Vary", "Origin".to_string()),
        ],
    }
}

/// Extra headers of a preflight (`OPTIONS`) answer.
pub fn preflight_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()),
        (
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type".into(),
        ),
        ("Access-Control-Max-Age", "600".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_is_authorized() {
        assert!(authorized(None, None));
        assert!(authorized(Some("k1"), Some("Bearer k1")));
        assert!(!authorized(Some("k1"), Some("Bearer k2")));
        assert!(!authorized(Some("k1"), Some("Bearer k1x")));
        assert!(!authorized(Some("k1"), Some("Bearer ")));
        assert!(!authorized(Some("k1"), None));
        assert!(!ct_eq(b"", b"\xff"));
        assert!(ct_eq(b"", b""));
    }
}
