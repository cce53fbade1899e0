//! The control plane's directory end to end over a fake shared store, with the answers of
//! `tests/cp/fixtures/` (WSO2's shapes): full loads, what workers decode, lookups, budgets, failures.

use std::rc::Rc;

use super::lookup::{self, Asked, Need};
use super::refresh::{self, Fetch};
use super::store::Meta;
use super::view::CpWorker;
use super::ControlPlane;
use crate::directory::{Directory, Layered, PolicyLevel, StaticDirectory};
use crate::host::{Answer, Call, Step};
use crate::routing::Table;
use crate::schema::RawControlPlane;
pub(super) use crate::throttle::limiter::tests::MemoryStore;
use crate::vocab::{KmId, SubscriptionState};

pub(super) const NOW: u64 = 1_800_000_000;
const MOBILE_APP: &str = "0c9e2b4a-8d1f-4b0e-9a55-3f6c2d7e8a90";
const WEB_APP: &str = "5b2d7c1e-3a4f-4e6d-9b8c-7a6f5e4d3c2b";
const PIZZA: &str = "6a1bdb2e-2c5d-4f7a-9d3c-0d7b1c2f9e11";

pub(super) fn fixture(fetch: Fetch) -> &'static str {
    match fetch {
        Fetch::Apis => include_str!("../../../tests/cp/fixtures/apis.json"),
        Fetch::SubscriptionPolicies => include_str!("../../../tests/cp/fixtures/subscription-policies.json"),
        Fetch::ApplicationPolicies => include_str!("../../../tests/cp/fixtures/application-policies.json"),
        Fetch::ApiPolicies => include_str!("../../../tests/cp/fixtures/api-policies.json"),
        Fetch::Applications => include_str!("../../../tests/cp/fixtures/applications.json"),
        Fetch::Subscriptions => include_str!("../../../tests/cp/fixtures/subscriptions.json"),
        Fetch::KeyMappings => include_str!("../../../tests/cp/fixtures/application-key-mappings.json"),
        Fetch::Block => include_str!("../../../tests/cp/fixtures/block.json"),
        Fetch::Revoked => include_str!("../../../tests/cp/fixtures/revokedjwt.json"),
    }
}

pub(super) fn control_plane(lookups_per_second: u64) -> ControlPlane {
    let raw: RawControlPlane = serde_json::from_value(serde_json::json!({
        "cluster": "cp", "username": "gw", "password": "secret", "lookups_per_second": lookups_per_second,
        "endpoints": {"PizzaShackAPI": {"production": "live"}, "LegacyAPI:2.0.0": {"production": "live"}}
    }))
    .unwrap();
    ControlPlane::compile(raw, &[], &mut Vec::new()).unwrap()
}

/// A full load answered by `answer` for each resource; returns the calls made.
pub fn load(store: &mut MemoryStore, cp: &ControlPlane, now: u64, answer: impl Fn(Fetch) -> Answer) -> Vec<Call> {
    refresh::prepare(store, cp);
    let Some(mut load) = refresh::due(store, cp, now, now * 1000) else { return Vec::new() };
    let mut calls = vec![load.fetch.call(cp)];
    loop {
        let fetch = load.fetch;
        match refresh::ingest(store, cp, &mut load, &answer(fetch), &|_, _| Vec::new(), now, now * 1000) {
            Some(call) => calls.push(call),
            None => return calls,
        }
    }
}

/// WSO2's answer for `fetch` (the fixtures'), as a 200.
pub(crate) fn ok(fetch: Fetch) -> Answer {
    Answer::Http { status: 200, body: fixture(fetch).as_bytes().to_vec() }
}

pub(super) fn worker() -> CpWorker {
    CpWorker::new(vec!["Resident Key Manager".into()], Rc::new(Table::default()), Vec::new())
}

pub(super) fn path(call: &Call) -> String {
    let Call::Http { headers, .. } = call else { panic!() };
    headers.iter().find(|(name, _)| name == ":path").map(|(_, value)| value.clone()).unwrap()
}

