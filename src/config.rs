//! The filter's configuration: the JSON users write (serde types with documented defaults), its
//! validation, and the compiled form the request path reads.
//!
//! The JSON is Envoy's wasm `configuration` (a `google.protobuf.StringValue`) or an Istio
//! WasmPlugin's `pluginConfig`. Unknown fields are refused. [`Config::from_json`] either returns a
//! fully checked [`Config`] or one [`ConfigError`] naming the field and the reason, which the
//! glue logs before refusing the configuration.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use sha2::Digest;

use crate::auth::keys::{self, KeySet, VerificationKey};
use crate::catalogue::{self, FaultId};
use crate::matcher::{self, PathTemplate};
use crate::throttle::cidr::IpRange;
use crate::throttle::{parse_key_template, KeyPart};

// =============================================================================================
// The JSON users write.
// =============================================================================================

/// The filter configuration. Every field is optional; an empty object `{}` is a valid
/// configuration that answers every request with the gateway's 404 fault.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Config")]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// How faults are rendered. Defaults to API-M 4.x JSON with the catalogue's statuses.
    #[serde(default)]
    pub errors: RawErrors,
    /// Which gateway's codes to use where WSO2's gateways disagree (expired or inactive tokens,
    /// credential format errors). Defaults to `apim`.
    #[serde(default)]
    pub compatibility: Compatibility,
    /// What to do with a request that matches no API. Defaults to `fault` (the 404 fault).
    #[serde(default)]
    pub unmatched: Unmatched,
    /// Where credentials are read from and how the upstream request is prepared.
    #[serde(default)]
    pub credentials: RawCredentials,
    /// How the filter tells Envoy's router which cluster serves the request.
    #[serde(default)]
    pub routing: RawRouting,
    /// The APIs the gateway serves. Defaults to none.
    #[serde(default)]
    pub apis: Vec<RawApi>,
    /// Applications (API consumers): their OAuth2 client ids and API keys. Defaults to none.
    #[serde(default)]
    pub applications: Vec<RawApplication>,
    /// Subscriptions of applications to APIs; an application calls an API only through one.
    /// Defaults to none.
    #[serde(default)]
    pub subscriptions: Vec<RawSubscription>,
    /// Key managers (OAuth2 token issuers): JWT verification keys and introspection.
    /// Defaults to none.
    #[serde(default)]
    pub key_managers: Vec<RawKeyManager>,
    /// Verification of WSO2's self-contained JWT API keys. Defaults to off (JWT API keys are
    /// refused; opaque keys in `applications[].api_keys` still work).
    #[serde(default)]
    pub api_key_jwt: Option<RawApiKeyJwt>,
    /// Throttling policies by name. `Unlimited` always exists. Defaults to none.
    #[serde(default)]
    pub policies: BTreeMap<String, RawPolicy>,
    /// Blocking conditions (answer 900805 before any counter). Defaults to none.
    #[serde(default)]
    pub blocking: Vec<RawBlockingCondition>,
    /// Custom throttling policies with counter keys built from request attributes (900806).
    /// Defaults to none.
    #[serde(default)]
    pub custom_policies: Vec<RawCustomPolicy>,
    /// Hard limits per API and key type, requests per second (900801, 503). Defaults to none.
    #[serde(default)]
    pub hard_limits: Vec<RawHardLimit>,
    /// How counters behave. Defaults as documented on each field.
    #[serde(default)]
    pub throttling: RawThrottling,
}

/// One blocking condition: exactly one field is set.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "BlockingCondition")]
#[serde(deny_unknown_fields)]
pub struct RawBlockingCondition {
    /// An API, by context (`/pizzashack`), context and version (`/pizzashack/1.0.0`) or
    /// `<name>:<version>`.
    #[serde(default)]
    pub api: Option<String>,
    /// An application id.
    #[serde(default)]
    pub application: Option<String>,
    /// An end user (the token's end-user claim).
    #[serde(default)]
    pub user: Option<String>,
    /// A client IP address (Envoy's `source.address`).
    #[serde(default)]
    pub ip: Option<String>,
    /// A client IP range in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`).
    #[serde(default)]
    pub ip_range: Option<String>,
    /// A subscription: `<application id>:<api name>:<version>`.
    #[serde(default)]
    pub subscription: Option<String>,
}

/// A custom policy: a counter per distinct value of `key`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "CustomPolicy")]
#[serde(deny_unknown_fields)]
pub struct RawCustomPolicy {
    /// Name, unique. Required.
    pub name: String,
    /// Counter key template over `$userId`, `$apiContext`, `$apiVersion`, `$appId`, `$clientIp`,
    /// `$resourceKey` (e.g. `$userId:$apiContext`). `$userId` is the user the request acts for, as
    /// WSO2 has it: the credential's end user, else the application's owner (application tokens
    /// and API keys act for their owner), else `anonymous` (open resources: every unauthenticated
    /// caller shares that counter); `$appId` is `anonymous` without a credential. Required.
    pub key: String,
    /// Requests per window. Exactly one of `requests` and `bytes` is required.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Body bytes per window.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Window unit. Required.
    pub per: TimeUnit,
    /// Window length in units. Defaults to 1.
    #[serde(default = "default_one")]
    pub unit_count: u32,
    /// APIs the policy applies to, as `<name>:<version>`. Defaults to all APIs.
    #[serde(default)]
    pub apis: Vec<String>,
}

/// A hard limit: the most requests per second an API takes for one key type.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "HardLimit")]
#[serde(deny_unknown_fields)]
pub struct RawHardLimit {
    /// API as `<name>:<version>`. Required.
    pub api: String,
    /// Key type the limit applies to. Defaults to `PRODUCTION`.
    #[serde(default)]
    pub key_type: KeyType,
    /// Requests per second. Required.
    pub requests_per_second: u64,
}

/// Counter behaviour.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Throttling")]
#[serde(deny_unknown_fields)]
pub struct RawThrottling {
    /// When counters cannot be updated (compare-and-swap retries exhausted): `deny` answers
    /// 900808 (500), `allow` lets the request through. Defaults to `deny`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Compare-and-swap attempts per counter update. Defaults to 20.
    #[serde(default = "default_cas_retries")]
    pub cas_retries: u32,
    /// Add the IETF `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers (the
    /// most restrictive counted level). Defaults to false.
    #[serde(default)]
    pub rate_limit_headers: bool,
    /// Header flagging a request let through over quota (subscription policies without
    /// stop-on-quota-reach). Defaults to `x-apim-quota-exceeded`.
    #[serde(default = "default_quota_header")]
    pub quota_exceeded_header: String,
    /// Shared-data slots holding counters. A slot holds up to 256 keys counting in their current
    /// windows, so about `counter_slots` x 256 keys can be active at once; a key that finds its
    /// slot full is counted in `apim.throttle.uncounted.slot_full`, logged, and handled by
    /// `failure_mode`. The first configuration an Envoy loads fixes the count until Envoy restarts.
    /// 1 to 65536; see docs/HOWTO.md to size it. Defaults to 4096.
    #[serde(default = "default_counter_slots")]
    pub counter_slots: u32,
}

impl Default for RawThrottling {
    fn default() -> Self {
        RawThrottling {
            failure_mode: FailureMode::default(),
            cas_retries: default_cas_retries(),
            rate_limit_headers: false,
            quota_exceeded_header: default_quota_header(),
            counter_slots: default_counter_slots(),
        }
    }
}

fn default_cas_retries() -> u32 {
    20
}
fn default_quota_header() -> String {
    "x-apim-quota-exceeded".to_string()
}
fn default_counter_slots() -> u32 {
    4096
}

/// What to do when a counter cannot be updated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

/// Fault rendering.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Errors")]
#[serde(deny_unknown_fields)]
pub struct RawErrors {
    /// Body format of every fault. Defaults to `apim-json`.
    #[serde(default)]
    pub format: ErrorFormat,
    /// Per-fault overrides, keyed by code (`"900800"`, or a transport code such as `"101507"`), by
    /// code family (trailing `x`s: `"9008xx"` is every throttling code, `"1015xx"` every transport
    /// code) or by catalogue id (`"production_key_without_endpoint"`). The most specific key wins:
    /// an id over a code, a code over a family, a narrower family over a broader one. Defaults to
    /// none.
    #[serde(default)]
    pub overrides: BTreeMap<String, RawOverride>,
    /// CORS headers added to fault responses (and preflight answers). Defaults to off.
    #[serde(default)]
    pub cors: Option<RawCors>,
    /// Documentation URL used in the `details` field of the `kanali` format; the two-digit
    /// Kanali code is appended as an anchor. Defaults to `https://kanali.io/docs/v2/errorcodes/`.
    #[serde(default = "default_kanali_docs_url")]
    pub kanali_docs_url: String,
    /// The body for the `template` format. Required when `format` is `template`.
    #[serde(default)]
    pub template: Option<RawTemplate>,
}

impl Default for RawErrors {
    fn default() -> Self {
        RawErrors {
            format: ErrorFormat::default(),
            overrides: BTreeMap::new(),
            cors: None,
            kanali_docs_url: default_kanali_docs_url(),
            template: None,
        }
    }
}

fn default_kanali_docs_url() -> String {
    "https://kanali.io/docs/v2/errorcodes/".to_string()
}

/// Fault body formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorFormat {
    /// WSO2 API Manager 4.x JSON: `{"code":"900901","message":...,"description":...}`.
    #[default]
    ApimJson,
    /// WSO2 API Manager XML: `<am:fault xmlns:am="http://wso2.org/apimanager">...`.
    ApimXml,
    /// WSO2 API Microgateway JSON: `{"fault":{"code":...,"message":...,"description":...}}`.
    Microgateway,
    /// WSO2 Choreo Connect JSON: `{"code":...,"error_message":...,"error_description":...}`.
    ChoreoConnect,
    /// Kanali JSON: `{"status":...,"message":...,"code":...,"details":...}`.
    Kanali,
    /// Tyk JSON: `{"error":...}` with Tyk's statuses.
    Tyk,
    /// `errors.template`, with placeholders.
    Template,
}

/// An override of one catalogue entry. Unset fields keep the catalogue's value.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Override")]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// HTTP status, 200 to 599. Defaults to the catalogue's status.
    #[serde(default)]
    pub status: Option<u16>,
    /// The `message` field. Defaults to the catalogue's message.
    #[serde(default)]
    pub message: Option<String>,
    /// The `description` field. Defaults to the catalogue's description.
    #[serde(default)]
    pub description: Option<String>,
}

