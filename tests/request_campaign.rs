//! A seeded campaign of malformed and hostile requests through a real Envoy (`--concurrency 2`):
//! valid requests mutated at random (methods, paths and their encodings, credentials cut,
//! flipped, doubled or forged, the filter's own headers forged, CORS, gRPC, bodies). Whatever a
//! request holds, its answer is one the contract allows: the backend's (which never sees a
//! credential or a forged header of the filter's), a fault of the catalogue with its status and
//! message, a CORS preflight answered, or Envoy's own codec refusal of what is not HTTP (which
//! never reaches the backend). The gateway keeps serving on both workers throughout.
//!
//! A failure prints the seed and the request: `APIM_CAMPAIGN_SEED=<seed>` replays the campaign,
//! `APIM_CAMPAIGN_REQUESTS=<n>` sizes it (default 5,000).

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::campaign::{config, control_plane_gateway, local_site, request, violation, Random, Request, Site};
use common::{Backend, Envoy, Received, Response};
use serde_json::Value;

/// The final answer's head and body, read as soon as its declared length is in (Envoy delays
/// closing a connection until the client does, up to a second).
fn send(port: u16, raw: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(raw).ok()?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(response) = complete_answer(&mut received) {
            return Some(response);
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return complete_answer(&mut received).or_else(|| until_close(&received)),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// The final answer in `received` once its body is complete, dropping interim (1xx) answers
/// before it.
fn complete_answer(received: &mut Vec<u8>) -> Option<Response> {
    loop {
        let split = received.windows(4).position(|window| window == b"\r\n\r\n")?;
        let (status, headers) = head(&received[..split])?;
        if (100..200).contains(&status) {
            received.drain(..split + 4);
            continue;
        }
        let length: usize =
            headers.iter().find(|(name, _)| name == "content-length").and_then(|(_, value)| value.parse().ok())?;
        let body = received.get(split + 4..split + 4 + length)?;
        return Some(Response { status, headers, body: String::from_utf8_lossy(body).into_owned() });
    }
}

/// An answer without a declared length: its body runs to the connection's end.
fn until_close(received: &[u8]) -> Option<Response> {
    let split = received.windows(4).position(|window| window == b"\r\n\r\n")?;
    let (status, headers) = head(&received[..split])?;
    Some(Response { status, headers, body: String::from_utf8_lossy(&received[split + 4..]).into_owned() })
}

fn head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let head = String::from_utf8_lossy(head).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Some((status, headers))
}

/// What the backends received since they had received `before` (the campaign sends one request at
/// a time): the last request of one whose count grew.
fn received_since(backends: &[&Backend], before: &[usize]) -> Option<Received> {
    backends.iter().zip(before).find_map(|(backend, before)| {
        let requests = backend.received.lock().ok()?;
        (requests.len() > *before).then(|| requests.last().cloned()).flatten()
    })
}

/// Runs the campaign (`APIM_CAMPAIGN_SEED`, `APIM_CAMPAIGN_REQUESTS`: default 5,000) against
/// `envoy`: every answer is one the contract allows, and the outcomes include each of `expected`
/// (`backend`, or a status and code).
fn campaign(site: &Site, envoy: &Envoy, backends: &[&Backend], expected: &[&str]) {
    let seed: u64 = std::env::var("APIM_CAMPAIGN_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0x5eed_2026);
    let count: usize =
        std::env::var("APIM_CAMPAIGN_REQUESTS").ok().and_then(|count| count.parse().ok()).unwrap_or(5_000);
    let backend_requests = || -> Vec<usize> {
        backends
            .iter()
            .map(|backend| backend.received.lock().map(|received| received.len()).unwrap_or_default())
            .collect()
    };
    let mut random = Random(seed);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for index in 0..count {
        let request = request(&mut random, envoy.port, site);
        let before = backend_requests();
        let response = send(envoy.port, &request.raw());
        let last = received_since(backends, &before);
        let reached_backend = last.is_some();
        let shown = request.shown();
        let Some(response) = response else { panic!("request {index} (seed {seed}) got no HTTP answer:\n{shown}") };
        if let Some(why) = violation(site, &request, &response, last.as_ref()) {
            panic!(
                "request {index} (seed {seed}): {why}\n--- request:\n{shown}\n--- answer:\n{:?}\n{}",
                response.headers, response.body
            );
        }
        let outcome = if reached_backend {
            "backend".to_string()
        } else {
            let body = response.header("grpc-message").unwrap_or(&response.body);
            let body = serde_json::from_str::<Value>(body).unwrap_or_default();
            format!("{} {}", response.status, body["code"].as_str().unwrap_or("-"))
        };
        *outcomes.entry(outcome).or_default() += 1;
        if index % 100 == 99 {
            let (path, headers) = &site.healthy;
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
            let good = envoy.send("GET", path, &headers, None);
            assert_eq!(good.status, 200, "after request {index} (seed {seed}) a valid request still passes");
        }
    }
    eprintln!("outcomes of {count} requests: {outcomes:?}");
    for expected in expected {
        assert!(outcomes.contains_key(*expected), "the campaign produced {expected}: {outcomes:?}");
    }
    let log = envoy.log();
    assert!(!log.contains("panicked") && !log.contains("internal error"), "the VM stayed healthy");
    assert!(site.secrets().iter().all(|secret| !log.contains(secret)), "no credential in Envoy's log");
}

#[test]
fn thousands_of_mutated_requests_each_get_an_answer_the_contract_allows() {
    let (envoy, backend) = common::envoy_in_one_hour(&config());
    let site = local_site();
    // The backend, refusals of credentials, of resources, of throttling, and no API.
    campaign(
        &site,
        &envoy,
        &[&backend],
        &["backend", "401 900901", "401 900902", "403 900906", "429 900802", "404 404"],
    );
}

/// The same campaign against a gateway whose APIs, applications, subscriptions and tiers come from
/// the WSO2 control plane's stand-in (`tests/cp`, WSO2's shapes): tokens of known clients, of a
/// sandbox client, and of clients the control plane does not know, each looked up on its first
/// request within `lookups_per_second`.
#[test]
fn the_same_campaign_against_a_gateway_fed_by_a_control_plane() {
    let (_cp, live, sandbox, envoy, site) = control_plane_gateway();
    // Both backends (`/pizzashack/menu`: the default version), refusals of credentials and of
    // resources, a blocked API (700700), and no API.
    campaign(
        &site,
        &envoy,
        &[&live, &sandbox],
        &["backend", "401 900901", "401 900902", "403 900906", "503 700700", "404 404"],
    );
    assert!(!sandbox.requests().is_empty(), "the sandbox client's requests reached the sandbox backend");
}

/// The oracle itself refuses what a defect would answer: a backend answer that is not the
/// backend's echo, a credential or forged header the backend read, and a 400 that is neither a fault nor Envoy's codec's.
#[test]
fn the_oracle_refuses_answers_no_contract_allows() {
    let site = Site { bases: vec![], secured: vec![], tokens: vec![], api_key: None, healthy: ("/", Vec::new()) };
    let request = Request {
        method: "GET".into(),
        path: "/".into(),
        headers: Vec::new(),
        body: Vec::new(),
        secured: true,
        not_a_path: false,
    };
    let got = |headers: &[(&str, &str)]| Received {
        method: "GET".into(),
        path: "/".into(),
        headers: headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        body: Vec::new(),
    };
    let clean = got(&[("x-apim-tier", "Gold")]);
    let answer = |status: u16, headers: &[(&str, &str)], body: &str| Response {
        status,
        headers: headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        body: body.into(),
    };
    let backend = [("x-backend", "real")];
    assert!(violation(&site, &request, &answer(200, &backend, r#"{"headers":{}}"#), Some(&clean)).is_none());
    for body in ["", "{\"head", "[]"] {
        assert!(
            violation(&site, &request, &answer(200, &backend, body), Some(&clean)).is_some(),
            "backend answer {body:?}"
        );
    }
    for body in ["", "Bad Request"] {
        assert!(violation(&site, &request, &answer(400, &[], body), None).is_none(), "Envoy's 400 {body:?}");
    }
    assert!(violation(&site, &request, &answer(400, &[], "invalid credentials"), None).is_some());
    // What the backend read counts, each copy of a header, not only the echo (one value a name).
    let echo = answer(200, &backend, r#"{"headers":{}}"#);
    for headers in [[("x-apim-tier", "evil"), ("x-apim-tier", "Gold")], [("authorization", "Bearer x"), ("a", "b")]] {
        assert!(violation(&site, &request, &echo, Some(&got(&headers))).is_some(), "{headers:?}");
    }
}
