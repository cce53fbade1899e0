//! Access tokens as the key managers API-M 4.x supports issue them (Keycloak, Okta, Auth0, Azure AD
//! v1 and v2, PingFederate, ForgeRock AM, WSO2 IS 7), verified and authorized end to end.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::auth::authorize::{authorize, RequestOrigin};
use crate::auth::bearer::{verify, BearerStep};
use crate::auth::fixture::{compile, Fixture};
use crate::auth::keys::testkeys::{jwk, sign_raw};
use crate::auth::Identity;

const NOW: u64 = 1_800_000_000;

/// A configuration with one key manager (`km`, merged into a default with inline keys of
/// `rsa-a.pem`, kid `k`, with `extra_jwk` members), one API and two applications.
fn config(km: Value, extra_jwk: Value) -> Fixture {
    let mut key = jwk("rsa-a.pem", Algorithm::RS256, "k");
    if let (Some(key), Some(extra)) = (key.as_object_mut(), extra_jwk.as_object()) {
        for (name, value) in extra {
            if value.is_null() {
                key.remove(name);
            } else {
                key.insert(name.clone(), value.clone());
            }
        }
    }
    let mut manager = json!({"name": "vendor", "jwks": {"keys": [key]}});
    for (name, value) in km.as_object().unwrap() {
        manager[name] = value.clone();
    }
    let json = json!({
        "key_managers": [manager],
        "apis": [{"name": "S", "context": "/s", "version": "1", "endpoints": {"production": "p"},
                  "resources": [{"method": "GET", "path": "/any"},
                                {"method": "GET", "path": "/scoped", "scopes": ["read"]}]}],
        "applications": [{"id": "shop", "name": "Shop", "client_ids": [{"id": "shop-client"}]},
                         {"id": "other", "name": "Other", "client_ids": [{"id": "other-client"}]}],
        "subscriptions": [{"application": "shop", "api": "S:1"}]
    });
    compile(&json.to_string())
}

/// Verifies and authorizes `payload` (signed with `header`) at resource `resource`: the
/// application's id, or the WSO2 code.
fn call(fixture: &Fixture, header: Value, payload: Value, resource: usize) -> Result<String, String> {
    let token = sign_raw(&header.to_string(), &payload.to_string(), "rsa-a.pem", Algorithm::RS256);
    let identity = match verify(&fixture.auth, &[], &token, NOW, false) {
        BearerStep::Verified(identity) => Identity::Token(std::rc::Rc::new(identity)),
        other => return Err(format!("{other:?}")),
    };
    let api = &fixture.routes.apis[0];
    authorize(&fixture.directory, api, &api.resources[resource], &identity, &RequestOrigin::default())
        .map(|authorized| authorized.application_id().to_string())
        .map_err(|fault| fault.code.to_string())
}

/// Each vendor's token for the subscribed application passes (with the scope its resource asks),
/// and the same token for another application answers 900908.
fn accepted_for_its_app_only(name: &str, fixture: &Fixture, header: Value, payload: Value, client_claim: &str) {
    assert_eq!(call(fixture, header.clone(), payload.clone(), 0), Ok("shop".to_string()), "{name}");
    assert_eq!(call(fixture, header.clone(), payload.clone(), 1), Ok("shop".to_string()), "{name}: scope");
    let mut other = payload;
    other[client_claim] = Value::from("other-client");
    assert_eq!(call(fixture, header, other, 0), Err("900908".to_string()), "{name}: another app");
}

#[test]
fn keycloak_tokens() {
    let fixture = config(json!({"issuer": "https://kc.example.com/realms/shop"}), json!({"x5t": "abc", "x5c": []}));
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k"});
    let user = json!({"exp": NOW + 300, "iat": NOW, "jti": "1", "iss": "https://kc.example.com/realms/shop",
        "aud": "account", "sub": "f1b2", "typ": "Bearer", "azp": "shop-client", "session_state": "s",
        "acr": "1", "realm_access": {"roles": ["offline_access"]}, "scope": "openid read profile",
        "sid": "s", "email_verified": false, "preferred_username": "alice"});
    accepted_for_its_app_only("keycloak user", &fixture, header.clone(), user, "azp");
    let service = json!({"exp": NOW + 300, "iat": NOW, "jti": "2", "iss": "https://kc.example.com/realms/shop",
        "aud": ["account"], "sub": "9c1d", "typ": "Bearer", "azp": "shop-client", "scope": "read",
        "clientHost": "10.0.0.1", "client_id": "shop-client", "preferred_username": "service-account-shop-client"});
    let fixture_cc =
        config(json!({"issuer": "https://kc.example.com/realms/shop", "claims": {"client_id": ["azp"]}}), json!({}));
    accepted_for_its_app_only("keycloak service account", &fixture_cc, header, service, "azp");
}

