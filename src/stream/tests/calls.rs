//! Calls whose answers outlive their request: a JWKS fetch is the worker's, and requests that
//! need its keys wait for it; the call of a request whose client hung up is still settled.

use super::*;
use crate::throttle::cluster::tests::ModelService;

/// A JWKS holding the fixture key `rsa-a.pem` under each of these kids.
fn jwks_body_with(kids: &[&str]) -> Vec<u8> {
    let keys: Vec<_> = kids
        .iter()
        .map(|kid| crate::auth::keys::testkeys::jwk("rsa-a.pem", jsonwebtoken::Algorithm::RS256, kid))
        .collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

#[test]
fn a_valid_token_waits_for_the_first_jwks_fetch_under_way_and_is_never_refused_as_invalid() {
    let config = jwks_config();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    // Request 1: no keys yet, it waits for the worker's fetch.
    let (mut first, flow) = bearer_call(&config, &worker, &mut host, &signed("a", 5_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 1));
    // Request 2, same worker, same second, a valid token: the keys are merely not here yet. It
    // waits for the same fetch (no second one), and is refused for nothing meanwhile.
    let (mut second, flow) = bearer_call(&config, &worker, &mut host, &signed("a", 5_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 1), "joins the fetch under way");
    assert!(host.sent.is_none() && host.counted.is_empty(), "{:?}", host.counted);
    assert_eq!(second.take_awaited_fetch(), Some(1), "the glue resumes it with the fetch's answer");
    // The answer resumes both.
    first.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    assert!(host.resumed && host.sent.is_none());
    host.resumed = false;
    second.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    assert!(host.resumed && host.sent.is_none(), "{:?}", host.counted);
}

#[test]
fn a_rotated_kid_waits_for_its_fetch_under_way_and_a_failed_fetch_is_an_outage() {
    let config = jwks_config();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let (mut s, _) = bearer_call(&config, &worker, &mut host, &signed("a", 5_000));
    s.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    // The IdP rotates to kid "b": the first token with it fetches, the second, a millisecond
    // later, waits for that fetch.
    host.now = 2_000;
    let (mut first, flow) = bearer_call(&config, &worker, &mut host, &signed("b", 5_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 2));
    let (mut second, flow) = bearer_call(&config, &worker, &mut host, &signed("b", 5_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 2));
    first.on_call_response(&mut host, 2, Answer::Http { status: 200, body: jwks_body_with(&["a", "b"]) });
    assert!(host.resumed && host.sent.is_none());
    host.resumed = false;
    second.on_call_response(&mut host, 2, Answer::Http { status: 200, body: jwks_body_with(&["a", "b"]) });
    assert!(host.resumed && host.sent.is_none());
    // Kid "c": its fetch fails, and the waiting requests are refused as an outage (900900).
    host.now = 3_000;
    let (mut first, _) = bearer_call(&config, &worker, &mut host, &signed("c", 5_000));
    let (mut second, flow) = bearer_call(&config, &worker, &mut host, &signed("c", 5_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 3));
    first.on_call_response(&mut host, 3, Answer::Failed { code: 14 });
    second.on_call_response(&mut host, 3, Answer::Failed { code: 14 });
    assert_eq!(host.counted, vec![900900, 900900]);
}

#[test]
fn a_client_that_hangs_up_leaves_the_jwks_fetch_it_started_to_the_worker() {
    let config = jwks_config();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let (mut s, _) = bearer_call(&config, &worker, &mut host, &signed("a", 9_000));
    let _ = s.take_background_calls();
    s.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    // The IdP now publishes kid "b" too. A client sends a token with a random kid, and hangs up
    // at once: Envoy deletes its context. The fetch it started is the worker's (its answer goes
    // to the root context), so the keys it brings are taken all the same.
    host.now = 2_000;
    let (mut attacker, flow) = bearer_call(&config, &worker, &mut host, &signed("junk", 9_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 2));
    assert_eq!(attacker.own_pending_call(), None, "the stream waits on the worker's call, not its own");
    let fetches = attacker.take_background_calls();
    drop(attacker);
    let [(2, job)] = <[_; 1]>::try_from(fetches).unwrap() else { panic!("the fetch is the worker's") };
    let body = jwks_body_with(&["a", "b"]);
    background::answered(
        &mut host,
        &config,
        &mut worker.borrow_mut(),
        job,
        &Answer::Http { status: 200, body },
        &|_, _| Vec::new(),
    );
    // A real client's token signed by "b", within the 5 s a request may not fetch again.
    host.now = 2_001;
    let (_, flow) = bearer_call(&config, &worker, &mut host, &signed("b", 9_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Continue, 2), "{:?}", host.counted);
}

#[test]
fn clients_that_hang_up_each_second_cannot_keep_a_rotated_key_out() {
    let config = jwks_config();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let (mut s, _) = bearer_call(&config, &worker, &mut host, &signed("a", 9_000));
    s.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    // The IdP now publishes kid "b" too. Each second, an anonymous client sends a token with a
    // random kid and hangs up at once; then a real client sends a token signed by "b".
    let mut admitted = false;
    for second in 0..60u64 {
        host.now = 2_000 + second;
        let (attacker, _) = bearer_call(&config, &worker, &mut host, &signed(&format!("junk{second}"), 9_000));
        drop(attacker);
        let (_, flow) = bearer_call(&config, &worker, &mut host, &signed("b", 9_000));
        admitted |= flow == Flow::Continue || flow == Flow::Waiting;
    }
    assert!(admitted, "for 60 s every token with the rotated kid was refused 900901 without a fetch");
}

/// An open API whose resource admits 1000 requests an hour, counted on a rate-limit service
/// (its shared data prepared in `host`, as at configure time).
fn leased_config(host: &mut FakeHost) -> Rc<Config> {
    let json = r#"{"throttling": {"rate_limit_service": {"cluster": "rls"}},
        "apis": [{"name": "P", "context": "/p", "version": "1", "security": [], "endpoints": {"production": "prod"},
                  "resources": [{"method": "GET", "path": "/menu", "policy": "Thousand"}]}],
        "policies": {"Thousand": {"requests": 1000, "per": "hour"}}}"#;
    let mut config = Config::from_json(json.as_bytes()).unwrap();
    crate::stream::prepare_counters(host, &mut config);
    Rc::new(config)
}

