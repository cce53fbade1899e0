//! A seeded, model-based campaign over the life of the credentials other than JWT access tokens
//! across three workers of one Envoy (one shared store, a fake clock): opaque tokens introspected
//! (active or not, `exp` near the clock, answers failing with 5xx, timeouts and garbage, tokens
//! turning inactive at the key manager while cached, bursts joining one call and racing another
//! worker's), the introspection caches' TTLs crossed by the clock; opaque API keys in the header
//! and the query, added, removed and moved between applications by configuration reloads; JWT
//! API keys with random `permittedIP`, `permittedReferer`, `exp` and `jti`, revoked through the
//! control plane's `/revokedjwt`, presented from random client addresses and referers. Each
//! outcome is compared with an independent model written from README.md, docs/CONFIG.md and
//! docs/HOWTO.md (never the filter's decision functions).

use super::claims_model::Rng;
use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use crate::stream::background;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const START: u64 = 1_800_000_000;
const WORKERS: usize = 3;
const APPS: [&str; 3] = ["app-1", "app-2", "app-3"];
const CLIENTS: [&str; 2] = ["c1", "c2"];
/// The opaque API keys the campaign hands out (to an application, or to none).
const API_KEYS: [&str; 5] = ["k-alpha-0001", "k-bravo-0002", "k-charlie-0003", "k-delta-0004", "k-echo-0005"];
/// The APIs: `P` takes the API key in the query too, `Q` only in the header.
const APIS: [&str; 2] = ["p", "q"];
/// Where requests come from: the client address and the `Referer`, if any.
const ADDRESSES: [&str; 4] = ["192.0.2.7", "198.51.100.9", "[2001:db8::5]", "203.0.113.1"];
const REFERERS: [Option<&str>; 4] =
    [None, Some("https://app.example/page"), Some("https://evil.example/x"), Some("https://app.example")];
const PERMITTED_IPS: [&str; 4] = ["", "192.0.2.0/24", "198.51.100.9", "192.0.2.0/24, 2001:db8::/32"];
const PERMITTED_REFERERS: [&str; 3] = ["", "https://app.example/*", "*.example/x"];

/// A request's outcome: `Ok(application id)` forwarded, or the fault's (code, status).
type Outcome = Result<String, (u32, u16)>;
/// 900908 as a JWT API key's restrictions refuse (403, "Access forbidden for the invocations"),
/// told apart from a missing subscription's by its description: written as code 500.
const RESTRICTED: (u32, u16) = (500, 403);

/// Whether the application (by index) is subscribed to the API (by index): app-1 to both, app-2
/// to `P`, app-3 to none.
fn subscribed(app: usize, api: usize) -> bool {
    matches!((app, api), (0, _) | (1, 0))
}

/// An opaque token as the key manager knows it.
#[derive(Clone, Debug)]
struct Opaque {
    text: String,
    active: bool,
    exp: Option<u64>,
    client: usize,
}

/// The model's introspection cache entry for a token: from `since`, until `until`; the `exp` of
/// an active answer, `None` for an inactive one.
#[derive(Clone, Debug)]
struct Cached {
    since: u64,
    until: u64,
    active: Option<u64>,
}

/// A JWT API key as issued.
#[derive(Clone, Debug)]
struct JwtKey {
    text: String,
    jti: Option<String>,
    signature: String,
    exp: Option<u64>,
    ips: &'static str,
    referers: &'static str,
    lists_q: bool,
}

/// What an introspection answer says, as the model reads RFC 7662 and README.md.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Said {
    Active(Option<u64>),
    Inactive,
    Unavailable,
}

struct World {
    now: u64,
    ttl: u64,
    negative_ttl: u64,
    skew: u64,
    /// Each opaque API key's application (index), or none.
    keys: [Option<usize>; API_KEYS.len()],
    /// Each client id's application (index).
    clients: [usize; CLIENTS.len()],
    tokens: Vec<Opaque>,
    /// The introspection caches of the Envoy (all workers), by the key manager's cache time
    /// (README: the cache is per configuration of the key manager; a configuration back to an
    /// earlier one finds what that one cached) and token.
    cache: BTreeMap<(u64, String), Cached>,
    jwt_keys: Vec<JwtKey>,
    /// API-M's `/revokedjwt` list, what the last successful load brought, and whether the next
    /// load fails.
    listed: Vec<(String, i64)>,
    loaded: BTreeSet<String>,
    revocations_fail: bool,
    serial: u64,
}

