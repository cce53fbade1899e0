//! Full loads of the control plane's directory: at start and every `refresh_s`, by one worker of
//! the Envoy (the due time in shared data is taken by compare-and-swap and held until the load
//! ends, so loads never overlap), as background work of its root context. The load asks for
//! each resource in turn; a resource whose answer did not change since the last load (same
//! bytes) is not rewritten, and a load that changed something (or follows one cut off after
//! writing) bumps the generation, which every worker notices on its next request. A resource that
//! cannot be had (the control plane down, slow, failing, or answering garbage) keeps its last good
//! data, and the next load comes sooner (`RETRY_S`).

use super::store::{self, AppEntry, Document, KeyEntry, Kind, KindBuilder, Meta, SubEntry};
use super::view::{key_of_client, key_of_subscription};
use super::{listed, wire, ControlPlane};
use crate::host::{create_if_absent, Answer, Call, SharedStore};

/// Seconds before a load that failed somewhere is tried again.
pub const RETRY_S: u64 = 5;

/// The resources of a full load, in the order they are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    Apis,
    SubscriptionPolicies,
    ApplicationPolicies,
    ApiPolicies,
    Applications,
    Subscriptions,
    KeyMappings,
    Block,
    Revoked,
}

/// Every resource of a full load, in the order they are asked for.
pub(super) const ORDER: [Fetch; 9] = [
    Fetch::Apis,
    Fetch::SubscriptionPolicies,
    Fetch::ApplicationPolicies,
    Fetch::ApiPolicies,
    Fetch::Applications,
    Fetch::Subscriptions,
    Fetch::KeyMappings,
    Fetch::Block,
    Fetch::Revoked,
];

impl Fetch {
    pub fn resource(self) -> &'static str {
        match self {
            Fetch::Apis => "apis",
            Fetch::SubscriptionPolicies => "subscription-policies",
            Fetch::ApplicationPolicies => "application-policies",
            Fetch::ApiPolicies => "api-policies",
            Fetch::Applications => "applications",
            Fetch::Subscriptions => "subscriptions",
            Fetch::KeyMappings => "application-key-mappings",
            Fetch::Block => "block",
            Fetch::Revoked => "revokedjwt",
        }
    }

    pub fn call(self, control_plane: &ControlPlane) -> Call {
        match self {
            Fetch::Apis => control_plane.get("apis", &[("gatewayLabel", &control_plane.gateway_label)]),
            other => control_plane.get(other.resource(), &[]),
        }
    }

    fn next(self) -> Option<Fetch> {
        let position = ORDER.iter().position(|fetch| *fetch == self)?;
        ORDER.get(position + 1).copied()
    }

    /// Where its answer's fingerprint is kept (an unchanged answer is not rewritten).
    fn fingerprint_key(self) -> String {
        store::fingerprint_key(self.resource())
    }
}

/// A full load under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    pub fetch: Fetch,
    pub started_at: u64,
    /// For the log: when it started, milliseconds.
    pub started_ms: u64,
    /// For the log: when the call now outstanding was made, milliseconds.
    asked_ms: u64,
    /// For the log: milliseconds spent waiting for the control plane's answers (the rest of the
    /// load's time is the filter taking them).
    waiting_ms: u64,
    changed: bool,
    failed: Vec<&'static str>,
}

impl Load {
    /// Whether a resource of this load failed (its last good data, if any, stays).
    pub fn incomplete(&self) -> bool {
        !self.failed.is_empty()
    }
}

const DUE_KEY: &str = "apim.cp.due";

/// Set (non-empty) while a load has written an answer that no generation publishes yet: before
/// its first write, cleared by the generation its end bumps. A load cut off in between (its VM
/// drained by a configuration change with a call under way) leaves it set, and the next load
/// publishes what it wrote, though that load then finds every answer unchanged.
const UNPUBLISHED_KEY: &str = "apim.cp.unpublished";

/// Set before an answer's first write, once it was read whole and found to be WSO2's: an answer
/// refused as garbage writes nothing, and leaves nothing to publish.
fn mark_unpublished(store: &mut dyn SharedStore) {
    let _ = store.shared_set(UNPUBLISHED_KEY, b"1", None);
}

fn unpublished(store: &dyn SharedStore) -> bool {
    store.shared_get(UNPUBLISHED_KEY).ok().flatten().is_some_and(|(bytes, _)| !bytes.is_empty())
}

