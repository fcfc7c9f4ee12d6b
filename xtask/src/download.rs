//! The one download path: stream → hash while writing → partial file beside the target → verify
//! size and sha256 → atomic rename. Knows nothing about models; prebuilt archives use it too.
//!
//! Guarantees:
//! - the destination either does not change or holds exactly the expected bytes;
//! - a partial file (`<dest>.part`) is kept only after a network error, and the next call resumes
//!   it with an HTTP Range request when the server answers `206` (any other answer restarts at 0);
//! - connection errors, timeouts (including a stalled body) and 5xx/408/429 are retried with
//!   exponential backoff; other 4xx answers and integrity failures are not;
//! - redirects are followed by this module (not the HTTP client) so every hop is checked: no
//!   downgrade to `http://` unless allowed, and a bearer token goes only to its exact host.

use crate::http::{Agents, Timeouts};
use crate::progress::{human_bytes, Progress, Unit};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use ureq::http::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_RANGE, LOCATION, RANGE};
use ureq::http::{HeaderMap, StatusCode};
use ureq::Body;
use url::Url;

type Response = ureq::http::Response<Body>;

/// How big a read from the network (and a write to disk) is at most.
const CHUNK: usize = 1 << 20;
/// With `fsync`, written data is flushed to disk in the background every this many bytes.
const SYNC_EVERY: u64 = 8 << 20;

/// What the bytes must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub sha256: Sha256Hex,
}

/// A sha256 as 64 lowercase hex digits (validated on construction).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Sha256Hex, String> {
        let t = s.trim().to_ascii_lowercase();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256Hex(t))
        } else {
            Err(format!(
                "`{s}` is not a sha256 (expected 64 hex digits, found {} characters)",
                s.len()
            ))
        }
    }
    pub fn from_digest(d: &[u8]) -> Sha256Hex {
        Sha256Hex(d.iter().map(|b| format!("{b:02x}")).collect())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A credential that must never be printed: `Debug` and `Display` redact it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A bearer token for one exact host (compared on every hop, after redirects too).
#[derive(Debug, Clone)]
pub struct Bearer {
    pub host: String,
    pub token: Secret,
}

/// Proxies to use (what `https_proxy`, `http_proxy` and `no_proxy` say); none: connect directly.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    pub https: Option<String>,
    pub http: Option<String>,
    /// Comma-separated hosts/domains/CIDRs reached directly.
    pub no_proxy: Option<String>,
}

impl Proxies {
    /// What the environment says, read as curl reads it ([`crate::env::proxies`]).
    pub fn from_env() -> Proxies {
        let (https, http, no_proxy) = crate::env::proxies();
        Proxies {
            https,
            http,
            no_proxy,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.https.is_none() && self.http.is_none()
    }
}

/// How to download. Tests shrink the timeouts and backoff so the suite stays fast.
#[derive(Debug, Clone)]
pub struct Options {
    /// Accept `http://` URLs (and redirects to them).
    pub allow_http: bool,
    /// Attempts after the first one, for transient failures.
    pub retries: u32,
    /// Wait before the first retry; doubled each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// No response or no body byte for this long counts as a (retryable) timeout.
    pub stall_timeout: Duration,
    pub max_redirects: u32,
    pub bearer: Option<Bearer>,
    pub user_agent: String,
    /// Connect through these proxies; the HTTP client reads no environment variables itself.
    pub proxies: Proxies,
    /// What progress reports call this download [default: the destination's file name].
    pub label: Option<String>,
    /// Flush the data to disk before the rename, so a power cut cannot leave a renamed file
    /// whose blocks never reached the disk.
    pub fsync: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            allow_http: false,
            retries: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(60),
            max_redirects: 10,
            bearer: None,
            user_agent: format!("tunellama-xtask/{}", env!("CARGO_PKG_VERSION")),
            proxies: Proxies::default(),
            label: None,
            fsync: true,
        }
    }
}

