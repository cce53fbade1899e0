//! Dependencies down while traffic flows: each request gets its fault and is counted, and the
//! log gets a line now and then, not one per request.

use super::*;
use crate::directory::control_plane::refresh::Fetch;
use crate::host::testing::{capture_warnings, warnings};
use crate::host::REPEATED_WARNING_S;
use crate::throttle::limiter::Contended;

/// One opaque-token request whose introspection the key manager answers with `answer`.
fn introspected(config: &Rc<Config>, worker: &Rc<RefCell<Worker>>, host: &mut FakeHost, answer: Answer) {
    host.request = [(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    assert_eq!(stream.on_request_headers(host, true), Flow::Waiting);
    stream.on_call_response(host, host.dispatched.len() as u32, answer);
}

#[test]
fn a_key_manager_down_under_load_logs_a_line_now_and_then_not_one_per_request() {
    capture_warnings();
    let config = secured();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    for _ in 0..100 {
        introspected(&config, &worker, &mut host, Answer::Http { status: 503, body: b"down".to_vec() });
    }
    assert_eq!(host.counted, vec![900900; 100], "every request gets the outage's fault");
    let refused = host.counters.iter().filter(|name| *name == "apim.auth.refused.introspection_status").count();
    assert_eq!(refused, 100, "and is in the stats");
    let logged = || warnings().iter().filter(|line| line.contains("introspection")).count();
    assert_eq!(logged(), 1, "{:?}", warnings());
    // Ten seconds on, the next failure is logged again, with how many were held back.
    host.now += REPEATED_WARNING_S;
    introspected(&config, &worker, &mut host, Answer::Failed { code: 14 });
    assert_eq!(logged(), 2);
    assert!(warnings().last().is_some_and(|line| line.contains("99 more")), "{:?}", warnings());
}

/// The tick finds the refresh due while a request's fetch is under way and leaves the refresh to
/// it. That fetch fails (the key manager down): the keys are retried within the fetch interval,
/// as after a failed refresh, not a whole `refresh_s` later (a key the key manager dropped in
/// the meantime, as after a leak, stayed trusted that much longer).
#[test]
fn a_failed_request_fetch_that_stood_in_for_the_refresh_is_retried_soon() {
    let config = jwks_config();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    jwks::prepare(&mut host, &config.auth);
    let answered = |host: &mut FakeHost, job: background::Job, answer: &Answer| {
        background::answered(host, &config, &mut worker.borrow_mut(), job, answer, &|_, _| Vec::new())
    };
    let (token, job) = background::tick(&mut host, &config, &mut worker.borrow_mut()).remove(0);
    answered(&mut host, job, &Answer::Http { status: 200, body: jwks_body() });
    let fetches_failed =
        |host: &FakeHost| host.counters.iter().filter(|name| *name == "apim.jwks.fetch_failed").count();
    assert_eq!(fetches_failed(&host), 0);
    // 300 s on, a token of a new kid fetches just before the tick.
    host.now = 1_300;
    let (mut stream, flow) = bearer_call(&config, &worker, &mut host, &signed("b", 5_000));
    assert_eq!((flow, host.dispatched.len() as u32), (Flow::Waiting, token + 1));
    let mut fetches = stream.take_background_calls();
    assert!(background::tick(&mut host, &config, &mut worker.borrow_mut()).is_empty(), "left to the fetch");
    // The key manager is down: the worker's call takes the failure, then the request.
    let (_, job) = fetches.remove(0);
    answered(&mut host, job, &Answer::Failed { code: 14 });
    stream.on_call_response(&mut host, token + 1, Answer::Failed { code: 14 });
    assert_eq!(host.counted.last(), Some(&900900));
    assert_eq!(fetches_failed(&host), 1, "the outage is in the stats, not only in the log");
    host.now += jwks::FETCH_INTERVAL_S;
    assert_eq!(background::tick(&mut host, &config, &mut worker.borrow_mut()).len(), 1, "retried soon");
}

/// A control plane load with a resource that failed is in the stats: its last good data stays
/// served, so nothing else but the log shows that API-M is down. Before the first load of APIs,
/// a request that matches none may be for one of them, and waits.
#[test]
fn a_control_plane_load_that_fails_is_counted() {
    let config =
        Rc::new(Config::from_json(br#"{"control_plane":{"cluster":"apim","username":"a","password":"p"}}"#).unwrap());
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let control_plane = config.control_plane.as_ref().unwrap();
    crate::directory::control_plane::refresh::prepare(&mut host, control_plane);
    let load = |host: &mut FakeHost, answer: &dyn Fn(Fetch) -> Answer| {
        let mut calls = background::tick(host, &config, &mut worker.borrow_mut());
        assert_eq!(calls.len(), 1, "a load starts");
        while let Some((_, job)) = calls.pop() {
            let background::Job::ControlPlane(load) = &job else { panic!("a control plane load") };
            let answer = answer(load.fetch);
            calls = background::answered(host, &config, &mut worker.borrow_mut(), job, &answer, &|_, _| Vec::new());
        }
    };
    let failed =
        |host: &FakeHost| host.counters.iter().filter(|name| *name == "apim.control_plane.load_failed").count();
    // Until a load brings the APIs, a request that matches no API may be for one of them: 503,
    // told when to try again, not 404 (or let through, with `unmatched: pass_through`).
    let unmatched = |host: &mut FakeHost| {
        host.request = [(":method", "GET"), (":path", "/pizzashack/1.0.0/menu")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        assert_eq!(stream.on_request_headers(host, true), Flow::Answered);
        let (status, headers, _) = host.sent.take().unwrap();
        (status, headers.iter().find(|(name, _)| name == "retry-after").map(|(_, value)| value.clone()))
    };
    assert_eq!(unmatched(&mut host), (503, Some("5".to_string())), "before the first load");
    load(&mut host, &|_| Answer::Failed { code: 14 });
    assert_eq!(failed(&host), 1, "one load, one count (not one per resource)");
    assert_eq!(unmatched(&mut host), (503, Some("5".to_string())), "after a failed first load");
    host.now += 60;
    load(&mut host, &crate::directory::control_plane::tests::ok);
    assert_eq!(failed(&host), 1, "a load that went well is not counted");
    assert_eq!(unmatched(&mut host).0, 404, "the APIs are known: this one is not among them");
}

/// Two gateways in one Envoy (one VM per worker for both) whose key managers share a name: the
/// second's outage is logged as its own, named, not held back as one more line of the first's
/// (the busier gateway's line came first every ten seconds, and the other's outage never showed).
#[test]
fn each_gateways_repeated_failures_are_paced_and_logged_apart() {
    capture_warnings();
    let named = |name: &str| {
        Rc::new(Config::from_json(SECURED.replacen('{', &format!(r#"{{"gateway": "{name}","#), 1).as_bytes()).unwrap())
    };
    let (internal, external) = (named("internal"), named("external"));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    for config in [&internal, &external, &internal] {
        let worker = Rc::new(RefCell::new(Worker::new(config)));
        introspected(config, &worker, &mut host, Answer::Http { status: 503, body: b"down".to_vec() });
    }
    let lines: Vec<String> = warnings().into_iter().filter(|line| line.contains("introspection")).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("`internal`") && lines[1].contains("`external`"), "{lines:?}");
}

/// Each reason a level could not count a request is paced apart: a flood of full-slot lines
/// must not hold back the first line saying the rate-limit service is down.
#[test]
fn uncounted_requests_are_paced_per_reason() {
    capture_warnings();
    let config = secured();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
    for _ in 0..50 {
        stream.report_uncounted(&mut host, Contended::SlotFull, 1_000);
    }
    stream.report_uncounted(&mut host, Contended::EngineUnavailable, 1_001);
    let lines = |what: &str| warnings().iter().filter(|line| line.contains(what)).count();
    assert_eq!(lines("slot_full"), 1, "{:?}", warnings());
    assert_eq!(lines("rate-limit service could not count"), 1, "the outage is not held back: {:?}", warnings());
    assert_eq!(host.counters.len(), 51, "every request is in the stats");
}

/// A bearer token whose application the control plane cannot be asked for (it answers 500) is
/// refused as any other bearer failure is: the API key the request also offers is tried next
/// (WSO2's authenticator chain goes on after any OAuth failure), and without one, 900900.
#[test]
fn a_bearer_token_whose_lookup_fails_gives_way_to_the_api_key_beside_it() {
    let secret = "a-secret-of-at-least-32-bytes-long!";
    let json = serde_json::json!({
        "key_managers": [{"name": "km", "issuer": "https://km", "hmac_secret": secret, "algorithms": ["HS256"]}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5},
        "apis": [{"name": "P", "context": "/p", "version": "1", "security": ["oauth2", "api_key"],
            "endpoints": {"production": "backend"}, "resources": [{"method": "GET", "path": "/menu"}]}],
        "applications": [{"id": "app-1", "name": "App", "api_keys": [{"sha256": crate::hashing::hex(&credential_hash("k1"))}]}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}]
    });
    let mut config = Config::from_json(json.to_string().as_bytes()).unwrap();
    let mut host = FakeHost { now: 1_800_000_000, ..Default::default() };
    crate::stream::background::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    super::gateways::tick_answering(&mut host, &config, &worker, |_, path| {
        let body = if path.contains("/block") {
            r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],"ip":[]}"#
        } else if path.contains("revokedjwt") {
            "[]"
        } else {
            r#"{"count":0,"list":[],"pagination":null}"#
        };
        Answer::Http { status: 200, body: body.as_bytes().to_vec() }
    });
    let claims = serde_json::json!({"iss": "https://km", "exp": host.now + 600, "client_id": "c9"});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    for (api_key, forwarded) in [(Some("k1"), true), (None, false)] {
        host.request = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]).request;
        host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
        if let Some(api_key) = api_key {
            host.request.insert("apikey".into(), api_key.as_bytes().to_vec());
        }
        (host.sent, host.dispatched, host.counted) = (None, Vec::new(), Vec::new());
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting, "the client is looked up");
        let token = host.dispatched.len() as u32;
        stream.on_call_response(&mut host, token, Answer::Http { status: 500, body: Vec::new() });
        if forwarded {
            assert_eq!((host.sent.is_none(), host.req("x-apim-application-id")), (true, "app-1"));
        } else {
            assert_eq!((host.sent.as_ref().map(|sent| sent.0), host.counted.clone()), (Some(500), vec![900900]));
        }
    }
}
