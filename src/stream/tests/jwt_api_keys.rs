//! JWT API keys through the stream: what of the request their restrictions read reaches them.

use super::*;

/// WSO2 (`ApiKeyAuthenticator.validateAPIKeyRestrictions`) refuses a JWT API key whose
/// `permittedIP` list does not hold the client (`source.address`, as blocking conditions read it),
/// or whose `permittedReferer` list the `Referer` (absent = refused) does not match: 900908. The
/// stream hands both to authorization.
#[test]
fn a_jwt_api_keys_permitted_ip_and_referer_are_enforced() {
    use crate::auth::keys::testkeys::{jwk, sign_raw};
    use jsonwebtoken::Algorithm;
    let json = serde_json::json!({
        "api_key_jwt": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]},
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
                  "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/*"}]}]
    });
    let config = Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap());
    let claims = serde_json::json!({"iss": "https://apim", "sub": "admin", "keytype": "PRODUCTION",
        "token_type": "apiKey", "permittedIP": "192.0.2.1", "permittedReferer": "https://app.example/*",
        "application": {"uuid": "jwt-app", "name": "JwtApp", "owner": "erin", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": "Shop", "context": "/shop/1.0.0", "version": "1.0.0", "subscriptionTier": "Unlimited"}]});
    let key =
        sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256);
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
