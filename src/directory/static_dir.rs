//! The directory written in the filter's configuration: compiled once, checked against the
//! routing table and the key managers, and indexed for the request path (API keys by the first
//! bytes of their hash, subscriptions by application then API).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use subtle::ConstantTimeEq;

use super::{AppKey, Application, BlockingCondition, Directory, PolicyLevel, PolicySpec, Subscription};
use crate::cidr::IpRange;
use crate::routing::Api;
use crate::routing::Table;
use crate::schema::{ConfigError, RawApplication, RawBlockingCondition, RawPolicy, RawSubscription};
use crate::vocab::{KeyType, KmId, TimeUnit, UNLIMITED};

/// The directory of a static configuration.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    applications: HashMap<Rc<str>, Rc<Application>>,
    clients: HashMap<String, AppKey>,
    /// SHA-256 of opaque API keys, with their application keys.
    api_key_hashes: Vec<([u8; 32], AppKey)>,
    /// First 8 bytes of a key hash to positions in `api_key_hashes`.
    api_key_buckets: HashMap<u64, Vec<usize>>,
    /// Application id, then API label, to the subscription.
    subscriptions: HashMap<Rc<str>, HashMap<String, Rc<Subscription>>>,
    policies: HashMap<String, Rc<PolicySpec>>,
    blocking: Vec<BlockingCondition>,
}

/// What the directory's configuration is checked against.
pub struct Context<'a> {
    pub routes: &'a Table,
    /// The configured key managers' names, in order.
    pub key_managers: &'a [String],
}

impl StaticDirectory {
    /// Checks the policies alone (routing refers to them before the rest is compiled): the set of
    /// defined names, `Unlimited` included.
    pub fn policy_names(policies: &BTreeMap<String, RawPolicy>) -> Result<HashSet<String>, ConfigError> {
        let mut names = HashSet::new();
        names.insert(UNLIMITED.to_string());
        for (name, policy) in policies {
            let field = format!("policies.{name}");
            if name == UNLIMITED {
                return Err(ConfigError::new(field, "`Unlimited` is built in and cannot be redefined"));
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
            names.insert(name.clone());
        }
        Ok(names)
    }

    /// Checks and compiles the directory.
    pub fn compile(
        applications: Vec<RawApplication>,
        subscriptions: Vec<RawSubscription>,
        policies: BTreeMap<String, RawPolicy>,
        blocking: Vec<RawBlockingCondition>,
        context: &Context<'_>,
    ) -> Result<StaticDirectory, ConfigError> {
        let names = StaticDirectory::policy_names(&policies)?;
        check_applications(&applications, &names)?;
        check_subscriptions(&subscriptions, &applications, context.routes, &names)?;
        let blocking = compile_blocking(&blocking)?;
        check_blocking_targets(&blocking, context.routes)?;
        if context.key_managers.is_empty() {
            for (index, application) in applications.iter().enumerate() {
                if !application.client_ids.is_empty() {
                    return Err(ConfigError::new(
                        format!("applications[{index}].client_ids"),
                        "OAuth2 clients need a key manager to verify their tokens (`key_managers`)",
                    ));
                }
            }
        }
        let mut directory = StaticDirectory {
            policies: policies.iter().map(|(name, policy)| (name.clone(), Rc::new(policy_spec(policy)))).collect(),
            blocking,
            ..StaticDirectory::default()
        };
        for (index, application) in applications.into_iter().enumerate() {
            let id: Rc<str> = Rc::from(application.id.as_str());
            for (client_index, client) in application.client_ids.iter().enumerate() {
                let key_manager = match &client.key_manager {
                    Some(name) => Some(
                        context
                            .key_managers
                            .iter()
                            .position(|km| km == name)
                            .map(|position| KmId(position as u32))
                            .ok_or_else(|| {
                                ConfigError::new(
                                    format!("applications[{index}].client_ids[{client_index}].key_manager"),
                                    format!("key manager `{name}` is not defined"),
                                )
                            })?,
                    ),
                    None if context.key_managers.len() > 1 => {
                        return Err(ConfigError::new(
                            format!("applications[{index}].client_ids[{client_index}].key_manager"),
                            "is required when more than one key manager is configured",
                        ));
                    }
                    None => None,
                };
                directory.clients.insert(
                    client.id.clone(),
                    AppKey { application: Rc::clone(&id), key_type: client.key_type, key_manager },
                );
            }
            for key in &application.api_keys {
                let digest = hex_digest(&key.sha256);
                let bucket = bucket_of(&digest);
                directory.api_key_buckets.entry(bucket).or_default().push(directory.api_key_hashes.len());
                directory
                    .api_key_hashes
                    .push((digest, AppKey { application: Rc::clone(&id), key_type: key.key_type, key_manager: None }));
            }
            let compiled = Application {
                id: Rc::clone(&id),
                name: application.name,
                owner: application.owner,
                policy: application.policy,
            };
            directory.applications.insert(id, Rc::new(compiled));
        }
        for subscription in subscriptions {
            let Some((id, _)) = directory.applications.get_key_value(subscription.application.as_str()) else {
                continue;
            };
            let id = Rc::clone(id);
            directory
                .subscriptions
                .entry(id)
                .or_default()
                .insert(subscription.api, Rc::new(Subscription { tier: subscription.tier, state: subscription.state }));
        }
        Ok(directory)
    }

    pub fn len(&self) -> (usize, usize) {
        (self.applications.len(), self.subscriptions.values().map(HashMap::len).sum())
    }
}

impl Directory for StaticDirectory {
    fn client(&self, client_id: &str, _: KmId) -> Option<AppKey> {
        // Client ids are unique across the configuration; `authorize` checks the key manager.
        self.clients.get(client_id).cloned()
    }

