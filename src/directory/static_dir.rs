//! The directory written in the filter's configuration: compiled once, checked against the
//! routing table and the key managers, and indexed for the request path (API keys by the first
//! bytes of their hash, subscriptions by application then API).

mod packed;
mod staged;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use foldhash::fast::FixedState;
use subtle::ConstantTimeEq;

use super::index::{offset, Index};
use super::{AppKey, Application, BlockingCondition, Directory, PolicyLevel, PolicySpec, Subscription};
use crate::cidr::IpRange;
use crate::routing::Api;
use crate::routing::Table;
use crate::schema::{ConfigError, RawBlockingCondition, RawPolicy};
use crate::vocab::{is_unlimited, ApiId, KeyType, KmId, SubscriptionState, TimeUnit};
pub use packed::{PackedSubscriptions, SubscriptionView};
pub use staged::StagedApplications;

/// The names of the configured policies, and `Unlimited` in any case.
#[derive(Debug, Default)]
pub struct PolicyNames(HashSet<String, FixedState>);

impl PolicyNames {
    /// Whether a policy of that name is defined (`Unlimited`, in any case, always is).
    pub fn contains(&self, name: &str) -> bool {
        is_unlimited(name) || self.0.contains(name)
    }
}

/// The directory of a static configuration. Built for configurations of 100,000 applications and
/// more: the applications, the OAuth2 clients, the API keys and the subscriptions each in one
/// list, indexed by tables of places (ids are not copied into maps: 100,000 of them were 100,000
/// allocations), and identical subscriptions (same tier and state) shared.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    /// `listed` by application id.
    applications: Index,
    /// The applications in configuration order.
    listed: Vec<Listed>,
    /// The OAuth2 client ids one after another (`clients` says where each is).
    client_ids: String,
    /// The OAuth2 clients in configuration order.
    clients: Vec<Client>,
    /// `clients` by client id.
    client_index: Index,
    /// SHA-256 of opaque API keys with their application keys, in configuration order.
    api_keys: Vec<([u8; 32], AppKey)>,
    /// The API keys' places in `api_keys` (low 64 bits) under the first 8 bytes of their digest
    /// (high 64 bits), sorted: a lookup searches by the first 8 bytes, then compares whole in
    /// constant time.
    api_key_order: Vec<u128>,
    /// (application's place in `listed`, API, subscription), sorted by place then API; each
    /// application knows its run.
    subscriptions: Vec<(u32, ApiId, Rc<Subscription>)>,
    /// The ids the APIs had in the table the directory was checked against, by label: a lookup
    /// may come with an API of another table (the control plane's, which numbers its own).
    api_ids: HashMap<String, ApiId, FixedState>,
    policies: HashMap<String, Rc<PolicySpec>>,
    blocking: Vec<BlockingCondition>,
}

/// An application as the directory keeps it.
#[derive(Debug)]
struct Listed {
    application: Rc<Application>,
    /// The key types the application holds (bit 0 production, bit 1 sandbox).
    key_types: u8,
    /// Its subscriptions: where they start in the directory's `subscriptions`, and how many.
    subscriptions: (u32, u32),
}

/// An OAuth2 client as the directory keeps it.
#[derive(Debug)]
struct Client {
    /// Where its id is in the directory's `client_ids` (start, end).
    id: (u32, u32),
    key: AppKey,
}

/// What the directory's configuration is checked against.
pub struct Context<'a> {
    pub routes: &'a Table,
    /// The configured key managers' names, in order.
    pub key_managers: &'a [String],
    /// Whether applications arrive at run time, from a control plane or named by JWT API keys (a
    /// blocking condition may then name one this configuration does not hold).
    pub applications_at_run_time: bool,
}

