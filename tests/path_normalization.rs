//! The matcher behind Envoy's own path options, on and off (PEERS: CVE-2019-9901): with
//! `normalize_path`, `merge_slashes` and each `path_with_escaped_slashes_action`, through a real
//! Envoy, no spelling of a path lets a request without credentials reach a secured resource, and
//! the canonical paths keep their policy.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use common::{Backend, Envoy, EnvoySetup};
use serde_json::{json, Value};

/// Envoy's path options, as the connection manager's YAML lines; the first is the default.
const MODES: &[(&str, &[&str])] = &[
    ("Envoy's defaults", &[]),
    ("normalize_path", &["normalize_path: true"]),
    ("merge_slashes", &["merge_slashes: true"]),
    ("escaped slashes KEEP_UNCHANGED", &["path_with_escaped_slashes_action: KEEP_UNCHANGED"]),
    ("escaped slashes REJECT_REQUEST", &["path_with_escaped_slashes_action: REJECT_REQUEST"]),
    ("escaped slashes UNESCAPE_AND_REDIRECT", &["path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT"]),
    ("escaped slashes UNESCAPE_AND_FORWARD", &["path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD"]),
    (
        "all three",
        &["normalize_path: true", "merge_slashes: true", "path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD"],
    ),
];

/// Spellings that some reading (Envoy's, a backend's) resolves to the secured `/admin` while the
/// open `/menu` comes first.
const ATTACKS: &[&str] = &[
    "/shop/1.0.0/menu/../admin/x",
    "/shop/1.0.0/menu/./../admin/x",
    "/shop/1.0.0/menu/%2e%2e/admin/x",
    "/shop/1.0.0/menu/%2E%2E/admin/x",
    "/shop/1.0.0/menu/.%2e/admin/x",
    "/shop/1.0.0/menu/%2e/../admin/x",
    "/shop/1.0.0/menu%2F..%2Fadmin/x",
    "/shop/1.0.0/menu/..%2Fadmin/x",
    "/shop/1.0.0/menu/..%2fadmin/x",
    "/shop/1.0.0/menu%5C..%5Cadmin/x",
    "/shop/1.0.0/menu/..%5cadmin/x",
    "/shop/1.0.0/menu\\..\\admin/x",
    "/shop/1.0.0/menu/..;/admin/x",
    "/shop/1.0.0/menu;/../admin/x",
    "/shop/1.0.0/menu;x=%2F..%2Fadmin/x",
    "/shop/1.0.0/menu;%2F..%2Fadmin",
    "/shop/1.0.0//menu/../admin/x",
    "/shop/1.0.0/menu//..//admin/x",
    "/shop/1.0.0/menu/..%00/admin/x",
    "/shop/1.0.0/menu/%2e%2e%2fadmin/x",
    "/shop/1.0.0/menu/x/../../admin/x",
    "/shop/1.0.0/menu/..?/../admin/x",
    "/shop/1.0.0/menu/x%3b/../../admin/x",
];

