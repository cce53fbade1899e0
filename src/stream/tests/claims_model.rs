//! A seeded, model-based differential campaign over JWT access-token claims and shapes: random
//! key managers, APIs and tokens go through the stream, and each outcome is compared with a model
//! written from docs/CONFIG.md, docs/ERROR-CODES.md and README.md (never the filter's functions),
//! including the same token again (from the verified-token cache) and after its `exp` passed.

use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use jsonwebtoken::Algorithm;

/// A small deterministic generator (SplitMix64).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SECRET: &str = "a-shared-hmac-secret-of-at-least-32-bytes";
pub(super) const NOW: u64 = 1_700_000_000;
const SCOPES: [&str; 3] = ["read", "write", "admin"];

/// One key manager of the generated configuration.
struct Km {
    name: String,
    /// As configured (maybe with a trailing `/`).
    issuer: String,
    audiences: Vec<String>,
    skew: u64,
    client_claims: Vec<&'static str>,
    scope_claims: Vec<&'static str>,
    algorithms: Vec<&'static str>,
}

struct Setup {
    kms: Vec<Km>,
    microgateway: bool,
    sandbox_endpoint: bool,
    menu_scopes: Vec<&'static str>,
}

fn setup(rng: &mut Rng) -> Setup {
    let kms = (0..1 + rng.below(3))
        .map(|i| Km {
            name: format!("km{i}"),
            issuer: format!("https://km{i}.example/oauth2{}", if rng.chance(30) { "/" } else { "" }),
            audiences: match rng.below(3) {
                0 => Vec::new(),
                1 => vec![format!("gw{i}")],
                _ => vec![format!("gw{i}"), "shared".to_string()],
            },
            skew: *rng.pick(&[0, 5, 60, 300]),
            client_claims: rng.pick(&[vec!["client_id", "azp"], vec!["azp", "client_id"], vec!["cid"]]).clone(),
            scope_claims: rng.pick(&[vec!["scope", "scp"], vec!["scp"], vec!["scp", "scope"]]).clone(),
            algorithms: rng
                .pick(&[vec!["HS256", "ES256", "EdDSA"], vec!["HS256", "EdDSA"], vec!["HS256", "ES256"]])
                .clone(),
        })
        .collect();
    let menu_scopes = SCOPES.iter().copied().filter(|_| rng.chance(40)).collect();
    Setup { kms, microgateway: rng.chance(50), sandbox_endpoint: rng.chance(50), menu_scopes }
}

fn config_json(setup: &Setup) -> String {
    let key_managers: Vec<serde_json::Value> = setup
        .kms
        .iter()
        .map(|km| {
            serde_json::json!({"name": km.name, "issuer": km.issuer, "audiences": km.audiences,
                "clock_skew_s": km.skew, "algorithms": km.algorithms, "hmac_secret": SECRET,
                "claims": {"client_id": km.client_claims, "scopes": km.scope_claims},
                "jwks": {"keys": [jwk("ec-p256.pem", Algorithm::ES256, "ec"), jwk("ed25519.pem", Algorithm::EdDSA, "ed")]}})
        })
        .collect();
    let mut client_ids = Vec::new();
    for km in &setup.kms {
        client_ids.push(serde_json::json!({"id": format!("c-{}", km.name), "key_manager": km.name}));
        client_ids
            .push(serde_json::json!({"id": format!("s-{}", km.name), "key_manager": km.name, "key_type": "SANDBOX"}));
    }
    let unsubscribed: Vec<serde_json::Value> = setup
        .kms
        .iter()
        .map(|km| serde_json::json!({"id": format!("u-{}", km.name), "key_manager": km.name}))
        .collect();
    let mut endpoints = serde_json::json!({"production": "prod"});
    if setup.sandbox_endpoint {
        endpoints["sandbox"] = "sand".into();
    }
    serde_json::json!({
        "compatibility": if setup.microgateway { "microgateway" } else { "apim" },
        "key_managers": key_managers,
        "apis": [{"name": "P", "context": "/p", "version": "1", "endpoints": endpoints, "resources": [
            {"method": "GET", "path": "/open"},
            {"method": "GET", "path": "/menu", "scopes": setup.menu_scopes},
            {"method": "GET", "path": "/user", "user_token_only": true},
            {"method": "GET", "path": "/app", "application_token_only": true}]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "alice", "client_ids": client_ids},
                         {"id": "app-2", "name": "Other", "owner": "bob", "client_ids": unsubscribed}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}]
    })
    .to_string()
}

