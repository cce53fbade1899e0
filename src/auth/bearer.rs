//! Bearer tokens verified locally: JWT access tokens checked against their key manager's keys
//! and rules, the claims read into a [`TokenIdentity`], and the per-worker cache of verified
//! tokens.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::jwks::FetchedKeys;
use super::jwt::{self, JwtError, Rules};
use super::keys::KeySet;
use super::settings::{issuer_key, AuthConfig, Claims};
use super::{api_keys, looks_like_jws, AuthFailure, Refusal};
use crate::vocab::KmId;

/// The version of what a token's identity holds and of the rules that make it (verification,
/// introspection answers, revocation names), written with every identity kept in shared data
/// (the verified-token cache, the introspection cache). Shared data outlives a module upgrade
/// (and the old module's VMs drain beside the new ones): an entry of another version is not
/// taken, the token is verified or introspected again. Bump it with any change that would make
/// this module refuse, or name differently, a token an earlier one accepted.
pub const IDENTITY_FORMAT: u32 = 3;

/// The scope API-M gives a JWT without a scopes claim (`JWTConstants.OAUTH2_DEFAULT_SCOPE`).
const DEFAULT_SCOPE: &str = "default";

/// A verified OAuth2 token (also what the introspection cache stores for an active token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenIdentity {
    pub key_manager: KmId,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub end_user: Option<String>,
    /// WSO2's APPLICATION_USER (true) or APPLICATION (false).
    pub user_token: bool,
    pub expires_at: u64,
    /// How a revocation names the token: its `jti`, else its signature (JWTs only).
    pub token_id: Option<String>,
    /// The other name of an ECDSA token without `jti`: its signature's other form
    /// (`jwt::Parsed::revocation_ids`).
    #[serde(default)]
    pub token_twin: Option<String>,
    /// The token's `sub` (the backend JWT's `sub`).
    #[serde(default)]
    pub subject: Option<String>,
    /// The caller's claims the backend JWT copies (kept only when it copies any).
    #[serde(default)]
    pub claims: Option<Box<Map<String, Value>>>,
}

pub fn jwt_failure(error: JwtError) -> Refusal {
    let failure = match error {
        JwtError::Expired => AuthFailure::Expired,
        JwtError::TooLarge
        | JwtError::Malformed
        | JwtError::AlgorithmNotAllowed
        | JwtError::CriticalHeader
        | JwtError::EmbeddedKey
        | JwtError::NestedToken
        | JwtError::BadKeyId
        | JwtError::UnknownIssuer
        | JwtError::UnknownKey
        | JwtError::BadSignature
        | JwtError::MissingExpiry
        | JwtError::NotYetValid
        | JwtError::WrongAudience => AuthFailure::Invalid,
    };
    failure.because(error.name())
}

/// What verifying a bearer token needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BearerStep {
    Verified(TokenIdentity),
    Failed(Refusal),
    /// An opaque token: introspect it at this key manager.
    Introspect {
        key_manager: KmId,
    },
    /// The issuer's remote keys are missing or lack the token's `kid`: fetch its JWKS.
    FetchJwks {
        key_manager: KmId,
    },
}

