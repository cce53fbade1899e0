//! Planning: which counters a request touches, in WSO2's order, each with its key, limit and
//! window: API (or resource), subscription and its burst control, application per user, custom
//! policies, the hard limit. Planning counts nothing; an engine counts.

use std::net::IpAddr;

use super::settings::ThrottleConfig;
use crate::catalogue::FaultId;
use crate::conditions::{self, RequestFacts};
use crate::directory::{BlockingCondition, Directory, PolicyLevel, PolicySpec};
use crate::routing::{Api, Resource};
use crate::vocab::{is_unlimited, user_without_tenant, KeyType};

/// WSO2's subscription tier of requests to open resources (`APIConstants.UNAUTHENTICATED_TIER`),
/// counted per client address.
pub const UNAUTHENTICATED_TIER: &str = "Unauthenticated";

/// A throttling level with a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Api,
    Resource,
    Subscription,
    Burst,
    Application,
    Custom,
    HardLimit,
}

impl Level {
    /// The level's fault.
    pub fn fault_id(self) -> FaultId {
        match self {
            Level::Api => FaultId::ApiThrottled,
            Level::Resource => FaultId::ResourceThrottled,
            Level::Subscription => FaultId::SubscriptionThrottled,
            Level::Burst => FaultId::BurstThrottled,
            Level::Application => FaultId::ApplicationThrottled,
            Level::Custom => FaultId::CustomPolicyThrottled,
            Level::HardLimit => FaultId::HardLimitExceeded,
        }
    }
}

/// Who is calling, as far as throttling needs to know.
#[derive(Clone, Debug, Default)]
pub struct Caller<'a> {
    pub application_id: Option<&'a str>,
    pub application_name: Option<&'a str>,
    /// The application's own policy (WSO2's `applicationTier`), as authorization found it: the
    /// directory's application, or the one a JWT API key names.
    pub application_policy: Option<&'a str>,
    /// The subscription policy (tier).
    pub tier: Option<&'a str>,
    pub key_type: Option<KeyType>,
    pub end_user: Option<&'a str>,
    /// The application's owner (subscriber): the user an application token or an API key acts
    /// for, as in WSO2.
    pub owner: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    /// What condition groups read of the request (headers, query, the caller's JWT); `None`
    /// where nothing is known of it.
    pub request: Option<&'a RequestFacts<'a>>,
}

impl Caller<'_> {
    /// The user a request acts for (WSO2's `authorizedUser`): the end user when the credential
    /// names one, else the application's owner (application tokens and API keys act for their
    /// owner), else `anonymous` (no credential).
    pub fn user(&self) -> &str {
        self.end_user.filter(|user| !user.is_empty()).or(self.owner).unwrap_or("anonymous")
    }
}

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    /// Requests: one per request, taken if the limit allows.
    Requests,
    /// Body bytes: the budget must have room; bytes are charged as they pass.
    Bytes,
}

/// Where a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// In this Envoy's shared data, exact across its workers.
    Node,
    /// On the rate-limit service, exact across Envoy nodes.
    Cluster,
}

/// One counter a request touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub level: Level,
    /// The counter's key (`subscription:<app>:<context>:<version>:<tier>`, ...).
    pub key: String,
    pub limit: u64,
    pub window_s: u64,
    pub units: Units,
    /// Over its limit, the request still passes, flagged (a subscription policy without
    /// stop-on-quota-reach).
    pub soft: bool,
    pub scope: Scope,
}

/// The last part of a byte budget's key: what it counts is part of a counter's identity, so a
/// policy that changes from bytes to requests (a live update, API-M changing a policy's type, a
/// subscription moved from a bandwidth tier to a request tier) starts a fresh count instead of
/// reading the bytes of the window as requests. Request counters' keys carry no marker: they are
/// the keys the rate-limit service and its Redis have always seen.
const BYTES_MARKER: &str = "bytes";

impl Counter {
    fn new(level: Level, key: String, spec: &PolicySpec, throttle: &ThrottleConfig) -> Counter {
        let (limit, window_s, units) = match (level, spec.burst) {
            // Burst control counts requests within its own window, whatever the tier counts.
            (Level::Burst, Some((requests, window_s))) => (requests, window_s, Units::Requests),
            _ => (spec.limit, spec.window_s, if spec.bytes { Units::Bytes } else { Units::Requests }),
        };
        // Each level's key has a fixed number of parts, each with its `:` escaped: one part more
        // is no other counter's key.
        let key = match units {
            Units::Requests => key,
            Units::Bytes => {
                let mut key = key;
                key.push(':');
                key.push_str(BYTES_MARKER);
                key
            }
        };
        Counter {
            level,
            key,
            limit,
            window_s,
            units,
            soft: level == Level::Subscription && !spec.stop_on_quota_reach,
            scope: throttle.scope_of(spec.cluster_wide, limit, window_s, units),
        }
    }
}

