//! Engine overhead per event (issue 3's target: under 2 µs with 5 in-process stages).
//! Run: `cargo bench -p frontdesk --bench engine`.

use std::sync::Arc;

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion};
use frontdesk_connect::http_stage::HttpStages;
use frontdesk_core::bus::RetryPolicy;
use frontdesk_core::pipeline::{
    Ctx, Engine, EngineConfig, Failure, Handler, PipelineSource, Registry, Request, Step, Transport,
};
use frontdesk_state::local_bus::LocalBus;
use serde_json::json;

/// A stage that does what a cheap real stage does: read the context, write a result.
struct Touch(&'static str);

#[async_trait]
impl Handler for Touch {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let n = ctx.values.len();
        ctx.values.insert(self.0.into(), json!(n));
        Ok(Step::Next)
    }
}

fn engine_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt.block_on(async {
        let bus = Arc::new(LocalBus::open(dir.path(), RetryPolicy::default()).await.expect("bus"));
        let mut registry = Registry::new();
        for name in ["a", "b", "c", "d", "e"] {
            registry.register(&format!("bench/{name}"), Arc::new(Touch(name))).expect("register");
        }
        let file = r#"{
            "base": {"will": [{"url": "bench/a"}]},
            "bench.five": {"will": [{"url": "bench/b"}], "do": [{"url": "bench/c"}, {"url": "bench/d"}], "did": [{"url": "bench/e"}]}
        }"#;
        Engine::new(registry, PipelineSource::Builtin(file), bus, Arc::new(HttpStages::new().expect("client")), EngineConfig::default())
            .expect("engine")
    });
    let request = Request {
        event: "bench.five".into(),
        data: json!({"message": "hello"}),
        client: frontdesk_core::pipeline::ClientInfo { transport: Transport::Http, ..Default::default() },
        ..Request::default()
    };
    c.bench_function("engine: one event, 5 in-process stages", |b| {
        b.iter(|| rt.block_on(engine.call(request.clone())).expect("ok"))
    });
}

criterion_group!(benches, engine_overhead);
criterion_main!(benches);