/// Who signs a token, and how.
#[derive(Clone, Copy, Debug)]
enum Signer {
    Hmac { right_secret: bool },
    Ec,
    Ed,
}

/// A generated token: its header and claims as raw JSON members (so duplicates can be written).
#[derive(Debug)]
struct Token {
    alg: &'static str,
    kid: Option<&'static str>,
    crit: bool,
    signer: Signer,
    claims: Vec<(String, String)>,
    header_extra: Vec<(String, String)>,
}

pub(super) fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

pub(super) fn time_value(rng: &mut Rng, now: u64, skew: u64) -> String {
    let around = [now - skew - 1, now - skew, now - skew + 1, now, now + 1, now + skew, now + skew + 1, now + 600];
    match rng.below(12) {
        0 => format!("{}.5", rng.pick(&around)),
        1 => "-5".into(),
        2 => rng.pick(&["1e300", "9223372036854775807", "9223372036854775808", "18446744073709551616"]).to_string(),
        3 => "\"1700000000\"".into(),
        4 => "0".into(),
        _ => rng.pick(&around).to_string(),
    }
}

fn token(rng: &mut Rng, setup: &Setup, now: u64) -> Token {
    let km = rng.below(setup.kms.len());
    let km_ref = &setup.kms[km];
    let (signer, alg) = match rng.below(10) {
        0..=5 => (Signer::Hmac { right_secret: !rng.chance(5) }, "HS256"),
        6 | 7 => (Signer::Ed, "EdDSA"),
        _ => (Signer::Ec, "ES256"),
    };
    // Sometimes the header names another algorithm than the one that signed.
    let alg = if rng.chance(5) { *rng.pick(&["HS256", "ES256", "EdDSA", "ES384", "RS256", "HS512"]) } else { alg };
    let right_kid = match signer {
        Signer::Ec => Some("ec"),
        Signer::Ed => Some("ed"),
        Signer::Hmac { .. } => None,
    };
    let kid = if rng.chance(70) {
        *rng.pick(&[None, right_kid])
    } else {
        *rng.pick(&[Some("ec"), Some("ed"), Some("unknown")])
    };
    let mut header_extra = Vec::new();
    if rng.chance(30) {
        let typ = *rng.pick(&["JWT", "at+jwt", "JOSE", "application/at+jwt"]);
        header_extra.push(("typ".into(), quoted(typ)));
    }
    let mut claims = Vec::new();
    let issuer = km_ref.issuer.trim_end_matches('/');
    let iss = match rng.below(24) {
        0 => None,
        1 => Some(quoted(&format!("{issuer}/"))),
        2 => Some(quoted(&format!("{issuer}//"))),
        3 => Some(quoted(&issuer.to_uppercase())),
        4 => Some("7".into()),
        5 => Some(quoted("https://elsewhere.example")),
        _ => Some(quoted(issuer)),
    };
    if let Some(iss) = iss {
        claims.push(("iss".into(), iss));
    }
    if rng.chance(50) {
        claims.push(("exp".into(), (now + 600).to_string()));
    } else if !rng.chance(8) {
        claims.push(("exp".into(), time_value(rng, now, km_ref.skew)));
    }
    if rng.chance(30) {
        claims.push(("nbf".into(), time_value(rng, now, km_ref.skew)));
    }
    if rng.chance(30) {
        claims.push(("iat".into(), time_value(rng, now, km_ref.skew)));
    }
    let wanted = km_ref.audiences.first().cloned().unwrap_or_else(|| "gw".into());
    match rng.below(10) {
        0 | 5 | 6 => claims.push(("aud".into(), quoted(&wanted))),
        1 => claims.push(("aud".into(), format!("[\"x\",{}]", quoted(&wanted)))),
        2 => claims.push(("aud".into(), quoted("other"))),
        3 => claims.push(("aud".into(), "[]".into())),
        4 => claims.push(("aud".into(), format!("[{},5]", quoted(&wanted)))),
        _ => {}
    }
    let other_km = &setup.kms[rng.below(setup.kms.len())].name;
    let client = match rng.below(16) {
        0 | 4 | 5 => format!("s-{}", km_ref.name),
        1 => format!("u-{}", km_ref.name),
        2 => format!("c-{other_km}"),
        3 => "nobody".into(),
        _ => format!("c-{}", km_ref.name),
    };
    let client_claim = if rng.chance(70) { km_ref.client_claims[0] } else { *rng.pick(&["client_id", "azp", "cid"]) };
    match rng.below(16) {
        0 => {}
        1 => claims.push((client_claim.into(), "42".into())),
        2 => {
            claims.push(("azp".into(), quoted(&client)));
            claims.push(("client_id".into(), quoted("nobody")));
        }
        3 => claims.push((client_claim.into(), "null".into())),
        _ => claims.push((client_claim.into(), quoted(&client))),
    }
    let scopes: Vec<&str> = SCOPES.iter().copied().filter(|_| rng.chance(40)).collect();
    let scope_claim = if rng.chance(70) { km_ref.scope_claims[0] } else { *rng.pick(&["scope", "scp"]) };
    match rng.below(12) {
        0 => {}
        1..=4 => claims.push((scope_claim.into(), serde_json::json!(scopes).to_string())),
        5 => claims.push((scope_claim.into(), quoted(&scopes.join("\u{a0}")))),
        6 => claims.push((scope_claim.into(), "[\"read\",1]".into())),
        7 => claims.push((scope_claim.into(), "null".into())),
        _ => claims.push((scope_claim.into(), quoted(&format!(" {} ", scopes.join("  "))))),
    }
    // Both names, with other scopes under the second: the key manager's order decides.
    if rng.chance(20) {
        let other = if scope_claim == "scope" { "scp" } else { "scope" };
        let others: Vec<&str> = SCOPES.iter().copied().filter(|_| rng.chance(50)).collect();
        claims.push((other.into(), quoted(&others.join(" "))));
    }
    match rng.below(8) {
        0 => claims.push(("aut".into(), quoted("APPLICATION"))),
        1 => claims.push(("aut".into(), quoted("APPLICATION_USER"))),
        2 => claims.push(("aut".into(), quoted("Application_User"))),
        3 => claims.push(("aut".into(), "1".into())),
        _ => {}
    }
    if rng.chance(50) {
        claims.push(("sub".into(), quoted("carol")));
    }
    if rng.chance(20) {
        let keytype = *rng.pick(&["PRODUCTION", "sandbox", "SANDBOX"]);
        claims.push(("keytype".into(), quoted(keytype)));
    }
    if rng.chance(30) {
        claims.push(("jti".into(), quoted(&format!("j-{}", rng.next()))));
    }
    match rng.below(30) {
        0 => claims.push(("token_type".into(), quoted("apiKey"))),
        1 => claims.push(("token_type".into(), quoted("InternalKey"))),
        2 => claims.push(("application".into(), "{\"uuid\":\"app-1\"}".into())),
        3 => {
            claims.push(("application".into(), "{\"uuid\":\"app-1\"}".into()));
            claims.push(("consumerKey".into(), quoted(&client)));
        }
        4 if !claims.is_empty() => {
            let duplicate = claims[rng.below(claims.len())].clone();
            claims.push(duplicate);
        }
        _ => {}
    }
    // A unique claim, so that no two tokens of a run are one token.
    claims.push(("n".into(), rng.next().to_string()));
    Token { alg, kid, crit: rng.chance(3), signer, claims, header_extra }
}

