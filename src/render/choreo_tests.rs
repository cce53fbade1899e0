//! What the `choreo-connect` format answers, checked against the literal values of Choreo Connect's
//! sources (wso2/product-microgateway, enforcer and adapter, v1.2.0; cited per test).

use super::*;
use crate::schema::RawConfig;

fn choreo() -> ErrorSettings {
    let raw: RawConfig = serde_json::from_str(r#"{"errors":{"format":"choreo-connect"}}"#).expect("test JSON");
    ErrorSettings::compile(raw.errors, &raw.credentials).expect("valid settings")
}

/// Status and the three body fields of a rendered fault.
fn answer(fault: &Fault) -> (u16, serde_json::Value) {
    let rendered = render(fault, &choreo(), None);
    (rendered.status, serde_json::from_str(&rendered.body).expect("JSON body"))
}

/// A request without credentials: `AuthFilter` finds no authenticator that can authenticate it and
/// calls `FilterUtils.setUnauthenticatedErrorToContext` (enforcer/util/FilterUtils.java): 401,
/// `API_AUTH_INVALID_CREDENTIALS` (900901), "Invalid Credentials" and
/// `API_AUTH_INVALID_CREDENTIALS_DESCRIPTION` alone. An expired JWT is 900901 too
/// (`JWTValidator.validateToken` sets `API_AUTH_INVALID_CREDENTIALS` when `validateTokenExpiry`
/// fails; `JWTAuthenticator` throws it with `getAuthenticationFailureMessage(900901)`).
#[test]
fn missing_credentials_and_an_expired_token_are_choreo_connects_900901() {
    let (status, body) = answer(&Fault::new(FaultId::MissingCredentials));
    assert_eq!(status, 401);
    assert_eq!(body["code"], "900901");
    assert_eq!(body["error_message"], "Invalid Credentials");
    assert_eq!(body["error_description"], "Make sure you have provided the correct security credentials");
    let (status, body) = answer(&Fault::new(FaultId::AccessTokenExpired));
    assert_eq!(status, 401);
    assert_eq!(body["code"], "900901");
    assert_eq!(body["error_message"], "Invalid Credentials");
    assert_eq!(
        body["error_description"],
        "Invalid Credentials. Make sure you have provided the correct security credentials"
    );
}
