//! A seeded audit of the `tyk` and `kanali` formats against Tyk Gateway and Kanali themselves:
//! every catalogue fault, rendered with random protocol states, next access times and
//! `Retry-After` values, is compared with the answer written here from those gateways' sources
//! (TykTechnologies/tyk at 31e219be, `gateway/`; northwesternmutual/kanali branch `release-2.0`,
//! `pkg/errors/`, `pkg/middleware/gateway.go`, `plugins/apikey/plugin.go`), and from seeds 003 and
//! 004 where they speak, never read from the filter's tables. Seed: `TYK_KANALI_AUDIT_SEED`
//! (printed on failure).

use super::*;
use crate::catalogue::{ProtocolState, ALL};
use crate::host::fuzz::Rng;
use crate::schema::RawConfig;

/// Where an expected answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Basis {
    /// The gateway's own code answers the same condition with this status and text.
    Source,
    /// The seed (or the project's reading of it, `seed_sweep/expected.rs`) decides; the source's
    /// answer differs (see the note beside the entry).
    Seed,
    /// The gateway has no such condition: its nearest answer.
    Nearest,
}

const PROXYING: &str = "There was a problem proxying the request";

/// Tyk's answer: status, the `error` text of `templates/error.json` (`{"error": "{{.Message}}"}`).
fn tyk(id: FaultId) -> (u16, &'static str, Basis) {
    use Basis::*;
    use FaultId::*;
    match id {
        // `mw_auth_key.go` lines 44-47 with `handler_error.go` line 30: 401 "Authorization field
        // missing". Seed 004 lines 61/17 list "Authorization Field Missing" (the sweep pins it).
        MissingCredentials => (401, "Authorization Field Missing", Seed),
        // `coprocess.go` line 368, `handler_error.go` line 34 (`MsgKeyNotAuthorized`); the JWT
        // middleware at HEAD spells it "Key not authorized" (`mw_jwt.go` line 1372).
        InvalidCredentials => (403, "Key not authorised", Source),
        // `mw_key_expired_check.go` lines 62 and 45.
        AccessTokenExpired => (401, "Key has expired, please renew", Source),
        AccessTokenInactive => (403, "Key is inactive, please renew", Source),
        ProductionKeyWithoutEndpoint
        | SandboxKeyWithoutEndpoint
        | IncorrectAccessTokenType
        | InvalidCredentialsAlt
        | InvalidCredentialFormat
        | InvalidCookie
        | NoCookies
        | UnprocessableEntity
        | UnprocessableEntityAlt
        | InvalidAuthScheme => (403, "Key not authorised", Nearest),
        // `mw_jwt.go` line 1084: "key not authorized: no matching policy found in scope claim";
        // seed 004 line 96 lists the shorter text.
        InsufficientScope => (403, "No matching policy found in scope claim", Seed),
        // `mw_granular_access.go` line 122 (a key's per-path rights). An API's allow list refuses
        // an unlisted path with 403 "Requested endpoint is forbidden" (`api_definition.go` line
        // 102, `mw_version_check.go` line 120): arguably closer, not under seed 004's 403.
        NoMatchingResource => (403, "Access to this resource has been disallowed", Seed),
        // `handler_error.go` line 31 (`MsgApiAccessDisallowed`), `mw_auth_key.go` lines 49-52: a
        // key without access to the API.
        ApiBlocked | ResourceForbidden | SubscriptionInactive => {
            (403, "Access to this API has been disallowed", Source)
        }
        // Tyk's IP lists answer "Access from this IP has been disallowed" (`mw_ip_whitelist.go`).
        ApiTemporarilyBlocked | ApiKeyRestricted | Blocked => (403, "Access to this API has been disallowed", Nearest),
        // `mw_rate_limiting.go` line 47: "Quota exceeded"; seed 004 line 73: "Quota Exceeded".
        SubscriptionThrottled => (403, "Quota Exceeded", Seed),
        // `mw_rate_limiting.go` line 108 with `middleware.go` line 812: 429.
        ApiThrottled
        | HardLimitExceeded
        | ResourceThrottled
        | ApplicationThrottled
        | CustomPolicyThrottled
        | BurstThrottled
        | WebsocketFrameThrottled => (429, "Rate Limit Exceeded", Source),
        // `proxy_muxer.go` lines 220-221 answer an unknown listen path with a plain-text "Not
        // Found"; seed 004 line 130 (and the contract's sweep) say 404 "API not found".
        NotFound | ChoreoNoRoute => (404, "API not found", Seed),
        IncompletePayload | InvalidGraphqlQuery => (400, "Request malformed", Nearest),
        // `mw_rate_limiting.go` line 146: `ProxyingRequestFailedErr`, lower-case "there was ...".
        ThrottleInternalError => (500, PROXYING, Seed),
        TemporaryServerError | ThrottlePolicyMissing | AuthGeneralError => (500, PROXYING, Nearest),
        // `reverse_proxy.go` line 1402: an upstream that does not answer in time is 504 "Upstream
        // service reached hard timeout."; seed 004 has no 504 and pins 500 (line 202).
        ConnectionTimedOut | ChoreoTimeout => (500, PROXYING, Seed),
        // `reverse_proxy.go` line 1420.
        ReceiverIoErrorSending
        | ReceiverIoErrorReceiving
        | SenderIoErrorSending
        | SenderIoErrorReceiving
        | ConnectionFailed
        | ConnectionClosed
        | ProtocolViolation
        | ConnectionCanceled
        | NewConnectionTimedOut
        | SendAbort
        | ResponseProcessingFailed
        | ChoreoConnectFailure
        | ChoreoOverflow
        | ChoreoRetryLimit
        | ChoreoNoCluster
        | ChoreoNoHealthyUpstream
        | ChoreoRemoteReset
        | ChoreoConnectionTermination
        | ChoreoLocalReset => (500, PROXYING, Source),
        // `reverse_proxy.go` line 1359: the open circuit breaker.
        ApisNotLoaded => (503, "Service temporarily unavailable.", Source),
    }
}

