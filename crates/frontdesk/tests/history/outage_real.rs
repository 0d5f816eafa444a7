//! Issue 5's outages with real processes: the test's own PostgreSQL crashed (`pg_ctl stop
//! -m immediate`) for 30 s in the middle of a conversation (cluster mode), and the SQLite
//! database's disk filled up under the built binary running as `nobody` (embedded mode).
//! Every send answers `code 0` throughout, `/readyz` shows the `storage.write` backlog (and
//! PostgreSQL down), and once the database is back the backlog drains and the transcript
//! holds every message exactly once, in seq order, in `chats.get` and by SQL.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use frontdesk_core::history::HISTORY_QUEUE;
use frontdesk_core::store::Role;
use frontdesk_testkit::env::PostgresProcess;
use serde_json::{json, Value};

use super::{collect, eventually, shape};
use crate::chat_support::*;
use crate::support::{create_postgres_database, TestServer};

/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(30);
/// At least this many messages are sent while it is down.
const MIN_SENT: usize = 50;
/// How long the backlog may take to drain once the database is back.
const DRAIN_WITHIN: Duration = Duration::from_secs(60);

/// `/readyz`: status and body.
async fn readyz(node: &TestServer) -> (u16, Value) {
    let (status, body) = node.get("/readyz").await;
    (status, serde_json::from_str(&body).unwrap_or_else(|_| panic!("/readyz is not JSON: {body}")))
}

fn backlog(ready: &Value) -> i64 {
    ready["backends"]["bus"]["backlog"][HISTORY_QUEUE].as_i64().unwrap_or(-1)
}

