//! Keys fetched from key managers' JWKS endpoints. One copy per Envoy lives in shared data; each
//! worker parses it once and keeps it ([`FetchedKeys`]), picking up a newer copy another worker
//! fetched. A request fetches only when it needs keys it does not have (none yet, or an unknown
//! `kid`), at most every [`FETCH_INTERVAL_S`] per worker, and the fetch is the worker's: requests
//! that need the keys meanwhile wait for it ([`FetchedKeys::under_way`]). Refreshing keys that
//! merely grew old is background work of the root context ([`due`]), so no request waits for it.
//! A failed fetch keeps the last good keys.

use super::keys::{KeySet, Skipped};
use super::settings::{AuthConfig, KeyManager, RemoteJwks};
use super::WorkerState;
use crate::host::{create_if_absent, recent, Answer, Call, SharedStore};
use crate::vocab::KmId;

/// Fetches on behalf of requests (missing keys, unknown `kid`s) happen at most this often per key
/// manager and worker; after a failed fetch (a background refresh, or a request's) the refresh is
/// retried after this long.
pub const FETCH_INTERVAL_S: u64 = 5;

/// One worker's view of a key manager's fetched keys.
#[derive(Debug, Default)]
pub struct FetchedKeys {
    pub keys: Option<KeySet>,
    /// The shared-data CAS of the JWKS they were parsed from.
    pub cas: Option<u32>,
    /// When this worker last looked at shared data for them.
    pub checked_at: u64,
    /// When this worker last fetched (for requests' rate limit).
    pub last_attempt: Option<u64>,
    /// This worker's last fetch failed and no worker has fetched since.
    pub failed: bool,
    /// A fingerprint of the JWKS text `keys` were parsed from: what a token verified with them
    /// was verified under (a verified token is trusted only while its worker, or the worker
    /// that shared it, holds the same set).
    pub fingerprint: Option<u64>,
    /// The fetch of this worker under way (a request's or the background refresh's): its call
    /// token and when it was made. Requests that need the keys wait for its answer.
    pub in_flight: Option<(u32, u64)>,
}

impl FetchedKeys {
    /// Whether a request may fetch now: this worker's last fetch is not recent. One noted in the
    /// clock's future (stepped back since) is not recent.
    pub fn may_fetch(&self, now: u64) -> bool {
        self.last_attempt.is_none_or(|last| !recent(last, now, FETCH_INTERVAL_S))
    }

    /// The token of the fetch under way, which a request that needs the keys waits for; none
    /// once it has had longer than its timeout to answer (Envoy answers every call by then). One
    /// made in the clock's future (stepped back since) is still waited for: its answer, which
    /// comes within its timeout whatever the clock says, ends the wait; a second fetch would take
    /// its place, and the first answer, for which requests wait, would be dropped unread.
    pub fn under_way(&self, now: u64, timeout_ms: u32) -> Option<u32> {
        let answered_by = answered_within_s(timeout_ms);
        self.in_flight.and_then(|(token, asked)| (now < asked.saturating_add(answered_by)).then_some(token))
    }

    /// A fetch was made with this token: requests wait for it rather than fetch again.
    pub fn started(&mut self, token: u32, now: u64) {
        self.in_flight = Some((token, now));
    }
}

/// What the verified tokens of a worker holding these sets were verified under: the fingerprints
/// of each key manager's fetched JWKS, folded (no allocation: it is asked on every bearer
/// request). A key the key manager dropped at a refresh is trusted no more, not even through a
/// token it verified before.
pub fn sets_fingerprint(fetched: &[FetchedKeys]) -> u64 {
    fetched.iter().fold(0, |folded, fetched| match fetched.fingerprint {
        Some(fingerprint) => crate::hashing::fnv1a(folded, &fingerprint.to_le_bytes()),
        None => crate::hashing::fnv1a(folded, b"-"),
    })
}

/// The shared-data key of a key manager's fetched JWKS.
pub fn shared_key(km: &KeyManager) -> String {
    format!("apim.jwks.{}", km.cache_id)
}

/// The shared-data key of the time the next background refresh is due (the refresh lease).
fn due_key(km: &KeyManager) -> String {
    format!("apim.jwks.{}.due", km.cache_id)
}

/// The fetch.
pub fn call(jwks: &RemoteJwks) -> Call {
    Call::Http {
        cluster: jwks.cluster.clone(),
        headers: vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), jwks.path.clone()),
            (":authority".to_string(), jwks.authority.clone()),
            ("accept".to_string(), "application/json".to_string()),
        ],
        body: Vec::new(),
        timeout_ms: jwks.timeout_ms,
    }
}

