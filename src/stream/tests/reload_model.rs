//! A seeded, model-based campaign over configuration updates while traffic and state exist:
//! 2 to 4 workers of one Envoy (one shared store) whose configurations change at different
//! moments (one worker reconfigured, the others later), with limits raised and lowered
//! mid-window, policies renamed or removed, throttling levels added and removed, an API key
//! removed or its hash changed, the key manager removed or its issuer or key changed, the API
//! removed or its resource made open or secured, CORS and the fault format changed, refused
//! configurations, the same configuration again, and requests open across an update. The model
//! is written from README.md ("a live update keeps serving with the previous configuration"),
//! docs/HOWTO.md ("Throttling counts carry over", the counter keys: `subscription:<application>:
//! <context>:<version>:<tier>`, whose tier renamed counts afresh, `application:<application>:<user>`,
//! with no policy name),
//! docs/CONFIG.md (`worker_lease_max` 0 counts every request in shared data) and
//! ARCHITECTURE.md ("a request keeps the table it started with"); it never calls the filter's
//! decision functions. Seed: `RELOAD_SEED`.

use super::claims_model::Rng;
use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const START: u64 = 1_800_000_000;
/// The key manager's possible signing keys: kid, fixture, algorithm.
/// RSA: verification is cheap unoptimized, and the four tokens are signed once for every seed.
const KEYS: [(&str, &str, Algorithm); 2] =
    [("k0", "rsa-a.pem", Algorithm::RS256), ("k1", "rsa-b.pem", Algorithm::RS256)];
const ISSUERS: [&str; 2] = ["https://km-a", "https://km-b"];
const API_KEYS: [&str; 2] = ["key-one-0001", "key-two-0002"];
const ORIGINS: [&str; 2] = ["https://a.example", "https://b.example"];
const FORMATS: [&str; 3] = ["apim-json", "microgateway", "apim-xml"];
const TIER_NAMES: [&str; 3] = ["Gold", "Silver", "Bronze"];

/// One configuration, as the model knows it.
#[derive(Clone, Debug, PartialEq)]
struct Gen {
    /// The key manager's signing key (index of `KEYS`) and issuer (index of `ISSUERS`).
    km: Option<(usize, usize)>,
    api: bool,
    /// The resource is open (`security: []`).
    open: bool,
    /// The application's API key (index of `API_KEYS`).
    api_key: Option<usize>,
    /// Subscription tier: name (index of `TIER_NAMES`) and requests per minute; none: Unlimited.
    tier: Option<(usize, u64)>,
    /// Application policy: requests per minute.
    app_policy: Option<u64>,
    cors: Option<usize>,
    format: usize,
    /// Events per hour of the server-sent-events API `T` (its API-level policy).
    events: u64,
}

