//! Hostile control-plane answers: WSO2's fixtures (`tests/cp/fixtures/`) mutated (extreme values,
//! wrong types, deep nesting, broken bytes) and fed to full loads, workers' decoding and lookups.
//! Every answer gives a defined outcome (a load taken or refused, a lookup done, refused or
//! asking on), never a panic.

use super::lookup::{self, Need};
use super::refresh::{self, Fetch};
use super::tests::{control_plane, fixture, load, ok, worker, NOW};
use crate::directory::PolicyLevel;
use crate::host::fuzz::{each_case, mutate_bytes, mutate_document, noise, Rng};
use crate::host::testing::MemoryStore;
use crate::host::{Answer, Step};
use crate::vocab::KmId;

fn mutated(fetch: Fetch, rng: &mut Rng) -> Vec<u8> {
    let text = fixture(fetch);
    match rng.below(8) {
        0 => mutate_bytes(text.as_bytes(), rng),
        1 => noise(rng, 64),
        _ => match serde_json::from_str(text) {
            Ok(document) => mutate_document(&document, rng),
            Err(_) => text.as_bytes().to_vec(),
        },
    }
}

#[test]
fn mutated_full_loads_are_taken_or_refused_and_workers_decode_what_was_taken() {
    let cp = control_plane(1000);
    each_case("full load", 250, 0xC0FFEE, |rng, case| {
        let mut store = MemoryStore::default();
        // Some of the resources mutated, the others as WSO2 sent them.
        let chosen: Vec<Fetch> = refresh::ORDER.iter().copied().filter(|_| rng.chance(3)).collect();
        let bodies: Vec<(Fetch, Vec<u8>)> = chosen.iter().map(|fetch| (*fetch, mutated(*fetch, rng))).collect();
        let status = if rng.chance(20) { 500 } else { 200 };
        let answer = |fetch: Fetch| match bodies.iter().find(|(mutated, _)| *mutated == fetch) {
            Some((_, body)) => Answer::Http { status, body: body.clone() },
            None => ok(fetch),
        };
        let calls = load(&mut store, &cp, NOW + case as u64, answer);
        assert!(!calls.is_empty() && calls.len() <= 9, "one call per resource at most");
        let mut view = worker();
        let _ = view.sync(&store, &cp, &[]);
        for level in [PolicyLevel::Api, PolicyLevel::Subscription, PolicyLevel::Application] {
            let _ = view.policy(level, "Gold");
        }
        // A lookup after it: its outcome is defined whatever the load left.
        let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now: NOW };
        let need = Need { client: Some((KmId(0), "app1".into())), ..Need::default() };
        let _ = lookup::start(&mut context, &need);
    });
}

#[test]
fn mutated_lookup_answers_end_the_lookup_or_ask_on() {
    let cp = control_plane(1000);
    let mut base = MemoryStore::default();
    load(&mut base, &cp, NOW, ok);
    let shapes = [
        r#"{"count":1,"list":[{"applicationId":4,"applicationUUID":"5b2d7c1e-3a4f-4e6d-9b8c-7a6f5e4d3c2b","consumerKey":"app 2","keyType":"SANDBOX","keyManager":"Resident Key Manager"}],"pagination":null}"#,
        fixture(Fetch::Applications),
        fixture(Fetch::Subscriptions),
        fixture(Fetch::SubscriptionPolicies),
        fixture(Fetch::ApplicationPolicies),
        fixture(Fetch::ApiPolicies),
    ];
    let documents: Vec<serde_json::Value> = shapes.iter().filter_map(|text| serde_json::from_str(text).ok()).collect();
    each_case("lookup", 600, 0x100C0B, |rng, case| {
        let mut store = MemoryStore { data: base.data.clone(), conflicts: 0 };
        let mut view = worker();
        let _ = view.sync(&store, &cp, &[]);
        let need = Need {
            client: Some((KmId(0), format!("client {case}"))),
            api: Some("6a1bdb2e-2c5d-4f7a-9d3c-0d7b1c2f9e11".into()),
            policies: vec![(PolicyLevel::Subscription, format!("Tier{case}")), (PolicyLevel::Api, "Other".into())],
            ..Need::default()
        };
        let now = NOW + 1;
        let mut context = lookup::Context { control_plane: &cp, worker: &mut view, store: &mut store, now };
        let mut step = lookup::start(&mut context, &need);
        let mut asked = 0;
        while let Step::Call(_, resume) = step {
            asked += 1;
            assert!(asked <= 16, "a lookup ends");
            let body = match rng.below(6) {
                0 => noise(rng, 200),
                1 => mutate_bytes(rng.pick(&shapes).as_bytes(), rng),
                _ => mutate_document(rng.pick(&documents), rng),
            };
            let answer = match rng.below(12) {
                0 => Answer::Failed { code: rng.word() as u32 },
                1 => Answer::Http { status: rng.word() as u16, body },
                2 => Answer::HttpStream { status: 200, size: rng.word() as usize },
                3 => Answer::Grpc { message: body },
                _ => Answer::Http { status: 200, body },
            };
            step = lookup::resume(&mut context, &need, resume, &answer);
        }
    });
}

#[test]
fn answers_left_in_envoy_read_short_or_long_fail_or_load() {
    let cp = control_plane(1000);
    each_case("streamed load", 60, 0x5EED, |rng, case| {
        let mut store = MemoryStore::default();
        refresh::prepare(&mut store, &cp);
        let Some(mut load) = refresh::due(&mut store, &cp, NOW + case as u64, (NOW + case as u64) * 1000) else {
            panic!("a first load is due")
        };
        for _ in 0..9 {
            let body = mutated(load.fetch, rng);
            // Envoy says a size that may not be the body's, and hands pieces of any length.
            let size = match rng.below(4) {
                0 => body.len() + rng.below(100),
                1 => body.len().saturating_sub(rng.below(100)),
                _ => body.len(),
            };
            let skew = rng.below(3);
            let read = move |start: usize, length: usize| -> Vec<u8> {
                let end = start.saturating_add(length + skew).min(body.len());
                body.get(start.min(end)..end).unwrap_or_default().to_vec()
            };
            let answer = Answer::HttpStream { status: 200, size };
            match refresh::ingest(&mut store, &cp, &mut load, &answer, &read, NOW, NOW * 1000) {
                Some(_) => {}
                None => break,
            }
        }
        let mut view = worker();
        let _ = view.sync(&store, &cp, &[]);
    });
}