/// What a successful download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub path: PathBuf,
    /// Body bytes received over the network by this call (a resume fetches fewer than `size`).
    pub bytes_fetched: u64,
    /// Where the download picked up an earlier partial file, when it did.
    pub resumed_from: Option<u64>,
    /// HTTP requests made, redirect hops included.
    pub requests: u32,
    /// Attempts (1 + retries used).
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("refusing insecure URL {url} (plain http:// has no integrity or privacy)")]
    InsecureUrl { url: String },
    #[error("cannot download {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: u32 },
    #[error("{url}: gave up after {attempts} attempts: {reason}")]
    Network {
        url: String,
        attempts: u32,
        reason: String,
        /// The partial file kept for a later resume, and how much it holds.
        partial: PathBuf,
        kept: u64,
    },
    #[error("{url}: size mismatch: expected {expected} bytes, the server {actual}")]
    WrongSize {
        url: String,
        expected: u64,
        actual: String,
    },
    #[error("{url}: checksum mismatch (the download was deleted)\n  expected sha256 {expected}\n  actual   sha256 {actual}")]
    Checksum {
        url: String,
        expected: Sha256Hex,
        actual: Sha256Hex,
    },
    #[error("not enough free space in {dir}: {needed} needed, {available} available")]
    NoSpace {
        dir: PathBuf,
        needed: String,
        available: String,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl crate::error::Hint for DownloadError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            DownloadError::InsecureUrl { .. } => {
                "use an https:// URL, or pass --allow-http if you trust every network hop".into()
            }
            DownloadError::BadUrl { .. } => "check the URL (https://host/path)".into(),
            DownloadError::Status { status: 401 | 403, .. } => {
                "the file needs credentials: for huggingface.co set HF_TOKEN (gated models also need their licence accepted on the model page)".into()
            }
            DownloadError::Status { status: 404, .. } => {
                "the URL (or pinned revision) no longer exists: check the source URL in the catalog".into()
            }
            DownloadError::Status { .. } => return None,
            DownloadError::TooManyRedirects { .. } => "the server redirects in a loop; try again later or use another source".into(),
            DownloadError::Network { partial, kept, .. } => format!(
                "check the network and run the same command again: {} already in {} will be resumed",
                human_bytes(*kept),
                partial.display()
            ),
            DownloadError::WrongSize { .. } | DownloadError::Checksum { .. } => {
                "the server's file is not the one recorded; do not use it. If the record is outdated, update size and sha256 from a trusted source".into()
            }
            DownloadError::NoSpace { .. } => {
                "free some space, or point --cache-dir at a larger disk".into()
            }
            DownloadError::Io(_) => return None,
        })
    }
}

impl DownloadError {
    /// The bytes were wrong (not the network): never retry and never try another mirror.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            DownloadError::WrongSize { .. } | DownloadError::Checksum { .. }
        )
    }
}

