//! The cluster engine's reading of the rate-limit service's answers, and what a node does while
//! the service fails: which answers are unusable, and how a failure keeps a node from calling a
//! failing service once per request and level. (The engine's counting is in cluster_tests.rs.)

use prost::Message;

use super::tests::{admit, counter, node, service, take, ModelService, SLOTS, T0};
use super::*;
use crate::schema::Counting;
use crate::vocab::FailureMode;

#[test]
fn answers_without_the_limits_sent_or_unreadable_are_unusable_and_failures_unavailable() {
    let service = service(Counting::Leased);
    let engine = ClusterEngine { service: &service, leases: SLOTS };
    let counter = counter(10, 60);
    let resume_with = |answer: &dyn Fn(&Call) -> Answer| {
        let mut store = node();
        let Step::Call(call, pending) = take(&engine, &mut store, &counter, T0) else { panic!() };
        match engine.resume_take(&mut store, &counter, pending, &answer(&call), T0) {
            Step::Refused(why) => Some(why),
            _ => None,
        }
    };
    let unknown = |call: &Call| ModelService { unknown_domain: true, ..ModelService::default() }.answer(call, T0);
    assert_eq!(resume_with(&unknown), Some(Contended::EngineUnusable));
    assert_eq!(resume_with(&|_| Answer::Grpc { message: vec![0xff, 0xff, 0xff] }), Some(Contended::EngineUnusable));
    let short = |_: &Call| {
        let response = rls::RateLimitResponse { overall_code: rls::CODE_OK, statuses: Vec::new() };
        Answer::Grpc { message: response.encode_to_vec() }
    };
    assert_eq!(resume_with(&short), Some(Contended::EngineUnusable), "one status per token asked for");
    assert_eq!(resume_with(&|_| Answer::Http { status: 200, body: Vec::new() }), Some(Contended::EngineUnusable));
    assert_eq!(resume_with(&|_| Answer::Failed { code: 14 }), Some(Contended::EngineUnavailable));
    // A service applying a rule of its own instead of the override (1000 a minute, or the
    // limit per hour): its grants count against a limit the filter never set.
    let own_rule = |requests_per_unit: u32, unit: i32| {
        move |call: &Call| {
            let Answer::Grpc { message } = ModelService::default().answer(call, T0) else { panic!() };
            let mut response = rls::RateLimitResponse::decode(message.as_slice()).unwrap();
            for status in &mut response.statuses {
                status.current_limit = Some(rls::CurrentLimit { requests_per_unit, unit });
            }
            Answer::Grpc { message: response.encode_to_vec() }
        }
    };
    let (minute, _) = rls::unit_for(60).unwrap();
    let (hour, _) = rls::unit_for(3600).unwrap();
    assert_eq!(resume_with(&own_rule(1000, minute)), Some(Contended::EngineUnusable), "another limit");
    assert_eq!(resume_with(&own_rule(10, hour)), Some(Contended::EngineUnusable), "another unit");
    assert_eq!(resume_with(&own_rule(10, minute)), None, "the limit sent");
    assert_eq!(resume_with(&|call| ModelService::default().answer(call, T0)), None);
    // Codes: only OK and OVER_LIMIT, and the overall code OVER_LIMIT exactly when a status is.
    let coded = |overall: i32, first: i32| {
        move |call: &Call| {
            let Answer::Grpc { message } = ModelService::default().answer(call, T0) else { panic!() };
            let mut response = rls::RateLimitResponse::decode(message.as_slice()).unwrap();
            response.overall_code = overall;
            response.statuses[0].code = first;
            Answer::Grpc { message: response.encode_to_vec() }
        }
    };
    let (ok, over) = (rls::CODE_OK, rls::CODE_OVER_LIMIT);
    assert_eq!(resume_with(&coded(ok, ok)), None);
    assert_eq!(resume_with(&coded(over, over)), None, "the first token over the limit: a usable denial");
    for (overall, first, what) in [
        (0, ok, "UNKNOWN overall"),
        (ok, 0, "an UNKNOWN status"),
        (ok, 3, "a code the protocol does not have"),
        (ok, over, "OK over a status over the limit (global shadow mode)"),
        (over, ok, "OVER_LIMIT with every status OK"),
    ] {
        assert_eq!(resume_with(&coded(overall, first)), Some(Contended::EngineUnusable), "{what}");
    }
}

/// A status whose code is neither OK nor OVER_LIMIT (UNKNOWN, 0) is an answer the filter cannot
/// read: it should follow `failure_mode` (engine_unusable), not deny the request as throttled and
/// mark the node's lease exhausted for the rest of the window.
#[test]
fn review_an_unknown_status_code_is_unusable_not_a_denial() {
    let service = service(Counting::Leased);
    let engine = ClusterEngine { service: &service, leases: SLOTS };
    let mut store = node();
    let counter = counter(10, 3600);
    let Step::Call(call, pending) = take(&engine, &mut store, &counter, T0) else { panic!() };
    let Answer::Grpc { message } = ModelService::default().answer(&call, T0) else { panic!() };
    let mut response = rls::RateLimitResponse::decode(message.as_slice()).unwrap();
    response.overall_code = 0;
    for status in &mut response.statuses {
        status.code = 0;
    }
    let answer = Answer::Grpc { message: response.encode_to_vec() };
    let step = engine.resume_take(&mut store, &counter, pending, &answer, T0);
    let later = take(&engine, &mut store, &counter, T0 + 10);
    assert!(
        matches!(step, Step::Refused(Contended::EngineUnusable)),
        "UNKNOWN read as: {step:?}; the next request an hour-window later: {later:?}"
    );
}