pub(super) fn object(members: &[(String, String)]) -> String {
    let body: Vec<String> = members.iter().map(|(name, value)| format!("{}:{value}", quoted(name))).collect();
    format!("{{{}}}", body.join(","))
}

fn compact(token: &Token) -> String {
    let mut header = vec![("alg".to_string(), quoted(token.alg))];
    if let Some(kid) = token.kid {
        header.push(("kid".into(), quoted(kid)));
    }
    if token.crit {
        header.push(("crit".into(), "[\"b64\"]".into()));
    }
    header.extend(token.header_extra.iter().cloned());
    let (header, payload) = (object(&header), object(&token.claims));
    match token.signer {
        Signer::Ec => sign_raw(&header, &payload, "ec-p256.pem", Algorithm::ES256),
        Signer::Ed => sign_raw(&header, &payload, "ed25519.pem", Algorithm::EdDSA),
        Signer::Hmac { right_secret } => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let input = format!("{}.{}", b64.encode(&header), b64.encode(&payload));
            let secret = if right_secret { SECRET.to_string() } else { SECRET.replace('a', "b") };
            let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
            let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
            format!("{input}.{signature}")
        }
    }
}

/// What a request should get: forwarded to a cluster (with the end user it names), or a fault.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Forwarded { cluster: String, end_user: Option<String> },
    Fault { code: u32, status: u16 },
}

