//! On-demand lookups of policies no full load brought: asked once per Envoy, known to every
//! worker until the next generation, an absence believed for `negative_ttl_s`.

use super::lookup::{self, Need};
use super::store::Meta;
use super::tests::{control_plane, load, ok, path, worker, MemoryStore, NOW};
use crate::directory::PolicyLevel;
use crate::host::{Answer, HostError, SharedStore, Step};
use std::cell::{Cell, RefCell};

fn policies(json: &str) -> Answer {
    Answer::Http { status: 200, body: format!(r#"{{"count":1,"list":[{json}],"pagination":null}}"#).into_bytes() }
}

const PLATINUM: &str = r#"{"name":"Platinum","quotaType":"requestCount","stopOnQuotaReach":true,
    "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":7}}}"#;

fn need(level: PolicyLevel, name: &str) -> Need {
    Need { policies: vec![(level, name.to_string())], ..Need::default() }
}

#[test]
fn a_policy_is_looked_up_once_and_known_to_every_worker_until_the_next_generation() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut first = worker();
    first.sync(&store, &cp, &[]).unwrap();
    let platinum = need(PolicyLevel::Subscription, "Platinum");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut first, store: &mut store, now: NOW };
    let Step::Call(call, resume) = lookup::start(&mut context, &platinum) else { panic!("asked") };
    assert_eq!(path(&call), "/internal/data/v1/subscription-policies?policyName=Platinum");
    assert_eq!(lookup::resume(&mut context, &platinum, resume, &policies(PLATINUM)), Step::Done(()));
    assert_eq!(first.policy(PolicyLevel::Subscription, "Platinum").unwrap().limit, 7);
    assert!(first.policy(PolicyLevel::Application, "Platinum").is_none(), "levels are apart");
    // Another worker knows it from the shared data, without a call.
    let mut second = worker();
    second.sync(&store, &cp, &[]).unwrap();
    let mut context = lookup::Context { control_plane: &cp, worker: &mut second, store: &mut store, now: NOW };
    assert_eq!(lookup::start(&mut context, &platinum), Step::Done(()));
    assert!(second.knows_policy(PolicyLevel::Subscription, "Platinum"));
    // The next full load is the truth, the lookup's answer forgotten: API-M deleted Platinum
    // meanwhile, and its answers are the last load's byte for byte, yet the policy list is
    // taken again (a new generation), so Platinum is not kept.
    let before = Meta::read(&store).generation;
    load(&mut store, &cp, NOW + 3600, ok);
    assert!(Meta::read(&store).generation > before, "the policy list is taken again");
    let mut third = worker();
    third.sync(&store, &cp, &[]).unwrap();
    assert!(!third.knows_policy(PolicyLevel::Subscription, "Platinum"));
    let mut context = lookup::Context { control_plane: &cp, worker: &mut third, store: &mut store, now: NOW + 3600 };
    assert!(matches!(lookup::start(&mut context, &platinum), Step::Call(..)), "asked again");
}

#[test]
fn a_policy_the_control_plane_lacks_or_cannot_be_read_is_asked_once_then_refused() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]).unwrap();
    let ghost = need(PolicyLevel::Api, "Ghost");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let Step::Call(call, resume) = lookup::start(&mut context, &ghost) else { panic!("asked") };
    assert_eq!(path(&call), "/internal/data/v1/api-policies?policyName=Ghost");
    // WSO2's answer to a policy it does not have: an empty list.
    let empty = Answer::Http { status: 200, body: br#"{"count":0,"list":[],"pagination":null}"#.to_vec() };
    assert_eq!(lookup::resume(&mut context, &ghost, resume, &empty), Step::Done(()));
    assert_eq!(lookup::start(&mut context, &ghost), Step::Done(()), "the absence counts");
    assert!(!view.knows_policy(PolicyLevel::Api, "Ghost"));
    let later = NOW + cp.negative_ttl_s;
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: later };
    assert!(matches!(lookup::start(&mut context, &ghost), Step::Call(..)), "asked again once it expired");
    // A policy that is there but unreadable (a limit of 0) is not known, and counts as absent:
    // not asked again (nor decoded again) until the "not found" expires, then asked again, as
    // API-M's admin may have fixed it.
    let broken = need(PolicyLevel::Subscription, "Broken");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let Step::Call(_, resume) = lookup::start(&mut context, &broken) else { panic!("asked") };
    let zero = PLATINUM.replace("Platinum", "Broken").replace(r#""requestCount":7"#, r#""requestCount":0"#);
    assert_eq!(lookup::resume(&mut context, &broken, resume, &policies(&zero)), Step::Done(()));
    assert_eq!(lookup::start(&mut context, &broken), Step::Done(()));
    assert!(!view.knows_policy(PolicyLevel::Subscription, "Broken"));
    let stored = store.data.iter().find(|(key, _)| key.ends_with(".Broken")).map(|(_, value)| value.0.len());
    assert_eq!(stored, Some(8 + 1 + 8), "an absence, not the answer to decode again on every request");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: later };
    assert!(matches!(lookup::start(&mut context, &broken), Step::Call(..)), "asked again once it expired");
    // A 404 for a policy is an absence too, not a failed lookup asked again on every request.
    let gone = need(PolicyLevel::Subscription, "Gone");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let Step::Call(_, resume) = lookup::start(&mut context, &gone) else { panic!("asked") };
    let not_found = Answer::Http { status: 404, body: b"Not Found".to_vec() };
    assert_eq!(lookup::resume(&mut context, &gone, resume, &not_found), Step::Done(()));
    assert_eq!(lookup::start(&mut context, &gone), Step::Done(()), "remembered absent");
    // An answer that is not WSO2's list: the lookup fails (900900), nothing is remembered.
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let odd = need(PolicyLevel::Application, "Odd");
    let Step::Call(_, resume) = lookup::start(&mut context, &odd) else { panic!("asked") };
    let garbage = Answer::Http { status: 200, body: b"{\"list\": [".to_vec() };
    assert!(matches!(lookup::resume(&mut context, &odd, resume, &garbage), Step::Refused(_)));
    assert!(matches!(lookup::start(&mut context, &odd), Step::Call(..)));
}

