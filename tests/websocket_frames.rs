//! A WebSocket API whose frames are counted (`count_websocket_frames`), through a real Envoy: the
//! handshake is not counted, each data frame either way takes a request, and a frame over the
//! limit never arrives: the backend's is replaced by API-M's notice, the client's is dropped.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::websocket::{self, acking_backend, read_frame, text_frame};
use common::windows::away_from_window_end;
use common::{Envoy, EnvoySetup};
use serde_json::json;

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
