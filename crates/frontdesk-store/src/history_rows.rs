//! Rows of the history tables (chats, messages, chat members) and their conversion to the
//! history records of `frontdesk_core::history`, shared by both dialects' `history` modules.

use std::collections::HashMap;

use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::history::{ChatSummary, MessageRecord};

use crate::convert;
use crate::error::Dialect;

/// The agent-message type (SPEC §4): the first one sets a chat's `first_response_at`.
pub(crate) const AGENT_MESSAGE: i64 = 2;

/// A chat summary row: id, site_id, visitor_id, visitor_name, visitor_email, department_id,
/// status, agent_id, created_at, started_at, ended_at, first_response_at, rating, comment,
/// wrap_up_notes, tags (JSON text).
pub(crate) type SummaryRow = (
    i64,
    i64,
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
);

/// A `messages` row in [`message_columns`] order.
pub(crate) type MessageRow = (i64, i64, i64, i64, i64, i64, i64, String, String, Option<String>, String, i64);

macro_rules! message_columns {
    () => {
        "id, chat_id, site_id, seq, data_offset, message_type, sender_id, sender_name, content, \
         client_message_id, send_time, send_time_ms"
    };
}
pub(crate) use message_columns;

fn opt_id(d: Dialect, v: Option<i64>) -> BackendResult<Option<frontdesk_core::id::Id>> {
    v.map(|v| convert::id_from_db(d, v)).transpose()
}

/// A summary from its row and the chat's members (agent ids in the order they joined).
pub(crate) fn summary_from_row(d: Dialect, row: SummaryRow, members: Vec<i64>) -> BackendResult<ChatSummary> {
    let (
        id,
        site,
        visitor,
        vname,
        vemail,
        dept,
        status,
        agent,
        created,
        started,
        ended,
        first,
        rating,
        comment,
        wrap,
        tags,
    ) = row;
    let tags: Vec<String> = serde_json::from_str(&tags)
        .map_err(|e| BackendError::other(d.name(), format!("stored chats.tags is not a JSON array of strings: {e}")))?;
    Ok(ChatSummary {
        chat_id: convert::id_from_db(d, id)?,
        site_id: convert::id_from_db(d, site)?,
        visitor_id: convert::id_from_db(d, visitor)?,
        visitor_name: vname,
        visitor_email: vemail,
        department_id: opt_id(d, dept)?,
        status,
        agent_id: opt_id(d, agent)?,
        agent_ids: members.into_iter().map(|a| convert::id_from_db(d, a)).collect::<BackendResult<_>>()?,
        created_at: created,
        started_at: started,
        ended_at: ended,
        first_response_at: first,
        rating,
        comment,
        wrap_up_notes: wrap,
        tags,
    })
}

/// `(chat_id, agent_id)` pairs in order → agent ids per chat.
pub(crate) fn members_by_chat(pairs: Vec<(i64, i64)>) -> HashMap<i64, Vec<i64>> {
    let mut by_chat: HashMap<i64, Vec<i64>> = HashMap::new();
    for (chat, agent) in pairs {
        by_chat.entry(chat).or_default().push(agent);
    }
    by_chat
}

pub(crate) fn message_from_row(d: Dialect, row: MessageRow) -> BackendResult<MessageRecord> {
    let (id, chat, site, seq, offset, kind, sender, sender_name, content, cmid, send_time, ms) = row;
    Ok(MessageRecord {
        id: convert::id_from_db(d, id)?,
        chat_id: convert::id_from_db(d, chat)?,
        site_id: convert::id_from_db(d, site)?,
        seq,
        data_offset: offset,
        message_type: kind,
        sender_id: convert::id_from_db(d, sender)?,
        sender_name,
        content,
        client_message_id: cmid,
        send_time,
        send_time_ms: ms,
        rev: 0,
        rebuild: false,
    })
}

