//! Throttling in WSO2's order, each level answering its own code: blocking conditions (900805,
//! no counter touched), API (900800) or resource (900802) level, subscription (900804, or let
//! through flagged without stop-on-quota-reach), subscription burst (900807), application per end
//! user (900803), custom policies (900806), and the hard limit per API and key type (900801, 503).
//!
//! [`plan`] says which counters a request touches; an [`engine`] counts them. Levels are taken in
//! order and the first over its limit answers; what the levels before it took is given back, so a
//! denied request counts nowhere (WSO2 counts only the requests it lets through). An evaluation
//! that waits for an engine's call resumes where it stopped ([`start`], [`resume`]); while it
//! waits it holds no token of the levels before (they are given back and taken again once the
//! call answers), so a request that a later level may still deny never crowds others out.

pub mod cluster;
pub mod engine;
pub mod frames;
pub mod limiter;
pub mod plan;
pub mod rls;
pub mod settings;
pub mod worker_lease;

use std::convert::Infallible;

use crate::catalogue::{Fault, FaultId};
use crate::directory::Directory;
use crate::host::{Answer, SharedStore, Step};
use crate::routing::{Api, Resource};
use crate::vocab::FailureMode;
pub use engine::{ByteCounter, Engine, EngineResume, Engines, LocalEngine};
use limiter::{Contended, Count};
pub use plan::{Caller, Counter, Level, Scope, Units};
pub use settings::ThrottleConfig;

/// The IETF RateLimit header values: the most restrictive counted level, or the denying one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitInfo {
    pub limit: u64,
    pub remaining: u64,
    /// When the counted window ends (Unix seconds): `RateLimit-Reset` is counted from when the
    /// response leaves, which a slow backend makes later than when the request was counted.
    pub reset_at: u64,
}

impl RateLimitInfo {
    /// Seconds until the window ends at `now`; `None` once it has ended (its count and limit then
    /// say nothing of the window the client is in).
    pub fn reset_s(&self, now: u64) -> Option<u64> {
        self.reset_at.checked_sub(now).filter(|seconds| *seconds > 0)
    }
}

/// The throttling decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed {
        /// Over a subscription quota that does not stop requests: flag it upstream.
        over_quota: bool,
        byte_counters: Vec<ByteCounter>,
        rate_limit: Option<RateLimitInfo>,
        /// A level could not be counted and `failure_mode: allow` let the request through.
        uncounted: Option<Contended>,
    },
    Denied {
        fault: Fault,
        rate_limit: Option<RateLimitInfo>,
        /// Denied because a level could not be counted (`failure_mode: deny`, 900808).
        uncounted: Option<Contended>,
    },
}

/// What throttling works with.
pub struct Context<'a> {
    pub throttle: &'a ThrottleConfig,
    pub directory: &'a dyn Directory,
    pub engine: &'a mut dyn Engine,
    pub store: &'a mut dyn SharedStore,
    pub now: u64,
}

/// Where an evaluation stopped to wait for its engine's call.
#[derive(Debug)]
pub struct Resume {
    evaluation: Evaluation,
    engine: EngineResume,
}

/// A step of throttling (it never refuses by itself: a denial is an [`Outcome`]).
pub type ThrottleStep = Step<Outcome, Resume, Infallible>;

/// Evaluates every level for a request.
pub fn start(context: &mut Context<'_>, api: &Api, resource: &Resource, caller: &Caller<'_>) -> ThrottleStep {
    if plan::blocked(context.directory, api, caller, &context.throttle.tenant) {
        return Step::Done(Outcome::Denied { fault: Fault::new(FaultId::Blocked), rate_limit: None, uncounted: None });
    }
    if !plan::missing_policies(context.directory, api, resource, caller).is_empty() {
        let fault = Fault::new(FaultId::ThrottlePolicyMissing);
        return Step::Done(Outcome::Denied { fault, rate_limit: None, uncounted: None });
    }
    let counters = plan::plan(context.throttle, context.directory, api, resource, caller);
    Evaluation { counters, current: 0, next: 1, ..Evaluation::default() }.run(context)
}