/// Shared data where a full load lands (another worker bumps the generation) at the
/// `lands_at`-th read of the meta: between a lookup's check of the generation and its write.
struct LoadLands {
    store: RefCell<MemoryStore>,
    meta_reads: Cell<u32>,
    lands_at: u32,
}

impl SharedStore for LoadLands {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        if key == "apim.cp.meta" {
            self.meta_reads.set(self.meta_reads.get() + 1);
            if self.meta_reads.get() == self.lands_at {
                let mut meta = super::store::Meta::read(&*self.store.borrow());
                meta.generation += 1;
                meta.write(&mut *self.store.borrow_mut());
            }
        }
        self.store.borrow().shared_get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.store.get_mut().shared_set(key, value, cas)
    }
}

#[test]
fn an_answer_a_full_load_overtook_after_its_generation_was_checked_is_not_trusted_by_the_next_generation() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]).unwrap();
    let ghost = need(PolicyLevel::Subscription, "Ghost");
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
    let Step::Call(_, resume) = lookup::start(&mut context, &ghost) else { panic!("asked") };
    // The answer's generation is checked (the first read), then the load lands.
    let mut racing = LoadLands { store: RefCell::new(store), meta_reads: Cell::new(0), lands_at: 2 };
    let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut racing, now: NOW };
    let empty = Answer::Http { status: 200, body: br#"{"count":0,"list":[],"pagination":null}"#.to_vec() };
    let step = lookup::resume(&mut context, &ghost, resume, &empty);
    assert!(racing.meta_reads.get() >= 2, "the load landed");
    assert!(matches!(step, Step::Call(..)), "the new generation asks again: {step:?}");
}

/// An API policy looked up on demand has its groups decided by the switches of the configuration
/// of the worker that reads it (`control_plane.header_conditions`), the answer's or the shared
/// data's alike: a header group is left out where header conditions are off.
#[test]
fn a_looked_up_api_policys_groups_follow_the_condition_switches_of_each_worker() {
    const ADVANCED: &str = r#"{"name":"Advanced","quotaType":"requestCount","stopOnQuotaReach":true,
        "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":9}},
        "conditionGroups":[{"conditionGroupId":1,"condition":[{"conditionType":"Header","name":"x-plan","value":"free"}],
            "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":2}}}]}"#;
    let off = control_plane(50);
    let mut on = control_plane(50);
    on.condition_types.header = true;
    let mut store = MemoryStore::default();
    load(&mut store, &off, NOW, ok);
    let advanced = need(PolicyLevel::Api, "Advanced");
    let groups =
        |worker: &super::view::CpWorker| worker.policy(PolicyLevel::Api, "Advanced").map(|spec| spec.groups.len());
    for (cp, expected) in [(&on, 1), (&off, 0)] {
        let mut asking = worker();
        asking.sync(&store, cp, &[]).unwrap();
        let mut context = lookup::Context { control_plane: cp, worker: &mut asking, store: &mut store, now: NOW };
        let Step::Call(_, resume) = lookup::start(&mut context, &advanced) else { panic!("asked") };
        assert_eq!(lookup::resume(&mut context, &advanced, resume, &policies(ADVANCED)), Step::Done(()));
        assert_eq!(groups(&asking), Some(expected), "the answer");
        // Workers of either configuration read the shared data with their own switches.
        for (other_cp, other_expected) in [(&on, 1), (&off, 0)] {
            let mut other = worker();
            other.sync(&store, other_cp, &[]).unwrap();
            let mut context =
                lookup::Context { control_plane: other_cp, worker: &mut other, store: &mut store, now: NOW };
            assert_eq!(lookup::start(&mut context, &advanced), Step::Done(()));
            assert_eq!(groups(&other), Some(other_expected), "the shared data");
        }
        load(&mut store, &off, NOW + 3600 * (expected as u64 + 1), ok);
    }
}