#[test]
fn a_full_load_asks_for_every_resource_as_wso2s_gateway_does_and_workers_decode_it() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    let calls = load(&mut store, &cp, NOW, ok);
    let paths: Vec<String> = calls.iter().map(path).collect();
    assert_eq!(paths[0], "/internal/data/v1/apis?gatewayLabel=Default");
    assert_eq!(paths.len(), 9);
    let Call::Http { headers, cluster, .. } = &calls[4] else { panic!() };
    assert_eq!(cluster, "cp");
    assert!(headers.contains(&("authorization".into(), "Basic Z3c6c2VjcmV0".into())));
    assert!(headers.contains(&("xwso2tenant".into(), "carbon.super".into())));
    assert_eq!(Meta::read(&store).generation, 1);

    let mut view = worker();
    let loaded = view.sync(&store, &cp, &[]).unwrap();
    assert_eq!(loaded.apis, 2, "PizzaShackAPI and the BLOCKED LegacyAPI; Unmapped has no cluster");
    assert!(loaded.skipped_apis.iter().any(|skipped| skipped.starts_with("Unmapped:1.0.0")));
    let groups = view.policy(PolicyLevel::Api, "10KPerMin").unwrap().groups.clone();
    assert_eq!((loaded.skipped_policies.len(), groups[0].id.as_str(), groups[0].limit), (0, "11", 100));
    assert!(view.sync(&store, &cp, &[]).is_none(), "the same generation decodes nothing");
    let routes = Rc::clone(&view.routes);
    let pizza = routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    assert_eq!(pizza.source_id.as_deref(), Some(PIZZA));
    assert_eq!(view.policy(PolicyLevel::Subscription, "Gold").unwrap().limit, 5000);
    assert_eq!(view.policy(PolicyLevel::Api, "ThreePerMin").unwrap().limit, 3);
    assert!(view.policy(PolicyLevel::Subscription, "Unlimited").is_none(), "Unlimited counts nothing");
    assert!(view.policy(PolicyLevel::Api, "Gold").is_none(), "levels are apart");
    // Unlimited counts nothing but is known; a tier the control plane did not send is not.
    assert!(
        view.knows_policy(PolicyLevel::Subscription, "Unlimited")
            && view.knows_policy(PolicyLevel::Subscription, "Gold")
    );
    assert!(!view.knows_policy(PolicyLevel::Subscription, "Platinum"));

    // Everything the full load brought is known without a call.
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let need = Need { client: Some((KmId(0), "app1".into())), api: Some(PIZZA.into()), ..Need::default() };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()));
    let directory = Layered { fixed: &StaticDirectory::default(), control_plane: Some(&view) };
    let app_key = directory.client("app1", KmId(0)).unwrap();
    assert_eq!(&*app_key.application, MOBILE_APP);
    let application = directory.application(MOBILE_APP).unwrap();
    assert_eq!((application.name(), application.owner()), ("MobileApp", "admin"));
    // Its numeric id and attributes, for the backend JWT's `applicationid` and
    // `applicationAttributes`.
    let attributes = serde_json::json!({"tier": "gold"});
    assert_eq!((application.number(), application.attributes()), (Some("3"), attributes.as_object()));
    let subscription = directory.subscription(MOBILE_APP, pizza).unwrap();
    assert_eq!((subscription.tier.as_str(), subscription.state), ("Gold", SubscriptionState::Unblocked));

    // A second load with the same answers changes nothing: no new generation.
    refresh::prepare(&mut store, &cp);
    let later = NOW + 60;
    load(&mut store, &cp, later, ok);
    assert_eq!(Meta::read(&store).generation, 1);
}

#[test]
fn an_unknown_client_is_looked_up_then_its_application_and_subscription() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let need = Need { client: Some((KmId(0), "app 2".into())), api: Some(PIZZA.into()), ..Need::default() };
    let Step::Call(call, resume) = lookup::start(&mut context, &need) else { panic!() };
    assert_eq!(
        path(&call),
        "/internal/data/v1/application-key-mappings?consumerKey=app%202&keymanager=Resident%20Key%20Manager"
    );
    let mapping = r#"{"count":1,"list":[{"applicationId":4,"applicationUUID":"5b2d7c1e-3a4f-4e6d-9b8c-7a6f5e4d3c2b",
        "consumerKey":"app 2","keyType":"SANDBOX","keyManager":"Resident Key Manager"}],"pagination":null}"#;
    let answer = Answer::Http { status: 200, body: mapping.as_bytes().to_vec() };
    // WebApp came with the full load; its subscription is looked up next.
    let Step::Call(call, resume) = lookup::resume(&mut context, &need, resume, &answer) else { panic!() };
    assert_eq!(resume.asked, Asked::Sub { application: WEB_APP.into(), api: PIZZA.into() });
    assert_eq!(path(&call), format!("/internal/data/v1/subscriptions?apiUUID={PIZZA}&applicationUUID={WEB_APP}"));
    let none = Answer::Http { status: 200, body: br#"{"count":0,"list":[],"pagination":null}"#.to_vec() };
    assert_eq!(lookup::resume(&mut context, &need, resume, &none), Step::Done(()));
    // Remembered for every worker: another worker finds both in shared data.
    let mut other = worker();
    other.sync(&store, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut other, store: &mut store, now: NOW + 1 };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()));
    assert!(other.client("app 2", KmId(0)).is_some());
    let pizza = other.routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    assert!(other.subscription(WEB_APP, pizza).is_none(), "absent: authorization answers 900908");
    // The absence counts for negative_ttl_s (30 s by default), then is asked again.
    let mut context = lookup::Context { control_plane: &cp, worker: &mut other, store: &mut store, now: NOW + 31 };
    assert!(matches!(lookup::start(&mut context, &need), Step::Call(..)));
}

