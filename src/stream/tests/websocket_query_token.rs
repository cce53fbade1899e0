//! A WebSocket API's handshake with its OAuth2 token in the `access_token` query parameter, as
//! API-M's gateway takes it (`InboundWebSocketProcessor.validateOAuthHeader`: a browser's
//! WebSocket cannot set `Authorization`), and the parameter never going upstream or into a log.

use super::query_credentials::{api_key_config, SECRET_KEY};
use super::*;

/// `SECURED` with its API `P` as a control-plane WebSocket API is (`wire::takes_query_credentials`).
fn websocket_config(query_token: bool) -> Config {
    let mut config = Config::from_json(SECURED.as_bytes()).unwrap();
    if let Some(api) = Rc::get_mut(&mut config.routes).and_then(|routes| routes.apis.first_mut()) {
        api.websocket_query_credentials = query_token;
    }
    config
}

fn handshake(config: Config, path: &str) -> (FakeHost, Stream, Flow) {
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", path), ("connection", "Upgrade"), ("upgrade", "websocket")]);
    host.now = 1_000;
    let mut config = config;
    prepare_counters(&mut host, &mut config);
    let mut stream = stream(Rc::new(config));
    let flow = stream.on_request_headers(&mut host, true);
    (host, stream, flow)
}

#[test]
fn a_websocket_handshake_takes_its_token_from_the_query_and_never_sends_it_upstream() {
    let (mut host, mut stream, flow) = handshake(websocket_config(true), "/p/1/menu?x=1&access_token=opaque-token-1");
    assert_eq!(flow, Flow::Waiting, "the token is introspected");
    let (_, _, body) = host.dispatched[0].clone();
    assert_eq!(body.unwrap(), b"token=opaque-token-1&token_type_hint=access_token".to_vec());
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#;
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
    assert!(host.resumed && host.sent.is_none());
    assert_eq!(host.req(":path"), "/menu?x=1", "the token does not go upstream");

    // Refused, its path (which Envoy's access log prints) loses the token too.
    let (mut host, mut stream, _) = handshake(websocket_config(true), "/p/1/menu?access_token=opaque-token-1");
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: br#"{"active":false}"#.to_vec() });
    assert_eq!(host.counted, vec![900901]);
    assert_eq!(host.req(":path"), "/p/1/menu");
}

/// API-M's WebSocket gateway reads a query as Netty does, `;` separating pairs as `&` does: a
/// token after a `;` is the handshake's token, and neither the backend nor a refused request's
/// `:path` (Envoy's access log) keeps it, whichever separator came before it.
#[test]
fn a_token_after_a_semicolon_is_read_and_never_sent_upstream_or_logged() {
    let (mut host, mut stream, flow) = handshake(websocket_config(true), "/p/1/menu?x=1;access_token=opaque-token-1");
    assert_eq!(flow, Flow::Waiting, "the token is introspected");
    let (_, _, body) = host.dispatched[0].clone();
    assert_eq!(body.unwrap(), b"token=opaque-token-1&token_type_hint=access_token".to_vec());
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#;
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
    assert_eq!(host.req(":path"), "/menu?x=1", "the token does not go upstream");
    // A second token after a `;` goes too.
    let (mut host, mut stream, _) =
        handshake(websocket_config(true), "/p/1/menu?access_token=opaque-token-1&x=1;access_token=other-token");
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
    assert_eq!(host.req(":path"), "/menu?x=1");
    // Refused (a non-WebSocket API, or a bad token): the refused `:path` loses it.
    for query_token in [false, true] {
        let (mut host, mut stream, _) =
            handshake(websocket_config(query_token), "/p/1/menu?x=1;access_token=opaque-token-1");
        stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: br#"{"active":false}"#.to_vec() });
        assert_eq!(host.req(":path"), "/p/1/menu?x=1", "{query_token}");
    }
}

#[test]
fn only_a_websocket_api_takes_a_token_in_the_query() {
    let (host, _, flow) = handshake(websocket_config(false), "/p/1/menu?access_token=opaque-token-1");
    assert_eq!((flow, host.counted.as_slice()), (Flow::Answered, &[900902][..]), "missing credentials");
    assert_eq!(host.req(":path"), "/p/1/menu", "and the token is not logged");
}

/// API-M takes the query's token only when the request has no `Authorization` at all: a header
/// that cannot be used is refused as it is, not replaced by the query's token.
#[test]
fn an_authorization_header_wins_over_the_query() {
    for (header, code) in [("Basic dXNlcjpwYXNz", 900902), ("Bearer", 900902), ("Bearer a b", 900901), ("", 900902)] {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu?access_token=opaque-token-1"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("authorization", header),
        ]);
        host.now = 1_000;
        let mut config = websocket_config(true);
        prepare_counters(&mut host, &mut config);
        let mut stream = stream(Rc::new(config));
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered, "{header}");
        assert!(host.dispatched.is_empty(), "{header}: the query's token was not introspected");
        assert_eq!(host.counted, vec![code], "{header}: refused as without the query");
    }
}

