//! Throttling across Envoy nodes on the real engine: two Envoy processes (`--concurrency 2`
//! each) sharing one envoyproxy/ratelimit and one Redis, all started here as local processes.
//! Exactly N admitted for a limit of N under concurrent load split across both nodes and all
//! workers, with leased and with strict counting, for one level and for two levels at once, with
//! workers spending blocks of their node's lease, and window by window across window edges; the service stopped, hanging past the timeout, without
//! its Redis, or without the filter's domain: the configured failure mode, the right fault, no
//! crash, and counting again once it is back.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::engines::{RateLimit, Redis};
use common::windows::{away_from_window_end, now_f64};
use common::{api_key_hash, request, Backend, Envoy, EnvoySetup, Response};
use serde_json::{json, Value};

/// The filter's configuration with a rate-limit service (`service` merged over the defaults: a
/// call timeout no slow machine reaches, as a call that times out lets a request through
/// uncounted; the outage test sets its own).
fn config(service: Value) -> String {
    let mut rls = json!({"cluster": "rls", "timeout_ms": 10_000});
    for (key, value) in service.as_object().unwrap() {
        rls[key] = value.clone();
    }
    let open = |name: &str, context: &str, policy: &str| {
        json!({"name": name, "context": context, "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
               "resources": [{"method": "GET", "path": "/*", "policy": policy}]})
    };
    let failing_resources: Vec<Value> = ["/stopped", "/hanging", "/storage", "/domain"]
        .iter()
        .map(|path| json!({"method": "GET", "path": path, "policy": "Five"}))
        .collect();
    let app = |id: &str| json!({"id": id, "name": id, "owner": format!("{id}-owner"), "api_keys": [{"sha256": api_key_hash(&format!("{id}-key"))}]});
    json!({
        "throttling": {"rate_limit_headers": true, "rate_limit_service": rls},
        "apis": [
            open("One", "/one", "Forty"),
            open("Edge", "/edge", "TwentyPerTwoSeconds"),
            open("Blocks", "/blocks", "SixHundredPerHour"),
            open("Month", "/month", "ThirtyPerMonth"),
            open("Year", "/year", "TwentyPerYear"),
            {"name": "Failing", "context": "/failing", "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
             "resources": failing_resources},
            {"name": "Two", "context": "/two", "version": "1.0.0", "security": ["api_key"], "policy": "Ten",
             "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]}
        ],
        "applications": [app("a"), app("b")],
        "subscriptions": [
            {"application": "a", "api": "Two:1.0.0", "tier": "Three"},
            {"application": "b", "api": "Two:1.0.0", "tier": "Unlimited"}
        ],
        "policies": {
            "Forty": {"requests": 40, "per": "minute"},
            "SixHundredPerHour": {"requests": 600, "per": "hour"},
            "Ten": {"requests": 10, "per": "minute"},
            "Three": {"requests": 3, "per": "minute"},
            "Five": {"requests": 5, "per": "minute"},
            "TwentyPerTwoSeconds": {"requests": 20, "per": "second", "unit_count": 2},
            "ThirtyPerMonth": {"requests": 30, "per": "day", "unit_count": 30},
            "TwentyPerYear": {"requests": 20, "per": "day", "unit_count": 365}
        }
    })
    .to_string()
}

/// Two Envoy nodes sharing one rate-limit service.
struct Cluster {
    nodes: Vec<Envoy>,
    _backend: Backend,
}

impl Cluster {
    fn start(service: &RateLimit, settings: Value) -> Cluster {
        let backend = Backend::start();
        let nodes = (0..2)
            .map(|_| {
                Envoy::start(
                    &config(settings.clone()),
                    EnvoySetup {
                        clusters: vec![("live".into(), backend.port)],
                        grpc_clusters: vec![("rls".into(), service.grpc_port)],
                        concurrency: 2,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Cluster { nodes, _backend: backend }
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }
}

/// One request's outcome, with when it was sent and answered.
#[derive(Clone, Debug)]
struct Outcome {
    code: String,
    status: u16,
    reset: Option<u64>,
    sent: f64,
    received: f64,
}

/// `total` requests from `threads` threads, alternating between the nodes (new connections, so
/// both workers of each node take some).
fn load(ports: &[u16], path: &str, headers: &[(&str, &str)], threads: usize, total: usize) -> Vec<Outcome> {
    let results = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(Mutex::new(0usize));
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (results, next, ports, path, headers) =
                (Arc::clone(&results), Arc::clone(&next), ports.to_vec(), path.to_string(), headers.clone());
            thread::spawn(move || loop {
                let index = {
                    let mut next = next.lock().unwrap();
                    if *next >= total {
                        break;
                    }
                    *next += 1;
                    *next
                };
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let sent = now_f64();
                let response = request(ports[index % ports.len()], "GET", &path, &headers, None);
                let received = now_f64();
                let reset = response.header("ratelimit-reset").and_then(|value| value.parse().ok());
                results.lock().unwrap().push(Outcome {
                    code: response.code(),
                    status: response.status,
                    reset,
                    sent,
                    received,
                });
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

/// Sends to each node until it denies: a node's held tokens are spent before it denies, so this
/// admits what the concurrent phase left held. Returns how many it admitted.
fn drain(ports: &[u16], path: &str, headers: &[(&str, &str)], limit: usize) -> usize {
    let mut admitted = 0;
    for port in ports {
        for _ in 0..=limit {
            if request(*port, "GET", path, headers, None).status != 200 {
                break;
            }
            admitted += 1;
        }
    }
    admitted
}

fn admitted(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|outcome| outcome.status == 200).count()
}

fn workers_took_connections(node: &Envoy) {
    let port = node.port;
    let stats = request(node.admin_port, "GET", "/stats?filter=worker_.\\.downstream_cx_total", &[], None).body;
    let per_worker: Vec<u64> = stats
        .lines()
        .filter(|line| line.contains(&format!("_{port}.worker_")))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(per_worker.len() == 2 && per_worker.iter().all(|n| *n > 0), "connections per worker: {per_worker:?}");
}

/// The service's calls a node made (Envoy's gRPC stats for the service's cluster).
fn calls(node: &Envoy) -> u64 {
    node.stat("cluster.rls.upstream_rq_total")
}

#[test]
fn exactly_n_across_two_nodes_with_leased_and_with_strict_counting() {
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    for counting in ["leased", "strict"] {
        let cluster = Cluster::start(&service, json!({"counting": counting}));
        let ports = cluster.ports();
        // The two modes count apart.
        assert_eq!(redis.command(&["FLUSHALL"]), "+OK\r\n", "the counts of the step before are gone");
        away_from_window_end(60, 25);
        let outcomes = load(&ports, "/one/1.0.0/x", &[], 8, 120);
        let during = admitted(&outcomes);
        assert!(during <= 40, "{counting}: {during} admitted for a limit of 40");
        let after = drain(&ports, "/one/1.0.0/x", &[], 40);
        assert_eq!(during + after, 40, "{counting}: {during} admitted under load, {after} after it");
        assert!(
            outcomes.iter().filter(|o| o.status != 200).all(|o| o.status == 429 && o.code == "900802"),
            "{counting}: every refusal is the resource level's"
        );
        for node in &cluster.nodes {
            workers_took_connections(node);
        }
        // The fault and its headers are the same whichever engine counted.
        let before = now_f64();
        let response = request(ports[1], "GET", "/one/1.0.0/x", &[], None);
        let window_end = ((before / 60.0).floor() as u64 + 1) * 60;
        assert_eq!((response.status, response.code()), (429, "900802".to_string()), "{counting}");
        let retry_after: u64 = response.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(retry_after >= 1 && retry_after <= window_end - before.floor() as u64, "{counting}: {retry_after}");
        assert_eq!(
            response.json()["nextAccessTime"],
            apim_filter::render::format_next_access_time(window_end),
            "{counting}"
        );
        assert_eq!(response.header("ratelimit-limit"), Some("40"), "{counting}");
        assert_eq!(response.header("ratelimit-remaining"), Some("0"), "{counting}");
        let (requests, calls) = (120 + after + 3, calls(&cluster.nodes[0]) + calls(&cluster.nodes[1]));
        eprintln!("{counting}: {during} + {after} admitted; {calls} service calls for {requests} requests");
        if counting == "strict" {
            assert!(calls as usize >= requests, "strict counting calls once per request");
        } else {
            assert!((calls as usize) < requests, "leased counting calls less than once per request");
        }
    }
}

#[test]
fn workers_spending_blocks_of_their_nodes_lease_never_admit_more_than_n_across_nodes() {
    // 600 per hour, leased: a node asks the service for 10% of what remains (60 at first), and
    // each worker takes 5% of what remains for its node, at most half of what the node holds
    // (29 at first, fewer near the limit), spending it without touching shared data.
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let cluster = Cluster::start(&service, json!({"counting": "leased"}));
    let ports = cluster.ports();
    away_from_window_end(3600, 40);
    let outcomes = load(&ports, "/blocks/1.0.0/x", &[], 8, 1200);
    let during = admitted(&outcomes);
    for node in &cluster.nodes {
        workers_took_connections(node);
    }
    let after = drain(&ports, "/blocks/1.0.0/x", &[], 600);
    // Never more than N. Fewer only by what a worker still holds when its traffic stops: at most
    // one block (30 tokens) for each of the four workers; with every worker loaded past the limit
    // it is N.
    assert!(during + after <= 600, "{during} admitted under load, {after} after it");
    assert!(during + after >= 600 - 4 * 30, "{during} admitted under load, {after} after it");
    assert!(outcomes.iter().filter(|o| o.status != 200).all(|o| o.status == 429 && o.code == "900802"));
    let calls = calls(&cluster.nodes[0]) + calls(&cluster.nodes[1]);
    eprintln!("{during} + {after} admitted; {calls} service calls for {} requests", outcomes.len() + after + 2);
    assert!(calls * 5 < 1200, "{calls} service calls for 1200 requests");
}

#[test]
fn monthly_and_yearly_quotas_count_across_nodes_in_the_services_month_and_year() {
    // WSO2's months are 30 days, as the service's MONTH; a 365-day year is its YEAR. Counted per
    // node, two nodes would admit twice the limit; the service's keys name its unit's window.
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let cluster = Cluster::start(&service, json!({"counting": "leased"}));
    let ports = cluster.ports();
    for (path, limit, unit_s) in [("/month/1.0.0/x", 30, 2_592_000u64), ("/year/1.0.0/x", 20, 31_536_000)] {
        away_from_window_end(unit_s, 25);
        let outcomes = load(&ports, path, &[], 4, limit * 2);
        let during = admitted(&outcomes);
        let after = drain(&ports, path, &[], limit);
        assert_eq!(during + after, limit, "{path}: {during} admitted under load, {after} after it");
        let window_start = (now_f64() as u64) / unit_s * unit_s;
        let keys = redis.command(&["KEYS", &format!("*_{window_start}")]);
        assert!(keys.contains(&format!("_{window_start}")), "{path}: no key of the service's window: {keys}");
    }
}

#[test]
fn two_levels_at_once_count_a_denied_request_nowhere_with_leased_counting() {
    // The API level (10 per minute) comes before the subscription level (3 per minute for `a`).
    // `a`'s requests denied at its subscription give their API-level tokens back, so `b` (an
    // unlimited tier) still gets the 7 that remain: 10 in all, exactly.
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let cluster = Cluster::start(&service, json!({"counting": "leased"}));
    let ports = cluster.ports();
    away_from_window_end(60, 25);
    let a = [("apikey", "a-key")];
    let outcomes = load(&ports, "/two/1.0.0/x", &a, 8, 40);
    let a_admitted = admitted(&outcomes) + drain(&ports, "/two/1.0.0/x", &a, 10);
    assert_eq!(a_admitted, 3);
    let codes: Vec<&str> = outcomes.iter().filter(|o| o.status != 200).map(|o| o.code.as_str()).collect();
    assert!(codes.iter().all(|code| *code == "900804"), "the subscription level: {codes:?}");
    let b = [("apikey", "b-key")];
    let outcomes = load(&ports, "/two/1.0.0/x", &b, 8, 40);
    let b_admitted = admitted(&outcomes) + drain(&ports, "/two/1.0.0/x", &b, 10);
    assert_eq!(b_admitted, 7, "the API level's 10, less `a`'s 3");
    let codes: Vec<&str> = outcomes.iter().filter(|o| o.status != 200).map(|o| o.code.as_str()).collect();
    assert!(codes.iter().all(|code| *code == "900800"), "the API level: {codes:?}");
}

#[test]
fn strict_counting_leaves_a_denied_request_counted_at_the_levels_before_as_documented() {
    // The service cannot un-count: in strict mode `a`'s requests denied at the subscription level
    // stay counted at the API level (docs/CONFIG.md says so; leased counting is exact).
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let cluster = Cluster::start(&service, json!({"counting": "strict"}));
    let ports = cluster.ports();
    away_from_window_end(60, 25);
    let a = [("apikey", "a-key")];
    let codes: Vec<String> = (0..6).map(|i| request(ports[i % 2], "GET", "/two/1.0.0/x", &a, None).code()).collect();
    assert_eq!(codes, ["200", "200", "200", "900804", "900804", "900804"]);
    let b = [("apikey", "b-key")];
    let b_admitted = (0..10).filter(|i| request(ports[i % 2], "GET", "/two/1.0.0/x", &b, None).status == 200).count();
    assert_eq!(b_admitted, 4, "10 less `a`'s 3 admitted and 3 denied");
}

#[test]
fn window_by_window_across_edges_a_window_shorter_than_the_service_unit_admits_exactly_n() {
    // 20 per 2-second window: the service counts it inside its minutes, with the window's start
    // in the descriptor. Load runs across three window edges; each accepted request says when its
    // window resets, so each is placed in its window.
    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let cluster = Cluster::start(&service, json!({"counting": "leased"}));
    let ports = cluster.ports();
    // Start a little before an edge.
    let into = now_f64() % 2.0;
    thread::sleep(Duration::from_secs_f64(if into < 1.7 { 1.7 - into } else { 3.7 - into }));
    let start = Instant::now();
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (results, ports) = (Arc::clone(&results), ports.clone());
            thread::spawn(move || {
                let mut index = worker;
                while start.elapsed() < Duration::from_millis(6_600) {
                    let sent = now_f64();
                    let response = request(ports[index % 2], "GET", "/edge/1.0.0/x", &[], None);
                    let received = now_f64();
                    let reset = response.header("ratelimit-reset").and_then(|value| value.parse().ok());
                    results.lock().unwrap().push(Outcome {
                        code: response.code(),
                        status: response.status,
                        reset,
                        sent,
                        received,
                    });
                    index += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let results = results.lock().unwrap();
    // The window an admitted request was counted in ends at (the filter's second) + reset; the
    // filter's second is the second its response left, between when it was sent and answered. A
    // response leaving after its window ended carries no RateLimit headers: it was counted in the
    // window it was sent in, or a later one before its answer.
    let mut placed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut unplaced: BTreeMap<u64, usize> = BTreeMap::new();
    for outcome in results.iter().filter(|o| o.status == 200) {
        let window = |second: f64| match outcome.reset {
            Some(reset) => (second.floor() as u64 + reset - 1) / 2,
            None => second.floor() as u64 / 2,
        };
        let (first, last) = (window(outcome.sent), window(outcome.received));
        if outcome.reset.is_none() {
            assert!(first != last, "an admitted request answered within its window carries RateLimit-Reset");
        }
        if first == last {
            *placed.entry(first).or_default() += 1;
        } else {
            *unplaced.entry(first).or_default() += 1;
            *unplaced.entry(last).or_default() += 1;
        }
    }
    assert!(results.iter().filter(|o| o.status != 200).all(|o| o.code == "900802"));
    let windows: Vec<u64> = placed.keys().copied().collect();
    assert!(windows.len() >= 4, "load spans edges: {placed:?}");
    for window in &windows {
        let (count, maybe) = (placed[window], unplaced.get(window).copied().unwrap_or(0));
        assert!(count <= 20, "window {window}: {count} admitted: {placed:?}");
        // Demand never stopped inside the windows between the first and the last: each was
        // filled exactly (a request near an edge may not be placeable by the client's clock).
        if window != windows.first().unwrap() && window != windows.last().unwrap() {
            assert!(count + maybe >= 20, "window {window}: {count} (+{maybe} near an edge): {placed:?}");
        }
    }
}

/// Requests to `/failing/1.0.0/<resource>` (5 per minute each) until the answer's code is
/// `expected` (Envoy notices a dead connection, and the service its Redis, on their own time),
/// for at most 60 s.
fn until(port: u16, resource: &str, expected: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = request(port, "GET", &format!("/failing/1.0.0/{resource}"), &[], None);
        if response.code() == expected || Instant::now() > deadline {
            return response;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unreachable_hanging_or_storage_less_service_follows_the_failure_mode_and_counting_resumes() {
    let mut redis = Redis::start();
    let mut service = RateLimit::start(&redis);
    for mode in ["deny", "allow"] {
        // One call per request (`lease_max: 1`), so an outage shows at once.
        let cluster = Cluster::start(&service, json!({"failure_mode": mode, "timeout_ms": 300, "lease_max": 1}));
        let node = &cluster.nodes[0];
        let expected = if mode == "deny" { "900808" } else { "200" };
        let log_tail = || node.log().lines().rev().take(30).collect::<Vec<_>>().join("\n");
        let check = |what: &str, response: &Response| {
            assert_eq!(
                response.code(),
                expected,
                "{mode}, {what}: {}\nthe node's log, last lines first:\n{}",
                response.body,
                log_tail()
            );
            if mode == "deny" {
                assert_eq!(response.status, 500, "{mode}, {what}");
            }
        };
        // Counting again means: the resource's limit of 5 holds (the sixth gets its fault).
        let counting_again = |what: &str, resource: &str| {
            let response = until(node.port, resource, "900802");
            assert_eq!(response.code(), "900802", "{mode}: counting resumes after {what}: {}", response.body);
        };
        assert_eq!(redis.command(&["FLUSHALL"]), "+OK\r\n", "the counts of the step before are gone");
        away_from_window_end(60, 40);

        service.stop();
        check("service stopped", &until(node.port, "stopped", expected));
        service.restart();
        counting_again("a restart", "stopped");

        service.pause();
        let started = Instant::now();
        let response = request(node.port, "GET", "/failing/1.0.0/hanging", &[], None);
        let waited = started.elapsed();
        service.resume();
        check("service hanging", &response);
        assert!(
            waited >= Duration::from_millis(250),
            "{mode}: answered after the 300 ms timeout, not before ({waited:?}; {})\nthe node's log, last lines first:\n{}",
            response.status,
            log_tail()
        );
        assert!(waited < Duration::from_secs(5), "{mode}: the timeout bounds the wait: {waited:?}");
        counting_again("a pause", "hanging");

        // Without its Redis, the service answers with a gRPC error.
        redis.stop();
        check("Redis stopped", &until(node.port, "storage", expected));
        redis.restart();
        counting_again("Redis's restart", "storage");

        let uncounted = node.stat("wasmcustom.apim.throttle.uncounted.engine_unavailable");
        assert!(uncounted >= 3, "{mode}: uncounted requests are in the stats ({uncounted})");
        let log = node.log();
        assert!(log.contains("the rate-limit service could not count a request"), "{mode}: logged");
        assert!(!log.contains("panicked"), "{mode}: no VM failure:\n{log}");
    }
}

/// The rate-limit service as docs/HOWTO.md tells users to run it (its command's own settings,
/// on this test's ports) counts for both nodes: a limit of 5 admits 5.
#[test]
fn the_service_run_as_the_howto_says_counts_across_nodes() {
    let redis = Redis::start();
    let service = RateLimit::start_as_documented(&redis);
    let cluster = Cluster::start(&service, json!({"counting": "strict"}));
    away_from_window_end(60, 10);
    let codes: Vec<String> = (0..7)
        .map(|index| request(cluster.nodes[index % 2].port, "GET", "/failing/1.0.0/stopped", &[], None).code())
        .collect();
    assert_eq!(codes, ["200", "200", "200", "200", "200", "900802", "900802"], "{}", service.log());
    assert!(redis.command(&["KEYS", "*"]).contains("apim"), "counted in Redis");
}

#[test]
fn a_service_without_the_filters_domain_is_unusable_and_says_so() {
    // A service that does not know the domain answers OK to everything; the filter notices the
    // missing limits and follows the failure mode instead of admitting everything.
    let redis = Redis::start();
    let service = RateLimit::start_with_config(&redis, "domain: someone-else\n");
    let cluster = Cluster::start(&service, json!({"failure_mode": "deny", "lease_max": 1}));
    let node = &cluster.nodes[0];
    let response = request(node.port, "GET", "/failing/1.0.0/domain", &[], None);
    assert_eq!((response.status, response.code()), (500, "900808".to_string()));
    assert_eq!(node.stat("wasmcustom.apim.throttle.uncounted.engine_unusable"), 1);
    assert!(node.log().contains("is the domain in its configuration?"), "{}", node.log());
}
