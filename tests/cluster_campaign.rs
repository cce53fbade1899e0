//! A seeded randomized throttling campaign across two Envoy nodes (`--concurrency 2` each) on the
//! real envoyproxy/ratelimit and Redis: random policies at the API, resource, subscription and
//! application levels at once (limits 1 to 300, windows of 1, 2 or 5 seconds or a minute; the
//! service's `lease_max` and `lease_share_percent` drawn too), random
//! clients per node (which API, resource and application each hammers, bursts and pauses), and a
//! node killed and started again mid-window. Checked from counts only: in every window each
//! counter admits at most its limit; a counter that refused in a window the load covered to its
//! end admitted its limit less at most the tokens the design may leave stranded; every 429 is the
//! refusing level's fault with its headers; the backend saw what the clients were admitted.
//! `APIM_CLUSTER_SEED=<seed>` replays a campaign.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::engines::{RateLimit, Redis};
use common::windows::now_f64;
use common::{api_key_hash, try_request, Backend, Envoy, EnvoySetup};
use serde_json::{json, Value};

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A counter the campaign's requests may touch: its level's code, limit and window.
#[derive(Clone, Debug)]
struct Counter {
    name: String,
    code: &'static str,
    limit: u64,
    window_s: u64,
}

/// A random limit (1 to 300, small ones as likely as large ones) and window.
fn random_policy(random: &mut Random) -> (u64, u64, Value) {
    let limit = match random.below(3) {
        0 => 1 + random.below(10),
        1 => 10 + random.below(60),
        _ => 70 + random.below(231),
    };
    let (window_s, policy) = match random.below(4) {
        0 => (1, json!({"requests": limit, "per": "second"})),
        1 => (2, json!({"requests": limit, "per": "second", "unit_count": 2})),
        2 => (5, json!({"requests": limit, "per": "second", "unit_count": 5})),
        _ => (60, json!({"requests": limit, "per": "minute"})),
    };
    (limit, window_s, policy)
}

const APPS: [&str; 3] = ["a", "b", "c"];

/// One kind of request: its path, application, and the counters it touches in WSO2's order.
#[derive(Clone, Debug)]
struct Target {
    path: String,
    app: &'static str,
    counters: Vec<Counter>,
}

/// The configuration and the targets: API `alpha` with an API-level policy, API `beta` with a
/// resource-level policy on `/r` and none elsewhere; every application subscribed to both under
/// a random tier, each with a random application policy (or none).
fn campaign(random: &mut Random) -> (String, Vec<Target>, Leasing) {
    let mut policies = serde_json::Map::new();
    let counter =
        |random: &mut Random, name: String, code: &'static str, policies: &mut serde_json::Map<String, Value>| {
            let (limit, window_s, policy) = random_policy(random);
            policies.insert(name.clone(), policy);
            Counter { name, code, limit, window_s }
        };
    let alpha = counter(random, "ApiAlpha".into(), "900800", &mut policies);
    let beta_r = counter(random, "ResBetaR".into(), "900802", &mut policies);
    let mut subscriptions = Vec::new();
    let mut applications = Vec::new();
    let mut targets = Vec::new();
    for app in APPS {
        let app_counter = random.chance(70).then(|| counter(random, format!("App{app}"), "900803", &mut policies));
        let mut application = json!({"id": app, "name": app, "owner": format!("{app}-owner"),
            "api_keys": [{"sha256": api_key_hash(&format!("{app}-key"))}]});
        if let Some(app_counter) = &app_counter {
            application["policy"] = json!(app_counter.name);
        }
        applications.push(application);
        for api in ["Alpha", "Beta"] {
            let sub = random.chance(80).then(|| counter(random, format!("Sub{app}{api}"), "900804", &mut policies));
            let tier = sub.as_ref().map_or("Unlimited".to_string(), |sub| sub.name.clone());
            subscriptions.push(json!({"application": app, "api": format!("{api}:1.0.0"), "tier": tier}));
            let paths: &[(&str, Option<&Counter>)] = if api == "Alpha" {
                &[("/alpha/1.0.0/x", Some(&alpha))]
            } else {
                &[("/beta/1.0.0/r", Some(&beta_r)), ("/beta/1.0.0/other", None)]
            };
            for (path, first) in paths {
                let counters: Vec<Counter> =
                    first.iter().map(|c| (*c).clone()).chain(sub.clone()).chain(app_counter.clone()).collect();
                targets.push(Target { path: path.to_string(), app, counters });
            }
        }
    }
    let lease_max = [1, 5, 20, 100][random.below(4) as usize];
    let lease_share_percent = [5, 10, 50][random.below(3) as usize];
    let rls = json!({"cluster": "rls", "timeout_ms": 10_000, "counting": "leased", "lease_max": lease_max,
                     "lease_share_percent": lease_share_percent});
    let config = json!({
        "throttling": {"rate_limit_headers": true, "rate_limit_service": rls},
        "apis": [
            {"name": "Alpha", "context": "/alpha", "version": "1.0.0", "security": ["api_key"], "policy": "ApiAlpha",
             "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]},
            {"name": "Beta", "context": "/beta", "version": "1.0.0", "security": ["api_key"], "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/r", "policy": "ResBetaR"}, {"method": "GET", "path": "/*"}]}
        ],
        "applications": applications,
        "subscriptions": subscriptions,
        "policies": policies,
    });
    (config.to_string(), targets, Leasing { max: lease_max, share_percent: lease_share_percent })
}

