//! Request trailers: what never goes upstream in the headers never goes in the trailers either.

use super::*;

fn with_trailers(trailers: &[(&str, &str)]) -> FakeHost {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu")]);
    host.trailers = trailers.iter().map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())).collect();
    host
}

const SPOOFED: [(&str, &str); 5] = [
    ("x-apim-application-id", "admin-app"),
    ("X_APIM_TIER", "Unlimited"),
    ("authorization", "Bearer stolen"),
    ("apikey", "stolen"),
    ("grpc-status-details-bin", "kept"),
];

#[test]
fn client_copies_of_owned_headers_and_credentials_leave_the_trailers() {
    let mut host = with_trailers(&SPOOFED);
    let mut stream = stream(config());
    stream.on_request_headers(&mut host, false);
    assert_eq!(stream.on_request_trailers(&mut host), Flow::Continue);
    let left: Vec<&String> = host.trailers.keys().collect();
    assert_eq!(left, vec!["grpc-status-details-bin"], "only the client's own trailer goes upstream");
}

#[test]
fn credentials_in_the_trailers_stay_when_credentials_are_not_stripped() {
    let kept = SECURED.replacen('{', r#"{"credentials": {"strip": false},"#, 1);
    let mut host = with_trailers(&SPOOFED);
    let mut stream = stream(Rc::new(Config::from_json(kept.as_bytes()).unwrap()));
    stream.on_request_headers(&mut host, false);
    stream.on_request_trailers(&mut host);
    let mut left: Vec<&str> = host.trailers.keys().map(String::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, vec!["apikey", "authorization", "grpc-status-details-bin"]);
}
