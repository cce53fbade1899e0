//! Server-sent events (the `text/event-stream` format) read from a response's chunks as Envoy
//! cuts them: where each event starts, so that each can be counted before a byte of it goes on.
//! Pure: the stream feeds it body chunks.

/// The UTF-8 byte order mark a stream may start with, which is no part of any line (WHATWG HTML,
/// "Parsing an event stream": a single BOM at the start of the stream is ignored).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a response is, between chunks.
#[derive(Clone, Debug, Default)]
pub struct EventScanner {
    /// The stream's first bytes are read: past its BOM, or past the bytes that began none.
    past_bom: bool,
    /// How many bytes of a BOM the stream started with so far.
    bom_read: usize,
    /// Bytes of the current line so far (0: at a line's start).
    line_len: usize,
    /// The last byte was a CR (a LF right after it ends no other line).
    after_cr: bool,
    /// An event is under way (a line of it read, its blank line not yet).
    in_event: bool,
}

impl EventScanner {
    /// Reads `chunk`, asking `admit` about each event at its first byte (an event: lines up to a
    /// blank line; a line ends with CRLF, LF or CR). Answers where the first event `admit` refused
    /// starts in the chunk, if one did: the caller ends the stream there, as API-M's gateway ends
    /// a server-sent-events stream over its tiers. Comment lines (`:` first, a keep-alive) make an
    /// event as any other line does, as API-M counts each blank-line-ended block. A BOM the stream
    /// starts with is no part of its first line: a BOM and a blank line make no event.
    pub fn scan(&mut self, chunk: &[u8], mut admit: impl FnMut() -> bool) -> Option<usize> {
        for (at, byte) in chunk.iter().enumerate() {
            if !self.past_bom {
                if BOM.get(self.bom_read) == Some(byte) {
                    self.bom_read += 1;
                    self.past_bom = self.bom_read == BOM.len();
                    continue;
                }
                self.past_bom = true;
                if self.bom_read > 0 {
                    // Not a BOM after all: its bytes began the first line, and its event (when
                    // they came in an earlier chunk, the cut can only be here).
                    if !admit() {
                        return Some(at.saturating_sub(self.bom_read));
                    }
                    self.in_event = true;
                    self.line_len = self.bom_read;
                }
            }
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = *byte == b'\r';
                    if self.line_len == 0 {
                        self.in_event = false;
                    }
                    self.line_len = 0;
                }
                _ => {
                    self.after_cr = false;
                    if self.line_len == 0 && !self.in_event {
                        if !admit() {
                            return Some(at);
                        }
                        self.in_event = true;
                    }
                    self.line_len = self.line_len.saturating_add(1);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` cut at `cuts`, admitting `admitted` events: how many were asked about and
    /// the bytes that passed.
    fn run(stream: &[u8], cuts: &[usize], admitted: usize) -> (usize, Vec<u8>) {
        let mut scanner = EventScanner::default();
        let (mut asked, mut passed) = (0, Vec::new());
        let mut from = 0;
        for to in cuts.iter().copied().chain([stream.len()]) {
            let chunk = &stream[from..to];
            let admit = || {
                asked += 1;
                asked <= admitted
            };
            match scanner.scan(chunk, admit) {
                None => passed.extend_from_slice(chunk),
                Some(end) => {
                    passed.extend_from_slice(&chunk[..end]);
                    return (asked, passed);
                }
            }
            from = to;
        }
        (asked, passed)
    }

    const STREAM: &[u8] = b"data: one\n\n: keep-alive\r\n\r\nevent: two\ndata: a\ndata: b\r\rdata: three\r\n\r\n";

    #[test]
    fn every_event_is_asked_about_once_whatever_the_line_endings_and_cuts() {
        for cut in 0..STREAM.len() {
            assert_eq!(run(STREAM, &[cut], usize::MAX), (4, STREAM.to_vec()), "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..STREAM.len()).collect();
        assert_eq!(run(STREAM, &every_byte, usize::MAX), (4, STREAM.to_vec()));
        // A CRLF cut between its CR and LF ends one line, not two (no blank line between them).
        let crlf = b"data: x\r\ndata: y\r\n\r\n";
        for cut in 0..crlf.len() {
            assert_eq!(run(crlf, &[cut], usize::MAX).0, 1, "cut at {cut}");
        }
    }

    #[test]
    fn a_refused_event_ends_the_stream_where_it_starts() {
        let third = STREAM.windows(11).position(|window| window == b"event: two\n").unwrap();
        let fourth = STREAM.windows(11).position(|window| window == b"data: three").unwrap();
        for cut in [0, 3, third, third + 1, STREAM.len() - 1] {
            assert_eq!(run(STREAM, &[cut], 2), (3, STREAM[..third].to_vec()), "cut at {cut}");
            assert_eq!(run(STREAM, &[cut], 3), (4, STREAM[..fourth].to_vec()), "cut at {cut}");
            assert_eq!(run(STREAM, &[cut], 0), (1, Vec::new()), "cut at {cut}");
        }
    }

    /// A stream's leading BOM is no part of its first line (WHATWG): a BOM and a blank line are no
    /// event, and an event refused right after a BOM is cut after it; a BOM later in the stream,
    /// or bytes that only begin one, are a line's bytes.
    #[test]
    fn a_leading_bom_is_no_event() {
        let stream = b"\xEF\xBB\xBF\r\ndata: one\n\n";
        for cut in 0..stream.len() {
            assert_eq!(run(stream, &[cut], usize::MAX), (1, stream.to_vec()), "cut at {cut}");
            assert_eq!(run(stream, &[cut], 0), (1, stream[..5].to_vec()), "cut at {cut}");
        }
        let stream = b"\xEF\xBB\xBFdata: one\n\n";
        for cut in 0..stream.len() {
            assert_eq!(run(stream, &[cut], 0), (1, stream[..3].to_vec()), "cut at {cut}");
        }
        // Half a BOM is the first line's start: the event is cut there.
        let stream = b"\xEF\xBBx\n\n";
        assert_eq!(run(stream, &[], 0), (1, Vec::new()));
        assert_eq!(run(stream, &[], usize::MAX), (1, stream.to_vec()));
        assert_eq!(run(b"data: 1\n\n\xEF\xBB\xBF\n\n", &[], usize::MAX).0, 2, "a BOM later on is a line");
    }

    /// Random streams of lines (CR, LF, CRLF, blank lines, any bytes), cut at random: the same
    /// events are asked about and the same bytes pass, whatever the cuts.
    #[test]
    fn random_streams_read_the_same_whatever_the_cuts() {
        let mut state = 11u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 33
        };
        for round in 0..500 {
            let length = (next() % 200) as usize;
            let stream: Vec<u8> = (0..length)
                .map(|_| match next() % 6 {
                    0 => b'\n',
                    1 => b'\r',
                    _ => b"data: xyz\0\xff"[(next() % 11) as usize],
                })
                .collect();
            let admitted = (next() % 6) as usize;
            let whole = run(&stream, &[], admitted);
            let mut cuts: Vec<usize> = (0..next() % 12).map(|_| (next() as usize) % (length + 1)).collect();
            cuts.sort_unstable();
            assert_eq!(run(&stream, &cuts, admitted), whole, "round {round}: {stream:?} cut at {cuts:?}");
        }
    }
}
