//! The pure steps of key validation: which credential a request offers, whether it is genuine
//! (JWT verified locally, opaque token introspected, API key looked up or verified), and whether
//! its application may call this resource (subscription, key type, token type, scopes). The
//! stream drives these steps and performs the calls they ask for.

use std::collections::{HashMap, VecDeque};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::jwt::{self, JwtError};
use super::keys::KeySet;
use crate::catalogue::{Fault, FaultId};
use crate::config::{
    Api, AppKey, Compatibility, Config, KeyManager, KeyType, Resource, SecurityScheme, SubscriptionState,
};

/// A credential the request offers. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    Bearer(String),
    ApiKey(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Bearer(_) => f.write_str("Bearer(***)"),
            Presented::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

/// What credential extraction found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    Missing,
    Found(Presented),
    /// `Authorization: Bearer` with nothing usable after it.
    BadFormat,
    /// An `Authorization` scheme other than Bearer.
    BadScheme,
    /// A credential header whose value is not UTF-8 (Envoy lets such bytes through).
    Unreadable,
}

/// A credential header as the request has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialHeader<'a> {
    Absent,
    Text(&'a str),
    /// Present, but not UTF-8.
    Unreadable,
}

/// Finds the credential for a secured resource: a bearer token where OAuth2 is accepted, else an
/// API key (header, or query parameter where the API allows it) where API keys are accepted.
pub fn extract(
    config: &Config,
    api: &Api,
    resource: &Resource,
    authorization: CredentialHeader<'_>,
    api_key_header: CredentialHeader<'_>,
    query: Option<&str>,
) -> Extracted {
    let mut problem = None;
    fn present<'h>(header: CredentialHeader<'h>) -> Option<&'h str> {
        match header {
            CredentialHeader::Text(value) => Some(value.trim()).filter(|value| !value.is_empty()),
            CredentialHeader::Absent | CredentialHeader::Unreadable => None,
        }
    }
    if resource.security.contains(&SecurityScheme::Oauth2) {
        if authorization == CredentialHeader::Unreadable {
            problem = Some(Extracted::Unreadable);
        }
        if let Some(value) = present(authorization) {
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            let token = rest.trim();
            if !scheme.eq_ignore_ascii_case("bearer") {
                problem = Some(Extracted::BadScheme);
            } else if token.is_empty() || token.contains(char::is_whitespace) {
                problem = Some(Extracted::BadFormat);
            } else {
                return Extracted::Found(Presented::Bearer(token.to_string()));
            }
        }
    }
    if resource.security.contains(&SecurityScheme::ApiKey) {
        if api_key_header == CredentialHeader::Unreadable {
            return Extracted::Unreadable;
        }
        if let Some(key) = present(api_key_header) {
            return Extracted::Found(Presented::ApiKey(key.to_string()));
        }
        if api.api_key_in_query {
            if let Some(key) = query_param(query, &config.credentials.api_key_query_param) {
                return Extracted::Found(Presented::ApiKey(key));
            }
        }
    }
    problem.unwrap_or(Extracted::Missing)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name && !value.is_empty()).then(|| percent_decode(value))
    })
}

/// Percent-decodes a query component (`+` is a space); invalid UTF-8 is replaced, never refused.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match (byte == b'%').then(|| crate::matcher::hex_pair(bytes, index + 1)).flatten() {
            Some(decoded) => {
                out.push(decoded);
                index += 3;
            }
            None => {
                out.push(if byte == b'+' { b' ' } else { byte });
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a credential failed, before it becomes a WSO2 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    BadFormat,
    BadScheme,
    Invalid,
    Expired,
    Inactive,
    /// The key manager could not answer (timeout, 5xx, unreachable, a garbled answer, keys that
    /// could not be fetched): 900900, never 401.
    KeyManagerUnavailable,
}

impl AuthFailure {
    /// This failure, with the reason operators see.
    pub fn because(self, reason: &'static str) -> Refusal {
        Refusal { failure: self, reason }
    }
}

/// Why a credential was refused: the failure decides the WSO2 code the client gets; the reason
/// is only for operators (a debug log line and the counter `apim.auth.refused.<reason>`) and never
/// names the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub failure: AuthFailure,
    pub reason: &'static str,
}

