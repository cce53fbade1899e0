//! Two gateways in one Envoy: two listeners, each with its own filter configuration, whose
//! filters share a `vm_id` (and so Envoy's shared data). Named apart (`gateway`), each counts its
//! own requests under its own limit, two workers of one gateway count together, and each one's
//! stats carry its name (the `apim_gateway` label).

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use common::windows::away_from_window_end;
use common::{envoy_yaml, free_port, request, Backend, Envoy, EnvoySetup};
use serde_json::json;

/// A gateway serving `/p/1.0.0` (open) under an API policy of `per_hour` requests.
fn gateway(name: &str, per_hour: u64) -> String {
    json!({
        "gateway": name,
        "policies": {"Limit": {"requests": per_hour, "per": "hour"}},
        "apis": [{"name": "P", "context": "/p", "version": "1.0.0", "security": [], "policy": "Limit",
            "endpoints": {"production": "live"}, "resources": [{"method": "GET", "path": "/menu"}]}]
    })
    .to_string()
}

/// One Envoy with a listener per filter configuration (the second's filter is the first's, with
/// the same `name`, `root_id` and `vm_id`, and its own configuration).
fn two_listeners(first: &str, second: &str, setup: &EnvoySetup) -> (Envoy, u16) {
    let (port, other_port, admin_port) = (free_port(), free_port(), free_port());
    let yaml = envoy_yaml(first, setup, port, admin_port);
    let other = envoy_yaml(second, setup, other_port, admin_port);
    let listener_start = other.find("  - name: gateway\n").unwrap();
    let clusters_at = |yaml: &str| yaml.find("\n  clusters").unwrap() + 1;
    let listener = other[listener_start..clusters_at(&other)].replacen("name: gateway\n", "name: gateway_b\n", 1);
    let at = clusters_at(&yaml);
    let yaml = format!("{}{listener}{}", &yaml[..at], &yaml[at..]);
    let envoy = Envoy::launch(&yaml, setup.concurrency, port, admin_port, "several-gateways")
        .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    (envoy, other_port)
}

#[test]
fn two_named_gateways_in_one_envoy_count_apart_and_each_across_its_workers() {
    let backend = Backend::start();
    let setup = EnvoySetup { clusters: vec![("live".into(), backend.port)], ..Default::default() };
    let (internal, external_port) = two_listeners(&gateway("internal", 2), &gateway("external", 100), &setup);
    away_from_window_end(3600, 60);
    let status = |port: u16| request(port, "GET", "/p/1.0.0/menu", &[], None).status;
    for _ in 0..5 {
        assert_eq!(status(external_port), 200, "the external gateway's own limit");
    }
    // The internal gateway's limit is its own, whatever the external one counted; its workers
    // (two) count together.
    assert_eq!(status(internal.port), 200, "{}", internal.log());
    assert_eq!(status(internal.port), 200);
    assert_eq!(status(internal.port), 429, "the third of two an hour");
    assert_eq!(status(external_port), 200);
    // Each gateway's counters are its own, labelled with its name by the shipped tag extraction.
    let prometheus = request(internal.admin_port, "GET", "/stats/prometheus", &[], None).body;
    let allowed = |gateway: &str| {
        let labels = format!("apim_gateway=\"{gateway}\"");
        prometheus
            .lines()
            .find(|line| line.starts_with("apim_api_version_allowed{") && line.contains(&labels))
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(allowed("internal"), Some(2), "{prometheus}");
    assert_eq!(allowed("external"), Some(6), "{prometheus}");
}
