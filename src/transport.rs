//! Response phase: recognises the replies Envoy itself makes for a failed upstream and names the
//! transport fault that replaces them. Responses the backend sent (`response.code_details` is
//! `via_upstream`) are never touched, whatever their status.

use crate::catalogue::{Fault, FaultId, ProtocolState};
use crate::schema::ErrorFormat;

/// Envoy response flag bits (`response.flags`), as Envoy 1.40 reports them.
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2; // UH
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4; // UT
    pub const LOCAL_RESET: u64 = 0x8; // LR
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 0x80; // UO
    pub const NO_ROUTE_FOUND: u64 = 0x100; // NR
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x8000; // URX
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x1_0000; // SI
    pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 0x8_0000; // UMSDR
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000; // UPE
    pub const NO_CLUSTER_FOUND: u64 = 0x100_0000; // NC
    pub const DNS_RESOLUTION_FAILED: u64 = 0x400_0000; // DF
    pub const DROP_OVERLOAD: u64 = 0x800_0000; // DO
    pub const UNCONDITIONAL_DROP_OVERLOAD: u64 = 0x2000_0000; // UDO
}

/// What the response phase knows about a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseView<'a> {
    /// `:status`.
    pub status: u16,
    /// `response.code_details`, if Envoy provided it.
    pub code_details: Option<&'a str>,
    /// `response.flags`.
    pub flags: u64,
    /// The filter saw the end of the request.
    pub request_complete: bool,
    /// The filter saw request body data.
    pub request_body_started: bool,
}

/// Why Envoy answered instead of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    ConnectFailure,
    DnsFailure,
    Timeout,
    ProtocolError,
    ConnectionTermination,
    RemoteReset,
    LocalReset,
    NoHealthyUpstream,
    Overflow,
    RetriesExhausted,
    NoCluster,
    NoRoute,
    PayloadTooLarge,
}

/// `response.code_details` of a response the backend sent.
pub const FROM_UPSTREAM: &str = "via_upstream";

/// `response.code_details` of Envoy's reply to a stream that outlived its `max_stream_duration`.
const MAX_DURATION_TIMEOUT: &str = "max_duration_timeout";

/// `response.code_details` of Envoy's 413 for a request body over its buffer limit (a prefix:
/// some versions add a suffix).
const PAYLOAD_TOO_LARGE: &str = "request_payload_too_large";

/// Every `response.code_details` value the classification reads, beside the flags: a reference
/// for another Envoy version to be checked against (the README's "Not verified" names them).
pub const DETAILS_READ: [&str; 3] = [FROM_UPSTREAM, PAYLOAD_TOO_LARGE, MAX_DURATION_TIMEOUT];

