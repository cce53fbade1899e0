//! The counting engine boundary. Planning decides which counters a request touches; an engine
//! counts. What an engine must offer, per counter:
//!
//! - **take**: count one request if the limit allows, and say how the counter stands
//!   ([`Count`]); an engine whose counters are elsewhere may first ask for a call
//!   ([`Step::Call`]) and finish in [`Engine::resume_take`];
//! - **give back**: undo a take, when a later level denied the request (WSO2 counts only what it
//!   lets through), returning its token where the take found it: the same window, block or lease.
//!   A take whose token has no such place says so ([`Count::returnable`]: a rate-limit service
//!   never un-counts) and its give back drops the token: the denied request then also counts at
//!   the levels before the one that denied it, and the engine must say so in its documentation;
//! - **check** a byte budget (bandwidth policies) without counting, and **charge** bytes that
//!   passed, whatever the limit.
//!
//! [`LocalEngine`] counts in this Envoy's shared data (exact across its workers, in blocks a
//! worker holds: [`super::worker_lease`]) and never needs a call; [`ClusterEngine`] counts on a
//! rate-limit service, exact across Envoy nodes (its workers take blocks of the node's lease
//! the same way); [`Engines`] sends each counter to the engine of its [`Scope`].

use super::cluster::{ClusterEngine, Pending, Refill};
use super::limiter::{self, Contended, Count, Hit, Settings};
use super::plan::{Counter, Scope};
use super::worker_lease::{Leasing, WorkerLeases};
use crate::host::{Answer, SharedStore, Step};

/// What an engine waits for when a take needs a call.
#[derive(Debug)]
pub enum EngineResume {
    Cluster(Pending),
}

/// A byte budget to charge body bytes to once they pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteCounter {
    pub key: String,
    pub limit: u64,
    pub window_s: u64,
}

impl ByteCounter {
    /// A byte budget's counter, as bytes are charged to it.
    pub fn of(counter: &Counter) -> ByteCounter {
        ByteCounter { key: counter.key.clone(), limit: counter.limit, window_s: counter.window_s }
    }
}

/// A counting engine.
pub trait Engine {
    /// Counts one request at `counter` if its limit allows (`Count::allowed`).
    fn take(
        &mut self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        now: u64,
    ) -> Step<Count, EngineResume, Contended>;
    /// Continues a take that needed a call.
    fn resume_take(
        &mut self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        resume: EngineResume,
        answer: &Answer,
        now: u64,
    ) -> Step<Count, EngineResume, Contended>;
    /// Undoes the take at `counter` that answered `taken`, in the window it was counted in (a new
    /// window may have begun since); nothing when the take is not [`Count::returnable`].
    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, taken: &Count, now: u64);
    /// Whether a byte budget has room; counts nothing.
    fn check(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) -> Result<Count, Contended>;
    /// Adds bytes that passed to a byte budget, whatever its limit.
    fn charge(&mut self, store: &mut dyn SharedStore, counter: &ByteCounter, bytes: u64, now: u64);
}

/// Counts in this Envoy's shared data: fixed windows aligned to Unix time, updated by
/// compare-and-swap (see [`limiter`]), exact across the workers of one Envoy. With a worker's
/// leases, requests are taken from blocks of tokens the worker holds (see [`worker_lease`]).
#[derive(Debug)]
pub struct LocalEngine<'w> {
    pub settings: Settings,
    pub leasing: Leasing,
    /// The worker's blocks; without them every request counts in shared data.
    pub leases: Option<&'w mut WorkerLeases>,
}

impl LocalEngine<'_> {
    /// Counts every request in shared data.
    pub fn unleased(settings: Settings) -> Self {
        LocalEngine { settings, leasing: Leasing { share_percent: 100, max: 0 }, leases: None }
    }
}

