//! The configs we ship are valid: `envoy --mode validate` on envoy/envoy.yaml (which also runs
//! the filter's `on_configure` on its JSON), the docker-compose file's structure (Docker cannot
//! run here), and the Istio WasmPlugin's pluginConfig through the filter's own parser.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::process::Command;

use apim_filter::config::Config;
use common::{envoy_binary, read_repo_file, repo_root, wasm_path};
use serde::Deserialize;

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
    // The guard against self-routing acts before the route is chosen, and the failure policy is
    // chosen deliberately.
    let demo = read_repo_file("envoy/envoy.yaml");
    assert!(demo.contains("early_header_mutation_extensions"), "the early header mutation guard");
    assert!(demo.contains("- remove: x-apim-cluster") && demo.contains("failure_policy: FAIL_RELOAD"));
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
fn istio_manifests_are_well_formed_the_plugin_config_is_accepted_and_a_client_cannot_route_itself() {
    let text = read_repo_file("envoy/istio/wasmplugin.yaml");
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("YAML"))
        .collect();
    let kind = |name: &str| {
        documents
            .iter()
            .find(|document| document["kind"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in the Istio manifests"))
    };
    let plugin = kind("WasmPlugin");
    assert_eq!(plugin["apiVersion"].as_str(), Some("extensions.istio.io/v1alpha1"));
    assert_eq!(plugin["spec"]["phase"].as_str(), Some("AUTHN"));
    assert_eq!(plugin["spec"]["failStrategy"].as_str(), Some("FAIL_CLOSE"), "chosen deliberately");
    // The secret comes from the proxy's environment, never from the manifest.
    let env = &plugin["spec"]["vmConfig"]["env"][0];
    assert_eq!(env["valueFrom"].as_str(), Some("HOST"));
    let variable = env["name"].as_str().expect("an env variable");
    assert!(!text.contains("client_secret: \""), "no inline secret");
    std::env::set_var(variable, "from-the-proxy-environment");
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).expect("pluginConfig as JSON");
    let config = Config::from_json(&json).unwrap_or_else(|error| panic!("{error}"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    // The guard removes client copies of both routing headers before any other filter.
    let guard = kind("EnvoyFilter");
    let patch = &guard["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"].as_str(), Some("NETWORK_FILTER"));
    let extension = &patch["patch"]["value"]["typed_config"]["early_header_mutation_extensions"][0];
    let removed: Vec<&str> = extension["typed_config"]["mutations"]
        .as_sequence()
        .expect("mutations")
        .iter()
        .filter_map(|mutation| mutation["remove"].as_str())
        .collect();
    assert!(removed.contains(&"x-apim-cluster") && removed.contains(&"x-apim-api"), "{removed:?}");
    // Every API's route needs the header only the filter sets, with that API's label.
    let routes = kind("VirtualService");
    for api in &config.routes.apis {
        let label = format!("{}:{}", api.name, api.version);
        let matched = routes["spec"]["http"].as_sequence().expect("http routes").iter().any(|route| {
            route["match"].as_sequence().is_some_and(|matches| {
                matches.iter().all(|m| m["headers"]["x-apim-api"]["exact"].as_str() == Some(label.as_str()))
            })
        });
        assert!(matched, "no route for {label} guarded by x-apim-api");
    }
}