/// The fault for a failure; `compatibility` picks API-M's or the Microgateway's codes.
pub fn failure_fault(failure: AuthFailure, compatibility: Compatibility) -> Fault {
    let microgateway = compatibility == Compatibility::Microgateway;
    let invalid = Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token");
    match failure {
        AuthFailure::Missing => Fault::new(FaultId::MissingCredentials),
        AuthFailure::Invalid => invalid,
        AuthFailure::BadFormat if microgateway => {
            Fault::new(FaultId::InvalidCredentialFormat).with_challenge_error("invalid_token")
        }
        AuthFailure::BadScheme if microgateway => {
            Fault::new(FaultId::InvalidAuthScheme).with_challenge_error("invalid_token")
        }
        AuthFailure::Expired if microgateway => {
            Fault::new(FaultId::AccessTokenExpired).with_challenge_error("invalid_token")
        }
        AuthFailure::Inactive if microgateway => {
            Fault::new(FaultId::AccessTokenInactive).with_challenge_error("invalid_token")
        }
        AuthFailure::BadFormat | AuthFailure::BadScheme | AuthFailure::Expired | AuthFailure::Inactive => invalid,
        AuthFailure::KeyManagerUnavailable => Fault::new(FaultId::AuthGeneralError),
    }
}

/// A verified OAuth2 token (also what the introspection cache stores for an active token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenIdentity {
    pub key_manager: usize,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub end_user: Option<String>,
    /// WSO2's APPLICATION_USER (true) or APPLICATION (false).
    pub user_token: bool,
    pub expires_at: u64,
}

/// A verified WSO2 JWT API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtApiKey {
    pub key_type: KeyType,
    pub application_id: String,
    pub application_name: String,
    pub owner: String,
    pub tier: String,
    pub end_user: Option<String>,
    /// `(name, version, context, subscription tier)` of each subscribed API.
    pub subscribed: Vec<(String, String, String, String)>,
}

/// Who is calling, once the credential is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Token(TokenIdentity),
    ApiKey(AppKey),
    JwtApiKey(JwtApiKey),
}

/// What verifying a bearer token needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BearerStep {
    Verified(TokenIdentity),
    Failed(Refusal),
    /// An opaque token: introspect it at this key manager.
    Introspect {
        key_manager: usize,
    },
    /// The issuer's remote keys are missing or lack the token's `kid`: fetch its JWKS.
    FetchJwks {
        key_manager: usize,
    },
}

fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

fn jwt_failure(error: JwtError) -> Refusal {
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
        | JwtError::WrongAudience
        | JwtError::WrongClaimType => AuthFailure::Invalid,
    };
    failure.because(error.name())
}

/// What a worker knows of a key manager's fetched JWKS.
#[derive(Clone, Copy, Debug, Default)]
pub struct RemoteKeyView<'k> {
    /// The keys last fetched (by any worker), if any.
    pub keys: Option<&'k KeySet>,
    /// They are older than the configured refresh interval.
    pub stale: bool,
    /// The last fetch this worker made failed (unreachable, timed out, an error status, garbage).
    pub fetch_failed: bool,
}

