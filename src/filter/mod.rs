//! The proxy-wasm glue, and the only module that talks to Envoy: the callbacks Envoy calls (only
//! those the filter uses are exported, so Envoy skips the others), a registry of root and stream
//! contexts, and [`WasmHost`], the [`Host`] over the ABI ([`abi`]).
//!
//! The root context parses the configuration in `on_configure` (refusing a bad one with a log
//! line naming the field) and runs background work on its tick; each HTTP stream hands Envoy's
//! callbacks to [`crate::stream::Stream`]. Every call is the root context's, also one a stream
//! makes (the root is made the effective context for it): Envoy cancels the calls of a context it
//! deletes, and an answer's effects are the worker's and the Envoy's (a JWKS, a block of tokens the
//! rate-limit service counted, a cached introspection, a lookup), not only the request's. Answers
//! arrive on the root context and are routed to the stream that waits for them, made the effective
//! context first; the answer to a call of a stream Envoy deleted meanwhile is still applied
//! ([`Stream::on_abandoned_answer`]), and the requests that wait for a worker's JWKS fetch resume
//! together when it answers.

mod abi;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::config::Config;
use crate::host::{text, unread_when_too_large, Answer, Call, Direction, Header, Host, HostError, SharedStore};
use crate::stream::background::{self, Job};
use crate::stream::waiters::FetchWaiters;
use crate::stream::{Flow, Stream, Worker};

/// Envoy's log levels as the ABI numbers them.
const LOG_TRACE: u32 = 0;
const LOG_DEBUG: u32 = 1;
const LOG_INFO: u32 = 2;
const LOG_WARN: u32 = 3;
const LOG_ERROR: u32 = 4;
const LOG_CRITICAL: u32 = 5;

/// `log` records go to Envoy's log through `proxy_log`, each one line ([`crate::host::log_line`]);
/// the level Envoy logs at is read at configure time and on every tick, so records Envoy would
/// drop never cross into the host.
struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => LOG_ERROR,
            log::Level::Warn => LOG_WARN,
            log::Level::Info => LOG_INFO,
            log::Level::Debug => LOG_DEBUG,
            log::Level::Trace => LOG_TRACE,
        };
        abi::log(level, &crate::host::log_line(&record.args().to_string()));
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

fn follow_envoy_log_level() {
    let filter = match abi::log_level() {
        Ok(LOG_TRACE) => log::LevelFilter::Trace,
        Ok(LOG_DEBUG) => log::LevelFilter::Debug,
        Ok(LOG_INFO) => log::LevelFilter::Info,
        Ok(LOG_WARN) => log::LevelFilter::Warn,
        Ok(LOG_ERROR | LOG_CRITICAL) => log::LevelFilter::Error,
        Ok(_) => log::LevelFilter::Off,
        Err(_) => log::LevelFilter::Info,
    };
    log::set_max_level(filter);
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Called once per VM before any context exists (only `proxy_log` may be called here).
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: the module's constructors, run once, as the reactor start-up does.
    unsafe {
        __wasm_call_ctors();
    }
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    // A panic would be a bug (lints forbid the constructs that panic); if one happens anyway, say
    // where, never what: the message could hold request data such as a credential.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        abi::log(LOG_CRITICAL, &format!("apim-filter: internal error at {location}"));
    }));
}

/// Marks the module as proxy-wasm ABI 0.2.1 (Envoy refuses a module without it).
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

// ---------------------------------------------------------------------------------------------
// The context registry.
// ---------------------------------------------------------------------------------------------

/// A root context: one per filter configuration per VM.
#[derive(Default)]
struct Root {
    config: Rc<Config>,
    worker: Option<Rc<RefCell<Worker>>>,
    /// How fast the tick runs (fast while streams wait for their reset: `Registry::closing`).
    pace: background::TickPace,
}

/// Who made a call, and waits for its answer.
#[derive(Clone)]
enum Caller {
    Stream(u32),
    Root(u32, Job),
    /// A stream Envoy deleted while it waited (its state is in `Registry::abandoned`).
    Abandoned,
}

