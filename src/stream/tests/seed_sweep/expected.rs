//! The seed sweep's expectations: what each seed says a request of each kind gets, written from
//! the seeds' text (file:line beside each statement), and the checks of every outcome.

use super::{Answered, Kind, Outcome};

/// How many statement classes each sweep must meet (each asserted to occur).
pub(super) const APIM_CLASSES: usize = 23; // 22 codes and forwarded
pub(super) const MGW_CLASSES: usize = 26;
pub(super) const KANALI_CLASSES: usize = 7;
pub(super) const TYK_CLASSES: usize = 11;
pub(super) const XML_CLASSES: usize = 4;

/// One statement of seed 002's tables (seed 001's where 002 is silent) and WSO2-CONTRACT.md.
pub(super) struct Apim {
    pub(super) status: u16,
    pub(super) code: &'static str,
    /// Seed 002's "Error Message", compared without case and surrounding spaces.
    pub(super) message: Option<&'static str>,
    /// Seed 002's "Description", where WSO2 sends it as its description.
    pub(super) description: Option<&'static str>,
}

const fn apim(
    status: u16,
    code: &'static str,
    message: Option<&'static str>,
    description: Option<&'static str>,
) -> Apim {
    Apim { status, code, message, description }
}

/// `None`: the request is forwarded.
pub(super) fn apim_expected(kind: Kind) -> Option<Apim> {
    Some(match kind {
        Kind::Open | Kind::Valid => return None,
        // Seed 002:13 main.xml, "the endpoint being called does not exist".
        Kind::NoApi => apim(404, "404", None, None),
        // 002:77-79, 002:115; 001:43 "403 | No matching resource found".
        Kind::UnknownResource => apim(403, "900906", Some("No matching resource found in the API for the given request"), None),
        // 002:67-69, 002:114 (001:26 "Accessing an API without the Authorization: Bearer header"):
        // another scheme, or `Bearer` with no token, is a request without that header.
        Kind::Missing | Kind::Basic | Kind::EmptyBearer => apim(401, "900902", Some("Missing credentials"), None),
        // 002:58-65: "invalid, inactive or expired" is 900901; 001:34-37 900903/900904 deprecated.
        Kind::BadSignature | Kind::Expired => apim(401, "900901", Some("Invalid credentials"), None),
        // 002:71-75, 002:114.
        Kind::AppTokenOnUserResource => apim(
            401,
            "900905",
            Some("Incorrect access token type is provided"),
            Some("The access token type used is not supported when invoking the API. The supported access token types are application and user accesses tokens."),
        ),
        // 002:81-83, 002:114.
        Kind::SubscriptionBlocked => apim(401, "900907", Some("The requested API is temporarily blocked"), None),
        // 002:89-91, 002:114.
        Kind::SubscriptionOnHold => apim(
            401,
            "900909",
            Some("The subscription to the API is inactive"),
            Some("The status of the API has changed to an inaccessible/unavailable state."),
        ),
        // 002:85-87 ("Invoke an unsubscribed API"), 002:115.
        Kind::Unsubscribed => apim(403, "900908", Some("Resource forbidden"), None),
        // 002:93-97, 002:115.
        Kind::NoScope => {
            apim(403, "900910", Some("The access token does not allow you to access the requested resource"), None)
        }
        // 002:103 (sequences error codes); WSO2-CONTRACT.md lines 24-25: 403.
        Kind::SandboxKey => apim(403, "900901", None, None),
        // 002:54-56, 002:118; 000:211 "The Key Manager is down".
        Kind::KeyManagerDown => apim(500, "900900", Some("Unclassified authentication failure"), None),
        // 002:38-42, 002:117.
        Kind::ApiThrottled => apim(429, "900800", Some("Message throttled out"), None),
        // 002:44, 002:45, 002:49, 002:51, 002:117 (their messages: see the report's deliberate list).
        Kind::ResourceThrottled => apim(429, "900802", None, None),
        Kind::ApplicationThrottled => apim(429, "900803", None, None),
        Kind::SubscriptionThrottled => apim(429, "900804", None, None),
        Kind::CustomThrottled => apim(429, "900806", None, None),
        // 002:50, 002:117 (WSO2-CONTRACT.md:29: the seed's 429 is the default).
        Kind::Blocked => apim(429, "900805", Some("Message blocked"), None),
        // 002:52, 002:117.
        Kind::Burst => apim(429, "900807", Some("Message throttled out"), None),
        // 002:43, 002:119.
        Kind::HardLimit => apim(503, "900801", None, None),
        // 002:35, 002:119.
        Kind::BlockedApi => apim(
            503,
            "700700",
            Some("API blocked"),
            Some("This API has been blocked temporarily. Please try again later or contact the system administrators."),
        ),
        // 002:98, 002:113.
        Kind::TooLarge => apim(
            400,
            "102511",
            Some("Incomplete payload"),
            Some("The payload sent with the request is too large and the client is unable to keep the connection alive until the payload is completely transferred to the API Gateway"),
        ),
        // 002:156-161: timed out after the request was sent, 101504 + REQUEST_DONE(3); the status is
        // Envoy's (WSO2-CONTRACT.md:26-27).
        Kind::UpstreamTimeout => apim(504, "101507", Some("Runtime Error"), None),
        // 002:128 connection failed; WSO2-CONTRACT.md:26-27 (503).
        Kind::UpstreamRefused => apim(503, "101503", Some("Runtime Error"), None),
    })
}

