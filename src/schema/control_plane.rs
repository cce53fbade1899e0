//! The WSO2 API Manager control plane the filter can read its directory from, as users write it.

use std::collections::BTreeMap;

use crate::vocab::choice;
use schemars::JsonSchema;
use serde::Deserialize;

use super::RawSecret;
use crate::vocab::SecurityScheme;

/// A WSO2 API Manager 4.x control plane, read through its internal data API
/// (`/internal/data/v1`) as WSO2's own gateways read it: APIs deployed on a gateway label with
/// their resources, applications, subscriptions, OAuth2 client ids (key mappings),
/// subscription, application and API policies, blocking conditions and revoked JWTs. Loaded in
/// full at start and every `refresh_s`, once per Envoy (shared by its workers); a client id,
/// subscription or policy the filter does not know yet is looked up when a request needs it.
/// Everything written in the filter's own configuration keeps working beside it.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ControlPlane")]
#[serde(deny_unknown_fields)]
pub struct RawControlPlane {
    /// The Envoy cluster of the control plane (its port 9443, usually with TLS). Required.
    pub cluster: String,
    /// The internal data API's path. Defaults to `/internal/data/v1`.
    #[serde(default = "default_base_path")]
    pub base_path: String,
    /// The `Host` (`:authority`) sent: a host and an optional port. Defaults to the cluster's
    /// name, or to the service host of an Istio cluster name (`outbound|<port>||<host>`); a
    /// cluster name that is no host name needs it.
    #[serde(default)]
    pub authority: Option<String>,
    /// The user of HTTP Basic authentication (WSO2's gateways use the event hub's admin user).
    /// Required.
    pub username: String,
    /// Its password. Required.
    pub password: RawSecret,
    /// The one tenant this gateway serves (`xWSO2Tenant`): API-M answers its APIs (under
    /// `/t/<tenant>/` but for the super tenant), applications, key mappings, subscriptions and
    /// policies. Not `ALL` or `*` (every tenant's at once): run one gateway per tenant. Defaults to
    /// `carbon.super`.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The gateway label (environment) whose deployed APIs this gateway serves. Defaults to
    /// `Default`.
    #[serde(default = "default_label")]
    pub gateway_label: String,
    /// Seconds between full reloads (state changes, deletions, revocations, policy edits show
    /// within one interval); a load that takes longer is never joined by another, the next
    /// starts when it ends. 5 to 86400. Defaults to 60.
    #[serde(default = "default_refresh_s")]
    #[schemars(range(min = 5, max = 86400))]
    pub refresh_s: u64,
    /// How long one call may take, milliseconds (1 to 60000). Defaults to 10000.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u64,
    /// Seconds an answer that a client id, subscription or policy does not exist (or a policy
    /// the filter cannot read) is remembered, so a flood of unknown keys cannot flood the
    /// control plane. 1 to 3600. Defaults to 30.
    #[serde(default = "default_negative_ttl_s")]
    #[schemars(range(min = 1, max = 3600))]
    pub negative_ttl_s: u64,
    /// The most lookups per second this Envoy makes for things it does not know (beyond: 900900).
    /// 1 to 10000. Defaults to 50.
    #[serde(default = "default_lookups_per_second")]
    #[schemars(range(min = 1, max = 10000))]
    pub lookups_per_second: u64,
    /// Envoy clusters of the control plane's APIs by `<name>:<version>` or `<name>`: the only way
    /// to serve an API product (`apiType` `APIProduct`), all of whose resources go to the
    /// clusters named here. Defaults to none.
    #[serde(default)]
    pub endpoints: BTreeMap<String, RawCpEndpoints>,
    /// Cluster names for APIs not in `endpoints`, with `{name}` and `{version}` replaced
    /// (e.g. `{name}-{version}`; no other placeholder). Not for API products: API-M sends each
    /// of a product's resources to the backend of the API it came from, which `/apis` does not
    /// say, so a product not in `endpoints` is not served (logged). Defaults to none: such APIs
    /// are not served (logged).
    #[serde(default)]
    pub endpoint_template: Option<RawCpEndpoints>,
    /// Security schemes of the control plane's secured resources (WSO2's `/apis` tells only
    /// whether a resource is secured). Defaults to `["oauth2", "api_key"]`.
    #[serde(default = "default_security")]
    pub security: Vec<SecurityScheme>,
    /// WebSocket and server-sent-events APIs (`apiType` `WS`, `SSE`). API-M counts each of their
    /// messages (a WebSocket API's frames, a server-sent-events API's events) against their tiers
    /// (`eventCount` quotas): `count_messages` counts them as API-M does. Defaults to `not_served`.
    #[serde(default)]
    pub event_apis: EventApis,
    /// Whether API policies' `Header` conditions read the request's headers, as API-M's
    /// `[apim.throttling] enable_header_based_throttling` lets them. Off, a `Header` condition
    /// reads no value, as API-M's Traffic Manager, which is then never sent the headers: it never
    /// holds (its group is left out, logged, and its requests count under the policy's own limit),
    /// and inverted it always holds. Defaults to false, as API-M.
    #[serde(default)]
    pub header_conditions: bool,
    /// The same for `QueryParameterType` conditions (API-M's
    /// `enable_query_param_based_throttling`). Defaults to false, as API-M.
    #[serde(default)]
    pub query_param_conditions: bool,
    /// The same for `JWTClaims` conditions (API-M's `enable_jwt_claim_based_throttling`). Defaults
    /// to false, as API-M.
    #[serde(default)]
    pub jwt_claim_conditions: bool,
}

/// What the filter does with the control plane's WebSocket and server-sent-events APIs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventApis {
    /// Not served, logged with the reason, so no tier admits more than its limit. The default.
    #[default]
    NotServed,
    /// Served at their handshake (authenticated, the topic's scopes checked), each connection
    /// counted once against the tiers, whatever it then carries.
    CountConnections,
    /// Served at their handshake, which is checked and not counted, and every message then counted
    /// against the tiers as API-M's gateway counts them: a WebSocket API's data frames in either
    /// direction (see `apis[].count_websocket_frames`), a server-sent-events API's events (see
    /// `apis[].count_server_sent_events`).
    CountMessages,
}

choice!(EventApis {
    NotServed = "not_served",
    CountConnections = "count_connections",
    CountMessages = "count_messages",
});

/// Envoy cluster names of an API's production and sandbox endpoints.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "CpEndpoints")]
#[serde(deny_unknown_fields)]
pub struct RawCpEndpoints {
    /// Production cluster. Defaults to none.
    #[serde(default)]
    pub production: Option<String>,
    /// Sandbox cluster. Defaults to none.
    #[serde(default)]
    pub sandbox: Option<String>,
}

fn default_base_path() -> String {
    "/internal/data/v1".to_string()
}
fn default_tenant() -> String {
    crate::vocab::SUPER_TENANT.to_string()
}
fn default_label() -> String {
    "Default".to_string()
}
fn default_refresh_s() -> u64 {
    60
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_negative_ttl_s() -> u64 {
    30
}
fn default_lookups_per_second() -> u64 {
    50
}
fn default_security() -> Vec<SecurityScheme> {
    vec![SecurityScheme::Oauth2, SecurityScheme::ApiKey]
}
