//! Where the real backends of a test run are, and unique names to keep tests apart.

use std::sync::atomic::{AtomicU64, Ordering};

const HOW: &str = "start the test backends with scripts/test.sh (it installs and starts \
redis-server and PostgreSQL on free loopback ports and exports this variable)";

/// The Redis server of this test run.
pub fn redis_url() -> String {
    std::env::var("FRONTDESK_TEST_REDIS").unwrap_or_else(|_| panic!("FRONTDESK_TEST_REDIS is not set: {HOW}"))
}

/// A PostgreSQL URL of a role that may create databases.
pub fn postgres_url() -> String {
    std::env::var("FRONTDESK_TEST_POSTGRES").unwrap_or_else(|_| panic!("FRONTDESK_TEST_POSTGRES is not set: {HOW}"))
}

/// A name no other test (in this or another process) uses: for Redis key prefixes,
/// PostgreSQL database names, queue names. Lowercase letters, digits and `_` only.
pub fn unique_name(stem: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{stem}_{}_{}_{}", std::process::id(), n, rand::random::<u32>())
}

/// A `redis-server` of a test's own, on a free loopback port, for tests that stop, pause or
/// flush it. Killed when dropped.
pub struct RedisProcess {
    pub port: u16,
    child: std::process::Child,
    _dir: TempDirGuard,
}

impl RedisProcess {
    /// Starts one and waits (up to 5 s) until it answers.
    pub fn start() -> RedisProcess {
        let port = free_port();
        let dir = TempDirGuard::new("redis");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): {HOW}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RedisProcess { port, child, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server now (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A directory removed on drop (kept small: no dependency on `tempfile` here).
pub struct TempDirGuard(pub std::path::PathBuf);

impl TempDirGuard {
    pub fn new(stem: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(stem));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDirGuard(dir)
    }
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