fn answered(kind: Kind, outcome: &Outcome) -> &Answered {
    match outcome {
        Outcome::Answered(sent) => sent,
        Outcome::Forwarded(_) => panic!("{kind:?} was forwarded"),
    }
}

/// Forwarded requests lose `Authorization` (WSO2-CONTRACT.md:64).
fn forwarded(kind: Kind, outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Forwarded(request) => assert!(!request.contains_key("authorization"), "{kind:?}"),
        Outcome::Answered(sent) => panic!("{kind:?} answered {} {}", sent.status, sent.body),
    }
    "forwarded"
}

fn throttled_with_retry(code: &str) -> bool {
    code.starts_with("9008") && code != "900805" && code != "900801"
}

pub(super) fn check_apim(kind: Kind, outcome: &Outcome, _origin: bool) -> &'static str {
    let Some(want) = apim_expected(kind) else { return forwarded(kind, outcome) };
    let sent = answered(kind, outcome);
    let body = sent.json();
    assert_eq!(sent.status, want.status, "{kind:?}: {}", sent.body);
    // WSO2-CONTRACT.md:43-47: API-M 4.x JSON, `code` a string; transport faults a status report.
    assert_eq!(body["code"].as_str(), Some(want.code), "{kind:?}: {}", sent.body);
    if want.code.starts_with("101") {
        assert_eq!(body["type"], "Status report", "{kind:?}");
    }
    if let Some(message) = want.message {
        let sent_message = body["message"].as_str().unwrap_or_default().trim().to_lowercase();
        assert_eq!(sent_message, message.to_lowercase(), "{kind:?}");
    }
    if let Some(description) = want.description {
        assert_eq!(body["description"], description, "{kind:?}");
    }
    // WSO2-CONTRACT.md:60: a 401 carries the scheme's challenge; a refused credential says
    // `error="invalid_token"`.
    if sent.status == 401 {
        let challenge = sent.header("www-authenticate").unwrap_or_else(|| panic!("{kind:?}: no challenge"));
        assert!(challenge.starts_with("Bearer"), "{kind:?}: {challenge}");
        if kind != Kind::Missing {
            assert!(challenge.contains("error=\"invalid_token\""), "{kind:?}: {challenge}");
        }
    }
    // WSO2-CONTRACT.md:61, 44-45: throttled (not blocked, not the hard limit) says when to retry.
    let retry = sent.header("retry-after");
    assert_eq!(retry.is_some(), throttled_with_retry(want.code), "{kind:?}: Retry-After {retry:?}");
    if throttled_with_retry(want.code) {
        assert!(body["nextAccessTime"].is_string(), "{kind:?}: {}", sent.body);
    }
    // WSO2-CONTRACT.md:62-63 (and seed 002:225): CORS on every fault.
    assert_eq!(sent.header("access-control-allow-origin"), Some("*"), "{kind:?}");
    assert!(sent.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{kind:?}");
    want.code
}

/// The code a Microgateway body carries, as text, and whether it was written as a number.
fn microgateway_code(body: &serde_json::Value) -> (String, bool) {
    let code = if body["fault"].is_object() {
        &body["fault"]["code"]
    } else if body["ERROR_CODE"].is_string() {
        &body["ERROR_CODE"]
    } else {
        &body["code"]
    };
    match code {
        serde_json::Value::String(text) => (text.clone(), false),
        other => (other.to_string(), true),
    }
}

