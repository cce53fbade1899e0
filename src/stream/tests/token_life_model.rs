//! A seeded, model-based campaign over the life of a verified JWT access token across the workers
//! of one Envoy: tokens issued (RS256, ES256, EdDSA; with and without `jti`; `exp` and `nbf`
//! around the clock and the key manager's skew), presented to random workers (an ES256 token
//! also in its signature's other form), revoked through the control plane's `/revokedjwt` (by
//! `jti` or signature, expiry times past and future, the list's load failing), keys rotated at a
//! JWKS refresh, and the clock moved across `exp`, `nbf` and skew edges. Each outcome is compared
//! with an independent model written from README.md, docs/CONFIG.md and docs/HOWTO.md (never the
//! filter's functions): the caches of any worker, or the Envoy's, must never change an outcome.

use super::claims_model::Rng;
use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use crate::stream::background;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const START: u64 = 1_800_000_000;
const WORKERS: usize = 3;
const ISSUER: &str = "https://idp.example";
/// The key manager's published keys: (kid, fixture, algorithm). One key may be published under
/// two kids (a kid is what a token names; a rotation may drop either).
const KEYS: [(&str, &str, Algorithm); 6] = [
    ("ra", "rsa-a.pem", Algorithm::RS256),
    ("rb", "rsa-b.pem", Algorithm::RS256),
    ("ec1", "ec-p256.pem", Algorithm::ES256),
    ("ec2", "ec-p256.pem", Algorithm::ES256),
    ("ed1", "ed25519.pem", Algorithm::EdDSA),
    ("ed2", "ed25519.pem", Algorithm::EdDSA),
];
/// The order of P-256 (big-endian).
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// An issued token, as the model knows it.
#[derive(Clone, Debug)]
struct Tok {
    /// The token as issued, and for ES256 the same claims with the signature's other form.
    text: String,
    twin: Option<String>,
    kid: Option<&'static str>,
    fixture: &'static str,
    jti: Option<String>,
    exp: u64,
    nbf: Option<u64>,
    signature: String,
    twin_signature: Option<String>,
}

/// `n - s` for a P-256 signature `r || s`, written here (not the filter's `ecdsa_twin`).
fn other_form(signature: &str) -> String {
    let bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(bytes.len(), 64);
    let mut out = bytes[..32].to_vec();
    let s = &bytes[32..];
    let mut diff = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = P256_N[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 { 1 } else { 0 };
        if d < 0 {
            d += 256;
        }
        diff[i] = d as u8;
    }
    assert_eq!(borrow, 0, "s < n");
    out.extend_from_slice(&diff);
    URL_SAFE_NO_PAD.encode(out)
}

/// What the model knows of the Envoy and the key manager and control plane around it.
struct World {
    skew: u64,
    now: u64,
    /// The kids the key manager publishes, and those the Envoy holds (its last fetched set).
    published: BTreeSet<&'static str>,
    held: BTreeSet<&'static str>,
    /// API-M's `/revokedjwt` list (name, expiry_time as written) and what the last successful
    /// load of it brought.
    listed: Vec<(String, i64)>,
    loaded: BTreeSet<String>,
    /// The next `/revokedjwt` answer fails.
    revocations_fail: bool,
    tokens: Vec<Tok>,
}

impl World {
    fn jwks(&self) -> String {
        // Each JWK made once (reading a PEM is slow unoptimized).
        thread_local! {
            static JWKS: Vec<Value> = KEYS.iter().map(|(kid, fixture, alg)| jwk(fixture, *alg, kid)).collect();
        }
        let keys: Vec<Value> = JWKS.with(|all| {
            KEYS.iter()
                .zip(all)
                .filter(|((kid, _, _), _)| self.published.contains(kid))
                .map(|(_, jwk)| jwk.clone())
                .collect()
        });
        json!({ "keys": keys }).to_string()
    }

    fn revoked_json(&self) -> String {
        let list: Vec<Value> =
            self.listed.iter().map(|(name, expiry)| json!({"jwt_signature": name, "expiry_time": expiry})).collect();
        Value::Array(list).to_string()
    }

