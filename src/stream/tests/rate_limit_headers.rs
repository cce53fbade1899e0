//! Tests of the IETF RateLimit headers a response carries: they speak of the window as it stands
//! when the response leaves, not when the request was counted.

use super::*;

/// An open API whose resource admits 10 requests a minute, with the RateLimit headers on (its
/// counter slots prepared in `host`, as at configure time).
fn config_with_headers(host: &mut FakeHost) -> Rc<Config> {
    let json = r#"{"throttling": {"rate_limit_headers": true},
        "apis": [{"name": "P", "context": "/p", "version": "1", "security": [], "endpoints": {"production": "prod"},
                  "resources": [{"method": "GET", "path": "/menu", "policy": "TenPerMinute"}]}],
        "policies": {"TenPerMinute": {"requests": 10, "per": "minute"}}}"#;
    let mut config = Config::from_json(json.as_bytes()).unwrap();
    crate::stream::prepare_counters(host, &mut config);
    Rc::new(config)
}

/// Sends one request at `counted_at` and its backend's 200 at `answered_at`: the response's
/// headers.
fn answered(host: &mut FakeHost, config: &Rc<Config>, counted_at: u64, answered_at: u64) -> HashMap<String, Vec<u8>> {
    host.request = [(":method", "GET"), (":path", "/p/1/menu")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    host.response = [(":status".to_string(), b"200".to_vec())].into_iter().collect();
    host.now = counted_at;
    let mut stream = stream(Rc::clone(config));
    assert_eq!(stream.on_request_headers(host, true), Flow::Continue);
    host.now = answered_at;
    assert_eq!(stream.on_response_headers(host), Flow::Continue);
    host.response.clone()
}

#[test]
fn ratelimit_reset_counts_from_when_the_response_leaves() {
    // 1_800_000_000 starts a minute. Counted 10 s in, answered by a slow backend 40 s in: the
    // window ends 20 s after the response leaves, not 50.
    let mut host = FakeHost::default();
    let config = config_with_headers(&mut host);
    let headers = answered(&mut host, &config, 1_800_000_010, 1_800_000_040);
    assert_eq!(headers.get("ratelimit-remaining").map(Vec::as_slice), Some(&b"9"[..]));
    assert_eq!(headers.get("ratelimit-reset").map(Vec::as_slice), Some(&b"20"[..]), "the window ends at +60");
    // Answered after the window ended: its count says nothing of the window the client is in.
    let headers = answered(&mut host, &config, 1_800_000_050, 1_800_000_075);
    assert_eq!(headers.get("ratelimit-reset"), None, "a reset in the past, or one past the next window's end");
    assert_eq!(headers.get("ratelimit-remaining"), None, "8 left in a window that is over");
    assert_eq!(headers.get("ratelimit-limit"), None);
}

/// The RateLimit headers of a counted request are the filter's: a backend's copies (its own
/// limiter's, or whatever it echoes) are replaced, and removed when the window ended while the
/// backend answered, for the client would read the backend's numbers as the gateway's.
#[test]
fn a_backends_ratelimit_headers_never_pass_as_the_gateways() {
    let mut host = FakeHost::default();
    let config = config_with_headers(&mut host);
    let backend_says = |host: &mut FakeHost| {
        for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
            host.response.insert(name.to_string(), b"1000".to_vec());
        }
    };
    for (counted_at, answered_at, remaining) in
        [(1_800_000_010, 1_800_000_020, Some(&b"9"[..])), (1_800_000_050, 1_800_000_075, None)]
    {
        host.request = [(":method", "GET"), (":path", "/p/1/menu")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        host.response = [(":status".to_string(), b"200".to_vec())].into_iter().collect();
        backend_says(&mut host);
        host.now = counted_at;
        let mut stream = stream(Rc::clone(&config));
        assert_eq!(stream.on_request_headers(&mut host, true), Flow::Continue);
        host.now = answered_at;
        assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
        assert_eq!(host.response.get("ratelimit-remaining").map(Vec::as_slice), remaining, "answered at {answered_at}");
        if remaining.is_none() {
            assert_eq!(host.response.get("ratelimit-limit"), None);
            assert_eq!(host.response.get("ratelimit-reset"), None);
        }
    }
}
