//! Condition groups (WSO2's advanced throttling policies): a group's own limit applies to the
//! requests all of its conditions match (client address, header, query parameter, JWT claim, each
//! one invertible), as API-M's Traffic Manager counts them.
//!
//! A request is counted in every group it matches, each group apart; the policy's own limit
//! counts only the requests that match no group (the Traffic Manager's default query is
//! `NOT (group 1 OR group 2 ...)`). Header, query and claim values are regular expressions found
//! anywhere in the value (Java's `Matcher.find()`, as WSO2 matches them); an absent or empty
//! value matches nothing, so an inverted condition on it holds.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::net::IpAddr;

use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::cidr::{self, IpRange};
use crate::host::Header;
use crate::routing::query::query_param;
use crate::schema::{ConfigError, RawCondition, RawConditionGroup};

/// The largest compiled pattern accepted (regex-lite's estimate, in bytes): a pattern from the
/// control plane is compiled in every worker, and matched against every request of its API in
/// time proportional to its size times the value's length. WSO2's conditions are a word or an
/// alternation of a few: this holds about 90 alternatives of 11 characters (twice that took
/// twice the time).
const PATTERN_SIZE_LIMIT: usize = 32 * 1024;

/// The longest value a pattern is matched against: a longer one (a client may send a header of
/// Envoy's 60 KiB) matches nothing. Matching costs the pattern's size times the value's length:
/// natively, a 10-alternative pattern took 0.7 ms on 4 KiB a client chose to be worst for it,
/// one of 85 (about the largest accepted) 6 ms; on 8 KiB, 2.8 and 21 ms.
pub const MAX_MATCHED_BYTES: usize = 4 * 1024;

/// A limit that counts nothing (WSO2's unlimited count): a group's, or a policy's own limit
/// where only its groups count.
pub const UNLIMITED: u64 = u64::MAX;

/// A regular expression found anywhere in a value. Compared by its text.
#[derive(Clone)]
pub struct Pattern(Regex);

impl Pattern {
    /// Compiles `text`; the reason names what regex-lite cannot read (look-around and
    /// back-references, which Java's patterns allow, are not regular and are refused).
    pub fn new(text: &str) -> Result<Pattern, String> {
        RegexBuilder::new(text)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|error| format!("`{text}` is not a regular expression this filter reads: {error}"))
    }

    fn found_in(&self, value: &str) -> bool {
        value.len() <= MAX_MATCHED_BYTES && self.0.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), formatter)
    }
}

/// What a condition tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// The client address is in a range (an address or a CIDR block).
    Ip(IpRange),
    /// The client address is between two addresses, both included (WSO2's `IPRange`).
    IpBetween { low: IpAddr, high: IpAddr },
    /// A request header (its name in lower case): every value, joined by `,` as Envoy's header
    /// matchers join a repeated header.
    Header { name: String, pattern: Pattern },
    /// A query parameter (the first non-empty value of its name), percent-decoded.
    QueryParam { name: String, pattern: Pattern },
    /// A claim of the caller's token: a string, or any string of an array of strings.
    Claim { name: String, pattern: Pattern },
}

/// One condition of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub test: Test,
    /// The condition holds when its test fails.
    pub invert: bool,
}

/// A condition group: its own limit for the requests all its conditions match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionGroup {
    /// Names the group's counter (WSO2's `conditionGroupId`; the group's place, from 1, in a
    /// configuration's list).
    pub id: String,
    /// Requests (or, with `bytes`, body bytes) per window; [`UNLIMITED`] counts nothing. What
    /// counts per user or across nodes is the policy's.
    pub limit: u64,
    pub bytes: bool,
    pub window_s: u64,
    pub conditions: Vec<Condition>,
}

/// What conditions read of a request. Its `Debug` names the headers only: their values hold
/// credentials.
#[derive(Default)]
pub struct RequestFacts<'a> {
    headers: &'a [Header],
    /// The query string of `:path`, without `?`.
    query: Option<&'a str>,
    /// Reads the claims of the caller's JWT (a bearer token or a JWT API key, verified before
    /// throttling runs; an opaque credential has none), only when a condition asks.
    read_claims: Option<&'a dyn Fn() -> Option<Map<String, Value>>>,
    /// Its payload's claims, read the first time a condition asks.
    claims: OnceCell<Option<Map<String, Value>>>,
}

