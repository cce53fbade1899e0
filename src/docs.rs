//! Reference documents generated from the code: the error-code reference (from the catalogue),
//! the configuration reference and the JSON Schema (from the configuration types). A test keeps
//! the committed copies in `docs/` identical to what these functions produce.

use serde_json::Value;

use crate::auth::{self, AuthFailure};
use crate::catalogue::{formats, Family, ProtocolState, ALL};
use crate::schema::{Compatibility, RawConfig};
use crate::transport::{self, UpstreamFailure};

/// The JSON Schema of the configuration, pretty-printed.
pub fn config_schema() -> String {
    let schema = schemars::schema_for!(RawConfig);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Handler => "handler",
        Family::Auth => "auth",
        Family::Throttle => "throttle",
        Family::Transport => "transport",
        Family::Gateway => "gateway",
        Family::FaultSequence => "fault sequence",
        Family::ChoreoUpstream => "choreo",
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `docs/ERROR-CODES.md`.
pub fn error_code_reference() -> String {
    let mut out = String::new();
    out.push_str("# Error codes\n\n");
    out.push_str("Generated from `src/catalogue/` by `make docs`; a test fails when this file is stale.\n\n");
    out.push_str("Every fault the filter sends is one of these entries. `errors.overrides` can change the status,\n");
    out.push_str("code, message, description and gRPC status of any entry: by id (`\"api_throttled\"`), by code (`\"900800\"`), or by\n");
    out.push_str("a family of codes written with trailing `x`s (`\"9008xx\"`: every throttling code; `\"1015xx\"`:\n");
    out.push_str("every transport code). The most specific key wins: id, then code, then the narrowest family.\n\n");
    out.push_str("Messages and descriptions are the strings WSO2 API Manager 4.x sends (including the trailing\n");
    out.push_str("space of `Resource forbidden `). Statuses follow the status table of WSO2 API Manager's\n");
    out.push_str("documentation (\"Error Handling\": HTTP status code per error code), so 900805 is 429, although\n");
    out.push_str("API-M 4.x's code sends 403 for it: override it if your clients expect that.\n\n");
    out.push_str(&compatibility_paragraph());
    out.push_str("With the default format (`apim-json`) the body is `{\"code\":\"900901\",\"message\":...,\"description\":...}`,\n");
    out.push_str("the code a string. Entries of the `transport`, `gateway` and `fault sequence` families add\n");
    out.push_str("`\"type\":\"Status report\"` after the code, as API-M's `fault.xml` sequence does:\n");
    out.push_str("`{\"code\":\"101503\",\"type\":\"Status report\",\"message\":\"Runtime Error\",\"description\":\"Error connecting to the back end\"}`.\n");
    out.push_str("A request refused by a counter (900800, 900802, 900803, 900804, 900806, 900807; not the hard\n");
    out.push_str("limit's 900801) gets WSO2's next access time twice: appended to the description, and as\n");
    out.push_str("`nextAccessTime` (with `Retry-After` in seconds):\n");
    out.push_str("`{\"code\":\"900802\",\"message\":\"Message throttled out\",\"description\":\"You have exceeded your quota .You can access API after 2026-Dec-07 20:26:00+0000 UTC\",\"nextAccessTime\":\"2026-Dec-07 20:26:00+0000 UTC\"}`\n");
    out.push_str("(WSO2's spacing: ` .You`). The `apim-xml` format carries the same members as elements.\n\n");
    out.push_str("| code | id | status | family | message | description |\n|---|---|---|---|---|---|\n");
    for id in ALL {
        let spec = id.spec();
        let code =
            if spec.family == Family::Transport { format!("{} + state", spec.code) } else { spec.code.to_string() };
        out.push_str(&format!(
            "| {code} | `{}` | {} | {} | {} | {} |\n",
            spec.id,
            spec.status,
            family_name(spec.family),
            cell(spec.message),
            cell(spec.description)
        ));
    }
    out.push_str("\n## Transport codes\n\n");
    out.push_str("WSO2's transport codes are `base code + protocol state`. The filter replaces Envoy's own replies\n");
    out.push_str("for a failed upstream (never a response the backend sent) and classifies them on\n");
    out.push_str("`response.flags`:\n\n");
    out.push_str("| Envoy flag | cause | code |\n|---|---|---|\n");
    // The flags of each row come from the list the classification reads, so none goes unlisted.
    let flags_of = |failures: &[UpstreamFailure]| {
        transport::FLAGS_READ
            .iter()
            .filter(|(_, _, failure)| failures.contains(failure))
            .map(|(_, name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    use UpstreamFailure::*;
    let rows: [(&[UpstreamFailure], &str, &str); 6] = [
        (&[ConnectFailure], "connection failed", "101503 (state REQUEST_READY)"),
        (
            &[NoHealthyUpstream, Overflow, RetriesExhausted, NoCluster, DnsFailure],
            "DNS failure, no healthy host, overflow or a cluster's `drop_overloads`, retries exhausted, no cluster",
            "101503",
        ),
        (
            &[Timeout],
            "upstream timeout, max stream duration, the stream's idle timeout (the connection manager's \
             `stream_idle_timeout`, a route's `idle_timeout`); also the `max_duration_timeout` details \
             (the connection manager's or a route's `max_stream_duration`), which carry no flag",
            "101504 + state: 101507 when the request was fully sent",
        ),
        (&[ProtocolError], "upstream protocol error", "101506 + state: 101509 when the request was fully sent"),
        (
            &[ConnectionTermination, RemoteReset, LocalReset],
            "connection closed or reset",
            "101505 + state: 101508 when the request was fully sent",
        ),
        (&[NoRoute], "no route", "404 (`not_found`)"),
    ];
    for (failures, cause, code) in rows {
        out.push_str(&format!("| {} | {cause} | {code} |\n", flags_of(failures)));
    }
    out.push_str("| (413, `request_payload_too_large` details) | request body over Envoy's limit | 102511 |\n\n");
    out.push_str(
        "With the `choreo-connect` format the `choreo` entries are used instead (UF 102503, UT 102504, …).\n\n",
    );
    out.push_str("| state | value |\n|---|---|\n");
    for state in ProtocolState::ALL {
        out.push_str(&format!("| {} | {} |\n", state.name(), state as u32));
    }
    out.push_str("\n## Microgateway format\n\n");
    out.push_str("The `microgateway` format answers as the WSO2 API Microgateway does: the body is\n");
    out.push_str(
        "`{\"fault\":{\"code\":...,\"message\":...,\"description\":...}}`; transport codes have no protocol-state\n",
    );
    out.push_str("arithmetic (a backend timeout is 101504, every other backend failure 101503; the Microgateway\n");
    out.push_str("itself sent these with status 500, the filter keeps Envoy's 503/504 unless overridden); and these\n");
    out.push_str("entries carry the Microgateway's statuses and texts (its 3.x gateway module's):\n\n");
    out.push_str("| id | status | message | description | body |\n|---|---|---|---|---|\n");
    for id in ALL {
        if let Some(mgw) = formats::microgateway(*id) {
            let status = mgw.status.unwrap_or(id.spec().status);
            let body = match mgw.shape {
                formats::MicrogatewayShape::Fault => "fault",
                formats::MicrogatewayShape::StatusReport => "status report",
                formats::MicrogatewayShape::KeyTypeError => "ERROR_CODE",
            };
            out.push_str(&format!(
                "| `{}` | {status} | {} | {} | {body} |\n",
                id.spec().id,
                cell(mgw.message),
                cell(mgw.description)
            ));
        }
    }
    out.push_str(
        "\nBodies: `fault` is `{\"fault\":{\"code\":...,\"message\":...,\"description\":...}}`; `status report` is\n\
         `{\"code\":404,\"type\":\"Status report\",\"message\":...,\"description\":...}` (a number, unwrapped);\n\
         `ERROR_CODE` is `{\"ERROR_CODE\":\"900901\",\"ERROR_MESSAGE\":<description>}`.\n",
    );
    out.push_str(
        "\n## Choreo Connect format\n\nThe `choreo-connect` format answers as Choreo Connect's enforcer does:\n",
    );
    out.push_str(
        "`{\"code\":...,\"error_message\":...,\"error_description\":...}` (its router's answers, to upstream\n",
    );
    out.push_str("failures, unknown paths and a path or method no resource has (`no_matching_resource`),\n");
    out.push_str("as `{\"code\":...,\"message\":...,\"description\":...}`), with these statuses, codes and\n");
    out.push_str("texts where they differ from API-M's:\n\n| id | status | code | message | description |\n|---|---|---|---|---|\n");
    for id in ALL {
        let answer = formats::choreo_connect(*id);
        if answer != formats::ChoreoAnswer::default() {
            let spec = id.spec();
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                spec.id,
                answer.status.unwrap_or(spec.status),
                answer.code.unwrap_or(spec.code),
                cell(answer.message.unwrap_or(spec.message)),
                cell(answer.description.unwrap_or(spec.description))
            ));
        }
    }
    out.push_str(
        "\nEvery refusal of its `AuthFilter` (an `auth` entry but `no_matching_resource`, `api_blocked`, and a key type\nwithout an endpoint)\n",
    );
    out.push_str("carries `WWW-Authenticate: Bearer realm=\"<realm>\", error=\"invalid_token\", error_description=\"");
    out.push_str(formats::CHALLENGE_DESCRIPTION);
    out.push_str("\"`\nwhatever its status; no other answer carries one.\n");
    out.push_str("A throttled answer's `Retry-After` is the next access time as an HTTP date\n");
    out.push_str("(`Fri, 15 Jan 2027 08:01:00 GMT`, Choreo Connect 1.2's `ThrottleUtils.setRetryAfterHeader`).\n");
    out.push_str("\n## Kanali format\n\nThe `kanali` format answers with Kanali's own codes, each with Kanali's status and message\n");
    out.push_str("(`details` links `errors.kanali_docs_url` + `#<code>`):\n\n");
    out.push_str("| Kanali code | status | message |\n|---|---|---|\n");
    for entry in formats::KANALI {
        out.push_str(&format!("| {:02} | {} | {} |\n", entry.code, entry.status, cell(entry.message)));
    }
    out.push_str("\nWhich Kanali code each entry is answered with:\n\n| id | Kanali code |\n|---|---|\n");
    for id in ALL {
        out.push_str(&format!("| `{}` | {:02} |\n", id.spec().id, formats::kanali(*id).code));
    }
    out.push_str("\n## Tyk format\n\nThe `tyk` format answers with the statuses and texts of Tyk's error list:\n\n");
    out.push_str("| id | status | error |\n|---|---|---|\n");
    for id in ALL {
        let (status, error) = formats::tyk(*id);
        out.push_str(&format!("| `{}` | {status} | {} |\n", id.spec().id, cell(error)));
    }
    out
}

/// Which code a refused credential gets under each `compatibility`, from the code that picks it
/// (`auth::failure_fault`): a client written for API-M reads 900901 for an expired token, not
/// the catalogue's 900903, unless the configuration asks for the Microgateway's codes.
fn compatibility_paragraph() -> String {
    let cases = [
        (AuthFailure::Expired, "an expired credential"),
        (AuthFailure::Inactive, "an inactive one"),
        (AuthFailure::NoToken, "`Authorization: Bearer` with no token"),
        (AuthFailure::BadFormat, "`Authorization: Bearer` with whitespace inside the token"),
        (AuthFailure::BadScheme, "an `Authorization` scheme other than `Bearer`"),
    ];
    let code = |failure, compatibility| auth::failure_fault(failure, compatibility).code;
    let answers = |compatibility| {
        cases.iter().map(|(failure, what)| format!("{what} {}", code(*failure, compatibility))).collect::<Vec<_>>()
    };
    let mut only_microgateway: Vec<String> = cases
        .iter()
        .map(|(failure, _)| code(*failure, Compatibility::Microgateway))
        .filter(|microgateway| cases.iter().all(|(failure, _)| code(*failure, Compatibility::Apim) != *microgateway))
        .map(|microgateway| microgateway.to_string())
        .collect();
    only_microgateway.dedup();
    format!(
        "Where WSO2's gateways disagree, `compatibility` picks the code of a refused credential. With the\n\
         default, `apim` (as WSO2 API Manager 4.x answers): {}. With `compatibility:\n\
         microgateway` (as the WSO2 API Microgateway answers): {}. So {} are sent only\n\
         with `microgateway`.\n\n",
        answers(Compatibility::Apim).join(", "),
        answers(Compatibility::Microgateway).join(", "),
        only_microgateway.join(", ")
    )
}

fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_ascii_lowercase());
    }
    if let Some(variants) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        let consts: Vec<String> = variants
            .iter()
            .filter_map(|v| v.get("const").or_else(|| v.get("enum").and_then(|e| e.get(0))))
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect();
        if !consts.is_empty() {
            return consts.join(" \\| ");
        }
        let parts: Vec<String> =
            variants.iter().filter(|v| v.get("type") != Some(&Value::from("null"))).map(type_of).collect();
        return parts.join(" or ");
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => {
            kinds.iter().filter_map(Value::as_str).filter(|kind| *kind != "null").collect::<Vec<_>>().join(" or ")
        }
        _ => "any".to_string(),
    };
    match kind.as_str() {
        "array" => format!("list of {}", schema.get("items").map(type_of).unwrap_or_default()),
        "object" => match schema.get("additionalProperties") {
            Some(value @ Value::Object(_)) => format!("map of name to {}", type_of(value)),
            _ => "object".to_string(),
        },
        _ => kind,
    }
}

