//! Counting across Envoy nodes on a rate-limit service (Envoy's RLS v3 protocol, served by
//! envoyproxy/ratelimit with Redis): never more than a limit admitted in a window, whichever
//! node and worker the requests reach, with far fewer calls than requests.
//!
//! **Tokens, one increment each, near the limit.** A call that wants k tokens of a counter sends k
//! copies of the counter's descriptor, each adding 1. The service increments its counter once per
//! copy and answers OK for each increment that stayed within the limit, so across all nodes
//! exactly the first N increments of a window are granted, and an over-limit answer wastes
//! nothing. Every increment costs the service (and Redis) work, so far from the limit, while the
//! service last said more than ten of the largest blocks remain, a block is asked for as one
//! increment of k. Such a block is refused whole if the count went past N - k in the meantime
//! (other nodes took more than nine tenths of what remained between two of this node's calls);
//! its tokens below the limit are then lost, at most `lease_max` - 1 per counter and window for
//! the whole cluster (the first such refusal takes the count past the limit). Never more than N
//! either way. Each descriptor carries its limit as the request's override, so the service's
//! configuration needs only the domain.
//!
//! **Leased counting** (the default). A node keeps a lease per counter and window in shared
//! data: the tokens it holds and what the service last said remains. A request spends a held
//! token with no call; with none held it asks for a block of `lease_share_percent` of what
//! remains (at least 1, at most `lease_max`), so blocks shrink to single tokens near the limit.
//! When a request leaves the lease at half a block or less, the next block is asked for in the
//! background (a [`Refill`]: the call is the root context's, the request goes on), so under
//! steady traffic requests do not wait for the service at all. One block is asked for at a time:
//! requests that find the lease empty while a block is on its way ask for their own token only,
//! so a node holds at most one and a half blocks. A token taken for a request that a later level
//! denied goes back to the lease (WSO2 counts a denied request nowhere) when the lease could have
//! held it: a token of a grant that was not held (see **Windows**) is dropped, since it may
//! belong to another of the service's windows and the service never un-counts. Once the service says
//! nothing remains, the node denies locally until the window ends: the service never un-counts,
//! so no token can come back there.
//!
//! **Worker blocks** (one design at both levels: [`super::worker_lease`]). A worker takes its own
//! block from the node's lease in the same update that spends the request's token: the worker's
//! share of what remains for the node (what the service last said, plus what the node holds), at
//! most half of what the node holds, so the other workers still find tokens and the node's next
//! block is asked for in time. It spends the block with no shared-data access; a token a later
//! level gives back goes to the worker's block of that window, else to the node's lease. Near
//! the limit blocks are single tokens, spent from the node's lease request by request. A worker
//! whose traffic for the counter stops leaves at most its one block unspent, besides what its
//! node holds.
//!
//! **A failing service.** A call that fails (no answer within `timeout_ms`, a gRPC error) or is
//! answered unusably is remembered in the node's shared data, and for the rest of that second
//! and the next no request of the node calls: each level that would call follows `failure_mode`
//! at once (held tokens are still spent). The remaining cluster-wide levels of the request whose
//! call failed are among them, so a request waits for at most one failed call, and a node calls a
//! failing service about once a second instead of once per request and level.
//!
//! **Strict counting.** One call per request and cluster-wide level, nothing held, as Envoy's
//! own rate-limit filter does. A token cannot be given back: a request denied at a later level
//! stays counted at the cluster-wide levels before it.
//!
//! **Windows.** The service counts in windows of its units (second ... year) aligned to Unix time,
//! as the node does. A window that is a whole fraction of a unit (WSO2's "100 per 5 minutes")
//! puts its start in the descriptor, so each of its windows has its own counter inside the
//! unit's. Tokens are held only for the window the call was made in, and only when the service's
//! clock agrees with the node's (its `duration_until_reset`): a block that arrives after the
//! window ended, or from a service whose window differs, serves its own request and nothing more.

use prost::Message;
use sha2::{Digest, Sha256};

