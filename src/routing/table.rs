//! The routing table: APIs and their resources compiled from configuration (checked, their path
//! templates parsed, their base paths indexed), and how the chosen endpoint reaches Envoy's router.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::matcher::{self, PathTemplate};
use crate::schema::checks::{check_cluster_name, check_header_name, check_header_value};
use crate::schema::{ConfigError, RawApi, RawRouting};
use crate::vocab::{ApiId, KmId, Lifecycle, ResourceId, SecurityScheme};

/// How the chosen endpoint reaches Envoy's router.
#[derive(Clone, Debug)]
pub struct RoutingSettings {
    pub cluster_header: String,
    pub api_header: String,
    pub rewrite_path: bool,
}

/// The Envoy clusters of an API's endpoints.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// Shared with each request that goes to it (a count, not a copy).
    pub production: Option<Rc<str>>,
    pub sandbox: Option<Rc<str>>,
}

/// A compiled API.
#[derive(Debug)]
pub struct Api {
    pub id: ApiId,
    pub name: String,
    pub version: String,
    /// `<name>:<version>`, how subscriptions, policies and logs name the API.
    pub label: String,
    pub context: String,
    pub lifecycle: Lifecycle,
    pub default_version: bool,
    pub endpoints: Endpoints,
    pub backend_path: String,
    pub api_key_in_query: bool,
    /// A control plane's WebSocket API: a handshake (a WebSocket upgrade, and only one) also takes
    /// its OAuth2 token from the `access_token` query parameter, and its API key from the API key's
    /// one, as API-M's gateway does; `access_token` then never goes upstream.
    pub websocket_query_credentials: bool,
    /// A WebSocket connection's frames are counted, not its handshake (`count_websocket_frames`,
    /// or a control plane's WebSocket API with `event_apis: count_messages`).
    pub counts_websocket_frames: bool,
    /// A response's server-sent events are counted, not its request (`count_server_sent_events`,
    /// or a control plane's server-sent-events API with `event_apis: count_messages`).
    pub counts_server_sent_events: bool,
    /// Some resource accepts API keys (or the API takes them in the query): an `apikey` query
    /// parameter is then a credential and never goes upstream.
    pub api_keys: bool,
    /// API-level throttling policy.
    pub policy: Option<String>,
    pub resources: Vec<Resource>,
    /// The API's id where it came from (the control plane's UUID); `None` for the configuration's.
    pub source_id: Option<String>,
    /// The key managers whose tokens it takes (`RawApi::key_managers`); `None`: every one.
    pub key_managers: Option<Vec<KmId>>,
    /// Its stats prefix, `apim.api.<name>.version.<version>` (see [`stat_segment`]), built once.
    pub stats_prefix: String,
    /// The counter of its allowed requests, `<stats_prefix>.allowed`, built once.
    pub stats_allowed: String,
    /// The context with the version in it (`/pizzashack/1.0.0`), as WSO2's analytics and backend
    /// JWT name it, built once.
    pub versioned_context: String,
}

