//! One HTTP stream through the filter: gathers the request view, applies the decision, runs key
//! validation (pausing the request for introspection or a JWKS fetch), and in the response phase
//! swaps Envoy's upstream-failure replies for the transport fault. Talks to Envoy only through
//! [`Host`], so it runs natively in tests against a fake host.
//!
//! Header values are bytes (Envoy accepts obs-text): the filter reads the headers it needs as
//! text when they are UTF-8 and never rewrites the others. A credential that is not UTF-8 is
//! refused (900901); a non-UTF-8 `Origin` is treated as absent, a non-UTF-8 `:path` cannot match.

use std::cell::RefCell;
use std::rc::Rc;

use crate::auth::flow::{
    self, AuthFailure, Authorized, BearerStep, CachedIntrospection, Extracted, Identity, Introspected, Presented,
    Refusal, RemoteKeyView, TokenCache,
};
use crate::auth::keys::KeySet;
use crate::catalogue::{Fault, FaultId};
use crate::config::{Config, KeyType};
use crate::decision::{self, Forward, RequestView, Verdict};
use crate::host::{text, Answer, Call, Header, Host};
use crate::render::{self, Rendered};
use crate::throttle::cidr::parse_source_address;
use crate::throttle::limiter::{CasStore, Contended};
use crate::throttle::{self, ByteCounter, Caller, Outcome, RateLimitInfo};
use crate::transport::{self, ResponseView};

/// Whether Envoy should continue with the stream or wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop iteration (and, in a body callback, buffer).
    Pause,
}

/// Keys fetched from a key manager's JWKS URL, as this worker knows them.
#[derive(Debug)]
pub struct RemoteKeys {
    pub keys: KeySet,
    /// The shared-data CAS of the JWKS they were parsed from.
    pub cas: Option<u32>,
    pub checked_at: u64,
    /// When this worker got them (fetched, or read from shared data).
    pub fetched_at: u64,
}

/// State shared by the streams of one worker (VM): the verified-token cache and fetched keys.
#[derive(Debug)]
pub struct VmState {
    pub tokens: TokenCache,
    pub remote_keys: Vec<Option<RemoteKeys>>,
    pub last_fetch: Vec<Option<u64>>,
    /// Whether this worker's last JWKS fetch for a key manager failed.
    pub fetch_failed: Vec<bool>,
    /// When this worker last logged an uncounted request.
    pub last_uncounted_log: Option<u64>,
}

/// Fetches triggered by unknown `kid`s happen at most this often per key manager and worker.
pub const JWKS_FETCH_INTERVAL_S: u64 = 5;

impl VmState {
    pub fn new(config: &Config) -> Self {
        VmState {
            tokens: TokenCache::new(config.credentials.verified_cache_entries),
            remote_keys: config.key_managers.iter().map(|_| None).collect(),
            last_fetch: config.key_managers.iter().map(|_| None).collect(),
            fetch_failed: config.key_managers.iter().map(|_| false).collect(),
            last_uncounted_log: None,
        }
    }
}

/// The shared-data key of a key manager's fetched JWKS.
pub fn jwks_key(km: &crate::config::KeyManager) -> String {
    format!("apim.jwks.{}", km.cache_id)
}

/// Auth-context headers for the backend, after the configured prefix.
pub const CONTEXT_HEADERS: [&str; 6] =
    ["application-id", "application-name", "subscriber", "key-type", "tier", "end-user"];

/// What the stream is waiting for.
enum Waiting {
    Introspection { call: u32, key_manager: usize, hash: [u8; 32], forward: Forward },
    Jwks { call: u32, key_manager: usize, token: String, forward: Forward },
}

/// A request header read as text.
enum HeaderText<'a> {
    Absent,
    Text(&'a str),
    /// Present, but not UTF-8.
    Unreadable,
}

/// The per-request state.
pub struct Stream {
    config: Rc<Config>,
    vm: Rc<RefCell<VmState>>,
    origin: Option<String>,
    /// The filter answered this request itself: its response is not classified again.
    answered_locally: bool,
    request_complete: bool,
    request_body_started: bool,
    waiting: Option<Waiting>,
    /// A call started during the current callback, for the glue to route its answer here.
    started_call: Option<u32>,
    /// The request headers as they arrived.
    headers: Vec<Header>,
    /// Byte budgets (bandwidth policies) to charge body bytes to.
    byte_counters: Vec<ByteCounter>,
    /// The most restrictive counted level, for the RateLimit headers.
    rate_limit: Option<RateLimitInfo>,
    /// Throttling has run for this request.
    throttled: bool,
    /// Body bytes that passed before throttling ran (while authentication waited on a call).
    uncharged_bytes: u64,
}

/// Creates the counter slots in shared data (at configure time, before requests count) and sets
/// the slot count to the one this Envoy uses (the first configuration's; see
/// [`crate::throttle::limiter::prepare_slots`]).
pub fn prepare_counters(host: &mut impl Host, config: &mut Config) {
    if config.throttles() {
        let wanted = config.throttling.counter_slots;
        let slots = crate::throttle::limiter::prepare_slots(&mut HostStore(host), wanted);
        if slots != wanted {
            log::info!(
                "throttling.counter_slots {wanted} takes effect when Envoy restarts; this process keeps counting in \
                 {slots} slots, so counts stay exact across the update"
            );
        }
        config.throttling.counter_slots = slots;
    }
}

/// Shared data as the counters' compare-and-swap store.
struct HostStore<'h, H: Host>(&'h mut H);

impl<H: Host> CasStore for HostStore<'_, H> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        match self.0.shared_get(key) {
            Ok(Some((value, cas))) => Some((value, Some(cas))),
            Ok(None) | Err(_) => None,
        }
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.shared_set(key, value, cas).is_ok()
    }
}

/// Whether a header name is one the filter owns, in any spelling Envoy lets through: letter case,
/// and `_` for `-` (CGI-style backends read `x_apim_tier` as `x-apim-tier`).
fn is_owned(config: &Config, name: &str) -> bool {
    let normalized: String =
        name.bytes().map(|b| if b == b'_' { '-' } else { char::from(b.to_ascii_lowercase()) }).collect();
    config.owned_headers.contains(&normalized)
}

impl Stream {
    pub fn new(config: Rc<Config>, vm: Rc<RefCell<VmState>>) -> Self {
        Stream {
            config,
            vm,
            origin: None,
            answered_locally: false,
            request_complete: false,
            request_body_started: false,
            waiting: None,
            started_call: None,
            headers: Vec::new(),
            byte_counters: Vec::new(),
            rate_limit: None,
            throttled: false,
            uncharged_bytes: 0,
        }
    }

