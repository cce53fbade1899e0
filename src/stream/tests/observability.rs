//! What operators see of a stream: per-API and per-application counters, access-log fields,
//! and responses the filter leaves alone.

use super::*;

fn config_of(json: &str) -> Rc<Config> {
    Rc::new(Config::from_json(json.as_bytes()).unwrap())
}

#[test]
fn a_blocked_api_refusal_is_counted_per_api_at_lifecycle_and_logged_with_its_api() {
    let config = config_of(
        r#"{"apis":[{"name":"P","context":"/p","version":"1","security":[],"lifecycle":"BLOCKED",
        "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#,
    );
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    let mut stream = stream(config);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!(host.counted, vec![700700]);
    // README: per-API refused counters with level `lifecycle`; and the access log names the API.
    assert!(
        host.counters.contains(&"apim.api.P.version.1.refused.code.700700.level.lifecycle".to_string()),
        "{:?}",
        host.counters
    );
    assert_eq!(host.properties.get("apim.api_name").map(Vec::as_slice), Some(&b"P"[..]));
    assert_eq!(host.properties.get("apim.api_context").map(Vec::as_slice), Some(&b"/p/1"[..]));
    assert!(!host.properties.contains_key("apim.api_resource"), "no resource matched");
}

#[test]
fn a_wrong_method_on_a_known_api_is_counted_per_api_at_routing_and_logged_with_its_api() {
    let mut host = FakeHost::request(&[(":method", "DELETE"), (":path", "/p/1/menu")]);
    let mut stream = stream(config());
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!(host.counted, vec![900906]);
    assert!(
        host.properties.contains_key("apim.api_name"),
        "no API field in the access log: {:?}",
        host.properties.keys()
    );
    assert!(
        host.counters.contains(&"apim.api.P.version.1.refused.code.900906.level.routing".to_string()),
        "{:?}",
        host.counters
    );
}

#[test]
fn pass_through_responses_are_untouched_and_uncounted() {
    let config = config_of(
        r#"{"unmatched":"pass_through","apis":[{"name":"P","context":"/p","version":"1","security":[],
        "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#,
    );
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/website/index.html")]);
    let mut stream = stream(config);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
    // Envoy's own route for the website: its upstream is down.
    host.response.insert(":status".into(), b"503".to_vec());
    host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
    host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
    assert_eq!(stream.on_response_headers(&mut host), Flow::Continue, "CONFIG.md: pass_through is untouched");
    assert!(
        host.sent.is_none(),
        "replaced by {:?}",
        host.sent.as_ref().map(|s| String::from_utf8_lossy(&s.2).into_owned())
    );
    assert!(host.counters.is_empty(), "{:?}", host.counters);
    assert!(host.properties.keys().all(|k| !k.starts_with("apim.")), "{:?}", host.properties.keys());
}

#[test]
fn two_apis_never_share_a_stats_prefix() {
    let config = config_of(
        r#"{"apis":[
        {"name":"注文","context":"/order","version":"1.0.0","security":[],"endpoints":{"production":"a"},"resources":[{"method":"GET","path":"/x"}]},
        {"name":"在庫","context":"/stock","version":"1.0.0","security":[],"endpoints":{"production":"b"},"resources":[{"method":"GET","path":"/x"}]},
        {"name":"Pizza Shack","context":"/ps1","version":"1.0.0","security":[],"endpoints":{"production":"c"},"resources":[{"method":"GET","path":"/x"}]},
        {"name":"Pizza_Shack","context":"/ps2","version":"1.0.0","security":[],"endpoints":{"production":"d"},"resources":[{"method":"GET","path":"/x"}]}]}"#,
    );
    let mut allowed = Vec::new();
    for path in ["/order/1.0.0/x", "/stock/1.0.0/x", "/ps1/1.0.0/x", "/ps2/1.0.0/x"] {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", path)]);
        let mut stream = stream(Rc::clone(&config));
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
        allowed.extend(host.counters.into_iter().filter(|name| name.ends_with(".allowed")));
    }
    let distinct: std::collections::HashSet<_> = allowed.iter().collect();
    assert_eq!(distinct.len(), 4, "four APIs, counted in {allowed:?}");
}

