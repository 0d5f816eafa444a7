//! Write-behind throughput (issue 5): N messages of 100 chats applied with
//! `Store::apply_history` in batches of 500 (what the storage worker does), on a fresh
//! SQLite file and a fresh PostgreSQL database; prints messages per second. Ignored by
//! default — a measurement, not a check; docs/BENCHMARKS.md records the command and the
//! results. It still asserts that every message arrived.

use std::sync::Arc;
use std::time::Instant;

use frontdesk_core::history::{ChatQuery, HistoryWrite};
use frontdesk_core::id::IdGenerator;
use frontdesk_core::store::{Site, Store};
use frontdesk_testkit::store::cases::{chat_record, message_record};

const MESSAGES: usize = 50_000;
const CHATS: usize = 100;
const BATCH: usize = 500;

async fn measure(store: Arc<dyn Store>) -> f64 {
    let ids = IdGenerator::new(7).expect("ids");
    let site = Site {
        id: ids.next().expect("id"),
        name: "Bench".into(),
        allowed_domains: vec![],
        settings: serde_json::json!({}),
        created_at: 0,
    };
    store.insert_site(&site).await.expect("site");
    let chats: Vec<_> = (0..CHATS).map(|_| ids.next().expect("id")).collect();
    let setup: Vec<HistoryWrite> = chats
        .iter()
        .enumerate()
        .map(|(i, c)| HistoryWrite::Chat(chat_record(*c, site.id, ids.next().expect("id"), i as i64, 1)))
        .collect();
    store.apply_history(&setup).await.expect("chats");
    let writes: Vec<HistoryWrite> = (0..MESSAGES)
        .map(|i| {
            let chat = chats[i % CHATS];
            let seq = (i / CHATS + 1) as i64;
            let text = format!("message {i}: where is my parcel, order {} please", i * 7919 % 100_000);
            HistoryWrite::Message(message_record(
                ids.next().expect("id"),
                chat,
                site.id,
                seq,
                1 + (i % 2) as i64,
                &text,
            ))
        })
        .collect();
    let start = Instant::now();
    for batch in writes.chunks(BATCH) {
        store.apply_history(batch).await.expect("apply");
    }
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    let t = store.chat_transcript(site.id, chats[0]).await.expect("read").expect("chat");
    assert_eq!(t.messages.len(), MESSAGES / CHATS);
    let hits = store
        .list_chats(&ChatQuery { site_id: site.id, text: Some("parcel".into()), limit: 100, ..ChatQuery::default() })
        .await
        .expect("search");
    assert_eq!(hits.chats.len(), CHATS);
    rate
}

#[tokio::test]
#[ignore = "a measurement: cargo nextest run -p frontdesk-store --release --run-ignored only history_throughput --no-capture --test-threads 1"]
async fn history_throughput_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = frontdesk_store::connect(&format!("sqlite://{}", dir.path().join("bench.db").display()))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let rate = measure(store).await;
    println!("sqlite: {MESSAGES} messages in batches of {BATCH}: {rate:.0} messages/s");
}

#[tokio::test]
#[ignore = "a measurement: cargo nextest run -p frontdesk-store --release --run-ignored only history_throughput --no-capture --test-threads 1"]
async fn history_throughput_postgres() {
    let admin_url = frontdesk_testkit::env::postgres_url();
    let name = frontdesk_testkit::env::unique_name("fdbench");
    let admin = frontdesk_store::PostgresStore::connect(&admin_url).await.expect("connect admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .expect("create database");
    let (base, _) = admin_url.rsplit_once('/').expect("url with a database");
    let store = frontdesk_store::connect(&format!("{base}/{name}")).await.expect("connect");
    store.migrate().await.expect("migrate");
    let rate = measure(store).await;
    println!("postgres: {MESSAGES} messages in batches of {BATCH}: {rate:.0} messages/s");
}
