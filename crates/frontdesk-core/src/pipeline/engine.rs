//! The Interpret layer: runs an event's stages — `base`, then `will` → `do` → `did` — over
//! one shared [`Ctx`], aggregates the answer, sends `async` stages to the bus, and
//! compensates the stages that ran when a later one fails (SPEC §5.5, seed 000).
//!
//! The active pipelines are compiled once per load (handlers resolved, metric handles
//! made) and swapped atomically on reload, so a call costs one read lock and the stages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use metrics::{Counter, Histogram};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::context::{Caller, Ctx, Failure, Request, Response, Transport};
use super::handler::{Handler, Registry, Step};
use super::remote::{RemoteCall, RemoteStages};
use super::spec::{LoadError, Phase, PipelineFile, StageSpec};
use crate::bus::{Bus, Job};
use crate::error::ErrorKind;
use crate::worker::{run_worker, JobHandler};

/// Where the pipelines come from.
#[derive(Debug, Clone)]
pub enum PipelineSource {
    /// The file embedded in the binary.
    Builtin(&'static str),
    /// A file replacing it (`FRONTDESK_PIPELINES`), re-read on reload.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The bus queue async stages go through.
    pub async_queue: String,
    /// Timeout of an external stage that sets no `timeoutMs`.
    pub default_remote_timeout: Duration,
    /// Async-stage workers per node.
    pub async_workers: usize,
    /// Jobs a worker takes from the bus at once.
    pub async_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            async_queue: "pipeline.async".into(),
            default_remote_timeout: Duration::from_secs(5),
            async_workers: 2,
            async_batch: 32,
        }
    }
}

enum Target {
    Local(Arc<dyn Handler>),
    Remote,
}

struct CompiledStage {
    spec: StageSpec,
    phase: Phase,
    target: Target,
    runs: Counter,
    duration: Histogram,
}

struct CompiledEvent {
    name: Arc<str>,
    /// `base` stages first in each phase, then the event's; async ones excluded.
    stages: Vec<CompiledStage>,
    async_stages: Vec<CompiledStage>,
    calls: Counter,
    duration: Histogram,
}

struct Compiled {
    file: PipelineFile,
    events: HashMap<String, Arc<CompiledEvent>>,
}

/// The pipeline engine of one node.
pub struct Engine {
    registry: Registry,
    compiled: RwLock<Arc<Compiled>>,
    source: PipelineSource,
    bus: Arc<dyn Bus>,
    remote: Arc<dyn RemoteStages>,
    config: EngineConfig,
    workers: Mutex<Workers>,
}

#[derive(Default)]
struct Workers {
    stop: Option<watch::Sender<bool>>,
    handles: Vec<JoinHandle<()>>,
}

/// An async stage's job on the bus: the one versioned contract between nodes for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncStageJob {
    pub v: u32,
    pub event: String,
    pub url: String,
    pub timeout_ms: Option<u64>,
    pub caller: Caller,
    pub request: Request,
    pub context: Map<String, Value>,
}

impl Engine {
    /// Builds the engine and loads its pipelines; fails with every problem of the file.
    /// The engine adds its own handlers to `registry`: `engine/start_workers`,
    /// `engine/stop_workers` and `engine/describe` (answers the active pipeline file as
    /// `data.pipelines`).
    pub fn new(
        registry: Registry,
        source: PipelineSource,
        bus: Arc<dyn Bus>,
        remote: Arc<dyn RemoteStages>,
        config: EngineConfig,
    ) -> Result<Arc<Engine>, LoadError> {
        let mut problems = Vec::new();
        let engine = Arc::new_cyclic(|weak: &Weak<Engine>| {
            let mut registry = registry;
            for (name, handler) in [
                ("engine/start_workers", Arc::new(StartWorkers(weak.clone())) as Arc<dyn Handler>),
                ("engine/stop_workers", Arc::new(StopWorkers(weak.clone())) as Arc<dyn Handler>),
                ("engine/describe", Arc::new(Describe(weak.clone())) as Arc<dyn Handler>),
            ] {
                if let Err(e) = registry.register(name, handler) {
                    problems.push(e.to_string());
                }
            }
            let empty = Compiled { file: PipelineFile::default(), events: HashMap::new() };
            Engine {
                registry,
                compiled: RwLock::new(Arc::new(empty)),
                source,
                bus,
                remote,
                config,
                workers: Mutex::new(Workers::default()),
            }
        });
        if !problems.is_empty() {
            return Err(LoadError { problems });
        }
        engine.reload()?;
        Ok(engine)
    }

