//! An HTTPS server on 127.0.0.1 with the test-only certificate in `tests/fixtures/tls/` (for
//! localhost, signed by `ca.crt` there), serving one body at one path and 404 elsewhere.
//! Real TLS (rustls), real sockets: only a client that trusts `ca.crt` completes a request.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

pub struct TlsServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

/// The CA that signed the server's certificate (a PEM file, as `SSL_CERT_FILE` takes it).
pub fn ca_file() -> std::path::PathBuf {
    super::fixture("tls/ca.crt")
}

impl TlsServer {
    pub fn start(path: &str, body: Vec<u8>) -> TlsServer {
        let config = config();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, path, body) = (seen.clone(), path.to_string(), Arc::new(body));
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, s, path, body) =
                    (config.clone(), s.clone(), path.clone(), body.clone());
                std::thread::spawn(move || -> std::io::Result<()> {
                    let conn =
                        rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
                    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                    let first = super::read_request_head(&mut r)?;
                    let asked = first.split_whitespace().nth(1).unwrap_or("").to_string();
                    s.lock().unwrap().push(asked.clone());
                    let w = r.get_mut();
                    if asked == path {
                        write!(
                            w,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )?;
                        w.write_all(&body)?;
                    } else {
                        write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                    }
                    w.flush()?;
                    w.conn.send_close_notify();
                    w.flush()
                });
            }
        });
        TlsServer { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// The paths of the requests that completed a TLS handshake.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(super::fixture("tls/localhost.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(super::fixture("tls/localhost.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}
