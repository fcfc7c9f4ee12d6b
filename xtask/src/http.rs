//! The HTTP client setup every network read shares (ureq, blocking, on the calling thread):
//! timeouts, the proxy chosen per URL, TLS roots, and error texts that say what failed.
//!
//! Proxies: ureq 3 on its own reads `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY` into ONE proxy for
//! every scheme and understands no CIDRs in `NO_PROXY`; here each agent gets its proxy explicitly
//! (none read by ureq itself), and [`Agents::for_url`] picks the agent per URL: the `https`
//! proxy for https URLs, the `http` one for http URLs, none for loopback or a `no_proxy` match
//! (hosts, domains with their subdomains, IPs, CIDRs, `*`: the rules reqwest and curl follow).
//! ureq reaches every target through a proxy with `CONNECT`, plain http ones too.

use crate::download::Proxies;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;
use url::{Host, Url};

/// How long each phase may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The DNS lookup, then TCP, proxy CONNECT and TLS handshake together.
    pub connect: Duration,
    /// Longest wait for the response head and then for each read of the body: a stalled
    /// connection fails after this, a slow but moving one never does.
    pub stall: Duration,
    /// A cap on the whole exchange, for small documents only (never for a long download).
    pub total: Option<Duration>,
}

/// One agent per route: direct, through the https proxy, through the http proxy.
#[derive(Debug)]
pub struct Agents {
    direct: Agent,
    via_https: Option<Agent>,
    via_http: Option<Agent>,
    no_proxy: String,
}

impl Agents {
    /// Agents that follow no redirects (callers check every hop), treat no status as an error
    /// (callers name the URL and the status) and send no `Accept-Encoding` (no decompression).
    pub fn new(proxies: &Proxies, user_agent: &str, t: Timeouts) -> Result<Agents, String> {
        let agent = |proxy: Option<&str>| -> Result<Agent, String> {
            let proxy = proxy
                .map(|p| ureq::Proxy::new(p).map_err(|e| format!("proxy `{p}`: {e}")))
                .transpose()?;
            Ok(Agent::config_builder()
                .proxy(proxy)
                .max_redirects(0)
                .http_status_as_error(false)
                .user_agent(user_agent)
                .timeout_resolve(Some(t.connect))
                .timeout_connect(Some(t.connect))
                .timeout_recv_response(Some(t.stall))
                .timeout_per_read(Some(t.stall))
                .timeout_per_write(Some(t.stall))
                .timeout_global(t.total)
                .tls_config(TlsConfig::builder().root_certs(roots()).build())
                .build()
                .into())
        };
        Ok(Agents {
            direct: agent(None)?,
            via_https: proxies
                .https
                .as_deref()
                .map(|p| agent(Some(p)))
                .transpose()?,
            via_http: proxies
                .http
                .as_deref()
                .map(|p| agent(Some(p)))
                .transpose()?,
            no_proxy: proxies.no_proxy.clone().unwrap_or_default(),
        })
    }

    /// The agent for `url`: loopback and `no_proxy` matches go direct.
    pub fn for_url(&self, url: &Url) -> &Agent {
        let via = match url.scheme() {
            "https" => self.via_https.as_ref(),
            "http" => self.via_http.as_ref(),
            _ => None,
        };
        match (via, url.host()) {
            (Some(a), Some(host)) if !bypasses_proxy(&host, &self.no_proxy) => a,
            _ => &self.direct,
        }
    }
}

/// Whether `host` is reached directly: loopback always, else when a `no_proxy` entry matches
/// (comma-separated; `*`; an IP or CIDR for IP hosts; a domain, with or without a leading dot,
/// for itself and its subdomains).
pub fn bypasses_proxy(host: &Host<&str>, no_proxy: &str) -> bool {
    let ip = match host {
        Host::Domain(d) => d.parse::<IpAddr>().ok(),
        Host::Ipv4(a) => Some(IpAddr::V4(*a)),
        Host::Ipv6(a) => Some(IpAddr::V6(*a)),
    };
    if ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    let domain = match host {
        Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
        _ => None,
    };
    if domain.as_deref() == Some("localhost") {
        return true;
    }
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some(ip) = ip {
                return in_cidr(ip, entry);
            }
            let d = entry.trim_start_matches('.').to_ascii_lowercase();
            domain
                .as_deref()
                .is_some_and(|h| h == d || h.ends_with(&format!(".{d}")))
        })
}

