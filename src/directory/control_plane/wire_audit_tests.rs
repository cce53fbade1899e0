//! The wire-format audit: documents shaped as API-M 4.x's internal data service writes them (every
//! field of its generated DTOs, `org.wso2.carbon.apimgt.internal.service.dto.*DTO`, under its
//! Jackson names and types, with the `null`s Jackson writes for unset members), fed through a full
//! load, a worker's decoding and the lookups, and what the filter makes of each field.
//!
//! Sources (wso2/carbon-apimgt as mirrored by binodmx/wso2-carbon-apimgt at
//! 389d4e225143445c50f913257ae9c2e21914a640): the DTOs and `ApisApi` ... `SubscriptionsApi` under
//! `components/apimgt/org.wso2.carbon.apimgt.internal.service/src/gen/java/`,
//! `SubscriptionValidationDataUtil` (DTO filling), `SubscriptionValidationDAO` and
//! `SubscriptionValidationSQLConstants` (values), `BlockConditionDBUtil` (`/block`, `/revokedjwt`),
//! and the gateway's client, `keymgt/model/impl/SubscriptionDataLoaderImpl` (URLs and headers).

use std::net::IpAddr;

use super::lookup::{self, Need};
use super::refresh::Fetch;
use super::tests::{load, path, worker, MemoryStore, NOW};
use super::ControlPlane;
use crate::conditions::Test;
use crate::directory::{BlockingCondition, Directory, Layered, PolicyLevel, StaticDirectory};
use crate::host::{Answer, Call, Step};
use crate::schema::RawControlPlane;
use crate::vocab::{KeyType, KmId, Lifecycle, SubscriptionState};

const PIZZA: &str = "01234567-0000-4000-8000-000000000001";
const LEGACY: &str = "01234567-0000-4000-8000-000000000002";
const MOBILE: &str = "89abcdef-0000-4000-8000-000000000003";
const WEB: &str = "89abcdef-0000-4000-8000-000000000004";

/// `APIListDTO` of `APIDTO`s with `URLMappingDTO`s (expand=true, the default): `apiId` an
/// Integer, `isDefaultVersion` a Boolean under that name, `policy` null where no API-level tier.
const APIS: &str = r#"{"count":2,"list":[
 {"uuid":"01234567-0000-4000-8000-000000000001","apiId":12,"provider":"admin","name":"PizzaShackAPI",
  "version":"1.0.0","context":"/pizzashack/1.0.0","policy":"10KPerMin","apiType":"HTTP","status":"PUBLISHED",
  "organization":"carbon.super","isDefaultVersion":true,"urlMappings":[
   {"authScheme":"Any","throttlingPolicy":"Unlimited","httpMethod":"GET","urlPattern":"/menu","scopes":[]},
   {"authScheme":"Application_User","throttlingPolicy":"ThreePerMin","httpMethod":"POST","urlPattern":"/order",
    "scopes":["order:write","order:admin"]},
   {"authScheme":"Application","throttlingPolicy":null,"httpMethod":"DELETE","urlPattern":"/order/{orderId}","scopes":[]},
   {"authScheme":"None","throttlingPolicy":"Unlimited","httpMethod":"GET","urlPattern":"/health","scopes":[]}]},
 {"uuid":"01234567-0000-4000-8000-000000000002","apiId":13,"provider":"admin","name":"LegacyAPI",
  "version":"2.0.0","context":"/legacy/2.0.0","policy":null,"apiType":"HTTP","status":"DEPRECATED",
  "organization":"carbon.super","isDefaultVersion":false,"urlMappings":[
   {"authScheme":"Any","throttlingPolicy":"Unlimited","httpMethod":"GET","urlPattern":"/*","scopes":[]}]}],
 "pagination":null}"#;

