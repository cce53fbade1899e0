//! Tests of what an evaluation says and keeps: the RateLimit headers speak of requests only, and
//! on a denial of the level that denied it; a policy changed between bytes and requests starts a
//! fresh count; where the application level's policy comes from; and an API or resource policy
//! applied per user counts each user apart.

use super::limiter::tests::MemoryStore;
use super::limiter::Settings;
use super::tests::{caller, compile, evaluate, outcome_code, Fixture, NOW};
use super::*;

/// A caller whose tiers name no policy these fixtures define: only the API's levels count.
fn untiered() -> Caller<'static> {
    Caller { tier: None, application_policy: None, ..caller("u") }
}

#[test]
fn reload_a_bandwidth_policy_made_a_request_policy_does_not_read_bytes_as_requests() {
    // The API's policy counted body bytes; the operator turns it into a request count.
    let fixture = |one: &str| {
        compile(&format!(
            r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}},"policy":"One",
                  "resources":[{{"method":"GET","path":"/r"}}]}}],
              "policies":{{"One":{one}}}}}"#
        ))
    };
    let before = fixture(r#"{"bytes":10000000,"per":"hour"}"#);
    let mut store = MemoryStore::prepared(4096);
    let Outcome::Allowed { byte_counters, .. } = evaluate(&before, &untiered(), &mut store) else { panic!() };
    let mut engine = LocalEngine::unleased(Settings { slots: 4096, retries: 20, seed: [0; 16] });
    charge_bytes(&mut engine, &mut store, &byte_counters, 64_000, NOW);
    // After the update, in the same hour: no request has been counted under the new policy.
    let after = fixture(r#"{"requests":1000,"per":"hour"}"#);
    assert_eq!(outcome_code(&after, &untiered(), &mut store), None, "64,000 bytes read as 64,000 requests");
    // And back: the 1 request counted is not 1 byte of the budget, nor the bytes requests.
    let key = |fixture: &Fixture| {
        let api = &fixture.routes.apis[0];
        plan::plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], &untiered())[0].key.clone()
    };
    assert_eq!((key(&after), key(&before)), ("api:/a:1".to_string(), "api:/a:1:bytes".to_string()));
}

#[test]
fn a_bandwidth_refusal_puts_no_bytes_in_the_rate_limit_headers() {
    // The API counts 10 bytes an hour; a custom policy 100 requests an hour.
    let fixture = compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},"policy":"TenBytes",
              "resources":[{"method":"GET","path":"/r"}]}],
          "policies":{"TenBytes":{"bytes":10,"per":"hour"}},
          "custom_policies":[{"name":"cp","key":"$apiContext","requests":100,"per":"hour"}]}"#,
    );
    let mut store = MemoryStore::prepared(4096);
    let Outcome::Allowed { byte_counters, rate_limit, .. } = evaluate(&fixture, &untiered(), &mut store) else {
        panic!()
    };
    assert_eq!(rate_limit.map(|info| (info.limit, info.remaining)), Some((100, 99)), "requests only");
    let mut engine = LocalEngine::unleased(Settings { slots: 4096, retries: 20, seed: [0; 16] });
    charge_bytes(&mut engine, &mut store, &byte_counters, 20, NOW);
    let Outcome::Denied { fault, rate_limit, .. } = evaluate(&fixture, &untiered(), &mut store) else { panic!() };
    assert_eq!(fault.code, 900800);
    assert_eq!(rate_limit, None, "the byte budget is no request count");
}

#[test]
fn an_application_the_directory_does_not_hold_is_throttled_by_the_policy_its_credential_names() {
    // A JWT API key names its application and the application's policy (`application.tier`);
    // WSO2 throttles at the application level with it. The directory knows no such application.
    let fixture = compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r"}]}],
          "policies":{"One":{"requests":1,"per":"hour"}}}"#,
    );
    let key_caller = Caller {
        application_id: Some("from-a-jwt-api-key"),
        application_policy: Some("One"),
        tier: None,
        ..caller("u")
    };
    let mut store = MemoryStore::prepared(4096);
    assert_eq!(outcome_code(&fixture, &key_caller, &mut store), None);
    assert_eq!(outcome_code(&fixture, &key_caller, &mut store), Some(900803));
}

