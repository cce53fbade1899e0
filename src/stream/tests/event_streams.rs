//! An API whose responses' server-sent events are counted (`count_server_sent_events`), as
//! API-M's gateway counts a server-sent-events API's: the request checked but not counted, each
//! event taking a request, the first event over a limit ending the stream where it starts.

use super::*;

/// An open API with three requests an hour at the API level.
fn events_config() -> Config {
    let json = r#"{"apis":[{"name":"Ticks","context":"/ticks","version":"1","security":[],"policy":"Three",
        "count_server_sent_events":true,
        "endpoints":{"production":"sse"},"resources":[{"method":"GET","path":"/*"}]}],
        "policies":{"Three":{"requests":3,"per":"hour"}}}"#;
    Config::from_json(json.as_bytes()).unwrap()
}

/// A request for the stream, on `host` (its shared data kept), answered `status`.
fn subscribe(host: &mut FakeHost, status: &str) -> Stream {
    let mut stream = request(host);
    assert_eq!(stream.on_request_headers(host, true), Flow::Continue, "the request is not counted");
    host.response.insert(":status".into(), status.as_bytes().to_vec());
    stream.on_response_headers(host);
    stream
}

/// A stream for a request to the API, on `host` (its shared data kept).
fn request(host: &mut FakeHost) -> Stream {
    host.request = FakeHost::request(&[(":method", "GET"), (":path", "/ticks/1/prices")]).request;
    host.now = 7_200;
    let mut config = events_config();
    prepare_counters(host, &mut config);
    stream(Rc::new(config))
}

/// Hands the stream a response chunk; what goes on.
fn chunk(stream: &mut Stream, host: &mut FakeHost, bytes: &[u8]) -> Vec<u8> {
    host.bodies[crate::host::Direction::Response as usize] = bytes.to_vec();
    assert_eq!(stream.on_response_body(host, bytes.len(), false), Flow::Continue);
    host.bodies[crate::host::Direction::Response as usize].clone()
}

/// A chunk that starts with the event over the limit ends the stream at once.
#[test]
fn a_chunk_starting_with_the_event_over_the_limit_ends_the_stream_at_once() {
    let mut host = FakeHost::default();
    let mut stream = subscribe(&mut host, "200");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 1\n\ndata: 2\n\ndata: 3\n\n").len(), 27);
    assert_eq!(chunk(&mut stream, &mut host, b"data: 4\n\n"), b"");
    assert!(host.closed, "nothing of the chunk goes on: the stream is reset");
    assert_eq!(host.counted, vec![900800]);
}

#[test]
fn each_event_counts_and_the_first_over_the_limit_ends_the_stream_there() {
    let mut host = FakeHost::default();
    let mut stream = subscribe(&mut host, "200");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 1\n\ndata: 2\n\n"), b"data: 1\n\ndata: 2\n\n");
    assert!(!host.closed);
    assert_eq!(chunk(&mut stream, &mut host, b"data: 3\n\ndata: 4\n\ndata: 5\n\n"), b"data: 3\n\n");
    // Reset now, Envoy would drop the chunk and the counted "data: 3" with it: the stream ends
    // with the backend's next bytes.
    assert!(!host.closed, "the events before the cut go on");
    assert_eq!(host.counted, vec![900800], "counted as the level's fault");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 6\n\n"), b"", "nothing more goes on");
    assert!(host.closed, "the stream ends");
    assert_eq!(host.counted.len(), 1);

    // The tier is spent: a new request is answered with its fault before the backend is asked,
    // as API-M answers it.
    let mut stream = request(&mut host);
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Answered);
    assert_eq!(host.sent.as_ref().map(|(status, _, _)| *status), Some(429));
    assert_eq!(host.counted, vec![900800, 900800]);
}

