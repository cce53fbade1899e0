//! WebSocket frames (RFC 6455) read from one direction of an upgraded connection as Envoy hands
//! it over, in chunks cut anywhere: where each message starts, and the chunk without the frames of
//! the messages the caller drops. Pure: the stream feeds it body chunks.

/// A frame's first byte: the final-fragment bit and the opcode.
const FIN: u8 = 0x80;
const OPCODE: u8 = 0x0F;
/// The second byte: the mask bit and the 7-bit payload length (126: 16 bits follow, 127: 64).
const MASK: u8 = 0x80;
const LENGTH: u8 = 0x7F;

/// Opcodes (RFC 6455, 5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;

/// A frame header is at most 14 bytes: 2, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// The most notices that wait for the client at once: a client flooding frames over its limit
/// while the backend says nothing would otherwise grow them without bound (a notice of ~60 bytes
/// for each frame of 6). Drops beyond are still counted, in stats and analytics.
pub const MAX_PENDING_NOTICES: usize = 16;

/// Adds `notice` to the bytes waiting for the client, unless `MAX_PENDING_NOTICES` wait already.
pub fn queue_notice(pending: &mut Vec<u8>, notice: &[u8]) {
    if pending.len() < notice.len().saturating_mul(MAX_PENDING_NOTICES) {
        pending.extend_from_slice(notice);
    }
}

/// Where one direction of a connection is, between chunks.
#[derive(Clone, Debug, Default)]
pub struct Scanner {
    /// The header bytes of the current frame read so far (all of them once `header_len` reaches
    /// the header's full size).
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to come (its header complete).
    payload_left: u64,
    /// The current frame (header included) is dropped.
    dropping_frame: bool,
    /// The message under way is dropped: its continuation frames are dropped with it.
    dropping_message: bool,
    /// The current frame is a message's final data frame.
    ends_message: bool,
    /// A fragmented message is under way (its final frame not read yet).
    in_message: bool,
    /// The opcode of the message under way (what its continuation frames are asked about as).
    last_data_opcode: u8,
}

/// A data frame, as the caller is asked about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageStart {
    /// `TEXT` or `BINARY`: the message's (a continuation frame's is its message's).
    pub opcode: u8,
}

/// What the caller does with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

/// What a chunk becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Every byte passes as it is (nothing allocated).
    Unchanged,
    /// The chunk without the dropped frames' bytes.
    Rewritten(Vec<u8>),
}

impl Scanner {
    /// A direction whose framing cannot be followed from here (bytes went by unread): every byte
    /// from now on is dropped, as the payload of a dropped frame that never ends.
    pub fn dropping_everything() -> Scanner {
        Scanner { payload_left: u64::MAX, dropping_frame: true, dropping_message: true, ..Scanner::default() }
    }

    /// Takes `size` bytes without reading them when they all fall inside the current frame's
    /// payload, short of its end (no frame starts among them, and no notice can go in): answers
    /// whether they are dropped. `None`: the chunk has to be read ([`Scanner::scan`]). A large
    /// frame's chunks are then never copied out of Envoy.
    pub fn skip_payload(&mut self, size: usize) -> Option<bool> {
        let size = u64::try_from(size).ok()?;
        if self.header_len != 0 || self.payload_left <= size {
            return None;
        }
        self.payload_left -= size;
        Some(self.dropping_frame)
    }