const INVALID: Outcome = Outcome::Fault { code: 900901, status: 401 };

/// A NumericDate as the docs say: a number that fits a signed 64-bit integer, not negative;
/// a fraction counts toward validity no longer than the claim says.
pub(super) fn numeric_date(raw: &str, round_up: bool) -> Option<u64> {
    if let Ok(whole) = raw.parse::<i128>() {
        return (0..=i64::MAX as i128).contains(&whole).then_some(whole as u64);
    }
    let value: f64 = raw.parse().ok()?;
    let value = if round_up { value.ceil() } else { value.floor() };
    (0.0..=i64::MAX as f64).contains(&value).then_some(value as u64)
}

/// The model of the docs: what `token` sent to `resource` at `now` should get.
fn model(setup: &Setup, token: &Token, resource: &str, now: u64) -> Outcome {
    // Duplicate members are malformed; `crit` is refused (no extension understood).
    let mut names: Vec<&str> = token.claims.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) || token.crit {
        return INVALID;
    }
    let claim = |name: &str| token.claims.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let value = |name: &str| claim(name).map(|raw| serde_json::from_str::<serde_json::Value>(raw).unwrap());
    // API keys and internal keys are never access tokens (WSO2's OAuthAuthenticator).
    let token_type = value("token_type");
    let api_key = match token_type.as_ref().and_then(|t| t.as_str()) {
        Some(kind) => kind == "apiKey" || kind == "InternalKey",
        None => claim("application").is_some() && claim("consumerKey").is_none(),
    };
    if api_key {
        return INVALID;
    }
    // The issuer picks the key manager: exact, except one trailing `/`.
    let trim = |issuer: &str| issuer.strip_suffix('/').unwrap_or(issuer).to_string();
    let Some(iss) = value("iss").and_then(|iss| iss.as_str().map(trim)) else { return INVALID };
    let Some(km) = setup.kms.iter().find(|km| trim(&km.issuer) == iss) else { return INVALID };
    // The signature: an algorithm the key manager accepts, by a key that serves it.
    if !km.algorithms.contains(&token.alg) {
        return INVALID;
    }
    let signed = match token.signer {
        Signer::Hmac { right_secret } => right_secret && token.alg == "HS256",
        Signer::Ec => token.alg == "ES256" && matches!(token.kid, None | Some("ec")),
        Signer::Ed => token.alg == "EdDSA" && matches!(token.kid, None | Some("ed")),
    };
    if !signed {
        return INVALID;
    }
    // Times: `exp` required, expired past the skew (900903 with the Microgateway's codes).
    let Some(exp) = claim("exp").map(|raw| numeric_date(raw, false)) else { return INVALID };
    let Some(exp) = exp else { return INVALID };
    if now > exp + km.skew {
        return if setup.microgateway { Outcome::Fault { code: 900903, status: 401 } } else { INVALID };
    }
    if let Some(raw) = claim("nbf") {
        match numeric_date(raw, true) {
            Some(nbf) if nbf <= now + km.skew => {}
            _ => return INVALID,
        }
    }
    if claim("iat").is_some_and(|raw| numeric_date(raw, false).is_none()) {
        return INVALID;
    }
    // Audience: a string or an array of strings; one of the configured ones, if any.
    let audiences: Vec<String> = match value("aud") {
        None => Vec::new(),
        Some(serde_json::Value::String(aud)) => vec![aud],
        Some(serde_json::Value::Array(items)) if items.iter().all(|item| item.is_string()) => {
            items.iter().filter_map(|item| item.as_str().map(String::from)).collect()
        }
        Some(_) => return INVALID,
    };
    if !km.audiences.is_empty() && !audiences.iter().any(|aud| km.audiences.contains(aud)) {
        return INVALID;
    }
    // The client id: the first of the key manager's names present (null is absent), a string.
    let mut client = None;
    for name in &km.client_claims {
        match value(name) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(id)) => {
                client = Some(id);
                break;
            }
            Some(_) => return INVALID,
        }
    }
    // None: the token names no application, refused as a missing subscription (CONFIG.md,
    // `claims.client_id`: 900908).
    let Some(client) = client else { return Outcome::Fault { code: 900908, status: 403 } };
    // Scopes: the first name present; a string split at spaces, or an array of strings.
    // As for the client id, a null member is absent.
    let scopes: Vec<String> = match km.scope_claims.iter().find_map(|name| value(name).filter(|v| !v.is_null())) {
        None => Vec::new(),
        Some(serde_json::Value::String(text)) => text.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
        Some(serde_json::Value::Array(items)) if items.iter().all(|item| item.is_string()) => {
            items.iter().filter_map(|item| item.as_str().map(String::from)).collect()
        }
        Some(_) => return INVALID,
    };
    let user_token = match value("aut") {
        None => false,
        Some(serde_json::Value::String(kind)) => kind.eq_ignore_ascii_case("APPLICATION_USER"),
        Some(_) => return INVALID,
    };
    let end_user = value("sub").and_then(|sub| sub.as_str().map(String::from));
    // Authorization: the client must be this key manager's, of a subscribed application.
    let forbidden = Outcome::Fault { code: 900908, status: 403 };
    let sandbox = if client == format!("c-{}", km.name) {
        false
    } else if client == format!("s-{}", km.name) {
        true
    } else {
        return forbidden;
    };
    let (user_only, app_only) = (resource == "user", resource == "app");
    if (user_only && !user_token) || (app_only && user_token) {
        return Outcome::Fault { code: 900905, status: 401 };
    }
    if resource == "menu"
        && !setup.menu_scopes.is_empty()
        && !setup.menu_scopes.iter().any(|scope| scopes.iter().any(|s| s == scope))
    {
        return Outcome::Fault { code: 900910, status: 403 };
    }
    if sandbox && !setup.sandbox_endpoint {
        return Outcome::Fault { code: 900901, status: 403 };
    }
    Outcome::Forwarded { cluster: if sandbox { "sand" } else { "prod" }.into(), end_user }
}

