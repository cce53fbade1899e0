//! The test upstreams: an echoing HTTP/1.1 backend that reads `content-length` and chunked
//! request bodies (chunk extensions and trailers included) and serves pipelined requests in
//! order, and a silent one that never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as a backend received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// A backend that answers: `/status/<code>` with that status and body `backend says <code>`,
/// `/bytes/<n>` with 200 and `n` bytes, anything else with 200 and a JSON echo. It records every request it receives.
pub struct Backend {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Backend {
    pub fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, flag) = (Arc::clone(&received), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            for connection in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(connection) = connection else { continue };
                let log = Arc::clone(&log);
                thread::spawn(move || serve_backend_connection(connection, log));
            }
        });
        Backend { port, received, stop, handle: Some(handle) }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().map(|guard| guard.clone()).unwrap_or_default()
    }
}

fn serve_backend_connection(connection: TcpStream, log: Arc<Mutex<Vec<Received>>>) {
    // Longer than any pause of a test: a backend closing an idle connection just as Envoy
    // reuses it would answer that request 503.
    let _ = connection.set_read_timeout(Some(Duration::from_secs(300)));
    let Ok(write_half) = connection.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(connection);
    let mut writer = write_half;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let chunked = headers
            .iter()
            .any(|(name, value)| name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            let Some(body) = read_chunked(&mut reader) else { return };
            body
        } else {
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, value)| value.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        let sized = path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok());
        let (status, content) = match (path.strip_prefix("/status/").and_then(|code| code.parse::<u16>().ok()), sized) {
            (Some(code), _) => (code, format!("backend says {code}")),
            (None, Some(size)) => (200, "b".repeat(size.min(1 << 20))),
            (None, None) => {
                let echo = serde_json::json!({
                    "method": method,
                    "path": path,
                    "headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                });
                (200, echo.to_string())
            }
        };
        if let Ok(mut guard) = log.lock() {
            guard.push(Received { method, path, headers, body });
        }
        let response = format!(
            "HTTP/1.1 {status} Backend\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-backend: real\r\n\r\n{content}",
            content.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A chunked body (RFC 9112 7.1): sizes in hex with optional extensions after `;`, then the
/// trailer section up to its empty line. `None` when the connection ends or the framing is broken.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            break;
        }
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if chunk.get(size..) != Some(b"\r\n".as_slice()) {
            return None;
        }
        chunk.truncate(size);
        body.extend_from_slice(&chunk);
    }
    loop {
        let mut trailer = String::new();
        if reader.read_line(&mut trailer).ok()? == 0 {
            return None;
        }
        if trailer.trim_end().is_empty() {
            return Some(body);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A backend that accepts connections, reads, and never answers.
pub struct Silent {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind silent backend");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (flag, keep, count) = (Arc::clone(&stop), Arc::clone(&held), Arc::clone(&connections));
        let handle = thread::spawn(move || {
            for connection in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(connection) = connection {
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut guard) = keep.lock() {
                        guard.push(connection);
                    }
                }
            }
        });
        Silent { port, connections, stop, held, handle: Some(handle) }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        if let Ok(guard) = self.held.lock() {
            for connection in guard.iter() {
                let _ = connection.shutdown(Shutdown::Both);
            }
        }
    }
}
