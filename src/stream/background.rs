//! Background work of a root context. On its tick: refreshing key managers' JWKS before they grow
//! old, so that no request waits for a refresh it did not need. One worker of the Envoy does each
//! refresh (a shared due time, taken by compare-and-swap); the others pick the keys up from shared
//! data. A failed refresh keeps the last good keys and is retried soon. And the answers to the
//! blocks of tokens a request asked the rate-limit service for without waiting (calls are the
//! root context's, so they outlive the request that made them).

use super::{engines, Worker};
use crate::auth::jwks;
use crate::config::Config;
use crate::host::{Answer, Host};
use crate::throttle::cluster::Refill;
use crate::vocab::KmId;

/// How often the root context ticks, milliseconds.
pub const TICK_MS: u32 = 1_000;

/// A background call under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    Jwks(KmId),
    /// A block of tokens for a cluster-wide counter's lease.
    Refill(Box<Refill>),
}

/// Whether a configuration has background work (and its root context a tick).
pub fn needed(config: &Config) -> bool {
    config.auth.key_managers.iter().any(|km| km.remote_jwks.is_some())
}

/// Starts the background calls that are due; returns their tokens.
pub fn tick(host: &mut impl Host, config: &Config, worker: &mut Worker) -> Vec<(u32, Job)> {
    let Ok(now) = host.now() else { return Vec::new() };
    let mut started = Vec::new();
    for (key_manager, call) in jwks::due(host, &config.auth, now) {
        match host.call(&call) {
            Ok(token) => started.push((token, Job::Jwks(key_manager))),
            Err(_) => answered(host, config, worker, Job::Jwks(key_manager), &Answer::Failed { code: 0 }),
        }
    }
    started
}

/// Takes the answer to a background call.
pub fn answered(host: &mut impl Host, config: &Config, worker: &mut Worker, job: Job, answer: &Answer) {
    let Ok(now) = host.now() else { return };
    match job {
        Job::Jwks(key_manager) => {
            let (Some(km), Some(fetched)) =
                (config.auth.key_manager(key_manager), worker.auth.jwks.get_mut(key_manager.index()))
            else {
                return;
            };
            if !jwks::ingest(host, km, fetched, answer, now) {
                jwks::retry_soon(host, km, now);
            }
        }
        Job::Refill(refill) => {
            if let Some(cluster) = engines(config).cluster {
                cluster.refilled(host, &refill, answer, now);
            }
        }
    }
}
