//! Key managers (JWT keys, introspection, claim names) and WSO2 JWT API key verification, as users
//! write them.

use super::RawSecret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key manager: an OAuth2 issuer whose JWT access tokens are verified locally and/or whose
/// opaque tokens are introspected.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "KeyManager")]
#[serde(deny_unknown_fields)]
pub struct RawKeyManager {
    /// Name, unique. Required.
    pub name: String,
    /// The `iss` of its JWTs, compared exactly except for one trailing `/` (`https://km/` and
    /// `https://km` are one issuer, as both spellings are in use). Required.
    pub issuer: String,
    /// Where its JWT verification keys come from. Defaults to none: its JWTs are introspected
    /// (by the key manager that introspects, as API-M introspects the JWTs of a key manager with
    /// `self_validate_jwt` off), or refused (900901) when none does.
    #[serde(default)]
    pub jwks: Option<RawJwks>,
    /// Shared secret for HS256/384/512 tokens, at least 32 bytes (random bytes: give it with
    /// `"encoding": "base64"`). HS algorithms are refused without it. Defaults to none.
    #[serde(default)]
    pub hmac_secret: Option<RawSecret>,
    /// Algorithms accepted. Defaults to RS256/384/512, PS256/384/512, ES256/384 and EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Accepted `aud` values; empty accepts any. Defaults to none. Set it where the issuer also
    /// signs other JWTs (an OIDC provider's ID tokens carry the client's id as `aud`): without
    /// it, any JWT the issuer signs with a client id is taken as an access token, as WSO2 takes it.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed clock skew for a JWT's `exp` and `nbf`, seconds, at most 3600 (an introspected
    /// token is taken until the `exp` of the key manager's answer, no skew: the key manager said
    /// when it stops being active). Defaults to 60.
    #[serde(default = "default_skew")]
    #[schemars(range(max = 3600))]
    pub clock_skew_s: u64,
    /// Which claims carry what. Defaults as documented on each field.
    #[serde(default)]
    pub claims: RawClaims,
    /// RFC 7662 introspection of opaque tokens; one key manager at most has it (an opaque token
    /// names no issuer). It also introspects a JWT that names no key manager with keys for it (no
    /// or an unknown `iss`, or a key manager without `jwks` and `hmac_secret`), as WSO2's gateway
    /// takes such a JWT for an opaque token. Defaults to none.
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"].map(String::from).to_vec()
}
pub(crate) fn default_skew() -> u64 {
    60
}

/// JWT verification keys: inline, or fetched from a JWKS URL through an Envoy cluster.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "Jwks")]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    /// Inline JWKs (`[{"kty":"RSA",...}]`). Exactly one of `keys` and `cluster` is required.
    /// A key that cannot verify (RSA under 2048 or over 4096 bits, a value not in base64url, an
    /// EC point off its curve or an unknown `crv`, `use` other than `sig`, an `oct` key) is
    /// refused at load, naming it (`keys[j]`). A fetched set skips such keys instead, logging
    /// each skipped `kid` and why once per new set; a set with no usable key is refused.
    #[serde(default)]
    pub keys: Option<Vec<serde_json::Value>>,
    /// Envoy cluster serving the JWKS.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Path of the JWKS on that cluster. Defaults to `/jwks`.
    #[serde(default = "default_jwks_path")]
    pub path: String,
    /// `:authority` of the fetch: a host and an optional port. Defaults to the cluster name, or to
    /// the service host of an Istio cluster name (`outbound|<port>||<host>`); a cluster name that
    /// is no host name needs it.
    #[serde(default)]
    pub authority: Option<String>,
    /// Seconds between refreshes (an unknown `kid` also triggers one, at most every 5 s), 1 to
    /// 86400 (a key removed from the set is trusted until the next), in effect at least the
    /// fetch's `timeout_ms` plus a second. The last good set is kept when a fetch fails. Defaults
    /// to 300.
    #[serde(default = "default_refresh")]
    #[schemars(range(min = 1, max = 86400))]
    pub refresh_s: u64,
    /// Fetch timeout, milliseconds, 1 to 60000. Defaults to 2000.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u64,
}

