//! The directory read from a WSO2 API Manager control plane at run time, through a real Envoy:
//! the stand-in of `tests/cp/` serves WSO2's internal data API with WSO2's shapes, tokens come
//! from the real OAuth2 server of `tests/km`. Initial load (APIs, applications, subscriptions,
//! key mappings, policies), on-demand lookups of what the directory does not know yet, refreshes
//! (a subscription blocked, an application deleted, a tier changed), revoked tokens, the control
//! plane down, slow or answering garbage, and a directory of 100,000 entries.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::cp::ControlPlane;
use common::websocket::{self, acking_backend, read_frame, text_frame};
use common::windows::away_from_window_end;
use common::{Backend, Envoy, EnvoySetup, KeyManager, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

const PIZZA: &str = "6a1bdb2e-2c5d-4f7a-9d3c-0d7b1c2f9e11";
const CHAT: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
const MOBILE_APP: &str = "0c9e2b4a-8d1f-4b0e-9a55-3f6c2d7e8a90";
const WEB_APP: &str = "5b2d7c1e-3a4f-4e6d-9b8c-7a6f5e4d3c2b";
const KM: &str = "Resident Key Manager";

/// How often the filter reloads the control plane, and how long it waits for an answer.
#[derive(Clone, Copy)]
struct Timing {
    refresh_s: u64,
    timeout_ms: u64,
}

/// For tests that count the control plane's requests: no reload within the test, and a timeout
/// no slow machine reaches.
const STILL: Timing = Timing { refresh_s: 3600, timeout_ms: 10_000 };
/// For tests that watch changes arrive: a reload every 5 s.
const REFRESHING: Timing = Timing { refresh_s: 5, timeout_ms: 10_000 };

fn control_plane_config(key_manager: Value, timing: Timing) -> Value {
    json!({
        "throttling": {"rate_limit_headers": true},
        "key_managers": [key_manager],
        "control_plane": {
            "cluster": "cp", "username": "admin", "password": {"env": "APIM_TEST_CP_PASSWORD"},
            "refresh_s": timing.refresh_s, "timeout_ms": timing.timeout_ms, "negative_ttl_s": 30,
            // Serves ChatAPI, a WebSocket API (by default, not served: its tiers count messages).
            "event_apis": "count_connections",
            // Header and query conditions on, as in an API-M that enables them; claim conditions off, as
            // API-M's default.
            "header_conditions": true, "query_param_conditions": true,
            "endpoints": {"PizzaShackAPI": {"production": "live", "sandbox": "sandbox"},
                          "LegacyAPI:2.0.0": {"production": "live"}, "ChatAPI": {"production": "live"},
                          "StarWarsAPI": {"production": "live"}}
        },
        "apis": [{"name": "Static", "context": "/static", "version": "1", "security": [],
                  "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/*"}]}]
    })
}

struct Stack {
    envoy: Envoy,
    live: Backend,
    sandbox: Backend,
    km: KeyManager,
    cp: ControlPlane,
}

fn start(cp: ControlPlane, key_manager: impl FnOnce(&KeyManager) -> Value, timing: Timing) -> Stack {
    let stack = launch(cp, key_manager, timing);
    // The first full load starts on the first tick: wait until the control plane's API is served,
    // and until the load has asked for its last resource (it asks for each in turn, after the
    // answer before): a test that then changes API-M's data sees it through lookups or the next
    // load, never through the rest of the first one (a slow machine served the APIs while the
    // subscriptions were still to come).
    until("the first load", || stack.envoy.get("/pizzashack/1.0.0/health").status == 200);
    until("the first load's last resource", || stack.cp.requests("revokedjwt") >= 1);
    stack
}

/// The stack with Envoy started, its first load not waited for.
fn launch(cp: ControlPlane, key_manager: impl FnOnce(&KeyManager) -> Value, timing: Timing) -> Stack {
    launch_adjusted(cp, key_manager, timing, |_, _| {})
}

