//! The pipeline engine's rules (SPEC §5.5), on a real local bus and a real HTTP stand-in
//! for external stages: stage order, base opt-out, early answer, failure and compensation,
//! optional stages, async stages with retries and dead letters, external stages, timeouts,
//! reload.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::routing::post;
use axum::{Json, Router};
use frontdesk_connect::http_stage::HttpStages;
use frontdesk_core::bus::{Bus, RetryPolicy};
use frontdesk_core::error::ErrorKind;
use frontdesk_core::pipeline::{
    Ctx, Engine, EngineConfig, Failure, Handler, PipelineSource, Registry, Request, Step, Transport,
};
use frontdesk_state::local_bus::LocalBus;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// What a probe stage does when it runs.
#[derive(Clone)]
enum Act {
    Next,
    Answer,
    Fail(ErrorKind),
    Sleep(u64),
    /// Fails the first `n` runs, then succeeds.
    FailTimes(usize),
    /// Waits until the test says the call has been answered.
    AwaitAnswered(Arc<Notify>),
}

struct Probe {
    name: &'static str,
    act: Act,
    log: Arc<Mutex<Vec<String>>>,
    runs: Mutex<usize>,
}

#[async_trait]
impl Handler for Probe {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let run = {
            let mut r = self.runs.lock();
            *r += 1;
            *r
        };
        self.log.lock().push(format!("run {}", self.name));
        // Every stage sees what earlier stages put in the context.
        let seen = ctx.values.get("trail").and_then(Value::as_str).unwrap_or("").to_string();
        ctx.values.insert("trail".into(), json!(format!("{seen}{}", self.name)));
        ctx.set_result(self.name, json!(run));
        match &self.act {
            Act::Next => Ok(Step::Next),
            Act::Answer => Ok(Step::Answer),
            Act::Fail(kind) => Err(Failure::new(*kind, format!("{} failed", self.name))),
            Act::Sleep(ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                Ok(Step::Next)
            }
            Act::FailTimes(n) if run <= *n => Err(Failure::unavailable(format!("{} failed run {run}", self.name))),
            Act::FailTimes(_) => {
                self.log.lock().push(format!("trail {}", seen));
                Ok(Step::Next)
            }
            Act::AwaitAnswered(answered) => {
                tokio::time::timeout(Duration::from_secs(10), answered.notified())
                    .await
                    .map_err(|_| Failure::internal("never answered"))?;
                Ok(Step::Next)
            }
        }
    }

    async fn compensate(&self, _ctx: &mut Ctx) {
        self.log.lock().push(format!("undo {}", self.name));
    }
}

struct Fixture {
    engine: Arc<Engine>,
    log: Arc<Mutex<Vec<String>>>,
    bus: Arc<dyn Bus>,
    _dir: tempfile::TempDir,
}

