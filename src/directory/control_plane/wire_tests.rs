//! WSO2's documented answers (the shapes of `tests/cp/fixtures/`) read and mapped.

use super::*;

fn policy(json: &str) -> Result<Option<PolicySpec>, String> {
    policy_spec(&serde_json::from_str::<Policy>(json).unwrap())
}

#[test]
fn time_units_in_every_spelling_wso2_stores() {
    for (unit, seconds) in [
        ("sec", 1),
        ("second", 1),
        ("seconds", 1),
        ("min", 60),
        ("minute", 60),
        ("minutes", 60),
        ("hour", 3600),
        ("hours", 3600),
        ("day", 86_400),
        ("days", 86_400),
        ("week", 604_800),
        ("months", 2_592_000),
        ("years", 31_536_000),
        ("ms", 1),
        ("MIN", 60),
    ] {
        assert_eq!(unit_seconds(unit), Some(seconds), "{unit}");
    }
    assert_eq!(unit_seconds("fortnight"), None);
    assert_eq!(unit_seconds("s"), None);
}

#[test]
fn policies_map_quota_multiplier_burst_and_stop_on_quota_reach() {
    let gold = policy(
        r#"{"id":2,"tenantId":-1234,"tenantDomain":"carbon.super","name":"Gold","quotaType":"requestCount",
            "graphQLMaxComplexity":0,"graphQLMaxDepth":0,"rateLimitCount":10,"rateLimitTimeUnit":"sec","stopOnQuotaReach":false,
            "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":5,"requestCount":5000},
            "bandwidth":null,"eventCount":null}}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!((gold.limit, gold.bytes, gold.window_s), (5000, false, 300), "unitTime multiplies");
    assert_eq!(gold.burst, Some((10, 1)));
    assert!(!gold.stop_on_quota_reach);
    let bandwidth = policy(
        r#"{"name":"Big","quotaType":"bandwidthVolume","rateLimitCount":0,"rateLimitTimeUnit":null,
            "defaultLimit":{"quotaType":"bandwidthVolume","requestCount":null,
            "bandwidth":{"timeUnit":"hours","unitTime":2,"dataAmount":500,"dataUnit":"MB"},"eventCount":null}}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!((bandwidth.limit, bandwidth.bytes, bandwidth.window_s, bandwidth.burst), (500 << 20, true, 7200, None));
    assert!(bandwidth.stop_on_quota_reach, "true unless WSO2 says otherwise");
    let events = policy(
        r#"{"name":"AsyncGold","defaultLimit":{"quotaType":"eventCount","eventCount":{"timeUnit":"days","unitTime":1,"eventCount":50000}}}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!((events.limit, events.window_s), (50_000, 86_400));
    assert_eq!(policy(r#"{"name":"Unlimited","defaultLimit":null}"#), Ok(None));
    assert_eq!(
        policy(
            r#"{"name":"Max","defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":2147483647}}}"#
        ),
        Ok(None),
        "WSO2 stores Unlimited as 2147483647 a minute"
    );
    assert!(policy(r#"{"name":"Odd","defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"lunar","unitTime":1,"requestCount":5}}}"#).is_err());
    assert!(policy(r#"{"name":"None"}"#).is_err());
}

#[test]
fn subscription_states_as_wso2s_gateway_treats_them() {
    use crate::vocab::SubscriptionState::*;
    for (wso2, ours) in [
        ("UNBLOCKED", Unblocked),
        ("BLOCKED", Blocked),
        ("PROD_ONLY_BLOCKED", ProdOnlyBlocked),
        ("ON_HOLD", OnHold),
        ("REJECTED", Rejected),
        ("TIER_UPDATE_PENDING", Unblocked),
        ("DELETE_PENDING", Unblocked),
    ] {
        assert_eq!(subscription_state(wso2), ours, "{wso2}");
    }
}

#[test]
fn apis_lose_the_version_from_their_context_and_map_auth_schemes_and_tiers() {
    let list: Envelope<Api> = serde_json::from_str(
        r#"{"count":1,"list":[{"uuid":"6a1b","apiId":2,"provider":"admin","name":"PizzaShackAPI","version":"1.0.0",
            "context":"/pizzashack/1.0.0","policy":null,"apiType":"HTTP","status":"PUBLISHED","organization":"carbon.super",
            "isDefaultVersion":true,"urlMappings":[
             {"authScheme":"Any","throttlingPolicy":"Unlimited","httpMethod":"GET","urlPattern":"/menu","scopes":[]},
             {"authScheme":"Application User","throttlingPolicy":"10KPerMin","httpMethod":"post","urlPattern":"/order","scopes":["order:write"]},
             {"authScheme":"None","throttlingPolicy":null,"httpMethod":"GET","urlPattern":"/health","scopes":null}]}],
            "pagination":null}"#,
    )
    .unwrap();
    let endpoints = RawEndpoints { production: Some("pizza".into()), sandbox: None };
    let raw = api(&list.list[0], endpoints, &[SecurityScheme::Oauth2]).unwrap();
    assert_eq!((raw.context.as_str(), raw.version.as_str(), raw.default_version), ("/pizzashack", "1.0.0", true));
    assert_eq!(raw.policy, None);
    let [menu, order, health] = &raw.resources[..] else { panic!() };
    assert_eq!((menu.policy.as_deref(), menu.security.as_ref(), menu.user_token_only), (None, None, false));
    assert_eq!(
        (order.method.as_str(), order.policy.as_deref(), order.user_token_only),
        ("POST", Some("10KPerMin"), true)
    );
    assert_eq!(order.scopes, ["order:write"]);
    assert_eq!(health.security, Some(Vec::new()), "authScheme None is open");
    let blocked = Api { status: "BLOCKED".into(), ..list.list[0].clone() };
    assert_eq!(api(&blocked, RawEndpoints::default(), &[]).unwrap().lifecycle, Lifecycle::Blocked);
    let odd = Api { status: "SOMETHING".into(), ..list.list[0].clone() };
    assert!(api(&odd, RawEndpoints::default(), &[]).is_err());
}

/// A `{version}` context template: WSO2 writes the context with the version in the template's
/// place, and the API, its blocking condition and its JWT API keys name it by that context.
#[test]
fn a_version_template_context_keeps_its_version_where_wso2_put_it() {
    let wso2 = Api {
        name: "Tpl".into(),
        version: "v1".into(),
        context: "/t/shop.example/v1/tpl".into(),
        status: "PUBLISHED".into(),
        ..Api::default()
    };
    let endpoints = RawEndpoints { production: Some("p".into()), sandbox: None };
    let raw = api(&wso2, endpoints, &[SecurityScheme::Oauth2]).unwrap();
    assert_eq!(raw.context, "/t/shop.example/{version}/tpl");
    let routes = crate::routing::Table::compile(vec![raw], &|_| true).unwrap();
    assert_eq!(routes.apis[0].versioned_context, "/t/shop.example/v1/tpl");
    let block = Block { api: vec!["/t/shop.example/v1/tpl".into()], ..Block::default() };
    let (conditions, _) = blocking(&block, "carbon.super");
    let [crate::directory::BlockingCondition::Api(named)] = &conditions[..] else { panic!("{conditions:?}") };
    assert!(routes.apis[0].is_named_by(named));
}

#[test]
fn blocking_conditions_and_revocations_read_as_wso2_writes_them() {
    let block: Block = serde_json::from_str(
        r#"{"api":["/pizzashack/1.0.0"],"application":["admin:MobileApp","no-colon"],"user":["bob@carbon.super",""],
            "ip":[{"type":"IP","fixedIp":"192.168.1.20","startingIp":null,"endingIp":null,"invert":false,"tenantDomain":"carbon.super","id":4},
                  {"type":"IPRANGE","fixedIp":null,"startingIp":"10.0.0.1","endingIp":"10.0.0.255","invert":null,"tenantDomain":"carbon.super","id":5},
                  {"type":"IP","fixedIp":"not-an-ip"}],
            "custom":[],"subscription":null}"#,
    )
    .unwrap();
    let (conditions, skipped) = blocking(&block, "carbon.super");
    assert_eq!(skipped, 3, "no-colon, not-an-ip and the empty user");
    assert!(
        conditions.contains(&BlockingCondition::ApplicationNamed { owner: "admin".into(), name: "MobileApp".into() })
    );
    let low: IpAddr = "10.0.0.1".parse().unwrap();
    assert!(conditions.contains(&BlockingCondition::IpBetween {
        low,
        high: "10.0.0.255".parse().unwrap(),
        inclusive: false,
        invert: false
    }));
    // Subscription conditions are not applied, and counted as skipped (so logged).
    let block: Block = serde_json::from_str(r#"{"subscription":["/pizzashack/1.0.0:admin:MobileApp"]}"#).unwrap();
    assert_eq!(blocking(&block, "carbon.super"), (Vec::new(), 1));
    let revoked: Vec<RevokedJwt> = serde_json::from_str(
        r#"[{"jwt_signature":"3f1b","expiry_time":1735689600000},{"jwt_signature":"b2a1","expiry_time":1735689600}]"#,
    )
    .unwrap();
    assert_eq!(expiry_seconds(revoked[0].expiry_time), 1_735_689_600);
    assert_eq!(expiry_seconds(revoked[1].expiry_time), 1_735_689_600);
}

#[test]
fn nulls_and_unknown_fields_are_read_leniently() {
    let apps: Envelope<Application> = serde_json::from_str(
        r#"{"count":1,"list":[{"uuid":"0c9e","id":3,"name":"MobileApp","subName":"admin","policy":null,"tokenType":"JWT",
            "groupIds":[],"attributes":{"tier":"gold"},"organization":"carbon.super","somethingNew":{"x":1}}],"pagination":null}"#,
    )
    .unwrap();
    assert_eq!((apps.list[0].sub_name.as_str(), apps.list[0].policy.as_deref()), ("admin", None));
    let empty: Envelope<Subscription> = serde_json::from_str(r#"{"count":0,"list":null,"pagination":null}"#).unwrap();
    assert!(empty.list.is_empty());
    assert!(serde_json::from_str::<Envelope<Subscription>>("[1,2]").is_err());
}

#[test]
fn an_api_policy_applied_per_user_is_counted_per_user() {
    let api_policy = |level: &str| {
        policy(&format!(
            r#"{{"name":"FivePerMin","quotaType":"requestCount","applicableLevel":{level},
                "defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":5}}}},
                "conditionGroups":[]}}"#
        ))
        .unwrap()
        .unwrap()
    };
    assert!(api_policy(r#""userLevel""#).per_user, "WSO2 counts each user apart");
    assert!(!api_policy(r#""apiLevel""#).per_user, "the API as a whole");
    assert!(!api_policy("null").per_user);
}

/// An API of `api_type` with `mappings` (`[method, path, scopes, tier]`), as API-M sends it.
fn typed(api_type: &str, mappings: &[(&str, &str, &[&str], Option<&str>)]) -> Api {
    Api {
        uuid: "u".into(),
        name: "Typed".into(),
        version: "1.0.0".into(),
        context: "/typed/1.0.0".into(),
        api_type: api_type.into(),
        status: "PUBLISHED".into(),
        url_mappings: mappings
            .iter()
            .map(|(method, path, scopes, tier)| UrlMapping {
                auth_scheme: "Any".into(),
                throttling_policy: tier.map(str::to_string),
                http_method: (*method).into(),
                url_pattern: (*path).into(),
                scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
            })
            .collect(),
        ..Api::default()
    }
}

/// The API as the control plane's load compiles it, or why it is not served.
fn served(wso2: &Api) -> Result<crate::routing::Table, String> {
    let endpoints = RawEndpoints { production: Some("p".into()), sandbox: None };
    let raw = api(wso2, endpoints, &[SecurityScheme::Oauth2, SecurityScheme::ApiKey])?;
    let mut table = crate::routing::Table::default();
    table.add_from_control_plane("control plane API Typed:1.0.0", raw).map_err(|error| error.to_string())?;
    Ok(table)
}

/// WSO2's WebSocket and server-sent-events APIs carry topics (`SUBSCRIBE`, `PUBLISH`): a client
/// opens one with a GET (a handshake) on the API's context and the topic, authenticated and
/// checked against the topic's scopes there (`InboundWebSocketProcessor`, `OAuthAuthenticator`).
/// Each topic is served as a GET resource with its verbs' scopes and tier.
#[test]
fn websocket_and_sse_topics_are_served_as_handshakes_with_their_scopes_and_tiers() {
    for api_type in ["WS", "SSE", "ws"] {
        let wso2 = typed(
            api_type,
            &[
                ("SUBSCRIBE", "/rooms/{room}", &["chat:read"], Some("Unlimited")),
                ("PUBLISH", "/rooms/{room}", &["chat:read"], None),
                ("SUBSCRIBE", "/*", &[], Some("TenPerMin")),
            ],
        );
        let routes = served(&wso2).unwrap_or_else(|reason| panic!("{api_type}: {reason}"));
        let [rooms, rest] = &routes.apis[0].resources[..] else { panic!("{:?}", routes.apis[0].resources) };
        assert_eq!((rooms.method.as_str(), rooms.template.as_str()), ("GET", "/rooms/{room}"));
        assert_eq!((rooms.scopes.as_slice(), rooms.policy.as_deref()), (&["chat:read".to_string()][..], None));
        assert_eq!(
            (rest.method.as_str(), rest.template.as_str(), rest.policy.as_deref()),
            ("GET", "/*", Some("TenPerMin"))
        );
        assert!(!rest.security.is_empty(), "secured");
    }
    // One verb's scope or tier is not dropped for the other's absence; the stricter is kept.
    let one_sided =
        typed("WS", &[("SUBSCRIBE", "/feed", &[], None), ("PUBLISH", "/feed", &["feed:write"], Some("TenPerMin"))]);
    let routes = served(&one_sided).unwrap();
    let [feed] = &routes.apis[0].resources[..] else { panic!() };
    assert_eq!((feed.scopes.as_slice(), feed.policy.as_deref()), (&["feed:write".to_string()][..], Some("TenPerMin")));
    let reordered = typed("WS", &[("SUBSCRIBE", "/feed", &["a", "b"], None), ("PUBLISH", "/feed", &["b", "a"], None)]);
    assert_eq!(served(&reordered).unwrap().apis[0].resources.len(), 1, "the same scopes in another order");
    // Scopes or tiers that differ per verb cannot be applied by one handshake: not served.
    let split =
        typed("WS", &[("SUBSCRIBE", "/feed", &["feed:read"], None), ("PUBLISH", "/feed", &["feed:write"], None)]);
    assert!(served(&split).unwrap_err().contains("/feed"));
    let split_tier =
        typed("WS", &[("SUBSCRIBE", "/feed", &[], Some("TenPerMin")), ("PUBLISH", "/feed", &[], Some("FivePerMin"))]);
    assert!(served(&split_tier).unwrap_err().contains("/feed"));
}

/// What the filter cannot serve as API-M does is not served, saying why: a GraphQL API's
/// operations (their scopes and tiers) are named in the query, which the filter does not parse;
/// a WebSub API's topic is in the request's body; a SOAP-to-REST API's calls are converted to
/// SOAP by API-M's gateway. A type the filter does not know is not served either.
#[test]
fn api_types_the_filter_cannot_serve_as_wso2_does_are_not_served_saying_why() {
    for (api_type, mappings, why) in [
        (
            "GRAPHQL",
            &[("QUERY", "hero", &["read"][..], None), ("MUTATION", "addHero", &[][..], Some("TenPerMin"))][..],
            "GraphQL",
        ),
        ("WEBSUB", &[("SUBSCRIBE", "/_default", &[][..], None)][..], "WebSub"),
        ("WEBHOOK", &[("SUBSCRIBE", "/_default", &[][..], None)][..], "WebSub"),
        ("SOAPTOREST", &[("POST", "/checkPhoneNumber", &[][..], None)][..], "SOAP"),
        ("MCP", &[("GET", "/*", &[][..], None)][..], "MCP"),
    ] {
        let reason = served(&typed(api_type, mappings)).err().unwrap_or_else(|| panic!("{api_type} was served"));
        assert!(reason.contains(why), "{api_type}: {reason}");
    }
    // Plain HTTP, SOAP pass-through and API products are HTTP resources; no type is HTTP.
    for api_type in ["HTTP", "SOAP", "APIProduct", "APIPRODUCT", ""] {
        let routes = served(&typed(api_type, &[("POST", "/*", &[], None)])).unwrap();
        assert_eq!(routes.apis[0].resources[0].method, "POST", "{api_type}");
    }
}

/// Every condition type on, as an API-M that enables them all.
const ALL: ConditionTypes = ConditionTypes { header: true, query_param: true, jwt_claim: true };

#[test]
fn an_api_policys_condition_groups_are_read_each_type_as_api_m_writes_it() {
    let limit = |count: &str| {
        format!(
            r#"{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":{count}}}}}"#
        )
    };
    let group = |id: &str, conditions: &str, count: &str| {
        format!(
            r#"{{"policyId":4,"quotaType":"requestCount","conditionGroupId":{id},"condition":[{conditions}],"defaultLimit":{}}}"#,
            limit(count)
        )
    };
    let condition = |kind: &str, name: &str, value: &str, inverted: bool| {
        format!(r#"{{"conditionType":"{kind}","name":"{name}","value":"{value}","isInverted":{inverted}}}"#)
    };
    let groups = [
        group("11", &condition("IPSpecific", "IPSpecific", "10.0.0.5", false), "100"),
        group("12", &condition("IPRange", "10.0.0.1", "10.0.0.9", true), "200"),
        group(
            r#""13""#,
            &[condition("Header", "X-Plan", "^free$", false), condition("QueryParameterType", "format", "csv", false)]
                .join(","),
            "300",
        ),
        group("14", &condition("JWTClaims", "groups", "admin", false), "2147483647"),
        group("15", &condition("HTTPVerb", "GET", "GET", false), "1"),
        group("16", &condition("Header", "x", "(?<=a)b", false), "1"),
        group("17", &condition("IPRange", "10.0.0.1", "::1", false), "1"),
        group("18", &condition("IPRange", "10.0.0.9", "10.0.0.1", false), "1"),
        group("null", "", "1"),
    ];
    let json = format!(
        r#"{{"name":"Gold","applicableLevel":"userLevel","defaultLimit":{},"conditionGroups":[{}]}}"#,
        limit("1000"),
        groups.join(",")
    );
    let policy: Policy = serde_json::from_str(&json).unwrap();
    let (read, skipped) = condition_groups(&policy, ALL);
    let ids: Vec<&str> = read.iter().map(|group| group.id.as_str()).collect();
    assert_eq!(ids, ["11", "12", "13", "14"]);
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    assert_eq!(read[0].conditions[0].test, conditions::Test::IpBetween { low: ip("10.0.0.5"), high: ip("10.0.0.5") });
    assert_eq!(read[1].conditions[0].test, conditions::Test::IpBetween { low: ip("10.0.0.1"), high: ip("10.0.0.9") });
    assert!(read[1].conditions[0].invert);
    assert!(matches!(&read[2].conditions[0].test, conditions::Test::Header { name, .. } if name == "x-plan"));
    assert!(matches!(&read[2].conditions[1].test, conditions::Test::QueryParam { name, .. } if name == "format"));
    assert!(matches!(&read[3].conditions[0].test, conditions::Test::Claim { name, .. } if name == "groups"));
    assert_eq!((read[0].limit, read[0].window_s, read[0].bytes), (100, 60, false));
    assert_eq!(read[3].limit, conditions::UNLIMITED, "WSO2's unlimited count");
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    let reasons = ["`httpverb`", "regular expression", "a range from", "a range from", "no condition"];
    for (skipped, reason) in skipped.iter().zip(reasons) {
        assert!(skipped.starts_with("Gold: condition group ") && skipped.contains(reason), "{skipped}");
    }
}

#[test]
fn an_api_policy_unlimited_but_for_its_groups_counts_its_groups_only_and_other_levels_have_none() {
    let json = |default: &str| {
        format!(
            r#"{{"name":"Guarded","applicableLevel":"userLevel",
                "defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":{default}}}}},
                "conditionGroups":[{{"conditionGroupId":3,"condition":[{{"conditionType":"IPSpecific","name":"IPSpecific","value":"10.0.0.5","isInverted":false}}],
                  "defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"sec","unitTime":1,"requestCount":2}}}}}}]}}"#
        )
    };
    let unlimited: Policy = serde_json::from_str(&json("2147483647")).unwrap();
    let mut skipped = Vec::new();
    let spec = policy_at(PolicyLevel::Api, &unlimited, ALL, &mut skipped).unwrap().unwrap();
    assert_eq!(
        (spec.limit, spec.per_user, spec.groups.len(), spec.groups[0].limit),
        (conditions::UNLIMITED, true, 1, 2)
    );
    assert_eq!(
        policy_at(PolicyLevel::Subscription, &unlimited, ALL, &mut skipped),
        Ok(None),
        "groups are API policies'"
    );
    let limited: Policy = serde_json::from_str(&json("50")).unwrap();
    let spec = policy_at(PolicyLevel::Api, &limited, ALL, &mut skipped).unwrap().unwrap();
    assert_eq!((spec.limit, spec.groups[0].id.as_str()), (50, "3"));
    assert!(policy_at(PolicyLevel::Subscription, &limited, ALL, &mut skipped).unwrap().unwrap().groups.is_empty());
    assert!(skipped.is_empty());
}

/// Two groups of one policy never share a counter: a group whose id another group already has
/// (the same number, as a number or a string, or the place a group without an id takes) is left
/// out, with the reason, as a group the filter cannot apply.
#[test]
fn a_condition_group_whose_id_repeats_is_left_out() {
    let group = |id: &str, address: &str| {
        format!(
            r#"{{"conditionGroupId":{id},"condition":[{{"conditionType":"IPSpecific","name":"IPSpecific","value":"{address}"}}],
                "defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":5}}}}}}"#
        )
    };
    let groups =
        [group("2", "10.0.0.1"), group("null", "10.0.0.2"), group(r#""2""#, "10.0.0.3"), group("4", "10.0.0.4")];
    let json = format!(
        r#"{{"name":"Gold","defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":9}}}},
            "conditionGroups":[{}]}}"#,
        groups.join(",")
    );
    let policy: Policy = serde_json::from_str(&json).unwrap();
    let (read, skipped) = condition_groups(&policy, ALL);
    let ids: Vec<&str> = read.iter().map(|group| group.id.as_str()).collect();
    assert_eq!(ids, ["2", "4"]);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped.iter().all(|skipped| skipped.starts_with("Gold: condition group 2 (")), "{skipped:?}");
}