/// Seed 000's codes by kind (lines 221-249), with `compatibility: microgateway` (WSO2-CONTRACT.md
/// lines 20-22: 900903 still sent by the Microgateway, 900912 and 900917 401).
fn microgateway_expected(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Open | Kind::Valid => return None,
        Kind::NoApi => "404",
        Kind::UnknownResource => "900906",        // 000:230
        Kind::Missing => "900902",                // 000:226
        Kind::BadSignature => "900901",           // 000:225
        Kind::Expired => "900903",                // 000:227
        Kind::Basic => "900917",                  // 000:241
        Kind::EmptyBearer => "900912",            // 000:236
        Kind::AppTokenOnUserResource => "900905", // 000:229
        Kind::SubscriptionBlocked => "900907",    // 000:231
        Kind::SubscriptionOnHold => "900909",     // 000:233
        Kind::Unsubscribed => "900908",           // 000:232
        Kind::NoScope => "900910",                // 000:234
        Kind::SandboxKey => "900901",             // 000:223
        Kind::KeyManagerDown => "900900",         // 000:198-212, 224
        Kind::ApiThrottled => "900800",           // 000:242
        Kind::ResourceThrottled => "900802",      // 000:243
        Kind::ApplicationThrottled => "900803",   // 000:244
        Kind::SubscriptionThrottled => "900804",  // 000:245
        Kind::Blocked => "900805",                // 000:246
        Kind::CustomThrottled => "900806",        // 000:247
        Kind::Burst => "900807",
        Kind::HardLimit => "900801",
        Kind::BlockedApi => "700700",
        Kind::TooLarge => "102511",
        Kind::UpstreamTimeout => "101504", // 000:164-172
        Kind::UpstreamRefused => "101503", // 000:149-157
    })
}

pub(super) fn check_microgateway(kind: Kind, outcome: &Outcome, _origin: bool) -> &'static str {
    let Some(want) = microgateway_expected(kind) else { return forwarded(kind, outcome) };
    let sent = answered(kind, outcome);
    let body = sent.json();
    let (code, number) = microgateway_code(&body);
    assert_eq!(code, want, "{kind:?}: {}", sent.body);
    let fault = |code: serde_json::Value, description: &str| serde_json::json!({"fault": {"code": code, "message": "Runtime Error", "description": description}});
    match kind {
        // Seed 000:149-157, 164-173: word for word, codes as strings.
        Kind::UpstreamRefused => assert_eq!(body, fault("101503".into(), "Error connecting to the back end")),
        Kind::UpstreamTimeout => assert_eq!(body, fault("101504".into(), "Connection timed out")),
        // Seed 000:198-208: word for word, the code a number; 500 (seed 002:118).
        Kind::KeyManagerDown => {
            let general = "Unclassified Authentication Failure";
            let want = serde_json::json!({"fault": {"code": 900900, "message": general, "description": general}});
            assert_eq!((sent.status, &body), (500, &want));
        }
        // Seed 000's own codes are numbers in its `fault` wrapper.
        _ if body["fault"].is_object() => assert!(number, "{kind:?}: {}", sent.body),
        _ => {}
    }
    // WSO2-CONTRACT.md:20-22: 900903 and 900912-900917 are 401.
    if matches!(want, "900903" | "900912" | "900917" | "900902" | "900907" | "900909") {
        assert_eq!(sent.status, 401, "{kind:?}");
    }
    want
}

/// Seed 003 lines 26-179: code, status, message.
const KANALI: [(u8, u16, &str); 15] = [
    (0, 404, "No ApiProxy resource was not found that matches the request."),
    (1, 500, "An unknown error occurred."),
    (2, 404, "No MockTarget resource was not found that matches the request."),
    (3, 500, "Could not open or load plugin."),
    (4, 500, "Could not lookup plugin symbol."),
    (5, 500, "Plugin does not implement the correct interface."),
    (6, 500, "Could not retrieve Kubernetes secret."),
    (7, 500, "Could not create x509 key pair."),
    (8, 502, "Could not get a valid or any response from the upstream server."),
    (9, 500, "Could not retrieve Kubernetes services."),
    (10, 500, "Could not retrieve any matching Kubernetes services."),
    (11, 500, "Plugin threw a runtime error."),
    (12, 403, "My lips are sealed."),
    (13, 401, "Api key is not authorized."),
    (14, 429, "The Api key you are using has exceeded its rate limit."),
];
const KANALI_NAMES: [&str; 15] =
    ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14"];

