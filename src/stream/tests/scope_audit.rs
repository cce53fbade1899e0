//! A seeded audit of scope and resource-authorization decisions (900910 and its neighbours)
//! against WSO2 API Manager 4.x's gateway: one row per decision, each with WSO2's answer (code,
//! status, description; the source that decides it), driven through the stream's real request
//! path (JWTs of two key managers, opaque tokens answered by introspection, JWT and opaque API
//! keys; GET, OPTIONS and HEAD; versioned and default-version paths) and compared with the
//! table. Where the filter answers otherwise on purpose the row says so and why. Seed:
//! `SCOPE_AUDIT_SEED` (printed on failure).
//!
//! Sources (wso2/carbon-apimgt, `components/apimgt/`):
//! - JWTV = `org.wso2.carbon.apimgt.gateway/.../handlers/security/jwt/JWTValidator.java`
//!   (b34f582a775628c2e7e0a09f095b64d93819ffe3): `authenticate` validates the subscription
//!   (`validateSubscriptionUsingKeyManager`, its status thrown) before `validateScopes`, which
//!   throws `INVALID_SCOPE` (900910) with "... Scope validation failed.".
//! - DKVH = `org.wso2.carbon.apimgt.keymgt/.../handlers/DefaultKeyValidationHandler.java`
//!   (4.x, read as stored file 8510873808): `validateScopes` strips `_default_` from the version,
//!   takes the API's URL mapping of the request's verb and template, validates one without
//!   scopes, else the first of its scopes the token's set `contains` (any one, case-sensitive).
//! - KVH = `.../keymgt/handlers/AbstractKeyValidationHandler.java`
//!   (f8e9eb4b601faeb8c15041b51b20fb65cfca979b): `validateSubscription` checks the token type
//!   (`hasTokenRequiredAuthLevel`, 900905) and the subscription; scopes come after.
//! - DJT = `org.wso2.carbon.apimgt.common.gateway/.../jwttransformer/DefaultJWTTransformer.java`
//!   (6f8571ebb7832ffabc2ce06827d0c49e8586af7a): `getTransformedScopes` reads the key
//!   manager's `scopes_claim`, else `scope`, only: a String split at " ", a List as is, anything
//!   else (absent, null, a number, an object) `["default"]` (`OAUTH2_DEFAULT_SCOPE`).
//! - AMKM = `AMDefaultKeyManagerImpl.getTokenMetaData` (stored file 15011435657): an
//!   introspection answer's `scope` (RFC 7662's only) split at " ".
//! - AK = `org.wso2.carbon.apimgt.gateway/.../apikey/ApiKeyAuthenticator.java`
//!   (e395e71e02f34d302a40436106484e61ba34a0dc): "Not doing resource level authentication":
//!   restrictions and subscription, no scope validation.

use super::claims_model::{object, quoted};
use super::jwt_audit::Outcome::{self, Fault as F, Pass};
use super::jwt_audit::{api_key, api_key_header, leak, matches, set, sign, ALIAS, ISS};
use super::*;
use crate::auth::keys::testkeys::jwk;
use crate::host::fuzz::Rng;
use jsonwebtoken::Algorithm;

const NOW: u64 = 1_700_000_000;
const ISS2: &str = "https://km2.example/oauth2/token";
const STATIC_KEY: &str = "k-static-scope-audit-0001";

const PASS: Outcome = Pass("prod");
const SCOPE: Outcome = F(900910, 403, "Scope validation failed");
const INVALID: Outcome = F(900901, 401, "Make sure you have provided the correct security credentials");
const FORBIDDEN: Outcome = F(900908, 403, "API Subscription validation failed");
const BLOCKED: Outcome = F(900907, 401, "API Subscription is blocked");
const WRONG_TYPE: Outcome = F(900905, 401, "");

/// The seed's message of 900910 (seed 002), in every scope refusal's body.
const SCOPE_MESSAGE: &str = "The access token does not allow you to access the requested resource";

