//! Condition groups (WSO2's advanced throttling policies) through a real Envoy with two workers:
//! a request meeting every condition of a group counts under the group's limit, in each group it
//! meets; the policy's own limit counts the requests of no group. Header, query parameter,
//! client address and JWT claim conditions, from the configuration; and a control plane's
//! `IPSpecific` and `Header` groups (API-M's `conditionGroups`) from the stand-in control plane.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{api_key_hash, keys, Backend, Envoy, Response};
use serde_json::{json, Value};

const KEY_KID: &str = "apikey-b";

/// A WSO2 JWT API key of application `caller`, subscribed to every API here, with `groups`.
fn jwt_api_key(groups: &[&str]) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
    let subscribed: Vec<Value> = ["Plans", "Claims"]
        .iter()
        .map(|name| json!({"name": name, "version": "1.0.0", "context": format!("/{}/1.0.0", name.to_lowercase())}))
        .collect();
    let claims = json!({"iss": "https://apim.test/apikey", "sub": "alice", "exp": exp, "keytype": "PRODUCTION",
        "groups": groups,
        "application": {"uuid": "caller", "name": "caller", "owner": "caller-owner", "tier": "Unlimited"},
        "subscribedAPIs": subscribed});
    keys::signed_jwt("rsa-b.pem", KEY_KID, &claims)
}

fn config() -> String {
    let api = |name: &str| {
        let policy = if name == "Hosts" { "Hosted" } else { "Gold" };
        json!({"name": name, "context": format!("/{}", name.to_lowercase()), "version": "1.0.0", "security": ["api_key"],
               "endpoints": {"production": "live"}, "policy": policy, "resources": [{"method": "GET", "path": "/*"}]})
    };
    json!({
        "api_key_jwt": {"keys": [keys::public_jwk("rsa-b.pem", KEY_KID)], "issuer": "https://apim.test/apikey"},
        "apis": [api("Plans"), api("Claims"), api("Hosts"), api("Named")],
        // WSO2 reads a claim condition from the JWT its gateway sends the backend.
        "backend_jwt": {"algorithm": "none"},
        "applications": [{"id": "caller", "name": "caller", "owner": "caller-owner",
                          "api_keys": [{"sha256": api_key_hash("caller-key")}]}],
        "subscriptions": [{"application": "caller", "api": "Plans:1.0.0"}, {"application": "caller", "api": "Claims:1.0.0"},
                          {"application": "caller", "api": "Hosts:1.0.0"}, {"application": "caller", "api": "Named:1.0.0"}],
        "policies": {
            "Hosted": {"requests": 4, "per": "hour", "condition_groups": [
                {"requests": 1, "per": "hour", "conditions": [{"header": "Host", "matches": "^127\\.0\\.0\\.1:"}]}
            ]},
            "Gold": {"requests": 4, "per": "hour", "condition_groups": [
                {"requests": 2, "per": "hour", "conditions": [{"header": "x-plan", "matches": "^free$"}]},
                {"requests": 1, "per": "hour", "conditions": [
                    {"query_param": "format", "matches": "^csv$"}, {"ip_range": "127.0.0.0/8"}]},
                {"requests": 1, "per": "hour", "conditions": [
                    {"query_param": "format", "matches": "^csv$"}, {"ip_range": "10.0.0.0/8"}]},
                {"requests": 3, "per": "hour", "conditions": [{"jwt_claim": "groups", "matches": "^admin$"}]},
                {"requests": 1, "per": "hour", "conditions": [
                    {"jwt_claim": "http://wso2.org/claims/applicationname", "matches": "^caller$"},
                    {"header": "x-named", "matches": "^yes$"}]}
            ]}
        }
    })
    .to_string()
}

fn stack() -> (Envoy, Backend) {
    common::envoy_in_one_hour(&config())
}

fn codes(responses: impl IntoIterator<Item = Response>) -> Vec<String> {
    responses.into_iter().map(|response| response.code()).collect()
}

#[test]
fn each_group_counts_what_meets_it_and_the_policy_the_rest() {
    let (envoy, backend) = stack();
    let send = |path: &str, plan: Option<&str>| {
        let mut headers = vec![("apikey", "caller-key")];
        headers.extend(plan.map(|plan| ("x-plan", plan)));
        envoy.send("GET", path, &headers, None)
    };
    // The free plan's group allows 2 an hour, answered as the API level's (900800, 429).
    let free = [send("/plans/1.0.0/a", Some("free")), send("/plans/1.0.0/a", Some("free"))];
    let third = send("/plans/1.0.0/a", Some("free"));
    assert_eq!(codes(free), ["200", "200"]);
    assert_eq!((third.status, third.code()), (429, "900800".to_string()));
    // `freemium` is no `^free$`: the policy's own 4 count it, untouched by the free plan's.
    assert_eq!(codes((0..2).map(|_| send("/plans/1.0.0/a", Some("freemium")))), ["200", "200"]);
    // The CSV group from this host (127.0.0.1) allows 1; the one for 10.0.0.0/8 is not met.
    assert_eq!(codes((0..2).map(|_| send("/plans/1.0.0/a?format=csv", None))), ["200", "900800"]);
    // The rest of the policy's own 4, then its refusal.
    assert_eq!(codes((0..3).map(|_| send("/plans/1.0.0/a?format=json", None))), ["200", "200", "900800"]);
    // A request meeting two groups counts in both: the free plan's is spent, so CSV's refusal
    // is not what answers (and neither group admits it).
    assert_eq!(send("/plans/1.0.0/a?format=csv", Some("free")).code(), "900800");
    assert_eq!(backend.requests().len(), 2 + 2 + 1 + 2);
}

#[test]
fn a_claim_of_the_callers_jwt_api_key_puts_it_in_a_group() {
    let (envoy, _backend) = stack();
    let admin = jwt_api_key(&["dev", "admin"]);
    let developer = jwt_api_key(&["dev"]);
    let send = |key: &str| envoy.send("GET", "/claims/1.0.0/a", &[("apikey", key)], None);
    assert_eq!(codes((0..4).map(|_| send(&admin))), ["200", "200", "200", "900800"]);
    // Without the claim, the policy's own 4; an opaque API key has no claims at all.
    assert_eq!(codes((0..2).map(|_| send(&developer))), ["200", "200"]);
    assert_eq!(codes((0..3).map(|_| send("caller-key"))), ["200", "200", "900800"]);
}

/// WSO2's gateway reads a claim condition from the backend JWT it generates: its claims
/// (`http://wso2.org/claims/applicationname`) are read, for an opaque API key too.
#[test]
fn a_claim_of_the_backend_jwt_puts_a_caller_in_a_group() {
    let (envoy, _backend) = stack();
    let send = || envoy.send("GET", "/named/1.0.0/a", &[("apikey", "caller-key"), ("x-named", "yes")], None);
    assert_eq!(codes([send(), send()]), ["200", "900800"], "the group's 1, not the policy's 4");
}

/// API-M's header conditions read the transport header `Host`; Envoy gives it as `:authority`.
#[test]
fn a_host_condition_reads_the_requests_authority() {
    let (envoy, _backend) = stack();
    // The client sends `host: 127.0.0.1:<port>`: the group's 1 an hour, not the policy's own 4.
    let send = || envoy.send("GET", "/hosts/1.0.0/a", &[("apikey", "caller-key")], None);
    assert_eq!(codes((0..2).map(|_| send())), ["200", "900800"]);
}
