//! The e-mail worker: `offline/start` (in `server.start`) drains the bus queue
//! [`EMAIL_QUEUE`] with core's [`run_worker`] when a [`Mailer`](frontdesk_core::mail::Mailer)
//! is configured; `offline/stop` (in `server.end`) stops it after the e-mail in hand (or
//! after [`STOP_WAIT`], leaving that e-mail to be sent again).
//!
//! Recipients are resolved when the e-mail is sent, not when the visitor submits (so a
//! submit needs only the bus): the site's `offlineMessageEmails` setting when it names any
//! address, otherwise every admin of the site. A send that fails (the mail server or the
//! store unavailable, a refusal) fails the job back to the bus: retried with backoff and
//! dead-lettered after the last attempt. Delivery is at least once; the `Message-ID`
//! (`offline-<id>@frontdesk`) lets a mail client fold a duplicate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::bus::Job;
use frontdesk_core::history::OfflineMessageRecord;
use frontdesk_core::mail::{Email, EmailJob, EmailKind, Mailer, EMAIL_JOB_VERSION, EMAIL_QUEUE};
use frontdesk_core::pipeline::{Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::{Role, Site};
use frontdesk_core::time::rfc3339;
use frontdesk_core::worker::{run_worker, JobHandler};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::validate::email_shaped;
use super::{Offline, EMAILS_SETTING};
use crate::RegisterError;

/// E-mails fetched at once. One: a send may take up to the SMTP adapter's timeout (20 s),
/// and a fetched job not settled within the bus's visibility timeout (30 s) is delivered
/// again, so a larger batch behind a slow server would send e-mails twice.
const BATCH: usize = 1;
/// How long `offline/stop` lets the e-mail in hand finish; after that the task is ended
/// and the job, not acked, is delivered again after the visibility timeout.
const STOP_WAIT: Duration = Duration::from_secs(5);

type Running = Arc<Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>>;

pub(super) fn register(registry: &mut Registry, offline: &Arc<Offline>) -> Result<(), RegisterError> {
    let running: Running = Arc::new(Mutex::new(None));
    registry.register("offline/start", Arc::new(Start { offline: offline.clone(), running: running.clone() }))?;
    registry.register("offline/stop", Arc::new(Stop(running)))?;
    Ok(())
}

struct Start {
    offline: Arc<Offline>,
    running: Running,
}

#[async_trait]
impl Handler for Start {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let Some(mailer) = self.offline.mailer.clone() else {
            return Ok(Step::Next);
        };
        let mut slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(_, task)| !task.is_finished()) {
            return Ok(Step::Next);
        }
        let (stop, stopped) = watch::channel(false);
        let consumer = format!("email-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let handler = Arc::new(SendOffline { offline: self.offline.clone(), mailer });
        let task = tokio::spawn(run_worker(
            self.offline.bus.clone(),
            EMAIL_QUEUE.to_string(),
            consumer,
            BATCH,
            handler,
            stopped,
        ));
        *slot = Some((stop, task));
        Ok(Step::Next)
    }
}

struct Stop(Running);

#[async_trait]
impl Handler for Stop {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let taken = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, mut task)) = taken {
            let _ = stop.send(true);
            match tokio::time::timeout(STOP_WAIT, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the e-mail worker ended abnormally"),
                Err(_) => {
                    tracing::warn!("the e-mail in hand did not finish in time; it is sent again later");
                    task.abort();
                }
            }
        }
        Ok(Step::Next)
    }
}

struct SendOffline {
    offline: Arc<Offline>,
    mailer: Arc<dyn Mailer>,
}

#[async_trait]
impl JobHandler for SendOffline {
    async fn handle(&self, jobs: &[Job]) -> Vec<Result<(), String>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = self.send(job).await;
            if let Err(reason) = &result {
                let (id, attempt) = (&job.id, job.attempt);
                tracing::warn!(%id, attempt, error = %reason, "an offline message e-mail was not sent");
            }
            results.push(result);
        }
        results
    }
}

