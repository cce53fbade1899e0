//! HTTP semantics through a real Envoy loading the release `.wasm`: every answer the filter writes
//! is well formed over HTTP/1.1 and HTTP/2, for GET and HEAD; request bodies that arrive while the
//! filter waits for a call; and gRPC clients (HTTP/2, `application/grpc`), whose failed upstreams
//! Envoy answers with a trailers-only 200 that the filter must still recognise.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::websocket;
use common::windows::away_from_window_end;
use common::{free_port, read_response, Backend, Envoy, EnvoySetup, Silent};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An introspection endpoint that answers every token active for client `app1`, after `delay`.
fn slow_introspection(delay: Duration) -> u16 {
    common::introspection::SlowIntrospection::start(delay, "app1").port
}

/// A POST whose body is written by another thread while the response is read (a gateway may
/// answer before it read the body, and stop reading it).
fn post_while_reading(port: u16, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> common::Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head =
        format!("POST {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&body));
    });
    let raw = read_response(&mut stream).unwrap();
    let _ = sender.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    common::Response { status, headers, body: body.to_string() }
}

/// A request body larger than Envoy's buffer limit (1 MiB per connection by default) that arrives
/// while the filter waits for a key manager is held back by flow control, as Envoy's own
/// jwt_authn and ext_authz hold it, and goes upstream whole once the request is admitted: it is
/// never buffered up to the limit and refused as too large.
#[test]
fn a_large_body_arriving_while_the_filter_waits_for_a_call_goes_upstream_whole() {
    let introspection = slow_introspection(Duration::from_millis(1500));
    let backend = Backend::start();
    let config = json!({
        "key_managers": [{"name": "opaque", "issuer": "https://opaque.test",
            "introspection": {"cluster": "km", "path": "/introspect", "client_id": "gw", "client_secret": "s"}}],
        "apis": [{"name": "Upload", "context": "/upload", "version": "1.0.0",
            "endpoints": {"production": "live"}, "resources": [{"method": "POST", "path": "/*"}]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "o",
            "client_ids": [{"id": "app1", "key_manager": "opaque"}]}],
        "subscriptions": [{"application": "app-1", "api": "Upload:1.0.0"}]
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("live".into(), backend.port), ("km".into(), introspection)],
            route_timeout: Duration::from_secs(20),
            ..Default::default()
        },
    );
    let size = 3 * 1024 * 1024;
    let response =
        post_while_reading(envoy.port, "/upload/1.0.0/file", &[("authorization", "Bearer opaque-1")], vec![b'x'; size]);
    assert_eq!(response.status, 200, "{:?} {}", response.headers, response.body);
    let received = backend.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("content-length"), Some(size.to_string().as_str()));
}

