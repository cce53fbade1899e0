//! The control plane's data in shared data, once per Envoy for all its workers.
//!
//! - `apim.cp.meta`: the generation (bumped by every full load that changed something), when the
//!   last load ended, and the bucket count of each kind.
//! - The big kinds (key mappings, applications, subscriptions) in buckets: a key hashes to one of
//!   the kind's buckets (`apim.cp.<kind>.<count>.<index>`), and a bucket holds its entries in a
//!   compact binary form. The bucket count follows the number of entries (about eight a bucket),
//!   so a lookup reads a few hundred bytes whatever the directory's size. A bucket also holds the
//!   answers "does not exist" of on-demand lookups, with when they stop counting.
//! - The small kinds (APIs, policies, blocking conditions, revoked tokens): the control plane's
//!   own JSON, one value each, which workers read once per generation.

use sha2::{Digest, Sha256};

use crate::hashing::fnv1a;
use crate::host::SharedStore;

/// The big kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `<key manager>` + `<consumer key>` to the application and key type.
    Keys,
    /// Application UUID to the application.
    Apps,
    /// `<application UUID>` + `<API UUID>` to the subscription.
    Subs,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Keys, Kind::Apps, Kind::Subs];

    fn name(self) -> &'static str {
        match self {
            Kind::Keys => "keys",
            Kind::Apps => "apps",
            Kind::Subs => "subs",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Keys => 0,
            Kind::Apps => 1,
            Kind::Subs => 2,
        }
    }
}

/// The small kinds: the control plane's JSON as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Apis,
    SubscriptionPolicies,
    ApplicationPolicies,
    ApiPolicies,
    Block,
    Revoked,
}

impl Document {
    pub const ALL: [Document; 6] = [
        Document::Apis,
        Document::SubscriptionPolicies,
        Document::ApplicationPolicies,
        Document::ApiPolicies,
        Document::Block,
        Document::Revoked,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Document::Apis => "apim.cp.doc.apis",
            Document::SubscriptionPolicies => "apim.cp.doc.subscription-policies",
            Document::ApplicationPolicies => "apim.cp.doc.application-policies",
            Document::ApiPolicies => "apim.cp.doc.api-policies",
            Document::Block => "apim.cp.doc.block",
            Document::Revoked => "apim.cp.doc.revoked",
        }
    }
}

/// Joins the parts of a composite key.
pub const SEPARATOR: char = '\u{1f}';

/// The directory's state as workers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// 0 until the first full load wrote something.
    pub generation: u64,
    /// When the last full load that fetched the subscriptions and applications ended (Unix
    /// seconds; 0: never).
    pub loaded_at: u64,
    /// Bucket counts by kind (0: the kind was never written).
    pub buckets: [u32; 3],
    /// The control plane the data came from ([`super::ControlPlane::source`]; 0: unknown, data
    /// written before sources were recorded).
    pub source: u64,
}

const META_KEY: &str = "apim.cp.meta";
const META_LEN: usize = 8 + 8 + 4 * 3 + 8;

impl Meta {
    pub fn read(store: &dyn SharedStore) -> Meta {
        let Ok(Some((bytes, _))) = store.shared_get(META_KEY) else { return Meta::default() };
        let mut reader = Reader::new(&bytes);
        let (Some(generation), Some(loaded_at), Some(keys), Some(apps), Some(subs)) =
            (reader.u64(), reader.u64(), reader.u32(), reader.u32(), reader.u32())
        else {
            return Meta::default();
        };
        let source = reader.u64().unwrap_or(0);
        // Never more buckets than a load makes: emptying a kind writes each of them.
        let buckets = [keys, apps, subs].map(|count| count.min(MAX_BUCKETS));
        Meta { generation, loaded_at, buckets, source }
    }

    pub fn write(&self, store: &mut dyn SharedStore) {
        let mut out = Vec::with_capacity(META_LEN);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.loaded_at.to_le_bytes());
        for count in self.buckets {
            out.extend_from_slice(&count.to_le_bytes());
        }
        out.extend_from_slice(&self.source.to_le_bytes());
        let _ = store.shared_set(META_KEY, &out, None);
    }

    /// The kind's bucket count (16 before any full load wrote it: on-demand lookups can be
    /// remembered from the start).
    pub fn bucket_count(&self, kind: Kind) -> u32 {
        self.buckets.get(kind.index()).copied().filter(|count| *count > 0).unwrap_or(MIN_BUCKETS)
    }

    pub fn set_bucket_count(&mut self, kind: Kind, count: u32) {
        if let Some(slot) = self.buckets.get_mut(kind.index()) {
            *slot = count;
        }
    }
}

