//! Throttling's part of the configuration, compiled: custom policies with their key templates,
//! hard limits per API and key type, how counters behave, and the rate-limit service that
//! cluster-wide levels count on. (Tiers and blocking conditions are the directory's.)

use std::collections::{BTreeMap, HashMap, HashSet};

use super::limiter::Contended;
use super::plan::{parse_key_template, KeyPart, Scope, Units};
use super::rls;
use super::worker_lease::Leasing;
use crate::directory::PolicySpec;
use crate::routing::Table;
use crate::schema::checks::{check_cluster_target, check_header_name};
use crate::schema::{
    AppliesTo, ConfigError, Counting, RawCustomPolicy, RawHardLimit, RawPolicy, RawRateLimitService, RawThrottling,
};
use crate::vocab::{FailureMode, KeyType, SUPER_TENANT};

/// A compiled custom policy.
#[derive(Clone, Debug)]
pub struct CustomPolicy {
    pub name: String,
    pub template: Vec<KeyPart>,
    pub spec: PolicySpec,
    /// `<name>:<version>` of the APIs it applies to; empty: all.
    pub apis: Vec<String>,
}

/// How counters behave.
#[derive(Clone, Debug)]
pub struct CounterSettings {
    pub failure_mode: FailureMode,
    pub cas_retries: u32,
    pub rate_limit_headers: bool,
    pub quota_exceeded_header: String,
    /// The slot count in use (see [`super::limiter::prepare_slots`]).
    pub counter_slots: u32,
    /// The secret placing keys in slots in this Envoy (set with the slot count in use).
    pub slot_seed: super::limiter::SlotSeed,
    /// The blocks a worker takes of node-local counters (see [`super::worker_lease`]).
    pub worker_leasing: Leasing,
}

/// The rate-limit service cluster-wide levels count on (see [`super::cluster`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitService {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u32,
    pub failure_mode: FailureMode,
    pub counting: Counting,
    pub applies_to: AppliesTo,
    pub lease_share_percent: u32,
    pub lease_max: u32,
    /// The shared-data key where a node remembers its last failed call to the service.
    pub failure_key: String,
}

/// Throttling's configuration.
#[derive(Debug)]
pub struct ThrottleConfig {
    pub custom_policies: Vec<CustomPolicy>,
    /// (`<api name>:<version>`, key type) to its hard limit.
    pub hard_limits: HashMap<(String, KeyType), PolicySpec>,
    pub settings: CounterSettings,
    pub rate_limit_service: Option<RateLimitService>,
    /// The tenant the gateway serves (`control_plane.tenant`, else WSO2's super tenant
    /// `carbon.super`): blocked users are compared qualified with it, as WSO2's gateway does.
    pub tenant: String,
    /// A configured policy's condition group tests the client's address.
    pub conditions_read_client_ip: bool,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            custom_policies: Vec::new(),
            hard_limits: HashMap::new(),
            settings: CounterSettings::from(RawThrottling::default()),
            rate_limit_service: None,
            tenant: SUPER_TENANT.to_string(),
            conditions_read_client_ip: false,
        }
    }
}

impl From<RawThrottling> for CounterSettings {
    /// The settings as written (unchecked: [`ThrottleConfig::compile`] checks first).
    fn from(raw: RawThrottling) -> Self {
        CounterSettings {
            failure_mode: raw.failure_mode,
            cas_retries: raw.cas_retries,
            rate_limit_headers: raw.rate_limit_headers,
            quota_exceeded_header: raw.quota_exceeded_header,
            counter_slots: raw.counter_slots,
            slot_seed: super::limiter::SlotSeed::default(),
            worker_leasing: Leasing { share_percent: raw.worker_lease_share_percent, max: raw.worker_lease_max },
        }
    }
}

