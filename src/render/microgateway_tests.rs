//! The `microgateway` format against the WSO2 API Microgateway 3.x's own answers.

use super::*;
use crate::schema::RawConfig;

fn settings(json: &str) -> ErrorSettings {
    let raw: RawConfig = serde_json::from_str(json).expect("well-formed test JSON");
    ErrorSettings::compile(raw.errors, &raw.credentials).expect("valid settings")
}

/// wso2/product-microgateway v3.2.10, the CLI's templates: `noProdAvailableError.mustache` and
/// `noSandAvailableError.mustache` lines 1-9 (403, `ERROR_CODE`/`ERROR_MESSAGE`, no `fault`),
/// `apiNotFoundService.mustache` lines 28-31 with `faultResponses.mustache` lines 1-6.
#[test]
fn microgateway_key_type_refusals_and_unknown_apis_have_its_template_bodies() {
    let mgw = settings(r#"{"errors":{"format":"microgateway"}}"#);
    let production = render(&Fault::new(FaultId::ProductionKeyWithoutEndpoint), &mgw, None);
    assert_eq!(production.status, 403);
    assert_eq!(
        production.body,
        r#"{"ERROR_CODE":"900901","ERROR_MESSAGE":"Production key offered to the API with no production endpoint"}"#
    );
    let sandbox = render(&Fault::new(FaultId::SandboxKeyWithoutEndpoint), &mgw, None);
    assert_eq!(
        (sandbox.status, sandbox.body.as_str()),
        (403, r#"{"ERROR_CODE":"900901","ERROR_MESSAGE":"Sandbox key offered to the API with no sandbox endpoint"}"#)
    );
    let unknown = render(&Fault::new(FaultId::NotFound), &mgw, None);
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (
            404,
            r#"{"code":404,"type":"Status report","message":"Runtime Error","description":"No matching resource found for given API Request"}"#
        )
    );
}

/// The WSO2 API Microgateway 3.x's answer to each catalogue entry that has a counterpart, written
/// from its sources (wso2/product-microgateway v3.2.10; `gateway/` is
/// `components/micro-gateway-core/src/main/ballerina/src/gateway/`, `templates/` is
/// `components/micro-gateway-cli/src/main/resources/templates/`) and seed 000, never from the
/// catalogue: `(id, status, body)`.
fn microgateway_answers() -> Vec<(&'static str, u16, serde_json::Value)> {
    use serde_json::json;
    // `utils/utils.bal` `sendErrorResponse`: `{"fault":{"code":<int>,...}}`; the description is
    // `getFailureMessageDetailDescription` (`constants/api_security_constants.bal` 146-173).
    let fault = |code: u32, message: &str, description: &str| json!({"fault": {"code": code, "message": message, "description": description}});
    let general = |message: &str| format!("{message}. Unclassified Authentication Failure");
    let throttled = |code| fault(code, "Message throttled out", "You have exceeded your quota");
    vec![
        // Seed 000's troubleshooting table (the key manager is down).
        ("auth_general_error", 500, fault(900900, "Unclassified Authentication Failure", "Unclassified Authentication Failure")),
        ("invalid_credentials", 401, fault(900901, "Invalid Credentials", "Invalid Credentials. Make sure you have given the correct access token")),
        ("missing_credentials", 401, fault(900902, "Missing Credentials", "Missing Credentials. Make sure your API request provides required credentials")),
        ("access_token_expired", 401, fault(900903, "Access Token Expired", "Access Token Expired. Renew the access token and try again")),
        ("access_token_inactive", 401, fault(900904, "Access Token Inactive", &general("Access Token Inactive"))),
        ("incorrect_access_token_type", 401, fault(900905, "Incorrect Access Token Type is provided", &general("Incorrect Access Token Type is provided"))),
        ("no_matching_resource", 403, fault(900906, "No matching resource found in the API for the given request", "No matching resource found in the API for the given request. Check the API documentation and add a proper REST resource path to the invocation URL")),
        ("subscription_blocked", 401, fault(900907, "The requested API is temporarily blocked", &general("The requested API is temporarily blocked"))),
        ("resource_forbidden", 403, fault(900908, "Resource forbidden ", &general("Resource forbidden "))),
        ("api_key_restricted", 403, fault(900908, "Resource forbidden ", &general("Resource forbidden "))),
        ("subscription_inactive", 401, fault(900909, "The subscription to the API is inactive", &general("The subscription to the API is inactive"))),
        ("insufficient_scope", 403, fault(900910, "The access token does not allow you to access the requested resource", &general("The access token does not allow you to access the requested resource"))),
        ("invalid_credentials_alt", 401, fault(900911, "Invalid Credentials", "Invalid Credentials. Make sure you have given the correct username and password")),
        ("invalid_credential_format", 401, fault(900912, "Invalid Format", "Invalid Format. Make sure you have given the credentials in correct format with \":\" character")),
        ("invalid_cookie", 401, fault(900913, "Invalid Cookie is Provided", "Invalid Cookie is Provided. Make sure you have given the valid cookie at the Server startup")),
        ("no_cookies", 401, fault(900914, "No Cookies are provided at Server startup.", "No Cookies are provided at Server startup.. Make sure you have given the authorized cookie at the server startup")),
        ("unprocessable_entity", 422, fault(900915, "Unprocessable entity", &general("Unprocessable entity"))),
        ("unprocessable_entity_alt", 500, fault(900916, "Unprocessable entity", &general("Unprocessable entity"))),
        ("invalid_auth_scheme", 401, fault(900917, "Invalid Authentication scheme", "Invalid Authentication scheme. API can not be used with this authentication scheme")),
        // `templates/noProdAvailableError.mustache`, `noSandAvailableError.mustache`.
        ("production_key_without_endpoint", 403, json!({"ERROR_CODE": "900901", "ERROR_MESSAGE": "Production key offered to the API with no production endpoint"})),
        ("sandbox_key_without_endpoint", 403, json!({"ERROR_CODE": "900901", "ERROR_MESSAGE": "Sandbox key offered to the API with no sandbox endpoint"})),
        // `gateway/filters/throttle_filter.bal`, `constants/api_throttle_out_constants.bal`.
        ("api_throttled", 429, throttled(900800)),
        ("resource_throttled", 429, throttled(900802)),
        ("application_throttled", 429, throttled(900803)),
        ("subscription_throttled", 429, throttled(900804)),
        ("custom_policy_throttled", 429, throttled(900806)),
        ("blocked", 403, fault(900805, "Message blocked", "You have been blocked from accesing the resource")),
        ("throttle_internal_error", 500, fault(900808, "Internal server error occured", "Internal server error occured")),
        ("throttle_policy_missing", 500, fault(900809, "Internal server error occured", "POLICY ENFORCEMENT ERROR")),
        // `templates/apiNotFoundService.mustache`, `faultResponses.mustache`.
        ("not_found", 404, json!({"code": 404, "type": "Status report", "message": "Runtime Error", "description": "No matching resource found for given API Request"})),
        // Seed 000 (codes as strings); the filter keeps Envoy's 503/504 (docs/ERROR-CODES.md).
        ("connection_failed", 503, json!({"fault": {"code": "101503", "message": "Runtime Error", "description": "Error connecting to the back end"}})),
        ("connection_timed_out", 504, json!({"fault": {"code": "101504", "message": "Runtime Error", "description": "Connection timed out"}})),
    ]
}

/// Every entry with a Microgateway counterpart, rendered in the `microgateway` format, answers what
/// the Microgateway answers: status, body (shape, code as number or string, texts), content type.
#[test]
fn every_counterpart_answers_as_the_microgateway_does() {
    let mgw = settings(r#"{"errors":{"format":"microgateway"}}"#);
    let answers = microgateway_answers();
    let mut shapes = std::collections::BTreeSet::new();
    for (id, status, body) in &answers {
        let fault = crate::catalogue::by_id(id).unwrap_or_else(|| panic!("{id} not in the catalogue"));
        let rendered = render(&Fault::new(fault), &mgw, None);
        let sent: serde_json::Value = serde_json::from_str(&rendered.body).unwrap();
        assert_eq!((rendered.status, &sent), (*status, body), "{id}");
        assert!(rendered.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{id}");
        shapes.insert(body.as_object().unwrap().keys().next().cloned().unwrap());
    }
    // Each body shape occurs: `fault`, the status report (`code`) and the key-type refusal.
    assert_eq!(shapes.into_iter().collect::<Vec<_>>(), ["ERROR_CODE", "code", "fault"]);
    assert_eq!(answers.len(), 32);
}