use super::limiter::{self, Contended, Count, Settings, Space, Window};
use super::plan::Counter;
use super::rls;
use super::settings::RateLimitService;
use super::worker_lease::{Leasing, WorkerLeases};
use crate::hashing::hex;
use crate::host::{Answer, Call, SharedStore, Step};
use crate::schema::Counting;

/// Counts cluster-wide counters on the rate-limit service, with leases in this Envoy's shared
/// data.
#[derive(Clone, Copy, Debug)]
pub struct ClusterEngine<'a> {
    pub service: &'a RateLimitService,
    /// Where leases are stored (the counters' slot count and CAS retries).
    pub leases: Settings,
}

/// A call under way for a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The node's window when the call was made.
    window_start: u64,
    /// Tokens asked for.
    requested: u32,
    /// Asked for as one increment (far from the limit) rather than one increment per token.
    whole: bool,
    /// The call asked for the lease's block (its answer clears the lease's mark).
    block: bool,
    called_at: u64,
}

impl Pending {
    /// The call asks for the node's next block (not one request's token while a block is on its
    /// way).
    pub fn asks_for_block(&self) -> bool {
        self.block
    }
}

/// A block asked for in the background: the call, and what its answer settles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refill {
    pub call: Call,
    pub counter: Counter,
    pub pending: Pending,
}

/// A node's lease of one counter in one window, packed into a counter value: the tokens held
/// (bits 0-23), a block asked for and not answered yet (bits 24-31: the second it was asked, as
/// `second % 255 + 1`; 0 for none), and what the service last said remains, plus one (bits
/// 32-63; 0: not asked yet in this window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lease {
    held: u32,
    block_asked: u8,
    remaining: Option<u32>,
}

/// The most tokens a lease holds (24 bits).
const MAX_HELD: u32 = 0x00FF_FFFF;

impl Lease {
    fn unpack(value: u64) -> Lease {
        let held = u32::try_from(value & u64::from(MAX_HELD)).unwrap_or(0);
        let block_asked = u8::try_from((value >> 24) & 0xFF).unwrap_or(0);
        let seen = u32::try_from(value >> 32).unwrap_or(0);
        Lease { held, block_asked, remaining: seen.checked_sub(1) }
    }

    fn pack(self) -> u64 {
        let seen = self.remaining.map_or(0, |remaining| remaining.min(u32::MAX - 1) + 1);
        (u64::from(seen) << 32) | (u64::from(self.block_asked) << 24) | u64::from(self.held.min(MAX_HELD))
    }

    /// Takes up to `wanted` held tokens (for a worker's block): how many were taken.
    fn spend_block(&mut self, wanted: u32) -> u32 {
        let taken = wanted.min(self.held);
        self.held -= taken;
        taken
    }

    /// Spends a held token, if any.
    fn spend(&mut self) -> bool {
        match self.held.checked_sub(1) {
            Some(held) => {
                self.held = held;
                true
            }
            None => false,
        }
    }

    /// Takes what an answer says remains in the window: the lower of it and what an earlier
    /// answer said, as answers may be read in another order than the service counted their calls
    /// and the service never un-counts within a window (an older, higher figure would have the
    /// node report more remaining than there is, and ask for blocks the service then refuses).
    fn heard(&mut self, remaining: u32) {
        self.remaining = Some(self.remaining.map_or(remaining, |known| known.min(remaining)));
    }

    fn hold(&mut self, tokens: u32) {
        self.held = self.held.saturating_add(tokens).min(MAX_HELD);
    }

    /// What remains for this node to admit: what the service last said, plus what it holds.
    fn available(self) -> u64 {
        u64::from(self.remaining.unwrap_or(0)) + u64::from(self.held)
    }

    fn stamp(now: u64) -> u8 {
        u8::try_from(now % 255 + 1).unwrap_or(1)
    }

    /// Whether a block asked for is still on its way (asked less than the call's timeout, plus a
    /// second, ago): requests that find the lease empty meanwhile ask for their own token only,
    /// so a node holds at most one block's worth of tokens at a time.
    fn block_on_its_way(self, now: u64, timeout_ms: u32) -> bool {
        if self.block_asked == 0 {
            return false;
        }
        let age_s = (u64::from(Lease::stamp(now)) + 255 - u64::from(self.block_asked)) % 255;
        age_s.saturating_mul(1000) <= u64::from(timeout_ms).saturating_add(1000)
    }
}