#[test]
fn a_block_asked_for_by_a_request_whose_client_hung_up_is_held_by_the_node() {
    let mut host = FakeHost::default();
    let config = leased_config(&mut host);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut model = ModelService::default();
    let (mut admitted, mut abandoned) = (0u32, 0u32);
    // 1_800_000_000 is a whole hour: every request below is in one window of the service.
    for round in 0..1_200u64 {
        host.now = 1_800_000_000 + round / 100;
        host.request = [(":method", "GET"), (":path", "/p/1/menu")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        host.sent = None;
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        let mut flow = stream.on_request_headers(&mut host, true);
        let answer =
            |host: &FakeHost, model: &mut ModelService| model.answer(host.grpc_calls.last().unwrap(), host.now);
        if flow == Flow::Waiting {
            let token = stream.own_pending_call().expect("the request waits on its own call");
            let answer = answer(&host, &mut model);
            if round < 10 {
                // The first clients to wait hang up: Envoy deletes their streams, and the glue
                // hands each answer to what is left of its request.
                stream.on_abandoned_answer(&mut host, token, &answer);
                abandoned += 1;
                continue;
            }
            stream.on_call_response(&mut host, token, answer);
            flow = if host.sent.is_some() { Flow::Answered } else { Flow::Continue };
        }
        // Blocks asked for in the background are answered at once.
        for (_, job) in stream.take_background_calls() {
            let background::Job::Refill(refill) = &job else { panic!("{job:?}") };
            let answer = model.answer(&refill.call, host.now);
            background::answered(&mut host, &config, &mut worker.borrow_mut(), job, &answer, &|_, _| Vec::new());
        }
        match flow {
            Flow::Continue => admitted += 1,
            Flow::Answered => break,
            Flow::Waiting => panic!("an answered request still waits"),
        }
    }
    assert!(abandoned >= 1, "a client hung up while its request waited for a block");
    assert!(admitted <= 1000, "never more than the limit: {admitted}");
    // What a node may leave unspent is its last block, partly (the module's documented loss).
    assert!(admitted + 100 >= 1000, "limit 1000: {admitted} admitted, {abandoned} requests abandoned");
}

#[test]
fn an_introspection_answered_after_its_client_hung_up_is_cached_and_nothing_is_sent() {
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")]);
    host.now = 1_000;
    let mut stream = stream(secured());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting);
    let token = stream.own_pending_call().expect("the request's own call");
    let answer = br#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#.to_vec();
    stream.on_abandoned_answer(&mut host, token, &Answer::Http { status: 200, body: answer });
    assert!(host.shared.keys().any(|key| key.starts_with("apim.introspection")), "cached for every worker");
    assert!(host.sent.is_none() && !host.resumed && host.counted.is_empty());
    assert_eq!(stream.own_pending_call(), None, "settled once");
}