/// Whether a blocking condition refuses the request (900805, before any counter). `tenant` is the
/// gateway's (WSO2's API tenant): users are compared qualified with it.
pub fn blocked(directory: &dyn Directory, api: &Api, caller: &Caller<'_>, tenant: &str) -> bool {
    directory.blocking().iter().any(|condition| match condition {
        BlockingCondition::Api(name) => api.is_named_by(name),
        BlockingCondition::Application(id) => caller.application_id == Some(id.as_str()),
        BlockingCondition::ApplicationNamed { owner, name } => {
            caller.owner == Some(owner.as_str()) && caller.application_name == Some(name.as_str())
        }
        // WSO2's `authorizedUser`, as `$userId`: the token's `sub` (an application token's owner,
        // from WSO2's key manager), else the application's owner.
        BlockingCondition::User(user) => same_user(caller.user(), user, tenant),
        BlockingCondition::Ip(range) => caller.client_ip.is_some_and(|ip| range.contains(ip)),
        // An address of another family is never inside, so an inverted condition (block all but
        // these) blocks it, as in WSO2.
        BlockingCondition::IpBetween { low, high, inclusive, invert } => {
            caller.client_ip.is_some_and(|ip| crate::cidr::between(ip, *low, *high, *inclusive) != *invert)
        }
        BlockingCondition::Subscription { application, api: subscribed } => {
            caller.application_id == Some(application.as_str()) && *subscribed == api.label
        }
    })
}

/// The policies the request is subject to (the API's or resource's, the caller's subscription
/// tier and application policy) that the directory does not define: with any, the request is
/// refused (900809, the Microgateway's "throttle policy is not deployed"), never let through
/// unthrottled; a control plane is asked for them first. Names arrive at run time from the
/// control plane and JWT API keys (the configuration's own are checked at load); without any
/// policy at all, tiers throttle nothing.
pub fn missing_policies<'n>(
    directory: &dyn Directory,
    api: &'n Api,
    resource: &'n Resource,
    caller: &Caller<'n>,
) -> Vec<(PolicyLevel, &'n str)> {
    let mut missing = Vec::new();
    if !directory.has_policies() {
        return missing;
    }
    let unlimited = |name: &str| name.is_empty() || is_unlimited(name);
    let mut check = |level, name: &'n str| {
        if !unlimited(name) && !directory.knows_policy(level, name) {
            missing.push((level, name));
        }
    };
    // An API policy (not `Unlimited`) replaces the resource's, as in `plan`.
    match api.policy.as_deref().filter(|name| !unlimited(name)) {
        Some(name) => check(PolicyLevel::Api, name),
        None => {
            if let Some(name) = resource.policy.as_deref() {
                check(PolicyLevel::Api, name);
            }
        }
    }
    if caller.application_id.is_some() {
        if let Some(tier) = caller.tier {
            check(PolicyLevel::Subscription, tier);
        }
        if let Some(policy) = caller.application_policy {
            check(PolicyLevel::Application, policy);
        }
    }
    missing
}

/// An end user against a blocked user, both qualified with the gateway's tenant as WSO2 qualifies
/// them (its ThrottleHandler appends `@<API tenant>` to a user without it; API-M stores a blocked
/// user as `<user>@<tenant>`): in the super tenant `bob` and `bob@carbon.super` are one user, and
/// `bob@wso2.com` (another tenant's, or an e-mail user name) is not `bob`.
fn same_user(end_user: &str, blocked: &str, tenant: &str) -> bool {
    user_without_tenant(end_user, tenant) == user_without_tenant(blocked, tenant)
}

