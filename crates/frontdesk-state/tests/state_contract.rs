//! The runtime-state contract suites (`frontdesk-testkit::state`) against both backends —
//! `memory::…` and `redis::…` in the test names — plus what only Redis can show: failing fast
//! when the server is unreachable or silent, unsubscribing on the server, and resubscribing
//! after the pub/sub connection drops.

mod memory {
    use std::sync::Arc;

    use frontdesk_state::memory::{MemoryPubSub, MemoryState};

    frontdesk_testkit::state_contract_tests!(make = async { Arc::new(MemoryState::new()) });
    frontdesk_testkit::route_table_contract_tests!(make = async { Arc::new(MemoryState::new()) });
    frontdesk_testkit::node_lease_tests!(make = async { Arc::new(MemoryState::new()) });
    frontdesk_testkit::schema_evolution_tests!(make = async { Arc::new(MemoryState::new()) });
    frontdesk_testkit::pubsub_contract_tests!(make = async { Arc::new(MemoryPubSub::new()) });
}

/// The same state contract over RESP3, which some deployments choose (`?protocol=resp3`):
/// replies come back as maps and doubles instead of flat arrays and text.
mod redis_resp3 {
    use std::sync::Arc;

    use frontdesk_state::redis_state::RedisState;
    use frontdesk_testkit::env::{redis_url, unique_name};

    async fn state() -> Arc<RedisState> {
        let url = format!("{}?protocol=resp3", redis_url().trim_end_matches('/'));
        Arc::new(RedisState::connect(&url, &unique_name("t")).await.expect("connect"))
    }

    frontdesk_testkit::state_contract_tests!(make = state());
}

mod redis {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use frontdesk_core::error::BackendError;
    use frontdesk_core::pubsub::PubSub;
    use frontdesk_core::state::{hash_tag, StateStore};
    use frontdesk_state::redis_state::{RedisPubSub, RedisState};
    use frontdesk_testkit::env::{redis_url, unique_name};
    use frontdesk_testkit::state::{__run as run, eventually};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    async fn state() -> Arc<RedisState> {
        Arc::new(RedisState::connect(&redis_url(), &unique_name("t")).await.expect("connect"))
    }

    async fn pubsub() -> Arc<RedisPubSub> {
        Arc::new(RedisPubSub::connect(&redis_url(), &unique_name("t")).await.expect("connect"))
    }

    frontdesk_testkit::state_contract_tests!(make = state());
    frontdesk_testkit::route_table_contract_tests!(make = state());
    frontdesk_testkit::node_lease_tests!(make = state());
    frontdesk_testkit::schema_evolution_tests!(make = state());
    frontdesk_testkit::pubsub_contract_tests!(make = pubsub());

