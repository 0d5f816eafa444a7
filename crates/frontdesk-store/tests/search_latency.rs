//! Full-text search latency at 1 million messages (issue 5: p99 under 50 ms): one site,
//! 10,000 chats of 100 messages written through `apply_history` in batches of 500, then 200
//! searches for words of varying rarity, one page (20) each. Ignored by default — a
//! measurement, not a check; docs/BENCHMARKS.md records the command and the results.

use std::sync::Arc;
use std::time::Instant;

use frontdesk_core::history::{ChatQuery, HistoryWrite};
use frontdesk_core::id::IdGenerator;
use frontdesk_core::store::{Site, Store};
use frontdesk_testkit::store::cases::{chat_record, message_record};

const CHATS: usize = 10_000;
const PER_CHAT: usize = 100;
const BATCH: usize = 500;
const WORDS: &[&str] = &["parcel", "refund", "invoice", "delivery", "zanzibar", "umbrella"];

/// The load time (s) and every search's (word, latency in ms), in the order they ran.
async fn measure(store: Arc<dyn Store>) -> (f64, Vec<(&'static str, f64)>) {
    let ids = IdGenerator::new(11).expect("ids");
    let site = Site {
        id: ids.next().expect("id"),
        name: "Search".into(),
        allowed_domains: vec![],
        settings: serde_json::json!({}),
        created_at: 0,
    };
    store.insert_site(&site).await.expect("site");
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for c in 0..CHATS {
        let chat = ids.next().expect("id");
        batch.push(HistoryWrite::Chat(chat_record(chat, site.id, ids.next().expect("id"), c as i64, 1)));
        for m in 0..PER_CHAT {
            let n = c * PER_CHAT + m;
            // Each word appears in a different share of the messages, "zanzibar" in 1 of 100,000.
            let word = match n {
                n if n % 100_000 == 7 => "zanzibar",
                n if n % 1_000 == 3 => "umbrella",
                n if n % 50 == 1 => "refund",
                _ => WORDS[n % 4],
            };
            let text = format!("hello, about my {word} number {n}, can you help?");
            batch.push(HistoryWrite::Message(message_record(
                ids.next().expect("id"),
                chat,
                site.id,
                (m + 1) as i64,
                1 + (m % 2) as i64,
                &text,
            )));
            if batch.len() >= BATCH {
                store.apply_history(&batch).await.expect("apply");
                batch.clear();
            }
        }
    }
    store.apply_history(&batch).await.expect("apply");
    let load = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for i in 0..200 {
        let word = WORDS[i % WORDS.len()];
        let t = Instant::now();
        let page = store
            .list_chats(&ChatQuery { site_id: site.id, text: Some(word.into()), limit: 20, ..ChatQuery::default() })
            .await
            .expect("search");
        latencies.push((word, t.elapsed().as_secs_f64() * 1000.0));
        assert!(!page.chats.is_empty(), "{word} is in the corpus");
    }
    (load, latencies)
}

/// The `p` quantile of sorted `l` (nearest rank).
fn quantile(l: &[f64], p: f64) -> f64 {
    l[((l.len() as f64 * p).ceil() as usize).saturating_sub(1).min(l.len() - 1)]
}

fn report(name: &str, (load, runs): (f64, Vec<(&'static str, f64)>)) {
    let mut l: Vec<f64> = runs.iter().map(|(_, ms)| *ms).collect();
    l.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name}: {} messages loaded in {load:.0} s; search p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        CHATS * PER_CHAT,
        quantile(&l, 0.5),
        quantile(&l, 0.9),
        quantile(&l, 0.99),
        l[l.len() - 1]
    );
    for word in WORDS {
        let mut w: Vec<f64> = runs.iter().filter(|(x, _)| x == word).map(|(_, ms)| *ms).collect();
        w.sort_by(|a, b| a.total_cmp(b));
        println!("{name}:   {word:<9} p50 {:.1} ms, max {:.1} ms", quantile(&w, 0.5), w[w.len() - 1]);
    }
    let mut slowest: Vec<(usize, &(&str, f64))> = runs.iter().enumerate().collect();
    slowest.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let slowest: Vec<String> = slowest.iter().take(5).map(|(i, (w, ms))| format!("#{i} {w} {ms:.0} ms")).collect();
    println!("{name}:   slowest: {}", slowest.join(", "));
}

#[tokio::test]
#[ignore = "a measurement: cargo nextest run -p frontdesk-store --release --run-ignored only search_latency --no-capture --test-threads 1"]
async fn search_latency_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = frontdesk_store::connect(&format!("sqlite://{}", dir.path().join("search.db").display()))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    report("sqlite", measure(store).await);
}

#[tokio::test]
#[ignore = "a measurement: cargo nextest run -p frontdesk-store --release --run-ignored only search_latency --no-capture --test-threads 1"]
async fn search_latency_postgres() {
    let admin_url = frontdesk_testkit::env::postgres_url();
    let name = frontdesk_testkit::env::unique_name("fdsearch");
    let admin = frontdesk_store::PostgresStore::connect(&admin_url).await.expect("connect admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .expect("create database");
    let (base, _) = admin_url.rsplit_once('/').expect("url with a database");
    let store = frontdesk_store::connect(&format!("{base}/{name}")).await.expect("connect");
    store.migrate().await.expect("migrate");
    report("postgres", measure(store.clone()).await);
    // A million rows take about a gigabyte: the database goes once measured.
    drop(store);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(admin.pool())
        .await
        .expect("drop database");
}
