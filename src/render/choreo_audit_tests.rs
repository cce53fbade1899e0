//! A seeded audit of the `choreo-connect` format against Choreo Connect itself: every catalogue
//! fault, rendered with random protocol states, next access times and `Retry-After` values, is
//! compared with what Choreo Connect's enforcer or router answers, written here from its sources
//! (wso2/product-microgateway v1.2.0; same in 1.0 and 1.1 unless noted) and never read from the
//! filter's tables. Seed: `CHOREO_AUDIT_SEED` (printed on failure).

use super::*;
use crate::catalogue::{ProtocolState, ALL};
use crate::host::fuzz::Rng;
use crate::schema::RawConfig;

/// Who answers in Choreo Connect: its enforcer (`JsonDeniedResponse`: `code`, `error_message`,
/// `error_description`) or its router (an Envoy local reply from `response_mapper.go`: `code`,
/// `message`, `description`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Enforcer,
    Router,
}

/// Choreo Connect's answer: status, code, message and description (`None`: Choreo Connect's text
/// depends on what the filter cannot know, an exception's or Envoy's message, so the catalogue's
/// stands).
struct Cc {
    source: Source,
    status: u16,
    code: u32,
    message: &'static str,
    description: Option<&'static str>,
}

const ADVICE: &str = "Make sure you have provided the correct security credentials";
const THROTTLED: (&str, &str) = ("Message throttled out", "You have exceeded your quota");
const NOT_FOUND: (&str, &str) = ("Not Found", "The requested resource is not available.");

fn enforcer(status: u16, code: u32, message: &'static str, description: Option<&'static str>) -> Option<Cc> {
    Some(Cc { source: Source::Enforcer, status, code, message, description })
}

fn router(status: u16, code: u32, message: &'static str, description: Option<&'static str>) -> Option<Cc> {
    Some(Cc { source: Source::Router, status, code, message, description })
}

