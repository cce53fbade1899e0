//! The filter's configuration: parsing the JSON users write ([`crate::schema`]) and compiling it,
//! each domain compiling its own part (fault rendering, routing, key validation, the directory,
//! throttling) in an order where each checks what it refers to. [`Config::from_json`] returns a
//! fully checked [`Config`] or one [`ConfigError`] naming the field and the reason, which the glue
//! logs before refusing the configuration.
//!
//! The JSON is Envoy's wasm `configuration` (a `google.protobuf.StringValue`) or an Istio
//! WasmPlugin's `pluginConfig`. Unknown fields are refused.

mod json_path;
mod owned_headers;
mod streamed;

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::auth::AuthConfig;
use crate::backend_jwt::BackendJwt;
use crate::directory::control_plane::ControlPlane;
use crate::directory::static_dir::{Context as DirectoryContext, PackedSubscriptions, StagedApplications};
use crate::directory::BlockingCondition;
use crate::directory::{Directory, StaticDirectory};
use crate::observe::Observability;
use crate::pieces::{HostText, CHUNK};
use crate::render::ErrorSettings;
use crate::routing::{Router, RoutingSettings, Table};
pub use crate::schema::ConfigError;
use crate::schema::{
    Compatibility, ErrorFormat, RawApi, RawConfig, RawCredentials, RawKeyManager, RawPolicy, RawRouting, RawThrottling,
    Unmatched,
};
use crate::throttle::plan::KeyPart;
use crate::throttle::ThrottleConfig;
use crate::vocab::KmId;
use owned_headers::{check_owned_headers, owned_headers};

/// A configuration parsed, not yet checked: its directory's lists as the filter reads them (the
/// applications compiled as they come, the subscriptions packed).
pub type Parsed<'a> = RawConfig<'a, StagedApplications, PackedSubscriptions>;

/// A checked, compiled configuration.
#[derive(Debug)]
pub struct Config {
    /// What the operator should know about an accepted configuration (logged at load).
    warnings: Vec<String>,
    /// Whether throttling reads the client's address ([`Config::uses_client_ip`]), worked out
    /// once at load rather than on every request.
    client_ip_used: bool,
    /// Applications and subscriptions of the static directory (for the load log line).
    directory_size: (usize, usize),
    /// The request headers only the filter sets (routing, auth context, quota flag), lowercase
    /// with `-`: a client's copy is removed in any spelling.
    pub owned_headers: Vec<String>,
    pub errors: ErrorSettings,
    pub compatibility: Compatibility,
    pub unmatched: Unmatched,
    pub routing: RoutingSettings,
    /// The configuration's APIs (with a control plane, each worker serves these and the control
    /// plane's: see `directory::control_plane::view`).
    pub routes: Rc<Table>,
    pub auth: AuthConfig,
    pub directory: Rc<dyn Directory>,
    pub throttle: ThrottleConfig,
    pub control_plane: Option<ControlPlane>,
    /// The backend JWT, when one is sent.
    pub backend_jwt: Option<BackendJwt>,
    pub observability: Observability,
    /// Where this gateway keeps its shared data: `apim.gw.<gateway>.`, or empty for the one
    /// gateway of its `vm_id` (see [`crate::host::GatewayScoped`]).
    pub shared_prefix: String,
}

pub use crate::auth::settings::CONTEXT_HEADERS;

