//! The history checker on hand-made histories: a clean one passes, and each invariant's
//! violation is caught (a checker that cannot fail proves nothing).

use std::time::Duration;

use serde_json::json;

use crate::chaos_support::checker::{History, Msg, RECOVER_FROM};

const SITE: &str = "1";
const OTHER_SITE: &str = "2";
const VIS: &str = "v:10";
const AGENT: &str = "a:20";

fn msg(id: &str, seq: i64, kind: i64, offset: i64, cmid: Option<&str>) -> Msg {
    Msg {
        id: id.into(),
        chat: "100".into(),
        seq,
        offset,
        kind,
        sender: if kind == 1 { "10".into() } else { "20".into() },
        cmid: cmid.map(str::to_string),
        content: format!("content of {id}"),
    }
}

/// A chat of site 1 between visitor 10 and agent 20 with three acknowledged messages.
fn conversation() -> (History, Vec<Msg>) {
    let h = History::new();
    h.reader(VIS, SITE);
    h.reader(AGENT, SITE);
    h.chat("100", SITE, VIS, &[AGENT]);
    let all = vec![msg("m1", 1, 1, 1, Some("c1")), msg("m2", 2, 2, 1, Some("c2")), msg("m3", 3, 1, 2, Some("c3"))];
    for (reader, m) in [(VIS, &all[0]), (AGENT, &all[1]), (VIS, &all[2])] {
        let op = h.invoke(reader, "100", m.cmid.as_deref().unwrap_or_default());
        h.ok(op, m.clone());
        let (v, a) = if m.seq == 3 { (2, 1) } else { (1, i64::from(m.seq == 2)) };
        h.answer(reader, "100", &json!({"code": 0, "visitorDataOffset": v, "agentDataOffset": a, "messages": []}));
    }
    (h, all)
}

fn finals(h: &History, messages: &[Msg]) {
    h.final_view(VIS, "100", messages.to_vec());
    h.final_view(AGENT, "100", messages.to_vec());
    h.durable("100", messages.to_vec());
}

#[test]
fn a_clean_history_passes_with_its_counts() {
    let (h, all) = conversation();
    let op = h.invoke(VIS, "100", "c4");
    h.unknown(op, "socket closed");
    let op = h.invoke(VIS, "100", "c4");
    h.fail(op, "unavailable");
    finals(&h, &all);
    let r = h.check();
    r.assert_clean();
    assert_eq!((r.sent, r.acknowledged, r.failed, r.unknown, r.abandoned), (4, 3, 1, 1, 1));
    assert_eq!((r.lost, r.duplicated), (0, 0));
}

#[test]
fn i1_an_acknowledged_message_missing_from_a_final_read_is_lost() {
    let (h, all) = conversation();
    h.final_view(VIS, "100", all.clone());
    h.final_view(AGENT, "100", vec![all[0].clone(), all[1].clone()]);
    h.durable("100", all);
    let r = h.check();
    assert!(r.broke("I1") && r.lost == 1, "{r:?}");
}

#[test]
fn i1_an_acknowledged_message_missing_from_the_transcript_or_never_read_back_is_caught() {
    let (h, all) = conversation();
    h.final_view(VIS, "100", all.clone());
    h.final_view(AGENT, "100", all.clone());
    h.durable("100", all[..2].to_vec());
    assert!(h.check().broke("I1"));

    let (h, all) = conversation();
    h.final_view(VIS, "100", all.clone());
    h.durable("100", all);
    let r = h.check();
    assert!(r.violations.iter().any(|v| v.detail.contains("a:20 never read")), "{r:?}");
}

#[test]
fn i1_a_message_shown_to_a_reader_but_missing_at_the_end_is_lost() {
    let (h, all) = conversation();
    let shown = msg("m4", 4, 2, 2, None);
    h.push(VIS, "100", shown);
    finals(&h, &all);
    let r = h.check();
    assert!(r.broke("I1") && r.lost == 1, "{r:?}");
}

#[test]
fn i1_a_message_that_changed_its_id_is_caught() {
    let (h, mut all) = conversation();
    all[2].id = "m3-again".into();
    finals(&h, &all);
    let r = h.check();
    assert!(r.violations.iter().any(|v| v.invariant == "I1" && v.detail.contains("shows as m3-again")), "{r:?}");
}

