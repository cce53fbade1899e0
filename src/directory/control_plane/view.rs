//! What one worker holds of the control plane's directory: decoded from shared data once per
//! generation (the routing table with the control plane's APIs, policies by level, blocking
//! conditions, revoked tokens) and, entry by entry, the key mappings, applications and
//! subscriptions its requests used. A full load that changed something bumps the generation and
//! every worker starts afresh; entries an on-demand lookup adds need no new generation.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::store::{self, AppEntry, Document, Found, KeyEntry, Kind, Meta, SubEntry, SEPARATOR};
use super::{wire, ControlPlane};
use crate::directory::{AppKey, Application, BlockingCondition, PolicyLevel, PolicySpec, Subscription, Wso2Details};
use crate::host::SharedStore;
use crate::routing::{Api, Table};
use crate::vocab::{KeyType, KmId};
use serde_json::{Map, Value};

/// An entry as a worker remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cached<T> {
    Present(T),
    /// The control plane said it does not exist; believed until this second.
    Absent {
        until: u64,
    },
}

/// The clock, and how long a "not found" counts (`negative_ttl_s`): what decides whether a
/// remembered absence still counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trust {
    pub now: u64,
    pub negative_ttl_s: u64,
}

impl Trust {
    /// Whether an absence remembered until `until` counts now: it has not expired, and it was
    /// remembered no later than now. One from the clock's future (stepped back since; or kept
    /// under a longer `negative_ttl_s`) would count for as long as the step: it is asked again.
    pub fn counts(self, until: u64) -> bool {
        self.now < until && until <= self.now.saturating_add(self.negative_ttl_s)
    }
}

/// The most entries of each kind a worker keeps decoded (beyond, it starts afresh).
const MAX_CACHED: usize = 50_000;

/// One worker's view of the control plane's directory.
#[derive(Debug)]
pub struct CpWorker {
    /// The generation decoded; `None` before the first look.
    generation: Option<u64>,
    /// Key manager names by [`KmId`] (WSO2 names key mappings by the key manager's name).
    key_managers: Vec<String>,
    /// The configuration's APIs and the control plane's.
    pub routes: Rc<Table>,
    policies: [HashMap<String, Rc<PolicySpec>>; 3],
    /// Policies that count nothing (WSO2's `Unlimited`, or 2147483647 a minute) by level: known,
    /// unlike a policy the control plane did not send or the filter could not read.
    unlimited: [HashSet<String>; 3],
    /// Whether the control plane sent any policy at all (read, counting nothing, or unreadable),
    /// or a policy document was never loaded: then its tiers are policies, and a tier it does not
    /// define is refused (900809).
    sent_policies: bool,
    /// The configuration's conditions and the control plane's.
    blocking: Vec<BlockingCondition>,
    /// Revoked tokens (`jti` or signature) and when their revocation can be forgotten.
    revoked: HashMap<String, u64>,
    keys: HashMap<String, Cached<KeyEntry>>,
    apps: HashMap<String, Cached<Rc<Application>>>,
    subs: HashMap<String, Cached<Rc<Subscription>>>,
    /// The control plane this worker's configuration reads ([`super::ControlPlane::source`]; 0
    /// before the first sync): the shared data of another is never decoded or read.
    source: u64,
    /// The condition types of API policies' groups that apply (set at each sync).
    condition_types: wire::ConditionTypes,
    /// A load of this control plane brought its APIs: until then a request that matches no API
    /// may be for one of them.
    apis_loaded: bool,
}

/// What a generation held, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub generation: u64,
    pub apis: usize,
    pub skipped_apis: Vec<String>,
    pub policies: usize,
    pub skipped_policies: Vec<String>,
    pub blocking: usize,
    pub revoked: usize,
}

fn level_index(level: PolicyLevel) -> usize {
    match level {
        PolicyLevel::Api => 0,
        PolicyLevel::Subscription => 1,
        PolicyLevel::Application => 2,
    }
}