/// What a lease update found.
enum Found {
    /// `taken` held tokens were spent (the request's, and the rest of the worker's block);
    /// `refill`: the lease is low and the next block is to be asked for.
    Spent { lease: Lease, taken: u32, refill: Option<(u32, bool)> },
    /// Nothing held, and the service said nothing remains in this window.
    Exhausted,
    /// Nothing held: ask for this many tokens (a block when `block`; in one increment when
    /// `whole`).
    Ask { tokens: u32, block: bool, whole: bool },
    /// Nothing held, and the service failed a moment ago: no call.
    Failing(Contended),
}

/// After a failed call, the node calls no more for the rest of that second and this many more.
const PAUSE_AFTER_FAILURE_S: u64 = 1;

/// A block is asked for in one increment while the service last said more than this many of the
/// largest blocks (`lease_max`) remain.
const WHOLE_BLOCKS_ABOVE: u64 = 10;

/// A counter's key in the lease store: the limit is part of it, so a live update that changes
/// the limit does not inherit a lease that says nothing remains.
fn lease_key(counter: &Counter) -> String {
    format!("{}|{}", counter.key, counter.limit)
}

/// A cluster-wide counter's key among a worker's blocks (apart from the node-local counters').
fn worker_key(counter: &Counter) -> String {
    format!("cluster|{}", counter.key)
}

/// The block a worker takes from its node's lease: `leasing`'s share of what remains for the
/// node (what the service last said, plus what the node holds), at most half of what the node
/// holds (the other workers find tokens, and the node's next block is asked for in time), at
/// least the request's own token.
fn worker_block(leasing: Leasing, lease: &Lease) -> u32 {
    let block = leasing.block(lease.available()).min(u64::from(lease.held / 2)).max(1);
    u32::try_from(block).unwrap_or(1)
}

/// The descriptor value of a counter: its level, a hash of its key (user names and addresses do
/// not leave the node, and the value has a fixed length), its window, and the window's start when
/// the window is shorter than the service's unit.
pub fn descriptor_value(counter: &Counter, window_start: u64, unit_s: u64) -> String {
    let level = counter.key.split_once(':').map_or(counter.key.as_str(), |(level, _)| level);
    let digest = Sha256::digest(counter.key.as_bytes());
    let id = hex(digest.get(..16).unwrap_or_default());
    if counter.window_s == unit_s {
        format!("{level}:{id}:{}", counter.window_s)
    } else {
        format!("{level}:{id}:{}:{window_start}", counter.window_s)
    }
}

fn window_of(counter: &Counter, now: u64) -> (u64, u64) {
    let window_s = counter.window_s.max(1);
    let start = now / window_s * window_s;
    (start, start.saturating_add(window_s))
}

/// An admitted request's count; `held`: its token came from the node's lease (or a grant the
/// lease could have held), so it can be given back there.
fn allowed(counter: &Counter, available: u64, reset_at: u64, held: bool) -> Count {
    Count { allowed: true, limit: counter.limit, remaining: available.min(counter.limit), reset_at, returnable: held }
}

fn denied(counter: &Counter, reset_at: u64) -> Count {
    Count { allowed: false, limit: counter.limit, remaining: 0, reset_at, returnable: false }
}