/// At configure time: creates the due time (at once) if this Envoy has none, so that taking it
/// is always a compare-and-swap; and drops the data another control plane left (another API-M,
/// tenant, label or user), so that it is never served or kept as "last good data" under this
/// configuration, and loads from this one at once. Data of no known source (written by an
/// earlier version) is adopted.
pub fn prepare(store: &mut dyn SharedStore, control_plane: &ControlPlane) {
    // Only where none is: read as absent and then written, it undid a load another worker took
    // in between, and both loaded.
    let _ = create_if_absent(store, DUE_KEY, &0u64.to_le_bytes());
    let meta = Meta::read(store);
    if meta.source == control_plane.source {
        return;
    }
    if meta.source != 0 {
        store::empty_all(store, &meta);
        for fetch in ORDER {
            let _ = store.shared_set(&fetch.fingerprint_key(), b"", None);
        }
        set_due(store, 0);
        log::warn!(
            "control plane: another source is configured; the data of the previous one is dropped (if another \
             gateway whose filter shares this vm_id still reads it, give each gateway its own `gateway` name)"
        );
    }
    // A new generation: workers rebuild their views, and lookups asked before are dropped.
    let generation = if meta.source == 0 { meta.generation } else { meta.generation.saturating_add(1) };
    let buckets = if meta.source == 0 { meta.buckets } else { [0; 3] };
    Meta { generation, loaded_at: 0, buckets, source: control_plane.source }.write(store);
}

fn set_due(store: &mut dyn SharedStore, at: u64) {
    let _ = store.shared_set(DUE_KEY, &at.to_le_bytes(), None);
}

/// Seconds a load holds the due time past the arrival of each answer, beyond the next call's
/// timeout: the time taking a big answer (100,000 entries) can need on a slow machine.
const HOLD_PAST_TIMEOUT_S: u64 = 30;

/// How long the due time is held at each answer of a load: no other worker starts a load while
/// one is under way, however long it takes (a load that outlasted `refresh_s` was joined by a
/// second, and a slow second by a third). Every call ends within its timeout, so a load always
/// ends and sets the next due time; a worker that vanished mid-load only delays the next.
fn hold_s(control_plane: &ControlPlane) -> u64 {
    u64::from(control_plane.timeout_ms).div_ceil(1000).saturating_add(HOLD_PAST_TIMEOUT_S)
}

/// The furthest due time this configuration sets at `now`; [`due`] takes one further off at once
/// (the clock was stepped back since it was set, or a longer `refresh_s` set it).
fn furthest(control_plane: &ControlPlane, now: u64) -> u64 {
    now.saturating_add(control_plane.refresh_s.max(hold_s(control_plane)))
}

/// Holds the due time on from an answer's arrival (never moves it earlier, unless it is further
/// off than [`furthest`]: [`due`] would take that at once, joining this load).
fn hold(store: &mut dyn SharedStore, control_plane: &ControlPlane, now: u64) {
    let Ok(Some((bytes, cas))) = store.shared_get(DUE_KEY) else { return };
    let due = <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_le_bytes).unwrap_or(0);
    let until = now.saturating_add(hold_s(control_plane));
    if until > due || due > furthest(control_plane, now) {
        let _ = store.shared_set(DUE_KEY, &until.to_le_bytes(), Some(cas));
    }
}

/// A load to start now, if one is due and this worker took it.
pub fn due(store: &mut dyn SharedStore, control_plane: &ControlPlane, now: u64, now_ms: u64) -> Option<Load> {
    // A configuration whose control plane was replaced since (its listener drains) takes no load:
    // it would drop it at its first answer ([`ingest`]) and hold the due time the new one needs.
    let source = Meta::read(store).source;
    if source != 0 && source != control_plane.source {
        return None;
    }
    let (bytes, cas) = store.shared_get(DUE_KEY).ok().flatten()?;
    let due = <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_le_bytes).unwrap_or(0);
    // A due time further off than this configuration ever sets (one a longer `refresh_s` set, or
    // one set before the clock was stepped back) is taken now: a shorter `refresh_s` applies at
    // once, and a step back never delays a load by as long as the step.
    let next = furthest(control_plane, now);
    if now < due && due <= next {
        return None;
    }
    // Taken at least as long as its first call can last; each later call holds it on (`hold`),
    // and the load sets the next due time when it ends.
    store.shared_set(DUE_KEY, &next.to_le_bytes(), Some(cas)).ok()?;
    Some(Load {
        fetch: Fetch::Apis,
        started_at: now,
        started_ms: now_ms,
        asked_ms: now_ms,
        waiting_ms: 0,
        changed: false,
        failed: Vec::new(),
    })
}