/// Polls `/readyz` until the database is up and the backlog is 0; returns how long it took.
async fn drained(node: &TestServer) -> Duration {
    let start = Instant::now();
    loop {
        let (status, ready) = readyz(node).await;
        if status == 200 && ready["backends"]["database"]["ok"] == json!(true) && backlog(&ready) == 0 {
            return start.elapsed();
        }
        assert!(start.elapsed() < DRAIN_WITHIN, "the backlog did not drain within {DRAIN_WITHIN:?}: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The (visitor, agent) offsets an answer leaves its caller at.
fn offsets_of(answer: &Value) -> (i64, i64) {
    let at = |k: &str| answer[k].as_i64().unwrap_or_else(|| panic!("no {k} in {answer}"));
    (at("visitorDataOffset"), at("agentDataOffset"))
}

/// Each clientMessageId the test sent appears exactly once among `messages`, and no id twice.
fn each_once(messages: &[Value], sent: &[String]) {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut by_cmid: HashMap<&str, usize> = HashMap::new();
    for m in messages {
        *by_id.entry(m["id"].as_str().expect("id")).or_default() += 1;
        if let Some(c) = m["clientMessageId"].as_str() {
            *by_cmid.entry(c).or_default() += 1;
        }
    }
    assert!(by_id.values().all(|n| *n == 1), "a message id appears twice: {by_id:?}");
    for c in sent {
        assert_eq!(by_cmid.get(c.as_str()), Some(&1), "clientMessageId {c} is not stored exactly once");
    }
    let seqs: Vec<i64> = messages.iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "the transcript is not in seq order: {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_30_second_postgres_crash_on_redis_and_postgres() {
    let mut pg = tokio::task::spawn_blocking(PostgresProcess::start).await.expect("start PostgreSQL");
    let db = create_postgres_database(&pg.url()).await;
    let env = Env::cluster_on_database(&frontdesk_testkit::env::redis_url(), db.clone(), 1).await;
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 2).await;
    let visitor = env.visitor().await;
    let mut seen = BTreeMap::new();
    let a = ok(node, "chat.request", &visitor, json!({"message": "before the outage"}), None).await;
    collect(&mut seen, &a);
    let chat = chat_id(&a["data"]);
    // Each side sends the offsets of its last answer, as clients do (SPEC §6), so an answer
    // carries only the messages that side lacks.
    let mut offsets = [offsets_of(&a), (0, 0)];
    let accepted = ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await;
    offsets[1] = offsets_of(&accepted);
    collect(&mut seen, &accepted);
    eventually(node, &format!("/api/v1/chats/{chat}"), &env.admin, |d| d["messages"].as_array().is_some()).await;

    tokio::task::block_in_place(|| pg.stop());
    let down = Instant::now();
    let (mut sent, mut slowest, mut during) = (Vec::new(), Duration::ZERO, None);
    let mut i = 0;
    while down.elapsed() < OUTAGE || sent.len() < MIN_SENT {
        for (n, event, who, side) in
            [(0, "chat.visitor_send_message", &visitor, "visitor"), (1, "chat.agent_send_message", &ann, "agent")]
        {
            let cmid = format!("{side}-{i}");
            let body =
                json!({"chatId": chat, "content": format!("{side} during the outage {i}"), "clientMessageId": cmid});
            let t = Instant::now();
            let answer = ok(node, event, who, body, Some(offsets[n])).await;
            offsets[n] = offsets_of(&answer);
            collect(&mut seen, &answer);
            slowest = slowest.max(t.elapsed());
            sent.push(cmid);
        }
        i += 1;
        if during.is_none() && down.elapsed() > Duration::from_secs(10) {
            during = Some(readyz(node).await);
        }
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    let (status, ready) = during.expect("/readyz was asked during the outage");
    assert_eq!(status, 503, "/readyz during the outage: {ready}");
    assert_eq!(ready["backends"]["database"]["ok"], json!(false), "{ready}");
    assert!(backlog(&ready) > 0, "the history writes wait on the bus: {ready}");
    let (_, end) = readyz(node).await;
    let backlog_at_end = backlog(&end);
    assert!(backlog_at_end > 0, "{end}");
    let bus = &node.backends.bus;
    assert!(bus.dead_letters(HISTORY_QUEUE, 10).await.expect("dead letters").is_empty(), "nothing dead-lettered");

    tokio::task::block_in_place(|| pg.start_again());
    let drain = drained(node).await;
    let path = format!("/api/v1/chats/{chat}");
    let stored =
        eventually(node, &path, &env.admin, |d| d["messages"].as_array().map(Vec::len) == Some(seen.len())).await;
    let messages = stored["messages"].as_array().expect("messages");
    assert_eq!(shape(messages.iter()), shape(seen.values()));
    each_once(messages, &sent);
    assert!(bus.dead_letters(HISTORY_QUEUE, 10).await.expect("dead letters").is_empty(), "nothing dead-lettered");

    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect to the test's PostgreSQL");
    let chat_id: i64 = chat.parse().expect("numeric chat id");
    let (rows, ids, cmids): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT id), count(DISTINCT client_message_id) FROM messages WHERE chat_id = $1",
    )
    .bind(chat_id)
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!((rows, ids), (seen.len() as i64, seen.len() as i64), "rows and distinct ids in PostgreSQL");
    let with_cmid: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE chat_id = $1 AND client_message_id LIKE '%-%'")
            .bind(chat_id)
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!((with_cmid, cmids >= sent.len() as i64), (sent.len() as i64, true), "each clientMessageId once");
    let _ = conn.close().await;
    println!(
        "postgres outage: {:?} down, {} messages sent during it (slowest answer {:?}), backlog {} at the end, \
         stored {} of {} (lost 0, duplicated 0), drained {:?} after the restart",
        OUTAGE,
        sent.len(),
        slowest,
        backlog_at_end,
        rows,
        seen.len(),
        drain
    );
    env.stop().await;
    drop(pg);
}

/// A tmpfs of its own, so the test can fill it (the disk is full: SQLite's writes fail with
/// `SQLITE_FULL`) without touching anything else. Unmounted and removed when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts one of `size_mb` owned by `nobody`; `Err` says why it cannot (not root, no
    /// `CAP_SYS_ADMIN`).
    fn mount(size_mb: u32) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(frontdesk_testkit::env::unique_name("fd-tmpfs"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let options = format!("size={size_mb}m,mode=0755,uid=65534,gid=65534");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs(dir))
    }

    /// Fills it up with a file of root's (the size limit binds root too).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..100_000 {
            if file.write_all(&chunk).and_then(|_| file.flush()).is_err() {
                return path;
            }
        }
        panic!("{} did not fill up", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The built server binary running as `nobody`, killed when dropped.
struct ServerProcess {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// `frontdesk serve` as `nobody` (with `setpriv`, which execs: the child is the server),
    /// waiting up to 30 s for `/healthz`.
    async fn start(data_dir: &std::path::Path, database: &str) -> Result<ServerProcess, String> {
        let port = frontdesk_testkit::env::free_port();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_frontdesk"),
            "serve",
        ]);
        for (key, _) in std::env::vars() {
            if key.starts_with("FRONTDESK_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("FRONTDESK_LISTEN", format!("127.0.0.1:{port}"))
            .env("FRONTDESK_DATA_DIR", data_dir)
            .env("FRONTDESK_DATABASE", database)
            .env("FRONTDESK_ADMIN_EMAIL", ADMIN)
            .env("FRONTDESK_ADMIN_PASSWORD", "test-password")
            .env("RUST_LOG", "warn")
            .current_dir(data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("cannot run setpriv: {e}"))?;
        let mut server =
            ServerProcess { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("the server as nobody exited during start-up: {status}"));
            }
            let up = server.http.get(format!("{}/healthz", server.base)).timeout(Duration::from_secs(2)).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the server did not answer /healthz within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base)).timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")))
    }

    /// POSTs an event and expects `code 0` within 20 s.
    async fn ok(&self, event: &str, token: Option<&str>, body: Value, offsets: Option<(i64, i64)>) -> Value {
        let mut req = self
            .http
            .post(format!("{}/api/v1/{event}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((v, a)) = offsets {
            req = req.header("X-Visitor-Data-Offset", v.to_string()).header("X-Agent-Data-Offset", a.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{event}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{event}: not JSON: {text}"));
        assert_eq!((status, &answer["code"]), (200, &json!(0)), "{event}: {answer}");
        answer
    }

    /// Polls `/readyz` until the backlog is 0 (bounded); returns how long it took.
    async fn drained(&self) -> Duration {
        let start = Instant::now();
        loop {
            let (status, ready) = self.get("/readyz", None).await;
            if status == 200 && backlog(&ready) == 0 {
                return start.elapsed();
            }
            assert!(start.elapsed() < DRAIN_WITHIN, "the backlog did not drain within {DRAIN_WITHIN:?}: {ready}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Why the unwritable-SQLite test cannot run here, if it cannot.
fn cannot_run_as_nobody() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Some("the test runs as a non-root user, so it cannot mount a tmpfs nor switch to `nobody`".into());
    }
    let probe = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_frontdesk"),
            "--version",
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`nobody` cannot run the server binary: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("setpriv is not available: {e}")),
    }
}

/// The SQLite store becomes unwritable under a running embedded node. Making the files
/// read-only (`chmod 0444` frontdesk.db and its -wal/-shm, or `chmod 0555` the directory)
/// does nothing to a running server: its single writer connection keeps the files open for
/// the life of the process, and permissions are checked only at open. What does make its
/// writes fail is a full disk, so the database lives on a small tmpfs of its own (the spool
/// stays in the data directory, on another file system) which the test fills up, after
/// truncating the WAL so every write must grow it. The server runs as `nobody`, as a
/// deployment would (root is not held back by permissions).
///
/// Regression test for a writer that never recovered: SQLite rolls the failed transaction
/// back by itself on `SQLITE_FULL`, sqlx's `ROLLBACK` then fails and leaves the writer
/// connection at transaction depth 1, so every later `BEGIN IMMEDIATE` failed until the
/// process restarted and the history writes were dead-lettered. The store now closes such a
/// connection (`SqliteStore::begin_write`), and its `ping` is a write, so the history worker
/// waits out the outage instead of burning attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_waits_out_an_unwritable_sqlite_database_embedded() {
    if let Some(why) = cannot_run_as_nobody() {
        eprintln!("SKIPPED history_waits_out_an_unwritable_sqlite_database_embedded: {why}");
        return;
    }
    let tmpfs = match Tmpfs::mount(32) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED history_waits_out_an_unwritable_sqlite_database_embedded: {why}");
            return;
        }
    };
    let data = frontdesk_testkit::env::TempDirGuard::new("fd-nobody");
    let chown = std::process::Command::new("chown").args(["nobody:nogroup"]).arg(&data.0).output().expect("chown");
    assert!(chown.status.success(), "chown: {}", String::from_utf8_lossy(&chown.stderr));
    let db_file = tmpfs.0.join("frontdesk.db");
    let database = format!("sqlite://{}", db_file.display());
    let server = ServerProcess::start(&data.0, &database).await.expect("the server runs as nobody");

    let login = server.ok("agent.login", None, json!({"email": ADMIN, "password": "test-password"}), None).await;
    let agent = login["data"]["accessToken"].as_str().expect("accessToken").to_string();
    let site = login["data"]["agent"]["siteId"].clone();
    server.ok("agent.set_status", Some(&agent), json!({"status": "online"}), None).await;
    let entered = server
        .ok("visitor.enter_site", None, json!({"siteId": site, "url": "https://shop.example/", "name": "Vera"}), None)
        .await;
    let visitor = entered["data"]["visitorToken"].as_str().expect("visitorToken").to_string();
    let mut seen = BTreeMap::new();
    let a = server.ok("chat.request", Some(&visitor), json!({"message": "before the disk filled up"}), None).await;
    collect(&mut seen, &a);
    let chat = chat_id(&a["data"]);
    let mut offsets = [offsets_of(&a), (0, 0)];
    let accepted = server.ok("chat.agent_accept", Some(&agent), json!({"chatId": chat}), None).await;
    offsets[1] = offsets_of(&accepted);
    collect(&mut seen, &accepted);
    let tokens = [visitor.clone(), agent.clone()];
    let path = format!("/api/v1/chats/{chat}");
    let until = Instant::now() + Duration::from_secs(10);
    while server.get(&path, Some(&agent)).await.1["data"]["messages"].as_array().map(Vec::len) != Some(seen.len()) {
        assert!(Instant::now() < until, "the conversation was not stored within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Unwritable: the WAL truncated (so the next write must grow it), then the disk full.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&database).await.expect("open the database");
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut conn).await.expect("checkpoint");
        assert_eq!(busy, 0, "the WAL was truncated");
        let _ = conn.close().await;
    }
    let filler = tmpfs.fill();
    let down = Instant::now();
    let (mut sent, mut slowest, mut during) = (Vec::new(), Duration::ZERO, None);
    let mut i = 0;
    while down.elapsed() < Duration::from_secs(10) || sent.len() < MIN_SENT {
        for (n, event, side) in [(0, "chat.visitor_send_message", "visitor"), (1, "chat.agent_send_message", "agent")] {
            let cmid = format!("{side}-{i}");
            let body = json!({"chatId": chat, "content": format!("{side} while the disk is full {i}"), "clientMessageId": cmid});
            let t = Instant::now();
            let answer = server.ok(event, Some(&tokens[n]), body, Some(offsets[n])).await;
            offsets[n] = offsets_of(&answer);
            collect(&mut seen, &answer);
            slowest = slowest.max(t.elapsed());
            sent.push(cmid);
        }
        i += 1;
        if during.is_none() && down.elapsed() > Duration::from_secs(5) {
            during = Some(server.get("/readyz", None).await);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (_, ready) = during.expect("/readyz was asked while the disk was full");
    assert!(backlog(&ready) > 0, "the history writes wait on the bus: {ready}");
    let (_, end) = server.get("/readyz", None).await;
    let backlog_at_end = backlog(&end);
    assert!(backlog_at_end > 0, "{end}");
    let (stored_before, _) = server.get(&path, Some(&agent)).await;
    assert_eq!(stored_before, 200);

    println!(
        "sqlite disk full for {:?}: {} messages sent, every one answered code 0 (slowest {slowest:?}); backlog {}",
        down.elapsed(),
        sent.len(),
        backlog_at_end
    );
    std::fs::remove_file(&filler).expect("free the disk");
    let drain = server.drained().await;
    let until = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let (status, body) = server.get(&path, Some(&agent)).await;
        if status == 200 && body["data"]["messages"].as_array().map(Vec::len) == Some(seen.len()) {
            break body["data"].clone();
        }
        assert!(Instant::now() < until, "the transcript did not settle within 10 s: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let messages = stored["messages"].as_array().expect("messages");
    assert_eq!(shape(messages.iter()), shape(seen.values()));
    each_once(messages, &sent);

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("{database}?mode=ro")).await.expect("open read-only");
    let chat_id: i64 = chat.parse().expect("numeric chat id");
    let (rows, ids, cmids): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT id), count(DISTINCT client_message_id) FROM messages WHERE chat_id = ?",
    )
    .bind(chat_id)
    .fetch_one(&mut conn)
    .await
    .expect("count");
    let _ = conn.close().await;
    assert_eq!((rows, ids), (seen.len() as i64, seen.len() as i64), "rows and distinct ids in SQLite");
    assert!(cmids >= sent.len() as i64, "each clientMessageId once: {cmids} of {}", sent.len());
    println!(
        "sqlite disk full: {:?}, {} messages sent during it (slowest answer {:?}), backlog {} at the end, \
         stored {} of {} (lost 0, duplicated 0), drained {:?} after the disk was freed",
        down.elapsed(),
        sent.len(),
        slowest,
        backlog_at_end,
        rows,
        seen.len(),
        drain
    );
    drop(server);
    drop(tmpfs);
}
