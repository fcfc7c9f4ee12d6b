//! `bench download`: serves a generated file from a loopback HTTP server and times our download
//! path (streaming, hashing, verifying, renaming) against `curl -o` fetching the same URL.

use crate::cmd::Cmd;
use crate::context::Ctx;
use crate::download::{self, Expected, Sha256Hex};
use crate::progress::{human_bytes, Silent};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Report {
    pub size_bytes: u64,
    pub runs: u32,
    /// Best wall time of each client, seconds (ours as shipped: data flushed to disk before the
    /// rename; `ours_nofsync_s` skips that flush, as `curl -o` does).
    pub ours_s: f64,
    pub ours_nofsync_s: f64,
    pub curl_s: Option<f64>,
    pub ours_mib_s: f64,
    pub curl_mib_s: Option<f64>,
    /// ours_s / curl_s: 1.10 means 10% slower than curl.
    pub ratio: Option<f64>,
    pub ratio_nofsync: Option<f64>,
    pub ours_all_s: Vec<f64>,
    pub ours_nofsync_all_s: Vec<f64>,
    pub curl_all_s: Vec<f64>,
}

pub fn run(ctx: &Ctx, a: &BenchDownloadArgs) -> anyhow::Result<ExitCode> {
    let size = a.size_mib * (1 << 20);
    ctx.info(format!("generating {} of data ...", human_bytes(size)));
    let body = Arc::new(generate(size as usize));
    let sha = Sha256Hex::from_digest(&Sha256::digest(body.as_slice()));
    let server = Server::start(body)?;
    let url = format!("http://{}/blob", server.addr);
    let dir = ctx
        .cache_dir
        .join(format!("bench-download-{}", std::process::id()));
    fs_err::create_dir_all(&dir)?;
    let result = measure(ctx, a, &url, size, &sha, &dir);
    let _ = fs_err::remove_dir_all(&dir);
    server.stop();
    let r = result?;
    let size = r.size_bytes;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let mib = size as f64 / (1u64 << 20) as f64;
        println!(
            "ours (stream + sha256 + verify + fsync + rename): {:.3} s, {:.0} MiB/s",
            r.ours_s, r.ours_mib_s
        );
        println!(
            "ours without fsync:                               {:.3} s, {:.0} MiB/s",
            r.ours_nofsync_s,
            mib / r.ours_nofsync_s
        );
        match (r.curl_s, r.curl_mib_s, r.ratio, r.ratio_nofsync) {
            (Some(c), Some(m), Some(ratio), Some(nofsync)) => {
                println!(
                    "curl -o:                                          {c:.3} s, {m:.0} MiB/s"
                );
                let verdict = |x: f64| {
                    if x <= 1.10 {
                        "within 10%"
                    } else {
                        "more than 10% slower"
                    }
                };
                println!("ours / curl = {ratio:.3} ({})", verdict(ratio));
                println!(
                    "ours without fsync / curl = {nofsync:.3} ({})",
                    verdict(nofsync)
                );
            }
            _ => println!("curl: not found on PATH, nothing to compare with"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(
    ctx: &Ctx,
    a: &BenchDownloadArgs,
    url: &str,
    size: u64,
    sha: &Sha256Hex,
    dir: &Path,
) -> anyhow::Result<Report> {
    let curl = crate::cmd::which_in("curl", &crate::env::path_var());
    let opts = download::Options {
        allow_http: true,
        retries: 0,
        ..download::Options::default()
    };
    let expected = Expected {
        size,
        sha256: sha.clone(),
    };
    let nofsync = download::Options {
        fsync: false,
        ..opts.clone()
    };
    let (mut ours, mut ours_nofsync, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..a.runs.max(1) {
        if let Some(curl) = &curl {
            let out = dir.join("curl.bin");
            let t = Instant::now();
            Cmd::new(curl)
                .args(["-sS", "--fail", "-o"])
                .arg(&out)
                .arg(url)
                .timeout(Duration::from_secs(600))
                .run()?;
            theirs.push(t.elapsed().as_secs_f64());
            fs_err::remove_file(&out)?;
        }
        for (o, times) in [(&opts, &mut ours), (&nofsync, &mut ours_nofsync)] {
            let out = dir.join("ours.bin");
            let t = Instant::now();
            download::download(url, &expected, &out, o, &Silent)?;
            times.push(t.elapsed().as_secs_f64());
            fs_err::remove_file(&out)?;
        }
        ctx.debug(format!(
            "run {}: ours {:.3} s, curl {:?}",
            i + 1,
            ours.last().unwrap(),
            theirs.last()
        ));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let mib = size as f64 / (1u64 << 20) as f64;
    let ours_s = best(&ours);
    let ours_nofsync_s = best(&ours_nofsync);
    let curl_s = (!theirs.is_empty()).then(|| best(&theirs));
    Ok(Report {
        size_bytes: size,
        runs: a.runs.max(1),
        ours_s,
        ours_nofsync_s,
        curl_s,
        ours_mib_s: mib / ours_s,
        curl_mib_s: curl_s.map(|c| mib / c),
        ratio: curl_s.map(|c| ours_s / c),
        ratio_nofsync: curl_s.map(|c| ours_nofsync_s / c),
        ours_all_s: ours,
        ours_nofsync_all_s: ours_nofsync,
        curl_all_s: theirs,
    })
}

/// Incompressible-looking bytes (xorshift), generated fast.
fn generate(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers every GET with the body.
struct Server {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(body: Arc<Vec<u8>>) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = conn {
                    let body = body.clone();
                    std::thread::spawn(move || {
                        let _ = serve(s, &body);
                    });
                }
            }
        });
        Ok(Server { addr, stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        let _ = self.thread.join();
    }
}

fn serve(stream: TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    for chunk in body.chunks(1 << 20) {
        w.write_all(chunk)?;
    }
    w.flush()
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct BenchDownloadArgs {
    /// Size of the served file
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub size_mib: u64,
    /// Runs of each client (the best run counts)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub runs: u32,
}