impl World {
    fn config(&self) -> Config {
        let applications: Vec<Value> = APPS
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let keys: Vec<Value> = API_KEYS
                    .iter()
                    .zip(self.keys)
                    .filter(|(_, app)| *app == Some(index))
                    .map(|(key, _)| json!({"sha256": crate::hashing::hex(&credential_hash(key))}))
                    .collect();
                let clients: Vec<Value> = CLIENTS
                    .iter()
                    .zip(self.clients)
                    .filter(|(_, app)| *app == index)
                    .map(|(client, _)| json!({"id": client, "key_manager": "km"}))
                    .collect();
                json!({"id": id, "name": format!("App {index}"), "owner": "o", "api_keys": keys, "client_ids": clients})
            })
            .collect();
        let json = json!({
            "key_managers": [{"name": "km", "issuer": "https://km",
                "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s",
                    "cache_ttl_s": self.ttl, "negative_cache_ttl_s": self.negative_ttl, "timeout_ms": 1000}}],
            "api_key_jwt": {"algorithms": ["ES256"], "clock_skew_s": self.skew,
                "keys": [jwk("ec-p256.pem", Algorithm::ES256, "ak")]},
            "apis": [
                {"name": "P", "context": "/p", "version": "1", "api_key_in_query": true,
                    "security": ["oauth2", "api_key"], "endpoints": {"production": "prod"},
                    "resources": [{"method": "GET", "path": "/menu"}]},
                {"name": "Q", "context": "/q", "version": "1", "security": ["oauth2", "api_key"],
                    "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/menu"}]}],
            "applications": applications,
            "subscriptions": [{"application": "app-1", "api": "P:1"}, {"application": "app-1", "api": "Q:1"},
                {"application": "app-2", "api": "P:1"}],
            "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5}
        });
        Config::from_json(json.to_string().as_bytes()).unwrap()
    }

    /// The key manager's introspection answer for `token` now, in a random mode: mostly what it
    /// knows of the token (a lax one now and then answering an expired token active with its
    /// past `exp`), else a 5xx, a timeout or garbage.
    fn introspection(&self, rng: &mut Rng, token: &str) -> (Answer, Said) {
        let http = |status: u16, body: &str| Answer::Http { status, body: body.as_bytes().to_vec() };
        match rng.below(20) {
            0 => return (http(503, "upstream connect error"), Said::Unavailable),
            1 => return (Answer::Failed { code: 1 }, Said::Unavailable),
            2 => return (http(200, r#"{"active":"true","client_id":"c1"}"#), Said::Unavailable),
            3 => return (http(200, "<html>oops</html>"), Said::Unavailable),
            _ => {}
        }
        let Some(known) = self.tokens.iter().find(|t| t.text == token) else {
            return (http(200, r#"{"active":false}"#), Said::Inactive);
        };
        let expired = known.exp.is_some_and(|exp| exp <= self.now);
        if !known.active || (expired && rng.chance(50)) {
            return (http(200, r#"{"active":false}"#), Said::Inactive);
        }
        let mut body = json!({"active": true, "client_id": CLIENTS[known.client], "token_type": "Bearer"});
        if let Some(exp) = known.exp {
            body["exp"] = json!(exp);
        }
        let said = if expired { Said::Inactive } else { Said::Active(known.exp) };
        (http(200, &body.to_string()), said)
    }

    /// API-M's answer to a control-plane path.
    fn control_plane(&mut self, path: &str) -> Answer {
        let resource = path.trim_start_matches("/internal/data/v1/");
        let resource = resource.split('?').next().unwrap_or_default();
        let body = match resource {
            "revokedjwt" => {
                if self.revocations_fail {
                    self.revocations_fail = false;
                    return Answer::Http { status: 503, body: b"unavailable".to_vec() };
                }
                self.loaded = self.listed.iter().map(|(name, _)| name.clone()).collect();
                let list: Vec<Value> = self
                    .listed
                    .iter()
                    .map(|(name, expiry)| json!({"jwt_signature": name, "expiry_time": expiry}))
                    .collect();
                Value::Array(list).to_string()
            }
            "block" => r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],"ip":[]}"#.into(),
            _ => r#"{"count":0,"list":[],"pagination":null}"#.into(),
        };
        Answer::Http { status: 200, body: body.into_bytes() }
    }

    /// The cached answer for `token` now (README: active until min(TTL, `exp`), inactive for the
    /// negative TTL).
    fn cached(&self, token: &str) -> Option<Said> {
        let entry = self.cache.get(&(self.ttl, token.to_string()))?;
        (entry.since <= self.now && self.now < entry.until).then_some(match entry.active {
            Some(exp) => Said::Active(Some(exp)),
            None => Said::Inactive,
        })
    }

    /// The Envoy's cache after an answer: the key manager's latest word about the token.
    fn remember(&mut self, token: &str, said: Said) {
        let now = self.now;
        let entry = match said {
            Said::Active(exp) => {
                let exp = exp.unwrap_or(u64::MAX);
                Cached { since: now, until: (now + self.ttl).min(exp), active: Some(exp) }
            }
            Said::Inactive => Cached { since: now, until: now + self.negative_ttl, active: None },
            Said::Unavailable => return,
        };
        self.cache.insert((self.ttl, token.to_string()), entry);
    }

    /// The outcome of an answer about `token` on API `api`.
    fn token_outcome(&self, token: &str, said: Said, api: usize) -> Outcome {
        match said {
            Said::Unavailable => Err((900900, 500)),
            Said::Inactive => Err((900901, 401)),
            Said::Active(_) => {
                let client = self.tokens.iter().find(|t| t.text == token).map_or(0, |t| t.client);
                let app = self.clients[client];
                if subscribed(app, api) {
                    Ok(APPS[app].to_string())
                } else {
                    Err((900908, 403))
                }
            }
        }
    }

    /// An opaque API key's outcome (CONFIG.md: the query only where the API takes it).
    fn api_key_outcome(&self, key: usize, api: usize, in_query: bool) -> Outcome {
        if in_query && api != 0 {
            return Err((900902, 401));
        }
        match self.keys[key] {
            None => Err((900901, 401)),
            Some(app) if subscribed(app, api) => Ok(APPS[app].to_string()),
            Some(_) => Err((900908, 403)),
        }
    }

    /// A JWT API key's outcome (CONFIG.md `ApiKeyJwt`; HOWTO: revoked by `jti`, else signature).
    fn jwt_key_outcome(&self, key: &JwtKey, api: usize, in_query: bool, origin: (usize, usize)) -> Outcome {
        if in_query && api != 0 {
            return Err((900902, 401));
        }
        if key.exp.is_some_and(|exp| self.now > exp + self.skew) {
            return Err((900901, 401));
        }
        let name = key.jti.clone().unwrap_or_else(|| key.signature.clone());
        if self.loaded.contains(&name) {
            return Err((900901, 401));
        }
        let address = ADDRESSES[origin.0];
        let ip_ok = match key.ips {
            "" => true,
            "192.0.2.0/24" => address.starts_with("192.0.2."),
            "198.51.100.9" => address == "198.51.100.9",
            _ => address.starts_with("192.0.2.") || address.starts_with("[2001:db8:"),
        };
        let referer = REFERERS[origin.1];
        let referer_ok = match key.referers {
            "" => true,
            "https://app.example/*" => referer.is_some_and(|r| r.starts_with("https://app.example/")),
            _ => referer.is_some_and(|r| r.ends_with(".example/x")),
        };
        if !ip_ok || !referer_ok {
            return Err(RESTRICTED);
        }
        if api == 1 && !key.lists_q {
            return Err((900908, 403));
        }
        Ok("app-1".to_string())
    }
}

/// A request under way: its stream and the headers it came with.
struct InFlight {
    stream: Stream,
    request: HashMap<String, Vec<u8>>,
    address: String,
}

struct Envoy {
    config: Rc<Config>,
    workers: Vec<Rc<RefCell<Worker>>>,
    host: FakeHost,
}

impl Envoy {
    fn new(world: &World) -> Envoy {
        let mut envoy = Envoy { config: Rc::new(Config::default()), workers: Vec::new(), host: FakeHost::default() };
        envoy.reload(world);
        envoy
    }

    /// A configuration (re)loaded: every worker anew, the shared data kept (as Envoy does).
    fn reload(&mut self, world: &World) {
        let mut config = world.config();
        self.host.now = world.now;
        background::prepare_counters(&mut self.host, &mut config);
        self.config = Rc::new(config);
        self.workers = (0..WORKERS).map(|_| Rc::new(RefCell::new(Worker::new(&self.config)))).collect();
    }

    fn dispatched(&self, token: u32) -> (String, String) {
        let (cluster, headers, _) = &self.host.dispatched[token as usize - 1];
        let path = headers.iter().find(|(name, _)| name == ":path").map(|(_, v)| v.clone()).unwrap();
        (cluster.clone(), path)
    }

    /// One root-context tick of `worker`, every control-plane call it starts answered.
    fn tick(&mut self, world: &mut World, worker: usize) -> Vec<String> {
        self.host.now = world.now;
        let worker = Rc::clone(&self.workers[worker]);
        super::gateways::tick_answering(&mut self.host, &self.config, &worker, |cluster, path| {
            assert_eq!(cluster, "cp", "a tick calls the control plane only");
            world.control_plane(path)
        })
    }

    /// Starts a request on `worker`: the request, its flow, and the calls it made (each an
    /// introspection).
    fn begin(
        &mut self,
        now: u64,
        worker: usize,
        path: &str,
        headers: &[(&str, &str)],
        address: &str,
    ) -> (InFlight, Flow, Vec<u32>) {
        let mut request: HashMap<String, Vec<u8>> =
            [(":method", "GET"), (":path", path)].iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        request.extend(headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
        let stream = Stream::new(Rc::clone(&self.config), Rc::clone(&self.workers[worker]));
        let mut in_flight = InFlight { stream, request, address: address.to_string() };
        self.host.now = now;
        self.prepare(&in_flight);
        let first = self.host.dispatched.len() as u32;
        let flow = in_flight.stream.on_request_headers(&mut self.host, true);
        let calls: Vec<u32> = (first + 1..=self.host.dispatched.len() as u32).collect();
        for call in &calls {
            assert_eq!(self.dispatched(*call).0, "km", "a request calls the key manager only");
        }
        (in_flight, flow, calls)
    }

    fn prepare(&mut self, in_flight: &InFlight) {
        self.host.request = in_flight.request.clone();
        self.host.properties.insert("source.address".into(), format!("{}:4000", in_flight.address).into_bytes());
        self.host.sent = None;
        self.host.resumed = false;
        self.host.counted.clear();
    }

    /// What became of a request that is no longer waiting.
    fn outcome(&self, flow: Flow) -> Outcome {
        match (&self.host.sent, flow) {
            (Some((status, _, body)), _) => {
                assert_eq!(self.host.counted.len(), 1, "one fault counted");
                let restricted = String::from_utf8_lossy(body).contains("Access forbidden for the invocations");
                Err((if restricted { RESTRICTED.0 } else { self.host.counted[0] }, *status))
            }
            (None, Flow::Continue) => {
                assert_eq!(self.host.req("x-apim-cluster"), "prod");
                Ok(self.host.req("x-apim-application-id").to_string())
            }
            (None, flow) => panic!("neither forwarded nor answered: {flow:?}"),
        }
    }

    /// Answers call `token` to the waiting request.
    fn answer(&mut self, now: u64, in_flight: &mut InFlight, token: u32, answer: &Answer) -> Outcome {
        self.host.now = now;
        self.prepare(in_flight);
        in_flight.stream.on_call_response(&mut self.host, token, answer.clone());
        let flow = if self.host.resumed { Flow::Continue } else { Flow::Answered };
        self.outcome(flow)
    }
}

/// One presentation checked: the model's outcome against the filter's, tallied under `class`.
struct Check<'a> {
    seed: u64,
    step: usize,
    tally: &'a mut BTreeMap<String, usize>,
    disagreements: &'a mut Vec<String>,
    trace: &'a mut Vec<String>,
}

impl Check<'_> {
    fn check(&mut self, class: &str, what: &str, expected: &Outcome, got: &Outcome) {
        *self.tally.entry(class.to_string()).or_default() += 1;
        self.trace.push(format!("{}: {what} [{class}]: model {expected:?} filter {got:?}", self.step));
        if expected != got {
            self.disagreements.push(format!(
                "seed {} step {}: {what} [{class}]: model {expected:?} filter {got:?}\n  trace:\n    {}",
                self.seed,
                self.step,
                self.trace.iter().rev().take(14).rev().cloned().collect::<Vec<_>>().join("\n    ")
            ));
        }
    }

    /// A disagreement on something other than the outcome (a call made or not).
    fn differ(&mut self, what: String) {
        self.disagreements.push(format!(
            "seed {} step {}: {what}\n  trace:\n    {}",
            self.seed,
            self.step,
            self.trace.iter().rev().take(14).rev().cloned().collect::<Vec<_>>().join("\n    ")
        ));
    }
}

fn token_class(prefix: &str, expected: &Outcome) -> String {
    let what = match expected {
        Ok(_) => "forwarded",
        Err((900900, _)) => "key manager unavailable",
        Err((900901, _)) => "inactive",
        Err((900908, _)) => "not subscribed",
        Err(_) => "other",
    };
    format!("token {prefix}: {what}")
}

/// An opaque token presented: from the cache, or introspected; now and then in a burst (another
/// request of the same worker joining the call, another worker racing it with its own call, the
/// token turning inactive at the key manager meanwhile, the answers coming in either order).
fn present_token(world: &mut World, envoy: &mut Envoy, rng: &mut Rng, check: &mut Check<'_>) {
    let token = if world.tokens.is_empty() || rng.chance(8) {
        world.serial += 1;
        format!("made-up-{}", world.serial)
    } else {
        world.tokens[rng.below(world.tokens.len())].text.clone()
    };
    let api = rng.below(2);
    let worker = rng.below(WORKERS);
    let path = format!("/{}/1/menu", APIS[api]);
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    let what = format!("t+{} worker {worker} token {token} on {}", world.now - START, APIS[api]);
    let cached = world.cached(&token);
    let (first, flow, calls) = envoy.begin(world.now, worker, &path, &headers, ADDRESSES[0]);
    if let Some(said) = cached {
        let expected = world.token_outcome(&token, said, api);
        if !calls.is_empty() || flow == Flow::Waiting {
            check.differ(format!("{what}: the model has it cached ({said:?}), the filter asked the key manager"));
            return;
        }
        let got = envoy.outcome(flow);
        check.check(&token_class("cached", &expected), &what, &expected, &got);
        return;
    }
    if flow != Flow::Waiting || calls.len() != 1 {
        let got = (flow != Flow::Waiting).then(|| envoy.outcome(flow));
        check.differ(format!("{what}: the model expects one call, the filter made {calls:?}, outcome {got:?}"));
        return;
    }
    let burst = rng.chance(40);
    let joined = if burst && rng.chance(60) {
        let (second, flow, calls) = envoy.begin(world.now, worker, &path, &headers, ADDRESSES[0]);
        if flow != Flow::Waiting || !calls.is_empty() {
            check.differ(format!("{what}: a second request of the worker made {calls:?} ({flow:?}), not joining"));
            return;
        }
        Some(second)
    } else {
        None
    };
    let raced = if burst && rng.chance(60) {
        let other = (worker + 1 + rng.below(WORKERS - 1)) % WORKERS;
        let (third, flow, calls) = envoy.begin(world.now, other, &path, &headers, ADDRESSES[0]);
        if flow != Flow::Waiting || calls.len() != 1 {
            check.differ(format!("{what}: another worker made {calls:?} ({flow:?}), not its own call"));
            return;
        }
        Some((third, calls[0]))
    } else {
        None
    };
    // The token may turn inactive at the key manager between the two answers.
    let turns_inactive = burst && rng.chance(50);
    let raced_first = raced.is_some() && rng.chance(50);
    let mut deliveries: Vec<(InFlight, u32, Option<InFlight>, &str)> = vec![(first, calls[0], joined, "asked")];
    if let Some((third, call)) = raced {
        let entry = (third, call, None, "raced");
        if raced_first {
            deliveries.insert(0, entry);
        } else {
            deliveries.push(entry);
        }
    }
    for (index, (mut request, call, waiter, prefix)) in deliveries.into_iter().enumerate() {
        if turns_inactive && index == 1 {
            if let Some(known) = world.tokens.iter_mut().find(|t| t.text == token) {
                known.active = false;
                check.trace.push(format!("{}: {token} inactive at the key manager (a call under way)", check.step));
            }
        }
        // Now and then the answer comes late: after a token's `exp`, a cache entry's end.
        if rng.chance(25) {
            world.now += *rng.pick(&[1u64, 2, 5, 31]);
            check.trace.push(format!("{}: clock t+{} (a call under way)", check.step, world.now - START));
        }
        let (answer, said) = world.introspection(rng, &token);
        let expected = world.token_outcome(&token, said, api);
        world.remember(&token, said);
        let got = envoy.answer(world.now, &mut request, call, &answer);
        check.check(&token_class(prefix, &expected), &format!("{what} answered {said:?}"), &expected, &got);
        if let Some(mut waiter) = waiter {
            let got = envoy.answer(world.now, &mut waiter, call, &answer);
            check.check(&token_class("joined", &expected), &format!("{what} joined, {said:?}"), &expected, &got);
        }
    }
}

/// An API key presented (an opaque one, or a JWT API key), in the header or the query, from a
/// random client address and referer.
fn present_api_key(world: &mut World, envoy: &mut Envoy, rng: &mut Rng, check: &mut Check<'_>, jwt: bool) {
    let api = rng.below(2);
    let in_query = rng.chance(35);
    let origin = (rng.below(ADDRESSES.len()), rng.below(REFERERS.len()));
    let (text, expected, kind, revoked) = if jwt && !world.jwt_keys.is_empty() {
        let key = world.jwt_keys[rng.below(world.jwt_keys.len())].clone();
        let expected = world.jwt_key_outcome(&key, api, in_query, origin);
        let expired = key.exp.is_some_and(|exp| world.now > exp + world.skew);
        let revoked = !expired && world.loaded.contains(key.jti.as_ref().unwrap_or(&key.signature));
        (key.text, expected, "jwt key", revoked)
    } else {
        let key = rng.below(API_KEYS.len());
        (API_KEYS[key].to_string(), world.api_key_outcome(key, api, in_query), "api key", false)
    };
    let worker = rng.below(WORKERS);
    let path =
        if in_query { format!("/{}/1/menu?x=1&apikey={text}", APIS[api]) } else { format!("/{}/1/menu", APIS[api]) };
    let mut headers = Vec::new();
    if !in_query {
        headers.push(("apikey", text.as_str()));
    }
    if let Some(referer) = REFERERS[origin.1] {
        headers.push(("referer", referer));
    }
    let what = format!(
        "t+{} worker {worker} {kind} {}.. on {} query {in_query} from {:?}",
        world.now - START,
        &text[text.len().saturating_sub(12)..],
        APIS[api],
        (ADDRESSES[origin.0], REFERERS[origin.1])
    );
    let (_request, flow, calls) = envoy.begin(world.now, worker, &path, &headers, ADDRESSES[origin.0]);
    if !calls.is_empty() || flow == Flow::Waiting {
        check.differ(format!("{what}: an API key needs no call, the filter made {calls:?}"));
        return;
    }
    let got = envoy.outcome(flow);
    let class = match &expected {
        Ok(_) => "forwarded",
        Err((900901, _)) if revoked => "revoked",
        Err((900901, _)) if kind == "jwt key" => "expired",
        Err((900901, _)) => "unknown",
        Err((900902, _)) => "in a query the API refuses",
        Err((900908, _)) => "not subscribed",
        Err((500, _)) => "restricted",
        Err(_) => "other",
    };
    check.check(&format!("{kind}: {class}"), &what, &expected, &got);
}

/// A JWT API key issued: restrictions, `exp` around the clock and skew (or none), `jti` (or
/// none: then its signature names it), `Q` listed or not.
fn issue_jwt_key(world: &mut World, rng: &mut Rng) -> JwtKey {
    world.serial += 1;
    let exp = (!rng.chance(30)).then(|| {
        let offset = *rng.pick(&[-30i64, -1, 0, 1, 2, 5, 30, 600, 3600, 3600]);
        (world.now as i64 + offset) as u64
    });
    let jti = (!rng.chance(20)).then(|| format!("jti-{}", world.serial));
    let ips = if rng.chance(40) { "" } else { *rng.pick(&PERMITTED_IPS) };
    let referers = if rng.chance(40) { "" } else { *rng.pick(&PERMITTED_REFERERS) };
    let lists_q = rng.chance(60);
    let mut apis = vec![json!({"name": "P", "context": "/p/1", "version": "1", "subscriptionTier": "Unlimited"})];
    if lists_q {
        apis.push(json!({"name": "Q", "context": "/q/1", "version": "1", "subscriptionTier": "Unlimited"}));
    }
    let mut claims = json!({"iss": "https://apim", "sub": "dave", "token_type": "apiKey", "keytype": "PRODUCTION",
        "application": {"uuid": "app-1", "name": "App 0", "owner": "o", "tier": "Unlimited"},
        "subscribedAPIs": apis, "permittedIP": ips, "permittedReferer": referers, "n": world.serial});
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    if let Some(jti) = &jti {
        claims["jti"] = json!(jti);
    }
    let text =
        sign_raw(r#"{"alg":"ES256","typ":"JWT","kid":"ak"}"#, &claims.to_string(), "ec-p256.pem", Algorithm::ES256);
    let signature = text.rsplit('.').next().unwrap().to_string();
    JwtKey { text, jti, signature, exp, ips, referers, lists_q }
}

mod campaign;
