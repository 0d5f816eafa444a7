//! The test harness: an in-process server on a free port with its own data directory, a
//! fresh PostgreSQL database per test, and small HTTP helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use frontdesk::config::{Config, RawSettings};
use frontdesk_testkit::env::unique_name;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The node's backends (in embedded mode, its in-process state store).
    pub backends: frontdesk_core::backends::Backends,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

impl TestServer {
    /// Starts a node with `raw` settings over the defaults, in a fresh data directory.
    pub async fn start(raw: RawSettings) -> TestServer {
        let dir = std::env::temp_dir().join(unique_name("fd-data"));
        Self::start_in(raw, dir).await
    }

    pub async fn start_in(mut raw: RawSettings, data_dir: PathBuf) -> TestServer {
        raw.listen = Some("127.0.0.1:0".into());
        raw.data_dir = Some(data_dir.clone());
        raw.admin_email = raw.admin_email.or(Some("admin@test.example".into()));
        raw.admin_password = raw.admin_password.or(Some("test-password".into()));
        let config = Config::validate(raw).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let (up, backends) = oneshot::channel();
        let task = tokio::spawn(frontdesk::run_observed(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            move |b| {
                let _ = up.send(b.clone());
            },
        ));
        let backends = match backends.await {
            Ok(b) => b,
            Err(_) => panic!("the server stopped during start-up: {:?}", task.await),
        };
        let server = TestServer { addr, data_dir, backends, stop: Some(stop), task, http: reqwest::Client::new() };
        server.wait_until_up().await
    }

    async fn wait_until_up(mut self) -> Self {
        for _ in 0..200 {
            if self.task.is_finished() {
                let result = (&mut self.task).await;
                panic!("the server stopped during start-up: {result:?}");
            }
            if self.http.get(self.url("/healthz")).send().await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not answer /healthz within 5 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).timeout(Duration::from_secs(10)).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// Asks the server to shut down and waits for it (it must stop cleanly).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("server stops within 20 s")
            .expect("server task");
        result.expect("server ran and stopped without error");
    }
}

/// Settings for a node on Redis (state, pub/sub, bus) and PostgreSQL.
pub fn cluster_settings(redis: &str, database: &str, prefix: &str) -> RawSettings {
    RawSettings {
        state: Some(redis.to_string()),
        bus: Some(redis.to_string()),
        database: Some(database.to_string()),
        redis_prefix: Some(format!("{prefix}:")),
        ..RawSettings::default()
    }
}

/// A new, empty PostgreSQL database; returns its URL.
pub async fn create_postgres_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = unique_name("fd");
    let mut conn = sqlx::PgConnection::connect(admin_url).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("FRONTDESK_TEST_POSTGRES has no database part: {admin_url}"),
    }
}

impl TestServer {
    /// The URL of this node's SQLite database (embedded mode).
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.data_dir.join("frontdesk.db").display())
    }

    /// An access token for the agent with `email`, signed with the node's key, as
    /// `agent.login` would issue it.
    pub async fn token_for(&self, database: &str, email: &str) -> String {
        let store = frontdesk_store::connect(database).await.expect("store");
        let agent = store.agent_by_email(email).await.expect("read").expect("agent exists");
        let tokens = frontdesk_modules::tokens::Tokens::load(store.as_ref()).await.expect("signing key");
        tokens
            .issue_agent(agent.site_id, agent.id, agent.role, "test-session", Duration::from_secs(600))
            .expect("token")
    }

    /// POSTs an event; returns the status and the JSON answer.
    pub async fn call(&self, event: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(&format!("/api/v1/{event}")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(10));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