/// CORS settings for fault responses.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Cors")]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Allowed origins; `"*"` allows any. Required, at least one.
    pub allow_origins: Vec<String>,
    /// `Access-Control-Allow-Methods`. Defaults to `GET, PUT, POST, DELETE, PATCH, OPTIONS`.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// `Access-Control-Allow-Headers`. Defaults to WSO2's
    /// `authorization, Access-Control-Allow-Origin, Content-Type, SOAPAction, apikey`.
    #[serde(default = "default_cors_headers")]
    pub allow_headers: Vec<String>,
    /// `Access-Control-Expose-Headers`. Defaults to none.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`. Not allowed with origin `"*"`. Defaults to false.
    #[serde(default)]
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` in seconds on preflight answers. Defaults to none.
    #[serde(default)]
    pub max_age_s: Option<u32>,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"].map(String::from).to_vec()
}

fn default_cors_headers() -> Vec<String> {
    ["authorization", "Access-Control-Allow-Origin", "Content-Type", "SOAPAction", "apikey"].map(String::from).to_vec()
}

/// A custom fault body.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Template")]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// `Content-Type` of the body. Values are JSON-escaped when it contains `json`, XML-escaped
    /// when it contains `xml`, inserted as they are otherwise. Defaults to `application/json`.
    #[serde(default = "default_template_content_type")]
    pub content_type: String,
    /// The body, with placeholders `{code}`, `{status}`, `{message}`, `{description}`. Required.
    pub body: String,
}

fn default_template_content_type() -> String {
    "application/json".to_string()
}

/// Where WSO2's gateways disagree on codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Compatibility {
    /// WSO2 API Manager: 900901 for expired, inactive and malformed credentials.
    #[default]
    Apim,
    /// WSO2 API Microgateway: 900903, 900904, 900912 and 900917 where they apply.
    Microgateway,
}

/// What to do with a request that matches no API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Answer with the gateway's 404 fault.
    #[default]
    Fault,
    /// Let the request through untouched to Envoy's routes.
    PassThrough,
}

/// Credential locations and upstream hygiene.
///
/// Header values are bytes (Envoy lets obs-text through): a credential header whose value is not
/// UTF-8 is refused as invalid credentials (900901); any other header is carried through as it
/// came (the filter only ever rewrites its own headers and `:path`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Credentials")]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// Header carrying `Bearer <token>`. Defaults to `authorization`.
    #[serde(default = "default_authorization_header")]
    pub authorization_header: String,
    /// Header carrying an API key. Defaults to `apikey`.
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// Realm in `WWW-Authenticate` challenges. Defaults to `WSO2 API Manager`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Remove the credentials before the request goes upstream: the credential headers, and the
    /// API-key query parameter of any API whose resources accept API keys (whether or not the
    /// resource called asked for one). Defaults to true.
    #[serde(default = "default_true")]
    pub strip: bool,
    /// Tokens and API keys longer than this (bytes) are refused before parsing. Defaults to 8192.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified JWTs remembered per worker (never past their `exp`). Defaults to 10000.
    #[serde(default = "default_verified_cache_entries")]
    pub verified_cache_entries: usize,
    /// Query parameter carrying an API key, for APIs with `api_key_in_query`. Defaults to `apikey`.
    #[serde(default = "default_api_key_header")]
    pub api_key_query_param: String,
    /// Prefix of the headers that carry the auth context to the backend
    /// (`<prefix>application-id`, `-application-name`, `-subscriber`, `-key-type`, `-tier`,
    /// `-end-user`); client-sent copies are removed. Defaults to `x-apim-`.
    #[serde(default = "default_context_prefix")]
    pub context_header_prefix: String,
}

fn default_max_token_bytes() -> usize {
    8192
}
fn default_verified_cache_entries() -> usize {
    10_000
}
fn default_context_prefix() -> String {
    "x-apim-".to_string()
}

/// A key manager: an OAuth2 issuer whose JWT access tokens are verified locally and/or whose
/// opaque tokens are introspected.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "KeyManager")]
#[serde(deny_unknown_fields)]
pub struct RawKeyManager {
    /// Name, unique. Required.
    pub name: String,
    /// The `iss` of its JWTs, compared exactly. Required.
    pub issuer: String,
    /// Where its JWT verification keys come from. Defaults to none (no JWTs from this issuer).
    #[serde(default)]
    pub jwks: Option<RawJwks>,
    /// Shared secret for HS256/384/512 tokens, at least 32 bytes (random bytes: give it with
    /// `"encoding": "base64"`). HS algorithms are refused without it. Defaults to none.
    #[serde(default)]
    pub hmac_secret: Option<RawSecret>,
    /// Algorithms accepted. Defaults to RS256/384/512, PS256/384/512, ES256/384 and EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Accepted `aud` values; empty accepts any. Defaults to none.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed clock skew for `exp` and `nbf`, seconds. Defaults to 60.
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    /// Which claims carry what. Defaults as documented on each field.
    #[serde(default)]
    pub claims: RawClaims,
    /// RFC 7662 introspection of opaque tokens. Defaults to none.
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"].map(String::from).to_vec()
}
fn default_skew() -> u64 {
    60
}

/// JWT verification keys: inline, or fetched from a JWKS URL through an Envoy cluster.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Jwks")]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    /// Inline JWKs (`[{"kty":"RSA",...}]`). Exactly one of `keys` and `cluster` is required.
    #[serde(default)]
    pub keys: Option<Vec<serde_json::Value>>,
    /// Envoy cluster serving the JWKS.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Path of the JWKS on that cluster. Defaults to `/jwks`.
    #[serde(default = "default_jwks_path")]
    pub path: String,
    /// `:authority` of the fetch. Defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// Seconds between refreshes (an unknown `kid` also triggers one, at most every 5 s).
    /// The last good set is kept when a fetch fails. Defaults to 300.
    #[serde(default = "default_refresh")]
    pub refresh_s: u64,
    /// Fetch timeout, milliseconds. Defaults to 2000.
    #[serde(default = "default_timeout_ms")]
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
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Claims")]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    /// Claims holding the client id, first present wins. Defaults to `["client_id", "azp"]`.
    #[serde(default = "default_client_id_claims")]
    pub client_id: Vec<String>,
    /// Claims holding scopes: a space-separated string or an array. First present wins.
    /// Defaults to `["scope", "scp"]`.
    #[serde(default = "default_scope_claims")]
    pub scopes: Vec<String>,
    /// Claim holding the end user. Defaults to `sub`.
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

fn default_client_id_claims() -> Vec<String> {
    vec!["client_id".to_string(), "azp".to_string()]
}
fn default_scope_claims() -> Vec<String> {
    vec!["scope".to_string(), "scp".to_string()]
}
fn default_sub() -> String {
    "sub".to_string()
}
fn default_aut() -> String {
    "aut".to_string()
}

/// RFC 7662 token introspection through an Envoy cluster.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Introspection")]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// Envoy cluster of the introspection endpoint. Required.
    pub cluster: String,
    /// Path of the endpoint. Defaults to `/oauth2/introspect`.
    #[serde(default = "default_introspection_path")]
    pub path: String,
    /// `:authority` of the call. Defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// The gateway's client id at the key manager (HTTP Basic). Required.
    pub client_id: String,
    /// The gateway's client secret (text). Required; give it as `{"env": "NAME"}` to keep it out
    /// of Envoy's config dump.
    pub client_secret: RawSecret,
    /// Call timeout, milliseconds; a timeout answers 900900. Defaults to 2000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Active results are cached (all workers) until min(this, the token's `exp`). Defaults to 300.
    #[serde(default = "default_refresh")]
    pub cache_ttl_s: u64,
    /// Inactive results are cached this long. Defaults to 10.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl_s: u64,
}

fn default_introspection_path() -> String {
    "/oauth2/introspect".to_string()
}
fn default_negative_ttl() -> u64 {
    10
}

/// Verification of WSO2's self-contained JWT API keys. Claims read: `keytype` (`PRODUCTION` or
/// `SANDBOX`; absent is production, as in WSO2), `application` (an object: `uuid` or `id`, `name`,
/// `owner`, `tier`), `subscribedAPIs` (an array of objects: `name`, `version`, `context`,
/// `subscriptionTier`), `sub` (the end user), `iss`, `exp` and `nbf`. A key without `exp` does
/// not expire (WSO2 issues keys of unlimited validity so); an `exp` present is enforced. A claim
/// of the wrong type refuses the key.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ApiKeyJwt")]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyJwt {
    /// The API manager's signing keys as inline JWKs. Required.
    pub keys: Vec<serde_json::Value>,
    /// Required `iss`, if set. Defaults to none (any issuer).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Algorithms accepted. Defaults to `["RS256"]`.
    #[serde(default = "default_api_key_algorithms")]
    pub algorithms: Vec<String>,
    /// Allowed clock skew, seconds. Defaults to 60.
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
}

fn default_api_key_algorithms() -> Vec<String> {
    vec!["RS256".to_string()]
}

impl Default for RawCredentials {
    fn default() -> Self {
        RawCredentials {
            authorization_header: default_authorization_header(),
            api_key_header: default_api_key_header(),
            realm: default_realm(),
            strip: true,
            max_token_bytes: default_max_token_bytes(),
            verified_cache_entries: default_verified_cache_entries(),
            api_key_query_param: default_api_key_header(),
            context_header_prefix: default_context_prefix(),
        }
    }
}

fn default_authorization_header() -> String {
    "authorization".to_string()
}
fn default_api_key_header() -> String {
    "apikey".to_string()
}
fn default_realm() -> String {
    "WSO2 API Manager".to_string()
}
fn default_true() -> bool {
    true
}

/// How the chosen endpoint reaches Envoy's router.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Routing")]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Request header the filter sets to the endpoint's cluster name; route on it with
    /// `cluster_header`. Any client-sent value is removed first. Defaults to `x-apim-cluster`.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// Request header the filter sets to `<api name>:<version>` for matched requests (for logs and
    /// routes). Any client-sent value is removed first. Defaults to `x-apim-api`.
    #[serde(default = "default_api_header")]
    pub api_header: String,
    /// Rewrite `:path` for the upstream: the API's context and version are replaced by the API's
    /// `backend_path`, as WSO2 does. Defaults to true.
    #[serde(default = "default_true")]
    pub rewrite_path: bool,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting { cluster_header: default_cluster_header(), api_header: default_api_header(), rewrite_path: true }
    }
}

fn default_cluster_header() -> String {
    "x-apim-cluster".to_string()
}
fn default_api_header() -> String {
    "x-apim-api".to_string()
}

/// An API.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Api")]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// API name. Required.
    pub name: String,
    /// Context, e.g. `/pizzashack`. May contain a `{version}` segment, as in WSO2. Required.
    pub context: String,
    /// Version, e.g. `1.0.0`. Appended to the context unless the context holds `{version}`. Required.
    pub version: String,
    /// Lifecycle state. `BLOCKED` answers 700700; `CREATED` and `RETIRED` are not deployed (as if
    /// the API did not exist). Defaults to `PUBLISHED`.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Also serve this API on its context without the version (WSO2's default version).
    /// Defaults to false.
    #[serde(default)]
    pub default_version: bool,
    /// Envoy cluster names of the production and sandbox endpoints. At least one is required.
    pub endpoints: RawEndpoints,
    /// Path prefix on the backend that replaces context and version (e.g. `/api/v1`).
    /// Defaults to empty (the resource path is sent as it is).
    #[serde(default)]
    pub backend_path: String,
    /// Security schemes accepted by the API's resources; `[]` makes them open.
    /// Defaults to `["oauth2"]`, as in WSO2.
    #[serde(default = "default_security")]
    pub security: Vec<SecurityScheme>,
    /// Accept the API key in the `apikey` query parameter too. Defaults to false.
    #[serde(default)]
    pub api_key_in_query: bool,
    /// API-level throttling policy name. Defaults to none.
    #[serde(default)]
    pub policy: Option<String>,
    /// Resources (method + path template). Defaults to none (every request answers 900906).
    #[serde(default)]
    pub resources: Vec<RawResource>,
}

fn default_security() -> Vec<SecurityScheme> {
    vec![SecurityScheme::Oauth2]
}

/// Endpoint clusters of an API.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Endpoints")]
#[serde(deny_unknown_fields)]
pub struct RawEndpoints {
    /// Envoy cluster for production keys (and for open resources). Defaults to none.
    #[serde(default)]
    pub production: Option<String>,
    /// Envoy cluster for sandbox keys. Defaults to none.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// API lifecycle states (WSO2's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Lifecycle {
    Created,
    Prototyped,
    #[default]
    Published,
    Blocked,
    Deprecated,
    Retired,
}

/// Security schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityScheme {
    /// OAuth2 bearer tokens (JWT or opaque).
    Oauth2,
    /// API keys.
    ApiKey,
}

/// A resource of an API.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Resource")]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// HTTP method: GET, POST, PUT, DELETE, PATCH, HEAD or OPTIONS. Required.
    pub method: String,
    /// Path template below the API's base path: literal segments, `{param}` segments (one
    /// segment each) and a final `*` (any remainder, including none). Required.
    pub path: String,
    /// Security schemes for this resource; `[]` makes it open. Defaults to the API's.
    #[serde(default)]
    pub security: Option<Vec<SecurityScheme>>,
    /// Scopes a token must carry. Defaults to none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Resource-level throttling policy name. Defaults to none.
    #[serde(default)]
    pub policy: Option<String>,
    /// Refuse application tokens (WSO2's APPLICATION_USER only). Defaults to false.
    #[serde(default)]
    pub user_token_only: bool,
}

/// An application.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Application")]
#[serde(deny_unknown_fields)]
pub struct RawApplication {
    /// Application id (WSO2's UUID). Required, unique.
    pub id: String,
    /// Application name. Required.
    pub name: String,
    /// Subscriber (owner). Defaults to empty.
    #[serde(default)]
    pub owner: String,
    /// Application-level throttling policy. Defaults to none.
    #[serde(default)]
    pub policy: Option<String>,
    /// OAuth2 client ids of the application's keys. Defaults to none.
    #[serde(default)]
    pub client_ids: Vec<RawClientId>,
    /// Opaque API keys, stored as SHA-256 hashes. Defaults to none.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
}

/// An OAuth2 client of an application.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ClientId")]
#[serde(deny_unknown_fields)]
pub struct RawClientId {
    /// The client id. Required, unique across applications.
    pub id: String,
    /// Key type. Defaults to `PRODUCTION`.
    #[serde(default)]
    pub key_type: KeyType,
    /// The key manager that issued the client (its `name`); tokens from any other key manager
    /// are refused for it. Required when more than one key manager is configured.
    #[serde(default)]
    pub key_manager: Option<String>,
}

/// An opaque API key.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ApiKey")]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// Lowercase hex SHA-256 of the key (64 characters). Required, unique.
    pub sha256: String,
    /// Key type. Defaults to `PRODUCTION`.
    #[serde(default)]
    pub key_type: KeyType,
}

/// WSO2 key types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyType {
    #[default]
    Production,
    Sandbox,
}

/// A subscription.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Subscription")]
#[serde(deny_unknown_fields)]
pub struct RawSubscription {
    /// Application id. Required.
    pub application: String,
    /// API as `<name>:<version>`. Required.
    pub api: String,
    /// Subscription policy (tier). Defaults to `Unlimited`.
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Subscription state. Defaults to `UNBLOCKED`.
    #[serde(default)]
    pub state: SubscriptionState,
}

fn default_tier() -> String {
    UNLIMITED.to_string()
}

/// WSO2 subscription states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionState {
    #[default]
    Unblocked,
    Blocked,
    ProdOnlyBlocked,
    OnHold,
    Rejected,
    Inactive,
}

/// A throttling policy: a request count or a byte count per time unit.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Policy")]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Requests allowed per window. Exactly one of `requests` and `bytes` is required.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Request and response body bytes allowed per window.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Window unit. Required.
    pub per: TimeUnit,
    /// Window length in units. Defaults to 1.
    #[serde(default = "default_one")]
    pub unit_count: u32,
    /// Burst control (subscription policies). Defaults to none.
    #[serde(default)]
    pub burst: Option<RawBurst>,
    /// Deny requests over quota; when false they pass, flagged. Defaults to true.
    #[serde(default = "default_true")]
    pub stop_on_quota_reach: bool,
}

fn default_one() -> u32 {
    1
}

/// Burst control: at most `requests` per `per` (second or minute).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Burst")]
#[serde(deny_unknown_fields)]
pub struct RawBurst {
    /// Requests allowed per unit. Required.
    pub requests: u64,
    /// `second` or `minute`. Required.
    pub per: TimeUnit,
}

/// Time units of throttling windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl TimeUnit {
    /// The unit in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            TimeUnit::Second => 1,
            TimeUnit::Minute => 60,
            TimeUnit::Hour => 3_600,
            TimeUnit::Day => 86_400,
        }
    }
}

/// A secret: given by reference (`{"env": "NAME"}`, resolved when the configuration loads, so it
/// never appears in Envoy's configuration or its `/config_dump`), or inline (a plain string, or
/// `{"value": "..."}`; visible in the config dump, so the filter logs a warning).
#[derive(Clone, Deserialize, JsonSchema)]
#[schemars(rename = "Secret")]
#[serde(untagged)]
pub enum RawSecret {
    /// Inline text (its UTF-8 bytes).
    Inline(String),
    Source(RawSecretSource),
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from and how it is written.
#[derive(Clone, Deserialize, JsonSchema)]
#[schemars(rename = "SecretSource")]
#[serde(deny_unknown_fields)]
pub struct RawSecretSource {
    /// An environment variable of the Envoy process, handed to the filter's VM with
    /// `vm_config.environment_variables.host_env_keys` (in Istio: `vmConfig.env` with
    /// `valueFrom: HOST`). Exactly one of `env` and `value` is required.
    #[serde(default)]
    pub env: Option<String>,
    /// The secret inline (visible in Envoy's config dump).
    #[serde(default)]
    pub value: Option<String>,
    /// How the text is encoded: `text` (the secret is its UTF-8 bytes), `base64` or `base64url`
    /// (random bytes, padded or not). Defaults to `text`.
    #[serde(default)]
    pub encoding: SecretEncoding,
}

/// How a secret's text is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    #[default]
    Text,
    Base64,
    Base64url,
}

/// A resolved secret: bytes, never printed (`Debug` shows `***`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves a secret at `field`; an inline one adds a warning (the config dump shows it).
pub fn resolve_secret(field: &str, raw: &RawSecret, warnings: &mut Vec<String>) -> Result<Secret, ConfigError> {
    use base64::Engine;
    let (text, encoding, inline) = match raw {
        RawSecret::Inline(text) => (text.clone(), SecretEncoding::Text, true),
        RawSecret::Source(RawSecretSource { env: Some(name), value: None, encoding }) => {
            let field = format!("{field}.env");
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(ConfigError::new(field, "must name an environment variable"));
            }
            let text = std::env::var(name).map_err(|_| {
                ConfigError::new(
                    field,
                    format!(
                        "environment variable `{name}` is not set for the filter (pass it to the VM with \
                         vm_config.environment_variables.host_env_keys)"
                    ),
                )
            })?;
            (text, *encoding, false)
        }
        RawSecret::Source(RawSecretSource { env: None, value: Some(text), encoding }) => {
            (text.clone(), *encoding, true)
        }
        RawSecret::Source(_) => return Err(ConfigError::new(field, "set exactly one of `env` and `value`")),
    };
    let bytes = match encoding {
        SecretEncoding::Text => text.into_bytes(),
        SecretEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim()))
            .map_err(|_| ConfigError::new(field, "is not valid base64"))?,
        SecretEncoding::Base64url => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|_| ConfigError::new(field, "is not valid base64url"))?,
    };
    if bytes.is_empty() {
        return Err(ConfigError::new(field, "is empty"));
    }
    if inline {
        warnings.push(format!(
            "field `{field}` holds a secret inline: Envoy's /config_dump and debug log show it; give it as \
             {{\"env\": \"NAME\"}} instead"
        ));
    }
    Ok(Secret(bytes))
}

/// The built-in policy that never throttles.
pub const UNLIMITED: &str = "Unlimited";

// =============================================================================================
// Errors.
// =============================================================================================

/// Why a configuration was refused: the field (a path such as `apis[0].resources[1].path`) and
/// the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

// =============================================================================================
// The compiled configuration.
// =============================================================================================

/// A checked, compiled configuration.
#[derive(Debug)]
pub struct Config {
    /// What the operator should know about an accepted configuration (logged at load).
    warnings: Vec<String>,
    /// The request headers only the filter sets (routing, auth context, quota flag), lowercase
    /// with `-`: a client's copy is removed in any spelling.
    pub owned_headers: Vec<String>,
    pub errors: ErrorSettings,
    pub compatibility: Compatibility,
    pub unmatched: Unmatched,
    pub credentials: RawCredentials,
    pub routing: RawRouting,
    pub apis: Vec<Api>,
    /// Base path (normalized, e.g. `/pizzashack/1.0.0`) to API index.
    pub base_paths: HashMap<String, usize>,
    /// The largest number of segments in any base path.
    pub max_base_depth: usize,
    pub applications: Vec<RawApplication>,
    pub subscriptions: Vec<RawSubscription>,
    pub policies: BTreeMap<String, RawPolicy>,
    pub key_managers: Vec<KeyManager>,
    /// `iss` to key manager index.
    pub issuers: HashMap<String, usize>,
    pub api_key_jwt: Option<ApiKeyJwt>,
    /// OAuth2 client id to application key.
    pub clients: HashMap<String, AppKey>,
    /// SHA-256 of opaque API keys to application key (compared in constant time on lookup).
    pub api_key_hashes: Vec<([u8; 32], AppKey)>,
    /// First 8 bytes of a key hash to positions in `api_key_hashes`.
    pub api_key_buckets: HashMap<u64, Vec<usize>>,
    /// Application id to index.
    pub application_ids: HashMap<String, usize>,
    /// (application id, `<api name>:<version>`) to subscription index.
    pub subscription_index: HashMap<(usize, usize), usize>,
    /// Throttling policies by name (`Unlimited` is absent: it counts nothing).
    pub policy_specs: HashMap<String, PolicySpec>,
    pub blocking: Vec<BlockingCondition>,
    pub custom_policies: Vec<CustomPolicy>,
    /// (`<api name>:<version>`, key type) to its hard limit.
    pub hard_limits: HashMap<(String, KeyType), PolicySpec>,
    pub throttling: RawThrottling,
}

impl Default for Config {
    /// The configuration `{}` compiles to: no APIs, so every request gets the 404 fault.
    fn default() -> Self {
        let routing = RawRouting::default();
        let credentials = RawCredentials::default();
        let throttling = RawThrottling::default();
        Config {
            warnings: Vec::new(),
            owned_headers: owned_headers(&routing, &credentials, &throttling),
            errors: ErrorSettings::default(),
            compatibility: Compatibility::default(),
            unmatched: Unmatched::default(),
            credentials,
            routing,
            apis: Vec::new(),
            base_paths: HashMap::new(),
            max_base_depth: 0,
            applications: Vec::new(),
            subscriptions: Vec::new(),
            policies: BTreeMap::new(),
            key_managers: Vec::new(),
            issuers: HashMap::new(),
            api_key_jwt: None,
            clients: HashMap::new(),
            api_key_hashes: Vec::new(),
            api_key_buckets: HashMap::new(),
            application_ids: HashMap::new(),
            subscription_index: HashMap::new(),
            policy_specs: HashMap::new(),
            blocking: Vec::new(),
            custom_policies: Vec::new(),
            hard_limits: HashMap::new(),
            throttling,
        }
    }
}

/// The headers the filter owns, normalized (lowercase, `_` as `-`).
fn owned_headers(routing: &RawRouting, credentials: &RawCredentials, throttling: &RawThrottling) -> Vec<String> {
    let normalize = |name: &str| name.to_ascii_lowercase().replace('_', "-");
    let mut owned = vec![
        normalize(&routing.cluster_header),
        normalize(&routing.api_header),
        normalize(&throttling.quota_exceeded_header),
    ];
    for suffix in crate::stream::CONTEXT_HEADERS {
        owned.push(normalize(&format!("{}{suffix}", credentials.context_header_prefix)));
    }
    owned
}

/// A compiled throttling policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySpec {
    /// Requests (or bytes) per window.
    pub limit: u64,
    /// A bandwidth policy: `limit` counts request and response body bytes.
    pub bytes: bool,
    pub window_s: u64,
    /// Burst control: (requests, window seconds).
    pub burst: Option<(u64, u64)>,
    pub stop_on_quota_reach: bool,
}

impl PolicySpec {
    fn requests_per_second(limit: u64) -> PolicySpec {
        PolicySpec { limit, bytes: false, window_s: 1, burst: None, stop_on_quota_reach: true }
    }
}

/// A compiled blocking condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockingCondition {
    Api(String),
    Application(String),
    User(String),
    Ip(IpRange),
    Subscription { application: String, api: String },
}

/// A compiled custom policy.
#[derive(Clone, Debug)]
pub struct CustomPolicy {
    pub name: String,
    pub template: Vec<KeyPart>,
    pub spec: PolicySpec,
    /// `<name>:<version>` of the APIs it applies to; empty: all.
    pub apis: Vec<String>,
}

/// A compiled key manager.
#[derive(Debug)]
pub struct KeyManager {
    /// Identifies the key manager's shared-data caches: a digest of what makes its answers what
    /// they are (issuer, JWKS and introspection endpoints, gateway client), so a reloaded or
    /// different configuration never reads another key manager's cached answers.
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
    pub claims: RawClaims,
    pub introspection: Option<Introspection>,
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
}

/// Compiled WSO2 JWT API key verification.
#[derive(Debug)]
pub struct ApiKeyJwt {
    pub keys: KeySet,
    pub issuer: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew_s: u64,
}

/// An application key: which application, which key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppKey {
    pub application: usize,
    pub key_type: KeyType,
    /// The key manager a client id belongs to (`None`: any, for API keys or a single key manager).
    pub key_manager: Option<usize>,
}

/// Fault rendering settings with overrides resolved.
#[derive(Debug)]
pub struct ErrorSettings {
    pub format: ErrorFormat,
    pub overrides_by_code: HashMap<u32, RawOverride>,
    pub overrides_by_id: HashMap<FaultId, RawOverride>,
    /// Overrides of code families (`9008xx`), broadest first.
    pub overrides_by_pattern: Vec<(catalogue::CodePattern, RawOverride)>,
    pub cors: Option<RawCors>,
    pub kanali_docs_url: String,
    pub template: Option<RawTemplate>,
    pub realm: String,
    /// `credentials.authorization_header`, for the 900902 description.
    pub authorization_header: String,
    /// `credentials.api_key_header`, for the 900902 description.
    pub api_key_header: String,
}

impl Default for ErrorSettings {
    fn default() -> Self {
        ErrorSettings {
            format: ErrorFormat::default(),
            overrides_by_code: HashMap::new(),
            overrides_by_id: HashMap::new(),
            overrides_by_pattern: Vec::new(),
            cors: None,
            kanali_docs_url: default_kanali_docs_url(),
            template: None,
            realm: default_realm(),
            authorization_header: default_authorization_header(),
            api_key_header: default_api_key_header(),
        }
    }
}

/// A compiled API.
#[derive(Debug)]
pub struct Api {
    /// Position in [`Config::apis`].
    pub index: usize,
    pub name: String,
    pub version: String,
    pub context: String,
    pub lifecycle: Lifecycle,
    pub default_version: bool,
    pub endpoints: RawEndpoints,
    pub backend_path: String,
    pub api_key_in_query: bool,
    /// Some resource accepts API keys (or the API takes them in the query): an `apikey` query
    /// parameter is then a credential and never goes upstream.
    pub api_keys: bool,
    pub policy: Option<String>,
    pub resources: Vec<Resource>,
}

/// A compiled resource.
#[derive(Debug)]
pub struct Resource {
    pub method: String,
    pub template: PathTemplate,
    /// Effective security schemes; empty means open.
    pub security: Vec<SecurityScheme>,
    pub scopes: Vec<String>,
    pub policy: Option<String>,
    pub user_token_only: bool,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

impl Config {
    /// Parses and checks a configuration. An empty input is the empty configuration `{}`.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::compile(Config::parse(bytes)?)
    }

    /// Parses the JSON without checking it (the caller can free the text before compiling: large
    /// configurations then peak lower).
    pub fn parse(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
        let raw: RawConfig = if trimmed {
            RawConfig::default()
        } else {
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(ConfigError::new("(root)", "the configuration must be a JSON object"));
            }
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            let raw = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let path = error.path().to_string();
                let field = if path == "." { "(root)".to_string() } else { path };
                ConfigError::new(field, redact_values(&error.inner().to_string()))
            })?;
            deserializer.end().map_err(|error| ConfigError::new("(root)", error.to_string()))?;
            raw
        };
        Ok(raw)
    }

    /// Checks and compiles a parsed configuration.
    pub fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let policies = check_policies(&raw.policies)?;
        check_credentials(&raw.credentials)?;
        check_routing(&raw.routing, &raw.credentials)?;
        let errors_template_unused = raw.errors.template.is_some() && raw.errors.format != ErrorFormat::Template;
        let errors = compile_errors(raw.errors, &raw.credentials)?;

        let mut apis = Vec::with_capacity(raw.apis.len());
        let mut base_paths: HashMap<String, usize> = HashMap::new();
        let mut names: HashSet<(String, String)> = HashSet::new();
        let mut max_base_depth = 0;
        for (index, raw_api) in raw.apis.into_iter().enumerate() {
            let field = format!("apis[{index}]");
            let api = compile_api(&field, index, raw_api, &policies)?;
            if !names.insert((api.name.clone(), api.version.clone())) {
                return Err(ConfigError::new(
                    format!("{field}.name"),
                    format!("API {}:{} is defined twice", api.name, api.version),
                ));
            }
            if api.lifecycle != Lifecycle::Created && api.lifecycle != Lifecycle::Retired {
                for base in api_base_paths(&field, &api)? {
                    max_base_depth = max_base_depth.max(base.matches('/').count());
                    if let Some(other) = base_paths.insert(base.clone(), index) {
                        return Err(ConfigError::new(
                            format!("{field}.context"),
                            format!("base path {base} is also served by apis[{other}]"),
                        ));
                    }
                }
            }
            apis.push(api);
        }

        check_applications(&raw.applications, &policies)?;
        check_subscriptions(&raw.subscriptions, &raw.applications, &apis, &policies)?;
        if raw.credentials.max_token_bytes < 64 || raw.credentials.max_token_bytes > 65_536 {
            return Err(ConfigError::new("credentials.max_token_bytes", "must be from 64 to 65536"));
        }
        if raw.credentials.verified_cache_entries > 1_000_000 {
            return Err(ConfigError::new("credentials.verified_cache_entries", "must be at most 1000000"));
        }
        check_header_name(
            "credentials.context_header_prefix",
            raw.credentials.context_header_prefix.trim_end_matches('-'),
        )?;
        if raw.credentials.api_key_query_param.is_empty()
            || !raw.credentials.api_key_query_param.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new("credentials.api_key_query_param", "must be a plain parameter name"));
        }

        let mut key_managers = Vec::with_capacity(raw.key_managers.len());
        let mut issuers = HashMap::new();
        let mut km_names = HashSet::new();
        for (index, raw_km) in raw.key_managers.into_iter().enumerate() {
            let field = format!("key_managers[{index}]");
            if raw_km.name.is_empty() || !km_names.insert(raw_km.name.clone()) {
                return Err(ConfigError::new(format!("{field}.name"), "must be non-empty and unique"));
            }
            if raw_km.issuer.is_empty() || issuers.insert(raw_km.issuer.clone(), index).is_some() {
                return Err(ConfigError::new(format!("{field}.issuer"), "must be non-empty and unique"));
            }
            key_managers.push(compile_key_manager(&field, raw_km, &mut warnings)?);
        }
        let api_key_jwt = match raw.api_key_jwt {
            Some(raw_jwt) => Some(compile_api_key_jwt(raw_jwt)?),
            None => None,
        };

        let km_names_in_order: Vec<String> = key_managers.iter().map(|km: &KeyManager| km.name.clone()).collect();
        let mut clients = HashMap::new();
        let mut api_key_hashes = Vec::new();
        let mut api_key_buckets: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut application_ids = HashMap::new();
        for (index, application) in raw.applications.iter().enumerate() {
            application_ids.insert(application.id.clone(), index);
            for (client_index, client) in application.client_ids.iter().enumerate() {
                let key_manager = match &client.key_manager {
                    Some(name) => Some(km_names_in_order.iter().position(|km| km == name).ok_or_else(|| {
                        ConfigError::new(
                            format!("applications[{index}].client_ids[{client_index}].key_manager"),
                            format!("key manager `{name}` is not defined"),
                        )
                    })?),
                    None if km_names_in_order.len() > 1 => {
                        return Err(ConfigError::new(
                            format!("applications[{index}].client_ids[{client_index}].key_manager"),
                            "is required when more than one key manager is configured",
                        ));
                    }
                    None => None,
                };
                clients
                    .insert(client.id.clone(), AppKey { application: index, key_type: client.key_type, key_manager });
            }
            for key in &application.api_keys {
                let digest = hex_digest(&key.sha256);
                let bucket = u64::from_be_bytes([
                    digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
                ]);
                api_key_buckets.entry(bucket).or_default().push(api_key_hashes.len());
                api_key_hashes.push((digest, AppKey { application: index, key_type: key.key_type, key_manager: None }));
            }
        }
        let policy_specs: HashMap<String, PolicySpec> =
            raw.policies.iter().map(|(name, policy)| (name.clone(), policy_spec(policy))).collect();
        let blocking = compile_blocking(&raw.blocking)?;
        check_blocking_targets(&blocking, &apis)?;
        if key_managers.is_empty() {
            for (index, application) in raw.applications.iter().enumerate() {
                if !application.client_ids.is_empty() {
                    return Err(ConfigError::new(
                        format!("applications[{index}].client_ids"),
                        "OAuth2 clients need a key manager to verify their tokens (`key_managers`)",
                    ));
                }
            }
        }
        if errors_template_unused {
            warnings.push("`errors.template` is set but `errors.format` is not `template`: it is not used".to_string());
        }
        let custom_policies = compile_custom_policies(&raw.custom_policies)?;
        for (index, policy) in custom_policies.iter().enumerate() {
            for (api_index, label) in policy.apis.iter().enumerate() {
                if !apis.iter().any(|api| format!("{}:{}", api.name, api.version) == *label) {
                    return Err(ConfigError::new(
                        format!("custom_policies[{index}].apis[{api_index}]"),
                        format!("API `{label}` is not defined"),
                    ));
                }
            }
        }
        let mut hard_limits = HashMap::new();
        let api_labels: HashSet<String> = apis.iter().map(|api| format!("{}:{}", api.name, api.version)).collect();
        for (index, limit) in raw.hard_limits.iter().enumerate() {
            let field = format!("hard_limits[{index}]");
            if !api_labels.contains(&limit.api) {
                return Err(ConfigError::new(format!("{field}.api"), format!("API `{}` is not defined", limit.api)));
            }
            if limit.requests_per_second == 0 {
                return Err(ConfigError::new(format!("{field}.requests_per_second"), "must be at least 1"));
            }
            if hard_limits
                .insert((limit.api.clone(), limit.key_type), PolicySpec::requests_per_second(limit.requests_per_second))
                .is_some()
            {
                return Err(ConfigError::new(field, "a second hard limit for the same API and key type"));
            }
        }
        let throttling = raw.throttling;
        check_header_name("throttling.quota_exceeded_header", &throttling.quota_exceeded_header)?;
        if throttling.cas_retries == 0 || throttling.cas_retries > 1000 {
            return Err(ConfigError::new("throttling.cas_retries", "must be from 1 to 1000"));
        }
        if throttling.counter_slots == 0 || throttling.counter_slots > 65_536 {
            return Err(ConfigError::new("throttling.counter_slots", "must be from 1 to 65536"));
        }
        let api_indices: HashMap<String, usize> =
            apis.iter().enumerate().map(|(index, api)| (format!("{}:{}", api.name, api.version), index)).collect();
        let subscription_index = raw
            .subscriptions
            .iter()
            .enumerate()
            .filter_map(|(index, subscription)| {
                let application = application_ids.get(&subscription.application)?;
                let api = api_indices.get(&subscription.api)?;
                Some(((*application, *api), index))
            })
            .collect();

        let owned_headers = owned_headers(&raw.routing, &raw.credentials, &throttling);
        Ok(Config {
            warnings,
            owned_headers,
            errors,
            compatibility: raw.compatibility,
            unmatched: raw.unmatched,
            credentials: raw.credentials,
            routing: raw.routing,
            apis,
            base_paths,
            max_base_depth,
            // Keys and client ids live on in the indices above; the lists are not needed again.
            applications: raw
                .applications
                .into_iter()
                .map(|application| RawApplication { client_ids: Vec::new(), api_keys: Vec::new(), ..application })
                .collect(),
            subscriptions: raw.subscriptions,
            policies: raw.policies,
            key_managers,
            issuers,
            api_key_jwt,
            clients,
            api_key_hashes,
            api_key_buckets,
            application_ids,
            subscription_index,
            policy_specs,
            blocking,
            custom_policies,
            hard_limits,
            throttling,
        })
    }
}

fn policy_spec(policy: &RawPolicy) -> PolicySpec {
    PolicySpec {
        limit: policy.requests.or(policy.bytes).unwrap_or(0),
        bytes: policy.bytes.is_some(),
        window_s: policy.per.seconds().saturating_mul(u64::from(policy.unit_count)),
        burst: policy.burst.as_ref().map(|burst| (burst.requests, burst.per.seconds())),
        stop_on_quota_reach: policy.stop_on_quota_reach,
    }
}

fn compile_blocking(conditions: &[RawBlockingCondition]) -> Result<Vec<BlockingCondition>, ConfigError> {
    let mut compiled = Vec::with_capacity(conditions.len());
    for (index, condition) in conditions.iter().enumerate() {
        let field = format!("blocking[{index}]");
        let set = [
            &condition.api,
            &condition.application,
            &condition.user,
            &condition.ip,
            &condition.ip_range,
            &condition.subscription,
        ]
        .iter()
        .filter(|value| value.is_some())
        .count();
        if set != 1 {
            return Err(ConfigError::new(
                field,
                "set exactly one of api, application, user, ip, ip_range, subscription",
            ));
        }
        let parsed = if let Some(api) = &condition.api {
            BlockingCondition::Api(api.clone())
        } else if let Some(application) = &condition.application {
            BlockingCondition::Application(application.clone())
        } else if let Some(user) = &condition.user {
            BlockingCondition::User(user.clone())
        } else if let Some(ip) = &condition.ip {
            let range = IpRange::parse(ip).map_err(|reason| ConfigError::new(format!("{field}.ip"), reason))?;
            if ip.contains('/') {
                return Err(ConfigError::new(format!("{field}.ip"), "an address without a prefix (use ip_range)"));
            }
            BlockingCondition::Ip(range)
        } else if let Some(range) = &condition.ip_range {
            BlockingCondition::Ip(
                IpRange::parse(range).map_err(|reason| ConfigError::new(format!("{field}.ip_range"), reason))?,
            )
        } else if let Some(subscription) = &condition.subscription {
            let (application, api) = subscription
                .split_once(':')
                .filter(|(application, api)| !application.is_empty() && api.contains(':'))
                .ok_or_else(|| {
                    ConfigError::new(format!("{field}.subscription"), "write `<application id>:<api name>:<version>`")
                })?;
            BlockingCondition::Subscription { application: application.to_string(), api: api.to_string() }
        } else {
            return Err(ConfigError::new(field, "empty condition"));
        };
        compiled.push(parsed);
    }
    Ok(compiled)
}

fn compile_custom_policies(policies: &[RawCustomPolicy]) -> Result<Vec<CustomPolicy>, ConfigError> {
    let mut names = HashSet::new();
    let mut compiled = Vec::with_capacity(policies.len());
    for (index, policy) in policies.iter().enumerate() {
        let field = format!("custom_policies[{index}]");
        if policy.name.is_empty() || policy.name.contains(':') || !names.insert(policy.name.clone()) {
            return Err(ConfigError::new(format!("{field}.name"), "must be non-empty, unique and without `:`"));
        }
        let template =
            parse_key_template(&policy.key).map_err(|reason| ConfigError::new(format!("{field}.key"), reason))?;
        let limit = match (policy.requests, policy.bytes) {
            (Some(limit), None) | (None, Some(limit)) if limit > 0 => limit,
            _ => return Err(ConfigError::new(field, "set one of `requests` and `bytes`, at least 1")),
        };
        if policy.unit_count == 0 {
            return Err(ConfigError::new(format!("{field}.unit_count"), "must be at least 1"));
        }
        let spec = PolicySpec {
            limit,
            bytes: policy.bytes.is_some(),
            window_s: policy.per.seconds().saturating_mul(u64::from(policy.unit_count)),
            burst: None,
            stop_on_quota_reach: true,
        };
        compiled.push(CustomPolicy { name: policy.name.clone(), template, spec, apis: policy.apis.clone() });
    }
    Ok(compiled)
}

/// 64 validated lowercase hex characters to 32 bytes.
fn hex_digest(hex: &str) -> [u8; 32] {
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = hex.get(index * 2..index * 2 + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()).unwrap_or(0);
    }
    digest
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

fn check_cluster_call(field: &str, cluster: &str, path: &str, timeout_ms: u64) -> Result<(), ConfigError> {
    if cluster.is_empty() {
        return Err(ConfigError::new(format!("{field}.cluster"), "must not be empty"));
    }
    check_header_value(&format!("{field}.cluster"), cluster)?;
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(format!("{field}.path"), "must start with `/` and hold no spaces"));
    }
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(ConfigError::new(format!("{field}.timeout_ms"), "must be from 1 to 60000"));
    }
    Ok(())
}

fn compile_key_manager(field: &str, raw: RawKeyManager, warnings: &mut Vec<String>) -> Result<KeyManager, ConfigError> {
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
                static_keys = KeySet::from_jwks(&serde_json::json!({ "keys": keys }))
                    .map_err(|reason| ConfigError::new(format!("{jwks_field}.keys"), reason))?;
            }
            (None, Some(cluster)) => {
                check_cluster_call(&jwks_field, cluster, &jwks.path, jwks.timeout_ms)?;
                if jwks.refresh_s == 0 {
                    return Err(ConfigError::new(format!("{jwks_field}.refresh_s"), "must be at least 1"));
                }
                if let Some(authority) = &jwks.authority {
                    check_header_value(&format!("{jwks_field}.authority"), authority)?;
                }
                remote_jwks = Some(RemoteJwks {
                    cluster: cluster.clone(),
                    path: jwks.path.clone(),
                    authority: jwks.authority.clone().unwrap_or_else(|| cluster.clone()),
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
                &introspection.path,
                introspection.timeout_ms,
            )?;
            if introspection.client_id.is_empty() || introspection.client_id.contains(':') {
                return Err(ConfigError::new(
                    format!("{introspection_field}.client_id"),
                    "must be non-empty, without `:`",
                ));
            }
            if let Some(authority) = &introspection.authority {
                check_header_value(&format!("{introspection_field}.authority"), authority)?;
            }
            let secret_field = format!("{introspection_field}.client_secret");
            let client_secret = resolve_secret(&secret_field, &introspection.client_secret, warnings)?;
            if std::str::from_utf8(&client_secret.0).is_err() {
                return Err(ConfigError::new(secret_field, "must be text (it is sent with HTTP Basic)"));
            }
            Some(Introspection {
                cluster: introspection.cluster.clone(),
                path: introspection.path.clone(),
                authority: introspection.authority.clone().unwrap_or_else(|| introspection.cluster.clone()),
                client_id: introspection.client_id.clone(),
                client_secret,
                timeout_ms: introspection.timeout_ms as u32,
                cache_ttl_s: introspection.cache_ttl_s,
                negative_cache_ttl_s: introspection.negative_cache_ttl_s,
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
    let claims = &raw.claims;
    if claims.client_id.is_empty()
        || claims.scopes.is_empty()
        || claims.end_user.is_empty()
        || claims.token_type.is_empty()
    {
        return Err(ConfigError::new(format!("{field}.claims"), "claim names must not be empty"));
    }
    let identity = format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        raw.issuer,
        remote_jwks.as_ref().map(|j: &RemoteJwks| j.cluster.clone()),
        remote_jwks.as_ref().map(|j| j.path.clone()),
        introspection.as_ref().map(|i: &Introspection| i.cluster.clone()),
        introspection.as_ref().map(|i| i.path.clone()),
        introspection.as_ref().map(|i| i.client_id.clone()),
    );
    let digest = sha2::Sha256::digest(identity.as_bytes());
    let cache_id = crate::hashing::hex(digest.get(..8).unwrap_or_default());
    Ok(KeyManager {
        cache_id,
        name: raw.name,
        issuer: raw.issuer,
        algorithms,
        static_keys,
        remote_jwks,
        hmac,
        audiences: raw.audiences,
        clock_skew_s: raw.clock_skew_s,
        claims: raw.claims,
        introspection,
    })
}

fn compile_api_key_jwt(raw: RawApiKeyJwt) -> Result<ApiKeyJwt, ConfigError> {
    let algorithms = parse_algorithms("api_key_jwt.algorithms", &raw.algorithms)?;
    if algorithms.iter().any(|algorithm| algorithm.family() == AlgorithmFamily::Hmac) {
        return Err(ConfigError::new("api_key_jwt.algorithms", "API keys are verified with public keys only"));
    }
    let keys = KeySet::from_jwks(&serde_json::json!({ "keys": raw.keys }))
        .map_err(|reason| ConfigError::new("api_key_jwt.keys", reason))?;
    Ok(ApiKeyJwt { keys, issuer: raw.issuer, algorithms, clock_skew_s: raw.clock_skew_s })
}

/// Removes the values serde quotes in type errors (`invalid type: string "sk_live_..."`), so a
/// secret put in the wrong field never reaches Envoy's log. Field and variant names stay.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(rest.get(..start).unwrap_or_default());
        out.push_str("a string");
        let after = rest.get(start + "string \"".len()..).unwrap_or_default();
        // The value ends at the first quote not escaped by a backslash.
        let mut escaped = false;
        let end = after.char_indices().find(|(_, c)| {
            let closes = *c == '"' && !escaped;
            escaped = *c == '\\' && !escaped;
            closes
        });
        rest = match end {
            Some((end, _)) => after.get(end + 1..).unwrap_or_default(),
            None => "",
        };
    }
    out.push_str(rest);
    out
}

impl Config {
    /// What the operator should know about this configuration (the filter logs each line).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether any throttling is configured (policies, blocking, custom policies, hard limits).
    pub fn throttles(&self) -> bool {
        !self.policy_specs.is_empty()
            || !self.blocking.is_empty()
            || !self.custom_policies.is_empty()
            || !self.hard_limits.is_empty()
    }

    /// Whether throttling needs the client's IP address.
    pub fn uses_client_ip(&self) -> bool {
        self.blocking.iter().any(|condition| matches!(condition, BlockingCondition::Ip(_)))
            || self.custom_policies.iter().any(|policy| policy.template.contains(&KeyPart::ClientIp))
    }
}

/// The base paths an API is served on: `<context>/<version>` (or the context with `{version}`
/// substituted) and, with `default_version`, the context alone.
fn api_base_paths(field: &str, api: &Api) -> Result<Vec<String>, ConfigError> {
    let mut bases = Vec::new();
    if api.context.contains("{version}") {
        bases.push(api.context.replace("{version}", &api.version));
        if api.default_version {
            let without: Vec<&str> =
                api.context.split('/').filter(|segment| !segment.is_empty() && *segment != "{version}").collect();
            if without.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.default_version"),
                    "a context of only {version} cannot have a default version",
                ));
            }
            bases.push(format!("/{}", without.join("/")));
        }
    } else {
        bases.push(format!("{}/{}", api.context, api.version));
        if api.default_version {
            bases.push(api.context.clone());
        }
    }
    Ok(bases)
}

fn check_header_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.chars().any(|c| c.is_control()) {
        return Err(ConfigError::new(field, "must not contain control characters"));
    }
    Ok(())
}

fn check_header_name(field: &str, value: &str) -> Result<(), ConfigError> {
    let valid =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(field, format!("`{value}` is not a valid header name")));
    }
    Ok(())
}

fn check_credentials(credentials: &RawCredentials) -> Result<(), ConfigError> {
    check_header_name("credentials.authorization_header", &credentials.authorization_header)?;
    check_header_name("credentials.api_key_header", &credentials.api_key_header)?;
    if credentials.realm.contains('"') || credentials.realm.contains('\\') {
        return Err(ConfigError::new("credentials.realm", "must not contain `\"` or `\\`"));
    }
    check_header_value("credentials.realm", &credentials.realm)
}

