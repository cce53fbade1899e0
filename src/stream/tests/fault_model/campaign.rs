//! The fault model's campaign: requests sent through the stream on the fake host, each answer
//! compared with the model's expectation, disagreements counted by class; and the catalogue
//! checked against docs/ERROR-CODES.md.

use super::*;
use crate::schema::ErrorFormat;

/// A minute starts at 1_800_000_000: requests are counted ten seconds into it.
const NOW: u64 = 1_800_000_010;
/// When the next window opens, as WSO2 writes it.
const NEXT_ACCESS: &str = "2027-Jan-15 08:01:00+0000 UTC";

/// One request's outcome as the client would see it.
struct Sent {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    grpc_status: Option<u8>,
}

struct Request {
    origin: Option<&'static str>,
    content_type: Option<&'static str>,
    accept: Option<&'static str>,
    head: bool,
    authorization_header: &'static str,
    /// The request matched a resource (every one of the campaign's takes only `GET`).
    resource: bool,
}

fn send(config: &Rc<Config>, host: &mut FakeHost, provoke: Provoke, request: &Request) -> Option<Sent> {
    let worker = Rc::new(RefCell::new(Worker::new(config)));
    let (method, path, authorization) = match provoke {
        Provoke::NoApi => ("GET", "/nowhere/1/x", None),
        Provoke::WrongMethod => ("DELETE", "/p/1/open", None),
        Provoke::UnknownResource => ("GET", "/p/1/drinks", None),
        Provoke::Missing => ("GET", "/p/1/secure", None),
        Provoke::Basic => ("GET", "/p/1/secure", Some("Basic Zm9vOmJhcg==")),
        Provoke::EmptyBearer => ("GET", "/p/1/secure", Some("Bearer")),
        Provoke::BlockedApi => ("GET", "/b/1/x", None),
        Provoke::ResourceThrottled => ("GET", "/p/1/limited", None),
        Provoke::ApiThrottled => ("GET", "/t/1/x", None),
        Provoke::BlockedByCondition => ("GET", "/k/1/x", None),
        Provoke::CustomThrottled => ("GET", "/c/1/x", None),
        Provoke::Upstream(..) | Provoke::TooLarge => ("GET", "/p/1/open", None),
    };
    // A HEAD request only where no resource is matched by method (no API, or a wrong method).
    let method = if request.head && matches!(provoke, Provoke::NoApi | Provoke::WrongMethod) { "HEAD" } else { method };
    let mut pairs = vec![(":method", method), (":path", path), (":authority", "gw.example")];
    pairs.extend(authorization.map(|value| (request.authorization_header, value)));
    pairs.extend(request.origin.map(|value| ("origin", value)));
    pairs.extend(request.content_type.map(|value| ("content-type", value)));
    pairs.extend(request.accept.map(|value| ("accept", value)));
    let fresh = |host: &mut FakeHost| {
        host.request = pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        host.sent = None;
        host.sent_grpc_status = None;
    };
    fresh(host);
    let mut stream = Stream::new(Rc::clone(config), Rc::clone(&worker));
    match provoke {
        Provoke::ResourceThrottled | Provoke::ApiThrottled | Provoke::CustomThrottled => {
            assert_eq!(stream.on_request_headers(host, true), Flow::Continue, "the first request is in quota");
            fresh(host);
            stream = Stream::new(Rc::clone(config), Rc::clone(&worker));
            assert_eq!(stream.on_request_headers(host, true), Flow::Answered);
        }
        Provoke::Upstream(flag, sent) => {
            assert_eq!(stream.on_request_headers(host, sent == 2), Flow::Continue);
            if sent == 1 || sent == 3 {
                host.bodies[0] = b"0123456789".to_vec();
                stream.on_request_body(host, 10, sent == 3);
            }
            if sent == 4 {
                host.trailers.insert("x-checksum".to_string(), b"1".to_vec());
                stream.on_request_trailers(host);
            }
            let bits = FLAGS.iter().find(|(name, _)| *name == flag).unwrap().1;
            let status = match (request.content_type.is_some_and(|t| t.starts_with("application/grpc")), flag) {
                (true, _) => "200",
                (_, "NR") => "404",
                (_, "UT" | "UMSDR" | "SI") => "504",
                _ => "503",
            };
            host.response = [(":status".to_string(), status.as_bytes().to_vec())].into_iter().collect();
            host.properties.insert("response.flags".to_string(), bits.to_le_bytes().to_vec());
            host.properties.insert(
                "response.code_details".to_string(),
                b"upstream_reset_before_response_started{connection_failure}".to_vec(),
            );
            assert_eq!(stream.on_response_headers(host), Flow::Answered, "{flag}");
        }
        Provoke::TooLarge => {
            assert_eq!(stream.on_request_headers(host, false), Flow::Continue);
            host.bodies[0] = b"0123456789".to_vec();
            stream.on_request_body(host, 10, false);
            host.response = [(":status".to_string(), b"413".to_vec())].into_iter().collect();
            host.properties.insert("response.code_details".to_string(), b"request_payload_too_large".to_vec());
            assert_eq!(stream.on_response_headers(host), Flow::Answered);
        }
        _ => assert_eq!(stream.on_request_headers(host, true), Flow::Answered),
    }
    let (status, headers, body) = host.sent.clone()?;
    Some(Sent { status, headers, body: String::from_utf8(body).unwrap(), grpc_status: host.sent_grpc_status })
}

