//! The stream's response phase and its accounting: Envoy's own upstream-failure replies replaced
//! by the transport fault, body bytes charged to bandwidth budgets, requests a level could not
//! count reported, the RateLimit headers, and CORS headers on the backend's answers.

use std::rc::Rc;

use super::{request, Flow, Stream};
use crate::host::{GatewayScoped, Host};
use crate::throttle;
use crate::throttle::limiter::Contended;
use crate::transport::{self, ResponseView};

impl Stream {
    /// The filter governs this response: the request went upstream as an API's. A request passed
    /// through untouched (`"unmatched": "pass_through"`) is not the filter's, and a request it
    /// answered itself has its answer already: neither's response is replaced, charged, counted
    /// or logged.
    pub(super) fn governs_response(&self) -> bool {
        self.route.is_some() && !self.answered_locally
    }

    pub fn on_response_headers(&mut self, host: &mut impl Host) -> Flow {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        if !self.governs_response() {
            return Flow::Continue;
        }
        // The RateLimit headers of a counted request are the filter's: a backend's copies are
        // replaced, or removed when the window ended meanwhile (the client would read them as the
        // gateway's).
        let rate_limit_headers = self.rate_limit_headers(host);
        if rate_limit_headers.is_empty() && self.sends_rate_limit_headers() {
            for name in RATE_LIMIT_HEADERS {
                host.set_response_header(name, None);
            }
        }
        for (name, value) in rate_limit_headers {
            host.set_response_header(&name, Some(value.as_bytes()));
        }
        self.cors_on_response(host);
        let status = host
            .response_header(":status")
            .and_then(|status| crate::host::text(&status).and_then(|status| status.parse::<u16>().ok()))
            .unwrap_or(0);
        self.handshake_answered(status);
        self.upgrade_answered(status);
        self.stream_answered(status);
        // Envoy's own replies for failed upstreams are all errors: skip the property lookups for
        // everything else; but for a gRPC request, whose every reply from Envoy is a 200.
        if status < 400 && !self.request.grpc {
            return self.backend_answered(host, status);
        }
        let details = host.property(&["response", "code_details"]).and_then(|bytes| String::from_utf8(bytes).ok());
        // What the backend sent passes whatever its flags (every gRPC answer and backend error):
        // the flags are read only for Envoy's own replies.
        if details.as_deref() == Some(transport::FROM_UPSTREAM) {
            return self.backend_answered(host, status);
        }
        let flags = host.property(&["response", "flags"]).map(|bytes| request::le_u64(&bytes)).unwrap_or(0);
        let view = ResponseView {
            status,
            code_details: details.as_deref(),
            flags,
            request_complete: self.request.complete,
            request_body_started: self.request.body_started,
        };
        match transport::fault_for_response(&view, self.config.errors.format) {
            // Envoy's reply is replaced whole: a local reply made before the response headers went
            // downstream is sent instead of them (also when Envoy's reply had no body to rewrite,
            // as for a missing cluster).
            Some(fault) => self.reply(host, &fault),
            None => self.backend_answered(host, status),
        }
    }

    /// With `errors.cors` set, the backend's answer carries the gateway's CORS headers, as WSO2's
    /// CORS handler sets them on every response: a browser the preflight allowed could not read
    /// the answer otherwise. A backend's own `Access-Control-*` headers are replaced (the gateway's
    /// policy answered the preflight), and `Origin` joins the backend's `Vary`. A reply that
    /// replaces Envoy's (a transport fault) is rendered with them anyway.
    fn cors_on_response(&self, host: &mut impl Host) {
        let Some(cors) = &self.config.errors.cors else { return };
        // Each header set, or removed when the gateway's answer has none: nothing is allocated.
        let answer = cors.headers(self.request.origin.as_deref(), false, self.resource_cors_methods());
        for (name, value) in answer.values {
            host.set_response_header(name, value.map(str::as_bytes));
        }
        if answer.varies_on_origin {
            let backend = host.response_header("vary");
            if let Some(vary) = vary_with_origin(backend.as_deref().and_then(crate::host::text)) {
                host.set_response_header("vary", Some(vary.as_bytes()));
            }
        }
    }

    /// The CORS methods of the resource the request matched (`None` when none did): what its
    /// answers, faults and the backend's, allow (`Resource::cors_methods`, joined once).
    pub(super) fn resource_cors_methods(&self) -> Option<&str> {
        let (_, resource) = super::matched_of(&self.routes, self.matched?)?;
        Some(&resource?.cors_methods)
    }

