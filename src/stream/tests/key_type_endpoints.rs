//! Tests of a key type the API has no endpoint for (900901): refused after throttling, and
//! counted, as API-M refuses it in the API's in-sequence (`_production_key_error_`,
//! `_sandbox_key_error_`), after its authentication and throttle handlers.

use super::*;

const SANDBOX_KEY: &str = "k-SANDBOX-0123456789";

/// A production-only API with an API key resource under a subscription tier of two a minute, and
/// a sandbox-only API whose open resource admits two a minute; an application holding a sandbox
/// key and a production one (its counter slots prepared in `host`, as at configure time).
fn config(host: &mut FakeHost) -> Rc<Config> {
    let json = format!(
        r#"{{"apis":[{{"name":"Prod","context":"/prod","version":"1","security":["api_key"],
                  "endpoints":{{"production":"prod-backend"}},
                  "resources":[{{"method":"GET","path":"/menu"}}]}},
                 {{"name":"Sand","context":"/sand","version":"1","security":[],
                  "endpoints":{{"sandbox":"sand-backend"}},
                  "resources":[{{"method":"GET","path":"/menu","policy":"TwoPerMinute"}}]}}],
          "policies":{{"TwoPerMinute":{{"requests":2,"per":"minute"}},"Two":{{"requests":2,"per":"minute"}}}},
          "applications":[{{"id":"app-1","name":"App",
                            "api_keys":[{{"sha256":"{}","key_type":"SANDBOX"}},{{"sha256":"{}"}}]}}],
          "subscriptions":[{{"application":"app-1","api":"Prod:1","tier":"Two"}}]}}"#,
        crate::hashing::hex(&credential_hash(SANDBOX_KEY)),
        crate::hashing::hex(&credential_hash("k-PRODUCTION-0123456789"))
    );
    let mut config = Config::from_json(json.as_bytes()).unwrap();
    crate::stream::prepare_counters(host, &mut config);
    Rc::new(config)
}

/// Sends `requests` requests one after another in one minute: each answer's status and code.
fn answers(path: &str, api_key: Option<&str>, requests: usize) -> Vec<(u16, String)> {
    let mut host = FakeHost::default();
    let config = config(&mut host);
    host.now = 1_800_000_000;
    (0..requests)
        .map(|_| {
            host.request = [(":method", "GET"), (":path", path)]
                .into_iter()
                .chain(api_key.map(|key| ("apikey", key)))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            host.sent = None;
            assert_eq!(stream(Rc::clone(&config)).on_request_headers(&mut host, true), Flow::Answered);
            let (status, _, body) = host.sent.take().unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (status, body["code"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_sandbox_key_without_a_sandbox_endpoint_is_throttled_before_it_is_refused() {
    let got = answers("/prod/1/menu", Some(SANDBOX_KEY), 3);
    let refused = (403, "900901".to_string());
    assert_eq!(got, [refused.clone(), refused, (429, "900804".to_string())], "counted under its subscription");
}

#[test]
fn keyless_traffic_to_an_api_without_a_production_endpoint_is_throttled_before_it_is_refused() {
    let got = answers("/sand/1/menu", None, 3);
    let refused = (403, "900901".to_string());
    assert_eq!(got, [refused.clone(), refused, (429, "900802".to_string())], "counted under its resource");
}
