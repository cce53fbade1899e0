//! The WSO2 fault contract through a real Envoy (`--concurrency 2`) loading the release `.wasm`,
//! with real upstreams: one that answers, a closed port, and one that never answers.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::time::Duration;

use common::{free_port, Backend, Envoy, EnvoySetup, Silent};

/// Test APIs: `/shop` (open, answering backend), `/legacy` (BLOCKED), `/closed` (closed port),
/// `/slow` (never answers), `/secure` (OAuth2, no validator in this build).
fn filter_config(errors: &str) -> String {
    format!(
        r#"{{
  "errors": {errors},
  "apis": [
    {{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": [],
      "endpoints": {{"production": "live"}},
      "resources": [
        {{"method": "GET", "path": "/items"}},
        {{"method": "GET", "path": "/items/{{id}}"}},
        {{"method": "DELETE", "path": "/items/{{id}}"}},
        {{"method": "GET", "path": "/status/{{code}}"}},
        {{"method": "POST", "path": "/upload"}}
      ]}},
    {{"name": "Legacy", "context": "/legacy", "version": "1.0.0", "lifecycle": "BLOCKED",
      "endpoints": {{"production": "live"}}, "resources": [{{"method": "GET", "path": "/*"}}]}},
    {{"name": "Closed", "context": "/closed", "version": "1.0.0", "security": [],
      "endpoints": {{"production": "closed"}}, "resources": [{{"method": "GET", "path": "/*"}}]}},
    {{"name": "Slow", "context": "/slow", "version": "1.0.0", "security": [],
      "endpoints": {{"production": "silent"}}, "resources": [{{"method": "GET", "path": "/*"}}]}},
    {{"name": "Secure", "context": "/secure", "version": "1.0.0",
      "endpoints": {{"production": "live"}}, "resources": [{{"method": "GET", "path": "/*"}}]}},
    {{"name": "Typo", "context": "/typo", "version": "1.0.0", "security": [],
      "endpoints": {{"production": "no_such_cluster"}}, "resources": [{{"method": "GET", "path": "/*"}}]}}
  ]
}}"#
    )
}

struct Stack {
    envoy: Envoy,
    backend: Backend,
    silent: Silent,
}

fn stack_with(errors: &str, extra_filters: &str) -> Stack {
    let backend = Backend::start();
    let silent = Silent::start();
    let setup = EnvoySetup {
        clusters: vec![
            ("live".to_string(), backend.port),
            ("closed".to_string(), free_port()),
            ("silent".to_string(), silent.port),
        ],
        route_timeout: Duration::from_secs(1),
        extra_filters: extra_filters.to_string(),
        ..Default::default()
    };
    let envoy = Envoy::start(&filter_config(errors), setup);
    Stack { envoy, backend, silent }
}

fn stack(errors: &str) -> Stack {
    stack_with(errors, "")
}

fn assert_fault(response: &common::Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "status; body: {}", response.body);
    assert_eq!(response.json()["code"], code, "body: {}", response.body);
    assert!(response.header("content-type").unwrap_or("").starts_with("application/json"), "{:?}", response.headers);
}

#[test]
fn unknown_api_answers_the_gateway_404_fault() {
    let stack = stack("{}");
    let response = stack.envoy.get("/nowhere/1.0.0/items");
    assert_eq!(
        response.body,
        r#"{"code":"404","type":"Status report","message":"Not Found","description":"The requested resource is not available."}"#
    );
    assert_eq!(response.status, 404);
    assert_fault(&stack.envoy.get("/shop/2.0.0/items"), 404, "404");
    assert!(stack.backend.requests().is_empty(), "nothing reaches the backend");
}

