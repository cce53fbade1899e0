//! What backends and operators get, through a real Envoy (two workers), a real OAuth2 server and
//! real upstreams: the backend JWT (WSO2's `X-JWT-Assertion`, signed RS256 with a key from
//! Envoy's environment) verifies with the public key, carries WSO2's claims, is reused for the
//! same caller and replaces a client's copy; the shipped access log prints WSO2 analytics' fields
//! for allowed, refused, throttled, upstream-failed and BLOCKED-API requests, never a credential;
//! the shipped tag extraction turns the per-API and per-application counters into Prometheus
//! labels, one per name (escaped where a name has other characters than letters and digits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, read_repo_file, request, Backend, Envoy, EnvoySetup, KeyManager, Scratch};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

fn filter_config(km: &KeyManager, encoding: &str) -> String {
    json!({
        "key_managers": [{"name": "oidc", "issuer": km.issuer(), "audiences": ["urn:apim:jwt"],
                          "jwks": {"cluster": "km", "path": "/jwks"}}],
        "policies": {"TwoPerHour": {"requests": 2, "per": "hour"}, "Gold": {"requests": 1000, "per": "minute"}},
        "apis": [
            {"name": "PizzaShackAPI", "context": "/pizzashack", "version": "1.0.0",
             "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/menu"},
                           {"method": "GET", "path": "/scarce", "policy": "TwoPerHour"}]},
            {"name": "DeadEnd", "context": "/deadend", "version": "2.1",
             "endpoints": {"production": "dead"},
             "resources": [{"method": "GET", "path": "/status"}]},
            {"name": "Vieux Café", "context": "/cafe", "version": "1.0", "lifecycle": "BLOCKED",
             "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/menu"}]}
        ],
        "applications": [{"id": "6f0c-app", "name": "ShopApp", "owner": "alice", "policy": "Unlimited",
                          "numeric_id": 12, "attributes": {"region": "eu-west", "tier": "gold"},
                          "client_ids": [{"id": "app1", "key_manager": "oidc"}]}],
        "subscriptions": [{"application": "6f0c-app", "api": "PizzaShackAPI:1.0.0", "tier": "Gold"},
                          {"application": "6f0c-app", "api": "DeadEnd:2.1", "tier": "Gold"}],
        // The backend reads the JWT: no auth-context headers beside it.
        "credentials": {"context_headers": false},
        "backend_jwt": {"algorithm": "RS256", "private_key": {"env": "APIM_TEST_BACKEND_JWT_KEY"},
                        "certificate": read_repo_file("tests/fixtures/keys/rsa-a.crt"),
                        "excluded_claims": ["client_id"]},
        "observability": {"application_stats": 10, "access_log_encoding": encoding}
    })
    .to_string()
}

struct Stack {
    envoy: Envoy,
    live: Backend,
    km: KeyManager,
    log: std::path::PathBuf,
    _scratch: Scratch,
}

fn stack() -> Stack {
    stack_logging("properties", None)
}

/// A stack whose filter hands the access-log fields over as `encoding`, logged in `format`
/// (the shipped format when `None`).
fn stack_logging(encoding: &str, format: Option<String>) -> Stack {
    let km = KeyManager::start();
    let live = Backend::start();
    let scratch = Scratch::new("observability");
    let log = scratch.0.join("access.log");
    let setup = EnvoySetup {
        clusters: vec![("live".into(), live.port), ("km".into(), km.port), ("dead".into(), free_port())],
        env: vec![("APIM_TEST_BACKEND_JWT_KEY".into(), read_repo_file("tests/fixtures/keys/rsa-a.pem"))],
        host_env_keys: vec!["APIM_TEST_BACKEND_JWT_KEY".into()],
        access_log: Some(log.clone()),
        access_log_format: format,
        ..Default::default()
    };
    let envoy = Envoy::start(&filter_config(&km, encoding), setup);
    Stack { envoy, live, km, log, _scratch: scratch }
}

