//! Key validation through a real Envoy (`--concurrency 2`) with a real key manager (oidc-provider,
//! tests/km): JWT and opaque tokens from the provider, API keys, every authentication and
//! authorization code of the contract, the introspection cache, a key manager outage, JWKS
//! rotation, and the attack catalogue, each attack refused before anything reaches the backend.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{read_repo_file, Backend, Envoy, EnvoySetup, KeyManager, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const LOCAL_ISSUER: &str = "https://local.test";
const API_KEY_ISSUER: &str = "https://apim.test/apikey";
const HMAC_SECRET: &str = "a-32-byte-or-longer-shared-secret-for-hs256";

fn ec_jwk(kid: &str) -> Value {
    let key = EncodingKey::from_ec_pem(read_repo_file("tests/fixtures/keys/ec-p256.pem").as_bytes()).unwrap();
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
    jwk["kid"] = Value::from(kid);
    jwk
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn private_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(read_repo_file(&format!("tests/fixtures/keys/{name}")).as_bytes()).unwrap()
}

fn public_jwk(name: &str, kid: &str) -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&private_key(name), Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = Value::from(kid);
    jwk
}

/// Signs any header and payload text with a fixture key.
fn sign(header: &str, payload: &str, key: &str, algorithm: Algorithm) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &private_key(key), algorithm).unwrap();
    format!("{input}.{signature}")
}

/// A token from the `local` key manager (inline key `local-a`).
fn local_token(claims: Value) -> String {
    sign(r#"{"alg":"RS256","typ":"JWT","kid":"local-a"}"#, &claims.to_string(), "rsa-a.pem", Algorithm::RS256)
}

fn local_claims() -> Value {
    json!({"iss": LOCAL_ISSUER, "aud": "gateway", "exp": now() + 300, "client_id": "local-client", "sub": "local-client", "scope": "menu:read"})
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn filter_config(km: &KeyManager, compatibility: &str) -> String {
    let secured = |name: &str, context: &str, endpoints: Value| {
        json!({"name": name, "context": context, "version": "1.0.0", "endpoints": endpoints,
               "resources": [{"method": "GET", "path": "/*"}]})
    };
    let both = json!({"production": "live", "sandbox": "sandbox"});
    json!({
        "compatibility": compatibility,
        "key_managers": [
            {"name": "oidc", "issuer": km.issuer(), "audiences": ["urn:apim:jwt"],
             "jwks": {"cluster": "km", "path": "/jwks"},
             "introspection": {"cluster": "km", "path": "/token/introspection", "client_id": "gateway",
                               "client_secret": {"env": "APIM_TEST_KM_SECRET"}, "timeout_ms": 10_000}},
            {"name": "local", "issuer": LOCAL_ISSUER, "audiences": ["gateway"],
             "algorithms": ["RS256", "ES256", "HS256"], "hmac_secret": HMAC_SECRET,
             "jwks": {"keys": [public_jwk("rsa-a.pem", "local-a"), ec_jwk("local-ec")]}}
        ],
        "api_key_jwt": {"keys": [public_jwk("rsa-b.pem", "apikey-b")], "issuer": API_KEY_ISSUER},
        "apis": [
            {"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["oauth2", "api_key"],
             "endpoints": both,
             "resources": [
                {"method": "GET", "path": "/items", "scopes": ["menu:read"]},
                {"method": "POST", "path": "/orders", "scopes": ["order:write"]},
                {"method": "GET", "path": "/me", "user_token_only": true},
                {"method": "GET", "path": "/open", "security": []},
                {"method": "GET", "path": "/catalog"}
             ]},
            secured("Blocked", "/blockedsub", both.clone()),
            secured("OnHold", "/onhold", both.clone()),
            secured("ProdBlocked", "/prodblocked", both.clone()),
            {"name": "ProdOnly", "context": "/prodonly", "version": "1.0.0", "security": ["oauth2", "api_key"],
             "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "KeyInQuery", "context": "/query", "version": "1.0.0", "security": ["api_key"],
             "api_key_in_query": true, "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/*"}, {"method": "GET", "path": "/public", "security": []}]}
        ],
        "applications": [
            {"id": "app-1", "name": "ShopApp", "owner": "alice", "client_ids": [{"id": "app1", "key_manager": "oidc"}],
             "api_keys": [{"sha256": sha256_hex("shop-key-1")}]},
            {"id": "app-sb", "name": "SandboxApp", "owner": "bob", "client_ids": [{"id": "sandbox-app", "key_type": "SANDBOX", "key_manager": "oidc"}]},
            {"id": "app-none", "name": "Lonely", "owner": "carol", "client_ids": [{"id": "unsubscribed-app", "key_manager": "oidc"}]},
            {"id": "app-local", "name": "LocalApp", "owner": "dave", "client_ids": [{"id": "local-client", "key_manager": "local"}]}
        ],
        "subscriptions": [
            {"application": "app-1", "api": "Shop:1.0.0", "tier": "Gold"},
            {"application": "app-1", "api": "Blocked:1.0.0", "state": "BLOCKED"},
            {"application": "app-1", "api": "OnHold:1.0.0", "state": "ON_HOLD"},
            {"application": "app-1", "api": "ProdBlocked:1.0.0", "state": "PROD_ONLY_BLOCKED"},
            {"application": "app-1", "api": "KeyInQuery:1.0.0"},
            {"application": "app-sb", "api": "Shop:1.0.0"},
            {"application": "app-sb", "api": "ProdBlocked:1.0.0", "state": "PROD_ONLY_BLOCKED"},
            {"application": "app-local", "api": "Shop:1.0.0"}
        ],
        "policies": {"Gold": {"requests": 1000, "per": "minute"}}
    })
    .to_string()
}

