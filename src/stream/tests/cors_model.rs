//! A seeded, model-based campaign over CORS through the stream: random `errors.cors` settings
//! (or none), random requests (preflights to resources with and without an `OPTIONS` verb, to
//! secured and open resources, to unknown paths and to no API; plain `OPTIONS`; simple requests
//! answered by a backend that sends its own CORS headers and `Vary`; 401, 404, 403 and 429
//! faults) from origins that differ in case, scheme, port, `null`, lists and trailing `/`, each
//! answer's CORS headers (a matched resource's answers allowing its template's methods, as API-M's
//! `CORSRequestHandler` does) and whether the request reached the backend compared with a model
//! written from docs/CONFIG.md (`Cors`, `errors.cors`), README.md, WSO2-CONTRACT.md ("every fault
//! passes through CORS handling") and, where they are silent, API-M's `CORSRequestHandler`
//! (never the filter's CORS or routing functions). `CORS_SEED=N` runs seed N alone.

use super::claims_model::Rng;
use super::*;

/// The origins a configuration may list, spelled as browsers send them.
const CONFIGURABLE: [&str; 4] =
    ["https://app.example", "http://app.example", "https://app.example:8443", "https://other.example"];

/// What a request may carry in `Origin`: listed spellings and near misses.
const ORIGINS: [Option<&str>; 14] = [
    None,
    Some("https://app.example"),
    Some("https://app.example"),
    Some("https://APP.example"),
    Some("HTTPS://app.example"),
    Some("http://app.example"),
    Some("https://app.example:443"),
    Some("https://app.example:8443"),
    Some("https://app.example/"),
    Some("null"),
    Some("https://other.example"),
    Some("https://app.example https://other.example"),
    Some("https://app.example, https://other.example"),
    Some("https://evil.example"),
];

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

const REQUEST_HEADERS: [Option<&str>; 6] = [
    None,
    Some("authorization"),
    Some("Authorization, Content-Type"),
    Some(" content-type ,x-custom , X-CUSTOM"),
    Some("apikey,apikey"),
    Some(""),
];

/// The gateway's CORS policy as generated (the model's copy of what the configuration says).
#[derive(Clone, Debug)]
struct Policy {
    origins: Vec<String>,
    /// `None`: the documented default.
    methods: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Option<u32>,
}

#[derive(Debug)]
struct Setup {
    cors: Option<Policy>,
    /// `/menu` has an `OPTIONS` resource (open): preflights to it go to the backend.
    menu_options: bool,
}

fn setup(rng: &mut Rng) -> Setup {
    let cors = rng.chance(85).then(|| {
        let wildcard = rng.chance(25);
        let mut origins: Vec<String> = match wildcard {
            true => vec!["*".to_string()],
            false => CONFIGURABLE.iter().filter(|_| rng.chance(50)).map(|origin| origin.to_string()).collect(),
        };
        if origins.is_empty() {
            origins.push(CONFIGURABLE[rng.below(CONFIGURABLE.len())].to_string());
        }
        if wildcard && rng.chance(30) {
            origins.insert(0, "https://app.example".to_string());
        }
        let methods = match rng.below(4) {
            0 => None,
            1 => Some(vec!["*".to_string()]),
            _ => Some(METHODS.iter().filter(|_| rng.chance(60)).map(|method| method.to_string()).collect())
                .filter(|methods: &Vec<String>| !methods.is_empty()),
        };
        let headers = match rng.below(4) {
            0 => None,
            3 => Some(vec!["*".to_string()]),
            1 => Some(vec!["authorization".to_string(), "content-type".to_string()]),
            _ => Some(vec!["X-Custom".to_string(), "apikey".to_string(), "Authorization".to_string()]),
        };
        let expose = match rng.chance(40) {
            true => vec!["x-total".to_string(), "x-page".to_string()],
            false => Vec::new(),
        };
        let credentials = !origins.iter().any(|origin| origin == "*") && rng.chance(50);
        let max_age = rng.chance(40).then_some(600);
        Policy { origins, methods, headers, expose, credentials, max_age }
    });
    Setup { cors, menu_options: rng.chance(40) }
}

