//! A seeded, model-based campaign over what operators see of a request: random APIs (names that
//! need escaping in stats, BLOCKED ones, API keys in the query), applications (names with dots,
//! spaces, CR/LF), subscriptions (a one-request tier), observability settings (fields on or off,
//! properties or one `Struct`, API stats, an application bound of 0, 1 or 100) and error status
//! overrides; requests of every outcome (open, API key, JWT, missing, invalid key or token, not
//! subscribed, throttled, unknown path, wrong method, blocked, backend answer, failed upstream)
//! through the fake host. An independent model written from README.md ("Observability",
//! "Metrics"), docs/CONFIG.md and WSO2 API-M 4.x's analytics classification (carbon-apimgt's
//! `FaultCodeClassifier` and analytics `Constants`: never the filter's own) predicts every
//! access-log field and every counter; no secret may appear in a field, a counter or a log line of
//! any level. `OBS_SEED=<n>` runs one seed.

use super::claims_model::Rng;
use super::*;
use crate::host::testing::{capture_all_logs, warnings};
use std::collections::{BTreeMap, BTreeSet};

const START: u64 = 1_800_000_000;
const SECRET: &str = "an-observability-hmac-secret-of-32-bytes-or-more";
const WRONG_SECRET: &str = "not-the-key-managers-secret-but-32-bytes-long!";
const API_NAMES: [&str; 6] = ["PizzaShack", "Pizza Shack", "注文", "a.b", "_x", "Pizza_Shack"];
const VERSIONS: [&str; 3] = ["1", "1.0.0", "v2"];
/// Application names as configured (JSON-escaped) and as the access log shows them.
const APP_NAMES: [(&str, &str); 5] = [
    ("DefaultApplication", "DefaultApplication"),
    ("My App", "My App"),
    ("b.c", "b.c"),
    ("evil\\r\\nline", "evil\\r\\nline"),
    ("_other", "_other"),
];
const USERS: [&str; 3] = ["u-alice", "u-bob@carbon.super", "svc-7"];
const OWNERS: [&str; 3] = ["alice", "bob@carbon.super", "dave@example.com"];

