//! The configs we ship are valid: `envoy --mode validate` on envoy/envoy.yaml (which also runs
//! the filter's `on_configure` on its JSON), the docker-compose file's structure (Docker cannot
//! run here), and the Istio WasmPlugin's pluginConfig through the filter's own parser.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use apim_filter::config::Config;
use common::{envoy_binary, read_repo_file, repo_root, wasm_path};

/// The Envoy version the Makefile installs.
fn pinned_envoy_version() -> String {
    let makefile = read_repo_file("Makefile");
    makefile
        .lines()
        .find_map(|line| line.strip_prefix("ENVOY_VERSION := "))
        .map(|version| version.trim().to_string())
        .expect("ENVOY_VERSION in the Makefile")
}

#[test]
fn demo_envoy_config_validates_with_the_filter_accepting_its_configuration() {
    wasm_path();
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "-c", "envoy/envoy.yaml"])
        .current_dir(repo_root())
        .output()
        .expect("run envoy --mode validate");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "validate failed:\n{text}");
    assert!(text.contains("configuration 'envoy/envoy.yaml' OK"), "{text}");
    assert!(text.contains("configuration accepted: 3 APIs"), "the filter parsed the demo config:\n{text}");
}

#[test]
fn installed_envoy_is_the_pinned_version() {
    let output = Command::new(envoy_binary()).arg("--version").output().expect("envoy --version");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&format!("/{}/", pinned_envoy_version())), "{text}");
}

#[test]
fn docker_compose_runs_the_same_envoy_with_the_demo_config_and_filter() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read_repo_file("envoy/docker-compose.yml")).expect("compose YAML");
    let envoy = &compose["services"]["envoy"];
    assert_eq!(envoy["image"].as_str(), Some(format!("envoyproxy/envoy:v{}", pinned_envoy_version()).as_str()));
    let volumes: Vec<&str> =
        envoy["volumes"].as_sequence().expect("volumes").iter().filter_map(|v| v.as_str()).collect();
    let working_dir = envoy["working_dir"].as_str().expect("working_dir");
    let command: Vec<&str> =
        envoy["command"].as_sequence().expect("command").iter().filter_map(|v| v.as_str()).collect();
    let config_at = command.iter().position(|arg| *arg == "-c").map(|i| command[i + 1]).expect("-c in command");
    let mounted = |host: &str| -> Option<&str> {
        volumes.iter().find_map(|volume| {
            let mut parts = volume.split(':');
            (parts.next() == Some(host)).then(|| parts.next()).flatten()
        })
    };
    assert_eq!(mounted("./envoy.yaml"), Some(config_at), "the mounted config is the one Envoy reads");
    let wasm_in_container = mounted("../target/wasm32-wasip1/release/apim_filter.wasm").expect("the filter is mounted");
    // envoy.yaml names the filter relative to the working directory.
    let demo = read_repo_file("envoy/envoy.yaml");
    let relative = demo
        .lines()
        .find_map(|line| line.split("filename: ").nth(1))
        .map(|rest| rest.trim_end_matches([' ', '}']).trim())
        .expect("wasm filename in envoy.yaml");
    assert_eq!(format!("{working_dir}/{relative}"), wasm_in_container);
    assert!(repo_root().join("envoy").join("../target/wasm32-wasip1/release/apim_filter.wasm").exists());
}

#[test]
fn istio_wasmplugin_is_well_formed_and_its_plugin_config_is_accepted() {
    let plugin: serde_yaml::Value = serde_yaml::from_str(&read_repo_file("envoy/istio/wasmplugin.yaml")).expect("YAML");
    assert_eq!(plugin["apiVersion"].as_str(), Some("extensions.istio.io/v1alpha1"));
    assert_eq!(plugin["kind"].as_str(), Some("WasmPlugin"));
    assert_eq!(plugin["spec"]["phase"].as_str(), Some("AUTHN"));
    assert!(matches!(plugin["spec"]["failStrategy"].as_str(), Some("FAIL_CLOSE" | "FAIL_OPEN")));
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).expect("pluginConfig as JSON");
    let config = Config::from_json(&json).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.apis.len(), 1);
}
