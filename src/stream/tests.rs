//! The stream against a fake host: every phase, every call, hostile bytes.

use super::request::{le_u64, strip_query_params};
use super::*;
use crate::auth::{credential_hash, introspection, jwks};
use crate::host::{Header, HostError, SharedStore};
use std::collections::HashMap;

/// A call the stream made: cluster, headers, body.
type Dispatched = (String, Vec<(String, String)>, Option<Vec<u8>>);

/// A local reply the stream sent: status, headers, body.
type SentReply = (u16, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
struct FakeHost {
    request: HashMap<String, Vec<u8>>,
    trailers: HashMap<String, Vec<u8>>,
    response: HashMap<String, Vec<u8>>,
    properties: HashMap<String, Vec<u8>>,
    sent: Option<SentReply>,
    /// The `grpc-status` the last local reply asked for.
    sent_grpc_status: Option<u8>,
    counted: Vec<u32>,
    counters: Vec<String>,
    now: u64,
    clock_broken: bool,
    /// Reads of the clock that succeed before it breaks (`None`: as `clock_broken` says).
    clock_reads_left: std::cell::Cell<Option<u32>>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    shared_reads: std::cell::Cell<u32>,
    dispatched: Vec<Dispatched>,
    /// The gRPC calls made (each also in `dispatched`, with its message as the body).
    grpc_calls: Vec<Call>,
    resumed: bool,
    /// The body chunk of the current body callback, per direction (request, response).
    bodies: [Vec<u8>; 2],
    /// The stream was reset (`close_stream`), and how many times it was asked to be.
    closed: bool,
    closes: u32,
    /// The body chunks cannot be read.
    bodies_unreadable: bool,
    /// Every header written (request and response), every filter-state property, every call.
    written: Vec<(String, Vec<u8>)>,
    properties_set: Vec<String>,
    calls: Vec<Call>,
}

impl FakeHost {
    fn request(pairs: &[(&str, &str)]) -> Self {
        FakeHost {
            request: pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
            ..Default::default()
        }
    }

    fn req(&self, name: &str) -> &str {
        std::str::from_utf8(&self.request[name]).unwrap()
    }
}

impl SharedStore for FakeHost {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.shared_reads.set(self.shared_reads.get() + 1);
        Ok(self.shared.get(key).cloned())
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let current = self.shared.get(key).map(|(_, cas)| *cas);
        if cas.is_some() && current.is_some() && cas != current {
            return Err(HostError::CAS_MISMATCH);
        }
        self.shared.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

impl Host for FakeHost {
    fn request_headers(&self) -> Vec<Header> {
        self.request.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.written.push((name.to_string(), value.unwrap_or_default().to_vec()));
        match value {
            Some(value) => self.request.insert(name.to_string(), value.to_vec()),
            None => self.request.remove(name),
        };
    }
    fn request_trailer_names(&self) -> Vec<String> {
        self.trailers.keys().cloned().collect()
    }
    fn remove_request_trailer(&mut self, name: &str) {
        self.trailers.remove(name);
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.response.get(name).cloned()
    }
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.written.push((name.to_string(), value.unwrap_or_default().to_vec()));
        match value {
            Some(value) => self.response.insert(name.to_string(), value.to_vec()),
            None => self.response.remove(name),
        };
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }
    fn set_property(&mut self, name: &str, value: &[u8]) {
        self.properties_set.push(name.to_string());
        self.properties.insert(name.to_string(), value.to_vec());
    }
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>) {
        self.sent = Some((status, headers.to_vec(), body.to_vec()));
        self.sent_grpc_status = grpc_status;
    }
    fn count(&mut self, name: &str) {
        if let Some(code) = name.strip_prefix("apim.fault.").and_then(|code| code.parse().ok()) {
            self.counted.push(code);
        }
        self.counters.push(name.to_string());
    }
    fn now(&self) -> Result<u64, HostError> {
        if self.clock_broken {
            return Err(HostError(10));
        }
        if let Some(left) = self.clock_reads_left.get() {
            if left == 0 {
                return Err(HostError(10));
            }
            self.clock_reads_left.set(Some(left - 1));
        }
        Ok(self.now)
    }
    fn call(&mut self, call: &Call) -> Result<u32, HostError> {
        self.calls.push(call.clone());
        match call {
            Call::Http { cluster, headers, body, .. } => {
                self.dispatched.push((cluster.clone(), headers.clone(), Some(body.clone())));
                Ok(self.dispatched.len() as u32)
            }
            Call::Grpc { cluster, message, .. } => {
                self.dispatched.push((cluster.clone(), Vec::new(), Some(message.clone())));
                self.grpc_calls.push(call.clone());
                Ok(self.dispatched.len() as u32)
            }
        }
    }
    fn resume_request(&mut self) {
        self.resumed = true;
    }
    fn body_chunk(&self, direction: crate::host::Direction, size: usize) -> Option<Vec<u8>> {
        if self.bodies_unreadable {
            return None;
        }
        let body = &self.bodies[direction as usize];
        Some(body[..size.min(body.len())].to_vec())
    }
    fn replace_body_chunk(&mut self, direction: crate::host::Direction, size: usize, bytes: &[u8]) {
        let body = &mut self.bodies[direction as usize];
        body.splice(..size.min(body.len()), bytes.iter().copied());
    }
    fn close_stream(&mut self) {
        self.closed = true;
        self.closes += 1;
    }
}