impl Load {
    /// Notes when the load's next call was made (after its last answer was taken).
    pub fn asked(&mut self, now_ms: u64) {
        self.asked_ms = now_ms;
    }

    /// Milliseconds spent so far waiting for the control plane's answers.
    pub fn waiting_ms(&self) -> u64 {
        self.waiting_ms
    }
}

/// An answer's body: in memory, or still in Envoy (`Answer::HttpStream`), read in pieces with
/// `read(start, length)`.
pub struct Body<'a> {
    size: usize,
    bytes: Option<&'a [u8]>,
    read: &'a dyn Fn(usize, usize) -> Vec<u8>,
}

impl<'a> Body<'a> {
    pub fn of(answer: &'a Answer, read: &'a dyn Fn(usize, usize) -> Vec<u8>) -> Option<(u16, Body<'a>)> {
        match answer {
            Answer::Http { status, body } => Some((*status, Body { size: body.len(), bytes: Some(body), read })),
            Answer::HttpStream { status, size } => Some((*status, Body { size: *size, bytes: None, read })),
            Answer::Failed { .. } | Answer::Grpc { .. } => None,
        }
    }

    fn reader(&self) -> BodyReader<'_, 'a> {
        BodyReader { body: self, position: 0 }
    }

    /// The whole body, for a document kept as it came; refused over [`MAX_DOCUMENT`] bytes or
    /// when the VM cannot hold it (the size is Envoy's, sent by the control plane: sized from it
    /// without a check, a body over 2 GiB ended the VM).
    fn to_vec(&self) -> Result<Vec<u8>, String> {
        if self.size > MAX_DOCUMENT {
            return Err(format!("{} bytes, over the {MAX_DOCUMENT} bytes a document may hold", self.size));
        }
        let mut out = Vec::new();
        out.try_reserve_exact(self.size)
            .map_err(|_| format!("{} bytes, more than the filter's memory can hold", self.size))?;
        let _ = std::io::Read::read_to_end(&mut self.reader(), &mut out);
        Ok(out)
    }

    /// SipHash (std's fixed-key hasher) over the whole body, read in pieces: an accidental
    /// change goes unnoticed with odds of 2^-64. (FNV-1a, a byte at a time, was an eighth of the
    /// time taken by a 100,000-entry load.) The hash starts with [`store::FORMAT`]: what an
    /// earlier module made of the same answer (its buckets) is not taken for this one's.
    fn fingerprint(&self) -> [u8; 8] {
        use std::hash::Hasher;
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write_u32(store::FORMAT);
        let mut reader = self.reader();
        let mut chunk = vec![0u8; CHUNK];
        while let Ok(read) = std::io::Read::read(&mut reader, &mut chunk) {
            if read == 0 {
                break;
            }
            hasher.write(chunk.get(..read).unwrap_or_default());
        }
        hasher.finish().to_le_bytes()
    }
}

/// Bytes read from Envoy at a time: the same pieces the lists are parsed from.
const CHUNK: usize = listed::CHUNK;

/// The largest document kept whole (the APIs, the policies, the blocking conditions, the revoked
/// tokens): each worker decodes it from shared data. The big lists are read in pieces instead.
pub const MAX_DOCUMENT: usize = 32 << 20;

struct BodyReader<'b, 'a> {
    body: &'b Body<'a>,
    position: usize,
}

impl std::io::Read for BodyReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let wanted = out.len().min(self.body.size.saturating_sub(self.position));
        if wanted == 0 {
            return Ok(0);
        }
        let piece = match self.body.bytes {
            Some(bytes) => bytes.get(self.position..self.position + wanted).unwrap_or_default().to_vec(),
            None => (self.body.read)(self.position, wanted.min(CHUNK)),
        };
        let n = piece.len().min(out.len());
        if n == 0 {
            return Err(std::io::Error::other("the answer's body ended early"));
        }
        if let Some(target) = out.get_mut(..n) {
            target.copy_from_slice(piece.get(..n).unwrap_or_default());
        }
        self.position += n;
        Ok(n)
    }
}

