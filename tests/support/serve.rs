//! `tunellama serve` as the server tests run it: the runtime under test (see `runtime.rs`)
//! started on 127.0.0.1 with `--port 0` (the port it prints is read back), ready once `/health`
//! answers 200, stopped with SIGTERM on `stop` (and killed on drop). Plus a raw HTTP/1.1 client
//! for what a library client hides: server-sent events as they arrive, disconnects, broken input.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `tunellama serve ARGS --port 0` and waits until it is ready.
    pub fn start(bin: &std::path::Path, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tunellama serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                        let _ = tx.send(rest.trim().parse::<u16>().unwrap());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "tunellama serve did not say where it listens:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        let s = Server {
            child: Some(child),
            port,
            log,
        };
        let t = Instant::now();
        loop {
            let (status, _, _) = s.request("GET", "/health", &[], b"");
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "/health while loading");
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "not ready after 60 s:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits (at most 30 s) for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                panic!("tunellama serve did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request on its own connection: (status, headers lower-cased, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, HashMap<String, String>, Vec<u8>) {
        let mut s = self.send(method, path, headers, body);
        read_response(&mut s)
    }

    pub fn post_json(&self, path: &str, v: &serde_json::Value) -> (u16, serde_json::Value) {
        let (st, _, body) = self.request("POST", path, &[], v.to_string().as_bytes());
        let j = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
        (st, j)
    }

    /// A new connection to the server (2 minutes read timeout).
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s
    }

    /// Writes a request with `Connection: close` on a new connection; the caller reads the
    /// answer (or disconnects).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> TcpStream {
        let mut s = self.connect();
        write_request(&mut s, method, path, headers, body, true);
        s
    }

    /// `/metrics` as name → value (metrics without labels).
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (st, _, body) = self.request("GET", "/metrics", &[], b"");
        assert_eq!(st, 200);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// RSS of the server process in bytes (Linux /proc).
    pub fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Writes an HTTP/1.1 request with a `Content-Length` body; `close` adds `Connection: close`,
/// without it the connection stays open for the next request (keep-alive).
pub fn write_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
}

/// Reads one response whose body has a `Content-Length`, leaving the connection open.
pub fn read_sized_response(r: &mut impl BufRead) -> (u16, HashMap<String, String>, Vec<u8>) {
    let (status, headers) = read_head(r);
    let n: usize = headers
        .get("content-length")
        .unwrap_or_else(|| panic!("no Content-Length: {headers:?}"))
        .parse()
        .unwrap();
    let mut body = vec![0; n];
    r.read_exact(&mut body).unwrap();
    (status, headers, body)
}

/// Reads a whole `Connection: close` response.
pub fn read_response(s: &mut TcpStream) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut body = Vec::new();
    r.read_to_end(&mut body).unwrap();
    (status, headers, body)
}

pub fn read_head(r: &mut impl BufRead) -> (u16, HashMap<String, String>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    (status, headers)
}

/// A server-sent-event stream read as it arrives: ended by the connection closing, or
/// (`Transfer-Encoding: chunked`, a keep-alive connection) by the zero chunk, each chunk
/// checked to hold exactly one whole event.
pub struct Sse {
    pub reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// Decoded body bytes not yet read as lines (chunked streams).
    pending: Vec<u8>,
    /// The zero chunk was read.
    ended: bool,
}

impl Sse {
    /// Sends a POST with `body` and reads the response head.
    pub fn open(server: &Server, path: &str, body: &serde_json::Value) -> Sse {
        Sse::read(server.send("POST", path, &[], body.to_string().as_bytes()))
    }

    /// Reads the response head of a request already sent on `s`.
    pub fn read(s: TcpStream) -> Sse {
        Sse::read_on(BufReader::new(s))
    }

    /// Reads the response head of a request already sent on `reader`'s connection (one kept
    /// alive: get it back with `into_reader` once the stream ended).
    pub fn read_on(mut reader: BufReader<TcpStream>) -> Sse {
        let (status, headers) = read_head(&mut reader);
        Sse {
            reader,
            status,
            headers,
            pending: Vec::new(),
            ended: false,
        }
    }

    pub fn chunked(&self) -> bool {
        self.headers
            .get("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    }

    /// The connection, for its next request (after a chunked stream's end).
    pub fn into_reader(self) -> BufReader<TcpStream> {
        assert!(self.pending.is_empty(), "unread stream data");
        self.reader
    }

    /// The next line of the body; None at its end.
    fn line(&mut self) -> Option<String> {
        if !self.chunked() {
            let mut line = String::new();
            return match self.reader.read_line(&mut line).ok()? {
                0 => None,
                _ => Some(line),
            };
        }
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(String::from_utf8(line).unwrap());
            }
            if self.ended {
                assert!(self.pending.is_empty(), "a partial line ends the body");
                return None;
            }
            let mut size = String::new();
            let n = self.reader.read_line(&mut size).ok()?;
            assert!(
                n > 0,
                "the connection closed inside a chunked body (no zero chunk)"
            );
            let n = usize::from_str_radix(size.trim_end(), 16)
                .unwrap_or_else(|_| panic!("not a chunk-size line: {size:?}"));
            if n == 0 {
                let mut end = String::new();
                self.reader.read_line(&mut end).unwrap();
                assert_eq!(end, "\r\n", "the zero chunk is followed by its empty line");
                self.ended = true;
                continue;
            }
            let mut data = vec![0; n + 2];
            self.reader.read_exact(&mut data).unwrap();
            assert!(data.ends_with(b"\r\n"), "a chunk without its CRLF");
            data.truncate(n);
            let text = String::from_utf8_lossy(&data);
            assert!(
                self.pending.is_empty()
                    && text.ends_with("\n\n")
                    && text.matches("\n\n").count() == 1,
                "a chunk that is not exactly one event: {text:?}"
            );
            self.pending.extend_from_slice(&data);
        }
    }

    /// The next `data:` payload (comments skipped); None at the end of the stream.
    pub fn next(&mut self) -> Option<String> {
        loop {
            let line = self.line()?;
            let l = line.trim_end_matches('\n');
            if let Some(d) = l.strip_prefix("data: ") {
                return Some(d.to_string());
            }
            assert!(l.is_empty() || l.starts_with(':'), "not an SSE line: {l:?}");
        }
    }

    /// Reads to the end: the JSON events before `[DONE]`; panics when the stream is not
    /// well-formed (no `[DONE]`, anything after it, a payload that is not JSON).
    pub fn collect(mut self) -> Vec<serde_json::Value> {
        self.collect_events()
    }

    /// `collect` keeping the stream (and its connection).
    pub fn collect_events(&mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some(d) if d == "[DONE]" => {
                    assert_eq!(self.next(), None, "data after [DONE]");
                    return out;
                }
                Some(d) => {
                    out.push(serde_json::from_str(&d).unwrap_or_else(|e| panic!("{e}: {d:?}")))
                }
                None => panic!("the stream ended without [DONE] after {out:?}"),
            }
        }
    }
}

/// The text of a stream's chunks (chat `delta.content` or completion `text`).
pub fn stream_text(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"].get(0))
        .filter_map(|c| c["delta"]["content"].as_str().or(c["text"].as_str()))
        .collect()
}
