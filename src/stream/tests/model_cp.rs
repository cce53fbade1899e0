//! A seeded, model-based differential campaign of the control plane's authorization: a random
//! API-M directory served as `/internal/data/v1`'s answers through the filter's real load and
//! lookup paths, random requests, and each decision compared with an independent model written
//! from README.md, docs/HOWTO.md ("Connect to WSO2 API Manager") and docs/ERROR-CODES.md; then the
//! directory changes between two loads and the requests after the second load must see it.

use super::gateways::{Gateway, NOW};
use super::*;
use crate::host::fuzz::{each_case, Rng};
use serde_json::{json, Value};

/// Requests per directory (and per load in the second phase).
const REQUESTS: usize = 60;
const SECRET: &str = "model-campaign-hmac-secret-0123456789";
const STATES: [&str; 7] =
    ["UNBLOCKED", "BLOCKED", "PROD_ONLY_BLOCKED", "ON_HOLD", "REJECTED", "TIER_UPDATE_PENDING", "DELETE_PENDING"];
const STATUSES: [&str; 6] = ["PUBLISHED", "PROTOTYPED", "DEPRECATED", "BLOCKED", "CREATED", "RETIRED"];
/// (name, version): Alpha has two versions, so default versions matter.
const APIS: [(&str, &str); 3] = [("Alpha", "1.0.0"), ("Alpha", "2.0.0"), ("Beta", "1.0.0")];
const PATTERNS: [&str; 4] = ["/menu", "/order/*", "/items/{id}", "/*"];
const SCHEMES: [&str; 5] = ["Any", "None", "Application", "Application User", "Application_User"];
/// Scope sets of resources and tokens.
const SCOPES: [&[&str]; 4] = [&[], &["read"], &["write"], &["read", "write"]];
/// Client addresses (`source.address` without the port), IPv4-mapped and IPv6 among them.
const CLIENTS: [&str; 5] = ["10.0.0.1", "10.0.0.2", "10.0.0.5", "::ffff:10.0.0.3", "2001:db8::1"];

#[derive(Clone, Debug)]
struct Mapping {
    method: &'static str,
    pattern: &'static str,
    scheme: &'static str,
    scopes: &'static [&'static str],
}

#[derive(Clone, Debug)]
struct ModelApi {
    name: &'static str,
    version: &'static str,
    uuid: String,
    status: &'static str,
    default: bool,
    production: bool,
    sandbox: bool,
    mappings: Vec<Mapping>,
}

#[derive(Clone, Debug)]
struct App {
    uuid: String,
    id: u64,
    name: String,
    owner: String,
    /// Its application policy: `Missing` is one no policy list defines.
    policy: &'static str,
}

#[derive(Clone, Debug)]
struct KeyMap {
    client: String,
    app: usize,
    sandbox: bool,
    /// Its key manager's name: another than the configured one's maps no token of it.
    key_manager: &'static str,
}

