//! Secrets in the configuration: by reference to an environment variable (resolved at load, so
//! never in Envoy's configuration) or inline (warned about), in text or base64.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::vocab::{choice, Secret};

/// A secret: given by reference (`{"env": "NAME"}`, resolved when the configuration loads, so it
/// never appears in Envoy's configuration or its `/config_dump`), or inline (a plain string, or
/// `{"value": "..."}`; visible in the config dump, so the filter logs a warning). WSO2's
/// deployment.toml references (`$env{NAME}`, `$sys{NAME}`, `$secret{alias}`) are not resolved:
/// written inline, one is refused (write `{"env": "NAME"}`).
#[derive(Clone, Deserialize, JsonSchema, Serialize)]
#[schemars(rename = "Secret")]
#[serde(untagged)]
pub enum RawSecret {
    /// Inline text (its UTF-8 bytes).
    Inline(String),
    /// By reference (`env`) or inline (`value`), with its encoding.
    Source(RawSecretSource),
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from and how it is written.
#[derive(Clone, Deserialize, JsonSchema, Serialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    #[default]
    Text,
    Base64,
    Base64url,
}

choice!(SecretEncoding {
    Text = "text",
    Base64 = "base64",
    Base64url = "base64url",
});

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
    if inline && is_wso2_reference(&bytes) {
        return Err(ConfigError::new(
            field,
            "is a reference in WSO2's deployment.toml syntax (`$env{NAME}`, `$sys{NAME}`, `$secret{alias}`, \
             `${NAME}`), which would be taken as the secret itself: write `{\"env\": \"NAME\"}`",
        ));
    }
    if inline {
        warnings.push(format!(
            "field `{field}` holds a secret inline: Envoy's /config_dump and debug log show it; give it as \
             {{\"env\": \"NAME\"}} instead"
        ));
    }
    Ok(Secret(bytes))
}

/// Whether an inline secret is written as a reference of WSO2's configuration (`$env{NAME}`,
/// `$sys{NAME}`, `$secret{alias}`) or a shell's `${NAME}`: text no secret is, which nothing here
/// resolves.
fn is_wso2_reference(text: &[u8]) -> bool {
    let Some(inner) = text.strip_suffix(b"}") else {
        return false;
    };
    [&b"$env{"[..], b"$sys{", b"$secret{", b"${"].iter().any(|prefix| {
        inner.strip_prefix(*prefix).is_some_and(|name| {
            !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(b))
        })
    })
}
