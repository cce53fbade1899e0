//! The request campaign's shared parts (`tests/request_campaign.rs` over HTTP/1.1,
//! `tests/request_campaign_h2.rs` over HTTP/2 and chunked HTTP/1.1): the seeded generator of
//! mutated requests, the gateways' configuration and sites, and the oracle that says whether an
//! answer is one the contract allows.

use std::time::{SystemTime, UNIX_EPOCH};

use apim_filter::catalogue;
use serde_json::{json, Value};

use std::time::Duration;

use super::{api_key_hash, keys, Backend, Envoy, EnvoySetup, Received, Response};

pub const API_KEY: &str = "campaign-key-6f1c";
pub const ISSUER: &str = "https://km.campaign.test";

pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn token(claims: Value) -> String {
    keys::signed_jwt("rsa-a.pem", "k1", &claims)
}

pub fn config() -> String {
    json!({
        "errors": {"cors": {"allow_origins": ["https://app.example"]}},
        "key_managers": [{"name": "km", "issuer": ISSUER, "jwks": {"keys": [keys::public_jwk("rsa-a.pem", "k1")]}}],
        "apis": [
            {"name": "Open", "context": "/open", "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/*"}, {"method": "POST", "path": "/items"}]},
            {"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["oauth2", "api_key"],
             "api_key_in_query": true, "endpoints": {"production": "live"},
             "resources": [
                {"method": "GET", "path": "/items/{id}"},
                {"method": "GET", "path": "/items"},
                {"method": "POST", "path": "/orders", "scopes": ["orders:write"]},
                {"method": "GET", "path": "/limited", "policy": "TwoPerHour"},
                {"method": "DELETE", "path": "/*"}
             ]}
        ],
        "applications": [{"id": "app-1", "name": "App", "owner": "owner-1",
            "client_ids": [{"id": "client-1", "key_manager": "km"}],
            "api_keys": [{"sha256": api_key_hash(API_KEY)}]}],
        "subscriptions": [{"application": "app-1", "api": "Shop:1.0.0"}],
        "policies": {"TwoPerHour": {"requests": 2, "per": "hour"}}
    })
    .to_string()
}

/// The value of every copy of the filter's own headers a request forges.
pub const FORGED: &str = "evil";

/// A gateway a campaign runs against.
pub struct Site {
    /// Paths of its APIs (and of none) that requests start from.
    pub bases: Vec<&'static str>,
    /// Path prefixes of its APIs that take credentials.
    pub secured: Vec<&'static str>,
    /// Valid bearer tokens (each request picks one, sends it as is or mutated).
    pub tokens: Vec<String>,
    /// A valid API key, where its APIs take them.
    pub api_key: Option<String>,
    /// A request that must pass whatever came before: its path and headers.
    pub healthy: (&'static str, Vec<(String, String)>),
}

impl Site {
    /// What must reach no backend (of a secured API), no fault's body and no log.
    pub fn secrets(&self) -> Vec<&str> {
        self.tokens.iter().map(String::as_str).chain(self.api_key.as_deref()).collect()
    }
}

/// One request of the campaign, and what the checks need to know about it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header lines (`name: value`), in order, the HTTP/1.1 `host` and `connection` first.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    /// The path names an API that takes credentials.
    pub secured: bool,
    /// The path is neither origin-form (`/...`) nor absolute-form with one (`http://host/...`).
    pub not_a_path: bool,
}

pub fn mutate_token(random: &mut Random, token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    match random.below(6) {
        0 => {
            let at = random.below(bytes.len());
            bytes[at] = *random.pick(b"AZaz09-_.=+/");
        }
        1 => bytes.truncate(random.below(bytes.len())),
        2 => bytes.extend_from_slice(b".x"),
        3 => {
            let at = random.below(bytes.len());
            bytes.insert(at, b'.');
        }
        4 => bytes.retain(|byte| *byte != b'.'),
        _ => {
            let at = random.below(bytes.len());
            bytes.splice(at..at, b"%00".iter().copied());
        }
    }
    String::from_utf8(bytes).unwrap()
}