/// A cut chunk that went on asks the glue, once, for the stream's reset on the root context's
/// tick (a backend that goes quiet must not keep the client connected); the tick resets it once,
/// and the backend's bytes after it go nowhere without asking again.
#[test]
fn a_cut_chunk_that_went_on_asks_for_the_reset_on_the_tick_once() {
    let mut host = FakeHost::default();
    let mut stream = subscribe(&mut host, "200");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 1\n\n"), b"data: 1\n\n");
    assert!(!stream.take_close_due(), "nothing cut");
    stream.close_after_cut(&mut host);
    assert_eq!(host.closes, 0, "a stream not cut is never reset by the tick");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 2\n\ndata: 3\n\ndata: 4\n\n"), b"data: 2\n\ndata: 3\n\n");
    assert!(stream.take_close_due(), "the cut chunk went on: the reset is asked for");
    assert!(!stream.take_close_due(), "once");
    assert_eq!(host.closes, 0);
    stream.close_after_cut(&mut host);
    assert_eq!(host.closes, 1, "the tick resets it");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 5\n\n"), b"", "nothing more goes on");
    stream.close_after_cut(&mut host);
    assert_eq!(host.closes, 1, "reset once");

    // A chunk starting with the refused event is reset in its callback: nothing asked of the tick.
    let mut host = FakeHost::default();
    let mut stream = subscribe(&mut host, "200");
    chunk(&mut stream, &mut host, b"data: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert_eq!(chunk(&mut stream, &mut host, b"data: 4\n\n"), b"");
    assert!(!stream.take_close_due());
    stream.close_after_cut(&mut host);
    assert_eq!(host.closes, 1);
}

/// Looking at whether a request's first event would be refused counts nothing: the three events
/// of the hour still pass after three requests were let through.
#[test]
fn requests_let_through_count_nothing() {
    let mut host = FakeHost::default();
    for _ in 0..3 {
        subscribe(&mut host, "200");
    }
    let mut stream = subscribe(&mut host, "200");
    let three = b"data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_eq!(chunk(&mut stream, &mut host, three), three);
    assert!(!host.closed && host.counted.is_empty());
}

#[test]
fn an_error_answer_carries_no_events() {
    let mut host = FakeHost::default();
    let mut stream = subscribe(&mut host, "503");
    let many = b"data: x\n\n".repeat(10);
    assert_eq!(chunk(&mut stream, &mut host, &many), many);
    assert!(!host.closed && host.counted.is_empty());
}

/// A request the filter answers itself after its events were planned (here the clock fails as the
/// backend JWT is made, after throttling read it) carries no events: the filter's own answer goes
/// out whole, its body never read as events nor counted, the stream never reset.
#[test]
fn a_request_answered_by_the_filter_counts_no_events() {
    let json = SECURED
        .replacen('{', r#"{"backend_jwt": {"algorithm": "none", "header": "X-Backend-JWT"},"#, 1)
        .replacen(r#""version": "1","#, r#""version": "1", "count_server_sent_events": true,"#, 1);
    let mut config = Config::from_json(json.as_bytes()).unwrap();
    assert!(config.routes.apis[0].counts_server_sent_events);
    let mut host =
        FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("authorization", "Bearer opaque-token-1")]);
    host.now = 1_000;
    prepare_counters(&mut host, &mut config);
    let mut stream = stream(Rc::new(config));
    assert_eq!(stream.on_request_headers(&mut host, true), Flow::Waiting);
    // Authentication and throttling read the clock; making the backend JWT finds it broken.
    host.clock_reads_left.set(Some(2));
    let active = r#"{"active":true,"client_id":"app1","scope":"menu:read","exp":5000}"#;
    stream.on_call_response(&mut host, 1, Answer::Http { status: 200, body: active.as_bytes().to_vec() });
    assert_eq!(host.counted, vec![900900], "answered by the filter");
    host.clock_reads_left.set(None);
    host.response.insert(":status".into(), b"200".to_vec());
    stream.on_response_headers(&mut host);
    let reply = b"{\"code\":\"900900\"}\n\n{\"more\":1}\n\n".repeat(200);
    // More blank-line-ended blocks than the subscription's 100 a minute.
    assert!(chunk(&mut stream, &mut host, &reply) == reply, "the filter's answer goes out whole");
    assert!(!host.closed);
    assert_eq!(host.counted, vec![900900]);
}

/// The events are read in the answer as the backend sends it: the backend is not asked to
/// compress it (a gzipped stream's bytes, read as lines, would count nothing its events are, and
/// be cut anywhere). Other APIs' requests keep the client's `accept-encoding`.
#[test]
fn the_backend_is_not_asked_to_compress_a_stream_whose_events_are_counted() {
    let headers = [(":method", "GET"), (":path", "/ticks/1/prices"), ("accept-encoding", "gzip, br")];
    let mut host = FakeHost { now: 7_200, ..FakeHost::request(&headers) };
    let mut counted = events_config();
    prepare_counters(&mut host, &mut counted);
    let mut events = stream(Rc::new(counted));
    assert_eq!(events.on_request_headers(&mut host, true), Flow::Continue);
    assert!(!host.request.contains_key("accept-encoding"));
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("accept-encoding", "gzip")]);
    let mut plain = stream(config());
    assert_eq!(plain.on_request_headers(&mut host, true), Flow::Continue);
    assert_eq!(host.req("accept-encoding"), "gzip");
}

/// A WebSocket upgrade to an API whose events are counted carries no events (a 101 is no `2xx`):
/// it counts as a request, else a backend that accepts it gave an uncounted connection.
#[test]
fn a_websocket_upgrade_to_an_event_stream_api_counts_as_a_request() {
    let mut host = FakeHost::default();
    for at in 0..4 {
        let headers =
            [(":method", "GET"), (":path", "/ticks/1/prices"), ("connection", "Upgrade"), ("upgrade", "websocket")];
        host.request = FakeHost::request(&headers).request;
        host.now = 7_200;
        let mut counted = events_config();
        prepare_counters(&mut host, &mut counted);
        let mut upgrade = stream(Rc::new(counted));
        let flow = upgrade.on_request_headers(&mut host, false);
        assert_eq!((flow == Flow::Continue, host.sent.is_none()), (at < 3, at < 3), "upgrade {at}");
    }
    assert_eq!(host.counted, vec![900800], "the fourth is over the API's three an hour");
}
