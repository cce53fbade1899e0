//! A seeded, model-based differential campaign over RFC 7662 introspection answers for opaque
//! tokens: random key-manager claim names, skews and compatibility, random answers (`active`,
//! `token_type`, `exp`, `nbf`, client id and scope under RFC 7662's names and the key manager's,
//! `username`, duplicate members), each token sent now, again (from the shared cache) and later,
//! compared with a model written from docs/CONFIG.md (`Claims`, `Introspection`) and README.md.

use super::claims_model::{bearer_request, numeric_date, object, quoted, time_value, Rng, NOW};
use super::*;

struct Setup {
    skew: u64,
    client_claims: Vec<&'static str>,
    scope_claims: Vec<&'static str>,
    microgateway: bool,
}

fn config_json(setup: &Setup) -> String {
    serde_json::json!({
        "compatibility": if setup.microgateway { "microgateway" } else { "apim" },
        "key_managers": [{"name": "km", "issuer": "https://km", "clock_skew_s": setup.skew,
            "claims": {"client_id": setup.client_claims, "scopes": setup.scope_claims},
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "gw-secret"}}],
        "apis": [{"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"},
            "resources": [{"method": "GET", "path": "/open"},
                          {"method": "GET", "path": "/menu", "scopes": ["read"]}]}],
        "applications": [{"id": "app-1", "name": "App", "client_ids": [{"id": "app1"}]}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}]
    })
    .to_string()
}