const MIN_BUCKETS: u32 = 16;
const MAX_BUCKETS: u32 = 65_536;

/// About eight entries a bucket, from 16 to 65536 buckets.
pub fn bucket_count_for(entries: usize) -> u32 {
    let wanted = (entries / 8).clamp(MIN_BUCKETS as usize, MAX_BUCKETS as usize);
    u32::try_from(wanted.next_power_of_two()).unwrap_or(MAX_BUCKETS)
}

fn bucket_name(kind: Kind, count: u32, index: u64) -> String {
    format!("apim.cp.{}.{count}.{index}", kind.name())
}

/// An entry's key as stored: the first 16 bytes of its SHA-256, so every key takes the same small
/// room whatever its length (a collision would need 2^64 keys).
type KeyId = [u8; 16];

fn key_id(key: &str) -> KeyId {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 16];
    for (slot, byte) in id.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    id
}

fn bucket_of(id: &KeyId, count: u32) -> u64 {
    fnv1a(0, id) % u64::from(count.max(1))
}

/// What a bucket says about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Present(Vec<u8>),
    /// A lookup found nothing; it counts until this second.
    Absent {
        until: u64,
    },
}

const MAGIC: u8 = 0xC2;

/// The version of what a full load makes of WSO2's answers: the buckets' encoding and the rules
/// that pick and map their entries (`refresh`, `wire`). A full load whose answer is the last one
/// writes nothing, and the answer's fingerprint includes this version, so the first full load of
/// a module that changed either rewrites what an earlier module made of the same answer (shared
/// data outlives a module upgrade; kept, it served the earlier module's entries until API-M's
/// answer changed). Bump it with any such change.
pub const FORMAT: u32 = 3;
const PRESENT: u8 = 1;
const ABSENT: u8 = 0;

/// A bucket's entries: the key's id, then a present value (u16 length) or an absence with its
/// expiry.
fn decode_bucket(bytes: &[u8]) -> Vec<(KeyId, Found)> {
    let mut reader = Reader::new(bytes);
    if reader.u8() != Some(MAGIC) {
        return Vec::new();
    }
    let mut entries = Vec::new();
    while !reader.done() {
        let (Some(id), Some(tag)) = (reader.array::<16>(), reader.u8()) else { break };
        let found = match tag {
            PRESENT => match reader.short_bytes() {
                Some(value) => Found::Present(value.to_vec()),
                None => break,
            },
            _ => match reader.u64() {
                Some(until) => Found::Absent { until },
                None => break,
            },
        };
        entries.push((id, found));
    }
    entries
}

fn encode_entry(out: &mut Vec<u8>, id: &KeyId, found: &Found) {
    match found {
        Found::Present(value) => encode_present(out, id, value),
        Found::Absent { until } => {
            out.extend_from_slice(id);
            out.push(ABSENT);
            out.extend_from_slice(&until.to_le_bytes());
        }
    }
}

fn encode_present(out: &mut Vec<u8>, id: &KeyId, value: &[u8]) {
    out.extend_from_slice(id);
    out.push(PRESENT);
    put_short_bytes(out, value);
}

/// Whether a bucket being built already holds `id` (WSO2 lists an application once per
/// attribute row: the first stays). Walks the entries without copying them.
fn holds(bucket: &[u8], id: &KeyId) -> bool {
    let mut reader = Reader::new(bucket);
    if reader.u8() != Some(MAGIC) {
        return false;
    }
    while let (Some(held), Some(tag)) = (reader.array::<16>(), reader.u8()) {
        if held == *id {
            return true;
        }
        let skipped = match tag {
            PRESENT => reader.short_bytes().is_some(),
            _ => reader.u64().is_some(),
        };
        if !skipped {
            return false;
        }
    }
    false
}

/// Empties every bucket and document: the data of another control plane.
pub fn empty_all(store: &mut dyn SharedStore, meta: &Meta) {
    for kind in Kind::ALL {
        let count = meta.bucket_count(kind);
        for index in 0..u64::from(count) {
            let _ = store.shared_set(&bucket_name(kind, count, index), &[MAGIC], None);
        }
    }
    for document in Document::ALL {
        let _ = store.shared_set(document.key(), b"", None);
    }
}

/// Where the fingerprint of a resource's last full answer is kept: a full load whose answer has
/// the same fingerprint writes nothing.
pub fn fingerprint_key(resource: &str) -> String {
    format!("apim.cp.fingerprint.{resource}")
}

/// The resource whose full load writes `kind`.
fn resource_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Keys => "application-key-mappings",
        Kind::Apps => "applications",
        Kind::Subs => "subscriptions",
    }
}