#[test]
fn i2_a_message_stored_twice_is_a_duplicate() {
    let (h, mut all) = conversation();
    let mut twice = all[2].clone();
    twice.id = "m4".into();
    twice.seq = 4;
    twice.offset = 3;
    all.push(twice);
    finals(&h, &all);
    let r = h.check();
    assert!(r.broke("I2") && r.duplicated == 3, "one extra copy in each of three views: {r:?}");

    // Two acknowledgements of one clientMessageId naming different messages.
    let (h, all) = conversation();
    let op = h.invoke(VIS, "100", "c3");
    h.ok(op, msg("m9", 4, 1, 3, Some("c3")));
    finals(&h, &all);
    assert!(h.check().broke("I2"));
}

#[test]
fn i3_a_gap_in_seq_or_offsets_or_readers_that_disagree_are_caught() {
    let (h, mut all) = conversation();
    all[2].seq = 4;
    finals(&h, &all);
    assert!(h.check().broke("I3"), "seq gap");

    let (h, mut all) = conversation();
    all[2].offset = 3;
    finals(&h, &all);
    assert!(h.check().broke("I3"), "visitor offset gap");

    let (h, all) = conversation();
    let swapped = vec![all[0].clone(), all[2].clone(), all[1].clone()];
    h.final_view(VIS, "100", all.clone());
    h.final_view(AGENT, "100", swapped);
    h.durable("100", all);
    assert!(h.check().broke("I3"), "readers disagree on the order");

    let (h, all) = conversation();
    let mut changed = all[1].clone();
    changed.content = "edited".into();
    h.push(VIS, "100", changed);
    finals(&h, &all);
    assert!(h.check().broke("I3"), "a message id with two contents");
}

#[test]
fn i4_offsets_going_back_are_caught_but_the_rebuild_signal_is_not() {
    let (h, all) = conversation();
    h.answer(VIS, "100", &json!({"code": 0, "visitorDataOffset": 1, "agentDataOffset": 1, "messages": []}));
    finals(&h, &all);
    let r = h.check();
    assert!(r.broke("I4"), "{r:?}");

    let (h, all) = conversation();
    h.answer(VIS, "100", &json!({"code": 1, "visitorDataOffset": -1, "agentDataOffset": -1}));
    h.answer(VIS, "100", &json!({"code": 0, "visitorDataOffset": 2, "agentDataOffset": 1, "messages": []}));
    finals(&h, &all);
    let r = h.check();
    r.assert_clean();
    assert_eq!(r.rebuilds, 1);
}

#[test]
fn i5_a_message_of_another_sites_chat_or_a_foreign_sender_is_caught() {
    let (h, all) = conversation();
    h.reader("v:30", OTHER_SITE);
    h.chat("300", OTHER_SITE, "v:30", &[]);
    let mut theirs = msg("m30", 1, 1, 1, None);
    theirs.chat = "300".into();
    theirs.sender = "30".into();
    h.push(VIS, "300", theirs);
    finals(&h, &all);
    assert!(h.check().broke("I5"), "a reader of site 1 got a message of site 2");

    let (h, mut all) = conversation();
    h.reader("a:40", OTHER_SITE);
    all[1].sender = "40".into();
    finals(&h, &all);
    assert!(h.check().broke("I5"), "an agent of site 2 wrote in a chat of site 1");

    let (h, all) = conversation();
    let mut moved = all[0].clone();
    moved.chat = "999".into();
    h.answer(
        AGENT,
        "100",
        &json!({"code": 0, "visitorDataOffset": 2, "agentDataOffset": 1,
        "messages": [{"id": moved.id, "chatId": "999", "seq": 1, "dataOffset": 1, "messageType": 1,
                      "senderId": "10", "content": moved.content}]}),
    );
    finals(&h, &all);
    assert!(h.check().broke("I5"), "a message of another chat in this chat's answer");
}

#[test]
fn recovery_is_the_slowest_readers_first_acknowledgement_after_the_mark() {
    let (h, all) = conversation();
    h.mark(RECOVER_FROM);
    let op = h.invoke(VIS, "100", "c5");
    std::thread::sleep(Duration::from_millis(30));
    h.ok(op, msg("m5", 4, 1, 3, Some("c5")));
    let op = h.invoke(AGENT, "100", "c6");
    h.fail(op, "unavailable");
    let mut all = all;
    all.push(msg("m5", 4, 1, 3, Some("c5")));
    finals(&h, &all);
    let r = h.check();
    assert!(r.broke("recovery"), "the agent never got an acknowledgement: {r:?}");
    let op = h.invoke(AGENT, "100", "c6");
    std::thread::sleep(Duration::from_millis(30));
    h.ok(op, msg("m6", 5, 2, 2, Some("c6")));
    let r = h.check();
    assert!(r.recovery.is_some_and(|d| d >= Duration::from_millis(60)), "{r:?}");
}
