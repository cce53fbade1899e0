//! WebSocket both ends for the tests: a backend's side of the handshake (read the upgrade, answer
//! 101) and a client's (send an upgrade through Envoy, read the answer's head); frames, and a
//! backend that acknowledges each text frame it receives.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server on a free port that hands each connection to `serve` on a thread of its own: its port.
pub fn serve_each(serve: impl Fn(TcpStream) + Send + Clone + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(connection));
        }
    });
    port
}

/// Reads a request's head; false when the connection ended first.
pub fn read_head(connection: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if connection.read(&mut byte).unwrap_or(0) == 0 {
            return false;
        }
        head.push(byte[0]);
    }
    true
}

/// Reads an upgrade request and answers it 101; false when the connection ended first.
pub fn accept_upgrade(connection: &mut TcpStream) -> bool {
    if !read_head(connection) {
        return false;
    }
    let answer = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    connection.write_all(answer.as_bytes()).is_ok()
}

/// Sends a WebSocket handshake for `path` to Envoy at `port`, with `headers` beside the upgrade's:
/// the answer's head, and the connection.
pub fn handshake(port: u16, path: &str, headers: &[(&str, &str)]) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nhost: gw\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), stream)
}

/// Reads one frame: its opcode and its payload, unmasked.
pub fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    read_any_frame(stream).map(|(first, payload)| (first & 0x0F, payload))
}

/// A text frame, masked as a client's (`mask`) or not, as a server's.
pub fn text_frame(text: &str, mask: bool) -> Vec<u8> {
    frame_bytes(true, 1, text.as_bytes(), mask.then_some([9, 8, 7, 6]))
}

/// A frame of any length: `fin`, `opcode`, the payload, masked with `mask` as a client's (a
/// server's is not masked).
pub fn frame_bytes(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let masked = if mask.is_some() { 0x80 } else { 0 };
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        length @ 0..=125 => frame.push(masked | length as u8),
        length @ 126..=65_535 => {
            frame.push(masked | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            frame.push(masked | 127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    let key = mask.unwrap_or_default();
    if mask.is_some() {
        frame.extend_from_slice(&key);
    }
    frame.extend(payload.iter().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
    frame
}

/// Reads one frame of any length: its first byte (FIN and opcode) and its payload, unmasked.
pub fn read_any_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let length = match head[1] & 0x7F {
        126 => {
            let mut bytes = [0u8; 2];
            stream.read_exact(&mut bytes).ok()?;
            usize::from(u16::from_be_bytes(bytes))
        }
        127 => {
            let mut bytes = [0u8; 8];
            stream.read_exact(&mut bytes).ok()?;
            usize::try_from(u64::from_be_bytes(bytes)).ok()?
        }
        length => usize::from(length),
    };
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        stream.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).ok()?;
    Some((head[0], payload.iter().enumerate().map(|(at, byte)| byte ^ mask[at % 4]).collect()))
}

/// A WebSocket backend that answers each text frame with `ack:<text>`; what it received.
pub fn acking_backend() -> (u16, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let port = serve_each(move |mut connection| {
        if !accept_upgrade(&mut connection) {
            return;
        }
        while let Some((opcode, payload)) = read_frame(&mut connection) {
            if opcode != 1 {
                continue;
            }
            let text = String::from_utf8_lossy(&payload).into_owned();
            log.lock().unwrap().push(text.clone());
            if connection.write_all(&text_frame(&format!("ack:{text}"), false)).is_err() {
                return;
            }
        }
    });
    (port, received)
}