fn describe_object(out: &mut String, title: &str, schema: &Value) {
    out.push_str(&format!("\n## {title}\n\n"));
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        out.push_str(description);
        out.push_str("\n\n");
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
        for (name, property) in properties {
            let description = property.get("description").and_then(Value::as_str).unwrap_or("");
            let is_required = if required.contains(&name.as_str()) { "yes" } else { "no" };
            out.push_str(&format!("| `{name}` | {} | {is_required} | {} |\n", type_of(property), cell(description)));
        }
    } else if let Some(variants) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
        out.push_str("| value | meaning |\n|---|---|\n");
        for variant in variants {
            let value = variant.get("const").or_else(|| variant.get("enum").and_then(|e| e.get(0)));
            let description = variant.get("description").and_then(Value::as_str).unwrap_or("");
            // A choice of values, or (an untagged enum) a choice of shapes: each is a row.
            let value = match value.and_then(Value::as_str) {
                Some(value) => format!("`{value}`"),
                None => type_of(variant),
            };
            out.push_str(&format!("| {value} | {} |\n", cell(description)));
        }
    } else if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = values.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")).collect();
        out.push_str(&format!("One of {}.\n", list.join(", ")));
    }
}

/// `docs/CONFIG.md`.
pub fn config_reference() -> String {
    let schema: Value = serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default();
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str("Generated from the doc comments in `src/schema/` by `make docs`; a test fails when this file\n");
    out.push_str("is stale. The JSON Schema is `docs/config.schema.json`.\n\n");
    out.push_str("The configuration is JSON: Envoy's wasm filter `configuration` (a `google.protobuf.StringValue`)\n");
    out.push_str("or an Istio WasmPlugin's `pluginConfig`. Unknown fields are refused. A configuration that fails\n");
    out.push_str("a check is refused at load with one log line naming the field and the reason, e.g.\n");
    out.push_str("`invalid configuration: field `apis[0].resources[1].path`: ...`; Envoy then keeps its previous\n");
    out.push_str("configuration (or refuses to start).\n");
    describe_object(&mut out, "Config (the top level)", &schema);
    if let Some(definitions) = schema.get("$defs").and_then(Value::as_object) {
        for (name, definition) in definitions {
            describe_object(&mut out, name, definition);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client migrating from API-M reads ERROR-CODES.md for what an expired token answers: the
    /// reference says it, with the code the filter sends under each `compatibility`.
    #[test]
    fn the_error_code_reference_says_which_code_an_expired_token_gets_under_each_compatibility() {
        let reference = error_code_reference();
        assert_eq!(auth::failure_fault(AuthFailure::Expired, Compatibility::Apim).code, 900901);
        assert_eq!(auth::failure_fault(AuthFailure::Expired, Compatibility::Microgateway).code, 900903);
        assert!(reference.contains("default, `apim` (as WSO2 API Manager 4.x answers): an expired credential 900901"));
        assert!(reference.contains("answers): an expired credential 900903"));
        assert!(reference.contains("So 900903, 900904, 900912, 900917 are sent only"), "{reference}");
    }

    /// `errors.overrides` entries take `code` and `grpc_status` too (docs/CONFIG.md, "Override").
    #[test]
    fn the_error_code_reference_names_every_field_an_override_can_change() {
        let reference = error_code_reference().replace('\n', " ");
        assert!(reference.contains("can change the status, code, message, description and gRPC status of any entry"));
        let config = config_reference();
        for field in ["`status`", "`code`", "`message`", "`description`", "`grpc_status`"] {
            assert!(config.contains(&format!("| {field} |")), "{field}");
        }
    }
}
