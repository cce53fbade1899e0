//! A seeded audit of JWT access-token and JWT API-key validation against WSO2 API Manager 4.x's
//! gateway: one row per decision, each with WSO2's answer (code, status, description; the source
//! that decides it), driven through the stream's real request path and compared with the table.
//! Where the filter answers otherwise on purpose the row says so and why. Seed: `JWT_AUDIT_SEED`
//! (printed on failure).
//!
//! Sources (wso2/carbon-apimgt, `components/apimgt/`):
//! - OAuth = `org.wso2.carbon.apimgt.gateway/.../handlers/security/oauth/OAuthAuthenticator.java`
//!   (commit b479eb3b60a7e9d579fef4a3b855ddeb5d6b1048): `extractCustomerKeyFromAuthHeader` (the
//!   exact `Bearer`, split on spaces, quotes removed), the dot count, the key manager by issuer.
//! - JWTV = `.../handlers/security/jwt/JWTValidator.java` (b34f582a775628c2e7e0a09f095b64d93819ffe3):
//!   revocation, `validateSubscriptionUsingKeyManager` (no consumer key: 900908), `validateScopes`.
//! - IMPL = `org.wso2.carbon.apimgt.common.gateway/.../jwt/JWTValidatorImpl.java`
//!   (1d2ffa8dbbfc1eb2b8a2b9d8bb2a7c074c13a599): signature by `kid`, `validateTokenExpiry`
//!   (`exp == null ||` Nimbus `DateUtils.isAfter(exp, now, skew)`: `exp + skew > now`, in ms); no
//!   `nbf`, `iat` or audience check.
//! - AKU = `org.wso2.carbon.apimgt.gateway/.../utils/ApiKeyAuthenticatorUtils.java`
//!   (4a2175910227530606bd4e9937ada6501cae5cae) and `.../apikey/ApiKeyAuthenticator.java`
//!   (e395e71e02f34d302a40436106484e61ba34a0dc): `typ` JWT, `kid`, `validateAPIKeyRestrictions`,
//!   `validateAPISubscription`.
//! - AAH = `.../handlers/security/APIAuthenticationHandler.java`: authenticators in priority order
//!   (OAuth 10, API key 30), the next tried after a failure.
//! - KVH = `org.wso2.carbon.apimgt.keymgt/.../handlers/AbstractKeyValidationHandler.java`:
//!   subscription states (BLOCKED 900907, ON_HOLD 900909, PROD_ONLY_BLOCKED for production keys).

use super::claims_model::{object, quoted};
use super::*;
use crate::auth::keys::testkeys::{jwk, sign_raw};
use crate::host::fuzz::Rng;
use jsonwebtoken::Algorithm;

const NOW: u64 = 1_700_000_000;
pub(super) const ISS: &str = "https://km.example/oauth2/token";
pub(super) const ALIAS: &str = "gateway_certificate_alias";

/// What a request gets: let through to a cluster, or a fault (code, status, description part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Pass(&'static str),
    Fault(u32, u16, &'static str),
}
use self::Outcome::{Fault as F, Pass};

const MISSING: Outcome = F(900902, 401, "Make sure your API invocation call has a header");
const INVALID: Outcome = F(900901, 401, "Make sure you have provided the correct security credentials");
const FORBIDDEN: Outcome = F(900908, 403, "API Subscription validation failed");
const RESTRICTED: Outcome = F(900908, 403, "Access forbidden for the invocations");
const SCOPE: Outcome = F(900910, 403, "Scope validation failed");
const BLOCKED: Outcome = F(900907, 401, "API Subscription is blocked");
const INACTIVE: Outcome = F(900909, 401, "inaccessible/unavailable state");
const NO_SANDBOX: Outcome = F(900901, 403, "Sandbox key offered to the API with no sandbox endpoint");

/// How the filter's answer stands to WSO2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    AsWso2,
    /// The filter refuses what WSO2 lets through, or with another code: reported, kept.
    Stricter,
    /// The filter lets through what WSO2 refuses: reported (never a credential WSO2 would not
    /// take from a client at all: only the form of its header or a second of `exp`).
    Lenient,
}

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

