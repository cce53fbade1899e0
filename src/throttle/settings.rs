//! Throttling's part of the configuration, compiled: custom policies with their key templates,
//! hard limits per API and key type, and how counters behave. (Tiers and blocking conditions are
//! the directory's.)

use std::collections::{HashMap, HashSet};

use super::plan::{parse_key_template, KeyPart};
use crate::directory::PolicySpec;
use crate::routing::Table;
use crate::schema::checks::check_header_name;
use crate::schema::{ConfigError, RawCustomPolicy, RawHardLimit, RawThrottling};
use crate::vocab::{FailureMode, KeyType};

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
}

/// Throttling's configuration.
#[derive(Debug)]
pub struct ThrottleConfig {
    pub custom_policies: Vec<CustomPolicy>,
    /// (`<api name>:<version>`, key type) to its hard limit.
    pub hard_limits: HashMap<(String, KeyType), PolicySpec>,
    pub settings: CounterSettings,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            custom_policies: Vec::new(),
            hard_limits: HashMap::new(),
            settings: CounterSettings::from(RawThrottling::default()),
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
        }
    }
}

impl ThrottleConfig {
    pub fn compile(
        custom_policies: Vec<RawCustomPolicy>,
        hard_limits: Vec<RawHardLimit>,
        throttling: RawThrottling,
        routes: &Table,
    ) -> Result<ThrottleConfig, ConfigError> {
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
            let spec = PolicySpec::requests_per_second(limit.requests_per_second);
            if compiled_limits.insert((limit.api.clone(), limit.key_type), spec).is_some() {
                return Err(ConfigError::new(field, "a second hard limit for the same API and key type"));
            }
        }
        check_header_name("throttling.quota_exceeded_header", &throttling.quota_exceeded_header)?;
        if throttling.cas_retries == 0 || throttling.cas_retries > 1000 {
            return Err(ConfigError::new("throttling.cas_retries", "must be from 1 to 1000"));
        }
        if throttling.counter_slots == 0 || throttling.counter_slots > 65_536 {
            return Err(ConfigError::new("throttling.counter_slots", "must be from 1 to 65536"));
        }
        Ok(ThrottleConfig {
            custom_policies,
            hard_limits: compiled_limits,
            settings: CounterSettings::from(throttling),
        })
    }
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
        };
        compiled.push(CustomPolicy { name: policy.name.clone(), template, spec, apis: policy.apis.clone() });
    }
    Ok(compiled)
}