fn verify(jwt: &str) -> Map<String, Value> {
    let key = DecodingKey::from_rsa_pem(read_repo_file("tests/fixtures/keys/rsa-a.pub.pem").as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_issuer(&["wso2.org/products/am"]);
    decode::<Map<String, Value>>(jwt, &key, &validation).expect("the backend JWT verifies with the public key").claims
}

#[test]
fn the_backend_gets_a_signed_wso2_jwt_reused_for_the_same_caller() {
    let stack = stack();
    let token = stack.km.jwt("app1", "app1-secret", "menu:read");
    let bearer = format!("Bearer {token}");
    for _ in 0..3 {
        let response = stack.envoy.send(
            "GET",
            "/pizzashack/1.0.0/menu",
            &[("authorization", &bearer), ("x-jwt-assertion", "forged.by.client"), ("x-apim-tier", "Platinum")],
            None,
        );
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let received = stack.live.requests();
    assert_eq!(received.len(), 3);
    let jwts: Vec<&str> = received.iter().map(|r| r.header("x-jwt-assertion").expect("a backend JWT")).collect();
    assert!(jwts.iter().all(|jwt| *jwt == jwts[0]), "the same caller and API get the same JWT");
    assert_ne!(jwts[0], "forged.by.client", "the client's copy never reaches the backend");
    assert_eq!(received[0].headers.iter().filter(|(name, _)| name.eq_ignore_ascii_case("x-jwt-assertion")).count(), 1);
    assert_eq!(stack.envoy.stat("wasmcustom.apim.backend_jwt.issued"), 1, "issued once for both workers");

    let header = jsonwebtoken::decode_header(jwts[0]).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    // WSO2's x5t: base64url(hex(SHA-1(certificate))); the fingerprint is openssl's (fixture README).
    assert_eq!(header.x5t.as_deref(), Some("MGJhZTVjZjYwOThmYzA5NmYxNDI4ODNkZjUwOGUzYjk4ZDUxNTdhOA=="));
    let claims = verify(jwts[0]);
    let wso2 = |name: &str| claims.get(&format!("http://wso2.org/claims/{name}")).cloned().unwrap_or(Value::Null);
    assert_eq!(wso2("subscriber"), "alice");
    // WSO2's applicationid is the numeric id; the UUID has its own claim.
    assert_eq!(wso2("applicationid"), "12");
    assert_eq!(wso2("applicationUUId"), "6f0c-app");
    assert_eq!(wso2("applicationAttributes"), serde_json::json!({"region": "eu-west", "tier": "gold"}));
    assert_eq!(wso2("applicationname"), "ShopApp");
    assert_eq!(wso2("applicationtier"), "Unlimited");
    assert_eq!(wso2("apiname"), "PizzaShackAPI");
    assert_eq!(wso2("apicontext"), "/pizzashack/1.0.0");
    assert_eq!(wso2("version"), "1.0.0");
    assert_eq!(wso2("tier"), "Gold");
    assert_eq!(wso2("keytype"), "PRODUCTION");
    assert_eq!(wso2("usertype"), "Application_User");
    assert_eq!(wso2("enduser"), "alice@carbon.super", "an application token's end user is its subscriber");
    assert_eq!(wso2("enduserTenantId"), "-1234");
    let caller = verify_caller(&token);
    assert_eq!(claims.get("sub"), caller.get("sub"), "the caller's sub");
    assert_eq!(claims.get("scope"), caller.get("scope"), "caller claims are copied");
    assert!(claims.get("client_id").is_none(), "excluded claims are not copied");
    let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 900, "WSO2's default lifetime");
    assert!(!jwts[0].contains(&token), "the caller's token is not forwarded");
    assert!(received.iter().all(|r| r.header("authorization").is_none()), "credentials are stripped");
    for suffix in ["application-id", "application-name", "subscriber", "key-type", "tier", "end-user"] {
        let name = format!("x-apim-{suffix}");
        assert!(received.iter().all(|r| r.header(&name).is_none()), "no {name} with `context_headers: false`");
    }
    // The gateway's JWKS, as API-M's gateway serves it at `/jwks` (no credentials), holds the key
    // that verifies the JWT; the backend is not asked.
    let jwks = stack.envoy.get("/jwks");
    assert_eq!((jwks.status, jwks.header("content-type")), (200, Some("application/json")), "{}", jwks.body);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.body).unwrap();
    let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    assert!(decode::<Map<String, Value>>(jwts[0], &key, &validation).is_ok(), "the JWKS key verifies the JWT");
    assert_eq!(stack.live.requests().len(), 3, "the JWKS is the gateway's answer");
}

