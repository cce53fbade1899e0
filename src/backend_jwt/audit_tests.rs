//! The backend JWT audited member by member against WSO2 API-M 4.x's gateway JWT generator, for
//! each credential kind the filter authorizes: every JOSE header member and claim WSO2 sends
//! (name, value, JSON type) beside what the filter sends, and the differences the project keeps
//! on purpose listed by name, so that a change to either side shows here.
//!
//! WSO2's side, from wso2/carbon-apimgt (paths under `components/apimgt/`):
//! - `org.wso2.carbon.apimgt.common.gateway/.../jwtgenerator/APIMgtGatewayJWTGeneratorImpl.java`
//!   @c080b58d `populateStandardClaims` (the dialect claims, `keytype` defaulting to `PRODUCTION`,
//!   `usertype` always `Application_User`, `enduserTenantId` a string) and `populateCustomClaims`
//!   (caller claims but `iss sub aud exp nbf iat jti application tierInfo subscribedAPIs`);
//! - `.../jwtgenerator/AbstractAPIMgtGatewayJWTGenerator.java` @374bfdc1 `buildHeader` (`NONE`:
//!   `typ`, `alg`, `kid` only), `buildBody` (`exp`/`iat` as `Date`: JSON numbers of seconds;
//!   `jti` a random UUID; standard claims win a clash);
//! - `.../common/gateway/util/JWTUtil.java` `generateHeader` (`typ`, `alg`, `x5t`, `kid`);
//! - `org.wso2.carbon.apimgt.gateway/.../utils/GatewayUtils.java` `constructJWTContent` and
//!   `getEndUserFromJWTValidationInfo` (the end user: an application token's subscriber, else the
//!   token's user, `@<tenant>` appended);
//! - `org.wso2.carbon.apimgt.keymgt/.../handlers/AbstractKeyValidationHandler.java` @f8e9eb4b
//!   `validate` (`applicationid` is the numeric id, `applicationUUId` the UUID).

use super::*;
use crate::auth::fixture::compile;
use crate::directory::{Application, Subscription, Wso2Details};
use crate::host::testing::MemoryStore;
use crate::vocab::{KeyType, SubscriptionState};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

const RSA_KEY: &str = include_str!("../../tests/fixtures/keys/rsa-a.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rsa-a.pub.pem");
const RSA_CERT: &str = include_str!("../../tests/fixtures/keys/rsa-a.crt");
const DIALECT: &str = "http://wso2.org/claims/";
const APP_UUID: &str = "5b2d7c1e-3a4f-4e6d-9b8c-7a6f5e4d3c2b";

/// What a member holds.
#[derive(Clone, Debug, PartialEq)]
enum Member {
    /// This JSON string.
    Text(&'static str),
    /// A JSON number of seconds: the issue time, or the issue time plus the lifetime.
    IssuedAt,
    ExpiresAt,
    /// A UUID-shaped JSON string (WSO2's is random, the filter's derived: not comparable).
    Uuid,
    /// A JSON object (WSO2's `applicationAttributes`).
    Object,
    /// Not sent.
    Absent,
}

use Member::{Absent, ExpiresAt, IssuedAt, Object, Text, Uuid};

/// One credential kind: how the filter authorizes it, and WSO2's claims for it.
struct Kind {
    name: &'static str,
    authorized: Authorized,
    /// Claims of the caller's token the filter copies (as key validation kept them).
    copied: &'static [(&'static str, &'static str)],
}

/// An application as the control plane describes it: its numeric id and an attribute.
fn application() -> Rc<Application> {
    let mut attributes = Map::new();
    attributes.insert("region".into(), Value::from("eu-west"));
    let details = Wso2Details { number: "7", attributes };
    Rc::new(Application::with_details(Rc::from(APP_UUID), "PizzaApp", "admin", Some("10PerMin"), details))
}

/// A JWT API key's application, as its `application` claim gives it (no attributes).
fn key_application() -> Rc<Application> {
    let details = Wso2Details { number: "7", attributes: Map::new() };
    Rc::new(Application::with_details(Rc::from(APP_UUID), "PizzaApp", "admin", Some("10PerMin"), details))
}

fn subscription() -> Rc<Subscription> {
    Rc::new(Subscription { tier: "Gold".into(), state: SubscriptionState::Unblocked })
}

fn caller_claims(copied: &[(&str, &str)]) -> Option<Box<Map<String, Value>>> {
    let mut claims = Map::new();
    for (name, value) in copied {
        claims.insert((*name).to_string(), Value::String((*value).to_string()));
    }
    Some(Box::new(claims))
}

/// A JWT API key's own claims that are not restricted: WSO2 copies them (`populateCustomClaims`).
const KEY_CLAIMS: &[(&str, &str)] =
    &[("keytype", "PRODUCTION"), ("token_type", "apiKey"), ("permittedIP", ""), ("permittedReferer", "")];

/// The kinds as `auth::authorize` builds them (see its `Authorized { .. }` literals).
fn kinds() -> Vec<Kind> {
    let token = |end_user: &str, user_token: bool, copied: &'static [(&'static str, &'static str)]| Authorized {
        cluster: Some("backend".into()),
        key_type: KeyType::Production,
        application: application(),
        subscription: subscription(),
        end_user: Some(end_user.into()),
        user_token,
        subject: Some(end_user.into()),
        caller_claims: caller_claims(copied),
        caller_token: Some("0:jti-1".into()),
    };
    vec![
        Kind {
            name: "OAuth2 JWT, user token (aut APPLICATION_USER)",
            authorized: token("alice", true, &[("email", "alice@example.com"), ("azp", "client-1")]),
            copied: &[("email", "alice@example.com"), ("azp", "client-1")],
        },
        Kind {
            name: "OAuth2 JWT, application token (aut APPLICATION)",
            authorized: token("admin", false, &[("azp", "client-1")]),
            copied: &[("azp", "client-1")],
        },
        Kind {
            name: "opaque token, introspected",
            authorized: token("alice", true, &[("client_id", "client-1"), ("username", "alice")]),
            copied: &[("client_id", "client-1"), ("username", "alice")],
        },
        Kind {
            name: "opaque API key",
            authorized: Authorized {
                cluster: Some("backend".into()),
                key_type: KeyType::Sandbox,
                application: application(),
                subscription: subscription(),
                end_user: None,
                user_token: false,
                subject: None,
                caller_claims: None,
                caller_token: None,
            },
            copied: &[],
        },
        Kind {
            name: "JWT API key",
            authorized: Authorized {
                cluster: Some("backend".into()),
                key_type: KeyType::Production,
                application: key_application(),
                subscription: subscription(),
                end_user: Some("admin@carbon.super".into()),
                user_token: true,
                subject: Some("admin@carbon.super".into()),
                caller_claims: caller_claims(KEY_CLAIMS),
                caller_token: Some("api-key:key-1".into()),
            },
            copied: KEY_CLAIMS,
        },
    ]
}