    /// The backend's answer goes on: its status is the access log's target response code (a
    /// transport fault's is WSO2's -1, set by the fault).
    fn backend_answered(&mut self, host: &mut impl Host, status: u16) -> Flow {
        if self.config.observability.access_log_fields {
            self.record.target_response_code(status);
            self.emit_record(host);
        }
        Flow::Continue
    }

    pub fn on_response_body(&mut self, host: &mut impl Host, body_size: usize, _end_of_stream: bool) -> Flow {
        let scope = Rc::clone(&self.config);
        let host = &mut GatewayScoped::new(host, &scope.shared_prefix);
        self.charge(host, body_size as u64);
        if self.frames.is_some() {
            self.count_frames(host, crate::host::Direction::Response, body_size);
        }
        if self.events.is_some() {
            self.count_events(host, body_size);
        }
        Flow::Continue
    }

    /// Charges body bytes (the request's or the response's) to the byte budgets, once throttling
    /// has found them; only for a stream the filter governs.
    pub(super) fn charge(&mut self, host: &mut impl Host, bytes: u64) {
        if !self.governs_response() {
            return;
        }
        if !self.throttled {
            self.uncharged_bytes = self.uncharged_bytes.saturating_add(bytes);
            return;
        }
        if self.byte_counters.is_empty() || bytes == 0 {
            return;
        }
        // Bytes that already passed are charged at the host's time; without a clock they cannot be.
        let Ok(now) = host.now() else { return };
        let config = Rc::clone(&self.config);
        let mut engine = super::engines(&config, None);
        throttle::charge_bytes(&mut engine, host, &self.byte_counters, bytes, now);
    }

    /// A request a level could not count: always in the stats, in the log at most every ten
    /// seconds per worker (a flood must not flood the log).
    pub(super) fn report_uncounted(&mut self, host: &mut impl Host, why: Contended, now: u64) {
        host.count(&format!("apim.throttle.uncounted.{}", why.name()));
        let mode = self.config.throttle.failure_mode_for(why);
        // Paced per reason: a full slot's lines must not hold back the rate-limit service's outage.
        crate::host::warn_repeated(host.gateway_scope(), why.name(), now, || match why {
            Contended::EngineUnavailable => format!(
                "the rate-limit service could not count a request (no answer in time, unreachable, or its storage \
                 is down; failure_mode {mode:?})"
            ),
            Contended::EngineUnusable => format!(
                "the rate-limit service answered without the filter's limits (is the domain in its configuration?); \
                 failure_mode {mode:?}"
            ),
            Contended::Retries | Contended::SlotFull | Contended::SlotMissing => format!(
                "a throttling level could not count a request ({}; failure_mode {mode:?}): see docs/HOWTO.md to size \
                 throttling.counter_slots",
                why.name()
            ),
        });
    }

    /// The IETF RateLimit headers, when enabled and a level was counted, as the window stands
    /// when the response leaves (`host`'s clock): `RateLimit-Reset` counts from then, and a
    /// window that ended meanwhile (a slow backend) gets none, its count saying nothing of the
    /// window the client is in.
    pub(super) fn rate_limit_headers(&self, host: &impl Host) -> Vec<(String, String)> {
        let Some(info) = self.rate_limit.filter(|_| self.sends_rate_limit_headers()) else {
            return Vec::new();
        };
        let [limit, remaining, reset] = RATE_LIMIT_HEADERS;
        match host.now().ok().and_then(|now| info.reset_s(now)) {
            Some(reset_s) => vec![
                (limit.to_string(), info.limit.to_string()),
                (remaining.to_string(), info.remaining.to_string()),
                (reset.to_string(), reset_s.to_string()),
            ],
            None => Vec::new(),
        }
    }

    /// The RateLimit headers are on and a level counted this request: they are the filter's.
    fn sends_rate_limit_headers(&self) -> bool {
        self.rate_limit.is_some() && self.config.throttle.settings.rate_limit_headers
    }
}

/// A response's `Vary` once it names `Origin`: `None` when `backend` (the response's `Vary`)
/// already names it or varies on everything (`*`).
fn vary_with_origin(backend: Option<&str>) -> Option<std::borrow::Cow<'static, str>> {
    match backend.map(str::trim).filter(|vary| !vary.is_empty()) {
        None => Some(std::borrow::Cow::Borrowed("Origin")),
        Some(vary)
            if vary
                .split(',')
                .any(|field| matches!(field.trim(), "*") || field.trim().eq_ignore_ascii_case("origin")) =>
        {
            None
        }
        Some(vary) => Some(format!("{vary}, Origin").into()),
    }
}

/// The IETF RateLimit headers the filter sets.
const RATE_LIMIT_HEADERS: [&str; 3] = ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"];