impl StaticDirectory {
    /// Checks the policies alone (routing refers to them before the rest is compiled): the set of
    /// defined names, `Unlimited` (in any case) included.
    pub fn policy_names(policies: &BTreeMap<String, RawPolicy>) -> Result<PolicyNames, ConfigError> {
        let mut names = PolicyNames::default();
        for (name, policy) in policies {
            let field = format!("policies.{name}");
            if is_unlimited(name) {
                return Err(ConfigError::new(field, "`Unlimited` (in any case) is built in and cannot be redefined"));
            }
            if name.trim().is_empty() {
                return Err(ConfigError::new("policies", "a policy name must not be empty"));
            }
            match (policy.requests, policy.bytes) {
                (Some(_), Some(_)) => return Err(ConfigError::new(field, "set `requests` or `bytes`, not both")),
                (None, None) => return Err(ConfigError::new(field, "set one of `requests` and `bytes`")),
                (Some(0), None) => return Err(ConfigError::new(format!("{field}.requests"), "must be at least 1")),
                (None, Some(0)) => return Err(ConfigError::new(format!("{field}.bytes"), "must be at least 1")),
                _ => {}
            }
            if policy.unit_count == 0 {
                return Err(ConfigError::new(format!("{field}.unit_count"), "must be at least 1"));
            }
            for (index, group) in policy.condition_groups.iter().enumerate() {
                crate::conditions::group_limit(&format!("{field}.condition_groups[{index}]"), group)?;
            }
            if let Some(burst) = &policy.burst {
                if burst.requests == 0 {
                    return Err(ConfigError::new(format!("{field}.burst.requests"), "must be at least 1"));
                }
                if policy.requests.is_some_and(|requests| burst.requests >= requests) {
                    return Err(ConfigError::new(
                        format!("{field}.burst.requests"),
                        "must be below the policy's own `requests`",
                    ));
                }
                if !matches!(burst.per, TimeUnit::Second | TimeUnit::Minute) {
                    return Err(ConfigError::new(format!("{field}.burst.per"), "must be `second` or `minute`"));
                }
            }
            names.0.insert(name.clone());
        }
        Ok(names)
    }

    /// Checks and compiles the directory: the applications were compiled as they were parsed
    /// ([`StagedApplications`]); their remaining checks run here, then one pass over the
    /// subscriptions (field names for errors are only built for an error).
    pub fn compile(
        mut applications: StagedApplications,
        subscriptions: PackedSubscriptions,
        policies: BTreeMap<String, RawPolicy>,
        blocking: Vec<RawBlockingCondition>,
        context: &Context<'_>,
    ) -> Result<StaticDirectory, ConfigError> {
        let names = StaticDirectory::policy_names(&policies)?;
        let blocking = compile_blocking(&blocking)?;
        check_blocking_targets(&blocking, context.routes)?;
        applications.finish(context, &names)?;
        let StagedApplications {
            applications, listed, client_ids, clients, client_index, api_keys, key_origins, ..
        } = applications;
        let mut directory = StaticDirectory {
            policies: policies
                .iter()
                .map(|(name, policy)| Ok((name.clone(), Rc::new(policy_spec(name, policy)?))))
                .collect::<Result<_, ConfigError>>()?,
            blocking,
            applications,
            listed,
            client_ids,
            clients,
            client_index,
            api_keys,
            ..StaticDirectory::default()
        };
        directory.index_api_keys(&key_origins)?;
        drop(key_origins);
        add_subscriptions(&mut directory, &subscriptions, context.routes, &names)?;
        directory.resolve_blocked_applications(context.applications_at_run_time)?;
        Ok(directory)
    }

    /// Indexes the API keys by the first 8 bytes of their digest. The keys stay in place: moving
    /// them into digest order cost a cache miss each at 100,000 keys. The same key twice is
    /// refused, naming the second. `origins` are each key's application and key index.
    fn index_api_keys(&mut self, origins: &[(usize, usize)]) -> Result<(), ConfigError> {
        let mut order: Vec<u128> = self
            .api_keys
            .iter()
            .enumerate()
            .map(|(position, (digest, _))| u128::from(bucket_of(digest)) << 64 | position as u128)
            .collect();
        order.sort_unstable();
        // A repeated key shares its first 8 bytes with another: only then are the keys checked
        // whole (random digests almost never share them).
        if order.windows(2).any(|pair| matches!(pair, [a, b] if a >> 64 == b >> 64)) {
            if let Some((index, key_index)) = first_repeated_key(&self.api_keys, origins) {
                return Err(ConfigError::new(
                    format!("applications[{index}].api_keys[{key_index}].sha256"),
                    "the same key is configured twice",
                ));
            }
        }
        self.api_key_order = order;
        Ok(())
    }

