//! Hostile configurations: the configurations the repository ships (`envoy/`) mutated (extreme
//! values, wrong types, deep nesting, broken bytes), read whole and in pieces. Each is accepted or
//! refused with an error naming a field, the same way both readings, never a panic.

use super::Config;
use crate::host::fuzz::{each_case, mutate_bytes, mutate_document};

/// Every filter configuration in the shipped Envoy files: the JSON strings of their YAML that the
/// filter accepts.
pub(crate) fn shipped() -> Vec<serde_json::Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(format!("{root}/envoy"))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
                files.push(path);
            }
        }
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let Ok(value) = <serde_yaml::Value as serde::Deserialize>::deserialize(document) else { continue };
            strings(&value, &mut |text| {
                if let Ok(json @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(text) {
                    if Config::from_json(text.as_bytes()).is_ok() {
                        found.push(json);
                    }
                }
            });
        }
    }
    found
}

fn strings(value: &serde_yaml::Value, each: &mut dyn FnMut(&str)) {
    match value {
        serde_yaml::Value::String(text) => each(text),
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|item| strings(item, each)),
        serde_yaml::Value::Mapping(map) => map.values().for_each(|item| strings(item, each)),
        serde_yaml::Value::Tagged(tagged) => strings(&tagged.value, each),
        _ => {}
    }
}

#[test]
fn mutated_shipped_configurations_load_or_are_refused_alike_whole_and_in_pieces() {
    let configs = shipped();
    assert!(configs.len() >= 3, "the shipped configurations are found: {}", configs.len());
    each_case("configuration", 700, 0xC0F16, |rng, _| {
        let base = rng.pick(&configs);
        let mut text = mutate_document(base, rng);
        if rng.chance(8) {
            text = mutate_bytes(&text, rng);
        }
        let whole = Config::from_json(&text);
        if let Ok(config) = &whole {
            let _ = config.summary();
        }
        let chunk = 1 + rng.below(64);
        let read = |start: usize, length: usize| {
            text.get(start..start.saturating_add(length).min(text.len())).map(<[u8]>::to_vec)
        };
        let pieces = Config::from_source_in_chunks(text.len(), &read, chunk);
        assert_eq!(
            whole.as_ref().err().map(ToString::to_string),
            pieces.as_ref().err().map(ToString::to_string),
            "read whole and in pieces of {chunk}: {}",
            String::from_utf8_lossy(&text)
        );
    });
}