/// The caller's words as an FTS5 query: each word a quoted phrase (quotes doubled), all of
/// them required. FTS5's own syntax (`OR`, `NEAR`, `*`, column filters) is not offered to
/// callers, so no input is a syntax error. `None` when there is no word.
pub(crate) fn fts5_query(text: &str) -> Option<String> {
    let words: Vec<String> = text.split_whitespace().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// How much text one search part of a chat covers before the next part starts (characters,
/// each message counting its length plus one separator). Migration 0007 cuts parts at the
/// same size (PostgreSQL: its insert trigger; both: the backfill). Bounded parts keep the
/// cost of appending a message bounded; a chat's whole text is never rewritten.
pub(crate) const SEARCH_PART_CHARS: i64 = 8192;

/// Text to add to one search part: `append` to the chat's open part (or create it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartText {
    pub part: i64,
    pub chars: i64,
    pub body: String,
}

/// Places a chat's new messages (in seq order) after its open part `(part, chars)`, if it
/// has one: a message starting at or past [`SEARCH_PART_CHARS`] into the open part goes to
/// the next part. Returns the text per part, in part order.
pub(crate) fn place_in_parts<'a>(
    open: Option<(i64, i64)>,
    contents: impl IntoIterator<Item = &'a str>,
) -> Vec<PartText> {
    let (base, mut offset) = open.unwrap_or((0, 0));
    let mut parts: Vec<PartText> = Vec::new();
    for content in contents {
        let len = content.chars().count() as i64 + 1;
        let part = base + offset / SEARCH_PART_CHARS;
        offset += len;
        match parts.last_mut() {
            Some(p) if p.part == part => {
                p.chars += len;
                p.body.push(' ');
                p.body.push_str(content);
            }
            _ => parts.push(PartText { part, chars: len, body: content.to_owned() }),
        }
    }
    parts
}

/// The earliest agent message per chat of a batch: `(chat_id, send_time_ms)`.
pub(crate) fn first_responses(batch: &[frontdesk_core::history::HistoryWrite]) -> HashMap<frontdesk_core::id::Id, i64> {
    let mut first: HashMap<frontdesk_core::id::Id, i64> = HashMap::new();
    for w in batch {
        if let frontdesk_core::history::HistoryWrite::Message(m) = w {
            if m.message_type == AGENT_MESSAGE {
                let e = first.entry(m.chat_id).or_insert(m.send_time_ms);
                *e = (*e).min(m.send_time_ms);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::{fts5_query, place_in_parts, PartText, SEARCH_PART_CHARS};

    #[test]
    fn fts5_queries_quote_every_word() {
        assert_eq!(fts5_query("refund  order").as_deref(), Some("\"refund\" \"order\""));
        assert_eq!(fts5_query("a\"b OR").as_deref(), Some("\"a\"\"b\" \"OR\""));
        assert_eq!(fts5_query("   "), None);
    }

    #[test]
    fn parts_fill_up_then_the_next_one_opens() {
        let long = "x".repeat(SEARCH_PART_CHARS as usize - 5);
        // A new chat: the first message opens part 0; the next one still starts inside it.
        let parts = place_in_parts(None, [long.as_str(), "hello", "world"]);
        assert_eq!(
            parts,
            vec![
                PartText { part: 0, chars: SEARCH_PART_CHARS + 2, body: format!("{long} hello") },
                PartText { part: 1, chars: 6, body: "world".into() },
            ]
        );
        // Appends go to the open part until it is full, and never to an older one.
        let parts = place_in_parts(Some((3, 100)), ["a", "b"]);
        assert_eq!(parts, vec![PartText { part: 3, chars: 4, body: "a b".into() }]);
        let parts = place_in_parts(Some((3, SEARCH_PART_CHARS)), ["a"]);
        assert_eq!(parts, vec![PartText { part: 4, chars: 2, body: "a".into() }]);
        assert!(place_in_parts(Some((0, 0)), []).is_empty());
    }
}
