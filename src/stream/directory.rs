//! The stream's part with a control plane: the routing table of the worker's current generation
//! (taken once per request), revoked tokens, and the lookups of what a verified credential leads
//! to that this Envoy does not know yet, before authorization.

use std::rc::Rc;

use super::{Flow, Resume, Stream};
use crate::auth::{AuthFailure, Identity};
use crate::catalogue::FaultId;
use crate::directory::control_plane::lookup::{self, LookupStep, Need};
use crate::host::{Answer, Host, Step};
use crate::routing::Table;

impl Stream {
    /// The APIs to route among: the configuration's, or with a control plane the worker's table
    /// after catching up with the shared data (one small read when nothing changed).
    /// While this configuration reads a control plane whose APIs no load has brought yet: the
    /// seconds within which a load is tried again.
    pub(super) fn control_plane_apis_pending(&self) -> Option<u64> {
        self.config.control_plane.as_ref()?;
        let loaded = self.worker.borrow().control_plane.as_ref().is_some_and(|view| view.apis_loaded());
        (!loaded).then_some(crate::directory::control_plane::refresh::RETRY_S)
    }

    pub(super) fn current_routes(&mut self, host: &mut impl Host) -> Rc<Table> {
        let config = Rc::clone(&self.config);
        let Some(control_plane) = &config.control_plane else { return Rc::clone(&config.routes) };
        let mut worker = self.worker.borrow_mut();
        let Some(view) = worker.control_plane.as_mut() else { return Rc::clone(&config.routes) };
        if let Some(loaded) = view.sync(host, control_plane, config.directory.blocking()) {
            log::info!(
                "control plane generation {}: {} APIs served, {} not served, {} policies, {} blocking conditions, {} revoked \
                 tokens",
                loaded.generation,
                loaded.apis,
                loaded.skipped_apis.len(),
                loaded.policies,
                loaded.blocking,
                loaded.revoked
            );
            for skipped in loaded.skipped_apis.iter().chain(&loaded.skipped_policies) {
                log::warn!("control plane: not applied: {skipped}");
            }
        }
        Rc::clone(&view.routes)
    }

    /// After verification: a revoked token is refused; what the credential leads to and the
    /// directory does not know yet is looked up; then authorization.
    pub(super) fn look_up(&mut self, host: &mut impl Host, identity: Identity) -> Flow {
        let config = Rc::clone(&self.config);
        if config.control_plane.is_none() {
            return self.authorize(host, &identity);
        }
        // A JWT's revocation names: its `jti` or signature, and an ECDSA signature's other form.
        let token_ids = match &identity {
            Identity::Token(token) => [token.token_id.as_deref(), token.token_twin.as_deref()],
            Identity::JwtApiKey(key) => [Some(key.token_id.as_str()), key.token_twin.as_deref()],
            Identity::ApiKey(_) => [None, None],
        };
        let revoked = self
            .worker
            .borrow()
            .control_plane
            .as_ref()
            .is_some_and(|view| token_ids.iter().flatten().any(|id| view.revoked(id)));
        if revoked {
            return self.refuse(host, AuthFailure::Invalid.because("revoked"));
        }
        if self.request.is_websocket_upgrade() {
            self.revocation_names = token_ids.iter().flatten().map(|id| (*id).to_owned()).collect();
        }
        let api =
            self.route.as_ref().and_then(|route| self.routes.api(route.api)).and_then(|api| api.source_id.clone());
        // What the configuration itself knows is not looked up.
        let need = match &identity {
            Identity::Token(token) if config.directory.client(&token.client_id, token.key_manager).is_none() => {
                Need { client: Some((token.key_manager, token.client_id.clone())), api, ..Need::default() }
            }
            Identity::JwtApiKey(key) if config.directory.application(&key.application_id).is_none() => {
                Need { application: Some(key.application_id.clone()), api, ..Need::default() }
            }
            _ => return self.authorize(host, &identity),
        };
        let step = self.with_lookup(host, |context| lookup::start(context, &need));
        self.after_lookup(host, step, need, identity)
    }

    pub(super) fn lookup_answered(
        &mut self,
        host: &mut impl Host,
        resume: lookup::Resume,
        need: Need,
        identity: Identity,
        answer: &Answer,
    ) -> Flow {
        let step = self.with_lookup(host, |context| lookup::resume(context, &need, resume, answer));
        self.after_lookup(host, step, need, identity)
    }

    pub(super) fn with_lookup(
        &mut self,
        host: &mut impl Host,
        work: impl FnOnce(&mut lookup::Context<'_>) -> LookupStep,
    ) -> LookupStep {
        let config = Rc::clone(&self.config);
        let (Some(control_plane), Ok(now)) = (&config.control_plane, host.now()) else {
            return Step::Refused(crate::catalogue::Fault::new(FaultId::AuthGeneralError));
        };
        let worker = Rc::clone(&self.worker);
        let mut worker = worker.borrow_mut();
        let Some(view) = worker.control_plane.as_mut() else { return Step::Done(()) };
        let mut context = lookup::Context { control_plane, worker: view, store: host, now };
        work(&mut context)
    }

    fn after_lookup(&mut self, host: &mut impl Host, step: LookupStep, need: Need, identity: Identity) -> Flow {
        match step {
            Step::Done(()) => self.authorize(host, &identity),
            Step::Call(call, resume) => self.call(host, call, Resume::Lookup(Box::new((resume, need, identity)))),
            Step::Refused(fault) => {
                host.count("apim.control_plane.lookup_failed");
                // The credential's authentication failed: the API key beside a bearer token is next.
                if let Some(flow) = self.fall_back(host) {
                    return flow;
                }
                self.deny(host, &fault)
            }
        }
    }
}