fn config_json(setup: &Setup) -> String {
    let mut resources = vec![
        serde_json::json!({"method": "GET", "path": "/menu", "security": []}),
        serde_json::json!({"method": "POST", "path": "/menu", "security": []}),
        serde_json::json!({"method": "GET", "path": "/order/{id}"}),
        serde_json::json!({"method": "DELETE", "path": "/order/{id}"}),
        serde_json::json!({"method": "GET", "path": "/limited", "security": [], "policy": "OnePerMinute"}),
    ];
    if setup.menu_options {
        resources.push(serde_json::json!({"method": "OPTIONS", "path": "/menu", "security": []}));
    }
    let mut config = serde_json::json!({
        "apis": [{"name": "P", "context": "/p", "version": "1", "security": ["api_key"],
                  "endpoints": {"production": "prod"}, "resources": resources}],
        "policies": {"OnePerMinute": {"requests": 1, "per": "minute"}},
    });
    if let Some(policy) = &setup.cors {
        let mut cors = serde_json::json!({"allow_origins": policy.origins, "allow_credentials": policy.credentials});
        if let Some(methods) = &policy.methods {
            cors["allow_methods"] = serde_json::json!(methods);
        }
        if let Some(headers) = &policy.headers {
            cors["allow_headers"] = serde_json::json!(headers);
        }
        if !policy.expose.is_empty() {
            cors["expose_headers"] = serde_json::json!(policy.expose);
        }
        if let Some(max_age) = policy.max_age {
            cors["max_age_s"] = serde_json::json!(max_age);
        }
        config["errors"] = serde_json::json!({"cors": cors});
    }
    config.to_string()
}

/// What a request is aimed at.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Menu,
    Order,
    Limited,
    /// Under the API, no resource's path.
    UnknownPath,
    /// Matches no API.
    NoApi,
}

impl Target {
    fn path(self) -> &'static str {
        match self {
            Target::Menu => "/p/1/menu",
            Target::Order => "/p/1/order/42",
            Target::Limited => "/p/1/limited",
            Target::UnknownPath => "/p/1/drinks",
            Target::NoApi => "/elsewhere/1/menu",
        }
    }
    /// The verbs of the path template, in configuration order (the API's resources, as written
    /// in [`config_json`]).
    fn verbs(self, setup: &Setup) -> Vec<&'static str> {
        match self {
            Target::Menu if setup.menu_options => vec!["GET", "POST", "OPTIONS"],
            Target::Menu => vec!["GET", "POST"],
            Target::Order => vec!["GET", "DELETE"],
            Target::Limited => vec!["GET"],
            Target::UnknownPath | Target::NoApi => Vec::new(),
        }
    }
    /// The resource of this template takes no credential.
    fn open(self) -> bool {
        matches!(self, Target::Menu | Target::Limited)
    }
}

#[derive(Clone, Debug)]
struct Request {
    method: &'static str,
    target: Target,
    origin: Option<&'static str>,
    /// `Access-Control-Request-Method`.
    acrm: Option<&'static str>,
    /// `Access-Control-Request-Headers`.
    acrh: Option<&'static str>,
    /// The second request to `/limited` within its minute.
    throttled: bool,
    /// The backend's own headers (if it answers).
    backend: Vec<(&'static str, &'static str)>,
}

fn request(rng: &mut Rng) -> Request {
    let target = *rng.pick(&[Target::Menu, Target::Order, Target::Limited, Target::UnknownPath, Target::NoApi]);
    let preflight = rng.chance(45);
    let method = match preflight || rng.chance(15) {
        true => "OPTIONS",
        false => *rng.pick(&["GET", "GET", "POST", "DELETE", "PUT"]),
    };
    let acrm = preflight.then(|| *rng.pick(&["GET", "POST", "DELETE", "PUT", "PATCH", "get", "OPTIONS"]));
    let mut backend = Vec::new();
    if rng.chance(50) {
        backend.push(("access-control-allow-origin", *rng.pick(&["*", "https://evil.example"])));
    }
    if rng.chance(30) {
        backend.push(("access-control-allow-credentials", "true"));
    }
    if rng.chance(20) {
        backend.push(("access-control-max-age", "86400"));
    }
    if rng.chance(20) {
        backend.push(("access-control-expose-headers", "x-backend"));
    }
    let vary = [None, Some("Accept-Encoding"), Some("origin"), Some("Accept-Encoding,Origin"), Some("*")];
    let vary = [&vary[..], &[Some("Originator"), Some("accept, ORIGIN ")]].concat();
    if let Some(vary) = rng.pick(&vary) {
        backend.push(("vary", vary));
    }
    Request {
        method,
        target,
        origin: *rng.pick(&ORIGINS),
        acrm,
        acrh: *rng.pick(&REQUEST_HEADERS),
        throttled: target == Target::Limited && rng.chance(50),
        backend,
    }
}