/// Continues an evaluation with the answer to its engine's call.
pub fn resume(context: &mut Context<'_>, resume: Resume, answer: &Answer) -> ThrottleStep {
    let Resume { mut evaluation, engine } = resume;
    let Some(counter) = evaluation.counters.get(evaluation.current) else {
        return evaluation.finish();
    };
    let step = context.engine.resume_take(context.store, counter, engine, answer, context.now);
    match evaluation.taken(context, step) {
        Some(step) => step,
        None => {
            evaluation.advance();
            evaluation.run(context)
        }
    }
}

/// Takes the answer to the call of a request that is gone (its client hung up while it waited):
/// what the answer grants is settled as for any request (a block the service counted goes to the
/// node's lease), and every token the request took, its own from this answer included, is given
/// back, so no count is lost with the request.
pub fn abandon(context: &mut Context<'_>, resume: Resume, answer: &Answer) {
    let Resume { mut evaluation, engine } = resume;
    let Some(counter) = evaluation.counters.get(evaluation.current) else { return };
    let step = context.engine.resume_take(context.store, counter, engine, answer, context.now);
    if let Step::Done(count) = step {
        if count.allowed && counter.units == Units::Requests {
            evaluation.taken.push((evaluation.current, count));
        }
    }
    evaluation.give_back(context);
}

/// How many times one request gives back what it took to wait for a call without holding it;
/// past that (leases drained again while it waited) it waits holding its tokens, so an
/// evaluation always ends.
const RELEASES_FOR_CALLS: u8 = 2;

/// Charges body bytes to the byte budgets of a request.
pub fn charge_bytes(
    engine: &mut dyn Engine,
    store: &mut dyn SharedStore,
    counters: &[ByteCounter],
    bytes: u64,
    now: u64,
) {
    for counter in counters {
        engine.charge(store, counter, bytes, now);
    }
}

/// One request's evaluation: the planned counters, how far it got, and what it gathered.
#[derive(Debug, Default)]
struct Evaluation {
    counters: Vec<Counter>,
    /// The counter being taken, an index of `counters` (past the end: all are taken).
    current: usize,
    /// The plan's next counter after the current one and those to retake.
    next: usize,
    /// Levels given back while waiting for a call, taken again (last first) right after the
    /// level that called, before `next`. Empty, it allocates nothing.
    retake: Vec<usize>,
    /// Counters that took the request, with what each answered (the window it was taken in, and
    /// whether its token can be given back if a later level denies the request).
    taken: Vec<(usize, Count)>,
    /// How many times this request gave back its tokens to wait for a call.
    releases: u8,
    over_quota: bool,
    byte_counters: Vec<ByteCounter>,
    rate_limit: Option<RateLimitInfo>,
    uncounted: Option<Contended>,
}

impl Evaluation {
    /// Moves on to the next counter to take.
    fn advance(&mut self) {
        match self.retake.pop() {
            Some(index) => self.current = index,
            None => {
                self.current = self.next;
                self.next = self.next.saturating_add(1);
            }
        }
    }

    fn run(mut self, context: &mut Context<'_>) -> ThrottleStep {
        while let Some(counter) = self.counters.get(self.current) {
            let step = match counter.units {
                Units::Bytes => match context.engine.check(context.store, counter, context.now) {
                    Ok(count) => Step::Done(count),
                    Err(contended) => Step::Refused(contended),
                },
                Units::Requests => context.engine.take(context.store, counter, context.now),
            };
            if let Some(step) = self.taken(context, step) {
                return step;
            }
            self.advance();
        }
        self.finish()
    }