/// Makes the next full load rewrite `kind` whatever its answer: an entry a lookup added is not
/// in the last full answer, and an unchanged answer would otherwise keep it after the control
/// plane deleted it.
pub fn forget_fingerprint(store: &mut dyn SharedStore, kind: Kind) {
    forget_resource_fingerprint(store, resource_of(kind));
}

/// Makes the next full load rewrite `resource` whatever its answer (a policy list, after a
/// lookup learned a policy it did not hold: the load then changes the generation, which ends
/// what the lookup learned, so a policy deleted in API-M meanwhile is not kept).
pub fn forget_resource_fingerprint(store: &mut dyn SharedStore, resource: &str) {
    let _ = store.shared_set(&fingerprint_key(resource), b"", None);
}

/// The control plane's resource of a level's policies.
pub fn policy_resource(level: crate::directory::PolicyLevel) -> &'static str {
    match level {
        crate::directory::PolicyLevel::Api => "api-policies",
        crate::directory::PolicyLevel::Subscription => "subscription-policies",
        crate::directory::PolicyLevel::Application => "application-policies",
    }
}

/// Reads what the directory holds for `key`.
pub fn lookup(store: &dyn SharedStore, meta: &Meta, kind: Kind, key: &str) -> Option<Found> {
    let count = meta.bucket_count(kind);
    let id = key_id(key);
    let Ok(Some((bytes, _))) = store.shared_get(&bucket_name(kind, count, bucket_of(&id, count))) else {
        return None;
    };
    decode_bucket(&bytes).into_iter().find(|(entry, _)| *entry == id).map(|(_, found)| found)
}

/// Adds or replaces one entry (an on-demand lookup's answer), by compare-and-swap; entries whose
/// absence has expired are dropped on the way. Gives up quietly after a few lost races: the next
/// request looks it up again.
pub fn remember(store: &mut dyn SharedStore, meta: &Meta, kind: Kind, key: &str, found: &Found, now: u64) {
    let count = meta.bucket_count(kind);
    let id = key_id(key);
    let name = bucket_name(kind, count, bucket_of(&id, count));
    for _ in 0..8 {
        let (bytes, cas) = match store.shared_get(&name) {
            Ok(Some((bytes, cas))) => (bytes, Some(cas)),
            Ok(None) => (Vec::new(), None),
            Err(_) => return,
        };
        let mut out = vec![MAGIC];
        for (entry, old) in decode_bucket(&bytes) {
            let expired = matches!(old, Found::Absent { until } if until <= now);
            if entry != id && !expired {
                encode_entry(&mut out, &entry, &old);
            }
        }
        encode_entry(&mut out, &id, found);
        if store.shared_set(&name, &out, cas).is_ok() {
            return;
        }
    }
}

/// A whole kind being built from a full load, entry by entry, straight into its buckets.
pub struct KindBuilder {
    kind: Kind,
    count: u32,
    buckets: Vec<Vec<u8>>,
    entries: usize,
}

impl KindBuilder {
    /// For about `expected` entries (about eight a bucket).
    pub fn new(kind: Kind, expected: usize) -> KindBuilder {
        let count = bucket_count_for(expected);
        KindBuilder { kind, count, buckets: vec![vec![MAGIC]; usize::try_from(count).unwrap_or(16)], entries: 0 }
    }