#[test]
fn unknown_resource_or_wrong_method_answers_900906() {
    let stack = stack("{}");
    let response = stack.envoy.get("/shop/1.0.0/drinks");
    assert_fault(&response, 403, "900906");
    assert_eq!(response.json()["message"], "No matching resource found in the API for the given request");
    assert_fault(&stack.envoy.send("DELETE", "/shop/1.0.0/items", &[], None), 403, "900906");
    assert_fault(&stack.envoy.send("POST", "/shop/1.0.0/items", &[], Some(b"{}")), 403, "900906");
    // Paths that cannot be matched safely are refused, never forwarded.
    for path in ["/shop/1.0.0/x/../items", "/shop/1.0.0/items%2F1", "/shop/1.0.0/%2e%2e/items"] {
        assert_fault(&stack.envoy.get(path), 403, "900906");
    }
    assert!(stack.backend.requests().is_empty(), "nothing reaches the backend");
}

#[test]
fn blocked_api_answers_503_700700() {
    let stack = stack("{}");
    let response = stack.envoy.get("/legacy/1.0.0/anything");
    assert_fault(&response, 503, "700700");
    assert_eq!(response.json()["message"], "API blocked");
    assert!(stack.backend.requests().is_empty());
}

#[test]
fn matched_requests_reach_the_backend_rewritten_with_the_filters_routing_headers() {
    let stack = stack("{}");
    let response = stack.envoy.send(
        "GET",
        "/shop/1.0.0/items/42?color=red",
        &[("x-apim-cluster", "closed"), ("x-apim-api", "Forged:9")],
        None,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let received = stack.backend.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/items/42?color=red");
    assert_eq!(received[0].header("x-apim-api"), Some("Shop:1.0.0"));
    assert_eq!(received[0].header("x-apim-cluster"), Some("live"));
    // Trailing slash, doubled slashes and matrix parameters match the same resource.
    for path in ["/shop/1.0.0/items/", "//shop//1.0.0//items", "/shop/1.0.0/items;jsessionid=7"] {
        assert_eq!(stack.envoy.get(path).status, 200, "{path}");
    }
}

#[test]
fn backend_errors_pass_unchanged() {
    let stack = stack("{}");
    for code in [500, 503, 404, 413] {
        let response = stack.envoy.get(&format!("/shop/1.0.0/status/{code}"));
        assert_eq!(response.status, code);
        assert_eq!(response.body, format!("backend says {code}"));
        assert_eq!(response.header("x-backend"), Some("real"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
    }
}

#[test]
fn closed_port_answers_503_101503() {
    let stack = stack("{}");
    let response = stack.envoy.get("/closed/1.0.0/anything");
    assert_eq!(
        response.body,
        r#"{"code":"101503","type":"Status report","message":"Runtime Error","description":"Error connecting to the back end"}"#
    );
    assert_eq!(response.status, 503);
    assert!(response.header("content-type").unwrap_or("").starts_with("application/json"));
}

#[test]
fn never_answering_upstream_with_1s_timeout_answers_504_101507() {
    let stack = stack("{}");
    let response = stack.envoy.get("/slow/1.0.0/anything");
    assert_fault(&response, 504, "101507");
    assert_eq!(response.json()["type"], "Status report");
    assert!(
        stack.silent.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the request reached the silent upstream"
    );
    // A request with a body, fully sent before the timeout, is REQUEST_DONE as well.
    let response = stack.envoy.send("GET", "/slow/1.0.0/upload", &[], Some(b"complete body"));
    assert_fault(&response, 504, "101507");
}

/// Envoy's own timeouts of a whole stream (the connection manager's `stream_idle_timeout`, its
/// `max_stream_duration`: what bounds a route whose own timeout is off, as a long-running API's
/// is) and a request its cluster drops (`drop_overloads`) are answered with Envoy's plain text
/// like the route's timeout: each becomes the transport fault.
#[test]
fn envoys_stream_timeouts_and_dropped_requests_answer_transport_faults() {
    let silent = Silent::start();
    for timeout in ["stream_idle_timeout: 1s", "common_http_protocol_options: { max_stream_duration: 1s }"] {
        let setup = EnvoySetup {
            clusters: vec![("silent".to_string(), silent.port), ("live".to_string(), free_port())],
            route_timeout: Duration::ZERO,
            connection_manager: vec![timeout.to_string()],
            ..Default::default()
        };
        let envoy = Envoy::start(&filter_config("{}"), setup);
        assert_fault(&envoy.get("/slow/1.0.0/anything"), 504, "101507");
    }
    let setup = EnvoySetup { clusters: vec![("closed".to_string(), free_port())], ..Default::default() };
    let (port, admin_port) = (free_port(), free_port());
    let yaml = common::envoy_yaml(&filter_config("{}"), &setup, port, admin_port).replace(
        "      cluster_name: closed\n",
        "      cluster_name: closed\n      policy: { drop_overloads: [{ category: all, drop_percentage: { numerator: 100 } }] }\n",
    );
    let envoy = Envoy::launch(&yaml, 2, port, admin_port, "envoy").unwrap_or_else(|log| panic!("{log}"));
    assert_fault(&envoy.get("/closed/1.0.0/anything"), 503, "101503");
}

#[test]
fn oversized_request_body_answers_102511() {
    let buffer = r#"          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1024
"#;
    let stack = stack_with("{}", buffer);
    let response = stack.envoy.send("POST", "/shop/1.0.0/upload", &[], Some(&[b'x'; 8192]));
    assert_fault(&response, 400, "102511");
    assert_eq!(response.json()["message"], "Incomplete payload");
    let response = stack.envoy.send("POST", "/shop/1.0.0/upload", &[], Some(&[b'x'; 100]));
    assert_eq!(response.status, 200, "a small body passes: {}", response.body);
}

#[test]
fn secured_resources_are_closed_without_credentials_support() {
    let stack = stack("{}");
    let response = stack.envoy.get("/secure/1.0.0/x");
    assert_fault(&response, 401, "900902");
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#
        )
    );
    let response = stack.envoy.send("GET", "/secure/1.0.0/x", &[("authorization", "Bearer s3cr3t-t0ken-value")], None);
    assert_fault(&response, 401, "900901");
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#
        )
    );
    assert!(
        !response.body.contains("s3cr3t") && !stack.envoy.log().contains("s3cr3t"),
        "the token never appears in the body"
    );
    assert!(stack.backend.requests().is_empty());
}

