//! A seeded, model-based differential campaign over the faults the stream answers: random formats,
//! compatibility modes, overrides (by id, code and code family), CORS, gRPC and requests that
//! provoke each fault, compared with a model that reads its codes, statuses and texts from the
//! tables of docs/ERROR-CODES.md and its rules from docs/CONFIG.md and WSO2-CONTRACT.md (never
//! the renderer or the catalogue); and the catalogue checked against that document.

use super::claims_model::Rng;
use super::*;
use crate::catalogue::ALL;

const DOC: &str = include_str!("../../../docs/ERROR-CODES.md");

/// The rows of the first table after `heading` whose header line starts with `header`, as cells
/// (split on ` | `, so a cell keeps its trailing space: `Resource forbidden `).
fn table(heading: &str, header: &str) -> Vec<Vec<String>> {
    let start = DOC.find(heading).unwrap_or_else(|| panic!("{heading} not in the document"));
    let rest = &DOC[start..];
    let at = rest.find(&format!("\n{header}")).unwrap_or_else(|| panic!("{header} not under {heading}")) + 1;
    rest[at..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let inner = line.strip_prefix("| ").unwrap().strip_suffix(" |").unwrap();
            inner.split(" | ").map(|cell| cell.trim_matches('`').to_string()).collect()
        })
        .collect()
}

/// One entry of the document's main table.
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    /// The base code (a transport entry's protocol state is added).
    code: u32,
    status: u16,
    family: String,
    message: String,
    description: String,
}

struct Doc {
    entries: Vec<Entry>,
    /// The Microgateway's status, message and description, by id.
    microgateway: HashMap<String, (u16, String, String, String)>,
    /// Choreo Connect's answers where they differ: status, code, message, description.
    choreo: HashMap<String, (u16, u32, String, String)>,
    kanali_codes: HashMap<String, (u16, String)>,
    kanali_of: HashMap<String, String>,
    tyk: HashMap<String, (u16, String)>,
}

fn doc() -> Doc {
    let entries = table("# Error codes", "| code | id |")
        .into_iter()
        .map(|cells| Entry {
            code: cells[0].trim_end_matches(" + state").parse().unwrap(),
            id: cells[1].clone(),
            status: cells[2].parse().unwrap(),
            family: cells[3].clone(),
            message: cells[4].clone(),
            description: cells[5].clone(),
        })
        .collect();
    let microgateway = table("## Microgateway format", "| id | status | message |")
        .into_iter()
        .map(|c| (c[0].clone(), (c[1].parse().unwrap(), c[2].clone(), c[3].clone(), c[4].clone())))
        .collect();
    let choreo = table("## Choreo Connect format", "| id | status | code | message | description |")
        .into_iter()
        .map(|c| (c[0].clone(), (c[1].parse().unwrap(), c[2].parse().unwrap(), c[3].clone(), c[4].clone())))
        .collect();
    let kanali_codes = table("## Kanali format", "| Kanali code | status |")
        .into_iter()
        .map(|cells| (cells[0].clone(), (cells[1].parse().unwrap(), cells[2].clone())))
        .collect();
    let kanali_of =
        table("## Kanali format", "| id | Kanali code |").into_iter().map(|c| (c[0].clone(), c[1].clone())).collect();
    let tyk = table("## Tyk format", "| id | status | error |")
        .into_iter()
        .map(|cells| (cells[0].clone(), (cells[1].parse().unwrap(), cells[2].clone())))
        .collect();
    Doc { entries, microgateway, choreo, kanali_codes, kanali_of, tyk }
}

impl Doc {
    fn entry(&self, id: &str) -> &Entry {
        self.entries.iter().find(|entry| entry.id == id).unwrap_or_else(|| panic!("{id} not in the document"))
    }
}

const FORMATS: [&str; 7] = ["apim-json", "apim-xml", "microgateway", "choreo-connect", "kanali", "tyk", "template"];

