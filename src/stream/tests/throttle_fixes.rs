//! Focused tests of throttling decisions the audit against WSO2's `ThrottleHandler`
//! (`throttle_audit.rs`) found the filter making otherwise: open resources under the
//! `Unauthenticated` tier per client address, and a request let through over a subscription
//! quota without stop-on-quota-reach, which WSO2 checks and counts nowhere else.

use super::*;

const START: u64 = 1_800_000_000;

/// A configuration prepared as Envoy's `on_configure` does, and a `GET` through it: the status
/// and body of the fault, or `None` when forwarded (with whether it was flagged).
struct Gateway {
    host: FakeHost,
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
}

impl Gateway {
    fn new(json: &str) -> Gateway {
        let mut host = FakeHost { now: START, ..Default::default() };
        let mut config = Config::from_json(json.as_bytes()).unwrap();
        crate::stream::prepare_counters(&mut host, &mut config);
        let config = Rc::new(config);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        Gateway { host, config, worker }
    }

    fn get(&mut self, ip: &str, path: &str, apikey: Option<&str>) -> Result<bool, (u16, String)> {
        let mut pairs = vec![(":method", "GET"), (":path", path)];
        pairs.extend(apikey.map(|key| ("apikey", key)));
        self.host.request = pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        self.host.properties.insert("source.address".into(), format!("{ip}:1000").into_bytes());
        self.host.sent = None;
        let mut stream = Stream::new(Rc::clone(&self.config), Rc::clone(&self.worker));
        match stream.on_request_headers(&mut self.host, true) {
            Flow::Continue => Ok(self.host.request.contains_key("x-apim-quota-exceeded")),
            _ => {
                let (status, _, body) = self.host.sent.clone().unwrap();
                Err((status, String::from_utf8(body).unwrap()))
            }
        }
    }
}

/// An open resource is throttled per client address under the `Unauthenticated` subscription
/// tier, as WSO2's gateway authenticates it as its address (`handleNoAuthentication`): each
/// address has the tier's limit on each API, answered 900804.
#[test]
fn an_open_resource_counts_each_client_address_under_the_unauthenticated_tier() {
    let json = r#"{"apis":[{"name":"P","context":"/p","version":"1","default_version":true,"security":[],
        "endpoints":{"production":"b"},
        "resources":[{"method":"GET","path":"/menu"}]}],"policies":{"Unauthenticated":{"requests":2,"per":"minute"}}}"#;
    let mut gateway = Gateway::new(json);
    let mut get =
        |ip: &str, path: &str| gateway.get(ip, path, None).map_err(|(status, body)| (status, body.contains("900804")));
    assert_eq!(get("10.0.0.1", "/p/1/menu"), Ok(false));
    assert_eq!(get("10.0.0.1", "/p/menu"), Ok(false), "the default version is the same API");
    assert_eq!(get("10.0.0.1", "/p/1/menu"), Err((429, true)), "the address's third request in the minute");
    assert_eq!(get("10.0.0.2", "/p/1/menu"), Ok(false), "another address counts apart");
}

/// Over a subscription quota without stop-on-quota-reach, WSO2's ThrottleHandler lets a request
/// through flagged without checking the application level (nor custom policies, the hard limit)
/// and publishes no event for it: it counts nowhere, the API level included.
#[test]
fn a_request_over_a_soft_subscription_quota_is_checked_and_counted_nowhere_else() {
    let key = |name: &str| crate::hashing::hex(&credential_hash(name));
    let json = format!(
        r#"{{"apis":[{{"name":"P","context":"/p","version":"1","security":["api_key"],"policy":"Api3","endpoints":{{"production":"b"}},
            "resources":[{{"method":"GET","path":"/menu"}}]}}],
        "applications":[{{"id":"a","name":"A","owner":"alice","policy":"App2","api_keys":[{{"sha256":"{}"}}]}},
                        {{"id":"b","name":"B","owner":"bob","api_keys":[{{"sha256":"{}"}}]}}],
        "subscriptions":[{{"application":"a","api":"P:1","tier":"Soft1"}},{{"application":"b","api":"P:1","tier":"Unlimited"}}],
        "policies":{{"Api3":{{"requests":3,"per":"minute"}},"App2":{{"requests":2,"per":"minute"}},
                     "Soft1":{{"requests":1,"per":"minute","stop_on_quota_reach":false}}}}}}"#,
        key("key-a"),
        key("key-b")
    );
    let mut gateway = Gateway::new(&json);
    let mut get = |apikey: &str| gateway.get("10.0.0.1", "/p/1/menu", Some(apikey)).map_err(|(status, _)| status);
    assert_eq!(get("key-a"), Ok(false), "within every limit");
    assert_eq!(get("key-a"), Ok(true), "over the subscription quota: flagged");
    assert_eq!(get("key-a"), Ok(true), "the application level was not checked nor counted for the last one");
    // The flagged requests counted nowhere: the API level has two of its three left.
    assert_eq!(get("key-b"), Ok(false));
    assert_eq!(get("key-b"), Ok(false));
    assert_eq!(get("key-b"), Err(429));
}
