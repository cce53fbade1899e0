//! A WebSocket connection ends when its credential expires or is revoked, its caller is blocked,
//! or its subscription (the control plane's) is blocked, inactive or gone, as API-M 4.x's gateway
//! re-checks a connection on each frame the client sends (`RequestProcessor` calls
//! `authenticateToken`: an expired or revoked token, or a subscription that fails validation,
//! closes the connection; `WebsocketUtil.validateDenyPolicies`: a blocking condition closes it): the first
//! data frame the client sends after its token's (or JWT API key's) `exp`, and the clock skew its
//! verifier allows, or once the control plane lists it as revoked or its caller as blocked, is
//! dropped with its chunk and the connection is reset. Control frames (close, ping, pong) pass, as
//! API-M writes them through before any check (`WebsocketInboundHandler.channelRead`); where the
//! client's framing cannot be followed (it sent bytes before the 101), any bytes end it.

use std::net::IpAddr;
use std::rc::Rc;

use super::frames::Frames;
use super::{route_of, Stream};
use crate::auth::authorize::{check_subscription_state, Authorized};
use crate::auth::bearer::Expiring;
use crate::auth::settings::AuthConfig;
use crate::auth::Identity;
use crate::catalogue::{Fault, FaultId};
use crate::directory::control_plane::store::Meta;
use crate::directory::control_plane::view::{key_of_subscription, Cached, Trust};
use crate::directory::{Application, Layered};
use crate::host::{Direction, Host};
use crate::routing::Api;
use crate::throttle::{plan, Caller};
use crate::vocab::KeyType;

/// Who an open WebSocket connection acts for, as blocking conditions read it (kept from its
/// handshake where a control plane can block it later).
#[derive(Debug)]
pub(super) struct ConnectionCaller {
    pub application: Option<Rc<Application>>,
    pub end_user: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// The key type and the subscription's key in the control plane's data, where the
    /// subscription is the control plane's (checked again per frame; the key built once).
    pub subscription: Option<(KeyType, String)>,
    /// When the full load ended after which the subscription was first found missing (0: not).
    pub missing_since: u64,
    /// A JWT API key's connection: its subscription gone does not end it (its claims name it, and
    /// its handshake passes without one); a blocked or inactive one does.
    pub subscription_named: bool,
}

impl ConnectionCaller {
    fn caller(&self) -> Caller<'_> {
        let application = self.application.as_deref();
        Caller {
            application_id: application.map(|app| &*app.id),
            application_name: application.map(Application::name),
            application_policy: None,
            tier: None,
            key_type: None,
            end_user: self.end_user.as_deref(),
            owner: application.map(Application::owner),
            client_ip: self.client_ip,
            request: None,
        }
    }
}

/// The last second a credential is accepted (Unix seconds), if it ever stops being, as a new
/// request with it is refused: a JWT (a token, a JWT API key) through its `exp` plus the clock
/// skew its verifier allows (the key manager's, or the JWT API keys'); an introspected token
/// until its `exp`, no skew (`introspection::parse` finds it expired at `exp`, and its cached
/// answer is not taken from then).
pub(super) fn expiry_of(auth: &AuthConfig, identity: &Identity) -> Option<u64> {
    let (expires_at, skew) = match identity {
        // Only a verified JWT has a `token_id` (its `jti` or signature); an introspected token none.
        Identity::Token(token) if token.token_id.is_none() => {
            let exp = token.expires_at();
            return (exp != u64::MAX).then(|| exp.saturating_sub(1));
        }
        Identity::Token(token) => {
            (token.expires_at(), auth.key_manager(token.key_manager).map_or(0, |km| km.clock_skew_s))
        }
        Identity::JwtApiKey(key) => (key.expires_at(), auth.api_key_jwt.as_ref().map_or(0, |jwt| jwt.clock_skew_s)),
        Identity::ApiKey(_) => return None,
    };
    (expires_at != u64::MAX).then(|| expires_at.saturating_add(skew))
}

impl Stream {
    /// The backend answered: a 101 opens the connection whose credential can expire.
    pub(super) fn upgrade_answered(&mut self, status: u16) {
        self.upgraded = status == 101 && self.request.is_websocket_upgrade();
        // A connection checked again per frame follows the client's frames, counted or not
        // (unless the client sent bytes before the 101: their framing is not known; then any
        // bytes after the credential lapsed end it).
        let rechecked = self.credential_expires_at.is_some()
            || self.connection_caller.is_some()
            || !self.revocation_names.is_empty();
        if self.upgraded && rechecked && self.frames.is_none() && !self.bytes_before_upgrade {
            self.frames = Some(Box::new(Frames::new(Vec::new(), "")));
        }
    }

    /// A client's bytes on an upgraded WebSocket connection (`size` of them in this chunk): past its
    /// credential's expiry, or once the control plane lists its JWT as revoked, blocks its caller or
    /// refuses its subscription, they are dropped and the connection ends (where its frames are
    /// followed, at the first data frame: `Stream::count_frames`). Answers whether it ended. Only once the backend accepted the upgrade
    /// (101) is there a connection: before, and after any other answer, the client's bytes are a
    /// request's body, never cut for its credential.
    pub(super) fn end_if_expired(&mut self, host: &mut impl Host, size: usize) -> bool {
        let rechecked = self.credential_expires_at.is_some() || self.connection_caller.is_some();
        if !self.upgraded || (!rechecked && self.revocation_names.is_empty()) {
            return false;
        }
        if self.connection_ended {
            host.replace_body_chunk(Direction::Request, size, &[]);
            return true;
        }
        // Without a clock nothing is decided: the bytes pass (the next chunk asks again).
        let now = host.now().ok();
        let expired = self.credential_expires_at.is_some_and(|at| now.is_some_and(|now| now > at));
        if !expired && (!self.revocation_names.is_empty() || self.connection_caller.is_some()) {
            // The worker's control-plane data catches up with the shared data, once a chunk.
            self.current_routes(host);
        }
        let fault = if expired {
            FaultId::AccessTokenExpired
        } else if self.revoked_since() {
            FaultId::InvalidCredentials
        } else if self.blocked_since() {
            FaultId::Blocked
        } else if let Some(fault) = self.subscription_lapsed(host, now) {
            fault
        } else {
            return false;
        };
        // API-M re-checks the client's data frames only (`WebsocketInboundHandler.channelRead`
        // writes a close, ping or pong frame through unchecked): where the client's frames are
        // followed, the chunk's first data frame ends the connection (`Stream::count_frames`).
        if let Some(frames) = self.frames.as_deref_mut() {
            frames.lapsed = Some(fault);
            return false;
        }
        self.end_connection(host, size, fault);
        true
    }

