//! WSO2 API Manager's internal data API, as it answers (`/internal/data/v1`, API-M 4.x): the
//! JSON shapes, read leniently (unknown fields ignored, `null` where WSO2 writes it), and their
//! mapping to the filter's own model. Every mapping decision is here and in `docs/HOWTO.md`.
//!
//! Sources: carbon-apimgt's internal service (`api.yaml`, the DTOs of
//! `org.wso2.carbon.apimgt.internal.service`), `SubscriptionDataLoaderImpl`, `APIConstants`,
//! `AbstractKeyValidationHandler` (subscription states), `ThrottleHandler` (blocking).

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

use crate::conditions;
use crate::directory::{BlockingCondition, PolicyLevel, PolicySpec};
use crate::schema::{RawApi, RawEndpoints, RawResource};
use crate::vocab::{KeyType, Lifecycle, SecurityScheme, SubscriptionState};

/// `null` reads as the type's default (WSO2 writes `null` for absent lists and strings).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// WSO2's list envelope: `{"count": n, "list": [...], "pagination": null}`. `list` is required
/// (`null` reads as none): an object without it is another document (`/block`'s answered for
/// `/apis`), and read as an empty list it dropped every API the last good load brought.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Envelope<T> {
    #[serde(deserialize_with = "nullable_list")]
    pub list: Vec<T>,
}

fn nullable_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Option::<Vec<T>>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// `APIDTO` (`organization`: its tenant).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Api {
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub context: String,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub api_type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub is_default_version: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub url_mappings: Vec<UrlMapping>,
}

/// `URLMappingDTO`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlMapping {
    #[serde(default, deserialize_with = "nullable")]
    pub auth_scheme: String,
    #[serde(default)]
    pub throttling_policy: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub http_method: String,
    #[serde(default, deserialize_with = "nullable")]
    pub url_pattern: String,
    #[serde(default, deserialize_with = "nullable")]
    pub scopes: Vec<String>,
}

/// `ApplicationDTO` (the fields the gateway uses).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    #[serde(default, deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub id: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The owner (subscriber).
    #[serde(default, deserialize_with = "nullable")]
    pub sub_name: String,
    #[serde(default)]
    pub policy: Option<String>,
    /// `attributes`: names to text values (others are left out).
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// `SubscriptionDTO`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Subscription {
    /// The tier's name.
    #[serde(rename = "policyId", default, deserialize_with = "nullable")]
    pub policy_id: String,
    #[serde(rename = "apiUUID", default, deserialize_with = "nullable")]
    pub api_uuid: String,
    #[serde(rename = "applicationUUID", default, deserialize_with = "nullable")]
    pub application_uuid: String,
    #[serde(rename = "subscriptionState", default, deserialize_with = "nullable")]
    pub subscription_state: String,
}

/// `ApplicationKeyMappingDTO`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct KeyMapping {
    #[serde(rename = "applicationId", default, deserialize_with = "nullable")]
    pub application_id: i64,
    #[serde(rename = "applicationUUID", default, deserialize_with = "nullable")]
    pub application_uuid: String,
    #[serde(rename = "consumerKey", default, deserialize_with = "nullable")]
    pub consumer_key: String,
    #[serde(rename = "keyType", default, deserialize_with = "nullable")]
    pub key_type: String,
    #[serde(rename = "keyManager", default, deserialize_with = "nullable")]
    pub key_manager: String,
}

/// Subscription, application and API policies (`SubscriptionPolicyDTO`, `ApplicationPolicyDTO`,
/// `ApiPolicyDTO`: the fields the gateway uses).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub default_limit: Option<Limit>,
    /// Burst control: requests per `rate_limit_time_unit` (0: none).
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit_count: i64,
    #[serde(default)]
    pub rate_limit_time_unit: Option<String>,
    #[serde(default)]
    pub stop_on_quota_reach: Option<bool>,
    /// API policies: `userLevel` counts each user apart, `apiLevel` the API (or resource) as a
    /// whole.
    #[serde(default, deserialize_with = "nullable")]
    pub applicable_level: String,
    /// API policies: condition groups, each with its own limit (see [`condition_groups`]).
    #[serde(default, deserialize_with = "nullable")]
    pub condition_groups: Vec<ConditionGroup>,
}

