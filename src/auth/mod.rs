//! Key validation: which credential a request offers ([`credentials`]), whether it is genuine
//! (JWTs verified locally against keys inline or fetched, [`bearer`] and [`jwks`]; opaque tokens
//! introspected, [`introspection`]; API keys looked up or verified, [`api_keys`]), and whether its
//! application may call the resource ([`authorize`]: subscription, key type, token type, scopes).
//!
//! [`validation`] drives the steps of one request: it answers at once or asks for a call (an
//! introspection, a JWKS fetch) and resumes with the answer. Refusals carry a reason for operators
//! and become WSO2 codes through [`failure_fault`].

pub mod api_keys;
pub mod authorize;
pub mod bearer;
pub mod credentials;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod settings;
pub mod shared_tokens;
pub mod strict_json;
pub mod validation;

use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::catalogue::{Fault, FaultId};
use crate::directory::AppKey;
use crate::schema::Compatibility;
pub use bearer::{TokenCache, TokenIdentity};
pub use settings::{AuthConfig, CredentialSettings};

/// Why a credential failed, before it becomes a WSO2 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    /// `Authorization: Bearer` with no token after it.
    NoToken,
    /// `Authorization: Bearer` with a token that cannot be one (whitespace inside).
    BadFormat,
    /// An `Authorization` scheme other than `Bearer`.
    BadScheme,
    Invalid,
    Expired,
    Inactive,
    /// A verified token that names no application: WSO2's `JWTValidator` refuses a JWT without a
    /// consumer key (`azp`) as it refuses a missing subscription (900908, 403).
    NoApplication,
    /// The key manager could not answer (timeout, 5xx, unreachable, a garbled answer, keys that
    /// could not be fetched): 900900, never 401.
    KeyManagerUnavailable,
}

impl AuthFailure {
    /// This failure, with the reason operators see.
    pub fn because(self, reason: &'static str) -> Refusal {
        Refusal { failure: self, reason }
    }
}

/// Why a credential was refused: the failure decides the WSO2 code the client gets; the reason
/// is only for operators (a debug log line and the counter `apim.auth.refused.<reason>`) and never
/// names the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub failure: AuthFailure,
    pub reason: &'static str,
}

/// The fault for a failure; `compatibility` picks API-M's or the Microgateway's codes.
///
/// API-M 4.x's `OAuthAuthenticator` finds a token only in an `Authorization` value with a
/// `Bearer` segment and something after it: another scheme, or `Bearer` alone, is a request
/// without one, 900902 (seed 001: "Accessing an API without the Authorization: Bearer header").
pub fn failure_fault(failure: AuthFailure, compatibility: Compatibility) -> Fault {
    let microgateway = compatibility == Compatibility::Microgateway;
    let invalid = Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token");
    match failure {
        AuthFailure::Missing => Fault::new(FaultId::MissingCredentials),
        AuthFailure::Invalid => invalid,
        AuthFailure::NoToken | AuthFailure::BadFormat if microgateway => {
            Fault::new(FaultId::InvalidCredentialFormat).with_challenge_error("invalid_token")
        }
        AuthFailure::BadScheme if microgateway => {
            Fault::new(FaultId::InvalidAuthScheme).with_challenge_error("invalid_token")
        }
        AuthFailure::Expired if microgateway => {
            Fault::new(FaultId::AccessTokenExpired).with_challenge_error("invalid_token")
        }
        AuthFailure::Inactive if microgateway => {
            Fault::new(FaultId::AccessTokenInactive).with_challenge_error("invalid_token")
        }
        AuthFailure::NoToken | AuthFailure::BadScheme => Fault::new(FaultId::MissingCredentials),
        AuthFailure::BadFormat | AuthFailure::Expired | AuthFailure::Inactive => invalid,
        AuthFailure::NoApplication => Fault::new(FaultId::ResourceForbidden),
        AuthFailure::KeyManagerUnavailable => Fault::new(FaultId::AuthGeneralError),
    }
}

