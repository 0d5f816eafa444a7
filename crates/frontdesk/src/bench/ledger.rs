//! The bench's record of every message sent and every delivery seen, so it can report
//! latency percentiles and — the point of a chat benchmark — messages lost or delivered twice.
//!
//! A message's content carries its key and its send time (`key|unix_micros|padding`), so a
//! receiver needs no shared clock lookup to stamp the latency.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Builds a message body of `size` bytes carrying `key` and the send time.
pub fn body(key: &str, size: usize) -> String {
    let mut s = format!("{key}|{}|", now_micros());
    while s.len() < size {
        s.push('x');
    }
    s
}

/// The key and send time (µs) of a body made by [`body`].
pub fn parse(content: &str) -> Option<(&str, u64)> {
    let mut parts = content.splitn(3, '|');
    let key = parts.next()?;
    let at = parts.next()?.parse().ok()?;
    Some((key, at))
}

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Sent keys, deliveries per key, latency of first deliveries.
pub struct Ledger {
    sent: HashMap<String, u64>,
    delivered: HashMap<String, u32>,
    latency: Histogram<u64>,
    counted: u64,
}

/// What a run amounts to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub delivered: u64,
    /// Sent and never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a message.
    pub duplicated: u64,
    /// Deliveries of keys never sent (a server inventing or mangling messages).
    pub unknown: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    pub fn new() -> Self {
        // 1 µs to 60 s at 3 significant figures.
        let latency = Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
        Ledger { sent: HashMap::new(), delivered: HashMap::new(), latency, counted: 0 }
    }

    pub fn sent(&mut self, key: &str) {
        self.sent.insert(key.to_string(), now_micros());
    }

    /// A delivery of a body seen at `at_micros`.
    pub fn delivered(&mut self, content: &str, at_micros: u64) {
        let Some((key, sent_at)) = parse(content) else {
            self.delivered.entry(String::new()).and_modify(|n| *n += 1).or_insert(1);
            return;
        };
        let n = self.delivered.entry(key.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 && self.sent.contains_key(key) {
            self.counted += 1;
            let _ = self.latency.record(at_micros.saturating_sub(sent_at).max(1));
        }
    }

    /// First deliveries of sent messages so far (what throughput counts).
    pub fn counted(&self) -> u64 {
        self.counted
    }

    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    pub fn tally(&self) -> Tally {
        let mut t = Tally { sent: self.sent.len() as u64, ..Tally::default() };
        for (key, n) in &self.delivered {
            if self.sent.contains_key(key) {
                t.delivered += 1;
                t.duplicated += u64::from(n.saturating_sub(1));
            } else {
                t.unknown += u64::from(*n);
            }
        }
        t.lost = self.sent.keys().filter(|k| !self.delivered.contains_key(*k)).count() as u64;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_key_and_time_and_have_the_size_asked() {
        let b = body("c1:v7", 100);
        assert_eq!(b.len(), 100);
        let (key, at) = parse(&b).expect("parse");
        assert_eq!(key, "c1:v7");
        assert!(at > 0);
    }

    #[test]
    fn a_dropped_message_counts_as_lost_and_a_repeated_one_as_duplicated() {
        let mut l = Ledger::new();
        for k in ["a", "b", "c"] {
            l.sent(k);
        }
        let now = now_micros();
        l.delivered(&body("a", 20), now);
        l.delivered(&body("b", 20), now);
        l.delivered(&body("b", 20), now);
        l.delivered(&body("zz", 20), now);
        let t = l.tally();
        assert_eq!(t, Tally { sent: 3, delivered: 2, lost: 1, duplicated: 1, unknown: 1 });
        assert_eq!(l.latency().len(), 2, "latency recorded once per message");
    }

    #[test]
    fn a_clean_run_has_nothing_lost_or_doubled() {
        let mut l = Ledger::new();
        for i in 0..1000 {
            let k = format!("k{i}");
            l.sent(&k);
            l.delivered(&body(&k, 10), now_micros());
        }
        let t = l.tally();
        assert_eq!((t.sent, t.delivered, t.lost, t.duplicated, t.unknown), (1000, 1000, 0, 0, 0));
    }
}
