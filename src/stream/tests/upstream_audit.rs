//! A seeded, model-based audit of what a forwarded request carries upstream: random credential
//! settings (header and query names, `strip`, `context_headers`), the backend JWT on and off
//! (default and custom header), and random requests (bearer tokens, API keys in the header and in
//! queries of every spelling: escaped names, repeated, empty, bare, beside other pairs and
//! separators, values with `#`; `Basic` and broken credentials; open resources; forged backend JWT
//! and auth-context headers in both spellings). Each request's upstream `:path` and headers are
//! compared with an independent model written from README.md ("Routing", "Key validation",
//! "Backend JWT"), docs/CONFIG.md (`Credentials`, `BackendJwt`) and WSO2 API-M 4.x's gateway
//! (`OAuthAuthenticator` removes the security header, `ApiKeyAuthenticator` the key header or
//! query pair, `APISecurityUtils.setAuthenticationContext` writes the backend JWT header only for
//! an authenticated caller). The invariant that matters most: with `strip` on, no credential the
//! API accepts and no forged identity header reaches the backend. The seed is
//! `APIM_UPSTREAM_SEED` when set.

use super::*;
use crate::host::fuzz::Rng;
use std::collections::BTreeMap;

const CASES: usize = 60;
const REQUESTS: usize = 80;
const NOW: u64 = 1_800_000_000;
const SECRET: &str = "upstream-audit-hmac-secret-0123456789";
const KEY: &str = "k-UPSTREAM-0123456789";

/// One configuration drawn for a case.
#[derive(Clone, Debug)]
struct Settings {
    authorization: &'static str,
    api_key_header: &'static str,
    query_param: &'static str,
    strip: bool,
    context_headers: bool,
    /// The backend JWT's header (as configured), or off.
    backend_jwt: Option<&'static str>,
}

fn random_settings(rng: &mut Rng) -> Settings {
    let custom = rng.chance(3);
    Settings {
        authorization: if custom { "x-auth-token" } else { "authorization" },
        api_key_header: if custom { "x-api-key" } else { "apikey" },
        query_param: if custom { "key" } else { "apikey" },
        strip: !rng.chance(4),
        context_headers: !rng.chance(3),
        backend_jwt: *rng.pick(&[None, Some("X-JWT-Assertion"), Some("X-Backend-JWT")]),
    }
}

