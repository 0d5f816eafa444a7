//! Outbound e-mail (SPEC §8 "email"): the [`Mailer`] port, the [`Email`] it sends, and the
//! versioned job on the bus queue [`EMAIL_QUEUE`] that asks for one.
//!
//! E-mail is queued work: a module publishes an [`EmailJob`]; a worker (the offline
//! module's, for offline messages) turns it into an [`Email`] and hands it to the
//! [`Mailer`]. A send that fails is failed back to the bus, retried with backoff and
//! dead-lettered after the last attempt; delivery is at least once, so each e-mail carries
//! a `Message-ID` made from what it is about, which lets a mail client fold a duplicate.
//! The SMTP adapter lives in `frontdesk-connect`; without SMTP configured no job is queued.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::BackendResult;
use crate::history::OfflineMessageRecord;

/// The bus queue of e-mails to send.
pub const EMAIL_QUEUE: &str = "email.send";

/// The version of [`EmailJob`] this build writes and the newest it reads.
pub const EMAIL_JOB_VERSION: u32 = 1;

/// One job on [`EMAIL_QUEUE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailJob {
    pub v: u32,
    pub mail: EmailKind,
}

/// What an e-mail is about; the worker resolves recipients and text when it sends, so a
/// job waits out a database outage instead of failing the visitor's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmailKind {
    /// An offline message, to the site's notification address(es).
    OfflineMessage(OfflineMessageRecord),
}

/// A plain-text e-mail ready to send. Addresses are bare (`ann@shop.example`); display
/// names travel beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: Vec<String>,
    /// The address a reply goes to, with its display name.
    pub reply_to: Option<(String, String)>,
    pub subject: String,
    pub text: String,
    /// The `Message-ID` without angle brackets, e.g. `offline-123@frontdesk`.
    pub message_id: Option<String>,
}

/// Sends e-mail. `From` is the adapter's own (configured once).
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends one e-mail. `Unavailable` when the server could not be reached or answered
    /// with a temporary failure; `Other` when it refused the message.
    async fn send(&self, email: &Email) -> BackendResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use serde_json::json;

    #[test]
    fn jobs_carry_their_version_and_kind() {
        let job = EmailJob {
            v: EMAIL_JOB_VERSION,
            mail: EmailKind::OfflineMessage(OfflineMessageRecord {
                id: Id(9),
                site_id: Id(1),
                visitor_id: Id(2),
                name: "Ann".into(),
                email: "ann@shop.example".into(),
                message: "Hi".into(),
                page_url: Some("https://shop.example/".into()),
                created_at: 4,
            }),
        };
        let v = serde_json::to_value(&job).expect("encode");
        assert_eq!(v["v"], json!(1));
        assert_eq!(v["mail"]["kind"], json!("offline_message"));
        assert_eq!(v["mail"]["id"], json!("9"));
        assert_eq!(serde_json::from_value::<EmailJob>(v).expect("decode"), job);
    }
}