/// Headers the filter must never set or remove for routing: framing, hop-by-hop, and the
/// request's identity.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "expect",
    "cookie",
    "origin",
];

fn check_routing(routing: &RawRouting, credentials: &RawCredentials) -> Result<(), ConfigError> {
    for (field, name) in
        [("routing.cluster_header", &routing.cluster_header), ("routing.api_header", &routing.api_header)]
    {
        check_header_name(field, name)?;
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-envoy-") {
            return Err(ConfigError::new(field, format!("`{name}` is a reserved header")));
        }
        if lower == credentials.authorization_header.to_ascii_lowercase()
            || lower == credentials.api_key_header.to_ascii_lowercase()
        {
            return Err(ConfigError::new(field, format!("`{name}` is also a credentials header")));
        }
    }
    if routing.cluster_header.eq_ignore_ascii_case(&routing.api_header) {
        return Err(ConfigError::new("routing.api_header", "must differ from routing.cluster_header"));
    }
    Ok(())
}

fn compile_errors(raw: RawErrors, credentials: &RawCredentials) -> Result<ErrorSettings, ConfigError> {
    let mut overrides_by_code = HashMap::new();
    let mut overrides_by_id = HashMap::new();
    let mut overrides_by_pattern = Vec::new();
    for (key, value) in raw.overrides {
        let field = format!("errors.overrides.{key}");
        if let Some(status) = value.status {
            if !(200..=599).contains(&status) {
                return Err(ConfigError::new(
                    format!("{field}.status"),
                    format!("status {status} is not an HTTP status from 200 to 599"),
                ));
            }
        }
        for text in [&value.message, &value.description].into_iter().flatten() {
            if text.len() > 4096 {
                return Err(ConfigError::new(field.clone(), "message and description are limited to 4096 bytes"));
            }
        }
        if let Ok(code) = key.parse::<u32>() {
            if !catalogue::is_known_code(code) {
                return Err(ConfigError::new(field, format!("{code} is not a code of the catalogue")));
            }
            overrides_by_code.insert(code, value);
        } else if let Some(id) = catalogue::by_id(&key) {
            overrides_by_id.insert(id, value);
        } else if let Some(pattern) = catalogue::CodePattern::parse(&key) {
            if !catalogue::known_codes().any(|code| pattern.matches(code)) {
                return Err(ConfigError::new(field, format!("`{key}` matches no code of the catalogue")));
            }
            overrides_by_pattern.push((pattern, value));
        } else {
            return Err(ConfigError::new(
                field,
                format!("`{key}` is neither a code, a code family (`9008xx`) nor an id of the catalogue"),
            ));
        }
    }
    if let Some(cors) = &raw.cors {
        if cors.allow_origins.is_empty() {
            return Err(ConfigError::new("errors.cors.allow_origins", "must list at least one origin"));
        }
        if cors.allow_credentials && cors.allow_origins.iter().any(|origin| origin == "*") {
            return Err(ConfigError::new(
                "errors.cors.allow_credentials",
                "cannot be true when allow_origins contains \"*\" (browsers refuse it)",
            ));
        }
        let lists = [
            ("allow_origins", &cors.allow_origins),
            ("allow_methods", &cors.allow_methods),
            ("allow_headers", &cors.allow_headers),
            ("expose_headers", &cors.expose_headers),
        ];
        for (name, list) in lists {
            for (index, value) in list.iter().enumerate() {
                let field = format!("errors.cors.{name}[{index}]");
                check_header_value(&field, value)?;
                if value.trim().is_empty() || value.contains(',') {
                    return Err(ConfigError::new(field, "must be one non-empty value without commas"));
                }
            }
        }
    }
    check_header_value("errors.kanali_docs_url", &raw.kanali_docs_url)?;
    match (&raw.format, &raw.template) {
        (ErrorFormat::Template, None) => {
            return Err(ConfigError::new("errors.template", "is required when errors.format is `template`"));
        }
        (_, Some(template)) => {
            if template.body.is_empty() {
                return Err(ConfigError::new("errors.template.body", "must not be empty"));
            }
            check_header_value("errors.template.content_type", &template.content_type)?;
            if template.content_type.trim().is_empty() {
                return Err(ConfigError::new("errors.template.content_type", "must not be empty"));
            }
        }
        (_, None) => {}
    }
    // Broadest first: the renderer applies them in order, so the most specific wins.
    overrides_by_pattern.sort_by_key(|(pattern, _)| pattern.specificity());
    Ok(ErrorSettings {
        format: raw.format,
        overrides_by_code,
        overrides_by_id,
        overrides_by_pattern,
        cors: raw.cors,
        kanali_docs_url: raw.kanali_docs_url,
        template: raw.template,
        realm: credentials.realm.clone(),
        authorization_header: credentials.authorization_header.clone(),
        api_key_header: credentials.api_key_header.clone(),
    })
}

