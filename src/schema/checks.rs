//! Checks on raw values that several domains share (header names and values, calls to a cluster),
//! each failing with the [`ConfigError`] that names the field.

use super::ConfigError;

/// A header value the filter sends: no control characters.
pub fn check_header_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.chars().any(|c| c.is_control()) {
        return Err(ConfigError::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// A header name: an HTTP token.
pub fn check_header_name(field: &str, value: &str) -> Result<(), ConfigError> {
    let valid =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(field, format!("`{value}` is not a valid header name")));
    }
    Ok(())
}

/// A call to an Envoy cluster: a cluster name, an absolute path (`<field>.<path_name>`), a timeout
/// from 1 ms to 60 s.
pub fn check_cluster_call(
    field: &str,
    cluster: &str,
    (path_name, path): (&str, &str),
    timeout_ms: u64,
) -> Result<(), ConfigError> {
    check_cluster_target(field, cluster, timeout_ms)?;
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(format!("{field}.{path_name}"), "must start with `/` and hold no spaces"));
    }
    Ok(())
}

/// A cluster to call (`<field>.cluster`, non-empty, no control characters) and the call's
/// timeout (`<field>.timeout_ms`, from 1 ms to 60 s).
pub fn check_cluster_target(field: &str, cluster: &str, timeout_ms: u64) -> Result<(), ConfigError> {
    check_cluster_name(&format!("{field}.cluster"), cluster)?;
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(ConfigError::new(format!("{field}.timeout_ms"), "must be from 1 to 60000"));
    }
    Ok(())
}

/// An Envoy cluster's name: non-empty, no control characters, and not a URL. WSO2 configures
/// endpoints, key managers and services by URL; Envoy reaches them through a cluster it defines,
/// so a URL here would load and then fail every call (Envoy knows no such cluster).
pub fn check_cluster_name(field: &str, cluster: &str) -> Result<(), ConfigError> {
    if cluster.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    check_header_value(field, cluster)?;
    if cluster.contains("://") {
        return Err(ConfigError::new(
            field,
            format!(
                "`{}` is a URL, not an Envoy cluster: define a cluster for its host and port in \
                 Envoy's configuration and name it here (a path goes in its own field)",
                without_user_information(cluster)
            ),
        ));
    }
    Ok(())
}

/// The `:authority` a call to `cluster` sends: `authority` when set, else Istio's service host for
/// an Istio cluster name (`outbound|<port>|<subset>|<host>`), else the cluster's name. It must be
/// an RFC 3986 authority (a host, an optional port): a server refuses a request whose `Host` is
/// not one (Tomcat, which WSO2 runs on, answers 400), so every call would fail. Named as
/// `<field>.authority`, or `<field>.cluster` when the cluster's name stood in for it.
pub fn call_authority(field: &str, authority: Option<&str>, cluster: &str) -> Result<String, ConfigError> {
    let (value, named) = match authority {
        Some(authority) => (authority, format!("{field}.authority")),
        None => (istio_service_host(cluster).unwrap_or(cluster), format!("{field}.cluster")),
    };
    if is_authority(value) {
        return Ok(value.to_string());
    }
    let shown = without_user_information(value);
    let reason = match authority {
        Some(_) => format!("`{shown}` is not a host with an optional port (no scheme, no path)"),
        None => format!("`{shown}` is not a host name to send as `:authority`: set `authority` (the server's host)"),
    };
    Err(ConfigError::new(named, reason))
}

/// A URL or authority as a log line may show it: user information (`user:password@`), which
/// carries a secret, is replaced with `…@`.
pub fn without_user_information(value: &str) -> std::borrow::Cow<'_, str> {
    let start = value.find("://").map_or(0, |at| at + 3);
    let rest = value.get(start..).unwrap_or_default();
    // Up to the last `@` of the value: a password may hold an unencoded `/`, `?` or `#`, and one
    // `@` too many only hides a little more of the value.
    match rest.rfind('@') {
        Some(at) => format!("{}…{}", value.get(..start).unwrap_or_default(), rest.get(at..).unwrap_or_default()).into(),
        None => value.into(),
    }
}

/// The service host of an Istio cluster name (`outbound|9443||km.example.svc.cluster.local`).
fn istio_service_host(cluster: &str) -> Option<&str> {
    let mut parts = cluster.split('|');
    let (Some("outbound"), Some(_port), Some(_subset), Some(host), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(host)
}

/// RFC 3986's `authority` without user information: a registered name or an IP literal in
/// brackets, then an optional `:port`.
fn is_authority(value: &str) -> bool {
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) if host.ends_with(']') || !host.contains(':') => (host, port),
        _ => (value, ""),
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        Some(literal) => !literal.is_empty() && literal.bytes().all(|b| b.is_ascii_hexdigit() || b":.".contains(&b)),
        None => !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)),
    }
}

/// The shared-data prefix of a configuration's `gateway`, refused unless it is a name (letters,
/// digits, `-`, `_`; at most 64), which no other gateway's keys can end in or start with.
pub fn check_gateway_name(name: Option<&str>) -> Result<String, ConfigError> {
    if let Some(name) = name {
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
            return Err(ConfigError::new("gateway", "must be 1 to 64 letters, digits, `-` or `_`"));
        }
    }
    Ok(crate::host::gateway_prefix(name))
}