struct Stack {
    envoy: Envoy,
    live: Backend,
    sandbox: Backend,
    km: KeyManager,
}

fn stack_with(compatibility: &str) -> Stack {
    let km = KeyManager::start();
    let live = Backend::start();
    let sandbox = Backend::start();
    let setup = EnvoySetup {
        clusters: vec![("live".into(), live.port), ("sandbox".into(), sandbox.port), ("km".into(), km.port)],
        // The gateway's client secret reaches the filter from Envoy's environment, never its config.
        env: vec![("APIM_TEST_KM_SECRET".into(), "gateway-secret".into())],
        host_env_keys: vec!["APIM_TEST_KM_SECRET".into()],
        ..Default::default()
    };
    let envoy = Envoy::start(&filter_config(&km, compatibility), setup);
    Stack { envoy, live, sandbox, km }
}

fn stack() -> Stack {
    stack_with("apim")
}

fn bearer(envoy: &Envoy, method: &str, path: &str, token: &str) -> Response {
    envoy.send(method, path, &[("authorization", &format!("Bearer {token}"))], None)
}

fn assert_fault(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "body: {}", response.body);
    assert_eq!(response.json()["code"], code, "body: {}", response.body);
}

#[test]
fn a_jwt_from_the_provider_reaches_the_backend_with_the_auth_context_and_no_credentials() {
    let stack = stack();
    let token = stack.km.jwt("app1", "app1-secret", "menu:read");
    let response = bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &token);
    assert_eq!(response.status, 200, "{}", response.body);
    let received = stack.live.requests();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.header("authorization"), None, "credentials are stripped");
    assert_eq!(request.header("x-apim-application-id"), Some("app-1"));
    assert_eq!(request.header("x-apim-application-name"), Some("ShopApp"));
    assert_eq!(request.header("x-apim-subscriber"), Some("alice"));
    assert_eq!(request.header("x-apim-key-type"), Some("PRODUCTION"));
    assert_eq!(request.header("x-apim-tier"), Some("Gold"));
    assert!(stack.envoy.log().find(&token).is_none(), "the token never reaches Envoy's log");
}

#[test]
fn an_opaque_token_is_introspected_once_and_then_served_from_the_cache() {
    let stack = stack();
    let token = stack.km.opaque("app1", "app1-secret", "menu:read");
    for _ in 0..4 {
        assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &token).status, 200);
    }
    assert_eq!(stack.km.introspections(), 1, "one introspection for four requests over two workers");
    assert_eq!(stack.live.requests().len(), 4);
}

/// A burst of requests with one new opaque token: a worker asks the key manager once, and its
/// other requests with that token wait for the answer (without it, each request made a call).
#[test]
fn a_burst_with_a_new_opaque_token_is_introspected_once_per_worker() {
    let stack = stack();
    let token = stack.km.opaque("app1", "app1-secret", "menu:read");
    let start = std::sync::Barrier::new(24);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..24)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &token).status
                })
            })
            .collect();
        requests.into_iter().map(|request| request.join().unwrap()).collect()
    });
    assert_eq!(statuses, [200; 24]);
    let calls = stack.km.introspections();
    assert!((1..=2).contains(&calls), "{calls} introspections for 24 requests over two workers");
    assert_eq!(stack.live.requests().len(), 24);
}