/// Where what a lookup found of a policy is kept: the generation it is of, then the answer, or
/// an absence and until when it counts.
fn learned_policy_key(level: PolicyLevel, name: &str) -> String {
    format!("apim.cp.policy.{}.{name}", level_index(level))
}

const LEARNED_ABSENT: u8 = 0;
const LEARNED_PRESENT: u8 = 1;

pub fn key_of_client(key_manager: &str, client_id: &str) -> String {
    format!("{key_manager}{SEPARATOR}{client_id}")
}

pub fn key_of_subscription(application: &str, api_uuid: &str) -> String {
    format!("{application}{SEPARATOR}{api_uuid}")
}

impl CpWorker {
    pub fn new(key_managers: Vec<String>, routes: Rc<Table>, blocking: Vec<BlockingCondition>) -> CpWorker {
        CpWorker {
            generation: None,
            key_managers,
            routes,
            policies: Default::default(),
            unlimited: Default::default(),
            sent_policies: false,
            blocking,
            revoked: HashMap::new(),
            keys: HashMap::new(),
            apps: HashMap::new(),
            subs: HashMap::new(),
            source: 0,
            condition_types: wire::ConditionTypes::default(),
            apis_loaded: false,
        }
    }

    /// Whether a load of this control plane brought its APIs (as of the last [`CpWorker::sync`]).
    pub fn apis_loaded(&self) -> bool {
        self.apis_loaded
    }

    /// Catches up with the shared data: a new generation is decoded (what it held comes back,
    /// for the log); the same generation costs one small read.
    pub fn sync(
        &mut self,
        store: &dyn SharedStore,
        control_plane: &ControlPlane,
        fixed_blocking: &[BlockingCondition],
    ) -> Option<Loaded> {
        let meta = Meta::read(store);
        self.source = control_plane.source;
        self.condition_types = control_plane.condition_types;
        // Another control plane's data (this configuration's was replaced and its listener
        // drains, or another gateway whose filter shares the vm_id has no name of its own): this
        // worker keeps what it decoded from its own.
        if self.generation == Some(meta.generation) || !self.owns(&meta) {
            return None;
        }
        self.generation = Some(meta.generation);
        self.apis_loaded = store::document(store, Document::Apis).is_some_and(|bytes| !bytes.is_empty());
        let mut loaded = Loaded { generation: meta.generation, ..Loaded::default() };
        self.routes = Rc::new(routes(store, control_plane, &mut loaded));
        self.sent_policies = false;
        for (level, document) in [
            (PolicyLevel::Api, Document::ApiPolicies),
            (PolicyLevel::Subscription, Document::SubscriptionPolicies),
            (PolicyLevel::Application, Document::ApplicationPolicies),
        ] {
            let mut policies = HashMap::new();
            let mut unlimited = HashSet::new();
            let list: Vec<wire::Policy> = read_list(store, document);
            // A policy document no load has brought yet (the control plane down, slow or failing
            // for it since start) leaves its tiers unknown, not absent: they are refused (900809)
            // until a load brings them, never let through unthrottled.
            let never_loaded = store::document(store, document).is_none_or(|bytes| bytes.is_empty());
            self.sent_policies |= !list.is_empty() || never_loaded;
            for policy in &list {
                match wire::policy_at(level, policy, self.condition_types, &mut loaded.skipped_policies) {
                    Ok(Some(spec)) => {
                        policies.insert(policy.name.clone(), Rc::new(spec));
                    }
                    Ok(None) => {
                        unlimited.insert(policy.name.clone());
                    }
                    Err(reason) => loaded.skipped_policies.push(format!("{} ({reason})", policy.name)),
                }
            }
            loaded.policies += policies.len();
            if let Some(slot) = self.policies.get_mut(level_index(level)) {
                *slot = policies;
            }
            if let Some(slot) = self.unlimited.get_mut(level_index(level)) {
                *slot = unlimited;
            }
        }
        let block: wire::Block = store::document(store, Document::Block)
            .and_then(|bytes| crate::pieces::from_bytes(&bytes).ok())
            .unwrap_or_default();
        let (conditions, skipped) = wire::blocking(&block, &control_plane.tenant);
        if skipped > 0 {
            loaded.skipped_policies.push(format!("{skipped} blocking conditions (unreadable, or of a subscription)"));
        }
        loaded.blocking = conditions.len();
        self.blocking = fixed_blocking.iter().cloned().chain(conditions).collect();
        let revoked: Vec<wire::RevokedJwt> = store::document(store, Document::Revoked)
            .and_then(|bytes| crate::pieces::from_bytes(&bytes).ok())
            .unwrap_or_default();
        self.revoked = revoked
            .into_iter()
            .filter(|entry| !entry.jwt_signature.is_empty())
            .map(|entry| (entry.jwt_signature, wire::expiry_seconds(entry.expiry_time)))
            .collect();
        loaded.revoked = self.revoked.len();
        self.keys.clear();
        self.apps.clear();
        self.subs.clear();
        Some(loaded)
    }