/// The partial file for `dest`: `<dest>.part` in the same directory (so the rename is atomic).
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Checks a URL against the options before anything is sent.
pub fn check_url(url: &str, opts: &Options) -> Result<Url, DownloadError> {
    let u = Url::parse(url).map_err(|e| DownloadError::BadUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    check_scheme(&u, opts)?;
    Ok(u)
}

fn check_scheme(u: &Url, opts: &Options) -> Result<(), DownloadError> {
    match u.scheme() {
        "https" => Ok(()),
        "http" if opts.allow_http => Ok(()),
        "http" => Err(DownloadError::InsecureUrl { url: u.to_string() }),
        other => Err(DownloadError::BadUrl {
            url: u.to_string(),
            reason: format!("the `{other}` scheme is not supported (https only)"),
        }),
    }
}

/// Downloads `url` to `dest`, verifying `expected`; see the module docs for the guarantees.
pub fn download(
    url: &str,
    expected: &Expected,
    dest: &Path,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Outcome, DownloadError> {
    let start_url = check_url(url, opts)?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let part = partial_path(dest);
    let mut state = State {
        url: url.to_string(),
        expected,
        part: part.clone(),
        fetched: 0,
        resumed_from: None,
        requests: 0,
    };

    let have = file_len(&part);
    if have > expected.size {
        fs_err::remove_file(&part)?;
    }
    check_space(dir, expected.size.saturating_sub(file_len(&part)))?;

    let client = client(opts).map_err(|e| DownloadError::BadUrl {
        url: url.to_string(),
        reason: format!("cannot set up the HTTP client: {e}"),
    })?;

    let what = opts.label.clone().unwrap_or_else(|| {
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| url.to_string())
    });
    progress.start(&what, Some(expected.size), Unit::Bytes);
    let result = (|| -> Result<Outcome, DownloadError> {
        let started = Instant::now();
        let mut attempts = 0;
        let mut wait = opts.backoff;
        let digest = loop {
            attempts += 1;
            match attempt(&client, &start_url, opts, &mut state, progress) {
                Ok(d) => break d,
                Err(Failure::Transient(reason)) if attempts <= opts.retries => {
                    progress.note(&format!(
                        "{what}: attempt {attempts} failed ({reason}); retrying in {:.1} s",
                        wait.as_secs_f64()
                    ));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(opts.max_backoff);
                }
                Err(Failure::Transient(reason)) => {
                    return Err(DownloadError::Network {
                        url: url.to_string(),
                        attempts,
                        reason,
                        kept: file_len(&part),
                        partial: part,
                    });
                }
                Err(Failure::Fatal(e)) => {
                    // Only network errors leave a partial file behind.
                    let _ = fs_err::remove_file(&part);
                    return Err(e);
                }
            }
        };

        let actual = Sha256Hex::from_digest(&digest);
        if actual != expected.sha256 {
            let _ = fs_err::remove_file(&part);
            return Err(DownloadError::Checksum {
                url: url.to_string(),
                expected: expected.sha256.clone(),
                actual,
            });
        }
        fs_err::rename(&part, dest)?;
        sync_dir(dir);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        progress.finish(&format!(
            "{} verified ({}/s)",
            human_bytes(expected.size),
            human_bytes((state.fetched as f64 / secs) as u64)
        ));
        Ok(Outcome {
            path: dest.to_path_buf(),
            bytes_fetched: state.fetched,
            resumed_from: state.resumed_from,
            requests: state.requests,
            attempts,
        })
    })();
    if result.is_err() {
        // The error itself is the caller's to report.
        progress.finish("failed");
    }
    result
}

/// The agents for `opts.proxies` (loopback is always reached directly: local mirrors, tests).
/// No total timeout: a long download may take hours as long as bytes keep coming.
fn client(opts: &Options) -> Result<Agents, String> {
    let t = Timeouts {
        connect: opts.connect_timeout,
        stall: opts.stall_timeout,
        total: None,
    };
    Agents::new(&opts.proxies, &opts.user_agent, t)
}

struct State<'a> {
    url: String,
    expected: &'a Expected,
    part: PathBuf,
    fetched: u64,
    resumed_from: Option<u64>,
    requests: u32,
}

enum Failure {
    /// Network trouble: keep the partial file, maybe retry.
    Transient(String),
    Fatal(DownloadError),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Fatal(DownloadError::Io(e))
    }
}