/// A gRPC call over HTTP/2 (prior knowledge) with curl: the status line's code and the headers,
/// or curl's exit status and trace when it read no answer.
///
/// The request is complete in its HEADERS frame (no message). When Envoy answers before a
/// request's body has arrived (an upstream that refuses connections answers at once), it ends
/// the stream with RST_STREAM(NO_ERROR) right after the complete answer, as HTTP/2 allows, and
/// curl 7.88 then drops the answer it had read (exit 92). A real gRPC client reads the answer.
fn grpc_call(port: u16, path: &str) -> (u16, Vec<(String, String)>) {
    let output = Command::new("curl")
        .args(["-s", "-v", "-i", "--http2-prior-knowledge", "-X", "POST", "-H", "content-type: application/grpc"])
        .args(["-H", "te: trailers", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl is needed for HTTP/2 and is missing");
    if output.stdout.is_empty() {
        panic!("{path}: curl read no answer ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap_or(0);
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
}

/// Envoy answers a gRPC request whose upstream failed with a trailers-only 200 (`grpc-status`
/// 14): the filter replaces it with the transport fault as it does for any client, so the gRPC
/// client reads the WSO2 code in `grpc-message`, and the fault is counted. The filter's own
/// faults reach gRPC clients the same way, with the `grpc-status` an override names (here 8,
/// RESOURCE_EXHAUSTED, for the throttling codes, and 4, DEADLINE_EXCEEDED, for the upstream's
/// timeout) or Envoy's mapping of the HTTP status.
#[test]
fn a_grpc_clients_failed_upstream_is_answered_with_the_transport_fault() {
    let silent = Silent::start();
    let config = json!({
        "errors": {"overrides": {"9008xx": {"grpc_status": 8}, "101507": {"grpc_status": 4}}},
        "blocking": [{"api": "Blocked:1.0.0"}],
        "apis": [
            {"name": "Blocked", "context": "/blocked", "version": "1.0.0", "security": [],
             "endpoints": {"production": "closed"}, "resources": [{"method": "POST", "path": "/*"}]},
            {"name": "Secured", "context": "/secured", "version": "1.0.0",
             "endpoints": {"production": "closed"}, "resources": [{"method": "POST", "path": "/*"}]},
            {"name": "Closed", "context": "/closed", "version": "1.0.0", "security": [],
             "endpoints": {"production": "closed"}, "resources": [{"method": "POST", "path": "/*"}]},
            {"name": "Slow", "context": "/slow", "version": "1.0.0", "security": [],
             "endpoints": {"production": "silent"}, "resources": [{"method": "POST", "path": "/*"}]}
        ]
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("closed".into(), free_port()), ("silent".into(), silent.port)],
            route_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    );
    for (path, code) in [("/closed/1.0.0/pkg.Shop/Get", "101503"), ("/slow/1.0.0/pkg.Shop/Get", "101507")] {
        let (status, headers) = grpc_call(envoy.port, path);
        assert_eq!(status, 200, "a gRPC answer: {headers:?}");
        assert_eq!(header(&headers, "content-type"), ["application/grpc"], "{headers:?}");
        // UNAVAILABLE, or the override's DEADLINE_EXCEEDED: Envoy takes it in the response phase too.
        let grpc_status = if code == "101507" { "4" } else { "14" };
        assert_eq!(header(&headers, "grpc-status"), [grpc_status], "{code}: {headers:?}");
        let message = header(&headers, "grpc-message");
        assert_eq!(message.len(), 1, "{headers:?}");
        assert!(message[0].contains(&format!("\"code\":\"{code}\"")), "the WSO2 fault: {headers:?}");
        assert_eq!(envoy.stat(&format!("wasmcustom.apim.fault.{code}")), 1, "counted");
    }
    for (path, code, grpc_status) in
        [("/blocked/1.0.0/pkg.Shop/Get", "900805", "8"), ("/secured/1.0.0/pkg.Shop/Get", "900902", "16")]
    {
        let (status, headers) = grpc_call(envoy.port, path);
        assert_eq!(status, 200, "a gRPC answer: {headers:?}");
        assert_eq!(header(&headers, "grpc-status"), [grpc_status], "{code}: {headers:?}");
        let message = header(&headers, "grpc-message");
        assert!(message.len() == 1 && message[0].contains(&format!("\"code\":\"{code}\"")), "{headers:?}");
    }
}

/// A response as curl read it (`-i`): status, headers in order, body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn curl(port: u16, http2: bool, method: &str, path: &str, headers: &[&str]) -> Raw {
    let mut command = Command::new("curl");
    command.args(["-s", "-i", "--max-time", "10", if http2 { "--http2-prior-knowledge" } else { "--http1.1" }]);
    match method {
        "HEAD" => command.arg("-I"),
        other => command.args(["-X", other]),
    };
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl is needed");
    let raw = output.stdout;
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("{method} {path} (HTTP/2 {http2}): no response: {:?}", String::from_utf8_lossy(&raw))
    });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().into()))
        .collect();
    Raw { status, headers, body: raw[split + 4..].to_vec() }
}

