//! A seeded, model-based differential campaign over routing: random APIs (contexts with and
//! without `{version}`, nested contexts, default versions, tenant contexts `/t/<domain>/...`,
//! lifecycles) with random resources (literals, parameters, a final `*`, overlapping templates,
//! every method, open and secured), and random requests (matching and near-matching paths,
//! trailing and doubled slashes, dot segments, percent-encoding of every kind, `;` parameters,
//! queries, fragments, non-ASCII, long paths, methods in odd case), compared with a model of the
//! rules README.md, docs/CONFIG.md and the `//!` docs of src/routing/matcher.rs state (never the
//! filter's normalizer, table or matcher). `ROUTING_SEED=<n>` runs one seed and prints its cases.

use super::claims_model::Rng;
use super::*;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
const ODD_METHODS: [&str; 5] = ["get", "Get", "PROPFIND", "TRACE", "gEt"];
const CONTEXTS: [&str; 10] = [
    "/a",
    "/a/b",
    "/shop",
    "/shop/api",
    "/t/wso2.com/shop",
    "/t/example.org/a",
    "/{version}/a",
    "/a/{version}/b",
    "/m\u{fc}nchen",
    "/A",
];
const VERSIONS: [&str; 4] = ["1", "1.0.0", "v2", "b"];
const LITERALS: [&str; 7] = ["x", "menu", "order", "a", "b", "latest", "caf\u{e9}"];
const VALUES: [&str; 6] = ["42", "x", "menu", "caf%C3%A9", "a%20b", "latest"];

/// One resource as configured.
#[derive(Clone, Debug)]
struct Res {
    method: &'static str,
    /// Template segments: a literal, `{p<i>}`, or `*` (last only).
    segments: Vec<String>,
    open: bool,
}

impl Res {
    fn path(&self) -> String {
        if self.segments.is_empty() {
            "/".to_string()
        } else {
            self.segments.iter().map(|segment| format!("/{segment}")).collect()
        }
    }
    /// The template with parameter names erased: two resources of one method and shape collide.
    fn shape(&self) -> String {
        let erased: Vec<&str> =
            self.segments.iter().map(|s| if s.starts_with('{') { "{}" } else { s.as_str() }).collect();
        erased.join("/")
    }
}

/// One API as configured.
#[derive(Clone, Debug)]
struct ModelApi {
    name: String,
    context: &'static str,
    version: &'static str,
    default_version: bool,
    lifecycle: &'static str,
    backend_path: &'static str,
    resources: Vec<Res>,
}

impl ModelApi {
    /// The base paths it is served on (docs/CONFIG.md `context`, `version`, `default_version`,
    /// `lifecycle`: CREATED and RETIRED are not deployed).
    fn bases(&self) -> Vec<String> {
        if matches!(self.lifecycle, "CREATED" | "RETIRED") {
            return Vec::new();
        }
        let mut bases = Vec::new();
        if self.context.contains("{version}") {
            bases.push(self.context.replace("{version}", self.version));
            if self.default_version {
                bases.push(self.context.replace("/{version}", ""));
            }
        } else {
            bases.push(format!("{}/{}", self.context, self.version));
            if self.default_version {
                bases.push(self.context.to_string());
            }
        }
        bases
    }
}

struct Setup {
    apis: Vec<ModelApi>,
    pass_through: bool,
}

fn setup(rng: &mut Rng) -> Setup {
    let mut apis: Vec<ModelApi> = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for index in 0..1 + rng.below(5) {
        let context = *rng.pick(&CONTEXTS);
        let version = *rng.pick(&VERSIONS);
        // The configuration refuses a context that ends with its own version.
        if !context.contains("{version}") && context.rsplit('/').next() == Some(version) {
            continue;
        }
        let lifecycle = *rng.pick(&["PUBLISHED", "PUBLISHED", "PUBLISHED", "DEPRECATED", "BLOCKED", "CREATED"]);
        let mut api = ModelApi {
            name: format!("Api{index}"),
            context,
            version,
            default_version: rng.chance(40),
            lifecycle,
            backend_path: ["", "", "/backend", "/svc/v1"][rng.below(4)],
            resources: Vec::new(),
        };
        let bases = api.bases();
        if bases.iter().any(|base| taken.contains(base)) {
            continue;
        }
        let own_base = if context.contains("{version}") {
            context.replace("{version}", version)
        } else {
            format!("{context}/{version}")
        };
        for _ in 0..rng.below(9) {
            let mut segments = Vec::new();
            for position in 0..rng.below(4) {
                segments.push(match rng.below(10) {
                    0..=5 => rng.pick(&LITERALS).to_string(),
                    6..=8 => format!("{{p{position}}}"),
                    _ => "*".to_string(),
                });
                if segments.last().is_some_and(|s| s == "*") {
                    break;
                }
            }
            let res = Res { method: METHODS[rng.below(METHODS.len())], segments, open: rng.chance(60) };
            let path = res.path();
            let from_root = path.strip_prefix(&own_base).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            let duplicate = api.resources.iter().any(|r| r.method == res.method && r.shape() == res.shape());
            if !from_root && !duplicate {
                api.resources.push(res);
            }
        }
        taken.extend(bases);
        apis.push(api);
    }
    Setup { apis, pass_through: rng.chance(20) }
}

