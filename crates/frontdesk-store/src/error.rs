//! The one place where sqlx's errors become [`BackendError`]s: which failures mean "the
//! database cannot be reached" (`Unavailable`), which mean a uniqueness rule was broken
//! (`Conflict`, with a message the caller words), and everything else (`Other`).

use frontdesk_core::error::BackendError;
use sqlx::error::ErrorKind as DbErrorKind;
use sqlx::migrate::MigrateError;

/// Which database produced an error; its error codes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The backend name carried by [`BackendError`]s, and returned by `Store::kind`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// Maps an error of a statement that cannot break a uniqueness rule.
pub(crate) fn from_sqlx(dialect: Dialect, err: sqlx::Error) -> BackendError {
    if is_unavailable(dialect, &err) {
        return BackendError::unavailable(dialect.name(), err);
    }
    BackendError::other(dialect.name(), err)
}

/// Maps an error of an insert: a unique violation becomes `Conflict` with the message
/// `conflict` makes from the name of the broken rule (PostgreSQL's constraint name, or
/// SQLite's "UNIQUE constraint failed: table.column" text), so callers can tell which rule
/// it was by looking for a column name in it.
pub(crate) fn from_insert(dialect: Dialect, err: sqlx::Error, conflict: impl FnOnce(&str) -> String) -> BackendError {
    if let Some(db) = err.as_database_error() {
        if db.kind() == DbErrorKind::UniqueViolation {
            let rule = db.constraint().unwrap_or_else(|| db.message());
            return BackendError::Conflict(conflict(rule));
        }
    }
    from_sqlx(dialect, err)
}

/// True when an insert failed because a row it refers to does not exist.
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| db.kind() == DbErrorKind::ForeignKeyViolation)
}

pub(crate) fn from_migrate(dialect: Dialect, err: MigrateError) -> BackendError {
    match err {
        MigrateError::Execute(e) => from_sqlx(dialect, e),
        MigrateError::ExecuteMigration(e, version) => {
            if is_unavailable(dialect, &e) {
                BackendError::unavailable(dialect.name(), format!("while applying migration {version}: {e}"))
            } else {
                BackendError::other(dialect.name(), format!("migration {version} failed: {e}"))
            }
        }
        // Checksum mismatches, missing versions, a dirty database: all need an operator, and
        // sqlx's own words already say which migration and why.
        other => BackendError::other(dialect.name(), other),
    }
}

fn is_unavailable(dialect: Dialect, err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            match dialect {
                Dialect::Postgres => is_unavailable_sqlstate(&code),
                Dialect::Sqlite => code.parse::<i32>().is_ok_and(is_unavailable_sqlite_code),
            }
        }
        _ => false,
    }
}

/// SQLSTATE codes that say the server cannot serve us now, not that the statement was wrong.
fn is_unavailable_sqlstate(code: &str) -> bool {
    // Class 08: connection exceptions. 53: insufficient resources (too many connections,
    // disk full, out of memory). 57P01..57P03: the server is shutting down or starting up.
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// SQLite result codes (extended codes carry the primary one in their low byte) that say the
/// file cannot be used now: still locked after `busy_timeout`, read-only, an I/O error, a full
/// disk, a file that cannot be opened.
fn is_unavailable_sqlite_code(extended: i32) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    matches!(extended & 0xff, BUSY | LOCKED | READONLY | IOERR | FULL | CANTOPEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_pool_failures_are_unavailable() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(from_sqlx(Dialect::Postgres, refused), BackendError::Unavailable { .. }));
        assert!(matches!(
            from_sqlx(Dialect::Sqlite, sqlx::Error::PoolTimedOut),
            BackendError::Unavailable { backend: "sqlite", .. }
        ));
        assert!(matches!(from_sqlx(Dialect::Sqlite, sqlx::Error::RowNotFound), BackendError::Other { .. }));
    }

    #[test]
    fn sqlstates_of_a_server_that_cannot_serve_are_unavailable() {
        for code in ["08006", "08001", "53300", "57P01", "57P03"] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_and_io_codes_are_unavailable_but_constraints_are_not() {
        // SQLITE_BUSY_SNAPSHOT = 517, SQLITE_IOERR_READ = 266, SQLITE_CONSTRAINT_UNIQUE = 2067.
        assert!(is_unavailable_sqlite_code(5));
        assert!(is_unavailable_sqlite_code(517));
        assert!(is_unavailable_sqlite_code(266));
        assert!(!is_unavailable_sqlite_code(2067));
        assert!(!is_unavailable_sqlite_code(1));
    }
}