    /// The token of a call started during the last callback (taken once).
    pub fn take_started_call(&mut self) -> Option<u32> {
        self.started_call.take()
    }

    pub fn on_request_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Flow {
        self.request_complete = end_of_stream;
        let config = Rc::clone(&self.config);
        self.headers = host.request_headers();
        // Headers only the filter may set: a client's copy never reaches the router or backend.
        let owned: Vec<String> =
            self.headers.iter().map(|(name, _)| name).filter(|name| is_owned(&config, name)).cloned().collect();
        for name in owned {
            host.set_request_header(&name, None);
        }

        let method = self.text_or_empty(":method");
        let path = self.text_or_empty(":path");
        let preflight_method = match self.header_text("access-control-request-method") {
            HeaderText::Text(value) => Some(value.to_string()),
            HeaderText::Absent | HeaderText::Unreadable => None,
        };
        self.origin = match self.header_text("origin") {
            HeaderText::Text(value) => Some(value.to_string()),
            HeaderText::Absent | HeaderText::Unreadable => None,
        };
        let view =
            RequestView { method: &method, path: &path, access_control_request_method: preflight_method.as_deref() };
        match decision::decide(&config, &view) {
            Verdict::PassThrough => Flow::Continue,
            Verdict::Forward(forward) if forward.cluster.is_some() => self.forward(host, &forward, None),
            Verdict::Forward(forward) => self.authenticate(host, forward, &path),
            Verdict::Preflight => {
                let headers = match &config.errors.cors {
                    Some(cors) => render::cors_headers(cors, self.origin.as_deref(), true),
                    None => Vec::new(),
                };
                self.answered_locally = true;
                host.send_response(200, &headers, b"");
                Flow::Pause
            }
            Verdict::Deny(fault) => self.deny(host, &fault),
        }
    }

