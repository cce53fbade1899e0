//! Tests of several gateways in one Envoy (two listeners, each with its own filter configuration,
//! under one `vm_id`): they share Envoy's shared data, and what one keeps there must not serve,
//! count for or be dropped by the other; two workers of one gateway still share it all.

use super::*;
use crate::stream::background;

/// Runs `worker`'s root-context tick, answering each call it starts with `answer(cluster, path)`
/// (one at a time, as Envoy would) until no work is left. The paths asked, in order.
pub(super) fn tick_answering(
    host: &mut FakeHost,
    config: &Config,
    worker: &RefCell<Worker>,
    mut answer: impl FnMut(&str, &str) -> Answer,
) -> Vec<String> {
    let mut jobs = background::tick(host, config, &mut worker.borrow_mut());
    let mut asked = Vec::new();
    while let Some((token, job)) = jobs.pop() {
        let (cluster, headers, _) = &host.dispatched[token as usize - 1];
        let path = headers.iter().find(|(name, _)| name == ":path").map(|(_, v)| v.clone()).unwrap();
        let reply = answer(cluster, &path);
        asked.push(path);
        jobs.extend(background::answered(host, config, &mut worker.borrow_mut(), job, &reply, &|_, _| Vec::new()));
    }
    asked
}

pub(super) const NOW: u64 = 1_800_000_000;

/// A gateway serving `/p/1` (open) under an API policy of `per_minute` requests.
fn limited(gateway: &str, per_minute: u64, slots: u32) -> String {
    format!(
        r#"{{"gateway": "{gateway}", "throttling": {{"counter_slots": {slots}}},
        "apis":[{{"name":"P","context":"/p","version":"1","security":[],"policy":"Limit",
        "endpoints":{{"production":"backend"}},"resources":[{{"method":"GET","path":"/menu"}}]}}],
        "policies": {{"Limit": {{"requests": {per_minute}, "per": "minute"}}}}}}"#
    )
}

/// One gateway's filter: its configuration (prepared on `shared` as Envoy's `on_configure` does)
/// and one worker's state.
pub(super) struct Gateway {
    pub(super) config: Rc<Config>,
    pub(super) worker: Rc<RefCell<Worker>>,
}

impl Gateway {
    pub(super) fn configure(shared: &mut HashMap<String, (Vec<u8>, u32)>, json: &str) -> Gateway {
        let mut host = FakeHost { shared: std::mem::take(shared), now: NOW, ..Default::default() };
        let mut config = Config::from_json(json.as_bytes()).unwrap();
        prepare_counters(&mut host, &mut config);
        *shared = host.shared;
        let config = Rc::new(config);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        Gateway { config, worker }
    }

    /// Another worker of the same gateway (its own VM state, the Envoy's shared data).
    fn other_worker(&self) -> Gateway {
        let worker = Rc::new(RefCell::new(Worker::new(&self.config)));
        Gateway { config: Rc::clone(&self.config), worker }
    }

    /// A `GET` of `path` without credentials: the status of the fault, or `None` when forwarded.
    fn get(&self, shared: &mut HashMap<String, (Vec<u8>, u32)>, path: &str) -> Option<u16> {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", path)]);
        host.now = NOW;
        host.shared = std::mem::take(shared);
        let mut stream = Stream::new(Rc::clone(&self.config), Rc::clone(&self.worker));
        stream.on_request_headers(&mut host, true);
        *shared = host.shared;
        host.sent.map(|(status, _, _)| status)
    }

    /// Runs this gateway's background work until no call is left, answering each control-plane
    /// call with `answer(path)`.
    pub(super) fn run_background(&self, shared: &mut HashMap<String, (Vec<u8>, u32)>, answer: &dyn Fn(&str) -> String) {
        let mut host = FakeHost { shared: std::mem::take(shared), now: NOW, ..Default::default() };
        let mut jobs = background::tick(&mut host, &self.config, &mut self.worker.borrow_mut());
        while let Some((token, job)) = jobs.pop() {
            let (_, headers, _) = host.dispatched[token as usize - 1].clone();
            let path = headers.iter().find(|(name, _)| name == ":path").map(|(_, v)| v.clone()).unwrap();
            let body = answer(&path).into_bytes();
            let reply = Answer::Http { status: 200, body };
            let next =
                background::answered(&mut host, &self.config, &mut self.worker.borrow_mut(), job, &reply, &|_, _| {
                    Vec::new()
                });
            jobs.extend(next);
        }
        *shared = host.shared;
    }
}

