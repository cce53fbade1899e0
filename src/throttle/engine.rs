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
//! a call.

use super::limiter::{self, Contended, Count, Hit, Settings};
use super::plan::Counter;
use crate::host::{Answer, SharedStore, Step};

/// What an engine waits for when a take needs a call. The local engine never calls.
#[derive(Debug)]
pub enum EngineResume {}

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
    /// Undoes one take at `counter`.
    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64);
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
        match resume {}
    }

    fn give_back(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) {
        let _ = limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Undo, now, self.settings);
    }

    fn check(&mut self, store: &mut dyn SharedStore, counter: &Counter, now: u64) -> Result<Count, Contended> {
        limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Check, now, self.settings)
    }

    fn charge(&mut self, store: &mut dyn SharedStore, counter: &ByteCounter, bytes: u64, now: u64) {
        let _ = limiter::hit(store, &counter.key, counter.limit, counter.window_s, Hit::Add(bytes), now, self.settings);
    }
}