/// The caller's token claims, unverified (the test only compares them).
fn verify_caller(token: &str) -> Map<String, Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The access log's lines, once `count` are written (Envoy writes them asynchronously).
fn log_lines(path: &std::path::Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `format` with Envoy's own `:path` beside the filter's fields (`envoyPath`).
fn with_envoy_path(format: String) -> String {
    let mut format: Value = serde_json::from_str(&format).unwrap();
    format["json_format"]["envoyPath"] = json!("%REQ(:PATH)%");
    format.to_string()
}

#[test]
fn the_access_log_and_the_stats_say_what_happened() {
    access_log_and_stats_say_what_happened(&stack_logging(
        "properties",
        Some(with_envoy_path(common::shipped_access_log_format())),
    ));
}

#[test]
fn the_access_log_says_the_same_from_one_struct_read_with_cel() {
    access_log_and_stats_say_what_happened(&stack_logging(
        "struct",
        Some(with_envoy_path(common::struct_access_log_format())),
    ));
}

fn access_log_and_stats_say_what_happened(stack: &Stack) {
    let token = stack.km.jwt("app1", "app1-secret", "menu:read");
    let bearer = format!("Bearer {token}");
    let send = |path: &str, authorization: &str| {
        stack.envoy.send("GET", path, &[("authorization", authorization), ("user-agent", "observer/1.0")], None)
    };
    assert_eq!(send("/pizzashack/1.0.0/menu?size=large", &bearer).status, 200);
    // A refused request with a guessed API key in the query: Envoy's `:path` and the filter's
    // field lose it, though this API takes no API keys.
    assert_eq!(send("/pizzashack/1.0.0/menu?apikey=guess-SECRET&size=large", "Bearer not-a-valid-token").status, 401);
    common::windows::away_from_window_end(3600, 60);
    assert_eq!(send("/pizzashack/1.0.0/scarce", &bearer).status, 200);
    assert_eq!(send("/pizzashack/1.0.0/scarce", &bearer).status, 200);
    assert_eq!(send("/pizzashack/1.0.0/scarce", &bearer).status, 429);
    assert_eq!(send("/deadend/2.1/status", &bearer).status, 503);
    assert_eq!(send("/cafe/1.0/menu", &bearer).status, 503, "a BLOCKED API");

    let lines = log_lines(&stack.log, 7);
    assert_eq!(lines.len(), 7, "one line per request: {lines:?}");
    for line in &lines {
        let text = line.to_string();
        assert!(
            !text.contains(&token) && !text.contains("not-a-valid-token") && !text.contains("guess-SECRET"),
            "no credential in the log: {text}"
        );
        assert_eq!(line["gatewayType"], "ENVOY");
        assert_eq!(line["userAgentHeader"], "observer/1.0");
        assert_eq!(line["apiMethod"], "GET");
    }
    let field = |line: &Value, name: &str| line[name].as_str().map(String::from);

    let allowed = &lines[0];
    assert_eq!(field(allowed, "apiName").as_deref(), Some("PizzaShackAPI"));
    assert_eq!(field(allowed, "apiVersion").as_deref(), Some("1.0.0"));
    assert_eq!(field(allowed, "apiContext").as_deref(), Some("/pizzashack/1.0.0"));
    assert_eq!(field(allowed, "apiId").as_deref(), Some("PizzaShackAPI:1.0.0"));
    assert_eq!(field(allowed, "apiResourceTemplate").as_deref(), Some("/menu"));
    assert_eq!(field(allowed, "originalPath").as_deref(), Some("/pizzashack/1.0.0/menu?size=large"));
    assert_eq!(field(allowed, "applicationId").as_deref(), Some("6f0c-app"));
    assert_eq!(field(allowed, "applicationName").as_deref(), Some("ShopApp"));
    assert_eq!(field(allowed, "applicationOwner").as_deref(), Some("alice"));
    assert_eq!(field(allowed, "keyType").as_deref(), Some("PRODUCTION"));
    assert_eq!(field(allowed, "tier").as_deref(), Some("Gold"));
    assert_eq!(allowed["proxyResponseCode"], 200);
    assert_eq!(field(allowed, "targetResponseCode").as_deref(), Some("200"));
    assert!(allowed["errorCode"].is_null(), "{allowed}");
    assert!(field(allowed, "destination").is_some_and(|host| host.ends_with(&stack.live.port.to_string())));

    let refused = &lines[1];
    assert_eq!(field(refused, "apiName").as_deref(), Some("PizzaShackAPI"));
    assert_eq!(field(refused, "errorCode").as_deref(), Some("900901"));
    assert_eq!(field(refused, "originalPath").as_deref(), Some("/pizzashack/1.0.0/menu?size=large"));
    assert_eq!(field(refused, "envoyPath").as_deref(), Some("/pizzashack/1.0.0/menu?size=large"));
    assert_eq!(field(refused, "errorType").as_deref(), Some("AUTH"));
    assert_eq!(field(refused, "errorMessage").as_deref(), Some("AUTHENTICATION_FAILURE"));
    assert_eq!(field(refused, "throttleLevel").as_deref(), Some("authentication"));
    assert_eq!(field(refused, "targetResponseCode").as_deref(), Some("-1"));
    assert_eq!(refused["proxyResponseCode"], 401);
    assert!(refused["applicationName"].is_null(), "no application before authentication: {refused}");

    let throttled = &lines[4];
    assert_eq!(field(throttled, "errorCode").as_deref(), Some("900802"));
    assert_eq!(field(throttled, "errorType").as_deref(), Some("THROTTLED"));
    assert_eq!(field(throttled, "errorMessage").as_deref(), Some("RESOURCE_LEVEL_LIMIT_EXCEEDED"));
    assert_eq!(field(throttled, "throttleLevel").as_deref(), Some("resource"));
    assert_eq!(field(throttled, "applicationName").as_deref(), Some("ShopApp"));
    assert_eq!(field(throttled, "apiResourceTemplate").as_deref(), Some("/scarce"));
    assert_eq!(throttled["proxyResponseCode"], 429);

    let failed = &lines[5];
    assert_eq!(field(failed, "apiName").as_deref(), Some("DeadEnd"));
    assert_eq!(field(failed, "apiVersion").as_deref(), Some("2.1"));
    assert_eq!(field(failed, "errorCode").as_deref(), Some("101503"));
    assert_eq!(field(failed, "errorType").as_deref(), Some("TARGET_CONNECTIVITY"));
    assert_eq!(field(failed, "throttleLevel").as_deref(), Some("transport"));
    assert_eq!(field(failed, "targetResponseCode").as_deref(), Some("-1"));
    assert_eq!(field(failed, "applicationName").as_deref(), Some("ShopApp"));
    assert_eq!(failed["proxyResponseCode"], 503);

    let blocked = &lines[6];
    assert_eq!(field(blocked, "apiName").as_deref(), Some("Vieux Café"), "refused at routing, logged with its API");
    assert_eq!(field(blocked, "apiContext").as_deref(), Some("/cafe/1.0"));
    assert_eq!(field(blocked, "errorCode").as_deref(), Some("700700"));
    assert_eq!(field(blocked, "throttleLevel").as_deref(), Some("lifecycle"));
    assert!(blocked["apiResourceTemplate"].is_null(), "no resource matched: {blocked}");

    // The counters, as Prometheus sees them through the shipped tag extraction.
    let prometheus = request(stack.envoy.admin_port, "GET", "/stats/prometheus", &[], None).body;
    let value = |metric: &str, labels: &[(&str, &str)]| -> Option<u64> {
        prometheus.lines().filter(|line| line.starts_with(&format!("{metric}{{"))).find_map(|line| {
            let all = labels.iter().all(|(name, value)| line.contains(&format!("{name}=\"{value}\"")));
            all.then(|| line.rsplit(' ').next().unwrap().parse().unwrap())
        })
    };
    let pizza = [("apim_api", "PizzaShackAPI"), ("apim_api_version", "1.0.0")];
    assert_eq!(value("apim_api_version_allowed", &pizza), Some(3), "{prometheus}");
    let refused_at = |code: &str, level: &str| {
        let mut labels = pizza.to_vec();
        labels.extend([("apim_code", code), ("apim_level", level)]);
        value("apim_api_version_refused_code_level", &labels)
    };
    assert_eq!(refused_at("900901", "authentication"), Some(1));
    assert_eq!(refused_at("900802", "resource"), Some(1));
    let dead =
        [("apim_api", "DeadEnd"), ("apim_api_version", "2.1"), ("apim_code", "101503"), ("apim_level", "transport")];
    assert_eq!(value("apim_api_version_refused_code_level", &dead), Some(1));
    // A name with a space and a non-ASCII letter is one label of its own, escaped.
    let cafe = [
        ("apim_api", "Vieux%20Caf%C3%A9"),
        ("apim_api_version", "1.0"),
        ("apim_code", "700700"),
        ("apim_level", "lifecycle"),
    ];
    assert_eq!(value("apim_api_version_refused_code_level", &cafe), Some(1), "{prometheus}");
    let shop = [("apim_application", "ShopApp"), ("apim_application_owner", "alice")];
    assert_eq!(value("apim_application_owner_allowed", &shop), Some(4));
    assert_eq!(value("apim_application_owner_refused", &shop), Some(2));
}
