//! Fixed-window counters over a compare-and-swap store, exact across workers.
//!
//! Windows are aligned to Unix time as envoyproxy/ratelimit aligns them: a window of `w` seconds
//! starts at `now / w * w`. A counter is updated only through compare-and-swap: read the slot and
//! its CAS token, compute, write back with the token; a concurrent writer makes the write fail
//! and the update is retried (at most `retries` times). Counters live in slots: a key hashes to
//! one of a fixed number of slots, and a slot holds the entries of the keys that hash to it; every
//! write drops the entries whose window has ended, so memory stays bounded by the slots and the
//! keys active in the current windows.

/// A compare-and-swap key-value store: proxy-wasm shared data in the filter, a map in tests.
pub trait CasStore {
    /// The value and its CAS token.
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)>;
    /// Writes when `cas` still matches; `false` on a mismatch (or any failure).
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// What a counter is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// Count one request if the limit allows it.
    Request,
    /// Only check whether the budget (of bytes) is spent; add nothing.
    Check,
    /// Add this many units whatever the limit (bytes that already passed).
    Add(u64),
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
}

/// The store could not be updated within the retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contended;

/// How counters are stored: the slot count and the compare-and-swap attempts per update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub slots: u32,
    pub retries: u32,
}

/// One counted entry in a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: String,
    window_start: u64,
    window_s: u64,
    count: u64,
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let key = entry.key.as_bytes();
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&entry.window_start.to_le_bytes());
        out.extend_from_slice(&entry.window_s.to_le_bytes());
        out.extend_from_slice(&entry.count.to_le_bytes());
    }
    out
}

fn decode(mut bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let take_u64 = |bytes: &mut &[u8]| -> Option<u64> {
        let (head, rest) = bytes.split_first_chunk::<8>()?;
        *bytes = rest;
        Some(u64::from_le_bytes(*head))
    };
    while let Some((length, rest)) = bytes.split_first_chunk::<4>() {
        let length = u32::from_le_bytes(*length) as usize;
        let Some(key) = rest.get(..length) else { break };
        let Ok(key) = String::from_utf8(key.to_vec()) else { break };
        bytes = &rest[length..];
        let (Some(window_start), Some(window_s), Some(count)) =
            (take_u64(&mut bytes), take_u64(&mut bytes), take_u64(&mut bytes))
        else {
            break;
        };
        entries.push(Entry { key, window_start, window_s, count });
    }
    entries
}

/// The shared-data key of the slot a counter key lives in (FNV-1a: spreading keys needs no
/// cryptography, and an unlucky key only shares a slot, never a count).
pub fn slot_of(key: &str, slots: u32) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("apim.rl.{}", hash % u64::from(slots.max(1)))
}

