//! A seeded audit of an open WebSocket connection to a control plane's WebSocket API while API-M's
//! directory changes under it: its subscription blocked, unblocked, put on hold, rejected,
//! removed and made again, its application removed and made again, between full loads, and the
//! client's data frames in between. Each frame's outcome is compared with an independent model
//! of API-M's answer (the table below), applied to what the filter's full loads brought (the
//! filter reads the control plane's data by polling, API-M's gateway by events). Seed:
//! `WS_CP_AUDIT_SEED` (printed on failure).
//!
//! API-M: wso2/carbon-apimgt at 389d4e225143445c50f913257ae9c2e21914a640, gateway module
//! `components/apimgt/org.wso2.carbon.apimgt.gateway/src/main/java/org/wso2/carbon/apimgt/gateway`
//! (`G`) and key manager module `components/apimgt/org.wso2.carbon.apimgt.keymgt/src/main/java/
//! org/wso2/carbon/apimgt/keymgt` (`K`):
//!
//! | decision | API-M 4.x | the filter | verdict |
//! |---|---|---|---|
//! | each client data frame re-validates the subscription | `G/inbound/websocket/request/RequestProcessor.handleRequest` → `InboundWebsocketProcessorUtil.authenticateToken` → (JWT) `G/handlers/security/jwt/JWTValidator.authenticateForWebSocket` → `validateSubscriptionsForWS` → `APIKeyValidator.validateSubscription` → `K/handlers/AbstractKeyValidationHandler.validateSubscription` (the in-memory `SubscriptionDataStore`, no cache); (opaque) `getApiKeyDataForWSClient` per frame | the control plane's subscription read again on each client chunk (`Stream::subscription_lapsed`) | same |
//! | subscription BLOCKED | `validate`: `API_BLOCKED`, not authorized → `APISecurityException` → frame error 4001, close | chunk dropped, reset, `apim.fault.900907` | same (after the load that brings it) |
//! | PROD_ONLY_BLOCKED | blocked for a production key only | same | same |
//! | ON_HOLD / REJECTED | `SUBSCRIPTION_INACTIVE`, close 4001 | `apim.fault.900909`, reset | same |
//! | TIER_UPDATE_PENDING / UNBLOCKED again | authorized: the frame goes on | passes | same |
//! | subscription or application removed | `getSubscriptionById` / `getApplicationById` miss → internal API → none → `API_AUTH_RESOURCE_FORBIDDEN`, close 4001 | `apim.fault.900908`, reset, once two full loads in turn left it out (the first may have fetched its list before a subscription made since the handshake) | differs in latency (one more load), not in answer |
//! | removed, then made again before the second load | authorized again | passes | same |
//! | API removed, or its policy changed | `getApiByContextAndVersion` miss → forbidden, close 4001; `doThrottle` reads the tiers of that frame's validation | its subscription gone with it: as removed; a changed tier is not re-read (the handshake's plan) | tier: differs, not fixed (README) |
//! | control frames | never re-validated (`G/handlers/WebsocketInboundHandler.channelRead`, lines 218-225) | pass (websocket_audit.rs) | same |

use super::*;
use crate::host::Direction;
use crate::stream::background;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SECRET: &str = "ws-cp-audit-hmac-secret-0123456789abcdef";
const START: u64 = 1_800_000_000;
const SEEDS: u64 = 24;
const STEPS: usize = 60;
const STATES: [&str; 6] = ["UNBLOCKED", "BLOCKED", "PROD_ONLY_BLOCKED", "ON_HOLD", "REJECTED", "TIER_UPDATE_PENDING"];

/// API-M's directory: the application (with its key and subscription) and the subscription's state.
#[derive(Clone, Debug)]
struct Apim {
    app: bool,
    sub: Option<&'static str>,
    production: bool,
}

