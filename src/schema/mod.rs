//! The JSON users write: the configuration's serde types with every default documented (the
//! reference `docs/CONFIG.md` and the JSON Schema are generated from these doc comments), and
//! [`ConfigError`], the one error a refused configuration produces. Nothing here checks or
//! compiles: [`crate::config`] does, with each domain compiling its own part.

mod apis;
mod auth;
mod backend;
pub mod checks;
mod consumers;
mod control_plane;
mod errors;
mod secrets;
mod settings;
mod throttling;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Deserialize;

pub use apis::*;
pub use auth::*;
pub use backend::*;
pub use consumers::*;
pub use control_plane::*;
pub use errors::*;
pub use secrets::*;
pub use settings::*;
pub use throttling::*;

/// The filter configuration. Every field is optional; an empty object `{}` is a valid
/// configuration that answers every request with the gateway's 404 fault.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Config", bound = "Applications: JsonSchema + Default, Subscriptions: JsonSchema + Default")]
#[serde(deny_unknown_fields)]
pub struct RawConfig<'a, Applications = Vec<RawApplication<'a>>, Subscriptions = Vec<RawSubscription<'a>>> {
    /// This gateway's name among several in one Envoy. Filters that share a `vm_id` share
    /// Envoy's shared data, where each keeps its counters, control-plane data and caches: two
    /// listeners (an internal and an external gateway, two WSO2 gateway labels) whose filters
    /// share a `vm_id` each need a name of their own, or one gateway's counts, APIs and
    /// applications serve the other's requests. Keep a gateway's name across its updates: its
    /// counts, caches and control-plane data go on under it (naming a running gateway that had
    /// none is a rename: it counts and loads afresh, see docs/HOWTO.md). Letters, digits, `-`
    /// and `_`, at most 64. Defaults to none (the one gateway of its `vm_id`).
    #[serde(default)]
    pub gateway: Option<String>,
    /// How faults are rendered. Defaults to API-M 4.x JSON with the catalogue's statuses.
    #[serde(default)]
    pub errors: RawErrors,
    /// Which gateway's codes to use where WSO2's gateways disagree (expired or inactive tokens,
    /// credential format errors). Defaults to `apim`.
    #[serde(default)]
    pub compatibility: Compatibility,
    /// What to do with a request that matches no API. Defaults to `fault` (the 404 fault). Before a
    /// control plane's first load of APIs, such a request may be for one of them: it is answered
    /// 503 (`apis_not_loaded`, `Retry-After: 5`) whatever this says.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// Where credentials are read from and how the upstream request is prepared.
    #[serde(default)]
    pub credentials: RawCredentials,
    /// How the filter tells Envoy's router which cluster serves the request.
    #[serde(default)]
    pub routing: RawRouting,
    /// The APIs the gateway serves. Defaults to none.
    #[serde(default)]
    pub apis: Vec<RawApi>,
    /// Applications (API consumers): their OAuth2 client ids and API keys. Defaults to none.
    // The filter parses them as `directory::static_dir::StagedApplications`, compiling each as
    // it is read; the default type is what the schema describes.
    #[serde(default)]
    pub applications: Applications,
    /// Subscriptions of applications to APIs; an application calls an API only through one.
    /// Defaults to none.
    // The filter parses them as `directory::static_dir::PackedSubscriptions`; the default type is
    // what the schema describes.
    #[serde(default)]
    pub subscriptions: Subscriptions,
    /// Key managers (OAuth2 token issuers): JWT verification keys and introspection.
    /// Defaults to none.
    #[serde(default)]
    pub key_managers: Vec<RawKeyManager>,
    /// Verification of WSO2's self-contained JWT API keys. Defaults to off (every API key is an
    /// opaque key looked up in `applications[].api_keys`, so JWT API keys are refused).
    #[serde(default)]
    pub api_key_jwt: Option<RawApiKeyJwt>,
    /// Throttling policies by name. `Unlimited` always exists, and is read in any case
    /// (`unlimited`), as WSO2 reads it. A policy named `Unauthenticated` (that spelling: WSO2's
    /// subscription tier of unauthenticated requests) is also the tier of every open resource, of
    /// every API: each client address may make its limit on each API, then 900804, as WSO2's
    /// gateway counts open requests (stop on quota reach; its `burst`, `stop_on_quota_reach` and
    /// `condition_groups` do not apply there). A control plane's `Unauthenticated` (API-M always
    /// has one, 500 a minute by default) does the same when the configuration defines none.
    /// Defaults to none.
    #[serde(default)]
    pub policies: BTreeMap<String, RawPolicy>,
    /// Blocking conditions (answer 900805 before any counter). Defaults to none.
    #[serde(default)]
    pub blocking: Vec<RawBlockingCondition>,
    /// Custom throttling policies with counter keys built from request attributes (900806).
    /// Defaults to none.
    #[serde(default)]
    pub custom_policies: Vec<RawCustomPolicy>,
    /// Hard limits per API and key type, requests per second (900801, 503). Defaults to none.
    #[serde(default)]
    pub hard_limits: Vec<RawHardLimit>,
    /// How counters behave. Defaults as documented on each field.
    #[serde(default)]
    pub throttling: RawThrottling,
    /// A WSO2 API Manager control plane to read APIs, applications, subscriptions, client ids,
    /// policies, blocking conditions and revoked tokens from at run time, beside what this
    /// configuration holds. Defaults to none.
    #[serde(default)]
    pub control_plane: Option<RawControlPlane>,
    /// The backend JWT (WSO2's `X-JWT-Assertion`) sent with every authorized request. Defaults to
    /// none.
    #[serde(default)]
    pub backend_jwt: Option<RawBackendJwt>,
    /// Stats and access-log fields. Defaults as documented on each field.
    #[serde(default)]
    pub observability: RawObservability,
    /// Hex SHA-256 of what decides verification (set when the text is parsed, see
    /// `config::verification_fingerprint`; not a field users write).
    #[serde(skip)]
    #[schemars(skip)]
    pub fingerprint: String,
    /// The text the default list types borrow from (not a field users write).
    #[serde(skip)]
    #[schemars(skip)]
    pub borrows: PhantomData<&'a str>,
}

/// Why a configuration was refused: the field (a path such as `apis[0].resources[1].path`) and
/// the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

// =============================================================================================
// The compiled configuration.

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn default_one() -> u32 {
    1
}
