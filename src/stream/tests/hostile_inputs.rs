//! Hostile requests end to end: the shipped configurations' APIs (and this module's test
//! configurations) asked with paths, methods, queries and credentials built from their routes and
//! mutated (multi-byte characters, escapes, dot segments, tokens whose JSON is mutated), every
//! call the stream makes answered with a mutated answer, then a response. Each request is
//! answered or forwarded, and its calls end, never a panic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::host::fuzz::{each_case, extreme, mutate_bytes, mutate_document, noise, Rng};

/// A path of one of the configuration's APIs: its context, version and a resource's path, with
/// template segments filled.
fn route_path(config: &Value, rng: &mut Rng) -> String {
    let Some(apis) = config["apis"].as_array().filter(|apis| !apis.is_empty()) else { return "/".into() };
    let api = rng.pick(apis);
    let context = api["context"].as_str().unwrap_or("/");
    let version = api["version"].as_str().unwrap_or("");
    let resource = api["resources"].as_array().and_then(|resources| resources.first().cloned()).unwrap_or(Value::Null);
    let path = resource["path"].as_str().unwrap_or("/").replace("{", "").replace("}", "").replace('*', "x");
    let context = if context.contains("{version}") {
        context.replace("{version}", version)
    } else {
        format!("{context}/{version}")
    };
    format!("{context}{path}")
}

fn token(rng: &mut Rng) -> String {
    let header = json!({"alg": *rng.pick(&["RS256", "ES256", "HS256", "none", "EdDSA"]), "typ": "JWT", "kid": "a"});
    let payload = json!({"iss": "https://km", "sub": "alice", "aud": "x", "exp": 2_000_000_000u64, "iat": 1_000,
        "scope": "read", "azp": "client", "client_id": "client", "jti": "j",
        "application": {"uuid": "u", "tier": "Gold", "id": 1, "name": "app", "owner": "admin"},
        "keytype": "PRODUCTION", "subscribedAPIs": [{"name": "PizzaShackAPI", "context": "/pizzashack/1.0.0",
        "version": "1.0.0", "subscriptionTier": "Gold", "publisher": "admin"}], "tierInfo": {"Gold": {"stopOnQuotaReach": true}}});
    let head = mutate_document(&header, rng);
    let body = if rng.chance(3) { payload.to_string().into_bytes() } else { mutate_document(&payload, rng) };
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(head),
        URL_SAFE_NO_PAD.encode(body),
        URL_SAFE_NO_PAD.encode(noise(rng, 80))
    )
}

