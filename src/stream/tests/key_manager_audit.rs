//! A seeded audit of several key managers against WSO2 API Manager 4.x's gateway: which key
//! manager a token goes to (by issuer, or by introspection), whose keys and claim names apply,
//! whose client the token's client id is, and what an API restricted to some key managers does;
//! one row per decision, each with WSO2's answer and its source, driven through the stream's
//! real request path (and the introspection calls it makes) and compared with the table. Where
//! the filter answers otherwise the row says so and why. Seed: `KM_AUDIT_SEED` (printed on
//! failure).
//!
//! Sources (binodmx/wso2-carbon-apimgt, the 4.2 line, commit
//! 389d4e225143445c50f913257ae9c2e21914a640, `components/apimgt/`; the same code in
//! wso2/carbon-apimgt `OAuthAuthenticator.java` b479eb3b60a7e9d579fef4a3b855ddeb5d6b1048):
//! - OAUTH = `org.wso2.carbon.apimgt.gateway/.../handlers/security/oauth/OAuthAuthenticator.java`:
//!   L115 the API's key managers (`GatewayUtils.getKeyManagers`: the deployed API's
//!   `GatewayAPIDTO.keyManagers`, `InMemoryAPIDeployer` L100), L238 the key manager by issuer,
//!   L243-256 not in the API's list (nor `all`): 900901; no validator: L319 key validation.
//! - JVS = `org.wso2.carbon.apimgt.impl/.../jwt/JWTValidationServiceImpl.java` L55-65: a name only
//!   for a key manager with a JWT validator (`self_validate_jwt`, `KeyManagerHolder` L159).
//! - OKMD = `org.wso2.carbon.apimgt.impl/.../dto/OrganizationKeyManagerDto.java` L44/L58: issuer
//!   to name, an exact `HashMap` (the last key manager of an issuer wins).
//! - KMH = `org.wso2.carbon.apimgt.impl/.../factory/KeyManagerHolder.java` L74 (`enabled` false and
//!   `EXCHANGED` key managers are not loaded), L164-179 (`claim_mappings`, `consumer_key_claim`,
//!   `scopes_claim`).
//! - DJT = `org.wso2.carbon.apimgt.common.gateway/.../jwttransformer/DefaultJWTTransformer.java`:
//!   L42-47 no `consumer_key_claim` (the Resident Key Manager's: `KeyMgtRegistrationService`
//!   registers it without one): `consumerKey`, else `azp` (`JWTConstants` L45-46), each read by
//!   `getStringClaim` (a list throws: `JWTValidatorImpl` L91 `APIManagementException`, the
//!   gateway's `JWTValidator` L711 900900); L49-56 a configured claim: a String, or a List's first
//!   item (ForgeRock), else null; L67-83 the scopes claim, `default` when it is neither a String
//!   nor a List (absent, null); `transform` renames remote claims for the backend JWT only.
//! - JWTV = `org.wso2.carbon.apimgt.gateway/.../handlers/security/jwt/JWTValidator.java` L347-356:
//!   no consumer key, 900908 (`API_AUTH_FORBIDDEN`).
//! - AMKM = `org.wso2.carbon.apimgt.impl/.../AMDefaultKeyManagerImpl.java` `getTokenMetaData`:
//!   L534 scopes only from the answer's `scope` (none: no scopes, no `default`), L538 the consumer
//!   key is the answer's `client_id`, whatever the token says; DKVH L292 the elected (introspecting)
//!   key manager is the token's.
//! - DKVH = `org.wso2.carbon.apimgt.keymgt/.../handlers/DefaultKeyValidationHandler.java`
//!   L215-297: an opaque token goes to ONE key manager: with `all` the first that can handle it,
//!   else the first of the API's list; none: 900901.
//! - AKVH = `.../handlers/AbstractKeyValidationHandler.java` L222: the key mapping is the client
//!   id AND the key manager; none: 900908 (L261).

use super::claims_model::{object, quoted};
use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use crate::host::fuzz::Rng;
use jsonwebtoken::Algorithm;

