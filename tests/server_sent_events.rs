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

/// The first event over the limit shares its chunk with the tier's last, and then the backend
/// goes quiet with the stream open: the client still gets the tier's events, and its stream ends
/// then (as API-M's gateway closes it), not when the backend next sends. Also with a key manager
/// whose keys are refreshed in the background (the worker's tick already runs, every second), and
/// the gateway serves on after.
#[test]
fn a_stream_cut_mid_chunk_ends_even_when_the_backend_goes_quiet() {
    let backend = websocket::serve_each(|mut connection| {
        if !websocket::read_head(&mut connection) {
            return;
        }
        let events: String = (1..=5).map(|n| format!("data: tick {n}\n\n")).collect();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n",
            events.len()
        );
        if connection.write_all(answer.as_bytes()).is_err() {
            return;
        }
        // Quiet, the stream open, for longer than the client waits.
        std::thread::sleep(Duration::from_secs(30));
    });
    let api = json!({
        "apis": [{"name": "Ticks", "context": "/ticks", "version": "1.0.0", "security": [], "policy": "Three",
            "count_server_sent_events": true,
            "endpoints": {"production": "sse"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {"Three": {"requests": 3, "per": "hour"}}
    });
    let mut with_background = api.clone();
    with_background["key_managers"] =
        json!([{"name": "km", "issuer": "https://km.test", "jwks": {"cluster": "sse", "timeout_ms": 500}}]);
    for config in [api, with_background] {
        // The route's timeout would end the stream too: longer than the client waits.
        let setup = EnvoySetup {
            clusters: vec![("sse".into(), backend)],
            route_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let envoy = Envoy::start(&config.to_string(), setup);
        away_from_window_end(3600, 60);
        let mut stream = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"GET /ticks/1.0.0/prices HTTP/1.1\r\nhost: gw\r\naccept: text/event-stream\r\n\r\n").unwrap();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        let ended = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break true,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
                Err(error) => {
                    break !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                }
            }
        };
        let received = String::from_utf8_lossy(&received);
        assert!(received.starts_with("HTTP/1.1 200"), "{config}: {received}");
        assert_eq!(received.matches("data: tick").count(), 3, "the tier's three events arrived: {received}");
        assert!(ended, "{config}: the stream ended while the backend was quiet, not 10 s later: {received}");
        assert!(!received.ends_with("0\r\n\r\n"), "the stream was ended, not completed: {received}");
        assert_eq!(envoy.stat("wasmcustom.apim.fault.900800"), 1, "the stream's end is counted once");
        // The tick is back to its own period (or off): the gateway serves on, its ticks too.
        std::thread::sleep(Duration::from_millis(1500));
        let next = read_stream(envoy.port);
        assert!(next.starts_with("HTTP/1.1 429") && next.contains("900800"), "{config}: {next}");
        assert!(!envoy.log().contains("critical"), "{config}");
    }
}

/// Random event streams (data, id, event, retry and comment lines; multi-line data; LF, CRLF and
/// CR endings), written by the backend in random pieces across chunks: the client receives the
/// stream as sent up to the event after the tier's last, and not a byte of it or after; the stream
/// is ended (not completed) and counted once. `APIM_EVENTS_SEED` replays another stream.
#[test]
fn random_event_streams_never_deliver_a_byte_past_the_tiers_last_event() {
    const LIMIT: usize = 25;
    let seed: u64 =
        std::env::var("APIM_EVENTS_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0x2545_f491_4f6c_dd1d);
    let mut state = seed;
    let mut next = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    // The stream, and where each event starts in it.
    let mut stream = Vec::new();
    let mut starts = Vec::new();
    for n in 0..LIMIT + 15 {
        starts.push(stream.len());
        let end = *["\n", "\r\n", "\r"].get(next(3)).unwrap();
        let size = next(3000);
        let mut lines = vec![format!("data: event {n} {}", "x".repeat(size))];
        for _ in 0..next(4) {
            let line = match next(5) {
                0 => format!("id: {n}"),
                1 => "event: price".to_string(),
                2 => "retry: 1000".to_string(),
                3 => ": a comment".to_string(),
                _ => format!("data: more of {n}"),
            };
            let at = next(lines.len() + 1);
            lines.insert(at, line);
        }
        for line in lines {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(end.as_bytes());
        }
        stream.extend_from_slice(end.as_bytes());
    }
    let allowed = stream[..starts[LIMIT]].to_vec();
    // Random pieces: the event after the tier's last may share its chunk with the events before.
    let mut pieces = Vec::new();
    let mut offset = 0;
    while offset < stream.len() {
        let largest = if next(3) == 0 { 8 } else { 6000 };
        let end = (offset + 1 + next(largest)).min(stream.len());
        pieces.push(stream[offset..end].to_vec());
        offset = end;
    }
    let backend = websocket::serve_each(move |mut connection| {
        if !websocket::read_head(&mut connection) {
            return;
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        if connection.write_all(answer.as_bytes()).is_err() {
            return;
        }
        for piece in &pieces {
            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
            chunk.extend_from_slice(piece);
            chunk.extend_from_slice(b"\r\n");
            if connection.write_all(&chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        let _ = connection.write_all(b"0\r\n\r\n");
    });
    let config = json!({
        "apis": [{"name": "Ticks", "context": "/ticks", "version": "1.0.0", "security": [], "policy": "Tier",
            "count_server_sent_events": true,
            "endpoints": {"production": "sse"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {"Tier": {"requests": LIMIT, "per": "hour"}}
    });
    let envoy =
        Envoy::start(&config.to_string(), EnvoySetup { clusters: vec![("sse".into(), backend)], ..Default::default() });
    away_from_window_end(3600, 60);
    let received = read_stream(envoy.port);
    assert!(received.starts_with("HTTP/1.1 200"), "{}", &received[..received.len().min(300)]);
    assert!(!received.ends_with("0\r\n\r\n"), "the stream was ended, not completed");
    // The body, de-chunked as far as it came.
    let raw = received.as_bytes();
    let mut rest = &raw[received.find("\r\n\r\n").unwrap() + 4..];
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|window| window == b"\r\n") {
        let Ok(size) = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap_or("x"), 16) else { break };
        let data = &rest[line_end + 2..];
        body.extend_from_slice(&data[..size.min(data.len())]);
        if data.len() < size + 2 {
            break;
        }
        rest = &data[size + 2..];
    }
    assert!(allowed.starts_with(&body), "every byte received is of the tier's events, as sent ({} bytes)", body.len());
    assert_eq!(body.len(), allowed.len(), "the tier's events all arrived, those sharing a chunk with the cut too");
    assert_eq!(envoy.stat("wasmcustom.apim.fault.900800"), 1, "the stream's end is counted once");
}
