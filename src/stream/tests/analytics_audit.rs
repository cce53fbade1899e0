//! The audit of the access-log fields against WSO2 API Manager 4.x's analytics event publisher,
//! field by field, for the five event kinds a migrating user's dashboards (ELK's `apimMetrics:`
//! lines, Choreo analytics) read: a success, an auth fault, a throttled request, a resource not
//! found and a backend (target) fault. Seeded requests go through the filter's real request path
//! (the fake host); an independent model of WSO2's event, written from carbon-apimgt's sources
//! (cited below, never the filter's code), says what WSO2 publishes, and the README's documented
//! differences map it to what the filter must write. `ANALYTICS_AUDIT_SEED=<n>` runs one seed.
//!
//! WSO2's event (carbon-apimgt, `components/apimgt/org.wso2.carbon.apimgt.common.analytics`,
//! `publishers/dto/Event.java` at 13441ffd: `API`, `Operation`, `Target`, `Application`,
//! `Latencies`, `MetaInfo` and `Error` unwrapped into one JSON object by Jackson, then written by
//! the ELK reporter as `apimMetrics: apim:response|apim:faulty, properties :{...}`):
//!
//! | WSO2 field | JSON type | WSO2's source (`SynapseAnalyticsDataProvider`, 00cdb8a5) | success | auth fault | throttled | not found | target fault | the filter (field; Envoy's JSON log) |
//! |---|---|---|---|---|---|---|---|---|
//! | apiId | string | the API's UUID | yes | yes | yes | yes | yes | `api_id` (UUID, else `<name>:<version>`) |
//! | apiName, apiVersion | string | the API | yes | yes | yes | yes | yes | `api_name`, `api_version` |
//! | apiType, apiCreator, apiCreatorTenantDomain | string | the API | yes | yes | yes | yes | yes | not written (the configuration holds no creator or type) |
//! | apiContext (properties) | string | `REST_API_CONTEXT` | yes | yes | yes | yes | yes | `api_context` |
//! | apiResourceTemplate, apiMethod | string | `API_ELECTED_RESOURCE`, `HTTP_METHOD` | yes | no (faulty events set no `Operation`) | no | no | no | `api_resource` (also on faults once a resource matched), Envoy's `%REQ(:METHOD)%` |
//! | destination | string | `ENDPOINT_ADDRESS` | yes | no | no | no | no | Envoy's `%UPSTREAM_HOST%` |
//! | targetResponseCode | int | the backend's status | backend's | -1 (`UNKNOWN_INT_VALUE`, `FaultyRequestDataCollector`) | -1 | -1 | -1 | `target_response_code` (a string) |
//! | responseCacheHit | bool | `CachableResponse` | yes | no | no | no | no | not written (no response cache) |
//! | applicationId, applicationName, applicationOwner, keyType | string | the auth context | the app, or `anonymous` (open resource) | `UNKNOWN` (`AuthFaultDataCollector`) | the app or `anonymous` (`ThrottledFaultDataCollector`) | `UNKNOWN` (`ResourceNotFoundFaultDataCollector`; OTHER faults: `UnclassifiedFaultDataCollector`, the app when authenticated) | the app or `anonymous` (`TargetFaultDataCollector`) | `application_*`, `key_type`; `UNKNOWN`/`anonymous` are absent (README: "Fields a request does not have are `null`") |
//! | userName (success: top level, `UNKNOWN` default; properties on both) | string | `END_USER_NAME`, else `USER_ID` | yes | properties | properties | properties | properties | `user_name` (a token's end user; absent for API keys) |
//! | userIp, userAgentHeader | string | `USER_IP`, `USER_AGENT` (`UNKNOWN` default) | yes | agent only | agent only | agent only | agent only | Envoy's `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, `%REQ(USER-AGENT)%` |
//! | proxyResponseCode | int | `HTTP_SC` | yes | yes | yes | yes | yes | Envoy's `%RESPONSE_CODE%` |
//! | errorType | string | `FaultCategory` by code range (gateway `Constants.ERROR_CODE_RANGES`, 079a0b5b) | - | AUTH | THROTTLED | OTHER | TARGET_CONNECTIVITY | `error_type` |
//! | errorCode | int | `ERROR_CODE` | - | yes | yes | yes | yes | `error_code` (a string) |
//! | errorMessage | string | `FaultCodeClassifier` (13e77e3d) sub-category | - | yes | yes | yes | yes | `error_message` |
//! | correlationId, regionId, gatewayType, requestTimestamp | string | metadata | yes | yes | yes | yes | yes | Envoy's access log (`envoy/envoy.yaml`) |
//! | latencies (responseLatency, backendLatency, ...) | long | timestamps | yes | no | no | no | no | Envoy's `%DURATION%` (responseLatency only) |
//!
//! Added by the filter, not WSO2's: `tier`, `level`, `original_path`.

