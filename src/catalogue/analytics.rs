//! How operators see a fault: the stage or throttling level that refused (`level`, a stats label)
//! and WSO2's analytics classification of the code sent (`errorType` and the sub-category WSO2
//! puts in `errorMessage`), so dashboards built on WSO2's analytics events keep working.

use super::FaultId;

impl FaultId {
    /// The stage or throttling level that answers with this fault: `routing`, `lifecycle`,
    /// `request`, `authentication`, `authorization`, `blocking`, `api`, `resource`,
    /// `subscription`, `application`, `custom`, `burst`, `websocket_frame` (a WebSocket frame over a tier), `hard_limit`, `throttling` (it could
    /// not count) or `transport`.
    pub fn level(self) -> &'static str {
        use FaultId::*;
        match self {
            NotFound | NoMatchingResource | ChoreoNoRoute | ApisNotLoaded => "routing",
            ApiBlocked => "lifecycle",
            InvalidGraphqlQuery | TemporaryServerError | IncompletePayload => "request",
            ApiThrottled => "api",
            HardLimitExceeded => "hard_limit",
            ResourceThrottled => "resource",
            ApplicationThrottled => "application",
            SubscriptionThrottled => "subscription",
            Blocked => "blocking",
            CustomPolicyThrottled => "custom",
            BurstThrottled => "burst",
            WebsocketFrameThrottled => "websocket_frame",
            ThrottleInternalError | ThrottlePolicyMissing => "throttling",
            ProductionKeyWithoutEndpoint
            | SandboxKeyWithoutEndpoint
            | IncorrectAccessTokenType
            | ApiTemporarilyBlocked
            | ResourceForbidden
            | ApiKeyRestricted
            | SubscriptionInactive
            | InsufficientScope => "authorization",
            AuthGeneralError
            | InvalidCredentials
            | MissingCredentials
            | AccessTokenExpired
            | AccessTokenInactive
            | InvalidCredentialsAlt
            | InvalidCredentialFormat
            | InvalidCookie
            | NoCookies
            | UnprocessableEntity
            | UnprocessableEntityAlt
            | InvalidAuthScheme => "authentication",
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
            | ChoreoLocalReset => "transport",
        }
    }
}

/// WSO2's analytics classification of a fault code: `(errorType, errorMessage)`, as API-M 4.x's
/// `FaultCodeClassifier` makes it (AUTH 900900-900999, THROTTLED 900800-900899,
/// TARGET_CONNECTIVITY 101500-101599 and 303001, everything else OTHER). It reads the code alone,
/// as WSO2's does (`isResourceNotFound`/`isMethodNotAllowed` compare the error code with 404 and
/// 405), never the HTTP status: an operator's status override changes what the client is sent,
/// not how dashboards count the fault.
pub fn classify(code: u32) -> (&'static str, &'static str) {
    match code {
        900900..=900999 => (
            "AUTH",
            match code {
                900900..=900904 => "AUTHENTICATION_FAILURE",
                900905 | 900910 => "AUTHORIZATION_FAILURE",
                900907..=900909 => "SUBSCRIPTION_VALIDATION_FAILURE",
                _ => "OTHER",
            },
        ),
        900800..=900899 => (
            "THROTTLED",
            match code {
                900800 => "API_LEVEL_LIMIT_EXCEEDED",
                900801 => "HARD_LIMIT_EXCEEDED",
                900802 => "RESOURCE_LEVEL_LIMIT_EXCEEDED",
                900803 => "APPLICATION_LEVEL_LIMIT_EXCEEDED",
                900804 => "SUBSCRIPTION_LIMIT_EXCEEDED",
                900805 => "BLOCKED",
                900806 => "CUSTOM_POLICY_LIMIT_EXCEEDED",
                900807 => "BURST_CONTROL_LIMIT_EXCEEDED",
                _ => "OTHER",
            },
        ),
        101500..=101599 | 303001 => (
            "TARGET_CONNECTIVITY",
            match code {
                101504 | 101508 => "CONNECTION_TIMEOUT",
                303001 => "CONNECTION_SUSPENDED",
                _ => "OTHER",
            },
        ),
        _ => (
            "OTHER",
            match code {
                404 => "RESOURCE_NOT_FOUND",
                405 => "METHOD_NOT_ALLOWED",
                _ => "UNCLASSIFIED",
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::ALL;

    #[test]
    fn every_fault_has_a_level_and_throttle_faults_name_theirs() {
        for id in ALL {
            assert!(!id.level().is_empty());
        }
        assert_eq!(FaultId::ResourceThrottled.level(), "resource");
        assert_eq!(FaultId::InvalidCredentials.level(), "authentication");
        assert_eq!(FaultId::ResourceForbidden.level(), "authorization");
    }

    #[test]
    fn codes_classify_as_wso2_analytics_does() {
        assert_eq!(classify(900901), ("AUTH", "AUTHENTICATION_FAILURE"));
        assert_eq!(classify(900910), ("AUTH", "AUTHORIZATION_FAILURE"));
        assert_eq!(classify(900908), ("AUTH", "SUBSCRIPTION_VALIDATION_FAILURE"));
        assert_eq!(classify(900802), ("THROTTLED", "RESOURCE_LEVEL_LIMIT_EXCEEDED"));
        assert_eq!(classify(101504), ("TARGET_CONNECTIVITY", "CONNECTION_TIMEOUT"));
        assert_eq!(classify(101503), ("TARGET_CONNECTIVITY", "OTHER"));
        assert_eq!(classify(404), ("OTHER", "RESOURCE_NOT_FOUND"));
        assert_eq!(classify(700700), ("OTHER", "UNCLASSIFIED"));
        assert_eq!(classify(405), ("OTHER", "METHOD_NOT_ALLOWED"));
        assert_eq!(classify(303001), ("TARGET_CONNECTIVITY", "CONNECTION_SUSPENDED"));
        assert_eq!(classify(101001), ("OTHER", "UNCLASSIFIED"), "receiver I/O errors are below WSO2's target range");
    }
}
