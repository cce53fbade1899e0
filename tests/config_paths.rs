//! A refused configuration names the field at fault. Parsing does not track paths (that cost
//! 120 KB of the `.wasm`): the path is found from where serde_json stopped. This checks it against
//! serde_path_to_error, which tracks the path in every deserializer, over every configuration we
//! ship mutated at every value (wrong types, unknown and missing fields), compact and pretty.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use apim_filter::config::Config;
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

/// The path serde_path_to_error names, in the filter's spelling of the root.
fn tracked_path(text: &str) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, RawConfig>(&mut deserializer) {
        Ok(_) => None,
        Err(error) => {
            let path = error.path().to_string();
            Some(if path == "." { "(root)".to_string() } else { path })
        }
    }
}

/// Each value of `config` replaced by each of `replacements`, each object given an unknown field
/// and each object member removed, one change at a time.
fn mutations(config: &Value) -> Vec<Value> {
    fn walk(node: &Value, rebuild: &dyn Fn(Value) -> Value, out: &mut Vec<Value>) {
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
                out.push(rebuild(replacement));
            }
        }
        match node {
            Value::Object(map) => {
                let mut with_unknown = map.clone();
                with_unknown.insert("zz_unknown".into(), json!(1));
                out.push(rebuild(Value::Object(with_unknown)));
                for key in map.keys() {
                    let mut without = map.clone();
                    without.remove(key);
                    out.push(rebuild(Value::Object(without)));
                    let child = &map[key];
                    let rebuild_child = |value: Value| {
                        let mut changed = map.clone();
                        changed.insert(key.clone(), value);
                        rebuild(Value::Object(changed))
                    };
                    walk(child, &rebuild_child, out);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let rebuild_child = |value: Value| {
                        let mut changed = items.clone();
                        changed[index] = value;
                        rebuild(Value::Array(changed))
                    };
                    walk(child, &rebuild_child, out);
                }
            }
            _ => {}
        }
    }
    // Only objects are configurations (anything else is refused before parsing): the root keeps
    // its type.
    let mut out = Vec::new();
    walk(config, &|value| value, &mut out);
    out.retain(Value::is_object);
    out
}

#[test]
fn refused_configurations_name_the_field_serde_path_tracking_names() {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for config in shipped_configs() {
        for mutated in mutations(&config) {
            for text in [mutated.to_string(), serde_json::to_string_pretty(&mutated).unwrap()] {
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
