//! The benchmark's own harness keeps up with the module: `bench/micro.mjs` (the `.wasm` in Node's
//! V8 behind a minimal proxy-wasm host, which `make bench` runs) provides every host function the
//! module imports. A new import it lacks fails instantiation, so `make bench` would fail where
//! `make test` passed.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::process::Command;

use serde_json::{json, Value};

#[test]
fn the_micro_benchmark_host_runs_the_module() {
    let config = json!({"apis": [{"name": "Bench", "context": "/bench", "version": "1.0.0", "security": [],
        "endpoints": {"production": "unused"}, "resources": [{"method": "GET", "path": "/items"}]}]});
    let headers = json!([[":method", "GET"], [":path", "/bench/1.0.0/items"], [":authority", "127.0.0.1"]]);
    let dir = std::env::temp_dir().join(format!("apim-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenarios = dir.join("scenarios.json");
    std::fs::write(&scenarios, json!([{"name": "open", "config": config, "headers": headers}]).to_string()).unwrap();
    let output = Command::new("node")
        .arg(common::repo_root().join("bench/micro.mjs"))
        .arg(common::wasm_path())
        .arg(&scenarios)
        .arg("0.1")
        .output()
        .expect("node runs (make test installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench/micro.mjs failed: {stderr}");
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let open = &results[0];
    assert_eq!(open["name"], "open");
    assert!(open["us"].as_f64().is_some_and(|us| us > 0.0), "{results}");
    assert_eq!(open["calls"]["get_header_map_pairs"], 1, "one header read per request: {results}");
}