/// The directory API-M holds.
#[derive(Clone, Debug)]
struct Model {
    apis: Vec<ModelApi>,
    apps: Vec<App>,
    keys: Vec<KeyMap>,
    /// (app index, api index, state, tier): the tier `Missing` is one no policy list defines.
    subs: Vec<(usize, usize, &'static str, &'static str)>,
    blocked_apis: Vec<usize>,
    blocked_apps: Vec<usize>,
    blocked_users: Vec<String>,
    /// (type, first, last, invert)
    blocked_ip: Option<(&'static str, &'static str, &'static str, bool)>,
}

fn random_model(rng: &mut Rng) -> Model {
    let apis: Vec<ModelApi> = APIS
        .iter()
        .enumerate()
        .map(|(i, (name, version))| ModelApi {
            name,
            version,
            uuid: format!("api-{i}"),
            status: if rng.chance(2) { "PUBLISHED" } else { STATUSES[rng.below(STATUSES.len())] },
            default: rng.chance(2) && i != 1,
            production: true,
            sandbox: rng.chance(2),
            mappings: PATTERNS
                .iter()
                .filter(|pattern| if **pattern == "/*" { rng.chance(4) } else { !rng.chance(4) })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|pattern| Mapping {
                    method: ["GET", "POST"][rng.below(2)],
                    pattern,
                    scheme: SCHEMES[rng.below(SCHEMES.len())],
                    scopes: if rng.chance(2) { &[] } else { SCOPES[rng.below(SCOPES.len())] },
                })
                .collect(),
        })
        .collect();
    let mut apis = apis;
    // An API with a sandbox endpoint only, now and then.
    for api in &mut apis {
        if api.sandbox && rng.chance(4) {
            api.production = false;
        }
    }
    if !apis[0].default && rng.chance(2) {
        apis[1].default = true;
    }
    let apps: Vec<App> = (0..3)
        .map(|i| App {
            uuid: format!("app-{i}"),
            id: 10 + i as u64,
            name: format!("App{i}"),
            owner: format!("owner{i}"),
            policy: if rng.chance(12) { "Missing" } else { "Unlimited" },
        })
        .collect();
    let mut keys = Vec::new();
    for app in 0..apps.len() {
        for sandbox in [false, true] {
            if !rng.chance(4) {
                let key_manager = if rng.chance(8) { "Other KM" } else { "Resident Key Manager" };
                keys.push(KeyMap {
                    client: format!("c{app}{}", if sandbox { "s" } else { "p" }),
                    app,
                    sandbox,
                    key_manager,
                });
            }
        }
    }
    let mut subs = Vec::new();
    for app in 0..apps.len() {
        for api in 0..apis.len() {
            if !rng.chance(4) {
                let tier = if rng.chance(10) { "Missing" } else { "Gold" };
                subs.push((app, api, *rng.pick(&STATES), tier));
            }
        }
    }
    Model {
        blocked_apis: (0..apis.len()).filter(|_| rng.chance(8)).collect(),
        blocked_apps: (0..apps.len()).filter(|_| rng.chance(8)).collect(),
        blocked_users: if rng.chance(6) {
            vec![["user1", "user1@carbon.super", "user1@wso2.com"][rng.below(3)].to_string()]
        } else {
            Vec::new()
        },
        blocked_ip: if rng.chance(4) {
            let (kind, first, last) = [
                ("IP", "10.0.0.1", ""),
                ("IP", "10.0.0.3", ""),
                ("IPRANGE", "10.0.0.1", "10.0.0.5"),
                ("IPRANGE", "2001:db8::", "2001:db8::ff"),
            ][rng.below(4)];
            Some((kind, first, last, rng.chance(2)))
        } else {
            None
        },
        apis,
        apps,
        keys,
        subs,
    }
}

fn list(items: Vec<Value>) -> String {
    json!({"count": items.len(), "list": items, "pagination": null}).to_string()
}

/// A policy list, or its policy `name` alone (a lookup's answer).
fn policies(fixture: &str, name: Option<&str>) -> String {
    let all: Value = serde_json::from_str(fixture).unwrap();
    let items = all["list"].as_array().unwrap().iter().filter(|policy| name.is_none_or(|name| policy["name"] == name));
    list(items.cloned().collect())
}

fn query<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

impl Model {
    fn api_json(&self, api: &ModelApi) -> Value {
        let mappings: Vec<Value> = api
            .mappings
            .iter()
            .map(|m| {
                json!({"authScheme": m.scheme, "throttlingPolicy": "Unlimited", "httpMethod": m.method,
                "urlPattern": m.pattern, "scopes": m.scopes})
            })
            .collect();
        json!({"uuid": api.uuid, "apiId": 1, "provider": "admin", "name": api.name, "version": api.version,
            "context": format!("/{}/{}", api.name.to_lowercase(), api.version), "policy": null, "apiType": "HTTP",
            "status": api.status, "organization": "carbon.super", "isDefaultVersion": api.default,
            "urlMappings": mappings})
    }

    fn sub_json(&self, (app, api, state, tier): &(usize, usize, &str, &str)) -> Value {
        json!({"subscriptionUUID": format!("s-{app}-{api}"), "subscriptionId": 1, "policyId": tier,
            "apiUUID": self.apis[*api].uuid, "apiId": 1, "applicationUUID": self.apps[*app].uuid,
            "appId": self.apps[*app].id, "subscriptionState": state})
    }

