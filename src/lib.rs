//! `apim-filter`: WSO2 API Manager's gateway policy (API matching, the fault contract, key
//! validation and throttling) as a proxy-wasm filter for Envoy and Istio.
//!
//! Everything but `filter` is plain Rust with no proxy-wasm dependency, tested natively. Modules
//! from the bottom up (each imports only those above it in this list):
//! [`vocab`] (shared vocabulary), [`host`] (the seam to Envoy), [`cidr`], [`hashing`],
//! [`websocket`] (WebSocket frames in a body's chunks), [`event_stream`] (server-sent events in a
//! response's chunks), [`signatures`] (verifying and signing keys),
//! [`schema`] (the JSON users write), [`catalogue`] (every fault), [`render`] (the one renderer),
//! [`routing`] (APIs, resources, paths), [`directory`] (applications, subscriptions, keys,
//! policies), [`auth`] (key validation and authorization), [`throttle`] (levels, plans, engines),
//! [`transport`] (the response phase), [`backend_jwt`] (the backend JWT), [`observe`] (access-log
//! fields and stats names), [`config`] (parse and compile), [`stream`] (one request,
//! and the root context's background work), [`docs`] (reference documents generated from the
//! code). `ARCHITECTURE.md` shows the request's path through them.

// Tests index freely: a panic there is a failed test, not a dead VM.
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::string_slice))]

pub mod auth;
pub mod backend_jwt;
pub mod catalogue;
pub mod cidr;
pub mod conditions;
pub mod config;
pub mod directory;
pub mod docs;
pub mod event_stream;
pub mod hashing;
pub mod host;
pub mod observe;
pub mod pieces;
pub mod render;
pub mod routing;
pub mod schema;
pub mod signatures;
pub mod stream;
pub mod throttle;
pub mod transport;
pub mod vocab;
pub mod websocket;

#[cfg(target_arch = "wasm32")]
mod filter;
