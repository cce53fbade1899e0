//! The backend JWT's tests: the JWTs issued (claims, headers, encodings, keys), their reuse, the
//! settings refused, and the JWKS of the signing key.

use super::*;
use crate::auth::fixture::compile;
use crate::directory::{Application, Subscription};
use crate::host::testing::MemoryStore;
use crate::vocab::{KeyType, SubscriptionState};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

fn subscription(tier: &str) -> Rc<Subscription> {
    Rc::new(Subscription { tier: tier.into(), state: SubscriptionState::Unblocked })
}

const RSA_KEY: &str = include_str!("../../tests/fixtures/keys/rsa-a.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rsa-a.pub.pem");
const RSA_CERT: &str = include_str!("../../tests/fixtures/keys/rsa-a.crt");
const EC_KEY: &str = include_str!("../../tests/fixtures/keys/ec-p256.pem");
const EC_PUBLIC: &str = include_str!("../../tests/fixtures/keys/ec-p256.pub.pem");

fn settings(json: serde_json::Value) -> Result<BackendJwt, ConfigError> {
    BackendJwt::compile(serde_json::from_value(json).unwrap(), &mut Vec::new())
}

fn authorized() -> Authorized {
    let mut claims = Map::new();
    claims.insert("email".into(), Value::String("alice@example.com".into()));
    claims.insert("scope".into(), Value::String("read".into()));
    // A caller claim with the name of one of WSO2's: WSO2's wins.
    claims.insert("http://wso2.org/claims/tier".into(), Value::String("Forged".into()));
    Authorized {
        cluster: Some("backend".into()),
        key_type: KeyType::Production,
        application: Rc::new(Application::new(Rc::from("app-uuid"), "App", "admin", None)),
        subscription: subscription("Gold"),
        end_user: Some("alice".into()),
        user_token: true,
        subject: Some("alice".into()),
        caller_claims: Some(Box::new(claims)),
        caller_token: Some("0:jti-1".into()),
    }
}

fn api() -> crate::routing::Table {
    compile(
        r#"{"apis": [{"name": "PizzaShackAPI", "context": "/pizzashack", "version": "1.0.0",
             "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/menu"}]}]}"#,
    )
    .routes
}

fn decoded(jwt: &str, key: &DecodingKey, algorithm: Algorithm) -> Map<String, Value> {
    let mut validation = Validation::new(algorithm);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.set_issuer(&["wso2.org/products/am"]);
    decode::<Map<String, Value>>(jwt, key, &validation).unwrap().claims
}

#[test]
fn an_rs256_jwt_verifies_and_carries_wso2_claims() {
    let jwt_settings =
        settings(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT, "key_id": "gw-1"})).unwrap();
    let routes = api();
    let (jwt, issued) = jwt_settings
        .jwt_for(&mut MemoryStore::default(), &mut IssuedCache::default(), &routes.apis[0], &authorized(), 1_000)
        .unwrap();
    assert!(issued);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
    // x5t from the fixture's SHA-1 fingerprint (openssl, see tests/fixtures/keys/README.md).
    assert_eq!(
        header,
        serde_json::json!({"typ": "JWT", "alg": "RS256",
            "x5t": "MGJhZTVjZjYwOThmYzA5NmYxNDI4ODNkZjUwOGUzYjk4ZDUxNTdhOA==", "kid": "gw-1"})
    );
    let claims = decoded(&jwt, &DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(), Algorithm::RS256);
    let claim = |name: &str| claims.get(name).cloned().unwrap_or(Value::Null);
    let wso2 = |name: &str| claim(&format!("http://wso2.org/claims/{name}"));
    assert_eq!(wso2("subscriber"), "admin");
    assert_eq!(wso2("applicationid"), "app-uuid");
    assert_eq!(wso2("applicationUUId"), "app-uuid");
    assert_eq!(wso2("applicationname"), "App");
    assert_eq!(wso2("applicationtier"), "Unlimited");
    assert_eq!(wso2("apiname"), "PizzaShackAPI");
    assert_eq!(wso2("apicontext"), "/pizzashack/1.0.0");
    assert_eq!(wso2("version"), "1.0.0");
    assert_eq!(wso2("tier"), "Gold", "WSO2's claim wins over the caller's");
    assert_eq!(wso2("keytype"), "PRODUCTION");
    assert_eq!(wso2("usertype"), "Application_User");
    assert_eq!(wso2("enduser"), "alice@carbon.super");
    assert_eq!(wso2("enduserTenantId"), "-1234");
    assert_eq!(claim("sub"), "alice");
    assert_eq!(claim("email"), "alice@example.com", "caller claims are copied");
    assert_eq!(claim("iat"), 1_000);
    assert_eq!(claim("exp"), 1_900);
    assert_eq!(claim("jti").as_str().map(str::len), Some(36));
}