use super::*;
use crate::host::fuzz::Rng;
use std::collections::BTreeMap;

const START: u64 = 1_800_000_000;
const SECRET: &str = "an-analytics-audit-hmac-secret-of-32-bytes-at-least";
const NAMES: [&str; 4] = ["DefaultApplication", "My App", "b.c", "注文"];
const OWNERS: [&str; 3] = ["alice", "bob@carbon.super", "carol@example.com"];

/// WSO2's fault category and sub-category of an error code: `SynapseAnalyticsDataProvider.getFaultType`
/// (auth 900900..901000, throttled 900800..900900, target 101500..101600 or 303001) and
/// `FaultCodeClassifier` (an exact code compare; 900906 and every other AUTH code fall to
/// `Authentication.OTHER`, carbon-apimgt's newer classifier and Choreo Connect's). OTHER's
/// sub-category reads `ERROR_CODE` 404/405 once an API was processed.
fn wso2_category(code: u32) -> (&'static str, &'static str) {
    let auth = match code {
        900900..=900904 => "AUTHENTICATION_FAILURE",
        900905 | 900910 => "AUTHORIZATION_FAILURE",
        900907..=900909 => "SUBSCRIPTION_VALIDATION_FAILURE",
        _ => "OTHER",
    };
    let throttled = match code {
        900800 => "API_LEVEL_LIMIT_EXCEEDED",
        900801 => "HARD_LIMIT_EXCEEDED",
        900802 => "RESOURCE_LEVEL_LIMIT_EXCEEDED",
        900803 => "APPLICATION_LEVEL_LIMIT_EXCEEDED",
        900804 => "SUBSCRIPTION_LIMIT_EXCEEDED",
        900805 => "BLOCKED",
        900806 => "CUSTOM_POLICY_LIMIT_EXCEEDED",
        900807 => "BURST_CONTROL_LIMIT_EXCEEDED",
        _ => "OTHER",
    };
    if (900900..901000).contains(&code) {
        ("AUTH", auth)
    } else if (900800..900900).contains(&code) {
        ("THROTTLED", throttled)
    } else if (101500..101600).contains(&code) || code == 303001 {
        let sub = match code {
            101504 | 101508 => "CONNECTION_TIMEOUT",
            303001 => "CONNECTION_SUSPENDED",
            _ => "OTHER",
        };
        ("TARGET_CONNECTIVITY", sub)
    } else {
        ("OTHER", if code == 404 { "RESOURCE_NOT_FOUND" } else { "UNCLASSIFIED" })
    }
}

/// README ("Observability"): the stage or level that answered.
fn readme_level(code: u32) -> &'static str {
    match code {
        404 | 900906 => "routing",
        900901 | 900902 => "authentication",
        900908 | 900910 => "authorization",
        900800 => "api",
        900802 => "resource",
        900803 => "application",
        900804 => "subscription",
        900805 => "blocking",
        _ => "transport",
    }
}

/// Whose application WSO2's event names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WsoApp {
    /// The authenticated application (`provider.getApplication()`).
    Caller,
    /// `UNKNOWN` (`getUnknownApp`) or `anonymous` (`getAnonymousApp`): no application field.
    None,
}

/// One application of the world.
struct App {
    id: String,
    name: &'static str,
    owner: &'static str,
    key: String,
    sandbox: bool,
}

