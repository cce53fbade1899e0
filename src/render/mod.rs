//! The one renderer: turns a [`Fault`] into the status, headers and body the client receives,
//! in the configured format, with overrides, CORS headers and `WWW-Authenticate` applied. Its
//! settings are compiled in [`settings`].

mod microgateway;
pub mod settings;

use std::borrow::Cow;

use serde::Serialize;

use crate::catalogue::{formats, Family, Fault, FaultId};
use crate::schema::ErrorFormat;
pub use settings::{Cors, ErrorSettings};

/// A fault ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    /// The `grpc-status` a gRPC client reads; `None`: Envoy's mapping of `status`.
    pub grpc_status: Option<u8>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[cfg(test)]
impl Rendered {
    /// The value of a header (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// Code, status, message and description after format defaults and overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub code: u32,
    pub status: u16,
    pub message: Cow<'a, str>,
    pub description: Cow<'a, str>,
    pub grpc_status: Option<u8>,
}

/// Applies the format's own statuses and messages, then code overrides, then id overrides.
pub fn resolve<'a>(fault: &Fault, settings: &'a ErrorSettings) -> Resolved<'a> {
    let spec = fault.id.spec();
    let mut resolved = Resolved {
        code: fault.code,
        status: spec.status,
        message: Cow::Borrowed(spec.message),
        description: Cow::Borrowed(spec.description),
        grpc_status: None,
    };
    if fault.id == FaultId::MissingCredentials {
        resolved.description = Cow::Owned(missing_credentials_description(settings));
    }
    match settings.format {
        ErrorFormat::Tyk => {
            let (status, message) = formats::tyk(fault.id);
            resolved.status = status;
            resolved.message = Cow::Borrowed(message);
        }
        ErrorFormat::Kanali => {
            let kanali = formats::kanali(fault.id);
            resolved.status = kanali.status;
            resolved.message = Cow::Borrowed(kanali.message);
        }
        ErrorFormat::Microgateway => {
            if let Some(mgw) = formats::microgateway(fault.id) {
                resolved.status = mgw.status.unwrap_or(resolved.status);
                resolved.message = Cow::Borrowed(mgw.message);
                resolved.description = Cow::Borrowed(mgw.description);
            }
        }
        ErrorFormat::ChoreoConnect => {
            if let Some((status, description)) = formats::choreo_connect(fault.id) {
                resolved.status = status;
                if let Some(description) = description {
                    resolved.description = Cow::Borrowed(description);
                }
            }
        }
        _ => {}
    }
    // The least specific first, so the most specific wins: code patterns (`9008xx`, broadest
    // first), then the exact code, then the entry id.
    let patterns = settings.overrides_by_pattern.iter().filter(|(pattern, _)| pattern.matches(fault.code));
    let exact = [settings.overrides_by_code.get(&fault.code), settings.overrides_by_id.get(&fault.id)];
    for found in patterns.map(|(_, value)| value).chain(exact.into_iter().flatten()) {
        if let Some(code) = found.code {
            resolved.code = code;
        }
        if let Some(status) = found.status {
            resolved.status = status;
        }
        if let Some(message) = &found.message {
            resolved.message = Cow::Borrowed(message.as_str());
        }
        if let Some(description) = &found.description {
            resolved.description = Cow::Borrowed(description.as_str());
        }
        if let Some(grpc_status) = found.grpc_status {
            resolved.grpc_status = Some(grpc_status);
        }
    }
    resolved
}

/// The `WWW-Authenticate` challenge a fault answered with `status` carries (RFC 6750 3): every 401
/// (`error="invalid_token"` unless the fault names another error, and no error when no credentials
/// were sent, as RFC 6750 3.1 asks), and a 403 for a scope the token lacks
/// (`error="insufficient_scope"`). A fault whose status an override or a format changed to
/// anything else carries none.
fn challenge(fault: &Fault, status: u16, realm: &str) -> Option<String> {
    let error = match (status, fault.challenge_error) {
        (401, _) if fault.id == FaultId::MissingCredentials => None,
        (401, error) => Some(error.unwrap_or("invalid_token")),
        (403, Some(error @ "insufficient_scope")) => Some(error),
        _ => return None,
    };
    let mut challenge = format!("Bearer realm=\"{realm}\"");
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"{error}\""));
    }
    Some(challenge)
}

