//! Migration 0008 (versioned messages, issue #8) carries existing history over: a database
//! migrated to version 7 whose transcript holds a clientMessageId twice (the bug the chaos
//! checker found: a resend stored again after a lost state) keeps the smallest id of each
//! once migrated, as the rebuild's union does; the chat stays searchable by the messages it
//! keeps and no longer by the removed copy's text; and the same clientMessageId in another
//! chat is left alone.

use std::path::Path;

use frontdesk_core::history::{ChatQuery, HistoryWrite};
use frontdesk_core::id::Id;
use frontdesk_core::store::Store;
use frontdesk_testkit::store::cases::message_record;
use sqlx::migrate::Migrator;

const SITE: i64 = 1_000;
const CHAT: i64 = 10;
const OTHER_CHAT: i64 = 11;

/// The dialect's migrations before 0008.
async fn before_0008(dialect: &str) -> Migrator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
    let all = Migrator::new(dir.as_path()).await.expect("read migrations");
    Migrator::with_migrations(all.migrations.iter().filter(|m| m.version < 8).cloned().collect())
}

/// `(id, chat, seq, clientMessageId, text)`: 103 repeats 101's clientMessageId (resent with
/// a word of its own), 104 repeats 102's; the other chat uses "x" too.
fn messages() -> Vec<(i64, i64, i64, Option<&'static str>, &'static str)> {
    vec![
        (100, CHAT, 1, None, "hello there aardvark"),
        (101, CHAT, 2, Some("x"), "my courier is late"),
        (102, CHAT, 3, Some("y"), "order number please"),
        (103, CHAT, 1, Some("x"), "my courier is late zebra"),
        (104, CHAT, 2, Some("y"), "order number please"),
        (105, CHAT, 3, None, "anything else okapi"),
        (200, OTHER_CHAT, 1, Some("x"), "an aardvark elsewhere"),
    ]
}

/// Rows as a release before 0008 stored them; `$n` placeholders work on both dialects.
const INSERTS: [&str; 3] = [
    "INSERT INTO sites (id, name, created_at) VALUES ($1, 'Site', 0)",
    "INSERT INTO chats (id, site_id, visitor_id, created_at) VALUES ($1, $2, 7, $3)",
    "INSERT INTO messages (id, chat_id, site_id, seq, data_offset, message_type, sender_id, sender_name, content, \
     client_message_id, send_time, send_time_ms) \
     VALUES ($1, $2, $3, $4, $4, 1, 7, 'Visitor', $5, $6, '2026-01-01T00:00:00.000Z', 0)",
];

/// Writes the fixture, and the search parts 0007's code would have written for it.
macro_rules! fill {
    ($pool:expr, $parts:expr) => {{
        let pool = $pool;
        sqlx::query(INSERTS[0]).bind(SITE).execute(pool).await.expect("site");
        for chat in [CHAT, OTHER_CHAT] {
            sqlx::query(INSERTS[1]).bind(chat).bind(SITE).bind(chat).execute(pool).await.expect("chat");
        }
        for (id, chat, seq, cmid, text) in messages() {
            sqlx::query(INSERTS[2])
                .bind(id)
                .bind(chat)
                .bind(SITE)
                .bind(seq)
                .bind(text)
                .bind(cmid)
                .execute(pool)
                .await
                .expect("message");
        }
        for chat in [CHAT, OTHER_CHAT] {
            let text: Vec<&str> = messages().into_iter().filter(|m| m.1 == chat).map(|m| m.4).collect();
            sqlx::query($parts).bind(chat).bind(SITE).bind(text.join(" ")).execute(pool).await.expect("parts");
        }
    }};
}

async fn found(store: &dyn Store, words: &str) -> Vec<Id> {
    let q = ChatQuery { site_id: Id(SITE as u64), text: Some(words.into()), limit: 10, ..ChatQuery::default() };
    let mut ids: Vec<Id> = store.list_chats(&q).await.expect("search").chats.into_iter().map(|c| c.chat_id).collect();
    ids.sort();
    ids
}

async fn check(store: &dyn Store) {
    let (chat, other) = (Id(CHAT as u64), Id(OTHER_CHAT as u64));
    let t = store.chat_transcript(Id(SITE as u64), chat).await.expect("read").expect("the chat");
    let mut ids: Vec<u64> = t.messages.iter().map(|m| m.id.0).collect();
    ids.sort();
    assert_eq!(ids, vec![100, 101, 102, 105], "the smallest id of each clientMessageId stays");
    let t = store.chat_transcript(Id(SITE as u64), other).await.expect("read").expect("the other chat");
    assert_eq!(t.messages.len(), 1, "another chat's clientMessageId is its own");
    assert_eq!(found(store, "aardvark").await, vec![chat, other]);
    assert_eq!(found(store, "courier okapi").await, vec![chat], "the chat keeps its text");
    assert!(found(store, "zebra").await.is_empty(), "the removed copy's text is gone");
    // From now on, one message per (chat, clientMessageId) whatever a job says.
    let mut again = message_record(Id(900), chat, Id(SITE as u64), 9, 1, "my courier is late walrus");
    again.client_message_id = Some("x".into());
    store.apply_history(&[HistoryWrite::Message(again)]).await.expect("apply after migrating");
    assert!(found(store, "walrus").await.is_empty(), "a later copy is not stored");
    let fresh = message_record(Id(901), chat, Id(SITE as u64), 5, 1, "a late word: narwhal");
    store.apply_history(&[HistoryWrite::Message(fresh)]).await.expect("apply after migrating");
    assert_eq!(found(store, "narwhal").await, vec![chat], "new messages append to the written parts");
}

#[tokio::test]
async fn sqlite_transcripts_keep_one_message_per_client_message_id_after_0008() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = frontdesk_store::SqliteStore::connect(&format!("sqlite://{}", dir.path().join("old.db").display()))
        .await
        .expect("connect");
    before_0008("sqlite").await.run(store.writer()).await.expect("migrate to 7");
    fill!(store.writer(), "INSERT INTO chat_text (chat_id, site_id, part, chars, body) VALUES (?, ?, 0, 0, ?)");
    let applied = store.migrate().await.expect("migrate");
    assert!(applied.contains(&8), "{applied:?}");
    check(&store).await;
}

#[tokio::test]
async fn postgres_transcripts_keep_one_message_per_client_message_id_after_0008() {
    let admin_url = frontdesk_testkit::env::postgres_url();
    let name = frontdesk_testkit::env::unique_name("fdmergemig");
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect admin");
    // A name cannot be a bind parameter; unique_name yields [a-z0-9_] only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("url with a database");
    let store = frontdesk_store::PostgresStore::connect(&format!("{base}/{name}")).await.expect("connect");
    before_0008("postgres").await.run(store.pool()).await.expect("migrate to 7");
    // 0007's insert trigger writes the parts on PostgreSQL.
    fill!(store.pool(), "SELECT $1::bigint, $2::bigint, $3::text");
    let applied = store.migrate().await.expect("migrate");
    assert!(applied.contains(&8), "{applied:?}");
    check(&store).await;
    drop(store);
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&admin).await.expect("drop");
}
