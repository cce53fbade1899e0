//! WSO2 JWT API keys authorized as WSO2's `ApiKeyAuthenticator` does: only API keys.

use super::*;
use crate::auth::api_keys;
use crate::auth::fixture::{compile, Fixture};
use crate::auth::keys::testkeys::{jwk, sign_raw};
use jsonwebtoken::Algorithm;
use serde_json::json;

fn config() -> Fixture {
    let json = json!({
        "api_key_jwt": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]},
        "apis": [
            {"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
             "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "Tpl", "context": "/{version}/tpl", "version": "v1", "security": ["api_key"],
             "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/*"}]}
        ]
    });
    compile(&json.to_string())
}

/// A key API-M would sign, with `extra` claims set over the usual ones.
fn key(extra: serde_json::Value) -> String {
    let mut claims = json!({"iss": "https://apim", "sub": "admin", "keytype": "PRODUCTION",
        "application": {"id": 7, "uuid": "jwt-app", "name": "JwtApp", "owner": "erin", "tier": "Unlimited"}});
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, &claims.to_string(), "rsa-b.pem", Algorithm::RS256)
}

fn shop() -> serde_json::Value {
    json!([{"name": "Shop", "context": "/shop/1.0.0", "version": "1.0.0", "subscriptionTier": "Unlimited"}])
}

fn outcome(fixture: &Fixture, api: usize, token: &str) -> Result<(), u32> {
    let identity = api_keys::verify(&fixture.auth, &fixture.directory, token, 1_000).map_err(|_| 900901u32)?;
    let api = &fixture.routes.apis[api];
    authorize(&fixture.directory, api, &api.resources[0], &identity).map(|_| ()).map_err(|f| f.code)
}

/// WSO2's ApiKeyAuthenticator takes only tokens that are API keys (`token_type` "apiKey", or
/// without it an `application` claim and no `consumerKey`): an API-M 3.x JWT access token
/// (application + consumerKey, signed by the same key) or an InternalKey is refused (900901).
#[test]
fn an_oauth_access_token_is_not_an_api_key() {
    let fixture = config();
    let access_token = key(json!({"consumerKey": "abc", "aud": "http://org.wso2.apimgt/gateway",
        "scope": "default", "subscribedAPIs": shop()}));
    assert_eq!(outcome(&fixture, 0, &access_token), Err(900901), "3.x access token as apikey");
    let other_type = key(json!({"token_type": "InternalKey", "subscribedAPIs": shop()}));
    assert_eq!(outcome(&fixture, 0, &other_type), Err(900901), "token_type not apiKey");
    let typed = key(json!({"token_type": "apiKey", "consumerKey": "abc", "subscribedAPIs": shop()}));
    assert_eq!(outcome(&fixture, 0, &typed), Ok(()), "token_type apiKey decides");
}
