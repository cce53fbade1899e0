//! A seeded audit of the default `apim-json` and `apim-xml` formats against WSO2 API Manager's own
//! gateway: every catalogue fault, rendered with random protocol states, next access times and
//! `Retry-After` values, is compared with what API-M's handlers and sequences answer, written here
//! from their sources and never read from the filter's tables. Where API-M answers otherwise and
//! seed 002 or WSO2-CONTRACT.md speak, the row keeps what they decide and names API-M's answer as
//! a conflict. Seed: `APIM_AUDIT_SEED` (printed on failure).
//!
//! Sources: wso2/product-apim tags v4.0.0 and v4.2.0,
//! `modules/distribution/product/src/main/conf/synapse-configs/default/sequences/` (the same lines in
//! both): `_auth_failure_handler_.xml` line 13 (`{"code":"$1","message":"$2","description":"$3"}`),
//! lines 27-30 (the handler's status, 401 when none); `_throttle_out_handler_.xml` lines 15 and 26
//! (the same, plus `"nextAccessTime"`); `fault.xml` line 35 (`{"code":"$1","type":"Status
//! report","message":"Runtime Error","description":"$2"}`), lines 46-51 (`CUSTOM_HTTP_SC`, else
//! 500); `main.xml` lines 74 and 85 (404); `_production_key_error_.xml` / `_sandbox_key_error_.xml`
//! lines 20-23; `modules/distribution/resources/api_templates/velocity_template.xml` (v4.2.0)
//! lines 154-170, a blocked API's resource (`<am:fault xmlns:am="http://wso2.org/apimanager">`,
//! 700700, 503). v3.2.0's `fault.xml` lines 36-41 wrote the status report in XML (`am:type`).
//! wso2/carbon-apimgt, `components/apimgt/org.wso2.carbon.apimgt.gateway/.../handlers/`:
//! `security/APIAuthenticationHandler.java` (`handleAuthFailure`: 500 for 900900 and 900911, 403
//! for 900906/900908/900910, 401 with `WWW-Authenticate: <challenges> error="invalid_token",
//! error_description="The provided token is invalid"` for every other code),
//! `security/APISecurityConstants.java` (messages; `getFailureMessageDetailDescription`; the 3.x
//! XML namespace `ams` = `http://wso2.org/apimanager/security`; 900911 = missing OpenAPI
//! definition, "Internal Server Error"), `security/oauth/OAuthAuthenticator.java`
//! (`getChallengeString`: `OAuth2 realm="WSO2 API Manager"`), `throttling/ThrottleHandler.java`
//! (`handleThrottleOut`: 503 for 900801, 403 for 900805, 429 otherwise, the description's
//! `" .You can access API after "`, `setRetryAfterHeader`: an HTTP date; the 3.x line's
//! `getFaultPayload`: `amt` = `http://wso2.org/apimanager/throttling`, the bare description and an
//! `nextAccessTime` element), `security/CORSRequestHandler.java` (`handleResourceNotFound`: 404,
//! or 405 for a method, through `_resource_mismatch_handler_`).

use super::*;
use crate::catalogue::{ProtocolState, ALL};
use crate::host::fuzz::Rng;
use crate::schema::RawConfig;

/// Which body API-M writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `code`, `message`, `description` (the auth failure and throttle-out handlers, a blocked
    /// API's resource, the GraphQL failure handler).
    Plain,
    /// `code`, `type: Status report`, `message`, `description` (`fault.xml`, `main.xml`).
    StatusReport,
}

/// The XML root's prefix and namespace (3.x's handlers; API-M 4.x writes JSON only).
const AM: (&str, &str) = ("am", "http://wso2.org/apimanager");
const AMS: (&str, &str) = ("ams", "http://wso2.org/apimanager/security");
const AMT: (&str, &str) = ("amt", "http://wso2.org/apimanager/throttling");

