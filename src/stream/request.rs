//! The request as the stream reads and prepares it. A snapshot of the headers is taken once, as
//! bytes: the filter reads the headers it needs as text when they are UTF-8 and never rewrites the
//! others. A credential that is not UTF-8 is refused (900901); a non-UTF-8 `Origin` is treated as
//! absent, a non-UTF-8 `:path` matches nothing. Every header the filter owns is removed from the
//! client's request first, in any spelling Envoy lets through.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::auth::authorize::{missing_endpoint, Authorized};
use crate::auth::credentials::{self, CredentialHeader, Extracted, Presented, ACCESS_TOKEN_PARAM};
use crate::auth::settings::CredentialSettings;
use crate::catalogue::Fault;
use crate::cidr::parse_source_address;
use crate::config::Config;
use crate::host::{text, Header, Host};
use crate::routing::query::{is_param_named, QUERY_SEPARATORS};
use crate::routing::{Api, Forward, RequestView, Resource};

/// The request headers as they arrived, and what the stream learned of the request. Its `Debug`
/// names the headers and sizes the path: their values hold credentials.
#[derive(Default)]
pub struct Snapshot {
    headers: Vec<Header>,
    method: String,
    path: String,
    preflight_method: Option<String>,
    pub origin: Option<String>,
    /// The filter saw the end of the request.
    pub complete: bool,
    /// The filter saw request body data.
    pub body_started: bool,
    /// A gRPC request (`content-type` `application/grpc` or `application/grpc+proto`, ...): Envoy
    /// answers it itself, a failed upstream as a fault alike, as a trailers-only 200 that carries
    /// the status in `grpc-status`.
    pub grpc: bool,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("method", &self.method)
            .field("path_bytes", &self.path.len())
            .field("complete", &self.complete)
            .field("body_started", &self.body_started)
            .finish_non_exhaustive()
    }
}

/// Whether a header name is one the filter owns, in any spelling Envoy lets through: letter case,
/// and `_` for `-` (CGI-style backends read `x_apim_tier` as `x-apim-tier`). Compared byte by byte
/// with the normalized names: this runs for every request header, and allocates nothing.
fn is_owned(config: &Config, name: &str) -> bool {
    let spelled_as = |owned: &String| {
        owned.len() == name.len()
            && owned
                .bytes()
                .zip(name.bytes())
                .all(|(want, got)| want == if got == b'_' { b'-' } else { got.to_ascii_lowercase() })
    };
    config.owned_headers.iter().any(spelled_as)
}

/// Removes from the request's trailers what never goes upstream in its headers: the client's
/// copies of the filter's own headers and, when credentials are stripped, the credentials
/// headers. A backend that reads trailers (gRPC and HTTP/2 ones may) sees the same request as one
/// that reads headers.
pub fn clean_trailers(host: &mut impl Host, config: &Config) {
    let credentials = &config.auth.credentials;
    let is_credential = |name: &str| {
        credentials.strip
            && [&credentials.authorization_header, &credentials.api_key_header]
                .iter()
                .any(|credential| credential.eq_ignore_ascii_case(name))
    };
    for name in host.request_trailer_names() {
        if is_owned(config, &name) || is_credential(&name) {
            host.remove_request_trailer(&name);
        }
    }
}

impl Snapshot {
    /// Takes the request headers and removes the client's copies of the filter's own headers.
    pub fn take(host: &mut impl Host, config: &Config, end_of_stream: bool) -> Snapshot {
        let headers = host.request_headers();
        let owned: Vec<String> =
            headers.iter().map(|(name, _)| name).filter(|name| is_owned(config, name)).cloned().collect();
        for name in owned {
            host.set_request_header(&name, None);
        }
        let mut snapshot = Snapshot { headers, complete: end_of_stream, ..Snapshot::default() };
        snapshot.method = snapshot.text(":method").unwrap_or_default().to_string();
        snapshot.path = snapshot.text(":path").unwrap_or_default().to_string();
        snapshot.preflight_method = snapshot.text("access-control-request-method").map(String::from);
        snapshot.origin = snapshot.text("origin").map(String::from);
        snapshot.grpc = snapshot.bytes("content-type").is_some_and(is_grpc_content_type);
        snapshot
    }

