//! A seeded, model-based differential campaign over WSO2 JWT API keys (`api_key_jwt`): random
//! verifier settings and keys (`keytype`, `application`, `subscribedAPIs`, `permittedIP`,
//! `permittedReferer`, times, issuer, markers) go through the stream from several origins, and
//! each outcome is compared with a model written from docs/CONFIG.md (`ApiKeyJwt`) and
//! docs/ERROR-CODES.md, including the same key again (from the worker's cache) and later.

use super::claims_model::{numeric_date, object, quoted, time_value, Rng, NOW};
use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use jsonwebtoken::Algorithm;

struct Setup {
    issuer: Option<String>,
    skew: u64,
    microgateway: bool,
    sandbox_endpoint: bool,
}

fn config_json(setup: &Setup) -> String {
    let mut verifier = serde_json::json!({"algorithms": ["ES256", "EdDSA"], "clock_skew_s": setup.skew,
        "keys": [jwk("ec-p256.pem", Algorithm::ES256, "ak-ec"), jwk("ed25519.pem", Algorithm::EdDSA, "ak-ed")]});
    if let Some(issuer) = &setup.issuer {
        verifier["issuer"] = issuer.as_str().into();
    }
    let mut endpoints = serde_json::json!({"production": "prod"});
    if setup.sandbox_endpoint {
        endpoints["sandbox"] = "sand".into();
    }
    serde_json::json!({
        "compatibility": if setup.microgateway { "microgateway" } else { "apim" },
        "api_key_jwt": verifier,
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
            "endpoints": endpoints, "resources": [
                {"method": "GET", "path": "/items"},
                {"method": "GET", "path": "/menu", "scopes": ["read"], "security": ["api_key", "oauth2"]},
                {"method": "GET", "path": "/app", "application_token_only": true}]}]
    })
    .to_string()
}

/// A generated key: who signs it, its header and its claims as raw JSON members.
#[derive(Debug)]
struct Key {
    ed: bool,
    alg: &'static str,
    kid: Option<&'static str>,
    claims: Vec<(String, String)>,
}