/// Verifies a bearer token. `remote_keys(km)` tells what is known of a key manager's fetched
/// keys; `may_fetch(km)` whether asking for a fetch is allowed now.
///
/// A token whose keys could not be had (its `kid` is unknown, or no keys were ever fetched, and
/// the last fetch failed) is refused as a key manager outage (900900), not as bad credentials:
/// the check could not be made.
pub fn verify_bearer<'k>(
    config: &Config,
    remote_keys: impl Fn(usize) -> RemoteKeyView<'k>,
    token: &str,
    now: u64,
    may_fetch: impl Fn(usize) -> bool,
) -> BearerStep {
    if token.len() > config.credentials.max_token_bytes {
        return BearerStep::Failed(AuthFailure::Invalid.because("too_large"));
    }
    if !looks_like_jws(token) {
        return match config.key_managers.iter().position(|km| km.introspection.is_some()) {
            Some(key_manager) => BearerStep::Introspect { key_manager },
            None => BearerStep::Failed(AuthFailure::Invalid.because("opaque_without_introspection")),
        };
    }
    let parsed = match jwt::parse(token, config.credentials.max_token_bytes) {
        Ok(parsed) => parsed,
        Err(error) => return BearerStep::Failed(jwt_failure(error)),
    };
    let Some(&index) = parsed.issuer().and_then(|issuer| config.issuers.get(issuer)) else {
        return BearerStep::Failed(jwt_failure(JwtError::UnknownIssuer));
    };
    let Some(km) = config.key_managers.get(index) else {
        return BearerStep::Failed(AuthFailure::KeyManagerUnavailable.because("internal_key_manager_index"));
    };
    let remote = remote_keys(index);
    let kid = parsed.kid.as_deref();
    let kid_known = |set: Option<&KeySet>| kid.is_some_and(|kid| set.is_some_and(|set| set.has_kid(kid)));
    let unknown_kid = kid.is_some() && !kid_known(remote.keys) && !kid_known(Some(&km.static_keys));
    if km.remote_jwks.is_some() {
        let wanted = remote.keys.is_none() || remote.stale || unknown_kid;
        if wanted && may_fetch(index) {
            return BearerStep::FetchJwks { key_manager: index };
        }
        let keys_missing =
            unknown_kid || (remote.keys.is_none() && km.static_keys.keys.is_empty() && km.hmac.is_none());
        if keys_missing && remote.fetch_failed {
            return BearerStep::Failed(AuthFailure::KeyManagerUnavailable.because("keys_unavailable"));
        }
    }
    let candidates = km
        .static_keys
        .candidates(kid, parsed.algorithm)
        .chain(remote.keys.into_iter().flat_map(|set| set.candidates(kid, parsed.algorithm)))
        .chain(km.hmac.iter());
    if let Err(error) = parsed.verify(&km.algorithms, candidates) {
        return BearerStep::Failed(jwt_failure(error));
    }
    let expires_at = match jwt::check_times(&parsed.payload, now, km.clock_skew_s) {
        Ok(expires_at) => expires_at,
        Err(error) => return BearerStep::Failed(jwt_failure(error)),
    };
    if let Err(error) = jwt::check_audience(&parsed.payload, &km.audiences) {
        return BearerStep::Failed(jwt_failure(error));
    }
    match token_identity(index, km, &parsed.payload, expires_at) {
        Ok(identity) => BearerStep::Verified(identity),
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
fn token_identity(
    key_manager: usize,
    km: &KeyManager,
    claims: &Map<String, Value>,
    expires_at: u64,
) -> Result<TokenIdentity, &'static str> {
    let mut client_id = None;
    for name in &km.claims.client_id {
        if let Some(found) = string_claim(claims, name)? {
            client_id = Some(found.to_string());
            break;
        }
    }
    let client_id = client_id.ok_or("no_client_id")?;
    let mut scopes = Vec::new();
    if let Some(value) = km.claims.scopes.iter().find_map(|name| claims.get(name)) {
        match value {
            Value::String(text) => scopes = text.split_whitespace().map(String::from).collect(),
            Value::Array(items) => {
                for item in items {
                    scopes.push(item.as_str().ok_or("wrong_claim_type")?.to_string());
                }
            }
            _ => return Err("wrong_claim_type"),
        }
    }
    let end_user = string_claim(claims, &km.claims.end_user)?.map(String::from);
    // Only an explicit claim makes a user token: a service account's `sub` is no end user.
    let user_token =
        string_claim(claims, &km.claims.token_type)?.is_some_and(|kind| kind.eq_ignore_ascii_case("APPLICATION_USER"));
    Ok(TokenIdentity { key_manager, client_id, scopes, end_user, user_token, expires_at })
}

// ---------------------------------------------------------------------------------------------
// Introspection (RFC 7662).
// ---------------------------------------------------------------------------------------------

/// SHA-256 of a credential: what caches are keyed by (the credential itself is never stored).
pub fn credential_hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Headers of an outgoing call.
pub type CallHeaders = Vec<(String, String)>;

/// The introspection call: headers and form body, the gateway authenticating with HTTP Basic.
pub fn introspection_request(km: &KeyManager, token: &str) -> Option<(CallHeaders, Vec<u8>)> {
    let introspection = km.introspection.as_ref()?;
    let credentials = STANDARD.encode(format!(
        "{}:{}",
        form_encode(&introspection.client_id),
        form_encode(&String::from_utf8_lossy(&introspection.client_secret.0))
    ));
    let headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), introspection.path.clone()),
        (":authority".to_string(), introspection.authority.clone()),
        ("content-type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ("accept".to_string(), "application/json".to_string()),
        ("authorization".to_string(), format!("Basic {credentials}")),
    ];
    let body = format!("token={}&token_type_hint=access_token", form_encode(token)).into_bytes();
    Some((headers, body))
}

