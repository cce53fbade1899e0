//! `make run`'s demo does what the README says: the README's demo lines run against
//! envoy/envoy.yaml (its ports moved to free ones) in a real Envoy, and each answers the status
//! and, where the README shows one, the code it promises.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, read_repo_file, request, Envoy};

struct DemoLine {
    method: String,
    path: String,
    status: u16,
    code: Option<String>,
}

fn demo_lines() -> Vec<DemoLine> {
    let readme = read_repo_file("README.md");
    let start = readme
        .find("<!-- demo:begin -->")
        .expect("demo block start");
    let end = readme.find("<!-- demo:end -->").expect("demo block end");
    let lines: Vec<DemoLine> = readme[start..end]
        .lines()
        .filter(|line| line.starts_with("curl "))
        .map(|line| {
            let (command, expectation) = line
                .split_once("# -> ")
                .expect("each demo line says `# -> STATUS`");
            let words: Vec<&str> = command.split_whitespace().collect();
            let method = words
                .iter()
                .position(|w| *w == "-X")
                .map(|i| words[i + 1].to_string())
                .unwrap_or("GET".into());
            let url = words
                .iter()
                .find(|w| w.starts_with("http://"))
                .expect("a URL");
            let path = url.trim_start_matches("http://127.0.0.1:8080").to_string();
            let status = expectation
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .expect("a status");
            let code = expectation
                .split("\"code\":\"")
                .nth(1)
                .map(|rest| rest.split('"').next().unwrap_or_default().to_string());
            DemoLine {
                method,
                path,
                status,
                code,
            }
        })
        .collect();
    assert!(lines.len() >= 6, "the README shows the demo lines");
    lines
}

#[test]
fn readme_demo_lines_hold_against_the_shipped_config() {
    let (port, backend_port, admin_port) = (free_port(), free_port(), free_port());
    let yaml = read_repo_file("envoy/envoy.yaml")
        .replace("port_value: 8080", &format!("port_value: {port}"))
        .replace("port_value: 8081", &format!("port_value: {backend_port}"))
        .replace("port_value: 9901", &format!("port_value: {admin_port}"));
    let envoy =
        Envoy::launch(&yaml, 2, port, admin_port, "demo").unwrap_or_else(|log| panic!("{log}"));
    let apis = ["/pizzashack/1.0.0", "/legacy/1.0.0", "/deadend/1.0.0"];
    let lines = demo_lines();
    for api in apis {
        assert!(
            lines.iter().any(|line| line.path.starts_with(api)),
            "the README shows {api}"
        );
    }
    for line in lines {
        let response = request(envoy.port, &line.method, &line.path, &[], None);
        assert_eq!(
            response.status, line.status,
            "{} {}: {}",
            line.method, line.path, response.body
        );
        if let Some(code) = line.code {
            assert_eq!(
                response.json()["code"],
                code.as_str(),
                "{} {}",
                line.method,
                line.path
            );
        } else {
            assert!(
                !response.body.contains("\"code\""),
                "a backend answer, not a fault: {}",
                response.body
            );
        }
    }
}
