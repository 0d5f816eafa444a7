//! `did` stages of the visitor events: `visitor/segments` (simple segments computed from
//! the record) and `visitor/publish` (the `visitor.updated` push to the site's agents when
//! something they see changed). Both work on the [`Touched`] visitor of the `do` stage.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Step};
use frontdesk_core::push::Push;
use frontdesk_core::state::StateStore;
use serde_json::Value;

use super::{push_updated, seen_by_agents_changed, store_record, Touched};
use crate::model::VisitorRecord;

/// The longest segment name taken from `customVariables.segment`.
const MAX_SEGMENT_CHARS: usize = 64;

/// "returning" after more than one visit, "new" otherwise; plus the page's own
/// `customVariables.segment` when it is a non-empty string.
pub(crate) fn segments_of(record: &VisitorRecord) -> Vec<String> {
    let mut segments = vec![if record.visit_count > 1 { "returning" } else { "new" }.to_string()];
    if let Some(Value::String(s)) = record.custom_variables.get("segment") {
        let s = s.trim();
        if !s.is_empty() && s.chars().count() <= MAX_SEGMENT_CHARS && !segments.iter().any(|x| x == s) {
            segments.push(s.to_string());
        }
    }
    segments
}

fn touched(ctx: &Ctx, stage: &str) -> Result<Touched, Failure> {
    ctx.extensions.get::<Touched>().cloned().ok_or_else(|| {
        Failure::internal(format!(
            "{stage} runs after a visitor stage of `do` (visitor/create, page_visit, page_heartbeat, \
             set_custom_variables); check the pipeline of {}",
            ctx.event
        ))
    })
}

pub(super) struct Segments {
    pub state: Arc<dyn StateStore>,
}

#[async_trait]
impl Handler for Segments {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let mut t = touched(ctx, "visitor/segments")?;
        let segments = segments_of(&t.record);
        if segments != t.record.segments {
            let stored = t.record.clone();
            t.record.segments = segments;
            store_record(self.state.as_ref(), Some(&stored), &t.record, false).await?;
            ctx.extensions.insert(t);
        }
        Ok(Step::Next)
    }
}

pub(super) struct Publish {
    pub push: Arc<dyn Push>,
}

#[async_trait]
impl Handler for Publish {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let t = touched(ctx, "visitor/publish")?;
        if seen_by_agents_changed(t.before.as_ref(), &t.record) {
            push_updated(self.push.as_ref(), &t.record).await?;
        }
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_follow_visits_and_the_page_segment() {
        let mut r = VisitorRecord { visit_count: 1, ..VisitorRecord::default() };
        assert_eq!(segments_of(&r), vec!["new"]);
        r.visit_count = 3;
        r.custom_variables.insert("segment".into(), json!(" vip "));
        assert_eq!(segments_of(&r), vec!["returning", "vip"]);
        r.custom_variables.insert("segment".into(), json!(5));
        assert_eq!(segments_of(&r), vec!["returning"]);
    }

    #[test]
    fn only_what_agents_see_counts_as_a_change() {
        let before = VisitorRecord { last_seen: 1, page_views: 1, ..VisitorRecord::default() };
        let mut after = VisitorRecord { last_seen: 2, ..before.clone() };
        assert!(!seen_by_agents_changed(Some(&before), &after));
        after.page_views = 2;
        assert!(seen_by_agents_changed(Some(&before), &after));
        assert!(seen_by_agents_changed(None, &after));
    }
}
