//! The binary as a user runs it: `frontdesk serve` with nothing configured, SIGTERM,
//! bad settings, and the admin commands.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use frontdesk_testkit::env::{free_port, TempDirGuard};
use serde_json::Value;

fn frontdesk(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    cmd.current_dir(dir);
    // Nothing from the developer's environment may leak into "nothing configured".
    for (key, _) in std::env::vars() {
        if key.starts_with("FRONTDESK_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

fn wait_for_http(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("frontdesk exited during start-up: {status}");
        }
        assert!(Instant::now() < deadline, "frontdesk did not listen on {port} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "frontdesk did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_with_nothing_configured_runs_on_embedded_defaults_and_stops_on_sigterm() {
    let dir = TempDirGuard::new("cli");
    let port = free_port();
    // The only setting: a free port instead of 8080, which another process may hold.
    let mut child = frontdesk(&dir.0)
        .arg("serve")
        .env("FRONTDESK_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn frontdesk");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    wait_for_http(port, &mut child);

    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    let data = dir.0.join("frontdesk-data");
    assert!(data.join("frontdesk.db").is_file(), "SQLite under ./frontdesk-data");
    assert!(data.join("spool.db").is_file(), "bus spool under ./frontdesk-data");

    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let log = lines.join().expect("stderr reader").join("\n");
    let lines: Vec<_> = log.lines().collect();
    let shown: Vec<_> = lines.iter().filter(|l| l.contains("Admin password (shown only this once)")).collect();
    assert_eq!(shown.len(), 1, "a generated admin password is shown once:\n{log}");
    assert!(log.contains("admin@example.com"), "{log}");
    assert!(log.contains("shutting down"), "{log}");

    // A second start finds the site and shows no password.
    let mut child = frontdesk(&dir.0)
        .arg("serve")
        .env("FRONTDESK_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn frontdesk");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    wait_for_http(port, &mut child);
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
    let log = lines.join().expect("stderr reader").join("\n");
    assert!(!log.contains("Admin password"), "{log}");
}

#[test]
fn a_bad_setting_fails_start_up_naming_it() {
    let dir = TempDirGuard::new("cli");
    let out = frontdesk(&dir.0).arg("serve").env("FRONTDESK_NODE_ID", "4096").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node_id") && err.contains("FRONTDESK_NODE_ID"), "{err}");

    let out = frontdesk(&dir.0).args(["serve", "--state", "memcached://x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`state`"), "{err}");
}

#[test]
fn help_explains_every_command() {
    let dir = TempDirGuard::new("cli");
    let out = frontdesk(&dir.0).arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "migrate", "site", "agent"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(cmd)), "{cmd} missing from:\n{help}");
    }
}

#[test]
fn migrate_site_add_and_agent_add_work_from_the_command_line() {
    let dir = TempDirGuard::new("cli");
    let out = frontdesk(&dir.0).arg("migrate").output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let migrated: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(migrated["database"], "sqlite");
    assert!(!migrated["appliedMigrations"].as_array().expect("list").is_empty());

    let out = frontdesk(&dir.0)
        .args(["site", "add", "--name", "Shoe shop", "--admin-email", "owner@shoes.example"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let site: Value = serde_json::from_slice(&out.stdout).expect("json");
    let site_id = site["siteId"].as_str().expect("site id is a string").to_string();
    assert!(site["adminAgentId"].is_string());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Admin password (shown only this once)"));

    let out = frontdesk(&dir.0)
        .args(["agent", "add", "--site", &site_id, "--email", "ann@shoes.example", "--name", "Ann"])
        .args(["--role", "supervisor", "--password", "ann-password"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let agent: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(agent["agentId"].is_string());

    // The same email again, in any case, is refused with a message that says why.
    let out = frontdesk(&dir.0)
        .args(["agent", "add", "--site", &site_id, "--email", "ANN@shoes.example", "--name", "Ann 2"])
        .args(["--password", "ann-password"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad input: unknown site, bad role, short password.
    let out = frontdesk(&dir.0)
        .args(["agent", "add", "--site", "12345", "--email", "x@y.example", "--name", "X", "--password", "long-enough"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no site with id 12345"));
    let out = frontdesk(&dir.0)
        .args(["agent", "add", "--site", &site_id, "--email", "x@y.example", "--name", "X", "--role", "boss"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    let out = frontdesk(&dir.0)
        .args(["agent", "add", "--site", &site_id, "--email", "x@y.example", "--name", "X", "--password", "short"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));
}

#[test]
fn sighup_reloads_the_pipeline_file_and_a_bad_file_keeps_the_old_pipelines() {
    let dir = TempDirGuard::new("cli");
    let file = dir.0.join("pipelines.json");
    let mut pipelines: Value = serde_json::from_str(frontdesk_modules::BUILTIN_PIPELINES).expect("builtin");
    std::fs::write(&file, pipelines.to_string()).expect("write");
    let port = free_port();
    let mut child = frontdesk(&dir.0)
        .arg("serve")
        .env("FRONTDESK_LISTEN", format!("127.0.0.1:{port}"))
        .env("FRONTDESK_PIPELINES", &file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn frontdesk");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    wait_for_http(port, &mut child);
    let post = |event: &str| -> u16 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(s, "POST /api/v1/{event} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
            .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status")
    };
    // An event whose only stage is a guard that lets nobody through: 401 once it exists.
    assert_eq!(post("ops.probe"), 404);

    // Change the file but keep its modification time, so only SIGHUP can notice.
    let before = std::fs::metadata(&file).and_then(|m| m.modified()).expect("mtime");
    pipelines["ops.probe"] = serde_json::json!({"do": [{"url": "auth/require_admin"}]});
    // Written beside it with the old time, then renamed over it: the watcher never sees a
    // moment when the file's time changed.
    let staged = dir.0.join("pipelines.json.new");
    std::fs::write(&staged, pipelines.to_string()).expect("write");
    std::fs::File::options().write(true).open(&staged).and_then(|f| f.set_modified(before)).expect("keep mtime");
    std::fs::rename(&staged, &file).expect("rename");
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(post("ops.probe"), 404, "the file watcher must not have seen it");
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while post("ops.probe") != 401 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the pipelines");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A bad file: refused, logged, the old pipelines stay.
    std::fs::write(&file, r#"{"ops.probe": {"do": [{"url": "nope/missing"}]}}"#).expect("write");
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill");
    assert!(hup.success());
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(post("ops.probe"), 401);
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
    let log = lines.join().expect("stderr reader").join("\n");
    assert!(log.contains("pipelines reloaded") && log.contains("SIGHUP"), "{log}");
    assert!(log.contains("pipeline file refused") && log.contains("nope/missing"), "{log}");
}
