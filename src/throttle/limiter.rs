//! Fixed-window counters over a compare-and-swap store, exact across workers.
//!
//! Windows are aligned to Unix time as envoyproxy/ratelimit aligns them: a window of `w` seconds
//! starts at `now / w * w`. A counter is updated only through compare-and-swap: read the slot and
//! its CAS token, compute, write back with the token; a concurrent writer makes the write fail
//! and the update is retried (at most `retries` times). Counters live in slots: a key hashes to
//! one of a fixed number of slots, and a slot holds the entries of the keys that hash to it; every
//! write drops the entries whose window has ended, so memory stays bounded by the slots and the
//! keys active in the current windows. Which slot a key hashes to depends on a secret of this
//! Envoy (random, made when the slots are), so that nobody can choose keys (client addresses, user
//! names) that fill the slot of another caller's counter.

use sha2::{Digest, Sha256};

use crate::host::{create_if_absent, SharedStore};

// Like Envoy's shared data, a write without a CAS token is unconditional: the counters therefore
// only write with the token of the value they read, and slots are created (empty) by
// [`prepare_slots`] before any request counts.

/// What a counter is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// Count one request if the limit allows it.
    Request,
    /// Only check whether the budget (of bytes) is spent; add nothing.
    Check,
    /// Add this many units whatever the limit (bytes that already passed).
    Add(u64),
    /// Take back one request counted in the window starting at this second (a later level
    /// denied it; the window is the take's, even if a new one has begun since).
    Undo(u64),
}

/// A counter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// Within the limit (for `Request`, the request was counted).
    pub allowed: bool,
    pub limit: u64,
    /// What is left in the window after this hit.
    pub remaining: u64,
    /// When the window ends (Unix seconds).
    pub reset_at: u64,
    /// The request's token can be given back where it was taken from (the window's count, or the
    /// block or lease that held it): false for a token a rate-limit service granted that its node
    /// could not hold (the service's clock disagreed, or its window had ended), or one counted
    /// strictly there. Such a token, given back, would be admitted a second time: the service
    /// never un-counts it, so it is dropped instead.
    pub returnable: bool,
}

/// Why a level could not count a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contended {
    /// The rate-limit service could not be reached or did not answer in time (or answered with a
    /// gRPC error: envoyproxy/ratelimit does when Redis is down).
    EngineUnavailable,
    /// The rate-limit service answered without the filter's limits (its configuration lacks the
    /// domain, or it is not a service that honours limit overrides) or unreadably.
    EngineUnusable,
    /// Other workers won the compare-and-swap every time (`cas_retries` exhausted).
    Retries,
    /// The slot holds [`MAX_ENTRIES_PER_SLOT`] keys counting in their current windows.
    SlotFull,
    /// The slot does not exist (it is created at configure time) or cannot be read.
    SlotMissing,
}

impl Count {
    /// Where the window this count was taken in starts, for windows of `window_s` seconds.
    pub fn window_start(&self, window_s: u64) -> u64 {
        self.reset_at.saturating_sub(window_s.max(1))
    }
}

impl Contended {
    pub fn name(self) -> &'static str {
        match self {
            Contended::EngineUnavailable => "engine_unavailable",
            Contended::EngineUnusable => "engine_unusable",
            Contended::Retries => "cas_retries_exhausted",
            Contended::SlotFull => "slot_full",
            Contended::SlotMissing => "slot_missing",
        }
    }
}

/// How counters are stored: the slot count, the compare-and-swap attempts per update, and the
/// secret that places keys in slots ([`prepare_slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub slots: u32,
    pub retries: u32,
    pub seed: SlotSeed,
}

/// The most compare-and-swap attempts `throttling.cas_retries` may ask for.
pub const MAX_RETRIES: u32 = 1000;

impl Settings {
    /// For an update that nothing may refuse and no request waits on (bytes charged after a
    /// response, a token given back, a block the rate-limit service granted): dropped after
    /// `retries` lost races, a bandwidth budget admitted past its limit (bytes never charged) and
    /// a counter stranded what it was given back. Each lost race is another worker's update
    /// landing, so the attempts end; at most [`MAX_RETRIES`].
    pub fn must_land(self) -> Self {
        Settings { retries: MAX_RETRIES, ..self }
    }
}