const ROWS: &[Row] = &[
    row("valid token", Pass("prod"), "JWTV authenticate"),
    row("missing Authorization", MISSING, "OAuth: no token, API_AUTH_MISSING_CREDENTIALS"),
    row("Authorization: Basic", MISSING, "OAuth: no `Bearer` segment, no token: 900902"),
    row("Authorization: Bearer, no token", MISSING, "OAuth: a single element, no token: 900902"),
    differs(
        "bearer (lower case) and a valid token",
        MISSING,
        Pass("prod"),
        "RFC 7235: the scheme is case-insensitive; the token itself is valid",
        "OAuth: `consumerKeyHeaderSegment.equals` is case-sensitive: no token, 900902",
    ),
    row("Bearer with extra spaces", Pass("prod"), "OAuth: empty elements skipped"),
    differs(
        "Bearer \"token\" (quoted)",
        Pass("prod"),
        INVALID,
        "a quoted token is no RFC 6750 b64token",
        "OAuth: removeLeadingAndTrailing drops the quotes",
    ),
    differs(
        "Bearer token, Basic other",
        Pass("prod"),
        INVALID,
        "one credential per header; whitespace in a token is malformed",
        "OAuth: split on `,`, the Bearer part taken",
    ),
    row("opaque token, no introspection", INVALID, "OAuth: no dot, key validation service: invalid"),
    row("one dot", INVALID, "OAuth: countMatches(DOT) != 2: 900901"),
    row("bad signature", INVALID, "IMPL validateSignature false"),
    row("unknown kid", INVALID, "IMPL: JWKS refetched, kid still absent: false"),
    row("unknown issuer", INVALID, "OAuth: no JWT validator, opaque validation fails"),
    row("expired beyond skew", INVALID, "IMPL validateTokenExpiry false: 900901"),
    row("exp within skew", Pass("prod"), "IMPL: exp + skew > now"),
    differs(
        "exp + skew == now",
        INVALID,
        Pass("prod"),
        "README: as Envoy's jwt_authn, refused from exp + skew + 1 (whole seconds)",
        "IMPL: Nimbus isAfter is strict, in ms",
    ),
    differs(
        "nbf beyond skew",
        Pass("prod"),
        INVALID,
        "README: nbf enforced, as Envoy's jwt_authn",
        "IMPL: nbf not read",
    ),
    row("iat in the future", Pass("prod"), "IMPL: iat not compared"),
    row("any aud (no audiences configured)", Pass("prod"), "IMPL: no audience check"),
    differs(
        "no exp",
        Pass("prod"),
        INVALID,
        "README: an access token must carry exp (a token valid forever)",
        "IMPL: exp == null is valid",
    ),
    row("API key as a bearer token", INVALID, "OAuth: an API key is no access token"),
    row("scope missing for a scoped resource", SCOPE, "JWTV validateScopes: 900910"),
    row("scope among others, as a string", Pass("prod"), "DefaultJWTTransformer: split at spaces"),
    row("scopes as an array", Pass("prod"), "DefaultJWTTransformer: a list taken as is"),
    row("no consumer key claim", FORBIDDEN, "JWTV validateSubscriptionUsingKeyManager: 900908"),
    row("application not subscribed", FORBIDDEN, "KVH validateSubscription: 900908"),
    row("subscription BLOCKED", BLOCKED, "KVH: API_BLOCKED 900907"),
    row("PROD_ONLY_BLOCKED, production token", BLOCKED, "KVH: production key, 900907"),
    row("PROD_ONLY_BLOCKED, sandbox token", Pass("sand"), "KVH: a sandbox key passes"),
    row("subscription ON_HOLD", INACTIVE, "KVH: SUBSCRIPTION_INACTIVE 900909"),
    row("sandbox token, production-only API", NO_SANDBOX, "_sandbox_key_error_ sequence (contract)"),
    row("open resource, invalid token", Pass("prod"), "OAuth: AUTH_NO_AUTHENTICATION, no validation"),
    row(
        "invalid token and a valid API key",
        Pass("prod"),
        "AAH isAuthenticate: OAuth fails and goes on; API key passes",
    ),
    row("unsubscribed token and a valid API key", Pass("prod"), "AAH: OAuth's 900908 goes on to the API key"),
    row("invalid token and an API key for another API", FORBIDDEN, "AAH getError: the last mandatory fault"),
    row("unsubscribed token and an expired API key", INVALID, "AAH getError: the API key's 900901, not 900908"),
    row("valid token and a garbage API key", Pass("prod"), "AAH: OAuth succeeds first"),
    row("API key, valid", Pass("prod"), "AKU"),
    row("API key, no kid", INVALID, "AKU isAPIKey: kid required"),
    row("API key, typ not JWT", INVALID, "AKU isAPIKey: typ JWT required"),
    row("API key, expired", INVALID, "ApiKeyAuthenticator isJwtTokenExpired: 900901"),
    row("API key, bad signature", INVALID, "AKU verifyAPIKeySignature"),
    row("API key, permittedIP mismatch", RESTRICTED, "AKU validateAPIKeyRestrictions"),
    row("API key, permittedReferer mismatch", RESTRICTED, "AKU validateAPIKeyRestrictions"),
    row("API key, no Referer with permittedReferer", RESTRICTED, "AKU: no referer, 900908"),
    row("API key for another API", FORBIDDEN, "GatewayUtils.validateAPISubscription: 900908"),
    row("API key SANDBOX, production-only API", NO_SANDBOX, "_sandbox_key_error_ sequence (contract)"),
    row("access token as an API key", INVALID, "AKU isAPIKey: GatewayUtils.isAPIKey false"),
];

