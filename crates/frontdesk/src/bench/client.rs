//! How the bench talks to a running Frontdesk: only through its public API, only to the
//! address it was given — HTTP calls with keep-alive and WebSockets, optionally from a chosen
//! source address (runs past ~28k sockets need several 127.0.0.x sources).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures::stream::{SplitSink, SplitStream};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;
pub type WsTx = SplitSink<Ws, Message>;
pub type WsRx = SplitStream<Ws>;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    addr: SocketAddr,
}

impl Api {
    /// `url` like `http://127.0.0.1:8080`.
    pub async fn new(url: &str) -> anyhow::Result<Api> {
        let base = url.trim_end_matches('/').to_string();
        let hostport = base.strip_prefix("http://").ok_or_else(|| anyhow!("--url must be http://host:port"))?;
        let addr = tokio::net::lookup_host(hostport)
            .await
            .with_context(|| format!("cannot resolve {hostport}"))?
            .next()
            .ok_or_else(|| anyhow!("{hostport} resolves to nothing"))?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api { http, base, addr })
    }

    /// Calls an event; the answer's JSON, or an error naming the event and the error kind.
    pub async fn call(&self, event: &str, token: Option<&str>, data: Value) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}/api/v1/{event}", self.base)).json(&data);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let answer: Value = req.send().await.with_context(|| format!("{event}: no answer"))?.json().await?;
        if answer["code"] == -1 {
            bail!("{event}: {} ({})", answer["error"]["kind"], answer["error"]["message"]);
        }
        Ok(answer)
    }

    /// Opens a socket with `token`, from `source` when given.
    pub async fn socket(&self, token: &str, source: Option<IpAddr>) -> anyhow::Result<(WsTx, WsRx)> {
        let socket = if self.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot bind source {ip}"))?;
        }
        socket.set_nodelay(true)?;
        let stream = socket.connect(self.addr).await.with_context(|| format!("cannot connect to {}", self.addr))?;
        let url = format!("ws://{}/api/v1/ws?token={token}", self.addr);
        // Small buffers on the client too: an idle run holds tens of thousands of these.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
        Ok(ws.split())
    }
}

/// A call frame.
pub fn frame(id: u64, event: &str, data: Value, offsets: Option<(i64, i64)>) -> Message {
    let mut f = json!({"id": id, "event": event, "data": data});
    if let Some((v, a)) = offsets {
        f["visitorDataOffset"] = json!(v);
        f["agentDataOffset"] = json!(a);
    }
    Message::text(f.to_string())
}

/// Logs an agent in; its access token and site id.
pub async fn login(api: &Api, email: &str, password: &str) -> anyhow::Result<(String, String)> {
    let a = api.call("agent.login", None, json!({"email": email, "password": password})).await?;
    let token = a["data"]["accessToken"].as_str().ok_or_else(|| anyhow!("agent.login gave no token"))?;
    let site = a["data"]["agent"]["siteId"].as_str().ok_or_else(|| anyhow!("agent.login gave no site"))?;
    Ok((token.to_string(), site.to_string()))
}

/// A new visitor of `site`: its token.
pub async fn visitor(api: &Api, site: &str, n: usize) -> anyhow::Result<String> {
    let a = api
        .call("visitor.enter_site", None, json!({"siteId": site, "url": format!("https://bench.invalid/p/{n}")}))
        .await?;
    Ok(a["data"]["visitorToken"].as_str().ok_or_else(|| anyhow!("enter_site gave no token"))?.to_string())
}

/// Source addresses 127.0.0.1 … 127.0.0.n for socket runs.
pub fn sources(n: u8) -> Vec<IpAddr> {
    (1..=n.max(1)).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}
