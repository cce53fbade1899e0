//! A configuration that loads must work: the shipped configurations, the test and docs ones,
//! mutated (at random, and where the schema looks: empty, huge, zero and negative values, every
//! enum value, names repeated or naming nothing), and each that loads is run as Envoy runs it
//! (configured, its background calls made, then requests of every shape, each call answered
//! plausibly). Every reply is a catalogue fault with its status, every header written is one
//! Envoy takes, every call names a configured cluster, and no secret leaks, never a panic.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::catalogue::{Family, ProtocolState, ALL};
use crate::host::fuzz::{each_case, extreme, mutate_document, noise, Rng};
use crate::host::testing::{capture_all_logs, warnings};

/// The configurations mutated: the shipped ones, this module's tests' ones, the docs' ones.
fn seeds() -> Vec<Value> {
    let mut seeds = crate::config::hostile_tests::shipped();
    for text in [SECURED.to_string(), jwks_config_json()] {
        seeds.push(serde_json::from_str(&text).unwrap());
    }
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["README.md", "docs/HOWTO.md", "docs/CONFIG.md"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap_or_default();
        for block in text.split("```json\n").skip(1) {
            let body = block.split("```").next().unwrap_or("").trim();
            let body = if body.starts_with('{') { body.to_string() } else { format!("{{{body}}}") };
            if let (Ok(json @ Value::Object(_)), Ok(_)) =
                (serde_json::from_str::<Value>(&body), Config::from_json(body.as_bytes()))
            {
                seeds.push(json);
            }
        }
    }
    // A piece of a configuration (most of the docs' are) gets the APIs, applications and key
    // manager of the secured test configuration, where that loads: requests then reach its APIs.
    let secured: Value = serde_json::from_str(SECURED).unwrap();
    for seed in seeds.clone() {
        let (Value::Object(mut whole), Value::Object(base)) = (seed, secured.clone()) else { continue };
        if whole.contains_key("apis") {
            continue;
        }
        for (name, value) in base {
            whole.entry(name).or_insert(value);
        }
        let whole = Value::Object(whole);
        if Config::from_json(whole.to_string().as_bytes()).is_ok() {
            seeds.push(whole);
        }
    }
    seeds
}

/// Every enum value the schema lists, and words that name nothing.
fn vocabulary() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let mut words = vec!["nope".to_string(), "missing-cluster".into(), "Unknown:9".into()];
    // Text no header, name or path takes: line breaks, a NUL, spaces, a colon.
    words.extend(["a\r\nx-injected: 1", "a\u{0}b", "with space", "x:y", "/", "é"].map(String::from));
    strings_under(&schema, &mut |key, value| {
        if key == "enum" || key == "const" {
            words.push(value.to_string());
        }
    });
    assert!(words.len() > 20, "the schema's enums are found: {}", words.len());
    words
}

/// Calls `each(key, text)` for every string in `value`, with the member name it is under.
fn strings_under(value: &Value, each: &mut dyn FnMut(&str, &str)) {
    fn walk(value: &Value, key: &str, each: &mut dyn FnMut(&str, &str)) {
        match value {
            Value::String(text) => each(key, text),
            Value::Array(items) => items.iter().for_each(|item| walk(item, key, each)),
            Value::Object(map) => map.iter().for_each(|(name, item)| walk(item, name, each)),
            _ => {}
        }
    }
    walk(value, "", each);
}