impl ClusterEngine<'_> {
    /// Whether this engine counts from leases (which take a token given back) or strictly.
    pub fn leased(&self) -> bool {
        self.service.counting == Counting::Leased
    }

    /// Why the node's last call to the service failed, while that is recent enough to call no more
    /// (see the module's docs); `None` when calls may go.
    fn recent_failure(&self, store: &dyn SharedStore, now: u64) -> Option<Contended> {
        let (value, _) = store.shared_get(&self.service.failure_key).ok().flatten()?;
        let (at, why) = value.split_first_chunk::<8>()?;
        let at = u64::from_le_bytes(*at);
        // The rest of the failure's second and the next; one stamped ahead of this clock
        // (stepped back since) is not recent.
        if !crate::host::recent(at, now, PAUSE_AFTER_FAILURE_S + 1) {
            return None;
        }
        match why.first() {
            Some(0) => Some(Contended::EngineUnavailable),
            Some(1) => Some(Contended::EngineUnusable),
            _ => None,
        }
    }

    /// Remembers a call the service failed or answered unusably (the last one wins: a timestamp
    /// written without compare-and-swap).
    fn remember_failure(&self, store: &mut dyn SharedStore, why: Contended, now: u64) {
        let code = match why {
            Contended::EngineUnavailable => 0u8,
            Contended::EngineUnusable => 1,
            _ => return,
        };
        let mut value = now.to_le_bytes().to_vec();
        value.push(code);
        let _ = store.shared_set(&self.service.failure_key, &value, None);
    }

    /// Applies `change` to the counter's lease in the window starting at `window_start`.
    fn lease<R>(
        &self,
        store: &mut dyn SharedStore,
        (counter, window_start): (&Counter, u64),
        now: u64,
        settings: Settings,
        mut change: impl FnMut(&mut Lease) -> R,
    ) -> Result<R, Contended> {
        let window = Window::StartingAt(window_start);
        limiter::update(
            store,
            Space::Leases,
            &lease_key(counter),
            counter.window_s,
            window,
            now,
            settings,
            |value, _| {
                let mut lease = Lease::unpack(value);
                let answer = change(&mut lease);
                (lease.pack(), answer)
            },
        )
    }

    /// Whether a block is asked for as one increment: while the service last said more than ten
    /// of the largest blocks remain (see the module's docs).
    fn whole(&self, counter: &Counter, remaining: Option<u32>) -> bool {
        let remaining = remaining.map_or(counter.limit, u64::from);
        self.leased() && remaining > WHOLE_BLOCKS_ABOVE.saturating_mul(u64::from(self.service.lease_max))
    }

    /// How many tokens to ask for, given what the service last said remains.
    fn block_size(&self, counter: &Counter, remaining: Option<u32>) -> u32 {
        if !self.leased() {
            return 1;
        }
        let remaining = remaining.map_or(counter.limit, u64::from);
        let share = remaining.saturating_mul(u64::from(self.service.lease_share_percent)) / 100;
        let size = share.clamp(1, u64::from(self.service.lease_max)).min(counter.limit.max(1));
        u32::try_from(size).unwrap_or(1)
    }

    /// The call asking for `tokens` tokens of a counter: one descriptor adding them all
    /// (`whole`), or one descriptor per token.
    fn call(&self, counter: &Counter, window_start: u64, tokens: u32, whole: bool) -> Option<Call> {
        let (unit, unit_s) = rls::unit_for(counter.window_s)?;
        let descriptor = rls::RateLimitDescriptor {
            entries: vec![rls::Entry {
                key: "apim".to_string(),
                value: descriptor_value(counter, window_start, unit_s),
            }],
            limit: Some(rls::RateLimitOverride { requests_per_unit: u32::try_from(counter.limit).ok()?, unit }),
            hits_addend: None,
        };
        let (copies, hits_addend) = if whole { (1, tokens) } else { (usize::try_from(tokens).ok()?, 0) };
        let request = rls::RateLimitRequest {
            domain: self.service.domain.clone(),
            descriptors: vec![descriptor; copies],
            hits_addend,
        };
        Some(Call::Grpc {
            cluster: self.service.cluster.clone(),
            service: rls::SERVICE.to_string(),
            method: rls::METHOD.to_string(),
            message: request.encode_to_vec(),
            timeout_ms: self.service.timeout_ms,
        })
    }

    /// Counts one request: from the lease, or with a call. A lease left low asks for its next
    /// block in the background: the call goes to `refills`, for the caller to dispatch.
    pub fn take(
        &self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        now: u64,
        refills: &mut Vec<Refill>,
    ) -> Step<Count, Pending, Contended> {
        self.take_for_worker(store, counter, now, refills, None)
    }

    /// [`Self::take`], first from the blocks the calling worker holds (`worker`: its blocks and
    /// how big it takes them), and taking the worker's next block from the node's lease.
    pub fn take_for_worker(
        &self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        now: u64,
        refills: &mut Vec<Refill>,
        mut worker: Option<(&mut WorkerLeases, Leasing)>,
    ) -> Step<Count, Pending, Contended> {
        let (window_start, reset_at) = window_of(counter, now);
        let (mut tokens, mut block, mut whole) = (1, false, false);
        // Read once the worker's own block is found empty: spending it touches no shared data.
        let (mut failing, mut failure_read) = (None, false);
        if self.leased() {
            let key = worker.as_ref().map(|_| worker_key(counter));
            let mut worker_leasing = None;
            if let (Some((leases, leasing)), Some(key)) = (worker.as_mut(), key.as_deref()) {
                if let Some(count) = leases.spend(key, counter.limit, counter.window_s, now) {
                    return Step::Done(count);
                }
                worker_leasing = (leasing.enabled() && leases.room_for(key, now)).then_some(*leasing);
            }
            (failing, failure_read) = (self.recent_failure(store, now), true);
            let timeout_ms = self.service.timeout_ms;
            match self.lease(store, (counter, window_start), now, self.leases, |lease| {
                let size = self.block_size(counter, lease.remaining);
                let whole = self.whole(counter, lease.remaining);
                let wanted = worker_leasing.map_or(1, |leasing| worker_block(leasing, lease));
                let taken = lease.spend_block(wanted);
                if taken > 0 {
                    let low = lease.held <= size / 2 && lease.remaining != Some(0) && failing.is_none();
                    let refill = (low && !lease.block_on_its_way(now, timeout_ms)).then(|| {
                        lease.block_asked = Lease::stamp(now);
                        (size, whole)
                    });
                    Found::Spent { lease: *lease, taken, refill }
                } else if lease.remaining == Some(0) {
                    // The service said nothing remains in this window, and nothing came back since.
                    Found::Exhausted
                } else if let Some(why) = failing {
                    Found::Failing(why)
                } else if lease.block_on_its_way(now, timeout_ms) {
                    Found::Ask { tokens: 1, block: false, whole: false }
                } else {
                    lease.block_asked = Lease::stamp(now);
                    Found::Ask { tokens: size, block: true, whole }
                }
            }) {
                Ok(Found::Spent { lease, taken, refill }) => {
                    if let Some((size, whole)) = refill {
                        let pending = Pending { window_start, requested: size, whole, block: true, called_at: now };
                        match self.call(counter, window_start, size, whole) {
                            Some(call) => refills.push(Refill { call, counter: counter.clone(), pending }),
                            None => self.settle(store, counter, pending, Err(Contended::EngineUnusable), now),
                        }
                    }
                    let count = allowed(counter, lease.available(), reset_at, true);
                    return Step::Done(match (worker, key) {
                        (Some((leases, _)), Some(key)) => leases.took(&key, counter.window_s, count, u64::from(taken)),
                        _ => count,
                    });
                }
                Ok(Found::Exhausted) => return Step::Done(denied(counter, reset_at)),
                Ok(Found::Failing(why)) => return Step::Refused(why),
                Ok(Found::Ask { tokens: asked, block: is_block, whole: in_one }) => {
                    (tokens, block, whole) = (asked, is_block, in_one);
                }
                // No lease can be kept: one token for this request, as strict counting does.
                Err(_) => (tokens, block, whole) = (1, false, false),
            }
        }
        if !failure_read {
            failing = self.recent_failure(store, now);
        }
        if let Some(why) = failing {
            return Step::Refused(why);
        }
        match self.call(counter, window_start, tokens, whole) {
            Some(call) => Step::Call(call, Pending { window_start, requested: tokens, whole, block, called_at: now }),
            None => Step::Refused(Contended::EngineUnusable),
        }
    }

    /// Takes the answer to a background block: every granted token goes to the lease (or, when
    /// the call failed, the lease is free to ask again).
    pub fn settle(
        &self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        pending: Pending,
        granted: Result<Granted, Contended>,
        now: u64,
    ) {
        let unit_s = rls::unit_for(counter.window_s).map_or(0, |(_, unit_s)| unit_s);
        let same_window = window_of(counter, now).0 == pending.window_start;
        let _ = self.lease(store, (counter, pending.window_start), now, self.leases.must_land(), |lease| {
            lease.block_asked = 0;
            if let Ok(granted) = granted {
                if granted.tokens < pending.requested {
                    lease.remaining = Some(0);
                }
                if same_window && granted.clocks_agree(pending.called_at, unit_s) {
                    lease.hold(granted.tokens);
                    if granted.tokens == pending.requested {
                        lease.heard(granted.remaining);
                    }
                }
            }
        });
    }

    /// Reads the answer to a background block (see [`ClusterEngine::settle`]).
    pub fn refilled(&self, store: &mut dyn SharedStore, refill: &Refill, answer: &Answer, now: u64) {
        let granted = read_answer(answer, refill.pending, &refill.counter);
        if let Err(why) = granted {
            self.remember_failure(store, why, now);
        }
        self.settle(store, &refill.counter, refill.pending, granted, now);
    }

    /// Reads the service's answer: the request takes one granted token, the node holds the rest.
    pub fn resume_take(
        &self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        pending: Pending,
        answer: &Answer,
        now: u64,
    ) -> Step<Count, Pending, Contended> {
        let granted = read_answer(answer, pending, counter);
        if let Err(why) = granted {
            self.remember_failure(store, why, now);
        }
        let reset_at = pending.window_start.saturating_add(counter.window_s.max(1));
        if !self.leased() {
            return match granted {
                Err(why) => Step::Refused(why),
                Ok(Granted { tokens: 0, .. }) => Step::Done(denied(counter, reset_at)),
                Ok(granted) => Step::Done(allowed(counter, u64::from(granted.remaining), reset_at, false)),
            };
        }
        let unit_s = rls::unit_for(counter.window_s).map_or(0, |(_, unit_s)| unit_s);
        let same_window = window_of(counter, now).0 == pending.window_start;
        let outcome = self.lease(store, (counter, pending.window_start), now, self.leases.must_land(), |lease| {
            if pending.block {
                lease.block_asked = 0;
            }
            let granted = granted?;
            if granted.tokens == 0 {
                // Nothing remains on the service for this window; a token another worker gave
                // back in the meantime still serves this request.
                lease.remaining = Some(0);
                return Ok(lease.spend().then_some((*lease, true)));
            }
            if same_window && granted.clocks_agree(pending.called_at, unit_s) {
                lease.hold(granted.tokens.saturating_sub(1));
                lease.heard(granted.remaining);
                return Ok(Some((*lease, true)));
            }
            // Otherwise held tokens would outlive the service's window: this request uses one,
            // the rest are left unspent (fewer admitted, never more), and so is this one if a
            // later level denies the request.
            Ok(Some((Lease { held: lease.held, block_asked: 0, remaining: Some(granted.remaining) }, false)))
        });
        match outcome {
            Ok(Ok(Some((lease, held)))) => Step::Done(allowed(counter, lease.available(), reset_at, held)),
            Ok(Ok(None)) => Step::Done(denied(counter, reset_at)),
            Ok(Err(why)) => Step::Refused(why),
            // The lease cannot be updated: the answer alone decides this request.
            Err(_) => match granted {
                Err(why) => Step::Refused(why),
                Ok(Granted { tokens: 0, .. }) => Step::Done(denied(counter, reset_at)),
                Ok(granted) => Step::Done(allowed(counter, u64::from(granted.remaining), reset_at, false)),
            },
        }
    }

    /// Returns the token of a take that answered `taken` (a later level denied its request): to
    /// the lease of the window it came from. A token the lease did not hold (strict counting, or a
    /// grant under a disagreeing clock or past its window) is dropped: the service counted it,
    /// perhaps in another of its windows, and never un-counts.
    pub fn give_back(&self, store: &mut dyn SharedStore, counter: &Counter, taken: &Count, now: u64) {
        self.give_back_for_worker(store, counter, taken, now, None);
    }

    /// [`Self::give_back`], to the calling worker's block of that window when it holds one.
    pub fn give_back_for_worker(
        &self,
        store: &mut dyn SharedStore,
        counter: &Counter,
        taken: &Count,
        now: u64,
        worker: Option<&mut WorkerLeases>,
    ) {
        if !self.leased() || !taken.returnable {
            return;
        }
        let window_start = taken.window_start(counter.window_s);
        if worker
            .is_some_and(|leases| leases.give_back(&worker_key(counter), counter.limit, counter.window_s, window_start))
        {
            return;
        }
        let _ = self.lease(store, (counter, window_start), now, self.leases.must_land(), |lease| lease.hold(1));
    }
}