    pub fn add(&mut self, key: &str, value: &[u8]) {
        let id = key_id(key);
        let index = usize::try_from(bucket_of(&id, self.count)).unwrap_or(0);
        if let Some(bucket) = self.buckets.get_mut(index) {
            if !holds(bucket, &id) {
                encode_present(bucket, &id, value);
                self.entries += 1;
            }
        }
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Replaces the kind in shared data, and the meta with its bucket count; the buckets of a
    /// previous count are emptied once the meta announces the new one.
    pub fn write(self, store: &mut dyn SharedStore) {
        let mut meta = Meta::read(store);
        for (index, bucket) in self.buckets.iter().enumerate() {
            let _ = store.shared_set(&bucket_name(self.kind, self.count, index as u64), bucket, None);
        }
        let previous = meta.bucket_count(self.kind);
        meta.set_bucket_count(self.kind, self.count);
        meta.write(store);
        if previous != self.count {
            for index in 0..u64::from(previous) {
                let _ = store.shared_set(&bucket_name(self.kind, previous, index), &[MAGIC], None);
            }
        }
    }
}

/// The shared-data key of this Envoy's lookup budget ([`crate::host::take_from_budget`]).
pub const BUDGET_KEY: &str = "apim.cp.lookups";

/// A small kind's JSON, as stored.
pub fn document(store: &dyn SharedStore, document: Document) -> Option<Vec<u8>> {
    store.shared_get(document.key()).ok().flatten().map(|(bytes, _)| bytes)
}

pub fn write_document(store: &mut dyn SharedStore, document: Document, bytes: &[u8]) {
    let _ = store.shared_set(document.key(), bytes, None);
}

// ---------------------------------------------------------------------------------------------
// Entry values.
// ---------------------------------------------------------------------------------------------

/// A key mapping: the application (UUID and the control plane's numeric id) and the key type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub application: String,
    pub application_id: i64,
    pub production: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEntry {
    pub name: String,
    pub owner: String,
    pub policy: Option<String>,
    /// WSO2's numeric id (`id`), 0 when not sent.
    pub number: i64,
    /// The attributes with a text value, in the order they came.
    pub attributes: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubEntry {
    pub tier: String,
    /// `SubscriptionState` as its index in [`SUB_STATES`].
    pub state: u8,
}

/// Subscription states by their stored index.
pub const SUB_STATES: [crate::vocab::SubscriptionState; 6] = [
    crate::vocab::SubscriptionState::Unblocked,
    crate::vocab::SubscriptionState::Blocked,
    crate::vocab::SubscriptionState::ProdOnlyBlocked,
    crate::vocab::SubscriptionState::OnHold,
    crate::vocab::SubscriptionState::Rejected,
    crate::vocab::SubscriptionState::Inactive,
];

pub fn state_index(state: crate::vocab::SubscriptionState) -> u8 {
    SUB_STATES.iter().position(|known| *known == state).and_then(|i| u8::try_from(i).ok()).unwrap_or(0)
}

impl KeyEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_text(&mut out, &self.application);
        out.extend_from_slice(&self.application_id.to_le_bytes());
        out.push(u8::from(self.production));
        out
    }
    pub fn decode(bytes: &[u8]) -> Option<KeyEntry> {
        let mut reader = Reader::new(bytes);
        Some(KeyEntry {
            application: reader.text()?,
            application_id: i64::from_le_bytes(reader.array()?),
            production: reader.u8()? != 0,
        })
    }
}

impl AppEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_text(&mut out, &self.name);
        put_text(&mut out, &self.owner);
        put_text(&mut out, self.policy.as_deref().unwrap_or_default());
        out.extend_from_slice(&self.number.to_le_bytes());
        let count = self.attributes.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_le_bytes());
        for (name, value) in self.attributes.iter().take(count) {
            put_text(&mut out, name);
            put_text(&mut out, value);
        }
        out
    }
    /// An entry an earlier module wrote (name, owner and policy only) reads without a number
    /// and attributes.
    pub fn decode(bytes: &[u8]) -> Option<AppEntry> {
        let mut reader = Reader::new(bytes);
        let (name, owner, policy) = (reader.text()?, reader.text()?, reader.text()?);
        let policy = Some(policy).filter(|policy| !policy.is_empty());
        if reader.done() {
            return Some(AppEntry { name, owner, policy, number: 0, attributes: Vec::new() });
        }
        let number = i64::from_le_bytes(reader.array()?);
        let mut attributes = Vec::new();
        for _ in 0..reader.u16()? {
            attributes.push((reader.text()?, reader.text()?));
        }
        Some(AppEntry { name, owner, policy, number, attributes })
    }

    /// The entry of an application as the control plane sends it.
    pub fn from_wire(application: super::wire::Application) -> AppEntry {
        let attributes = application
            .attributes
            .into_iter()
            .filter_map(|(name, value)| match value {
                serde_json::Value::String(value) => Some((name, value)),
                _ => None,
            })
            .collect();
        AppEntry {
            name: application.name,
            owner: application.sub_name,
            policy: application.policy,
            number: application.id,
            attributes,
        }
    }
}

impl SubEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_text(&mut out, &self.tier);
        out.push(self.state);
        out
    }
    pub fn decode(bytes: &[u8]) -> Option<SubEntry> {
        let mut reader = Reader::new(bytes);
        Some(SubEntry { tier: reader.text()?, state: reader.u8()? })
    }
}

// ---------------------------------------------------------------------------------------------
// A bounds-checked reader and the writers it reads.
// ---------------------------------------------------------------------------------------------