/// What an introspection answer means; the strings are the reasons operators see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Introspected {
    Active(TokenIdentity),
    Inactive(&'static str),
    Unavailable(&'static str),
}

/// A NumericDate field of an introspection answer: absent, or a non-negative integer. Anything
/// else (a string, a negative number, a fraction) is a malformed answer.
fn answer_time(answer: &Map<String, Value>, name: &str) -> Result<Option<u64>, ()> {
    match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// Reads an introspection answer. Only a 200 with a well-typed JSON object is an answer: a
/// timeout, a reset, a 5xx, anything unreadable, or a field of the wrong type means the key
/// manager is unavailable (900900, nothing cached), not that the token is bad.
pub fn parse_introspection(
    key_manager: usize,
    km: &KeyManager,
    status: Option<u16>,
    body: &[u8],
    now: u64,
) -> Introspected {
    if status != Some(200) {
        return Introspected::Unavailable("introspection_status");
    }
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return Introspected::Unavailable("introspection_not_json");
    };
    match answer.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Introspected::Inactive("inactive"),
        _ => return Introspected::Unavailable("introspection_malformed"),
    }
    // `token_type_hint` is only a hint: a refresh token is reported active too, and is no access token.
    match answer.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) => {
            if !kind.eq_ignore_ascii_case("bearer") && !kind.eq_ignore_ascii_case("access_token") {
                return Introspected::Inactive("not_an_access_token");
            }
        }
        Some(_) => return Introspected::Unavailable("introspection_malformed"),
    }
    let (Ok(exp), Ok(nbf)) = (answer_time(&answer, "exp"), answer_time(&answer, "nbf")) else {
        return Introspected::Unavailable("introspection_malformed");
    };
    let expires_at = match exp {
        Some(exp) if exp <= now => return Introspected::Inactive("expired"),
        Some(exp) => exp,
        None => u64::MAX,
    };
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(km.clock_skew_s)) {
        return Introspected::Inactive("not_yet_valid");
    }
    match token_identity(key_manager, km, &answer, expires_at) {
        Ok(identity) => Introspected::Active(identity),
        Err("no_client_id") => Introspected::Inactive("no_client_id"),
        Err(_) => Introspected::Unavailable("introspection_malformed"),
    }
}

/// An introspection result as cached in shared data (keyed by the token's hash, never the token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedIntrospection {
    /// Hex SHA-256 of the token (slots are shared by hashes, so the entry names its owner).
    pub hash: String,
    /// Cached until (Unix seconds).
    pub until: u64,
    /// `None` for an inactive token.
    pub identity: Option<TokenIdentity>,
}

/// Shared-data slots for introspection results: memory is bounded by the slot count.
pub const INTROSPECTION_SLOTS: u32 = 4096;

pub use crate::hashing::hex;

/// The shared-data key of the slot for a token hash at a key manager.
pub fn introspection_slot(km: &KeyManager, hash: &[u8; 32]) -> String {
    let slot = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) % INTROSPECTION_SLOTS;
    format!("apim.introspection.{}.{slot}", km.cache_id)
}

impl CachedIntrospection {
    /// What to cache for an answer: active until min(ttl, exp); inactive for the negative TTL;
    /// nothing when the key manager was unavailable.
    pub fn for_answer(
        hash: &[u8; 32],
        answer: &Introspected,
        km: &KeyManager,
        now: u64,
    ) -> Option<CachedIntrospection> {
        let introspection = km.introspection.as_ref()?;
        let (until, identity) = match answer {
            Introspected::Active(identity) => {
                (now.saturating_add(introspection.cache_ttl_s).min(identity.expires_at), Some(identity.clone()))
            }
            Introspected::Inactive(_) => (now.saturating_add(introspection.negative_cache_ttl_s), None),
            Introspected::Unavailable(_) => return None,
        };
        Some(CachedIntrospection { hash: hex(hash), until, identity })
    }

    /// Whether the entry is a fresh active answer (worth keeping over a negative one).
    pub fn is_fresh_active(bytes: &[u8], now: u64) -> bool {
        serde_json::from_slice::<CachedIntrospection>(bytes)
            .is_ok_and(|entry| now < entry.until && entry.identity.is_some_and(|identity| now < identity.expires_at))
    }

    /// The cached answer for this hash at `now`, if the slot holds it and it is fresh; the
    /// identity is reported as coming from `key_manager` (the slot belongs to it).
    pub fn lookup(bytes: &[u8], hash: &[u8; 32], key_manager: usize, now: u64) -> Option<Introspected> {
        let entry: CachedIntrospection = serde_json::from_slice(bytes).ok()?;
        if entry.hash != hex(hash) || now >= entry.until {
            return None;
        }
        Some(match entry.identity {
            Some(identity) if now < identity.expires_at => {
                Introspected::Active(TokenIdentity { key_manager, ..identity })
            }
            _ => Introspected::Inactive("inactive"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// API keys.
// ---------------------------------------------------------------------------------------------

/// Verifies an API key: a WSO2 JWT API key when it is a JWS, else an opaque key looked up by its
/// SHA-256, compared in constant time.
pub fn verify_api_key(config: &Config, key: &str, now: u64) -> Result<Identity, Refusal> {
    if key.len() > config.credentials.max_token_bytes {
        return Err(AuthFailure::Invalid.because("too_large"));
    }
    if looks_like_jws(key) {
        return verify_jwt_api_key(config, key, now).map(Identity::JwtApiKey);
    }
    let digest = credential_hash(key);
    let bucket =
        u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]]);
    let mut found = None;
    for position in config.api_key_buckets.get(&bucket).into_iter().flatten() {
        if let Some((stored, app_key)) = config.api_key_hashes.get(*position) {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(*app_key);
            }
        }
    }
    found.map(Identity::ApiKey).ok_or(AuthFailure::Invalid.because("unknown_api_key"))
}

/// A claim of a JWT API key as text: strings as they are, numbers (WSO2 writes the numeric
/// application id) in decimal; absent or null is empty; any other type is an error.
fn api_key_text(object: &Map<String, Value>, name: &str) -> Result<String, Refusal> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(_) => Err(AuthFailure::Invalid.because("wrong_claim_type")),
    }
}