fn parse(bytes: &[u8]) -> Option<(KeySet, Vec<Skipped>)> {
    let value: serde_json::Value = crate::pieces::from_bytes(bytes).ok()?;
    KeySet::with_skipped(&value).ok()
}

/// Picks up keys another worker fetched (at most once a second per worker; a look noted in the
/// clock's future, stepped back since, is no look: skipping until the clock came back left the
/// worker refusing tokens of keys every other worker had).
pub fn sync(store: &dyn SharedStore, auth: &AuthConfig, state: &mut WorkerState, now: u64) {
    for (km, fetched) in auth.key_managers.iter().zip(state.jwks.iter_mut()) {
        if km.remote_jwks.is_none() || (fetched.keys.is_some() && fetched.checked_at == now) {
            continue;
        }
        fetched.checked_at = now;
        let Ok(Some((bytes, cas))) = store.shared_get(&shared_key(km)) else { continue };
        if fetched.cas == Some(cas) {
            continue;
        }
        if let Some((keys, _)) = parse(&bytes) {
            fetched.keys = Some(keys);
            fetched.cas = Some(cas);
            fetched.fingerprint = Some(crate::hashing::fnv1a(0, &bytes));
            // Another worker fetched them: the key manager answered.
            fetched.failed = false;
        }
    }
}

/// Takes the answer to the fetch with this token, once: the first to see it (the worker's
/// call, or a request that waited for it) ingests it; later ones find it taken. Returns whether
/// this call ingested a good set (`None`: the answer was taken already, or is not this worker's
/// fetch under way).
pub fn settle(
    store: &mut dyn SharedStore,
    km: &KeyManager,
    fetched: &mut FetchedKeys,
    token: u32,
    answer: &Answer,
    now: u64,
) -> Option<bool> {
    if fetched.in_flight.is_none_or(|(under_way, _)| under_way != token) {
        return None;
    }
    fetched.in_flight = None;
    Some(ingest(store, km, fetched, answer, now))
}

/// Takes the answer to a fetch: good keys go to shared data (for every worker) and to this
/// worker; anything else is remembered as a failed fetch, keeping the last good keys. Returns
/// whether the fetch succeeded. Keys of the set that cannot verify are logged, with why, when
/// the set is new.
pub fn ingest(
    store: &mut dyn SharedStore,
    km: &KeyManager,
    fetched: &mut FetchedKeys,
    answer: &Answer,
    now: u64,
) -> bool {
    let body = match answer {
        Answer::Http { status: 200, body } => body,
        Answer::Http { .. } | Answer::HttpStream { .. } | Answer::Grpc { .. } | Answer::Failed { .. } => {
            log::warn!("JWKS fetch from key manager `{}` failed; keeping the last good keys", km.name);
            fetched.failed = true;
            return false;
        }
    };
    let Some((keys, skipped)) = parse(body) else {
        log::warn!("key manager `{}` answered a JWKS with no usable key; keeping the last good keys", km.name);
        fetched.failed = true;
        return false;
    };
    let key = shared_key(km);
    let current = store.shared_get(&key).ok().flatten();
    if current.as_ref().is_none_or(|(bytes, _)| bytes != body) {
        for skipped in &skipped {
            log::warn!("key manager `{}`: the JWKS's {skipped}; it is skipped", km.name);
        }
    }
    let written = store.shared_set(&key, body, current.map(|(_, cas)| cas)).is_ok();
    fetched.keys = Some(keys);
    fetched.fingerprint = Some(crate::hashing::fnv1a(0, body));
    // The CAS of the set written, so that [`sync`] skips it. A write that lost the race to
    // another worker's set (before it, or just after) claims nothing: taking the winner's CAS,
    // the worker kept its own set while every other worker used the winner's, until the next
    // refresh.
    let stored = if written { store.shared_get(&key).ok().flatten() } else { None };
    fetched.cas = stored.filter(|(bytes, _)| bytes == body).map(|(_, cas)| cas);
    fetched.checked_at = now;
    fetched.failed = false;
    true
}