/// Templates by content type (`None`: the default, `application/json`).
const TEMPLATES: &[(Option<&str>, &str)] = &[
    (None, r#"{"c":"{code}","s":{status},"m":"{message}","d":"{description}"}"#),
    (
        Some("application/problem+json"),
        r#"{"type":"{x}","status":{status},"title":"{message}","detail":"{description}"}"#,
    ),
    (Some("text/plain"), "{code} {status} {message} | {description} {unknown} {"),
    (Some("application/xml"), "<e c=\"{message}\"><c>{code}</c><d>{description}</d></e>"),
    (Some("text/html; charset=utf-8"), "<p title=\"{message}\">{code}: {description}</p>"),
];
const ORIGINS: [&str; 3] = ["https://app.example", "https://other.example", "https://evil.example"];

/// One override's fields, as configured.
#[derive(Clone, Debug, Default)]
struct Fields {
    code: Option<u32>,
    status: Option<u16>,
    message: Option<String>,
    description: Option<String>,
    grpc_status: Option<u8>,
}

struct Setup {
    format: &'static str,
    microgateway: bool,
    realm: Option<String>,
    authorization_header: &'static str,
    api_key_header: &'static str,
    template: usize,
    expose: Vec<&'static str>,
    methods: Option<Vec<&'static str>>,
    rate_limit_headers: bool,
    /// `None`: no CORS; else the allowed origins (maybe `*`) and allow_credentials.
    cors: Option<(Vec<&'static str>, bool)>,
    overrides: Vec<(String, Fields)>,
}

/// Keys an override may name: ids, codes and families of the faults the campaign provokes.
const KEYS: &[&str] = &[
    "not_found",
    "404",
    "no_matching_resource",
    "900906",
    "9009xx",
    "90090x",
    "missing_credentials",
    "900902",
    "invalid_credentials",
    "900901",
    "invalid_auth_scheme",
    "900917",
    "invalid_credential_format",
    "900912",
    "api_blocked",
    "700700",
    "7007xx",
    "resource_throttled",
    "900802",
    "api_throttled",
    "900800",
    "9008xx",
    "90080x",
    "blocked",
    "900805",
    "custom_policy_throttled",
    "900806",
    "connection_failed",
    "101503",
    "connection_timed_out",
    "101504",
    "101507",
    "101505",
    "101508",
    "1015xx",
    "10150x",
    "protocol_violation",
    "101509",
    "connection_closed",
    "choreo_upstream_timeout",
    "102504",
    "1025xx",
    "choreo_no_route",
    "102511",
    "choreo_local_reset",
    "incomplete_payload",
    "9xxxxx",
    "10xxxx",
    "0900901",
    "4xx",
    "40x",
    "00404",
];

fn setup(rng: &mut Rng) -> Setup {
    let mut overrides: Vec<(String, Fields)> = Vec::new();
    for _ in 0..rng.below(5) {
        let key = rng.pick(KEYS).to_string();
        // Two keys for one code (`900901`, `0900901`) are refused (docs/CONFIG.md).
        let same =
            |other: &String| *other == key || (other.parse::<u32>().is_ok() && other.parse::<u32>() == key.parse());
        if overrides.iter().any(|(other, _)| same(other)) {
            continue;
        }
        let fields = Fields {
            code: rng.chance(25).then(|| 100_000 + rng.below(900_000) as u32),
            status: rng.chance(40).then(|| *rng.pick(&[401, 403, 418, 429, 500, 503, 555])),
            message: rng.chance(40).then(|| format!("msg <{}> & \"q\"", rng.below(100))),
            description: rng.chance(40).then(|| format!("desc {}", rng.below(100))),
            grpc_status: rng.chance(30).then(|| 1 + rng.below(16) as u8),
        };
        overrides.push((key, fields));
    }
    let cors = rng.chance(50).then(|| match rng.below(3) {
        0 => (vec!["*"], false),
        1 => (vec![ORIGINS[0]], rng.chance(50)),
        _ => (vec![ORIGINS[0], ORIGINS[1]], rng.chance(50)),
    });
    Setup {
        format: FORMATS[rng.below(FORMATS.len())],
        microgateway: rng.chance(50),
        realm: match rng.below(4) {
            0 => Some("shop".to_string()),
            1 => Some("Boutique été EU".to_string()),
            _ => None,
        },
        authorization_header: ["authorization", "Authorization", "x-token"][rng.below(3)],
        api_key_header: ["apikey", "x-key"][rng.below(2)],
        template: rng.below(TEMPLATES.len()),
        expose: if rng.chance(50) { vec!["x-request-id", "x-b3"] } else { Vec::new() },
        methods: rng.chance(50).then(|| vec!["GET", "POST"]),
        rate_limit_headers: rng.chance(50),
        cors,
        overrides,
    }
}

fn config_json(setup: &Setup) -> String {
    let mut errors = serde_json::json!({"format": setup.format});
    let overrides: serde_json::Map<String, serde_json::Value> = setup
        .overrides
        .iter()
        .map(|(key, f)| {
            let mut value = serde_json::json!({});
            if let Some(code) = f.code {
                value["code"] = code.into();
            }
            if let Some(status) = f.status {
                value["status"] = status.into();
            }
            if let Some(message) = &f.message {
                value["message"] = message.clone().into();
            }
            if let Some(description) = &f.description {
                value["description"] = description.clone().into();
            }
            if let Some(grpc) = f.grpc_status {
                value["grpc_status"] = grpc.into();
            }
            (key.clone(), value)
        })
        .collect();
    errors["overrides"] = overrides.into();
    if let Some((origins, credentials)) = &setup.cors {
        errors["cors"] = serde_json::json!({"allow_origins": origins, "allow_credentials": credentials,
            "expose_headers": setup.expose});
        if let Some(methods) = &setup.methods {
            errors["cors"]["allow_methods"] = methods.clone().into();
        }
    }
    if setup.format == "template" || setup.template % 2 == 0 {
        let (content_type, body) = TEMPLATES[setup.template];
        errors["template"] = serde_json::json!({"body": body});
        if let Some(content_type) = content_type {
            errors["template"]["content_type"] = content_type.into();
        }
    }
    let mut credentials = serde_json::json!({"authorization_header": setup.authorization_header,
        "api_key_header": setup.api_key_header});
    if let Some(realm) = &setup.realm {
        credentials["realm"] = realm.clone().into();
    }
    serde_json::json!({
        "compatibility": if setup.microgateway { "microgateway" } else { "apim" },
        "errors": errors,
        "credentials": credentials,
        "key_managers": [{"name": "km", "issuer": "https://km.example", "algorithms": ["HS256"],
                          "hmac_secret": "a-shared-hmac-secret-of-at-least-32-bytes"}],
        "apis": [
            {"name": "P", "context": "/p", "version": "1", "endpoints": {"production": "prod"}, "resources": [
                {"method": "GET", "path": "/open", "security": []},
                {"method": "GET", "path": "/limited", "security": [], "policy": "OnePerMinute"},
                {"method": "GET", "path": "/secure"}]},
            {"name": "T", "context": "/t", "version": "1", "security": [], "policy": "OnePerMinute",
             "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/x"}]},
            {"name": "B", "context": "/b", "version": "1", "security": [], "lifecycle": "BLOCKED",
             "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/x"}]},
            {"name": "K", "context": "/k", "version": "1", "security": [],
             "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/x"}]},
            {"name": "C", "context": "/c", "version": "1", "security": [],
             "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/x"}]}],
        "blocking": [{"api": "K:1"}],
        "custom_policies": [{"name": "PerContext", "key": "$apiContext", "requests": 1, "per": "minute",
                             "apis": ["C:1"]}],
        "throttling": {"rate_limit_headers": setup.rate_limit_headers},
        "policies": {"OnePerMinute": {"requests": 1, "per": "minute"}}
    })
    .to_string()
}