/// Sends `token` to `resource` through a stream of `worker` at `now`; what the filter did.
/// `host`'s next request: a GET of `resource` with `token` as its bearer, nothing sent or
/// counted yet.
pub(super) fn bearer_request(host: &mut FakeHost, token: &str, resource: &str) {
    host.request = [(":method", "GET"), (":path", &*format!("/p/1/{resource}"))]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
    host.sent = None;
    host.counted.clear();
}

fn send(
    config: &Rc<Config>,
    worker: &Rc<RefCell<Worker>>,
    host: &mut FakeHost,
    token: &str,
    resource: &str,
) -> Outcome {
    bearer_request(host, token, resource);
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    match stream.on_request_headers(host, true) {
        Flow::Continue => Outcome::Forwarded {
            cluster: host.req("x-apim-cluster").to_string(),
            end_user: host.request.get("x-apim-end-user").map(|v| String::from_utf8(v.clone()).unwrap()),
        },
        Flow::Answered => {
            let status = host.sent.as_ref().map_or(0, |(status, _, _)| *status);
            assert_eq!(host.counted.len(), 1, "one fault counted");
            Outcome::Fault { code: host.counted[0], status }
        }
        Flow::Waiting => panic!("no call is expected with inline keys"),
    }
}

/// The moments a token is sent at: now, again now (from the worker's cache, then from another
/// worker's, through shared data), and later: at its `exp` plus the skew, a second after, or
/// at some other time.
fn moments(rng: &mut Rng, setup: &Setup, token: &Token) -> Vec<(u64, usize)> {
    let exp = token.claims.iter().find(|(name, _)| name == "exp").and_then(|(_, raw)| raw.parse::<u64>().ok());
    let skew = setup.kms.iter().map(|km| km.skew).max().unwrap_or(0);
    let later = match exp {
        Some(exp) if exp >= NOW && rng.chance(60) => exp + skew + rng.below(2) as u64,
        _ => NOW + *rng.pick(&[1u64, 6, 61, 301, 100_000]),
    };
    vec![(NOW, 0), (NOW, 0), (NOW, 1), (later, 0), (later, 1)]
}