/// The names of the CORS headers the model predicts, and `Vary`.
const CHECKED: [&str; 7] = [
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-allow-credentials",
    "access-control-max-age",
    "vary",
];

/// An answer as the client sees it: who answered, its status and its checked headers.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    backend: bool,
    status: u16,
    headers: BTreeMap<&'static str, String>,
}

use std::collections::BTreeMap;

/// How an answer came about, for the classes the campaign must reach.
fn class(request: &Request, answer: &Answer) -> String {
    let kind = match (request.method, request.acrm) {
        ("OPTIONS", Some(_)) => "preflight",
        ("OPTIONS", None) => "options",
        _ => "simple",
    };
    let who = if answer.backend { "backend".to_string() } else { answer.status.to_string() };
    let cors = if answer.headers.contains_key("access-control-allow-origin") { "+acao" } else { "" };
    format!("{kind}/{who}{cors}")
}

/// The model: what the documents say the client gets.
fn model(setup: &Setup, request: &Request) -> Answer {
    let target = request.target;
    let verbs = target.verbs(setup);
    // Routing (README, CONFIG `routing`): a method a resource of the path takes is matched; an
    // `OPTIONS` resource takes any `OPTIONS`; with CORS on, a preflight for a method a resource
    // of the path takes is answered by the gateway (API-M's CORSRequestHandler: before
    // authentication and throttling); anything else under the API is 900906, outside any API 404.
    let matched = verbs.contains(&request.method);
    let preflight_methods: Option<Vec<&str>> = match (request.method, request.acrm, &setup.cors) {
        ("OPTIONS", Some(acrm), Some(_)) if !matched && verbs.contains(&acrm) => Some(verbs.clone()),
        _ => None,
    };
    let (backend, status) = match () {
        _ if target == Target::NoApi => (false, 404),
        _ if preflight_methods.is_some() => (false, 200),
        _ if !matched => (false, 403),
        _ if !target.open() => (false, 401),
        _ if request.throttled => (false, 429),
        _ => (true, 200),
    };
    let mut headers: BTreeMap<&'static str, String> = BTreeMap::new();
    let Some(policy) = &setup.cors else {
        // Without CORS settings the backend's headers pass, and faults carry none.
        if backend {
            for (name, value) in &request.backend {
                headers.insert(name, value.to_string());
            }
        }
        return Answer { backend, status, headers };
    };
    // CONFIG `Cors`: `*` allows any origin and is sent as `*`; otherwise an origin is allowed
    // when it is listed byte for byte (origins are configured as browsers send them) and echoed.
    let wildcard = policy.origins.iter().any(|origin| origin == "*");
    let allowed = match wildcard {
        true => Some("*".to_string()),
        false => request.origin.filter(|origin| policy.origins.iter().any(|listed| listed == origin)).map(String::from),
    };
    let configured_methods = configured_methods(policy);
    let mut echoed = false;
    if let Some(origin) = allowed {
        headers.insert("access-control-allow-origin", origin);
        let allowed_verbs = |verbs: &[&str]| {
            verbs
                .iter()
                .filter(|verb| configured_methods.iter().any(|allowed| allowed == "*" || allowed == *verb))
                .copied()
                .collect::<Vec<_>>()
                .join(",")
        };
        let methods = match &preflight_methods {
            // A preflight's answer allows the verbs of the resource asked about that the
            // configuration allows (`*`: all of them), as API-M's setCORSHeaders does.
            Some(verbs) => allowed_verbs(verbs),
            // So does every other answer to a request that matched a resource, the backend's and
            // a fault after routing alike: API-M's setCORSHeaders sends the selected Synapse
            // resource's methods (one resource per URI template, holding all its verbs) that the
            // configuration allows; seed 002 shows a 900901 with `Access-Control-Allow-Methods:
            // GET`. Where no resource matched (900906, 404) it sends every configured method.
            None if matched => allowed_verbs(&verbs),
            None => configured_methods.join(","),
        };
        headers.insert("access-control-allow-methods", methods);
        let allow_headers = policy.headers.clone().unwrap_or_else(|| {
            ["authorization", "Access-Control-Allow-Origin", "Content-Type", "SOAPAction", "apikey"]
                .map(String::from)
                .to_vec()
        });
        // `*` on a preflight allows what it asked for: its Access-Control-Request-Headers are
        // echoed (API-M's setCORSHeaders; Fetch never reads a literal `*` as `Authorization`).
        let requested = request.acrh.filter(|requested| !requested.trim().is_empty());
        let value = match (allow_headers.iter().any(|allowed| allowed == "*"), &preflight_methods, requested) {
            (true, Some(_), Some(requested)) => {
                echoed = !backend;
                requested.to_string()
            }
            _ => allow_headers.join(","),
        };
        headers.insert("access-control-allow-headers", value);
        if !policy.expose.is_empty() {
            headers.insert("access-control-expose-headers", policy.expose.join(","));
        }
        if policy.credentials {
            headers.insert("access-control-allow-credentials", "true".to_string());
        }
        if let (Some(max_age), Some(_)) = (policy.max_age, &preflight_methods) {
            headers.insert("access-control-max-age", max_age.to_string());
        }
    }
    // Vary: an answer that depends on the origin says so (the Fetch standard's CORS protocol
    // and caching); the backend's Vary is kept, `Origin` joining it unless named or `*`.
    let backend_vary = request.backend.iter().find(|(name, _)| *name == "vary").map(|(_, value)| *value);
    let vary = match (backend, wildcard) {
        (true, true) => backend_vary.map(String::from),
        (false, true) => None,
        (false, false) => Some("Origin".to_string()),
        (true, false) => Some(match backend_vary {
            None => "Origin".to_string(),
            Some(vary)
                if vary
                    .split(',')
                    .any(|token| matches!(token.trim().to_ascii_lowercase().as_str(), "origin" | "*")) =>
            {
                vary.to_string()
            }
            Some(vary) => format!("{vary}, Origin"),
        }),
    };
    // An echoed list depends on the headers the preflight asked for: a cache keys it on them too.
    let vary = match (vary, echoed) {
        (Some(vary), true) => Some(format!("{vary}, Access-Control-Request-Headers")),
        (None, true) => Some("Access-Control-Request-Headers".to_string()),
        (vary, false) => vary,
    };
    if let Some(vary) = vary {
        headers.insert("vary", vary);
    }
    Answer { backend, status, headers }
}

