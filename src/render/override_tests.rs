//! Overrides of a catalogue entry's status, code, message and description, as every format
//! renders them (a WebSocket client's notice included).

use super::*;
use crate::catalogue::ProtocolState;
use crate::schema::RawConfig;

fn settings(json: &str) -> ErrorSettings {
    let raw: RawConfig = serde_json::from_str(json).expect("well-formed test JSON");
    ErrorSettings::compile(raw.errors, &raw.credentials).expect("valid settings")
}

#[test]
fn overrides_change_status_message_and_description() {
    let settings =
        settings(r#"{"errors":{"overrides":{"900800":{"status":555},"api_throttled":{"description":"slow down"}}}}"#);
    let rendered = render(&Fault::new(FaultId::ApiThrottled), &settings, None);
    assert_eq!(rendered.status, 555);
    assert!(rendered.body.contains("slow down"));
    // Transport codes are overridden by the code the arithmetic produces.
    let settings = settings_with_override("101507");
    let timeout = Fault::transport(FaultId::ConnectionTimedOut, ProtocolState::RequestDone);
    assert_eq!(render(&timeout, &settings, None).status, 599);
    let refused = Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady);
    assert_eq!(render(&refused, &settings, None).status, 503);
}

/// A code override changes the code a body or a WebSocket notice carries (the 4003 of API-M
/// 4.x's earlier releases), in every format that writes a code; the fault keeps its own, which
/// stats count.
#[test]
fn a_code_override_changes_the_code_clients_read() {
    let frame = Fault::new(FaultId::WebsocketFrameThrottled);
    let default = settings("{}");
    assert_eq!(websocket_frame_text(&frame, &default), "Error code: 4008 reason: Websocket frame throttled out");
    let earlier = settings(r#"{"errors":{"overrides":{"websocket_frame_throttled":{"code":4003}}}}"#);
    assert_eq!(websocket_frame_text(&frame, &earlier), "Error code: 4003 reason: Websocket frame throttled out");
    for format in ["apim-json", "apim-xml", "microgateway", "choreo-connect"] {
        let json = format!(r#"{{"errors":{{"format":"{format}","overrides":{{"900800":{{"code":910800}}}}}}}}"#);
        let body = render(&Fault::new(FaultId::ApiThrottled), &settings(&json), None).body;
        assert!(body.contains("910800") && !body.contains("900800"), "{format}: {body}");
    }
    assert_eq!(Fault::new(FaultId::ApiThrottled).code, 900800, "the fault keeps its code");
}

fn settings_with_override(code: &str) -> ErrorSettings {
    settings(&format!(r#"{{"errors":{{"overrides":{{"{code}":{{"status":599}}}}}}}}"#))
}