/// Requests of one worker with the same new opaque token make one introspection call: the
/// others wait for its answer (the glue hands it to each), so a burst of requests with a new
/// token asks the key manager once, not once per request. A failed call's answer reaches them
/// all, and the next request asks again.
#[test]
fn requests_with_a_token_under_introspection_wait_for_that_call() {
    let config = secured();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let request = |token: &str| {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", token)]);
        host.now = 1_000;
        host
    };
    let mut host = request("Bearer opaque-token-1");
    prepare_counters(&mut host, &mut Config::from_json(SECURED.as_bytes()).unwrap());
    let mut streams: Vec<Stream> = (0..3).map(|_| Stream::new(Rc::clone(&config), Rc::clone(&worker))).collect();
    for stream in &mut streams {
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting);
    }
    assert_eq!(host.dispatched.len(), 1, "one call for the three requests");
    let call = streams[0].own_pending_call().expect("the first request's own call");
    for waiter in &mut streams[1..] {
        assert_eq!(waiter.own_pending_call(), None, "not its call: its client hanging up leaves the call alone");
        assert_eq!(waiter.take_awaited_fetch(), Some(call), "waits for the first request's call");
    }
    // Another token is another call.
    let mut other = request("Bearer opaque-token-2");
    other.dispatched = host.dispatched.clone();
    assert_eq!(Stream::new(Rc::clone(&config), Rc::clone(&worker)).on_request_headers(&mut other, true), Flow::Waiting);
    assert_eq!(other.dispatched.len(), 2);
    // The key manager down: the answer reaches every request, each refused as the first is.
    for stream in &mut streams {
        stream.on_call_response(&mut host, call, Answer::Failed { code: 14 });
    }
    assert_eq!(host.counted, [900900, 900900, 900900]);
    // Nothing was cached: the next request asks again, with a call of its own.
    (host.sent, host.resumed) = (None, false);
    let mut next = Stream::new(Rc::clone(&config), Rc::clone(&worker));
    assert_eq!(next.on_request_headers(&mut host, true), Flow::Waiting);
    assert_eq!(host.dispatched.len(), 2);
    let again = next.own_pending_call().expect("a call of its own");
    let answer = br#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#.to_vec();
    next.on_call_response(&mut host, again, Answer::Http { status: 200, body: answer });
    assert!(host.resumed && host.sent.is_none(), "served");
}

