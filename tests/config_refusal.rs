//! Bad configuration is refused at load: Envoy will not start on it, the log names the field and
//! the reason, and on a live update Envoy keeps serving with its previous configuration.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::time::{Duration, Instant};

use common::{envoy_yaml, free_port, Envoy, EnvoySetup, Scratch};

fn refused_with(filter_json: &str, expected_line: &str) {
    match Envoy::try_start(filter_json, EnvoySetup::default()) {
        Ok(envoy) => panic!("Envoy started on a bad configuration; log:\n{}", envoy.log()),
        Err(log) => {
            let line = log
                .lines()
                .find(|line| line.contains("invalid configuration:"))
                .unwrap_or_else(|| panic!("no configuration error in the log:\n{log}"));
            assert!(line.contains(expected_line), "expected `{expected_line}` in: {line}");
        }
    }
}

#[test]
fn unknown_field_is_refused_and_named() {
    refused_with(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},"resources":[],"lifecyle":"BLOCKED"}]}"#,
        "field `apis[0].lifecyle`: unknown field `lifecyle`",
    );
}

#[test]
fn bad_path_template_is_refused_and_named() {
    refused_with(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
            "resources":[{"method":"GET","path":"/orders/{id"}]}]}"#,
        "field `apis[0].resources[0].path`",
    );
}

#[test]
fn invalid_status_is_refused_and_named() {
    refused_with(
        r#"{"errors":{"overrides":{"900800":{"status":1000}}}}"#,
        "field `errors.overrides.900800.status`: status 1000 is not an HTTP status from 200 to 599",
    );
}

#[test]
fn a_secret_in_the_wrong_place_is_not_logged() {
    let config = r#"{"applications":[{"id":"a","name":"A","api_keys":["sk_live_DO_NOT_LOG"]}]}"#;
    let error = Envoy::try_start(config, EnvoySetup::default()).err().expect("refused");
    assert!(error.contains("field `applications[0].api_keys[0]`"), "{error}");
    assert!(!error.contains("sk_live_DO_NOT_LOG"), "the value reached Envoy's log:\n{error}");
}

#[test]
fn malformed_json_is_refused() {
    refused_with(r#"{"apis": [ }"#, "invalid configuration: field `apis");
}

/// A live update (LDS from a file) with a bad filter configuration is rejected; the listener keeps
/// the previous configuration and keeps serving.
#[test]
fn bad_update_keeps_the_previous_configuration() {
    let scratch = Scratch::new("lds");
    let port = free_port();
    let admin_port = free_port();
    let good = r#"{"apis":[{"name":"A","context":"/a","version":"1","lifecycle":"BLOCKED",
        "endpoints":{"production":"c"},"resources":[{"method":"GET","path":"/*"}]}]}"#;
    let bad = r#"{"apis":[{"name":"A","context":"/a","version":"1","lifecycle":"BLOCKD",
        "endpoints":{"production":"c"},"resources":[{"method":"GET","path":"/*"}]}]}"#;
    let lds_path = scratch.0.join("lds.yaml");
    let write_lds = |filter: &str| {
        let listener = listener_only(&envoy_yaml(filter, &EnvoySetup::default(), port, admin_port));
        let staging = scratch.0.join("lds.yaml.tmp");
        std::fs::write(&staging, listener).expect("write lds");
        std::fs::rename(&staging, &lds_path).expect("move lds into place");
    };
    write_lds(good);
    let bootstrap = format!(
        "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}\n\
         node: {{ id: test, cluster: test }}\n\
         dynamic_resources:\n  lds_config:\n    path_config_source: {{ path: \"{}\" }}\n\
         static_resources: {{ clusters: [] }}\n",
        lds_path.display()
    );
    let envoy = Envoy::launch(&bootstrap, 2, port, admin_port, "lds-envoy").unwrap_or_else(|log| panic!("{log}"));
    wait_for(|| common::try_request(port, "GET", "/a/1/x", &[], None).map(|r| r.status == 503).unwrap_or(false));
    assert_eq!(envoy.get("/a/1/x").json()["code"], "700700");

    let rejected_before = envoy.stat("listener_manager.lds.update_rejected");
    write_lds(bad);
    wait_for(|| envoy.stat("listener_manager.lds.update_rejected") > rejected_before);
    // The field and what it takes; not the value, which could be a secret pasted in the wrong
    // place.
    assert!(
        envoy.log().contains("field `apis[0].lifecycle`: an unknown variant, expected one of")
            && !envoy.log().contains("BLOCKD"),
        "the log names the field:\n{}",
        envoy.log()
    );
    let response = envoy.get("/a/1/x");
    assert_eq!(
        (response.status, response.json()["code"].clone()),
        (503, "700700".into()),
        "previous config still serves"
    );
}