fn config() -> Rc<Config> {
    let json = r#"{"apis":[{"name":"P","context":"/p","version":"1","security":[],
        "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#;
    Rc::new(Config::from_json(json.as_bytes()).unwrap())
}

fn stream(config: Rc<Config>) -> Stream {
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    Stream::new(config, worker)
}

#[test]
fn forwarded_requests_get_routing_headers_and_lose_spoofed_ones_and_credentials() {
    let mut host = FakeHost::request(&[
        (":method", "GET"),
        (":path", "/p/1/menu?x=1"),
        ("x-apim-cluster", "admin"),
        ("authorization", "Bearer abc"),
    ]);
    let mut stream = stream(config());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
    assert_eq!(host.req("x-apim-cluster"), "backend");
    assert_eq!(host.req("x-apim-api"), "P:1");
    assert_eq!(host.req(":path"), "/menu?x=1");
    assert!(!host.request.contains_key("authorization"));
    assert!(host.sent.is_none());
}

#[test]
fn denied_requests_are_answered_counted_and_not_reclassified() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/nowhere"), ("x-apim-cluster", "admin")]);
    let mut stream = stream(config());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    let (status, _, body) = host.sent.clone().unwrap();
    assert_eq!(status, 404);
    assert!(String::from_utf8(body).unwrap().contains("\"404\""));
    assert_eq!(host.counted, vec![404]);
    assert!(!host.request.contains_key("x-apim-cluster"));
    // Our own reply passes through the response phase untouched.
    host.response.insert(":status".into(), b"404".to_vec());
    host.properties.insert("response.flags".into(), 0x100u64.to_le_bytes().to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
    assert_eq!(host.counted, vec![404]);
}

#[test]
fn envoy_upstream_failure_reply_is_rewritten() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    let mut stream = stream(config());
    stream.on_request_headers(&mut host, true);
    host.response.insert(":status".into(), b"503".to_vec());
    host.response.insert("content-length".into(), b"91".to_vec());
    host.response.insert("content-type".into(), b"text/plain".to_vec());
    host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
    host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Answered);
    let (status, headers, body) = host.sent.clone().expect("Envoy's reply is replaced whole");
    assert_eq!(status, 503);
    assert!(headers.iter().any(|(name, value)| name == "content-type" && value.starts_with("application/json")));
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("\"101503\""), "{body}");
    assert_eq!(host.counted, vec![101503]);
}

#[test]
fn backend_responses_pass_untouched() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    let mut stream = stream(config());
    stream.on_request_headers(&mut host, true);
    host.response.insert(":status".into(), b"500".to_vec());
    host.properties.insert("response.code_details".into(), b"via_upstream".to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
    assert_eq!(stream.on_response_body(&mut host, 10, true), Flow::Continue);
    assert!(host.sent.is_none());
    assert!(host.counted.is_empty());
    assert_eq!(host.response[":status"], b"500");
}

#[test]
fn little_endian_flags() {
    assert_eq!(le_u64(&32u64.to_le_bytes()), 32);
    assert_eq!(le_u64(&[4]), 4);
    assert_eq!(le_u64(&[]), 0);
}

