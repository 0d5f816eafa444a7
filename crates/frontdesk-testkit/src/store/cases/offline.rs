//! Contract cases for offline messages (issue 5): written through the write-behind batch
//! (keyed by id: a replay inserts nothing and keeps the handled mark), listed per site newest
//! first with keyset paging and the handled filter, marked handled within their site only,
//! erased per visitor and swept by retention.

use std::collections::HashSet;
use std::sync::Arc;

use frontdesk_core::history::{HistoryWrite, OfflineMessageRecord, OfflineQuery};
use frontdesk_core::id::Id;
use frontdesk_core::reports::RetentionMode;
use frontdesk_core::store::Store;

use super::{ids, two_sites, CREATED_AT};

fn record(id: Id, site: Id, visitor: Id, minutes: i64) -> OfflineMessageRecord {
    OfflineMessageRecord {
        id,
        site_id: site,
        visitor_id: visitor,
        name: "Ann Example".to_owned(),
        email: "ann@visitor.example".to_owned(),
        message: format!("message {id}: do you ship to Norway?"),
        page_url: Some("https://shop.example/cart".to_owned()),
        created_at: CREATED_AT + minutes * 60_000,
    }
}

fn writes(records: &[OfflineMessageRecord]) -> Vec<HistoryWrite> {
    records.iter().cloned().map(HistoryWrite::OfflineMessage).collect()
}

fn query(site: Id, handled: Option<bool>, limit: u32, before: Option<Id>) -> OfflineQuery {
    OfflineQuery { site_id: site, handled, limit, before }
}

/// Every message of a query, page by page; panics on a repeat.
async fn all_pages(store: &dyn Store, site: Id, handled: Option<bool>, limit: u32) -> Vec<Id> {
    let mut out = Vec::new();
    let mut before = None;
    for _ in 0..100 {
        let page = store.list_offline_messages(&query(site, handled, limit, before)).await.expect("list");
        assert!(page.messages.len() <= limit as usize);
        out.extend(page.messages.iter().map(|m| m.id));
        match page.next {
            Some(next) => before = Some(next),
            None => return out,
        }
    }
    panic!("paging did not end");
}

pub async fn offline_messages_replay_without_changes_and_page_newest_first(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let visitor = ids.next().expect("id");
    let mine: Vec<OfflineMessageRecord> = (0..5).map(|i| record(ids.next().expect("id"), a.id, visitor, i)).collect();
    let theirs = record(ids.next().expect("id"), b.id, ids.next().expect("id"), 0);
    let mut batch = writes(&mine);
    batch.push(HistoryWrite::OfflineMessage(theirs.clone()));
    store.apply_history(&batch).await.expect("apply");
    let first = store.list_offline_messages(&query(a.id, None, 100, None)).await.expect("list");
    // A replayed batch (a job delivered twice) inserts nothing.
    store.apply_history(&batch).await.expect("replay");
    store.apply_history(&batch[1..3]).await.expect("replay part");
    let again = store.list_offline_messages(&query(a.id, None, 100, None)).await.expect("list");
    assert_eq!(again, first);
    assert_eq!(again.messages.len(), 5);
    assert_eq!(again.next, None);
    let newest_first: Vec<Id> = mine.iter().rev().map(|m| m.id).collect();
    assert_eq!(again.messages.iter().map(|m| m.id).collect::<Vec<_>>(), newest_first);
    let m = &again.messages[4];
    assert_eq!((m.name.as_str(), m.email.as_str()), ("Ann Example", "ann@visitor.example"));
    assert_eq!(m.page_url.as_deref(), Some("https://shop.example/cart"));
    assert_eq!((m.created_at, m.handled, m.handled_at, m.handled_by), (CREATED_AT, false, None, None));
    assert_eq!(m.message, mine[0].message);

    let paged = all_pages(&*store, a.id, None, 2).await;
    assert_eq!(paged, newest_first, "pages of 2 cover every message once, in order");
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 5);
    let b_list = store.list_offline_messages(&query(b.id, None, 100, None)).await.expect("list B");
    assert_eq!(b_list.messages.iter().map(|m| m.id).collect::<Vec<_>>(), vec![theirs.id]);
}

