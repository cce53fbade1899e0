//! Background work of a root context. On its tick: refreshing key managers' JWKS before they grow
//! old, so that no request waits for a refresh it did not need. One worker of the Envoy does each
//! refresh (a shared due time, taken by compare-and-swap); the others pick the keys up from shared
//! data. A failed fetch (a refresh, or a request's) keeps the last good keys, and the refresh is
//! retried soon. And the answers to the JWKS fetches requests needed (the worker's; the waiting
//! requests resume after) and to the
//! blocks of tokens a request asked the rate-limit service for without waiting (calls are the
//! root context's, so they outlive the request that made them). And full loads of a WSO2 control
//! plane's directory, one call after another. And how fast the tick runs ([`TickPace`]).

use super::{engines, Worker};
use crate::auth::jwks;
use crate::config::Config;
use crate::directory::control_plane::refresh::{self, Load};
use crate::host::{Answer, GatewayScoped, Host};
use crate::throttle::cluster::Refill;
use crate::throttle::limiter::Space;
use crate::vocab::KmId;

/// How often the root context ticks, milliseconds.
pub const TICK_MS: u32 = 1_000;

/// The tick period while a stream of the root context waits to be reset, milliseconds: long
/// enough for Envoy to have sent on the chunk before the reset, short enough that the client sees
/// the stream end at once.
pub const CLOSE_TICK_MS: u32 = 50;

/// How fast a root context ticks: every [`TICK_MS`] for background work (or not at all), and
/// every [`CLOSE_TICK_MS`] while streams wait for their reset (a server-sent-events stream cut
/// mid-chunk), the background work still at most once every [`TICK_MS`].
#[derive(Debug, Default)]
pub struct TickPace {
    fast: bool,
    background_ran_ms: u64,
}

impl TickPace {
    /// A stream asks for its reset: the period to set now, unless the tick is fast already.
    pub fn hurry(&self) -> Option<u32> {
        (!self.fast).then_some(CLOSE_TICK_MS)
    }

    /// The period [`TickPace::hurry`] asked for was set.
    pub fn hurried(&mut self) {
        self.fast = true;
    }

    /// A tick at `now_ms`: whether the background work runs in it (noted as run when it does).
    pub fn background_due(&mut self, needed: bool, now_ms: u64) -> bool {
        let due = needed && (!self.fast || now_ms >= self.background_ran_ms.saturating_add(u64::from(TICK_MS)));
        if due {
            self.background_ran_ms = now_ms;
        }
        due
    }

    /// After a tick's work: the period to go back to when the tick was fast (its waiting streams
    /// are reset in this tick), `None` when it was not.
    pub fn settle(&mut self, needed: bool) -> Option<u32> {
        std::mem::take(&mut self.fast).then_some(if needed { TICK_MS } else { 0 })
    }
}

/// A background call under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// A JWKS fetch (`fetch`, its call token): the background refresh, or a fetch a request
    /// needed, which is the worker's too, so that a request that goes away takes nothing with
    /// it, and the requests that wait for the keys resume when they arrive.
    Jwks { key_manager: KmId, fetch: u32 },
    /// A block of tokens for a cluster-wide counter's lease.
    Refill(Box<Refill>),
    /// A full load of the control plane's directory.
    ControlPlane(Box<Load>),
}

/// Whether the answer to `job` is read from Envoy in pieces (`Answer::HttpStream`): a control
/// plane's full lists can be tens of megabytes.
pub fn streams(job: &Job) -> bool {
    matches!(job, Job::ControlPlane(_))
}

/// Whether a configuration has background work (and its root context a tick).
pub fn needed(config: &Config) -> bool {
    config.control_plane.is_some() || config.auth.key_managers.iter().any(|km| km.remote_jwks.is_some())
}

/// Starts the background calls that are due; returns their tokens.
pub fn tick(host: &mut impl Host, config: &Config, worker: &mut Worker) -> Vec<(u32, Job)> {
    let host = &mut GatewayScoped::new(host, &config.shared_prefix);
    let Ok(now) = host.now() else { return Vec::new() };
    let mut started = Vec::new();
    for (key_manager, call) in jwks::due(host, &config.auth, now) {
        let Some(fetched) = worker.auth.jwks.get_mut(key_manager.index()) else { continue };
        let timeout_ms =
            config.auth.key_manager(key_manager).and_then(|km| km.remote_jwks.as_ref()).map_or(0, |r| r.timeout_ms);
        if fetched.under_way(now, timeout_ms).is_some() {
            // A request's fetch is under way: its answer refreshes the keys for every worker.
            continue;
        }
        match host.call(&call) {
            Ok(token) => {
                fetched.started(token, now);
                started.push((token, Job::Jwks { key_manager, fetch: token }));
            }
            Err(_) => {
                fetched.failed = true;
                // The last good keys stay: only this counter and the log show the outage.
                host.count("apim.jwks.fetch_failed");
                if let Some(km) = config.auth.key_manager(key_manager) {
                    log::warn!(
                        "JWKS refresh from key manager `{}` could not be made; keeping the last good keys",
                        km.name
                    );
                    jwks::retry_soon(host, km, now);
                }
            }
        }
    }
    if let Some(control_plane) = &config.control_plane {
        let now_ms = host.now_ms().unwrap_or(0);
        if let Some(load) = refresh::due(host, control_plane, now, now_ms) {
            let call = load.fetch.call(control_plane);
            started.extend(start(host, config, worker, call, Job::ControlPlane(Box::new(load))));
        }
    }
    started
}

/// The body of an answer that has none in Envoy.
fn no_body(_: usize, _: usize) -> Vec<u8> {
    Vec::new()
}

