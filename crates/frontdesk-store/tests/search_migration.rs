//! Migration 0007 (search per chat) carries existing history over: a database migrated to
//! version 6 and filled with chats and messages (by plain SQL, as an older release wrote
//! them) finds them all by search once migrated to the latest version, a long chat's text
//! spread over several parts, and new messages append to the parts the backfill made.

use std::path::Path;

use frontdesk_core::history::{ChatQuery, HistoryWrite};
use frontdesk_core::id::Id;
use frontdesk_core::store::Store;
use frontdesk_testkit::store::cases::message_record;
use sqlx::migrate::Migrator;

const SITE_A: i64 = 1_000;
const SITE_B: i64 = 2_000;
const LONG_CHAT: i64 = 10;
const SHORT_CHAT: i64 = 11;
const OTHER_SITE_CHAT: i64 = 20;
/// Messages of the long chat: ~60 characters each, several search parts' worth.
const LONG_MESSAGES: i64 = 400;

/// The dialect's migrations before 0007.
async fn before_0007(dialect: &str) -> Migrator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
    let all = Migrator::new(dir.as_path()).await.expect("read migrations");
    Migrator::with_migrations(all.migrations.iter().filter(|m| m.version < 7).cloned().collect())
}

/// `(chat, site, seq, text)` for every message of the fixture.
fn messages() -> Vec<(i64, i64, i64, String)> {
    let mut all: Vec<(i64, i64, i64, String)> = (1..=LONG_MESSAGES)
        .map(|seq| {
            let text = match seq {
                1 => "the very first words were about an aardvark".to_owned(),
                LONG_MESSAGES => "and the very last ones about a zebra".to_owned(),
                n => format!("message {n}: still waiting for the courier to call me back"),
            };
            (LONG_CHAT, SITE_A, seq, text)
        })
        .collect();
    all.push((SHORT_CHAT, SITE_A, 1, "an aardvark, once".to_owned()));
    all.push((OTHER_SITE_CHAT, SITE_B, 1, "an aardvark elsewhere".to_owned()));
    all
}

/// Rows as a release before 0007 stored them; `$n` placeholders work on both dialects.
const INSERTS: [&str; 3] = [
    "INSERT INTO sites (id, name, created_at) VALUES ($1, 'Site', 0)",
    "INSERT INTO chats (id, site_id, visitor_id, created_at) VALUES ($1, $2, 7, $3)",
    "INSERT INTO messages (id, chat_id, site_id, seq, data_offset, message_type, sender_id, sender_name, content, \
     send_time, send_time_ms) VALUES ($1, $2, $3, $4, $4, 1, 7, 'Visitor', $5, '2026-01-01T00:00:00.000Z', 0)",
];

macro_rules! fill {
    ($pool:expr) => {{
        let pool = $pool;
        for site in [SITE_A, SITE_B] {
            sqlx::query(INSERTS[0]).bind(site).execute(pool).await.expect("site");
        }
        for (chat, site) in [(LONG_CHAT, SITE_A), (SHORT_CHAT, SITE_A), (OTHER_SITE_CHAT, SITE_B)] {
            sqlx::query(INSERTS[1]).bind(chat).bind(site).bind(chat).execute(pool).await.expect("chat");
        }
        for (i, (chat, site, seq, text)) in messages().into_iter().enumerate() {
            let id = 100_000 + i as i64;
            sqlx::query(INSERTS[2])
                .bind(id)
                .bind(chat)
                .bind(site)
                .bind(seq)
                .bind(text)
                .execute(pool)
                .await
                .expect("message");
        }
    }};
}

async fn found(store: &dyn Store, site: i64, words: &str) -> Vec<Id> {
    let q = ChatQuery { site_id: Id(site as u64), text: Some(words.into()), limit: 10, ..ChatQuery::default() };
    let mut ids: Vec<Id> = store.list_chats(&q).await.expect("search").chats.into_iter().map(|c| c.chat_id).collect();
    ids.sort();
    ids
}

/// What the migrated store must find, and that a new message lands in the long chat's last
/// part.
async fn check(store: &dyn Store) -> usize {
    let (long, short, other) = (Id(LONG_CHAT as u64), Id(SHORT_CHAT as u64), Id(OTHER_SITE_CHAT as u64));
    assert_eq!(found(store, SITE_A, "aardvark").await, vec![long, short]);
    assert_eq!(found(store, SITE_A, "zebra").await, vec![long], "the end of a long chat");
    assert_eq!(found(store, SITE_A, "courier").await, vec![long]);
    assert_eq!(found(store, SITE_B, "aardvark").await, vec![other], "each site its own");
    let m = message_record(Id(900_000), long, Id(SITE_A as u64), LONG_MESSAGES + 1, 1, "a late word: okapi");
    store.apply_history(&[HistoryWrite::Message(m)]).await.expect("apply after migrating");
    assert_eq!(found(store, SITE_A, "okapi").await, vec![long]);
    // The long chat's parts: a message starting at or past 8,192 characters into a part
    // opens the next one (each message counts its length plus a separator).
    let mut starts = Vec::new();
    let mut offset = 0;
    for (chat, _, _, text) in messages() {
        if chat == LONG_CHAT {
            starts.push(offset / 8192);
            offset += text.chars().count() + 1;
        }
    }
    starts.push(offset / 8192);
    starts.dedup();
    assert!(starts.len() >= 3, "the fixture spans several parts: {starts:?}");
    starts.len()
}

#[tokio::test]
async fn sqlite_search_finds_history_written_before_0007() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = frontdesk_store::SqliteStore::connect(&format!("sqlite://{}", dir.path().join("old.db").display()))
        .await
        .expect("connect");
    before_0007("sqlite").await.run(store.writer()).await.expect("migrate to 6");
    fill!(store.writer());
    let applied = store.migrate().await.expect("migrate");
    assert!(applied.contains(&7), "{applied:?}");
    let parts = check(&store).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM chat_text WHERE chat_id = ?")
        .bind(LONG_CHAT)
        .fetch_one(store.reader())
        .await
        .expect("count parts");
    assert_eq!(n as usize, parts, "backfill and appends cut parts alike");
}

#[tokio::test]
async fn postgres_search_finds_history_written_before_0007() {
    let admin_url = frontdesk_testkit::env::postgres_url();
    let name = frontdesk_testkit::env::unique_name("fdsearchmig");
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect admin");
    // A name cannot be a bind parameter; unique_name yields [a-z0-9_] only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("url with a database");
    let store = frontdesk_store::PostgresStore::connect(&format!("{base}/{name}")).await.expect("connect");
    before_0007("postgres").await.run(store.pool()).await.expect("migrate to 6");
    fill!(store.pool());
    let applied = store.migrate().await.expect("migrate");
    assert!(applied.contains(&7), "{applied:?}");
    let parts = check(&store).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM chat_text WHERE chat_id = $1")
        .bind(LONG_CHAT)
        .fetch_one(store.pool())
        .await
        .expect("count parts");
    assert_eq!(n as usize, parts, "backfill and appends cut parts alike");
    drop(store);
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&admin).await.expect("drop");
}
