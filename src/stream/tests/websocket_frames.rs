//! A WebSocket API whose frames are counted (`count_websocket_frames`), as API-M's gateway counts
//! a WebSocket API's: the handshake checked but not counted, every data frame in either direction
//! taking a request, a frame over the limit dropped and the client sent API-M's notice in its place.

use super::*;
use crate::websocket;

/// An open API with three requests an hour at the API level, its frames counted or not.
fn frames_config(count_frames: bool, extra: &str) -> Config {
    let json = format!(
        r#"{{"apis":[{{"name":"Chat","context":"/chat","version":"1","security":[],"policy":"Three",
            "count_websocket_frames":{count_frames},
            "endpoints":{{"production":"ws"}},"resources":[{{"method":"GET","path":"/*"}}]}}],
            "policies":{{"Three":{{"requests":3,"per":"hour"}}}}{extra}}}"#
    );
    Config::from_json(json.as_bytes()).unwrap()
}

/// A handshake on a fresh host at `now`, or on `host` when given (its shared data kept).
fn handshake(config: Config, host: Option<FakeHost>) -> (FakeHost, Stream, Flow) {
    let upgrade = [(":method", "GET"), (":path", "/chat/1/room"), ("connection", "Upgrade"), ("upgrade", "websocket")];
    let mut host = match host {
        Some(mut host) => {
            host.request = FakeHost::request(&upgrade).request;
            host.sent = None;
            host
        }
        None => FakeHost::request(&upgrade),
    };
    host.now = 7_200;
    let mut config = config;
    prepare_counters(&mut host, &mut config);
    let mut stream = stream(Rc::new(config));
    let flow = stream.on_request_headers(&mut host, false);
    (host, stream, flow)
}

fn client_frame(text: &str) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
    frame
}

/// Hands the stream a body chunk in `direction`; what goes on.
fn body(stream: &mut Stream, host: &mut FakeHost, direction: crate::host::Direction, bytes: &[u8]) -> Vec<u8> {
    host.bodies[direction as usize] = bytes.to_vec();
    let flow = match direction {
        crate::host::Direction::Request => stream.on_request_body(host, bytes.len(), false),
        crate::host::Direction::Response => stream.on_response_body(host, bytes.len(), false),
    };
    assert_eq!(flow, Flow::Continue, "a frame never waits");
    host.bodies[direction as usize].clone()
}

const NOTICE: &str = "Error code: 4008 reason: Websocket frame throttled out";

