//! JWT API keys through the stream: what of the request their restrictions read reaches them.

use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use jsonwebtoken::Algorithm;

/// A configuration whose API `Shop` takes WSO2 JWT API keys signed with `rsa-b.pem`.
fn shop_config() -> Rc<Config> {
    let json = serde_json::json!({
        "api_key_jwt": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]},
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
                  "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/*"}]}]
    });
    Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap())
}

/// A JWT API key of application `JwtApp` subscribed to `Shop`, with `extra` claims.
fn jwt_api_key(extra: serde_json::Value) -> String {
    let mut claims = serde_json::json!({"iss": "https://apim", "sub": "admin", "keytype": "PRODUCTION",
        "token_type": "apiKey",
        "application": {"uuid": "jwt-app", "name": "JwtApp", "owner": "erin", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": "Shop", "context": "/shop/1.0.0", "version": "1.0.0", "subscriptionTier": "Unlimited"}]});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256)
}

/// WSO2 (`ApiKeyAuthenticator.validateAPIKeyRestrictions`) refuses a JWT API key whose
/// `permittedIP` list does not hold the client (`source.address`, as blocking conditions read it),
/// or whose `permittedReferer` list the `Referer` (absent = refused) does not match: 900908. The
/// stream hands both to authorization.
#[test]
fn a_jwt_api_keys_permitted_ip_and_referer_are_enforced() {
    let config = shop_config();
    let key = jwt_api_key(serde_json::json!({"permittedIP": "192.0.2.1", "permittedReferer": "https://app.example/*"}));
    let cases = [
        ("198.51.100.7:5555", Some("https://app.example/x"), false),
        ("192.0.2.1:5555", None, false),
        ("192.0.2.1:5555", Some("https://evil.example/"), false),
        ("192.0.2.1:5555", Some("https://app.example/x"), true),
    ];
    for (address, referer, allowed) in cases {
        let mut pairs = vec![(":method", "GET"), (":path", "/shop/1.0.0/items"), ("apikey", key.as_str())];
        if let Some(referer) = referer {
            pairs.push(("referer", referer));
        }
        let mut host = FakeHost::request(&pairs);
        host.now = 1_000;
        host.properties.insert("source.address".into(), address.as_bytes().to_vec());
        let mut stream = stream(Rc::clone(&config));
        let flow = stream.on_request_headers(&mut host, true);
        if allowed {
            assert_eq!(flow, Flow::Continue, "{address} {referer:?}");
            assert_eq!(host.req("x-apim-cluster"), "prod");
        } else {
            assert_eq!(flow, Flow::Answered, "{address} {referer:?}");
            assert_eq!(host.counted, vec![900908]);
            let body = String::from_utf8(host.sent.unwrap().2).unwrap();
            assert!(body.contains("Access forbidden for the invocations"), "{body}");
        }
    }
}

/// WSO2's gateway keeps a verified API key in its API key cache (`ApiKeyAuthenticator`,
/// `getGatewayApiKeyCache`) and checks its signature once, as the filter does for bearer tokens:
/// a client's requests with one JWT API key cost one signature check (in wasm about a
/// millisecond of RS256), not one each. The key is never taken past its `exp`, and its
/// restrictions are still checked on every request.
#[test]
fn a_jwt_api_key_is_verified_once_per_worker_and_never_past_its_exp() {
    use crate::signatures::testing::verifications;
    let config = shop_config();
    let key = jwt_api_key(serde_json::json!({"permittedIP": "192.0.2.1", "exp": 2_000}));
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let request = |now: u64, address: &str| {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/shop/1.0.0/items"), ("apikey", &key)]);
        host.now = now;
        host.properties.insert("source.address".into(), address.as_bytes().to_vec());
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        (stream.on_request_headers(&mut host, true), host.counted)
    };
    let before = verifications();
    for _ in 0..50 {
        assert_eq!(request(1_000, "192.0.2.1:5555"), (Flow::Continue, vec![]));
    }
    assert_eq!(verifications() - before, 1, "50 requests with one key: its signature checked once");
    // From the cache, the key's restrictions still hold, and its `exp` still ends it.
    assert_eq!(request(1_000, "198.51.100.7:5555"), (Flow::Answered, vec![900908]));
    assert_eq!(request(2_100, "192.0.2.1:5555"), (Flow::Answered, vec![900901]));
}

/// WSO2's backend JWT for a JWT API key (`GatewayUtils.constructJWTContent`, its
/// `subscribedAPI` branch, and `APIMgtGatewayJWTGeneratorImpl.populateCustomClaims`): the
/// `applicationid` is the key's numeric `application.id`, and the key's own claims but the
/// restricted and excluded ones are copied, as a bearer token's are.
#[test]
fn a_jwt_api_keys_backend_jwt_names_its_numeric_application_and_copies_its_claims() {
    let json = serde_json::json!({
        "api_key_jwt": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]},
        "backend_jwt": {"algorithm": "none", "excluded_claims": ["permittedReferer"]},
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
                  "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/*"}]}]
    });
    let config = Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap());
    let mut claims = serde_json::json!({"iss": "https://apim", "sub": "admin", "keytype": "PRODUCTION",
        "token_type": "apiKey", "permittedIP": "", "permittedReferer": "", "team": "checkout",
        "jti": "key-1", "tierInfo": {"Unlimited": {}},
        "application": {"id": 42, "uuid": "jwt-app", "name": "JwtApp", "owner": "erin", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": "Shop", "context": "/shop/1.0.0", "version": "1.0.0", "subscriptionTier": "Gold"}]});
    let key =
        sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256);
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/shop/1.0.0/items"), ("apikey", &key)]);
    host.now = 1_000;
    assert_eq!(stream(Rc::clone(&config)).on_request_headers(&mut host, true), Flow::Continue);
    use base64::Engine;
    let jwt = host.req("x-jwt-assertion");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap();
    let sent: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&payload).unwrap();
    assert_eq!(sent["http://wso2.org/claims/applicationid"], "42");
    assert_eq!(sent["http://wso2.org/claims/applicationname"], "JwtApp");
    assert_eq!(sent["http://wso2.org/claims/tier"], "Gold");
    for copied in ["keytype", "token_type", "permittedIP", "team"] {
        assert_eq!(sent.get(copied), claims.get(copied), "{copied} is copied");
    }
    for left in ["permittedReferer", "tierInfo", "application", "subscribedAPIs"] {
        assert!(!sent.contains_key(left), "{left} is not copied: {sent:?}");
    }
    assert_ne!(sent.get("jti"), claims.get("jti"), "the backend JWT has its own jti");
    // A key whose application has no numeric id is named by its UUID.
    claims["application"].as_object_mut().unwrap().remove("id");
    let key =
        sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256);
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/shop/1.0.0/items"), ("apikey", &key)]);
    host.now = 1_000;
    assert_eq!(stream(config).on_request_headers(&mut host, true), Flow::Continue);
    let jwt = host.req("x-jwt-assertion");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap();
    let sent: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&payload).unwrap();
    assert_eq!(sent["http://wso2.org/claims/applicationid"], "jwt-app");
}

