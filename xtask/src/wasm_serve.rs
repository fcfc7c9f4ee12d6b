//! `cargo xtask serve-wasm`: serves the wasm variant's page (`web/`), its module (the cached build's
//! `prefix/wasm/`) and one model on 127.0.0.1, with the headers a browser needs: the right MIME
//! type (`application/wasm` for streaming compilation), `Cache-Control: no-store` (so only the
//! page's own Cache Storage keeps the model: a reload that downloads it again shows in the log).
//! No COOP/COEP: the module is single-threaded (no SharedArrayBuffer). Every request is logged
//! as one line on stderr (and to `--log FILE`). Plain `std::net`, GET/HEAD only.

use crate::context::Ctx;
use crate::progress::Progress;
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// The model's URL path on the server, and its description (`model.json`) the page reads.
pub const MODEL_PATH: &str = "/model.gguf";
pub const MODEL_JSON: &str = "/model.json";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0: any free port; the URL is printed on stdout)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model to serve (default: the tiny verification model)
    #[arg(long, value_name = "GGUF")]
    pub model: Option<PathBuf>,
    /// Serve this directory's files instead of web/ and the cached build's module (an unpacked
    /// dist archive's `web/`)
    #[arg(long, value_name = "DIR")]
    pub site: Option<PathBuf>,
    /// Also append each request line to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

/// What `model.json` says: where the page downloads the model and what it must hash to.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub url: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// MIME type of a served file name.
pub fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "ts" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

/// The file a request path names: one plain name looked up in `dirs` in order (no sub-paths, no
/// `..`, no hidden files), `/` → `index.html`; query strings are ignored.
pub fn resolve(path: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.strip_prefix('/')?;
    let name = if name.is_empty() { "index.html" } else { name };
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

struct Site {
    dirs: Vec<PathBuf>,
    model: PathBuf,
    model_json: String,
    log: Option<Arc<Mutex<fs_err::File>>>,
}

fn respond(stream: &mut TcpStream, status: &str, mime: &str, body: &[u8], head: bool) {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    if !head {
        let _ = stream.write_all(body);
    }
}

fn handle(site: &Site, mut stream: TcpStream) {
    let mut line = String::new();
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers (the request has no body we use).
    let mut h = String::new();
    while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
        h.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head = method == "HEAD";
    let (status, bytes) = if method != "GET" && !head {
        respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"",
            head,
        );
        ("405", 0)
    } else if path.split('?').next() == Some(MODEL_JSON) {
        respond(
            &mut stream,
            "200 OK",
            mime("x.json"),
            site.model_json.as_bytes(),
            head,
        );
        ("200", site.model_json.len())
    } else {
        let file = if path.split('?').next() == Some(MODEL_PATH) {
            Some(site.model.clone())
        } else {
            resolve(path, &site.dirs)
        };
        match file.map(|f| (fs_err::read(&f), f)) {
            Some((Ok(body), f)) => {
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                respond(&mut stream, "200 OK", mime(&name), &body, head);
                ("200", body.len())
            }
            _ => {
                respond(
                    &mut stream,
                    "404 Not Found",
                    "text/plain",
                    b"not found",
                    head,
                );
                ("404", 9)
            }
        }
    };
    let entry = format!("{method} {path} {status} {bytes}");
    eprintln!("{entry}");
    if let Some(log) = &site.log {
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "{entry}");
        }
    }
}

/// sha256 and size of a file.
fn describe(model: &Path) -> anyhow::Result<ModelInfo> {
    use sha2::{Digest, Sha256};
    let bytes = fs_err::read(model)?;
    Ok(ModelInfo {
        url: MODEL_PATH.trim_start_matches('/').into(),
        name: model
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        size: bytes.len() as u64,
        sha256: crate::hashing::hex(&Sha256::digest(&bytes)),
    })
}

pub fn run(ctx: &Ctx, args: &ServeArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    let dirs = match &args.site {
        Some(d) => vec![d.clone()],
        None => {
            let machine = ctx.repo_root.join("ci/machines/wasm32-emscripten.json");
            let (e, _, _) = crate::cross::ensure_declared(ctx, &machine, false, progress)?;
            vec![
                ctx.repo_root.join("web"),
                e.prefix().join(crate::wasm::MODULE_DIR),
            ]
        }
    };
    let model = match &args.model {
        Some(m) => m.clone(),
        None => crate::verify::prefix::tiny_model(ctx)?,
    };
    let info = describe(&model)?;
    let log = match &args.log {
        Some(p) => Some(Arc::new(Mutex::new(
            fs_err::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ))),
        None => None,
    };
    let site = Arc::new(Site {
        dirs,
        model,
        model_json: serde_json::to_string(&info)?,
        log,
    });
    let listener = TcpListener::bind(("127.0.0.1", args.port))?;
    let port = listener.local_addr()?.port();
    // The one stdout line: scripts and tests read the URL from it.
    println!("http://127.0.0.1:{port}/");
    std::io::stdout().flush()?;
    ctx.info(format!(
        "serving {} and model {} (sha256 {}); Ctrl-C stops",
        site.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        site.model.display(),
        info.sha256
    ));
    for stream in listener.incoming().flatten() {
        let site = Arc::clone(&site);
        std::thread::spawn(move || handle(&site, stream));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_gets_the_mime_type_streaming_compilation_needs() {
        assert_eq!(mime("tunellama.wasm"), "application/wasm");
        assert!(mime("tunellama.js").starts_with("text/javascript"));
        assert!(mime("index.html").starts_with("text/html"));
        assert_eq!(mime("model.gguf"), "application/octet-stream");
    }

    #[test]
    fn only_plain_names_in_the_served_dirs_resolve() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.html"), "x").unwrap();
        std::fs::write(d.path().join(".secret"), "x").unwrap();
        let dirs = vec![d.path().to_path_buf()];
        assert_eq!(resolve("/", &dirs), Some(d.path().join("index.html")));
        assert_eq!(
            resolve("/index.html?autorun=1", &dirs),
            Some(d.path().join("index.html"))
        );
        assert_eq!(resolve("/../etc/passwd", &dirs), None);
        assert_eq!(resolve("/.secret", &dirs), None);
        assert_eq!(resolve("/missing.js", &dirs), None);
        assert_eq!(resolve("index.html", &dirs), None);
    }
}