const NOW: u64 = 1_700_000_000;
const RESIDENT: &str = "https://apim.example/oauth2/token";
/// Configured with a trailing `/`.
const OKTA: &str = "https://okta.example/oauth2/default/";
const KEYCLOAK: &str = "https://kc.example/realms/shop";

/// What a request gets: let through to a cluster, or a fault (code, status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pass(&'static str),
    Fault(u32, u16),
}
use self::Outcome::{Fault as F, Pass};

const INVALID: Outcome = F(900901, 401);
const FORBIDDEN: Outcome = F(900908, 403);
const SCOPE: Outcome = F(900910, 403);

/// The credential a row sends.
#[derive(Clone, Copy, Debug)]
enum Token {
    /// A JWT: its `iss` (none: no claim), the key that signs it (`rsa-a.pem` is the Resident
    /// Key Manager's, `rsa-b.pem` Okta's), and its other claims (raw JSON values).
    Jwt(Option<&'static str>, &'static str, &'static [(&'static str, &'static str)]),
    Opaque,
}

/// What Keycloak (the introspecting key manager) answers, when it is asked.
const ACTIVE_K1: &str = r#"{"active":true,"client_id":"k1","scope":"read"}"#;
const ACTIVE_O1: &str = r#"{"active":true,"client_id":"o1"}"#;
const ACTIVE_R1: &str = r#"{"active":true,"client_id":"r1"}"#;
const ACTIVE_K1_NO_SCOPE: &str = r#"{"active":true,"client_id":"k1"}"#;
const INACTIVE: &str = r#"{"active":false}"#;

/// How the filter's answer stands to WSO2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    AsWso2,
    /// The filter refuses what WSO2 lets through: reported, kept.
    Stricter,
    /// The filter lets through what WSO2 refuses: reported (a feature not built, or a spelling).
    Lenient,
}

