//! API keys: opaque keys looked up in the directory by their SHA-256 (compared in constant time,
//! never stored in clear), and WSO2's self-contained JWT API keys verified against the API
//! manager's keys with the same rules as bearer tokens (see `docs/CONFIG.md`, `api_key_jwt`).

use serde_json::{Map, Value};

use super::bearer::jwt_failure;
use super::jwt::{self, JwtError, Rules};
use super::settings::AuthConfig;
use super::{credential_hash, looks_like_jws, AuthFailure, Identity, Refusal};
use crate::directory::Directory;
use crate::vocab::KeyType;

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
    /// How a revocation names the key: its `jti`, else its signature.
    pub token_id: String,
    /// Its other name, for an ECDSA key without `jti` (`jwt::Parsed::revocation_ids`).
    pub token_twin: Option<String>,
}

/// Verifies an API key: a WSO2 JWT API key when it is a JWS, else an opaque key looked up by its
/// SHA-256, compared in constant time.
pub fn verify(auth: &AuthConfig, directory: &dyn Directory, key: &str, now: u64) -> Result<Identity, Refusal> {
    if key.len() > auth.credentials.max_token_bytes {
        return Err(AuthFailure::Invalid.because("too_large"));
    }
    if looks_like_jws(key) {
        return verify_jwt_api_key(auth, key, now).map(Identity::JwtApiKey);
    }
    directory
        .api_key(&credential_hash(key))
        .map(Identity::ApiKey)
        .ok_or(AuthFailure::Invalid.because("unknown_api_key"))
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
fn verify_jwt_api_key(auth: &AuthConfig, key: &str, now: u64) -> Result<JwtApiKey, Refusal> {
    let verifier = auth.api_key_jwt.as_ref().ok_or(AuthFailure::Invalid.because("jwt_api_keys_not_configured"))?;
    let parsed = jwt::parse(key, auth.credentials.max_token_bytes).map_err(jwt_failure)?;
    // The same checks, in the same order, as bearer tokens: issuer, signature, times, audience.
    if let Some(issuer) = &verifier.issuer {
        if parsed.issuer() != Some(issuer.as_str()) {
            return Err(jwt_failure(JwtError::UnknownIssuer));
        }
    }
    let rules = Rules {
        algorithms: &verifier.algorithms,
        audiences: &[],
        clock_skew_s: verifier.clock_skew_s,
        require_expiry: false,
    };
    parsed
        .check(&rules, verifier.keys.candidates(parsed.kid.as_deref(), parsed.algorithm), now)
        .map_err(jwt_failure)?;
    let (token_id, token_twin) = parsed.revocation_ids();
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
        token_id,
        token_twin,
    })
}