/// What Choreo Connect answers for a fault; `None` where it has no counterpart.
fn choreo_connect(id: FaultId) -> Option<Cc> {
    use FaultId::*;
    match id {
        // JWTAuthenticator / APIKeyAuthenticator: SERVICE_UNAVAILABLE, GeneralErrorCodeConstants.
        ApiBlocked => enforcer(
            503,
            700700,
            "API blocked",
            Some("This API has been blocked temporarily. Please try again later or contact the system administrators."),
        ),
        // HttpRequestHandler: BAD_REQUEST_ERROR, GRAPHQL_INVALID_QUERY(_MESSAGE); description = parser's.
        InvalidGraphqlQuery => enforcer(400, 900422, "INVALID QUERY", None),
        // One route per resource and method: the router's NR mapping.
        NoMatchingResource | NotFound | ChoreoNoRoute => router(404, 404, NOT_FOUND.0, Some(NOT_FOUND.1)),
        // ThrottleFilter + setThrottleErrorToContext: 429 for all but 900805.
        ApiThrottled => enforcer(429, 900800, THROTTLED.0, Some(THROTTLED.1)),
        ResourceThrottled => enforcer(429, 900802, THROTTLED.0, Some(THROTTLED.1)),
        ApplicationThrottled => enforcer(429, 900803, THROTTLED.0, Some(THROTTLED.1)),
        SubscriptionThrottled => enforcer(429, 900804, THROTTLED.0, Some(THROTTLED.1)),
        CustomPolicyThrottled => enforcer(429, 900806, THROTTLED.0, Some(THROTTLED.1)),
        Blocked => {
            enforcer(403, 900805, "Message blocked", Some("You have been blocked from accessing the resource"))
        }
        // Thrown with API_AUTH_GENERAL_ERROR_MESSAGE (401 from JWTAuthenticator, 500 from
        // APIKeyAuthenticator's key manager path: the filter's outage keeps 500).
        AuthGeneralError => enforcer(
            500,
            900900,
            "Unclassified Authentication Failure",
            Some("Unclassified Authentication Failure"),
        ),
        // Description = the exception's message + ". " + advice; the JWT path's message varies.
        InvalidCredentials => enforcer(401, 900901, "Invalid Credentials", None),
        // AuthFilter.updateClusterHeaderAndCheckEnv.
        ProductionKeyWithoutEndpoint => enforcer(
            401,
            900901,
            "Invalid Credentials",
            Some("Production key offered to an API with no production endpoint. Make sure you have provided the correct security credentials"),
        ),
        SandboxKeyWithoutEndpoint => enforcer(
            401,
            900901,
            "Invalid Credentials",
            Some("Sandbox key offered to an API with no sandbox endpoint. Make sure you have provided the correct security credentials"),
        ),
        // FilterUtils.setUnauthenticatedErrorToContext.
        MissingCredentials => enforcer(401, 900901, "Invalid Credentials", Some(ADVICE)),
        // JWTValidator: expiry -> API_AUTH_INVALID_CREDENTIALS.
        AccessTokenExpired => enforcer(
            401,
            900901,
            "Invalid Credentials",
            Some("Invalid Credentials. Make sure you have provided the correct security credentials"),
        ),
        // JWTAuthenticator, API_SUBSCRIPTION_BLOCKED(_MESSAGE/_DESCRIPTION).
        ApiTemporarilyBlocked => {
            enforcer(401, 900907, "The requested API is temporarily blocked", Some("API Subscription is blocked"))
        }
        ResourceForbidden => enforcer(
            403,
            900908,
            "Resource forbidden ",
            Some("User is NOT authorized to access the Resource. API Subscription validation failed."),
        ),
        ApiKeyRestricted => enforcer(403, 900908, "Resource forbidden ", Some("Resource forbidden ")),
        SubscriptionInactive => enforcer(
            403,
            900909,
            "The subscription to the API is inactive",
            Some("User is NOT authorized to access the Resource. API Subscription validation failed."),
        ),
        // KeyValidator.validateScopes: the description names the resource path.
        InsufficientScope => {
            enforcer(403, 900910, "The access token does not allow you to access the requested resource", None)
        }
        // response_mapper.go: status and code per response flag, Envoy's own text as description.
        ChoreoConnectFailure => router(503, 102503, "Upstream connection failed", None),
        ChoreoTimeout => router(504, 102504, "Upstream connection timeout", None),
        ChoreoOverflow => router(503, 102505, "Upstream overflow", None),
        ChoreoRetryLimit => router(500, 102506, "Upstream maximum connect attempts reached", None),
        ChoreoNoCluster => router(500, 102507, "Upstream not configured for the resource", None),
        ChoreoNoHealthyUpstream => router(503, 102508, "No healthy upstream", None),
        ChoreoRemoteReset => router(503, 102509, "Upstream connection reset by the remote", None),
        ChoreoConnectionTermination => router(503, 102510, "Upstream connection termination", None),
        ChoreoLocalReset => router(503, 102511, "Connection reset by the gateway", None),
        // No counterpart in Choreo Connect: 900801, 900807 (THROTTLE_CONDITION_UNKNOWN, never sent),
        // 900808/900809, 900904/900905 (constants only), 900911 (its "missing OpenAPI definition"),
        // 900912-900917, 900424, 102511 payload, API-M's 1010xx/1015xx, WebSocket frames, the
        // filter's own 503 before APIs load.
        HardLimitExceeded
        | BurstThrottled
        | WebsocketFrameThrottled
        | ThrottleInternalError
        | ThrottlePolicyMissing
        | AccessTokenInactive
        | IncorrectAccessTokenType
        | InvalidCredentialsAlt
        | InvalidCredentialFormat
        | InvalidCookie
        | NoCookies
        | UnprocessableEntity
        | UnprocessableEntityAlt
        | InvalidAuthScheme
        | TemporaryServerError
        | IncompletePayload
        | ApisNotLoaded
        | ReceiverIoErrorSending
        | ReceiverIoErrorReceiving
        | SenderIoErrorSending
        | SenderIoErrorReceiving
        | ConnectionFailed
        | ConnectionTimedOut
        | ConnectionClosed
        | ProtocolViolation
        | ConnectionCanceled
        | NewConnectionTimedOut
        | SendAbort
        | ResponseProcessingFailed => None,
    }
}

