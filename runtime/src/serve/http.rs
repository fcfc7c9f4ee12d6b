//! The HTTP/1.1 subset the server speaks, on std's TCP sockets: one request at a time per
//! connection (keep-alive), `Content-Length` bodies up to a limit (413 above it, without reading
//! it first), plain responses, and server-sent-event streams whose every write is flushed, so a
//! client that went away shows up as a failed write (or a closed socket, `peer_closed`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The request line and headers together may not exceed this.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may sit idle between requests, or stall inside one.
pub const IDLE: Duration = Duration::from_secs(30);
/// Socket read timeout: the granularity at which waiting readers notice a shutdown.
pub const TICK: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0, or `Connection: close`.
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection (or idled out, or the server is stopping) between
    /// requests: nothing to answer.
    Gone,
    /// Answer with this status and message, then close.
    Bad(u16, String),
    /// The body is larger than the limit (its declared length).
    TooLarge(u64),
}

pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Conn {
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(TICK))?;
        stream.set_write_timeout(Some(IDLE))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    /// Reads the next request; `stop` is polled while waiting so a shutdown ends idle waits.
    pub fn read_request(
        &mut self,
        body_limit: u64,
        stop: &dyn Fn() -> bool,
    ) -> Result<Request, ReadError> {
        let started = Instant::now();
        let mut head = Vec::new();
        // Read line by line until the empty line that ends the head.
        loop {
            let mut line = Vec::new();
            loop {
                match self.reader.read_until(b'\n', &mut line) {
                    Ok(0) => return Err(ReadError::Gone),
                    Ok(_) if line.ends_with(b"\n") => break,
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => {
                        if (head.is_empty() && line.is_empty() && stop())
                            || started.elapsed() > IDLE
                        {
                            return Err(ReadError::Gone);
                        }
                    }
                    Err(_) => return Err(ReadError::Gone),
                }
                if head.len() + line.len() > MAX_HEAD {
                    return Err(ReadError::Bad(
                        431,
                        format!("the request head is over {MAX_HEAD} bytes"),
                    ));
                }
            }
            if head.is_empty() && (line == b"\r\n" || line == b"\n") {
                continue; // stray CRLF between requests (RFC 9112 2.2)
            }
            let end = line == b"\r\n" || line == b"\n";
            head.extend_from_slice(&line);
            if head.len() > MAX_HEAD {
                return Err(ReadError::Bad(
                    431,
                    format!("the request head is over {MAX_HEAD} bytes"),
                ));
            }
            if end {
                break;
            }
        }
        let head = String::from_utf8(head)
            .map_err(|_| ReadError::Bad(400, "the request head is not UTF-8".into()))?;
        let mut lines = head.lines();
        let first = lines.next().unwrap_or("");
        let mut parts = first.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ReadError::Bad(
                400,
                format!("malformed request line: {first:?}"),
            ));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::Bad(505, format!("{version} is not supported")));
        }
        let mut headers = Vec::new();
        for l in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = l.split_once(':') else {
                return Err(ReadError::Bad(400, format!("malformed header line: {l:?}")));
            };
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut req = Request {
            method: method.to_string(),
            path: target.split('?').next().unwrap_or("").to_string(),
            headers,
            body: Vec::new(),
            close: version == "HTTP/1.0",
        };
        if req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            req.close = true;
        }
        if req
            .header("transfer-encoding")
            .is_some_and(|t| !t.eq_ignore_ascii_case("identity"))
        {
            return Err(ReadError::Bad(
                411,
                "chunked request bodies are not accepted: send Content-Length".into(),
            ));
        }
        let lengths: Vec<&str> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str())
            .collect();
        if lengths.windows(2).any(|w| w[0] != w[1]) {
            return Err(ReadError::Bad(
                400,
                "conflicting Content-Length headers".into(),
            ));
        }
        let len = match req.header("content-length") {
            None => 0,
            Some(v) => v.parse::<u64>().map_err(|_| {
                ReadError::Bad(400, format!("Content-Length {v:?} is not a number"))
            })?,
        };
        if len > body_limit {
            return Err(ReadError::TooLarge(len));
        }
        if len > 0
            && req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = vec![0u8; len as usize];
        let mut got = 0;
        while got < body.len() {
            match self.reader.read(&mut body[got..]) {
                Ok(0) => return Err(ReadError::Gone),
                Ok(n) => got += n,
                Err(e) if is_timeout(&e) => {
                    if started.elapsed() > IDLE {
                        return Err(ReadError::Bad(408, "the request body stalled".into()));
                    }
                }
                Err(_) => return Err(ReadError::Gone),
            }
        }
        req.body = body;
        Ok(req)
    }

    /// After refusing a body without reading it: stop writing, then read and drop what the
    /// client still sends (bounded), so it sees our answer instead of a reset.
    pub fn drain_and_close(&mut self, max: u64) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let t = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        while n < max && t.elapsed() < Duration::from_secs(5) {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
    }

    /// Whether the client has closed its side (EOF or a reset) while we are streaming to it.
    pub fn peer_closed(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let r = self.stream.peek(&mut b);
        let _ = self.stream.set_nonblocking(false);
        match r {
            Ok(0) => true,
            Ok(_) => false, // a pipelined next request: still there
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A complete response.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(v).expect("a JSON value serialises"),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

/// Writes `r` with the extra headers (CORS); `close` adds `Connection: close`.
pub fn write_response(
    w: &mut impl Write,
    r: &Response,
    extra: &[(&'static str, String)],
    close: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in r.headers.iter().chain(extra) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut buf = head.into_bytes();
    buf.extend_from_slice(&r.body);
    w.write_all(&buf)?;
    w.flush()
}

/// The head of an event stream; the body runs until the connection closes.
pub fn write_sse_head(w: &mut impl Write, extra: &[(&'static str, String)]) -> io::Result<()> {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n",
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// One `data:` event.
pub fn write_event(w: &mut impl Write, data: &str) -> io::Result<()> {
    w.write_all(format!("data: {data}\n\n").as_bytes())?;
    w.flush()
}

/// A comment line: ignored by clients, keeps proxies and the connection check alive.
pub fn write_comment(w: &mut impl Write, text: &str) -> io::Result<()> {
    w.write_all(format!(": {text}\n\n").as_bytes())?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn roundtrip(raw: &[u8], limit: u64) -> Result<Request, ReadError> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let raw = raw.to_vec();
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&raw);
            std::thread::sleep(Duration::from_millis(300));
        });
        let (s, _) = l.accept().unwrap();
        let mut c = Conn::new(s).unwrap();
        let r = c.read_request(limit, &|| true);
        t.join().unwrap();
        r
    }

    #[test]
    fn a_request_with_a_body_is_read_whole() {
        let r = roundtrip(
            b"POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            100,
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/completions");
        assert_eq!(r.body, b"hello");
        assert!(!r.close);
        assert_eq!(r.header("HOST"), Some("a"));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_it_is_read() {
        match roundtrip(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 10) {
            Err(ReadError::TooLarge(1000)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_400_and_chunked_a_411() {
        assert!(matches!(
            roundtrip(b"hello\r\n\r\n", 10),
            Err(ReadError::Bad(400, _))
        ));
        assert!(matches!(
            roundtrip(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 10),
            Err(ReadError::Bad(411, _))
        ));
    }
}
