//! One HTTP stream through the filter, as a short phase machine: gather the request, route it,
//! validate its credential, authorize it, throttle it, and forward it; in the response phase,
//! replace Envoy's own upstream-failure replies with the transport fault. A stage that needs a
//! call (an introspection, a JWKS fetch, a remote counting engine) leaves it in the stream's one
//! pending-call slot with how to resume; the answer continues the machine where it stopped.
//!
//! The stream talks to Envoy only through [`Host`], so it runs natively in tests against a fake
//! host. Header values are bytes (Envoy accepts obs-text): see [`request`].

mod authenticate;
pub mod background;
mod directory;
mod events;
mod expiry;
mod frames;
mod request;
mod response;
#[cfg(test)]
mod tests;
mod throttling;
pub mod waiters;

use std::cell::RefCell;
use std::rc::Rc;

use crate::auth::authorize::Authorized;
use crate::auth::validation;
use crate::auth::{self, Identity};
use crate::backend_jwt::IssuedCache;
use crate::catalogue::{Fault, FaultId};
use crate::config::Config;
use crate::directory::control_plane::lookup;
use crate::directory::control_plane::view::CpWorker;
use crate::directory::Application;
use crate::host::{Answer, Call, GatewayScoped, Host};
use crate::observe::{self, ApplicationNames, Record};
use crate::render;
use crate::routing::{self, Forward, Matched, Table, Verdict};
use crate::schema::AccessLogEncoding;
use crate::throttle::cluster::{ClusterEngine, Refill};
use crate::throttle::limiter::Settings;
use crate::throttle::worker_lease::WorkerLeases;
use crate::throttle::{self, ByteCounter, Engines, LocalEngine, RateLimitInfo};
use authenticate::{with_validation, KeyFallback};
use request::Snapshot;

pub use background::prepare_counters;

/// What Envoy should do with the stream now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop iteration: a call is under way and its answer resumes the stream.
    Waiting,
    /// Stop iteration: the filter answered the request itself.
    Answered,
}

/// State shared by the streams (and the root context) of one worker (VM).
#[derive(Debug)]
pub struct Worker {
    pub auth: auth::WorkerState,
    /// This worker's view of the control plane's directory, when there is one.
    pub control_plane: Option<CpWorker>,
    /// Backend JWTs this worker issued or read, for reuse.
    pub backend_jwts: IssuedCache,
    /// The applications this worker counts.
    pub application_names: ApplicationNames,
    /// Blocks of node-local counters' tokens this worker holds.
    pub counter_leases: WorkerLeases,
}

impl Worker {
    pub fn new(config: &Config) -> Self {
        let control_plane = config.control_plane.as_ref().map(|_| {
            CpWorker::new(
                config.auth.key_manager_names(),
                Rc::clone(&config.routes),
                config.directory.blocking().to_vec(),
            )
        });
        Worker {
            auth: auth::WorkerState::new(&config.auth),
            control_plane,
            backend_jwts: IssuedCache::default(),
            application_names: ApplicationNames::default(),
            counter_leases: WorkerLeases::default(),
        }
    }
}

/// What the stream waits for.
enum Resume {
    Auth(validation::Resume),
    /// Boxed: an evaluation in progress is much larger than the other waits.
    Throttle(Box<(throttle::Resume, Option<Authorized>)>),
    /// A control-plane lookup, for the identity it authorizes.
    Lookup(Box<(lookup::Resume, lookup::Need, Identity)>),
    /// A control-plane lookup of policies, before throttling the authorized request.
    PolicyLookup(Box<(lookup::Resume, lookup::Need, Option<Authorized>)>),
}

/// The one pending call.
struct Pending {
    token: u32,
    resume: Resume,
}

