//! One HTTP stream through the filter: gathers the request view, applies the decision, runs key
//! validation (pausing the request for introspection or a JWKS fetch), and in the response phase
//! swaps Envoy's plain-text upstream-failure replies for the transport fault. Talks to Envoy only
//! through [`Host`], so it runs natively in tests against a fake host.

use std::cell::RefCell;
use std::rc::Rc;

use crate::auth::flow::{
    self, AuthFailure, Authorized, BearerStep, CachedIntrospection, Extracted, Identity, Introspected, Presented,
    TokenCache,
};
use crate::auth::keys::KeySet;
use crate::catalogue::Fault;
use crate::config::{Config, KeyType};
use crate::decision::{self, Forward, RequestView, Verdict};
use crate::render::{self, Rendered};
use crate::throttle::cidr::parse_source_address;
use crate::throttle::limiter::CasStore;
use crate::throttle::{self, ByteCounter, Caller, Outcome, RateLimitInfo};
use crate::transport::{self, ResponseView};

/// What the stream needs from Envoy. The proxy-wasm adapter implements it over host calls.
pub trait Host {
    fn request_header(&self, name: &str) -> Option<String>;
    /// Every request header at once (one host call instead of one per header).
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Sets (or with `None` removes) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    fn response_header(&self, name: &str) -> Option<String>;
    /// Sets (or with `None` removes) a response header.
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    /// A property such as `response.flags`, as raw bytes.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Answers the request locally.
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8]);
    /// Replaces the whole (buffered) response body.
    fn replace_response_body(&mut self, current_size: usize, body: &[u8]);
    /// Adds one to the counter of a fault code.
    fn count_fault(&mut self, code: u32);
    /// Unix time, seconds.
    fn now(&self) -> u64;
    /// Shared data (all workers): value and CAS token.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)>;
    /// Stores shared data; `false` on a CAS mismatch or failure.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// Calls a cluster; `None` when the call cannot be made.
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Option<u32>;
    /// Resumes a paused request.
    fn resume_request(&mut self);
}

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
}

/// Fetches triggered by unknown `kid`s happen at most this often per key manager and worker.
pub const JWKS_FETCH_INTERVAL_S: u64 = 5;

impl VmState {
    pub fn new(config: &Config) -> Self {
        VmState {
            tokens: TokenCache::new(config.credentials.verified_cache_entries),
            remote_keys: config.key_managers.iter().map(|_| None).collect(),
            last_fetch: config.key_managers.iter().map(|_| None).collect(),
        }
    }
}

/// The shared-data key of a key manager's fetched JWKS.
pub fn jwks_key(km: &crate::config::KeyManager) -> String {
    format!("apim.jwks.{}", km.cache_id)
}

/// Auth-context headers for the backend, after the configured prefix.
const CONTEXT_HEADERS: [&str; 6] = ["application-id", "application-name", "subscriber", "key-type", "tier", "end-user"];

/// What the stream is waiting for.
enum Waiting {
    Introspection { call: u32, key_manager: usize, hash: [u8; 32], forward: Forward },
    Jwks { call: u32, key_manager: usize, token: String, forward: Forward },
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
    /// A fault body waiting to replace Envoy's reply body.
    pending_body: Option<String>,
    waiting: Option<Waiting>,
    /// The request headers as they arrived.
    headers: Vec<(String, String)>,
    /// Byte budgets (bandwidth policies) to charge body bytes to.
    byte_counters: Vec<ByteCounter>,
    /// The most restrictive counted level, for the RateLimit headers.
    rate_limit: Option<RateLimitInfo>,
    /// Throttling has run for this request.
    throttled: bool,
    /// Body bytes that passed before throttling ran (while authentication waited on a call).
    uncharged_bytes: u64,
}

/// Creates the counter slots in shared data (at configure time, before requests count).
pub fn prepare_counters(host: &mut impl Host, config: &Config) {
    if config.throttles() {
        crate::throttle::limiter::prepare_slots(&mut HostStore(host), config.throttling.counter_slots);
    }
}

/// Shared data as the counters' compare-and-swap store.
struct HostStore<'h, H: Host>(&'h mut H);