    /// API-M's answer to a control-plane path, or the key manager's JWKS.
    fn answer(&mut self, path: &str) -> Answer {
        if path == "/jwks" {
            self.held = self.published.clone();
            return Answer::Http { status: 200, body: self.jwks().into_bytes() };
        }
        let resource = path.trim_start_matches("/internal/data/v1/");
        let resource = resource.split('?').next().unwrap_or_default();
        let body = match resource {
            "revokedjwt" => {
                if self.revocations_fail {
                    self.revocations_fail = false;
                    return Answer::Http { status: 503, body: b"unavailable".to_vec() };
                }
                self.loaded = self.listed.iter().map(|(name, _)| name.clone()).collect();
                self.revoked_json()
            }
            "block" => r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],"ip":[]}"#.into(),
            _ => r#"{"count":0,"list":[],"pagination":null}"#.into(),
        };
        Answer::Http { status: 200, body: body.into_bytes() }
    }
}

fn config(skew: u64) -> Config {
    let json = json!({
        "key_managers": [{"name": "km", "issuer": ISSUER, "clock_skew_s": skew,
            "algorithms": ["RS256", "ES256", "EdDSA"],
            "jwks": {"cluster": "idp", "path": "/jwks", "refresh_s": 3, "timeout_ms": 1000}}],
        "apis": [{"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"},
            "resources": [{"method": "GET", "path": "/menu"}]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "alice",
            "client_ids": [{"id": "c1", "key_manager": "km"}]}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5}
    });
    Config::from_json(json.to_string().as_bytes()).unwrap()
}

/// A new token: a kid the key manager publishes now and then not (or none), a `jti` from a
/// small pool (so two tokens may share one) or none or empty, times around the clock and skew.
fn issue(rng: &mut Rng, world: &World) -> Tok {
    // RS256 less often: its signing is the slow one unoptimized.
    let mut pick = *rng.pick(&KEYS);
    if pick.2 == Algorithm::RS256 && rng.chance(80) {
        pick = *rng.pick(&KEYS[2..]);
    }
    let (kid, fixture, alg) = pick;
    let kid = if rng.chance(10) { None } else { Some(kid) };
    let around = |rng: &mut Rng| {
        let offset = *rng.pick(&[0i64, 1, -1, 2, -2, 5, -5, 30, -30, 60, -60, 61, -61, 120, -120, 600, 3600]);
        let slack = *rng.pick(&[0i64, world.skew as i64, -(world.skew as i64)]);
        (world.now as i64 + offset + slack) as u64
    };
    let exp = around(rng);
    let nbf = match rng.below(4) {
        0 => Some(around(rng)),
        // Just past the skew, or well into the future (valid later, when the clock gets there).
        1 => Some(world.now + world.skew + *rng.pick(&[1u64, 2, 30, 120])),
        _ => None,
    };
    let jti = match rng.below(10) {
        0..=3 => None,
        4 => Some(String::new()),
        _ => Some(format!("j{}", rng.below(6))),
    };
    let mut claims = json!({"iss": ISSUER, "exp": exp, "client_id": "c1", "sub": "alice"});
    if let Some(nbf) = nbf {
        claims["nbf"] = json!(nbf);
    }
    if let Some(jti) = &jti {
        claims["jti"] = json!(jti);
    }
    let alg_name = match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "EdDSA",
    };
    let header = match kid {
        Some(kid) => json!({"alg": alg_name, "typ": "JWT", "kid": kid}),
        None => json!({"alg": alg_name, "typ": "JWT"}),
    };
    let text = sign_raw(&header.to_string(), &claims.to_string(), fixture, alg);
    let signature = text.rsplit('.').next().unwrap().to_string();
    let twin_signature = (alg == Algorithm::ES256).then(|| other_form(&signature));
    let twin = twin_signature.as_ref().map(|twin| format!("{}.{twin}", &text[..text.len() - signature.len() - 1]));
    Tok { text, twin, kid, fixture, jti, exp, nbf, signature, twin_signature }
}

/// How a revocation names a token (HOWTO: its `jti`, or its signature when it has none; README:
/// an ECDSA signature's other form names the same token).
fn names(token: &Tok) -> Vec<String> {
    match token.jti.as_ref().filter(|jti| !jti.is_empty()) {
        Some(jti) => vec![jti.clone()],
        None => std::iter::once(token.signature.clone()).chain(token.twin_signature.clone()).collect(),
    }
}