/// What a request does to provoke its fault.
#[derive(Clone, Copy, Debug)]
enum Provoke {
    NoApi,
    WrongMethod,
    UnknownResource,
    Missing,
    Basic,
    EmptyBearer,
    BlockedApi,
    ResourceThrottled,
    ApiThrottled,
    BlockedByCondition,
    CustomThrottled,
    /// Envoy refused a request body over its limit (413).
    TooLarge,
    /// The backend failed: Envoy's flag, and how far the request went (0 headers only, 1 part of
    /// the body, 2 all of it with its headers, 3 all of it with its body, 4 all of it with
    /// trailers).
    Upstream(&'static str, u8),
}

/// Envoy's response flags by their access-log names (Envoy's `StreamInfo::CoreResponseFlag`).
const FLAGS: &[(&str, u64)] = &[
    ("UH", 0x2),
    ("UT", 0x4),
    ("LR", 0x8),
    ("UR", 0x10),
    ("UF", 0x20),
    ("UC", 0x40),
    ("UO", 0x80),
    ("NR", 0x100),
    ("URX", 0x8000),
    ("SI", 0x1_0000),
    ("UMSDR", 0x8_0000),
    ("UPE", 0x80_0000),
    ("NC", 0x100_0000),
    ("DF", 0x400_0000),
    ("DO", 0x800_0000),
    ("UDO", 0x2000_0000),
];

/// Choreo Connect's local reply mapping (WSO2-CONTRACT.md): flag to entry.
const CHOREO: &[(&str, &str)] = &[
    ("NR", "choreo_no_route"),
    ("UF", "choreo_upstream_connect_failure"),
    ("UT", "choreo_upstream_timeout"),
    ("UO", "choreo_upstream_overflow"),
    ("URX", "choreo_upstream_retry_limit"),
    ("NC", "choreo_no_cluster"),
    ("UH", "choreo_no_healthy_upstream"),
    ("UR", "choreo_upstream_remote_reset"),
    ("UC", "choreo_upstream_connection_termination"),
    ("LR", "choreo_local_reset"),
];

fn provoke(rng: &mut Rng, format: &str) -> Provoke {
    match rng.below(13) {
        0 => Provoke::NoApi,
        1 => Provoke::WrongMethod,
        2 => Provoke::UnknownResource,
        3 => Provoke::Missing,
        4 => Provoke::Basic,
        5 => Provoke::EmptyBearer,
        6 => Provoke::BlockedApi,
        7 => Provoke::ResourceThrottled,
        8 => Provoke::ApiThrottled,
        9 => Provoke::TooLarge,
        10 => Provoke::BlockedByCondition,
        11 => Provoke::CustomThrottled,
        _ => {
            let flag = match format {
                "choreo-connect" => rng.pick(CHOREO).0,
                _ => rng.pick(FLAGS).0,
            };
            Provoke::Upstream(flag, rng.below(5) as u8)
        }
    }
}

/// The entry and the code (before overrides) the documents say a provocation gets.
fn documented(doc: &Doc, setup: &Setup, provoke: Provoke) -> (String, u32) {
    let plain = |id: &str| (id.to_string(), doc.entry(id).code);
    let mgw = setup.microgateway;
    match provoke {
        Provoke::NoApi => plain("not_found"),
        Provoke::WrongMethod | Provoke::UnknownResource => plain("no_matching_resource"),
        Provoke::Missing => plain("missing_credentials"),
        // Seeds 001 and 002: 900902 is "Accessing an API without the Authorization: Bearer header".
        Provoke::Basic => plain(if mgw { "invalid_auth_scheme" } else { "missing_credentials" }),
        Provoke::EmptyBearer => plain(if mgw { "invalid_credential_format" } else { "missing_credentials" }),
        Provoke::BlockedApi => plain("api_blocked"),
        Provoke::ResourceThrottled => plain("resource_throttled"),
        Provoke::ApiThrottled => plain("api_throttled"),
        Provoke::TooLarge => plain("incomplete_payload"),
        Provoke::BlockedByCondition => plain("blocked"),
        Provoke::CustomThrottled => plain("custom_policy_throttled"),
        Provoke::Upstream(flag, sent) => {
            if setup.format == "choreo-connect" {
                return plain(CHOREO.iter().find(|(f, _)| *f == flag).unwrap().1);
            }
            // REQUEST_HEAD 1, REQUEST_BODY 2, REQUEST_DONE 3.
            let state = [1, 2, 3, 3, 3][sent as usize];
            let (id, with_state) = match flag {
                "NR" => return plain("not_found"),
                "UF" => ("connection_failed", false),
                "DF" | "UH" | "UO" | "DO" | "UDO" | "URX" | "NC" => ("connection_failed", false),
                "UT" | "UMSDR" | "SI" => ("connection_timed_out", true),
                "UPE" => ("protocol_violation", true),
                _ => ("connection_closed", true),
            };
            // The Microgateway has no protocol-state arithmetic: a timeout is 101504, every other
            // failure 101503 (its entry, with Envoy's 503/504).
            if setup.format == "microgateway" {
                return plain(if id == "connection_timed_out" { id } else { "connection_failed" });
            }
            (id.to_string(), doc.entry(id).code + if with_state { state } else { 0 })
        }
    }
}

/// Whether an override key names a fault of `id` sent with `code`, and how specific it is (the
/// more specific the later it applies): a family by its fixed digits, then a code, then an id.
fn key_rank(key: &str, id: &str, code: u32) -> Option<usize> {
    if key == id {
        return Some(100);
    }
    if key.parse::<u32>().ok() == Some(code) {
        return Some(50);
    }
    let fixed = key.trim_end_matches('x');
    let text = code.to_string();
    (fixed.len() < key.len() && fixed.bytes().all(|b| b.is_ascii_digit()) && key.len() == text.len())
        .then_some(())
        .filter(|_| text.starts_with(fixed))
        .map(|_| fixed.len())
}

/// The response the documents say a fault gets.
#[derive(Debug)]
struct Expected {
    id: String,
    family: String,
    status: u16,
    code: u32,
    message: String,
    description: String,
    grpc_status: Option<u8>,
    /// Kanali's own code.
    kanali: Option<String>,
    /// The Microgateway's body shape (its table's `body` column; `fault` when not listed).
    mgw_body: String,
}

fn expected(doc: &Doc, setup: &Setup, provoke: Provoke) -> Expected {
    let (id, code) = documented(doc, setup, provoke);
    let entry = doc.entry(&id);
    let mut out = Expected {
        id: id.clone(),
        family: entry.family.clone(),
        status: entry.status,
        code,
        message: entry.message.clone(),
        description: entry.description.clone(),
        grpc_status: None,
        kanali: None,
        mgw_body: "fault".to_string(),
    };
    if id == "missing_credentials" {
        // The description names the configured headers (`Authorization` as WSO2 spells it).
        let authorization = match setup.authorization_header.eq_ignore_ascii_case("authorization") {
            true => "Authorization",
            false => setup.authorization_header,
        };
        out.description = out
            .description
            .replace("'Authorization :", &format!("'{authorization} :"))
            .replace("'apikey :", &format!("'{} :", setup.api_key_header));
    }
    match setup.format {
        "tyk" => (out.status, out.message) = doc.tyk[&id].clone(),
        "kanali" => {
            let kanali = doc.kanali_of[&id].clone();
            (out.status, out.message) = doc.kanali_codes[&kanali].clone();
            out.kanali = Some(kanali);
        }
        "microgateway" => {
            if let Some((status, message, description, shape)) = doc.microgateway.get(&id) {
                (out.status, out.message, out.description) = (*status, message.clone(), description.clone());
                out.mgw_body = shape.clone();
            }
        }
        "choreo-connect" => {
            if let Some((status, code, message, description)) = doc.choreo.get(&id) {
                (out.status, out.code) = (*status, *code);
                (out.message, out.description) = (message.clone(), description.clone());
            }
        }
        _ => {}
    }
    let mut keyed: Vec<(usize, &Fields)> = setup
        .overrides
        .iter()
        .filter_map(|(key, fields)| key_rank(key, &id, code).map(|rank| (rank, fields)))
        .collect();
    keyed.sort_by_key(|(rank, _)| *rank);
    for (_, fields) in keyed {
        out.code = fields.code.unwrap_or(out.code);
        out.status = fields.status.unwrap_or(out.status);
        out.message = fields.message.clone().unwrap_or(out.message);
        out.description = fields.description.clone().unwrap_or(out.description);
        out.grpc_status = fields.grpc_status.or(out.grpc_status);
    }
    out
}

mod campaign;