fn config(skew: u64) -> Rc<Config> {
    let ec = |kid: &str| jwk("ec-p256.pem", Algorithm::ES256, kid);
    let client = |id: &str, sandbox: bool| serde_json::json!({"id": id, "key_manager": "km", "key_type": if sandbox { "SANDBOX" } else { "PRODUCTION" }});
    let app = |id: &str, clients: Vec<serde_json::Value>| serde_json::json!({"id": id, "name": id, "owner": "alice", "client_ids": clients});
    let resources = serde_json::json!([{"method": "GET", "path": "/items"},
        {"method": "GET", "path": "/menu", "scopes": ["read"]}, {"method": "GET", "path": "/open", "security": []}]);
    let json = serde_json::json!({
        "key_managers": [{"name": "km", "issuer": ISS, "clock_skew_s": skew, "algorithms": ["ES256"],
            "claims": {"client_id": ["azp"], "scopes": ["scope"]}, "jwks": {"keys": [ec("ec")]}}],
        "api_key_jwt": {"keys": [ec(ALIAS)], "algorithms": ["ES256"], "clock_skew_s": skew},
        "apis": [
            {"name": "P", "context": "/p", "version": "1", "security": ["oauth2", "api_key"],
             "endpoints": {"production": "prod", "sandbox": "sand"}, "resources": resources},
            {"name": "Q", "context": "/q", "version": "1", "security": ["oauth2", "api_key"],
             "endpoints": {"production": "qprod"}, "resources": resources}],
        "applications": [app("app-1", vec![client("c1", false), client("s1", true)]),
            app("app-b", vec![client("cb", false)]), app("app-p", vec![client("cp", false), client("sp", true)]),
            app("app-h", vec![client("ch", false)]), app("app-u", vec![client("cu", false)])],
        "subscriptions": [{"application": "app-1", "api": "P:1"}, {"application": "app-1", "api": "Q:1"},
            {"application": "app-b", "api": "P:1", "state": "BLOCKED"},
            {"application": "app-p", "api": "P:1", "state": "PROD_ONLY_BLOCKED"},
            {"application": "app-h", "api": "P:1", "state": "ON_HOLD"}]
    });
    Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap())
}

/// A change to a credential's claims.
pub(super) type Edit<'a> = &'a dyn Fn(&mut Vec<(String, String)>);

/// The parts of one generated request.
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    address: &'static str,
}

pub(super) fn sign(header: &[(&str, String)], claims: &[(String, String)]) -> String {
    let header: Vec<(String, String)> = header.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    sign_raw(&object(&header), &object(claims), "ec-p256.pem", Algorithm::ES256)
}

