//! The path (`apis[0].resources[1].policy`) of the value a configuration error is about, found
//! from where serde_json stopped reading. Parsing itself does not track paths: tracking them in
//! every type's deserializer cost 120 KB of the `.wasm`, for errors only.

/// Where the reader is inside an object or an array.
enum Frame {
    /// An object, with the key whose value is being read (`None` between members).
    Object(Option<String>),
    /// An array, with the index of the element being read.
    Array(usize),
}

/// What an error is about, at the position where the reader stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum About {
    /// The value being read.
    Value,
    /// An enum's unknown variant: its name, written as an object's only key, is not a field.
    Variant,
    /// The object or array being read, between its members (a missing `,`).
    Container,
}

/// The path of what serde_json was reading when it stopped at byte `offset` of `text` (what it
/// read up to there is valid JSON, or it would have stopped earlier). The root is `(root)`.
pub fn path_at(text: &[u8], offset: usize, about: About) -> String {
    let read = text.get(..offset).unwrap_or(text);
    let mut frames: Vec<Frame> = Vec::new();
    let mut key_next = false;
    // The last thing read was a key (its value not begun).
    let mut after_key = false;
    let mut at = 0;
    while let Some(&byte) = read.get(at) {
        if !byte.is_ascii_whitespace() && byte != b':' {
            after_key = false;
        }
        match byte {
            b'{' => {
                frames.push(Frame::Object(None));
                key_next = true;
            }
            b'[' => frames.push(Frame::Array(0)),
            b'}' | b']' => {
                frames.pop();
                key_next = false;
            }
            b',' => match frames.last_mut() {
                Some(Frame::Array(index)) => *index = index.saturating_add(1),
                Some(Frame::Object(key)) => {
                    *key = None;
                    key_next = true;
                }
                None => {}
            },
            b'"' => {
                let end = string_end(text, at);
                if key_next {
                    if let Some(Frame::Object(key)) = frames.last_mut() {
                        *key = Some(unescape(text.get(at..=end).unwrap_or_default()));
                        after_key = true;
                    }
                    key_next = false;
                }
                at = end;
            }
            _ => {}
        }
        at = at.saturating_add(1);
    }
    match (about, frames.last_mut()) {
        (About::Variant, Some(Frame::Object(_))) if after_key => {
            frames.pop();
        }
        (About::Container, Some(Frame::Object(key))) => *key = None,
        (About::Container, Some(Frame::Array(_))) => {
            // The array's path is its parent's key (or index).
            frames.pop();
        }
        _ => {}
    }
    let mut path = String::new();
    for frame in &frames {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array(index) => path.push_str(&format!("[{index}]")),
            Frame::Object(None) => {}
        }
    }
    if path.is_empty() {
        "(root)".to_string()
    } else {
        path
    }
}

/// The path a serde_json error is about, in `text`. Data errors are raised after what they are
/// about was read; syntax errors point at the byte that broke the text, not read.
pub fn path_of_error(text: &[u8], error: &serde_json::Error) -> String {
    let offset = offset_of(text, error.line(), error.column());
    let offset = if error.is_syntax() { offset.saturating_sub(1) } else { offset };
    let message = error.to_string();
    let about = if message.starts_with("unknown variant") {
        About::Variant
    } else if message.starts_with("expected `,` or") || struct_as_array(text, offset, &message) {
        About::Container
    } else {
        About::Value
    };
    path_at(text, offset, about)
}

/// Whether the error is a struct's refusal of an array (`pieces::objects`; serde's derive says
/// "struct X" or "struct variant X::Y"): raised once the `[` was read, so the array being read is
/// the value the error is about. (Other values are refused an array before the `[` is read.)
fn struct_as_array(text: &[u8], offset: usize, message: &str) -> bool {
    let read = text.get(..offset).unwrap_or(text);
    message.starts_with("invalid type: sequence, expected struct")
        && read.iter().rev().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[')
}

/// The byte offset in `text` of the quote closing the string opened at `start` (the last byte
/// when the string is not closed).
fn string_end(text: &[u8], start: usize) -> usize {
    let mut at = start.saturating_add(1);
    while let Some(&byte) = text.get(at) {
        match byte {
            b'\\' => at = at.saturating_add(2),
            b'"' => return at,
            _ => at = at.saturating_add(1),
        }
    }
    text.len().saturating_sub(1)
}

/// A JSON string literal's text, unescaped by serde_json (the literal as written if it does not
/// parse).
fn unescape(literal: &[u8]) -> String {
    crate::pieces::from_bytes::<String>(literal).unwrap_or_else(|_| String::from_utf8_lossy(literal).into_owned())
}

/// The byte offset of serde_json's (1-based line, column) position: the column counts the bytes
/// read on that line.
pub fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut start_of_line = 0;
    let mut lines_left = line.saturating_sub(1);
    for (index, &byte) in text.iter().enumerate() {
        if lines_left == 0 {
            break;
        }
        if byte == b'\n' {
            lines_left -= 1;
            start_of_line = index.saturating_add(1);
        }
    }
    start_of_line.saturating_add(column).min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_keys_and_indices() {
        let text = br#"{"apis": [{"name": "A"}, {"resources": [{"x": 1}, {"path": 7"#;
        assert_eq!(path_at(text, text.len(), About::Value), "apis[1].resources[1].path");
        assert_eq!(path_at(text, text.len(), About::Container), "apis[1].resources[1]");
        assert_eq!(path_at(b"{", 1, About::Value), "(root)");
        let text = br#"{"errors": {"format": {"zz""#;
        assert_eq!(path_at(text, text.len(), About::Variant), "errors.format", "an enum's variant is not a field");
        assert_eq!(path_at(text, text.len(), About::Value), "errors.format.zz");
        assert_eq!(path_at(b"{\"a\\\"b\": {\"c,]}\": 1", 19, About::Value), "a\"b.c,]}");
        assert_eq!(offset_of(b"{\n  \"a\": 1\n}", 2, 4), 6);
    }
}