async fn fixture(file: &str, probes: Vec<(&'static str, Act)>) -> Fixture {
    frontdesk_api::metrics::install();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        visibility_timeout: Duration::from_secs(2),
    };
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::open(dir.path(), policy).await.expect("bus"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    for (name, act) in probes {
        let probe = Probe { name, act, log: log.clone(), runs: Mutex::new(0) };
        registry.register(&format!("t/{name}"), Arc::new(probe)).expect("register");
    }
    let text: &'static str = Box::leak(file.to_string().into_boxed_str());
    let config = EngineConfig { async_workers: 1, ..EngineConfig::default() };
    let engine = Engine::new(
        registry,
        PipelineSource::Builtin(text),
        bus.clone(),
        Arc::new(HttpStages::new().expect("client")),
        config,
    )
    .expect("valid pipelines");
    Fixture { engine, log, bus, _dir: dir }
}

fn call(event: &str) -> Request {
    Request {
        event: event.into(),
        data: json!({"x": 1}),
        client: frontdesk_core::pipeline::ClientInfo { transport: Transport::Http, ..Default::default() },
        ..Request::default()
    }
}

fn log(f: &Fixture) -> Vec<String> {
    f.log.lock().clone()
}

#[tokio::test]
async fn stages_run_base_then_will_do_did_sharing_one_context_and_results_aggregate() {
    let f = fixture(
        r#"{"base": {"will": [{"url": "t/b"}]},
            "e.run": {"did": [{"url": "t/z"}], "do": [{"url": "t/y"}], "will": [{"url": "t/x"}]}}"#,
        vec![("b", Act::Next), ("x", Act::Next), ("y", Act::Next), ("z", Act::Next)],
    )
    .await;
    let r = f.engine.call(call("e.run")).await.expect("ok");
    assert_eq!(log(&f), ["run b", "run x", "run y", "run z"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.data, json!({"b": 1, "x": 1, "y": 1, "z": 1}).as_object().cloned().expect("map"));
}

#[tokio::test]
async fn an_event_may_opt_out_of_base() {
    let f = fixture(
        r#"{"base": {"will": [{"url": "t/b"}]}, "e.open": {"base": false, "do": [{"url": "t/y"}]}}"#,
        vec![("b", Act::Fail(ErrorKind::Unauthorized)), ("y", Act::Next)],
    )
    .await;
    f.engine.call(call("e.open")).await.expect("base skipped");
    assert_eq!(log(&f), ["run y"]);
}

#[tokio::test]
async fn a_stage_may_answer_early_and_later_stages_do_not_run() {
    let f = fixture(
        r#"{"e.early": {"will": [{"url": "t/x"}], "do": [{"url": "t/y"}], "did": [{"url": "t/z"}, {"url": "t/q", "type": "async"}]}}"#,
        vec![("x", Act::Answer), ("y", Act::Next), ("z", Act::Next), ("q", Act::Next)],
    )
    .await;
    let r = f.engine.call(call("e.early")).await.expect("answered");
    assert_eq!(r.data, json!({"x": 1}).as_object().cloned().expect("map"));
    assert_eq!(log(&f), ["run x"]);
    assert_eq!(f.bus.backlog("pipeline.async").await.expect("backlog"), 0, "no async stage queued");
}

#[tokio::test]
async fn a_failing_will_skips_do_and_compensates_in_reverse() {
    let f = fixture(
        r#"{"base": {"will": [{"url": "t/b"}]},
            "e.fail": {"will": [{"url": "t/x"}, {"url": "t/bad"}], "do": [{"url": "t/y"}], "did": [{"url": "t/z"}]}}"#,
        vec![
            ("b", Act::Next),
            ("x", Act::Next),
            ("bad", Act::Fail(ErrorKind::Forbidden)),
            ("y", Act::Next),
            ("z", Act::Next),
        ],
    )
    .await;
    let e = f.engine.call(call("e.fail")).await.expect_err("fails");
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(e.message, "bad failed");
    assert_eq!(log(&f), ["run b", "run x", "run bad", "undo x", "undo b"]);
}

#[tokio::test]
async fn a_failing_did_fails_the_request_and_compensates_everything_before_it() {
    let f = fixture(
        r#"{"e.did": {"will": [{"url": "t/x"}], "do": [{"url": "t/y"}], "did": [{"url": "t/bad"}, {"url": "t/z"}]}}"#,
        vec![("x", Act::Next), ("y", Act::Next), ("bad", Act::Fail(ErrorKind::Conflict)), ("z", Act::Next)],
    )
    .await;
    let e = f.engine.call(call("e.did")).await.expect_err("fails");
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(log(&f), ["run x", "run y", "run bad", "undo y", "undo x"]);
}

