//! `chat/rebuild` (SPEC §6): a client uploads its copy of a chat the server lost (or holds
//! less of). Only the chat's visitor or an agent of its site may; only messages whose `sig`
//! verifies and whose `chatId` is this chat are taken (the others are counted in
//! `data.rejected`); the union by id (and `clientMessageId`) replaces the chat's messages;
//! offsets become the maximum seen. One rebuild per chat at a time, across nodes (a lock in
//! the state store; a concurrent call waits up to 5 × 500 ms, as in seed 001). The result
//! depends only on the set of messages, so visitor and agent may upload in any order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::id::{ChatId, Id};
use frontdesk_core::keys;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Offsets, Registry, Step};
use serde::Deserialize;
use serde_json::{json, Value};

use super::append::{all_messages, merge, Merged};
use super::offsets::{recreate, relation};
use super::{no_such_chat, ChatAccess, Chats};
use crate::model::{message_type, ChatMessage};
use crate::RegisterError;

const LOCK_LEASE: Duration = Duration::from_secs(10);
const LOCK_WAIT: Duration = Duration::from_millis(500);
const LOCK_RETRIES: usize = 5;
/// A rebuild that keeps meeting new appends gives up after this many reads.
const MERGE_ATTEMPTS: usize = 5;

pub(super) fn register(registry: &mut Registry, chats: &Arc<Chats>) -> Result<(), RegisterError> {
    registry.register("chat/rebuild", Arc::new(Rebuild(chats.clone())))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RebuildBody {
    chat_id: ChatId,
    #[serde(default)]
    visitor_data_offset: i64,
    #[serde(default)]
    agent_data_offset: i64,
    #[serde(default)]
    messages: Vec<Value>,
}

/// The union of `existing` and `uploaded`: by id, then one message per `clientMessageId`
/// (the smallest id), ordered by `seq`. `seq` is re-derived in `sendTime` order only when
/// the messages disagree (a missing or repeated `seq`); a side's `dataOffset`s are
/// renumbered when they do not rise with `seq`.
pub fn union(existing: Vec<ChatMessage>, uploaded: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut by_id: BTreeMap<Id, ChatMessage> = BTreeMap::new();
    for m in existing.into_iter().chain(uploaded) {
        by_id.entry(m.id).or_insert(m);
    }
    let mut seen_cmid = HashSet::new();
    let mut msgs: Vec<ChatMessage> = by_id
        .into_values()
        .filter(|m| m.client_message_id.as_ref().is_none_or(|c| seen_cmid.insert(c.clone())))
        .collect();
    msgs.sort_by(|a, b| (a.seq, &a.send_time, a.id).cmp(&(b.seq, &b.send_time, b.id)));
    let mut seqs = HashSet::new();
    if msgs.iter().any(|m| m.seq <= 0 || !seqs.insert(m.seq)) {
        // Two counts of `seq` met (the chat was recreated empty and counted again): the
        // clients' clocks are the only order both share.
        msgs.sort_by(|a, b| (&a.send_time, a.seq, a.id).cmp(&(&b.send_time, b.seq, b.id)));
        for (i, m) in msgs.iter_mut().enumerate() {
            m.seq = i as i64 + 1;
        }
    }
    // A side's offsets must rise with `seq`; where they do not (a repeated or restarted
    // count, even without a repeat), that side is renumbered 1, 2, 3 … in `seq` order.
    for visitor_side in [true, false] {
        let side = |m: &ChatMessage| (m.message_type == message_type::VISITOR) == visitor_side;
        let mut last = 0;
        let disordered = msgs.iter().filter(|m| side(m)).any(|m| {
            let bad = m.data_offset <= last;
            last = m.data_offset;
            bad
        });
        if disordered {
            for (n, m) in msgs.iter_mut().filter(|m| side(m)).enumerate() {
                m.data_offset = n as i64 + 1;
            }
        }
    }
    msgs
}

struct Rebuild(Arc<Chats>);

impl Rebuild {
    /// Verifies the uploaded messages: (accepted, rejected count).
    async fn verify(&self, site: Id, chat: ChatId, raw: Vec<Value>) -> Result<(Vec<ChatMessage>, usize), Failure> {
        let mut ok = Vec::new();
        let mut rejected = 0;
        for v in raw {
            let Ok(m) = serde_json::from_value::<ChatMessage>(v) else {
                rejected += 1;
                continue;
            };
            // A rebuild never moves messages between chats.
            if m.chat_id == chat && self.0.macs.verify(site, &m).await? {
                ok.push(ChatMessage { sig: None, ..m });
            } else {
                rejected += 1;
            }
        }
        Ok((ok, rejected))
    }

    async fn merge_locked(
        &self,
        chat: ChatId,
        body: &RebuildBody,
        uploaded: Vec<ChatMessage>,
    ) -> Result<usize, Failure> {
        for _ in 0..MERGE_ATTEMPTS {
            let meta = self.0.meta_or_404(chat).await?;
            let existing = all_messages(self.0.state.as_ref(), chat).await?;
            let before: HashMap<Id, ()> = existing.iter().map(|m| (m.id, ())).collect();
            let messages = union(existing, uploaded.clone());
            let added = messages.iter().filter(|m| !before.contains_key(&m.id)).count();
            let max_off = |visitor: bool| {
                messages
                    .iter()
                    .filter(|m| (m.message_type == message_type::VISITOR) == visitor)
                    .map(|m| m.data_offset)
                    .max()
                    .unwrap_or(0)
            };
            let merged = Merged {
                seq: messages.iter().map(|m| m.seq).max().unwrap_or(0).max(meta.seq),
                visitor_data_offset: meta.visitor_data_offset.max(body.visitor_data_offset).max(max_off(true)),
                agent_data_offset: meta.agent_data_offset.max(body.agent_data_offset).max(max_off(false)),
                messages,
            };
            if merge(self.0.state.as_ref(), chat, meta.seq, &merged).await? {
                return Ok(added);
            }
        }
        Err(Failure::conflict(format!("chat {chat} kept changing during the rebuild; try again")))
    }
}

#[async_trait]
impl Handler for Rebuild {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let mut body: RebuildBody = ctx.decode()?;
        let chat = body.chat_id;
        let meta = match self.0.current_core(chat).await? {
            Some(m) => m,
            None => recreate(&self.0, &ctx.caller, chat).await?.ok_or_else(no_such_chat)?.core(),
        };
        let who = relation(&ctx.caller, &meta).ok_or_else(no_such_chat)?;
        if body.visitor_data_offset < 0 || body.agent_data_offset < 0 {
            return Err(Failure::bad_request("data.visitorDataOffset and data.agentDataOffset must be 0 or more"));
        }
        let (uploaded, rejected) = self.verify(meta.site_id, chat, std::mem::take(&mut body.messages)).await?;
        let lock = keys::chat(chat, "rebuild");
        let owner = self.0.next_id()?.to_string();
        let mut held = self.0.state.lock_acquire(&lock, &owner, LOCK_LEASE).await?;
        for _ in 0..LOCK_RETRIES {
            if held {
                break;
            }
            tokio::time::sleep(LOCK_WAIT).await;
            held = self.0.state.lock_acquire(&lock, &owner, LOCK_LEASE).await?;
        }
        if !held {
            return Err(Failure::conflict(format!(
                "another rebuild of chat {chat} is still running after {} ms; try again",
                LOCK_WAIT.as_millis() * LOCK_RETRIES as u128
            )));
        }
        let accepted = uploaded.len();
        let result = self.merge_locked(chat, &body, uploaded).await;
        if let Err(e) = self.0.state.lock_release(&lock, &owner).await {
            tracing::warn!(error = %e, "cannot release a rebuild lock; it lapses on its own");
        }
        let added = result?;
        ctx.extensions.insert(ChatAccess { chat_id: chat, who });
        ctx.request.offsets =
            Some(Offsets { visitor_data_offset: body.visitor_data_offset, agent_data_offset: body.agent_data_offset });
        ctx.set_result("chatId", json!(chat));
        ctx.set_result("accepted", json!(accepted));
        ctx.set_result("added", json!(added));
        ctx.set_result("rejected", json!(rejected));
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::union;
    use crate::model::{message_type, ChatMessage};
    use frontdesk_core::id::Id;

    fn msg(id: u64, seq: i64, kind: i64, offset: i64, time: &str, cmid: Option<&str>) -> ChatMessage {
        ChatMessage {
            id: Id(id),
            chat_id: Id(9),
            seq,
            data_offset: offset,
            message_type: kind,
            sender_id: Id(1),
            sender_name: String::new(),
            content: format!("m{id}"),
            send_time: time.to_string(),
            client_message_id: cmid.map(str::to_string),
            attachment: None,
            sig: None,
        }
    }

    fn shape(v: &[ChatMessage]) -> Vec<(u64, i64, i64)> {
        v.iter().map(|m| (m.id.0, m.seq, m.data_offset)).collect()
    }

    #[test]
    fn the_union_keeps_each_message_once_whatever_the_order() {
        let (v, a) = (message_type::VISITOR, message_type::AGENT);
        let visitor_copy =
            vec![msg(1, 1, v, 1, "t1", Some("c1")), msg(2, 2, a, 1, "t2", None), msg(4, 4, v, 2, "t4", None)];
        let agent_copy =
            vec![msg(2, 2, a, 1, "t2", None), msg(3, 3, a, 2, "t3", None), msg(1, 1, v, 1, "t1", Some("c1"))];
        let one = union(visitor_copy.clone(), agent_copy.clone());
        let other = union(agent_copy, visitor_copy);
        assert_eq!(shape(&one), vec![(1, 1, 1), (2, 2, 1), (3, 3, 2), (4, 4, 2)]);
        assert_eq!(shape(&one), shape(&other));
    }

    #[test]
    fn one_message_per_client_message_id_and_seq_rederived_when_they_disagree() {
        let v = message_type::VISITOR;
        // Two ids with one clientMessageId (a resend the server took twice): the smaller id stays.
        let dup = union(vec![msg(5, 1, v, 1, "t1", Some("x"))], vec![msg(6, 2, v, 2, "t2", Some("x"))]);
        assert_eq!(shape(&dup), vec![(5, 1, 1)]);
        // Missing or repeated seq: renumbered in sendTime order, and the side's offsets too.
        let re =
            union(vec![msg(7, 0, v, 0, "t2", None)], vec![msg(8, 1, v, 1, "t1", None), msg(9, 1, v, 1, "t3", None)]);
        assert_eq!(shape(&re), vec![(8, 1, 1), (7, 2, 2), (9, 3, 3)]);
    }
}

/// Property tests of [`union`] (issue #8), over histories as they happen: a chat's messages
/// before the runtime state was lost (`seq` 1…n) and after it was recreated empty (`seq`
/// from 1 again, later `sendTime`), a few resends sharing a `clientMessageId`, and two
/// copies (the server's and a client's, or visitor's and agent's) each holding any part of
/// it, in any order. I1: no message of either copy is lost (except a resend whose
/// `clientMessageId` a smaller id already holds). I2: none twice, by id or by
/// `clientMessageId`. I3: the result does not depend on the order of the copies or of
/// their messages, `seq` is strictly increasing, and gap-free (as are each side's offsets)
/// whenever the copies disagreed or together hold the whole history.
/// Cases: `PROPTEST_CASES` (default 256).
#[cfg(test)]
mod props {
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    use super::union;
    use crate::model::{message_type, ChatMessage};
    use frontdesk_core::id::Id;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Case {
        /// Every message of the chat, as the server once answered it.
        history: Vec<ChatMessage>,
        a: Vec<ChatMessage>,
        b: Vec<ChatMessage>,
    }

    /// (kind, clientMessageId from a small pool so resends occur, which copies hold it).
    type Spec = (i64, Option<u8>, u8);

    fn part(specs: &[Spec], first_time: usize, ids: &[u64]) -> Vec<(ChatMessage, u8)> {
        let (mut seq, mut visitor, mut agent) = (0, 0, 0);
        specs
            .iter()
            .zip(ids)
            .enumerate()
            .map(|(i, ((kind, cmid, held), id))| {
                seq += 1;
                let offset = if *kind == message_type::VISITOR {
                    visitor += 1;
                    visitor
                } else {
                    agent += 1;
                    agent
                };
                let t = first_time + i;
                let m = ChatMessage {
                    id: Id(*id),
                    chat_id: Id(9),
                    seq,
                    data_offset: offset,
                    message_type: *kind,
                    sender_id: Id(1),
                    sender_name: String::new(),
                    content: format!("m{id}"),
                    send_time: format!("2026-01-01T{:02}:{:02}:{:02}.000Z", t / 3600, t / 60 % 60, t % 60),
                    client_message_id: cmid.map(|c| format!("c{c}")),
                    attachment: None,
                    sig: None,
                };
                (m, *held)
            })
            .collect()
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            prop::sample::select(vec![message_type::VISITOR, message_type::AGENT, message_type::SYSTEM]),
            prop::option::weighted(0.3, 0u8..4),
            0u8..4,
        )
    }

    fn case() -> impl Strategy<Value = Case> {
        (prop::collection::vec(spec(), 0..14), prop::collection::vec(spec(), 0..6), any::<bool>())
            .prop_flat_map(|(old, new, whole)| {
                let n = old.len() + new.len();
                // Distinct ids in an order unrelated to time.
                let ids = prop::collection::btree_set(1u64..1 << 40, n)
                    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                    .prop_shuffle();
                (Just(old), Just(new), Just(whole), ids)
            })
            .prop_flat_map(|(old, new, whole, ids)| {
                let mut held = part(&old, 0, &ids[..old.len()]);
                held.extend(part(&new, old.len(), &ids[old.len()..]));
                let history: Vec<ChatMessage> = held.iter().map(|(m, _)| m.clone()).collect();
                // 0: copy a, 1: copy b, 2: both, 3: neither (unless the copies hold it all).
                let pick = |copy: u8| {
                    held.iter()
                        .filter(|(_, h)| {
                            let h = if whole { h % 3 } else { *h };
                            h == copy || h == 2
                        })
                        .map(|(m, _)| m.clone())
                        .collect::<Vec<_>>()
                };
                (Just(history), Just(pick(0)).prop_shuffle(), Just(pick(1)).prop_shuffle())
            })
            .prop_map(|(history, a, b)| Case { history, a, b })
    }

    fn ids(v: &[ChatMessage]) -> BTreeSet<u64> {
        v.iter().map(|m| m.id.0).collect()
    }

    /// The messages of both copies, one per id, then one per clientMessageId (smallest id).
    fn expected(case: &Case) -> BTreeSet<u64> {
        let held: BTreeMap<u64, &ChatMessage> = case.a.iter().chain(&case.b).map(|m| (m.id.0, m)).collect();
        let mut cmids = HashSet::new();
        held.values().filter(|m| m.client_message_id.as_ref().is_none_or(|c| cmids.insert(c))).map(|m| m.id.0).collect()
    }

    fn gap_free(values: impl Iterator<Item = i64>) -> bool {
        values.enumerate().all(|(i, v)| v == i as i64 + 1)
    }

    proptest! {
        #[test]
        fn i1_i2_no_message_lost_none_twice(case in case()) {
            let out = union(case.a.clone(), case.b.clone());
            prop_assert_eq!(ids(&out), expected(&case), "I1: lost or invented messages");
            prop_assert_eq!(ids(&out).len(), out.len(), "I2: an id twice");
            let cmids: Vec<_> = out.iter().filter_map(|m| m.client_message_id.clone()).collect();
            prop_assert_eq!(cmids.iter().collect::<HashSet<_>>().len(), cmids.len(), "I2: a clientMessageId twice");
            // Nothing but seq and the side's offset is ever changed.
            let by_id: BTreeMap<u64, &ChatMessage> = case.history.iter().map(|m| (m.id.0, m)).collect();
            for m in &out {
                let mut original = by_id[&m.id.0].clone();
                original.seq = m.seq;
                original.data_offset = m.data_offset;
                prop_assert_eq!(m, &original);
            }
        }

        #[test]
        fn i3_the_same_result_in_any_order(case in case()) {
            let one = union(case.a.clone(), case.b.clone());
            let other = union(case.b.clone(), case.a.clone());
            prop_assert_eq!(&one, &other);
            let mut reversed_a = case.a.clone();
            reversed_a.reverse();
            prop_assert_eq!(&union(reversed_a, case.b.clone()), &one);
            // And merging the result again changes nothing.
            prop_assert_eq!(&union(one.clone(), case.a.clone()), &one);
        }

        #[test]
        fn i3_seq_and_offsets_without_gaps(case in case()) {
            let out = union(case.a.clone(), case.b.clone());
            let seqs: Vec<i64> = out.iter().map(|m| m.seq).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs.first().is_none_or(|s| *s > 0), "{:?}", seqs);
            let keep = expected(&case);
            let whole = keep == ids(&case.history);
            let kept: Vec<&ChatMessage> = case.history.iter().filter(|m| keep.contains(&m.id.0)).collect();
            let conflict = |v: Vec<i64>| v.len() != v.iter().collect::<HashSet<_>>().len();
            if conflict(kept.iter().map(|m| m.seq).collect()) {
                // The copies disagree (a restarted chat): renumbered in sendTime order.
                prop_assert!(gap_free(seqs.iter().copied()), "seq has gaps: {:?}", seqs);
                prop_assert!(out.windows(2).all(|w| w[0].send_time < w[1].send_time), "not in sendTime order");
            } else {
                // They agree: every message keeps the seq it was shown with.
                let shown: Vec<i64> = kept.iter().map(|m| m.seq).collect::<BTreeSet<_>>().into_iter().collect();
                prop_assert_eq!(&seqs, &shown);
                if whole {
                    prop_assert!(gap_free(seqs.iter().copied()), "seq has gaps: {:?}", seqs);
                }
            }
            for visitor in [true, false] {
                let on_side = |m: &ChatMessage| (m.message_type == message_type::VISITOR) == visitor;
                let offsets: Vec<i64> = out.iter().filter(|m| on_side(m)).map(|m| m.data_offset).collect();
                if whole || conflict(kept.iter().filter(|m| on_side(m)).map(|m| m.data_offset).collect()) {
                    prop_assert!(gap_free(offsets.iter().copied()), "a side's offsets have gaps: {:?}", offsets);
                }
            }
        }

        /// Found by these properties: after a restart, when the copies held a side's
        /// pre-restart messages only from offset 2 on, that side's offsets were not
        /// renumbered with `seq` (they held no duplicate), so the merged chat held e.g.
        /// visitor offsets `[2, 3, 4, 5, 1]` in seq order, and `chat/sync` never sent the
        /// last message to a client at offset ≥ 1.
        #[test]
        fn i3_each_sides_offsets_increase_with_seq(case in case()) {
            let out = union(case.a.clone(), case.b.clone());
            for visitor in [true, false] {
                let offsets: Vec<i64> = out
                    .iter()
                    .filter(|m| (m.message_type == message_type::VISITOR) == visitor)
                    .map(|m| m.data_offset)
                    .collect();
                prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "a side's offsets out of order: {:?}", offsets);
            }
        }
    }
}