/// `SubscriptionPolicyListDTO`: every member, the limit of each `quotaType`
/// (`ThrottleLimitDTO` sets only the member of its type, the others are null).
const SUBSCRIPTION_POLICIES: &str = r#"{"count":4,"list":[
 {"id":2,"tenantId":-1234,"tenantDomain":"carbon.super","name":"Gold","quotaType":"requestCount",
  "graphQLMaxComplexity":0,"graphQLMaxDepth":0,"rateLimitCount":10,"rateLimitTimeUnit":"sec","stopOnQuotaReach":false,
  "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":2,"requestCount":5000},
   "bandwidth":null,"eventCount":null}},
 {"id":3,"tenantId":-1234,"tenantDomain":"carbon.super","name":"Bytes","quotaType":"bandwidthVolume",
  "graphQLMaxComplexity":0,"graphQLMaxDepth":0,"rateLimitCount":0,"rateLimitTimeUnit":null,"stopOnQuotaReach":true,
  "defaultLimit":{"quotaType":"bandwidthVolume","requestCount":null,
   "bandwidth":{"timeUnit":"hours","unitTime":1,"dataAmount":3,"dataUnit":"MB"},"eventCount":null}},
 {"id":4,"tenantId":-1234,"tenantDomain":"carbon.super","name":"AsyncGold","quotaType":"eventCount",
  "graphQLMaxComplexity":0,"graphQLMaxDepth":0,"rateLimitCount":0,"rateLimitTimeUnit":null,"stopOnQuotaReach":true,
  "defaultLimit":{"quotaType":"eventCount","requestCount":null,"bandwidth":null,
   "eventCount":{"timeUnit":"days","unitTime":1,"eventCount":700}}},
 {"id":5,"tenantId":-1234,"tenantDomain":"carbon.super","name":"Unlimited","quotaType":"requestCount",
  "graphQLMaxComplexity":0,"graphQLMaxDepth":0,"rateLimitCount":0,"rateLimitTimeUnit":null,"stopOnQuotaReach":true,
  "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":2147483647},
   "bandwidth":null,"eventCount":null}}],
 "pagination":null}"#;

/// `ApplicationPolicyListDTO`: no burst control nor stop-on-quota member.
const APPLICATION_POLICIES: &str = r#"{"count":1,"list":[
 {"id":1,"tenantId":-1234,"tenantDomain":"carbon.super","name":"50PerMin","quotaType":"requestCount",
  "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":50},
   "bandwidth":null,"eventCount":null}}],
 "pagination":null}"#;

/// `ApiPolicyListDTO`: `id` is never set (null); groups from `ApiMgtDAO.createConditionGroupDTO`
/// (`IPSpecific` named `IPSpecific` with the address in `value`, `IPRange` from `name` to `value`,
/// a JWT claim named by its URI); a policy without groups comes with the LEFT JOIN's empty one.
const API_POLICIES: &str = r#"{"count":2,"list":[
 {"id":null,"tenantId":-1234,"tenantDomain":"carbon.super","name":"10KPerMin","quotaType":"requestCount",
  "conditionGroups":[
   {"policyId":7,"quotaType":"requestCount","conditionGroupId":21,
    "condition":[{"conditionType":"IPSpecific","name":"IPSpecific","value":"10.0.0.5","isInverted":false}],
    "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":100},
     "bandwidth":null,"eventCount":null}},
   {"policyId":7,"quotaType":"bandwidthVolume","conditionGroupId":22,
    "condition":[{"conditionType":"IPRange","name":"10.1.0.0","value":"10.1.0.255","isInverted":true},
                 {"conditionType":"Header","name":"X-Tier","value":"gold.*","isInverted":false},
                 {"conditionType":"QueryParameterType","name":"plan","value":"free","isInverted":false},
                 {"conditionType":"JWTClaims","name":"http://wso2.org/claims/role","value":"admin","isInverted":false}],
    "defaultLimit":{"quotaType":"bandwidthVolume","requestCount":null,
     "bandwidth":{"timeUnit":"min","unitTime":1,"dataAmount":2,"dataUnit":"KB"},"eventCount":null}}],
  "applicableLevel":"userLevel",
  "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":10000},
   "bandwidth":null,"eventCount":null}},
 {"id":null,"tenantId":-1234,"tenantDomain":"carbon.super","name":"ThreePerMin","quotaType":"requestCount",
  "conditionGroups":[{"policyId":8,"quotaType":null,"conditionGroupId":0,"condition":[],"defaultLimit":null}],
  "applicableLevel":"apiLevel",
  "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"sec","unitTime":20,"requestCount":3},
   "bandwidth":null,"eventCount":null}}],
 "pagination":null}"#;