#[test]
fn okta_tokens() {
    let fixture = config(
        json!({"issuer": "https://dev-1.okta.com/oauth2/default", "audiences": ["api://default"],
               "claims": {"client_id": ["cid"], "scopes": ["scp"]}}),
        json!({}),
    );
    let header = json!({"kid": "k", "alg": "RS256"});
    let user = json!({"ver": 1, "jti": "AT.x", "iss": "https://dev-1.okta.com/oauth2/default",
        "aud": "api://default", "iat": NOW, "exp": NOW + 300, "cid": "shop-client", "uid": "00u1",
        "scp": ["openid", "read"], "auth_time": NOW, "sub": "alice@example.com"});
    accepted_for_its_app_only("okta user", &fixture, header.clone(), user, "cid");
    let service = json!({"ver": 1, "jti": "AT.y", "iss": "https://dev-1.okta.com/oauth2/default",
        "aud": "api://default", "iat": NOW, "exp": NOW + 300, "cid": "shop-client", "scp": ["read"],
        "sub": "shop-client"});
    accepted_for_its_app_only("okta service", &fixture, header, service, "cid");
}

#[test]
fn auth0_tokens() {
    let fixture = config(
        json!({"issuer": "https://shop.eu.auth0.com/", "audiences": ["https://api.shop"]}),
        json!({"x5t": "abc", "x5c": ["MIIB"]}),
    );
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k"});
    let user = json!({"iss": "https://shop.eu.auth0.com/", "sub": "auth0|abc",
        "aud": ["https://api.shop", "https://shop.eu.auth0.com/userinfo"], "iat": NOW, "exp": NOW + 300,
        "azp": "shop-client", "scope": "openid read", "permissions": ["read"]});
    accepted_for_its_app_only("auth0 user", &fixture, header.clone(), user, "azp");
    let service = json!({"iss": "https://shop.eu.auth0.com/", "sub": "shop-client@clients",
        "aud": "https://api.shop", "iat": NOW, "exp": NOW + 300, "azp": "shop-client", "scope": "read",
        "gty": "client-credentials"});
    accepted_for_its_app_only("auth0 service", &fixture, header, service, "azp");
}

#[test]
fn azure_v1_and_v2_tokens() {
    let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    // Azure's JWKS: no `alg`, an `x5t`, an `x5c` chain and an `issuer` member.
    let azure_key = json!({"alg": null, "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "x5c": ["MIIDBTCCAe2g"],
        "issuer": format!("https://login.microsoftonline.com/{tid}/v2.0")});
    let v1 = config(
        json!({"issuer": format!("https://sts.windows.net/{tid}/"), "audiences": ["api://shop"],
               "claims": {"client_id": ["appid"], "scopes": ["scp", "roles"], "end_user": "upn"}}),
        azure_key.clone(),
    );
    let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "k", "kid": "k"});
    let user = json!({"aud": "api://shop", "iss": format!("https://sts.windows.net/{tid}/"), "iat": NOW,
        "nbf": NOW, "exp": NOW + 300, "acr": "1", "aio": "x", "amr": ["pwd"], "appid": "shop-client",
        "appidacr": "0", "name": "Alice", "oid": "o", "scp": "read write", "sub": "s", "tid": tid,
        "unique_name": "alice@contoso.com", "upn": "alice@contoso.com", "uti": "u", "ver": "1.0"});
    accepted_for_its_app_only("azure v1 user", &v1, header.clone(), user, "appid");
    let app = json!({"aud": "api://shop", "iss": format!("https://sts.windows.net/{tid}/"), "iat": NOW,
        "nbf": NOW, "exp": NOW + 300, "appid": "shop-client", "appidacr": "1", "idp": "https://sts.windows.net/x/",
        "idtyp": "app", "oid": "o", "roles": ["read"], "sub": "o", "tid": tid, "ver": "1.0"});
    accepted_for_its_app_only("azure v1 app", &v1, header.clone(), app, "appid");
    let v2 = config(
        json!({"issuer": format!("https://login.microsoftonline.com/{tid}/v2.0"),
               "audiences": ["6e74172b-be56-4843-9ff4-e66a39bb12e3"],
               "claims": {"scopes": ["scp", "roles"]}}),
        azure_key,
    );
    let user = json!({"aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"), "iat": NOW, "nbf": NOW,
        "exp": NOW + 300, "aio": "x", "azp": "shop-client", "azpacr": "0", "name": "Alice", "oid": "o",
        "preferred_username": "alice@contoso.com", "scp": "read", "sub": "s", "tid": tid, "uti": "u",
        "ver": "2.0"});
    accepted_for_its_app_only("azure v2 user", &v2, header, user, "azp");
}

