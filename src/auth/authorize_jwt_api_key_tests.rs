//! WSO2 JWT API keys authorized as WSO2's `ApiKeyAuthenticator` does: only API keys, restricted to
//! their `permittedIP` and `permittedReferer`, subscribed by context and version.

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

fn outcome_from(fixture: &Fixture, api: usize, token: &str, origin: &RequestOrigin<'_>) -> Result<(), u32> {
    let identity = api_keys::verify(&fixture.auth, &fixture.directory, token, 1_000).map_err(|_| 900901u32)?;
    let api = &fixture.routes.apis[api];
    authorize(&fixture.directory, api, &api.resources[0], &identity, origin).map(|_| ()).map_err(|f| f.code)
}

fn outcome(fixture: &Fixture, api: usize, token: &str) -> Result<(), u32> {
    outcome_from(fixture, api, token, &RequestOrigin::default())
}

/// WSO2 matches subscribedAPIs by context AND version: a key subscribed to another tenant's
/// API that shares the name (API-M signs every tenant's keys with the super tenant's key) is
/// refused with 900908, and so is one for another version of the same context.
#[test]
fn a_key_for_another_context_or_version_with_the_same_name_is_refused() {
    let fixture = config();
    let other_tenant = key(json!({"subscribedAPIs": [{"name": "Shop", "context": "/t/evil.com/shop/1.0.0",
        "version": "1.0.0", "subscriptionTier": "Unlimited"}]}));
    assert_eq!(outcome(&fixture, 0, &other_tenant), Err(900908));
    let other_version =
        key(json!({"subscribedAPIs": [{"name": "Shop", "context": "/shop/1.0.0", "version": "2.0.0"}]}));
    assert_eq!(outcome(&fixture, 0, &other_version), Err(900908));
    assert_eq!(outcome(&fixture, 0, &key(json!({"subscribedAPIs": shop()}))), Ok(()));
}

/// A `{version}` context: the key names `/v1/tpl`, the API's versioned context (whatever it
/// calls the API), never `/{version}/tpl/v1`.
#[test]
fn a_version_template_context_matches_the_key() {
    let fixture = config();
    let wso2_name = key(json!({"subscribedAPIs": [{"name": "TemplateAPI", "context": "/v1/tpl",
        "version": "v1", "subscriptionTier": "Unlimited"}]}));
    assert_eq!(outcome(&fixture, 1, &wso2_name), Ok(()));
    let appended = key(json!({"subscribedAPIs": [{"name": "Tpl", "context": "/{version}/tpl/v1", "version": "v1"}]}));
    assert_eq!(outcome(&fixture, 1, &appended), Err(900908));
}

/// WSO2 (`validateAPIKeyRestrictions`) refuses a key whose `permittedIP` list does not hold the
/// client (addresses and networks, IPv4 and IPv6) or whose `permittedReferer` list the `Referer`
/// does not match as a whole (`*` any run of characters; no `Referer` matches nothing): 900908,
/// "Access forbidden for the invocations".
#[test]
fn permitted_ip_and_referer_restrictions_are_enforced() {
    let fixture = config();
    let from = |ip: &str, referer: Option<&'static str>| RequestOrigin { client_ip: ip.parse().ok(), referer };
    let by_ip = key(json!({"permittedIP": "192.0.2.1, 198.51.100.0/24,2001:db8::/32", "subscribedAPIs": shop()}));
    for allowed in ["192.0.2.1", "198.51.100.77", "2001:db8::5", "::ffff:198.51.100.1"] {
        assert_eq!(outcome_from(&fixture, 0, &by_ip, &from(allowed, None)), Ok(()), "{allowed}");
    }
    for refused in ["192.0.2.2", "203.0.113.1", "2001:db9::1", "unknown"] {
        assert_eq!(outcome_from(&fixture, 0, &by_ip, &from(refused, None)), Err(900908), "{refused}");
    }
    let by_referer =
        key(json!({"permittedReferer": "https://app.example/*, *.partner.example/app", "subscribedAPIs": shop()}));
    for allowed in ["https://app.example/", "https://app.example/a/b?c", "https://x.partner.example/app"] {
        assert_eq!(outcome_from(&fixture, 0, &by_referer, &from("192.0.2.9", Some(allowed))), Ok(()), "{allowed}");
    }
    for refused in [Some("https://evil.example/https://app.example/"), Some("https://app.example"), None] {
        assert_eq!(outcome_from(&fixture, 0, &by_referer, &from("192.0.2.9", refused)), Err(900908), "{refused:?}");
    }
    let both = key(json!({"permittedIP": "192.0.2.1", "permittedReferer": "https://app.example/*",
        "subscribedAPIs": shop()}));
    assert_eq!(outcome_from(&fixture, 0, &both, &from("192.0.2.1", Some("https://app.example/x"))), Ok(()));
    assert_eq!(outcome_from(&fixture, 0, &both, &from("192.0.2.1", None)), Err(900908));
    // The restriction comes first, and is its own entry (WSO2's description for it).
    let api = &fixture.routes.apis[0];
    let identity = api_keys::verify(&fixture.auth, &fixture.directory, &both, 1_000).unwrap();
    let refused = authorize(&fixture.directory, api, &api.resources[0], &identity, &from("192.0.2.2", None));
    assert_eq!(refused.map(|_| ()).map_err(|fault| fault.id), Err(FaultId::ApiKeyRestricted));
    // Empty claims restrict nothing; an entry that is no address matches no client.
    let empty = key(json!({"permittedIP": "", "permittedReferer": null, "subscribedAPIs": shop()}));
    assert_eq!(outcome(&fixture, 0, &empty), Ok(()));
    let garbled = key(json!({"permittedIP": "not-an-ip", "subscribedAPIs": shop()}));
    assert_eq!(outcome_from(&fixture, 0, &garbled, &from("192.0.2.1", None)), Err(900908));
    let wrong_type = key(json!({"permittedIP": ["192.0.2.1"], "subscribedAPIs": shop()}));
    assert_eq!(outcome(&fixture, 0, &wrong_type), Err(900901));
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

/// `api_key_jwt.issuer` is compared as key managers' issuers are: one trailing `/` either way is
/// the same issuer, anything else is not.
#[test]
fn the_api_key_issuer_is_compared_without_a_trailing_slash() {
    let with_issuer = |issuer: &str| {
        let json = json!({
            "api_key_jwt": {"issuer": issuer, "keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]},
            "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
                "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/*"}]}]
        });
        compile(&json.to_string())
    };
    let token = key(json!({"subscribedAPIs": shop()}));
    for (issuer, expected) in [("https://apim/", Ok(())), ("https://apim", Ok(())), ("https://apim/x", Err(900901))] {
        assert_eq!(outcome(&with_issuer(issuer), 0, &token), expected, "{issuer}");
    }
}
