//! WSO2's list envelope (`{"count": n, "list": [...]}`) read element by element from a body held
//! in pieces ([`crate::pieces`]): a list of 100,000 entries is never held whole.
//!
//! A body that is not UTF-8 is refused wherever the bytes are, even inside a member the filter
//! ignores (JSON exchanged between systems is UTF-8, RFC 8259 section 8.1; WSO2 writes it): the
//! text is checked once as it arrives, so that serde_json reads it as `str`.

use std::io::Read;

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::pieces::Pieces;
pub use crate::pieces::CHUNK;

/// Reads WSO2's list envelope from `reader`, handing each element of `list` (`null` reads as
/// none) to `each` as it is read. Anything but the envelope is an error, as it is to serde_json.
pub fn for_each_listed<T: DeserializeOwned, R: Read>(reader: R, each: impl FnMut(T)) -> Result<(), serde_json::Error> {
    for_each_listed_in_chunks(reader, CHUNK, each)
}

/// [`for_each_listed`] reading `chunk` bytes at a time (small in tests, to cut values anywhere).
pub fn for_each_listed_in_chunks<T: DeserializeOwned, R: Read>(
    reader: R,
    chunk: usize,
    mut each: impl FnMut(T),
) -> Result<(), serde_json::Error> {
    let mut input = Pieces::new(reader, chunk);
    // An object without `list` is another document (`/block`'s, an error's), not an empty list:
    // taken as one, it emptied the last good data of the resource it was answered for.
    let mut listed = false;
    input.object(|input, key| {
        if key == "list" {
            listed = true;
            list(input, &mut each)
        } else {
            input.value::<IgnoredAny>().map(drop)
        }
    })?;
    input.end()?;
    if !listed {
        return Err(serde::de::Error::missing_field("list"));
    }
    Ok(())
}

