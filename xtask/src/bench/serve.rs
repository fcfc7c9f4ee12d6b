//! `cargo xtask bench serve`: what continuous batching buys. Starts the current runtime's
//! `serve` on the ~0.37B bench model, sends the same streamed greedy completions with 1, 2, 4 and
//! 8 concurrent clients and then one after another, and reports aggregate generated tokens/s and
//! time to first token, next to `tunellama bench`'s tg for the same model and threads.

use crate::cmd::Cmd;
use crate::context::Ctx;
use crate::progress::Progress;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Row {
    /// Concurrent clients; 0 = the same requests one after another.
    pub clients: usize,
    pub requests: usize,
    pub generated_tokens: u64,
    pub seconds: f64,
    /// Generated tokens of all requests / wall time from the first send to the last answer.
    pub aggregate_tps: f64,
    pub ttft_mean_s: f64,
    pub ttft_max_s: f64,
    /// Per request, tokens after the first / time after the first: a stream's own speed.
    pub stream_tps_mean: f64,
}

#[derive(Debug, Serialize)]
pub struct ServeBench {
    pub runtime_bin: PathBuf,
    pub model: PathBuf,
    pub parallel: usize,
    pub max_tokens: u32,
    pub bench_tg_tps: f64,
    pub rows: Vec<Row>,
    pub load_before: String,
    pub load_after: String,
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Cmd::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .run();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, model: &Path, parallel: usize, ctx_size: u32) -> anyhow::Result<Server> {
    let mut child = std::process::Command::new(bin)
        .arg("serve")
        .arg("-m")
        .arg(model)
        .args(["--port", "0", "--parallel", &parallel.to_string()])
        .args(["-c", &ctx_size.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {} serve: {e}", bin.display()))?;
    let err = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(p) = l.split("listening on http://127.0.0.1:").nth(1) {
                let _ = tx.send(Ok(p.trim().parse::<u16>().unwrap_or(0)));
            }
            log.push(l);
        }
        let _ = tx.send(Err(log.join("\n")));
    });
    let port = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(p)) => p,
        Ok(Err(log)) => anyhow::bail!("tunellama serve stopped:\n{log}"),
        Err(_) => anyhow::bail!("tunellama serve did not start within 120 s"),
    };
    let s = Server { child, port };
    let client = reqwest::blocking::Client::new();
    let t = Instant::now();
    while !client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        if t.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("the server was not ready within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(s)
}

