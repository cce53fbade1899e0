//! Throttling in WSO2's order, each level answering its own code: blocking conditions (900805,
//! no counter touched), API (900800) or resource (900802) level, subscription (900804, or let
//! through flagged without stop-on-quota-reach), subscription burst (900807), application per end
//! user (900803), custom policies (900806), and the hard limit per API and key type (900801, 503).
//!
//! Levels are counted in order and the first over its limit answers; the counts the levels before
//! it took are then taken back, so a denied request counts nowhere (WSO2 counts only the requests
//! it lets through). Each level is one
//! counter key, which is also the descriptor a cluster-wide rate-limit service would get (see
//! [`Level::descriptor`]).

pub mod cidr;
pub mod limiter;

use std::net::IpAddr;

use crate::catalogue::{Fault, FaultId};
use crate::config::{Api, BlockingCondition, Config, FailureMode, KeyType, PolicySpec, Resource};
use limiter::{CasStore, Contended, Count, Hit, Settings};

/// A throttling level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Blocked,
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
            Level::Blocked => FaultId::Blocked,
            Level::Api => FaultId::ApiThrottled,
            Level::Resource => FaultId::ResourceThrottled,
            Level::Subscription => FaultId::SubscriptionThrottled,
            Level::Burst => FaultId::BurstThrottled,
            Level::Application => FaultId::ApplicationThrottled,
            Level::Custom => FaultId::CustomPolicyThrottled,
            Level::HardLimit => FaultId::HardLimitExceeded,
        }
    }

    /// The name used in counter keys and descriptors.
    pub fn name(self) -> &'static str {
        match self {
            Level::Blocked => "blocked",
            Level::Api => "api",
            Level::Resource => "resource",
            Level::Subscription => "subscription",
            Level::Burst => "burst",
            Level::Application => "application",
            Level::Custom => "custom",
            Level::HardLimit => "hard_limit",
        }
    }

    /// The Envoy rate-limit-service descriptor for a counter of this level: `apim_level` plus the
    /// counter's key, one descriptor per level.
    pub fn descriptor(self, key: &str) -> Vec<(String, String)> {
        vec![("apim_level".to_string(), self.name().to_string()), ("apim_key".to_string(), key.to_string())]
    }
}

/// Who is calling, as far as throttling needs to know.
#[derive(Clone, Debug, Default)]
pub struct Caller<'a> {
    pub application_id: Option<&'a str>,
    /// The subscription policy (tier).
    pub tier: Option<&'a str>,
    pub key_type: Option<KeyType>,
    pub end_user: Option<&'a str>,
    /// The application's owner (subscriber): the user an application token or an API key acts
    /// for, as in WSO2.
    pub owner: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
}

impl Caller<'_> {
    /// The user a request acts for (WSO2's `authorizedUser`): the end user when the credential
    /// names one, else the application's owner (application tokens and API keys act for their
    /// owner), else `anonymous` (no credential).
    pub fn user(&self) -> &str {
        self.end_user.filter(|user| !user.is_empty()).or(self.owner).unwrap_or("anonymous")
    }
}

/// A byte budget to charge body bytes to once they pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteCounter {
    pub key: String,
    pub limit: u64,
    pub window_s: u64,
}

/// The IETF RateLimit header values of the most restrictive counted level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitInfo {
    pub limit: u64,
    pub remaining: u64,
    pub reset_s: u64,
}

/// The throttling decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed {
        /// Over a subscription quota that does not stop requests: flag it upstream.
        over_quota: bool,
        byte_counters: Vec<ByteCounter>,
        rate_limit: Option<RateLimitInfo>,
        /// A level could not be counted and `failure_mode: allow` let the request through.
        uncounted: Option<Contended>,
    },
    Denied {
        fault: Fault,
        rate_limit: Option<RateLimitInfo>,
        /// Denied because a level could not be counted (`failure_mode: deny`, 900808).
        uncounted: Option<Contended>,
    },
}

fn blocked(config: &Config, api: &Api, caller: &Caller<'_>) -> bool {
    let label = format!("{}:{}", api.name, api.version);
    let versioned = format!("{}/{}", api.context, api.version);
    config.blocking.iter().any(|condition| match condition {
        BlockingCondition::Api(name) => *name == label || *name == versioned || *name == api.context,
        BlockingCondition::Application(id) => caller.application_id == Some(id.as_str()),
        BlockingCondition::User(user) => caller.end_user == Some(user.as_str()),
        BlockingCondition::Ip(range) => caller.client_ip.is_some_and(|ip| range.contains(ip)),
        BlockingCondition::Subscription { application, api: subscribed } => {
            caller.application_id == Some(application.as_str()) && *subscribed == label
        }
    })
}

/// A level, its counter key and its policy.
pub type LevelCounter<'c> = (Level, String, &'c PolicySpec);