/// Bytes with a u16 length (values and texts of entries; longer ones are cut at 65535).
fn put_short_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_short_bytes(out, text.as_bytes());
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }
    fn done(&self) -> bool {
        self.rest.is_empty()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.rest.get(..n)?, self.rest.get(n..)?);
        self.rest = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn short_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.short_bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throttle::limiter::tests::MemoryStore;

    #[test]
    fn entries_round_trip_and_garbage_reads_as_nothing() {
        let key = KeyEntry { application: "app-uuid".into(), application_id: 42, production: false };
        assert_eq!(KeyEntry::decode(&key.encode()), Some(key));
        let app = AppEntry { name: "App".into(), owner: "admin".into(), policy: None, number: 0, attributes: vec![] };
        assert_eq!(AppEntry::decode(&app.encode()), Some(app.clone()));
        let attributes = vec![("tier".into(), "gold".into()), ("".into(), "☃".into())];
        let described = AppEntry { policy: Some("10PerMin".into()), number: 7, attributes, ..app.clone() };
        assert_eq!(AppEntry::decode(&described.encode()), Some(described.clone()));
        // An earlier module's entry (name, owner, policy) reads without number and attributes;
        // one cut inside its attributes reads as nothing.
        let earlier = [&[3, 0][..], b"App", &[5, 0], b"admin", &[0, 0]].concat();
        assert_eq!(AppEntry::decode(&earlier), Some(app));
        let encoded = described.encode();
        assert_eq!(AppEntry::decode(encoded.get(..encoded.len() - 1).unwrap()), None);
        let sub = SubEntry { tier: "Gold".into(), state: 1 };
        assert_eq!(SubEntry::decode(&sub.encode()), Some(sub));
        assert_eq!(KeyEntry::decode(&[1, 2, 3]), None);
        assert!(decode_bucket(&[MAGIC, 0xff, 0xff, 0xff, 0xff, 1]).is_empty());
        let mut id_then_garbage = vec![MAGIC];
        id_then_garbage.extend_from_slice(&[7; 16]);
        id_then_garbage.extend_from_slice(&[PRESENT, 0xff, 0xff, 1]);
        assert!(decode_bucket(&id_then_garbage).is_empty(), "a value longer than what is left");
        assert!(decode_bucket(&[0, 1, 2]).is_empty());
    }

    #[test]
    fn a_full_load_replaces_a_kind_and_lookups_add_to_it() {
        let mut store = MemoryStore::default();
        let mut builder = KindBuilder::new(Kind::Apps, 1000);
        for i in 0..1000 {
            builder.add(&format!("k{i}"), &[i as u8]);
            builder.add(&format!("k{i}"), &[0xEE]);
        }
        assert_eq!(builder.entries(), 1000, "a key listed twice is kept once, the first");
        builder.write(&mut store);
        let mut meta = Meta::read(&store);
        assert_eq!(meta.bucket_count(Kind::Apps), 128);
        assert_eq!(lookup(&store, &meta, Kind::Apps, "k7"), Some(Found::Present(vec![7])));
        assert_eq!(lookup(&store, &meta, Kind::Apps, "nope"), None);
        remember(&mut store, &meta, Kind::Apps, "nope", &Found::Absent { until: 100 }, 50);
        assert_eq!(lookup(&store, &meta, Kind::Apps, "nope"), Some(Found::Absent { until: 100 }));
        remember(&mut store, &meta, Kind::Apps, "nope", &Found::Present(vec![1]), 60);
        assert_eq!(lookup(&store, &meta, Kind::Apps, "nope"), Some(Found::Present(vec![1])));
        // A smaller load shrinks the layout and empties the old buckets.
        let mut builder = KindBuilder::new(Kind::Apps, 10);
        for i in 0..10 {
            builder.add(&format!("k{i}"), &[i as u8]);
        }
        builder.write(&mut store);
        meta = Meta::read(&store);
        assert_eq!(meta.bucket_count(Kind::Apps), 16);
        assert_eq!(lookup(&store, &meta, Kind::Apps, "k900"), None);
        assert!(store.data.iter().filter(|(key, _)| key.starts_with("apim.cp.apps.128.")).all(|(_, v)| v.0.len() == 1));
        meta.generation = 3;
        meta.write(&mut store);
        assert_eq!(Meta::read(&store), meta);
    }

    /// Shared data another module version wrote (a `vm_id` shared) can hold any bucket count:
    /// emptying a kind writes each bucket, so a count is never taken above what a load makes.
    #[test]
    fn a_bucket_count_read_is_never_above_what_a_load_makes() {
        let mut store = MemoryStore::default();
        Meta { generation: 1, loaded_at: 0, buckets: [u32::MAX, 17, 0], source: 9 }.write(&mut store);
        let meta = Meta::read(&store);
        assert_eq!(meta.buckets, [MAX_BUCKETS, 17, 0]);
        assert_eq!(meta.bucket_count(Kind::Keys), bucket_count_for(usize::MAX));
    }
}