/// The counters of a request, in WSO2's order.
pub fn plan(
    throttle: &ThrottleConfig,
    directory: &dyn Directory,
    api: &Api,
    resource: &Resource,
    caller: &Caller<'_>,
) -> Vec<Counter> {
    let mut counters = Vec::new();
    let (context, version) = (api.context.as_str(), api.version.as_str());
    // One user, one counter: `bob` and `bob@carbon.super` are one user, as in WSO2's keys.
    let user = user_without_tenant(caller.user(), &throttle.tenant);
    let policy = |name: Option<&String>| name.and_then(|name| directory.policy(PolicyLevel::Api, name));
    // An API-level policy replaces the resource level: never both. Applied per user, a user's
    // count is apart (one part more: no key of the API or resource as a whole).
    if let Some((name, spec)) = api.policy.as_ref().and_then(|name| Some((name, policy(Some(name))?))) {
        let parts: &[&str] = if spec.per_user { &["api", context, version, user] } else { &["api", context, version] };
        let level = LevelCounters { level: Level::Api, parts, policy: name, spec: &spec };
        level.push(&mut counters, throttle, caller, user);
    } else if let Some((name, spec)) = resource.policy.as_ref().and_then(|name| Some((name, policy(Some(name))?))) {
        let parts: &[&str] =
            if spec.per_user { &["resource", &resource.key, user] } else { &["resource", &resource.key] };
        let level = LevelCounters { level: Level::Resource, parts, policy: name, spec: &spec };
        level.push(&mut counters, throttle, caller, user);
    }
    // The tier is part of the key, as in WSO2's ThrottleHandler (`appId:context:version:subTier`):
    // a subscription moved to another tier counts afresh under it.
    if let Some((application, tier, spec)) = caller.application_id.and_then(|application| {
        let tier = caller.tier?;
        Some((application, tier, directory.policy(PolicyLevel::Subscription, tier)?))
    }) {
        counters.push(Counter::new(
            Level::Subscription,
            key(&["subscription", application, context, version, tier]),
            &spec,
            throttle,
        ));
        if spec.burst.is_some() {
            counters.push(Counter::new(
                Level::Burst,
                key(&["burst", application, context, version, tier]),
                &spec,
                throttle,
            ));
        }
    }
    // An open resource (no credential): WSO2's gateway authenticates the request as its client's
    // address, under the `Unauthenticated` subscription tier (`APIAuthenticationHandler.
    // handleNoAuthentication`: application id = client IP, tier `Unauthenticated`, stop on quota
    // reach, no burst control), so each client address has that tier's limit on each API. Where
    // the directory defines no such policy, open resources have no subscription level. Nor where
    // Envoy knows no client address (a Unix socket or internal listener): WSO2 always has one,
    // and counted under one empty address, every client of the API would share a single
    // client's limit.
    if let (None, Some(address)) = (caller.application_id, caller.client_ip) {
        if let Some(spec) = directory.policy(PolicyLevel::Subscription, UNAUTHENTICATED_TIER) {
            let spec = PolicySpec { burst: None, stop_on_quota_reach: true, groups: Vec::new(), ..*spec };
            counters.push(Counter::new(
                Level::Subscription,
                key(&["unauthenticated", &address.to_string(), context, version, UNAUTHENTICATED_TIER]),
                &spec,
                throttle,
            ));
        }
    }
    if let Some(application) = caller.application_id {
        if let Some(spec) = caller.application_policy.and_then(|name| directory.policy(PolicyLevel::Application, name))
        {
            counters.push(Counter::new(Level::Application, key(&["application", application, user]), &spec, throttle));
        }
    }
    // An open request's application is its client's address, as WSO2's gateway has it
    // (`handleNoAuthentication`); an address Envoy does not know fills no placeholder: such a
    // policy counts nothing for the request rather than every such client together.
    let address = caller.client_ip.map(|ip| ip.to_string());
    let application = caller.application_id.or(address.as_deref());
    'customs: for custom in
        throttle.custom_policies.iter().filter(|custom| custom.apis.is_empty() || custom.apis.contains(&api.label))
    {
        let mut key = String::new();
        for part in &custom.template {
            // The template's own text is the author's; what fills a placeholder is escaped, so
            // `$userId:$clientIp` separates `alice` at `2001:db8::1` from `alice:2001` at `db8::1`.
            let value = match part {
                KeyPart::Text(text) => {
                    key.push_str(text);
                    continue;
                }
                KeyPart::UserId => Some(user),
                KeyPart::ApiContext => Some(api.context.as_str()),
                KeyPart::ApiVersion => Some(api.version.as_str()),
                KeyPart::AppId => application,
                KeyPart::ClientIp => address.as_deref(),
                KeyPart::ResourceKey => Some(resource.key.as_str()),
            };
            let Some(value) = value else { continue 'customs };
            push_escaped(&mut key, value);
        }
        counters.push(Counter::new(Level::Custom, self::key(&["custom", &custom.name, &key]), &custom.spec, throttle));
    }
    let key_type = caller.key_type.unwrap_or(KeyType::Production);
    let hard_limit =
        if throttle.hard_limits.is_empty() { None } else { throttle.hard_limits.get(&(api.label.clone(), key_type)) };
    if let Some(spec) = hard_limit {
        counters.push(Counter::new(
            Level::HardLimit,
            key(&["hard_limit", context, version, key_type.name()]),
            spec,
            throttle,
        ));
    }
    counters
}

/// The API or resource level of a request: its policy's own counter, or one per condition
/// group the request matches.
struct LevelCounters<'p> {
    level: Level,
    /// The own counter's key parts (`api`, context, version and, per user, the user).
    parts: &'p [&'p str],
    policy: &'p str,
    spec: &'p PolicySpec,
}

