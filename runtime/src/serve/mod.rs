//! `tunellama serve`: an OpenAI-compatible HTTP server over the tuned build. A thread per
//! connection speaks HTTP (`http`), checks requests (`api`, `auth`) and streams answers; one
//! engine thread (`scheduler`) owns the model and decodes every active request together. They
//! talk over channels: a request goes in as a `Job`, its tokens come back as `Event`s.

/// A line on stderr that never fails: a server whose stderr was closed keeps serving.
macro_rules! log {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod api;
pub mod auth;
pub mod http;
pub mod metrics;
pub mod scheduler;
pub mod template;

use crate::cli::ServeArgs;
use crate::error::{CliError, Result};
use crate::settings;
use api::{ApiError, GenRequest, Kind, Prompt};
use http::{Conn, ReadError, Request, Response};
use scheduler::{Command, Event, Job, ModelInfo, Shared, Summary};
use serde_json::{json, Value};
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Request bodies above this are refused with 413 before they are read (a chunked one as soon
/// as its chunks pass it, before the chunk that passes it is read).
pub const MAX_BODY: u64 = 8 * 1024 * 1024;
/// Requests waiting for a slot, per slot; beyond `QUEUE_PER_SLOT × --parallel`, 503.
pub const QUEUE_PER_SLOT: usize = 4;
pub const MAX_PARALLEL: i64 = 64;
/// Tokens per decode: a step never carries more, so a newcomer's prompt stalls running streams
/// by at most one such batch.
pub const BATCH: u32 = 512;

/// `--parallel`'s default from the cores: decoding several sequences at once reads the weights
/// once for all of them, so even a small CPU gains from a few slots; more cores, more slots.
pub fn default_parallel(cores: usize) -> (u32, String) {
    let n = (2 * cores).clamp(2, 8) as u32;
    (
        n,
        format!("2 per core ({cores} cores), 2 to 8; fewer at serve time when the slots' KV cache does not fit in RAM"),
    )
}

/// The slots whose model + KV caches (each `kv_slot` bytes) fit in 90% of `ram`.
pub fn fit_parallel(want: u32, ram: Option<u64>, model_bytes: u64, kv_slot: Option<u64>) -> u32 {
    let (Some(ram), Some(kv)) = (ram, kv_slot) else {
        return want;
    };
    let budget = ram / 10 * 9;
    let mut n = want;
    while n > 1 && model_bytes.saturating_add(kv.saturating_mul(u64::from(n))) > budget {
        n -= 1;
    }
    n
}

struct State {
    shared: Arc<Shared>,
    tx: Mutex<Sender<Command>>,
    api_key: Option<String>,
    cors: Option<String>,
    queue_cap: usize,
    template: OnceLock<template::Choice>,
    next_id: AtomicU64,
    connections: AtomicUsize,
    /// Why each setting has its value, for /props.
    settings: Value,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_key(a: &ServeArgs) -> Result<Option<String>> {
    let key = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(f)) => {
            let t = std::fs::read_to_string(f)
                .map_err(|e| CliError::bad_input(format!("--api-key-file {}: {e}", f.display())))?;
            Some(t.trim().to_string())
        }
        (None, None) => None,
    };
    if key.as_deref().is_some_and(str::is_empty) {
        return Err(CliError::bad_input("the API key is empty"));
    }
    Ok(key)
}

pub fn run(a: ServeArgs) -> Result<()> {
    let threads = settings::threads(a.model.threads)?;
    let api_key = read_key(&a)?;
    let header = crate::load::header(&a.model.model)?;
    let ctx = settings::ctx_size(a.ctx_size, &header)?;
    let gpu = settings::gpu_layers(a.model.gpu_layers.as_deref(), &header)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (parallel, parallel_why) = match a.parallel {
        Some(p) => (
            settings::int_in("--parallel", p, 1, MAX_PARALLEL)? as u32,
            "--parallel".to_string(),
        ),
        None => {
            let (want, why) = default_parallel(cores);
            let n = fit_parallel(
                want,
                settings::total_ram(),
                header.file_size,
                settings::kv_bytes(&header, u64::from(ctx.value)),
            );
            if n < want {
                (n, format!("{why}: {want} reduced to {n} to fit RAM"))
            } else {
                (n, why)
            }
        }
    };
    let n_batch = BATCH.min(ctx.value * parallel).max(1);
    let listener = TcpListener::bind((a.host.as_str(), a.port)).map_err(|e| {
        CliError::failure(format!("cannot listen on {}:{}: {e}", a.host, a.port))
            .hint("choose another --port (0 lets the system pick a free one)")
    })?;
    let addr = listener.local_addr()?;
    if !is_loopback(&a.host) && api_key.is_none() {
        log!(
            "warning: listening on {} (not loopback) without an API key: anyone who can reach this port can use the model; give --api-key or --api-key-file",
            a.host
        );
    }
    log!(
        "serve: threads {} ({}), context {} tokens per slot ({}), parallel {parallel} ({parallel_why}), gpu layers {} ({})",
        threads.value, threads.why, ctx.value, ctx.why, gpu.value, gpu.why
    );
    // The line scripts and tests wait for: the address actually bound (with --port 0, the port
    // the system chose).
    log!("serve: listening on http://{addr}");

    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let engine = {
        let shared = shared.clone();
        let cfg = scheduler::EngineConfig {
            model_path: a.model.model.clone(),
            header,
            gpu_layers: gpu.value,
            threads: threads.value,
            n_ctx_slot: ctx.value,
            parallel,
            n_batch,
            verbose: a.model.verbose,
        };
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || scheduler::run(cfg, shared, rx))?
    };
    let state = Arc::new(State {
        shared: shared.clone(),
        tx: Mutex::new(tx),
        api_key,
        cors: a.cors_origin.clone(),
        queue_cap: QUEUE_PER_SLOT * parallel as usize,
        template: OnceLock::new(),
        next_id: AtomicU64::new(1),
        connections: AtomicUsize::new(0),
        settings: json!({
            "threads": threads, "ctx_size": ctx, "gpu_layers": gpu,
            "parallel": {"value": parallel, "why": parallel_why},
            "batch": n_batch,
            "queue_size": QUEUE_PER_SLOT * parallel as usize,
            "max_body_bytes": MAX_BODY,
        }),
    });

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| CliError::failure(format!("installing the signal handler: {e}")))?;
    }
    listener.set_nonblocking(true)?;
    let mut announced = false;
    loop {
        if stop.load(Relaxed) {
            break;
        }
        if let Some(e) = shared.load_error.get() {
            return Err(CliError::bad_input(format!("loading the model: {e}")));
        }
        if !announced {
            if let (Some(info), Some(model)) = (shared.info.get(), shared.model.get()) {
                let choice = template::choose(model, info);
                log!(
                    "serve: model {} ready; chat template: {}",
                    info.id,
                    choice.describe()
                );
                let _ = state.template.set(choice);
                announced = true;
            }
        }
        match listener.accept() {
            Ok((s, _)) => {
                let st = state.clone();
                st.connections.fetch_add(1, Relaxed);
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || {
                        if let Ok(c) = Conn::new(s) {
                            serve_connection(c, &st);
                        }
                        st.connections.fetch_sub(1, Relaxed);
                    });
                if spawned.is_err() {
                    state.connections.fetch_sub(1, Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => log!("serve: accept: {e}"),
        }
    }
    // Graceful stop: no new connections; the engine ends every stream with a final event;
    // connections finish writing it and close.
    drop(listener);
    log!("serve: stopping (signal received)");
    shared.shutdown.store(true, Relaxed);
    let t = Instant::now();
    while !engine.is_finished() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    while state.connections.load(Relaxed) > 0 && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    log!("serve: stopped");
    Ok(())
}

fn serve_connection(mut c: Conn, st: &State) {
    let cors = auth::cors_headers(st.cors.as_deref());
    loop {
        let req = match c.read_request(MAX_BODY, &|| st.shared.shutdown.load(Relaxed)) {
            Ok(r) => r,
            Err(ReadError::Gone) => return,
            Err(ReadError::Bad(status, msg)) => {
                let kind = "invalid_request_error";
                let r = Response::json(status, &ApiError::new(status, kind, msg).body());
                let _ = http::write_response(&mut c.stream, &r, &cors, true);
                return;
            }
            Err(ReadError::TooLarge(n)) => {
                let said = match n {
                    Some(n) => format!("the request body is {n} bytes"),
                    None => "the chunked request body passes the limit".to_string(),
                };
                let e = ApiError::new(
                    413,
                    "invalid_request_error",
                    format!("{said}; the limit is {MAX_BODY} bytes"),
                );
                let _ = http::write_response(
                    &mut c.stream,
                    &Response::json(413, &e.body()),
                    &cors,
                    true,
                );
                c.drain_and_close(n.unwrap_or(u64::MAX).min(256 << 20));
                return;
            }
        };
        let close = req.close || st.shared.shutdown.load(Relaxed);
        let keep = route(&mut c, &req, st, &cors, close);
        if !keep || close || st.shared.shutdown.load(Relaxed) {
            return;
        }
    }
}

fn error_response(e: &ApiError) -> Response {
    Response::json(e.status, &e.body())
}

/// Answers one request; false when the connection must close (a stream ended, a write failed).
fn route(
    c: &mut Conn,
    req: &Request,
    st: &State,
    cors: &[(&'static str, String)],
    close: bool,
) -> bool {
    let send =
        |c: &mut Conn, r: Response| http::write_response(&mut c.stream, &r, cors, close).is_ok();
    let path = req.path.as_str();
    if req.method == "OPTIONS" && st.cors.is_some() {
        let mut r = Response::text(204, "text/plain", String::new());
        r.headers = auth::preflight_headers();
        return send(c, r);
    }
    if path != "/health" && !auth::authorized(st.api_key.as_deref(), req.header("authorization")) {
        let e = ApiError::new(
            401,
            "authentication_error",
            "invalid or missing API key (send `Authorization: Bearer KEY`)",
        );
        return send(c, error_response(&e));
    }
    let post = req.method == "POST";
    let get = req.method == "GET";
    let r = match (path, get, post) {
        ("/health" | "/v1/health", true, _) => Ok(health(st)),
        ("/metrics", true, _) => Ok(Response::text(
            200,
            "text/plain; version=0.0.4",
            st.shared.metrics.render(),
        )),
        ("/v1/models" | "/models", true, _) => {
            ready(st).map(|i| Response::json(200, &models(st, i)))
        }
        ("/props", true, _) => ready(st).map(|i| Response::json(200, &props(st, i))),
        ("/tokenize", _, true) => tokenize(st, &req.body),
        ("/detokenize", _, true) => detokenize(st, &req.body),
        ("/top_logits", _, true) => top_logits(st, &req.body),
        ("/v1/chat/completions" | "/chat/completions", _, true) => {
            return generate(c, req, st, Kind::Chat, cors, close)
        }
        ("/v1/completions" | "/completions", _, true) => {
            return generate(c, req, st, Kind::Completion, cors, close)
        }
        (
            "/health"
            | "/v1/health"
            | "/metrics"
            | "/v1/models"
            | "/models"
            | "/props"
            | "/tokenize"
            | "/detokenize"
            | "/top_logits"
            | "/v1/chat/completions"
            | "/chat/completions"
            | "/v1/completions"
            | "/completions",
            _,
            _,
        ) => Err(ApiError::new(
            405,
            "invalid_request_error",
            format!("{} is not allowed on {path}", req.method),
        )),
        _ => Err(ApiError::new(
            404,
            "not_found_error",
            format!("no such endpoint: {} {path}", req.method),
        )),
    };
    send(c, r.unwrap_or_else(|e| error_response(&e)))
}

fn ready(st: &State) -> std::result::Result<&ModelInfo, ApiError> {
    match st.shared.info.get() {
        Some(i) if st.template.get().is_some() => Ok(i),
        _ => match st.shared.load_error.get() {
            Some(e) => Err(ApiError::server(format!("the model failed to load: {e}"))),
            None => Err(ApiError::unavailable("the model is loading")),
        },
    }
}

fn health(st: &State) -> Response {
    match ready(st) {
        Ok(_) => Response::json(200, &json!({"status": "ok"})),
        Err(e) => error_response(&e),
    }
}

fn template_desc(st: &State) -> String {
    st.template.get().map(|c| c.describe()).unwrap_or_default()
}

fn models(st: &State, i: &ModelInfo) -> Value {
    json!({
        "object": "list",
        "data": [{
            "id": i.id, "object": "model", "created": now(), "owned_by": "tunellama",
            "meta": {"description": i.desc, "n_vocab": i.n_vocab, "n_ctx_slot": i.n_ctx_slot,
                     "parallel": i.parallel, "chat_template": template_desc(st)},
        }]
    })
}

fn props(st: &State, i: &ModelInfo) -> Value {
    json!({
        "model": i.id, "description": i.desc, "total_slots": i.parallel, "n_ctx_slot": i.n_ctx_slot,
        "n_batch": i.n_batch, "chat_template": template_desc(st),
        "chat_template_source": i.chat_template, "bos_token": i.bos_token, "eos_token": i.eos_token,
        "settings": st.settings,
    })
}

fn engine_call<T>(
    st: &State,
    make: impl FnOnce(Sender<T>) -> Command,
) -> std::result::Result<T, ApiError> {
    let (tx, rx) = mpsc::channel();
    st.tx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(make(tx))
        .map_err(|_| ApiError::unavailable("the engine has stopped"))?;
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| ApiError::unavailable("the engine did not answer"))
}

fn tokenize(st: &State, body: &[u8]) -> std::result::Result<Response, ApiError> {
    ready(st)?;
    let (text, add_special) = api::parse_tokenize(body)?;
    let t = engine_call(st, |reply| Command::Tokenize {
        text,
        add_special,
        reply,
    })??;
    Ok(Response::json(200, &json!({ "tokens": t })))
}

fn detokenize(st: &State, body: &[u8]) -> std::result::Result<Response, ApiError> {
    let i = ready(st)?;
    let tokens = api::parse_detokenize(body, i.n_vocab)?;
    let s = engine_call(st, |reply| Command::Detokenize { tokens, reply })??;
    Ok(Response::json(200, &json!({ "content": s })))
}

/// `POST /top_logits {"prompt": "...", "n": 2}`: the prompt evaluated alone in a free slot, its
/// last position's best logits (for showing a near-tie where batched kernels may differ).
fn top_logits(st: &State, body: &[u8]) -> std::result::Result<Response, ApiError> {
    ready(st)?;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
    let text = v["prompt"]
        .as_str()
        .ok_or_else(|| ApiError::invalid("`prompt` (a string) is required"))?
        .to_string();
    let n = v["n"].as_u64().unwrap_or(2).clamp(1, 100) as usize;
    let top = engine_call(st, |reply| Command::TopLogits { text, n, reply })??;
    Ok(Response::json(
        200,
        &json!({ "top": top.iter().map(|(t, l)| json!({"token": t, "logit": l})).collect::<Vec<_>>() }),
    ))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pieces every answer to one request shares.
struct Answer<'a> {
    kind: Kind,
    id: String,
    created: u64,
    model: &'a str,
}

impl Answer<'_> {
    fn chunk(&self, delta: Option<Value>, text: Option<&str>, finish: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "delta": delta.unwrap_or(json!({})), "logprobs": null, "finish_reason": finish})
            }
            Kind::Completion => {
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
            }
        };
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
               "system_fingerprint": fingerprint(), "choices": [choice]})
    }

    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn whole(&self, text: &str, s: &Summary) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": s.finish})
            }
            Kind::Completion => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": s.finish})
            }
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
               "system_fingerprint": fingerprint(), "choices": [choice], "usage": usage(s), "timings": s.timings})
    }
}

