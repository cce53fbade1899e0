//! Key validation on the request path: which credential the request offers, validating it,
//! authorizing it against the directory, and WSO2's authenticator chain, where a refused bearer
//! token gives way to an API key the same request offers.

use std::cell::RefCell;
use std::rc::Rc;

use super::{expiry, request, route_of, Flow, Resume, Stream, Worker};
use crate::auth::authorize::{authorize, RequestOrigin};
use crate::auth::credentials::{self, Presented};
use crate::auth::validation::{self, AuthStep};
use crate::auth::{failure_fault, Identity, Refusal};
use crate::catalogue::FaultId;
use crate::config::Config;
use crate::directory::Layered;
use crate::host::{Host, Step};

/// The API key behind a request's bearer token, for WSO2's authenticator chain.
#[derive(Debug, Default)]
pub(super) enum KeyFallback {
    /// The request offers no API key beside its bearer token (or the resource takes none).
    #[default]
    None,
    /// An API key to try if the bearer token is refused (a [`Presented`], whose `Debug` never
    /// prints it).
    Offered(Presented),
    /// The bearer token was refused and the API key is the credential now.
    Taken,
}

impl Stream {
    pub(super) fn authenticate(&mut self, host: &mut impl Host) -> Flow {
        let config = Rc::clone(&self.config);
        let routes = Rc::clone(&self.routes);
        let Some((api, resource)) = self.route.as_ref().and_then(|route| route_of(&routes, route)) else {
            return self.internal_error(host, "matched route out of range");
        };
        let settings = &config.auth.credentials;
        let authorization = self.request.credential(&settings.authorization_header);
        let api_key = self.request.credential(&settings.api_key_header);
        let (query, handshake) = (self.request.query(), self.request.is_websocket_upgrade());
        let extracted = credentials::extract(settings, api, resource, authorization, api_key, query, handshake);
        let presented = match extracted.presented() {
            Ok(presented) => presented,
            Err(refusal) => return self.refuse(host, refusal),
        };
        // A WebSocket handshake has one authenticator: API-M's WebSocket gateway takes OAuth2 where
        // the handshake offers a token, its API key only where it offers none
        // (`InboundWebSocketProcessor.handleHandshake`), so a refused token refuses it.
        if matches!(presented, Presented::Bearer(_)) && !handshake {
            if let Some(key) = credentials::fallback_api_key(settings, api, resource, api_key, query, handshake) {
                self.key_fallback = KeyFallback::Offered(Presented::ApiKey(key));
            }
        }
        self.with_validation(host, |context| validation::start(context, presented))
    }

    /// Runs a step of key validation with this worker's state and the clock, then continues.
    pub(super) fn with_validation(
        &mut self,
        host: &mut impl Host,
        work: impl FnOnce(&mut validation::Context<'_>) -> AuthStep,
    ) -> Flow {
        let config = Rc::clone(&self.config);
        let now = match self.clock(host, FaultId::AuthGeneralError) {
            Ok(now) => now,
            Err(flow) => return flow,
        };
        let step = with_validation(&config, &self.worker, host, now, work);
        self.after_auth(host, step)
    }

    fn after_auth(&mut self, host: &mut impl Host, step: AuthStep) -> Flow {
        match step {
            Step::Done(identity) => self.look_up(host, identity),
            Step::Call(call, resume) => self.call(host, call, Resume::Auth(resume)),
            Step::Refused(refusal) => self.refuse(host, refusal),
        }
    }

    /// Authorization against the directory, once it knows what the request needs (see
    /// [`super::directory`]).
    pub(super) fn authorize(&mut self, host: &mut impl Host, identity: &Identity) -> Flow {
        let config = Rc::clone(&self.config);
        let routes = Rc::clone(&self.routes);
        let Some((api, resource)) = self.route.as_ref().and_then(|route| route_of(&routes, route)) else {
            return self.internal_error(host, "matched route out of range");
        };
        let worker = Rc::clone(&self.worker);
        let worker = worker.borrow();
        let directory = Layered { fixed: config.directory.as_ref(), control_plane: worker.control_plane.as_ref() };
        let client_ip = if identity.reads_client_ip() { request::client_ip(host) } else { None };
        let referer = if identity.reads_referer() { self.request.referer() } else { None };
        let origin = RequestOrigin { client_ip, referer };
        let decision = authorize(&directory, api, resource, identity, &origin);
        drop(worker);
        self.credential_expires_at = expiry::expiry_of(&config.auth, identity);
        match decision {
            Ok(authorized) => {
                if config.observability.access_log_fields {
                    self.record.caller(&authorized);
                }
                if config.observability.application_stats > 0 {
                    self.application = Some(Rc::clone(&authorized.application));
                }
                self.throttle(host, Some(authorized))
            }
            Err(fault) => {
                log::debug!("request to {} refused: {}", api.label, fault.id.spec().id);
                host.count(&format!("apim.auth.refused.{}", fault.id.spec().id));
                if let Some(flow) = self.fall_back(host) {
                    return flow;
                }
                self.deny(host, &fault)
            }
        }
    }

    /// Refuses a credential: the reason goes to the debug log and the counters, the fault to the
    /// client (unless an API key the request also offers is tried next).
    pub(super) fn refuse(&mut self, host: &mut impl Host, refusal: Refusal) -> Flow {
        log::debug!("credential refused: {}", refusal.reason);
        host.count(&format!("apim.auth.refused.{}", refusal.reason));
        if let Some(flow) = self.fall_back(host) {
            return flow;
        }
        let fault = failure_fault(refusal.failure, self.config.compatibility);
        self.deny(host, &fault)
    }

    /// The bearer token was refused: the API key the request also offers is validated instead,
    /// once, and its answer is the request's (WSO2 answers the last authenticator's fault).
    pub(super) fn fall_back(&mut self, host: &mut impl Host) -> Option<Flow> {
        let KeyFallback::Offered(key) = std::mem::replace(&mut self.key_fallback, KeyFallback::Taken) else {
            return None;
        };
        log::debug!("bearer token refused: trying the request's API key");
        Some(self.with_validation(host, |context| validation::start(context, key)))
    }
}

/// Runs key-validation work with this worker's state and the host's shared data.
pub(super) fn with_validation<R>(
    config: &Config,
    worker: &RefCell<Worker>,
    host: &mut impl Host,
    now: u64,
    work: impl FnOnce(&mut validation::Context<'_>) -> R,
) -> R {
    let mut worker = worker.borrow_mut();
    let mut context = validation::Context {
        auth: &config.auth,
        directory: config.directory.as_ref(),
        worker: &mut worker.auth,
        store: host,
        now,
    };
    work(&mut context)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API key kept behind a bearer token is a credential: printed for debugging (a `{:?}` of
    /// the stream's state), it shows as `***`, as every `Presented` does.
    #[test]
    fn a_kept_api_key_is_never_printed() {
        let kept = KeyFallback::Offered(Presented::ApiKey("k-SECRET-0123456789".into()));
        assert!(!format!("{kept:?}").contains("SECRET"), "{kept:?}");
    }
}