impl Engine for LocalEngine<'_> {
    fn take(
        &mut self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        now: u64,
    ) -> Step<Count, EngineResume, Contended> {
        let Counter { key, limit, window_s, .. } = counter;
        let leasing = self.leasing;
        let taken = match self.leases.as_deref_mut() {
            Some(leases) if leasing.enabled() => {
                if let Some(count) = leases.spend(key, *limit, *window_s, now) {
                    return Step::Done(count);
                }
                let room = leases.room_for(key, now);
                let block = |left| if room { leasing.block(left) } else { 1 };
                limiter::take_block(store, key, *limit, *window_s, now, self.settings, block)
                    .map(|(count, taken)| leases.took(key, *window_s, count, taken))
            }
            _ => limiter::hit(store, key, *limit, *window_s, Hit::Request, now, self.settings),
        };
        match taken {
            Ok(count) => Step::Done(count),
            Err(contended) => Step::Refused(contended),
        }
    }

    fn resume_take(
        &mut self,
        _: &mut dyn SharedStore,
        _: &Counter,
        resume: EngineResume,
        _: &Answer,
        _: u64,
    ) -> Step<Count, EngineResume, Contended> {
        // The local engine never calls: an answer for it is not one it can use.
        match resume {
            EngineResume::Cluster(_) => Step::Refused(Contended::EngineUnusable),
        }
    }

    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, taken: &Count, now: u64) {
        if !taken.returnable {
            return;
        }
        let window_start = taken.window_start(counter.window_s);
        if let Some(leases) = self.leases.as_deref_mut() {
            if leases.give_back(&counter.key, counter.limit, counter.window_s, window_start) {
                return;
            }
        }
        let undo = Hit::Undo(window_start);
        let settings = self.settings.must_land();
        let _ = limiter::hit(store, &counter.key, counter.limit, counter.window_s, undo, now, settings);
    }

    fn check(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) -> Result<Count, Contended> {
        limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Check, now, self.settings)
    }

    fn charge(&mut self, store: &mut dyn SharedStore, counter: &ByteCounter, bytes: u64, now: u64) {
        let settings = self.settings.must_land();
        let _ = limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Add(bytes), now, settings);
    }
}

/// The engines of a configuration: every counter counts in this Envoy unless its scope is the
/// cluster and a rate-limit service is configured.
#[derive(Debug)]
pub struct Engines<'a> {
    pub local: LocalEngine<'a>,
    pub cluster: Option<ClusterEngine<'a>>,
    /// Blocks the cluster engine asks for in the background, for the caller to dispatch.
    pub refills: Vec<Refill>,
}

impl<'a> Engines<'a> {
    fn cluster_for(&self, counter: &Counter) -> Option<ClusterEngine<'a>> {
        self.cluster.filter(|_| counter.scope == Scope::Cluster)
    }
}

fn wrap(step: Step<Count, Pending, Contended>) -> Step<Count, EngineResume, Contended> {
    match step {
        Step::Done(count) => Step::Done(count),
        Step::Call(call, pending) => Step::Call(call, EngineResume::Cluster(pending)),
        Step::Refused(why) => Step::Refused(why),
    }
}

