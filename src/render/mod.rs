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
            let answer = formats::choreo_connect(fault.id);
            resolved.status = answer.status.unwrap_or(resolved.status);
            resolved.code = answer.code.unwrap_or(resolved.code);
            if let Some(message) = answer.message {
                resolved.message = Cow::Borrowed(message);
            }
            if let Some(description) = answer.description {
                resolved.description = Cow::Borrowed(description);
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

/// The `WWW-Authenticate` challenge a fault answered with `status` carries: every 401, as API-M
/// 4.x's `APIAuthenticationHandler` sends it (`error="invalid_token"` unless the fault names
/// another error, and `error_description="The provided token is invalid"`, a missing credential's
/// 401 included, as WSO2-CONTRACT.md asks of every 401), and a 403 for a scope the token lacks
/// (RFC 6750's `error="insufficient_scope"`). A fault whose status an override or a format changed
/// to anything else carries none.
///
/// Choreo Connect's `AuthFilter` sends its form on every refusal it makes, whatever the status.
fn challenge(fault: &Fault, status: u16, settings: &ErrorSettings) -> Option<String> {
    let realm = &settings.realm;
    let invalid = |error: &str| {
        format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"", formats::CHALLENGE_DESCRIPTION)
    };
    if settings.format == ErrorFormat::ChoreoConnect {
        return formats::choreo_auth_filter_answers(fault.id).then(|| invalid("invalid_token"));
    }
    match (status, fault.challenge_error) {
        (401, error) => Some(invalid(error.unwrap_or("invalid_token"))),
        (403, Some(error @ "insufficient_scope")) => Some(format!("Bearer realm=\"{realm}\", error=\"{error}\"")),
        _ => None,
    }
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
    render_at(fault, settings, origin, None)
}

