//! Outbound adapters: everything Frontdesk calls over the network. Now: out-of-process
//! pipeline stages ([`http_stage`]). Webhooks, SMTP, CRMs, bots and push join as they
//! arrive, all on one shared HTTP client with connection reuse.

pub mod http_stage;