struct Row {
    name: &'static str,
    /// `p` (every key manager: API-M's `all`) or `r` (API-M: `keyManagers` =
    /// [`Resident Key Manager`]), and the resource (`menu` needs scope `read`, `def` scope
    /// `default`).
    path: &'static str,
    token: Token,
    /// Keycloak's answer, when the filter asks it (one call, then the cache).
    introspected: Option<&'static str>,
    wso2: Outcome,
    /// The filter's answer where it differs, and why.
    filter: Option<(Outcome, &'static str)>,
    source: &'static str,
}

const fn row(
    name: &'static str,
    path: &'static str,
    token: Token,
    introspected: Option<&'static str>,
    wso2: Outcome,
    source: &'static str,
) -> Row {
    Row { name, path, token, introspected, wso2, filter: None, source }
}

const fn differs(base: Row, filter: Outcome, why: &'static str) -> Row {
    Row { filter: Some((filter, why)), ..base }
}

/// The Resident Key Manager's tokens name their client `azp` (API-M reads it when no
/// `consumerKey`).
const R1: &[(&str, &str)] = &[("azp", r#""r1""#)];
const O1: &[(&str, &str)] = &[("cid", r#""o1""#)];
const K1: &[(&str, &str)] = &[("client_id", r#""k1""#)];
const NO_SLASH: &str = "https://okta.example/oauth2/default";

const ROWS: &[Row] = &[
    row("Resident token", "p/1/any", Token::Jwt(Some(RESIDENT), "rsa-a.pem", R1), None, Pass("prod"), "OAUTH L238, OKMD L58"),
    row("Okta token, iss as configured", "p/1/any", Token::Jwt(Some(OKTA), "rsa-b.pem", O1), None, Pass("prod"), "OKMD: exact"),
    differs(
        row("Okta token, iss without the configured /", "p/1/any", Token::Jwt(Some(NO_SLASH), "rsa-b.pem", O1), None,
            INVALID, "OKMD: exact, no validator; JVS null: introspected by the other key manager, unknown to it"),
        Pass("prod"),
        "CONFIG.md `issuer`: one trailing `/` is not compared (both spellings are in use); the signature is still Okta's",
    ),
    row("Resident iss, signed by Okta's key", "p/1/any", Token::Jwt(Some(RESIDENT), "rsa-b.pem", R1), None, INVALID,
        "JWTValidatorImpl.validateSignature with the issuer's keys only"),
    row("Okta iss, signed by the Resident key", "p/1/any", Token::Jwt(Some(OKTA), "rsa-a.pem", O1), None, INVALID,
        "JWTValidatorImpl.validateSignature with the issuer's keys only"),
    row("client id `same` of the Resident Key Manager", "p/1/any",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#""same""#)]), None, Pass("prod"), "AKVH L222"),
    row("client id `same` of Okta (another application)", "p/1/any",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#""same""#)]), None, FORBIDDEN, "AKVH L222, L261"),
    row("Okta token with `client_id`, its claim is `cid`", "p/1/any",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("client_id", r#""o1""#)]), None, FORBIDDEN,
        "DJT: consumer_key_claim absent, null; JWTValidator.validateSubscriptionUsingKeyManager 900908"),
    row("Okta token, `cid` a one-item list", "p/1/any", Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#"["o1"]"#)]),
        None, Pass("prod"), "DJT L54-55: a configured claim's list, its first item (ForgeRock)"),
    row("Okta token, `cid` a list, its client first", "p/1/any",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#"["o1","x9"]"#)]), None, Pass("prod"), "DJT L55: get(0)"),
    row("Okta token, `cid` a list, its client second", "p/1/any",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#"["x9","o1"]"#)]), None, FORBIDDEN,
        "DJT L55: get(0) only; AKVH L261"),
    differs(
        row("Resident token, `azp` a list (no consumer_key_claim)", "p/1/any",
            Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#"["r1"]"#)]), None, F(900900, 500),
            "DJT L46 getStringClaim of a list: ParseException; JWTValidatorImpl L91, JWTValidator L711: 900900"),
        INVALID,
        "README: a claim the filter relies on must have its type (900901), as for scopes (scope_audit TYPED)",
    ),
    row("Okta token, `scp` [read] on a scoped resource", "p/1/menu",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#""o1""#), ("scp", r#"["read"]"#)]), None, Pass("prod"),
        "DJT getTransformedScopes: scopes_claim, a list"),
    row("Okta token, `scope` read (its claim is `scp`)", "p/1/menu",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#""o1""#), ("scope", r#""read""#)]), None, SCOPE,
        "DJT: scopes_claim absent, scope `default`; 900910"),
    row("Resident token, `consumerKey` only", "p/1/any",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("consumerKey", r#""r1""#)]), None, Pass("prod"), "DJT L43-44"),
    row("Resident token, `consumerKey` its client, `azp` another", "p/1/any",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("consumerKey", r#""r1""#), ("azp", r#""x9""#)]), None,
        Pass("prod"), "DJT L43-46: consumerKey first"),
    row("Resident token, `azp` its client, `client_id` another", "p/1/any",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#""r1""#), ("client_id", r#""x9""#)]), None,
        Pass("prod"), "DJT L45-46: azp; client_id is not read"),
    row("Resident token, `azp` another, `client_id` its client", "p/1/any",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#""x9""#), ("client_id", r#""r1""#)]), None, FORBIDDEN,
        "DJT L45-46: azp (x9, no application); AKVH L261"),
    differs(
        row("Resident token, `client_id` only", "p/1/any",
            Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("client_id", r#""r1""#)]), None, FORBIDDEN,
            "DJT L42-47: neither consumerKey nor azp, null; JWTV L347-356 900908"),
        Pass("prod"),
        "CONFIG.md `claims.client_id`: the default reads `client_id` last (WSO2 IS 6+, Keycloak service accounts)",
    ),
    row("Resident token, `scope` \"openid read\"", "p/1/menu",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#""r1""#), ("scope", r#""openid read""#)]), None,
        Pass("prod"), "DJT: split at spaces"),
    row("Resident token without a scope claim, scope `default` asked", "p/1/def",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", R1), None, Pass("prod"), "DJT L83: [default]; DKVH validateScopes"),
    row("Resident token, `scope` null, scope `default` asked", "p/1/def",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#""r1""#), ("scope", "null")]), None, Pass("prod"),
        "DJT L74-83: null is no String nor List: [default]"),
    row("Resident token, `scope` \"\", scope `default` asked", "p/1/def",
        Token::Jwt(Some(RESIDENT), "rsa-a.pem", &[("azp", r#""r1""#), ("scope", r#""""#)]), None, SCOPE,
        "DJT L74-76: \"\".split is [\"\"], no default"),
    row("Okta token, `scope` only (its claim is `scp`), scope `default` asked", "p/1/def",
        Token::Jwt(Some(OKTA), "rsa-b.pem", &[("cid", r#""o1""#), ("scope", r#""read""#)]), None, Pass("prod"),
        "DJT L70-83: scopes_claim `scp` absent: [default]"),
    row("opaque token without scope, scope `default` asked", "p/1/def", Token::Opaque, Some(ACTIVE_K1_NO_SCOPE),
        SCOPE, "AMKM L534: no scopes (no default); DKVH INVALID_SCOPE"),
    row("Keycloak JWT (no self-validation), active", "p/1/any", Token::Jwt(Some(KEYCLOAK), "rsa-b.pem", K1),
        Some(ACTIVE_K1), Pass("prod"), "KMH L159 no validator, JVS null, OAUTH L319, DKVH getTokenMetaData"),
    row("Keycloak JWT (no self-validation), inactive", "p/1/any", Token::Jwt(Some(KEYCLOAK), "rsa-b.pem", K1),
        Some(INACTIVE), INVALID, "DKVH: inactive, 900901"),
    row("JWT of an unknown issuer, inactive", "p/1/any", Token::Jwt(Some("https://evil"), "rsa-a.pem", R1),
        Some(INACTIVE), INVALID, "JVS null: introspected, DKVH"),
    row("JWT of an unknown issuer, active", "p/1/any", Token::Jwt(Some("https://other"), "rsa-b.pem", K1),
        Some(ACTIVE_K1), Pass("prod"), "JVS null: introspected, DKVH"),
    row("JWT without iss, active", "p/1/any", Token::Jwt(None, "rsa-b.pem", K1), Some(ACTIVE_K1), Pass("prod"),
        "OKMD get(null): no validator, introspected"),
    row("Keycloak JWT naming Okta's client, answer Keycloak's", "p/1/any",
        Token::Jwt(Some(KEYCLOAK), "rsa-b.pem", &[("client_id", r#""o1""#), ("cid", r#""o1""#)]), Some(ACTIVE_K1),
        Pass("prod"), "AMKM L538: the answer's client_id; DKVH L292: the introspecting key manager's"),
    row("JWT of Okta's iss spelled otherwise, answer names Okta's client", "p/1/any",
        Token::Jwt(Some("https://okta.example/oauth2/other"), "rsa-b.pem", O1), Some(ACTIVE_O1), FORBIDDEN,
        "DKVH L292: (o1, Keycloak), whatever the iss; AKVH L261"),
    row("JWT of an unknown issuer, answer names a Resident client", "p/1/any",
        Token::Jwt(Some("https://other"), "rsa-a.pem", R1), Some(ACTIVE_R1), FORBIDDEN,
        "AMKM L538, DKVH L292: (r1, Keycloak) has no mapping; AKVH L261"),
    row("opaque token, active", "p/1/menu", Token::Opaque, Some(ACTIVE_K1), Pass("prod"), "DKVH, AKVH"),
    row("opaque token, active, a client of Okta", "p/1/any", Token::Opaque, Some(ACTIVE_O1), FORBIDDEN,
        "DKVH setKeyManager(elected): AKVH L222 (o1, Keycloak) has no mapping, L261"),
    row("opaque token, inactive", "p/1/any", Token::Opaque, Some(INACTIVE), INVALID, "DKVH: inactive"),
    row("Resident token, API of the Resident Key Manager", "r/1/any", Token::Jwt(Some(RESIDENT), "rsa-a.pem", R1),
        None, Pass("rprod"), "OAUTH L243"),
    differs(
        row("Okta token, API of the Resident Key Manager", "r/1/any", Token::Jwt(Some(OKTA), "rsa-b.pem", O1), None,
            INVALID, "OAUTH L243-256: not in the API's list, 900901"),
        Pass("rprod"),
        "not built: an API's key managers (GatewayAPIDTO.keyManagers) come in the runtime artifacts, not read",
    ),
    differs(
        row("Keycloak JWT, API of the Resident Key Manager", "r/1/any", Token::Jwt(Some(KEYCLOAK), "rsa-b.pem", K1),
            Some(ACTIVE_K1), INVALID, "DKVH L270-280: only the API's key managers are asked"),
        Pass("rprod"),
        "not built: an API's key managers are not read; Keycloak is asked",
    ),
    differs(
        row("opaque token, API of the Resident Key Manager", "r/1/any", Token::Opaque, Some(ACTIVE_K1), INVALID,
            "DKVH L270-280: only the API's key managers are asked"),
        Pass("rprod"),
        "not built: an API's key managers are not read; Keycloak is asked",
    ),
];

fn config() -> Rc<Config> {
    let client = |id: &str, km: &str| serde_json::json!({"id": id, "key_manager": km});
    let app =
        |id: &str, clients: Vec<serde_json::Value>| serde_json::json!({"id": id, "name": id, "client_ids": clients});
    let resources = serde_json::json!([{"method": "GET", "path": "/any"},
        {"method": "GET", "path": "/menu", "scopes": ["read"]}, {"method": "GET", "path": "/def", "scopes": ["default"]}]);
    let subscribed = |api: &str| {
        ["app-r", "app-o", "app-k"].map(|application| serde_json::json!({"application": application, "api": api}))
    };
    let mut subscriptions = subscribed("P:1").to_vec();
    subscriptions.extend(subscribed("R:1"));
    let json = serde_json::json!({
        "key_managers": [
            {"name": "Resident Key Manager", "issuer": RESIDENT, "jwks": {"keys": [jwk("rsa-a.pem", Algorithm::RS256, "a")]}},
            {"name": "Okta", "issuer": OKTA, "jwks": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "b")]},
             "claims": {"client_id": ["cid"], "scopes": ["scp"]}},
            {"name": "Keycloak", "issuer": KEYCLOAK,
             "introspection": {"cluster": "kc", "client_id": "gw", "client_secret": "gw-secret"}}],
        "apis": [
            {"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"}, "resources": resources},
            {"name": "R", "context": "/r", "version": "1", "endpoints": {"production": "rprod"}, "resources": resources}],
        "applications": [
            app("app-r", vec![client("r1", "Resident Key Manager"), client("same", "Resident Key Manager")]),
            app("app-o", vec![client("o1", "Okta")]), app("app-k", vec![client("k1", "Keycloak")]),
            app("app-x", vec![client("same", "Okta")])],
        "subscriptions": subscriptions
    });
    Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap())
}

/// The row's credential, unique to this request (a `jti`, or random bytes).
fn credential(rng: &mut Rng, now: u64, token: Token) -> String {
    let Token::Jwt(iss, pem, claims) = token else { return format!("opaque-{:016x}", rng.word()) };
    let mut payload: Vec<(String, String)> = iss.map(|iss| ("iss".to_string(), quoted(iss))).into_iter().collect();
    payload.extend(claims.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    payload.push(("exp".into(), (now + 60 + rng.below(3_600) as u64).to_string()));
    payload.push(("jti".into(), quoted(&format!("j-{}", rng.word()))));
    if rng.chance(2) {
        payload.push(("sub".into(), quoted("alice")));
    }
    // The kid each key has in its key manager's set; a key the issuer does not hold is offered
    // under its own kid (the issuer's set lacks it) or under the issuer's (a wrong signature).
    let own = if pem == "rsa-a.pem" { "a" } else { "b" };
    let issuers = match iss {
        Some(RESIDENT) => "a",
        Some(OKTA) => "b",
        _ => own,
    };
    let kid = if rng.chance(2) { own } else { issuers };
    let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
    sign_raw(&header, &object(&payload), pem, Algorithm::RS256)
}

/// Sends the row's request through a stream on `worker`, answering an introspection call with
/// `introspected`: what it answered, and the calls it made.
fn send(
    config: &Rc<Config>,
    worker: &Rc<RefCell<Worker>>,
    row: &Row,
    token: &str,
    (shared, now): (&mut HashMap<String, (Vec<u8>, u32)>, u64),
) -> Result<(Outcome, usize), String> {
    let path = format!("/{}", row.path);
    let bearer = format!("Bearer {token}");
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", &path), (":authority", "gw"), ("authorization", &bearer)]);
    host.now = now;
    // The Envoy's shared data (the introspection cache) outlives the request.
    std::mem::swap(&mut host.shared, shared);
    let outcome = answer(config, worker, row, &mut host);
    std::mem::swap(&mut host.shared, shared);
    outcome
}

fn answer(
    config: &Rc<Config>,
    worker: &Rc<RefCell<Worker>>,
    row: &Row,
    host: &mut FakeHost,
) -> Result<(Outcome, usize), String> {
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    let mut flow = stream.on_request_headers(host, true);
    let calls = host.dispatched.len();
    if flow == Flow::Waiting {
        let (cluster, _, _) = host.dispatched.last().ok_or("waiting on no call")?.clone();
        if cluster != "kc" || calls != 1 {
            return Err(format!("{calls} calls, the last to {cluster}"));
        }
        let body = row.introspected.ok_or("introspected, no answer in the row")?;
        let answer = Answer::Http { status: 200, body: body.as_bytes().to_vec() };
        stream.on_call_response(host, calls as u32, answer);
        flow = if host.sent.is_some() { Flow::Answered } else { Flow::Continue };
    }
    let outcome = match flow {
        Flow::Continue => {
            let cluster = host.req("x-apim-cluster").to_string();
            ["prod", "rprod"].into_iter().find(|c| *c == cluster).map(Pass).ok_or(format!("cluster {cluster}"))?
        }
        Flow::Answered => {
            let (status, _, _) = host.sent.clone().ok_or("answered, nothing sent")?;
            F(*host.counted.last().ok_or("no fault counted")?, status)
        }
        other => return Err(format!("{other:?}")),
    };
    Ok((outcome, calls))
}

#[test]
fn several_key_managers_answer_as_the_audit_table_says() {
    let seed = std::env::var("KM_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6b6d_a0d1_u64);
    let mut rng = Rng::new(seed);
    let config = config();
    let mut classes: std::collections::BTreeMap<Class, usize> = Default::default();
    let (mut failures, mut requests, mut introspections) = (Vec::new(), 0, 0);
    for round in 0..6 {
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        let mut shared = HashMap::new();
        let mut order: Vec<usize> = (0..ROWS.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for index in order {
            let row = &ROWS[index];
            let now = NOW + (round * 100_000 + rng.below(50_000)) as u64;
            let token = credential(&mut rng, now, row.token);
            let want = row.filter.map_or(row.wso2, |(answer, _)| answer);
            // Twice: the second from the worker's cache of verified tokens, or the cached
            // introspection answer (no second call).
            for attempt in 0..2 {
                requests += 1;
                let calls = usize::from(attempt == 0 && row.introspected.is_some());
                match send(&config, &worker, row, &token, (&mut shared, now)) {
                    Ok((sent, made)) if sent == want && made == calls => introspections += made,
                    Ok(sent) => failures.push(format!(
                        "round {round} {}#{attempt}: want {want:?} ({calls} calls), sent {sent:?}",
                        row.name
                    )),
                    Err(why) => failures.push(format!("round {round} {}#{attempt}: {why}", row.name)),
                }
            }
            let class = match row.filter {
                None => Class::AsWso2,
                Some((Pass(_), _)) if !matches!(row.wso2, Pass(_)) => Class::Lenient,
                Some(_) => Class::Stricter,
            };
            *classes.entry(class).or_default() += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed} (KM_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    for class in [Class::AsWso2, Class::Stricter, Class::Lenient] {
        assert!(classes.get(&class).copied().unwrap_or(0) > 0, "seed {seed}: no {class:?} row: {classes:?}");
    }
    let introspected = ROWS.iter().filter(|row| row.introspected.is_some()).count();
    assert_eq!((requests, introspections), (6 * 2 * ROWS.len(), 6 * introspected), "seed {seed}");
}

/// The rows the filter lets through and WSO2 refuses are these, each with its reason: a new one
/// must be added here, on purpose. Every one but the issuer's spelling and `client_id` (read last
/// by the default claim names, for WSO2 IS 6+ and Keycloak) is an API's key manager list, which
/// the filter does not read.
#[test]
fn the_key_manager_table_names_every_lenient_row() {
    let lenient: Vec<&str> = ROWS
        .iter()
        .filter(|row| matches!(row.filter, Some((Pass(_), _))) && !matches!(row.wso2, Pass(_)))
        .map(|row| row.name)
        .collect();
    assert_eq!(
        lenient,
        [
            "Okta token, iss without the configured /",
            "Resident token, `client_id` only",
            "Okta token, API of the Resident Key Manager",
            "Keycloak JWT, API of the Resident Key Manager",
            "opaque token, API of the Resident Key Manager"
        ]
    );
    for row in ROWS {
        assert!(!row.source.is_empty() && row.filter.is_none_or(|(_, why)| !why.is_empty()), "{}", row.name);
        if let Some((answer, _)) = row.filter {
            assert_ne!(answer, row.wso2, "{}: a difference that is none", row.name);
        }
    }
}

/// The decisions a configuration makes, not a request: where API-M takes a configuration the
/// filter refuses at load (naming the field), so that no operator is surprised at run time.
/// - Same issuer twice: API-M's last key manager of the issuer wins (OKMD L44); refused.
/// - Two introspecting key managers: API-M asks one, the first that can handle the token (DKVH
///   L252-266), never a second; refused (a second would never be asked).
/// - `enabled: false`: API-M does not load it (KMH L74); not a field (leave the key manager out).
/// - `claim_mappings` (remote claim to local, for the backend JWT only, DJT `transform`), and the
///   API's `keyManagers`: not offered (unknown fields).
#[test]
fn configurations_api_m_takes_and_the_filter_refuses_name_their_field() {
    let km = |name: &str, issuer: &str, extra: serde_json::Value| {
        let mut km = serde_json::json!({"name": name, "issuer": issuer,
            "introspection": {"cluster": name, "client_id": "gw", "client_secret": "s"}});
        if let (Some(km), Some(extra)) = (km.as_object_mut(), extra.as_object()) {
            km.extend(extra.clone());
        }
        km
    };
    let none = serde_json::json!({});
    let no_introspection = serde_json::json!({"introspection": null, "jwks": {"cluster": "j"}});
    let cases = [
        (
            vec![km("a", "https://km", no_introspection.clone()), km("b", "https://km/", no_introspection)],
            "key_managers[1].issuer",
        ),
        (vec![km("a", "https://a", none.clone()), km("b", "https://b", none.clone())], "key_managers[1].introspection"),
        (vec![km("a", "https://a", serde_json::json!({"enabled": false}))], "key_managers[0]"),
        (
            vec![km(
                "a",
                "https://a",
                serde_json::json!({"claim_mappings": [{"remoteClaim": "x", "localClaim": "y"}]}),
            )],
            "key_managers[0]",
        ),
    ];
    for (key_managers, field) in cases {
        let json = serde_json::json!({ "key_managers": key_managers });
        let error = Config::from_json(json.to_string().as_bytes()).err().unwrap_or_else(|| panic!("{json} loaded"));
        assert!(error.field.starts_with(field), "{json}: {error:?}");
    }
    let api = serde_json::json!({"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "p"},
        "key_managers": ["Resident Key Manager"]});
    assert!(Config::from_json(serde_json::json!({"apis": [api]}).to_string().as_bytes()).is_err());
}