#[test]
fn es256_and_none_and_wso2_encodings() {
    let routes = api();
    let es = settings(serde_json::json!({"algorithm": "ES256", "private_key": EC_KEY})).unwrap();
    let issued = es.issue(es.identity_claims(&routes.apis[0], &authorized()), &[7; 32], 10).unwrap();
    let claims = decoded(&issued.jwt, &DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap(), Algorithm::ES256);
    assert_eq!(claims["http://wso2.org/claims/apiname"], "PizzaShackAPI");
    assert_eq!(issued.validity, Validity { issued_at: 10, expires: 10 + 900 });

    let none = settings(serde_json::json!({"algorithm": "none", "encoding": "base64url_padded"})).unwrap();
    let issued = none.issue(none.identity_claims(&routes.apis[0], &authorized()), &[7; 32], 10).unwrap();
    assert!(issued.jwt.ends_with('.'), "alg none keeps the trailing dot: {}", issued.jwt);
    let header = issued.jwt.split('.').next().unwrap();
    assert_eq!(URL_SAFE.decode(header).unwrap(), br#"{"typ":"JWT","alg":"none"}"#);
}

#[test]
fn one_jwt_per_caller_and_api_until_renewal() {
    let jwt_settings = settings(serde_json::json!({"algorithm": "ES256", "private_key": EC_KEY})).unwrap();
    let routes = api();
    let mut store = MemoryStore::default();
    let (first, _) =
        jwt_settings.jwt_for(&mut store, &mut IssuedCache::default(), &routes.apis[0], &authorized(), 100).unwrap();
    // Another worker (its own cache) finds it in shared data.
    let (again, issued) =
        jwt_settings.jwt_for(&mut store, &mut IssuedCache::default(), &routes.apis[0], &authorized(), 699).unwrap();
    assert_eq!((again.as_ref(), issued), (first.as_ref(), false));
    // Past reuse: a new one.
    let (renewed, issued) =
        jwt_settings.jwt_for(&mut store, &mut IssuedCache::default(), &routes.apis[0], &authorized(), 700).unwrap();
    assert!(issued && renewed != first);
    // Another caller: another JWT, also from a worker that knows the first caller.
    let mut worker = IssuedCache::default();
    jwt_settings.jwt_for(&mut store, &mut worker, &routes.apis[0], &authorized(), 701).unwrap();
    let other = Authorized { subscription: subscription("Bronze"), ..authorized() };
    let (theirs, issued) = jwt_settings.jwt_for(&mut store, &mut worker, &routes.apis[0], &other, 701).unwrap();
    assert!(issued && theirs != renewed);
    // An introspected token (claims, no token id) takes the claims path and still finds its JWT.
    let opaque = Authorized { caller_token: None, ..authorized() };
    let (same, issued) = jwt_settings.jwt_for(&mut store, &mut worker, &routes.apis[0], &opaque, 702).unwrap();
    assert_eq!((same.as_ref(), issued), (renewed.as_ref(), false));
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let field = |json| settings(json).unwrap_err().field;
    assert_eq!(field(serde_json::json!({})), "backend_jwt.private_key");
    assert_eq!(field(serde_json::json!({"private_key": EC_KEY})), "backend_jwt.private_key", "EC key for RS256");
    assert_eq!(field(serde_json::json!({"algorithm": "ES256", "private_key": RSA_KEY})), "backend_jwt.private_key");
    assert_eq!(field(serde_json::json!({"private_key": "not pem"})), "backend_jwt.private_key");
    assert_eq!(field(serde_json::json!({"algorithm": "none", "renew_before_s": 900})), "backend_jwt.renew_before_s");
    assert_eq!(field(serde_json::json!({"algorithm": "none", "header": ":path"})), "backend_jwt.header");
    assert_eq!(field(serde_json::json!({"algorithm": "none", "certificate": RSA_KEY})), "backend_jwt.certificate");
    // Another key's certificate: a backend finding it by `x5t` could verify no JWT.
    let other_rsa = include_str!("../../tests/fixtures/keys/rsa-b.pem");
    for (algorithm, key) in [("RS256", other_rsa), ("ES256", EC_KEY)] {
        let json = serde_json::json!({"algorithm": algorithm, "private_key": key, "certificate": RSA_CERT});
        let error = settings(json).unwrap_err();
        assert_eq!(error.field, "backend_jwt.certificate", "{algorithm}");
        assert!(error.to_string().contains("not the certificate of `private_key`"), "{error}");
    }
    assert!(settings(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT})).is_ok());
}