/// `ip` equals `entry` (an address) or lies in it (`addr/prefix`).
fn in_cidr(ip: IpAddr, entry: &str) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(b) => (a, Some(b)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    match (ip, addr.parse::<IpAddr>()) {
        (IpAddr::V4(ip), Ok(IpAddr::V4(net))) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), Ok(IpAddr::V6(net))) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The trusted roots: the bundled Mozilla set (works where the system has none, e.g. a bare
/// container) plus the system's own (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`: a
/// company's TLS-inspecting proxy CA), as reqwest's `rustls-tls-webpki-roots` +
/// `rustls-tls-native-roots` gave. Read once per process.
pub fn roots() -> RootCerts {
    static ROOTS: OnceLock<Arc<Vec<Certificate<'static>>>> = OnceLock::new();
    let certs = ROOTS.get_or_init(|| {
        let mut all: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()))
            .collect();
        // Unreadable system stores are skipped, as reqwest did; the bundled set remains.
        let native = rustls_native_certs::load_native_certs();
        all.extend(
            native
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
        );
        Arc::new(all)
    });
    RootCerts::Specific(certs.clone())
}

/// What went wrong with a request, for an error message: the kind first, then ureq's detail.
pub fn reason(e: &ureq::Error) -> String {
    let kind = match e {
        ureq::Error::Timeout(_) => "timed out",
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => "could not connect",
        ureq::Error::Io(io) if is_connect_failure(io) => "could not connect",
        _ => "request failed",
    };
    // ureq's `io: ` prefix says nothing a reader needs.
    let mut s = match e {
        ureq::Error::Io(io) => format!("{kind}: {io}"),
        _ => format!("{kind}: {e}"),
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

fn is_connect_failure(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | AddrNotAvailable
    )
}

/// Whether a body read failed because no byte came within the stall timeout (ureq wraps its
/// own timeout error in the `io::Error` a read returns).
pub fn is_read_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(url: &str, no_proxy: &str) -> bool {
        let u = Url::parse(url).unwrap();
        bypasses_proxy(&u.host().unwrap(), no_proxy)
    }

    #[test]
    fn loopback_always_goes_direct() {
        assert!(direct("http://127.0.0.1:8/x", ""));
        assert!(direct("http://127.3.4.5/x", ""));
        assert!(direct("http://[::1]:8/x", ""));
        assert!(direct("http://localhost/x", ""));
        assert!(direct("http://LocalHost./x", ""));
        assert!(!direct("http://10.0.0.1/x", ""));
        assert!(!direct("https://example.org/x", ""));
    }

    #[test]
    fn no_proxy_domains_match_themselves_and_subdomains_only() {
        let list = " example.org , .corp.test";
        assert!(direct("https://example.org/x", list));
        assert!(direct("https://a.b.EXAMPLE.org/x", list));
        assert!(!direct("https://notexample.org/x", list));
        assert!(direct("https://corp.test/x", list));
        assert!(direct("https://git.corp.test/x", list));
        assert!(!direct("https://corp.testing/x", list));
        assert!(direct("https://anything.test/x", "*"));
    }

    #[test]
    fn no_proxy_ips_and_cidrs_match_ip_hosts() {
        let list = "10.0.0.0/8,192.168.1.7,fd00::/8";
        assert!(direct("http://10.200.3.4/x", list));
        assert!(!direct("http://11.0.0.1/x", list));
        assert!(direct("http://192.168.1.7/x", list));
        assert!(!direct("http://192.168.1.8/x", list));
        assert!(direct("http://[fd12::1]/x", list));
        assert!(!direct("http://[fe80::1]/x", list));
        // An IP entry never matches a domain, a domain entry never an IP.
        assert!(!direct("http://ten.example/x", "10.0.0.0/8"));
        assert!(!direct("http://10.0.0.1/x", "example.org"));
        assert!(direct("http://10.1.2.3/x", "10.0.0.0/0"));
    }

    #[test]
    fn agents_pick_the_proxy_of_the_scheme() {
        let p = Proxies {
            https: Some("http://127.0.0.1:1".into()),
            http: None,
            no_proxy: Some("direct.example".into()),
        };
        let t = Timeouts {
            connect: Duration::from_secs(1),
            stall: Duration::from_secs(1),
            total: None,
        };
        let a = Agents::new(&p, "t", t).unwrap();
        let proxy_of = |u: &str| {
            a.for_url(&Url::parse(u).unwrap())
                .config()
                .proxy()
                .map(|p| p.port())
        };
        assert_eq!(proxy_of("https://example.org/x"), Some(1));
        assert_eq!(proxy_of("http://example.org/x"), None);
        assert_eq!(proxy_of("https://direct.example/x"), None);
        assert_eq!(proxy_of("https://127.0.0.1/x"), None);
        let bad = Proxies {
            http: Some("fake://x".into()),
            ..Proxies::default()
        };
        assert!(Agents::new(&bad, "t", t).unwrap_err().contains("fake://x"));
    }
}