fn config_of(settings: &Settings) -> Rc<Config> {
    let jwt = settings
        .backend_jwt
        .map(|header| format!(r#""backend_jwt":{{"algorithm":"none","header":"{header}"}},"#))
        .unwrap_or_default();
    let json = format!(
        r#"{{{jwt}
        "credentials":{{"authorization_header":"{}","api_key_header":"{}","api_key_query_param":"{}",
            "strip":{},"context_headers":{}}},
        "key_managers":[{{"name":"km","issuer":"https://km","hmac_secret":"{SECRET}","algorithms":["HS256"]}}],
        "apis":[
          {{"name":"P","context":"/p","version":"1","security":["oauth2","api_key"],"api_key_in_query":true,
            "endpoints":{{"production":"backend"}},
            "resources":[{{"method":"GET","path":"/menu"}},{{"method":"GET","path":"/open","security":[]}},
                         {{"method":"GET","path":"/oauth","security":["oauth2"]}},
                         {{"method":"GET","path":"/key","security":["api_key"]}}]}},
          {{"name":"Q","context":"/q","version":"1","security":["oauth2"],
            "endpoints":{{"production":"backend"}},
            "resources":[{{"method":"GET","path":"/menu"}},{{"method":"GET","path":"/open","security":[]}}]}}],
        "applications":[{{"id":"app-1","name":"App","owner":"alice","api_keys":[{{"sha256":"{}"}}],
            "client_ids":[{{"id":"cid1","key_type":"PRODUCTION"}}]}}],
        "subscriptions":[{{"application":"app-1","api":"P:1"}},{{"application":"app-1","api":"Q:1"}}]}}"#,
        settings.authorization,
        settings.api_key_header,
        settings.query_param,
        settings.strip,
        settings.context_headers,
        crate::hashing::hex(&credential_hash(KEY)),
    );
    Rc::new(Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{json}")))
}

fn token() -> String {
    let claims = serde_json::json!({"iss": "https://km", "sub": "alice", "client_id": "cid1", "exp": NOW + 3600});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// A query pair as the request spells it, and the separator before it (`&` or `;`).
#[derive(Clone, Debug)]
struct Pair {
    separator: char,
    text: String,
}

#[derive(Clone, Debug)]
struct Request {
    api: &'static str,
    resource: &'static str,
    query: Vec<Pair>,
    headers: Vec<(String, String)>,
}

/// The parameter's name with one letter percent-encoded (either hex case).
fn escaped(name: &str, rng: &mut Rng) -> String {
    let at = rng.below(name.len());
    let byte = name.as_bytes()[at];
    let hex = if rng.chance(2) { format!("%{byte:02X}") } else { format!("%{byte:02x}") };
    format!("{}{hex}{}", &name[..at], &name[at + 1..])
}

fn random_request(rng: &mut Rng, settings: &Settings, bearer: &str) -> Request {
    let (api, resource) = *rng.pick(&[
        ("p", "/menu"),
        ("p", "/menu"),
        ("p", "/open"),
        ("p", "/oauth"),
        ("p", "/key"),
        ("q", "/menu"),
        ("q", "/open"),
    ]);
    let param = settings.query_param;
    let mut query = Vec::new();
    for _ in 0..rng.below(5) {
        let text = match rng.below(12) {
            0 | 1 => format!("{param}={KEY}"),
            2 => format!("{}={KEY}", escaped(param, rng)),
            3 => format!("{param}="),
            4 => param.to_string(),
            5 => format!("{param}=wrong-key"),
            6 => format!("{}=decoy", param.to_ascii_uppercase()),
            7 => format!("{param}2=decoy"),
            8 => "access_token=at-decoy".to_string(),
            9 => "x=1".to_string(),
            10 => "q=a%20b".to_string(),
            _ => format!("page={}", rng.below(100)),
        };
        query.push(Pair { separator: if rng.chance(4) { ';' } else { '&' }, text });
    }
    // A fragment ends the target (Envoy strips or refuses it before filters; routing drops it):
    // only ever last, where it names nothing the credential is read from.
    if rng.chance(6) {
        query.push(Pair { separator: '&', text: "f=1#frag&apikey=in-fragment".into() });
    }
    let mut headers = Vec::new();
    match rng.below(6) {
        0 | 1 => headers.push((settings.authorization.to_string(), format!("Bearer {bearer}"))),
        2 => headers.push((settings.authorization.to_string(), "Bearer not-a-valid-token".into())),
        3 => headers.push((settings.authorization.to_string(), "Basic dXNlcjpwYXNz".into())),
        _ => {}
    }
    match rng.below(5) {
        0 | 1 => headers.push((settings.api_key_header.to_string(), KEY.into())),
        2 => headers.push((settings.api_key_header.to_string(), "wrong-key".into())),
        _ => {}
    }
    // Forged identity headers, in the spellings Envoy lets through (it lowercases names).
    for name in ["x-jwt-assertion", "x_jwt_assertion", "x-backend-jwt", "x_backend_jwt"] {
        if rng.chance(3) {
            headers.push((name.to_string(), "forged.jwt.".into()));
        }
    }
    for name in ["x-apim-tier", "x_apim_application_id"] {
        if rng.chance(3) {
            headers.push((name.to_string(), "forged".into()));
        }
    }
    headers.push(("x-other".into(), "kept".into()));
    Request { api, resource, query, headers }
}

fn path_of(request: &Request) -> String {
    let mut path = format!("/{}/1{}", request.api, request.resource);
    for (n, pair) in request.query.iter().enumerate() {
        path.push(if n == 0 { '?' } else { pair.separator });
        path.push_str(&pair.text);
    }
    path
}

/// A query name percent-decoded (`+` a space), as RFC 3986 and forms read it.
fn decode(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (byte, ..) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn named(pair: &Pair, param: &str) -> bool {
    decode(pair.text.split('=').next().unwrap_or_default()) == param
}

/// What the model expects.
#[derive(Debug, PartialEq)]
enum Outcome {
    Refused,
    /// Forwarded, authorized (a secured resource) or not (an open one).
    Forwarded {
        authorized: bool,
    },
}

/// Which credential the request presents, as README.md's "Key validation" and CONFIG.md describe
/// it: a bearer token in the authorization header where OAuth2 is accepted, else (or when the
/// token is refused) the API key header, else (on an API with `api_key_in_query`) the first
/// non-empty query value of the key's parameter. Another scheme (`Basic`) is no credential.
fn model_outcome(request: &Request, settings: &Settings, bearer: &str) -> Outcome {
    let security: &[&str] = match (request.api, request.resource) {
        (_, "/open") => return Outcome::Forwarded { authorized: false },
        ("p", "/oauth") | ("q", _) => &["oauth2"],
        ("p", "/key") => &["api_key"],
        _ => &["oauth2", "api_key"],
    };
    let header = |name: &str| request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let valid = |ok: bool| if ok { Outcome::Forwarded { authorized: true } } else { Outcome::Refused };
    if security.contains(&"oauth2") {
        // A refused token gives way to the API key beside it (WSO2's authenticator chain).
        let token = header(settings.authorization).and_then(|v| v.strip_prefix("Bearer "));
        if token == Some(bearer) {
            return valid(true);
        }
        if token.is_some() && !security.contains(&"api_key") {
            return Outcome::Refused;
        }
    }
    if security.contains(&"api_key") {
        if let Some(key) = header(settings.api_key_header) {
            return valid(key == KEY);
        }
        if request.api == "p" {
            let value =
                request.query.iter().filter(|pair| named(pair, settings.query_param)).find_map(|pair| {
                    pair.text.split_once('=').map(|(_, value)| value).filter(|value| !value.is_empty())
                });
            if let Some(value) = value {
                return valid(decode(value) == KEY);
            }
        }
    }
    Outcome::Refused
}

/// The upstream `:path`: the resource's path (the context and version go), and the query without
/// the API key's pairs on an API that takes API keys when `strip` is on; the other pairs keep
/// their order, spelling and the separator before them (the first after `?`).
fn model_path(request: &Request, settings: &Settings) -> String {
    let strips = settings.strip && request.api == "p";
    let kept: Vec<&Pair> = request.query.iter().filter(|pair| !(strips && named(pair, settings.query_param))).collect();
    let mut path = request.resource.to_string();
    for (n, pair) in kept.iter().enumerate() {
        path.push(if n == 0 { '?' } else { pair.separator });
        path.push_str(&pair.text);
    }
    // The fragment, and all after it, goes.
    path.split('#').next().unwrap_or_default().to_string()
}

fn jwt_issuer(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(String::from)
}

#[test]
fn what_reaches_the_backend_is_what_wso2_sends_and_never_a_credential_or_a_forged_identity() {
    let seed = std::env::var("APIM_UPSTREAM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x000b_5ea3_u64);
    let mut rng = Rng::new(seed);
    let bearer = token();
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in 0..CASES {
        let settings = random_settings(&mut rng);
        let config = config_of(&settings);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        for n in 0..REQUESTS {
            let request = random_request(&mut rng, &settings, &bearer);
            let path = path_of(&request);
            let mut pairs: Vec<(&str, &str)> = vec![(":method", "GET"), (":path", &path)];
            pairs.extend(request.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut host = FakeHost { now: NOW, ..FakeHost::request(&pairs) };
            let flow = Stream::new(Rc::clone(&config), Rc::clone(&worker)).on_request_headers(&mut host, true);
            let context =
                format!("seed {seed} (APIM_UPSTREAM_SEED) case {case} request {n}: {settings:?} {path} {request:?}");
            let mut check = |ok: bool, what: &str| {
                if !ok && failures.len() < 20 {
                    failures.push(format!("{what}: {context}\n  upstream {:?}", host_view(&host)));
                }
            };
            let expected = model_outcome(&request, &settings, &bearer);
            let Outcome::Forwarded { authorized } = expected else {
                check(flow == Flow::Answered && host.sent.is_some(), "refused");
                *classes.entry("refused").or_default() += 1;
                continue;
            };
            check(flow == Flow::Continue && host.sent.is_none(), "forwarded");
            if flow != Flow::Continue {
                continue;
            }
            let upstream = |name: &str| host.request.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
            check(upstream(":path").as_deref() == Some(model_path(&request, &settings).as_str()), ":path");
            check(upstream("x-other").as_deref() == Some("kept"), "other headers pass");
            // Credential headers: removed when `strip` (the authorization header whatever its
            // scheme, as WSO2's contract has it), untouched otherwise.
            for name in [settings.authorization, settings.api_key_header] {
                let sent = request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let want = if settings.strip { None } else { sent };
                check(upstream(name) == want, "credential header");
            }
            // No credential the API takes, anywhere upstream, when `strip` is on.
            if settings.strip {
                let leaked = host.request.iter().any(|(name, value)| {
                    let value = String::from_utf8_lossy(value);
                    (value.contains(KEY) && !(request.api == "q" && name == ":path")) || value.contains(&bearer)
                });
                check(!leaked, "a credential reached the backend");
            }
            // The backend JWT: the filter's alone when on (a client's copy removed in any
            // spelling, open resources too); a client's copy untouched when off, as WSO2's
            // gateway writes the header only when it issues one.
            let own = settings.backend_jwt.map(str::to_ascii_lowercase);
            for name in ["x-jwt-assertion", "x_jwt_assertion", "x-backend-jwt", "x_backend_jwt"] {
                let sent = request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let spelled_as_own = own.as_deref().is_some_and(|own| own == name.replace('_', "-"));
                let got = upstream(name);
                let ok = match (spelled_as_own, own.as_deref() == Some(name)) {
                    (true, true) if authorized => {
                        got.as_deref().and_then(jwt_issuer).as_deref() == Some("wso2.org/products/am")
                    }
                    (true, _) => got.is_none(),
                    (false, _) => got == sent,
                };
                check(ok, "backend JWT header");
            }
            // The auth context: the filter's values on an authorized request, never a client's.
            let tier = upstream("x-apim-tier");
            let app = upstream("x-apim-application-id");
            check(!host.request.contains_key("x_apim_application_id"), "context header in `_` spelling");
            if authorized && settings.context_headers {
                check(app.as_deref() == Some("app-1") && tier.as_deref() != Some("forged"), "auth context");
            } else {
                check(app.is_none() && tier.is_none(), "no auth context");
            }
            let class = match (authorized, request.resource) {
                (false, _) => "forwarded open",
                (true, _)
                    if request.headers.iter().any(|(n, v)| n == settings.authorization && v.contains(&bearer)) =>
                {
                    "forwarded bearer"
                }
                (true, _) if request.headers.iter().any(|(n, _)| n == settings.api_key_header) => {
                    "forwarded key header"
                }
                (true, _) => "forwarded key query",
            };
            *classes.entry(class).or_default() += 1;
            let forged_jwt = request.headers.iter().any(|(n, _)| n.contains("jwt") || n.contains("backend"));
            if forged_jwt {
                *classes
                    .entry(if settings.backend_jwt.is_some() { "forged jwt, on" } else { "forged jwt, off" })
                    .or_default() += 1;
            }
            if !settings.strip {
                *classes.entry("strip off").or_default() += 1;
            }
            if settings.strip && request.api == "p" && request.query.iter().any(|p| named(p, settings.query_param)) {
                let stripped = model_path(&request, &settings);
                *classes
                    .entry(if stripped.contains('?') { "key pairs stripped, others kept" } else { "query emptied" })
                    .or_default() += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    for class in [
        "refused",
        "forwarded open",
        "forwarded bearer",
        "forwarded key header",
        "forwarded key query",
        "forged jwt, on",
        "forged jwt, off",
        "strip off",
        "key pairs stripped, others kept",
        "query emptied",
    ] {
        assert!(
            classes.get(class).copied().unwrap_or(0) > 0,
            "seed {seed}: class `{class}` never occurred: {classes:?}"
        );
    }
}

/// The upstream request, credentials shortened, for failure messages.
fn host_view(host: &FakeHost) -> BTreeMap<String, String> {
    host.request.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).chars().take(60).collect())).collect()
}