/// The secret mixed into a key's slot: random per Envoy process, the same for all its workers
/// (kept in shared data). Without it a client could compute offline which client addresses or
/// user names fall in the slot of an API's or an application's counter, and fill that slot with
/// [`MAX_ENTRIES_PER_SLOT`] keys of its own each window: every request counted there would then
/// be uncounted (`failure_mode`: refused with 900808 by default, or let through over the limit).
pub type SlotSeed = [u8; 16];

/// A slot holds at most this many entries. When a new key finds it full, entries of windows that
/// have ended go first (they are kept only so a worker whose clock lags cannot reopen a full
/// window); a slot with this many keys counting in their current windows cannot take another
/// ([`Contended::SlotFull`]). Capacity is therefore `counter_slots` x 256 keys active at once.
pub const MAX_ENTRIES_PER_SLOT: usize = 256;

/// Format version of a slot's value.
const MAGIC: u8 = 0xA1;

/// One counted entry in a slot: a fixed-size id of the key (the first 16 bytes of its SHA-256),
/// so a client-chosen key (a user name, an address) cannot make a slot grow by its length.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    id: [u8; 16],
    window_start: u64,
    window_s: u64,
    count: u64,
}

const ENTRY_LEN: usize = 16 + 8 * 3;

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    out.push(MAGIC);
    for entry in entries {
        out.extend_from_slice(&entry.id);
        out.extend_from_slice(&entry.window_start.to_le_bytes());
        out.extend_from_slice(&entry.window_s.to_le_bytes());
        out.extend_from_slice(&entry.count.to_le_bytes());
    }
    out
}

/// Decodes a slot; anything unreadable decodes as empty.
fn decode(bytes: &[u8]) -> Vec<Entry> {
    let Some((&MAGIC, body)) = bytes.split_first() else { return Vec::new() };
    body.chunks_exact(ENTRY_LEN)
        .filter_map(|chunk| {
            let (id, rest) = chunk.split_first_chunk::<16>()?;
            let (start, rest) = rest.split_first_chunk::<8>()?;
            let (window, rest) = rest.split_first_chunk::<8>()?;
            let (count, _) = rest.split_first_chunk::<8>()?;
            Some(Entry {
                id: *id,
                window_start: u64::from_le_bytes(*start),
                window_s: u64::from_le_bytes(*window),
                count: u64::from_le_bytes(*count),
            })
        })
        .collect()
}

fn key_id(key: &str) -> [u8; 16] {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 16];
    for (slot, byte) in id.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    id
}

/// Where a family of entries lives in shared data: request and byte counters, or the leases of
/// tokens a node holds from a rate-limit service (see [`super::cluster`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Counters,
    Leases,
}

impl Space {
    fn prefix(self) -> &'static str {
        match self {
            Space::Counters => "apim.rl",
            Space::Leases => "apim.lease",
        }
    }
}

/// The shared-data key of slot `index` (the slot count is in the name, so a reconfigured count
/// starts on fresh slots instead of misreading old ones).
fn slot_name(space: Space, index: u64, slots: u32) -> String {
    format!("{}.{slots}.{index}", space.prefix())
}

/// The shared-data key of the slot a counter key lives in: keyed by this Envoy's secret (an
/// unlucky key only shares a slot, never a count; a chosen one cannot pick its slot).
pub fn slot_of(space: Space, key: &str, settings: Settings) -> String {
    let digest = Sha256::new().chain_update(settings.seed).chain_update(key.as_bytes()).finalize();
    let mut head = [0u8; 8];
    for (slot, byte) in head.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    let slots = settings.slots.max(1);
    slot_name(space, u64::from_be_bytes(head) % u64::from(slots), slots)
}

/// The shared-data key holding the slot count in use in this Envoy.
const LAYOUT_KEY: &str = "apim.rl.layout";

/// The shared-data key holding this Envoy's [`SlotSeed`].
const SEED_KEY: &str = "apim.rl.seed";

