//! The fault catalogue: every fault the filter can answer with, and nothing else.
//!
//! Each entry carries the WSO2 code, the HTTP status, the message and the description that
//! WSO2's gateways send (seed 002's status table wins; codes it leaves out take the statuses in
//! `docs/ERROR-CODES.md`). Configuration may override status, message and description per code or
//! per entry id (see [`crate::config`]); the [`crate::render`] module is the only place a fault
//! becomes a response. No status number or error string for a fault is written anywhere else;
//! what other gateways' formats answer for each entry is in [`formats`].

pub mod analytics;
pub mod formats;

/// Which WSO2 fault sequence an entry belongs to. It decides the body shape in some formats
/// (API-M JSON adds `"type":"Status report"` for transport and gateway faults; API-M XML uses the
/// `security` and `throttling` namespaces for authentication and throttling faults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// API handler faults (`700700`, `900422`, `900424`, `102511`).
    Handler,
    /// Authentication and authorization faults (`9009xx`).
    Auth,
    /// Throttling and blocking faults (`9008xx`).
    Throttle,
    /// Transport faults (`101xxx`, base code + protocol state).
    Transport,
    /// Faults of the gateway itself (no API matched), from WSO2's `main` sequence.
    Gateway,
    /// Faults API-M answers through its generic `fault` sequence for an API (`_production_key_error_`
    /// and `_sandbox_key_error_` set the code, the description and the status, then call it): a
    /// status report, `Runtime Error`, in the `http://wso2.org/apimanager` namespace.
    FaultSequence,
    /// Choreo Connect's upstream failure codes (`1025xx`), used only with the `choreo-connect` format.
    ChoreoUpstream,
}

/// One catalogue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Stable name of the entry, usable as an override key (`errors.overrides`).
    pub id: &'static str,
    /// The WSO2 code. For transport entries this is the base code; the protocol state is added.
    pub code: u32,
    /// The HTTP status sent by default.
    pub status: u16,
    /// The sequence family (body shape).
    pub family: Family,
    /// The `message` field.
    pub message: &'static str,
    /// The `description` field.
    pub description: &'static str,
}

