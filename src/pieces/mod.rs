//! JSON read from a source in pieces (Envoy's answer bodies, the plugin configuration): a big
//! document is never held whole, and each value is parsed by serde_json from the text in hand.
//!
//! Only punctuation (`{ } [ ] , :`) and whitespace are read here; every key and value, and so
//! every check of what JSON allows inside them, is serde_json's. The text is checked for UTF-8
//! once, as each piece arrives, and serde_json reads it as `str`: values may borrow from it
//! ([`Pieces::borrowed`]) and their strings are not checked again.

use std::io::Read;

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::Deserialize;

mod objects;

pub use objects::ObjectsOnly;

/// Bytes read from the source at a time (the text in hand grows only for a value larger than
/// this).
pub const CHUNK: usize = 1 << 16;

/// The largest piece asked for at a time (a larger `chunk` is taken as this).
const MAX_CHUNK: usize = 1 << 20;

/// The longest value held in hand: one entry of a control plane's list or a member of its
/// envelope, one member of the configuration besides its applications and subscriptions. A value
/// this long is read; one longer by more than a piece is refused (the text in hand would
/// otherwise grow with whatever an answer holds, and the VM's memory never shrinks); a
/// configuration refused for it is read whole instead. While one is read, the text in hand, the
/// piece being read and the text's next room hold at most about three times this.
pub const MAX_VALUE: usize = 32 << 20;

/// Parses JSON held whole as bytes, as the pieces and the configuration are read: the text is
/// checked for UTF-8 once, then serde_json reads it as `str`. Every JSON the filter reads goes
/// through that one reader: serde_json's reader of bytes was a second copy, in the .wasm, of every
/// type's deserializer and of serde_json's parser, and it let bytes that are not UTF-8 through
/// inside a member it skipped, where the pieces refuse them.
pub fn from_bytes<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, serde_json::Error> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        serde_json::Error::custom(format!("the text is not UTF-8 (at byte offset {})", error.valid_up_to()))
    })?;
    from_text(text)
}

/// Parses JSON text held whole (and nothing after it but whitespace), every struct in it read from
/// a JSON object only ([`objects`]). Every JSON the filter reads is parsed here or by the pieces.
pub fn from_text<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, serde_json::Error> {
    serde_json::from_str::<ObjectsOnly<T>>(text).map(|read| read.0)
}

/// A family of types that borrow from the text they are parsed from, for [`Pieces::borrowed`].
pub trait Borrowing {
    type Value<'de>: Deserialize<'de>;
}

/// The source's text in hand: `text[position..]` is not read yet; `ended` once the source has
/// nothing more.
pub struct Pieces<R> {
    reader: R,
    chunk: usize,
    text: String,
    position: usize,
    /// The first bytes of a character a read cut in two, completed by the next read.
    cut: Vec<u8>,
    /// How many bytes of the source were read and let go before `text`.
    consumed: usize,
    ended: bool,
}

/// What parsing the next value from the text in hand gave.
enum Parsed<T> {
    /// The value and the bytes it took.
    Value(T, usize),
    Failed(serde_json::Error),
    /// The value may go on past the text in hand.
    NeedMore,
}

impl<R: Read> Pieces<R> {
    /// Reads `reader` `chunk` bytes at a time (small in tests, to cut values anywhere).
    pub fn new(reader: R, chunk: usize) -> Pieces<R> {
        let chunk = chunk.clamp(1, MAX_CHUNK);
        Pieces {
            reader,
            chunk,
            text: String::with_capacity(chunk),
            position: 0,
            cut: Vec::new(),
            consumed: 0,
            ended: false,
        }
    }