    fn assert_unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, BackendError>) {
        assert!(matches!(r, Err(BackendError::Unavailable { .. })), "{what}: expected Unavailable, got {r:?}");
    }

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        port
    }

    #[test]
    fn unreachable_server_fails_fast_as_unavailable() {
        run(async {
            let url = format!("redis://127.0.0.1:{}", closed_port().await);
            let state = RedisState::connect(&url, "p").await.expect("connecting is lazy");
            let started = Instant::now();
            assert_unavailable("ping", state.ping().await);
            assert_unavailable("get", state.get("k").await);
            assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
            let bus = RedisPubSub::connect(&url, "p").await.expect("connecting is lazy");
            assert_unavailable("publish", bus.publish("c", Bytes::from_static(b"x")).await);
            assert_unavailable("subscribe", bus.subscribe("c").await.map(drop));
        });
    }

    #[test]
    fn silent_server_fails_fast_as_unavailable() {
        run(async {
            // Accepts connections and never answers, like a paused Redis.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = listener.accept().await {
                    held.push(socket);
                }
            });
            let state = RedisState::connect(&format!("redis://127.0.0.1:{port}"), "p").await.expect("connect");
            let started = Instant::now();
            assert_unavailable("ping", state.ping().await);
            assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        });
    }

    #[test]
    fn a_bad_url_or_prefix_is_refused() {
        run(async {
            assert!(RedisState::connect("not a url", "p").await.is_err());
            assert!(RedisState::connect(&redis_url(), "{tag}").await.is_err(), "a braced prefix would merge slots");
        });
    }

    #[test]
    fn keys_carry_the_prefix_and_keep_their_hash_tags() {
        run(async {
            let prefix = unique_name("t");
            let state = RedisState::connect(&redis_url(), &prefix).await.expect("connect");
            state.hset("{c:1}:meta", &[("f", "v")]).await.expect("hset");
            let mut raw = raw_connection().await;
            let key = format!("{prefix}{{c:1}}:meta");
            let v: Option<String> = redis::cmd("HGET").arg(&key).arg("f").query_async(&mut raw).await.expect("hget");
            assert_eq!(v.as_deref(), Some("v"));
            assert_eq!(hash_tag(&key), "c:1", "the prefix changed the key's slot");
            let other = RedisState::connect(&redis_url(), &unique_name("t")).await.expect("connect");
            assert!(other.hgetall("{c:1}:meta").await.expect("hgetall").is_empty(), "prefixes leaked");
        });
    }

    async fn raw_connection() -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url()).expect("url").get_multiplexed_async_connection().await.expect("connect")
    }

    async fn server_subscribers(raw: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
        let reply: Vec<redis::Value> =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(raw).await.expect("numsub");
        match reply.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected NUMSUB reply {other:?}"),
        }
    }

    #[test]
    fn dropping_the_last_subscription_unsubscribes_on_the_server() {
        run(async {
            let prefix = unique_name("t");
            let bus = RedisPubSub::connect(&redis_url(), &prefix).await.expect("connect");
            let channel = format!("{prefix}c");
            let mut raw = raw_connection().await;
            let a = bus.subscribe("c").await.expect("subscribe");
            let b = bus.subscribe("c").await.expect("subscribe");
            assert_eq!(server_subscribers(&mut raw, &channel).await, 1, "one connection serves both");
            drop(a);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(server_subscribers(&mut raw, &channel).await, 1, "unsubscribed while b listens");
            drop(b);
            let gone = eventually(Duration::from_secs(3), || {
                let mut raw = raw.clone();
                let channel = channel.clone();
                async move { server_subscribers(&mut raw, &channel).await == 0 }
            })
            .await;
            assert!(gone, "the server still counts a subscriber");
        });
    }

    /// A TCP proxy to the test Redis whose connections can be cut at will.
    async fn cuttable_proxy() -> (u16, watch::Sender<u64>) {
        let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, cuts) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = cr.read(&mut buf).await {
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = sr.read(&mut buf).await {
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        (port, cut)
    }

    #[test]
    fn pubsub_resubscribes_after_the_connection_drops() {
        run(async {
            let (port, cut) = cuttable_proxy().await;
            let prefix = unique_name("t");
            let bus = RedisPubSub::connect(&format!("redis://127.0.0.1:{port}"), &prefix).await.expect("connect");
            let mut sub = bus.subscribe("c").await.expect("subscribe");
            let direct = RedisPubSub::connect(&redis_url(), &prefix).await.expect("connect");
            direct.publish("c", Bytes::from_static(b"before")).await.expect("publish");
            assert_eq!(sub.recv().await.as_deref(), Some(&b"before"[..]));

            cut.send_modify(|n| *n += 1);
            // Delivery is at most once: publish until the resubscribed connection hears one.
            let mut heard = None;
            for i in 0..100 {
                direct.publish("c", Bytes::from(format!("after {i}"))).await.expect("publish");
                if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
                    heard = Some(m);
                    break;
                }
            }
            let heard = heard.expect("no message arrived within 10 s of the connection dropping");
            assert!(heard.starts_with(b"after "), "got {heard:?}");
        });
    }
}
