//! Out-of-process pipeline stages over HTTP (SPEC §5.5): POST `{event, caller, request,
//! context}`, read `{context?, result?, error?}`. One shared client keeps connections
//! alive between calls. No redirects are followed: a stage's URL is its address.

use std::time::Duration;

use async_trait::async_trait;
use frontdesk_core::pipeline::{Failure, RemoteCall, RemoteReply, RemoteStages};

/// The HTTP client for external stages.
#[derive(Clone)]
pub struct HttpStages {
    client: reqwest::Client,
}

impl HttpStages {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("frontdesk/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl RemoteStages for HttpStages {
    async fn call(&self, url: &str, call: &RemoteCall<'_>, timeout: Duration) -> Result<RemoteReply, Failure> {
        let unavailable = |why: String| Failure::unavailable(format!("external stage {url} {why}"));
        let response = self.client.post(url).timeout(timeout).json(call).send().await.map_err(|e| {
            if e.is_timeout() {
                unavailable(format!("did not answer within {} ms", timeout.as_millis()))
            } else {
                unavailable("cannot be reached".to_string())
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                unavailable(format!("did not answer within {} ms", timeout.as_millis()))
            } else {
                unavailable("broke off its answer".to_string())
            }
        })?;
        // A stage may fail with a body saying why, at any status; trust that first.
        let reply =
            if body.is_empty() { Ok(RemoteReply::default()) } else { serde_json::from_slice::<RemoteReply>(&body) };
        match reply {
            Ok(reply) if reply.error.is_some() || status.is_success() => Ok(reply),
            Ok(_) => Err(unavailable(format!("answered HTTP {status}"))),
            Err(_) if !status.is_success() => Err(unavailable(format!("answered HTTP {status}"))),
            Err(e) => {
                tracing::warn!(%url, error = %e, "external stage answered something that is not {{context?, result?, error?}}");
                Err(Failure::internal(format!(
                    "external stage {url} answered a body that is not {{context?, result?, error?}}: {e}"
                )))
            }
        }
    }
}
