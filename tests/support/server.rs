//! A small threaded HTTP/1.1 server on 127.0.0.1 with scripted behaviour per request (cut
//! connections, stalls, status codes, redirects, ignoring Range), counting the body bytes it sends.
//! Real sockets, real HTTP: the client under test is not mocked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does for one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Serve the body: honours `Range: bytes=N-` with 206 unless `ignore_range`; drops the
    /// connection after `cut_after` body bytes; goes silent for a while after `stall_after` bytes;
    /// sleeps `throttle` after every 64 KiB.
    Body {
        ignore_range: bool,
        cut_after: Option<u64>,
        stall_after: Option<(u64, Duration)>,
        throttle: Option<Duration>,
    },
    Status(u16),
    /// A 302 to this location (absolute or relative).
    Redirect(String),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Body {
            ignore_range: false,
            cut_after: None,
            stall_after: None,
            throttle: None,
        }
    }
    pub fn cut(after: u64) -> Reply {
        Reply::Body {
            ignore_range: false,
            cut_after: Some(after),
            stall_after: None,
            throttle: None,
        }
    }
    pub fn ignoring_range() -> Reply {
        Reply::Body {
            ignore_range: true,
            cut_after: None,
            stall_after: None,
            throttle: None,
        }
    }
    pub fn stall(after: u64, for_: Duration) -> Reply {
        Reply::Body {
            ignore_range: false,
            cut_after: None,
            stall_after: Some((after, for_)),
            throttle: None,
        }
    }
    pub fn slow(every_64k: Duration) -> Reply {
        Reply::Body {
            ignore_range: false,
            cut_after: None,
            stall_after: None,
            throttle: Some(every_64k),
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub host: Option<String>,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

struct Route {
    body: Arc<Vec<u8>>,
    script: Vec<Reply>,
    served: usize,
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
    body_bytes: AtomicU64,
    stop: AtomicBool,
}

pub struct Server {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &s);
                });
            }
        });
        Server { addr, shared }
    }

    /// Serves `body` at `path`; request k gets `script[k]` (the last entry repeats).
    pub fn route(&self, path: &str, body: Vec<u8>, script: Vec<Reply>) {
        assert!(!script.is_empty());
        self.shared.routes.lock().unwrap().insert(
            path.to_string(),
            Route {
                body: Arc::new(body),
                script,
                served: 0,
            },
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The same server under the name `localhost` (a different host for host-exact checks).
    pub fn url_localhost(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }

    /// Body bytes sent so far, all routes together.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(stream: TcpStream, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let seen = Seen {
        path: path.clone(),
        host: headers.get("host").cloned(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    };
    s.seen.lock().unwrap().push(seen.clone());
    let (body, reply) = {
        let mut routes = s.routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(r) => {
                let reply = r.script[r.served.min(r.script.len() - 1)].clone();
                r.served += 1;
                (r.body.clone(), reply)
            }
            None => (Arc::new(Vec::new()), Reply::Status(404)),
        }
    };
    let mut w = stream;
    match reply {
        Reply::Status(code) => {
            let msg = format!("status {code}\n");
            write!(
                w,
                "HTTP/1.1 {code} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            )?;
        }
        Reply::Redirect(to) => {
            write!(
                w,
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
        }
        Reply::Body {
            ignore_range,
            cut_after,
            stall_after,
            throttle,
        } => {
            let len = body.len() as u64;
            let start = seen
                .range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|_| !ignore_range);
            let from = match start {
                Some(n) if n >= len => {
                    write!(
                        w,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )?;
                    return Ok(());
                }
                Some(n) => {
                    write!(
                        w,
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        len - 1,
                        len - n
                    )?;
                    n
                }
                None => {
                    write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
                    )?;
                    0
                }
            };
            let rest = &body[from as usize..];
            let limit = cut_after
                .or(stall_after.map(|(n, _)| n))
                .map(|n| n.min(rest.len() as u64) as usize)
                .unwrap_or(rest.len());
            for chunk in rest[..limit].chunks(64 << 10) {
                w.write_all(chunk)?;
                s.body_bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                if let Some(t) = throttle {
                    std::thread::sleep(t);
                }
            }
            w.flush()?;
            if let Some((_, pause)) = stall_after {
                std::thread::sleep(pause);
            }
            // Dropping the stream closes the connection (early, for cut and stall).
        }
    }
    Ok(())
}