/// A failing service: every request of a node calls again (no memory that it just failed), and
/// with `failure_mode: allow` a request calls once per cluster-wide level, each waiting up to
/// `timeout_ms`. Healthy, the node makes ~1 call per 10+ requests.
#[test]
fn review_a_failing_service_is_not_called_by_every_request() {
    let mut service = service(Counting::Leased);
    service.failure_mode = FailureMode::Allow;
    let engine = ClusterEngine { service: &service, leases: SLOTS };
    let mut store = node();
    let counter = counter(10_000, 60);
    let mut calls = 0;
    for i in 0..100 {
        if let Step::Call(_, pending) = take(&engine, &mut store, &counter, T0 + i / 10) {
            calls += 1;
            let _ = engine.resume_take(&mut store, &counter, pending, &Answer::Failed { code: 4 }, T0 + i / 10);
        }
    }
    assert!(calls <= 20, "{calls} calls to a failing service for 100 requests");
}

#[test]
fn a_failed_background_block_pauses_calls_but_held_tokens_are_still_spent() {
    let service = service(Counting::Leased);
    let engine = ClusterEngine { service: &service, leases: SLOTS };
    let mut model = ModelService::default();
    let mut store = node();
    let counter = counter(1000, 60);
    assert!(admit(&engine, &mut store, &mut model, &counter, T0).unwrap().allowed);
    let mut refills = Vec::new();
    while refills.is_empty() {
        assert!(matches!(engine.take(&mut store, &counter, T0, &mut refills), Step::Done(Count { allowed: true, .. })));
    }
    engine.refilled(&mut store, &refills[0], &Answer::Failed { code: 4 }, T0);
    let calls = model.calls;
    let mut held = 0;
    while let Step::Done(Count { allowed: true, .. }) = take(&engine, &mut store, &counter, T0 + 1) {
        held += 1;
    }
    assert!(held > 0, "the tokens the node held still serve");
    assert!(matches!(take(&engine, &mut store, &counter, T0 + 1), Step::Refused(Contended::EngineUnavailable)));
    assert_eq!(model.calls, calls, "no call to the failing service");
    assert!(matches!(take(&engine, &mut store, &counter, T0 + 2), Step::Call(..)), "calls resume");
}

#[test]
fn answers_read_out_of_order_never_make_a_node_report_more_remaining_than_there_is() {
    // Request X asks for a block, request Y for its own token while the block is on its way. The
    // service counts Y's call first, then X's block; the node reads X's answer first, then Y's,
    // whose `remaining` is older: the service never un-counts within a window, so the node keeps
    // the lower. Then the requests' RateLimit-Remaining never exceeds what remains (the service's
    // 899, plus what the node and its worker hold) nor the limit.
    let service = service(Counting::Leased);
    let engine = ClusterEngine { service: &service, leases: SLOTS };
    let counter = counter(1000, 60);
    let (mut store, mut model) = (node(), ModelService::default());
    let Step::Call(block_call, block) = take(&engine, &mut store, &counter, T0) else { panic!("a block is asked") };
    let Step::Call(own_call, own) = take(&engine, &mut store, &counter, T0) else { panic!("its own token") };
    let own_answer = model.answer(&own_call, T0);
    let block_answer = model.answer(&block_call, T0);
    assert!(matches!(engine.resume_take(&mut store, &counter, block, &block_answer, T0), Step::Done(c) if c.allowed));
    assert!(matches!(engine.resume_take(&mut store, &counter, own, &own_answer, T0), Step::Done(c) if c.allowed));
    let mut worker = crate::throttle::worker_lease::WorkerLeases::default();
    let leasing = crate::throttle::worker_lease::Leasing { share_percent: 5, max: 100 };
    let mut refills = Vec::new();
    let Step::Done(next) = engine.take_for_worker(&mut store, &counter, T0, &mut refills, Some((&mut worker, leasing)))
    else {
        panic!("a held token")
    };
    // 101 counted by the service, 99 of them held (one spent now, in the worker's block or not).
    assert!(next.allowed);
    assert!(next.remaining <= 899 + 98, "RateLimit-Remaining {} of 1000: 899 remain, 98 are held", next.remaining);
    let Some(from_block) = worker.spend(&worker_key(&counter), 1000, 60, T0) else {
        panic!("the worker holds a block")
    };
    assert!(from_block.remaining <= 899 + 97, "RateLimit-Remaining {} from the worker's block", from_block.remaining);
}