/// This Envoy's slot seed: the one in shared data, else `fresh`, stored only if no VM stored one
/// first ([`create_if_absent`]), so every worker uses the first VM's, also when two configure at
/// once. `None` when no seed can be kept: then the slots are not made.
fn slot_seed(store: &mut dyn SharedStore, fresh: SlotSeed) -> Option<SlotSeed> {
    let stored = |store: &dyn SharedStore| {
        let (bytes, _) = store.shared_get(SEED_KEY).ok().flatten()?;
        SlotSeed::try_from(bytes.as_slice()).ok()
    };
    if let Some(seed) = stored(store) {
        return Some(seed);
    }
    let _ = create_if_absent(store, SEED_KEY, &fresh);
    stored(store)
}

/// A fresh random seed (from the host's random source; the clock's nanoseconds if it has none).
pub fn fresh_seed(clock_nanos: u64) -> SlotSeed {
    let mut seed = SlotSeed::default();
    if getrandom::fill(&mut seed).is_err() {
        log::error!(
            "no random source: counter slots are placed by a seed from the clock, which one who knows when \
             Envoy started may guess (and fill one key's slot with keys of its choosing)"
        );
        let digest = Sha256::digest(clock_nanos.to_le_bytes());
        for (slot, byte) in seed.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
    }
    seed
}

/// Creates the slots of `spaces` that do not exist yet (empty), before requests count: a slot is
/// then only ever written with the CAS token of the value read. Returns the slot count and the
/// slot seed to use (`fresh` when this Envoy has none yet).
///
/// The first configuration an Envoy process loads (of each gateway: `store` is the gateway's,
/// [`crate::host::GatewayScoped`]) fixes the slot count and the seed for the life of the process: a later configuration asking for another count keeps the one in use (so counts
/// stay exact across a live update, when old and new configurations serve side by side) and the
/// new count takes effect when Envoy restarts.
pub fn prepare_slots(store: &mut dyn SharedStore, slots: u32, spaces: &[Space], fresh: SlotSeed) -> (u32, SlotSeed) {
    let Some(seed) = slot_seed(store, fresh) else {
        // Slots never created are never written: every count is uncounted, and says so.
        log::error!("the counter slots' seed cannot be kept in shared data: no counter can count");
        return (slots.max(1), fresh);
    };
    let slots = slots.max(1);
    let stored_count = |store: &dyn SharedStore| {
        store
            .shared_get(LAYOUT_KEY)
            .ok()
            .flatten()
            .and_then(|(bytes, _)| <[u8; 4]>::try_from(bytes.as_slice()).ok())
            .map(u32::from_le_bytes)
            .filter(|count| *count > 0)
    };
    // The count the first VM stored, also when another configures at the same moment.
    let slots = match stored_count(store) {
        Some(count) => count,
        None => {
            let _ = create_if_absent(store, LAYOUT_KEY, &slots.to_le_bytes());
            stored_count(store).unwrap_or(slots)
        }
    };
    // An empty slot never replaces one a worker already counts in.
    let empty = encode(&[]);
    for space in spaces {
        for index in 0..u64::from(slots) {
            let name = slot_name(*space, index, slots);
            if matches!(store.shared_get(&name), Ok(None)) {
                let _ = create_if_absent(store, &name, &empty);
            }
        }
    }
    (slots, seed)
}

/// Which window an update applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The window `now` falls in, or the next one of the same key that a worker whose clock is a
    /// little ahead already opened (so a lagging clock never reopens a full window).
    Current,
    /// The window starting at this second, exactly (undoing a take made earlier, or storing what
    /// a call made in that window brought back).
    StartingAt(u64),
}

/// Applies a hit to the counter `key` (limit per `window_s`-second window) at `now`.
pub fn hit(
    store: &mut dyn SharedStore,
    key: &str,
    limit: u64,
    window_s: u64,
    hit: Hit,
    now: u64,
    settings: Settings,
) -> Result<Count, Contended> {
    let window = match hit {
        Hit::Undo(window_start) => Window::StartingAt(window_start),
        _ => Window::Current,
    };
    update(store, Space::Counters, key, window_s, window, now, settings, |current, reset_at| {
        let (allowed, next) = match hit {
            Hit::Request if current < limit => (true, current + 1),
            Hit::Request => (false, current),
            Hit::Check => (current < limit, current),
            Hit::Add(units) => (true, current.saturating_add(units)),
            Hit::Undo(_) => (true, current.saturating_sub(1)),
        };
        let returnable = allowed && hit == Hit::Request;
        (next, Count { allowed, limit, remaining: limit.saturating_sub(next), reset_at, returnable })
    })
}

