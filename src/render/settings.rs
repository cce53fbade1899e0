//! Fault rendering's part of the configuration, compiled: the format, the overrides resolved by
//! id, code and code family, CORS, the custom template, and what the 900902 description names.

use std::collections::HashMap;

use crate::catalogue::{self, CodePattern, FaultId};
use crate::schema::checks::check_header_value;
use crate::schema::{ConfigError, ErrorFormat, RawCredentials, RawErrors, RawOverride};

/// An override of one catalogue entry. Unset fields keep the catalogue's value.
#[derive(Clone, Debug, Default)]
pub struct Override {
    pub code: Option<u32>,
    pub status: Option<u16>,
    pub message: Option<String>,
    pub description: Option<String>,
    pub grpc_status: Option<u8>,
}

impl From<RawOverride> for Override {
    fn from(raw: RawOverride) -> Self {
        Override {
            code: raw.code,
            status: raw.status,
            message: raw.message,
            description: raw.description,
            grpc_status: raw.grpc_status,
        }
    }
}

/// The gateway's CORS policy: its headers on faults, preflights and the backend's answers.
#[derive(Clone, Debug)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_s: Option<u32>,
    /// The values of the headers that list, joined once at load: every response of an API carries
    /// them ([`Cors::headers`]).
    values: CorsValues,
}

#[derive(Clone, Debug)]
struct CorsValues {
    methods: String,
    headers: String,
    expose: String,
    max_age: Option<String>,
}

/// The CORS headers of a response, which the gateway's CORS settings decide (in the order of
/// [`Cors::headers`]).
pub const CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-allow-credentials",
    "access-control-max-age",
];

/// A response's CORS headers: each of [`CORS_HEADERS`] with its value, `None` when the response
/// carries none of it; and whether its answer depends on the request's `Origin` (`Vary`).
pub struct CorsHeaders<'a> {
    pub values: [(&'static str, Option<&'a str>); 6],
    pub varies_on_origin: bool,
}

impl Cors {
    pub fn new(raw: crate::schema::RawCors) -> Cors {
        let max_age = raw.max_age_s.map(|max_age| max_age.to_string());
        let values = CorsValues {
            methods: raw.allow_methods.join(","),
            headers: raw.allow_headers.join(","),
            expose: raw.expose_headers.join(","),
            max_age,
        };
        Cors {
            allow_origins: raw.allow_origins,
            allow_methods: raw.allow_methods,
            allow_headers: raw.allow_headers,
            expose_headers: raw.expose_headers,
            allow_credentials: raw.allow_credentials,
            max_age_s: raw.max_age_s,
            values,
        }
    }

    /// The CORS headers of a response to a request from `origin` (a preflight's adds `Max-Age`),
    /// without an allocation: every response of an API carries them. `resource_methods` is the
    /// `Access-Control-Allow-Methods` of a request that matched a resource (its template's methods
    /// this policy allows, joined when the routing table was compiled: API-M's `CORSRequestHandler`
    /// sends the matched resource's); any other request's lists every configured method. An origin
    /// the policy does not allow gets none; any answer but one to every origin (`*`) varies on
    /// `Origin`.
    pub fn headers<'a>(
        &'a self,
        origin: Option<&'a str>,
        preflight: bool,
        resource_methods: Option<&'a str>,
    ) -> CorsHeaders<'a> {
        let wildcard = self.allow_origins.iter().any(|allowed| allowed == "*");
        let allowed = match wildcard {
            true => Some("*"),
            false => origin.filter(|origin| self.allow_origins.iter().any(|allowed| allowed == origin)),
        };
        let listed = |value: &'a str| allowed.is_some().then_some(value);
        let [origin_name, methods, headers, expose, credentials, max_age] = CORS_HEADERS;
        let values = [
            (origin_name, allowed),
            (methods, listed(resource_methods.unwrap_or(&self.values.methods))),
            (headers, listed(&self.values.headers)),
            (expose, listed(&self.values.expose).filter(|_| !self.expose_headers.is_empty())),
            (credentials, listed("true").filter(|_| self.allow_credentials)),
            (max_age, self.values.max_age.as_deref().and_then(listed).filter(|_| preflight)),
        ];
        CorsHeaders { values, varies_on_origin: !wildcard }
    }

    /// Whether a method (a resource's, compared case-sensitively) is one the answer allows.
    pub fn allows_method(&self, method: &str) -> bool {
        self.allow_methods.iter().any(|allowed| allowed == "*" || allowed == method)
    }
}

/// A custom fault body.
#[derive(Clone, Debug)]
pub struct Template {
    pub content_type: String,
    pub body: String,
}