/// What an answer granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    tokens: u32,
    /// What the service says remains after the grant.
    remaining: u32,
    /// The service's `duration_until_reset`, seconds (0 when absent).
    reset_in_s: i64,
}

impl Granted {
    /// Whether the service's window ends where the node's does (within a second either way).
    fn clocks_agree(&self, called_at: u64, unit_s: u64) -> bool {
        if unit_s == 0 || self.reset_in_s <= 0 {
            return false;
        }
        let node_end = i128::from((called_at / unit_s).saturating_add(1).saturating_mul(unit_s));
        let service_end = i128::from(called_at) + i128::from(self.reset_in_s);
        (service_end - node_end).abs() <= 1
    }
}

/// Reads the answer to a call: a status per descriptor (one for a whole block, one per token
/// otherwise), each carrying the limit the filter sent. An answer without it (a service without
/// the domain in its configuration answers OK with no limit) or with another limit or unit (a
/// service applying a rule of its own) is unusable: its grants would count against a limit the
/// filter never set. So is an answer with a code other than OK or OVER_LIMIT (UNKNOWN says
/// nothing of the count), or whose overall code contradicts its statuses (OVER_LIMIT exactly when
/// one of them is; a service in global shadow mode answers OK over statuses over the limit).
pub fn read_answer(answer: &Answer, pending: Pending, counter: &Counter) -> Result<Granted, Contended> {
    let requested = pending.requested;
    let descriptors = if pending.whole { 1 } else { requested };
    let message = match answer {
        Answer::Grpc { message } => message,
        Answer::Failed { .. } => return Err(Contended::EngineUnavailable),
        Answer::Http { .. } | Answer::HttpStream { .. } => return Err(Contended::EngineUnusable),
    };
    let response = rls::decode_response(message).ok_or(Contended::EngineUnusable)?;
    let statuses = &response.statuses;
    let sent = u32::try_from(counter.limit).ok().zip(rls::unit_for(counter.window_s).map(|(unit, _)| unit));
    let limit_sent = |status: &rls::DescriptorStatus| {
        status.current_limit.as_ref().map(|limit| (limit.requests_per_unit, limit.unit)) == sent
    };
    if usize::try_from(descriptors).ok() != Some(statuses.len()) || !statuses.iter().all(limit_sent) {
        return Err(Contended::EngineUnusable);
    }
    let known = |code: i32| code == rls::CODE_OK || code == rls::CODE_OVER_LIMIT;
    let any_over = statuses.iter().any(|status| status.code == rls::CODE_OVER_LIMIT);
    let overall_over = response.overall_code == rls::CODE_OVER_LIMIT;
    if !known(response.overall_code) || !statuses.iter().all(|status| known(status.code)) || any_over != overall_over {
        return Err(Contended::EngineUnusable);
    }
    let ok = statuses.iter().filter(|status| status.code == rls::CODE_OK);
    let granted_descriptors = u32::try_from(ok.clone().count()).unwrap_or(0);
    let tokens = if pending.whole { requested.saturating_mul(granted_descriptors) } else { granted_descriptors };
    let remaining = if tokens == requested { ok.map(|status| status.limit_remaining).min().unwrap_or(0) } else { 0 };
    let reset_in_s =
        statuses.iter().find_map(|status| status.duration_until_reset.as_ref().map(|d| d.seconds)).unwrap_or(0);
    Ok(Granted { tokens, remaining, reset_in_s })
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "cluster_answer_tests.rs"]
mod answer_tests;

#[cfg(test)]
#[path = "hostile_answer_tests.rs"]
mod hostile_answer_tests;
