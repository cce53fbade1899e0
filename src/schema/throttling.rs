//! Throttling beyond the directory's tiers, as users write it: custom policies, hard limits, and
//! how counters behave.

use super::default_one;
use crate::vocab::{choice, FailureMode, KeyType, TimeUnit};
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
    /// WSO2 has it: the credential's end user (a token's `sub`, which WSO2's key manager sets to
    /// the application's owner in an application token; another identity provider's
    /// client-credentials token may carry the client id there), else the application's owner (an
    /// API key, a token without `sub`), else `anonymous` (open resources: every unauthenticated
    /// caller shares that counter), without the gateway's `@<tenant>` (`bob@carbon.super` is
    /// `bob`); `$appId` is the application's id, or without a credential the client's address
    /// (as WSO2's gateway has it, and as the `Unauthenticated` tier counts open requests). A
    /// request whose client address Envoy does not know (a Unix socket or internal listener)
    /// counts nowhere under a policy whose key needs it (`$clientIp`, an open request's
    /// `$appId`). Required.
    pub key: String,
    /// Requests per window. Exactly one of `requests` and `bytes` is required.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub requests: Option<u64>,
    /// Body bytes per window.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub bytes: Option<u64>,
    /// Window unit. Required.
    pub per: TimeUnit,
    /// Window length in units. Defaults to 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub unit_count: u32,
    /// APIs the policy applies to, as `<name>:<version>`. Defaults to all APIs.
    #[serde(default)]
    pub apis: Vec<String>,
    /// Count this policy across Envoy nodes on `throttling.rate_limit_service` (true) or in this
    /// Envoy alone (false). Defaults to the service's `applies_to` (node-local without a service).
    #[serde(default)]
    pub cluster_wide: Option<bool>,
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
    #[schemars(range(min = 1))]
    pub requests_per_second: u64,
    /// Count this policy across Envoy nodes on `throttling.rate_limit_service` (true) or in this
    /// Envoy alone (false). Defaults to the service's `applies_to` (node-local without a service).
    #[serde(default)]
    pub cluster_wide: Option<bool>,
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
    /// Compare-and-swap attempts per counter update a request waits on, 1 to 1000 (then
    /// `failure_mode`). Updates nothing refuses (bytes charged after a response, a token given
    /// back, a block the rate-limit service granted) try up to 1000 times whatever this says: other
    /// workers' updates delay them, never drop them. Defaults to 20.
    #[serde(default = "default_cas_retries")]
    #[schemars(range(min = 1, max = 1000))]
    pub cas_retries: u32,
    /// Add the IETF `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers: the
    /// most restrictive level counting requests, and on a throttled answer the level that refused
    /// it (whose window `Retry-After` names); byte budgets never appear there, not even when one
    /// refuses the request, nor does a 900808. `RateLimit-Reset` counts from when the response
    /// leaves: a backend answering after the window ended gets no RateLimit headers. On a request
    /// a level counted, the backend's own RateLimit headers never reach the client (replaced, or
    /// removed with the filter's). Defaults to false.
    #[serde(default)]
    pub rate_limit_headers: bool,
    /// Header flagging a request let through over quota (subscription policies without
    /// stop-on-quota-reach). Defaults to `x-apim-quota-exceeded`.
    #[serde(default = "default_quota_header")]
    pub quota_exceeded_header: String,
    /// Shared-data slots holding counters. A slot holds up to 256 keys counting in their current
    /// windows, so about `counter_slots` x 256 keys can be active at once; a key that finds its
    /// slot full is counted in `apim.throttle.uncounted.slot_full`, logged, and handled by
    /// `failure_mode`. Keys are placed in slots by a random secret of the Envoy process, so no
    /// client can choose keys that fill the slot of another's counter. The first configuration of a
    /// gateway (see `gateway`) an Envoy loads fixes its count until Envoy restarts.
    /// 1 to 65536; see docs/HOWTO.md to size it. Defaults to 4096.
    #[serde(default = "default_counter_slots")]
    #[schemars(range(min = 1, max = 65536))]
    pub counter_slots: u32,
    /// Levels counted in this Envoy: a worker takes this percentage of what remains in a
    /// counter's window as one block (at most `worker_lease_max` tokens) and spends it with no
    /// shared-data access; when that is one token or less it counts each request in shared data.
    /// Levels counted across nodes (`rate_limit_service`, leased) do the same with the tokens the
    /// node holds: a worker's block is this percentage of what remains for the node, at most half
    /// of what the node holds.
    /// So limits under `100 / worker_lease_share_percent` (20 by default) and the last tokens of
    /// every window are counted request by request, in order across workers. Never more than the
    /// limit is admitted; fewer only by the tokens a worker still holds when its traffic for that
    /// counter stops before the window ends (at most one block per worker and counter), and
    /// `RateLimit-Remaining` is what remained when the worker last took a block, less what it spent
    /// since. 1 to 100. Defaults to 5.
    #[serde(default = "default_worker_lease_share")]
    #[schemars(range(min = 1, max = 100))]
    pub worker_lease_share_percent: u32,
    /// The largest block of tokens a worker takes at once (see `worker_lease_share_percent`); 0
    /// or 1 counts every request in shared data. 0 to 1000. Defaults to 100.
    #[serde(default = "default_worker_lease_max")]
    #[schemars(range(max = 1000))]
    pub worker_lease_max: u32,
    /// A rate-limit service (Envoy's RLS v3 protocol, e.g. envoyproxy/ratelimit with Redis) to
    /// count across Envoy nodes. Defaults to none: every level counts in this Envoy alone.
    #[serde(default)]
    pub rate_limit_service: Option<RawRateLimitService>,
}

