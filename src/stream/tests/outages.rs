//! Dependencies down while traffic flows: each request gets its fault and is counted, and the
//! log gets a line now and then, not one per request.

use super::*;
use crate::host::testing::{capture_warnings, warnings};
use crate::host::REPEATED_WARNING_S;

/// One opaque-token request whose introspection the key manager answers with `answer`.
fn introspected(config: &Rc<Config>, worker: &Rc<RefCell<Worker>>, host: &mut FakeHost, answer: Answer) {
    host.request = [(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(worker));
    assert_eq!(stream.on_request_headers(host, true), Flow::Waiting);
    stream.on_call_response(host, host.dispatched.len() as u32, answer);
}

#[test]
fn a_key_manager_down_under_load_logs_a_line_now_and_then_not_one_per_request() {
    capture_warnings();
    let config = secured();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    for _ in 0..100 {
        introspected(&config, &worker, &mut host, Answer::Http { status: 503, body: b"down".to_vec() });
    }
    assert_eq!(host.counted, vec![900900; 100], "every request gets the outage's fault");
    let refused = host.counters.iter().filter(|name| *name == "apim.auth.refused.introspection_status").count();
    assert_eq!(refused, 100, "and is in the stats");
    let logged = || warnings().iter().filter(|line| line.contains("introspection")).count();
    assert_eq!(logged(), 1, "{:?}", warnings());
    // Ten seconds on, the next failure is logged again, with how many were held back.
    host.now += REPEATED_WARNING_S;
    introspected(&config, &worker, &mut host, Answer::Failed { code: 14 });
    assert_eq!(logged(), 2);
    assert!(warnings().last().is_some_and(|line| line.contains("99 more")), "{:?}", warnings());
}
