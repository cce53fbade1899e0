//! A WebSocket connection whose frames are counted (`count_websocket_frames`, a control plane's
//! WebSocket API with `event_apis: count_messages`): the handshake's plan of counters, the frames
//! read in each direction, the dropped frames' notices to the client.

use std::rc::Rc;

use super::{with_worker_engines, Stream};
use crate::catalogue::{Fault, FaultId};
use crate::host::{Direction, Host};
use crate::render;
use crate::throttle::frames::{byte_counters, count_frame, FrameCount};
use crate::throttle::Counter;
use crate::websocket::{self, Chunk, Scanner, Verdict};

/// A connection's frame counting.
#[derive(Debug)]
pub(super) struct Frames {
    /// What each frame counts at, planned at the handshake.
    counters: Vec<Counter>,
    /// The client's frames.
    from_client: Scanner,
    /// The backend's frames, read once the backend accepted the upgrade.
    from_backend: Scanner,
    /// Notices not yet sent to the client (a client's dropped frame's, until the backend sends).
    pending: Vec<u8>,
    /// The notice frame sent in place of a dropped frame.
    notice: Vec<u8>,
    /// The connection's credential lapsed (expired, revoked, or its caller blocked), as found
    /// before this client chunk is read: its first data frame ends the connection.
    pub(super) lapsed: Option<FaultId>,
}

impl Frames {
    pub(super) fn new(counters: Vec<Counter>, notice_text: &str) -> Frames {
        Frames {
            counters,
            from_client: Scanner::default(),
            from_backend: Scanner::default(),
            pending: Vec::new(),
            notice: websocket::server_text_frame(notice_text),
            lapsed: None,
        }
    }
}

impl Stream {
    /// A handshake whose frames are counted: the notice its dropped frames get, rendered once.
    /// `early_bytes`: what the client sent while the handshake waited on a call (RFC 6455 forbids
    /// it), which Envoy forwards unread: the client's frames cannot be followed after them, and
    /// nothing more of the client's is forwarded (else a frame read out of step could carry the
    /// rest uncounted).
    pub(super) fn count_frames_from_now(&mut self, counters: Vec<Counter>, early_bytes: u64) {
        let text = render::websocket_frame_text(&Fault::new(FaultId::WebsocketFrameThrottled), &self.config.errors);
        let mut frames = Frames::new(counters, &text);
        if early_bytes > 0 {
            frames.from_client = Scanner::dropping_everything();
        }
        self.byte_counters = byte_counters(&frames.counters);
        self.frames = Some(Box::new(frames));
    }

    /// The backend answered the handshake: its frames are read only if it accepted the upgrade.
    pub(super) fn handshake_answered(&mut self, status: u16) {
        if status != 101 {
            self.frames = None;
        }
    }

    /// Counts the frames of a body chunk (`size` bytes) of a connection whose frames are counted:
    /// a frame over a limit is taken out of the chunk, and the client is sent the notice in its
    /// place (for its own frame, with the next bytes the backend sends).
    pub(super) fn count_frames(&mut self, host: &mut impl Host, direction: Direction, size: usize) {
        let Some(frames) = self.frames.as_deref_mut() else { return };
        let lapsed = frames.lapsed.take();
        // Without counters (a connection followed only for its lapse) the backend's are not read.
        if (size == 0 && frames.pending.is_empty()) || (frames.counters.is_empty() && direction == Direction::Response)
        {
            return;
        }
        // The middle of a large frame: passed or dropped whole, never copied out of Envoy.
        let scanner = match direction {
            Direction::Request => &mut frames.from_client,
            Direction::Response => &mut frames.from_backend,
        };
        if let Some(dropped) = scanner.skip_payload(size) {
            if dropped {
                host.replace_body_chunk(direction, size, &[]);
            }
            return;
        }
        let Some(chunk) = host.body_chunk(direction, size) else {
            if frames.counters.is_empty() {
                // Followed only for its lapse: not followed any more (any bytes after it end it).
                self.frames = None;
                if let Some(fault) = lapsed {
                    self.end_connection(host, size, fault);
                }
                return;
            }
            // Bytes gone by unread: the frames after them cannot be followed (read out of step,
            // one could carry the rest uncounted), and nothing more goes that way.
            crate::host::warn_repeated(host.gateway_scope(), "frames_unreadable", 0, || {
                "a WebSocket body chunk cannot be read: the connection's direction is cut".to_string()
            });
            let scanner = match direction {
                Direction::Request => &mut frames.from_client,
                Direction::Response => &mut frames.from_backend,
            };
            *scanner = Scanner::dropping_everything();
            host.replace_body_chunk(direction, size, &[]);
            return;
        };
        // A connection followed only for its lapse counts nothing: no clock read.
        let now = if frames.counters.is_empty() { Some(0) } else { host.now().ok() };
        if now.is_none() {
            // Nothing is counted without the clock: the frames pass (still read, to stay in step
            // with them), and the log says so.
            crate::host::warn_repeated(host.gateway_scope(), "frames_clock", 0, || {
                "the host clock cannot be read: WebSocket frames pass uncounted".to_string()
            });
        }
        let config = Rc::clone(&self.config);
        let Frames { counters, from_client, from_backend, pending, notice, .. } = frames;
        let mut uncounted = None;
        let mut ended = false;
        let ((chunk_out, drops), refills) = with_worker_engines(&config, &self.worker, host, |engine, host| {
            let mut decide = |_| {
                if lapsed.is_some() {
                    ended = true;
                    return Verdict::Drop;
                }
                let Some(now) = now else { return Verdict::Pass };
                let FrameCount { passed, uncounted: why, .. } =
                    count_frame(&config.throttle, engine, host, counters, now);
                uncounted = why.or(uncounted);
                if passed {
                    Verdict::Pass
                } else {
                    Verdict::Drop
                }
            };
            match direction {
                Direction::Request => {
                    let scanned = from_client.scan(&chunk, &mut decide, None);
                    for _ in 0..scanned.1.min(websocket::MAX_PENDING_NOTICES as u32) {
                        websocket::queue_notice(pending, notice);
                    }
                    scanned
                }
                Direction::Response => from_backend.scan(&chunk, &mut decide, Some((pending, notice))),
            }
        });
        if let Some(fault) = lapsed.filter(|_| ended) {
            self.end_connection(host, size, fault);
            return;
        }
        let now = now.unwrap_or_default();
        self.start_refills(host, &config, refills, now);
        if let Chunk::Rewritten(bytes) = chunk_out {
            host.replace_body_chunk(direction, size, &bytes);
        }
        let fault = &Fault::new(FaultId::WebsocketFrameThrottled);
        for _ in 0..drops {
            self.count_refused(host, fault);
        }
        if let Some(why) = uncounted {
            self.report_uncounted(host, why, now);
        }
    }
}