fn config_json(setup: &Setup) -> String {
    let apis: Vec<serde_json::Value> = setup
        .apis
        .iter()
        .map(|api| {
            let resources: Vec<serde_json::Value> = api
                .resources
                .iter()
                .map(|res| {
                    let mut value = serde_json::json!({"method": res.method, "path": res.path()});
                    if res.open {
                        value["security"] = serde_json::json!([]);
                    }
                    value
                })
                .collect();
            serde_json::json!({
                "name": api.name, "context": api.context, "version": api.version,
                "default_version": api.default_version, "lifecycle": api.lifecycle,
                "backend_path": api.backend_path,
                "endpoints": {"production": format!("cluster-{}", api.name)},
                "resources": resources,
            })
        })
        .collect();
    serde_json::json!({
        "unmatched": if setup.pass_through { "pass_through" } else { "fault" },
        "key_managers": [{"name": "km", "issuer": "https://km",
            "introspection": {"cluster": "km", "client_id": "gateway", "client_secret": "gateway-secret"}}],
        "apis": apis,
    })
    .to_string()
}

/// Percent-encodes one byte, in upper or lower hex.
fn escape(byte: u8, upper: bool) -> String {
    if upper {
        format!("%{byte:02X}")
    } else {
        format!("%{byte:02x}")
    }
}

/// A segment's spelling: as it is, some bytes escaped, a case flipped, or a hostile twist.
fn spell(rng: &mut Rng, segment: &str) -> String {
    let mut out = String::new();
    match rng.below(40) {
        0..=23 => out.push_str(segment),
        24..=28 => {
            for byte in segment.bytes() {
                if rng.chance(50) || !byte.is_ascii() {
                    out.push_str(&escape(byte, rng.chance(50)));
                } else {
                    out.push(char::from(byte));
                }
            }
        }
        29 => out.push_str(&segment.to_uppercase()),
        30 => out.push_str(&format!("{segment};jsessionid=1")),
        31 => out.push_str(&format!("{segment};")),
        32 => out.push_str(&format!("{segment}%3B{}", rng.pick(&["x", "..", ""]))),
        33 => out.push_str(&format!("{segment}{}", rng.pick(&["%2F", "%2f", "%5C", "%5c", "%00", "\\"]))),
        34 => out.push_str(&format!("{segment}{}", rng.pick(&["%zz", "%4", "%", "%FF", "%C3", "%c0%ae"]))),
        35 => out.push_str(&format!("{segment};{}", rng.pick(&["%2F..", "x=%00", "%zz", "..", "%2e%2e", "a=%5C"]))),
        36 => out.push_str(&format!("{segment}\u{e9}")),
        37 => out.push_str(&format!("{segment}x")),
        _ => out.push_str(&segment.replace(|c: char| c.is_ascii_lowercase(), "%41")),
    }
    out
}