/// A stats-name segment that names one text only, and that Envoy's tag extraction reads whole:
/// letters, digits, `-` and `_` (and `.` when `dots`) stay as they are; every other byte of the
/// text's UTF-8 is written `%XX` (`Pizza Shack` is `Pizza%20Shack`, apart from `Pizza_Shack`),
/// and so is a leading `_`, which keeps the segments starting with `_` for the filter's own:
/// `_` for an empty text, `_other` for applications past the bound.
pub fn stat_segment(text: &str, dots: bool) -> String {
    if text.is_empty() {
        return "_".to_string();
    }
    let mut segment = String::with_capacity(text.len());
    for (index, byte) in text.bytes().enumerate() {
        let kept =
            byte.is_ascii_alphanumeric() || byte == b'-' || (byte == b'_' && index > 0) || (dots && byte == b'.');
        if kept {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

/// A compiled resource.
#[derive(Debug)]
pub struct Resource {
    pub id: ResourceId,
    pub method: String,
    pub template: PathTemplate,
    /// Effective security schemes; empty means open.
    pub security: Vec<SecurityScheme>,
    pub scopes: Vec<String>,
    /// Resource-level throttling policy.
    pub policy: Option<String>,
    /// Only user tokens (WSO2's `Application User`): application tokens answer 900905.
    pub user_token_only: bool,
    /// Only application tokens (WSO2's `Application`): user tokens answer 900905.
    pub application_token_only: bool,
    /// WSO2's key of the resource: `<context>/<version><template>:<method>`.
    pub key: String,
    /// The methods of its path template (every verb its API defines for that template, in
    /// configuration order) that the CORS configuration allows, joined with `,`: the
    /// `Access-Control-Allow-Methods` of every answer to a request it matched, as API-M's
    /// `CORSRequestHandler` sends its Synapse resource's methods. Joined once when the table is
    /// compiled and shared by the template's resources, so that a backend's answer sets it without
    /// an allocation.
    pub cors_methods: Rc<str>,
}

/// Every served API by base path.
#[derive(Debug, Default)]
pub struct Table {
    pub apis: Vec<Api>,
    /// Base path (normalized, e.g. `/pizzashack/1.0.0`) to API.
    pub base_paths: HashMap<String, ApiId>,
    /// The largest number of segments in any base path.
    pub max_base_depth: usize,
    /// `<name>:<version>` label to API.
    pub labels: HashMap<String, ApiId>,
    /// The methods a CORS answer may allow (`errors.cors.allow_methods`; `None`: every method),
    /// which each resource's [`Resource::cors_methods`] keeps of its template's.
    pub cors_allow_methods: Option<Vec<String>>,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

impl RoutingSettings {
    pub fn compile(routing: RawRouting) -> Result<RoutingSettings, ConfigError> {
        for (field, name) in
            [("routing.cluster_header", &routing.cluster_header), ("routing.api_header", &routing.api_header)]
        {
            // Whether each is the filter's own, and no header requests need, is checked with the
            // other headers the filter sets (`config::owned_headers`).
            check_header_name(field, name)?;
        }
        if routing.cluster_header.eq_ignore_ascii_case(&routing.api_header) {
            return Err(ConfigError::new("routing.api_header", "must differ from routing.cluster_header"));
        }
        Ok(RoutingSettings {
            cluster_header: routing.cluster_header,
            api_header: routing.api_header,
            rewrite_path: routing.rewrite_path,
        })
    }
}

impl Table {
    /// Compiles the APIs; `policy_exists` says whether a throttling policy name is defined.
    pub fn compile(raw: Vec<RawApi>, policy_exists: &dyn Fn(&str) -> bool) -> Result<Table, ConfigError> {
        Table::compile_for_cors(raw, policy_exists, None)
    }

    /// Compiles the APIs for a CORS configuration that allows `cors_allow_methods` (`None`: every
    /// method), which each resource's [`Resource::cors_methods`] keeps.
    pub fn compile_for_cors(
        raw: Vec<RawApi>,
        policy_exists: &dyn Fn(&str) -> bool,
        cors_allow_methods: Option<Vec<String>>,
    ) -> Result<Table, ConfigError> {
        let mut table = Table { cors_allow_methods, ..Table::default() };
        for (index, raw_api) in raw.into_iter().enumerate() {
            table.add(&format!("apis[{index}]"), raw_api, policy_exists)?;
        }
        Ok(table)
    }

    /// Compiles one more API (`field` names it in errors). On an error the table is unchanged.
    pub fn add(&mut self, field: &str, raw: RawApi, policy_exists: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        self.insert(field, raw, policy_exists, Unservable::Refused)
    }

    /// Compiles one more API of the control plane's. A resource that no credential of its
    /// security could pass (scopes or user tokens where only API keys are taken) is kept and
    /// answers its fault (900910, 900905), as a configured one cannot be: the API's other
    /// resources are served, as WSO2's gateway serves them.
    pub fn add_from_control_plane(&mut self, field: &str, raw: RawApi) -> Result<(), ConfigError> {
        self.insert(field, raw, &|_| true, Unservable::Kept)
    }

    fn insert(
        &mut self,
        field: &str,
        raw: RawApi,
        policy_exists: &dyn Fn(&str) -> bool,
        unservable: Unservable,
    ) -> Result<(), ConfigError> {
        let id = ApiId(u32::try_from(self.apis.len()).map_err(|_| ConfigError::new(field, "too many APIs"))?);
        let mut api = compile_api(field, id, raw, policy_exists, unservable)?;
        join_cors_methods(&mut api.resources, self.cors_allow_methods.as_deref());
        if self.labels.contains_key(&api.label) {
            return Err(ConfigError::new(format!("{field}.name"), format!("API {} is defined twice", api.label)));
        }
        let bases = if api.lifecycle != Lifecycle::Created && api.lifecycle != Lifecycle::Retired {
            api_base_paths(field, &api)?
        } else {
            Vec::new()
        };
        for base in &bases {
            if let Some(other) = self.base_paths.get(base) {
                return Err(ConfigError::new(
                    format!("{field}.context"),
                    format!("base path {base} is also served by apis[{}]", other.0),
                ));
            }
        }
        for base in bases {
            self.max_base_depth = self.max_base_depth.max(base.matches('/').count());
            self.base_paths.insert(base, id);
        }
        self.labels.insert(api.label.clone(), id);
        self.apis.push(api);
        Ok(())
    }

    pub fn api(&self, id: ApiId) -> Option<&Api> {
        self.apis.get(id.index())
    }

    /// An API by its `<name>:<version>` label.
    pub fn by_label(&self, label: &str) -> Option<&Api> {
        self.labels.get(label).and_then(|id| self.api(*id))
    }
}

impl Api {
    pub fn resource(&self, id: ResourceId) -> Option<&Resource> {
        self.resources.get(id.index())
    }

    /// Whether a blocking condition's `api` (a context, the versioned context WSO2 writes, or a
    /// label) names it. The versioned context is [`Api::versioned_context`], never the context and
    /// `/<version>` put together: a `{version}` context holds its version where the template says.
    pub fn is_named_by(&self, name: &str) -> bool {
        name == self.label || name == self.context || name == self.versioned_context
    }
}

fn check_context(field: &str, context: &str) -> Result<(), ConfigError> {
    if !context.starts_with('/') || context.len() < 2 {
        return Err(ConfigError::new(field, format!("`{context}` must start with `/` and name at least one segment")));
    }
    if context.ends_with('/') {
        return Err(ConfigError::new(field, format!("`{context}` must not end with `/`")));
    }
    let mut version_segments = 0;
    for segment in context.get(1..).unwrap_or_default().split('/') {
        if segment == "{version}" {
            version_segments += 1;
            continue;
        }
        matcher::check_literal_segment(segment)
            .map_err(|reason| ConfigError::new(field, format!("`{context}`: {reason}")))?;
    }
    if version_segments > 1 {
        return Err(ConfigError::new(field, "`{version}` may appear once"));
    }
    Ok(())
}

fn check_policy_ref(field: String, policy: &Option<String>, exists: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
    match policy {
        Some(name) if !exists(name) => {
            Err(ConfigError::new(field, format!("policy `{name}` is not defined in `policies`")))
        }
        _ => Ok(()),
    }
}

/// The path an API is served under: its context with the version in `{version}`'s place, or
/// appended.
fn versioned_context(context: &str, version: &str) -> String {
    if context.contains("{version}") {
        context.replace("{version}", version)
    } else {
        format!("{context}/{version}")
    }
}

/// What becomes of a resource no credential of its security could pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unservable {
    /// Refused, naming the field (the configuration's mistake).
    Refused,
    /// Kept, answering its fault (the control plane's data).
    Kept,
}

fn compile_api(
    field: &str,
    id: ApiId,
    raw: RawApi,
    policy_exists: &dyn Fn(&str) -> bool,
    unservable: Unservable,
) -> Result<Api, ConfigError> {
    if raw.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{field}.name"), "must not be empty"));
    }
    if raw.name.contains(':') {
        return Err(ConfigError::new(format!("{field}.name"), "must not contain `:`"));
    }
    check_header_value(&format!("{field}.name"), &raw.name)?;
    check_context(&format!("{field}.context"), &raw.context)?;
    if raw.version.is_empty() {
        return Err(ConfigError::new(format!("{field}.version"), "must not be empty"));
    }
    if !raw.context.contains("{version}") && raw.context.rsplit('/').next() == Some(raw.version.as_str()) {
        return Err(ConfigError::new(
            format!("{field}.context"),
            format!(
                "`{}` ends with the version `{}`, which the gateway appends (it would serve `{}/{}`): write \
                 the context without it, or put `{{version}}` where it goes",
                raw.context, raw.version, raw.context, raw.version
            ),
        ));
    }
    matcher::check_literal_segment(&raw.version)
        .map_err(|reason| ConfigError::new(format!("{field}.version"), reason))?;
    if raw.endpoints.production.is_none() && raw.endpoints.sandbox.is_none() {
        return Err(ConfigError::new(format!("{field}.endpoints"), "needs a production or a sandbox cluster"));
    }
    for (name, cluster) in [("production", &raw.endpoints.production), ("sandbox", &raw.endpoints.sandbox)] {
        if let Some(cluster) = cluster {
            check_cluster_name(&format!("{field}.endpoints.{name}"), cluster)?;
        }
    }
    if !raw.backend_path.is_empty() {
        let backend_field = format!("{field}.backend_path");
        if !raw.backend_path.starts_with('/') || raw.backend_path.ends_with('/') {
            return Err(ConfigError::new(backend_field, "must start with `/` and not end with `/` (or be empty)"));
        }
        for segment in raw.backend_path.get(1..).unwrap_or_default().split('/') {
            matcher::check_literal_segment(segment)
                .map_err(|reason| ConfigError::new(backend_field.clone(), reason))?;
        }
    }
    check_policy_ref(format!("{field}.policy"), &raw.policy, policy_exists)?;

    let mut resources = Vec::with_capacity(raw.resources.len());
    let mut seen: HashSet<(String, String)> = HashSet::new();
    // Only a configuration's own resources are checked against the base path (below).
    let base_path = (unservable == Unservable::Refused).then(|| versioned_context(&raw.context, &raw.version));
    for (index, resource) in raw.resources.into_iter().enumerate() {
        let resource_field = format!("{field}.resources[{index}]");
        if !METHODS.contains(&resource.method.as_str()) {
            return Err(ConfigError::new(
                format!("{resource_field}.method"),
                format!("`{}` is not one of {}", resource.method, METHODS.join(", ")),
            ));
        }
        let template = PathTemplate::parse(&resource.path)
            .map_err(|reason| ConfigError::new(format!("{resource_field}.path"), reason))?;
        // A resource is below the API's base path; a path written from the root (WSO2's full
        // resource URL) would be served under the base path twice. The control plane's data is
        // served as API-M serves it.
        let from_root = |base_path: &str| {
            resource.path.strip_prefix(base_path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if let Some(base_path) = base_path.as_deref().filter(|base_path| from_root(base_path)) {
            return Err(ConfigError::new(
                format!("{resource_field}.path"),
                format!(
                    "`{}` starts with the API's base path `{base_path}`, which the gateway puts before it (it \
                     would serve `{base_path}{}`): write the path below it",
                    resource.path, resource.path
                ),
            ));
        }
        if !seen.insert((resource.method.clone(), template.shape())) {
            return Err(ConfigError::new(
                format!("{resource_field}.path"),
                format!("{} {} duplicates an earlier resource", resource.method, resource.path),
            ));
        }
        check_policy_ref(format!("{resource_field}.policy"), &resource.policy, policy_exists)?;
        let security = resource.security.clone().unwrap_or_else(|| raw.security.clone());
        if !security.contains(&SecurityScheme::Oauth2) && unservable == Unservable::Refused {
            let accepts = if security.is_empty() { "is open" } else { "accepts only API keys" };
            if !resource.scopes.is_empty() {
                return Err(ConfigError::new(
                    format!("{resource_field}.scopes"),
                    format!("only OAuth2 tokens carry scopes, and this resource {accepts}: no request could pass"),
                ));
            }
            if resource.user_token_only {
                return Err(ConfigError::new(
                    format!("{resource_field}.user_token_only"),
                    format!("only OAuth2 tokens are user tokens, and this resource {accepts}: no request could pass"),
                ));
            }
        }
        if resource.user_token_only && resource.application_token_only {
            return Err(ConfigError::new(
                format!("{resource_field}.application_token_only"),
                "a token is a user's or an application's, and `user_token_only` refuses the other: no token could pass",
            ));
        }
        for (scope_index, scope) in resource.scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    format!("{resource_field}.scopes[{scope_index}]"),
                    "a scope is one non-empty word",
                ));
            }
        }
        let key = format!("{}/{}{}:{}", raw.context, raw.version, template.as_str(), resource.method);
        resources.push(Resource {
            id: ResourceId(index as u32),
            method: resource.method,
            template,
            security,
            scopes: resource.scopes,
            policy: resource.policy,
            user_token_only: resource.user_token_only,
            application_token_only: resource.application_token_only,
            key,
            cors_methods: Rc::from(""),
        });
    }
    let any_api_key_resource = resources.iter().any(|resource| resource.security.contains(&SecurityScheme::ApiKey));
    if raw.api_key_in_query && !any_api_key_resource {
        return Err(ConfigError::new(
            format!("{field}.api_key_in_query"),
            "no resource of this API accepts API keys (`security` with `api_key`): a key in the query could never be used",
        ));
    }
    let stats_prefix =
        format!("apim.api.{}.version.{}", stat_segment(&raw.name, false), stat_segment(&raw.version, true));
    Ok(Api {
        id,
        versioned_context: match raw.unversioned_path {
            true => raw.context.clone(),
            false => versioned_context(&raw.context, &raw.version),
        },
        label: format!("{}:{}", raw.name, raw.version),
        stats_allowed: format!("{stats_prefix}.allowed"),
        stats_prefix,
        name: raw.name,
        version: raw.version,
        context: raw.context,
        lifecycle: raw.lifecycle,
        default_version: raw.default_version,
        endpoints: Endpoints {
            production: raw.endpoints.production.map(Rc::from),
            sandbox: raw.endpoints.sandbox.map(Rc::from),
        },
        backend_path: raw.backend_path,
        api_keys: raw.api_key_in_query || any_api_key_resource,
        api_key_in_query: raw.api_key_in_query,
        websocket_query_credentials: false,
        counts_websocket_frames: raw.count_websocket_frames,
        counts_server_sent_events: raw.count_server_sent_events,
        policy: raw.policy,
        resources,
        source_id: None,
        key_managers: raw.key_manager_ids,
    })
}

