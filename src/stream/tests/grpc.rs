//! gRPC requests in the response phase: Envoy answers a gRPC client itself with a trailers-only
//! 200 (`grpc-status` in the headers), also for a failed upstream, which the filter must still
//! replace with the transport fault.

use super::*;

fn grpc_request(content_type: &str) -> FakeHost {
    FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu"), ("content-type", content_type)])
}

#[test]
fn envoys_trailers_only_reply_to_a_grpc_client_for_a_failed_upstream_is_rewritten() {
    for content_type in ["application/grpc", "application/grpc+proto"] {
        let mut host = grpc_request(content_type);
        let mut call = stream(config());
        call.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), b"200".to_vec());
        host.response.insert("grpc-status".into(), b"14".to_vec());
        host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
        host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
        assert_eq!(call.on_response_headers(&mut host), Flow::Answered, "{content_type}");
        let (status, _, body) = host.sent.clone().expect("Envoy's reply is replaced");
        assert_eq!(status, 503, "Envoy turns it into gRPC's UNAVAILABLE");
        assert!(String::from_utf8(body).unwrap().contains("\"101503\""));
        assert_eq!(host.counted, vec![101503]);
    }
}

#[test]
fn a_grpc_backends_answer_and_other_clients_200s_pass() {
    let mut host = grpc_request("application/grpc");
    let mut call = stream(config());
    call.on_request_headers(&mut host, true);
    host.response.insert(":status".into(), b"200".to_vec());
    host.response.insert("grpc-status".into(), b"14".to_vec());
    host.properties.insert("response.code_details".into(), b"via_upstream".to_vec());
    assert_eq!(call.on_response_headers(&mut host), Flow::Continue);
    assert!(host.sent.is_none());
    // A content type that only begins like gRPC's is not gRPC (Envoy's own rule; gRPC-Web reaches the filter as gRPC after Envoy's grpc_web filter).
    let mut host = grpc_request("application/grpc-web-text");
    let mut web = stream(config());
    web.on_request_headers(&mut host, true);
    host.response.insert(":status".into(), b"200".to_vec());
    host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
    assert_eq!(web.on_response_headers(&mut host), Flow::Continue);
    assert!(host.sent.is_none(), "a 200 of a request that is not gRPC's is never looked at");
}

#[test]
fn a_fault_asks_envoy_for_the_grpc_status_an_override_names_and_else_for_none() {
    let json = r#"{"errors":{"overrides":{"1015xx":{"grpc_status":4}}},
        "apis":[{"name":"P","context":"/p","version":"1","security":[],
        "endpoints":{"production":"backend"},"resources":[{"method":"GET","path":"/menu"}]}]}"#;
    let overridden = Rc::new(Config::from_json(json.as_bytes()).unwrap());
    for (settings, expected) in [(overridden, Some(4)), (config(), None)] {
        let mut host = grpc_request("application/grpc");
        let mut call = stream(Rc::clone(&settings));
        call.on_request_headers(&mut host, true);
        host.response.insert(":status".into(), b"200".to_vec());
        host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
        host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
        assert_eq!(call.on_response_headers(&mut host), Flow::Answered);
        assert_eq!(host.sent_grpc_status, expected);
        // A path no API serves: a fault of the request phase, which no override names.
        let mut host =
            FakeHost::request(&[(":method", "GET"), (":path", "/nowhere"), ("content-type", "application/grpc")]);
        stream(settings).on_request_headers(&mut host, true);
        assert!(host.sent.is_some() && host.sent_grpc_status.is_none());
    }
}