impl Default for Config {
    /// The configuration `{}` compiles to: no APIs, so every request gets the 404 fault.
    fn default() -> Self {
        let routing = RawRouting::default();
        let credentials = RawCredentials::default();
        let throttling = RawThrottling::default();
        Config {
            warnings: Vec::new(),
            client_ip_used: false,
            directory_size: (0, 0),
            owned_headers: owned_headers(&routing, &credentials, &throttling, None),
            errors: ErrorSettings::default(),
            compatibility: Compatibility::default(),
            unmatched: Unmatched::default(),
            routing: RoutingSettings {
                cluster_header: routing.cluster_header,
                api_header: routing.api_header,
                rewrite_path: routing.rewrite_path,
            },
            routes: Rc::new(Table::default()),
            auth: AuthConfig::default(),
            directory: Rc::new(StaticDirectory::default()),
            throttle: ThrottleConfig::default(),
            control_plane: None,
            backend_jwt: None,
            observability: Observability::default(),
            shared_prefix: String::new(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration. An empty input is the empty configuration `{}`.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::compile(Config::parse(bytes)?)
    }

    /// Reads, checks and compiles the configuration the host holds (`size` bytes, read with
    /// `read(start, length)`) in pieces (`streamed`): the text of 100,000 applications (26 MB) is
    /// never in memory whole. A configuration the pieces cannot be taken as (any JSON error, a
    /// repeated member) is read whole and parsed as [`Config::from_json`] parses it, for the same
    /// error.
    pub fn from_source(size: usize, read: &dyn Fn(usize, usize) -> Option<Vec<u8>>) -> Result<Config, ConfigError> {
        Config::from_source_in_chunks(size, read, CHUNK)
    }

    /// [`Config::from_source`] reading `chunk` bytes at a time (small in tests, to cut the text
    /// anywhere).
    pub fn from_source_in_chunks(
        size: usize,
        read: &dyn Fn(usize, usize) -> Option<Vec<u8>>,
        chunk: usize,
    ) -> Result<Config, ConfigError> {
        if let Ok(streamed) = streamed::read(HostText::new(size, read), chunk) {
            if let Ok(raw) = Config::parse(streamed.rest.as_bytes()) {
                let (applications, subscriptions) = (streamed.applications, streamed.subscriptions);
                return Config::compile(RawConfig { applications, subscriptions, ..raw });
            }
        }
        // The size is Envoy's: a configuration the VM cannot hold is refused, not allocated.
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(size).map_err(|_| {
            ConfigError::new("(root)", format!("{size} bytes are more than the filter's memory can hold"))
        })?;
        std::io::Read::read_to_end(&mut HostText::new(size, read), &mut bytes)
            .map_err(|_| ConfigError::new("(root)", "the host could not hand the configuration"))?;
        Config::from_json(&bytes)
    }

    /// Parses the JSON without checking it. The directory's strings borrow from the text where
    /// they have no escapes (100,000 applications would otherwise be about 800,000 allocations,
    /// made and freed before compiling).
    pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, ConfigError> {
        let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
        let raw: Parsed = if trimmed {
            RawConfig::default()
        } else {
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(ConfigError::new("(root)", "the configuration must be a JSON object"));
            }
            // UTF-8 checked once for the whole text rather than string by string by serde_json
            // (a sixth of parsing 100,000 applications). One reader only: each is a copy of every
            // type's deserializer in the `.wasm`.
            let text = std::str::from_utf8(bytes).map_err(|error| {
                let at = error.valid_up_to();
                ConfigError::new(
                    json_path::path_at(bytes, at, json_path::About::Value),
                    format!("the configuration is not UTF-8 (at byte offset {at})"),
                )
            })?;
            crate::pieces::from_text(text).map_err(|error| {
                ConfigError::new(json_path::path_of_error(bytes, &error), redact_values(&error.to_string()))
            })?
        };
        let fingerprint = verification_fingerprint(&raw);
        Ok(RawConfig { fingerprint, ..raw })
    }

    /// Checks and compiles a parsed configuration, each domain its own part.
    pub fn compile(raw: Parsed<'_>) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let shared_prefix = crate::schema::checks::check_gateway_name(raw.gateway.as_deref())?;
        // Routing refers to policies by name: their definitions are checked first.
        let policies = StaticDirectory::policy_names(&raw.policies)?;
        let backend_header = raw.backend_jwt.as_ref().map(|jwt| jwt.header.clone());
        let owned_headers = owned_headers(&raw.routing, &raw.credentials, &raw.throttling, backend_header.as_deref());
        let routing = RoutingSettings::compile(raw.routing)?;
        check_owned_headers(&owned_headers, &raw.credentials)?;
        if raw.errors.template.is_some() && raw.errors.format != ErrorFormat::Template {
            warnings.push("`errors.template` is set but `errors.format` is not `template`: it is not used".to_string());
        }
        let errors = ErrorSettings::compile(raw.errors, &raw.credentials)?;
        let mut apis = raw.apis;
        resolve_key_managers(&mut apis, &raw.key_managers)?;
        let mut control_plane =
            raw.control_plane.map(|cp| ControlPlane::compile(cp, &apis, &mut warnings)).transpose()?;
        // Every table's resources join the methods CORS answers allow once (`cors_methods`).
        let cors_allow_methods = errors.cors.as_ref().map(|cors| cors.allow_methods.clone());
        if let Some(control_plane) = &mut control_plane {
            control_plane.cors_allow_methods.clone_from(&cors_allow_methods);
        }
        let routes = Table::compile_for_cors(apis, &|name| policies.contains(name), cors_allow_methods)?;
        if control_plane.is_none() {
            warnings.extend(unapplied_condition_groups(&raw.policies, &routes));
        }
        let mut auth = AuthConfig::compile(raw.credentials, raw.key_managers, raw.api_key_jwt, &mut warnings)?;
        auth.fingerprint = raw.fingerprint;
        let backend_jwt = raw.backend_jwt.map(|jwt| BackendJwt::compile(jwt, &mut warnings)).transpose()?;
        // Key validation keeps the caller's claims only for a backend JWT that copies them.
        if let Some(jwt) = backend_jwt.as_ref().filter(|jwt| jwt.copy_caller_claims) {
            for km in &mut auth.key_managers {
                km.copy_claims_except(jwt.excluded_claims.clone());
            }
            if let Some(api_key_jwt) = &mut auth.api_key_jwt {
                api_key_jwt.copy_except = Some(jwt.excluded_claims.clone());
            }
        }
        let mut throttle =
            ThrottleConfig::compile(raw.custom_policies, raw.hard_limits, raw.throttling, &routes, &raw.policies)?;
        if let Some(control_plane) = &control_plane {
            throttle.tenant.clone_from(&control_plane.tenant);
        }
        check_frame_counting(&throttle, &routes, control_plane.as_ref())?;
        let directory = StaticDirectory::compile(
            raw.applications,
            raw.subscriptions,
            raw.policies,
            raw.blocking,
            &DirectoryContext {
                routes: &routes,
                key_managers: &auth.key_manager_names(),
                // JWT API keys name their application by id, as the control plane's keys do.
                applications_at_run_time: control_plane.is_some() || auth.api_key_jwt.is_some(),
            },
        )?;
        let mut config = Config {
            warnings,
            client_ip_used: false,
            directory_size: directory.len(),
            owned_headers,
            errors,
            compatibility: raw.compatibility,
            unmatched: raw.unmatched,
            routing,
            routes: Rc::new(routes),
            auth,
            directory: Rc::new(directory),
            throttle,
            control_plane,
            backend_jwt,
            observability: Observability::from(raw.observability),
            shared_prefix,
        };
        check_jwks_path_is_free(&mut config)?;
        config.client_ip_used = config.reads_client_ip();
        Ok(config)
    }

    /// What the operator should know about this configuration (the filter logs each line).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One line saying what the configuration holds.
    pub fn summary(&self) -> String {
        let (applications, subscriptions) = self.directory_size;
        let source = match &self.control_plane {
            Some(cp) => format!(
                ", and from the WSO2 control plane at cluster `{}` (gateway label `{}`, reloaded every {} s)",
                cp.cluster, cp.gateway_label, cp.refresh_s
            ),
            None => String::new(),
        };
        let counting = match &self.throttle.rate_limit_service {
            Some(service) => format!(
                ", counting across nodes on cluster `{}` (domain `{}`, {:?})",
                service.cluster, service.domain, service.counting
            ),
            None => String::new(),
        };
        format!(
            "{} APIs, {applications} applications, {subscriptions} subscriptions{source}, errors as {:?}{counting}",
            self.routes.apis.len(),
            self.errors.format
        )
    }

    /// Routing's view of the configuration, over `table` (the configuration's own, or a worker's
    /// with the control plane's APIs too); `apis_pending` while the control plane's APIs are not
    /// loaded yet (see [`Router::apis_pending`]).
    pub fn router<'a>(&'a self, table: &'a Table, apis_pending: Option<u64>) -> Router<'a> {
        Router {
            table,
            settings: &self.routing,
            unmatched: self.unmatched,
            answers_preflights: self.errors.cors.is_some(),
            apis_pending,
        }
    }

    /// Whether any throttling is configured (policies, blocking, custom policies, hard limits).
    pub fn throttles(&self) -> bool {
        self.control_plane.is_some()
            || self.directory.has_policies()
            || !self.directory.blocking().is_empty()
            || !self.throttle.custom_policies.is_empty()
            || !self.throttle.hard_limits.is_empty()
    }

    /// Whether throttling needs the client's IP address.
    pub fn uses_client_ip(&self) -> bool {
        self.client_ip_used
    }

    fn reads_client_ip(&self) -> bool {
        self.control_plane.is_some()
            || self.throttle.conditions_read_client_ip
            || self.directory.blocking().iter().any(|condition| matches!(condition, BlockingCondition::Ip(_)))
            // `$appId` is an open request's client address.
            || self.throttle.custom_policies.iter().any(|policy| {
                policy.template.iter().any(|part| matches!(part, KeyPart::ClientIp | KeyPart::AppId))
            })
            // Open resources count per client address under the `Unauthenticated` tier.
            || self.directory.policy(crate::directory::PolicyLevel::Subscription, crate::throttle::plan::UNAUTHENTICATED_TIER).is_some()
    }
}

/// Names what decides the identity a verified token leads to: the credential settings, the key
/// managers, JWT API keys and the backend JWT's claim copying (SHA-256 of their canonical JSON).
/// The Envoy-wide verified-token cache trusts an entry only under the same fingerprint, so a
/// changed key or issuer forgets what was verified before, and a changed directory (the bulk of a
/// large configuration) neither costs a hash of itself nor empties the cache. Empty (the shared
/// cache off) if the sections cannot be written.
fn verification_fingerprint<Applications, Subscriptions>(raw: &RawConfig<'_, Applications, Subscriptions>) -> String {
    use sha2::Digest;
    let sections = (&raw.credentials, &raw.key_managers, &raw.api_key_jwt, &raw.backend_jwt);
    serde_json::to_vec(&sections).map(|json| crate::hashing::hex(&sha2::Sha256::digest(json))).unwrap_or_default()
}

/// WebSocket frames and server-sent events never wait for a call: a rate-limit service counting
/// strictly (one call per request) cannot count them.
fn check_frame_counting(
    throttle: &ThrottleConfig,
    routes: &Table,
    control_plane: Option<&ControlPlane>,
) -> Result<(), ConfigError> {
    let strict =
        throttle.rate_limit_service.as_ref().is_some_and(|service| service.counting == crate::schema::Counting::Strict);
    if !strict {
        return Ok(());
    }
    let why = "WebSocket frames and server-sent events are not held for a call to the rate-limit service: \
               counting them needs `throttling.rate_limit_service.counting: leased`";
    for (index, api) in routes.apis.iter().enumerate() {
        let field = match (api.counts_websocket_frames, api.counts_server_sent_events) {
            (true, _) => "count_websocket_frames",
            (_, true) => "count_server_sent_events",
            _ => continue,
        };
        return Err(ConfigError::new(format!("apis[{index}].{field}"), why));
    }
    match control_plane {
        Some(control_plane) if control_plane.count_messages => Err(ConfigError::new("control_plane.event_apis", why)),
        _ => Ok(()),
    }
}

/// The values serde quotes in its errors: where each begins, how it is shown instead, and where it
/// ends (a string at its first unescaped `"`, the others at their closing backtick).
const QUOTED_VALUES: [(&str, &str); 4] = [
    ("string \"", "a string"),
    ("unknown variant `", "an unknown variant"),
    ("integer `", "an integer"),
    ("floating point `", "a number"),
];

/// Removes the values serde quotes in its errors (`invalid type: string "sk_live_..."`, `unknown
/// variant `sk_live_...``, `invalid type: integer `8675309123``), so a secret put in the wrong
/// field never reaches Envoy's log. Field names and the expected variants stay.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((start, opening, shown)) = QUOTED_VALUES
        .iter()
        .filter_map(|(opening, shown)| rest.find(opening).map(|start| (start, *opening, *shown)))
        .min_by_key(|(start, _, _)| *start)
    {
        out.push_str(rest.get(..start).unwrap_or_default());
        out.push_str(shown);
        let after = rest.get(start + opening.len()..).unwrap_or_default();
        let end = if opening.ends_with('"') {
            // The value ends at the first quote not escaped by a backslash.
            let mut escaped = false;
            after
                .char_indices()
                .find(|(_, c)| {
                    let closes = *c == '"' && !escaped;
                    escaped = *c == '\\' && !escaped;
                    closes
                })
                .map(|(end, _)| end)
        } else {
            after.find('`')
        };
        rest = match end {
            Some(end) => after.get(end + 1..).unwrap_or_default(),
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod migration_tests;

/// A policy's condition groups apply where it is an API's or a resource's policy: where no API or
/// resource of the configuration names it (and no control plane's API can), they count nothing.
fn unapplied_condition_groups(policies: &BTreeMap<String, RawPolicy>, routes: &Table) -> Vec<String> {
    let named = |name: &String| {
        routes.apis.iter().any(|api| {
            api.policy.as_ref() == Some(name)
                || api.resources.iter().any(|resource| resource.policy.as_ref() == Some(name))
        })
    };
    policies
        .iter()
        .filter(|(name, policy)| !policy.condition_groups.is_empty() && !named(name))
        .map(|(name, _)| {
            format!(
                "`policies.{name}.condition_groups` apply where `{name}` is an API's or a resource's policy, and no API \
                 or resource names it: they count nothing"
            )
        })
        .collect()
}

/// The backend JWT's JWKS is answered before any API is matched: a configured API's resource at
/// `jwks_path` would never be reached (its requests got the JWKS), so the two are refused together,
/// naming the field that moves it. With `unmatched: pass_through`, a service behind Envoy at that
/// path is not reached either: the operator is told.
fn check_jwks_path_is_free(config: &mut Config) -> Result<(), ConfigError> {
    let Some(path) = config.backend_jwt.as_ref().and_then(BackendJwt::jwks_path) else { return Ok(()) };
    if config.unmatched == crate::schema::Unmatched::PassThrough {
        config.warnings.push(format!(
            "`backend_jwt.jwks_path` `{path}` is answered with the JWKS before routing: with `unmatched: pass_through`, \
             requests there never reach Envoy's own routes (`null` serves no JWKS)"
        ));
    }
    for method in ["GET", "HEAD"] {
        let request = crate::routing::RequestView { method, path, access_control_request_method: None };
        if let crate::routing::Verdict::Forward(forward) =
            crate::routing::decide(config.router(&config.routes, None), &request)
        {
            let label = config.routes.api(forward.api).map(|api| api.label.as_str()).unwrap_or_default();
            return Err(ConfigError::new(
                "backend_jwt.jwks_path",
                format!("`{path}` is answered with the JWKS before routing, but API `{label}` has a resource there: move one (`null` serves no JWKS)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "hostile_tests.rs"]
pub(crate) mod hostile_tests;

/// Each API's `key_managers`, by name, as the key managers' ids (their places in `key_managers`):
/// an empty list, or a name no key manager has, is refused (no token of it could pass).
fn resolve_key_managers(apis: &mut [RawApi], key_managers: &[RawKeyManager]) -> Result<(), ConfigError> {
    for (index, api) in apis.iter_mut().enumerate() {
        let Some(names) = &api.key_managers else { continue };
        let field = format!("apis[{index}].key_managers");
        if names.is_empty() {
            return Err(ConfigError::new(
                field,
                "lists no key manager: no token could pass (leave it out for every one)",
            ));
        }
        let mut ids = Vec::with_capacity(names.len());
        for (place, name) in names.iter().enumerate() {
            let Some(id) = key_managers.iter().position(|km| &km.name == name) else {
                return Err(ConfigError::new(format!("{field}[{place}]"), "names no key manager in `key_managers`"));
            };
            ids.push(KmId(id as u32));
        }
        api.key_manager_ids = Some(ids);
    }
    Ok(())
}