/// Sets each resource's [`Resource::cors_methods`]: the methods of its template that
/// `allow_methods` allows (`*` or the method itself; `None`: every method), in configuration
/// order, one shared string per template.
fn join_cors_methods(resources: &mut [Resource], allow_methods: Option<&[String]>) {
    let allowed =
        |method: &str| allow_methods.is_none_or(|list| list.iter().any(|allowed| allowed == "*" || allowed == method));
    let mut joined: Vec<Rc<str>> = Vec::with_capacity(resources.len());
    for (index, resource) in resources.iter().enumerate() {
        let earlier = resources.iter().zip(&joined).take(index).find(|(other, _)| other.template == resource.template);
        if let Some((_, shared)) = earlier {
            joined.push(Rc::clone(shared));
            continue;
        }
        let mut methods: Vec<&str> = Vec::new();
        for other in resources.iter().filter(|other| other.template == resource.template) {
            if allowed(&other.method) && !methods.contains(&other.method.as_str()) {
                methods.push(&other.method);
            }
        }
        joined.push(Rc::from(methods.join(",")));
    }
    for (resource, methods) in resources.iter_mut().zip(joined) {
        resource.cors_methods = methods;
    }
}

/// The base paths an API is served on: `<context>/<version>` (or the context with `{version}`
/// substituted) and, with `default_version`, the context alone; an API without its version in
/// the path, its context alone.
fn api_base_paths(field: &str, api: &Api) -> Result<Vec<String>, ConfigError> {
    // Served at its context alone (`RawApi::unversioned_path`: no other API's versioned context is
    // its context).
    if api.versioned_context == api.context {
        return Ok(vec![api.context.clone()]);
    }
    let mut bases = Vec::new();
    if api.context.contains("{version}") {
        bases.push(api.context.replace("{version}", &api.version));
        if api.default_version {
            let without: Vec<&str> =
                api.context.split('/').filter(|segment| !segment.is_empty() && *segment != "{version}").collect();
            if without.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.default_version"),
                    "a context of only {version} cannot have a default version",
                ));
            }
            bases.push(format!("/{}", without.join("/")));
        }
    } else {
        bases.push(format!("{}/{}", api.context, api.version));
        if api.default_version {
            bases.push(api.context.clone());
        }
    }
    Ok(bases)
}