/// API-M's answer to a fault, as the filter must render it.
struct Apim {
    /// The handler or sequence that answers in API-M.
    handler: &'static str,
    status: u16,
    message: &'static str,
    /// `None`: API-M's text is an exception's message, so the catalogue's (the seeds') stands.
    description: Option<&'static str>,
    shape: Shape,
    xml: (&'static str, &'static str),
    /// Throttled out with a next access time: the description's suffix, `nextAccessTime` and
    /// `Retry-After`.
    next_access: bool,
    /// Where API-M answers otherwise and the seeds or the contract decide: API-M's answer.
    conflict: Option<&'static str>,
}

const fn row(handler: &'static str, status: u16, message: &'static str, description: Option<&'static str>) -> Apim {
    Apim { handler, status, message, description, shape: Shape::Plain, xml: AMS, next_access: false, conflict: None }
}

const AUTH: &str = "APIAuthenticationHandler + _auth_failure_handler_";
const THROTTLE: &str = "ThrottleHandler + _throttle_out_handler_";
const FAULT: &str = "fault sequence";
const RUNTIME_ERROR: &str = "Runtime Error";
const QUOTA: &str = "You have exceeded your quota";

fn throttled() -> Apim {
    Apim { xml: AMT, next_access: true, ..row(THROTTLE, 429, "Message throttled out", Some(QUOTA)) }
}

/// A transport failure: the API's fault sequence (`fault.xml`) with Synapse's ERROR_MESSAGE.
fn transport(status: u16, description: &'static str) -> Apim {
    Apim {
        shape: Shape::StatusReport,
        xml: AM,
        // WSO2-CONTRACT.md: Envoy's 503 for a failed connection, 504 for a timeout.
        conflict: Some("fault.xml lines 46-51: 500 (no CUSTOM_HTTP_SC for a backend failure)"),
        ..row(FAULT, status, RUNTIME_ERROR, Some(description))
    }
}