    fn app_json(&self, app: &App) -> Value {
        json!({"uuid": app.uuid, "id": app.id, "name": app.name, "subName": app.owner, "policy": app.policy,
            "tokenType": "JWT", "groupIds": [], "attributes": {}, "organization": "carbon.super"})
    }

    fn key_json(&self, key: &KeyMap) -> Value {
        let app = &self.apps[key.app];
        json!({"applicationId": app.id, "applicationUUID": app.uuid, "consumerKey": key.client,
            "keyType": if key.sandbox { "SANDBOX" } else { "PRODUCTION" }, "keyManager": key.key_manager})
    }

    /// API-M's answer to `path` (full loads and lookups alike).
    fn answer(&self, path: &str) -> String {
        let resource = path.trim_start_matches("/internal/data/v1/");
        let (resource, q) = resource.split_once('?').unwrap_or((resource, ""));
        match resource {
            "apis" => list(self.apis.iter().map(|api| self.api_json(api)).collect()),
            "applications" => list(
                self.apps
                    .iter()
                    .filter(|app| query(q, "appId").is_none_or(|id| id == app.id.to_string() || id == app.uuid))
                    .map(|app| self.app_json(app))
                    .collect(),
            ),
            "subscriptions" => list(
                self.subs
                    .iter()
                    .filter(|(app, api, _, _)| {
                        query(q, "apiUUID").is_none_or(|id| id == self.apis[*api].uuid)
                            && query(q, "applicationUUID").is_none_or(|id| id == self.apps[*app].uuid)
                    })
                    .map(|sub| self.sub_json(sub))
                    .collect(),
            ),
            "application-key-mappings" => list(
                self.keys
                    .iter()
                    .filter(|key| query(q, "consumerKey").is_none_or(|client| client == key.client))
                    .map(|key| self.key_json(key))
                    .collect(),
            ),
            "block" => {
                let ip: Vec<Value> = self
                    .blocked_ip
                    .iter()
                    .map(|(kind, first, last, invert)| match *kind {
                        "IP" => json!({"type": "IP", "fixedIp": first, "invert": invert, "tenantDomain": "carbon.super", "id": 1}),
                        _ => json!({"type": kind, "startingIp": first, "endingIp": last, "invert": invert,
                            "tenantDomain": "carbon.super", "id": 1}),
                    })
                    .collect();
                json!({"api": self.blocked_apis.iter().map(|i| format!("/{}/{}", self.apis[*i].name.to_lowercase(), self.apis[*i].version)).collect::<Vec<_>>(),
                    "application": self.blocked_apps.iter().map(|i| format!("{}:{}", self.apps[*i].owner, self.apps[*i].name)).collect::<Vec<_>>(),
                    "user": self.blocked_users, "ip": ip, "custom": [], "subscription": []})
                .to_string()
            }
            "subscription-policies" => {
                policies(include_str!("../../../tests/cp/fixtures/subscription-policies.json"), query(q, "policyName"))
            }
            "application-policies" => {
                policies(include_str!("../../../tests/cp/fixtures/application-policies.json"), query(q, "policyName"))
            }
            "api-policies" => {
                policies(include_str!("../../../tests/cp/fixtures/api-policies.json"), query(q, "policyName"))
            }
            _ => "[]".into(),
        }
    }
}

/// A random request's credential.
#[derive(Clone, Debug)]
enum Credential {
    None,
    /// client id, scopes, user token, end user
    Token(String, &'static [&'static str], bool, String),
}

#[derive(Clone, Debug)]
struct Request {
    method: &'static str,
    path: String,
    credential: Credential,
    ip: &'static str,
}

