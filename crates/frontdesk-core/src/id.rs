//! Snowflake ids (SPEC §4): 41 bits of milliseconds since 2024-01-01 UTC, 10 bits of node
//! id, 12 bits of sequence. Written on the wire as JSON strings, since they exceed 2^53.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
/// Node ids are 10 bits wide.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
const MAX_MILLIS: u64 = (1 << 41) - 1;

/// A 64-bit snowflake id. Serialises as a decimal string and accepts a string or a number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub u64);

impl Id {
    /// Milliseconds since the Unix epoch at which this id was made.
    pub fn unix_millis(self) -> u64 {
        (self.0 >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS
    }

    /// The node that made this id.
    pub fn node_id(self) -> u16 {
        ((self.0 >> SEQ_BITS) & u64::from(MAX_NODE_ID)) as u16
    }

    /// The sequence within its millisecond.
    pub fn sequence(self) -> u16 {
        (self.0 & MAX_SEQ) as u16
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

/// The text was not a decimal 64-bit id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an id: expected a decimal number written as a string")]
pub struct ParseIdError;

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseIdError);
        }
        s.parse::<u64>().map(Id).map_err(|_| ParseIdError)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id written as a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                v.parse().map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v))
            }
        }
        d.deserialize_any(V)
    }
}

pub type SiteId = Id;
pub type AgentId = Id;
pub type VisitorId = Id;
pub type ChatId = Id;
pub type MessageId = Id;
pub type DepartmentId = Id;

/// Why an id could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("node id {0} is out of range 0..=1023")]
    NodeOutOfRange(u32),
    #[error("this node lost its node-id lease; it makes no ids until it holds one again")]
    LeaseLost,
    #[error("the clock is past the end of the id space")]
    ClockOverflow,
}

/// Makes unique, roughly time-ordered ids for one node. Cheap to clone; clones share state.
///
/// The generator never goes backwards: if the wall clock steps back it keeps issuing from
/// the last millisecond it used (borrowing sequence numbers, then the next millisecond),
/// so ids stay unique and increasing on this node.
#[derive(Clone)]
pub struct IdGenerator {
    node_id: u16,
    state: Arc<Mutex<GenState>>,
    valid: Arc<AtomicBool>,
}

struct GenState {
    last_ms: u64,
    seq: u64,
}

impl IdGenerator {
    pub fn new(node_id: u32) -> Result<Self, IdError> {
        if node_id > u32::from(MAX_NODE_ID) {
            return Err(IdError::NodeOutOfRange(node_id));
        }
        Ok(Self {
            node_id: node_id as u16,
            state: Arc::new(Mutex::new(GenState { last_ms: 0, seq: 0 })),
            valid: Arc::new(AtomicBool::new(true)),
        })
    }

    /// A generator whose validity is shared with a node-id lease (see [`crate::lease`]).
    pub fn with_validity(node_id: u32, valid: Arc<AtomicBool>) -> Result<Self, IdError> {
        let mut g = Self::new(node_id)?;
        g.valid = valid;
        Ok(g)
    }

    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// A flag the node-id lease clears when the lease is lost; while clear, [`Self::next`]
    /// fails rather than risk a duplicate with the node that took the id over.
    pub fn validity(&self) -> Arc<AtomicBool> {
        self.valid.clone()
    }

    pub fn next(&self) -> Result<Id, IdError> {
        if !self.valid.load(Ordering::Acquire) {
            return Err(IdError::LeaseLost);
        }
        let now = now_ms().saturating_sub(EPOCH_MS);
        let mut st = self.state.lock();
        if now > st.last_ms {
            st.last_ms = now;
            st.seq = 0;
        } else if st.seq < MAX_SEQ {
            st.seq += 1;
        } else {
            // Sequence exhausted in this millisecond (or the clock stepped back): move on to
            // the next millisecond rather than spin; ids run ahead of the clock briefly.
            st.last_ms += 1;
            st.seq = 0;
        }
        if st.last_ms > MAX_MILLIS {
            return Err(IdError::ClockOverflow);
        }
        Ok(Id((st.last_ms << (NODE_BITS + SEQ_BITS)) | (u64::from(self.node_id) << SEQ_BITS) | st.seq))
    }
}

fn now_ms() -> u64 {
    u64::try_from(crate::time::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_increasing_within_a_node() {
        let g = IdGenerator::new(7).expect("node 7");
        let mut last = Id(0);
        let mut seen = HashSet::new();
        for _ in 0..50_000 {
            let id = g.next().expect("id");
            assert!(id > last, "{id:?} after {last:?}");
            assert!(seen.insert(id));
            assert_eq!(id.node_id(), 7);
            last = id;
        }
    }

    #[test]
    fn layout_carries_time_node_and_sequence() {
        let g = IdGenerator::new(1023).expect("node 1023");
        let before = now_ms();
        let id = g.next().expect("id");
        assert_eq!(id.node_id(), 1023);
        assert!(id.unix_millis() >= before && id.unix_millis() <= now_ms() + 1);
        assert!(id.0 > (1u64 << 53), "ids exceed 2^53 and so travel as strings");
    }

    #[test]
    fn two_nodes_never_collide() {
        let a = IdGenerator::new(1).expect("a");
        let b = IdGenerator::new(2).expect("b");
        let ids: HashSet<Id> = (0..10_000).flat_map(|_| [a.next().expect("a"), b.next().expect("b")]).collect();
        assert_eq!(ids.len(), 20_000);
    }

    #[test]
    fn node_id_out_of_range_is_refused() {
        assert_eq!(IdGenerator::new(1024).err(), Some(IdError::NodeOutOfRange(1024)));
    }

    #[test]
    fn lost_lease_stops_issuing() {
        let g = IdGenerator::new(3).expect("g");
        g.validity().store(false, Ordering::Release);
        assert_eq!(g.next(), Err(IdError::LeaseLost));
    }

    #[test]
    fn ids_travel_as_strings_and_parse_back() {
        let id = Id(1_234_567_890_123_456_789);
        let json = serde_json::to_string(&id).expect("ser");
        assert_eq!(json, "\"1234567890123456789\"");
        let back: Id = serde_json::from_str(&json).expect("de");
        assert_eq!(back, id);
        assert!(serde_json::from_str::<Id>("\"12a\"").is_err());
        assert!(serde_json::from_str::<Id>("\"\"").is_err());
        assert!("-1".parse::<Id>().is_err());
    }
}
