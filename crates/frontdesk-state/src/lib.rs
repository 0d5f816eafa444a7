//! Runtime state, pub/sub and the message bus: the in-process and Redis implementations of
//! `frontdesk-core`'s [`StateStore`](frontdesk_core::state::StateStore),
//! [`PubSub`](frontdesk_core::pubsub::PubSub) and [`Bus`](frontdesk_core::bus::Bus) ports.
//!
//! # Layout
//! - [`memory`] — the in-process state store (sharded by hash tag) and pub/sub.
//! - [`redis_state`] — the Redis state store and pub/sub.
//! - [`local_bus`] — the in-process bus with its durable spool (a SQLite file).
//! - [`redis_bus`] — the Redis Streams bus.

mod breaker;
pub mod local_bus;
pub mod memory;
pub mod redis_bus;
pub mod redis_state;