impl ThrottleConfig {
    /// Where a counter counts: on the rate-limit service when there is one, the policy (or the
    /// service's `applies_to`) asks for it, it counts requests, and the service can hold its window
    /// and limit; in this Envoy otherwise. Policies configured here are checked at load (see
    /// [`check_scope`]), so only policies from elsewhere fall back to the node silently.
    pub fn scope_of(&self, cluster_wide: Option<bool>, limit: u64, window_s: u64, units: Units) -> Scope {
        let Some(service) = &self.rate_limit_service else { return Scope::Node };
        let wanted = cluster_wide.unwrap_or(service.applies_to == AppliesTo::All);
        if wanted && units == Units::Requests && rls::unit_for(window_s).is_some() && u32::try_from(limit).is_ok() {
            Scope::Cluster
        } else {
            Scope::Node
        }
    }

    /// What to do with a request a level could not count.
    pub fn failure_mode_for(&self, why: Contended) -> FailureMode {
        match (why, &self.rate_limit_service) {
            (Contended::EngineUnavailable | Contended::EngineUnusable, Some(service)) => service.failure_mode,
            _ => self.settings.failure_mode,
        }
    }

    /// `policies` are the directory's, checked here for what cluster-wide counting needs.
    pub fn compile(
        custom_policies: Vec<RawCustomPolicy>,
        hard_limits: Vec<RawHardLimit>,
        mut throttling: RawThrottling,
        routes: &Table,
        policies: &BTreeMap<String, RawPolicy>,
    ) -> Result<ThrottleConfig, ConfigError> {
        let rate_limit_service = throttling.rate_limit_service.take().map(compile_service).transpose()?;
        let service = rate_limit_service.as_ref();
        for (name, policy) in policies {
            let field = format!("policies.{name}");
            let window_s = policy.per.seconds().saturating_mul(u64::from(policy.unit_count));
            let limit = policy.requests.or(policy.bytes).unwrap_or(0);
            let limit_field = format!("{field}.requests");
            check_scope((&field, &limit_field), service, policy.cluster_wide, limit, policy.bytes.is_some(), window_s)?;
            if let Some(burst) = &policy.burst {
                let burst_field = format!("{field}.burst.requests");
                check_scope((&field, &burst_field), service, policy.cluster_wide, burst.requests, false, 1)?;
            }
            for (index, group) in policy.condition_groups.iter().enumerate() {
                // A group counts across nodes as its policy: what keeps it from doing so is refused
                // naming the policy's `cluster_wide` (a group has none), the group in the reason.
                let group_field = format!("condition_groups[{index}]");
                let window_s = group.per.seconds().saturating_mul(u64::from(group.unit_count));
                let limit = group.requests.or(group.bytes).unwrap_or(0);
                let limit_field = format!("{field}.{group_field}.requests");
                let cluster_wide_field = format!("{field}.cluster_wide");
                check_scope(
                    (&field, &limit_field),
                    service,
                    policy.cluster_wide,
                    limit,
                    group.bytes.is_some(),
                    window_s,
                )
                .map_err(|error| match error.field == cluster_wide_field {
                    true => ConfigError::new(error.field, format!("{group_field}: {}", error.reason)),
                    false => error,
                })?;
            }
        }
        let conditions_read_client_ip = policies.values().flat_map(|policy| &policy.condition_groups).any(|group| {
            group
                .conditions
                .iter()
                .any(|condition| condition.ip.is_some() || condition.ip_range.is_some() || condition.ip_from.is_some())
        });
        for (index, policy) in custom_policies.iter().enumerate() {
            let window_s = policy.per.seconds().saturating_mul(u64::from(policy.unit_count));
            let limit = policy.requests.or(policy.bytes).unwrap_or(0);
            let field = format!("custom_policies[{index}]");
            let limit_field = format!("{field}.requests");
            check_scope((&field, &limit_field), service, policy.cluster_wide, limit, policy.bytes.is_some(), window_s)?;
        }
        for (index, limit) in hard_limits.iter().enumerate() {
            let field = format!("hard_limits[{index}]");
            let limit_field = format!("{field}.requests_per_second");
            check_scope((&field, &limit_field), service, limit.cluster_wide, limit.requests_per_second, false, 1)?;
        }
        let custom_policies = compile_custom_policies(&custom_policies)?;
        for (index, policy) in custom_policies.iter().enumerate() {
            for (api_index, label) in policy.apis.iter().enumerate() {
                if routes.by_label(label).is_none() {
                    return Err(ConfigError::new(
                        format!("custom_policies[{index}].apis[{api_index}]"),
                        format!("API `{label}` is not defined"),
                    ));
                }
            }
        }
        let mut compiled_limits = HashMap::new();
        for (index, limit) in hard_limits.iter().enumerate() {
            let field = format!("hard_limits[{index}]");
            if routes.by_label(&limit.api).is_none() {
                return Err(ConfigError::new(format!("{field}.api"), format!("API `{}` is not defined", limit.api)));
            }
            if limit.requests_per_second == 0 {
                return Err(ConfigError::new(format!("{field}.requests_per_second"), "must be at least 1"));
            }
            let spec = PolicySpec::requests_per_second(limit.requests_per_second, limit.cluster_wide);
            if compiled_limits.insert((limit.api.clone(), limit.key_type), spec).is_some() {
                return Err(ConfigError::new(field, "a second hard limit for the same API and key type"));
            }
        }
        check_header_name("throttling.quota_exceeded_header", &throttling.quota_exceeded_header)?;
        if throttling.cas_retries == 0 || throttling.cas_retries > crate::throttle::limiter::MAX_RETRIES {
            return Err(ConfigError::new("throttling.cas_retries", "must be from 1 to 1000"));
        }
        if throttling.counter_slots == 0 || throttling.counter_slots > 65_536 {
            return Err(ConfigError::new("throttling.counter_slots", "must be from 1 to 65536"));
        }
        if !(1..=100).contains(&throttling.worker_lease_share_percent) {
            return Err(ConfigError::new("throttling.worker_lease_share_percent", "must be from 1 to 100"));
        }
        if throttling.worker_lease_max > 1000 {
            return Err(ConfigError::new("throttling.worker_lease_max", "must be from 0 to 1000"));
        }
        Ok(ThrottleConfig {
            custom_policies,
            hard_limits: compiled_limits,
            settings: CounterSettings::from(throttling),
            rate_limit_service,
            tenant: SUPER_TENANT.to_string(),
            conditions_read_client_ip,
        })
    }
}

