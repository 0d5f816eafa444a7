//! The durable store (SPEC §2): the SQLite (embedded) and PostgreSQL (cluster) adapters of
//! `frontdesk_core::store::Store`, with versioned migrations per dialect.
//!
//! # Layout
//! - [`connect`] — picks the adapter by the URL's scheme (`sqlite://`, `postgres://`,
//!   `postgresql://`) and hands it back as `Arc<dyn Store>`.
//! - [`sqlite`] — [`SqliteStore`], one file, a single writer connection and a read pool.
//! - [`postgres`] — [`PostgresStore`], a small fail-fast `PgPool`.
//! - `error`: the one mapping from sqlx errors to `BackendError` (`Unavailable`,
//!   `Conflict`, `Other`).
//! - `convert`: ids, JSON and rows, shared by both dialects.
//! - `history_rows`: rows of the history tables (chats, messages) shared by both dialects'
//!   `history` modules (write-behind batches, search, transcripts).
//! - `offline_rows`: the `offline_messages` row both dialects' `offline` modules read.
//! - `migrate`: runs the embedded migrations and reports the versions applied.
//! - `migrations/sqlite/`, `migrations/postgres/`: `NNNN_name.sql`, append-only, embedded
//!   at build time. Both folders declare the same versions (a test checks it); each new
//!   feature (transcripts, messages, search, reports) adds one numbered file per dialect.
//!
//! Architecture Invariant: nothing outside this crate names sqlx; callers see only the
//! `Store` port and `BackendError`.
//!
//! Architecture Invariant: every table except the join tables carries `site_id`, and every
//! read of a tenant's data filters on it (SPEC §4: no call reads across sites).

mod agents_rows;
mod convert;
mod error;
mod history_rows;
mod message_writes;
mod migrate;
mod offline_rows;
pub mod postgres;
mod privacy_rows;
mod report_sql;
pub mod sqlite;

use std::sync::Arc;

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::store::Store;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

const EXPECTED: &str = "expected sqlite://<file> or postgres://<host>/<database>";

/// Opens the store a database URL names: `sqlite://path/to/file.db` (created if missing; its
/// directory must exist) or `postgres://user@host:port/db` (`postgresql://` too). It does
/// not migrate: call [`Store::migrate`] once at start-up.
pub async fn connect(url: &str) -> BackendResult<Arc<dyn Store>> {
    match scheme(url) {
        Some("sqlite") => Ok(Arc::new(SqliteStore::connect(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::connect(url).await?)),
        // Only the scheme is echoed: the rest of a URL may hold a password.
        Some(other) => {
            Err(BackendError::other("store", format!("unsupported database URL scheme {other:?}: {EXPECTED}")))
        }
        None => Err(BackendError::other("store", format!("the database URL has no scheme: {EXPECTED}"))),
    }
}

fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_the_part_before_the_first_colon() {
        assert_eq!(scheme("sqlite://./data/frontdesk.db"), Some("sqlite"));
        assert_eq!(scheme("postgresql://u:p@h/db"), Some("postgresql"));
        assert_eq!(scheme("./frontdesk.db"), None);
        assert_eq!(scheme("/tmp/a:b"), None);
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_named_and_the_rest_of_the_url_is_not() {
        let err = connect("mysql://root:hunter2@db/frontdesk").await.err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(msg.contains("\"mysql\""), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
