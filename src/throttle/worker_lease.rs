//! Blocks of a counter's tokens that one worker holds and spends without touching shared data.
//!
//! The same design serves both levels: a node-local counter's blocks come from its count in
//! shared data (below); a cluster-wide counter's from the tokens the node's lease holds (see
//! [`super::cluster`]), which the node took from the rate-limit service in blocks of its own.
//!
//! A node-local counter lives in shared data (see [`super::limiter`]): exact across workers, at
//! the price of a read and a compare-and-swap write per request and level. A worker can instead
//! take a block of tokens in one update (the count in shared data grows by the whole block) and
//! spend them one request at a time in its own memory. The count in shared data is never below
//! what the workers admitted, so never more than the limit is admitted in a window.
//!
//! **Blocks shrink near the limit.** A block is `share_percent` of what remains in the window when
//! it is taken, at most `max`; when that is one token or less the worker counts each request in
//! shared data, as without leases, so the last tokens of a window go to whichever worker asks
//! first, in order, and small limits (under `100 / share_percent`) are counted request by request
//! exactly as before.
//!
//! **What it costs.** Fewer than the limit are admitted only by the tokens a worker still holds
//! when its traffic for that counter stops before the window ends: at most one block per worker and
//! counter, each a `share_percent` of what remained when it was taken. The `RateLimit-Remaining` a
//! worker reports is what remained when it last took a block, less what it has spent since (exact
//! with one worker; other workers' spending since is not seen).
//!
//! Leases live per worker (VM) and are lost with it: a configuration update or a worker that stops
//! loses at most the tokens it held. A worker holds at most [`MAX_LEASES`] counters' blocks; a
//! counter that finds the table full (after leases of ended windows and spent leases are dropped,
//! which is looked at once a second at most) is counted in shared data request by request.

use std::collections::HashMap;

use super::limiter::{next_window_start, Count};

/// The most counters a worker holds blocks for at once (about 150 bytes each: 2.4 MB at most).
pub const MAX_LEASES: usize = 16_384;

/// How big the blocks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leasing {
    /// Percentage of what remains in the window taken as one block (1 to 100).
    pub share_percent: u32,
    /// The largest block; 0 or 1 turns leases off.
    pub max: u32,
}

impl Leasing {
    /// The block to take when `remaining` tokens remain in the window (at least 1: the request's
    /// own token).
    pub fn block(self, remaining: u64) -> u64 {
        let share = remaining.saturating_mul(u64::from(self.share_percent)) / 100;
        share.clamp(1, u64::from(self.max).max(1))
    }

    pub fn enabled(self) -> bool {
        self.max > 1
    }
}

/// The tokens a worker holds for one counter in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    limit: u64,
    window_s: u64,
    window_start: u64,
    held: u64,
    /// What remained in shared data after the block was taken (the block included).
    remaining_after_take: u64,
}

impl Lease {
    /// Whether this block counts for a counter of `limit` per `window_s`-second window (a policy
    /// changed meanwhile is another counter).
    fn is_of(&self, limit: u64, window_s: u64) -> bool {
        self.limit == limit && self.window_s == window_s.max(1)
    }

    fn reset_at(&self) -> u64 {
        self.window_start.saturating_add(self.window_s)
    }

    /// Whether its tokens can be spent at `now`: its window has not ended, and it is the current
    /// window or the next (one a worker whose clock is a little ahead opened). A block of a window
    /// further ahead was taken while the clock read ahead (stepped back since): shared data no
    /// longer counts that window, so its tokens would be admitted on top of the current window's.
    fn spendable(&self, now: u64) -> bool {
        now < self.reset_at() && self.window_start <= next_window_start(now, self.window_s)
    }

    fn count(&self) -> Count {
        Count {
            allowed: true,
            limit: self.limit,
            // Never above the limit, whatever the count the block was taken with said.
            remaining: self.remaining_after_take.saturating_add(self.held).min(self.limit),
            reset_at: self.reset_at(),
            returnable: true,
        }
    }
}

/// One worker's blocks, by counter key.
#[derive(Debug, Default)]
pub struct WorkerLeases {
    leases: HashMap<String, Lease>,
    /// When the full table was last swept: at most once a second, whatever asks for room.
    swept_at: Option<u64>,
    /// Leases looked at by sweeps of the table (what tests measure).
    #[cfg(test)]
    swept: usize,
}

