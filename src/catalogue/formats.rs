//! What the non-WSO2-4.x formats answer for each catalogue entry: the statuses and texts of Tyk
//! (its documented error list), Kanali (its numbered error table, where each code has its own
//! status and message), the WSO2 API Microgateway (whose texts differ from API-M 4.x for a few
//! entries) and Choreo Connect (whose statuses differ for a few). Every match is exhaustive: a new catalogue entry cannot compile without a decision
//! for each format.

use super::{Family, FaultId};

/// Tyk's status and `error` text for a fault.
pub fn tyk(id: FaultId) -> (u16, &'static str) {
    use FaultId::*;
    match id {
        MissingCredentials => (401, "Authorization Field Missing"),
        // Its `KeyExpired` middleware (`gateway/mw_key_expired_check.go`): an expired key is 401,
        // an inactive one 403, each with its own sentence.
        AccessTokenExpired => (401, "Key has expired, please renew"),
        AccessTokenInactive => (403, "Key is inactive, please renew"),
        InvalidCredentials
        | ProductionKeyWithoutEndpoint
        | SandboxKeyWithoutEndpoint
        | IncorrectAccessTokenType
        | InvalidCredentialsAlt
        | InvalidCredentialFormat
        | InvalidCookie
        | NoCookies
        | UnprocessableEntity
        | UnprocessableEntityAlt
        | InvalidAuthScheme => (403, "Key not authorised"),
        InsufficientScope => (403, "No matching policy found in scope claim"),
        NoMatchingResource => (403, "Access to this resource has been disallowed"),
        ApiBlocked | ApiTemporarilyBlocked | ResourceForbidden | ApiKeyRestricted | SubscriptionInactive | Blocked => {
            (403, "Access to this API has been disallowed")
        }
        SubscriptionThrottled => (403, "Quota Exceeded"),
        ApiThrottled
        | HardLimitExceeded
        | ResourceThrottled
        | ApplicationThrottled
        | CustomPolicyThrottled
        | BurstThrottled
        | WebsocketFrameThrottled => (429, "Rate Limit Exceeded"),
        NotFound | ChoreoNoRoute => (404, "API not found"),
        IncompletePayload | InvalidGraphqlQuery => (400, "Request malformed"),
        TemporaryServerError
        | ThrottleInternalError
        | ThrottlePolicyMissing
        | AuthGeneralError
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
        | ResponseProcessingFailed
        | ChoreoConnectFailure
        | ChoreoTimeout
        | ChoreoOverflow
        | ChoreoRetryLimit
        | ChoreoNoCluster
        | ChoreoNoHealthyUpstream
        | ChoreoRemoteReset
        | ChoreoConnectionTermination
        | ChoreoLocalReset => (500, "There was a problem proxying the request"),
        // Tyk's own "try again later" (its open circuit breaker's answer): 503, as the fault is.
        ApisNotLoaded => (503, "Service temporarily unavailable."),
    }
}

/// One of Kanali's documented errors: its two-digit code, the status it is sent with, and its
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KanaliError {
    pub code: u8,
    pub status: u16,
    pub message: &'static str,
}

/// Kanali's error table, codes `00` to `14`, with each code's own status and message.
pub const KANALI: [KanaliError; 15] = [
    KanaliError { code: 0, status: 404, message: "No ApiProxy resource was not found that matches the request." },
    KanaliError { code: 1, status: 500, message: "An unknown error occurred." },
    KanaliError { code: 2, status: 404, message: "No MockTarget resource was not found that matches the request." },
    KanaliError { code: 3, status: 500, message: "Could not open or load plugin." },
    KanaliError { code: 4, status: 500, message: "Could not lookup plugin symbol." },
    KanaliError { code: 5, status: 500, message: "Plugin does not implement the correct interface." },
    KanaliError { code: 6, status: 500, message: "Could not retrieve Kubernetes secret." },
    KanaliError { code: 7, status: 500, message: "Could not create x509 key pair." },
    KanaliError { code: 8, status: 502, message: "Could not get a valid or any response from the upstream server." },
    KanaliError { code: 9, status: 500, message: "Could not retrieve Kubernetes services." },
    KanaliError { code: 10, status: 500, message: "Could not retrieve any matching Kubernetes services." },
    KanaliError { code: 11, status: 500, message: "Plugin threw a runtime error." },
    KanaliError { code: 12, status: 403, message: "My lips are sealed." },
    KanaliError { code: 13, status: 401, message: "Api key is not authorized." },
    KanaliError { code: 14, status: 429, message: "The Api key you are using has exceeded its rate limit." },
];