macro_rules! catalogue {
    ($( $variant:ident => ($id:literal, $code:literal, $status:literal, $family:ident, $message:literal, $description:literal) ),* $(,)?) => {
        /// Identifies a catalogue entry. Exhaustive: adding a variant forces every `match` over
        /// faults to handle it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FaultId { $( $variant ),* }

        /// Every entry, in catalogue order.
        pub const ALL: &[FaultId] = &[ $( FaultId::$variant ),* ];

        impl FaultId {
            /// The entry's code, status, message and description before any override.
            pub const fn spec(self) -> Spec {
                match self {
                    $( FaultId::$variant => Spec {
                        id: $id,
                        code: $code,
                        status: $status,
                        family: Family::$family,
                        message: $message,
                        description: $description,
                    } ),*
                }
            }

            /// Position of the entry in [`ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

catalogue! {
    // ---- API handlers --------------------------------------------------------------------
    ApiBlocked => ("api_blocked", 700700, 503, Handler, "API blocked",
        "This API has been blocked temporarily. Please try again later or contact the system administrators."),
    InvalidGraphqlQuery => ("invalid_graphql_query", 900422, 422, Handler, "Invalid GraphQL query",
        "Syntax of the provided GraphQL query is invalid"),
    TemporaryServerError => ("temporary_server_error", 900424, 500, Handler, "Temporary Server Error",
        "Server has encountered an error. Please try again."),
    NoMatchingResource => ("no_matching_resource", 900906, 403, Auth,
        "No matching resource found in the API for the given request",
        "Check the API documentation and add a proper REST resource path to the invocation URL"),
    IncompletePayload => ("incomplete_payload", 102511, 400, Handler, "Incomplete payload",
        "The payload sent with the request is too large and the client is unable to keep the connection alive until the payload is completely transferred to the API Gateway"),
    // ---- the gateway itself (WSO2's main sequence) ------------------------------------------
    NotFound => ("not_found", 404, 404, Gateway, "Not Found",
        "The requested resource is not available."),
    // Not WSO2's (its gateway serves nothing before its APIs are deployed): a request that matches
    // no API before the control plane's first load of APIs, which may be one of them.
    ApisNotLoaded => ("apis_not_loaded", 503, 503, Gateway, "Service Unavailable",
        "The gateway has not loaded its APIs yet. Please try again later."),
    // ---- throttling ------------------------------------------------------------------------
    ApiThrottled => ("api_throttled", 900800, 429, Throttle, "Message throttled out",
        "You have exceeded your quota"),
    HardLimitExceeded => ("hard_limit_exceeded", 900801, 503, Throttle, "API Limit Reached",
        "API not accepting requests"),
    ResourceThrottled => ("resource_throttled", 900802, 429, Throttle, "Message throttled out",
        "You have exceeded your quota"),
    ApplicationThrottled => ("application_throttled", 900803, 429, Throttle, "Message throttled out",
        "You have exceeded your quota"),
    SubscriptionThrottled => ("subscription_throttled", 900804, 429, Throttle, "Message throttled out",
        "You have exceeded your quota"),
    Blocked => ("blocked", 900805, 429, Throttle, "Message blocked",
        "You have been blocked from accessing the resource"),
    CustomPolicyThrottled => ("custom_policy_throttled", 900806, 429, Throttle, "Message throttled out",
        "You have exceeded your quota"),
    BurstThrottled => ("burst_throttled", 900807, 429, Throttle, "Message throttled out",
        "You have exceeded your quota"),
    // Not an HTTP answer: the text frame API-M 4.x's gateway sends a WebSocket client in place of
    // a frame over its tiers, `Error code: <code> reason: <message>` (`WebSocketApiConstants`'
    // `THROTTLED_OUT_ERROR`; 4003 in earlier 4.x releases). Its status is for stats and logs.
    WebsocketFrameThrottled => ("websocket_frame_throttled", 4008, 429, Throttle, "Websocket frame throttled out",
        "You have exceeded your quota"),
    ThrottleInternalError => ("throttle_internal_error", 900808, 500, Throttle, "Internal Server Error",
        "The request could not be counted against its throttling policies"),
    ThrottlePolicyMissing => ("throttle_policy_missing", 900809, 500, Throttle, "Internal Server Error",
        "A throttle policy the request is subject to is not deployed"),
    // ---- authentication and authorization --------------------------------------------------
    AuthGeneralError => ("auth_general_error", 900900, 500, Auth, "Unclassified Authentication Failure",
        "An unspecified error has occurred"),
    InvalidCredentials => ("invalid_credentials", 900901, 401, Auth, "Invalid Credentials",
        "Invalid Credentials. Make sure you have provided the correct security credentials"),
    // API-M's `_production_key_error_` / `_sandbox_key_error_` (ERROR_CODE, ERROR_MESSAGE,
    // CUSTOM_HTTP_SC 403) hand over to its `fault` sequence, whose body is a status report whose
    // message is always `Runtime Error` (product-apim v4.0.0 and v4.2.0, `fault.xml` line 35).
    ProductionKeyWithoutEndpoint => ("production_key_without_endpoint", 900901, 403, FaultSequence, "Runtime Error",
        "Production key offered to the API with no production endpoint"),
    SandboxKeyWithoutEndpoint => ("sandbox_key_without_endpoint", 900901, 403, FaultSequence, "Runtime Error",
        "Sandbox key offered to the API with no sandbox endpoint"),
    MissingCredentials => ("missing_credentials", 900902, 401, Auth, "Missing Credentials",
        "Invalid Credentials. Make sure your API invocation call has a header: 'Authorization : Bearer ACCESS_TOKEN' or 'Authorization : Basic ACCESS_TOKEN' or 'apikey : API_KEY'"),
    AccessTokenExpired => ("access_token_expired", 900903, 401, Auth, "Access Token Expired",
        "Access Token Expired. Renew the access token and try again"),
    AccessTokenInactive => ("access_token_inactive", 900904, 401, Auth, "Access Token Inactive",
        "Access Token Inactive. Generate a new access token and try again"),
    IncorrectAccessTokenType => ("incorrect_access_token_type", 900905, 401, Auth, "Incorrect Access Token Type is provided",
        "The access token type used is not supported when invoking the API. The supported access token types are application and user accesses tokens."),
    ApiTemporarilyBlocked => ("subscription_blocked", 900907, 401, Auth, "The requested API is temporarily blocked",
        "API Subscription is blocked"),
    ResourceForbidden => ("resource_forbidden", 900908, 403, Auth, "Resource forbidden ",
        "User is NOT authorized to access the Resource. API Subscription validation failed."),
    ApiKeyRestricted => ("api_key_restricted", 900908, 403, Auth, "Resource forbidden ",
        "Access forbidden for the invocations"),
    SubscriptionInactive => ("subscription_inactive", 900909, 401, Auth, "The subscription to the API is inactive",
        "The status of the API has changed to an inaccessible/unavailable state."),
    InsufficientScope => ("insufficient_scope", 900910, 403, Auth,
        "The access token does not allow you to access the requested resource",
        "Scope validation failed"),
    InvalidCredentialsAlt => ("invalid_credentials_alt", 900911, 401, Auth, "Invalid Credentials",
        "Invalid authentication information provided."),
    InvalidCredentialFormat => ("invalid_credential_format", 900912, 401, Auth, "Invalid Credentials Format",
        "Invalid format of the credentials."),
    InvalidCookie => ("invalid_cookie", 900913, 401, Auth, "Invalid Cookie",
        "Invalid cookie is provided."),
    NoCookies => ("no_cookies", 900914, 401, Auth, "No Cookies",
        "No cookies are provided at server startup."),
    UnprocessableEntity => ("unprocessable_entity", 900915, 401, Auth, "Unprocessable entity",
        "Unprocessable entity."),
    UnprocessableEntityAlt => ("unprocessable_entity_alt", 900916, 401, Auth, "Unprocessable entity",
        "Unprocessable entity."),
    InvalidAuthScheme => ("invalid_auth_scheme", 900917, 401, Auth, "Invalid Authentication Scheme",
        "Invalid Authentication scheme."),
    // ---- transport (code = base + protocol state) ------------------------------------------
    ReceiverIoErrorSending => ("receiver_io_error_sending", 101000, 503, Transport, "Runtime Error",
        "Receiver input/output error sending"),
    ReceiverIoErrorReceiving => ("receiver_io_error_receiving", 101001, 503, Transport, "Runtime Error",
        "Receiver input/output error receiving"),
    SenderIoErrorSending => ("sender_io_error_sending", 101500, 503, Transport, "Runtime Error",
        "Error in Sender"),
    SenderIoErrorReceiving => ("sender_io_error_receiving", 101501, 503, Transport, "Runtime Error",
        "Sender input/output error receiving"),
    ConnectionFailed => ("connection_failed", 101503, 503, Transport, "Runtime Error",
        "Error connecting to the back end"),
    ConnectionTimedOut => ("connection_timed_out", 101504, 504, Transport, "Runtime Error",
        "Error in Sender"),
    ConnectionClosed => ("connection_closed", 101505, 503, Transport, "Runtime Error",
        "Error in Sender"),
    ProtocolViolation => ("protocol_violation", 101506, 502, Transport, "Runtime Error",
        "NHTTP protocol violation"),
    ConnectionCanceled => ("connection_canceled", 101507, 503, Transport, "Runtime Error",
        "Error connecting to the back end"),
    NewConnectionTimedOut => ("new_connection_timed_out", 101508, 504, Transport, "Runtime Error",
        "Error connecting to the back end"),
    SendAbort => ("send_abort", 101509, 503, Transport, "Runtime Error",
        "Send abort"),
    ResponseProcessingFailed => ("response_processing_failed", 101510, 502, Transport, "Runtime Error",
        "Response processing failed"),
    // ---- Choreo Connect upstream failures (format `choreo-connect` only) ---------------------
    ChoreoNoRoute => ("choreo_no_route", 404, 404, ChoreoUpstream, "Not Found",
        "The requested resource is not available."),
    ChoreoConnectFailure => ("choreo_upstream_connect_failure", 102503, 503, ChoreoUpstream, "Upstream connection failed",
        "upstream connect error or disconnect/reset before headers"),
    ChoreoTimeout => ("choreo_upstream_timeout", 102504, 504, ChoreoUpstream, "Upstream connection timeout",
        "upstream request timeout"),
    ChoreoOverflow => ("choreo_upstream_overflow", 102505, 503, ChoreoUpstream, "Upstream overflow",
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"),
    ChoreoRetryLimit => ("choreo_upstream_retry_limit", 102506, 500, ChoreoUpstream, "Upstream maximum connect attempts reached",
        "upstream connect error or disconnect/reset before headers"),
    ChoreoNoCluster => ("choreo_no_cluster", 102507, 500, ChoreoUpstream, "Upstream not configured for the resource",
        "cluster not found"),
    ChoreoNoHealthyUpstream => ("choreo_no_healthy_upstream", 102508, 503, ChoreoUpstream, "No healthy upstream",
        "no healthy upstream"),
    ChoreoRemoteReset => ("choreo_upstream_remote_reset", 102509, 503, ChoreoUpstream, "Upstream connection reset by the remote",
        "upstream connect error or disconnect/reset before headers. reset reason: remote reset"),
    ChoreoConnectionTermination => ("choreo_upstream_connection_termination", 102510, 503, ChoreoUpstream, "Upstream connection termination",
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
    ChoreoLocalReset => ("choreo_local_reset", 102511, 503, ChoreoUpstream, "Connection reset by the gateway",
        "upstream connect error or disconnect/reset before headers. reset reason: local reset"),
}

/// WSO2's protocol states of the transport sender, added to a transport base code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolState {
    RequestReady = 0,
    RequestHead = 1,
    RequestBody = 2,
    RequestDone = 3,
    ResponseHead = 4,
    ResponseBody = 5,
    ResponseDone = 6,
    Closing = 7,
    Closed = 8,
}

impl ProtocolState {
    /// Every state, in order.
    pub const ALL: [ProtocolState; 9] = [
        ProtocolState::RequestReady,
        ProtocolState::RequestHead,
        ProtocolState::RequestBody,
        ProtocolState::RequestDone,
        ProtocolState::ResponseHead,
        ProtocolState::ResponseBody,
        ProtocolState::ResponseDone,
        ProtocolState::Closing,
        ProtocolState::Closed,
    ];

    /// WSO2's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolState::RequestReady => "REQUEST_READY",
            ProtocolState::RequestHead => "REQUEST_HEAD",
            ProtocolState::RequestBody => "REQUEST_BODY",
            ProtocolState::RequestDone => "REQUEST_DONE",
            ProtocolState::ResponseHead => "RESPONSE_HEAD",
            ProtocolState::ResponseBody => "RESPONSE_BODY",
            ProtocolState::ResponseDone => "RESPONSE_DONE",
            ProtocolState::Closing => "CLOSING",
            ProtocolState::Closed => "CLOSED",
        }
    }
}

/// A fault to answer with: a catalogue entry plus what the request adds to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The catalogue entry.
    pub id: FaultId,
    /// The code sent: the entry's code, plus the protocol state for transport faults.
    pub code: u32,
    /// When throttled: Unix time (seconds) at which the next request is allowed.
    pub next_access_time: Option<u64>,
    /// When throttled: seconds the client should wait (the `Retry-After` header).
    pub retry_after_s: Option<u64>,
    /// For 401 faults: the RFC 6750 `error` attribute of `WWW-Authenticate` (e.g. `invalid_token`).
    pub challenge_error: Option<&'static str>,
}

impl Fault {
    /// The fault for a catalogue entry, with the entry's own code.
    pub fn new(id: FaultId) -> Self {
        Fault { id, code: id.spec().code, next_access_time: None, retry_after_s: None, challenge_error: None }
    }

    /// A transport fault: WSO2's `code = base code + protocol state`.
    pub fn transport(base: FaultId, state: ProtocolState) -> Self {
        let mut fault = Fault::new(base);
        if base.spec().family == Family::Transport {
            fault.code = base.spec().code + state as u32;
        }
        fault
    }

    /// The same fault with the RFC 6750 `error` attribute for `WWW-Authenticate`.
    pub fn with_challenge_error(mut self, error: &'static str) -> Self {
        self.challenge_error = Some(error);
        self
    }
}

/// The codes an override key may name: every entry's code, and every transport code that the
/// base + protocol-state arithmetic can produce.
pub fn is_known_code(code: u32) -> bool {
    ALL.iter().any(|id| {
        let spec = id.spec();
        if spec.family == Family::Transport {
            code >= spec.code && code <= spec.code + ProtocolState::Closed as u32
        } else {
            spec.code == code
        }
    })
}

/// Every code an override may name: each entry's code and, for transport entries, every code the
/// base + protocol-state arithmetic produces.
pub fn known_codes() -> impl Iterator<Item = u32> {
    ALL.iter().flat_map(|id| {
        let spec = id.spec();
        let states = if spec.family == Family::Transport { ProtocolState::Closed as u32 } else { 0 };
        (0..=states).map(move |state| spec.code + state)
    })
}

/// A family of codes written with trailing `x`s: `9008xx` is 900800 to 900899, `1015xx` the
/// transport codes. Matches codes with as many digits whose leading digits are the pattern's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodePattern {
    prefix: String,
    digits: usize,
}

