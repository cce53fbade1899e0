//! What the user docs show works as shown: every JSON configuration in README.md and
//! docs/HOWTO.md loads through the filter's own loader (the one `on_configure` runs), a fragment
//! (`"backend_jwt": {...}`) as the only member of a configuration, its placeholders filled with
//! the test fixtures; and the HOWTO's commands start services on ports the shipped Envoy configs
//! leave free.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use apim_filter::config::Config;
use common::read_repo_file;

/// The fenced blocks of `language` in a Markdown text.
fn blocks<'a>(text: &'a str, language: &str) -> Vec<&'a str> {
    let opening = format!("```{language}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&opening) {
        let body = &rest[at + opening.len()..];
        let end = body.find("```").expect("a closed block");
        found.push(body[..end].trim());
        rest = &body[end + 3..];
    }
    found
}

/// The placeholders the docs write where a user puts their own values.
fn filled(snippet: &str) -> String {
    let certificate = serde_json::to_string(&read_repo_file("tests/fixtures/keys/rsa-a.crt")).unwrap();
    snippet
        .replace(r#""-----BEGIN CERTIFICATE-----\n...""#, &certificate)
        .replace(r#""<the PEM text of backend-jwt.crt>""#, &certificate)
}

#[test]
fn every_json_configuration_in_the_docs_loads() {
    // The environment the docs tell users to give Envoy.
    std::env::set_var("APIM_BACKEND_JWT_KEY", read_repo_file("tests/fixtures/keys/rsa-a.pem"));
    std::env::set_var("APIM_EVENTHUB_PASSWORD", "admin");
    std::env::set_var("APIM_KM_CLIENT_SECRET", "gateway-secret");
    let mut checked = 0;
    for file in ["README.md", "docs/HOWTO.md"] {
        for snippet in blocks(&read_repo_file(file), "json") {
            let snippet = filled(snippet);
            let json = if snippet.starts_with('{') { snippet.clone() } else { format!("{{{snippet}}}") };
            if let Err(error) = Config::from_json(json.as_bytes()) {
                panic!("{file} shows a configuration the filter refuses: {error}\n{snippet}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "the docs' configurations are found ({checked})");
}

/// Envoy sees a file-based configuration change only as a move into place (inotify's
/// `IN_MOVED_TO`); a `mv` from another directory may cross file systems (a tmpfs `/tmp`) and is
/// then a copy, which Envoy never applies. The HOWTO's update moves within the target's directory.
#[test]
fn the_howto_replaces_a_watched_file_by_a_move_within_its_directory() {
    let howto = read_repo_file("docs/HOWTO.md");
    let moves: Vec<(&str, &str)> = blocks(&howto, "sh")
        .into_iter()
        .flat_map(str::lines)
        .filter_map(|line| line.trim().strip_prefix("mv "))
        .map(|arguments| {
            let words: Vec<&str> = arguments.split_whitespace().collect();
            (words[0], words[1])
        })
        .collect();
    assert!(!moves.is_empty(), "the HOWTO shows the move");
    let directory = |path: &str| std::path::Path::new(path).parent().map(|parent| parent.to_path_buf());
    for (from, to) in moves {
        assert_eq!(directory(from), directory(to), "`mv {from} {to}` may cross file systems");
    }
}

/// The ports a shipped Envoy config listens on (its admin and listeners).
fn listened_ports() -> Vec<u64> {
    let mut ports = Vec::new();
    for file in ["envoy/envoy.yaml", "envoy/examples/ecds/envoy.yaml", "envoy/examples/cluster/envoy.yaml"] {
        let config: serde_yaml::Value = serde_yaml::from_str(&read_repo_file(file)).unwrap();
        let admin = &config["admin"]["address"]["socket_address"]["port_value"];
        ports.extend(admin.as_u64());
        for listener in config["static_resources"]["listeners"].as_sequence().unwrap() {
            ports.extend(listener["address"]["socket_address"]["port_value"].as_u64());
        }
    }
    ports
}

#[test]
fn the_rate_limit_service_of_the_howto_starts_beside_the_shipped_envoy_configs() {
    let howto = read_repo_file("docs/HOWTO.md");
    let command = blocks(&howto, "sh").into_iter().find(|block| block.contains("service_cmd")).expect("the command");
    let listened = listened_ports();
    assert!(listened.contains(&8080) && listened.contains(&8081), "{listened:?}");
    // envoyproxy/ratelimit listens on 8080 (HTTP), 8081 (gRPC) and 6070 (debug) unless told.
    for (variable, default) in [("PORT", 8080), ("GRPC_PORT", 8081), ("DEBUG_PORT", 6070)] {
        let port = command
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{variable}=")))
            .map_or(default, |port| port.parse().unwrap());
        assert!(!listened.contains(&port), "{variable}={port} is a port the shipped Envoy configs listen on");
        if variable == "GRPC_PORT" {
            assert!(howto.contains(&format!("127.0.0.1:{port}")), "the HOWTO points the cluster at the service's port");
        }
    }
}