impl<'a> RequestFacts<'a> {
    pub fn new(
        headers: &'a [Header],
        query: Option<&'a str>,
        read_claims: Option<&'a dyn Fn() -> Option<Map<String, Value>>>,
    ) -> RequestFacts<'a> {
        RequestFacts { headers, query, read_claims, claims: OnceCell::new() }
    }

    /// The claims of the caller's JWT, read once; `None` for an opaque credential, or none.
    fn claims(&self) -> Option<&Map<String, Value>> {
        self.claims.get_or_init(|| (self.read_claims?)()).as_ref()
    }
}

impl fmt::Debug for RequestFacts<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RequestFacts")
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("query_bytes", &self.query.map(str::len))
            .field("reads_claims", &self.read_claims.is_some())
            .finish()
    }
}

impl ConditionGroup {
    /// Whether every condition of the group holds for the request.
    pub fn matches(&self, request: &RequestFacts<'_>, client_ip: Option<IpAddr>) -> bool {
        self.conditions.iter().all(|condition| condition.holds(request, client_ip))
    }
}

impl Condition {
    fn holds(&self, request: &RequestFacts<'_>, client_ip: Option<IpAddr>) -> bool {
        let passed = match &self.test {
            Test::Ip(range) => client_ip.is_some_and(|ip| range.contains(ip)),
            Test::IpBetween { low, high } => client_ip.is_some_and(|ip| cidr::between(ip, *low, *high, true)),
            Test::Header { name, pattern } => {
                // Envoy carries HTTP/1's `Host` as `:authority`, HTTP/2's name for it: a condition
                // on `Host` (API-M reads the transport header) reads that.
                let name = if name == "host" { ":authority" } else { name.as_str() };
                header_value(request.headers, name).is_some_and(|value| pattern.found_in(&value))
            }
            Test::QueryParam { name, pattern } => {
                query_param(request.query, name).is_some_and(|value| pattern.found_in(&value))
            }
            Test::Claim { name, pattern } => match request.claims().and_then(|claims| claims.get(name)) {
                Some(Value::String(value)) => !value.is_empty() && pattern.found_in(value),
                Some(Value::Array(values)) => values
                    .iter()
                    .any(|value| value.as_str().is_some_and(|value| !value.is_empty() && pattern.found_in(value))),
                _ => false,
            },
        };
        passed != self.invert
    }
}

/// A header's values joined by `,` (`None` when absent or empty); bytes that are not UTF-8 read
/// as U+FFFD, and match only a pattern that allows them.
fn header_value<'h>(headers: &'h [Header], name: &str) -> Option<Cow<'h, str>> {
    let mut values = headers.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value);
    let first = String::from_utf8_lossy(values.next()?);
    let mut joined = first;
    for value in values {
        let joined = joined.to_mut();
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(value));
    }
    (!joined.is_empty()).then_some(joined)
}

/// Compiles a configured policy's condition groups; `field` names the policy (`policies.<name>`).
pub fn from_config(field: &str, raw: &[RawConditionGroup]) -> Result<Vec<ConditionGroup>, ConfigError> {
    let mut groups = Vec::with_capacity(raw.len());
    for (index, group) in raw.iter().enumerate() {
        let field = format!("{field}.condition_groups[{index}]");
        let (limit, bytes) = group_limit(&field, group)?;
        if group.conditions.is_empty() {
            return Err(ConfigError::new(format!("{field}.conditions"), "must hold at least one condition"));
        }
        let conditions = group
            .conditions
            .iter()
            .enumerate()
            .map(|(index, condition)| condition_from_config(&format!("{field}.conditions[{index}]"), condition))
            .collect::<Result<Vec<_>, _>>()?;
        let window_s = group.per.seconds().saturating_mul(u64::from(group.unit_count));
        groups.push(ConditionGroup { id: (index + 1).to_string(), limit, bytes, window_s, conditions });
    }
    Ok(groups)
}