/// `APIPolicyConditionGroupDTO`: its limit and conditions, all of which a request must meet.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionGroup {
    /// A number (`11`) as API-M writes it; a string read as written.
    #[serde(default)]
    pub condition_group_id: Option<serde_json::Value>,
    #[serde(default)]
    pub default_limit: Option<Limit>,
    #[serde(default, deserialize_with = "nullable")]
    pub condition: Vec<Condition>,
}

/// `ConditionDTO`: `IPSpecific` (the address in `value`), `IPRange` (from `name` to `value`),
/// `Header`, `QueryParameterType` and `JWTClaims` (`name` and a pattern in `value`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default, deserialize_with = "nullable")]
    pub condition_type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub value: String,
    #[serde(default, deserialize_with = "nullable")]
    pub is_inverted: bool,
}

/// `ThrottleLimitDTO`: only the member matching `quotaType` is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    #[serde(default, deserialize_with = "nullable")]
    pub quota_type: String,
    #[serde(default)]
    pub request_count: Option<CountLimit>,
    #[serde(default)]
    pub event_count: Option<CountLimit>,
    #[serde(default)]
    pub bandwidth: Option<BandwidthLimit>,
}

/// `RequestCountLimitDTO` / `EventCountLimitDTO`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountLimit {
    #[serde(default, deserialize_with = "nullable")]
    pub time_unit: String,
    #[serde(default, deserialize_with = "nullable")]
    pub unit_time: i64,
    #[serde(default, alias = "eventCount", deserialize_with = "nullable")]
    pub request_count: i64,
}

/// `BandwidthLimitDTO`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthLimit {
    #[serde(default, deserialize_with = "nullable")]
    pub time_unit: String,
    #[serde(default, deserialize_with = "nullable")]
    pub unit_time: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub data_amount: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub data_unit: String,
}

/// `BlockConditionsDTO` (a bare object).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Block {
    #[serde(default, deserialize_with = "nullable")]
    pub api: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub application: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub user: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub ip: Vec<BlockedIp>,
    #[serde(default, deserialize_with = "nullable")]
    pub subscription: Vec<String>,
}

/// Which of `BlockConditionsDTO`'s members an answer to `/block` has: one with none of them is
/// another document (a list envelope, an error object), never "no blocking conditions".
#[derive(Debug, Default, Deserialize)]
pub struct BlockMembers {
    #[serde(default, deserialize_with = "present")]
    api: bool,
    #[serde(default, deserialize_with = "present")]
    application: bool,
    #[serde(default, deserialize_with = "present")]
    user: bool,
    #[serde(default, deserialize_with = "present")]
    ip: bool,
    #[serde(default, deserialize_with = "present")]
    custom: bool,
    #[serde(default, deserialize_with = "present")]
    subscription: bool,
}

impl BlockMembers {
    pub fn any(&self) -> bool {
        self.api || self.application || self.user || self.ip || self.custom || self.subscription
    }
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// `IPLevelDTO`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedIp {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default)]
    pub fixed_ip: Option<String>,
    #[serde(default)]
    pub starting_ip: Option<String>,
    #[serde(default)]
    pub ending_ip: Option<String>,
    #[serde(default)]
    pub invert: Option<bool>,
    /// The tenant whose APIs it blocks: `/block` answers every tenant's conditions, and WSO2's
    /// gateway applies an address condition to its own tenant's APIs only
    /// (`ThrottleDataHolder.isIpLevelBlocked`, keyed by `tenantDomain`).
    #[serde(default)]
    pub tenant_domain: Option<String>,
}

/// `RevokedJWTDTO` (`/revokedjwt` is a plain array of them).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RevokedJwt {
    /// The token's `jti`, or its signature when it has none.
    #[serde(default, deserialize_with = "nullable")]
    pub jwt_signature: String,
    /// Seconds or milliseconds (WSO2 writes both).
    #[serde(default, deserialize_with = "nullable")]
    pub expiry_time: i64,
}

