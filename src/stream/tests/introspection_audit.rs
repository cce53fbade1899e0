//! A seeded, model-based campaign over the key manager's side of opaque tokens: random RFC 7662
//! answers (odd-typed and missing members, expired, not yet valid, huge numbers, duplicates,
//! non-JSON, 4xx/5xx, failed calls, answers too large to cache), revocations, slow answers while
//! more requests with the token arrive on the same and on other workers, and time passing; each
//! request's code and status and the number of introspection calls are compared with a model
//! written from README.md (key validation), docs/CONFIG.md (`Introspection`, `Claims`),
//! docs/ERROR-CODES.md and, where they are silent, WSO2 API-M 4.x's gateway
//! (wso2/carbon-apimgt `AMDefaultKeyManagerImpl.getTokenMetaData`: `active` false is 900901, a
//! key manager error 900900; `APIKeyValidator.getKeyValidationInfo`: a cached entry is checked
//! against the token's expiry on every hit). Seed: `APIM_INTROSPECTION_AUDIT_SEED`.

use super::*;
use crate::host::fuzz::Rng;
use std::collections::{BTreeMap, HashMap as Map};

const NOW: u64 = 1_800_000_000;
const FAR: u64 = 4_102_444_800;

struct Setup {
    ttl: u64,
    negative_ttl: u64,
    skew: u64,
    sandbox: bool,
}

fn config(setup: &Setup) -> Rc<Config> {
    let endpoints = if setup.sandbox {
        serde_json::json!({"production": "prod", "sandbox": "sand"})
    } else {
        serde_json::json!({"production": "prod"})
    };
    let json = serde_json::json!({
        "key_managers": [{"name": "km", "issuer": "https://km", "clock_skew_s": setup.skew,
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "gw-secret",
                "cache_ttl_s": setup.ttl, "negative_cache_ttl_s": setup.negative_ttl}}],
        "apis": [{"name": "P", "context": "/p", "version": "1", "endpoints": endpoints,
            "resources": [{"method": "GET", "path": "/open"},
                          {"method": "GET", "path": "/menu", "scopes": ["read"]}]}],
        "applications": [
            {"id": "app-1", "name": "App", "client_ids": [{"id": "app1"}, {"id": "app1-sb", "key_type": "SANDBOX"}]},
            {"id": "app-2", "name": "Other", "client_ids": [{"id": "app2"}]}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}]
    });
    Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap())
}