#[test]
fn two_gateways_count_an_api_of_the_same_context_apart_and_each_keeps_its_slot_count() {
    let mut shared = HashMap::new();
    let internal = Gateway::configure(&mut shared, &limited("internal", 2, 64));
    let external = Gateway::configure(&mut shared, &limited("external", 100, 4096));
    assert_eq!(external.config.throttle.settings.counter_slots, 4096, "its own slots, not the first gateway's");
    assert_eq!(internal.config.throttle.settings.counter_slots, 64);
    // The external gateway's traffic is its own: it spends nothing of the internal one's limit.
    for _ in 0..5 {
        assert_eq!(external.get(&mut shared, "/p/1/menu"), None);
    }
    assert_eq!(internal.get(&mut shared, "/p/1/menu"), None, "the internal gateway's first request");
    // Two workers of one gateway count together: its limit holds across them.
    assert_eq!(internal.other_worker().get(&mut shared, "/p/1/menu"), None);
    assert_eq!(internal.get(&mut shared, "/p/1/menu"), Some(429), "the third of two per minute, on any worker");
    assert_eq!(external.get(&mut shared, "/p/1/menu"), None);
}

#[test]
fn a_named_gateways_stats_carry_its_name_and_the_one_gateways_keep_theirs() {
    for (name, prefix) in [("internal", "apim.gw.internal."), ("", "apim.")] {
        let json = limited(name, 1, 64);
        let json = if name.is_empty() { json.replacen(r#""gateway": "", "#, "", 1) } else { json };
        let mut shared = HashMap::new();
        let gateway = Gateway::configure(&mut shared, &json);
        let mut counted = Vec::new();
        for _ in 0..2 {
            let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
            host.now = NOW;
            host.shared = std::mem::take(&mut shared);
            Stream::new(Rc::clone(&gateway.config), Rc::clone(&gateway.worker)).on_request_headers(&mut host, true);
            shared = host.shared;
            counted.extend(host.counters);
        }
        assert!(counted.iter().any(|stat| stat.ends_with(".allowed")), "{counted:?}");
        assert!(counted.iter().any(|stat| stat.ends_with("fault.900800")), "{counted:?}");
        assert!(counted.iter().all(|stat| stat.starts_with(prefix) && !stat[prefix.len()..].starts_with("gw.")));
    }
}

#[test]
fn a_gateway_reconfigured_keeps_counting_where_it_was() {
    let mut shared = HashMap::new();
    let before = Gateway::configure(&mut shared, &limited("internal", 2, 64));
    assert_eq!(before.get(&mut shared, "/p/1/menu"), None);
    assert_eq!(before.get(&mut shared, "/p/1/menu"), None);
    // A live update of the same gateway (another slot count asked for): the counts go on.
    let after = Gateway::configure(&mut shared, &limited("internal", 2, 128));
    assert_eq!(after.config.throttle.settings.counter_slots, 64, "the running count is kept");
    assert_eq!(after.get(&mut shared, "/p/1/menu"), Some(429));
}

fn fixture(resource: &str) -> &'static str {
    match resource {
        "apis" => include_str!("../../../tests/cp/fixtures/apis.json"),
        "subscription-policies" => include_str!("../../../tests/cp/fixtures/subscription-policies.json"),
        "application-policies" => include_str!("../../../tests/cp/fixtures/application-policies.json"),
        "api-policies" => include_str!("../../../tests/cp/fixtures/api-policies.json"),
        "applications" => include_str!("../../../tests/cp/fixtures/applications.json"),
        "subscriptions" => include_str!("../../../tests/cp/fixtures/subscriptions.json"),
        "application-key-mappings" => include_str!("../../../tests/cp/fixtures/application-key-mappings.json"),
        "block" => include_str!("../../../tests/cp/fixtures/block.json"),
        _ => include_str!("../../../tests/cp/fixtures/revokedjwt.json"),
    }
}

/// A WSO2 control plane: PizzaShackAPI is deployed to the gateway label `internal` only.
pub(super) fn control_plane(path: &str) -> String {
    let resource = path.trim_start_matches("/internal/data/v1/");
    let (resource, query) = resource.split_once('?').unwrap_or((resource, ""));
    if resource == "apis" && !query.contains("gatewayLabel=internal") {
        return r#"{"count":0,"list":[]}"#.to_string();
    }
    fixture(resource).to_string()
}

fn reads_control_plane(gateway: &str) -> String {
    format!(
        r#"{{"gateway": "{gateway}", "control_plane": {{"cluster": "cp", "username": "gw", "password": "secret",
        "gateway_label": "{gateway}", "endpoints": {{"PizzaShackAPI": {{"production": "live"}}}}}}}}"#
    )
}