    /// Reads `chunk`, asking `decide` about each data frame (text, binary, continuation) at its
    /// first byte, so that every byte of a dropped frame, its header included, is still to be
    /// forwarded. Control frames (close, ping, pong) pass; once a frame of a message is dropped,
    /// the message's later fragments are dropped without asking.
    ///
    /// `notices`, for the direction towards the client: each drop adds the notice to the pending
    /// bytes, and pending bytes go into the stream at the first frame boundary outside a
    /// fragmented message (a text frame cannot come between a message's fragments). Answers the
    /// chunk and how many frames were dropped.
    pub fn scan(
        &mut self,
        chunk: &[u8],
        mut decide: impl FnMut(MessageStart) -> Verdict,
        mut notices: Option<(&mut Vec<u8>, &[u8])>,
    ) -> (Chunk, u32) {
        let mut kept: Option<Vec<u8>> = None;
        let mut drops = 0u32;
        let mut at = 0;
        while at < chunk.len() {
            if self.header_len == 0 && self.payload_left == 0 {
                // A frame starts here.
                if let Some((pending, _)) =
                    notices.as_mut().filter(|(pending, _)| !pending.is_empty() && !self.in_message)
                {
                    kept.get_or_insert_with(|| chunk.get(..at).unwrap_or_default().to_vec()).append(pending);
                }
                let first = chunk.get(at).copied().unwrap_or_default();
                let opcode = first & OPCODE;
                let data = opcode < CLOSE;
                if opcode == TEXT || opcode == BINARY {
                    self.dropping_message = false;
                }
                self.dropping_frame = data
                    && (self.dropping_message || {
                        let asked = if opcode == CONTINUATION { self.last_data_opcode } else { opcode };
                        decide(MessageStart { opcode: asked }) == Verdict::Drop
                    });
                if self.dropping_frame {
                    self.dropping_message = true;
                    drops = drops.saturating_add(1);
                    if let Some((pending, notice)) = notices.as_mut() {
                        queue_notice(pending, notice);
                    }
                }
                if data {
                    // A message ends with its final data frame (control frames may come between
                    // its fragments).
                    self.ends_message = first & FIN != 0;
                    self.in_message = true;
                    if opcode != CONTINUATION {
                        self.last_data_opcode = opcode;
                    }
                } else {
                    self.ends_message = false;
                }
            }
            let step = self.advance(chunk.get(at..).unwrap_or_default());
            let (start, end) = (at, at.saturating_add(step));
            if self.dropping_frame {
                kept.get_or_insert_with(|| chunk.get(..start).unwrap_or_default().to_vec());
            } else if let Some(kept) = kept.as_mut() {
                kept.extend_from_slice(chunk.get(start..end).unwrap_or_default());
            }
            at = end;
            if self.header_len == 0 && self.payload_left == 0 && self.ends_message {
                self.in_message = false;
                self.dropping_message = false;
                self.ends_message = false;
            }
        }
        if let Some(kept) = kept.as_mut() {
            kept.extend_from_slice(chunk.get(at..).unwrap_or_default());
        }
        let at_boundary = self.header_len == 0 && self.payload_left == 0 && !self.in_message;
        if let Some((pending, _)) = notices.as_mut().filter(|(pending, _)| !pending.is_empty() && at_boundary) {
            kept.get_or_insert_with(|| chunk.to_vec()).append(pending);
        }
        (kept.map_or(Chunk::Unchanged, Chunk::Rewritten), drops)
    }

    /// Reads as much of the current frame as `bytes` holds; answers how many bytes it read. At
    /// least one unless `bytes` is empty.
    fn advance(&mut self, bytes: &[u8]) -> usize {
        if self.payload_left > 0 {
            let step = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(bytes.len());
            self.payload_left -= step as u64;
            return step;
        }
        let mut read = 0;
        for byte in bytes {
            let Some(slot) = self.header.get_mut(self.header_len) else { break };
            *slot = *byte;
            self.header_len += 1;
            read += 1;
            if let Some(payload) = self.header_complete() {
                // A length RFC 6455 forbids (the top bit set) or too large to end is a frame that
                // never ends: every byte after it is its payload, passed or dropped with it (a
                // dropped one never lets the bytes after it through unread).
                self.header_len = 0;
                self.payload_left = payload;
                if payload == 0 {
                    return read;
                }
                let more = usize::try_from(payload).unwrap_or(usize::MAX).min(bytes.len() - read);
                self.payload_left -= more as u64;
                return read + more;
            }
        }
        read
    }

    /// The payload length once the header in hand is complete.
    fn header_complete(&self) -> Option<u64> {
        let header = self.header.get(..self.header_len)?;
        let second = *header.get(1)?;
        let (extended, mask) = match second & LENGTH {
            126 => (2, 4 * usize::from(second & MASK != 0)),
            127 => (8, 4 * usize::from(second & MASK != 0)),
            _ => (0, 4 * usize::from(second & MASK != 0)),
        };
        if header.len() < 2 + extended + mask {
            return None;
        }
        let length = match extended {
            0 => u64::from(second & LENGTH),
            _ => header.get(2..2 + extended)?.iter().fold(0u64, |length, byte| (length << 8) | u64::from(*byte)),
        };
        Some(length)
    }
}