/// The Kanali error a fault is answered with in the `kanali` format: no route or resource is
/// `00`, any upstream failure `08`, a refused credential `13`, a refused request `12`, a rate
/// limit `14`, and everything Kanali has no code for `01`.
pub fn kanali(id: FaultId) -> KanaliError {
    use FaultId::*;
    let code: usize = match id {
        NotFound | ChoreoNoRoute | NoMatchingResource => 0,
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
        | ChoreoLocalReset => 8,
        MissingCredentials
        | InvalidCredentials
        | AccessTokenExpired
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
        | InvalidAuthScheme => 13,
        ApiBlocked
        | ProductionKeyWithoutEndpoint
        | SandboxKeyWithoutEndpoint
        | ResourceForbidden
        | ApiKeyRestricted
        | InsufficientScope
        | Blocked => 12,
        ApiThrottled
        | HardLimitExceeded
        | ResourceThrottled
        | ApplicationThrottled
        | SubscriptionThrottled
        | CustomPolicyThrottled
        | BurstThrottled
        | WebsocketFrameThrottled => 14,
        TemporaryServerError
        | ThrottleInternalError
        | ThrottlePolicyMissing
        | AuthGeneralError
        | IncompletePayload
        | InvalidGraphqlQuery
        | ApisNotLoaded => 1,
    };
    KANALI.get(code).copied().unwrap_or(KANALI[1])
}

/// Where the WSO2 API Microgateway's texts differ from API-M 4.x: `(message, description)`.
///
/// What the WSO2 API Microgateway 3.x answers for an entry, where it differs from API-M 4.x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Microgateway {
    /// Its status, when it is not the catalogue's.
    pub status: Option<u16>,
    pub message: &'static str,
    pub description: &'static str,
    pub shape: MicrogatewayShape,
}

/// The body a Microgateway answer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicrogatewayShape {
    /// `{"fault":{"code":...,"message":...,"description":...}}` (its `sendErrorResponse`).
    Fault,
    /// `{"code":404,"type":"Status report","message":...,"description":...}`, unwrapped: its
    /// generated `apiNotFoundService` (`faultResponses.mustache`, `METHOD_NOT_FOUND_RESPONSE`).
    StatusReport,
    /// `{"ERROR_CODE":"900901","ERROR_MESSAGE":<description>}`: its resource templates' refusal of a
    /// key type the API has no endpoint for (`noProdAvailableError.mustache`).
    KeyTypeError,
}

const fn mgw(status: Option<u16>, message: &'static str, description: &'static str) -> Option<Microgateway> {
    Some(Microgateway { status, message, description, shape: MicrogatewayShape::Fault })
}