/// A random request path and method aimed at (or near) the configured APIs.
fn request(rng: &mut Rng, setup: &Setup) -> (String, String) {
    let mut segments: Vec<String> = Vec::new();
    let target = if setup.apis.is_empty() || rng.chance(10) { None } else { Some(rng.pick(&setup.apis).clone()) };
    let mut method = METHODS[rng.below(METHODS.len())].to_string();
    match &target {
        Some(api) => {
            let bases = api.bases();
            let base = if bases.is_empty() || rng.chance(5) {
                format!("{}/{}", api.context, api.version)
            } else {
                rng.pick(&bases).clone()
            };
            segments.extend(base.split('/').filter(|s| !s.is_empty()).map(str::to_string));
            if rng.chance(5) {
                segments.pop();
            }
            if !api.resources.is_empty() && rng.chance(80) {
                let res = rng.pick(&api.resources).clone();
                if rng.chance(70) {
                    method = res.method.to_string();
                }
                for segment in &res.segments {
                    if segment == "*" {
                        for _ in 0..rng.below(4) {
                            segments.push(rng.pick(&VALUES).to_string());
                        }
                    } else if segment.starts_with('{') {
                        segments.push(rng.pick(&VALUES).to_string());
                    } else {
                        segments.push(segment.clone());
                    }
                }
                if rng.chance(10) {
                    segments.push(rng.pick(&LITERALS).to_string());
                }
            } else {
                for _ in 0..rng.below(4) {
                    segments.push(rng.pick(&LITERALS).to_string());
                }
            }
        }
        None => {
            for _ in 0..1 + rng.below(4) {
                segments.push(rng.pick(&["a", "b", "shop", "t", "1", "v2", "nowhere", "x"]).to_string());
            }
        }
    }
    if rng.chance(3) {
        for _ in 0..200 + rng.below(200) {
            segments.push(rng.pick(&LITERALS).to_string());
        }
    }
    let mut path = String::new();
    for segment in &segments {
        path.push('/');
        if rng.chance(4) {
            path.push('/');
        }
        if rng.chance(3) {
            let dots = [".", "..", "%2e", "%2E%2e", ".%2E", "..;x", ";x", "./", "..%3B"];
            path.push_str(dots[rng.below(dots.len())]);
            path.push('/');
        }
        path.push_str(&spell(rng, segment));
    }
    if path.is_empty() || rng.chance(15) {
        path.push('/');
    }
    match rng.below(12) {
        0 => path.push_str("?a=b"),
        1 => path.push_str("?x=/../admin&y=%2F"),
        2 => path.push('?'),
        3 => path.push_str("#frag/../x"),
        4 => path.push_str("?q=1#f?g"),
        _ => {}
    }
    if rng.chance(2) {
        path = path.trim_start_matches('/').to_string();
    }
    if rng.chance(5) {
        method = rng.pick(&ODD_METHODS).to_string();
    }
    (method, path)
}

/// A raw segment percent-decoded, or `None` when the matcher docs refuse it (malformed escape,
/// encoded `/` or `\`, NUL, invalid UTF-8).
fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = raw.get(at + 1..at + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte == b'/' || byte == b'\\' || byte == 0 {
                return None;
            }
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// Forwarded: API name, resource template, cluster, upstream `:path`.
    Forward {
        api: String,
        resource: String,
        cluster: String,
        path: String,
    },
    /// A fault: code, status, the API and resource it was refused under (`""` for none).
    Fault {
        code: u32,
        status: u16,
        api: String,
        resource: String,
    },
    PassThrough,
}

fn model(setup: &Setup, method: &str, path: &str) -> Expect {
    let fault = |code, status, api: &str, resource: &str| Expect::Fault {
        code,
        status,
        api: api.to_string(),
        resource: resource.to_string(),
    };
    // The query (from `?`) and fragment (from `#`) are not part of the path.
    let cut = path.find(['?', '#']).unwrap_or(path.len());
    let (raw, rest) = path.split_at(cut);
    let query = rest.split('#').next().and_then(|q| q.strip_prefix('?'));
    if !raw.starts_with('/') || raw.contains('\\') || raw.contains('\0') {
        return fault(900906, 403, "", "");
    }
    // Segments: decoded names without `;` parameters; empty ones skipped; each with the raw
    // offset just past it.
    let mut segments: Vec<(String, usize)> = Vec::new();
    let mut offset = 0;
    for piece in raw.split('/') {
        let end = offset + piece.len();
        offset = end + 1;
        let (name, params) = piece.split_once(';').unwrap_or((piece, ""));
        if !params.is_empty() && decode(params).is_none() {
            return fault(900906, 403, "", "");
        }
        if name.is_empty() {
            continue;
        }
        let Some(decoded) = decode(name) else {
            return fault(900906, 403, "", "");
        };
        let stem = decoded.split(';').next().unwrap_or("");
        // Dot segments, and an encoded `;` in a name (`%3B`), are refused (matcher docs).
        if stem == "." || stem == ".." || stem != decoded {
            return fault(900906, 403, "", "");
        }
        segments.push((decoded, end));
    }
    // The API: the deepest base path the path's segments start with.
    let mut chosen: Option<(&ModelApi, usize)> = None;
    for api in &setup.apis {
        for base in api.bases() {
            let base: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
            let fits = base.len() <= segments.len() && base.iter().zip(&segments).all(|(b, (s, _))| b == s);
            if fits && chosen.is_none_or(|(_, depth)| base.len() > depth) {
                chosen = Some((api, base.len()));
            }
        }
    }
    let Some((api, depth)) = chosen else {
        return if setup.pass_through { Expect::PassThrough } else { fault(404, 404, "", "") };
    };
    if api.lifecycle == "BLOCKED" {
        return fault(700700, 503, &api.name, "");
    }
    let below: Vec<&str> = segments[depth..].iter().map(|(s, _)| s.as_str()).collect();
    // Ranks per segment: literal 4, parameter 3; then 2 where the template ends with the path,
    // 1 where a `*` takes the rest: the greatest wins.
    let rank = |res: &Res| -> Option<Vec<u8>> {
        let mut ranks = Vec::new();
        for (index, segment) in res.segments.iter().enumerate() {
            if segment == "*" {
                ranks.push(1);
                return Some(ranks);
            }
            let value = below.get(index)?;
            if segment.starts_with('{') {
                ranks.push(3);
            } else if segment == value {
                ranks.push(4);
            } else {
                return None;
            }
        }
        (below.len() == res.segments.len()).then(|| {
            ranks.push(2);
            ranks
        })
    };
    let best = api
        .resources
        .iter()
        .filter(|res| res.method == method)
        .filter_map(|res| rank(res).map(|ranks| (ranks, res)))
        .max_by(|a, b| a.0.cmp(&b.0));
    let Some((_, res)) = best else {
        return fault(900906, 403, &api.name, "");
    };
    if !res.open {
        return fault(900902, 401, &api.name, &res.path());
    }
    let after = if depth == 0 { raw } else { &raw[segments[depth - 1].1..] };
    let mut upstream = String::new();
    for c in format!("{}{after}", api.backend_path).chars() {
        if !(c == '/' && upstream.ends_with('/')) {
            upstream.push(c);
        }
    }
    if upstream.is_empty() {
        upstream.push('/');
    }
    if let Some(query) = query {
        upstream.push('?');
        upstream.push_str(query);
    }
    Expect::Forward {
        api: api.name.clone(),
        resource: res.path(),
        cluster: format!("cluster-{}", api.name),
        path: upstream,
    }
}