/// The model's outcome: `Ok(())` forwarded, `Err(reason)` refused with 900901 (401).
fn decide(world: &World, token: &Tok) -> Result<(), &'static str> {
    // The signature: a token naming a kid needs that kid in the set the Envoy holds (CONFIG.md:
    // "a key removed from the set is trusted until the next [refresh]"); one naming none, any
    // held key of its kind.
    let trusted = match token.kid {
        Some(kid) => world.held.contains(kid),
        None => KEYS.iter().any(|(kid, fixture, _)| *fixture == token.fixture && world.held.contains(kid)),
    };
    if !trusted {
        return Err("unknown key");
    }
    if world.now > token.exp + world.skew {
        return Err("expired");
    }
    if token.nbf.is_some_and(|nbf| nbf > world.now + world.skew) {
        return Err("not yet valid");
    }
    if names(token).iter().any(|name| world.loaded.contains(name)) {
        return Err("revoked");
    }
    Ok(())
}

/// The Envoy: its configuration, its workers, one host (its shared data, its calls).
struct Envoy {
    config: Rc<Config>,
    workers: Vec<Rc<RefCell<Worker>>>,
    host: FakeHost,
}

impl Envoy {
    fn path_of(&self, token: u32) -> String {
        let (_, headers, _) = &self.host.dispatched[token as usize - 1];
        headers.iter().find(|(name, _)| name == ":path").map(|(_, v)| v.clone()).unwrap()
    }

    /// One root-context tick of `worker` at the world's time, every call it starts answered.
    /// Returns the paths asked.
    fn tick(&mut self, world: &mut World, worker: usize) -> Vec<String> {
        self.host.now = world.now;
        let worker = Rc::clone(&self.workers[worker]);
        super::gateways::tick_answering(&mut self.host, &self.config, &worker, |_, path| world.answer(path))
    }

    /// Sends `token` to `worker`: `Ok(())` forwarded, or the fault's (code, status).
    fn send(&mut self, world: &mut World, worker: usize, token: &str) -> Result<(), (u32, u16)> {
        self.host.now = world.now;
        self.host.counted.clear();
        let first = self.host.dispatched.len();
        let (mut stream, mut flow) = bearer_call(&self.config, &self.workers[worker], &mut self.host, token);
        let mut answered = first;
        while flow == Flow::Waiting && self.host.sent.is_none() && !self.host.resumed {
            assert!(answered < self.host.dispatched.len(), "a waiting stream made a call");
            answered += 1;
            let path = self.path_of(answered as u32);
            let reply = world.answer(&path);
            stream.on_call_response(&mut self.host, answered as u32, reply);
            if self.host.resumed {
                flow = Flow::Continue;
            }
        }
        match (&self.host.sent, flow) {
            (Some((status, _, _)), _) => {
                assert_eq!(self.host.counted.len(), 1, "one fault counted");
                Err((self.host.counted[0], *status))
            }
            (None, Flow::Continue) => {
                assert_eq!(self.host.req("x-apim-cluster"), "prod");
                Ok(())
            }
            (None, flow) => panic!("neither forwarded nor answered: {flow:?}"),
        }
    }
}

/// A revocation of `token` as API-M lists it: mostly by the name it documents, now and then by
/// the other (a token with a `jti` listed by its signature is not revoked), for an ES256 token by
/// either signature form; its expiry time in seconds or milliseconds, past or future.
fn revocation(rng: &mut Rng, world: &World, token: &Tok) -> (String, i64) {
    let name = match (&token.jti, rng.below(4)) {
        (Some(jti), 0..=2) if !jti.is_empty() => jti.clone(),
        (_, 3) if token.twin_signature.is_some() => token.twin_signature.clone().unwrap(),
        _ => token.signature.clone(),
    };
    let expiry = (token.exp as i64) + *rng.pick(&[-600i64, -1, 0, 1, 600]);
    let expiry = if rng.chance(50) { expiry * 1000 } else { expiry };
    let _ = world;
    (name, expiry)
}