// ---------------------------------------------------------------------------------------------
// Mapping to the filter's model.
// ---------------------------------------------------------------------------------------------

/// A WSO2 time unit in seconds. WSO2 stores the admin's word verbatim and hands it to Siddhi, so
/// every spelling Siddhi takes is accepted (`sec`, `second(s)`, `min`, `minute(s)`, `hour(s)`,
/// `day(s)`, `week(s)`, `month(s)` as 30 days, `year(s)` as 365 days; milliseconds round up to
/// a second).
pub fn unit_seconds(unit: &str) -> Option<u64> {
    let unit = unit.trim().to_ascii_lowercase();
    let singular = unit.strip_suffix('s').filter(|stem| stem.len() > 1).unwrap_or(&unit);
    Some(match singular {
        "ms" | "millisec" | "millisecond" => 1,
        "sec" | "second" => 1,
        "min" | "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 604_800,
        "month" => 2_592_000,
        "year" => 31_536_000,
        _ => return None,
    })
}

/// WSO2's `Unlimited` (at every level) counts nothing; so does its stored form, 2147483647 a
/// minute.
pub const UNLIMITED_COUNT: i64 = 2_147_483_647;

/// A policy as the filter counts it; `None` for `Unlimited`, or a limit it cannot read (the
/// reason, for the log).
pub fn policy_spec(policy: &Policy) -> Result<Option<PolicySpec>, String> {
    if crate::vocab::is_unlimited(&policy.name) {
        return Ok(None);
    }
    let Some(limit) = &policy.default_limit else { return Err("no default limit".to_string()) };
    let Some((limit, bytes, window_s)) = quota(limit)? else { return Ok(None) };
    let burst = match (policy.rate_limit_count, &policy.rate_limit_time_unit) {
        (count, Some(unit)) if count > 0 => {
            let unit_s = unit_seconds(unit).ok_or_else(|| format!("burst time unit `{unit}`"))?;
            u64::try_from(count).ok().map(|count| (count, unit_s))
        }
        _ => None,
    };
    Ok(Some(PolicySpec {
        limit,
        bytes,
        window_s,
        burst,
        stop_on_quota_reach: policy.stop_on_quota_reach.unwrap_or(true),
        per_user: policy.applicable_level.eq_ignore_ascii_case("userLevel"),
        cluster_wide: None,
        groups: Vec::new(),
    }))
}

/// A policy as the gateway applies it at `level` (`None`: it counts nothing): an API policy
/// with its condition groups, whose unreadable groups are put in `skipped`. An API policy
/// unlimited but for its groups counts the requests of its groups only.
pub fn policy_at(
    level: PolicyLevel,
    policy: &Policy,
    types: ConditionTypes,
    skipped: &mut Vec<String>,
) -> Result<Option<PolicySpec>, String> {
    let spec = policy_spec(policy)?;
    if level != PolicyLevel::Api || crate::vocab::is_unlimited(&policy.name) {
        return Ok(spec);
    }
    let (groups, unread) = condition_groups(policy, types);
    skipped.extend(unread);
    Ok(match spec {
        Some(spec) => Some(PolicySpec { groups, ..spec }),
        None if groups.is_empty() => None,
        None => Some(PolicySpec {
            limit: conditions::UNLIMITED,
            per_user: policy.applicable_level.eq_ignore_ascii_case("userLevel"),
            groups,
            ..PolicySpec::requests_per_second(0, None)
        }),
    })
}

/// Which condition types apply besides addresses: API-M's `[apim.throttling]`
/// `enable_header_based_throttling`, `enable_query_param_based_throttling` and
/// `enable_jwt_claim_based_throttling`, all off by default. With one off, API-M's gateway never
/// sends its Traffic Manager what such a condition reads, and the Traffic Manager's
/// `regex:find` of a value it was not sent is false: the condition never holds (a group with it
/// never counts, its requests count under the policy's own limit), and inverted it always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConditionTypes {
    pub header: bool,
    pub query_param: bool,
    pub jwt_claim: bool,
}