#[test]
fn two_gateways_of_one_control_plane_each_serve_the_apis_of_their_own_label() {
    let mut shared = HashMap::new();
    let internal = Gateway::configure(&mut shared, &reads_control_plane("internal"));
    internal.run_background(&mut shared, &control_plane);
    assert_eq!(internal.get(&mut shared, "/pizzashack/1.0.0/menu"), Some(401), "found, and asks for a token");
    // A second listener with the external gateway's filter is added to the running Envoy.
    let external = Gateway::configure(&mut shared, &reads_control_plane("external"));
    external.run_background(&mut shared, &control_plane);
    internal.run_background(&mut shared, &control_plane);
    assert_eq!(external.get(&mut shared, "/pizzashack/1.0.0/menu"), Some(404), "not deployed to `external`");
    assert_eq!(
        internal.other_worker().get(&mut shared, "/pizzashack/1.0.0/menu"),
        Some(401),
        "the internal gateway still serves its label's APIs"
    );
    // Every key either gateway wrote is its own: nothing is left where the other could read it.
    let stray: Vec<&String> = shared.keys().filter(|key| !key.starts_with("apim.gw.")).collect();
    assert!(stray.is_empty(), "keys outside a gateway's: {stray:?}");
}

#[test]
fn a_gateway_name_is_a_name_and_places_its_shared_data() {
    let prefix = |json: &str| Config::from_json(json.as_bytes()).map(|config| config.shared_prefix);
    assert_eq!(prefix("{}").unwrap(), "", "the one gateway keeps the keys of earlier versions");
    assert_eq!(prefix(r#"{"gateway": "internal-1_a"}"#).unwrap(), "apim.gw.internal-1_a.");
    for bad in ["", "a.b", "a b", "ä", &"x".repeat(65)] {
        let error = prefix(&format!(r#"{{"gateway": "{bad}"}}"#)).expect_err(bad);
        assert_eq!(error.field, "gateway", "{bad}");
    }
}

/// Counts `stat`, then reads and writes `key`: what a request does through the host most often.
fn count_read_write(host: &mut impl Host, stat: &str, key: &str) {
    host.count(stat);
    let _ = host.shared_get(key);
    let _ = host.shared_set(key, b"1", None);
}

/// A gateway's scope costs a request no allocation: the one gateway's keys and stats pass as
/// they are, and a named gateway's are built without one once the worker has built one as long
/// (every request reads, writes and counts through it).
#[test]
fn scoping_a_key_or_a_stat_allocates_nothing() {
    use crate::host::testing::allocations_in;
    use crate::host::GatewayScoped;
    for prefix in ["", "apim.gw.internal."] {
        let base = if prefix.is_empty() { "apim." } else { prefix };
        let (stat, key) = (format!("{base}api.P.allowed"), format!("{base}rl.k"));
        let mut host = FakeHost::default();
        host.counters.reserve(16);
        count_read_write(&mut GatewayScoped::new(&mut host, prefix), "apim.api.P.allowed", "apim.rl.k");
        let direct = allocations_in(|| count_read_write(&mut host, &stat, &key));
        let scoped = allocations_in(|| {
            count_read_write(&mut GatewayScoped::new(&mut host, prefix), "apim.api.P.allowed", "apim.rl.k")
        });
        assert_eq!(scoped, direct, "`{prefix}`: the same keys and stats, as the host gets them");
        assert_eq!(host.counters.iter().filter(|counted| **counted == stat).count(), 3, "`{prefix}`");
    }
}

/// A named gateway's request costs what the one gateway's does: the same allocations.
#[test]
fn a_named_gateways_request_allocates_as_the_one_gateways_does() {
    use crate::host::testing::allocations_in;
    let allocations = |json: &str| {
        let mut shared = HashMap::new();
        let gateway = Gateway::configure(&mut shared, json);
        let mut counted = Vec::new();
        for _ in 0..4 {
            let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
            host.now = NOW;
            host.shared = std::mem::take(&mut shared);
            host.counters.reserve(16);
            let mut stream = Stream::new(Rc::clone(&gateway.config), Rc::clone(&gateway.worker));
            counted.push(allocations_in(|| {
                stream.on_request_headers(&mut host, true);
            }));
            assert_eq!(host.sent, None);
            shared = host.shared;
        }
        counted
    };
    let named = allocations(&limited("internal", 1_000, 64));
    let unnamed = allocations(&limited("internal", 1_000, 64).replacen(r#""gateway": "internal", "#, "", 1));
    assert_eq!(named[1..], unnamed[1..], "after the first request");
}