#[test]
fn frames_in_either_direction_count_and_one_over_the_limit_is_replaced_by_the_notice() {
    use crate::host::Direction::{Request, Response};
    let (mut host, mut stream, flow) = handshake(frames_config(true, ""), None);
    assert_eq!(flow, Flow::Continue, "the handshake is forwarded");
    host.response.insert(":status".into(), b"101".to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
    // Two client frames and one of the backend's: the three of the hour (the handshake took none).
    let two = [client_frame("a"), client_frame("b")].concat();
    assert_eq!(body(&mut stream, &mut host, Request, &two), two);
    let backend = [websocket::server_text_frame("one"), websocket::server_text_frame("two")].concat();
    let notice = websocket::server_text_frame(NOTICE);
    // The backend's second frame is over: the notice takes its place.
    let expected = [websocket::server_text_frame("one"), notice.clone()].concat();
    assert_eq!(body(&mut stream, &mut host, Response, &backend), expected);
    // A client's frame over the limit goes nowhere; its notice goes out with the backend's next bytes.
    assert_eq!(body(&mut stream, &mut host, Request, &client_frame("c")), Vec::<u8>::new());
    let ping = vec![0x89, 0];
    assert_eq!(body(&mut stream, &mut host, Response, &ping), [notice.clone(), ping.clone()].concat());
    assert_eq!(host.counted, vec![4008, 4008], "each dropped frame is counted as its fault");
    assert!(host.sent.is_none(), "no local reply on an upgraded connection");
    // Control frames pass over the limit; nothing more is owed to the client.
    assert_eq!(body(&mut stream, &mut host, Request, &[0x8A, 0x80, 0, 0, 0, 0]), vec![0x8A, 0x80, 0, 0, 0, 0]);
    assert_eq!(body(&mut stream, &mut host, Response, &ping), ping);

    // A new handshake is not counted: it is upgraded over the limit, and its frames are dropped.
    let (mut host, mut stream, flow) = handshake(frames_config(true, ""), Some(host));
    assert_eq!((flow, host.sent.is_none()), (Flow::Continue, true));
    assert_eq!(body(&mut stream, &mut host, Request, &client_frame("d")), Vec::<u8>::new());
}

/// A client flooding frames over its limit while the backend says nothing: the notices owed to it
/// wait in a bounded space, the drops all counted.
#[test]
fn the_notices_waiting_for_a_silent_backend_are_bounded() {
    use crate::host::Direction::{Request, Response};
    let (mut host, mut stream, _) = handshake(frames_config(true, ""), None);
    host.response.insert(":status".into(), b"101".to_vec());
    stream.on_response_headers(&mut host);
    let flood = client_frame("x").repeat(1_000);
    for _ in 0..3 {
        body(&mut stream, &mut host, Request, &flood);
    }
    assert_eq!(host.counted.len(), 3_000 - 3, "every frame over the limit is counted");
    let ping = vec![0x89, 0];
    let notice = websocket::server_text_frame(NOTICE);
    let sent = body(&mut stream, &mut host, Response, &ping);
    assert_eq!(sent, [notice.repeat(websocket::MAX_PENDING_NOTICES), ping.clone()].concat());
    assert_eq!(body(&mut stream, &mut host, Response, &ping), ping, "nothing more is owed");
}

/// A client that sends bytes while its handshake waits on a call (RFC 6455 forbids sending before
/// the server's answer): Envoy forwards them unread once the handshake goes on, so the frames read
/// from there may not start where the client's do. Nothing more from the client is forwarded; it
/// cannot make its frames be read out of step and pass uncounted.
#[test]
fn bytes_sent_before_a_waiting_handshake_is_answered_stop_the_client() {
    use crate::host::Direction::Request;
    let mut config = Config::from_json(SECURED.as_bytes()).unwrap();
    if let Some(api) = Rc::get_mut(&mut config.routes).and_then(|routes| routes.apis.first_mut()) {
        api.counts_websocket_frames = true;
    }
    let upgrade = [(":method", "GET"), (":path", "/p/1/menu"), ("connection", "Upgrade"), ("upgrade", "websocket")];
    let mut host = FakeHost::request(&upgrade);
    host.request.insert("authorization".into(), b"Bearer opaque-token-1".to_vec());
    host.now = 1_000;
    prepare_counters(&mut host, &mut config);
    let mut stream = stream(Rc::new(config));
    assert_eq!(stream.on_request_headers(&mut host, false), Flow::Waiting, "the token is introspected");
    // Half a header: a binary frame of 10 bytes, its mask still to come.
    host.bodies[Request as usize] = vec![0x82, 0x8A];
    assert_eq!(stream.on_request_body(&mut host, 2, false), Flow::Waiting);
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#;
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
    assert!(host.resumed && host.sent.is_none(), "the handshake goes on");
    host.response.insert(":status".into(), b"101".to_vec());
    stream.on_response_headers(&mut host);
    // Its mask reads as a header of a frame that never ends, and 10 bytes of payload follow:
    // read from here, the 150 frames after them would all be its payload.
    let mut rest = vec![0x82, 0x7F, 0x7F, 0xFF];
    rest.extend_from_slice(&[0xFF; 10]);
    rest.extend(client_frame("x").repeat(150));
    assert_eq!(body(&mut stream, &mut host, Request, &rest), Vec::<u8>::new(), "the Gold tier allows 100 a minute");
}

/// Bytes that go by unscanned (the clock unreadable, the chunk unreadable) must not put the
/// frames read after them out of step: a client could otherwise send half a header through and
/// make the rest of its stream one frame that never ends, uncounted.
#[test]
fn frames_stay_in_step_when_a_chunk_cannot_be_counted() {
    use crate::host::Direction::{Request, Response};
    // The mask of the frame the first chunk starts reads, out of step, as a header of a frame that
    // never ends; 10 bytes of payload, and 150 frames (3 an hour pass).
    let mut rest = vec![0x82, 0x7F, 0x7F, 0xFF];
    rest.extend_from_slice(&[0xFF; 10]);
    rest.extend(client_frame("x").repeat(150));
    for unreadable in ["clock", "chunk"] {
        let (mut host, mut stream, _) = handshake(frames_config(true, ""), None);
        host.response.insert(":status".into(), b"101".to_vec());
        stream.on_response_headers(&mut host);
        host.clock_broken = unreadable == "clock";
        host.bodies_unreadable = unreadable == "chunk";
        body(&mut stream, &mut host, Request, &[0x82, 0x8A]);
        (host.clock_broken, host.bodies_unreadable) = (false, false);
        let passed = body(&mut stream, &mut host, Request, &rest);
        let notices = match unreadable {
            // Scanned without counting: the frame goes on, and the three of the hour after it.
            "clock" => {
                assert_eq!(passed, [&rest[..14], &client_frame("x").repeat(3)].concat());
                websocket::MAX_PENDING_NOTICES
            }
            // Unread: nothing after it can be followed, and nothing more goes.
            _ => {
                assert_eq!(passed, Vec::<u8>::new());
                0
            }
        };
        let notice = websocket::server_text_frame(NOTICE);
        assert_eq!(
            body(&mut stream, &mut host, Response, &[0x89, 0]),
            [notice.repeat(notices), vec![0x89, 0]].concat()
        );
    }
}

#[test]
fn a_refused_upgrade_and_a_plain_request_are_http() {
    use crate::host::Direction::Response;
    // The backend answered the handshake 200: its body is not frames.
    let (mut host, mut stream, _) = handshake(frames_config(true, ""), None);
    host.response.insert(":status".into(), b"200".to_vec());
    stream.on_response_headers(&mut host);
    let looks_like_frames = websocket::server_text_frame("x").repeat(5);
    assert_eq!(body(&mut stream, &mut host, Response, &looks_like_frames), looks_like_frames);
    // A plain request to the API counts as a request: the fourth of the hour is refused.
    let mut host = FakeHost { now: 7_200, ..FakeHost::default() };
    let mut config = frames_config(true, "");
    prepare_counters(&mut host, &mut config);
    let config = Rc::new(config);
    for expected in [Flow::Continue, Flow::Continue, Flow::Continue, Flow::Answered] {
        host.request = FakeHost::request(&[(":method", "GET"), (":path", "/chat/1/room")]).request;
        assert_eq!(stream_of(&config).on_request_headers(&mut host, true), expected);
    }
    assert_eq!(host.counted, vec![900800]);
}

/// Without `count_websocket_frames` a handshake is a request, counted once, and its frames pass.
#[test]
fn without_frame_counting_the_handshake_counts_and_frames_pass() {
    use crate::host::Direction::Request;
    let (mut host, mut stream, _) = handshake(frames_config(false, ""), None);
    let many = client_frame("a").repeat(10);
    assert_eq!(body(&mut stream, &mut host, Request, &many), many);
    let mut flows = Vec::new();
    for _ in 0..3 {
        let (next, _, flow) = handshake(frames_config(false, ""), Some(host));
        host = next;
        flows.push(flow);
    }
    assert_eq!(flows, [Flow::Continue, Flow::Continue, Flow::Answered], "the fourth handshake of the hour");
}

/// A frame is never held for a call: a rate-limit service counting one call per request cannot
/// count frames, and the configuration says so at load.
#[test]
fn strict_counting_across_nodes_cannot_count_frames() {
    for field in ["count_websocket_frames", "count_server_sent_events"] {
        let json = format!(
            r#"{{"throttling":{{"rate_limit_service":{{"cluster":"rls","counting":"strict"}}}},
            "apis":[{{"name":"Chat","context":"/chat","version":"1","security":[],"{field}":true,
            "endpoints":{{"production":"ws"}},"resources":[{{"method":"GET","path":"/*"}}]}}]}}"#
        );
        let error = Config::from_json(json.as_bytes()).err().unwrap();
        assert_eq!(error.field, format!("apis[0].{field}"), "{error:?}");
        assert!(Config::from_json(json.replace("strict", "leased").as_bytes()).is_ok());
    }
}