struct Row {
    name: &'static str,
    wso2: Outcome,
    /// The filter's answer where it differs, and why.
    filter: Option<(Outcome, &'static str)>,
    source: &'static str,
}

const fn row(name: &'static str, wso2: Outcome, source: &'static str) -> Row {
    Row { name, wso2, filter: None, source }
}

const fn differs(name: &'static str, wso2: Outcome, filter: Outcome, why: &'static str, source: &'static str) -> Row {
    Row { name, wso2, filter: Some((filter, why)), source }
}

const TYPED: &str = "README: every claim the filter relies on must have its type (900901)";

const ROWS: &[Row] = &[
    row("no scopes on the resource, no scope claim", PASS, "DKVH: a mapping without scopes validates"),
    row("no scopes on the resource, other scopes", PASS, "DKVH: a mapping without scopes validates"),
    row("one scope, token has it", PASS, "DKVH: scopesSet.contains"),
    row("one scope, token has another", SCOPE, "DKVH INVALID_SCOPE; JWTV 900910"),
    row("one scope, no scope claim", SCOPE, "DJT: [\"default\"]"),
    row("one scope, null scope claim", SCOPE, "DJT: null is no String: [\"default\"]"),
    row("one scope, empty string", SCOPE, "DJT: \"\".split is [\"\"]"),
    row("one scope, spaces around and between", PASS, "DJT split(\" \"): empty parts match nothing"),
    row("one scope, duplicated", PASS, "DJT: a set of them"),
    row("one scope, case differs", SCOPE, "DKVH: HashSet.contains, case-sensitive"),
    row("one scope, tab-separated", SCOPE, "DJT splits at U+0020 only"),
    row("one scope, a prefix or extension of it", SCOPE, "DKVH: exact match"),
    row("several scopes, token has one", PASS, "DKVH: any one of the mapping's"),
    row("several scopes, token has all", PASS, "DKVH: any one of the mapping's"),
    row("several scopes, token has none", SCOPE, "DKVH INVALID_SCOPE"),
    row("scope array with it", PASS, "DJT: a List as is"),
    row("scope array without it", SCOPE, "DJT: a List as is"),
    differs("scope a number, unscoped resource", PASS, INVALID, TYPED, "DJT: [\"default\"]; no scopes asked"),
    differs("scope an object, scoped resource", SCOPE, INVALID, TYPED, "DJT: [\"default\"]: 900910"),
    row("scp only, default claim names", SCOPE, "DJT: `scope` only without scopes_claim: [\"default\"]"),
    row("scope lacks it, scp has it", SCOPE, "DJT: `scope` only"),
    row("`default` scope asked, no scope claim", PASS, "DJT: a token without the claim has [\"default\"]"),
    row("custom scope claim holds it", PASS, "DJT: tokenIssuer.getScopesClaim()"),
    row("custom scope claim: only `scope` holds it", SCOPE, "DJT: the configured claim only"),
    row("introspection: scope string with it", PASS, "AMKM: scope split at spaces"),
    row("introspection: scope string without it", SCOPE, "AMKM; DKVH INVALID_SCOPE"),
    row("introspection: no scope member", SCOPE, "AMKM: no scopes"),
    row("introspection: scp member only", SCOPE, "AMKM: IntrospectInfo's `scope` only"),
    differs(
        "JWT API key, scoped resource",
        PASS,
        SCOPE,
        "README: API keys carry no scopes",
        "AK: no scope validation for API keys",
    ),
    row("JWT API key, unscoped resource", PASS, "AK"),
    differs(
        "opaque API key, scoped resource",
        PASS,
        SCOPE,
        "README: API keys carry no scopes",
        "AK: WSO2's API keys pass scoped resources (its keys are JWTs)",
    ),
    row("OPTIONS resource with a scope, token lacks it", SCOPE, "DKVH: the OPTIONS mapping's scopes"),
    row("OPTIONS resource with a scope, token has it", PASS, "DKVH: the OPTIONS mapping's scopes"),
    row("HEAD resource with a scope, token lacks it", SCOPE, "DKVH: the HEAD mapping's scopes"),
    row("default-version path, token lacks the scope", SCOPE, "DKVH: `_default_` stripped"),
    row("default-version path, token has it", PASS, "DKVH: `_default_` stripped"),
    row("not subscribed and scope missing", FORBIDDEN, "JWTV: subscription before validateScopes"),
    row("subscription BLOCKED and scope missing", BLOCKED, "JWTV: subscription before validateScopes"),
    row("application token on a user-only resource, scope missing", WRONG_TYPE, "KVH: token type first"),
    row("user token on a user-only resource with the scope", PASS, "KVH; DKVH"),
    row("sandbox token on a production-only API, scope missing", SCOPE, "handlers before _sandbox_key_error_"),
];

fn config() -> Rc<Config> {
    let ec = |kid: &str| jwk("ec-p256.pem", Algorithm::ES256, kid);
    let client = |id: &str, km: &str, sandbox: bool| serde_json::json!({"id": id, "key_manager": km, "key_type": if sandbox { "SANDBOX" } else { "PRODUCTION" }});
    let resources = serde_json::json!([{"method": "GET", "path": "/items"},
        {"method": "GET", "path": "/menu", "scopes": ["read"]},
        {"method": "OPTIONS", "path": "/menu", "scopes": ["read"]},
        {"method": "HEAD", "path": "/menu", "scopes": ["read"]},
        {"method": "GET", "path": "/orders", "scopes": ["admin", "write"]},
        {"method": "GET", "path": "/def", "scopes": ["default"]},
        {"method": "GET", "path": "/mine", "scopes": ["read"], "user_token_only": true}]);
    let json = serde_json::json!({
        "key_managers": [
            {"name": "km", "issuer": ISS, "algorithms": ["ES256"], "jwks": {"keys": [ec("ec")]}},
            {"name": "km2", "issuer": ISS2, "algorithms": ["ES256"], "jwks": {"keys": [ec("ec2")]},
             "claims": {"scopes": ["roles"]}},
            {"name": "ikm", "issuer": "https://ikm",
             "introspection": {"cluster": "ikm", "client_id": "gw", "client_secret": "gw-secret"}}],
        "api_key_jwt": {"keys": [ec(ALIAS)], "algorithms": ["ES256"]},
        "apis": [
            {"name": "P", "context": "/p", "version": "1", "default_version": true,
             "security": ["oauth2", "api_key"], "endpoints": {"production": "prod", "sandbox": "sand"},
             "resources": resources},
            {"name": "Q", "context": "/q", "version": "1", "security": ["oauth2", "api_key"],
             "endpoints": {"production": "qprod"}, "resources": resources}],
        "applications": [
            {"id": "app-1", "name": "App", "owner": "alice",
             "client_ids": [client("c1", "km", false), client("s1", "km", true), client("r1", "km2", false),
                            client("i1", "ikm", false)],
             "api_keys": [{"sha256": crate::hashing::hex(&credential_hash(STATIC_KEY))}]},
            {"id": "app-u", "name": "U", "client_ids": [client("cu", "km", false)]},
            {"id": "app-b", "name": "B", "client_ids": [client("cb", "km", false)]}],
        "subscriptions": [{"application": "app-1", "api": "P:1"}, {"application": "app-1", "api": "Q:1"},
            {"application": "app-b", "api": "P:1", "state": "BLOCKED"}]
    });
    Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap())
}