pub(super) fn check_kanali(kind: Kind, outcome: &Outcome, _origin: bool) -> &'static str {
    if apim_expected(kind).is_none() {
        return forwarded(kind, outcome);
    }
    let sent = answered(kind, outcome);
    let body = sent.json();
    // Seed 003:14-21: exactly these four fields, `code` a number, `status` the HTTP status.
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{kind:?}: {}", sent.body);
    let code = body["code"].as_u64().unwrap_or_else(|| panic!("{kind:?}: {}", sent.body));
    let (_, status, message) = KANALI.iter().find(|(c, _, _)| u64::from(*c) == code).expect("one of seed 003's");
    assert_eq!((sent.status, body["status"].as_u64()), (*status, Some(u64::from(*status))), "{kind:?}");
    assert_eq!(body["message"], *message, "{kind:?}");
    let details = format!("Visit https://kanali.io/docs/v2/errorcodes/#{code:02} for more details.");
    assert_eq!(body["details"], details.as_str(), "{kind:?}");
    // The seed's meanings: 13 an API key not authorized (401), 14 over its rate limit (429), 08 no
    // valid response from the upstream, 00 no match for the request.
    let want = apim_expected(kind).map(|apim| apim.status);
    match want {
        Some(401) => assert_eq!(code, 13, "{kind:?}"),
        // A block is no rate limit: Kanali's only 403 ("My lips are sealed.") answers it.
        Some(429) if kind == Kind::Blocked => assert_eq!(code, 12, "{kind:?}"),
        Some(429) => assert_eq!(code, 14, "{kind:?}"),
        _ if matches!(kind, Kind::UpstreamRefused | Kind::UpstreamTimeout) => assert_eq!(code, 8),
        _ if kind == Kind::NoApi => assert_eq!(code, 0),
        _ => {}
    }
    KANALI_NAMES[code as usize]
}

/// Seed 004's entries under `status`: the text before any parenthesised note.
fn tyk_listed(status: u16, text: &str) -> bool {
    let heading = format!("**Error Code {status}:**");
    let Some(start) = TYK_SEED.find(&heading) else { return false };
    TYK_SEED[start + heading.len()..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("- "))
        .filter_map(|line| line.strip_prefix("- "))
        .any(|entry| entry == text || entry.strip_prefix(text).is_some_and(|rest| rest.starts_with(" (")))
}

pub(super) fn check_tyk(kind: Kind, outcome: &Outcome, _origin: bool) -> &'static str {
    let Some(apim) = apim_expected(kind) else { return forwarded(kind, outcome) };
    let sent = answered(kind, outcome);
    let body = sent.json();
    // WSO2-CONTRACT.md:54: `{"error":"..."}` with the statuses that seed lists.
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{kind:?}: {}", sent.body);
    let text = body["error"].as_str().unwrap_or_else(|| panic!("{kind:?}: {}", sent.body)).to_string();
    assert!(
        tyk_listed(sent.status, &text),
        "{kind:?}: {} {text:?} is not under seed 004's {}",
        sent.status,
        sent.status
    );
    let pinned: Option<(u16, &str)> = match kind {
        Kind::Missing => Some((401, "Authorization Field Missing")), // 004:61
        Kind::BadSignature | Kind::Expired => Some((403, "Key not authorised")), // 004:84-88
        Kind::SubscriptionThrottled => Some((403, "Quota Exceeded")), // 004:73
        Kind::NoApi => Some((404, "API not found")),                 // 004:130
        Kind::NoScope => Some((403, "No matching policy found in scope claim")), // 004:96
        Kind::UpstreamRefused | Kind::UpstreamTimeout => Some((500, "There was a problem proxying the request")), // 004:202
        _ if apim.status == 429 && kind != Kind::Blocked => Some((429, "Rate Limit Exceeded")), // 004:187
        _ => None,
    };
    if let Some((status, want)) = pinned {
        assert_eq!((sent.status, text.as_str()), (status, want), "{kind:?}");
    }
    TYK_TEXTS.iter().find(|t| **t == text).copied().unwrap_or_else(|| panic!("{kind:?}: new text {text:?}"))
}

/// The Tyk texts the sweep meets (a class each).
const TYK_TEXTS: [&str; 10] = [
    "Authorization Field Missing",
    "Key not authorised",
    "Quota Exceeded",
    "API not found",
    "No matching policy found in scope claim",
    "There was a problem proxying the request",
    "Rate Limit Exceeded",
    "Access to this API has been disallowed",
    "Access to this resource has been disallowed",
    "Request malformed",
];