/// An API policy's condition groups, each with its own limit (per user as the policy is);
/// a group the filter cannot apply (an unknown condition type, a pattern regex-lite cannot read,
/// an address that is none, no limit, the id of a group before it) or that never holds (a
/// condition of a type `types` turns off) is left out, with the reason. A request matching it
/// then counts under the policy's own limit, or another group's. An inverted condition of a type
/// turned off always holds: it is left out of its group, and noted with the others.
pub fn condition_groups(policy: &Policy, types: ConditionTypes) -> (Vec<conditions::ConditionGroup>, Vec<String>) {
    let (mut groups, mut skipped) = (Vec::new(), Vec::new());
    for (index, group) in policy.condition_groups.iter().enumerate() {
        if is_no_group(group) {
            continue;
        }
        let id = match &group.condition_group_id {
            Some(serde_json::Value::Number(number)) => number.to_string(),
            Some(serde_json::Value::String(id)) if !id.is_empty() => id.clone(),
            _ => (index + 1).to_string(),
        };
        // The id names the group's counter: a group with another's id would count in its counter.
        let read = match groups.iter().any(|read: &conditions::ConditionGroup| read.id == id) {
            true => Err("its id is another group's".to_string()),
            false => condition_group(id.clone(), group, types),
        };
        match read {
            Ok((group, notes)) => {
                groups.push(group);
                skipped.extend(notes.into_iter().map(|note| format!("{}: condition group {id}: {note}", policy.name)));
            }
            Err(reason) => skipped.push(format!("{}: condition group {id} ({reason})", policy.name)),
        }
    }
    (groups, skipped)
}

/// What API-M sends for an API policy without condition groups: its policies are read with a
/// `LEFT JOIN` of their groups (`SubscriptionValidationSQLConstants.GET_*API_POLICIES_SQL`), and
/// `SubscriptionValidationDAO.populateApiPolicyList` makes a group of the row without one:
/// `conditionGroupId` 0, no condition, no limit. No group at all, not one "left out" (logged on
/// every load for every such policy, it told the operator of groups that do not exist).
fn is_no_group(group: &ConditionGroup) -> bool {
    let id_zero = match &group.condition_group_id {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Number(number)) => number.as_i64() == Some(0),
        Some(_) => false,
    };
    id_zero && group.condition.is_empty() && group.default_limit.is_none()
}

/// A group's limit and conditions, and notes on the inverted conditions left out because they
/// always hold; an unlimited group's requests count nowhere.
fn condition_group(
    id: String,
    group: &ConditionGroup,
    types: ConditionTypes,
) -> Result<(conditions::ConditionGroup, Vec<String>), String> {
    if group.condition.is_empty() {
        return Err("no condition".to_string());
    }
    let (mut conditions, mut notes) = (Vec::new(), Vec::new());
    for read in &group.condition {
        match turned_off(read, types) {
            // Never holds: neither does the group.
            Some(off) if !read.is_inverted => return Err(off),
            // Always holds: the group's other conditions decide (none: every request).
            Some(off) => notes.push(format!("its inverted {} condition always holds ({off})", read.condition_type)),
            None => conditions.push(condition(read)?),
        }
    }
    let limit = group.default_limit.as_ref().ok_or("no limit")?;
    let (limit, bytes, window_s) = quota(limit)?.unwrap_or((conditions::UNLIMITED, false, 1));
    Ok((conditions::ConditionGroup { id, limit, bytes, window_s, conditions }, notes))
}

/// Why a condition of a type `types` turns off reads no value; `None` for a type that applies.
fn turned_off(condition: &Condition, types: ConditionTypes) -> Option<String> {
    let (kind, field) = match condition.condition_type.to_ascii_lowercase().as_str() {
        "header" if !types.header => ("header", "header_conditions"),
        "queryparametertype" if !types.query_param => ("query_param", "query_param_conditions"),
        "jwtclaims" if !types.jwt_claim => ("jwt_claim", "jwt_claim_conditions"),
        _ => return None,
    };
    Some(format!("{kind} conditions are off: `control_plane.{field}`, API-M's `enable_{kind}_based_throttling`"))
}