const SECURED: &str = r#"{
    "key_managers": [{"name": "km", "issuer": "https://km",
        "introspection": {"cluster": "km", "client_id": "gateway", "client_secret": "gateway-secret"}}],
    "apis": [{"name": "P", "context": "/p", "version": "1",
        "endpoints": {"production": "prod", "sandbox": "sand"},
        "resources": [{"method": "GET", "path": "/menu", "scopes": ["menu:read"]}]}],
    "applications": [{"id": "app-1", "name": "App", "owner": "alice",
        "client_ids": [{"id": "app1"}, {"id": "app1-sandbox", "key_type": "SANDBOX"}]}],
    "subscriptions": [{"application": "app-1", "api": "P:1", "tier": "Gold"}],
    "policies": {"Gold": {"requests": 100, "per": "minute"}}
}"#;

fn secured() -> Rc<Config> {
    Rc::new(Config::from_json(SECURED.as_bytes()).unwrap())
}

fn introspection_answer(body: &str) -> (FakeHost, Stream) {
    introspection_answer_with(SECURED, body, &[])
}

/// An introspected request under `config`; `extra` are more request headers.
fn introspection_answer_with(config: &str, body: &str, extra: &[(&str, &str)]) -> (FakeHost, Stream) {
    let mut headers = vec![(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")];
    headers.extend_from_slice(extra);
    let mut host = FakeHost::request(&headers);
    host.now = 1_000;
    prepare_counters(&mut host, &mut Config::from_json(config.as_bytes()).unwrap());
    let mut stream = stream(Rc::new(Config::from_json(config.as_bytes()).unwrap()));
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting);
    let (cluster, headers, request_body) = host.dispatched[0].clone();
    assert_eq!(cluster, "km");
    assert!(headers.contains(&(":path".to_string(), "/oauth2/introspect".to_string())));
    assert!(headers.iter().any(|(name, value)| name == "authorization" && value.starts_with("Basic ")));
    assert_eq!(request_body.unwrap(), b"token=opaque-token-1&token_type_hint=access_token".to_vec());
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: body.as_bytes().to_vec() });
    (host, stream)
}

#[test]
fn an_active_opaque_token_is_forwarded_with_the_auth_context_and_cached() {
    let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#);
    assert!(host.resumed);
    assert!(host.sent.is_none());
    assert_eq!(host.req("x-apim-cluster"), "prod");
    assert_eq!(host.req("x-apim-application-id"), "app-1");
    assert_eq!(host.req("x-apim-subscriber"), "alice");
    assert_eq!(host.req("x-apim-key-type"), "PRODUCTION");
    assert_eq!(host.req("x-apim-tier"), "Gold");
    assert!(!host.request.contains_key("authorization"));
    // The same token again: served from shared data, no second call.
    let mut again =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")]);
    again.now = 1_100;
    again.shared = host.shared.clone();
    let mut second = stream(secured());
    assert_eq!(second.on_request_headers(&mut again, true), Flow::Continue);
    assert!(again.dispatched.is_empty());
    // Never past the token's exp.
    let mut late =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")]);
    late.now = 2_000;
    late.shared = host.shared.clone();
    let mut third = stream(secured());
    assert_eq!(third.on_request_headers(&mut late, true), Flow::Waiting);
    assert_eq!(late.dispatched.len(), 1);
}