impl Gen {
    fn json(&self) -> Value {
        let mut policies = serde_json::Map::new();
        let rule =
            |limit: u64| json!({"requests": limit, "per": "minute", "unit_count": 1, "stop_on_quota_reach": true});
        if let Some((name, limit)) = self.tier {
            policies.insert(TIER_NAMES[name].into(), rule(limit));
        }
        if let Some(limit) = self.app_policy {
            policies.insert("AppPolicy".into(), rule(limit));
        }
        policies.insert(
            "TickPolicy".into(),
            json!({"requests": self.events, "per": "hour", "unit_count": 1, "stop_on_quota_reach": true}),
        );
        let mut app = json!({"id": "app-1", "name": "App", "owner": "o"});
        if let Some(key) = self.api_key {
            app["api_keys"] = json!([{"sha256": crate::hashing::hex(&credential_hash(API_KEYS[key]))}]);
        }
        if self.km.is_some() {
            app["client_ids"] = json!([{"id": "c1", "key_manager": "km"}]);
        }
        if self.app_policy.is_some() {
            app["policy"] = json!("AppPolicy");
        }
        let mut errors = json!({"format": FORMATS[self.format]});
        if let Some(origin) = self.cors {
            errors["cors"] = json!({"allow_origins": [ORIGINS[origin]]});
        }
        let mut config = json!({
            "throttling": {"worker_lease_max": 0, "counter_slots": 4},
            "errors": errors,
            "applications": [app],
            "policies": policies,
        });
        if let Some((key, issuer)) = self.km {
            let (kid, fixture, alg) = KEYS[key];
            config["key_managers"] = json!([{"name": "km", "issuer": ISSUERS[issuer],
                "algorithms": ["RS256"], "jwks": {"keys": [public_key(fixture, alg, kid)]}}]);
        }
        if self.api {
            let mut resource = json!({"method": "GET", "path": "/menu"});
            if self.open {
                resource["security"] = json!([]);
            }
            config["apis"] = json!([{"name": "P", "context": "/p", "version": "1",
                "security": ["oauth2", "api_key"], "endpoints": {"production": "prod"}, "resources": [resource]}]);
        } else {
            config["apis"] = json!([]);
        }
        if let Some(apis) = config["apis"].as_array_mut() {
            apis.push(json!({"name": "T", "context": "/t", "version": "1", "security": [], "policy": "TickPolicy",
                "count_server_sent_events": true, "endpoints": {"production": "sse"},
                "resources": [{"method": "GET", "path": "/*"}]}));
        }
        if self.api {
            let tier = self.tier.map_or("Unlimited", |(name, _)| TIER_NAMES[name]);
            config["subscriptions"] = json!([{"application": "app-1", "api": "P:1", "tier": tier}]);
        }
        config
    }

    /// A configuration the filter must refuse, made from this one (the model's reading of the
    /// reference: a reference to a policy not defined, a resource path that does not parse, an
    /// unknown field, a subscription to an API not configured, an unknown format).
    fn refused(&self, rng: &mut Rng) -> (String, Value) {
        let mut config = self.json();
        let what = match rng.below(4) {
            0 => {
                config["applications"][0]["policy"] = json!("NoSuchPolicy");
                "an application policy not defined"
            }
            1 => {
                config["apis"] = json!([{"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"},
                    "resources": [{"method": "GET", "path": "/menu/{id"}]}]);
                "a resource path that does not parse"
            }
            2 => {
                config["throttling"]["no_such_field"] = json!(1);
                "an unknown field"
            }
            _ => {
                config["errors"]["format"] = json!("soap-fault");
                "an unknown fault format"
            }
        };
        (what.to_string(), config)
    }
}

/// A change an update makes to the latest configuration.
fn changed(rng: &mut Rng, from: &Gen) -> (String, Gen) {
    let mut to = from.clone();
    let what = match rng.below(12) {
        0 => {
            to.km = match from.km {
                Some(_) if rng.chance(40) => None,
                Some((key, issuer)) if rng.chance(50) => Some((1 - key, issuer)),
                Some((key, issuer)) => Some((key, 1 - issuer)),
                None => Some((rng.below(2), rng.below(2))),
            };
            "key manager"
        }
        1 => {
            to.api = !from.api;
            "API removed or added"
        }
        2 => {
            to.open = !from.open;
            "resource open or secured"
        }
        3 => {
            to.api_key = match from.api_key {
                Some(key) if rng.chance(50) => Some(1 - key),
                Some(_) => None,
                None => Some(rng.below(2)),
            };
            "API key"
        }
        4 | 5 => {
            to.tier = match from.tier {
                Some((name, _)) if rng.chance(60) => Some((name, 1 + rng.below(8) as u64)),
                Some((name, limit)) if rng.chance(50) => Some(((name + 1) % TIER_NAMES.len(), limit)),
                Some(_) => None,
                None => Some((rng.below(TIER_NAMES.len()), 1 + rng.below(8) as u64)),
            };
            "subscription tier"
        }
        6 => {
            to.app_policy = match from.app_policy {
                Some(_) if rng.chance(40) => None,
                _ => Some(1 + rng.below(10) as u64),
            };
            "application policy"
        }
        7 => {
            to.cors = if rng.chance(30) { None } else { Some(rng.below(2)) };
            "CORS"
        }
        8 => {
            to.format = rng.below(FORMATS.len());
            "format"
        }
        9 => {
            to.events = 1 + rng.below(8) as u64;
            "events limit"
        }
        _ => "nothing (the same configuration again)",
    };
    (what.to_string(), to)
}

