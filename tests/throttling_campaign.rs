//! Throttling exactness end to end, under load through a real Envoy with four workers: many
//! clients hammering one limit across several windows, two limits sharing a caller, burst
//! control, and a configuration update (ECDS) in the middle of a window. Admissions are counted
//! (by the clients and by the backend), never timed; each admitted request is placed in its window
//! by its `RateLimit-Reset`, and every throttled answer's headers are checked against its window.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::engines::{RateLimit, Redis};
use common::windows::{align_to_window, away_from_window_end, now_f64};
use common::{api_key_hash, free_port, request, Backend, Envoy, EnvoySetup, Scratch};
use serde_json::{json, Value};

/// The filter's configuration: `/one` admits `one_limit` per 2-second window; `/shared` 150 per
/// 2 s for everyone, of which application `a`'s subscription 60; `/burst` bursts of 10 a second.
fn config(one_limit: u64) -> String {
    let app = |id: &str| json!({"id": id, "name": id, "owner": format!("{id}-owner"), "api_keys": [{"sha256": api_key_hash(&format!("{id}-key"))}]});
    let any = json!([{"method": "GET", "path": "/*"}]);
    json!({
        "throttling": {"rate_limit_headers": true},
        "apis": [
            {"name": "One", "context": "/one", "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/*", "policy": "OnePolicy"}]},
            {"name": "Shared", "context": "/shared", "version": "1.0.0", "security": ["api_key"], "policy": "ApiShared",
             "endpoints": {"production": "live"}, "resources": any},
            {"name": "Burst", "context": "/burst", "version": "1.0.0", "security": ["api_key"],
             "endpoints": {"production": "live"}, "resources": any},
            {"name": "PerUser", "context": "/peruser", "version": "1.0.0", "security": ["api_key"], "policy": "FortyPerUser",
             "endpoints": {"production": "live"}, "resources": any}
        ],
        "applications": [app("a"), app("b"), app("c")],
        "subscriptions": [
            {"application": "a", "api": "Shared:1.0.0", "tier": "SubA"},
            {"application": "b", "api": "Shared:1.0.0", "tier": "Unlimited"},
            {"application": "c", "api": "Burst:1.0.0", "tier": "Bursty"},
            {"application": "a", "api": "PerUser:1.0.0", "tier": "Unlimited"},
            {"application": "b", "api": "PerUser:1.0.0", "tier": "Unlimited"}
        ],
        "policies": {
            "OnePolicy": {"requests": one_limit, "per": "second", "unit_count": 2},
            "ApiShared": {"requests": 150, "per": "second", "unit_count": 2},
            "SubA": {"requests": 60, "per": "second", "unit_count": 2},
            "Bursty": {"requests": 100000, "per": "minute", "burst": {"requests": 10, "per": "second"}},
            "FortyPerUser": {"requests": 40, "per": "second", "unit_count": 2, "per_user": true}
        }
    })
    .to_string()
}

/// What one request got.
#[derive(Clone, Debug)]
struct Outcome {
    client: usize,
    status: u16,
    code: String,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u64>,
    retry_after: Option<u64>,
    sent: f64,
    received: f64,
}