/// `a`'s header and signature around `b`'s claims: a signature that does not verify.
fn forged(a: &str, b: &str) -> String {
    let parts_a: Vec<&str> = a.split('.').collect();
    let parts_b: Vec<&str> = b.split('.').collect();
    format!("{}.{}.{}", parts_a[0], parts_b[1], parts_a[2])
}

/// An access token of `client`, with the claims changed by `edit`.
fn token(rng: &mut Rng, now: u64, client: &str, edit: Edit<'_>) -> String {
    let mut claims = vec![("iss".to_string(), quoted(ISS)), ("azp".into(), quoted(client))];
    claims.push(("exp".into(), (now + 60 + rng.below(3_600) as u64).to_string()));
    claims.push(("jti".into(), quoted(&format!("j-{}", rng.word()))));
    if rng.chance(2) {
        claims.push(("sub".into(), quoted("alice")));
    }
    if rng.chance(2) {
        claims.push(("iat".into(), (now - rng.below(600) as u64).to_string()));
    }
    edit(&mut claims);
    let header = [("alg", quoted("ES256")), ("typ", quoted("JWT")), ("kid", quoted("ec"))];
    sign(&header, &claims)
}

pub(super) fn set(claims: &mut Vec<(String, String)>, name: &str, value: String) {
    claims.retain(|(n, _)| n != name);
    claims.push((name.to_string(), value));
}

