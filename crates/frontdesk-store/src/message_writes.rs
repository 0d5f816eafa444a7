//! The message records of a write-behind batch, sorted for applying (issue #8; the rules
//! are `frontdesk_core::history`'s): rebuild records first, only those of the newest
//! rebuild of each chat the batch holds (an older rebuild's records would change nothing
//! once the newer one applied), then ordinary records. Both dialects apply what this
//! returns; only the SQL differs.

use std::collections::{HashMap, HashSet};

use frontdesk_core::history::{HistoryWrite, MessageRecord};
use frontdesk_core::id::{ChatId, Id};

/// A batch's message records, in the order to apply them.
#[derive(Debug, Default)]
pub(crate) struct MessageWrites<'a> {
    /// Rebuild records of the newest rebuild per chat, one per message id (the last one),
    /// grouped by chat.
    pub rebuild: Vec<&'a MessageRecord>,
    /// Ordinary records, one per message id (the first: they only ever insert).
    pub ordinary: Vec<&'a MessageRecord>,
}

impl<'a> MessageWrites<'a> {
    pub(crate) fn of(batch: &'a [HistoryWrite]) -> Self {
        let messages = batch.iter().filter_map(|w| match w {
            HistoryWrite::Message(m) => Some(m),
            _ => None,
        });
        let mut newest: HashMap<ChatId, i64> = HashMap::new();
        for m in messages.clone().filter(|m| m.rebuild) {
            let rev = newest.entry(m.chat_id).or_insert(m.rev);
            *rev = (*rev).max(m.rev);
        }
        let mut last: HashMap<Id, usize> = HashMap::new();
        let rebuild: Vec<&MessageRecord> =
            messages.clone().filter(|m| m.rebuild && newest.get(&m.chat_id) == Some(&m.rev)).collect();
        for (i, m) in rebuild.iter().enumerate() {
            last.insert(m.id, i);
        }
        let mut rebuild: Vec<&MessageRecord> =
            rebuild.iter().enumerate().filter(|(i, m)| last.get(&m.id) == Some(i)).map(|(_, m)| *m).collect();
        // Each chat's records together (a stable sort: the batch's order within a chat).
        rebuild.sort_by_key(|m| (m.chat_id, m.site_id));
        let mut seen = HashSet::new();
        let ordinary = messages.filter(|m| !m.rebuild && seen.insert(m.id)).collect();
        MessageWrites { rebuild, ordinary }
    }
}

#[cfg(test)]
mod tests {
    use super::MessageWrites;
    use frontdesk_core::history::{HistoryWrite, MessageRecord};
    use frontdesk_core::id::Id;

    fn record(id: u64, chat: u64, seq: i64, rev: i64, rebuild: bool) -> HistoryWrite {
        HistoryWrite::Message(MessageRecord {
            id: Id(id),
            chat_id: Id(chat),
            site_id: Id(1),
            seq,
            data_offset: seq,
            message_type: 1,
            sender_id: Id(2),
            sender_name: String::new(),
            content: String::new(),
            client_message_id: None,
            send_time: String::new(),
            send_time_ms: 0,
            rev,
            rebuild,
        })
    }

    fn shape(v: &[&MessageRecord]) -> Vec<(u64, i64, i64)> {
        v.iter().map(|m| (m.id.0, m.seq, m.rev)).collect()
    }

    #[test]
    fn only_the_newest_rebuild_of_each_chat_and_each_id_once() {
        let batch = vec![
            record(1, 9, 1, 10, false),
            record(1, 9, 1, 11, false),
            record(1, 9, 2, 20, true),
            record(2, 9, 1, 30, true),
            record(1, 9, 3, 30, true),
            record(1, 9, 4, 30, true),
            record(5, 8, 1, 5, true),
            record(6, 8, 2, 40, false),
        ];
        let w = MessageWrites::of(&batch);
        assert_eq!(shape(&w.rebuild), vec![(5, 1, 5), (2, 1, 30), (1, 4, 30)]);
        assert_eq!(shape(&w.ordinary), vec![(1, 1, 10), (6, 2, 40)]);
    }
}
