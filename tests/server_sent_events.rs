//! An API whose server-sent events are counted (`count_server_sent_events`), through a real Envoy:
//! the request is not counted, each event takes a request, and the first event over the limit
//! ends the stream where it starts, as API-M's gateway ends it.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::websocket;
use common::windows::away_from_window_end;
use common::{Envoy, EnvoySetup};
use serde_json::json;

/// A backend answering every request with a stream of five events, one every 50 ms.
fn event_source() -> u16 {
    websocket::serve_each(|mut connection| {
        if !websocket::read_head(&mut connection) {
            return;
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        if connection.write_all(answer.as_bytes()).is_err() {
            return;
        }
        for n in 1..=5 {
            let event = format!("data: tick {n}\n\n");
            if connection.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = connection.write_all(b"0\r\n\r\n");
    })
}

/// Everything Envoy sends for a GET of the stream, until it ends the connection.
fn read_stream(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(
            b"GET /ticks/1.0.0/prices HTTP/1.1\r\nhost: gw\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
        if received.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn events_count_and_the_first_over_the_limit_ends_the_stream() {
    let config = json!({
        "apis": [{"name": "Ticks", "context": "/ticks", "version": "1.0.0", "security": [], "policy": "Three",
            "count_server_sent_events": true,
            "endpoints": {"production": "sse"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {"Three": {"requests": 3, "per": "hour"}}
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup { clusters: vec![("sse".into(), event_source())], ..Default::default() },
    );
    away_from_window_end(3600, 60);
    let received = read_stream(envoy.port);
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert_eq!(received.matches("data: tick").count(), 3, "three events of the hour: {received}");
    assert!(received.contains("data: tick 3") && !received.contains("data: tick 4"), "{received}");
    assert!(!received.ends_with("0\r\n\r\n"), "the stream was ended, not completed: {received}");
    assert_eq!(envoy.stat("wasmcustom.apim.fault.900800"), 1);
    // The tier is spent: a second request is refused before the backend is asked, as API-M
    // refuses it.
    let received = read_stream(envoy.port);
    assert!(received.starts_with("HTTP/1.1 429"), "{received}");
    assert!(received.contains("900800") && !received.contains("data: tick"), "{received}");
    assert_eq!(envoy.stat("wasmcustom.apim.fault.900800"), 2);
}