#[test]
fn pingfederate_forgerock_and_is7_tokens() {
    let ping = config(json!({"issuer": "https://pf.example.com"}), json!({"alg": null}));
    let payload = json!({"scope": ["openid", "read"], "client_id": "shop-client", "iss": "https://pf.example.com",
        "sub": "alice", "exp": NOW + 300});
    accepted_for_its_app_only("pingfederate", &ping, json!({"alg": "RS256", "kid": "k"}), payload, "client_id");
    let issuer = "https://am.example.com:443/am/oauth2/realms/root/realms/alpha";
    let forgerock = config(json!({"issuer": issuer}), json!({}));
    let payload = json!({"sub": "alice", "cts": "OAUTH2_STATELESS_GRANT", "auditTrackingId": "a",
        "subname": "alice", "iss": issuer, "tokenName": "access_token", "token_type": "Bearer",
        "authGrantId": "g", "aud": "shop-client", "nbf": NOW, "grant_type": "authorization_code",
        "scope": ["read"], "auth_time": NOW, "realm": "/alpha", "exp": NOW + 300, "iat": NOW,
        "expires_in": 300, "jti": "j", "client_id": "shop-client"});
    let header = json!({"typ": "JWT", "zip": "NONE", "kid": "k", "alg": "RS256"});
    accepted_for_its_app_only("forgerock", &forgerock, header, payload, "client_id");
    let is7 = config(json!({"issuer": "https://is.example.com:9443/oauth2/token"}), json!({}));
    let payload = json!({"sub": "2d2f", "aut": "APPLICATION_USER", "binding_type": "request",
        "iss": "https://is.example.com:9443/oauth2/token", "client_id": "shop-client", "aud": "shop-client",
        "nbf": NOW, "azp": "shop-client", "org_id": "10084a8d", "scope": "read", "exp": NOW + 300,
        "org_name": "Super", "iat": NOW, "binding_ref": "b", "jti": "j"});
    let header = json!({"x5t": "k", "kid": "k", "typ": "at+jwt", "alg": "RS256"});
    // Its `azp` and `client_id` both name the client: `azp` is read first, as API-M reads it.
    accepted_for_its_app_only("is7", &is7, header, payload, "azp");
}

/// An introspection answer is RFC 7662's whatever the key manager's JWTs call their claims, as
/// WSO2 reads it (`client_id`, `scope`): a key manager whose JWTs name the client `cid` and the
/// scopes `scp` (Okta, as its docs configure it) still has its opaque tokens' answers read.
#[test]
fn introspection_answers_are_read_by_their_rfc_7662_names_whatever_the_jwt_claims_are_called() {
    use crate::auth::introspection::{parse, Introspected};
    use crate::host::Answer;
    let fixture = compile(
        r#"{"key_managers": [{"name": "okta", "issuer": "https://dev-1.okta.com/oauth2/default",
            "jwks": {"cluster": "okta"}, "claims": {"client_id": ["cid"], "scopes": ["scp"]},
            "introspection": {"cluster": "okta", "path": "/oauth2/default/v1/introspect",
                              "client_id": "gw", "client_secret": "s"}}]}"#,
    );
    let km = &fixture.auth.key_managers[0];
    // Okta's answer for an access token of its default authorization server.
    let body = json!({"active": true, "scope": "openid read", "username": "alice@example.com",
        "exp": NOW + 300, "iat": NOW, "sub": "alice@example.com", "aud": "api://default",
        "iss": "https://dev-1.okta.com/oauth2/default", "jti": "AT.x", "token_type": "Bearer",
        "client_id": "shop-client", "uid": "00u1"});
    let answer = Answer::Http { status: 200, body: body.to_string().into_bytes() };
    match parse(km, &answer, NOW) {
        Introspected::Active(identity) => {
            assert_eq!(identity.client_id, "shop-client");
            assert_eq!(identity.scopes, ["openid", "read"]);
        }
        other => panic!("{other:?}"),
    }
}