fn token(secret: &str, sub: &str, client: &str) -> String {
    use base64::Engine;
    let claims = serde_json::json!({"iss": "https://km", "sub": sub, "client_id": client, "exp": START + 1_000_000});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#), b64.encode(claims.to_string()));
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

struct ApiGen {
    name: &'static str,
    version: &'static str,
    context: String,
    blocked: bool,
    in_query: bool,
}

struct AppGen {
    name_shown: &'static str,
    owner: &'static str,
    key: String,
    sandbox: bool,
    user: &'static str,
}

struct World {
    apis: Vec<ApiGen>,
    apps: Vec<AppGen>,
    /// (application, API) -> tier name.
    subs: BTreeMap<(usize, usize), &'static str>,
    fields: bool,
    structured: bool,
    api_stats: bool,
    app_bound: usize,
    backend_jwt: bool,
    config: Option<Config>,
}

fn world(rng: &mut Rng) -> World {
    let first = rng.below(API_NAMES.len());
    let mut apis = Vec::new();
    let mut apis_json = Vec::new();
    for a in 0..1 + rng.below(3) {
        let api = ApiGen {
            name: API_NAMES[(first + a) % API_NAMES.len()],
            version: VERSIONS[rng.below(VERSIONS.len())],
            context: format!("/c{a}"),
            blocked: rng.chance(15),
            in_query: rng.chance(40),
        };
        apis_json.push(format!(
            r#"{{"name":"{}","context":"{}","version":"{}","lifecycle":"{}","api_key_in_query":{},
                "security":["api_key","oauth2"],"endpoints":{{"production":"prod","sandbox":"sand"}},
                "resources":[{{"method":"GET","path":"/r0","security":[]}},{{"method":"GET","path":"/r1"}}]}}"#,
            api.name,
            api.context,
            api.version,
            if api.blocked { "BLOCKED" } else { "PUBLISHED" },
            api.in_query
        ));
        apis.push(api);
    }
    let mut apps = Vec::new();
    let mut apps_json = Vec::new();
    let mut subs = BTreeMap::new();
    let mut subs_json = Vec::new();
    for p in 0..1 + rng.below(4) {
        let (name, name_shown) = *rng.pick(&APP_NAMES);
        let app = AppGen {
            name_shown,
            owner: OWNERS[rng.below(OWNERS.len())],
            key: format!("key-{p}-{:016x}", rng.next()),
            sandbox: rng.chance(30),
            user: USERS[rng.below(USERS.len())],
        };
        let key_type = if app.sandbox { "SANDBOX" } else { "PRODUCTION" };
        apps_json.push(format!(
            r#"{{"id":"app{p}","name":"{name}","owner":"{}","api_keys":[{{"sha256":"{}","key_type":"{key_type}"}}],
                "client_ids":[{{"id":"cid{p}","key_type":"{key_type}"}}]}}"#,
            app.owner,
            crate::hashing::hex(&credential_hash(&app.key)),
        ));
        for (a, api) in apis.iter().enumerate() {
            if rng.chance(75) {
                let tier = if rng.chance(35) { "T1" } else { "Unlimited" };
                subs_json.push(format!(
                    r#"{{"application":"app{p}","api":"{}:{}","tier":"{tier}"}}"#,
                    api.name, api.version
                ));
                subs.insert((p, a), tier);
            }
        }
        apps.push(app);
    }
    let (fields, structured, api_stats) = (rng.chance(85), rng.chance(40), rng.chance(80));
    let app_bound = *rng.pick(&[0, 1, 100]);
    let backend_jwt = rng.chance(40);
    let overrides =
        if rng.chance(50) { r#","overrides":{"not_found":{"status":400},"700700":{"status":404}}"# } else { "" };
    let json = format!(
        r#"{{"observability":{{"access_log_fields":{fields},"access_log_encoding":"{}","api_stats":{api_stats},
            "application_stats":{app_bound}}},"errors":{{"format":"apim-json"{overrides}}}{},
            "key_managers":[{{"name":"km","issuer":"https://km","hmac_secret":"{SECRET}","algorithms":["HS256"]}}],
            "policies":{{"T1":{{"requests":1,"per":"hour"}}}},
            "apis":[{}],"applications":[{}],"subscriptions":[{}]}}"#,
        if structured { "struct" } else { "properties" },
        if backend_jwt { r#","backend_jwt":{"algorithm":"none","header":"X-Backend-JWT"}"# } else { "" },
        apis_json.join(","),
        apps_json.join(","),
        subs_json.join(",")
    );
    let config = Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{json}"));
    World { apis, apps, subs, fields, structured, api_stats, app_bound, backend_jwt, config: Some(config) }
}

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Open,
    ApiKey { app: usize, in_query: bool },
    Jwt { app: usize },
    Missing,
    BadKey,
    BadJwt,
    NotFound,
    WrongMethod,
}

/// What the backend does with a forwarded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Backend {
    Answers(u16),
    /// Envoy's flag bits and the access-log name.
    Fails(u64, &'static str),
}

/// The model's own stats segment (README, "Observability": letters, digits, `-` and `_` stay,
/// any other byte `%XX`, a leading `_` too, the empty text `_`; versions keep their dots).
fn segment(text: &str, dots: bool) -> String {
    if text.is_empty() {
        return "_".into();
    }
    let mut out = String::new();
    for (i, byte) in text.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric() || byte == b'-' || (byte == b'_' && i > 0) || (dots && byte == b'.');
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// WSO2 API-M 4.x's analytics classification of an error code (carbon-apimgt
/// `common/analytics/Constants.java` ERROR_CODE_RANGES, `gateway/handlers/analytics/FaultCodeClassifier.java`):
/// the first arm that matches wins, as in WSO2's switch.
#[allow(clippy::match_overlapping_arm)]
fn wso2_classify(code: u32) -> (&'static str, &'static str) {
    match code {
        900900..=900904 => ("AUTH", "AUTHENTICATION_FAILURE"),
        900905 | 900910 => ("AUTH", "AUTHORIZATION_FAILURE"),
        900907..=900909 => ("AUTH", "SUBSCRIPTION_VALIDATION_FAILURE"),
        900900..=900999 => ("AUTH", "OTHER"),
        900804 => ("THROTTLED", "SUBSCRIPTION_LIMIT_EXCEEDED"),
        900800..=900899 => ("THROTTLED", "OTHER"),
        101504 | 101508 => ("TARGET_CONNECTIVITY", "CONNECTION_TIMEOUT"),
        101500..=101599 => ("TARGET_CONNECTIVITY", "OTHER"),
        404 => ("OTHER", "RESOURCE_NOT_FOUND"),
        405 => ("OTHER", "METHOD_NOT_ALLOWED"),
        _ => ("OTHER", "UNCLASSIFIED"),
    }
}

/// The README's level of each code this campaign provokes.
fn level(code: u32) -> &'static str {
    match code {
        404 | 900906 => "routing",
        700700 => "lifecycle",
        900901 | 900902 => "authentication",
        900908 => "authorization",
        900804 => "subscription",
        _ => "transport",
    }
}