#[test]
fn lookups_that_cannot_be_made_answer_900900() {
    let cp = control_plane(2);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let need = |client: &str| Need { client: Some((KmId(0), client.into())), api: None, ..Need::default() };
    for (second, failure) in [
        Answer::Failed { code: 14 },
        Answer::Http { status: 500, body: b"{}".to_vec() },
        Answer::Http { status: 200, body: b"{\"list\": [tru".to_vec() },
        Answer::Http { status: 401, body: Vec::new() },
    ]
    .into_iter()
    .enumerate()
    {
        let now = NOW + 10 + second as u64;
        let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now };
        let Step::Call(_, resume) = lookup::start(&mut context, &need("x")) else { panic!() };
        let Step::Refused(fault) = lookup::resume(&mut context, &need("x"), resume, &failure) else {
            panic!("{failure:?}")
        };
        assert_eq!(fault.code, 900900, "{failure:?}");
    }
    // Two lookups a second: the third unknown key in the same second is refused without a call.
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 20 };
    assert!(matches!(lookup::start(&mut context, &need("a")), Step::Call(..)));
    assert!(matches!(lookup::start(&mut context, &need("b")), Step::Call(..)));
    let Step::Refused(fault) = lookup::start(&mut context, &need("c")) else { panic!() };
    assert_eq!(fault.code, 900900);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 21 };
    assert!(matches!(lookup::start(&mut context, &need("c")), Step::Call(..)), "the next second");
}

#[test]
fn a_load_that_fails_somewhere_keeps_the_last_good_data_and_retries_soon() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    // The next load: subscriptions answer garbage, applications fail, the rest changes nothing.
    let calls = load(&mut store, &cp, NOW + 60, |fetch| match fetch {
        Fetch::Subscriptions => Answer::Http { status: 200, body: b"{\"list\":[{\"apiUUID\": 3".to_vec() },
        Fetch::Applications => Answer::Failed { code: 0 },
        other => ok(other),
    });
    assert_eq!(calls.len(), 9, "every resource is still asked for");
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let routes = Rc::clone(&view.routes);
    let pizza = routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 61 };
    let need = Need { client: Some((KmId(0), "app1".into())), api: Some(PIZZA.into()), ..Need::default() };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()), "the last good data");
    assert!(view.subscription(MOBILE_APP, pizza).is_some());
    // Retried in RETRY_S, not refresh_s.
    assert!(refresh::due(&mut store, &cp, NOW + 60 + refresh::RETRY_S - 1, 0).is_none());
    assert!(refresh::due(&mut store, &cp, NOW + 60 + refresh::RETRY_S, 0).is_some());
    // Only one worker takes a due load.
    refresh::prepare(&mut store, &cp);
    assert!(refresh::due(&mut store, &cp, NOW + 1000, 0).is_some());
    assert!(refresh::due(&mut store, &cp, NOW + 1000, 0).is_none());
}

#[test]
fn the_configurations_blocking_conditions_stay_beside_the_control_planes() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    let block = r#"{"api":[],"application":["admin:MobileApp"],"user":["bob@carbon.super"],"ip":[],"custom":[],"subscription":[]}"#;
    load(&mut store, &cp, NOW, |fetch| match fetch {
        Fetch::Block => Answer::Http { status: 200, body: block.as_bytes().to_vec() },
        other => ok(other),
    });
    let mut view = worker();
    let fixed = [crate::directory::BlockingCondition::User("mallory".into())];
    view.sync(&store, &cp, &fixed);
    assert_eq!(view.blocking().len(), 3);
}

#[test]
fn answers_read_in_pieces_from_envoy_load_the_same_directory() {
    let cp = control_plane(50);
    let mut streamed = MemoryStore::default();
    refresh::prepare(&mut streamed, &cp);
    let mut load = refresh::due(&mut streamed, &cp, NOW, 0).unwrap();
    loop {
        let body = fixture(load.fetch).as_bytes();
        let answer = Answer::HttpStream { status: 200, size: body.len() };
        // Pieces of at most 7 bytes: the reader asks again until the body is read.
        let read = |start: usize, length: usize| body[start..(start + length.min(7)).min(body.len())].to_vec();
        if refresh::ingest(&mut streamed, &cp, &mut load, &answer, &read, NOW, 0).is_none() {
            break;
        }
    }
    let mut in_memory = MemoryStore::default();
    load_all(&mut in_memory, &cp);
    let need = Need { client: Some((KmId(0), "sandbox-app".into())), api: Some(PIZZA.into()), ..Need::default() };
    let mut a = worker();
    a.sync(&streamed, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut a, store: &mut streamed, now: NOW };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()), "known from the streamed load");
    let mut b = worker();
    b.sync(&in_memory, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut b, store: &mut in_memory, now: NOW };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()));
    assert_eq!(a.client("sandbox-app", KmId(0)), b.client("sandbox-app", KmId(0)));
    assert_eq!(a.client("sandbox-app", KmId(0)).unwrap().key_type, crate::vocab::KeyType::Sandbox);
}