/// Creates each key manager's due time (due at once) if this Envoy has none, at configure time,
/// so that taking the refresh lease is always a compare-and-swap: a due time read as absent and
/// then written unconditionally let every worker take the first refresh. Created only where none
/// is ([`create_if_absent`]): read as absent, then written, it undid a lease another worker took
/// in between, and both refreshed.
pub fn prepare(store: &mut dyn SharedStore, auth: &AuthConfig) {
    for km in auth.key_managers.iter().filter(|km| km.remote_jwks.is_some()) {
        let _ = create_if_absent(store, &due_key(km), &0u64.to_le_bytes());
    }
}

/// Background refreshes due now: one per key manager with a JWKS endpoint whose keys are older
/// than its `refresh_s`, taken by compare-and-swap on a shared due time (created by [`prepare`])
/// so that one worker of the Envoy refreshes while the others read the result.
pub fn due(store: &mut dyn SharedStore, auth: &AuthConfig, now: u64) -> Vec<(KmId, Call)> {
    let mut calls = Vec::new();
    for km in &auth.key_managers {
        let Some(jwks) = &km.remote_jwks else { continue };
        let key = due_key(km);
        let Ok(Some((bytes, cas))) = store.shared_get(&key) else { continue };
        let due_at = <[u8; 8]>::try_from(bytes.as_slice()).map_or(0, u64::from_le_bytes);
        // Whoever moves the due time forward first does the refresh; never again while this
        // one may still be answering (a `refresh_s` shorter than the call's timeout).
        let answered_by = answered_within_s(jwks.timeout_ms);
        let interval = jwks.refresh_s.max(answered_by).max(FETCH_INTERVAL_S);
        // A due time further off than this configuration ever sets is due now: the clock was
        // stepped back since (it would wait as long as the step), or a configuration with a
        // longer `refresh_s` set it (a shorter one applies at once).
        if now < due_at && due_at <= now.saturating_add(interval) {
            continue;
        }
        let next = now.saturating_add(jwks.refresh_s.max(answered_by));
        if store.shared_set(&key, &next.to_le_bytes(), Some(cas)).is_ok() {
            calls.push((km.id, call(jwks)));
        }
    }
    calls
}

/// After a failed background refresh: try again after [`FETCH_INTERVAL_S`], not `refresh_s`.
pub fn retry_soon(store: &mut dyn SharedStore, km: &KeyManager, now: u64) {
    let key = due_key(km);
    let Ok(Some((_, cas))) = store.shared_get(&key) else { return };
    let _ = store.shared_set(&key, &now.saturating_add(FETCH_INTERVAL_S).to_le_bytes(), Some(cas));
}

