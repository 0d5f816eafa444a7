//! Running the embedded migrations of either dialect and reporting which versions a run
//! applied. The SQL lives in `migrations/<dialect>/NNNN_name.sql`, append-only.

use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Database, Pool};

/// sqlx's bookkeeping table (its default name; `sqlx::migrate!` does not change it).
const TABLE: &str = "_sqlx_migrations";

/// The versions recorded as applied, ascending. Creates the bookkeeping table when missing,
/// so a fresh database reads as "nothing applied" rather than as an error.
pub(crate) async fn applied<DB>(pool: &Pool<DB>) -> Result<Vec<i64>, MigrateError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table(TABLE).await?;
    let mut versions: Vec<i64> = conn.list_applied_migrations(TABLE).await?.into_iter().map(|m| m.version).collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Applies pending migrations and returns the versions that were not applied before.
///
/// `Migrator::run` takes its own lock (a PostgreSQL advisory lock; on SQLite the single
/// writer connection serialises), so concurrent nodes never apply a version twice. It must
/// be given the pool, not a connection we hold: with `&mut PgConnection` its future is not
/// `Send` (sqlx's "Acquire is not general enough"), and `Store` futures must be. The price:
/// when several nodes migrate at the same instant, each may report the versions another
/// one applied; the schema is right either way.
pub(crate) async fn run<DB>(migrator: &Migrator, pool: &Pool<DB>) -> Result<Vec<i64>, MigrateError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let before = applied(pool).await?;
    migrator.run(pool).await?;
    let after = applied(pool).await?;
    let now: Vec<i64> = after.into_iter().filter(|v| !before.contains(v)).collect();
    if !now.is_empty() {
        tracing::info!(versions = ?now, "applied database migrations");
    }
    Ok(now)
}
