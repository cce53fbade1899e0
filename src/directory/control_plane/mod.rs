//! A directory read from a WSO2 API Manager 4.x control plane at run time, as WSO2's own gateways
//! read it: its internal data API (`/internal/data/v1`, HTTP Basic, the tenant header) through an
//! Envoy cluster.
//!
//! - [`wire`]: WSO2's JSON and its mapping to the filter's model.
//! - [`store`]: the data once per Envoy, in shared data.
//! - [`refresh`]: full loads, at start and every `refresh_s`, by one worker of the Envoy
//!   (background work of a root context; no request waits for one).
//! - [`lookup`]: what a request brings that the directory does not know yet (a client id, an
//!   application, a subscription), looked up on the spot as WSO2's gateway does, the answer (found
//!   or not) remembered for every worker; "not found" only for `negative_ttl_s`, and at most
//!   `lookups_per_second`, so a flood of unknown keys cannot flood the control plane.
//! - [`view`]: what one worker decoded from the shared data (its routing table with the control
//!   plane's APIs, policies, blocking conditions, revoked tokens, and the entries requests used),
//!   renewed when a full load changes the generation.
//!
//! The last good data keeps serving while the control plane is down, slow or answering garbage;
//! a lookup that cannot be made answers 900900, never 401 or 403.

pub mod listed;
pub mod lookup;
pub mod refresh;
pub mod store;
pub mod view;
pub mod wire;

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::hashing::form_encode;
use crate::host::Call;
use crate::schema::checks::{call_authority, check_cluster_call, check_cluster_name};
use crate::schema::{resolve_secret, ConfigError, EventApis, RawApi, RawControlPlane, RawCpEndpoints, RawEndpoints};
use crate::vocab::SecurityScheme;

/// The control plane, compiled.
#[derive(Debug)]
pub struct ControlPlane {
    /// Names where the data comes from (cluster, base path, authority, tenant, gateway label,
    /// user): data another source left in shared data is dropped when this one is configured.
    pub source: u64,
    pub cluster: String,
    pub base_path: String,
    pub authority: String,
    /// `Basic <base64(user:password)>` (never logged: `Debug` shows `***`).
    authorization: Redacted,
    pub tenant: String,
    pub gateway_label: String,
    pub refresh_s: u64,
    pub timeout_ms: u32,
    pub negative_ttl_s: u64,
    pub lookups_per_second: u64,
    pub endpoints: BTreeMap<String, RawCpEndpoints>,
    pub endpoint_template: Option<RawCpEndpoints>,
    pub security: Vec<SecurityScheme>,
    /// Whether WebSocket and server-sent-events APIs are served, counting connections
    /// (`event_apis: count_connections`).
    pub serve_event_apis: bool,
    /// A WebSocket API's frames and a server-sent-events API's events are counted, not their
    /// handshakes (`event_apis: count_messages`).
    pub count_messages: bool,
    /// Which condition types of API policies' groups apply (API-M's switches).
    pub condition_types: wire::ConditionTypes,
    /// The configuration's own APIs, served beside the control plane's (they win a clash).
    pub static_apis: Vec<RawApi>,
    /// The methods the CORS configuration allows (`None`: every method), which the compiled
    /// tables' resources keep of their templates' (`Resource::cors_methods`), as the
    /// configuration's own table does. Set where the configuration loads.
    pub cors_allow_methods: Option<Vec<String>>,
}

