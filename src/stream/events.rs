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
    /// reset with the backend's next bytes if the chunk that was cut still went on).
    ended: bool,
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
        self.events = Some(Box::new(Events { counters, scanner: EventScanner::default(), ended: false }));
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
            host.close_stream();
            return;
        }
        if size == 0 {
            return;
        }
        let Some(chunk) = host.body_chunk(Direction::Response, size) else {
            // Bytes gone by unread: the events after them cannot be followed; the stream ends.
            events.ended = true;
            host.replace_body_chunk(Direction::Response, size, &[]);
            host.close_stream();
            return;
        };
        // Without the clock nothing is counted: the events pass (still read, to stay in step).
        let now = host.now().ok();
        let config = Rc::clone(&self.config);
        let Events { counters, scanner, ended } = events;
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
        let now = now.unwrap_or_default();
        self.start_refills(host, &config, refills, now);
        if let Some(at) = cut {
            let admitted = chunk.get(..at).unwrap_or_default();
            host.replace_body_chunk(Direction::Response, size, admitted);
            // Reset now, Envoy drops the chunk: events before the cut, counted, would never
            // arrive. They go on, and the stream is reset with the backend's next bytes.
            if admitted.is_empty() {
                host.close_stream();
            }
            self.count_refused(host, &Fault::new(dropped_by.unwrap_or(FaultId::ThrottleInternalError)));
        }
        if let Some(why) = uncounted {
            self.report_uncounted(host, why, now);
        }
    }
}