pub(super) fn check_xml(kind: Kind, outcome: &Outcome, _origin: bool) -> &'static str {
    let Some(apim) = apim_expected(kind) else { return forwarded(kind, outcome) };
    let sent = answered(kind, outcome);
    assert_eq!(sent.status, apim.status, "{kind:?}");
    assert!(sent.header("content-type").is_some_and(|t| t.contains("xml")), "{kind:?}");
    let document = roxmltree::Document::parse(&sent.body).unwrap_or_else(|e| panic!("{kind:?}: {e}: {}", sent.body));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "fault", "{kind:?}");
    // Seed 001:97 (API-M's `am` namespace); WSO2-CONTRACT.md:50-51: `security` for authentication,
    // `throttling` for throttling faults.
    // A key type without an endpoint (900901, 403) is API-M's generic `fault` sequence's answer
    // (`_sandbox_key_error_` calls it; WSO2-CONTRACT.md: generic faults are `fault.xml`'s `am`).
    let namespace = match apim.code {
        _ if kind == Kind::SandboxKey => "http://wso2.org/apimanager",
        code if code.starts_with("9009") => "http://wso2.org/apimanager/security",
        code if code.starts_with("9008") => "http://wso2.org/apimanager/throttling",
        _ => "http://wso2.org/apimanager",
    };
    assert_eq!(root.tag_name().namespace(), Some(namespace), "{kind:?}: {}", sent.body);
    let child =
        |name: &str| root.children().find(|n| n.tag_name().name() == name).and_then(|n| n.text()).map(str::to_string);
    assert_eq!(child("code").as_deref(), Some(apim.code), "{kind:?}");
    if apim.code.starts_with("101") {
        // Seed 001:97: `<am:type>Status report</am:type><am:message>Runtime Error</am:message>`.
        let names: Vec<&str> = root.children().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
        assert_eq!(names, ["code", "type", "message", "description"], "{kind:?}");
        assert_eq!(
            (child("type").as_deref(), child("message").as_deref()),
            (Some("Status report"), Some("Runtime Error"))
        );
        assert_eq!(root.lookup_prefix(namespace), Some("am"), "{kind:?}");
    }
    namespace
}