/// Every answer the filter writes, over HTTP/1.1 and HTTP/2, for GET and HEAD: the status, one
/// content type, a `content-length` that is the body's length (for HEAD, the length GET's body
/// has, and no body), and no header twice.
#[test]
fn every_answer_the_filter_writes_is_well_formed_over_http1_and_http2_for_get_and_head() {
    let backend = Backend::start();
    let silent = Silent::start();
    let key_hash: String = Sha256::digest(b"good-key").iter().map(|b| format!("{b:02x}")).collect();
    let any = json!([{"method": "GET", "path": "/*"}, {"method": "HEAD", "path": "/*"}]);
    let api = |name: &str, cluster: &str, security: Value| {
        json!({"name": name, "context": format!("/{}", name.to_lowercase()), "version": "1.0.0", "security": security,
               "endpoints": {"production": cluster}, "resources": any})
    };
    let mut blocked = api("Legacy", "live", json!([]));
    blocked["lifecycle"] = Value::from("BLOCKED");
    let mut tiny = api("Tiny", "live", json!([]));
    tiny["policy"] = Value::from("One");
    let config = json!({
        "errors": {"cors": {"allow_origins": ["https://app.example"]}},
        "throttling": {"rate_limit_headers": true},
        "apis": [api("Secure", "live", json!(["api_key"])), api("Closed", "closed", json!([])),
                 api("Slow", "silent", json!([])), blocked, tiny],
        "applications": [{"id": "app", "name": "App", "owner": "o", "api_keys": [{"sha256": key_hash}]}],
        "subscriptions": [{"application": "app", "api": "Secure:1.0.0"}],
        "policies": {"One": {"requests": 1, "per": "hour"}}
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![
                ("live".into(), backend.port),
                ("closed".into(), free_port()),
                ("silent".into(), silent.port),
            ],
            route_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    );
    // `/tiny` allows one request an hour: every request to it, from the first to the last, falls
    // in one hour (at the top of the hour a second one would be let through).
    away_from_window_end(3600, 120);
    assert_eq!(curl(envoy.port, false, "GET", "/tiny/1.0.0/x", &[]).status, 200, "the one request /tiny allows");
    let origin = "origin: https://app.example";
    let cases: [(&str, &str, &[&str], u16); 8] = [
        ("GET", "/nowhere", &[origin], 404),
        ("DELETE", "/secure/1.0.0/x", &[origin], 403),
        ("GET", "/secure/1.0.0/x", &[origin], 401),
        ("GET", "/secure/1.0.0/x", &[origin, "apikey: wrong"], 401),
        ("GET", "/legacy/1.0.0/x", &[origin], 503),
        ("GET", "/tiny/1.0.0/x", &[origin], 429),
        ("GET", "/closed/1.0.0/x", &[origin], 503),
        ("GET", "/slow/1.0.0/x", &[origin], 504),
    ];
    for http2 in [false, true] {
        for (method, path, headers, status) in cases {
            let answer = curl(envoy.port, http2, method, path, headers);
            let context = format!("{method} {path} over HTTP/{}", if http2 { 2 } else { 1 });
            assert_eq!(answer.status, status, "{context}");
            let mut names: Vec<&str> = answer.headers.iter().map(|(name, _)| name.as_str()).collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "{context}: a header twice: {:?}", answer.headers);
            let value = |name: &str| answer.headers.iter().find(|(key, _)| key == name).map(|(_, v)| v.as_str());
            assert_eq!(value("content-type"), Some("application/json; charset=UTF-8"), "{context}");
            assert_eq!(value("access-control-allow-origin"), Some("https://app.example"), "{context}");
            let length: usize = value("content-length").and_then(|v| v.parse().ok()).expect("content-length");
            assert_eq!(length, answer.body.len(), "{context}");
            serde_json::from_slice::<Value>(&answer.body).unwrap_or_else(|e| panic!("{context}: {e}"));
            if method == "GET" {
                let head = curl(envoy.port, http2, "HEAD", path, headers);
                assert_eq!(head.status, status, "HEAD {context}");
                assert!(head.body.is_empty(), "HEAD {context}: a body");
                let head_length = head.headers.iter().find(|(key, _)| key == "content-length").map(|(_, v)| v.as_str());
                assert_eq!(head_length, Some(length.to_string().as_str()), "HEAD {context}");
            }
        }
    }
    assert!(backend.requests().len() == 1, "only the one allowed request reached the backend");
}