/// The call a worker notes as under way for a token is forgotten when it answers, whatever
/// becomes of the answer: a request that took it without reading it (the host's clock failed
/// then) left it noted, and the next request with that token waited for a call already answered,
/// which nothing would ever resume.
#[test]
fn an_introspection_answered_is_no_longer_waited_for_even_when_its_answer_could_not_be_read() {
    let config = secured();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-1")]);
    host.now = 1_000;
    prepare_counters(&mut host, &mut Config::from_json(SECURED.as_bytes()).unwrap());
    let answer = || {
        let body = br#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#.to_vec();
        Answer::Http { status: 200, body }
    };
    for (abandoned, token) in [(false, "Bearer opaque-1"), (true, "Bearer opaque-2")] {
        let headers = [(":method", "GET"), (":path", "/p/1/menu"), ("authorization", token)];
        let request = || headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        host.request = request();
        let mut first = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        assert_eq!(first.on_request_headers(&mut host, true), Flow::Waiting);
        let call = first.own_pending_call().expect("its own call");
        host.clock_broken = true;
        if abandoned {
            first.abandon();
            first.on_abandoned_answer(&mut host, call, &answer());
        } else {
            first.on_call_response(&mut host, call, answer());
        }
        host.clock_broken = false;
        (host.sent, host.resumed) = (None, false);
        // The next request, the same second: the call it would join has answered.
        let calls = host.dispatched.len();
        host.request = request();
        let mut next = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        assert_eq!(next.on_request_headers(&mut host, true), Flow::Waiting);
        assert_eq!(next.take_awaited_fetch(), None, "abandoned: {abandoned}: waits for no call that answered");
        assert_eq!(host.dispatched.len(), calls + 1, "a call of its own");
        let again = next.own_pending_call().expect("a call of its own");
        next.on_call_response(&mut host, again, answer());
        assert!(host.resumed && host.sent.is_none(), "served");
    }
}

/// A client opens streams with a random opaque token and big headers, and resets each at once:
/// the worker keeps each one's state until its introspection answers (the key manager's
/// timeout). What it keeps is what the answer needs, not the request's headers.
#[test]
fn a_request_whose_client_hung_up_leaves_only_its_calls_state_behind() {
    let cookie = "c".repeat(60 * 1024);
    let mut host = FakeHost::request(&[
        (":method", "GET"),
        (":path", "/p/1/menu"),
        ("authorization", "Bearer random-opaque-token"),
        ("cookie", &cookie),
    ]);
    host.now = 1_000;
    let mut stream = stream(secured());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting);
    let token = stream.own_pending_call().expect("the request's own call");
    assert!(stream.request_bytes_held() > 60 * 1024, "a live request holds its headers");
    // Envoy deletes the stream; the glue keeps it for the answer.
    stream.abandon();
    assert!(stream.request_bytes_held() < 1024, "{} bytes kept after the client hung up", stream.request_bytes_held());
    let answer = br#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#.to_vec();
    stream.on_abandoned_answer(&mut host, token, &Answer::Http { status: 200, body: answer });
    assert!(host.shared.keys().any(|key| key.starts_with("apim.introspection")), "still cached for every worker");
    assert!(host.sent.is_none() && !host.resumed);
}

/// A fetch that cannot even be made (a misnamed cluster) is a failed fetch: an outage, 900900.
struct NoCluster(FakeHost);

impl SharedStore for NoCluster {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.0.shared_get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.0.shared_set(key, value, cas)
    }
}

impl Host for NoCluster {
    fn request_headers(&self) -> Vec<crate::host::Header> {
        self.0.request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.0.set_request_header(name, value)
    }
    fn request_trailer_names(&self) -> Vec<String> {
        self.0.request_trailer_names()
    }
    fn remove_request_trailer(&mut self, name: &str) {
        self.0.remove_request_trailer(name)
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.0.response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.0.set_response_header(name, value)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.0.property(path)
    }
    fn set_property(&mut self, name: &str, value: &[u8]) {
        self.0.set_property(name, value)
    }
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>) {
        self.0.send_response(status, headers, body, grpc_status)
    }
    fn count(&mut self, name: &str) {
        self.0.count(name)
    }
    fn now(&self) -> Result<u64, HostError> {
        self.0.now()
    }
    fn call(&mut self, _: &Call) -> Result<u32, HostError> {
        Err(HostError(1))
    }
    fn body_chunk(&self, direction: crate::host::Direction, size: usize) -> Option<Vec<u8>> {
        self.0.body_chunk(direction, size)
    }
    fn replace_body_chunk(&mut self, direction: crate::host::Direction, size: usize, bytes: &[u8]) {
        self.0.replace_body_chunk(direction, size, bytes)
    }
    fn close_stream(&mut self) {
        self.0.close_stream()
    }
    fn resume_request(&mut self) {
        self.0.resume_request()
    }
}

