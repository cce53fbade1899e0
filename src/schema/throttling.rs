//! Throttling beyond the directory's tiers, as users write it: custom policies, hard limits, and
//! how counters behave.

use super::default_one;
use crate::vocab::{FailureMode, KeyType, TimeUnit};
use schemars::JsonSchema;
use serde::Deserialize;

/// A custom policy: a counter per distinct value of `key`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "CustomPolicy")]
#[serde(deny_unknown_fields)]
pub struct RawCustomPolicy {
    /// Name, unique. Required.
    pub name: String,
    /// Counter key template over `$userId`, `$apiContext`, `$apiVersion`, `$appId`, `$clientIp`,
    /// `$resourceKey` (e.g. `$userId:$apiContext`). `$userId` is the user the request acts for, as
    /// WSO2 has it: the credential's end user, else the application's owner (application tokens
    /// and API keys act for their owner), else `anonymous` (open resources: every unauthenticated
    /// caller shares that counter); `$appId` is `anonymous` without a credential. Required.
    pub key: String,
    /// Requests per window. Exactly one of `requests` and `bytes` is required.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Body bytes per window.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Window unit. Required.
    pub per: TimeUnit,
    /// Window length in units. Defaults to 1.
    #[serde(default = "default_one")]
    pub unit_count: u32,
    /// APIs the policy applies to, as `<name>:<version>`. Defaults to all APIs.
    #[serde(default)]
    pub apis: Vec<String>,
}

/// A hard limit: the most requests per second an API takes for one key type.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "HardLimit")]
#[serde(deny_unknown_fields)]
pub struct RawHardLimit {
    /// API as `<name>:<version>`. Required.
    pub api: String,
    /// Key type the limit applies to. Defaults to `PRODUCTION`.
    #[serde(default)]
    pub key_type: KeyType,
    /// Requests per second. Required.
    pub requests_per_second: u64,
}

/// Counter behaviour.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Throttling")]
#[serde(deny_unknown_fields)]
pub struct RawThrottling {
    /// When counters cannot be updated (compare-and-swap retries exhausted): `deny` answers
    /// 900808 (500), `allow` lets the request through. Defaults to `deny`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Compare-and-swap attempts per counter update. Defaults to 20.
    #[serde(default = "default_cas_retries")]
    pub cas_retries: u32,
    /// Add the IETF `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers (the
    /// most restrictive counted level). Defaults to false.
    #[serde(default)]
    pub rate_limit_headers: bool,
    /// Header flagging a request let through over quota (subscription policies without
    /// stop-on-quota-reach). Defaults to `x-apim-quota-exceeded`.
    #[serde(default = "default_quota_header")]
    pub quota_exceeded_header: String,
    /// Shared-data slots holding counters. A slot holds up to 256 keys counting in their current
    /// windows, so about `counter_slots` x 256 keys can be active at once; a key that finds its
    /// slot full is counted in `apim.throttle.uncounted.slot_full`, logged, and handled by
    /// `failure_mode`. The first configuration an Envoy loads fixes the count until Envoy restarts.
    /// 1 to 65536; see docs/HOWTO.md to size it. Defaults to 4096.
    #[serde(default = "default_counter_slots")]
    pub counter_slots: u32,
}

impl Default for RawThrottling {
    fn default() -> Self {
        RawThrottling {
            failure_mode: FailureMode::default(),
            cas_retries: default_cas_retries(),
            rate_limit_headers: false,
            quota_exceeded_header: default_quota_header(),
            counter_slots: default_counter_slots(),
        }
    }
}

fn default_cas_retries() -> u32 {
    20
}
fn default_quota_header() -> String {
    "x-apim-quota-exceeded".to_string()
}
fn default_counter_slots() -> u32 {
    4096
}