/// Who is calling, once the credential is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Shared with the worker's verified-token cache (a cache hit copies nothing).
    Token(Rc<TokenIdentity>),
    ApiKey(AppKey),
    /// Shared with the worker's verified JWT API keys (a cache hit copies nothing; the key and its
    /// restrictions are much larger than the other identities).
    JwtApiKey(Rc<api_keys::JwtApiKey>),
}

impl Identity {
    /// Whether authorizing it reads the client's address (a JWT API key's `permittedIP`).
    pub fn reads_client_ip(&self) -> bool {
        matches!(self, Identity::JwtApiKey(key) if key.permitted_ips.is_some())
    }

    /// Whether authorizing it reads the `Referer` header (a JWT API key's `permittedReferer`).
    pub fn reads_referer(&self) -> bool {
        matches!(self, Identity::JwtApiKey(key) if key.permitted_referers.is_some())
    }
}

/// Whether a credential is meant as a compact JWS: three dot-separated parts, the first a JWS
/// header (base64url JSON naming its `alg`). Anything else is an opaque credential, whatever dots
/// it holds (`live.shop.key` is an opaque API key): it is looked up or introspected, never taken
/// for a JWT that could not verify. A JWS that fails verification is refused as one.
pub fn looks_like_jws(token: &str) -> bool {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(_), Some(_), None) => jwt::is_jws_header(header),
        _ => false,
    }
}

/// SHA-256 of a credential: what caches are keyed by (the credential itself is never stored).
pub fn credential_hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

/// Key validation's state in one worker (VM), shared by its streams and its root context: the
/// verified-token caches (access tokens, JWT API keys) and the keys fetched from JWKS endpoints.
#[derive(Debug)]
pub struct WorkerState {
    pub tokens: TokenCache,
    pub api_keys: TokenCache<api_keys::JwtApiKey>,
    pub jwks: Vec<jwks::FetchedKeys>,
    /// The fetched sets `tokens` were verified under ([`jwks::sets_fingerprint`]): when this
    /// worker takes another set, the tokens verified before are verified again.
    pub tokens_under: u64,
    /// Introspection calls under way, which requests for the same token wait for.
    pub introspecting: introspection::UnderWay,
}

impl WorkerState {
    pub fn new(auth: &AuthConfig) -> Self {
        WorkerState {
            tokens: TokenCache::new(auth.credentials.verified_cache_entries),
            api_keys: TokenCache::new(auth.credentials.verified_cache_entries),
            jwks: auth.key_managers.iter().map(|_| jwks::FetchedKeys::default()).collect(),
            tokens_under: 0,
            introspecting: introspection::UnderWay::default(),
        }
    }
}

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod hostile_tests;

#[cfg(test)]
#[path = "compatibility_tests.rs"]
mod compatibility_tests;

#[cfg(test)]
pub(crate) mod fixture {
    //! Key validation's inputs compiled from a configuration's JSON, the way `crate::config` does.
    use super::AuthConfig;
    use crate::directory::static_dir::{Context, PackedSubscriptions, StagedApplications};
    use crate::directory::StaticDirectory;
    use crate::routing::Table;
    use crate::schema::RawConfig;

    pub struct Fixture {
        pub auth: AuthConfig,
        pub routes: Table,
        pub directory: StaticDirectory,
    }

    pub fn compile(json: &str) -> Fixture {
        let raw: RawConfig<StagedApplications, PackedSubscriptions> =
            crate::pieces::from_text(json).expect("well-formed test JSON");
        let mut warnings = Vec::new();
        let auth = AuthConfig::compile(raw.credentials, raw.key_managers, raw.api_key_jwt, &mut warnings).unwrap();
        let policies = StaticDirectory::policy_names(&raw.policies).unwrap();
        let routes = Table::compile(raw.apis, &|name| policies.contains(name)).unwrap();
        let context =
            Context { routes: &routes, key_managers: &auth.key_manager_names(), applications_at_run_time: false };
        let directory =
            StaticDirectory::compile(raw.applications, raw.subscriptions, raw.policies, raw.blocking, &context)
                .unwrap();
        Fixture { auth, routes, directory }
    }
}