/// [`launch`], with the configuration and Envoy's setup changed by `adjust` first.
fn launch_adjusted(
    cp: ControlPlane,
    key_manager: impl FnOnce(&KeyManager) -> Value,
    timing: Timing,
    adjust: impl FnOnce(&mut Value, &mut EnvoySetup),
) -> Stack {
    let km = KeyManager::start();
    let live = Backend::start();
    let sandbox = Backend::start();
    let mut config = control_plane_config(key_manager(&km), timing);
    let mut setup = EnvoySetup {
        clusters: vec![
            ("live".into(), live.port),
            ("sandbox".into(), sandbox.port),
            ("km".into(), km.port),
            ("cp".into(), cp.port),
        ],
        env: vec![("APIM_TEST_CP_PASSWORD".into(), "admin".into())],
        host_env_keys: vec!["APIM_TEST_CP_PASSWORD".into()],
        connection_manager: vec!["upgrade_configs: [{ upgrade_type: websocket }]".to_string()],
        ..Default::default()
    };
    adjust(&mut config, &mut setup);
    let envoy = Envoy::start(&config.to_string(), setup);
    Stack { envoy, live, sandbox, km, cp }
}

fn stack(timing: Timing) -> Stack {
    stack_on(ControlPlane::start(), timing)
}

/// [`stack`] on a control plane the test prepared.
fn stack_on(cp: ControlPlane, timing: Timing) -> Stack {
    start(
        cp,
        |km| json!({"name": KM, "issuer": km.issuer(), "audiences": ["urn:apim:jwt"], "jwks": {"cluster": "km", "path": "/jwks"}}),
        timing,
    )
}

/// Polls `condition` every 200 ms for up to 60 s (a refresh interval is 5 s; a slow machine
/// may need several, and a load that timed out is retried 5 s later).
fn until(what: &str, condition: impl Fn() -> bool) {
    until_within(what, Duration::from_secs(60), condition);
}