fn answer(rng: &mut Rng) -> Answer {
    let shapes = [
        json!({"active": true, "client_id": "client", "token_type": "Bearer", "scope": "read", "exp": 2_000_000_000u64}),
        json!({"keys": [{"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "alg": "RS256"}]}),
        json!({"count": 1, "list": [{"applicationId": 1, "applicationUUID": "u", "consumerKey": "client",
            "keyType": "PRODUCTION", "keyManager": "Resident Key Manager"}], "pagination": null}),
    ];
    let body = match rng.below(4) {
        0 => noise(rng, 100),
        _ => mutate_document(rng.pick(&shapes), rng),
    };
    match rng.below(10) {
        0 => Answer::Failed { code: rng.word() as u32 },
        1 => Answer::Grpc { message: body },
        2 => Answer::Http { status: rng.word() as u16, body },
        3 => Answer::HttpStream { status: 200, size: rng.below(1 << 20) },
        _ => Answer::Http { status: 200, body },
    }
}

#[test]
fn mutated_requests_and_answers_are_answered_or_forwarded() {
    let mut configs: Vec<(Value, Rc<Config>)> = crate::config::hostile_tests::shipped()
        .into_iter()
        .filter_map(|json| Some((json.clone(), Rc::new(Config::from_json(json.to_string().as_bytes()).ok()?))))
        .collect();
    for extra in [jwks_config_json(), SECURED.to_string()] {
        let json: Value = serde_json::from_str(&extra).unwrap();
        configs.push((json, Rc::new(Config::from_json(extra.as_bytes()).unwrap())));
    }
    let workers: Vec<Rc<RefCell<Worker>>> =
        configs.iter().map(|(_, config)| Rc::new(RefCell::new(Worker::new(config)))).collect();
    // How the requests ended: forwarded, answered, waiting on a call; and the calls answered.
    let mut ends = [0usize; 4];
    each_case("request", 1500, 0x5712EA, |rng, case| {
        // The test configurations (a JWKS, an introspection) a third of the time each.
        let at = match rng.below(3) {
            0 => configs.len() - 1,
            1 => configs.len() - 2,
            _ => rng.below(configs.len()),
        };
        let (json, config) = &configs[at];
        let mut path = route_path(json, rng).into_bytes();
        if rng.chance(4) {
            path = mutate_bytes(&path, rng);
        }
        if rng.chance(3) {
            let query = format!("?apikey={}&access_token={}&x=%E9%zz&é=😀", token(rng), extreme(rng));
            path.extend_from_slice(query.as_bytes());
        }
        let method =
            if rng.chance(4) { rng.pick(&["POST", "OPTIONS", "DELETE", "", "get", "CONNECT"]) } else { &"GET" };
        let mut host = FakeHost { now: 1_800_000_000 + case as u64, ..FakeHost::request(&[(":method", method)]) };
        host.request.insert(":path".into(), path);
        host.request.insert(":authority".into(), b"gw.example".to_vec());
        match rng.below(7) {
            0 => host.request.insert("authorization".into(), format!("Bearer {}", token(rng)).into_bytes()),
            4 | 5 => {
                // An opaque token (introspected), of any characters.
                let mut opaque = format!("opaque-{case}").into_bytes();
                if rng.chance(3) {
                    opaque = mutate_bytes(&opaque, rng);
                }
                host.request.insert("authorization".into(), [b"Bearer ".as_slice(), &opaque].concat())
            }
            1 => host.request.insert("apikey".into(), token(rng).into_bytes()),
            2 => host.request.insert("authorization".into(), mutate_bytes(b"Basic YWRtaW46YWRtaW4=", rng)),
            3 => host.request.insert("internal-key".into(), token(rng).into_bytes()),
            _ => None,
        };
        if rng.chance(3) {
            host.request.insert("x-forwarded-for".into(), mutate_bytes(b"1.2.3.4, ::1, 10.0.0.1", rng));
            host.request.insert("origin".into(), mutate_bytes(b"https://a.example", rng));
            host.request.insert("upgrade".into(), b"websocket".to_vec());
            host.request.insert("content-length".into(), extreme(rng).to_string().into_bytes());
        }
        host.properties.insert("source.address".into(), mutate_bytes(b"10.1.2.3:5000", rng));
        let mut stream = Stream::new(Rc::clone(config), Rc::clone(&workers[at]));
        let mut flow = stream.on_request_headers(&mut host, rng.chance(2));
        let mut calls = 0;
        while flow == Flow::Waiting && calls < 8 {
            calls += 1;
            let token = host.dispatched.len() as u32;
            stream.on_call_response(&mut host, token, answer(rng));
            flow = if host.sent.is_some() {
                Flow::Answered
            } else if host.resumed {
                Flow::Continue
            } else {
                Flow::Waiting
            };
        }
        ends[match flow {
            Flow::Continue => 0,
            Flow::Answered => 1,
            _ => 2,
        }] += 1;
        ends[3] += calls;
        host.response.insert(":status".into(), rng.pick(&[b"200".as_slice(), b"101", b"503", b"x"]).to_vec());
        host.response.insert("content-type".into(), b"text/event-stream".to_vec());
        stream.on_response_headers(&mut host);
        host.bodies = [noise(rng, 64), noise(rng, 64)];
        let size = host.bodies[1].len();
        stream.on_response_body(&mut host, size, rng.chance(2));
    });
    eprintln!("forwarded, answered, waiting, calls answered: {ends:?}");
    assert!(ends[0] > 50 && ends[1] > 50 && ends[3] > 50, "the cases reach every outcome: {ends:?}");
}
