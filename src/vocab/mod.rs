//! Shared vocabulary of the whole filter, imported by every layer and importing none: WSO2's key
//! types, subscription states, API lifecycle states and security schemes, time units, the failure
//! mode of counters and engines, resolved secrets, the typed ids of compiled items, and the one
//! reading of every enum the configuration writes as a name ([`Choice`]).

use std::fmt;

use schemars::JsonSchema;

/// What to do when a counter cannot be updated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

choice!(FailureMode {
    Deny = "deny",
    Allow = "allow",
});

/// API lifecycle states (WSO2's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
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

choice!(Lifecycle {
    Created = "CREATED",
    Prototyped = "PROTOTYPED",
    Published = "PUBLISHED",
    Blocked = "BLOCKED",
    Deprecated = "DEPRECATED",
    Retired = "RETIRED",
});

/// Security schemes. Where a resource takes both and a request offers both, the bearer token is
/// validated first and, when it is refused, the API key in its place (WSO2's gateway runs its
/// authenticators in turn): the request is the key's, or refused with the key's fault. Not on a
/// WebSocket handshake, which API-M authenticates by its token alone when it offers one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityScheme {
    /// OAuth2 bearer tokens (JWT or opaque).
    Oauth2,
    /// API keys.
    ApiKey,
}

choice!(SecurityScheme {
    Oauth2 = "oauth2",
    ApiKey = "api_key",
});

/// WSO2 key types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyType {
    #[default]
    Production,
    Sandbox,
}

choice!(KeyType {
    Production = "PRODUCTION",
    Sandbox = "SANDBOX",
});

impl KeyType {
    /// WSO2's spelling (`PRODUCTION`, `SANDBOX`).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Production => "PRODUCTION",
            KeyType::Sandbox => "SANDBOX",
        }
    }
}

/// WSO2 subscription states. `TIER_UPDATE_PENDING` and `DELETE_PENDING` (a change awaiting
/// approval) work as `UNBLOCKED`, as in WSO2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionState {
    #[default]
    Unblocked,
    Blocked,
    ProdOnlyBlocked,
    OnHold,
    Rejected,
    Inactive,
    TierUpdatePending,
    DeletePending,
}

choice!(SubscriptionState {
    Unblocked = "UNBLOCKED",
    Blocked = "BLOCKED",
    ProdOnlyBlocked = "PROD_ONLY_BLOCKED",
    OnHold = "ON_HOLD",
    Rejected = "REJECTED",
    Inactive = "INACTIVE",
    TierUpdatePending = "TIER_UPDATE_PENDING",
    DeletePending = "DELETE_PENDING",
});

/// Time units of throttling windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
    Day,
}

choice!(TimeUnit {
    Second = "second",
    Minute = "minute",
    Hour = "hour",
    Day = "day",
});

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

/// The built-in policy that never throttles.
pub const UNLIMITED: &str = "Unlimited";

/// Whether a policy name is the built-in `Unlimited`: in any case, as WSO2's gateway compares it
/// (`UNLIMITED_TIER.equalsIgnoreCase`), wherever the name comes from.
pub fn is_unlimited(name: &str) -> bool {
    name.eq_ignore_ascii_case(UNLIMITED)
}

/// WSO2's super tenant domain.
pub const SUPER_TENANT: &str = "carbon.super";

/// A user name without its `@<tenant>` suffix, when it has one and something before it
/// (`bob@carbon.super` is `bob` in the super tenant; `bob@wso2.com` stays as it is there). One rule
/// for every place a user is compared or qualified: blocking, counters, the backend JWT.
pub fn user_without_tenant<'u>(user: &'u str, tenant: &str) -> &'u str {
    user.strip_suffix(tenant).and_then(|user| user.strip_suffix('@')).filter(|user| !user.is_empty()).unwrap_or(user)
}

/// A resolved secret: bytes, never printed (`Debug` shows `***`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An API of a compiled routing table (its position there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiId(pub u32);

/// A resource of an API (its position in the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(pub u32);

/// A key manager (its position in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KmId(pub u32);

impl ApiId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ResourceId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl KmId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An enum of unit variants the configuration writes as one of its names (`"snake_case"`), read
/// by [`choice!`]'s `Deserialize`.
pub trait Choice: Copy + 'static {
    /// The type's name, as serde's derive names it.
    const NAME: &'static str;
    /// Every variant, in declaration order.
    const VARIANTS: &'static [Self];
    /// Each variant's name in the configuration, in the same order.
    const NAMES: &'static [&'static str];
}

/// Implements [`Choice`] and `Deserialize` for an enum of unit variants, each given its name.
/// Serde's derive gave each such enum its own copy of the reading (16 enums, 22 KB of .wasm);
/// this one reads them all with [`choice_index`], accepting the same input with the same errors
/// (`src/vocab/tests.rs` holds it to the derive). The names must be those the enum's
/// `#[serde(rename...)]` attributes give the JSON Schema: a test compares them.
macro_rules! choice {
    ($type:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $crate::vocab::Choice for $type {
            const NAME: &'static str = stringify!($type);
            const VARIANTS: &'static [Self] = &[$($type::$variant),+];
            const NAMES: &'static [&'static str] = &[$($name),+];
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::vocab::deserialize_choice(deserializer)
            }
        }
    };
}
pub(crate) use choice;

/// Reads a [`Choice`] as serde's derive reads an enum of unit variants.
pub fn deserialize_choice<'de, D: serde::Deserializer<'de>, T: Choice>(deserializer: D) -> Result<T, D::Error> {
    let index = choice_index(deserializer, T::NAME, T::NAMES)?;
    T::VARIANTS.get(index).copied().ok_or_else(|| serde::de::Error::custom("a choice without that variant"))
}

/// The position in `names` of the variant `deserializer` holds: the derive's enum visitor (any
/// representation of a unit variant the format has, serde_json's `"name"` and `{"name": null}`)
/// and its variant identifier (the name, or the index for formats that write one).
#[inline(never)]
fn choice_index<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    name: &'static str,
    names: &'static [&'static str],
) -> Result<usize, D::Error> {
    deserializer.deserialize_enum(name, names, ChoiceVisitor { name, names })
}

struct ChoiceVisitor {
    name: &'static str,
    names: &'static [&'static str],
}

impl<'de> serde::de::Visitor<'de> for ChoiceVisitor {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "enum {}", self.name)
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<usize, A::Error> {
        let (index, variant) = data.variant_seed(VariantIdentifier { names: self.names })?;
        serde::de::VariantAccess::unit_variant(variant)?;
        Ok(index)
    }
}

struct VariantIdentifier {
    names: &'static [&'static str],
}

impl<'de> serde::de::DeserializeSeed<'de> for VariantIdentifier {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> serde::de::Visitor<'de> for VariantIdentifier {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("variant identifier")
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<usize, E> {
        match usize::try_from(value) {
            Ok(index) if index < self.names.len() => Ok(index),
            _ => Err(E::invalid_value(
                serde::de::Unexpected::Unsigned(value),
                &format!("variant index 0 <= i < {}", self.names.len()).as_str(),
            )),
        }
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<usize, E> {
        self.names.iter().position(|name| *name == value).ok_or_else(|| E::unknown_variant(value, self.names))
    }

    fn visit_bytes<E: serde::de::Error>(self, value: &[u8]) -> Result<usize, E> {
        match self.names.iter().position(|name| name.as_bytes() == value) {
            Some(index) => Ok(index),
            None => Err(E::unknown_variant(&String::from_utf8_lossy(value), self.names)),
        }
    }
}

#[cfg(test)]
mod tests;
