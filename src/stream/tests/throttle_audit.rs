//! The audit of throttling decisions against WSO2 API Manager 4.x's gateway: which requests share
//! a counter at each level, which level answers first, what a request denied (or let through over
//! quota) at one level counts at the others. Seeded random policies and callers (one user through
//! two applications, two users of one application, user names differing in case or by the
//! gateway's tenant suffix, another tenant's user, production and sandbox keys, default-version
//! and versioned paths, open resources from several client addresses) go through the filter's
//! real request path (the fake host); an independent model written from carbon-apimgt's
//! `ThrottleHandler` (never the filter's throttle code) predicts each outcome.
//! `THROTTLE_AUDIT_SEED=<n>` runs one seed (printed on failure).
//!
//! WSO2's side (wso2/carbon-apimgt, 4.2 line, mirror binodmx/wso2-carbon-apimgt at 389d4e22,
//! `components/apimgt/org.wso2.carbon.apimgt.gateway/.../handlers/throttling/ThrottleHandler.java`,
//! `doRoleBasedAccessThrottlingWithCEP`, lines 148-505):
//! - `authorizedUser` = the auth context's user, `@<API tenant>` appended unless it contains the
//!   tenant (199-204): `bob` and `bob@carbon.super` are one user, `Bob` and `bob@wso2.com` others.
//! - API level `context:version` (235) replaces the resource level `context/version<uri>:<verb>`
//!   (`VerbInfoDTO.getRequestKey`, 250-258); `userLevel` appends `_<authorizedUser>` (268-271).
//!   A default-version request is dispatched to the versioned API: one set of keys.
//! - subscription `appId:context:version:tier` (`getSubscriptionLevelThrottleKey`, 488-499), burst
//!   control on the same key in the gateway's own throttle (`isSubscriptionLevelSpike`, 944-975,
//!   checked only when the subscription is not over, 374-376).
//! - application `appId:authorizedUser` (234); custom key templates (`validateCustomPolicy`);
//!   hard limit `context:version:keyType` (`isHardLimitThrottled`, 1060-1095), checked last.
//! - Order: API/resource (900800/900802) stops everything; then subscription (900804), burst
//!   (900807), application (900803), custom (900806), hard limit (900801, 503). A request is
//!   counted (`publishNonThrottledEvent`, 395-404) only when no level throttled it: a denial counts
//!   nowhere. A subscription over quota with `stopOnQuotaReach` false goes through flagged
//!   without the application, custom and hard-limit checks (433-442) and unpublished: it counts
//!   nowhere either.
//! - An open resource (`APIAuthenticationHandler.handleNoAuthentication`, 478-517): application
//!   id = the client's address, tier `Unauthenticated` (stop on quota reach, no burst), user
//!   `anonymous`, key type PRODUCTION, no application tier.
//!
//! Documented choices of the filter the model follows (README, HOWTO's counter-key table): the
//! client address is the connection's (not `X-Forwarded-For`'s first entry), burst control
//! denies with 900807 even without stop-on-quota-reach (WSO2-CONTRACT.md's order; WSO2's code
//! lets it through flagged).

use super::*;
use crate::host::fuzz::Rng;
use std::collections::BTreeMap;

const START: u64 = 1_800_000_000;
const SECRET: &str = "a-shared-hmac-secret-of-at-least-32-bytes";
const USERS: [&str; 6] = ["alice", "Alice", "alice@carbon.super", "bob", "bob@wso2.com", "bob@carbon.super"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "192.0.2.7", "2001:db8::5"];
const UNITS: [(&str, u64); 3] = [("second", 1), ("minute", 60), ("hour", 3600)];

/// An HS256 user token of the key manager `km` for the client `cid<app>`, acting for `sub`.
fn token(app: usize, sub: &str) -> String {
    use base64::Engine;
    let claims = serde_json::json!({"iss": "https://km", "sub": sub, "client_id": format!("cid{app}"),
        "aut": "APPLICATION_USER", "exp": START + 10_000_000});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#), b64.encode(claims.to_string()));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    format!("{input}.{}", jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap())
}

