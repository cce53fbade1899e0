//! Key validation's part of the configuration, compiled: where credentials are read from, the key
//! managers (their keys, introspection endpoints, claim names) and WSO2 JWT API key verification.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use sha2::Digest;

use super::keys::{self, KeySet, VerificationKey};
use crate::schema::checks::{call_authority, check_cluster_call, check_header_name, check_header_value};
use crate::schema::{resolve_secret, ConfigError, RawApiKeyJwt, RawCredentials, RawKeyManager};
use crate::vocab::{KmId, Secret};

/// Auth-context headers for the backend, after the configured prefix.
pub const CONTEXT_HEADERS: [&str; 6] =
    ["application-id", "application-name", "subscriber", "key-type", "tier", "end-user"];

/// Where credentials are read from and how the upstream request is cleaned of them.
#[derive(Clone, Debug)]
pub struct CredentialSettings {
    pub authorization_header: String,
    pub api_key_header: String,
    pub realm: String,
    pub strip: bool,
    pub max_token_bytes: usize,
    pub verified_cache_entries: usize,
    pub api_key_query_param: String,
    pub context_header_prefix: String,
    /// Whether authorized requests carry the auth-context headers upstream.
    pub send_context: bool,
    /// The auth-context headers' names (`context_header_prefix` before each of
    /// [`CONTEXT_HEADERS`]), built once.
    pub context_headers: [String; 6],
}

/// Claim names of a key manager's tokens.
#[derive(Clone, Debug)]
pub struct Claims {
    pub client_id: Vec<String>,
    /// Whether a client-id claim that is an array gives its first item: only where the key
    /// manager names its client-id claims, as API-M reads a list only for a configured
    /// `consumer_key_claim` (ForgeRock's), never for its own `consumerKey` and `azp`.
    pub client_id_lists: bool,
    /// Whether a token without a scopes claim has the scope `default`: a JWT's (API-M's
    /// `DefaultJWTTransformer`), not an introspection answer's.
    pub default_scope: bool,
    pub scopes: Vec<String>,
    pub end_user: String,
    pub token_type: String,
    /// Keep the caller's claims for the backend JWT, except these (set when a backend JWT copies
    /// caller claims; see [`Claims::copyable`]).
    pub copy_except: Option<Vec<String>>,
}

/// Claims never copied from a caller's token into the backend JWT (WSO2's restricted set).
pub const RESTRICTED_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "application", "tierInfo", "subscribedAPIs", "aut", "active"];

impl Claims {
    /// The caller claims the backend JWT copies, when it copies any.
    pub fn copyable(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Box<serde_json::Map<String, serde_json::Value>>> {
        self.copy_except.as_deref().map(|excluded| copyable_claims(claims, excluded))
    }
}

/// A token's claims the backend JWT copies: all but WSO2's restricted ones and `excluded`.
pub fn copyable_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    excluded: &[String],
) -> Box<serde_json::Map<String, serde_json::Value>> {
    // Inserted one by one: collecting into the map links a stable sort (6 KB of .wasm) to put in
    // order claims that come in order.
    let mut kept = serde_json::Map::new();
    for (name, value) in claims {
        if !RESTRICTED_CLAIMS.contains(&name.as_str()) && !excluded.contains(name) {
            kept.insert(name.clone(), value.clone());
        }
    }
    Box::new(kept)
}

/// A compiled JWKS endpoint.
#[derive(Clone, Debug)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_s: u64,
    pub timeout_ms: u32,
}

/// A compiled introspection endpoint.
#[derive(Clone, Debug)]
pub struct Introspection {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub timeout_ms: u32,
    pub cache_ttl_s: u64,
    pub negative_cache_ttl_s: u64,
    /// At most this many calls a second per Envoy (`None`: no limit).
    pub calls_per_second: Option<u64>,
}