fn until_within(what: &str, deadline: Duration, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < deadline, "{what}: not within {deadline:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// As made in the developer portal after the gateway loaded: a key mapping of the client `app2`
/// to WebApp, and a subscription of WebApp to PizzaShackAPI with `tier`.
fn add_web_app_key_and_subscription(cp: &ControlPlane, tier: &str) {
    cp.add(
        "application-key-mappings",
        json!({"applicationId": 4, "applicationUUID": WEB_APP, "consumerKey": "app2", "keyType": "PRODUCTION", "keyManager": KM}),
    );
    cp.add(
        "subscriptions",
        json!({"subscriptionUUID": "new-sub", "subscriptionId": 9, "policyId": tier,
        "apiUUID": PIZZA, "apiId": 2, "applicationUUID": WEB_APP, "appId": 4, "subscriptionState": "UNBLOCKED"}),
    );
}

fn bearer(envoy: &Envoy, path: &str, token: &str) -> Response {
    envoy.send("GET", path, &[("authorization", &format!("Bearer {token}"))], None)
}

fn code(response: &Response) -> String {
    if response.status == 200 {
        return "200".into();
    }
    response.json()["code"].as_str().unwrap_or("?").to_string()
}

#[test]
fn the_first_load_serves_the_control_planes_apis_with_its_applications_tiers_and_states() {
    let stack = stack(STILL);
    let envoy = &stack.envoy;
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    // A key mapping from the full load: no lookup needed.
    let response = bearer(envoy, "/pizzashack/1.0.0/menu", &app1);
    assert_eq!(response.status, 200, "{}", response.body);
    let received = stack.live.requests().pop().unwrap();
    assert_eq!(received.header("x-apim-application-id"), Some(MOBILE_APP));
    assert_eq!(received.header("x-apim-application-name"), Some("MobileApp"));
    assert_eq!(received.header("x-apim-subscriber"), Some("admin"));
    assert_eq!(received.header("x-apim-tier"), Some("Gold"));
    assert_eq!(received.path, "/menu", "WSO2's versioned context maps to context and version");
    assert_eq!(stack.cp.requests("application-key-mappings?"), 0, "no lookup for what the full load brought");
    // The default version, the sandbox key type, the configuration's own API beside them.
    assert_eq!(bearer(envoy, "/pizzashack/menu", &app1).status, 200, "isDefaultVersion");
    let sandbox = stack.km.jwt("sandbox-app", "sandbox-secret", "menu:read");
    assert_eq!(bearer(envoy, "/pizzashack/1.0.0/menu", &sandbox).status, 200);
    assert_eq!(stack.sandbox.requests().len(), 1, "SANDBOX key mapping -> sandbox cluster");
    assert_eq!(envoy.get("/static/1/x").status, 200);
    // Scopes from the URL mapping; an open resource (`authScheme: None`); a BLOCKED API; an API
    // the configuration maps to no cluster is not served.
    let order = envoy.send("POST", "/pizzashack/1.0.0/order", &[("authorization", &format!("Bearer {app1}"))], None);
    assert_eq!(code(&order), "900910");
    assert_eq!(envoy.get("/pizzashack/1.0.0/health").status, 200);
    let legacy = bearer(envoy, "/legacy/2.0.0/x", &app1);
    assert_eq!((legacy.status, code(&legacy)), (503, "700700".to_string()));
    assert_eq!(code(&bearer(envoy, "/unmapped/1.0.0/x", &app1)), "404");
    assert!(envoy.log().contains("Unmapped:1.0.0 (no cluster in control_plane.endpoints)"), "logged");
    // The resource tier (an API policy, 3 a minute) counts.
    away_from_window_end(60, 20);
    let codes: Vec<String> = (0..4).map(|_| code(&bearer(envoy, "/pizzashack/1.0.0/order/7", &app1))).collect();
    assert_eq!(codes, ["200", "200", "200", "900802"]);
    // A client the control plane does not know: looked up once, then remembered as absent.
    let stranger = stack.km.jwt("unsubscribed-app", "unsubscribed-secret", "menu:read");
    for _ in 0..3 {
        assert_eq!(code(&bearer(envoy, "/pizzashack/1.0.0/menu", &stranger)), "900908");
    }
    assert_eq!(stack.cp.requests("application-key-mappings?"), 1, "the absence is remembered");
}

/// A tier created in API-M after the gateway's full load, and a subscription with it: WSO2's
/// gateway fetches a policy it does not hold (`/subscription-policies?policyName=`), so the
/// first request works and counts against the tier; an unknown tier is asked once and refused.
#[test]
fn a_tier_created_after_the_load_is_looked_up_on_its_first_request() {
    let stack = stack(STILL);
    stack.cp.add(
        "subscription-policies",
        json!({"id": 20, "tenantId": -1234, "tenantDomain": "carbon.super", "name": "TwoPerHourNew",
        "quotaType": "requestCount", "rateLimitCount": 0, "rateLimitTimeUnit": null, "stopOnQuotaReach": true,
        "defaultLimit": {"quotaType": "requestCount", "requestCount": {"timeUnit": "hours", "unitTime": 1, "requestCount": 2}}}),
    );
    add_web_app_key_and_subscription(&stack.cp, "TwoPerHourNew");
    away_from_window_end(3600, 120);
    let app2 = stack.km.jwt("app2", "app2-secret", "menu:read");
    let codes: Vec<String> = (0..3).map(|_| code(&bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app2))).collect();
    assert_eq!(codes, ["200", "200", "900804"], "the new tier's 2 an hour, not 900809");
    assert_eq!(stack.live.requests().pop().unwrap().header("x-apim-tier"), Some("TwoPerHourNew"));
    assert_eq!(stack.cp.requests("subscription-policies?"), 1, "looked up once, for every worker");
    // A tier API-M does not have either: asked once, then 900809 (500) while the absence counts.
    let ghost_app = "7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    stack.cp.add(
        "applications",
        json!({"uuid": ghost_app, "id": 5, "name": "GhostApp", "subName": "bob", "policy": "Unlimited",
        "tokenType": "JWT", "groupIds": [], "attributes": {}, "organization": "carbon.super"}),
    );
    stack.cp.add(
        "application-key-mappings",
        json!({"applicationId": 5, "applicationUUID": ghost_app, "consumerKey": "unsubscribed-app",
        "keyType": "PRODUCTION", "keyManager": KM}),
    );
    stack.cp.add(
        "subscriptions",
        json!({"subscriptionUUID": "ghost-sub", "subscriptionId": 10, "policyId": "Ghost", "apiUUID": PIZZA,
        "apiId": 2, "applicationUUID": ghost_app, "appId": 5, "subscriptionState": "UNBLOCKED"}),
    );
    let ghost = stack.km.jwt("unsubscribed-app", "unsubscribed-secret", "menu:read");
    for _ in 0..3 {
        let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &ghost);
        assert_eq!((response.status, code(&response)), (500, "900809".to_string()));
    }
    assert_eq!(stack.cp.requests("subscription-policies?"), 2, "the absence is remembered");
}

