//! Routing: which API and resource a request is for, and what to do with it. [`decide`] is a pure
//! function of the routing table and what the request shows: forward (and where), answer a CORS
//! preflight, let the request pass untouched, or deny with a fault. The table is compiled in
//! [`table`]; paths are normalized and templates matched in [`matcher`].

pub mod matcher;
pub mod query;
pub mod table;

use std::borrow::Cow;
use std::rc::Rc;

use crate::catalogue::{Fault, FaultId};
use crate::schema::Unmatched;
use crate::vocab::{ApiId, Lifecycle, ResourceId};
use matcher::Specificity;
pub use table::{Api, Resource, RoutingSettings, Table};

/// What the decision needs from a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, with its query string.
    pub path: &'a str,
    /// `Access-Control-Request-Method` (a CORS preflight carries it with `OPTIONS`).
    pub access_control_request_method: Option<&'a str>,
}

/// Where a matched request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub api: ApiId,
    pub resource: ResourceId,
    /// An open resource (no security): production traffic, as in WSO2.
    pub open: bool,
    /// The Envoy cluster of the endpoint: an open resource's production endpoint (`None` when the
    /// API has none: refused after throttling, as API-M's `_production_key_error_` runs after its
    /// handlers); `None` for a secured resource, whose credential's key type picks it.
    pub cluster: Option<Rc<str>>,
    /// The `:path` for the upstream, when rewriting is on.
    pub upstream_path: Option<String>,
}

/// The API a request matched, and its resource when one matched too: what a refusal after the
/// API matched is counted and logged under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    pub api: ApiId,
    pub resource: Option<ResourceId>,
}

impl Forward {
    /// The API and resource forwarded to.
    pub fn matched(&self) -> Matched {
        Matched { api: self.api, resource: Some(self.resource) }
    }
}

/// What routing needs besides the table: the settings and the gateway's answers to what matches
/// nothing.
#[derive(Clone, Copy, Debug)]
pub struct Router<'a> {
    pub table: &'a Table,
    pub settings: &'a RoutingSettings,
    pub unmatched: Unmatched,
    /// CORS is configured: preflights of known resources are answered by the gateway.
    pub answers_preflights: bool,
    /// The control plane's APIs are not loaded yet, and the seconds within which a load is tried
    /// again: a request that matches no API may be for one of them, so it is answered 503
    /// (`apis_not_loaded`, with `Retry-After`) whatever `unmatched` says, never let through or
    /// told that its API does not exist.
    pub apis_pending: Option<u64>,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send upstream.
    Forward(Forward),
    /// Answer a CORS preflight for a resource that takes the requested method, allowing the
    /// methods of that resource's path template (as WSO2's `CORSRequestHandler` does).
    Preflight { methods: Vec<String> },
    /// Matches no API and the configuration lets such requests through.
    PassThrough,
    /// Answer with a fault; `matched` is what the request matched before it was refused (`None`
    /// when it matched no API).
    Deny { fault: Fault, matched: Option<Matched> },
}

impl Verdict {
    /// Refuses a request that matched no API.
    fn deny(id: FaultId) -> Verdict {
        Verdict::Deny { fault: Fault::new(id), matched: None }
    }

    /// Refuses a request for an API (and resource) it matched.
    fn deny_at(id: FaultId, api: ApiId, resource: Option<ResourceId>) -> Verdict {
        Verdict::Deny { fault: Fault::new(id), matched: Some(Matched { api, resource }) }
    }
}