/// What a request does, and so which event WSO2 publishes for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    /// A subscribed application's key (or token, with its end user) on a secured resource.
    Success {
        app: usize,
        jwt: bool,
    },
    /// No credential on an open resource: WSO2's anonymous application.
    Open,
    Missing,
    BadKey,
    NotSubscribed,
    Scoped,
    SandboxKeyNoEndpoint,
    /// A one-request-an-hour level; the first request passes.
    ApiLimit,
    ResourceLimit,
    ApplicationLimit,
    SubscriptionLimit,
    Blocked,
    NoResource,
    NoApi,
}

/// The backend, for a forwarded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Backend {
    Answers(u16),
    /// Envoy's response flag bits: 0x20 UF (connection failure), 0x4 UT (timeout).
    Fails(u64),
}

/// The applications, each with a production OAuth2 client id: 0 and 1 production API keys, 2 a
/// sandbox API key (the API has no sandbox endpoint), 3 an application policy of one request an hour, 4 blocked,
/// 5 a one-request subscription tier, 6 subscribed to nothing.
fn applications(rng: &mut Rng) -> Vec<App> {
    (0..7)
        .map(|n| App {
            id: format!("a{n}-{:08x}", rng.word() as u32),
            name: NAMES[rng.below(NAMES.len())],
            owner: OWNERS[rng.below(OWNERS.len())],
            key: format!("key-{n}-{:016x}", rng.word()),
            sandbox: n == 2,
        })
        .collect()
}

