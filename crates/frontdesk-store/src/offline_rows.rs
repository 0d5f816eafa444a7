//! The `offline_messages` row both dialects read (migration 0006), and its conversion.

use frontdesk_core::error::BackendResult;
use frontdesk_core::history::OfflineMessage;

use crate::convert;
use crate::error::Dialect;

/// The columns of an [`OfflineRow`], in its order (a macro so `concat!` builds whole
/// statements as `&'static str`).
macro_rules! offline_columns {
    () => {
        "id, site_id, visitor_id, name, email, message, page_url, created_at, handled, handled_at, handled_by"
    };
}
pub(crate) use offline_columns;

pub(crate) type OfflineRow =
    (i64, i64, i64, String, String, String, Option<String>, i64, bool, Option<i64>, Option<i64>);

pub(crate) fn offline_from_row(dialect: Dialect, row: OfflineRow) -> BackendResult<OfflineMessage> {
    let (id, site, visitor, name, email, message, page_url, created_at, handled, handled_at, handled_by) = row;
    Ok(OfflineMessage {
        id: convert::id_from_db(dialect, id)?,
        site_id: convert::id_from_db(dialect, site)?,
        visitor_id: convert::id_from_db(dialect, visitor)?,
        name,
        email,
        message,
        page_url,
        created_at,
        handled,
        handled_at,
        handled_by: handled_by.map(|a| convert::id_from_db(dialect, a)).transpose()?,
    })
}

/// Rows read with one more than `limit` asked for: the page, and the cursor when more follow.
pub(crate) fn page(
    dialect: Dialect,
    mut rows: Vec<OfflineRow>,
    limit: u32,
) -> BackendResult<frontdesk_core::history::OfflinePage> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let messages = rows.into_iter().map(|r| offline_from_row(dialect, r)).collect::<BackendResult<Vec<_>>>()?;
    let next = if more { messages.last().map(|m| m.id) } else { None };
    Ok(frontdesk_core::history::OfflinePage { messages, next })
}
