//! Request path normalization and resource path templates.
//!
//! What the filter sees is `:path` exactly as Envoy passes it (after Envoy's own `normalize_path`,
//! `merge_slashes` and `path_with_escaped_slashes_action`, when those are on). The rules, chosen so
//! that the policy a request gets is the policy of the resource a backend would serve, and that no
//! spelling of a path can reach a resource under another resource's policy:
//!
//! - The query string (from the first `?`) and any fragment (from `#`) are ignored.
//! - Empty segments are ignored: `//menu`, `/menu/` and `/menu` match alike.
//! - Matrix parameters are ignored: `/menu;jsessionid=1` matches `/menu` (Java backends strip them).
//! - Segments are percent-decoded before matching: `/men%75` matches `/menu`.
//! - Matching is case-sensitive.
//! - Refused outright (never matched, whatever API they name): dot segments `.` and `..` in any
//!   spelling (`%2e`, `..;x`), encoded slashes, backslashes and semicolons (`%2F`, `%5C`, `%3B`:
//!   `/admin%3Bx` is `/admin` to a backend that decodes before it strips `;` parameters), raw backslashes,
//!   NUL bytes, malformed percent-encoding, non-UTF-8 after decoding, and paths that do not
//!   start with `/`. Matrix parameters are checked for the same (they go upstream, and a backend
//!   may decode them).

use std::borrow::Cow;
use std::fmt;

/// Why a request path cannot be matched safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRejection {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `.` or `..` segment, in any spelling.
    DotSegment,
    /// `%2F`, `%5C` or `%3B` (an encoded `/`, `\` or `;` in a segment), or a raw `\`.
    AmbiguousSeparator,
    /// Malformed percent-encoding, a NUL byte or invalid UTF-8.
    BadEncoding,
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            PathRejection::NotAbsolute => "path does not start with /",
            PathRejection::DotSegment => "path contains a dot segment",
            PathRejection::AmbiguousSeparator => "path contains an encoded slash or a backslash",
            PathRejection::BadEncoding => "path has malformed encoding",
        };
        f.write_str(text)
    }
}

/// A request path split into decoded segments, remembering where each ends in the raw path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    /// The raw path without query string and fragment.
    pub raw: &'a str,
    /// The query string, without `?`, if any.
    pub query: Option<&'a str>,
    /// Decoded segments, without empty ones and without matrix parameters.
    pub segments: Vec<Cow<'a, str>>,
    /// For each segment, the byte offset in `raw` just past it.
    pub ends: Vec<usize>,
}

impl<'a> NormalizedPath<'a> {
    /// The raw path after the first `count` segments (starts with `/`, or is empty).
    pub fn raw_after(&self, count: usize) -> &'a str {
        if count == 0 {
            return self.raw;
        }
        match self.ends.get(count - 1) {
            Some(&end) => self.raw.get(end..).unwrap_or(""),
            None => "",
        }
    }
}

/// Splits and decodes a request path (see the module docs for the rules).
pub fn normalize(path: &str) -> Result<NormalizedPath<'_>, PathRejection> {
    let (without_fragment, _) = split_once_or_all(path, '#');
    let (raw, query) = match without_fragment.split_once('?') {
        Some((raw, query)) => (raw, Some(query)),
        None => (without_fragment, None),
    };
    if !raw.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    if raw.contains('\\') {
        return Err(PathRejection::AmbiguousSeparator);
    }
    if raw.contains('\0') {
        return Err(PathRejection::BadEncoding);
    }
    let mut segments = Vec::new();
    let mut ends = Vec::new();
    let mut offset = 0;
    for piece in raw.split('/') {
        let end = offset + piece.len();
        offset = end + 1;
        let (name, matrix) = split_once_or_all(piece, ';');
        // Parameters are not matched, but they go upstream, and a backend may decode them: what
        // is refused in a name is refused in them too (`/menu;%2F..%2Fadmin` must not reach an
        // `/admin` under `/menu`'s policy through a backend that decodes, then resolves).
        if !matrix.is_empty() {
            percent_decode(matrix)?;
        }
        if name.is_empty() {
            continue;
        }
        let decoded = percent_decode(name)?;
        // `..%3B` decodes to `..;`: a backend that decodes before stripping parameters sees `..`.
        let stem = decoded.split(';').next().unwrap_or_default();
        if stem == "." || stem == ".." {
            return Err(PathRejection::DotSegment);
        }
        // `admin%3Bx` is `admin` to a backend that decodes before stripping parameters, and the
        // segment `admin;x` to one that does not: no one policy is right for both.
        if decoded.len() != stem.len() {
            return Err(PathRejection::AmbiguousSeparator);
        }
        segments.push(decoded);
        ends.push(end);
    }
    // A matrix-only segment such as `..;x` was caught above (its name is `..`); a segment that is
    // only matrix parameters (`/;x`) counts as empty.
    Ok(NormalizedPath { raw, query, segments, ends })
}

