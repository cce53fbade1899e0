//! CORS on the backend's answers: with `errors.cors` set, every response of an API carries the
//! gateway's CORS headers, as WSO2's CORS handler sets them (not only faults and preflights).

use super::*;
use crate::host::testing::{allocations_in, uncounted};

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

/// The fake host, its own allocations left uncounted (Envoy's host makes them outside the VM).
struct Quiet<'a>(&'a mut FakeHost);

impl SharedStore for Quiet<'_> {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        uncounted(|| self.0.shared_get(key))
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        uncounted(|| self.0.shared_set(key, value, cas))
    }
}

impl Host for Quiet<'_> {
    fn request_headers(&self) -> Vec<Header> {
        uncounted(|| self.0.request_headers())
    }
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        uncounted(|| self.0.set_request_header(name, value));
    }
    fn request_trailer_names(&self) -> Vec<String> {
        uncounted(|| self.0.request_trailer_names())
    }
    fn remove_request_trailer(&mut self, name: &str) {
        uncounted(|| self.0.remove_request_trailer(name));
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        uncounted(|| self.0.response_header(name))
    }
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        uncounted(|| self.0.set_response_header(name, value));
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        uncounted(|| self.0.property(path))
    }
    fn set_property(&mut self, name: &str, value: &[u8]) {
        uncounted(|| self.0.set_property(name, value));
    }
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>) {
        uncounted(|| self.0.send_response(status, headers, body, grpc_status));
    }
    fn count(&mut self, name: &str) {
        uncounted(|| self.0.count(name));
    }
    fn now(&self) -> Result<u64, HostError> {
        self.0.now()
    }
    fn call(&mut self, call: &Call) -> Result<u32, HostError> {
        uncounted(|| self.0.call(call))
    }
    fn body_chunk(&self, direction: crate::host::Direction, size: usize) -> Option<Vec<u8>> {
        uncounted(|| self.0.body_chunk(direction, size))
    }
    fn replace_body_chunk(&mut self, direction: crate::host::Direction, size: usize, bytes: &[u8]) {
        uncounted(|| self.0.replace_body_chunk(direction, size, bytes));
    }
    fn close_stream(&mut self) {
        uncounted(|| self.0.close_stream());
    }
    fn resume_request(&mut self) {
        self.0.resume_request();
    }
}

/// Every response of an API carries the gateway's CORS headers: setting them allocates nothing
/// (the lists' values are joined once, at load; a backend's copies are replaced or removed).
#[test]
fn the_cors_headers_of_a_backends_answer_cost_no_allocation() {
    let allocations = |config: Rc<Config>| {
        let mut host =
            FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("origin", "https://a.example")]);
        host.response = [(":status", "200"), ("access-control-allow-origin", "*")]
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        let mut stream = stream(config);
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
        allocations_in(|| assert_eq!(stream.on_response_headers(&mut Quiet(&mut host)), Flow::Continue))
    };
    let without = allocations(config());
    for cors in [
        r#"{"allow_origins": ["https://a.example"], "allow_credentials": true, "expose_headers": ["x-a", "x-b"]}"#,
        r#"{"allow_origins": ["*"], "max_age_s": 600}"#,
        r#"{"allow_origins": ["https://b.example"]}"#,
    ] {
        assert_eq!(allocations(cors_config(cors)), without, "{cors}");
    }
}