    /// Reads more of the source behind what is in hand: `chunk` bytes, or as many as are in hand
    /// when that is more (a value larger than a chunk is parsed again at most about twice its
    /// size). What is not read yet is kept. `false` when the source had nothing more.
    fn fill(&mut self) -> Result<bool, serde_json::Error> {
        if self.ended {
            return Ok(false);
        }
        if !self.text.is_char_boundary(self.position) {
            return Err(serde_json::Error::custom("a value ended inside a character"));
        }
        self.text.drain(..self.position);
        self.consumed += self.position;
        self.position = 0;
        if self.text.len() > MAX_VALUE {
            return Err(serde_json::Error::custom(format!("a value is longer than {MAX_VALUE} bytes")));
        }
        // Room a large value needed is given back once it is read.
        if self.text.capacity() > 4 * self.chunk && self.text.len() <= self.chunk {
            self.text.shrink_to(2 * self.chunk);
        }
        // Doubling, up to a piece past the longest value held.
        let wanted = self.chunk.max(self.text.len()).min(MAX_VALUE + self.chunk - self.text.len());
        let mut bytes = std::mem::take(&mut self.cut);
        let start = bytes.len();
        bytes.try_reserve_exact(wanted).map_err(out_of_memory)?;
        bytes.resize(start + wanted, 0);
        let mut filled = start;
        while filled < bytes.len() {
            match self.reader.read(bytes.get_mut(filled..).unwrap_or_default()) {
                Ok(0) => {
                    self.ended = true;
                    break;
                }
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(serde_json::Error::io(error)),
            }
        }
        bytes.truncate(filled);
        // The text grows by what the piece holds (or a chunk), not by doubling: a long value's
        // text would take twice its room.
        self.text.try_reserve_exact(bytes.len().max(self.chunk)).map_err(out_of_memory)?;
        match std::str::from_utf8(&bytes) {
            Ok(piece) => self.text.push_str(piece),
            // A character cut at the end of this read: kept for the next (this piece's whole
            // characters are checked once more, as a `str`).
            Err(error) if error.error_len().is_none() && !self.ended => {
                let (whole, cut) = bytes.split_at(error.valid_up_to());
                self.text.push_str(std::str::from_utf8(whole).map_err(serde_json::Error::custom)?);
                self.cut = cut.to_vec();
            }
            Err(error) => {
                let at = self.consumed + self.text.len() + error.valid_up_to();
                return Err(serde_json::Error::custom(format!("the text is not UTF-8 (at byte offset {at})")));
            }
        }
        Ok(filled > start)
    }

    /// The next byte that is not whitespace, left in hand; `None` at the source's end.
    pub fn peek(&mut self) -> Result<Option<u8>, serde_json::Error> {
        loop {
            while let Some(byte) = self.text.as_bytes().get(self.position) {
                if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                    return Ok(Some(*byte));
                }
                self.position += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// The next byte that is not whitespace, taken.
    pub fn take(&mut self) -> Result<Option<u8>, serde_json::Error> {
        let byte = self.peek()?;
        if byte.is_some() {
            self.position += 1;
        }
        Ok(byte)
    }

    /// Takes the next byte that is not whitespace, which must be `wanted`.
    pub fn expect(&mut self, wanted: u8) -> Result<(), serde_json::Error> {
        match self.take()? {
            Some(byte) if byte == wanted => Ok(()),
            _ => Err(serde_json::Error::custom(format!("expected `{}`", char::from(wanted)))),
        }
    }

    /// An object: each member's key (decoded) handed to `member`, which reads its value.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, String) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        self.expect(b'{')?;
        if self.peek()? == Some(b'}') {
            self.take()?;
            return Ok(());
        }
        loop {
            let key: String = self.value()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.take()? {
                Some(b',') => {}
                Some(b'}') => return Ok(()),
                _ => return Err(serde_json::Error::custom("expected `,` or `}`")),
            }
        }
    }

    /// An array: `element` reads each element.
    pub fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        self.expect(b'[')?;
        if self.peek()? == Some(b']') {
            self.take()?;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.take()? {
                Some(b',') => {}
                Some(b']') => return Ok(()),
                _ => return Err(serde_json::Error::custom("expected `,` or `]`")),
            }
        }
    }