/// Decides what to do with a request.
pub fn decide(router: Router<'_>, request: &RequestView<'_>) -> Verdict {
    let Router { table, settings, unmatched, answers_preflights, apis_pending } = router;
    // A path that cannot be matched safely is refused whatever API it names, even when unmatched
    // requests pass through: otherwise `/other/../pizzashack/1.0.0/admin` would skip the policy.
    let Ok(path) = matcher::normalize(request.path) else {
        return Verdict::deny(FaultId::NoMatchingResource);
    };
    let depth_limit = table.max_base_depth.min(path.segments.len());
    // One string holds every candidate base path: `/a/b/c` and where `/a`, `/a/b` end in it.
    let mut bases = String::new();
    let mut ends = Vec::with_capacity(depth_limit);
    for segment in path.segments.iter().take(depth_limit) {
        bases.push('/');
        bases.push_str(segment);
        ends.push(bases.len());
    }
    let matched = (1..=depth_limit).rev().find_map(|depth| {
        let base = bases.get(..*ends.get(depth - 1)?)?;
        table.base_paths.get(base).map(|&id| (id, depth))
    });
    let Some((api_id, depth)) = matched else {
        return match unmatched {
            _ if apis_pending.is_some() => Verdict::Deny {
                fault: Fault { retry_after_s: apis_pending, ..Fault::new(FaultId::ApisNotLoaded) },
                matched: None,
            },
            Unmatched::PassThrough => Verdict::PassThrough,
            Unmatched::Fault => Verdict::deny(FaultId::NotFound),
        };
    };
    let Some(api) = table.api(api_id) else {
        return Verdict::deny(FaultId::NotFound);
    };
    if api.lifecycle == Lifecycle::Blocked {
        return Verdict::deny_at(FaultId::ApiBlocked, api_id, None);
    }

    let below = path.segments.get(depth..).unwrap_or_default();
    let mut best: Option<(Specificity, ResourceId)> = None;
    let mut path_matched = false;
    for resource in &api.resources {
        let Some(specificity) = resource.template.matches(below) else {
            continue;
        };
        path_matched = true;
        if resource.method != request.method {
            continue;
        }
        if best.as_ref().is_none_or(|(current, _)| specificity > *current) {
            best = Some((specificity, resource.id));
        }
    }
    let Some((_, resource_id)) = best else {
        let preflight = request.access_control_request_method.filter(|_| request.method == "OPTIONS");
        if let Some(requested) = preflight.filter(|_| path_matched && answers_preflights) {
            if let Some(methods) = preflight_methods(&api.resources, below, requested) {
                return Verdict::Preflight { methods };
            }
        }
        return Verdict::deny_at(FaultId::NoMatchingResource, api_id, None);
    };
    let Some(resource) = api.resource(resource_id) else {
        return Verdict::deny_at(FaultId::NoMatchingResource, api_id, None);
    };

    // Open resources are production traffic, as in WSO2; secured ones get their endpoint from
    // the key type once the credential is verified.
    let open = resource.security.is_empty();
    let cluster = if open { api.endpoints.production.clone() } else { None };
    let upstream_path = settings.rewrite_path.then(|| {
        // Runs of `/` are collapsed: the filter matched them as one, and a path starting with
        // `//` would read as a network-path reference (`//host/x`) to some backends.
        let mut upstream = collapse_slashes(&[&api.backend_path, path.raw_after(depth)]);
        if upstream.is_empty() {
            upstream.push('/');
        }
        if let Some(query) = path.query {
            upstream.push('?');
            upstream.push_str(query);
        }
        upstream
    });
    Verdict::Forward(Forward { api: api_id, resource: resource_id, open, cluster, upstream_path })
}