impl<H: Host> CasStore for HostStore<'_, H> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        self.0.shared_get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.shared_set(key, value, cas)
    }
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
            pending_body: None,
            waiting: None,
            headers: Vec::new(),
            byte_counters: Vec::new(),
            rate_limit: None,
            throttled: false,
            uncharged_bytes: 0,
        }
    }

    pub fn on_request_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Flow {
        self.request_complete = end_of_stream;
        let config = Rc::clone(&self.config);
        self.headers = host.request_headers();
        // Headers only the filter may set: a client's copy never reaches the router or backend.
        let prefix = &config.credentials.context_header_prefix;
        let internal: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                name.eq_ignore_ascii_case(&config.routing.cluster_header)
                    || name.eq_ignore_ascii_case(&config.routing.api_header)
                    || (name.len() > prefix.len()
                        && name.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
                        && CONTEXT_HEADERS.iter().any(|suffix| {
                            name.get(prefix.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
                        }))
            })
            .cloned()
            .collect();
        for name in internal {
            host.set_request_header(&name, None);
        }

        let method = self.header(":method").unwrap_or_default();
        let path = self.header(":path").unwrap_or_default();
        let preflight_method = self.header("access-control-request-method");
        self.origin = self.header("origin");
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
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(key, _)| key.eq_ignore_ascii_case(name))
    }

    fn authenticate(&mut self, host: &mut impl Host, forward: Forward, path: &str) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(api) = config.apis.get(forward.api) else {
            return self.fail(host, AuthFailure::Invalid);
        };
        let Some(resource) = api.resources.get(forward.resource) else {
            return self.fail(host, AuthFailure::Invalid);
        };
        let authorization = self.header(&config.credentials.authorization_header);
        let api_key = self.header(&config.credentials.api_key_header);
        let query = path.split_once('?').map(|(_, query)| query);
        match flow::extract(&config, api, resource, authorization.as_deref(), api_key.as_deref(), query) {
            Extracted::Missing => self.fail(host, AuthFailure::Missing),
            Extracted::BadFormat => self.fail(host, AuthFailure::BadFormat),
            Extracted::BadScheme => self.fail(host, AuthFailure::BadScheme),
            Extracted::Found(Presented::ApiKey(key)) => match flow::verify_api_key(&config, &key, host.now()) {
                Ok(identity) => self.authorize(host, &forward, &identity),
                Err(failure) => self.fail(host, failure),
            },
            Extracted::Found(Presented::Bearer(token)) => self.bearer(host, forward, token, true),
        }
    }

    /// Verifies a bearer token, from the cache when it can.
    fn bearer(&mut self, host: &mut impl Host, forward: Forward, token: String, allow_fetch: bool) -> Flow {
        let config = Rc::clone(&self.config);
        let now = host.now();
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
                    let stale = remote.is_some_and(|remote| now >= remote.fetched_at.saturating_add(refresh_s));
                    (remote.map(|remote| &remote.keys), stale)
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
                            .is_none_or(|last| now >= last + JWKS_FETCH_INTERVAL_S)
                },
            )
        };
        match step {
            BearerStep::Verified(identity) => {
                self.vm.borrow_mut().tokens.insert(&token, identity.clone());
                self.authorize(host, &forward, &Identity::Token(identity))
            }
            BearerStep::Failed(failure) => self.fail(host, failure),
            BearerStep::Introspect { key_manager } => {
                self.introspect(host, forward, &token, flow::credential_hash(&token), key_manager, now)
            }
            BearerStep::FetchJwks { key_manager } => {
                if let Some(slot) = self.vm.borrow_mut().last_fetch.get_mut(key_manager) {
                    *slot = Some(now);
                }
                let call =
                    config.key_managers.get(key_manager).and_then(|km| km.remote_jwks.as_ref()).and_then(|jwks| {
                        let cluster = jwks.cluster.as_deref()?;
                        let headers = vec![
                            (":method".to_string(), "GET".to_string()),
                            (":path".to_string(), jwks.path.clone()),
                            (":authority".to_string(), jwks.authority.clone().unwrap_or_else(|| cluster.to_string())),
                            ("accept".to_string(), "application/json".to_string()),
                        ];
                        host.dispatch(cluster, &headers, None, jwks.timeout_ms)
                    });
                match call {
                    Some(call) => {
                        self.waiting = Some(Waiting::Jwks { call, key_manager, token, forward });
                        Flow::Pause
                    }
                    // Cannot fetch: decide with the keys at hand.
                    None => self.bearer(host, forward, token, false),
                }
            }
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
            let Some((bytes, cas)) = host.shared_get(&jwks_key(km)) else {
                if let Some(remote) = slot.as_mut() {
                    remote.checked_at = now;
                }
                continue;
            };
            if slot.as_ref().is_some_and(|remote| remote.cas == cas && cas.is_some()) {
                if let Some(remote) = slot.as_mut() {
                    remote.checked_at = now;
                }
                continue;
            }
            if let Some(keys) = parse_jwks(&bytes) {
                *slot = Some(RemoteKeys { keys, cas, checked_at: now, fetched_at: now });
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
        let Some(km) = config.key_managers.get(key_manager) else { return self.fail(host, AuthFailure::Invalid) };
        if let Some((bytes, _)) = host.shared_get(&flow::introspection_slot(km, &hash)) {
            match CachedIntrospection::lookup(&bytes, &hash, key_manager, now) {
                Some(Introspected::Active(identity)) => {
                    return self.authorize(host, &forward, &Identity::Token(identity))
                }
                Some(Introspected::Inactive) => return self.fail(host, AuthFailure::Inactive),
                Some(Introspected::Unavailable) | None => {}
            }
        }
        let Some(introspection) = km.introspection.as_ref() else {
            return self.fail(host, AuthFailure::Invalid);
        };
        let Some((headers, body)) = flow::introspection_request(km, token) else {
            return self.fail(host, AuthFailure::Invalid);
        };
        match host.dispatch(&introspection.cluster, &headers, Some(&body), introspection.timeout_ms) {
            Some(call) => {
                self.waiting = Some(Waiting::Introspection { call, key_manager, hash, forward });
                Flow::Pause
            }
            None => self.fail(host, AuthFailure::KeyManagerUnavailable),
        }
    }

    /// The answer to a call this stream made. `status` is `None` when the call failed.
    pub fn on_call_response(&mut self, host: &mut impl Host, call: u32, status: Option<u16>, body: &[u8]) {
        let config = Rc::clone(&self.config);
        let flow = match self.waiting.take() {
            Some(Waiting::Introspection { call: expected, key_manager, hash, forward }) if expected == call => {
                let Some(km) = config.key_managers.get(key_manager) else {
                    self.fail(host, AuthFailure::KeyManagerUnavailable);
                    return;
                };
                let now = host.now();
                let answer = flow::parse_introspection(key_manager, km, status, body, now);
                if let Some(entry) = CachedIntrospection::for_answer(&hash, &answer, km, now) {
                    let slot = flow::introspection_slot(km, &hash);
                    // A flood of bogus tokens must not evict the cached answers of real ones.
                    let evicts_active = entry.identity.is_none()
                        && host
                            .shared_get(&slot)
                            .is_some_and(|(bytes, _)| CachedIntrospection::is_fresh_active(&bytes, now));
                    if let (false, Ok(bytes)) = (evicts_active, serde_json::to_vec(&entry)) {
                        host.shared_set(&slot, &bytes, None);
                    }
                }
                match answer {
                    Introspected::Active(identity) => self.authorize(host, &forward, &Identity::Token(identity)),
                    Introspected::Inactive => self.fail(host, AuthFailure::Inactive),
                    Introspected::Unavailable => {
                        log::warn!("key manager `{}` did not answer the introspection (status {status:?})", km.name);
                        self.fail(host, AuthFailure::KeyManagerUnavailable)
                    }
                }
            }
            Some(Waiting::Jwks { call: expected, key_manager, token, forward }) if expected == call => {
                let now = host.now();
                if let (Some(200), Some(keys)) = (status, parse_jwks(body)) {
                    if let Some(km) = config.key_managers.get(key_manager) {
                        host.shared_set(&jwks_key(km), body, None);
                        let cas = host.shared_get(&jwks_key(km)).and_then(|(_, cas)| cas);
                        if let Some(slot) = self.vm.borrow_mut().remote_keys.get_mut(key_manager) {
                            *slot = Some(RemoteKeys { keys, cas, checked_at: now, fetched_at: now });
                        }
                    }
                } else {
                    log::warn!("JWKS fetch failed (status {status:?}); keeping the last good keys");
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
            return self.fail(host, AuthFailure::Invalid);
        };
        let Some(resource) = api.resources.get(forward.resource) else {
            return self.fail(host, AuthFailure::Invalid);
        };
        match flow::authorize(&config, api, resource, identity) {
            Ok(authorized) => self.forward(host, forward, Some(&authorized)),
            Err(fault) => self.deny(host, &fault),
        }
    }

    fn forward(&mut self, host: &mut impl Host, forward: &Forward, authorized: Option<&Authorized>) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(cluster) = authorized.map(|a| a.cluster.as_str()).or(forward.cluster.as_deref()) else {
            return self.fail(host, AuthFailure::Invalid);
        };
        // Throttling comes after authentication, as in WSO2's handler chain.
        let over_quota = match self.throttle(host, forward, authorized) {
            Ok(over_quota) => over_quota,
            Err(flow) => return flow,
        };
        if over_quota {
            host.set_request_header(&config.throttling.quota_exceeded_header, Some("true"));
        }
        host.set_request_header(&config.routing.cluster_header, Some(cluster));
        host.set_request_header(&config.routing.api_header, Some(&forward.api_label));
        let strip_query_key =
            config.credentials.strip && config.apis.get(forward.api).is_some_and(|api| api.api_key_in_query);
        let current_path = self.header(":path").unwrap_or_default();
        let upstream_path = forward.upstream_path.clone().unwrap_or(current_path.clone());
        let upstream_path = if strip_query_key {
            strip_query_param(&upstream_path, &config.credentials.api_key_query_param)
        } else {
            upstream_path
        };
        if upstream_path != current_path {
            host.set_request_header(":path", Some(&upstream_path));
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
                    host.set_request_header(&format!("{prefix}{name}"), Some(value));
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
            client_ip,
        };
        let now = host.now();
        self.throttled = true;
        match throttle::evaluate(&config, api, resource, &caller, &mut HostStore(host), now) {
            Outcome::Allowed { over_quota, byte_counters, rate_limit } => {
                self.byte_counters = byte_counters;
                self.rate_limit = rate_limit;
                let early = std::mem::take(&mut self.uncharged_bytes);
                self.charge(host, early as usize);
                Ok(over_quota)
            }
            Outcome::Denied { fault, rate_limit } => {
                self.rate_limit = rate_limit;
                Err(self.deny(host, &fault))
            }
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
        let now = host.now();
        throttle::charge_bytes(&config, &self.byte_counters, bytes as u64, &mut HostStore(host), now);
    }

    fn fail(&mut self, host: &mut impl Host, failure: AuthFailure) -> Flow {
        let fault = flow::failure_fault(failure, self.config.compatibility);
        self.deny(host, &fault)
    }

    fn deny(&mut self, host: &mut impl Host, fault: &Fault) -> Flow {
        let Rendered { status, mut headers, body } = render::render(fault, &self.config.errors, self.origin.as_deref());
        headers.extend(self.rate_limit_headers());
        self.answered_locally = true;
        host.count_fault(fault.code);
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

    pub fn on_response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Flow {
        if self.answered_locally {
            return Flow::Continue;
        }
        for (name, value) in self.rate_limit_headers() {
            host.set_response_header(&name, Some(&value));
        }
        let status = host.response_header(":status").and_then(|status| status.parse::<u16>().ok()).unwrap_or(0);
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
        let rendered = render::render(&fault, &self.config.errors, self.origin.as_deref());
        host.count_fault(fault.code);
        host.set_response_header(":status", Some(&rendered.status.to_string()));
        host.set_response_header("content-length", None);
        for (name, value) in &rendered.headers {
            host.set_response_header(name, Some(value));
        }
        if !end_of_stream {
            self.pending_body = Some(rendered.body);
        }
        Flow::Continue
    }

    pub fn on_response_body(&mut self, host: &mut impl Host, body_size: usize, end_of_stream: bool) -> Flow {
        if self.pending_body.is_none() {
            self.charge(host, body_size);
            return Flow::Continue;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        if let Some(body) = self.pending_body.take() {
            host.replace_response_body(body_size, body.as_bytes());
        }
        Flow::Continue
    }
}

/// Parses a fetched JWKS body.
fn parse_jwks(bytes: &[u8]) -> Option<KeySet> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    KeySet::from_jwks(&value).ok()
}

/// Removes a query parameter (the API key) from a path.
fn strip_query_param(path: &str, name: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query.split('&').filter(|pair| pair.split('=').next() != Some(name)).collect();
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
    use std::collections::HashMap;

    /// A call the stream made: cluster, headers, body.
    type Dispatched = (String, Vec<(String, String)>, Option<Vec<u8>>);

    /// A local reply the stream sent: status, headers, body.
    type SentReply = (u16, Vec<(String, String)>, Vec<u8>);

    #[derive(Default)]
    struct FakeHost {
        request: HashMap<String, String>,
        response: HashMap<String, String>,
        properties: HashMap<String, Vec<u8>>,
        sent: Option<SentReply>,
        body: Option<Vec<u8>>,
        counted: Vec<u32>,
        now: u64,
        shared: HashMap<String, (Vec<u8>, u32)>,
        dispatched: Vec<Dispatched>,
        resumed: bool,
    }

    impl FakeHost {
        fn request(pairs: &[(&str, &str)]) -> Self {
            FakeHost {
                request: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            }
        }
    }

    impl Host for FakeHost {
        fn request_header(&self, name: &str) -> Option<String> {
            self.request.get(name).cloned()
        }
        fn request_headers(&self) -> Vec<(String, String)> {
            self.request.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        fn set_request_header(&mut self, name: &str, value: Option<&str>) {
            match value {
                Some(value) => self.request.insert(name.to_string(), value.to_string()),
                None => self.request.remove(name),
            };
        }
        fn response_header(&self, name: &str) -> Option<String> {
            self.response.get(name).cloned()
        }
        fn set_response_header(&mut self, name: &str, value: Option<&str>) {
            match value {
                Some(value) => self.response.insert(name.to_string(), value.to_string()),
                None => self.response.remove(name),
            };
        }
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.properties.get(&path.join(".")).cloned()
        }
        fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
            self.sent = Some((status, headers.to_vec(), body.to_vec()));
        }
        fn replace_response_body(&mut self, _current_size: usize, body: &[u8]) {
            self.body = Some(body.to_vec());
        }
        fn count_fault(&mut self, code: u32) {
            self.counted.push(code);
        }
        fn now(&self) -> u64 {
            self.now
        }
        fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
            self.shared.get(key).map(|(value, cas)| (value.clone(), Some(*cas)))
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let current = self.shared.get(key).map(|(_, cas)| *cas);
            if cas.is_some() && cas != current {
                return false;
            }
            self.shared.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            true
        }
        fn dispatch(
            &mut self,
            cluster: &str,
            headers: &[(String, String)],
            body: Option<&[u8]>,
            _timeout_ms: u64,
        ) -> Option<u32> {
            self.dispatched.push((cluster.to_string(), headers.to_vec(), body.map(<[u8]>::to_vec)));
            Some(self.dispatched.len() as u32)
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
        assert_eq!(host.request["x-apim-cluster"], "backend");
        assert_eq!(host.request["x-apim-api"], "P:1");
        assert_eq!(host.request[":path"], "/menu?x=1");
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
        host.response.insert(":status".into(), "404".into());
        host.properties.insert("response.flags".into(), 0x100u64.to_le_bytes().to_vec());
        assert_eq!(stream.on_response_headers(&mut host, false), Flow::Continue);
        assert_eq!(host.counted, vec![404]);
    }

    #[test]
    fn envoy_upstream_failure_reply_is_rewritten() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), "503".into());
        host.response.insert("content-length".into(), "91".into());
        host.response.insert("content-type".into(), "text/plain".into());
        host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
        host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
        assert_eq!(stream.on_response_headers(&mut host, false), Flow::Continue);
        assert_eq!(host.response[":status"], "503");
        assert!(!host.response.contains_key("content-length"));
        assert!(host.response["content-type"].starts_with("application/json"));
        assert_eq!(stream.on_response_body(&mut host, 40, false), Flow::Pause);
        assert_eq!(stream.on_response_body(&mut host, 91, true), Flow::Continue);
        let body = String::from_utf8(host.body.unwrap()).unwrap();
        assert!(body.contains("\"101503\""), "{body}");
        assert_eq!(host.counted, vec![101503]);
    }

    #[test]
    fn backend_responses_pass_untouched() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut stream = stream(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), "500".into());
        host.properties.insert("response.code_details".into(), b"via_upstream".to_vec());
        assert_eq!(stream.on_response_headers(&mut host, false), Flow::Continue);
        assert_eq!(stream.on_response_body(&mut host, 10, true), Flow::Continue);
        assert!(host.body.is_none());
        assert!(host.counted.is_empty());
        assert_eq!(host.response[":status"], "500");
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
        prepare_counters(&mut host, &secured());
        let mut stream = stream(secured());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Pause);
        let (cluster, headers, request_body) = host.dispatched[0].clone();
        assert_eq!(cluster, "km");
        assert!(headers.contains(&(":path".to_string(), "/oauth2/introspect".to_string())));
        assert!(headers.iter().any(|(name, value)| name == "authorization" && value.starts_with("Basic ")));
        assert_eq!(request_body.unwrap(), b"token=opaque-token-1&token_type_hint=access_token");
        stream.on_call_response(&mut host, 1, Some(200), body.as_bytes());
        (host, stream)
    }

    #[test]
    fn an_active_opaque_token_is_forwarded_with_the_auth_context_and_cached() {
        let (host, _) = introspection_answer(r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":2000}"#);
        assert!(host.resumed);
        assert!(host.sent.is_none());
        assert_eq!(host.request["x-apim-cluster"], "prod");
        assert_eq!(host.request["x-apim-application-id"], "app-1");
        assert_eq!(host.request["x-apim-subscriber"], "alice");
        assert_eq!(host.request["x-apim-key-type"], "PRODUCTION");
        assert_eq!(host.request["x-apim-tier"], "Gold");
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
        assert_eq!(host.request["x-apim-cluster"], "sand");
        assert_eq!(host.request["x-apim-key-type"], "SANDBOX");
    }

    #[test]
    fn a_failed_call_is_900900_and_nothing_is_cached() {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu"),
            ("authorization", "Bearer opaque-token-2"),
        ]);
        prepare_counters(&mut host, &secured());
        let mut stream = stream(secured());
        stream.on_request_headers(&mut host, true);
        stream.on_call_response(&mut host, 1, None, b"");
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
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            host.request.insert("authorization".into(), format!("Bearer {token}"));
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
        stream.on_call_response(&mut host, 1, Some(200), &jwks_body());
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
        stream.on_call_response(&mut host, 2, Some(503), b"down");
        assert!(host.resumed && host.sent.is_none(), "verified with the last good keys");
        // An unknown kid right after a fetch does not fetch again: it is refused at once.
        host.now = 1_401;
        let (_, flow) = call(&vm, &mut host, &signed("rotated", 5_003));
        assert_eq!((flow, host.dispatched.len()), (Flow::Pause, 2));
        assert_eq!(host.counted.last(), Some(&900901));
        // After the interval it may fetch again.
        host.now = 1_400 + JWKS_FETCH_INTERVAL_S;
        let (_, flow) = call(&vm, &mut host, &signed("rotated", 5_004));
        assert_eq!((flow, host.dispatched.len()), (Flow::Pause, 3));
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
        host.request =
            [(":method", "GET"), (":path", "/p/1/menu")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        host.request.insert("authorization".into(), format!("Bearer {bogus}"));
        let mut attacker = stream(secured());
        assert_eq!(attacker.on_request_headers(&mut host, true), Flow::Pause);
        let call = host.dispatched.len() as u32;
        attacker.on_call_response(&mut host, call, Some(200), br#"{"active":false}"#);
        assert_eq!(host.counted.last(), Some(&900901));
        assert_eq!(host.shared[&slot], cached, "the real token's answer stays cached");
    }
}