/// Fault rendering settings with overrides resolved.
#[derive(Debug)]
pub struct ErrorSettings {
    pub format: ErrorFormat,
    pub overrides_by_code: HashMap<u32, Override>,
    pub overrides_by_id: HashMap<FaultId, Override>,
    /// Overrides of code families (`9008xx`), broadest first.
    pub overrides_by_pattern: Vec<(CodePattern, Override)>,
    pub cors: Option<Cors>,
    pub kanali_docs_url: String,
    pub template: Option<Template>,
    pub realm: String,
    /// `credentials.authorization_header`, for the 900902 description.
    pub authorization_header: String,
    /// `credentials.api_key_header`, for the 900902 description.
    pub api_key_header: String,
}

impl Default for ErrorSettings {
    fn default() -> Self {
        let raw = RawErrors::default();
        let credentials = RawCredentials::default();
        ErrorSettings {
            format: raw.format,
            overrides_by_code: HashMap::new(),
            overrides_by_id: HashMap::new(),
            overrides_by_pattern: Vec::new(),
            cors: None,
            kanali_docs_url: raw.kanali_docs_url,
            template: None,
            realm: credentials.realm,
            authorization_header: credentials.authorization_header,
            api_key_header: credentials.api_key_header,
        }
    }
}

/// Two keys of `errors.overrides` for one code or family (`900901` and `0900901`, `9008xx` and
/// `9008XX`): one would silently win, by the keys' order.
const SAME_ENTRY: &str = "names the same code or family as another key: write each once";

/// The statuses whose responses carry no content (RFC 9110 15.3.5, 15.3.6, 15.4.5): a fault sent
/// with one would break the connection (HTTP/2 resets the stream; an HTTP/1.1 client reads the
/// body as the next response).
const NO_CONTENT_STATUSES: [u16; 3] = [204, 205, 304];

impl ErrorSettings {
    /// Checks and compiles fault rendering; the credential headers name themselves in 900902.
    pub fn compile(raw: RawErrors, credentials: &RawCredentials) -> Result<ErrorSettings, ConfigError> {
        let mut overrides_by_code = HashMap::new();
        let mut overrides_by_id = HashMap::new();
        let mut overrides_by_pattern = Vec::new();
        for (key, value) in raw.overrides {
            let field = format!("errors.overrides.{key}");
            if let Some(status) = value.status {
                if !(200..=599).contains(&status) {
                    return Err(ConfigError::new(
                        format!("{field}.status"),
                        format!("status {status} is not an HTTP status from 200 to 599"),
                    ));
                }
                if NO_CONTENT_STATUSES.contains(&status) {
                    return Err(ConfigError::new(
                        format!("{field}.status"),
                        format!("a {status} response carries no content, and a fault is its body"),
                    ));
                }
            }
            if value.grpc_status.is_some_and(|status| !(1..=16).contains(&status)) {
                return Err(ConfigError::new(
                    format!("{field}.grpc_status"),
                    "a gRPC status from 1 to 16 (0 is OK, and a fault is never OK)",
                ));
            }
            for text in [&value.message, &value.description].into_iter().flatten() {
                if text.len() > 4096 {
                    return Err(ConfigError::new(field.clone(), "message and description are limited to 4096 bytes"));
                }
            }
            if let Ok(code) = key.parse::<u32>() {
                if !catalogue::is_known_code(code) {
                    return Err(ConfigError::new(field, format!("{code} is not a code of the catalogue")));
                }
                if overrides_by_code.insert(code, Override::from(value)).is_some() {
                    return Err(ConfigError::new(field, SAME_ENTRY));
                }
            } else if let Some(id) = catalogue::by_id(&key) {
                overrides_by_id.insert(id, Override::from(value));
            } else if let Some(pattern) = catalogue::CodePattern::parse(&key) {
                if !catalogue::known_codes().any(|code| pattern.matches(code)) {
                    return Err(ConfigError::new(field, format!("`{key}` matches no code of the catalogue")));
                }
                if overrides_by_pattern.iter().any(|(other, _)| *other == pattern) {
                    return Err(ConfigError::new(field, SAME_ENTRY));
                }
                overrides_by_pattern.push((pattern, Override::from(value)));
            } else {
                return Err(ConfigError::new(
                    field,
                    format!("`{key}` is neither a code, a code family (`9008xx`) nor an id of the catalogue"),
                ));
            }
        }
        if let Some(cors) = &raw.cors {
            if cors.allow_origins.is_empty() {
                return Err(ConfigError::new("errors.cors.allow_origins", "must list at least one origin"));
            }
            if cors.allow_credentials && cors.allow_origins.iter().any(|origin| origin == "*") {
                return Err(ConfigError::new(
                    "errors.cors.allow_credentials",
                    "cannot be true when allow_origins contains \"*\" (browsers refuse it)",
                ));
            }
            let lists = [
                ("allow_origins", &cors.allow_origins),
                ("allow_methods", &cors.allow_methods),
                ("allow_headers", &cors.allow_headers),
                ("expose_headers", &cors.expose_headers),
            ];
            for (name, list) in lists {
                for (index, value) in list.iter().enumerate() {
                    let field = format!("errors.cors.{name}[{index}]");
                    check_header_value(&field, value)?;
                    if value.trim().is_empty() || value.contains(',') {
                        return Err(ConfigError::new(field, "must be one non-empty value without commas"));
                    }
                    if name == "allow_methods" && !is_cors_method(value) {
                        return Err(ConfigError::new(
                            field,
                            format!(
                                "`{value}` is no method: methods are case-sensitive, write them as requests do (`GET`)"
                            ),
                        ));
                    }
                    if name == "allow_origins" && !is_origin(value) {
                        return Err(ConfigError::new(
                            field,
                            format!(
                                "`{value}` is no origin a browser sends: write `scheme://host[:port]` in lowercase, \
                                 the host in ASCII (punycode), without the scheme's default port, a path or a trailing \
                                 `/` (or `*`)"
                            ),
                        ));
                    }
                }
            }
        }
        check_header_value("errors.kanali_docs_url", &raw.kanali_docs_url)?;
        match (&raw.format, &raw.template) {
            (ErrorFormat::Template, None) => {
                return Err(ConfigError::new("errors.template", "is required when errors.format is `template`"));
            }
            (_, Some(template)) => {
                if template.body.is_empty() {
                    return Err(ConfigError::new("errors.template.body", "must not be empty"));
                }
                check_header_value("errors.template.content_type", &template.content_type)?;
                if template.content_type.trim().is_empty() {
                    return Err(ConfigError::new("errors.template.content_type", "must not be empty"));
                }
            }
            (_, None) => {}
        }
        // Broadest first: the renderer applies them in order, so the most specific wins. Equally
        // specific patterns keep their order. Sorted as packed numbers, (specificity, position),
        // with the sort of the directory's indexes: a stable sort of the pairs was 6 KB of .wasm.
        let mut order: Vec<u128> = overrides_by_pattern
            .iter()
            .enumerate()
            .map(|(position, (pattern, _))| (pattern.specificity() as u128) << 64 | position as u128)
            .collect();
        order.sort_unstable();
        let mut unsorted: Vec<_> = overrides_by_pattern.into_iter().map(Some).collect();
        let overrides_by_pattern: Vec<(CodePattern, Override)> = order
            .iter()
            .filter_map(|packed| unsorted.get_mut(*packed as u64 as usize).and_then(Option::take))
            .collect();
        Ok(ErrorSettings {
            format: raw.format,
            overrides_by_code,
            overrides_by_id,
            overrides_by_pattern,
            cors: raw.cors.map(Cors::new),
            kanali_docs_url: raw.kanali_docs_url,
            template: raw
                .template
                .map(|template| Template { content_type: template.content_type, body: template.body }),
            realm: credentials.realm.clone(),
            authorization_header: credentials.authorization_header.clone(),
            api_key_header: credentials.api_key_header.clone(),
        })
    }
}