/// What the key manager answers.
#[derive(Clone, Debug)]
enum Reply {
    /// 200 with a JSON object of these members (raw JSON values, in order, maybe repeated).
    Json(Vec<(&'static str, String)>),
    /// Another status, or a 200 that is not JSON.
    Raw(u16, String),
    /// The call failed (reset, timeout, no cluster).
    Failed,
}

fn q(text: &str) -> String {
    format!("\"{text}\"")
}

/// A NumericDate, well-formed or not, around `now`.
fn time(rng: &mut Rng, now: u64) -> String {
    match rng.below(12) {
        0 => q(&now.to_string()),
        1 => "-5".into(),
        2 => "1e300".into(),
        3 => "18446744073709551616".into(),
        4 => "null".into(),
        5 => format!("{}.5", now + 30),
        6 => FAR.to_string(),
        7 => (now - 1).to_string(),
        8 => now.to_string(),
        _ => (now + *rng.pick(&[1u64, 2, 30, 90, 400, 5_000])).to_string(),
    }
}

fn reply(rng: &mut Rng, now: u64) -> Reply {
    match rng.below(40) {
        0 => return Reply::Failed,
        1 => {
            return Reply::Raw(
                *rng.pick(&[400, 401, 404, 500, 502, 503]),
                r#"{"active":true,"client_id":"app1"}"#.into(),
            )
        }
        2 => return Reply::Raw(200, "<html>upstream connect error</html>".into()),
        3 => return Reply::Raw(200, r#"[{"active":true}]"#.into()),
        _ => {}
    }
    let mut members: Vec<(&'static str, String)> = Vec::new();
    match rng.below(14) {
        0 => {}
        1 => members.push(("active", q("true"))),
        2 => members.push(("active", "1".into())),
        3..=5 => members.push(("active", "false".into())),
        _ => members.push(("active", "true".into())),
    }
    match rng.below(10) {
        0 => members.push(("token_type", q("refresh_token"))),
        1 => members.push(("token_type", q("Bearer"))),
        2 => members.push(("token_type", q("bearer"))),
        3 => members.push(("token_type", "7".into())),
        _ => {}
    }
    for (name, percent) in [("exp", 3usize), ("nbf", 8), ("iat", 3)] {
        if rng.below(percent) == 0 || (name == "exp" && rng.chance(2)) {
            members.push((name, time(rng, now)));
        }
    }
    match rng.below(12) {
        0 => {}
        1 => members.push(("client_id", "7".into())),
        2 => members.push(("client_id", q(""))),
        3 => members.push(("client_id", q("stranger"))),
        4 => members.push(("client_id", q("app2"))),
        5 | 6 => members.push(("client_id", q("app1-sb"))),
        _ => members.push(("client_id", q("app1"))),
    }
    match rng.below(9) {
        0 => {}
        1 => members.push(("scope", r#"["read","x"]"#.into())),
        2 => members.push(("scope", q("write"))),
        3 => members.push(("scope", "5".into())),
        4 => members.push(("scope", "null".into())),
        5 => {
            // Too large to cache (16 KiB): served, asked again next time.
            let many: Vec<String> = (0..2_000).map(|i| format!("scope-{i:05}")).collect();
            members.push(("scope", q(&format!("read {}", many.join(" ")))));
        }
        _ => members.push(("scope", q("openid read"))),
    }
    match rng.below(8) {
        0 => members.push(("username", q("erin"))),
        1 => members.push(("username", q(""))),
        2 => members.push(("username", "3".into())),
        _ => {}
    }
    if rng.chance(4) {
        members.push(("sub", q("sam")));
    }
    match rng.below(6) {
        0 => members.push(("aud", q("elsewhere"))),
        1 => members.push(("aud", r#"["a",5]"#.into())),
        _ => {}
    }
    if rng.chance(15) && !members.is_empty() {
        let twice = members[rng.below(members.len())].clone();
        members.push(twice);
    }
    Reply::Json(members)
}

fn body(reply: &Reply) -> Answer {
    match reply {
        Reply::Json(members) => {
            let inner: Vec<String> = members.iter().map(|(name, value)| format!("\"{name}\":{value}")).collect();
            Answer::Http { status: 200, body: format!("{{{}}}", inner.join(",")).into_bytes() }
        }
        Reply::Raw(status, text) => Answer::Http { status: *status, body: text.clone().into_bytes() },
        Reply::Failed => Answer::Failed { code: 11 },
    }
}

/// What the model makes of an answer.
#[derive(Clone, Debug)]
enum Meaning {
    Active { client: String, scopes: Vec<String>, user: Option<String>, exp: Option<u64>, cacheable: bool },
    Inactive,
    NotYetValid { valid_from: u64 },
    Unavailable,
}

/// A NumericDate as RFC 7519 has it (a number, a fraction allowed, within a signed 64-bit
/// integer): `Err` when malformed, `Ok(None)` when absent or null.
fn numeric(raw: Option<&String>, round_up: bool) -> Result<Option<u64>, ()> {
    let Some(raw) = raw else { return Ok(None) };
    if raw == "null" {
        return Ok(None);
    }
    if let Ok(whole) = raw.parse::<i128>() {
        return (0..=i64::MAX as i128).contains(&whole).then_some(Some(whole as u64)).ok_or(());
    }
    let value: f64 = raw.parse().map_err(|_| ())?;
    let value = if round_up { value.ceil() } else { value.floor() };
    (0.0..=i64::MAX as f64).contains(&value).then_some(Some(value as u64)).ok_or(())
}

/// README (key validation) and the introspection module's docs: only a 200 with a well-typed
/// JSON object is an answer; anything else, duplicates included, is the key manager's outage.
fn meaning(setup: &Setup, reply: &Reply, now: u64) -> Meaning {
    let Reply::Json(members) = reply else { return Meaning::Unavailable };
    let mut names: Vec<&str> = members.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Meaning::Unavailable;
    }
    let raw = |name: &str| members.iter().find(|(n, _)| *n == name).map(|(_, value)| value);
    let text = |name: &str| -> Result<Option<String>, ()> {
        match raw(name).map(String::as_str) {
            None | Some("null") => Ok(None),
            Some(value) if value.starts_with('"') => Ok(Some(value.trim_matches('"').to_string())),
            Some(_) => Err(()),
        }
    };
    match raw("active").map(String::as_str) {
        Some("true") => {}
        Some("false") => return Meaning::Inactive,
        _ => return Meaning::Unavailable,
    }
    match text("token_type") {
        Err(()) => return Meaning::Unavailable,
        Ok(Some(kind)) if !kind.eq_ignore_ascii_case("bearer") => return Meaning::Inactive,
        Ok(_) => {}
    }
    let (Ok(exp), Ok(nbf)) = (numeric(raw("exp"), false), numeric(raw("nbf"), true)) else {
        return Meaning::Unavailable;
    };
    if exp.is_some_and(|exp| exp <= now) {
        return Meaning::Inactive;
    }
    if let Some(nbf) = nbf.filter(|nbf| *nbf > now + setup.skew) {
        return Meaning::NotYetValid { valid_from: nbf - setup.skew };
    }
    let (Ok(username), Ok(sub), Ok(client)) = (text("username"), text("sub"), text("client_id")) else {
        return Meaning::Unavailable;
    };
    let scopes = match raw("scope").map(String::as_str) {
        None | Some("null") => Vec::new(),
        Some(value) if value.starts_with('"') => value.trim_matches('"').split(' ').map(String::from).collect(),
        Some(value) if value.starts_with('[') => {
            let items: Vec<serde_json::Value> = serde_json::from_str(value).unwrap();
            if items.iter().any(|item| !item.is_string()) {
                return Meaning::Unavailable;
            }
            items.iter().filter_map(|item| item.as_str().map(String::from)).collect()
        }
        Some(_) => return Meaning::Unavailable,
    };
    let Some(client) = client else { return Meaning::Inactive };
    let user = username.filter(|name| !name.is_empty()).or(sub);
    Meaning::Active { client, cacheable: scopes.len() < 100, scopes, user, exp }
}

/// `Ok((cluster, end user))` when forwarded, else the fault's (code, status).
type Outcome = Result<(String, Option<String>), (u32, u16)>;

fn outcome(setup: &Setup, meaning: &Meaning, resource: &str) -> Outcome {
    let (client, scopes, user) = match meaning {
        Meaning::Active { client, scopes, user, .. } => (client, scopes, user),
        Meaning::Inactive | Meaning::NotYetValid { .. } => return Err((900901, 401)),
        Meaning::Unavailable => return Err((900900, 500)),
    };
    let sandbox = match client.as_str() {
        "app1" => false,
        "app1-sb" => true,
        _ => return Err((900908, 403)),
    };
    if resource == "menu" && !scopes.iter().any(|scope| scope == "read") {
        return Err((900910, 403));
    }
    match (sandbox, setup.sandbox) {
        (false, _) => Ok(("prod".into(), user.clone())),
        (true, true) => Ok(("sand".into(), user.clone())),
        (true, false) => Err((900901, 403)),
    }
}

/// The model's cache (shared by every worker): what a token's entry says, from when, until when.
struct Entry {
    since: u64,
    until: u64,
    meaning: Meaning,
}

/// docs/CONFIG.md `Introspection`: active until min(`cache_ttl_s`, `exp`), inactive for
/// `negative_cache_ttl_s` (a token not yet valid no longer than until then), outages never;
/// README: an answer over 16 KiB is not cached.
fn cache_answer(setup: &Setup, cache: &mut Map<String, Entry>, token: &str, meaning: &Meaning, now: u64, asked: u64) {
    let until = match meaning {
        Meaning::Active { cacheable: false, .. } | Meaning::Unavailable => return,
        Meaning::Active { exp, .. } => (now + setup.ttl).min(exp.unwrap_or(u64::MAX)),
        Meaning::Inactive => now + setup.negative_ttl,
        Meaning::NotYetValid { valid_from } => (now + setup.negative_ttl).min(*valid_from),
    };
    // A refusal the key manager gave after this call was made is its newer word: an active
    // answer to the older call does not bring a revoked token back for the TTL.
    let newer_refusal = cache.get(token).is_some_and(|entry| {
        !matches!(entry.meaning, Meaning::Active { .. }) && entry.since >= asked && now < entry.until
    });
    if matches!(meaning, Meaning::Active { .. }) && newer_refusal {
        return;
    }
    cache.insert(token.to_string(), Entry { since: now, until, meaning: meaning.clone() });
}

fn cached(cache: &Map<String, Entry>, token: &str, now: u64) -> Option<Meaning> {
    let entry = cache.get(token).filter(|entry| entry.since <= now && now < entry.until)?;
    match &entry.meaning {
        Meaning::Active { exp: Some(exp), .. } if now >= *exp => None,
        meaning => Some(meaning.clone()),
    }
}

struct Run {
    host: FakeHost,
    config: Rc<Config>,
    workers: Vec<Rc<RefCell<Worker>>>,
}

impl Run {
    fn request(&mut self, token: &str, resource: &str) {
        self.host.request = [(":method", "GET"), (":path", &*format!("/p/1/{resource}"))]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        self.host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
        self.host.sent = None;
        self.host.counted.clear();
        self.host.resumed = false;
    }

    /// Starts a request on `worker`: its outcome if it has one now, and the call it made if any.
    fn start(&mut self, worker: usize, token: &str, resource: &str) -> (Stream, Option<Outcome>, Option<u32>) {
        self.request(token, resource);
        let calls = self.host.dispatched.len();
        let mut stream = Stream::new(Rc::clone(&self.config), Rc::clone(&self.workers[worker]));
        let flow = stream.on_request_headers(&mut self.host, true);
        let made = (self.host.dispatched.len() > calls).then_some(self.host.dispatched.len() as u32);
        assert!(self.host.dispatched.len() <= calls + 1, "at most one call a request");
        if let Some(call) = made {
            let (cluster, _, _) = &self.host.dispatched[call as usize - 1];
            assert_eq!(cluster, "km");
        }
        let done = (flow != Flow::Waiting).then(|| self.outcome());
        (stream, done, made)
    }

    /// The answer to `call` reaches a stream waiting for it (its own call, or one it joined).
    fn answer(&mut self, stream: &mut Stream, token: &str, resource: &str, call: u32, answer: &Answer) -> Outcome {
        self.request(token, resource);
        stream.on_call_response(&mut self.host, call, answer.clone());
        assert!(self.host.sent.is_some() || self.host.resumed, "the request goes on or is answered");
        self.outcome()
    }

    fn outcome(&self) -> Outcome {
        match &self.host.sent {
            Some((status, _, _)) => {
                assert_eq!(self.host.counted.len(), 1, "one fault counted");
                Err((self.host.counted[0], *status))
            }
            None => {
                let header = |name: &str| self.host.request.get(name).map(|v| String::from_utf8(v.clone()).unwrap());
                Ok((header("x-apim-cluster").unwrap_or_default(), header("x-apim-end-user")))
            }
        }
    }
}

#[path = "introspection_audit/campaign.rs"]
mod campaign;