#[test]
fn restricted_and_excluded_caller_claims_are_not_copied() {
    let claims_settings = crate::auth::settings::Claims {
        client_id: vec![],
        client_id_lists: false,
        default_scope: false,
        scopes: vec![],
        end_user: "sub".into(),
        token_type: "aut".into(),
        copy_except: Some(vec!["email".into()]),
    };
    let caller: Map<String, Value> = serde_json::from_str(
        r#"{"iss":"x","sub":"s","aud":"a","exp":1,"jti":"j","aut":"APPLICATION","email":"e","azp":"c"}"#,
    )
    .unwrap();
    let copied = claims_settings.copyable(&caller).unwrap();
    assert_eq!(copied.keys().collect::<Vec<_>>(), ["azp"]);
}

fn payload_of(jwt: &str) -> Map<String, Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[test]
fn a_caller_claim_never_stands_in_for_a_wso2_claim_without_a_value() {
    // An application without an owner has no subscriber; the caller's token carries one in
    // WSO2's dialect, which a backend would trust as the gateway's word.
    let jwt_settings = settings(serde_json::json!({"algorithm": "none"})).unwrap();
    let routes = api();
    let mut claims = Map::new();
    claims.insert("http://wso2.org/claims/subscriber".into(), Value::String("admin".into()));
    claims.insert("http://wso2.org/claims/role".into(), Value::String("reader".into()));
    let caller = Authorized {
        application: Rc::new(Application::new(Rc::from("app-uuid"), "App", "", None)),
        caller_claims: Some(Box::new(claims)),
        ..authorized()
    };
    let (jwt, _) = jwt_settings
        .jwt_for(&mut MemoryStore::default(), &mut IssuedCache::default(), &routes.apis[0], &caller, 1_000)
        .unwrap();
    let payload = payload_of(&jwt);
    assert_eq!(payload.get("http://wso2.org/claims/subscriber"), None);
    assert_eq!(payload["http://wso2.org/claims/role"], "reader", "other claims of the caller are copied");
}

#[test]
fn a_clock_stepped_back_reuses_no_jwt_issued_in_its_future() {
    let jwt_settings = settings(serde_json::json!({"algorithm": "none"})).unwrap();
    let routes = api();
    // The clock is stepped back by 9000 s: neither the worker's copy nor the shared one serves.
    for same_worker in [true, false] {
        let mut store = MemoryStore::default();
        let mut worker = IssuedCache::default();
        jwt_settings.jwt_for(&mut store, &mut worker, &routes.apis[0], &authorized(), 10_000).unwrap();
        if !same_worker {
            worker = IssuedCache::default();
        }
        let (jwt, issued) =
            jwt_settings.jwt_for(&mut store, &mut worker, &routes.apis[0], &authorized(), 1_000).unwrap();
        let claims = payload_of(&jwt);
        assert!(issued, "issued anew (same worker: {same_worker})");
        assert_eq!((claims["iat"].as_u64(), claims["exp"].as_u64()), (Some(1_000), Some(1_900)));
    }
}

#[test]
fn a_longer_renew_before_applies_to_jwts_issued_before_it() {
    let old = settings(serde_json::json!({"algorithm": "none"})).unwrap();
    let new = settings(serde_json::json!({"algorithm": "none", "renew_before_s": 800})).unwrap();
    let routes = api();
    let mut store = MemoryStore::default();
    old.jwt_for(&mut store, &mut IssuedCache::default(), &routes.apis[0], &authorized(), 1_000).unwrap();
    // A new configuration: fresh worker caches, the same shared data.
    let (jwt, _) = new.jwt_for(&mut store, &mut IssuedCache::default(), &routes.apis[0], &authorized(), 1_500).unwrap();
    let left = payload_of(&jwt)["exp"].as_u64().unwrap() - 1_500;
    assert!(left >= 800, "served with {left} s left under renew_before_s 800");
}

/// WSO2 appends the tenant to a user without it (`getUserNameWithTenantSuffix`): a user who
/// already carries it keeps one suffix.
#[test]
fn the_end_user_carries_the_tenant_once() {
    let jwt_settings =
        settings(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT, "key_id": "gw-1"})).unwrap();
    let routes = api();
    let enduser = |user: &str| {
        let authorized = Authorized { end_user: Some(user.into()), ..authorized() };
        jwt_settings.identity_claims(&routes.apis[0], &authorized)["http://wso2.org/claims/enduser"].clone()
    };
    assert_eq!(enduser("alice"), "alice@carbon.super");
    assert_eq!(enduser("alice@carbon.super"), "alice@carbon.super");
}

