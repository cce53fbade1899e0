//! Tests of condition groups in throttling: a request counts in every group it matches, under
//! each group's own limit and key, and under the policy's own limit only when it matches none.

use super::limiter::tests::MemoryStore;
use super::tests::{caller, compile, outcome_code, Fixture};
use super::*;
use crate::conditions::RequestFacts;
use crate::host::Header;

/// The API `A` (`/a`, version 1) under `policy`, with the policies given.
fn fixture(policy_at_api: bool, policies: &str) -> Fixture {
    let (api_policy, resource_policy) =
        if policy_at_api { (r#","policy":"Gold""#, "") } else { ("", r#","policy":"Gold""#) };
    compile(&format!(
        r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}}{api_policy},
              "resources":[{{"method":"GET","path":"/r"{resource_policy}}}]}}],
          "policies":{policies}}}"#
    ))
}

const GOLD: &str = r#"{"Gold":{"requests":100,"per":"hour","condition_groups":[
    {"requests":1,"per":"hour","conditions":[{"header":"x-plan","matches":"^free$"}]},
    {"requests":2,"per":"hour","conditions":[{"ip_range":"10.0.0.0/8"}]}]}}"#;

fn keys(fixture: &Fixture, caller: &Caller<'_>) -> Vec<(String, u64)> {
    let api = &fixture.routes.apis[0];
    plan::plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], caller)
        .into_iter()
        .map(|counter| (counter.key, counter.limit))
        .collect()
}

fn untiered<'a>(request: &'a RequestFacts<'a>, ip: &str) -> Caller<'a> {
    Caller { tier: None, application_policy: None, client_ip: ip.parse().ok(), request: Some(request), ..caller("u") }
}

#[test]
fn a_request_counts_in_each_group_it_matches_and_the_policy_counts_the_rest() {
    let fixture = fixture(true, GOLD);
    let free: Vec<Header> = vec![("x-plan".into(), b"free".to_vec())];
    let (free, none) = (RequestFacts::new(&free, None, None), RequestFacts::default());
    let both = keys(&fixture, &untiered(&free, "10.1.1.1"));
    assert_eq!(both, [("api_condition:/a:1:Gold:1".to_string(), 1), ("api_condition:/a:1:Gold:2".to_string(), 2)]);
    assert_eq!(keys(&fixture, &untiered(&free, "192.0.2.1")), [("api_condition:/a:1:Gold:1".to_string(), 1)]);
    assert_eq!(keys(&fixture, &untiered(&none, "192.0.2.1")), [("api:/a:1".to_string(), 100)], "no group: its own");
    // Without what the request holds, no group can match: the policy's own limit applies.
    let unknown = Caller { tier: None, application_policy: None, ..caller("u") };
    assert_eq!(keys(&fixture, &unknown), [("api:/a:1".to_string(), 100)]);
}

#[test]
fn a_group_denies_with_its_levels_code_and_the_others_keep_counting() {
    let mut store = MemoryStore::prepared(4096);
    for (policy_at_api, code) in [(true, 900800), (false, 900802)] {
        let fixture = fixture(policy_at_api, GOLD);
        let free: Vec<Header> = vec![("x-plan".into(), b"free".to_vec())];
        let (free, none) = (RequestFacts::new(&free, None, None), RequestFacts::default());
        assert_eq!(outcome_code(&fixture, &untiered(&free, "192.0.2.1"), &mut store), None);
        assert_eq!(outcome_code(&fixture, &untiered(&free, "192.0.2.1"), &mut store), Some(code), "group 1 allows 1");
        // The requests of no group count under the policy's 100: the free plan's count is not theirs.
        for _ in 0..5 {
            assert_eq!(outcome_code(&fixture, &untiered(&none, "192.0.2.1"), &mut store), None);
        }
    }
}

#[test]
fn groups_keys_are_the_resources_per_user_and_never_the_levels_own() {
    let per_user =
        GOLD.replace(r#""per":"hour","condition_groups""#, r#""per":"hour","per_user":true,"condition_groups""#);
    let free: Vec<Header> = vec![("x-plan".into(), b"free".to_vec())];
    let free = RequestFacts::new(&free, None, None);
    let fixture = fixture(true, &per_user);
    assert_eq!(keys(&fixture, &untiered(&free, "192.0.2.1")), [("api_condition:/a:1:Gold:1:u".to_string(), 1)]);
    let fixture = self::fixture(false, GOLD);
    let api = &fixture.routes.apis[0];
    let resource_key = &api.resources[0].key;
    let expected = format!("resource_condition:{}:Gold:1", resource_key.replace(':', "%3A"));
    assert_eq!(keys(&fixture, &untiered(&free, "192.0.2.1")), [(expected, 1)]);
}
