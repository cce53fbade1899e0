//! `apim-filter`: WSO2 API Manager's gateway policy (API matching, the fault contract, key
//! validation and throttling) as a proxy-wasm filter for Envoy and Istio.
//!
//! Everything but `filter` is plain Rust with no proxy-wasm dependency, tested natively:
//! [`config`] (the JSON users write), [`catalogue`] (every fault), [`render`] (the one renderer),
//! [`matcher`] (paths), [`decision`] (the request phase), [`auth`] (credentials, verification,
//! authorization), [`throttle`] (levels and counters), [`transport`] (the response phase),
//! [`stream`] (one request against a small `Host` trait), [`hashing`] and [`docs`] (reference
//! documents generated from the code).

// Tests index freely: a panic there is a failed test, not a dead VM.
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::string_slice))]

pub mod auth;
pub mod catalogue;
pub mod config;
pub mod decision;
pub mod docs;
pub mod hashing;
pub mod host;
pub mod matcher;
pub mod render;
pub mod stream;
pub mod throttle;
pub mod transport;

#[cfg(target_arch = "wasm32")]
mod filter;
