//! Out-of-process stages (SPEC §5.5): a stage whose `url` is `http(s)://…` is called with
//! `{event, caller, request, context}` and answers `{context?, result?, error?}`. This is
//! the port; `frontdesk-connect` implements it over one shared HTTP client.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::context::{Caller, Failure, Request};

/// What an external stage is sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCall<'a> {
    pub event: &'a str,
    pub caller: &'a Caller,
    pub request: &'a Request,
    pub context: &'a Map<String, Value>,
}

/// What an external stage answers; every part optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteReply {
    /// Merged into the shared context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Merged into the response's `data`.
    #[serde(default)]
    pub result: Option<Map<String, Value>>,
    /// Fails the stage with this kind and message.
    #[serde(default)]
    pub error: Option<Failure>,
}

#[async_trait]
pub trait RemoteStages: Send + Sync + 'static {
    /// Calls `url`; timeouts and connection failures are `unavailable` failures.
    async fn call(&self, url: &str, call: &RemoteCall<'_>, timeout: Duration) -> Result<RemoteReply, Failure>;
}
