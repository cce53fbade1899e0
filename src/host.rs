//! The seam between the pure core and Envoy: the [`Host`] trait the stream talks to (headers,
//! properties, shared data, calls, local replies, counters, the clock), its typed errors, and the
//! proxy-wasm map serialization (pure, so it is tested natively). The filter implements `Host`
//! over the ABI; tests implement it over maps.

/// A host call failed with this ABI status (1 NotFound, 2 BadArgument, 4 ParseFailure,
/// 6 InvalidMemoryAccess, 8 CasMismatch, 10 InternalFailure, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    /// A CAS write found the value changed since it was read.
    pub const CAS_MISMATCH: HostError = HostError(8);
}

/// A header: its name (lowercase ASCII in Envoy) and its value, which is bytes: Envoy accepts
/// obs-text (bytes 0x80-0xFF) in values, so a value is not always UTF-8.
pub type Header = (String, Vec<u8>);

/// An outgoing call to an Envoy cluster. `Debug` leaves out the `authorization` header's value
/// (a key manager's or control plane's credentials never reach a log).
#[derive(Clone, PartialEq, Eq)]
pub enum Call {
    Http {
        cluster: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        timeout_ms: u32,
    },
    /// A unary gRPC call; `message` is the encoded request (no gRPC framing).
    Grpc {
        cluster: String,
        service: String,
        method: String,
        message: Vec<u8>,
        timeout_ms: u32,
    },
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Http { cluster, headers, body, timeout_ms } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(name, value)| {
                        (name.as_str(), if name.eq_ignore_ascii_case("authorization") { "***" } else { value.as_str() })
                    })
                    .collect();
                f.debug_struct("Http")
                    .field("cluster", cluster)
                    .field("headers", &headers)
                    .field("body_len", &body.len())
                    .field("timeout_ms", timeout_ms)
                    .finish()
            }
            Call::Grpc { cluster, service, method, message, timeout_ms } => f
                .debug_struct("Grpc")
                .field("cluster", cluster)
                .field("service", service)
                .field("method", method)
                .field("message_len", &message.len())
                .field("timeout_ms", timeout_ms)
                .finish(),
        }
    }
}

impl Call {
    pub fn cluster(&self) -> &str {
        match self {
            Call::Http { cluster, .. } | Call::Grpc { cluster, .. } => cluster,
        }
    }
}

/// What a stage of the request path says next: it is done, it needs a call (and how to resume
/// when the answer comes), or it refuses the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<T, R, E> {
    Done(T),
    Call(Call, R),
    Refused(E),
}

/// The largest answer the filter reads whole: a key manager's JWKS or introspection answer, a
/// control plane's lookup, a rate-limit service's message (a few KB each). A larger one is taken
/// as a failed call ([`ANSWER_TOO_LARGE`]) before a byte of it is read: parsing holds several
/// times an answer's size in the VM, whose memory never shrinks, and an allocation the VM cannot
/// make ends it. A control plane's full loads are read in pieces ([`Answer::HttpStream`]).
pub const MAX_WHOLE_ANSWER: usize = 1 << 20;

/// The code of a call whose answer was over [`MAX_WHOLE_ANSWER`] (gRPC's `RESOURCE_EXHAUSTED`).
pub const ANSWER_TOO_LARGE: u32 = 8;

/// For an answer of `size` bytes to be read whole: a failed call, left unread, when it is over
/// [`MAX_WHOLE_ANSWER`].
pub fn unread_when_too_large(size: usize, now: u64) -> Option<Answer> {
    (size > MAX_WHOLE_ANSWER).then(|| {
        warn_repeated("", "answer_too_large", now, || {
            format!("an answer of {size} bytes is over the {MAX_WHOLE_ANSWER} bytes read whole: taken as a failed call")
        });
        Answer::Failed { code: ANSWER_TOO_LARGE }
    })
}