/// WSO2 names the configured headers in the 900902 description (`Authorization` as WSO2 spells
/// it when the default header is used).
fn missing_credentials_description(settings: &ErrorSettings) -> String {
    let authorization = if settings.authorization_header.eq_ignore_ascii_case("authorization") {
        "Authorization"
    } else {
        settings.authorization_header.as_str()
    };
    format!(
        "Invalid Credentials. Make sure your API invocation call has a header: '{authorization} : Bearer ACCESS_TOKEN' or '{authorization} : Basic ACCESS_TOKEN' or '{} : API_KEY'",
        settings.api_key_header
    )
}

/// Renders a fault. `origin` is the request's `Origin` header, for CORS.
pub fn render(fault: &Fault, settings: &ErrorSettings, origin: Option<&str>) -> Rendered {
    let resolved = resolve(fault, settings);
    let family = fault.id.spec().family;
    let next_access_time = fault.next_access_time.map(format_next_access_time);
    let (content_type, body) = match settings.format {
        ErrorFormat::ApimJson => (JSON, apim_json(&resolved, family, next_access_time.as_deref())),
        ErrorFormat::ApimXml => (XML, apim_xml(&resolved, family, next_access_time.as_deref())),
        ErrorFormat::Microgateway => (JSON, microgateway::json(&resolved, fault.id)),
        ErrorFormat::ChoreoConnect => (JSON, choreo_json(&resolved, fault.id)),
        ErrorFormat::Kanali => (JSON, kanali_json(&resolved, fault.id, &settings.kanali_docs_url)),
        ErrorFormat::Tyk => (JSON, to_json(&TykBody { error: &resolved.message })),
        ErrorFormat::Template => match &settings.template {
            Some(template) => {
                (template.content_type.as_str(), fill_template(&template.body, &template.content_type, &resolved))
            }
            // Config validation makes this unreachable; fall back to the default format.
            None => (JSON, apim_json(&resolved, family, next_access_time.as_deref())),
        },
    };
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if let Some(challenge) = challenge(fault, resolved.status, &settings.realm) {
        headers.push(("www-authenticate".to_string(), challenge));
    }
    if let Some(seconds) = fault.retry_after_s {
        headers.push(("retry-after".to_string(), seconds.to_string()));
    }
    if let Some(cors) = &settings.cors {
        headers.extend(cors_headers(cors, origin, None));
    }
    Rendered { status: resolved.status, grpc_status: resolved.grpc_status, headers, body }
}

/// The text of the frame a WebSocket client is sent in place of a frame the filter dropped, as
/// API-M 4.x's gateway words it (`Error code: 4008 reason: Websocket frame throttled out`), with the
/// entry's overrides applied: a WebSocket connection has no status or body to render into.
pub fn websocket_frame_text(fault: &Fault, settings: &ErrorSettings) -> String {
    let resolved = resolve(fault, settings);
    format!("Error code: {} reason: {}", resolved.code, resolved.message)
}

const JSON: &str = "application/json; charset=UTF-8";
const XML: &str = "application/xml; charset=UTF-8";

/// CORS headers for a response to a request from `origin`. A preflight's answer (`preflight`:
/// the methods of the resource asked about) allows those of them the configuration allows, and
/// adds `Max-Age`; other responses allow every configured method.
pub fn cors_headers(cors: &Cors, origin: Option<&str>, preflight: Option<&[String]>) -> Vec<(String, String)> {
    let answer = cors.headers(origin, preflight.is_some());
    let mut headers = Vec::with_capacity(answer.values.len() + 1);
    for (name, value) in answer.values {
        let Some(value) = value else { continue };
        let value = match preflight {
            Some(methods) if name == "access-control-allow-methods" => {
                methods.iter().filter(|method| cors.allows_method(method)).cloned().collect::<Vec<_>>().join(",")
            }
            _ => value.to_string(),
        };
        headers.push((name.to_string(), value));
    }
    if answer.varies_on_origin {
        // The answer depends on the origin whatever it is: a shared cache must not serve one
        // without CORS headers to an allowed origin.
        headers.push(("vary".to_string(), "Origin".to_string()));
    }
    headers
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[derive(Serialize)]
struct ApimBody<'a> {
    code: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    message: &'a str,
    description: &'a str,
    #[serde(rename = "nextAccessTime", skip_serializing_if = "Option::is_none")]
    next_access_time: Option<&'a str>,
}

fn status_report(family: Family) -> bool {
    matches!(family, Family::Transport | Family::Gateway | Family::ChoreoUpstream)
}

