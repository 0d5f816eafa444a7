//! The SMTP adapter of core's [`Mailer`] port, on `lettre` (tokio, rustls; no native TLS).
//!
//! Configured by one URL (`smtp_url`): `smtp://host:port` (plain, e.g. a local relay),
//! `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`
//! (TLS from the start), and a `From` mailbox (`smtp_from`). One connection per e-mail,
//! ended with `QUIT`; a send that takes longer than [`SEND_TIMEOUT`] fails as unavailable.
//!
//! Failures: a server that cannot be reached, times out or answers 4xx is `Unavailable`
//! (worth retrying); a 5xx refusal is `Other`. Either way the bus retries the job and
//! dead-letters it after the last attempt. Neither the URL (it may hold a password) nor the
//! message text appears in an error.

use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::error::{BackendError, BackendResult};
use frontdesk_core::mail::{Email, Mailer};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MessageBuilder};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

const BACKEND: &str = "smtp";

/// How long one e-mail may take, connection and all.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// Why an SMTP mailer could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error(
        "smtp_url must be smtp://host:port, smtp://user:pass@host:587?tls=required or smtps://user:pass@host:465 ({0})"
    )]
    Url(String),
    #[error("smtp_from must be a mailbox like \"Frontdesk <support@example.com>\" ({0})")]
    From(String),
}

/// Sends e-mail over SMTP.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: only the sender shows.
        f.debug_struct("SmtpMailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `url` sending as `from`. Nothing is contacted until the first send.
    pub fn new(url: &str, from: &str) -> Result<Self, SmtpConfigError> {
        let from: Mailbox =
            from.parse().map_err(|e: lettre::address::AddressError| SmtpConfigError::From(e.to_string()))?;
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        if scheme != "smtp" && scheme != "smtps" {
            return Err(SmtpConfigError::Url(format!("the scheme is {scheme:?}")));
        }
        // lettre's message may quote the URL's parts: say only that it is malformed.
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| SmtpConfigError::Url("it cannot be parsed".into()))?;
        Ok(Self { transport: builder.timeout(Some(SEND_TIMEOUT)).build(), from })
    }

    fn message(&self, email: &Email) -> BackendResult<Message> {
        let refused = |what: &str, e: &dyn std::fmt::Display| BackendError::other(BACKEND, format!("{what}: {e}"));
        let mut builder: MessageBuilder = Message::builder().from(self.from.clone());
        if email.to.is_empty() {
            return Err(BackendError::other(BACKEND, "an e-mail needs at least one recipient"));
        }
        for to in &email.to {
            let mailbox: Mailbox = to.parse().map_err(|e| refused("a recipient address is not valid", &e))?;
            builder = builder.to(mailbox);
        }
        if let Some((address, name)) = &email.reply_to {
            let address = address.parse().map_err(|e| refused("the Reply-To address is not valid", &e))?;
            let name = (!name.is_empty()).then(|| name.clone());
            builder = builder.reply_to(Mailbox::new(name, address));
        }
        if let Some(id) = &email.message_id {
            builder = builder.message_id(Some(format!("<{id}>")));
        }
        builder
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(email.text.clone())
            .map_err(|e| refused("cannot build the e-mail", &e))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> BackendResult<()> {
        let message = self.message(email)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                Err(BackendError::other(BACKEND, format!("the server refused the e-mail: {e}")))
            }
            Err(e) => Err(BackendError::unavailable(BACKEND, format!("cannot send the e-mail: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            to: vec!["admin@shop.example".into(), "sales@shop.example".into()],
            reply_to: Some(("ann@visitor.example".into(), "Ann Example".into())),
            subject: "Offline message from Ann Example".into(),
            text: "Do you ship to Norway?".into(),
            message_id: Some("offline-42@frontdesk".into()),
        }
    }

    #[test]
    fn settings_are_checked_without_echoing_the_url() {
        assert!(SmtpMailer::new("smtp://127.0.0.1:2525", "Frontdesk <fd@shop.example>").is_ok());
        assert!(SmtpMailer::new("smtps://u:p@mail.example:465", "fd@shop.example").is_ok());
        assert!(SmtpMailer::new("smtp://u:p@mail.example:587?tls=required", "fd@shop.example").is_ok());
        let e = SmtpMailer::new("http://u:hunter2@mail.example", "fd@shop.example").expect_err("scheme");
        assert!(e.to_string().contains("smtp_url") && !e.to_string().contains("hunter2"), "{e}");
        let e = SmtpMailer::new("smtp://127.0.0.1:2525", "not a mailbox").expect_err("from");
        assert!(e.to_string().contains("smtp_from"), "{e}");
    }

    #[test]
    fn the_message_has_every_header() {
        let m = SmtpMailer::new("smtp://127.0.0.1:2525", "Frontdesk <fd@shop.example>").expect("mailer");
        let text = String::from_utf8(m.message(&email()).expect("message").formatted()).expect("utf-8");
        assert!(text.contains("From: Frontdesk <fd@shop.example>"), "{text}");
        assert!(text.contains("To: admin@shop.example, sales@shop.example"), "{text}");
        assert!(text.contains("Reply-To: \"Ann Example\" <ann@visitor.example>"), "{text}");
        assert!(text.contains("Subject: Offline message from Ann Example"), "{text}");
        assert!(text.contains("Message-ID: <offline-42@frontdesk>"), "{text}");
        assert!(text.contains("Do you ship to Norway?"), "{text}");
    }

    #[test]
    fn a_bad_recipient_is_refused_not_retried_forever() {
        let m = SmtpMailer::new("smtp://127.0.0.1:2525", "fd@shop.example").expect("mailer");
        let bad = Email { to: vec!["not an address".into()], ..email() };
        assert!(matches!(m.message(&bad), Err(BackendError::Other { .. })));
        let none = Email { to: vec![], ..email() };
        assert!(matches!(m.message(&none), Err(BackendError::Other { .. })));
    }
}