    /// Re-reads and recompiles the pipelines. On any problem the running pipelines stay as
    /// they were and the error says why.
    pub fn reload(&self) -> Result<(), LoadError> {
        let text = match &self.source {
            PipelineSource::Builtin(text) => (*text).to_string(),
            PipelineSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| LoadError { problems: vec![format!("cannot read {}: {e}", path.display())] })?,
        };
        let file = PipelineFile::parse(&text, &|name| self.registry.contains(name))?;
        let compiled = self.compile(file);
        *self.compiled.write() = Arc::new(compiled);
        Ok(())
    }

    /// The active pipeline file.
    pub fn pipelines(&self) -> PipelineFile {
        self.compiled.read().file.clone()
    }

    pub fn has_event(&self, event: &str) -> bool {
        self.compiled.read().events.contains_key(event)
    }

    pub fn source(&self) -> &PipelineSource {
        &self.source
    }

    pub fn async_queue(&self) -> &str {
        &self.config.async_queue
    }

    fn compile(&self, file: PipelineFile) -> Compiled {
        let mut events = HashMap::new();
        for (name, spec) in &file.events {
            let event: Arc<str> = Arc::from(name.as_str());
            let mut stages = Vec::new();
            let mut async_stages = Vec::new();
            for phase in Phase::ALL {
                let base = file.base.as_ref().filter(|_| spec.base).map(|b| b.phase(phase)).unwrap_or(&[]);
                for stage in base.iter().chain(spec.phase(phase)) {
                    let target = match self.registry.get(&stage.url) {
                        Some(h) => Target::Local(h.clone()),
                        None => Target::Remote,
                    };
                    let labels = [("event", name.clone()), ("stage", stage.url.clone())];
                    let compiled = CompiledStage {
                        spec: stage.clone(),
                        phase,
                        target,
                        runs: metrics::counter!("frontdesk_stage_runs_total", &labels),
                        duration: metrics::histogram!("frontdesk_stage_duration_seconds", &labels),
                    };
                    if stage.is_async {
                        async_stages.push(compiled);
                    } else {
                        stages.push(compiled);
                    }
                }
            }
            let compiled = CompiledEvent {
                name: event,
                stages,
                async_stages,
                calls: metrics::counter!("frontdesk_events_total", "event" => name.clone()),
                duration: metrics::histogram!("frontdesk_event_duration_seconds", "event" => name.clone()),
            };
            events.insert(name.clone(), Arc::new(compiled));
        }
        Compiled { file, events }
    }

    /// Runs one call of an event.
    pub async fn call(&self, request: Request) -> Result<Response, Failure> {
        let event = self.compiled.read().events.get(request.event.as_str()).cloned();
        let Some(event) = event else {
            metrics::counter!("frontdesk_unknown_events_total").increment(1);
            return Err(Failure::new(ErrorKind::UnknownEvent, format!("there is no event named {:?}", request.event)));
        };
        let started = Instant::now();
        let mut ctx = Ctx::new(event.name.clone(), request);
        if ctx.request.client.transport == Transport::Internal {
            ctx.caller = Caller::System;
        }
        let result = self.run(&event, &mut ctx).await;
        event.calls.increment(1);
        event.duration.record(started.elapsed().as_secs_f64());
        if let Err(f) = &result {
            metrics::counter!("frontdesk_event_failures_total", "event" => event.name.to_string(), "kind" => f.kind.as_str())
                .increment(1);
        }
        result.map(|()| ctx.response)
    }

    /// Runs an event as the server itself (`server.start`, `server.end`, timers).
    pub async fn call_internal(&self, event: &str, data: Value) -> Result<Response, Failure> {
        self.call(Request { event: event.to_string(), data, ..Request::default() }).await
    }

    async fn run(&self, event: &CompiledEvent, ctx: &mut Ctx) -> Result<(), Failure> {
        let mut ran: Vec<&CompiledStage> = Vec::with_capacity(event.stages.len());
        for stage in &event.stages {
            match self.run_stage(stage, ctx).await {
                Ok(Step::Next) => ran.push(stage),
                Ok(Step::Answer) => return Ok(()),
                Err(failure) if stage.spec.optional => {
                    tracing::warn!(event = %event.name, stage = %stage.spec.url, error = %failure, "optional stage failed");
                }
                Err(failure) => {
                    self.compensate(&ran, ctx).await;
                    return Err(failure);
                }
            }
        }
        if !event.async_stages.is_empty() {
            if let Err(failure) = self.enqueue_async(event, ctx).await {
                self.compensate(&ran, ctx).await;
                return Err(failure);
            }
        }
        Ok(())
    }

    async fn run_stage(&self, stage: &CompiledStage, ctx: &mut Ctx) -> Result<Step, Failure> {
        let started = Instant::now();
        let span =
            tracing::debug_span!("stage", event = %ctx.event, stage = %stage.spec.url, phase = stage.phase.as_str());
        let result = self.execute(&stage.spec, &stage.target, ctx).instrument(span).await;
        stage.runs.increment(1);
        stage.duration.record(started.elapsed().as_secs_f64());
        if let Err(f) = &result {
            metrics::counter!("frontdesk_stage_failures_total",
                "event" => ctx.event.to_string(), "stage" => stage.spec.url.clone(),
                "kind" => f.kind.as_str(), "optional" => if stage.spec.optional { "true" } else { "false" })
            .increment(1);
        }
        result
    }

    /// Runs one stage's body with its timeout.
    async fn execute(&self, spec: &StageSpec, target: &Target, ctx: &mut Ctx) -> Result<Step, Failure> {
        let timeout = spec.timeout_ms.map(Duration::from_millis);
        let body = async {
            match target {
                Target::Local(handler) => handler.run(ctx).await,
                Target::Remote => {
                    let timeout = timeout.unwrap_or(self.config.default_remote_timeout);
                    let call = RemoteCall {
                        event: &ctx.event,
                        caller: &ctx.caller,
                        request: &ctx.request,
                        context: &ctx.values,
                    };
                    let reply = self.remote.call(&spec.url, &call, timeout).await?;
                    if let Some(error) = reply.error {
                        return Err(error);
                    }
                    if let Some(context) = reply.context {
                        ctx.values.extend(context);
                    }
                    if let Some(result) = reply.result {
                        ctx.merge_result(result);
                    }
                    Ok(Step::Next)
                }
            }
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, body).await.unwrap_or_else(|_| {
                Err(Failure::unavailable(format!("stage {} did not finish within {} ms", spec.url, limit.as_millis())))
            }),
            None => body.await,
        }
    }

    async fn compensate(&self, ran: &[&CompiledStage], ctx: &mut Ctx) {
        for stage in ran.iter().rev() {
            if let Target::Local(handler) = &stage.target {
                handler.compensate(ctx).await;
                metrics::counter!("frontdesk_stage_compensations_total",
                    "event" => ctx.event.to_string(), "stage" => stage.spec.url.clone())
                .increment(1);
            }
        }
    }

    async fn enqueue_async(&self, event: &CompiledEvent, ctx: &Ctx) -> Result<(), Failure> {
        let mut payloads = Vec::with_capacity(event.async_stages.len());
        for stage in &event.async_stages {
            let job = AsyncStageJob {
                v: 1,
                event: event.name.to_string(),
                url: stage.spec.url.clone(),
                timeout_ms: stage.spec.timeout_ms,
                caller: ctx.caller.clone(),
                request: ctx.request.clone(),
                context: ctx.values.clone(),
            };
            let bytes =
                serde_json::to_vec(&job).map_err(|e| Failure::internal(format!("cannot encode async stage: {e}")))?;
            payloads.push(Bytes::from(bytes));
        }
        match self.bus.publish_batch(&self.config.async_queue, payloads).await {
            Ok(_) => Ok(()),
            Err(e) if event.async_stages.iter().all(|s| s.spec.optional) => {
                tracing::warn!(event = %event.name, error = %e, "optional async stages not queued");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs one async stage taken from the bus.
    pub async fn run_async_job(&self, job: &AsyncStageJob) -> Result<(), Failure> {
        let target = match self.registry.get(&job.url) {
            Some(handler) => Target::Local(handler.clone()),
            None if super::spec::is_http_url(&job.url) => Target::Remote,
            None => return Err(Failure::internal(format!("no handler {:?} on this node", job.url))),
        };
        let spec = StageSpec { url: job.url.clone(), is_async: true, optional: false, timeout_ms: job.timeout_ms };
        let mut ctx = Ctx::new(Arc::from(job.event.as_str()), job.request.clone());
        ctx.caller = job.caller.clone();
        ctx.values = job.context.clone();
        let started = Instant::now();
        let result = self.execute(&spec, &target, &mut ctx).await;
        let labels = [("event", job.event.clone()), ("stage", job.url.clone())];
        metrics::counter!("frontdesk_stage_runs_total", &labels).increment(1);
        metrics::histogram!("frontdesk_stage_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
        result.map(|_| ())
    }

    /// Starts this node's async-stage workers (idempotent).
    pub fn start_workers(self: &Arc<Self>) {
        let mut workers = self.workers.lock();
        if workers.stop.is_some() {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        let handler: Arc<dyn JobHandler> = Arc::new(AsyncStages(Arc::downgrade(self)));
        for i in 0..self.config.async_workers.max(1) {
            let consumer = format!("{}-{}-{i}", std::process::id(), rand::random::<u32>());
            workers.handles.push(tokio::spawn(run_worker(
                self.bus.clone(),
                self.config.async_queue.clone(),
                consumer,
                self.config.async_batch,
                handler.clone(),
                stopped.clone(),
            )));
        }
        workers.stop = Some(stop);
    }

    /// Stops the workers after the batches in hand; unfinished jobs stay on the bus.
    pub async fn stop_workers(&self) {
        let (stop, handles) = {
            let mut w = self.workers.lock();
            (w.stop.take(), std::mem::take(&mut w.handles))
        };
        if let Some(stop) = stop {
            let _ = stop.send(true);
        }
        for handle in handles {
            let _ = handle.await;
        }
    }
}

/// Runs async-stage jobs from the bus.
struct AsyncStages(Weak<Engine>);

#[async_trait]
impl JobHandler for AsyncStages {
    async fn handle(&self, jobs: &[Job]) -> Vec<Result<(), String>> {
        let Some(engine) = self.0.upgrade() else {
            return jobs.iter().map(|_| Err("the engine is gone".to_string())).collect();
        };
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = match serde_json::from_slice::<AsyncStageJob>(&job.payload) {
                Ok(stage) => engine.run_async_job(&stage).await.map_err(|f| f.to_string()),
                Err(e) => Err(format!("not an async stage job: {e}")),
            };
            results.push(result);
        }
        results
    }
}

struct StartWorkers(Weak<Engine>);

#[async_trait]
impl Handler for StartWorkers {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        let engine = self.0.upgrade().ok_or_else(|| Failure::internal("the engine is gone"))?;
        engine.start_workers();
        Ok(Step::Next)
    }

    async fn compensate(&self, _ctx: &mut Ctx) {
        if let Some(engine) = self.0.upgrade() {
            engine.stop_workers().await;
        }
    }
}

struct StopWorkers(Weak<Engine>);

#[async_trait]
impl Handler for StopWorkers {
    async fn run(&self, _ctx: &mut Ctx) -> Result<Step, Failure> {
        if let Some(engine) = self.0.upgrade() {
            engine.stop_workers().await;
        }
        Ok(Step::Next)
    }
}

struct Describe(Weak<Engine>);

#[async_trait]
impl Handler for Describe {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let engine = self.0.upgrade().ok_or_else(|| Failure::internal("the engine is gone"))?;
        ctx.set_result("pipelines", engine.pipelines().to_json());
        Ok(Step::Next)
    }
}