#[tokio::test]
async fn an_optional_did_failure_is_invisible_to_the_caller_but_counted() {
    let f = fixture(
        r#"{"e.optional": {"do": [{"url": "t/y"}], "did": [{"url": "t/flaky", "optional": true}, {"url": "t/z"}]}}"#,
        vec![("y", Act::Next), ("flaky", Act::Fail(ErrorKind::Unavailable)), ("z", Act::Next)],
    )
    .await;
    let r = f.engine.call(call("e.optional")).await.expect("ok despite the optional failure");
    assert_eq!(r.code, 0);
    assert_eq!(log(&f), ["run y", "run flaky", "run z"]);
    let metrics = frontdesk_api::metrics::install().render();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("frontdesk_stage_failures_total") && l.contains("event=\"e.optional\""))
        .unwrap_or_else(|| panic!("failure not counted:\n{metrics}"));
    assert!(line.contains("optional=\"true\"") && line.contains("stage=\"t/flaky\"") && line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn an_async_stage_runs_after_the_answer_and_is_retried_after_a_failure() {
    let answered = Arc::new(Notify::new());
    let f = fixture(
        r#"{"server.start": {"base": false, "do": [{"url": "engine/start_workers"}]},
            "e.async": {"do": [{"url": "t/y"}], "did": [{"url": "t/later", "type": "async"}, {"url": "t/retry", "type": "async"}]}}"#,
        vec![("y", Act::Next), ("later", Act::AwaitAnswered(answered.clone())), ("retry", Act::FailTimes(1))],
    )
    .await;
    f.engine.call_internal("server.start", json!({})).await.expect("workers started");
    let r = f.engine.call(call("e.async")).await.expect("answered without waiting for async stages");
    assert_eq!(r.data, json!({"y": 1}).as_object().cloned().expect("map"), "async results never reach the answer");
    answered.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = log(&f);
        let retried = l.iter().filter(|s| *s == "run retry").count() == 2;
        if retried
            && l.contains(&"run later".to_string())
            && f.bus.backlog("pipeline.async").await.expect("backlog") == 0
        {
            // The retry carried the context the sync stages built.
            assert!(l.contains(&"trail y".to_string()), "{l:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "async stages did not finish: {l:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.engine.stop_workers().await;
}

#[tokio::test]
async fn an_async_stage_that_keeps_failing_is_dead_lettered() {
    let f = fixture(
        r#"{"e.dead": {"do": [{"url": "t/y"}], "did": [{"url": "t/never", "type": "async"}]}}"#,
        vec![("y", Act::Next), ("never", Act::Fail(ErrorKind::Unavailable))],
    )
    .await;
    f.engine.start_workers();
    f.engine.call(call("e.dead")).await.expect("answered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dead = f.bus.dead_letters("pipeline.async", 10).await.expect("dead letters");
        if let Some(d) = dead.first() {
            assert_eq!(d.attempts, 3);
            assert!(d.error.contains("never failed"), "{}", d.error);
            let job: Value = serde_json::from_slice(&d.payload).expect("job json");
            assert_eq!(job["url"], "t/never");
            assert_eq!(job["request"]["data"], json!({"x": 1}));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log(&f).iter().filter(|s| *s == "run never").count(), 3);
    f.engine.stop_workers().await;
}

#[tokio::test]
async fn a_stage_over_its_timeout_fails_as_unavailable_or_is_skipped_when_optional() {
    let f = fixture(
        r#"{"e.slow": {"do": [{"url": "t/slow", "timeoutMs": 50}]},
            "e.slow_optional": {"do": [{"url": "t/slow", "timeoutMs": 50, "optional": true}, {"url": "t/y"}]}}"#,
        vec![("slow", Act::Sleep(2_000)), ("y", Act::Next)],
    )
    .await;
    let e = f.engine.call(call("e.slow")).await.expect_err("timed out");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("within 50 ms"), "{}", e.message);
    f.engine.call(call("e.slow_optional")).await.expect("optional timeout skipped");
    assert!(log(&f).contains(&"run y".to_string()));
}

/// A stand-in for an out-of-process module: answers by path, and checks the request shape.
async fn external_module() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s1 = seen.clone();
    let app = Router::new()
        .route(
            "/ok",
            post(move |Json(body): Json<Value>| {
                let seen = s1.clone();
                async move {
                    seen.lock().push(body.clone());
                    Json(json!({"context": {"crm": "vip"}, "result": {"score": 7, "echo": body["request"]["data"]["x"]}}))
                }
            }),
        )
        .route("/error", post(|| async { Json(json!({"error": {"kind": "forbidden", "message": "blocked by the CRM"}})) }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Json(json!({}))
            }),
        )
        .route("/broken", post(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn external_stages_succeed_fail_and_time_out() {
    let (base, seen) = external_module().await;
    let closed = frontdesk_testkit::env::free_port();
    let file = format!(
        r#"{{"e.ext": {{"will": [{{"url": "t/x"}}], "do": [{{"url": "{base}/ok"}}], "did": [{{"url": "t/y"}}]}},
            "e.ext_error": {{"do": [{{"url": "{base}/error"}}]}},
            "e.ext_slow": {{"do": [{{"url": "{base}/slow", "timeoutMs": 100}}]}},
            "e.ext_broken": {{"do": [{{"url": "{base}/broken"}}]}},
            "e.ext_refused": {{"do": [{{"url": "http://127.0.0.1:{closed}/x"}}]}},
            "e.ext_optional": {{"do": [{{"url": "http://127.0.0.1:{closed}/x", "optional": true}}, {{"url": "t/y"}}]}}}}"#
    );
    let f = fixture(&file, vec![("x", Act::Next), ("y", Act::Next)]).await;

    let r = f.engine.call(call("e.ext")).await.expect("ok");
    assert_eq!(r.data["score"], 7);
    assert_eq!(r.data["echo"], 1);
    let sent = seen.lock()[0].clone();
    assert_eq!(sent["event"], "e.ext");
    assert_eq!(sent["caller"], json!({"kind": "anonymous"}));
    assert_eq!(sent["request"]["data"], json!({"x": 1}));
    assert_eq!(sent["context"]["trail"], "x", "the external stage sees the shared context");
    assert!(sent["request"].get("bearer").is_none(), "tokens never leave the node");

    let e = f.engine.call(call("e.ext_error")).await.expect_err("stage error");
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Forbidden, "blocked by the CRM"));
    let e = f.engine.call(call("e.ext_slow")).await.expect_err("timeout");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    let e = f.engine.call(call("e.ext_broken")).await.expect_err("bad status");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("502"), "{}", e.message);
    let e = f.engine.call(call("e.ext_refused")).await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    f.engine.call(call("e.ext_optional")).await.expect("optional external failure skipped");
}

