//! What the backend receives besides the request, and what operators see, as users write it: the
//! signed backend JWT (WSO2's `X-JWT-Assertion`) and the observability settings.

use crate::vocab::choice;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RawSecret;

/// The backend JWT: WSO2 API-M 4.x's `X-JWT-Assertion`, a JWT the gateway issues for each
/// authorized request, carrying the caller's context in the `http://wso2.org/claims/` dialect
/// (subscriber, application, API, tier, key type, end user) and, by default, the caller's own
/// token claims. One JWT is issued per caller and API and reused by every worker of the Envoy
/// until `renew_before_s` before it expires.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "BackendJwt")]
#[serde(deny_unknown_fields)]
pub struct RawBackendJwt {
    /// The request header the JWT travels in (a client's copy is always removed). Defaults to
    /// `X-JWT-Assertion`, WSO2's `apim.jwt.header`.
    #[serde(default = "default_header")]
    pub header: String,
    /// How the JWT is signed: `RS256` (WSO2's `SHA256withRSA`), `ES256` (ECDSA P-256, much cheaper
    /// to issue in wasm) or `none` (unsigned, `alg: none`, as WSO2's `NONE`: only for backends that
    /// trust the network path). Defaults to `RS256`.
    #[serde(default)]
    pub algorithm: BackendJwtAlgorithm,
    /// The private key, PEM: an RSA key (`RSA PRIVATE KEY` or `PRIVATE KEY`) for `RS256`, a P-256
    /// key in PKCS#8 (`PRIVATE KEY`) for `ES256`. Required unless `algorithm` is `none`. Give it by
    /// reference (`{"env": "NAME"}`).
    #[serde(default)]
    pub private_key: Option<RawSecret>,
    /// The certificate of the signing key, PEM. When set, the JOSE header carries WSO2's `x5t`:
    /// base64url (padded) of the lowercase hex SHA-1 thumbprint of the certificate, as API-M 4.x
    /// computes it, and API-M's `kid` (unless `key_id` is set): base64url of the certificate's
    /// issuer as Java prints it, `#` and its serial number (`JWTUtil.getKID`). It must certify
    /// `private_key` (another key's certificate is refused at load: a backend that finds it by
    /// `x5t` could verify no JWT). With `algorithm` `none` the header carries the `kid` only, as
    /// WSO2's unsigned header. Defaults to none (no `x5t`, no `kid` but `key_id`).
    #[serde(default)]
    pub certificate: Option<String>,
    /// A `kid` for the JOSE header and the key `jwks_path` serves (what a backend finds the
    /// public key by in a JWKS), instead of the one API-M computes from `certificate`. Defaults to
    /// API-M's with a `certificate`, else none.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Where the gateway serves the public key as a JWKS (`GET`, no credentials: API-M 4.x's
    /// gateway JWKS endpoint, `https://<gateway>/jwks`), for backends that fetch the key to
    /// verify the JWT: `{"keys": [{"kty", "n", "e" (or "crv", "x", "y"), "use": "sig", "alg",
    /// "kid" (the JWT's), "x5c" (with `certificate`)}]}`. `null` serves none. Not served with
    /// `algorithm` `none`. Answered before any API is matched: a configured API with a resource at
    /// this path is refused at load (a control plane's API there is not reached). Defaults to
    /// `/jwks`.
    #[serde(default = "default_jwks_path")]
    pub jwks_path: Option<String>,
    /// Lifetime of an issued JWT, seconds (`exp` = `iat` + this), 1 to 86400. Defaults to 900
    /// (WSO2's token cache expiry).
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 1, max = 86400))]
    pub lifetime_s: u64,
    /// An issued JWT is reused for the same caller and API until this many seconds before its
    /// `exp`; then a new one is issued. Must be less than `lifetime_s`. Defaults to 300 (WSO2's
    /// timestamp skew).
    #[serde(default = "default_renew_before")]
    pub renew_before_s: u64,
    /// The claim dialect: the prefix of WSO2's claims (`<dialect>/applicationname`, ...).
    /// Defaults to `http://wso2.org/claims`.
    #[serde(default = "default_dialect")]
    pub claim_dialect: String,
    /// The `iss` claim. Defaults to `wso2.org/products/am`.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Copy the caller's token claims (a JWT's claims, an introspection answer's fields, or a JWT
    /// API key's claims such as `keytype`, `token_type`, `permittedIP` and `permittedReferer`)
    /// into the backend JWT, as WSO2 does, except the registered and WSO2-internal ones (`iss`,
    /// `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`, `application`, `tierInfo`, `subscribedAPIs`,
    /// `aut`, `active`) and `excluded_claims`. WSO2's own claims win a name clash. Defaults to
    /// true.
    #[serde(default = "super::default_true")]
    pub copy_caller_claims: bool,
    /// Caller claims never copied (WSO2's `apim.jwt.gateway_generator.excluded_claims`).
    /// Defaults to none.
    #[serde(default)]
    pub excluded_claims: Vec<String>,
    /// How the three parts are encoded: `base64url` (RFC 7515, what JWT libraries verify; WSO2's
    /// `apim.jwt.encoding = "base64url"`), `base64url_padded` (API-M 4.0 and 4.1), or `base64`
    /// (standard alphabet without padding: API-M 4.2's default). Defaults to `base64url`.
    #[serde(default)]
    pub encoding: BackendJwtEncoding,
    /// The subscriber's tenant domain (the `enduser` suffix). Defaults to `carbon.super`.
    #[serde(default = "default_tenant_domain")]
    pub tenant_domain: String,
    /// The subscriber's tenant id (`enduserTenantId`). Defaults to `-1234` (WSO2's super tenant).
    #[serde(default = "default_tenant_id")]
    pub tenant_id: String,
    /// How many issued JWTs the Envoy keeps for reuse (shared by its workers; a new caller may
    /// take the place of an old one), 1 to 1048576. Defaults to 4096.
    #[serde(default = "default_cache_entries")]
    #[schemars(range(min = 1, max = 1048576))]
    pub cache_entries: u32,
}