    /// A request header from the snapshot taken at the start (case-insensitive name).
    fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }

    fn header_text(&self, name: &str) -> HeaderText<'_> {
        match self.header_bytes(name) {
            None => HeaderText::Absent,
            Some(value) => text(value).map_or(HeaderText::Unreadable, HeaderText::Text),
        }
    }

    /// A pseudo-header as text; a value that is not UTF-8 reads as empty (it matches nothing).
    fn text_or_empty(&self, name: &str) -> String {
        match self.header_text(name) {
            HeaderText::Text(value) => value.to_string(),
            HeaderText::Absent | HeaderText::Unreadable => String::new(),
        }
    }

    fn has_header(&self, name: &str) -> bool {
        self.header_bytes(name).is_some()
    }

    /// The clock, or the given fault: nothing time-dependent is decided without it.
    fn now_or(&mut self, host: &mut impl Host, fault: FaultId) -> Result<u64, Flow> {
        match host.now() {
            Ok(now) => Ok(now),
            Err(error) => {
                log::error!("the host clock cannot be read ({error:?}): refusing the request");
                Err(self.deny(host, &Fault::new(fault)))
            }
        }
    }

    fn authenticate(&mut self, host: &mut impl Host, forward: Forward, path: &str) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(api) = config.apis.get(forward.api) else {
            return self.internal_error(host, "matched API index out of range");
        };
        let Some(resource) = api.resources.get(forward.resource) else {
            return self.internal_error(host, "matched resource index out of range");
        };
        fn credential(text: HeaderText<'_>) -> flow::CredentialHeader<'_> {
            match text {
                HeaderText::Absent => flow::CredentialHeader::Absent,
                HeaderText::Text(value) => flow::CredentialHeader::Text(value),
                HeaderText::Unreadable => flow::CredentialHeader::Unreadable,
            }
        }
        let authorization = credential(self.header_text(&config.credentials.authorization_header));
        let api_key = credential(self.header_text(&config.credentials.api_key_header));
        let query = path.split_once('?').map(|(_, query)| query);
        match flow::extract(&config, api, resource, authorization, api_key, query) {
            Extracted::Missing => self.refuse(host, AuthFailure::Missing.because("missing")),
            Extracted::BadFormat => self.refuse(host, AuthFailure::BadFormat.because("bad_format")),
            Extracted::BadScheme => self.refuse(host, AuthFailure::BadScheme.because("bad_scheme")),
            Extracted::Unreadable => self.refuse(host, AuthFailure::Invalid.because("not_utf8")),
            Extracted::Found(Presented::ApiKey(key)) => {
                let now = match self.now_or(host, FaultId::AuthGeneralError) {
                    Ok(now) => now,
                    Err(flow) => return flow,
                };
                match flow::verify_api_key(&config, &key, now) {
                    Ok(identity) => self.authorize(host, &forward, &identity),
                    Err(refusal) => self.refuse(host, refusal),
                }
            }
            Extracted::Found(Presented::Bearer(token)) => self.bearer(host, forward, token, true),
        }
    }

    /// Verifies a bearer token, from the cache when it can.
    fn bearer(&mut self, host: &mut impl Host, forward: Forward, token: String, allow_fetch: bool) -> Flow {
        let config = Rc::clone(&self.config);
        let now = match self.now_or(host, FaultId::AuthGeneralError) {
            Ok(now) => now,
            Err(flow) => return flow,
        };
        let cached = self.vm.borrow().tokens.get(&token, now).cloned();
        if let Some(identity) = cached {
            return self.authorize(host, &forward, &Identity::Token(identity));
        }
        self.sync_remote_keys(host, now);
        let step = {
            let vm = self.vm.borrow();
            flow::verify_bearer(
                &config,
                |km| {
                    let remote = vm.remote_keys.get(km).and_then(Option::as_ref);
                    let refresh_s = config
                        .key_managers
                        .get(km)
                        .and_then(|k| k.remote_jwks.as_ref())
                        .map_or(u64::MAX, |j| j.refresh_s);
                    RemoteKeyView {
                        keys: remote.map(|remote| &remote.keys),
                        stale: remote.is_some_and(|remote| now >= remote.fetched_at.saturating_add(refresh_s)),
                        fetch_failed: vm.fetch_failed.get(km).copied().unwrap_or(false),
                    }
                },
                &token,
                now,
                |km| {
                    allow_fetch
                        && vm
                            .last_fetch
                            .get(km)
                            .copied()
                            .flatten()
                            .is_none_or(|last| now >= last.saturating_add(JWKS_FETCH_INTERVAL_S))
                },
            )
        };
        match step {
            BearerStep::Verified(identity) => {
                self.vm.borrow_mut().tokens.insert(&token, identity.clone());
                self.authorize(host, &forward, &Identity::Token(identity))
            }
            BearerStep::Failed(refusal) => self.refuse(host, refusal),
            BearerStep::Introspect { key_manager } => {
                self.introspect(host, forward, &token, flow::credential_hash(&token), key_manager, now)
            }
            BearerStep::FetchJwks { key_manager } => {
                if let Some(slot) = self.vm.borrow_mut().last_fetch.get_mut(key_manager) {
                    *slot = Some(now);
                }
                let call = config.key_managers.get(key_manager).and_then(|km| km.remote_jwks.as_ref()).map(|jwks| {
                    Call::Http {
                        cluster: jwks.cluster.clone(),
                        headers: vec![
                            (":method".to_string(), "GET".to_string()),
                            (":path".to_string(), jwks.path.clone()),
                            (":authority".to_string(), jwks.authority.clone()),
                            ("accept".to_string(), "application/json".to_string()),
                        ],
                        body: Vec::new(),
                        timeout_ms: jwks.timeout_ms,
                    }
                });
                match call.map(|call| host.call(&call)) {
                    Some(Ok(call)) => {
                        self.started_call = Some(call);
                        self.waiting = Some(Waiting::Jwks { call, key_manager, token, forward });
                        Flow::Pause
                    }
                    // Cannot fetch (the cluster does not exist, ...): that is a failed fetch.
                    Some(Err(_)) | None => {
                        self.record_fetch(key_manager, false);
                        self.bearer(host, forward, token, false)
                    }
                }
            }
        }
    }

    fn record_fetch(&mut self, key_manager: usize, succeeded: bool) {
        if let Some(failed) = self.vm.borrow_mut().fetch_failed.get_mut(key_manager) {
            *failed = !succeeded;
        }
    }

    /// Picks up JWKS that another worker fetched (at most once a second per worker).
    fn sync_remote_keys(&mut self, host: &mut impl Host, now: u64) {
        let config = Rc::clone(&self.config);
        let mut vm = self.vm.borrow_mut();
        for (index, km) in config.key_managers.iter().enumerate() {
            if km.remote_jwks.is_none() {
                continue;
            }
            let Some(slot) = vm.remote_keys.get_mut(index) else {
                continue;
            };
            if slot.as_ref().is_some_and(|remote| remote.checked_at >= now) {
                continue;
            }
            let Ok(Some((bytes, cas))) = host.shared_get(&jwks_key(km)) else {
                if let Some(remote) = slot.as_mut() {
                    remote.checked_at = now;
                }
                continue;
            };
            if slot.as_ref().is_some_and(|remote| remote.cas == Some(cas)) {
                if let Some(remote) = slot.as_mut() {
                    remote.checked_at = now;
                }
                continue;
            }
            if let Some(keys) = parse_jwks(&bytes) {
                *slot = Some(RemoteKeys { keys, cas: Some(cas), checked_at: now, fetched_at: now });
                // Another worker fetched them: the key manager answered.
                if let Some(failed) = vm.fetch_failed.get_mut(index) {
                    *failed = false;
                }
            }
        }
    }

    fn introspect(
        &mut self,
        host: &mut impl Host,
        forward: Forward,
        token: &str,
        hash: [u8; 32],
        key_manager: usize,
        now: u64,
    ) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(km) = config.key_managers.get(key_manager) else {
            return self.internal_error(host, "key manager index out of range");
        };
        if let Ok(Some((bytes, _))) = host.shared_get(&flow::introspection_slot(km, &hash)) {
            match CachedIntrospection::lookup(&bytes, &hash, key_manager, now) {
                Some(Introspected::Active(identity)) => {
                    return self.authorize(host, &forward, &Identity::Token(identity))
                }
                Some(Introspected::Inactive(_)) => {
                    return self.refuse(host, AuthFailure::Inactive.because("inactive_cached"))
                }
                Some(Introspected::Unavailable(_)) | None => {}
            }
        }
        let Some((headers, body)) = flow::introspection_request(km, token) else {
            return self.refuse(host, AuthFailure::Invalid.because("opaque_without_introspection"));
        };
        let Some(introspection) = km.introspection.as_ref() else {
            return self.refuse(host, AuthFailure::Invalid.because("opaque_without_introspection"));
        };
        let call =
            Call::Http { cluster: introspection.cluster.clone(), headers, body, timeout_ms: introspection.timeout_ms };
        match host.call(&call) {
            Ok(call) => {
                self.started_call = Some(call);
                self.waiting = Some(Waiting::Introspection { call, key_manager, hash, forward });
                Flow::Pause
            }
            Err(_) => self.refuse(host, AuthFailure::KeyManagerUnavailable.because("introspection_call_failed")),
        }
    }

    /// The answer to a call this stream made.
    pub fn on_call_response(&mut self, host: &mut impl Host, call: u32, answer: Answer) {
        let config = Rc::clone(&self.config);
        let (status, body) = match answer {
            Answer::Http { status, body } => (Some(status), body),
            Answer::Grpc { .. } | Answer::Failed { .. } => (None, Vec::new()),
        };
        let flow = match self.waiting.take() {
            Some(Waiting::Introspection { call: expected, key_manager, hash, forward }) if expected == call => {
                let Some(km) = config.key_managers.get(key_manager) else {
                    self.internal_error(host, "key manager index out of range");
                    return;
                };
                let now = match self.now_or(host, FaultId::AuthGeneralError) {
                    Ok(now) => now,
                    Err(_) => return,
                };
                let answer = flow::parse_introspection(key_manager, km, status, &body, now);
                if let Some(entry) = CachedIntrospection::for_answer(&hash, &answer, km, now) {
                    let slot = flow::introspection_slot(km, &hash);
                    // A flood of bogus tokens must not evict the cached answers of real ones; the
                    // write carries the CAS of what was read, so it never overwrites a newer entry.
                    let current = host.shared_get(&slot).ok().flatten();
                    let evicts_active = entry.identity.is_none()
                        && current.as_ref().is_some_and(|(bytes, _)| CachedIntrospection::is_fresh_active(bytes, now));
                    if let (false, Ok(bytes)) = (evicts_active, serde_json::to_vec(&entry)) {
                        let _ = host.shared_set(&slot, &bytes, current.map(|(_, cas)| cas));
                    }
                }
                match answer {
                    Introspected::Active(identity) => self.authorize(host, &forward, &Identity::Token(identity)),
                    Introspected::Inactive(reason) => self.refuse(host, AuthFailure::Inactive.because(reason)),
                    Introspected::Unavailable(reason) => {
                        log::warn!("key manager `{}` did not answer the introspection usably ({reason})", km.name);
                        self.refuse(host, AuthFailure::KeyManagerUnavailable.because(reason))
                    }
                }
            }
            Some(Waiting::Jwks { call: expected, key_manager, token, forward }) if expected == call => {
                let keys = match status {
                    Some(200) => parse_jwks(&body),
                    _ => None,
                };
                match (keys, config.key_managers.get(key_manager)) {
                    (Some(keys), Some(km)) => {
                        let now = host.now().unwrap_or(0);
                        let key = jwks_key(km);
                        let current = host.shared_get(&key).ok().flatten().map(|(_, cas)| cas);
                        let _ = host.shared_set(&key, &body, current);
                        let cas = host.shared_get(&key).ok().flatten().map(|(_, cas)| cas);
                        if let Some(slot) = self.vm.borrow_mut().remote_keys.get_mut(key_manager) {
                            *slot = Some(RemoteKeys { keys, cas, checked_at: now, fetched_at: now });
                        }
                        self.record_fetch(key_manager, true);
                    }
                    _ => {
                        log::warn!("JWKS fetch failed (status {status:?}); keeping the last good keys");
                        self.record_fetch(key_manager, false);
                    }
                }
                self.bearer(host, forward, token, false)
            }
            other => {
                self.waiting = other;
                return;
            }
        };
        if flow == Flow::Continue {
            host.resume_request();
        }
    }

    fn authorize(&mut self, host: &mut impl Host, forward: &Forward, identity: &Identity) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(api) = config.apis.get(forward.api) else {
            return self.internal_error(host, "matched API index out of range");
        };
        let Some(resource) = api.resources.get(forward.resource) else {
            return self.internal_error(host, "matched resource index out of range");
        };
        match flow::authorize(&config, api, resource, identity) {
            Ok(authorized) => self.forward(host, forward, Some(&authorized)),
            Err(fault) => {
                log::debug!("request to {} refused: {}", forward.api_label, fault.id.spec().id);
                host.count(&format!("apim.auth.refused.{}", fault.id.spec().id));
                self.deny(host, &fault)
            }
        }
    }

    fn forward(&mut self, host: &mut impl Host, forward: &Forward, authorized: Option<&Authorized>) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(cluster) = authorized.map(|a| a.cluster.as_str()).or(forward.cluster.as_deref()) else {
            return self.internal_error(host, "forwarded without an endpoint");
        };
        // Throttling comes after authentication, as in WSO2's handler chain.
        let over_quota = match self.throttle(host, forward, authorized) {
            Ok(over_quota) => over_quota,
            Err(flow) => return flow,
        };
        if over_quota {
            host.set_request_header(&config.throttling.quota_exceeded_header, Some(b"true"));
        }
        host.set_request_header(&config.routing.cluster_header, Some(cluster.as_bytes()));
        host.set_request_header(&config.routing.api_header, Some(forward.api_label.as_bytes()));
        let current_path = self.text_or_empty(":path");
        let upstream_path = forward.upstream_path.clone().unwrap_or(current_path.clone());
        // An API key in the query is a credential wherever the API accepts API keys: it never goes
        // upstream (or into upstream access logs), whether this resource asked for it or not.
        let strip_query_key = config.credentials.strip && config.apis.get(forward.api).is_some_and(|api| api.api_keys);
        let upstream_path = if strip_query_key {
            strip_query_param(&upstream_path, &config.credentials.api_key_query_param)
        } else {
            upstream_path
        };
        if upstream_path != current_path {
            host.set_request_header(":path", Some(upstream_path.as_bytes()));
        }
        if config.credentials.strip {
            for name in [&config.credentials.authorization_header, &config.credentials.api_key_header] {
                if self.has_header(name) {
                    host.set_request_header(name, None);
                }
            }
        }
        if let Some(authorized) = authorized {
            let prefix = &config.credentials.context_header_prefix;
            let key_type = match authorized.key_type {
                KeyType::Production => "PRODUCTION",
                KeyType::Sandbox => "SANDBOX",
            };
            let values = [
                Some(authorized.application_id.as_str()),
                Some(authorized.application_name.as_str()),
                Some(authorized.subscriber.as_str()),
                Some(key_type),
                Some(authorized.tier.as_str()),
                authorized.end_user.as_deref(),
            ];
            for (name, value) in CONTEXT_HEADERS.iter().zip(values) {
                if let Some(value) = value.filter(|value| !value.is_empty() && !value.chars().any(char::is_control)) {
                    host.set_request_header(&format!("{prefix}{name}"), Some(value.as_bytes()));
                }
            }
        }
        Flow::Continue
    }

    /// Counts the request at every level; `Err` carries the flow of a throttled (answered) request.
    fn throttle(
        &mut self,
        host: &mut impl Host,
        forward: &Forward,
        authorized: Option<&Authorized>,
    ) -> Result<bool, Flow> {
        let config = Rc::clone(&self.config);
        let (Some(api), true) = (config.apis.get(forward.api), config.throttles()) else { return Ok(false) };
        let Some(resource) = api.resources.get(forward.resource) else { return Ok(false) };
        let client_ip = if config.uses_client_ip() {
            host.property(&["source", "address"])
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| parse_source_address(&text))
        } else {
            None
        };
        let caller = Caller {
            application_id: authorized.map(|a| a.application_id.as_str()),
            tier: authorized.map(|a| a.tier.as_str()),
            key_type: authorized.map(|a| a.key_type),
            end_user: authorized.and_then(|a| a.end_user.as_deref()),
            owner: authorized.map(|a| a.subscriber.as_str()),
            client_ip,
        };
        let now = self.now_or(host, FaultId::ThrottleInternalError)?;
        self.throttled = true;
        match throttle::evaluate(&config, api, resource, &caller, &mut HostStore(host), now) {
            Outcome::Allowed { over_quota, byte_counters, rate_limit, uncounted } => {
                self.byte_counters = byte_counters;
                self.rate_limit = rate_limit;
                if let Some(why) = uncounted {
                    self.report_uncounted(host, why, now);
                }
                let early = std::mem::take(&mut self.uncharged_bytes);
                self.charge(host, early as usize);
                Ok(over_quota)
            }
            Outcome::Denied { fault, rate_limit, uncounted } => {
                self.rate_limit = rate_limit;
                if let Some(why) = uncounted {
                    self.report_uncounted(host, why, now);
                }
                Err(self.deny(host, &fault))
            }
        }
    }

    /// A request a level could not count: always in the stats, in the log at most every ten
    /// seconds per worker (a flood must not flood the log).
    fn report_uncounted(&mut self, host: &mut impl Host, why: Contended, now: u64) {
        host.count(&format!("apim.throttle.uncounted.{}", why.name()));
        let mut vm = self.vm.borrow_mut();
        if vm.last_uncounted_log.is_none_or(|last| now >= last.saturating_add(10)) {
            vm.last_uncounted_log = Some(now);
            log::warn!(
                "a throttling level could not count a request ({}; failure_mode {:?}): see docs/CONFIG.md, \
                 throttling.counter_slots, to size the counters",
                why.name(),
                self.config.throttling.failure_mode
            );
        }
    }

    /// The IETF RateLimit headers, when enabled and a level was counted.
    fn rate_limit_headers(&self) -> Vec<(String, String)> {
        match (self.config.throttling.rate_limit_headers, self.rate_limit) {
            (true, Some(info)) => vec![
                ("ratelimit-limit".to_string(), info.limit.to_string()),
                ("ratelimit-remaining".to_string(), info.remaining.to_string()),
                ("ratelimit-reset".to_string(), info.reset_s.to_string()),
            ],
            _ => Vec::new(),
        }
    }

    fn charge(&mut self, host: &mut impl Host, bytes: usize) {
        if !self.throttled {
            self.uncharged_bytes = self.uncharged_bytes.saturating_add(bytes as u64);
            return;
        }
        if self.byte_counters.is_empty() || bytes == 0 {
            return;
        }
        let config = Rc::clone(&self.config);
        // Bytes that already passed are charged at the host's time; without a clock they cannot be.
        let Ok(now) = host.now() else { return };
        throttle::charge_bytes(&config, &self.byte_counters, bytes as u64, &mut HostStore(host), now);
    }

    /// Refuses a credential: the reason goes to the debug log and the counters, the fault to the
    /// client.
    fn refuse(&mut self, host: &mut impl Host, refusal: Refusal) -> Flow {
        log::debug!("credential refused: {}", refusal.reason);
        host.count(&format!("apim.auth.refused.{}", refusal.reason));
        let fault = flow::failure_fault(refusal.failure, self.config.compatibility);
        self.deny(host, &fault)
    }

    /// An internal invariant broke: an internal fault and a log line, never a credential fault.
    fn internal_error(&mut self, host: &mut impl Host, what: &str) -> Flow {
        log::error!("internal error: {what}");
        self.deny(host, &Fault::new(FaultId::AuthGeneralError))
    }

    fn deny(&mut self, host: &mut impl Host, fault: &Fault) -> Flow {
        let Rendered { status, mut headers, body } = render::render(fault, &self.config.errors, self.origin.as_deref());
        headers.extend(self.rate_limit_headers());
        self.answered_locally = true;
        host.count(&format!("apim.fault.{}", fault.code));
        host.send_response(status, &headers, body.as_bytes());
        Flow::Pause
    }

    pub fn on_request_body(&mut self, host: &mut impl Host, body_size: usize, end_of_stream: bool) -> Flow {
        self.request_body_started = true;
        self.charge(host, body_size);
        if end_of_stream {
            self.request_complete = true;
        }
        if self.waiting.is_some() {
            return Flow::Pause;
        }
        Flow::Continue
    }

    pub fn on_request_trailers(&mut self) -> Flow {
        self.request_complete = true;
        if self.waiting.is_some() {
            return Flow::Pause;
        }
        Flow::Continue
    }

    pub fn on_response_headers(&mut self, host: &mut impl Host) -> Flow {
        if self.answered_locally {
            return Flow::Continue;
        }
        for (name, value) in self.rate_limit_headers() {
            host.set_response_header(&name, Some(value.as_bytes()));
        }
        let status = host
            .response_header(":status")
            .and_then(|status| text(&status).and_then(|status| status.parse::<u16>().ok()))
            .unwrap_or(0);
        // Envoy's own replies for failed upstreams are all errors: skip the property lookups for
        // everything else.
        if status < 400 {
            return Flow::Continue;
        }
        let details = host.property(&["response", "code_details"]).and_then(|bytes| String::from_utf8(bytes).ok());
        let flags = host.property(&["response", "flags"]).map(|bytes| le_u64(&bytes)).unwrap_or(0);
        let view = ResponseView {
            status,
            code_details: details.as_deref(),
            flags,
            request_complete: self.request_complete,
            request_body_started: self.request_body_started,
        };
        let Some(fault) = transport::fault_for_response(&view, self.config.errors.format) else {
            return Flow::Continue;
        };
        // Envoy's reply is replaced whole: a local reply made before the response headers went
        // downstream is sent instead of them (also when Envoy's reply had no body to rewrite, as
        // for a missing cluster).
        self.deny(host, &fault)
    }

    pub fn on_response_body(&mut self, host: &mut impl Host, body_size: usize, _end_of_stream: bool) -> Flow {
        if !self.answered_locally {
            self.charge(host, body_size);
        }
        Flow::Continue
    }
}