/// Starts a background call; one that cannot be made is answered as failed at once.
fn start(
    host: &mut impl Host,
    config: &Config,
    worker: &mut Worker,
    call: crate::host::Call,
    job: Job,
) -> Vec<(u32, Job)> {
    match host.call(&call) {
        Ok(token) => vec![(token, job)],
        Err(error) => take_answer(host, config, worker, job, &Answer::Failed { code: error.0 }, &no_body),
    }
}

/// Takes the answer to a background call (`read(start, length)` reads the body of an
/// `Answer::HttpStream`); returns the calls it started next.
pub fn answered(
    host: &mut impl Host,
    config: &Config,
    worker: &mut Worker,
    job: Job,
    answer: &Answer,
    read: &dyn Fn(usize, usize) -> Vec<u8>,
) -> Vec<(u32, Job)> {
    take_answer(&mut GatewayScoped::new(host, &config.shared_prefix), config, worker, job, answer, read)
}

/// [`answered`] on the host as this gateway sees it.
fn take_answer(
    host: &mut impl Host,
    config: &Config,
    worker: &mut Worker,
    job: Job,
    answer: &Answer,
    read: &dyn Fn(usize, usize) -> Vec<u8>,
) -> Vec<(u32, Job)> {
    let Ok(now) = host.now() else { return Vec::new() };
    match job {
        Job::Jwks { key_manager, fetch } => {
            let (Some(km), Some(fetched)) =
                (config.auth.key_manager(key_manager), worker.auth.jwks.get_mut(key_manager.index()))
            else {
                return Vec::new();
            };
            // A failed fetch, a request's too, brings the next refresh within the fetch interval:
            // the tick leaves a due refresh to a request's fetch under way, and when that failed
            // the keys waited a whole `refresh_s` (a key the key manager dropped stayed trusted).
            if jwks::settle(host, km, fetched, fetch, answer, now) == Some(false) {
                host.count("apim.jwks.fetch_failed");
                jwks::retry_soon(host, km, now);
            }
            Vec::new()
        }
        Job::Refill(refill) => {
            if let Some(cluster) = engines(config, None).cluster {
                cluster.refilled(host, &refill, answer, now);
            }
            Vec::new()
        }
        Job::ControlPlane(mut load) => {
            let Some(control_plane) = &config.control_plane else { return Vec::new() };
            let now_ms = host.now_ms().unwrap_or(0);
            match refresh::ingest(host, control_plane, &mut load, answer, read, now, now_ms) {
                Some(call) => {
                    load.asked(host.fresh_now_ms().unwrap_or(now_ms));
                    start(host, config, worker, call, Job::ControlPlane(load))
                }
                None => {
                    if load.incomplete() {
                        // A resource's last good data, if any, stays served: as for the JWKS.
                        host.count("apim.control_plane.load_failed");
                    }
                    Vec::new()
                }
            }
        }
    }
}

/// Creates what is shared through leases taken by compare-and-swap (at configure time, before
/// requests or ticks use them), under the configuration's gateway (see
/// [`crate::host::GatewayScoped`]): the key managers' JWKS due times, the control plane's due
/// time, and the counter slots; and sets the slot count and seed to the ones this gateway uses in
/// this Envoy (its first configuration's; see [`crate::throttle::limiter::prepare_slots`]).
pub fn prepare_counters(host: &mut impl Host, config: &mut Config) {
    let prefix = config.shared_prefix.clone();
    let host = &mut GatewayScoped::new(host, &prefix);
    crate::auth::jwks::prepare(host, &config.auth);
    if config.throttles() {
        let wanted = config.throttle.settings.counter_slots;
        let spaces: &[Space] = match config.throttle.rate_limit_service {
            Some(_) => &[Space::Counters, Space::Leases],
            None => &[Space::Counters],
        };
        let fresh = crate::throttle::limiter::fresh_seed(host.now_ms().unwrap_or_default());
        let (slots, seed) = crate::throttle::limiter::prepare_slots(host, wanted, spaces, fresh);
        config.throttle.settings.slot_seed = seed;
        if let Some(control_plane) = &config.control_plane {
            crate::directory::control_plane::refresh::prepare(host, control_plane);
        }
        if slots != wanted {
            log::info!(
                "throttling.counter_slots {wanted} takes effect when Envoy restarts; this process keeps counting in \
                 {slots} slots, so counts stay exact across the update"
            );
        }
        config.throttle.settings.counter_slots = slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream waiting for its reset makes the tick fast once; the background work still runs
    /// at most once a second meanwhile; the tick then goes back to its own period (or off).
    #[test]
    fn the_tick_runs_fast_while_a_stream_waits_and_background_work_keeps_its_pace() {
        let mut pace = TickPace::default();
        assert!(pace.background_due(true, 1_000), "the tick's own period: background work each tick");
        assert!(pace.background_due(true, 2_000));
        assert_eq!(pace.settle(true), None, "not fast: nothing to set back");
        assert_eq!(pace.hurry(), Some(CLOSE_TICK_MS));
        pace.hurried();
        assert_eq!(pace.hurry(), None, "already fast");
        assert!(!pace.background_due(true, 2_050), "fast ticks do not run it more than once a second");
        assert!(pace.background_due(true, 3_000));
        assert_eq!(pace.settle(true), Some(TICK_MS), "back to the background's period");
        assert_eq!(pace.settle(true), None, "once");
        pace.hurried();
        assert!(!pace.background_due(false, 9_000), "no background work configured");
        assert_eq!(pace.settle(false), Some(0), "without background work the tick stops");
        assert_eq!(pace.hurry(), Some(CLOSE_TICK_MS));
    }
}