/// One generated request: method, path, headers, and the introspection answer's members when the
/// credential is an opaque token.
struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    introspection: Option<Vec<(String, String)>>,
}

/// An access token of `client` from the key manager `iss` signs with `kid`, carrying `members`.
fn token(rng: &mut Rng, now: u64, (iss, kid): (&str, &str), client: &str, members: &[(&str, String)]) -> String {
    let mut claims = vec![("iss".to_string(), quoted(iss)), ("azp".into(), quoted(client))];
    claims.push(("exp".into(), (now + 60 + rng.below(3_600) as u64).to_string()));
    claims.push(("jti".into(), quoted(&format!("j-{}", rng.word()))));
    if rng.chance(2) {
        claims.push(("sub".into(), quoted("alice")));
    }
    for (name, value) in members {
        set(&mut claims, name, value.clone());
    }
    sign(&[("alg", quoted("ES256")), ("typ", quoted("JWT")), ("kid", quoted(kid))], &claims)
}

/// A space-separated scope string holding `scopes` in an order of the seed's.
fn spaced(rng: &mut Rng, scopes: &[&str]) -> String {
    let mut scopes = scopes.to_vec();
    for i in (1..scopes.len()).rev() {
        scopes.swap(i, rng.below(i + 1));
    }
    quoted(&scopes.join(" "))
}