/// A compiled key manager.
#[derive(Debug)]
pub struct KeyManager {
    pub id: KmId,
    /// Identifies the key manager's shared-data caches: a digest of what makes its answers what
    /// they are (issuer, JWKS and introspection endpoints, gateway client, claim names, cache
    /// times, skew), so a reloaded or different configuration never reads another key manager's
    /// cached answers.
    pub cache_id: String,
    pub name: String,
    pub issuer: String,
    pub algorithms: Vec<Algorithm>,
    /// Keys given inline.
    pub static_keys: KeySet,
    /// Keys fetched from a JWKS URL (kept per worker and in shared data).
    pub remote_jwks: Option<RemoteJwks>,
    pub hmac: Option<VerificationKey>,
    pub audiences: Vec<String>,
    pub clock_skew_s: u64,
    pub claims: Claims,
    pub introspection: Option<Introspection>,
}

/// Compiled WSO2 JWT API key verification.
#[derive(Debug)]
pub struct ApiKeyJwt {
    pub keys: KeySet,
    pub issuer: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew_s: u64,
    /// Keep a key's claims for the backend JWT, except these (set when a backend JWT copies
    /// caller claims, as for key managers' tokens).
    pub copy_except: Option<Vec<String>>,
}

/// Key validation's configuration.
#[derive(Debug)]
pub struct AuthConfig {
    pub credentials: CredentialSettings,
    pub key_managers: Vec<KeyManager>,
    /// `iss` to key manager.
    pub issuers: HashMap<String, KmId>,
    pub api_key_jwt: Option<ApiKeyJwt>,
    /// Names the configuration (hex SHA-256 of its text) in the Envoy-wide cache of verified
    /// tokens: a token verified under another configuration is verified again.
    pub fingerprint: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            credentials: CredentialSettings::from(RawCredentials::default()),
            key_managers: Vec::new(),
            issuers: HashMap::new(),
            api_key_jwt: None,
            fingerprint: String::new(),
        }
    }
}

impl AuthConfig {
    /// Whether verified tokens are shared by the workers (with the verified-token cache on, and
    /// a configuration to name them by).
    pub fn shares_verified_tokens(&self) -> bool {
        self.credentials.verified_cache_entries > 0 && !self.fingerprint.is_empty()
    }

    /// Checks and compiles key validation's part; inline secrets add warnings.
    pub fn compile(
        credentials: RawCredentials,
        key_managers: Vec<RawKeyManager>,
        api_key_jwt: Option<RawApiKeyJwt>,
        warnings: &mut Vec<String>,
    ) -> Result<AuthConfig, ConfigError> {
        let credentials = CredentialSettings::compile(credentials)?;
        let mut compiled = Vec::with_capacity(key_managers.len());
        let mut issuers = HashMap::new();
        let mut names = Vec::with_capacity(key_managers.len());
        for (index, raw) in key_managers.into_iter().enumerate() {
            let field = format!("key_managers[{index}]");
            let id = KmId(index as u32);
            if raw.name.is_empty() || names.contains(&raw.name) {
                return Err(ConfigError::new(format!("{field}.name"), "must be non-empty and unique"));
            }
            names.push(raw.name.clone());
            check_issuer(&format!("{field}.issuer"), &raw.issuer)?;
            if issuers.insert(issuer_key(&raw.issuer).to_string(), id).is_some() {
                return Err(ConfigError::new(
                    format!("{field}.issuer"),
                    "must be unique (an issuer with and without a trailing `/` is one issuer)",
                ));
            }
            let km = compile_key_manager(&field, id, raw, warnings)?;
            // An opaque token names no issuer: one key manager answers for all of them, and a
            // second one would never be asked.
            if km.introspection.is_some() && compiled.iter().any(|other: &KeyManager| other.introspection.is_some()) {
                return Err(ConfigError::new(
                    format!("{field}.introspection"),
                    "only one key manager may introspect opaque tokens (an opaque token names no issuer)",
                ));
            }
            compiled.push(km);
        }
        let api_key_jwt = match api_key_jwt {
            Some(raw) => Some(compile_api_key_jwt(raw)?),
            None => None,
        };
        Ok(AuthConfig { credentials, key_managers: compiled, issuers, api_key_jwt, fingerprint: String::new() })
    }

    pub fn key_manager(&self, id: KmId) -> Option<&KeyManager> {
        self.key_managers.get(id.index())
    }