#[test]
fn secrets_given_by_reference_work_and_never_appear_in_envoys_config_dump_or_log() {
    let stack = stack();
    let token = stack.km.opaque("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &token).status, 200, "introspection authenticated");
    let dump = common::request(stack.envoy.admin_port, "GET", "/config_dump", &[], None).body;
    assert!(dump.contains("APIM_TEST_KM_SECRET"), "the dump names the variable");
    assert!(!dump.contains("gateway-secret"), "the secret is not in the config dump");
    assert!(!stack.envoy.log().contains("gateway-secret"), "nor in the log");
    assert!(
        !stack.envoy.log().contains("introspection.client_secret` holds a secret inline"),
        "no inline-secret warning for the referenced secret"
    );
    assert!(
        stack.envoy.log().contains("key_managers[1].hmac_secret` holds a secret inline"),
        "the inline HMAC secret of the other key manager is warned about"
    );
}

#[test]
fn missing_and_invalid_credentials() {
    let stack = stack();
    let response = stack.envoy.get("/shop/1.0.0/items");
    assert_fault(&response, 401, "900902");
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#
        )
    );
    assert!(response.json()["description"].as_str().unwrap().contains("'Authorization : Bearer ACCESS_TOKEN'"));
    // API-M finds no token without a `Bearer` segment and a value after it: 900902, as for no
    // header (seeds 001 and 002: "Accessing an API without the Authorization: Bearer header").
    let cases = [
        ("Bearer not-a-real-token", "900901"),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "900902"),
        ("Bearer", "900902"),
        ("Bearer a b", "900901"),
    ];
    for (authorization, code) in cases {
        let response = stack.envoy.send("GET", "/shop/1.0.0/items", &[("authorization", authorization)], None);
        assert_fault(&response, 401, code);
        assert_eq!(
            response.header("www-authenticate"),
            Some(
                r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#
            )
        );
    }
    // The open resource needs nothing.
    assert_eq!(stack.envoy.get("/shop/1.0.0/open").status, 200);
    assert_eq!(stack.live.requests().len(), 1);
}

#[test]
fn every_authorization_code_arises_from_its_case() {
    let stack = stack();
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    let sandbox = stack.km.jwt("sandbox-app", "sandbox-secret", "menu:read");
    let lonely = stack.km.jwt("unsubscribed-app", "unsubscribed-secret", "menu:read");

    assert_fault(&bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &lonely), 403, "900908");
    assert_fault(&bearer(&stack.envoy, "GET", "/blockedsub/1.0.0/x", &app1), 401, "900907");
    assert_fault(&bearer(&stack.envoy, "GET", "/onhold/1.0.0/x", &app1), 401, "900909");
    assert_fault(&bearer(&stack.envoy, "GET", "/prodblocked/1.0.0/x", &app1), 401, "900907");

    let response = bearer(&stack.envoy, "POST", "/shop/1.0.0/orders", &app1);
    assert_fault(&response, 403, "900910");
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="WSO2 API Manager", error="insufficient_scope""#)
    );

    let response = bearer(&stack.envoy, "GET", "/shop/1.0.0/me", &app1);
    assert_fault(&response, 401, "900905");

    // A sandbox key on an API without a sandbox endpoint (a configuration cannot subscribe a
    // sandbox-only application there: this is a WSO2 JWT API key that says it is a sandbox key).
    let sandbox_key = sandbox_jwt_api_key("ProdOnly", "/prodonly/1.0.0");
    let response = stack.envoy.send("GET", "/prodonly/1.0.0/x", &[("apikey", &sandbox_key)], None);
    assert_fault(&response, 403, "900901");
    assert_eq!(response.json()["description"], "Sandbox key offered to the API with no sandbox endpoint");

    assert!(stack.live.requests().is_empty() && stack.sandbox.requests().is_empty(), "nothing got through");

    // Sandbox keys reach the sandbox endpoint; PROD_ONLY_BLOCKED lets them through.
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &sandbox).status, 200);
    assert_eq!(bearer(&stack.envoy, "GET", "/prodblocked/1.0.0/x", &sandbox).status, 200);
    assert_eq!(stack.sandbox.requests().len(), 2);
    assert_eq!(stack.sandbox.requests()[0].header("x-apim-key-type"), Some("SANDBOX"));
    assert!(stack.live.requests().is_empty());

    // A user token passes the user-only resource and names the end user.
    let user = local_token(json!({"iss": LOCAL_ISSUER, "aud": "gateway", "exp": now() + 300,
        "client_id": "local-client", "sub": "bob@carbon.super", "aut": "APPLICATION_USER", "scope": "menu:read"}));
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/me", &user).status, 200);
    assert_eq!(stack.live.requests()[0].header("x-apim-end-user"), Some("bob@carbon.super"));
}