/// The Microgateway 3.x's answer for an entry, as its gateway module writes it
/// (wso2/product-microgateway, `components/micro-gateway-core/src/main/ballerina/src/gateway/`,
/// tags v3.1.0 to v3.2.10).
///
/// Authentication faults (`constants/api_security_constants.bal`): the message is
/// `getAuthenticationFailureMessage(code)` and the description
/// `getFailureMessageDetailDescription`, the message, `". "` and a detail; codes without a detail
/// of their own get `"Unclassified Authentication Failure"` (900904 too: its branch tests 900906
/// again). The status is `setErrorMessageToInvocationContext`'s (`utils/utils.bal`): 500 for 900900
/// and 900916, 403 for 900906, 900908, 900910, 422 for 900915, 401 for every other.
///
/// Blocking and throttle errors are its throttle filter's (see the test). A key manager outage
/// (900900) keeps the body the Microgateway's troubleshooting page (seed 000)
/// shows, "Unclassified Authentication Failure" as both message and description; a backend
/// timeout is 101504 "Connection timed out" (it has no protocol-state arithmetic: every other
/// backend failure is 101503).
pub fn microgateway(id: FaultId) -> Option<Microgateway> {
    use FaultId::*;
    const GENERAL: &str = "Unclassified Authentication Failure";
    match id {
        AuthGeneralError => mgw(None, GENERAL, GENERAL),
        InvalidCredentials => {
            mgw(None, "Invalid Credentials", "Invalid Credentials. Make sure you have given the correct access token")
        }
        MissingCredentials => mgw(
            None,
            "Missing Credentials",
            "Missing Credentials. Make sure your API request provides required credentials",
        ),
        AccessTokenExpired => {
            mgw(None, "Access Token Expired", "Access Token Expired. Renew the access token and try again")
        }
        AccessTokenInactive => {
            mgw(None, "Access Token Inactive", "Access Token Inactive. Unclassified Authentication Failure")
        }
        IncorrectAccessTokenType => mgw(
            None,
            "Incorrect Access Token Type is provided",
            "Incorrect Access Token Type is provided. Unclassified Authentication Failure",
        ),
        NoMatchingResource => mgw(
            None,
            "No matching resource found in the API for the given request",
            "No matching resource found in the API for the given request. Check the API documentation and add a proper REST resource path to the invocation URL",
        ),
        ApiTemporarilyBlocked => mgw(
            None,
            "The requested API is temporarily blocked",
            "The requested API is temporarily blocked. Unclassified Authentication Failure",
        ),
        ResourceForbidden | ApiKeyRestricted => {
            mgw(None, "Resource forbidden ", "Resource forbidden . Unclassified Authentication Failure")
        }
        SubscriptionInactive => mgw(
            None,
            "The subscription to the API is inactive",
            "The subscription to the API is inactive. Unclassified Authentication Failure",
        ),
        InsufficientScope => mgw(
            None,
            "The access token does not allow you to access the requested resource",
            "The access token does not allow you to access the requested resource. Unclassified Authentication Failure",
        ),
        InvalidCredentialsAlt => mgw(
            None,
            "Invalid Credentials",
            "Invalid Credentials. Make sure you have given the correct username and password",
        ),
        InvalidCredentialFormat => mgw(
            None,
            "Invalid Format",
            "Invalid Format. Make sure you have given the credentials in correct format with \":\" character",
        ),
        InvalidCookie => mgw(
            None,
            "Invalid Cookie is Provided",
            "Invalid Cookie is Provided. Make sure you have given the valid cookie at the Server startup",
        ),
        NoCookies => mgw(
            None,
            "No Cookies are provided at Server startup.",
            "No Cookies are provided at Server startup.. Make sure you have given the authorized cookie at the server startup",
        ),
        UnprocessableEntity => {
            mgw(Some(422), "Unprocessable entity", "Unprocessable entity. Unclassified Authentication Failure")
        }
        UnprocessableEntityAlt => {
            mgw(Some(500), "Unprocessable entity", "Unprocessable entity. Unclassified Authentication Failure")
        }
        InvalidAuthScheme => mgw(
            None,
            "Invalid Authentication scheme",
            "Invalid Authentication scheme. API can not be used with this authentication scheme",
        ),
        // Its throttle filter (`filters/throttle_filter.bal` lines 79-80, 96-98, 212-213): a
        // blocking condition is 403 with the description's typo, internal errors are
        // `INTERNAL_SERVER_ERROR_MESSAGE` (`constants/constants.bal` line 486).
        Blocked => mgw(Some(403), "Message blocked", "You have been blocked from accesing the resource"),
        ThrottleInternalError => mgw(None, "Internal server error occured", "Internal server error occured"),
        ThrottlePolicyMissing => mgw(None, "Internal server error occured", "POLICY ENFORCEMENT ERROR"),
        // The CLI's templates (`components/micro-gateway-cli/src/main/resources/templates/`):
        // `apiNotFoundService.mustache` lines 28-31 with `faultResponses.mustache` lines 1-6, and
        // `noProdAvailableError.mustache` / `noSandAvailableError.mustache` lines 1-9 (403).
        NotFound => Some(Microgateway {
            status: None,
            message: "Runtime Error",
            description: "No matching resource found for given API Request",
            shape: MicrogatewayShape::StatusReport,
        }),
        ProductionKeyWithoutEndpoint => Some(Microgateway {
            status: Some(403),
            message: "Invalid Credentials",
            description: "Production key offered to the API with no production endpoint",
            shape: MicrogatewayShape::KeyTypeError,
        }),
        SandboxKeyWithoutEndpoint => Some(Microgateway {
            status: Some(403),
            message: "Invalid Credentials",
            description: "Sandbox key offered to the API with no sandbox endpoint",
            shape: MicrogatewayShape::KeyTypeError,
        }),
        ConnectionTimedOut => mgw(None, "Runtime Error", "Connection timed out"),
        ConnectionFailed => mgw(None, "Runtime Error", "Error connecting to the back end"),
        _ => None,
    }
}