/// API-M applies header, query and claim conditions only where its deployment turns them on (all
/// off by default). With one off, its Traffic Manager is never sent what the condition reads, and
/// finds no pattern in a value it was not sent: the condition never holds, so its group is left
/// out (naming the switch) and its requests count under the policy's own limit; inverted, it
/// always holds, so the group's other conditions decide. Address conditions always apply.
#[test]
fn condition_types_api_m_turns_off_read_no_value() {
    let condition = |kind: &str, name: &str, value: &str, inverted: bool| {
        format!(r#"{{"conditionType":"{kind}","name":"{name}","value":"{value}","isInverted":{inverted}}}"#)
    };
    let group = |id: u32, conditions: &[String]| {
        format!(
            r#"{{"conditionGroupId":{id},"condition":[{}],
                "defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":5}}}}}}"#,
            conditions.join(",")
        )
    };
    let json = format!(
        r#"{{"name":"Gold","defaultLimit":{{"quotaType":"requestCount","requestCount":{{"timeUnit":"min","unitTime":1,"requestCount":9}}}},
            "conditionGroups":[{}]}}"#,
        [
            group(1, &[condition("Header", "x-plan", "free", false)]),
            group(2, &[condition("QueryParameterType", "format", "csv", false)]),
            group(3, &[condition("JWTClaims", "groups", "admin", false)]),
            group(4, &[condition("IPRange", "10.0.0.1", "10.0.0.9", false)]),
            group(5, &[condition("Header", "x-plan", "free", true)]),
            group(
                6,
                &[
                    condition("QueryParameterType", "format", "csv", true),
                    condition("IPSpecific", "IPSpecific", "10.0.0.5", false)
                ]
            ),
        ]
        .join(",")
    );
    let policy: Policy = serde_json::from_str(&json).unwrap();
    let (read, skipped) = condition_groups(&policy, ConditionTypes::default());
    let ids: Vec<&str> = read.iter().map(|group| group.id.as_str()).collect();
    assert_eq!(ids, ["4", "5", "6"], "API-M's defaults: {skipped:?}");
    assert!(read[1].conditions.is_empty(), "group 5 holds for every request");
    assert!(matches!(
        read[2].conditions[..],
        [conditions::Condition { test: conditions::Test::IpBetween { .. }, invert: false }]
    ));
    let switches = [
        "`control_plane.header_conditions`",
        "`control_plane.query_param_conditions`",
        "`control_plane.jwt_claim_conditions`",
        "`control_plane.header_conditions`",
        "`control_plane.query_param_conditions`",
    ];
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    for (skipped, switch) in skipped.iter().zip(switches) {
        assert!(skipped.contains(switch) && skipped.contains("conditions are off"), "{skipped}");
    }
    assert!(skipped[0].starts_with("Gold: condition group 1 (header conditions are off"), "{}", skipped[0]);
    assert!(skipped[0].contains("API-M's `enable_header_based_throttling`"), "{}", skipped[0]);
    assert!(
        skipped[3].starts_with("Gold: condition group 5: its inverted Header condition always holds"),
        "{}",
        skipped[3]
    );
    let ids = |types: ConditionTypes| -> Vec<String> {
        condition_groups(&policy, types).0.into_iter().map(|group| group.id).collect()
    };
    assert_eq!(ids(ConditionTypes { header: true, ..ConditionTypes::default() }), ["1", "4", "5", "6"]);
    assert_eq!(ids(ConditionTypes { query_param: true, ..ConditionTypes::default() }), ["2", "4", "5", "6"]);
    assert_eq!(ids(ConditionTypes { jwt_claim: true, ..ConditionTypes::default() }), ["3", "4", "5", "6"]);
    let (all, notes) = condition_groups(&policy, ALL);
    assert_eq!(all.len(), 6);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(all[4].conditions.len(), 1, "inverted and applied");
}