fn compile_service(raw: RawRateLimitService) -> Result<RateLimitService, ConfigError> {
    let field = "throttling.rate_limit_service";
    check_cluster_target(field, &raw.cluster, u64::from(raw.timeout_ms))?;
    if raw.domain.is_empty() || raw.domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(format!("{field}.domain"), "must be non-empty, without spaces"));
    }
    if !(1..=100).contains(&raw.lease_share_percent) {
        return Err(ConfigError::new(format!("{field}.lease_share_percent"), "must be from 1 to 100"));
    }
    if !(1..=1000).contains(&raw.lease_max) {
        return Err(ConfigError::new(format!("{field}.lease_max"), "must be from 1 to 1000"));
    }
    Ok(RateLimitService {
        failure_key: format!("apim.rls.failed.{}", raw.cluster),
        cluster: raw.cluster,
        domain: raw.domain,
        timeout_ms: raw.timeout_ms,
        failure_mode: raw.failure_mode,
        counting: raw.counting,
        applies_to: raw.applies_to,
        lease_share_percent: raw.lease_share_percent,
        lease_max: raw.lease_max,
    })
}

/// Refuses a policy that asks to count across nodes where it cannot: without a service, for a
/// byte budget, with a window no service unit holds whole, or with a limit the protocol cannot
/// carry (32 bits). `fields`: where the policy's `cluster_wide` is, and where the limit is.
fn check_scope(
    (field, limit_field): (&str, &str),
    service: Option<&RateLimitService>,
    cluster_wide: Option<bool>,
    limit: u64,
    bytes: bool,
    window_s: u64,
) -> Result<(), ConfigError> {
    let Some(service) = service else {
        return match cluster_wide {
            Some(true) => Err(ConfigError::new(
                format!("{field}.cluster_wide"),
                "counting across nodes needs `throttling.rate_limit_service`",
            )),
            _ => Ok(()),
        };
    };
    let field = format!("{field}.cluster_wide");
    if bytes {
        // A byte budget is checked before the bytes are known and charged after they pass: it
        // counts per node (see docs/CONFIG.md), whatever `applies_to` says.
        return match cluster_wide {
            Some(true) => Err(ConfigError::new(field, "bandwidth policies count per node, not across nodes")),
            _ => Ok(()),
        };
    }
    if !cluster_wide.unwrap_or(service.applies_to == AppliesTo::All) {
        return Ok(());
    }
    if rls::unit_for(window_s).is_none() {
        return Err(ConfigError::new(
            field,
            format!(
                "a window of {window_s} s fits no whole number of times in a unit of the rate-limit service (second, \
                 minute, hour, day, week, 30-day month, 365-day year): choose another window or set \
                 `cluster_wide: false`"
            ),
        ));
    }
    if u32::try_from(limit).is_err() {
        return Err(ConfigError::new(
            limit_field,
            "the rate-limit service carries limits up to 4294967295 (or set `cluster_wide: false`)",
        ));
    }
    Ok(())
}