/// Whether `key` verifies `jwt`'s signature (its claims' times not checked).
fn verifies(jwt: &str, key: &DecodingKey, algorithm: Algorithm) -> bool {
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    decode::<Map<String, Value>>(jwt, key, &validation).is_ok()
}

/// The key a JWKS holds, as a backend reads it (jsonwebtoken's JWK reader).
fn jwks_key(jwks: &str) -> (Value, DecodingKey) {
    let set: Value = serde_json::from_str(jwks).unwrap();
    assert_eq!(set["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(set["keys"][0].clone()).unwrap();
    (set["keys"][0].clone(), DecodingKey::from_jwk(&jwk).unwrap())
}

#[test]
fn the_jwks_holds_the_key_that_verifies_the_jwts_issued() {
    let routes = api();
    let rsa = settings(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT, "key_id": "gw-1"})).unwrap();
    let (jwk, key) = jwks_key(rsa.jwks_answer("GET", "/jwks").unwrap());
    assert_eq!(
        (jwk["kty"].as_str(), jwk["use"].as_str(), jwk["alg"].as_str()),
        (Some("RSA"), Some("sig"), Some("RS256"))
    );
    assert_eq!(jwk["kid"], "gw-1", "the kid of the JWT's header");
    let certificate = pem::parse(RSA_CERT).unwrap();
    assert_eq!(jwk["x5c"][0], base64::engine::general_purpose::STANDARD.encode(certificate.contents()));
    let issued = rsa.issue(rsa.identity_claims(&routes.apis[0], &authorized()), &[7; 32], 10).unwrap();
    assert!(verifies(&issued.jwt, &key, Algorithm::RS256), "the JWKS key verifies the JWT");

    let ec =
        settings(serde_json::json!({"algorithm": "ES256", "private_key": EC_KEY, "jwks_path": "/gw/keys"})).unwrap();
    let (jwk, key) = jwks_key(ec.jwks_answer("HEAD", "/gw/keys/?refresh=1").unwrap());
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(jwk.get("kid").is_none() && jwk.get("x5c").is_none(), "no kid or certificate configured: {jwk}");
    let issued = ec.issue(ec.identity_claims(&routes.apis[0], &authorized()), &[7; 32], 10).unwrap();
    assert!(verifies(&issued.jwt, &key, Algorithm::ES256));
    // The JWKS is never a private key's.
    assert!(!rsa.jwks_answer("GET", "/jwks").unwrap().contains("\"d\""));
    assert!(!ec.jwks_answer("GET", "/gw/keys").unwrap().contains("\"d\""));
}

#[test]
fn the_jwks_is_served_at_its_path_to_get_and_head_only() {
    let rsa = settings(serde_json::json!({"private_key": RSA_KEY})).unwrap();
    for (method, path) in [("GET", "/jwks"), ("GET", "/jwks/"), ("GET", "/jwks?x=1"), ("HEAD", "/jwks")] {
        assert!(rsa.jwks_answer(method, path).is_some(), "{method} {path}");
    }
    for (method, path) in
        [("POST", "/jwks"), ("GET", "/jwksx"), ("GET", "/jwks/1"), ("GET", "/other/jwks"), ("get", "/jwks")]
    {
        assert!(rsa.jwks_answer(method, path).is_none(), "{method} {path}");
    }
    let off = settings(serde_json::json!({"private_key": RSA_KEY, "jwks_path": null})).unwrap();
    assert!(off.jwks_answer("GET", "/jwks").is_none(), "null serves none");
    let unsigned = settings(serde_json::json!({"algorithm": "none"})).unwrap();
    assert!(unsigned.jwks_answer("GET", "/jwks").is_none(), "no key, no JWKS");
    for bad in ["jwks", "/jwks?x", "/jw ks", "/jwks#", "", "/jwké", "/jwks\t"] {
        let error = settings(serde_json::json!({"private_key": RSA_KEY, "jwks_path": bad})).unwrap_err();
        assert!(error.to_string().contains("backend_jwt.jwks_path"), "{bad}: {error}");
    }
}