/// An API policy's condition groups (API-M's advanced policies) as the control plane sends them:
/// a request meeting a group counts under the group's limit, an unlimited group's requests count
/// nowhere, and the policy's own limit counts the rest. While claim conditions are off (API-M's
/// default), a claim condition never holds (its group is left out, its requests count as the
/// rest) and an inverted one always does.
#[test]
fn an_api_policys_condition_groups_from_the_control_plane_count_their_requests_apart() {
    let cp = ControlPlane::start();
    let limit = |count: u64| json!({"quotaType": "requestCount", "requestCount": {"timeUnit": "min", "unitTime": 1, "requestCount": count}});
    let condition = |kind: &str, name: &str, value: &str| json!({"conditionType": kind, "name": name, "value": value, "isInverted": false});
    cp.update(
        "api-policies",
        "name",
        "ThreePerMin",
        json!({"conditionGroups": [
            {"policyId": 1, "quotaType": "requestCount", "conditionGroupId": 21, "defaultLimit": limit(1),
             "condition": [condition("Header", "x-plan", "^free$"), condition("IPSpecific", "IPSpecific", "127.0.0.1")]},
            {"policyId": 1, "quotaType": "requestCount", "conditionGroupId": 22, "defaultLimit": limit(2_147_483_647),
             "condition": [condition("QueryParameterType", "debug", "^true$")]},
            {"policyId": 1, "quotaType": "requestCount", "conditionGroupId": 23, "defaultLimit": limit(1),
             "condition": [condition("JWTClaims", "scope", "menu")]},
            {"policyId": 1, "quotaType": "requestCount", "conditionGroupId": 24, "defaultLimit": limit(1),
             "condition": [condition("Header", "x-plan", "^vip$"),
                           {"conditionType": "JWTClaims", "name": "scope", "value": "menu", "isInverted": true}]}
        ]}),
    );
    let stack = stack_on(cp, STILL);
    let envoy = &stack.envoy;
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    let free =
        |path: &str| envoy.send("GET", path, &[("authorization", &format!("Bearer {app1}")), ("x-plan", "free")], None);
    away_from_window_end(60, 20);
    // This client is 127.0.0.1 on the free plan: group 21 allows 1 a minute (900802: a resource tier).
    assert_eq!([code(&free("/pizzashack/1.0.0/order/7")), code(&free("/pizzashack/1.0.0/order/7"))], ["200", "900802"]);
    // Group 24's inverted claim condition always holds, claim conditions being off: its header
    // decides, and its 1 a minute applies.
    let vip = || {
        envoy.send(
            "GET",
            "/pizzashack/1.0.0/order/7",
            &[("authorization", &format!("Bearer {app1}")), ("x-plan", "vip")],
            None,
        )
    };
    assert_eq!([code(&vip()), code(&vip())], ["200", "900802"]);
    // Group 22 is unlimited: five requests, over the policy's own 3, all pass.
    let debug: Vec<String> =
        (0..5).map(|_| code(&bearer(envoy, "/pizzashack/1.0.0/order/7?debug=true", &app1))).collect();
    assert_eq!(debug, ["200"; 5]);
    // The rest count under the policy's own 3 a minute, untouched by the groups' requests.
    let codes: Vec<String> = (0..4).map(|_| code(&bearer(envoy, "/pizzashack/1.0.0/order/7", &app1))).collect();
    assert_eq!(codes, ["200", "200", "200", "900802"]);
    // Group 23 (every token here has a `menu` scope) was left out: the four above counted as the rest.
    let log = envoy.log();
    assert!(
        log.contains(
            "ThreePerMin: condition group 23 (jwt_claim conditions are off: `control_plane.jwt_claim_conditions`"
        ),
        "{log}"
    );
    assert!(log.contains("ThreePerMin: condition group 24: its inverted JWTClaims condition always holds"), "{log}");
    assert!(!log.contains("condition group 21") && !log.contains("condition group 22"), "{log}");
}