/// `allow_headers: ["*"]` allows what a preflight asks for: the answer echoes its
/// `Access-Control-Request-Headers`, as API-M's `CORSRequestHandler.setCORSHeaders` does. A
/// literal `*` never covers `Authorization` in a browser (nor anything once credentials are
/// allowed), so an app sending its token was refused by its preflight.
#[test]
fn a_wildcard_allow_headers_echoes_what_the_preflight_asks_for() {
    let config =
        cors_config(r#"{"allow_origins": ["https://app.example"], "allow_headers": ["*"], "allow_credentials": true}"#);
    let mut host = FakeHost::request(&[
        (":method", "OPTIONS"),
        (":path", "/p/1/menu"),
        ("origin", "https://app.example"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization,x-trace"),
    ]);
    assert_eq!(stream(config).on_request_headers(&mut host, true), Flow::Answered);
    let (status, headers, _) = host.sent.clone().unwrap();
    assert_eq!(status, 200);
    let allowed = headers.iter().find(|(name, _)| name == "access-control-allow-headers").map(|(_, v)| v.as_str());
    assert_eq!(allowed, Some("authorization,x-trace"));
    // The answer depends on the headers asked for: a cache keys it on them too.
    let vary = headers.iter().find(|(name, _)| name == "vary").map(|(_, v)| v.as_str());
    assert_eq!(vary, Some("Origin, Access-Control-Request-Headers"));
}

/// An API whose `/menu` takes `GET` and `POST`, whose `/order/{id}` takes `GET` and `DELETE`
/// (with an API key), under `errors.cors` (or none).
fn two_templates(cors: Option<&str>) -> Rc<Config> {
    let errors = cors.map(|cors| format!(r#""errors": {{"cors": {cors}}},"#)).unwrap_or_default();
    let json = format!(
        r#"{{{errors}
        "apis": [{{"name": "P", "context": "/p", "version": "1", "security": [], "endpoints": {{"production": "prod"}},
                  "resources": [{{"method": "GET", "path": "/menu"}}, {{"method": "GET", "path": "/order/{{id}}", "security": ["api_key"]}},
                                {{"method": "POST", "path": "/menu"}}, {{"method": "DELETE", "path": "/order/{{id}}", "security": ["api_key"]}}]}}]}}"#
    );
    Rc::new(Config::from_json(json.as_bytes()).unwrap())
}

/// The `Access-Control-Allow-Methods` of the answer to `method path`, and whether the backend gave it.
fn allowed_methods(config: Rc<Config>, method: &str, path: &str) -> (bool, Option<String>) {
    let mut host = FakeHost::request(&[(":method", method), (":path", path), ("origin", "https://app.example")]);
    host.response = vec![(":status".to_string(), b"200".to_vec())].into_iter().collect();
    let mut stream = stream(config);
    let backend = stream.on_request_headers(&mut host, true) == Flow::Continue;
    let methods = match backend {
        true => {
            assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
            header(&host.response, "access-control-allow-methods").map(String::from)
        }
        false => {
            let (_, headers, _) = host.sent.clone().unwrap();
            headers.into_iter().find(|(name, _)| name == "access-control-allow-methods").map(|(_, value)| value)
        }
    };
    (backend, methods)
}

/// Every answer to a request that matched a resource, the backend's and a fault after routing,
/// allows the methods of that resource's path template the policy allows, as API-M's
/// `CORSRequestHandler.setCORSHeaders` sends its Synapse resource's (seed 002: a 900901 with
/// `Access-Control-Allow-Methods: GET`); a request no resource matched gets every configured
/// method. The filter sent the whole configured list on all of them, telling a browser that a
/// resource takes methods it refuses.
#[test]
fn a_matched_resources_answers_allow_its_templates_methods() {
    let config = || two_templates(Some(r#"{"allow_origins": ["*"], "allow_methods": ["DELETE", "GET", "PUT"]}"#));
    let some = |methods: &str| Some(methods.to_string());
    assert_eq!(allowed_methods(config(), "GET", "/p/1/menu"), (true, some("GET")), "POST is not allowed by CORS");
    assert_eq!(
        allowed_methods(config(), "POST", "/p/1/menu"),
        (true, some("GET")),
        "a CORS-refused verb is still routed"
    );
    assert_eq!(
        allowed_methods(config(), "DELETE", "/p/1/order/7"),
        (false, some("GET,DELETE")),
        "900902: in config order"
    );
    assert_eq!(allowed_methods(config(), "PUT", "/p/1/menu"), (false, some("DELETE,GET,PUT")), "900906: no resource");
    assert_eq!(allowed_methods(config(), "GET", "/q/1/menu"), (false, some("DELETE,GET,PUT")), "404: no API");
    let every = || two_templates(Some(r#"{"allow_origins": ["*"], "allow_methods": ["*"]}"#));
    assert_eq!(allowed_methods(every(), "GET", "/p/1/menu"), (true, some("GET,POST")));
    assert_eq!(allowed_methods(every(), "GET", "/p/1/order/7"), (false, some("GET,DELETE")));
}

/// The matched resource's methods are joined once, when the table is compiled: setting them on a
/// backend's answer allocates no more than an answer without CORS, whatever the policy filters.
#[test]
fn a_resources_cors_methods_on_a_backends_answer_cost_no_allocation() {
    let allocations = |config: Rc<Config>| {
        let mut host =
            FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("origin", "https://a.example")]);
        host.response = vec![(":status".to_string(), b"200".to_vec())].into_iter().collect();
        let mut stream = stream(config);
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
        allocations_in(|| assert_eq!(stream.on_response_headers(&mut Quiet(&mut host)), Flow::Continue))
    };
    let without = allocations(two_templates(None));
    for cors in [r#"{"allow_origins": ["*"], "allow_methods": ["GET"]}"#, r#"{"allow_origins": ["https://a.example"]}"#]
    {
        assert_eq!(allocations(two_templates(Some(cors))), without, "{cors}");
    }
}