#[test]
fn the_auth_context_headers_can_be_turned_off_and_client_copies_still_go() {
    let quiet = SECURED.replacen('{', r#"{"credentials": {"context_headers": false},"#, 1);
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#;
    let (host, _) = introspection_answer_with(&quiet, active, &[("x-apim-application-id", "admin-app")]);
    assert!(host.resumed && host.sent.is_none());
    assert_eq!(host.req("x-apim-cluster"), "prod");
    for suffix in crate::auth::settings::CONTEXT_HEADERS {
        assert!(!host.request.contains_key(&format!("x-apim-{suffix}")), "{suffix}");
    }
    // On by default, from the same request.
    let (host, _) = introspection_answer_with(SECURED, active, &[("x-apim-application-id", "admin-app")]);
    assert_eq!(host.req("x-apim-application-id"), "app-1");
}

#[test]
fn introspection_outcomes_map_to_wso2_codes() {
    let (host, _) = introspection_answer(r#"{"active":false}"#);
    assert_eq!(host.sent.as_ref().unwrap().0, 401);
    assert_eq!(host.counted, vec![900901]);
    let (host, _) = introspection_answer("upstream connect error");
    assert_eq!((host.sent.as_ref().unwrap().0, host.counted.clone()), (500, vec![900900]));
    let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1","scope":"other"}"#);
    assert_eq!((host.sent.as_ref().unwrap().0, host.counted.clone()), (403, vec![900910]));
    let (host, _) = introspection_answer(r#"{"active":true,"client_id":"stranger","scope":"menu:read"}"#);
    assert_eq!((host.sent.as_ref().unwrap().0, host.counted.clone()), (403, vec![900908]));
    let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1-sandbox","scope":"menu:read"}"#);
    assert_eq!(host.req("x-apim-cluster"), "sand");
    assert_eq!(host.req("x-apim-key-type"), "SANDBOX");
}

#[test]
fn a_failed_call_is_900900_and_nothing_is_cached() {
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-2")]);
    prepare_counters(&mut host, &mut Config::from_json(SECURED.as_bytes()).unwrap());
    let mut stream = stream(secured());
    stream.on_request_headers(&mut host, true);
    stream.on_call_response(&mut host, 1, Answer::Failed { code: 11 });
    assert_eq!(host.counted, vec![900900]);
    assert!(!host.shared.keys().any(|key| key.starts_with("apim.introspection")), "nothing cached");
}

#[test]
fn spoofed_context_headers_are_removed() {
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("x-apim-application-id", "admin-app")]);
    let mut stream = stream(config());
    stream.on_request_headers(&mut host, true);
    assert!(!host.request.contains_key("x-apim-application-id"));
}

#[test]
fn api_key_in_query_is_stripped_before_forwarding() {
    assert_eq!(strip_query_params("/menu?apikey=k&x=1", &["apikey"]), "/menu?x=1");
    assert_eq!(strip_query_params("/menu?apikey=k", &["apikey"]), "/menu");
    assert_eq!(strip_query_params("/menu?apikeyx=1", &["apikey"]), "/menu?apikeyx=1");
    assert_eq!(strip_query_params("/menu?x=1&api%6Bey=k", &["apikey"]), "/menu?x=1");
    assert_eq!(strip_query_params("/menu?x=%41&y=api+key", &["apikey"]), "/menu?x=%41&y=api+key");
    // A query without the parameter is returned as it is, not copied.
    assert!(matches!(strip_query_params("/menu?x=1&y=2", &["apikey"]), std::borrow::Cow::Borrowed(_)));
}

fn jwks_config() -> Rc<Config> {
    Rc::new(Config::from_json(jwks_config_json().as_bytes()).unwrap())
}

fn jwks_config_json() -> String {
    r#"{"key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"cluster": "km", "refresh_s": 300}}],
        "apis": [{"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"},
                  "resources": [{"method": "GET", "path": "/menu"}]}],
        "applications": [{"id": "app-1", "name": "App", "client_ids": [{"id": "app1"}]}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}]}"#
        .to_string()
}

