//! A seeded, model-based audit of blocking conditions (900805) against WSO2 API Manager 4.x's
//! gateway: random conditions from the configuration (`blocking`) and from a control plane's
//! `/block` (API contexts, `owner:name` applications, tenant-qualified users, `IP` and `IPRANGE`
//! entries of this tenant and of another, inverted or not), random requests (open and secured
//! resources, default-version and versioned paths, users with and without a tenant, client
//! addresses of both families and IPv4-mapped), each decision compared with an independent model
//! written from carbon-apimgt's `ThrottleHandler` (the keys it passes), `ThrottleDataHolder`
//! (`isRequestBlocked`, `isIpLevelBlocked`: exact map look-ups, address conditions by tenant,
//! ranges compared as numbers without their ends), docs/CONFIG.md (the configuration's conditions)
//! and the seeds (900805 is 429). The seed is `APIM_BLOCKING_SEED` when set.

use super::gateways::{tick_answering, Gateway, NOW};
use super::*;
use crate::host::fuzz::Rng;
use serde_json::{json, Value};
use std::net::IpAddr;

const CASES: usize = 40;
const REQUESTS: usize = 50;
const SECRET: &str = "blocking-audit-hmac-secret-0123456789";
const TENANT: &str = "carbon.super";
/// (name, version, default version).
const APIS: [(&str, &str, bool); 2] = [("Alpha", "1.0.0", true), ("Beta", "1.0.0", false)];
/// Application owners (a user of the super tenant each) and names.
const APPS: [(&str, &str); 3] = [("owner0", "App0"), ("owner1", "App1"), ("owner2", "App2")];
/// Token subjects: the super tenant's users with and without their tenant, another spelling.
const USERS: [&str; 5] = ["bob", "bob@carbon.super", "carol", "Bob", "dave@carbon.super"];
/// Client addresses: IPv4, IPv4-mapped, IPv6, on and off every range's ends.
const CLIENTS: [&str; 8] =
    ["10.0.0.1", "10.0.0.5", "10.0.0.9", "::ffff:10.0.0.5", "192.0.2.7", "2001:db8::1", "2001:db8::7", "2001:db8::ff"];
/// `/block` API entries: WSO2's versioned contexts, and another tenant's.
const BLOCK_APIS: [&str; 3] = ["/alpha/1.0.0", "/beta/1.0.0", "/t/acme.com/alpha/1.0.0"];
/// `/block` application entries (`owner:name`, case as stored).
const BLOCK_APPS: [&str; 3] = ["owner0:App0", "owner1:app1", "owner2:App2"];
/// `/block` user entries: API-M stores `<tenant-aware name>@<tenant>`.
const BLOCK_USERS: [&str; 3] = ["bob@carbon.super", "carol@carbon.super", "Dave@carbon.super"];
/// `/block` address entries: (type, first, last).
const BLOCK_IPS: [(&str, &str, &str); 5] = [
    ("IP", "10.0.0.5", ""),
    ("IP", "2001:db8::7", ""),
    ("IPRANGE", "10.0.0.1", "10.0.0.9"),
    ("IPRANGE", "2001:db8::1", "2001:db8::ff"),
    ("IP", "192.0.2.7", ""),
];
/// The configuration's conditions (docs/CONFIG.md, BlockingCondition).
const STATIC: [(&str, &str); 5] = [
    ("user", "carol"),
    ("user", "dave@carbon.super"),
    ("ip", "10.0.0.1"),
    ("ip_range", "2001:db8::/125"),
    ("application", "owner1:App1"),
];

#[derive(Clone, Debug)]
struct BlockedIp {
    kind: &'static str,
    first: &'static str,
    last: &'static str,
    invert: bool,
    /// `None`: the entry names no tenant (the filter's documented reading: this tenant's).
    tenant: Option<&'static str>,
}

#[derive(Clone, Debug, Default)]
struct Conditions {
    apis: Vec<&'static str>,
    apps: Vec<&'static str>,
    users: Vec<&'static str>,
    ips: Vec<BlockedIp>,
    fixed: Vec<(&'static str, &'static str)>,
}

fn subset<T: Copy>(rng: &mut Rng, items: &[T], one_in: usize) -> Vec<T> {
    items.iter().copied().filter(|_| rng.chance(one_in)).collect()
}

fn random_conditions(rng: &mut Rng) -> Conditions {
    let mut ips = Vec::new();
    for (kind, first, last) in BLOCK_IPS {
        if rng.chance(4) {
            let invert = rng.chance(4);
            let tenant = *rng.pick(&[Some(TENANT), Some(TENANT), Some("acme.com"), None]);
            ips.push(BlockedIp { kind, first, last, invert, tenant });
        }
    }
    Conditions {
        apis: subset(rng, &BLOCK_APIS, 6),
        apps: subset(rng, &BLOCK_APPS, 5),
        users: subset(rng, &BLOCK_USERS, 5),
        ips,
        fixed: subset(rng, &STATIC, 6),
    }
}