/// One attempt: request (following redirects), then stream into the partial file. Returns the
/// sha256 of the complete partial file.
fn attempt(
    client: &Agents,
    start: &Url,
    opts: &Options,
    st: &mut State,
    progress: &dyn Progress,
) -> Result<Vec<u8>, Failure> {
    let size = st.expected.size;
    let mut have = file_len(&st.part);
    if have == size && size > 0 {
        // An earlier run received everything but stopped before the rename.
        return Ok(hash_file(&st.part, &mut Sha256::new())?);
    }
    let (final_url, resp) = request(client, start, opts, have, st)?;
    let status = resp.status();
    let url = final_url.to_string();
    let mut hasher = Sha256::new();
    let mut file;
    if status == StatusCode::PARTIAL_CONTENT && have > 0 {
        match content_range(resp.headers()) {
            Some((from, total)) if from == have => {
                if total.is_some_and(|t| t != size) {
                    return Err(Failure::Fatal(DownloadError::WrongSize {
                        url,
                        expected: size,
                        actual: format!("reports a total of {} bytes", total.unwrap_or(0)),
                    }));
                }
            }
            other => {
                fs_err::remove_file(&st.part)?;
                return Err(Failure::Transient(format!(
                    "asked for bytes from {have}, the server sent range {other:?}; restarting"
                )));
            }
        }
        hash_file(&st.part, &mut hasher)?;
        file = fs_err::OpenOptions::new().append(true).open(&st.part)?;
        st.resumed_from = Some(have);
    } else if status == StatusCode::OK {
        if let Some(len) = resp.body().content_length() {
            if len != size {
                return Err(Failure::Fatal(DownloadError::WrongSize {
                    url,
                    expected: size,
                    actual: format!("announces {len} bytes"),
                }));
            }
        }
        have = 0;
        file = fs_err::File::create(&st.part)?;
    } else if status == StatusCode::RANGE_NOT_SATISFIABLE {
        fs_err::remove_file(&st.part)?;
        return Err(Failure::Transient(
            "the server refused the resume range; restarting".into(),
        ));
    } else {
        // A 206 without a range asked for, or anything else unexpected.
        return Err(Failure::Fatal(DownloadError::Status {
            url,
            status: status.as_u16(),
        }));
    }

    let mut body = resp.into_body().into_reader();
    let mut done = have;
    progress.update(done, Some(size));
    // Hashing and reading the network (here) overlap writing (on the writer thread).
    let writer = Writer::spawn(file, opts.fsync);
    let streamed = (|| -> Result<(), Failure> {
        loop {
            let mut buf = writer.buffer();
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Failure::Transient(format!(
                        "connection lost after {} of {} bytes: {}",
                        done,
                        size,
                        io_reason(&e)
                    )))
                }
            };
            if done + n as u64 > size {
                return Err(Failure::Fatal(DownloadError::WrongSize {
                    url: url.clone(),
                    expected: size,
                    actual: "sent more bytes".into(),
                }));
            }
            hasher.update(&buf[..n]);
            if !writer.write(buf, n) {
                return Ok(()); // the writer failed; `finish` reports why
            }
            done += n as u64;
            st.fetched += n as u64;
            progress.update(done, Some(size));
        }
    })();
    // Whatever happened, everything hashed so far is written before the file is judged.
    file = writer.finish()?;
    streamed?;
    if done < size {
        return Err(Failure::Transient(format!(
            "the connection closed after {done} of {size} bytes"
        )));
    }
    if opts.fsync {
        file.sync_all()?;
    }
    Ok(hasher.finalize().to_vec())
}

/// Writes buffers in order on its own thread and hands them back for reuse.
struct Writer {
    tx: std::sync::mpsc::SyncSender<(Vec<u8>, usize)>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: std::thread::JoinHandle<std::io::Result<fs_err::File>>,
}

impl Writer {
    /// With `flush_early`, a third thread asks the disk to catch up every `SYNC_EVERY` bytes
    /// (never making the writer wait), so the final fsync before the rename has little left to
    /// do and the page cache never holds gigabytes of unwritten data.
    fn spawn(mut file: fs_err::File, flush_early: bool) -> Writer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(4);
        let (free_tx, free) = std::sync::mpsc::channel();
        let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = flush_early
            .then(|| file.file().try_clone().ok())
            .flatten()
            .map(|handle| {
                std::thread::spawn(move || {
                    for () in sync_rx {
                        let _ = handle.sync_data();
                    }
                })
            });
        let thread = std::thread::spawn(move || {
            let mut unsynced = 0u64;
            for (buf, n) in rx {
                file.write_all(&buf[..n])?;
                unsynced += n as u64;
                if syncer.is_some() && unsynced >= SYNC_EVERY {
                    unsynced = 0;
                    // A sync still running absorbs this request: never wait for the disk here.
                    let _ = sync_tx.try_send(());
                }
                let _ = free_tx.send(buf);
            }
            drop(sync_tx);
            if let Some(s) = syncer {
                let _ = s.join();
            }
            file.flush()?;
            Ok(file)
        });
        Writer { tx, free, thread }
    }

    /// A buffer of `CHUNK` bytes (recycled when one is free).
    fn buffer(&self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK])
    }

    /// Queues the first `n` bytes of `buf`; false when the writer thread has stopped on an error.
    fn write(&self, buf: Vec<u8>, n: usize) -> bool {
        self.tx.send((buf, n)).is_ok()
    }

    fn finish(self) -> std::io::Result<fs_err::File> {
        drop(self.tx);
        self.thread
            .join()
            .expect("the writer thread does not panic")
    }
}