fn split_once_or_all(text: &str, separator: char) -> (&str, &str) {
    text.split_once(separator).unwrap_or((text, ""))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The byte of two hex digits at `bytes[at..at + 2]`, if they are there.
pub(crate) fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let high = bytes.get(at).copied().and_then(hex_value)?;
    let low = bytes.get(at + 1).copied().and_then(hex_value)?;
    Some(high * 16 + low)
}

fn percent_decode(segment: &str) -> Result<Cow<'_, str>, PathRejection> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let Some(decoded) = hex_pair(bytes, index + 1) else {
                return Err(PathRejection::BadEncoding);
            };
            match decoded {
                b'/' | b'\\' => return Err(PathRejection::AmbiguousSeparator),
                0 => return Err(PathRejection::BadEncoding),
                _ => out.push(decoded),
            }
            index += 3;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| PathRejection::BadEncoding)
}

/// Checks a literal path segment of a configured context, version or template.
pub fn check_literal_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty path segment (`//`)".to_string());
    }
    if segment == "." || segment == ".." {
        return Err(format!("dot segment `{segment}`"));
    }
    if let Some(name) = segment.strip_prefix(':').filter(|name| !name.is_empty()) {
        return Err(format!("`{segment}` is not a parameter here: write `{{{name}}}`"));
    }
    if segment.contains(['<', '>']) {
        return Err(format!("`{segment}` is not a parameter here: write parameters as `{{name}}`"));
    }
    if let Some(bad) = segment.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '*' | '?' | '#' | ';' | '%' | '\\' | '/')
    }) {
        return Err(format!("character `{}` is not allowed in segment `{segment}`", bad.escape_default()));
    }
    Ok(())
}

/// One segment of a resource path template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TemplateSegment {
    /// Matches itself.
    Literal(String),
    /// `{name}`: matches any one segment.
    Param(String),
    /// A final `*`: matches the rest of the path, including nothing.
    Wildcard,
}

/// How specifically a template matched, compared lexicographically: per segment a literal (4)
/// beats a parameter (3); a template that ends where the path ends (2) beats a wildcard that
/// swallows the rest (1), so `/files` wins over `/files/*` for the path `/files`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity(Vec<u8>);

const LITERAL: u8 = 4;
const PARAM: u8 = 3;
const END: u8 = 2;
const WILDCARD: u8 = 1;

/// A resource path template such as `/order/{orderId}` or `/files/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    raw: String,
    segments: Vec<TemplateSegment>,
}