fn signed(kid: &str, exp: u64) -> String {
    use crate::auth::keys::testkeys::sign_raw;
    let claims = format!(r#"{{"iss":"https://km","exp":{exp},"client_id":"app1"}}"#);
    sign_raw(&format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#), &claims, "rsa-a.pem", jsonwebtoken::Algorithm::RS256)
}

fn jwks_body() -> Vec<u8> {
    let jwk = crate::auth::keys::testkeys::jwk("rsa-a.pem", jsonwebtoken::Algorithm::RS256, "a");
    serde_json::json!({"keys": [jwk]}).to_string().into_bytes()
}

/// One request with a bearer token through a stream of this worker.
fn bearer_call(config: &Rc<Config>, worker: &Rc<RefCell<Worker>>, host: &mut FakeHost, token: &str) -> (Stream, Flow) {
    host.request = [(":method", "GET"), (":path", "/p/1/menu")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
    host.sent = None;
    host.resumed = false;
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    let flow = stream.on_request_headers(host, true);
    (stream, flow)
}

#[test]
fn jwks_are_fetched_when_needed_shared_refreshed_in_the_background_and_kept_when_a_refresh_fails() {
    let config = jwks_config();
    let km = &config.auth.key_managers[0];
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    jwks::prepare(&mut host, &config.auth);
    // First use: no keys yet, so the request waits for a fetch, which is shared with all workers.
    let (mut stream, flow) = bearer_call(&config, &worker, &mut host, &signed("a", 5_000));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, 1));
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    assert!(host.resumed && host.sent.is_none());
    assert!(host.shared.contains_key(&jwks::shared_key(km)));
    // Another worker picks the keys up from shared data without fetching.
    let other = Rc::new(RefCell::new(Worker::new(&config)));
    host.now = 1_010;
    let (_, flow) = bearer_call(&config, &other, &mut host, &signed("a", 5_001));
    assert_eq!((flow, host.dispatched.len()), (Flow::Continue, 1));
    // Keys that grew old are refreshed by the root context's tick, by one worker only; no request
    // waits for it.
    host.now = 1_400;
    let (_, flow) = bearer_call(&config, &worker, &mut host, &signed("a", 5_002));
    assert_eq!((flow, host.dispatched.len()), (Flow::Continue, 1), "a request never waits for a refresh");
    let started = background::tick(&mut host, &config, &mut worker.borrow_mut());
    assert_eq!(started.len(), 1);
    assert!(background::tick(&mut host, &config, &mut other.borrow_mut()).is_empty(), "one refresh per Envoy");
    let (token, job) = started[0].clone();
    assert_eq!(token, 2);
    // A failed refresh keeps the last good keys and is retried soon.
    background::answered(
        &mut host,
        &config,
        &mut worker.borrow_mut(),
        job,
        &Answer::Http { status: 503, body: b"down".to_vec() },
        &|_, _| Vec::new(),
    );
    let (_, flow) = bearer_call(&config, &worker, &mut host, &signed("a", 5_003));
    assert_eq!(flow, Flow::Continue, "verified with the last good keys");
    host.now = 1_400 + jwks::FETCH_INTERVAL_S;
    assert_eq!(background::tick(&mut host, &config, &mut other.borrow_mut()).len(), 1, "retried after the interval");
    // An unknown kid right after that failed fetch, within the request fetch interval of this
    // worker's last fetch: its key could not be had, so it is a key manager outage (900900).
    worker.borrow_mut().auth.jwks[0].last_attempt = Some(host.now);
    let (_, flow) = bearer_call(&config, &worker, &mut host, &signed("rotated", 5_004));
    assert_eq!(flow, Flow::Answered);
    assert_eq!(host.counted.last(), Some(&900900));
    assert!(host.counters.contains(&"apim.auth.refused.keys_unavailable".to_string()));
    // After the interval the request may fetch again: the key manager answers, without that kid.
    host.now += jwks::FETCH_INTERVAL_S;
    let dispatched = host.dispatched.len();
    let (mut stream, flow) = bearer_call(&config, &worker, &mut host, &signed("rotated", 5_005));
    assert_eq!((flow, host.dispatched.len()), (Flow::Waiting, dispatched + 1));
    stream.on_call_response(&mut host, dispatched as u32 + 1, Answer::Http { status: 200, body: jwks_body() });
    assert_eq!(host.counted.last(), Some(&900901));
}

#[test]
fn a_jwks_refresh_is_never_started_again_while_the_last_may_still_answer() {
    // refresh_s 1 beside a 5 s call timeout.
    let json = jwks_config_json().replace(r#""refresh_s": 300"#, r#""refresh_s": 1, "timeout_ms": 5000"#);
    let config = Rc::new(Config::from_json(json.as_bytes()).unwrap());
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    jwks::prepare(&mut host, &config.auth);
    assert_eq!(background::tick(&mut host, &config, &mut worker.borrow_mut()).len(), 1);
    for now in 1_001..=1_005 {
        host.now = now;
        assert!(background::tick(&mut host, &config, &mut worker.borrow_mut()).is_empty(), "again at {now}");
    }
    host.now = 1_006;
    assert_eq!(background::tick(&mut host, &config, &mut worker.borrow_mut()).len(), 1, "after the timeout");
}

#[test]
fn keys_that_were_never_fetched_because_the_key_manager_is_down_are_900900() {
    let config = jwks_config();
    for answer in [
        Answer::Failed { code: 11 },
        Answer::Http { status: 500, body: b"oops".to_vec() },
        Answer::Http { status: 200, body: b"<html>".to_vec() },
    ] {
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        host.request.insert("authorization".into(), format!("Bearer {}", signed("a", 5_000)).into_bytes());
        host.now = 1_000;
        let mut stream = Stream::new(Rc::clone(&config), worker);
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting);
        stream.on_call_response(&mut host, 1, answer.clone());
        assert_eq!(host.sent.as_ref().map(|sent| sent.0), Some(500), "{answer:?}");
        assert_eq!(host.counted, vec![900900], "{answer:?}");
    }
}

#[test]
fn a_clock_that_cannot_be_read_fails_closed() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer x.y.z")]);
    host.clock_broken = true;
    let mut stream = stream(jwks_config());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!(host.counted, vec![900900]);
    assert!(!host.request.contains_key("x-apim-cluster"));
}