fn key(rng: &mut Rng, setup: &Setup) -> Key {
    let ed = rng.chance(50);
    let right = if ed { ("EdDSA", "ak-ed") } else { ("ES256", "ak-ec") };
    let alg = if rng.chance(6) { *rng.pick(&["ES256", "EdDSA", "RS256", "HS256"]) } else { right.0 };
    let kid = if rng.chance(85) { *rng.pick(&[None, Some(right.1)]) } else { *rng.pick(&[Some("ak-ec"), Some("x")]) };
    let mut claims = Vec::new();
    let iss = setup.issuer.clone().unwrap_or_else(|| "https://apim/oauth2/token".into());
    match rng.below(10) {
        0 => {}
        1 => claims.push(("iss".into(), quoted(&format!("{}/", iss.trim_end_matches('/'))))),
        2 => claims.push(("iss".into(), quoted(&iss.to_uppercase()))),
        _ => claims.push(("iss".into(), quoted(&iss))),
    }
    match rng.below(4) {
        0 => {}
        1 => claims.push(("exp".into(), time_value(rng, NOW, setup.skew))),
        _ => claims.push(("exp".into(), (NOW + 600).to_string())),
    }
    if rng.chance(20) {
        claims.push(("nbf".into(), time_value(rng, NOW, setup.skew)));
    }
    match rng.below(12) {
        0 => {}
        1 => claims.push(("token_type".into(), quoted("InternalKey"))),
        2 => claims.push(("consumerKey".into(), quoted("ck"))),
        _ => claims.push(("token_type".into(), quoted("apiKey"))),
    }
    match rng.below(10) {
        0 => {}
        1 => claims.push(("keytype".into(), quoted("sandbox"))),
        2 => claims.push(("keytype".into(), quoted("Production"))),
        3 | 4 => claims.push(("keytype".into(), quoted("SANDBOX"))),
        _ => claims.push(("keytype".into(), quoted("PRODUCTION"))),
    }
    match rng.below(12) {
        0 => {}
        1 => claims.push(("application".into(), quoted("app"))),
        2 => claims.push(("application".into(), r#"{"name":"A"}"#.into())),
        3 => claims.push(("application".into(), r#"{"id":"app-2","name":"A","owner":"o","tier":"Gold"}"#.into())),
        _ => claims.push(("application".into(), r#"{"uuid":"app-1","name":"A","owner":"o","tier":"Gold"}"#.into())),
    }
    let (context, version) = match rng.below(10) {
        0 => ("/shop", "1.0.0"),
        1 => ("/shop/1.0.0", "1.0"),
        2 => ("/SHOP/1.0.0", "1.0.0"),
        _ => ("/shop/1.0.0", "1.0.0"),
    };
    let name = if rng.chance(20) { "Other" } else { "Shop" };
    match rng.below(10) {
        0 => {}
        1 => claims.push(("subscribedAPIs".into(), "{}".into())),
        _ => claims.push((
            "subscribedAPIs".into(),
            format!(
                r#"[{{"name":"X","context":"/x/1","version":"1","subscriptionTier":"Gold"}},{{"name":{},"context":{},"version":{},"subscriptionTier":"Gold"}}]"#,
                quoted(name),
                quoted(context),
                quoted(version)
            ),
        )),
    }
    match rng.below(6) {
        0 => claims.push(("permittedIP".into(), quoted(""))),
        1 => claims.push(("permittedIP".into(), quoted("192.0.2.0/24,2001:db8::1"))),
        2 => claims.push(("permittedIP".into(), quoted("198.51.100.9"))),
        _ => {}
    }
    match rng.below(6) {
        0 => claims.push(("permittedReferer".into(), quoted(""))),
        1 => claims.push(("permittedReferer".into(), quoted("https://app.example/*"))),
        _ => {}
    }
    if rng.chance(40) {
        claims.push(("sub".into(), quoted("dave")));
    }
    if rng.chance(4) {
        let duplicate = claims[rng.below(claims.len())].clone();
        claims.push(duplicate);
    }
    claims.push(("n".into(), rng.next().to_string()));
    Key { ed, alg, kid, claims }
}

fn compact(key: &Key) -> String {
    let mut header = vec![("alg".to_string(), quoted(key.alg)), ("typ".to_string(), quoted("JWT"))];
    if let Some(kid) = key.kid {
        header.push(("kid".into(), quoted(kid)));
    }
    let (header, payload) = (object(&header), object(&key.claims));
    if key.ed {
        sign_raw(&header, &payload, "ed25519.pem", Algorithm::EdDSA)
    } else {
        sign_raw(&header, &payload, "ec-p256.pem", Algorithm::ES256)
    }
}

/// Where a request comes from: the client address and the `Referer`, if any.
type Origin = (&'static str, Option<&'static str>);

const ORIGINS: [Origin; 4] = [
    ("192.0.2.7", Some("https://app.example/page")),
    ("192.0.2.7", None),
    ("198.51.100.9", Some("https://evil.example/")),
    ("[2001:db8::1]", Some("https://app.example/")),
];

/// 900908 as the key's restrictions refuse (403, "Access forbidden for the invocations"), told
/// apart from the 900908 of a missing subscription by its description: written as code 500.
const RESTRICTED: (u32, u16) = (500, 403);

/// The model of `ApiKeyJwt` in docs/CONFIG.md: `Ok(cluster)` or the fault's (code, status).
fn model(setup: &Setup, key: &Key, resource: &str, origin: Origin, now: u64) -> Result<&'static str, (u32, u16)> {
    const INVALID: (u32, u16) = (900901, 401);
    let mut names: Vec<&str> = key.claims.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(INVALID);
    }
    let claim = |name: &str| key.claims.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let value = |name: &str| claim(name).map(|raw| serde_json::from_str::<serde_json::Value>(raw).unwrap());
    // Only WSO2 API keys: `token_type` `apiKey`, or none with an `application` and no `consumerKey`.
    let api_key = match value("token_type") {
        Some(kind) => kind == "apiKey",
        None => claim("application").is_some() && claim("consumerKey").is_none(),
    };
    if !api_key {
        return Err(INVALID);
    }
    let trim = |issuer: &str| issuer.strip_suffix('/').unwrap_or(issuer).to_string();
    if let Some(issuer) = &setup.issuer {
        if value("iss").and_then(|iss| iss.as_str().map(trim)) != Some(trim(issuer)) {
            return Err(INVALID);
        }
    }
    // As WSO2's gateway, a key's header must name its signing key (`kid`).
    let right = if key.ed { ("EdDSA", "ak-ed") } else { ("ES256", "ak-ec") };
    if key.alg != right.0 || key.kid != Some(right.1) {
        return Err(INVALID);
    }
    if let Some(raw) = claim("exp") {
        let Some(exp) = numeric_date(raw, false) else { return Err(INVALID) };
        if now > exp + setup.skew {
            return Err(if setup.microgateway { (900903, 401) } else { INVALID });
        }
    }
    if let Some(raw) = claim("nbf") {
        if numeric_date(raw, true).is_none_or(|nbf| nbf > now + setup.skew) {
            return Err(INVALID);
        }
    }
    let sandbox = match value("keytype") {
        None => false,
        Some(kind) if kind == "PRODUCTION" => false,
        Some(kind) if kind == "SANDBOX" => true,
        Some(_) => return Err(INVALID),
    };
    let application = value("application");
    let has_id = |field: &str| application.as_ref().and_then(|app| app.get(field)).is_some_and(|id| id != "");
    if !application.as_ref().is_some_and(serde_json::Value::is_object) || !(has_id("uuid") || has_id("id")) {
        return Err(INVALID);
    }
    let subscribed = match value("subscribedAPIs") {
        None => Vec::new(),
        Some(serde_json::Value::Array(apis)) => apis,
        Some(_) => return Err(INVALID),
    };
    // Restrictions first (900908, "Access forbidden for the invocations"); empty ones restrict
    // nothing.
    let (address, referer) = origin;
    match value("permittedIP").as_ref().and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
        Some("192.0.2.0/24,2001:db8::1") if address == "192.0.2.7" || address == "[2001:db8::1]" => {}
        Some("198.51.100.9") if address == "198.51.100.9" => {}
        Some(_) => return Err(RESTRICTED),
        None => {}
    }
    if value("permittedReferer").as_ref().and_then(|v| v.as_str()).is_some_and(|v| !v.is_empty())
        && !referer.is_some_and(|referer| referer.starts_with("https://app.example/"))
    {
        return Err(RESTRICTED);
    }
    // The subscription: by versioned context and version, never by name.
    let listed = subscribed.iter().any(|api| api["context"] == "/shop/1.0.0" && api["version"] == "1.0.0");
    if !listed {
        return Err((900908, 403));
    }
    // API keys carry no scopes.
    if resource == "menu" {
        return Err((900910, 403));
    }
    match (sandbox, setup.sandbox_endpoint) {
        (false, _) => Ok("prod"),
        (true, true) => Ok("sand"),
        (true, false) => Err((900901, 403)),
    }
}

fn send(
    config: &Rc<Config>,
    worker: &Rc<RefCell<Worker>>,
    host: &mut FakeHost,
    key: &str,
    resource: &str,
    origin: Origin,
) -> Result<&'static str, (u32, u16)> {
    let path = format!("/shop/1.0.0/{resource}");
    let mut pairs = vec![(":method", "GET"), (":path", path.as_str()), ("apikey", key)];
    if let Some(referer) = origin.1 {
        pairs.push(("referer", referer));
    }
    host.request = pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    host.properties.insert("source.address".into(), format!("{}:4000", origin.0).into_bytes());
    host.sent = None;
    host.counted.clear();
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    match stream.on_request_headers(host, true) {
        Flow::Continue => match host.req("x-apim-cluster") {
            "prod" => Ok("prod"),
            "sand" => Ok("sand"),
            other => panic!("cluster {other}"),
        },
        Flow::Answered => {
            assert_eq!(host.counted.len(), 1, "one fault counted");
            let (status, _, body) = host.sent.clone().unwrap();
            let restricted = String::from_utf8(body).unwrap().contains("Access forbidden for the invocations");
            Err((if restricted { RESTRICTED.0 } else { host.counted[0] }, status))
        }
        Flow::Waiting => panic!("a JWT API key needs no call"),
    }
}

#[test]
fn jwt_api_keys_get_what_the_documents_say_from_every_origin_and_from_the_cache() {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut cases, mut disagreements) = (0, Vec::new());
    for seed in 0..SEEDS {
        let mut rng = Rng(seed ^ 0xa11ce);
        let issuer = match rng.below(3) {
            0 => None,
            1 => Some("https://apim/oauth2/token/".to_string()),
            _ => Some("https://apim/oauth2/token".to_string()),
        };
        let setup = Setup {
            issuer,
            skew: *rng.pick(&[0, 60, 300]),
            microgateway: rng.chance(50),
            sandbox_endpoint: rng.chance(50),
        };
        let config = Rc::new(Config::from_json(config_json(&setup).as_bytes()).unwrap());
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        let mut host = FakeHost { now: NOW, ..Default::default() };
        for _ in 0..KEYS_PER_SEED {
            let spec = key(&mut rng, &setup);
            let key = compact(&spec);
            let resource = *rng.pick(&["items", "items", "menu", "app"]);
            let later = NOW + *rng.pick(&[1u64, 61, 661, 901, 100_000]);
            for (now, origin) in [(NOW, 0), (NOW, rng.below(4)), (NOW, rng.below(4)), (later, rng.below(4))] {
                host.now = now;
                let expected = model(&setup, &spec, resource, ORIGINS[origin], now);
                let got = send(&config, &worker, &mut host, &key, resource, ORIGINS[origin]);
                cases += 1;
                *seen.entry(format!("{got:?}")).or_default() += 1;
                if got != expected {
                    disagreements.push(format!(
                        "seed {seed} at +{} from {:?}: /{resource} model {expected:?} filter {got:?}\n  {spec:?}",
                        now - NOW,
                        ORIGINS[origin]
                    ));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    assert_eq!(cases, SEEDS as usize * KEYS_PER_SEED * 4);
    for class in [
        r#"Ok("prod")"#,
        r#"Ok("sand")"#,
        "Err((900901, 401))",
        "Err((900901, 403))",
        "Err((900903, 401))",
        "Err((900908, 403))",
        "Err((900910, 403))",
        "Err((500, 403))",
    ] {
        assert!(seen.get(class).is_some_and(|count| *count >= 3), "{class} reached: {seen:?}");
    }
}

const SEEDS: u64 = 30;
const KEYS_PER_SEED: usize = 10;