fn apim_json(resolved: &Resolved<'_>, family: Family, next_access_time: Option<&str>) -> String {
    let description = throttle_description(resolved, next_access_time);
    to_json(&ApimBody {
        code: resolved.code.to_string(),
        kind: status_report(family).then_some("Status report"),
        message: &resolved.message,
        description: &description,
        next_access_time,
    })
}

/// WSO2 appends the next access time to throttling descriptions (`" .You can access API after "`).
fn throttle_description<'a>(resolved: &'a Resolved<'_>, next_access_time: Option<&str>) -> Cow<'a, str> {
    match next_access_time {
        Some(time) => Cow::Owned(format!("{} .You can access API after {time}", resolved.description)),
        None => Cow::Borrowed(&resolved.description),
    }
}

fn apim_xml(resolved: &Resolved<'_>, family: Family, next_access_time: Option<&str>) -> String {
    let (prefix, namespace) = match family {
        Family::Auth => ("ams", "http://wso2.org/apimanager/security"),
        Family::Throttle => ("amt", "http://wso2.org/apimanager/throttling"),
        Family::Handler | Family::Transport | Family::Gateway | Family::ChoreoUpstream => {
            ("am", "http://wso2.org/apimanager")
        }
    };
    let description = throttle_description(resolved, next_access_time);
    let mut xml = format!("<{prefix}:fault xmlns:{prefix}=\"{namespace}\">");
    xml.push_str(&format!("<{prefix}:code>{}</{prefix}:code>", resolved.code));
    if status_report(family) {
        xml.push_str(&format!("<{prefix}:type>Status report</{prefix}:type>"));
    }
    xml.push_str(&format!("<{prefix}:message>{}</{prefix}:message>", xml_escape(&resolved.message)));
    xml.push_str(&format!("<{prefix}:description>{}</{prefix}:description>", xml_escape(&description)));
    if let Some(time) = next_access_time {
        xml.push_str(&format!("<{prefix}:nextAccessTime>{}</{prefix}:nextAccessTime>", xml_escape(time)));
    }
    xml.push_str(&format!("</{prefix}:fault>"));
    xml
}

#[derive(Serialize)]
struct ChoreoEnforcerBody<'a> {
    code: String,
    error_message: &'a str,
    error_description: &'a str,
}

/// Choreo Connect's enforcer answers `error_message`/`error_description`; its router (upstream
/// failures and unknown paths) answers `message`/`description`.
fn choreo_json(resolved: &Resolved<'_>, id: FaultId) -> String {
    let family = id.spec().family;
    if matches!(family, Family::ChoreoUpstream | Family::Gateway | Family::Transport) {
        return to_json(&ApimBody {
            code: resolved.code.to_string(),
            kind: None,
            message: &resolved.message,
            description: &resolved.description,
            next_access_time: None,
        });
    }
    to_json(&ChoreoEnforcerBody {
        code: resolved.code.to_string(),
        error_message: &resolved.message,
        error_description: &resolved.description,
    })
}

#[derive(Serialize)]
struct KanaliBody<'a> {
    status: u16,
    message: &'a str,
    code: u8,
    details: String,
}

fn kanali_json(resolved: &Resolved<'_>, id: FaultId, docs_url: &str) -> String {
    let code = formats::kanali(id).code;
    to_json(&KanaliBody {
        status: resolved.status,
        message: &resolved.message,
        code,
        details: format!("Visit {docs_url}#{code:02} for more details."),
    })
}

#[derive(Serialize)]
struct TykBody<'a> {
    error: &'a str,
}