/// Parses a fetched JWKS body.
fn parse_jwks(bytes: &[u8]) -> Option<KeySet> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    KeySet::from_jwks(&value).ok()
}

/// Removes a query parameter (the API key) from a path; the parameter's name is compared after
/// percent-decoding, so `api%6Bey=` goes too.
fn strip_query_param(path: &str, name: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| flow::percent_decode(pair.split('=').next().unwrap_or_default()) != name)
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// Envoy's integer properties are 8-byte little-endian.
fn le_u64(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    for (slot, byte) in buffer.iter_mut().zip(bytes.iter()) {
        *slot = *byte;
    }
    u64::from_le_bytes(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostError;
    use std::collections::HashMap;

    /// A call the stream made: cluster, headers, body.
    type Dispatched = (String, Vec<(String, String)>, Option<Vec<u8>>);

    /// A local reply the stream sent: status, headers, body.
    type SentReply = (u16, Vec<(String, String)>, Vec<u8>);

    #[derive(Default)]
    struct FakeHost {
        request: HashMap<String, Vec<u8>>,
        response: HashMap<String, Vec<u8>>,
        properties: HashMap<String, Vec<u8>>,
        sent: Option<SentReply>,
        counted: Vec<u32>,
        counters: Vec<String>,
        now: u64,
        clock_broken: bool,
        shared: HashMap<String, (Vec<u8>, u32)>,
        dispatched: Vec<Dispatched>,
        resumed: bool,
    }

    impl FakeHost {
        fn request(pairs: &[(&str, &str)]) -> Self {
            FakeHost {
                request: pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
                ..Default::default()
            }
        }

        fn req(&self, name: &str) -> &str {
            std::str::from_utf8(&self.request[name]).unwrap()
        }
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> Vec<Header> {
            self.request.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
            match value {
                Some(value) => self.request.insert(name.to_string(), value.to_vec()),
                None => self.request.remove(name),
            };
        }
        fn response_header(&self, name: &str) -> Option<Vec<u8>> {
            self.response.get(name).cloned()
        }
        fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
            match value {
                Some(value) => self.response.insert(name.to_string(), value.to_vec()),
                None => self.response.remove(name),
            };
        }
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.properties.get(&path.join(".")).cloned()
        }
        fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
            self.sent = Some((status, headers.to_vec(), body.to_vec()));
        }
        fn count(&mut self, name: &str) {
            if let Some(code) = name.strip_prefix("apim.fault.").and_then(|code| code.parse().ok()) {
                self.counted.push(code);
            }
            self.counters.push(name.to_string());
        }
        fn now(&self) -> Result<u64, HostError> {
            if self.clock_broken {
                return Err(HostError::INTERNAL_FAILURE);
            }
            Ok(self.now)
        }
        fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            Ok(self.shared.get(key).cloned())
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
            let current = self.shared.get(key).map(|(_, cas)| *cas);
            if cas.is_some() && current.is_some() && cas != current {
                return Err(HostError::CAS_MISMATCH);
            }
            self.shared.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
        fn call(&mut self, call: &Call) -> Result<u32, HostError> {
            match call {
                Call::Http { cluster, headers, body, .. } => {
                    self.dispatched.push((cluster.clone(), headers.clone(), Some(body.clone())));
                    Ok(self.dispatched.len() as u32)
                }
                Call::Grpc { .. } => Err(HostError::BAD_ARGUMENT),
            }
        }
        fn resume_request(&mut self) {
            self.resumed = true;
        }
    }

    fn config() -> Rc<Config> {
        let json = r#"{"apis":[{"name":"P","context":"/p","version":"1","security":[],
            "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#;
        Rc::new(Config::from_json(json.as_bytes()).unwrap())
    }

    fn stream(config: Rc<Config>) -> Stream {
        let vm = Rc::new(RefCell::new(VmState::new(&config)));
        Stream::new(config, vm)
    }

    #[test]
    fn forwarded_requests_get_routing_headers_and_lose_spoofed_ones_and_credentials() {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu?x=1"),
            ("x-apim-cluster", "admin"),
            ("authorization", "Bearer abc"),
        ]);
        let mut stream = stream(config());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
        assert_eq!(host.req("x-apim-cluster"), "backend");
        assert_eq!(host.req("x-apim-api"), "P:1");
        assert_eq!(host.req(":path"), "/menu?x=1");
        assert!(!host.request.contains_key("authorization"));
        assert!(host.sent.is_none());
    }

    #[test]
    fn denied_requests_are_answered_counted_and_not_reclassified() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/nowhere"), ("x-apim-cluster", "admin")]);
        let mut stream = stream(config());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Pause);
        let (status, _, body) = host.sent.clone().unwrap();
        assert_eq!(status, 404);
        assert!(String::from_utf8(body).unwrap().contains("\"404\""));
        assert_eq!(host.counted, vec![404]);
        assert!(!host.request.contains_key("x-apim-cluster"));
        // Our own reply passes through the response phase untouched.
        host.response.insert(":status".into(), b"404".to_vec());
        host.properties.insert("response.flags".into(), 0x100u64.to_le_bytes().to_vec());
        assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
        assert_eq!(host.counted, vec![404]);
    }

    #[test]
    fn envoy_upstream_failure_reply_is_rewritten() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), b"503".to_vec());
        host.response.insert("content-length".into(), b"91".to_vec());
        host.response.insert("content-type".into(), b"text/plain".to_vec());
        host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
        host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
        assert_eq!(stream.on_response_headers(&mut host), Flow::Pause);
        let (status, headers, body) = host.sent.clone().expect("Envoy's reply is replaced whole");
        assert_eq!(status, 503);
        assert!(headers.iter().any(|(name, value)| name == "content-type" && value.starts_with("application/json")));
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("\"101503\""), "{body}");
        assert_eq!(host.counted, vec![101503]);
    }

    #[test]
    fn backend_responses_pass_untouched() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), b"500".to_vec());
        host.properties.insert("response.code_details".into(), b"via_upstream".to_vec());
        assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
        assert_eq!(stream.on_response_body(&mut host, 10, true), Flow::Continue);
        assert!(host.sent.is_none());
        assert!(host.counted.is_empty());
        assert_eq!(host.response[":status"], b"500");
    }

    #[test]
    fn little_endian_flags() {
        assert_eq!(le_u64(&32u64.to_le_bytes()), 32);
        assert_eq!(le_u64(&[4]), 4);
        assert_eq!(le_u64(&[]), 0);
    }

    const SECURED: &str = r#"{
        "key_managers": [{"name": "km", "issuer": "https://km",
            "introspection": {"cluster": "km", "client_id": "gateway", "client_secret": "gateway-secret"}}],
        "apis": [{"name": "P", "context": "/p", "version": "1",
            "endpoints": {"production": "prod", "sandbox": "sand"},
            "resources": [{"method": "GET", "path": "/menu", "scopes": ["menu:read"]}]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "alice",
            "client_ids": [{"id": "app1"}, {"id": "app1-sandbox", "key_type": "SANDBOX"}]}],
        "subscriptions": [{"application": "app-1", "api": "P:1", "tier": "Gold"}],
        "policies": {"Gold": {"requests": 100, "per": "minute"}}
    }"#;

    fn secured() -> Rc<Config> {
        Rc::new(Config::from_json(SECURED.as_bytes()).unwrap())
    }

    fn introspection_answer(body: &str) -> (FakeHost, Stream) {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-1"),
        ]);
        host.now = 1_000;
        prepare_counters(&mut host, &mut Config::from_json(SECURED.as_bytes()).unwrap());
        let mut stream = stream(secured());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Pause);
        let (cluster, headers, request_body) = host.dispatched[0].clone();
        assert_eq!(cluster, "km");
        assert!(headers.contains(&(":path".to_string(), "/oauth2/introspect".to_string())));
        assert!(headers.iter().any(|(name, value)| name == "authorization" && value.starts_with("Basic ")));
        assert_eq!(request_body.unwrap(), b"token=opaque-token-1&token_type_hint=access_token".to_vec());
        stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: body.as_bytes().to_vec() });
        (host, stream)
    }

    #[test]
    fn an_active_opaque_token_is_forwarded_with_the_auth_context_and_cached() {
        let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#);
        assert!(host.resumed);
        assert!(host.sent.is_none());
        assert_eq!(host.req("x-apim-cluster"), "prod");
        assert_eq!(host.req("x-apim-application-id"), "app-1");
        assert_eq!(host.req("x-apim-subscriber"), "alice");
        assert_eq!(host.req("x-apim-key-type"), "PRODUCTION");
        assert_eq!(host.req("x-apim-tier"), "Gold");
        assert!(!host.request.contains_key("authorization"));
        // The same token again: served from shared data, no second call.
        let mut again = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-1"),
        ]);
        again.now = 1_100;
        again.shared = host.shared.clone();
        let mut second = stream(secured());
        assert_eq!(second.on_request_headers(&mut again, true), Flow::Continue);
        assert!(again.dispatched.is_empty());
        // Never past the token's exp.
        let mut late = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-1"),
        ]);
        late.now = 2_000;
        late.shared = host.shared.clone();
        let mut third = stream(secured());
        assert_eq!(third.on_request_headers(&mut late, true), Flow::Pause);
        assert_eq!(late.dispatched.len(), 1);
    }

    #[test]
    fn introspection_outcomes_map_to_wso2_codes() {
        let (host, _) = introspection_answer(r#"{"active":false}"#);
        assert_eq!(host.sent.as_ref().unwrap().0, 401);
        assert_eq!(host.counted, vec![900901]);
        let (host, _) = introspection_answer("upstream connect error");
        assert_eq!((host.sent.as_ref().unwrap().0, host.counted.clone()), (500, vec![900900]));
        let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1","scope":"other"}"#);
        assert_eq!((host.sent.as_ref().unwrap().0, host.counted.clone()), (403, vec![900910]));
        let (host, _) = introspection_answer(r#"{"active":true,"client_id":"stranger","scope":"menu:read"}"#);
        assert_eq!((host.sent.as_ref().unwrap().0, host.counted.clone()), (403, vec![900908]));
        let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1-sandbox","scope":"menu:read"}"#);
        assert_eq!(host.req("x-apim-cluster"), "sand");
        assert_eq!(host.req("x-apim-key-type"), "SANDBOX");
    }

    #[test]
    fn a_failed_call_is_900900_and_nothing_is_cached() {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-2"),
        ]);
        prepare_counters(&mut host, &mut Config::from_json(SECURED.as_bytes()).unwrap());
        let mut stream = stream(secured());
        stream.on_request_headers(&mut host, true);
        stream.on_call_response(&mut host, 1, Answer::Failed { code: 11 });
        assert_eq!(host.counted, vec![900900]);
        assert!(!host.shared.keys().any(|key| key.starts_with("apim.introspection")), "nothing cached");
    }

    #[test]
    fn spoofed_context_headers_are_removed() {
        let mut host =
            FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("x-apim-application-id", "admin-app")]);
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        assert!(!host.request.contains_key("x-apim-application-id"));
    }

    #[test]
    fn api_key_in_query_is_stripped_before_forwarding() {
        assert_eq!(strip_query_param("/menu?apikey=k&x=1", "apikey"), "/menu?x=1");
        assert_eq!(strip_query_param("/menu?apikey=k", "apikey"), "/menu");
        assert_eq!(strip_query_param("/menu?apikeyx=1", "apikey"), "/menu?apikeyx=1");
    }

    fn jwks_config() -> Rc<Config> {
        let json = r#"{"key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"cluster": "km", "refresh_s": 300}}],
            "apis": [{"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"},
                      "resources": [{"method": "GET", "path": "/menu"}]}],
            "applications": [{"id": "app-1", "name": "App", "client_ids": [{"id": "app1"}]}],
            "subscriptions": [{"application": "app-1", "api": "P:1"}]}"#;
        Rc::new(Config::from_json(json.as_bytes()).unwrap())
    }

    fn signed(kid: &str, exp: u64) -> String {
        use crate::auth::keys::testkeys::sign_raw;
        let claims = format!(r#"{{"iss":"https://km","exp":{exp},"client_id":"app1"}}"#);
        sign_raw(&format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#), &claims, "rsa-a.pem", jsonwebtoken::Algorithm::RS256)
    }

    fn jwks_body() -> Vec<u8> {
        let jwk = crate::auth::keys::testkeys::jwk("rsa-a.pem", jsonwebtoken::Algorithm::RS256, "a");
        serde_json::json!({"keys": [jwk]}).to_string().into_bytes()
    }

    #[test]
    fn jwks_are_fetched_shared_refreshed_when_stale_and_kept_when_a_refresh_fails() {
        let config = jwks_config();
        let vm = Rc::new(RefCell::new(VmState::new(&config)));
        let call = |vm: &Rc<RefCell<VmState>>, host: &mut FakeHost, token: &str| {
            host.request = [(":method", "GET"), (":path", "/p/1/menu")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            host.request.insert("authorization".into(), format!("Bearer {token}").into_bytes());
            host.sent = None;
            host.resumed = false;
            let mut stream = Stream::new(Rc::clone(&config), Rc::clone(vm));
            let flow = stream.on_request_headers(host, true);
            (stream, flow)
        };
        let mut host = FakeHost { now: 1_000, ..Default::default() };
        // First use: no keys yet, so the request waits for a fetch, which is shared with all workers.
        let (mut stream, flow) = call(&vm, &mut host, &signed("a", 5_000));
        assert_eq!((flow, host.dispatched.len()), (Flow::Pause, 1));
        stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
        assert!(host.resumed && host.sent.is_none());
        assert!(host.shared.contains_key(&jwks_key(&config.key_managers[0])));
        // Another worker picks the keys up from shared data without fetching.
        let other = Rc::new(RefCell::new(VmState::new(&config)));
        host.now = 1_010;
        let (_, flow) = call(&other, &mut host, &signed("a", 5_001));
        assert_eq!((flow, host.dispatched.len()), (Flow::Continue, 1));
        // Past refresh_s the keys are refetched; a failed refetch keeps the last good keys.
        host.now = 1_400;
        let (mut stream, flow) = call(&vm, &mut host, &signed("a", 5_002));
        assert_eq!((flow, host.dispatched.len()), (Flow::Pause, 2));
        stream.on_call_response(&mut host, 2, Answer::Http { status: 503, body: b"down".to_vec() });
        assert!(host.resumed && host.sent.is_none(), "verified with the last good keys");
        // An unknown kid right after that failed fetch does not fetch again; its key could not be
        // had, so it is a key manager outage (900900), not bad credentials.
        host.now = 1_401;
        let (_, flow) = call(&vm, &mut host, &signed("rotated", 5_003));
        assert_eq!((flow, host.dispatched.len()), (Flow::Pause, 2));
        assert_eq!(host.counted.last(), Some(&900900));
        assert!(host.counters.contains(&"apim.auth.refused.keys_unavailable".to_string()));
        // After the interval it may fetch again: the key manager answers, without that kid: 900901.
        host.now = 1_400 + JWKS_FETCH_INTERVAL_S;
        let (mut stream, flow) = call(&vm, &mut host, &signed("rotated", 5_004));
        assert_eq!((flow, host.dispatched.len()), (Flow::Pause, 3));
        stream.on_call_response(&mut host, 3, Answer::Http { status: 200, body: jwks_body() });
        assert_eq!(host.counted.last(), Some(&900901));
    }

    #[test]
    fn keys_that_were_never_fetched_because_the_key_manager_is_down_are_900900() {
        let config = jwks_config();
        let vm = Rc::new(RefCell::new(VmState::new(&config)));
        for answer in [
            Answer::Failed { code: 11 },
            Answer::Http { status: 500, body: b"oops".to_vec() },
            Answer::Http { status: 200, body: b"<html>".to_vec() },
        ] {
            *vm.borrow_mut() = VmState::new(&config);
            let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
            host.request.insert("authorization".into(), format!("Bearer {}", signed("a", 5_000)).into_bytes());
            host.now = 1_000;
            let mut stream = Stream::new(Rc::clone(&config), Rc::clone(&vm));
            assert_eq!(stream.on_request_headers(&mut host, true), Flow::Pause);
            stream.on_call_response(&mut host, 1, answer.clone());
            assert_eq!(host.sent.as_ref().map(|sent| sent.0), Some(500), "{answer:?}");
            assert_eq!(host.counted, vec![900900], "{answer:?}");
        }
    }

    #[test]
    fn a_clock_that_cannot_be_read_fails_closed() {
        let mut host =
            FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer x.y.z")]);
        host.clock_broken = true;
        let mut stream = stream(jwks_config());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Pause);
        assert_eq!(host.counted, vec![900900]);
        assert!(!host.request.contains_key("x-apim-cluster"));
    }

    #[test]
    fn non_utf8_bytes_anywhere_never_panic_and_credentials_that_are_not_text_are_refused() {
        // Latin-1 bytes in an ordinary header: carried through untouched.
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        host.request.insert("user-agent".into(), b"Mozilla/5.0 \xa9".to_vec());
        host.request.insert("origin".into(), b"https://caf\xe9.example".to_vec());
        let mut passing = stream(config());
        assert_eq!(passing.on_request_headers(&mut host, true), Flow::Continue);
        assert_eq!(host.request["user-agent"], b"Mozilla/5.0 \xa9");
        // In a credential: 900901, never a crash.
        for name in ["authorization", "apikey"] {
            let json = SECURED.replace(
                r#""endpoints": {"production""#,
                r#""security": ["oauth2", "api_key"], "endpoints": {"production""#,
            );
            let config = Rc::new(Config::from_json(json.as_bytes()).unwrap());
            let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
            host.request.insert(name.into(), b"Bearer \xff\xfe".to_vec());
            let mut refused = Stream::new(Rc::clone(&config), Rc::new(RefCell::new(VmState::new(&config))));
            assert_eq!(refused.on_request_headers(&mut host, true), Flow::Pause, "{name}");
            assert_eq!(host.counted, vec![900901], "{name}");
            assert!(host.counters.contains(&"apim.auth.refused.not_utf8".to_string()), "{name}");
        }
        // A path that is not UTF-8 matches nothing.
        let mut host = FakeHost::request(&[(":method", "GET")]);
        host.request.insert(":path".into(), b"/p/1/m\xe9nu".to_vec());
        let mut unmatched = stream(config());
        unmatched.on_request_headers(&mut host, true);
        assert!(host.sent.is_some());
        // Random bytes in every header the filter reads, many times over.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut noise = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        for round in 0..500 {
            let mut host = FakeHost::request(&[]);
            for name in [":method", ":path", "authorization", "apikey", "origin", "access-control-request-method"] {
                let mut value = noise(round % 40);
                if name == ":path" && round % 3 == 0 {
                    value = [b"/p/1/menu?".as_slice(), &value].concat();
                }
                host.request.insert(name.into(), value);
            }
            host.response.insert(":status".into(), noise(3));
            host.properties.insert("response.flags".into(), noise(8));
            host.properties.insert("response.code_details".into(), noise(12));
            let mut fuzzed = stream(secured());
            fuzzed.on_request_headers(&mut host, true);
            fuzzed.on_call_response(&mut host, 1, Answer::Http { status: 200, body: noise(round % 64) });
            fuzzed.on_response_headers(&mut host);
            fuzzed.on_response_body(&mut host, 10, true);
        }
    }

    #[test]
    fn client_copies_of_owned_headers_go_in_every_spelling() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        for name in
            ["x-apim-quota-exceeded", "X_APIM_APPLICATION_ID", "x_apim_cluster", "X-Apim-Tier", "x-apim_end-user"]
        {
            host.request.insert(name.into(), b"forged".to_vec());
        }
        host.request.insert("x-apim-unrelated".into(), b"kept".to_vec());
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        let forged: Vec<&String> =
            host.request.iter().filter(|(_, value)| value.as_slice() == b"forged").map(|(name, _)| name).collect();
        assert!(forged.is_empty(), "{forged:?}");
        assert_eq!(host.request["x-apim-unrelated"], b"kept");
    }

    #[test]
    fn envoy_replies_without_a_body_get_the_whole_fault() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), b"503".to_vec());
        host.properties.insert("response.flags".into(), 0x100_0000u64.to_le_bytes().to_vec());
        host.properties.insert("response.code_details".into(), b"cluster_not_found".to_vec());
        assert_eq!(stream.on_response_headers(&mut host), Flow::Pause);
        let (status, headers, body) = host.sent.clone().expect("a local reply with the body");
        assert_eq!(status, 503);
        assert!(String::from_utf8(body).unwrap().contains("\"101503\""));
        assert!(headers.iter().any(|(name, value)| name == "content-type" && value.starts_with("application/json")));
    }

    #[test]
    fn a_bogus_token_does_not_evict_a_cached_active_answer_in_its_slot() {
        let config = secured();
        let km = &config.key_managers[0];
        let real = flow::credential_hash("opaque-token-1");
        let slot = flow::introspection_slot(km, &real);
        let bogus = (0..1_000_000)
            .map(|i| format!("bogus-{i}"))
            .find(|token| flow::introspection_slot(km, &flow::credential_hash(token)) == slot)
            .expect("a colliding token");
        let (mut host, _) =
            introspection_answer(r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#);
        let cached = host.shared[&slot].clone();
        host.request = [(":method", "GET"), (":path", "/p/1/menu")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        host.request.insert("authorization".into(), format!("Bearer {bogus}").into_bytes());
        let mut attacker = stream(secured());
        assert_eq!(attacker.on_request_headers(&mut host, true), Flow::Pause);
        let call = host.dispatched.len() as u32;
        attacker.on_call_response(&mut host, call, Answer::Http { status: 200, body: br#"{"active":false}"#.to_vec() });
        assert_eq!(host.counted.last(), Some(&900901));
        assert_eq!(host.shared[&slot], cached, "the real token's answer stays cached");
    }
}