/// The answer to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response: status (0 when unreadable) and body.
    Http { status: u16, body: Vec<u8> },
    /// An HTTP response whose body (`size` bytes) stays in Envoy, to be read in pieces during the
    /// answer's callback (large answers: a control plane's full lists).
    HttpStream { status: u16, size: usize },
    /// A gRPC response message.
    Grpc { message: Vec<u8> },
    /// The call failed (reset, timeout, unreachable cluster, a non-OK gRPC status): the code the
    /// host reported (a gRPC status for gRPC calls).
    Failed { code: u32 },
}

/// Shared data: one store per Envoy process, shared by every worker's VM (proxy-wasm shared data
/// in the filter, a map in tests). Values carry a CAS token; a write with the token of the value
/// read succeeds only if nobody wrote in between, a write without one is unconditional.
pub trait SharedStore {
    /// A value and its CAS token; `None` when absent.
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Stores a value; with a CAS token only if the value is unchanged
    /// ([`HostError::CAS_MISMATCH`] otherwise).
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// The prefix of the gateway whose data this is (`apim.gw.<name>.`, [`GatewayScoped`]), empty
    /// for the Envoy's one gateway: what a log line about it is paced and named by.
    fn gateway_scope(&self) -> &str {
        ""
    }
}

/// The CAS token no stored value has (Envoy numbers values from 1 up, one per write): a write
/// with it stores a value only where none is ([`create_if_absent`]).
const NO_VALUE_HAS_THIS_CAS: u32 = u32::MAX;

/// Stores `value` only if `key` has none; a value another VM stored first is kept. Envoy's shared
/// data has no such call, but compares a CAS token only against a value that exists: a write
/// with a token no value holds inserts where the key is absent and fails where it is present.
/// For what every worker must agree on (the counter slots' seed and count, an empty slot, a due
/// time, a budget's first call), where "read, then write if absent" lets two VMs that read at
/// once each keep their own.
pub fn create_if_absent(store: &mut dyn SharedStore, key: &str, value: &[u8]) -> Result<(), HostError> {
    store.shared_set(key, value, Some(NO_VALUE_HAS_THIS_CAS))
}

/// What the stream needs from Envoy.
pub trait Host: SharedStore {
    /// Every request header at once (one host call instead of one per header).
    fn request_headers(&self) -> Vec<Header>;
    /// Sets (or with `None` removes) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>);
    /// The names of the request's trailers (HTTP/2 and gRPC clients, chunked HTTP/1.1).
    fn request_trailer_names(&self) -> Vec<String>;
    /// Removes a request trailer.
    fn remove_request_trailer(&mut self, name: &str);
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Sets (or with `None` removes) a response header.
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>);
    /// A property such as `response.flags`, as raw bytes.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a value in the request's filter state (`wasm.<name>` in Envoy), for access logs.
    fn set_property(&mut self, name: &str, value: &[u8]);
    /// Answers the request locally (also valid in the response phase, before the response
    /// headers went downstream: Envoy then sends this reply instead). A gRPC client reads
    /// `grpc_status`, or without one Envoy's mapping of `status`.
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>);
    /// Adds one to a counter (`wasmcustom.<name>` in Envoy's stats).
    fn count(&mut self, name: &str);
    /// Unix time, seconds. An error means the clock could not be read: callers fail closed.
    fn now(&self) -> Result<u64, HostError>;
    /// Unix time, milliseconds (for measuring; decisions use [`Host::now`]).
    fn now_ms(&self) -> Result<u64, HostError> {
        self.now().map(|seconds| seconds.saturating_mul(1000))
    }
    /// Unix time, milliseconds, read afresh: [`Host::now`] and [`Host::now_ms`] may keep the
    /// first reading of a callback, which cannot time work done inside it.
    fn fresh_now_ms(&self) -> Result<u64, HostError> {
        self.now_ms()
    }
    /// Starts a call; the answer arrives later with the returned token. The call is the
    /// worker's (the root context's in Envoy), never cancelled with the request that made it: its
    /// answer is applied even when the request is gone (`Stream::on_abandoned_answer`).
    fn call(&mut self, call: &Call) -> Result<u32, HostError>;
    /// Resumes a paused request.
    fn resume_request(&mut self);
    /// The body chunk of the current body callback (`Direction::Response`: the response's), whole.
    fn body_chunk(&self, direction: Direction, size: usize) -> Option<Vec<u8>>;
    /// Replaces the body chunk of the current body callback (`size` bytes) with `bytes`.
    fn replace_body_chunk(&mut self, direction: Direction, size: usize, bytes: &[u8]);
    /// Resets the stream once the callback returns: an upgraded connection (a WebSocket) ends.
    fn close_stream(&mut self);
}