    /// Blocking conditions naming an application: by its id, or as WSO2 writes them,
    /// `<owner>:<name>` (API-M's blocking conditions and the control plane's); an id or an owner
    /// and name this configuration does not hold would block nothing, and is refused unless a
    /// control plane or a JWT API key may bring it.
    fn resolve_blocked_applications(&mut self, applications_at_run_time: bool) -> Result<(), ConfigError> {
        let mut blocking = std::mem::take(&mut self.blocking);
        for (index, condition) in blocking.iter_mut().enumerate() {
            let (field, id) = match &*condition {
                BlockingCondition::Application(id) => (format!("blocking[{index}].application"), id),
                BlockingCondition::Subscription { application, .. } => {
                    (format!("blocking[{index}].subscription"), application)
                }
                _ => continue,
            };
            if self.listed(id).is_some() {
                continue;
            }
            match (&*condition, id.split_once(':')) {
                (BlockingCondition::Application(_), Some((owner, name)))
                    if !owner.is_empty()
                        && !name.is_empty()
                        && (applications_at_run_time || self.holds_application_named(owner, name)) =>
                {
                    *condition =
                        BlockingCondition::ApplicationNamed { owner: owner.to_string(), name: name.to_string() };
                }
                _ if applications_at_run_time => {}
                _ => {
                    let reason = format!(
                        "application `{id}` is not defined (name an application by its `id`, or as WSO2 does, \
                         `<owner>:<name>`, both as the application is configured)"
                    );
                    return Err(ConfigError::new(field, reason));
                }
            }
        }
        self.blocking = blocking;
        Ok(())
    }

    /// Whether this configuration holds an application of that owner and name (compared as a
    /// blocking condition compares them: exactly).
    fn holds_application_named(&self, owner: &str, name: &str) -> bool {
        self.listed.iter().any(|listed| listed.application.owner() == owner && listed.application.name() == name)
    }

    fn listed(&self, id: &str) -> Option<&Listed> {
        let at = self.applications.find(self.applications.hash(id), id, |at| listed_id(&self.listed, at))?;
        self.listed.get(usize::try_from(at).ok()?)
    }

    pub fn len(&self) -> (usize, usize) {
        (self.listed.len(), self.subscriptions.len())
    }
}

impl Directory for StaticDirectory {
    fn client(&self, client_id: &str, key_manager: KmId) -> Option<AppKey> {
        // A client id is unique per key manager (one without a key manager is the only key
        // manager's): another key manager's client of that id is not this token's (WSO2's
        // `getKeyMappingByKeyAndKeyManager`), and the control plane may still know it.
        let (ids, clients) = (&self.client_ids, &self.clients);
        let at = self.client_index.find_where(self.client_index.hash(client_id), |at| {
            let issuer = clients.get(at as usize).and_then(|client| client.key.key_manager);
            self::client_id(ids, clients, at) == Some(client_id) && issuer.is_none_or(|issuer| issuer == key_manager)
        })?;
        self.clients.get(usize::try_from(at).ok()?).map(|client| client.key.clone())
    }

    fn api_key(&self, hash: &[u8; 32]) -> Option<AppKey> {
        let bucket = u128::from(bucket_of(hash));
        let start = self.api_key_order.partition_point(|packed| packed >> 64 < bucket);
        let mut found = None;
        for packed in self.api_key_order.iter().skip(start).take_while(|packed| *packed >> 64 == bucket) {
            if let Some((stored, app_key)) = self.api_keys.get(place(*packed)) {
                if bool::from(stored.ct_eq(hash)) {
                    found = Some(app_key.clone());
                }
            }
        }
        found
    }

    fn application(&self, id: &str) -> Option<Rc<Application>> {
        self.listed(id).map(|listed| Rc::clone(&listed.application))
    }