fn config_of(apps: &[App], structured: bool) -> Config {
    let mut apps_json = Vec::new();
    let mut subs = Vec::new();
    for (n, app) in apps.iter().enumerate() {
        let key_type = if app.sandbox { "SANDBOX" } else { "PRODUCTION" };
        let policy = if n == 3 { r#","policy":"P1""# } else { "" };
        apps_json.push(format!(
            r#"{{"id":"{}","name":"{}","owner":"{}","api_keys":[{{"sha256":"{}","key_type":"{key_type}"}}],
                "client_ids":[{{"id":"cid{n}","key_type":"PRODUCTION"}}]{policy}}}"#,
            app.id,
            app.name,
            app.owner,
            crate::hashing::hex(&credential_hash(&app.key)),
        ));
        if n != 6 {
            let tier = if n == 5 { "T1" } else { "Unlimited" };
            subs.push(format!(r#"{{"application":"{}","api":"PizzaShack:1.0.0","tier":"{tier}"}}"#, app.id));
        }
        if n == 0 {
            subs.push(format!(r#"{{"application":"{}","api":"Limited:v1","tier":"Unlimited"}}"#, app.id));
        }
    }
    let json = format!(
        r#"{{"observability":{{"access_log_encoding":"{}"}},
            "key_managers":[{{"name":"km","issuer":"https://km","hmac_secret":"{SECRET}","algorithms":["HS256"]}}],
            "policies":{{"A1":{{"requests":1,"per":"hour"}},"R1":{{"requests":1,"per":"hour"}},
                         "P1":{{"requests":1,"per":"hour"}},"T1":{{"requests":1,"per":"hour"}}}},
            "blocking":[{{"application":"{}"}}],
            "apis":[
              {{"name":"PizzaShack","context":"/pizzashack","version":"1.0.0","security":["api_key","oauth2"],
                "endpoints":{{"production":"prod"}},
                "resources":[{{"method":"GET","path":"/open","security":[]}},{{"method":"GET","path":"/menu"}},
                             {{"method":"GET","path":"/admin","scopes":["admin"]}},
                             {{"method":"GET","path":"/limited","policy":"R1"}}]}},
              {{"name":"Limited","context":"/limited","version":"v1","security":["api_key"],"policy":"A1",
                "endpoints":{{"production":"prod"}},"resources":[{{"method":"GET","path":"/items"}}]}}],
            "applications":[{}],"subscriptions":[{}]}}"#,
        if structured { "struct" } else { "properties" },
        apps[4].id,
        apps_json.join(","),
        subs.join(",")
    );
    Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{json}"))
}

fn token(sub: &str, client: &str) -> String {
    use base64::Engine;
    let claims = serde_json::json!({"iss": "https://km", "sub": sub, "client_id": client, "exp": START + 1_000_000});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#), b64.encode(claims.to_string()));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

/// WSO2's event for a request, as the model sees it.
#[derive(Debug)]
struct WsoEvent {
    /// `apim:response` (None) or `apim:faulty` with its error code.
    error_code: Option<u32>,
    application: WsoApp,
    /// The backend's status of a success (a faulty event's is -1).
    target: Option<u16>,
}

/// The request the model sends for a case: path, the authenticated application (and its tier
/// and end user, which the filter adds), and whether the first request of a one-an-hour level
/// passes.
struct Sent {
    path: String,
    headers: Vec<(String, String)>,
    authorized: Option<(usize, &'static str, Option<&'static str>)>,
    api: Option<(&'static str, &'static str, &'static str)>,
    resource: Option<&'static str>,
}

const USER: &str = "u-erin";

fn send(case: Case, apps: &[App], rng: &mut Rng) -> Sent {
    let pizza = Some(("PizzaShack", "1.0.0", "/pizzashack/1.0.0"));
    let key = |n: usize| vec![("apikey".to_string(), apps[n].key.clone())];
    let (path, headers, authorized, api, resource) = match case {
        Case::Success { app, jwt: false } => {
            ("/pizzashack/1.0.0/menu", key(app), Some((app, "Unlimited", None)), pizza, Some("/menu"))
        }
        Case::Success { app, jwt: true } => (
            "/pizzashack/1.0.0/menu",
            vec![("authorization".to_string(), format!("Bearer {}", token(USER, &format!("cid{app}"))))],
            Some((app, "Unlimited", Some(USER))),
            pizza,
            Some("/menu"),
        ),
        Case::Open => ("/pizzashack/1.0.0/open", vec![], None, pizza, Some("/open")),
        Case::Missing => ("/pizzashack/1.0.0/menu", vec![], None, pizza, Some("/menu")),
        Case::BadKey => (
            "/pizzashack/1.0.0/menu",
            vec![("apikey".to_string(), format!("bogus-{:016x}", rng.word()))],
            None,
            pizza,
            Some("/menu"),
        ),
        Case::NotSubscribed => ("/pizzashack/1.0.0/menu", key(6), None, pizza, Some("/menu")),
        Case::Scoped => ("/pizzashack/1.0.0/admin", key(1), None, pizza, Some("/admin")),
        Case::SandboxKeyNoEndpoint => {
            ("/pizzashack/1.0.0/menu", key(2), Some((2, "Unlimited", None)), pizza, Some("/menu"))
        }
        Case::ApiLimit => (
            "/limited/v1/items",
            key(0),
            Some((0, "Unlimited", None)),
            Some(("Limited", "v1", "/limited/v1")),
            Some("/items"),
        ),
        Case::ResourceLimit => {
            ("/pizzashack/1.0.0/limited", key(1), Some((1, "Unlimited", None)), pizza, Some("/limited"))
        }
        Case::ApplicationLimit => {
            ("/pizzashack/1.0.0/menu", key(3), Some((3, "Unlimited", None)), pizza, Some("/menu"))
        }
        Case::SubscriptionLimit => ("/pizzashack/1.0.0/menu", key(5), Some((5, "T1", None)), pizza, Some("/menu")),
        Case::Blocked => ("/pizzashack/1.0.0/menu", key(4), Some((4, "Unlimited", None)), pizza, Some("/menu")),
        Case::NoResource => ("/pizzashack/1.0.0/drinks", key(0), None, pizza, None),
        Case::NoApi => ("/nowhere/1/menu", key(0), None, None, None),
    };
    Sent { path: path.to_string(), headers, authorized, api, resource }
}

#[derive(Default)]
struct Model {
    /// Requests counted at each one-an-hour level so far.
    used: BTreeMap<Case, u32>,
}

impl Model {
    /// WSO2's event for the case (blocking is checked before any counter, and a blocked
    /// application's request never counts).
    fn event(&mut self, case: Case, backend: Backend) -> WsoEvent {
        let fault = |code: u32, application: WsoApp| WsoEvent { error_code: Some(code), application, target: None };
        let limited = |model: &mut Model, code: u32| {
            let used = model.used.entry(case).or_default();
            *used += 1;
            (*used > 1).then_some(code)
        };
        let over = match case {
            Case::Missing => return fault(900902, WsoApp::None),
            Case::BadKey => return fault(900901, WsoApp::None),
            Case::NotSubscribed => return fault(900908, WsoApp::None),
            Case::Scoped => return fault(900910, WsoApp::None),
            // `_production_key_error_`/`_sandbox_key_error_` after the handlers: ERROR_CODE
            // 900901 is an AUTH fault, whose application is UNKNOWN (AuthFaultDataCollector).
            Case::SandboxKeyNoEndpoint => return fault(900901, WsoApp::None),
            Case::NoResource => return fault(900906, WsoApp::None),
            Case::NoApi => return fault(404, WsoApp::None),
            Case::Blocked => return fault(900805, WsoApp::Caller),
            Case::ApiLimit => limited(self, 900800),
            Case::ResourceLimit => limited(self, 900802),
            Case::ApplicationLimit => limited(self, 900803),
            Case::SubscriptionLimit => limited(self, 900804),
            Case::Success { .. } | Case::Open => None,
        };
        let application = if case == Case::Open { WsoApp::None } else { WsoApp::Caller };
        if let Some(code) = over {
            return fault(code, application);
        }
        match backend {
            Backend::Answers(status) => WsoEvent { error_code: None, application, target: Some(status) },
            // Synapse's ERROR_CODE is the base plus the protocol state (WSO2-CONTRACT.md): a
            // timeout after the request was sent is 101504 + 3.
            Backend::Fails(0x20) => fault(101503, application),
            Backend::Fails(_) => fault(101507, application),
        }
    }
}

/// What the filter must write for WSO2's event: WSO2's fields under the filter's names, its
/// `UNKNOWN`/`anonymous` values absent, and the filter's documented additions.
fn expected(event: &WsoEvent, case: Case, sent: &Sent, apps: &[App]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut put = |name: &str, value: &str| {
        fields.insert(name.to_string(), value.to_string());
    };
    if let Some((name, version, context)) = sent.api {
        put("api_name", name);
        put("api_version", version);
        put("api_context", context);
        put("api_id", &format!("{name}:{version}"));
        put("original_path", &sent.path);
        if let Some(resource) = sent.resource {
            put("api_resource", resource);
        }
    }
    if let Some((app, tier, user)) = sent.authorized {
        put("tier", tier);
        if let Some(user) = user {
            put("user_name", user);
        }
        if event.application == WsoApp::Caller {
            let app = &apps[app];
            put("application_id", &app.id);
            put("application_name", app.name);
            put("application_owner", app.owner);
            put("key_type", if app.sandbox { "SANDBOX" } else { "PRODUCTION" });
        }
    }
    match (event.error_code, event.target) {
        (Some(code), _) => {
            let (error_type, error_message) = wso2_category(code);
            put("error_code", &code.to_string());
            put("error_type", error_type);
            put("error_message", error_message);
            // README: the stage that answered; a key without its key type's endpoint is refused
            // in authorization.
            put("level", if case == Case::SandboxKeyNoEndpoint { "authorization" } else { readme_level(code) });
            put("target_response_code", "-1");
        }
        (None, Some(status)) => put("target_response_code", &status.to_string()),
        (None, None) => {}
    }
    fields
}

const SEEDS: u64 = 40;
const REQUESTS_PER_SEED: usize = 40;

#[test]
fn the_access_log_fields_are_wso2_analytics_events_field_by_field() {
    let seeds: Vec<u64> = match std::env::var("ANALYTICS_AUDIT_SEED") {
        Ok(seed) => vec![seed.parse().expect("ANALYTICS_AUDIT_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    let mut failures: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut requests = 0usize;
    for &seed in &seeds {
        let mut rng = Rng::new(seed ^ 0xa11a_1e75_0000_0048);
        let apps = applications(&mut rng);
        let structured = rng.chance(3);
        let mut config = config_of(&apps, structured);
        let mut host = FakeHost::default();
        crate::stream::prepare_counters(&mut host, &mut config);
        let config = Rc::new(config);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        let mut model = Model::default();
        for n in 0..REQUESTS_PER_SEED {
            let case = match rng.below(16) {
                0 | 1 => Case::Success { app: rng.below(2), jwt: rng.chance(3) },
                2 => Case::Open,
                3 => Case::Missing,
                4 => Case::BadKey,
                5 => Case::NotSubscribed,
                6 => Case::Scoped,
                7 => Case::SandboxKeyNoEndpoint,
                8 => Case::ApiLimit,
                9 => Case::ResourceLimit,
                10 => Case::ApplicationLimit,
                11 => Case::SubscriptionLimit,
                12 => Case::Blocked,
                13 => Case::NoResource,
                14 => Case::NoApi,
                _ => Case::Success { app: 0, jwt: false },
            };
            let backend = match rng.below(6) {
                0 => Backend::Fails(0x20),
                1 => Backend::Fails(0x4),
                2 => Backend::Answers(*rng.pick(&[404, 500, 503])),
                _ => Backend::Answers(*rng.pick(&[200, 201])),
            };
            let sent = send(case, &apps, &mut rng);
            let event = model.event(case, backend);
            let want = expected(&event, case, &sent, &apps);
            let mut headers =
                vec![(":method".to_string(), "GET".to_string()), (":path".to_string(), sent.path.clone())];
            headers.extend(sent.headers.iter().cloned());
            // The credentials sent: an API key, a token without its scheme.
            let secrets: Vec<&str> =
                sent.headers.iter().map(|(_, value)| value.strip_prefix("Bearer ").unwrap_or(value)).collect();
            let shared = std::mem::take(&mut host.shared);
            host = FakeHost {
                request: headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
                shared,
                now: START,
                ..Default::default()
            };
            let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
            let flow = stream.on_request_headers(&mut host, true);
            let context = format!("seed {seed} (ANALYTICS_AUDIT_SEED) request {n}: {case:?} {backend:?}");
            let forwarded = event.target.is_some() || matches!(event.error_code, Some(101503 | 101507));
            if (flow == Flow::Continue) != forwarded {
                failures.push(format!("{context}: flow {flow:?}, WSO2's event {event:?}, sent {:?}", host.sent));
                continue;
            }
            if forwarded {
                let (status, flags) = match backend {
                    Backend::Answers(status) => (status, 0),
                    Backend::Fails(flags) => (if flags == 0x4 { 504 } else { 503 }, flags),
                };
                super::observe_model::backend_answer(&mut host, status, flags);
                stream.on_response_headers(&mut host);
            }
            requests += 1;
            let got = super::observe_model::fields_of(&host, structured);
            for key in got.keys().chain(want.keys()) {
                if got.get(key) != want.get(key) {
                    failures.push(format!(
                        "{context}: field {key}: filter {:?}, WSO2 (as the README maps it) {:?}",
                        got.get(key),
                        want.get(key)
                    ));
                }
            }
            for (name, value) in &got {
                if let Some(secret) = secrets.iter().find(|secret| value.contains(*secret)) {
                    failures.push(format!("{context}: field {name} holds a credential ({secret})"));
                }
            }
            let kind = match event.error_code {
                None if event.application == WsoApp::None => "response (anonymous)".to_string(),
                None => format!("response (target {})", event.target.unwrap_or_default() / 100),
                Some(code) => format!("faulty {code} {}", wso2_category(code).0),
            };
            *seen.entry(kind).or_default() += 1;
        }
    }
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} differences, first ones:\n{}",
        failures.len(),
        failures.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
    if seeds.len() as u64 == SEEDS {
        assert_eq!(requests, SEEDS as usize * REQUESTS_PER_SEED);
        for kind in [
            "response (target 2)",
            "response (target 4)",
            "response (target 5)",
            "response (anonymous)",
            "faulty 900902 AUTH",
            "faulty 900901 AUTH",
            "faulty 900908 AUTH",
            "faulty 900910 AUTH",
            "faulty 900800 THROTTLED",
            "faulty 900802 THROTTLED",
            "faulty 900803 THROTTLED",
            "faulty 900804 THROTTLED",
            "faulty 900805 THROTTLED",
            "faulty 900906 AUTH",
            "faulty 404 OTHER",
            "faulty 101503 TARGET_CONNECTIVITY",
            "faulty 101507 TARGET_CONNECTIVITY",
        ] {
            assert!(seen.get(kind).copied().unwrap_or(0) >= 5, "{kind} too rare: {seen:?}");
        }
    }
}