fn load_all(store: &mut MemoryStore, cp: &ControlPlane) {
    load(store, cp, NOW, ok);
}

#[test]
fn answers_of_any_declared_size_fail_the_load_without_ending_the_vm() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    // Envoy hands the size of a body before a byte of it is read: sized from it, a body over
    // 2 GiB (`isize::MAX` on wasm32) was a capacity overflow, and one over the VM's free memory
    // an allocation that ends it. Envoy holds none of these bytes here.
    let sizes = [refresh::MAX_DOCUMENT + 1, isize::MAX as usize + 1, usize::MAX];
    for (round, size) in sizes.into_iter().enumerate() {
        let now = NOW + 1_000_000 * (round as u64 + 1);
        refresh::prepare(&mut store, &cp);
        let mut load = refresh::due(&mut store, &cp, now, 0).unwrap();
        let mut asked = 1;
        let answer = Answer::HttpStream { status: 200, size };
        while refresh::ingest(&mut store, &cp, &mut load, &answer, &|_, _| Vec::new(), now, 0).is_some() {
            asked += 1;
        }
        assert_eq!(asked, 9, "{size}: every resource is still asked for");
        assert!(refresh::due(&mut store, &cp, now + refresh::RETRY_S, 0).is_some(), "{size}: retried soon");
    }
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let routes = Rc::clone(&view.routes);
    let pizza = routes.by_label("PizzaShackAPI:1.0.0").expect("the last good APIs");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let need = Need { client: Some((KmId(0), "app1".into())), api: Some(PIZZA.into()), ..Need::default() };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()), "the last good data");
    assert!(view.subscription(MOBILE_APP, pizza).is_some(), "the last good subscriptions");
}

/// The subscriptions fixture with WebApp's subscription to PizzaShackAPI added in `state`.
fn with_web_app_subscription(state: &str) -> impl Fn(Fetch) -> Answer + '_ {
    move |fetch| match fetch {
        Fetch::Subscriptions => {
            let mut list: serde_json::Value = serde_json::from_str(fixture(fetch)).unwrap();
            let added = serde_json::json!({"subscriptionUUID": "s-web", "subscriptionId": 9, "policyId": "Gold",
                "apiUUID": PIZZA, "apiId": 2, "applicationUUID": WEB_APP, "appId": 4, "subscriptionState": state});
            list["list"].as_array_mut().unwrap().push(added);
            Answer::Http { status: 200, body: list.to_string().into_bytes() }
        }
        other => ok(other),
    }
}

fn subscription_answer(state: &str) -> Answer {
    let body = format!(
        r#"{{"count":1,"list":[{{"subscriptionUUID":"s-web","subscriptionId":9,"policyId":"Gold","apiUUID":"{PIZZA}",
            "apiId":2,"applicationUUID":"{WEB_APP}","appId":4,"subscriptionState":"{state}"}}],"pagination":null}}"#
    );
    Answer::Http { status: 200, body: body.into_bytes() }
}

/// After a full load, a lookup of WebApp's subscription to PizzaShackAPI, asked and not answered.
fn web_app_subscription_asked() -> (ControlPlane, MemoryStore, CpWorker, Need, lookup::Resume) {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let need = Need { application: Some(WEB_APP.into()), api: Some(PIZZA.into()), ..Need::default() };
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 1 };
    let Step::Call(_, resume) = lookup::start(&mut context, &need) else { panic!() };
    (cp, store, view, need, resume)
}

#[test]
fn what_a_lookup_learned_goes_with_the_next_full_load_that_lacks_it() {
    // A subscription made after a full load is found by a lookup, then deleted in API-M: the
    // next full load's answer is byte for byte the last one, and must still take it away.
    let (cp, mut store, mut view, need, resume) = web_app_subscription_asked();
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 1 };
    assert_eq!(lookup::resume(&mut context, &need, resume, &subscription_answer("UNBLOCKED")), Step::Done(()));
    assert!(!load(&mut store, &cp, NOW + 3_600, ok).is_empty(), "a full load ran");
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 3_601 };
    assert!(matches!(lookup::start(&mut context, &need), Step::Call(..)), "not known any more: asked again");
}

