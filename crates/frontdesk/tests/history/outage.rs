//! The database goes away in the middle of a conversation: chat keeps working (seed 000),
//! the history writes wait on the bus (failed back, never dead-lettered), and once the
//! database is back every message arrives. The node reaches PostgreSQL through a TCP proxy
//! the test cuts (refusing new connections and dropping open ones), as an outage would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frontdesk_core::history::HISTORY_QUEUE;
use frontdesk_core::store::Role;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{collect, eventually, shape};
use crate::chat_support::*;
use crate::support::create_postgres_database;

/// A TCP proxy to `upstream` on a fixed local port, which can be cut and restored.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let proxy = Proxy { addr, upstream, tasks: Arc::new(Mutex::new(Vec::new())) };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("tasks").push(conn);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Refuses new connections and drops the open ones.
    fn cut(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind proxy");
        self.serve(listener);
    }
}

fn postgres_addr(url: &str) -> (SocketAddr, String) {
    let rest = url.split_once("://").expect("scheme").1;
    let (auth_host, db) = rest.split_once('/').expect("database");
    let host = auth_host.rsplit_once('@').map_or(auth_host, |(_, h)| h);
    let addr = host.replace("localhost", "127.0.0.1").parse().expect("host:port of FRONTDESK_TEST_POSTGRES");
    (addr, db.to_string())
}

#[tokio::test]
async fn history_writes_wait_out_a_database_outage_on_redis_and_postgres() {
    let direct = create_postgres_database(&frontdesk_testkit::env::postgres_url()).await;
    let (upstream, db_name) = postgres_addr(&direct);
    let proxy = Proxy::start(upstream).await;
    let user = direct.split_once("://").and_then(|(_, r)| r.split_once('@')).map_or("postgres", |(u, _)| u);
    let proxied = format!("postgres://{user}@{}/{db_name}", proxy.addr);
    let env = Env::cluster_on_database(&frontdesk_testkit::env::redis_url(), proxied, 1).await;
    let node = env.node();
    let ann = env.agent("Ann", Role::Agent).await;
    env.online(ann.id, 2).await;
    let visitor = env.visitor().await;
    let mut seen = std::collections::BTreeMap::new();
    let a = ok(node, "chat.request", &visitor, json!({"message": "before the outage"}), None).await;
    collect(&mut seen, &a);
    let chat = chat_id(&a["data"]);
    collect(&mut seen, &ok(node, "chat.agent_accept", &ann, json!({"chatId": chat}), None).await);

    proxy.cut();
    for i in 0..3 {
        let v = json!({"chatId": chat, "content": format!("visitor during the outage {i}")});
        collect(&mut seen, &ok(node, "chat.visitor_send_message", &visitor, v, None).await);
        let m = json!({"chatId": chat, "content": format!("agent during the outage {i}")});
        collect(&mut seen, &ok(node, "chat.agent_send_message", &ann, m, None).await);
    }
    // Long enough for the worker to meet the outage, fail its batch back and probe a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bus = &node.backends.bus;
    assert!(bus.backlog(HISTORY_QUEUE).await.expect("backlog") > 0, "the writes wait on the bus");
    assert!(bus.dead_letters(HISTORY_QUEUE, 10).await.expect("dead letters").is_empty(), "nothing dead-lettered");

    proxy.restore().await;
    let path = format!("/api/v1/chats/{chat}");
    let stored =
        eventually(node, &path, &env.admin, |d| d["messages"].as_array().map(Vec::len) == Some(seen.len())).await;
    assert_eq!(shape(stored["messages"].as_array().expect("messages").iter()), shape(seen.values()));
    assert_eq!(seen.len(), 8, "first message, join, and six during the outage");
    env.stop().await;
}
