//! Outbound adapters: everything Frontdesk calls over the network. Now: out-of-process
//! pipeline stages ([`http_stage`]) and e-mail over SMTP ([`smtp`], core's `Mailer` port).
//! Webhooks, CRMs, bots and push join as they arrive, all on one shared HTTP client with
//! connection reuse.

pub mod http_stage;
pub mod smtp;