fn list(items: Vec<Value>) -> String {
    json!({"count": items.len(), "list": items, "pagination": null}).to_string()
}

/// API-M's answers: two APIs (Alpha the default version), an open and a secured resource each,
/// every application subscribed to both with a production client `c<i>`.
fn answer(conditions: &Conditions, path: &str) -> String {
    let resource = path.trim_start_matches("/internal/data/v1/");
    let resource = resource.split_once('?').map_or(resource, |(resource, _)| resource);
    let app_json = |i: usize| {
        json!({"uuid": format!("app-{i}"), "id": 10 + i, "name": APPS[i].1, "subName": APPS[i].0,
            "policy": "Unlimited", "tokenType": "JWT", "groupIds": [], "attributes": {}, "organization": TENANT})
    };
    match resource {
        "apis" => list(
            APIS.iter()
                .enumerate()
                .map(|(i, (name, version, default))| {
                    json!({"uuid": format!("api-{i}"), "apiId": i, "provider": "admin", "name": name,
                        "version": version, "context": format!("/{}/{version}", name.to_lowercase()),
                        "policy": null, "apiType": "HTTP", "status": "PUBLISHED", "organization": TENANT,
                        "isDefaultVersion": default, "urlMappings": [
                            {"authScheme": "None", "throttlingPolicy": "Unlimited", "httpMethod": "GET",
                             "urlPattern": "/open", "scopes": []},
                            {"authScheme": "Any", "throttlingPolicy": "Unlimited", "httpMethod": "GET",
                             "urlPattern": "/menu", "scopes": []}]})
                })
                .collect(),
        ),
        "applications" => list((0..APPS.len()).map(app_json).collect()),
        "subscriptions" => list(
            (0..APPS.len())
                .flat_map(|app| (0..APIS.len()).map(move |api| (app, api)))
                .map(|(app, api)| {
                    json!({"subscriptionUUID": format!("s-{app}-{api}"), "subscriptionId": 1,
                        "policyId": "Unlimited", "apiUUID": format!("api-{api}"), "apiId": api,
                        "applicationUUID": format!("app-{app}"), "appId": 10 + app,
                        "subscriptionState": "UNBLOCKED"})
                })
                .collect(),
        ),
        "application-key-mappings" => list(
            (0..APPS.len())
                .map(|i| {
                    json!({"applicationId": 10 + i, "applicationUUID": format!("app-{i}"),
                        "consumerKey": format!("c{i}"), "keyType": "PRODUCTION",
                        "keyManager": "Resident Key Manager"})
                })
                .collect(),
        ),
        "block" => {
            let ip: Vec<Value> = conditions
                .ips
                .iter()
                .enumerate()
                .map(|(id, ip)| {
                    let mut entry = match ip.kind {
                        "IP" => json!({"type": "IP", "fixedIp": ip.first, "invert": ip.invert, "id": id}),
                        _ => json!({"type": "IPRANGE", "startingIp": ip.first, "endingIp": ip.last,
                            "invert": ip.invert, "id": id}),
                    };
                    if let Some(tenant) = ip.tenant {
                        entry["tenantDomain"] = json!(tenant);
                    }
                    entry
                })
                .collect();
            json!({"api": conditions.apis, "application": conditions.apps, "user": conditions.users,
                "ip": ip, "custom": [], "subscription": []})
            .to_string()
        }
        "subscription-policies" | "application-policies" | "api-policies" => list(Vec::new()),
        _ => "[]".into(),
    }
}

fn config(conditions: &Conditions) -> String {
    let blocking: Vec<Value> = conditions.fixed.iter().map(|(field, value)| json!({ *field: value })).collect();
    json!({"key_managers": [{"name": "Resident Key Manager", "issuer": "https://km", "algorithms": ["HS256"],
            "hmac_secret": SECRET}],
        "blocking": blocking,
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5,
            "endpoints": {"Alpha:1.0.0": {"production": "alpha"}, "Beta:1.0.0": {"production": "beta"}}}})
    .to_string()
}

#[derive(Clone, Debug)]
struct Request {
    path: String,
    /// (application index, token subject); `None`: no credential.
    caller: Option<(usize, &'static str)>,
    ip: &'static str,
}

fn random_request(rng: &mut Rng) -> Request {
    let base = *rng.pick(&["/alpha/1.0.0", "/alpha", "/beta/1.0.0", "/beta"]);
    let rest = *rng.pick(&["/menu", "/menu", "/open"]);
    let caller = (!rng.chance(5)).then(|| (rng.below(APPS.len()), *rng.pick(&USERS)));
    Request { path: format!("{base}{rest}"), caller, ip: CLIENTS[rng.below(CLIENTS.len())] }
}

/// An address as `APIUtil.ipToBigInteger` reads it (Java reads an IPv4-mapped address as IPv4).
fn number(text: &str) -> u128 {
    match text.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6),
        },
    }
}