fn check_policies(policies: &BTreeMap<String, RawPolicy>) -> Result<HashSet<String>, ConfigError> {
    let mut names = HashSet::new();
    names.insert(UNLIMITED.to_string());
    for (name, policy) in policies {
        let field = format!("policies.{name}");
        if name == UNLIMITED {
            return Err(ConfigError::new(field, "`Unlimited` is built in and cannot be redefined"));
        }
        if name.trim().is_empty() {
            return Err(ConfigError::new("policies", "a policy name must not be empty"));
        }
        match (policy.requests, policy.bytes) {
            (Some(_), Some(_)) => return Err(ConfigError::new(field, "set `requests` or `bytes`, not both")),
            (None, None) => return Err(ConfigError::new(field, "set one of `requests` and `bytes`")),
            (Some(0), None) => return Err(ConfigError::new(format!("{field}.requests"), "must be at least 1")),
            (None, Some(0)) => return Err(ConfigError::new(format!("{field}.bytes"), "must be at least 1")),
            _ => {}
        }
        if policy.unit_count == 0 {
            return Err(ConfigError::new(format!("{field}.unit_count"), "must be at least 1"));
        }
        if let Some(burst) = &policy.burst {
            if burst.requests == 0 {
                return Err(ConfigError::new(format!("{field}.burst.requests"), "must be at least 1"));
            }
            if policy.requests.is_some_and(|requests| burst.requests >= requests) {
                return Err(ConfigError::new(
                    format!("{field}.burst.requests"),
                    "must be below the policy's own `requests`",
                ));
            }
            if !matches!(burst.per, TimeUnit::Second | TimeUnit::Minute) {
                return Err(ConfigError::new(format!("{field}.burst.per"), "must be `second` or `minute`"));
            }
        }
        names.insert(name.clone());
    }
    Ok(names)
}

