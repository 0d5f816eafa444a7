//! Port conformance suites and test fixtures, shared by every backend's tests.
//!
//! Each suite is a macro that expands to one `#[tokio::test]` per case, given an async
//! expression that makes a fresh backend; so one list of cases runs against the memory and
//! Redis state stores, the local and Redis buses, SQLite and PostgreSQL.
//!
//! External services come from the environment that `scripts/test.sh` prepares:
//! `FRONTDESK_TEST_REDIS` (a `redis://` URL) and `FRONTDESK_TEST_POSTGRES` (a `postgres://`
//! URL of a role that may create databases). A test that needs one and finds it unset
//! fails with a message saying how to run it, never skips silently.

pub mod bus;
pub mod env;
pub mod state;
pub mod store;