/// A direction of a stream's body: the request's (client to backend) or the response's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// The host as one gateway of several in one Envoy sees it: its shared-data keys and its stats
/// under its own prefix (`apim.gw.<name>.`, from the configuration's `gateway`), everything else
/// as it is. Envoy keys shared data by `vm_id` only, so the filters of two listeners that share a
/// `vm_id` share every key: without a prefix each, one gateway's counters, control-plane data
/// (its label's APIs, its applications) and caches serve the other's requests; and Envoy's stats
/// are the process's, so their counts would add up (the shipped tag extraction makes the name an
/// `apim_gateway` label). With no name (the Envoy's one gateway) keys and stats are as they always
/// were. Two workers of one gateway share its keys and stats, as before.
pub struct GatewayScoped<'a, H: Host> {
    host: &'a mut H,
    /// `apim.gw.<name>.`, or empty for the Envoy's one gateway.
    prefix: &'a str,
}

impl<'a, H: Host> GatewayScoped<'a, H> {
    pub fn new(host: &'a mut H, prefix: &'a str) -> Self {
        GatewayScoped { host, prefix }
    }

    /// Runs `work` with the key in Envoy's shared data (or the stat's name): `apim.<rest>`
    /// becomes `<prefix><rest>`. Every request reads, writes and counts through here: the one
    /// gateway's keys pass as they are, and a named gateway's are built in a buffer the worker
    /// keeps, so neither costs an allocation.
    fn with_key<T>(prefix: &str, key: &str, work: impl FnOnce(&str) -> T) -> T {
        // A key already under the prefix (a host scoped twice) is not scoped again.
        if prefix.is_empty() || key.starts_with(prefix) {
            return work(key);
        }
        let rest = key.strip_prefix("apim.").unwrap_or(key);
        SCOPED_KEY.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => {
                buffer.clear();
                buffer.push_str(prefix);
                buffer.push_str(rest);
                work(&buffer)
            }
            // Never while a host call runs (the host does not call back); a copy if it did.
            Err(_) => work(&format!("{prefix}{rest}")),
        })
    }
}

thread_local! {
    /// The worker's buffer for a named gateway's keys ([`GatewayScoped`]).
    static SCOPED_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The shared-data prefix of the gateway named `name` (empty for none).
pub fn gateway_prefix(name: Option<&str>) -> String {
    name.map(|name| format!("apim.gw.{name}.")).unwrap_or_default()
}

impl<H: Host> SharedStore for GatewayScoped<'_, H> {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        Self::with_key(self.prefix, key, |key| self.host.shared_get(key))
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let host = &mut *self.host;
        Self::with_key(self.prefix, key, |key| host.shared_set(key, value, cas))
    }
    fn gateway_scope(&self) -> &str {
        self.prefix
    }
}

impl<H: Host> Host for GatewayScoped<'_, H> {
    fn request_headers(&self) -> Vec<Header> {
        self.host.request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.host.set_request_header(name, value);
    }
    fn request_trailer_names(&self) -> Vec<String> {
        self.host.request_trailer_names()
    }
    fn remove_request_trailer(&mut self, name: &str) {
        self.host.remove_request_trailer(name);
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.host.response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.host.set_response_header(name, value);
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.host.property(path)
    }
    fn set_property(&mut self, name: &str, value: &[u8]) {
        self.host.set_property(name, value);
    }
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>) {
        self.host.send_response(status, headers, body, grpc_status);
    }
    fn count(&mut self, name: &str) {
        let host = &mut *self.host;
        Self::with_key(self.prefix, name, |name| host.count(name));
    }
    fn now(&self) -> Result<u64, HostError> {
        self.host.now()
    }
    fn now_ms(&self) -> Result<u64, HostError> {
        self.host.now_ms()
    }
    fn fresh_now_ms(&self) -> Result<u64, HostError> {
        self.host.fresh_now_ms()
    }
    fn call(&mut self, call: &Call) -> Result<u32, HostError> {
        self.host.call(call)
    }
    fn body_chunk(&self, direction: Direction, size: usize) -> Option<Vec<u8>> {
        self.host.body_chunk(direction, size)
    }
    fn replace_body_chunk(&mut self, direction: Direction, size: usize, bytes: &[u8]) {
        self.host.replace_body_chunk(direction, size, bytes)
    }
    fn close_stream(&mut self) {
        self.host.close_stream()
    }
    fn resume_request(&mut self) {
        self.host.resume_request();
    }
}

