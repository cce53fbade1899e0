//! A WebSocket connection's frames counted against its tiers, as API-M 4.x's gateway counts every
//! data frame in either direction (`WebsocketInboundHandler`, `WebsocketHandler`: one throttle
//! event per frame, at the API, subscription and application keys): the handshake is
//! authenticated and checked (blocking conditions, policies) but not counted, and each frame then
//! takes a token at the levels the handshake planned. A frame never waits for a call.

use super::cluster::Refill;
use super::engine::{ByteCounter, Engine, EngineResume, Engines};
use super::limiter::{Contended, Count};
use super::plan::{self, Caller, Counter, Level, Units};
use super::ThrottleConfig;
use crate::catalogue::{Fault, FaultId};
use crate::directory::Directory;
use crate::host::{SharedStore, Step};
use crate::routing::{Api, Resource};
use crate::vocab::FailureMode;

/// The levels API-M's gateway checks per message (`WebsocketUtil.isThrottled`,
/// `SseUtils.isThrottled`: the resource's key, the subscription's, the application's). A
/// WebSocket frame's resource key is the API's, with the API's tier (`verbInfoDTO` is null for a
/// frame: no topic's tier applies to it); a server-sent event's is its resource's. Burst control,
/// custom policies and hard limits are checked on requests only.
fn counts_messages(level: Level, websocket: bool) -> bool {
    match level {
        Level::Api | Level::Subscription | Level::Application => true,
        Level::Resource => !websocket,
        _ => false,
    }
}

/// The counters a connection's messages count at (a WebSocket's frames, `websocket`, or a
/// response's server-sent events), planned once at its handshake: those a request there counts
/// at the API, subscription and application levels, and for events the resource level, byte
/// budgets included. A blocking condition (900805) or a policy not deployed (900809) refuses the
/// handshake, as it refuses a request.
pub fn plan_frames(
    throttle: &ThrottleConfig,
    directory: &dyn Directory,
    api: &Api,
    resource: &Resource,
    caller: &Caller<'_>,
    websocket: bool,
) -> Result<Vec<Counter>, Fault> {
    if plan::blocked(directory, api, caller, &throttle.tenant) {
        return Err(Fault::new(FaultId::Blocked));
    }
    if !plan::missing_policies(directory, api, resource, caller).is_empty() {
        return Err(Fault::new(FaultId::ThrottlePolicyMissing));
    }
    let mut counters = plan::plan(throttle, directory, api, resource, caller);
    counters.retain(|counter| counts_messages(counter.level, websocket));
    Ok(counters)
}

/// The byte budgets among a plan's counters: a message's bytes are charged to them as they pass.
pub fn byte_counters(counters: &[Counter]) -> Vec<ByteCounter> {
    counters.iter().filter(|counter| counter.units == Units::Bytes).map(ByteCounter::of).collect()
}

/// What counting one frame decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCount {
    /// The frame goes on; otherwise it is dropped (a level over its limit, or one that could not
    /// count it with `failure_mode: deny`).
    pub passed: bool,
    /// A level could not count the frame.
    pub uncounted: Option<Contended>,
    /// The fault of the level that dropped it (throttled at that level, or 900808 when it could
    /// not count).
    pub dropped_by: Option<FaultId>,
}

/// Counts one frame at `counters`, in order: each takes a token (a byte budget is only checked:
/// the frame's bytes are charged as they pass); the first over its limit drops the frame, and
/// what the levels before took is given back (API-M counts only the frames it lets through). A
/// subscription without stop-on-quota-reach lets it through over its quota.
///
/// A cluster-wide level whose node holds no token asks the rate-limit service for the node's next
/// block in the background (`engines.refills`) and lets the frame through uncounted there, as
/// API-M's gateway lets frames through until its Traffic Manager says a key is over: a frame is
/// never held for a call. Frames that find the lease empty while that block is on its way pass
/// the same way.
pub fn count_frame(
    throttle: &ThrottleConfig,
    engines: &mut Engines<'_>,
    store: &mut dyn SharedStore,
    counters: &[Counter],
    now: u64,
) -> FrameCount {
    take_all(throttle, engines, store, counters, now, true)
}

/// Whether a message would be refused now, counting nothing (each level's token is taken and
/// given back): an event stream's request is answered with the level's fault before its backend
/// is asked, as API-M's gateway refuses a server-sent-events request whose key is already over
/// (`SseApiHandler`). A level that would need the rate-limit service's answer does not refuse it
/// (its block is asked for in the background, as for a message).
pub fn refused_now(
    throttle: &ThrottleConfig,
    engines: &mut Engines<'_>,
    store: &mut dyn SharedStore,
    counters: &[Counter],
    now: u64,
) -> Option<FaultId> {
    take_all(throttle, engines, store, counters, now, false).dropped_by
}

