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

/// A PostgreSQL cluster of a test's own (`initdb` in a temporary directory, trust auth for
/// `postgres`, `fsync=off`) on a free loopback port, for tests that crash and restart the
/// database. As root the server binaries run as the `postgres` user (PostgreSQL refuses
/// root). The binaries come from `FRONTDESK_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`. Stopped (immediately) and deleted when dropped.
pub struct PostgresProcess {
    pub port: u16,
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    sock: std::path::PathBuf,
    as_postgres: bool,
    running: bool,
    dir: TempDirGuard,
}

/// How long `pg_ctl` may take to start or stop the server.
const PG_CTL_WAIT_SECS: &str = "30";

impl PostgresProcess {
    /// Creates the cluster and starts it (waiting up to 30 s until it accepts connections).
    pub fn start() -> PostgresProcess {
        use std::os::unix::fs::MetadataExt;
        let bin = postgres_bin_dir();
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let dir = TempDirGuard::new("pg");
        let (data, sock) = (dir.0.join("data"), dir.0.join("sock"));
        for d in [&data, &sock] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        }
        let mut pg = PostgresProcess {
            port: free_port(),
            bin,
            data: data.clone(),
            sock: sock.clone(),
            as_postgres,
            running: false,
            dir,
        };
        if as_postgres {
            let dir = pg.dir.0.clone();
            run(std::process::Command::new("chown").args(["-R", "postgres"]).arg(&dir), "chown");
        }
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run(&mut initdb, "initdb");
        pg.start_again();
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Crashes the server: `pg_ctl stop -m immediate` (no checkpoint, connections cut), and
    /// waits until it is gone.
    pub fn stop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECS, "stop"]);
        run(&mut stop, "pg_ctl stop");
        self.running = false;
    }

    /// Starts the server on the same data directory and port (recovering after a crash) and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.sock.display()
        );
        let mut start = self.command("pg_ctl");
        start.arg("-D").arg(&self.data).arg("-l").arg(self.sock.join("postgres.log")).args([
            "-w",
            "-t",
            PG_CTL_WAIT_SECS,
            "-o",
            &options,
            "start",
        ]);
        let log = self.sock.join("postgres.log");
        let output = start.output().unwrap_or_else(|e| panic!("cannot run pg_ctl start: {e}"));
        if !output.status.success() {
            panic!(
                "pg_ctl start failed: {}{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.running = true;
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        cmd.stdin(std::process::Stdio::null());
        cmd
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECS, "stop"]);
        let stopped = stop.output().is_ok_and(|o| o.status.success());
        if !stopped {
            // The postmaster's pid is the first line of its pid file; SIGKILL takes its
            // children down with it (they exit when it goes).
            let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
            if let Some(pid) = pid.lines().next().filter(|p| p.parse::<u32>().is_ok()) {
                let _ = std::process::Command::new("kill").args(["-9", pid]).output();
            }
        }
    }
}

/// The PostgreSQL bin directory: `FRONTDESK_TEST_PG_BIN`, else the highest version under
/// `/usr/lib/postgresql`.
fn postgres_bin_dir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("FRONTDESK_TEST_PG_BIN") {
        return std::path::PathBuf::from(dir);
    }
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no PostgreSQL binaries: set FRONTDESK_TEST_PG_BIN or {HOW}"),
    }
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &mut std::process::Command, what: &str) {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