/// Counting across Envoy nodes on a rate-limit service speaking Envoy's RLS v3 protocol, tested
/// with envoyproxy/ratelimit and Redis. The filter sends every limit with its call, so the
/// service's configuration is the domain alone (`envoy/ratelimit/config/apim.yaml`). Every
/// request level (API, resource, subscription, burst, application, custom, hard limit) can count
/// across nodes; bandwidth policies count per node. Both modes admit at most a level's limit per
/// window across all nodes. Leased counting asks for tokens in blocks that shrink near the limit,
/// and counts a request denied at a later level nowhere; it admits fewer than the limit only by
/// the tokens a node still holds when its traffic for that counter stops before the window ends
/// (at most one and a half blocks per node and counter, fewer near the limit, plus one block of
/// the node's tokens per worker, see `worker_lease_share_percent`, plus tokens given back by
/// requests a later level denied), and by at most `lease_max` - 1 per counter and window
/// when a block asked for in one piece far from the limit arrives after other nodes took nearly
/// all that remained. Strict counting calls
/// once per request and cluster-wide level and cannot take a count back: a request denied at a
/// later level stays counted at the cluster-wide levels before it. Windows are aligned to Unix
/// time on the nodes and on the service: keep their clocks in step (NTP).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "RateLimitService")]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitService {
    /// The Envoy cluster of the service (HTTP/2). Required.
    pub cluster: String,
    /// The service's domain; its configuration needs only `domain: <this>`, the filter sends each
    /// limit with the request. Defaults to `apim`.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// How long a call may take, in milliseconds (1 to 60000). Defaults to 100.
    #[serde(default = "default_rls_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u32,
    /// When the service cannot be reached, answers late or answers without the filter's limits:
    /// `deny` answers 900808 (500), `allow` lets the request through uncounted (counted in
    /// `apim.throttle.uncounted.engine_unavailable`). Defaults to `allow`, as Envoy's own
    /// rate-limit filter.
    #[serde(default = "default_rls_failure_mode")]
    pub failure_mode: FailureMode,
    /// `leased`: a node takes tokens from the service in blocks, spends them across its workers
    /// and asks for the next block in the background when one is half spent: far fewer calls
    /// than requests, requests rarely wait, and never more than the limit across nodes.
    /// `strict`: one call per cluster-wide level per request, as Envoy's rate-limit filter.
    /// Defaults to `leased`.
    #[serde(default)]
    pub counting: Counting,
    /// Which request policies count across nodes when they do not say (`cluster_wide`): `all` or
    /// `marked` (only those with `cluster_wide: true`). Bandwidth policies always count per node.
    /// Defaults to `all`.
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// Leased counting: a node asks for this percentage of what the service last said remains
    /// (at least 1 token, at most `lease_max`), so blocks shrink to single tokens near the limit.
    /// 1 to 100. Defaults to 10.
    #[serde(default = "default_lease_share")]
    #[schemars(range(min = 1, max = 100))]
    pub lease_share_percent: u32,
    /// Leased counting: the most tokens a node asks for at once (1 to 1000; 1 makes leased
    /// counting call once per request, keeping given-back tokens). Defaults to 100.
    #[serde(default = "default_lease_max")]
    #[schemars(range(min = 1, max = 1000))]
    pub lease_max: u32,
}

/// How cluster-wide levels are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Counting {
    #[default]
    Leased,
    Strict,
}

choice!(Counting {
    Leased = "leased",
    Strict = "strict",
});

/// Which request policies count across nodes by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppliesTo {
    #[default]
    All,
    Marked,
}

choice!(AppliesTo {
    All = "all",
    Marked = "marked",
});

fn default_domain() -> String {
    "apim".to_string()
}
fn default_rls_timeout_ms() -> u32 {
    100
}
fn default_rls_failure_mode() -> FailureMode {
    FailureMode::Allow
}
fn default_lease_share() -> u32 {
    10
}
fn default_lease_max() -> u32 {
    100
}

impl Default for RawThrottling {
    fn default() -> Self {
        RawThrottling {
            failure_mode: FailureMode::default(),
            cas_retries: default_cas_retries(),
            rate_limit_headers: false,
            quota_exceeded_header: default_quota_header(),
            counter_slots: default_counter_slots(),
            worker_lease_share_percent: default_worker_lease_share(),
            worker_lease_max: default_worker_lease_max(),
            rate_limit_service: None,
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
fn default_worker_lease_share() -> u32 {
    5
}
fn default_worker_lease_max() -> u32 {
    100
}