impl LevelCounters<'_> {
    fn push(&self, counters: &mut Vec<Counter>, throttle: &ThrottleConfig, caller: &Caller<'_>, user: &str) {
        let mut matched = false;
        if let Some(request) = caller.request.filter(|_| !self.spec.groups.is_empty()) {
            for group in self.spec.groups.iter().filter(|group| group.matches(request, caller.client_ip)) {
                matched = true;
                if group.limit == conditions::UNLIMITED {
                    continue;
                }
                // `api_condition:<context>:<version>:<policy>:<group>[:<user>]`: a prefix of its
                // own (no key of the level's own counter), and the policy's name, so another
                // policy's group of the same id counts apart.
                let prefix = if self.level == Level::Api { "api_condition" } else { "resource_condition" };
                let (own, per_user) = match self.spec.per_user {
                    true => (self.parts.get(1..self.parts.len() - 1).unwrap_or_default(), Some(user)),
                    false => (self.parts.get(1..).unwrap_or_default(), None),
                };
                let mut parts = Vec::with_capacity(own.len() + 4);
                parts.push(prefix);
                parts.extend_from_slice(own);
                parts.extend([self.policy, group.id.as_str()]);
                parts.extend(per_user);
                let spec = PolicySpec {
                    limit: group.limit,
                    bytes: group.bytes,
                    window_s: group.window_s,
                    burst: None,
                    stop_on_quota_reach: true,
                    groups: Vec::new(),
                    ..*self.spec
                };
                counters.push(Counter::new(self.level, key(&parts), &spec, throttle));
            }
        }
        if !matched && self.spec.limit != conditions::UNLIMITED {
            counters.push(Counter::new(self.level, key(self.parts), self.spec, throttle));
        }
    }
}

/// A counter's key: its parts joined by `:` (`subscription:<app>:<context>:<version>:<tier>`), each with
/// its own `:` and `%` escaped (`%3A`, `%25`). Names, contexts, versions and users may hold `:`,
/// and two different requests' parts must never join into one key: an API versioned `v1:beta`
/// at `/shop` and one versioned `beta` at `/shop:v1` count apart.
fn key(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            key.push(':');
        }
        push_escaped(&mut key, part);
    }
    key
}

/// Appends `part` with its `:` and `%` percent-escaped, so a separator in it separates nothing.
fn push_escaped(key: &mut String, part: &str) {
    if !part.contains([':', '%']) {
        key.push_str(part);
        return;
    }
    for character in part.chars() {
        match character {
            ':' => key.push_str("%3A"),
            '%' => key.push_str("%25"),
            other => key.push(other),
        }
    }
}

/// A part of a custom policy's key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    Text(String),
    UserId,
    ApiContext,
    ApiVersion,
    AppId,
    ClientIp,
    ResourceKey,
}

/// Parses `$userId:$apiContext`-style templates.
pub fn parse_key_template(template: &str) -> Result<Vec<KeyPart>, String> {
    const NAMES: [(&str, KeyPart); 6] = [
        ("$userId", KeyPart::UserId),
        ("$apiContext", KeyPart::ApiContext),
        ("$apiVersion", KeyPart::ApiVersion),
        ("$appId", KeyPart::AppId),
        ("$clientIp", KeyPart::ClientIp),
        ("$resourceKey", KeyPart::ResourceKey),
    ];
    let mut parts = Vec::new();
    let mut rest = template;
    let mut text = String::new();
    while !rest.is_empty() {
        if rest.starts_with('$') {
            let Some((name, make)) = NAMES.iter().find(|(name, _)| rest.starts_with(name)) else {
                return Err(format!("unknown placeholder in `{template}` (use $userId, $apiContext, $apiVersion, $appId, $clientIp, $resourceKey)"));
            };
            if !text.is_empty() {
                parts.push(KeyPart::Text(std::mem::take(&mut text)));
            }
            parts.push(make.clone());
            rest = rest.get(name.len()..).unwrap_or_default();
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                text.push(c);
            }
            rest = chars.as_str();
        }
    }
    if !text.is_empty() {
        parts.push(KeyPart::Text(text));
    }
    if !parts.iter().any(|part| !matches!(part, KeyPart::Text(_))) {
        return Err(format!("`{template}` has no placeholder: every request would share one counter"));
    }
    Ok(parts)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