/// API-M's API types: a WebSocket API's topics are served at the handshake, its token taken from
/// `access_token` in the query as API-M takes it (and not sent on), each topic's scopes checked;
/// a GraphQL API, whose operations' scopes the filter cannot check, is not served, saying why.
#[test]
fn a_websocket_api_is_served_at_its_handshake_and_a_graphql_api_is_not_served() {
    let stack = stack(STILL);
    let envoy = &stack.envoy;
    // MobileApp subscribes to the WebSocket API after the full load: looked up on its handshake.
    stack.cp.add(
        "subscriptions",
        json!({"subscriptionUUID": "chat-sub", "subscriptionId": 9, "policyId": "Gold",
        "apiUUID": CHAT, "apiId": 8, "applicationUUID": MOBILE_APP, "appId": 3, "subscriptionState": "UNBLOCKED"}),
    );
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    // The handshake (the backend answers it 200, not 101: tests/http_semantics.rs upgrades one).
    let upgrade = [("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-version", "13")];
    let handshake = |path: &str| envoy.send("GET", path, &upgrade, None);
    let response = handshake(&format!("/chat/1.0.0/rooms/7?access_token={app1}&since=5"));
    assert_eq!(response.status, 200, "{}", response.body);
    let received = stack.live.requests().pop().unwrap();
    assert_eq!(received.path, "/rooms/7?since=5", "the token does not go upstream");
    assert_eq!(received.header("x-apim-application-id"), Some(MOBILE_APP));
    assert_eq!(code(&handshake(&format!("/chat/1.0.0/moderation?access_token={app1}"))), "900910", "topic scopes");
    assert_eq!(code(&handshake("/chat/1.0.0/rooms/7")), "900902");
    // A request that is no handshake does not take its token from the query, as API-M's does not.
    assert_eq!(code(&envoy.get(&format!("/chat/1.0.0/rooms/7?access_token={app1}"))), "900902");
    // Only a WebSocket API takes the token from the query.
    assert_eq!(code(&envoy.get(&format!("/pizzashack/1.0.0/menu?access_token={app1}"))), "900902");
    assert_eq!(code(&bearer(envoy, "/swapi/1.0.0", &app1)), "404");
    assert!(envoy.log().contains("StarWarsAPI:1.0.0 (API type `GRAPHQL` not served: GraphQL"), "logged");
    // Counted in the load's line, with the API whose endpoint maps to no cluster.
    assert!(envoy.log().contains(": 3 APIs served, 2 not served, "), "{}", envoy.log());
    assert!(!envoy.log().contains(&app1), "the token is never logged");
}

