//! A WebSocket API whose frames are counted (`count_websocket_frames`), through a real Envoy: the
//! handshake is not counted, each data frame either way takes a request, and a frame over the
//! limit never arrives: the backend's is replaced by API-M's notice, the client's is dropped.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::websocket;
use common::windows::away_from_window_end;
use common::{Envoy, EnvoySetup};
use serde_json::json;

/// Reads one frame (payload under 126 bytes): its opcode and its payload, unmasked.
fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let length = usize::from(head[1] & 0x7F);
    assert!(length < 126, "the test's frames are short");
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        stream.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0F, payload.iter().enumerate().map(|(at, byte)| byte ^ mask[at % 4]).collect()))
}

/// A text frame, masked as a client's (`mask`) or not, as a server's.
fn text_frame(text: &str, mask: bool) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let mut frame = vec![0x81, text.len() as u8 | if mask { 0x80 } else { 0 }];
    if mask {
        frame.extend_from_slice(&key);
        frame.extend(text.bytes().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
    } else {
        frame.extend_from_slice(text.as_bytes());
    }
    frame
}

/// A WebSocket backend that answers each text frame with `ack:<text>`; what it received.
fn acking_backend() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    std::thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                if !websocket::accept_upgrade(&mut connection) {
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
        }
    });
    (port, received)
}

fn handshake(port: u16) -> (String, TcpStream) {
    websocket::handshake(port, "/chat/1.0.0/room", None)
}

#[test]
fn frames_count_both_ways_and_one_over_the_limit_never_arrives() {
    let (backend, received) = acking_backend();
    let config = json!({
        "apis": [{"name": "Chat", "context": "/chat", "version": "1.0.0", "security": [], "policy": "Three",
            "count_websocket_frames": true,
            "endpoints": {"production": "ws"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {"Three": {"requests": 3, "per": "hour"}}
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("ws".into(), backend)],
            connection_manager: vec!["upgrade_configs: [{ upgrade_type: websocket }]".to_string()],
            ..Default::default()
        },
    );
    // Three frames an hour: all of them in one hour.
    away_from_window_end(3600, 60);
    let (head, mut client) = handshake(envoy.port);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // "a" (1) and its ack (2) pass.
    client.write_all(&text_frame("a", true)).unwrap();
    assert_eq!(read_frame(&mut client), Some((1, b"ack:a".to_vec())));
    // "b" (3) passes; its ack is over the limit: the client reads API-M's notice instead.
    client.write_all(&text_frame("b", true)).unwrap();
    let notice = b"Error code: 4008 reason: Websocket frame throttled out".to_vec();
    assert_eq!(read_frame(&mut client), Some((1, notice)));
    // "c" is over the limit: the backend never receives it.
    client.write_all(&text_frame("c", true)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(*received.lock().unwrap(), ["a", "b"]);
    // A handshake is not counted: a second connection is upgraded over the limit, and its frames
    // go nowhere.
    let (head, mut second) = handshake(envoy.port);
    assert!(head.starts_with("HTTP/1.1 101"), "the handshake is not counted: {head}");
    second.write_all(&text_frame("d", true)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(envoy.stat("wasmcustom.apim.fault.4008"), 3, "each dropped frame counted as its fault");
    assert_eq!(*received.lock().unwrap(), ["a", "b"]);
}
