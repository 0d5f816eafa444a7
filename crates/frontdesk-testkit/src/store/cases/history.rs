//! Contract cases for durable chat history (issue 5): write-behind batches applied
//! idempotently and last-writer-wins, transcripts in `seq` order and scoped to their site,
//! full-text search within one site, filters, and keyset paging without gaps or duplicates;
//! and (issue #8) the transcript ends up as the last rebuild merged the chat, in whatever
//! order and batches the jobs of a lost and rebuilt chat arrive.

use std::collections::HashSet;
use std::sync::Arc;

use frontdesk_core::history::{
    ChatQuery, ChatRecord, ChatSummary, HistoryWrite, MessageRecord, Transcript, VisitorHistory,
};
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::store::Store;

use super::{ids, two_sites, CREATED_AT};

/// A chat snapshot of `site` created `minutes` after [`CREATED_AT`].
pub fn chat_record(chat: Id, site: Id, visitor: Id, minutes: i64, version: i64) -> ChatRecord {
    ChatRecord {
        chat_id: chat,
        site_id: site,
        visitor_id: visitor,
        department_id: None,
        status: "active".to_owned(),
        agent_id: None,
        participants: vec![],
        created_at: CREATED_AT + minutes * 60_000,
        started_at: None,
        ended_at: None,
        rating: None,
        comment: None,
        wrap_up_notes: None,
        tags: vec![],
        visitor_name: "Visitor".to_owned(),
        visitor_email: String::new(),
        version,
    }
}

pub fn message_record(id: Id, chat: Id, site: Id, seq: i64, kind: i64, content: &str) -> MessageRecord {
    MessageRecord {
        id,
        chat_id: chat,
        site_id: site,
        seq,
        data_offset: seq,
        message_type: kind,
        sender_id: Id(if kind == 1 { 11 } else { 22 }),
        sender_name: if kind == 1 { "Visitor".into() } else { "Agent".into() },
        content: content.to_owned(),
        client_message_id: None,
        send_time: format!("2026-01-01T00:00:{:02}.000Z", seq % 60),
        send_time_ms: CREATED_AT + seq * 1000,
        rev: 0,
        rebuild: false,
    }
}

fn next(ids: &IdGenerator) -> Id {
    ids.next().expect("id")
}

fn query(site: Id) -> ChatQuery {
    ChatQuery { site_id: site, limit: 100, ..ChatQuery::default() }
}

async fn transcript(store: &dyn Store, site: Id, chat: Id) -> Transcript {
    store.chat_transcript(site, chat).await.expect("read").expect("the chat exists")
}

async fn list(store: &dyn Store, q: &ChatQuery) -> Vec<ChatSummary> {
    store.list_chats(q).await.expect("list").chats
}

pub async fn history_batches_replay_without_changes(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (chat, visitor, agent) = (next(&ids), next(&ids), next(&ids));
    let mut c = chat_record(chat, a.id, visitor, 0, 10);
    c.participants = vec![agent];
    c.agent_id = Some(agent);
    let batch = vec![
        HistoryWrite::Chat(c),
        HistoryWrite::Message(message_record(next(&ids), chat, a.id, 1, 1, "hello, anyone there?")),
        HistoryWrite::Message(message_record(next(&ids), chat, a.id, 2, 2, "Yes \"quoted\"\nand a newline")),
        HistoryWrite::Visitor(VisitorHistory {
            visitor_id: visitor,
            site_id: a.id,
            name: "Ann".into(),
            email: "ann@example.com".into(),
            custom_variables: serde_json::Map::new(),
            first_seen: CREATED_AT,
            last_seen: CREATED_AT + 5,
            visit_count: 1,
            page_views: 2,
            version: 10,
        }),
    ];
    store.apply_history(&batch).await.expect("apply");
    let first = transcript(&*store, a.id, chat).await;
    store.apply_history(&batch).await.expect("apply again");
    let second = transcript(&*store, a.id, chat).await;
    assert_eq!(first, second, "a replayed batch changes nothing");
    assert_eq!(first.messages.len(), 2);
    assert_eq!(first.messages[1].content, "Yes \"quoted\"\nand a newline");
    assert_eq!(first.chat.agent_ids, vec![agent]);
    assert_eq!(first.chat.first_response_at, Some(CREATED_AT + 2000), "the first agent message");
    assert_eq!(list(&*store, &query(a.id)).await.len(), 1, "one chat, however often it is applied");
}

