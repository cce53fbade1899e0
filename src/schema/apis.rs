//! APIs and their resources, as users write them.

use crate::vocab::{KmId, Lifecycle, SecurityScheme};
use schemars::JsonSchema;
use serde::Deserialize;

/// An API.
// `Default` is for code that sets what it needs (the control plane's APIs): its `security` is
// empty (open), not the configuration's default `oauth2`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
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
    /// Envoy cluster names of the production and sandbox endpoints (a cluster, not WSO2's
    /// endpoint URL: a URL is refused). At least one is required.
    pub endpoints: RawEndpoints,
    /// Path prefix on the backend that replaces context and version (e.g. `/api/v1`).
    /// Defaults to empty (the resource path is sent as it is).
    #[serde(default)]
    pub backend_path: String,
    /// Security schemes accepted by the API's resources; `[]` makes them open.
    /// Defaults to `["oauth2"]`, as in WSO2.
    #[serde(default = "default_security")]
    pub security: Vec<SecurityScheme>,
    /// Accept the API key in the query too, in the parameter `credentials.api_key_query_param` names
    /// (`apikey` by default). Defaults to false.
    #[serde(default)]
    pub api_key_in_query: bool,
    /// API-level throttling policy name. Defaults to none.
    #[serde(default)]
    pub policy: Option<String>,
    /// Count a WebSocket connection's frames, not its handshake, as API-M counts a WebSocket API's:
    /// a handshake (a WebSocket upgrade) is authenticated and checked (blocking conditions, the
    /// policies deployed) but not counted, and every text, binary and continuation frame the
    /// connection then carries, in either direction, takes one request at the API, subscription
    /// and application levels (no resource's tier: API-M counts a frame at the API's key, with the
    /// API's tier). A frame over a limit is dropped, and the client is
    /// sent the text frame `Error code: 4008 reason: Websocket frame throttled out` in its place
    /// (errors entry `websocket_frame_throttled`; for a client's frame, with the next bytes the
    /// backend sends: a filter cannot start a write to the client). Needs the listener's
    /// `upgrade_configs: [{upgrade_type: websocket}]`. Defaults to false: a handshake counts as one
    /// request, whatever the connection then carries.
    #[serde(default)]
    pub count_websocket_frames: bool,
    /// Count a response's server-sent events, not its request, as API-M counts a server-sent-events
    /// API's: a request is authenticated and checked (blocking conditions, the policies deployed)
    /// but not counted, and each event of its answer (a `2xx`; lines up to a blank line, a
    /// keep-alive comment too, as API-M counts each blank-line-ended block) takes one request at
    /// the API (or resource), subscription and application levels. The first event over a limit
    /// ends the stream there, as API-M ends it (no error event; Envoy resets the stream), and a
    /// request whose first event would be refused now is answered with that level's fault before
    /// its backend is asked, as API-M answers it. Defaults to false: a request counts once, whatever its
    /// answer carries.
    #[serde(default)]
    pub count_server_sent_events: bool,
    /// Resources (method + path template). Defaults to none (every request answers 900906).
    #[serde(default)]
    pub resources: Vec<RawResource>,
    /// Served at its context alone, without its version in the path: a control plane's API product
    /// of API-M 4.0 to 4.2, whose context holds no version. Never read from the configuration.
    #[serde(skip)]
    pub unversioned_path: bool,
    /// The key managers whose OAuth2 tokens this API takes (their `name`s in `key_managers`), as
    /// API-M's per-API key manager setting: a token of another is refused with 900901, and the
    /// API key the request also offers is then tried where the resource takes both, as API-M's
    /// gateway moves on to its API key authenticator. API keys are not affected. Defaults to every
    /// key manager (API-M's `all`).
    #[serde(default)]
    pub key_managers: Option<Vec<String>>,
    /// `key_managers` as the key managers' ids, set when the configuration compiles.
    #[serde(skip)]
    pub key_manager_ids: Option<Vec<KmId>>,
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

/// A resource of an API.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Resource")]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// HTTP method: GET, POST, PUT, DELETE, PATCH, HEAD or OPTIONS. Required.
    pub method: String,
    /// Path template below the API's base path (`/menu`, not `/pizzashack/1.0.0/menu`, which is
    /// refused): literal segments, `{param}` segments (one segment each) and a final `*` (any
    /// remainder, including none). Required.
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
    /// Refuse application tokens (WSO2's auth type `Application User`: user tokens only).
    /// Defaults to false.
    #[serde(default)]
    pub user_token_only: bool,
    /// Refuse user tokens (WSO2's auth type `Application`: application tokens only; API keys,
    /// an application's, pass). Not with `user_token_only`. Defaults to false.
    #[serde(default)]
    pub application_token_only: bool,
}