    fn api_key(&self, hash: &[u8; 32]) -> Option<AppKey> {
        let mut found = None;
        for position in self.api_key_buckets.get(&bucket_of(hash)).into_iter().flatten() {
            if let Some((stored, app_key)) = self.api_key_hashes.get(*position) {
                if bool::from(stored.ct_eq(hash)) {
                    found = Some(app_key.clone());
                }
            }
        }
        found
    }

    fn application(&self, id: &str) -> Option<Rc<Application>> {
        self.applications.get(id).cloned()
    }

    fn subscription(&self, application: &str, api: &Api) -> Option<Rc<Subscription>> {
        self.subscriptions.get(application)?.get(&api.label).cloned()
    }

    fn policy(&self, _: PolicyLevel, name: &str) -> Option<Rc<PolicySpec>> {
        // The configuration has one namespace of policies for every level.
        self.policies.get(name).cloned()
    }

    fn has_policies(&self) -> bool {
        !self.policies.is_empty()
    }

    fn blocking(&self) -> &[BlockingCondition] {
        &self.blocking
    }
}

fn bucket_of(digest: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    for (slot, byte) in head.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    u64::from_be_bytes(head)
}

/// 64 validated lowercase hex characters to 32 bytes.
fn hex_digest(hex: &str) -> [u8; 32] {
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = hex.get(index * 2..index * 2 + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()).unwrap_or(0);
    }
    digest
}

fn policy_spec(policy: &RawPolicy) -> PolicySpec {
    PolicySpec {
        limit: policy.requests.or(policy.bytes).unwrap_or(0),
        bytes: policy.bytes.is_some(),
        window_s: policy.per.seconds().saturating_mul(u64::from(policy.unit_count)),
        burst: policy.burst.as_ref().map(|burst| (burst.requests, burst.per.seconds())),
        stop_on_quota_reach: policy.stop_on_quota_reach,
        cluster_wide: policy.cluster_wide,
    }
}

