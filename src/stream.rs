//! One HTTP stream through the filter: gathers the request view, applies the decision, and in the
//! response phase swaps Envoy's plain-text upstream-failure replies for the transport fault.
//! Talks to Envoy only through [`Host`], so it runs natively in tests against a fake host.

use std::rc::Rc;

use crate::catalogue::Fault;
use crate::config::Config;
use crate::decision::{self, RequestView, Verdict};
use crate::render::{self, Rendered};
use crate::transport::{self, ResponseView};

/// What the stream needs from Envoy. The proxy-wasm adapter implements it over host calls.
pub trait Host {
    fn request_header(&self, name: &str) -> Option<String>;
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
}

/// Whether Envoy should continue with the stream or wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop iteration (and, in a body callback, buffer).
    Pause,
}

/// The per-request state.
pub struct Stream {
    config: Rc<Config>,
    origin: Option<String>,
    /// The filter answered this request itself: its response is not classified again.
    answered_locally: bool,
    request_complete: bool,
    request_body_started: bool,
    /// A fault body waiting to replace Envoy's reply body.
    pending_body: Option<String>,
}

impl Stream {
    pub fn new(config: Rc<Config>) -> Self {
        Stream {
            config,
            origin: None,
            answered_locally: false,
            request_complete: false,
            request_body_started: false,
            pending_body: None,
        }
    }

    pub fn on_request_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Flow {
        self.request_complete = end_of_stream;
        let config = Rc::clone(&self.config);
        // Headers only the filter may set: a client's copy never reaches the router.
        host.set_request_header(&config.routing.cluster_header, None);
        host.set_request_header(&config.routing.api_header, None);

        let method = host.request_header(":method").unwrap_or_default();
        let path = host.request_header(":path").unwrap_or_default();
        let authorization = host.request_header(&config.credentials.authorization_header);
        let api_key = host.request_header(&config.credentials.api_key_header);
        let preflight_method = host.request_header("access-control-request-method");
        self.origin = host.request_header("origin");
        let view = RequestView {
            method: &method,
            path: &path,
            authorization: authorization.as_deref(),
            api_key: api_key.as_deref(),
            access_control_request_method: preflight_method.as_deref(),
        };
        match decision::decide(&config, &view) {
            Verdict::PassThrough => Flow::Continue,
            Verdict::Forward(forward) => {
                host.set_request_header(&config.routing.cluster_header, Some(&forward.cluster));
                host.set_request_header(&config.routing.api_header, Some(&forward.api_label));
                if let Some(upstream_path) = &forward.upstream_path {
                    host.set_request_header(":path", Some(upstream_path));
                }
                if config.credentials.strip {
                    host.set_request_header(&config.credentials.authorization_header, None);
                    host.set_request_header(&config.credentials.api_key_header, None);
                }
                Flow::Continue
            }
            Verdict::Preflight => {
                let headers = match &config.errors.cors {
                    Some(cors) => render::cors_headers(cors, self.origin.as_deref(), true),
                    None => Vec::new(),
                };
                self.answered_locally = true;
                host.send_response(200, &headers, b"");
                Flow::Pause
            }
            Verdict::Deny(fault) => {
                self.answer(host, &fault);
                Flow::Pause
            }
        }
    }

    pub fn on_request_body(&mut self, end_of_stream: bool) -> Flow {
        self.request_body_started = true;
        if end_of_stream {
            self.request_complete = true;
        }
        Flow::Continue
    }

    pub fn on_request_trailers(&mut self) -> Flow {
        self.request_complete = true;
        Flow::Continue
    }

    pub fn on_response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Flow {
        if self.answered_locally {
            return Flow::Continue;
        }
        let status = host
            .response_header(":status")
            .and_then(|status| status.parse::<u16>().ok())
            .unwrap_or(0);
        let details = host
            .property(&["response", "code_details"])
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let flags = host
            .property(&["response", "flags"])
            .map(|bytes| le_u64(&bytes))
            .unwrap_or(0);
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

    pub fn on_response_body(
        &mut self,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if self.pending_body.is_none() {
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

    fn answer(&mut self, host: &mut impl Host, fault: &Fault) {
        let Rendered {
            status,
            headers,
            body,
        } = render::render(fault, &self.config.errors, self.origin.as_deref());
        self.answered_locally = true;
        host.count_fault(fault.code);
        host.send_response(status, &headers, body.as_bytes());
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
    }

    impl FakeHost {
        fn request(pairs: &[(&str, &str)]) -> Self {
            FakeHost {
                request: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }
        }
    }

    impl Host for FakeHost {
        fn request_header(&self, name: &str) -> Option<String> {
            self.request.get(name).cloned()
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
    }

    fn config() -> Rc<Config> {
        let json = r#"{"apis":[{"name":"P","context":"/p","version":"1","security":[],
            "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#;
        Rc::new(Config::from_json(json.as_bytes()).unwrap())
    }

    #[test]
    fn forwarded_requests_get_routing_headers_and_lose_spoofed_ones_and_credentials() {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/p/1/menu?x=1"),
            ("x-apim-cluster", "admin"),
            ("authorization", "Bearer abc"),
        ]);
        let mut stream = Stream::new(config());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
        assert_eq!(host.request["x-apim-cluster"], "backend");
        assert_eq!(host.request["x-apim-api"], "P:1");
        assert_eq!(host.request[":path"], "/menu?x=1");
        assert!(!host.request.contains_key("authorization"));
        assert!(host.sent.is_none());
    }

    #[test]
    fn denied_requests_are_answered_counted_and_not_reclassified() {
        let mut host = FakeHost::request(&[
            (":method", "GET"),
            (":path", "/nowhere"),
            ("x-apim-cluster", "admin"),
        ]);
        let mut stream = Stream::new(config());
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Pause);
        let (status, _, body) = host.sent.clone().unwrap();
        assert_eq!(status, 404);
        assert!(String::from_utf8(body).unwrap().contains("\"404\""));
        assert_eq!(host.counted, vec![404]);
        assert!(!host.request.contains_key("x-apim-cluster"));
        // Our own reply passes through the response phase untouched.
        host.response.insert(":status".into(), "404".into());
        host.properties
            .insert("response.flags".into(), 0x100u64.to_le_bytes().to_vec());
        assert_eq!(stream.on_response_headers(&mut host, false), Flow::Continue);
        assert_eq!(host.counted, vec![404]);
    }

    #[test]
    fn envoy_upstream_failure_reply_is_rewritten() {
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
        let mut stream = Stream::new(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), "503".into());
        host.response.insert("content-length".into(), "91".into());
        host.response
            .insert("content-type".into(), "text/plain".into());
        host.properties
            .insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
        host.properties.insert(
            "response.code_details".into(),
            b"upstream_reset_before_response_started{x}".to_vec(),
        );
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
        let mut stream = Stream::new(config());
        stream.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), "500".into());
        host.properties
            .insert("response.code_details".into(), b"via_upstream".to_vec());
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
}
