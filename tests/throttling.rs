//! Throttling through a real Envoy with two workers (`--concurrency 2`): a policy of N allows
//! exactly N under concurrent load from many connections (also when workers count in blocks of
//! tokens, for larger limits), each level answers its own code,
//! blocking touches no counter, burst control trips within the second, `Retry-After` and
//! `nextAccessTime` are right, and bandwidth policies count body bytes.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use common::windows::{align_to_window, in_one_window, now_f64};
use common::{api_key_hash, keys, request, Backend, Envoy, EnvoySetup, Response};
use serde_json::{json, Value};

fn api(name: &str, context: &str, policy: Option<&str>, resources: Value) -> Value {
    let mut api = json!({"name": name, "context": context, "version": "1.0.0", "security": ["api_key"],
        "endpoints": {"production": "live"}, "resources": resources});
    if let Some(policy) = policy {
        api["policy"] = Value::from(policy);
    }
    api
}

fn app(id: &str, policy: Option<&str>) -> Value {
    let mut app = json!({"id": id, "name": id, "owner": format!("{id}-owner"), "api_keys": [{"sha256": api_key_hash(&format!("{id}-key"))}]});
    if let Some(policy) = policy {
        app["policy"] = Value::from(policy);
    }
    app
}

/// A WSO2 JWT API key of the `plain` application, issued to end user `user`.
fn jwt_api_key(user: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
    let claims = json!({"iss": "https://apim.test/apikey", "sub": user, "exp": exp, "keytype": "PRODUCTION",
        "application": {"uuid": "plain", "name": "plain", "owner": "plain-owner", "tier": "Unlimited"},
        "subscribedAPIs": [{"name": "ApiLevel", "version": "1.0.0", "context": "/apilevel/1.0.0"}]});
    keys::signed_jwt("rsa-b.pem", "apikey-b", &claims)
}

fn config() -> String {
    let any = json!([{"method": "GET", "path": "/*"}, {"method": "POST", "path": "/*"}]);
    json!({
        "throttling": {"rate_limit_headers": true},
        "api_key_jwt": {"keys": [keys::public_jwk("rsa-b.pem", "apikey-b")], "issuer": "https://apim.test/apikey"},
        "apis": [
            {"name": "Exact", "context": "/exact", "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/items", "policy": "TwentyFivePerTen"}]},
            {"name": "Leased", "context": "/leased", "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
             "resources": [{"method": "GET", "path": "/items", "policy": "FourHundredPerHour"}]},
            api("ApiLevel", "/apilevel", Some("ThreePerHour"), any.clone()),
            api("Subs", "/subs", None, any.clone()),
            api("Burst", "/burst", None, any.clone()),
            api("Apps", "/apps", None, any.clone()),
            api("Custom", "/custom", None, any.clone()),
            api("Hard", "/hard", None, any.clone()),
            api("Flagged", "/flagged", None, any.clone()),
            api("Blocked", "/blockedapi", None, any.clone()),
            {"name": "Bandwidth", "context": "/bandwidth", "version": "1.0.0", "security": [], "endpoints": {"production": "live"},
                          "resources": [{"method": "POST", "path": "/bytes/{n}", "policy": "ThousandBytes"}]}
        ],
        "applications": [
            app("plain", None), app("blocked-app", None), app("limited", Some("TwoPerHour")), app("gold", None), app("bursty", None),
            app("lenient", None)
        ],
        "subscriptions": [
            {"application": "plain", "api": "ApiLevel:1.0.0"},
            {"application": "blocked-app", "api": "ApiLevel:1.0.0"},
            {"application": "gold", "api": "Subs:1.0.0", "tier": "TwoPerHour"},
            {"application": "bursty", "api": "Burst:1.0.0", "tier": "BurstTier"},
            {"application": "limited", "api": "Apps:1.0.0"},
            {"application": "plain", "api": "Custom:1.0.0"},
            {"application": "plain", "api": "Hard:1.0.0"},
            {"application": "lenient", "api": "Flagged:1.0.0", "tier": "SoftTwo"},
            {"application": "plain", "api": "Blocked:1.0.0"}
        ],
        "policies": {
            "TwentyFivePerTen": {"requests": 25, "per": "second", "unit_count": 10},
            "FourHundredPerHour": {"requests": 400, "per": "hour"},
            "ThreePerHour": {"requests": 3, "per": "hour"},
            "TwoPerHour": {"requests": 2, "per": "hour"},
            "SoftTwo": {"requests": 2, "per": "hour", "stop_on_quota_reach": false},
            "BurstTier": {"requests": 100, "per": "minute", "burst": {"requests": 2, "per": "second"}},
            "ThousandBytes": {"bytes": 1000, "per": "hour"}
        },
        "custom_policies": [{"name": "per-ip", "key": "$clientIp:$apiContext", "requests": 2, "per": "hour", "apis": ["Custom:1.0.0"]}],
        "hard_limits": [{"api": "Hard:1.0.0", "key_type": "PRODUCTION", "requests_per_second": 2}],
        "blocking": [{"application": "blocked-app"}, {"api": "/blockedapi/1.0.0"}]
    })
    .to_string()
}