fn check_policy_ref(field: String, policy: &Option<String>, policies: &HashSet<String>) -> Result<(), ConfigError> {
    match policy {
        Some(name) if !policies.contains(name) => {
            Err(ConfigError::new(field, format!("policy `{name}` is not defined in `policies`")))
        }
        _ => Ok(()),
    }
}

fn check_applications(applications: &[RawApplication], policies: &HashSet<String>) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    let mut client_ids = HashSet::new();
    let mut key_hashes = HashSet::new();
    for (index, application) in applications.iter().enumerate() {
        let field = format!("applications[{index}]");
        if application.id.is_empty() {
            return Err(ConfigError::new(format!("{field}.id"), "must not be empty"));
        }
        if !ids.insert(application.id.as_str()) {
            return Err(ConfigError::new(format!("{field}.id"), format!("`{}` is used twice", application.id)));
        }
        check_policy_ref(format!("{field}.policy"), &application.policy, policies)?;
        for (client_index, client) in application.client_ids.iter().enumerate() {
            if client.id.is_empty() || !client_ids.insert(client.id.as_str()) {
                return Err(ConfigError::new(
                    format!("{field}.client_ids[{client_index}].id"),
                    "must be non-empty and unique across applications",
                ));
            }
        }
        for (key_index, key) in application.api_keys.iter().enumerate() {
            let key_field = format!("{field}.api_keys[{key_index}].sha256");
            let valid = key.sha256.len() == 64 && key.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !valid {
                return Err(ConfigError::new(key_field, "must be 64 lowercase hex characters (a SHA-256 digest)"));
            }
            if !key_hashes.insert(key.sha256.as_str()) {
                return Err(ConfigError::new(key_field, "the same key is configured twice"));
            }
        }
    }
    Ok(())
}

fn check_subscriptions(
    subscriptions: &[RawSubscription],
    applications: &[RawApplication],
    routes: &Table,
    policies: &HashSet<String>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    let by_id: HashMap<&str, &RawApplication> = applications.iter().map(|app| (app.id.as_str(), app)).collect();
    for (index, subscription) in subscriptions.iter().enumerate() {
        let field = format!("subscriptions[{index}]");
        let Some(application) = by_id.get(subscription.application.as_str()) else {
            return Err(ConfigError::new(
                format!("{field}.application"),
                format!("application `{}` is not defined", subscription.application),
            ));
        };
        let Some(api) = routes.by_label(&subscription.api) else {
            return Err(ConfigError::new(
                format!("{field}.api"),
                format!("API `{}` is not defined (write `<name>:<version>`)", subscription.api),
            ));
        };
        check_policy_ref(format!("{field}.tier"), &Some(subscription.tier.clone()), policies)?;
        if !seen.insert((subscription.application.as_str(), subscription.api.as_str())) {
            return Err(ConfigError::new(field, "the application is subscribed to this API twice"));
        }
        // An application whose every key is of a type the API has no endpoint for can never call it.
        let types: HashSet<KeyType> = application
            .client_ids
            .iter()
            .map(|client| client.key_type)
            .chain(application.api_keys.iter().map(|key| key.key_type))
            .collect();
        let served = |key_type: &KeyType| match key_type {
            KeyType::Production => api.endpoints.production.is_some(),
            KeyType::Sandbox => api.endpoints.sandbox.is_some(),
        };
        if !types.is_empty() && !types.iter().any(served) {
            let (kind, missing) =
                if api.endpoints.production.is_none() { ("PRODUCTION", "production") } else { ("SANDBOX", "sandbox") };
            return Err(ConfigError::new(
                field,
                format!(
                    "application `{}` has only {kind} keys and API `{}` has no {missing} endpoint: every call \
                     would answer 900901",
                    application.id, subscription.api
                ),
            ));
        }
    }
    Ok(())
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
            BlockingCondition::Application(application.clone())
        } else if let Some(user) = &condition.user {
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
            BlockingCondition::Subscription { api, .. } => (format!("blocking[{index}].subscription"), api),
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