/// Seed 004 (Tyk) lines 10-221: the statuses and the top-level entries listed under each, verbatim.
pub(super) const TYK_SEED: &str = r#"
**Error Code 400:**
- Creating key without policy
- Authorization Field Missing
- testGRPCIgnore - no header
- Extractor Errors
- Failed to create key, keys must have at least one Access Rights record set
- Attempted access with malformed header, values not in basic auth format (basic auth)
- Attempted access with malformed header. Auth data not encoded correctly (basic auth)
- POST method with malformed data for Batch request
- Request malformed
- Spec field is missing
- Request field is missing
- Spec not valid, skipped!
- Body do not contain username (Basic Auth from body)
- Body do not contain password
- Request with empty authorization header (JWT session)
- The provided request is empty (graphql playground)
- Key cannot be used without a certificate
- Key must be used with an existent certificate
- Failed to remove the key
- Request ID does not match that in policy! For Update operations these must match
- ErrAPINotMigrated (oasEndpoint)
- Request APIID does not match that in Definition! For Update operations these must match
- Must specify an apiID to update
- Must specify an apiID to delete
- Must specify an apiID to patch
- Couldn’t decode instruction (policyUpdateHandler)
- Failed to create key, keys must have at least one Access Rights record set.
- API is not Oauth2
- Policy access rights doesn’t contain API this OAuth client belongs to
- Missing parameter api_id
- Oauth is not enabled for this API
- Health checks are not enabled for this node
- Cannot parse form. Form malformed
- oAuthTokenEmpty
- oAuthClientIdEmpty
- OAuth client doesn’t exist
- ErrImportWithTykExtension
- ErrPayloadWithoutTykExtension
- Couldn’t decode OAS object
- Batch request malformed
- Batch request creation failed, request structure malformed
- Error parsing form. Form malformed
- Access to this API has been disallowed
- Authorization field missing
- Bearer token malformed
**Error Code 401:**
- Authorization Field Missing
- Wrong Password (Basic Auth)
- Header missing (JS Middleware)
- Not authorised (JS middleware)
- oauthClientIdEmpty
- oauthClientSecretEmpty
- Request signature verification failed (auth keys: could be empty signature header, or validation failed)
**Error Code 403:**
- Wrong key ID (when creating key with policy)
- Quota Exceeded
- Rejected paths not within whitelist
- This organisation quota has been exceed, please contact your API administrator (processing requests live)
- This organisation rate limit has been exceeded, please contact your API administrator
- This organization access has been disabled or quota/rate limit is exceeded, please contact your API administrator (processing requests off thread)
- Invalid Token (Form Value Test for Value ExtractorHeader Source)
- Tls: bad certificate (no valid cert IDs exist in Certificate.ControlAPI)
- Client TLS certificate is required (Multiple APIs on same domain without certs)
- Certificate with SHA256 $CLIENTCERT not allowed (Multiple APIs with Mutual TLS on same domain)
- Unknown cert without domain
- Unknown cert with custom domain
- Key not authorised
- Key not authorised. OAuth client access was revoked
- Key not authorised: Unexpected signing method
- Key not authorized: no matching policy
- Key not authorised. oAuth client access was revoked (oAuth client deleted)
- No matching policy found in scope claim (wrong scope in JWT request)
- Found an empty user ID in predefined base field claim user_id
- This API version does not seem to exist
- Access to this API has been disallowed
- Version expired
- Attempted administrative access with invalid or missing key!
- Login failure, Response was:
- Access to this API has been disallowed
- emptySigHeader (signature validation with auth keys → fill in a signature)
- invalidSigHeader (signature validation with auth keys → have a valid signature)
- emptySigPath (Signature validation with auth keys → path for signature is empty)
- invalidSigPath (Signature validation with auth keys → path for signature is not valid)
- Attempted access with non-existent cert. (Authentication cert not found)
- Access to this resource has been disallowed (Granular Access Rights)
- GraphQL Depth Limit Exceeded
- Access from this IP has been disallowed (blacklist or whitelist IP’s)
- Failed with 403 after x requests over quota
- This organisation access has been disabled, please contact your API administrator (orgSession.isInactive)
- Depth limit exceeded (on an API level or Field Level)
- Accessing to sub-version with base API listen path should require base API key (version checking)
- Version Information not found
- Client authorize request in with invalid redirect URI
- Attempted administrative access with invalid or missing key! (checking correct security credentials of the tyk API)
- Run Go-plugin auth failed (invalid token)
**Error Code 404:**
- Policy not found
- API not found
- Accessing a nonexistent endpoint (HTTP request)
- Accessing a key that doesn’t exist or thats been deleted
- Accessing unknown OAuth clients
- Key is not found(if the gw’s global session manager returns false)
- Key not found
- There is no such key found (handleDeleteKey, handleDeleteHashedKey)
- Hashed key listing is diabled in config (enable_hashed_keys_listing)
- No such organisation found in Active API list
- Couldn't find organisation session in active API list
- Org not found
- OAuth Client ID not found
- API for this refresh token not found
- oAuthClientNotFound
- Oauth client doesn’t exist
- API ID not found (when API ID doesnt exist in gw)
- Certificate with given SHA256 fingerprint not found
- API doesn’t exist
- API for this refresh token not found
- There should be at least one provider configured
- Version Does Not Exist
- Error getting oauth client
- Accessing subroutes that dont exist
- Failed
- Bundle not found
**Error Code 429:**
- Rate Limit Exceeded
**Error Code 500:**
- Creating key with bad policy
- Post Hook with unallowed message length
- Verification Requried (virtual endpoint batch)
- Pub key not match (public key pinning)
- Pinning disabled (public key pinning)
- Global: Cipher not match (proxy transport)
- API: MinTLS not match
- API: Invalid Proxy
- There was a problem proxying the request (SSL force common name)
- Loop level too deep. Found more than 2 loops in single request
- There was a problem proxying the request (single error response)
- Failed to create key, ensure security settings are correct (handleAddOrUpdate)
- Key request by hash but key hashing is not enabled
- Due to enabled service policy source, please use the Dashboard API
- Marshalling failed
- Failed to create file (handleAddOrUpdatePolicy)
- Delete failed
- Could not write key data
- Error writing to key store
- Unmarshalling failed
- Failed to create key - Key with given certificate already found
- Failure in storing client data
- Failed to invalidate refresh token
- Get client tokens failed
- Cache invalidation failed
- Due to enabled use_dp_app_configs, please use Dashboard API
- [OAuth] There was an error with the request: #RESPONSE
- Proxying Request Failed (GraphQL Proxy)
- There was a problem proxying the request (GraphQL MiddleWare Request Validation: Bad Schema)
"#;