#[test]
fn a_lookup_answered_after_a_newer_full_load_is_not_taken() {
    // The lookup is asked; API-M blocks the subscription and a full load brings it BLOCKED; the
    // lookup's older UNBLOCKED answer then arrives.
    let (cp, mut store, mut view, need, resume) = web_app_subscription_asked();
    assert!(!load(&mut store, &cp, NOW + 3_600, with_web_app_subscription("BLOCKED")).is_empty());
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 3_601 };
    assert_eq!(lookup::resume(&mut context, &need, resume, &subscription_answer("UNBLOCKED")), Step::Done(()));
    view.sync(&store, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 3_602 };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()));
    let pizza = view.routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    assert_eq!(view.subscription(WEB_APP, pizza).map(|s| s.state), Some(SubscriptionState::Blocked));
}

#[test]
fn a_key_mapping_without_an_application_leads_nowhere() {
    // Two clients whose mappings have no application UUID must not share one: neither is known.
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    for (client, uuid) in [("alice-key", "null"), ("mallory-key", r#""""#)] {
        let need = Need { client: Some((KmId(0), client.into())), api: Some(PIZZA.into()), ..Need::default() };
        let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 1 };
        let Step::Call(_, resume) = lookup::start(&mut context, &need) else { panic!() };
        let body = format!(
            r#"{{"list":[{{"applicationId":100,"applicationUUID":{uuid},"consumerKey":"{client}","keyType":"PRODUCTION",
                "keyManager":"Resident Key Manager"}},{{"applicationId":101,"applicationUUID":"","consumerKey":"{client}",
                "keyType":"","keyManager":"Resident Key Manager"}}]}}"#
        );
        let answer = Answer::Http { status: 200, body: body.into_bytes() };
        assert_eq!(lookup::resume(&mut context, &need, resume, &answer), Step::Done(()), "{client}");
        assert!(view.client(client, KmId(0)).is_none(), "{client}: no application");
    }
    // The first mapping a full load would take, as the full load takes it: one with a key type.
    let need = Need { client: Some((KmId(0), "twice".into())), api: None, ..Need::default() };
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 2 };
    let Step::Call(_, resume) = lookup::start(&mut context, &need) else { panic!() };
    let body = format!(
        r#"{{"list":[{{"applicationId":4,"applicationUUID":"{WEB_APP}","consumerKey":"twice","keyType":"",
            "keyManager":"Resident Key Manager"}},{{"applicationId":4,"applicationUUID":"{WEB_APP}",
            "consumerKey":"twice","keyType":"PRODUCTION","keyManager":"Resident Key Manager"}}]}}"#
    );
    let answer = Answer::Http { status: 200, body: body.into_bytes() };
    assert_eq!(lookup::resume(&mut context, &need, resume, &answer), Step::Done(()));
    assert_eq!(view.client("twice", KmId(0)).map(|key| key.application.to_string()).as_deref(), Some(WEB_APP));
}

fn other_control_plane(refresh_s: u64) -> ControlPlane {
    let raw: RawControlPlane = serde_json::from_value(serde_json::json!({
        "cluster": "cp-other", "username": "gw2", "password": "other", "tenant": "other.com",
        "gateway_label": "External", "refresh_s": refresh_s, "endpoints": {"PizzaShackAPI": {"production": "live"}}
    }))
    .unwrap();
    ControlPlane::compile(raw, &[], &mut Vec::new()).unwrap()
}

#[test]
fn another_control_plane_configured_never_serves_the_previous_ones_data() {
    let mut store = MemoryStore::default();
    let first = control_plane(50);
    load(&mut store, &first, NOW, ok);
    let mut view = worker();
    view.sync(&store, &first, &[]);
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some(), "loaded from the first");
    // The operator points the gateway at another API-M (cluster, tenant, label, user).
    let other = other_control_plane(600);
    refresh::prepare(&mut store, &other);
    let mut view = worker();
    view.sync(&store, &other, &[]);
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_none(), "the first one's APIs are gone");
    assert!(view.client("mobile-key", KmId(0)).is_none() && view.application(MOBILE_APP).is_none());
    assert!(refresh::due(&mut store, &other, NOW + 1, 0).is_some(), "a load from the new one is due at once");
    // A load the first configuration still runs (its VM drains) writes nothing.
    let mut elsewhere = MemoryStore::default();
    refresh::prepare(&mut elsewhere, &first);
    let mut late = refresh::due(&mut elsewhere, &first, NOW, 0).unwrap();
    assert_eq!(refresh::ingest(&mut store, &first, &mut late, &ok(Fetch::Apis), &|_, _| Vec::new(), NOW, 0), None);
    let mut view = worker();
    view.sync(&store, &other, &[]);
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_none());
    // The same source configured again keeps its data.
    let mut store = MemoryStore::default();
    load(&mut store, &first, NOW, ok);
    refresh::prepare(&mut store, &control_plane(50));
    let mut view = worker();
    view.sync(&store, &first, &[]);
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some(), "kept for the same source");
}

