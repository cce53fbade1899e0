//! A response whose server-sent events are counted (`count_server_sent_events`, a control
//! plane's server-sent-events API with `event_apis: count_messages`), as API-M's gateway counts a
//! server-sent-events API's (`SseResponseStreamInterceptor`: each event one throttle event, the
//! stream ended once a key is over): the request's plan of counters, the events read.

use std::rc::Rc;

use super::{with_worker_engines, Stream};
use crate::catalogue::{Fault, FaultId};
use crate::event_stream::EventScanner;
use crate::host::{Direction, Host};
use crate::throttle::frames::{byte_counters, count_frame, refused_now, FrameCount};
use crate::throttle::Counter;

/// A response's event counting.
#[derive(Debug)]
pub(super) struct Events {
    /// What each event counts at, planned with the request.
    counters: Vec<Counter>,
    scanner: EventScanner,
    /// An event was over a limit: the stream was cut there, and nothing more of it goes on (it is
    /// reset soon after if the chunk that was cut still went on: by the root context's tick, or
    /// with the backend's next bytes, whichever comes first).
    ended: bool,
    /// The cut chunk went on: the stream is to be reset once Envoy has sent it on.
    close_due: bool,
    /// The stream was reset.
    closed: bool,
}

impl Stream {
    /// Whether an event stream's request is refused before its backend is asked, its first event
    /// being refused now (nothing counted), as API-M's gateway answers a server-sent-events
    /// request whose key is already over: the level's fault.
    pub(super) fn events_refused_now(&mut self, host: &mut impl Host, counters: &[Counter], now: u64) -> Option<Fault> {
        let config = Rc::clone(&self.config);
        let (refused, refills) = with_worker_engines(&config, &self.worker, host, |engine, host| {
            refused_now(&config.throttle, engine, host, counters, now)
        });
        self.start_refills(host, &config, refills, now);
        refused.map(Fault::new)
    }

    /// A request whose answer's events are counted.
    pub(super) fn count_events_from_now(&mut self, counters: Vec<Counter>) {
        self.byte_counters = byte_counters(&counters);
        self.events = Some(Box::new(Events {
            counters,
            scanner: EventScanner::default(),
            ended: false,
            close_due: false,
            closed: false,
        }));
    }

    /// The backend answered: only a success carries events (an error's body is not counted).
    pub(super) fn stream_answered(&mut self, status: u16) {
        if !(200..300).contains(&status) {
            self.events = None;
        }
    }

    /// Counts the events of a response chunk (`size` bytes): the first over a limit ends the
    /// stream where it starts (the chunk cut there, the stream reset).
    pub(super) fn count_events(&mut self, host: &mut impl Host, size: usize) {
        let Some(events) = self.events.as_deref_mut() else { return };
        if events.ended {
            // The chunk that ended the stream went on with the events before the cut: the
            // stream is reset now, with nothing more of it.
            host.replace_body_chunk(Direction::Response, size, &[]);
            events.close(host);
            return;
        }
        if size == 0 {
            return;
        }
        let Some(chunk) = host.body_chunk(Direction::Response, size) else {
            // Bytes gone by unread: the events after them cannot be followed; the stream ends.
            events.ended = true;
            host.replace_body_chunk(Direction::Response, size, &[]);
            events.close(host);
            return;
        };
        // Without the clock nothing is counted: the events pass (still read, to stay in step).
        let now = host.now().ok();
        let config = Rc::clone(&self.config);
        let Events { counters, scanner, ended, close_due, closed } = events;
        let (mut uncounted, mut dropped_by) = (None, None);
        let (cut, refills) = with_worker_engines(&config, &self.worker, host, |engine, host| {
            scanner.scan(&chunk, || {
                let Some(now) = now else { return true };
                let FrameCount { passed, uncounted: why, dropped_by: by } =
                    count_frame(&config.throttle, engine, host, counters, now);
                uncounted = why.or(uncounted);
                dropped_by = by;
                passed
            })
        });
        *ended = cut.is_some();
        let admitted = cut.map(|at| chunk.get(..at).unwrap_or_default());
        // Reset now, Envoy drops the chunk: events before the cut, counted, would never arrive.
        // They go on, and the stream is reset on the root context's next tick (or with the
        // backend's next bytes, if they come first).
        let reset_now = admitted.is_some_and(<[u8]>::is_empty);
        *close_due = admitted.is_some() && !reset_now;
        *closed |= reset_now;
        let now = now.unwrap_or_default();
        self.start_refills(host, &config, refills, now);
        if let Some(admitted) = admitted {
            host.replace_body_chunk(Direction::Response, size, admitted);
            if reset_now {
                host.close_stream();
            }
            self.count_refused(host, &Fault::new(dropped_by.unwrap_or(FaultId::ThrottleInternalError)));
        }
        if let Some(why) = uncounted {
            self.report_uncounted(host, why, now);
        }
    }

    /// Whether the last callback cut the stream's events and let the cut chunk go on, so that
    /// the stream is to be reset once Envoy has sent it (taken once): the glue asks the root
    /// context's tick to call [`Stream::close_after_cut`].
    pub fn take_close_due(&mut self) -> bool {
        self.events.as_deref_mut().is_some_and(|events| std::mem::take(&mut events.close_due))
    }

    /// Resets a stream whose events were cut, if it is not already (the tick after the cut
    /// chunk went on): a backend that goes quiet right after the cut does not keep the client
    /// connected, as API-M's gateway closes the stream at once.
    pub fn close_after_cut(&mut self, host: &mut impl Host) {
        if let Some(events) = self.events.as_deref_mut().filter(|events| events.ended) {
            events.close(host);
        }
    }
}

impl Events {
    fn close(&mut self, host: &mut impl Host) {
        if !self.closed {
            self.closed = true;
            host.close_stream();
        }
    }
}