fn stream_of(config: &Rc<Config>) -> Stream {
    stream(Rc::clone(config))
}

/// A WebSocket connection ends when its token expires, as API-M re-checks the token on each frame
/// a client sends: the first bytes from when a new request with the token is refused (an
/// introspected token's `exp`: no clock skew, as `introspection::parse` refuses it at `exp`) go
/// nowhere and the connection is reset. There is a connection only once the backend accepted the
/// upgrade (101): a plain request's body, an upgrade's before its answer or after the backend
/// declined it, is a request's body and passes whatever the token's `exp`.
#[test]
fn a_websocket_connection_ends_when_its_token_expires() {
    use crate::host::Direction::Request;
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#;
    for (upgrade, answer) in [(true, Some("101")), (true, Some("200")), (true, None), (false, Some("200"))] {
        let case = format!("{upgrade} {answer:?}");
        let mut headers = vec![(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")];
        if upgrade {
            headers.extend([("connection", "Upgrade"), ("upgrade", "websocket")]);
        }
        let mut host = FakeHost::request(&headers);
        host.now = 1_000;
        let mut config = Config::from_json(SECURED.as_bytes()).unwrap();
        prepare_counters(&mut host, &mut config);
        assert!(config.auth.key_managers[0].clock_skew_s > 0, "a skew that is not added");
        let last = 1_999;
        let mut stream = stream(Rc::new(config));
        assert_eq!(stream.on_request_headers(&mut host, false), Flow::Waiting);
        stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
        assert!(host.resumed && host.sent.is_none(), "{case}");
        if let Some(status) = answer {
            host.response.insert(":status".into(), status.as_bytes().to_vec());
            assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
        }
        let connection = answer == Some("101");
        let frame = client_frame("hello");
        host.now = last;
        assert_eq!(body(&mut stream, &mut host, Request, &frame), frame, "valid to its last second");
        host.now = last + 1;
        let expected = if connection { Vec::new() } else { frame.clone() };
        assert_eq!(body(&mut stream, &mut host, Request, &frame), expected, "{case}");
        assert_eq!(host.closed, connection, "{case}");
        assert_eq!(host.counted, if connection { vec![900903] } else { vec![] }, "{case}");
        assert_eq!(body(&mut stream, &mut host, Request, &frame), expected, "and after: {case}");
        assert_eq!(host.counted.len(), usize::from(connection), "counted once");
    }
}

/// After the token's expiry a chunk of the client's control frames alone passes (API-M writes
/// ping, pong and close through unchecked, `WebsocketInboundHandler.channelRead`) on a connection
/// whose frames are not counted; its first data frame ends it. Envoy's call with no bytes before
/// the 101 changes nothing; a client that sent bytes before it cannot be followed frame by frame,
/// and any bytes of its after the expiry end the connection.
#[test]
fn control_frames_pass_an_expired_connection_its_next_data_frame_ends_it() {
    use crate::host::Direction::Request;
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#;
    let ping = [0x89, 0x81, 1, 2, 3, 4, b'p' ^ 1];
    for early in [&[][..], &client_frame("early")[..]] {
        let case = format!("{} bytes before the 101", early.len());
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-1"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        host.now = 1_000;
        let mut config = Config::from_json(SECURED.as_bytes()).unwrap();
        prepare_counters(&mut host, &mut config);
        let mut stream = stream(Rc::new(config));
        assert_eq!(stream.on_request_headers(&mut host, false), Flow::Waiting);
        stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
        assert_eq!(body(&mut stream, &mut host, Request, early), early, "{case}");
        host.response.insert(":status".into(), b"101".to_vec());
        assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
        host.now = 2_000;
        let expected: &[u8] = if early.is_empty() { &ping } else { &[] };
        assert_eq!(body(&mut stream, &mut host, Request, &ping), expected, "{case}: a ping");
        assert_eq!(host.closed, !early.is_empty(), "{case}");
        let frame = [&ping[..], &client_frame("hello")].concat();
        assert_eq!(body(&mut stream, &mut host, Request, &frame), Vec::<u8>::new(), "{case}: a data frame");
        assert_eq!((host.closed, host.counted.as_slice()), (true, &[900903][..]), "{case}");
    }
}

/// A connection with a verified JWT lasts as long as a new request with that JWT is accepted: through
/// its `exp` plus the key manager's clock skew; then the client's bytes go nowhere.
#[test]
fn a_websocket_connection_with_a_jwt_ends_when_a_request_with_it_would_be_refused() {
    use crate::host::Direction::Request;
    let config = jwks_config();
    let skew = config.auth.key_managers[0].clock_skew_s;
    assert!(skew > 0);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    jwks::prepare(&mut host, &config.auth);
    let token = signed("a", 2_000);
    host.request = FakeHost::request(&[
        (":method", "GET"),
        (":path", "/p/1/menu"),
        ("authorization", &format!("Bearer {token}")),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
    ])
    .request;
    let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
    assert_eq!(stream.on_request_headers(&mut host, false), Flow::Waiting);
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    assert!(host.resumed && host.sent.is_none());
    host.response.insert(":status".into(), b"101".to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
    // A new request with the token is accepted to its last second, and refused after.
    host.now = 2_000 + skew;
    assert_eq!(bearer_call(&config, &worker, &mut host, &token).1, Flow::Continue);
    let frame = client_frame("hello");
    assert_eq!(body(&mut stream, &mut host, Request, &frame), frame, "valid through exp and the skew");
    assert!(!host.closed);
    host.now = 2_001 + skew;
    assert!(host.sent.is_none());
    bearer_call(&config, &worker, &mut host, &token);
    assert!(host.sent.is_some(), "a new request is refused");
    assert_eq!(body(&mut stream, &mut host, Request, &frame), Vec::<u8>::new());
    assert!(host.closed);
}

/// API-M counts a WebSocket frame at the API's key with the API's tier, never a topic's: an API
/// whose only tier is a resource's counts its frames at no API level (its handshakes, were they
/// counted, would be). A server-sent event counts at its resource's tier.
#[test]
fn a_topics_tier_counts_server_sent_events_and_not_websocket_frames() {
    use crate::host::Direction::{Request, Response};
    let json = |field: &str| {
        format!(
            r#"{{"apis":[{{"name":"Chat","context":"/chat","version":"1","security":[],"{field}":true,
            "endpoints":{{"production":"ws"}},"resources":[{{"method":"GET","path":"/*","policy":"One"}}]}}],
            "policies":{{"One":{{"requests":1,"per":"hour"}}}}}}"#
        )
    };
    let config = Config::from_json(json("count_websocket_frames").as_bytes()).unwrap();
    let (mut host, mut connection, _) = handshake(config, None);
    host.response.insert(":status".into(), b"101".to_vec());
    connection.on_response_headers(&mut host);
    let many = client_frame("a").repeat(5);
    assert_eq!(body(&mut connection, &mut host, Request, &many), many, "no tier applies to a frame");

    let config = Config::from_json(json("count_server_sent_events").as_bytes()).unwrap();
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/chat/1/room")]);
    host.now = 7_200;
    let mut config = config;
    prepare_counters(&mut host, &mut config);
    let mut stream = stream(Rc::new(config));
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
    host.response.insert(":status".into(), b"200".to_vec());
    stream.on_response_headers(&mut host);
    assert_eq!(body(&mut stream, &mut host, Response, b"data: 1\n\ndata: 2\n\n"), b"data: 1\n\n", "the topic's tier");
    assert_eq!(host.counted, vec![900802]);
}