pub async fn offline_messages_are_marked_handled_within_their_site(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let visitor = ids.next().expect("id");
    let records: Vec<OfflineMessageRecord> =
        (0..3).map(|i| record(ids.next().expect("id"), a.id, visitor, i)).collect();
    store.apply_history(&writes(&records)).await.expect("apply");
    let (target, agent, other_agent) = (records[1].id, ids.next().expect("id"), ids.next().expect("id"));

    // Another site cannot see or mark it.
    assert_eq!(store.offline_message(b.id, target).await.expect("read"), None);
    assert_eq!(store.set_offline_message_handled(b.id, target, Some((agent, 5))).await.expect("mark"), None);
    assert!(!store.offline_message(a.id, target).await.expect("read").expect("exists").handled);

    let marked = store.set_offline_message_handled(a.id, target, Some((agent, 5))).await.expect("mark").expect("some");
    assert_eq!((marked.handled, marked.handled_at, marked.handled_by), (true, Some(5), Some(agent)));
    // Marking again keeps the first mark; a replayed job does not clear it.
    let again =
        store.set_offline_message_handled(a.id, target, Some((other_agent, 9))).await.expect("mark").expect("some");
    assert_eq!((again.handled_at, again.handled_by), (Some(5), Some(agent)));
    store.apply_history(&writes(&records)).await.expect("replay");
    assert_eq!(store.offline_message(a.id, target).await.expect("read"), Some(again));

    assert_eq!(all_pages(&*store, a.id, Some(true), 10).await, vec![target]);
    assert_eq!(all_pages(&*store, a.id, Some(false), 1).await, vec![records[2].id, records[0].id]);

    let unmarked = store.set_offline_message_handled(a.id, target, None).await.expect("unmark").expect("some");
    assert_eq!((unmarked.handled, unmarked.handled_at, unmarked.handled_by), (false, None, None));
    assert_eq!(store.set_offline_message_handled(a.id, ids.next().expect("id"), None).await.expect("unknown"), None);
}

pub async fn offline_messages_are_erased_per_visitor_and_swept_by_retention(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let (ann, bob) = (ids.next().expect("id"), ids.next().expect("id"));
    let old = record(ids.next().expect("id"), a.id, bob, 0);
    let ann_old = record(ids.next().expect("id"), a.id, ann, 1);
    let ann_new = record(ids.next().expect("id"), a.id, ann, 600);
    let bob_new = record(ids.next().expect("id"), a.id, bob, 601);
    // Site B's message of a visitor with Ann's id: another site's erase never touches it.
    let b_msg = record(ids.next().expect("id"), b.id, ann, 0);
    store
        .apply_history(&writes(&[old.clone(), ann_old, ann_new, bob_new.clone(), b_msg.clone()]))
        .await
        .expect("apply");

    assert_eq!(store.erase_visitor_offline_messages(a.id, ann).await.expect("erase"), 2);
    assert_eq!(store.erase_visitor_offline_messages(a.id, ann).await.expect("erase again"), 0);
    assert_eq!(all_pages(&*store, a.id, None, 10).await, vec![bob_new.id, old.id]);
    assert!(store.offline_message(b.id, b_msg.id).await.expect("read").is_some(), "site B untouched");

    // Retention: anonymise what is older than 5 hours after CREATED_AT, once.
    let cutoff = CREATED_AT + 300 * 60_000;
    assert_eq!(store.purge_offline_messages(a.id, cutoff, RetentionMode::Anonymise).await.expect("anonymise"), 1);
    assert_eq!(store.purge_offline_messages(a.id, cutoff, RetentionMode::Anonymise).await.expect("again"), 0);
    let anon = store.offline_message(a.id, old.id).await.expect("read").expect("kept");
    assert_eq!((anon.name.as_str(), anon.email.as_str(), anon.page_url.as_deref()), ("", "", None));
    assert_ne!(anon.message, old.message);
    assert_eq!(store.offline_message(a.id, bob_new.id).await.expect("read").expect("kept").message, bob_new.message);
    // Delete: the old one goes, the new one and site B's stay.
    assert_eq!(store.purge_offline_messages(a.id, cutoff, RetentionMode::Delete).await.expect("delete"), 1);
    assert_eq!(all_pages(&*store, a.id, None, 10).await, vec![bob_new.id]);
    assert!(store.offline_message(b.id, b_msg.id).await.expect("read").is_some());
}