/// Whether `ip` is in the CIDR range `range` (docs/CONFIG.md: a mapped address is its IPv4 one).
fn in_cidr(ip: &str, range: &str) -> bool {
    let (network, bits) = range.split_once('/').unwrap();
    let bits: u32 = bits.parse().unwrap();
    let v4 = |text: &str| text.parse::<IpAddr>().unwrap().to_canonical().is_ipv4();
    let width = if v4(network) { 32 } else { 128 };
    if v4(network) != v4(ip) {
        return false;
    }
    let shift = width - bits;
    number(ip) >> shift == number(network) >> shift
}

/// Why WSO2 blocks the request, or `None`.
fn blocked_by(conditions: &Conditions, request: &Request, api: usize) -> Option<&'static str> {
    // ThrottleHandler: the API key is REST_API_CONTEXT, the versioned API's context (a default
    // version's request runs through the versioned API's handlers).
    let (name, version, _) = APIS[api];
    let context = format!("/{}/{version}", name.to_lowercase());
    if conditions.apis.iter().any(|blocked| *blocked == context) {
        return Some("api");
    }
    if let Some((app, subject)) = request.caller {
        // `subscriber:applicationName`, an exact look-up.
        let key = format!("{}:{}", APPS[app].0, APPS[app].1);
        if conditions.apps.contains(&key.as_str()) {
            return Some("application");
        }
        // `authorizedUser`: the subject, `@<API tenant>` appended when it does not hold it.
        let user = if subject.contains(TENANT) { subject.to_string() } else { format!("{subject}@{TENANT}") };
        if conditions.users.contains(&user.as_str()) {
            return Some("user");
        }
    }
    // isIpLevelBlocked: the API's tenant's conditions; `IP` by equality, `IPRANGE` strictly
    // between its ends as numbers; `invert` blocks whatever does not match.
    let client = number(request.ip);
    for ip in conditions.ips.iter().filter(|ip| ip.tenant.is_none_or(|tenant| tenant == TENANT)) {
        let inside = match ip.kind {
            "IP" => client == number(ip.first),
            _ => number(ip.first) < client && client < number(ip.last),
        };
        if inside != ip.invert {
            return Some(if ip.invert {
                "ip inverted"
            } else if ip.kind == "IP" {
                "ip"
            } else {
                "ip range"
            });
        }
    }
    // The configuration's conditions (docs/CONFIG.md).
    for (field, value) in &conditions.fixed {
        let hit = match *field {
            "ip" => number(request.ip) == number(value),
            "ip_range" => in_cidr(request.ip, value),
            "user" => request.caller.is_some_and(|(_, subject)| {
                let bare = |name: &'static str| name.strip_suffix("@carbon.super").unwrap_or(name);
                bare(subject) == bare(value)
            }),
            _ => request.caller.is_some_and(|(app, _)| format!("{}:{}", APPS[app].0, APPS[app].1) == *value),
        };
        if hit {
            return Some(match *field {
                "ip" => "config ip",
                "ip_range" => "config ip_range",
                "user" => "config user",
                _ => "config application",
            });
        }
    }
    None
}

/// The model's decision: `Ok(cluster)`, or `Err((code, status, why))`.
fn decide(conditions: &Conditions, request: &Request) -> Result<String, (u32, u16, &'static str)> {
    let (base, rest) = request.path.rsplit_once('/').unwrap();
    let api = match base {
        "/alpha/1.0.0" | "/alpha" => 0,
        "/beta/1.0.0" => 1,
        _ => return Err((404, 404, "no such API")),
    };
    // Authentication comes first (APIAuthenticationHandler before ThrottleHandler).
    if rest == "menu" && request.caller.is_none() {
        return Err((900902, 401, "no credential"));
    }
    // An open resource authenticates nobody, whatever credential comes (WSO2's authenticator
    // gives it an anonymous context): application and user conditions cannot name its caller.
    let effective = Request { caller: if rest == "open" { None } else { request.caller }, ..request.clone() };
    match blocked_by(conditions, &effective, api) {
        // The seeds' status for 900805 (WSO2's code sends 403: WSO2-CONTRACT.md).
        Some(why) => Err((900805, 429, why)),
        None => Ok(["alpha", "beta"][api].to_string()),
    }
}