/// `event_apis: count_messages`: a WebSocket API's frames count against its subscription's tier, as
/// API-M counts them, and its handshake does not; a frame over the tier never reaches the backend.
#[test]
fn a_websocket_apis_frames_count_against_its_subscription() {
    let (backend, received) = acking_backend();
    let key_manager = |km: &KeyManager| json!({"name": KM, "issuer": km.issuer(), "audiences": ["urn:apim:jwt"], "jwks": {"cluster": "km", "path": "/jwks"}});
    let stack = launch_adjusted(ControlPlane::start(), key_manager, STILL, |config, setup| {
        config["control_plane"]["event_apis"] = "count_messages".into();
        config["control_plane"]["endpoints"]["ChatAPI"] = json!({"production": "ws"});
        setup.clusters.push(("ws".into(), backend));
    });
    until("the first load", || stack.envoy.get("/pizzashack/1.0.0/health").status == 200);
    // MobileApp subscribes to the WebSocket API on TwoPerHour: two frames an hour.
    stack.cp.add(
        "subscriptions",
        json!({"subscriptionUUID": "chat-sub", "subscriptionId": 9, "policyId": "TwoPerHour",
        "apiUUID": CHAT, "apiId": 8, "applicationUUID": MOBILE_APP, "appId": 3, "subscriptionState": "UNBLOCKED"}),
    );
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    away_from_window_end(3600, 60);
    for _ in 0..3 {
        let (head, _) =
            websocket::handshake(stack.envoy.port, &format!("/chat/1.0.0/rooms/7?access_token={app1}"), &[]);
        assert!(head.starts_with("HTTP/1.1 101"), "handshakes are not counted: {head}");
    }
    let (_, mut client) =
        websocket::handshake(stack.envoy.port, "/chat/1.0.0/rooms/7", &[("authorization", &format!("Bearer {app1}"))]);
    // "a" and its acknowledgement are the two frames of the hour; "b" goes nowhere.
    client.write_all(&text_frame("a", true)).unwrap();
    assert_eq!(read_frame(&mut client), Some((1, b"ack:a".to_vec())));
    client.write_all(&text_frame("b", true)).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(*received.lock().unwrap(), ["a"]);
    assert_eq!(stack.envoy.stat("wasmcustom.apim.fault.4008"), 1);
    assert!(!stack.envoy.log().contains(&app1), "the token is never logged");
}

#[test]
fn a_new_key_and_subscription_work_on_their_first_request() {
    let stack = stack(STILL);
    // Created in the developer portal after the gateway loaded: a key mapping for WebApp and a
    // subscription of WebApp to the API.
    add_web_app_key_and_subscription(&stack.cp, "Gold");
    let app2 = stack.km.jwt("app2", "app2-secret", "menu:read");
    let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app2);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(stack.live.requests().pop().unwrap().header("x-apim-subscriber"), Some("alice"));
    assert_eq!(stack.cp.requests("application-key-mappings?"), 1);
    assert_eq!(stack.cp.requests("subscriptions?"), 1);
    // Known now, on every worker: no more lookups.
    for _ in 0..6 {
        assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app2).status, 200);
    }
    assert_eq!(stack.cp.requests("application-key-mappings?") + stack.cp.requests("subscriptions?"), 2);
}

#[test]
fn refreshes_apply_blocked_subscriptions_deleted_applications_and_changed_tiers() {
    let stack = stack(REFRESHING);
    let envoy = &stack.envoy;
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(envoy, "/pizzashack/1.0.0/menu", &app1).status, 200);
    stack.cp.update(
        "subscriptions",
        "subscriptionUUID",
        "5f0d8c2e-1a3b-4c5d-8e9f-0a1b2c3d4e5f",
        json!({"subscriptionState": "BLOCKED"}),
    );
    until("the blocked subscription", || code(&bearer(envoy, "/pizzashack/1.0.0/menu", &app1)) == "900907");
    // Unblocked with a tier of 2 an hour: the third request is over it.
    stack.cp.update(
        "subscriptions",
        "subscriptionUUID",
        "5f0d8c2e-1a3b-4c5d-8e9f-0a1b2c3d4e5f",
        json!({"subscriptionState": "UNBLOCKED", "policyId": "TwoPerHour"}),
    );
    away_from_window_end(3600, 120);
    until("the new tier", || bearer(envoy, "/pizzashack/1.0.0/menu", &app1).status == 200);
    assert_eq!(stack.live.requests().pop().unwrap().header("x-apim-tier"), Some("TwoPerHour"));
    let codes: Vec<String> = (0..2).map(|_| code(&bearer(envoy, "/pizzashack/1.0.0/menu", &app1))).collect();
    assert!(codes.contains(&"900804".to_string()), "{codes:?}");
    // Blocked by the admin portal (a blocking condition on `<owner>:<application>`): 900805.
    stack.cp.set(
        "block",
        json!({"api": [], "application": ["admin:MobileApp"], "user": [], "ip": [], "custom": [], "subscription": []}),
    );
    until("the blocked application", || code(&bearer(envoy, "/pizzashack/1.0.0/menu", &app1)) == "900805");
    stack
        .cp
        .set("block", json!({"api": [], "application": [], "user": [], "ip": [], "custom": [], "subscription": []}));
    until("the unblocked application", || code(&bearer(envoy, "/pizzashack/1.0.0/menu", &app1)) != "900805");
    // The application deleted (with its keys and subscriptions, as WSO2 deletes them).
    stack.cp.delete("applications", "uuid", MOBILE_APP);
    stack.cp.delete("application-key-mappings", "applicationUUID", MOBILE_APP);
    stack.cp.delete("subscriptions", "applicationUUID", MOBILE_APP);
    until("the deleted application", || code(&bearer(envoy, "/pizzashack/1.0.0/menu", &app1)) == "900908");
}