/// Verifies a WSO2 JWT API key (see `docs/CONFIG.md`, `api_key_jwt`, for the claims read).
///
/// As WSO2 issues them, keys of unlimited validity carry no `exp`: such a key does not expire
/// (revocation is what ends it); an `exp` that is present is enforced, as is `nbf`.
fn verify_jwt_api_key(config: &Config, key: &str, now: u64) -> Result<JwtApiKey, Refusal> {
    let verifier = config.api_key_jwt.as_ref().ok_or(AuthFailure::Invalid.because("jwt_api_keys_not_configured"))?;
    let parsed = jwt::parse(key, config.credentials.max_token_bytes).map_err(jwt_failure)?;
    if let Some(issuer) = &verifier.issuer {
        if parsed.issuer() != Some(issuer.as_str()) {
            return Err(jwt_failure(JwtError::UnknownIssuer));
        }
    }
    parsed
        .verify(&verifier.algorithms, verifier.keys.candidates(parsed.kid.as_deref(), parsed.algorithm))
        .map_err(jwt_failure)?;
    jwt::check_times_optional_exp(&parsed.payload, now, verifier.clock_skew_s).map_err(jwt_failure)?;
    let claims = &parsed.payload;
    // WSO2's gateway takes a key without `keytype` as a production key.
    let key_type = match claims.get("keytype") {
        None | Some(Value::Null) => KeyType::Production,
        Some(Value::String(kind)) if kind == "PRODUCTION" => KeyType::Production,
        Some(Value::String(kind)) if kind == "SANDBOX" => KeyType::Sandbox,
        Some(_) => return Err(AuthFailure::Invalid.because("wrong_claim_type")),
    };
    let application = match claims.get("application") {
        Some(Value::Object(application)) => application,
        _ => return Err(AuthFailure::Invalid.because("no_application")),
    };
    let application_id = [api_key_text(application, "uuid")?, api_key_text(application, "id")?]
        .into_iter()
        .find(|id| !id.is_empty())
        .ok_or(AuthFailure::Invalid.because("no_application"))?;
    let mut subscribed = Vec::new();
    match claims.get("subscribedAPIs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(apis)) => {
            for api in apis {
                let Value::Object(api) = api else { return Err(AuthFailure::Invalid.because("wrong_claim_type")) };
                subscribed.push((
                    api_key_text(api, "name")?,
                    api_key_text(api, "version")?,
                    api_key_text(api, "context")?,
                    api_key_text(api, "subscriptionTier")?,
                ));
            }
        }
        Some(_) => return Err(AuthFailure::Invalid.because("wrong_claim_type")),
    }
    let end_user = match claims.get("sub") {
        None | Some(Value::Null) => None,
        Some(Value::String(sub)) => Some(sub.clone()),
        Some(_) => return Err(AuthFailure::Invalid.because("wrong_claim_type")),
    };
    Ok(JwtApiKey {
        key_type,
        application_id,
        application_name: api_key_text(application, "name")?,
        owner: api_key_text(application, "owner")?,
        tier: api_key_text(application, "tier")?,
        end_user,
        subscribed,
    })
}

// ---------------------------------------------------------------------------------------------
// Authorization.
// ---------------------------------------------------------------------------------------------

/// The auth context of an authorized request, sent to the backend as headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    pub cluster: String,
    pub key_type: KeyType,
    pub application_id: String,
    pub application_name: String,
    pub subscriber: String,
    pub tier: String,
    pub end_user: Option<String>,
}