/// Compares one rendered fault with Choreo Connect's answer; the disagreement, if any.
fn audit(fault: &Fault, settings: &ErrorSettings) -> Result<&'static str, String> {
    let rendered = render(fault, settings, None);
    let body: serde_json::Value = serde_json::from_str(&rendered.body).map_err(|e| format!("{e}"))?;
    let object = body.as_object().ok_or("body is not an object")?;
    // Choreo Connect's bodies carry the code as a string and no next access time, either source.
    if !body["code"].is_string() || object.contains_key("nextAccessTime") {
        return Err(format!("code not a string or nextAccessTime: {}", rendered.body));
    }
    if !rendered.header("content-type").is_some_and(|value| value.starts_with("application/json")) {
        return Err("content-type".to_string());
    }
    let Some(cc) = choreo_connect(fault.id) else { return Ok("no counterpart") };
    let (message_key, description_key) = match cc.source {
        Source::Enforcer => ("error_message", "error_description"),
        Source::Router => ("message", "description"),
    };
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec!["code", message_key, description_key];
    want.sort_unstable();
    let description = cc.description.unwrap_or(fault.id.spec().description);
    let found = (rendered.status, body["code"].clone(), body[message_key].clone(), body[description_key].clone());
    let expected = (cc.status, cc.code.to_string().into(), cc.message.into(), description.into());
    if keys != want || found != expected {
        return Err(format!("want {expected:?} with keys {want:?}, sent {}: {}", rendered.status, rendered.body));
    }
    Ok(match (cc.source, cc.description.is_some()) {
        (Source::Enforcer, true) => "enforcer, every field",
        (Source::Enforcer, false) => "enforcer, description from the catalogue",
        (Source::Router, true) => "router, every field",
        (Source::Router, false) => "router, description from the catalogue",
    })
}

#[test]
fn choreo_connect_format_answers_as_choreo_connect() {
    let seed = std::env::var("CHOREO_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00c0_ffee_u64);
    let raw: RawConfig = serde_json::from_str(r#"{"errors":{"format":"choreo-connect"}}"#).unwrap();
    let settings = ErrorSettings::compile(raw.errors, &raw.credentials).unwrap();
    let mut rng = Rng::new(seed);
    let mut classes: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut failures: Vec<String> = Vec::new();
    // Every fault once, then random ones with random states and throttle details.
    let cases = ALL.len() + 3_000;
    for case in 0..cases {
        let id = ALL.get(case).copied().unwrap_or_else(|| ALL[rng.below(ALL.len())]);
        let mut fault = Fault::transport(id, ProtocolState::ALL[rng.below(ProtocolState::ALL.len())]);
        if rng.below(2) == 0 {
            fault.next_access_time = Some(1_700_000_000 + rng.word() % 100_000_000);
            fault.retry_after_s = Some(rng.word() % 3_600);
        }
        match audit(&fault, &settings) {
            Ok(class) => *classes.entry(class).or_default() += 1,
            Err(why) => failures.push(format!("{}: {why}", id.spec().id)),
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed} (CHOREO_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    for class in [
        "enforcer, every field",
        "enforcer, description from the catalogue",
        "router, every field",
        "router, description from the catalogue",
        "no counterpart",
    ] {
        assert!(classes.get(class).copied().unwrap_or(0) > 0, "seed {seed}: no case of {class}: {classes:?}");
    }
    assert_eq!(classes.values().sum::<usize>(), cases);
}
