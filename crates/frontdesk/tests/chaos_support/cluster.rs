//! Real processes on loopback for the chaos scenarios: a `redis-server` of the test's own
//! that can be killed, restarted empty on the same port, paused (SIGSTOP) and resumed; a
//! fresh PostgreSQL database; and Frontdesk nodes as child processes of the built binary
//! (`frontdesk serve`, configured by `FRONTDESK_*` variables) that can be SIGKILLed,
//! SIGTERMed and started again on the same port and data directory.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use frontdesk_testkit::env::{free_port, unique_name, TempDirGuard};

pub const ADMIN_EMAIL: &str = "admin@chaos.example";
pub const ADMIN_PASSWORD: &str = "chaos-admin-password";

/// Sends `signal` (e.g. "-STOP") to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A `redis-server` without persistence on a fixed loopback port.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDirGuard,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis { port: free_port(), child: None, dir: TempDirGuard::new("chaos-redis") };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxclients", "10000"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("redis is running")
    }

    /// SIGKILL, then a new, empty server on the same port (no persistence: nothing survives).
    pub fn restart_empty(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process still dies of SIGKILL.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `frontdesk serve` child process.
pub struct Node {
    pub port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    dir: TempDirGuard,
    starts: u32,
}

impl Node {
    /// Starts a node on Redis (state, pub/sub, bus) and PostgreSQL; waits until `/healthz`.
    pub fn start(redis: &str, database: &str, prefix: &str) -> Node {
        let port = free_port();
        let dir = TempDirGuard::new("chaos-node");
        let env = vec![
            ("FRONTDESK_LISTEN".to_string(), format!("127.0.0.1:{port}")),
            ("FRONTDESK_DATA_DIR".to_string(), dir.0.join("data").display().to_string()),
            ("FRONTDESK_STATE".to_string(), redis.to_string()),
            ("FRONTDESK_BUS".to_string(), redis.to_string()),
            ("FRONTDESK_DATABASE".to_string(), database.to_string()),
            ("FRONTDESK_REDIS_PREFIX".to_string(), format!("{prefix}:")),
            ("FRONTDESK_ADMIN_EMAIL".to_string(), ADMIN_EMAIL.to_string()),
            ("FRONTDESK_ADMIN_PASSWORD".to_string(), ADMIN_PASSWORD.to_string()),
            ("FRONTDESK_SHUTDOWN_TIMEOUT_MS".to_string(), "5000".to_string()),
            // The scenarios' clients send 10 messages/s each, above a visitor's default
            // budget (5/s): the faults, not the flood limit, are under test here.
            ("FRONTDESK_VISITOR_MESSAGE_RATE".to_string(), "0".to_string()),
            ("RUST_LOG".to_string(), "warn".to_string()),
        ];
        let mut node = Node { port, env, child: None, dir, starts: 0 };
        node.start_again();
        node
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join(format!("node-{}.log", self.starts))
    }

    /// Starts the process (again) on the same port and data directory; waits for `/healthz`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the node is running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
        for (key, _) in std::env::vars() {
            if key.starts_with("FRONTDESK_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("serve").envs(self.env.iter().cloned()).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(log);
        self.child = Some(cmd.spawn().expect("start frontdesk"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_status(self.port, "/healthz") == Some(200) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("frontdesk exited during start-up ({status}):\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "node did not come up within 30 s:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: the node dies with its sockets, leases and in-flight requests.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (up to `within`) for a clean exit; returns how long it took.
    pub fn sigterm(&mut self, within: Duration) -> Duration {
        let mut child = self.child.take().expect("the node is running");
        let start = Instant::now();
        signal(child.id(), "-TERM");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "frontdesk exited with {status} on SIGTERM:\n{}", self.log_tail());
                return start.elapsed();
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!("frontdesk did not exit within {within:?} of SIGTERM:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident memory (kB), from /proc.
    pub fn rss_kb(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// The last lines of the node's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// `GET path` on a loopback port with a plain socket; the status, or `None` if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A fresh PostgreSQL database on the test run's server; its URL.
pub async fn database() -> String {
    crate::support::create_postgres_database(&frontdesk_testkit::env::postgres_url()).await
}

/// A Redis key prefix no other test uses.
pub fn prefix() -> String {
    unique_name("chaos")
}