    /// Whether a token (`jti` or signature) was revoked.
    pub fn revoked(&self, token_id: &str) -> bool {
        self.revoked.contains_key(token_id)
    }

    pub fn has_policies(&self) -> bool {
        self.sent_policies
    }

    pub fn blocking(&self) -> &[BlockingCondition] {
        &self.blocking
    }

    pub fn key_manager_name(&self, key_manager: KmId) -> Option<&str> {
        self.key_managers.get(key_manager.index()).map(String::as_str)
    }

    // -----------------------------------------------------------------------------------------
    // Entries: this worker's, else the shared data's.
    // -----------------------------------------------------------------------------------------

    /// Whether the shared data is this worker's control plane's (or of no known source).
    fn owns(&self, meta: &Meta) -> bool {
        meta.source == 0 || self.source == 0 || meta.source == self.source
    }

    /// A key mapping as far as this Envoy knows: `None` when it must be looked up. A "not found"
    /// counts as [`Trust::counts`] says.
    pub fn key(&mut self, store: &dyn SharedStore, key: &str, now: Trust) -> Option<Cached<KeyEntry>> {
        known(&mut self.keys, self.source, store, Kind::Keys, key, now, KeyEntry::decode)
    }

    pub fn app(&mut self, store: &dyn SharedStore, uuid: &str, now: Trust) -> Option<Cached<Rc<Application>>> {
        known(&mut self.apps, self.source, store, Kind::Apps, uuid, now, |bytes| {
            AppEntry::decode(bytes).map(|entry| Rc::new(application(uuid, entry)))
        })
    }

    pub fn sub(&mut self, store: &dyn SharedStore, key: &str, now: Trust) -> Option<Cached<Rc<Subscription>>> {
        known(&mut self.subs, self.source, store, Kind::Subs, key, now, |bytes| {
            SubEntry::decode(bytes).map(|entry| Rc::new(subscription(entry)))
        })
    }

    /// Remembers what a lookup found, here and for every worker.
    pub fn learn_key(&mut self, store: &mut dyn SharedStore, key: &str, found: Cached<KeyEntry>, now: u64) {
        let shared = match &found {
            Cached::Present(entry) => Found::Present(entry.encode()),
            Cached::Absent { until } => Found::Absent { until: *until },
        };
        let meta = Meta::read(store);
        store::remember(store, &meta, Kind::Keys, key, &shared, now);
        if matches!(shared, Found::Present(_)) {
            store::forget_fingerprint(store, Kind::Keys);
        }
        insert(&mut self.keys, key, found);
    }

