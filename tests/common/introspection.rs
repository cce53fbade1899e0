//! A key manager's introspection endpoint that answers slowly: every token is active, of one
//! client, each answer after a delay. Counts the calls it answered.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct SlowIntrospection {
    pub port: u16,
    calls: Arc<AtomicU64>,
}

impl SlowIntrospection {
    /// Answers every token active for `client`, valid for ten minutes, `delay` after each call.
    pub fn start(delay: Duration, client: &str) -> SlowIntrospection {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicU64::new(0));
        let (count, client) = (Arc::clone(&calls), client.to_string());
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let (count, client) = (Arc::clone(&count), client.clone());
                std::thread::spawn(move || answer(connection, delay, &client, &count));
            }
        });
        SlowIntrospection { port, calls }
    }

    /// The calls it has taken (counted when read, before the delay).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn answer(mut connection: TcpStream, delay: Duration, client: &str, calls: &AtomicU64) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(read) = connection.read(&mut buffer) else { return };
        if read == 0 {
            return;
        }
        request.extend_from_slice(&buffer[..read]);
        // The form body follows the head; its length is small, one read or two.
        let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        if request.len() < end + 4 + length {
            continue;
        }
        request.clear();
        calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        let body = serde_json::json!({"active": true, "client_id": client, "exp": exp}).to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if connection.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