fn random_request(rng: &mut Rng, model: &Model) -> Request {
    let api = rng.pick(&model.apis);
    let base = if rng.chance(3) {
        format!("/{}", api.name.to_lowercase())
    } else {
        format!("/{}/{}", api.name.to_lowercase(), api.version)
    };
    let mut rest = *rng.pick(&["/menu", "/order", "/order/1", "/order/1/2", "/items/7", "/items/7/x", "/nope", "/"]);
    let mut method = *rng.pick(&["GET", "POST"]);
    if !api.mappings.is_empty() && rng.chance(2) {
        let mapping = rng.pick(&api.mappings);
        rest = match mapping.pattern {
            "/order/*" => "/order/1",
            "/items/{id}" => "/items/7",
            exact => exact,
        };
        method = mapping.method;
    }
    let mut clients: Vec<String> = model.keys.iter().map(|key| key.client.clone()).collect();
    clients.push("ghost".into());
    let credential = if rng.chance(6) {
        Credential::None
    } else {
        Credential::Token(
            rng.pick(&clients).clone(),
            SCOPES[rng.below(SCOPES.len())],
            rng.chance(3),
            rng.pick(&["user0", "user1"]).to_string(),
        )
    };
    Request { method, path: format!("{base}{rest}"), credential, ip: CLIENTS[rng.below(CLIENTS.len())] }
}

/// How specifically `pattern` matches `path`, compared lexicographically (per segment a literal
/// 4, a parameter 3; then 2 where the pattern ends with the path, 1 for a wildcard's rest), as
/// the filter's documentation of its templates says; `None` when it does not match.
fn matches(pattern: &str, path: &str) -> Option<Vec<u8>> {
    let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
    match pattern {
        "/*" => Some(vec![1]),
        "/order/*" => (segments.first() == Some(&"order")).then(|| vec![4, 1]),
        "/items/{id}" => (segments.len() == 2 && segments[0] == "items").then(|| vec![4, 3, 2]),
        _ => (segments == ["menu"]).then(|| vec![4, 2]),
    }
}

/// The model's decision: `Ok(cluster)` forwarded there, or `Err((code, status))`.
fn decide(model: &Model, request: &Request) -> Result<String, (u32, u16)> {
    // Routing: `/<context>/<version>/...` or a default version's `/<context>/...`. CREATED and
    // RETIRED APIs are not served (an unknown API: 404).
    let served = |api: &ModelApi| !matches!(api.status, "CREATED" | "RETIRED");
    let explicit = model.apis.iter().enumerate().find_map(|(i, api)| {
        let rest = request.path.strip_prefix(&format!("/{}/{}/", api.name.to_lowercase(), api.version))?;
        served(api).then(|| (i, format!("/{rest}")))
    });
    let found = explicit.or_else(|| {
        model.apis.iter().enumerate().find_map(|(i, api)| {
            let rest = request.path.strip_prefix(&format!("/{}/", api.name.to_lowercase()))?;
            (api.default && served(api)).then(|| (i, format!("/{rest}")))
        })
    });
    let Some((index, rest)) = found else { return Err((404, 404)) };
    let api = &model.apis[index];
    if api.status == "BLOCKED" {
        return Err((700700, 503));
    }
    let best = api
        .mappings
        .iter()
        .filter(|m| m.method == request.method)
        .filter_map(|m| Some((matches(m.pattern, &rest)?, m)))
        .max_by(|a, b| a.0.cmp(&b.0));
    let Some((_, mapping)) = best else {
        return Err((900906, 403));
    };
    let mut app = None;
    let mut sandbox = false;
    let mut user = None;
    let mut missing_policy = false;
    if mapping.scheme != "None" {
        let Credential::Token(client, scope, user_token, end_user) = &request.credential else {
            return Err((900902, 401));
        };
        // A valid token of a client API-M maps to no application: WSO2's subscription validation
        // (`validateSubscription`: no key mapping, application or subscription) answers 900908.
        // A mapping of another key manager maps no token of the configured one.
        let Some(key) =
            model.keys.iter().find(|key| &key.client == client && key.key_manager == "Resident Key Manager")
        else {
            return Err((900908, 403));
        };
        sandbox = key.sandbox;
        let sub = model.subs.iter().find(|(a, s, _, _)| *a == key.app && *s == index);
        missing_policy = sub.is_some_and(|sub| sub.3 == "Missing") || model.apps[key.app].policy == "Missing";
        match sub.map(|sub| sub.2) {
            None => return Err((900908, 403)),
            Some("BLOCKED") => return Err((900907, 401)),
            Some("PROD_ONLY_BLOCKED") if !key.sandbox => return Err((900907, 401)),
            Some("ON_HOLD" | "REJECTED") => return Err((900909, 401)),
            Some(_) => {}
        }
        // The token type after the subscription, as the filter's authorize.rs orders them (WSO2's
        // opaque-token KeyValidationHandler checks it before; the report notes the difference).
        if (mapping.scheme == "Application" && *user_token)
            || ((mapping.scheme.starts_with("Application_") || mapping.scheme == "Application User") && !user_token)
        {
            return Err((900905, 401));
        }
        if !mapping.scopes.is_empty() && !mapping.scopes.iter().any(|wanted| scope.contains(wanted)) {
            return Err((900910, 403));
        }
        app = Some(key.app);
        // The user WSO2's throttle handler reads is the authentication context's username: a
        // JWT's `sub`, for an application token too (API-M puts the owner there).
        user = Some(end_user.clone());
    }
    // Blocking conditions (throttling's first step).
    // `IP` blocks its address, `IPRANGE` the addresses between its ends (without them), of its
    // family (an IPv4-mapped address is its IPv4 one); `invert` every other address.
    let client = request.ip.parse::<std::net::IpAddr>().unwrap().to_canonical();
    let ip_blocked = model.blocked_ip.as_ref().is_some_and(|(kind, first, last, invert)| {
        let first = first.parse::<std::net::IpAddr>().unwrap();
        let inside = match *kind {
            "IP" => client == first,
            _ => {
                let last = last.parse::<std::net::IpAddr>().unwrap();
                first.is_ipv4() == client.is_ipv4() && first < client && client < last
            }
        };
        inside != *invert
    });
    // A user condition names a user of the tenant (`control_plane.tenant`, carbon.super): an
    // unqualified name is the super tenant's.
    let qualified = |name: &str| if name.contains('@') { name.to_string() } else { format!("{name}@carbon.super") };
    if model.blocked_apis.contains(&index)
        || app.is_some_and(|app| model.blocked_apps.contains(&app))
        || user.is_some_and(|user| model.blocked_users.iter().any(|blocked| qualified(blocked) == qualified(&user)))
        || ip_blocked
    {
        return Err((900805, 429));
    }
    // A subscription tier or application policy API-M does not have either (looked up by name,
    // answered with an empty list): 900809, never unthrottled.
    if missing_policy {
        return Err((900809, 500));
    }
    // The key type's endpoint: WSO2's `_sandbox_key_error_` and `_production_key_error_` run in
    // the API's in-sequence, after the throttle handler (a blocked client gets 900805 first).
    if (sandbox && !api.sandbox) || (!sandbox && !api.production) {
        return Err((900901, 403));
    }
    let cluster = format!("{}-{}", api.name.to_lowercase(), api.version);
    Ok(if sandbox { format!("{cluster}-sandbox") } else { cluster })
}