impl PathTemplate {
    /// Parses a template. `/` alone is the API's root.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        if !template.starts_with('/') {
            return Err(format!("`{template}` must start with `/`"));
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let body = template.get(1..).unwrap_or_default();
        if !body.is_empty() {
            let pieces: Vec<&str> = body.split('/').collect();
            let last = pieces.len() - 1;
            for (index, piece) in pieces.iter().enumerate() {
                if *piece == "*" {
                    if index != last {
                        return Err(format!("`{template}`: `*` is only allowed as the last segment"));
                    }
                    segments.push(TemplateSegment::Wildcard);
                } else if let Some(name) = piece.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                    let valid =
                        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !valid {
                        return Err(format!("`{template}`: `{{{name}}}` is not a valid parameter name"));
                    }
                    if names.contains(&name) {
                        return Err(format!("`{template}`: parameter `{name}` appears twice"));
                    }
                    names.push(name);
                    segments.push(TemplateSegment::Param(name.to_string()));
                } else {
                    check_literal_segment(piece).map_err(|reason| format!("`{template}`: {reason}"))?;
                    segments.push(TemplateSegment::Literal((*piece).to_string()));
                }
            }
        }
        Ok(PathTemplate { raw: template.to_string(), segments })
    }

    /// The template as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The template with parameter names erased (`/order/{}`): two templates with the same shape
    /// match the same paths.
    pub fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                TemplateSegment::Literal(text) => shape.push_str(text),
                TemplateSegment::Param(_) => shape.push_str("{}"),
                TemplateSegment::Wildcard => shape.push('*'),
            }
        }
        if shape.is_empty() {
            shape.push('/');
        }
        shape
    }

    /// Matches decoded path segments (those below the API's base path).
    pub fn matches(&self, segments: &[Cow<'_, str>]) -> Option<Specificity> {
        let mut ranks = Vec::with_capacity(self.segments.len());
        for (index, template_segment) in self.segments.iter().enumerate() {
            match template_segment {
                TemplateSegment::Wildcard => {
                    ranks.push(WILDCARD);
                    return Some(Specificity(ranks));
                }
                TemplateSegment::Literal(text) => {
                    if segments.get(index).map(|segment| segment.as_ref()) != Some(text.as_str()) {
                        return None;
                    }
                    ranks.push(LITERAL);
                }
                TemplateSegment::Param(_) => {
                    segments.get(index)?;
                    ranks.push(PARAM);
                }
            }
        }
        ranks.push(END);
        (segments.len() == self.segments.len()).then_some(Specificity(ranks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<Cow<'static, str>> {
        let segments = normalize(path).expect("path should normalize").segments;
        segments.into_iter().map(|segment| Cow::Owned(segment.into_owned())).collect()
    }

    #[test]
    fn query_fragment_empty_segments_and_trailing_slash_are_ignored() {
        assert_eq!(segments("/menu?x=1/../y"), vec!["menu"]);
        assert_eq!(segments("/menu#frag"), vec!["menu"]);
        assert_eq!(segments("//menu//"), vec!["menu"]);
        assert_eq!(segments("/"), Vec::<String>::new());
    }

    #[test]
    fn matrix_parameters_are_ignored() {
        assert_eq!(segments("/menu;jsessionid=1/x"), vec!["menu", "x"]);
        assert_eq!(segments("/;x/menu"), vec!["menu"]);
    }

    #[test]
    fn percent_encoding_is_decoded() {
        assert_eq!(segments("/men%75"), vec!["menu"]);
        assert_eq!(segments("/a%20b"), vec!["a b"]);
        assert_eq!(segments("/caf%C3%A9"), vec!["café"]);
    }

    #[test]
    fn dangerous_paths_are_refused() {
        let cases = [
            ("/a/../b", PathRejection::DotSegment),
            ("/a/./b", PathRejection::DotSegment),
            ("/a/%2e%2E/b", PathRejection::DotSegment),
            ("/a/..;x/b", PathRejection::DotSegment),
            ("/a/.%2e", PathRejection::DotSegment),
            ("/a/..%3B/b", PathRejection::DotSegment),
            ("/a/..%3bx/b", PathRejection::DotSegment),
            ("/a%2Fb", PathRejection::AmbiguousSeparator),
            ("/a%2fb", PathRejection::AmbiguousSeparator),
            ("/a%5Cb", PathRejection::AmbiguousSeparator),
            ("/admin%3Bx", PathRejection::AmbiguousSeparator),
            ("/admin%3b", PathRejection::AmbiguousSeparator),
            ("/a\\..\\b", PathRejection::AmbiguousSeparator),
            ("/a%00", PathRejection::BadEncoding),
            ("/a%zz", PathRejection::BadEncoding),
            ("/a%4", PathRejection::BadEncoding),
            ("/a%ff", PathRejection::BadEncoding),
            ("/a;%2F..%2Fadmin", PathRejection::AmbiguousSeparator),
            ("/a;x=%2f%2e%2e%2fadmin", PathRejection::AmbiguousSeparator),
            ("/a/;%2F..%2F..%2Fadmin", PathRejection::AmbiguousSeparator),
            ("/a;%5C..%5Cadmin", PathRejection::AmbiguousSeparator),
            ("/a;%00", PathRejection::BadEncoding),
            ("/a;%zz", PathRejection::BadEncoding),
            ("/a;x=%ff", PathRejection::BadEncoding),
            ("/a/4\u{0}2", PathRejection::BadEncoding),
            ("menu", PathRejection::NotAbsolute),
            ("*", PathRejection::NotAbsolute),
        ];
        for (path, expected) in cases {
            assert_eq!(normalize(path).map(|p| p.segments), Err(expected), "path {path}");
        }
    }

    #[test]
    fn raw_after_keeps_the_original_spelling() {
        let path = normalize("/pizzashack//1.0.0/order/%41;x/?q=1").unwrap();
        assert_eq!(path.raw_after(2), "/order/%41;x/");
        assert_eq!(path.raw_after(0), "/pizzashack//1.0.0/order/%41;x/");
        assert_eq!(path.raw_after(4), "/");
        assert_eq!(path.query, Some("q=1"));
    }

    #[test]
    fn templates_match_literals_params_and_wildcards() {
        let order = PathTemplate::parse("/order/{orderId}").unwrap();
        assert!(order.matches(&segments("/order/42")).is_some());
        assert!(order.matches(&segments("/order")).is_none());
        assert!(order.matches(&segments("/order/42/x")).is_none());
        let all = PathTemplate::parse("/*").unwrap();
        assert!(all.matches(&segments("/")).is_some());
        assert!(all.matches(&segments("/a/b/c")).is_some());
        let root = PathTemplate::parse("/").unwrap();
        assert!(root.matches(&segments("/")).is_some());
        assert!(root.matches(&segments("/a")).is_none());
        let files = PathTemplate::parse("/files/*").unwrap();
        assert!(files.matches(&segments("/files")).is_some());
        assert!(files.matches(&segments("/filesx")).is_none());
    }

    #[test]
    fn an_exact_template_beats_a_wildcard_matching_nothing() {
        let exact = PathTemplate::parse("/files").unwrap();
        let wildcard = PathTemplate::parse("/files/*").unwrap();
        let param = PathTemplate::parse("/files/{name}").unwrap();
        let path = segments("/files");
        assert!(exact.matches(&path).unwrap() > wildcard.matches(&path).unwrap());
        let path = segments("/files/a");
        assert!(param.matches(&path).unwrap() > wildcard.matches(&path).unwrap());
        let root = PathTemplate::parse("/").unwrap();
        let everything = PathTemplate::parse("/*").unwrap();
        let path = segments("/");
        assert!(root.matches(&path).unwrap() > everything.matches(&path).unwrap());
    }

    #[test]
    fn literal_beats_param_beats_wildcard() {
        let literal = PathTemplate::parse("/order/latest").unwrap();
        let param = PathTemplate::parse("/order/{id}").unwrap();
        let wildcard = PathTemplate::parse("/order/*").unwrap();
        let everything = PathTemplate::parse("/*").unwrap();
        let path = segments("/order/latest");
        let scores = [&literal, &param, &wildcard, &everything].map(|t| t.matches(&path).unwrap());
        assert!(scores[0] > scores[1] && scores[1] > scores[2] && scores[2] > scores[3]);
    }

    #[test]
    fn bad_templates_are_refused() {
        for template in [
            "menu",
            "/a/*/b",
            "/{id",
            "/{}",
            "/{a}/{a}",
            "/a//b",
            "/a/../b",
            "/a b",
            "/a?x",
            "/a;b",
            "/a%20",
            "/orders/:id",
            "/orders/<id>",
        ] {
            assert!(PathTemplate::parse(template).is_err(), "template {template}");
        }
        assert_eq!(PathTemplate::parse("/order/{id}").unwrap().shape(), "/order/{}");
        assert_eq!(PathTemplate::parse("/").unwrap().shape(), "/");
    }

    #[test]
    fn case_matters() {
        let menu = PathTemplate::parse("/menu").unwrap();
        assert!(menu.matches(&segments("/MENU")).is_none());
    }
}
