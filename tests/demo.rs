//! `make run`'s demo does what the README says: the README's demo lines run against
//! envoy/envoy.yaml (its ports moved to free ones) in a real Envoy, with the demo API key from
//! envoy/demo/credentials.env and a JWT from the README's mint command, and each answers the
//! status and, where the README shows one, the code it promises.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::process::Command;

use common::{free_port, read_repo_file, repo_root, request, Envoy};

struct DemoLine {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    status: u16,
    code: Option<String>,
}

/// The values the README's shell lines set (`source envoy/demo/credentials.env`).
fn variables() -> Vec<(String, String)> {
    let credentials = read_repo_file("envoy/demo/credentials.env");
    let value = |name: &str| {
        credentials
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in envoy/demo/credentials.env"))
            .to_string()
    };
    let jwt = value("DEMO_JWT");
    assert_eq!(jwt.matches('.').count(), 2, "a JWT: {jwt}");
    vec![("$DEMO_API_KEY".to_string(), value("DEMO_API_KEY")), ("$DEMO_JWT".to_string(), jwt)]
}

/// The README's `cargo run --example mint-demo-jwt`: a fresh token the demo accepts.
fn minted_jwt() -> String {
    let output = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--example", "mint-demo-jwt"])
        .current_dir(repo_root())
        .output()
        .expect("run the mint-demo-jwt example");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn demo_lines(variables: &[(String, String)]) -> Vec<DemoLine> {
    let readme = read_repo_file("README.md");
    let start = readme.find("<!-- demo:begin -->").expect("demo block start");
    let end = readme.find("<!-- demo:end -->").expect("demo block end");
    let lines: Vec<DemoLine> = readme[start..end]
        .lines()
        .filter(|line| line.starts_with("curl "))
        .map(|line| {
            let (command, expectation) = line.split_once("# -> ").expect("each demo line says `# -> STATUS`");
            let mut headers = Vec::new();
            let mut rest = command;
            while let Some(at) = rest.find("-H \"") {
                let after = &rest[at + 4..];
                let close = after.find('"').expect("closing quote");
                let mut header = after[..close].to_string();
                for (name, value) in variables {
                    header = header.replace(name, value);
                }
                let (name, value) = header.split_once(':').expect("Name: value");
                headers.push((name.trim().to_string(), value.trim().to_string()));
                rest = &after[close + 1..];
            }
            let words: Vec<&str> = command.split_whitespace().collect();
            let method =
                words.iter().position(|w| *w == "-X").map(|i| words[i + 1].to_string()).unwrap_or("GET".into());
            let url = words.iter().find(|w| w.starts_with("http://")).expect("a URL");
            let path = url.trim_start_matches("http://127.0.0.1:8080").to_string();
            let status = expectation.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().expect("a status");
            let code = expectation
                .split("\"code\":\"")
                .nth(1)
                .map(|rest| rest.split('"').next().unwrap_or_default().to_string());
            DemoLine { method, path, headers, status, code }
        })
        .collect();
    assert!(lines.len() >= 8, "the README shows the demo lines");
    lines
}

/// Envoy with envoy/envoy.yaml as shipped, its ports moved to free ones.
fn launch_demo() -> Envoy {
    let (port, backend_port, admin_port) = (free_port(), free_port(), free_port());
    let yaml = read_repo_file("envoy/envoy.yaml")
        .replace("port_value: 8080", &format!("port_value: {port}"))
        .replace("port_value: 8081", &format!("port_value: {backend_port}"))
        .replace("port_value: 9901", &format!("port_value: {admin_port}"));
    Envoy::launch(&yaml, 2, port, admin_port, "demo").unwrap_or_else(|log| panic!("{log}"))
}

#[test]
fn readme_demo_lines_hold_against_the_shipped_config() {
    let envoy = launch_demo();
    let lines = demo_lines(&variables());
    for api in ["/pizzashack/1.0.0", "/legacy/1.0.0", "/deadend/1.0.0"] {
        assert!(lines.iter().any(|line| line.path.starts_with(api)), "the README shows {api}");
    }
    assert!(lines.iter().any(|line| line.headers.iter().any(|(name, _)| name == "apikey") && line.status == 200));
    assert!(lines
        .iter()
        .any(|line| line.headers.iter().any(|(name, _)| name == "Authorization") && line.status == 200));
    let minted = format!("Bearer {}", minted_jwt());
    let response = request(envoy.port, "GET", "/pizzashack/1.0.0/order/7", &[("Authorization", minted.as_str())], None);
    assert_eq!(response.status, 200, "a freshly minted demo JWT works: {}", response.body);
    for line in lines {
        let headers: Vec<(&str, &str)> = line.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let response = request(envoy.port, &line.method, &line.path, &headers, None);
        assert_eq!(response.status, line.status, "{} {}: {}", line.method, line.path, response.body);
        if let Some(code) = line.code {
            assert_eq!(response.json()["code"], code.as_str(), "{} {}", line.method, line.path);
        } else {
            assert!(!response.body.contains("\"code\""), "a backend answer, not a fault: {}", response.body);
        }
    }
}

/// The README's throttling line: the demo's `GET /menu` allows 5 calls a minute; the next ones
/// answer 429 with 900802 and `Retry-After`.
#[test]
fn the_demo_menu_allows_five_calls_a_minute() {
    let envoy = launch_demo();
    let key = variables().into_iter().find(|(name, _)| name == "$DEMO_API_KEY").unwrap().1;
    // Seven calls in one minute window: wait out the end of a minute that is about to roll over.
    common::windows::away_from_window_end(60, 10);
    let readme = read_repo_file("README.md");
    assert!(readme.contains("for i in 1 2 3 4 5 6 7;"), "the README's loop makes seven calls");
    let responses: Vec<_> = (0..7)
        .map(|_| request(envoy.port, "GET", "/pizzashack/1.0.0/menu", &[("apikey", key.as_str())], None))
        .collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(responses[5].json()["code"], "900802");
    assert!(responses[5].header("retry-after").is_some());
    assert_eq!(responses[4].header("ratelimit-remaining"), Some("0"));
}