/// What the model predicts of one request.
#[derive(Default, Debug)]
struct Predicted {
    fields: BTreeMap<String, String>,
    counters: Vec<String>,
    /// A refusal reason counter the documents do not name (`apim.auth.refused.<reason>`).
    some_reason: bool,
    forwarded: bool,
    outcome: String,
}

#[derive(Default)]
struct Model {
    /// Requests counted per subscription this hour.
    used: BTreeMap<(usize, usize), u64>,
    /// Applications with their own counters, in the order they were first counted.
    named: Vec<usize>,
}

impl Model {
    fn app_stat(&mut self, w: &World, app: usize, outcome: &str) -> Option<String> {
        if w.app_bound == 0 {
            return None;
        }
        if !self.named.contains(&app) && self.named.len() < w.app_bound {
            self.named.push(app);
        }
        let (name, owner) = if self.named.contains(&app) {
            let a = &w.apps[app];
            // The access log's escape is the log's; a stat segment escapes the raw bytes.
            let raw = a.name_shown.replace("\\r", "\r").replace("\\n", "\n");
            (segment(&raw, false), segment(a.owner, false))
        } else {
            ("_other".into(), "_other".into())
        };
        Some(format!("apim.application.{name}.owner.{owner}.{outcome}"))
    }

    fn predict(&mut self, w: &World, api: usize, kind: Kind, backend: Backend, path: &str) -> Predicted {
        let mut p = Predicted::default();
        let a = &w.apis[api];
        let api_prefix = format!("apim.api.{}.version.{}", segment(a.name, false), segment(a.version, true));
        let route = |p: &mut Predicted, resource: Option<&str>| {
            p.fields.insert("api_name".into(), a.name.into());
            p.fields.insert("api_version".into(), a.version.into());
            p.fields.insert("api_context".into(), format!("{}/{}", a.context, a.version));
            p.fields.insert("api_id".into(), format!("{}:{}", a.name, a.version));
            if let Some(resource) = resource {
                p.fields.insert("api_resource".into(), resource.into());
            }
            let original = strip_apikey(path);
            p.fields.insert("original_path".into(), original);
        };
        let refuse = |p: &mut Predicted, model: &mut Model, code: u32, matched: bool, app: Option<usize>| {
            p.counters.push(format!("apim.fault.{code}"));
            if matched && w.api_stats {
                p.counters.push(format!("{api_prefix}.refused.code.{code}.level.{}", level(code)));
            }
            if let Some(stat) = app.and_then(|app| model.app_stat(w, app, "refused")) {
                p.counters.push(stat);
            }
            let (error_type, error_message) = wso2_classify(code);
            p.fields.insert("error_code".into(), code.to_string());
            p.fields.insert("error_type".into(), error_type.into());
            p.fields.insert("error_message".into(), error_message.into());
            p.fields.insert("level".into(), level(code).into());
            p.fields.insert("target_response_code".into(), "-1".into());
            p.outcome = format!("{code}");
        };
        if kind == Kind::NotFound {
            refuse(&mut p, self, 404, false, None);
            return self.finish(w, p);
        }
        if a.blocked {
            route(&mut p, None);
            refuse(&mut p, self, 700700, true, None);
            return self.finish(w, p);
        }
        if kind == Kind::WrongMethod {
            route(&mut p, None);
            refuse(&mut p, self, 900906, true, None);
            return self.finish(w, p);
        }
        let resource = if kind == Kind::Open { "/r0" } else { "/r1" };
        route(&mut p, Some(resource));
        let app = match kind {
            Kind::Missing => {
                p.counters.push("apim.auth.refused.missing".into());
                refuse(&mut p, self, 900902, true, None);
                return self.finish(w, p);
            }
            Kind::BadKey | Kind::BadJwt => {
                p.some_reason = true;
                refuse(&mut p, self, 900901, true, None);
                return self.finish(w, p);
            }
            Kind::ApiKey { app, .. } | Kind::Jwt { app } => Some(app),
            _ => None,
        };
        if let Some(app) = app {
            let Some(tier) = w.subs.get(&(app, api)) else {
                p.counters.push("apim.auth.refused.resource_forbidden".into());
                refuse(&mut p, self, 900908, true, None);
                return self.finish(w, p);
            };
            let g = &w.apps[app];
            p.fields.insert("application_id".into(), format!("app{app}"));
            p.fields.insert("application_name".into(), g.name_shown.into());
            p.fields.insert("application_owner".into(), g.owner.into());
            p.fields.insert("key_type".into(), if g.sandbox { "SANDBOX" } else { "PRODUCTION" }.into());
            p.fields.insert("tier".into(), (*tier).into());
            if matches!(kind, Kind::Jwt { .. }) {
                p.fields.insert("user_name".into(), g.user.into());
            }
            let used = self.used.entry((app, api)).or_default();
            if *tier == "T1" && *used >= 1 {
                refuse(&mut p, self, 900804, true, Some(app));
                return self.finish(w, p);
            }
            *used += 1;
        }
        p.forwarded = true;
        if w.api_stats {
            p.counters.push(format!("{api_prefix}.allowed"));
        }
        if let Some(stat) = app.and_then(|app| self.app_stat(w, app, "allowed")) {
            p.counters.push(stat);
        }
        match backend {
            Backend::Answers(status) => {
                p.fields.insert("target_response_code".into(), status.to_string());
                p.outcome = format!("backend {status}");
            }
            Backend::Fails(_, flag) => {
                // README: 101503 connection failed; 101504 + state (3: the request fully sent).
                let code = if flag == "UF" { 101503 } else { 101507 };
                refuse(&mut p, self, code, true, app);
            }
        }
        self.finish(w, p)
    }