/// WSO2's gateway tries its API key authenticator when the bearer token is refused
/// (`APIAuthenticationHandler.isAuthenticate`): the request is the API key's. A claim condition
/// then reads the key's claims, never those of the refused token, which no one verified: a
/// forged token cannot put its caller in (or out of) a condition group.
#[test]
fn a_refused_bearer_tokens_claims_are_not_read_when_its_api_key_stands_in() {
    let json = serde_json::json!({
        "api_key_jwt": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]},
        "key_managers": [{"name": "km", "issuer": "https://km", "hmac_secret": "a-secret-of-at-least-32-bytes-long!", "algorithms": ["HS256"]}],
        "policies": {"G": {"requests": 100, "per": "minute", "condition_groups": [{"requests": 1, "per": "minute",
            "conditions": [{"jwt_claim": "sub", "matches": "^mallory$"}]}]}},
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["oauth2", "api_key"], "policy": "G",
                  "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/*"}]}]
    });
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let mut config = Config::from_json(json.to_string().as_bytes()).unwrap();
    crate::stream::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let forged = sign_raw(
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"iss":"https://km","sub":"mallory"}"#,
        "rsa-b.pem",
        Algorithm::RS256,
    );
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut request = |headers: &[(&str, &str)]| {
        let mut pairs = vec![(":method", "GET"), (":path", "/shop/1.0.0/items")];
        pairs.extend_from_slice(headers);
        host.request = pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        host.counted.clear();
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        let flow = stream.on_request_headers(&mut host, true);
        (flow, host.counted.clone(), host.request.get("x-apim-cluster").cloned())
    };
    let admin = jwt_api_key(serde_json::json!({}));
    for _ in 0..3 {
        let answer = request(&[("authorization", &format!("Bearer {forged}")), ("apikey", &admin)]);
        assert_eq!(answer, (Flow::Continue, vec![], Some(b"prod".to_vec())), "the key's caller is admin");
    }
    // The condition itself counts mallory's own key: the test above could fail.
    let mallory = jwt_api_key(serde_json::json!({"sub": "mallory"}));
    assert_eq!(request(&[("apikey", &mallory)]).0, Flow::Continue);
    let throttled = request(&[("apikey", &mallory)]);
    assert_eq!((throttled.0, throttled.1), (Flow::Answered, vec![900800]));
}