fn fingerprint() -> String {
    let p = &settings::info().provenance;
    format!("tunellama-{}", p.key.get(..12).unwrap_or(&p.key))
}

fn usage(s: &Summary) -> Value {
    json!({"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
           "total_tokens": s.prompt_tokens + s.completion_tokens,
           "prompt_tokens_details": {"cached_tokens": s.cached_tokens}})
}

/// Runs one generation request to its end; false when the connection must close.
fn generate(
    c: &mut Conn,
    req: &Request,
    st: &State,
    kind: Kind,
    cors: &[(&'static str, String)],
    close: bool,
) -> bool {
    let send_err = |c: &mut Conn, e: &ApiError| {
        http::write_response(&mut c.stream, &error_response(e), cors, close).is_ok()
    };
    let info = match ready(st) {
        Ok(i) => i,
        Err(e) => return send_err(c, &e),
    };
    let g: GenRequest = match api::parse(kind, &req.body, info.n_vocab) {
        Ok(g) => g,
        Err(e) => return send_err(c, &e),
    };
    let (prompt, add_special) = match &g.prompt {
        Prompt::Text(t) => (t.clone(), true),
        Prompt::Chat(m) => match template::render(
            st.shared.model.get().expect("ready"),
            info,
            st.template.get().expect("ready"),
            m,
        ) {
            Ok(p) => p,
            Err(e) => return send_err(c, &e),
        },
    };
    st.shared.metrics.requests.fetch_add(1, Relaxed);
    // The wait queue's bound: claim a place or refuse.
    let claimed = st
        .shared
        .waiting
        .fetch_update(Relaxed, Relaxed, |w| (w < st.queue_cap).then_some(w + 1));
    if claimed.is_err() {
        st.shared
            .metrics
            .requests_rejected_busy
            .fetch_add(1, Relaxed);
        let e = ApiError::unavailable(format!(
            "the server is busy: {} requests are already waiting for a slot (queue size {})",
            st.queue_cap, st.queue_cap
        ));
        return send_err(c, &e);
    }
    let (etx, erx) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let stream = g.stream;
    let include_usage = g.include_usage;
    let job = Job {
        req: g,
        prompt,
        add_special,
        events: etx,
        cancel: cancel.clone(),
    };
    if st
        .tx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Command::Generate(job))
        .is_err()
    {
        st.shared.waiting.fetch_sub(1, Relaxed);
        return send_err(c, &ApiError::unavailable("the engine has stopped"));
    }
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let a = Answer {
        kind,
        id: format!("{prefix}-{}", st.next_id.fetch_add(1, Relaxed)),
        created: now(),
        model: &info.id,
    };
    // Waits for the next event, watching for the client going away meanwhile.
    let next = |c: &Conn| -> Option<Event> {
        loop {
            match erx.recv_timeout(Duration::from_millis(200)) {
                Ok(e) => return Some(e),
                Err(RecvTimeoutError::Timeout) => {
                    if c.peer_closed() {
                        cancel.store(true, Relaxed);
                        return None;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    };
    let gone = |cancel: &AtomicBool| {
        cancel.store(true, Relaxed);
        false
    };
    // Before the first event nothing is sent: an early failure is a plain HTTP error.
    match next(c) {
        Some(Event::Admitted) => {}
        Some(Event::Failed(e)) => return send_err(c, &e),
        Some(_) => unreachable!("the engine admits a request before anything else"),
        None => return gone(&cancel),
    }
    if !stream {
        let mut text = String::new();
        loop {
            match next(c) {
                Some(Event::Delta(t)) => text.push_str(&t),
                Some(Event::Progress) => {}
                Some(Event::Done(s)) => {
                    return http::write_response(
                        &mut c.stream,
                        &Response::json(200, &a.whole(&text, &s)),
                        cors,
                        close,
                    )
                    .is_ok();
                }
                Some(Event::Failed(e)) => return send_err(c, &e),
                Some(Event::Admitted) => {}
                None => return gone(&cancel),
            }
        }
    }
    // Chunked for a keep-alive client: the zero chunk ends the stream and the connection
    // carries its next request (as llama.cpp's server does); otherwise closing ends it.
    let sse = http::EventStream { chunked: !close };
    if sse.head(&mut c.stream, cors).is_err() {
        return gone(&cancel);
    }
    let first = match kind {
        Kind::Chat => a.chunk(
            Some(json!({"role": "assistant", "content": ""})),
            None,
            None,
        ),
        Kind::Completion => a.chunk(None, Some(""), None),
    };
    if sse.event(&mut c.stream, &first.to_string()).is_err() {
        return gone(&cancel);
    }
    let mut last_comment: Option<Instant> = None;
    loop {
        let ok = match next(c) {
            Some(Event::Delta(t)) => {
                let ch = match kind {
                    Kind::Chat => a.chunk(Some(json!({"content": t})), None, None),
                    Kind::Completion => a.chunk(None, Some(&t), None),
                };
                sse.event(&mut c.stream, &ch.to_string()).is_ok()
            }
            Some(Event::Progress) => {
                // A comment keeps the client (and proxies) waiting and shows us if it left.
                // The first at once, then at most every half second.
                if last_comment.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                    last_comment = Some(Instant::now());
                    sse.comment(&mut c.stream, "processing the prompt").is_ok()
                } else {
                    true
                }
            }
            Some(Event::Done(s)) => {
                let mut end = a.chunk(Some(json!({})), Some(""), Some(s.finish));
                end["timings"] = serde_json::to_value(&s.timings).unwrap_or(Value::Null);
                let mut w = sse.event(&mut c.stream, &end.to_string());
                if include_usage {
                    let mut u = a.chunk(None, None, None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&s);
                    w = w.and_then(|_| sse.event(&mut c.stream, &u.to_string()));
                }
                let w = w
                    .and_then(|_| sse.event(&mut c.stream, "[DONE]"))
                    .and_then(|_| sse.end(&mut c.stream));
                return w.is_ok() && sse.chunked;
            }
            Some(Event::Failed(e)) => {
                let w = sse
                    .event(&mut c.stream, &e.body().to_string())
                    .and_then(|_| sse.end(&mut c.stream));
                return w.is_ok() && sse.chunked;
            }
            Some(Event::Admitted) => true,
            None => return gone(&cancel),
        };
        if !ok {
            return gone(&cancel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_defaults_follow_cores_and_shrink_to_fit_ram() {
        assert_eq!(default_parallel(1).0, 2);
        assert_eq!(default_parallel(2).0, 4);
        assert_eq!(default_parallel(64).0, 8);
        let gib = 1u64 << 30;
        assert_eq!(fit_parallel(4, Some(10 * gib), gib, Some(gib)), 4);
        assert_eq!(fit_parallel(4, Some(4 * gib), gib, Some(gib)), 2);
        assert_eq!(fit_parallel(4, Some(gib), 2 * gib, Some(gib)), 1);
        assert_eq!(fit_parallel(4, None, gib, Some(gib)), 4);
    }

    #[test]
    fn only_loopback_hosts_count_as_local() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0"));
        assert!(!is_loopback("192.168.1.2"));
    }
}
