//! The streams model's event streams: bodies in the `text/event-stream` format (WHATWG HTML
//! 9.2.6: lines ended by CRLF, LF or CR, blank lines ending events, comments, multi-line data, a
//! leading BOM), the model of what each chunk becomes (README.md "Server-sent events": each event
//! counted at its first byte, the first over a limit ending the stream where it starts; a request
//! whose first event would be refused answered with the level's fault), compared with the stream's.

use super::*;

const LINES: [&[u8]; 8] =
    [b"data: tick", b"data:", b"event: price", b"id: 7", b": keep-alive", b":", b"retry: 1000", b"data: {\"p\":1}"];
const ENDS: [&[u8]; 3] = [b"\n", b"\r\n", b"\r"];

fn body(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    if rng.chance(25) {
        s.extend_from_slice(BOM);
        if rng.chance(40) {
            s.extend_from_slice(rng.pick::<&[u8]>(&ENDS));
        }
    }
    for _ in 0..1 + rng.below(8) {
        if rng.chance(10) {
            s.extend_from_slice(rng.pick::<&[u8]>(&ENDS));
        }
        for _ in 0..1 + rng.below(3) {
            s.extend_from_slice(rng.pick::<&[u8]>(&LINES));
            s.extend_from_slice(rng.pick::<&[u8]>(&ENDS));
        }
        // The blank line (after a CR, a LF makes a CRLF: no blank line, the event goes on).
        s.extend_from_slice(rng.pick::<&[u8]>(&ENDS));
    }
    if rng.chance(20) {
        s.extend_from_slice(b"data: cut short");
    }
    s
}

/// Where each event starts (WHATWG: a leading BOM is no part of the stream, lines end with CRLF,
/// LF or CR, an event is the lines up to a blank line: a stream that starts with a BOM and a
/// blank line has no event there).
fn event_starts(body: &[u8]) -> Vec<usize> {
    let bom = if body.starts_with(BOM) { BOM.len() } else { 0 };
    let mut at = bom;
    let (mut starts, mut in_event) = (Vec::new(), false);
    while at < body.len() {
        let start = at;
        let end = body[at..].iter().position(|b| *b == b'\n' || *b == b'\r').map_or(body.len(), |p| at + p);
        if end == start {
            in_event = false;
        } else if !in_event {
            starts.push(start);
            in_event = true;
        }
        at = end;
        if at < body.len() {
            at += if body[at] == b'\r' && body.get(at + 1) == Some(&b'\n') { 2 } else { 1 };
        }
    }
    starts
}

/// One event stream: its request (checked, not counted; refused when its first event would be),
/// then the backend's chunks.
#[allow(clippy::too_many_arguments)]
pub(super) fn stream(
    rng: &mut Rng,
    host: &mut FakeHost,
    mut stream: Stream,
    levels: &[Lvl],
    ledger: &mut Ledger,
    now: &mut u64,
    stats: &mut Stats,
    trace: bool,
) -> Option<(String, String)> {
    let refused = ledger.check(levels, *now, &mut false).err();
    let flow = stream.on_request_headers(host, true);
    let status = host.sent.as_ref().map(|sent| sent.0);
    if let Some((code, _)) = refused {
        *stats.entry("sse request refused").or_insert(0) += 1;
        if flow != Flow::Answered || status != Some(429) || host.counted != [code] {
            return Some(("sse request".into(), format!("model {code}: {flow:?} {status:?} {:?}", host.counted)));
        }
        return None;
    }
    if flow != Flow::Continue || status.is_some() || !host.counted.is_empty() {
        return Some(("sse request".into(), format!("model forwards: {flow:?} {status:?} {:?}", host.counted)));
    }
    let error = rng.chance(10);
    let answer: &[u8] = if error { b"503" } else { b"200" };
    host.response = [(":status".to_string(), answer.to_vec())].into_iter().collect();
    stream.on_response_headers(host);
    let body = body(rng);
    let starts = event_starts(&body);
    if body.starts_with(BOM) {
        *stats.entry("sse BOM").or_insert(0) += 1;
    }
    let marks: Vec<(usize, usize)> = starts.iter().map(|s| (*s, (*s + 4).min(body.len()))).collect();
    let cuts = cuts(rng, body.len(), &marks);
    let (mut ended, mut closed) = (false, false);
    for pair in cuts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if rng.chance(30) {
            advance(rng, now);
        }
        host.now = *now;
        ledger.charge(levels, *now, b - a);
        let mut expected = body[a..b].to_vec();
        let (mut close, mut due, mut fault) = (false, false, None);
        if error {
            *stats.entry("sse error answer passed").or_insert(0) += 1;
        } else if ended {
            expected.clear();
            close = !closed;
            if b > a {
                *stats.entry("sse bytes after the cut dropped").or_insert(0) += 1;
            }
        } else {
            for e in starts.iter().copied().filter(|e| a <= *e && *e < b) {
                match ledger.take(levels, *now, stats) {
                    Ok(()) => *stats.entry("sse event passed").or_insert(0) += 1,
                    Err((code, _)) => {
                        expected.truncate(e - a);
                        ended = true;
                        (close, due, fault) = (e == a, e > a, Some(code));
                        let class = if e == a { "sse cut where a chunk starts" } else { "sse cut inside a chunk" };
                        *stats.entry(class).or_insert(0) += 1;
                        break;
                    }
                }
            }
        }
        closed |= close;
        host.bodies[1] = body[a..b].to_vec();
        let (before, closes) = (host.counted.len(), host.closes);
        let flow = stream.on_response_body(host, b - a, false);
        let got_due = stream.take_close_due();
        let got = &host.bodies[1];
        if trace {
            eprintln!("{a}..{b} now {now}: model {expected:?} filter {got:?}");
        }
        if *got != expected {
            return Some(("sse chunk".into(), format!("{a}..{b} of {body:?}: {got:?}, model {expected:?}")));
        }
        let faults: Vec<u32> = host.counted[before..].to_vec();
        if faults != fault.into_iter().collect::<Vec<_>>() {
            return Some(("sse fault counted".into(), format!("{a}..{b} of {body:?}: {faults:?}, model {fault:?}")));
        }
        if (host.closes - closes, got_due) != (u32::from(close), due) || flow != Flow::Continue {
            return Some((
                "sse stream reset".into(),
                format!("{a}..{b} of {body:?}: resets {} due {got_due}, model {close} {due}", host.closes - closes),
            ));
        }
        // The root context's tick, now and then before the backend's next bytes.
        if due && rng.chance(50) {
            stream.close_after_cut(host);
            closed = true;
            if host.closes - closes != 1 {
                return Some(("sse stream reset".into(), "the tick did not reset the cut stream".into()));
            }
        }
    }
    None
}