fn prop(host: &FakeHost, name: &str) -> String {
    host.properties.get(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

fn send(config: &Rc<Config>, method: &str, path: &str) -> Expect {
    let mut host = FakeHost::request(&[(":method", method), (":path", path)]);
    let mut stream = stream(Rc::clone(config));
    match stream.on_request_headers(&mut host, true) {
        Flow::Continue if !host.request.contains_key("x-apim-cluster") => Expect::PassThrough,
        Flow::Continue => Expect::Forward {
            api: prop(&host, "apim.api_name"),
            resource: prop(&host, "apim.api_resource"),
            cluster: host.req("x-apim-cluster").to_string(),
            path: host.req(":path").to_string(),
        },
        Flow::Answered => Expect::Fault {
            code: host.counted.first().copied().unwrap_or(0),
            status: host.sent.as_ref().map_or(0, |(status, _, _)| *status),
            api: prop(&host, "apim.api_name"),
            resource: prop(&host, "apim.api_resource"),
        },
        Flow::Waiting => panic!("no call is expected without credentials"),
    }
}

#[test]
fn requests_reach_the_api_and_resource_the_documents_say() {
    let seeds: Vec<u64> = match std::env::var("ROUTING_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (0..SEEDS).collect(),
    };
    let trace = seeds.len() == 1;
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut cases, mut disagreements) = (0, Vec::new());
    for &seed in &seeds {
        let mut rng = Rng(seed);
        let setup = setup(&mut rng);
        let json = config_json(&setup);
        let config = Rc::new(Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{json}")));
        for _ in 0..REQUESTS_PER_SEED {
            let (method, path) = request(&mut rng, &setup);
            let expected = model(&setup, &method, &path);
            let got = send(&config, &method, &path);
            cases += 1;
            let class = match &expected {
                Expect::Forward { .. } => "forward".to_string(),
                Expect::PassThrough => "pass_through".to_string(),
                Expect::Fault { code, resource, .. } if *code == 900906 && resource.is_empty() => {
                    format!(
                        "{code}{}",
                        if matches!(&expected, Expect::Fault { api, .. } if api.is_empty()) {
                            "/refused"
                        } else {
                            "/api"
                        }
                    )
                }
                Expect::Fault { code, .. } => code.to_string(),
            };
            *seen.entry(class).or_default() += 1;
            if trace {
                eprintln!("{method} {path}\n  model {expected:?}\n  filter {got:?}");
            }
            if got != expected {
                disagreements.push(format!("seed {seed}: {method} {path}\n  model  {expected:?}\n  filter {got:?}"));
            }
        }
    }
    if !disagreements.is_empty() {
        let shown: Vec<&String> = disagreements.iter().take(30).collect();
        panic!("{} disagreements (ROUTING_SEED=<n> to trace one seed):\n{shown:#?}", disagreements.len());
    }
    eprintln!("{cases} cases: {seen:?}");
    assert_eq!(cases, seeds.len() * REQUESTS_PER_SEED);
    if !trace {
        // Every decision class is reached, so the model is compared where it matters.
        for class in ["forward", "pass_through", "404", "700700", "900902", "900906/api", "900906/refused"] {
            assert!(seen.get(class).is_some_and(|count| *count >= 20), "{class} reached: {seen:?}");
        }
    }
}

const SEEDS: u64 = 300;
const REQUESTS_PER_SEED: usize = 60;
