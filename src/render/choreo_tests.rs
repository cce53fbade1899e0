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

/// Entries whose status or texts Choreo Connect's enforcer and router give otherwise:
/// an inactive subscription (`KeyValidator.validate` marks ON_HOLD/REJECTED 900909 and
/// `JWTAuthenticator` throws it with `StatusCodes.UNAUTHORIZED`, 403, and "User is NOT authorized
/// to access the Resource. API Subscription validation failed."); an API key's IP or referrer
/// restriction (`APIKeyAuthenticator.validateAPIKeyRestrictions`: 403, 900908, message and
/// description both `API_AUTH_FORBIDDEN_MESSAGE`); a 900900 (thrown with
/// `API_AUTH_GENERAL_ERROR_MESSAGE`, which `getFailureMessageDetailDescription` leaves alone); an
/// invalid GraphQL query (`HttpRequestHandler`: `BAD_REQUEST_ERROR`, 400, carbon-apimgt's
/// `GRAPHQL_INVALID_QUERY_MESSAGE` "INVALID QUERY"); a path or method no resource has (the
/// router's NR mapping in `envoyconf/response_mapper.go`: 404, "404", `NotFoundMessage`,
/// `NotFoundDescription`, with `message`/`description` keys).
#[test]
fn statuses_and_texts_follow_the_enforcer_and_the_router() {
    let (status, body) = answer(&Fault::new(FaultId::SubscriptionInactive));
    assert_eq!(status, 403);
    assert_eq!(body["code"], "900909");
    assert_eq!(body["error_message"], "The subscription to the API is inactive");
    assert_eq!(
        body["error_description"],
        "User is NOT authorized to access the Resource. API Subscription validation failed."
    );
    let (status, body) = answer(&Fault::new(FaultId::ApiKeyRestricted));
    assert_eq!((status, body["code"].clone()), (403, "900908".into()));
    assert_eq!(body["error_message"], "Resource forbidden ");
    assert_eq!(body["error_description"], "Resource forbidden ");
    let (status, body) = answer(&Fault::new(FaultId::AuthGeneralError));
    assert_eq!((status, body["code"].clone()), (500, "900900".into()));
    assert_eq!(body["error_description"], "Unclassified Authentication Failure");
    let (status, body) = answer(&Fault::new(FaultId::InvalidGraphqlQuery));
    assert_eq!((status, body["code"].clone()), (400, "900422".into()));
    assert_eq!(body["error_message"], "INVALID QUERY");
    let (status, body) = answer(&Fault::new(FaultId::NoMatchingResource));
    assert_eq!(status, 404);
    assert_eq!(
        body,
        serde_json::json!({"code": "404", "message": "Not Found", "description": "The requested resource is not available."})
    );
    let rendered = render(&Fault::new(FaultId::NoMatchingResource), &choreo(), None);
    assert_eq!(rendered.header("www-authenticate"), None);
}

/// `AuthFilter.handleRequest` adds `WWW-Authenticate` on every refusal it makes, whatever the
/// status and whether or not a credential was sent: the authenticators' challenges followed by
/// `, error="invalid_token", error_description="The provided token is invalid"`. Throttling,
/// GraphQL and router answers carry none.
#[test]
fn every_auth_filter_refusal_carries_choreo_connects_challenge() {
    let expected =
        r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#;
    for id in [
        FaultId::MissingCredentials,
        FaultId::InvalidCredentials,
        FaultId::ResourceForbidden,
        FaultId::InsufficientScope,
        FaultId::ApiBlocked,
        FaultId::AuthGeneralError,
    ] {
        let rendered = render(&Fault::new(id).with_challenge_error("insufficient_scope"), &choreo(), None);
        assert_eq!(rendered.header("www-authenticate"), Some(expected), "{id:?}");
    }
    for id in [FaultId::ApiThrottled, FaultId::Blocked, FaultId::NoMatchingResource, FaultId::InvalidGraphqlQuery] {
        assert_eq!(render(&Fault::new(id), &choreo(), None).header("www-authenticate"), None, "{id:?}");
    }
}

/// Choreo Connect 1.2's `ThrottleUtils.setRetryAfterHeader` formats the reset time with
/// `SimpleDateFormat("EEE, dd MMM yyyy HH:mm:ss z")` in GMT (1.0 and 1.1 sent none over HTTP).
#[test]
fn retry_after_is_the_reset_time_as_an_http_date() {
    let mut fault = Fault::new(FaultId::ResourceThrottled);
    fault.next_access_time = Some(1_787_393_730); // 2026-08-22 10:15:30 UTC, a Saturday
    fault.retry_after_s = Some(17);
    let rendered = render(&fault, &choreo(), None);
    assert_eq!(rendered.header("retry-after"), Some("Sat, 22 Aug 2026 10:15:30 GMT"));
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
}