impl WorkerLeases {
    /// Spends a held token of `key` (limit per `window_s`-second window) at `now`: the request's
    /// count, or `None` when this worker holds none for the current window.
    pub fn spend(&mut self, key: &str, limit: u64, window_s: u64, now: u64) -> Option<Count> {
        let lease = self.leases.get_mut(key)?;
        let usable = lease.is_of(limit, window_s) && lease.spendable(now);
        if !usable || lease.held == 0 {
            return None;
        }
        lease.held -= 1;
        Some(lease.count())
    }

    /// Whether this worker can hold a block of `key` (it holds one, or the table has room once
    /// leases of ended windows and spent leases are dropped). A full table is swept at most once
    /// a second: a table full of live blocks (a client sending from many addresses to a
    /// `$clientIp` policy) would otherwise be walked whole by every request without a block.
    pub fn room_for(&mut self, key: &str, now: u64) -> bool {
        if self.leases.len() < MAX_LEASES || self.leases.contains_key(key) {
            return true;
        }
        // A sweep noted at another second (the clock was stepped back since, too) is not recent.
        if self.swept_at == Some(now) {
            return false;
        }
        self.swept_at = Some(now);
        #[cfg(test)]
        {
            self.swept += self.leases.len();
        }
        self.leases.retain(|_, lease| lease.spendable(now) && lease.held > 0);
        self.leases.len() < MAX_LEASES
    }

    /// Records a block of `taken` tokens just counted in shared data for `key`, of which the
    /// request that took it spends one; `count` is the shared counter's answer to the take. The
    /// request's count (what remains includes the tokens now held). A block of one token (counted
    /// request by request) ends the counter's lease, so a token given back afterwards goes back to
    /// shared data. Call [`Self::room_for`] before taking a block: without room, the tokens
    /// beyond the request's are not held.
    pub fn took(&mut self, key: &str, window_s: u64, count: Count, taken: u64) -> Count {
        if taken <= 1 || !count.allowed {
            self.leases.remove(key);
            return count;
        }
        let window_s = window_s.max(1);
        let lease = Lease {
            limit: count.limit,
            window_s,
            window_start: count.reset_at.saturating_sub(window_s),
            held: taken - 1,
            remaining_after_take: count.remaining,
        };
        if let Some(existing) = self.leases.get_mut(key) {
            *existing = lease;
        } else if self.leases.len() < MAX_LEASES {
            self.leases.insert(key.to_string(), lease);
        } else {
            return count;
        }
        lease.count()
    }