/// Seconds within which Envoy has answered a fetch made with `timeout_ms` (its timeout, rounded
/// up, and a second more).
fn answered_within_s(timeout_ms: u32) -> u64 {
    u64::from(timeout_ms).div_ceil(1000).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{MemoryStore, RivalWrite};
    use crate::host::HostError;

    /// Another worker's tick runs `due` between this worker's read and write of the due time.
    struct Racing {
        inner: MemoryStore,
        rival_writes: bool,
    }
    impl SharedStore for Racing {
        fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            self.inner.shared_get(key)
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
            if std::mem::take(&mut self.rival_writes) {
                // The rival read the same value and wrote its due time first: it refreshes.
                self.inner.shared_set(key, value, cas)?;
            }
            self.inner.shared_set(key, value, cas)
        }
    }

    #[test]
    fn a_due_time_from_the_clocks_future_or_a_longer_refresh_s_is_due_now() {
        let config = |refresh_s: u64| {
            let json = format!(
                r#"{{"key_managers": [{{"name": "km", "issuer": "https://km",
                    "jwks": {{"cluster": "km", "refresh_s": {refresh_s}}}}}]}}"#
            );
            crate::config::Config::from_json(json.as_bytes()).unwrap()
        };
        let hourly = config(3_600);
        let mut store = MemoryStore::default();
        prepare(&mut store, &hourly.auth);
        assert_eq!(due(&mut store, &hourly.auth, 100_000).len(), 1);
        assert!(due(&mut store, &hourly.auth, 100_001).is_empty(), "held until 103_600");
        // NTP steps the clock back a day: the keys are refreshed now, not in a day and an hour.
        assert_eq!(due(&mut store, &hourly.auth, 100_000 - 86_400).len(), 1, "stepped back");
        // A configuration refreshing every minute replaces the hourly one (same key manager, the
        // same shared keys): its refresh_s applies at once.
        let minutely = config(60);
        assert_eq!(due(&mut store, &minutely.auth, 100_000 - 86_399).len(), 1, "an hour off: due now");
        assert!(due(&mut store, &minutely.auth, 100_000 - 86_398).is_empty(), "then every minute");
        assert_eq!(due(&mut store, &minutely.auth, 100_000 - 86_339).len(), 1);
    }

    #[test]
    fn a_worker_whose_write_lost_the_race_takes_the_winners_keys() {
        use crate::auth::keys::testkeys::jwk;
        use jsonwebtoken::Algorithm;
        let json = r#"{"key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"cluster": "km"}}]}"#;
        let config = crate::config::Config::from_json(json.as_bytes()).unwrap();
        let km = &config.auth.key_managers[0];
        let set = |kid: &str| serde_json::json!({"keys": [jwk("rsa-a.pem", Algorithm::RS256, kid)]}).to_string();
        let mut store = RivalWrite::default();
        let mut state = WorkerState::new(&config.auth);
        let first = Answer::Http { status: 200, body: set("old").into_bytes() };
        assert!(ingest(&mut store, km, &mut state.jwks[0], &first, 1_000));
        // This worker's next fetch answers; another worker's, with the rotated set, is written
        // first: this worker's write loses the compare-and-swap.
        store.rival = Some(set("new").into_bytes());
        let late = Answer::Http { status: 200, body: set("late").into_bytes() };
        assert!(ingest(&mut store, km, &mut state.jwks[0], &late, 1_010));
        // A second later the worker looks at shared data: the set there is not the one it holds.
        sync(&store, &config.auth, &mut state, 1_011);
        let keys = state.jwks[0].keys.as_ref().unwrap();
        assert!(keys.has_kid("new"), "the set in shared data, which every other worker uses");
    }

    #[test]
    fn a_worker_trusts_no_time_it_noted_in_the_clocks_future() {
        let mut fetched = FetchedKeys {
            keys: None,
            cas: None,
            checked_at: 10_000,
            last_attempt: Some(10_000),
            failed: false,
            in_flight: Some((7, 10_000)),
            fingerprint: None,
        };
        // The clock is stepped back an hour.
        assert!(fetched.may_fetch(6_400), "a request may fetch: its last fetch is not 'recent'");
        assert_eq!(fetched.under_way(6_400, 2_000), Some(7), "the fetch under way ends with its answer");
        fetched.in_flight = Some((7, 6_397));
        assert_eq!(fetched.under_way(6_400, 2_000), None, "it has answered by then");
    }

    #[test]
    fn the_refresh_lease_is_exclusive_on_the_first_tick_too() {
        let json = r#"{"key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"cluster": "km"}}]}"#;
        let config = crate::config::Config::from_json(json.as_bytes()).unwrap();
        // Steady state: the lease works (a rival that wrote in between wins alone).
        let mut store = Racing { inner: MemoryStore::default(), rival_writes: false };
        prepare(&mut store, &config.auth);
        assert_eq!(due(&mut store, &config.auth, 1_000).len(), 1);
        store.rival_writes = true;
        assert_eq!(due(&mut store, &config.auth, 2_000).len(), 0, "CAS held: the rival alone refreshes");
        // First tick after start: the due time was made at configure time, so taking it is a
        // compare-and-swap too (read as absent and written unconditionally, both workers fetched).
        let mut store = Racing { inner: MemoryStore::default(), rival_writes: false };
        prepare(&mut store, &config.auth);
        store.rival_writes = true;
        assert_eq!(due(&mut store, &config.auth, 1_000).len(), 0, "the rival took the lease");
        // Preparing again (another configuration, another worker) leaves a due time as it is.
        prepare(&mut store.inner, &config.auth);
        assert_eq!(due(&mut store, &config.auth, 1_000).len(), 0);
        // Without a due time (never prepared) nobody refreshes rather than everybody.
        assert!(due(&mut MemoryStore::default(), &config.auth, 1_000).is_empty());
        // A worker configuring reads no due time, another worker creates it and takes the first
        // refresh, then the first writes its own: the other's lease stands.
        let mut taken = MemoryStore::default();
        prepare(&mut taken, &config.auth);
        assert_eq!(due(&mut taken, &config.auth, 1_000).len(), 1);
        let leased = taken.data.values().next().map(|(value, _)| value.clone());
        let mut store = RivalWrite { rival: leased, ..Default::default() };
        prepare(&mut store, &config.auth);
        assert!(due(&mut store, &config.auth, 1_000).is_empty(), "the other worker refreshes alone");
    }
}