fn condition(condition: &Condition) -> Result<conditions::Condition, String> {
    let address = |text: &str| {
        text.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()).map_err(|_| format!("`{text}` is not an IP address"))
    };
    let pattern = || conditions::Pattern::new(&condition.value);
    let name = || {
        let name = condition.name.trim();
        if name.is_empty() {
            Err(format!("a {} condition without a name", condition.condition_type))
        } else {
            Ok(name.to_string())
        }
    };
    let test = match condition.condition_type.to_ascii_lowercase().as_str() {
        "ipspecific" => {
            let ip = address(&condition.value)?;
            conditions::Test::IpBetween { low: ip, high: ip }
        }
        "iprange" => {
            let (low, high) = (address(&condition.name)?, address(&condition.value)?);
            // A range of two families, or ending before it starts, holds no address: refused, as
            // the configuration's `ip_from` and `ip_to` are.
            if low.is_ipv4() != high.is_ipv4() || low > high {
                return Err(format!("a range from `{low}` to `{high}`"));
            }
            conditions::Test::IpBetween { low, high }
        }
        "header" => conditions::Test::Header { name: name()?.to_ascii_lowercase(), pattern: pattern()? },
        "queryparametertype" => conditions::Test::QueryParam { name: name()?, pattern: pattern()? },
        "jwtclaims" => conditions::Test::Claim { name: name()?, pattern: pattern()? },
        other => return Err(format!("condition type `{other}`")),
    };
    Ok(conditions::Condition { test, invert: condition.is_inverted })
}

/// A quota as (limit, counts bytes, window seconds); `None` when it is unlimited.
fn quota(limit: &Limit) -> Result<Option<(u64, bool, u64)>, String> {
    let window = |unit: &str, count: i64| -> Result<u64, String> {
        let unit_s = unit_seconds(unit).ok_or_else(|| format!("time unit `{unit}`"))?;
        Ok(unit_s.saturating_mul(u64::try_from(count.max(1)).unwrap_or(1)))
    };
    let (limit, bytes, window_s) = match limit.quota_type.as_str() {
        "bandwidthVolume" => {
            let bandwidth = limit.bandwidth.as_ref().ok_or("a bandwidth quota without `bandwidth`")?;
            let scale: u64 = match bandwidth.data_unit.to_ascii_uppercase().as_str() {
                "B" => 1,
                "KB" => 1 << 10,
                "MB" => 1 << 20,
                "GB" => 1 << 30,
                other => return Err(format!("data unit `{other}`")),
            };
            let amount = u64::try_from(bandwidth.data_amount).map_err(|_| "a negative data amount")?;
            (amount.saturating_mul(scale), true, window(&bandwidth.time_unit, bandwidth.unit_time)?)
        }
        // Event counts (async APIs) count requests here.
        quota => {
            let count = match quota {
                "eventCount" => limit.event_count.as_ref().or(limit.request_count.as_ref()),
                _ => limit.request_count.as_ref().or(limit.event_count.as_ref()),
            }
            .ok_or("a request quota without `requestCount`")?;
            if count.request_count >= UNLIMITED_COUNT {
                return Ok(None);
            }
            let requests = u64::try_from(count.request_count).map_err(|_| "a negative request count")?;
            (requests, false, window(&count.time_unit, count.unit_time)?)
        }
    };
    if limit == 0 {
        return Err("a limit of 0".to_string());
    }
    Ok(Some((limit, bytes, window_s)))
}