/// An allowed origin as browsers send `Origin` (RFC 6454's serialization: a lowercase scheme and
/// an ASCII host, punycode for a Unicode one, a port only when it is not the scheme's default, no
/// path), `*`, or `null`. Origins are compared exactly, so any other spelling
/// (`https://app.example/`, `https://App.example`, `https://app.example:443`,
/// `https://bücher.example`) would match no request.
fn is_origin(value: &str) -> bool {
    if value == "*" || value == "null" {
        return true;
    }
    let Some((scheme, authority)) = value.split_once("://") else {
        return false;
    };
    // The port follows the last `:` outside an IPv6 literal (`[::1]:8080`).
    let (host, port) = match authority.rsplit_once(':').filter(|(_, port)| !port.contains(']')) {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let default_port = match scheme {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        _ => None,
    };
    let port_as_sent = port.is_none_or(|port| {
        port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok()
            && !port.starts_with('0')
            && Some(port) != default_port
    });
    !scheme.is_empty()
        && !host.is_empty()
        && port_as_sent
        && !authority.contains(['/', '?', '#', '@'])
        && value.is_ascii()
        && !value.chars().any(|c| c.is_ascii_uppercase() || c.is_ascii_whitespace())
}

/// A method a CORS answer may allow: `*` (Fetch's wildcard), or a method as requests carry it,
/// an RFC 9110 token compared case-sensitively (`GET`, never `get`, which no resource's method
/// or browser's preflight for one would match).
fn is_cors_method(value: &str) -> bool {
    value == "*"
        || (!value.is_empty()
            && value.bytes().all(|byte| {
                (byte.is_ascii_alphanumeric() && !byte.is_ascii_lowercase()) || b"!#$%&'*+-.^_`|~".contains(&byte)
            }))
}