/// Sends the GET, following redirects hop by hop; returns the final URL with the response.
fn request(
    client: &Agents,
    start: &Url,
    opts: &Options,
    have: u64,
    st: &mut State,
) -> Result<(Url, Response), Failure> {
    let mut url = start.clone();
    for _ in 0..=opts.max_redirects {
        check_scheme(&url, opts).map_err(Failure::Fatal)?;
        let mut req = client
            .for_url(&url)
            .get(url.as_str())
            .header(ACCEPT_ENCODING, "identity");
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        if let Some(b) = &opts.bearer {
            if url.host_str() == Some(b.host.as_str())
                && (url.scheme() == "https" || opts.allow_http)
            {
                let v = format!("Bearer {}", b.token.expose());
                if ureq::http::HeaderValue::from_str(&v).is_err() {
                    return Err(Failure::Fatal(DownloadError::BadUrl {
                        url: url.to_string(),
                        reason: "the token contains characters not allowed in a header".into(),
                    }));
                }
                req = req.header(AUTHORIZATION, v);
            }
        }
        st.requests += 1;
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => return Err(Failure::Transient(crate::http::reason(&e))),
        };
        let status = resp.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
                return Err(Failure::Fatal(DownloadError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                }));
            };
            url = url.join(loc).map_err(|e| {
                Failure::Fatal(DownloadError::BadUrl {
                    url: loc.to_string(),
                    reason: format!("bad redirect from {url}: {e}"),
                })
            })?;
            continue;
        }
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Err(Failure::Transient(format!("{url} answered {status}")));
        }
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok((url, resp));
        }
        return Err(Failure::Fatal(DownloadError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        }));
    }
    Err(Failure::Fatal(DownloadError::TooManyRedirects {
        url: st.url.clone(),
        max: opts.max_redirects,
    }))
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL); TOTAL is `None` for `*`.
fn content_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (from, _) = range.split_once('-')?;
    Some((from.trim().parse().ok()?, total.trim().parse().ok()))
}

fn io_reason(e: &std::io::Error) -> String {
    if crate::http::is_read_timeout(e) {
        return "timed out waiting for data".into();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Feeds a whole file through `hasher` and returns the digest of what it holds afterwards.
pub fn hash_file(p: &Path, hasher: &mut Sha256) -> std::io::Result<Vec<u8>> {
    let mut f = fs_err::File::open(p)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.clone().finalize().to_vec())
}

/// sha256 of a file on disk.
pub fn sha256_file(p: &Path) -> std::io::Result<Sha256Hex> {
    Ok(Sha256Hex::from_digest(&hash_file(p, &mut Sha256::new())?))
}

fn check_space(dir: &Path, needed: u64) -> Result<(), DownloadError> {
    // When the file system cannot tell, go ahead: the write will fail with its own error.
    if let Ok(available) = fs4::available_space(dir) {
        if available < needed {
            return Err(DownloadError::NoSpace {
                dir: dir.to_path_buf(),
                needed: human_bytes(needed),
                available: human_bytes(available),
            });
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_accepts_64_hex_digits_only() {
        assert!(Sha256Hex::parse(&"a".repeat(64)).is_ok());
        assert_eq!(
            Sha256Hex::parse(&"AB".repeat(32)).unwrap().as_str(),
            "ab".repeat(32)
        );
        assert!(Sha256Hex::parse("abc").is_err());
        assert!(Sha256Hex::parse(&"g".repeat(64)).is_err());
    }

    #[test]
    fn secret_is_never_printed() {
        let b = Bearer {
            host: "huggingface.co".into(),
            token: Secret::new("hf_supersecret"),
        };
        assert!(!format!("{b:?}").contains("supersecret"));
    }

    #[test]
    fn partial_file_sits_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/a/b/file.gguf")),
            PathBuf::from("/a/b/file.gguf.part")
        );
    }

    #[test]
    fn content_range_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            ureq::http::HeaderValue::from_static("bytes 100-199/200"),
        );
        assert_eq!(content_range(&h), Some((100, Some(200))));
        h.insert(
            CONTENT_RANGE,
            ureq::http::HeaderValue::from_static("bytes 5-9/*"),
        );
        assert_eq!(content_range(&h), Some((5, None)));
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let opts = Options::default();
        assert!(matches!(
            check_url("http://example.org/x", &opts),
            Err(DownloadError::InsecureUrl { .. })
        ));
        let allow = Options {
            allow_http: true,
            ..Options::default()
        };
        assert!(check_url("http://example.org/x", &allow).is_ok());
        assert!(matches!(
            check_url("ftp://example.org/x", &allow),
            Err(DownloadError::BadUrl { .. })
        ));
    }
}