    fn subscription(&self, application: &str, api: &Api) -> Option<Rc<Subscription>> {
        let (first, count) = self.listed(application)?.subscriptions;
        let (first, count) = (usize::try_from(first).ok()?, usize::try_from(count).ok()?);
        let subscriptions = self.subscriptions.get(first..first.checked_add(count)?)?;
        let api = self.api_ids.get(api.label.as_str())?;
        let at = subscriptions.binary_search_by(|(_, id, _)| id.cmp(api)).ok()?;
        subscriptions.get(at).map(|(_, _, subscription)| Rc::clone(subscription))
    }

    fn policy(&self, _: PolicyLevel, name: &str) -> Option<Rc<PolicySpec>> {
        // The configuration has one namespace of policies for every level.
        self.policies.get(name).cloned()
    }

    fn knows_policy(&self, _: PolicyLevel, name: &str) -> bool {
        is_unlimited(name) || self.policies.contains_key(name)
    }

    fn has_policies(&self) -> bool {
        !self.policies.is_empty()
    }

    fn blocking(&self) -> &[BlockingCondition] {
        &self.blocking
    }
}

/// The id of the application at `at`.
fn listed_id(listed: &[Listed], at: u32) -> Option<&str> {
    listed.get(usize::try_from(at).ok()?).map(|listed| &*listed.application.id)
}

/// The id of the client at `at` (`ids` and `clients` as the directory keeps them).
fn client_id<'a>(ids: &'a str, clients: &[Client], at: u32) -> Option<&'a str> {
    let (start, end) = clients.get(usize::try_from(at).ok()?)?.id;
    ids.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
}

fn bucket_of(digest: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    for (slot, byte) in head.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    u64::from_be_bytes(head)
}

/// An entry's place in its list, from the low 64 bits of its sort key.
fn place(packed: u128) -> usize {
    packed as u64 as usize
}

/// The first API key, in the configuration's order, that repeats an earlier one (its application
/// and key index).
fn first_repeated_key(keys: &[([u8; 32], AppKey)], origins: &[(usize, usize)]) -> Option<(usize, usize)> {
    let mut seen = HashSet::new();
    keys.iter().zip(origins).find_map(|((digest, _), origin)| (!seen.insert(digest)).then_some(*origin))
}

/// 64 lowercase hex characters to 32 bytes (`None` for anything else). Branch-free per character:
/// 100,000 digits of random hex mispredicted a branch on every other character.
fn hex_digest(hex: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    (hex.len() == 64 && base16ct::lower::decode(hex, &mut digest).is_ok()).then_some(digest)
}

fn policy_spec(name: &str, policy: &RawPolicy) -> Result<PolicySpec, ConfigError> {
    Ok(PolicySpec {
        limit: policy.requests.or(policy.bytes).unwrap_or(0),
        bytes: policy.bytes.is_some(),
        window_s: policy.per.seconds().saturating_mul(u64::from(policy.unit_count)),
        burst: policy.burst.as_ref().map(|burst| (burst.requests, burst.per.seconds())),
        stop_on_quota_reach: policy.stop_on_quota_reach,
        per_user: policy.per_user,
        cluster_wide: policy.cluster_wide,
        groups: crate::conditions::from_config(&format!("policies.{name}"), &policy.condition_groups)?,
    })
}

fn check_policy_ref(
    field: impl FnOnce() -> String,
    policy: Option<&str>,
    policies: &PolicyNames,
) -> Result<(), ConfigError> {
    match policy {
        Some(name) if !policies.contains(name) => {
            Err(ConfigError::new(field(), format!("policy `{name}` is not defined in `policies`")))
        }
        _ => Ok(()),
    }
}

fn key_type_bit(key_type: KeyType) -> u8 {
    match key_type {
        KeyType::Production => 1,
        KeyType::Sandbox => 2,
    }
}