/// The methods the policy allows (`None`: the documented default).
fn configured_methods(policy: &Policy) -> Vec<String> {
    policy
        .methods
        .clone()
        .unwrap_or_else(|| ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"].map(String::from).to_vec())
}

/// Sends the request through the stream on a fresh host: the answer the client gets.
fn send(config: &Rc<Config>, counters: &HashMap<String, (Vec<u8>, u32)>, request: &Request) -> Answer {
    let worker = Rc::new(RefCell::new(Worker::new(config)));
    let mut pairs = vec![(":method", request.method), (":path", request.target.path()), (":authority", "gw.example")];
    pairs.extend(request.origin.map(|origin| ("origin", origin)));
    pairs.extend(request.acrm.map(|method| ("access-control-request-method", method)));
    pairs.extend(request.acrh.map(|headers| ("access-control-request-headers", headers)));
    let mut host = FakeHost::request(&pairs);
    host.now = 1_800_000_010;
    if request.target == Target::Limited {
        // Only `/limited` has a policy whose counters the request needs.
        host.shared = counters.clone();
    }
    if request.throttled {
        // The minute's one request goes first, on the same shared store.
        host.request = [(":method", "GET"), (":path", request.target.path())]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let mut first = Stream::new(Rc::clone(config), Rc::clone(&worker));
        assert_eq!(first.on_request_headers(&mut host, true), Flow::Continue, "{request:?} {:?}", host.sent);
        host.request = pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    }
    let mut stream = Stream::new(Rc::clone(config), worker);
    let checked = |headers: &mut dyn Iterator<Item = (String, String)>| {
        let mut out = BTreeMap::new();
        for (name, value) in headers {
            if let Some(name) = CHECKED.iter().find(|checked| **checked == name) {
                assert!(out.insert(*name, value).is_none(), "{name} twice: {request:?}");
            }
        }
        out
    };
    match stream.on_request_headers(&mut host, true) {
        Flow::Continue => {
            host.response = [(":status", "200")]
                .iter()
                .chain(&request.backend)
                .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
                .collect();
            assert_eq!(stream.on_response_headers(&mut host), Flow::Continue, "{request:?}");
            let headers = host
                .response
                .iter()
                .map(|(name, value)| (name.clone(), String::from_utf8(value.clone()).unwrap()))
                .collect::<Vec<_>>();
            Answer { backend: true, status: 200, headers: checked(&mut headers.into_iter()) }
        }
        _ => {
            let (status, headers, _) = host.sent.clone().unwrap_or_else(|| panic!("no answer: {request:?}"));
            Answer { backend: false, status, headers: checked(&mut headers.into_iter()) }
        }
    }
}

#[test]
fn cors_headers_and_preflights_follow_the_documents_for_random_policies_and_requests() {
    let only = std::env::var("CORS_SEED").ok().and_then(|seed| seed.parse::<u64>().ok());
    let seeds: Vec<u64> = match only {
        Some(seed) => vec![seed],
        None => (0..SEEDS).collect(),
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut disagreements: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cases = 0;
    for &seed in &seeds {
        let mut rng = Rng(seed);
        let setup = setup(&mut rng);
        let mut config = Config::from_json(config_json(&setup).as_bytes()).unwrap();
        // The counter slots as at configure time, copied into each request's fresh host.
        let mut prepared = FakeHost::default();
        crate::stream::prepare_counters(&mut prepared, &mut config);
        let config = Rc::new(config);
        for _ in 0..REQUESTS_PER_SEED {
            let request = request(&mut rng);
            let expected = model(&setup, &request);
            let got = send(&config, &prepared.shared, &request);
            cases += 1;
            *seen.entry(class(&request, &got)).or_default() += 1;
            // A matched resource's answer whose methods are not the configured list: the model's
            // per-resource rule is exercised, not only where both agree.
            let configured = setup.cors.as_ref().map(|policy| configured_methods(policy).join(","));
            let methods = expected.headers.get("access-control-allow-methods");
            if request.acrm.is_none() && methods.is_some() && methods != configured.as_ref() {
                *seen
                    .entry(format!("{}/resource-methods", if expected.backend { "backend" } else { "fault" }))
                    .or_default() += 1;
            }
            if got != expected {
                let differing: Vec<&str> = CHECKED
                    .iter()
                    .copied()
                    .filter(|name| got.headers.get(name) != expected.headers.get(name))
                    .collect();
                let key = match (got.backend != expected.backend || got.status != expected.status, differing.as_slice())
                {
                    (true, _) => format!("{}: outcome", class(&request, &expected)),
                    (false, names) => format!("{}: {}", class(&request, &expected), names.join("+")),
                };
                disagreements.entry(key).or_default().push(format!(
                    "CORS_SEED={seed}: {request:?}\n  setup {setup:?}\n  model  {expected:?}\n  filter {got:?}"
                ));
            }
        }
    }
    let report: Vec<String> =
        disagreements.iter().map(|(class, cases)| format!("{class}: {} (first: {})", cases.len(), cases[0])).collect();
    assert!(disagreements.is_empty(), "disagreement classes:\n{}", report.join("\n"));
    if only.is_some() {
        return;
    }
    assert_eq!(cases, SEEDS as usize * REQUESTS_PER_SEED);
    // Every decision class is reached, so the model is compared where it matters.
    for class in [
        "preflight/200+acao",
        "preflight/200",
        "preflight/backend+acao",
        "preflight/403+acao",
        "preflight/404+acao",
        "preflight/403",
        "options/backend+acao",
        "options/403+acao",
        "simple/backend+acao",
        "simple/backend",
        "simple/401+acao",
        "simple/429+acao",
        "simple/403+acao",
        "simple/404+acao",
        "simple/401",
        "backend/resource-methods",
        "fault/resource-methods",
    ] {
        assert!(seen.get(class).is_some_and(|count| *count >= 5), "{class} reached: {seen:?}");
    }
}

const SEEDS: u64 = 40;
const REQUESTS_PER_SEED: usize = 90;
