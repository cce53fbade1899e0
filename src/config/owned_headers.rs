//! The request headers the filter sets (routing, auth context, quota flag, backend JWT): their
//! names as the filter compares them, and the load-time checks that each is its own.

use crate::auth::settings::CONTEXT_HEADERS;
use crate::schema::{ConfigError, RawCredentials, RawRouting, RawThrottling};

/// How the filter compares header names it owns: lowercase, `_` as `-`.
fn normalize_header(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The headers the filter owns, normalized, in the order [`OWNED_HEADER_FIELDS`] names them
/// (then the auth-context headers, then the backend JWT's when there is one).
pub(super) fn owned_headers(
    routing: &RawRouting,
    credentials: &RawCredentials,
    throttling: &RawThrottling,
    backend_jwt_header: Option<&str>,
) -> Vec<String> {
    let mut owned = vec![
        normalize_header(&routing.cluster_header),
        normalize_header(&routing.api_header),
        normalize_header(&throttling.quota_exceeded_header),
    ];
    for suffix in CONTEXT_HEADERS {
        owned.push(normalize_header(&format!("{}{suffix}", credentials.context_header_prefix)));
    }
    owned.extend(backend_jwt_header.map(normalize_header));
    owned
}

/// The field that names each of the first owned headers, in [`owned_headers`]' order.
const OWNED_HEADER_FIELDS: [&str; 3] =
    ["routing.cluster_header", "routing.api_header", "throttling.quota_exceeded_header"];

/// Every header the filter sets is its own: two settings naming one header would have one value
/// written over the other (the backend JWT in place of the cluster, a tier as the cluster: every
/// authorized request routed nowhere), and a credentials header among them would be removed from
/// the client's request before it is read. Nor may it be a header requests depend on: the
/// client's copy of an owned header is removed from every request, open resources' included.
pub(super) fn check_owned_headers(owned: &[String], credentials: &RawCredentials) -> Result<(), ConfigError> {
    let field_of = |index: usize| match OWNED_HEADER_FIELDS.get(index) {
        Some(field) => (*field).to_string(),
        None if index < OWNED_HEADER_FIELDS.len() + CONTEXT_HEADERS.len() => {
            "credentials.context_header_prefix".to_string()
        }
        None => "backend_jwt.header".to_string(),
    };
    let credential_headers =
        [normalize_header(&credentials.authorization_header), normalize_header(&credentials.api_key_header)];
    for (index, name) in owned.iter().enumerate() {
        if let Some(first) = owned.iter().take(index).position(|earlier| earlier == name) {
            return Err(ConfigError::new(
                field_of(index),
                format!("`{name}` is also the header of `{}`: each header the filter sets is its own", field_of(first)),
            ));
        }
        if credential_headers.contains(name) {
            return Err(ConfigError::new(field_of(index), format!("`{name}` is also a credentials header")));
        }
        if let Some(reason) = needed_by_requests(name) {
            return Err(ConfigError::new(
                field_of(index),
                format!("`{name}` {reason}: the filter would remove the client's"),
            ));
        }
    }
    Ok(())
}

/// Why a header name cannot be one the filter owns: it carries the request's framing, body,
/// connection, cookies, CORS or forwarding facts, or Envoy's and gRPC's own (`None`: it can).
fn needed_by_requests(name: &str) -> Option<&'static str> {
    const EXACT: [&str; 17] = [
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "cookie",
        "origin",
        "referer",
        "user-agent",
        "forwarded",
        "via",
        "x-request-id",
        "accept",
        "traceparent",
    ];
    const PREFIXES: [&str; 8] =
        ["content-", "proxy-", "x-forwarded-", "x-envoy-", "access-control-", "grpc-", "sec-", "accept-"];
    if name.starts_with(':') {
        return Some("is a pseudo-header");
    }
    if EXACT.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
        return Some("is a header requests depend on");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_requests_depend_on_are_never_owned() {
        for name in [
            "content-type",
            "content-length",
            "transfer-encoding",
            "cookie",
            "x-forwarded-for",
            "x-envoy-original-path",
            ":path",
            "host",
            "origin",
        ] {
            assert!(needed_by_requests(name).is_some(), "{name}");
        }
        for name in ["x-apim-cluster", "x-jwt-assertion", "x-apim-quota-exceeded", "x-content-owner"] {
            assert_eq!(needed_by_requests(name), None, "{name}");
        }
    }
}
