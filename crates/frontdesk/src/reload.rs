//! Reloading a replaced pipeline file (SPEC §5.5): on SIGHUP and when the file changes.
//! A bad file is refused with every problem logged; the running pipelines stay.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use frontdesk_core::pipeline::{Engine, PipelineSource};
use tokio::task::JoinHandle;

/// How often the file's modification time is checked. Polling is portable and cheap at
/// this rate; it also notices a file replaced by a rename (editors, config management).
const POLL: Duration = Duration::from_secs(1);

/// Watches the engine's pipeline file, if it has one; abort the handle to stop.
pub fn spawn(engine: Arc<Engine>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let PipelineSource::File(path) = engine.source().clone() else {
            return hangups(engine).await;
        };
        let mut last = modified(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let why = tokio::select! {
                _ = hangup => "SIGHUP",
                _ = tokio::time::sleep(POLL) => {
                    let now = modified(&path);
                    if now == last { continue; }
                    last = now;
                    "file changed"
                }
            };
            reload(&engine, why);
        }
    })
}

/// With the built-in file there is nothing to re-read, but SIGHUP must not kill the
/// process (its default action), so it is caught and logged.
async fn hangups(engine: Arc<Engine>) {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        while hup.recv().await.is_some() {
            reload(&engine, "SIGHUP");
        }
    }
}

fn reload(engine: &Engine, why: &str) {
    match engine.reload() {
        Ok(()) => tracing::info!(why, "pipelines reloaded"),
        Err(e) => tracing::error!(why, error = %e, "pipeline file refused; keeping the running pipelines"),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
