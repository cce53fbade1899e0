//! The control-plane stand-in (`tests/cp/server.mjs`, Node): WSO2 API Manager's internal data
//! API serving the shapes in `tests/cp/fixtures/`, with test controls to change its data and
//! make it fail. Readiness is polled; `Drop` stops it.

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, repo_root, request, try_request};

pub struct ControlPlane {
    pub port: u16,
    scale: usize,
    child: Option<Child>,
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        ControlPlane::start_scaled(0)
    }

    /// With `scale` generated applications, key mappings (`gen-client-<i>`) and subscriptions.
    pub fn start_scaled(scale: usize) -> ControlPlane {
        let mut cp = ControlPlane { port: free_port(), scale, child: None };
        cp.restart();
        cp
    }

    /// Starts it (again) on its port, with the fixtures' data.
    pub fn restart(&mut self) {
        let child = Command::new("node")
            .arg(repo_root().join("tests/cp/server.mjs"))
            .args(["--port", &self.port.to_string(), "--scale", &self.scale.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node (the control plane stand-in needs Node.js)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !try_request(self.port, "GET", "/_admin/stats", &[], None).is_ok_and(|r| r.status == 200) {
            assert!(Instant::now() < deadline, "the control plane stand-in was not ready within 60 s");
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn admin(&self, path: &str, body: &serde_json::Value) {
        let body = body.to_string();
        let response = request(self.port, "POST", path, &[("content-type", "application/json")], Some(body.as_bytes()));
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }

    pub fn add(&self, resource: &str, item: serde_json::Value) {
        self.admin(&format!("/_admin/add/{resource}"), &item);
    }

    /// Merges `fields` into the items whose `field` is `value`.
    pub fn update(&self, resource: &str, field: &str, value: &str, fields: serde_json::Value) {
        self.admin(&format!("/_admin/update/{resource}?{field}={value}"), &fields);
    }

    pub fn delete(&self, resource: &str, field: &str, value: &str) {
        self.admin(&format!("/_admin/delete/{resource}?{field}={value}"), &serde_json::Value::Null);
    }

    pub fn set(&self, resource: &str, whole: serde_json::Value) {
        self.admin(&format!("/_admin/set/{resource}"), &whole);
    }

    /// `ok`, `error` (500s), `garbage` (truncated JSON), `slow` (answers after `delay_ms`).
    pub fn mode(&self, mode: &str, delay_ms: u64) {
        self.admin("/_admin/mode", &serde_json::json!({"mode": mode, "delay_ms": delay_ms}));
    }

    /// Every answer right, followed by `bytes` spaces (valid JSON of any size).
    pub fn padded(&self, bytes: usize) {
        self.admin("/_admin/mode", &serde_json::json!({"mode": "padded", "pad_bytes": bytes}));
    }

    /// Requests it answered for `key` (`subscriptions` for full loads, `subscriptions?` for
    /// lookups with a query).
    pub fn requests(&self, key: &str) -> u64 {
        request(self.port, "GET", "/_admin/stats", &[], None).json()[key].as_u64().unwrap_or(0)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}
