//! The store contract suite against both backends (a fresh SQLite file or PostgreSQL
//! database per test), plus what only one backend can show: connection failures, a missing
//! data directory, SQLite's pragmas, and that the two dialects' migrations never drift.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frontdesk_core::error::BackendError;
use frontdesk_core::store::Store;
use frontdesk_testkit::store::StoreFixture;

/// Opens and migrates `url`, checking that a fresh database gets every version at once.
async fn migrated(url: &str) -> Arc<dyn Store> {
    let store = frontdesk_store::connect(url).await.expect("connect");
    let applied = store.migrate().await.expect("migrate");
    assert!(applied.contains(&1), "a fresh database applies the initial migration: {applied:?}");
    assert_eq!(store.applied_migrations().await.expect("applied"), applied);
    store
}

mod sqlite {
    use super::*;

    pub(crate) async fn fresh() -> StoreFixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("frontdesk.db").display());
        StoreFixture::with_guard(migrated(&url).await, dir)
    }

    frontdesk_testkit::store_contract_tests!(make = fresh());

    #[tokio::test]
    async fn the_file_is_created_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("new.db");
        assert!(!file.exists());
        let store =
            frontdesk_store::SqliteStore::connect(&format!("sqlite://{}", file.display())).await.expect("connect");
        assert!(file.exists(), "the file is created when missing");
        let (mode,): (String,) =
            sqlx::query_as("PRAGMA journal_mode").fetch_one(store.reader()).await.expect("journal_mode");
        assert_eq!(mode, "wal");
        let (fk,): (i64,) =
            sqlx::query_as("PRAGMA foreign_keys").fetch_one(store.writer()).await.expect("foreign_keys");
        assert_eq!(fk, 1);
    }

    #[tokio::test]
    async fn read_connections_refuse_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = frontdesk_store::SqliteStore::connect(&format!("sqlite://{}", dir.path().join("r.db").display()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let write = sqlx::query("INSERT INTO secrets (site_id, name, value, created_at) VALUES (0, 'x', x'00', 0)")
            .execute(store.reader())
            .await;
        assert!(write.is_err(), "a write on the read pool must fail");
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("frontdesk.db").display());
        let first = migrated(&url).await;
        let value = first
            .secret_or_insert(frontdesk_core::store::SecretRef { site_id: None, name: "k" }, b"kept")
            .await
            .expect("secret");
        drop(first);

        let again = frontdesk_store::connect(&url).await.expect("reopen");
        assert_eq!(again.migrate().await.expect("migrate"), Vec::<i64>::new(), "already current");
        let read = again
            .secret_or_insert(frontdesk_core::store::SecretRef { site_id: None, name: "k" }, b"new")
            .await
            .expect("secret");
        assert_eq!(read, value);
    }

    #[tokio::test]
    async fn a_missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-dir");
        let url = format!("sqlite://{}", missing.join("frontdesk.db").display());
        let err = frontdesk_store::connect(&url).await.err().expect("connect must fail");
        let msg = err.to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(!missing.exists(), "the directory is not created behind the caller's back");
    }

    #[tokio::test]
    async fn an_unknown_scheme_names_the_scheme() {
        let err = frontdesk_store::connect("mongodb://localhost/frontdesk").await.err().expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("mongodb"), "{msg}");
        assert!(msg.contains("sqlite://") && msg.contains("postgres://"), "says what is accepted: {msg}");
    }

    /// Versions of `migrations/<dialect>/NNNN_name.sql`, ascending.
    fn migration_versions(dialect: &str) -> Vec<i64> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
        let mut versions: Vec<i64> = std::fs::read_dir(&dir)
            .expect("migrations dir")
            .map(|entry| {
                let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
                assert!(name.ends_with(".sql"), "only .sql files in {}: {name}", dir.display());
                let (version, _) = name.split_once('_').expect("NNNN_name.sql");
                version.parse().unwrap_or_else(|_| panic!("{name}: version is not a number"))
            })
            .collect();
        versions.sort_unstable();
        versions
    }

    #[test]
    fn both_dialects_declare_the_same_migration_versions() {
        let sqlite = migration_versions("sqlite");
        let postgres = migration_versions("postgres");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres, "add each migration to migrations/sqlite and migrations/postgres");
    }
}

mod postgres {
    use super::*;

    /// A new, empty database on the test server, migrated.
    pub(crate) async fn fresh() -> Arc<dyn Store> {
        let admin_url = frontdesk_testkit::env::postgres_url();
        let name = frontdesk_testkit::env::unique_name("fd");
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect as admin");
        // A name cannot be a bind parameter; unique_name yields [a-z0-9_] only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        migrated(&database_url(&admin_url, &name)).await
    }

    /// `admin_url` with its database replaced by `name`, keeping user, host and parameters.
    fn database_url(admin_url: &str, name: &str) -> String {
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (admin_url, None),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
        let mut url = format!("{}/{name}", &base[..host_end]);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    frontdesk_testkit::store_contract_tests!(make = fresh());

    #[test]
    fn database_url_swaps_only_the_database() {
        assert_eq!(database_url("postgres://u@h:5/postgres", "fd_1"), "postgres://u@h:5/fd_1");
        assert_eq!(database_url("postgres://u@h:5", "fd_1"), "postgres://u@h:5/fd_1");
        assert_eq!(database_url("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }

    #[tokio::test]
    async fn a_stopped_server_fails_fast_as_unavailable() {
        // A port that was free a moment ago: nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let started = Instant::now();
        let result = frontdesk_store::connect(&format!("postgres://postgres@127.0.0.1:{port}/frontdesk")).await;
        let elapsed = started.elapsed();
        match result {
            Err(BackendError::Unavailable { backend, detail }) => {
                assert_eq!(backend, "postgres");
                assert!(detail.contains(&port.to_string()), "names where it tried: {detail}");
            }
            Err(other) => panic!("expected Unavailable, got {other:?}"),
            Ok(_) => panic!("connected to a closed port"),
        }
        assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    }

    #[tokio::test]
    async fn postgresql_scheme_is_accepted() {
        let url = frontdesk_testkit::env::postgres_url();
        let alias = url.replacen("postgres://", "postgresql://", 1);
        let other = frontdesk_store::connect(&alias).await.expect("postgresql:// connects");
        assert_eq!(other.kind(), "postgres");
        other.ping().await.expect("ping");
    }
}