    /// Ends the connection for `fault`: the client's chunk (`size` bytes) is dropped, the stream
    /// reset, and the fault counted.
    pub(super) fn end_connection(&mut self, host: &mut impl Host, size: usize, fault: FaultId) {
        self.connection_ended = true;
        host.replace_body_chunk(Direction::Request, size, &[]);
        host.close_stream();
        self.count_refused(host, &Fault::new(fault));
        log::debug!(
            "a WebSocket connection's credential expired or was revoked, its caller blocked or its subscription lapsed: the connection ends"
        );
    }

    /// The connection's JWT is revoked now (API-M checks its revoked JWTs on each frame the client
    /// sends, `JWTValidator.authenticateForWebSocket`), as the worker's control-plane data says.
    fn revoked_since(&self) -> bool {
        if self.revocation_names.is_empty() {
            return false;
        }
        let worker = self.worker.borrow();
        let view = worker.control_plane.as_ref();
        view.is_some_and(|view| self.revocation_names.iter().any(|name| view.revoked(name)))
    }

    /// The key type and subscription key of a handshake whose subscription is the control plane's
    /// (not the configuration's, which cannot change under a stream): its frames check it again.
    pub(super) fn control_plane_subscription(&self, api: &Api, authorized: &Authorized) -> Option<(KeyType, String)> {
        let application = authorized.application_id();
        let worker = self.worker.borrow();
        let view = worker.control_plane.as_ref()?;
        if self.config.directory.subscription(application, api).is_some()
            || view.subscription(application, api).is_none()
        {
            return None;
        }
        Some((authorized.key_type, key_of_subscription(application, api.source_id.as_deref()?)))
    }

    /// The connection's subscription, the control plane's, refuses it now: API-M validates the
    /// subscription again on each client frame (`JWTValidator.authenticateForWebSocket` →
    /// `validateSubscriptionsForWS`; an opaque token's `getAPIKeyData`), from its in-memory
    /// store, and closes the connection (4001) when it is BLOCKED (PROD_ONLY_BLOCKED for a
    /// production key), inactive, or gone with its application. Gone: the control plane said so
    /// (a lookup's "not found"), or two full loads in turn left it out (the first may have
    /// fetched its list before the subscription was made; a load that could not fetch them does
    /// not count). Between the two, it is not looked up again on each chunk.
    fn subscription_lapsed(&mut self, host: &mut impl Host, now: Option<u64>) -> Option<FaultId> {
        let now = now?;
        let config = Rc::clone(&self.config);
        let control_plane = config.control_plane.as_ref()?;
        let caller = self.connection_caller.as_deref_mut()?;
        let (key_type, key) = caller.subscription.as_ref()?;
        let application = caller.application.as_deref()?;
        let trust = Trust { now, negative_ttl_s: control_plane.negative_ttl_s };
        // Found missing since the load it was last asked under: not asked again (a lookup per
        // frame) before the next load.
        let loaded_at = (caller.missing_since != 0).then(|| Meta::read(host).loaded_at.max(1));
        if loaded_at == Some(caller.missing_since) {
            return None;
        }
        let mut worker = self.worker.borrow_mut();
        let view = worker.control_plane.as_mut()?;
        let app_gone = matches!(view.app(host, &application.id, trust), Some(Cached::Absent { .. }));
        let gone = match view.sub(host, key, trust) {
            Some(Cached::Present(subscription)) if !app_gone => {
                caller.missing_since = 0;
                return check_subscription_state(subscription.state, *key_type).err().map(|fault| fault.id);
            }
            Some(_) => true,
            None => {
                let loaded_at = loaded_at.unwrap_or_else(|| Meta::read(host).loaded_at.max(1));
                if caller.missing_since == 0 {
                    caller.missing_since = loaded_at;
                }
                loaded_at > caller.missing_since
            }
        };
        (gone && !caller.subscription_named).then_some(FaultId::ResourceForbidden)
    }

    /// The connection's caller is blocked now (API-M checks blocking conditions on each frame,
    /// `WebsocketUtil.validateDenyPolicies`): conditions the control plane sent since its handshake.
    fn blocked_since(&self) -> bool {
        if self.connection_caller.is_none() {
            return false;
        }
        let (config, routes) = (Rc::clone(&self.config), Rc::clone(&self.routes));
        let Some((api, _)) = self.route.as_ref().and_then(|route| route_of(&routes, route)) else { return false };
        let worker = self.worker.borrow();
        let directory = Layered { fixed: config.directory.as_ref(), control_plane: worker.control_plane.as_ref() };
        let caller = self.connection_caller.as_deref().map(ConnectionCaller::caller);
        caller.is_some_and(|caller| plan::blocked(&directory, api, &caller, &config.throttle.tenant))
    }
}