/// An unmasked text frame from the server side: what a gateway sends a client (RFC 6455: a server
/// never masks).
pub fn server_text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(FIN | TEXT);
    push_length(&mut frame, 0, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// A frame header's second byte (`mask_bit` and the length's first form) and its extended
/// length (16 or 64 bits) for a payload of `length` bytes.
fn push_length(frame: &mut Vec<u8>, mask_bit: u8, length: usize) {
    match length {
        0..=125 => frame.push(mask_bit | length as u8),
        126..=0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: u8 = 0x9;

    /// A client's frame (masked, as RFC 6455 requires of clients).
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![first];
        push_length(&mut frame, MASK, payload.len());
        let key = [7, 1, 9, 3];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(at, byte)| byte ^ key[at % 4]));
        frame
    }

    /// Notes the frame asked about, and drops it when its number (from 0) is in `drop`.
    fn dropping(asked: &mut Vec<u8>, drop: &[usize], start: MessageStart) -> Verdict {
        asked.push(start.opcode);
        if drop.contains(&(asked.len() - 1)) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }

    /// Feeds `stream` cut at `cuts`, dropping the data frames whose number (from 0, in the order
    /// asked) is in `drop`, with a notice for each drop: the opcodes asked about and the bytes
    /// passed.
    fn run(stream: &[u8], cuts: &[usize], drop: &[usize]) -> (Vec<u8>, Vec<u8>) {
        run_with(stream, cuts, drop, None).0
    }

    /// `run`, with notices (`notice` for each drop, `pending` before the first chunk): also the
    /// drops counted.
    fn run_with(stream: &[u8], cuts: &[usize], drop: &[usize], notice: Option<&[u8]>) -> ((Vec<u8>, Vec<u8>), u32) {
        let (read, pending) = run_pending(stream, cuts, drop, notice);
        assert_eq!(pending, 0, "every notice went out by the end of a stream that ends between messages");
        read
    }

    /// The opcodes asked about and the bytes passed, the drops, and the notice bytes left pending.
    type Pending = (((Vec<u8>, Vec<u8>), u32), usize);

    /// `run_with`, with what is left pending at the end.
    fn run_pending(stream: &[u8], cuts: &[usize], drop: &[usize], notice: Option<&[u8]>) -> Pending {
        let mut scanner = Scanner::default();
        let (mut asked, mut passed, mut pending, mut drops) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let mut from = 0;
        for to in cuts.iter().copied().chain([stream.len()]) {
            let chunk = &stream[from..to];
            let verdict = |start: MessageStart| dropping(&mut asked, drop, start);
            let (out, dropped) = scanner.scan(chunk, verdict, notice.map(|notice| (&mut pending, notice)));
            drops += dropped;
            match out {
                Chunk::Unchanged => passed.extend_from_slice(chunk),
                Chunk::Rewritten(kept) => passed.extend_from_slice(&kept),
            }
            from = to;
        }
        (((asked, passed), drops), pending.len())
    }

    fn sample() -> (Vec<u8>, [Vec<u8>; 6]) {
        let frames = [
            client_frame(FIN | TEXT, b"hello"),
            client_frame(BINARY, &[1; 200]), // a fragmented message: 16-bit length
            client_frame(FIN | PING, b"p"),  // a control frame between its fragments
            client_frame(FIN | CONTINUATION, &[2; 70_000]), // its last fragment: 64-bit length
            client_frame(FIN | TEXT, b""),
            client_frame(FIN | CLOSE, &[3, 232]),
        ];
        (frames.concat(), frames)
    }

    fn join(frames: &[&Vec<u8>]) -> Vec<u8> {
        frames.iter().flat_map(|frame| frame.iter().copied()).collect()
    }

    #[test]
    fn every_data_frame_is_asked_about_once_wherever_the_chunks_are_cut() {
        let (stream, _) = sample();
        let whole = run(&stream, &[], &[]);
        // The continuation is asked about as its message's opcode.
        assert_eq!(whole, (vec![TEXT, BINARY, BINARY, TEXT], stream.clone()));
        // Cut at every byte of the headers' neighbourhood, alone and two at a time.
        let cuts: Vec<usize> = (0..stream.len()).filter(|at| *at < 260 || *at > stream.len() - 20).collect();
        for cut in &cuts {
            assert_eq!(run(&stream, &[*cut], &[]), whole, "cut at {cut}");
            assert_eq!(run(&stream, &[*cut, (*cut + 3).min(stream.len())], &[]), whole, "cuts at {cut}");
        }
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(&stream, &every_byte, &[]), whole, "one byte at a time");
    }

    #[test]
    fn a_dropped_frame_takes_the_rest_of_its_message_and_control_frames_stay() {
        let (stream, f) = sample();
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        for cuts in [vec![], vec![1], vec![7], vec![20, 300], (1..stream.len()).step_by(997).collect(), every_byte] {
            assert_eq!(run(&stream, &cuts, &[0]).1, join(&[&f[1], &f[2], &f[3], &f[4], &f[5]]), "cuts {cuts:?}");
            // The fragmented message's first frame: its continuation goes without being asked.
            let (asked, passed) = run(&stream, &cuts, &[1]);
            assert_eq!((asked.len(), passed), (3, join(&[&f[0], &f[2], &f[4], &f[5]])), "cuts {cuts:?}");
            // Its last fragment only (API-M counts each frame): the first went already.
            assert_eq!(run(&stream, &cuts, &[2]).1, join(&[&f[0], &f[1], &f[2], &f[4], &f[5]]), "cuts {cuts:?}");
            assert_eq!(run(&stream, &cuts, &[0, 1, 2]).1, join(&[&f[2], &f[5]]), "cuts {cuts:?}");
        }
    }

    #[test]
    fn notices_go_in_between_messages_never_between_fragments() {
        let (stream, f) = sample();
        let notice = server_text_frame("throttled");
        for cuts in [vec![], vec![1], vec![7], vec![20, 300], (1..stream.len()).step_by(13).collect()] {
            // Dropping the first message: its notice takes its place.
            let ((_, passed), drops) = run_with(&stream, &cuts, &[0], Some(&notice));
            assert_eq!((passed, drops), (join(&[&notice, &f[1], &f[2], &f[3], &f[4], &f[5]]), 1), "cuts {cuts:?}");
            // Dropping the fragmented message's last frame: the notice waits for the message's
            // end (the ping between the fragments stays where it was).
            let ((_, passed), _) = run_with(&stream, &cuts, &[2], Some(&notice));
            assert_eq!(passed, join(&[&f[0], &f[1], &f[2], &notice, &f[4], &f[5]]), "cuts {cuts:?}");
            // The last text frame, right before the close.
            let ((_, passed), _) = run_with(&stream, &cuts, &[3], Some(&notice));
            assert_eq!(passed, join(&[&f[0], &f[1], &f[2], &f[3], &notice, &f[5]]), "cuts {cuts:?}");
        }
        // A notice pending from the other direction goes out at the first boundary.
        let mut scanner = Scanner::default();
        let mut pending = notice.clone();
        let (out, _) = scanner.scan(&f[0][..3], |_| Verdict::Pass, Some((&mut pending, &notice)));
        assert_eq!(out, Chunk::Rewritten(join(&[&notice]).into_iter().chain(f[0][..3].iter().copied()).collect()));
        let (out, _) = scanner.scan(&f[0][3..], |_| Verdict::Pass, Some((&mut pending, &notice)));
        assert_eq!(out, Chunk::Unchanged, "nothing left to insert");
    }

    /// Skipping a frame's payload without reading it leaves the scanner where reading it would.
    #[test]
    fn a_payload_skipped_unread_keeps_the_scanner_in_step() {
        let (stream, _) = sample();
        for drop in [vec![], vec![1], vec![2]] {
            let expected = run(&stream, &[], &drop);
            // Cut in 100-byte chunks, each skipped whenever it can be.
            let mut scanner = Scanner::default();
            let (mut asked, mut passed, mut skipped) = (Vec::new(), Vec::new(), 0);
            for chunk in stream.chunks(100) {
                match scanner.skip_payload(chunk.len()) {
                    Some(dropped) => {
                        skipped += 1;
                        if !dropped {
                            passed.extend_from_slice(chunk);
                        }
                    }
                    None => {
                        let verdict = |start: MessageStart| dropping(&mut asked, &drop, start);
                        match scanner.scan(chunk, verdict, None).0 {
                            Chunk::Unchanged => passed.extend_from_slice(chunk),
                            Chunk::Rewritten(kept) => passed.extend_from_slice(&kept),
                        }
                    }
                }
            }
            assert!(skipped > 600, "the 70,000-byte fragment's chunks are skipped: {skipped}");
            assert_eq!((asked, passed), expected, "dropping {drop:?}");
        }
    }

    /// A small deterministic sequence, for random streams and cuts.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *state >> 33
    }

    /// Random streams of frames (fragmented or not, control frames between, payloads of every
    /// length form) and random bytes, cut at random: whatever the cuts, the same frames are asked
    /// about and the same bytes pass, and nothing panics.
    #[test]
    fn random_streams_read_the_same_whatever_the_cuts() {
        let mut state = 7;
        for round in 0..300 {
            let mut stream = Vec::new();
            let frames = next(&mut state) % 12;
            for _ in 0..frames {
                let kind = next(&mut state) % 10;
                let length = match next(&mut state) % 4 {
                    0 => next(&mut state) % 126,
                    1 => 126 + next(&mut state) % 400,
                    2 => 65_536 + next(&mut state) % 3,
                    _ => 0,
                } as usize;
                let payload: Vec<u8> = (0..length).map(|_| next(&mut state) as u8).collect();
                let first = match kind {
                    0..=3 => FIN | TEXT,
                    4 => BINARY,
                    5 => CONTINUATION,
                    6 => FIN | CONTINUATION,
                    7 => FIN | PING,
                    8 => FIN | CLOSE,
                    _ => next(&mut state) as u8,
                };
                stream.extend_from_slice(&client_frame(first, &payload));
            }
            if round % 5 == 0 {
                // Garbage: any bytes at all.
                let garbage = next(&mut state) % 64;
                stream.extend((0..garbage).map(|_| next(&mut state) as u8));
            }
            let drop: Vec<usize> = (0..frames as usize).filter(|_| next(&mut state) % 3 == 0).collect();
            let whole = run_pending(&stream, &[], &drop, None).0;
            let mut cuts: Vec<usize> =
                (0..next(&mut state) % 20).map(|_| (next(&mut state) as usize) % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let notice = server_text_frame("n");
            let (with_notices, _) = run_pending(&stream, &cuts, &drop, Some(&notice));
            assert_eq!(with_notices.0 .0, whole.0 .0, "the same frames asked about with notices: round {round}");
            assert_eq!(run_pending(&stream, &cuts, &drop, None).0, whole, "round {round}, cuts {cuts:?}");
        }
    }

    #[test]
    fn nothing_is_copied_while_every_message_passes() {
        let (stream, _) = sample();
        let mut scanner = Scanner::default();
        assert_eq!(scanner.scan(&stream, |_| Verdict::Pass, None), (Chunk::Unchanged, 0));
    }

    #[test]
    fn a_length_no_frame_can_have_leaves_the_rest_unread() {
        let mut stream = vec![FIN | TEXT, 127, 0xFF, 0, 0, 0, 0, 0, 0, 1];
        stream.extend_from_slice(&client_frame(FIN | TEXT, b"x"));
        let (asked, passed) = run(&stream, &[], &[]);
        assert_eq!(asked, vec![TEXT], "the frame after it is not read");
        // Inside a frame that never ends, a pending notice is never put into the stream.
        let mut scanner = Scanner::default();
        let mut pending = Vec::new();
        let (out, _) = scanner.scan(&stream[..12], |_| Verdict::Pass, Some((&mut pending, b"notice")));
        assert_eq!(out, Chunk::Unchanged);
        pending.extend_from_slice(b"notice");
        let (out, _) = scanner.scan(&stream[12..], |_| Verdict::Pass, Some((&mut pending, b"notice")));
        assert_eq!((out, pending.len()), (Chunk::Unchanged, 6));
        assert_eq!(passed, stream);
    }

    #[test]
    fn a_dropped_frame_whose_length_no_frame_can_have_takes_every_byte_after_it() {
        // Over the limit, a client cannot make the scanner stop reading by sending a length with
        // the top bit set: the frames after it, which a backend may still read, are not let
        // through uncounted.
        let mut stream = vec![FIN | TEXT, MASK | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let after = client_frame(FIN | TEXT, b"smuggled");
        stream.extend_from_slice(&after);
        for cuts in [vec![], vec![3], vec![14], vec![14, 16], (1..stream.len()).collect()] {
            let (asked, passed) = run(&stream, &cuts, &[0]);
            assert_eq!((asked, passed), (vec![TEXT], Vec::new()), "cuts {cuts:?}");
        }
    }

    #[test]
    fn a_server_frame_is_unmasked_with_its_length_in_the_shortest_form() {
        assert_eq!(server_text_frame("ok"), vec![FIN | TEXT, 2, b'o', b'k']);
        let long = "x".repeat(300);
        let frame = server_text_frame(&long);
        assert_eq!(&frame[..4], &[FIN | TEXT, 126, 1, 44]);
        assert_eq!(frame.len(), 304);
        let (asked, passed) = run(&frame, &[3], &[]);
        assert_eq!((asked, passed), (vec![TEXT], frame.clone()));
    }
}