pub async fn history_older_snapshots_never_win(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (chat, visitor) = (next(&ids), next(&ids));
    let mut ended = chat_record(chat, a.id, visitor, 0, 20);
    ended.status = "ended".into();
    ended.ended_at = Some(CREATED_AT + 1);
    ended.rating = Some(5);
    ended.tags = vec!["billing".into()];
    store.apply_history(&[HistoryWrite::Chat(ended)]).await.expect("apply newer");
    // A late, older snapshot (a retried job) arrives after the newer one.
    store.apply_history(&[HistoryWrite::Chat(chat_record(chat, a.id, visitor, 0, 10))]).await.expect("apply older");
    let t = transcript(&*store, a.id, chat).await;
    assert_eq!(t.chat.status.as_deref(), Some("ended"));
    assert_eq!((t.chat.rating, t.chat.tags.clone()), (Some(5), vec!["billing".to_owned()]));
    // A snapshot of another site under the same id never touches this chat.
    let b_site = next(&ids);
    let mut foreign = chat_record(chat, b_site, visitor, 0, 99);
    foreign.status = "queued".into();
    let _ = store.apply_history(&[HistoryWrite::Chat(foreign)]).await;
    assert_eq!(transcript(&*store, a.id, chat).await.chat.status.as_deref(), Some("ended"));
}

pub async fn history_transcripts_follow_seq_and_stay_in_their_site(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let (chat, visitor) = (next(&ids), next(&ids));
    let (m1, m2, m3) = (next(&ids), next(&ids), next(&ids));
    store
        .apply_history(&[
            HistoryWrite::Chat(chat_record(chat, a.id, visitor, 0, 1)),
            HistoryWrite::Message(message_record(m2, chat, a.id, 2, 2, "second")),
            HistoryWrite::Message(message_record(m1, chat, a.id, 1, 1, "first")),
        ])
        .await
        .expect("apply");
    // A rebuild renumbers: m3 arrives between them and m2 moves to seq 3.
    let rebuilt = |m: MessageRecord| HistoryWrite::Message(MessageRecord { rev: 5, rebuild: true, ..m });
    store
        .apply_history(&[
            rebuilt(message_record(m1, chat, a.id, 1, 1, "first")),
            rebuilt(message_record(m3, chat, a.id, 2, 1, "between")),
            rebuilt(message_record(m2, chat, a.id, 3, 2, "second")),
        ])
        .await
        .expect("apply renumbered");
    let t = transcript(&*store, a.id, chat).await;
    let order: Vec<(Id, i64)> = t.messages.iter().map(|m| (m.id, m.seq)).collect();
    assert_eq!(order, vec![(m1, 1), (m3, 2), (m2, 3)]);
    assert_eq!(store.chat_transcript(b.id, chat).await.expect("read"), None, "another site's chat is not found");
    assert!(list(&*store, &query(b.id)).await.is_empty());
}

pub async fn history_search_finds_one_word_within_its_site(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, b) = two_sites(&*store, &ids).await;
    let mut batch = Vec::new();
    let mut needle = None;
    for i in 0..30 {
        let chat = next(&ids);
        batch.push(HistoryWrite::Chat(chat_record(chat, a.id, next(&ids), i, 1)));
        let text = if i == 17 { "my parcel to zanzibar never arrived" } else { "where is my parcel please" };
        if i == 17 {
            needle = Some(chat);
        }
        batch.push(HistoryWrite::Message(message_record(next(&ids), chat, a.id, 1, 1, text)));
    }
    // Thousands of other messages around the one the search is for.
    for i in 0..2_000 {
        let chat = next(&ids);
        batch.push(HistoryWrite::Chat(chat_record(chat, a.id, next(&ids), 100 + i, 1)));
        let text = format!("thanks, order {i} arrived on time");
        batch.push(HistoryWrite::Message(message_record(next(&ids), chat, a.id, 1, 1, &text)));
    }
    let other = next(&ids);
    batch.push(HistoryWrite::Chat(chat_record(other, b.id, next(&ids), 3, 1)));
    batch.push(HistoryWrite::Message(message_record(next(&ids), other, b.id, 1, 1, "zanzibar too")));
    let mut named = chat_record(next(&ids), a.id, next(&ids), 40, 1);
    named.visitor_email = "grace.hopper@example.com".into();
    named.visitor_name = "Grace Hopper".into();
    let named_id = named.chat_id;
    batch.push(HistoryWrite::Chat(named));
    store.apply_history(&batch).await.expect("apply");

    let hits = list(&*store, &ChatQuery { text: Some("zanzibar".into()), ..query(a.id) }).await;
    assert_eq!(hits.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![needle.expect("needle")]);
    let hits = list(&*store, &ChatQuery { text: Some("zanzibar".into()), ..query(b.id) }).await;
    assert_eq!(hits.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![other], "each site sees its own");
    let hits = list(&*store, &ChatQuery { text: Some("Hopper".into()), ..query(a.id) }).await;
    assert_eq!(hits.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![named_id], "visitor names are searched");
    let all = list(&*store, &ChatQuery { text: Some("parcel".into()), ..query(a.id) }).await;
    assert_eq!(all.len(), 30);
    let none = list(&*store, &ChatQuery { text: Some("\"unbalanced OR (".into()), ..query(a.id) }).await;
    assert!(none.is_empty(), "query syntax is taken as words, never an error");
}

