//! API keys: opaque keys looked up in the directory by their SHA-256 (compared in constant time,
//! never stored in clear), and WSO2's self-contained JWT API keys verified against the API
//! manager's keys with the same rules as bearer tokens (see `docs/CONFIG.md`, `api_key_jwt`).

use std::net::IpAddr;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::bearer::{jwt_failure, TokenCache};
use super::jwt::{self, JwtError, Rules};
use super::settings::{copyable_claims, issuer_key, ApiKeyJwt, AuthConfig};
use super::{credential_hash, looks_like_jws, AuthFailure, Identity, Refusal};
use crate::cidr::IpRange;
use crate::directory::Directory;
use crate::vocab::KeyType;

/// A verified WSO2 JWT API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtApiKey {
    pub key_type: KeyType,
    /// The application's UUID (`application.uuid`), else its numeric id.
    pub application_id: String,
    /// The application's numeric id (`application.id`), empty when the key has none.
    pub application_number: String,
    /// The key's claims the backend JWT copies, when it copies any.
    pub claims: Option<Box<Map<String, Value>>>,
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
    /// `permittedIP`: the addresses and networks the client must be in; `None` when the key sets
    /// none. An entry that is no address or network matches no client.
    pub permitted_ips: Option<Vec<IpRange>>,
    /// `permittedReferer`: the patterns one of which the `Referer` must match; `None` when the key
    /// sets none.
    pub permitted_referers: Option<Vec<String>>,
    /// Its `exp` (Unix seconds); `u64::MAX` for a key of unlimited validity (no `exp`).
    pub expires_at: u64,
}

impl super::bearer::Expiring for JwtApiKey {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl JwtApiKey {
    /// Whether a request from `client_ip` with this `Referer` may use the key, as WSO2's
    /// `validateAPIKeyRestrictions` decides (900908 otherwise): the client is in one of the
    /// `permittedIP` networks (an unknown address is in none), and the `Referer` matches one of the
    /// `permittedReferer` patterns (a request without one matches none). Each applies when set.
    pub fn permits(&self, client_ip: Option<IpAddr>, referer: Option<&str>) -> bool {
        let ip_permitted = self
            .permitted_ips
            .as_ref()
            .is_none_or(|ranges| client_ip.is_some_and(|address| ranges.iter().any(|range| range.contains(address))));
        let referer_permitted = self.permitted_referers.as_ref().is_none_or(|patterns| {
            referer.is_some_and(|referer| patterns.iter().any(|pattern| referer_matches(pattern, referer)))
        });
        ip_permitted && referer_permitted
    }
}

/// Whether a `Referer` matches a `permittedReferer` pattern as a whole, `*` standing for any run
/// of characters (none included) and everything else for itself.
pub fn referer_matches(pattern: &str, referer: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = referer.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = parts.collect();
    // Without a `*` the pattern is the whole value.
    let Some(last) = parts.pop() else { return rest.is_empty() };
    // Each middle part at its first place (taking it earliest leaves the most for the rest), and
    // the last at the end.
    for part in parts {
        let Some(found) = rest.find(part) else { return false };
        rest = rest.get(found + part.len()..).unwrap_or_default();
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A restriction claim: a comma-separated list, absent (or null, or empty) when the key sets none;
/// a value of another type refuses the key.
fn restriction_list(claims: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, Refusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(list)) if list.is_empty() => Ok(None),
        Some(Value::String(list)) => {
            Ok(Some(list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).map(String::from).collect()))
        }
        Some(_) => Err(AuthFailure::Invalid.because("wrong_claim_type")),
    }
}

/// Verifies an API key with the worker's verified JWT API keys at hand ([`verify`] for the rest):
/// as WSO2's gateway keeps verified API keys in its API key cache, a key's signature is checked
/// once per worker, and the key is never taken from the cache past its `exp`.
pub fn verify_cached(
    auth: &AuthConfig,
    directory: &dyn Directory,
    verified: &mut TokenCache<JwtApiKey>,
    key: &str,
    now: u64,
) -> Result<Identity, Refusal> {
    if let Some(cached) = verified.get(key, now) {
        return Ok(Identity::JwtApiKey(Rc::clone(cached)));
    }
    let identity = verify(auth, directory, key, now)?;
    if let Identity::JwtApiKey(jwt_api_key) = &identity {
        verified.insert(key, Rc::clone(jwt_api_key));
    }
    Ok(identity)
}

