//! The directory as users write it in static configuration: applications with their client ids
//! and API keys, subscriptions, throttling policies (tiers) and blocking conditions.

use std::borrow::Cow;

use super::{default_one, default_true};
use crate::vocab::{KeyType, SubscriptionState, TimeUnit, UNLIMITED};
use schemars::JsonSchema;
use serde::Deserialize;

/// An application.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Application")]
#[serde(deny_unknown_fields)]
pub struct RawApplication<'a> {
    /// Application id (WSO2's UUID). Required, unique.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Application name. Required.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Subscriber (owner). Defaults to empty.
    #[serde(default, borrow)]
    pub owner: Cow<'a, str>,
    /// Application-level throttling policy. Defaults to none.
    #[serde(default, borrow)]
    pub policy: Option<Cow<'a, str>>,
    /// WSO2's numeric application id, which the backend JWT sends as `applicationid` (as WSO2's
    /// gateway does). Defaults to none: the backend JWT then sends `id`.
    #[serde(default)]
    pub numeric_id: Option<u32>,
    /// WSO2's application attributes (names to text values), which the backend JWT sends as
    /// `applicationAttributes` when there are any (as WSO2's gateway does). Defaults to none.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// OAuth2 client ids of the application's keys. Defaults to none.
    #[serde(default, borrow)]
    pub client_ids: Vec<RawClientId<'a>>,
    /// Opaque API keys, stored as SHA-256 hashes. Defaults to none.
    #[serde(default, borrow)]
    pub api_keys: Vec<RawApiKey<'a>>,
}

/// An OAuth2 client of an application.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ClientId")]
#[serde(deny_unknown_fields)]
pub struct RawClientId<'a> {
    /// The client id. Required, unique across applications for its key manager: as in WSO2 (a
    /// key mapping is a consumer key and its key manager), two key managers may issue one id to
    /// two applications, and a token is its own key manager's client's (another's answers 900908).
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Key type. Defaults to `PRODUCTION`.
    #[serde(default)]
    pub key_type: KeyType,
    /// The key manager that issued the client (its `name`); tokens from any other key manager
    /// are refused for it. Required when more than one key manager is configured.
    #[serde(default, borrow)]
    pub key_manager: Option<Cow<'a, str>>,
}

/// An opaque API key.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ApiKey")]
#[serde(deny_unknown_fields)]
pub struct RawApiKey<'a> {
    /// Lowercase hex SHA-256 of the key (64 characters). Required, unique.
    #[serde(borrow)]
    pub sha256: Cow<'a, str>,
    /// Key type. Defaults to `PRODUCTION`.
    #[serde(default)]
    pub key_type: KeyType,
}

/// A subscription.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Subscription")]
#[serde(deny_unknown_fields)]
pub struct RawSubscription<'a> {
    /// Application id. Required.
    #[serde(borrow)]
    pub application: Cow<'a, str>,
    /// API as `<name>:<version>`. Required.
    #[serde(borrow)]
    pub api: Cow<'a, str>,
    /// Subscription policy (tier). Defaults to `Unlimited`.
    #[serde(default = "default_tier", borrow)]
    pub tier: Cow<'a, str>,
    /// Subscription state. Defaults to `UNBLOCKED`.
    #[serde(default)]
    pub state: SubscriptionState,
}

fn default_tier() -> Cow<'static, str> {
    Cow::Borrowed(UNLIMITED)
}

/// A throttling policy: a request count or a byte count per time unit.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Policy")]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Requests allowed per window. Exactly one of `requests` and `bytes` is required.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub requests: Option<u64>,
    /// Request and response body bytes allowed per window.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub bytes: Option<u64>,
    /// Window unit. Required.
    pub per: TimeUnit,
    /// Window length in units. Defaults to 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub unit_count: u32,
    /// Burst control (subscription policies). Defaults to none.
    #[serde(default)]
    pub burst: Option<RawBurst>,
    /// Deny requests over quota; when false they pass, flagged (`throttling.quota_exceeded_header`),
    /// with no later level checked (burst control, application, custom, hard limit), no RateLimit
    /// headers, and counted nowhere, as WSO2's gateway does (with strict counting across nodes,
    /// the cluster-wide levels before keep the count, as they keep a denied request's). Unlike
    /// WSO2's gateway, which also lets a request over this policy's `burst` through flagged when
    /// this is false, the filter refuses it (900807). Subscription policies only, as in WSO2: used
    /// at another level, the policy always denies.
    /// Defaults to true.
    #[serde(default = "default_true")]
    pub stop_on_quota_reach: bool,
    /// Where this is an API's or a resource's policy, each user has the limit, counted apart
    /// (WSO2's advanced policies applied per user, `applicableLevel: userLevel`); when false the
    /// API or resource as a whole has it. Subscription tiers count per application and
    /// application policies per user whatever this says. Defaults to false.
    #[serde(default)]
    pub per_user: bool,
    /// Count this policy across Envoy nodes on `throttling.rate_limit_service` (true) or in this
    /// Envoy alone (false). Defaults to the service's `applies_to` (node-local without a service).
    #[serde(default)]
    pub cluster_wide: Option<bool>,
    /// Condition groups (WSO2's advanced throttling policies), where this is an API's or a
    /// resource's policy: a request that meets every condition of a group counts in that group,
    /// under the group's own limit, and in each other group it meets; `requests` (or `bytes`)
    /// then counts only the requests that meet no group. Per user and across nodes as this
    /// policy (a `bytes` group, as every byte budget, per node: refused with `cluster_wide: true`).
    /// Defaults to none.
    #[serde(default)]
    pub condition_groups: Vec<RawConditionGroup>,
}