/// How the backend JWT is signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, Serialize)]
pub enum BackendJwtAlgorithm {
    #[default]
    RS256,
    ES256,
    #[serde(rename = "none")]
    None,
}

choice!(BackendJwtAlgorithm {
    RS256 = "RS256",
    ES256 = "ES256",
    None = "none",
});

/// How the backend JWT's parts are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendJwtEncoding {
    #[default]
    Base64url,
    Base64urlPadded,
    Base64,
}

choice!(BackendJwtEncoding {
    Base64url = "base64url",
    Base64urlPadded = "base64url_padded",
    Base64 = "base64",
});

fn default_header() -> String {
    "X-JWT-Assertion".to_string()
}
fn default_lifetime() -> u64 {
    900
}
fn default_renew_before() -> u64 {
    300
}
fn default_dialect() -> String {
    "http://wso2.org/claims".to_string()
}
fn default_issuer() -> String {
    "wso2.org/products/am".to_string()
}
/// Where the backend JWT's JWKS is served unless `jwks_path` says otherwise.
pub const DEFAULT_JWKS_PATH: &str = "/jwks";
fn default_jwks_path() -> Option<String> {
    Some(DEFAULT_JWKS_PATH.to_string())
}
fn default_tenant_domain() -> String {
    "carbon.super".to_string()
}
fn default_tenant_id() -> String {
    "-1234".to_string()
}
fn default_cache_entries() -> u32 {
    4096
}

/// What the filter tells operators: counters per API and per fault (with names Envoy's tag
/// extraction turns into labels, see `envoy/envoy.yaml`), and the request's API-management
/// context in Envoy's filter state for access logs.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Observability")]
#[serde(deny_unknown_fields)]
pub struct RawObservability {
    /// Count requests per API: `apim.api.<name>.version.<version>.allowed` and
    /// `apim.api.<name>.version.<version>.refused.code.<code>.level.<level>`. Defaults to true.
    #[serde(default = "super::default_true")]
    pub api_stats: bool,
    /// Count allowed and refused requests per application
    /// (`apim.application.<name>.owner.<owner>.allowed|refused`) for at most this many
    /// applications per worker, told apart by id; the others count as `_other.owner._other`, so a
    /// flood of applications cannot explode the number of stats. 0 turns application stats off.
    /// Defaults to 100.
    #[serde(default = "default_application_stats")]
    pub application_stats: u32,
    /// Put the request's context (API, resource, application, subscriber, key type, tier, end
    /// user, fault code, throttle level, the client's original path) in Envoy's filter state
    /// (`wasm.apim.*`), for access logs. Defaults to true.
    #[serde(default = "super::default_true")]
    pub access_log_fields: bool,
    /// How the access-log fields reach Envoy's filter state. Defaults to `"properties"`.
    #[serde(default)]
    pub access_log_encoding: AccessLogEncoding,
}

/// How the access-log fields reach Envoy's filter state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogEncoding {
    /// One filter-state object per field, `wasm.apim.<field>`, read with
    /// `%FILTER_STATE(wasm.apim.<field>:PLAIN)%` (any Envoy). The default.
    #[default]
    Properties,
    /// One filter-state object, `wasm.apim`, a `google.protobuf.Struct` holding every field, read
    /// with `%CEL(filter_state['wasm.apim'].<field>)%` (Envoy's CEL formatter,
    /// `envoy.formatter.cel`). At most two filter-state writes per request instead of one per
    /// field: the cheaper choice (see `bench/RESULTS.md`).
    Struct,
}

choice!(AccessLogEncoding {
    Properties = "properties",
    Struct = "struct",
});

impl Default for RawObservability {
    fn default() -> Self {
        RawObservability {
            api_stats: true,
            application_stats: default_application_stats(),
            access_log_fields: true,
            access_log_encoding: AccessLogEncoding::default(),
        }
    }
}

fn default_application_stats() -> u32 {
    100
}
