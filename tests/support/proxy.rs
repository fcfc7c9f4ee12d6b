//! A forward proxy on 127.0.0.1 that records each request line and tunnels every `CONNECT` to
//! one upstream address, so made-up host names reach a test server without any DNS lookup.
//! Real sockets: the client under test speaks to it as to any proxy.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let l = l.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream, &l);
                });
            }
        });
        Proxy { addr, lines }
    }

    /// As a proxy setting: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines received, in order (`CONNECT host:port HTTP/1.1`).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

fn handle(
    client: TcpStream,
    upstream: SocketAddr,
    lines: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let first = super::read_request_head(&mut BufReader::new(client.try_clone()?))?;
    lines.lock().unwrap().push(first.clone());
    let mut w = client.try_clone()?;
    if !first.starts_with("CONNECT ") {
        write!(
            w,
            "HTTP/1.1 405 Only CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let up = TcpStream::connect(upstream)?;
    write!(w, "HTTP/1.1 200 Connection established\r\n\r\n")?;
    // The client sends nothing before the 200, so the reader holds no buffered bytes.
    let (mut up_r, mut up_w) = (up.try_clone()?, up);
    let mut client_w = client.try_clone()?;
    let down = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Write);
    });
    let mut client_r = client;
    let _ = std::io::copy(&mut client_r, &mut up_w);
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = down.join();
    Ok(())
}