fn compile_custom_policies(policies: &[RawCustomPolicy]) -> Result<Vec<CustomPolicy>, ConfigError> {
    let mut names = HashSet::new();
    let mut compiled = Vec::with_capacity(policies.len());
    for (index, policy) in policies.iter().enumerate() {
        let field = format!("custom_policies[{index}]");
        if policy.name.is_empty() || policy.name.contains(':') || !names.insert(policy.name.clone()) {
            return Err(ConfigError::new(format!("{field}.name"), "must be non-empty, unique and without `:`"));
        }
        let template =
            parse_key_template(&policy.key).map_err(|reason| ConfigError::new(format!("{field}.key"), reason))?;
        let limit = match (policy.requests, policy.bytes) {
            (Some(limit), None) | (None, Some(limit)) if limit > 0 => limit,
            _ => return Err(ConfigError::new(field, "set one of `requests` and `bytes`, at least 1")),
        };
        if policy.unit_count == 0 {
            return Err(ConfigError::new(format!("{field}.unit_count"), "must be at least 1"));
        }
        let spec = PolicySpec {
            limit,
            bytes: policy.bytes.is_some(),
            window_s: policy.per.seconds().saturating_mul(u64::from(policy.unit_count)),
            burst: None,
            stop_on_quota_reach: true,
            per_user: false,
            cluster_wide: policy.cluster_wide,
            groups: Vec::new(),
        };
        compiled.push(CustomPolicy { name: policy.name.clone(), template, spec, apis: policy.apis.clone() });
    }
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn compile(policies: &str, service: &str) -> Result<Config, ConfigError> {
        let throttling = if service.is_empty() {
            String::new()
        } else {
            format!(r#","throttling":{{"rate_limit_service":{service}}}"#)
        };
        Config::from_json(format!(r#"{{"policies":{{{policies}}}{throttling}}}"#).as_bytes())
    }

    fn refused_field(policies: &str, service: &str) -> String {
        compile(policies, service).expect_err("refused").field
    }

    const SERVICE: &str = r#"{"cluster":"rls"}"#;

    #[test]
    fn cluster_wide_policies_need_a_service_a_request_count_and_a_window_the_service_holds() {
        assert_eq!(
            refused_field(r#""P":{"requests":5,"per":"minute","cluster_wide":true}"#, ""),
            "policies.P.cluster_wide"
        );
        assert!(compile(r#""P":{"requests":5,"per":"minute","cluster_wide":true}"#, SERVICE).is_ok());
        // 11 minutes fit no unit of the service a whole number of times.
        let eleven = r#""P":{"requests":5,"per":"minute","unit_count":11}"#;
        let error = compile(eleven, SERVICE).expect_err("refused");
        assert_eq!(error.field, "policies.P.cluster_wide");
        assert!(error.reason.contains("660 s") && error.reason.contains("cluster_wide: false"), "{error}");
        assert!(compile(r#""P":{"requests":5,"per":"minute","unit_count":11,"cluster_wide":false}"#, SERVICE).is_ok());
        assert!(compile(eleven, r#"{"cluster":"rls","applies_to":"marked"}"#).is_ok());
        assert!(
            compile(r#""P":{"requests":5,"per":"minute","unit_count":5}"#, SERVICE).is_ok(),
            "5 minutes fit an hour"
        );
        // Byte budgets count per node.
        let bytes = r#""B":{"bytes":1000,"per":"minute","cluster_wide":true}"#;
        assert_eq!(refused_field(bytes, SERVICE), "policies.B.cluster_wide");
        assert!(compile(r#""B":{"bytes":1000,"per":"minute"}"#, SERVICE).is_ok(), "`all` leaves bandwidth per node");
        assert_eq!(
            refused_field(r#""P":{"requests":5000000000,"per":"day"}"#, SERVICE),
            "policies.P.requests",
            "limits travel as 32 bits"
        );
    }

    /// A condition group has no `cluster_wide` of its own: what keeps it from counting across
    /// nodes is refused naming its policy's `cluster_wide`, and which group in the reason.
    #[test]
    fn a_groups_scope_is_refused_naming_its_policys_cluster_wide() {
        let group = |member: &str| {
            format!(
                r#""P":{{"requests":5,"per":"minute","condition_groups":[{{{member},"conditions":[{{"ip":"10.0.0.1"}}]}}]}}"#
            )
        };
        let eleven = compile(&group(r#""requests":1,"per":"minute","unit_count":11"#), SERVICE).expect_err("refused");
        assert_eq!(eleven.field, "policies.P.cluster_wide");
        assert!(eleven.reason.contains("condition_groups[0]") && eleven.reason.contains("660 s"), "{eleven}");
        let bytes = group(r#""bytes":100,"per":"minute""#).replacen(r#""per""#, r#""cluster_wide":true,"per""#, 1);
        let bytes = compile(&bytes, SERVICE).expect_err("refused");
        assert_eq!(bytes.field, "policies.P.cluster_wide");
        assert!(bytes.reason.contains("condition_groups[0]"), "{bytes}");
        let large = compile(&group(r#""requests":5000000000,"per":"day""#), SERVICE).expect_err("refused");
        assert_eq!(large.field, "policies.P.condition_groups[0].requests");
        // A group's own mistakes are named before what its scope needs, as a policy's are.
        let zero = compile(&group(r#""requests":1,"per":"minute","unit_count":0"#), SERVICE).expect_err("refused");
        assert_eq!(zero.field, "policies.P.condition_groups[0].unit_count");
        let both = compile(&group(r#""requests":1,"bytes":1,"per":"minute""#), SERVICE).expect_err("refused");
        assert_eq!(both.field, "policies.P.condition_groups[0]");
    }

    #[test]
    fn the_counter_settings_are_checked() {
        let refused = |throttling: &str| {
            Config::from_json(format!(r#"{{"throttling":{throttling}}}"#).as_bytes()).expect_err("refused").field
        };
        for (throttling, field) in [
            (r#"{"cas_retries":0}"#, "throttling.cas_retries"),
            (r#"{"cas_retries":1001}"#, "throttling.cas_retries"),
            (r#"{"counter_slots":0}"#, "throttling.counter_slots"),
            (r#"{"counter_slots":65537}"#, "throttling.counter_slots"),
            (r#"{"worker_lease_share_percent":0}"#, "throttling.worker_lease_share_percent"),
            (r#"{"worker_lease_share_percent":101}"#, "throttling.worker_lease_share_percent"),
            (r#"{"worker_lease_max":1001}"#, "throttling.worker_lease_max"),
            (r#"{"worker_lease_max":-1}"#, "throttling.worker_lease_max"),
        ] {
            assert_eq!(refused(throttling), field, "{throttling}");
        }
        let config = Config::from_json(br#"{"throttling":{"worker_lease_max":0}}"#).unwrap();
        assert!(!config.throttle.settings.worker_leasing.enabled(), "0 counts every request in shared data");
        let defaults = Config::from_json(b"{}").unwrap().throttle.settings.worker_leasing;
        assert_eq!((defaults.share_percent, defaults.max), (5, 100));
    }

    /// Review (review-cluster): WSO2's "per month" quotas (the control plane maps `months` to
    /// 2 592 000 s) count per node, silently, with a rate-limit service and `applies_to: all`;
    /// envoyproxy/ratelimit has MONTH (30 days) and YEAR (365 days), which the load error even
    /// lists as units of the service.
    #[test]
    fn review_monthly_quotas_count_across_nodes() {
        let all = compile("", SERVICE).unwrap().throttle;
        let error = compile(r#""P":{"requests":5,"per":"day","unit_count":30}"#, SERVICE).err();
        assert_eq!(
            all.scope_of(None, 10_000, 2_592_000, Units::Requests),
            Scope::Cluster,
            "a monthly tier from API-M; 30 days in a config is refused with: {error:?}"
        );
    }

    #[test]
    fn the_service_settings_are_checked() {
        let policies = r#""P":{"requests":5,"per":"minute"}"#;
        let field = |service: &str| refused_field(policies, service);
        let prefix = "throttling.rate_limit_service";
        assert_eq!(field(r#"{"cluster":""}"#), format!("{prefix}.cluster"));
        assert_eq!(field(r#"{"cluster":"rls","timeout_ms":0}"#), format!("{prefix}.timeout_ms"));
        assert_eq!(field(r#"{"cluster":"rls","domain":""}"#), format!("{prefix}.domain"));
        assert_eq!(field(r#"{"cluster":"rls","lease_share_percent":0}"#), format!("{prefix}.lease_share_percent"));
        assert_eq!(field(r#"{"cluster":"rls","lease_share_percent":101}"#), format!("{prefix}.lease_share_percent"));
        assert_eq!(field(r#"{"cluster":"rls","lease_max":0}"#), format!("{prefix}.lease_max"));
        assert_eq!(field(r#"{"cluster":"rls","lease_max":1001}"#), format!("{prefix}.lease_max"));
        assert_eq!(field(r#"{"cluster":"rls","counting":"eventual"}"#), format!("{prefix}.counting"));
        let config = compile(policies, SERVICE).unwrap();
        let service = config.throttle.rate_limit_service.as_ref().unwrap();
        assert_eq!(
            (service.domain.as_str(), service.timeout_ms, service.failure_mode, service.counting, service.applies_to),
            ("apim", 100, FailureMode::Allow, Counting::Leased, AppliesTo::All)
        );
        assert_eq!((service.lease_share_percent, service.lease_max), (10, 100));
    }

    #[test]
    fn scope_follows_the_policy_then_applies_to_and_stays_per_node_where_the_service_cannot_count() {
        let none = ThrottleConfig::default();
        assert_eq!(none.scope_of(Some(true), 5, 60, Units::Requests), Scope::Node, "no service");
        let all = compile("", SERVICE).unwrap().throttle;
        assert_eq!(all.scope_of(None, 5, 60, Units::Requests), Scope::Cluster);
        assert_eq!(all.scope_of(Some(false), 5, 60, Units::Requests), Scope::Node);
        assert_eq!(all.scope_of(None, 5, 60, Units::Bytes), Scope::Node);
        assert_eq!(all.scope_of(None, 5, 660, Units::Requests), Scope::Node, "a policy from elsewhere");
        assert_eq!(all.scope_of(None, u64::from(u32::MAX) + 1, 60, Units::Requests), Scope::Node);
        let marked = compile("", r#"{"cluster":"rls","applies_to":"marked"}"#).unwrap().throttle;
        assert_eq!(marked.scope_of(None, 5, 60, Units::Requests), Scope::Node);
        assert_eq!(marked.scope_of(Some(true), 5, 60, Units::Requests), Scope::Cluster);
        assert_eq!(all.failure_mode_for(Contended::EngineUnavailable), FailureMode::Allow);
        assert_eq!(all.failure_mode_for(Contended::Retries), FailureMode::Deny);
    }
}