#[test]
fn a_stopped_key_manager_answers_900900_for_new_opaque_tokens_and_cached_ones_still_work() {
    let mut stack = stack();
    let cached = stack.km.opaque("app1", "app1-secret", "menu:read");
    let fresh = stack.km.opaque("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &cached).status, 200);
    stack.km.stop();
    let response = bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &fresh);
    assert_fault(&response, 500, "900900");
    assert_eq!(response.header("www-authenticate"), None, "a key manager outage is not a 401");
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &cached).status, 200);
}

#[test]
fn a_rotated_jwks_is_picked_up_without_restarting_envoy() {
    let mut stack = stack();
    let before = stack.km.jwt("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &before).status, 200);
    let port = stack.km.port;
    let scratch = common::Scratch::new("km-rotated");
    stack.km.stop();
    let rotated = KeyManager::start_at(port, &scratch.0.join("new-jwks.json"));
    let after = rotated.jwt("app1", "app1-secret", "menu:read");
    let kid = |token: &str| -> Value {
        let header = URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"].clone()
    };
    assert_ne!(kid(&before), kid(&after), "the provider rotated its key");
    // Unknown kids trigger a fetch at most every 5 s per worker: allow a few of those windows.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &after);
        if response.status == 200 {
            break;
        }
        assert_fault(&response, 401, "900901");
        assert!(Instant::now() < deadline, "the rotated key was not picked up");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The attack catalogue (PEERS.md), through Envoy: each is 401 + 900901 and reaches nothing.
#[test]
fn every_attack_is_refused_with_900901_and_nothing_reaches_the_backend() {
    let stack = stack();
    assert_eq!(
        bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &local_token(local_claims())).status,
        200,
        "the honest token works"
    );
    // HS256 is allowed for this issuer, with its configured secret: an honest HS256 token works.
    let honest_hs = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(local_claims().to_string())
        );
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(HMAC_SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{signature}")
    };
    assert_eq!(
        bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &honest_hs).status,
        200,
        "the honest HS256 token works"
    );
    let claims = local_claims().to_string();
    let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);
    let hs256_with_public_key = {
        let input = format!("{}.{}", b64(r#"{"alg":"HS256","kid":"local-a"}"#), b64(&claims));
        let public_pem = read_repo_file("tests/fixtures/keys/rsa-a.pub.pem");
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(public_pem.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{signature}")
    };
    let with_claims = |patch: Value| {
        let mut value = local_claims();
        for (key, patch_value) in patch.as_object().unwrap() {
            value[key] = patch_value.clone();
        }
        local_token(value)
    };
    let good = local_token(local_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let attacks: Vec<(&str, String)> = vec![
        ("alg none", format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims))),
        ("alg NoNe", format!("{}.{}.", b64(r#"{"alg":"NoNe"}"#), b64(&claims))),
        ("HS256 signed with the RSA public key", hs256_with_public_key),
        (
            "embedded jwk",
            sign(
                &json!({"alg": "RS256", "jwk": public_jwk("rsa-b.pem", "x")}).to_string(),
                &claims,
                "rsa-b.pem",
                Algorithm::RS256,
            ),
        ),
        (
            "jku",
            sign(
                r#"{"alg":"RS256","kid":"local-a","jku":"http://127.0.0.1:1/keys"}"#,
                &claims,
                "rsa-a.pem",
                Algorithm::RS256,
            ),
        ),
        (
            "x5u",
            sign(
                r#"{"alg":"RS256","kid":"local-a","x5u":"http://127.0.0.1:1/cert"}"#,
                &claims,
                "rsa-a.pem",
                Algorithm::RS256,
            ),
        ),
        (
            "kid traversal",
            sign(r#"{"alg":"RS256","kid":"../../../../dev/null"}"#, &claims, "rsa-b.pem", Algorithm::RS256),
        ),
        (
            "kid injection",
            sign(r#"{"alg":"RS256","kid":"x' UNION SELECT 'k"}"#, &claims, "rsa-b.pem", Algorithm::RS256),
        ),
        (
            "psychic ECDSA",
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"ES256","kid":"local-a"}"#),
                b64(&claims),
                URL_SAFE_NO_PAD.encode([0u8; 64])
            ),
        ),
        (
            "unknown crit",
            sign(
                r#"{"alg":"RS256","kid":"local-a","crit":["x-ext"],"x-ext":1}"#,
                &claims,
                "rsa-a.pem",
                Algorithm::RS256,
            ),
        ),
        ("expired beyond skew", with_claims(json!({"exp": now() - 120}))),
        ("not yet valid", with_claims(json!({"nbf": now() + 600}))),
        ("no exp", local_token(json!({"iss": LOCAL_ISSUER, "aud": "gateway", "client_id": "local-client"}))),
        ("wrong audience", with_claims(json!({"aud": "someone-else"}))),
        ("unknown issuer", with_claims(json!({"iss": "https://evil.example"}))),
        ("signed by a stranger", sign(r#"{"alg":"RS256","kid":"local-a"}"#, &claims, "rsa-b.pem", Algorithm::RS256)),
        (
            "duplicate alg",
            sign(r#"{"alg":"RS256","alg":"none","kid":"local-a"}"#, &claims, "rsa-a.pem", Algorithm::RS256),
        ),
        (
            "duplicate exp",
            local_token_raw(&format!(
                r#"{{"iss":"{LOCAL_ISSUER}","aud":"gateway","client_id":"local-client","exp":1,"exp":{}}}"#,
                now() + 300
            )),
        ),
        ("padded base64url", format!("{}=.{}.{}", parts[0], parts[1], parts[2])),
        ("oversized", format!("{}.{}.{}", parts[0], "A".repeat(10_000), parts[2])),
        (
            "nested",
            sign(
                r#"{"alg":"RS256","kid":"local-a","cty":"JWT"}"#,
                &json!({"jwt": good}).to_string(),
                "rsa-a.pem",
                Algorithm::RS256,
            ),
        ),
    ];
    for (name, token) in &attacks {
        let response = bearer(&stack.envoy, "GET", "/shop/1.0.0/items", token);
        assert_eq!(response.status, 401, "{name}: {}", response.body);
        assert_eq!(response.json()["code"], "900901", "{name}");
        assert!(
            !response.body.contains("alg") && !response.body.contains("kid"),
            "{name}: the body reveals nothing: {}",
            response.body
        );
    }
    // Each refusal is counted by its reason in Envoy's stats (flushed per worker: poll).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.envoy.stat("wasmcustom.apim.auth.refused.embedded_key") < 1
        || stack.envoy.stat("wasmcustom.apim.auth.refused.bad_signature") < 1
    {
        assert!(Instant::now() < deadline, "refusal counters by reason");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!stack.envoy.log().contains(&good), "no token in the log");
    // A token in the query string is not a credential unless configured.
    let response = stack.envoy.get(&format!("/shop/1.0.0/items?access_token={good}"));
    assert_fault(&response, 401, "900902");
    assert_eq!(stack.live.requests().len(), 2, "only the honest requests reached the backend");
}

/// A WSO2 JWT API key of type SANDBOX, subscribed to one API.
fn sandbox_jwt_api_key(api: &str, context: &str) -> String {
    let claims = json!({"iss": API_KEY_ISSUER, "sub": "admin", "exp": now() + 300, "keytype": "SANDBOX",
        "application": {"id": 9, "uuid": "jwt-sandbox-app", "name": "JwtSandbox", "owner": "erin", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": api, "context": context, "version": "1.0.0", "subscriptionTier": "Unlimited"}]});
    sign(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256)
}

fn local_token_raw(payload: &str) -> String {
    sign(r#"{"alg":"RS256","kid":"local-a"}"#, payload, "rsa-a.pem", Algorithm::RS256)
}

#[test]
fn microgateway_compatibility_uses_its_codes() {
    let stack = stack_with("microgateway");
    let expired =
        local_token(json!({"iss": LOCAL_ISSUER, "aud": "gateway", "exp": now() - 120, "client_id": "local-client"}));
    assert_fault(&bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &expired), 401, "900903");
    let response = stack.envoy.send("GET", "/shop/1.0.0/items", &[("authorization", "Basic YTpi")], None);
    assert_fault(&response, 401, "900917");
    let response = stack.envoy.send("GET", "/shop/1.0.0/items", &[("authorization", "Bearer")], None);
    assert_fault(&response, 401, "900912");
    let inactive = "never-issued-opaque-token";
    assert_fault(&bearer(&stack.envoy, "GET", "/shop/1.0.0/items", inactive), 401, "900904");
}

#[test]
fn api_keys_opaque_in_header_and_query_and_wso2_jwt_keys() {
    let stack = stack();
    let response = stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", "shop-key-1")], None);
    assert_eq!(response.status, 200, "{}", response.body);
    // API keys carry no scopes: a scoped resource refuses them.
    assert_fault(&stack.envoy.send("GET", "/shop/1.0.0/items", &[("apikey", "shop-key-1")], None), 403, "900910");
    let request = &stack.live.requests()[0];
    assert_eq!(request.header("apikey"), None, "the key is stripped");
    assert_eq!(request.header("x-apim-application-id"), Some("app-1"));
    assert_fault(&stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", "shop-key-2")], None), 401, "900901");
    // A refused bearer token gives way to the API key beside it (WSO2's authenticator chain), and
    // neither credential goes upstream; a refused key answers with its own fault (the token's is 900901).
    let both = [("authorization", "Bearer not-a-token"), ("apikey", "shop-key-1")];
    let response = stack.envoy.send("GET", "/shop/1.0.0/catalog", &both, None);
    assert_eq!(response.status, 200, "{}", response.body);
    let request = stack.live.requests().pop().unwrap();
    assert_eq!((request.header("authorization"), request.header("apikey")), (None, None));
    assert_eq!(request.header("x-apim-application-id"), Some("app-1"));
    assert_fault(&stack.envoy.send("GET", "/shop/1.0.0/items", &both, None), 403, "900910");

    let response = stack.envoy.get("/query/1.0.0/report?apikey=shop-key-1&month=5");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(stack.live.requests().pop().unwrap().path, "/report?month=5", "the key is removed from the query");
    assert_fault(&stack.envoy.get("/shop/1.0.0/items?apikey=shop-key-1"), 401, "900902");
    // On an open resource of an API that takes keys, a key in the query is still a credential:
    // it never reaches the backend (or its access log), in any spelling of its name.
    let response = stack.envoy.get("/query/1.0.0/public?apikey=shop-key-1&x=1&api%6Bey=shop-key-1");
    assert_eq!(response.status, 200, "{}", response.body);
    let public = stack.live.requests().last().cloned().unwrap();
    assert_eq!(public.path, "/public?x=1");

    let jwt_key = |subscribed: Value| {
        let claims = json!({"iss": API_KEY_ISSUER, "sub": "admin", "exp": now() + 300, "keytype": "PRODUCTION",
            "application": {"id": 7, "uuid": "jwt-app", "name": "JwtApp", "owner": "erin", "tier": "Unlimited"},
            "subscribedAPIs": subscribed});
        sign(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256)
    };
    let key = jwt_key(
        json!([{"name": "Shop", "context": "/shop/1.0.0", "version": "1.0.0", "publisher": "admin", "subscriptionTier": "Gold"}]),
    );
    let response = stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", &key)], None);
    assert_eq!(response.status, 200, "{}", response.body);
    let request = stack.live.requests().pop().unwrap();
    assert_eq!(request.header("x-apim-application-id"), Some("jwt-app"));
    assert_eq!(request.header("x-apim-tier"), Some("Gold"), "the subscribed API's tier");
    assert_fault(&stack.envoy.send("GET", "/query/1.0.0/x", &[("apikey", &key)], None), 403, "900908");
    // WSO2's key restrictions, on the client's address as Envoy has it (this test's 127.0.0.1).
    let restricted = |ip: &str| {
        let claims = json!({"iss": API_KEY_ISSUER, "exp": now() + 300, "token_type": "apiKey",
            "application": {"uuid": "jwt-app", "name": "JwtApp", "owner": "erin", "tier": "Unlimited"},
            "permittedIP": ip, "permittedReferer": "https://app.example/*",
            "subscribedAPIs": [{"name": "Shop", "context": "/shop/1.0.0", "version": "1.0.0"}]});
        sign(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256)
    };
    let from_here = restricted("10.0.0.0/8, 127.0.0.1/32, ::1");
    let referer = ("referer", "https://app.example/page");
    let response = stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", &from_here), referer], None);
    assert_eq!(response.status, 200, "{}", response.body);
    let refused = stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", &from_here)], None);
    assert_fault(&refused, 403, "900908");
    assert!(refused.body.contains("Access forbidden for the invocations"), "{}", refused.body);
    let elsewhere = restricted("192.0.2.0/24");
    assert_fault(
        &stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", &elsewhere), referer], None),
        403,
        "900908",
    );
    let forged = sign(
        &json!({"alg": "RS256", "kid": "apikey-b"}).to_string(),
        &json!({"iss": API_KEY_ISSUER, "exp": now() + 300, "keytype": "PRODUCTION",
        "application": {"uuid": "x"}, "subscribedAPIs": []})
        .to_string(),
        "rsa-a.pem",
        Algorithm::RS256,
    );
    assert_fault(&stack.envoy.send("GET", "/shop/1.0.0/catalog", &[("apikey", &forged)], None), 401, "900901");
}

/// A key manager that never answers (timeout) or answers 5xx: 900900 (500), never 401.
#[test]
fn a_key_manager_that_times_out_or_fails_answers_900900() {
    let silent = common::Silent::start();
    let failing = Backend::start();
    let live = Backend::start();
    let config = |km_path: &str, cluster: &str| {
        json!({
            "key_managers": [{"name": "km", "issuer": "https://km.test",
                "introspection": {"cluster": cluster, "path": km_path, "client_id": "gateway", "client_secret": "s", "timeout_ms": 500}}],
            "apis": [{"name": "S", "context": "/s", "version": "1", "endpoints": {"production": "live"},
                      "resources": [{"method": "GET", "path": "/*"}]}],
            "applications": [{"id": "a", "name": "A", "client_ids": [{"id": "c"}]}],
            "subscriptions": [{"application": "a", "api": "S:1"}]
        })
        .to_string()
    };
    let clusters = vec![
        ("live".to_string(), live.port),
        ("silent".to_string(), silent.port),
        ("failing".to_string(), failing.port),
    ];
    for (path, cluster) in [("/introspect", "silent"), ("/status/503", "failing"), ("/status/500", "failing")] {
        let envoy =
            Envoy::start(&config(path, cluster), EnvoySetup { clusters: clusters.clone(), ..Default::default() });
        let response = bearer(&envoy, "GET", "/s/1/x", "some-opaque-token");
        assert_fault(&response, 500, "900900");
        assert_eq!(response.header("www-authenticate"), None, "{cluster}{path}");
    }
    assert!(live.requests().is_empty());
    assert_eq!(failing.requests().len(), 2, "the key manager was asked");
}

/// A key manager outage under load (its introspection cluster misnamed, or its endpoint failing):
/// every request gets 900900, and Envoy's log gets a line per worker and kind, not one per request.
#[test]
fn a_key_manager_outage_under_load_logs_a_line_not_one_per_request() {
    let failing = Backend::start();
    let config = |cluster: &str| {
        json!({
            "key_managers": [{"name": "km", "issuer": "https://km.test",
                "introspection": {"cluster": cluster, "path": "/status/503", "client_id": "gateway", "client_secret": "s"}}],
            "apis": [{"name": "S", "context": "/s", "version": "1", "endpoints": {"production": "failing"},
                      "resources": [{"method": "GET", "path": "/*"}]}]
        })
        .to_string()
    };
    let clusters = vec![("failing".to_string(), failing.port)];
    for (cluster, line) in
        [("no_such_cluster", "cannot call cluster `no_such_cluster`"), ("failing", "introspection usably")]
    {
        let envoy = Envoy::start(&config(cluster), EnvoySetup { clusters: clusters.clone(), ..Default::default() });
        for _ in 0..40 {
            assert_fault(&bearer(&envoy, "GET", "/s/1/x", "some-opaque-token"), 500, "900900");
        }
        let log = envoy.log();
        let lines = log.matches(line).count();
        assert!((1..=2).contains(&lines), "{cluster}: {lines} lines of `{line}` for 40 requests (2 workers)");
    }
}

/// A flood of made-up opaque tokens against `introspection.calls_per_second` (1 here): beyond it a
/// token the caches do not hold answers 900900 without a call, so the key manager sees at most the
/// budget (two workers together); a real token is introspected again the next second.
#[test]
fn introspection_beyond_its_calls_per_second_answers_900900_without_calling_the_key_manager() {
    let km = KeyManager::start();
    let live = Backend::start();
    let config = json!({
        "key_managers": [{"name": "oidc", "issuer": km.issuer(),
            "introspection": {"cluster": "km", "path": "/token/introspection", "client_id": "gateway",
                              "client_secret": {"env": "APIM_TEST_KM_SECRET"}, "calls_per_second": 1}}],
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "endpoints": {"production": "live"},
                  "resources": [{"method": "GET", "path": "/items"}]}],
        "applications": [{"id": "app-1", "name": "ShopApp", "owner": "alice",
                          "client_ids": [{"id": "app1", "key_manager": "oidc"}]}],
        "subscriptions": [{"application": "app-1", "api": "Shop:1.0.0"}]
    });
    let setup = EnvoySetup {
        clusters: vec![("live".into(), live.port), ("km".into(), km.port)],
        env: vec![("APIM_TEST_KM_SECRET".into(), "gateway-secret".into())],
        host_env_keys: vec!["APIM_TEST_KM_SECRET".into()],
        ..Default::default()
    };
    let envoy = Envoy::start(&config.to_string(), setup);
    let started = Instant::now();
    let codes: Vec<String> = (0..6)
        .map(|index| {
            let response = bearer(&envoy, "GET", "/shop/1.0.0/items", &format!("made-up-token-{index}"));
            response.json()["code"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let seconds = started.elapsed().as_secs() as usize;
    let called = km.introspections() as usize;
    // One call a second of the clock: the six requests, `seconds` and a fraction long, touch
    // `seconds` + 2 of its seconds at most.
    assert!(called <= seconds + 2, "{called} calls in {seconds} s: {codes:?}");
    assert_eq!(codes.iter().filter(|code| *code == "900901").count(), called, "introspected: inactive");
    assert_eq!(codes.iter().filter(|code| *code == "900900").count(), 6 - called, "{codes:?}");
    if seconds < 4 {
        assert!(called < 6, "some were refused: {codes:?}");
        assert!(envoy.log().contains("more than 1 calls a second"), "warned");
    }
    assert!(live.requests().is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    let token = km.opaque("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&envoy, "GET", "/shop/1.0.0/items", &token).status, 200, "the next second's call");
}

/// JWKS that cannot be had (the endpoint down, slow, failing, or its cluster misnamed) are a key
/// manager outage: 900900 (500), never 401. So is a token with an unknown `kid` once the key
/// manager stopped answering.
#[test]
fn jwks_that_cannot_be_fetched_answer_900900() {
    let silent = common::Silent::start();
    let failing = Backend::start();
    let live = Backend::start();
    let closed = common::free_port();
    let config = |cluster: &str, path: &str| {
        json!({
            "key_managers": [{"name": "km", "issuer": LOCAL_ISSUER,
                "jwks": {"cluster": cluster, "path": path, "timeout_ms": 500}}],
            "apis": [{"name": "S", "context": "/s", "version": "1", "endpoints": {"production": "live"},
                      "resources": [{"method": "GET", "path": "/*"}]}],
            "applications": [{"id": "a", "name": "A", "client_ids": [{"id": "local-client"}]}],
            "subscriptions": [{"application": "a", "api": "S:1"}]
        })
        .to_string()
    };
    let clusters = vec![
        ("live".to_string(), live.port),
        ("silent".to_string(), silent.port),
        ("failing".to_string(), failing.port),
        ("closed".to_string(), closed),
    ];
    let token = local_token(local_claims());
    for (cluster, path) in
        [("silent", "/jwks"), ("failing", "/status/503"), ("closed", "/jwks"), ("no_such_cluster", "/jwks")]
    {
        let envoy =
            Envoy::start(&config(cluster, path), EnvoySetup { clusters: clusters.clone(), ..Default::default() });
        let response = bearer(&envoy, "GET", "/s/1/x", &token);
        assert_fault(&response, 500, "900900");
        assert_eq!(response.header("www-authenticate"), None, "{cluster}: an outage is not a 401");
    }
    assert!(live.requests().is_empty());
}

#[test]
fn an_unknown_kid_while_the_key_manager_is_down_is_900900() {
    let mut stack = stack();
    let before = stack.km.jwt("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &before).status, 200);
    let issuer = stack.km.issuer();
    stack.km.stop();
    // A token signed by a key the gateway has never seen (as after a rotation), once the gateway
    // may fetch again (5 s after its last fetch): the fetch fails, so the check cannot be made.
    std::thread::sleep(Duration::from_millis(5_500));
    let claims =
        json!({"iss": issuer, "aud": "urn:apim:jwt", "exp": now() + 300, "client_id": "app1", "scope": "menu:read"});
    let rotated = sign(r#"{"alg":"RS256","kid":"rotated-away"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256);
    let response = bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &rotated);
    assert_fault(&response, 500, "900900");
    // The token whose key is known still works from the keys at hand.
    assert_eq!(bearer(&stack.envoy, "GET", "/shop/1.0.0/items", &before).status, 200);
}
