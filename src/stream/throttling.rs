//! The stream's throttling step: who is calling and what the request holds, as throttling and
//! condition groups read them; the counting engines' steps, and what their outcome does.

use std::rc::Rc;

use super::authenticate::KeyFallback;
use super::{engines, request, route_of, Flow, Resume, Stream, Worker};
use crate::auth::authorize::Authorized;
use crate::auth::jwt;
use crate::catalogue::FaultId;
use crate::conditions::RequestFacts;
use crate::directory::control_plane::lookup::{self, LookupStep, Need};
use crate::directory::Layered;
use crate::host::{Host, Step};
use crate::routing::{Api, Resource};
use crate::throttle::{self, plan, Caller, Outcome, ThrottleStep};

impl Stream {
    /// Throttling comes after authentication, as in WSO2's handler chain.
    pub(super) fn throttle(&mut self, host: &mut impl Host, authorized: Option<Authorized>) -> Flow {
        let config = Rc::clone(&self.config);
        if !config.throttles() {
            return self.forward(host, authorized.as_ref(), false);
        }
        let routes = Rc::clone(&self.routes);
        let Some((api, resource)) = self.route.as_ref().and_then(|route| route_of(&routes, route)) else {
            return self.internal_error(host, "matched route out of range");
        };
        // A policy no full load brought (a tier created since) is asked of the control plane
        // first, as WSO2's gateway fetches a policy it does not hold.
        let need = self.policies_to_look_up(host, api, resource, authorized.as_ref());
        if need.policies.is_empty() {
            return self.throttle_now(host, authorized);
        }
        let step = self.with_lookup(host, |context| lookup::start(context, &need));
        self.after_policy_lookup(host, step, need, authorized)
    }

    /// The policies a control plane is asked for: those the request is subject to that neither
    /// the configuration nor the control plane's directory defines. None for a request a
    /// blocking condition refuses: 900805 comes before any policy (`throttle::start`), and is
    /// answered whatever the control plane's state, without spending a lookup.
    fn policies_to_look_up(
        &self,
        host: &impl Host,
        api: &Api,
        resource: &Resource,
        authorized: Option<&Authorized>,
    ) -> Need {
        let Some(_) = &self.config.control_plane else { return Need::default() };
        let worker = self.worker.borrow();
        let directory = Layered { fixed: self.config.directory.as_ref(), control_plane: worker.control_plane.as_ref() };
        let missing = plan::missing_policies(&directory, api, resource, &caller(authorized, None));
        if missing.is_empty() {
            return Need::default();
        }
        let client_ip = if self.config.uses_client_ip() { request::client_ip(host) } else { None };
        if plan::blocked(&directory, api, &caller(authorized, client_ip), &self.config.throttle.tenant) {
            return Need::default();
        }
        Need {
            policies: missing.into_iter().map(|(level, name)| (level, name.to_string())).collect(),
            ..Need::default()
        }
    }

    /// After a step of a policy lookup: throttling once every policy is known or known to be
    /// missing (900809), the next call, or the lookup's refusal.
    pub(super) fn after_policy_lookup(
        &mut self,
        host: &mut impl Host,
        step: LookupStep,
        need: Need,
        authorized: Option<Authorized>,
    ) -> Flow {
        match step {
            Step::Done(()) => self.throttle_now(host, authorized),
            Step::Call(call, resume) => {
                self.call(host, call, Resume::PolicyLookup(Box::new((resume, need, authorized))))
            }
            Step::Refused(fault) => {
                host.count("apim.control_plane.lookup_failed");
                self.deny(host, &fault)
            }
        }
    }