/// The disagreements found, by class.
type Disagreements = std::collections::BTreeMap<String, (usize, String)>;

fn disagree(found: &mut Disagreements, class: &str, detail: String) {
    let entry = found.entry(class.to_string()).or_insert((0, detail));
    entry.0 += 1;
}

fn header<'a>(sent: &'a Sent, name: &str) -> Option<&'a str> {
    sent.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
}

fn status_report(family: &str) -> bool {
    matches!(family, "gateway" | "transport" | "fault sequence" | "choreo")
}

fn throttled(id: &str) -> bool {
    matches!(id, "resource_throttled" | "api_throttled" | "custom_policy_throttled")
}

/// The body the documents give, as a JSON value (XML bodies are compared element by element).
fn expected_json(setup: &Setup, want: &Expected) -> serde_json::Value {
    let report = status_report(&want.family);
    let description = match throttled(&want.id) {
        true => format!("{} .You can access API after {NEXT_ACCESS}", want.description),
        false => want.description.clone(),
    };
    match setup.format {
        "apim-json" => {
            let mut body = serde_json::json!({"code": want.code.to_string(), "message": want.message,
                "description": description});
            if report {
                body["type"] = "Status report".into();
            }
            if throttled(&want.id) {
                body["nextAccessTime"] = NEXT_ACCESS.into();
            }
            body
        }
        "microgateway" if want.mgw_body == "ERROR_CODE" => {
            serde_json::json!({"ERROR_CODE": want.code.to_string(), "ERROR_MESSAGE": want.description})
        }
        "microgateway" if want.mgw_body == "status report" => serde_json::json!({"code": want.code,
            "type": "Status report", "message": want.message, "description": want.description}),
        "microgateway" => {
            let code = if report { want.code.to_string().into() } else { serde_json::Value::from(want.code) };
            serde_json::json!({"fault": {"code": code, "message": want.message, "description": want.description}})
        }
        // The router answers a path or method no resource has (ERROR-CODES.md, Choreo Connect format).
        "choreo-connect" if report || want.id == "no_matching_resource" => {
            serde_json::json!({"code": want.code.to_string(), "message": want.message, "description": want.description})
        }
        "choreo-connect" => serde_json::json!({"code": want.code.to_string(), "error_message": want.message,
            "error_description": want.description}),
        "kanali" => {
            let kanali = want.kanali.clone().unwrap();
            serde_json::json!({"status": want.status, "message": want.message, "code": kanali.parse::<u8>().unwrap(),
                "details": format!("Visit https://kanali.io/docs/v2/errorcodes/#{kanali} for more details.")})
        }
        // Tyk (a template's body is compared as text).
        _ => serde_json::json!({"error": want.message}),
    }
}

/// The template filled as docs/CONFIG.md says: values JSON-escaped when the content type contains
/// `json`, XML-escaped when it contains `xml` or `html`, as they are otherwise; other braces kept.
fn filled(template: &str, content_type: &str, want: &Expected) -> String {
    let lower = content_type.to_ascii_lowercase();
    let escape = |text: &str| {
        if lower.contains("json") {
            let quoted = serde_json::Value::from(text).to_string();
            quoted[1..quoted.len() - 1].to_string()
        } else if lower.contains("xml") || lower.contains("html") {
            text.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&apos;")
        } else {
            text.to_string()
        }
    };
    template
        .replace("{code}", &want.code.to_string())
        .replace("{status}", &want.status.to_string())
        .replace("{message}", &escape(&want.message))
        .replace("{description}", &escape(&want.description))
}