/// One streamed greedy completion: (generated tokens, time to first token, total time).
fn one(port: u16, prompt: &str, max_tokens: u32) -> anyhow::Result<(u64, Duration, Duration)> {
    let t = Instant::now();
    let body = serde_json::json!({
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true},
        // The random-weight model may pick its end token (id 2) at any point: never.
        "logit_bias": {"2": -100},
    });
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/completions"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(3600))
        .send()?;
    anyhow::ensure!(r.status().is_success(), "status {}", r.status());
    let mut ttft = None;
    let mut tokens = 0;
    for line in BufReader::new(r).lines() {
        let line = line?;
        let Some(d) = line.strip_prefix("data: ") else {
            continue;
        };
        if d == "[DONE]" {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(d)?;
        if ttft.is_none()
            && v["choices"][0]["text"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        {
            ttft = Some(t.elapsed());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = n;
        }
    }
    let total = t.elapsed();
    Ok((tokens, ttft.unwrap_or(total), total))
}

fn prompt(i: usize) -> String {
    format!("Request {i}: the quick brown fox jumps over the lazy dog, again and again,")
}

fn row(clients: usize, results: Vec<(u64, Duration, Duration)>, wall: Duration) -> Row {
    let tokens: u64 = results.iter().map(|r| r.0).sum();
    let ttfts: Vec<f64> = results.iter().map(|r| r.1.as_secs_f64()).collect();
    Row {
        clients,
        requests: results.len(),
        generated_tokens: tokens,
        seconds: wall.as_secs_f64(),
        aggregate_tps: tokens as f64 / wall.as_secs_f64().max(1e-9),
        ttft_mean_s: ttfts.iter().sum::<f64>() / ttfts.len().max(1) as f64,
        ttft_max_s: ttfts.iter().cloned().fold(0.0, f64::max),
        stream_tps_mean: results
            .iter()
            .map(|(n, first, end)| {
                n.saturating_sub(1) as f64 / (*end - *first).as_secs_f64().max(1e-9)
            })
            .sum::<f64>()
            / results.len().max(1) as f64,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn run(ctx: &Ctx, a: &BenchServeArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    let bin = crate::status::current_runtime(ctx)?;
    let model = super::builds::model(ctx, "bench", &a.quant, progress)?;
    let load_before = loadavg();
    // The runtime's own tg for the same model (its tuned threads), as the single-stream bar.
    let out = Cmd::new(&bin)
        .arg("bench")
        .arg("-m")
        .arg(&model)
        .args([
            "-p",
            "0",
            "-n",
            &a.max_tokens.to_string(),
            "-r",
            "3",
            "--json",
        ])
        .timeout(Duration::from_secs(3600))
        .run()?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let bench_tg_tps = v["results"]
        .as_array()
        .and_then(|r| r.iter().find_map(|x| x["tps_mean"].as_f64()))
        .ok_or_else(|| anyhow::anyhow!("`tunellama bench --json` reported no tg result"))?;
    let parallel = *a.clients.iter().max().unwrap_or(&8);
    let server = start(&bin, &model, parallel, 64 + a.max_tokens + 16)?;
    let port = server.port;
    // Warm-up: one request per slot, not counted.
    one(port, &prompt(0), 4)?;
    let mut rows = Vec::new();
    for &c in &a.clients {
        progress.note(&format!("{c} concurrent client(s)"));
        let t = Instant::now();
        let results: Vec<(u64, Duration, Duration)> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..c)
                .map(|k| {
                    sc.spawn(move || {
                        (0..a.requests)
                            .map(|j| one(port, &prompt(k * a.requests + j), a.max_tokens))
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("client thread"))
                .collect::<anyhow::Result<Vec<Vec<_>>>>()
                .map(|v| v.into_iter().flatten().collect())
        })?;
        rows.push(row(c, results, t.elapsed()));
    }
    // The largest run's requests again, one after another.
    let n = parallel * a.requests;
    progress.note(&format!("the same {n} requests one after another"));
    let t = Instant::now();
    let results = (0..n)
        .map(|i| one(port, &prompt(i), a.max_tokens))
        .collect::<anyhow::Result<Vec<_>>>()?;
    rows.push(row(0, results, t.elapsed()));
    drop(server);
    let report = ServeBench {
        runtime_bin: bin,
        model,
        parallel,
        max_tokens: a.max_tokens,
        bench_tg_tps,
        rows,
        load_before,
        load_after: loadavg(),
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The markdown table of a run (what docs/bench.md shows).
pub fn table(r: &ServeBench) -> String {
    let single = r.rows.iter().find(|x| x.clients == 1);
    let one = single.map(|x| x.aggregate_tps);
    let mut s = format!(
        "`tunellama bench` tg{}: {:.1} tokens/s; server with --parallel {}, {} tokens per request; load {} before, {} after\n\n",
        r.max_tokens, r.bench_tg_tps, r.parallel, r.max_tokens, r.load_before, r.load_after
    );
    s.push_str("| clients | requests | generated tokens | seconds | aggregate tokens/s | vs 1 client | TTFT mean s | TTFT max s | per-stream tokens/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for x in &r.rows {
        let who = if x.clients == 0 {
            "one after another".to_string()
        } else {
            x.clients.to_string()
        };
        s.push_str(&format!(
            "| {who} | {} | {} | {:.2} | {:.1} | {} | {:.3} | {:.3} | {:.1} |\n",
            x.requests,
            x.generated_tokens,
            x.seconds,
            x.aggregate_tps,
            one.map_or("-".into(), |o| format!("{:.2}x", x.aggregate_tps / o)),
            x.ttft_mean_s,
            x.ttft_max_s,
            x.stream_tps_mean
        ));
    }
    if let Some(x) = single {
        s.push_str(&format!(
            "\none client's stream through the server / `tunellama bench` tg: {:.2}x (per-stream tokens/s, time to first token excluded)\n",
            x.stream_tps_mean / r.bench_tg_tps
        ));
    }
    s
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct BenchServeArgs {
    /// Concurrent clients of each run (the server gets as many slots as the largest)
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub clients: Vec<usize>,
    /// Requests each client sends, one after another
    #[arg(long, default_value_t = 2)]
    pub requests: usize,
    /// Tokens generated per request (the end token is banned, so exactly this many)
    #[arg(short = 'n', long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Weight type of the bench model: f32, f16, q8_0 or q4_0
    #[arg(long, default_value = "q8_0")]
    pub quant: String,
}
