//! Bytes that are not UTF-8 (obs-text, which Envoy accepts in header values over HTTP/1 and
//! HTTP/2) in every position the filter reads, through a real Envoy (`--concurrency 2`): request
//! headers (ordinary ones, credentials, the filter's own), a backend's response headers, and a key
//! manager's answers (introspection and JWKS). The gateway must keep answering with the right
//! faults on both workers afterwards, never die, and never log a credential.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{read_repo_file, Envoy, EnvoySetup, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// An upstream that answers by path prefix with fixed raw bytes (any header bytes at all), and
/// records the raw head of every request it gets.
struct RawServer {
    port: u16,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl RawServer {
    fn start(routes: Vec<(&'static str, Vec<u8>)>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, flag) = (Arc::clone(&heads), Arc::clone(&stop));
        let routes = Arc::new(routes);
        thread::spawn(move || {
            for connection in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(connection) = connection else { continue };
                let (log, routes) = (Arc::clone(&log), Arc::clone(&routes));
                thread::spawn(move || serve(connection, &log, &routes));
            }
        });
        RawServer { port, heads, stop }
    }

    fn heads(&self) -> Vec<Vec<u8>> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(connection: TcpStream, log: &Mutex<Vec<Vec<u8>>>, routes: &[(&str, Vec<u8>)]) {
    // Longer than any pause of a test: a backend closing an idle connection just as Envoy
    // reuses it would answer that request 503.
    let _ = connection.set_read_timeout(Some(Duration::from_secs(300)));
    let mut writer = connection.try_clone().unwrap();
    let mut reader = BufReader::new(connection);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                return;
            }
            let end = line == b"\r\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = text
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = text.split_whitespace().nth(1).unwrap_or_default().to_string();
        log.lock().unwrap().push(head);
        let response = routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, response)| response.clone())
            .unwrap_or_else(|| b"HTTP/1.1 404 Nope\r\ncontent-length: 0\r\n\r\n".to_vec());
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

/// A raw HTTP response with a Latin-1 header and a JSON body.
fn latin1_response(body: &str) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    response.extend_from_slice(b"x-latin1: caf\xe9 cr\xe8me \xa9\r\nset-cookie: name=\xff\xfe\r\n\r\n");
    response.extend_from_slice(body.as_bytes());
    response
}

/// One request whose header lines are raw bytes.
fn raw_request(port: u16, method: &str, path: &[u8], headers: &[&[u8]]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut message = format!("{method} ").into_bytes();
    message.extend_from_slice(path);
    message.extend_from_slice(format!(" HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n").as_bytes());
    for header in headers {
        message.extend_from_slice(header);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    stream.write_all(&message).unwrap();
    let raw = common::read_response(&mut stream).unwrap_or_default();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Response { status, headers, body: String::from_utf8_lossy(&raw[split + 4..]).into_owned() }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn signing_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(read_repo_file("tests/fixtures/keys/rsa-a.pem").as_bytes()).unwrap()
}

fn jwt(claims: Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &signing_key(), Algorithm::RS256).unwrap();
    format!("{input}.{signature}")
}

struct Stack {
    envoy: Envoy,
    backend: RawServer,
    _km: RawServer,
}

