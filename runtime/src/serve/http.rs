//! The HTTP/1.1 subset the server speaks, on std's TCP sockets: one request at a time per
//! connection (keep-alive), `Content-Length` or `Transfer-Encoding: chunked` bodies up to a
//! limit (413 as soon as it is passed, without reading the rest), plain responses, and
//! server-sent-event streams whose every event is one write, flushed, so a client that went away
//! shows up as a failed write (or a closed socket, `peer_closed`). Streams to HTTP/1.1 keep-alive
//! clients are chunked (one chunk per event, then the zero chunk) so the connection can carry
//! the next request; HTTP/1.0 and `Connection: close` clients get streams ended by closing.

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
    /// The body is larger than the limit: its declared length, or `None` for a chunked body
    /// whose chunks passed the limit.
    TooLarge(Option<u64>),
}

/// A chunk-size line (size and extensions) may not be longer than this.
pub const MAX_CHUNK_LINE: usize = 4096;

fn bad(msg: impl Into<String>) -> ReadError {
    ReadError::Bad(400, msg.into())
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
        let codings: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity")
            .collect();
        let chunked = match codings.as_slice() {
            [] => false,
            [c] if c == "chunked" => true,
            _ => {
                return Err(ReadError::Bad(
                    501,
                    format!(
                        "Transfer-Encoding {:?} is not supported: send the body chunked or with Content-Length",
                        codings.join(", ")
                    ),
                ))
            }
        };
        if chunked && req.header("content-length").is_some() {
            return Err(bad(
                "both Transfer-Encoding: chunked and Content-Length were sent: send one",
            ));
        }
        let expect_continue = req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        if chunked {
            if expect_continue {
                let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            req.body = self.read_chunked(body_limit, started)?;
            return Ok(req);
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
            return Err(ReadError::TooLarge(Some(len)));
        }
        if len > 0 && expect_continue {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = vec![0u8; len as usize];
        self.read_exact_body(&mut body, started)?;
        req.body = body;
        Ok(req)
    }

    /// Fills `buf` from the body; a client that stalls past `IDLE` gets 408.
    fn read_exact_body(&mut self, buf: &mut [u8], started: Instant) -> Result<(), ReadError> {
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
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
        Ok(())
    }

    /// One line of a chunked body (size line or trailer), without its line end; longer than
    /// `max` is `too_long`.
    fn read_body_line(
        &mut self,
        max: usize,
        started: Instant,
        too_long: &str,
    ) -> Result<Vec<u8>, ReadError> {
        let mut line = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            self.read_exact_body(&mut byte, started)?;
            if byte[0] == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            line.push(byte[0]);
            if line.len() > max {
                return Err(bad(too_long));
            }
        }
    }

    /// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 7.1): hex sizes, chunk
    /// extensions ignored, trailer fields read and dropped. The body may not pass `limit`:
    /// `TooLarge` as soon as a chunk's size would pass it, before that chunk is read.
    fn read_chunked(&mut self, limit: u64, started: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_body_line(
                MAX_CHUNK_LINE,
                started,
                &format!("a chunk-size line is over {MAX_CHUNK_LINE} bytes"),
            )?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            let total = (body.len() as u64).checked_add(size);
            if total.is_none_or(|t| t > limit) {
                return Err(ReadError::TooLarge(None));
            }
            let at = body.len();
            body.resize(at + size as usize, 0);
            self.read_exact_body(&mut body[at..], started)?;
            let mut end = [0u8; 2];
            self.read_exact_body(&mut end[..1], started)?;
            if end[0] == b'\r' {
                self.read_exact_body(&mut end[1..], started)?;
            }
            if !(end == *b"\r\n" || end[0] == b'\n') {
                return Err(bad(format!(
                    "a chunk of {size} bytes is not followed by CRLF (the chunk is longer than its size says)"
                )));
            }
        }
        // Trailer fields up to the empty line: read and dropped.
        let mut trailers = 0;
        loop {
            let line = self.read_body_line(
                MAX_HEAD,
                started,
                &format!("the chunked body's trailer is over {MAX_HEAD} bytes"),
            )?;
            if line.is_empty() {
                return Ok(body);
            }
            trailers += line.len();
            if trailers > MAX_HEAD {
                return Err(bad(format!(
                    "the chunked body's trailer is over {MAX_HEAD} bytes"
                )));
            }
        }
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

/// The size of a chunk-size line: hex digits, then optional `;extensions` (ignored).
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let text = String::from_utf8_lossy(line);
    let size = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim_end_matches([' ', '\t']);
    let malformed = || {
        bad(format!(
            "malformed chunk size {text:?}: expected hexadecimal digits, optionally followed by `;extensions`"
        ))
    };
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    // More digits than a u64 holds: a size no body limit allows.
    u64::from_str_radix(size, 16).or(Ok(u64::MAX))
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
        501 => "Not Implemented",
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

/// How an event stream's body is framed: `chunked` (HTTP/1.1 keep-alive: one chunk per
/// event, the zero chunk at the end, the connection stays open) or ended by closing the
/// connection (HTTP/1.0 or `Connection: close`). Every event is one write, flushed.
#[derive(Debug, Clone, Copy)]
pub struct EventStream {
    pub chunked: bool,
}

impl EventStream {
    /// The stream's head.
    pub fn head(&self, w: &mut impl Write, extra: &[(&'static str, String)]) -> io::Result<()> {
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
        );
        head.push_str(if self.chunked {
            "Transfer-Encoding: chunked\r\n"
        } else {
            "Connection: close\r\n"
        });
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.flush()
    }

    /// `text` as one chunk (or as is), in one write.
    fn write(&self, w: &mut impl Write, text: &str) -> io::Result<()> {
        let buf = if self.chunked {
            format!("{:x}\r\n{text}\r\n", text.len())
        } else {
            text.to_string()
        };
        w.write_all(buf.as_bytes())?;
        w.flush()
    }

    /// One `data:` event.
    pub fn event(&self, w: &mut impl Write, data: &str) -> io::Result<()> {
        self.write(w, &format!("data: {data}\n\n"))
    }

    /// A comment line: ignored by clients, keeps proxies and the connection check alive.
    pub fn comment(&self, w: &mut impl Write, text: &str) -> io::Result<()> {
        self.write(w, &format!(": {text}\n\n"))
    }

    /// Ends the body: the zero chunk when chunked (the connection may carry the next
    /// request); nothing otherwise (closing the connection ends it).
    pub fn end(&self, w: &mut impl Write) -> io::Result<()> {
        if self.chunked {
            w.write_all(b"0\r\n\r\n")?;
            w.flush()?;
        }
        Ok(())
    }
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
            Err(ReadError::TooLarge(Some(1000))) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_400() {
        assert!(matches!(
            roundtrip(b"hello\r\n\r\n", 10),
            Err(ReadError::Bad(400, _))
        ));
    }

    const CHUNKED: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunked(body: &[u8], limit: u64) -> Result<Request, ReadError> {
        roundtrip(&[CHUNKED, body].concat(), limit)
    }

    fn bad_message(r: Result<Request, ReadError>) -> String {
        match r {
            Err(ReadError::Bad(400, m)) => m,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn a_chunked_body_is_decoded_with_extensions_and_trailers() {
        let r = chunked(
            b"5;name=x\r\nhello\r\n1 ; a=b\r\n,\r\nA\r\n 012345678\r\n0\r\nX-Sum: 1\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.body, b"hello, 012345678");
        // Upper-case hex, bare LF line ends, no trailers.
        let r = chunked(b"1A\n{\"prompt\": \"abcdefghijkl\"}\n0\n\n", 100).unwrap();
        assert_eq!(r.body, b"{\"prompt\": \"abcdefghijkl\"}");
        assert_eq!(chunked(b"0\r\n\r\n", 100).unwrap().body, b"");
    }

    #[test]
    fn a_chunked_body_over_the_limit_is_refused_at_the_chunk_that_passes_it() {
        // The first chunk fits, the second would pass 10 bytes: refused before its data.
        match chunked(b"8\r\n12345678\r\nffffff\r\n", 10) {
            Err(ReadError::TooLarge(None)) => {}
            other => panic!("{other:?}"),
        }
        // A size no u64 holds.
        match chunked(b"fffffffffffffffffffffff\r\n", 10) {
            Err(ReadError::TooLarge(None)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_chunking_is_a_400_naming_what_is_wrong() {
        let m = bad_message(chunked(b"zz\r\nhello\r\n0\r\n\r\n", 100));
        assert!(m.contains("malformed chunk size \"zz\""), "{m}");
        let m = bad_message(chunked(b";ext\r\n", 100));
        assert!(m.contains("malformed chunk size"), "{m}");
        let m = bad_message(chunked(b"3\r\nhello\r\n0\r\n\r\n", 100));
        assert!(m.contains("not followed by CRLF"), "{m}");
        let long = [b"1".repeat(MAX_CHUNK_LINE + 1), b"\r\n".to_vec()].concat();
        let m = bad_message(chunked(&long, 100));
        assert!(m.contains("chunk-size line is over"), "{m}");
        let both = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        let m = bad_message(roundtrip(both, 100));
        assert!(m.contains("both Transfer-Encoding"), "{m}");
        assert!(matches!(
            roundtrip(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                10
            ),
            Err(ReadError::Bad(501, _))
        ));
    }

    #[test]
    fn a_chunked_event_stream_frames_each_event_and_ends_with_the_zero_chunk() {
        let mut out = Vec::new();
        let sse = EventStream { chunked: true };
        sse.head(&mut out, &[]).unwrap();
        sse.event(&mut out, "{}").unwrap();
        sse.comment(&mut out, "hi").unwrap();
        sse.end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        assert!(!text.contains("Connection: close"), "{text}");
        assert!(
            text.ends_with("\r\n\r\na\r\ndata: {}\n\n\r\n6\r\n: hi\n\n\r\n0\r\n\r\n"),
            "{text:?}"
        );
        let mut out = Vec::new();
        let sse = EventStream { chunked: false };
        sse.head(&mut out, &[]).unwrap();
        sse.event(&mut out, "{}").unwrap();
        sse.end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\ndata: {}\n\n"), "{text:?}");
    }
}