/// Builds row `index`'s request.
fn request(index: usize, rng: &mut Rng, now: u64) -> Request {
    let km = (ISS, "ec");
    let bearer = |token: String| vec![("authorization".to_string(), format!("Bearer {token}"))];
    let query = if rng.chance(3) { "?x=1" } else { "" };
    let path = |resource: &str| format!("/p/1/{resource}{query}");
    let other = *rng.pick(&["write", "openid", "profile", "menu:read"]);
    let mut method = "GET";
    let mut introspection = None;
    let jwt = |rng: &mut Rng, resource: &str, scope: Option<String>| {
        let members: Vec<(&str, String)> = scope.into_iter().map(|s| ("scope", s)).collect();
        (path(resource), bearer(token(rng, now, km, "c1", &members)))
    };
    let (path, headers) = match ROWS[index].name {
        "no scopes on the resource, no scope claim" => jwt(rng, "items", None),
        "no scopes on the resource, other scopes" => {
            let scope = spaced(rng, &[other, "profile"]);
            jwt(rng, "items", Some(scope))
        }
        "one scope, token has it" => {
            let scope = spaced(rng, &["read", other]);
            jwt(rng, "menu", Some(scope))
        }
        "one scope, token has another" => jwt(rng, "menu", Some(quoted(other))),
        "one scope, no scope claim" => jwt(rng, "menu", None),
        "one scope, null scope claim" => jwt(rng, "menu", Some("null".into())),
        "one scope, empty string" => {
            let scope = quoted(rng.pick::<&str>(&["", " ", "   "]));
            jwt(rng, "menu", Some(scope))
        }
        "one scope, spaces around and between" => jwt(rng, "menu", Some(quoted("  openid   read  "))),
        "one scope, duplicated" => jwt(rng, "menu", Some(quoted("read read"))),
        "one scope, case differs" => {
            let scope = quoted(rng.pick::<&str>(&["READ", "Read", "rEAD"]));
            jwt(rng, "menu", Some(scope))
        }
        "one scope, tab-separated" => {
            let scope = quoted(rng.pick::<&str>(&["read\twrite", "openid\tread"]));
            jwt(rng, "menu", Some(scope))
        }
        "one scope, a prefix or extension of it" => {
            let scope = quoted(rng.pick::<&str>(&["rea", "read:all", "reads", "read,write"]));
            jwt(rng, "menu", Some(scope))
        }
        "several scopes, token has one" => {
            let one = *rng.pick(&["admin", "write"]);
            let scope = spaced(rng, &[one, other]);
            jwt(rng, "orders", Some(scope))
        }
        "several scopes, token has all" => {
            let scope = spaced(rng, &["admin", "write"]);
            jwt(rng, "orders", Some(scope))
        }
        "several scopes, token has none" => {
            let scope = quoted(rng.pick::<&str>(&["read", "admins", ""]));
            jwt(rng, "orders", Some(scope))
        }
        "scope array with it" => jwt(rng, "menu", Some(format!(r#"["{other}","read"]"#))),
        "scope array without it" => jwt(rng, "menu", Some(format!(r#"["{other}","READ"]"#))),
        "scope a number, unscoped resource" => {
            let scope = rng.pick(&["5", "0", "1.5"]).to_string();
            jwt(rng, "items", Some(scope))
        }
        "scope an object, scoped resource" => jwt(rng, "menu", Some(r#"{"read":true}"#.into())),
        "scp only, default claim names" => {
            let scp = if rng.chance(2) { quoted("read") } else { r#"["read"]"#.to_string() };
            (path("menu"), bearer(token(rng, now, km, "c1", &[("scp", scp)])))
        }
        "scope lacks it, scp has it" => {
            (path("menu"), bearer(token(rng, now, km, "c1", &[("scope", quoted(other)), ("scp", quoted("read"))])))
        }
        "`default` scope asked, no scope claim" => jwt(rng, "def", None),
        "custom scope claim holds it" => {
            let roles = if rng.chance(2) { quoted("read") } else { r#"["read"]"#.to_string() };
            (path("menu"), bearer(token(rng, now, (ISS2, "ec2"), "r1", &[("roles", roles)])))
        }
        "custom scope claim: only `scope` holds it" => {
            (path("menu"), bearer(token(rng, now, (ISS2, "ec2"), "r1", &[("scope", quoted("read"))])))
        }
        name @ ("introspection: scope string with it"
        | "introspection: scope string without it"
        | "introspection: no scope member"
        | "introspection: scp member only") => {
            let mut members = vec![
                ("active".to_string(), "true".to_string()),
                ("client_id".into(), quoted("i1")),
                ("exp".into(), (now + 3_600).to_string()),
            ];
            match name {
                "introspection: scope string with it" => members.push(("scope".into(), spaced(rng, &["read", other]))),
                "introspection: scope string without it" => members.push(("scope".into(), quoted(other))),
                "introspection: scp member only" => members.push(("scp".into(), quoted("read"))),
                _ => {}
            }
            introspection = Some(members);
            (path("menu"), bearer(format!("{:032x}", rng.word())))
        }
        "JWT API key, scoped resource" => {
            (path("menu"), vec![("apikey".into(), api_key(rng, now, "P", &api_key_header(), &|_| {}))])
        }
        "JWT API key, unscoped resource" => {
            (path("items"), vec![("apikey".into(), api_key(rng, now, "P", &api_key_header(), &|_| {}))])
        }
        "opaque API key, scoped resource" => (path("menu"), vec![("apikey".into(), STATIC_KEY.into())]),
        "OPTIONS resource with a scope, token lacks it" => {
            method = "OPTIONS";
            jwt(rng, "menu", Some(quoted(other)))
        }
        "OPTIONS resource with a scope, token has it" => {
            method = "OPTIONS";
            jwt(rng, "menu", Some(quoted("read")))
        }
        "HEAD resource with a scope, token lacks it" => {
            method = "HEAD";
            jwt(rng, "menu", None)
        }
        "default-version path, token lacks the scope" => {
            (format!("/p/menu{query}"), bearer(token(rng, now, km, "c1", &[("scope", quoted(other))])))
        }
        "default-version path, token has it" => {
            (format!("/p/menu{query}"), bearer(token(rng, now, km, "c1", &[("scope", quoted("read"))])))
        }
        "not subscribed and scope missing" => (path("menu"), bearer(token(rng, now, km, "cu", &[]))),
        "subscription BLOCKED and scope missing" => (path("menu"), bearer(token(rng, now, km, "cb", &[]))),
        "application token on a user-only resource, scope missing" => jwt(rng, "mine", Some(quoted(other))),
        "user token on a user-only resource with the scope" => {
            let members = [("scope", quoted("read")), ("aut", quoted("APPLICATION_USER"))];
            (path("mine"), bearer(token(rng, now, km, "c1", &members)))
        }
        "sandbox token on a production-only API, scope missing" => {
            (format!("/q/1/menu{query}"), bearer(token(rng, now, km, "s1", &[("scope", quoted(other))])))
        }
        other => panic!("row {other} has no request"),
    };
    Request { method, path, headers, introspection }
}

/// Sends `request` through a stream on `worker` (answering its introspection call, if it makes
/// one), returning what it answered; a scope refusal must carry the seed's message and the
/// `insufficient_scope` challenge, and no other answer that challenge.
fn send(config: &Rc<Config>, worker: &Rc<RefCell<Worker>>, request: &Request, now: u64) -> Result<Outcome, String> {
    let mut pairs = vec![(":method", request.method), (":path", request.path.as_str()), (":authority", "gw")];
    pairs.extend(request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut host = FakeHost::request(&pairs);
    host.now = now;
    host.properties.insert("source.address".into(), b"192.0.2.7:4000".to_vec());
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    let mut flow = stream.on_request_headers(&mut host, true);
    if flow == Flow::Waiting {
        let members = request.introspection.as_ref().ok_or("waiting without an introspection answer")?;
        let (cluster, _, _) = host.dispatched.last().ok_or("waiting, no call")?;
        if cluster != "ikm" {
            return Err(format!("a call to {cluster}"));
        }
        let call = host.dispatched.len() as u32;
        stream.on_call_response(&mut host, call, Answer::Http { status: 200, body: object(members).into_bytes() });
        flow = if host.sent.is_some() { Flow::Answered } else { Flow::Continue };
    }
    match flow {
        Flow::Continue => {
            let cluster = host.req("x-apim-cluster").to_string();
            ["prod", "sand", "qprod"].into_iter().find(|c| *c == cluster).map(Pass).ok_or(format!("cluster {cluster}"))
        }
        Flow::Answered => {
            let (status, headers, body) = host.sent.clone().ok_or("answered, nothing sent")?;
            let body = String::from_utf8_lossy(&body).to_string();
            let code = *host.counted.last().ok_or(format!("no fault counted: {body}"))?;
            let challenge = headers
                .iter()
                .any(|(name, value)| name == "www-authenticate" && value.contains(r#"error="insufficient_scope""#));
            if (code == 900910) != challenge || (code == 900910 && !body.contains(SCOPE_MESSAGE)) {
                return Err(format!("{code}: challenge {challenge}, body {body}"));
            }
            Ok(F(code, status, leak(body)))
        }
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn scope_and_resource_authorization_answer_as_the_audit_table_says() {
    let seed = std::env::var("SCOPE_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x05c0_9ea1_u64);
    let mut rng = Rng::new(seed);
    let config = config();
    let mut codes: std::collections::BTreeMap<u32, usize> = Default::default();
    let mut failures = Vec::new();
    let mut requests = 0;
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        // Each row once a round, in an order of the seed's; each request twice (the second from
        // the worker's verified-credential and introspection caches).
        let mut order: Vec<usize> = (0..ROWS.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for index in order {
            let row = &ROWS[index];
            let now = NOW + rng.below(1_000_000) as u64;
            let request = request(index, &mut rng, now);
            let want = row.filter.map_or(row.wso2, |(answer, _)| answer);
            for attempt in 0..2 {
                requests += 1;
                match send(&config, &worker, &request, now) {
                    Ok(sent) if matches(sent, want) => {
                        *codes.entry(if let F(code, _, _) = sent { code } else { 0 }).or_default() += 1
                    }
                    Ok(sent) => {
                        failures.push(format!("round {round} {}#{attempt}: want {want:?}, sent {sent:?}", row.name))
                    }
                    Err(why) => failures.push(format!("round {round} {}#{attempt}: {why}", row.name)),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed} (SCOPE_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    // Every decision class occurs: let through, and each refusal the table names.
    for code in [0, 900901, 900905, 900907, 900908, 900910] {
        assert!(codes.get(&code).copied().unwrap_or(0) > 0, "seed {seed}: no {code}: {codes:?}");
    }
    assert_eq!(requests, ROUNDS * 2 * ROWS.len());
}

/// The rows where the filter answers otherwise than WSO2 are these, each with its reason and
/// source: a new one must be added here, on purpose. None lets through what WSO2 refuses.
#[test]
fn the_scope_audit_table_names_every_difference() {
    let differing: Vec<&str> = ROWS.iter().filter(|row| row.filter.is_some()).map(|row| row.name).collect();
    assert_eq!(
        differing,
        [
            "scope a number, unscoped resource",
            "scope an object, scoped resource",
            "JWT API key, scoped resource",
            "opaque API key, scoped resource",
        ]
    );
    for row in ROWS {
        assert!(!row.source.is_empty() && row.filter.is_none_or(|(_, why)| !why.is_empty()), "{}", row.name);
        if let Some((answer, _)) = row.filter {
            assert_ne!(answer, row.wso2, "{}: a difference that is none", row.name);
        }
    }
    let names: std::collections::BTreeSet<&str> = ROWS.iter().map(|row| row.name).collect();
    assert_eq!(names.len(), ROWS.len(), "row names are unique");
}