#[test]
fn a_shorter_refresh_s_applies_at_once() {
    let mut store = MemoryStore::default();
    let slow = other_control_plane(3600);
    load(&mut store, &slow, NOW, ok);
    assert!(refresh::due(&mut store, &slow, NOW + 100, 0).is_none(), "due in an hour");
    assert!(refresh::due(&mut store, &other_control_plane(60), NOW + 100, 0).is_some(), "60 s applies now");
}

/// A control plane whose secured resources take API keys only still serves an API with a scoped
/// resource (PizzaShackAPI's `POST /order`): that resource refuses the keys (900910) and the
/// API's others serve them, where the whole API went unserved (WSO2's gateway serves it all).
#[test]
fn a_resource_api_keys_cannot_pass_leaves_its_api_served() {
    let raw: RawControlPlane = serde_json::from_value(serde_json::json!({
        "cluster": "cp", "username": "gw", "password": "secret", "security": ["api_key"],
        "endpoints": {"PizzaShackAPI": {"production": "live"}, "LegacyAPI:2.0.0": {"production": "live"}}
    }))
    .unwrap();
    let cp = ControlPlane::compile(raw, &[], &mut Vec::new()).unwrap();
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    let loaded = view.sync(&store, &cp, &[]).unwrap();
    assert_eq!(loaded.apis, 2, "{:?}", loaded.skipped_apis);
    let pizza = view.routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    let order = pizza.resources.iter().find(|resource| resource.method == "POST").unwrap();
    assert_eq!(order.scopes, ["order:write"]);
}

#[test]
fn a_not_found_from_the_clocks_future_is_asked_again() {
    // WebApp's subscription to PizzaShack is not found; API-M then makes it. NTP steps the clock
    // back an hour: the "not found" counts for negative_ttl_s (30 s), not for an hour more.
    let (cp, mut store, mut view, need, resume) = web_app_subscription_asked();
    let none = Answer::Http { status: 200, body: br#"{"count":0,"list":[],"pagination":null}"#.to_vec() };
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 1 };
    assert_eq!(lookup::resume(&mut context, &need, resume, &none), Step::Done(()));
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 2 };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()), "not found, for now");
    let stepped_back = NOW - 3_600;
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: stepped_back };
    assert!(matches!(lookup::start(&mut context, &need), Step::Call(..)), "this worker asks again");
    let mut other = worker();
    other.sync(&store, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut other, store: &mut store, now: stepped_back };
    assert!(matches!(lookup::start(&mut context, &need), Step::Call(..)), "and so does another");
}

/// Another worker's lookup lands while a full load rewrites the subscriptions: after the load's
/// buckets, before the load records its answer's fingerprint.
struct LookupDuringLoad {
    inner: MemoryStore,
    armed: bool,
}

impl crate::host::SharedStore for LookupDuringLoad {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, crate::host::HostError> {
        self.inner.shared_get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), crate::host::HostError> {
        if self.armed && key == "apim.cp.fingerprint.subscriptions" && !value.is_empty() {
            self.armed = false;
            // What CpWorker::learn_sub does with a subscription found.
            use super::store::{self, Found, Kind, SubEntry};
            let meta = Meta::read(&self.inner);
            let entry = SubEntry { tier: "Gold".into(), state: 0 }.encode();
            let key = super::view::key_of_subscription(WEB_APP, PIZZA);
            store::remember(&mut self.inner, &meta, Kind::Subs, &key, &Found::Present(entry), NOW);
            store::forget_fingerprint(&mut self.inner, Kind::Subs);
        }
        self.inner.shared_set(key, value, cas)
    }
}

#[test]
fn a_lookup_that_lands_during_a_full_load_is_not_kept_by_the_loads_fingerprint() {
    // A second full load brings changed subscriptions; meanwhile WebApp subscribes to PizzaShack
    // in API-M and another worker's lookup finds it. API-M then deletes that subscription: the
    // third load's answer is the second's, byte for byte, and must still take it away.
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let changed = |fetch: Fetch| match fetch {
        Fetch::Subscriptions => {
            Answer::Http { status: 200, body: fixture(fetch).replace("Bronze", "Silver").into_bytes() }
        }
        other => ok(other),
    };
    let mut racing = LookupDuringLoad { inner: store, armed: true };
    let mut second = refresh::due(&mut racing, &cp, NOW + 3_600, 0).unwrap();
    loop {
        let answer = changed(second.fetch);
        if refresh::ingest(&mut racing, &cp, &mut second, &answer, &|_, _| Vec::new(), NOW + 3_600, 0).is_none() {
            break;
        }
    }
    assert!(!racing.armed, "the lookup landed during the load");
    let mut store = racing.inner;
    assert!(!load(&mut store, &cp, NOW + 7_200, changed).is_empty(), "a third load ran");
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let need = Need { application: Some(WEB_APP.into()), api: Some(PIZZA.into()), ..Need::default() };
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 7_201 };
    assert!(matches!(lookup::start(&mut context, &need), Step::Call(..)), "deleted in API-M: asked again");
}