impl CodePattern {
    /// Parses `<digits><one or more x>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<CodePattern> {
        let prefix = text.trim_end_matches(['x', 'X']);
        let wildcards = text.len() - prefix.len();
        let valid = wildcards > 0 && !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| CodePattern { prefix: prefix.to_string(), digits: text.len() })
    }

    pub fn matches(&self, code: u32) -> bool {
        let text = code.to_string();
        text.len() == self.digits && text.starts_with(&self.prefix)
    }

    /// More fixed digits is more specific.
    pub fn specificity(&self) -> usize {
        self.prefix.len()
    }
}

/// The entry with this id, if any.
pub fn by_id(id: &str) -> Option<FaultId> {
    ALL.iter().copied().find(|entry| entry.spec().id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_index_matches_position() {
        let mut seen = HashSet::new();
        for (position, id) in ALL.iter().enumerate() {
            assert!(seen.insert(id.spec().id), "duplicate id {}", id.spec().id);
            assert_eq!(id.index(), position);
        }
    }

    #[test]
    fn every_code_named_by_the_seeds_is_present() {
        let mut required: Vec<u32> = vec![700700, 900422, 900424, 102511];
        required.extend(900800..=900809);
        required.extend(900900..=900917);
        required.extend([101000, 101001, 101500, 101501]);
        required.extend(101503..=101510);
        for code in required {
            assert!(
                ALL.iter().any(|id| id.spec().code == code && id.spec().family != Family::ChoreoUpstream),
                "code {code} missing"
            );
        }
    }

    #[test]
    fn seed_002_status_table_holds() {
        let table: &[(u16, &[u32])] = &[
            (400, &[102511]),
            (401, &[900901, 900902, 900905, 900907, 900909, 900911]),
            (403, &[900906, 900908, 900910]),
            (422, &[900422]),
            (429, &[900800, 900802, 900803, 900804, 900805, 900806, 900807]),
            (500, &[900900]),
            (503, &[700700, 900801]),
        ];
        for (status, codes) in table {
            for code in *codes {
                let entry = ALL
                    .iter()
                    .find(|id| id.spec().code == *code && id.spec().family != Family::ChoreoUpstream)
                    .map(|id| id.spec())
                    .expect("entry");
                assert_eq!(entry.status, *status, "status of {code}");
            }
        }
        assert_eq!(FaultId::ProductionKeyWithoutEndpoint.spec().status, 403);
    }

    #[test]
    fn transport_arithmetic_follows_the_seed_example() {
        let fault = Fault::transport(FaultId::ConnectionTimedOut, ProtocolState::RequestDone);
        assert_eq!(fault.code, 101507);
        assert_eq!(Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady).code, 101503);
        // Non-transport entries ignore the state.
        assert_eq!(Fault::transport(FaultId::ApiBlocked, ProtocolState::Closed).code, 700700);
    }

    #[test]
    fn known_codes_cover_the_arithmetic_and_nothing_else() {
        assert!(is_known_code(101507));
        assert!(is_known_code(101518)); // 101510 + CLOSED
        assert!(!is_known_code(101519));
        assert!(!is_known_code(900918));
        assert!(is_known_code(404));
    }
}