/// A mutation that knows the schema's shapes: a string becomes empty, huge, multi-byte, an enum
/// value or another name of the document; a number zero, negative or huge; a list empty or with
/// an element repeated (duplicate names); a member removed.
fn schema_mutation(document: &Value, words: &[String], rng: &mut Rng) -> Value {
    let mut names = Vec::new();
    strings_under(document, &mut |_, text| names.push(text.to_string()));
    let mut out = document.clone();
    for _ in 0..1 + rng.below(3) {
        let mut at = &mut out;
        loop {
            let children = match &*at {
                Value::Object(map) => map.len(),
                Value::Array(items) => items.len(),
                _ => 0,
            };
            if children == 0 || rng.chance(4) {
                break;
            }
            let pick = rng.below(children);
            at = match at {
                Value::Object(map) => map.iter_mut().nth(pick).map(|(_, value)| value).unwrap(),
                other => other.get_mut(pick).unwrap(),
            };
        }
        *at = match (&*at, rng.below(3)) {
            (Value::String(_), _) => match rng.below(6) {
                0 => "".into(),
                1 => "é😀\u{2028}".into(),
                2 => "x".repeat(1 + rng.below(3000)).into(),
                3 if !names.is_empty() => rng.pick(&names).clone().into(),
                _ => rng.pick(words).clone().into(),
            },
            (Value::Number(_), _) => rng
                .pick(&[json!(0), json!(-1), json!(1), json!(u32::MAX), json!(u64::MAX), json!(i64::MIN), json!(1e300)])
                .clone(),
            (Value::Array(items), 0) if !items.is_empty() => {
                let mut items = items.clone();
                items.push(items[0].clone());
                Value::Array(items)
            }
            (Value::Array(_), 1) => Value::Array(Vec::new()),
            (Value::Object(map), 0) if !map.is_empty() => {
                let mut map = map.clone();
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                map.remove(&key);
                Value::Object(map)
            }
            (Value::Bool(flag), _) => Value::Bool(!flag),
            _ => extreme(rng),
        };
    }
    out
}