    /// The key managers' names, in order (how client ids name their key manager).
    pub fn key_manager_names(&self) -> Vec<String> {
        self.key_managers.iter().map(|km| km.name.clone()).collect()
    }
}

impl CredentialSettings {
    pub fn compile(raw: RawCredentials) -> Result<CredentialSettings, ConfigError> {
        check_header_name("credentials.authorization_header", &raw.authorization_header)?;
        check_header_name("credentials.api_key_header", &raw.api_key_header)?;
        if raw.realm.contains('"') || raw.realm.contains('\\') {
            return Err(ConfigError::new("credentials.realm", "must not contain `\"` or `\\`"));
        }
        check_header_value("credentials.realm", &raw.realm)?;
        if raw.max_token_bytes < 64 || raw.max_token_bytes > 65_536 {
            return Err(ConfigError::new("credentials.max_token_bytes", "must be from 64 to 65536"));
        }
        if raw.verified_cache_entries > 1_000_000 {
            return Err(ConfigError::new("credentials.verified_cache_entries", "must be at most 1000000"));
        }
        check_header_name("credentials.context_header_prefix", raw.context_header_prefix.trim_end_matches('-'))?;
        if raw.api_key_query_param.is_empty()
            || !raw.api_key_query_param.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new("credentials.api_key_query_param", "must be a plain parameter name"));
        }
        Ok(CredentialSettings::from(raw))
    }
}

impl From<RawCredentials> for CredentialSettings {
    /// The settings as written (unchecked: [`CredentialSettings::compile`] checks first).
    fn from(raw: RawCredentials) -> Self {
        CredentialSettings {
            authorization_header: raw.authorization_header,
            api_key_header: raw.api_key_header,
            realm: raw.realm,
            strip: raw.strip,
            max_token_bytes: raw.max_token_bytes,
            verified_cache_entries: raw.verified_cache_entries,
            api_key_query_param: raw.api_key_query_param,
            context_headers: CONTEXT_HEADERS.map(|suffix| format!("{}{suffix}", raw.context_header_prefix)),
            context_header_prefix: raw.context_header_prefix,
            send_context: raw.context_headers,
        }
    }
}

fn parse_algorithms(field: &str, names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(field, "must list at least one algorithm"));
    }
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            name.parse::<Algorithm>().map_err(|_| {
                ConfigError::new(format!("{field}[{index}]"), format!("`{name}` is not a supported algorithm"))
            })
        })
        .collect()
}