/// Kanali's errors (`pkg/errors/errors.go` lines 54-70): code, status, message.
const KANALI_ERRORS: [(u8, u16, &str); 15] = [
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

/// The Kanali code a fault is answered with.
fn kanali(id: FaultId) -> (u8, Basis) {
    use Basis::*;
    use FaultId::*;
    match id {
        // `pkg/flow/validateproxy.go` line 68.
        NotFound | ChoreoNoRoute => (0, Source),
        NoMatchingResource => (0, Nearest),
        // `pkg/flow/proxypass.go` lines 250, 508, 534: `ErrorBadGateway`.
        ReceiverIoErrorSending
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
        | ResponseProcessingFailed
        | ChoreoConnectFailure
        | ChoreoTimeout
        | ChoreoOverflow
        | ChoreoRetryLimit
        | ChoreoNoCluster
        | ChoreoNoHealthyUpstream
        | ChoreoRemoteReset
        | ChoreoConnectionTermination
        | ChoreoLocalReset => (8, Source),
        // `plugins/apikey/plugin.go` line 66 answers a missing key with `ErrorForbidden` (12, 403);
        // the project's sweep pins every WSO2 401 to 13.
        MissingCredentials => (13, Seed),
        // `plugins/apikey/plugin.go` line 73: a key not in the store.
        InvalidCredentials => (13, Source),
        AccessTokenExpired
        | AccessTokenInactive
        | IncorrectAccessTokenType
        | ApiTemporarilyBlocked
        | SubscriptionInactive
        | InvalidCredentialsAlt
        | InvalidCredentialFormat
        | InvalidCookie
        | NoCookies
        | UnprocessableEntity
        | UnprocessableEntityAlt
        | InvalidAuthScheme => (13, Nearest),
        // A key the binding grants nothing for the path and method is 13 in Kanali (plugin.go lines
        // 113, 117; seed 003 `13`); the filter answers a scope or subscription refusal 12.
        ApiBlocked
        | ProductionKeyWithoutEndpoint
        | SandboxKeyWithoutEndpoint
        | ResourceForbidden
        | ApiKeyRestricted
        | InsufficientScope
        | Blocked => (12, Nearest),
        // Seed 003 `14`.
        ApiThrottled
        | HardLimitExceeded
        | ResourceThrottled
        | ApplicationThrottled
        | SubscriptionThrottled
        | CustomPolicyThrottled
        | BurstThrottled
        | WebsocketFrameThrottled => (14, Seed),
        TemporaryServerError
        | ThrottleInternalError
        | ThrottlePolicyMissing
        | AuthGeneralError
        | IncompletePayload
        | InvalidGraphqlQuery
        | ApisNotLoaded => (1, Nearest),
    }
}

fn settings(format: &str) -> ErrorSettings {
    let json = format!(r#"{{"errors":{{"format":"{format}"}}}}"#);
    let raw: RawConfig = serde_json::from_str(&json).unwrap();
    ErrorSettings::compile(raw.errors, &raw.credentials).unwrap()
}

/// The headers: `application/json` (as both gateways send it), the
/// filter's own `WWW-Authenticate` on a 401 and `Retry-After` when known (neither gateway sends
/// these; Tyk sends `X-Generator: tyk.io`, which the filter does not), and nothing else.
fn check_headers(fault: &Fault, rendered: &Rendered) -> Result<(), String> {
    let content_type = rendered.header("content-type").unwrap_or_default();
    if content_type != "application/json" {
        return Err(format!("content-type {content_type}"));
    }
    let mut names: Vec<&str> = rendered.headers.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    let mut want = vec!["content-type"];
    if rendered.status == 401 {
        want.push("www-authenticate");
    }
    if fault.retry_after_s.is_some() {
        want.push("retry-after");
    }
    want.sort_unstable();
    if names != want {
        return Err(format!("headers {names:?}, want {want:?}"));
    }
    Ok(())
}

fn audit(fault: &Fault, tyk_settings: &ErrorSettings, kanali_settings: &ErrorSettings) -> Result<[String; 2], String> {
    let (status, text, tyk_basis) = tyk(fault.id);
    let rendered = render(fault, tyk_settings, None);
    check_headers(fault, &rendered).map_err(|why| format!("tyk: {why}"))?;
    let want = format!(r#"{{"error":"{text}"}}"#);
    if (rendered.status, rendered.body.as_str()) != (status, want.as_str()) {
        return Err(format!("tyk: sent {} {}, want {status} {want}", rendered.status, rendered.body));
    }
    let (code, kanali_basis) = kanali(fault.id);
    let (_, status, message) = KANALI_ERRORS[usize::from(code)];
    let rendered = render(fault, kanali_settings, None);
    check_headers(fault, &rendered).map_err(|why| format!("kanali: {why}"))?;
    // `pkg/errors/utils.go` lines 34-40: the field order and the details link.
    let want = format!(
        r#"{{"status":{status},"message":"{message}","code":{code},"details":"Visit https://kanali.io/docs/v2/errorcodes/#{code:02} for more details."}}"#
    );
    if (rendered.status, rendered.body.as_str()) != (status, want.as_str()) {
        return Err(format!("kanali: sent {} {}, want {status} {want}", rendered.status, rendered.body));
    }
    Ok([format!("tyk {tyk_basis:?}"), format!("kanali {kanali_basis:?}")])
}

#[test]
fn tyk_and_kanali_formats_answer_as_those_gateways() {
    let seed = std::env::var("TYK_KANALI_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x007a_11ce_u64);
    let (tyk_settings, kanali_settings) = (settings("tyk"), settings("kanali"));
    let mut rng = Rng::new(seed);
    let mut classes: std::collections::BTreeMap<String, usize> = Default::default();
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
        match audit(&fault, &tyk_settings, &kanali_settings) {
            Ok(found) => found.into_iter().for_each(|class| *classes.entry(class).or_default() += 1),
            Err(why) => failures.push(format!("{}: {why}", id.spec().id)),
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed} (TYK_KANALI_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    for gateway in ["tyk", "kanali"] {
        for basis in [Basis::Source, Basis::Seed, Basis::Nearest] {
            let class = format!("{gateway} {basis:?}");
            assert!(classes.get(&class).copied().unwrap_or(0) > 0, "seed {seed}: no case of {class}: {classes:?}");
        }
    }
    assert_eq!(classes.values().sum::<usize>(), 2 * cases);
}