/// The methods a preflight for `requested` may announce: those of the path template that
/// `requested` matches best, in configuration order; `None` when no resource takes `requested`
/// there (WSO2 answers such a preflight as any unmatched request).
fn preflight_methods(resources: &[Resource], below: &[Cow<'_, str>], requested: &str) -> Option<Vec<String>> {
    let mut best: Option<(Specificity, &Resource)> = None;
    for resource in resources.iter().filter(|resource| resource.method == requested) {
        let Some(specificity) = resource.template.matches(below) else {
            continue;
        };
        if best.as_ref().is_none_or(|(current, _)| specificity > *current) {
            best = Some((specificity, resource));
        }
    }
    let (_, chosen) = best?;
    let mut methods: Vec<String> = Vec::new();
    for resource in resources.iter().filter(|resource| resource.template == chosen.template) {
        if !methods.contains(&resource.method) {
            methods.push(resource.method.clone());
        }
    }
    Some(methods)
}

/// The pieces joined, each run of `/` as one (also where one piece ends and the next begins).
fn collapse_slashes(pieces: &[&str]) -> String {
    let mut out = String::with_capacity(pieces.iter().map(|piece| piece.len()).sum());
    for c in pieces.iter().flat_map(|piece| piece.chars()) {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RawConfig;

    /// What routing gets from a configuration: its table, settings and answers.
    struct Config {
        routes: Table,
        settings: RoutingSettings,
        unmatched: Unmatched,
        answers_preflights: bool,
    }

    impl Config {
        fn from_json(json: &[u8]) -> Result<Config, crate::schema::ConfigError> {
            let raw: RawConfig = serde_json::from_slice(json).expect("well-formed test JSON");
            Ok(Config {
                answers_preflights: raw.errors.cors.is_some(),
                unmatched: raw.unmatched,
                settings: RoutingSettings::compile(raw.routing)?,
                routes: Table::compile(raw.apis, &|_| true)?,
            })
        }

        fn router(&self) -> Router<'_> {
            Router {
                table: &self.routes,
                settings: &self.settings,
                unmatched: self.unmatched,
                answers_preflights: self.answers_preflights,
                apis_pending: None,
            }
        }
    }

    fn decide_with(config: &Config, request: &RequestView<'_>) -> Verdict {
        decide(config.router(), request)
    }

    const CONFIG: &str = r#"{
        "errors": {"cors": {"allow_origins": ["*"]}},
        "apis": [
            {"name": "PizzaShackAPI", "context": "/pizzashack", "version": "1.0.0",
             "endpoints": {"production": "pizza"}, "backend_path": "/api", "security": [],
             "resources": [
                {"method": "GET", "path": "/menu"},
                {"method": "POST", "path": "/order"},
                {"method": "GET", "path": "/order/{orderId}"},
                {"method": "GET", "path": "/order/latest"},
                {"method": "GET", "path": "/secure", "security": ["oauth2", "api_key"]},
                {"method": "DELETE", "path": "/order/{orderId}"}
             ]},
            {"name": "Legacy", "context": "/legacy", "version": "1.0.0", "lifecycle": "BLOCKED",
             "endpoints": {"production": "legacy"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "Old", "context": "/old", "version": "1.0.0", "lifecycle": "RETIRED",
             "endpoints": {"production": "old"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "Nested", "context": "/pizzashack/1.0.0/extra", "version": "v2", "security": [],
             "endpoints": {"sandbox": "nested"}, "resources": [{"method": "GET", "path": "/*"}]}
        ]}"#;

    fn config() -> Config {
        Config::from_json(CONFIG.as_bytes()).unwrap()
    }

    fn decide_get(config: &Config, path: &str) -> Verdict {
        decide_with(config, &RequestView { method: "GET", path, ..Default::default() })
    }

    fn denied_with(verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Deny { fault, .. } => fault.code,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    fn denied_at(verdict: Verdict) -> Option<Matched> {
        match verdict {
            Verdict::Deny { matched, .. } => matched,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    fn forwarded(verdict: Verdict) -> Forward {
        match verdict {
            Verdict::Forward(forward) => forward,
            other => panic!("expected forward, got {other:?}"),
        }
    }

    #[test]
    fn matches_api_and_resource_and_rewrites_the_path() {
        let config = config();
        let forward = forwarded(decide_get(&config, "/pizzashack/1.0.0/menu?size=large"));
        assert_eq!(forward.cluster.as_deref(), Some("pizza"));
        assert_eq!(config.routes.api(forward.api).unwrap().label, "PizzaShackAPI:1.0.0");
        assert_eq!(forward.upstream_path.as_deref(), Some("/api/menu?size=large"));
        let forward = forwarded(decide_get(&config, "/pizzashack/1.0.0/order/42"));
        assert_eq!(forward.resource, ResourceId(2));
        let forward = forwarded(decide_get(&config, "/pizzashack/1.0.0/order/latest"));
        assert_eq!(forward.resource, ResourceId(3), "literal beats parameter");
    }

    #[test]
    fn unknown_api_is_404_and_unknown_resource_or_method_is_900906() {
        let config = config();
        assert_eq!(denied_with(decide_get(&config, "/nothing/1.0.0/menu")), 404);
        assert_eq!(denied_with(decide_get(&config, "/pizzashack/2.0.0/menu")), 404);
        assert_eq!(denied_with(decide_get(&config, "/pizzashack")), 404);
        assert_eq!(denied_with(decide_get(&config, "/pizzashack/1.0.0/drinks")), 900906);
        assert_eq!(denied_with(decide_get(&config, "/pizzashack/1.0.0/order")), 900906, "wrong method");
        assert_eq!(denied_with(decide_get(&config, "/pizzashack/1.0.0")), 900906);
    }

    /// WSO2's API blocking condition names an API by its versioned context, `/v1/tpl` for the
    /// context `/{version}/tpl`: a configuration that blocks it loads, and the condition names it.
    #[test]
    fn a_version_template_context_is_named_by_its_versioned_context() {
        let fixture = crate::auth::fixture::compile(
            r#"{"apis": [{"name": "Tpl", "context": "/{version}/tpl", "version": "v1",
                "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/x"}]}],
                "blocking": [{"api": "/v1/tpl"}]}"#,
        );
        let api = &fixture.routes.apis[0];
        assert!(api.is_named_by("/v1/tpl") && api.is_named_by("Tpl:v1"));
        assert!(!api.is_named_by("/{version}/tpl/v1"));
    }

    #[test]
    fn a_refusal_after_an_api_matched_names_that_api_and_only_then() {
        let config = config();
        let api = |label: &str| config.routes.labels.get(label).copied();
        let pizza = api("PizzaShackAPI:1.0.0");
        let at = |api: Option<ApiId>| api.map(|api| Matched { api, resource: None });
        assert_eq!(denied_at(decide_get(&config, "/legacy/1.0.0/anything")), at(api("Legacy:1.0.0")));
        assert_eq!(denied_at(decide_get(&config, "/pizzashack/1.0.0/order")), at(pizza), "wrong method");
        assert_eq!(denied_at(decide_get(&config, "/pizzashack/1.0.0/drinks")), at(pizza), "unknown resource");
        assert_eq!(denied_at(decide_get(&config, "/nothing/1.0.0/menu")), None);
        assert_eq!(denied_at(decide_get(&config, "/old/1.0.0/anything")), None, "retired is not deployed");
        assert_eq!(denied_at(decide_get(&config, "/pizzashack/1.0.0/%2e%2e/menu")), None, "not matched safely");
    }

    #[test]
    fn lifecycle_states() {
        let config = config();
        assert_eq!(denied_with(decide_get(&config, "/legacy/1.0.0/anything")), 700700);
        assert_eq!(denied_with(decide_get(&config, "/legacy/1.0.0")), 700700);
        assert_eq!(denied_with(decide_get(&config, "/old/1.0.0/anything")), 404, "retired is not deployed");
    }

    #[test]
    fn longest_base_path_wins_and_keyless_traffic_has_no_endpoint_without_a_production_one() {
        let config = config();
        // `/pizzashack/1.0.0/extra/v2` is the Nested API (sandbox only), not PizzaShack's `/extra`:
        // open, with no production endpoint (refused after throttling, by the stream).
        let forward = forwarded(decide_get(&config, "/pizzashack/1.0.0/extra/v2/x"));
        let nested = config.routes.labels.get("Nested:v2").copied();
        assert_eq!(Some(forward.matched()), nested.map(|api| Matched { api, resource: Some(ResourceId(0)) }));
        assert!(forward.open);
        assert_eq!(forward.cluster, None);
    }

    #[test]
    fn an_exact_secured_resource_is_not_shadowed_by_an_open_wildcard() {
        let json = r#"{"apis":[{"name":"F","context":"/f","version":"1","endpoints":{"production":"c"},
            "resources":[{"method":"GET","path":"/files"},{"method":"GET","path":"/files/*","security":[]}]}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(forwarded(decide_get(&config, "/f/1/files")).cluster, None, "the secured exact match");
        assert!(matches!(decide_get(&config, "/f/1/files/readme"), Verdict::Forward(_)));
    }

    /// `%3B` is a `;` to a backend that decodes the path before it strips `;` parameters (as
    /// `..%3B` is `..` to it): `/admin%3Bx` is its `/admin`. Matched as the segment `admin;x`, it
    /// would reach the secured `/admin` through the open `/*`; it is refused as `%2F` is.
    #[test]
    fn an_encoded_semicolon_cannot_reach_a_secured_resource_through_an_open_one() {
        let json = r#"{"apis":[{"name":"F","context":"/f","version":"1","endpoints":{"production":"c"},
            "resources":[{"method":"GET","path":"/admin"},{"method":"GET","path":"/*","security":[]}]}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(forwarded(decide_get(&config, "/f/1/admin")).cluster, None, "the secured resource");
        for path in ["/f/1/admin%3Bx", "/f/1/admin%3b", "/f/1/admin%3B;y", "/f/1/x/admin%3B.css"] {
            assert_eq!(denied_with(decide_get(&config, path)), 900906, "{path}");
        }
        assert!(matches!(decide_get(&config, "/f/1/admin;x"), Verdict::Forward(Forward { cluster: None, .. })));
    }

    #[test]
    fn forwarded_paths_never_start_with_a_double_slash() {
        let json = r#"{"apis":[{"name":"A","context":"/a","version":"1","security":[],
            "endpoints":{"production":"c"},"resources":[{"method":"GET","path":"/*"}]}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let forward = forwarded(decide_get(&config, "/a/1//evil.example//x?q=//y"));
        assert_eq!(forward.upstream_path.as_deref(), Some("/evil.example/x?q=//y"));
    }

    #[test]
    fn path_spellings_follow_the_documented_rules() {
        let config = config();
        for path in [
            "/pizzashack/1.0.0/menu/",
            "//pizzashack//1.0.0//menu",
            "/pizzashack/1.0.0/menu;jsessionid=1",
            "/pizzashack/1.0.0/men%75",
        ] {
            assert_eq!(forwarded(decide_get(&config, path)).resource, ResourceId(0), "{path}");
        }
        for path in [
            "/pizzashack/1.0.0/x/../menu",
            "/pizzashack/1.0.0/order%2F42",
            "/other/../pizzashack/1.0.0/menu",
            "/pizzashack/1.0.0/%2e%2e/menu",
            "/pizzashack/1.0.0/MENU",
        ] {
            assert_eq!(denied_with(decide_get(&config, path)), 900906, "{path}");
        }
    }

    #[test]
    fn dangerous_paths_are_refused_even_when_unmatched_requests_pass() {
        let json = CONFIG.replacen('{', r#"{"unmatched": "pass_through","#, 1);
        let config = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(decide_get(&config, "/somewhere/else"), Verdict::PassThrough);
        assert_eq!(denied_with(decide_get(&config, "/somewhere/../pizzashack/1.0.0/secure")), 900906);
    }

    /// Before a control plane's first load of APIs, a request that matches no API may be for one
    /// of them: 503 with `Retry-After`, whatever `unmatched` says. The configuration's own APIs
    /// are served meanwhile.
    #[test]
    fn unmatched_requests_wait_for_the_control_planes_apis() {
        for unmatched in ["fault", "pass_through"] {
            let json = CONFIG.replacen('{', &format!(r#"{{"unmatched": "{unmatched}","#), 1);
            let config = Config::from_json(json.as_bytes()).unwrap();
            let pending = Router { apis_pending: Some(5), ..config.router() };
            let request = RequestView { method: "GET", path: "/elsewhere/1.0.0/menu", ..Default::default() };
            let Verdict::Deny { fault, matched: None } = decide(pending, &request) else { panic!("{unmatched}") };
            assert_eq!((fault.id, fault.code, fault.retry_after_s), (FaultId::ApisNotLoaded, 503, Some(5)));
            let known = RequestView { method: "GET", path: "/pizzashack/1.0.0/menu", ..Default::default() };
            assert!(matches!(decide(pending, &known), Verdict::Forward(_)), "{unmatched}");
            assert_ne!(decide(config.router(), &request), decide(pending, &request), "{unmatched}: once loaded");
        }
    }

    #[test]
    fn secured_resources_wait_for_the_credential_to_pick_the_endpoint() {
        let config = config();
        let forward = forwarded(decide_get(&config, "/pizzashack/1.0.0/secure"));
        assert_eq!(forward.cluster, None);
        assert_eq!(forward.resource, ResourceId(4));
    }

    #[test]
    fn cors_preflight_is_answered_for_known_paths_only() {
        let config = config();
        let preflight = |path| RequestView { method: "OPTIONS", path, access_control_request_method: Some("GET") };
        assert_eq!(
            decide_with(&config, &preflight("/pizzashack/1.0.0/menu")),
            Verdict::Preflight { methods: vec!["GET".to_string()] }
        );
        assert_eq!(denied_with(decide_with(&config, &preflight("/pizzashack/1.0.0/nope"))), 900906);
        let plain_options = RequestView { method: "OPTIONS", path: "/pizzashack/1.0.0/menu", ..Default::default() };
        assert_eq!(denied_with(decide_with(&config, &plain_options)), 900906);
    }

    #[test]
    fn a_preflight_is_answered_for_a_method_the_resource_takes_and_allows_that_templates_methods() {
        let config = config();
        let preflight = |path, method| match decide_with(
            &config,
            &RequestView { method: "OPTIONS", path, access_control_request_method: Some(method) },
        ) {
            Verdict::Preflight { methods } => methods.join(","),
            Verdict::Deny { fault, .. } => fault.code.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(preflight("/pizzashack/1.0.0/menu", "DELETE"), "900906", "no resource takes DELETE there");
        assert_eq!(preflight("/pizzashack/1.0.0/order/42", "GET"), "GET,DELETE");
        assert_eq!(preflight("/pizzashack/1.0.0/order/42", "DELETE"), "GET,DELETE");
        assert_eq!(preflight("/pizzashack/1.0.0/order/latest", "GET"), "GET", "the literal template is the best");
        assert_eq!(preflight("/pizzashack/1.0.0/order/latest", "DELETE"), "GET,DELETE", "only the parameter takes it");
        assert_eq!(preflight("/pizzashack/1.0.0/order", "POST"), "POST");
        assert_eq!(preflight("/pizzashack/1.0.0/order", "PUT"), "900906");
    }

    #[test]
    fn rewrite_can_be_turned_off_and_root_paths_stay_absolute() {
        let json = CONFIG.replacen('{', r#"{"routing": {"rewrite_path": false},"#, 1);
        let config = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(forwarded(decide_get(&config, "/pizzashack/1.0.0/menu")).upstream_path, None);
        let json = r#"{"apis":[{"name":"R","context":"/r","version":"1","security":[],
            "endpoints":{"production":"c"},"resources":[{"method":"GET","path":"/"}]}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(forwarded(decide_get(&config, "/r/1?x=1")).upstream_path.as_deref(), Some("/?x=1"));
    }
}