#[test]
fn an_object_without_a_list_is_not_an_empty_list_of_apis_or_policies() {
    // `/block`'s document answered for `/apis` (or an error object) read as an empty list
    // dropped every API the last good load brought; `"list": null` stays an empty list.
    for text in
        [r#"{"api":[],"application":[],"user":[],"ip":[],"custom":[],"subscription":[]}"#, "{}", r#"{"count":0}"#]
    {
        assert!(crate::pieces::from_bytes::<Envelope<Api>>(text.as_bytes()).is_err(), "{text}");
        assert!(crate::pieces::from_bytes::<Envelope<Policy>>(text.as_bytes()).is_err(), "{text}");
    }
    let empty = crate::pieces::from_bytes::<Envelope<Api>>(br#"{"count":0,"list":null}"#).unwrap();
    assert!(empty.list.is_empty());
}

#[test]
fn another_tenants_address_conditions_are_not_applied() {
    // `/block` answers every tenant's conditions (`BlockConditionDBUtil.getBlockConditions`
    // selects all of `AM_BLOCK_CONDITIONS`); WSO2's gateway keys address conditions by
    // `tenantDomain` and applies them to that tenant's APIs only.
    let block: Block = serde_json::from_str(
        r#"{"api":[],"application":[],"user":[],"custom":[],"subscription":[],
            "ip":[{"type":"IP","fixedIp":"192.0.2.7","startingIp":null,"endingIp":null,"invert":true,"tenantDomain":"acme.com","id":8},
                  {"type":"IPRANGE","fixedIp":null,"startingIp":"10.0.0.1","endingIp":"10.0.0.9","invert":false,"tenantDomain":"acme.com","id":9},
                  {"type":"IP","fixedIp":"192.0.2.1","startingIp":null,"endingIp":null,"invert":false,"tenantDomain":"carbon.super","id":10},
                  {"type":"IP","fixedIp":"192.0.2.2","startingIp":null,"endingIp":null,"invert":false,"tenantDomain":null,"id":11}]}"#,
    )
    .unwrap();
    let (conditions, skipped) = blocking(&block, "carbon.super");
    let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
    let fixed =
        |text: &str| BlockingCondition::IpBetween { low: ip(text), high: ip(text), inclusive: true, invert: false };
    assert_eq!((conditions, skipped), (vec![fixed("192.0.2.1"), fixed("192.0.2.2")], 0));
    // The other tenant's gateway applies its own.
    let (conditions, _) = blocking(&block, "ACME.com");
    assert_eq!(conditions.len(), 3, "acme.com's two and the one without a tenant: {conditions:?}");
}

#[test]
fn another_tenants_user_conditions_are_not_applied() {
    // API-M stores a blocked user as `<tenant-aware name>@<tenant>` (`APIProviderImpl
    // .addBlockCondition`); WSO2's gateway looks up the caller with `@<API tenant>` appended unless
    // it holds it (`ThrottleHandler`): acme.com's `bob@acme.com` never matches on wso2.com's APIs
    // (its caller `bob@acme.com` is `bob@acme.com@wso2.com` there).
    let block: Block = serde_json::from_str(
        r#"{"api":[],"application":[],"user":["bob@acme.com","carol@wso2.com","dave"],"custom":[],
            "subscription":[],"ip":[]}"#,
    )
    .unwrap();
    let users = |tenant: &str| blocking(&block, tenant).0;
    let user = |name: &str| BlockingCondition::User(name.to_string());
    assert_eq!(users("wso2.com"), vec![user("carol@wso2.com"), user("dave")]);
    assert_eq!(users("ACME.com"), vec![user("bob@acme.com"), user("dave")]);
}