/// The end user of an introspected token is RFC 7662's `username`, as WSO2 reads it
/// (`tokenInfo.setEndUserName(introspectInfo.getUsername())`): WSO2 IS answers with no `sub` at
/// all, Keycloak with its user's id as `sub`. Read by the claim name alone (`sub`), a WSO2 opaque
/// token had no end user (throttled, blocked and named upstream as the application's owner).
#[test]
fn an_introspected_tokens_end_user_is_its_username() {
    use crate::auth::introspection::{parse, Introspected};
    use crate::host::Answer;
    let fixture = compile(
        r#"{"key_managers": [{"name": "km", "issuer": "https://km",
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s"}}]}"#,
    );
    let km = &fixture.auth.key_managers[0];
    let end_user =
        |body: Value| match parse(km, &Answer::Http { status: 200, body: body.to_string().into_bytes() }, NOW) {
            Introspected::Active(identity) => identity.end_user,
            other => panic!("{other:?}"),
        };
    // WSO2 IS (API-M's resident key manager) for an opaque token.
    let wso2 = json!({"aut": "APPLICATION_USER", "nbf": NOW, "scope": "default", "active": true,
        "token_type": "Bearer", "exp": NOW + 300, "iat": NOW, "client_id": "shop-client",
        "username": "admin@carbon.super"});
    assert_eq!(end_user(wso2).as_deref(), Some("admin@carbon.super"));
    let keycloak = json!({"active": true, "exp": NOW + 300, "iat": NOW, "sub": "f1b2c3", "typ": "Bearer",
        "azp": "shop-client", "scope": "read", "client_id": "shop-client", "username": "alice",
        "token_type": "Bearer"});
    assert_eq!(end_user(keycloak).as_deref(), Some("alice"));
    let without_username = json!({"active": true, "client_id": "shop-client", "sub": "bob"});
    assert_eq!(end_user(without_username).as_deref(), Some("bob"), "the end-user claim, without a username");
    let empty_username = json!({"active": true, "client_id": "shop-client", "sub": "bob", "username": ""});
    assert_eq!(end_user(empty_username).as_deref(), Some("bob"), "an empty username names nobody");
    let garbled = json!({"active": true, "client_id": "shop-client", "username": 7});
    let answer = Answer::Http { status: 200, body: garbled.to_string().into_bytes() };
    assert_eq!(parse(km, &answer, NOW), Introspected::Unavailable("introspection_malformed"));
}

/// A JWKS key given only as an `x5c` certificate (no `n` and `e`) cannot be used: configured
/// inline it is refused at load, naming it; an Azure-shaped key (no `alg`, `x5t`, `x5c`,
/// `issuer`) loads and verifies RS and PS tokens.
#[test]
fn keys_as_vendors_publish_them_load_or_are_refused_naming_them() {
    let mut certificate_only = jwk("rsa-a.pem", Algorithm::RS256, "k");
    for member in ["n", "e", "alg"] {
        certificate_only.as_object_mut().unwrap().remove(member);
    }
    certificate_only["x5c"] = json!(["MIIDBTCCAe2g"]);
    let raw =
        serde_json::from_value(json!([{"name": "a", "issuer": "https://a", "jwks": {"keys": [certificate_only]}}]));
    let error = crate::auth::AuthConfig::compile(Default::default(), raw.unwrap(), None, &mut Vec::new()).unwrap_err();
    assert_eq!(error.field, "key_managers[0].jwks.keys[0]");
    let azure = config(
        json!({"issuer": "https://a"}),
        json!({"alg": null, "x5t": "k", "x5c": ["MIIDBTCCAe2g"], "issuer": "https://a"}),
    );
    let payload = json!({"iss": "https://a", "exp": NOW + 300, "client_id": "shop-client", "scope": "read"});
    for algorithm in [Algorithm::RS256, Algorithm::PS256] {
        let header = json!({"alg": format!("{algorithm:?}"), "kid": "k"}).to_string();
        let token = sign_raw(&header, &payload.to_string(), "rsa-a.pem", algorithm);
        assert!(matches!(verify(&azure.auth, &[], &token, NOW, false), BearerStep::Verified(_)), "{algorithm:?}");
    }
}