/// API-M's gateway reads a WebSocket API's credentials from the query on its handshake only (its
/// WebSocket endpoint serves nothing else): a plain request to the API, which a URL's token would
/// authenticate nowhere in API-M, is refused without reading it, and its refused path loses it.
#[test]
fn only_a_handshake_takes_its_credentials_from_the_query() {
    for upgrade in ["websocket", "WebSocket", "h2c, websocket"] {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu?access_token=opaque-token-1"),
            ("connection", "Upgrade"),
            ("upgrade", upgrade),
        ]);
        let mut config = websocket_config(true);
        prepare_counters(&mut host, &mut config);
        assert_eq!(stream(Rc::new(config)).on_request_headers(&mut host, true), Flow::Waiting, "{upgrade}");
    }
    for upgrade in [None, Some("h2c")] {
        let mut headers = vec![(":method", "GET"), (":path", "/p/1/menu?access_token=opaque-token-1")];
        headers.extend(upgrade.map(|upgrade| ("upgrade", upgrade)));
        let mut host = FakeHost::request(&headers);
        host.now = 1_000;
        let mut config = websocket_config(true);
        prepare_counters(&mut host, &mut config);
        let flow = stream(Rc::new(config)).on_request_headers(&mut host, true);
        assert_eq!((flow, host.counted.as_slice()), (Flow::Answered, &[900902][..]), "{upgrade:?}");
        assert!(host.dispatched.is_empty());
        assert_eq!(host.req(":path"), "/p/1/menu", "the refused path loses the token");
    }
}

/// A browser's WebSocket cannot set the `apikey` header either: API-M's gateway takes a
/// handshake's API key from the `apikey` query parameter where the API takes API keys
/// (`isAPIKeyAuthentication`); a plain request's is not read, as for any API without
/// `api_key_in_query`.
#[test]
fn a_handshake_takes_its_api_key_from_the_query() {
    let websocket_api_keys = || {
        let mut config = Rc::try_unwrap(api_key_config("")).ok().unwrap();
        if let Some(api) = Rc::get_mut(&mut config.routes).and_then(|routes| routes.apis.first_mut()) {
            api.api_key_in_query = false;
            api.websocket_query_credentials = true;
        }
        Rc::new(config)
    };
    let path = format!("/p/1/menu?x=1&apikey={SECRET_KEY}");
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", &path), ("upgrade", "websocket")]);
    assert_eq!(stream(websocket_api_keys()).on_request_headers(&mut host, true), Flow::Continue);
    assert_eq!(host.req(":path"), "/menu?x=1", "the key does not go upstream");
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", &path)]);
    assert_eq!(stream(websocket_api_keys()).on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!((host.counted.as_slice(), host.req(":path")), (&[900902][..], "/p/1/menu?x=1"));
}

/// API-M's WebSocket gateway takes one authenticator for a handshake
/// (`InboundWebSocketProcessor.handleHandshake`): OAuth2 where it offers a token
/// (`isOauthAuthentication`), its API key only where it offers none. A refused token refuses the
/// handshake whatever key is beside it (in a header or the query); a plain request goes through
/// `APIAuthenticationHandler`'s chain, where the key stands in for the refused token.
#[test]
fn a_handshakes_refused_token_does_not_give_way_to_its_api_key() {
    let json = format!(
        r#"{{"key_managers":[{{"name":"km","issuer":"https://km","hmac_secret":"a-secret-of-at-least-32-bytes-long!",
            "algorithms":["HS256"]}}],
          "apis":[{{"name":"P","context":"/p","version":"1","security":["oauth2","api_key"],
            "endpoints":{{"production":"backend"}},"resources":[{{"method":"GET","path":"/menu"}}]}}],
          "applications":[{{"id":"app-1","name":"App","api_keys":[{{"sha256":"{}"}}]}}],
          "subscriptions":[{{"application":"app-1","api":"P:1"}}]}}"#,
        crate::hashing::hex(&credential_hash(SECRET_KEY))
    );
    let claims = serde_json::json!({"iss": "https://km", "exp": 2_000, "client_id": "c9"});
    let forged = jsonwebtoken::EncodingKey::from_secret(b"not-the-key-managers-secret-at-all!!");
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &forged).unwrap();
    let bearer = format!("Bearer {token}");
    let in_query = format!("/p/1/menu?apikey={SECRET_KEY}");
    for (path, key_header) in [("/p/1/menu", Some(SECRET_KEY)), (in_query.as_str(), None)] {
        for upgrade in [false, true] {
            let mut headers = vec![(":method", "GET"), (":path", path), ("authorization", bearer.as_str())];
            headers.extend(key_header.map(|key| ("apikey", key)));
            if upgrade {
                headers.extend([("connection", "Upgrade"), ("upgrade", "websocket")]);
            }
            let mut host = FakeHost::request(&headers);
            host.now = 1_000;
            let mut config = Config::from_json(json.as_bytes()).unwrap();
            if let Some(api) = Rc::get_mut(&mut config.routes).and_then(|routes| routes.apis.first_mut()) {
                api.websocket_query_credentials = true;
            }
            prepare_counters(&mut host, &mut config);
            let flow = stream(Rc::new(config)).on_request_headers(&mut host, true);
            if upgrade {
                assert_eq!((flow, host.counted.as_slice()), (Flow::Answered, &[900901][..]), "{path}");
            } else if key_header.is_some() {
                assert_eq!((flow, host.req("x-apim-application-id")), (Flow::Continue, "app-1"), "{path}");
            } else {
                // A plain request does not read a WebSocket API's key from the query.
                assert_eq!((flow, host.counted.as_slice()), (Flow::Answered, &[900901][..]), "{path}");
            }
        }
    }
}