/// A started Envoy with at least two minutes left of the hour (its hourly policies count in one
/// window for the whole test).
fn stack() -> (Envoy, Backend) {
    common::envoy_in_one_hour(&config())
}

fn with_key(envoy: &Envoy, path: &str, application: &str) -> Response {
    envoy.send("GET", path, &[("apikey", &format!("{application}-key"))], None)
}

/// Sends `threads` x `each` requests to `path` at once over new connections; their statuses and
/// codes.
fn concurrent_load(port: u16, path: &'static str, threads: usize, each: usize) -> Vec<(u16, String)> {
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let results = Arc::clone(&results);
            thread::spawn(move || {
                for _ in 0..each {
                    let response = request(port, "GET", path, &[], None);
                    let code = if response.status == 200 {
                        "200".to_string()
                    } else {
                        response.json()["code"].as_str().unwrap().to_string()
                    };
                    results.lock().unwrap().push((response.status, code));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let results = results.lock().unwrap().clone();
    results
}

/// Connections each of Envoy's workers took on the listener.
fn connections_per_worker(envoy: &Envoy) -> Vec<u64> {
    let stats = request(envoy.admin_port, "GET", "/stats?filter=worker_.\\.downstream_cx_total", &[], None).body;
    stats
        .lines()
        .filter(|l| l.contains(&format!("_{}.worker_", envoy.port)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_policy_of_n_allows_exactly_n_under_concurrent_load_then_the_next_window_opens() {
    let (envoy, backend) = stack();
    let port = envoy.port;
    let (results, reached) = in_one_window(10, || {
        let before = backend.requests().len();
        let results = concurrent_load(port, "/exact/1.0.0/items", 16, 8);
        (results, backend.requests().len() - before)
    });
    // Both workers took connections: the count is shared, not per worker.
    let per_worker = connections_per_worker(&envoy);
    assert!(per_worker.len() == 2 && per_worker.iter().all(|n| *n > 0), "connections per worker: {per_worker:?}");
    let allowed = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(allowed, 25, "exactly N of {} requests over two workers", results.len());
    assert!(results
        .iter()
        .filter(|(status, _)| *status != 200)
        .all(|(status, code)| *status == 429 && code == "900802"));
    assert_eq!(reached, 25);
    align_to_window(10);
    assert_eq!(
        request(port, "GET", "/exact/1.0.0/items", &[], None).status,
        200,
        "the next window lets traffic through"
    );
}

#[test]
fn a_limit_counted_in_worker_blocks_never_admits_more_than_n_and_loses_at_most_a_block_per_worker() {
    // 400 per hour: a worker takes blocks of 5% of what remains (20 at first, fewer near the
    // limit) and spends them without shared data; the last 20 tokens go request by request.
    // `stack` leaves at least two minutes of the hour: the load fits in one window.
    let (envoy, backend) = stack();
    let port = envoy.port;
    let results = concurrent_load(port, "/leased/1.0.0/items", 16, 50);
    let per_worker = connections_per_worker(&envoy);
    assert!(per_worker.len() == 2 && per_worker.iter().all(|n| *n > 0), "connections per worker: {per_worker:?}");
    let allowed = results.iter().filter(|(status, _)| *status == 200).count();
    // Never more than N; fewer only by what a worker still held when its traffic stopped (at most
    // one block each, 20 tokens). With both workers loaded to the end it is N.
    assert!((400 - 2 * 20..=400).contains(&allowed), "{allowed} of {} requests admitted", results.len());
    assert!(results
        .iter()
        .filter(|(status, _)| *status != 200)
        .all(|(status, code)| *status == 429 && code == "900802"));
    assert_eq!(backend.requests().len(), allowed);
}

#[test]
fn each_level_answers_its_own_code() {
    let (envoy, backend) = stack();
    // API level: 3 per hour for the API, whoever calls.
    let codes: Vec<String> = (0..4).map(|_| with_key(&envoy, "/apilevel/1.0.0/x", "plain").code()).collect();
    assert_eq!(codes, ["200", "200", "200", "900800"]);
    // Subscription level: the tier allows 2 per hour.
    let codes: Vec<String> = (0..3).map(|_| with_key(&envoy, "/subs/1.0.0/x", "gold").code()).collect();
    assert_eq!(codes, ["200", "200", "900804"]);
    // Application level: the application's own policy, 2 per hour per end user.
    let codes: Vec<String> = (0..3).map(|_| with_key(&envoy, "/apps/1.0.0/x", "limited").code()).collect();
    assert_eq!(codes, ["200", "200", "900803"]);
    // Custom policy keyed on client IP and API context.
    let codes: Vec<String> = (0..3).map(|_| with_key(&envoy, "/custom/1.0.0/x", "plain").code()).collect();
    assert_eq!(codes, ["200", "200", "900806"]);
    assert_eq!(backend.requests().len(), 3 + 2 + 2 + 2);
    // Hard limit: 2 per second, then 503.
    let responses: Vec<Response> =
        in_one_window(1, || (0..3).map(|_| with_key(&envoy, "/hard/1.0.0/x", "plain")).collect());
    assert_eq!(responses.iter().map(Response::code).collect::<Vec<_>>(), ["200", "200", "900801"]);
    assert_eq!(responses[2].status, 503);
    assert_eq!(responses[2].header("retry-after"), None, "no Retry-After for the hard limit");
    // Blocked API: 900805 (429 per the seed's table), never reaching the backend.
    let reached = backend.requests().len();
    let blocked = with_key(&envoy, "/blockedapi/1.0.0/x", "plain");
    assert_eq!((blocked.status, blocked.code()), (429, "900805".to_string()));
    assert_eq!(backend.requests().len(), reached);
}

#[test]
fn blocking_answers_900805_and_touches_no_counter() {
    let (envoy, _backend) = stack();
    for _ in 0..5 {
        let response = with_key(&envoy, "/apilevel/1.0.0/x", "blocked-app");
        assert_eq!((response.status, response.code()), (429, "900805".to_string()));
        assert_eq!(response.header("retry-after"), None);
    }
    // The API's 3-per-hour counter is untouched by the blocked requests.
    let codes: Vec<String> = (0..4).map(|_| with_key(&envoy, "/apilevel/1.0.0/x", "plain").code()).collect();
    assert_eq!(codes, ["200", "200", "200", "900800"]);
}

#[test]
fn blocking_by_ip_and_cidr_and_user() {
    for condition in [json!({"ip": "127.0.0.1"}), json!({"ip_range": "127.0.0.0/8"}), json!({"user": "admin"})] {
        let backend = Backend::start();
        let mut config: Value = serde_json::from_str(&config()).unwrap();
        config["blocking"] = json!([condition]);
        // JWT API keys carry an end user (`sub`); opaque keys do not, so the user condition uses the open API.
        let envoy = Envoy::start(
            &config.to_string(),
            EnvoySetup { clusters: vec![("live".into(), backend.port)], ..Default::default() },
        );
        let response = if condition.get("user").is_some() {
            // The end user comes from the credential: a JWT API key issued to `admin`.
            let other = envoy.send("GET", "/apilevel/1.0.0/x", &[("apikey", &jwt_api_key("someone-else"))], None);
            assert_eq!(other.status, 200, "only the blocked user is blocked: {}", other.body);
            envoy.send("GET", "/apilevel/1.0.0/x", &[("apikey", &jwt_api_key("admin"))], None)
        } else {
            envoy.get("/exact/1.0.0/items")
        };
        assert_eq!((response.status, response.code()), (429, "900805".to_string()), "{condition}: {}", response.body);
        let reached = if condition.get("user").is_some() { 1 } else { 0 };
        assert_eq!(backend.requests().len(), reached, "{condition}");
    }
}

#[test]
fn burst_control_trips_within_the_second_while_the_minute_quota_has_room() {
    let (envoy, _backend) = stack();
    let codes: Vec<String> =
        in_one_window(1, || (0..3).map(|_| with_key(&envoy, "/burst/1.0.0/x", "bursty").code()).collect());
    assert_eq!(codes, ["200", "200", "900807"]);
    align_to_window(1);
    assert_eq!(with_key(&envoy, "/burst/1.0.0/x", "bursty").code(), "200", "the next second lets it through");
}

#[test]
fn retry_after_and_next_access_time_are_right_to_the_second() {
    let (envoy, _backend) = stack();
    for _ in 0..3 {
        assert_eq!(with_key(&envoy, "/apilevel/1.0.0/x", "plain").status, 200);
    }
    let before = now_f64();
    let response = with_key(&envoy, "/apilevel/1.0.0/x", "plain");
    let after = now_f64();
    assert_eq!(response.code(), "900800");
    let window_end = ((before / 3600.0).floor() as u64 + 1) * 3600;
    let retry_after: u64 = response.header("retry-after").expect("Retry-After").parse().unwrap();
    let low = window_end - after.ceil() as u64;
    let high = window_end - before.floor() as u64;
    assert!((low..=high).contains(&retry_after), "Retry-After {retry_after} not in {low}..={high}");
    let body = response.json();
    assert_eq!(body["nextAccessTime"], apim_filter::render::format_next_access_time(window_end));
    assert!(body["description"]
        .as_str()
        .unwrap()
        .ends_with(&format!(".You can access API after {}", body["nextAccessTime"].as_str().unwrap())));
    assert_eq!(response.header("ratelimit-remaining"), Some("0"));
    assert_eq!(response.header("ratelimit-limit"), Some("3"));
}

#[test]
fn rate_limit_headers_count_down_and_over_quota_requests_pass_flagged() {
    let (envoy, backend) = stack();
    let remaining: Vec<String> = (0..3)
        .map(|_| {
            with_key(&envoy, "/apilevel/1.0.0/x", "plain").header("ratelimit-remaining").unwrap_or("?").to_string()
        })
        .collect();
    assert_eq!(remaining, ["2", "1", "0"]);
    // SoftTwo: stop_on_quota_reach false -> the third passes, flagged for the backend. The flag is
    // the filter's: a client's copy, in any spelling, never reaches the backend.
    let forged = [("apikey", "lenient-key"), ("x-apim-quota-exceeded", "true"), ("X_Apim_Quota_Exceeded", "true")];
    let codes: Vec<String> = (0..3).map(|_| envoy.send("GET", "/flagged/1.0.0/x", &forged, None).code()).collect();
    assert_eq!(codes, ["200", "200", "200"]);
    let flags: Vec<Option<String>> =
        backend.requests().iter().skip(3).map(|r| r.header("x-apim-quota-exceeded").map(String::from)).collect();
    assert_eq!(flags, [None, None, Some("true".to_string())]);
}

#[test]
fn a_bandwidth_policy_trips_after_its_bytes_have_passed() {
    let (envoy, _backend) = stack();
    // Each exchange moves 300 request bytes and 200 response bytes: the 1000-byte budget is spent
    // after two exchanges only if response bytes count too (request bytes alone would be 600).
    let body = [b'x'; 300];
    let codes: Vec<String> =
        (0..3).map(|_| envoy.send("POST", "/bandwidth/1.0.0/bytes/200", &[], Some(&body)).code()).collect();
    assert_eq!(codes, ["200", "200", "900802"], "1000 bytes of bodies have passed a 1000-byte budget");
}