fn token(app: usize, subject: &str) -> String {
    let claims = json!({"iss": "https://km", "exp": NOW + 3600, "client_id": format!("c{app}"), "sub": subject,
        "aut": "APPLICATION_USER"});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// The filter's decision: the cluster, or the fault's code, status and message.
fn filter(
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    conditions: &Conditions,
    request: &Request,
) -> Result<String, (u32, u16, String)> {
    let mut host = FakeHost::request(&[(":method", "GET"), (":path", &request.path)]);
    host.now = NOW;
    host.shared = std::mem::take(shared);
    let address =
        if request.ip.contains(':') { format!("[{}]:5000", request.ip) } else { format!("{}:5000", request.ip) };
    host.properties.insert("source.address".into(), address.into_bytes());
    if let Some((app, subject)) = request.caller {
        host.request.insert("authorization".into(), format!("Bearer {}", token(app, subject)).into_bytes());
    }
    let mut stream = Stream::new(Rc::clone(&gateway.config), Rc::clone(&gateway.worker));
    stream.on_request_headers(&mut host, true);
    // Lookups (none expected after the full load) are answered from the same directory.
    let mut answered = 0;
    while host.sent.is_none() && !host.resumed && answered < host.dispatched.len() {
        answered += 1;
        let (_, headers, _) = &host.dispatched[answered - 1];
        let path = headers.iter().find(|(name, _)| name == ":path").map(|(_, v)| v.clone()).unwrap();
        let body = answer(conditions, &path).into_bytes();
        stream.on_call_response(&mut host, answered as u32, Answer::Http { status: 200, body });
    }
    *shared = std::mem::take(&mut host.shared);
    match host.sent {
        Some((status, headers, body)) => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            // A blocked request is no throttled one: no next access time (ThrottleHandler sets
            // none for REQUEST_BLOCKED), so neither `Retry-After` nor `nextAccessTime`.
            if body["code"] == "900805" {
                assert!(!headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("retry-after")), "{headers:?}");
                assert!(body.get("nextAccessTime").is_none(), "{body}");
            }
            let code = body["code"].as_str().and_then(|code| code.parse().ok()).unwrap_or(u32::from(status));
            Err((code, status, body["message"].as_str().unwrap_or_default().to_string()))
        }
        None => Ok(host.req("x-apim-cluster").to_string()),
    }
}

/// Whether another tenant's address condition would block the request were it this tenant's.
fn another_tenants_would_block(conditions: &Conditions, request: &Request) -> bool {
    let client = number(request.ip);
    conditions.ips.iter().filter(|ip| ip.tenant == Some("acme.com")).any(|ip| {
        let inside = match ip.kind {
            "IP" => client == number(ip.first),
            _ => number(ip.first) < client && client < number(ip.last),
        };
        inside != ip.invert
    })
}

#[test]
fn blocking_conditions_agree_with_wso2s_gateway_model() {
    let seed = std::env::var("APIM_BLOCKING_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(805_u64);
    let mut rng = Rng::new(seed);
    let mut tally: HashMap<&'static str, usize> = HashMap::new();
    for case in 0..CASES {
        let conditions = random_conditions(&mut rng);
        let mut shared = HashMap::new();
        let gateway = Gateway::configure(&mut shared, &config(&conditions));
        let mut host = FakeHost { shared: std::mem::take(&mut shared), now: NOW, ..Default::default() };
        tick_answering(&mut host, &gateway.config, &gateway.worker, |_, path| Answer::Http {
            status: 200,
            body: answer(&conditions, path).into_bytes(),
        });
        shared = std::mem::take(&mut host.shared);
        for _ in 0..REQUESTS {
            let request = random_request(&mut rng);
            let expected = decide(&conditions, &request);
            let got = filter(&gateway, &mut shared, &conditions, &request);
            let class = match &expected {
                Ok(_) if another_tenants_would_block(&conditions, &request) => "forwarded, another tenant's IP",
                Ok(_) => "forwarded",
                Err((_, _, why)) => why,
            };
            *tally.entry(class).or_default() += 1;
            let context =
                format!("seed {seed} (APIM_BLOCKING_SEED), case {case}: {request:?} {expected:?}\n{conditions:#?}");
            match (&got, &expected) {
                (Ok(cluster), Ok(wanted)) => assert_eq!(cluster, wanted, "{context}"),
                (Err((code, status, message)), Err((wanted_code, wanted_status, _))) => {
                    assert_eq!((code, status), (wanted_code, wanted_status), "{context}");
                    if *code == 900805 {
                        assert_eq!(message, "Message blocked", "{context}");
                    }
                }
                _ => panic!("got {got:?}; {context}"),
            }
        }
    }
    println!("blocking-audit classes (seed {seed}): {tally:?}");
    for class in [
        "forwarded",
        "forwarded, another tenant's IP",
        "no such API",
        "no credential",
        "api",
        "application",
        "user",
        "ip",
        "ip range",
        "ip inverted",
        "config ip",
        "config ip_range",
        "config user",
        "config application",
    ] {
        assert!(tally.get(class).is_some_and(|count| *count > 0), "seed {seed}: {class} never decided: {tally:?}");
    }
}
