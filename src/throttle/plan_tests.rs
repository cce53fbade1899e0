//! Blocking conditions as WSO2's gateway applies them (`ThrottleDataHolder.isRequestBlocked`),
//! and custom policies' key templates.

use std::net::IpAddr;
use std::rc::Rc;

use super::*;
use crate::directory::{AppKey, Application, Subscription};
use crate::routing::Table;
use crate::vocab::KmId;

/// A directory holding blocking conditions only; with `known`, it also defines the policies of
/// those names (which count nothing).
#[derive(Debug, Default)]
struct Conditions(Vec<BlockingCondition>, Vec<&'static str>);

impl Directory for Conditions {
    fn client(&self, _: &str, _: KmId) -> Option<AppKey> {
        None
    }
    fn api_key(&self, _: &[u8; 32]) -> Option<AppKey> {
        None
    }
    fn application(&self, _: &str) -> Option<Rc<Application>> {
        None
    }
    fn subscription(&self, _: &str, _: &Api) -> Option<Rc<Subscription>> {
        None
    }
    fn policy(&self, _: PolicyLevel, _: &str) -> Option<Rc<crate::directory::PolicySpec>> {
        None
    }
    fn knows_policy(&self, _: PolicyLevel, name: &str) -> bool {
        self.1.contains(&name)
    }
    fn has_policies(&self) -> bool {
        !self.1.is_empty()
    }
    fn blocking(&self) -> &[BlockingCondition] {
        &self.0
    }
}

fn table() -> Table {
    let api = serde_json::json!({"name": "A", "context": "/a", "version": "1", "endpoints": {"production": "c"}});
    Table::compile(vec![serde_json::from_value(api).unwrap()], &|_| true).unwrap()
}

fn blocks(condition: BlockingCondition, client: &str) -> bool {
    let routes = table();
    let caller = Caller { client_ip: Some(client.parse::<IpAddr>().unwrap()), ..Caller::default() };
    blocked(&Conditions(vec![condition], Vec::new()), &routes.apis[0], &caller, "carbon.super")
}

fn between(low: &str, high: &str, inclusive: bool, invert: bool) -> BlockingCondition {
    BlockingCondition::IpBetween { low: low.parse().unwrap(), high: high.parse().unwrap(), inclusive, invert }
}

#[test]
fn an_inverted_address_condition_blocks_every_address_outside_it_of_either_family() {
    // WSO2: an `IP` condition with `invert` blocks every address that is not the one it names,
    // and an inverted `IPRANGE` every address outside the range: an IPv6 client is outside an
    // IPv4 range, so an "only from 10.0.0.0/8" rule must not let IPv6 clients through.
    let only_office = between("10.0.0.0", "10.255.255.255", false, true);
    assert!(!blocks(only_office.clone(), "10.1.2.3"));
    assert!(blocks(only_office.clone(), "192.0.2.1"));
    assert!(blocks(only_office, "2001:db8::1"), "an IPv6 client is outside an IPv4 range");
    let only_host = between("192.0.2.10", "192.0.2.10", true, true);
    assert!(!blocks(only_host.clone(), "192.0.2.10"));
    assert!(blocks(only_host, "2001:db8::10"));
    let only_v6 = between("2001:db8::", "2001:db8::ffff", false, true);
    assert!(blocks(only_v6, "192.0.2.1"), "an IPv4 client is outside an IPv6 range");
    // Not inverted, another family is never inside.
    assert!(!blocks(between("10.0.0.0", "10.255.255.255", false, false), "2001:db8::1"));
}

#[test]
fn an_ipv4_mapped_client_address_is_the_ipv4_address_for_every_address_condition() {
    // As for the configuration's `ip`/`ip_range` (`IpRange::contains`), so for the control
    // plane's `IP` and `IPRANGE`: `::ffff:192.0.2.10` is `192.0.2.10`.
    assert!(blocks(between("192.0.2.10", "192.0.2.10", true, false), "::ffff:192.0.2.10"));
    assert!(blocks(between("192.0.2.0", "192.0.2.255", false, false), "::ffff:192.0.2.10"));
    assert!(!blocks(between("192.0.2.10", "192.0.2.10", true, true), "::ffff:192.0.2.10"));
    assert!(blocks(BlockingCondition::Ip(crate::cidr::IpRange::parse("192.0.2.0/24").unwrap()), "::ffff:192.0.2.10"));
}

fn user_blocks(blocked_user: &str, end_user: &str, tenant: &str) -> bool {
    let routes = table();
    let caller = Caller { end_user: Some(end_user), ..Caller::default() };
    blocked(
        &Conditions(vec![BlockingCondition::User(blocked_user.into())], Vec::new()),
        &routes.apis[0],
        &caller,
        tenant,
    )
}

#[test]
fn a_blocked_user_is_compared_as_wso2_qualifies_both_with_the_gateways_tenant() {
    // WSO2's ThrottleHandler appends `@<API tenant>` to a user that lacks it, and API-M stores a
    // blocked user as `<user>@<tenant>`: `bob`, `bob@carbon.super` are one super-tenant user ...
    assert!(user_blocks("bob@carbon.super", "bob", "carbon.super"));
    assert!(user_blocks("bob@carbon.super", "bob@carbon.super", "carbon.super"));
    assert!(user_blocks("bob", "bob@carbon.super", "carbon.super"));
    assert!(user_blocks("bob", "bob", "carbon.super"));
    // ... and `bob@wso2.com` is another tenant's bob, never the super tenant's.
    assert!(!user_blocks("bob@wso2.com", "bob", "carbon.super"));
    assert!(user_blocks("bob@wso2.com", "bob@wso2.com", "carbon.super"));
    // A gateway serving the wso2.com tenant: its users may come without the domain.
    assert!(user_blocks("bob@wso2.com", "bob", "wso2.com"));
    assert!(!user_blocks("bob@carbon.super", "bob", "wso2.com"));
    // An e-mail user name keeps its `@`: `bob@gmail.com` is not `bob`.
    assert!(!user_blocks("bob@gmail.com", "bob", "carbon.super"));
    assert!(user_blocks("bob@gmail.com@carbon.super", "bob@gmail.com", "carbon.super"));
    assert!(!user_blocks("bob@carbon.super", "alice", "carbon.super"));
}

#[test]
fn a_blocked_user_is_the_user_the_request_acts_for_the_owner_for_an_application_credential() {
    // WSO2 blocks `authorizedUser`: the token's user, which for an application token (and an
    // API key) is the application's owner; `$userId` reads the same user here.
    let routes = table();
    let block = |user: &str| Conditions(vec![BlockingCondition::User(user.into())], Vec::new());
    let application_key = Caller { application_id: Some("app"), owner: Some("alice"), ..Caller::default() };
    assert!(blocked(&block("alice@carbon.super"), &routes.apis[0], &application_key, "carbon.super"));
    assert!(!blocked(&block("bob"), &routes.apis[0], &application_key, "carbon.super"));
    let bobs_token = Caller { end_user: Some("bob"), ..application_key };
    assert!(blocked(&block("bob"), &routes.apis[0], &bobs_token, "carbon.super"));
    assert!(!blocked(&block("alice"), &routes.apis[0], &bobs_token, "carbon.super"), "bob acts for himself");
}

#[test]
fn a_user_with_and_without_the_gateways_tenant_has_one_application_and_custom_counter() {
    // WSO2 keys the application level (and `$userId`) by the user qualified with the API's
    // tenant: `bob` and `bob@carbon.super` count together; `bob@wso2.com` apart.
    let fixture = crate::throttle::tests::compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r"}]}],
          "applications":[{"id":"app","name":"App","policy":"One"}],
          "policies":{"One":{"requests":1,"per":"hour"}},
          "custom_policies":[{"name":"cp","key":"$userId","requests":1,"per":"hour"}]}"#,
    );
    let api = &fixture.routes.apis[0];
    let keys = |user| {
        let caller = Caller {
            application_id: Some("app"),
            application_policy: Some("One"),
            end_user: Some(user),
            ..Caller::default()
        };
        plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], &caller)
            .into_iter()
            .filter(|counter| matches!(counter.level, Level::Application | Level::Custom))
            .map(|counter| counter.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys("bob").len(), 2);
    assert_eq!(keys("bob"), keys("bob@carbon.super"));
    assert_ne!(keys("bob"), keys("bob@wso2.com"));
}