impl Apim {
    fn answer(&self, path: &str) -> Answer {
        let list = |items: Vec<Value>| json!({"count": items.len(), "list": items, "pagination": null}).to_string();
        let resource = path.trim_start_matches("/internal/data/v1/").split('?').next().unwrap_or_default();
        let body = match resource {
            "apis" => list(vec![json!({"uuid": "ws-1", "apiId": 1, "provider": "admin", "name": "Chat",
                "version": "1.0.0", "context": "/chat/1.0.0", "policy": null, "apiType": "WS",
                "status": "PUBLISHED", "organization": "carbon.super", "isDefaultVersion": false,
                "urlMappings": [{"authScheme": "Any", "throttlingPolicy": "Unlimited", "httpMethod": "SUBSCRIBE",
                    "urlPattern": "/*", "scopes": []}]})]),
            "applications" if self.app => list(vec![json!({"uuid": "app-1", "id": 1, "name": "App",
                "subName": "alice", "policy": "Unlimited", "tokenType": "JWT", "groupIds": [], "attributes": {},
                "organization": "carbon.super"})]),
            "application-key-mappings" if self.app => list(vec![json!({"applicationId": 1,
                "applicationUUID": "app-1", "consumerKey": "c1",
                "keyType": if self.production { "PRODUCTION" } else { "SANDBOX" }, "keyManager": "km"})]),
            "subscriptions" => list(
                self.sub
                    .filter(|_| self.app)
                    .map(|state| {
                        json!({"subscriptionUUID": "s-1", "subscriptionId": 1, "policyId": "Unlimited",
                            "apiUUID": "ws-1", "apiId": 1, "applicationUUID": "app-1", "appId": 1,
                            "subscriptionState": state})
                    })
                    .into_iter()
                    .collect(),
            ),
            "block" => r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],"ip":[]}"#.into(),
            "revokedjwt" => "[]".into(),
            _ => list(Vec::new()),
        };
        Answer::Http { status: 200, body: body.into_bytes() }
    }
}

fn config() -> Config {
    Config::from_json(config_json().as_bytes()).unwrap()
}

fn config_json() -> String {
    json!({
        "key_managers": [{"name": "km", "issuer": "https://km", "algorithms": ["HS256"], "hmac_secret": SECRET}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5,
            "event_apis": "count_connections", "endpoint_template": {"production": "live", "sandbox": "sandbox"}}
    })
    .to_string()
}