/// Takes a block of tokens from the counter `key` (limit per `window_s`-second window) at `now`
/// for a request: `block(remaining)` says how many to take when `remaining` are left (at least
/// one), and at most what remains is taken. The request's count (after the whole block) and the
/// tokens taken (0 when denied).
pub fn take_block(
    store: &mut dyn SharedStore,
    key: &str,
    limit: u64,
    window_s: u64,
    now: u64,
    settings: Settings,
    block: impl Fn(u64) -> u64,
) -> Result<(Count, u64), Contended> {
    update(store, Space::Counters, key, window_s, Window::Current, now, settings, |current, reset_at| {
        let remaining = limit.saturating_sub(current);
        let taken = block(remaining).max(1).min(remaining);
        let next = current.saturating_add(taken);
        let allowed = taken > 0;
        let count = Count { allowed, limit, remaining: limit.saturating_sub(next), reset_at, returnable: allowed };
        (next, (count, taken))
    })
}

/// Where the window after the one holding `now` starts, for windows of `window_s` seconds: the
/// furthest window a clock a little ahead may have opened; one further off was opened by a clock
/// that was wrong (stepped back since) and counts for nothing.
pub fn next_window_start(now: u64, window_s: u64) -> u64 {
    let window_s = window_s.max(1);
    (now / window_s).saturating_add(1).saturating_mul(window_s)
}

/// A slot's entries that still count, as a writer at `now` keeps them. Keep the previous window
/// too: a worker whose clock lags a little must find it full rather than reopen it. A window more
/// than one window ahead of this clock was opened by a clock that was wrong (stepped back since):
/// it is dropped, or every request would count into it, and be refused, until this clock reached
/// it. Another key's entries are its own business: a clock stepped back since must not drop them
/// for it, or a key's count would hang on which keys share its slot; only windows long ended (one
/// more window of grace) give up their places. (Not generic: [`update`]'s instances share it.)
fn live_entries(bytes: &[u8], id: &[u8; 16], now: u64) -> Vec<Entry> {
    let mut entries = decode(bytes);
    entries.retain(|e| {
        let own = e.id == *id;
        let lasts = if own { 2 } else { 3 };
        now < e.window_start.saturating_add(e.window_s.saturating_mul(lasts))
            && (!own || e.window_start <= next_window_start(now, e.window_s))
    });
    entries
}