/// Fills `{code}`, `{status}`, `{message}` and `{description}`, escaping for the content type.
fn fill_template(template: &str, content_type: &str, resolved: &Resolved<'_>) -> String {
    let lower = content_type.to_ascii_lowercase();
    let escape = |text: &str| -> String {
        if lower.contains("json") {
            json_escape(text)
        } else if lower.contains("xml") || lower.contains("html") {
            xml_escape(text)
        } else {
            text.to_string()
        }
    };
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start..).unwrap_or_default();
        let (value, consumed) = if after.starts_with("{code}") {
            (resolved.code.to_string(), "{code}".len())
        } else if after.starts_with("{status}") {
            (resolved.status.to_string(), "{status}".len())
        } else if after.starts_with("{message}") {
            (escape(&resolved.message), "{message}".len())
        } else if after.starts_with("{description}") {
            (escape(&resolved.description), "{description}".len())
        } else {
            ("{".to_string(), 1)
        };
        out.push_str(&value);
        rest = after.get(consumed..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// JSON string contents (without the quotes).
fn json_escape(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or_default().to_string()
}

/// XML text and attribute escaping; characters XML 1.0 cannot carry become U+FFFD.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // As references, so they survive in attribute values too (a parser turns a raw one
            // there into a space).
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// WSO2's next-access-time format: `yyyy-MMM-dd HH:mm:ss+0000 UTC`.
pub fn format_next_access_time(unix_seconds: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_seconds / 86_400;
    let seconds_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let month_name = MONTHS.get((month as usize).saturating_sub(1)).copied().unwrap_or("Jan");
    format!(
        "{year:04}-{month_name}-{day:02} {:02}:{:02}:{:02}+0000 UTC",
        seconds_of_day / 3_600,
        (seconds_of_day % 3_600) / 60,
        seconds_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
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
                    ErrorFormat::ChoreoConnect => formats::choreo_connect(*id).map_or(spec.status, |choreo| choreo.0),
                    ErrorFormat::Microgateway => {
                        formats::microgateway(*id).and_then(|m| m.status).unwrap_or(spec.status)
                    }
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
                            if formats::microgateway(*id)
                                .is_some_and(|m| m.shape != formats::MicrogatewayShape::Fault) =>
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
                            assert!(text.contains(&format!("\"{}\"", fault.code)), "{format} {}: {text}", spec.id);
                            let description = match settings.format {
                                ErrorFormat::Microgateway => {
                                    formats::microgateway(*id).map_or(spec.description, |m| m.description)
                                }
                                ErrorFormat::ChoreoConnect => {
                                    formats::choreo_connect(*id).and_then(|choreo| choreo.1).unwrap_or(spec.description)
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
        let body =
            render(&Fault::transport(FaultId::ConnectionFailed, ProtocolState::RequestReady), &settings, None).body;
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
        let throttled =
            render(&Fault::new(FaultId::ApiThrottled), &settings(r#"{"errors":{"format":"apim-xml"}}"#), None);
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
        assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"shop\""));
        let invalid =
            render(&Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token"), &settings, None);
        assert_eq!(invalid.header("www-authenticate"), Some("Bearer realm=\"shop\", error=\"invalid_token\""));
        let forbidden = render(&Fault::new(FaultId::ResourceForbidden), &settings, None);
        assert_eq!(forbidden.header("www-authenticate"), None);
    }

    #[test]
    fn cors_headers_follow_the_origin_list() {
        let wildcard = settings(r#"{"errors":{"cors":{"allow_origins":["*"]}}}"#);
        let rendered = render(&Fault::new(FaultId::NotFound), &wildcard, Some("https://a.example"));
        assert_eq!(rendered.header("access-control-allow-origin"), Some("*"));
        assert!(rendered.header("access-control-allow-methods").unwrap().contains("GET"));
        let listed =
            settings(r#"{"errors":{"cors":{"allow_origins":["https://a.example"],"allow_credentials":true}}}"#);
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
        let headers = cors_headers(wildcard.cors.as_ref().unwrap(), Some("https://a.example"), Some(&methods));
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
    fn every_401_and_only_a_401_challenges_with_invalid_token_unless_no_credential_was_sent() {
        for format in FORMATS {
            let settings = settings_for(format);
            for id in ALL {
                let fault = Fault::transport(*id, ProtocolState::RequestDone);
                let rendered = render(&fault, &settings, None);
                let challenge = rendered.header("www-authenticate");
                let expected = match (rendered.status, *id) {
                    (401, FaultId::MissingCredentials) => Some(r#"Bearer realm="WSO2 API Manager""#.to_string()),
                    (401, _) => Some(r#"Bearer realm="WSO2 API Manager", error="invalid_token""#.to_string()),
                    _ => None,
                };
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
            serde_json::from_str::<serde_json::Value>(&render(&Fault::new(id), &settings_for(format), None).body)
                .unwrap()
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
        let timeout =
            render(&Fault::transport(FaultId::ConnectionTimedOut, ProtocolState::RequestDone), &settings, None);
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
}

#[cfg(test)]
mod grpc_tests;

#[cfg(test)]
mod override_tests;

#[cfg(test)]
mod microgateway_tests;