fn default_jwks_path() -> String {
    "/jwks".to_string()
}
fn default_refresh() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    2000
}

/// Claim names.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "Claims")]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    /// Claims holding the client id, first present wins (Okta's tokens name it `cid`, Azure AD
    /// v1's `appid`). Where this is set (to other than the default), a claim that is an array
    /// gives its first item, as API-M reads a key manager's `consumer_key_claim` (ForgeRock's
    /// client id can be a list, API-M's source notes). An introspection
    /// answer is read by RFC 7662's `client_id` first, then these. A verified JWT with none of
    /// them names no application: 900908 (403), as WSO2's gateway answers a JWT without its
    /// consumer key claim; an introspection answer with none is taken as an inactive token
    /// (900901). Defaults to `["consumerKey", "azp", "client_id"]`: API-M's own (`consumerKey`,
    /// else `azp`, when a key manager names no `consumer_key_claim`), then `client_id` (WSO2 IS
    /// 6+, Keycloak service accounts); an array is refused under these (900901).
    #[serde(default = "default_client_id_claims")]
    pub client_id: Vec<String>,
    /// Claims holding scopes: a space-separated string or an array. First present wins. An
    /// introspection answer is read by RFC 7662's `scope` first, then these. Defaults to
    /// `["scope"]`: WSO2's gateway reads `scope` only unless the key manager's `scopes_claim` names
    /// another, so a token whose scopes only `scp` holds has none (900910 on a scoped resource);
    /// name `scp` for Okta and Azure AD.
    #[serde(default = "default_scope_claims")]
    pub scopes: Vec<String>,
    /// Claim holding the end user (Keycloak's user name is `preferred_username`, Azure AD's
    /// `upn`). An introspection answer's RFC 7662 `username` comes first, as in WSO2. Defaults to
    /// `sub`.
    #[serde(default = "default_sub")]
    pub end_user: String,
    /// Claim holding WSO2's token type (`APPLICATION` or `APPLICATION_USER`). Only this claim
    /// saying `APPLICATION_USER` makes a user token; without it a token is an application token.
    /// Defaults to `aut`.
    #[serde(default = "default_aut")]
    pub token_type: String,
}

impl Default for RawClaims {
    fn default() -> Self {
        RawClaims {
            client_id: default_client_id_claims(),
            scopes: default_scope_claims(),
            end_user: default_sub(),
            token_type: default_aut(),
        }
    }
}

/// API-M's consumer key claims when a key manager names none, then `client_id`.
pub(crate) fn default_client_id_claims() -> Vec<String> {
    ["consumerKey", "azp", "client_id"].map(String::from).to_vec()
}
fn default_scope_claims() -> Vec<String> {
    vec!["scope".to_string()]
}
fn default_sub() -> String {
    "sub".to_string()
}
fn default_aut() -> String {
    "aut".to_string()
}

/// RFC 7662 token introspection through an Envoy cluster.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "Introspection")]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// Envoy cluster of the introspection endpoint. Required.
    pub cluster: String,
    /// Path of the endpoint. Defaults to `/oauth2/introspect`.
    #[serde(default = "default_introspection_path")]
    pub path: String,
    /// `:authority` of the call: a host and an optional port. Defaults to the cluster name, or to
    /// the service host of an Istio cluster name (`outbound|<port>||<host>`); a cluster name that
    /// is no host name needs it.
    #[serde(default)]
    pub authority: Option<String>,
    /// The gateway's client id at the key manager (HTTP Basic). Required.
    pub client_id: String,
    /// The gateway's client secret (text). Required; give it as `{"env": "NAME"}` to keep it out
    /// of Envoy's config dump.
    pub client_secret: RawSecret,
    /// Call timeout, milliseconds, 1 to 60000; a timeout answers 900900. Defaults to 2000.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u64,
    /// Active results are cached (all workers) until min(this, the token's `exp`); an active
    /// answer to a call made before the token's refusal was cached (revoked meanwhile) does not
    /// replace that refusal. Defaults to 300.
    #[serde(default = "default_refresh")]
    pub cache_ttl_s: u64,
    /// Inactive results are cached this long. Defaults to 10.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl_s: u64,
    /// The most introspection calls a second this Envoy makes to this key manager, all workers
    /// together; a token the caches do not hold beyond it answers 900900 (with a paced warning),
    /// so a flood of made-up tokens cannot flood the key manager. 1 to 100000. Defaults to none:
    /// every token the caches do not hold is introspected, as WSO2's gateway does.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100000))]
    pub calls_per_second: Option<u64>,
}