/// The per-request state.
pub struct Stream {
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
    /// The APIs this request is routed among (a worker's table changes with the control plane's
    /// generation; a request keeps the one it started with).
    routes: Rc<Table>,
    request: Snapshot,
    /// Where the request goes upstream, once routing forwarded it.
    route: Option<Forward>,
    /// The API (and resource) the request matched, forwarded or refused: what it is counted and
    /// logged under.
    matched: Option<Matched>,
    pending: Option<Pending>,
    /// A call started during the current callback, for the glue to route its answer here.
    started_call: Option<u32>,
    /// Background calls started during the current callback, for the glue to route their answers
    /// to the root context.
    background_calls: Vec<(u32, background::Job)>,
    /// The worker's JWKS fetch this stream began to wait for during the current callback, for
    /// the glue to resume it when the fetch answers.
    awaited_fetch: Option<u32>,
    /// The filter answered this request itself: its response is not classified again.
    answered_locally: bool,
    /// Byte budgets (bandwidth policies) to charge body bytes to.
    byte_counters: Vec<ByteCounter>,
    /// Throttling has run for this request.
    throttled: bool,
    /// Body bytes that passed before throttling ran (while authentication waited on a call).
    uncharged_bytes: u64,
    /// The most restrictive counted level, for the RateLimit headers.
    rate_limit: Option<RateLimitInfo>,
    /// Access-log fields not yet handed to Envoy.
    record: Record,
    /// The matched API is counted (per-API stats on, and an API matched).
    api_stats: bool,
    /// The authorized application (with application stats: its name is counted).
    application: Option<Rc<Application>>,
    /// A WebSocket connection whose frames are counted, once its handshake is forwarded.
    frames: Option<Box<frames::Frames>>,
    /// A response whose server-sent events are counted, once its request is forwarded.
    events: Option<Box<events::Events>>,
    /// When the request's credential expires (a WebSocket connection ends then).
    credential_expires_at: Option<u64>,
    /// The connection was ended (its credential expired): the client's bytes go nowhere.
    connection_ended: bool,
    /// The backend accepted the WebSocket upgrade (101): the stream is a connection.
    upgraded: bool,
    /// The client sent body bytes before any 101 (Envoy also calls with none).
    bytes_before_upgrade: bool,
    /// An API key offered beside the bearer token, tried if the token is refused.
    key_fallback: KeyFallback,
    /// A WebSocket connection's caller, with a control plane (the connection ends once blocked).
    connection_caller: Option<Box<expiry::ConnectionCaller>>,
    /// A WebSocket handshake's JWT's revocation names, with a control plane (the connection ends
    /// once they are revoked).
    revocation_names: Vec<String>,
}

/// The counting engines of a configuration: this Envoy's shared data (through the worker's
/// leases when given), and the rate-limit service when one is configured. (Rebuilt per use.)
pub(crate) fn engines<'a>(config: &'a Config, leases: Option<&'a mut WorkerLeases>) -> Engines<'a> {
    let settings = &config.throttle.settings;
    let slots = Settings { slots: settings.counter_slots, retries: settings.cas_retries, seed: settings.slot_seed };
    Engines {
        local: LocalEngine { settings: slots, leasing: settings.worker_leasing, leases },
        cluster: config.throttle.rate_limit_service.as_ref().map(|service| ClusterEngine { service, leases: slots }),
        refills: Vec::new(),
    }
}