/// Checks the subscriptions and lists them by application, then API. Identical subscriptions
/// (tier and state) share one `Rc`.
fn add_subscriptions(
    directory: &mut StaticDirectory,
    subscriptions: &PackedSubscriptions,
    routes: &Table,
    policies: &PolicyNames,
) -> Result<(), ConfigError> {
    let apis: HashMap<&str, &Api, FixedState> = routes.apis.iter().map(|api| (api.label.as_str(), api)).collect();
    let mut shared: HashMap<(&str, SubscriptionState), Rc<Subscription>, FixedState> = HashMap::default();
    let mut cursor = 0;
    let mut filed = Vec::with_capacity(subscriptions.len());
    for (index, subscription) in subscriptions.iter().enumerate() {
        let field = || format!("subscriptions[{index}]");
        // Subscriptions are usually listed in their applications' order: the application after
        // the last one found is tried before the map (a cache miss at 100,000 applications).
        let next = directory
            .listed
            .get(cursor..)
            .and_then(|rest| rest.iter().take(2).position(|listed| *listed.application.id == *subscription.application))
            .map(|step| cursor + step)
            .or_else(|| {
                let hash = directory.applications.hash(subscription.application);
                let at =
                    directory.applications.find(hash, subscription.application, |at| listed_id(&directory.listed, at));
                at.and_then(|at| usize::try_from(at).ok())
            });
        let Some(listed) = next.and_then(|at| {
            cursor = at;
            directory.listed.get(at)
        }) else {
            return Err(ConfigError::new(
                format!("{}.application", field()),
                format!("application `{}` is not defined", subscription.application),
            ));
        };
        let Some(api) = apis.get(subscription.api) else {
            return Err(ConfigError::new(
                format!("{}.api", field()),
                format!("API `{}` is not defined (write `<name>:<version>`)", subscription.api),
            ));
        };
        check_policy_ref(|| format!("{}.tier", field()), Some(subscription.tier), policies)?;
        // An application whose every key is of a type the API has no endpoint for can never call it.
        let types = listed.key_types;
        let served = (types & 1 != 0 && api.endpoints.production.is_some())
            || (types & 2 != 0 && api.endpoints.sandbox.is_some());
        if types != 0 && !served {
            let (kind, missing) =
                if api.endpoints.production.is_none() { ("PRODUCTION", "production") } else { ("SANDBOX", "sandbox") };
            return Err(ConfigError::new(
                field(),
                format!(
                    "application `{}` has only {kind} keys and API `{}` has no {missing} endpoint: every call \
                     would answer 900901",
                    subscription.application, subscription.api
                ),
            ));
        }
        let compiled = Rc::clone(
            shared
                .entry((subscription.tier, subscription.state))
                .or_insert_with_key(|(tier, state)| Rc::new(Subscription { tier: tier.to_string(), state: *state })),
        );
        filed.push((offset(cursor), api.id, compiled));
    }
    // One list for all (a list per application cost an allocation each), usually in order
    // already. When it is not, it is sorted through plain integers (application, API, position):
    // a sort generated for this list's own type was 70 KB of `.wasm`.
    let in_order = |a: &(u32, ApiId, _), b: &(u32, ApiId, _)| (a.0, a.1) < (b.0, b.1);
    if !filed.windows(2).all(|pair| matches!(pair, [a, b] if in_order(a, b))) {
        let mut order: Vec<u128> = filed
            .iter()
            .enumerate()
            .map(|(position, (at, api, _))| u128::from(*at) << 96 | u128::from(api.0) << 64 | position as u128)
            .collect();
        order.sort_unstable();
        if order.windows(2).any(|pair| matches!(pair, [a, b] if a >> 64 == b >> 64)) {
            return Err(first_repeated_subscription(subscriptions));
        }
        filed = order.iter().filter_map(|packed| filed.get(place(*packed)).cloned()).collect();
    }
    let mut first = 0u32;
    for run in filed.chunk_by(|a, b| a.0 == b.0) {
        let count = offset(run.len());
        if let Some(listed) = run.first().and_then(|(at, _, _)| directory.listed.get_mut(usize::try_from(*at).ok()?)) {
            listed.subscriptions = (first, count);
        }
        first = first.saturating_add(count);
    }
    directory.subscriptions = filed;
    directory.api_ids = routes.apis.iter().map(|api| (api.label.clone(), api.id)).collect();
    Ok(())
}

