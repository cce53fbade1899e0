//! Shared vocabulary of the whole filter, imported by every layer and importing none: WSO2's key
//! types, subscription states, API lifecycle states and security schemes, time units, the failure
//! mode of counters and engines, resolved secrets, and the typed ids of compiled items.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

/// What to do when a counter cannot be updated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

/// API lifecycle states (WSO2's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Lifecycle {
    Created,
    Prototyped,
    #[default]
    Published,
    Blocked,
    Deprecated,
    Retired,
}

/// Security schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityScheme {
    /// OAuth2 bearer tokens (JWT or opaque).
    Oauth2,
    /// API keys.
    ApiKey,
}

/// WSO2 key types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyType {
    #[default]
    Production,
    Sandbox,
}

impl KeyType {
    /// WSO2's spelling (`PRODUCTION`, `SANDBOX`).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Production => "PRODUCTION",
            KeyType::Sandbox => "SANDBOX",
        }
    }
}

/// WSO2 subscription states. `TIER_UPDATE_PENDING` and `DELETE_PENDING` (a change awaiting
/// approval) work as `UNBLOCKED`, as in WSO2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionState {
    #[default]
    Unblocked,
    Blocked,
    ProdOnlyBlocked,
    OnHold,
    Rejected,
    Inactive,
    TierUpdatePending,
    DeletePending,
}

/// Time units of throttling windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl TimeUnit {
    /// The unit in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            TimeUnit::Second => 1,
            TimeUnit::Minute => 60,
            TimeUnit::Hour => 3_600,
            TimeUnit::Day => 86_400,
        }
    }
}

/// The built-in policy that never throttles.
pub const UNLIMITED: &str = "Unlimited";

/// Whether a policy name is the built-in `Unlimited`: in any case, as WSO2's gateway compares it
/// (`UNLIMITED_TIER.equalsIgnoreCase`), wherever the name comes from.
pub fn is_unlimited(name: &str) -> bool {
    name.eq_ignore_ascii_case(UNLIMITED)
}

/// WSO2's super tenant domain.
pub const SUPER_TENANT: &str = "carbon.super";

/// A user name without its `@<tenant>` suffix, when it has one and something before it
/// (`bob@carbon.super` is `bob` in the super tenant; `bob@wso2.com` stays as it is there). One rule
/// for every place a user is compared or qualified: blocking, counters, the backend JWT.
pub fn user_without_tenant<'u>(user: &'u str, tenant: &str) -> &'u str {
    user.strip_suffix(tenant).and_then(|user| user.strip_suffix('@')).filter(|user| !user.is_empty()).unwrap_or(user)
}

/// A resolved secret: bytes, never printed (`Debug` shows `***`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An API of a compiled routing table (its position there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiId(pub u32);

/// A resource of an API (its position in the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(pub u32);

/// A key manager (its position in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KmId(pub u32);

impl ApiId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ResourceId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl KmId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