/// Runs `work` with the worker's counting engines (a stream's messages: WebSocket frames,
/// server-sent events), answering what it answered and the lease refills it asked for, for the
/// stream to start ([`Stream::start_refills`]).
fn with_worker_engines<H: Host, T>(
    config: &Config,
    worker: &RefCell<Worker>,
    host: &mut H,
    work: impl FnOnce(&mut Engines<'_>, &mut H) -> T,
) -> (T, Vec<Refill>) {
    let mut worker = worker.borrow_mut();
    let mut engine = engines(config, Some(&mut worker.counter_leases));
    let answer = work(&mut engine, host);
    (answer, engine.refills)
}

impl Stream {
    pub fn new(config: Rc<Config>, worker: Rc<RefCell<Worker>>) -> Self {
        Stream {
            routes: Rc::clone(&config.routes),
            config,
            worker,
            request: Snapshot::default(),
            route: None,
            matched: None,
            pending: None,
            started_call: None,
            background_calls: Vec::new(),
            awaited_fetch: None,
            answered_locally: false,
            byte_counters: Vec::new(),
            throttled: false,
            uncharged_bytes: 0,
            rate_limit: None,
            record: Record::default(),
            api_stats: false,
            application: None,
            frames: None,
            events: None,
            credential_expires_at: None,
            connection_ended: false,
            upgraded: false,
            bytes_before_upgrade: false,
            key_fallback: KeyFallback::None,
            connection_caller: None,
            revocation_names: Vec::new(),
        }
    }

    /// The token of a call started during the last callback (taken once).
    pub fn take_started_call(&mut self) -> Option<u32> {
        self.started_call.take()
    }

    /// The background calls started during the last callback (taken once).
    pub fn take_background_calls(&mut self) -> Vec<(u32, background::Job)> {
        std::mem::take(&mut self.background_calls)
    }

    /// The worker's fetch this stream began to wait for in the last callback (taken once).
    pub fn take_awaited_fetch(&mut self) -> Option<u32> {
        self.awaited_fetch.take()
    }

    /// The token of the call whose answer this stream waits for, when the call is its own (not
    /// a worker's fetch it waits on): its answer has effects beyond the request (a count, a
    /// cache entry, a lookup for every worker), which [`Stream::on_abandoned_answer`] applies
    /// once the request is gone.
    pub fn own_pending_call(&self) -> Option<u32> {
        self.pending
            .as_ref()
            .filter(|pending| {
                !matches!(
                    &pending.resume,
                    Resume::Auth(
                        validation::Resume::Jwks { .. } | validation::Resume::Introspection { joined: Some(_), .. }
                    )
                )
            })
            .map(|pending| pending.token)
    }

    /// Starts the blocks of tokens throttling asked for without waiting; the answers go to the
    /// root context (see [`background`]).
    fn start_refills(&mut self, host: &mut impl Host, config: &Config, refills: Vec<Refill>, now: u64) {
        for refill in refills {
            match host.call(&refill.call) {
                Ok(token) => self.background_calls.push((token, background::Job::Refill(Box::new(refill)))),
                Err(error) => {
                    if let Some(cluster) = engines(config, None).cluster {
                        cluster.refilled(host, &refill, &Answer::Failed { code: error.0 }, now);
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Request phase.
    // -----------------------------------------------------------------------------------------

    pub fn on_request_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Flow {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        let config = Rc::clone(&self.config);
        self.request = Snapshot::take(host, &config, end_of_stream);
        let view = self.request.view();
        if let Some(jwks) = config.backend_jwt.as_ref().and_then(|jwt| jwt.jwks_answer(view.method, view.path)) {
            self.answered_locally = true;
            host.send_response(200, &[("content-type".into(), "application/json".into())], jwks.as_bytes(), None);
            return Flow::Answered;
        }
        self.routes = self.current_routes(host);
        let routes = Rc::clone(&self.routes);
        let verdict = routing::decide(config.router(&routes, self.control_plane_apis_pending()), &self.request.view());
        match verdict {
            Verdict::PassThrough => Flow::Continue,
            Verdict::Preflight { methods } => {
                let headers = match &config.errors.cors {
                    Some(cors) => {
                        let preflight =
                            render::Preflight { methods: &methods, request_headers: self.request.preflight_headers() };
                        render::cors_headers(cors, self.request.origin.as_deref(), Some(preflight), None)
                    }
                    None => Vec::new(),
                };
                self.answered_locally = true;
                host.send_response(200, &headers, b"", None);
                Flow::Answered
            }
            Verdict::Deny { fault, matched } => {
                if let Some(matched) = matched {
                    self.matched(matched);
                }
                self.deny(host, &fault)
            }
            Verdict::Forward(forward) => {
                let open = forward.open;
                self.matched(forward.matched());
                self.route = Some(forward);
                if open {
                    self.throttle(host, None)
                } else {
                    self.authenticate(host)
                }
            }
        }
    }

    /// Notes the API the request matched: its counters and its access-log fields are due.
    fn matched(&mut self, matched: Matched) {
        if matched_of(&self.routes, matched).is_some() {
            self.api_stats = self.config.observability.api_stats;
            if self.config.observability.access_log_fields {
                self.record.route();
            }
        }
        self.matched = Some(matched);
    }

    fn forward(&mut self, host: &mut impl Host, authorized: Option<&Authorized>, over_quota: bool) -> Flow {
        let config = Rc::clone(&self.config);
        let Some(route) = self.route.clone() else {
            return self.internal_error(host, "forwarded without a route");
        };
        let cluster = match request::endpoint(&route, authorized) {
            Some(Ok(cluster)) => cluster,
            Some(Err(fault)) => return self.deny(host, &fault),
            None => return self.internal_error(host, "a secured resource forwarded without a credential"),
        };
        let routes = Rc::clone(&self.routes);
        let api = routes.api(route.api);
        let backend_jwt = match (&config.backend_jwt, api, authorized) {
            (Some(settings), Some(api), Some(authorized)) => {
                let Ok(now) = host.now() else {
                    return self.deny(host, &Fault::new(FaultId::AuthGeneralError));
                };
                let worker = Rc::clone(&self.worker);
                let mut worker = worker.borrow_mut();
                match settings.jwt_for(host, &mut worker.backend_jwts, api, authorized, now) {
                    Ok((jwt, issued)) => {
                        if issued {
                            host.count("apim.backend_jwt.issued");
                        }
                        Some((settings.header.as_str(), jwt))
                    }
                    Err(crate::backend_jwt::SigningFailed) => {
                        drop(worker);
                        return self.internal_error(host, "the backend JWT could not be signed");
                    }
                }
            }
            _ => None,
        };
        let target = request::Target { api, route: &route, cluster };
        request::apply_forward(host, &config, &self.request, &target, authorized, over_quota);
        if let Some((header, jwt)) = backend_jwt {
            host.set_request_header(header, Some(jwt.as_bytes()));
        }
        if let (true, Some(api)) = (self.api_stats, api) {
            host.count(&api.stats_allowed);
        }
        self.count_application(host, "allowed");
        self.emit_record(host);
        Flow::Continue
    }

    /// A refusal (a request's, or a message's on a stream: a WebSocket frame, a server-sent event,
    /// a connection whose credential expired), counted per code, per API and level, and per
    /// application.
    fn count_refused(&mut self, host: &mut impl Host, fault: &Fault) {
        host.count(&format!("apim.fault.{}", fault.code));
        if let (true, Some(api)) = (self.api_stats, self.matched.and_then(|matched| self.routes.api(matched.api))) {
            host.count(&observe::refused_stat(&api.stats_prefix, fault));
        }
        self.count_application(host, "refused");
    }

    /// Counts the authorized application's outcome (bounded names).
    fn count_application(&mut self, host: &mut impl Host, outcome: &str) {
        let Some(application) = &self.application else { return };
        let limit = self.config.observability.application_stats;
        let mut worker = self.worker.borrow_mut();
        if let Some(stat) = worker.application_names.stat(limit, application, outcome) {
            host.count(stat);
        }
    }

    /// Hands the access-log fields gathered since the last hand-over to Envoy's filter state: as
    /// properties, one each; as one `Struct`, appended to the message handed over before (a
    /// protobuf message followed by another is their merge, a later field replacing an earlier
    /// one) and the whole message set again.
    fn emit_record(&mut self, host: &mut impl Host) {
        if !self.record.route && self.record.fields.is_empty() {
            return;
        }
        let routes = Rc::clone(&self.routes);
        let matched = self.matched.and_then(|matched| matched_of(&routes, matched));
        let matched = if std::mem::take(&mut self.record.route) { matched } else { None };
        // What the client sent, without an API key or OAuth2 token in the query: a field for logs
        // is never a credential, whichever API the request was for and whatever `credentials.strip`
        // says.
        let path = request::without_query_credentials(
            self.request.view().path,
            &self.config.auth.credentials.api_key_query_param,
        );
        let path = path.as_ref();
        let fields = std::mem::take(&mut self.record.fields);
        match self.config.observability.access_log_encoding {
            AccessLogEncoding::Properties => {
                if let Some((api, resource)) = matched {
                    observe::route_fields(api, resource, path, |name, value| {
                        host.set_property(name, value.as_bytes());
                    });
                }
                for (name, value) in fields {
                    host.set_property(name, value.as_bytes());
                }
            }
            AccessLogEncoding::Struct => {
                let mut all = Vec::with_capacity(fields.len() + 6);
                if let Some((api, resource)) = matched {
                    observe::route_fields(api, resource, path, |name, value| all.push((name, value)));
                }
                all.extend(fields.iter().map(|(name, value)| (*name, value.as_str())));
                observe::encode_struct(all, &mut self.record.encoded);
                host.set_property(observe::STRUCT_PROPERTY, &self.record.encoded);
            }
        }
    }

    /// Starts a call and leaves the stream waiting for it; a call that cannot be made resumes at
    /// once with a failed answer (the stage decides what that means). A JWKS fetch is the
    /// worker's: the stream waits for it, joining the one under way if there is one. An
    /// introspection another request of this worker made for the same token is waited for too.
    fn call(&mut self, host: &mut impl Host, call: Call, resume: Resume) -> Flow {
        if let Resume::Auth(validation::Resume::Jwks { key_manager, token, fetch }) = resume {
            return self.await_fetch(host, call, key_manager, token, fetch);
        }
        if let Resume::Auth(validation::Resume::Introspection { joined: Some(token), .. }) = &resume {
            let token = *token;
            self.awaited_fetch = Some(token);
            self.pending = Some(Pending { token, resume });
            return Flow::Waiting;
        }
        match host.call(&call) {
            Ok(token) => {
                if let Resume::Auth(validation::Resume::Introspection { hash, joined: None, .. }) = &resume {
                    let now = host.now().unwrap_or(0);
                    self.worker.borrow_mut().auth.introspecting.started(*hash, token, now);
                }
                self.started_call = Some(token);
                self.pending = Some(Pending { token, resume });
                Flow::Waiting
            }
            Err(error) => self.resume(host, resume, &Answer::Failed { code: error.0 }),
        }
    }

    /// Waits for the worker's JWKS fetch: the one under way (`fetch`), or one this request
    /// starts for the worker (its answer is the worker's, whatever becomes of this request).
    fn await_fetch(
        &mut self,
        host: &mut impl Host,
        call: Call,
        key_manager: crate::vocab::KmId,
        token: String,
        fetch: Option<u32>,
    ) -> Flow {
        let fetch = match fetch {
            Some(under_way) => under_way,
            None => match host.call(&call) {
                Ok(started) => {
                    let now = host.now().unwrap_or(0);
                    if let Some(fetched) = self.worker.borrow_mut().auth.jwks.get_mut(key_manager.index()) {
                        fetched.started(started, now);
                    }
                    let job = background::Job::Jwks { key_manager, fetch: started };
                    self.background_calls.push((started, job));
                    started
                }
                Err(error) => {
                    // A failed fetch, as the tick's that cannot be made: the last good keys stay.
                    host.count("apim.jwks.fetch_failed");
                    let resume = Resume::Auth(validation::Resume::Jwks { key_manager, token, fetch: None });
                    return self.resume(host, resume, &Answer::Failed { code: error.0 });
                }
            },
        };
        self.awaited_fetch = Some(fetch);
        let resume = Resume::Auth(validation::Resume::Jwks { key_manager, token, fetch: Some(fetch) });
        self.pending = Some(Pending { token: fetch, resume });
        Flow::Waiting
    }

    /// Envoy deleted the request while its own call is under way ([`Self::own_pending_call`]):
    /// what is kept until the answer comes is what the answer needs ([`Self::on_abandoned_answer`]),
    /// not the request (its headers could be Envoy's limit, 60 KiB by default, and a client that
    /// opens and resets streams, each waiting for an introspection, made the worker hold every
    /// one until its call's timeout).
    pub fn abandon(&mut self) {
        self.request = Snapshot::default();
        self.record = Record::default();
        self.byte_counters = Vec::new();
    }

    /// The bytes of the request this stream holds (what tests measure).
    #[cfg(test)]
    pub fn request_bytes_held(&self) -> usize {
        self.request.bytes_held() + self.record.fields.iter().map(|(_, value)| value.len()).sum::<usize>()
    }

    /// The answer to the call of this stream's request after the request went away (its client
    /// hung up): only what the answer means beyond the request is applied (the tokens of a
    /// block the rate-limit service counted go to the lease, and the request's own are given
    /// back; an introspection answer is cached; a lookup is stored), nothing is sent.
    pub fn on_abandoned_answer(&mut self, host: &mut impl Host, token: u32, answer: &Answer) {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        let Some(pending) = self.pending.take_if(|pending| pending.token == token) else { return };
        self.call_answered(&pending);
        // Without a clock nothing is settled (and nothing may be refused: there is no request).
        let Ok(now) = host.now() else { return };
        match pending.resume {
            Resume::Auth(resume) => {
                let _ = with_validation(&self.config, &self.worker, host, now, |context| {
                    validation::resume(context, resume, answer)
                });
            }
            // The answer is stored; what else the request needed is not asked for (nothing would
            // make that call, and it would spend a call of the lookup budget live requests share).
            Resume::Lookup(waiting) => {
                let (resume, _, _) = *waiting;
                let _ =
                    self.with_lookup(host, |context| lookup::resume(context, &lookup::Need::default(), resume, answer));
            }
            Resume::PolicyLookup(waiting) => {
                let (resume, _, _) = *waiting;
                let _ =
                    self.with_lookup(host, |context| lookup::resume(context, &lookup::Need::default(), resume, answer));
            }
            Resume::Throttle(waiting) => {
                let (resume, _) = *waiting;
                let _ = self.with_throttle(host, |context| throttle::abandon(context, resume, answer));
            }
        }
    }

    /// An introspection's call answered: the worker's requests for that token no longer wait for
    /// it, whatever becomes of its answer (forgotten only once read, a call whose answer went
    /// unread stayed noted, and the next requests with the token waited for it forever).
    fn call_answered(&self, pending: &Pending) {
        if let Resume::Auth(validation::Resume::Introspection { hash, .. }) = &pending.resume {
            self.worker.borrow_mut().auth.introspecting.answered(hash, pending.token);
        }
    }

    /// The answer to a call this stream made.
    pub fn on_call_response(&mut self, host: &mut impl Host, token: u32, answer: Answer) {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        let Some(pending) = self.pending.take_if(|pending| pending.token == token) else { return };
        self.call_answered(&pending);
        if self.resume(host, pending.resume, &answer) == Flow::Continue {
            host.resume_request();
        }
    }

    fn resume(&mut self, host: &mut impl Host, resume: Resume, answer: &Answer) -> Flow {
        match resume {
            Resume::Auth(resume) => self.with_validation(host, |context| validation::resume(context, resume, answer)),
            Resume::Lookup(waiting) => {
                let (resume, need, identity) = *waiting;
                self.lookup_answered(host, resume, need, identity, answer)
            }
            Resume::PolicyLookup(waiting) => {
                let (resume, need, authorized) = *waiting;
                let step = self.with_lookup(host, |context| lookup::resume(context, &need, resume, answer));
                self.after_policy_lookup(host, step, need, authorized)
            }
            Resume::Throttle(waiting) => {
                let (resume, authorized) = *waiting;
                match self.with_throttle(host, |context| throttle::resume(context, resume, answer)) {
                    Ok((step, now)) => self.after_throttle(host, step, authorized, now),
                    Err(flow) => flow,
                }
            }
        }
    }

    pub fn on_request_body(&mut self, host: &mut impl Host, body_size: usize, end_of_stream: bool) -> Flow {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        self.request.body_started = true;
        self.bytes_before_upgrade |= !self.upgraded && body_size > 0;
        if self.route.is_some() && self.end_if_expired(host, body_size) {
            return Flow::Continue;
        }
        self.charge(host, body_size as u64);
        if self.frames.is_some() {
            self.count_frames(host, crate::host::Direction::Request, body_size);
        }
        if end_of_stream {
            self.request.complete = true;
        }
        if self.pending.is_some() {
            return Flow::Waiting;
        }
        Flow::Continue
    }

    pub fn on_request_trailers(&mut self, host: &mut impl Host) -> Flow {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        request::clean_trailers(host, &self.config);
        self.request.complete = true;
        if self.pending.is_some() {
            return Flow::Waiting;
        }
        Flow::Continue
    }

    // -----------------------------------------------------------------------------------------
    // Helpers.
    // -----------------------------------------------------------------------------------------

    /// The clock, or the given fault: nothing time-dependent is decided without it.
    fn clock(&mut self, host: &mut impl Host, fault: FaultId) -> Result<u64, Flow> {
        match host.now() {
            Ok(now) => Ok(now),
            Err(error) => {
                log::error!("the host clock cannot be read ({error:?}): refusing the request");
                Err(self.deny(host, &Fault::new(fault)))
            }
        }
    }

    /// An internal invariant broke: an internal fault and a log line, never a credential fault.
    fn internal_error(&mut self, host: &mut impl Host, what: &str) -> Flow {
        log::error!("internal error: {what}");
        self.deny(host, &Fault::new(FaultId::AuthGeneralError))
    }

    /// Refuses the request before it went anywhere. It goes nowhere, but Envoy's access log prints
    /// its `:path` (Envoy's default format does): an API key or OAuth2 token in the query is taken
    /// out of it first.
    fn deny(&mut self, host: &mut impl Host, fault: &Fault) -> Flow {
        let path = self.request.view().path;
        let stripped = request::without_query_credentials(path, &self.config.auth.credentials.api_key_query_param);
        if stripped.len() != path.len() {
            host.set_request_header(":path", Some(stripped.as_bytes()));
        }
        self.reply(host, fault)
    }

    /// Answers with a fault: before the request went upstream (through [`Stream::deny`]), or in
    /// place of Envoy's reply for a failed upstream (the request's headers are what was sent).
    pub(super) fn reply(&mut self, host: &mut impl Host, fault: &Fault) -> Flow {
        let (errors, origin) = (&self.config.errors, self.request.origin.as_deref());
        let rendered = render::render_at(fault, errors, origin, self.resource_cors_methods());
        let mut headers = rendered.headers;
        headers.extend(self.rate_limit_headers(host));
        self.answered_locally = true;
        // The answer is the filter's: no backend's frames or events are counted in it.
        self.frames = None;
        self.events = None;
        self.count_refused(host, fault);
        if self.config.observability.access_log_fields {
            self.record.fault(fault);
            self.emit_record(host);
        }
        host.send_response(rendered.status, &headers, rendered.body.as_bytes(), rendered.grpc_status);
        Flow::Answered
    }
}

/// The API and resource of a route.
fn route_of<'t>(routes: &'t Table, route: &Forward) -> Option<(&'t routing::Api, &'t routing::Resource)> {
    let api = routes.api(route.api)?;
    Some((api, api.resource(route.resource)?))
}

/// The API and, when one matched, the resource a request matched; `None` when either is not in
/// the table.
pub(super) fn matched_of(routes: &Table, matched: Matched) -> Option<(&routing::Api, Option<&routing::Resource>)> {
    let api = routes.api(matched.api)?;
    match matched.resource {
        Some(resource) => Some((api, Some(api.resource(resource)?))),
        None => Some((api, None)),
    }
}
