//! Tests of what clients choose in counter keys (a custom policy's `$clientIp`): a key they pick
//! must not be able to take the place of another caller's counter.

use super::*;

/// Two APIs: an open one with a custom policy per client address, and another whose API-level
/// policy every caller of it shares.
const TWO_APIS: &str = r#"{
    "apis": [
        {"name": "O", "context": "/o", "version": "1", "security": [],
            "endpoints": {"production": "open"}, "resources": [{"method": "GET", "path": "/x"}]},
        {"name": "V", "context": "/v", "version": "1", "security": [], "policy": "Shared",
            "endpoints": {"production": "victim"}, "resources": [{"method": "GET", "path": "/x"}]}],
    "policies": {"Shared": {"requests": 100000, "per": "minute"}},
    "custom_policies": [{"name": "per_ip", "key": "$clientIp", "requests": 1000, "per": "minute",
        "apis": ["O:1"]}]
}"#;

/// The addresses of one IPv6 /64 whose custom-policy counter keys fall, with the slot hash an
/// attacker can compute offline (FNV-1a of the key, modulo the default 4,096 slots), in the slot
/// of the victim API's counter.
fn addresses_in_the_slot_of(victim_key: &str, wanted: usize) -> Vec<String> {
    let slot = |key: &str| crate::hashing::fnv1a(0, key.as_bytes()) % 4096;
    let target = slot(victim_key);
    (1u64..)
        .map(|n| {
            format!("2001:db8:0:1:{:x}:{:x}:{:x}:{:x}", n >> 48, (n >> 32) & 0xffff, (n >> 16) & 0xffff, n & 0xffff)
        })
        .map(|text| text.parse::<std::net::IpAddr>().unwrap().to_string())
        // The key as planning builds it: the address's `:` escaped in the template, and again
        // as a part of the counter's key.
        .filter(|ip| slot(&format!("custom:per_ip:{}", ip.replace(':', "%253A"))) == target)
        .take(wanted)
        .collect()
}

#[test]
fn client_chosen_counter_keys_cannot_fill_the_slot_of_another_callers_counter() {
    // As the filter does: the configuration that serves is the one its counters were prepared for.
    let mut shared = FakeHost::default();
    let mut prepared = Config::from_json(TWO_APIS.as_bytes()).unwrap();
    prepare_counters(&mut shared, &mut prepared);
    let config = Rc::new(prepared);
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let request = |shared: &mut FakeHost, path: &str, ip: &str| {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", path)]);
        host.now = 1_000;
        host.shared = std::mem::take(&mut shared.shared);
        host.properties.insert("source.address".into(), format!("[{ip}]:40000").into_bytes());
        let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&worker));
        let flow = stream.on_request_headers(&mut host, true);
        shared.shared = std::mem::take(&mut host.shared);
        (flow, host.sent.map(|(status, _, _)| status))
    };
    // One client with a /64 sends one request from each of 256 addresses chosen offline.
    for ip in addresses_in_the_slot_of("api:/v:1", 256) {
        assert_eq!(request(&mut shared, "/o/1/x", &ip), (Flow::Continue, None), "{ip}");
    }
    // Every caller of the other API is still counted, and let through.
    assert_eq!(request(&mut shared, "/v/1/x", "192.0.2.7"), (Flow::Continue, None), "the API's counter found room");
}