fn config(model: &Model) -> String {
    let mut endpoints = serde_json::Map::new();
    for api in &model.apis {
        let cluster = format!("{}-{}", api.name.to_lowercase(), api.version);
        let mut clusters = json!({});
        if api.production {
            clusters["production"] = json!(cluster);
        }
        if api.sandbox {
            clusters["sandbox"] = json!(format!("{cluster}-sandbox"));
        }
        endpoints.insert(format!("{}:{}", api.name, api.version), clusters);
    }
    json!({"key_managers": [{"name": "Resident Key Manager", "issuer": "https://km", "algorithms": ["HS256"],
            "hmac_secret": SECRET}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5,
            "endpoints": endpoints}})
    .to_string()
}

fn token(client: &str, scopes: &[&str], user_token: bool, user: &str) -> String {
    let mut claims = json!({"iss": "https://km", "exp": NOW + 3600, "client_id": client, "sub": user,
        "aut": if user_token { "APPLICATION_USER" } else { "APPLICATION" }});
    if !scopes.is_empty() {
        claims["scope"] = json!(scopes.join(" "));
    }
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// The filter's decision on `request`, answering its lookups from `model`.
fn filter(
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    model: &Model,
    request: &Request,
    now: u64,
) -> Result<String, (u32, u16)> {
    let mut host = FakeHost::request(&[(":method", request.method), (":path", &request.path)]);
    host.now = now;
    host.shared = std::mem::take(shared);
    host.properties.insert(
        "source.address".into(),
        if request.ip.contains(':') { format!("[{}]:5000", request.ip) } else { format!("{}:5000", request.ip) }
            .into_bytes(),
    );
    if let Credential::Token(client, scope, user_token, user) = &request.credential {
        host.request
            .insert("authorization".into(), format!("Bearer {}", token(client, scope, *user_token, user)).into_bytes());
    }
    through_the_gateway(gateway, shared, host, |path| model.answer(path))
}

/// Runs `host`'s request through the gateway, answering each control-plane lookup it makes with
/// `answer(path)`: the cluster it was forwarded to, or its fault's code and status. The shared
/// data goes back to `shared`.
pub(super) fn through_the_gateway(
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    mut host: FakeHost,
    mut answer: impl FnMut(&str) -> String,
) -> Result<String, (u32, u16)> {
    let mut stream = Stream::new(Rc::clone(&gateway.config), Rc::clone(&gateway.worker));
    stream.on_request_headers(&mut host, true);
    let mut answered = 0;
    while host.sent.is_none() && !host.resumed && answered < host.dispatched.len() {
        answered += 1;
        let (_, headers, _) = &host.dispatched[answered - 1];
        let path = headers.iter().find(|(name, _)| name == ":path").map(|(_, v)| v.clone()).unwrap();
        let body = answer(&path).into_bytes();
        stream.on_call_response(&mut host, answered as u32, Answer::Http { status: 200, body });
    }
    *shared = std::mem::take(&mut host.shared);
    match host.sent {
        Some((status, _, body)) => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let code = body["code"].as_str().and_then(|code| code.parse().ok()).unwrap_or(u32::from(status));
            Err((code, status))
        }
        None => Ok(host.req("x-apim-cluster").to_string()),
    }
}