    /// Throttling with the policies the directory knows.
    fn throttle_now(&mut self, host: &mut impl Host, authorized: Option<Authorized>) -> Flow {
        let config = Rc::clone(&self.config);
        let routes = Rc::clone(&self.routes);
        let Some((api, resource)) = self.route.as_ref().and_then(|route| route_of(&routes, route)) else {
            return self.internal_error(host, "matched route out of range");
        };
        let client_ip = if config.uses_client_ip() { request::client_ip(host) } else { None };
        let now = match self.clock(host, FaultId::ThrottleInternalError) {
            Ok(now) => now,
            Err(flow) => return flow,
        };
        // Condition groups read the request's headers, query and credential: the snapshot is
        // lent to them while throttling runs, and given back before anything answers.
        let snapshot = std::mem::take(&mut self.request);
        let settings = &config.auth.credentials;
        // The caller JWT's claims and, with a backend JWT, the claims it carries over them: WSO2
        // reads a claim condition from the JWT its gateway generates (`http://wso2.org/claims/
        // applicationname`, ...).
        let bearer_refused = matches!(self.key_fallback, KeyFallback::Taken);
        let read_claims = || {
            let credential = snapshot.presented_credential(settings, api, resource, bearer_refused);
            let caller = credential
                .and_then(|credential| jwt::parse(&credential, settings.max_token_bytes).ok().map(|jwt| jwt.payload));
            let mut claims = caller.unwrap_or_default();
            if let (Some(backend_jwt), Some(authorized)) = (&config.backend_jwt, authorized.as_ref()) {
                claims.extend(backend_jwt.identity_claims(api, authorized));
            }
            (!claims.is_empty()).then_some(claims)
        };
        let read_claims: &dyn Fn() -> Option<serde_json::Map<String, serde_json::Value>> = &read_claims;
        let facts = RequestFacts::new(snapshot.headers(), snapshot.query(), authorized.as_ref().map(|_| read_claims));
        let who = Caller { request: Some(&facts), ..caller(authorized.as_ref(), client_ip) };
        if snapshot.is_websocket_upgrade() && config.control_plane.is_some() {
            let application = authorized.as_ref().map(|authorized| Rc::clone(&authorized.application));
            let end_user = authorized.as_ref().and_then(|authorized| authorized.end_user.clone());
            let subscription =
                authorized.as_ref().and_then(|authorized| self.control_plane_subscription(api, authorized));
            self.connection_caller = Some(Box::new(super::expiry::ConnectionCaller {
                application,
                end_user,
                client_ip,
                subscription,
                missing_since: 0,
                subscription_named: authorized.as_ref().is_some_and(|authorized| authorized.by_jwt_api_key()),
            }));
        }
        let websocket = api.counts_websocket_frames && snapshot.is_websocket_upgrade();
        // A WebSocket upgrade to a server-sent-events API carries no events: it counts as a request.
        let events = api.counts_server_sent_events && !snapshot.is_websocket_upgrade();
        if websocket || events {
            // The handshake is checked, not counted: its messages are.
            let planned = self.throttle_at(host, now, |context| {
                throttle::frames::plan_frames(context.throttle, context.directory, api, resource, &who, websocket)
            });
            drop(facts);
            self.request = snapshot;
            self.throttled = true;
            return match planned {
                Ok(counters) => {
                    let early = std::mem::take(&mut self.uncharged_bytes);
                    if websocket {
                        self.count_frames_from_now(counters, early);
                    } else {
                        if let Some(fault) = self.events_refused_now(host, &counters, now) {
                            return self.deny(host, &fault);
                        }
                        // The events are read in the answer: the backend is not asked to compress
                        // it (gzip's bytes read as lines would count nothing an event is).
                        host.set_request_header("accept-encoding", None);
                        self.count_events_from_now(counters);
                    }
                    self.charge(host, early);
                    self.forward(host, authorized.as_ref(), false)
                }
                Err(fault) => self.deny(host, &fault),
            };
        }
        let step = self.throttle_at(host, now, |context| throttle::start(context, api, resource, &who));
        drop(facts);
        self.request = snapshot;
        self.after_throttle(host, step, authorized, now)
    }

    /// Runs a step of throttling with the counting engines, the directory and the clock, and
    /// starts the lease refills it asked for; the step and the time it ran at, or the refusal
    /// when the clock cannot be read.
    pub(super) fn with_throttle<T>(
        &mut self,
        host: &mut impl Host,
        work: impl FnOnce(&mut throttle::Context<'_>) -> T,
    ) -> Result<(T, u64), Flow> {
        let now = self.clock(host, FaultId::ThrottleInternalError)?;
        Ok((self.throttle_at(host, now, work), now))
    }

    /// [`Stream::with_throttle`] at a time already read: it reads nothing of the request.
    fn throttle_at<T>(
        &mut self,
        host: &mut impl Host,
        now: u64,
        work: impl FnOnce(&mut throttle::Context<'_>) -> T,
    ) -> T {
        let config = Rc::clone(&self.config);
        let worker = Rc::clone(&self.worker);
        let mut worker = worker.borrow_mut();
        let Worker { control_plane, counter_leases, .. } = &mut *worker;
        let mut engine = engines(&config, Some(counter_leases));
        let directory = Layered { fixed: config.directory.as_ref(), control_plane: control_plane.as_ref() };
        let mut context = throttle::Context {
            throttle: &config.throttle,
            directory: &directory,
            engine: &mut engine,
            store: host,
            now,
        };
        let step = work(&mut context);
        let refills = std::mem::take(&mut engine.refills);
        drop(engine);
        drop(worker);
        self.start_refills(host, &config, refills, now);
        step
    }

    pub(super) fn after_throttle(
        &mut self,
        host: &mut impl Host,
        step: ThrottleStep,
        authorized: Option<Authorized>,
        now: u64,
    ) -> Flow {
        self.throttled = true;
        match step {
            Step::Done(Outcome::Allowed { over_quota, byte_counters, rate_limit, uncounted }) => {
                self.byte_counters = byte_counters;
                self.rate_limit = rate_limit;
                if let Some(why) = uncounted {
                    self.report_uncounted(host, why, now);
                }
                let early = std::mem::take(&mut self.uncharged_bytes);
                self.charge(host, early);
                self.forward(host, authorized.as_ref(), over_quota)
            }
            Step::Done(Outcome::Denied { fault, rate_limit, uncounted }) => {
                self.rate_limit = rate_limit;
                if let Some(why) = uncounted {
                    self.report_uncounted(host, why, now);
                }
                self.deny(host, &fault)
            }
            Step::Call(call, resume) => self.call(host, call, Resume::Throttle(Box::new((resume, authorized)))),
            Step::Refused(never) => match never {},
        }
    }
}

/// Who is calling, as throttling sees it.
fn caller(authorized: Option<&Authorized>, client_ip: Option<std::net::IpAddr>) -> Caller<'_> {
    Caller {
        application_id: authorized.map(|a| a.application_id()),
        application_name: authorized.map(|a| a.application_name()),
        application_policy: authorized.and_then(|a| a.application.policy()),
        tier: authorized.map(|a| a.tier()),
        key_type: authorized.map(|a| a.key_type),
        end_user: authorized.and_then(|a| a.end_user.as_deref()),
        owner: authorized.map(|a| a.subscriber()),
        client_ip,
        request: None,
    }
}
