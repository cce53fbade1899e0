//! Which credential a request offers: a bearer token where the resource accepts OAuth2, an API
//! key (header, or query parameter where the API allows it) where it accepts API keys. Missing is
//! not malformed: a missing credential, a malformed one, another scheme, and a header that is not
//! text are told apart.

use super::{AuthFailure, CredentialSettings, Refusal};
use crate::routing::query::query_param;
use crate::routing::{Api, Resource};
use crate::vocab::SecurityScheme;

/// The query parameter of an OAuth2 token (RFC 6750), where an API takes it there.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// A credential the request offers. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    Bearer(String),
    ApiKey(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Bearer(_) => f.write_str("Bearer(***)"),
            Presented::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

/// What credential extraction found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    Missing,
    Found(Presented),
    /// `Authorization: Bearer` with nothing after it.
    NoToken,
    /// `Authorization: Bearer` with a token that cannot be one (whitespace inside).
    BadFormat,
    /// An `Authorization` scheme other than Bearer.
    BadScheme,
    /// A credential header whose value is not UTF-8 (Envoy lets such bytes through).
    Unreadable,
}

impl Extracted {
    /// The credential found, or why the request is refused (the reason operators see).
    pub fn presented(self) -> Result<Presented, Refusal> {
        match self {
            Extracted::Found(presented) => Ok(presented),
            Extracted::Missing => Err(AuthFailure::Missing.because("missing")),
            Extracted::NoToken => Err(AuthFailure::NoToken.because("no_token")),
            Extracted::BadFormat => Err(AuthFailure::BadFormat.because("bad_format")),
            Extracted::BadScheme => Err(AuthFailure::BadScheme.because("bad_scheme")),
            Extracted::Unreadable => Err(AuthFailure::Invalid.because("not_utf8")),
        }
    }
}

/// A credential header as the request has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialHeader<'a> {
    Absent,
    Text(&'a str),
    /// Present, but not UTF-8.
    Unreadable,
}

/// Finds the credential for a secured resource: a bearer token where OAuth2 is accepted (from
/// `Authorization`, or without one from the query on a WebSocket API's handshake), else an API key
/// (header, or query parameter where the API allows it or on a WebSocket API's handshake) where API
/// keys are accepted. `handshake`: the request is a WebSocket upgrade.
pub fn extract(
    settings: &CredentialSettings,
    api: &Api,
    resource: &Resource,
    authorization: CredentialHeader<'_>,
    api_key_header: CredentialHeader<'_>,
    query: Option<&str>,
    handshake: bool,
) -> Extracted {
    // API-M reads a WebSocket API's credentials from the query on its handshake only: its
    // WebSocket endpoint serves nothing else, and a token in any other request's URL is refused.
    let websocket_query = api.websocket_query_credentials && handshake;
    let mut problem = None;
    if resource.security.contains(&SecurityScheme::Oauth2) {
        if authorization == CredentialHeader::Unreadable {
            problem = Some(Extracted::Unreadable);
        }
        if let Some(value) = present(authorization) {
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            let token = rest.trim();
            if !scheme.eq_ignore_ascii_case("bearer") {
                problem = Some(Extracted::BadScheme);
            } else if token.is_empty() {
                problem = Some(Extracted::NoToken);
            } else if has_whitespace(token) {
                problem = Some(Extracted::BadFormat);
            } else {
                return Extracted::Found(Presented::Bearer(token.to_string()));
            }
        } else if websocket_query && authorization == CredentialHeader::Absent {
            // API-M reads the query only when the request has no `Authorization` at all.
            match query_param(query, ACCESS_TOKEN_PARAM) {
                Some(token) if has_whitespace(&token) => problem = Some(Extracted::BadFormat),
                Some(token) => return Extracted::Found(Presented::Bearer(token)),
                None => {}
            }
        }
    }
    api_key(settings, api, resource, api_key_header, query, handshake).or(problem).unwrap_or(Extracted::Missing)
}

/// The API key a request offers where `resource` accepts API keys: its header, or the query
/// parameter where the API allows it (or on a WebSocket API's handshake); `None` when it offers none.
fn api_key(
    settings: &CredentialSettings,
    api: &Api,
    resource: &Resource,
    api_key_header: CredentialHeader<'_>,
    query: Option<&str>,
    handshake: bool,
) -> Option<Extracted> {
    if !resource.security.contains(&SecurityScheme::ApiKey) {
        return None;
    }
    if api_key_header == CredentialHeader::Unreadable {
        return Some(Extracted::Unreadable);
    }
    if let Some(key) = present(api_key_header) {
        return Some(Extracted::Found(Presented::ApiKey(key.to_string())));
    }
    let in_query = api.api_key_in_query || (api.websocket_query_credentials && handshake);
    in_query
        .then(|| query_param(query, &settings.api_key_query_param))
        .flatten()
        .map(|key| Extracted::Found(Presented::ApiKey(key)))
}

/// The API key to try when the request's bearer token is refused: WSO2's gateway runs its
/// authenticators in turn (OAuth2, then API key), and a refused token lets the next one try, so a
/// request offering both is let in on a valid key (`APIAuthenticationHandler.isAuthenticate`).
pub fn fallback_api_key(
    settings: &CredentialSettings,
    api: &Api,
    resource: &Resource,
    api_key_header: CredentialHeader<'_>,
    query: Option<&str>,
    handshake: bool,
) -> Option<String> {
    match api_key(settings, api, resource, api_key_header, query, handshake)? {
        Extracted::Found(Presented::ApiKey(key)) => Some(key),
        _ => None,
    }
}

/// A header's value with its surrounding whitespace trimmed, when it has one.
fn present(header: CredentialHeader<'_>) -> Option<&str> {
    match header {
        CredentialHeader::Text(value) => Some(value.trim()).filter(|value| !value.is_empty()),
        CredentialHeader::Absent | CredentialHeader::Unreadable => None,
    }
}

/// Whitespace anywhere in a token (Unicode's, as `char::is_whitespace`); ASCII tokens, which every
/// valid one is, are checked byte by byte without decoding.
fn has_whitespace(token: &str) -> bool {
    if token.is_ascii() {
        token.bytes().any(|byte| byte.is_ascii_whitespace() || byte == 0x0b)
    } else {
        token.contains(char::is_whitespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_in_a_token_is_what_unicode_calls_whitespace() {
        for byte in 0u8..128 {
            let token = format!("ab{}cd", char::from(byte));
            assert_eq!(has_whitespace(&token), token.contains(char::is_whitespace), "byte {byte:#04x}");
        }
        assert!(has_whitespace("ab\u{2003}cd"));
        assert!(has_whitespace("ab\u{a0}cd"));
        assert!(!has_whitespace("ab\u{e9}cd"));
    }

    #[test]
    fn credentials_never_print() {
        assert_eq!(format!("{:?}", Presented::Bearer("secret-token".into())), "Bearer(***)");
        assert_eq!(format!("{:?}", Extracted::Found(Presented::ApiKey("k".into()))), "Found(ApiKey(***))");
    }

    /// A parameter's name is compared as its value is, percent-decoded, as by the upstream
    /// stripping: `api%6Bey=K` is stripped as the API key, so it is read as the API key (it was
    /// stripped and then answered 900902, no credential).
    #[test]
    fn the_api_key_parameter_is_named_as_stripping_names_it() {
        for query in ["api%6Bey=K", "x=1&api%6bey=K", "%61pikey=K"] {
            assert_eq!(query_param(Some(query), "apikey").as_deref(), Some("K"), "{query}");
        }
        assert_eq!(query_param(Some("APIKEY=K&api+key=L"), "apikey"), None);
    }
}