    /// Applies the current counter's answer; `Some` when the evaluation stops there (a call to
    /// wait for, or a denial), `None` to go on with the next counter.
    fn taken(&mut self, context: &mut Context<'_>, step: Step<Count, EngineResume, Contended>) -> Option<ThrottleStep> {
        let count = match step {
            Step::Done(count) => count,
            Step::Call(call, engine) => {
                let releasable = |(_, taken): &(usize, Count)| taken.returnable;
                if !self.taken.is_empty() && self.releases < RELEASES_FOR_CALLS && self.taken.iter().all(releasable) {
                    // Waiting holds nothing: what the levels before took goes back now and is
                    // taken again, in order, right after this level once the call answers.
                    // (A token that cannot go back is held: the service cannot take its hit back.)
                    self.releases += 1;
                    self.retake.extend(self.taken.iter().rev().map(|(index, _)| *index));
                    self.give_back(context);
                }
                let evaluation = std::mem::take(self);
                return Some(Step::Call(call, Resume { evaluation, engine }));
            }
            Step::Refused(contended) => match context.throttle.failure_mode_for(contended) {
                FailureMode::Deny => {
                    // No level counted the denial, and the levels before took their tokens back:
                    // the RateLimit headers have nothing true to say.
                    self.give_back(context);
                    return Some(Step::Done(Outcome::Denied {
                        fault: Fault::new(FaultId::ThrottleInternalError),
                        rate_limit: None,
                        uncounted: Some(contended),
                    }));
                }
                FailureMode::Allow => {
                    self.uncounted = Some(contended);
                    return None;
                }
            },
        };
        let counter = self.counters.get(self.current)?;
        if counter.units == Units::Bytes {
            self.byte_counters.push(ByteCounter::of(counter));
        }
        if !count.allowed {
            if counter.soft {
                // As WSO2's ThrottleHandler: through, flagged, no later level checked, counted
                // nowhere (tokens back, no bytes charged, no RateLimit headers).
                self.give_back(context);
                self.byte_counters.clear();
                self.rate_limit = None;
                self.over_quota = true;
                return Some(std::mem::take(self).finish());
            }
            let level = counter.level;
            // A denial's RateLimit headers speak of the level that denied it (whose window
            // Retry-After names; the levels before take their tokens back), and of requests: a
            // byte budget's refusal says nothing there (its fault says when to come back).
            let rate_limit = (counter.units == Units::Requests).then(|| info(&count));
            self.give_back(context);
            return Some(Step::Done(Outcome::Denied {
                fault: throttled(level, &count, context.now),
                rate_limit,
                uncounted: self.uncounted,
            }));
        }
        if counter.units == Units::Requests {
            // The RateLimit headers speak of requests: byte budgets do not take part.
            self.rate_limit = tighter(self.rate_limit, &count);
            self.taken.push((self.current, count));
        }
        None
    }

    fn give_back(&mut self, context: &mut Context<'_>) {
        for (index, taken) in std::mem::take(&mut self.taken) {
            if let Some(counter) = self.counters.get(index) {
                context.engine.give_back(context.store, counter, &taken, context.now);
            }
        }
    }

    fn finish(self) -> ThrottleStep {
        Step::Done(Outcome::Allowed {
            over_quota: self.over_quota,
            byte_counters: self.byte_counters,
            rate_limit: self.rate_limit,
            uncounted: self.uncounted,
        })
    }
}

fn throttled(level: Level, count: &Count, now: u64) -> Fault {
    let mut fault = Fault::new(level.fault_id());
    if level != Level::HardLimit {
        fault.next_access_time = Some(count.reset_at);
        fault.retry_after_s = Some(count.reset_at.saturating_sub(now).max(1));
    }
    fault
}

fn info(count: &Count) -> RateLimitInfo {
    RateLimitInfo { limit: count.limit, remaining: count.remaining, reset_at: count.reset_at }
}