pub async fn history_filters_select_their_chats(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (ann, bob, dept, visitor) = (next(&ids), next(&ids), next(&ids), next(&ids));
    let mut batch = Vec::new();
    let mut chats = Vec::new();
    for i in 0..6i64 {
        let chat = next(&ids);
        chats.push(chat);
        let mut c = chat_record(chat, a.id, if i == 0 { visitor } else { next(&ids) }, i, 1);
        c.participants = if i % 2 == 0 { vec![ann] } else { vec![bob] };
        c.agent_id = c.participants.first().copied();
        c.status = if i < 3 { "ended".into() } else { "active".into() };
        c.rating = (i < 2).then_some(4 + i);
        c.tags = if i == 4 { vec!["vip".into(), "billing".into()] } else { vec![] };
        c.department_id = (i == 5).then_some(dept);
        batch.push(HistoryWrite::Chat(c));
    }
    store.apply_history(&batch).await.expect("apply");
    let ids_of = |v: Vec<ChatSummary>| v.into_iter().map(|c| c.chat_id).collect::<HashSet<_>>();
    let set = |v: &[usize]| v.iter().map(|i| chats[*i]).collect::<HashSet<_>>();
    let q = query(a.id);
    assert_eq!(ids_of(list(&*store, &ChatQuery { agent_id: Some(ann), ..q.clone() }).await), set(&[0, 2, 4]));
    assert_eq!(ids_of(list(&*store, &ChatQuery { member: Some(bob), ..q.clone() }).await), set(&[1, 3, 5]));
    assert_eq!(ids_of(list(&*store, &ChatQuery { status: Some("ended".into()), ..q.clone() }).await), set(&[0, 1, 2]));
    assert_eq!(ids_of(list(&*store, &ChatQuery { rating: Some(5), ..q.clone() }).await), set(&[1]));
    assert_eq!(ids_of(list(&*store, &ChatQuery { tag: Some("vip".into()), ..q.clone() }).await), set(&[4]));
    assert_eq!(ids_of(list(&*store, &ChatQuery { department_id: Some(dept), ..q.clone() }).await), set(&[5]));
    assert_eq!(ids_of(list(&*store, &ChatQuery { visitor_id: Some(visitor), ..q.clone() }).await), set(&[0]));
    let window = ChatQuery { from: Some(CREATED_AT + 60_000), to: Some(CREATED_AT + 3 * 60_000), ..q.clone() };
    assert_eq!(ids_of(list(&*store, &window).await), set(&[1, 2]), "from inclusive, to exclusive");
    let both = ChatQuery { agent_id: Some(ann), status: Some("active".into()), ..q };
    assert_eq!(ids_of(list(&*store, &both).await), set(&[4]));
}

pub async fn history_pages_have_no_gaps_or_duplicates(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let mut batch = Vec::new();
    let mut all = Vec::new();
    for i in 0..25 {
        let chat = next(&ids);
        all.push(chat);
        // Pairs of chats share a creation time: the id breaks the tie.
        let mut c = chat_record(chat, a.id, next(&ids), i / 2, 1);
        c.visitor_name = "Page Tester".into();
        batch.push(HistoryWrite::Chat(c));
    }
    store.apply_history(&batch).await.expect("apply");
    for text in [None, Some("tester".to_owned())] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = store
                .list_chats(&ChatQuery { limit: 10, after, text: text.clone(), ..query(a.id) })
                .await
                .expect("page");
            pages += 1;
            seen.extend(page.chats.iter().map(|c| c.chat_id));
            if pages == 1 {
                // A chat created meanwhile (newest) never shifts the pages that follow.
                let late = chat_record(next(&ids), a.id, next(&ids), 100, 1);
                store.apply_history(&[HistoryWrite::Chat(late)]).await.expect("apply late");
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
            assert!(pages < 10, "paging must end");
        }
        let unique: HashSet<Id> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no duplicates ({text:?})");
        assert!(all.iter().all(|c| unique.contains(c)), "no gaps ({text:?})");
        if text.is_none() {
            let mut expected = all.clone();
            expected.reverse();
            assert_eq!(seen, expected, "newest first");
        }
    }
}