#[test]
fn a_revoked_token_is_refused_within_one_refresh() {
    let stack = stack(REFRESHING);
    let token = stack.km.jwt("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &token).status, 200);
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let jti = payload["jti"].as_str().expect("the key manager's tokens carry a jti");
    let expiry = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600) * 1000;
    stack.cp.set("revokedjwt", json!([{"jwt_signature": jti, "expiry_time": expiry}]));
    until("the revocation", || {
        let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &token);
        response.status == 401 && code(&response) == "900901"
    });
    let other = stack.km.jwt("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &other).status, 200, "only that token");
}

#[test]
fn down_slow_or_garbage_the_last_good_directory_serves_and_lookups_answer_900900() {
    // A short timeout: the stand-in's slow mode answers after 20 s.
    let mut stack = stack(Timing { refresh_s: 5, timeout_ms: 1500 });
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    let unknown = |stack: &Stack| stack.km.jwt("app2", "app2-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app1).status, 200);
    for mode in ["garbage", "error", "slow"] {
        stack.cp.mode(mode, 20_000);
        // A lookup that cannot be made: 900900, never 401/403; what was loaded keeps serving,
        // through full loads that fail too.
        let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &unknown(&stack));
        assert_eq!((response.status, code(&response)), (500, "900900".to_string()), "{mode}: {}", response.body);
        thread::sleep(Duration::from_secs(6));
        assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app1).status, 200, "{mode}: last good data");
        stack.cp.mode("ok", 0);
    }
    stack.cp.stop();
    let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &unknown(&stack));
    assert_eq!(code(&response), "900900", "down");
    assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app1).status, 200, "down: last good data");
    // Back: lookups and loads work again (app2 is unknown to it: remembered as absent).
    stack.cp.restart();
    until("recovery", || code(&bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &unknown(&stack))) == "900908");
    let log = stack.envoy.log();
    assert!(log.contains("kept its last good data") || log.contains("its last good data stays"), "logged");
    assert!(!log.contains("panicked"));
}

/// API-M down when Envoy starts: until a load brings the APIs, a request that matches no API may
/// be for one of them, so it answers 503 with `Retry-After`, not 404; the configuration's own
/// APIs are served meanwhile. Once API-M answers, its APIs are served and others are 404.
#[test]
fn before_the_first_load_a_request_for_no_known_api_waits() {
    let cp = ControlPlane::start();
    cp.mode("error", 0);
    let stack =
        launch(cp, |km| json!({"name": KM, "issuer": km.issuer(), "jwks": {"cluster": "km", "path": "/jwks"}}), STILL);
    let envoy = &stack.envoy;
    for path in ["/pizzashack/1.0.0/health", "/nowhere/1.0.0"] {
        let response = envoy.get(path);
        assert_eq!((response.status, code(&response)), (503, "503".to_string()), "{path}: {}", response.body);
        assert_eq!(response.header("retry-after"), Some("5"), "{path}");
    }
    assert_eq!(envoy.get("/static/1/x").status, 200, "the configuration's own API");
    thread::sleep(Duration::from_secs(6));
    assert_eq!(envoy.get("/nowhere/1.0.0").status, 503, "API-M still down: a load failed again");
    stack.cp.mode("ok", 0);
    until("the first load", || envoy.get("/pizzashack/1.0.0/health").status == 200);
    let response = envoy.get("/nowhere/1.0.0");
    assert_eq!((response.status, response.header("retry-after")), (404, None), "{}", response.body);
}

