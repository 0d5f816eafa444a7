//! What a bench run prints: a table for people, `--json` for machines. CPU per delivered
//! message comes from the server's `/proc` counters (`--server-pid`).

use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::ledger::Tally;
use super::probe::{Probe, Sample};
use super::Common;

/// The measured window: wall time and the server's CPU and memory at both ends.
pub struct Run {
    started: Instant,
    seconds: f64,
    probe: Option<Probe>,
    before: Option<Sample>,
    after: Option<Sample>,
}

impl Run {
    pub fn start(common: &Common) -> anyhow::Result<Run> {
        let probe = Probe::of(&common.server_pid)?;
        let before = probe.as_ref().map(Probe::sample).transpose()?;
        Ok(Run { started: Instant::now(), seconds: 0.0, probe, before, after: None })
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.seconds = self.started.elapsed().as_secs_f64();
        self.after = self.probe.as_ref().map(Probe::sample).transpose()?;
        Ok(())
    }

    /// When the measured window began.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// Server CPU seconds used in the window.
    pub fn server_cpu(&self) -> Option<f64> {
        Some(self.after?.cpu_seconds - self.before?.cpu_seconds)
    }

    pub fn server_rss(&self) -> Option<u64> {
        self.after.map(|s| s.rss_bytes)
    }
}

pub struct Report {
    pub scenario: &'static str,
    pub fields: Map<String, Value>,
}

impl Report {
    /// A throughput-and-latency report: `events` counted in the window.
    pub fn new(scenario: &'static str, run: &Run, events: u64, tally: Tally, latency: &Histogram<u64>) -> Report {
        let mut r = Report { scenario, fields: Map::new() };
        let per_second = events as f64 / run.seconds().max(1e-9);
        r.set("seconds", run.seconds());
        r.set("delivered", events as f64);
        r.set("per_second", per_second);
        r.set("sent", tally.sent as f64);
        r.set("lost", tally.lost as f64);
        r.set("duplicated", tally.duplicated as f64);
        r.set("unknown", tally.unknown as f64);
        for (name, q) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p99_9_ms", 99.9)] {
            r.set(name, latency.value_at_percentile(q) as f64 / 1000.0);
        }
        r.set("max_ms", latency.max() as f64 / 1000.0);
        if let Some(cpu) = run.server_cpu() {
            r.set("server_cpu_s", cpu);
            if events > 0 {
                r.set("server_cpu_us_per_event", cpu * 1e6 / events as f64);
            }
        }
        if let Some(rss) = run.server_rss() {
            r.set("server_rss_mib", rss as f64 / (1024.0 * 1024.0));
        }
        r
    }

    pub fn with(mut self, key: &str, value: f64) -> Report {
        self.set(key, value);
        self
    }

    fn set(&mut self, key: &str, value: f64) {
        self.fields.insert(key.to_string(), json!((value * 1000.0).round() / 1000.0));
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.fields.get(key).and_then(Value::as_f64)
    }

    pub fn json(&self) -> Value {
        let mut v = Map::new();
        v.insert("scenario".into(), json!(self.scenario));
        v.extend(self.fields.clone());
        Value::Object(v)
    }

    pub fn table(&self) -> String {
        let mut out = format!("frontdesk bench {}\n", self.scenario);
        for (k, v) in &self.fields {
            out.push_str(&format!("  {k:<26} {v}\n"));
        }
        out
    }
}