    pub fn learn_app(&mut self, store: &mut dyn SharedStore, uuid: &str, found: Cached<AppEntry>, now: u64) {
        let (shared, cached) = match found {
            Cached::Present(entry) => {
                (Found::Present(entry.encode()), Cached::Present(Rc::new(application(uuid, entry))))
            }
            Cached::Absent { until } => (Found::Absent { until }, Cached::Absent { until }),
        };
        let meta = Meta::read(store);
        store::remember(store, &meta, Kind::Apps, uuid, &shared, now);
        if matches!(shared, Found::Present(_)) {
            store::forget_fingerprint(store, Kind::Apps);
        }
        insert(&mut self.apps, uuid, cached);
    }

    pub fn learn_sub(&mut self, store: &mut dyn SharedStore, key: &str, found: Cached<SubEntry>, now: u64) {
        let (shared, cached) = match found {
            Cached::Present(entry) => (Found::Present(entry.encode()), Cached::Present(Rc::new(subscription(entry)))),
            Cached::Absent { until } => (Found::Absent { until }, Cached::Absent { until }),
        };
        let meta = Meta::read(store);
        store::remember(store, &meta, Kind::Subs, key, &shared, now);
        if matches!(shared, Found::Present(_)) {
            store::forget_fingerprint(store, Kind::Subs);
        }
        insert(&mut self.subs, key, cached);
    }

    // -----------------------------------------------------------------------------------------
    // The directory's queries (after the request's lookups ran: only what is here is found).
    // -----------------------------------------------------------------------------------------

    pub fn client(&self, client_id: &str, key_manager: KmId) -> Option<AppKey> {
        let name = self.key_manager_name(key_manager)?;
        match self.keys.get(&key_of_client(name, client_id))? {
            Cached::Present(entry) => Some(AppKey {
                application: Rc::from(entry.application.as_str()),
                key_type: if entry.production { KeyType::Production } else { KeyType::Sandbox },
                key_manager: Some(key_manager),
            }),
            Cached::Absent { .. } => None,
        }
    }

    pub fn application(&self, id: &str) -> Option<Rc<Application>> {
        match self.apps.get(id)? {
            Cached::Present(application) => Some(Rc::clone(application)),
            Cached::Absent { .. } => None,
        }
    }

    pub fn subscription(&self, application: &str, api: &Api) -> Option<Rc<Subscription>> {
        let api_uuid = api.source_id.as_deref()?;
        match self.subs.get(&key_of_subscription(application, api_uuid))? {
            Cached::Present(subscription) => Some(Rc::clone(subscription)),
            Cached::Absent { .. } => None,
        }
    }

    /// What an on-demand lookup in this generation found of a policy the full load did not
    /// bring, for every worker: `Some(true)`, the policy is now this worker's too; `Some(false)`,
    /// the control plane has none readable of that name (an absence counts as [`Trust::counts`]
    /// says); `None`, look it up.
    pub fn learned_policy(
        &mut self,
        store: &dyn SharedStore,
        level: PolicyLevel,
        name: &str,
        now: Trust,
    ) -> Option<bool> {
        let meta = Meta::read(store);
        if !self.owns(&meta) {
            return None;
        }
        let Ok(Some((bytes, _))) = store.shared_get(&learned_policy_key(level, name)) else { return None };
        let (generation, rest) = bytes.split_first_chunk::<8>()?;
        if u64::from_le_bytes(*generation) != meta.generation {
            return None;
        }
        match rest.split_first()? {
            (&LEARNED_ABSENT, until) => {
                let until = u64::from_le_bytes(*until.first_chunk::<8>()?);
                now.counts(until).then_some(false)
            }
            (_, answer) => Some(self.take_policy(store.gateway_scope(), level, name, answer, now.now)),
        }
    }