/// A subscription state as WSO2's gateway treats it: `TIER_UPDATE_PENDING`, `DELETE_PENDING`
/// and states it does not know pass, as they do there.
pub fn subscription_state(state: &str) -> SubscriptionState {
    match state {
        "BLOCKED" => SubscriptionState::Blocked,
        "PROD_ONLY_BLOCKED" => SubscriptionState::ProdOnlyBlocked,
        "ON_HOLD" => SubscriptionState::OnHold,
        "REJECTED" => SubscriptionState::Rejected,
        _ => SubscriptionState::Unblocked,
    }
}

pub fn key_type(key_type: &str) -> Option<KeyType> {
    match key_type.to_ascii_uppercase().as_str() {
        "PRODUCTION" => Some(KeyType::Production),
        "SANDBOX" => Some(KeyType::Sandbox),
        _ => None,
    }
}

fn lifecycle(status: &str) -> Option<Lifecycle> {
    Some(match status.to_ascii_uppercase().as_str() {
        "PUBLISHED" => Lifecycle::Published,
        "DEPRECATED" => Lifecycle::Deprecated,
        "BLOCKED" => Lifecycle::Blocked,
        "PROTOTYPED" => Lifecycle::Prototyped,
        "CREATED" => Lifecycle::Created,
        "RETIRED" => Lifecycle::Retired,
        _ => return None,
    })
}

/// An API as the filter serves it (`endpoints`: its Envoy clusters); `Err` says why it is not
/// served. WSO2's context carries the version (`/pizzashack/1.0.0`), the filter's does not; a
/// product's without it (API-M 4.0 to 4.2 write `/bundle`, serve `/bundle/...`) is served at it
/// alone. `authScheme` `None` is open, any other secured by `security`; `Application User` (or
/// `Application_User`) takes user tokens only, `Application` application tokens only (`Any`
/// both). `Unlimited` tiers count nothing. `apiType` decides what URL mappings are ([`topics`]).
pub fn api(api: &Api, endpoints: RawEndpoints, security: &[SecurityScheme]) -> Result<RawApi, String> {
    if api.name.is_empty() || api.version.is_empty() || api.context.is_empty() {
        return Err("no name, version or context".to_string());
    }
    let topics = topics(&api.api_type)?;
    let lifecycle = lifecycle(&api.status).ok_or_else(|| format!("status `{}`", api.status))?;
    let context = unversioned_context(&api.context, &api.version);
    let unversioned_path = is_product(&api.api_type) && context == api.context;
    let tier =
        |name: &Option<String>| name.clone().filter(|name| !name.is_empty() && !crate::vocab::is_unlimited(name));
    let mut resources: Vec<RawResource> = Vec::with_capacity(api.url_mappings.len());
    for mapping in &api.url_mappings {
        let scheme = mapping.auth_scheme.replace(['_', ' '], "").to_ascii_lowercase();
        let resource = RawResource {
            method: if topics { "GET".to_string() } else { mapping.http_method.to_ascii_uppercase() },
            path: mapping.url_pattern.clone(),
            security: (scheme == "none").then(Vec::new),
            scopes: mapping.scopes.clone(),
            policy: tier(&mapping.throttling_policy),
            user_token_only: scheme == "applicationuser",
            application_token_only: scheme == "application",
        };
        match resources.iter_mut().find(|kept| topics && kept.path == resource.path) {
            Some(kept) => same_topic(kept, resource)?,
            None => resources.push(resource),
        }
    }
    Ok(RawApi {
        name: api.name.clone(),
        context,
        version: api.version.clone(),
        lifecycle,
        default_version: api.is_default_version,
        endpoints,
        security: security.to_vec(),
        policy: tier(&api.policy),
        resources,
        unversioned_path,
        ..RawApi::default()
    })
}