/// Everything the VM keeps between callbacks (a wasm VM runs one callback at a time).
#[derive(Default)]
struct Registry {
    roots: HashMap<u32, Root>,
    streams: HashMap<u32, Stream>,
    /// Stream to its root context (which owns the calls a stream starts in the background).
    parents: HashMap<u32, u32>,
    /// Call token to who made the call.
    calls: HashMap<u32, Caller>,
    /// A worker's JWKS fetch, or a request's introspection, to the streams that wait for its answer.
    waiting: FetchWaiters,
    /// Call token to the state of the deleted stream that made it, and its root context.
    abandoned: HashMap<u32, (u32, Stream)>,
    /// Streams to reset on their root context's next tick, and that root: a stream whose cut
    /// chunk must reach the client first (server-sent events over a limit).
    closing: Vec<(u32, u32)>,
    metrics: Metrics,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

fn with_registry<T>(work: impl FnOnce(&mut Registry) -> T) -> Option<T> {
    REGISTRY.with(|registry| registry.try_borrow_mut().ok().map(|mut registry| work(&mut registry)))
}

/// Counters defined on first use (`wasmcustom.<name>` in Envoy's stats).
#[derive(Default)]
struct Metrics {
    ids: HashMap<String, u32>,
}

impl Metrics {
    fn count(&mut self, name: &str) {
        let id = match self.ids.get(name) {
            Some(id) => *id,
            None => match abi::define_metric(abi::METRIC_COUNTER, name) {
                Ok(id) => {
                    self.ids.insert(name.to_string(), id);
                    id
                }
                Err(status) => {
                    log::warn!("cannot define the counter {name}: {status:?}");
                    return;
                }
            },
        };
        if let Err(status) = abi::increment_metric(id, 1) {
            log::warn!("cannot count {name}: {status:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Root callbacks.
// ---------------------------------------------------------------------------------------------

/// A root context is created with parent 0; an HTTP stream with its root as parent.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context: u32, parent: u32) {
    with_registry(|registry| {
        if parent == 0 {
            registry.roots.insert(context, Root::default());
            return;
        }
        let (config, worker) = match registry.roots.get_mut(&parent) {
            Some(root) => {
                let worker = root.worker.get_or_insert_with(|| Rc::new(RefCell::new(Worker::new(&root.config))));
                (Rc::clone(&root.config), Rc::clone(worker))
            }
            None => {
                let config = Rc::new(Config::default());
                let worker = Rc::new(RefCell::new(Worker::new(&config)));
                (config, worker)
            }
        };
        registry.streams.insert(context, Stream::new(config, worker));
        registry.parents.insert(context, parent);
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, configuration_size: usize) -> u32 {
    follow_envoy_log_level();
    let started = abi::now_nanos().ok();
    // Read in pieces: a VM's memory never shrinks below its peak, and the text of a big directory
    // would be part of that peak.
    let read = |start: usize, length: usize| match abi::buffer(abi::BUFFER_PLUGIN_CONFIGURATION, start, length) {
        Ok(bytes) => Some(bytes.unwrap_or_default()),
        Err(status) => {
            log::warn!("the configuration could not be read at byte {start} ({status:?})");
            None
        }
    };
    let compiled = Config::from_source(configuration_size, &read);
    let mut config = match compiled {
        Ok(config) => config,
        Err(error) => {
            log::error!("{error}");
            return 0;
        }
    };
    if let Err(reason) = declare_properties(&config) {
        log::error!("invalid configuration: field `observability.access_log_encoding`: {reason}");
        return 0;
    }
    let elapsed_ms = match (started, abi::now_nanos().ok()) {
        (Some(start), Some(end)) => end.saturating_sub(start) as f64 / 1e6,
        _ => 0.0,
    };
    log::info!("configuration accepted: {}, in {elapsed_ms:.1} ms", config.summary());
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
    let worker = Worker::new(&config);
    if background::needed(&config) {
        if let Err(status) = abi::set_tick_period_ms(background::TICK_MS) {
            log::warn!("no background refresh: the tick cannot be set ({status:?})");
        }
    }
    with_registry(|registry| {
        let mut host = WasmHost::new(&mut registry.metrics, None);
        crate::stream::prepare_counters(&mut host, &mut config);
        let root = registry.roots.entry(root).or_default();
        root.config = Rc::new(config);
        root.worker = Some(Rc::new(RefCell::new(worker)));
    })
    .map_or(0, |()| 1)
}

/// Declares the access log's `Struct` property when the configuration asks for it, so that Envoy
/// keeps it as a message CEL can read field by field.
fn declare_properties(config: &Config) -> Result<(), String> {
    let Some(declaration) = config.observability.struct_declaration() else { return Ok(()) };
    abi::call_foreign_function("declare_property", &declaration)
        .map(drop)
        .map_err(|status| format!("\"struct\" needs Envoy's `declare_property` foreign function ({status:?})"))
}

/// Background work of a root context (see [`background`]).
#[no_mangle]
pub extern "C" fn proxy_on_tick(root: u32) {
    with_registry(|registry| {
        let Registry { roots, metrics, calls, streams, parents, closing, .. } = registry;
        let Some(Root { config, worker: Some(worker), pace }) = roots.get_mut(&root) else { return };
        let now_ms = abi::now_nanos().map_or(0, |nanos| nanos / 1_000_000);
        let needed = background::needed(config);
        if pace.background_due(needed, now_ms) {
            let mut host = WasmHost::new(metrics, None);
            for (token, job) in background::tick(&mut host, config, &mut worker.borrow_mut()) {
                calls.insert(token, Caller::Root(root, job));
            }
        }
        let Some(period) = pace.settle(needed) else { return };
        // The streams whose cut chunk Envoy has sent on since: each reset as the effective context.
        closing.retain(|&(context, parent)| {
            if parent != root {
                return true;
            }
            if let Some(stream) = streams.get_mut(&context) {
                if abi::set_effective_context(context).is_ok() {
                    let mut host = WasmHost::new(metrics, parents.get(&context).map(|root| (context, *root)));
                    stream.close_after_cut(&mut host);
                }
            }
            false
        });
        if let Err(status) = abi::set_effective_context(root) {
            log::warn!("the root context is not the effective context again after a reset ({status:?})");
        }
        if let Err(status) = abi::set_tick_period_ms(period) {
            log::warn!("the tick cannot be set back after a reset ({status:?})");
        }
    });
}

/// Asks the root context's tick to reset stream `context` soon ([`background::TickPace`]), making
/// the tick fast if it is not: the root is the effective context for that, the stream again after.
fn close_on_next_tick(roots: &mut HashMap<u32, Root>, closing: &mut Vec<(u32, u32)>, context: u32, root: u32) {
    closing.push((context, root));
    let Some(parent) = roots.get_mut(&root) else { return };
    let Some(period) = parent.pace.hurry() else { return };
    let made = abi::set_effective_context(root).and_then(|()| abi::set_tick_period_ms(period));
    match made {
        Ok(()) => parent.pace.hurried(),
        Err(status) => log::warn!("a stream is reset with the backend's next bytes: no tick ({status:?})"),
    }
    if let Err(status) = abi::set_effective_context(context) {
        log::warn!("the request is not the effective context again after setting the tick ({status:?})");
    }
}

// ---------------------------------------------------------------------------------------------
// Stream callbacks.
// ---------------------------------------------------------------------------------------------

fn action(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => 0,
        Flow::Waiting | Flow::Answered => 1,
    }
}

/// Runs `work` on a stream with a host; a stream Envoy never announced continues untouched.
fn on_stream(context: u32, work: impl FnOnce(&mut Stream, &mut WasmHost<'_>) -> Flow) -> u32 {
    with_registry(|registry| {
        let Registry { roots, streams, metrics, calls, parents, waiting, closing, .. } = registry;
        let Some(stream) = streams.get_mut(&context) else { return Flow::Continue };
        let mut host = WasmHost::new(metrics, parents.get(&context).map(|root| (context, *root)));
        let flow = work(stream, &mut host);
        route_calls(calls, waiting, parents, context, stream);
        if stream.take_close_due() {
            if let Some(root) = parents.get(&context) {
                close_on_next_tick(roots, closing, context, *root);
            }
        }
        flow
    })
    .map_or(0, action)
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, end_of_stream: u32) -> u32 {
    on_stream(context, |stream, host| stream.on_request_headers(host, end_of_stream != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context: u32, body_size: usize, end_of_stream: u32) -> u32 {
    on_stream(context, |stream, host| stream.on_request_body(host, body_size, end_of_stream != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context: u32, _trailers: usize) -> u32 {
    on_stream(context, |stream, host| stream.on_request_trailers(host))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    on_stream(context, |stream, host| stream.on_response_headers(host))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context: u32, body_size: usize, end_of_stream: u32) -> u32 {
    on_stream(context, |stream, host| stream.on_response_body(host, body_size, end_of_stream != 0))
}

/// The end of a context. A stream's state goes, but for a call of its own it still waits on: its
/// answer is applied when it comes ([`Stream::on_abandoned_answer`]). A root context's state goes
/// with every call it waits on (Envoy cancels them).
#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    with_registry(|registry| {
        if let Some(mut stream) = registry.streams.remove(&context) {
            let root = registry.parents.remove(&context);
            // What is the stream's is found from the stream (every call and list holds many
            // others: a scan of them on every deletion cost the square of the requests waiting).
            registry.waiting.forget(context);
            registry.closing.retain(|(stream, _)| *stream != context);
            let own = stream.own_pending_call();
            if let Some(token) = own {
                if matches!(registry.calls.get(&token), Some(Caller::Stream(caller)) if *caller == context) {
                    registry.calls.remove(&token);
                }
            }
            if let (Some(token), Some(root)) = (own, root) {
                stream.abandon();
                registry.calls.insert(token, Caller::Abandoned);
                registry.abandoned.insert(token, (root, stream));
            }
        } else {
            registry.roots.remove(&context);
            registry.closing.retain(|(_, root)| *root != context);
            let Registry { calls, abandoned, .. } = registry;
            calls.retain(|_, caller| !matches!(caller, Caller::Root(root, _) if *root == context));
            abandoned.retain(|token, (root, _)| {
                let keep = *root != context;
                if !keep {
                    calls.remove(token);
                }
                keep
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Call answers (delivered on the root context).
// ---------------------------------------------------------------------------------------------

/// Records who waits for the calls a stream started in its last callback: the stream itself, or
/// its root context for background calls (a JWKS fetch among them, which the stream waits for).
fn route_calls(
    calls: &mut HashMap<u32, Caller>,
    waiting: &mut FetchWaiters,
    parents: &HashMap<u32, u32>,
    context: u32,
    stream: &mut Stream,
) {
    if let Some(token) = stream.take_started_call() {
        calls.insert(token, Caller::Stream(context));
    }
    if let Some(fetch) = stream.take_awaited_fetch() {
        waiting.wait(fetch, context);
    }
    let background = stream.take_background_calls();
    if let Some(root) = parents.get(&context) {
        for (token, job) in background {
            calls.insert(token, Caller::Root(*root, job));
        }
    }
}

/// What resuming the requests that wait for another's call touches of the registry.
struct Waiters<'a> {
    streams: &'a mut HashMap<u32, Stream>,
    metrics: &'a mut Metrics,
    calls: &'a mut HashMap<u32, Caller>,
    parents: &'a HashMap<u32, u32>,
    waiting: &'a mut FetchWaiters,
}

/// The requests that waited for call `token` (a worker's JWKS fetch, or another request's
/// introspection of the same token) go on with its answer, each as the effective context.
fn resume_waiters(token: u32, answer: &Answer, registry: Waiters<'_>) {
    let Waiters { streams, metrics, calls, parents, waiting } = registry;
    for context in waiting.answered(token) {
        let Some(stream) = streams.get_mut(&context) else { continue };
        if abi::set_effective_context(context).is_err() {
            continue;
        }
        let mut host = WasmHost::new(metrics, parents.get(&context).map(|root| (context, *root)));
        stream.on_call_response(&mut host, token, answer.clone());
        route_calls(calls, waiting, parents, context, stream);
    }
}

/// Routes a call's answer to whoever waits for it. `answer(stream_body)` builds the answer; with
/// `stream_body` an HTTP body stays in Envoy (`Answer::HttpStream`) and is read in pieces.
fn deliver(token: u32, answer: impl FnOnce(bool) -> Answer) {
    with_registry(|registry| {
        let Registry { roots, streams, metrics, calls, parents, waiting, abandoned, .. } = registry;
        match calls.remove(&token) {
            Some(Caller::Stream(context)) => {
                let answer = answer(false);
                // Copied only for requests that wait for this call (an introspection of the same
                // token): every other call's answer goes to its stream alone, uncopied.
                let for_waiters = waiting.is_awaited(token).then(|| answer.clone());
                if let Some(stream) = streams.get_mut(&context) {
                    if abi::set_effective_context(context).is_ok() {
                        let mut host = WasmHost::new(metrics, parents.get(&context).map(|root| (context, *root)));
                        stream.on_call_response(&mut host, token, answer);
                        route_calls(calls, waiting, parents, context, stream);
                    }
                }
                if let Some(answer) = for_waiters {
                    resume_waiters(token, &answer, Waiters { streams, metrics, calls, parents, waiting });
                }
            }
            Some(Caller::Root(root, job)) => {
                let Some(Root { config, worker: Some(worker), .. }) = roots.get(&root) else { return };
                let answer = answer(background::streams(&job));
                {
                    let mut host = WasmHost::new(metrics, None);
                    let read = |start: usize, length: usize| {
                        abi::buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, start, length)
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    };
                    for (next, job) in
                        background::answered(&mut host, config, &mut worker.borrow_mut(), job, &answer, &read)
                    {
                        calls.insert(next, Caller::Root(root, job));
                    }
                }
                // The requests that waited for this fetch's keys go on (the keys are in the
                // worker now).
                resume_waiters(token, &answer, Waiters { streams, metrics, calls, parents, waiting });
            }
            Some(Caller::Abandoned) => {
                let Some((root, mut stream)) = abandoned.remove(&token) else { return };
                let answer = answer(false);
                let mut host = WasmHost::new(metrics, None);
                stream.on_abandoned_answer(&mut host, token, &answer);
                for (next, job) in stream.take_background_calls() {
                    calls.insert(next, Caller::Root(root, job));
                }
                // Requests that waited for the introspection it made still do.
                resume_waiters(token, &answer, Waiters { streams, metrics, calls, parents, waiting });
            }
            // A call no one made any more (its stream went without a root to keep its state):
            // requests waiting for it still get its answer, never left waiting for nothing.
            None if waiting.is_awaited(token) => {
                resume_waiters(token, &answer(false), Waiters { streams, metrics, calls, parents, waiting });
            }
            None => {}
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(_root: u32, token: u32, headers: usize, body_size: usize, _: usize) {
    deliver(token, |stream_body| {
        if headers == 0 {
            // Envoy reports a failed call (reset, timeout, no cluster) with no headers.
            let code = abi::call_status().map_or(0, |(code, _)| code);
            return Answer::Failed { code };
        }
        let status = abi::header_value(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
            .ok()
            .flatten()
            .and_then(|value| text(&value).and_then(|status| status.parse::<u16>().ok()))
            .unwrap_or(0);
        if stream_body {
            return Answer::HttpStream { status, size: body_size };
        }
        if let Some(refused) = unread_when_too_large(body_size, clock_s()) {
            return refused;
        }
        let body = if body_size == 0 {
            Vec::new()
        } else {
            abi::buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size).ok().flatten().unwrap_or_default()
        };
        Answer::Http { status, body }
    });
}

/// The host's clock in Unix seconds, for log pacing (0 when it cannot be read).
fn clock_s() -> u64 {
    abi::now_nanos().map_or(0, |nanos| nanos / 1_000_000_000)
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(_root: u32, token: u32, message_size: usize) {
    deliver(token, |_| {
        if let Some(refused) = unread_when_too_large(message_size, clock_s()) {
            return refused;
        }
        let message = abi::buffer(abi::BUFFER_GRPC_RECEIVE, 0, message_size).ok().flatten().unwrap_or_default();
        Answer::Grpc { message }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(_root: u32, token: u32, status: u32) {
    deliver(token, |_| Answer::Failed { code: status });
}

// ---------------------------------------------------------------------------------------------
// The Host over the ABI.
// ---------------------------------------------------------------------------------------------

/// [`Host`] over proxy-wasm host calls. Host failures are logged, never unwrapped.
struct WasmHost<'r> {
    metrics: &'r mut Metrics,
    /// In a stream's callback: the stream and its root context, whose calls the stream's are.
    stream: Option<(u32, u32)>,
    /// The host's clock as first read in this callback (nanoseconds): one callback runs in
    /// microseconds, and each host call costs about as much as the filter's own work on a request.
    clock: Cell<Option<u64>>,
}

impl<'r> WasmHost<'r> {
    fn new(metrics: &'r mut Metrics, stream: Option<(u32, u32)>) -> Self {
        WasmHost { metrics, stream, clock: Cell::new(None) }
    }

    fn now_nanos(&self) -> Result<u64, HostError> {
        if let Some(nanos) = self.clock.get() {
            return Ok(nanos);
        }
        let nanos = abi::now_nanos()?;
        self.clock.set(Some(nanos));
        Ok(nanos)
    }
}

fn set_header(map: u32, name: &str, value: Option<&[u8]>) {
    let result = match value {
        Some(value) => abi::replace_header(map, name, value),
        None => abi::remove_header(map, name),
    };
    if let Err(status) = result {
        log::warn!("cannot set header {name}: {status:?}");
    }
}

impl SharedStore for WasmHost<'_> {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        abi::shared_get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        abi::shared_set(key, value, cas)
    }
}

impl Host for WasmHost<'_> {
    fn request_headers(&self) -> Vec<Header> {
        abi::header_pairs(abi::MAP_REQUEST_HEADERS)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| {
                // Envoy's names are valid UTF-8 (they are tokens): kept as they are, not copied.
                let name = String::from_utf8(name)
                    .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
                (name, value)
            })
            .collect()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        set_header(abi::MAP_REQUEST_HEADERS, name, value);
    }

    fn request_trailer_names(&self) -> Vec<String> {
        abi::header_pairs(abi::MAP_REQUEST_TRAILERS)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| {
                String::from_utf8(name).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
            })
            .collect()
    }

    fn remove_request_trailer(&mut self, name: &str) {
        set_header(abi::MAP_REQUEST_TRAILERS, name, None);
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        abi::header_value(abi::MAP_RESPONSE_HEADERS, name).ok().flatten()
    }

    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        set_header(abi::MAP_RESPONSE_HEADERS, name, value);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::property(path).ok().flatten()
    }

    fn set_property(&mut self, name: &str, value: &[u8]) {
        let _ = abi::set_property(&[name], value);
    }

    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>) {
        let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
        let grpc_status = grpc_status.map_or(-1, i32::from);
        if let Err(status) = abi::send_local_response(u32::from(status), "apim_filter", body, &pairs, grpc_status) {
            log::error!("cannot send the local reply: {status:?}");
        }
    }

    fn count(&mut self, name: &str) {
        self.metrics.count(name);
    }

    fn now(&self) -> Result<u64, HostError> {
        self.now_nanos().map(|nanos| nanos / 1_000_000_000)
    }

    fn now_ms(&self) -> Result<u64, HostError> {
        self.now_nanos().map(|nanos| nanos / 1_000_000)
    }

    fn fresh_now_ms(&self) -> Result<u64, HostError> {
        abi::now_nanos().map(|nanos| nanos / 1_000_000)
    }

    fn call(&mut self, call: &Call) -> Result<u32, HostError> {
        // A stream's call is made as its root context's, so that Envoy does not cancel it when
        // it deletes the stream; the stream is the effective context again right after.
        let as_root = self.stream.filter(|(_, root)| match abi::set_effective_context(*root) {
            Ok(()) => true,
            Err(status) => {
                log::warn!(
                    "a call is the request's, not the worker's: the root context cannot be made effective ({status:?})"
                );
                false
            }
        });
        let result = match call {
            Call::Http { cluster, headers, body, timeout_ms } => {
                let pairs: Vec<(&str, &[u8])> =
                    headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
                abi::http_call(cluster, &pairs, body, *timeout_ms)
            }
            Call::Grpc { cluster, service, method, message, timeout_ms } => {
                abi::grpc_call(cluster, service, method, &[], message, *timeout_ms)
            }
        };
        if let Some((stream, _)) = as_root {
            if let Err(status) = abi::set_effective_context(stream) {
                log::warn!("the request is not the effective context again after a call ({status:?})");
            }
        }
        if let Err(status) = result {
            // A misnamed cluster fails every request's call: a line now and then.
            // The cluster is the Envoy's, whichever gateway calls it.
            crate::host::warn_repeated("", &format!("call:{}", call.cluster()), clock_s(), || {
                format!("cannot call cluster `{}`: {status:?}", call.cluster())
            });
        }
        result
    }

    fn body_chunk(&self, direction: Direction, size: usize) -> Option<Vec<u8>> {
        abi::buffer(body_buffer(direction), 0, size).ok().flatten()
    }

    fn replace_body_chunk(&mut self, direction: Direction, size: usize, bytes: &[u8]) {
        if let Err(status) = abi::set_buffer(body_buffer(direction), 0, size, bytes) {
            log::warn!("cannot rewrite a body chunk: {status:?}");
        }
    }

    fn close_stream(&mut self) {
        if let Err(status) = abi::close_request() {
            log::warn!("cannot close a stream: {status:?}");
        }
    }

    fn resume_request(&mut self) {
        if let Err(status) = abi::continue_request() {
            log::warn!("cannot resume the request: {status:?}");
        }
    }
}

/// The proxy-wasm buffer of a body direction.
fn body_buffer(direction: Direction) -> u32 {
    match direction {
        Direction::Request => abi::BUFFER_HTTP_REQUEST_BODY,
        Direction::Response => abi::BUFFER_HTTP_RESPONSE_BODY,
    }
}
