//! A seeded audit of WebSocket APIs (API-M's apiType WS) against WSO2 API Manager 4.x's gateway,
//! at the handshake and per frame: connections opened with good, bad, expired, revoked and
//! unsubscribed JWTs, frames of every kind in both directions over a shared quota, the clock
//! crossing `exp` and its skew, and tokens revoked through the control plane's `/revokedjwt`
//! while their connections are open. Each outcome is compared with an independent model written
//! from the table below (never the filter's functions). Seed: `WS_AUDIT_SEED` (printed on
//! failure).
//!
//! The audit (API-M: wso2/carbon-apimgt, gateway module `org.wso2.carbon.apimgt.gateway`, at
//! commits 6385030e (`inbound/websocket/request/RequestProcessor.java`), 5b896983
//! (`.../response/ResponseProcessor.java`), e22043e2 (`.../utils/OAuthAuthenticator.java`),
//! 00208c1e (`.../utils/InboundWebsocketProcessorUtil.java`), 04c13c15
//! (`InboundWebSocketProcessor.java`, `handlers/WebsocketHandler.java`); `JWTValidator
//! .authenticateForWebSocket`; `handlers/streaming/websocket/WebSocketApiConstants`):
//!
//! | decision | API-M 4.x | the filter | verdict |
//! |---|---|---|---|
//! | handshake, no credential | `validateOAuthHeader` false: handshake error `API_AUTH_ERROR` (HTTP 401) | 900902, 401 | same class (code: seed 002) |
//! | handshake, bad / expired / revoked JWT | `APISecurityException` → handshake error 401 | 900901, 401 (apim mode) | same |
//! | token in `access_token` query | taken when no `Authorization` (`validateOAuthHeader`), removed from the URI (`removeTokenFromQuery`) | same (control-plane WS APIs; websocket_query_token.rs) | same |
//! | handshake, unsubscribed | `authenticateForWebSocket` → subscription validation fails, 403 | 900908, 403 | same |
//! | handshake, throttled | the handshake is not counted (`doThrottle` runs per frame only) | not counted | same |
//! | handshake, blocked | `validateDenyPolicies` at the handshake: refused | 900805 (`plan_frames`) | same (blocking_audit.rs) |
//! | client frame over a quota | `doThrottle` (API key with API tier, subscription, application): text frame `Error code: 4003/4008 ...`, connection kept | dropped, notice with the backend's next bytes, `apim.fault.4008` | documented (a filter cannot write to the client) |
//! | backend frame over a quota | `ResponseProcessor.doThrottle`: notice in its place | same | same |
//! | control frames | ping/pong/close written through uncounted (`WebsocketHandler.write`) | pass, uncounted | same |
//! | fragmented message | each frame a `WebSocketFrame`, each counted | each frame counted; once one is dropped the rest of its message goes with it (each counted as a drop) | same count |
//! | client frame after `exp` (+ skew) | `RequestProcessor` → `authenticateToken` per frame: close 4001 | bytes dropped, stream reset, `apim.fault.900903` | documented (Envoy cannot send a close frame) |
//! | client ping / pong / close after `exp` or revocation | `WebsocketInboundHandler.channelRead` (389d4e22, lines 218-225): `CloseWebSocketFrame`, `PingWebSocketFrame`, `PongWebSocketFrame` go to `fireChannelRead` before `handleRequest`, never re-authenticated | was: any client chunk ended the connection; now a chunk of control frames alone passes, its first data frame ends it (counted or uncounted API alike) | FIXED |
//! | client frame after the JWT is revoked | `authenticateForWebSocket`: `RevokedJWTDataHolder` → `APISecurityException` → close 4001 (`getFrameErrorDTO(..., true)`) | was: forwarded for the connection's life; now reset, `apim.fault.900901` | FIXED (81482f1) |
//! | backend frame after expiry / revocation | `ResponseProcessor`: throttled only, never re-authenticated | passes | same |
//! | client frame once a blocking condition matches | `validateDenyPolicies` per frame: close 4006 (`BLOCKED_REQUEST`, close=true) | reset, `apim.fault.900805` (blocking_audit.rs) | FIXED (99c4b11) |
//! | client frame once the subscription is blocked or removed | `validateSubscriptionsForWS` per frame: close 4001 | reset, 900907 / 900909 / 900908 (websocket_cp_audit.rs) | FIXED |
//! | config reload mid-connection | each frame re-validates the subscription by the API's context and version from the in-memory store (`JWTValidator.authenticateForWebSocket`; at 389d4e22 there is no `setLatestElectedAPI`): an API removed is forbidden (close 4001), and `doThrottle` publishes the tiers of that frame's validation | the stream keeps the configuration and frame plan it started with; a control plane's API removed ends it with its subscription (websocket_cp_audit.rs) | tiers: differs, not fixed (listed) |
//! | backend answers other than 101 | no connection | the client's bytes are a body, never cut or counted as frames | same |