/// What Choreo Connect answers for a fault where it differs from API-M 4.x: each field that is
/// `Some` replaces the catalogue's (overrides still apply on top).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChoreoAnswer {
    pub status: Option<u16>,
    pub code: Option<u32>,
    pub message: Option<&'static str>,
    pub description: Option<&'static str>,
}

impl ChoreoAnswer {
    const SAME: ChoreoAnswer = ChoreoAnswer { status: None, code: None, message: None, description: None };

    const fn status(status: u16) -> ChoreoAnswer {
        ChoreoAnswer { status: Some(status), ..ChoreoAnswer::SAME }
    }
}

/// Where Choreo Connect (its enforcer, `org.wso2.choreo.connect.enforcer`, 1.0 to 1.2) answers
/// otherwise than API-M 4.x.
///
/// It answers a blocking condition (900805) with 403 and every other throttle code, the hard
/// limit's too, with 429 (`FilterUtils.setThrottleErrorToContext`). Its `AuthFilter` refuses a key
/// type the API has no endpoint for as an authentication failure: 401, its own sentence followed
/// by the invalid-credentials advice (`getFailureMessageDetailDescription`, for 900901).
pub fn choreo_connect(id: FaultId) -> ChoreoAnswer {
    use FaultId::*;
    match id {
        Blocked => ChoreoAnswer::status(403),
        HardLimitExceeded => ChoreoAnswer::status(429),
        ProductionKeyWithoutEndpoint => ChoreoAnswer {
            status: Some(401),
            message: Some("Invalid Credentials"),
            description: Some("Production key offered to an API with no production endpoint. Make sure you have provided the correct security credentials"),
            ..ChoreoAnswer::SAME
        },
        SandboxKeyWithoutEndpoint => ChoreoAnswer {
            status: Some(401),
            message: Some("Invalid Credentials"),
            description: Some("Sandbox key offered to an API with no sandbox endpoint. Make sure you have provided the correct security credentials"),
            ..ChoreoAnswer::SAME
        },
        // `AuthFilter` finds no credential it can authenticate with: `setUnauthenticatedErrorToContext`
        // answers 900901 with the bare advice.
        MissingCredentials => ChoreoAnswer {
            code: Some(900901),
            message: Some("Invalid Credentials"),
            description: Some("Make sure you have provided the correct security credentials"),
            ..ChoreoAnswer::SAME
        },
        // `JWTValidator` marks an expired token 900901 like any invalid one, and `JWTAuthenticator`
        // throws it with `getAuthenticationFailureMessage(900901)`, which the advice is appended to.
        AccessTokenExpired => ChoreoAnswer {
            code: Some(900901),
            message: Some("Invalid Credentials"),
            description: Some("Invalid Credentials. Make sure you have provided the correct security credentials"),
            ..ChoreoAnswer::SAME
        },
        // A key manager or token-handling failure: every `APISecurityException` thrown with 900900
        // carries `API_AUTH_GENERAL_ERROR_MESSAGE` as its message, which becomes the description.
        AuthGeneralError => ChoreoAnswer { description: Some("Unclassified Authentication Failure"), ..ChoreoAnswer::SAME },
        // An API key's IP or referrer restriction (`APIKeyAuthenticator.validateAPIKeyRestrictions`):
        // thrown with `API_AUTH_FORBIDDEN_MESSAGE` as its message.
        ApiKeyRestricted => ChoreoAnswer { description: Some("Resource forbidden "), ..ChoreoAnswer::SAME },
        // An inactive (on hold, rejected) subscription: `JWTAuthenticator` throws the validation
        // status 900909 with 403 and the subscription-validation sentence.
        SubscriptionInactive => ChoreoAnswer {
            status: Some(403),
            description: Some("User is NOT authorized to access the Resource. API Subscription validation failed."),
            ..ChoreoAnswer::SAME
        },
        // `HttpRequestHandler` and `GraphQLQueryAnalysisFilter`: 400 with carbon-apimgt's
        // `GRAPHQL_INVALID_QUERY_MESSAGE` (the description is the parser's message).
        InvalidGraphqlQuery => ChoreoAnswer { status: Some(400), message: Some("INVALID QUERY"), ..ChoreoAnswer::SAME },
        // The adapter makes one route per resource and method (`routes_with_clusters.go`): a path or
        // method no resource has is the router's NR local reply (`response_mapper.go`).
        NoMatchingResource => ChoreoAnswer {
            status: Some(404),
            code: Some(404),
            message: Some("Not Found"),
            description: Some("The requested resource is not available."),
        },
        ApiBlocked
        | TemporaryServerError
        | IncompletePayload
        | NotFound
        | ApisNotLoaded
        | ApiThrottled
        | ResourceThrottled
        | ApplicationThrottled
        | SubscriptionThrottled
        | CustomPolicyThrottled
        | BurstThrottled
        | WebsocketFrameThrottled
        | ThrottleInternalError
        | ThrottlePolicyMissing
        | InvalidCredentials
        | AccessTokenInactive
        | IncorrectAccessTokenType
        | ApiTemporarilyBlocked
        | ResourceForbidden
        | InsufficientScope
        | InvalidCredentialsAlt
        | InvalidCredentialFormat
        | InvalidCookie
        | NoCookies
        | UnprocessableEntity
        | UnprocessableEntityAlt
        | InvalidAuthScheme
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
        | ResponseProcessingFailed
        | ChoreoNoRoute
        | ChoreoConnectFailure
        | ChoreoTimeout
        | ChoreoOverflow
        | ChoreoRetryLimit
        | ChoreoNoCluster
        | ChoreoNoHealthyUpstream
        | ChoreoRemoteReset
        | ChoreoConnectionTermination
        | ChoreoLocalReset => ChoreoAnswer::SAME,
    }
}

