//! A secret is read as serde's derive of the untagged enum read it: the same values accepted as
//! the same secrets (but for a source written as an array, refused), everything else refused with
//! the same error, placed right after the secret.

use serde::Deserialize;

use super::*;

/// The derive this module's reading replaced, as the reference.
mod derived {
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    #[serde(untagged)]
    pub enum RawSecret {
        Inline(String),
        Source(super::RawSecretSource),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Holder<T> {
    #[serde(default = "Option::default")]
    optional: Option<T>,
    required: T,
}

fn outcome<T: for<'de> Deserialize<'de> + Serialize>(json: &str) -> String {
    match serde_json::from_str::<Holder<T>>(json) {
        Ok(holder) => format!(
            "Ok({}, {})",
            serde_json::to_string(&holder.optional).unwrap(),
            serde_json::to_string(&holder.required).unwrap()
        ),
        Err(error) => format!("Err({error})"),
    }
}

const SECRETS: &[&str] = &[
    r#""text""#,
    r#""""#,
    r#""a\"b\u00e9""#,
    r#"{"env": "NAME"}"#,
    r#"{"value": "x", "encoding": "base64"}"#,
    r#"{"env": "NAME", "value": "x"}"#,
    r#"{"env": null, "value": "x", "encoding": "base64url"}"#,
    r#"{"encoding": "text"}"#,
    r#"{"encoding": {"base64": null}}"#,
    r#"{"encoding": {"base64": {}}}"#,
    r#"{"encoding": {"base64": null, "text": null}}"#,
    r#"{"encoding": "hex"}"#,
    r#"{"encoding": null}"#,
    r#"{"encoding": 1}"#,
    r#"{}"#,
    r#"{"env": "A", "env": "B"}"#,
    r#"{"env": "A", "other": 1}"#,
    r#"{"other": 1}"#,
    r#"{"env": 1}"#,
    r#"{"env": ["A"]}"#,
    r#"{"value": {"nested": [1, 2, {"deep": null}]}}"#,
    r#"{"env": "A", "value": true}"#,
    "[]",
    r#"["NAME"]"#,
    r#"[null, "x"]"#,
    r#"[null, "x", "base64"]"#,
    r#"[null, "x", "base64", 1]"#,
    r#"[1]"#,
    r#"[null, null, "hex"]"#,
    "1",
    "-1",
    "1.5",
    "true",
    "null",
    r#"{"env": "A",}"#,
    r#"{"env": "A" "value": "x"}"#,
    r#"["A",]"#,
    r#"{"env": "\ud800"}"#,
    r#"{"value": "x", "encoding": "base64", "encoding": "text"}"#,
    r#"{"other": 1, "other": 2}"#,
    r#"[[], {}]"#,
    r#"{"other": 1, "env": "A"}"#,
    r#"{"other": {"a": [1]}, "env": "A", "value": "x"}"#,
];

#[test]
fn a_secret_is_read_as_the_untagged_derive_read_it() {
    for secret in SECRETS {
        for json in [
            format!(r#"{{"required": {secret}}}"#),
            format!("{{\n  \"optional\": {secret},\n  \"required\": \"r\"\n}}"),
            format!(r#"{{"optional": {secret} , "required": "r"}}"#),
            format!("{{\"required\": {secret}\n}}"),
        ] {
            // The derive's refusal, placed right after the secret (the derive's own was placed
            // where serde_json stood after it: at the next member, or past the holder's end).
            let placed = |value: &str| json.replacen(secret, &format!(r#"{value},"zz":0"#), 1);
            let derived = match outcome::<derived::RawSecret>(&json) {
                // A source written as an array, which the derive took by position, is refused as
                // any value of neither variant (a number of the array's length).
                ok if secret.starts_with('[') && ok.starts_with("Ok") => {
                    outcome::<derived::RawSecret>(&placed(&format!("{:>1$}", "1", secret.len())))
                }
                refused if refused.starts_with(&format!("Err({NO_VARIANT}")) => {
                    outcome::<derived::RawSecret>(&placed(secret))
                }
                derived => derived,
            };
            assert_eq!(outcome::<RawSecret>(&json), derived, "{json}");
        }
    }
}