/// The jobs of one chat that lost its runtime state (issue #8), as the chaos checker found
/// them, and the transcript they must leave whatever their order:
/// - before the loss: A (visitor, `clientMessageId` a), B (agent), C (visitor, c; stored and
///   shown to the agent, its answer lost, and its job too unless `c_job`) — and G (agent),
///   whose job was lost;
/// - after it: the visitor's rebuild R1 (A, B), then the visitor resends c as C′ (a new id,
///   with a word no other message has); the agent's rebuild R2 uploads A, G, B, C: the union
///   keeps C (the smaller id) over C′, and G's earlier `sendTime` renumbers B and C; then D;
/// - B's job is redelivered (a node died before acking it), carrying its seq before R2.
struct LostChat {
    chat: Id,
    /// Jobs in the order they were published.
    jobs: Vec<HistoryWrite>,
    /// (content, seq, data_offset) as R2 and D left the chat.
    expected: Vec<(String, i64, i64)>,
}

impl LostChat {
    fn new(ids: &IdGenerator, site: Id, c_job: bool) -> (LostChat, ChatRecord) {
        let chat = next(ids);
        let (a, b, c, g, c2, d) = (next(ids), next(ids), next(ids), next(ids), next(ids), next(ids));
        let msg =
            |id: Id, seq: i64, offset: i64, kind: i64, text: &str, cmid: Option<&str>, rev: i64, rebuild: bool| {
                let mut m = message_record(id, chat, site, seq, kind, text);
                m.data_offset = offset;
                m.client_message_id = cmid.map(str::to_owned);
                // sendTime in the order the messages were written: G before B.
                let at = match text {
                    "alpha hello" => 1,
                    "gamma refund policy" => 2,
                    "bravo what can I do" => 3,
                    "charlie my order" => 4,
                    _ => 5,
                };
                m.send_time = format!("2026-01-01T00:00:{at:02}.000Z");
                HistoryWrite::Message(MessageRecord { rev, rebuild, ..m })
            };
        let (v, ag) = (1, 2);
        let mut jobs = vec![
            msg(a, 1, 1, v, "alpha hello", Some("a"), 10, false),
            msg(b, 2, 1, ag, "bravo what can I do", None, 11, false),
            msg(c, 3, 2, v, "charlie my order", Some("c"), 12, false),
            // R1: the visitor's copy.
            msg(a, 1, 1, v, "alpha hello", Some("a"), 20, true),
            msg(b, 2, 1, ag, "bravo what can I do", None, 20, true),
            msg(c2, 3, 2, v, "charlie my order zebra", Some("c"), 21, false),
            // R2: the union with the agent's copy, renumbered in sendTime order.
            msg(a, 1, 1, v, "alpha hello", Some("a"), 30, true),
            msg(g, 2, 1, ag, "gamma refund policy", None, 30, true),
            msg(b, 3, 2, ag, "bravo what can I do", None, 30, true),
            msg(c, 4, 2, v, "charlie my order", Some("c"), 30, true),
            msg(d, 5, 3, ag, "delta it ships today", None, 31, false),
            // B's job once more, late.
            msg(b, 2, 1, ag, "bravo what can I do", None, 11, false),
        ];
        if !c_job {
            jobs.remove(2);
        }
        let expected = [
            ("alpha hello", 1, 1),
            ("gamma refund policy", 2, 1),
            ("bravo what can I do", 3, 2),
            ("charlie my order", 4, 2),
            ("delta it ships today", 5, 3),
        ];
        let expected = expected.iter().map(|(t, s, o)| (t.to_string(), *s, *o)).collect();
        (LostChat { chat, jobs, expected }, chat_record(chat, site, next(ids), 0, 1))
    }