/// A WebSocket backend: answers every upgrade with 101 and then echoes what it reads.
fn websocket_echo() -> u16 {
    websocket::serve_each(|mut connection| {
        if !websocket::accept_upgrade(&mut connection) {
            return;
        }
        let mut buffer = [0u8; 1024];
        while let Ok(read) = connection.read(&mut buffer) {
            if read == 0 || connection.write_all(&buffer[..read]).is_err() {
                return;
            }
        }
    })
}

/// WebSocket APIs are authenticated and throttled at the handshake, as WSO2 does: a handshake that
/// waited for its token's introspection is upgraded and its frames flow both ways; one without a
/// credential, or over its policy, is refused before any upgrade.
#[test]
fn websocket_handshakes_are_authenticated_and_throttled_and_upgraded_after_a_wait() {
    let introspection = slow_introspection(Duration::from_millis(300));
    let echo = websocket_echo();
    let config = json!({
        "key_managers": [{"name": "opaque", "issuer": "https://opaque.test",
            "introspection": {"cluster": "km", "path": "/introspect", "client_id": "gw", "client_secret": "s"}}],
        "apis": [{"name": "Chat", "context": "/chat", "version": "1.0.0", "policy": "Two",
            "endpoints": {"production": "ws"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "o",
            "client_ids": [{"id": "app1", "key_manager": "opaque"}]}],
        "subscriptions": [{"application": "app-1", "api": "Chat:1.0.0"}],
        "policies": {"Two": {"requests": 2, "per": "hour"}}
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("ws".into(), echo), ("km".into(), introspection)],
            connection_manager: vec!["upgrade_configs: [{ upgrade_type: websocket }]".to_string()],
            ..Default::default()
        },
    );
    let handshake = |authorization: Option<&str>| {
        let headers: Vec<(&str, &str)> = authorization.map(|value| ("authorization", value)).into_iter().collect();
        websocket::handshake(envoy.port, "/chat/1.0.0/room", &headers)
    };
    // Two handshakes an hour: all three fall in one hour.
    away_from_window_end(3600, 60);
    let (head, _) = handshake(None);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    for token in ["opaque-1", "opaque-2"] {
        let (head, mut stream) = handshake(Some(&format!("Bearer {token}")));
        assert!(head.starts_with("HTTP/1.1 101"), "upgraded after the introspection: {head}");
        stream.write_all(b"frames").unwrap();
        let mut echoed = [0u8; 6];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"frames");
    }
    let (head, _) = handshake(Some("Bearer opaque-3"));
    assert!(head.starts_with("HTTP/1.1 429"), "the third handshake is over the policy: {head}");
}

/// A client's own `X-Forwarded-For` is not its address: an IP blocking condition on the address it
/// connects from still blocks it, whatever it claims.
#[test]
fn a_client_cannot_name_its_own_address_in_x_forwarded_for() {
    let backend = Backend::start();
    let config = json!({
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": [],
            "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]}],
        "blocking": [{"ip": "127.0.0.1"}],
        "policies": {}
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup { clusters: vec![("live".into(), backend.port)], ..Default::default() },
    );
    for forwarded in ["203.0.113.9", "127.0.0.2", "203.0.113.9, 198.51.100.4"] {
        let response = envoy.send("GET", "/shop/1.0.0/x", &[("x-forwarded-for", forwarded)], None);
        assert_eq!(response.status, 429, "{forwarded}: {}", response.body);
    }
    assert!(backend.requests().is_empty(), "nothing reached the backend");
}
