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
#[derive(Clone, JsonSchema, Serialize)]
#[schemars(rename = "Secret")]
#[serde(untagged)]
pub enum RawSecret {
    /// Inline text (its UTF-8 bytes).
    Inline(String),
    /// By reference (`env`) or inline (`value`), with its encoding.
    Source(RawSecretSource),
}

/// What serde's derive of an untagged enum says of any value neither variant takes.
const NO_VARIANT: &str = "data did not match any variant of untagged enum RawSecret";

/// Read as serde's derive read the untagged enum (a string, or a source's members), refused with
/// the same one error once the whole value is read: the derive buffered the value in serde's own
/// content type first, whose reading this one enum alone linked into the .wasm; a source's fields
/// are read as serde_json's `Value`, which JWKS keys are read as already. A source written as an
/// array (its fields by position, which the derive took) is refused, as every other struct is
/// ([`crate::pieces::ObjectsOnly`]). The error is raised within serde_json's reading of the value,
/// which places it right after the value: the derive's, raised after that reading, was placed
/// where serde_json then stood, past the end of the object holding a secret written last in it,
/// so the configuration's error named that object instead of the secret.
impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawSecret, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

/// The secret, or the derive's error for a value of neither variant.
fn found<E: serde::de::Error>(secret: Option<RawSecret>) -> Result<RawSecret, E> {
    secret.ok_or_else(|| E::custom(NO_VARIANT))
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a secret")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawSecret, E> {
        Ok(RawSecret::Inline(text.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<RawSecret, E> {
        Ok(RawSecret::Inline(text))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let mut members: Vec<(String, serde_json::Value)> = Vec::new();
        let mut repeated = false;
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value()?;
            repeated |= members.iter().any(|(seen, _)| *seen == name);
            members.push((name, value));
        }
        let mut fields = [None, None, None];
        for (name, value) in members {
            let at = ["env", "value", "encoding"].iter().position(|field| *field == name);
            match at.and_then(|at| fields.get_mut(at)) {
                Some(field) => *field = Some(value),
                None => return found(None),
            }
        }
        found(source(fields).filter(|_| !repeated))
    }

    /// Not a secret: the array is read to its end first, so the error is placed after it.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecret, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        found(None)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawSecret, E> {
        found(None)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RawSecret, E> {
        found(None)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<RawSecret, E> {
        found(None)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawSecret, E> {
        found(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<RawSecret, E> {
        found(None)
    }
}

/// A source from its fields (`env`, `value`, `encoding`; absent or `null` is unset), if each is
/// of its type.
fn source(fields: [Option<serde_json::Value>; 3]) -> Option<RawSecret> {
    let text = |field: Option<serde_json::Value>| match field {
        None | Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(text)) => Some(Some(text)),
        Some(_) => None,
    };
    let [env, value, encoding] = fields;
    Some(RawSecret::Source(RawSecretSource {
        env: text(env)?,
        value: text(value)?,
        encoding: match encoding {
            None => SecretEncoding::default(),
            Some(encoding) => encoding_of(&encoding)?,
        },
    }))
}

/// A choice's variant as an enum's derive reads it from a value: its name, or an object of its
/// name alone, whose value is `null`.
fn encoding_of(value: &serde_json::Value) -> Option<SecretEncoding> {
    use crate::vocab::Choice;
    let name = match value {
        serde_json::Value::String(name) => name,
        serde_json::Value::Object(members) if members.len() == 1 => match members.iter().next() {
            Some((name, serde_json::Value::Null)) => name,
            _ => return None,
        },
        _ => return None,
    };
    let at = SecretEncoding::NAMES.iter().position(|known| known == name)?;
    SecretEncoding::VARIANTS.get(at).copied()
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

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