/// `ApplicationListDTO`: `id` an Integer, the owner as `subName`, `groupIds` objects,
/// `attributes` a map of strings; `policy` null where the application has none.
const APPLICATIONS: &str = r#"{"count":2,"list":[
 {"uuid":"89abcdef-0000-4000-8000-000000000003","id":31,"name":"MobileApp","subName":"admin@carbon.super",
  "policy":"50PerMin","tokenType":"JWT","groupIds":[{"groupId":"org1","applicationId":31}],
  "attributes":{"region":"eu","tier":"gold"},"organization":"carbon.super"},
 {"uuid":"89abcdef-0000-4000-8000-000000000004","id":32,"name":"WebApp","subName":"alice","policy":null,
  "tokenType":null,"groupIds":[],"attributes":null,"organization":"carbon.super"}],
 "pagination":null}"#;

/// `ApplicationKeyMappingListDTO`: `keyManager` is the key manager's NAME
/// (`AM_KEY_MANAGER.NAME AS KEY_MANAGER`), `keyType` PRODUCTION or SANDBOX.
const KEY_MAPPINGS: &str = r#"{"count":3,"list":[
 {"applicationId":31,"applicationUUID":"89abcdef-0000-4000-8000-000000000003","consumerKey":"mobile-prod",
  "keyType":"PRODUCTION","keyManager":"Resident Key Manager"},
 {"applicationId":31,"applicationUUID":"89abcdef-0000-4000-8000-000000000003","consumerKey":"mobile-sand",
  "keyType":"SANDBOX","keyManager":"Resident Key Manager"},
 {"applicationId":32,"applicationUUID":"89abcdef-0000-4000-8000-000000000004","consumerKey":"web-prod",
  "keyType":"PRODUCTION","keyManager":"Resident Key Manager"}],
 "pagination":null}"#;

/// `BlockConditionsDTO`: every tenant's conditions; `IPLevelDTO` with its tenant and id.
const BLOCK: &str = r#"{"api":["/pizzashack/1.0.0"],"application":["admin:MobileApp"],
 "ip":[{"type":"IP","fixedIp":"192.0.2.1","startingIp":null,"endingIp":null,"invert":false,"tenantDomain":"carbon.super","id":1},
       {"type":"IPRANGE","fixedIp":null,"startingIp":"198.51.100.1","endingIp":"198.51.100.9","invert":null,"tenantDomain":"carbon.super","id":2},
       {"type":"IP","fixedIp":"203.0.113.1","startingIp":null,"endingIp":null,"invert":true,"tenantDomain":"acme.com","id":3}],
 "user":["bob@carbon.super"],"custom":[],"subscription":[]}"#;

/// `RevokedJWTListDTO`: a bare array; `expiry_time` a Long (milliseconds).
const REVOKED: &str = r#"[{"jwt_signature":"5f2a-jti","expiry_time":1893456000000}]"#;

/// A subscription of each state `AM_SUBSCRIPTION.SUB_STATUS` holds, with its expected reading.
const STATES: [(&str, SubscriptionState); 7] = [
    ("UNBLOCKED", SubscriptionState::Unblocked),
    ("BLOCKED", SubscriptionState::Blocked),
    ("PROD_ONLY_BLOCKED", SubscriptionState::ProdOnlyBlocked),
    ("ON_HOLD", SubscriptionState::OnHold),
    ("REJECTED", SubscriptionState::Rejected),
    ("TIER_UPDATE_PENDING", SubscriptionState::Unblocked),
    ("DELETE_PENDING", SubscriptionState::Unblocked),
];