fn answer(rng: &mut Rng, setup: &Setup) -> Vec<(String, String)> {
    let mut members = Vec::new();
    match rng.below(12) {
        0 => {}
        1 => members.push(("active".into(), quoted("true"))),
        2 | 3 => members.push(("active".into(), "false".into())),
        _ => members.push(("active".into(), "true".into())),
    }
    match rng.below(10) {
        0 => members.push(("token_type".into(), quoted("refresh_token"))),
        1 => members.push(("token_type".into(), quoted("Bearer"))),
        2 => members.push(("token_type".into(), "3".into())),
        _ => {}
    }
    match rng.below(4) {
        0 => {}
        1 => members.push(("exp".into(), time_value(rng, NOW, setup.skew))),
        _ => members.push(("exp".into(), (NOW + 600).to_string())),
    }
    if rng.chance(20) {
        members.push(("nbf".into(), time_value(rng, NOW, setup.skew)));
    }
    let name = *rng.pick(&["client_id", "client_id", "cid", "azp"]);
    match rng.below(8) {
        0 => {}
        1 => members.push((name.into(), quoted("stranger"))),
        2 => members.push((name.into(), "7".into())),
        _ => members.push((name.into(), quoted("app1"))),
    }
    let scope_name = *rng.pick(&["scope", "scope", "scp"]);
    match rng.below(6) {
        0 => {}
        1 => members.push((scope_name.into(), r#"["read","x"]"#.into())),
        2 => members.push((scope_name.into(), quoted("write"))),
        _ => members.push((scope_name.into(), quoted("openid read"))),
    }
    match rng.below(5) {
        0 => members.push(("username".into(), quoted("erin"))),
        1 => members.push(("username".into(), quoted(""))),
        _ => {}
    }
    if rng.chance(5) {
        let duplicate = members[rng.below(members.len().max(1))].clone();
        members.push(duplicate);
    }
    members
}

/// `Ok(end user)` when forwarded, else the fault's (code, status).
type Outcome = Result<Option<String>, (u32, u16)>;

/// The model: RFC 7662 read as README.md and docs/CONFIG.md say.
fn model(setup: &Setup, members: &[(String, String)], resource: &str, now: u64) -> Outcome {
    let unavailable = Err((900900, 500));
    let inactive = Err(if setup.microgateway { (900904, 401) } else { (900901, 401) });
    let mut names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return unavailable;
    }
    let raw = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let value = |name: &str| raw(name).map(|raw| serde_json::from_str::<serde_json::Value>(raw).unwrap());
    match value("active") {
        Some(serde_json::Value::Bool(true)) => {}
        Some(serde_json::Value::Bool(false)) => return inactive,
        _ => return unavailable,
    }
    // A refresh token is reported active too, and is no access token.
    match value("token_type") {
        None => {}
        Some(serde_json::Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(serde_json::Value::String(_)) => return inactive,
        Some(_) => return unavailable,
    }
    let exp = raw("exp").map(|raw| numeric_date(raw, false));
    let nbf = raw("nbf").map(|raw| numeric_date(raw, true));
    if exp == Some(None) || nbf == Some(None) {
        return unavailable;
    }
    if exp.flatten().is_some_and(|exp| exp <= now) {
        return inactive;
    }
    if nbf.flatten().is_some_and(|nbf| nbf > now + setup.skew) {
        return inactive;
    }
    let username = match value("username") {
        None => None,
        Some(serde_json::Value::String(name)) => Some(name).filter(|name| !name.is_empty()),
        Some(_) => return unavailable,
    };
    // RFC 7662's `client_id` first, then the key manager's names; none is an inactive answer.
    let client_names = std::iter::once("client_id").chain(setup.client_claims.iter().copied());
    let client = match client_names.filter_map(&value).next() {
        None => return inactive,
        Some(serde_json::Value::String(client)) => client,
        Some(_) => return unavailable,
    };
    let scope_names = std::iter::once("scope").chain(setup.scope_claims.iter().copied());
    let scopes: Vec<String> = match scope_names.filter_map(&value).next() {
        None => Vec::new(),
        Some(serde_json::Value::String(text)) => text.split(' ').map(String::from).collect(),
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|s| s.as_str().map(String::from)).collect(),
        Some(_) => return unavailable,
    };
    if client != "app1" {
        return Err((900908, 403));
    }
    if resource == "menu" && !scopes.iter().any(|scope| scope == "read") {
        return Err((900910, 403));
    }
    Ok(username)
}

/// Sends `token` at `now`, answering every introspection call with `body`. Returns the outcome
/// and the number of calls made.
fn send(config: &Rc<Config>, host: &mut FakeHost, token: &str, resource: &str, body: &str) -> (Outcome, usize) {
    bearer_request(host, token, resource);
    host.resumed = false;
    let calls = host.dispatched.len();
    let worker = Rc::new(RefCell::new(Worker::new(config)));
    let mut stream = Stream::new(Rc::clone(config), worker);
    let mut flow = stream.on_request_headers(host, true);
    if flow == Flow::Waiting {
        assert_eq!(host.dispatched.len(), calls + 1, "one introspection call");
        let answer = Answer::Http { status: 200, body: body.as_bytes().to_vec() };
        stream.on_call_response(host, host.dispatched.len() as u32, answer);
        flow = if host.sent.is_some() { Flow::Answered } else { Flow::Continue };
        assert!(flow == Flow::Answered || host.resumed);
    }
    let outcome = match flow {
        Flow::Answered => {
            let status = host.sent.as_ref().map_or(0, |(status, _, _)| *status);
            assert_eq!(host.counted.len(), 1, "one fault counted");
            Err((host.counted[0], status))
        }
        _ => Ok(host.request.get("x-apim-end-user").map(|v| String::from_utf8(v.clone()).unwrap())),
    };
    (outcome, host.dispatched.len() - calls)
}

#[test]
fn introspection_answers_get_what_the_documents_say_from_the_key_manager_and_from_the_cache() {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut cases, mut disagreements) = (0, Vec::new());
    for seed in 0..SEEDS {
        let mut rng = Rng(seed ^ 0x1d7);
        let setup = Setup {
            skew: *rng.pick(&[0, 60, 300]),
            client_claims: rng.pick(&[vec!["client_id", "azp"], vec!["cid"]]).clone(),
            scope_claims: rng.pick(&[vec!["scope", "scp"], vec!["scp"]]).clone(),
            microgateway: rng.chance(50),
        };
        let config = Rc::new(Config::from_json(config_json(&setup).as_bytes()).unwrap());
        let mut host = FakeHost { now: NOW, ..Default::default() };
        for n in 0..ANSWERS_PER_SEED {
            let members = answer(&mut rng, &setup);
            let body = object(&members);
            let token = format!("opaque-{seed}-{n}");
            let resource = *rng.pick(&["open", "menu"]);
            let later = NOW + *rng.pick(&[1u64, 61, 601, 100_000]);
            for (round, now) in [NOW, NOW, later].into_iter().enumerate() {
                host.now = now;
                let expected = model(&setup, &members, resource, now);
                let (got, calls) = send(&config, &mut host, &token, resource, &body);
                cases += 1;
                *seen.entry(format!("{got:?}")).or_default() += 1;
                // An active answer is cached for every worker: the second request makes no call.
                let cached_active = round == 1 && expected.is_ok();
                if got != expected || (cached_active && calls != 0) {
                    disagreements.push(format!(
                        "seed {seed} at +{}: /{resource} model {expected:?} filter {got:?} ({calls} calls)\n  {body}",
                        now - NOW
                    ));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    assert_eq!(cases, SEEDS as usize * ANSWERS_PER_SEED * 3);
    for class in ["Ok(None)", r#"Ok(Some("erin"))"#, "Err((900900, 500))", "Err((900901, 401))", "Err((900904, 401))"] {
        assert!(seen.get(class).is_some_and(|count| *count >= 3), "{class} reached: {seen:?}");
    }
    for class in ["Err((900908, 403))", "Err((900910, 403))"] {
        assert!(seen.get(class).is_some_and(|count| *count >= 3), "{class} reached: {seen:?}");
    }
}

const SEEDS: u64 = 30;
const ANSWERS_PER_SEED: usize = 12;