/// A request-count policy: limit per window, stop on quota reach, burst (requests, window).
#[derive(Clone, Copy, Debug)]
struct Pol {
    limit: u64,
    window: u64,
    per_user: bool,
    stop: bool,
    burst: Option<(u64, u64)>,
}

fn gen_pol(rng: &mut Rng, json: &mut Vec<String>, name: &str, level: &str) -> Pol {
    let (unit, window) = *rng.pick(&UNITS);
    let limit = 1 + rng.below(5) as u64;
    let mut pol = Pol { limit, window, per_user: level == "api" && rng.chance(2), stop: true, burst: None };
    let mut text = format!(r#""{name}":{{"requests":{limit},"per":"{unit}""#);
    if level == "api" {
        text.push_str(&format!(r#","per_user":{}"#, pol.per_user));
    }
    if level == "sub" {
        pol.stop = !rng.chance(3);
        text.push_str(&format!(r#","stop_on_quota_reach":{}"#, pol.stop));
        if limit > 1 && window > 1 && rng.chance(3) {
            let requests = 1 + rng.below(limit as usize - 1) as u64;
            text.push_str(&format!(r#","burst":{{"requests":{requests},"per":"second"}}"#));
            pol.burst = Some((requests, 1));
        }
    }
    text.push('}');
    json.push(text);
    pol
}

struct App {
    owner: &'static str,
    key: String,
    sandbox: bool,
    pol: Option<Pol>,
}

/// An API as generated: its API policy, its resources' policies, its hard limit.
type ApiGen = (Option<Pol>, [Option<Pol>; 3], Option<(u64, bool)>);

struct World {
    /// Per API: its API policy, its two secured resources' and its open resource's policies,
    /// its hard limit (requests per second, sandbox).
    apis: Vec<ApiGen>,
    apps: Vec<App>,
    subs: BTreeMap<(usize, usize), Option<Pol>>,
    unauthenticated: Option<Pol>,
    customs: Vec<(&'static str, u64, u64)>,
    config: Rc<Config>,
    json: String,
}

fn world(rng: &mut Rng, host: &mut FakeHost) -> World {
    let mut policies = Vec::new();
    let (mut apis, mut apis_json, mut hard_json) = (Vec::new(), Vec::new(), Vec::new());
    for a in 0..1 + rng.below(2) {
        let api_pol = rng.chance(4).then(|| gen_pol(rng, &mut policies, &format!("A{a}"), "api"));
        let mut res = [None; 3];
        let mut res_json = Vec::new();
        for (r, slot) in res.iter_mut().enumerate() {
            *slot = rng.chance(2).then(|| gen_pol(rng, &mut policies, &format!("R{a}{r}"), "api"));
            let policy = if slot.is_some() { format!(r#","policy":"R{a}{r}""#) } else { String::new() };
            let security = if r == 2 { r#","security":[]"# } else { "" };
            res_json.push(format!(r#"{{"method":"GET","path":"/r{r}"{policy}{security}}}"#));
        }
        let policy = api_pol.map(|_| format!(r#""policy":"A{a}","#)).unwrap_or_default();
        apis_json.push(format!(
            r#"{{"name":"N{a}","context":"/c{a}","version":"1","default_version":true,"security":["api_key","oauth2"],{policy}
                "endpoints":{{"production":"prod","sandbox":"sand"}},"resources":[{}]}}"#,
            res_json.join(",")
        ));
        let hard = rng.chance(4).then(|| (1 + rng.below(3) as u64, rng.chance(3)));
        if let Some((rps, sandbox)) = hard {
            let key_type = if sandbox { r#","key_type":"SANDBOX""# } else { "" };
            hard_json.push(format!(r#"{{"api":"N{a}:1","requests_per_second":{rps}{key_type}}}"#));
        }
        apis.push((api_pol, res, hard));
    }
    let (mut apps, mut apps_json, mut subs, mut subs_json) = (Vec::new(), Vec::new(), BTreeMap::new(), Vec::new());
    for p in 0..2 + rng.below(2) {
        let owner = *rng.pick(&USERS);
        let pol = rng.chance(2).then(|| gen_pol(rng, &mut policies, &format!("P{p}"), "app"));
        let key = format!("key-{p}-{}", rng.word());
        let sandbox = rng.chance(3);
        let key_type = if sandbox { "SANDBOX" } else { "PRODUCTION" };
        let policy = pol.map(|_| format!(r#","policy":"P{p}""#)).unwrap_or_default();
        apps_json.push(format!(
            r#"{{"id":"app{p}","name":"App{p}","owner":"{owner}"{policy},"api_keys":[{{"sha256":"{}","key_type":"{key_type}"}}],
                "client_ids":[{{"id":"cid{p}","key_type":"{key_type}"}}]}}"#,
            crate::hashing::hex(&credential_hash(&key)),
        ));
        apps.push(App { owner, key, sandbox, pol });
        for a in 0..apis.len() {
            let tier = (!rng.chance(5)).then(|| gen_pol(rng, &mut policies, &format!("S{p}{a}"), "sub"));
            let name = if tier.is_some() { format!("S{p}{a}") } else { "Unlimited".to_string() };
            subs_json.push(format!(r#"{{"application":"app{p}","api":"N{a}:1","tier":"{name}"}}"#));
            subs.insert((p, a), tier);
        }
    }
    let unauthenticated = (!rng.chance(3)).then(|| {
        let (unit, window) = *rng.pick(&UNITS);
        let limit = 1 + rng.below(4) as u64;
        policies.push(format!(r#""Unauthenticated":{{"requests":{limit},"per":"{unit}"}}"#));
        Pol { limit, window, per_user: false, stop: true, burst: None }
    });
    let mut customs = Vec::new();
    let mut customs_json = Vec::new();
    for c in 0..rng.below(2) {
        let template = *rng.pick(&["$userId", "$appId:$apiContext", "$clientIp:$apiVersion"]);
        let (unit, window) = *rng.pick(&UNITS);
        let limit = 2 + rng.below(6) as u64;
        customs_json.push(format!(r#"{{"name":"C{c}","key":"{template}","requests":{limit},"per":"{unit}"}}"#));
        customs.push((template, limit, window));
    }
    let json = format!(
        r#"{{"key_managers":[{{"name":"km","issuer":"https://km","hmac_secret":"{SECRET}","algorithms":["HS256"]}}],
            "apis":[{}],"applications":[{}],"subscriptions":[{}],"policies":{{{}}},"hard_limits":[{}],"custom_policies":[{}]}}"#,
        apis_json.join(","),
        apps_json.join(","),
        subs_json.join(","),
        policies.join(","),
        hard_json.join(","),
        customs_json.join(",")
    );
    let mut config = Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{json}"));
    crate::stream::prepare_counters(host, &mut config);
    World { apis, apps, subs, unauthenticated, customs, config: Rc::new(config), json }
}

/// WSO2's `authorizedUser`: the tenant appended unless the name contains it.
fn authorized(user: &str) -> String {
    if user.contains("carbon.super") {
        user.to_string()
    } else {
        format!("{user}@carbon.super")
    }
}

/// What a request is: its API, resource (2 is open), application and acting user (`None` for an
/// open resource), client address.
struct Req<'a> {
    api: usize,
    res: usize,
    app: Option<usize>,
    user: &'a str,
    ip: &'a str,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Forwarded,
    Flagged,
    Denied(u32),
}

/// WSO2's Traffic Manager: per key, the window start and the count of published events.
#[derive(Default)]
struct Model {
    counts: HashMap<String, (u64, u64)>,
}

impl Model {
    fn over(&self, key: &str, limit: u64, window: u64, now: u64) -> bool {
        let start = now / window * window;
        self.counts.get(key).is_some_and(|(s, count)| *s == start && *count >= limit)
    }

    fn publish(&mut self, keys: &[(String, u64)], now: u64) {
        for (key, window) in keys {
            let start = now / window * window;
            let entry = self.counts.entry(key.clone()).or_insert((start, 0));
            if entry.0 != start {
                *entry = (start, 0);
            }
            entry.1 += 1;
        }
    }

    /// `doRoleBasedAccessThrottlingWithCEP` for one request.
    fn decide(&mut self, w: &World, r: &Req<'_>, now: u64) -> Outcome {
        let (api_pol, res_pols, hard) = &w.apis[r.api];
        let (context, version) = (format!("/c{}/1", r.api), "1");
        let (app_id, user, tier, sandbox) = match r.app {
            Some(p) => (format!("app{p}"), authorized(r.user), w.subs[&(p, r.api)], w.apps[p].sandbox),
            None => (r.ip.to_string(), authorized("anonymous"), w.unauthenticated, false),
        };
        let mut publish: Vec<(String, u64)> = Vec::new();
        // API level replaces the resource level; `userLevel` appends the user.
        let (level, code) = match api_pol {
            Some(pol) => (Some((format!("{context}:{version}"), *pol)), 900800),
            None => (res_pols[r.res].map(|pol| (format!("{context}/{version}/r{}:GET", r.res), pol)), 900802),
        };
        if let Some((key, pol)) = level {
            let key = if pol.per_user { format!("{key}_{user}") } else { key };
            if self.over(&key, pol.limit, pol.window, now) {
                return Outcome::Denied(code);
            }
            publish.push((key, pol.window));
        }
        if let Some(pol) = tier {
            let tier_name = match r.app {
                Some(p) => format!("S{p}{}", r.api),
                None => "Unauthenticated".to_string(),
            };
            let key = format!("{app_id}:{context}:{version}:{tier_name}");
            if self.over(&key, pol.limit, pol.window, now) {
                // Over quota without stop-on-quota-reach: through, flagged, unpublished.
                return if pol.stop { Outcome::Denied(900804) } else { Outcome::Flagged };
            }
            publish.push((key.clone(), pol.window));
            if let Some((limit, window)) = pol.burst {
                let burst = format!("burst|{key}");
                if self.over(&burst, limit, window, now) {
                    return Outcome::Denied(900807);
                }
                publish.push((burst, window));
            }
        }
        if let Some(pol) = r.app.and_then(|p| w.apps[p].pol) {
            let key = format!("{app_id}:{user}");
            if self.over(&key, pol.limit, pol.window, now) {
                return Outcome::Denied(900803);
            }
            publish.push((key, pol.window));
        }
        for (c, (template, limit, window)) in w.customs.iter().enumerate() {
            // WSO2's application of an open request is its client's address.
            let app = if r.app.is_some() { app_id.as_str() } else { r.ip };
            let key = template
                .replace("$userId", &user)
                .replace("$appId", app)
                .replace("$apiContext", &context)
                .replace("$apiVersion", version)
                .replace("$clientIp", r.ip);
            let key = format!("custom{c}|{key}");
            if self.over(&key, *limit, *window, now) {
                return Outcome::Denied(900806);
            }
            publish.push((key, *window));
        }
        if let Some((rps, hard_sandbox)) = hard.filter(|(_, hard_sandbox)| *hard_sandbox == sandbox) {
            let key = format!("{context}:{version}:{}", if hard_sandbox { "SANDBOX" } else { "PRODUCTION" });
            if self.over(&key, rps, 1, now) {
                return Outcome::Denied(900801);
            }
            publish.push((key, 1));
        }
        self.publish(&publish, now);
        Outcome::Forwarded
    }
}

fn campaign(seed: u64, requests: usize, seen: &mut BTreeMap<String, usize>, failures: &mut Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut host = FakeHost::default();
    let w = world(&mut rng, &mut host);
    let worker = Rc::new(RefCell::new(Worker::new(&w.config)));
    let mut model = Model::default();
    let mut now = START + rng.below(100_000) as u64;
    for i in 0..requests {
        now += match rng.below(10) {
            0..=5 => 0,
            6 | 7 => 1,
            8 => rng.below(90) as u64,
            _ => 3600,
        };
        let api = rng.below(w.apis.len());
        let res = if rng.chance(4) { 2 } else { rng.below(2) };
        let ip = *rng.pick(&IPS);
        let app = (res != 2).then(|| rng.below(w.apps.len()));
        let jwt = rng.chance(2);
        let user = match app {
            Some(p) if !jwt => w.apps[p].owner,
            Some(_) => *rng.pick(&USERS),
            None => "anonymous",
        };
        let address = if ip.contains(':') { format!("[{ip}]:40000") } else { format!("{ip}:40000") };
        host.properties.insert("source.address".into(), address.into_bytes());
        let version = if rng.chance(3) { "" } else { "/1" };
        let path = format!("/c{api}{version}/r{res}");
        let bearer;
        let mut headers = vec![(":method", "GET"), (":path", path.as_str())];
        match app {
            Some(p) if jwt => {
                bearer = format!("Bearer {}", token(p, user));
                headers.push(("authorization", bearer.as_str()));
            }
            Some(p) => headers.push(("apikey", w.apps[p].key.as_str())),
            None => {}
        }
        host.request = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        host.sent = None;
        host.now = now;
        let expect = model.decide(&w, &Req { api, res, app, user, ip }, now);
        let mut stream = Stream::new(Rc::clone(&w.config), Rc::clone(&worker));
        let got = match stream.on_request_headers(&mut host, true) {
            Flow::Continue if host.request.contains_key("x-apim-quota-exceeded") => Outcome::Flagged,
            Flow::Continue => Outcome::Forwarded,
            _ => {
                let (status, _, body) = host.sent.clone().unwrap();
                let body = String::from_utf8(body).unwrap();
                let code = body.split("\"code\":\"").nth(1).and_then(|s| s.get(..6)).and_then(|s| s.parse().ok());
                let code = code.unwrap_or(u32::from(status));
                let want = if code == 900801 { 503 } else { 429 };
                if status != want {
                    failures.push(format!("seed {seed} #{i}: {code} answered {status}"));
                }
                Outcome::Denied(code)
            }
        };
        let class = match (expect, app) {
            (Outcome::Denied(code), None) => format!("open {code}"),
            (Outcome::Denied(code), Some(_)) => code.to_string(),
            (other, _) => format!("{other:?}"),
        };
        *seen.entry(class).or_insert(0) += 1;
        if got != expect {
            failures.push(format!(
                "seed {seed} #{i} now {now} api{api} r{res} app {app:?} user {user} ip {ip} path {path}: WSO2 {expect:?}, filter {got:?}\n{}",
                w.json
            ));
            // The counts part here: what follows would repeat this disagreement.
            return;
        }
    }
}

#[test]
fn throttling_decides_as_wso2s_throttle_handler() {
    let one = std::env::var("THROTTLE_AUDIT_SEED").ok().and_then(|s| s.parse().ok());
    let seeds: Vec<u64> = one.map_or_else(|| (0..120).collect(), |seed| vec![seed]);
    let (mut seen, mut failures) = (BTreeMap::new(), Vec::new());
    for seed in &seeds {
        campaign(*seed, 60, &mut seen, &mut failures);
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for failure in &failures {
        let kind = failure.split(": ").nth(1).and_then(|s| s.split('\n').next()).unwrap_or(failure);
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
    }
    assert!(
        failures.is_empty(),
        "{} disagreements {kinds:?} (THROTTLE_AUDIT_SEED=<seed> runs one), first: {}",
        failures.len(),
        failures[0]
    );
    eprintln!("outcomes: {seen:?}");
    if one.is_none() {
        for class in [
            "Forwarded",
            "Flagged",
            "900800",
            "900801",
            "900802",
            "900803",
            "900804",
            "900806",
            "900807",
            "open 900804",
        ] {
            assert!(seen.get(class).copied().unwrap_or(0) >= 10, "{class} too rare: {seen:?}");
        }
    }
}