#[test]
fn non_utf8_bytes_anywhere_never_panic_and_credentials_that_are_not_text_are_refused() {
    // Latin-1 bytes in an ordinary header: carried through untouched.
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    host.request.insert("user-agent".into(), b"Mozilla/5.0 \xa9".to_vec());
    host.request.insert("origin".into(), b"https://caf\xe9.example".to_vec());
    let mut passing = stream(config());
    assert_eq!(passing.on_request_headers(&mut host, true), Flow::Continue);
    assert_eq!(host.request["user-agent"], b"Mozilla/5.0 \xa9");
    // In a credential: 900901, never a crash.
    for name in ["authorization", "apikey"] {
        let json = SECURED.replace(
            r#""endpoints": {"production""#,
            r#""security": ["oauth2", "api_key"], "endpoints": {"production""#,
        );
        let config = Rc::new(Config::from_json(json.as_bytes()).unwrap());
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        host.request.insert(name.into(), b"Bearer \xff\xfe".to_vec());
        let mut refused = Stream::new(Rc::clone(&config), Rc::new(RefCell::new(Worker::new(&config))));
        assert_eq!(refused.on_request_headers(&mut host, true), Flow::Answered, "{name}");
        assert_eq!(host.counted, vec![900901], "{name}");
        assert!(host.counters.contains(&"apim.auth.refused.not_utf8".to_string()), "{name}");
    }
    // A path that is not UTF-8 matches nothing.
    let mut host = FakeHost::request(&[(":method", "GET")]);
    host.request.insert(":path".into(), b"/p/1/m\xe9nu".to_vec());
    let mut unmatched = stream(config());
    unmatched.on_request_headers(&mut host, true);
    assert!(host.sent.is_some());
    // Random bytes in every header the filter reads, many times over.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for round in 0..500 {
        let mut host = FakeHost::request(&[]);
        for name in [":method", ":path", "authorization", "apikey", "origin", "access-control-request-method"] {
            let mut value = noise(round % 40);
            if name == ":path" && round % 3 == 0 {
                value = [b"/p/1/menu?".as_slice(), &value].concat();
            }
            host.request.insert(name.into(), value);
        }
        host.response.insert(":status".into(), noise(3));
        host.properties.insert("response.flags".into(), noise(8));
        host.properties.insert("response.code_details".into(), noise(12));
        let mut fuzzed = stream(secured());
        fuzzed.on_request_headers(&mut host, true);
        fuzzed.on_call_response(&mut host, 1, Answer::Http { status: 200, body: noise(round % 64) });
        fuzzed.on_response_headers(&mut host);
        fuzzed.on_response_body(&mut host, 10, true);
    }
}

#[test]
fn client_copies_of_owned_headers_go_in_every_spelling() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    for name in ["x-apim-quota-exceeded", "X_APIM_APPLICATION_ID", "x_apim_cluster", "X-Apim-Tier", "x-apim_end-user"] {
        host.request.insert(name.into(), b"forged".to_vec());
    }
    host.request.insert("x-apim-unrelated".into(), b"kept".to_vec());
    let mut stream = stream(config());
    stream.on_request_headers(&mut host, true);
    let forged: Vec<&String> =
        host.request.iter().filter(|(_, value)| value.as_slice() == b"forged").map(|(name, _)| name).collect();
    assert!(forged.is_empty(), "{forged:?}");
    assert_eq!(host.request["x-apim-unrelated"], b"kept");
}