#[tokio::test]
async fn the_context_from_an_external_stage_reaches_later_stages() {
    let (base, _) = external_module().await;
    let file = format!(r#"{{"e.ctx": {{"do": [{{"url": "{base}/ok"}}], "did": [{{"url": "{base}/ok"}}]}}}}"#);
    let f = fixture(&file, vec![]).await;
    f.engine.call(call("e.ctx")).await.expect("ok");
}

#[tokio::test]
async fn unknown_events_are_unknown_event() {
    let f = fixture(r#"{"e.known": {"do": [{"url": "t/y"}]}}"#, vec![("y", Act::Next)]).await;
    let e = f.engine.call(call("e.unknown")).await.expect_err("unknown");
    assert_eq!(e.kind, ErrorKind::UnknownEvent);
    assert!(e.message.contains("e.unknown"));
}

#[tokio::test]
async fn reload_takes_a_good_file_and_keeps_the_old_pipelines_on_a_bad_one() {
    frontdesk_api::metrics::install();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pipelines.json");
    std::fs::write(&path, r#"{"e.one": {"do": [{"url": "t/y"}]}}"#).expect("write");
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::open(dir.path(), RetryPolicy::default()).await.expect("bus"));
    let mut registry = Registry::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    registry
        .register("t/y", Arc::new(Probe { name: "y", act: Act::Next, log, runs: Mutex::new(0) }))
        .expect("register");
    let engine = Engine::new(
        registry,
        PipelineSource::File(path.clone()),
        bus,
        Arc::new(HttpStages::new().expect("client")),
        EngineConfig::default(),
    )
    .expect("engine");
    assert!(engine.has_event("e.one") && !engine.has_event("e.two"));

    std::fs::write(&path, r#"{"e.one": {"do": [{"url": "t/y"}]}, "e.two": {"do": [{"url": "t/y"}]}}"#).expect("write");
    engine.reload().expect("good file");
    assert!(engine.has_event("e.two"));

    std::fs::write(&path, r#"{"e.three": {"do": [{"url": "t/nope"}]}}"#).expect("write");
    let e = engine.reload().expect_err("bad file");
    assert!(e.to_string().contains(r#""e.three".do[0].url: unknown handler "t/nope""#), "{e}");
    assert!(engine.has_event("e.two") && !engine.has_event("e.three"), "old pipelines kept");
    engine.call(call("e.two")).await.expect("still served");

    std::fs::remove_file(&path).expect("rm");
    assert!(engine.reload().expect_err("missing").to_string().contains("cannot read"));
    assert!(engine.has_event("e.two"));
}
