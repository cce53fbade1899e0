//! Envoy's rate-limit service protocol (`envoy.service.ratelimit.v3.RateLimitService`), the
//! messages the filter sends and reads. Encoding is prost's (the message types below mirror the
//! `.proto` definitions field for field; prost derives the wire format).
//!
//! Sources: `envoy/service/ratelimit/v3/rls.proto`, `envoy/extensions/common/ratelimit/v3/
//! ratelimit.proto`, `envoy/type/v3/ratelimit_unit.proto` (Envoy's data-plane API).

use prost::Message;

/// The gRPC service and method.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `RateLimitRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Hits for every descriptor without its own (0 means 1).
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// The limit to apply, overriding the service's configuration.
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// This descriptor's hits (a `google.protobuf.UInt64Value`: 0 is a check that counts nothing).
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<u64>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitDescriptor.RateLimitOverride`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// `envoy.type.v3.RateLimitUnit` (never 0: the reference server cannot handle UNKNOWN).
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `RateLimitResponse` (the fields the filter reads).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<CurrentLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, Message)]
pub struct CurrentLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `RateLimitResponse.Code`.
pub const CODE_OK: i32 = 1;
pub const CODE_OVER_LIMIT: i32 = 2;

/// `envoy.type.v3.RateLimitUnit` values and their lengths in seconds, shortest first: SECOND,
/// MINUTE, HOUR, DAY, WEEK (7 on the response's enum, accepted on overrides), MONTH (5) and YEAR
/// (6). The reference server counts a month as 30 days and a year as 365 (its
/// `utils.UnitToDivider`), aligned to Unix time as every unit: WSO2's months are 30 days too.
pub const UNITS: [(i32, u64); 7] =
    [(1, 1), (2, 60), (3, 3_600), (4, 86_400), (7, 604_800), (5, 2_592_000), (6, 31_536_000)];

/// The smallest service unit that a window of `window_s` seconds divides, so that no window of
/// ours straddles one of the service's windows (its counter key changes at its unit's boundaries).
pub fn unit_for(window_s: u64) -> Option<(i32, u64)> {
    UNITS.iter().copied().find(|(_, unit_s)| *unit_s >= window_s && window_s > 0 && unit_s % window_s == 0)
}

/// Reads a response; `None` for bytes that are not one.
pub fn decode_response(bytes: &[u8]) -> Option<RateLimitResponse> {
    RateLimitResponse::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        crate::hashing::hex(bytes)
    }

    fn descriptor(hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: vec![Entry { key: "apim_key".into(), value: "x".into() }],
            limit: Some(RateLimitOverride { requests_per_unit: 3, unit: 2 }),
            hits_addend: hits,
        }
    }

    /// Golden vectors: the bytes the reference server's own Go client produced for the same
    /// messages (go-control-plane v1.32.4).
    #[test]
    fn requests_encode_exactly_as_the_reference_client_does() {
        let plain = RateLimitRequest { domain: "apim".into(), descriptors: vec![descriptor(None)], hits_addend: 0 };
        assert_eq!(hex(&plain.encode_to_vec()), "0a046170696d12150a0d0a086170696d5f6b6579120178120408031002");
        let addends =
            RateLimitRequest { domain: "apim".into(), descriptors: vec![descriptor(Some(5))], hits_addend: 2 };
        assert_eq!(
            hex(&addends.encode_to_vec()),
            "0a046170696d12190a0d0a086170696d5f6b65791201781204080310021a0208051802"
        );
        let check = RateLimitRequest { domain: "apim".into(), descriptors: vec![descriptor(Some(0))], hits_addend: 0 };
        assert_eq!(hex(&check.encode_to_vec()), "0a046170696d12170a0d0a086170696d5f6b65791201781204080310021a00");
    }

    #[test]
    fn responses_decode_with_absent_fields_as_defaults() {
        let bytes = |hex: &str| -> Vec<u8> {
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
        };
        let ok = decode_response(&bytes("0801120e0801120408031002180222020802")).unwrap();
        assert_eq!(ok.overall_code, CODE_OK);
        assert_eq!(ok.statuses[0].limit_remaining, 2);
        assert_eq!(ok.statuses[0].duration_until_reset.as_ref().unwrap().seconds, 2);
        let last = decode_response(&bytes("0801120c080112040803100222020802")).unwrap();
        assert_eq!(last.statuses[0].limit_remaining, 0, "remaining 0 is absent on the wire");
        let over = decode_response(&bytes("0802120c080212040803100222020802")).unwrap();
        assert_eq!((over.overall_code, over.statuses[0].code), (CODE_OVER_LIMIT, CODE_OVER_LIMIT));
        assert!(decode_response(b"\xff\xff\xff").is_none());
    }

    #[test]
    fn units_divide_into_whole_windows() {
        assert_eq!(unit_for(1), Some((1, 1)));
        assert_eq!(unit_for(10), Some((2, 60)));
        assert_eq!(unit_for(300), Some((3, 3_600)), "5 minutes live in hours");
        assert_eq!(unit_for(480), Some((4, 86_400)), "8 minutes do not divide an hour");
        assert_eq!(unit_for(420), Some((7, 604_800)), "7 minutes divide a week");
        assert_eq!(unit_for(660), None, "11 minutes divide no unit");
        assert_eq!(unit_for(2_592_000), Some((5, 2_592_000)), "WSO2's month: the service's MONTH");
        assert_eq!(unit_for(172_800), Some((5, 2_592_000)), "2 days divide no week, but a month");
        assert_eq!(unit_for(31_536_000), Some((6, 31_536_000)), "a 365-day year");
        assert_eq!(unit_for(86_400 * 73), Some((6, 31_536_000)), "73 days divide a year, no month");
        assert_eq!(unit_for(31_536_000 * 2), None, "longer than any unit");
        assert!(UNITS.windows(2).all(|pair| pair[0].1 < pair[1].1), "the smallest unit is found first");
    }
}