fn check_subscription_state(state: SubscriptionState, key_type: KeyType) -> Result<(), Fault> {
    match state {
        SubscriptionState::Unblocked => Ok(()),
        SubscriptionState::Blocked => Err(Fault::new(FaultId::ApiTemporarilyBlocked)),
        SubscriptionState::ProdOnlyBlocked if key_type == KeyType::Production => {
            Err(Fault::new(FaultId::ApiTemporarilyBlocked))
        }
        SubscriptionState::ProdOnlyBlocked => Ok(()),
        SubscriptionState::OnHold | SubscriptionState::Rejected | SubscriptionState::Inactive => {
            Err(Fault::new(FaultId::SubscriptionInactive))
        }
    }
}

/// API keys carry no scopes: a resource that requires scopes refuses them (900910). An opaque key
/// is an application's, never a user's: user-only resources refuse it (900905).
fn api_key_resource_checks(resource: &Resource, opaque: bool) -> Result<(), Fault> {
    if !resource.scopes.is_empty() {
        return Err(Fault::new(FaultId::InsufficientScope).with_challenge_error("insufficient_scope"));
    }
    if opaque && resource.user_token_only {
        return Err(Fault::new(FaultId::IncorrectAccessTokenType).with_challenge_error("invalid_token"));
    }
    Ok(())
}

fn endpoint(api: &Api, key_type: KeyType) -> Result<String, Fault> {
    match key_type {
        KeyType::Production => {
            api.endpoints.production.clone().ok_or(Fault::new(FaultId::ProductionKeyWithoutEndpoint))
        }
        KeyType::Sandbox => api.endpoints.sandbox.clone().ok_or(Fault::new(FaultId::SandboxKeyWithoutEndpoint)),
    }
}