/// A large frame arrives in many chunks: those inside its payload pass, or go with the frame,
/// whole, without being read.
#[test]
fn a_large_frames_chunks_go_with_it() {
    use crate::host::Direction::Request;
    let (mut host, mut stream, _) = handshake(frames_config(true, ""), None);
    host.response.insert(":status".into(), b"101".to_vec());
    stream.on_response_headers(&mut host);
    let large = |fill: u8| {
        let mut frame = vec![0x82, 0x80 | 126, 0x10, 0x00, 0, 0, 0, 0];
        frame.extend(std::iter::repeat_n(fill, 0x1000));
        frame
    };
    // Three frames of the hour: the first two and a small one pass, the third large one goes.
    for (fill, passes) in [(1u8, true), (2, true), (3, false)] {
        if fill == 3 {
            assert_eq!(body(&mut stream, &mut host, Request, &client_frame("x")), client_frame("x"));
        }
        let frame = large(fill);
        for piece in frame.chunks(1000) {
            let expected = if passes { piece.to_vec() } else { Vec::new() };
            assert_eq!(body(&mut stream, &mut host, Request, piece), expected, "frame {fill}");
        }
    }
    assert_eq!(host.counted, vec![4008]);
}

/// A gateway serving WebSocket API `Chat` beside a control plane, its worker, and an EdDSA JWT of
/// application `App` (owner `alice`) valid for an hour from the host's clock.
fn chat_beside_a_control_plane(host: &mut FakeHost) -> (Rc<Config>, Rc<RefCell<Worker>>, String) {
    use serde_json::json;
    let key = crate::auth::keys::testkeys::jwk("ed25519.pem", jsonwebtoken::Algorithm::EdDSA, "ed");
    let json = json!({
        "key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"keys": [key]}}],
        "apis": [{"name": "Chat", "context": "/chat", "version": "1", "endpoints": {"production": "ws"},
            "resources": [{"method": "GET", "path": "/*"}]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "alice", "client_ids": [{"id": "c1", "key_manager": "km"}]}],
        "subscriptions": [{"application": "app-1", "api": "Chat:1"}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5}
    });
    let mut config = Config::from_json(json.to_string().as_bytes()).unwrap();
    crate::stream::background::prepare_counters(host, &mut config);
    let config = Rc::new(config);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let claims = json!({"iss": "https://km", "exp": host.now + 3600, "client_id": "c1", "jti": "j1"}).to_string();
    let header = r#"{"alg":"EdDSA","kid":"ed"}"#;
    let token = crate::auth::keys::testkeys::sign_raw(header, &claims, "ed25519.pem", jsonwebtoken::Algorithm::EdDSA);
    (config, worker, token)
}