/// Every response flag the classification reads, with the short name Envoy's access log prints
/// (`%RESPONSE_FLAGS%`), the most specific cause first: a retried connection failure carries URX
/// and UF, and is a connection failure. The idle timeout of the whole stream (the connection
/// manager's or the route's) is a timeout too. docs/ERROR-CODES.md lists them from here.
pub const FLAGS_READ: [(u64, &str, UpstreamFailure); 16] = [
    (flags::UPSTREAM_REQUEST_TIMEOUT, "UT", UpstreamFailure::Timeout),
    (flags::UPSTREAM_MAX_STREAM_DURATION_REACHED, "UMSDR", UpstreamFailure::Timeout),
    (flags::STREAM_IDLE_TIMEOUT, "SI", UpstreamFailure::Timeout),
    (flags::UPSTREAM_CONNECTION_FAILURE, "UF", UpstreamFailure::ConnectFailure),
    (flags::DNS_RESOLUTION_FAILED, "DF", UpstreamFailure::DnsFailure),
    (flags::UPSTREAM_PROTOCOL_ERROR, "UPE", UpstreamFailure::ProtocolError),
    (flags::UPSTREAM_CONNECTION_TERMINATION, "UC", UpstreamFailure::ConnectionTermination),
    (flags::UPSTREAM_REMOTE_RESET, "UR", UpstreamFailure::RemoteReset),
    (flags::LOCAL_RESET, "LR", UpstreamFailure::LocalReset),
    (flags::NO_HEALTHY_UPSTREAM, "UH", UpstreamFailure::NoHealthyUpstream),
    (flags::UPSTREAM_OVERFLOW, "UO", UpstreamFailure::Overflow),
    (flags::DROP_OVERLOAD, "DO", UpstreamFailure::Overflow),
    (flags::UNCONDITIONAL_DROP_OVERLOAD, "UDO", UpstreamFailure::Overflow),
    (flags::UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX", UpstreamFailure::RetriesExhausted),
    (flags::NO_CLUSTER_FOUND, "NC", UpstreamFailure::NoCluster),
    (flags::NO_ROUTE_FOUND, "NR", UpstreamFailure::NoRoute),
];

/// Classifies a response; `None` means it passes untouched.
pub fn classify(view: &ResponseView<'_>) -> Option<UpstreamFailure> {
    if view.code_details == Some(FROM_UPSTREAM) {
        return None;
    }
    // By the details alone: Envoy answers a gRPC client's 413 with a 200 too, and sets no flag
    // when a stream outlives the connection manager's or the route's max_stream_duration.
    if view.code_details.is_some_and(|details| details.starts_with(PAYLOAD_TOO_LARGE)) {
        return Some(UpstreamFailure::PayloadTooLarge);
    }
    if view.code_details == Some(MAX_DURATION_TIMEOUT) {
        return Some(UpstreamFailure::Timeout);
    }
    FLAGS_READ.iter().find(|(bit, _, _)| view.flags & bit != 0).map(|(_, _, failure)| *failure)
}

/// WSO2's protocol state when the failure happened, as far as the filter can tell: a reply from
/// Envoy always comes before response headers, so the state is about the request.
pub fn protocol_state(view: &ResponseView<'_>) -> ProtocolState {
    if view.request_complete {
        ProtocolState::RequestDone
    } else if view.request_body_started {
        ProtocolState::RequestBody
    } else {
        ProtocolState::RequestHead
    }
}

/// The fault for a failure. API-M's transport codes (base + protocol state) by default; Choreo
/// Connect's own codes with the `choreo-connect` format.
pub fn fault_for(failure: UpstreamFailure, state: ProtocolState, format: ErrorFormat) -> Fault {
    use UpstreamFailure::*;
    if format == ErrorFormat::ChoreoConnect {
        let id = match failure {
            ConnectFailure | DnsFailure => FaultId::ChoreoConnectFailure,
            Timeout => FaultId::ChoreoTimeout,
            ProtocolError => FaultId::ChoreoRemoteReset,
            ConnectionTermination => FaultId::ChoreoConnectionTermination,
            RemoteReset => FaultId::ChoreoRemoteReset,
            LocalReset => FaultId::ChoreoLocalReset,
            NoHealthyUpstream => FaultId::ChoreoNoHealthyUpstream,
            Overflow => FaultId::ChoreoOverflow,
            RetriesExhausted => FaultId::ChoreoRetryLimit,
            NoCluster => FaultId::ChoreoNoCluster,
            NoRoute => FaultId::ChoreoNoRoute,
            PayloadTooLarge => FaultId::IncompletePayload,
        };
        return Fault::new(id);
    }
    if format == ErrorFormat::Microgateway {
        // The Microgateway has no protocol-state arithmetic: a timeout is 101504, every other
        // backend failure 101503.
        return match failure {
            Timeout => Fault::new(FaultId::ConnectionTimedOut),
            NoRoute => Fault::new(FaultId::NotFound),
            PayloadTooLarge => Fault::new(FaultId::IncompletePayload),
            ConnectFailure
            | DnsFailure
            | ProtocolError
            | ConnectionTermination
            | RemoteReset
            | LocalReset
            | NoHealthyUpstream
            | Overflow
            | RetriesExhausted
            | NoCluster => Fault::new(FaultId::ConnectionFailed),
        };
    }
    match failure {
        // The connection never opened: REQUEST_READY, so exactly 101503.
        ConnectFailure | DnsFailure | NoHealthyUpstream | Overflow | RetriesExhausted | NoCluster => {
            Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady)
        }
        Timeout => Fault::transport(FaultId::ConnectionTimedOut, state),
        ProtocolError => Fault::transport(FaultId::ProtocolViolation, state),
        ConnectionTermination | RemoteReset | LocalReset => Fault::transport(FaultId::ConnectionClosed, state),
        NoRoute => Fault::new(FaultId::NotFound),
        PayloadTooLarge => Fault::new(FaultId::IncompletePayload),
    }
}