/// The `list` member: `null`, or an array whose elements go to `each`.
fn list<T: DeserializeOwned, R: Read>(
    input: &mut Pieces<R>,
    each: &mut impl FnMut(T),
) -> Result<(), serde_json::Error> {
    if input.peek()? == Some(b'n') {
        return input.value::<()>();
    }
    input.array(|input| input.value::<T>().map(&mut *each))
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::io::Read;
    use std::marker::PhantomData;

    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    use super::for_each_listed_in_chunks;
    use crate::directory::control_plane::wire;

    /// The reading this module replaced, as the reference: serde_json over `io::Read`, the envelope
    /// and the list through serde visitors.
    fn reference<T, R: Read>(reader: R, mut each: impl FnMut(T)) -> Result<(), serde_json::Error>
    where
        T: for<'de> Deserialize<'de>,
    {
        let mut deserializer =
            serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, reader));
        EnvelopeSeed { each: &mut each, item: PhantomData }.deserialize(&mut deserializer)?;
        deserializer.end()
    }

    struct EnvelopeSeed<'f, T, F> {
        each: &'f mut F,
        item: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for EnvelopeSeed<'_, T, F> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for EnvelopeSeed<'_, T, F> {
        type Value = ();
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("WSO2's list envelope")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut listed = false;
            while let Some(key) = map.next_key::<String>()? {
                if key == "list" {
                    listed = true;
                    map.next_value_seed(ListSeed { each: &mut *self.each, item: PhantomData })?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if !listed {
                return Err(serde::de::Error::missing_field("list"));
            }
            Ok(())
        }
    }

    struct ListSeed<'f, T, F> {
        each: &'f mut F,
        item: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for ListSeed<'_, T, F> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_option(self)
        }
    }

    impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for ListSeed<'_, T, F> {
        type Value = ();
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a list or null")
        }
        fn visit_none<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<T>()? {
                (self.each)(item);
            }
            Ok(())
        }
    }

    /// A reader handing out at most `step` bytes per call (the body as Envoy hands it, in pieces).
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(self.step).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn read_new(text: &str, chunk: usize, step: usize) -> Result<Vec<serde_json::Value>, ()> {
        let mut seen = Vec::new();
        let reader = Trickle { bytes: text.as_bytes(), step };
        for_each_listed_in_chunks(reader, chunk, |item: serde_json::Value| seen.push(item)).map_err(|_| ())?;
        Ok(seen)
    }

    fn read_reference(text: &str) -> Result<Vec<serde_json::Value>, ()> {
        let mut seen = Vec::new();
        reference(text.as_bytes(), |item: serde_json::Value| seen.push(item)).map_err(|_| ())?;
        Ok(seen)
    }

    /// The first `VALID` documents are envelopes; the rest are refused.
    const VALID: usize = 7;
    const DOCUMENTS: &[&str] = &[
        r#"{"count":2,"list":[{"uuid":"a","id":1},{"uuid":"b","id":-2.5e3}],"pagination":null}"#,
        " \n{ \"list\" : [ 1 , 22 , 333 , true , null , \"x\\\"y\\u00e9é\" , [ ] , { } ] , \"count\" : 12345678 }\t",
        r#"{"list":null}"#,
        r#"{"list":[]}"#,
        r#"{"pagination":{"next":[1,{"a":"]"}]},"list":[{"k":"v,}]"}]}"#,
        r#"{"list":[{"a":1}],"list":[{"b":2}]}"#,
        // Numbers in ignored members, cut by a chunk after `-`, `.` or `e`.
        "{\"count\":-1.5e+3,\"x\":[-0.25E-2,1e5,-7],\n\"list\":[{\"apiId\":-1}],\"y\":0.5}",
        // Not the envelope, or not JSON: refused by both. An object without `list` is another
        // document (`/block`'s answered for a list), never an empty list.
        r#"{}"#,
        r#"{"count":0}"#,
        r#"{"api":[],"application":[],"user":[],"ip":[],"custom":[],"subscription":[]}"#,
        "",
        "   ",
        r#"[]"#,
        r#"null"#,
        r#"{"list":[1,]}"#,
        r#"{"list":[1 2]}"#,
        r#"{"list":[1],}"#,
        r#"{"list":[1]} x"#,
        r#"{"list":[1]}{}"#,
        r#"{"list":{"a":1}}"#,
        r#"{"list":"[1]"}"#,
        r#"{"list":[1]"#,
        r#"{"list":[1"#,
        r#"{"list":[{"a":"b}]}"#,
        r#"{"list":[12x]}"#,
        r#"{"list":[-]}"#,
        r#"{"list":[1.]}"#,
        r#"{"list":[tru]}"#,
        r#"{"list":[nul]}"#,
        r#"{"list":["\u12"]}"#,
        r#"{"list":["\q"]}"#,
        r#"{list:[]}"#,
        r#"{"list"[]}"#,
        r#"{"list":[],"count"}"#,
        r#"{"list":[01]}"#,
    ];

    #[test]
    fn every_document_reads_as_the_reference_reads_it_wherever_the_chunks_cut_it() {
        for (index, text) in DOCUMENTS.iter().enumerate() {
            let expected = read_reference(text);
            assert_eq!(expected.is_ok(), index < VALID, "the reference on {text:?}");
            for chunk in 1..=text.len() + 1 {
                for step in [1, 3, chunk, usize::MAX] {
                    assert_eq!(read_new(text, chunk, step), expected, "{text:?} in chunks of {chunk}, {step} a read");
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_inside_a_string_is_refused_wherever_the_chunks_cut_it() {
        let mut bytes = br#"{"list":[{"name":"caf"#.to_vec();
        bytes.extend_from_slice(&[0xC3, b'"', b'}', b']', b'}']);
        let text_reference = {
            let mut seen = 0;
            reference(bytes.as_slice(), |_: serde_json::Value| seen += 1).is_err()
        };
        assert!(text_reference);
        for chunk in 1..=bytes.len() + 1 {
            let reader = Trickle { bytes: &bytes, step: 2 };
            assert!(for_each_listed_in_chunks(reader, chunk, |_: serde_json::Value| {}).is_err(), "chunks of {chunk}");
        }
    }

    #[test]
    fn invalid_utf8_in_an_ignored_member_is_refused_too_and_says_where() {
        let mut bytes = br#"{"count":1,"x":""#.to_vec();
        bytes.push(0xFF);
        bytes.extend_from_slice(br#"","list":[{"uuid":"a","name":"n"}]}"#);
        for chunk in 1..=bytes.len() + 1 {
            let reader = Trickle { bytes: &bytes, step: 3 };
            let error = for_each_listed_in_chunks(reader, chunk, |_: serde_json::Value| {}).unwrap_err();
            assert!(error.to_string().contains("not UTF-8 (at byte offset 16)"), "chunks of {chunk}: {error}");
        }
    }

    #[test]
    fn wso2s_big_lists_read_the_same_through_small_and_default_chunks() {
        let mut text = String::from(r#"{"count":300,"list":["#);
        for i in 0..300 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!(
                r#"{{"uuid":"00000000-0000-4000-8000-{i:012}","id":{i},"name":"App {i} \u00e9","subName":"admin","policy":"Unlimited","attributes":{{"a":"b"}},"groupIds":[]}}"#
            ));
        }
        text.push_str(r#"],"pagination":null}"#);
        let names = |chunk: usize| {
            let mut names = Vec::new();
            let reader = Trickle { bytes: text.as_bytes(), step: 1000 };
            for_each_listed_in_chunks(reader, chunk, |app: wire::Application| names.push(app.name)).unwrap();
            names
        };
        let mut expected = Vec::new();
        reference(text.as_bytes(), |app: wire::Application| expected.push(app.name)).unwrap();
        assert_eq!(expected.len(), 300);
        assert_eq!(expected[7], "App 7 é");
        for chunk in [7, 64, 199, 4096, super::CHUNK] {
            assert_eq!(names(chunk), expected, "chunks of {chunk}");
        }
    }
}