#[test]
fn a_lookup_answer_over_a_mib_is_a_failed_call_and_the_vm_lives_on() {
    // Answers the filter reads whole are refused above 1 MiB before a byte is read (parsing holds
    // several times an answer's size, and a VM's memory never shrinks). Full loads are read in
    // pieces and take any size; spaces keep every answer valid JSON.
    let stack = stack(STILL);
    let app1 = stack.km.jwt("app1", "app1-secret", "menu:read");
    assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app1).status, 200);
    stack.cp.padded(2 << 20);
    let unknown = stack.km.jwt("app2", "app2-secret", "menu:read");
    let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &unknown);
    assert_eq!((response.status, code(&response)), (500, "900900".to_string()), "{}", response.body);
    assert!(stack.envoy.log().contains("over the 1048576 bytes read whole"), "logged");
    assert_eq!(bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &app1).status, 200, "the VM lives on");
    // Under the limit the same lookup is read: app2 is unknown to this control plane.
    stack.cp.padded(512 << 10);
    let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &unknown);
    assert_eq!(code(&response), "900908", "{}", response.body);
    assert!(!stack.envoy.log().contains("panicked"));
}

/// An RS256 key of the fixtures as a JWK.
fn public_jwk() -> Value {
    let key = EncodingKey::from_rsa_pem(common::read_repo_file("tests/fixtures/keys/rsa-a.pem").as_bytes()).unwrap();
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = Value::from("local-a");
    jwk
}

fn local_token(client: &str) -> String {
    let key = EncodingKey::from_rsa_pem(common::read_repo_file("tests/fixtures/keys/rsa-a.pem").as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("local-a".into());
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
    jsonwebtoken::encode(&header, &json!({"iss": "https://local.test", "exp": exp, "client_id": client}), &key).unwrap()
}

#[test]
fn a_directory_of_100000_applications_keys_and_subscriptions() {
    // Serving 100,000 entries takes the stand-in seconds on a slow machine: the longest timeout.
    let stack = start(
        ControlPlane::start_scaled(100_000),
        |_| json!({"name": KM, "issuer": "https://local.test", "jwks": {"keys": [public_jwk()]}}),
        Timing { refresh_s: 3600, timeout_ms: 60_000 },
    );
    until_within("the full load", Duration::from_secs(180), || stack.envoy.log().contains("control plane loaded in"));
    let log = stack.envoy.log();
    let loaded = log.lines().find(|line| line.contains("control plane loaded in")).unwrap_or_default();
    eprintln!("{loaded}");
    // Any of them works at once, from the full load (no lookups).
    for i in [0, 4_242, 99_999] {
        let response = bearer(&stack.envoy, "/pizzashack/1.0.0/menu", &local_token(&format!("gen-client-{i}")));
        assert_eq!(response.status, 200, "gen-client-{i}: {}", response.body);
    }
    assert_eq!(stack.cp.requests("application-key-mappings?") + stack.cp.requests("subscriptions?"), 0);
    // One full load (loads never overlap; one that failed somewhere is retried 5 s later, and
    // that one may still be on its way): one fetch per load, never one per request.
    let fetched = stack.cp.requests("applications");
    let log = stack.envoy.log();
    let loads =
        (log.matches("control plane loaded in").count() + log.matches("control plane load incomplete").count()) as u64;
    assert!(fetched >= 1 && fetched <= loads + 1, "{fetched} fetches of the applications for {loads} loads");
}