/// What API-M 4.x answers for a fault; `None` where it has no counterpart.
fn apim(id: FaultId) -> Option<Apim> {
    use FaultId::*;
    Some(match id {
        ApiBlocked => Apim {
            xml: AM,
            ..row(
                "velocity_template.xml blocked-API resource",
                503,
                "API blocked",
                Some("This API has been blocked temporarily. Please try again later or contact the system administrators."),
            )
        },
        InvalidGraphqlQuery => Apim {
            xml: AM,
            conflict: Some("GraphQLAPIHandler + _graphql_failure_handler: 400, message INVALID QUERY (seed 002: 422)"),
            ..row("GraphQLAPIHandler", 422, "Invalid GraphQL query", Some("Syntax of the provided GraphQL query is invalid"))
        },
        // APISecurityConstants.OAUTH_TEMPORARY_SERVER_ERROR(_MESSAGE): seed 002's texts.
        TemporaryServerError => Apim {
            xml: AM,
            ..row("backend OAuth (900424)", 500, "Temporary Server Error", Some("Server has encountered an error. Please try again."))
        },
        NoMatchingResource => Apim {
            conflict: Some("CORSRequestHandler.handleResourceNotFound: 404 (405 for a method) via _resource_mismatch_handler_ (seed 002: 403)"),
            ..row(
                AUTH,
                403,
                "No matching resource found in the API for the given request",
                Some("Check the API documentation and add a proper REST resource path to the invocation URL"),
            )
        },
        IncompletePayload => Apim { xml: AM, ..row("pass-through transport (102511)", 400, "Incomplete payload", None) },
        NotFound => Apim {
            shape: Shape::StatusReport,
            xml: AM,
            ..row("main sequence", 404, "Not Found", Some("The requested resource is not available."))
        },
        ApiThrottled | ResourceThrottled | ApplicationThrottled | SubscriptionThrottled | CustomPolicyThrottled
        | BurstThrottled => throttled(),
        HardLimitExceeded => {
            Apim { xml: AMT, ..row(THROTTLE, 503, "API Limit Reached", Some("API not accepting requests")) }
        }
        Blocked => Apim {
            xml: AMT,
            conflict: Some("ThrottleHandler.handleThrottleOut: 403 (seed 002 and the contract: 429)"),
            ..row(THROTTLE, 429, "Message blocked", Some("You have been blocked from accessing the resource"))
        },
        AuthGeneralError => row(AUTH, 500, "Unclassified Authentication Failure", None),
        InvalidCredentials => row(
            AUTH,
            401,
            "Invalid Credentials",
            Some("Invalid Credentials. Make sure you have provided the correct security credentials"),
        ),
        ProductionKeyWithoutEndpoint => Apim {
            shape: Shape::StatusReport,
            xml: AM,
            ..row(
                "_production_key_error_ + fault",
                403,
                RUNTIME_ERROR,
                Some("Production key offered to the API with no production endpoint"),
            )
        },
        SandboxKeyWithoutEndpoint => Apim {
            shape: Shape::StatusReport,
            xml: AM,
            ..row("_sandbox_key_error_ + fault", 403, RUNTIME_ERROR, Some("Sandbox key offered to the API with no sandbox endpoint"))
        },
        MissingCredentials => row(
            AUTH,
            401,
            "Missing Credentials",
            Some("Invalid Credentials. Make sure your API invocation call has a header: 'Authorization : Bearer ACCESS_TOKEN' or 'Authorization : Basic ACCESS_TOKEN' or 'apikey : API_KEY'"),
        ),
        AccessTokenExpired => {
            row(AUTH, 401, "Access Token Expired", Some("Access Token Expired. Renew the access token and try again"))
        }
        AccessTokenInactive => row(
            AUTH,
            401,
            "Access Token Inactive",
            Some("Access Token Inactive. Generate a new access token and try again"),
        ),
        IncorrectAccessTokenType => row(AUTH, 401, "Incorrect Access Token Type is provided", None),
        ApiTemporarilyBlocked => row(AUTH, 401, "The requested API is temporarily blocked", None),
        ResourceForbidden | ApiKeyRestricted => row(AUTH, 403, "Resource forbidden ", None),
        SubscriptionInactive => row(AUTH, 401, "The subscription to the API is inactive", None),
        InsufficientScope => {
            row(AUTH, 403, "The access token does not allow you to access the requested resource", None)
        }
        InvalidCredentialsAlt => Apim {
            conflict: Some("APISecurityConstants: 900911 is a missing OpenAPI definition, 500, Internal Server Error (seed 002: 401)"),
            ..row(AUTH, 401, "Invalid Credentials", Some("Invalid authentication information provided."))
        },
        ReceiverIoErrorSending => transport(503, "Receiver input/output error sending"),
        ReceiverIoErrorReceiving => transport(503, "Receiver input/output error receiving"),
        SenderIoErrorSending => transport(503, "Error in Sender"),
        SenderIoErrorReceiving => transport(503, "Sender input/output error receiving"),
        ConnectionFailed => transport(503, "Error connecting to the back end"),
        ConnectionTimedOut => transport(504, "Error in Sender"),
        ConnectionClosed => transport(503, "Error in Sender"),
        ProtocolViolation => transport(502, "NHTTP protocol violation"),
        ConnectionCanceled => transport(503, "Error connecting to the back end"),
        NewConnectionTimedOut => transport(504, "Error connecting to the back end"),
        SendAbort => transport(503, "Send abort"),
        ResponseProcessingFailed => transport(502, "Response processing failed"),
        // No counterpart: the Microgateway's codes (900808, 900809, 900912-900917: API-M 4.x gives
        // 900912/900913 to claims), a WebSocket frame (no HTTP answer), the filter's own 503 before
        // APIs load, Choreo Connect's upstream codes.
        ThrottleInternalError
        | ThrottlePolicyMissing
        | InvalidCredentialFormat
        | InvalidCookie
        | NoCookies
        | UnprocessableEntity
        | UnprocessableEntityAlt
        | InvalidAuthScheme
        | WebsocketFrameThrottled
        | ApisNotLoaded
        | ChoreoNoRoute
        | ChoreoConnectFailure
        | ChoreoTimeout
        | ChoreoOverflow
        | ChoreoRetryLimit
        | ChoreoNoCluster
        | ChoreoNoHealthyUpstream
        | ChoreoRemoteReset
        | ChoreoConnectionTermination
        | ChoreoLocalReset => return None,
    })
}