pub fn path(random: &mut Random, site: &Site, clean: bool) -> (String, bool) {
    let mut path = random.pick(&site.bases).to_string();
    let secured = site.secured.iter().any(|prefix| path.starts_with(prefix));
    let tokens = [
        "%2F",
        "%2f",
        "%2e",
        "%2E%2E",
        "..",
        ".",
        "//",
        ";",
        ";jsessionid=1",
        "%",
        "%ZZ",
        "%00",
        "%5C",
        "\\",
        "*",
        "{id}",
        "~",
        "%C0%AE",
        "+",
        "%20",
        "é",
        "/",
        "?",
        "#",
        "&",
        "=",
        "%3F",
        "%23",
    ];
    for _ in 0..if clean { 0 } else { random.below(4) } {
        let mut at = random.below(path.len() + 1);
        while !path.is_char_boundary(at) {
            at -= 1;
        }
        let token = *random.pick(&tokens);
        path.insert_str(at, token);
    }
    if !clean && random.chance(25) {
        let key = site.api_key.as_deref().unwrap_or("none");
        let queries = [
            format!("?apikey={key}"),
            "?apikey=wrong".to_string(),
            format!("?a=1&apikey={key}&b=2"),
            "?apikey=".to_string(),
            "?a=%ZZ".to_string(),
            "?access_token=abc".to_string(),
            "?;;&&==".to_string(),
        ];
        let query = random.pick(&queries).clone();
        path.push_str(&query);
    }
    // Non-ASCII goes as UTF-8 bytes, which Envoy refuses in a path: percent-encode most of it.
    if random.chance(80) {
        path = path.replace('é', "%C3%A9");
    }
    if !clean && random.chance(3) {
        path = format!("http://127.0.0.1{path}");
    }
    (path, secured)
}