/// The error naming the first subscription, in the configuration's order, that repeats an
/// earlier one (same application and API).
fn first_repeated_subscription(subscriptions: &PackedSubscriptions) -> ConfigError {
    let mut seen = HashSet::new();
    let index = subscriptions
        .iter()
        .position(|subscription| !seen.insert((subscription.application, subscription.api)))
        .unwrap_or_default();
    ConfigError::new(format!("subscriptions[{index}]"), "the application is subscribed to this API twice")
}

fn compile_blocking(conditions: &[RawBlockingCondition]) -> Result<Vec<BlockingCondition>, ConfigError> {
    let mut compiled = Vec::with_capacity(conditions.len());
    for (index, condition) in conditions.iter().enumerate() {
        let field = format!("blocking[{index}]");
        let set = [
            &condition.api,
            &condition.application,
            &condition.user,
            &condition.ip,
            &condition.ip_range,
            &condition.subscription,
        ]
        .iter()
        .filter(|value| value.is_some())
        .count();
        if set != 1 {
            return Err(ConfigError::new(
                field,
                "set exactly one of api, application, user, ip, ip_range, subscription",
            ));
        }
        let parsed = if let Some(api) = &condition.api {
            BlockingCondition::Api(api.clone())
        } else if let Some(application) = &condition.application {
            if application.trim().is_empty() {
                return Err(ConfigError::new(format!("{field}.application"), "names no application"));
            }
            BlockingCondition::Application(application.clone())
        } else if let Some(user) = &condition.user {
            // An empty user is the one an application without an owner acts for: every key of
            // every such application would be blocked.
            if user.trim().is_empty() {
                return Err(ConfigError::new(format!("{field}.user"), "names no user"));
            }
            BlockingCondition::User(user.clone())
        } else if let Some(ip) = &condition.ip {
            let range = IpRange::parse(ip).map_err(|reason| ConfigError::new(format!("{field}.ip"), reason))?;
            if ip.contains('/') {
                return Err(ConfigError::new(format!("{field}.ip"), "an address without a prefix (use ip_range)"));
            }
            BlockingCondition::Ip(range)
        } else if let Some(range) = &condition.ip_range {
            BlockingCondition::Ip(
                IpRange::parse(range).map_err(|reason| ConfigError::new(format!("{field}.ip_range"), reason))?,
            )
        } else if let Some(subscription) = &condition.subscription {
            let (application, api) = subscription
                .split_once(':')
                .filter(|(application, api)| !application.is_empty() && api.contains(':'))
                .ok_or_else(|| {
                    ConfigError::new(format!("{field}.subscription"), "write `<application id>:<api name>:<version>`")
                })?;
            BlockingCondition::Subscription { application: application.to_string(), api: api.to_string() }
        } else {
            return Err(ConfigError::new(field, "empty condition"));
        };
        compiled.push(parsed);
    }
    Ok(compiled)
}

/// Blocking conditions name things that exist: a condition on an API that is not there never
/// matches (a typo would silently block nothing).
fn check_blocking_targets(conditions: &[BlockingCondition], routes: &Table) -> Result<(), ConfigError> {
    for (index, condition) in conditions.iter().enumerate() {
        let (field, target) = match condition {
            BlockingCondition::Api(name) => (format!("blocking[{index}].api"), name),
            // Matched by label alone: an API named any other way would block nothing.
            BlockingCondition::Subscription { api, .. } => {
                if routes.by_label(api).is_none() {
                    let field = format!("blocking[{index}].subscription");
                    return Err(ConfigError::new(
                        field,
                        format!("`{api}` names no API of this configuration as `<name>:<version>`"),
                    ));
                }
                continue;
            }
            BlockingCondition::Application(_)
            | BlockingCondition::ApplicationNamed { .. }
            | BlockingCondition::User(_)
            | BlockingCondition::Ip(_)
            | BlockingCondition::IpBetween { .. } => continue,
        };
        if !routes.apis.iter().any(|api| api.is_named_by(target)) {
            return Err(ConfigError::new(field, format!("`{target}` names no API of this configuration")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