use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use crate::host::fuzz::Rng;
use crate::host::Direction::{Request, Response};
use crate::stream::background;
use crate::websocket;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const START: u64 = 1_800_000_000;
const SKEW: u64 = 30;
/// The API's tier: frames an hour, across its connections.
const QUOTA: u64 = 30;
const SEEDS: u64 = 16;
const STEPS: usize = 70;
const NOTICE: &str = "Error code: 4008 reason: Websocket frame throttled out";
/// Control frames' opcodes (RFC 6455, written here).
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const CLOSE: u8 = 0x8;

fn config() -> Config {
    let key = jwk("ed25519.pem", Algorithm::EdDSA, "ed");
    let json = json!({
        "key_managers": [{"name": "km", "issuer": "https://km", "clock_skew_s": SKEW, "algorithms": ["EdDSA"],
            "jwks": {"keys": [key]}}],
        "apis": [{"name": "Chat", "context": "/chat", "version": "1", "policy": "Lim", "count_websocket_frames": true,
            "endpoints": {"production": "ws"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "Talk", "context": "/talk", "version": "1", "endpoints": {"production": "ws"},
            "resources": [{"method": "GET", "path": "/*"}]}],
        "policies": {"Lim": {"requests": QUOTA, "per": "hour"}},
        "applications": [
            {"id": "app-1", "name": "App", "owner": "alice", "client_ids": [{"id": "c1", "key_manager": "km"}]},
            {"id": "app-2", "name": "Other", "owner": "bob", "client_ids": [{"id": "c2", "key_manager": "km"}]}],
        "subscriptions": [{"application": "app-1", "api": "Chat:1"}, {"application": "app-1", "api": "Talk:1"}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5}
    });
    Config::from_json(json.to_string().as_bytes()).unwrap()
}

/// A token as the model knows it.
#[derive(Clone)]
struct Tok {
    text: String,
    jti: String,
    exp: u64,
    subscribed: bool,
}

/// One open connection.
struct Conn {
    stream: Stream,
    token: Tok,
    /// The backend answered 101 (else the client's bytes are a request body).
    upgraded: bool,
    ended: bool,
    /// To `Talk`, whose frames are not counted (followed only for the token's lapse).
    uncounted: bool,
    /// Notices owed to the client.
    pending: usize,
}

struct World {
    now: u64,
    /// Frames the API's tier took this hour.
    used: u64,
    /// `/revokedjwt` as listed, and as last loaded.
    listed: Vec<String>,
    loaded: BTreeSet<String>,
    issued: u32,
}

impl World {
    fn answer(&mut self, path: &str) -> Answer {
        let resource = path.trim_start_matches("/internal/data/v1/").split('?').next().unwrap_or_default();
        let body = match resource {
            "revokedjwt" => {
                self.loaded = self.listed.iter().cloned().collect();
                let list: Vec<Value> = self
                    .listed
                    .iter()
                    .map(|name| json!({"jwt_signature": name, "expiry_time": START + 86_400}))
                    .collect();
                Value::Array(list).to_string()
            }
            "block" => r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],"ip":[]}"#.into(),
            _ => r#"{"count":0,"list":[],"pagination":null}"#.into(),
        };
        Answer::Http { status: 200, body: body.into_bytes() }
    }

    fn token(&mut self, rng: &mut Rng, subscribed: bool) -> Tok {
        self.issued += 1;
        let exp = self.now + *rng.pick(&[0u64, 1, 20, 40, 90, 300, 3_000]);
        let jti = format!("t{}", self.issued);
        let client = if subscribed { "c1" } else { "c2" };
        let claims = json!({"iss": "https://km", "exp": exp, "client_id": client, "sub": "alice", "jti": jti});
        let text = sign_raw(r#"{"alg":"EdDSA","kid":"ed"}"#, &claims.to_string(), "ed25519.pem", Algorithm::EdDSA);
        Tok { text, jti, exp, subscribed }
    }

    fn expired(&self, token: &Tok) -> bool {
        self.now > token.exp + SKEW
    }
}

fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9, 4, 1, 7];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
    frame
}

fn backend_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first, payload.len() as u8];
    frame.extend_from_slice(payload);
    frame
}

/// A message as sent: its frames, each `(bytes, is data)`.
fn message(
    rng: &mut Rng,
    frame: fn(u8, &[u8]) -> Vec<u8>,
    tally: &mut BTreeMap<&'static str, usize>,
) -> Vec<(Vec<u8>, bool)> {
    let payload = vec![b'x'; rng.below(20)];
    match rng.below(10) {
        0..=3 => vec![(frame(0x81, &payload), true)],
        4 => vec![(frame(0x82, &payload), true)],
        5 | 6 => {
            *tally.entry("fragmented message").or_default() += 1;
            let mut frames = vec![(frame(0x01, &payload), true)];
            for _ in 0..rng.below(2) {
                frames.push((frame(0x00, &payload), true));
            }
            if rng.chance(2) {
                frames.push((frame(0x80 | PING, b"p"), false));
            }
            frames.push((frame(0x80, &payload), true));
            frames
        }
        7 => vec![(frame(0x80 | PING, &payload), false)],
        8 => vec![(frame(0x80 | PONG, &payload), false)],
        _ => vec![(frame(0x80 | CLOSE, &[3, 232]), false)],
    }
}

/// The model of one chunk's frames through the API's tier: what passes (a dropped backend frame
/// replaced by the notice), and the drops. A message whose frame was dropped loses its later
/// fragments, each a drop; control frames pass uncounted.
fn model_frames(world: &mut World, messages: &[Vec<(Vec<u8>, bool)>], notice: Option<&[u8]>) -> (Vec<u8>, usize) {
    let (mut out, mut drops) = (Vec::new(), 0);
    for message in messages {
        let mut dropping = false;
        for (bytes, data) in message {
            if !data {
                out.extend_from_slice(bytes);
            } else if !dropping && world.used < QUOTA {
                world.used += 1;
                out.extend_from_slice(bytes);
            } else {
                dropping = true;
                drops += 1;
                if let Some(notice) = notice {
                    out.extend_from_slice(notice);
                }
            }
        }
    }
    (out, drops)
}

fn body(stream: &mut Stream, host: &mut FakeHost, direction: crate::host::Direction, bytes: &[u8]) -> Vec<u8> {
    host.bodies[direction as usize] = bytes.to_vec();
    let flow = match direction {
        Request => stream.on_request_body(host, bytes.len(), false),
        Response => stream.on_response_body(host, bytes.len(), false),
    };
    assert_eq!(flow, Flow::Continue, "a frame never waits");
    host.bodies[direction as usize].clone()
}

fn tick(host: &mut FakeHost, config: &Config, worker: &RefCell<Worker>, world: &mut World) -> Vec<String> {
    host.now = world.now;
    super::gateways::tick_answering(host, config, worker, |_, path| world.answer(path))
}