fn compile_key_manager(
    field: &str,
    id: KmId,
    raw: RawKeyManager,
    warnings: &mut Vec<String>,
) -> Result<KeyManager, ConfigError> {
    let algorithms = parse_algorithms(&format!("{field}.algorithms"), &raw.algorithms)?;
    let hmac = match &raw.hmac_secret {
        Some(secret) => {
            let secret = resolve_secret(&format!("{field}.hmac_secret"), secret, warnings)?;
            if secret.0.len() < 32 {
                return Err(ConfigError::new(format!("{field}.hmac_secret"), "must be at least 32 bytes"));
            }
            Some(keys::hmac_key(&secret.0))
        }
        None => None,
    };
    let wants_hmac = algorithms.iter().any(|algorithm| algorithm.family() == AlgorithmFamily::Hmac);
    if wants_hmac && hmac.is_none() {
        return Err(ConfigError::new(format!("{field}.algorithms"), "HS256/384/512 need `hmac_secret`"));
    }
    let mut static_keys = KeySet::default();
    let mut remote_jwks = None;
    if let Some(jwks) = raw.jwks {
        let jwks_field = format!("{field}.jwks");
        match (&jwks.keys, &jwks.cluster) {
            (Some(keys), None) => {
                static_keys = KeySet::from_configured(keys).map_err(|(index, reason)| match index {
                    Some(index) => ConfigError::new(format!("{jwks_field}.keys[{index}]"), reason),
                    None => ConfigError::new(format!("{jwks_field}.keys"), reason),
                })?;
            }
            (None, Some(cluster)) => {
                check_cluster_call(&jwks_field, cluster, ("path", &jwks.path), jwks.timeout_ms)?;
                // A key removed from the set stays trusted until the next refresh: a day at most
                // (300000, milliseconds in a field of seconds, would be three and a half days).
                if !(1..=86_400).contains(&jwks.refresh_s) {
                    return Err(ConfigError::new(
                        format!("{jwks_field}.refresh_s"),
                        "must be from 1 to 86400 (seconds, not milliseconds)",
                    ));
                }
                let authority = call_authority(&jwks_field, jwks.authority.as_deref(), cluster)?;
                remote_jwks = Some(RemoteJwks {
                    cluster: cluster.clone(),
                    path: jwks.path.clone(),
                    authority,
                    refresh_s: jwks.refresh_s,
                    timeout_ms: jwks.timeout_ms as u32,
                });
            }
            _ => return Err(ConfigError::new(jwks_field, "set exactly one of `keys` and `cluster`")),
        }
    }
    let introspection = match &raw.introspection {
        Some(introspection) => {
            let introspection_field = format!("{field}.introspection");
            check_cluster_call(
                &introspection_field,
                &introspection.cluster,
                ("path", &introspection.path),
                introspection.timeout_ms,
            )?;
            if introspection.client_id.is_empty() || introspection.client_id.contains(':') {
                return Err(ConfigError::new(
                    format!("{introspection_field}.client_id"),
                    "must be non-empty, without `:`",
                ));
            }
            let authority =
                call_authority(&introspection_field, introspection.authority.as_deref(), &introspection.cluster)?;
            let secret_field = format!("{introspection_field}.client_secret");
            let client_secret = resolve_secret(&secret_field, &introspection.client_secret, warnings)?;
            if std::str::from_utf8(&client_secret.0).is_err() {
                return Err(ConfigError::new(secret_field, "must be text (it is sent with HTTP Basic)"));
            }
            if introspection.calls_per_second.is_some_and(|calls| !(1..=100_000).contains(&calls)) {
                return Err(ConfigError::new(
                    format!("{introspection_field}.calls_per_second"),
                    "must be from 1 to 100000",
                ));
            }
            Some(Introspection {
                cluster: introspection.cluster.clone(),
                path: introspection.path.clone(),
                authority,
                client_id: introspection.client_id.clone(),
                client_secret,
                timeout_ms: introspection.timeout_ms as u32,
                cache_ttl_s: introspection.cache_ttl_s,
                negative_cache_ttl_s: introspection.negative_cache_ttl_s,
                calls_per_second: introspection.calls_per_second,
            })
        }
        None => None,
    };
    if static_keys.keys.is_empty() && remote_jwks.is_none() && hmac.is_none() && introspection.is_none() {
        return Err(ConfigError::new(
            field,
            "verifies nothing: give it `jwks` (keys or a cluster), `hmac_secret` or `introspection`",
        ));
    }
    let claims = raw.claims;
    if claims.client_id.is_empty()
        || claims.scopes.is_empty()
        || claims.end_user.is_empty()
        || claims.token_type.is_empty()
    {
        return Err(ConfigError::new(format!("{field}.claims"), "claim names must not be empty"));
    }
    check_clock_skew(&format!("{field}.clock_skew_s"), raw.clock_skew_s)?;
    if raw.audiences.iter().any(|audience| !is_claim_value(audience)) {
        return Err(ConfigError::new(
            format!("{field}.audiences"),
            "an audience is non-empty, without spaces at either end or control characters",
        ));
    }
    let mut key_manager = KeyManager {
        id,
        cache_id: String::new(),
        name: raw.name,
        issuer: raw.issuer,
        algorithms,
        static_keys,
        remote_jwks,
        hmac,
        audiences: raw.audiences,
        clock_skew_s: raw.clock_skew_s,
        claims: Claims {
            client_id_lists: claims.client_id != crate::schema::default_client_id_claims(),
            client_id: claims.client_id,
            default_scope: true,
            scopes: claims.scopes,
            end_user: claims.end_user,
            token_type: claims.token_type,
            copy_except: None,
        },
        introspection,
    };
    key_manager.cache_id = key_manager.derive_cache_id();
    Ok(key_manager)
}