/// A credential a request carries.
#[derive(Clone, Copy, Debug)]
enum Cred {
    None,
    /// A JWT signed with `KEYS[key]`, issued by `ISSUERS[issuer]`.
    Jwt {
        key: usize,
        issuer: usize,
    },
    ApiKey(usize),
}

/// What the model expects: forwarded, or a fault's (code, status).
type Expect = Result<(), (u32, u16)>;

/// A worker: the generation it runs, its configuration and state.
struct Slot {
    generation: usize,
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
}

/// A request forwarded and not yet answered by its backend: the stream, its generation, its
/// origin.
struct Open {
    stream: Stream,
    generation: usize,
    origin: Option<usize>,
    host: FakeHost,
}

/// A server-sent-events response in progress: its stream, generation, and whether it was cut.
struct Events {
    stream: Stream,
    generation: usize,
    host: FakeHost,
}

struct Campaign {
    seed: u64,
    gens: Vec<Gen>,
    workers: Vec<Slot>,
    store: HashMap<String, (Vec<u8>, u32)>,
    now: u64,
    /// The model's counts: (level, window start) -> requests admitted.
    counts: BTreeMap<(&'static str, u64), u64>,
    open: Vec<Open>,
    events: Vec<Events>,
    seen: BTreeMap<String, usize>,
    found: Vec<String>,
}

impl Campaign {
    fn saw(&mut self, what: &str) {
        *self.seen.entry(what.to_string()).or_insert(0) += 1;
    }