/// The `listeners` section of a generated bootstrap, as an LDS resource file.
fn listener_only(bootstrap: &str) -> String {
    let start = bootstrap.find("  - name: gateway").expect("listener in generated config");
    let end = bootstrap.find("  clusters").expect("clusters in generated config");
    let listener: String = bootstrap[start..end]
        .lines()
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .map(|line| format!("  {line}\n"))
        .collect();
    let listener = listener.replacen(
        "  - name: gateway\n",
        "  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n    name: gateway\n",
        1,
    );
    format!("resources:\n{listener}")
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ECDS example (envoy/examples/ecds, the how-to in docs/HOWTO.md): the filter's configuration
/// is replaced live through its file; a refused one is rejected and the previous one serves on.
#[test]
fn the_ecds_example_updates_the_filter_live_and_keeps_the_last_good_configuration() {
    let scratch = Scratch::new("ecds");
    let (port, backend_port, admin_port) = (free_port(), free_port(), free_port());
    let filter_path = scratch.0.join("apim-filter.yaml");
    let original = common::read_repo_file("envoy/examples/ecds/apim-filter.yaml");
    let wasm = common::wasm_path();
    let install = |text: &str| {
        let staging = scratch.0.join("apim-filter.yaml.tmp");
        let text = text.replace("target/wasm32-wasip1/release/apim_filter.wasm", &wasm.display().to_string());
        std::fs::write(&staging, text).expect("write the filter config");
        std::fs::rename(&staging, &filter_path).expect("move it into place");
    };
    install(&original);
    let yaml = common::read_repo_file("envoy/examples/ecds/envoy.yaml")
        .replace("port_value: 8080", &format!("port_value: {port}"))
        .replace("port_value: 8081", &format!("port_value: {backend_port}"))
        .replace("port_value: 9901", &format!("port_value: {admin_port}"))
        .replace("envoy/examples/ecds/apim-filter.yaml", &filter_path.display().to_string());
    let envoy = Envoy::launch(&yaml, 2, port, admin_port, "ecds-envoy").unwrap_or_else(|log| panic!("{log}"));
    wait_for(|| common::try_request(port, "GET", "/hello/1.0.0/x", &[], None).is_ok_and(|r| r.status == 200));
    assert_eq!(envoy.get("/hello/1.0.0/x").body, "hello from the backend");

    // A new configuration: the API is blocked now.
    install(&original.replace(r#""security": [],"#, r#""security": [], "lifecycle": "BLOCKED","#));
    wait_for(|| envoy.get("/hello/1.0.0/x").status == 503);
    assert_eq!(envoy.get("/hello/1.0.0/x").json()["code"], "700700");

    // A configuration the filter refuses is rejected; the blocked one keeps serving.
    install(&original.replace(r#""security": [],"#, r#""security": [], "lifecycle": "BLOCKD","#));
    wait_for(|| envoy.log().contains("field `apis[0].lifecycle`: an unknown variant, expected one of"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(envoy.get("/hello/1.0.0/x").json()["code"], "700700", "the last good configuration serves");
}
