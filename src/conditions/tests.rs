//! Tests of condition groups: each test's matching, inversion, and the configuration's checks.

use std::cell::Cell;

use super::*;
use crate::vocab::TimeUnit;

fn pattern(text: &str) -> Pattern {
    Pattern::new(text).unwrap()
}

fn condition(test: Test) -> Condition {
    Condition { test, invert: false }
}

fn group(conditions: Vec<Condition>) -> ConditionGroup {
    ConditionGroup { id: "1".into(), limit: 5, bytes: false, window_s: 1, conditions }
}

fn headers(pairs: &[(&str, &[u8])]) -> Vec<Header> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_vec())).collect()
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn patterns_of_dozens_of_alternatives_compile_and_larger_ones_are_refused() {
    let words = |count: usize| (0..count).map(|index| format!("client-{index:04}")).collect::<Vec<_>>().join("|");
    assert!(Pattern::new(&format!("^({})$", words(80))).is_ok());
    assert!(Pattern::new(&format!("^({})$", words(120))).is_err(), "over the size a request may be matched against");
}

#[test]
fn a_value_longer_than_the_matched_bound_matches_nothing() {
    let any = group(vec![condition(Test::Header { name: "user-agent".into(), pattern: pattern("a") })]);
    let inverted = group(vec![Condition {
        test: Test::Header { name: "user-agent".into(), pattern: pattern("a") },
        invert: true,
    }]);
    let at_bound = headers(&[("user-agent", "a".repeat(MAX_MATCHED_BYTES).as_bytes())]);
    let over = headers(&[("user-agent", "a".repeat(MAX_MATCHED_BYTES + 1).as_bytes())]);
    assert!(any.matches(&RequestFacts::new(&at_bound, None, None), None));
    assert!(!any.matches(&RequestFacts::new(&over, None, None), None));
    assert!(inverted.matches(&RequestFacts::new(&over, None, None), None), "as an absent value");
}

#[test]
fn a_header_pattern_is_found_anywhere_in_the_value_unless_anchored() {
    let anywhere = group(vec![condition(Test::Header { name: "x-plan".into(), pattern: pattern("free") })]);
    let anchored = group(vec![condition(Test::Header { name: "x-plan".into(), pattern: pattern("^free$") })]);
    let sent = headers(&[("X-Plan", b"freemium")]);
    let request = RequestFacts::new(&sent, None, None);
    assert!(anywhere.matches(&request, None), "found anywhere, as Java's Matcher.find()");
    assert!(!anchored.matches(&request, None));
    let exact = headers(&[("x-plan", b"free")]);
    assert!(anchored.matches(&RequestFacts::new(&exact, None, None), None));
}

#[test]
fn an_absent_or_empty_value_matches_nothing_and_its_inverse_holds() {
    let test = || Test::Header { name: "x-plan".into(), pattern: pattern(".*") };
    let plain = group(vec![condition(test())]);
    let inverted = group(vec![Condition { test: test(), invert: true }]);
    for sent in [headers(&[]), headers(&[("x-plan", b"")])] {
        let request = RequestFacts::new(&sent, None, None);
        assert!(!plain.matches(&request, None), "`.*` does not match an absent or empty header");
        assert!(inverted.matches(&request, None));
    }
    let sent = headers(&[("x-plan", b"gold")]);
    assert!(!inverted.matches(&RequestFacts::new(&sent, None, None), None));
}

/// Envoy gives a request's `Host` (HTTP/1) as `:authority` (HTTP/2's name for it): WSO2's header
/// conditions on `Host` read it.
#[test]
fn a_host_condition_reads_the_authority() {
    let host = group(vec![condition(Test::Header { name: "host".into(), pattern: pattern("^api\\.example$") })]);
    let sent = headers(&[(":authority", b"api.example"), (":path", b"/a")]);
    assert!(host.matches(&RequestFacts::new(&sent, None, None), None));
    let other = headers(&[(":authority", b"other.example")]);
    assert!(!host.matches(&RequestFacts::new(&other, None, None), None));
}

#[test]
fn a_repeated_header_is_read_as_its_values_joined() {
    let both = group(vec![condition(Test::Header { name: "x-tag".into(), pattern: pattern("^a,b$") })]);
    let sent = headers(&[("x-tag", b"a"), ("other", b"x"), ("X-Tag", b"b")]);
    assert!(both.matches(&RequestFacts::new(&sent, None, None), None));
    // Bytes that are not UTF-8 read as U+FFFD: no panic, and only a pattern allowing them matches.
    let sent = headers(&[("x-tag", b"a\xff")]);
    assert!(!both.matches(&RequestFacts::new(&sent, None, None), None));
    let lossy = group(vec![condition(Test::Header { name: "x-tag".into(), pattern: pattern("^a\u{fffd}$") })]);
    assert!(lossy.matches(&RequestFacts::new(&sent, None, None), None));
}