#[test]
fn two_applications_of_one_name_are_counted_apart() {
    let (alice_key, bob_key) = ("alice-key-0123456789abcdef", "bob-key-0123456789abcdef");
    let json = format!(
        r#"{{"apis":[{{"name":"P","context":"/p","version":"1","security":["api_key"],"endpoints":{{"production":"backend"}},
            "resources":[{{"method":"GET","path":"/menu"}}]}}],
          "applications":[{{"id":"a1","name":"DefaultApplication","owner":"alice","api_keys":[{{"sha256":"{}"}}]}},
                          {{"id":"b2","name":"DefaultApplication","owner":"bob","api_keys":[{{"sha256":"{}"}}]}}],
          "subscriptions":[{{"application":"a1","api":"P:1"}},{{"application":"b2","api":"P:1"}}]}}"#,
        crate::hashing::hex(&credential_hash(alice_key)),
        crate::hashing::hex(&credential_hash(bob_key))
    );
    let config = config_of(&json);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut counted = Vec::new();
    for key in [alice_key, bob_key] {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("apikey", key)]);
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue, "{:?}", host.sent);
        counted.extend(host.counters.into_iter().filter(|name| name.starts_with("apim.application.")));
    }
    assert_eq!(
        counted,
        [
            "apim.application.DefaultApplication.owner.alice.allowed",
            "apim.application.DefaultApplication.owner.bob.allowed"
        ]
    );
}

#[test]
fn a_status_override_does_not_move_a_fault_between_wso2_analytics_sub_categories() {
    // WSO2's FaultCodeClassifier reads the error code (404 is RESOURCE_NOT_FOUND), never the
    // status the client was sent; an operator's status override must not change the dashboards.
    let config = config_of(
        r#"{"errors":{"overrides":{"not_found":{"status":400},"700700":{"status":404}}},
        "apis":[{"name":"P","context":"/p","version":"1","security":[],"lifecycle":"BLOCKED",
        "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#,
    );
    for (path, status, code, sub_category) in
        [("/nowhere", 400, "404", "RESOURCE_NOT_FOUND"), ("/p/1/menu", 404, "700700", "UNCLASSIFIED")]
    {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", path)]);
        let mut stream = stream(Rc::clone(&config));
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
        assert_eq!(host.sent.as_ref().map(|sent| sent.0), Some(status), "the override is sent");
        let field = |name: &str| host.properties.get(name).map(|value| String::from_utf8_lossy(value).into_owned());
        assert_eq!(field("apim.error_code").as_deref(), Some(code));
        assert_eq!(field("apim.error_type").as_deref(), Some("OTHER"));
        assert_eq!(field("apim.error_message").as_deref(), Some(sub_category), "{path}");
    }
}

/// WSO2 publishes a key offered to an API without its key type's endpoint (900901, after the
/// handlers authorized the application) as an AUTH fault, whose application is `UNKNOWN`
/// (carbon-apimgt `AuthFaultDataCollector`): the access log names no application for it.
#[test]
fn a_key_without_its_endpoint_is_logged_as_an_auth_fault_without_its_application() {
    let config = config_of(&format!(
        r#"{{"apis":[{{"name":"P","context":"/p","version":"1","security":["api_key"],
        "endpoints":{{"production":"backend"}},"resources":[{{"method":"GET","path":"/menu"}}]}}],
        "applications":[{{"id":"app1","name":"App","owner":"alice",
            "api_keys":[{{"sha256":"{}","key_type":"SANDBOX"}},{{"sha256":"{}","key_type":"PRODUCTION"}}]}}],
        "subscriptions":[{{"application":"app1","api":"P:1","tier":"Unlimited"}}]}}"#,
        crate::hashing::hex(&credential_hash("sandbox-key")),
        crate::hashing::hex(&credential_hash("production-key"))
    ));
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("apikey", "sandbox-key")]);
    let mut stream = stream(config);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!(host.counted, vec![900901]);
    let field = |name: &str| host.properties.get(name).map(|value| String::from_utf8_lossy(value).into_owned());
    assert_eq!(field("apim.error_type").as_deref(), Some("AUTH"));
    assert_eq!(field("apim.error_message").as_deref(), Some("AUTHENTICATION_FAILURE"));
    for name in ["apim.application_id", "apim.application_name", "apim.application_owner", "apim.key_type"] {
        assert_eq!(field(name), None, "{name}");
    }
    assert_eq!(field("apim.api_name").as_deref(), Some("P"));
}

#[test]
fn without_access_log_fields_no_property_is_set_in_either_encoding() {
    for encoding in ["properties", "struct"] {
        let json = format!(
            r#"{{"observability": {{"access_log_fields": false, "access_log_encoding": "{encoding}"}},
            "apis":[{{"name":"P","context":"/p","version":"1","security":[],
            "endpoints":{{"production":"backend"}},"resources":[{{"method":"GET","path":"/menu"}}]}}]}}"#
        );
        let config = Rc::new(Config::from_json(json.as_bytes()).unwrap());
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut filter = stream(config);
        assert_eq!(filter.on_request_headers(&mut host, true), Flow::Continue);
        host.response.insert(":status".into(), b"200".to_vec());
        assert_eq!(filter.on_response_headers(&mut host), Flow::Continue);
        assert!(
            !host.properties.keys().any(|name| name.starts_with("apim")),
            "{encoding}: {:?}",
            host.properties.keys()
        );
    }
}