    /// Nothing but whitespace is left.
    pub fn end(&mut self) -> Result<(), serde_json::Error> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(serde_json::Error::custom("trailing characters")),
        }
    }

    /// The next JSON value.
    pub fn value<T: DeserializeOwned>(&mut self) -> Result<T, serde_json::Error> {
        let mut value = None;
        self.borrowed::<Owned<T>>(|parsed, _| value = Some(parsed))?;
        value.ok_or_else(|| serde_json::Error::custom("no value"))
    }

    /// Skips the next JSON value (checked by serde_json), appending its text to `out`.
    pub fn copy_value(&mut self, out: &mut String) -> Result<(), serde_json::Error> {
        self.borrowed::<Owned<IgnoredAny>>(|_, text| out.push_str(text))
    }

    /// The next JSON value as a type that borrows from the text, handed to `each` with its text
    /// while the text is in hand.
    pub fn borrowed<B: Borrowing>(&mut self, each: impl FnOnce(B::Value<'_>, &str)) -> Result<(), serde_json::Error> {
        let mut each = Some(each);
        loop {
            // The parsed value (which may run code when dropped) is gone before the text grows.
            let rest = self.text.get(self.position..).unwrap_or_default();
            let parsed = match parse::<B::Value<'_>>(rest, self.ended) {
                Parsed::Value(value, used) => {
                    if let Some(each) = each.take() {
                        each(value, rest.get(..used).unwrap_or_default());
                    }
                    Some(Ok(used))
                }
                Parsed::Failed(error) => Some(Err(error)),
                Parsed::NeedMore => None,
            };
            match parsed {
                Some(Ok(used)) => {
                    self.position += used;
                    return Ok(());
                }
                Some(Err(error)) => return Err(error),
                // With nothing more, `ended` is now set and the next pass parses the last bytes.
                None => {
                    self.fill()?;
                }
            }
        }
    }
}

/// An owned type, as a [`Borrowing`] family that borrows nothing.
struct Owned<T>(std::marker::PhantomData<T>);

impl<T: DeserializeOwned> Borrowing for Owned<T> {
    type Value<'de> = T;
}

/// Parses the value at the start of `text`. A value that may go on past it (cut by the piece's
/// end, or ending exactly there, as a number can) needs more, unless the source `ended`; so does
/// any error serde_json finds where the text in hand ends. (A number it skips without reading its
/// value, in an ignored member, and finds cut after `-`, `.` or `e` is an invalid number to it,
/// not the input's end: a WSO2 answer with such a number across a 64 KiB boundary was refused.)
/// A genuine error there is found again once more text is in hand, or the source has ended.
fn parse<'de, T: Deserialize<'de>>(text: &'de str, ended: bool) -> Parsed<T> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<ObjectsOnly<T>>();
    let parsed = stream.next().map(|read| read.map(|read| read.0));
    let used = stream.byte_offset();
    match parsed {
        Some(Ok(value)) if used < text.len() || ended => Parsed::Value(value, used),
        Some(Err(error)) if ended || !(error.is_eof() || at_end(text, &error)) => Parsed::Failed(error),
        None if ended => Parsed::Failed(serde_json::Error::custom("the text ended where a value was due")),
        _ => Parsed::NeedMore,
    }
}

fn out_of_memory(_: std::collections::TryReserveError) -> serde_json::Error {
    serde_json::Error::custom("the filter's memory cannot hold the next piece")
}

/// Whether serde_json found `error` where `text` ends (it counts lines from 1 and columns in
/// bytes from the line's start).
fn at_end(text: &str, error: &serde_json::Error) -> bool {
    let last_line = text.rfind('\n').map_or(0, |at| at + 1);
    let lines = 1 + text.bytes().filter(|byte| *byte == b'\n').count();
    error.line() == lines && error.column() == text.len() - last_line
}

/// A text the host holds, `size` bytes, read `read(start, length)` at a time (`None`: the host
/// could not hand it).
pub struct HostText<'a> {
    size: usize,
    position: usize,
    read: &'a dyn Fn(usize, usize) -> Option<Vec<u8>>,
}

impl<'a> HostText<'a> {
    pub fn new(size: usize, read: &'a dyn Fn(usize, usize) -> Option<Vec<u8>>) -> HostText<'a> {
        HostText { size, position: 0, read }
    }
}

impl Read for HostText<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let wanted = out.len().min(self.size.saturating_sub(self.position));
        if wanted == 0 {
            return Ok(0);
        }
        let piece = (self.read)(self.position, wanted).unwrap_or_default();
        let n = piece.len().min(wanted);
        if n == 0 {
            return Err(std::io::Error::other("the host's text ended early"));
        }
        if let (Some(target), Some(source)) = (out.get_mut(..n), piece.get(..n)) {
            target.copy_from_slice(source);
        }
        self.position += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{Borrowing, Pieces, MAX_VALUE};

