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
    if cluster.is_empty() {
        return Err(ConfigError::new(format!("{field}.cluster"), "must not be empty"));
    }
    check_header_value(&format!("{field}.cluster"), cluster)?;
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(ConfigError::new(format!("{field}.timeout_ms"), "must be from 1 to 60000"));
    }
    Ok(())
}