/// Whether an API of WSO2's `apiType` carries topics (`true`) or HTTP resources, or why it is not
/// served. HTTP, SOAP pass-through and API products (and no type) are HTTP resources. WebSocket
/// and server-sent-events APIs carry topics (`SUBSCRIBE`, `PUBLISH`), which a client opens with a
/// GET (a WebSocket handshake, an event stream) on the API's context and the topic, and API-M's
/// gateway authenticates it and checks the topic's scopes there (`InboundWebSocketProcessor`,
/// `OAuthAuthenticator`): each topic is a GET resource. What the filter cannot serve as API-M
/// does is refused, never served with less: a GraphQL API's operations, their scopes and tiers,
/// are named in the query (`GraphQLAPIHandler`); a WebSub subscriber names its topic in the body;
/// API-M converts a SOAP-to-REST API's calls to SOAP.
fn topics(api_type: &str) -> Result<bool, String> {
    let why = match api_type.to_ascii_uppercase().as_str() {
        "" | "HTTP" | "SOAP" | "APIPRODUCT" => return Ok(false),
        "WS" | "SSE" => return Ok(true),
        "GRAPHQL" => {
            "GraphQL: its operations' scopes and tiers are named in the query, which the filter does not parse"
        }
        "WEBSUB" | "WEBHOOK" => {
            "WebSub: a subscriber names its topic, and the topic's scopes and tier, in the request body"
        }
        "SOAPTOREST" => "SOAP-to-REST: API-M's gateway converts each call to SOAP, which the filter does not",
        _ => "a type the filter does not know",
    };
    Err(format!("API type `{api_type}` not served: {why}"))
}

/// Whether an API's messages are counted against its tiers in API-M (WebSocket and
/// server-sent-events APIs): the filter sees their handshakes only.
pub fn is_event_api(api_type: &str) -> bool {
    api_type.eq_ignore_ascii_case("WS") || api_type.eq_ignore_ascii_case("SSE")
}

/// Why an event API is not served by default (`control_plane.event_apis`).
pub const EVENT_APIS_NOT_SERVED: &str =
    "a WebSocket or SSE API: its tiers count messages; served with `control_plane.event_apis: count_messages` or `count_connections`";

/// Whether an API is an API product (`apiType` `APIProduct`): API-M sends each resource to its own
/// API's backend (`APIProductResource.endpointConfig`), which `/apis` does not say: only `endpoints` can name it.
pub fn is_product(api_type: &str) -> bool {
    api_type.eq_ignore_ascii_case("APIProduct")
}

/// Why a product is not served under `endpoint_template` alone.
pub const PRODUCT_NEEDS_ENDPOINTS: &str =
    "an API product: API-M sends each resource to its own API's backend; name its cluster in control_plane.endpoints";

/// Whether API-M takes an API's credentials from the query too: a WebSocket API's, on its
/// handshake, for browsers, whose WebSockets cannot set headers: the OAuth2 token from
/// `access_token` (`InboundWebSocketProcessor.isOauthAuthentication`) and, where the API takes API
/// keys, the API key from `apikey` (`isAPIKeyAuthentication`). API-M removes them before the backend.
pub fn takes_query_credentials(api_type: &str) -> bool {
    api_type.eq_ignore_ascii_case("WS")
}

/// One handshake opens a topic for every verb: the verbs' security, scopes and tiers apply together
/// (the stricter where one has none); scopes or tiers that differ cannot, and the API is not served.
fn same_topic(kept: &mut RawResource, verb: RawResource) -> Result<(), String> {
    let differ = |what: &str| Err(format!("topic `{}`: its verbs have different {what}", verb.path));
    // The same scopes in any order.
    let same_scopes = |one: &[String], other: &[String]| {
        one.iter().all(|scope| other.contains(scope)) && other.iter().all(|scope| one.contains(scope))
    };
    if kept.scopes.is_empty() {
        kept.scopes = verb.scopes;
    } else if !verb.scopes.is_empty() && !same_scopes(&verb.scopes, &kept.scopes) {
        return differ("scopes");
    }
    match (&kept.policy, verb.policy) {
        (None, policy) => kept.policy = policy,
        (Some(kept_policy), Some(policy)) if *kept_policy != policy => return differ("throttling tiers"),
        _ => {}
    }
    if verb.security.is_none() {
        kept.security = None;
    }
    kept.user_token_only |= verb.user_token_only;
    kept.application_token_only |= verb.application_token_only;
    Ok(())
}