/// Verifies a bearer token against the keys at hand: inline keys, the HMAC secret, and the
/// fetched keys this worker knows (`fetched`, one per key manager). `may_fetch` says whether this
/// request may still ask for a fetch, or wait for the one under way.
///
/// A token whose keys could not be had (its `kid` is unknown, or no keys were ever fetched, and
/// the last fetch failed) is refused as a key manager outage (900900), not as bad credentials:
/// the check could not be made.
pub fn verify(auth: &AuthConfig, fetched: &[FetchedKeys], token: &str, now: u64, may_fetch: bool) -> BearerStep {
    let max_bytes = auth.credentials.max_token_bytes;
    if token.len() > max_bytes {
        return BearerStep::Failed(AuthFailure::Invalid.because("too_large"));
    }
    if !looks_like_jws(token) {
        return match auth.key_managers.iter().find(|km| km.introspection.is_some()) {
            Some(km) => BearerStep::Introspect { key_manager: km.id },
            None => BearerStep::Failed(AuthFailure::Invalid.because("opaque_without_introspection")),
        };
    }
    let parsed = match jwt::parse(token, max_bytes) {
        Ok(parsed) => parsed,
        Err(error) => return BearerStep::Failed(jwt_failure(error)),
    };
    // WSO2's OAuthAuthenticator takes no API key and no internal key as an access token, whoever
    // signed it (API-M signs its JWT access tokens and its API keys with one key).
    if api_keys::is_api_key(&parsed.payload) || api_keys::is_internal_key(&parsed.payload) {
        return BearerStep::Failed(AuthFailure::Invalid.because("api_key_as_bearer"));
    }
    // The issuer picks the key manager, and with it the keys and the rules. A JWT that names no
    // key manager with keys for JWTs (no or an unknown `iss`, or one that only introspects: API-M's
    // `self_validate_jwt` off) is an opaque token to WSO2's gateway, introspected
    // (`JWTValidationServiceImpl.getKeyManagerNameIfJwtValidatorExist` null, then
    // `OAuthAuthenticator` takes the key validation path).
    let named =
        parsed.issuer().and_then(|issuer| auth.issuers.get(issuer_key(issuer))).and_then(|id| auth.key_manager(*id));
    let Some(km) = named.filter(|km| !km.static_keys.keys.is_empty() || km.remote_jwks.is_some() || km.hmac.is_some())
    else {
        return match auth.key_managers.iter().find(|km| km.introspection.is_some()) {
            Some(km) => BearerStep::Introspect { key_manager: km.id },
            None => BearerStep::Failed(jwt_failure(JwtError::UnknownIssuer)),
        };
    };
    let remote = fetched.get(km.id.index());
    let remote_keys = remote.and_then(|fetched| fetched.keys.as_ref());
    let kid = parsed.kid.as_deref();
    let kid_known = |set: Option<&KeySet>| kid.is_some_and(|kid| set.is_some_and(|set| set.has_kid(kid)));
    let unknown_kid = kid.is_some() && !kid_known(remote_keys) && !kid_known(Some(&km.static_keys));
    if let Some(jwks) = &km.remote_jwks {
        let wanted = remote_keys.is_none() || unknown_kid;
        // A fetch under way is waited for: its keys have not arrived yet, which says nothing of
        // the token (refused meanwhile, a valid token was taken as bad credentials).
        let fetchable =
            |fetched: &FetchedKeys| fetched.may_fetch(now) || fetched.under_way(now, jwks.timeout_ms).is_some();
        if wanted && may_fetch && remote.is_some_and(fetchable) {
            return BearerStep::FetchJwks { key_manager: km.id };
        }
        // Missing: the keys this token needs were never fetched or lack its `kid`, and no key
        // of the configuration (inline, or the HMAC secret) can verify its algorithm instead.
        // (Any configured key counted: an RS256 token of a key manager with an HMAC secret and
        // its JWKS down was refused as bad credentials, 900901.)
        let verifiable_locally = km.static_keys.candidates(kid, parsed.algorithm).next().is_some()
            || km.hmac.as_ref().is_some_and(|hmac| hmac.algorithms.contains(&parsed.algorithm));
        let keys_missing = (unknown_kid || remote_keys.is_none()) && !verifiable_locally;
        if keys_missing && remote.is_some_and(|fetched| fetched.failed) {
            return BearerStep::Failed(AuthFailure::KeyManagerUnavailable.because("keys_unavailable"));
        }
    }
    let candidates = km
        .static_keys
        .candidates(kid, parsed.algorithm)
        .chain(remote_keys.into_iter().flat_map(|set| set.candidates(kid, parsed.algorithm)))
        .chain(km.hmac.iter());
    let rules = Rules {
        algorithms: &km.algorithms,
        audiences: &km.audiences,
        clock_skew_s: km.clock_skew_s,
        require_expiry: true,
    };
    let expires_at = match parsed.check(&rules, candidates, now) {
        Ok(expires_at) => expires_at.unwrap_or(u64::MAX),
        Err(error) => return BearerStep::Failed(jwt_failure(error)),
    };
    match token_identity(km.id, &km.claims, &parsed.payload, expires_at) {
        Ok(identity) => {
            let (token_id, token_twin) = parsed.revocation_ids();
            BearerStep::Verified(TokenIdentity { token_id: Some(token_id), token_twin, ..identity })
        }
        // WSO2's `JWTValidator.validateSubscriptionUsingKeyManager`: a valid JWT without a
        // consumer key names no application, refused as a missing subscription (900908, 403).
        Err("no_client_id") => BearerStep::Failed(AuthFailure::NoApplication.because("no_client_id")),
        Err(reason) => BearerStep::Failed(AuthFailure::Invalid.because(reason)),
    }
}

