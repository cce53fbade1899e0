//! A WebSocket API whose frames are counted (`count_websocket_frames`), through a real Envoy: the
//! handshake is not counted, each data frame either way takes a request, and a frame over the
//! limit never arrives: the backend's is replaced by API-M's notice, the client's is dropped.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::websocket::{self, acking_backend, read_frame, text_frame};
use common::windows::away_from_window_end;
use common::{keys, Envoy, EnvoySetup};
use serde_json::json;

fn handshake(port: u16) -> (String, TcpStream) {
    websocket::handshake(port, "/chat/1.0.0/room", &[])
}

/// Envoy with `config`, its cluster `ws` the WebSocket backend at `backend`.
fn with_websocket_backend(config: &serde_json::Value, backend: u16) -> Envoy {
    Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("ws".into(), backend)],
            connection_manager: vec!["upgrade_configs: [{ upgrade_type: websocket }]".to_string()],
            ..Default::default()
        },
    )
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
    let envoy = with_websocket_backend(&config, backend);
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

/// A WebSocket connection ends when its credential expires (a WSO2 JWT API key here, with no
/// clock skew allowed), as API-M re-checks a connection's token on each frame the client sends:
/// the first frame after `exp` never reaches the backend, and the connection is reset.
#[test]
fn a_connection_ends_when_its_credential_expires() {
    let (backend, received) = acking_backend();
    let config = json!({
        "api_key_jwt": {"keys": [keys::public_jwk("rsa-b.pem", "apikey-b")], "issuer": "https://apim.test/apikey",
                        "clock_skew_s": 0},
        "apis": [{"name": "Chat", "context": "/chat", "version": "1.0.0", "security": ["api_key"],
            "endpoints": {"production": "ws"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {}
    });
    let envoy = with_websocket_backend(&config, backend);
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
    let claims = json!({"iss": "https://apim.test/apikey", "sub": "alice", "exp": exp, "keytype": "PRODUCTION",
        "application": {"uuid": "caller", "name": "caller", "owner": "caller-owner", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": "Chat", "version": "1.0.0", "context": "/chat/1.0.0"}]});
    let key = keys::signed_jwt("rsa-b.pem", "apikey-b", &claims);
    let (head, mut client) = websocket::handshake(envoy.port, "/chat/1.0.0/room", &[("apikey", &key)]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.write_all(&text_frame("a", true)).unwrap();
    assert_eq!(read_frame(&mut client), Some((1, b"ack:a".to_vec())));
    // Past `exp`: the next frame ends the connection.
    while SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() <= exp {
        std::thread::sleep(Duration::from_millis(100));
    }
    client.write_all(&text_frame("b", true)).unwrap();
    assert_eq!(read_frame(&mut client), None, "the connection ended");
    assert_eq!(*received.lock().unwrap(), ["a"]);
    assert_eq!(envoy.stat("wasmcustom.apim.fault.900903"), 1);
}