#[test]
fn a_subscription_moved_to_another_tier_counts_afresh_under_it() {
    // WSO2's ThrottleHandler keys the subscription level (and its burst control) by
    // `appId:context:version:subTier`: a tier changed mid-window starts a fresh count, up and
    // down, as API-M's does; the application's own level keeps its count.
    let fixture = crate::throttle::tests::compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r"}]}],
          "applications":[{"id":"app","name":"App","policy":"One"}],
          "policies":{"One":{"requests":1,"per":"hour"},
                      "Gold":{"requests":5,"per":"minute","burst":{"requests":2,"per":"second"}},
                      "Silver":{"requests":5,"per":"minute","burst":{"requests":2,"per":"second"}}}}"#,
    );
    let api = &fixture.routes.apis[0];
    let keys = |tier| {
        let caller = Caller {
            application_id: Some("app"),
            application_policy: Some("One"),
            tier: Some(tier),
            owner: Some("alice"),
            ..Caller::default()
        };
        plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], &caller)
            .into_iter()
            .map(|counter| (counter.level, counter.key))
            .collect::<Vec<_>>()
    };
    let (gold, silver) = (keys("Gold"), keys("Silver"));
    let levels = |keys: &[(Level, String)]| keys.iter().map(|(level, _)| *level).collect::<Vec<_>>();
    assert_eq!(levels(&gold), vec![Level::Subscription, Level::Burst, Level::Application]);
    assert_eq!(levels(&gold), levels(&silver));
    assert_eq!(gold[0].1, "subscription:app:/a:1:Gold");
    assert_eq!(gold[1].1, "burst:app:/a:1:Gold");
    assert_ne!(gold[0].1, silver[0].1);
    assert_ne!(gold[1].1, silver[1].1);
    assert_eq!(gold[2].1, silver[2].1, "the application level is the application's, whatever the tier");
    assert_eq!(gold, keys("Gold"));
}