#[test]
fn envoy_replies_without_a_body_get_the_whole_fault() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    let mut stream = stream(config());
    stream.on_request_headers(&mut host, true);
    host.response.insert(":status".into(), b"503".to_vec());
    host.properties.insert("response.flags".into(), 0x100_0000u64.to_le_bytes().to_vec());
    host.properties.insert("response.code_details".into(), b"cluster_not_found".to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Answered);
    let (status, headers, body) = host.sent.clone().expect("a local reply with the body");
    assert_eq!(status, 503);
    assert!(String::from_utf8(body).unwrap().contains("\"101503\""));
    assert!(headers.iter().any(|(name, value)| name == "content-type" && value.starts_with("application/json")));
}

#[test]
fn an_introspection_answer_too_large_to_cache_serves_its_request_and_is_not_cached() {
    let scopes: Vec<String> = (0..3_000).map(|i| format!("scope-{i:05}")).collect();
    let body = format!(r#"{{"active":true,"client_id":"app1","scope":"menu:read {}","exp":5000}}"#, scopes.join(" "));
    let (host, _) = introspection_answer(&body);
    assert_eq!(host.req("x-apim-cluster"), "prod", "the request passes");
    assert!(!host.shared.keys().any(|key| key.starts_with("apim.introspection")), "nothing cached");
}

#[test]
fn a_bogus_token_does_not_evict_a_cached_active_answer_in_its_slot() {
    let config = secured();
    let km = &config.auth.key_managers[0];
    let real = credential_hash("opaque-token-1");
    let slot = introspection::slot(km, &real);
    let bogus = (0..1_000_000)
        .map(|i| format!("bogus-{i}"))
        .find(|token| introspection::slot(km, &credential_hash(token)) == slot)
        .expect("a colliding token");
    let (mut host, _) = introspection_answer(r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#);
    let cached = host.shared[&slot].clone();
    host.request = [(":method", "GET"), (":path", "/p/1/menu")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    host.request.insert("authorization".into(), format!("Bearer {bogus}").into_bytes());
    let mut attacker = stream(secured());
    assert_eq!(attacker.on_request_headers(&mut host, true), Flow::Waiting);
    let call = host.dispatched.len() as u32;
    attacker.on_call_response(&mut host, call, Answer::Http { status: 200, body: br#"{"active":false}"#.to_vec() });
    assert_eq!(host.counted.last(), Some(&900901));
    assert_eq!(host.shared[&slot], cached, "the real token's answer stays cached");
}

#[test]
fn the_access_log_fields_and_api_stats_follow_the_request() {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu?x=1")]);
    let mut stream = stream(config());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
    let field = |host: &FakeHost, name: &str| {
        host.properties.get(&format!("apim.{name}")).map(|value| String::from_utf8(value.clone()).unwrap())
    };
    assert_eq!(field(&host, "api_name").as_deref(), Some("P"));
    assert_eq!(field(&host, "api_context").as_deref(), Some("/p/1"));
    assert_eq!(field(&host, "api_resource").as_deref(), Some("/menu"));
    assert_eq!(field(&host, "original_path").as_deref(), Some("/p/1/menu?x=1"));
    assert_eq!(field(&host, "error_code"), None);
    assert!(host.counters.contains(&"apim.api.P.version.1.allowed".to_string()));
    // The upstream failed: the fault's fields, and the refusal counted at the transport level.
    host.response.insert(":status".into(), b"503".to_vec());
    host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Answered);
    assert_eq!(field(&host, "error_code").as_deref(), Some("101503"));
    assert_eq!(field(&host, "error_type").as_deref(), Some("TARGET_CONNECTIVITY"));
    assert_eq!(field(&host, "level").as_deref(), Some("transport"));
    assert_eq!(field(&host, "target_response_code").as_deref(), Some("-1"));
    assert!(host.counters.contains(&"apim.api.P.version.1.refused.code.101503.level.transport".to_string()));
}

#[test]
fn a_client_copy_of_the_backend_jwt_header_is_removed_in_any_spelling() {
    let json = r#"{"backend_jwt": {"algorithm": "none", "header": "X-Backend-JWT"},
        "apis":[{"name":"P","context":"/p","version":"1","security":[],
        "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#;
    let config = Rc::new(Config::from_json(json.as_bytes()).unwrap());
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("x_backend_jwt", "forged")]);
    let mut stream = stream(config);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
    assert!(!host.request.contains_key("x_backend_jwt"));
    assert!(!host.request.contains_key("x-backend-jwt"), "an open resource gets no backend JWT");
}

#[test]
fn as_one_struct_the_access_log_fields_are_one_property_replaced_whole() {
    let json = r#"{"observability": {"access_log_encoding": "struct"},
        "apis":[{"name":"P","context":"/p","version":"1","endpoints":{"production":"backend"},
        "resources":[{"method":"GET","path":"/menu","security":[]},{"method":"GET","path":"/orders"}]}]}"#;
    let config = Rc::new(Config::from_json(json.as_bytes()).unwrap());
    let fields = |host: &FakeHost| {
        assert_eq!(host.properties.keys().filter(|name| name.starts_with("apim")).count(), 1, "one property");
        crate::observe::decode_struct(&host.properties[crate::observe::STRUCT_PROPERTY])
    };

    // Forwarded: the route's fields at once, the backend's status added in the response phase.
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu?x=1")]);
    let mut filter = stream(Rc::clone(&config));
    assert_eq!(filter.on_request_headers(&mut host, true), Flow::Continue);
    let sent = fields(&host);
    assert_eq!(sent["api_name"], "P");
    assert_eq!(sent["api_context"], "/p/1");
    assert_eq!(sent["api_resource"], "/menu");
    assert_eq!(sent["original_path"], "/p/1/menu?x=1");
    assert!(!sent.contains_key("target_response_code"));
    host.response.insert(":status".into(), b"404".to_vec());
    assert_eq!(filter.on_response_headers(&mut host), Flow::Continue);
    let sent = fields(&host);
    assert_eq!(sent["target_response_code"], "404");
    assert_eq!(sent["api_name"], "P", "the route's fields stay");

    // The upstream failed: WSO2's -1 replaces the status, with the fault's fields.
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    let mut filter = stream(Rc::clone(&config));
    assert_eq!(filter.on_request_headers(&mut host, true), Flow::Continue);
    host.response.insert(":status".into(), b"503".to_vec());
    host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
    assert_eq!(filter.on_response_headers(&mut host), Flow::Answered);
    host.properties.remove("response.flags");
    let sent = fields(&host);
    assert_eq!(sent["error_code"], "101503");
    assert_eq!(sent["level"], "transport");
    assert_eq!(sent["target_response_code"], "-1");
    assert_eq!(sent["api_resource"], "/menu");

    // Refused before any backend: the fault's fields with the route's.
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/orders")]);
    let mut filter = stream(config);
    assert_eq!(filter.on_request_headers(&mut host, true), Flow::Answered);
    let sent = fields(&host);
    assert_eq!(sent["error_code"], "900902");
    assert_eq!(sent["api_resource"], "/orders");
    assert_eq!(sent["target_response_code"], "-1");
}

mod analytics_audit;
mod api_key_managers;
mod api_product_audit;
mod blocking_audit;
mod calls;
mod claims_model;
mod configs_that_load;
mod cors;
mod cors_model;
mod cp_live_model;
mod credential_life_model;
mod debug_output;
mod event_streams;
mod fault_model;
mod gateways;
mod grpc;
mod hostile_inputs;
mod hostile_keys;
mod introspection_audit;
mod introspection_model;
mod jwt_api_key_model;
mod jwt_api_keys;
mod jwt_audit;
mod key_manager_audit;
mod key_type_endpoints;
mod model_cp;
mod observability;
mod observe_model;
mod outages;
mod query_credentials;
mod rate_limit_headers;
mod reload;
mod reload_model;
mod routing_model;
mod scope_audit;
mod seed_sweep;
mod streams_model;
mod tenant_audit;
mod throttle_audit;
mod throttle_fixes;
mod throttle_model;
mod token_life_model;
mod trailers;
mod upstream_audit;
mod websocket_audit;
mod websocket_cp_audit;
mod websocket_frames;
mod websocket_query_token;
mod workers_model;