fn stack() -> Stack {
    let backend = RawServer::start(vec![("/", latin1_response(r#"{"backend":"ok"}"#))]);
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = Value::from("k1");
    let introspection = json!({"active": true, "client_id": "app1", "exp": now() + 600}).to_string();
    let km = RawServer::start(vec![
        ("/introspect", latin1_response(&introspection)),
        ("/jwks", latin1_response(&json!({"keys": [jwk]}).to_string())),
    ]);
    let config = json!({
        "errors": {"cors": {"allow_origins": ["https://app.example"]}},
        "key_managers": [
            {"name": "opaque", "issuer": "https://opaque.test",
             "introspection": {"cluster": "km", "path": "/introspect", "client_id": "gw", "client_secret": "s"}},
            {"name": "jwt", "issuer": "https://jwt.test", "jwks": {"cluster": "km", "path": "/jwks"}}
        ],
        "apis": [
            {"name": "Shop", "context": "/shop", "version": "1.0.0", "security": [],
             "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "Secure", "context": "/secure", "version": "1.0.0", "security": ["oauth2", "api_key"],
             "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]}
        ],
        "applications": [{"id": "app-1", "name": "App", "owner": "o",
            "client_ids": [{"id": "app1", "key_manager": "opaque"}, {"id": "jwt-client", "key_manager": "jwt"}],
            "api_keys": [{"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]}],
        "subscriptions": [{"application": "app-1", "api": "Secure:1.0.0"}]
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup { clusters: vec![("live".into(), backend.port), ("km".into(), km.port)], ..Default::default() },
    );
    Stack { envoy, backend, _km: km }
}

fn code(response: &Response) -> String {
    serde_json::from_str::<Value>(&response.body)
        .ok()
        .and_then(|body| body["code"].as_str().map(String::from))
        .unwrap_or_else(|| response.status.to_string())
}

/// The gateway still answers every kind of request right, many times (both workers).
fn assert_healthy(envoy: &Envoy) {
    for _ in 0..12 {
        assert_eq!(code(&envoy.get("/nowhere")), "404");
        assert_eq!(code(&envoy.get("/secure/1.0.0/x")), "900902");
        assert_eq!(envoy.send("GET", "/secure/1.0.0/x", &[("apikey", "test")], None).status, 200);
        assert_eq!(envoy.get("/shop/1.0.0/x").status, 200);
    }
    let log = envoy.log();
    assert!(!log.contains("internal error") && !log.contains("panicked"), "the VM stayed healthy:\n{log}");
}

#[test]
fn obs_text_in_request_headers_never_harms_the_gateway_and_credentials_that_are_not_text_are_refused() {
    let stack = stack();
    let port = stack.envoy.port;
    // Ordinary headers with Latin-1 bytes pass through untouched.
    let ordinary: [&[u8]; 4] = [
        b"User-Agent: Mozilla/5.0 \xa9",
        b"Cookie: session=caf\xe9",
        b"Origin: https://caf\xe9.example",
        b"X-Custom: \xff\xfe\x80",
    ];
    let response = raw_request(port, "GET", b"/shop/1.0.0/items", &ordinary);
    assert_eq!(response.status, 200, "{}", response.body);
    let head = stack.backend.heads().pop().expect("the backend got the request");
    for needle in [b"Mozilla/5.0 \xa9".as_slice(), b"session=caf\xe9", b"\xff\xfe\x80"] {
        assert!(head.windows(needle.len()).any(|w| w == needle), "forwarded byte for byte");
    }
    // Credentials that are not text are refused as invalid credentials, never a crash.
    for credential in [b"Authorization: Bearer caf\xe9-token".as_slice(), b"apikey: k\xe9y\xff"] {
        let response = raw_request(port, "GET", b"/secure/1.0.0/x", &[credential, ordinary[0]]);
        assert_eq!((response.status, code(&response)), (401, "900901".to_string()), "{}", response.body);
    }
    // A forged routing header with such bytes is removed like any other.
    let forged: [&[u8]; 2] = [b"x-apim-cluster: km\xe9", b"x_apim_application_id: \xe9vil"];
    let response = raw_request(port, "GET", b"/secure/1.0.0/x", &forged);
    assert_eq!(code(&response), "900902");
    // Every preflight and path position too (Envoy may refuse a raw byte in the path itself).
    let preflight: [&[u8]; 2] = [b"Origin: https://app.example", b"Access-Control-Request-Method: G\xc9T"];
    let response = raw_request(port, "OPTIONS", b"/shop/1.0.0/items", &preflight);
    assert!(response.status < 500, "{}", response.status);
    let response = raw_request(port, "GET", b"/shop/1.0.0/it\xe9ms", &[]);
    assert!(response.status == 400 || response.status == 403, "{}", response.status);
    assert!(!stack.envoy.log().contains("caf\u{fffd}-token"), "credentials never reach the log");
    assert_healthy(&stack.envoy);
}

#[test]
fn obs_text_over_http2_is_as_harmless() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is needed for the HTTP/2 half of this test and is missing");
    }
    let stack = stack();
    let url = format!("http://127.0.0.1:{}/secure/1.0.0/x", stack.envoy.port);
    let run = |header: &[u8]| -> String {
        let output = Command::new("curl")
            .args(["-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "-H"])
            .arg(OsStr::from_bytes(header))
            .arg(&url)
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(run(b"User-Agent: Mozilla/5.0 \xa9"), "2 401", "no credential: 900902 over HTTP/2");
    assert_eq!(run(b"Authorization: Bearer caf\xe9"), "2 401");
    assert_eq!(run(b"apikey: test"), "2 200");
    assert_healthy(&stack.envoy);
}

#[test]
fn obs_text_in_backend_and_key_manager_answers_is_harmless() {
    let stack = stack();
    // A backend's Latin-1 response headers pass to the client.
    let response = stack.envoy.get("/shop/1.0.0/items");
    assert_eq!(response.status, 200);
    assert!(response.header("x-latin1").is_some());
    // The introspection answer carries Latin-1 headers: the token is still introspected.
    let response = stack.envoy.send("GET", "/secure/1.0.0/x", &[("authorization", "Bearer an-opaque-token")], None);
    assert_eq!(response.status, 200, "{}", response.body);
    // So does the JWKS answer: the JWT still verifies with the fetched key.
    let token = jwt(json!({"iss": "https://jwt.test", "exp": now() + 300, "client_id": "jwt-client"}));
    let response = stack.envoy.send("GET", "/secure/1.0.0/x", &[("authorization", &format!("Bearer {token}"))], None);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_healthy(&stack.envoy);
}

/// Defence in depth: with the filter out of the chain altogether (what a skipped or dead filter
/// amounts to), a client-set routing header still reaches no backend.
#[test]
fn without_the_filter_a_client_cannot_route_itself() {
    let backend = RawServer::start(vec![("/", latin1_response("{}"))]);
    let envoy = Envoy::start(
        "{}",
        EnvoySetup { clusters: vec![("live".into(), backend.port)], without_filter: true, ..Default::default() },
    );
    for header in ["x-apim-cluster", "X-Apim-Cluster"] {
        let response = envoy.send("GET", "/shop/1.0.0/items", &[(header, "live")], None);
        assert_eq!(response.status, 418, "the unrouted fallback answered");
    }
    assert!(backend.heads().is_empty(), "nothing reached the backend");
}

/// A token whose header or payload nests arrays and objects deeper than serde_json reads (128
/// levels) is refused as an invalid credential, in Envoy's wasm stack, and one nested just within
/// the limit is read: the VM never overflows its stack, and keeps answering.
#[test]
fn deeply_nested_token_json_is_refused_without_harm() {
    let stack = stack();
    let deep = |depth: usize, open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
    let claims = |nested: String| {
        format!(
            r#"{{"iss":"https://jwt.test","sub":"bob","client_id":"jwt-client","exp":{},"x":{nested}}}"#,
            now() + 600
        )
    };
    let signed = |header: &str, payload: &str| {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &signing_key(), Algorithm::RS256).unwrap();
        format!("{input}.{signature}")
    };
    let header = r#"{"alg":"RS256","kid":"k1"}"#;
    for (token, expected) in [
        (signed(header, &claims(deep(15_000, "[", "]"))), "900901"),
        (signed(header, &claims(deep(6_000, r#"{"a":"#, "}"))), "900901"),
        (
            signed(&format!(r#"{{"alg":"RS256","kid":"k1","x":{}}}"#, deep(15_000, "[", "]")), &claims("1".into())),
            "900901",
        ),
        (signed(header, &claims(deep(120, "[", "]"))), "200"),
        (signed(header, &claims(deep(120, r#"{"a":"#, "}"))), "200"),
    ] {
        let response =
            stack.envoy.send("GET", "/secure/1.0.0/x", &[("authorization", &format!("Bearer {token}"))], None);
        let got = if response.status == 200 { "200".to_string() } else { code(&response) };
        assert_eq!(got, expected, "{} bytes: {}", token.len(), response.body);
    }
    assert_healthy(&stack.envoy);
}