#[test]
fn an_api_or_resource_policy_no_policy_defines_is_missing_too() {
    // The control plane's APIs name their policies as WSO2 sends them: a name it did not send
    // (or the filter could not read) is no limit to drop silently.
    let api = |api_policy: Option<&str>, resource_policy: Option<&str>| {
        let api = serde_json::json!({"name": "A", "context": "/a", "version": "1", "endpoints": {"production": "c"},
            "policy": api_policy, "resources": [{"method": "GET", "path": "/r", "policy": resource_policy}]});
        Table::compile(vec![serde_json::from_value(api).unwrap()], &|_| true).unwrap()
    };
    let directory = Conditions(Vec::new(), vec!["Known"]);
    let missing = |routes: Table| {
        let api = &routes.apis[0];
        !missing_policies(&directory, api, &api.resources[0], &Caller::default()).is_empty()
    };
    assert!(missing(api(Some("Ghost"), None)));
    assert!(missing(api(None, Some("Ghost"))));
    assert!(!missing(api(Some("Known"), Some("Ghost"))), "an API policy replaces the resource's");
    assert!(!missing(api(Some("unlimited"), Some("Known"))));
    assert!(!missing(api(None, None)));
}

#[test]
fn key_templates() {
    assert_eq!(
        parse_key_template("$userId:$apiContext").unwrap(),
        vec![KeyPart::UserId, KeyPart::Text(":".into()), KeyPart::ApiContext]
    );
    assert!(parse_key_template("$nope").is_err());
    assert!(parse_key_template("constant").is_err());
    assert_eq!(parse_key_template("ip=$clientIp").unwrap().len(), 2);
}

/// An open resource counts per client address under the `Unauthenticated` tier; a request whose
/// address Envoy does not know (a Unix socket or internal listener) counts there nowhere: keyed
/// by an empty address, every such client of the API shared one client's limit.
#[test]
fn an_open_request_without_a_client_address_has_no_unauthenticated_counter() {
    let fixture = crate::throttle::tests::compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","security":[],"endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r"}]}],
            "policies":{"Unauthenticated":{"requests":5,"per":"minute"}}}"#,
    );
    let api = &fixture.routes.apis[0];
    let keys = |client_ip: Option<IpAddr>| {
        let caller = Caller { client_ip, ..Caller::default() };
        plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], &caller)
            .into_iter()
            .map(|counter| (counter.level, counter.key))
            .collect::<Vec<_>>()
    };
    let known = keys(Some("192.0.2.7".parse().unwrap()));
    assert_eq!(known, vec![(Level::Subscription, "unauthenticated:192.0.2.7:/a:1:Unauthenticated".to_string())]);
    assert_eq!(keys(None), Vec::new());
}

/// A custom policy's `$appId` of an open request is its client's address, as WSO2's gateway
/// takes the address as an open request's application (`handleNoAuthentication`); a template
/// whose placeholder has no value (the address Envoy does not know) counts nothing for the
/// request, rather than every such client together under an empty value.
#[test]
fn a_custom_policys_app_id_of_an_open_request_is_its_client_address() {
    let fixture = crate::throttle::tests::compile(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","security":[],"endpoints":{"production":"c"},
              "resources":[{"method":"GET","path":"/r"}]}],
            "custom_policies":[{"name":"per-app","key":"$appId","requests":5,"per":"minute"},
                               {"name":"per-ip","key":"ip-$clientIp","requests":5,"per":"minute"},
                               {"name":"per-user","key":"$userId","requests":5,"per":"minute"}]}"#,
    );
    let api = &fixture.routes.apis[0];
    let keys = |caller: Caller| {
        plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], &caller)
            .into_iter()
            .map(|counter| counter.key)
            .collect::<Vec<_>>()
    };
    let address = Some("2001:db8::7".parse().unwrap());
    assert_eq!(
        keys(Caller { client_ip: address, ..Caller::default() }),
        [
            "custom:per-app:2001%253Adb8%253A%253A7",
            "custom:per-ip:ip-2001%253Adb8%253A%253A7",
            "custom:per-user:anonymous"
        ]
    );
    assert_eq!(keys(Caller::default()), ["custom:per-user:anonymous"]);
    let application = Caller { application_id: Some("app-1"), client_ip: address, ..Caller::default() };
    assert_eq!(keys(application)[0], "custom:per-app:app-1");
}