/// Applies a hit to the counter `key` (limit per `window_s`-second window) at `now`.
pub fn hit(
    store: &mut dyn CasStore,
    key: &str,
    limit: u64,
    window_s: u64,
    hit: Hit,
    now: u64,
    settings: Settings,
) -> Result<Count, Contended> {
    let Settings { slots, retries } = settings;
    let window_s = window_s.max(1);
    let window_start = now / window_s * window_s;
    let reset_at = window_start + window_s;
    let slot = slot_of(key, slots);
    for _ in 0..retries.max(1) {
        let (bytes, cas) = store.get(&slot).unwrap_or_default();
        let mut entries: Vec<Entry> =
            decode(&bytes).into_iter().filter(|e| now < e.window_start + e.window_s).collect();
        let position =
            entries.iter().position(|e| e.key == key && e.window_start == window_start && e.window_s == window_s);
        let current = position.and_then(|p| entries.get(p)).map_or(0, |e| e.count);
        let (allowed, next) = match hit {
            Hit::Request if current < limit => (true, current + 1),
            Hit::Request => (false, current),
            Hit::Check => (current < limit, current),
            Hit::Add(units) => (true, current.saturating_add(units)),
        };
        let count = Count { allowed, limit, remaining: limit.saturating_sub(next), reset_at };
        if next == current && position.is_some() {
            // Nothing to write.
            return Ok(count);
        }
        match position.and_then(|p| entries.get_mut(p)) {
            Some(entry) => entry.count = next,
            None if next > 0 => entries.push(Entry { key: key.to_string(), window_start, window_s, count: next }),
            None => return Ok(count),
        }
        if store.set(&slot, &encode(&entries), cas) {
            return Ok(count);
        }
    }
    Err(Contended)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An in-memory store; `conflicts` makes the next N writes fail as if another worker won.
    #[derive(Default)]
    pub struct MemoryStore {
        pub data: HashMap<String, (Vec<u8>, u32)>,
        pub conflicts: u32,
    }

    impl CasStore for MemoryStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
            self.data.get(key).map(|(value, cas)| (value.clone(), Some(*cas)))
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            if self.conflicts > 0 {
                self.conflicts -= 1;
                let entry = self.data.entry(key.to_string()).or_default();
                entry.1 += 1;
                return false;
            }
            let current = self.data.get(key).map(|(_, cas)| *cas);
            if current.is_some() && cas != current {
                return false;
            }
            self.data.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            true
        }
    }

    fn request(store: &mut MemoryStore, key: &str, limit: u64, window: u64, now: u64) -> Count {
        hit(store, key, limit, window, Hit::Request, now, Settings { slots: 64, retries: 20 }).unwrap()
    }

    #[test]
    fn exactly_n_per_aligned_window() {
        let mut store = MemoryStore::default();
        let allowed = (0..10).filter(|_| request(&mut store, "k", 3, 60, 1_000).allowed).count();
        assert_eq!(allowed, 3);
        // 1_000 is in the window [960, 1020): the next window starts at 1020.
        assert!(!request(&mut store, "k", 3, 60, 1_019).allowed);
        let next = request(&mut store, "k", 3, 60, 1_020);
        assert!(next.allowed);
        assert_eq!((next.remaining, next.reset_at), (2, 1_080));
    }

    #[test]
    fn keys_are_independent_even_in_one_slot() {
        let mut store = MemoryStore::default();
        for key in ["a", "b", "c", "d"] {
            assert!(
                hit(&mut store, key, 1, 60, Hit::Request, 0, Settings { slots: 1, retries: 20 }).unwrap().allowed,
                "{key}"
            );
        }
        assert!(!hit(&mut store, "a", 1, 60, Hit::Request, 0, Settings { slots: 1, retries: 20 }).unwrap().allowed);
        assert_eq!(store.data.len(), 1, "one slot holds them all");
    }

    #[test]
    fn expired_windows_do_not_pile_up() {
        let mut store = MemoryStore::default();
        for (second, key) in (0..100).map(|i| (i * 60, format!("user-{i}"))) {
            hit(&mut store, &key, 5, 60, Hit::Request, second, Settings { slots: 1, retries: 20 }).unwrap();
        }
        let entries = decode(&store.data["apim.rl.0"].0);
        assert_eq!(entries.len(), 1, "only the key active in the current window remains");
    }

    #[test]
    fn cas_conflicts_are_retried_then_reported() {
        let mut store = MemoryStore { conflicts: 3, ..Default::default() };
        assert!(request(&mut store, "k", 5, 60, 0).allowed, "three lost races, then a win");
        let mut store = MemoryStore { conflicts: 100, ..Default::default() };
        assert_eq!(hit(&mut store, "k", 5, 60, Hit::Request, 0, Settings { slots: 64, retries: 20 }), Err(Contended));
    }

    #[test]
    fn bytes_are_checked_then_added() {
        let mut store = MemoryStore::default();
        assert!(hit(&mut store, "b", 100, 60, Hit::Check, 0, Settings { slots: 64, retries: 20 }).unwrap().allowed);
        hit(&mut store, "b", 100, 60, Hit::Add(60), 0, Settings { slots: 64, retries: 20 }).unwrap();
        assert!(hit(&mut store, "b", 100, 60, Hit::Check, 0, Settings { slots: 64, retries: 20 }).unwrap().allowed);
        hit(&mut store, "b", 100, 60, Hit::Add(60), 0, Settings { slots: 64, retries: 20 }).unwrap();
        let over = hit(&mut store, "b", 100, 60, Hit::Check, 0, Settings { slots: 64, retries: 20 }).unwrap();
        assert!(!over.allowed);
        assert_eq!(over.remaining, 0);
    }

    #[test]
    fn garbage_in_a_slot_is_survivable() {
        let mut store = MemoryStore::default();
        store.data.insert(slot_of("k", 64), (vec![255, 255, 255, 255, 1, 2], 1));
        assert!(request(&mut store, "k", 1, 60, 0).allowed);
    }
}
