//! Calls outlive the request that made them, through a real Envoy (`--concurrency 1`): a client
//! that hangs up while its request waits for a JWKS fetch does not take the fetch with it (Envoy
//! cancels the calls of a context it deletes; the filter makes them the root context's), nor does
//! one whose introspection other requests with its token wait for.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::introspection::SlowIntrospection;
use common::{read_repo_file, Backend, Envoy, EnvoySetup};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

const ISSUER: &str = "https://slow.test";

fn private_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(read_repo_file("tests/fixtures/keys/rsa-a.pem").as_bytes()).unwrap()
}

fn public_jwk(kid: &str) -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&private_key(), Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = Value::from(kid);
    jwk
}

fn token(kid: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "RS256", "kid": kid}).to_string();
    let claims = json!({"iss": ISSUER, "exp": now + 300, "client_id": "c"}).to_string();
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &private_key(), Algorithm::RS256).unwrap();
    format!("{input}.{signature}")
}

/// A JWKS endpoint that answers each fetch after a second, with the kids set at the time.
struct SlowJwks {
    port: u16,
    kids: Arc<Mutex<Vec<String>>>,
    fetches: Arc<AtomicU64>,
}

impl SlowJwks {
    fn start(kids: &[&str]) -> SlowJwks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let kids = Arc::new(Mutex::new(kids.iter().map(|kid| kid.to_string()).collect::<Vec<_>>()));
        let fetches = Arc::new(AtomicU64::new(0));
        let (served, count) = (Arc::clone(&kids), Arc::clone(&fetches));
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let (served, count) = (Arc::clone(&served), Arc::clone(&count));
                std::thread::spawn(move || serve(connection, &served, &count));
            }
        });
        SlowJwks { port, kids, fetches }
    }

    fn publish(&self, kids: &[&str]) {
        *self.kids.lock().unwrap() = kids.iter().map(|kid| kid.to_string()).collect();
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn serve(mut connection: TcpStream, kids: &Mutex<Vec<String>>, fetches: &AtomicU64) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(read) = connection.read(&mut buffer) else { return };
        if read == 0 {
            return;
        }
        request.extend_from_slice(&buffer[..read]);
        if !request.windows(4).any(|window| window == b"\r\n\r\n") {
            continue;
        }
        request.clear();
        fetches.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(1));
        let keys: Vec<Value> = kids.lock().unwrap().iter().map(|kid| public_jwk(kid)).collect();
        let body = json!({ "keys": keys }).to_string();
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
        if connection.write_all(head.as_bytes()).and_then(|()| connection.write_all(body.as_bytes())).is_err() {
            return;
        }
    }
}

/// Closes a connection with a reset (SO_LINGER 0), as a client that goes away does: Envoy
/// deletes the stream at once.
fn reset(connection: TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        on: i32,
        seconds: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, length: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger { on: 1, seconds: 0 };
    // SAFETY: a live socket's descriptor and a valid `struct linger` of the size given.
    let status = unsafe { setsockopt(connection.as_raw_fd(), SOL_SOCKET, SO_LINGER, &linger, 8) };
    assert_eq!(status, 0, "SO_LINGER");
    drop(connection);
}

/// One API for client `c` of key manager `km`, whose keys or introspection `key_manager` gives.
fn one_api(key_manager: Value) -> String {
    let mut km = json!({"name": "km", "issuer": ISSUER});
    km.as_object_mut().unwrap().extend(key_manager.as_object().unwrap().clone());
    json!({
        "key_managers": [km],
        "apis": [{"name": "S", "context": "/s", "version": "1", "endpoints": {"production": "live"},
                  "resources": [{"method": "GET", "path": "/*"}]}],
        "applications": [{"id": "app", "name": "App", "client_ids": [{"id": "c"}]}],
        "subscriptions": [{"application": "app", "api": "S:1"}]
    })
    .to_string()
}

#[test]
fn a_client_that_hangs_up_does_not_take_the_jwks_fetch_it_started_with_it() {
    let jwks = SlowJwks::start(&["a"]);
    let live = Backend::start();
    let config = one_api(json!({"jwks": {"cluster": "jwks", "timeout_ms": 5000}}));
    let setup = EnvoySetup {
        clusters: vec![("jwks".to_string(), jwks.port), ("live".to_string(), live.port)],
        concurrency: 1,
        ..Default::default()
    };
    let envoy = Envoy::start(&config, setup);
    let bearer = |token: &str| {
        let authorization = format!("Bearer {token}");
        envoy.send("GET", "/s/1/x", &[("authorization", &authorization)], None)
    };
    // The first request waits a second for the keys (the first tick refreshes them too). A
    // request may fetch again 5 s later.
    assert_eq!(bearer(&token("a")).status, 200);
    std::thread::sleep(Duration::from_millis(5_500));
    let fetched = jwks.fetches();
    // The provider rotates to kid "b". The first request with it comes from a client that hangs up
    // at once; its fetch is under way for a second.
    jwks.publish(&["a", "b"]);
    let mut hung_up = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    let request = format!("GET /s/1/x HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {}\r\n\r\n", token("b"));
    hung_up.write_all(request.as_bytes()).unwrap();
    let hung_up_at = Instant::now();
    let deadline = hung_up_at + Duration::from_secs(3);
    while jwks.fetches() == fetched {
        assert!(Instant::now() < deadline, "the hung-up request did not fetch");
        std::thread::sleep(Duration::from_millis(20));
    }
    reset(hung_up);
    // A client that stays: its token with kid "b" is admitted with the keys that fetch brings,
    // within the 5 s in which this worker may not fetch again.
    std::thread::sleep(Duration::from_millis(300));
    let response = bearer(&token("b"));
    assert_eq!(response.status, 200, "{:?} after {:?}", response.json(), hung_up_at.elapsed());
    assert!(hung_up_at.elapsed() < Duration::from_secs(4), "{:?}", hung_up_at.elapsed());
    assert_eq!(jwks.fetches(), fetched + 1, "one fetch for the rotated key");
}

/// The request that introspects a new opaque token hangs up while the call is under way; a
/// request with the same token waits for that call (it makes none of its own), and the answer the
/// hung-up request's state takes still reaches it.
#[test]
fn a_request_waiting_for_the_introspection_of_a_client_that_hung_up_gets_its_answer() {
    let introspection = SlowIntrospection::start(Duration::from_secs(1), "c");
    let port = introspection.port;
    let live = Backend::start();
    let config = one_api(
        json!({"introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s", "timeout_ms": 5000}}),
    );
    let setup = EnvoySetup {
        clusters: vec![("km".to_string(), port), ("live".to_string(), live.port)],
        concurrency: 1,
        ..Default::default()
    };
    let envoy = Envoy::start(&config, setup);
    let mut hung_up = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    hung_up.write_all(b"GET /s/1/x HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer opaque-token-1\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while introspection.calls() == 0 {
        assert!(Instant::now() < deadline, "the first request did not introspect");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second request comes while the call is under way, and its client stays.
    let waiting = std::thread::spawn({
        let port = envoy.port;
        move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            let request =
                "GET /s/1/x HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer opaque-token-1\r\nconnection: close\r\n\r\n";
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).to_string()
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    reset(hung_up);
    let answer = waiting.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(introspection.calls(), 1, "one introspection for both");
}