/// A bad `jwks_path` is refused whatever the algorithm, and one set beside `algorithm: none`
/// (which serves no JWKS: there is no key) is named in a warning.
#[test]
fn a_jwks_path_without_a_key_is_checked_and_warned_about() {
    let error = settings(serde_json::json!({"algorithm": "none", "jwks_path": "jwks"})).unwrap_err();
    assert_eq!(error.field, "backend_jwt.jwks_path");
    let warned = |json| {
        let mut warnings = Vec::new();
        BackendJwt::compile(serde_json::from_value(json).unwrap(), &mut warnings).unwrap();
        warnings
    };
    let warnings = warned(serde_json::json!({"algorithm": "none", "jwks_path": "/gw/keys"}));
    assert!(warnings.iter().any(|line| line.contains("`backend_jwt.jwks_path`")), "{warnings:?}");
    assert!(warned(serde_json::json!({"algorithm": "none"})).is_empty(), "the default is not the user's");
    let warnings = warned(serde_json::json!({"private_key": RSA_KEY, "jwks_path": "/gw/keys"}));
    assert!(!warnings.iter().any(|line| line.contains("jwks_path")), "{warnings:?}");
}

/// With a certificate and no `key_id`, the JWT's header and the JWKS name the key as API-M does
/// (`JWTUtil.getKID`: the issuer and serial number; the value Java computes for the fixture);
/// a `key_id` given wins.
#[test]
fn with_a_certificate_the_key_is_named_as_api_m_names_it() {
    const API_M_KID: &str = "Tz1hcGltLWZpbHRlciB0ZXN0cywgQ049YXBpbS1iYWNrZW5kLWp3dCMyNzk4MjYxOTMyODM2NjM0NzkxOTQwMDc2NTI2MzAyMTA5NDIyNjU5NjA2NDgwNjQ";
    let routes = api();
    let header_kid = |jwt_settings: &BackendJwt| {
        let issued =
            jwt_settings.issue(jwt_settings.identity_claims(&routes.apis[0], &authorized()), &[7; 32], 10).unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(issued.jwt.split('.').next().unwrap()).unwrap()).unwrap();
        header["kid"].clone()
    };
    let named = settings(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT})).unwrap();
    assert_eq!(header_kid(&named), API_M_KID);
    let (jwk, _) = jwks_key(named.jwks_answer("GET", "/jwks").unwrap());
    assert_eq!(jwk["kid"], API_M_KID, "the JWKS names it alike");
    let chosen =
        settings(serde_json::json!({"private_key": RSA_KEY, "certificate": RSA_CERT, "key_id": "gw-1"})).unwrap();
    assert_eq!(header_kid(&chosen), "gw-1");
    let unnamed = settings(serde_json::json!({"private_key": RSA_KEY})).unwrap();
    assert_eq!(header_kid(&unnamed), Value::Null, "no certificate, no key_id: no kid");
}

#[test]
fn the_application_is_named_by_wso2s_numeric_id_with_its_attributes() {
    // APIMgtGatewayJWTGeneratorImpl.populateStandardClaims: `applicationid` is the numeric id,
    // `applicationUUId` the UUID, `applicationAttributes` the attributes (an object) when any.
    let jwt_settings = settings(serde_json::json!({"algorithm": "none"})).unwrap();
    let routes = api();
    let mut attributes = Map::new();
    attributes.insert("region".into(), Value::from("eu-west"));
    let described = |attributes: Map<String, Value>| Authorized {
        application: Rc::new(Application::with_details(
            Rc::from("app-uuid"),
            "App",
            "admin",
            None,
            crate::directory::Wso2Details { number: "7", attributes },
        )),
        ..authorized()
    };
    let (mut store, mut worker) = (MemoryStore::default(), IssuedCache::default());
    let mut jwt = |caller: &Authorized| {
        let (jwt, _) = jwt_settings.jwt_for(&mut store, &mut worker, &routes.apis[0], caller, 100).unwrap();
        payload_of(&jwt)
    };
    let claims = jwt(&described(attributes.clone()));
    let wso2 = |name: &str| claims.get(&format!("http://wso2.org/claims/{name}")).cloned();
    assert_eq!(wso2("applicationid"), Some(Value::from("7")));
    assert_eq!(wso2("applicationUUId"), Some(Value::from("app-uuid")));
    assert_eq!(wso2("applicationAttributes"), Some(Value::Object(attributes.clone())));
    // Without attributes the claim is left out; the same caller's JWT follows its application's
    // attributes and numeric id (the worker's quick cache is keyed by them too).
    let bare = jwt(&described(Map::new()));
    assert_eq!(bare.get("http://wso2.org/claims/applicationAttributes"), None);
    attributes.insert("region".into(), Value::from("us-east"));
    let moved = jwt(&described(attributes.clone()));
    assert_eq!(moved["http://wso2.org/claims/applicationAttributes"], Value::Object(attributes));
    let unnumbered = jwt(&authorized());
    assert_eq!(unnumbered["http://wso2.org/claims/applicationid"], "app-uuid", "the UUID when no number is known");
}