/// The challenge the filter sends on a 401 in API-M's formats. API-M 4.x sends `<its
/// authenticators' challenges>, error="invalid_token", error_description="The provided token is
/// invalid"` on every 401, a missing credential's too (`APIAuthenticationHandler.handleAuthFailure`);
/// the contract asks for RFC 6750's `Bearer` scheme and `error="invalid_token"` on every 401.
fn challenge(_id: FaultId, status: u16) -> Option<String> {
    (status == 401).then(|| {
        r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#
            .to_string()
    })
}

/// Compares one rendered fault with API-M's answer in both formats; the disagreement, if any.
fn audit(fault: &Fault, json: &ErrorSettings, xml: &ErrorSettings) -> Result<&'static str, String> {
    let Some(want) = apim(fault.id) else { return Ok("no counterpart") };
    let description = want.description.unwrap_or(fault.id.spec().description);
    let next = fault.next_access_time.filter(|_| want.next_access).map(format_next_access_time);
    // JSON: the sequences' payloadFactory formats, code as a string, `application/json; charset=UTF-8`
    // (seed 002's transcript).
    let sent = render(fault, json, None);
    let mut expected = serde_json::Map::new();
    expected.insert("code".into(), fault.code.to_string().into());
    if want.shape == Shape::StatusReport {
        expected.insert("type".into(), "Status report".into());
    }
    expected.insert("message".into(), want.message.into());
    let json_description = match &next {
        Some(time) => format!("{description} .You can access API after {time}"),
        None => description.to_string(),
    };
    expected.insert("description".into(), json_description.into());
    if let Some(time) = &next {
        expected.insert("nextAccessTime".into(), time.clone().into());
    }
    let body: serde_json::Value = serde_json::from_str(&sent.body).map_err(|e| format!("{e}: {}", sent.body))?;
    if body != serde_json::Value::Object(expected.clone()) {
        return Err(format!("json: want {expected:?}, sent {}", sent.body));
    }
    // Headers, the same in both formats: the status, the challenge, Retry-After (seconds; API-M 4.x
    // sends an HTTP date) when throttled with a wait.
    let retry_after = fault.retry_after_s.map(|seconds| seconds.to_string());
    for (format, sent, content_type) in [
        ("json", &sent, "application/json; charset=UTF-8"),
        ("xml", &render(fault, xml, None), "application/xml; charset=UTF-8"),
    ] {
        let headers = (
            sent.status,
            sent.header("content-type"),
            sent.header("www-authenticate").map(String::from),
            sent.header("retry-after").map(String::from),
        );
        let wanted = (want.status, Some(content_type), challenge(fault.id, want.status), retry_after.clone());
        if headers != wanted {
            return Err(format!("{format} status/headers: want {wanted:?}, sent {headers:?}"));
        }
    }
    // XML: the 3.x handlers' elements under the family's namespace; the description carries the
    // next access time as JSON's does, and `nextAccessTime` follows.
    let sent = render(fault, xml, None);
    let document = roxmltree::Document::parse(&sent.body).map_err(|e| format!("{e}: {}", sent.body))?;
    let root = document.root_element();
    let (prefix, namespace) = want.xml;
    if root.tag_name().name() != "fault"
        || root.tag_name().namespace() != Some(namespace)
        || !sent.body.starts_with(&format!("<{prefix}:fault xmlns:{prefix}=\"{namespace}\">"))
    {
        return Err(format!("xml root: want {prefix}:fault in {namespace}, sent {}", sent.body));
    }
    let children: Vec<(String, String)> = root
        .children()
        .filter(|node| node.is_element())
        .map(|node| (node.tag_name().name().to_string(), node.text().unwrap_or_default().to_string()))
        .collect();
    let mut wanted = vec![("code".to_string(), fault.code.to_string())];
    if want.shape == Shape::StatusReport {
        wanted.push(("type".into(), "Status report".into()));
    }
    wanted.push(("message".into(), want.message.into()));
    wanted.push((
        "description".into(),
        match &next {
            Some(time) => format!("{description} .You can access API after {time}"),
            None => description.to_string(),
        },
    ));
    if let Some(time) = &next {
        wanted.push(("nextAccessTime".into(), time.clone()));
    }
    if children != wanted {
        return Err(format!("xml: want {wanted:?}, sent {}", sent.body));
    }
    Ok(match (want.conflict.is_some(), want.shape, next.is_some()) {
        (true, _, _) => "the seeds or the contract decide",
        (false, Shape::StatusReport, _) => "as API-M, status report",
        (false, Shape::Plain, true) => "as API-M, throttled with a next access time",
        (false, Shape::Plain, false) => "as API-M",
    })
}