impl KeyManager {
    /// Keeps the caller's claims for the backend JWT, except these; the cached answers' id
    /// follows, so answers cached under other copying rules are not read.
    pub fn copy_claims_except(&mut self, excluded: Vec<String>) {
        self.claims.copy_except = Some(excluded);
        self.cache_id = self.derive_cache_id();
    }

    /// What the cached answers depend on: where they come from (clusters, paths, authorities,
    /// the gateway's client and secret), and how they are read and kept (the claim names, what
    /// the backend JWT copies, the cache times, the audiences, the skew).
    fn derive_cache_id(&self) -> String {
        let jwks = self.remote_jwks.as_ref().map(|jwks| (&jwks.cluster, &jwks.path, &jwks.authority));
        let introspection = self.introspection.as_ref().map(|i| {
            let secret = crate::hashing::hex(&sha2::Sha256::digest(&i.client_secret.0));
            (&i.cluster, &i.path, &i.authority, &i.client_id, secret, i.cache_ttl_s, i.negative_cache_ttl_s)
        });
        let identity = format!(
            "{}|{jwks:?}|{introspection:?}|{:?}|{:?}|{}",
            self.issuer, self.claims, self.audiences, self.clock_skew_s
        );
        let digest = sha2::Sha256::digest(identity.as_bytes());
        crate::hashing::hex(digest.get(..8).unwrap_or_default())
    }
}

/// How an issuer is compared: as written, less one trailing `/`. Issuers are written both ways
/// (WSO2's `https://host:9443/oauth2/token`, Auth0's `https://tenant.auth0.com/`), and a
/// configuration with the other spelling than the tokens' would load and refuse every token.
pub fn issuer_key(issuer: &str) -> &str {
    issuer.strip_suffix('/').unwrap_or(issuer)
}

/// A string a token's `iss` or `aud` could be compared with: any string (RFC 7519 lets `My API`
/// be an audience), but not empty, and without the spaces at either end or control characters
/// that copying it from somewhere leaves and no token carries.
fn is_claim_value(value: &str) -> bool {
    !value.is_empty() && value.trim() == value && !value.chars().any(char::is_control)
}

/// An issuer as tokens carry it (see [`is_claim_value`]), and not `/` alone.
fn check_issuer(field: &str, issuer: &str) -> Result<(), ConfigError> {
    if issuer_key(issuer).is_empty() || !is_claim_value(issuer) {
        return Err(ConfigError::new(
            field,
            "must be non-empty, without spaces at either end or control characters (as the tokens' `iss`)",
        ));
    }
    Ok(())
}

/// The most clock skew accepted, seconds: an hour. A larger value is almost surely milliseconds
/// written into a field of seconds (`60000`), which would take tokens that expired hours ago.
const MAX_CLOCK_SKEW_S: u64 = 3600;

fn check_clock_skew(field: &str, skew_s: u64) -> Result<(), ConfigError> {
    if skew_s > MAX_CLOCK_SKEW_S {
        return Err(ConfigError::new(
            field,
            format!("{skew_s} s is more than {MAX_CLOCK_SKEW_S} s (the field is in seconds, not milliseconds)"),
        ));
    }
    Ok(())
}

fn compile_api_key_jwt(raw: RawApiKeyJwt) -> Result<ApiKeyJwt, ConfigError> {
    check_clock_skew("api_key_jwt.clock_skew_s", raw.clock_skew_s)?;
    if let Some(issuer) = &raw.issuer {
        check_issuer("api_key_jwt.issuer", issuer)?;
    }
    let algorithms = parse_algorithms("api_key_jwt.algorithms", &raw.algorithms)?;
    if algorithms.iter().any(|algorithm| algorithm.family() == AlgorithmFamily::Hmac) {
        return Err(ConfigError::new("api_key_jwt.algorithms", "API keys are verified with public keys only"));
    }
    let keys = KeySet::from_configured(&raw.keys).map_err(|(index, reason)| match index {
        Some(index) => ConfigError::new(format!("api_key_jwt.keys[{index}]"), reason),
        None => ConfigError::new("api_key_jwt.keys", reason),
    })?;
    Ok(ApiKeyJwt { keys, issuer: raw.issuer, algorithms, clock_skew_s: raw.clock_skew_s, copy_except: None })
}