/// [`count_frame`]; with `keep` false, what the levels took is given back whatever they answer.
fn take_all(
    throttle: &ThrottleConfig,
    engines: &mut Engines<'_>,
    store: &mut dyn SharedStore,
    counters: &[Counter],
    now: u64,
    keep: bool,
) -> FrameCount {
    let mut taken: Vec<(&Counter, Count)> = Vec::new();
    let mut uncounted = None;
    for counter in counters {
        let step = match counter.units {
            Units::Bytes => engines.check(store, counter, now).map_or_else(Step::Refused, Step::Done),
            Units::Requests => engines.take(store, counter, now),
        };
        let count = match step {
            Step::Done(count) => count,
            Step::Call(call, EngineResume::Cluster(pending)) => {
                if pending.asks_for_block() {
                    engines.refills.push(Refill { call, counter: counter.clone(), pending });
                }
                continue;
            }
            Step::Refused(why) => {
                uncounted = Some(why);
                match throttle.failure_mode_for(why) {
                    FailureMode::Allow => continue,
                    FailureMode::Deny => {
                        give_back(engines, store, taken, now);
                        return FrameCount {
                            passed: false,
                            uncounted,
                            dropped_by: Some(FaultId::ThrottleInternalError),
                        };
                    }
                }
            }
        };
        if !count.allowed {
            if counter.soft {
                continue;
            }
            give_back(engines, store, taken, now);
            return FrameCount { passed: false, uncounted, dropped_by: Some(counter.level.fault_id()) };
        }
        if counter.units == Units::Requests {
            taken.push((counter, count));
        }
    }
    if !keep {
        give_back(engines, store, taken, now);
    }
    FrameCount { passed: true, uncounted, dropped_by: None }
}

fn give_back(engines: &mut Engines<'_>, store: &mut dyn SharedStore, taken: Vec<(&Counter, Count)>, now: u64) {
    for (counter, count) in taken {
        engines.give_back(store, counter, &count, now);
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::LocalEngine;
    use super::super::limiter::Settings;
    use super::super::worker_lease::Leasing;
    use super::*;
    use crate::host::testing::MemoryStore;
    use crate::throttle::Scope;

    const NOW: u64 = 1_800_000_000;

    fn counter(level: Level, limit: u64, soft: bool) -> Counter {
        let key = format!("{level:?}");
        Counter { level, key, limit, window_s: 3600, units: Units::Requests, soft, scope: Scope::Node }
    }

    fn store() -> MemoryStore {
        let mut store = MemoryStore::default();
        super::super::limiter::prepare_slots(&mut store, 64, &[super::super::limiter::Space::Counters], [0; 16]);
        store
    }

    fn count(store: &mut MemoryStore, counters: &[Counter], throttle: &ThrottleConfig) -> bool {
        let local = LocalEngine {
            settings: Settings { slots: 64, retries: 20, seed: [0; 16] },
            leasing: Leasing { share_percent: 5, max: 0 },
            leases: None,
        };
        let mut engines = Engines { local, cluster: None, refills: Vec::new() };
        count_frame(throttle, &mut engines, store, counters, NOW).passed
    }

    #[test]
    fn the_first_level_over_its_limit_drops_the_frame_and_the_levels_before_take_back_their_token() {
        let throttle = ThrottleConfig::default();
        let mut store = store();
        // The application level allows two frames, the API level five.
        let counters = [counter(Level::Api, 5, false), counter(Level::Application, 2, false)];
        let passed: Vec<bool> = (0..4).map(|_| count(&mut store, &counters, &throttle)).collect();
        assert_eq!(passed, [true, true, false, false]);
        // The API level counted only the two frames let through: three more pass there.
        let api_only = [counter(Level::Api, 5, false)];
        let passed: Vec<bool> = (0..4).map(|_| count(&mut store, &api_only, &throttle)).collect();
        assert_eq!(passed, [true, true, true, false]);
    }

    #[test]
    fn a_subscription_without_stop_on_quota_reach_lets_frames_through_over_its_quota() {
        let throttle = ThrottleConfig::default();
        let mut store = store();
        let soft = [counter(Level::Subscription, 1, true)];
        assert!((0..3).all(|_| count(&mut store, &soft, &throttle)));
        let hard = [counter(Level::Application, 1, false)];
        assert_eq!((0..2).map(|_| count(&mut store, &hard, &throttle)).collect::<Vec<_>>(), [true, false]);
    }
}