/// Whether Choreo Connect's router answers a fault (an Envoy local reply, whose body has
/// `message`/`description`) rather than its enforcer (`error_message`/`error_description`): upstream
/// failures, and a path or method no route matches.
pub fn choreo_router_answers(id: FaultId) -> bool {
    matches!(id.spec().family, Family::ChoreoUpstream | Family::Gateway | Family::Transport)
        || id == FaultId::NoMatchingResource
}

/// The `error_description` of the `invalid_token` challenge WSO2's gateways send on every 401
/// (API-M 4.x's `APIAuthenticationHandler.handleAuthFailure`, a missing credential's included)
/// and Choreo Connect's `AuthFilter` on every refusal it makes.
pub const CHALLENGE_DESCRIPTION: &str = "The provided token is invalid";

/// Whether Choreo Connect's `AuthFilter` refuses the request: it then adds `WWW-Authenticate`
/// (`<challenges>, error="invalid_token", error_description="The provided token is invalid"`)
/// whatever the status, a missing credential, a 403 and a blocked API's 503 included.
pub fn choreo_auth_filter_answers(id: FaultId) -> bool {
    (id.spec().family == Family::Auth && !choreo_router_answers(id))
        || matches!(
            id,
            FaultId::ApiBlocked | FaultId::ProductionKeyWithoutEndpoint | FaultId::SandboxKeyWithoutEndpoint
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::ALL;

    /// A request that may be for an API not loaded yet is told to try again later in Tyk's words
    /// too: its 503, not the 500 of a failed proxying (a server error, not a wait).
    #[test]
    fn tyk_tells_a_request_before_the_apis_are_loaded_to_wait() {
        assert_eq!(tyk(FaultId::ApisNotLoaded), (503, "Service temporarily unavailable."));
    }

    /// wso2/product-microgateway v3.2.10, `constants/api_security_constants.bal` lines 19-173
    /// (messages, details, `getFailureMessageDetailDescription`) and `utils/utils.bal` lines
    /// 290-311 (`setErrorMessageToInvocationContext`: the status).
    #[test]
    fn the_microgateway_answers_authentication_faults_with_its_own_texts_and_statuses() {
        let answer = |id| microgateway(id).map(|m| (m.status.unwrap_or(id.spec().status), m.message, m.description));
        let cases: [(FaultId, u16, &str, &str); 8] = [
            (
                FaultId::InvalidCredentials,
                401,
                "Invalid Credentials",
                "Invalid Credentials. Make sure you have given the correct access token",
            ),
            (
                FaultId::MissingCredentials,
                401,
                "Missing Credentials",
                "Missing Credentials. Make sure your API request provides required credentials",
            ),
            (
                FaultId::AccessTokenExpired,
                401,
                "Access Token Expired",
                "Access Token Expired. Renew the access token and try again",
            ),
            // Its 900904 branch tests 900906 again (line 150): the general detail.
            (
                FaultId::AccessTokenInactive,
                401,
                "Access Token Inactive",
                "Access Token Inactive. Unclassified Authentication Failure",
            ),
            (
                FaultId::InvalidCredentialFormat,
                401,
                "Invalid Format",
                "Invalid Format. Make sure you have given the credentials in correct format with \":\" character",
            ),
            (
                FaultId::InvalidAuthScheme,
                401,
                "Invalid Authentication scheme",
                "Invalid Authentication scheme. API can not be used with this authentication scheme",
            ),
            (
                FaultId::UnprocessableEntity,
                422,
                "Unprocessable entity",
                "Unprocessable entity. Unclassified Authentication Failure",
            ),
            (
                FaultId::UnprocessableEntityAlt,
                500,
                "Unprocessable entity",
                "Unprocessable entity. Unclassified Authentication Failure",
            ),
        ];
        for (id, status, message, description) in cases {
            assert_eq!(answer(id), Some((status, message, description)), "{id:?}");
        }
        assert_eq!(
            answer(FaultId::InsufficientScope),
            Some((403, "The access token does not allow you to access the requested resource",
                "The access token does not allow you to access the requested resource. Unclassified Authentication Failure"))
        );
        assert_eq!(
            answer(FaultId::NoCookies).map(|m| m.2),
            Some("No Cookies are provided at Server startup.. Make sure you have given the authorized cookie at the server startup")
        );
        assert_eq!(
            answer(FaultId::ResourceForbidden),
            Some((403, "Resource forbidden ", "Resource forbidden . Unclassified Authentication Failure"))
        );
        // Every 9009xx entry has the Microgateway's answer.
        for id in ALL.iter().filter(|id| (900900..=900917).contains(&id.spec().code)) {
            assert!(microgateway(*id).is_some(), "{id:?}");
        }
    }

    /// wso2/product-microgateway v3.2.10, `filters/throttle_filter.bal` lines 79-80 (900805 with
    /// `FORBIDDEN`), 96-98 (900809), 212-213 (900808); `constants/api_throttle_out_constants.bal`
    /// lines 26-35; `constants/constants.bal` line 486.
    #[test]
    fn the_microgateway_answers_blocking_and_throttling_errors_with_its_own_texts_and_statuses() {
        let answer = |id| microgateway(id).map(|m| (m.status.unwrap_or(id.spec().status), m.message, m.description));
        assert_eq!(
            answer(FaultId::Blocked),
            Some((403, "Message blocked", "You have been blocked from accesing the resource"))
        );
        assert_eq!(
            answer(FaultId::ThrottleInternalError),
            Some((500, "Internal server error occured", "Internal server error occured"))
        );
        assert_eq!(
            answer(FaultId::ThrottlePolicyMissing),
            Some((500, "Internal server error occured", "POLICY ENFORCEMENT ERROR"))
        );
        // Throttled out: the same texts as API-M's, 429.
        for id in [FaultId::ApiThrottled, FaultId::ResourceThrottled, FaultId::SubscriptionThrottled] {
            assert_eq!(microgateway(id), None, "{id:?}");
            assert_eq!(
                (id.spec().status, id.spec().message, id.spec().description),
                (429, "Message throttled out", "You have exceeded your quota")
            );
        }
    }

    #[test]
    fn kanali_codes_carry_their_own_status_and_message() {
        for (position, entry) in KANALI.iter().enumerate() {
            assert_eq!(usize::from(entry.code), position);
        }
        assert_eq!(kanali(FaultId::ConnectionFailed), KanaliError { code: 8, status: 502, message: KANALI[8].message });
        assert_eq!(kanali(FaultId::NotFound).status, 404);
        assert_eq!(kanali(FaultId::InvalidCredentials).status, 401);
        assert_eq!(kanali(FaultId::ApplicationThrottled).status, 429);
        for id in ALL {
            let entry = kanali(*id);
            assert_eq!(KANALI[usize::from(entry.code)], entry, "{:?}", id);
        }
    }
}
