//! Which requests wait for which call: a worker's JWKS fetch, or another request's introspection
//! of the same token (the glue resumes them together when the call answers). A request Envoy
//! deletes while it waits leaves its call's list at the cost of that one entry: scanning every
//! list on every deletion made a flood of requests that wait (tokens naming a `kid` the keys
//! lack, while the fetch is under way) and are reset cost the worker the square of their number.

use std::collections::{BTreeSet, HashMap};

/// The requests (stream context ids) waiting for each fetch (call token).
#[derive(Debug, Default)]
pub struct FetchWaiters {
    by_fetch: HashMap<u32, BTreeSet<u32>>,
    fetch_of: HashMap<u32, u32>,
    /// Entries looked at to forget a request (what tests measure).
    #[cfg(test)]
    looked_at: usize,
}

impl FetchWaiters {
    /// `stream` waits for `fetch` (and for no other fetch).
    pub fn wait(&mut self, fetch: u32, stream: u32) {
        self.forget(stream);
        self.by_fetch.entry(fetch).or_default().insert(stream);
        self.fetch_of.insert(stream, fetch);
    }

    /// `stream` waits no more (Envoy deleted it).
    pub fn forget(&mut self, stream: u32) {
        let Some(fetch) = self.fetch_of.remove(&stream) else { return };
        #[cfg(test)]
        {
            self.looked_at += 1;
        }
        if let Some(streams) = self.by_fetch.get_mut(&fetch) {
            streams.remove(&stream);
            if streams.is_empty() {
                self.by_fetch.remove(&fetch);
            }
        }
    }

    /// The requests that waited for `fetch`, which has answered (in the order they came, as
    /// Envoy numbers its contexts).
    pub fn answered(&mut self, fetch: u32) -> Vec<u32> {
        let streams = self.by_fetch.remove(&fetch).unwrap_or_default();
        for stream in &streams {
            self.fetch_of.remove(stream);
        }
        streams.into_iter().collect()
    }

    /// Whether any request waits for `call`.
    pub fn is_awaited(&self, call: u32) -> bool {
        self.by_fetch.contains_key(&call)
    }

    /// Requests waiting, over all fetches.
    pub fn len(&self) -> usize {
        self.fetch_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fetch_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_reset_while_they_wait_cost_one_entry_each() {
        let mut waiters = FetchWaiters::default();
        for stream in 0..10_000 {
            waiters.wait(7, stream);
        }
        waiters.wait(8, 50_000);
        for stream in 0..9_999 {
            waiters.forget(stream);
        }
        assert!(waiters.looked_at <= 10_000, "{} entries looked at for 9,999 resets", waiters.looked_at);
        assert_eq!(waiters.answered(7), vec![9_999]);
        assert_eq!(waiters.answered(7), Vec::<u32>::new(), "resumed once");
        waiters.forget(9_999);
        assert_eq!(waiters.len(), 1);
        // A request waits for one fetch at a time.
        waiters.wait(9, 50_000);
        assert!(waiters.is_awaited(9) && !waiters.is_awaited(8));
        assert_eq!((waiters.answered(8), waiters.answered(9)), (vec![], vec![50_000]));
        assert!(!waiters.is_awaited(9));
        assert!(waiters.is_empty());
    }
}