fn default_introspection_path() -> String {
    "/oauth2/introspect".to_string()
}
fn default_negative_ttl() -> u64 {
    10
}

/// Verification of WSO2's self-contained JWT API keys. An API key whose first part is a JWS header
/// is verified as one (a JWS that fails is refused, 900901); any other key, and every key when
/// `api_key_jwt` is not set, is an opaque key looked up by its hash. Only WSO2 API keys are taken:
/// `token_type` `apiKey`, or without `token_type` an `application` and no `consumerKey` (an access
/// token or an internal key signed by the same key is refused, 900901; an API key sent as a bearer
/// token is refused too). As WSO2's gateway, only a key whose JOSE header has `typ` `JWT` (any
/// case) and a `kid` is taken (any other is refused, 900901, whatever key signed it): keys that
/// API-M issued have both, but a key minted by another tool without them is refused. Claims
/// read: `keytype` (`PRODUCTION` or `SANDBOX`; absent is production,
/// as in WSO2), `application` (an object: `uuid` or `id`, `name`, `owner`, `tier`),
/// `subscribedAPIs` (an array of objects: `name`, `version`, `context`, `subscriptionTier`; the API
/// must be listed by its versioned context, `/pizzashack/1.0.0` or `/v1/tpl` for `/{version}/tpl`,
/// and its version, as WSO2 matches: the name is not compared), `permittedIP` (comma-separated
/// addresses and CIDR networks, IPv4 or IPv6: the client, Envoy's `source.address` as blocking
/// conditions read it, must be in one), `permittedReferer` (comma-separated patterns: the whole
/// `Referer` must match one, `*` standing for any run of characters; a request without `Referer`
/// matches none), `sub` (the end user), `iss`, `exp` and `nbf`. A request the key's restrictions
/// do not permit is refused with 900908 (403, "Access forbidden for the invocations"), before its
/// subscription is checked; empty restriction claims restrict nothing. A key without `exp` does
/// not expire (WSO2 issues keys of unlimited validity so); an `exp` present is enforced. A claim
/// of the wrong type refuses the key.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "ApiKeyJwt")]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyJwt {
    /// The API manager's signing keys as inline JWKs, each with the `kid` its API keys carry in
    /// their header (WSO2's gateway finds the certificate by that alias): a key is verified only by
    /// the JWK of its `kid`, so a JWK without `kid` verifies none (900901). Required. A key that
    /// cannot verify is refused at load, naming it (`api_key_jwt.keys[j]`).
    pub keys: Vec<serde_json::Value>,
    /// Required `iss`, if set (compared as key managers' issuers are). Defaults to none (any
    /// issuer).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Algorithms accepted. Defaults to `["RS256"]`.
    #[serde(default = "default_api_key_algorithms")]
    pub algorithms: Vec<String>,
    /// Allowed clock skew, seconds, at most 3600. Defaults to 60.
    #[serde(default = "default_skew")]
    #[schemars(range(max = 3600))]
    pub clock_skew_s: u64,
}

fn default_api_key_algorithms() -> Vec<String> {
    vec!["RS256".to_string()]
}