#[test]
fn a_query_parameter_is_its_first_value_percent_decoded() {
    let format = group(vec![condition(Test::QueryParam { name: "format".into(), pattern: pattern("^c sv$") })]);
    let request = |query| RequestFacts::new(&[], Some(query), None);
    assert!(format.matches(&request("a=1&format=c+sv&format=json"), None));
    assert!(format.matches(&request("format=c%20sv"), None));
    assert!(!format.matches(&request("format=json&format=c+sv"), None), "the first value is read");
    assert!(format.matches(&request("format=&format=c+sv"), None), "the first non-empty one, as the API key");
    assert!(!format.matches(&request("formats=c+sv"), None));
    assert!(!format.matches(&RequestFacts::new(&[], None, None), None));
}

#[test]
fn addresses_are_compared_in_their_family_both_ends_included() {
    let between = |low: &str, high: &str| {
        group(vec![condition(Test::IpBetween { low: low.parse().unwrap(), high: high.parse().unwrap() })])
    };
    let range = between("10.0.0.5", "10.0.0.9");
    let request = RequestFacts::default();
    for (client, inside) in [("10.0.0.5", true), ("10.0.0.9", true), ("10.0.0.7", true), ("10.0.0.10", false)] {
        assert_eq!(range.matches(&request, ip(client)), inside, "{client}");
    }
    assert!(range.matches(&request, ip("::ffff:10.0.0.6")), "an IPv4-mapped client is its IPv4 address");
    assert!(!range.matches(&request, ip("::a00:6")), "an IPv6 address is never in an IPv4 range");
    assert!(!range.matches(&request, None), "no client address is in no range");
    let cidr = group(vec![condition(Test::Ip(IpRange::parse("2001:db8::/32").unwrap()))]);
    assert!(cidr.matches(&request, ip("2001:db8::1")));
    assert!(!cidr.matches(&request, ip("2001:db9::1")));
}

#[test]
fn every_condition_of_a_group_must_hold() {
    let both = group(vec![
        condition(Test::Header { name: "x-plan".into(), pattern: pattern("^free$") }),
        Condition { test: Test::Ip(IpRange::parse("10.0.0.0/8").unwrap()), invert: true },
    ]);
    let sent = headers(&[("x-plan", b"free")]);
    let request = RequestFacts::new(&sent, None, None);
    assert!(both.matches(&request, ip("192.0.2.1")));
    assert!(!both.matches(&request, ip("10.1.2.3")), "the inverted address condition fails inside 10/8");
    assert!(!both.matches(&RequestFacts::default(), ip("192.0.2.1")));
}