/// Reads the value of `key` in a window (0 when absent), lets `change` compute the next value and
/// an answer from it and the window's end, and writes the next value back by compare-and-swap,
/// retrying from a fresh read when another worker wrote in between. The answer of the attempt
/// that was written (or that changed nothing) is returned.
#[allow(clippy::too_many_arguments)]
pub fn update<R>(
    store: &mut dyn SharedStore,
    space: Space,
    key: &str,
    window_s: u64,
    window: Window,
    now: u64,
    settings: Settings,
    mut change: impl FnMut(u64, u64) -> (u64, R),
) -> Result<R, Contended> {
    let retries = settings.retries;
    let window_s = window_s.max(1);
    let own_window = now / window_s * window_s;
    let slot = slot_of(space, key, settings);
    let id = key_id(key);
    for _ in 0..retries.max(1) {
        let Ok(Some((bytes, cas))) = store.shared_get(&slot) else { return Err(Contended::SlotMissing) };
        let mut entries = live_entries(&bytes, &id, now);
        let window_start = match window {
            // The next window of this key (another worker's clock is a little ahead): count
            // into it.
            Window::Current => entries
                .iter()
                .filter(|e| e.id == id && e.window_s == window_s)
                .map(|e| e.window_start)
                .max()
                .map_or(own_window, |latest| latest.max(own_window)),
            Window::StartingAt(start) => start,
        };
        let reset_at = window_start.saturating_add(window_s);
        let position =
            entries.iter().position(|e| e.id == id && e.window_start == window_start && e.window_s == window_s);
        let current = position.and_then(|p| entries.get(p)).map_or(0, |e| e.count);
        let (next, answer) = change(current, reset_at);
        if next == current {
            return Ok(answer);
        }
        match position {
            Some(position) => {
                if let Some(entry) = entries.get_mut(position) {
                    entry.count = next;
                }
            }
            None => {
                if entries.len() >= MAX_ENTRIES_PER_SLOT {
                    // Ended windows give up their places before a key goes uncounted.
                    entries.retain(|e| now < e.window_start.saturating_add(e.window_s));
                }
                if entries.len() >= MAX_ENTRIES_PER_SLOT {
                    return Err(Contended::SlotFull);
                }
                entries.push(Entry { id, window_start, window_s, count: next });
            }
        }
        if store.shared_set(&slot, &encode(&entries), Some(cas)).is_ok() {
            return Ok(answer);
        }
    }
    Err(Contended::Retries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub use crate::host::testing::MemoryStore;

    /// Two VMs configuring at once both read no seed, no slot count and no slots. The one that
    /// writes second must keep what the first wrote and is already counting with: a seed or count
    /// of its own would place every key elsewhere (each worker counting a limit apart), and an
    /// empty slot written over a counted one would forget its count.
    #[test]
    fn a_vm_that_read_nothing_keeps_what_another_vm_made_meanwhile() {
        let mut store = MemoryStore::default();
        let (slots, seed) = prepare_slots(&mut store, 4, &[Space::Counters], [1; 16]);
        let settings = Settings { slots, retries: 3, seed };
        hit(&mut store, "k", 5, 60, Hit::Request, 0, settings).unwrap();
        // The second VM's writes, as it makes them after reading nothing.
        let _ = create_if_absent(&mut store, SEED_KEY, &[2; 16]);
        let _ = create_if_absent(&mut store, LAYOUT_KEY, &8u32.to_le_bytes());
        for index in 0..u64::from(slots) {
            let _ = create_if_absent(&mut store, &slot_name(Space::Counters, index, slots), &encode(&[]));
        }
        assert_eq!(prepare_slots(&mut store, 8, &[Space::Counters], [2; 16]), (4, seed));
        let count = hit(&mut store, "k", 5, 60, Hit::Request, 0, settings).unwrap();
        assert_eq!(count.remaining, 3, "the first VM's count is kept");
    }

    impl MemoryStore {
        pub fn prepared(slots: u32) -> MemoryStore {
            let mut store = MemoryStore::default();
            prepare_slots(&mut store, slots, &[Space::Counters], [0; 16]);
            store
        }
    }

    fn request(store: &mut MemoryStore, key: &str, limit: u64, window: u64, now: u64) -> Count {
        hit(store, key, limit, window, Hit::Request, now, Settings { slots: 64, retries: 20, seed: [0; 16] }).unwrap()
    }

    #[test]
    fn exactly_n_per_aligned_window() {
        let mut store = MemoryStore::prepared(64);
        let allowed = (0..10).filter(|_| request(&mut store, "k", 3, 60, 1_000).allowed).count();
        assert_eq!(allowed, 3);
        // 1_000 is in the window [960, 1020): the next window starts at 1020.
        assert!(!request(&mut store, "k", 3, 60, 1_019).allowed);
        let next = request(&mut store, "k", 3, 60, 1_020);
        assert!(next.allowed);
        assert_eq!((next.remaining, next.reset_at), (2, 1_080));
    }

    #[test]
    fn a_lagging_clock_cannot_reopen_a_full_window() {
        let mut store = MemoryStore::prepared(64);
        for _ in 0..3 {
            assert!(request(&mut store, "k", 3, 60, 1_000).allowed);
        }
        assert!(request(&mut store, "k", 3, 60, 1_020).allowed, "worker A is in the next window");
        // Worker B's clock still says 1_019: its request is counted in the newer window, never in
        // a reopened old one, so the newer window still allows exactly 3.
        assert!(request(&mut store, "k", 3, 60, 1_019).allowed);
        assert!(request(&mut store, "k", 3, 60, 1_020).allowed);
        assert!(!request(&mut store, "k", 3, 60, 1_019).allowed);
        assert!(!request(&mut store, "k", 3, 60, 1_021).allowed);
        // Without a newer window, the old one (kept for one more window) still reads full.
        let mut store = MemoryStore::prepared(64);
        for _ in 0..3 {
            assert!(request(&mut store, "j", 3, 60, 1_000).allowed);
        }
        assert!(!request(&mut store, "j", 3, 60, 1_019).allowed);
    }

    #[test]
    fn a_window_opened_by_a_clock_stepped_back_since_holds_no_counter() {
        // Ten a second. One request while the clock read an hour ahead; the clock is then stepped
        // back (NTP): each second admits ten again, instead of counting into the hour-ahead
        // window and refusing everything for an hour.
        let mut store = MemoryStore::prepared(64);
        let now = 1_800_000_000;
        assert!(request(&mut store, "hard_limit:k", 10, 1, now + 3_600).allowed);
        for second in 0..5 {
            let admitted = (0..12).filter(|_| request(&mut store, "hard_limit:k", 10, 1, now + second).allowed).count();
            assert_eq!(admitted, 10, "second {second}");
        }
        assert_eq!(request(&mut store, "hard_limit:k", 10, 1, now + 5).reset_at, now + 6);
        // One window ahead is a clock a little ahead, counted into as before.
        let mut store = MemoryStore::prepared(64);
        for _ in 0..3 {
            assert!(request(&mut store, "m", 3, 60, 1_020).allowed);
        }
        assert!(!request(&mut store, "m", 3, 60, 1_019).allowed);
    }

    #[test]
    fn counters_never_write_without_a_cas_token() {
        // Envoy treats a tokenless write as unconditional: two workers creating a slot would both
        // win. Slots are prepared up front; a missing slot is contention, not a blind write.
        let mut store = MemoryStore::default();
        assert_eq!(
            hit(&mut store, "k", 5, 60, Hit::Request, 0, Settings { slots: 4, retries: 3, seed: [0; 16] }),
            Err(Contended::SlotMissing)
        );
        assert!(store.data.is_empty());
        prepare_slots(&mut store, 4, &[Space::Counters], [0; 16]);
        assert_eq!(store.data.len(), 6, "four slots, the layout and the seed");
        assert!(request_in(&mut store, "k", 4).allowed);
    }

    fn request_in(store: &mut MemoryStore, key: &str, slots: u32) -> Count {
        hit(store, key, 5, 60, Hit::Request, 0, Settings { slots, retries: 3, seed: [0; 16] }).unwrap()
    }

    /// A key's count never hangs on which keys share its slot: another key counting while the
    /// clock is stepped back (NTP) leaves this key's windows as they were, as a slot of its own
    /// would (the throttle campaign found it with every key in one slot, seed 32).
    #[test]
    fn another_key_counting_under_a_stepped_back_clock_leaves_this_keys_windows() {
        for slots in [1, 64] {
            let mut store = MemoryStore::prepared(slots);
            let settings = Settings { slots, retries: 20, seed: [0; 16] };
            let mut at = |key: &str, now: u64| hit(&mut store, key, 1, 1, Hit::Request, now, settings).unwrap().allowed;
            assert!(at("b", 1_002), "b's first request in window 1002");
            assert!(at("a", 1_000), "a counts with the clock two seconds back");
            assert!(!at("b", 1_002), "{slots} slots: b's window 1002 is still full");
            assert!(at("a", 1_003) && at("b", 1_005) && at("a", 1_004), "{slots} slots");
            assert!(!at("b", 1_005), "{slots} slots: b's window 1005 is still full");
        }
    }

    #[test]
    fn keys_are_independent_even_in_one_slot() {
        let mut store = MemoryStore::prepared(1);
        for key in ["a", "b", "c", "d"] {
            assert!(
                hit(&mut store, key, 1, 60, Hit::Request, 0, Settings { slots: 1, retries: 20, seed: [0; 16] })
                    .unwrap()
                    .allowed,
                "{key}"
            );
        }
        assert!(
            !hit(&mut store, "a", 1, 60, Hit::Request, 0, Settings { slots: 1, retries: 20, seed: [0; 16] })
                .unwrap()
                .allowed
        );
        assert_eq!(store.data.len(), 3, "one slot (beside the layout and the seed) holds them all");
    }

    #[test]
    fn expired_windows_do_not_pile_up_and_slots_are_capped() {
        let mut store = MemoryStore::prepared(1);
        for (second, key) in (0..100).map(|i| (i * 120, format!("user-{i}"))) {
            hit(&mut store, &key, 5, 60, Hit::Request, second, Settings { slots: 1, retries: 20, seed: [0; 16] })
                .unwrap();
        }
        let entries =
            decode(&store.data[&slot_of(Space::Counters, "x", Settings { slots: 1, retries: 1, seed: [0; 16] })].0);
        // Another key's window gives up its place one window after it could last matter (a clock
        // stepped back): the key of two minutes ago stays, the older ones are gone.
        assert_eq!(entries.len(), 2, "only the keys active in the last three windows remain");
        // Long, client-chosen keys take a fixed 40 bytes each, and a slot holds a bounded number.
        let mut store = MemoryStore::prepared(1);
        for i in 0..MAX_ENTRIES_PER_SLOT {
            let key = format!("{}-{i}", "x".repeat(1000));
            hit(&mut store, &key, 5, 3600, Hit::Request, 0, Settings { slots: 1, retries: 20, seed: [0; 16] }).unwrap();
        }
        assert!(
            store.data[&slot_of(Space::Counters, "x", Settings { slots: 1, retries: 1, seed: [0; 16] })].0.len()
                <= 1 + MAX_ENTRIES_PER_SLOT * ENTRY_LEN
        );
        assert_eq!(
            hit(&mut store, "one-more", 5, 3600, Hit::Request, 0, Settings { slots: 1, retries: 20, seed: [0; 16] }),
            Err(Contended::SlotFull)
        );
    }

    #[test]
    fn entries_of_ended_windows_give_up_their_places_in_a_full_slot() {
        let settings = Settings { slots: 1, retries: 20, seed: [0; 16] };
        let mut store = MemoryStore::prepared(1);
        for i in 0..MAX_ENTRIES_PER_SLOT {
            hit(&mut store, &format!("old-{i}"), 5, 60, Hit::Request, 0, settings).unwrap();
        }
        // One window later the old entries are still kept (for lagging clocks) but no longer count.
        let later = hit(&mut store, "newcomer", 5, 60, Hit::Request, 60, settings);
        assert!(later.unwrap().allowed, "a stale entry made room");
        let entries =
            decode(&store.data[&slot_of(Space::Counters, "x", Settings { slots: 1, retries: 1, seed: [0; 16] })].0);
        assert_eq!(entries.len(), 1, "only the live key remains");
    }

    #[test]
    fn the_slot_of_a_key_depends_on_a_secret_of_the_envoy_kept_for_its_life() {
        let keys: Vec<String> = (0..64).map(|n| format!("custom:per_ip:2001%253Adb8%253A%253A{n:x}")).collect();
        let placed = |fresh: SlotSeed| {
            let mut store = MemoryStore::default();
            let (slots, seed) = prepare_slots(&mut store, 4096, &[Space::Counters], fresh);
            // A later configuration of the same Envoy keeps the seed.
            assert_eq!(prepare_slots(&mut store, 4096, &[Space::Counters], fresh_seed(0)).1, seed);
            let settings = Settings { slots, retries: 3, seed };
            keys.iter().map(|key| slot_of(Space::Counters, key, settings)).collect::<Vec<_>>()
        };
        // Two Envoys place the same keys in other slots: where a key goes cannot be computed
        // without this Envoy's seed.
        assert_ne!(placed(fresh_seed(0)), placed(fresh_seed(0)));
        assert_eq!(placed([7; 16]), placed([7; 16]));
    }

    #[test]
    fn the_first_slot_count_stays_for_the_life_of_the_process() {
        let mut store = MemoryStore::default();
        assert_eq!(prepare_slots(&mut store, 8, &[Space::Counters], [0; 16]).0, 8);
        for _ in 0..3 {
            hit(&mut store, "k", 3, 60, Hit::Request, 0, Settings { slots: 8, retries: 3, seed: [0; 16] }).unwrap();
        }
        // A live update asks for 16: the layout in use stays, so the window's count carries over.
        let (slots, _) = prepare_slots(&mut store, 16, &[Space::Counters], [1; 16]);
        assert_eq!(slots, 8);
        assert!(
            !hit(&mut store, "k", 3, 60, Hit::Request, 0, Settings { slots, retries: 3, seed: [0; 16] })
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn cas_conflicts_are_retried_then_reported() {
        let mut store = MemoryStore::prepared(64);
        store.conflicts = 3;
        assert!(request(&mut store, "k", 5, 60, 0).allowed, "three lost races, then a win");
        let mut store = MemoryStore::prepared(64);
        store.conflicts = 100;
        assert_eq!(
            hit(&mut store, "k", 5, 60, Hit::Request, 0, Settings { slots: 64, retries: 20, seed: [0; 16] }),
            Err(Contended::Retries)
        );
    }

    #[test]
    fn bytes_are_checked_then_added_and_requests_can_be_taken_back() {
        let settings = Settings { slots: 64, retries: 20, seed: [0; 16] };
        let mut store = MemoryStore::prepared(64);
        assert!(hit(&mut store, "b", 100, 60, Hit::Check, 0, settings).unwrap().allowed);
        hit(&mut store, "b", 100, 60, Hit::Add(60), 0, settings).unwrap();
        assert!(hit(&mut store, "b", 100, 60, Hit::Check, 0, settings).unwrap().allowed);
        hit(&mut store, "b", 100, 60, Hit::Add(60), 0, settings).unwrap();
        let over = hit(&mut store, "b", 100, 60, Hit::Check, 0, settings).unwrap();
        assert!(!over.allowed);
        assert_eq!(over.remaining, 0);
        assert!(hit(&mut store, "r", 1, 60, Hit::Request, 0, settings).unwrap().allowed);
        hit(&mut store, "r", 1, 60, Hit::Undo(0), 0, settings).unwrap();
        assert!(
            hit(&mut store, "r", 1, 60, Hit::Request, 0, settings).unwrap().allowed,
            "the undone request freed its place"
        );
    }

    #[test]
    fn garbage_in_a_slot_is_survivable() {
        let mut store = MemoryStore::prepared(64);
        let slot = slot_of(Space::Counters, "k", Settings { slots: 64, retries: 1, seed: [0; 16] });
        let mut garbage = vec![MAGIC];
        garbage.extend_from_slice(&[0xFF; ENTRY_LEN]);
        garbage.extend_from_slice(&[1, 2, 3]);
        store.data.insert(slot.clone(), (garbage, 7));
        assert!(request(&mut store, "k", 1, 60, 0).allowed);
        store.data.insert(slot, (vec![0, 1, 2], 9));
        assert!(request(&mut store, "k", 1, 60, 0).allowed);
    }

    #[test]
    fn a_counters_slot_name_and_bytes_are_what_earlier_modules_read() {
        // Old and new modules count together during an upgrade only if both place and encode a
        // counter alike: a change here restarts counts and needs new slot names (ARCHITECTURE).
        let mut store = MemoryStore::prepared(64);
        let settings = Settings { slots: 64, retries: 1, seed: [7; 16] };
        hit(&mut store, "api:/shop:1.0", 10, 60, Hit::Request, 120, settings).unwrap();
        let slot = slot_of(Space::Counters, "api:/shop:1.0", settings);
        let (bytes, _) = store.data.get(&slot).unwrap();
        let digest = crate::hashing::hex(&Sha256::digest(bytes));
        assert_eq!(
            (slot.as_str(), digest.as_str()),
            ("apim.rl.64.31", "c6b7c1519dcbdbe93f12ff2ef10fe79d91f498a1ddb6eb66cfefd0d2abdd7b23")
        );
    }
}