/// Reads the proxy-wasm map serialization: a u32 count, then (name length, value length) u32
/// pairs, then each name and value followed by a NUL; all little-endian. Stops at the first
/// entry that does not fit, so truncated or hostile input yields what could be read.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let word = |at: usize| -> Option<usize> {
        let slice = bytes.get(at..at.checked_add(4)?)?;
        let array: [u8; 4] = slice.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(array)).ok()
    };
    let Some(count) = word(0) else { return Vec::new() };
    let Some(mut cursor) = count.checked_mul(8).and_then(|lengths| lengths.checked_add(4)) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(1024));
    for index in 0..count {
        let Some(at) = index.checked_mul(8).and_then(|offset| offset.checked_add(4)) else { break };
        let (Some(name_len), Some(value_len)) = (word(at), at.checked_add(4).and_then(word)) else { break };
        let name_end = cursor.saturating_add(name_len);
        let value_start = name_end.saturating_add(1);
        let value_end = value_start.saturating_add(value_len);
        let (Some(name), Some(value)) = (bytes.get(cursor..name_end), bytes.get(value_start..value_end)) else {
            break;
        };
        pairs.push((name.to_vec(), value.to_vec()));
        cursor = value_end.saturating_add(1);
    }
    pairs
}

/// Writes the proxy-wasm map serialization.
pub fn encode_pairs(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(name, value)| 8 + name.len() + value.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Whether a time noted at `at` (Unix seconds) is less than `within_s` seconds before `now`. A
/// time from the clock's future is never recent: the clock was stepped back since it was noted
/// (NTP), so how long ago it was is unknown, and taking it for recent would hold back a fetch, a
/// call or a log line for as long as the step.
pub fn recent(at: u64, now: u64, within_s: u64) -> bool {
    at <= now && now < at.saturating_add(within_s)
}

/// Seconds between two log lines about one failure that repeats with the traffic, per worker.
pub const REPEATED_WARNING_S: u64 = 10;

/// A repeated failure's last logged line, and how many like it were held back since.
struct Warned {
    scope: String,
    kind: String,
    at: u64,
    held: u64,
}

thread_local! {
    /// Per gateway and kind of repeated failure (a few of each): when its last line was logged,
    /// and how many were held back since. A VM is one thread, so this is the worker's, and the
    /// worker is every gateway's of its `vm_id`.
    static WARNED: std::cell::RefCell<Vec<Warned>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes one call from a budget of `per_second` that the Envoy's workers share under `key` (a
/// fixed window per second, by compare-and-swap); `false` when the second's budget is spent or
/// cannot be counted.
pub fn take_from_budget(store: &mut dyn SharedStore, key: &str, per_second: u64, now: u64) -> bool {
    let number = |bytes: &[u8], at: usize| {
        bytes.get(at..at + 8).and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_le_bytes)
    };
    for _ in 0..16 {
        let (second, used, cas) = match store.shared_get(key) {
            Ok(Some((bytes, cas))) => (number(&bytes, 0), number(&bytes, 8), Some(cas)),
            Ok(None) => (0, 0, None),
            Err(_) => return false,
        };
        let used = if second == now { used } else { 0 };
        if used >= per_second {
            return false;
        }
        let mut out = now.to_le_bytes().to_vec();
        out.extend_from_slice(&(used + 1).to_le_bytes());
        // The first write creates the key only where none is ([`create_if_absent`]): two workers
        // that both read it absent would otherwise both take a call, past a budget of one.
        if store.shared_set(key, &out, Some(cas.unwrap_or(NO_VALUE_HAS_THIS_CAS))).is_ok() {
            return true;
        }
    }
    false
}

/// Logs a warning about a failure that comes back with every request while a dependency is down
/// or misnamed (a key manager, the control plane, a cluster that cannot be called): the first of
/// its `kind`, then at most one every [`REPEATED_WARNING_S`] per worker, saying how many were held
/// back, so that an outage at thousands of requests a second does not flood the log (each
/// request is still in the stats). `kind` names what fails, from the configuration (bounded).
/// Each gateway (`scope`, [`SharedStore::gateway_scope`]) is paced apart and named in its lines:
/// one gateway's outage is not held back behind another's line of the same kind.
/// A line noted in the clock's future (stepped back since) holds nothing back.
pub fn warn_repeated(scope: &str, kind: &str, now: u64, message: impl FnOnce() -> String) {
    if let Some(held) = held_back(scope, kind, now) {
        warn_with_held_back(scope, &message(), held);
    }
}

/// Whether a warning of `kind` is logged now (`Some`, with how many were held back since the
/// last), or held back. Not generic, so that each call site adds only its message.
#[inline(never)]
fn held_back(scope: &str, kind: &str, now: u64) -> Option<u64> {
    WARNED.with(|warned| {
        let mut warned = warned.borrow_mut();
        match warned.iter_mut().find(|warned| warned.scope == scope && warned.kind == kind) {
            Some(warned) if recent(warned.at, now, REPEATED_WARNING_S) => {
                warned.held = warned.held.saturating_add(1);
                None
            }
            Some(warned) => {
                warned.at = now;
                Some(std::mem::take(&mut warned.held))
            }
            None => {
                warned.push(Warned { scope: scope.to_string(), kind: kind.to_string(), at: now, held: 0 });
                Some(0)
            }
        }
    })
}

#[inline(never)]
fn warn_with_held_back(scope: &str, message: &str, held: u64) {
    let gateway = scope.strip_prefix("apim.gw.").and_then(|name| name.strip_suffix('.'));
    match (gateway, held) {
        (None, 0) => log::warn!("{message}"),
        (None, held) => log::warn!("{message} ({held} more like it since the last such line)"),
        (Some(gateway), 0) => log::warn!("gateway `{gateway}`: {message}"),
        (Some(gateway), held) => {
            log::warn!("gateway `{gateway}`: {message} ({held} more like it since the last such line)")
        }
    }
}

/// Text of a header value, when it is UTF-8.
pub fn text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok()
}