    /// Takes back one token of `key` (limit per `window_s`-second window) spent in the window
    /// starting at `window_start` (a later level denied the request); false when this worker
    /// holds no lease of that counter in that window (the token was counted in shared data and
    /// goes back there). A lease of the same key under another limit or window length (the
    /// policy changed meanwhile) is another counter: its tokens are counted in another entry.
    pub fn give_back(&mut self, key: &str, limit: u64, window_s: u64, window_start: u64) -> bool {
        match self.leases.get_mut(key) {
            Some(lease) if lease.is_of(limit, window_s) && lease.window_start == window_start => {
                lease.held = lease.held.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// How many counters this worker holds leases for.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASING: Leasing = Leasing { share_percent: 5, max: 100 };

    fn taken(limit: u64, remaining: u64, reset_at: u64) -> Count {
        Count { allowed: true, limit, remaining, reset_at, returnable: true }
    }

    #[test]
    fn blocks_are_a_share_of_what_remains_between_one_and_the_largest() {
        assert_eq!(LEASING.block(0), 1);
        assert_eq!(LEASING.block(39), 1, "small limits count request by request");
        assert_eq!(LEASING.block(40), 2);
        assert_eq!(LEASING.block(1000), 50);
        assert_eq!(LEASING.block(u64::MAX), 100);
        assert_eq!(Leasing { share_percent: 100, max: 1 }.block(1000), 1);
        assert_eq!(Leasing { share_percent: 100, max: 0 }.block(1000), 1);
        assert!(!Leasing { share_percent: 5, max: 1 }.enabled());
    }

    #[test]
    fn a_block_is_spent_token_by_token_within_its_window_and_limit() {
        let mut leases = WorkerLeases::default();
        // A block of 4 taken at 60..120: the count went to 10 of 100, the request spent one.
        let first = leases.took("k", 60, taken(100, 90, 120), 4);
        assert_eq!(first.remaining, 93, "the request's count includes what the worker holds");
        let remaining: Vec<u64> = (0..3).filter_map(|_| leases.spend("k", 100, 60, 62)).map(|c| c.remaining).collect();
        assert_eq!(remaining, [92, 91, 90], "what remained at the take, plus what is still held");
        assert_eq!(leases.spend("k", 100, 60, 62), None, "spent");

        leases.took("k", 60, taken(100, 80, 120), 3);
        assert_eq!(leases.spend("k", 100, 60, 120), None, "the window ended");
        assert_eq!(leases.spend("k", 50, 60, 63), None, "another limit is another counter");
        assert_eq!(leases.spend("k", 100, 30, 63), None, "another window length too");
        assert_eq!(leases.spend("other", 100, 60, 63), None);
        assert!(leases.spend("k", 100, 60, 63).is_some_and(|c| c.allowed && c.reset_at == 120));
    }

    #[test]
    fn a_block_of_one_ends_the_lease_so_given_back_tokens_return_to_shared_data() {
        let mut leases = WorkerLeases::default();
        leases.took("k", 60, taken(100, 50, 120), 3);
        assert!(leases.give_back("k", 100, 60, 60), "a lease of that window takes it back");
        assert!(!leases.give_back("k", 100, 60, 0), "not one of another window");
        // The policy changed between the take and the give back: its tokens count in another
        // entry of shared data (another window length), or under another limit.
        assert!(!leases.give_back("k", 100, 30, 60), "not one of another window length");
        assert!(!leases.give_back("k", 50, 60, 60), "not one of another limit");
        leases.took("k", 60, taken(100, 10, 120), 1);
        assert!(leases.is_empty());
        assert!(!leases.give_back("k", 100, 60, 60), "counted in shared data: given back there");
        leases.took("k", 60, Count { allowed: false, limit: 100, remaining: 0, reset_at: 120, returnable: false }, 5);
        assert!(leases.is_empty(), "a denied take holds nothing");
    }

    #[test]
    fn the_table_is_bounded_and_ended_windows_make_room() {
        let mut leases = WorkerLeases::default();
        for i in 0..MAX_LEASES {
            assert!(leases.room_for(&format!("k{i}"), 61));
            leases.took(&format!("k{i}"), 60, taken(100, 50, 120), 3);
        }
        assert!(leases.room_for("k0", 61), "a held counter takes its next block in place");
        assert!(!leases.room_for("late", 61), "full: counted in shared data");
        let count = leases.took("late", 60, taken(100, 50, 120), 3);
        assert_eq!((leases.len(), count.remaining), (MAX_LEASES, 50), "nothing held, nothing reported held");
        assert_eq!(leases.spend("late", 100, 60, 61), None);
        assert_eq!(leases.spend("k0", 100, 60, 61).map(|c| c.remaining), Some(51));
        assert_eq!(leases.spend("k0", 100, 60, 61).map(|c| c.remaining), Some(50));
        assert!(!leases.room_for("late", 61), "the full table was swept this second already");
        assert!(leases.room_for("late", 62), "a spent lease makes room");
        assert_eq!(leases.len(), MAX_LEASES - 1);
        leases.took("late", 60, taken(100, 50, 120), 3);
        assert_eq!(leases.len(), MAX_LEASES);
        assert!(leases.room_for("next", 120), "ended windows dropped");
        assert!(leases.is_empty());
        leases.took("next", 60, taken(100, 50, 180), 3);
        assert!(leases.spend("next", 100, 60, 121).is_some());
    }

    /// A client that sends each request from another address (a `$clientIp` custom policy) gives
    /// each a counter of its own, and each takes a block: the table fills with live blocks. A
    /// counter without a block must then not sweep the whole table on every request (16,384
    /// leases looked at per request, for every counter counted request by request).
    #[test]
    fn a_table_full_of_live_blocks_is_swept_at_most_once_a_second() {
        let mut leases = WorkerLeases::default();
        for i in 0..MAX_LEASES {
            assert!(leases.room_for(&format!("ip-{i}"), 61));
            leases.took(&format!("ip-{i}"), 60, taken(1000, 900, 120), 50);
        }
        assert_eq!(leases.swept, 0, "not full yet: no sweep");
        for i in 0..1_000 {
            assert!(!leases.room_for(&format!("another-{i}"), 61), "full of live blocks");
        }
        assert!(leases.swept <= MAX_LEASES, "{} leases looked at for 1,000 requests", leases.swept);
        // A second later the table is looked at again; once the blocks' window ended, it has room.
        assert!(!leases.room_for("later", 62));
        assert!(leases.room_for("much-later", 120));
    }
}
