//! The counting engine boundary. Planning decides which counters a request touches; an engine
//! counts. What an engine must offer, per counter:
//!
//! - **take**: count one request if the limit allows, and say how the counter stands
//!   ([`Count`]); an engine whose counters are elsewhere may first ask for a call
//!   ([`Step::Call`]) and finish in [`Engine::resume_take`];
//! - **give back**: undo a take, when a later level denied the request (WSO2 counts only what it
//!   lets through). An engine that cannot give back leaves the count: the denied request then
//!   also counts at the levels before the one that denied it, and the engine must say so in its
//!   documentation;
//! - **check** a byte budget (bandwidth policies) without counting, and **charge** bytes that
//!   passed, whatever the limit.
//!
//! [`LocalEngine`] counts in this Envoy's shared data (exact across its workers) and never needs
//! a call; [`ClusterEngine`] counts on a rate-limit service, exact across Envoy nodes; [`Engines`]
//! sends each counter to the engine of its [`Scope`].

use super::cluster::{ClusterEngine, Pending, Refill};
use super::limiter::{self, Contended, Count, Hit, Settings};
use super::plan::{Counter, Scope};
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
    /// Undoes one take at `counter`, made in the window starting at `window_start` (a new window
    /// may have begun since).
    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, window_start: u64, now: u64);
    /// Whether a byte budget has room; counts nothing.
    fn check(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) -> Result<Count, Contended>;
    /// Adds bytes that passed to a byte budget, whatever its limit.
    fn charge(&mut self, store: &mut dyn SharedStore, counter: &ByteCounter, bytes: u64, now: u64);
}

/// Counts in this Envoy's shared data: fixed windows aligned to Unix time, updated by
/// compare-and-swap (see [`limiter`]), exact across the workers of one Envoy.
#[derive(Clone, Copy, Debug)]
pub struct LocalEngine {
    pub settings: Settings,
}

impl Engine for LocalEngine {
    fn take(
        &mut self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        now: u64,
    ) -> Step<Count, EngineResume, Contended> {
        match limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Request, now, self.settings) {
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

    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, window_start: u64, now: u64) {
        let undo = Hit::Undo(window_start);
        let _ = limiter::hit(store, &counter.key, counter.limit, counter.window_s, undo, now, self.settings);
    }

    fn check(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) -> Result<Count, Contended> {
        limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Check, now, self.settings)
    }

    fn charge(&mut self, store: &mut dyn SharedStore, counter: &ByteCounter, bytes: u64, now: u64) {
        let _ = limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Add(bytes), now, self.settings);
    }
}

/// The engines of a configuration: every counter counts in this Envoy unless its scope is the
/// cluster and a rate-limit service is configured.
#[derive(Clone, Debug)]
pub struct Engines<'a> {
    pub local: LocalEngine,
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
            Some(cluster) => wrap(cluster.take(store, counter, now, &mut self.refills)),
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

    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, window_start: u64, now: u64) {
        match self.cluster_for(counter) {
            Some(cluster) => cluster.give_back(store, counter, window_start, now),
            None => self.local.give_back(store, counter, window_start, now),
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
