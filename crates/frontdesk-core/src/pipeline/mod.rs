//! The Interpret layer (SPEC §3, §5.5; seed 000's Map → Interpret → Logic): events are data,
//! configured as `will` / `do` / `did` pipelines of stages, run by the [`Engine`].
//!
//! - [`spec`] — the pipeline file format, its validation and its JSON form.
//! - [`context`] — the request, the caller, the shared context and the response.
//! - [`handler`] — the `module/action` handler trait and the registry.
//! - [`remote`] — the port for out-of-process stages (`http(s)://…`).
//! - [`engine`] — runs events; async stages through the bus; compensation; reload.

pub mod context;
pub mod engine;
pub mod handler;
pub mod remote;
pub mod spec;

pub use context::{Caller, ClientInfo, Ctx, Failure, Offsets, Request, Response, Transport};
pub use engine::{Engine, EngineConfig, PipelineSource};
pub use handler::{Handler, Registry, Step};
pub use remote::{RemoteCall, RemoteReply, RemoteStages};
pub use spec::{LoadError, PipelineFile};