#[test]
fn every_format_chosen_in_config_is_what_comes_back() {
    let cases: &[(&str, &str)] = &[
        (r#"{"format":"apim-json"}"#, "json"),
        (r#"{"format":"apim-xml"}"#, "xml"),
        (r#"{"format":"microgateway"}"#, "microgateway"),
        (r#"{"format":"choreo-connect"}"#, "choreo"),
        (r#"{"format":"kanali","kanali_docs_url":"https://docs.example/errors"}"#, "kanali"),
        (r#"{"format":"tyk"}"#, "tyk"),
        (
            r#"{"format":"template","template":{"content_type":"text/plain","body":"E{code}/{status}: {message}"}}"#,
            "template",
        ),
    ];
    for (errors, kind) in cases {
        let stack = stack(errors);
        let not_found = stack.envoy.get("/nowhere");
        let refused = stack.envoy.get("/closed/1.0.0/x");
        // Envoy's reply for a cluster that does not exist has no body: the fault brings its own.
        let typo = stack.envoy.get("/typo/1.0.0/x");
        assert!(typo.status >= 500 && !typo.body.is_empty(), "{kind}: {} {:?}", typo.status, typo.body);
        assert!(
            typo.body.contains("101503")
                || typo.body.contains("102507")
                || typo.body.contains("problem proxying")
                || typo.body.contains("E101503")
                || typo.body.contains("\"code\":8"),
            "{kind}: {}",
            typo.body
        );
        match *kind {
            "json" => {
                assert_eq!(
                    (typo.status, typo.body.as_str()),
                    (
                        503,
                        r#"{"code":"101503","type":"Status report","message":"Runtime Error","description":"Error connecting to the back end"}"#
                    )
                );
                assert!(typo.header("content-type").unwrap().starts_with("application/json"));
            }
            "xml" => {
                assert_eq!(not_found.status, 404);
                assert!(not_found.header("content-type").unwrap().starts_with("application/xml"));
                assert!(
                    not_found
                        .body
                        .starts_with(r#"<am:fault xmlns:am="http://wso2.org/apimanager"><am:code>404</am:code>"#),
                    "{}",
                    not_found.body
                );
                assert!(refused.body.contains("<am:code>101503</am:code>"), "{}", refused.body);
            }
            "microgateway" => {
                // The Microgateway's catch-all answer has no `fault` wrapper and a numeric code.
                assert_eq!(
                    (not_found.status, not_found.body.as_str()),
                    (
                        404,
                        r#"{"code":404,"type":"Status report","message":"Runtime Error","description":"No matching resource found for given API Request"}"#
                    )
                );
                assert_eq!(
                    refused.body,
                    r#"{"fault":{"code":"101503","message":"Runtime Error","description":"Error connecting to the back end"}}"#
                );
                // No protocol-state arithmetic: a timeout is 101504 "Connection timed out".
                let slow = stack.envoy.get("/slow/1.0.0/x");
                assert_eq!(
                    (slow.status, slow.body.as_str()),
                    (
                        504,
                        r#"{"fault":{"code":"101504","message":"Runtime Error","description":"Connection timed out"}}"#
                    )
                );
            }
            "choreo" => {
                assert_eq!(not_found.json()["code"], "404");
                assert_eq!(refused.status, 503);
                assert_eq!(refused.json()["code"], "102503");
                assert_eq!(refused.json()["message"], "Upstream connection failed");
                // Choreo Connect answers a missing credential as an invalid one
                // (`setUnauthenticatedErrorToContext`).
                let missing = stack.envoy.get("/secure/1.0.0/x");
                assert_eq!((missing.status, missing.json()["code"].clone()), (401, "900901".into()));
                assert_eq!(missing.json()["error_message"], "Invalid Credentials");
            }
            "kanali" => {
                let body = not_found.json();
                assert_eq!(body["status"], 404);
                assert_eq!(body["code"], 0);
                assert_eq!(body["message"], "No ApiProxy resource was not found that matches the request.");
                assert_eq!(body["details"], "Visit https://docs.example/errors#00 for more details.");
                // Kanali's pairs: code 08 is 502 with its own message.
                assert_eq!(refused.status, 502);
                assert_eq!(refused.json()["code"], 8);
                assert_eq!(refused.json()["status"], 502);
                assert_eq!(
                    refused.json()["message"],
                    "Could not get a valid or any response from the upstream server."
                );
                let missing = stack.envoy.get("/secure/1.0.0/x");
                assert_eq!((missing.status, missing.json()["code"].clone()), (401, 13.into()));
            }
            "tyk" => {
                assert_eq!(not_found.status, 404);
                assert_eq!(not_found.body, r#"{"error":"API not found"}"#);
                let missing = stack.envoy.get("/secure/1.0.0/x");
                assert_eq!(
                    (missing.status, missing.body.as_str()),
                    (401, r#"{"error":"Authorization Field Missing"}"#)
                );
                assert_eq!(refused.status, 500);
            }
            "template" => {
                assert_eq!(not_found.header("content-type"), Some("text/plain"));
                assert_eq!(not_found.body, "E404/404: Not Found");
                assert_eq!(refused.body, "E101503/503: Runtime Error");
            }
            other => panic!("unknown case {other}"),
        }
    }
}

#[test]
fn status_override_to_555_is_honoured() {
    let stack = stack(
        r#"{"overrides":{"700700":{"status":555,"description":"Closed for renovation"},"101503":{"status":502}}}"#,
    );
    let response = stack.envoy.get("/legacy/1.0.0/x");
    assert_eq!(response.status, 555);
    assert_eq!(response.json()["code"], "700700");
    assert_eq!(response.json()["description"], "Closed for renovation");
    assert_eq!(stack.envoy.get("/closed/1.0.0/x").status, 502);
}

#[test]
fn responses_carry_cors_headers_and_preflights_are_answered() {
    let stack = stack(r#"{"cors":{"allow_origins":["https://app.example"],"allow_credentials":true,"max_age_s":600}}"#);
    let response = stack.envoy.send("GET", "/nowhere", &[("origin", "https://app.example")], None);
    assert_eq!(response.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(response.header("access-control-allow-credentials"), Some("true"));
    let response = stack.envoy.send("GET", "/closed/1.0.0/x", &[("origin", "https://app.example")], None);
    assert_eq!(response.json()["code"], "101503");
    assert_eq!(response.header("access-control-allow-origin"), Some("https://app.example"));
    let response = stack.envoy.send("GET", "/nowhere", &[("origin", "https://evil.example")], None);
    assert_eq!(response.header("access-control-allow-origin"), None);
    let preflight = stack.envoy.send(
        "OPTIONS",
        "/shop/1.0.0/items",
        &[("origin", "https://app.example"), ("access-control-request-method", "GET")],
        None,
    );
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("GET"), "the resource's methods");
    // As WSO2's CORSRequestHandler: the methods of the path template that takes the requested
    // one; a method no resource there takes is refused as any unmatched request.
    let ask = |path: &str, method: &str| {
        stack.envoy.send(
            "OPTIONS",
            path,
            &[("origin", "https://app.example"), ("access-control-request-method", method)],
            None,
        )
    };
    assert_eq!(ask("/shop/1.0.0/items/7", "DELETE").header("access-control-allow-methods"), Some("GET,DELETE"));
    let refused = ask("/shop/1.0.0/items", "DELETE");
    assert_fault(&refused, 403, "900906");
    assert_eq!(refused.header("access-control-allow-origin"), Some("https://app.example"), "a fault's CORS headers");
    assert!(stack.backend.requests().is_empty(), "preflights are answered by the gateway");
    // The backend's answer too, as WSO2's CORS handler: a browser the preflight allowed can read it.
    let answered = stack.envoy.send("GET", "/shop/1.0.0/items", &[("origin", "https://app.example")], None);
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(answered.header("access-control-allow-origin"), Some("https://app.example"), "the backend's answer");
    assert_eq!(answered.header("access-control-allow-credentials"), Some("true"));
    assert!(answered.header("vary").is_some_and(|vary| vary.contains("Origin")), "{:?}", answered.headers);
}

#[test]
fn fault_counters_move_in_envoy_stats() {
    let stack = stack("{}");
    let before = stack.envoy.stat("wasmcustom.apim.fault.900906");
    for _ in 0..3 {
        stack.envoy.get("/shop/1.0.0/drinks");
    }
    stack.envoy.get("/closed/1.0.0/x");
    // Counters are flushed per worker; poll until they show (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resource = stack.envoy.stat("wasmcustom.apim.fault.900906");
        let transport = stack.envoy.stat("wasmcustom.apim.fault.101503");
        if resource == before + 3 && transport == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counters: 900906={resource}, 101503={transport}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unmatched_requests_pass_through_when_configured() {
    let backend = Backend::start();
    let config = r#"{"unmatched":"pass_through","apis":[{"name":"Shop","context":"/shop","version":"1.0.0",
        "security":[],"endpoints":{"production":"live"},"resources":[{"method":"GET","path":"/items"}]}]}"#;
    let envoy =
        Envoy::start(config, EnvoySetup { clusters: vec![("live".into(), backend.port)], ..Default::default() });
    let response = envoy.send("GET", "/elsewhere", &[("x-apim-cluster", "live")], None);
    assert_eq!((response.status, response.body.as_str()), (418, "passed through unmatched"));
    assert!(backend.requests().is_empty(), "a client cannot route itself with x-apim-cluster");
    assert_eq!(envoy.get("/shop/1.0.0/items").status, 200);
}