fn check_policy_ref(field: String, policy: &Option<String>, policies: &HashSet<String>) -> Result<(), ConfigError> {
    match policy {
        Some(name) if !policies.contains(name) => {
            Err(ConfigError::new(field, format!("policy `{name}` is not defined in `policies`")))
        }
        _ => Ok(()),
    }
}

fn check_context(field: &str, context: &str) -> Result<(), ConfigError> {
    if !context.starts_with('/') || context.len() < 2 {
        return Err(ConfigError::new(field, format!("`{context}` must start with `/` and name at least one segment")));
    }
    if context.ends_with('/') {
        return Err(ConfigError::new(field, format!("`{context}` must not end with `/`")));
    }
    let mut version_segments = 0;
    for segment in context.get(1..).unwrap_or_default().split('/') {
        if segment == "{version}" {
            version_segments += 1;
            continue;
        }
        matcher::check_literal_segment(segment)
            .map_err(|reason| ConfigError::new(field, format!("`{context}`: {reason}")))?;
    }
    if version_segments > 1 {
        return Err(ConfigError::new(field, "`{version}` may appear once"));
    }
    Ok(())
}

fn compile_api(field: &str, index: usize, raw: RawApi, policies: &HashSet<String>) -> Result<Api, ConfigError> {
    if raw.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{field}.name"), "must not be empty"));
    }
    if raw.name.contains(':') {
        return Err(ConfigError::new(format!("{field}.name"), "must not contain `:`"));
    }
    check_header_value(&format!("{field}.name"), &raw.name)?;
    check_context(&format!("{field}.context"), &raw.context)?;
    if raw.version.is_empty() {
        return Err(ConfigError::new(format!("{field}.version"), "must not be empty"));
    }
    if !raw.context.contains("{version}") && raw.context.rsplit('/').next() == Some(raw.version.as_str()) {
        return Err(ConfigError::new(
            format!("{field}.context"),
            format!(
                "`{}` ends with the version `{}`, which the gateway appends (it would serve `{}/{}`): write \
                 the context without it, or put `{{version}}` where it goes",
                raw.context, raw.version, raw.context, raw.version
            ),
        ));
    }
    matcher::check_literal_segment(&raw.version)
        .map_err(|reason| ConfigError::new(format!("{field}.version"), reason))?;
    if raw.endpoints.production.is_none() && raw.endpoints.sandbox.is_none() {
        return Err(ConfigError::new(format!("{field}.endpoints"), "needs a production or a sandbox cluster"));
    }
    for (name, cluster) in [("production", &raw.endpoints.production), ("sandbox", &raw.endpoints.sandbox)] {
        if let Some(cluster) = cluster {
            let cluster_field = format!("{field}.endpoints.{name}");
            if cluster.is_empty() {
                return Err(ConfigError::new(cluster_field, "must not be empty"));
            }
            check_header_value(&cluster_field, cluster)?;
        }
    }
    if !raw.backend_path.is_empty() {
        let backend_field = format!("{field}.backend_path");
        if !raw.backend_path.starts_with('/') || raw.backend_path.ends_with('/') {
            return Err(ConfigError::new(backend_field, "must start with `/` and not end with `/` (or be empty)"));
        }
        for segment in raw.backend_path.get(1..).unwrap_or_default().split('/') {
            matcher::check_literal_segment(segment)
                .map_err(|reason| ConfigError::new(backend_field.clone(), reason))?;
        }
    }
    check_policy_ref(format!("{field}.policy"), &raw.policy, policies)?;

    let mut resources = Vec::with_capacity(raw.resources.len());
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for (index, resource) in raw.resources.into_iter().enumerate() {
        let resource_field = format!("{field}.resources[{index}]");
        if !METHODS.contains(&resource.method.as_str()) {
            return Err(ConfigError::new(
                format!("{resource_field}.method"),
                format!("`{}` is not one of {}", resource.method, METHODS.join(", ")),
            ));
        }
        let template = PathTemplate::parse(&resource.path)
            .map_err(|reason| ConfigError::new(format!("{resource_field}.path"), reason))?;
        if !seen.insert((resource.method.clone(), template.shape())) {
            return Err(ConfigError::new(
                format!("{resource_field}.path"),
                format!("{} {} duplicates an earlier resource", resource.method, resource.path),
            ));
        }
        check_policy_ref(format!("{resource_field}.policy"), &resource.policy, policies)?;
        let security = resource.security.clone().unwrap_or_else(|| raw.security.clone());
        if !security.contains(&SecurityScheme::Oauth2) {
            let accepts = if security.is_empty() { "is open".to_string() } else { "accepts only API keys".to_string() };
            if !resource.scopes.is_empty() {
                return Err(ConfigError::new(
                    format!("{resource_field}.scopes"),
                    format!("only OAuth2 tokens carry scopes, and this resource {accepts}: no request could pass"),
                ));
            }
            if resource.user_token_only {
                return Err(ConfigError::new(
                    format!("{resource_field}.user_token_only"),
                    format!("only OAuth2 tokens are user tokens, and this resource {accepts}: no request could pass"),
                ));
            }
        }
        for (scope_index, scope) in resource.scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    format!("{resource_field}.scopes[{scope_index}]"),
                    "a scope is one non-empty word",
                ));
            }
        }
        resources.push(Resource {
            method: resource.method,
            template,
            security: resource.security.unwrap_or_else(|| raw.security.clone()),
            scopes: resource.scopes,
            policy: resource.policy,
            user_token_only: resource.user_token_only,
        });
    }
    let any_api_key_resource = resources.iter().any(|resource| resource.security.contains(&SecurityScheme::ApiKey));
    if raw.api_key_in_query && !any_api_key_resource {
        return Err(ConfigError::new(
            format!("{field}.api_key_in_query"),
            "no resource of this API accepts API keys (`security` with `api_key`): a key in the query could never be used",
        ));
    }
    Ok(Api {
        index,
        name: raw.name,
        version: raw.version,
        context: raw.context,
        lifecycle: raw.lifecycle,
        default_version: raw.default_version,
        endpoints: raw.endpoints,
        backend_path: raw.backend_path,
        api_keys: raw.api_key_in_query
            || resources.iter().any(|resource| resource.security.contains(&SecurityScheme::ApiKey)),
        api_key_in_query: raw.api_key_in_query,
        policy: raw.policy,
        resources,
    })
}