/// WSO2's members for a kind, with what the filter sends where it differs on purpose (`None`:
/// the same). The name of each kept difference is in the report of `differences`.
fn table(kind: &Kind) -> Vec<(String, Member, Option<Member>)> {
    let wso2 = |name: &str| format!("{DIALECT}{name}");
    let sandbox = kind.authorized.key_type == KeyType::Sandbox;
    let api_key_jwt = kind.name == "JWT API key";
    let opaque_key = kind.name == "opaque API key";
    let enduser = if kind.authorized.user_token { "alice@carbon.super" } else { "admin@carbon.super" };
    let enduser = if api_key_jwt { "admin@carbon.super" } else { enduser };
    let mut rows = vec![
        ("iss".to_string(), Text("wso2.org/products/am"), None),
        ("iat".to_string(), IssuedAt, None),
        ("exp".to_string(), ExpiresAt, None),
        ("jti".to_string(), Uuid, None),
        (wso2("subscriber"), Text("admin"), None),
        // WSO2: the numeric application id ("7"), the key's `application.id` for a JWT API key.
        (wso2("applicationid"), Text("7"), None),
        (wso2("applicationname"), Text("PizzaApp"), None),
        (wso2("applicationtier"), Text("10PerMin"), None),
        (wso2("apiname"), Text("PizzaShackAPI"), None),
        (wso2("apicontext"), Text("/pizzashack/1.0.0"), None),
        (wso2("version"), Text("1.0.0"), None),
        (wso2("tier"), Text("Gold"), None),
        (wso2("keytype"), Text(if sandbox { "SANDBOX" } else { "PRODUCTION" }), None),
        (wso2("usertype"), Text("Application_User"), None),
        (wso2("enduser"), Text(enduser), None),
        (wso2("enduserTenantId"), Text("-1234"), None),
        // A JWT API key's `constructJWTContent` branch (`subscribedAPI`) sets no UUID (a null
        // claim nimbus leaves out); the filter sends the key's `application.uuid`.
        (
            wso2("applicationUUId"),
            if api_key_jwt { Absent } else { Text(APP_UUID) },
            api_key_jwt.then_some(Text(APP_UUID)),
        ),
        // Sent when the application has attributes; a JWT API key's branch sets none.
        (wso2("applicationAttributes"), if api_key_jwt { Absent } else { Object }, None),
    ];
    // `sub`: the caller token's (GatewayUtils `constructJWTContent`); an opaque API key has none.
    let sub = match (&kind.authorized.subject, opaque_key) {
        (Some(subject), false) if subject == "alice" => Text("alice"),
        (Some(_), false) if api_key_jwt => Text("admin@carbon.super"),
        (Some(_), false) => Text("admin"),
        _ => Absent,
    };
    rows.push(("sub".to_string(), sub, None));
    for (name, value) in kind.copied {
        rows.push(((*name).to_string(), Text(value), None));
    }
    rows
}