#[test]
fn access_token_claims_get_what_the_documents_say_from_the_filter_and_from_its_cache() {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut cases, mut disagreements) = (0, Vec::new());
    for seed in 0..SEEDS {
        let mut rng = Rng(seed);
        let setup = setup(&mut rng);
        let config = Rc::new(Config::from_json(config_json(&setup).as_bytes()).unwrap());
        let workers = [Rc::new(RefCell::new(Worker::new(&config))), Rc::new(RefCell::new(Worker::new(&config)))];
        let mut host = FakeHost { now: NOW, ..Default::default() };
        for _ in 0..TOKENS_PER_SEED {
            let token_spec = token(&mut rng, &setup, NOW);
            let token = compact(&token_spec);
            let resource = *rng.pick(&["open", "menu", "user", "app"]);
            for (now, worker) in moments(&mut rng, &setup, &token_spec) {
                host.now = now;
                let expected = model(&setup, &token_spec, resource, now);
                let got = send(&config, &workers[worker], &mut host, &token, resource);
                cases += 1;
                let class = match &got {
                    Outcome::Forwarded { cluster, .. } => cluster.clone(),
                    Outcome::Fault { code, status } => format!("{code}/{status}"),
                };
                *seen.entry(class).or_default() += 1;
                if got != expected {
                    disagreements.push(format!(
                        "seed {seed} at +{} worker {worker}: /{resource} model {expected:?} filter {got:?}\n  {token_spec:?}",
                        now - NOW
                    ));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    assert_eq!(cases, SEEDS as usize * TOKENS_PER_SEED * 5);
    // Every outcome class is reached, so the model is compared where it matters.
    for class in ["prod", "sand", "900901/401", "900901/403", "900903/401", "900905/401", "900908/403", "900910/403"] {
        assert!(seen.get(class).is_some_and(|count| *count >= 5), "{class} reached: {seen:?}");
    }
}

const SEEDS: u64 = 60;
const TOKENS_PER_SEED: usize = 12;