    /// A new VM of generation `generation`: its configuration loaded as `on_configure` loads it.
    fn slot(&mut self, generation: usize) -> Slot {
        let text = self.gens[generation].json().to_string();
        let mut config = Config::from_json(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let mut host = FakeHost { now: self.now, shared: std::mem::take(&mut self.store), ..FakeHost::default() };
        crate::stream::prepare_counters(&mut host, &mut config);
        self.store = host.shared;
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        Slot { generation, config: Rc::new(config), worker }
    }

    fn token(&self, key: usize, issuer: usize) -> String {
        thread_local! {
            static TOKENS: RefCell<HashMap<(usize, usize), String>> = RefCell::new(HashMap::new());
        }
        TOKENS.with(|tokens| {
            tokens
                .borrow_mut()
                .entry((key, issuer))
                .or_insert_with(|| {
                    let (kid, fixture, alg) = KEYS[key];
                    let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": kid}).to_string();
                    let payload = json!({"iss": ISSUERS[issuer], "sub": "o", "client_id": "c1",
                        "exp": START + 10_000_000, "iat": START - 10, "jti": format!("j{key}{issuer}")})
                    .to_string();
                    sign_raw(&header, &payload, fixture, alg)
                })
                .clone()
        })
    }

    /// The model: what generation `g` answers to `cred` now, counting what it admits.
    fn predict(&mut self, g: usize, cred: Cred) -> Expect {
        let gen = self.gens[g].clone();
        if !gen.api {
            return Err((404, 404));
        }
        if gen.open {
            return Ok(());
        }
        let known = match cred {
            Cred::None => return Err((900902, 401)),
            Cred::Jwt { key, issuer } => gen.km == Some((key, issuer)),
            Cred::ApiKey(key) => gen.api_key == Some(key),
        };
        if !known {
            return Err((900901, 401));
        }
        let window = self.now - self.now % 60;
        let levels: Vec<(&'static str, u64, u32)> = [
            // The subscription's counter is keyed by its tier (WSO2's `appId:context:version:subTier`):
            // one moved to another tier counts afresh; the tier's name stands for its key here.
            gen.tier.map(|(name, limit)| (TIER_NAMES[name], limit, 900804)),
            gen.app_policy.map(|limit| ("application", limit, 900803)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut taken = Vec::new();
        for (level, limit, code) in levels {
            let count = self.counts.entry((level, window)).or_insert(0);
            if *count >= limit {
                for level in taken {
                    *self.counts.entry((level, window)).or_insert(1) -= 1;
                }
                return Err((code, 429));
            }
            *count += 1;
            taken.push(level);
        }
        Ok(())
    }

    fn request(&mut self, rng: &mut Rng) {
        let w = rng.below(self.workers.len());
        let cred = match rng.below(5) {
            0 => Cred::None,
            1 | 2 => Cred::Jwt { key: rng.below(2), issuer: rng.below(2) },
            _ => Cred::ApiKey(rng.below(2)),
        };
        let origin = rng.chance(50).then(|| rng.below(2));
        let mut request = vec![(":method".to_string(), "GET".to_string()), (":path".into(), "/p/1/menu".into())];
        match cred {
            Cred::None => {}
            Cred::Jwt { key, issuer } => {
                request.push(("authorization".into(), format!("Bearer {}", self.token(key, issuer))))
            }
            Cred::ApiKey(key) => request.push(("apikey".into(), API_KEYS[key].into())),
        }
        if let Some(origin) = origin {
            request.push(("origin".into(), ORIGINS[origin].into()));
        }
        let mut host = FakeHost { now: self.now, shared: std::mem::take(&mut self.store), ..FakeHost::default() };
        host.request = request.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        host.response = [(":status".to_string(), b"200".to_vec())].into_iter().collect();
        let slot = &self.workers[w];
        let (g, mut stream) = (slot.generation, Stream::new(Rc::clone(&slot.config), Rc::clone(&slot.worker)));
        let flow = stream.on_request_headers(&mut host, true);
        self.store = std::mem::take(&mut host.shared);
        let expect = self.predict(g, cred);
        let what = format!("worker {w} gen {g} {:?} cred {cred:?} origin {origin:?} now {}", self.gens[g], self.now);
        match (flow, expect) {
            (Flow::Continue, Ok(())) => {
                self.saw(if self.gens[g].open { "forwarded open" } else { "forwarded secured" });
                if rng.chance(30) {
                    // Left open across what comes next: answered later.
                    self.open.push(Open { stream, generation: g, origin, host });
                    self.saw("left open");
                } else {
                    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
                    let allowed = header(&host.response, "access-control-allow-origin");
                    self.check_cors(g, origin, allowed, &what);
                }
            }
            (Flow::Answered, Err((code, status))) => {
                let (got_status, headers, body) = host.sent.clone().unwrap_or_default();
                let body = String::from_utf8_lossy(&body).to_string();
                let got_code = code_of(&body);
                self.saw(&format!("fault {code}"));
                if (got_code, got_status) != (Some(code), status) {
                    self.found.push(format!("fault: expected {code}/{status}, got {got_code:?}/{got_status}: {what}"));
                }
                // API-M's XML names auth faults `ams:`, throttling faults `amt:` (WSO2-CONTRACT.md).
                let xml = match code / 100 {
                    9009 => "<ams:fault",
                    9008 => "<amt:fault",
                    _ => "<am:fault",
                };
                // The Microgateway's 404 is its "status report" body (docs/ERROR-CODES.md).
                let micro = if code == 404 { "{\"code\"" } else { "{\"fault\"" };
                let marker = ["{\"code\"", micro, xml][self.gens[g].format];
                if !body.starts_with(marker) {
                    self.found.push(format!("format: expected {marker}..., got {body}: {what}"));
                }
                let allowed: HashMap<String, Vec<u8>> =
                    headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes())).collect();
                self.check_cors(g, origin, header(&allowed, "access-control-allow-origin"), &what);
            }
            (flow, expect) => {
                let sent = host.sent.as_ref().map(|(s, _, b)| (*s, String::from_utf8_lossy(b).to_string()));
                self.found.push(format!("decision: expected {expect:?}, got {flow:?} {sent:?}: {what}"));
            }
        }
    }

    fn check_cors(&mut self, g: usize, origin: Option<usize>, got: Option<String>, what: &str) {
        let expect = match (self.gens[g].cors, origin) {
            (Some(allowed), Some(origin)) if allowed == origin => Some(ORIGINS[origin].to_string()),
            _ => None,
        };
        if expect.is_some() {
            self.saw("cors allowed");
        }
        if got != expect {
            self.found.push(format!("cors: expected {expect:?}, got {got:?}: {what}"));
        }
    }

    /// A request for the events of `T`: refused before its backend is asked when its first event
    /// would be refused now (docs/CONFIG.md `count_server_sent_events`), else not counted.
    fn subscribe(&mut self, rng: &mut Rng) {
        let w = rng.below(self.workers.len());
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/t/1/prices")]);
        host.now = self.now;
        host.shared = std::mem::take(&mut self.store);
        let slot = &self.workers[w];
        let (g, mut stream) = (slot.generation, Stream::new(Rc::clone(&slot.config), Rc::clone(&slot.worker)));
        let flow = stream.on_request_headers(&mut host, true);
        let spent =
            self.counts.get(&("events", self.now - self.now % 3600)).copied().unwrap_or(0) >= self.gens[g].events;
        let what = format!("subscribe on worker {w} gen {g} limit {} now {}", self.gens[g].events, self.now);
        match (flow, spent) {
            (Flow::Continue, false) => {
                host.response.insert(":status".into(), b"200".to_vec());
                let flow = stream.on_response_headers(&mut host);
                self.store = std::mem::take(&mut host.shared);
                if flow != Flow::Continue {
                    self.found.push(format!("events: response headers {flow:?}: {what}"));
                }
                self.events.push(Events { stream, generation: g, host });
                self.saw("events subscribed");
            }
            (Flow::Answered, true) => {
                self.store = std::mem::take(&mut host.shared);
                let got =
                    host.sent.as_ref().map(|(status, _, body)| (*status, code_of(&String::from_utf8_lossy(body))));
                if got != Some((429, Some(900800))) {
                    self.found.push(format!("events: subscribe refused with {got:?}: {what}"));
                }
                self.saw("events refused at subscribe");
            }
            (flow, _) => {
                self.store = std::mem::take(&mut host.shared);
                self.found.push(format!("events: subscribe {flow:?}, spent {spent}: {what}"));
            }
        }
    }

    /// One event of a response in progress: counted under the configuration its request started
    /// with (ARCHITECTURE.md), against the count every configuration shares (docs/HOWTO.md); the
    /// first over that limit ends the stream at once.
    fn event(&mut self, rng: &mut Rng) {
        if self.events.is_empty() {
            return;
        }
        let at = rng.below(self.events.len());
        let mut open = self.events.swap_remove(at);
        open.host.shared = std::mem::take(&mut self.store);
        open.host.now = self.now;
        let chunk = b"data: tick\n\n".to_vec();
        open.host.bodies[crate::host::Direction::Response as usize] = chunk.clone();
        let flow = open.stream.on_response_body(&mut open.host, chunk.len(), false);
        self.store = std::mem::take(&mut open.host.shared);
        let went_on = open.host.bodies[crate::host::Direction::Response as usize].clone();
        let g = open.generation;
        if self.workers.iter().any(|slot| slot.generation != g) {
            self.saw("event across an update");
        }
        let key = ("events", self.now - self.now % 3600);
        let count = self.counts.get(&key).copied().unwrap_or(0);
        let what = format!("event of gen {g} limit {} count {count} now {}", self.gens[g].events, self.now);
        if count >= self.gens[g].events {
            self.saw("event cut");
            if flow != Flow::Continue || !went_on.is_empty() || !open.host.closed {
                self.found.push(format!(
                    "events: expected the cut, got {flow:?} {went_on:?} closed {}: {what}",
                    open.host.closed
                ));
            }
            return;
        }
        *self.counts.entry(key).or_insert(0) += 1;
        self.saw("event passed");
        if flow != Flow::Continue || went_on != chunk || open.host.closed {
            self.found.push(format!(
                "events: expected it through, got {flow:?} {went_on:?} closed {}: {what}",
                open.host.closed
            ));
        } else {
            self.events.push(open);
        }
    }

    /// A request left open is answered by its backend: its configuration is the one it started
    /// with (ARCHITECTURE.md), whatever its worker runs now.
    fn answer_one(&mut self, rng: &mut Rng) {
        if self.open.is_empty() {
            return;
        }
        let mut open = self.open.swap_remove(rng.below(self.open.len()));
        open.host.shared = std::mem::take(&mut self.store);
        open.host.now = self.now;
        let flow = open.stream.on_response_headers(&mut open.host);
        self.store = std::mem::take(&mut open.host.shared);
        let what = format!("open stream of gen {} {:?}", open.generation, self.gens[open.generation]);
        if flow != Flow::Continue || open.host.sent.is_some() {
            self.found.push(format!("open stream: answered {flow:?} {:?}: {what}", open.host.sent));
        }
        if self.workers.iter().any(|slot| slot.generation != open.generation) {
            self.saw("answered across an update");
        }
        let allowed = header(&open.host.response, "access-control-allow-origin");
        self.check_cors(open.generation, open.origin, allowed, &what);
    }

    /// An update: a new configuration (or a refused one) reaches some workers now.
    fn update(&mut self, rng: &mut Rng) {
        let latest = self.gens.len() - 1;
        if rng.chance(15) {
            let (what, bad) = self.gens[latest].refused(rng);
            assert!(Config::from_json(bad.to_string().as_bytes()).is_err(), "seed {}: not refused: {what}", self.seed);
            // `on_configure` fails: every worker keeps its configuration and state.
            self.saw("refused");
            return;
        }
        let (what, next) = changed(rng, &self.gens[latest]);
        self.saw(&format!("update: {what}"));
        self.gens.push(next);
        let g = self.gens.len() - 1;
        let reached: Vec<usize> = (0..self.workers.len()).filter(|_| rng.chance(50)).collect();
        let reached = if reached.is_empty() { vec![rng.below(self.workers.len())] } else { reached };
        if reached.len() < self.workers.len() {
            self.saw("workers on different configurations");
        }
        for w in reached {
            self.workers[w] = self.slot(g);
        }
    }

    /// The update reaches a worker that had not had it.
    fn catch_up(&mut self, rng: &mut Rng) {
        let latest = self.gens.len() - 1;
        let w = rng.below(self.workers.len());
        if self.workers[w].generation != latest {
            self.workers[w] = self.slot(latest);
            self.saw("caught up");
        }
    }
}

/// The JWK of a fixture's key, made once (from the private key's PEM, slow unoptimized).
fn public_key(fixture: &'static str, alg: Algorithm, kid: &'static str) -> Value {
    thread_local! {
        static JWKS: RefCell<HashMap<&'static str, Value>> = RefCell::new(HashMap::new());
    }
    JWKS.with(|jwks| jwks.borrow_mut().entry(kid).or_insert_with(|| jwk(fixture, alg, kid)).clone())
}

fn code_of(body: &str) -> Option<u32> {
    let at = body.find("code")?;
    let digits: String =
        body[at..].chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn header(headers: &HashMap<String, Vec<u8>>, name: &str) -> Option<String> {
    headers.get(name).map(|value| String::from_utf8_lossy(value).to_string())
}

fn run(seed: u64) -> (BTreeMap<String, usize>, Vec<String>, usize) {
    let mut rng = Rng(seed);
    let first = Gen {
        km: Some((rng.below(2), rng.below(2))),
        api: true,
        open: rng.chance(20),
        api_key: Some(rng.below(2)),
        tier: Some((rng.below(TIER_NAMES.len()), 2 + rng.below(6) as u64)),
        app_policy: rng.chance(50).then(|| 2 + rng.below(8) as u64),
        cors: rng.chance(50).then(|| rng.below(2)),
        format: rng.below(FORMATS.len()),
        events: 1 + rng.below(8) as u64,
    };
    let mut c = Campaign {
        seed,
        gens: vec![first],
        workers: Vec::new(),
        store: HashMap::new(),
        now: START + rng.below(100_000) as u64,
        counts: BTreeMap::new(),
        open: Vec::new(),
        events: Vec::new(),
        seen: BTreeMap::new(),
        found: Vec::new(),
    };
    for _ in 0..2 + rng.below(3) {
        let slot = c.slot(0);
        c.workers.push(slot);
    }
    let mut requests = 0;
    for _ in 0..120 {
        match rng.below(100) {
            0..=7 => c.subscribe(&mut rng),
            8..=69 => {
                c.request(&mut rng);
                requests += 1;
            }
            70..=79 => c.update(&mut rng),
            80..=85 => c.catch_up(&mut rng),
            86..=89 => c.answer_one(&mut rng),
            90..=95 => c.event(&mut rng),
            _ => c.now += *rng.pick(&[1, 5, 20, 60]),
        }
    }
    while !c.open.is_empty() {
        c.answer_one(&mut rng);
    }
    (c.seen, c.found, requests)
}

#[test]
fn configuration_updates_across_workers_keep_to_the_model() {
    let seeds: Vec<u64> = match std::env::var("RELOAD_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=60).map(|s| s * 0x9e37_79b9).collect(),
    };
    let mut seen = BTreeMap::new();
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut requests = 0;
    for seed in &seeds {
        let (s, f, r) = run(*seed);
        requests += r;
        for (what, n) in s {
            *seen.entry(what).or_insert(0) += n;
        }
        for finding in f {
            let class = finding.split(':').next().unwrap_or_default().to_string();
            found.entry(class).or_default().push(format!("seed {seed} (RELOAD_SEED={seed}): {finding}"));
        }
    }
    let summary: Vec<String> =
        found.iter().map(|(class, all)| format!("{class}: {} e.g. {}", all.len(), all[0])).collect();
    assert!(found.is_empty(), "{} requests; disagreements:\n{}", requests, summary.join("\n"));
    eprintln!("{} seeds, {requests} requests: {seen:?}", seeds.len());
    if seeds.len() == 1 {
        return;
    }
    for class in [
        "forwarded open",
        "forwarded secured",
        "fault 404",
        "fault 900901",
        "fault 900902",
        "fault 900803",
        "fault 900804",
        "cors allowed",
        "left open",
        "answered across an update",
        "refused",
        "workers on different configurations",
        "caught up",
        "update: key manager",
        "update: API removed or added",
        "update: resource open or secured",
        "update: API key",
        "update: subscription tier",
        "update: application policy",
        "update: CORS",
        "update: format",
        "update: events limit",
        "events subscribed",
        "events refused at subscribe",
        "event passed",
        "event cut",
        "event across an update",
        "update: nothing (the same configuration again)",
    ] {
        assert!(seen.get(class).copied().unwrap_or(0) > 0, "never seen: {class}; seen {seen:?}");
    }
}
