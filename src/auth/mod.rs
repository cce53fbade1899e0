//! Key validation: credentials from the request, JWT access tokens, opaque tokens (RFC 7662
//! introspection), WSO2 API keys, and the authorization checks (application, subscription, key
//! type, scopes) that turn a verified credential into a decision.

pub mod flow;
pub mod jwt;
pub mod keys;
pub mod strict_json;