pub fn request(random: &mut Random, port: u16, site: &Site) -> Request {
    let methods = ["GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "FOO"];
    // A third of the requests are valid ones (a valid credential, a path as sent), so that every
    // resource is reached and its tiers run out; the rest are mutated.
    let clean = random.chance(33);
    let method = if clean { "GET".to_string() } else { random.pick(&methods).to_string() };
    let (path, secured) = path(random, site, clean);
    let mut headers: Vec<String> = vec![format!("host: 127.0.0.1:{port}"), "connection: close".to_string()];
    let token = random.pick(&site.tokens).clone();
    let mut credentials = vec![
        format!("Authorization: Bearer {token}"),
        format!("Authorization: Bearer {}", mutate_token(random, &token)),
        format!("Authorization: bearer {token}"),
        format!("Authorization: Bearer  {token}"),
        format!("Authorization: Bearer {token} extra"),
        "Authorization: Bearer".to_string(),
        "Authorization: Basic Y2xpZW50LTE6c2VjcmV0".to_string(),
        "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2ttLmNhbXBhaWduLnRlc3QifQ.".to_string(),
        "Authorization: Bearer a.b.c".to_string(),
        "apikey:".to_string(),
    ];
    if let Some(key) = &site.api_key {
        credentials.extend([
            format!("apikey: {key}"),
            format!("APIKEY: {key}"),
            format!("apikey: {key} "),
            format!("apikey: {}", mutate_token(random, key)),
        ]);
    }
    if clean {
        let key = site.api_key.as_ref().filter(|_| random.chance(30));
        headers.push(key.map_or_else(|| credentials[0].clone(), |key| format!("apikey: {key}")));
    }
    for _ in 0..if clean { 0 } else { random.below(3) } {
        headers.push(random.pick(&credentials).clone());
    }
    let others = [
        "x-apim-cluster: evil",
        "X-Apim-Api: evil",
        "x_apim_application_id: evil",
        "x-apim-application-name: evil",
        "x-apim-end-user: evil",
        "x-apim-quota-exceeded: evil",
        "x-apim-key-type: evil",
        "x-apim-tier: evil",
        "X-APIM-SUBSCRIBER: evil",
        "origin: https://app.example",
        "origin: https://evil.example",
        "access-control-request-method: GET",
        "access-control-request-method: POST",
        "content-type: application/grpc",
        "content-type: application/json",
        "accept: application/xml",
        "x-forwarded-for: 203.0.113.9, 10.0.0.1",
        "te: trailers",
        "expect: 100-continue",
    ];
    for _ in 0..random.below(4) {
        headers.push(random.pick(&others).to_string());
    }
    if random.chance(3) {
        headers.push(format!("x-long: {}", "a".repeat(8 * 1024)));
    }
    let body: Vec<u8> = if random.chance(20) {
        (0..random.below(2048)).map(|_| b' ' + random.below(95) as u8).collect()
    } else {
        Vec::new()
    };
    if !body.is_empty() || random.chance(10) {
        headers.push(format!("content-length: {}", body.len()));
    }
    let not_a_path = !path.strip_prefix("http://127.0.0.1").unwrap_or(&path).starts_with('/');
    Request { method, path, headers, body, secured, not_a_path }
}

impl Request {
    /// The request as HTTP/1.1 bytes, its body framed by `content-length` when it has one.
    pub fn raw(&self) -> Vec<u8> {
        let mut raw = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        for header in &self.headers {
            raw.extend_from_slice(header.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.body);
        raw
    }

    /// The start of the request, to show with a failure.
    pub fn shown(&self) -> String {
        let head = format!("{} {}\n{}\n", self.method, self.path, self.headers.join("\n"));
        let head: String = head.chars().take(900).collect();
        format!("{head}[body: {} bytes]", self.body.len())
    }
}

/// The `grpc-status` Envoy gives an HTTP status (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_of(status: u16) -> u16 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// Why `response` is not an answer the contract allows for `request`, if it is not.
pub fn violation(site: &Site, request: &Request, response: &Response, received: Option<&Received>) -> Option<String> {
    let secrets = site.secrets();
    let reached_backend = received.is_some();
    if let Some(received) = received {
        // Every header as the backend read it (the echo keeps one value per name).
        for (name, value) in &received.headers {
            if name == "authorization" || name == "apikey" {
                return Some(format!("the backend got a credential header: {name}"));
            }
            let own = name.starts_with("x-apim-") || name.starts_with("x_apim_");
            if own && value.contains(FORGED) {
                return Some(format!("the backend got a forged header of the filter's: {name}: {value}"));
            }
        }
        let seen = format!("{} {:?} {}", received.path, received.headers, String::from_utf8_lossy(&received.body));
        if request.secured && secrets.iter().any(|secret| seen.contains(secret)) {
            return Some("a credential reached the backend".into());
        }
    }
    if response.header("x-backend") == Some("real") {
        if !reached_backend {
            return Some("a backend answer the backend never gave".into());
        }
        // The backend echoes what it got as JSON: an answer that is not its echo (cut or
        // rewritten on the way) is not the backend's answer, and hides what reached it.
        let Ok(echo) = serde_json::from_str::<Value>(&response.body) else {
            return Some(format!("a backend answer that is not its echo: {:?}", response.body));
        };
        let Some(received) = echo["headers"].as_object() else {
            return Some(format!("a backend answer without the headers it got: {:?}", response.body));
        };
        for (name, value) in received {
            let value = value.as_str().unwrap_or_default();
            if name == "authorization" || name == "apikey" {
                return Some(format!("the backend got a credential header: {name}"));
            }
            let own = name.starts_with("x-apim-") || name.starts_with("x_apim_");
            if own && value.contains(FORGED) {
                return Some(format!("the backend got a forged header of the filter's: {name}: {value}"));
            }
        }
        let upstream = echo.to_string();
        if request.secured && secrets.iter().any(|secret| upstream.contains(secret)) {
            return Some("a credential reached the backend".into());
        }
        return None;
    }
    if reached_backend {
        return Some(format!("the backend was asked, and the client got {} instead of its answer", response.status));
    }
    // A gRPC client gets a fault as Envoy answers gRPC: a trailers-only 200, the fault's body in
    // `grpc-message`.
    let grpc = response.header("grpc-status").filter(|_| response.status == 200);
    let (status, body) = match grpc {
        Some("0") => return Some("a gRPC fault with status 0 (OK)".into()),
        // Envoy's own refusals of a gRPC request, mapped as it maps statuses: its codec's 400
        // (INTERNAL) and its connection manager's 404 for what is not a path (UNIMPLEMENTED).
        Some("13") if response.header("grpc-message").is_none() => return None,
        Some("12") if response.header("grpc-message").is_none() && request.not_a_path => return None,
        Some(_) => (None, response.header("grpc-message").unwrap_or_default()),
        None => (Some(response.status), response.body.as_str()),
    };
    if let Ok(fault) = serde_json::from_str::<Value>(body) {
        let Some(code) = fault["code"].as_str() else { return Some("a JSON answer without a code".into()) };
        let message = fault["message"].as_str().unwrap_or_default();
        // A gRPC client reads the fault's HTTP status as Envoy maps it (no override here).
        let grpc_status = grpc.and_then(|grpc| grpc.parse::<u16>().ok());
        let known = catalogue::ALL.iter().map(|id| id.spec()).any(|spec| {
            spec.code.to_string() == code
                && status.is_none_or(|status| spec.status == status)
                && grpc_status.is_none_or(|grpc| grpc == grpc_status_of(spec.status))
                && spec.message == message
        });
        if !known {
            return Some(format!("not a catalogue fault: {} {code} {message:?}", response.status));
        }
        if status == Some(401) && response.header("www-authenticate").is_none() {
            return Some("a 401 without WWW-Authenticate".into());
        }
        if secrets.iter().any(|secret| body.contains(secret)) {
            return Some("a credential in a fault's body".into());
        }
        return None;
    }
    if request.method == "OPTIONS" && (response.status == 200 || response.status == 204) {
        return None;
    }
    // Envoy's codec refuses what is not HTTP before any filter runs (400, empty or its own text
    // for the status: any other 400 without a fault's JSON would pass unseen), and its connection
    // manager a path that is not one (`*`, which only `OPTIONS` may send as a whole) with an
    // empty 404.
    if response.status == 400 && (response.body.is_empty() || response.body == "Bad Request") {
        return None;
    }
    if response.status == 404 && response.body.is_empty() && request.not_a_path {
        return None;
    }
    Some(format!("an answer outside the contract: {} {:?}", response.status, response.body))
}

/// The site of the gateway `config()` configures (one hour windows: `common::envoy_in_one_hour`).
pub fn local_site() -> Site {
    let claims = json!({"iss": ISSUER, "sub": "alice", "azp": "client-1", "exp": now() + 3600});
    let mut scoped = claims.clone();
    scoped["scope"] = Value::from("orders:write");
    Site {
        bases: vec![
            "/open/1.0.0/anything",
            "/open/1.0.0/items",
            "/shop/1.0.0/items/42",
            "/shop/1.0.0/items",
            "/shop/1.0.0/orders",
            "/shop/1.0.0/limited",
            "/shop/1.0.0/x/y",
            "/shop/1.0.0",
            "/shop",
            "/nowhere",
            "/",
        ],
        secured: vec!["/shop"],
        tokens: vec![token(claims), token(scoped)],
        api_key: Some(API_KEY.to_string()),
        healthy: ("/shop/1.0.0/items/1", vec![("apikey".into(), API_KEY.into())]),
    }
}

/// A gateway whose APIs, applications, subscriptions and tiers come from the WSO2 control plane's
/// stand-in (`tests/cp`, WSO2's shapes), its two backends, and its site: tokens of known clients,
/// of a sandbox client, and of clients the control plane does not know.
pub fn control_plane_gateway() -> (super::cp::ControlPlane, Backend, Backend, Envoy, Site) {
    let cp = super::cp::ControlPlane::start();
    let (live, sandbox) = (Backend::start(), Backend::start());
    let config = json!({
        "key_managers": [{"name": "Resident Key Manager", "issuer": ISSUER,
                          "jwks": {"keys": [keys::public_jwk("rsa-a.pem", "k1")]}}],
        "control_plane": {
            "cluster": "cp", "username": "admin", "password": "admin", "refresh_s": 3600, "lookups_per_second": 5,
            "event_apis": "count_connections",
            "endpoints": {"PizzaShackAPI": {"production": "live", "sandbox": "sandbox"},
                          "LegacyAPI:2.0.0": {"production": "live"}, "ChatAPI": {"production": "live"}}
        }
    });
    let envoy = Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("live".into(), live.port), ("sandbox".into(), sandbox.port), ("cp".into(), cp.port)],
            ..Default::default()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while envoy.get("/pizzashack/1.0.0/health").status != 200 {
        assert!(std::time::Instant::now() < deadline, "the control plane's first load within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let client = |azp: &str| token(json!({"iss": ISSUER, "sub": "alice", "azp": azp, "exp": now() + 3600}));
    let mut tokens = vec![client("app1"), client("app1"), client("sandbox-app")];
    tokens.extend((0..12).map(|n| client(&format!("unknown-client-{n}"))));
    let site = Site {
        bases: vec![
            "/pizzashack/1.0.0/menu",
            "/pizzashack/1.0.0/order",
            "/pizzashack/1.0.0/order/7",
            "/pizzashack/1.0.0/health",
            "/pizzashack/menu",
            "/legacy/2.0.0/anything",
            "/unmapped/1.0.0/x",
            "/chat/1.0.0/rooms/1",
            "/nowhere",
        ],
        secured: vec!["/pizzashack", "/legacy", "/chat"],
        tokens,
        api_key: None,
        healthy: ("/pizzashack/1.0.0/health", Vec::new()),
    };
    (cp, live, sandbox, envoy, site)
}