/// A configured group's limit and whether it counts bytes, checked with its window; `field` names
/// the group. Checked with the policy's own fields, before what counting across nodes needs.
pub fn group_limit(field: &str, group: &RawConditionGroup) -> Result<(u64, bool), ConfigError> {
    let (limit, bytes) = match (group.requests, group.bytes) {
        (Some(limit), None) => (limit, false),
        (None, Some(limit)) => (limit, true),
        _ => return Err(ConfigError::new(field, "set one of `requests` and `bytes`")),
    };
    if limit == 0 {
        let which = if bytes { "bytes" } else { "requests" };
        return Err(ConfigError::new(format!("{field}.{which}"), "must be at least 1"));
    }
    if group.unit_count == 0 {
        return Err(ConfigError::new(format!("{field}.unit_count"), "must be at least 1"));
    }
    Ok((limit, bytes))
}

fn condition_from_config(field: &str, raw: &RawCondition) -> Result<Condition, ConfigError> {
    let tests = [&raw.ip, &raw.ip_range, &raw.ip_from, &raw.header, &raw.query_param, &raw.jwt_claim];
    if tests.iter().filter(|test| test.is_some()).count() != 1 || raw.ip_from.is_some() != raw.ip_to.is_some() {
        return Err(ConfigError::new(
            field,
            "set exactly one of ip, ip_range, ip_from with ip_to, header, query_param, jwt_claim",
        ));
    }
    let address = |name: &str, text: &str| {
        text.trim()
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical())
            .map_err(|_| ConfigError::new(format!("{field}.{name}"), format!("`{text}` is not an IP address")))
    };
    let pattern = || {
        let text = raw
            .matches
            .as_deref()
            .ok_or_else(|| ConfigError::new(field, "`matches` is required with header, query_param and jwt_claim"))?;
        Pattern::new(text).map_err(|reason| ConfigError::new(format!("{field}.matches"), reason))
    };
    let named = |name: &str, what: &str| {
        if name.trim().is_empty() {
            Err(ConfigError::new(format!("{field}.{what}"), "must not be empty"))
        } else {
            Ok(name.to_string())
        }
    };
    let test = if let Some(ip) = &raw.ip {
        if ip.contains('/') {
            return Err(ConfigError::new(format!("{field}.ip"), "an address without a prefix (use ip_range)"));
        }
        Test::Ip(IpRange::parse(ip).map_err(|reason| ConfigError::new(format!("{field}.ip"), reason))?)
    } else if let Some(range) = &raw.ip_range {
        Test::Ip(IpRange::parse(range).map_err(|reason| ConfigError::new(format!("{field}.ip_range"), reason))?)
    } else if let (Some(from), Some(to)) = (&raw.ip_from, &raw.ip_to) {
        let (low, high) = (address("ip_from", from)?, address("ip_to", to)?);
        if low.is_ipv4() != high.is_ipv4() || low > high {
            return Err(ConfigError::new(format!("{field}.ip_to"), "must be of ip_from's family, and not before it"));
        }
        Test::IpBetween { low, high }
    } else if let Some(name) = &raw.header {
        Test::Header { name: named(name, "header")?.to_ascii_lowercase(), pattern: pattern()? }
    } else if let Some(name) = &raw.query_param {
        Test::QueryParam { name: named(name, "query_param")?, pattern: pattern()? }
    } else if let Some(name) = &raw.jwt_claim {
        Test::Claim { name: named(name, "jwt_claim")?, pattern: pattern()? }
    } else {
        return Err(ConfigError::new(field, "names no test"));
    };
    if raw.matches.is_some() && matches!(test, Test::Ip(_) | Test::IpBetween { .. }) {
        return Err(ConfigError::new(format!("{field}.matches"), "applies to header, query_param and jwt_claim only"));
    }
    Ok(Condition { test, invert: raw.invert })
}

#[cfg(test)]
mod tests;
