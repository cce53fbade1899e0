//! CORS on the backend's answers: with `errors.cors` set, every response of an API carries the
//! gateway's CORS headers, as WSO2's CORS handler sets them (not only faults and preflights).

use super::*;

fn cors_config(cors: &str) -> Rc<Config> {
    let json = format!(
        r#"{{"errors": {{"cors": {cors}}},
        "apis": [{{"name": "P", "context": "/p", "version": "1", "security": [], "endpoints": {{"production": "prod"}},
                  "resources": [{{"method": "GET", "path": "/menu"}}]}}]}}"#
    );
    Rc::new(Config::from_json(json.as_bytes()).unwrap())
}

/// One request from `origin` answered 200 by a backend that sent `backend` headers: the headers
/// the client gets.
fn answered(config: Rc<Config>, origin: Option<&str>, backend: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
    let mut request = vec![(":method", "GET"), (":path", "/p/1/menu")];
    request.extend(origin.map(|origin| ("origin", origin)));
    let mut host = FakeHost::request(&request);
    host.response = [(":status", "200")]
        .iter()
        .chain(backend)
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let mut stream = stream(config);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
    host.response
}

fn header<'a>(headers: &'a HashMap<String, Vec<u8>>, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| std::str::from_utf8(value).unwrap())
}

#[test]
fn a_backends_answer_carries_the_gateways_cors_headers() {
    let config = cors_config(
        r#"{"allow_origins": ["https://app.example"], "allow_credentials": true, "expose_headers": ["x-total"]}"#,
    );
    let headers = answered(config, Some("https://app.example"), &[("vary", "Accept-Encoding")]);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("https://app.example"), "a browser may read it");
    assert_eq!(header(&headers, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&headers, "access-control-expose-headers"), Some("x-total"));
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding, Origin"), "the backend's Vary is kept");
}

#[test]
fn a_backends_own_cors_headers_are_replaced_by_the_gateways() {
    let config = cors_config(r#"{"allow_origins": ["https://app.example"]}"#);
    let backend =
        [("access-control-allow-origin", "*"), ("access-control-allow-credentials", "true"), ("vary", "origin")];
    // An origin the gateway does not allow: the backend's "*" does not let it read the answer.
    let headers = answered(Rc::clone(&config), Some("https://evil.example"), &backend);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);
    assert_eq!(header(&headers, "vary"), Some("origin"), "already named");
    // An allowed origin gets the gateway's answer, not the backend's.
    let headers = answered(config, Some("https://app.example"), &backend);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(header(&headers, "access-control-allow-credentials"), None, "the gateway does not allow credentials");
}

#[test]
fn an_answer_to_a_request_without_origin_still_varies_on_origin() {
    // A shared cache must not hand this answer, without CORS headers, to a browser's request.
    let config = cors_config(r#"{"allow_origins": ["https://app.example"]}"#);
    let headers = answered(config, None, &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(header(&headers, "vary"), Some("Origin"));
    let headers = answered(cors_config(r#"{"allow_origins": ["*"]}"#), None, &[("vary", "*")]);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&headers, "vary"), Some("*"), "varies on everything already");
}

#[test]
fn without_cors_settings_the_backends_headers_pass() {
    let headers = answered(config(), Some("https://app.example"), &[("access-control-allow-origin", "*")]);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&headers, "vary"), None);
}