fn check_applications(applications: &[RawApplication], policies: &HashSet<String>) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    let mut client_ids = HashSet::new();
    let mut key_hashes = HashSet::new();
    for (index, application) in applications.iter().enumerate() {
        let field = format!("applications[{index}]");
        if application.id.is_empty() {
            return Err(ConfigError::new(format!("{field}.id"), "must not be empty"));
        }
        if !ids.insert(application.id.as_str()) {
            return Err(ConfigError::new(format!("{field}.id"), format!("`{}` is used twice", application.id)));
        }
        check_policy_ref(format!("{field}.policy"), &application.policy, policies)?;
        for (client_index, client) in application.client_ids.iter().enumerate() {
            if client.id.is_empty() || !client_ids.insert(client.id.as_str()) {
                return Err(ConfigError::new(
                    format!("{field}.client_ids[{client_index}].id"),
                    "must be non-empty and unique across applications",
                ));
            }
        }
        for (key_index, key) in application.api_keys.iter().enumerate() {
            let key_field = format!("{field}.api_keys[{key_index}].sha256");
            let valid = key.sha256.len() == 64 && key.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !valid {
                return Err(ConfigError::new(key_field, "must be 64 lowercase hex characters (a SHA-256 digest)"));
            }
            if !key_hashes.insert(key.sha256.as_str()) {
                return Err(ConfigError::new(key_field, "the same key is configured twice"));
            }
        }
    }
    Ok(())
}