/// Renders a fault for a request that matched a resource whose CORS answers allow
/// `resource_methods` (`Resource::cors_methods`; `None` when no resource matched: every
/// configured method), as API-M's `CORSRequestHandler` answers with the matched resource's.
pub fn render_at(
    fault: &Fault,
    settings: &ErrorSettings,
    origin: Option<&str>,
    resource_methods: Option<&str>,
) -> Rendered {
    let resolved = resolve(fault, settings);
    let family = fault.id.spec().family;
    let next_access_time = fault.next_access_time.map(format_next_access_time);
    let (content_type, body) = match settings.format {
        ErrorFormat::ApimJson => (JSON, apim_json(&resolved, family, next_access_time.as_deref())),
        ErrorFormat::ApimXml => (XML, apim_xml(&resolved, family, next_access_time.as_deref())),
        ErrorFormat::Microgateway => (JSON, microgateway::json(&resolved, fault.id)),
        ErrorFormat::ChoreoConnect => (JSON, choreo_json(&resolved, fault.id)),
        // Kanali's `pkg/middleware/gateway.go` and Tyk's `handler_error.go` (`header.ApplicationJSON`)
        // send a bare `application/json`.
        ErrorFormat::Kanali => (BARE_JSON, kanali_json(&resolved, fault.id, &settings.kanali_docs_url)),
        ErrorFormat::Tyk => (BARE_JSON, to_json(&TykBody { error: &resolved.message })),
        ErrorFormat::Template => match &settings.template {
            Some(template) => {
                (template.content_type.as_str(), fill_template(&template.body, &template.content_type, &resolved))
            }
            // Config validation makes this unreachable; fall back to the default format.
            None => (JSON, apim_json(&resolved, family, next_access_time.as_deref())),
        },
    };
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if let Some(challenge) = challenge(fault, resolved.status, settings) {
        headers.push(("www-authenticate".to_string(), challenge));
    }
    if let Some(seconds) = fault.retry_after_s {
        // Choreo Connect 1.2's `ThrottleUtils.setRetryAfterHeader` sends the reset time as an
        // HTTP date (`EEE, dd MMM yyyy HH:mm:ss z`, GMT).
        let value = match (settings.format, fault.next_access_time) {
            (ErrorFormat::ChoreoConnect, Some(time)) => http_date(time),
            _ => seconds.to_string(),
        };
        headers.push(("retry-after".to_string(), value));
    }
    if let Some(cors) = &settings.cors {
        headers.extend(cors_headers(cors, origin, None, resource_methods));
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
const BARE_JSON: &str = "application/json";
const XML: &str = "application/xml; charset=UTF-8";

/// What a preflight asked about: the methods of the resource (its path template) and the
/// request's `Access-Control-Request-Headers`.
#[derive(Clone, Copy, Debug)]
pub struct Preflight<'a> {
    pub methods: &'a [String],
    pub request_headers: Option<&'a str>,
}

/// CORS headers for a response to a request from `origin`. A preflight's answer allows those of
/// the resource's methods the configuration allows, adds `Max-Age`, and with `allow_headers`
/// `"*"` allows the headers the preflight asked for (echoed, as API-M's `CORSRequestHandler`
/// does: a browser never reads a literal `*` as `Authorization`, nor as anything when
/// credentials are allowed); other responses allow `resource_methods`, the matched resource's
/// template's methods the policy allows, or every configured method when no resource matched.
pub fn cors_headers(
    cors: &Cors,
    origin: Option<&str>,
    preflight: Option<Preflight<'_>>,
    resource_methods: Option<&str>,
) -> Vec<(String, String)> {
    let answer = cors.headers(origin, preflight.is_some(), resource_methods);
    let mut headers = Vec::with_capacity(answer.values.len() + 1);
    let mut echoed = false;
    for (name, value) in answer.values {
        let Some(value) = value else { continue };
        let value = match preflight {
            Some(Preflight { methods, .. }) if name == "access-control-allow-methods" => {
                methods.iter().filter(|method| cors.allows_method(method)).cloned().collect::<Vec<_>>().join(",")
            }
            Some(Preflight { request_headers: Some(requested), .. })
                if name == "access-control-allow-headers"
                    && !requested.trim().is_empty()
                    && cors.allow_headers.iter().any(|allowed| allowed == "*") =>
            {
                echoed = true;
                requested.to_string()
            }
            _ => value.to_string(),
        };
        headers.push((name.to_string(), value));
    }
    // The answer depends on the origin whatever it is (a shared cache must not serve one without
    // CORS headers to an allowed origin), and an echoed list on the headers the preflight asked for.
    let vary = match (answer.varies_on_origin, echoed) {
        (true, true) => Some("Origin, Access-Control-Request-Headers"),
        (true, false) => Some("Origin"),
        (false, true) => Some("Access-Control-Request-Headers"),
        (false, false) => None,
    };
    if let Some(vary) = vary {
        headers.push(("vary".to_string(), vary.to_string()));
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
    matches!(family, Family::Transport | Family::Gateway | Family::FaultSequence | Family::ChoreoUpstream)
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
        Family::Handler | Family::Transport | Family::Gateway | Family::FaultSequence | Family::ChoreoUpstream => {
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
    if formats::choreo_router_answers(id) {
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

/// An HTTP date (RFC 9110 IMF-fixdate): `Fri, 15 Jan 2027 08:01:00 GMT`.
pub fn http_date(unix_seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_seconds / 86_400;
    let seconds_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month_name = MONTHS.get((month as usize).saturating_sub(1)).copied().unwrap_or("Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
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
mod tests;

#[cfg(test)]
mod grpc_tests;

#[cfg(test)]
mod override_tests;

#[cfg(test)]
mod microgateway_tests;

#[cfg(test)]
mod choreo_tests;

#[cfg(test)]
mod choreo_audit_tests;

#[cfg(test)]
mod apim_audit_tests;

#[cfg(test)]
mod tyk_kanali_audit_tests;