/// Takes one resource's answer (`read` reads a body Envoy still holds); the next call of the
/// load, or `None` when it is over.
pub fn ingest(
    store: &mut dyn SharedStore,
    control_plane: &ControlPlane,
    load: &mut Load,
    answer: &Answer,
    read: &dyn Fn(usize, usize) -> Vec<u8>,
    now: u64,
    now_ms: u64,
) -> Option<Call> {
    // A load an earlier configuration started, for another source (its VM still drains), writes
    // nothing over this one's data.
    let source = Meta::read(store).source;
    if source != 0 && source != control_plane.source {
        log::warn!(
            "control plane: a load from a source no longer configured is dropped (after a change of control \
             plane this stops once the old configuration drains; if it goes on, two gateways whose filters share \
             a vm_id read different control planes or labels: give each its own `gateway` name)"
        );
        return None;
    }
    // Held first, from when the answer arrived: this hold covers taking this answer (up to
    // `HOLD_PAST_TIMEOUT_S`) and the next call (up to its timeout).
    hold(store, control_plane, now);
    load.waiting_ms = load.waiting_ms.saturating_add(now_ms.saturating_sub(load.asked_ms));
    let fetch = load.fetch;
    match Body::of(answer, read) {
        Some((200, body)) => match take(store, fetch, &body) {
            Ok(changed) => load.changed |= changed,
            Err(reason) => {
                log::warn!(
                    "control plane: /{} answered what cannot be taken ({reason}); {}",
                    fetch.resource(),
                    kept(store, fetch)
                );
                load.failed.push(fetch.resource());
            }
        },
        Some((status, _)) => {
            log::warn!("control plane: /{} answered HTTP {status}; {}", fetch.resource(), kept(store, fetch));
            load.failed.push(fetch.resource());
        }
        None => {
            log::warn!("control plane: /{} could not be fetched; {}", fetch.resource(), kept(store, fetch));
            load.failed.push(fetch.resource());
        }
    }
    if let Some(next) = fetch.next() {
        load.fetch = next;
        return Some(next.call(control_plane));
    }
    finish(store, control_plane, load, now, now_ms);
    None
}

fn finish(store: &mut dyn SharedStore, control_plane: &ControlPlane, load: &Load, now: u64, now_ms: u64) {
    let mut meta = Meta::read(store);
    let unpublished = unpublished(store);
    if load.changed || unpublished || meta.generation == 0 {
        meta.generation = meta.generation.saturating_add(1);
    }
    // When a load last brought the subscriptions and applications (WebSocket connections read
    // it: a subscription two such loads in turn left out is gone); a failed fetch of either kept
    // the old list, which tells nothing new.
    let lists = [Fetch::Subscriptions.resource(), Fetch::Applications.resource()];
    if !load.failed.iter().any(|failed| lists.contains(failed)) {
        meta.loaded_at = now;
    }
    meta.write(store);
    if unpublished {
        let _ = store.shared_set(UNPUBLISHED_KEY, b"", None);
    }
    if load.failed.is_empty() {
        set_due(store, load.started_at.saturating_add(control_plane.refresh_s).max(now.saturating_add(1)));
        log::info!(
            "control plane loaded in {} ms ({} ms of it waiting for its answers): generation {}{}",
            now_ms.saturating_sub(load.started_ms),
            load.waiting_ms,
            meta.generation,
            if load.changed || unpublished { "" } else { " (unchanged)" }
        );
    } else {
        set_due(store, now.saturating_add(RETRY_S));
        log::warn!(
            "control plane load incomplete ({} failed, each keeping what it last loaded, if anything); next try in \
             {RETRY_S} s",
            load.failed.join(", ")
        );
    }
}

/// What a resource whose load failed keeps, for the log: its last good data, or nothing at all
/// when no load has brought it yet (at start, "its last good data stays" told the operator of
/// data that was not there: the control plane's APIs were not served).
fn kept(store: &dyn SharedStore, fetch: Fetch) -> &'static str {
    let loaded = store.shared_get(&fetch.fingerprint_key()).ok().flatten().is_some_and(|(bytes, _)| !bytes.is_empty());
    if loaded {
        "its last good data stays"
    } else {
        "no load has brought it yet: nothing of it is served"
    }
}

/// JSON bytes per entry of WSO2's big lists, roughly: sizes the buckets before the entries are
/// read.
const BYTES_PER_ENTRY: usize = 200;