/// `SubscriptionListDTO` (`policyId` the tier's NAME, `apiId`/`appId`/`subscriptionId` Integers).
fn subscription(state: &str, api: &str, application: &str, tier: &str) -> String {
    format!(
        r#"{{"count":1,"list":[{{"subscriptionUUID":"5f0d8c2e-1a3b-4c5d-8e9f-0a1b2c3d4e5f","subscriptionId":7,
            "policyId":"{tier}","apiUUID":"{api}","apiId":12,"applicationUUID":"{application}","appId":31,
            "subscriptionState":"{state}"}}],"pagination":null}}"#
    )
}

fn answer(fetch: Fetch) -> Answer {
    let body = match fetch {
        Fetch::Apis => APIS.to_string(),
        Fetch::SubscriptionPolicies => SUBSCRIPTION_POLICIES.to_string(),
        Fetch::ApplicationPolicies => APPLICATION_POLICIES.to_string(),
        Fetch::ApiPolicies => API_POLICIES.to_string(),
        Fetch::Applications => APPLICATIONS.to_string(),
        Fetch::Subscriptions => subscription("UNBLOCKED", PIZZA, MOBILE, "Gold"),
        Fetch::KeyMappings => KEY_MAPPINGS.to_string(),
        Fetch::Block => BLOCK.to_string(),
        Fetch::Revoked => REVOKED.to_string(),
    };
    Answer::Http { status: 200, body: body.into_bytes() }
}

fn control_plane() -> ControlPlane {
    let raw: RawControlPlane = serde_json::from_value(serde_json::json!({
        "cluster": "cp", "username": "gw", "password": "secret", "gateway_label": "Default Gateway",
        "header_conditions": true, "query_param_conditions": true, "jwt_claim_conditions": true,
        "endpoints": {"PizzaShackAPI": {"production": "live"}, "LegacyAPI": {"production": "live"}}
    }))
    .unwrap();
    ControlPlane::compile(raw, &[], &mut Vec::new()).unwrap()
}

fn header<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    let Call::Http { headers, .. } = call else { return None };
    headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