/// A client id is a key mapping of one key manager: a configured client `app1` of another key
/// manager does not hide the control plane's `app1` of the Resident Key Manager (WSO2 keys its
/// mappings by consumer key and key manager).
#[test]
fn a_configured_client_of_another_key_manager_does_not_hide_the_control_planes() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let names = vec!["Keycloak".to_string(), "Resident Key Manager".to_string()];
    let mut view = CpWorker::new(names, Rc::new(Table::default()), Vec::new());
    view.sync(&store, &cp, &[]);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let need = Need { client: Some((KmId(1), "app1".into())), api: Some(PIZZA.into()), ..Need::default() };
    assert_eq!(lookup::start(&mut context, &need), Step::Done(()));
    let config = crate::config::Config::from_json(
        br#"{"key_managers": [{"name": "Keycloak", "issuer": "https://kc", "jwks": {"cluster": "kc"}},
                              {"name": "Resident Key Manager", "issuer": "https://apim", "jwks": {"cluster": "apim"}}],
             "applications": [{"id": "mine", "name": "Mine", "client_ids": [{"id": "app1", "key_manager": "Keycloak"}]}]}"#,
    )
    .unwrap();
    let directory = Layered { fixed: config.directory.as_ref(), control_plane: Some(&view) };
    assert_eq!(&*directory.client("app1", KmId(0)).unwrap().application, "mine");
    assert_eq!(&*directory.client("app1", KmId(1)).unwrap().application, MOBILE_APP);
}

/// A control plane that sends policies has tiers, even when every policy it sent counts nothing
/// or could not be read: a tier it does not define is refused (900809), never let through
/// unthrottled because no policy happened to be readable.
#[test]
fn policies_that_count_nothing_or_cannot_be_read_still_make_tiers_policies() {
    let unlimited = r#"{"count":2,"list":[
        {"id":1,"tenantId":-1234,"tenantDomain":"carbon.super","name":"Unlimited","quotaType":"requestCount",
         "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":2147483647}}},
        {"id":2,"tenantId":-1234,"tenantDomain":"carbon.super","name":"Odd","quotaType":"eventCount",
         "defaultLimit":{"quotaType":"eventCount","eventCount":{"timeUnit":"fortnight","unitTime":1,"eventCount":5}}}]}"#;
    let empty = r#"{"count":0,"list":[]}"#;
    let cp = control_plane(10);
    for (subscription_policies, expected) in [(unlimited, true), (empty, false)] {
        let mut store = MemoryStore::default();
        load(&mut store, &cp, NOW, |fetch| match fetch {
            Fetch::SubscriptionPolicies => Answer::Http { status: 200, body: subscription_policies.into() },
            Fetch::ApiPolicies | Fetch::ApplicationPolicies => Answer::Http { status: 200, body: empty.into() },
            other => ok(other),
        });
        let mut view = worker();
        view.sync(&store, &cp, &[]).unwrap();
        assert!(view.knows_policy(PolicyLevel::Subscription, "Unlimited") == expected);
        assert_eq!(view.has_policies(), expected, "{subscription_policies}");
    }
}

/// The control plane down, or a flood of unknown keys past the lookup budget: every lookup is
/// refused (900900, counted by the stream), and the log gets a line now and then per worker.
#[test]
fn failing_or_refused_lookups_log_a_line_now_and_then_not_one_per_request() {
    use crate::host::testing::{capture_warnings, warnings};
    capture_warnings();
    let cp = control_plane(1_000);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]);
    let need = |client: &str| Need { client: Some((KmId(0), client.into())), api: None, ..Need::default() };
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 10 };
    for client in 0..100 {
        let client = format!("unknown-{client}");
        let Step::Call(_, resume) = lookup::start(&mut context, &need(&client)) else { panic!() };
        let refused = lookup::resume(&mut context, &need(&client), resume, &Answer::Failed { code: 14 });
        assert!(matches!(refused, Step::Refused(_)));
    }
    assert_eq!(warnings().len(), 1, "{:?}", warnings());
    // Past the budget (two a second), every lookup is refused without a call.
    let cp = control_plane(2);
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW + 11 };
    for client in 0..100 {
        let _ = lookup::start(&mut context, &need(&format!("flood-{client}")));
    }
    assert_eq!(warnings().len(), 2, "{:?}", warnings());
}