#[test]
fn a_tier_no_policy_defines_answers_900809_and_admits_nothing() {
    // A subscription tier or application policy named at run time (a JWT API key's
    // `subscribedAPIs` tier and `application.tier`, the control plane's subscriptions) that no
    // policy defines: the Microgateway answers 900809 ("a subscription or application throttle
    // policy is not deployed"); it never goes unthrottled.
    let fixture = compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r"}]}],
          "policies":{"Bronze":{"requests":1000,"per":"hour"}}}"#,
    );
    let mut store = MemoryStore::prepared(4096);
    let with = |tier, application_policy| Caller {
        application_id: Some("from-a-jwt-api-key"),
        tier: Some(tier),
        application_policy,
        ..caller("u")
    };
    assert_eq!(outcome_code(&fixture, &with("Gold", None), &mut store), Some(900809));
    assert_eq!(outcome_code(&fixture, &with("Bronze", Some("Platinum")), &mut store), Some(900809));
    assert_eq!(outcome_code(&fixture, &with("Bronze", Some("Bronze")), &mut store), None);
    assert_eq!(outcome_code(&fixture, &with("Unlimited", None), &mut store), None);
    assert_eq!(
        outcome_code(&fixture, &with("unlimited", Some("UNLIMITED")), &mut store),
        None,
        "WSO2 ignores its case"
    );
}

#[test]
fn a_denial_s_rate_limit_headers_describe_the_level_that_denied_it() {
    // The resource admits 2 a minute, the subscription 1 an hour. The second request takes the
    // resource's last token of the minute, then its subscription denies it: the resource's
    // token goes back, and the headers must speak of the subscription (the level the client
    // waits for, as Retry-After does), not of a minute that ends long before it may come back.
    let fixture = compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r","policy":"TwoPerMinute"}]}],
          "applications":[{"id":"app","name":"App"}],
          "subscriptions":[{"application":"app","api":"A:1","tier":"Tier"}],
          "policies":{"TwoPerMinute":{"requests":2,"per":"minute"},"Tier":{"requests":1,"per":"hour"}}}"#,
    );
    let mut store = MemoryStore::prepared(4096);
    let caller = Caller { application_policy: None, ..caller("u") };
    assert!(matches!(evaluate(&fixture, &caller, &mut store), Outcome::Allowed { .. }));
    let Outcome::Denied { fault, rate_limit, .. } = evaluate(&fixture, &caller, &mut store) else { panic!() };
    assert_eq!(fault.code, 900804);
    let retry_after = fault.retry_after_s.unwrap();
    assert_eq!(
        rate_limit.map(|info| (info.limit, info.remaining, info.reset_s(NOW))),
        Some((1, 0, Some(retry_after))),
        "RateLimit-Limit, -Remaining and -Reset of the subscription, whose window Retry-After names"
    );
}

#[test]
fn an_api_or_resource_policy_applied_per_user_counts_each_user_apart() {
    // WSO2's advanced policies apply to the API as a whole or per user (`applicableLevel:
    // userLevel`): per user, each user has the policy's limit, counted apart.
    for (api_policy, resource_policy, code) in
        [(r#","policy":"OnePerUser""#, "", 900800), ("", r#","policy":"OnePerUser""#, 900802)]
    {
        let fixture = compile(&format!(
            r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}}{api_policy},
                  "resources":[{{"method":"GET","path":"/r"{resource_policy}}}]}}],
              "policies":{{"OnePerUser":{{"requests":1,"per":"hour","per_user":true}}}}}}"#
        ));
        // Only the API's levels count: the callers' tiers name no policy of the fixture.
        let alice = Caller { tier: None, application_policy: None, ..caller("alice") };
        let bob = Caller { tier: None, application_policy: None, ..caller("bob") };
        let mut store = MemoryStore::prepared(4096);
        assert_eq!(outcome_code(&fixture, &alice, &mut store), None);
        assert_eq!(outcome_code(&fixture, &alice, &mut store), Some(code), "alice's one request is spent");
        assert_eq!(outcome_code(&fixture, &bob, &mut store), None, "bob has his own");
    }
}