/// Loads `model` through the background's real full load.
fn load(gateway: &Gateway, shared: &mut HashMap<String, (Vec<u8>, u32)>, model: &Model, now: u64) {
    let mut host = FakeHost { shared: std::mem::take(shared), now, ..Default::default() };
    super::gateways::tick_answering(&mut host, &gateway.config, &gateway.worker, |_, path| Answer::Http {
        status: 200,
        body: model.answer(path).into_bytes(),
    });
    *shared = std::mem::take(&mut host.shared);
}

/// Sends `requests` random requests at `now`, each decided by the filter and the model alike.
fn compare(
    case: usize,
    model: &Model,
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    rng: &mut Rng,
    now: u64,
    tally: &mut HashMap<String, usize>,
) {
    for _ in 0..REQUESTS {
        let request = random_request(rng, model);
        let expected = decide(model, &request);
        let got = filter(gateway, shared, model, &request, now);
        let class = match &expected {
            Ok(_) => "forwarded".to_string(),
            Err((code, _)) => code.to_string(),
        };
        *tally.entry(class).or_default() += 1;
        assert_eq!(got, expected, "case {case}: {request:?}\n{model:#?}");
    }
}

#[test]
fn the_control_planes_authorization_agrees_with_the_documented_model() {
    let mut tally = HashMap::new();
    each_case("model-cp", 60, 45, |rng, case| {
        let model = random_model(rng);
        let mut shared = HashMap::new();
        let gateway = Gateway::configure(&mut shared, &config(&model));
        load(&gateway, &mut shared, &model, NOW);
        compare(case, &model, &gateway, &mut shared, rng, NOW, &mut tally);
    });
    println!("model-cp classes: {tally:?}");
    for class in [
        "forwarded",
        "404",
        "700700",
        "900902",
        "900905",
        "900906",
        "900907",
        "900908",
        "900909",
        "900910",
        "900805",
        "900809",
        "900901",
    ] {
        assert!(tally.get(class).is_some_and(|count| *count > 0), "{class} never decided: {tally:?}");
    }
}

