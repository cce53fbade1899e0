//! The streams model's WebSocket connections: frames generated as RFC 6455 has them (a client's
//! masked, a backend's not; fragmented messages with control frames between their fragments;
//! every opcode, reserved ones too), the model of what each chunk becomes (README.md "WebSocket
//! frames": each data frame counted at its first byte, one over a limit dropped with the rest of
//! its message, the notice put in towards the client at the first frame boundary outside a
//! fragmented message, at most 16 waiting), compared with the stream's.

use super::*;

const FIN: u8 = 0x80;

/// A frame as generated: where it is in its direction's bytes, its opcode and final bit, and
/// whether a fragmented message is under way when it starts and once it ends.
#[derive(Clone, Debug)]
struct Frame {
    start: usize,
    end: usize,
    opcode: u8,
    fin: bool,
    inside: bool,
    inside_after: bool,
}

/// One direction's bytes as they are generated.
struct Builder {
    bytes: Vec<u8>,
    frames: Vec<Frame>,
    inside: bool,
    masked: bool,
}

impl Builder {
    fn push(&mut self, rng: &mut Rng, opcode: u8, fin: bool, len: usize) {
        let start = self.bytes.len();
        self.bytes.push(if fin { FIN | opcode } else { opcode });
        let mask = if self.masked { 0x80 } else { 0 };
        match len {
            0..=125 => self.bytes.push(mask | len as u8),
            126..=0xFFFF => {
                self.bytes.push(mask | 126);
                self.bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.bytes.push(mask | 127);
                self.bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let key = rng.next().to_le_bytes();
        if self.masked {
            self.bytes.extend_from_slice(&key[..4]);
        }
        let masked = self.masked;
        self.bytes.extend((0..len).map(|at| (at as u8).wrapping_mul(31) ^ if masked { key[at % 4] } else { 0 }));
        let inside = self.inside;
        if opcode < 8 {
            self.inside = !fin;
        }
        self.frames.push(Frame { start, end: self.bytes.len(), opcode, fin, inside, inside_after: self.inside });
    }

    /// A ping, a pong or a reserved control opcode (0xB-0xF), at most 125 bytes.
    fn control(&mut self, rng: &mut Rng) {
        let reserved = 0xB + rng.below(5) as u8;
        let opcode = *rng.pick(&[0x9, 0xA, 0x9, 0xA, reserved]);
        let len = rng.below(126);
        self.push(rng, opcode, true, len);
    }
}

/// A data frame's payload length: the length forms' edges, now and then a large one.
fn data_length(rng: &mut Rng, stats: &mut Stats) -> usize {
    let len = match rng.below(40) {
        0 | 1 => 125,
        2 | 3 => 126,
        4 => 127,
        5 => 65_535,
        6 => 65_536,
        7 | 8 => 0,
        9..=12 => 126 + rng.below(300),
        _ => rng.below(40),
    };
    if len >= 65_535 {
        *stats.entry("ws large frame").or_insert(0) += 1;
    }
    len
}

/// One direction's frames.
fn frames(rng: &mut Rng, masked: bool, stats: &mut Stats) -> (Vec<u8>, Vec<Frame>) {
    let mut b = Builder { bytes: Vec::new(), frames: Vec::new(), inside: false, masked };
    // Now and then a flood of small frames (over a limit, more notices than wait).
    let count = if rng.chance(10) { 20 + rng.below(15) } else { 1 + rng.below(8) };
    for _ in 0..count {
        let opcode = *rng.pick(&[1, 2]);
        match rng.below(20) {
            0..=8 => {
                let len = data_length(rng, stats);
                b.push(rng, opcode, true, len);
            }
            9..=12 => {
                let len = data_length(rng, stats);
                b.push(rng, opcode, false, len);
                for _ in 0..rng.below(3) {
                    if rng.chance(40) {
                        b.control(rng);
                    }
                    let len = data_length(rng, stats);
                    b.push(rng, 0, false, len);
                }
                if rng.chance(40) {
                    b.control(rng);
                }
                let len = data_length(rng, stats);
                b.push(rng, 0, true, len);
            }
            13..=15 => b.control(rng),
            // A reserved data opcode (0x3-0x7): a data frame all the same.
            16 => {
                let (opcode, len) = (3 + rng.below(5) as u8, rng.below(40));
                b.push(rng, opcode, true, len);
            }
            _ => {
                let len = rng.below(3);
                b.push(rng, opcode, true, len);
            }
        }
    }
    if rng.chance(30) {
        b.push(rng, 0x8, true, 2);
    }
    (b.bytes, b.frames)
}

/// The model of one direction.
#[derive(Default)]
struct Side {
    /// Each frame decided so far: whether it goes on.
    kept: Vec<bool>,
    /// The message under way was dropped.
    dropping: bool,
}

/// What the model needs of a chunk.
struct Ctx<'a> {
    frames: &'a [Frame],
    bytes: &'a [u8],
    backend: bool,
    levels: &'a [Lvl],
    now: u64,
}

impl Side {
    /// The chunk `a..b` as the model has it go on, and the frames dropped in it.
    fn chunk(
        &mut self,
        c: &Ctx,
        (a, b): (usize, usize),
        pending: &mut usize,
        ledger: &mut Ledger,
        stats: &mut Stats,
    ) -> (Vec<u8>, usize) {
        let notice = websocket_notice();
        let mut out = Vec::new();
        let mut drops = 0;
        let who = if c.backend { "backend" } else { "client" };
        for (i, f) in c.frames.iter().enumerate().filter(|(_, f)| f.start < b && f.end > a) {
            if f.start >= a {
                if c.backend && !f.inside && *pending > 0 {
                    out.extend(notice.repeat(*pending));
                    *pending = 0;
                    *stats.entry("ws notice sent").or_insert(0) += 1;
                }
                let data = f.opcode < 8;
                let kept = if !data {
                    *stats.entry("ws control frame passed").or_insert(0) += 1;
                    true
                } else if f.opcode == 0 && self.dropping {
                    *stats.entry("ws fragment dropped with its message").or_insert(0) += 1;
                    false
                } else {
                    ledger.take(c.levels, c.now, stats).is_ok()
                };
                if data {
                    let class = match (c.backend, kept) {
                        (false, true) => "ws client frame passed",
                        (false, false) => "ws client frame dropped",
                        (true, true) => "ws backend frame passed",
                        (true, false) => "ws backend frame dropped",
                    };
                    *stats.entry(class).or_insert(0) += 1;
                }
                if data && !kept {
                    drops += 1;
                    self.dropping = true;
                    if c.backend {
                        queue(pending, stats);
                    }
                }
                if data && f.fin {
                    self.dropping = false;
                }
                assert_eq!(self.kept.len(), i, "{who} frames decided in order");
                self.kept.push(kept);
            }
            if self.kept[i] {
                out.extend_from_slice(&c.bytes[f.start.max(a)..f.end.min(b)]);
            }
        }
        if !c.backend {
            for _ in 0..drops {
                queue(pending, stats);
            }
        }
        let boundary = b == 0 || c.frames.iter().any(|f| f.end == b && !f.inside_after);
        if c.backend && *pending > 0 && boundary {
            out.extend(notice.repeat(*pending));
            *pending = 0;
            *stats.entry("ws notice sent").or_insert(0) += 1;
        }
        (out, drops)
    }
}

/// A notice owed to the client, unless 16 wait already.
fn queue(pending: &mut usize, stats: &mut Stats) {
    if *pending < MAX_NOTICES {
        *pending += 1;
    } else {
        *stats.entry("ws notices capped").or_insert(0) += 1;
    }
}

/// The notice as a server's text frame (RFC 6455: unmasked, the shortest length form).
fn websocket_notice() -> Vec<u8> {
    assert!(NOTICE.len() <= 125);
    [&[FIN | 1, NOTICE.len() as u8][..], NOTICE].concat()
}

/// One connection: the handshake (checked, not counted, upgraded whatever the tiers say), then
/// both directions' chunks interleaved at random.
#[allow(clippy::too_many_arguments)]
pub(super) fn connection(
    rng: &mut Rng,
    host: &mut FakeHost,
    mut stream: Stream,
    levels: &[Lvl],
    ledger: &mut Ledger,
    now: &mut u64,
    stats: &mut Stats,
    trace: bool,
) -> Option<(String, String)> {
    let flow = stream.on_request_headers(host, false);
    if flow != Flow::Continue || host.sent.is_some() || !host.counted.is_empty() {
        return Some(("ws handshake not upgraded".into(), format!("{flow:?} {:?} {:?}", host.sent, host.counted)));
    }
    host.response = [(":status".to_string(), b"101".to_vec())].into_iter().collect();
    stream.on_response_headers(host);
    let directions = [frames(rng, true, stats), frames(rng, false, stats)];
    let cut: Vec<Vec<usize>> = directions
        .iter()
        .map(|(bytes, frames)| {
            let marks: Vec<(usize, usize)> = frames.iter().map(|f| (f.start, f.end)).collect();
            cuts(rng, bytes.len(), &marks)
        })
        .collect();
    let mut next = [0usize, 0];
    let mut sides = [Side::default(), Side::default()];
    let mut pending = 0;
    loop {
        let left = [next[0] + 1 < cut[0].len(), next[1] + 1 < cut[1].len()];
        let d = match left {
            [false, false] => return None,
            [true, true] => rng.below(2),
            [true, false] => 0,
            _ => 1,
        };
        if rng.chance(25) {
            advance(rng, now);
        }
        host.now = *now;
        let (a, b) = (cut[d][next[d]], cut[d][next[d] + 1]);
        next[d] += 1;
        let (bytes, frames) = &directions[d];
        ledger.charge(levels, *now, b - a);
        let ctx = Ctx { frames, bytes, backend: d == 1, levels, now: *now };
        let (expected, drops) = sides[d].chunk(&ctx, (a, b), &mut pending, ledger, stats);
        host.bodies[d] = bytes[a..b].to_vec();
        let before = host.counted.len();
        let flow = match d {
            0 => stream.on_request_body(host, b - a, false),
            _ => stream.on_response_body(host, b - a, false),
        };
        let got = &host.bodies[d];
        let who = if d == 0 { "client" } else { "backend" };
        if trace {
            eprintln!(
                "{who} {a}..{b} now {now}: model {} bytes, {drops} drops; filter {} bytes",
                expected.len(),
                got.len()
            );
        }
        if *got != expected {
            let at = got.iter().zip(&expected).position(|(x, y)| x != y).unwrap_or(got.len().min(expected.len()));
            return Some((
                format!("ws {who} chunk"),
                format!("{a}..{b} now {now}: {} bytes, model {}, first difference at {at}", got.len(), expected.len()),
            ));
        }
        let faults = &host.counted[before..];
        if faults.len() != drops || faults.iter().any(|code| *code != 4008) {
            return Some((format!("ws {who} faults counted"), format!("{a}..{b}: {faults:?}, model {drops}")));
        }
        if flow != Flow::Continue || host.closed {
            return Some(("ws connection cut".into(), format!("{a}..{b}: {flow:?}, closed {}", host.closed)));
        }
    }
}
