//! [`Choice`]s read as serde's derive read them: the same names (those the JSON Schema lists), the
//! same input accepted, the same errors, through serde_json and through serde's buffered content.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::schema::{
    AccessLogEncoding, AppliesTo, BackendJwtAlgorithm, BackendJwtEncoding, Compatibility, Counting, ErrorFormat,
    EventApis, SecretEncoding, Unmatched,
};

/// The strings a schema allows, in order: an `enum` list, or `const`s (one per documented variant).
fn schema_names(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("const") {
                out.push(name.clone());
            }
            if let Some(Value::Array(names)) = map.get("enum") {
                out.extend(names.iter().filter_map(|name| name.as_str().map(str::to_string)));
            }
            for key in ["oneOf", "anyOf"] {
                if let Some(Value::Array(options)) = map.get(key) {
                    options.iter().for_each(|option| schema_names(option, out));
                }
            }
        }
        _ => panic!("not a schema: {schema}"),
    }
}

fn names_match_the_schema<T: Choice + JsonSchema>() {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap();
    let mut names = Vec::new();
    schema_names(&schema, &mut names);
    assert_eq!(names, T::NAMES, "{}: {schema}", T::NAME);
    assert_eq!(T::VARIANTS.len(), T::NAMES.len(), "{}", T::NAME);
}

#[test]
fn every_choice_has_the_names_its_serde_attributes_give_the_schema() {
    names_match_the_schema::<FailureMode>();
    names_match_the_schema::<Lifecycle>();
    names_match_the_schema::<SecurityScheme>();
    names_match_the_schema::<KeyType>();
    names_match_the_schema::<SubscriptionState>();
    names_match_the_schema::<TimeUnit>();
    names_match_the_schema::<BackendJwtAlgorithm>();
    names_match_the_schema::<BackendJwtEncoding>();
    names_match_the_schema::<AccessLogEncoding>();
    names_match_the_schema::<EventApis>();
    names_match_the_schema::<ErrorFormat>();
    names_match_the_schema::<Compatibility>();
    names_match_the_schema::<Unmatched>();
    names_match_the_schema::<SecretEncoding>();
    names_match_the_schema::<Counting>();
    names_match_the_schema::<AppliesTo>();
}

/// What serde's derive made of these enums, as the reference.
mod derived {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ErrorFormat {
        ApimJson,
        ApimXml,
        Microgateway,
        ChoreoConnect,
        Kanali,
        Tyk,
        Template,
    }

    #[derive(Debug, Deserialize)]
    pub enum BackendJwtAlgorithm {
        RS256,
        ES256,
        #[serde(rename = "none")]
        None,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum SubscriptionState {
        Unblocked,
        Blocked,
        ProdOnlyBlocked,
        OnHold,
        Rejected,
        Inactive,
        TierUpdatePending,
        DeletePending,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Field<T> {
    choice: Option<T>,
}

/// Buffered by serde (`flatten`), so the value is read from serde's content, not serde_json.
#[derive(Debug, Deserialize)]
struct Flattened<T> {
    #[serde(flatten)]
    inner: Field<T>,
}

/// How `json` reads as a `T` in each way a configuration or an answer can carry it.
fn outcomes<T: DeserializeOwned + std::fmt::Debug + 'static>(json: &str) -> Vec<String> {
    let show = |result: Result<Box<dyn std::fmt::Debug>, serde_json::Error>| match result {
        Ok(value) => format!("Ok({value:?})"),
        Err(error) => format!("Err({error})"),
    };
    let field = format!("{{\n  \"choice\": {json}\n}}");
    vec![
        show(serde_json::from_str::<T>(json).map(|v| Box::new(v) as _)),
        show(serde_json::from_slice::<T>(json.as_bytes()).map(|v| Box::new(v) as _)),
        show(serde_json::from_str::<Field<T>>(&field).map(|v| Box::new(v.choice) as _)),
        show(serde_json::from_str::<Flattened<T>>(&field).map(|v| Box::new(v.inner.choice) as _)),
        show(serde_json::from_str::<Value>(json).and_then(serde_json::from_value::<T>).map(|v| Box::new(v) as _)),
    ]
}

const INPUTS: &[&str] = &[
    r#""apim-json""#,
    r#""template""#,
    r#""RS256""#,
    r#""none""#,
    r#""None""#,
    r#""ON_HOLD""#,
    r#""on_hold""#,
    r#""APIM-JSON""#,
    r#""""#,
    r#""x""#,
    r#""\u00e9""#,
    "0",
    "1",
    "7",
    "-1",
    "1.5",
    "null",
    "true",
    "[]",
    r#"["apim-json"]"#,
    "{}",
    r#"{"apim-json": null}"#,
    r#"{"RS256": null}"#,
    r#"{"ON_HOLD": null}"#,
    r#"{"apim-json": 1}"#,
    r#"{"apim-json": {}}"#,
    r#"{"x": null}"#,
    r#"{"apim-json": null, "tyk": null}"#,
    r#""apim-json"  "#,
    r#""apim-json"#,
];

fn same_as_derived<Ours, Derived>()
where
    Ours: DeserializeOwned + std::fmt::Debug + 'static,
    Derived: DeserializeOwned + std::fmt::Debug + 'static,
{
    for input in INPUTS {
        assert_eq!(outcomes::<Ours>(input), outcomes::<Derived>(input), "{input}");
    }
}

#[test]
fn a_choice_accepts_and_refuses_what_serdes_derive_did_with_the_same_errors() {
    same_as_derived::<ErrorFormat, derived::ErrorFormat>();
    same_as_derived::<BackendJwtAlgorithm, derived::BackendJwtAlgorithm>();
    same_as_derived::<SubscriptionState, derived::SubscriptionState>();
}