    /// Takes the answer to a lookup of a policy asked in `generation` (WSO2's list; `None`: it
    /// has no such policy, believed until `until`): here, and for every worker while the shared
    /// data stays of that generation (a full load that lands meanwhile makes it stale: it is
    /// never stamped with the load's generation). A policy
    /// the answer holds but the filter cannot read is remembered as absent, until `until` too:
    /// asked again then (API-M's admin may have fixed it), and never decoded again per request.
    pub fn learn_policy(
        &mut self,
        store: &mut dyn SharedStore,
        level: PolicyLevel,
        name: &str,
        answer: Option<&[u8]>,
        generation: u64,
        (now, until): (u64, u64),
    ) {
        let mut value = generation.to_le_bytes().to_vec();
        let readable = answer.filter(|answer| self.take_policy(store.gateway_scope(), level, name, answer, now));
        match readable {
            Some(answer) => {
                value.push(LEARNED_PRESENT);
                value.extend_from_slice(answer);
                store::forget_resource_fingerprint(store, store::policy_resource(level));
            }
            None => {
                value.push(LEARNED_ABSENT);
                value.extend_from_slice(&until.to_le_bytes());
            }
        }
        let _ = store.shared_set(&learned_policy_key(level, name), &value, None);
    }

    /// Takes the policy `name` of a lookup's answer into this worker's policies; whether it is
    /// known now (absent from the answer, or unreadable: not, and logged now and then).
    fn take_policy(&mut self, scope: &str, level: PolicyLevel, name: &str, answer: &[u8], now: u64) -> bool {
        let list = crate::pieces::from_bytes::<wire::Envelope<wire::Policy>>(answer).map(|envelope| envelope.list);
        let Some(policy) = list.ok().and_then(|list| list.into_iter().find(|policy| policy.name == name)) else {
            return false;
        };
        let mut skipped = Vec::new();
        let index = level_index(level);
        match wire::policy_at(level, &policy, self.condition_types, &mut skipped) {
            Ok(Some(spec)) => {
                if let Some(policies) = self.policies.get_mut(index) {
                    policies.insert(policy.name.clone(), Rc::new(spec));
                }
            }
            Ok(None) => {
                if let Some(unlimited) = self.unlimited.get_mut(index) {
                    unlimited.insert(policy.name.clone());
                }
            }
            Err(reason) => skipped.push(format!("{} ({reason})", policy.name)),
        }
        for skipped in skipped {
            crate::host::warn_repeated(scope, "control_plane_policy_not_applied", now, || {
                format!("control plane: not applied: {skipped}")
            });
        }
        self.knows_policy(level, name)
    }

    pub fn policy(&self, level: PolicyLevel, name: &str) -> Option<Rc<PolicySpec>> {
        self.policies.get(level_index(level))?.get(name).cloned()
    }

    /// Whether the control plane defines a policy of that name at that level (one that counts,
    /// or one that counts nothing).
    pub fn knows_policy(&self, level: PolicyLevel, name: &str) -> bool {
        let index = level_index(level);
        self.policies.get(index).is_some_and(|policies| policies.contains_key(name))
            || self.unlimited.get(index).is_some_and(|unlimited| unlimited.contains(name))
    }
}

/// This worker's entry, else the shared data's (decoded and kept); an absence that has expired,
/// or nothing at all, is `None`: look it up.
fn known<T: Clone>(
    cache: &mut HashMap<String, Cached<T>>,
    source: u64,
    store: &dyn SharedStore,
    kind: Kind,
    key: &str,
    now: Trust,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Option<Cached<T>> {
    match cache.get(key) {
        Some(Cached::Absent { until }) if !now.counts(*until) => {}
        Some(found) => return Some(found.clone()),
        None => {}
    }
    let meta = Meta::read(store);
    // Another control plane's data is not this worker's to read (see [`CpWorker::sync`]).
    if meta.source != 0 && source != 0 && meta.source != source {
        return None;
    }
    let found = match store::lookup(store, &meta, kind, key)? {
        Found::Present(bytes) => Cached::Present(decode(&bytes)?),
        Found::Absent { until } if now.counts(until) => Cached::Absent { until },
        Found::Absent { .. } => return None,
    };
    insert(cache, key, found.clone());
    Some(found)
}

fn insert<T>(cache: &mut HashMap<String, Cached<T>>, key: &str, found: Cached<T>) {
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key.to_string(), found);
}

