//! Visitor snapshots in the SQLite history: a batch's snapshots go in one statement
//! (`UPSERT_VISITORS`), so this checks what that statement must keep from the per-row
//! upsert it replaced: of two snapshots of one visitor the newer `version` wins in either
//! order, within a batch and across batches (an older one changes nothing); a newer one
//! never moves `first_seen` later; custom variables keep their JSON; a snapshot under the
//! same id from another site changes nothing. The visitors table has no read in the
//! `Store` port, so the rows are read here.

use frontdesk_core::history::{HistoryWrite, VisitorHistory};
use frontdesk_core::id::Id;
use frontdesk_core::store::{Site, Store};
use serde_json::json;

fn snapshot(visitor: i64, site: i64, name: &str, first_seen: i64, version: i64) -> HistoryWrite {
    HistoryWrite::Visitor(VisitorHistory {
        visitor_id: Id(visitor as u64),
        site_id: Id(site as u64),
        name: name.into(),
        email: format!("{name}@example.com").to_lowercase(),
        custom_variables: json!({"plan": name, "quote": "a \"b\"\n"}).as_object().cloned().unwrap_or_default(),
        first_seen,
        last_seen: first_seen + version,
        visit_count: version,
        page_views: version * 2,
        version,
    })
}

type Row = (i64, i64, String, String, i64, i64, i64);

#[tokio::test]
async fn the_newest_snapshot_of_each_visitor_wins_in_one_batch_and_across_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("history.db").display());
    let store = frontdesk_store::SqliteStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    for id in [1, 2] {
        let site = Site {
            id: Id(id),
            name: format!("Site {id}"),
            allowed_domains: vec![],
            settings: json!({}),
            created_at: 0,
        };
        store.insert_site(&site).await.expect("site");
    }
    // Visitor 10: newer first, then an older one (a retried job) in the same batch. Visitor
    // 11: older first. Visitor 10 again under site 2: not its site, ignored.
    let batch = vec![
        snapshot(10, 1, "Newer", 500, 9),
        snapshot(11, 1, "Old", 700, 1),
        snapshot(10, 1, "Older", 100, 3),
        snapshot(11, 1, "New", 800, 2),
        snapshot(10, 2, "Foreign", 50, 99),
    ];
    store.apply_history(&batch).await.expect("apply");
    store.apply_history(&batch).await.expect("replayed batch");
    // A later batch with an old snapshot changes nothing; a newer one wins.
    store.apply_history(&[snapshot(11, 1, "Stale", 900, 1)]).await.expect("stale");
    store.apply_history(&[snapshot(12, 1, "Fresh", 300, 1)]).await.expect("fresh");

    let pool = store.writer();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, site_id, name, custom_variables, first_seen, visit_count, version FROM visitors ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("read visitors");
    let vars = |name: &str| json!({"plan": name, "quote": "a \"b\"\n"}).to_string();
    assert_eq!(
        rows,
        vec![
            // An older snapshot changes nothing, not even first_seen...
            (10, 1, "Newer".into(), vars("Newer"), 500, 9, 9),
            // ...while a newer one keeps the earliest first_seen seen so far.
            (11, 1, "New".into(), vars("New"), 700, 2, 2),
            (12, 1, "Fresh".into(), vars("Fresh"), 300, 1, 1),
        ]
    );
    let custom: String =
        sqlx::query_scalar("SELECT custom_variables FROM visitors WHERE id = 10").fetch_one(pool).await.expect("read");
    let parsed: serde_json::Value = serde_json::from_str(&custom).expect("custom variables are JSON");
    assert_eq!(parsed["quote"], "a \"b\"\n");
}