/// Compares one answer with the model; each difference is recorded under its class.
fn compare(setup: &Setup, request: &Request, want: &Expected, sent: &Sent, found: &mut Disagreements) {
    let case = || {
        format!(
            "{} mgw={} {want:?} sent {} {:?} {}",
            setup.format, setup.microgateway, sent.status, sent.headers, sent.body
        )
    };
    if sent.status != want.status {
        disagree(found, &format!("status of {}", want.id), case());
    }
    if sent.grpc_status != want.grpc_status {
        disagree(found, "grpc_status", case());
    }
    let xml = setup.format == "apim-xml";
    let content_type = match (setup.format, TEMPLATES[setup.template].0) {
        ("template", content_type) => content_type.unwrap_or("application/json"),
        ("apim-xml", _) => "application/xml; charset=UTF-8",
        // Tyk's `handler_error.go` and Kanali's `pkg/middleware/gateway.go`: a bare type.
        ("tyk" | "kanali", _) => "application/json",
        _ => "application/json; charset=UTF-8",
    };
    if header(sent, "content-type") != Some(content_type) {
        disagree(found, "content-type", case());
    }
    // Body.
    if setup.format == "template" {
        if sent.body != filled(TEMPLATES[setup.template].1, content_type, want) {
            disagree(found, &format!("template body ({content_type})"), case());
        }
    } else if xml {
        let (prefix, namespace) = match want.family.as_str() {
            "auth" => ("ams", "http://wso2.org/apimanager/security"),
            "throttle" => ("amt", "http://wso2.org/apimanager/throttling"),
            _ => ("am", "http://wso2.org/apimanager"),
        };
        let mut children = vec![("code", want.code.to_string())];
        if status_report(&want.family) {
            children.push(("type", "Status report".to_string()));
        }
        children.push(("message", want.message.clone()));
        let description = match throttled(&want.id) {
            true => format!("{} .You can access API after {NEXT_ACCESS}", want.description),
            false => want.description.clone(),
        };
        children.push(("description", description));
        if throttled(&want.id) {
            children.push(("nextAccessTime", NEXT_ACCESS.to_string()));
        }
        match roxmltree::Document::parse(&sent.body) {
            Ok(document) => {
                let root = document.root_element();
                let got: Vec<(String, String)> = root
                    .children()
                    .filter(|node| node.is_element())
                    .map(|node| (node.tag_name().name().to_string(), node.text().unwrap_or_default().to_string()))
                    .collect();
                let want_children: Vec<(String, String)> =
                    children.into_iter().map(|(name, text)| (name.to_string(), text)).collect();
                let shaped = root.tag_name().name() == "fault"
                    && root.tag_name().namespace() == Some(namespace)
                    && sent.body.starts_with(&format!("<{prefix}:fault "))
                    && root.children().filter(|n| n.is_element()).all(|n| n.tag_name().namespace() == Some(namespace));
                if !shaped {
                    disagree(found, &format!("xml root of {}", want.family), case());
                }
                if got != want_children {
                    disagree(found, &format!("xml body of {}", want.id), case());
                }
            }
            Err(_) => disagree(found, "xml unparsable", case()),
        }
    } else {
        match serde_json::from_str::<serde_json::Value>(&sent.body) {
            Ok(body) if body == expected_json(setup, want) => {}
            Ok(_) => disagree(found, &format!("{} body of {}", setup.format, want.id), case()),
            Err(_) => disagree(found, "json unparsable", case()),
        }
    }
    // WWW-Authenticate: every 401, with error="invalid_token" and API-M's error_description.
    let realm = setup.realm.as_deref().unwrap_or("WSO2 API Manager");
    // Choreo Connect's AuthFilter challenges on every refusal it makes (ERROR-CODES.md).
    let auth_filter = (want.family == "auth" && want.id != "no_matching_resource")
        || matches!(
            want.id.as_str(),
            "api_blocked" | "production_key_without_endpoint" | "sandbox_key_without_endpoint"
        );
    let challenge = match (want.status, want.id.as_str()) {
        _ if setup.format == "choreo-connect" => auth_filter.then(|| {
            format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"The provided token is invalid\"")
        }),
        (401, _) => Some(format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"The provided token is invalid\""
        )),
        _ => None,
    };
    if header(sent, "www-authenticate").map(String::from) != challenge {
        disagree(found, &format!("www-authenticate of {}", want.id), case());
    }
    // Choreo Connect 1.2 sends the reset time as an HTTP date (ERROR-CODES.md).
    let retry_after = throttled(&want.id).then(|| match setup.format {
        "choreo-connect" => "Fri, 15 Jan 2027 08:01:00 GMT".to_string(),
        _ => (1_800_000_060 - NOW).to_string(),
    });
    if header(sent, "retry-after").map(String::from) != retry_after {
        disagree(found, &format!("retry-after of {}", want.id), case());
    }
    // CORS.
    let mut cors: Vec<(&str, String)> = Vec::new();
    if let Some((origins, credentials)) = &setup.cors {
        let wildcard = origins.contains(&"*");
        let allowed = match wildcard {
            true => Some("*"),
            false => request.origin.filter(|origin| origins.contains(origin)),
        };
        if let Some(allowed) = allowed {
            cors.push(("access-control-allow-origin", allowed.to_string()));
            // API-M's CORSRequestHandler answers with the matched resource's methods the policy
            // allows (seed 002: a 900901 with `Access-Control-Allow-Methods: GET`), and with every
            // configured method where no resource matched. Both policies here allow `GET`.
            let configured = setup.methods.clone().unwrap_or(vec!["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]);
            let methods = if request.resource { vec!["GET"] } else { configured };
            cors.push(("access-control-allow-methods", methods.join(",")));
            cors.push((
                "access-control-allow-headers",
                "authorization,Access-Control-Allow-Origin,Content-Type,SOAPAction,apikey".to_string(),
            ));
            if !setup.expose.is_empty() {
                cors.push(("access-control-expose-headers", setup.expose.join(",")));
            }
            if *credentials {
                cors.push(("access-control-allow-credentials", "true".to_string()));
            }
        }
        if !wildcard {
            cors.push(("vary", "Origin".to_string()));
        }
    }
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "access-control-max-age",
        "vary",
    ] {
        let want_value = cors.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        if header(sent, name).map(String::from) != want_value {
            disagree(found, &format!("cors {name}"), case());
        }
    }
    // The RateLimit headers: on a throttled answer, the level that refused it (1 a minute, none
    // left, the window ends 50 s on); no other fault here was counted by a level.
    for (name, value) in [("ratelimit-limit", "1"), ("ratelimit-remaining", "0"), ("ratelimit-reset", "50")] {
        let want_value = (setup.rate_limit_headers && throttled(&want.id)).then_some(value);
        if header(sent, name) != want_value {
            disagree(found, &format!("{name} of {}", want.id), case());
        }
    }
    let known = [
        "content-type",
        "www-authenticate",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    ];
    for (name, _) in &sent.headers {
        if !known.contains(&name.as_str()) && !name.starts_with("access-control-") && name != "vary" {
            disagree(found, &format!("unexpected header {name}"), case());
        }
    }
}