/// A configured Envoy (key manager skew `skew`) after its first load, its keys fetched on first
/// use (a request's fetch, which every worker then shares).
fn started(skew: u64) -> (World, Envoy) {
    let mut config = config(skew);
    // As Envoy's `on_configure` prepares the shared data.
    let mut host = FakeHost { now: START, ..Default::default() };
    background::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let mut world = World {
        skew,
        now: START,
        published: ["ra", "ec1", "ed1"].into_iter().collect(),
        held: BTreeSet::new(),
        listed: Vec::new(),
        loaded: BTreeSet::new(),
        revocations_fail: false,
        tokens: Vec::new(),
    };
    let workers = (0..WORKERS).map(|_| Rc::new(RefCell::new(Worker::new(&config)))).collect();
    let mut envoy = Envoy { config, workers, host };
    let asked = envoy.tick(&mut world, 0);
    assert!(asked.iter().any(|path| path.ends_with("revokedjwt")), "{asked:?}");
    let warm = sign_raw(
        r#"{"alg":"ES256","kid":"ec1"}"#,
        &json!({"iss": ISSUER, "exp": START + 3600, "client_id": "c1"}).to_string(),
        "ec-p256.pem",
        Algorithm::ES256,
    );
    assert_eq!(envoy.send(&mut world, 0, &warm), Ok(()));
    assert_eq!(world.held, world.published);
    (world, envoy)
}

/// One seed's run: the sequence of events, each presentation compared with the model.
fn run(seed: u64, steps: usize, tally: &mut BTreeMap<String, usize>, disagreements: &mut Vec<String>) {
    let mut rng = Rng(seed);
    let skew = *rng.pick(&[0u64, 5, 60]);
    let (mut world, mut envoy) = started(skew);
    let mut trace = Vec::new();
    let mut last_revoked: Option<String> = None;
    for step in 0..steps {
        match rng.below(100) {
            // A token issued.
            0..=14 => {
                // Tokens long expired leave the pool (their refusal is decided often enough).
                let now = world.now;
                world.tokens.retain(|token| now <= token.exp + skew + 120);
                if world.tokens.len() >= 8 {
                    world.tokens.remove(rng.below(world.tokens.len()));
                }
                let token = issue(&mut rng, &world);
                trace.push(format!(
                    "{step}: issued {:?} jti {:?} exp {:+} nbf {:?}",
                    token.kid,
                    token.jti,
                    token.exp as i64 - world.now as i64,
                    token.nbf.map(|nbf| nbf as i64 - world.now as i64)
                ));
                world.tokens.push(token);
            }
            // Presented, in either form, to any worker (now and then to each in turn).
            15..=64 if !world.tokens.is_empty() => {
                // Now and then the token revoked last, while it is in the pool.
                let revoked = last_revoked.as_ref().and_then(|text| world.tokens.iter().find(|t| &t.text == text));
                let token = match revoked {
                    Some(token) if rng.chance(30) => token.clone(),
                    _ => world.tokens[rng.below(world.tokens.len())].clone(),
                };
                let workers: Vec<usize> =
                    if rng.chance(30) { (0..WORKERS).collect() } else { vec![rng.below(WORKERS)] };
                for worker in workers {
                    let twin = token.twin.is_some() && rng.chance(40);
                    let text = if twin { token.twin.clone().unwrap() } else { token.text.clone() };
                    let expected = decide(&world, &token).map_err(|reason| (reason, (900901u32, 401u16)));
                    let got = envoy.send(&mut world, worker, &text);
                    let class = match &expected {
                        Ok(()) => "forwarded".to_string(),
                        Err((reason, _)) => reason.to_string(),
                    };
                    let class = if twin { format!("{class} (other form)") } else { class };
                    *tally.entry(class).or_default() += 1;
                    trace.push(format!(
                        "{step}: t+{} worker {worker} {:?} twin {twin}: model {expected:?} filter {got:?}",
                        world.now - START,
                        token.kid
                    ));
                    if got != expected.map_err(|(_, fault)| fault) {
                        disagreements.push(format!(
                            "seed {seed} step {step}: t+{} worker {worker} twin {twin}: model {:?} filter {got:?}\n  \
                             token {token:?}\n  held {:?} loaded {:?}\n  trace:\n    {}",
                            world.now - START,
                            decide(&world, &token),
                            world.held,
                            world.loaded,
                            trace.iter().rev().take(12).rev().cloned().collect::<Vec<_>>().join("\n    ")
                        ));
                    }
                }
            }
            // Revoked at API-M, then a load of its list (failing now and then: the last good
            // list stays); a worker's tick starts it once it is due.
            65..=76 if !world.tokens.is_empty() => {
                // An ES256 token more often than not: two signature forms name it.
                let es256: Vec<&Tok> = world.tokens.iter().filter(|token| token.twin.is_some()).collect();
                let token = if !es256.is_empty() && rng.chance(50) {
                    (*rng.pick(&es256)).clone()
                } else {
                    world.tokens[rng.below(world.tokens.len())].clone()
                };
                let entry = revocation(&mut rng, &world, &token);
                last_revoked = Some(token.text.clone());
                trace.push(format!("{step}: revoked {entry:?}"));
                world.listed.push(entry);
                if rng.chance(20) {
                    // API-M's cleanup drops entries whose expiry passed.
                    let now = world.now as i64;
                    world.listed.retain(|(_, expiry)| {
                        let seconds = if *expiry > 100_000_000_000 { expiry / 1000 } else { *expiry };
                        seconds >= now
                    });
                }
                world.revocations_fail = rng.chance(25);
                load(&mut envoy, &mut world, &mut rng, "revokedjwt", &mut trace);
            }
            // Keys rotated: the key manager publishes another set, which a refresh brings.
            77..=84 => {
                // Never none: a JWKS without a usable key is a failed fetch (README), the last
                // good set kept.
                world.published = KEYS.iter().map(|(kid, _, _)| *kid).filter(|_| rng.chance(75)).collect();
                if world.published.is_empty() {
                    world.published.insert(rng.pick(&KEYS).0);
                }
                trace.push(format!("{step}: published {:?}", world.published));
                load(&mut envoy, &mut world, &mut rng, "/jwks", &mut trace);
            }
            // The clock moves: a little, or to an edge of a token's or a revocation's times.
            _ => {
                let edge = if !world.tokens.is_empty() && rng.chance(45) {
                    let token = rng.pick(&world.tokens).clone();
                    let base = match rng.below(3) {
                        0 => token.exp + skew,
                        1 => token.nbf.unwrap_or(token.exp).saturating_sub(skew),
                        _ => token.exp,
                    };
                    (base as i64 + *rng.pick(&[-1i64, 0, 1])) as u64
                } else {
                    world.now + *rng.pick(&[1u64, 2, 5, 30, 61])
                };
                // Time goes forward only.
                world.now = world.now.max(edge);
                trace.push(format!("{step}: clock t+{}", world.now - START));
            }
        }
    }
}