/// Checks, in WSO2's order: subscription (900908 none, 900907 blocked, 900909 inactive), token
/// type (900905), scopes (900910, any one of the resource's), then the key type's endpoint
/// (900901/403).
pub fn authorize(config: &Config, api: &Api, resource: &Resource, identity: &Identity) -> Result<Authorized, Fault> {
    let forbidden = || Fault::new(FaultId::ResourceForbidden);
    match identity {
        Identity::JwtApiKey(key) => {
            let versioned_context = format!("{}/{}", api.context, api.version);
            let Some((_, _, _, subscription_tier)) = key.subscribed.iter().find(|(name, version, context, _)| {
                version == &api.version && (name == &api.name || context == &versioned_context)
            }) else {
                return Err(forbidden());
            };
            api_key_resource_checks(resource, false)?;
            // An application the gateway also knows: its subscription's state applies too.
            let mut tier = if subscription_tier.is_empty() { key.tier.clone() } else { subscription_tier.clone() };
            if let Some(subscription) = config
                .application_ids
                .get(&key.application_id)
                .and_then(|application| config.subscription_index.get(&(*application, api.index)))
                .and_then(|i| config.subscriptions.get(*i))
            {
                check_subscription_state(subscription.state, key.key_type)?;
                tier = subscription.tier.clone();
            }
            Ok(Authorized {
                cluster: endpoint(api, key.key_type)?,
                key_type: key.key_type,
                application_id: key.application_id.clone(),
                application_name: key.application_name.clone(),
                subscriber: key.owner.clone(),
                tier,
                end_user: key.end_user.clone(),
            })
        }
        Identity::ApiKey(_) | Identity::Token(_) => {
            let (app_key, token) = match identity {
                Identity::ApiKey(app_key) => (*app_key, None),
                Identity::Token(token) => {
                    let app_key = *config.clients.get(&token.client_id).ok_or_else(forbidden)?;
                    // A client id belongs to the key manager that issued it.
                    if app_key.key_manager.is_some_and(|owner| owner != token.key_manager) {
                        return Err(Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token"));
                    }
                    (app_key, Some(token))
                }
                Identity::JwtApiKey(_) => return Err(forbidden()),
            };
            let application = config.applications.get(app_key.application).ok_or_else(forbidden)?;
            let subscription = config
                .subscription_index
                .get(&(app_key.application, api.index))
                .and_then(|index| config.subscriptions.get(*index))
                .ok_or_else(forbidden)?;
            check_subscription_state(subscription.state, app_key.key_type)?;
            if token.is_none() {
                api_key_resource_checks(resource, true)?;
            }
            if let Some(token) = token {
                if resource.user_token_only && !token.user_token {
                    return Err(Fault::new(FaultId::IncorrectAccessTokenType).with_challenge_error("invalid_token"));
                }
                if !resource.scopes.is_empty() && !resource.scopes.iter().any(|scope| token.scopes.contains(scope)) {
                    return Err(Fault::new(FaultId::InsufficientScope).with_challenge_error("insufficient_scope"));
                }
            }
            Ok(Authorized {
                cluster: endpoint(api, app_key.key_type)?,
                key_type: app_key.key_type,
                application_id: application.id.clone(),
                application_name: application.name.clone(),
                subscriber: application.owner.clone(),
                tier: subscription.tier.clone(),
                end_user: token.and_then(|token| token.end_user.clone()),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The per-worker verified-token cache.
// ---------------------------------------------------------------------------------------------

/// Verified JWTs, bounded (oldest evicted first), never returned past their `exp`.
///
/// Entries are found by a cheap hash of the token's length and last bytes (its signature) and
/// then compared in full: a token that shares a signature with a cached one but differs anywhere
/// else is a different token and is verified on its own. (Hashing the whole token with SHA-256
/// cost more than the rest of the request path in wasm.) The tokens are kept in worker memory only.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<u64, Vec<(Box<str>, TokenIdentity)>>,
    order: VecDeque<(u64, Box<str>)>,
    len: usize,
}

fn token_bucket(token: &str) -> u64 {
    let bytes = token.as_bytes();
    let tail = bytes.get(bytes.len().saturating_sub(32)..).unwrap_or_default();
    crate::hashing::fnv1a(bytes.len() as u64, tail)
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache { capacity, entries: HashMap::new(), order: VecDeque::new(), len: 0 }
    }

    pub fn get(&self, token: &str, now: u64) -> Option<&TokenIdentity> {
        self.entries
            .get(&token_bucket(token))?
            .iter()
            .find(|(cached, _)| cached.as_ref() == token)
            .map(|(_, identity)| identity)
            .filter(|identity| now <= identity.expires_at)
    }

    pub fn insert(&mut self, token: &str, identity: TokenIdentity) {
        if self.capacity == 0 {
            return;
        }
        let bucket = token_bucket(token);
        let entries = self.entries.entry(bucket).or_default();
        match entries.iter_mut().find(|(cached, _)| cached.as_ref() == token) {
            Some(entry) => entry.1 = identity,
            None => {
                entries.push((token.into(), identity));
                self.order.push_back((bucket, token.into()));
                self.len += 1;
            }
        }
        while self.len > self.capacity {
            let Some((bucket, oldest)) = self.order.pop_front() else { break };
            if let Some(entries) = self.entries.get_mut(&bucket) {
                entries.retain(|(cached, _)| *cached != oldest);
                if entries.is_empty() {
                    self.entries.remove(&bucket);
                }
            }
            self.len -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"{
        "key_managers": [{"name": "a", "issuer": "https://a", "jwks": {"cluster": "a"}},
                         {"name": "b", "issuer": "https://b", "jwks": {"cluster": "b"}}],
        "apis": [{"name": "S", "context": "/s", "version": "1", "security": ["oauth2", "api_key"],
                  "endpoints": {"production": "p"},
                  "resources": [{"method": "GET", "path": "/open-to-keys"},
                                {"method": "GET", "path": "/scoped", "scopes": ["read"]},
                                {"method": "GET", "path": "/users", "user_token_only": true}]}],
        "applications": [{"id": "app", "name": "App", "client_ids": [{"id": "c", "key_manager": "b"}],
                          "api_keys": [{"sha256": "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"}]},
                         {"id": "jwt-app", "name": "JwtApp"}],
        "subscriptions": [{"application": "app", "api": "S:1"}, {"application": "jwt-app", "api": "S:1", "state": "BLOCKED"}]
    }"#;

    fn config() -> Config {
        Config::from_json(CONFIG.as_bytes()).unwrap()
    }

    fn token(key_manager: usize, scopes: &[&str], user_token: bool) -> Identity {
        Identity::Token(TokenIdentity {
            key_manager,
            client_id: "c".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            end_user: Some("someone".into()),
            user_token,
            expires_at: u64::MAX,
        })
    }

    fn code(config: &Config, path: usize, identity: &Identity) -> Result<String, u32> {
        let api = &config.apis[0];
        authorize(config, api, &api.resources[path], identity).map(|a| a.application_id).map_err(|fault| fault.code)
    }

    #[test]
    fn a_client_id_is_honoured_only_from_its_own_key_manager() {
        let config = config();
        assert_eq!(code(&config, 0, &token(1, &[], false)), Ok("app".into()));
        assert_eq!(code(&config, 0, &token(0, &[], false)), Err(900901), "issuer a cannot speak for b's client");
    }

    #[test]
    fn api_keys_cannot_reach_scoped_or_user_only_resources() {
        let config = config();
        // The configured hash is SHA-256("foo\n").
        assert!(matches!(verify_api_key(&config, "foo\n", 0), Ok(Identity::ApiKey(_))));
        assert_eq!(verify_api_key(&config, "foo", 0), Err(AuthFailure::Invalid.because("unknown_api_key")));
        let opaque = Identity::ApiKey(AppKey { application: 0, key_type: KeyType::Production, key_manager: None });
        assert_eq!(code(&config, 0, &opaque), Ok("app".into()));
        assert_eq!(code(&config, 1, &opaque), Err(900910));
        assert_eq!(code(&config, 2, &opaque), Err(900905));
        assert_eq!(code(&config, 1, &token(1, &["read"], false)), Ok("app".into()));
        assert_eq!(code(&config, 2, &token(1, &[], false)), Err(900905));
        assert_eq!(code(&config, 2, &token(1, &[], true)), Ok("app".into()));
    }

    #[test]
    fn jwt_api_keys_honour_the_subscription_state_the_gateway_knows() {
        let config = config();
        let key = Identity::JwtApiKey(JwtApiKey {
            key_type: KeyType::Production,
            application_id: "jwt-app".into(),
            application_name: "JwtApp".into(),
            owner: "o".into(),
            tier: "Unlimited".into(),
            end_user: None,
            subscribed: vec![("S".into(), "1".into(), "/s/1".into(), "Gold".into())],
        });
        assert_eq!(code(&config, 0, &key), Err(900907));
    }

    #[test]
    fn only_an_explicit_claim_makes_a_user_token() {
        let config = config();
        let km = &config.key_managers[0];
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"client_id":"c","sub":"service-account-uuid"}"#).unwrap();
        assert!(!token_identity(0, km, &claims, 1).unwrap().user_token);
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"client_id":"c","aut":["APPLICATION_USER"]}"#).unwrap();
        assert_eq!(token_identity(0, km, &claims, 1), Err("wrong_claim_type"));
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"client_id":"c","sub":"bob","aut":"APPLICATION_USER"}"#).unwrap();
        assert!(token_identity(0, km, &claims, 1).unwrap().user_token);
    }

    #[test]
    fn introspected_refresh_tokens_are_not_access_tokens() {
        let config = config();
        let km = &config.key_managers[0];
        let refresh = br#"{"active":true,"client_id":"c","token_type":"refresh_token"}"#;
        assert_eq!(parse_introspection(0, km, Some(200), refresh, 0), Introspected::Inactive("not_an_access_token"));
        let access = br#"{"active":true,"client_id":"c","token_type":"Bearer"}"#;
        assert!(matches!(parse_introspection(0, km, Some(200), access, 0), Introspected::Active(_)));
        assert_eq!(parse_introspection(0, km, Some(503), access, 0), Introspected::Unavailable("introspection_status"));
        // Fields of the wrong type are a garbled answer (900900, nothing cached), never "no expiry".
        for exp in [r#""2000""#, "-5", "1.5e3", "1500.5", "true", "[]"] {
            let answer = format!(r#"{{"active":true,"client_id":"c","exp":{exp}}}"#);
            assert_eq!(
                parse_introspection(0, km, Some(200), answer.as_bytes(), 0),
                Introspected::Unavailable("introspection_malformed"),
                "exp {exp}"
            );
        }
        for field in [r#""client_id":7"#, r#""scope":5"#, r#""scope":["a",1]"#, r#""sub":{}"#, r#""token_type":1"#] {
            let answer = format!(r#"{{"active":true,"client_id":"c",{field}}}"#)
                .replace(r#""client_id":"c","client_id":7"#, r#""client_id":7"#);
            assert_eq!(
                parse_introspection(0, km, Some(200), answer.as_bytes(), 0),
                Introspected::Unavailable("introspection_malformed"),
                "{answer}"
            );
        }
        let expired = br#"{"active":true,"client_id":"c","exp":100}"#;
        assert_eq!(parse_introspection(0, km, Some(200), expired, 100), Introspected::Inactive("expired"));
    }

    #[test]
    fn the_token_cache_compares_whole_tokens_is_bounded_and_respects_exp() {
        let identity = |exp| TokenIdentity {
            key_manager: 0,
            client_id: "c".into(),
            scopes: vec![],
            end_user: None,
            user_token: false,
            expires_at: exp,
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
        let mut off = TokenCache::new(0);
        off.insert("a.a.a", identity(100));
        assert!(off.get("a.a.a", 1).is_none());
    }

    #[test]
    fn credentials_never_print() {
        assert_eq!(format!("{:?}", Presented::Bearer("secret-token".into())), "Bearer(***)");
        assert_eq!(format!("{:?}", Extracted::Found(Presented::ApiKey("k".into()))), "Found(ApiKey(***))");
    }
}