/// A value kept out of logs.
struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl ControlPlane {
    pub fn compile(
        raw: RawControlPlane,
        static_apis: &[RawApi],
        warnings: &mut Vec<String>,
    ) -> Result<ControlPlane, ConfigError> {
        let field = "control_plane";
        check_cluster_call(field, &raw.cluster, ("base_path", &raw.base_path), raw.timeout_ms)?;
        if raw.base_path.contains("//") {
            return Err(ConfigError::new(format!("{field}.base_path"), "must not hold an empty segment (`//`)"));
        }
        if raw.username.is_empty() || raw.username.contains(':') {
            return Err(ConfigError::new(format!("{field}.username"), "must be non-empty, without `:`"));
        }
        let password = resolve_secret(&format!("{field}.password"), &raw.password, warnings)?;
        let credentials = [raw.username.as_bytes(), b":", &password.0].concat();
        for (name, value) in [("tenant", &raw.tenant), ("gateway_label", &raw.gateway_label)] {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err(ConfigError::new(format!("{field}.{name}"), "must be non-empty text"));
            }
        }
        // API-M answers `ALL` with every tenant's APIs and policies (one name, several tenants'
        // definitions) and no application, and `*` with 400 (`OnPremResolver`): one tenant serves.
        if raw.tenant.eq_ignore_ascii_case("all") || raw.tenant == "*" {
            return Err(ConfigError::new(format!("{field}.tenant"), "must name one tenant (not `ALL` or `*`)"));
        }
        if !(5..=86_400).contains(&raw.refresh_s) {
            return Err(ConfigError::new(format!("{field}.refresh_s"), "must be from 5 to 86400"));
        }
        if !(1..=3600).contains(&raw.negative_ttl_s) {
            return Err(ConfigError::new(format!("{field}.negative_ttl_s"), "must be from 1 to 3600"));
        }
        if !(1..=10_000).contains(&raw.lookups_per_second) {
            return Err(ConfigError::new(format!("{field}.lookups_per_second"), "must be from 1 to 10000"));
        }
        let clusters = raw.endpoints.iter().map(|(key, endpoints)| (format!("{field}.endpoints.{key}"), endpoints));
        for (name, endpoints) in
            clusters.chain(raw.endpoint_template.iter().map(|t| (format!("{field}.endpoint_template"), t)))
        {
            for cluster in [&endpoints.production, &endpoints.sandbox].into_iter().flatten() {
                check_cluster_name(&name, cluster)?;
                // A template fills `{name}` and `{version}` only: any other brace would reach
                // Envoy as part of a cluster name no configuration defines.
                if cluster.replace("{name}", "").replace("{version}", "").contains(['{', '}']) {
                    return Err(ConfigError::new(
                        name,
                        format!("`{cluster}`: a cluster name may hold `{{name}}` and `{{version}}` only"),
                    ));
                }
            }
        }
        // API-M names an API by name and version; a context here would match no API.
        if let Some(key) = raw.endpoints.keys().find(|key| key.starts_with('/') || key.is_empty()) {
            return Err(ConfigError::new(
                format!("{field}.endpoints.{key}"),
                "key an API by `<name>:<version>` or `<name>` (as API-M names it), not by its context",
            ));
        }
        let authority = call_authority(field, raw.authority.as_deref(), &raw.cluster)?;
        let base_path = raw.base_path.trim_end_matches('/').to_string();
        let source = source_of(&[&raw.cluster, &base_path, &authority, &raw.tenant, &raw.gateway_label, &raw.username]);
        Ok(ControlPlane {
            source,
            authority,
            cluster: raw.cluster,
            base_path,
            authorization: Redacted(format!("Basic {}", STANDARD.encode(credentials))),
            tenant: raw.tenant,
            gateway_label: raw.gateway_label,
            refresh_s: raw.refresh_s,
            timeout_ms: u32::try_from(raw.timeout_ms).unwrap_or(60_000),
            negative_ttl_s: raw.negative_ttl_s,
            lookups_per_second: raw.lookups_per_second,
            endpoints: raw.endpoints,
            endpoint_template: raw.endpoint_template,
            security: raw.security,
            serve_event_apis: raw.event_apis != EventApis::NotServed,
            count_messages: raw.event_apis == EventApis::CountMessages,
            condition_types: wire::ConditionTypes {
                header: raw.header_conditions,
                query_param: raw.query_param_conditions,
                jwt_claim: raw.jwt_claim_conditions,
            },
            static_apis: static_apis.to_vec(),
            cors_allow_methods: None,
        })
    }

    /// A `GET` of the internal data API (`resource` such as `subscriptions`), with its query.
    pub fn get(&self, resource: &str, query: &[(&str, &str)]) -> Call {
        let mut path = format!("{}/{resource}", self.base_path);
        for (index, (name, value)) in query.iter().enumerate() {
            path.push(if index == 0 { '?' } else { '&' });
            path.push_str(name);
            path.push('=');
            path.push_str(&form_encode(value));
        }
        Call::Http {
            cluster: self.cluster.clone(),
            headers: vec![
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), path),
                (":authority".to_string(), self.authority.clone()),
                ("accept".to_string(), "application/json".to_string()),
                ("authorization".to_string(), self.authorization.0.clone()),
                ("xwso2tenant".to_string(), self.tenant.clone()),
            ],
            body: Vec::new(),
            timeout_ms: self.timeout_ms,
        }
    }

    /// Whether `endpoints` names the API (by `<name>:<version>` or `<name>`), not the template.
    pub fn names_endpoints(&self, name: &str, version: &str) -> bool {
        self.endpoints.contains_key(&format!("{name}:{version}")) || self.endpoints.contains_key(name)
    }

    /// The Envoy clusters of a control-plane API: `endpoints` by `<name>:<version>`, then by
    /// `<name>`, then `endpoint_template`; `None` when none applies.
    pub fn endpoints_for(&self, name: &str, version: &str) -> Option<RawEndpoints> {
        let fill = |template: &Option<String>| {
            template.as_ref().map(|template| template.replace("{name}", name).replace("{version}", version))
        };
        let found = self
            .endpoints
            .get(&format!("{name}:{version}"))
            .or_else(|| self.endpoints.get(name))
            .map(|endpoints| RawEndpoints {
                production: endpoints.production.clone(),
                sandbox: endpoints.sandbox.clone(),
            })
            .or_else(|| {
                self.endpoint_template.as_ref().map(|template| RawEndpoints {
                    production: fill(&template.production),
                    sandbox: fill(&template.sandbox),
                })
            })?;
        (found.production.is_some() || found.sandbox.is_some()).then_some(found)
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
#[path = "policy_lookup_tests.rs"]
mod policy_lookup_tests;

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod hostile_tests;

#[cfg(test)]
#[path = "wire_audit_tests.rs"]
mod wire_audit_tests;

/// A digest of what names a control plane's data (never 0: 0 is data of no known source).
fn source_of(parts: &[&str]) -> u64 {
    let mut hash = 0u64;
    for part in parts {
        hash = crate::hashing::fnv1a(hash, part.as_bytes());
        hash = crate::hashing::fnv1a(hash, &[0]);
    }
    hash.max(1)
}

#[cfg(test)]
mod refresh_tests;