/// Ticks random workers, the clock moving a second at a time, until one asks for `wanted`.
fn load(envoy: &mut Envoy, world: &mut World, rng: &mut Rng, wanted: &str, trace: &mut Vec<String>) {
    for _ in 0..12 {
        let worker = rng.below(WORKERS);
        let asked = envoy.tick(world, worker);
        if asked.iter().any(|path| path.ends_with(wanted)) {
            trace.push(format!("t+{}: worker {worker} asked {asked:?}", world.now - START));
            // A second on, so every worker's next request looks at what it brought.
            world.now += 1;
            return;
        }
        world.now += 1;
    }
    panic!("no worker asked for {wanted} within 12 s");
}

#[test]
fn a_tokens_life_across_workers_agrees_with_the_documented_model() {
    let seeds: Vec<u64> = match std::env::var("TOKEN_LIFE_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        // TOKEN_LIFE_SEEDS=<n> runs more seeds (the default keeps the run short unoptimized).
        Err(_) => (0..std::env::var("TOKEN_LIFE_SEEDS").map_or(SEEDS, |n| n.parse().unwrap())).collect(),
    };
    let mut tally = BTreeMap::new();
    let mut disagreements = Vec::new();
    for seed in &seeds {
        run(*seed, STEPS, &mut tally, &mut disagreements);
    }
    println!("token-life classes: {tally:?}");
    assert!(
        disagreements.is_empty(),
        "{} disagreements (rerun one with TOKEN_LIFE_SEED=<seed>):\n{}",
        disagreements.len(),
        disagreements.iter().take(6).cloned().collect::<Vec<_>>().join("\n")
    );
    if seeds.len() > 1 {
        // Each decision class is reached (both signature forms of ES256 tokens counted together).
        let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
        for (class, count) in &tally {
            *classes.entry(class.trim_end_matches(" (other form)")).or_default() += count;
        }
        for class in ["forwarded", "expired", "not yet valid", "revoked", "unknown key"] {
            assert!(classes.get(class).is_some_and(|count| *count >= 5), "{class} decided too rarely: {tally:?}");
        }
        for class in ["forwarded (other form)", "revoked (other form)"] {
            assert!(tally.get(class).is_some_and(|count| *count >= 2), "{class} decided too rarely: {tally:?}");
        }
    }
}

const SEEDS: u64 = 8;
const STEPS: usize = 110;