#[test]
fn an_api_policy_without_groups_as_api_m_writes_it_has_no_group_to_leave_out() {
    // API-M reads API policies with a LEFT JOIN of their groups: a policy without any comes with
    // one group of id 0, no condition and no limit (`populateApiPolicyList`).
    let policy: Policy = serde_json::from_str(
        r#"{"id":null,"tenantId":-1234,"tenantDomain":"carbon.super","name":"50KPerMin","quotaType":"requestCount",
            "conditionGroups":[{"policyId":3,"quotaType":null,"conditionGroupId":0,"condition":[],"defaultLimit":null}],
            "applicableLevel":"apiLevel",
            "defaultLimit":{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":50000},
                "bandwidth":null,"eventCount":null}}"#,
    )
    .unwrap();
    let mut skipped = Vec::new();
    let spec = policy_at(PolicyLevel::Api, &policy, ConditionTypes::default(), &mut skipped).unwrap().unwrap();
    assert_eq!((spec.limit, spec.groups.len()), (50_000, 0));
    assert!(skipped.is_empty(), "nothing to log: {skipped:?}");
    // A group that has a limit but no condition is still one the filter cannot apply, and logged.
    let limited = r#"{"quotaType":"requestCount","requestCount":{"timeUnit":"min","unitTime":1,"requestCount":5}}"#;
    let policy: Policy = serde_json::from_str(&format!(
        r#"{{"name":"P","defaultLimit":{limited},"conditionGroups":[{{"conditionGroupId":0,"condition":[],"defaultLimit":{limited}}}]}}"#
    ))
    .unwrap();
    let mut skipped = Vec::new();
    policy_at(PolicyLevel::Api, &policy, ConditionTypes::default(), &mut skipped).unwrap();
    assert_eq!(skipped, vec!["P: condition group 0 (no condition)".to_string()]);
}