    /// The bytes of the request's headers held (what tests measure).
    #[cfg(test)]
    pub fn bytes_held(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
        headers + self.method.len() + self.path.len()
    }

    /// What routing sees.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: &self.path,
            access_control_request_method: self.preflight_method.as_deref(),
        }
    }

    /// `Access-Control-Request-Headers`, as the client sent it.
    pub fn preflight_headers(&self) -> Option<&str> {
        self.text("access-control-request-headers")
    }

    /// The query string of `:path`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, query)| query)
    }

    fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    /// A header as text; absent, or not UTF-8, is `None`.
    fn text(&self, name: &str) -> Option<&str> {
        self.bytes(name).and_then(text)
    }

    /// The `Referer` (a JWT API key's `permittedReferer`); absent, or not UTF-8, is `None`.
    pub fn referer(&self) -> Option<&str> {
        self.text("referer")
    }

    /// Whether the request is a WebSocket handshake: `upgrade: websocket` (Envoy presents an HTTP/2
    /// or HTTP/3 extended CONNECT for a WebSocket so too).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.bytes("upgrade").is_some_and(|value| {
            value.split(|byte| *byte == b',').any(|protocol| protocol.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        })
    }

    /// The request headers as they arrived, the client's copies of the filter's own included
    /// (removed upstream only, in [`Snapshot::take`]).
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The credential the request presents for `resource` (the token of a bearer, or an API key),
    /// as authentication read it: with `bearer_refused`, the API key that stood in for the token.
    pub fn presented_credential(
        &self,
        settings: &CredentialSettings,
        api: &Api,
        resource: &Resource,
        bearer_refused: bool,
    ) -> Option<String> {
        let authorization = self.credential(&settings.authorization_header);
        let api_key = self.credential(&settings.api_key_header);
        let (query, handshake) = (self.query(), self.is_websocket_upgrade());
        if bearer_refused {
            return credentials::fallback_api_key(settings, api, resource, api_key, query, handshake);
        }
        match credentials::extract(settings, api, resource, authorization, api_key, query, handshake) {
            Extracted::Found(Presented::Bearer(token) | Presented::ApiKey(token)) => Some(token),
            _ => None,
        }
    }

    /// A credential header as extraction sees it.
    pub fn credential(&self, name: &str) -> CredentialHeader<'_> {
        match self.bytes(name) {
            None => CredentialHeader::Absent,
            Some(value) => text(value).map_or(CredentialHeader::Unreadable, CredentialHeader::Text),
        }
    }
}

/// Whether a `content-type` is gRPC's, as Envoy tells a gRPC request (and then answers it with
/// gRPC's trailers-only responses): `application/grpc`, or it followed by `+` (`application/grpc-web`
/// is not).
fn is_grpc_content_type(value: &[u8]) -> bool {
    value.strip_prefix(b"application/grpc").is_some_and(|rest| matches!(rest.first(), None | Some(b'+')))
}

/// The endpoint cluster a request goes to once throttling let it through: the credential's key
/// type's, or an open resource's production one. A key type the API has no endpoint for is
/// refused here, after throttling and counted, as API-M refuses it in the API's in-sequence after
/// its handlers. `None`: a secured resource forwarded without a credential (a defect).
pub fn endpoint<'r>(route: &'r Forward, authorized: Option<&'r Authorized>) -> Option<Result<&'r str, Fault>> {
    match authorized {
        Some(authorized) => Some(authorized.endpoint()),
        None if route.open => {
            Some(route.cluster.as_deref().ok_or_else(|| missing_endpoint(crate::vocab::KeyType::Production)))
        }
        None => None,
    }
}

/// Where a forwarded request goes: its API, route and endpoint cluster.
pub struct Target<'a> {
    pub api: Option<&'a Api>,
    pub route: &'a Forward,
    pub cluster: &'a str,
}