#[test]
fn a_jwks_fetch_that_cannot_be_made_is_an_outage() {
    let config = jwks_config();
    let mut host = NoCluster(FakeHost { now: 1_000, ..Default::default() });
    host.0.request = [(":method", "GET"), (":path", "/p/1/menu")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    host.0.request.insert("authorization".into(), format!("Bearer {}", signed("a", 5_000)).into_bytes());
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut stream = Stream::new(Rc::clone(&config), worker);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!(host.0.counted, vec![900900]);
    // A failed fetch, as one whose call was made and failed: in the stats an operator alerts on.
    assert_eq!(host.0.counters.iter().filter(|name| *name == "apim.jwks.fetch_failed").count(), 1);
}

/// A policy lookup answered after its client hung up, when a full load changed the data while
/// the call was out: the answer is settled, and nothing else is asked for that request (no call
/// would be made, and it would spend a call of the budget live requests share).
#[test]
fn a_policy_lookup_answered_after_its_client_hung_up_spends_no_more_of_the_budget() {
    use super::gateways::{control_plane, Gateway, NOW};
    use crate::directory::control_plane::store::Meta;
    let mut shared = HashMap::new();
    let json = r#"{"control_plane": {"cluster": "cp", "username": "gw", "password": "secret",
        "lookups_per_second": 2, "gateway_label": "internal", "endpoints": {"PizzaShackAPI": {"production": "live"}}}}"#;
    let gateway = Gateway::configure(&mut shared, json);
    // The open `/health` of PizzaShackAPI is under a resource policy the full load did not bring.
    let ghost = |path: &str| {
        control_plane(path).replace(
            r#""throttlingPolicy":"Unlimited","httpMethod":"GET","urlPattern":"/health""#,
            r#""throttlingPolicy":"Ghost","httpMethod":"GET","urlPattern":"/health""#,
        )
    };
    gateway.run_background(&mut shared, &|path: &str| {
        if path.contains("/apis?") || path.ends_with("/apis") {
            ghost(path)
        } else {
            control_plane(path)
        }
    });
    let health = |shared: &mut HashMap<String, (Vec<u8>, u32)>| {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/pizzashack/1.0.0/health")]);
        host.now = NOW;
        host.shared = std::mem::take(shared);
        let mut stream = Stream::new(Rc::clone(&gateway.config), Rc::clone(&gateway.worker));
        let flow = stream.on_request_headers(&mut host, true);
        (stream, flow, host)
    };
    let (mut abandoned, flow, mut host) = health(&mut shared);
    assert_eq!(flow, Flow::Waiting, "{:?}", host.sent);
    let (_, headers, _) = host.dispatched.last().unwrap().clone();
    assert!(headers.iter().any(|(name, value)| name == ":path" && value.ends_with("api-policies?policyName=Ghost")));
    let token = abandoned.own_pending_call().expect("the request's own call");
    // A full load changed something while the call was out; then the client hung up.
    let mut meta = Meta::read(&host);
    meta.generation += 1;
    meta.write(&mut host);
    abandoned.abandon();
    let empty = br#"{"count":0,"list":[],"pagination":null}"#.to_vec();
    abandoned.on_abandoned_answer(&mut host, token, &Answer::Http { status: 200, body: empty });
    assert!(host.sent.is_none() && !host.resumed);
    // The same second's next request makes the second call of a budget of two, not 900900.
    shared = host.shared;
    let (_, flow, host) = health(&mut shared);
    assert_eq!(flow, Flow::Waiting, "{:?}", host.sent);
}