/// One seed's run; each decision class seen is tallied.
fn run(seed: u64, tally: &mut BTreeMap<&'static str, usize>) {
    let mut rng = Rng::new(seed);
    let mut config = config();
    let mut host = FakeHost { now: START, ..Default::default() };
    background::prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut world = World { now: START, used: 0, listed: Vec::new(), loaded: BTreeSet::new(), issued: 0 };
    let asked = tick(&mut host, &config, &worker, &mut world);
    assert!(asked.iter().any(|path| path.ends_with("revokedjwt")), "{asked:?}");
    let notice = websocket::server_text_frame(NOTICE);
    let mut conns: Vec<Conn> = Vec::new();
    let mut tokens: Vec<Tok> = Vec::new();
    for step in 0..STEPS {
        host.counted.clear();
        host.closed = false;
        host.now = world.now;
        let at = format!("seed {seed} step {step} t+{}", world.now - START);
        match rng.below(100) {
            // A handshake.
            0..=19 => {
                let kind = rng.below(8);
                let token = match kind {
                    0..=3 if !tokens.is_empty() && rng.chance(2) => rng.pick(&tokens).clone(),
                    _ => {
                        let subscribed = !rng.chance(6);
                        let token = world.token(&mut rng, subscribed);
                        tokens.push(token.clone());
                        token
                    }
                };
                // (A token in `access_token`: websocket_query_token.rs; the control plane's view
                // serves this configuration's own APIs as written, without it.)
                let in_query = false;
                let uncounted = rng.chance(4);
                let mut path = if uncounted { "/talk/1/room" } else { "/chat/1/room" }.to_string();
                host.request = [(":method", "GET"), ("connection", "Upgrade"), ("upgrade", "websocket")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect();
                let credential = match kind {
                    4 => None,
                    // Its signature broken.
                    5 => Some(format!("{}AAAA", &token.text[..token.text.len() - 4])),
                    _ => Some(token.text.clone()),
                };
                match (&credential, in_query) {
                    (Some(text), true) => path.push_str(&format!("?x=1&access_token={text}")),
                    (Some(text), false) => {
                        host.request.insert("authorization".into(), format!("Bearer {text}").into_bytes());
                    }
                    (None, _) => {}
                }
                host.request.insert(":path".into(), path.into_bytes());
                host.sent = None;
                let dispatched = host.dispatched.len();
                let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
                let flow = stream.on_request_headers(&mut host, false);
                assert_eq!(host.dispatched.len(), dispatched, "{at}: the handshake made no call");
                // The model: API-M's handshake answers (apim mode codes).
                let expected = match kind {
                    4 => Some((900902, 401, "handshake: no credential")),
                    5 => Some((900901, 401, "handshake: bad token")),
                    _ if world.expired(&token) => Some((900901, 401, "handshake: expired")),
                    _ if world.loaded.contains(&token.jti) => Some((900901, 401, "handshake: revoked")),
                    _ if !token.subscribed => Some((900908, 403, "handshake: unsubscribed")),
                    _ => None,
                };
                match expected {
                    Some((code, status, class)) => {
                        assert_eq!(flow, Flow::Answered, "{at}: {class}");
                        assert_eq!(host.sent.as_ref().map(|sent| sent.0), Some(status), "{at}: {class}");
                        assert_eq!(host.counted, vec![code], "{at}: {class} {:?}", host.counters);
                        *tally.entry(class).or_default() += 1;
                    }
                    None => {
                        assert_eq!((flow, host.sent.is_none()), (Flow::Continue, true), "{at}: forwarded");
                        assert!(host.counted.is_empty(), "{at}: the handshake is not counted");
                        assert!(!host.req(":path").contains("access_token"), "{at}: the query token stays here");
                        *tally
                            .entry(if in_query { "handshake: query token" } else { "handshake: header" })
                            .or_default() += 1;
                        let status = if rng.chance(8) { 403 } else { 101 };
                        host.response.clear();
                        host.response.insert(":status".into(), status.to_string().into_bytes());
                        assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
                        if conns.len() >= 4 {
                            conns.remove(rng.below(conns.len()));
                        }
                        let upgraded = status == 101;
                        conns.push(Conn { stream, token, upgraded, ended: false, uncounted, pending: 0 });
                    }
                }
            }
            // The client's chunk on an open connection.
            20..=54 if !conns.is_empty() => {
                let pick = rng.below(conns.len());
                let conn = &mut conns[pick];
                let messages: Vec<_> = (0..1 + rng.below(3)).map(|_| message(&mut rng, client_frame, tally)).collect();
                let chunk: Vec<u8> = messages.iter().flatten().flat_map(|(bytes, _)| bytes.clone()).collect();
                let out = body(&mut conn.stream, &mut host, Request, &chunk);
                // API-M re-checks data frames only: control frames alone pass a lapsed connection.
                let data = messages.iter().flatten().any(|(_, data)| *data);
                let lapsed = world.expired(&conn.token) || world.loaded.contains(&conn.token.jti);
                let (expected, counted, closed, class) = if !conn.upgraded {
                    (chunk.clone(), vec![], false, "client: a body (no 101)")
                } else if conn.ended {
                    (vec![], vec![], false, "client: after the end")
                } else if lapsed && !data {
                    (chunk.clone(), vec![], false, "client: control frames pass the lapsed token")
                } else if world.expired(&conn.token) {
                    conn.ended = true;
                    (vec![], vec![900903], true, "client: expired mid-connection")
                } else if world.loaded.contains(&conn.token.jti) {
                    conn.ended = true;
                    (vec![], vec![900901], true, "client: revoked mid-connection")
                } else if conn.uncounted {
                    (chunk.clone(), vec![], false, "client: uncounted frames pass")
                } else {
                    let (out, drops) = model_frames(&mut world, &messages, None);
                    conn.pending =
                        (conn.pending + drops.min(websocket::MAX_PENDING_NOTICES)).min(websocket::MAX_PENDING_NOTICES);
                    let class = if drops > 0 { "client: frame over the quota" } else { "client: frames pass" };
                    (out, vec![4008; drops], false, class)
                };
                assert_eq!(out, expected, "{at}: {class}");
                assert_eq!(host.counted, counted, "{at}: {class}");
                assert_eq!(host.closed, closed, "{at}: {class}");
                *tally.entry(class).or_default() += 1;
            }
            // The backend's chunk on an open connection.
            55..=79 if conns.iter().any(|conn| !conn.ended) => {
                let open: Vec<usize> = (0..conns.len()).filter(|at| !conns[*at].ended).collect();
                let conn = &mut conns[*rng.pick(&open)];
                let messages: Vec<_> = (0..1 + rng.below(3))
                    .map(|_| message(&mut rng, backend_frame, tally))
                    .filter(|message| message.len() == 1 || !conn.upgraded)
                    .collect();
                let chunk: Vec<u8> = messages.iter().flatten().flat_map(|(bytes, _)| bytes.clone()).collect();
                let out = body(&mut conn.stream, &mut host, Response, &chunk);
                let (expected, counted, class) = if !conn.upgraded {
                    (chunk.clone(), vec![], "backend: a body (no 101)")
                } else if conn.uncounted {
                    (chunk.clone(), vec![], "backend: uncounted frames pass")
                } else {
                    let owed = notice.repeat(conn.pending);
                    conn.pending = 0;
                    let (out, drops) = model_frames(&mut world, &messages, Some(&notice));
                    let lapsed = world.expired(&conn.token) || world.loaded.contains(&conn.token.jti);
                    if !owed.is_empty() {
                        *tally.entry("backend: carries the client's notices").or_default() += 1;
                    }
                    let class = match drops {
                        0 if lapsed => "backend: passes after the token expired or was revoked",
                        0 => "backend: frames pass",
                        _ => "backend: frame over the quota",
                    };
                    ([owed, out].concat(), vec![4008; drops], class)
                };
                assert_eq!(out, expected, "{at}: {class}");
                assert_eq!(host.counted, counted, "{at}: {class}");
                assert!(!host.closed, "{at}: the backend's frames never end the connection");
                *tally.entry(class).or_default() += 1;
            }
            // A token revoked through the control plane, loaded at its next refresh.
            80..=87 if !tokens.is_empty() => {
                let open: Vec<&Tok> = conns.iter().filter(|conn| !conn.ended).map(|conn| &conn.token).collect();
                let token = if !open.is_empty() && rng.chance(2) {
                    (*rng.pick(&open)).clone()
                } else {
                    rng.pick(&tokens).clone()
                };
                world.listed.push(token.jti.clone());
                let mut loaded = false;
                for _ in 0..8 {
                    world.now += 1;
                    if tick(&mut host, &config, &worker, &mut world).iter().any(|path| path.ends_with("revokedjwt")) {
                        loaded = true;
                        break;
                    }
                }
                assert!(loaded, "{at}: a load within the refresh");
            }
            // The clock moves (within the quota's hour).
            _ => {
                let by = *rng.pick(&[1u64, 5, SKEW, SKEW + 1, 60, 200]);
                if world.now + by < START + 3_000 {
                    world.now += by;
                    tick(&mut host, &config, &worker, &mut world);
                }
            }
        }
    }
}

#[test]
fn websocket_handshakes_and_frames_agree_with_api_m() {
    let seeds: Vec<u64> = match std::env::var("WS_AUDIT_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (0..SEEDS).collect(),
    };
    let mut tally = BTreeMap::new();
    for seed in &seeds {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(*seed, &mut tally)));
        if let Err(panic) = outcome {
            eprintln!("websocket audit failed: WS_AUDIT_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
    if seeds.len() as u64 == SEEDS {
        for class in [
            "handshake: no credential",
            "handshake: bad token",
            "handshake: expired",
            "handshake: revoked",
            "handshake: unsubscribed",
            "handshake: header",
            "client: a body (no 101)",
            "client: after the end",
            "client: expired mid-connection",
            "client: revoked mid-connection",
            "client: control frames pass the lapsed token",
            "client: uncounted frames pass",
            "client: frame over the quota",
            "client: frames pass",
            "backend: a body (no 101)",
            "backend: uncounted frames pass",
            "backend: frames pass",
            "backend: passes after the token expired or was revoked",
            "backend: carries the client's notices",
            "backend: frame over the quota",
            "fragmented message",
        ] {
            assert!(tally.get(class).copied().unwrap_or(0) > 0, "never decided: {class} ({tally:?})");
        }
    }
}