/// A log record as one line of Envoy's log: control characters (a CR or LF that would start a
/// forged line, a NUL, an escape sequence for a terminal; Unicode's line and paragraph
/// separators) written as Rust escapes. Names in a configuration or in a control plane's data
/// (an API's, published in API-M) and a request's bytes reach log lines.
pub fn log_line(record: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !record.contains(escaped) {
        return std::borrow::Cow::Borrowed(record);
    }
    let mut line = String::with_capacity(record.len() + 8);
    for c in record.chars() {
        if escaped(c) {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    std::borrow::Cow::Owned(line)
}

/// Random and mutated outside data, for the tests that feed it to the entry points.
#[cfg(test)]
#[path = "host/fuzz_tests.rs"]
pub mod fuzz;

/// Test doubles of the host.
#[cfg(test)]
pub mod testing {
    use super::{HostError, SharedStore};
    use std::collections::HashMap;

    thread_local! {
        static CAPTURED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        /// This thread keeps every log line, of any level ([`capture_all_logs`]).
        static EVERY_LEVEL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Keeps each test thread's warnings and errors, for tests that count log lines.
    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn || EVERY_LEVEL.with(std::cell::Cell::get)
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                let line = super::log_line(&record.args().to_string()).into_owned();
                CAPTURED.with(|captured| captured.borrow_mut().push(line));
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture;

    /// Starts keeping this thread's warnings (from here on); [`warnings`] returns them.
    pub fn capture_warnings() {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let _ = log::set_logger(&CAPTURE);
            // Every level reaches the logger, which keeps a thread's debug lines only when it
            // asked for them ([`capture_all_logs`]).
            log::set_max_level(log::LevelFilter::Trace);
        });
        CAPTURED.with(|captured| captured.borrow_mut().clear());
    }

    /// Starts keeping this thread's log lines of every level (from here on); [`warnings`] returns
    /// them.
    pub fn capture_all_logs() {
        EVERY_LEVEL.with(|every| every.set(true));
        capture_warnings();
    }

    /// The warnings this thread logged since [`capture_warnings`].
    pub fn warnings() -> Vec<String> {
        CAPTURED.with(|captured| captured.borrow().clone())
    }

    /// The test binary's allocator: the system's, counting each thread's allocations, for tests
    /// of what a request costs.
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        /// Whether this thread's allocations are left uncounted now (a fake host's own).
        static PAUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn counted() {
        if !PAUSED.try_with(std::cell::Cell::get).unwrap_or(true) {
            let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        }
    }

    // SAFETY: every call is the system allocator's, with the caller's arguments.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            counted();
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, pointer: *mut u8, layout: std::alloc::Layout) {
            unsafe { std::alloc::System.dealloc(pointer, layout) }
        }
        unsafe fn realloc(&self, pointer: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
            counted();
            unsafe { std::alloc::System.realloc(pointer, layout, size) }
        }
    }

    #[global_allocator]
    static COUNTING: CountingAllocator = CountingAllocator;

    /// How many allocations (and reallocations) `work` made on this thread.
    pub fn allocations_in(work: impl FnOnce()) -> u64 {
        let before = ALLOCATIONS.with(std::cell::Cell::get);
        work();
        ALLOCATIONS.with(std::cell::Cell::get) - before
    }

    /// Runs `work` with its allocations left out of [`allocations_in`]'s count (a fake host's
    /// own, which Envoy's host makes outside the filter).
    pub fn uncounted<T>(work: impl FnOnce() -> T) -> T {
        let paused = PAUSED.with(|paused| paused.replace(true));
        let result = work();
        PAUSED.with(|now| now.set(paused));
        result
    }

    /// Another worker's write lands between this worker's read and its write: the next write
    /// through this store finds `rival` written (unconditionally) to its key first.
    #[derive(Default)]
    pub struct RivalWrite {
        pub inner: MemoryStore,
        pub rival: Option<Vec<u8>>,
    }

    impl SharedStore for RivalWrite {
        fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            self.inner.shared_get(key)
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
            if let Some(rival) = self.rival.take() {
                self.inner.shared_set(key, &rival, None)?;
            }
            self.inner.shared_set(key, value, cas)
        }
    }

    /// An in-memory store; `conflicts` makes the next N writes fail as if another worker won.
    #[derive(Default)]
    pub struct MemoryStore {
        pub data: HashMap<String, (Vec<u8>, u32)>,
        pub conflicts: u32,
    }

    /// Behaves like Envoy's shared data: a write without a CAS token is unconditional, a write
    /// with one succeeds only while the token matches.
    impl SharedStore for MemoryStore {
        fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            Ok(self.data.get(key).map(|(value, cas)| (value.clone(), *cas)))
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
            if self.conflicts > 0 && cas.is_some() {
                self.conflicts -= 1;
                if let Some(entry) = self.data.get_mut(key) {
                    entry.1 += 1;
                }
                return Err(HostError::CAS_MISMATCH);
            }
            let current = self.data.get(key).map(|(_, cas)| *cas);
            if let (Some(expected), Some(current)) = (cas, current) {
                if expected != current {
                    return Err(HostError::CAS_MISMATCH);
                }
            }
            self.data.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_record_is_one_line_whatever_names_it_holds() {
        assert_eq!(log_line("key manager `km-1` answered"), "key manager `km-1` answered");
        assert!(matches!(log_line("API `注文` 1.0"), std::borrow::Cow::Borrowed(_)), "nothing to escape: not copied");
        assert_eq!(
            log_line("API `a\r\n[info] forged` not served"),
            "API `a\\r\\n[info] forged` not served",
            "a CR LF in a name does not start a line"
        );
        assert_eq!(log_line("a\0b\x1b[31mc\x7f"), "a\\u{0}b\\u{1b}[31mc\\u{7f}");
        assert_eq!(log_line("x\u{2028}y\u{85}z\tw"), "x\\u{2028}y\\u{85}z\\tw");
    }

    #[test]
    fn a_time_from_the_clocks_future_is_not_recent() {
        assert!(recent(100, 100, 5) && recent(100, 104, 5));
        assert!(!recent(100, 105, 5), "five seconds on");
        assert!(!recent(100, 99, 5) && !recent(u64::MAX, 0, 5), "noted after now: stepped back since");
        assert!(!recent(0, u64::MAX, 5) && !recent(7, 7, 0));
    }

    #[test]
    fn a_repeated_failure_is_logged_now_and_then_each_kind_apart() {
        use testing::{capture_warnings, warnings};
        capture_warnings();
        for now in 100..110 {
            warn_repeated("", "a", now, || "a down".into());
            warn_repeated("", "b", now, || "b down".into());
        }
        assert_eq!(warnings(), ["a down", "b down"]);
        warn_repeated("", "a", 110, || "a down".into());
        assert_eq!(warnings().last().map(String::as_str), Some("a down (9 more like it since the last such line)"));
        // The clock stepped back: the line noted in its future holds nothing back.
        warn_repeated("", "b", 50, || "b down".into());
        assert_eq!(warnings().len(), 4);
    }

    /// Two workers read the budget's key as absent (the Envoy's first call): the second's write
    /// finds the first's and takes nothing from a budget of one, as at any other time.
    #[test]
    fn a_budget_is_exact_on_the_first_call_of_the_envoy_too() {
        let mut other = testing::MemoryStore::default();
        assert!(take_from_budget(&mut other, "apim.budget", 1, 100));
        let (taken_by_the_other, _) = other.data.remove("apim.budget").unwrap();
        let mut store = testing::RivalWrite { rival: Some(taken_by_the_other), ..Default::default() };
        assert!(!take_from_budget(&mut store, "apim.budget", 1, 100), "one call in the second, the other's");
        assert!(take_from_budget(&mut store, "apim.budget", 1, 101), "a new second");
        assert!(!take_from_budget(&mut store, "apim.budget", 1, 101));
    }

    #[test]
    fn answers_over_a_mib_are_failed_calls_left_unread() {
        for size in [0, 1, MAX_WHOLE_ANSWER] {
            assert_eq!(unread_when_too_large(size, 0), None, "{size}");
        }
        for size in [MAX_WHOLE_ANSWER + 1, isize::MAX as usize + 1, usize::MAX] {
            assert_eq!(unread_when_too_large(size, 0), Some(Answer::Failed { code: ANSWER_TOO_LARGE }), "{size}");
        }
    }

    #[test]
    fn pairs_round_trip_with_any_bytes() {
        let pairs: [(&str, &[u8]); 3] = [(":path", b"/a"), ("user-agent", b"Mozilla/5.0 \xa9"), ("empty", b"")];
        let decoded = decode_pairs(&encode_pairs(&pairs));
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1], (b"user-agent".to_vec(), b"Mozilla/5.0 \xa9".to_vec()));
        assert_eq!(decoded[2].1, b"");
    }

    #[test]
    fn truncated_or_hostile_maps_never_panic() {
        let good = encode_pairs(&[("a", b"1"), ("b", b"2")]);
        for cut in 0..good.len() {
            let decoded = decode_pairs(&good[..cut]);
            assert!(decoded.len() <= 2);
        }
        assert!(decode_pairs(&[0xff, 0xff, 0xff, 0xff]).is_empty(), "a huge count with no entries");
        let mut lying = good.clone();
        lying[4] = 0xff; // the first name's length points past the end
        assert!(decode_pairs(&lying).is_empty());
        // A simple deterministic generator of noise.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            let len = (state % 64) as usize;
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_pairs(&noise);
        }
    }
}