/// A JWT API key of an application the directory does not know, subscribed to `api`.
pub(super) fn api_key(rng: &mut Rng, now: u64, api: &str, header: &[(&str, String)], edit: Edit<'_>) -> String {
    let mut claims = vec![
        ("iss".to_string(), quoted("https://apim/oauth2/token")),
        ("sub".into(), quoted("alice")),
        ("keytype".into(), quoted("PRODUCTION")),
        ("token_type".into(), quoted("apiKey")),
        ("jti".into(), quoted(&format!("k-{}", rng.word()))),
        ("application".into(), r#"{"uuid":"jwt-app","name":"JwtApp","owner":"alice","tier":"Unlimited"}"#.into()),
        (
            "subscribedAPIs".into(),
            format!(
                r#"[{{"name":"{api}","context":"/{}/1","version":"1","subscriptionTier":"Unlimited"}}]"#,
                api.to_lowercase()
            ),
        ),
    ];
    if rng.chance(2) {
        claims.push(("exp".into(), (now + 600).to_string()));
    }
    edit(&mut claims);
    sign(header, &claims)
}

pub(super) fn api_key_header() -> Vec<(&'static str, String)> {
    vec![("alg", quoted("ES256")), ("typ", quoted("JWT")), ("kid", quoted(ALIAS))]
}

/// Builds row `index`'s request.
fn request(index: usize, rng: &mut Rng, now: u64, skew: u64) -> Request {
    let bearer = |token: &str| vec![("authorization".to_string(), format!("Bearer {token}"))];
    let query = if rng.chance(3) { "?x=1" } else { "" };
    let path = |resource: &str| format!("/p/1/{resource}{query}");
    let mut address = "192.0.2.7:4000";
    let name = ROWS[index].name;
    let items = path("items");
    let (path, headers) = match name {
        "valid token" => (items, bearer(&token(rng, now, "c1", &|_| {}))),
        "missing Authorization" => (items, vec![]),
        "Authorization: Basic" => (items, vec![("authorization".into(), "Basic YWxpY2U6c2VjcmV0".into())]),
        "Authorization: Bearer, no token" => (items, vec![("authorization".into(), "Bearer".into())]),
        "bearer (lower case) and a valid token" => {
            (items, vec![("authorization".into(), format!("bearer {}", token(rng, now, "c1", &|_| {})))])
        }
        "Bearer with extra spaces" => {
            (items, vec![("authorization".into(), format!("Bearer   {}", token(rng, now, "c1", &|_| {})))])
        }
        "Bearer \"token\" (quoted)" => {
            (items, vec![("authorization".into(), format!("Bearer \"{}\"", token(rng, now, "c1", &|_| {})))])
        }
        "Bearer token, Basic other" => (
            items,
            vec![(
                "authorization".into(),
                format!("Bearer {}, Basic YWxpY2U6c2VjcmV0", token(rng, now, "c1", &|_| {})),
            )],
        ),
        "opaque token, no introspection" => (items, bearer(&format!("{:032x}", rng.word()))),
        "one dot" => {
            let token = token(rng, now, "c1", &|_| {});
            (items, bearer(token.rsplit_once('.').unwrap().0))
        }
        "bad signature" => {
            let (a, b) = (token(rng, now, "c1", &|_| {}), token(rng, now, "c1", &|_| {}));
            (items, bearer(&forged(&a, &b)))
        }
        "unknown kid" => {
            let claims = vec![
                ("iss".to_string(), quoted(ISS)),
                ("azp".into(), quoted("c1")),
                ("exp".into(), (now + 600).to_string()),
            ];
            (
                items,
                bearer(&sign(&[("alg", quoted("ES256")), ("typ", quoted("JWT")), ("kid", quoted("other"))], &claims)),
            )
        }
        "unknown issuer" => {
            (items, bearer(&token(rng, now, "c1", &|c| set(c, "iss", quoted("https://other.example")))))
        }
        "expired beyond skew" => {
            let exp = now - skew - 1 - rng.below(1_000) as u64;
            (items, bearer(&token(rng, now, "c1", &|c| set(c, "exp", exp.to_string()))))
        }
        "exp within skew" => {
            let exp = if skew == 0 { now + 1 + rng.below(100) as u64 } else { now - rng.below(skew as usize) as u64 };
            (items, bearer(&token(rng, now, "c1", &|c| set(c, "exp", exp.to_string()))))
        }
        "exp + skew == now" => (items, bearer(&token(rng, now, "c1", &|c| set(c, "exp", (now - skew).to_string())))),
        "nbf beyond skew" => {
            let nbf = now + skew + 1 + rng.below(1_000) as u64;
            (items, bearer(&token(rng, now, "c1", &|c| set(c, "nbf", nbf.to_string()))))
        }
        "iat in the future" => {
            let iat = now + 1 + rng.below(100_000) as u64;
            (items, bearer(&token(rng, now, "c1", &|c| set(c, "iat", iat.to_string()))))
        }
        "any aud (no audiences configured)" => {
            let aud = if rng.chance(2) { quoted("someone-else") } else { r#"["a","b"]"#.to_string() };
            (items, bearer(&token(rng, now, "c1", &|c| set(c, "aud", aud.clone()))))
        }
        "no exp" => (items, bearer(&token(rng, now, "c1", &|c| c.retain(|(n, _)| n != "exp")))),
        "API key as a bearer token" => (items, bearer(&api_key(rng, now, "P", &api_key_header(), &|_| {}))),
        "scope missing for a scoped resource" => {
            let scope = *rng.pick(&["", "write", "reader admin"]);
            (path("menu"), bearer(&token(rng, now, "c1", &|c| set(c, "scope", quoted(scope)))))
        }
        "scope among others, as a string" => {
            (path("menu"), bearer(&token(rng, now, "c1", &|c| set(c, "scope", quoted("openid read  write")))))
        }
        "scopes as an array" => {
            (path("menu"), bearer(&token(rng, now, "c1", &|c| set(c, "scope", r#"["write","read"]"#.into()))))
        }
        "no consumer key claim" => (items, bearer(&token(rng, now, "c1", &|c| c.retain(|(n, _)| n != "azp")))),
        "application not subscribed" => (items, bearer(&token(rng, now, "cu", &|_| {}))),
        "subscription BLOCKED" => (items, bearer(&token(rng, now, "cb", &|_| {}))),
        "PROD_ONLY_BLOCKED, production token" => (items, bearer(&token(rng, now, "cp", &|_| {}))),
        "PROD_ONLY_BLOCKED, sandbox token" => (items, bearer(&token(rng, now, "sp", &|_| {}))),
        "subscription ON_HOLD" => (items, bearer(&token(rng, now, "ch", &|_| {}))),
        "sandbox token, production-only API" => ("/q/1/items".to_string(), bearer(&token(rng, now, "s1", &|_| {}))),
        "open resource, invalid token" => (path("open"), bearer("not-a-token")),
        "invalid token and a valid API key" => {
            let mut headers = bearer("not-a-token");
            headers.push(("apikey".into(), api_key(rng, now, "P", &api_key_header(), &|_| {})));
            (items, headers)
        }
        "unsubscribed token and a valid API key" => {
            let mut headers = bearer(&token(rng, now, "cu", &|_| {}));
            headers.push(("apikey".into(), api_key(rng, now, "P", &api_key_header(), &|_| {})));
            (items, headers)
        }
        "invalid token and an API key for another API" => {
            let mut headers = bearer("not-a-token");
            headers.push(("apikey".into(), api_key(rng, now, "Q", &api_key_header(), &|_| {})));
            (items, headers)
        }
        "unsubscribed token and an expired API key" => {
            let exp = now - skew - 1 - rng.below(1_000) as u64;
            let mut headers = bearer(&token(rng, now, "cu", &|_| {}));
            headers.push((
                "apikey".into(),
                api_key(rng, now, "P", &api_key_header(), &|c| set(c, "exp", exp.to_string())),
            ));
            (items, headers)
        }
        "valid token and a garbage API key" => {
            let mut headers = bearer(&token(rng, now, "c1", &|_| {}));
            headers.push(("apikey".into(), "garbage".into()));
            (items, headers)
        }
        "API key, valid" => (items, vec![("apikey".into(), api_key(rng, now, "P", &api_key_header(), &|_| {}))]),
        "API key, no kid" => {
            let header = [("alg", quoted("ES256")), ("typ", quoted("JWT"))];
            (items, vec![("apikey".into(), api_key(rng, now, "P", &header, &|_| {}))])
        }
        "API key, typ not JWT" => {
            let typ = rng.pick(&[None, Some("at+jwt"), Some("JOSE")]);
            let mut header = vec![("alg", quoted("ES256")), ("kid", quoted(ALIAS))];
            if let Some(typ) = typ {
                header.push(("typ", quoted(typ)));
            }
            (items, vec![("apikey".into(), api_key(rng, now, "P", &header, &|_| {}))])
        }
        "API key, expired" => {
            let exp = now - skew - 1 - rng.below(1_000) as u64;
            (
                items,
                vec![("apikey".into(), api_key(rng, now, "P", &api_key_header(), &|c| set(c, "exp", exp.to_string())))],
            )
        }
        "API key, bad signature" => {
            let a = api_key(rng, now, "P", &api_key_header(), &|_| {});
            let b = api_key(rng, now, "P", &api_key_header(), &|_| {});
            (items, vec![("apikey".into(), forged(&a, &b))])
        }
        "API key, permittedIP mismatch" => {
            address = "198.51.100.9:4000";
            let edit = |c: &mut Vec<(String, String)>| set(c, "permittedIP", quoted("192.0.2.0/24, 203.0.113.5"));
            (items, vec![("apikey".into(), api_key(rng, now, "P", &api_key_header(), &edit))])
        }
        "API key, permittedReferer mismatch" => {
            let edit = |c: &mut Vec<(String, String)>| set(c, "permittedReferer", quoted("https://app.example/*"));
            let key = api_key(rng, now, "P", &api_key_header(), &edit);
            (items, vec![("apikey".into(), key), ("referer".into(), "https://evil.example/".into())])
        }
        "API key, no Referer with permittedReferer" => {
            let edit = |c: &mut Vec<(String, String)>| set(c, "permittedReferer", quoted("https://app.example/*"));
            (items, vec![("apikey".into(), api_key(rng, now, "P", &api_key_header(), &edit))])
        }
        "API key for another API" => {
            (items, vec![("apikey".into(), api_key(rng, now, "Q", &api_key_header(), &|_| {}))])
        }
        "API key SANDBOX, production-only API" => {
            let edit = |c: &mut Vec<(String, String)>| set(c, "keytype", quoted("SANDBOX"));
            ("/q/1/items".to_string(), vec![("apikey".into(), api_key(rng, now, "Q", &api_key_header(), &edit))])
        }
        "access token as an API key" => {
            let header = [("alg", quoted("ES256")), ("typ", quoted("JWT")), ("kid", quoted(ALIAS))];
            let claims = vec![
                ("iss".to_string(), quoted(ISS)),
                ("azp".into(), quoted("c1")),
                ("exp".into(), (now + 600).to_string()),
            ];
            (items, vec![("apikey".into(), sign(&header, &claims))])
        }
        other => panic!("row {other} has no request"),
    };
    Request { path, headers, address }
}

/// Sends `request` through a stream on `worker`, returning what it answered.
fn send(config: &Rc<Config>, worker: &Rc<RefCell<Worker>>, request: &Request, now: u64) -> Result<Outcome, String> {
    let mut pairs = vec![(":method", "GET"), (":path", request.path.as_str()), (":authority", "gw")];
    pairs.extend(request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut host = FakeHost::request(&pairs);
    host.now = now;
    host.properties.insert("source.address".into(), request.address.as_bytes().to_vec());
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    match stream.on_request_headers(&mut host, true) {
        Flow::Continue => {
            let cluster = host.req("x-apim-cluster").to_string();
            ["prod", "sand", "qprod"].into_iter().find(|c| *c == cluster).map(Pass).ok_or(format!("cluster {cluster}"))
        }
        Flow::Answered => {
            let (status, _, body) = host.sent.clone().ok_or("answered, nothing sent")?;
            let body = String::from_utf8_lossy(&body).to_string();
            let code = *host.counted.last().ok_or(format!("no fault counted: {body}"))?;
            Ok(F(code, status, leak(body)))
        }
        other => Err(format!("{other:?}")),
    }
}

/// A body kept for comparison (the test's short life).
pub(super) fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Whether what was sent is the answer the table wants: the same cluster, or the same code and
/// status with a body holding the description's part.
pub(super) fn matches(sent: Outcome, want: Outcome) -> bool {
    match (sent, want) {
        (Pass(a), Pass(b)) => a == b,
        (F(code, status, body), F(want_code, want_status, part)) => {
            code == want_code && status == want_status && body.contains(part)
        }
        _ => false,
    }
}

#[test]
fn jwt_and_api_key_validation_answers_as_the_audit_table_says() {
    let seed = std::env::var("JWT_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x4a57_a0d1_u64);
    let mut rng = Rng::new(seed);
    let mut classes: std::collections::BTreeMap<Class, usize> = Default::default();
    let mut failures = Vec::new();
    let mut requests = 0;
    for round in 0..8 {
        let skew = *rng.pick(&[0, 30, 60, 300]);
        let config = config(skew);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        // Each row once a round, in an order of the seed's; each request twice (the second from
        // the worker's verified-credential caches).
        let mut order: Vec<usize> = (0..ROWS.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for index in order {
            let row = &ROWS[index];
            let now = NOW + rng.below(1_000_000) as u64;
            let request = request(index, &mut rng, now, skew);
            let want = row.filter.map_or(row.wso2, |(answer, _)| answer);
            for attempt in 0..2 {
                requests += 1;
                match send(&config, &worker, &request, now) {
                    Ok(sent) if matches(sent, want) => {}
                    Ok(sent) => failures.push(format!(
                        "round {round} (skew {skew}) {}#{attempt}: want {want:?}, sent {sent:?}",
                        row.name
                    )),
                    Err(why) => failures.push(format!("round {round} {}: {why}", row.name)),
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
        "seed {seed} (JWT_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    for class in [Class::AsWso2, Class::Stricter, Class::Lenient] {
        assert!(classes.get(&class).copied().unwrap_or(0) > 0, "seed {seed}: no {class:?} row: {classes:?}");
    }
    assert_eq!(requests, 8 * 2 * ROWS.len());
}

/// The rows the filter lets through and WSO2 refuses are these, each with its reason: a new one
/// must be added here, on purpose.
#[test]
fn the_audit_table_names_every_lenient_row() {
    let lenient: Vec<&str> = ROWS
        .iter()
        .filter(|row| matches!(row.filter, Some((Pass(_), _))) && !matches!(row.wso2, Pass(_)))
        .map(|row| row.name)
        .collect();
    assert_eq!(lenient, ["bearer (lower case) and a valid token", "exp + skew == now"]);
    for row in ROWS {
        assert!(!row.source.is_empty() && row.filter.is_none_or(|(_, why)| !why.is_empty()), "{}", row.name);
        if let Some((answer, _)) = row.filter {
            assert_ne!(answer, row.wso2, "{}: a difference that is none", row.name);
        }
    }
}
