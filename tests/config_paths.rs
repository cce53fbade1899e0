//! A refused configuration names the field at fault. Parsing does not track paths (that cost
//! 120 KB of the `.wasm`): the path is found from where serde_json stopped. This checks it against
//! serde_path_to_error, which tracks the path in every deserializer, over every configuration we
//! ship mutated at every value (wrong types, unknown and missing fields), compact and pretty.
//!
//! The filter reads its configuration from Envoy in pieces (`Config::from_source`), and falls back
//! to the whole text for what it cannot take that way: the same configurations, and malformed
//! ones, must compile to the same `Config` or be refused with the same error either way,
//! wherever the pieces cut the text.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use apim_filter::config::Config;
use apim_filter::pieces::ObjectsOnly;
use apim_filter::schema::RawConfig;
use common::read_repo_file;
use serde_json::{json, Value};

/// Every filter configuration in the shipped Envoy configs (a `StringValue` holding a JSON object).
fn shipped_configs() -> Vec<Value> {
    fn collect(node: &serde_yaml::Value, found: &mut Vec<Value>) {
        match node {
            serde_yaml::Value::Mapping(map) => {
                if map.get("@type").and_then(|t| t.as_str()) == Some("type.googleapis.com/google.protobuf.StringValue")
                {
                    if let Some(Ok(config @ Value::Object(_))) =
                        map.get("value").and_then(|v| v.as_str()).map(serde_json::from_str::<Value>)
                    {
                        found.push(config);
                    }
                }
                map.values().for_each(|value| collect(value, found));
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|item| collect(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for file in ["envoy/envoy.yaml", "envoy/examples/cluster/envoy.yaml", "envoy/examples/control-plane/envoy.yaml"] {
        for document in serde_yaml::Deserializer::from_str(&read_repo_file(file)) {
            collect(&serde_yaml::Value::deserialize(document).unwrap(), &mut found);
        }
    }
    assert!(found.len() >= 3, "the shipped configs hold filter configurations");
    found
}

use serde::Deserialize;

/// The path serde_path_to_error names, in the filter's spelling of the root. The configuration is
/// read as the filter reads it: every struct from an object only.
fn tracked_path(text: &str) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, ObjectsOnly<RawConfig>>(&mut deserializer) {
        Ok(_) => None,
        Err(error) => {
            let path = error.path().to_string();
            Some(if path == "." { "(root)".to_string() } else { path })
        }
    }
}

/// Each value of `config` replaced by each of `replacements`, each object given an unknown field
/// and each object member removed, one change at a time.
/// Each mutation comes with the key of the member it changed (none for an array's element or the
/// root), which [`written_last`] writes last.
fn mutations(config: &Value) -> Vec<(Value, Option<String>)> {
    fn walk(node: &Value, key: Option<&str>, rebuild: &dyn Fn(Value) -> Value, out: &mut Vec<(Value, Option<String>)>) {
        let changed = key.map(str::to_string);
        let replacements = [
            json!(7),
            json!(-1),
            json!("x"),
            json!(true),
            json!(null),
            json!({}),
            json!([]),
            json!(["x"]),
            json!({"zz": 1}),
        ];
        for replacement in replacements {
            if &replacement != node {
                out.push((rebuild(replacement), changed.clone()));
            }
        }
        match node {
            Value::Object(map) => {
                let mut with_unknown = map.clone();
                with_unknown.insert("zz_unknown".into(), json!(1));
                out.push((rebuild(Value::Object(with_unknown)), changed.clone()));
                for key in map.keys() {
                    let mut without = map.clone();
                    without.remove(key);
                    out.push((rebuild(Value::Object(without)), changed.clone()));
                    let child = &map[key];
                    let rebuild_child = |value: Value| {
                        let mut changed = map.clone();
                        changed.insert(key.clone(), value);
                        rebuild(Value::Object(changed))
                    };
                    walk(child, Some(key), &rebuild_child, out);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let rebuild_child = |value: Value| {
                        let mut changed = items.clone();
                        changed[index] = value;
                        rebuild(Value::Array(changed))
                    };
                    walk(child, None, &rebuild_child, out);
                }
            }
            _ => {}
        }
    }
    // Only objects are configurations (anything else is refused before parsing): the root keeps
    // its type.
    let mut out = Vec::new();
    walk(config, None, &|value| value, &mut out);
    out.retain(|(value, _)| value.is_object());
    out
}

/// `value` as JSON with each object's member named `key` written last: serialized, an object's
/// members are in key order, so most members were never last, where an error raised once their
/// value is read is placed past the object's end.
fn written_last(value: &Value, key: Option<&str>) -> String {
    match value {
        Value::Object(map) => {
            let (last, first): (Vec<_>, Vec<_>) = map.iter().partition(|(name, _)| Some(name.as_str()) == key);
            let members: Vec<String> = first
                .into_iter()
                .chain(last)
                .map(|(name, value)| format!("{}:{}", Value::from(name.as_str()), written_last(value, key)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            format!("[{}]", items.iter().map(|item| written_last(item, key)).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

#[test]
fn refused_configurations_name_the_field_serde_path_tracking_names() {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for config in shipped_configs() {
        for (mutated, key) in mutations(&config) {
            let last = written_last(&mutated, key.as_deref());
            for text in [mutated.to_string(), serde_json::to_string_pretty(&mutated).unwrap(), last] {
                let Some(expected) = tracked_path(&text) else { continue };
                let Err(error) = Config::parse(text.as_bytes()) else {
                    panic!("parsing accepted what path tracking refused: {text}");
                };
                checked += 1;
                if error.field != expected {
                    mismatches.push(format!("{} (expected {expected}): {}", error.field, error.reason));
                }
            }
        }
    }
    assert!(checked > 500, "enough refusals were checked: {checked}");
    assert!(mismatches.is_empty(), "{} of {checked} differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn syntax_errors_name_where_the_text_breaks() {
    let broken = [
        r#"{"apis": [{"name": "A", "context": "/a",, }]}"#,
        r#"{"apis": [{"name": "A" "context": "/a"}]}"#,
        r#"{"apis": [{"name": "A", "context": "/a"]}"#,
        r#"{"apis": [{"name": "A", "context": }]}"#,
        r#"{"apis": [{"name": "A\q"}]}"#,
        r#"{"policies": {"Gold": {"requests": 1e999999}}}"#,
        r#"{"policies": {"Gold": {"requests": 01}}}"#,
        "{\"apis\": [\n  {\"name\": \"A\"}\n  ",
        r#"{"apis": [{"name": "A"}],}"#,
        r#"{"errors": {"format": [,]}}"#,
        r#"{"apis": [{"name": tru}]}"#,
        r#"{"apis": [{"name": "A"}]} {"#,
    ];
    let mut mismatches = Vec::new();
    for text in broken {
        let error = Config::parse(text.as_bytes()).unwrap_err();
        // Path tracking writes a key it could not read as `?`: the filter names the object.
        let tracked = tracked_path(text).expect("refused");
        let expected = tracked.strip_suffix(".?").unwrap_or(&tracked);
        if error.field != expected {
            mismatches.push(format!("{text}: {} (expected {expected}): {}", error.field, error.reason));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A configuration's compiled form, comparable across two compilations: its `Debug` lines,
/// sorted (std's hash maps list their entries in a different order in each map).
fn shape(compiled: &Result<Config, apim_filter::config::ConfigError>) -> Result<Vec<String>, String> {
    match compiled {
        Ok(config) => {
            let mut lines: Vec<String> = format!("{config:#?}").lines().map(|line| line.trim().to_string()).collect();
            lines.sort();
            Ok(lines)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// `text` compiled from the host in pieces: `chunk` bytes asked at a time, at most `step` handed
/// back per read. Also says whether the text was read more than once (the fallback reads it
/// whole after the pieces).
fn from_pieces(text: &[u8], chunk: usize, step: usize) -> (Result<Config, apim_filter::config::ConfigError>, bool) {
    let handed = std::cell::Cell::new(0);
    let read = |start: usize, length: usize| {
        let end = text.len().min(start + length.min(step));
        handed.set(handed.get() + (end - start));
        Some(text[start..end].to_vec())
    };
    let compiled = Config::from_source_in_chunks(text.len(), &read, chunk);
    (compiled, handed.get() > text.len())
}

/// A configuration with `n` applications, each with a client id, an API key and a subscription,
/// with escapes and non-ASCII in its strings.
fn with_directory(n: usize) -> Value {
    let apps: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("app-{i}\"é"), "name": format!("App {i} ☃"), "owner": "o\u{0}",
                   "client_ids": [{"id": format!("client-{i}")}],
                   "api_keys": [{"sha256": format!("{i:064x}")}]})
        })
        .collect();
    let subs: Vec<Value> = (0..n)
        .map(|i| {
            let state = ["UNBLOCKED", "BLOCKED", "PROD_ONLY_BLOCKED", "ON_HOLD"][i % 4];
            let tier = if i % 3 == 0 { "Gold" } else { "Unlimited" };
            json!({"application": format!("app-{i}\"é"), "api": "Pets:1.0.0", "tier": tier, "state": state})
        })
        .collect();
    json!({
        "key_managers": shipped_configs()[0]["key_managers"].clone(),
        "apis": [{"name": "Pets", "context": "/pets", "version": "1.0.0", "endpoints": {"production": "pets"},
                  "resources": [{"method": "GET", "path": "/*"}]}],
        "applications": apps,
        "subscriptions": subs,
        "policies": {"Gold": {"requests": 5, "per": "minute"}}
    })
}

#[test]
fn a_configuration_read_in_pieces_compiles_or_is_refused_as_the_whole_text_is() {
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for config in shipped_configs().iter().chain([&with_directory(2)]) {
        texts.push(config.to_string().into_bytes());
        texts.push(serde_json::to_string_pretty(config).unwrap().into_bytes());
        for (mutated, key) in mutations(config) {
            texts.push(mutated.to_string().into_bytes());
            texts.push(written_last(&mutated, key.as_deref()).into_bytes());
        }
    }
    texts.push(serde_json::to_string_pretty(&with_directory(40)).unwrap().into_bytes());
    let directory = with_directory(3).to_string();
    let edited = |from: &str, to: &str| {
        assert!(directory.contains(from), "{from} is in the configuration");
        directory.replacen(from, to, 1).into_bytes()
    };
    let odd = [
        edited("\"applications\":", "\"applications\":[],\"applications\":"),
        edited("\"subscriptions\":", "\"subscriptions\":[],\"subscriptions\":"),
        edited("\"policies\":", "\"policies\":{},\"policies\":"),
        edited("\"applications\":", "\"appl\\u0069cations\":"),
        edited("\"applications\":", "\"applications\":null,\"x\":"),
        edited("\"subscriptions\":", "\"subscriptions\":{},\"x\":"),
        edited("\"api\":\"Pets:1.0.0\"", "\"api\":\"Pets:1.0.0\",\"api\":\"Pets:1.0.0\""),
        edited("\"client_ids\":[", "\"client_ids\":[1,"),
        edited("Pets:1.0.0", "Pets:2.0.0"),
        edited("\"Gold\":{", "\"Gold\":{\"bytes\":1,"),
        edited("app-1", ""),
        format!("{directory} ").into_bytes(),
        format!("{directory} x").into_bytes(),
        format!("{directory}{{}}").into_bytes(),
        format!("\u{feff}{directory}").into_bytes(),
        format!("\x0c{directory}").into_bytes(),
        directory.as_bytes()[..directory.len() - 1].to_vec(),
        directory.replacen("é", "\u{0}", 1).into_bytes(),
        [&directory.as_bytes()[..30], &[0xC3, 0x28], &directory.as_bytes()[30..]].concat(),
        b"".to_vec(),
        b"  ".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"{\"applications\":[],\"subscriptions\":[]}".to_vec(),
    ];
    texts.extend(odd);
    // Numbers in a member read whole (a JWK's fields the filter ignores), at every offset within
    // 32 bytes, so that the chunks cut some after `-`, `.` or `e`.
    for pad in 0..32 {
        let numbers = format!("\"x\":{}-1.5e+3,\"y\":[-2,0.25,1E-7],\"kty\":\"RSA\"", " ".repeat(pad));
        texts.push(edited("\"kty\":\"RSA\"", &numbers));
    }
    let mut accepted = 0;
    for text in &texts {
        let expected = shape(&Config::from_json(text));
        for (chunk, step) in [(1, usize::MAX), (3, 2), (7, usize::MAX), (64, 5), (4096, usize::MAX), (1 << 16, 1000)] {
            let (compiled, read_whole) = from_pieces(text, chunk, step);
            assert_eq!(shape(&compiled), expected, "{} in chunks of {chunk}", String::from_utf8_lossy(text));
            let object = text.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
            assert!(
                expected.is_err() || !object || !read_whole,
                "an accepted configuration is read in pieces: {}",
                String::from_utf8_lossy(text)
            );
            accepted += usize::from(expected.is_ok());
        }
    }
    assert!(texts.len() > 1000, "enough configurations: {}", texts.len());
    assert!(accepted > 100, "enough configurations were accepted: {accepted}");
}

#[test]
fn a_big_directory_is_read_in_pieces_not_whole() {
    let text = with_directory(2_000).to_string().into_bytes();
    let expected = shape(&Config::from_json(&text));
    assert!(expected.is_ok(), "{expected:?}");
    let (compiled, read_again) = from_pieces(&text, 1 << 16, usize::MAX);
    assert!(!read_again, "read once, in pieces");
    assert_eq!(shape(&compiled), expected);
    // What the pieces cannot take is read again, whole: the count above sees it.
    let refused = [text.as_slice(), b" x"].concat();
    let (compiled, read_again) = from_pieces(&refused, 1 << 16, usize::MAX);
    assert!(compiled.is_err() && read_again, "a refused text is read again, whole");
}
