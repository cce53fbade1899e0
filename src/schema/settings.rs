//! Where credentials are read from and how the upstream request is prepared and routed, as users
//! write it.

use super::default_true;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Credential locations and upstream hygiene.
///
/// Header values are bytes (Envoy lets obs-text through): a credential header whose value is not
/// UTF-8 is refused as invalid credentials (900901); any other header is carried through as it
/// came (the filter only ever rewrites its own headers and `:path`).
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "Credentials")]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// Header carrying `Bearer <token>`. Defaults to `authorization`.
    #[serde(default = "default_authorization_header")]
    pub authorization_header: String,
    /// Header carrying an API key. Defaults to `apikey`.
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// Realm in `WWW-Authenticate` challenges (`Bearer realm="..."`): no `"`, `\` or control
    /// characters. Defaults to `WSO2 API Manager`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Remove the credentials before the request goes upstream: the credential headers (and
    /// request trailers of those names), the API-key query parameter of any API whose resources
    /// accept API keys (whether or not the resource called asked for one), and a control plane's
    /// WebSocket API's `access_token` query parameter. Defaults to true.
    #[serde(default = "default_true")]
    pub strip: bool,
    /// Tokens and API keys longer than this (bytes) are refused before parsing, 64 to 65536.
    /// Defaults to 8192.
    #[serde(default = "default_max_token_bytes")]
    #[schemars(range(min = 64, max = 65536))]
    pub max_token_bytes: usize,
    /// Verified JWTs remembered per worker (never past their `exp`): this many access tokens, and
    /// as many JWT API keys again (whose restrictions are still checked on every request), so a
    /// worker holds up to twice this many tokens of up to `max_token_bytes` each. An access token
    /// one worker verified is also shared with the others (by its SHA-256, in shared data); a JWT
    /// API key is not. 0 turns them all off, so every request verifies its token. At most
    /// 1000000. Defaults to 10000.
    #[serde(default = "default_verified_cache_entries")]
    #[schemars(range(max = 1000000))]
    pub verified_cache_entries: usize,
    /// Query parameter carrying an API key, for APIs with `api_key_in_query` and a control plane's
    /// WebSocket APIs that take API keys (as API-M's gateway takes it on a handshake). Defaults to
    /// `apikey`.
    #[serde(default = "default_api_key_header")]
    pub api_key_query_param: String,
    /// Prefix of the headers that carry the auth context to the backend
    /// (`<prefix>application-id`, `-application-name`, `-subscriber`, `-key-type`, `-tier`,
    /// `-end-user`); client-sent copies are removed. Defaults to `x-apim-`.
    #[serde(default = "default_context_prefix")]
    pub context_header_prefix: String,
    /// Send the auth context to the backend in the headers `context_header_prefix` names.
    /// Defaults to true. Turn it off when backends read the backend JWT (`backend_jwt`) or need no
    /// context: six header writes fewer per authorized request. Client-sent copies of these
    /// headers are removed either way.
    #[serde(default = "default_true")]
    pub context_headers: bool,
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
            context_headers: true,
        }
    }
}

pub(crate) fn default_authorization_header() -> String {
    "authorization".to_string()
}
pub(crate) fn default_api_key_header() -> String {
    "apikey".to_string()
}
pub(crate) fn default_realm() -> String {
    "WSO2 API Manager".to_string()
}

/// How the chosen endpoint reaches Envoy's router. Every header the filter sets (these two, the
/// auth-context headers, `throttling.quota_exceeded_header`, `backend_jwt.header`) must be its
/// own, and none a credentials header or a header requests depend on (`Host`, `Content-*`,
/// `Transfer-Encoding`, `Cookie`, `Origin`, `X-Forwarded-*`, `X-Envoy-*`, and the like): the
/// client's copy of each is removed from every request.
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
