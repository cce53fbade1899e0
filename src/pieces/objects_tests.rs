//! Tests of the adapter that reads structs from JSON objects only, through every reader the
//! filter has (text whole, bytes, and the pieces).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::pieces::{from_bytes, from_text, Pieces};

#[derive(Debug, Deserialize, PartialEq)]
struct Policy {
    requests: u32,
    per: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Wrapper(Policy);

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Shape {
    Plain,
    Counted { policy: Policy },
    Named(Policy),
    Pair(u32, String),
}

#[derive(Debug, Deserialize, PartialEq)]
struct Everything<'a> {
    policy: Policy,
    list: Vec<Policy>,
    maybe: Option<Policy>,
    by_name: BTreeMap<String, Policy>,
    wrapped: Wrapper,
    shapes: Vec<Shape>,
    numbers: Vec<u32>,
    pair: (u8, String),
    #[serde(borrow)]
    name: &'a str,
}

const POLICY: &str = r#"{"requests":5,"per":"minute"}"#;

fn everything(replace: Option<(&str, &str)>) -> String {
    let text = format!(
        r#"{{"policy":{POLICY},"list":[{POLICY}],"maybe":{POLICY},"by_name":{{"a":{POLICY}}},"wrapped":{POLICY},
            "shapes":["plain",{{"counted":{{"policy":{POLICY}}}}},{{"named":{POLICY}}},{{"pair":[1,"x"]}}],
            "numbers":[1,2],"pair":[3,"y"],"name":"borrowed"}}"#
    );
    match replace {
        Some((member, value)) => {
            let start = text.find(&format!(r#""{member}":"#)).unwrap() + member.len() + 3;
            let end = start + text[start..].find(POLICY).unwrap() + POLICY.len();
            let policy_at = start + text[start..].find(POLICY).unwrap();
            format!("{}{}{}{}", &text[..start], &text[start..policy_at], value, &text[end..])
        }
        None => text,
    }
}

#[test]
fn structs_read_from_objects_everywhere_a_struct_can_be() {
    let text = everything(None);
    let read: Everything = from_text(&text).unwrap();
    assert_eq!(read.policy, Policy { requests: 5, per: "minute".into() });
    assert_eq!(read.list.len(), 1);
    assert!(read.maybe.is_some());
    assert_eq!(read.by_name["a"].requests, 5);
    assert_eq!(read.wrapped.0.per, "minute");
    assert_eq!(read.shapes.len(), 4);
    assert_eq!(read.shapes[3], Shape::Pair(1, "x".into()));
    assert_eq!(read.numbers, [1, 2]);
    assert_eq!(read.pair, (3, "y".into()));
    // Strings without escapes still borrow from the text.
    let start = text.as_ptr() as usize;
    assert!((start..start + text.len()).contains(&(read.name.as_ptr() as usize)));
    let from_bytes: Everything = super::super::from_bytes(text.as_bytes()).unwrap();
    assert_eq!(from_bytes.policy, read.policy);
}

#[test]
fn a_struct_written_as_an_array_is_refused_wherever_it_is() {
    for member in ["policy", "list", "maybe", "by_name", "wrapped", "counted", "named"] {
        let text = everything(Some((member, r#"[5,"minute"]"#)));
        let error = from_text::<Everything>(&text).unwrap_err().to_string();
        assert!(error.starts_with("invalid type: sequence, expected"), "{member}: {error}");
        assert!(from_bytes::<Everything>(text.as_bytes()).is_err(), "{member}");
    }
    // A struct variant written as an array.
    let error = from_text::<Shape>(&format!(r#"{{"counted":[{POLICY}]}}"#)).unwrap_err().to_string();
    assert!(error.starts_with("invalid type: sequence, expected struct variant"), "{error}");
    // The same refusal for the struct at the top.
    let error = from_text::<Policy>(r#"[5,"minute"]"#).unwrap_err().to_string();
    assert!(error.starts_with("invalid type: sequence, expected struct Policy at line 1"), "{error}");
}

#[test]
fn the_pieces_refuse_a_struct_written_as_an_array() {
    let read = |text: &str| {
        let mut input = Pieces::new(text.as_bytes(), 4);
        let mut seen = Vec::new();
        input.array(|input| input.value::<Policy>().map(|policy| seen.push(policy)))?;
        input.end().map(|()| seen)
    };
    assert_eq!(read(&format!("[{POLICY},{POLICY}]")).unwrap().len(), 2);
    let error = read(&format!(r#"[{POLICY},[5,"minute"]]"#)).unwrap_err().to_string();
    assert!(error.starts_with("invalid type: sequence, expected struct Policy"), "{error}");
}