    async fn check(&self, store: &dyn Store, site: Id, order: &str) {
        let t = transcript(store, site, self.chat).await;
        let got: Vec<(String, i64, i64)> =
            t.messages.iter().map(|m| (m.content.clone(), m.seq, m.data_offset)).collect();
        assert_eq!(got, self.expected, "the transcript after the jobs {order}");
        let found = |words: &str| {
            let q = ChatQuery { text: Some(words.into()), ..query(site) };
            async move { list(store, &q).await.into_iter().map(|c| c.chat_id).collect::<Vec<_>>() }
        };
        assert!(found("gamma refund").await.contains(&self.chat), "the rebuilt chat is searchable ({order})");
        assert!(found("delta ships").await.contains(&self.chat), "and its later messages too ({order})");
        assert!(!found("zebra").await.contains(&self.chat), "the merged-away copy's text is gone ({order})");
    }
}

/// Bug 1 of issue #8: a resend stored under a new id after a lost state, merged away by the
/// rebuild's union (one message per clientMessageId), used to stay in the transcript.
pub async fn history_a_rebuild_keeps_one_message_per_client_message_id(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (lost, chat) = LostChat::new(&ids, a.id, false);
    store.apply_history(&[HistoryWrite::Chat(chat)]).await.expect("the chat");
    // As published, one job per batch: C′ is stored (no other row has c then) until R2.
    for job in &lost.jobs {
        store.apply_history(std::slice::from_ref(job)).await.expect("apply");
        if matches!(job, HistoryWrite::Message(m) if m.content.contains("zebra")) {
            let t = transcript(&*store, a.id, lost.chat).await;
            assert!(t.messages.iter().any(|m| m.content.contains("zebra")), "C′ is stored before R2");
        }
    }
    lost.check(&*store, a.id, "in order").await;
    // Replaying everything at once changes nothing.
    store.apply_history(&lost.jobs).await.expect("replay");
    lost.check(&*store, a.id, "replayed").await;
}

/// Bug 2 of issue #8: an older job (redelivered, or a rebuild before the last one) used to
/// put back a seq that a rebuild renumbered.
pub async fn history_a_late_job_never_undoes_a_rebuilds_seq(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    let (lost, chat) = LostChat::new(&ids, a.id, true);
    store.apply_history(&[HistoryWrite::Chat(chat)]).await.expect("the chat");
    // R2 and D first, then everything older, one by one, then R1's records once more.
    let (newest, older): (Vec<_>, Vec<_>) =
        lost.jobs.iter().cloned().partition(|j| matches!(j, HistoryWrite::Message(m) if m.rev >= 30));
    store.apply_history(&newest).await.expect("the newest");
    for job in older.iter().rev() {
        store.apply_history(std::slice::from_ref(job)).await.expect("apply a late job");
    }
    lost.check(&*store, a.id, "late").await;
}

/// The two rules together in many orders: each order on its own chat, the final transcript
/// always the one R2 and D left.
pub async fn history_merged_transcripts_do_not_depend_on_job_order(store: Arc<dyn Store>) {
    let ids = ids();
    let (a, _) = two_sites(&*store, &ids).await;
    // A fixed pseudo-random sequence (an LCG), so a failure names a reproducible order.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = move |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    for round in 0..12 {
        let (lost, chat) = LostChat::new(&ids, a.id, round % 2 == 1);
        store.apply_history(&[HistoryWrite::Chat(chat)]).await.expect("the chat");
        let mut jobs = lost.jobs.clone();
        let how = match round {
            0 => "all in one batch".to_owned(),
            1 => {
                jobs.reverse();
                "reversed, in one batch".to_owned()
            }
            _ => {
                for i in (1..jobs.len()).rev() {
                    jobs.swap(i, random(i + 1));
                }
                format!("shuffled (round {round})")
            }
        };
        let order: Vec<String> = jobs
            .iter()
            .map(|j| match j {
                HistoryWrite::Message(m) => format!("{}@{}", m.content.split(' ').next().unwrap_or(""), m.rev),
                _ => String::new(),
            })
            .collect();
        if round < 2 {
            store.apply_history(&jobs).await.expect("apply");
        } else {
            // Batches of 1 to 4 jobs, as a worker's fetches cut them.
            let mut rest = &jobs[..];
            while !rest.is_empty() {
                let n = (1 + random(4)).min(rest.len());
                store.apply_history(&rest[..n]).await.expect("apply");
                rest = &rest[n..];
            }
        }
        lost.check(&*store, a.id, &format!("{how}: {order:?}")).await;
    }
}
