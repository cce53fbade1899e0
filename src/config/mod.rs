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

use serde::Deserialize;

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
    Compatibility, ErrorFormat, RawConfig, RawCredentials, RawPolicy, RawRouting, RawThrottling, Unmatched,
};
use crate::throttle::plan::KeyPart;
use crate::throttle::ThrottleConfig;
use owned_headers::{check_owned_headers, owned_headers};

/// A configuration parsed, not yet checked: its directory's lists as the filter reads them (the
/// applications compiled as they come, the subscriptions packed).
pub type Parsed<'a> = RawConfig<'a, StagedApplications, PackedSubscriptions>;

/// A checked, compiled configuration.
#[derive(Debug)]
pub struct Config {
    /// What the operator should know about an accepted configuration (logged at load).
    warnings: Vec<String>,
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
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let raw = RawConfig::deserialize(&mut deserializer).map_err(|error| {
                ConfigError::new(json_path::path_of_error(bytes, &error), redact_values(&error.to_string()))
            })?;
            deserializer.end().map_err(|error| ConfigError::new("(root)", error.to_string()))?;
            raw
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
        let control_plane =
            raw.control_plane.map(|cp| ControlPlane::compile(cp, &raw.apis, &mut warnings)).transpose()?;
        let routes = Table::compile(raw.apis, &|name| policies.contains(name))?;
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
        }
        let mut throttle =
            ThrottleConfig::compile(raw.custom_policies, raw.hard_limits, raw.throttling, &routes, &raw.policies)?;
        if let Some(control_plane) = &control_plane {
            throttle.tenant.clone_from(&control_plane.tenant);
        }
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
        Ok(Config {
            warnings,
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
        })
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
    /// with the control plane's APIs too).
    pub fn router<'a>(&'a self, table: &'a Table) -> Router<'a> {
        Router {
            table,
            settings: &self.routing,
            unmatched: self.unmatched,
            answers_preflights: self.errors.cors.is_some(),
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
        self.control_plane.is_some()
            || self.throttle.conditions_read_client_ip
            || self.directory.blocking().iter().any(|condition| matches!(condition, BlockingCondition::Ip(_)))
            || self.throttle.custom_policies.iter().any(|policy| policy.template.contains(&KeyPart::ClientIp))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::FaultId;

    fn error_of(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).expect_err("config should be refused")
    }

    /// Condition groups count only where their policy is an API's or a resource's: a policy no
    /// API or resource names (a subscription tier, say) is told at load that its groups count nothing.
    #[test]
    fn condition_groups_of_a_policy_no_api_names_are_warned_of() {
        let config = |api_policy: &str| {
            let json = format!(
                r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}}{api_policy},
                      "resources":[{{"method":"GET","path":"/r"}}]}}],
                  "policies":{{"Gold":{{"requests":5,"per":"minute","condition_groups":[
                      {{"requests":1,"per":"minute","conditions":[{{"ip":"10.0.0.1"}}]}}]}}}}}}"#
            );
            Config::from_json(json.as_bytes()).unwrap()
        };
        let unnamed = config("");
        assert_eq!(unnamed.warnings().len(), 1, "{:?}", unnamed.warnings());
        assert!(unnamed.warnings()[0].contains("policies.Gold.condition_groups"), "{:?}", unnamed.warnings());
        assert!(config(r#","policy":"Gold""#).warnings().is_empty());
    }

    #[test]
    fn a_configuration_of_any_declared_size_is_refused_not_allocated() {
        // Envoy says how large the configuration is before a byte is read; it hands none here.
        for size in [isize::MAX as usize + 1, usize::MAX] {
            let error = Config::from_source(size, &|_, _| None).expect_err("nothing to read");
            assert_eq!(error.field, "(root)", "{size}");
            assert_eq!(error.reason, format!("{size} bytes are more than the filter's memory can hold"));
        }
        // A size the host then cannot hand is its own refusal.
        let error = Config::from_source(100, &|_, _| None).expect_err("nothing to read");
        assert_eq!(error.reason, "the host could not hand the configuration");
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_naming_where() {
        let mut json = br#"{"applications":[{"id":"a","name":"caf"#.to_vec();
        json.extend_from_slice(b"\xe9\"}]}");
        let error = Config::from_json(&json).expect_err("not UTF-8");
        assert_eq!(error.field, "applications[0].name");
        assert_eq!(error.reason, "the configuration is not UTF-8 (at byte offset 38)");
        // The same text in UTF-8 is read (and refused further on for what it lacks, not for its bytes).
        let fine = r#"{"applications":[{"id":"a","name":"café"}]}"#;
        assert!(Config::from_json(fine.as_bytes()).is_ok());
    }

    const MINIMAL_API: &str = r#"{"name":"Pizza","context":"/pizzashack","version":"1.0.0",
        "endpoints":{"production":"pizza"},"resources":[{"method":"GET","path":"/menu"}]}"#;

    #[test]
    fn the_verification_fingerprint_follows_what_decides_verification_and_nothing_else() {
        let with = |key_managers: &str, applications: &str, backend_jwt: &str| {
            let json = format!(
                r#"{{"apis":[{MINIMAL_API}],"key_managers":{key_managers},"applications":{applications}{backend_jwt}}}"#
            );
            Config::from_json(json.as_bytes()).unwrap().auth.fingerprint
        };
        let km = |issuer: &str, secret: &str| {
            format!(r#"[{{"name":"km","issuer":"{issuer}","algorithms":["HS256"],"hmac_secret":"{secret}"}}]"#)
        };
        let apps = |id: &str| format!(r#"[{{"id":"{id}","name":"App","owner":"o","client_ids":[{{"id":"c-{id}"}}]}}]"#);
        const S1: &str = "a-secret-of-thirty-two-bytes-000";
        const S2: &str = "a-secret-of-thirty-two-bytes-001";
        let base = with(&km("https://a", S1), &apps("one"), "");
        assert_eq!(base.len(), 64);
        assert_eq!(base, with(&km("https://a", S1), &apps("one"), ""), "the same settings, the same fingerprint");
        assert_eq!(base, with(&km("https://a", S1), &apps("two"), ""), "the directory is not part of it");
        assert_ne!(base, with(&km("https://b", S1), &apps("one"), ""), "an issuer is");
        assert_ne!(base, with(&km("https://a", S2), &apps("one"), ""), "a key is");
        let copying = r#","backend_jwt":{"algorithm":"none","excluded_claims":["email"]}"#;
        assert_ne!(base, with(&km("https://a", S1), &apps("one"), copying), "the claims kept for the backend JWT are");
    }

    #[test]
    fn empty_input_and_empty_object_are_valid_and_equal_the_default() {
        assert!(Config::from_json(b"").is_ok());
        let mut parsed = Config::from_json(b"{}").unwrap();
        // The fingerprint names the verification settings (for the shared verified-token cache).
        assert_eq!(parsed.auth.fingerprint.len(), 64);
        parsed.auth.fingerprint.clear();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
        // A directory prints as its kind only: the empty one holds nothing.
        let directory = &parsed.directory;
        assert!(!directory.has_policies() && directory.blocking().is_empty() && directory.application("").is_none());
    }

    #[test]
    fn compiled_parts_keep_no_raw_types_and_labels_are_built_once() {
        let config = Config::from_json(format!(r#"{{"apis":[{MINIMAL_API}]}}"#).as_bytes()).unwrap();
        let api = &config.routes.apis[0];
        assert_eq!(api.label, "Pizza:1.0.0");
        assert_eq!(api.resources[0].key, "/pizzashack/1.0.0/menu:GET");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let error = error_of(
            r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
               "resources":[{"method":"GET","path":"/x","methd":"GET"}]}]}"#,
        );
        assert!(error.field.starts_with("apis[0].resources[0]"), "{error}");
        assert!(error.reason.contains("unknown field `methd`"), "{error}");
    }

    #[test]
    fn bad_path_template_is_named() {
        let error = error_of(
            r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
               "resources":[{"method":"GET","path":"/x/{id"}]}]}"#,
        );
        assert_eq!(error.field, "apis[0].resources[0].path");
    }

    #[test]
    fn invalid_override_status_is_named() {
        let error = error_of(r#"{"errors":{"overrides":{"900800":{"status":99}}}}"#);
        assert_eq!(error.field, "errors.overrides.900800.status");
        let error = error_of(r#"{"errors":{"overrides":{"900800":{"status":600}}}}"#);
        assert_eq!(error.field, "errors.overrides.900800.status");
        // A fault is its body: a status that carries none would be sent with one (RFC 9110 forbids
        // it; an HTTP/2 client resets the stream, an HTTP/1.1 one reads it as the next response).
        for status in [204, 205, 304] {
            let error = error_of(&format!(r#"{{"errors":{{"overrides":{{"9008xx":{{"status":{status}}}}}}}}}"#));
            assert_eq!(error.field, "errors.overrides.9008xx.status", "{status}");
            assert!(error.to_string().contains("carries no content"), "{error}");
        }
    }

    #[test]
    fn overrides_accept_codes_transport_codes_and_ids() {
        let config = Config::from_json(
            br#"{"errors":{"overrides":{"900800":{"status":555},"101507":{"status":599},
                 "production_key_without_endpoint":{"message":"no prod"}}}}"#,
        )
        .unwrap();
        assert_eq!(config.errors.overrides_by_code[&900800].status, Some(555));
        assert!(config.errors.overrides_by_code.contains_key(&101507));
        assert!(config.errors.overrides_by_id.contains_key(&FaultId::ProductionKeyWithoutEndpoint));
        assert_eq!(error_of(r#"{"errors":{"overrides":{"123":{}}}}"#).field, "errors.overrides.123");
        assert_eq!(error_of(r#"{"errors":{"overrides":{"nope":{}}}}"#).field, "errors.overrides.nope");
        assert_eq!(error_of(r#"{"errors":{"overrides":{"7xx":{}}}}"#).field, "errors.overrides.7xx");
        assert!(Config::from_json(br#"{"errors":{"overrides":{"9008xx":{"status":555}}}}"#).is_ok());
    }

    #[test]
    fn template_format_needs_a_template() {
        assert_eq!(error_of(r#"{"errors":{"format":"template"}}"#).field, "errors.template");
    }

    #[test]
    fn unknown_format_is_refused() {
        let error = error_of(r#"{"errors":{"format":"soap"}}"#);
        assert_eq!(error.field, "errors.format");
    }

    #[test]
    fn api_references_and_uniqueness_are_checked() {
        let twice = format!(r#"{{"apis":[{MINIMAL_API},{MINIMAL_API}]}}"#);
        assert_eq!(error_of(&twice).field, "apis[1].name");
        let no_policy = MINIMAL_API.replace(r#""version":"1.0.0","#, r#""version":"1.0.0","policy":"Gold","#);
        assert_eq!(error_of(&format!(r#"{{"apis":[{no_policy}]}}"#)).field, "apis[0].policy");
        let no_endpoint = MINIMAL_API.replace(r#""endpoints":{"production":"pizza"}"#, r#""endpoints":{}"#);
        assert_eq!(error_of(&format!(r#"{{"apis":[{no_endpoint}]}}"#)).field, "apis[0].endpoints");
        let bad_method = MINIMAL_API.replace(r#""GET""#, r#""FETCH""#);
        assert_eq!(error_of(&format!(r#"{{"apis":[{bad_method}]}}"#)).field, "apis[0].resources[0].method");
    }

    #[test]
    fn contexts_are_checked() {
        for context in ["pizzashack", "/", "/pizza/", "/pi zza", "/a/../b", "/a//b", "/{id}"] {
            let api = MINIMAL_API.replace("/pizzashack", context);
            let error = error_of(&format!(r#"{{"apis":[{api}]}}"#));
            assert_eq!(error.field, "apis[0].context", "context {context}");
        }
    }

    #[test]
    fn subscriptions_must_reference_known_things() {
        let json = format!(
            r#"{{"apis":[{MINIMAL_API}],"applications":[{{"id":"app1","name":"App"}}],
               "subscriptions":[{{"application":"app1","api":"Pizza:2.0.0"}}]}}"#
        );
        assert_eq!(error_of(&json).field, "subscriptions[0].api");
        let json = format!(
            r#"{{"apis":[{MINIMAL_API}],"applications":[{{"id":"app1","name":"App"}}],
               "subscriptions":[{{"application":"app1","api":"Pizza:1.0.0","tier":"Gold"}}]}}"#
        );
        assert_eq!(error_of(&json).field, "subscriptions[0].tier");
    }

    #[test]
    fn api_key_hashes_are_checked() {
        let json = r#"{"applications":[{"id":"a","name":"A","api_keys":[{"sha256":"ABC"}]}]}"#;
        assert_eq!(error_of(json).field, "applications[0].api_keys[0].sha256");
    }

    #[test]
    fn policies_are_checked() {
        assert_eq!(error_of(r#"{"policies":{"P":{"per":"minute"}}}"#).field, "policies.P");
        assert_eq!(error_of(r#"{"policies":{"P":{"requests":0,"per":"minute"}}}"#).field, "policies.P.requests");
        assert_eq!(
            error_of(r#"{"policies":{"P":{"requests":5,"per":"minute","burst":{"requests":1,"per":"hour"}}}}"#).field,
            "policies.P.burst.per"
        );
        assert_eq!(error_of(r#"{"policies":{"Unlimited":{"requests":5,"per":"minute"}}}"#).field, "policies.Unlimited");
    }

    #[test]
    fn cors_wildcard_with_credentials_is_refused() {
        let error = error_of(r#"{"errors":{"cors":{"allow_origins":["*"],"allow_credentials":true}}}"#);
        assert_eq!(error.field, "errors.cors.allow_credentials");
    }

    #[test]
    fn each_header_the_filter_sets_is_its_own() {
        // Found by a configuration fuzz: these loaded, and the later header was written over the
        // earlier one (every authorized request routed to a cluster named by a JWT or a tier).
        let cases = [
            (
                r#""routing":{"cluster_header":"x-jwt-assertion"},"backend_jwt":{"algorithm":"none"}"#,
                "backend_jwt.header",
            ),
            (
                r#""routing":{"cluster_header":"x-apim-cluster"},"backend_jwt":{"algorithm":"none","header":"x-apim-cluster"}"#,
                "backend_jwt.header",
            ),
            (
                r#""routing":{"api_header":"x-apim-api"},"backend_jwt":{"algorithm":"none","header":"X_APIM_API"}"#,
                "backend_jwt.header",
            ),
            (r#""routing":{"cluster_header":"x-apim-tier"}"#, "credentials.context_header_prefix"),
            (r#""routing":{"api_header":"x-apim-application-id"}"#, "credentials.context_header_prefix"),
            (r#""routing":{"api_header":"x-apim-key-type"}"#, "credentials.context_header_prefix"),
            (r#""throttling":{"quota_exceeded_header":"x-apim-cluster"}"#, "throttling.quota_exceeded_header"),
            // A credentials header the filter sets would be taken from the client before it is read.
            (r#""throttling":{"quota_exceeded_header":"apikey"}"#, "throttling.quota_exceeded_header"),
            (r#""backend_jwt":{"algorithm":"none","header":"authorization"}"#, "backend_jwt.header"),
            // Nor a header requests depend on: the client's copy is removed from every request.
            (r#""backend_jwt":{"algorithm":"none","header":"Content-Type"}"#, "backend_jwt.header"),
            (r#""backend_jwt":{"algorithm":"none","header":"cookie"}"#, "backend_jwt.header"),
            (r#""backend_jwt":{"algorithm":"none","header":"Host"}"#, "backend_jwt.header"),
            (r#""throttling":{"quota_exceeded_header":"X-Forwarded-For"}"#, "throttling.quota_exceeded_header"),
            (r#""credentials":{"context_header_prefix":"x-envoy-"}"#, "credentials.context_header_prefix"),
            (r#""credentials":{"context_header_prefix":"content-"}"#, "credentials.context_header_prefix"),
        ];
        for (settings, field) in cases {
            let error = error_of(&format!("{{{settings}}}"));
            assert_eq!(error.field, field, "{settings}: {error}");
        }
        Config::from_json(br#"{"backend_jwt":{"algorithm":"none"}}"#).expect("the defaults are distinct");
    }

    #[test]
    fn a_refusal_names_the_field_that_was_written() {
        let cases = [
            (
                r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","base_path":"internal/data/v1"}}"#,
                "control_plane.base_path",
            ),
            (
                r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","base_path":"//"}}"#,
                "control_plane.base_path",
            ),
            (
                r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","event_apis":"count_messages"}}"#,
                "control_plane.event_apis",
            ),
            (
                r#"{"throttling":{"rate_limit_service":{"cluster":"rl"}},
                    "policies":{"B":{"bytes":100,"per":"minute","burst":{"requests":4294967296,"per":"second"}}}}"#,
                "policies.B.burst.requests",
            ),
            (
                r#"{"throttling":{"rate_limit_service":{"cluster":"rl"}},"policies":{"B":{"requests":4294967296,"per":"minute"}}}"#,
                "policies.B.requests",
            ),
            (
                r#"{"key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"km","path":"jwks"}}]}"#,
                "key_managers[0].jwks.path",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(error_of(json).field, field, "{json}");
        }
    }

    #[test]
    fn values_are_not_echoed_in_type_errors() {
        let error = error_of(r#"{"applications":[{"id":"a","name":"A","api_keys":["sk_live_SECRET"]}]}"#);
        assert_eq!(error.field, "applications[0].api_keys[0]");
        assert!(!error.to_string().contains("sk_live_SECRET"), "{error}");
        assert!(error.reason.contains("invalid type: a string"), "{error}");
        let error = error_of(r#"{"applications":[{"id":"a","name":"A","api_keys":["se\"cr\"et-TAIL"]}]}"#);
        assert!(!error.to_string().contains("TAIL"), "{error}");
        // serde quotes variants and numbers in backticks: a secret pasted where an enum or a
        // number goes is not echoed either, and what was expected still is.
        let error = error_of(r#"{"errors":{"format":"sk_live_SECRET"}}"#);
        assert_eq!(error.field, "errors.format");
        assert!(!error.to_string().contains("sk_live_SECRET") && error.reason.contains("expected one of"), "{error}");
        for number in ["8675309123", "-8675309123", "8675309.123"] {
            let error = error_of(&format!(r#"{{"credentials":{{"realm":{number}}}}}"#));
            assert!(!error.to_string().contains("8675309"), "{error}");
            assert!(
                error.reason.starts_with("invalid type: an integer")
                    || error.reason.starts_with("invalid type: a number"),
                "{error}"
            );
        }
    }

    #[test]
    fn client_ids_name_their_key_manager_when_there_are_several() {
        let two = r#"{"key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"a"}},
            {"name":"b","issuer":"https://b","jwks":{"cluster":"b"}}],
            "applications":[{"id":"x","name":"X","client_ids":[{"id":"c"}]}]}"#;
        assert_eq!(error_of(two).field, "applications[0].client_ids[0].key_manager");
        let unknown = two.replace(r#"{"id":"c"}"#, r#"{"id":"c","key_manager":"z"}"#);
        assert_eq!(error_of(&unknown).field, "applications[0].client_ids[0].key_manager");
        let named = two.replace(r#"{"id":"c"}"#, r#"{"id":"c","key_manager":"b"}"#);
        let config = Config::from_json(named.as_bytes()).unwrap();
        assert_eq!(
            config.directory.client("c", crate::vocab::KmId(1)).unwrap().key_manager,
            Some(crate::vocab::KmId(1))
        );
        assert!(config.directory.client("c", crate::vocab::KmId(0)).is_none(), "b's client, not a's");
    }

    #[test]
    fn routing_headers_must_not_be_reserved_or_credentials() {
        assert_eq!(error_of(r#"{"routing":{"cluster_header":"host"}}"#).field, "routing.cluster_header");
        assert_eq!(error_of(r#"{"routing":{"cluster_header":"Content-Length"}}"#).field, "routing.cluster_header");
        assert_eq!(error_of(r#"{"routing":{"api_header":"apikey"}}"#).field, "routing.api_header");
        assert_eq!(
            error_of(r#"{"routing":{"api_header":"x-envoy-upstream-rq-timeout-ms"}}"#).field,
            "routing.api_header"
        );
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert_eq!(error_of("{} {}").field, "(root)");
        assert_eq!(error_of("[]").field, "(root)");
    }

    #[test]
    fn base_paths_include_default_version_and_version_templates() {
        let api = MINIMAL_API.replace(r#""version":"1.0.0","#, r#""version":"1.0.0","default_version":true,"#);
        let config = Config::from_json(format!(r#"{{"apis":[{api}]}}"#).as_bytes()).unwrap();
        assert!(config.routes.base_paths.contains_key("/pizzashack/1.0.0"));
        assert!(config.routes.base_paths.contains_key("/pizzashack"));
        let api = MINIMAL_API.replace("/pizzashack", "/{version}/pizzashack");
        let config = Config::from_json(format!(r#"{{"apis":[{api}]}}"#).as_bytes()).unwrap();
        assert!(config.routes.base_paths.contains_key("/1.0.0/pizzashack"));
    }

    /// Mistakes that used to load and then fail on every request are refused at load, naming the
    /// field.
    #[test]
    fn configurations_that_could_never_serve_are_refused_at_load() {
        let api = |extra: &str| format!(r#"{{"apis":[{}]{extra}}}"#, MINIMAL_API);
        let cases: Vec<(String, &str)> = vec![
            (api("").replace(r#""context":"/pizzashack""#, r#""context":"/pizzashack/1.0.0""#), "apis[0].context"),
            (api("").replace(r#""path":"/menu""#, r#""path":"/orders/:id""#), "apis[0].resources[0].path"),
            (
                api("").replace(r#""path":"/menu""#, r#""path":"/menu","security":["api_key"],"scopes":["read"]"#),
                "apis[0].resources[0].scopes",
            ),
            (
                api("").replace(r#""path":"/menu""#, r#""path":"/menu","security":[],"user_token_only":true"#),
                "apis[0].resources[0].user_token_only",
            ),
            (
                api("").replace(
                    r#""path":"/menu""#,
                    r#""path":"/menu","user_token_only":true,"application_token_only":true"#,
                ),
                "apis[0].resources[0].application_token_only",
            ),
            (
                api("").replace(r#""version":"1.0.0","#, r#""version":"1.0.0","api_key_in_query":true,"#),
                "apis[0].api_key_in_query",
            ),
            (
                api(
                    r#","applications":[{"id":"a","name":"A","api_keys":[{"sha256":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","key_type":"SANDBOX"}]}],
                      "subscriptions":[{"application":"a","api":"Pizza:1.0.0"}]"#,
                ),
                "subscriptions[0]",
            ),
            (api(r#","blocking":[{"api":"/pizzashak/1.0.0"}]"#), "blocking[0].api"),
            (api(r#","blocking":[{"user":""}]"#), "blocking[0].user"),
            // Subscription conditions are matched by `<name>:<version>` only: naming the API by
            // a context (one holding `:`) would load and block nothing.
            (
                api(r#","blocking":[{"subscription":"app:/shop:v1"}]"#).replace("/pizzashack", "/shop:v1"),
                "blocking[0].subscription",
            ),
            (api(r#","blocking":[{"application":" "}]"#), "blocking[0].application"),
            (api(r#","applications":[{"id":"a","name":"A","client_ids":[{"id":"c"}]}]"#), "applications[0].client_ids"),
            (api(r#","key_managers":[{"name":"k","issuer":"https://k"}]"#), "key_managers[0]"),
        ];
        for (json, field) in cases {
            assert_eq!(error_of(&json).field, field, "{json}");
        }
        // The mixed application is fine: its production key works.
        let mixed = api(r#","applications":[{"id":"a","name":"A","api_keys":[
            {"sha256":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","key_type":"SANDBOX"},
            {"sha256":"c5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"}]}],
            "subscriptions":[{"application":"a","api":"Pizza:1.0.0"}]"#);
        assert!(Config::from_json(mixed.as_bytes()).is_ok());
    }

    #[test]
    fn secrets_are_taken_from_the_environment_or_inline_with_a_warning() {
        let km = |secret: &str| {
            format!(
                r#"{{"key_managers":[{{"name":"k","issuer":"https://k",
                    "introspection":{{"cluster":"km","client_id":"gw","client_secret":{secret}}}}}]}}"#
            )
        };
        std::env::set_var("APIM_TEST_SECRET_A", "from-the-environment");
        let config = Config::from_json(km(r#"{"env":"APIM_TEST_SECRET_A"}"#).as_bytes()).unwrap();
        let introspection = config.auth.key_managers[0].introspection.as_ref().unwrap();
        assert_eq!(introspection.client_secret.0, b"from-the-environment");
        assert!(config.warnings().is_empty());
        assert!(!format!("{config:?}").contains("from-the-environment"), "never printed");
        let error = error_of(&km(r#"{"env":"APIM_TEST_SECRET_UNSET"}"#));
        assert_eq!(error.field, "key_managers[0].introspection.client_secret.env");
        let inline = Config::from_json(km(r#""inline-secret""#).as_bytes()).unwrap();
        assert!(inline.warnings()[0].contains("key_managers[0].introspection.client_secret"));
        assert!(!inline.warnings()[0].contains("inline-secret"));
        assert_eq!(error_of(&km(r#"{"env":"X","value":"y"}"#)).field, "key_managers[0].introspection.client_secret");
        // HMAC secrets are random bytes: base64.
        let hmac = |secret: &str| {
            format!(
                r#"{{"key_managers":[{{"name":"k","issuer":"https://k","algorithms":["HS256"],"hmac_secret":{secret}}}]}}"#
            )
        };
        let random = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xffu8; 32]);
        assert!(Config::from_json(hmac(&format!(r#"{{"value":"{random}","encoding":"base64"}}"#)).as_bytes()).is_ok());
        assert_eq!(error_of(&hmac(r#"{"value":"c2hvcnQ=","encoding":"base64"}"#)).field, "key_managers[0].hmac_secret");
        assert_eq!(error_of(&hmac(r#"{"value":"!!!","encoding":"base64"}"#)).field, "key_managers[0].hmac_secret");
    }

    #[test]
    fn duplicate_base_paths_are_refused() {
        let other = MINIMAL_API.replace(r#""name":"Pizza""#, r#""name":"Other""#);
        let error = error_of(&format!(r#"{{"apis":[{MINIMAL_API},{other}]}}"#));
        assert_eq!(error.field, "apis[1].context");
    }
}
