//! Contract cases for full-text history search (issue 5): chats ranked by how much their
//! text is about the words, all of a chat's messages searched together, a chat's text split
//! over many parts still found once, replayed batches changing no ranking, and relevance
//! pages that neither skip nor repeat a chat.

use std::collections::HashSet;
use std::sync::Arc;

use frontdesk_core::history::{ChatPage, ChatQuery, HistoryWrite};
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::store::Store;

use super::{chat_record, ids, message_record, two_sites};

fn next(ids: &IdGenerator) -> Id {
    ids.next().expect("id")
}

fn search(site: Id, words: &str, limit: u32) -> ChatQuery {
    ChatQuery { site_id: site, text: Some(words.into()), limit, ..ChatQuery::default() }
}

async fn page(store: &dyn Store, q: &ChatQuery) -> ChatPage {
    store.list_chats(q).await.expect("search")
}

async fn found(store: &dyn Store, q: &ChatQuery) -> Vec<Id> {
    page(store, q).await.chats.into_iter().map(|c| c.chat_id).collect()
}

/// A chat of `site` with one message per text, in order.
fn chat_with(ids: &IdGenerator, site: Id, minutes: i64, texts: &[&str]) -> (Id, Vec<HistoryWrite>) {
    let chat = next(ids);
    let mut writes = vec![HistoryWrite::Chat(chat_record(chat, site, next(ids), minutes, 1))];
    for (i, text) in texts.iter().enumerate() {
        writes.push(HistoryWrite::Message(message_record(next(ids), chat, site, i as i64 + 1, 1, text)));
    }
    (chat, writes)
}

pub async fn search_ranks_the_chat_most_about_the_words_first(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let filler = "thanks for waiting, let me check that";
    // Same number and length of messages each; only how often "refund" comes up differs.
    let (once, w1) = chat_with(&ids, a.id, 0, &["I want a refund", filler, filler, filler, filler]);
    let (mostly, w2) = chat_with(
        &ids,
        a.id,
        1,
        &["I want a refund", "the refund is late", filler, "refund again please", "where is my refund"],
    );
    let (twice, w3) = chat_with(&ids, a.id, 2, &["I want a refund", filler, "the refund is late", filler, filler]);
    let (unrelated, w4) = chat_with(&ids, a.id, 3, &[filler, filler, filler, filler, filler]);
    store.apply_history(&[w1, w2, w3, w4].concat()).await.expect("apply");
    let order = found(&*store, &search(a.id, "refund", 10)).await;
    assert_eq!(order, vec![mostly, twice, once], "most about refunds first; {unrelated} never");
}

pub async fn search_finds_words_spread_over_a_chats_messages(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (both, w1) = chat_with(&ids, a.id, 0, &["my parcel is missing", "it was sent to zanzibar"]);
    let (parcel_only, w2) = chat_with(&ids, a.id, 1, &["my parcel is missing"]);
    store.apply_history(&[w1, w2].concat()).await.expect("apply");
    assert_eq!(found(&*store, &search(a.id, "parcel zanzibar", 10)).await, vec![both], "every word, any message");
    let mut parcel = found(&*store, &search(a.id, "parcel", 10)).await;
    parcel.sort();
    let mut expected = vec![both, parcel_only];
    expected.sort();
    assert_eq!(parcel, expected);
}

pub async fn search_finds_a_long_chat_once_by_its_first_and_last_words(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let chat = next(&ids);
    store.apply_history(&[HistoryWrite::Chat(chat_record(chat, a.id, next(&ids), 0, 1))]).await.expect("apply chat");
    // 600 messages of ~60 characters (several search parts' worth), written one batch at a
    // time as a quiet server would, then a few large batches as a busy one would.
    let text = |i: i64| match i {
        1 => "the first message mentions an aardvark".to_owned(),
        600 => "the last message mentions a zebra".to_owned(),
        i => format!("message {i}: still waiting for the courier to call back"),
    };
    for i in 1..=300 {
        let m = message_record(next(&ids), chat, a.id, i, 1 + i % 2, &text(i));
        store.apply_history(&[HistoryWrite::Message(m)]).await.expect("apply one");
    }
    let rest: Vec<HistoryWrite> =
        (301..=600).map(|i| HistoryWrite::Message(message_record(next(&ids), chat, a.id, i, 1, &text(i)))).collect();
    for batch in rest.chunks(100) {
        store.apply_history(batch).await.expect("apply a batch");
    }
    for word in ["aardvark", "zebra", "courier"] {
        assert_eq!(found(&*store, &search(a.id, word, 10)).await, vec![chat], "{word}: the chat, once");
    }
    let t = store.chat_transcript(a.id, chat).await.expect("read").expect("exists");
    assert_eq!(t.messages.len(), 600);
}