const SEEDS: u64 = 160;
const REQUESTS_PER_SEED: usize = 12;

#[test]
fn faults_match_the_documents_model() {
    let doc = doc();
    let mut found = Disagreements::new();
    let mut answered = 0;
    let mut seen: std::collections::BTreeSet<(&str, String)> = std::collections::BTreeSet::new();
    for seed in 0..SEEDS {
        let mut rng = Rng(seed);
        let setup = setup(&mut rng);
        let json = config_json(&setup);
        let mut config = Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{json}"));
        // The counter slots as at configure time, copied into each request's fresh host.
        let mut prepared = FakeHost::default();
        crate::stream::prepare_counters(&mut prepared, &mut config);
        let counters = prepared.shared;
        let config = Rc::new(config);
        for _ in 0..REQUESTS_PER_SEED {
            let provoke = provoke(&mut rng, setup.format);
            let request = Request {
                origin: rng.chance(60).then(|| *rng.pick(&ORIGINS)),
                content_type: rng.chance(50).then(|| {
                    *rng.pick(&["application/grpc", "application/grpc+proto", "application/json", "text/xml"])
                }),
                accept: rng.chance(50).then(|| *rng.pick(&["application/xml", "application/json", "*/*", "text/html"])),
                head: rng.chance(30),
                authorization_header: setup.authorization_header,
                resource: !matches!(
                    provoke,
                    Provoke::NoApi | Provoke::WrongMethod | Provoke::UnknownResource | Provoke::BlockedApi
                ),
            };
            let mut host = FakeHost { now: NOW, shared: counters.clone(), ..Default::default() };
            let want = expected(&doc, &setup, provoke);
            seen.insert((setup.format, want.id.clone()));
            match send(&config, &mut host, provoke, &request) {
                Some(sent) => compare(&setup, &request, &want, &sent, &mut found),
                None => disagree(&mut found, "no answer", format!("{provoke:?}")),
            }
            answered += 1;
        }
    }
    assert_eq!(answered, SEEDS as usize * REQUESTS_PER_SEED);
    // Every format answered every fault the campaign provokes (Choreo Connect its own upstream
    // entries, the Microgateway no protocol-state codes).
    for format in FORMATS {
        let ids = seen.iter().filter(|(f, _)| *f == format).count();
        assert!(ids >= 11, "{format}: {ids} entries, {seen:?}");
    }
    assert!(
        found.is_empty(),
        "{} classes:\n{}",
        found.len(),
        found
            .iter()
            .map(|(class, (n, example))| format!("{n:>5} {class}\n      e.g. {example}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every catalogue entry is in docs/ERROR-CODES.md as the filter renders it by default, and the
/// document names no entry the catalogue lacks.
#[test]
fn every_entry_is_documented_as_rendered() {
    let doc = doc();
    assert_eq!(doc.entries.len(), ALL.len(), "one row per entry");
    let settings = crate::render::ErrorSettings::default();
    for id in ALL {
        let spec = id.spec();
        let entry = doc.entry(spec.id);
        let rendered = crate::render::render(&crate::catalogue::Fault::new(*id), &settings, None);
        let body: serde_json::Value = serde_json::from_str(&rendered.body).unwrap();
        assert_eq!(
            (
                rendered.status,
                body["code"].as_str().unwrap(),
                body["message"].as_str().unwrap(),
                body["description"].as_str().unwrap()
            ),
            (entry.status, entry.code.to_string().as_str(), entry.message.as_str(), entry.description.as_str()),
            "{}",
            spec.id
        );
        // And in each other gateway's table: Kanali's code, status and message, Tyk's status and
        // error, the Microgateway's texts.
        let format = |format| crate::render::ErrorSettings { format, ..Default::default() };
        let kanali = crate::render::render(&crate::catalogue::Fault::new(*id), &format(ErrorFormat::Kanali), None);
        let body: serde_json::Value = serde_json::from_str(&kanali.body).unwrap();
        let code = &doc.kanali_of[spec.id];
        let (status, message) = &doc.kanali_codes[code];
        assert_eq!(
            (kanali.status, &body["message"], &body["code"]),
            (*status, &message.as_str().into(), &code.parse::<u8>().unwrap().into()),
            "{}",
            spec.id
        );
        let tyk = crate::render::render(&crate::catalogue::Fault::new(*id), &format(ErrorFormat::Tyk), None);
        let body: serde_json::Value = serde_json::from_str(&tyk.body).unwrap();
        let (status, error) = &doc.tyk[spec.id];
        assert_eq!((tyk.status, &body["error"]), (*status, &error.as_str().into()), "{}", spec.id);
        let mgw = crate::render::render(&crate::catalogue::Fault::new(*id), &format(ErrorFormat::Microgateway), None);
        let body: serde_json::Value = serde_json::from_str(&mgw.body).unwrap();
        let (status, message, description, shape) = doc.microgateway.get(spec.id).cloned().unwrap_or((
            entry.status,
            entry.message.clone(),
            entry.description.clone(),
            "fault".to_string(),
        ));
        let (sent_message, sent_description) = match shape.as_str() {
            "ERROR_CODE" => (message.as_str().into(), body["ERROR_MESSAGE"].clone()),
            "status report" => (body["message"].clone(), body["description"].clone()),
            _ => (body["fault"]["message"].clone(), body["fault"]["description"].clone()),
        };
        assert_eq!(
            (mgw.status, &sent_message, &sent_description),
            (status, &message.into(), &description.into()),
            "{}",
            spec.id
        );
    }
    assert_eq!((doc.kanali_of.len(), doc.tyk.len()), (ALL.len(), ALL.len()), "one row per entry");
}
