//! Tests of a configuration update under a running Envoy: what an earlier configuration left in
//! shared data must not serve the new one's requests.

use super::*;

/// The backend JWT's payload, decoded, of the request `host` forwarded.
fn backend_payload(host: &FakeHost) -> String {
    use base64::Engine;
    let jwt = host.req("x-jwt-assertion");
    let payload = jwt.split('.').nth(1).unwrap();
    String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn a_caller_claim_newly_excluded_is_not_copied_from_answers_introspected_before() {
    let with = |backend: &str| SECURED.replacen('{', &format!(r#"{{"backend_jwt": {backend},"#), 1);
    let before = with(r#"{"algorithm": "none"}"#);
    let answer = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000,"email":"alice@example.com"}"#;
    let (host, _) = introspection_answer_with(&before, answer, &[]);
    assert!(backend_payload(&host).contains("alice@example.com"), "copied under the old configuration");
    // The operator stops copying `email`, or copying at all: a new configuration, the same
    // shared data (the introspection answer cached for every worker).
    for after in [
        with(r#"{"algorithm": "none", "excluded_claims": ["email"]}"#),
        with(r#"{"algorithm": "none", "copy_caller_claims": false}"#),
    ] {
        let mut again = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-1"),
        ]);
        again.now = 1_100;
        again.shared = host.shared.clone();
        let mut second = stream(Rc::new(Config::from_json(after.as_bytes()).unwrap()));
        // The answer cached under other copying rules is not read: the token is asked about again.
        assert_eq!(second.on_request_headers(&mut again, true), Flow::Waiting);
        let token = u32::try_from(again.dispatched.len()).unwrap();
        second.on_call_response(&mut again, token, Answer::Http { status: 200, body: answer.as_bytes().to_vec() });
        assert!(again.resumed, "forwarded");
        let payload = backend_payload(&again);
        assert!(!payload.contains("alice@example.com"), "the new configuration excludes it, yet: {payload}");
    }
}