#[test]
fn a_claim_is_read_from_the_callers_claims_and_only_when_a_condition_asks() {
    let claims: Map<String, Value> =
        serde_json::from_str(r#"{"sub":"bob","groups":["dev","admin"],"level":3,"tier":""}"#).unwrap();
    let reads = Cell::new(0);
    let read_claims = || {
        reads.set(reads.get() + 1);
        Some(claims.clone())
    };
    let read_claims: &dyn Fn() -> Option<Map<String, Value>> = &read_claims;
    let request = RequestFacts::new(&[], None, Some(read_claims));
    let claim =
        |name: &str, text: &str| group(vec![condition(Test::Claim { name: name.into(), pattern: pattern(text) })]);
    let header = group(vec![condition(Test::Header { name: "x".into(), pattern: pattern("x") })]);
    assert!(!header.matches(&request, None));
    assert_eq!(reads.get(), 0, "no claim condition, no credential read");
    assert!(claim("sub", "^bob$").matches(&request, None));
    assert!(claim("groups", "^admin$").matches(&request, None), "any string of an array");
    assert!(!claim("groups", "^ops$").matches(&request, None));
    assert!(!claim("level", "3").matches(&request, None), "a number is no string");
    assert!(!claim("tier", ".*").matches(&request, None), "an empty claim matches nothing");
    assert!(!claim("missing", ".*").matches(&request, None));
    assert_eq!(reads.get(), 1, "the claims are read once per request");
    let opaque = || None;
    let opaque: &dyn Fn() -> Option<Map<String, Value>> = &opaque;
    assert!(!claim("sub", ".*").matches(&RequestFacts::new(&[], None, Some(opaque)), None));
    assert!(!claim("sub", ".*").matches(&RequestFacts::default(), None), "no credential, no claims");
}

fn raw_group(conditions: Vec<RawCondition>) -> RawConditionGroup {
    RawConditionGroup { requests: Some(10), bytes: None, per: TimeUnit::Minute, unit_count: 1, conditions }
}

fn refused(conditions: Vec<RawCondition>) -> ConfigError {
    from_config("policies.Gold", &[raw_group(conditions)]).unwrap_err()
}

#[test]
fn the_configuration_compiles_each_test_and_the_groups_limit() {
    let conditions = vec![
        RawCondition { header: Some("X-Plan".into()), matches: Some("^free$".into()), ..RawCondition::default() },
        RawCondition {
            ip_from: Some("10.0.0.1".into()),
            ip_to: Some("10.0.0.9".into()),
            invert: true,
            ..RawCondition::default()
        },
        RawCondition { ip_range: Some("192.0.2.0/24".into()), ..RawCondition::default() },
        RawCondition { query_param: Some("format".into()), matches: Some("csv".into()), ..RawCondition::default() },
        RawCondition { jwt_claim: Some("groups".into()), matches: Some("admin".into()), ..RawCondition::default() },
    ];
    let groups = from_config("policies.Gold", &[raw_group(conditions)]).unwrap();
    let [group] = groups.as_slice() else { panic!("one group") };
    assert_eq!(group.id, "1");
    assert_eq!((group.limit, group.window_s, group.bytes), (10, 60, false));
    assert_eq!(group.conditions[0].test, Test::Header { name: "x-plan".into(), pattern: pattern("^free$") });
    assert!(group.conditions[1].invert);
    assert_eq!(group.conditions.len(), 5);
}

#[test]
fn the_configuration_refuses_what_cannot_be_matched_naming_the_field() {
    let field = "policies.Gold.condition_groups[0].conditions[0]";
    let cases = [
        (RawCondition::default(), field.to_string(), "exactly one"),
        (
            RawCondition {
                header: Some("x".into()),
                query_param: Some("y".into()),
                matches: Some("a".into()),
                ..RawCondition::default()
            },
            field.to_string(),
            "exactly one",
        ),
        (
            RawCondition { header: Some("x".into()), ..RawCondition::default() },
            field.to_string(),
            "`matches` is required",
        ),
        (
            RawCondition { header: Some("x".into()), matches: Some("(?=look)ahead".into()), ..RawCondition::default() },
            format!("{field}.matches"),
            "not a regular expression",
        ),
        (
            RawCondition {
                header: Some("x".into()),
                matches: Some("(a{1000}){1000}".into()),
                ..RawCondition::default()
            },
            format!("{field}.matches"),
            "not a regular expression",
        ),
        (
            RawCondition { header: Some(" ".into()), matches: Some("a".into()), ..RawCondition::default() },
            format!("{field}.header"),
            "empty",
        ),
        (RawCondition { ip: Some("10.0.0.0/8".into()), ..RawCondition::default() }, format!("{field}.ip"), "ip_range"),
        (
            RawCondition { ip: Some("ten".into()), ..RawCondition::default() },
            format!("{field}.ip"),
            "not an IP address",
        ),
        (
            RawCondition { ip_range: Some("10.0.0.0/33".into()), ..RawCondition::default() },
            format!("{field}.ip_range"),
            "prefix",
        ),
        (RawCondition { ip_from: Some("10.0.0.1".into()), ..RawCondition::default() }, field.to_string(), "ip_to"),
        (
            RawCondition {
                ip_from: Some("10.0.0.9".into()),
                ip_to: Some("10.0.0.1".into()),
                ..RawCondition::default()
            },
            format!("{field}.ip_to"),
            "not before",
        ),
        (
            RawCondition { ip_from: Some("10.0.0.1".into()), ip_to: Some("::1".into()), ..RawCondition::default() },
            format!("{field}.ip_to"),
            "family",
        ),
        (
            RawCondition { ip: Some("10.0.0.1".into()), matches: Some("a".into()), ..RawCondition::default() },
            format!("{field}.matches"),
            "header, query_param and jwt_claim only",
        ),
    ];
    for (condition, field, reason) in cases {
        let error = refused(vec![condition.clone()]);
        assert_eq!(error.field, field, "{condition:?}");
        assert!(error.reason.contains(reason), "{condition:?}: {}", error.reason);
    }
    let error = refused(vec![]);
    assert_eq!(error.field, "policies.Gold.condition_groups[0].conditions");
    let both = RawConditionGroup {
        bytes: Some(5),
        ..raw_group(vec![RawCondition { ip: Some("10.0.0.1".into()), ..RawCondition::default() }])
    };
    assert_eq!(from_config("policies.Gold", &[both]).unwrap_err().field, "policies.Gold.condition_groups[0]");
    let zero = RawConditionGroup {
        requests: Some(0),
        ..raw_group(vec![RawCondition { ip: Some("10.0.0.1".into()), ..RawCondition::default() }])
    };
    assert_eq!(from_config("policies.Gold", &[zero]).unwrap_err().field, "policies.Gold.condition_groups[0].requests");
}