/// `threads` clients sending to `path` for `run`, each with the headers of `headers(client)`,
/// over new connections (so every worker takes some).
fn hammer(
    port: u16,
    path: &str,
    threads: usize,
    run: Duration,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<Outcome> {
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let clients: Vec<_> = (0..threads)
        .map(|client| {
            let (results, path, headers) = (Arc::clone(&results), path.to_string(), headers(client));
            thread::spawn(move || {
                while start.elapsed() < run {
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let sent = now_f64();
                    let response = request(port, "GET", &path, &headers, None);
                    let received = now_f64();
                    let number = |name: &str| response.header(name).and_then(|value| value.parse().ok());
                    let outcome = Outcome {
                        client,
                        status: response.status,
                        code: response.code(),
                        limit: number("ratelimit-limit"),
                        remaining: number("ratelimit-remaining"),
                        reset: number("ratelimit-reset"),
                        retry_after: number("retry-after"),
                        sent,
                        received,
                    };
                    results.lock().unwrap().push(outcome);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

/// The `window_s`-second window an outcome's headers name (its response left in a second
/// between when it was sent and answered, `reset` seconds before the window's end): `None` when
/// that second straddles an edge, or the answer had no RateLimit headers.
fn window_of(outcome: &Outcome, window_s: u64) -> Option<u64> {
    let reset = outcome.reset?;
    let window = |second: f64| (second.floor() as u64 + reset - 1) / window_s;
    (window(outcome.sent) == window(outcome.received)).then(|| window(outcome.sent))
}

/// Admitted requests per window, for the outcomes `select` picks: (placed, near an edge).
fn per_window(
    outcomes: &[Outcome],
    window_s: u64,
    select: impl Fn(&Outcome) -> bool,
) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let (mut placed, mut near_edge) = (BTreeMap::new(), BTreeMap::new());
    for outcome in outcomes.iter().filter(|o| o.status == 200 && select(o)) {
        match window_of(outcome, window_s) {
            Some(window) => *placed.entry(window).or_default() += 1,
            None => {
                *near_edge.entry(outcome.sent.floor() as u64 / window_s).or_default() += 1;
                *near_edge.entry(outcome.received.floor() as u64 / window_s).or_default() += 1;
            }
        }
    }
    (placed, near_edge)
}

/// Every answer's RateLimit headers and Retry-After are truthful for `window_s`-second windows:
/// Remaining between 0 and the limit, Reset and Retry-After between 1 and the window, and a
/// throttled answer's Reset is its Retry-After (the same window, that of the refusing level).
fn headers_are_truthful(outcomes: &[Outcome], window_s: u64) {
    for outcome in outcomes {
        if let (Some(limit), Some(remaining)) = (outcome.limit, outcome.remaining) {
            assert!(remaining <= limit, "{outcome:?}");
        }
        if let Some(reset) = outcome.reset {
            assert!((1..=window_s).contains(&reset), "RateLimit-Reset past the window: {outcome:?}");
        }
        if outcome.status == 429 {
            let retry_after = outcome.retry_after.expect("a throttled answer says when to come back");
            assert!((1..=window_s).contains(&retry_after), "Retry-After past the window: {outcome:?}");
            if let Some(reset) = outcome.reset {
                // Retry-After is counted when the request is refused, RateLimit-Reset when the
                // answer leaves, a moment later: a second may have begun in between.
                let one_window = reset == retry_after || reset + 1 == retry_after;
                assert!(one_window, "a throttled answer's headers name one window: {outcome:?}");
                assert_eq!(outcome.remaining, Some(0), "{outcome:?}");
            }
        }
    }
}

/// Windows between the first and last of `placed` (those the load ran through whole).
fn inner_windows(placed: &BTreeMap<u64, usize>) -> Vec<u64> {
    let windows: Vec<u64> = placed.keys().copied().collect();
    windows.iter().copied().filter(|w| Some(w) != windows.first() && Some(w) != windows.last()).collect()
}

fn stack(config: &str) -> (Envoy, Backend) {
    let backend = Backend::start();
    let envoy = Envoy::start(
        config,
        EnvoySetup { clusters: vec![("live".into(), backend.port)], concurrency: 4, ..Default::default() },
    );
    (envoy, backend)
}

#[test]
fn thirty_two_clients_over_four_workers_never_pass_a_limit_in_any_window() {
    let (envoy, backend) = stack(&config(100));
    let outcomes = hammer(envoy.port, "/one/1.0.0/x", 32, Duration::from_secs(12), |_| Vec::new());
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(backend.requests().len(), admitted, "the backend saw exactly the admitted requests");
    assert!(outcomes.iter().all(|o| o.status == 200 || (o.status == 429 && o.code == "900802")));
    headers_are_truthful(&outcomes, 2);
    let (placed, near_edge) = per_window(&outcomes, 2, |_| true);
    eprintln!(
        "{} requests, {admitted} admitted; per 2 s window (limit 100): {placed:?}, near an edge {near_edge:?}",
        outcomes.len()
    );
    for (window, count) in &placed {
        assert!(*count <= 100, "window {window}: {count} admitted of 100");
    }
    for window in inner_windows(&placed) {
        let maybe = near_edge.get(&window).copied().unwrap_or(0);
        assert!(placed[&window] + maybe >= 100, "window {window} under demand: {placed:?} {near_edge:?}");
    }
}

#[test]
fn two_limits_sharing_a_caller_each_hold_in_every_window() {
    // `/shared`: 150 per 2 s for the API; `a`'s subscription 60 of them. Sixteen clients as `a`,
    // sixteen as `b`.
    let (envoy, backend) = stack(&config(100));
    let key = |client: usize| vec![("apikey".to_string(), if client % 2 == 0 { "a-key" } else { "b-key" }.to_string())];
    let outcomes = hammer(envoy.port, "/shared/1.0.0/x", 32, Duration::from_secs(12), key);
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(backend.requests().len(), admitted);
    headers_are_truthful(&outcomes, 2);
    for outcome in outcomes.iter().filter(|o| o.status != 200) {
        let expected: &[&str] = if outcome.client % 2 == 0 { &["900800", "900804"] } else { &["900800"] };
        assert!(expected.contains(&outcome.code.as_str()), "{outcome:?}");
    }
    let (all, all_near) = per_window(&outcomes, 2, |_| true);
    let (of_a, a_near) = per_window(&outcomes, 2, |o| o.client % 2 == 0);
    eprintln!("API (150): {all:?} near an edge {all_near:?}; a's subscription (60): {of_a:?} near an edge {a_near:?}");
    for (window, count) in &all {
        assert!(*count <= 150, "window {window}: {count} admitted for the API's 150");
    }
    for (window, count) in &of_a {
        assert!(*count <= 60, "window {window}: {count} admitted for a's 60");
    }
    for window in inner_windows(&all) {
        let maybe = all_near.get(&window).copied().unwrap_or(0);
        assert!(all[&window] + maybe >= 150, "window {window}: the API's 150 filled: {all:?}");
    }
}

#[test]
fn an_api_policy_applied_per_user_holds_for_each_user_in_every_window() {
    // `/peruser`: 40 per 2 s for each user (an API key acts for its application's owner).
    let (envoy, backend) = stack(&config(100));
    let key = |client: usize| vec![("apikey".to_string(), if client % 2 == 0 { "a-key" } else { "b-key" }.to_string())];
    let outcomes = hammer(envoy.port, "/peruser/1.0.0/x", 32, Duration::from_secs(8), key);
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(backend.requests().len(), admitted);
    assert!(outcomes.iter().all(|o| o.status == 200 || o.code == "900800"));
    headers_are_truthful(&outcomes, 2);
    for user in 0..2 {
        let (placed, near_edge) = per_window(&outcomes, 2, |o| o.client % 2 == user);
        eprintln!("user {user} (40 each): {placed:?}, near an edge {near_edge:?}");
        for (window, count) in &placed {
            assert!(*count <= 40, "window {window}: {count} admitted for one user's 40");
        }
        for window in inner_windows(&placed) {
            let maybe = near_edge.get(&window).copied().unwrap_or(0);
            assert!(placed[&window] + maybe >= 40, "window {window}: each user has 40 of their own: {placed:?}");
        }
    }
}

#[test]
fn burst_control_holds_every_second_under_concurrency() {
    let (envoy, backend) = stack(&config(100));
    let key = |_| vec![("apikey".to_string(), "c-key".to_string())];
    let outcomes = hammer(envoy.port, "/burst/1.0.0/x", 32, Duration::from_secs(8), key);
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(backend.requests().len(), admitted);
    assert!(outcomes.iter().all(|o| o.status == 200 || o.code == "900807"), "only burst control refuses");
    headers_are_truthful(&outcomes, 1);
    let (placed, near_edge) = per_window(&outcomes, 1, |_| true);
    eprintln!("burst 10/s: {placed:?}, near an edge {near_edge:?}");
    for (second, count) in &placed {
        assert!(*count <= 10, "second {second}: {count} admitted of a burst of 10");
    }
}

/// Envoy with the filter's configuration from a file by ECDS; `install` replaces it live.
struct Ecds {
    envoy: Envoy,
    scratch: Scratch,
    _backend: Backend,
}

impl Ecds {
    fn resource(filter_json: &str) -> String {
        let value: String = filter_json.lines().map(|line| format!("          {line}\n")).collect();
        format!(
            "resources:\n- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: apim\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n    config:\n      name: apim\n      root_id: apim\n      failure_policy: FAIL_RELOAD\n      vm_config:\n        vm_id: apim\n        runtime: envoy.wasm.runtime.v8\n        code: {{ local: {{ filename: \"{}\" }} }}\n      configuration:\n        \"@type\": type.googleapis.com/google.protobuf.StringValue\n        value: |\n{value}",
            common::wasm_path().display()
        )
    }

    fn start(filter_json: &str) -> Ecds {
        let scratch = Scratch::new("campaign-ecds");
        let backend = Backend::start();
        let (port, admin_port) = (free_port(), free_port());
        let setup = EnvoySetup { clusters: vec![("live".into(), backend.port)], ..Default::default() };
        let yaml = common::envoy_yaml(filter_json, &setup, port, admin_port);
        let start = yaml.find("          - name: envoy.filters.http.wasm").unwrap();
        let end = yaml.find("          - name: envoy.filters.http.router").unwrap();
        let path = scratch.0.join("apim-filter.yaml");
        let discovery = format!(
            "          - name: apim\n            config_discovery:\n              config_source:\n                path_config_source: {{ path: \"{}\" }}\n              type_urls: [\"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\"]\n",
            path.display()
        );
        let yaml = format!("node: {{ id: test, cluster: test }}\n{}{discovery}{}", &yaml[..start], &yaml[end..]);
        let ecds = |envoy: Envoy| Ecds { envoy, scratch, _backend: backend };
        std::fs::write(&path, Ecds::resource(filter_json)).unwrap();
        let envoy = Envoy::launch(&yaml, 4, port, admin_port, "campaign-envoy").unwrap_or_else(|log| panic!("{log}"));
        let ecds = ecds(envoy);
        // The filter answers (a request to `/shared` without its key is refused 401) before the
        // count starts.
        ecds.wait(|| request(port, "GET", "/shared/1.0.0/x", &[], None).status == 401);
        ecds
    }

    fn wait(&self, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !condition() {
            assert!(Instant::now() < deadline, "condition not met within 30 s");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the filter's configuration and waits until Envoy applied it.
    fn install(&self, filter_json: &str) {
        let applied = self.envoy.stat("extension_config_discovery.http_filter.apim.config_reload");
        let staging = self.scratch.0.join("apim-filter.yaml.tmp");
        std::fs::write(&staging, Ecds::resource(filter_json)).unwrap();
        std::fs::rename(&staging, self.scratch.0.join("apim-filter.yaml")).unwrap();
        self.wait(|| self.envoy.stat("extension_config_discovery.http_filter.apim.config_reload") > applied);
    }

    /// `total` requests from 16 clients to `/one`: how many were admitted.
    fn admitted(&self, total: usize) -> usize {
        let next = Arc::new(Mutex::new(0usize));
        let admitted = Arc::new(Mutex::new(0usize));
        let port = self.envoy.port;
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (next, admitted) = (Arc::clone(&next), Arc::clone(&admitted));
                thread::spawn(move || loop {
                    {
                        let mut next = next.lock().unwrap();
                        if *next >= total {
                            break;
                        }
                        *next += 1;
                    }
                    if request(port, "GET", "/one/1.0.0/x", &[], None).status == 200 {
                        *admitted.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        let admitted = *admitted.lock().unwrap();
        admitted
    }
}

/// `/one` counting `limit` per minute instead of per 2 s.
fn per_minute(limit: u64) -> String {
    let mut config: Value = serde_json::from_str(&config(limit)).unwrap();
    config["policies"]["OnePolicy"] = json!({"requests": limit, "per": "minute"});
    config.to_string()
}

/// The minute `now` is in.
fn minute() -> u64 {
    (now_f64() / 60.0) as u64
}

/// Runs `scenario` within one minute: first with at least `margin` seconds of the minute left,
/// then, when a slow machine made it straddle two minutes (whose counts are apart), again from the
/// start of a minute, up to three times.
fn in_one_minute<T>(margin: u64, mut scenario: impl FnMut(u32) -> T) -> T {
    away_from_window_end(60, margin);
    for attempt in 1..=3 {
        let started = minute();
        let outcome = scenario(attempt);
        if minute() == started {
            return outcome;
        }
        eprintln!("attempt {attempt} straddled two minutes: again from the start of the next one");
        align_to_window(60);
    }
    panic!("three times the scenario could not run within one minute: the machine is too slow");
}

#[test]
fn an_update_in_the_middle_of_a_window_keeps_its_count_whatever_the_limit_becomes() {
    let ecds = Ecds::start(&per_minute(60));
    let (first, second, lowered, raised, log) = in_one_minute(45, |attempt| {
        if attempt > 1 {
            ecds.install(&per_minute(60));
        }
        let mut log = Vec::new();
        let first = ecds.admitted(30);
        log.push(format!("limit 60: {first} of 30"));
        // The same configuration again: the window's count carries over.
        ecds.install(&format!("{} ", per_minute(60)));
        let second = ecds.admitted(60);
        log.push(format!("limit 60, reloaded unchanged: {second} of 60"));
        // Lowered below what the window admitted: nothing more.
        ecds.install(&per_minute(40));
        let lowered = ecds.admitted(20);
        log.push(format!("limit 40: {lowered} of 20"));
        // Raised: only what the new limit leaves.
        ecds.install(&per_minute(100));
        let raised = ecds.admitted(80);
        log.push(format!("limit 100: {raised} of 80"));
        (first, second, lowered, raised, log)
    });
    eprintln!("{}", log.join("; "));
    assert_eq!(first, 30);
    assert!(first + second <= 60, "{log:?}");
    assert_eq!(lowered, 0, "{log:?}");
    assert!(first + second + raised <= 100, "{log:?}");
    assert!(first + second + raised >= 100 - 4 * 5, "at most a block per worker lost at each update: {log:?}");
}

/// A node of a cluster counting `/one` (300 a minute) on the rate-limit service, leased.
fn node(service: &RateLimit, backend: &Backend) -> Envoy {
    let mut config: Value = serde_json::from_str(&per_minute(300)).unwrap();
    config["throttling"]["rate_limit_service"] = json!({"cluster": "rls", "timeout_ms": 10_000});
    Envoy::start(
        &config.to_string(),
        EnvoySetup {
            clusters: vec![("live".into(), backend.port)],
            grpc_clusters: vec![("rls".into(), service.grpc_port)],
            concurrency: 2,
            ..Default::default()
        },
    )
}

#[test]
fn two_nodes_on_the_rate_limit_service_never_pass_a_limit_in_any_window() {
    // 1000 per 2 s on the service, leased: nodes take blocks (whole increments far from the
    // limit, single tokens near it) and their workers smaller ones.
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let backend = Backend::start();
    let mut config: Value = serde_json::from_str(&config(1000)).unwrap();
    config["throttling"]["rate_limit_service"] = json!({"cluster": "rls", "timeout_ms": 10_000});
    let setup = || EnvoySetup {
        clusters: vec![("live".into(), backend.port)],
        grpc_clusters: vec![("rls".into(), service.grpc_port)],
        concurrency: 2,
        ..Default::default()
    };
    let nodes = [Envoy::start(&config.to_string(), setup()), Envoy::start(&config.to_string(), setup())];
    let results = Arc::new(Mutex::new(Vec::new()));
    let ports = [nodes[0].port, nodes[1].port];
    thread::scope(|scope| {
        for (index, port) in ports.iter().enumerate() {
            let results = Arc::clone(&results);
            scope.spawn(move || {
                let outcomes = hammer(*port, "/one/1.0.0/x", 16, Duration::from_secs(12), |_| Vec::new());
                results.lock().unwrap().extend(outcomes.into_iter().map(|o| Outcome { client: index, ..o }));
            });
        }
    });
    let outcomes = Arc::try_unwrap(results).unwrap().into_inner().unwrap();
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(backend.requests().len(), admitted);
    assert!(outcomes.iter().all(|o| o.status == 200 || (o.status == 429 && o.code == "900802")));
    headers_are_truthful(&outcomes, 2);
    let (placed, near_edge) = per_window(&outcomes, 2, |_| true);
    eprintln!("two nodes, {} requests, {admitted} admitted; per 2 s window (limit 1000): {placed:?}, near an edge {near_edge:?}", outcomes.len());
    for (window, count) in &placed {
        assert!(*count <= 1000, "window {window}: {count} admitted of 1000");
    }
}

/// `total` requests to `/one` from 16 clients, alternating between `ports`: how many were admitted.
fn admitted_by(ports: &[u16], total: usize) -> usize {
    let next = Arc::new(Mutex::new(0usize));
    let admitted = Arc::new(Mutex::new(0usize));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (next, admitted, ports) = (Arc::clone(&next), Arc::clone(&admitted), ports.to_vec());
            thread::spawn(move || loop {
                let index = {
                    let mut next = next.lock().unwrap();
                    if *next >= total {
                        break;
                    }
                    *next += 1;
                    *next
                };
                if request(ports[index % ports.len()], "GET", "/one/1.0.0/x", &[], None).status == 200 {
                    *admitted.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let admitted = *admitted.lock().unwrap();
    admitted
}

#[test]
fn two_nodes_and_a_node_restarting_mid_window_never_pass_the_cluster_s_limit() {
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let backend = Backend::start();
    let (before, total, reached) = in_one_minute(40, |_| {
        let reached_before = backend.requests().len();
        let (first, second) = (node(&service, &backend), node(&service, &backend));
        let before = admitted_by(&[first.port, second.port], 150);
        // The second node stops with what it holds; a new one takes its place in the same minute.
        drop(second);
        let third = node(&service, &backend);
        let after = admitted_by(&[first.port, third.port], 400);
        let drained = admitted_by(&[first.port], 30) + admitted_by(&[third.port], 30);
        let total = before + after + drained;
        eprintln!(
            "limit 300: {before} of 150, then after a node restart {after} of 400, then {drained} drained: {total}"
        );
        (before, total, backend.requests().len() - reached_before)
    });
    assert_eq!(before, 150);
    assert!(total <= 300, "{total} admitted for 300 across the cluster");
    assert_eq!(reached, total);
}
