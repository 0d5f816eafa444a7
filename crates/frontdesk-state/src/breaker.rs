//! A circuit breaker in front of Redis: once a call timed out or found the server gone,
//! calls fail at once with `Unavailable` instead of each waiting out the response timeout,
//! so a paused or dead Redis costs a request microseconds, not seconds (and an event that
//! makes several calls does not wait several timeouts).
//!
//! States: *closed* (calls go through) and *open* (calls fail fast). The call that finds
//! Redis gone opens the breaker and is told to start the one prober (see
//! `RedisState::settle`), which pings Redis in the background until it answers and then
//! closes the breaker; requests themselves never wait on a probe.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Breaker {
    open: AtomicBool,
}

impl Breaker {
    /// Whether a call may go to Redis now.
    pub(crate) fn admits(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// Opens the breaker after a call found Redis not answering; true for the one caller
    /// that opened it (and so starts the prober).
    pub(crate) fn trip(&self) -> bool {
        let opened = !self.open.swap(true, Ordering::AcqRel);
        if opened {
            tracing::warn!("Redis did not answer: failing calls fast until it does");
        }
        opened
    }

    /// The prober saw Redis answer.
    pub(crate) fn close(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::info!("Redis answers again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trip_opens_it_once_and_the_prober_closes_it() {
        let b = Breaker::default();
        assert!(b.admits());
        assert!(b.trip(), "the first failure opens it and starts the prober");
        assert!(!b.trip(), "later failures do not start another prober");
        assert!(!b.admits());
        b.close();
        assert!(b.admits());
        assert!(b.trip(), "a new outage opens it again");
    }
}