/// API-M's directory changes between two full loads: a subscription blocked, an API retired, an
/// application deleted (with its subscriptions and keys, as API-M deletes them), a key mapping
/// removed. Requests after the second load (one `refresh_s` later) see the new directory.
fn changed(model: &Model, rng: &mut Rng) -> Model {
    let mut next = model.clone();
    if let Some(sub) = next.subs.iter_mut().find(|sub| sub.2 != "BLOCKED") {
        sub.2 = "BLOCKED";
    }
    let api = rng.below(next.apis.len());
    next.apis[api].status = "RETIRED";
    let app = rng.below(next.apps.len());
    next.subs.retain(|sub| sub.0 != app);
    next.keys.retain(|key| key.app != app);
    next.apps[app].uuid = format!("deleted-{app}");
    next.apps.retain(|other| !other.uuid.starts_with("deleted-"));
    // Indices of apps shift: renumber what points past the deleted one.
    for sub in &mut next.subs {
        sub.0 -= usize::from(sub.0 > app);
    }
    for key in &mut next.keys {
        key.app -= usize::from(key.app > app);
    }
    next.blocked_apps = next.blocked_apps.iter().filter(|i| **i != app).map(|i| i - usize::from(*i > app)).collect();
    if !next.keys.is_empty() {
        let key = rng.below(next.keys.len());
        next.keys.remove(key);
    }
    // What comes back or comes new: a subscription where there was none, a key mapping of a
    // client id looked up before and not found, a blocked subscription unblocked, the default
    // version moved, the blocking conditions lifted, a blocked API published again.
    if rng.chance(2) {
        let missing = (0..next.apps.len())
            .flat_map(|app| (0..next.apis.len()).map(move |api| (app, api)))
            .find(|(app, api)| !next.subs.iter().any(|sub| sub.0 == *app && sub.1 == *api));
        if let Some((app, api)) = missing {
            next.subs.push((app, api, "UNBLOCKED", "Gold"));
        }
    }
    if rng.chance(2) && !next.apps.is_empty() {
        next.keys.push(KeyMap { client: "ghost".into(), app: 0, sandbox: false, key_manager: "Resident Key Manager" });
    }
    if rng.chance(3) {
        if let Some(sub) = next.subs.iter_mut().rev().find(|sub| sub.2 == "BLOCKED") {
            sub.2 = "UNBLOCKED";
        }
    }
    if rng.chance(3) {
        let (first, second) = (next.apis[0].default, next.apis[1].default);
        next.apis[0].default = second;
        next.apis[1].default = first;
    }
    if rng.chance(3) {
        next.blocked_apis.clear();
        next.blocked_apps.clear();
        next.blocked_users.clear();
        next.blocked_ip = None;
    }
    if let Some(api) = next.apis.iter_mut().find(|api| api.status == "BLOCKED" && rng.chance(2)) {
        api.status = "PUBLISHED";
    }
    next
}

#[test]
fn a_directory_changed_between_two_loads_is_what_the_requests_after_the_second_see() {
    let mut tally = HashMap::new();
    each_case("model-cp-changes", 40, 46, |rng, case| {
        let before = random_model(rng);
        let mut shared = HashMap::new();
        let gateway = Gateway::configure(&mut shared, &config(&before));
        // A second worker of the same Envoy: it serves requests before the change too (its own
        // caches, its own decoded view), and only the first worker loads.
        let other =
            Gateway { config: Rc::clone(&gateway.config), worker: Rc::new(RefCell::new(Worker::new(&gateway.config))) };
        load(&gateway, &mut shared, &before, NOW);
        compare(case, &before, &gateway, &mut shared, rng, NOW, &mut tally);
        compare(case, &before, &other, &mut shared, rng, NOW, &mut tally);
        let after = changed(&before, rng);
        // Five seconds on (`refresh_s`): what lookups remembered as not found (for 30 s) is still
        // remembered when the second load brings it.
        load(&gateway, &mut shared, &after, NOW + 6);
        let mut changes = HashMap::new();
        compare(case, &after, &other, &mut shared, rng, NOW + 6, &mut changes);
        compare(case, &after, &gateway, &mut shared, rng, NOW + 6, &mut changes);
        for (class, count) in changes {
            *tally.entry(format!("after {class}")).or_default() += count;
        }
    });
    println!("model-cp-changes classes: {tally:?}");
    for class in ["after forwarded", "after 404", "after 900907", "after 900908"] {
        assert!(tally.get(class).is_some_and(|count| *count > 0), "{class} never decided: {tally:?}");
    }
}