#[test]
fn a_full_load_asks_as_wso2s_loader_does_and_reads_every_field_api_m_writes() {
    let cp = control_plane();
    let mut store = MemoryStore::default();
    let calls = load(&mut store, &cp, NOW, answer);
    // `SubscriptionDataLoaderImpl`: `/apis?gatewayLabel=<URLEncoder'd label>`, every other list
    // bare; HTTP Basic, and the tenant in `xWSO2Tenant` (HTTP/2 lower-cases header names).
    let paths: Vec<String> = calls.iter().map(path).collect();
    let expected: Vec<String> = [
        "apis?gatewayLabel=Default%20Gateway",
        "subscription-policies",
        "application-policies",
        "api-policies",
        "applications",
        "subscriptions",
        "application-key-mappings",
        "block",
        "revokedjwt",
    ]
    .iter()
    .map(|tail| format!("/internal/data/v1/{tail}"))
    .collect();
    assert_eq!(paths, expected);
    for call in &calls {
        assert_eq!(header(call, "xwso2tenant"), Some("carbon.super"));
        assert_eq!(header(call, "authorization"), Some("Basic Z3c6c2VjcmV0"));
    }

    let mut view = worker();
    let loaded = view.sync(&store, &cp, &[]).unwrap();
    assert!(loaded.skipped_apis.is_empty(), "{:?}", loaded.skipped_apis);
    assert!(loaded.skipped_policies.is_empty(), "API-M's empty group is no group: {:?}", loaded.skipped_policies);
    assert_eq!(loaded.apis, 2);

    // APIDTO / URLMappingDTO.
    let routes = std::rc::Rc::clone(&view.routes);
    let pizza = routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    assert_eq!(pizza.source_id.as_deref(), Some(PIZZA));
    assert_eq!(
        (pizza.context.as_str(), pizza.default_version, pizza.lifecycle),
        ("/pizzashack", true, Lifecycle::Published)
    );
    assert_eq!(pizza.policy.as_deref(), Some("10KPerMin"));
    let resource = |method: &str| pizza.resources.iter().find(|resource| resource.method == method).unwrap();
    let order = resource("POST");
    assert_eq!(order.scopes, vec!["order:write".to_string(), "order:admin".to_string()]);
    assert_eq!(
        (order.policy.as_deref(), order.user_token_only, order.application_token_only),
        (Some("ThreePerMin"), true, false)
    );
    let delete = resource("DELETE");
    assert_eq!((delete.policy.as_deref(), delete.user_token_only, delete.application_token_only), (None, false, true));
    let open = pizza.resources.iter().filter(|resource| resource.security.is_empty()).count();
    assert_eq!(open, 1, "authScheme None: /health only");
    let legacy = routes.by_label("LegacyAPI:2.0.0").unwrap();
    assert_eq!(
        (legacy.default_version, legacy.policy.as_deref(), legacy.lifecycle),
        (false, None, Lifecycle::Deprecated)
    );

    // SubscriptionPolicyDTO: limit, window (unitTime x timeUnit), burst, stop on quota reach.
    let gold = view.policy(PolicyLevel::Subscription, "Gold").unwrap();
    assert_eq!(
        (gold.limit, gold.bytes, gold.window_s, gold.burst, gold.stop_on_quota_reach),
        (5000, false, 120, Some((10, 1)), false)
    );
    let bytes = view.policy(PolicyLevel::Subscription, "Bytes").unwrap();
    assert_eq!((bytes.limit, bytes.bytes, bytes.window_s, bytes.burst), (3 << 20, true, 3600, None));
    let events = view.policy(PolicyLevel::Subscription, "AsyncGold").unwrap();
    assert_eq!((events.limit, events.window_s), (700, 86_400));
    assert!(view.policy(PolicyLevel::Subscription, "Unlimited").is_none());
    assert!(view.knows_policy(PolicyLevel::Subscription, "Unlimited"));
    // ApplicationPolicyDTO: stops on quota (it has no member saying otherwise).
    let fifty = view.policy(PolicyLevel::Application, "50PerMin").unwrap();
    assert_eq!((fifty.limit, fifty.window_s, fifty.stop_on_quota_reach), (50, 60, true));
    // ApiPolicyDTO and its groups (ApiPolicyConditionGroupDTO, ConditionDTO).
    let tenk = view.policy(PolicyLevel::Api, "10KPerMin").unwrap();
    assert_eq!((tenk.limit, tenk.per_user, tenk.groups.len()), (10_000, true, 2));
    let (one, two) = (&tenk.groups[0], &tenk.groups[1]);
    assert_eq!((one.id.as_str(), one.limit, one.window_s), ("21", 100, 60));
    let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
    assert!(
        matches!(&one.conditions[0].test, Test::IpBetween { low, high } if *low == ip("10.0.0.5") && *high == ip("10.0.0.5"))
    );
    assert_eq!((two.id.as_str(), two.limit, two.bytes, two.conditions.len()), ("22", 2048, true, 4));
    assert!(
        matches!(&two.conditions[0].test, Test::IpBetween { low, high } if *low == ip("10.1.0.0") && *high == ip("10.1.0.255"))
    );
    assert!(two.conditions[0].invert);
    assert!(matches!(&two.conditions[1].test, Test::Header { name, .. } if name == "x-tier"));
    assert!(matches!(&two.conditions[2].test, Test::QueryParam { name, .. } if name == "plan"));
    assert!(matches!(&two.conditions[3].test, Test::Claim { name, .. } if name == "http://wso2.org/claims/role"));
    let three = view.policy(PolicyLevel::Api, "ThreePerMin").unwrap();
    assert_eq!((three.limit, three.window_s, three.per_user, three.groups.len()), (3, 20, false, 0));

    // BlockConditionsDTO: this tenant's address conditions only.
    let blocking = view.blocking();
    assert!(blocking.contains(&BlockingCondition::Api("/pizzashack/1.0.0".into())));
    assert!(blocking.contains(&BlockingCondition::ApplicationNamed { owner: "admin".into(), name: "MobileApp".into() }));
    assert!(blocking.contains(&BlockingCondition::User("bob@carbon.super".into())));
    let ranges = blocking.iter().filter(|condition| matches!(condition, BlockingCondition::IpBetween { .. })).count();
    assert_eq!((blocking.len(), ranges), (5, 2), "acme.com's inverted address is not this tenant's: {blocking:?}");
    // RevokedJWTDTO.
    assert!(view.revoked("5f2a-jti") && !view.revoked("other"));

    // ApplicationKeyMappingDTO, ApplicationDTO, SubscriptionDTO, through the directory.
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    for client in ["mobile-prod", "mobile-sand", "web-prod"] {
        let need = Need { client: Some((KmId(0), client.into())), api: Some(PIZZA.into()), ..Need::default() };
        let step = lookup::start(&mut context, &need);
        // WebApp has no subscription to PizzaShackAPI in the full load: it is asked for.
        let expected_call = client == "web-prod";
        assert_eq!(matches!(step, Step::Call(..)), expected_call, "{client}: {step:?}");
    }
    let directory = Layered { fixed: &StaticDirectory::default(), control_plane: Some(&view) };
    let prod = directory.client("mobile-prod", KmId(0)).unwrap();
    let sand = directory.client("mobile-sand", KmId(0)).unwrap();
    assert_eq!((&*prod.application, prod.key_type, sand.key_type), (MOBILE, KeyType::Production, KeyType::Sandbox));
    let mobile = directory.application(MOBILE).unwrap();
    assert_eq!((mobile.name(), mobile.owner(), mobile.policy()), ("MobileApp", "admin@carbon.super", Some("50PerMin")));
    let attributes = serde_json::json!({"region": "eu", "tier": "gold"});
    assert_eq!((mobile.number(), mobile.attributes()), (Some("31"), attributes.as_object()));
    let web = directory.application(WEB).unwrap();
    assert_eq!((web.owner(), web.policy(), web.number()), ("alice", None, Some("32")));
    let sub = directory.subscription(MOBILE, pizza).unwrap();
    assert_eq!((sub.tier.as_str(), sub.state), ("Gold", SubscriptionState::Unblocked));
    assert!(directory.subscription(MOBILE, legacy).is_none());
}