/// A JWT revoked through the control plane while its connection is open: API-M checks its revoked
/// JWTs on each frame the client sends (`RequestProcessor` → `authenticateToken` →
/// `JWTValidator.authenticateForWebSocket`: close 4001). The first client bytes after the load
/// that lists it go nowhere and the connection ends; the backend's frames are not re-checked.
#[test]
fn a_jwt_revoked_while_its_connection_is_open_ends_it_at_the_clients_next_frame() {
    use crate::host::Direction::{Request, Response};
    let mut host = FakeHost { now: 1_800_000_000, ..Default::default() };
    let (config, worker, token) = chat_beside_a_control_plane(&mut host);
    let answer = |listed: bool| {
        move |_: &str, path: &str| {
            let body = if path.contains("revokedjwt") {
                if listed {
                    r#"[{"jwt_signature":"j1","expiry_time":1900000000}]"#
                } else {
                    "[]"
                }
            } else if path.contains("/block") {
                r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],"ip":[]}"#
            } else {
                r#"{"count":0,"list":[],"pagination":null}"#
            };
            Answer::Http { status: 200, body: body.as_bytes().to_vec() }
        }
    };
    super::gateways::tick_answering(&mut host, &config, &worker, answer(false));
    let upgrade = [(":method", "GET"), (":path", "/chat/1/room"), ("connection", "Upgrade"), ("upgrade", "websocket")];
    host.request = FakeHost::request(&upgrade).request;
    host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
    let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
    assert_eq!((stream.on_request_headers(&mut host, false), host.sent.is_none()), (Flow::Continue, true));
    host.response.insert(":status".into(), b"101".to_vec());
    stream.on_response_headers(&mut host);
    assert_eq!(body(&mut stream, &mut host, Request, &client_frame("a")), client_frame("a"));
    // The control plane lists it at its next refresh.
    host.now += 6;
    let asked = super::gateways::tick_answering(&mut host, &config, &worker, answer(true));
    assert!(asked.iter().any(|path| path.contains("revokedjwt")), "{asked:?}");
    let backend = websocket::server_text_frame("news");
    assert_eq!(body(&mut stream, &mut host, Response, &backend), backend, "the backend's frames are not re-checked");
    assert!(!host.closed);
    assert_eq!(body(&mut stream, &mut host, Request, &client_frame("b")), Vec::<u8>::new());
    assert!(host.closed, "the connection ends");
    assert_eq!(host.counted, vec![900901]);
    assert_eq!(body(&mut stream, &mut host, Request, &client_frame("c")), Vec::<u8>::new());
    assert_eq!(host.counted, vec![900901], "counted once");
}