impl SendOffline {
    async fn send(&self, job: &Job) -> Result<(), String> {
        let parsed: EmailJob = serde_json::from_slice(&job.payload).map_err(|e| format!("not an e-mail job: {e}"))?;
        if parsed.v > EMAIL_JOB_VERSION {
            // A newer node's job: fail it back, a newer node takes it on retry.
            return Err(format!("e-mail job version {} is newer than this node's", parsed.v));
        }
        let EmailKind::OfflineMessage(record) = parsed.mail;
        let store = &self.offline.store;
        let site = store
            .site(record.site_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("site {} does not exist", record.site_id))?;
        let mut to = configured_recipients(&site.settings);
        if to.is_empty() {
            let agents = store.agents(site.id).await.map_err(|e| e.to_string())?;
            to = agents.into_iter().filter(|a| a.role == Role::Admin).map(|a| a.email).collect();
        }
        if to.is_empty() {
            return Err(format!("site {} has no admin and no {EMAILS_SETTING} to e-mail", site.id));
        }
        self.mailer.send(&offline_email(&site, &record, to)).await.map_err(|e| e.to_string())
    }
}

/// The addresses of the site's `offlineMessageEmails` setting (an array, or one string).
pub(super) fn configured_recipients(settings: &Value) -> Vec<String> {
    let listed = match settings.get(EMAILS_SETTING) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    };
    listed.into_iter().map(|a| a.trim().to_string()).filter(|a| email_shaped(a)).collect()
}

/// The e-mail telling the site's team about an offline message.
pub(super) fn offline_email(site: &Site, m: &OfflineMessageRecord, to: Vec<String>) -> Email {
    let mut text = format!(
        "{name} <{email}> left a message on {site} while no agent was online:\n\n{message}\n\n",
        name = m.name,
        email = m.email,
        site = site.name,
        message = m.message,
    );
    if let Some(url) = &m.page_url {
        text.push_str(&format!("Page: {url}\n"));
    }
    text.push_str(&format!(
        "Sent: {sent}\nVisitor: {visitor}\nMessage id: {id}\n\nReply to this e-mail to answer {name}. Mark it \
         handled in the console (PATCH /api/v1/offline-messages/{id}).\n",
        sent = rfc3339(m.created_at),
        visitor = m.visitor_id,
        id = m.id,
        name = m.name,
    ));
    Email {
        to,
        reply_to: Some((m.email.clone(), m.name.clone())),
        subject: format!("[{}] Offline message from {}", site.name, m.name),
        text,
        message_id: Some(format!("offline-{}@frontdesk", m.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frontdesk_core::id::Id;
    use serde_json::json;

    #[test]
    fn the_setting_wins_when_it_names_a_valid_address() {
        assert_eq!(
            configured_recipients(&json!({EMAILS_SETTING: ["a@shop.example", "bad", " b@shop.example "]})),
            ["a@shop.example", "b@shop.example"]
        );
        assert_eq!(configured_recipients(&json!({EMAILS_SETTING: "one@shop.example"})), ["one@shop.example"]);
        assert!(configured_recipients(&json!({})).is_empty());
        assert!(configured_recipients(&json!({EMAILS_SETTING: null})).is_empty());
    }

    #[test]
    fn the_email_names_the_visitor_and_carries_the_message() {
        let site = Site { id: Id(1), name: "Shop".into(), allowed_domains: vec![], settings: json!({}), created_at: 0 };
        let m = OfflineMessageRecord {
            id: Id(42),
            site_id: Id(1),
            visitor_id: Id(7),
            name: "Ann".into(),
            email: "ann@visitor.example".into(),
            message: "Do you ship to Norway?".into(),
            page_url: Some("https://shop.example/cart".into()),
            created_at: 1_767_225_600_000,
        };
        let e = offline_email(&site, &m, vec!["admin@shop.example".into()]);
        assert_eq!(e.to, ["admin@shop.example"]);
        assert_eq!(e.reply_to, Some(("ann@visitor.example".into(), "Ann".into())));
        assert_eq!(e.subject, "[Shop] Offline message from Ann");
        assert_eq!(e.message_id.as_deref(), Some("offline-42@frontdesk"));
        for part in ["Do you ship to Norway?", "Page: https://shop.example/cart", "2026-01-01T00:00:00", "Visitor: 7"] {
            assert!(e.text.contains(part), "{part:?} in {}", e.text);
        }
    }
}