fn check_subscriptions(
    subscriptions: &[RawSubscription],
    applications: &[RawApplication],
    apis: &[Api],
    policies: &HashSet<String>,
) -> Result<(), ConfigError> {
    let application_ids: HashSet<&str> = applications.iter().map(|app| app.id.as_str()).collect();
    let api_keys: HashSet<String> = apis.iter().map(|api| format!("{}:{}", api.name, api.version)).collect();
    let mut seen = HashSet::new();
    for (index, subscription) in subscriptions.iter().enumerate() {
        let field = format!("subscriptions[{index}]");
        if !application_ids.contains(subscription.application.as_str()) {
            return Err(ConfigError::new(
                format!("{field}.application"),
                format!("application `{}` is not defined", subscription.application),
            ));
        }
        if !api_keys.contains(&subscription.api) {
            return Err(ConfigError::new(
                format!("{field}.api"),
                format!("API `{}` is not defined (write `<name>:<version>`)", subscription.api),
            ));
        }
        check_policy_ref(format!("{field}.tier"), &Some(subscription.tier.clone()), policies)?;
        if !seen.insert((subscription.application.as_str(), subscription.api.as_str())) {
            return Err(ConfigError::new(field, "the application is subscribed to this API twice"));
        }
        // An application whose every key is of a type the API has no endpoint for can never call it.
        let application = applications.iter().find(|app| app.id == subscription.application);
        let api = apis.iter().find(|api| format!("{}:{}", api.name, api.version) == subscription.api);
        if let (Some(application), Some(api)) = (application, api) {
            let types: HashSet<KeyType> = application
                .client_ids
                .iter()
                .map(|client| client.key_type)
                .chain(application.api_keys.iter().map(|key| key.key_type))
                .collect();
            let served = |key_type: &KeyType| match key_type {
                KeyType::Production => api.endpoints.production.is_some(),
                KeyType::Sandbox => api.endpoints.sandbox.is_some(),
            };
            if !types.is_empty() && !types.iter().any(served) {
                let (kind, missing) = if api.endpoints.production.is_none() {
                    ("PRODUCTION", "production")
                } else {
                    ("SANDBOX", "sandbox")
                };
                return Err(ConfigError::new(
                    field,
                    format!(
                        "application `{}` has only {kind} keys and API `{}` has no {missing} endpoint: every call \
                         would answer 900901",
                        application.id, subscription.api
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Blocking conditions name things that exist: a condition on an API that is not there never
/// matches (a typo would silently block nothing).
fn check_blocking_targets(conditions: &[BlockingCondition], apis: &[Api]) -> Result<(), ConfigError> {
    for (index, condition) in conditions.iter().enumerate() {
        let (field, target) = match condition {
            BlockingCondition::Api(name) => (format!("blocking[{index}].api"), name),
            BlockingCondition::Subscription { api, .. } => (format!("blocking[{index}].subscription"), api),
            _ => continue,
        };
        let known = apis.iter().any(|api| {
            let label = format!("{}:{}", api.name, api.version);
            let versioned = format!("{}/{}", api.context, api.version);
            *target == label || *target == versioned || *target == api.context
        });
        if !known {
            return Err(ConfigError::new(field, format!("`{target}` names no API of this configuration")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).expect_err("config should be refused")
    }

    const MINIMAL_API: &str = r#"{"name":"Pizza","context":"/pizzashack","version":"1.0.0",
        "endpoints":{"production":"pizza"},"resources":[{"method":"GET","path":"/menu"}]}"#;

    #[test]
    fn empty_input_and_empty_object_are_valid_and_equal_the_default() {
        assert!(Config::from_json(b"").is_ok());
        let parsed = Config::from_json(b"{}").unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let error = error_of(
            r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
               "resources":[{"method":"GET","path":"/x","methd":"GET"}]}]}"#,
        );
        assert!(error.field.starts_with("apis[0].resources[0]"), "{error}");
        assert!(error.reason.contains("unknown field `methd`"), "{error}");
    }

    #[test]
    fn bad_path_template_is_named() {
        let error = error_of(
            r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
               "resources":[{"method":"GET","path":"/x/{id"}]}]}"#,
        );
        assert_eq!(error.field, "apis[0].resources[0].path");
    }

    #[test]
    fn invalid_override_status_is_named() {
        let error = error_of(r#"{"errors":{"overrides":{"900800":{"status":99}}}}"#);
        assert_eq!(error.field, "errors.overrides.900800.status");
        let error = error_of(r#"{"errors":{"overrides":{"900800":{"status":600}}}}"#);
        assert_eq!(error.field, "errors.overrides.900800.status");
    }

    #[test]
    fn overrides_accept_codes_transport_codes_and_ids() {
        let config = Config::from_json(
            br#"{"errors":{"overrides":{"900800":{"status":555},"101507":{"status":599},
                 "production_key_without_endpoint":{"message":"no prod"}}}}"#,
        )
        .unwrap();
        assert_eq!(config.errors.overrides_by_code[&900800].status, Some(555));
        assert!(config.errors.overrides_by_code.contains_key(&101507));
        assert!(config.errors.overrides_by_id.contains_key(&FaultId::ProductionKeyWithoutEndpoint));
        assert_eq!(error_of(r#"{"errors":{"overrides":{"123":{}}}}"#).field, "errors.overrides.123");
        assert_eq!(error_of(r#"{"errors":{"overrides":{"nope":{}}}}"#).field, "errors.overrides.nope");
        assert_eq!(error_of(r#"{"errors":{"overrides":{"7xx":{}}}}"#).field, "errors.overrides.7xx");
        assert!(Config::from_json(br#"{"errors":{"overrides":{"9008xx":{"status":555}}}}"#).is_ok());
    }

    #[test]
    fn template_format_needs_a_template() {
        assert_eq!(error_of(r#"{"errors":{"format":"template"}}"#).field, "errors.template");
    }

    #[test]
    fn unknown_format_is_refused() {
        let error = error_of(r#"{"errors":{"format":"soap"}}"#);
        assert_eq!(error.field, "errors.format");
    }

    #[test]
    fn api_references_and_uniqueness_are_checked() {
        let twice = format!(r#"{{"apis":[{MINIMAL_API},{MINIMAL_API}]}}"#);
        assert_eq!(error_of(&twice).field, "apis[1].name");
        let no_policy = MINIMAL_API.replace(r#""version":"1.0.0","#, r#""version":"1.0.0","policy":"Gold","#);
        assert_eq!(error_of(&format!(r#"{{"apis":[{no_policy}]}}"#)).field, "apis[0].policy");
        let no_endpoint = MINIMAL_API.replace(r#""endpoints":{"production":"pizza"}"#, r#""endpoints":{}"#);
        assert_eq!(error_of(&format!(r#"{{"apis":[{no_endpoint}]}}"#)).field, "apis[0].endpoints");
        let bad_method = MINIMAL_API.replace(r#""GET""#, r#""FETCH""#);
        assert_eq!(error_of(&format!(r#"{{"apis":[{bad_method}]}}"#)).field, "apis[0].resources[0].method");
    }

    #[test]
    fn contexts_are_checked() {
        for context in ["pizzashack", "/", "/pizza/", "/pi zza", "/a/../b", "/a//b", "/{id}"] {
            let api = MINIMAL_API.replace("/pizzashack", context);
            let error = error_of(&format!(r#"{{"apis":[{api}]}}"#));
            assert_eq!(error.field, "apis[0].context", "context {context}");
        }
    }

    #[test]
    fn subscriptions_must_reference_known_things() {
        let json = format!(
            r#"{{"apis":[{MINIMAL_API}],"applications":[{{"id":"app1","name":"App"}}],
               "subscriptions":[{{"application":"app1","api":"Pizza:2.0.0"}}]}}"#
        );
        assert_eq!(error_of(&json).field, "subscriptions[0].api");
        let json = format!(
            r#"{{"apis":[{MINIMAL_API}],"applications":[{{"id":"app1","name":"App"}}],
               "subscriptions":[{{"application":"app1","api":"Pizza:1.0.0","tier":"Gold"}}]}}"#
        );
        assert_eq!(error_of(&json).field, "subscriptions[0].tier");
    }

    #[test]
    fn api_key_hashes_are_checked() {
        let json = r#"{"applications":[{"id":"a","name":"A","api_keys":[{"sha256":"ABC"}]}]}"#;
        assert_eq!(error_of(json).field, "applications[0].api_keys[0].sha256");
    }

    #[test]
    fn policies_are_checked() {
        assert_eq!(error_of(r#"{"policies":{"P":{"per":"minute"}}}"#).field, "policies.P");
        assert_eq!(error_of(r#"{"policies":{"P":{"requests":0,"per":"minute"}}}"#).field, "policies.P.requests");
        assert_eq!(
            error_of(r#"{"policies":{"P":{"requests":5,"per":"minute","burst":{"requests":1,"per":"hour"}}}}"#).field,
            "policies.P.burst.per"
        );
        assert_eq!(error_of(r#"{"policies":{"Unlimited":{"requests":5,"per":"minute"}}}"#).field, "policies.Unlimited");
    }

    #[test]
    fn cors_wildcard_with_credentials_is_refused() {
        let error = error_of(r#"{"errors":{"cors":{"allow_origins":["*"],"allow_credentials":true}}}"#);
        assert_eq!(error.field, "errors.cors.allow_credentials");
    }

    #[test]
    fn values_are_not_echoed_in_type_errors() {
        let error = error_of(r#"{"applications":[{"id":"a","name":"A","api_keys":["sk_live_SECRET"]}]}"#);
        assert_eq!(error.field, "applications[0].api_keys[0]");
        assert!(!error.to_string().contains("sk_live_SECRET"), "{error}");
        assert!(error.reason.contains("invalid type: a string"), "{error}");
        let error = error_of(r#"{"applications":[{"id":"a","name":"A","api_keys":["se\"cr\"et-TAIL"]}]}"#);
        assert!(!error.to_string().contains("TAIL"), "{error}");
    }

    #[test]
    fn client_ids_name_their_key_manager_when_there_are_several() {
        let two = r#"{"key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"a"}},
            {"name":"b","issuer":"https://b","jwks":{"cluster":"b"}}],
            "applications":[{"id":"x","name":"X","client_ids":[{"id":"c"}]}]}"#;
        assert_eq!(error_of(two).field, "applications[0].client_ids[0].key_manager");
        let unknown = two.replace(r#"{"id":"c"}"#, r#"{"id":"c","key_manager":"z"}"#);
        assert_eq!(error_of(&unknown).field, "applications[0].client_ids[0].key_manager");
        let named = two.replace(r#"{"id":"c"}"#, r#"{"id":"c","key_manager":"b"}"#);
        assert_eq!(Config::from_json(named.as_bytes()).unwrap().clients["c"].key_manager, Some(1));
    }

    #[test]
    fn routing_headers_must_not_be_reserved_or_credentials() {
        assert_eq!(error_of(r#"{"routing":{"cluster_header":"host"}}"#).field, "routing.cluster_header");
        assert_eq!(error_of(r#"{"routing":{"cluster_header":"Content-Length"}}"#).field, "routing.cluster_header");
        assert_eq!(error_of(r#"{"routing":{"api_header":"apikey"}}"#).field, "routing.api_header");
        assert_eq!(
            error_of(r#"{"routing":{"api_header":"x-envoy-upstream-rq-timeout-ms"}}"#).field,
            "routing.api_header"
        );
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert_eq!(error_of("{} {}").field, "(root)");
        assert_eq!(error_of("[]").field, "(root)");
    }

    #[test]
    fn base_paths_include_default_version_and_version_templates() {
        let api = MINIMAL_API.replace(r#""version":"1.0.0","#, r#""version":"1.0.0","default_version":true,"#);
        let config = Config::from_json(format!(r#"{{"apis":[{api}]}}"#).as_bytes()).unwrap();
        assert!(config.base_paths.contains_key("/pizzashack/1.0.0"));
        assert!(config.base_paths.contains_key("/pizzashack"));
        let api = MINIMAL_API.replace("/pizzashack", "/{version}/pizzashack");
        let config = Config::from_json(format!(r#"{{"apis":[{api}]}}"#).as_bytes()).unwrap();
        assert!(config.base_paths.contains_key("/1.0.0/pizzashack"));
    }

    /// Mistakes that used to load and then fail on every request are refused at load, naming the
    /// field.
    #[test]
    fn configurations_that_could_never_serve_are_refused_at_load() {
        let api = |extra: &str| format!(r#"{{"apis":[{}]{extra}}}"#, MINIMAL_API);
        let cases: Vec<(String, &str)> = vec![
            (api("").replace(r#""context":"/pizzashack""#, r#""context":"/pizzashack/1.0.0""#), "apis[0].context"),
            (api("").replace(r#""path":"/menu""#, r#""path":"/orders/:id""#), "apis[0].resources[0].path"),
            (
                api("").replace(r#""path":"/menu""#, r#""path":"/menu","security":["api_key"],"scopes":["read"]"#),
                "apis[0].resources[0].scopes",
            ),
            (
                api("").replace(r#""path":"/menu""#, r#""path":"/menu","security":[],"user_token_only":true"#),
                "apis[0].resources[0].user_token_only",
            ),
            (
                api("").replace(r#""version":"1.0.0","#, r#""version":"1.0.0","api_key_in_query":true,"#),
                "apis[0].api_key_in_query",
            ),
            (
                api(
                    r#","applications":[{"id":"a","name":"A","api_keys":[{"sha256":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","key_type":"SANDBOX"}]}],
                      "subscriptions":[{"application":"a","api":"Pizza:1.0.0"}]"#,
                ),
                "subscriptions[0]",
            ),
            (api(r#","blocking":[{"api":"/pizzashak/1.0.0"}]"#), "blocking[0].api"),
            (api(r#","applications":[{"id":"a","name":"A","client_ids":[{"id":"c"}]}]"#), "applications[0].client_ids"),
            (api(r#","key_managers":[{"name":"k","issuer":"https://k"}]"#), "key_managers[0]"),
        ];
        for (json, field) in cases {
            assert_eq!(error_of(&json).field, field, "{json}");
        }
        // The mixed application is fine: its production key works.
        let mixed = api(r#","applications":[{"id":"a","name":"A","api_keys":[
            {"sha256":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","key_type":"SANDBOX"},
            {"sha256":"c5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"}]}],
            "subscriptions":[{"application":"a","api":"Pizza:1.0.0"}]"#);
        assert!(Config::from_json(mixed.as_bytes()).is_ok());
    }

    #[test]
    fn secrets_are_taken_from_the_environment_or_inline_with_a_warning() {
        let km = |secret: &str| {
            format!(
                r#"{{"key_managers":[{{"name":"k","issuer":"https://k",
                    "introspection":{{"cluster":"km","client_id":"gw","client_secret":{secret}}}}}]}}"#
            )
        };
        std::env::set_var("APIM_TEST_SECRET_A", "from-the-environment");
        let config = Config::from_json(km(r#"{"env":"APIM_TEST_SECRET_A"}"#).as_bytes()).unwrap();
        let introspection = config.key_managers[0].introspection.as_ref().unwrap();
        assert_eq!(introspection.client_secret.0, b"from-the-environment");
        assert!(config.warnings().is_empty());
        assert!(!format!("{config:?}").contains("from-the-environment"), "never printed");
        let error = error_of(&km(r#"{"env":"APIM_TEST_SECRET_UNSET"}"#));
        assert_eq!(error.field, "key_managers[0].introspection.client_secret.env");
        let inline = Config::from_json(km(r#""inline-secret""#).as_bytes()).unwrap();
        assert!(inline.warnings()[0].contains("key_managers[0].introspection.client_secret"));
        assert!(!inline.warnings()[0].contains("inline-secret"));
        assert_eq!(error_of(&km(r#"{"env":"X","value":"y"}"#)).field, "key_managers[0].introspection.client_secret");
        // HMAC secrets are random bytes: base64.
        let hmac = |secret: &str| {
            format!(
                r#"{{"key_managers":[{{"name":"k","issuer":"https://k","algorithms":["HS256"],"hmac_secret":{secret}}}]}}"#
            )
        };
        let random = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xffu8; 32]);
        assert!(Config::from_json(hmac(&format!(r#"{{"value":"{random}","encoding":"base64"}}"#)).as_bytes()).is_ok());
        assert_eq!(error_of(&hmac(r#"{"value":"c2hvcnQ=","encoding":"base64"}"#)).field, "key_managers[0].hmac_secret");
        assert_eq!(error_of(&hmac(r#"{"value":"!!!","encoding":"base64"}"#)).field, "key_managers[0].hmac_secret");
    }

    #[test]
    fn duplicate_base_paths_are_refused() {
        let other = MINIMAL_API.replace(r#""name":"Pizza""#, r#""name":"Other""#);
        let error = error_of(&format!(r#"{{"apis":[{MINIMAL_API},{other}]}}"#));
        assert_eq!(error.field, "apis[1].context");
    }
}