/// A blocking condition the control plane sends while a connection is open: API-M checks them on
/// each frame (`WebsocketUtil.validateDenyPolicies`, close 4006). The first client bytes after
/// the load that lists the connection's application, or its client address, go nowhere and the
/// connection ends (900805); a condition for someone else leaves it open.
#[test]
fn a_caller_blocked_while_its_connection_is_open_is_cut_at_the_clients_next_frame() {
    use crate::host::Direction::Request;
    use serde_json::json;
    let blocks = [
        ("", false),
        (r#""application":["bob:App"]"#, false),
        (r#""application":["alice:App"]"#, true),
        (r#""ip":[{"type":"IP","fixedIp":"192.0.2.7","invert":false,"tenantDomain":"carbon.super","id":1}]"#, true),
    ];
    for (block, cut) in blocks {
        let mut host = FakeHost { now: 1_800_000_000, ..Default::default() };
        let (config, worker, token) = chat_beside_a_control_plane(&mut host);
        let answer = |block: &'static str| {
            move |_: &str, path: &str| {
                let body = if path.contains("/block") {
                    let mut lists = serde_json::Map::new();
                    for name in ["api", "application", "user", "custom", "subscription", "ip"] {
                        lists.insert(name.into(), json!([]));
                    }
                    let given: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(&format!("{{{block}}}")).unwrap();
                    lists.extend(given);
                    serde_json::Value::Object(lists).to_string()
                } else if path.contains("revokedjwt") {
                    "[]".to_string()
                } else {
                    r#"{"count":0,"list":[],"pagination":null}"#.to_string()
                };
                Answer::Http { status: 200, body: body.into_bytes() }
            }
        };
        super::gateways::tick_answering(&mut host, &config, &worker, answer(""));
        let upgrade =
            [(":method", "GET"), (":path", "/chat/1/room"), ("connection", "Upgrade"), ("upgrade", "websocket")];
        host.request = FakeHost::request(&upgrade).request;
        host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
        host.properties.insert("source.address".into(), b"192.0.2.7:4000".to_vec());
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        assert_eq!((stream.on_request_headers(&mut host, false), host.sent.is_none()), (Flow::Continue, true));
        host.response.insert(":status".into(), b"101".to_vec());
        stream.on_response_headers(&mut host);
        assert_eq!(body(&mut stream, &mut host, Request, &client_frame("a")), client_frame("a"));
        // Each client chunk costs one read of the shared data (the control plane's generation),
        // however many re-checks (revocation, blocking conditions) read it.
        let reads = host.shared_reads.get();
        assert_eq!(body(&mut stream, &mut host, Request, &client_frame("a")), client_frame("a"));
        assert_eq!(host.shared_reads.get() - reads, 1, "{block}");
        host.now += 6;
        let asked = super::gateways::tick_answering(&mut host, &config, &worker, answer(block));
        assert!(asked.iter().any(|path| path.contains("/block")), "{asked:?}");
        let passed = body(&mut stream, &mut host, Request, &client_frame("b"));
        if cut {
            assert_eq!((passed, host.closed, host.counted.clone()), (Vec::new(), true, vec![900805]), "{block}");
        } else {
            assert_eq!((passed, host.closed, host.counted.clone()), (client_frame("b"), false, vec![]), "{block}");
        }
    }
}