fn token() -> String {
    let claims = json!({"iss": "https://km", "exp": START + 86_400, "client_id": "c1", "sub": "alice", "jti": "t1"});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// A masked client text frame.
fn text_frame() -> Vec<u8> {
    let key = [9, 4, 1, 7];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&key);
    frame.extend(b"hi".iter().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
    frame
}

/// A handshake that the loaded data lets through, answered 101.
fn handshake(host: &mut FakeHost, config: &Rc<Config>, worker: &Rc<RefCell<Worker>>, at: &str) -> Stream {
    handshake_with(host, config, worker, at, ("authorization", format!("Bearer {}", token())))
}

fn handshake_with(
    host: &mut FakeHost,
    config: &Rc<Config>,
    worker: &Rc<RefCell<Worker>>,
    at: &str,
    (header, credential): (&str, String),
) -> Stream {
    host.request =
        [(":method", "GET"), (":path", "/chat/1.0.0/room"), ("connection", "Upgrade"), ("upgrade", "websocket")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
    host.request.insert(header.into(), credential.into_bytes());
    host.sent = None;
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    let flow = stream.on_request_headers(host, false);
    assert_eq!((flow, &host.sent, &host.counted), (Flow::Continue, &None, &vec![]), "{at}: handshake");
    host.response.clear();
    host.response.insert(":status".into(), b"101".to_vec());
    assert_eq!(stream.on_response_headers(host), Flow::Continue);
    stream
}

/// An open connection, and when (the number of the load) the model first found its subscription
/// missing from the loaded data.
struct Conn {
    stream: Stream,
    ended: bool,
    missing_since: Option<u32>,
}

fn run(seed: u64, tally: &mut BTreeMap<&'static str, usize>) {
    let mut rng = crate::host::fuzz::Rng::new(seed);
    let mut config = config();
    let mut host = FakeHost { now: START, ..Default::default() };
    background::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut apim = Apim { app: true, sub: Some("UNBLOCKED"), production: rng.chance(2) };
    // What the last full load brought, and how many loads there were.
    let mut seen = apim.clone();
    let mut loads = 0u32;
    let load = |host: &mut FakeHost, apim: &Apim, seen: &mut Apim, loads: &mut u32| {
        host.now += 5;
        let asked = super::gateways::tick_answering(host, &config, &worker, |_, path| apim.answer(path));
        assert!(asked.iter().any(|path| path.contains("subscriptions")), "a full load: {asked:?}");
        *seen = apim.clone();
        *loads += 1;
    };
    load(&mut host, &apim, &mut seen, &mut loads);
    let mut conn: Option<Conn> = None;
    for step in 0..STEPS {
        let at = format!("seed {seed} step {step}");
        host.counted.clear();
        host.closed = false;
        match rng.below(12) {
            // API-M's directory changes.
            0..=2 => match rng.below(8) {
                0 => apim.app = false,
                1 => apim.app = true,
                2 | 3 => apim.sub = None,
                _ => apim.sub = Some(*rng.pick(&STATES)),
            },
            3..=4 => load(&mut host, &apim, &mut seen, &mut loads),
            // A handshake, where the loaded data lets it through without a lookup.
            5..=7 if conn.as_ref().is_none_or(|conn| conn.ended) => {
                let usable = seen.app
                    && (matches!(seen.sub, Some("UNBLOCKED" | "TIER_UPDATE_PENDING"))
                        || (seen.sub == Some("PROD_ONLY_BLOCKED") && !seen.production));
                if !usable {
                    continue;
                }
                let stream = handshake(&mut host, &config, &worker, &at);
                conn = Some(Conn { stream, ended: false, missing_since: None });
                *tally.entry("handshake").or_default() += 1;
            }
            // The client's data frame.
            _ => {
                let Some(conn) = conn.as_mut() else { continue };
                let frame = text_frame();
                host.bodies[Direction::Request as usize] = frame.clone();
                let flow = conn.stream.on_request_body(&mut host, frame.len(), false);
                assert_eq!(flow, Flow::Continue, "{at}");
                let out = host.bodies[Direction::Request as usize].clone();
                // The model: API-M's answer to a frame, from the data the last load brought.
                let present = seen.app && seen.sub.is_some();
                if present {
                    conn.missing_since = None;
                }
                let (code, class) = if conn.ended {
                    (None, "after the end")
                } else if present {
                    match seen.sub {
                        Some("BLOCKED") => (Some(900907), "subscription blocked"),
                        Some("PROD_ONLY_BLOCKED") if seen.production => (Some(900907), "blocked for production"),
                        Some("PROD_ONLY_BLOCKED") => (None, "production blocked, a sandbox key"),
                        Some("ON_HOLD" | "REJECTED") => (Some(900909), "subscription inactive"),
                        _ => (None, "subscription active"),
                    }
                } else {
                    match conn.missing_since {
                        Some(first) if loads > first => {
                            (Some(900908), if seen.app { "subscription removed" } else { "application removed" })
                        }
                        Some(_) => (None, "missing from one load"),
                        None => {
                            conn.missing_since = Some(loads);
                            (None, "missing from one load")
                        }
                    }
                };
                let dropped = conn.ended || code.is_some();
                assert_eq!(out.is_empty(), dropped, "{at}: {class}");
                assert_eq!(host.counted, code.into_iter().collect::<Vec<_>>(), "{at}: {class}");
                assert_eq!(host.closed, code.is_some(), "{at}: {class}");
                conn.ended |= code.is_some();
                *tally.entry(class).or_default() += 1;
            }
        }
    }
}

#[test]
fn an_open_websocket_connection_follows_its_subscription_as_api_m_does() {
    let seeds: Vec<u64> = match std::env::var("WS_CP_AUDIT_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (0..SEEDS).collect(),
    };
    let mut tally = BTreeMap::new();
    for seed in &seeds {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(*seed, &mut tally)));
        if let Err(panic) = outcome {
            eprintln!("websocket control-plane audit failed: WS_CP_AUDIT_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
    if seeds.len() as u64 == SEEDS {
        for class in [
            "handshake",
            "after the end",
            "subscription blocked",
            "blocked for production",
            "production blocked, a sandbox key",
            "subscription inactive",
            "subscription active",
            "subscription removed",
            "application removed",
            "missing from one load",
        ] {
            assert!(tally.get(class).copied().unwrap_or(0) > 0, "never decided: {class} ({tally:?})");
        }
    }
}

/// A load whose `/subscriptions` failed kept the old list: it is not the second load to leave a
/// subscription out (one made while the first load fetched its list, and still there, ended the
/// connection, 900908), and between the two loads a client chunk does not look the subscription
/// up again in the shared data (it did, three reads a chunk). A chunk reads the clock once (it
/// read it three times on a connection whose frames are not counted).
#[test]
fn a_failed_load_ends_no_connection_and_a_missing_subscription_is_not_read_per_chunk() {
    let mut config = config();
    let mut host = FakeHost { now: START, ..Default::default() };
    background::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    // A full load; the resource `failing` answers 500.
    let load = |host: &mut FakeHost, apim: &Apim, failing: &str| {
        host.now += 5;
        super::gateways::tick_answering(host, &config, &worker, |_, path| {
            match path.trim_start_matches("/internal/data/v1/").split('?').next() == Some(failing) {
                true => Answer::Http { status: 500, body: Vec::new() },
                false => apim.answer(path),
            }
        });
    };
    // The client's data frame: whether it passed, and the shared-data reads it took.
    let frame = |host: &mut FakeHost, stream: &mut Stream| {
        host.counted.clear();
        host.bodies[Direction::Request as usize] = text_frame();
        let reads = host.shared_reads.get();
        host.clock_reads_left.set(Some(100));
        assert_eq!(stream.on_request_body(host, text_frame().len(), false), Flow::Continue);
        // One clock read a chunk (its expiry and its subscription): the frames count nothing.
        assert_eq!(host.clock_reads_left.replace(None), Some(99), "clock reads");
        let passed = !host.bodies[Direction::Request as usize].is_empty() && host.counted.is_empty();
        (passed, host.shared_reads.get() - reads)
    };
    let mut apim = Apim { app: true, sub: Some("UNBLOCKED"), production: true };
    load(&mut host, &apim, "");
    let mut stream = handshake(&mut host, &config, &worker, "start");
    let (passed, present_reads) = frame(&mut host, &mut stream);
    assert!(passed, "subscription active");
    // A load whose subscription list was fetched before the subscription was (made again).
    apim.sub = None;
    load(&mut host, &apim, "");
    apim.sub = Some("UNBLOCKED");
    assert!(frame(&mut host, &mut stream).0, "missing from one load");
    assert_eq!(frame(&mut host, &mut stream), (true, present_reads + 1), "missing: the load's time read, no lookup");
    load(&mut host, &apim, "subscriptions");
    assert_eq!(frame(&mut host, &mut stream), (true, present_reads + 1), "a failed load is no second load");
    assert!(!host.closed);
    load(&mut host, &apim, "");
    assert!(frame(&mut host, &mut stream).0, "the next full load brings it");
    // Removed: a load that fetched the subscriptions, whatever else failed, is the second.
    apim.sub = None;
    load(&mut host, &apim, "");
    assert!(frame(&mut host, &mut stream).0, "missing from one load");
    load(&mut host, &apim, "block");
    assert!(!frame(&mut host, &mut stream).0, "removed");
    assert_eq!((host.counted.clone(), host.closed), (vec![900908], true));
}

/// A JWT API key's connection: the key's claims name its subscription, and its handshake passes
/// on them where the gateway knows none (`authorize`, as API-M's `validateAPISubscription` reads
/// the key's `subscribedAPIs`). Its subscription gone from the control plane's loads ended it
/// (900908), though a new handshake with the key passes; blocked, it still ends it (900907), as
/// its handshake would refuse it.
#[test]
fn a_jwt_api_keys_connection_ends_with_its_subscription_blocked_not_gone() {
    use crate::auth::keys::testkeys::{jwk, sign_raw};
    let mut json: Value = serde_json::from_str(&config_json()).unwrap();
    json["api_key_jwt"] = json!({"keys": [jwk("rsa-b.pem", jsonwebtoken::Algorithm::RS256, "apikey-b")]});
    json["control_plane"]["security"] = json!(["oauth2", "api_key"]);
    let mut config = Config::from_json(json.to_string().as_bytes()).unwrap();
    let mut host = FakeHost { now: START, ..Default::default() };
    background::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let load = |host: &mut FakeHost, apim: &Apim| {
        host.now += 5;
        super::gateways::tick_answering(host, &config, &worker, |_, path| apim.answer(path));
    };
    let claims = json!({"iss": "https://apim", "sub": "alice", "keytype": "PRODUCTION", "token_type": "apiKey",
        "exp": START + 86_400, "application": {"uuid": "app-1", "name": "App", "owner": "alice", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": "Chat", "context": "/chat/1.0.0", "version": "1.0.0", "subscriptionTier": "Unlimited"}]});
    let key = sign_raw(
        r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#,
        &claims.to_string(),
        "rsa-b.pem",
        jsonwebtoken::Algorithm::RS256,
    );
    let frame = |host: &mut FakeHost, stream: &mut Stream| {
        host.counted.clear();
        host.bodies[Direction::Request as usize] = text_frame();
        assert_eq!(stream.on_request_body(host, text_frame().len(), false), Flow::Continue);
        (!host.bodies[Direction::Request as usize].is_empty(), host.counted.clone())
    };
    let mut apim = Apim { app: true, sub: Some("UNBLOCKED"), production: true };
    load(&mut host, &apim);
    let mut stream = handshake_with(&mut host, &config, &worker, "api key", ("apikey", key));
    assert_eq!(frame(&mut host, &mut stream), (true, vec![]), "subscription active");
    apim.sub = None;
    load(&mut host, &apim);
    assert_eq!(frame(&mut host, &mut stream), (true, vec![]), "gone from one load");
    load(&mut host, &apim);
    assert_eq!(frame(&mut host, &mut stream), (true, vec![]), "gone from two loads: the key names it");
    apim.sub = Some("BLOCKED");
    load(&mut host, &apim);
    assert_eq!(frame(&mut host, &mut stream), (false, vec![900907]), "blocked");
}