/// The counter keys of a request, in WSO2's order, with their policies.
pub fn counters<'c>(
    config: &'c Config,
    api: &Api,
    resource: &Resource,
    caller: &Caller<'_>,
) -> Vec<(Level, String, &'c PolicySpec)> {
    let mut levels = Vec::new();
    let context_version = format!("{}:{}", api.context, api.version);
    let resource_key = || format!("{}/{}{}:{}", api.context, api.version, resource.template.as_str(), resource.method);
    let policy = |name: Option<&String>| name.and_then(|name| config.policy_specs.get(name));
    if let Some(spec) = policy(api.policy.as_ref()) {
        levels.push((Level::Api, format!("api:{context_version}"), spec));
    } else if let Some(spec) = policy(resource.policy.as_ref()) {
        levels.push((Level::Resource, format!("resource:{}", resource_key()), spec));
    }
    if let (Some(application), Some(spec)) =
        (caller.application_id, caller.tier.and_then(|tier| config.policy_specs.get(tier)))
    {
        levels.push((Level::Subscription, format!("subscription:{application}:{context_version}"), spec));
        if spec.burst.is_some() {
            levels.push((Level::Burst, format!("burst:{application}:{context_version}"), spec));
        }
    }
    if let Some(application) = caller.application_id {
        let policy_name = config
            .application_ids
            .get(application)
            .and_then(|i| config.applications.get(*i))
            .and_then(|a| a.policy.as_ref());
        if let Some(spec) = policy(policy_name) {
            levels.push((Level::Application, format!("application:{application}:{}", caller.user()), spec));
        }
    }
    let label = format!("{}:{}", api.name, api.version);
    for custom in config.custom_policies.iter().filter(|custom| custom.apis.is_empty() || custom.apis.contains(&label))
    {
        let mut key = String::new();
        for part in &custom.template {
            match part {
                KeyPart::Text(text) => key.push_str(text),
                KeyPart::UserId => key.push_str(caller.user()),
                KeyPart::ApiContext => key.push_str(&api.context),
                KeyPart::ApiVersion => key.push_str(&api.version),
                KeyPart::AppId => key.push_str(caller.application_id.unwrap_or("anonymous")),
                KeyPart::ClientIp => key.push_str(&caller.client_ip.map(|ip| ip.to_string()).unwrap_or_default()),
                KeyPart::ResourceKey => key.push_str(&resource_key()),
            }
        }
        levels.push((Level::Custom, format!("custom:{}:{key}", custom.name), &custom.spec));
    }
    let key_type = caller.key_type.unwrap_or(KeyType::Production);
    if let Some(spec) = config.hard_limits.get(&(label, key_type)) {
        let kind = match key_type {
            KeyType::Production => "PRODUCTION",
            KeyType::Sandbox => "SANDBOX",
        };
        levels.push((Level::HardLimit, format!("hard_limit:{context_version}:{kind}"), spec));
    }
    levels
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

fn throttled(level: Level, count: &Count, now: u64) -> Fault {
    let mut fault = Fault::new(level.fault_id());
    if level != Level::HardLimit {
        fault.next_access_time = Some(count.reset_at);
        fault.retry_after_s = Some(count.reset_at.saturating_sub(now).max(1));
    }
    fault
}

fn tighter(current: Option<RateLimitInfo>, count: &Count, now: u64) -> Option<RateLimitInfo> {
    let info =
        RateLimitInfo { limit: count.limit, remaining: count.remaining, reset_s: count.reset_at.saturating_sub(now) };
    match current {
        Some(current) if current.remaining <= info.remaining => Some(current),
        _ => Some(info),
    }
}

/// Evaluates every level for a request at `now`.
pub fn evaluate(
    config: &Config,
    api: &Api,
    resource: &Resource,
    caller: &Caller<'_>,
    store: &mut dyn CasStore,
    now: u64,
) -> Outcome {
    if blocked(config, api, caller) {
        return Outcome::Denied { fault: Fault::new(FaultId::Blocked), rate_limit: None, uncounted: None };
    }
    let settings = Settings { slots: config.throttling.counter_slots, retries: config.throttling.cas_retries };
    let mut over_quota = false;
    let mut byte_counters = Vec::new();
    let mut rate_limit = None;
    let mut uncounted = None;
    // Request counts taken so far, to take back if a later level denies.
    let mut counted: Vec<(String, u64, u64)> = Vec::new();
    let undo = |counted: &[(String, u64, u64)], store: &mut dyn CasStore| {
        for (key, limit, window_s) in counted {
            let _ = limiter::hit(store, key, *limit, *window_s, Hit::Undo, now, settings);
        }
    };
    for (level, key, spec) in counters(config, api, resource, caller) {
        let (limit, window_s) = match level {
            Level::Burst => match spec.burst {
                Some(burst) => burst,
                None => continue,
            },
            _ => (spec.limit, spec.window_s),
        };
        let hit = if spec.bytes && level != Level::Burst { Hit::Check } else { Hit::Request };
        let count = match limiter::hit(store, &key, limit, window_s, hit, now, settings) {
            Ok(count) => count,
            Err(contended) => match config.throttling.failure_mode {
                FailureMode::Deny => {
                    undo(&counted, store);
                    return Outcome::Denied {
                        fault: Fault::new(FaultId::ThrottleInternalError),
                        rate_limit,
                        uncounted: Some(contended),
                    };
                }
                FailureMode::Allow => {
                    uncounted = Some(contended);
                    continue;
                }
            },
        };
        if hit == Hit::Check {
            byte_counters.push(ByteCounter { key: key.clone(), limit, window_s });
        }
        if !count.allowed {
            if level == Level::Subscription && !spec.stop_on_quota_reach {
                over_quota = true;
                continue;
            }
            rate_limit = tighter(rate_limit, &count, now);
            undo(&counted, store);
            return Outcome::Denied { fault: throttled(level, &count, now), rate_limit, uncounted };
        }
        if hit == Hit::Request {
            // The RateLimit headers speak of requests: byte budgets do not take part.
            rate_limit = tighter(rate_limit, &count, now);
            counted.push((key, limit, window_s));
        }
    }
    Outcome::Allowed { over_quota, byte_counters, rate_limit, uncounted }
}

/// Charges body bytes to the byte budgets of a request.
pub fn charge_bytes(config: &Config, counters: &[ByteCounter], bytes: u64, store: &mut dyn CasStore, now: u64) {
    for counter in counters {
        let _ = limiter::hit(
            store,
            &counter.key,
            counter.limit,
            counter.window_s,
            Hit::Add(bytes),
            now,
            Settings { slots: config.throttling.counter_slots, retries: config.throttling.cas_retries },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::limiter::tests::MemoryStore;
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn config(api_level: bool, stop_on_quota_reach: bool) -> Config {
        let api_policy = if api_level { r#","policy":"One""# } else { "" };
        let json = format!(
            r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}}{api_policy},
                  "resources":[{{"method":"GET","path":"/r","policy":"One"}}]}}],
              "applications":[{{"id":"app","name":"App","policy":"One"}}],
              "subscriptions":[{{"application":"app","api":"A:1","tier":"Tier"}}],
              "policies":{{"One":{{"requests":1,"per":"hour"}},
                          "Tier":{{"requests":2,"per":"hour","stop_on_quota_reach":{stop_on_quota_reach},"burst":{{"requests":1,"per":"minute"}}}}}},
              "custom_policies":[{{"name":"cp","key":"$userId:$apiContext","requests":1,"per":"hour"}}],
              "hard_limits":[{{"api":"A:1","key_type":"PRODUCTION","requests_per_second":1}}],
              "blocking":[{{"user":"blocked-user"}},{{"ip_range":"203.0.113.0/24"}}]}}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn caller(user: &str) -> Caller<'_> {
        Caller {
            application_id: Some("app"),
            tier: Some("Tier"),
            key_type: Some(KeyType::Production),
            end_user: Some(user),
            owner: Some("owner"),
            client_ip: Some("198.51.100.7".parse().unwrap()),
        }
    }

    fn outcome_code(config: &Config, caller: &Caller<'_>, store: &mut MemoryStore) -> Option<u32> {
        let api = &config.apis[0];
        match evaluate(config, api, &api.resources[0], caller, store, NOW) {
            Outcome::Denied { fault, .. } => Some(fault.code),
            Outcome::Allowed { .. } => None,
        }
    }

    /// Exhausts the counter of `level` for this caller.
    fn exhaust(config: &Config, caller: &Caller<'_>, level: Level, store: &mut MemoryStore) {
        let api = &config.apis[0];
        for (found, key, spec) in counters(config, api, &api.resources[0], caller) {
            if found == level {
                let (limit, window) =
                    if level == Level::Burst { spec.burst.unwrap() } else { (spec.limit, spec.window_s) };
                for _ in 0..limit {
                    limiter::hit(store, &key, limit, window, Hit::Request, NOW, Settings { slots: 4096, retries: 20 })
                        .unwrap();
                }
            }
        }
    }

    const ORDER: [Level; 8] = [
        Level::Blocked,
        Level::Api,
        Level::Resource,
        Level::Subscription,
        Level::Burst,
        Level::Application,
        Level::Custom,
        Level::HardLimit,
    ];

    #[test]
    fn every_pair_of_levels_answers_with_the_first_in_wso2_order() {
        for (i, first) in ORDER.iter().enumerate() {
            for second in &ORDER[i + 1..] {
                if (*first, *second) == (Level::Api, Level::Resource) {
                    continue; // an API-level policy replaces the resource level: never both
                }
                let api_level = [*first, *second].contains(&Level::Api);
                let config = config(api_level, true);
                let user = if *first == Level::Blocked { "blocked-user" } else { "u" };
                let both = caller(user);
                let mut store = MemoryStore::prepared(4096);
                for level in [*first, *second] {
                    exhaust(&config, &both, level, &mut store);
                }
                assert_eq!(
                    outcome_code(&config, &both, &mut store),
                    Some(first.fault_id().spec().code),
                    "{first:?} before {second:?}"
                );
                // The second alone answers its own code.
                if *second != Level::Blocked {
                    let mut store = MemoryStore::prepared(4096);
                    exhaust(&config, &caller("u"), *second, &mut store);
                    assert_eq!(
                        outcome_code(&config, &caller("u"), &mut store),
                        Some(second.fault_id().spec().code),
                        "{second:?} alone"
                    );
                }
            }
        }
    }

    #[test]
    fn blocking_touches_no_counter() {
        let config = config(false, true);
        let mut store = MemoryStore::prepared(4096);
        for _ in 0..5 {
            assert_eq!(outcome_code(&config, &caller("blocked-user"), &mut store), Some(900805));
        }
        let mut by_ip = caller("u");
        by_ip.client_ip = Some("203.0.113.9".parse().unwrap());
        assert_eq!(outcome_code(&config, &by_ip, &mut store), Some(900805));
        assert!(
            store.data.iter().all(|(key, (value, _))| key == "apim.rl.layout" || value.len() <= 1),
            "no counter was written"
        );
        assert_eq!(outcome_code(&config, &caller("u"), &mut store), None);
    }

    #[test]
    fn without_stop_on_quota_reach_the_request_passes_flagged() {
        let config = config(false, false);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        exhaust(&config, &caller, Level::Subscription, &mut store);
        let api = &config.apis[0];
        match evaluate(&config, api, &api.resources[0], &caller, &mut store, NOW) {
            Outcome::Allowed { over_quota, .. } => assert!(over_quota),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttled_faults_carry_the_next_access_time_and_retry_after() {
        let config = config(false, true);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        exhaust(&config, &caller, Level::Resource, &mut store);
        let api = &config.apis[0];
        let Outcome::Denied { fault, .. } = evaluate(&config, api, &api.resources[0], &caller, &mut store, NOW) else {
            panic!()
        };
        let window_end = (NOW / 3600 + 1) * 3600;
        assert_eq!(fault.next_access_time, Some(window_end));
        assert_eq!(fault.retry_after_s, Some(window_end - NOW));
        // Hard limits and blocking say nothing about when to come back.
        let mut store = MemoryStore::prepared(4096);
        exhaust(&config, &caller, Level::HardLimit, &mut store);
        let Outcome::Denied { fault, .. } = evaluate(&config, api, &api.resources[0], &caller, &mut store, NOW) else {
            panic!()
        };
        assert_eq!((fault.code, fault.retry_after_s, fault.next_access_time), (900801, None, None));
    }

    #[test]
    fn contention_follows_the_failure_mode() {
        let mut config = config(false, true);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        store.conflicts = 1_000;
        assert_eq!(outcome_code(&config, &caller, &mut store), Some(900808));
        config.throttling.failure_mode = FailureMode::Allow;
        let mut store = MemoryStore::prepared(4096);
        store.conflicts = 1_000;
        assert_eq!(outcome_code(&config, &caller, &mut store), None);
    }

    #[test]
    fn key_templates() {
        assert_eq!(
            parse_key_template("$userId:$apiContext").unwrap(),
            vec![KeyPart::UserId, KeyPart::Text(":".into()), KeyPart::ApiContext]
        );
        assert!(parse_key_template("$nope").is_err());
        assert!(parse_key_template("constant").is_err());
        assert_eq!(parse_key_template("ip=$clientIp").unwrap().len(), 2);
    }

    #[test]
    fn a_denied_request_counts_nowhere() {
        let config = config(false, true);
        let caller = caller("u");
        let mut store = MemoryStore::prepared(4096);
        exhaust(&config, &caller, Level::Application, &mut store);
        // Denied at the application level: resource, subscription and burst counts are taken back.
        assert_eq!(outcome_code(&config, &caller, &mut store), Some(900803));
        assert_eq!(outcome_code(&config, &caller, &mut store), Some(900803));
        let other = Caller { application_id: None, tier: None, ..caller.clone() };
        assert_eq!(
            outcome_code(&config, &other, &mut store),
            None,
            "the shared resource level still has its one request"
        );
    }

    #[test]
    fn descriptors_name_the_level_and_key() {
        assert_eq!(Level::Api.descriptor("api:/a:1")[0], ("apim_level".to_string(), "api".to_string()));
    }
}