/// Prepares a forwarded request: the routing headers, the upstream path (rewritten, and without an
/// API key in the query), no credentials, the auth context, the over-quota flag.
pub fn apply_forward(
    host: &mut impl Host,
    config: &Config,
    request: &Snapshot,
    target: &Target<'_>,
    authorized: Option<&Authorized>,
    over_quota: bool,
) {
    let Target { api, route, cluster } = *target;
    if over_quota {
        host.set_request_header(&config.throttle.settings.quota_exceeded_header, Some(b"true"));
    }
    host.set_request_header(&config.routing.cluster_header, Some(cluster.as_bytes()));
    if let Some(api) = api {
        host.set_request_header(&config.routing.api_header, Some(api.label.as_bytes()));
    }
    let credentials = &config.auth.credentials;
    let upstream_path = route.upstream_path.as_deref().unwrap_or(&request.path);
    // An API key in the query is a credential wherever the API accepts API keys: it never goes
    // upstream (or into upstream access logs), whether this resource asked for it or not.
    // So is an OAuth2 token in the query where the API takes it there.
    let names = [credentials.api_key_query_param.as_str(), ACCESS_TOKEN_PARAM];
    let names = match api.filter(|_| credentials.strip).map(|api| (api.api_keys, api.websocket_query_credentials)) {
        Some((true, true)) => names.as_slice(),
        Some((true, false)) => names.get(..1).unwrap_or_default(),
        Some((false, true)) => names.get(1..).unwrap_or_default(),
        _ => &[],
    };
    let upstream_path = strip_query_params(upstream_path, names);
    if upstream_path != request.path.as_str() {
        host.set_request_header(":path", Some(upstream_path.as_bytes()));
    }
    if credentials.strip {
        for name in [&credentials.authorization_header, &credentials.api_key_header] {
            if request.bytes(name).is_some() {
                host.set_request_header(name, None);
            }
        }
    }
    if let Some(authorized) = authorized.filter(|_| credentials.send_context) {
        let values = [
            Some(authorized.application_id()),
            Some(authorized.application_name()),
            Some(authorized.subscriber()),
            Some(authorized.key_type.name()),
            Some(authorized.tier()),
            authorized.end_user.as_deref(),
        ];
        for (name, value) in credentials.context_headers.iter().zip(values) {
            if let Some(value) = value.filter(|value| !value.is_empty() && !value.chars().any(char::is_control)) {
                host.set_request_header(name, Some(value.as_bytes()));
            }
        }
    }
}

/// The client's address (Envoy's `source.address`).
pub fn client_ip(host: &impl Host) -> Option<IpAddr> {
    host.property(&["source", "address"])
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| parse_source_address(&text))
}

/// A path without the credentials a query can carry: the API key, and an OAuth2 `access_token`.
pub fn without_query_credentials<'p>(path: &'p str, api_key_param: &str) -> Cow<'p, str> {
    strip_query_params(path, &[api_key_param, ACCESS_TOKEN_PARAM])
}

/// Removes query parameters (credentials) from a path, every pair of these names whether `&` or
/// `;` separates it ([`QUERY_SEPARATORS`]), in one pass over the query; a parameter's name is
/// compared after percent-decoding, so `api%6Bey=` goes too.
pub fn strip_query_params<'p>(path: &'p str, names: &[&str]) -> Cow<'p, str> {
    let Some((base, query)) = path.split_once('?') else {
        return Cow::Borrowed(path);
    };
    // Most queries hold neither the names nor an escape: nothing to decode, pair by pair (this
    // runs for every request with a query, for the access log).
    if !names.iter().any(|name| query.contains(name)) && !query.contains('%') {
        return Cow::Borrowed(path);
    }
    let is_named = |pair: &str| names.iter().any(|name| is_param_named(pair, name));
    if !query.split(QUERY_SEPARATORS).any(is_named) {
        return Cow::Borrowed(path);
    }
    // The pairs kept, each after the separator the client put before it (the first after `?`).
    let mut stripped = String::with_capacity(path.len());
    stripped.push_str(base);
    let mut separator = '?';
    for piece in query.split_inclusive(QUERY_SEPARATORS) {
        let pair = piece.strip_suffix(QUERY_SEPARATORS).unwrap_or(piece);
        if !is_named(pair) {
            stripped.push(if stripped.len() == base.len() { '?' } else { separator });
            stripped.push_str(pair);
        }
        separator = piece.chars().next_back().filter(|last| QUERY_SEPARATORS.contains(last)).unwrap_or('&');
    }
    Cow::Owned(stripped)
}

/// Envoy's integer properties are 8-byte little-endian.
pub fn le_u64(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    for (slot, byte) in buffer.iter_mut().zip(bytes.iter()) {
        *slot = *byte;
    }
    u64::from_le_bytes(buffer)
}