/// The members of a JOSE header in the order they are written.
fn header_members(jwt: &str) -> (Vec<String>, Map<String, Value>) {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    let header: Map<String, Value> = serde_json::from_str(&text).unwrap();
    let mut names: Vec<String> = header.keys().cloned().collect();
    names.sort_by_key(|name| text.find(&format!("\"{name}\":")).unwrap());
    (names, header)
}

fn decoded(jwt: &str) -> (Map<String, Value>, Map<String, Value>) {
    let (names, header) = header_members(jwt);
    assert_eq!(names, ["typ", "alg", "x5t", "kid"], "JWTUtil.generateHeader's members, in its order");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
    (header, decode::<Map<String, Value>>(jwt, &key, &validation).unwrap().claims)
}

fn is_uuid(text: &str) -> bool {
    let lengths: Vec<usize> = text.split('-').map(str::len).collect();
    lengths == [8, 4, 4, 4, 12] && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

fn matches(member: &Member, value: Option<&Value>, now: u64) -> bool {
    match (member, value) {
        (Absent, None) => true,
        (Text(text), Some(Value::String(sent))) => sent == text,
        (IssuedAt, Some(Value::Number(sent))) => sent.as_u64() == Some(now),
        (ExpiresAt, Some(Value::Number(sent))) => sent.as_u64() == Some(now + 900),
        (Uuid, Some(Value::String(sent))) => is_uuid(sent),
        (Object, Some(Value::Object(_))) => true,
        _ => false,
    }
}

#[test]
fn every_member_of_every_kind_is_wso2s_or_a_listed_difference() {
    let now = 1_700_000_000;
    let jwt_settings = BackendJwt::compile(
        serde_json::from_value(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT})).unwrap(),
        &mut Vec::new(),
    )
    .unwrap();
    let routes = compile(
        r#"{"apis": [{"name": "PizzaShackAPI", "context": "/pizzashack", "version": "1.0.0",
             "endpoints": {"production": "p", "sandbox": "s"}, "resources": [{"method": "GET", "path": "/menu"}]}]}"#,
    )
    .routes;
    let mut differences = Vec::new();
    let mut compared = 0;
    for kind in kinds() {
        let (jwt, issued) = jwt_settings
            .jwt_for(&mut MemoryStore::default(), &mut IssuedCache::default(), &routes.apis[0], &kind.authorized, now)
            .unwrap();
        assert!(issued, "{}", kind.name);
        let (header, claims) = decoded(&jwt);
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "RS256");
        // The thumbprint form: base64url (padded) of 40 lowercase hex digits.
        let x5t = URL_SAFE.decode(header["x5t"].as_str().unwrap()).unwrap();
        assert!(x5t.len() == 40 && x5t.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
        let rows = table(&kind);
        for (name, wso2, filter) in &rows {
            compared += 1;
            let expected = filter.as_ref().unwrap_or(wso2);
            assert!(
                matches(expected, claims.get(name), now),
                "{}: `{name}` is {:?}, the table says {expected:?} (WSO2: {wso2:?})",
                kind.name,
                claims.get(name)
            );
            if filter.is_some() {
                differences.push(format!("{}: {name}", kind.name));
            }
        }
        // Nothing beyond the table.
        let extra: Vec<&String> = claims.keys().filter(|name| !rows.iter().any(|(row, ..)| row == *name)).collect();
        assert!(extra.is_empty(), "{}: members WSO2 does not send: {extra:?}", kind.name);
    }
    assert!(compared > 100, "{compared} members compared");
    // The kept difference: a JWT API key's applicationUUId.
    assert_eq!(differences, ["JWT API key: http://wso2.org/claims/applicationUUId"], "{differences:#?}");
}
#[test]
fn an_unsigned_jwt_has_wso2s_none_header() {
    // AbstractAPIMgtGatewayJWTGenerator.buildHeader, NONE: `typ`, `alg` and, with a certificate
    // (`use_kid_property`), `kid`; never `x5t`.
    let jwt_settings = BackendJwt::compile(
        serde_json::from_value(serde_json::json!({"algorithm": "none", "certificate": RSA_CERT})).unwrap(),
        &mut Vec::new(),
    )
    .unwrap();
    let routes = compile(
        r#"{"apis": [{"name": "A", "context": "/a", "version": "1",
             "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/x"}]}]}"#,
    )
    .routes;
    let kind = kinds().into_iter().next().unwrap();
    let issued =
        jwt_settings.issue(jwt_settings.identity_claims(&routes.apis[0], &kind.authorized), &[1; 32], 5).unwrap();
    let (names, header) = header_members(&issued.jwt);
    assert_eq!(names, ["typ", "alg", "kid"]);
    assert_eq!(header["alg"], "none");
    assert!(issued.jwt.ends_with('.'));
}
