//! How faults are rendered, as users write it: format, overrides, CORS, the custom template, and
//! which gateway's codes to use.
use std::collections::BTreeMap;

use crate::vocab::choice;
use schemars::JsonSchema;
use serde::Deserialize;

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
    /// an id over a code, a code over a family, a narrower family over a broader one. A code two
    /// entries share (`102511`: an incomplete payload, and Choreo Connect's local reset; `404`) is
    /// overridden for both: name the entry's id to change one. Two keys for one code or family
    /// (`900901` and `0900901`, `9008xx` and `9008XX`) are refused. Defaults to none.
    #[serde(default)]
    pub overrides: BTreeMap<String, RawOverride>,
    /// CORS headers on every response of an API, as WSO2's CORS handler sets them: faults,
    /// preflight answers, and the backend's answers (a backend's own `Access-Control-*` headers
    /// are replaced, and `Origin` joins its `Vary`). Defaults to off: the backend's headers pass.
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorFormat {
    /// WSO2 API Manager 4.x JSON: `{"code":"900901","message":...,"description":...}`.
    #[default]
    ApimJson,
    /// WSO2 API Manager XML: `<am:fault xmlns:am="http://wso2.org/apimanager">...`.
    ApimXml,
    /// WSO2 API Microgateway JSON: `{"fault":{"code":...,"message":...,"description":...}}`.
    Microgateway,
    /// WSO2 Choreo Connect JSON: `{"code":...,"error_message":...,"error_description":...}` (its
    /// router's answers with `message`/`description`), with its statuses, codes, texts and headers
    /// where they differ from API-M's (docs/ERROR-CODES.md): 403 for 900805, 429 for 900801, 401
    /// for a key type the API has no endpoint for, 900901 for a missing credential.
    ChoreoConnect,
    /// Kanali JSON: `{"status":...,"message":...,"code":...,"details":...}`.
    Kanali,
    /// Tyk JSON: `{"error":...}` with Tyk's statuses.
    Tyk,
    /// `errors.template`, with placeholders.
    Template,
}

choice!(ErrorFormat {
    ApimJson = "apim-json",
    ApimXml = "apim-xml",
    Microgateway = "microgateway",
    ChoreoConnect = "choreo-connect",
    Kanali = "kanali",
    Tyk = "tyk",
    Template = "template",
});

/// An override of one catalogue entry. Unset fields keep the catalogue's value.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "Override")]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// HTTP status, 200 to 599, but not 204, 205 or 304 (they carry no content, and a fault is its
    /// body). Defaults to the catalogue's status.
    #[serde(default)]
    #[schemars(range(min = 200, max = 599))]
    pub status: Option<u16>,
    /// The `code` field: the code the body carries (and the text frame a WebSocket client is sent,
    /// `Error code: <code> reason: ...`). For clients of a release whose codes differ: API-M 4.x's
    /// earlier releases send 4003 for a WebSocket frame throttled out, later ones 4008. Stats and
    /// logs keep the catalogue's code. Defaults to the catalogue's code.
    #[serde(default)]
    pub code: Option<u32>,
    /// The `message` field. Defaults to the catalogue's message.
    #[serde(default)]
    pub message: Option<String>,
    /// The `description` field. Defaults to the catalogue's description.
    #[serde(default)]
    pub description: Option<String>,
    /// The `grpc-status` a gRPC client reads (Envoy answers a gRPC request with a trailers-only
    /// 200, the fault in `grpc-message`), 1 to 16: `8` (RESOURCE_EXHAUSTED) on the throttling
    /// codes gives throttled gRPC clients what Envoy's rate-limit filters give them with
    /// `rate_limited_as_resource_exhausted`. Defaults to Envoy's mapping of the HTTP status: 400 is
    /// 13 (INTERNAL), 401 16 (UNAUTHENTICATED), 403 7 (PERMISSION_DENIED), 404 12
    /// (UNIMPLEMENTED), 429 and 502 to 504 14 (UNAVAILABLE), others 2 (UNKNOWN).
    #[serde(default)]
    #[schemars(range(min = 1, max = 16))]
    pub grpc_status: Option<u8>,
}

/// CORS settings: the gateway's CORS policy, for faults, preflights and the backend's answers.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Cors")]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Allowed origins, as browsers send them (`https://app.example`: lowercase, the host in
    /// ASCII (punycode), no default port, no path, no trailing `/`; other spellings are refused);
    /// `"*"` allows any. Required, at least one.
    pub allow_origins: Vec<String>,
    /// The methods `Access-Control-Allow-Methods` may list: methods as requests carry them
    /// (case-sensitive: `GET`, never `get`), or `"*"` for every method. A preflight's answer, and
    /// every answer to a request that matched a resource (the backend's, and a fault after
    /// routing such as 900901, 900902 or 900804), lists the methods of that resource's path
    /// template (every verb the API defines for it, in configuration order) that this list allows,
    /// as API-M's CORS handler sends its matched resource's; an answer to a request no resource
    /// matched (900906, 404) lists this list. Defaults to `GET, PUT, POST, DELETE, PATCH, OPTIONS`.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// `Access-Control-Allow-Headers`. `"*"` allows every header a preflight asks for: its
    /// answer echoes the `Access-Control-Request-Headers` (as API-M's CORS handler does; browsers
    /// never read a literal `*` as `Authorization`) and names them in its `Vary`. Defaults to WSO2's
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
    /// when it contains `xml` or `html`, inserted as they are otherwise. Defaults to
    /// `application/json`.
    #[serde(default = "default_template_content_type")]
    pub content_type: String,
    /// The body, with placeholders `{code}`, `{status}`, `{message}`, `{description}`. Required.
    pub body: String,
}

fn default_template_content_type() -> String {
    "application/json".to_string()
}

/// Where WSO2's gateways disagree on codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Compatibility {
    /// WSO2 API Manager: 900901 for expired, inactive and malformed credentials (a bearer token
    /// with whitespace inside); 900902, as for no credential, for an `Authorization` header of
    /// another scheme (`Basic ...`) or `Bearer` with no token.
    #[default]
    Apim,
    /// WSO2 API Microgateway: 900903, 900904, 900912 and 900917 where they apply.
    Microgateway,
}

choice!(Compatibility {
    Apim = "apim",
    Microgateway = "microgateway",
});

/// What to do with a request that matches no API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Answer with the gateway's 404 fault.
    #[default]
    Fault,
    /// Let the request through untouched to Envoy's routes.
    PassThrough,
}

choice!(Unmatched {
    Fault = "fault",
    PassThrough = "pass_through",
});
