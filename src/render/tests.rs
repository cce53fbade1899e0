//! The renderer's own tests: every fault in every format, each format's shape, headers and
//! texts.

use super::*;
use crate::catalogue::{ProtocolState, ALL};
use crate::schema::RawConfig;

fn settings(json: &str) -> ErrorSettings {
    let raw: RawConfig = serde_json::from_str(json).expect("well-formed test JSON");
    ErrorSettings::compile(raw.errors, &raw.credentials).expect("valid settings")
}

const FORMATS: &[&str] = &["apim-json", "apim-xml", "microgateway", "choreo-connect", "kanali", "tyk", "template"];

fn settings_for(format: &str) -> ErrorSettings {
    settings(&format!(
        r#"{{"errors":{{"format":"{format}","template":{{"content_type":"application/json",
            "body":"{{\"c\":{{code}},\"s\":{{status}},\"m\":\"{{message}}\",\"d\":\"{{description}}\"}}"}}}}}}"#
    ))
}

/// Every catalogue entry, in every format: the status is the catalogue's (or the format's),
/// JSON parses, XML is well-formed, and the code, message and description are in the body.
#[test]
fn whole_catalogue_renders_in_every_format() {
    for format in FORMATS {
        let settings = settings_for(format);
        for id in ALL {
            let fault = Fault::transport(*id, ProtocolState::RequestDone);
            let rendered = render(&fault, &settings, None);
            let spec = id.spec();
            let expected_status = match settings.format {
                ErrorFormat::Tyk => formats::tyk(*id).0,
                ErrorFormat::Kanali => formats::kanali(*id).status,
                ErrorFormat::ChoreoConnect => formats::choreo_connect(*id).status.unwrap_or(spec.status),
                ErrorFormat::Microgateway => formats::microgateway(*id).and_then(|m| m.status).unwrap_or(spec.status),
                _ => spec.status,
            };
            assert_eq!(rendered.status, expected_status, "{format} {}", spec.id);
            let content_type = rendered.header("content-type").unwrap();
            if content_type.contains("xml") {
                let document = roxmltree::Document::parse(&rendered.body)
                    .unwrap_or_else(|e| panic!("{format} {}: {e}: {}", spec.id, rendered.body));
                let code = document.descendants().find(|n| n.tag_name().name() == "code").unwrap();
                assert_eq!(code.text(), Some(fault.code.to_string().as_str()));
            } else {
                let value: serde_json::Value = serde_json::from_str(&rendered.body)
                    .unwrap_or_else(|e| panic!("{format} {}: {e}: {}", spec.id, rendered.body));
                let text = value.to_string();
                match settings.format {
                    ErrorFormat::Tyk => assert_eq!(value["error"], formats::tyk(*id).1),
                    ErrorFormat::Kanali => {
                        let kanali = formats::kanali(*id);
                        assert_eq!(value["status"], kanali.status);
                        assert_eq!(value["message"], kanali.message);
                        assert_eq!(value["code"], kanali.code);
                    }
                    ErrorFormat::Template => {
                        assert_eq!(value["c"], fault.code);
                        assert_eq!(value["s"], expected_status);
                        assert_eq!(value["d"], spec.description);
                    }
                    // The Microgateway writes its own codes as numbers, backend failures' as
                    // strings.
                    ErrorFormat::Microgateway
                        if formats::microgateway(*id).is_some_and(|m| m.shape != formats::MicrogatewayShape::Fault) =>
                    {
                        let mgw = formats::microgateway(*id).unwrap();
                        let code = match mgw.shape {
                            formats::MicrogatewayShape::KeyTypeError => &value["ERROR_CODE"],
                            _ => &value["code"],
                        };
                        assert!(code.to_string().contains(&fault.code.to_string()), "{}: {text}", spec.id);
                        assert!(text.contains(&serde_json::to_string(mgw.description).unwrap()), "{text}");
                    }
                    ErrorFormat::Microgateway if !status_report(spec.family) => {
                        assert_eq!(value["fault"]["code"], fault.code, "{format} {}", spec.id);
                        let description = formats::microgateway(*id).map_or(spec.description, |m| m.description);
                        assert_eq!(value["fault"]["description"], description);
                    }
                    _ => {
                        let code = match settings.format {
                            ErrorFormat::ChoreoConnect => formats::choreo_connect(*id).code.unwrap_or(fault.code),
                            _ => fault.code,
                        };
                        assert!(text.contains(&format!("\"{code}\"")), "{format} {}: {text}", spec.id);
                        let description = match settings.format {
                            ErrorFormat::Microgateway => {
                                formats::microgateway(*id).map_or(spec.description, |m| m.description)
                            }
                            ErrorFormat::ChoreoConnect => {
                                formats::choreo_connect(*id).description.unwrap_or(spec.description)
                            }
                            _ => spec.description,
                        };
                        assert!(text.contains(&serde_json::to_string(description).unwrap()), "{text}");
                    }
                }
            }
        }
    }
}

