//! Focused tests of throttling decisions the audit against WSO2's `ThrottleHandler`
//! (`throttle_audit.rs`) found the filter making otherwise: open resources under the
//! `Unauthenticated` tier per client address.

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