/// The texts a configuration declares secret (inline), long enough to be told from other text.
fn secrets(document: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (name, item) in map {
                    if ["client_secret", "hmac_secret", "private_key", "password"].contains(&name.as_str()) {
                        match item {
                            Value::String(text) => found.push(text.clone()),
                            Value::Object(source) => {
                                if let Some(Value::String(text)) = source.get("value") {
                                    found.push(text.clone());
                                }
                            }
                            _ => {}
                        }
                    }
                    walk(item, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    walk(document, &mut found);
    found.retain(|secret| secret.len() >= 8);
    found
}

/// A request for one of the configuration's APIs, of a random shape.
fn request(document: &Value, rng: &mut Rng, case: usize) -> FakeHost {
    let apis = document["apis"].as_array().cloned().unwrap_or_default();
    let api = if apis.is_empty() { Value::Null } else { rng.pick(&apis).clone() };
    let version = api["version"].as_str().unwrap_or("1");
    let context = api["context"].as_str().unwrap_or("/p");
    let context = if context.contains("{version}") {
        context.replace("{version}", version)
    } else {
        format!("{context}/{version}")
    };
    let resources = api["resources"].as_array().cloned().unwrap_or_default();
    let resource = if resources.is_empty() { Value::Null } else { rng.pick(&resources).clone() };
    let path = resource["path"].as_str().unwrap_or("/").replace(['{', '}'], "").replace('*', "x");
    let method = resource["method"].as_str().unwrap_or("GET");
    let mut host = FakeHost::request(&[(":method", method), (":authority", "gw.example"), (":scheme", "https")]);
    let mut path = format!("{context}{path}");
    let issuer = document["key_managers"][0]["issuer"].as_str().unwrap_or("https://km");
    let client = document["applications"][0]["client_ids"][0]["id"].as_str().unwrap_or("app1");
    let scope = resource["scopes"][0].as_str().unwrap_or("read");
    let exp = if rng.chance(4) { 10 } else { 2_000_000_000u64 };
    let claims = json!({"iss": issuer, "exp": exp, "client_id": client, "azp": client, "scope": scope, "sub": "alice"});
    let jwt = signed_once(&claims.to_string());
    let credential = if rng.chance(3) { format!("{jwt}x") } else { jwt };
    match rng.below(8) {
        0 => {}
        1 | 2 => {
            host.request.insert("authorization".into(), format!("Bearer {credential}").into_bytes());
        }
        3 => {
            host.request.insert("authorization".into(), format!("Bearer opaque-{case}").into_bytes());
        }
        4 => {
            let name = document["credentials"]["api_key_header"].as_str().unwrap_or("apikey");
            host.request.insert(name.to_ascii_lowercase(), credential.into_bytes());
            host.request.insert("internal-key".into(), b"k".to_vec());
        }
        5 => {
            host.request
                .insert("authorization".into(), format!("Basic {}", STANDARD.encode("admin:admin")).into_bytes());
        }
        6 => path.push_str(&format!("?apikey={credential}&access_token=opaque-{case}")),
        _ => {
            host.request.insert(":method".into(), b"OPTIONS".to_vec());
            host.request.insert("access-control-request-method".into(), method.as_bytes().to_vec());
        }
    }
    host.request.insert(":path".into(), path.into_bytes());
    host.request.insert("origin".into(), b"https://a.example".to_vec());
    if rng.chance(6) {
        host.request.insert("upgrade".into(), b"websocket".to_vec());
        host.request.insert("connection".into(), b"Upgrade".to_vec());
    } else if rng.chance(6) {
        host.request.insert("content-type".into(), b"application/grpc".to_vec());
        host.request.insert(":method".into(), b"POST".to_vec());
    }
    host.properties.insert("source.address".into(), b"10.1.2.3:5000".to_vec());
    host
}

thread_local! {
    static SIGNED: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// A JWT of these claims signed with the test key (signed once per claims: signing is slow).
fn signed_once(claims: &str) -> String {
    SIGNED.with(|signed| {
        signed
            .borrow_mut()
            .entry(claims.to_string())
            .or_insert_with(|| {
                let header = r#"{"alg":"RS256","kid":"a"}"#;
                crate::auth::keys::testkeys::sign_raw(header, claims, "rsa-a.pem", jsonwebtoken::Algorithm::RS256)
            })
            .clone()
    })
}

/// A plausible answer to a call: keys, an introspection, a lookup, a rate-limit message, a
/// failure.
fn answer(document: &Value, rng: &mut Rng) -> (Answer, Vec<u8>) {
    let client = document["applications"][0]["client_ids"][0]["id"].as_str().unwrap_or("app1");
    let bodies = [
        jwks_body(),
        json!({"active": true, "client_id": client, "scope": "read menu:read", "exp": 2_000_000_000u64})
            .to_string()
            .into(),
        json!({"active": false}).to_string().into(),
        json!({"count": 1, "list": [{"applicationId": 1, "applicationUUID": "u", "consumerKey": client,
            "keyType": "PRODUCTION", "keyManager": "Resident Key Manager"}], "pagination": null})
        .to_string()
        .into(),
    ];
    let body = match rng.below(5) {
        0 => noise(rng, 64),
        1 => mutate_document(
            &serde_json::from_slice::<Value>(rng.pick(bodies.as_slice()).as_slice()).unwrap_or(Value::Null),
            rng,
        ),
        _ => rng.pick(bodies.as_slice()).clone(),
    };
    let answer = match rng.below(10) {
        0 => Answer::Failed { code: rng.below(20) as u32 },
        1 => Answer::Grpc { message: body.clone() },
        2 => Answer::Http { status: *rng.pick(&[401u16, 404, 429, 500, 503]), body: body.clone() },
        _ => Answer::Http { status: 200, body: body.clone() },
    };
    (answer, body)
}

fn is_token(name: &str) -> bool {
    let name = name.strip_prefix(':').unwrap_or(name);
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn clean_value(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// The statuses the fault with this code answers under this configuration.
fn fault_statuses(config: &Config, code: u32) -> Vec<u16> {
    let mut statuses = Vec::new();
    for id in ALL {
        let spec = id.spec();
        let fits = if spec.family == Family::Transport {
            code >= spec.code && code <= spec.code + ProtocolState::Closed as u32
        } else {
            spec.code == code
        };
        if fits {
            let fault = Fault { code, ..Fault::new(*id) };
            statuses.push(crate::render::resolve(&fault, &config.errors).status);
        }
    }
    statuses
}

/// Checks what a request did to the host against the rules; `what` names the case.
fn check(host: &FakeHost, config: &Config, strings: &HashSet<String>, secrets: &[String], what: &str) {
    if let Some((status, headers, body)) = &host.sent {
        // The fault counted last (`apim.fault.<code>`, under a gateway's prefix when it has one).
        let code = host.counters.iter().rev().find_map(|name| {
            let (head, code) = name.rsplit_once("fault.")?;
            (head == "apim." || head.starts_with("apim.gw.")).then(|| code.parse::<u32>().ok())?
        });
        match code.as_ref() {
            Some(code) => {
                let statuses = fault_statuses(config, *code);
                assert!(statuses.contains(status), "{what}: reply {status} for fault {code} (expected {statuses:?})");
            }
            None => assert_eq!(*status, 200, "{what}: a reply that is no fault: {}", String::from_utf8_lossy(body)),
        }
        for (name, value) in headers {
            assert!(is_token(name) && clean_value(value.as_bytes()), "{what}: reply header {name:?}: {value:?}");
        }
        let body = String::from_utf8_lossy(body);
        for secret in secrets {
            assert!(!body.contains(secret.as_str()), "{what}: a secret in a reply: {body}");
        }
    }
    for (name, value) in &host.written {
        assert!(
            is_token(name) && clean_value(value),
            "{what}: header written {name:?}: {:?}",
            String::from_utf8_lossy(value)
        );
        let value = String::from_utf8_lossy(value);
        for secret in secrets {
            assert!(!value.contains(secret.as_str()), "{what}: a secret in header {name}");
        }
    }
    for call in &host.calls {
        assert!(
            !call.cluster().is_empty() && strings.contains(call.cluster()),
            "{what}: a call to a cluster not configured: {call:?}"
        );
        match call {
            Call::Http { headers, timeout_ms, .. } => {
                assert!(*timeout_ms > 0, "{what}: {call:?}");
                let path = headers.iter().find(|(name, _)| name == ":path").map(|(_, value)| value.as_str());
                assert!(path.is_some_and(|path| path.starts_with('/')), "{what}: {call:?}");
                for (name, value) in headers {
                    assert!(is_token(name) && clean_value(value.as_bytes()), "{what}: call header {name:?} {value:?}");
                }
            }
            Call::Grpc { timeout_ms, service, method, .. } => {
                assert!(*timeout_ms > 0 && !service.is_empty() && !method.is_empty(), "{what}: {call:?}");
            }
        }
    }
    for name in host.counters.iter().chain(&host.properties_set) {
        assert!(!name.is_empty() && !name.contains(".."), "{what}: a metric or property named {name:?}");
    }
}

/// Configures `text` as Envoy would when it loads, then runs `requests` requests of random shapes
/// (some hammered), answering every call; checks each against the rules. Counts into `totals`
/// (configurations loaded, requests run, replies sent, calls answered).
fn run(text: &[u8], requests: usize, rng: &mut Rng, what: &str, totals: &mut [usize; 4]) {
    let Ok(mut config) = Config::from_json(text) else { return };
    let document: Value = serde_json::from_slice(text).unwrap_or(Value::Null);
    let what = format!("{what}: {}", String::from_utf8_lossy(text));
    let mut strings = HashSet::new();
    strings_under(&document, &mut |_, text| {
        strings.insert(text.to_string());
    });
    let secrets = secrets(&document);
    capture_all_logs();
    let mut root = FakeHost { now: 1_800_000_000, ..Default::default() };
    prepare_counters(&mut root, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    totals[0] += 1;
    let mut jobs = background::tick(&mut root, &config, &mut worker.borrow_mut());
    let mut shared = std::mem::take(&mut root.shared);
    check(&root, &config, &strings, &secrets, &what);
    for request_number in 0..requests {
        let host = request(&document, rng, request_number);
        let times = if rng.chance(6) { 12 } else { 1 };
        for _ in 0..times {
            let mut once = FakeHost {
                request: host.request.clone(),
                properties: host.properties.clone(),
                now: 1_800_000_000 + request_number as u64,
                shared: std::mem::take(&mut shared),
                ..Default::default()
            };
            let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
            let mut flow = stream.on_request_headers(&mut once, true);
            let (mut awaited, mut own) = (None, None);
            for _ in 0..12 {
                jobs.extend(stream.take_background_calls());
                awaited = stream.take_awaited_fetch().or(awaited);
                own = stream.take_started_call().or(own);
                let (reply, body) = answer(&document, rng);
                if let Some((token, job)) = jobs.pop() {
                    let read = |start: usize, length: usize| {
                        body.get(start..start.saturating_add(length).min(body.len())).unwrap_or_default().to_vec()
                    };
                    let next = background::answered(&mut once, &config, &mut worker.borrow_mut(), job, &reply, &read);
                    jobs.extend(next);
                    if awaited == Some(token) {
                        awaited = None;
                        stream.on_call_response(&mut once, token, reply);
                    }
                } else if let Some(token) = own.take() {
                    stream.on_call_response(&mut once, token, reply);
                } else {
                    break;
                }
            }
            if once.sent.is_some() {
                flow = Flow::Answered;
                totals[2] += 1;
            }
            if flow != Flow::Answered {
                once.response.insert(":status".into(), b"200".to_vec());
                stream.on_response_headers(&mut once);
            }
            check(&once, &config, &strings, &secrets, &what);
            totals[1] += 1;
            totals[3] += once.calls.len();
            WRITTEN.with(|written| written.set(written.get() + once.written.len()));
            shared = std::mem::take(&mut once.shared);
        }
    }
    let mut lines = warnings();
    for line in &lines {
        // Names the configuration gave (a CR/LF among the mutations) never start a log line.
        assert!(!line.contains(|c: char| c.is_control()), "{what}: a control character in a log line: {line:?}");
    }
    lines.extend(config.warnings().iter().cloned());
    lines.push(config.summary());
    for line in lines {
        // An invariant of the request path broke (a route, an endpoint, a key that cannot sign).
        assert!(!line.starts_with("internal error"), "{what}: {line}");
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "{what}: a secret in a log line: {line}");
        }
    }
}

#[test]
fn every_configuration_that_loads_works() {
    let seeds = seeds();
    assert!(seeds.len() >= 8, "the seed configurations are found: {}", seeds.len());
    let words = vocabulary();
    let mut totals = [0usize; 4];
    each_case("loaded configuration", 220, 0x10AD5, |rng, case| {
        let base = rng.pick(&seeds);
        let text = match rng.below(3) {
            0 => mutate_document(base, rng),
            1 => serde_json::to_vec(base).unwrap(),
            _ => serde_json::to_vec(&schema_mutation(base, &words, rng)).unwrap(),
        };
        let requests = 4 + rng.below(8);
        run(&text, requests, rng, &format!("case {case}"), &mut totals);
    });
    eprintln!(
        "configurations loaded, requests, replies, calls: {totals:?}, headers written {}",
        WRITTEN.with(std::cell::Cell::get)
    );
    assert!(
        totals[0] > 60 && totals[1] > 800 && totals[2] > 300 && totals[3] > 20,
        "the cases load and run: {totals:?}"
    );
}

/// Every string of every seed replaced by each of the words no header, name or path takes (and
/// by the empty string): each configuration that loads runs a few requests.
#[test]
fn every_string_of_the_seeds_replaced_loads_and_works_or_is_refused() {
    let seeds = seeds();
    let words = ["", "a\r\nx-injected: 1", "with space"];
    let mut totals = [0usize; 4];
    let mut rng = Rng::new(0x57A1);
    for (number, seed) in seeds.iter().enumerate() {
        let mut leaves = 0;
        strings_under(seed, &mut |_, _| leaves += 1);
        for leaf in 0..leaves {
            for word in words {
                let mut document = seed.clone();
                replace_string(&mut document, leaf, word);
                let text = serde_json::to_vec(&document).unwrap();
                run(&text, 2, &mut rng, &format!("seed {number}, string {leaf} as {word:?}"), &mut totals);
            }
        }
    }
    eprintln!(
        "configurations loaded, requests, replies, calls: {totals:?}, headers written {}",
        WRITTEN.with(std::cell::Cell::get)
    );
    assert!(totals[0] > 100, "{totals:?}");
}

/// Replaces the `at`th string of `value` (in [`strings_under`]'s order) with `word`.
fn replace_string(value: &mut Value, at: usize, word: &str) {
    fn walk(value: &mut Value, at: usize, seen: &mut usize, word: &str) {
        match value {
            Value::String(text) => {
                if *seen == at {
                    *text = word.to_string();
                }
                *seen += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, at, seen, word)),
            Value::Object(map) => map.values_mut().for_each(|item| walk(item, at, seen, word)),
            _ => {}
        }
    }
    walk(value, at, &mut 0, word);
}
thread_local! {
    static WRITTEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