#[test]
fn each_subscription_state_api_m_stores_reads_as_wso2s_gateway_treats_it() {
    let cp = control_plane();
    for (state, expected) in STATES {
        let mut store = MemoryStore::default();
        load(&mut store, &cp, NOW, |fetch| match fetch {
            Fetch::Subscriptions => {
                Answer::Http { status: 200, body: subscription(state, PIZZA, MOBILE, "Gold").into_bytes() }
            }
            other => answer(other),
        });
        let mut view = worker();
        view.sync(&store, &cp, &[]).unwrap();
        let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
        let need = Need { client: Some((KmId(0), "mobile-prod".into())), api: Some(PIZZA.into()), ..Need::default() };
        assert_eq!(lookup::start(&mut context, &need), Step::Done(()), "{state}");
        let pizza = std::rc::Rc::clone(&view.routes);
        let pizza = pizza.by_label("PizzaShackAPI:1.0.0").unwrap();
        assert_eq!(view.subscription(MOBILE, pizza).unwrap().state, expected, "{state}");
    }
}

#[test]
fn lookups_ask_with_the_parameters_api_m_reads_and_take_its_answers() {
    let cp = control_plane();
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, answer);
    let mut view = worker();
    view.sync(&store, &cp, &[]).unwrap();
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    // `ApplicationKeyMappingsApi`: `consumerKey`, `keymanager` (lower-case m, the NAME).
    let need = Need { client: Some((KmId(0), "new client".into())), api: Some(LEGACY.into()), ..Need::default() };
    let Step::Call(call, resume) = lookup::start(&mut context, &need) else { panic!() };
    assert_eq!(
        path(&call),
        "/internal/data/v1/application-key-mappings?consumerKey=new%20client&keymanager=Resident%20Key%20Manager"
    );
    assert_eq!(header(&call, "xwso2tenant"), Some("carbon.super"));
    let mapping = r#"{"count":1,"list":[{"applicationId":33,"applicationUUID":"89abcdef-0000-4000-8000-000000000005",
        "consumerKey":"new client","keyType":"SANDBOX","keyManager":"Resident Key Manager"}],"pagination":null}"#;
    let answered = Answer::Http { status: 200, body: mapping.as_bytes().to_vec() };
    // `ApplicationsApi`: `appId`, an Integer (API-M answers every application for none or 0).
    let Step::Call(call, resume) = lookup::resume(&mut context, &need, resume, &answered) else { panic!() };
    assert_eq!(path(&call), "/internal/data/v1/applications?appId=33");
    let app = r#"{"count":1,"list":[{"uuid":"89abcdef-0000-4000-8000-000000000005","id":33,"name":"New","subName":"carol",
        "policy":null,"tokenType":"JWT","groupIds":[],"attributes":{},"organization":"carbon.super"}],"pagination":null}"#;
    let answered = Answer::Http { status: 200, body: app.as_bytes().to_vec() };
    // `SubscriptionsApi`: `apiUUID` and `applicationUUID` together (API-M's first branch).
    let Step::Call(call, resume) = lookup::resume(&mut context, &need, resume, &answered) else { panic!() };
    let new_app = "89abcdef-0000-4000-8000-000000000005";
    assert_eq!(path(&call), format!("/internal/data/v1/subscriptions?apiUUID={LEGACY}&applicationUUID={new_app}"));
    let answered =
        Answer::Http { status: 200, body: subscription("PROD_ONLY_BLOCKED", LEGACY, new_app, "Bronze").into_bytes() };
    assert_eq!(lookup::resume(&mut context, &need, resume, &answered), Step::Done(()));
    let legacy = std::rc::Rc::clone(&view.routes);
    let legacy = legacy.by_label("LegacyAPI:2.0.0").unwrap();
    let sub = view.subscription(new_app, legacy).unwrap();
    assert_eq!((sub.tier.as_str(), sub.state), ("Bronze", SubscriptionState::ProdOnlyBlocked));
    assert_eq!(view.client("new client", KmId(0)).unwrap().key_type, KeyType::Sandbox);

    // The policy endpoints: `policyName`, answered with a list of one (or none).
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let need = Need { policies: vec![(PolicyLevel::Subscription, "Platinum Plus".into())], ..Need::default() };
    let Step::Call(call, resume) = lookup::start(&mut context, &need) else { panic!() };
    assert_eq!(path(&call), "/internal/data/v1/subscription-policies?policyName=Platinum%20Plus");
    let platinum = SUBSCRIPTION_POLICIES.replacen("\"Gold\"", "\"Platinum Plus\"", 1);
    let answered = Answer::Http { status: 200, body: platinum.into_bytes() };
    assert_eq!(lookup::resume(&mut context, &need, resume, &answered), Step::Done(()));
    let trust = super::view::Trust { now: NOW, negative_ttl_s: 30 };
    assert_eq!(view.learned_policy(&store, PolicyLevel::Subscription, "Platinum Plus", trust), Some(true));
    let learned = view.policy(PolicyLevel::Subscription, "Platinum Plus").unwrap();
    assert_eq!((learned.limit, learned.burst), (5000, Some((10, 1))));
}