fn compile(format: &str) -> ErrorSettings {
    let text = format!(r#"{{"errors":{{"format":"{format}"}}}}"#);
    let raw: RawConfig = serde_json::from_str(&text).unwrap();
    ErrorSettings::compile(raw.errors, &raw.credentials).unwrap()
}

#[test]
fn apim_formats_answer_as_api_manager() {
    let seed = std::env::var("APIM_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0a91_3a11_u64);
    let (json, xml) = (compile("apim-json"), compile("apim-xml"));
    let mut rng = Rng::new(seed);
    let mut classes: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut failures: Vec<String> = Vec::new();
    // Every fault once, then random ones with random states and throttle details.
    let cases = ALL.len() + 3_000;
    for case in 0..cases {
        let id = ALL.get(case).copied().unwrap_or_else(|| ALL[rng.below(ALL.len())]);
        let mut fault = Fault::transport(id, ProtocolState::ALL[rng.below(ProtocolState::ALL.len())]);
        if id.spec().family == Family::Auth && id.spec().status == 401 && id != FaultId::MissingCredentials {
            fault = fault.with_challenge_error("invalid_token");
        }
        if rng.below(2) == 0 && apim(id).is_some_and(|want| want.next_access) {
            fault.next_access_time = Some(1_700_000_000 + rng.word() % 100_000_000);
            fault.retry_after_s = Some(1 + rng.word() % 3_600);
        }
        match audit(&fault, &json, &xml) {
            Ok(class) => *classes.entry(class).or_default() += 1,
            Err(why) => failures.push(format!("{}: {why}", id.spec().id)),
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed} (APIM_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    for class in [
        "as API-M",
        "as API-M, status report",
        "as API-M, throttled with a next access time",
        "the seeds or the contract decide",
        "no counterpart",
    ] {
        assert!(classes.get(class).copied().unwrap_or(0) > 0, "seed {seed}: no case of {class}: {classes:?}");
    }
    assert_eq!(classes.values().sum::<usize>(), cases);
}

/// The table itself: the conflicts with the seeds or the contract are the ones reported, and
/// every entry API-M answers names its handler.
#[test]
fn the_audit_table_names_its_conflicts() {
    let conflicts: Vec<&str> =
        ALL.iter().filter(|id| apim(**id).is_some_and(|want| want.conflict.is_some())).map(|id| id.spec().id).collect();
    assert_eq!(
        conflicts,
        [
            "invalid_graphql_query",
            "no_matching_resource",
            "blocked",
            "invalid_credentials_alt",
            "receiver_io_error_sending",
            "receiver_io_error_receiving",
            "sender_io_error_sending",
            "sender_io_error_receiving",
            "connection_failed",
            "connection_timed_out",
            "connection_closed",
            "protocol_violation",
            "connection_canceled",
            "new_connection_timed_out",
            "send_abort",
            "response_processing_failed",
        ]
    );
    let answered = ALL.iter().filter_map(|id| apim(*id)).filter(|want| !want.handler.is_empty()).count();
    assert_eq!(answered, 40, "entries with an API-M counterpart");
}