/// Classifies and names the fault in one step; `None` means the response passes untouched.
pub fn fault_for_response(view: &ResponseView<'_>, format: ErrorFormat) -> Option<Fault> {
    classify(view).map(|failure| fault_for(failure, protocol_state(view), format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: u16, details: &'static str, flags: u64) -> ResponseView<'static> {
        ResponseView { status, code_details: Some(details), flags, request_complete: true, request_body_started: false }
    }

    #[test]
    fn backend_responses_pass_whatever_their_status_or_flags() {
        assert_eq!(classify(&view(500, "via_upstream", 0)), None);
        assert_eq!(classify(&view(503, "via_upstream", flags::UPSTREAM_RETRY_LIMIT_EXCEEDED)), None);
        assert_eq!(classify(&view(413, "via_upstream", 0)), None);
        assert_eq!(classify(&view(404, "route_not_found", 0)), None, "no flag, no rewrite");
    }

    #[test]
    fn envoy_facts_from_1_40_classify() {
        let refused = view(
            503,
            "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
            32,
        );
        let fault = fault_for_response(&refused, ErrorFormat::ApimJson).unwrap();
        assert_eq!((fault.id, fault.code), (FaultId::ConnectionFailed, 101503));
        let timeout = view(504, "response_timeout", 4);
        let fault = fault_for_response(&timeout, ErrorFormat::ApimJson).unwrap();
        assert_eq!((fault.id, fault.code), (FaultId::ConnectionTimedOut, 101507));
    }

    #[test]
    fn protocol_state_follows_the_request() {
        let mut timeout = view(504, "response_timeout", flags::UPSTREAM_REQUEST_TIMEOUT);
        timeout.request_complete = false;
        assert_eq!(fault_for_response(&timeout, ErrorFormat::ApimJson).unwrap().code, 101505);
        timeout.request_body_started = true;
        assert_eq!(fault_for_response(&timeout, ErrorFormat::ApimJson).unwrap().code, 101506);
        let closed = view(
            503,
            "upstream_reset_before_response_started{connection_termination}",
            flags::UPSTREAM_CONNECTION_TERMINATION,
        );
        assert_eq!(fault_for_response(&closed, ErrorFormat::ApimJson).unwrap().code, 101508);
    }

    #[test]
    fn most_specific_flag_wins() {
        let retried = view(
            503,
            "upstream_reset_before_response_started{connection_failure}",
            flags::UPSTREAM_RETRY_LIMIT_EXCEEDED | flags::UPSTREAM_CONNECTION_FAILURE,
        );
        assert_eq!(classify(&retried), Some(UpstreamFailure::ConnectFailure));
        assert_eq!(
            classify(&view(503, "no_healthy_upstream", flags::NO_HEALTHY_UPSTREAM)),
            Some(UpstreamFailure::NoHealthyUpstream)
        );
        assert_eq!(
            classify(&view(503, "cluster_not_found", flags::NO_CLUSTER_FOUND)),
            Some(UpstreamFailure::NoCluster)
        );
        assert_eq!(classify(&view(404, "route_not_found", flags::NO_ROUTE_FOUND)), Some(UpstreamFailure::NoRoute));
    }

    #[test]
    fn protocol_errors_dns_failures_and_max_duration_are_classified() {
        let protocol =
            view(502, "upstream_reset_before_response_started{protocol_error}", flags::UPSTREAM_PROTOCOL_ERROR);
        assert_eq!(fault_for_response(&protocol, ErrorFormat::ApimJson).unwrap().code, 101509);
        let dns = view(503, "dns_resolution_failure", flags::DNS_RESOLUTION_FAILED);
        assert_eq!(fault_for_response(&dns, ErrorFormat::ApimJson).unwrap().code, 101503);
        let max_duration =
            view(504, "upstream_max_stream_duration_reached", flags::UPSTREAM_MAX_STREAM_DURATION_REACHED);
        assert_eq!(fault_for_response(&max_duration, ErrorFormat::ApimJson).unwrap().code, 101507);
    }

    /// Envoy's replies for a stream that timed out as a whole or a request its cluster dropped
    /// are its own plain text like the route's timeout: each is a transport fault.
    #[test]
    fn envoys_stream_timeouts_and_dropped_requests_are_classified() {
        let idle = view(504, "stream_idle_timeout", flags::STREAM_IDLE_TIMEOUT);
        assert_eq!(fault_for_response(&idle, ErrorFormat::ApimJson).map(|fault| fault.code), Some(101507));
        let duration = view(504, "max_duration_timeout", 0);
        assert_eq!(fault_for_response(&duration, ErrorFormat::ApimJson).map(|fault| fault.code), Some(101507));
        let mut stalled = view(408, "stream_idle_timeout", flags::STREAM_IDLE_TIMEOUT);
        stalled.request_complete = false;
        stalled.request_body_started = true;
        assert_eq!(fault_for_response(&stalled, ErrorFormat::ApimJson).map(|fault| fault.code), Some(101506));
        for (details, flag) in [
            ("drop_overload", flags::DROP_OVERLOAD),
            ("unconditional_drop_overload", flags::UNCONDITIONAL_DROP_OVERLOAD),
        ] {
            let dropped = view(503, details, flag);
            assert_eq!(fault_for_response(&dropped, ErrorFormat::ApimJson).map(|fault| fault.code), Some(101503));
        }
        assert_eq!(fault_for_response(&idle, ErrorFormat::Microgateway).map(|fault| fault.code), Some(101504));
    }

    #[test]
    fn oversized_bodies_become_102511() {
        let fault = fault_for_response(&view(413, "request_payload_too_large", 0), ErrorFormat::ApimJson).unwrap();
        assert_eq!((fault.id, fault.code), (FaultId::IncompletePayload, 102511));
        // A gRPC client's is a trailers-only 200.
        let fault = fault_for_response(&view(200, "request_payload_too_large", 0), ErrorFormat::ApimJson).unwrap();
        assert_eq!(fault.code, 102511);
    }

    #[test]
    fn the_microgateway_has_no_protocol_state_arithmetic() {
        let timeout = view(504, "response_timeout", flags::UPSTREAM_REQUEST_TIMEOUT);
        assert_eq!(fault_for_response(&timeout, ErrorFormat::Microgateway).unwrap().code, 101504);
        let reset = view(503, "upstream_reset_before_response_started{remote_reset}", flags::UPSTREAM_REMOTE_RESET);
        assert_eq!(fault_for_response(&reset, ErrorFormat::Microgateway).unwrap().code, 101503);
        let refused = view(503, "x", flags::UPSTREAM_CONNECTION_FAILURE);
        assert_eq!(fault_for_response(&refused, ErrorFormat::Microgateway).unwrap().code, 101503);
    }

    #[test]
    fn choreo_connect_uses_its_own_codes() {
        let fault = fault_for_response(&view(503, "x", flags::UPSTREAM_CONNECTION_FAILURE), ErrorFormat::ChoreoConnect)
            .unwrap();
        assert_eq!(fault.code, 102503);
        let fault = fault_for_response(
            &view(504, "response_timeout", flags::UPSTREAM_REQUEST_TIMEOUT),
            ErrorFormat::ChoreoConnect,
        )
        .unwrap();
        assert_eq!(fault.code, 102504);
    }
}
