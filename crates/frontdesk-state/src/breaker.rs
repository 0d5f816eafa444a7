//! A circuit breaker in front of Redis: once a call timed out or found the server gone,
//! calls fail at once with `Unavailable` instead of each waiting out the response timeout,
//! so a paused or dead Redis costs a request microseconds, not seconds (and an event that
//! makes several calls does not wait several timeouts).
//!
//! States: *closed* (calls go through) and *open* (calls fail fast). The call that finds
//! Redis gone opens the breaker and starts the one prober (see [`guard`]), which pings
//! Redis in the background until it answers and then closes the breaker; requests
//! themselves never wait on a probe. Calls already waiting on Redis when the breaker opens
//! fail then too: otherwise a call sent a moment before the first timeout waited out a
//! whole timeout of its own, and a request queued behind another waited two.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use frontdesk_core::error::BackendError;
use parking_lot::Mutex;

use redis::aio::ConnectionManager;
use redis::RedisError;
use tokio::sync::watch;

/// While the breaker is open, how often the prober pings Redis.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The breaker of the Redis server at `url` in this process: the state store, pub/sub and
/// the bus on one server open and close together, so a request that makes calls through
/// several of them waits at most one timeout when the server goes silent (a send whose
/// push waited out a `PUBLISH` used to wait out its history `XADD` as well).
pub(crate) fn for_server(url: &str) -> Arc<Breaker> {
    static ALL: LazyLock<Mutex<HashMap<String, Weak<Breaker>>>> = LazyLock::new(Mutex::default);
    let mut all = ALL.lock();
    all.retain(|_, breaker| breaker.strong_count() > 0);
    if let Some(breaker) = all.get(url).and_then(Weak::upgrade) {
        return breaker;
    }
    let breaker = Arc::new(Breaker::default());
    all.insert(url.to_owned(), Arc::downgrade(&breaker));
    breaker
}

/// Runs `call` unless `breaker` is open, and ends it as soon as another call opens the
/// breaker; a refused call is `unavailable` in `backend`'s name, and Redis's own answer is
/// left to the caller to map. A call that finds Redis not answering opens the breaker and
/// starts the prober on `conn`.
pub(crate) async fn guard<T>(
    breaker: &Arc<Breaker>,
    conn: &ConnectionManager,
    backend: &'static str,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<Result<T, RedisError>, BackendError> {
    let failed_fast =
        || BackendError::unavailable(backend, "Redis is not answering; calls fail fast until it answers again");
    let mut open = breaker.watch();
    if !breaker.admits() {
        return Err(failed_fast());
    }
    let result = tokio::select! {
        result = call => result,
        Ok(_) = open.wait_for(|open| *open) => return Err(failed_fast()),
    };
    if let Err(e) = &result {
        if crate::redis_state::is_outage(e) && breaker.trip() {
            tokio::spawn(probe(conn.clone(), Arc::downgrade(breaker)));
        }
    }
    Ok(result)
}

/// Pings Redis every [`PROBE_EVERY`] until it answers, then closes the breaker. One runs
/// per outage; it also ends when every holder of the breaker is gone.
async fn probe(mut conn: ConnectionManager, breaker: Weak<Breaker>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let pong: Result<String, RedisError> = redis::cmd("PING").query_async(&mut conn).await;
        let Some(breaker) = breaker.upgrade() else { return };
        if pong.is_ok() {
            breaker.close();
            return;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    /// Open or not; calls in flight watch it.
    open: watch::Sender<bool>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { open: watch::Sender::new(false) }
    }
}

impl Breaker {
    /// Whether it is open now, and when that changes ([`guard`] waits for it to open).
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.open.subscribe()
    }

    /// Whether a call may go to Redis now.
    pub(crate) fn admits(&self) -> bool {
        !*self.open.borrow()
    }

    /// Opens the breaker after a call found Redis not answering; true for the one caller
    /// that opened it (and so starts the prober).
    pub(crate) fn trip(&self) -> bool {
        let opened = self.open.send_if_modified(|open| !std::mem::replace(open, true));
        if opened {
            tracing::warn!("Redis did not answer: failing calls fast until it does");
        }
        opened
    }

    /// The prober saw Redis answer.
    pub(crate) fn close(&self) {
        if self.open.send_if_modified(|open| std::mem::replace(open, false)) {
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

    #[test]
    fn clients_of_one_server_share_its_breaker_and_other_servers_have_their_own() {
        let a = for_server("redis://127.0.0.1:1/");
        let again = for_server("redis://127.0.0.1:1/");
        let other = for_server("redis://127.0.0.1:2/");
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &other));
        assert!(a.trip());
        assert!(!again.admits(), "opened for every client of the server");
        assert!(other.admits());
    }

    #[tokio::test]
    async fn a_call_in_flight_hears_the_trip_and_a_later_trip_only_once_open_again() {
        let b = Breaker::default();
        let mut in_flight = b.watch();
        assert!(!in_flight.has_changed().expect("sender alive"));
        assert!(b.trip());
        tokio::time::timeout(std::time::Duration::from_secs(1), in_flight.changed())
            .await
            .expect("told at once")
            .expect("sender alive");
        // Already open: a second failure is no new trip for calls that started since.
        let later = b.watch();
        assert!(!b.trip());
        assert!(!later.has_changed().expect("sender alive"));
        b.close();
        assert!(b.trip());
        assert!(later.has_changed().expect("sender alive"));
    }
}
