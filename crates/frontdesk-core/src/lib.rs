//! Frontdesk's core: the domain model, ids, error kinds and the ports (traits) through
//! which every other layer reaches runtime state, the bus and the durable store.
//!
//! # Layout
//! - [`id`] — 64-bit snowflake ids (SPEC §4) and their generator.
//! - [`error`] — the wire error kinds (SPEC §5.2) and the backend error types.
//! - [`state`] — the runtime state port ([`state::StateStore`], Redis-hash semantics) and
//!   the atomic scripts that run on every backend.
//! - [`pubsub`] — the cross-node push port and the [`pubsub::RouteTable`] (user → node).
//! - [`bus`] — the message queue port ([`bus::Bus`]) and the worker loop that drains it.
//! - [`store`] — the durable store port ([`store::Store`]) and its records.
//! - [`history`] — the write-behind job (versioned, on the bus queue `storage.write`) and
//!   the chat-history query shapes of the store port.
//! - [`mail`] — the outbound e-mail port ([`mail::Mailer`]) and the job on the bus queue
//!   `email.send`.
//! - [`keys`] — every runtime-state key, Redis Cluster-ready (hash tags per site or chat).
//! - [`lease`] — node-id leasing, so two live nodes never share a snowflake node id.
//! - [`object`] — hash-backed objects that evolve without breaking older or newer nodes
//!   (SPEC §7).
//!
//! Architecture Invariant: this crate depends on no backend (no redis, no sqlx), no HTTP
//! stack and no wire DTOs.

pub mod backends;
pub mod bus;
pub mod error;
pub mod generation;
pub mod history;
pub mod id;
pub mod keys;
pub mod lease;
pub mod mail;
pub mod object;
pub mod password;
pub mod pipeline;
pub mod pubsub;
pub mod push;
pub mod reports;
pub mod state;
pub mod store;
pub mod time;
pub mod worker;