#[test]
fn apim_json_bodies_are_wso2_shaped() {
    let settings = settings("{}");
    let body = render(&Fault::new(FaultId::InvalidCredentials), &settings, None).body;
    assert_eq!(
        body,
        r#"{"code":"900901","message":"Invalid Credentials","description":"Invalid Credentials. Make sure you have provided the correct security credentials"}"#
    );
    let body = render(&Fault::new(FaultId::NotFound), &settings, None).body;
    assert_eq!(
        body,
        r#"{"code":"404","type":"Status report","message":"Not Found","description":"The requested resource is not available."}"#
    );
    let body = render(&Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady), &settings, None).body;
    assert_eq!(
        body,
        r#"{"code":"101503","type":"Status report","message":"Runtime Error","description":"Error connecting to the back end"}"#
    );
}

#[test]
fn microgateway_and_xml_shapes() {
    let fault = Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady);
    assert_eq!(
        render(&fault, &settings(r#"{"errors":{"format":"microgateway"}}"#), None).body,
        r#"{"fault":{"code":"101503","message":"Runtime Error","description":"Error connecting to the back end"}}"#
    );
    assert_eq!(
        render(&fault, &settings(r#"{"errors":{"format":"apim-xml"}}"#), None).body,
        "<am:fault xmlns:am=\"http://wso2.org/apimanager\"><am:code>101503</am:code><am:type>Status report</am:type>\
         <am:message>Runtime Error</am:message><am:description>Error connecting to the back end</am:description></am:fault>"
    );
    let throttled = render(&Fault::new(FaultId::ApiThrottled), &settings(r#"{"errors":{"format":"apim-xml"}}"#), None);
    assert!(throttled.body.starts_with("<amt:fault xmlns:amt=\"http://wso2.org/apimanager/throttling\">"));
}

#[test]
fn hostile_messages_render_safely_everywhere() {
    let message = "He said \"<b>&amp;</b>\" — ünïcødé 🍕 \\ \u{1}";
    for format in FORMATS {
        let json = format!(
            r#"{{"errors":{{"format":"{format}","overrides":{{"900901":{{"message":{m},"description":{m}}}}},
               "template":{{"content_type":"application/xml","body":"<e><m>{{message}}</m><d>{{description}}</d></e>"}}}}}}"#,
            m = serde_json::to_string(message).unwrap()
        );
        let settings = settings(&json);
        let rendered = render(&Fault::new(FaultId::InvalidCredentials), &settings, None);
        let content_type = rendered.header("content-type").unwrap();
        if content_type.contains("xml") {
            let document = roxmltree::Document::parse(&rendered.body).unwrap_or_else(|e| panic!("{format}: {e}"));
            let text: String = document
                .descendants()
                .find(|n| n.tag_name().name() == "message" || n.tag_name().name() == "m")
                .and_then(|n| n.text())
                .unwrap()
                .to_string();
            assert_eq!(text, message.replace('\u{1}', "\u{FFFD}"), "{format}");
        } else {
            let value: serde_json::Value =
                serde_json::from_str(&rendered.body).unwrap_or_else(|e| panic!("{format}: {e}"));
            let found = match *format {
                "tyk" => value["error"].clone(),
                "choreo-connect" => value["error_message"].clone(),
                "microgateway" => value["fault"]["message"].clone(),
                _ => value["message"].clone(),
            };
            // Tyk's text comes from its own table unless overridden; the override applies.
            assert_eq!(found, message, "{format}: {}", rendered.body);
        }
    }
}

#[test]
fn missing_credentials_description_names_the_configured_headers() {
    let default = render(&Fault::new(FaultId::MissingCredentials), &settings("{}"), None);
    assert!(default.body.contains(FaultId::MissingCredentials.spec().description), "{}", default.body);
    let custom = settings(r#"{"credentials":{"authorization_header":"x-token","api_key_header":"x-key"}}"#);
    let body = render(&Fault::new(FaultId::MissingCredentials), &custom, None).body;
    assert!(body.contains("'x-token : Bearer ACCESS_TOKEN'") && body.contains("'x-key : API_KEY'"), "{body}");
    let overridden = settings(r#"{"errors":{"overrides":{"900902":{"description":"Send a key"}}}}"#);
    let body = render(&Fault::new(FaultId::MissingCredentials), &overridden, None).body;
    assert!(body.contains("\"description\":\"Send a key\""), "{body}");
}

#[test]
fn unauthorized_faults_carry_a_challenge() {
    let settings = settings(r#"{"credentials":{"realm":"shop"}}"#);
    let missing = render(&Fault::new(FaultId::MissingCredentials), &settings, None);
    // Every 401, a missing credential's too, as API-M 4.x sends it (WSO2-CONTRACT.md: every 401).
    let challenge =
        "Bearer realm=\"shop\", error=\"invalid_token\", error_description=\"The provided token is invalid\"";
    assert_eq!(missing.header("www-authenticate"), Some(challenge));
    let invalid =
        render(&Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token"), &settings, None);
    assert_eq!(invalid.header("www-authenticate"), Some(challenge));
    let forbidden = render(&Fault::new(FaultId::ResourceForbidden), &settings, None);
    assert_eq!(forbidden.header("www-authenticate"), None);
}

#[test]
fn cors_headers_follow_the_origin_list() {
    let wildcard = settings(r#"{"errors":{"cors":{"allow_origins":["*"]}}}"#);
    let rendered = render(&Fault::new(FaultId::NotFound), &wildcard, Some("https://a.example"));
    assert_eq!(rendered.header("access-control-allow-origin"), Some("*"));
    assert!(rendered.header("access-control-allow-methods").unwrap().contains("GET"));
    let listed = settings(r#"{"errors":{"cors":{"allow_origins":["https://a.example"],"allow_credentials":true}}}"#);
    let rendered = render(&Fault::new(FaultId::NotFound), &listed, Some("https://a.example"));
    assert_eq!(rendered.header("access-control-allow-origin"), Some("https://a.example"));
    assert_eq!(rendered.header("access-control-allow-credentials"), Some("true"));
    let rendered = render(&Fault::new(FaultId::NotFound), &listed, Some("https://evil.example"));
    assert_eq!(rendered.header("access-control-allow-origin"), None);
    let none = render(&Fault::new(FaultId::NotFound), &settings("{}"), Some("https://a.example"));
    assert_eq!(none.header("access-control-allow-origin"), None);
}

/// `allow_methods: ["*"]` (Fetch's wildcard) allows every method: a preflight is answered
/// with the resource's methods (it was answered with none, and browsers sent nothing).
#[test]
fn a_wildcard_method_allows_the_resources_methods() {
    let wildcard = settings(r#"{"errors":{"cors":{"allow_origins":["https://a.example"],"allow_methods":["*"]}}}"#);
    let methods = ["GET".to_string(), "PUT".to_string()];
    let preflight = Preflight { methods: &methods, request_headers: None };
    let headers = cors_headers(wildcard.cors.as_ref().unwrap(), Some("https://a.example"), Some(preflight), None);
    let allowed = headers.iter().find(|(name, _)| name == "access-control-allow-methods").map(|(_, v)| v.as_str());
    assert_eq!(allowed, Some("GET,PUT"));
}

#[test]
fn throttle_bodies_carry_the_next_access_time() {
    let mut fault = Fault::new(FaultId::ResourceThrottled);
    fault.next_access_time = Some(1_787_393_730); // 2026-08-22 10:15:30 UTC
    fault.retry_after_s = Some(17);
    let rendered = render(&fault, &settings("{}"), None);
    assert_eq!(
        rendered.body,
        r#"{"code":"900802","message":"Message throttled out","description":"You have exceeded your quota .You can access API after 2026-Aug-22 10:15:30+0000 UTC","nextAccessTime":"2026-Aug-22 10:15:30+0000 UTC"}"#
    );
    assert_eq!(rendered.header("retry-after"), Some("17"));
}

#[test]
fn dates_format_like_wso2() {
    assert_eq!(format_next_access_time(0), "1970-Jan-01 00:00:00+0000 UTC");
    assert_eq!(format_next_access_time(951_782_400), "2000-Feb-29 00:00:00+0000 UTC");
    assert_eq!(format_next_access_time(4_102_444_799), "2099-Dec-31 23:59:59+0000 UTC");
}

#[test]
fn kanali_answers_with_its_own_pairs_and_the_microgateway_with_its_texts() {
    let kanali = settings(r#"{"errors":{"format":"kanali"}}"#);
    let refused = render(&Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady), &kanali, None);
    let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!((refused.status, body["status"].clone(), body["code"].clone()), (502, 502.into(), 8.into()));
    assert_eq!(body["message"], "Could not get a valid or any response from the upstream server.");
    let missing = render(&Fault::new(FaultId::NotFound), &kanali, None);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&missing.body).unwrap()["message"],
        formats::KANALI[0].message
    );
    let mgw = settings(r#"{"errors":{"format":"microgateway"}}"#);
    assert_eq!(
        render(&Fault::new(FaultId::AuthGeneralError), &mgw, None).body,
        r#"{"fault":{"code":900900,"message":"Unclassified Authentication Failure","description":"Unclassified Authentication Failure"}}"#
    );
    assert_eq!(
        render(&Fault::new(FaultId::ConnectionTimedOut), &mgw, None).body,
        r#"{"fault":{"code":"101504","message":"Runtime Error","description":"Connection timed out"}}"#
    );
}

#[test]
fn every_401_and_only_a_401_challenges_with_invalid_token_as_api_m_does() {
    // Choreo Connect's own form: src/render/choreo_tests.rs.
    for format in FORMATS.iter().filter(|format| **format != "choreo-connect") {
        let settings = settings_for(format);
        for id in ALL {
            let fault = Fault::transport(*id, ProtocolState::RequestDone);
            let rendered = render(&fault, &settings, None);
            let challenge = rendered.header("www-authenticate");
            // API-M 4.x's `APIAuthenticationHandler.handleAuthFailure`: every 401, a missing
            // credential's included.
            let expected = (rendered.status == 401).then(|| {
                r#"Bearer realm="WSO2 API Manager", error="invalid_token", error_description="The provided token is invalid""#
                    .to_string()
            });
            assert_eq!(challenge.map(String::from), expected, "{format} {}", id.spec().id);
        }
    }
    // A scope the token lacks, at 403 (RFC 6750 3.1); an override to another status: none.
    let scope = Fault::new(FaultId::InsufficientScope).with_challenge_error("insufficient_scope");
    let apim = settings_for("apim-json");
    assert_eq!(
        render(&scope, &apim, None).header("www-authenticate"),
        Some(r#"Bearer realm="WSO2 API Manager", error="insufficient_scope""#)
    );
    let custom = settings(r#"{"errors":{"overrides":{"900901":{"status":555}}}}"#);
    let invalid = Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token");
    assert_eq!(render(&invalid, &custom, None).header("www-authenticate"), None);
}

#[test]
fn the_seeds_texts_and_statuses() {
    let body = |format: &str, id: FaultId| {
        serde_json::from_str::<serde_json::Value>(&render(&Fault::new(id), &settings_for(format), None).body).unwrap()
    };
    assert_eq!(body("tyk", FaultId::SubscriptionThrottled)["error"], "Quota Exceeded");
    assert_eq!(body("tyk", FaultId::MissingCredentials)["error"], "Authorization Field Missing");
    assert_eq!(
        body("apim-json", FaultId::TemporaryServerError)["description"],
        "Server has encountered an error. Please try again."
    );
    let choreo = settings_for("choreo-connect");
    assert_eq!(render(&Fault::new(FaultId::HardLimitExceeded), &choreo, None).status, 429);
    // Choreo Connect's enforcer refuses a key type without an endpoint as unauthenticated.
    let sandbox = render(&Fault::new(FaultId::SandboxKeyWithoutEndpoint), &choreo, None);
    assert_eq!((sandbox.status, sandbox.header("www-authenticate").is_some()), (401, true));
    let described = body("choreo-connect", FaultId::SandboxKeyWithoutEndpoint)["error_description"].clone();
    assert_eq!(described, "Sandbox key offered to an API with no sandbox endpoint. Make sure you have provided the correct security credentials");
    assert_eq!(render(&Fault::new(FaultId::SandboxKeyWithoutEndpoint), &settings("{}"), None).status, 403);
    // XML keeps line breaks and tabs as references: in an attribute a raw one reads as a space.
    assert_eq!(xml_escape("a\nb\r\tc<&"), "a&#10;b&#13;&#9;c&lt;&amp;");
    // A fault whose CORS answer depends on the origin says so, allowed or not.
    let cors = settings(r#"{"errors":{"cors":{"allow_origins":["https://good.example"]}}}"#);
    for origin in [Some("https://good.example"), Some("https://evil.example"), None] {
        let rendered = render(&Fault::new(FaultId::NotFound), &cors, origin);
        assert_eq!(rendered.header("vary"), Some("Origin"), "{origin:?}");
    }
}

#[test]
fn code_families_are_overridden_in_one_line_and_the_most_specific_key_wins() {
    let settings = settings(
        r#"{"errors":{"overrides":{"9008xx":{"status":555},"90080x":{"status":556},"900802":{"status":557},
            "burst_throttled":{"status":558},"1015xx":{"description":"backend trouble"}}}}"#,
    );
    let status = |id| render(&Fault::new(id), &settings, None).status;
    assert_eq!(status(FaultId::SubscriptionThrottled), 556);
    assert_eq!(status(FaultId::ResourceThrottled), 557);
    assert_eq!(status(FaultId::BurstThrottled), 558);
    assert_eq!(status(FaultId::ThrottleInternalError), 556);
    assert_eq!(status(FaultId::InvalidCredentials), 401, "other families untouched");
    let timeout = render(&Fault::transport(FaultId::ConnectionTimedOut, ProtocolState::RequestDone), &settings, None);
    assert!(timeout.body.contains("backend trouble"), "{}", timeout.body);
}

#[test]
fn kanali_details_link_the_docs() {
    let settings = settings(r#"{"errors":{"format":"kanali","kanali_docs_url":"https://docs.example/errors"}}"#);
    let value: serde_json::Value =
        serde_json::from_str(&render(&Fault::new(FaultId::NotFound), &settings, None).body).unwrap();
    assert_eq!(value["code"], 0);
    assert_eq!(value["status"], 404);
    assert_eq!(value["details"], "Visit https://docs.example/errors#00 for more details.");
}

#[test]
fn template_placeholders_and_unknown_braces() {
    let settings = settings(
        r#"{"errors":{"format":"template","template":{"content_type":"text/plain","body":"{code} {x} {status}: {message}"}}}"#,
    );
    let rendered = render(&Fault::new(FaultId::NotFound), &settings, None);
    assert_eq!(rendered.body, "404 {x} 404: Not Found");
    assert_eq!(rendered.header("content-type"), Some("text/plain"));
}

/// API-M's `_production_key_error_` and `_sandbox_key_error_` set ERROR_CODE 900901, ERROR_MESSAGE
/// and CUSTOM_HTTP_SC 403, then call the `fault` sequence (product-apim v4.0.0 and v4.2.0,
/// `_sandbox_key_error_.xml` lines 20-23), whose JSON is a status report with the message
/// `Runtime Error` (`fault.xml` line 35); 3.x's `fault.xml` (v3.2.0, lines 36-41) wrote the same in
/// `<am:fault xmlns:am="http://wso2.org/apimanager">`.
#[test]
fn a_key_type_without_an_endpoint_is_answered_by_the_fault_sequence() {
    let fault = Fault::new(FaultId::SandboxKeyWithoutEndpoint);
    let json = render(&fault, &settings_for("apim-json"), None);
    assert_eq!(json.status, 403);
    assert_eq!(
        json.body,
        r#"{"code":"900901","type":"Status report","message":"Runtime Error","description":"Sandbox key offered to the API with no sandbox endpoint"}"#
    );
    let xml = render(&Fault::new(FaultId::ProductionKeyWithoutEndpoint), &settings_for("apim-xml"), None);
    assert_eq!(
        xml.body,
        "<am:fault xmlns:am=\"http://wso2.org/apimanager\"><am:code>900901</am:code><am:type>Status report</am:type>\
         <am:message>Runtime Error</am:message><am:description>Production key offered to the API with no production \
         endpoint</am:description></am:fault>"
    );
    // A 403: no challenge in API-M's formats; Choreo Connect's AuthFilter keeps its own answer.
    assert_eq!((xml.status, xml.header("www-authenticate")), (403, None));
    let choreo: serde_json::Value =
        serde_json::from_str(&render(&fault, &settings_for("choreo-connect"), None).body).unwrap();
    assert_eq!(choreo["error_message"], "Invalid Credentials");
}

/// TykTechnologies/tyk `gateway/mw_key_expired_check.go` lines 45 and 62: Tyk tells a client
/// whose key expired to renew it (401) and one whose key is inactive (403), not "Key not
/// authorised", so a client that renews on that text keeps working.
#[test]
fn tyk_tells_an_expired_or_inactive_key_to_renew() {
    let tyk = settings(r#"{"errors":{"format":"tyk"}}"#);
    let expired = render(&Fault::new(FaultId::AccessTokenExpired), &tyk, None);
    assert_eq!((expired.status, expired.body.as_str()), (401, r#"{"error":"Key has expired, please renew"}"#));
    let inactive = render(&Fault::new(FaultId::AccessTokenInactive), &tyk, None);
    assert_eq!((inactive.status, inactive.body.as_str()), (403, r#"{"error":"Key is inactive, please renew"}"#));
}

/// Tyk (`gateway/handler_error.go` line 309, `header.ApplicationJSON`) and Kanali (release-2.0
/// `pkg/middleware/gateway.go` line 57) send their errors as a bare `application/json`: a client
/// or test migrated from them that compares the header sees the same value.
#[test]
fn tyk_and_kanali_send_a_bare_json_content_type() {
    for format in ["tyk", "kanali"] {
        let rendered = render(&Fault::new(FaultId::InvalidCredentials), &settings_for(format), None);
        assert_eq!(rendered.header("content-type"), Some("application/json"), "{format}");
    }
}