/// Checks and stores one resource's answer; `Ok(true)` when it changed the directory. The big
/// lists are read element by element, straight into their buckets.
fn take(store: &mut dyn SharedStore, fetch: Fetch, body: &Body<'_>) -> Result<bool, String> {
    let fingerprint = body.fingerprint();
    let key = fetch.fingerprint_key();
    let stored = store.shared_get(&key).ok().flatten();
    if stored.as_ref().is_some_and(|(stored, _)| *stored == fingerprint) {
        return Ok(false);
    }
    // The fingerprint is written at the end by compare-and-swap against what is read here: a
    // lookup that forgets it meanwhile (`store::forget_fingerprint`: its entry may sit in the
    // buckets written below) wins, and the next load rewrites them. Written over it, the entry
    // outlived its deletion in API-M for as long as the answer stayed the same. A fingerprint
    // never written is created empty first, so that there is a value to compare.
    let cas = match stored {
        Some((_, cas)) => Some(cas),
        None => {
            let _ = store.shared_set(&key, b"", None);
            store.shared_get(&key).ok().flatten().map(|(_, cas)| cas)
        }
    };
    let garbage = |error: serde_json::Error| format!("not WSO2's JSON ({error})");
    let expected = body.size / BYTES_PER_ENTRY;
    match fetch {
        Fetch::Apis => document::<wire::Envelope<wire::Api>>(store, Document::Apis, body)?,
        Fetch::SubscriptionPolicies => {
            document::<wire::Envelope<wire::Policy>>(store, Document::SubscriptionPolicies, body)?
        }
        Fetch::ApplicationPolicies => {
            document::<wire::Envelope<wire::Policy>>(store, Document::ApplicationPolicies, body)?
        }
        Fetch::ApiPolicies => document::<wire::Envelope<wire::Policy>>(store, Document::ApiPolicies, body)?,
        Fetch::Block => {
            // Another document's shape read as a `Block` has no conditions: taken, it lifted
            // every blocking condition the last good load brought.
            let members: wire::BlockMembers =
                crate::pieces::from_bytes(&body.to_vec()?).map_err(|error| format!("not WSO2's JSON ({error})"))?;
            if !members.any() {
                return Err("not WSO2's blocking conditions (none of their members)".into());
            }
            document::<wire::Block>(store, Document::Block, body)?
        }
        Fetch::Revoked => document::<Vec<wire::RevokedJwt>>(store, Document::Revoked, body)?,
        Fetch::Applications => {
            let mut builder = KindBuilder::new(Kind::Apps, expected);
            listed::for_each_listed(body.reader(), |mut application: wire::Application| {
                if !application.uuid.is_empty() {
                    let uuid = std::mem::take(&mut application.uuid);
                    builder.add(&uuid, &AppEntry::from_wire(application).encode());
                }
            })
            .map_err(garbage)?;
            mark_unpublished(store);
            builder.write(store);
        }
        Fetch::Subscriptions => {
            let mut builder = KindBuilder::new(Kind::Subs, expected);
            listed::for_each_listed(body.reader(), |subscription: wire::Subscription| {
                if !subscription.api_uuid.is_empty() && !subscription.application_uuid.is_empty() {
                    let state = store::state_index(wire::subscription_state(&subscription.subscription_state));
                    let key = key_of_subscription(&subscription.application_uuid, &subscription.api_uuid);
                    builder.add(&key, &SubEntry { tier: subscription.policy_id, state }.encode());
                }
            })
            .map_err(garbage)?;
            mark_unpublished(store);
            builder.write(store);
        }
        Fetch::KeyMappings => {
            let mut builder = KindBuilder::new(Kind::Keys, expected);
            listed::for_each_listed(body.reader(), |mapping: wire::KeyMapping| {
                let Some(key_type) = wire::key_type(&mapping.key_type) else { return };
                // A mapping without an application would join every such client to one.
                if mapping.consumer_key.is_empty() || mapping.application_uuid.is_empty() {
                    return;
                }
                let entry = KeyEntry {
                    application: mapping.application_uuid,
                    application_id: mapping.application_id,
                    production: key_type == crate::vocab::KeyType::Production,
                };
                builder.add(&key_of_client(&mapping.key_manager, &mapping.consumer_key), &entry.encode());
            })
            .map_err(garbage)?;
            mark_unpublished(store);
            builder.write(store);
        }
    }
    let _ = store.shared_set(&key, &fingerprint, cas);
    Ok(true)
}

/// A small resource: checked to be what WSO2 sends, then kept as it came.
fn document<T: serde::de::DeserializeOwned>(
    store: &mut dyn SharedStore,
    document: Document,
    body: &Body<'_>,
) -> Result<(), String> {
    let bytes = body.to_vec()?;
    crate::pieces::from_bytes::<T>(&bytes).map_err(|error| format!("not WSO2's JSON ({error})"))?;
    mark_unpublished(store);
    store::write_document(store, document, &bytes);
    Ok(())
}
