//! The proxy-wasm glue, and the only module that uses the SDK: the root context parses the
//! configuration in `on_configure` (refusing a bad one with a log line naming the field), and each
//! HTTP context hands Envoy's callbacks to [`crate::stream::Stream`] through [`WasmHost`].
//!
//! Host calls go through `proxy_wasm::hostcalls`, whose `Result`s are handled here rather than
//! unwrapped, so an unexpected host status never kills the VM from our code.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config::Config;
use crate::stream::{Flow, Host, Stream, VmState};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Fault counters (`apim.fault.<code>` in Envoy's stats, under the `wasmcustom.` prefix),
/// defined on first use and shared by the VM's streams.
#[derive(Default)]
struct Metrics {
    ids: HashMap<u32, u32>,
}

impl Metrics {
    fn count(&mut self, code: u32) {
        let id = match self.ids.get(&code) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, &format!("apim.fault.{code}")) {
                Ok(id) => {
                    self.ids.insert(code, id);
                    id
                }
                Err(status) => {
                    log::warn!("cannot define the counter for fault {code}: {status:?}");
                    return;
                }
            },
        };
        if let Err(status) = hostcalls::increment_metric(id, 1) {
            log::warn!("cannot count fault {code}: {status:?}");
        }
    }
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
    vm: Rc<RefCell<Option<Rc<RefCell<VmState>>>>>,
    metrics: Rc<RefCell<Metrics>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log::error!("invalid configuration: field `(root)`: cannot read it ({status:?})");
                return false;
            }
        };
        let started = hostcalls::get_current_time().ok();
        let parsed = Config::parse(&bytes);
        drop(bytes);
        match parsed.and_then(Config::compile) {
            Ok(config) => {
                let elapsed_ms = match (started, hostcalls::get_current_time().ok()) {
                    (Some(start), Some(end)) => {
                        end.duration_since(start).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
                    }
                    _ => 0.0,
                };
                log::info!(
                    "configuration accepted: {} APIs, {} applications, {} subscriptions, errors as {:?}, in {elapsed_ms:.1} ms",
                    config.apis.len(),
                    config.applications.len(),
                    config.subscriptions.len(),
                    config.errors.format
                );

                let vm = VmState::new(&config);
                let mut host = WasmHost { metrics: Rc::clone(&self.metrics) };
                crate::stream::prepare_counters(&mut host, &config);
                self.config = Rc::new(config);
                if let Ok(mut slot) = self.vm.try_borrow_mut() {
                    *slot = Some(Rc::new(RefCell::new(vm)));
                }
                true
            }
            Err(error) => {
                log::error!("{error}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self
            .vm
            .try_borrow()
            .ok()
            .and_then(|slot| slot.clone())
            .unwrap_or_else(|| Rc::new(RefCell::new(VmState::new(&self.config))));
        Some(Box::new(Http {
            stream: Stream::new(Rc::clone(&self.config), vm),
            host: WasmHost { metrics: Rc::clone(&self.metrics) },
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    stream: Stream,
    host: WasmHost,
}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let status = hostcalls::get_map(MapType::HttpCallResponseHeaders)
            .ok()
            .and_then(|headers| headers.into_iter().find(|(name, _)| name == ":status"))
            .and_then(|(_, value)| value.parse::<u16>().ok());
        let body = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
        };
        self.stream.on_call_response(&mut self.host, token_id, status, &body);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_request_headers(&mut self.host, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_request_body(&mut self.host, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.stream.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_response_headers(&mut self.host, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_response_body(&mut self.host, body_size, end_of_stream))
    }
}

/// [`Host`] over proxy-wasm host calls.
struct WasmHost {
    metrics: Rc<RefCell<Metrics>>,
}

fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value(map, name).ok().flatten()
}

fn set_header(map: MapType, name: &str, value: Option<&str>) {
    if let Err(status) = hostcalls::set_map_value(map, name, value) {
        log::warn!("cannot set header {name}: {status:?}");
    }
}

impl Host for WasmHost {
    fn request_header(&self, name: &str) -> Option<String> {
        header(MapType::HttpRequestHeaders, name)
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        set_header(MapType::HttpRequestHeaders, name, value);
    }

    fn response_header(&self, name: &str) -> Option<String> {
        header(MapType::HttpResponseHeaders, name)
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        set_header(MapType::HttpResponseHeaders, name, value);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8]) {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let body = if body.is_empty() { None } else { Some(body) };
        if let Err(status) = hostcalls::send_http_response(u32::from(status), pairs, body) {
            log::error!("cannot send the local reply: {status:?}");
        }
    }

    fn replace_response_body(&mut self, current_size: usize, body: &[u8]) {
        if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, current_size, body) {
            log::error!("cannot replace the response body: {status:?}");
        }
    }

    fn count_fault(&mut self, code: u32) {
        if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
            metrics.count(code);
        }
    }

    fn now(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0)
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas)),
            _ => None,
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Option<u32> {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        match hostcalls::dispatch_http_call(cluster, pairs, body, Vec::new(), Duration::from_millis(timeout_ms)) {
            Ok(token) => Some(token),
            Err(status) => {
                log::warn!("cannot call cluster `{cluster}`: {status:?}");
                None
            }
        }
    }

    fn resume_request(&mut self) {
        if let Err(status) = hostcalls::resume_http_request() {
            log::warn!("cannot resume the request: {status:?}");
        }
    }
}