/// One batch that extends several chats' open parts and starts a new chat, naming one
/// message twice (a job delivered again): every chat is found by the words of both
/// batches, and the repeated message is stored once.
pub async fn search_takes_one_batch_across_many_chats_and_a_repeated_message_once(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (first, w1) = chat_with(&ids, a.id, 0, &["a parcel went to the wrong aardvark"]);
    let (second, w2) = chat_with(&ids, a.id, 1, &["the zebra asked about an invoice"]);
    store.apply_history(&[w1, w2].concat()).await.expect("first batch");

    let (third, w3) = chat_with(&ids, a.id, 2, &["a new chat about a lost umbrella"]);
    let again =
        HistoryWrite::Message(message_record(next(&ids), first, a.id, 2, 1, "the aardvark signed for a kettle"));
    let mut batch = vec![
        again.clone(),
        HistoryWrite::Message(message_record(next(&ids), second, a.id, 2, 1, "and the zebra wants a refund")),
        again,
    ];
    batch.extend(w3);
    store.apply_history(&batch).await.expect("second batch");

    for (word, chat) in
        [("parcel", first), ("kettle", first), ("invoice", second), ("refund", second), ("umbrella", third)]
    {
        assert_eq!(found(&*store, &search(a.id, word, 10)).await, vec![chat], "{word}");
    }
    let t = store.chat_transcript(a.id, first).await.expect("read").expect("exists");
    assert_eq!(t.messages.len(), 2, "the repeated message stored once");
}

pub async fn search_ranking_ignores_replayed_batches(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (first, w1) = chat_with(&ids, a.id, 0, &["a question about an invoice", "more words here"]);
    let (second, w2) = chat_with(&ids, a.id, 1, &["a question about an invoice", "more words here"]);
    store.apply_history(&[w1.clone(), w2].concat()).await.expect("apply");
    let q = search(a.id, "invoice", 1);
    let before = page(&*store, &q).await;
    for _ in 0..5 {
        store.apply_history(&w1).await.expect("replay");
    }
    let after = page(&*store, &q).await;
    assert_eq!(after.chats.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![second], "a tie: newest first");
    assert_eq!(after.next.map(|n| n.score), before.next.map(|n| n.score), "replays add no text");
    let both = found(&*store, &search(a.id, "invoice", 10)).await;
    assert_eq!(both, vec![second, first]);
}

pub async fn search_pages_follow_relevance_without_gaps_or_repeats(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let mut batch = Vec::new();
    let mut chats = Vec::new();
    for i in 0..45 {
        // 1 to 5 mentions among 6 messages: many ties, broken by the chat id.
        let texts: Vec<String> = (0..6)
            .map(|m| if m < 1 + i % 5 { format!("delivery {i}.{m} is late") } else { format!("note {i}.{m}") })
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (chat, writes) = chat_with(&ids, a.id, i as i64, &texts);
        chats.push(chat);
        batch.extend(writes);
    }
    let (_, theirs) = chat_with(&ids, b.id, 0, &["delivery elsewhere"]);
    batch.extend(theirs);
    store.apply_history(&batch).await.expect("apply");

    let whole = found(&*store, &search(a.id, "delivery", 100)).await;
    assert_eq!(whole.iter().copied().collect::<HashSet<_>>(), chats.iter().copied().collect::<HashSet<_>>());
    let mut paged = Vec::new();
    let mut after = None;
    for pages in 1.. {
        let p = page(&*store, &ChatQuery { after, ..search(a.id, "delivery", 7) }).await;
        paged.extend(p.chats.iter().map(|c| c.chat_id));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 20, "paging must end");
    }
    assert_eq!(paged, whole, "pages of 7 read the same order as one page of 100");
}