/// A request a blocking condition refuses is refused (900805) before any policy matters, as
/// `throttle::start` orders it: a policy it would be subject to is not looked up (API-M down,
/// that lookup answered 900900 instead; up, it spent the lookup budget on a refused request).
#[test]
fn a_blocked_request_is_refused_without_looking_up_its_missing_policy() {
    use super::gateways::{control_plane, Gateway, NOW};
    let mut shared = HashMap::new();
    let json = r#"{"control_plane": {"cluster": "cp", "username": "gw", "password": "secret",
        "gateway_label": "internal", "endpoints": {"PizzaShackAPI": {"production": "live"}}}}"#;
    let gateway = Gateway::configure(&mut shared, json);
    gateway.run_background(&mut shared, &|path: &str| {
        if path.contains("/apis") {
            control_plane(path).replace(
                r#""throttlingPolicy":"Unlimited","httpMethod":"GET","urlPattern":"/health""#,
                r#""throttlingPolicy":"Ghost","httpMethod":"GET","urlPattern":"/health""#,
            )
        } else if path.contains("/block") {
            r#"{"api":["/pizzashack/1.0.0"],"application":[],"user":[],"ip":[],"custom":[],"subscription":[]}"#
                .to_string()
        } else {
            control_plane(path)
        }
    });
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/pizzashack/1.0.0/health")]);
    host.now = NOW;
    host.shared = std::mem::take(&mut shared);
    let dispatched = host.dispatched.len();
    let mut stream = Stream::new(Rc::clone(&gateway.config), Rc::clone(&gateway.worker));
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    let (status, _, body) = host.sent.clone().unwrap();
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("900805"));
    assert_eq!(host.dispatched.len(), dispatched, "nothing asked of the control plane");
}

/// A key the key manager drops from its JWKS verifies no token after the refresh that brought
/// the new set, not even one a worker verified with it before: neither from that worker's cache
/// nor, on another worker, from the Envoy's shared cache (CONFIG.md, `jwks.refresh_s`: "a key
/// removed from the set is trusted until the next"). Both caches served such a token until its
/// `exp`: a key rotated out after a leak kept its tokens working for hours.
#[test]
fn a_key_dropped_at_a_refresh_verifies_no_token_from_any_cache() {
    let config = jwks_config();
    let workers: Vec<_> = (0..3).map(|_| Rc::new(RefCell::new(Worker::new(&config)))).collect();
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let old = signed("a", 9_000);
    let (mut s, flow) = bearer_call(&config, &workers[0], &mut host, &old);
    assert_eq!(flow, Flow::Waiting);
    s.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    assert!(host.resumed && host.sent.is_none(), "verified by worker 0, shared");
    assert_eq!(bearer_call(&config, &workers[1], &mut host, &old).1, Flow::Continue, "worker 1, from shared data");
    // The key manager rotates: kid "b" only. A token with kid "b" makes worker 0 fetch the new set.
    host.now = 1_010;
    let (mut s, flow) = bearer_call(&config, &workers[0], &mut host, &signed("b", 9_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 2));
    s.on_call_response(&mut host, 2, Answer::Http { status: 200, body: jwks_body_with(&["b"]) });
    assert!(host.resumed && host.sent.is_none());
    host.now = 1_011;
    for (worker, cache) in [(0, "its own cache"), (1, "its own cache"), (2, "the Envoy's cache")] {
        host.counted.clear();
        let (mut s, flow) = bearer_call(&config, &workers[worker], &mut host, &old);
        if flow == Flow::Waiting {
            // A worker that has not fetched lately asks for kid "a": the key manager has it no more.
            let token = host.dispatched.len() as u32;
            s.on_call_response(&mut host, token, Answer::Http { status: 200, body: jwks_body_with(&["b"]) });
        }
        assert_eq!((host.sent.is_some(), &host.counted[..]), (true, &[900901][..]), "worker {worker}, {cache}");
    }
    // Tokens of the keys held stay cached (verified once more under the new set).
    assert_eq!(bearer_call(&config, &workers[2], &mut host, &signed("b", 9_000)).1, Flow::Continue);
}