/// The filter's context for WSO2's, which holds the version where the API's context template put
/// it: at the end (`/pizzashack/1.0.0` is `/pizzashack`), or elsewhere (`/1.0.0/tpl`, from the
/// template `/{version}/tpl`, is `/{version}/tpl` again), so that the API's versioned context is
/// WSO2's context and blocking conditions and JWT API keys that name it find it.
fn unversioned_context(context: &str, version: &str) -> String {
    let suffix = format!("/{version}");
    if let Some(base) = context.strip_suffix(&suffix).filter(|base| !base.is_empty()) {
        return base.to_string();
    }
    let mut segments: Vec<&str> = context.split('/').collect();
    match segments.iter_mut().find(|segment| **segment == version) {
        Some(segment) => {
            *segment = "{version}";
            segments.join("/")
        }
        None => context.to_string(),
    }
}

/// Blocking conditions as WSO2's gateway applies them: APIs by versioned context, applications
/// by `<owner>:<name>`, users with or without `@<tenant>`, addresses (an `IPRANGE` excludes its
/// ends, and `invert` blocks everything else). Entries that cannot be read are skipped, and so
/// are subscription conditions, whose format WSO2 does not document (a subscription is blocked
/// by its state, which is applied): the count comes back for the log. `/block` answers every
/// tenant's conditions: an address or user condition of a tenant other than `tenant` (the control
/// plane's `xWSO2Tenant`, whose APIs the filter serves) is another tenant's business, and left out
/// silently, as WSO2's gateway applies an address condition to its own tenant's APIs only (one
/// without a tenant applies) and a user condition (`<name>@<tenant>`) matches only callers
/// qualified with the API's tenant.
pub fn blocking(block: &Block, tenant: &str) -> (Vec<BlockingCondition>, usize) {
    let mut conditions = Vec::new();
    let mut skipped = block.subscription.len();
    conditions.extend(block.api.iter().map(|context| BlockingCondition::Api(context.clone())));
    for application in &block.application {
        match application.split_once(':') {
            Some((owner, name)) => conditions
                .push(BlockingCondition::ApplicationNamed { owner: owner.to_string(), name: name.to_string() }),
            None => skipped += 1,
        }
    }
    let another = |domain: Option<&str>| {
        domain.map(str::trim).is_some_and(|domain| !domain.is_empty() && !domain.eq_ignore_ascii_case(tenant))
    };
    // Empty: every owner-less application's, skipped; another tenant's (`<name>@<tenant>`): left out.
    for user in &block.user {
        if user.trim().is_empty() {
            skipped += 1;
        } else if !another(user.rsplit_once('@').map(|(_, domain)| domain)) {
            conditions.push(BlockingCondition::User(user.clone()));
        }
    }
    for ip in block.ip.iter().filter(|ip| !another(ip.tenant_domain.as_deref())) {
        let parse = |text: &Option<String>| {
            text.as_deref().and_then(|text| text.trim().parse::<IpAddr>().ok()).map(|ip| ip.to_canonical())
        };
        let invert = ip.invert.unwrap_or(false);
        let condition = match ip.kind.to_ascii_uppercase().as_str() {
            "IP" => parse(&ip.fixed_ip).map(|ip| BlockingCondition::IpBetween {
                low: ip,
                high: ip,
                inclusive: true,
                invert,
            }),
            "IPRANGE" => match (parse(&ip.starting_ip), parse(&ip.ending_ip)) {
                (Some(low), Some(high)) => Some(BlockingCondition::IpBetween { low, high, inclusive: false, invert }),
                _ => None,
            },
            _ => None,
        };
        match condition {
            Some(condition) => conditions.push(condition),
            None => skipped += 1,
        }
    }
    (conditions, skipped)
}

/// A revoked token's expiry in seconds (WSO2 writes seconds for API keys and milliseconds
/// elsewhere: a value above 10^11 is milliseconds).
pub fn expiry_seconds(expiry: i64) -> u64 {
    let expiry = u64::try_from(expiry).unwrap_or(0);
    if expiry > 100_000_000_000 {
        expiry / 1000
    } else {
        expiry
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