fn application(uuid: &str, entry: AppEntry) -> Application {
    // WSO2's ids start at 1: 0 is an application whose `id` was not sent.
    let number = if entry.number > 0 { entry.number.to_string() } else { String::new() };
    let mut attributes = Map::new();
    for (name, value) in entry.attributes {
        attributes.insert(name, Value::String(value));
    }
    let details = Wso2Details { number: &number, attributes };
    Application::with_details(Rc::from(uuid), &entry.name, &entry.owner, entry.policy.as_deref(), details)
}

fn subscription(entry: SubEntry) -> Subscription {
    let state = store::SUB_STATES.get(usize::from(entry.state)).copied().unwrap_or_default();
    Subscription { tier: entry.tier, state }
}

/// A list document (`{"list": [...]}`) as stored; garbage reads as empty.
fn read_list<T: serde::de::DeserializeOwned>(store: &dyn SharedStore, document: Document) -> Vec<T> {
    store::document(store, document)
        .and_then(|bytes| crate::pieces::from_bytes::<wire::Envelope<T>>(&bytes).ok())
        .map(|envelope| envelope.list)
        .unwrap_or_default()
}

/// The configuration's APIs, then the control plane's that map to clusters and do not clash.
fn routes(store: &dyn SharedStore, control_plane: &ControlPlane, loaded: &mut Loaded) -> Table {
    let mut table = Table { cors_allow_methods: control_plane.cors_allow_methods.clone(), ..Table::default() };
    for (index, raw) in control_plane.static_apis.iter().enumerate() {
        // Checked when the configuration loaded.
        let _ = table.add(&format!("apis[{index}]"), raw.clone(), &|_| true);
    }
    let apis: Vec<wire::Api> = read_list(store, Document::Apis);
    for api in &apis {
        let label = format!("{}:{}", api.name, api.version);
        // API-M answers the tenant of the user it authenticates, whatever `xWSO2Tenant` says
        // (`validateTenantDomain`): another tenant's APIs are not this gateway's.
        if let Some(tenant) =
            api.organization.as_deref().filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(&control_plane.tenant))
        {
            loaded.skipped_apis.push(format!("{label} (of tenant `{tenant}`, not control_plane.tenant)"));
            continue;
        }
        if wire::is_product(&api.api_type) && !control_plane.names_endpoints(&api.name, &api.version) {
            loaded.skipped_apis.push(format!("{label} ({})", wire::PRODUCT_NEEDS_ENDPOINTS));
            continue;
        }
        let Some(endpoints) = control_plane.endpoints_for(&api.name, &api.version) else {
            loaded.skipped_apis.push(format!("{label} (no cluster in control_plane.endpoints)"));
            continue;
        };
        if !control_plane.serve_event_apis && wire::is_event_api(&api.api_type) {
            loaded.skipped_apis.push(format!("{label} ({})", wire::EVENT_APIS_NOT_SERVED));
            continue;
        }
        let websocket = wire::takes_query_credentials(&api.api_type);
        let counts_messages = control_plane.count_messages && wire::is_event_api(&api.api_type);
        let compiled = wire::api(api, endpoints, &control_plane.security).and_then(|raw| {
            table.add_from_control_plane(&format!("control plane API {label}"), raw).map_err(|error| error.to_string())
        });
        match compiled {
            Ok(()) => {
                if let Some(last) = table.apis.last_mut() {
                    last.source_id = Some(api.uuid.clone());
                    // A browser's WebSocket cannot set headers: API-M's gateway takes a handshake's
                    // OAuth2 token, and its API key where the API takes API keys, from the query.
                    last.websocket_query_credentials = websocket;
                    last.counts_websocket_frames = counts_messages && websocket;
                    last.counts_server_sent_events = counts_messages && !websocket;
                }
                loaded.apis += 1;
            }
            Err(reason) => loaded.skipped_apis.push(format!("{label} ({reason})")),
        }
    }
    table
}
