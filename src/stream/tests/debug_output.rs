//! What the request's and the worker's `Debug` print: never a credential.

use super::query_credentials::SECRET_KEY;
use super::*;

#[test]
fn debug_output_of_request_and_worker_state_holds_no_credential() {
    let mut host = FakeHost::request(&[
        (":method", "GET"),
        (":path", &format!("/p/1/menu?apikey={SECRET_KEY}")),
        ("authorization", "Bearer tok-SECRET"),
        ("cookie", "session=ck-SECRET"),
    ]);
    let snapshot = request::Snapshot::take(&mut host, &config(), true);
    let printed = format!("{snapshot:?}");
    assert!(!printed.contains("SECRET") && printed.contains("authorization"), "{printed}");
    // A worker that verified and cached a bearer token.
    let config = jwks_config();
    let worker = Rc::new(RefCell::new(Worker::new(&config)));
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let token = signed("a", 5_000);
    let (mut s, _) = bearer_call(&config, &worker, &mut host, &token);
    s.on_call_response(&mut host, 1, Answer::Http { status: 200, body: jwks_body() });
    assert!(host.sent.is_none() && worker.borrow().auth.tokens.get(&token, 1_000).is_some());
    let printed = format!("{:?}", worker.borrow());
    let signature = token.rsplit('.').next().unwrap();
    assert!(!printed.contains(signature), "the worker's Debug holds the token: {printed}");
}