/// The node's blocks: at most `max` tokens, `share_percent` of what remains.
#[derive(Clone, Copy, Debug)]
struct Leasing {
    max: u64,
    share_percent: u64,
}

/// One answer: which target, its code and headers, when it was sent and answered.
#[derive(Clone, Debug)]
struct Outcome {
    target: usize,
    code: String,
    status: u16,
    limit: Option<u64>,
    remaining: Option<u64>,
    retry_after: Option<u64>,
    sent: f64,
    received: f64,
}

/// A client: a node, a target, bursts of `burst` requests and pauses of `pause_ms`.
#[derive(Clone, Copy, Debug)]
struct Client {
    node: usize,
    target: usize,
    burst: u64,
    pause_ms: u64,
}

fn start_node(config: &str, backend: &Backend, service: &RateLimit) -> Envoy {
    Envoy::start(
        config,
        EnvoySetup {
            clusters: vec![("live".into(), backend.port)],
            grpc_clusters: vec![("rls".into(), service.grpc_port)],
            concurrency: 2,
            ..Default::default()
        },
    )
}

/// Runs `clients` against the nodes' ports (read before each request, so a restarted node's new
/// port is used) until `stop`; a request the killed node never answered is an error, not an
/// outcome.
fn run_clients(
    clients: &[Client],
    targets: &[Target],
    ports: &Arc<Mutex<Vec<u16>>>,
    run: Duration,
) -> (Vec<Outcome>, usize) {
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let start = Instant::now();
    let handles: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, results, ports) = (*client, Arc::clone(&results), Arc::clone(ports));
            let target = targets[client.target].clone();
            let key = format!("{}-key", target.app);
            thread::spawn(move || {
                while start.elapsed() < run {
                    for _ in 0..client.burst {
                        let port = ports.lock().unwrap()[client.node];
                        let sent = now_f64();
                        let answer = try_request(port, "GET", &target.path, &[("apikey", key.as_str())], None);
                        let received = now_f64();
                        let Ok(response) = answer else {
                            results.lock().unwrap().1 += 1;
                            thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        let number = |name: &str| response.header(name).and_then(|value| value.parse().ok());
                        let outcome = Outcome {
                            target: client.target,
                            code: response.code(),
                            status: response.status,
                            limit: number("ratelimit-limit"),
                            remaining: number("ratelimit-remaining"),
                            retry_after: number("retry-after"),
                            sent,
                            received,
                        };
                        results.lock().unwrap().0.push(outcome);
                    }
                    thread::sleep(Duration::from_millis(client.pause_ms));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

/// The tokens leased counting may leave stranded for a counter in a window (docs/CONFIG.md's
/// `RateLimitService`, src/throttle/cluster.rs): per node one and a half of the node's blocks
/// (`lease_share_percent` of what remains, at most `lease_max`) and a worker block per worker (at
/// most half of what the node holds), plus tokens given back by in-flight requests a later level
/// denied (`clients`); `nodes_lost` more nodes' worth when a node was killed; and `lease_max` - 1 once
/// where blocks are asked for in one increment (while more than ten of the largest remain).
fn stranded_bound(leasing: Leasing, limit: u64, clients: u64, nodes_lost: u64) -> u64 {
    let block = (limit * leasing.share_percent / 100).clamp(1, leasing.max);
    let per_node = block * 3 / 2 + 1 + 2 * (block / 2 + 1);
    let whole_refused = if limit > 10 * leasing.max { leasing.max - 1 } else { 0 };
    (2 + nodes_lost) * per_node + clients + whole_refused
}

#[test]
fn random_policies_and_clients_across_two_nodes_never_admit_over_a_limit() {
    let seed: u64 = std::env::var("APIM_CLUSTER_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0xc105_7e12);
    let mut random = Random(seed.max(1));
    let (config, targets, leasing) = campaign(&mut random);
    let per_node: Vec<usize> = (0..2).map(|_| 1 + random.below(4) as usize).collect();
    let clients: Vec<Client> = (0..2)
        .flat_map(|node| std::iter::repeat_n(node, per_node[node]))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|node| Client {
            node,
            target: random.below(targets.len() as u64) as usize,
            burst: 1 + random.below(20),
            pause_ms: if random.chance(50) { 0 } else { random.below(300) },
        })
        .collect();
    eprintln!("seed {seed}: {leasing:?}, clients {clients:?}");

    let redis = Redis::start();
    let service = RateLimit::start(&redis);
    let backend = Backend::start();
    let mut nodes: Vec<Option<Envoy>> = (0..2).map(|_| Some(start_node(&config, &backend, &service))).collect();
    let ports = Arc::new(Mutex::new(nodes.iter().map(|node| node.as_ref().unwrap().port).collect::<Vec<u16>>()));

    // Load on both nodes for 16 s; 7 s in, node 1 is killed (its leases and worker blocks lost,
    // its requests under way unanswered) and started again, its clients going on with it.
    let load = {
        let (clients, targets, ports) = (clients.clone(), targets.clone(), Arc::clone(&ports));
        thread::spawn(move || run_clients(&clients, &targets, &ports, Duration::from_secs(16)))
    };
    thread::sleep(Duration::from_secs(7));
    let killed_at = now_f64();
    nodes[1] = None;
    let restarted = start_node(&config, &backend, &service);
    ports.lock().unwrap()[1] = restarted.port;
    nodes[1] = Some(restarted);
    let (outcomes, errors) = load.join().unwrap();
    let load_end = now_f64();

    // Every answer is an admission or its target's level's 429, with that level's headers.
    for outcome in &outcomes {
        let target = &targets[outcome.target];
        if outcome.status == 200 {
            if let (Some(limit), Some(remaining)) = (outcome.limit, outcome.remaining) {
                assert!(
                    target.counters.iter().any(|c| c.limit == limit) && remaining < limit.max(1),
                    "seed {seed}: {outcome:?} of {target:?}"
                );
            }
            continue;
        }
        let counter = target.counters.iter().find(|c| c.code == outcome.code);
        let counter = counter.unwrap_or_else(|| panic!("seed {seed}: {outcome:?} is no level of {target:?}"));
        assert_eq!(outcome.status, 429, "seed {seed}: {outcome:?}");
        assert_eq!((outcome.limit, outcome.remaining), (Some(counter.limit), Some(0)), "seed {seed}: {outcome:?}");
        let retry = outcome.retry_after.unwrap_or(0);
        assert!(retry >= 1 && retry <= counter.window_s, "seed {seed}: Retry-After of {outcome:?}");
    }

    // Per counter and window: admitted (placed when sent and answered in one window), maybe
    // (answered in another window than sent), refused.
    let mut tallies: BTreeMap<(String, u64), (u64, u64, u64)> = BTreeMap::new();
    for outcome in &outcomes {
        for counter in &targets[outcome.target].counters {
            let (first, last) = (outcome.sent as u64 / counter.window_s, outcome.received as u64 / counter.window_s);
            if outcome.status == 200 {
                if first == last {
                    tallies.entry((counter.name.clone(), first)).or_default().0 += 1;
                } else {
                    tallies.entry((counter.name.clone(), first)).or_default().1 += 1;
                    tallies.entry((counter.name.clone(), last)).or_default().1 += 1;
                }
            } else if outcome.code == counter.code && first == last {
                tallies.entry((counter.name.clone(), first)).or_default().2 += 1;
            }
        }
    }
    let mut all: Vec<&Counter> = targets.iter().flat_map(|t| t.counters.iter()).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all.dedup_by(|a, b| a.name == b.name);
    let (mut checked_close, mut worst_shortfall) = (0, 0);
    for ((name, window), (placed, maybe, refused)) in &tallies {
        let counter = all.iter().find(|c| &c.name == name).unwrap();
        assert!(
            placed <= &counter.limit,
            "seed {seed}: {name} admitted {placed} in window {window} (limit {})",
            counter.limit
        );
        let (start, end) = ((window * counter.window_s) as f64, ((window + 1) * counter.window_s) as f64);
        // Refused inside a window whose end the load reached (the node killed within it loses
        // what it held).
        if *refused > 0 && end <= load_end - 0.5 {
            let lost = u64::from(start <= killed_at + 5.0 && end >= killed_at);
            let bound = stranded_bound(leasing, counter.limit, clients.len() as u64, lost);
            assert!(
                placed + maybe + bound >= counter.limit,
                "seed {seed}: {name} admitted {placed} (+{maybe} near an edge) in window {window} though it refused \
                 {refused}: more than {bound} short of {}",
                counter.limit
            );
            checked_close += 1;
            worst_shortfall = worst_shortfall.max(counter.limit.saturating_sub(placed + maybe));
        }
    }

    for counter in &all {
        let windows: Vec<&(u64, u64, u64)> =
            tallies.iter().filter(|((name, _), _)| name == &counter.name).map(|(_, tally)| tally).collect();
        let most = windows.iter().map(|(placed, _, _)| *placed).max().unwrap_or(0);
        let refused: u64 = windows.iter().map(|(_, _, refused)| *refused).sum();
        eprintln!(
            "  {}: limit {} per {} s, {} windows, at most {most} admitted in one, {refused} refused",
            counter.name,
            counter.limit,
            counter.window_s,
            windows.len()
        );
    }
    let admitted = outcomes.iter().filter(|o| o.status == 200).count();
    let received = backend.requests().len();
    assert!(
        received >= admitted && received <= admitted + errors,
        "seed {seed}: backend {received}, admitted {admitted}, {errors} errors"
    );
    let by_code = outcomes.iter().fold(BTreeMap::<&str, usize>::new(), |mut codes, o| {
        *codes.entry(o.code.as_str()).or_default() += 1;
        codes
    });
    eprintln!(
        "seed {seed}: {} answers {by_code:?}, {errors} errors at the kill, backend {received}; {} counter windows, \
         {checked_close} refused windows checked for closeness (at most {worst_shortfall} short)",
        outcomes.len(),
        tallies.len()
    );
}