    struct Text;
    impl Borrowing for Text {
        type Value<'de> = Cow<'de, str>;
    }

    /// Every string of `text` (a JSON array of strings), read `chunk` bytes at a time.
    fn strings(text: &[u8], chunk: usize) -> Result<Vec<String>, serde_json::Error> {
        let mut input = Pieces::new(text, chunk);
        let mut seen = Vec::new();
        input.array(|input| input.borrowed::<Text>(|value, _| seen.push(value.into_owned())))?;
        input.end()?;
        Ok(seen)
    }

    #[test]
    fn characters_cut_by_a_piece_are_whole_when_parsed() {
        let text = r#"["é☃𝄞", "a\"b\u00e9", "", "x"]"#;
        let expected: Vec<String> = serde_json::from_str(text).unwrap();
        for chunk in 1..=text.len() + 1 {
            assert_eq!(strings(text.as_bytes(), chunk).unwrap(), expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_wherever_it_is_cut() {
        let cases: [&[u8]; 4] = [b"[\"a\xC3\"]", b"[\"a\xFF\"]", b"[\"a\"]\xC3", b"[\"a\", \"\xE2\x98\"]"];
        for bytes in cases {
            for chunk in 1..=bytes.len() + 1 {
                assert!(strings(bytes, chunk).is_err(), "{bytes:?} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn json_held_whole_is_refused_where_it_is_not_utf8_as_pieces_refuse_it() {
        #[derive(Debug, serde::Deserialize)]
        struct Listed {
            #[allow(dead_code)]
            list: Vec<String>,
        }
        // Where serde_json's reader of bytes took it: in a member the type skips.
        let skipped: &[u8] = b"{\"description\": \"caf\xE9\", \"list\": [\"a\"]}";
        let whole = super::from_bytes::<Listed>(skipped).unwrap_err().to_string();
        assert!(whole.starts_with("the text is not UTF-8 (at byte offset 20)"), "{whole}");
        let mut input = Pieces::new(skipped, 7);
        let pieces = input.object(|input, _| input.value::<serde::de::IgnoredAny>().map(drop)).unwrap_err().to_string();
        assert!(pieces.starts_with("the text is not UTF-8 (at byte offset 20)"), "{pieces}");
        assert_eq!(super::from_bytes::<Listed>(br#"{"description": "caf\u00e9", "list": ["a"]}"#).unwrap().list, ["a"]);
    }

    #[test]
    fn a_value_longer_than_the_limit_is_refused_and_shorter_ones_are_read() {
        for (length, read) in [(MAX_VALUE - 64, true), (MAX_VALUE + super::CHUNK + 1, false)] {
            let text = format!("[\"{}\", \"x\"]", "a".repeat(length));
            let result = strings(text.as_bytes(), super::CHUNK);
            assert_eq!(result.is_ok(), read, "{length} bytes");
            if let Err(error) = result {
                assert!(error.to_string().starts_with("a value is longer than"), "{error}");
            }
        }
    }

    #[test]
    fn numbers_skipped_in_ignored_values_read_wherever_a_piece_cuts_them() {
        // serde_json skips an ignored number's digits and calls one cut after `-`, `.`, `e` or
        // `e+` invalid rather than ended.
        let text = "[{\"a\":-1.5e+3,\"b\":\"x\"},\n-0.25E-2, 1e5, -7, 0.5, [2E+10]]";
        for chunk in 1..=text.len() + 1 {
            let mut input = Pieces::new(text.as_bytes(), chunk);
            let mut count = 0;
            let read = input.array(|input| input.value::<serde::de::IgnoredAny>().map(|_| count += 1));
            assert!(read.is_ok() && input.end().is_ok(), "chunks of {chunk}: {read:?}");
            assert_eq!(count, 6, "chunks of {chunk}");
        }
        // Cut for good, or wrong further on, they are still refused.
        for text in ["[-", "[1.", "[1e+", "[-x]", "[1.e5]", "[1e+]"] {
            for chunk in 1..=text.len() + 1 {
                let mut input = Pieces::new(text.as_bytes(), chunk);
                let read = input.array(|input| input.value::<serde::de::IgnoredAny>().map(drop));
                assert!(read.is_err(), "{text:?} in chunks of {chunk}");
            }
        }
    }
}