fn tighter(current: Option<RateLimitInfo>, count: &Count) -> Option<RateLimitInfo> {
    let info = info(count);
    match current {
        Some(current) if current.remaining <= info.remaining => Some(current),
        _ => Some(info),
    }
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod outcome_tests;

#[cfg(test)]
#[path = "condition_group_tests.rs"]
mod condition_group_tests;

#[cfg(test)]
mod tests {
    use super::limiter::tests::MemoryStore;
    use super::limiter::{Hit, Settings};
    use super::*;
    use crate::directory::static_dir::{Context as DirectoryContext, PackedSubscriptions, StagedApplications};
    use crate::directory::StaticDirectory;
    use crate::routing::Table;
    use crate::schema::RawConfig;
    use crate::vocab::KeyType;

    pub(super) const NOW: u64 = 1_800_000_000;

    pub(super) struct Fixture {
        pub(super) routes: Table,
        pub(super) directory: StaticDirectory,
        pub(super) throttle: ThrottleConfig,
    }

    fn config(api_level: bool, stop_on_quota_reach: bool) -> Fixture {
        let api_policy = if api_level { r#","policy":"One""# } else { "" };
        let json = format!(
            r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}}{api_policy},
                  "resources":[{{"method":"GET","path":"/r","policy":"One"}}]}}],
              "applications":[{{"id":"app","name":"App","policy":"One"}}],
              "subscriptions":[{{"application":"app","api":"A:1","tier":"Tier"}}],
              "policies":{{"One":{{"requests":1,"per":"hour"}},
                          "Tier":{{"requests":2,"per":"hour","stop_on_quota_reach":{stop_on_quota_reach},"burst":{{"requests":1,"per":"minute"}}}}}},
              "custom_policies":[{{"name":"cp","key":"$userId:$apiContext","requests":1,"per":"hour"}}],
              "hard_limits":[{{"api":"A:1","key_type":"PRODUCTION","requests_per_second":1}}],
              "blocking":[{{"user":"blocked-user"}},{{"ip_range":"203.0.113.0/24"}}]}}"#
        );
        compile(&json)
    }

    pub(super) fn compile(json: &str) -> Fixture {
        let raw: RawConfig<StagedApplications, PackedSubscriptions> = serde_json::from_str(json).unwrap();
        let names = StaticDirectory::policy_names(&raw.policies).unwrap();
        let routes = Table::compile(raw.apis, &|name| names.contains(name)).unwrap();
        let throttle =
            ThrottleConfig::compile(raw.custom_policies, raw.hard_limits, raw.throttling, &routes, &raw.policies)
                .unwrap();
        let directory = StaticDirectory::compile(
            raw.applications,
            raw.subscriptions,
            raw.policies,
            raw.blocking,
            &DirectoryContext { routes: &routes, key_managers: &[], applications_at_run_time: false },
        )
        .unwrap();
        Fixture { routes, directory, throttle }
    }

    /// A rate-limit service counting every level, leased.
    fn leased_service() -> settings::RateLimitService {
        settings::RateLimitService {
            cluster: "rls".into(),
            domain: "apim".into(),
            timeout_ms: 100,
            failure_mode: FailureMode::Deny,
            counting: crate::schema::Counting::Leased,
            applies_to: crate::schema::AppliesTo::All,
            lease_share_percent: 10,
            lease_max: 100,
            failure_key: "apim.rls.failed.rls".into(),
        }
    }

    pub(super) fn caller(user: &str) -> Caller<'_> {
        Caller {
            application_id: Some("app"),
            application_name: Some("App"),
            application_policy: Some("One"),
            tier: Some("Tier"),
            key_type: Some(KeyType::Production),
            end_user: Some(user),
            owner: Some("owner"),
            client_ip: Some("198.51.100.7".parse().unwrap()),
            request: None,
        }
    }

    pub(super) fn evaluate(fixture: &Fixture, caller: &Caller<'_>, store: &mut MemoryStore) -> Outcome {
        let mut engine = LocalEngine::unleased(Settings { slots: 4096, retries: 20, seed: [0; 16] });
        let mut context = Context {
            throttle: &fixture.throttle,
            directory: &fixture.directory,
            engine: &mut engine,
            store,
            now: NOW,
        };
        let api = &fixture.routes.apis[0];
        match start(&mut context, api, &api.resources[0], caller) {
            Step::Done(outcome) => outcome,
            other => panic!("the local engine never waits: {other:?}"),
        }
    }

    pub(super) fn outcome_code(fixture: &Fixture, caller: &Caller<'_>, store: &mut MemoryStore) -> Option<u32> {
        match evaluate(fixture, caller, store) {
            Outcome::Denied { fault, .. } => Some(fault.code),
            Outcome::Allowed { .. } => None,
        }
    }

    /// Exhausts the counter of `level` for this caller.
    fn exhaust(fixture: &Fixture, caller: &Caller<'_>, level: Level, store: &mut MemoryStore) {
        let api = &fixture.routes.apis[0];
        for counter in plan::plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], caller) {
            if counter.level == level {
                for _ in 0..counter.limit {
                    let settings = Settings { slots: 4096, retries: 20, seed: [0; 16] };
                    limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Request, NOW, settings)
                        .unwrap();
                }
            }
        }
    }

    /// Blocking (no counter) or a counted level.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Case {
        Blocked,
        Counted(Level),
    }

    impl Case {
        fn code(self) -> u32 {
            match self {
                Case::Blocked => 900805,
                Case::Counted(level) => level.fault_id().spec().code,
            }
        }
    }

    const ORDER: [Case; 8] = [
        Case::Blocked,
        Case::Counted(Level::Api),
        Case::Counted(Level::Resource),
        Case::Counted(Level::Subscription),
        Case::Counted(Level::Burst),
        Case::Counted(Level::Application),
        Case::Counted(Level::Custom),
        Case::Counted(Level::HardLimit),
    ];

    #[test]
    fn every_pair_of_levels_answers_with_the_first_in_wso2_order() {
        for (i, first) in ORDER.iter().enumerate() {
            for second in &ORDER[i + 1..] {
                if (*first, *second) == (Case::Counted(Level::Api), Case::Counted(Level::Resource)) {
                    continue; // an API-level policy replaces the resource level: never both
                }
                let api_level = [*first, *second].contains(&Case::Counted(Level::Api));
                let fixture = config(api_level, true);
                let user = if *first == Case::Blocked { "blocked-user" } else { "u" };
                let both = caller(user);
                let mut store = MemoryStore::prepared(4096);
                for case in [*first, *second] {
                    if let Case::Counted(level) = case {
                        exhaust(&fixture, &both, level, &mut store);
                    }
                }
                assert_eq!(
                    outcome_code(&fixture, &both, &mut store),
                    Some(first.code()),
                    "{first:?} before {second:?}"
                );
                // The second alone answers its own code.
                if let Case::Counted(level) = *second {
                    let mut store = MemoryStore::prepared(4096);
                    exhaust(&fixture, &caller("u"), level, &mut store);
                    assert_eq!(
                        outcome_code(&fixture, &caller("u"), &mut store),
                        Some(second.code()),
                        "{second:?} alone"
                    );
                }
            }
        }
    }

    #[test]
    fn blocking_touches_no_counter() {
        let fixture = config(false, true);
        let mut store = MemoryStore::prepared(4096);
        for _ in 0..5 {
            assert_eq!(outcome_code(&fixture, &caller("blocked-user"), &mut store), Some(900805));
        }
        let mut by_ip = caller("u");
        by_ip.client_ip = Some("203.0.113.9".parse().unwrap());
        assert_eq!(outcome_code(&fixture, &by_ip, &mut store), Some(900805));
        assert!(
            store.data.iter().all(|(key, (value, _))| ["apim.rl.layout", "apim.rl.seed"].contains(&key.as_str()) || value.len() <= 1),
            "no counter was written"
        );
        assert_eq!(outcome_code(&fixture, &caller("u"), &mut store), None);
    }

    #[test]
    fn without_stop_on_quota_reach_the_request_passes_flagged() {
        let fixture = config(false, false);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        exhaust(&fixture, &caller, Level::Subscription, &mut store);
        match evaluate(&fixture, &caller, &mut store) {
            Outcome::Allowed { over_quota, .. } => assert!(over_quota),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttled_faults_carry_the_next_access_time_and_retry_after() {
        let fixture = config(false, true);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        exhaust(&fixture, &caller, Level::Resource, &mut store);
        let Outcome::Denied { fault, .. } = evaluate(&fixture, &caller, &mut store) else { panic!() };
        let window_end = (NOW / 3600 + 1) * 3600;
        assert_eq!(fault.next_access_time, Some(window_end));
        assert_eq!(fault.retry_after_s, Some(window_end - NOW));
        // Hard limits and blocking say nothing about when to come back.
        let mut store = MemoryStore::prepared(4096);
        exhaust(&fixture, &caller, Level::HardLimit, &mut store);
        let Outcome::Denied { fault, .. } = evaluate(&fixture, &caller, &mut store) else { panic!() };
        assert_eq!((fault.code, fault.retry_after_s, fault.next_access_time), (900801, None, None));
    }

    #[test]
    fn contention_follows_the_failure_mode() {
        let mut fixture = config(false, true);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        store.conflicts = 1_000;
        assert_eq!(outcome_code(&fixture, &caller, &mut store), Some(900808));
        fixture.throttle.settings.failure_mode = FailureMode::Allow;
        let mut store = MemoryStore::prepared(4096);
        store.conflicts = 1_000;
        assert_eq!(outcome_code(&fixture, &caller, &mut store), None);
    }

    /// Drives an evaluation on the engines of `fixture`, answering every call with `answer`.
    fn evaluate_with_calls(fixture: &Fixture, answer: &Answer, store: &mut MemoryStore) -> (Outcome, usize) {
        let slots = Settings { slots: 4096, retries: 20, seed: [0; 16] };
        let service = fixture.throttle.rate_limit_service.as_ref();
        let mut engine = Engines {
            local: LocalEngine::unleased(slots),
            cluster: service.map(|service| cluster::ClusterEngine { service, leases: slots }),
            refills: Vec::new(),
        };
        let mut context = Context {
            throttle: &fixture.throttle,
            directory: &fixture.directory,
            engine: &mut engine,
            store,
            now: NOW,
        };
        let api = &fixture.routes.apis[0];
        let mut calls = 0;
        let mut step = start(&mut context, api, &api.resources[0], &caller("u"));
        loop {
            match step {
                Step::Done(outcome) => return (outcome, calls),
                Step::Call(_, resume) => {
                    calls += 1;
                    step = super::resume(&mut context, resume, answer);
                }
                Step::Refused(never) => match never {},
            }
        }
    }

    #[test]
    fn an_unreachable_rate_limit_service_follows_its_failure_mode() {
        let mut fixture = config(false, true);
        let mut service = leased_service();
        fixture.throttle.rate_limit_service = Some(service.clone());
        let down = Answer::Failed { code: 14 };
        let mut store = MemoryStore::prepared(4096);
        let (outcome, calls) = evaluate_with_calls(&fixture, &down, &mut store);
        assert_eq!(calls, 1, "the first level's call failed: nothing further is asked");
        let Outcome::Denied { fault, uncounted, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!((fault.code, uncounted), (900808, Some(Contended::EngineUnavailable)));
        // `allow`: the first level's call fails, and the five levels after it (subscription, burst,
        // application, custom, hard limit) do not call the failing service: the request waits for
        // one failed call at most, and passes uncounted.
        service.failure_mode = FailureMode::Allow;
        fixture.throttle.rate_limit_service = Some(service);
        let mut store = MemoryStore::prepared(4096);
        let (outcome, calls) = evaluate_with_calls(&fixture, &down, &mut store);
        let Outcome::Allowed { uncounted, .. } = outcome else { panic!("{outcome:?}") };
        assert_eq!(uncounted, Some(Contended::EngineUnavailable));
        assert_eq!(calls, 1, "one failed call per request, not one per level");
        // The node remembers: the next request in that second does not call at all.
        let (outcome, calls) = evaluate_with_calls(&fixture, &down, &mut store);
        assert!(matches!(outcome, Outcome::Allowed { uncounted: Some(Contended::EngineUnavailable), .. }));
        assert_eq!(calls, 0);
        // The local failure mode is untouched by the service's.
        assert_eq!(fixture.throttle.failure_mode_for(Contended::SlotFull), FailureMode::Deny);
    }

    #[test]
    fn a_request_waiting_for_a_call_holds_no_token_of_the_levels_before() {
        // Every level counted across nodes, leased. The resource /r admits one request an hour;
        // the application's subscription one an hour, already spent (on /s, at another node). While `app`'s
        // request on /r waits for its subscription level's answer, an anonymous request on /r
        // takes the resource's only token: the waiting request had given it back, and is then
        // denied at its subscription. Holding the token would have denied both.
        let json = r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
                  "resources":[{"method":"GET","path":"/r","policy":"One"},{"method":"GET","path":"/s","policy":"Ten"}]}],
              "applications":[{"id":"app","name":"App"}],
              "subscriptions":[{"application":"app","api":"A:1","tier":"One"}],
              "policies":{"One":{"requests":1,"per":"hour"},"Ten":{"requests":10,"per":"hour"}}}"#;
        let Fixture { routes, directory, mut throttle } = compile(json);
        throttle.rate_limit_service = Some(leased_service());
        let slots = Settings { slots: 4096, retries: 20, seed: [0; 16] };
        let node = || {
            let mut store = MemoryStore::default();
            limiter::prepare_slots(&mut store, 4096, &[limiter::Space::Counters, limiter::Space::Leases], [0; 16]);
            let engine = Engines {
                local: LocalEngine::unleased(slots),
                cluster: throttle
                    .rate_limit_service
                    .as_ref()
                    .map(|service| cluster::ClusterEngine { service, leases: slots }),
                refills: Vec::new(),
            };
            (store, engine)
        };
        let mut model = cluster::tests::ModelService::default();
        let api = &routes.apis[0];
        let (r, s) = (&api.resources[0], &api.resources[1]);
        let app = Caller { end_user: Some("u"), tier: Some("One"), application_policy: None, ..caller("u") };
        let anonymous = Caller { application_id: None, application_name: None, tier: None, ..caller("u") };
        let run_to_end =
            |context: &mut Context<'_>, model: &mut cluster::tests::ModelService, mut step: ThrottleStep| loop {
                match step {
                    Step::Done(outcome) => return outcome,
                    Step::Call(call, waiting) => step = resume(context, waiting, &model.answer(&call, NOW)),
                    Step::Refused(never) => match never {},
                }
            };
        // Another node spends the subscription.
        let (mut store, mut engine) = node();
        let mut context =
            Context { throttle: &throttle, directory: &directory, engine: &mut engine, store: &mut store, now: NOW };
        let first = start(&mut context, api, s, &app);
        let outcome = run_to_end(&mut context, &mut model, first);
        assert!(matches!(outcome, Outcome::Allowed { .. }), "{outcome:?}");
        let (mut store, mut engine) = node();
        let mut context =
            Context { throttle: &throttle, directory: &directory, engine: &mut engine, store: &mut store, now: NOW };
        // `app` on /r: its resource level is answered, then it waits on its subscription level.
        let Step::Call(call, waiting) = start(&mut context, api, r, &app) else { panic!("the resource level calls") };
        let step = resume(&mut context, waiting, &model.answer(&call, NOW));
        let Step::Call(subscription_call, waiting) = step else { panic!("the subscription level calls: {step:?}") };
        let meanwhile = start(&mut context, api, r, &anonymous);
        assert!(
            matches!(run_to_end(&mut context, &mut model, meanwhile), Outcome::Allowed { .. }),
            "the resource's token is free while the other request waits"
        );
        let answer = model.answer(&subscription_call, NOW);
        let step = resume(&mut context, waiting, &answer);
        let Outcome::Denied { fault, .. } = run_to_end(&mut context, &mut model, step) else {
            panic!("the subscription is spent")
        };
        assert_eq!(fault.code, 900804);
        // Exactly one request on /r was let through in this hour.
        let again = start(&mut context, api, r, &anonymous);
        let Outcome::Denied { fault, .. } = run_to_end(&mut context, &mut model, again) else { panic!("one an hour") };
        assert_eq!(fault.code, 900802);
    }

    #[test]
    fn a_give_back_goes_to_the_window_the_take_was_counted_in() {
        // A request waits on a call past the end of a window, then a later level denies it: the
        // earlier level's count is taken back from the window it was counted in, never from the
        // new one (which would then admit one more than its limit).
        let settings = Settings { slots: 64, retries: 20, seed: [0; 16] };
        let mut store = MemoryStore::prepared(64);
        let mut engine = LocalEngine::unleased(settings);
        let plan = Counter {
            level: Level::Api,
            key: "k".into(),
            limit: 1,
            window_s: 60,
            units: Units::Requests,
            soft: false,
            scope: Scope::Node,
        };
        let Step::Done(first) = engine.take(&mut store, &plan, 59) else { panic!() };
        assert!(first.allowed);
        let Step::Done(second) = engine.take(&mut store, &plan, 60) else { panic!() };
        assert!(second.allowed, "the new window's one request");
        engine.give_back(&mut store, &plan, &first, 61);
        let Step::Done(third) = engine.take(&mut store, &plan, 61) else { panic!() };
        assert!(!third.allowed, "the new window stays full");
    }

    #[test]
    fn no_two_apis_or_callers_share_a_counter_key_through_a_separator() {
        // `:` joins a key's parts, and contexts, versions, applications and users may hold it.
        let fixture = compile(
            r#"{"apis":[
                {"name":"Shop","context":"/shop","version":"v1:beta","endpoints":{"production":"c"},"policy":"One",
                 "resources":[{"method":"GET","path":"/r"}]},
                {"name":"Other","context":"/shop:v1","version":"beta","endpoints":{"production":"c"},"policy":"One",
                 "resources":[{"method":"GET","path":"/r"}]}],
              "applications":[{"id":"acme","name":"Acme","policy":"One"},{"id":"acme:ops","name":"Ops","policy":"One"}],
              "subscriptions":[{"application":"acme","api":"Shop:v1:beta","tier":"Tier"},
                               {"application":"acme","api":"Other:beta","tier":"Tier"},
                               {"application":"acme:ops","api":"Shop:v1:beta","tier":"Tier"}],
              "policies":{"One":{"requests":1,"per":"hour"},"Tier":{"requests":5,"per":"hour","burst":{"requests":1,"per":"minute"}}},
              "custom_policies":[{"name":"cp","key":"$userId:$clientIp","requests":1,"per":"hour"}],
              "hard_limits":[{"api":"Shop:v1:beta","key_type":"PRODUCTION","requests_per_second":1},
                             {"api":"Other:beta","key_type":"PRODUCTION","requests_per_second":1}]}"#,
        );
        let keys = |api: usize, application: &str, user: &str, ip: &str| -> Vec<(Level, String)> {
            let api = &fixture.routes.apis[api];
            let caller = Caller {
                application_id: Some(application),
                end_user: Some(user),
                client_ip: Some(ip.parse().unwrap()),
                ..caller(user)
            };
            plan::plan(&fixture.throttle, &fixture.directory, api, &api.resources[0], &caller)
                .into_iter()
                .map(|counter| (counter.level, counter.key))
                .collect()
        };
        let shop = keys(0, "acme", "bob", "198.51.100.7");
        let other = keys(1, "acme", "bob", "198.51.100.7");
        for level in [Level::Api, Level::Subscription, Level::Burst, Level::HardLimit] {
            let of = |keys: &[(Level, String)]| keys.iter().find(|(l, _)| *l == level).map(|(_, key)| key.clone());
            assert!(of(&shop).is_some(), "{level:?} planned");
            assert_ne!(of(&shop), of(&other), "{level:?}: two APIs, one counter");
        }
        // Application `acme` with user `ops:bob` against application `acme:ops` with user `bob`;
        // `alice` at 2001:db8::1 against `alice:2001` at db8::1.
        let level_key =
            |keys: Vec<(Level, String)>, level: Level| keys.into_iter().find(|(l, _)| *l == level).unwrap().1;
        assert_ne!(
            level_key(keys(0, "acme", "ops:bob", "198.51.100.7"), Level::Application),
            level_key(keys(0, "acme:ops", "bob", "198.51.100.7"), Level::Application)
        );
        assert_ne!(
            level_key(keys(0, "acme", "alice", "2001:db8::1"), Level::Custom),
            level_key(keys(0, "acme", "alice:2001", "::db8:0:0:1"), Level::Custom)
        );
        // Keys without a separator in a part read as before.
        assert_eq!(level_key(keys(0, "acme", "bob", "198.51.100.7"), Level::Application), "application:acme:bob");
    }

    #[test]
    fn a_denied_request_counts_nowhere() {
        let fixture = config(false, true);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        exhaust(&fixture, &caller, Level::Application, &mut store);
        // Denied at the application level: resource, subscription and burst counts are taken back.
        assert_eq!(outcome_code(&fixture, &caller, &mut store), Some(900803));
        assert_eq!(outcome_code(&fixture, &caller, &mut store), Some(900803));
        let other = Caller { application_id: None, tier: None, ..caller.clone() };
        assert_eq!(
            outcome_code(&fixture, &other, &mut store),
            None,
            "the shared resource level still has its one request"
        );
    }

    #[test]
    fn the_user_is_the_end_user_else_the_owner_else_anonymous() {
        let mut caller = caller("bob");
        assert_eq!(caller.user(), "bob");
        caller.end_user = None;
        assert_eq!(caller.user(), "owner");
        caller.owner = None;
        assert_eq!(caller.user(), "anonymous");
    }
}