/// A string claim: absent is `None`; present with another type is an error.
fn string_claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Result<Option<&'c str>, &'static str> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err("wrong_claim_type"),
    }
}

/// Reads client id, scopes, end user and token type from verified claims (or an introspection
/// answer). Every claim it relies on must have its type: a client id, end user and token type
/// are strings; scopes a space-separated string or an array of strings. The error is the reason.
pub fn token_identity(
    key_manager: KmId,
    claims_names: &Claims,
    claims: &Map<String, Value>,
    expires_at: u64,
) -> Result<TokenIdentity, &'static str> {
    let mut client_id = None;
    for name in &claims_names.client_id {
        // API-M's `DefaultJWTTransformer.getTransformedConsumerKey`: a configured claim that is a
        // list gives its first item (ForgeRock); an empty list, or one of other items, is refused.
        let found = match claims.get(name) {
            Some(Value::Array(items)) if claims_names.client_id_lists => {
                Some(items.first().and_then(Value::as_str).ok_or("wrong_claim_type")?)
            }
            _ => string_claim(claims, name)?,
        };
        if let Some(found) = found {
            client_id = Some(found.to_string());
            break;
        }
    }
    let client_id = client_id.ok_or("no_client_id")?;
    let mut scopes = Vec::new();
    // First present wins, and a null member is absent, as for the client id, the end user and
    // the token type: `"scope": null` is no scopes, not a malformed token.
    if let Some(value) = claims_names.scopes.iter().find_map(|name| claims.get(name).filter(|value| !value.is_null())) {
        match value {
            // Scopes are separated by spaces (U+0020) only (RFC 6749 3.3): `read\u{a0}admin` is
            // one scope, never `read` and `admin`.
            Value::String(text) => {
                scopes = text.split(' ').filter(|scope| !scope.is_empty()).map(String::from).collect()
            }
            Value::Array(items) => {
                for item in items {
                    scopes.push(item.as_str().ok_or("wrong_claim_type")?.to_string());
                }
            }
            _ => return Err("wrong_claim_type"),
        }
    } else if claims_names.default_scope {
        // API-M's `DefaultJWTTransformer.getTransformedScopes`: a JWT without its scopes claim
        // has the scope `default` (an introspected token has none: `getTokenMetaData`).
        scopes.push(DEFAULT_SCOPE.to_string());
    }
    let end_user = string_claim(claims, &claims_names.end_user)?.map(String::from);
    // Only an explicit claim makes a user token: a service account's `sub` is no end user.
    let user_token = string_claim(claims, &claims_names.token_type)?
        .is_some_and(|kind| kind.eq_ignore_ascii_case("APPLICATION_USER"));
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) => Some(sub.clone()),
        _ => None,
    };
    Ok(TokenIdentity {
        key_manager,
        client_id,
        scopes,
        end_user,
        user_token,
        expires_at,
        token_id: None,
        token_twin: None,
        subject,
        claims: claims_names.copyable(claims),
    })
}

// ---------------------------------------------------------------------------------------------
// The per-worker verified-token cache.
// ---------------------------------------------------------------------------------------------

/// Verified JWTs (access tokens, and JWT API keys with what their verification found), bounded
/// (oldest evicted first), never returned past their `exp`.
///
/// Entries are found by a cheap hash of the token's length and last bytes (its signature) and
/// then compared in full: a token that shares a signature with a cached one but differs anywhere
/// else is a different token and is verified on its own. (Hashing the whole token with SHA-256
/// cost more than the rest of the request path in wasm.) The tokens are kept in worker memory only,
/// compared in constant time, and never printed (`Debug` gives the counts).
pub struct TokenCache<T = TokenIdentity> {
    capacity: usize,
    entries: HashMap<u64, Vec<CachedToken<T>>>,
    /// Eviction order: the same text as the entry's (one allocation per token, not two).
    order: VecDeque<(u64, Rc<str>)>,
    len: usize,
}

/// What a verified token is good for until: its `exp` (Unix seconds; `u64::MAX` without one).
pub trait Expiring {
    fn expires_at(&self) -> u64;
}

impl Expiring for TokenIdentity {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl<T> std::fmt::Debug for TokenCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("capacity", &self.capacity).field("len", &self.len).finish_non_exhaustive()
    }
}

/// Whether a cached token is `token`, in time that does not depend on where they differ.
fn same_token(cached: &str, token: &str) -> bool {
    bool::from(cached.as_bytes().ct_eq(token.as_bytes()))
}