    fn finish(&mut self, w: &World, mut p: Predicted) -> Predicted {
        if !w.fields {
            p.fields.clear();
        }
        p.counters.sort();
        p
    }
}

/// The path without the `apikey` query parameter (README: `original_path` never holds it).
fn strip_apikey(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else { return path.to_string() };
    let kept: Vec<&str> = query.split('&').filter(|pair| !pair.starts_with("apikey=")).collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The backend's answer as Envoy hands it over: its status, or (with response `flags`) the
/// status Envoy answers a failed upstream with.
pub(super) fn backend_answer(host: &mut FakeHost, status: u16, flags: u64) {
    host.response = [(":status".to_string(), status.to_string().into_bytes())].into_iter().collect();
    host.properties.insert("response.flags".into(), flags.to_le_bytes().to_vec());
    let details: &[u8] =
        if flags == 0 { b"via_upstream" } else { b"upstream_reset_before_response_started{connection_failure}" };
    host.properties.insert("response.code_details".into(), details.to_vec());
}

/// The access-log fields the host holds, by their short names.
pub(super) fn fields_of(host: &FakeHost, structured: bool) -> BTreeMap<String, String> {
    if structured {
        let bytes = host.properties.get(crate::observe::STRUCT_PROPERTY).cloned().unwrap_or_default();
        return crate::observe::decode_struct(&bytes).into_iter().collect();
    }
    host.properties
        .iter()
        .filter_map(|(name, value)| {
            let short = name.strip_prefix("apim.")?;
            Some((short.to_string(), String::from_utf8_lossy(value).into_owned()))
        })
        .collect()
}

/// Counter names the documents allow (README "Metrics" and "Observability").
fn documented(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    let code = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let levels = [
        "routing",
        "lifecycle",
        "request",
        "authentication",
        "authorization",
        "blocking",
        "api",
        "resource",
        "subscription",
        "application",
        "custom",
        "burst",
        "hard_limit",
        "throttling",
        "transport",
    ];
    match parts.as_slice() {
        ["apim", "fault", c] => code(c),
        ["apim", "auth", "refused", reason] => word(reason),
        ["apim", "backend_jwt", "issued"] => true,
        ["apim", "api", _, "version", ..] => {
            name.ends_with(".allowed")
                || levels.iter().any(|l| name.ends_with(&format!(".level.{l}"))) && name.contains(".refused.code.")
        }
        ["apim", "application", _, "owner", _, outcome] => *outcome == "allowed" || *outcome == "refused",
        _ => false,
    }
}

fn disagree(found: &mut BTreeMap<String, (usize, String)>, class: &str, detail: String) {
    let entry = found.entry(class.to_string()).or_insert((0, detail));
    entry.0 += 1;
}

const SEEDS: u64 = 100;
const REQUESTS_PER_SEED: usize = 30;

#[test]
fn what_operators_see_is_what_the_documents_and_wso2_analytics_say_and_never_a_secret() {
    let seeds: Vec<u64> = match std::env::var("OBS_SEED") {
        Ok(seed) => vec![seed.parse().expect("OBS_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    let mut found = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut requests, mut lines_checked, mut jwts_issued) = (0usize, 0usize, 0usize);
    for &seed in &seeds {
        let mut rng = Rng(seed ^ 0x0b5e_7fe1_d5a1_0001);
        let mut w = world(&mut rng);
        let mut host = FakeHost::default();
        let mut config = w.config.take().unwrap();
        crate::stream::prepare_counters(&mut host, &mut config);
        let config = Rc::new(config);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        let mut model = Model::default();
        let mut secrets: Vec<String> = vec![SECRET.into(), WRONG_SECRET.into()];
        secrets.extend(w.apps.iter().map(|app| app.key.clone()));
        capture_all_logs();
        let mut seen_lines = 0;
        for n in 0..REQUESTS_PER_SEED {
            let api = rng.below(w.apis.len());
            let kind = match rng.below(12) {
                0 | 1 => Kind::Open,
                2..=4 => {
                    Kind::ApiKey { app: rng.below(w.apps.len()), in_query: w.apis[api].in_query && rng.chance(50) }
                }
                5..=7 => Kind::Jwt { app: rng.below(w.apps.len()) },
                8 => Kind::Missing,
                9 => [Kind::BadKey, Kind::BadJwt][rng.below(2)],
                10 => Kind::NotFound,
                _ => Kind::WrongMethod,
            };
            let backend = match rng.below(6) {
                0 => Backend::Fails(0x20, "UF"),
                1 => Backend::Fails(0x4, "UT"),
                2 => Backend::Answers(500),
                _ => Backend::Answers(200),
            };
            let a = &w.apis[api];
            let mut path = format!("{}/{}/{}", a.context, a.version, if kind == Kind::Open { "r0" } else { "r1" });
            let mut headers: Vec<(String, String)> = vec![(":method".into(), "GET".into())];
            match kind {
                Kind::ApiKey { app, in_query: true } => {
                    let key = &w.apps[app].key;
                    path = if rng.chance(50) {
                        format!("{path}?apikey={key}")
                    } else {
                        format!("{path}?x=1&apikey={key}")
                    };
                }
                Kind::ApiKey { app, in_query: false } => headers.push(("apikey".into(), w.apps[app].key.clone())),
                Kind::Jwt { app } => {
                    let jwt = token(SECRET, w.apps[app].user, &format!("cid{app}"));
                    headers.push(("authorization".into(), format!("Bearer {jwt}")));
                    secrets.push(jwt);
                }
                Kind::BadKey => {
                    let bogus = format!("bogus-{:016x}", rng.next());
                    headers.push(("apikey".into(), bogus.clone()));
                    secrets.push(bogus);
                }
                Kind::BadJwt => {
                    let jwt = token(WRONG_SECRET, "mallory", "cid0");
                    headers.push(("authorization".into(), format!("Bearer {jwt}")));
                    secrets.push(jwt);
                }
                Kind::NotFound => path = format!("/nowhere/{n}?q={:x}", rng.next()),
                Kind::WrongMethod => headers[0].1 = "DELETE".into(),
                _ => {}
            }
            headers.push((":path".into(), path.clone()));
            let expected = model.predict(&w, api, kind, backend, &path);
            let shared = std::mem::take(&mut host.shared);
            host = FakeHost {
                request: headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
                shared,
                now: START,
                ..Default::default()
            };
            let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
            let flow = stream.on_request_headers(&mut host, true);
            let context = format!("seed {seed} request {n}: {kind:?} {backend:?} on {path}");
            if (flow == Flow::Continue) != expected.forwarded {
                disagree(&mut found, "forwarded or not", format!("{context}: {flow:?}, sent {:?}", host.sent));
                continue;
            }
            if expected.forwarded {
                if w.backend_jwt {
                    if let Some(jwt) = host.request.get("x-backend-jwt") {
                        secrets.push(String::from_utf8_lossy(jwt).into_owned());
                        jwts_issued += 1;
                    }
                }
                let (status, flags) = match backend {
                    Backend::Answers(status) => (status, 0),
                    Backend::Fails(flags, flag) => (if flag == "UT" { 504 } else { 503 }, flags),
                };
                backend_answer(&mut host, status, flags);
                stream.on_response_headers(&mut host);
            }
            requests += 1;
            *outcomes.entry(expected.outcome.clone()).or_default() += 1;
            let got_fields = fields_of(&host, w.structured);
            if got_fields != expected.fields {
                let keys: BTreeSet<&String> = got_fields.keys().chain(expected.fields.keys()).collect();
                for key in keys {
                    if got_fields.get(key) != expected.fields.get(key) {
                        disagree(
                            &mut found,
                            &format!("field {key}"),
                            format!(
                                "{context}: filter {:?}, model {:?}",
                                got_fields.get(key),
                                expected.fields.get(key)
                            ),
                        );
                    }
                }
            }
            let mut counters: Vec<String> = host.counters.clone();
            counters.retain(|name| name != "apim.backend_jwt.issued" || !w.backend_jwt);
            let mut reasons: Vec<String> = Vec::new();
            if expected.some_reason {
                counters.retain(|name| match name.strip_prefix("apim.auth.refused.") {
                    Some(reason) => {
                        reasons.push(reason.to_string());
                        false
                    }
                    None => true,
                });
                if reasons.len() != 1 {
                    disagree(&mut found, "one refusal reason", format!("{context}: {reasons:?}"));
                }
            }
            counters.sort();
            if counters != expected.counters {
                disagree(
                    &mut found,
                    "counters",
                    format!("{context}: filter {counters:?}, model {:?}", expected.counters),
                );
            }
            for name in &host.counters {
                if !documented(name) {
                    disagree(&mut found, "undocumented counter", format!("{context}: {name}"));
                }
            }
            // No secret anywhere operators look: fields (names and values), counters, log lines,
            // and the `:path` Envoy's access log prints of a refused request.
            let lines = warnings();
            let new_lines = &lines[seen_lines.min(lines.len())..];
            seen_lines = lines.len();
            lines_checked += new_lines.len();
            let mut visible: Vec<String> = host.counters.clone();
            visible.extend(new_lines.iter().cloned());
            visible.extend(host.properties_set.iter().cloned());
            // The `Struct` is protobuf (its bytes hold line feeds): its decoded values are read.
            visible.extend(got_fields.values().cloned());
            let raw: Vec<String> =
                host.properties.values().map(|value| String::from_utf8_lossy(value).into_owned()).collect();
            if let Some(secret) = secrets.iter().find(|secret| raw.iter().any(|text| text.contains(secret.as_str()))) {
                disagree(&mut found, "secret visible", format!("{context}: {secret} in a property"));
            }
            if !expected.forwarded {
                visible.push(
                    host.request.get(":path").map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default(),
                );
            }
            for text in &visible {
                if let Some(secret) = secrets.iter().find(|secret| text.contains(secret.as_str())) {
                    disagree(&mut found, "secret visible", format!("{context}: {secret} in {text}"));
                }
                if text.contains('\r') || text.contains('\n') {
                    disagree(&mut found, "line break visible", format!("{context}: {text:?}"));
                }
            }
        }
    }
    let summary: Vec<String> =
        found.iter().map(|(class, (count, example))| format!("{class}: {count} (e.g. {example})")).collect();
    assert!(found.is_empty(), "{} disagreement classes:\n{}", found.len(), summary.join("\n"));
    if seeds.len() as u64 == SEEDS {
        assert_eq!(requests, SEEDS as usize * REQUESTS_PER_SEED);
        for outcome in [
            "backend 200",
            "backend 500",
            "404",
            "700700",
            "900906",
            "900902",
            "900901",
            "900908",
            "900804",
            "101503",
            "101507",
        ] {
            assert!(outcomes.get(outcome).copied().unwrap_or(0) >= 3, "{outcome} too rare: {outcomes:?}");
        }
        assert!(jwts_issued > 0, "no backend JWT was issued");
        assert!(lines_checked > 0, "no log line was checked");
    }
}