/// Verifies an API key: a WSO2 JWT API key when JWT API keys are configured and the key is a JWS
/// ([`looks_like_jws`]: its header decodes as one), else an opaque key looked up by its SHA-256,
/// compared in constant time. A JWS that fails verification is refused, never looked up.
pub fn verify(auth: &AuthConfig, directory: &dyn Directory, key: &str, now: u64) -> Result<Identity, Refusal> {
    if key.len() > auth.credentials.max_token_bytes {
        return Err(AuthFailure::Invalid.because("too_large"));
    }
    if let Some(verifier) = auth.api_key_jwt.as_ref().filter(|_| looks_like_jws(key)) {
        return verify_jwt_api_key(verifier, auth.credentials.max_token_bytes, key, now)
            .map(|key| Identity::JwtApiKey(Rc::new(key)));
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

/// WSO2's `GatewayUtils.isAPIKey`: a token whose `token_type` is `apiKey` or, without a
/// `token_type`, one with an `application` claim and no `consumerKey` (an API-M 3.x JWT access
/// token has both).
pub fn is_api_key(claims: &Map<String, Value>) -> bool {
    let claim = |name: &str| claims.get(name).filter(|value| !value.is_null());
    match claim("token_type") {
        Some(kind) => kind.as_str() == Some("apiKey"),
        None => claim("application").is_some() && claim("consumerKey").is_none(),
    }
}

/// WSO2's `GatewayUtils.isInternalKey`: a token whose `token_type` is `InternalKey`.
pub fn is_internal_key(claims: &Map<String, Value>) -> bool {
    claims.get("token_type").and_then(Value::as_str) == Some("InternalKey")
}

/// Verifies a WSO2 JWT API key (see `docs/CONFIG.md`, `api_key_jwt`, for the claims read).
///
/// Only an API key is one ([`is_api_key`]): an access token or an internal key signed by the same
/// key is refused (900901), as WSO2's `ApiKeyAuthenticator` refuses it. As WSO2 issues them, keys
/// of unlimited validity carry no `exp`: such a key does not expire (revocation is what ends it);
/// an `exp` that is present is enforced, as is `nbf`.
fn verify_jwt_api_key(verifier: &ApiKeyJwt, max_bytes: usize, key: &str, now: u64) -> Result<JwtApiKey, Refusal> {
    let parsed = jwt::parse(key, max_bytes).map_err(jwt_failure)?;
    if !is_api_key(&parsed.payload) {
        return Err(AuthFailure::Invalid.because("not_an_api_key"));
    }
    // WSO2's gateway (`ApiKeyAuthenticatorUtils.isAPIKey`) takes as an API key only a JWS whose
    // header says `typ: JWT` (compared as Nimbus's `JOSEObjectType` compares, ignoring case) and
    // names its signing key by `kid` (the certificate alias): any other is refused, 900901, even
    // when a configured key verifies it.
    if !parsed.typ.as_deref().is_some_and(|typ| typ.eq_ignore_ascii_case("JWT")) {
        return Err(AuthFailure::Invalid.because("api_key_not_typ_jwt"));
    }
    if parsed.kid.is_none() {
        return Err(AuthFailure::Invalid.because("api_key_without_kid"));
    }
    // The same checks, in the same order, as bearer tokens: issuer, signature, times, audience.
    if let Some(issuer) = &verifier.issuer {
        if parsed.issuer().map(issuer_key) != Some(issuer_key(issuer)) {
            return Err(jwt_failure(JwtError::UnknownIssuer));
        }
    }
    let rules = Rules {
        algorithms: &verifier.algorithms,
        audiences: &[],
        clock_skew_s: verifier.clock_skew_s,
        require_expiry: false,
    };
    let expires_at = parsed
        .check(&rules, verifier.keys.candidates(parsed.kid.as_deref(), parsed.algorithm), now)
        .map_err(jwt_failure)?
        .unwrap_or(u64::MAX);
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
    let permitted_ips = restriction_list(claims, "permittedIP")?
        .map(|entries| entries.iter().filter_map(|entry| IpRange::parse(entry).ok()).collect());
    let permitted_referers = restriction_list(claims, "permittedReferer")?;
    Ok(JwtApiKey {
        key_type,
        application_id,
        application_number: api_key_text(application, "id")?,
        claims: verifier.copy_except.as_deref().map(|excluded| copyable_claims(claims, excluded)),
        application_name: api_key_text(application, "name")?,
        owner: api_key_text(application, "owner")?,
        tier: api_key_text(application, "tier")?,
        end_user,
        subscribed,
        token_id,
        token_twin,
        permitted_ips,
        permitted_referers,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixture::compile;
    use crate::auth::keys::testkeys::{jwk, sign_raw};
    use jsonwebtoken::Algorithm;

    /// An API with one application whose opaque key has this SHA-256, with JWT API keys or not.
    fn with_key(sha256: &str, jwt_api_keys: bool) -> crate::auth::fixture::Fixture {
        let mut json = serde_json::json!({
            "apis": [{"name": "S", "context": "/s", "version": "1", "security": ["api_key"],
                      "endpoints": {"production": "p"}, "resources": [{"method": "GET", "path": "/x"}]}],
            "applications": [{"id": "app", "name": "App", "api_keys": [{"sha256": sha256}]}],
            "subscriptions": [{"application": "app", "api": "S:1"}]
        });
        if jwt_api_keys {
            json["api_key_jwt"] = serde_json::json!({"keys": [jwk("rsa-b.pem", Algorithm::RS256, "apikey-b")]});
        }
        compile(&json.to_string())
    }

    fn sha256_hex(key: &str) -> String {
        credential_hash(key).iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// HOWTO "Hash an API key" puts no limit on an opaque key's form: one with two dots
    /// (`live.shop.key`) is no JWS (its first part is no JWS header) and is looked up by its hash,
    /// whether JWT API keys are configured or not.
    #[test]
    fn an_opaque_key_with_two_dots_is_found() {
        for jwt_api_keys in [false, true] {
            let fixture = with_key(&sha256_hex("live.shop.key"), jwt_api_keys);
            let found = verify(&fixture.auth, &fixture.directory, "live.shop.key", 0);
            assert!(matches!(found, Ok(Identity::ApiKey(_))), "{found:?} (JWT API keys: {jwt_api_keys})");
        }
    }

    /// A JWS is a JWT API key where JWT API keys are configured: one that fails verification is
    /// refused, even when an opaque key with its hash is configured; where they are not, it is an
    /// opaque key like any other.
    #[test]
    fn a_jws_that_fails_verification_is_never_looked_up() {
        let forged = sign_raw(
            r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#,
            r#"{"token_type":"apiKey","application":{"uuid":"app"}}"#,
            "rsa-a.pem",
            Algorithm::RS256,
        );
        let fixture = with_key(&sha256_hex(&forged), true);
        let refused = verify(&fixture.auth, &fixture.directory, &forged, 0);
        assert!(
            matches!(refused, Err(Refusal { failure: AuthFailure::Invalid, reason }) if reason != "unknown_api_key")
        );
        let fixture = with_key(&sha256_hex(&forged), false);
        assert!(matches!(verify(&fixture.auth, &fixture.directory, &forged, 0), Ok(Identity::ApiKey(_))));
    }

    /// WSO2's gateway (`ApiKeyAuthenticatorUtils.isAPIKey`) refuses, 900901, a JWT API key whose
    /// header lacks `typ: JWT` (Nimbus compares the type ignoring case) or a `kid`, even one the
    /// configured key verifies: only such keys are taken here too.
    #[test]
    fn a_jwt_api_key_needs_typ_jwt_and_a_kid_in_its_header() {
        let fixture = with_key(&sha256_hex("unused"), true);
        let claims = r#"{"token_type":"apiKey","application":{"uuid":"app"}}"#;
        let cases = [
            (r#"{"alg":"RS256","typ":"JWT","kid":"apikey-b"}"#, None),
            (r#"{"alg":"RS256","typ":"jwt","kid":"apikey-b"}"#, None),
            (r#"{"alg":"RS256","kid":"apikey-b"}"#, Some("api_key_not_typ_jwt")),
            (r#"{"alg":"RS256","typ":"at+jwt","kid":"apikey-b"}"#, Some("api_key_not_typ_jwt")),
            (r#"{"alg":"RS256","typ":7,"kid":"apikey-b"}"#, Some("api_key_not_typ_jwt")),
            (r#"{"alg":"RS256","typ":"JWT"}"#, Some("api_key_without_kid")),
        ];
        for (header, refused) in cases {
            let key = sign_raw(header, claims, "rsa-b.pem", Algorithm::RS256);
            match (verify(&fixture.auth, &fixture.directory, &key, 0), refused) {
                (Ok(Identity::JwtApiKey(_)), None) => {}
                (Err(Refusal { failure: AuthFailure::Invalid, reason }), Some(expected)) => {
                    assert_eq!(reason, expected, "{header}")
                }
                (other, _) => panic!("{header}: {other:?}"),
            }
        }
    }

    #[test]
    fn referer_patterns_match_whole_values_with_star_for_any_run() {
        let cases = [
            ("https://app.example/*", "https://app.example/", true),
            ("https://app.example/*", "https://app.example/a/b", true),
            ("https://app.example/*", "https://app.example", false),
            ("https://app.example/*", "http://x/https://app.example/", false),
            ("https://app.example/", "https://app.example/", true),
            ("https://app.example/", "https://app.example/x", false),
            ("*", "", true),
            ("*.example/*", "https://a.example/p", true),
            ("*.example/*", "https://a.example.evil/p", false),
            ("ab*ba", "aba", false),
            ("ab*ba", "abba", true),
            ("a*b*c", "a-c-b-c", true),
            ("a*b*c", "a-c-c", false),
            ("https://app.example", "https://app.exampleX", false),
        ];
        for (pattern, referer, expected) in cases {
            assert_eq!(referer_matches(pattern, referer), expected, "{pattern} {referer}");
        }
    }
}