fn config() -> String {
    json!({
        "apis": [{"name": "Shop", "context": "/shop", "version": "1.0.0", "security": ["api_key"],
            "endpoints": {"production": "live"},
            "resources": [
                {"method": "GET", "path": "/menu/*", "security": []},
                {"method": "GET", "path": "/admin/*"}
            ]}],
        "applications": [{"id": "app-1", "name": "App", "owner": "o",
            "api_keys": [{"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]}],
        "subscriptions": [{"application": "app-1", "api": "Shop:1.0.0"}]
    })
    .to_string()
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[at], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path a backend serves for a request target, read as leniently as backends do: the query
/// dropped, `%xx` decoded `decodings` times, `\` taken for `/`, `;` parameters dropped, empty and
/// `.` segments skipped, `..` resolved.
fn served(target: &str, decodings: usize) -> String {
    let mut path = target.split('?').next().unwrap_or_default().to_string();
    for _ in 0..decodings {
        path = percent_decoded(&path);
    }
    let path = path.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment.split(';').next().unwrap_or_default().trim_end_matches('\0') {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    format!("/{}", segments.join("/"))
}

#[test]
fn the_reading_of_a_path_a_backend_serves_resolves_every_trick() {
    assert_eq!(served("/shop/1.0.0/menu/%2e%2e/admin/x", 1), "/shop/1.0.0/admin/x");
    assert_eq!(served("/shop/1.0.0/menu%5C..%5Cadmin/x", 1), "/shop/1.0.0/admin/x");
    assert_eq!(served("/shop/1.0.0/menu/..;/admin/x", 0), "/shop/1.0.0/admin/x");
    assert_eq!(served("/shop/1.0.0/menu;%2F..%2Fadmin", 1), "/shop/1.0.0/admin");
    assert_eq!(served("/shop/1.0.0/menu/x?/../admin", 1), "/shop/1.0.0/menu/x");
}

fn code(response: &common::Response) -> Option<String> {
    let body: Value = serde_json::from_str(&response.body).ok()?;
    body["code"].as_str().map(String::from).or_else(|| body["code"].as_u64().map(|code| code.to_string()))
}

#[test]
fn no_spelling_reaches_a_secured_resource_without_credentials_whatever_envoy_normalizes() {
    for (mode, options) in MODES {
        let backend = Backend::start();
        let envoy = Envoy::start(
            &config(),
            EnvoySetup {
                clusters: vec![("live".into(), backend.port)],
                connection_manager: options.iter().map(|line| line.to_string()).collect(),
                ..Default::default()
            },
        );

        // The canonical paths keep their policy in every mode.
        assert_eq!(envoy.get("/shop/1.0.0/menu/x").status, 200, "{mode}: the open resource is open");
        let secured = envoy.get("/shop/1.0.0/admin/x");
        assert_eq!((secured.status, code(&secured).as_deref()), (401, Some("900902")), "{mode}: /admin is secured");
        let keyed = envoy.send("GET", "/shop/1.0.0/admin/x", &[("apikey", "test")], None);
        assert_eq!(keyed.status, 200, "{mode}: a key opens /admin");
        // What docs/HOWTO.md's table says each mode answers.
        let documented = |path: &str| {
            let response = envoy.get(path);
            let answer = (response.status, code(&response));
            match response.status {
                307 => {
                    let location = response.header("location").expect("a redirect names its target");
                    let followed = envoy.get(&location[location.find("/shop").expect("the path")..]);
                    format!("307 then {} {}", followed.status, code(&followed).unwrap_or_default())
                }
                _ => format!("{} {}", answer.0, answer.1.unwrap_or_default()),
            }
        };
        let expected = match *mode {
            "Envoy's defaults" => Some(["403 900906", "403 900906"]),
            "normalize_path" => Some(["401 900902", "403 900906"]),
            "escaped slashes REJECT_REQUEST" => Some(["403 900906", "400 "]),
            "escaped slashes UNESCAPE_AND_REDIRECT" => Some(["403 900906", "307 then 403 900906"]),
            "all three" => Some(["401 900902", "401 900902"]),
            _ => None,
        };
        if let Some([dots, escaped]) = expected {
            assert_eq!(documented("/shop/1.0.0/menu/../admin/x"), dots, "{mode}: HOWTO's table, dot segments");
            assert_eq!(documented("/shop/1.0.0/menu/..%2Fadmin/x"), escaped, "{mode}: HOWTO's table, %2F");
        }
        let before = backend.requests().len();

        for attack in ATTACKS {
            let response = envoy.get(attack);
            assert!(
                matches!(response.status, 200 | 301 | 307 | 308 | 400 | 401 | 403 | 404),
                "{mode}: {attack} answered {}: {}",
                response.status,
                response.body
            );
            // The filter's answers: no credentials for /admin, or a path it will not match.
            match response.status {
                401 => assert_eq!(code(&response).as_deref(), Some("900902"), "{mode}: {attack}: {}", response.body),
                403 => assert_eq!(code(&response).as_deref(), Some("900906"), "{mode}: {attack}: {}", response.body),
                _ => {}
            }
            eprintln!("{mode}: {attack} -> {}", response.status);
            if (301..=308).contains(&response.status) {
                // Envoy's redirect to the unescaped path: following it meets the filter again.
                let location = response.header("location").expect("a redirect names its target");
                let target = location.find("/shop").map(|at| &location[at..]).unwrap_or(location);
                let followed = envoy.get(target);
                assert!(
                    matches!(followed.status, 400 | 401 | 403 | 404),
                    "{mode}: {attack} redirected to {target}, which answered {}",
                    followed.status
                );
            }
        }

        // Whatever went upstream without a key (the context and version stripped) is served under
        // /menu by every backend reading.
        let reached: Vec<String> = backend.requests().into_iter().skip(before).map(|received| received.path).collect();
        for path in &reached {
            for decodings in 0..=2 {
                let served = served(path, decodings);
                assert!(
                    served.starts_with("/menu/") || served == "/menu",
                    "{mode}: {path} went upstream without credentials; decoded {decodings} times it serves {served}"
                );
            }
        }
        let log = envoy.log();
        assert!(!log.contains("panicked") && !log.contains("internal error"), "{mode}: the VM stayed healthy");
    }
}