impl Engine for Engines<'_> {
    fn take(
        &mut self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        now: u64,
    ) -> Step<Count, EngineResume, Contended> {
        match self.cluster_for(counter) {
            Some(cluster) => {
                let leasing = self.local.leasing;
                let worker =
                    self.local.leases.as_deref_mut().filter(|_| leasing.enabled()).map(|leases| (leases, leasing));
                wrap(cluster.take_for_worker(store, counter, now, &mut self.refills, worker))
            }
            None => self.local.take(store, counter, now),
        }
    }

    fn resume_take(
        &mut self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        resume: EngineResume,
        answer: &Answer,
        now: u64,
    ) -> Step<Count, EngineResume, Contended> {
        match (self.cluster_for(counter), resume) {
            (Some(cluster), EngineResume::Cluster(pending)) => {
                wrap(cluster.resume_take(store, counter, pending, answer, now))
            }
            (None, resume) => self.local.resume_take(store, counter, resume, answer, now),
        }
    }

    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, taken: &Count, now: u64) {
        match self.cluster_for(counter) {
            Some(cluster) => cluster.give_back_for_worker(store, counter, taken, now, self.local.leases.as_deref_mut()),
            None => self.local.give_back(store, counter, taken, now),
        }
    }

    fn check(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) -> Result<Count, Contended> {
        // Byte budgets count per node (see `ThrottleConfig::scope_of`).
        self.local.check(store, counter, now)
    }

    fn charge(&mut self, store: &mut dyn SharedStore, counter: &ByteCounter, bytes: u64, now: u64) {
        self.local.charge(store, counter, bytes, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::MemoryStore;
    use crate::throttle::plan::{Level, Units};

    const SETTINGS: Settings = Settings { slots: 64, retries: 20, seed: [0; 16] };
    const LEASING: Leasing = Leasing { share_percent: 5, max: 100 };

    fn api_counter(limit: u64) -> Counter {
        Counter {
            level: Level::Api,
            key: "api".into(),
            limit,
            window_s: 60,
            units: Units::Requests,
            soft: false,
            scope: Scope::Node,
        }
    }

    fn take(store: &mut MemoryStore, leases: &mut WorkerLeases, counter: &Counter, now: u64) -> Count {
        let mut engine = LocalEngine { settings: SETTINGS, leasing: LEASING, leases: Some(leases) };
        match engine.take(store, counter, now) {
            Step::Done(count) => count,
            other => panic!("the local engine answers at once: {other:?}"),
        }
    }

    /// Bytes charged after a response and a token given back are updates nothing refuses: other
    /// workers winning more races than `cas_retries` delay them, never drop them. Dropped, the
    /// bytes were never charged (a bandwidth budget admitted past its limit: the multi-worker
    /// campaign found it) and the token never came back.
    #[test]
    fn charges_and_give_backs_land_however_many_races_they_lose() {
        let mut store = MemoryStore::prepared(64);
        let counter = api_counter(10);
        let mut engine = LocalEngine::unleased(SETTINGS);
        store.conflicts = SETTINGS.retries + 5;
        engine.charge(&mut store, &ByteCounter::of(&counter), 7, 120);
        assert_eq!(store.conflicts, 0, "every race was run");
        let Ok(after) = limiter::hit(&mut store, "api", 10, 60, Hit::Check, 120, SETTINGS) else { panic!() };
        assert_eq!(after.remaining, 3, "7 of 10 bytes charged");
        let Step::Done(taken) = engine.take(&mut store, &counter, 121) else { panic!() };
        assert_eq!(taken.remaining, 2);
        store.conflicts = SETTINGS.retries + 5;
        engine.give_back(&mut store, &counter, &taken, 121);
        let Ok(after) = limiter::hit(&mut store, "api", 10, 60, Hit::Check, 121, SETTINGS) else { panic!() };
        assert_eq!(after.remaining, 3, "the token came back");
    }

    /// A small deterministic sequence for interleaving workers.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn workers_taking_blocks_never_admit_more_than_the_limit_and_spend_it_all_under_demand() {
        for (limit, workers, seed) in
            [(1000, 2, 1), (1000, 4, 2), (5000, 3, 3), (250, 8, 4), (39, 2, 5), (100_000, 2, 6)]
        {
            let mut store = MemoryStore::prepared(64);
            let mut leases: Vec<WorkerLeases> = (0..workers).map(|_| WorkerLeases::default()).collect();
            let counter = api_counter(limit);
            let mut state = seed;
            let mut admitted = 0;
            // Demand far above the limit, spread unevenly over the workers, in one window.
            for _ in 0..limit * 3 {
                let worker = (next(&mut state) % workers) as usize;
                if take(&mut store, &mut leases[worker], &counter, 120).allowed {
                    admitted += 1;
                }
            }
            assert_eq!(admitted, limit, "limit {limit}, {workers} workers");
            let Step::Done(after) = LocalEngine::unleased(SETTINGS).take(&mut store, &counter, 121) else { panic!() };
            assert!(!after.allowed, "shared data is at the limit");
        }
    }

    #[test]
    fn small_limits_and_the_last_tokens_are_counted_request_by_request_in_order() {
        // Two workers alternating, a limit under 100 / share: exactly the first N requests pass.
        let mut store = MemoryStore::prepared(64);
        let (mut a, mut b) = (WorkerLeases::default(), WorkerLeases::default());
        let counter = api_counter(19);
        let allowed: Vec<bool> = (0..30)
            .map(|i| take(&mut store, if i % 2 == 0 { &mut a } else { &mut b }, &counter, 120).allowed)
            .collect();
        assert_eq!(allowed.iter().filter(|a| **a).count(), 19);
        assert!(allowed[..19].iter().all(|a| *a), "{allowed:?}");
        assert!(a.is_empty() && b.is_empty(), "no blocks held");
        let Step::Done(count) = LocalEngine::unleased(SETTINGS).take(&mut store, &counter, 120) else { panic!() };
        assert!(!count.allowed);
    }

    #[test]
    fn blocks_cut_shared_data_updates_and_what_a_stopped_worker_holds_is_bounded() {
        let mut store = MemoryStore::prepared(64);
        let (mut busy, mut stopped) = (WorkerLeases::default(), WorkerLeases::default());
        let limit = 10_000;
        let counter = api_counter(limit);
        // The second worker takes one request (a block of 5% of what remains, so 500 tokens, at
        // most 100) and no more.
        assert!(take(&mut store, &mut stopped, &counter, 120).allowed);
        let writes_of = |store: &MemoryStore| {
            let slot = limiter::slot_of(limiter::Space::Counters, "api", SETTINGS);
            store.data.get(&slot).map_or(0, |(_, cas)| u64::from(*cas))
        };
        let writes_before = writes_of(&store);
        let mut admitted = 1;
        for _ in 0..limit * 2 {
            if take(&mut store, &mut busy, &counter, 120).allowed {
                admitted += 1;
            }
        }
        let writes = writes_of(&store) - writes_before;
        assert!(writes < limit / 10, "{writes} shared-data writes for {limit} requests");
        assert_eq!(admitted, limit - 99, "only the stopped worker's held block goes unused");
        assert!(!take(&mut store, &mut busy, &counter, 120).allowed);
        assert!(take(&mut store, &mut stopped, &counter, 120).allowed, "its held tokens are still good");
        // A new window starts afresh.
        assert!(take(&mut store, &mut busy, &counter, 180).allowed);
    }

    #[test]
    fn a_block_taken_while_the_clock_read_ahead_is_not_spent_after_it_is_stepped_back() {
        // A worker takes a block while its clock reads an hour ahead; NTP steps it back. The
        // hour-ahead window is dropped from shared data (a clock that was wrong opened it), so
        // the current window admits its whole limit: the block, spent too, would pass more.
        let mut store = MemoryStore::prepared(64);
        let (mut early, mut other) = (WorkerLeases::default(), WorkerLeases::default());
        let counter = api_counter(1000);
        assert!(take(&mut store, &mut early, &counter, 3_720).allowed, "a block of 50, 49 held");
        let mut admitted = 0;
        for i in 0..3_000 {
            let worker = if i % 2 == 0 { &mut early } else { &mut other };
            if take(&mut store, worker, &counter, 120).allowed {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 1000, "the current window admits its limit, no more");
    }

    #[test]
    fn a_token_given_back_returns_to_the_lease_it_came_from_or_to_shared_data() {
        let mut store = MemoryStore::prepared(64);
        let mut leases = WorkerLeases::default();
        let counter = api_counter(1000);
        let first = take(&mut store, &mut leases, &counter, 120);
        assert_eq!(first.remaining, 999, "a block of 50: 950 left in shared data, 49 held");
        let mut engine = LocalEngine { settings: SETTINGS, leasing: LEASING, leases: Some(&mut leases) };
        engine.give_back(&mut store, &counter, &first, 120);
        let again = take(&mut store, &mut leases, &counter, 120);
        assert_eq!(again.remaining, 999, "the token went back to the lease");
        // Counted request by request near the limit: a give back reaches shared data.
        let small = Counter { key: "small".into(), ..api_counter(3) };
        let taken = take(&mut store, &mut leases, &small, 120);
        assert_eq!(taken.remaining, 2);
        let mut engine = LocalEngine { settings: SETTINGS, leasing: LEASING, leases: Some(&mut leases) };
        engine.give_back(&mut store, &small, &taken, 120);
        let Step::Done(count) = LocalEngine::unleased(SETTINGS).take(&mut store, &small, 120) else { panic!() };
        assert_eq!(count.remaining, 2, "shared data has it back");
    }
}