/// A condition group: its own limit for the requests that meet all of its conditions.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ConditionGroup")]
#[serde(deny_unknown_fields)]
pub struct RawConditionGroup {
    /// Requests allowed per window. Exactly one of `requests` and `bytes` is required.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub requests: Option<u64>,
    /// Request and response body bytes allowed per window.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub bytes: Option<u64>,
    /// Window unit. Required.
    pub per: TimeUnit,
    /// Window length in units. Defaults to 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub unit_count: u32,
    /// The conditions, all of which a request must meet. Required: at least one.
    pub conditions: Vec<RawCondition>,
}

/// One condition of a group: exactly one of `ip`, `ip_range`, `ip_from` with `ip_to`, `header`,
/// `query_param` and `jwt_claim`; the last three with `matches`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Condition")]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// The client IP address (Envoy's `source.address`) is this one.
    #[serde(default)]
    pub ip: Option<String>,
    /// The client IP address is in this CIDR range (`203.0.113.0/24`, `2001:db8::/32`).
    #[serde(default)]
    pub ip_range: Option<String>,
    /// The client IP address is from this one to `ip_to`, both included (WSO2's `IPRange`).
    #[serde(default)]
    pub ip_from: Option<String>,
    /// The last address of `ip_from`'s range.
    #[serde(default)]
    pub ip_to: Option<String>,
    /// A request header (any letter case; `host` reads the request's authority, which Envoy
    /// carries as `:authority`): its values, joined by `,` when it repeats, match `matches`. An
    /// absent or empty header matches nothing.
    #[serde(default)]
    pub header: Option<String>,
    /// A query parameter (its first non-empty value, percent-decoded, as the API key in the query
    /// is read) matches `matches`. An absent or empty parameter matches nothing.
    #[serde(default)]
    pub query_param: Option<String>,
    /// A claim of the caller's JWT (a bearer token or a JWT API key; an opaque credential has
    /// none) or, with `backend_jwt`, of the JWT sent to the backend (its claims win, as WSO2
    /// reads claim conditions from the JWT its gateway generates): a string, or a string of an
    /// array, matches `matches`.
    #[serde(default)]
    pub jwt_claim: Option<String>,
    /// A regular expression (regex-lite's syntax: Java's without look-around, back-references,
    /// `\p{...}` classes, atomic groups, `\Q...\E` and `&&` in classes) found anywhere in the
    /// value, as WSO2's `Matcher.find()`: anchor it (`^free$`) to match the whole value; a value
    /// over 4 KiB matches nothing, as an absent one. Required with `header`, `query_param` and
    /// `jwt_claim`.
    #[serde(default)]
    pub matches: Option<String>,
    /// The condition holds when the test fails (`invert` of an absent header holds). Defaults to
    /// false.
    #[serde(default)]
    pub invert: bool,
}

/// Burst control: at most `requests` per `per` (second or minute).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Burst")]
#[serde(deny_unknown_fields)]
pub struct RawBurst {
    /// Requests allowed per unit. Required.
    #[schemars(range(min = 1))]
    pub requests: u64,
    /// `second` or `minute`. Required.
    pub per: TimeUnit,
}

/// One blocking condition: exactly one field is set.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "BlockingCondition")]
#[serde(deny_unknown_fields)]
pub struct RawBlockingCondition {
    /// An API, by context (`/pizzashack`), context and version (`/pizzashack/1.0.0`) or
    /// `<name>:<version>`.
    #[serde(default)]
    pub api: Option<String>,
    /// An application: its `id`, or as WSO2's blocking conditions name it, `<owner>:<name>`.
    /// An id the configuration does not hold is refused, unless a control plane or JWT API keys
    /// (`api_key_jwt`, whose keys name their application by id) are configured.
    #[serde(default)]
    pub application: Option<String>,
    /// A user: the one the request acts for, as `$userId` (the credential's end user: a token's
    /// `sub`, which WSO2's key manager sets to the application's owner in an application token;
    /// else the application's owner: an API key, or a token without `sub`), compared as
    /// WSO2 compares its `authorizedUser`: with `@<tenant>` (the control plane's tenant, else
    /// `carbon.super`) taken off both, so `bob` and `bob@carbon.super` are one user and
    /// `bob@wso2.com` is another.
    #[serde(default)]
    pub user: Option<String>,
    /// A client IP address (Envoy's `source.address`).
    #[serde(default)]
    pub ip: Option<String>,
    /// A client IP range in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`); an IPv4-mapped
    /// one (`::ffff:203.0.113.0/120`) is the IPv4 range, as client addresses are compared.
    #[serde(default)]
    pub ip_range: Option<String>,
    /// A subscription: `<application id>:<api name>:<version>`.
    #[serde(default)]
    pub subscription: Option<String>,
}