/// A cached token and what its verification found.
type CachedToken<T> = (Rc<str>, Rc<T>);

fn token_bucket(token: &str) -> u64 {
    let bytes = token.as_bytes();
    let tail = bytes.get(bytes.len().saturating_sub(32)..).unwrap_or_default();
    crate::hashing::fnv1a(bytes.len() as u64, tail)
}

impl<T: Expiring> TokenCache<T> {
    pub fn new(capacity: usize) -> Self {
        TokenCache { capacity, entries: HashMap::new(), order: VecDeque::new(), len: 0 }
    }

    pub fn get(&self, token: &str, now: u64) -> Option<&Rc<T>> {
        self.entries
            .get(&token_bucket(token))?
            .iter()
            .find(|(cached, _)| same_token(cached, token))
            .map(|(_, identity)| identity)
            .filter(|identity| now <= identity.expires_at())
    }

    pub fn insert(&mut self, token: &str, identity: Rc<T>) {
        if self.capacity == 0 {
            return;
        }
        let bucket = token_bucket(token);
        let entries = self.entries.entry(bucket).or_default();
        match entries.iter_mut().find(|(cached, _)| same_token(cached, token)) {
            Some(entry) => entry.1 = identity,
            None => {
                let text: Rc<str> = Rc::from(token);
                entries.push((Rc::clone(&text), identity));
                self.order.push_back((bucket, text));
                self.len += 1;
            }
        }
        while self.len > self.capacity {
            let Some((bucket, oldest)) = self.order.pop_front() else { break };
            if let Some(entries) = self.entries.get_mut(&bucket) {
                entries.retain(|(cached, _)| !Rc::ptr_eq(cached, &oldest));
                if entries.is_empty() {
                    self.entries.remove(&bucket);
                }
            }
            self.len -= 1;
        }
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.len = 0;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of token text held, each copy counted (what tests measure).
    #[cfg(test)]
    pub fn token_bytes_held(&self) -> usize {
        let mut copies: Vec<(*const u8, usize)> = self
            .entries
            .values()
            .flatten()
            .map(|(token, _)| (token.as_ptr(), token.len()))
            .chain(self.order.iter().map(|(_, token)| (token.as_ptr(), token.len())))
            .collect();
        copies.sort_unstable();
        copies.dedup();
        copies.iter().map(|(_, len)| len).sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixture::compile;

    const CONFIG: &str = r#"{"key_managers": [{"name": "a", "issuer": "https://a", "jwks": {"cluster": "a"}}]}"#;

    #[test]
    fn only_an_explicit_claim_makes_a_user_token() {
        let config = compile(CONFIG);
        let claims_names = &config.auth.key_managers[0].claims;
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"client_id":"c","sub":"service-account-uuid"}"#).unwrap();
        assert!(!token_identity(KmId(0), claims_names, &claims, 1).unwrap().user_token);
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"client_id":"c","aut":["APPLICATION_USER"]}"#).unwrap();
        assert_eq!(token_identity(KmId(0), claims_names, &claims, 1), Err("wrong_claim_type"));
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"client_id":"c","sub":"bob","aut":"APPLICATION_USER"}"#).unwrap();
        assert!(token_identity(KmId(0), claims_names, &claims, 1).unwrap().user_token);
    }

    #[test]
    fn scopes_are_separated_by_spaces_only() {
        let config = compile(CONFIG);
        let claims_names = &config.auth.key_managers[0].claims;
        let scopes = |scope: &str| {
            let claims = serde_json::json!({"client_id": "c", "scope": scope}).as_object().unwrap().clone();
            token_identity(KmId(0), claims_names, &claims, 1).unwrap().scopes
        };
        assert_eq!(scopes("read\u{a0}admin read\u{2028}write"), ["read\u{a0}admin", "read\u{2028}write"]);
        assert_eq!(scopes(" read  write "), ["read", "write"]);
        assert_eq!(scopes("read\tadmin"), ["read\tadmin"]);
    }

    /// A null scope claim is an absent one, as a null client id, end user or token type is: the
    /// next configured name is read, and without one a JWT has the scope `default`, as API-M's
    /// `DefaultJWTTransformer` gives it (an introspection answer none). It refused the token
    /// (900901, `wrong_claim_type`) even on resources that ask for no scope.
    #[test]
    fn a_null_scope_claim_is_absent() {
        let config = compile(CONFIG);
        // Two configured names (the default is `scope` alone).
        let mut claims_names = config.auth.key_managers[0].claims.clone();
        claims_names.scopes = vec!["scope".into(), "scp".into()];
        let scopes = |claims: serde_json::Value| {
            token_identity(KmId(0), &claims_names, claims.as_object().unwrap(), 1).map(|identity| identity.scopes)
        };
        assert_eq!(scopes(serde_json::json!({"client_id": "c", "scope": null})), Ok(vec!["default".into()]));
        assert_eq!(scopes(serde_json::json!({"client_id": "c"})), Ok(vec!["default".into()]));
        // A claim present but empty is no absent one: no `default` (API-M splits `""` into `[""]`).
        assert_eq!(scopes(serde_json::json!({"client_id": "c", "scope": ""})), Ok(Vec::<String>::new()));
        assert_eq!(scopes(serde_json::json!({"client_id": "c", "scp": []})), Ok(Vec::<String>::new()));
        let answer_names = Claims { default_scope: false, ..claims_names.clone() };
        let answer = serde_json::json!({"client_id": "c", "scope": null});
        let identity = token_identity(KmId(0), &answer_names, answer.as_object().unwrap(), 1);
        assert_eq!(identity.map(|identity| identity.scopes), Ok(Vec::<String>::new()));
        assert_eq!(
            scopes(serde_json::json!({"client_id": "c", "scope": null, "scp": "read"})),
            Ok(vec!["read".into()])
        );
        assert_eq!(scopes(serde_json::json!({"client_id": "c", "scope": 5})), Err("wrong_claim_type"));
    }

    /// WSO2's OAuthAuthenticator refuses an API key or an internal key as an access token (900901),
    /// by rule: here one that its key manager's keys verify and that names a client.
    #[test]
    fn an_api_key_or_internal_key_is_no_bearer_token() {
        use crate::auth::keys::testkeys::{jwk, sign_raw};
        use jsonwebtoken::Algorithm;
        let json = serde_json::json!({"key_managers": [{"name": "apim", "issuer": "https://apim",
            "jwks": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "b")]}}]});
        let config = compile(&json.to_string());
        let token = |claims: &str| {
            let payload = format!(r#"{{"iss":"https://apim","exp":2000,"client_id":"c",{claims}}}"#);
            sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"b"}"#, &payload, "rsa-b.pem", Algorithm::RS256)
        };
        let verified = |claims: &str| verify(&config.auth, &[], &token(claims), 1_000, false);
        let refused = BearerStep::Failed(AuthFailure::Invalid.because("api_key_as_bearer"));
        assert_eq!(verified(r#""token_type":"apiKey""#), refused);
        assert_eq!(verified(r#""token_type":"InternalKey""#), refused);
        assert_eq!(verified(r#""application":{"uuid":"a"}"#), refused, "WSO2's API key without token_type");
        assert!(matches!(verified(r#""application":{"uuid":"a"},"consumerKey":"c""#), BearerStep::Verified(_)));
        assert!(matches!(verified(r#""token_type":"Bearer""#), BearerStep::Verified(_)));
    }

    /// WSO2's `JWTValidator.validateSubscriptionUsingKeyManager` refuses a valid JWT that names no
    /// consumer key (no claim of `claims.client_id`) with 900908 (403, "Resource forbidden"), not
    /// as bad credentials: its signature and times were good. A bad token stays 900901.
    #[test]
    fn a_valid_token_without_a_client_id_is_refused_as_forbidden() {
        use crate::auth::failure_fault;
        use crate::auth::keys::testkeys::{jwk, sign_raw};
        use crate::schema::Compatibility;
        use jsonwebtoken::Algorithm;
        let json = serde_json::json!({"key_managers": [{"name": "apim", "issuer": "https://apim",
            "jwks": {"keys": [jwk("rsa-b.pem", Algorithm::RS256, "b")]}}]});
        let config = compile(&json.to_string());
        let token = |payload: &str| {
            sign_raw(r#"{"alg":"RS256","typ":"JWT","kid":"b"}"#, payload, "rsa-b.pem", Algorithm::RS256)
        };
        for compatibility in [Compatibility::Apim, Compatibility::Microgateway] {
            let no_client =
                verify(&config.auth, &[], &token(r#"{"iss":"https://apim","exp":2000,"sub":"u"}"#), 1_000, false);
            let BearerStep::Failed(refusal) = no_client else { panic!("{no_client:?}") };
            let fault = failure_fault(refusal.failure, compatibility);
            assert_eq!((fault.code, fault.id.spec().status), (900908, 403), "{refusal:?}");
            let expired =
                verify(&config.auth, &[], &token(r#"{"iss":"https://apim","exp":500,"sub":"u"}"#), 1_000, false);
            let BearerStep::Failed(refusal) = expired else { panic!("{expired:?}") };
            assert_eq!(failure_fault(refusal.failure, Compatibility::Apim).code, 900901);
        }
    }

    /// A key manager with an HMAC secret beside a JWKS endpoint that is down (its keys never
    /// fetched): a token the secret cannot verify (RS256, no `kid`) could not be checked, an
    /// outage (900900), not bad credentials; a token the secret can verify is checked with it,
    /// whatever `kid` it names (refused as an outage, it could never pass).
    #[test]
    fn a_token_only_the_unreachable_jwks_could_verify_is_an_outage() {
        use crate::auth::keys::testkeys::sign_raw;
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        const SECRET: &str = "a-32-byte-or-longer-shared-secret-for-hs256";
        let json = serde_json::json!({"key_managers": [{"name": "km", "issuer": "https://km",
            "hmac_secret": SECRET, "algorithms": ["RS256", "HS256"], "jwks": {"cluster": "km"}}]});
        let config = compile(&json.to_string());
        let down = [FetchedKeys { failed: true, last_attempt: Some(1_000), ..Default::default() }];
        let payload = r#"{"iss":"https://km","exp":2000,"client_id":"c"}"#;
        let rs256 = sign_raw(r#"{"alg":"RS256","typ":"JWT"}"#, payload, "rsa-a.pem", Algorithm::RS256);
        let outage = BearerStep::Failed(AuthFailure::KeyManagerUnavailable.because("keys_unavailable"));
        assert_eq!(verify(&config.auth, &down, &rs256, 1_000, true), outage);
        let header = Header { kid: Some("hmac-1".into()), ..Header::new(Algorithm::HS256) };
        let claims: Value = serde_json::from_str(payload).unwrap();
        let hs256 = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert!(matches!(verify(&config.auth, &down, &hs256, 1_000, true), BearerStep::Verified(_)));
    }

    /// An opaque token is introspected whatever dots it holds: two do not make it a JWT.
    #[test]
    fn an_opaque_token_with_two_dots_is_introspected() {
        let config = compile(
            r#"{"key_managers": [{"name": "a", "issuer": "https://a", "jwks": {"cluster": "a"},
                "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s"}}]}"#,
        );
        let step = verify(&config.auth, &[], "opaque.token.value", 1_000, false);
        assert_eq!(step, BearerStep::Introspect { key_manager: KmId(0) });
    }

    #[test]
    fn the_token_cache_compares_whole_tokens_is_bounded_and_respects_exp() {
        let identity = |exp| {
            Rc::new(TokenIdentity {
                key_manager: KmId(0),
                client_id: "c".into(),
                scopes: vec![],
                end_user: None,
                user_token: false,
                expires_at: exp,
                token_id: None,
                token_twin: None,
                subject: None,
                claims: None,
            })
        };
        let mut cache = TokenCache::new(2);
        cache.insert("header.payload.SIGNATURE", identity(100));
        assert!(cache.get("header.payload.SIGNATURE", 100).is_some());
        assert!(cache.get("header.payload.SIGNATURE", 101).is_none(), "never past exp");
        // Same length, same signature, another payload: a different token.
        assert!(cache.get("header.PAYLOAD.SIGNATURE", 50).is_none());
        cache.insert("b.b.b", identity(100));
        cache.insert("c.c.c", identity(100));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("header.payload.SIGNATURE", 50).is_none(), "the oldest was evicted");
        assert!(cache.get("c.c.c", 50).is_some());
        // Each token's text is held once, however the cache finds it.
        let long = format!("h.p.{}", "s".repeat(4_000));
        cache.insert(&long, identity(100));
        assert!(
            cache.token_bytes_held() < 2 * long.len(),
            "{} bytes for one token of {}",
            cache.token_bytes_held(),
            long.len()
        );
        let mut off = TokenCache::new(0);
        off.insert("a.a.a", identity(100));
        assert!(off.get("a.a.a", 1).is_none());
    }
}

#[cfg(test)]
#[path = "vendor_tokens_tests.rs"]
mod vendor_tokens_tests;