/// At start with the policy resources failing (down, slow, garbage) and the rest answering, the
/// control plane's APIs and subscriptions are served with no policy known: their tiers are
/// policies not known yet, refused (900809) until a load brings them, never let through
/// unthrottled because the policies could not be had.
#[test]
fn policies_that_could_not_be_loaded_at_start_leave_tiers_refused_not_unthrottled() {
    let cp = control_plane(10);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, |fetch| match fetch {
        Fetch::SubscriptionPolicies => Answer::Failed { code: 14 },
        Fetch::ApplicationPolicies => Answer::Http { status: 503, body: Vec::new() },
        Fetch::ApiPolicies => Answer::Http { status: 200, body: b"<html>".to_vec() },
        other => ok(other),
    });
    let mut view = worker();
    view.sync(&store, &cp, &[]).unwrap();
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some(), "the APIs are served");
    assert!(!view.knows_policy(PolicyLevel::Subscription, "Gold"));
    assert!(view.has_policies(), "tiers are policies: Gold is refused (900809), not unthrottled");
    // The next load brings them.
    let mut store_after = store;
    load(&mut store_after, &cp, NOW + refresh::RETRY_S, ok);
    view.sync(&store_after, &cp, &[]).unwrap();
    assert!(view.knows_policy(PolicyLevel::Subscription, "Gold") && view.has_policies());
}

/// API-M down at start: the log says that nothing is served yet, not that last good data stays;
/// after a good load, a failure says the last good data stays.
#[test]
fn a_load_that_fails_at_start_says_nothing_is_served_yet() {
    use crate::host::testing::{capture_warnings, warnings};
    capture_warnings();
    let cp = control_plane(10);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, |_| Answer::Failed { code: 14 });
    let lines = warnings();
    assert_eq!(lines.iter().filter(|line| line.contains("nothing of it is served")).count(), 9, "{lines:?}");
    assert!(!lines.iter().any(|line| line.contains("last good data")), "{lines:?}");
    capture_warnings();
    load(&mut store, &cp, NOW + refresh::RETRY_S, ok);
    load(&mut store, &cp, NOW + 1_000, |_| Answer::Http { status: 503, body: Vec::new() });
    let lines = warnings();
    assert_eq!(lines.iter().filter(|line| line.contains("its last good data stays")).count(), 9, "{lines:?}");
}

mod api_types;
mod cors_methods;
mod replaced;
mod tenants;

#[test]
fn a_full_load_rewrites_what_an_earlier_module_made_of_the_same_answers() {
    // An earlier module (before 1e1c6d2) kept a key mapping without an application, which this one
    // skips. Its fingerprint named the answer alone: after an upgrade the same answer was "not
    // changed" and the earlier module's buckets kept serving, for as long as API-M answered alike.
    use super::store::{self, Found, KeyEntry, Kind};
    use std::hash::Hasher;
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let orphan = super::view::key_of_client("Resident Key Manager", "orphan-key");
    let kept = KeyEntry { application: String::new(), application_id: 0, production: true };
    let meta = Meta::read(&store);
    store::remember(&mut store, &meta, Kind::Keys, &orphan, &Found::Present(kept.encode()), NOW);
    let mut earlier = std::hash::DefaultHasher::new();
    earlier.write(fixture(Fetch::KeyMappings).as_bytes());
    let earlier = earlier.finish().to_le_bytes().to_vec();
    store.data.insert(store::fingerprint_key("application-key-mappings"), (earlier, 1));
    load(&mut store, &cp, NOW + 3_600, ok);
    assert_eq!(store::lookup(&store, &Meta::read(&store), Kind::Keys, &orphan), None, "rewritten by this module");
}

#[test]
fn what_a_full_load_makes_of_wso2s_answers_is_the_version_store_format_names() {
    // A change to the buckets a load makes of the same answers must bump store::FORMAT (and this
    // digest), or the first load after an upgrade keeps what the earlier module made of them.
    use sha2::{Digest, Sha256};
    let mut store = MemoryStore::default();
    load(&mut store, &control_plane(50), NOW, ok);
    let mut buckets: Vec<_> = store
        .data
        .iter()
        .filter(|(key, _)| key.contains(".keys.") || key.contains(".apps.") || key.contains(".subs."))
        .collect();
    buckets.sort();
    let digest =
        buckets.iter().fold(Sha256::new(), |hash, (key, (value, _))| hash.chain_update(key).chain_update(value));
    assert_eq!(
        (super::store::FORMAT, crate::hashing::hex(&digest.finalize())),
        (3, "3c4f79aaab107d44976f862bfae011fe3055945bb866dad7b824adf09cb7ded2".to_string())
    );
}
