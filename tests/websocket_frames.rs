//! A WebSocket API whose frames are counted (`count_websocket_frames`), through a real Envoy: the
//! handshake is not counted, each data frame either way takes a request, and a frame over the
//! limit never arrives: the backend's is replaced by API-M's notice, the client's is dropped.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::websocket::{self, acking_backend, frame_bytes, read_any_frame, read_frame, text_frame};
use common::windows::away_from_window_end;
use common::{keys, Envoy, EnvoySetup};
use serde_json::json;

fn handshake(port: u16) -> (String, TcpStream) {
    websocket::handshake(port, "/chat/1.0.0/room", &[])
}

/// An open WebSocket API whose frames count against a tier of `requests` an hour.
fn counted_chat(requests: usize) -> serde_json::Value {
    json!({
        "apis": [{"name": "Chat", "context": "/chat", "version": "1.0.0", "security": [], "policy": "Tier",
            "count_websocket_frames": true,
            "endpoints": {"production": "ws"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {"Tier": {"requests": requests, "per": "hour"}}
    })
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
    let config = counted_chat(3);
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
/// A backend that acks text frames as `acking_backend` does and answers a ping with its pong.
fn ponging_backend() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&received);
    let port = websocket::serve_each(move |mut connection| {
        if !websocket::accept_upgrade(&mut connection) {
            return;
        }
        while let Some((opcode, payload)) = read_frame(&mut connection) {
            let reply = match opcode {
                1 => {
                    let text = String::from_utf8_lossy(&payload).into_owned();
                    log.lock().unwrap().push(text.clone());
                    text_frame(&format!("ack:{text}"), false)
                }
                9 => frame_bytes(true, 0xA, &payload, None),
                _ => continue,
            };
            if connection.write_all(&reply).is_err() {
                return;
            }
        }
    });
    (port, received)
}

/// Past `exp` the client's next data frame ends the connection; its ping before goes through
/// (API-M writes control frames through unchecked: `WebsocketInboundHandler.channelRead`).
#[test]
fn a_connection_ends_when_its_credential_expires() {
    let (backend, received) = ponging_backend();
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
    client.write_all(&frame_bytes(true, 9, b"p", Some([1, 2, 3, 4]))).unwrap();
    assert_eq!(read_frame(&mut client), Some((0xA, b"p".to_vec())), "a ping passes the expired token");
    client.write_all(&text_frame("b", true)).unwrap();
    assert_eq!(read_frame(&mut client), None, "the connection ended");
    assert_eq!(*received.lock().unwrap(), ["a"]);
    assert_eq!(envoy.stat("wasmcustom.apim.fault.900903"), 1);
}

/// A frame as the test reads it: its first byte (FIN and opcode) and its payload.
type Frame = (u8, Vec<u8>);

/// A seeded generator (`APIM_FRAMES_SEED` replays another): a number below its argument.
fn random_source() -> impl FnMut(usize) -> usize {
    let mut state: u64 =
        std::env::var("APIM_FRAMES_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    }
}

/// At least `data` data frames (text, binary, messages of three fragments with a ping inside) and
/// pings, of every length form, numbered in their payloads.
fn random_frames(next: &mut impl FnMut(usize) -> usize, data: usize) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut sent = 0u32;
    while frames.iter().filter(|(first, _)| !is_ping(*first)).count() < data {
        sent += 1;
        let size = match next(10) {
            0 => 0,
            1..=5 => next(126),
            6..=8 => 126 + next(70_000),
            _ => 65_536 + next(40_000),
        };
        let mut payload: Vec<u8> = format!("{sent}:").into_bytes();
        payload.extend((0..size).map(|at| b'a' + (at % 26) as u8));
        match next(8) {
            0 => frames.push((0x89, format!("ping {sent}").into_bytes())),
            1 => {
                frames.push((0x01, payload.clone()));
                frames.push((0x00, payload.clone()));
                frames.push((0x89, format!("ping in {sent}").into_bytes()));
                frames.push((0x80, payload));
            }
            2 => frames.push((0x82, payload)),
            _ => frames.push((0x81, payload)),
        }
    }
    frames
}

fn is_ping(first: u8) -> bool {
    first & 0x0F == 9
}

/// Writes `bytes` in random pieces: a few bytes (a header split), hundreds, or tens of thousands,
/// now and then pausing.
fn write_in_pieces(stream: &mut TcpStream, bytes: &[u8], next: &mut impl FnMut(usize) -> usize) -> bool {
    let mut offset = 0;
    while offset < bytes.len() {
        let piece = match next(4) {
            0 => 1 + next(3),
            1 => 1 + next(200),
            _ => 1 + next(50_000),
        };
        let end = (offset + piece).min(bytes.len());
        if stream.write_all(&bytes[offset..end]).is_err() {
            return false;
        }
        offset = end;
        if next(4) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    true
}

/// Random streams of frames through Envoy, written in random pieces (a frame's header split,
/// several frames in one write, a large frame across many): of a tier of N frames, exactly the
/// first N data frames reach the backend, byte for byte and in order, whatever the lengths
/// (7-, 16- and 64-bit forms), fragments and pieces; every ping passes, counted or not.
/// `APIM_FRAMES_SEED` replays another stream.
#[test]
fn random_frame_streams_admit_exactly_the_first_n_data_frames() {
    const LIMIT: usize = 40;
    let received: std::sync::Arc<std::sync::Mutex<Vec<Frame>>> = Default::default();
    let log = std::sync::Arc::clone(&received);
    let backend = websocket::serve_each(move |mut connection| {
        if !websocket::accept_upgrade(&mut connection) {
            return;
        }
        while let Some(frame) = read_any_frame(&mut connection) {
            log.lock().unwrap().push(frame);
        }
    });
    let config = counted_chat(LIMIT);
    let envoy = with_websocket_backend(&config, backend);
    away_from_window_end(3600, 120);
    let mut next = random_source();
    let frames = random_frames(&mut next, LIMIT + 30);
    let mut bytes = Vec::new();
    for (at, (first, payload)) in frames.iter().enumerate() {
        bytes.extend(frame_bytes(first & 0x80 != 0, first & 0x0F, payload, Some((at as u32).to_be_bytes())));
    }
    let (head, mut client) = handshake(envoy.port);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(write_in_pieces(&mut client, &bytes, &mut next));
    let pings = frames.iter().filter(|(first, _)| first & 0x0F == 9).count();
    let data: Vec<&(u8, Vec<u8>)> = frames.iter().filter(|(first, _)| first & 0x0F != 9).collect();
    let expected: Vec<(u8, Vec<u8>)> = data.iter().take(LIMIT).map(|frame| (*frame).clone()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = received.lock().unwrap().clone();
        let got_data: Vec<(u8, Vec<u8>)> = got.iter().filter(|(first, _)| first & 0x0F != 9).cloned().collect();
        let got_pings = got.len() - got_data.len();
        if (got_data.len() >= LIMIT && got_pings == pings) || std::time::Instant::now() > deadline {
            assert_eq!(got_pings, pings, "every ping passes");
            assert_eq!(got_data.len(), LIMIT, "exactly the tier's frames reach the backend");
            for (at, (got, want)) in got_data.iter().zip(&expected).enumerate() {
                assert!(
                    got == want,
                    "data frame {at} arrives as sent ({} against {} bytes)",
                    got.1.len(),
                    want.1.len()
                );
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(received.lock().unwrap().iter().filter(|(first, _)| first & 0x0F != 9).count(), LIMIT, "no more after");
    assert_eq!(envoy.stat("wasmcustom.apim.fault.4008") as usize, data.len() - LIMIT, "each dropped frame counted");
}

/// The same random streams from the backend, written in random pieces: of a tier of N frames, the
/// client gets exactly the first N data frames as sent and every ping, and in place of the
/// backend's frames over the tier only API-M's notice (4008), each dropped frame counted.
#[test]
fn random_backend_frame_streams_reach_the_client_up_to_the_tier_then_notices() {
    const LIMIT: usize = 30;
    let mut next = random_source();
    let frames = random_frames(&mut next, LIMIT + 20);
    let mut bytes = Vec::new();
    for (first, payload) in &frames {
        bytes.extend(frame_bytes(first & 0x80 != 0, first & 0x0F, payload, None));
    }
    let backend = websocket::serve_each(move |mut connection| {
        if !websocket::accept_upgrade(&mut connection) {
            return;
        }
        let mut next = random_source();
        if write_in_pieces(&mut connection, &bytes, &mut next) {
            std::thread::sleep(Duration::from_secs(20));
        }
    });
    let config = counted_chat(LIMIT);
    let envoy = with_websocket_backend(&config, backend);
    away_from_window_end(3600, 120);
    let (head, mut client) = handshake(envoy.port);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = Vec::new();
    while let Some(frame) = read_any_frame(&mut client) {
        got.push(frame);
    }
    let notice = (0x81, b"Error code: 4008 reason: Websocket frame throttled out".to_vec());
    let pings = frames.iter().filter(|(first, _)| is_ping(*first)).count();
    let data: Vec<&Frame> = frames.iter().filter(|(first, _)| !is_ping(*first)).collect();
    let got_pings = got.iter().filter(|(first, _)| is_ping(*first)).count();
    let (notices, got_data): (Vec<&Frame>, Vec<&Frame>) =
        got.iter().filter(|(first, _)| !is_ping(*first)).partition(|frame| **frame == notice);
    assert_eq!(got_pings, pings, "every ping passes");
    assert_eq!(got_data.len(), LIMIT, "exactly the tier's frames reach the client");
    for (at, (got, want)) in got_data.iter().zip(&data).enumerate() {
        assert!(got == want, "data frame {at} arrives as sent ({} against {} bytes)", got.1.len(), want.1.len());
    }
    let dropped = data.len() - LIMIT;
    assert!(!notices.is_empty() && notices.len() <= dropped, "{} notices for {dropped} dropped frames", notices.len());
    assert_eq!(envoy.stat("wasmcustom.apim.fault.4008") as usize, dropped, "each dropped frame counted");
}
