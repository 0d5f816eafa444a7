//! Contract suites for the runtime-state ports: [`StateStore`] (every method's Redis
//! semantics, expiry, locks, scripts, atomicity under concurrency), [`RouteTable`],
//! [`NodeLease`](frontdesk_core::lease::NodeLease), hash-backed object evolution (SPEC §7)
//! and [`PubSub`](frontdesk_core::pubsub::PubSub).
//!
//! Each suite is a macro taking `make = <expr>`, where the expression is a future giving a
//! fresh backend (`Arc<dyn StateStore>` or `Arc<dyn PubSub>`, or an `Arc` of a concrete
//! type). It expands to one `#[test]` per case, each on its own two-thread Tokio runtime, so
//! a failure names the case and the backend module that ran it:
//!
//! ```ignore
//! mod memory {
//!     frontdesk_testkit::state_contract_tests!(make = async {
//!         std::sync::Arc::new(frontdesk_state::memory::MemoryState::new())
//!     });
//! }
//! ```
//!
//! The cases themselves are plain async functions in [`cases`], [`route_cases`],
//! [`lease_cases`], [`schema_cases`] and [`pubsub_cases`]. Waits are bounded polls and TTLs
//! are a few hundred milliseconds, so the suites stay fast on both backends.

use std::future::Future;
use std::time::Duration;

#[doc(hidden)]
pub use frontdesk_core as __core;

/// Runs one case on a fresh multi-threaded runtime: the concurrency cases need real
/// parallelism, and backends may spawn tasks (sweepers, pub/sub drivers) onto it.
#[doc(hidden)]
pub fn __run<F: Future>(case: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(case)
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Expands to one test per listed case of a module, each given a fresh backend.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    ($make:expr, $ty:ty, $module:ident; $($case:ident)*) => {$(
        #[test]
        fn $case() {
            $crate::state::__run(async {
                let backend: $ty = ($make).await;
                $crate::state::$module::$case(backend).await;
            });
        }
    )*};
}

/// The [`StateStore`] contract: one test per case of [`cases`].
#[macro_export]
macro_rules! state_contract_tests {
    (make = $make:expr) => {
        $crate::__contract_cases! {
            $make,
            ::std::sync::Arc<dyn $crate::state::__core::state::StateStore>,
            cases;
            ping_and_kind
            get_and_set_strings
            set_modes
            set_with_ttl_expires
            set_without_ttl_clears_an_earlier_expiry
            ttl_reports_missing_persistent_and_expiring
            expire_on_a_missing_key_is_false
            expire_removes_a_hash_after_its_ttl
            incrby_counts_and_refuses_non_integers
            del_counts_existing_keys_of_any_kind
            hash_fields_read_write_and_delete
            hset_writes_only_the_given_fields
            hsetnx_writes_only_absent_fields
            hincrby_counts_and_refuses_non_integers
            emptied_containers_vanish
            wrong_kind_of_value_is_wrong_type
            hcas_expected_absent_present_mismatch_and_delete
            zset_orders_by_score_then_member
            zrange_by_score_bounds_are_inclusive_with_limit
            zset_updates_rank_and_removal
            list_push_pop_and_negative_ranges
            ltrim_with_negative_indices
            lrem_from_head_tail_and_all
            sets_add_remove_and_members
            lock_is_held_by_its_owner_only
            lock_lease_expiry_lets_another_owner_in
            eval_runs_the_append_script_atomically
            eval_refuses_keys_of_different_hash_tags
            eval_reports_wrong_type
            concurrent_hincrby_loses_no_increment
            concurrent_eval_loses_no_message
        }
    };
}

/// The [`RouteTable`] contract, over a state store.
#[macro_export]
macro_rules! route_table_contract_tests {
    (make = $make:expr) => {
        $crate::__contract_cases! {
            $make,
            ::std::sync::Arc<dyn $crate::state::__core::state::StateStore>,
            route_cases;
            route_add_and_lookup
            route_remove_forgets_one_connection
            route_nodes_are_distinct
            route_entries_lapse_without_refresh
        }
    };
}

/// Node-id leasing over a state store.
#[macro_export]
macro_rules! node_lease_tests {
    (make = $make:expr) => {
        $crate::__contract_cases! {
            $make,
            ::std::sync::Arc<dyn $crate::state::__core::state::StateStore>,
            lease_cases;
            concurrent_leases_get_distinct_node_ids
            released_lease_can_be_taken_again
            stolen_lease_clears_validity_until_regained
        }
    };
}

/// SPEC §7: an old and a new definition of one object share its hash.
#[macro_export]
macro_rules! schema_evolution_tests {
    (make = $make:expr) => {
        $crate::__contract_cases! {
            $make,
            ::std::sync::Arc<dyn $crate::state::__core::state::StateStore>,
            schema_cases;
            new_reader_fills_defaults_for_old_objects
            old_reader_ignores_new_fields
            old_writer_keeps_new_fields
            old_writer_of_changes_keeps_new_fields
            new_writer_writes_every_field
            narrow_reader_reads_only_its_fields
        }
    };
}

/// The [`PubSub`](frontdesk_core::pubsub::PubSub) contract.
#[macro_export]
macro_rules! pubsub_contract_tests {
    (make = $make:expr) => {
        $crate::__contract_cases! {
            $make,
            ::std::sync::Arc<dyn $crate::state::__core::pubsub::PubSub>,
            pubsub_cases;
            publish_reaches_every_subscriber_of_its_channel_only
            order_from_one_publisher_is_kept
            dropping_a_subscription_unsubscribes
            subscriber_sees_only_messages_after_subscribing
            many_channels_stay_apart
            slow_subscriber_does_not_block_publisher
        }
    };
}

/// The [`StateStore`](frontdesk_core::state::StateStore) cases.
pub mod cases {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use frontdesk_core::error::{BackendError, BackendResult};
    use frontdesk_core::state::{Script, ScriptTx, ScriptValue, SetMode, StateStore, Ttl};

    use super::eventually;

    type State = Arc<dyn StateStore>;

    const SHORT: Duration = Duration::from_millis(200);
    const PATIENCE: Duration = Duration::from_secs(3);

    /// A sample atomic step, as the chat module writes them: bump the chat's sequence and
    /// index the message by it, returning the new sequence. KEYS: meta hash, message zset;
    /// ARGV: message id.
    pub static APPEND_MESSAGE: Script = Script {
        name: "testkit_append_message",
        lua: r"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], seq, ARGV[1])
return seq
",
        local: append_message_local,
    };

    fn append_message_local(tx: &mut dyn ScriptTx, keys: &[String], args: &[String]) -> BackendResult<ScriptValue> {
        let missing = || BackendError::other("script", "append_message needs 2 keys and 1 arg");
        let (meta, msgs) = (keys.first().ok_or_else(missing)?, keys.get(1).ok_or_else(missing)?);
        let id = args.first().ok_or_else(missing)?;
        let seq = tx.hincrby(meta, "seq", 1)?;
        tx.zadd(msgs, &[(seq as f64, id)])?;
        Ok(ScriptValue::Int(seq))
    }

    const META: &str = "{c:1}:meta";
    const MSGS: &str = "{c:1}:msgs";

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn is_wrong_type<T: std::fmt::Debug>(r: BackendResult<T>) -> bool {
        matches!(r, Err(BackendError::WrongType { .. }))
    }

    fn is_other<T: std::fmt::Debug>(r: BackendResult<T>) -> bool {
        matches!(r, Err(BackendError::Other { .. }))
    }

    pub async fn ping_and_kind(s: State) {
        s.ping().await.expect("ping");
        assert!(["memory", "redis"].contains(&s.kind()), "unknown kind {}", s.kind());
    }

    pub async fn get_and_set_strings(s: State) {
        assert_eq!(s.get("k").await.expect("get"), None);
        assert!(s.set("k", "v1", SetMode::Always, None).await.expect("set"));
        assert_eq!(s.get("k").await.expect("get").as_deref(), Some("v1"));
        assert!(s.set("k", "v2", SetMode::Always, None).await.expect("set"));
        assert_eq!(s.get("k").await.expect("get").as_deref(), Some("v2"));
        assert!(s.exists("k").await.expect("exists"));
        assert!(!s.exists("other").await.expect("exists"));
        // Values are opaque text, JSON included.
        let json = r#"{"a":[1,"x y"],"é":null}"#;
        s.set("j", json, SetMode::Always, None).await.expect("set");
        assert_eq!(s.get("j").await.expect("get").as_deref(), Some(json));
    }

    pub async fn set_modes(s: State) {
        assert!(!s.set("k", "x", SetMode::IfPresent, None).await.expect("set xx"));
        assert_eq!(s.get("k").await.expect("get"), None);
        assert!(s.set("k", "a", SetMode::IfAbsent, None).await.expect("set nx"));
        assert!(!s.set("k", "b", SetMode::IfAbsent, None).await.expect("set nx"));
        assert_eq!(s.get("k").await.expect("get").as_deref(), Some("a"));
        assert!(s.set("k", "c", SetMode::IfPresent, None).await.expect("set xx"));
        assert_eq!(s.get("k").await.expect("get").as_deref(), Some("c"));
        // NX looks at any kind of value, as Redis does.
        s.hset("h", &[("f", "v")]).await.expect("hset");
        assert!(!s.set("h", "x", SetMode::IfAbsent, None).await.expect("set nx"));
    }

    pub async fn set_with_ttl_expires(s: State) {
        assert!(s.set("k", "v", SetMode::Always, Some(SHORT)).await.expect("set"));
        assert_eq!(s.get("k").await.expect("get").as_deref(), Some("v"));
        let gone = eventually(PATIENCE, || async { s.get("k").await.expect("get").is_none() }).await;
        assert!(gone, "a key with a 200 ms TTL was still there after 3 s");
        assert!(!s.exists("k").await.expect("exists"));
        assert_eq!(s.ttl("k").await.expect("ttl"), Ttl::Missing);
        // An expired key is absent for NX too.
        assert!(s.set("k", "again", SetMode::IfAbsent, None).await.expect("set nx"));
    }

    pub async fn set_without_ttl_clears_an_earlier_expiry(s: State) {
        s.set("k", "v", SetMode::Always, Some(SHORT)).await.expect("set");
        s.set("k", "w", SetMode::Always, None).await.expect("set");
        assert_eq!(s.ttl("k").await.expect("ttl"), Ttl::Persistent);
        tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
        assert_eq!(s.get("k").await.expect("get").as_deref(), Some("w"));
    }

    pub async fn ttl_reports_missing_persistent_and_expiring(s: State) {
        assert_eq!(s.ttl("nothing").await.expect("ttl"), Ttl::Missing);
        s.set("p", "v", SetMode::Always, None).await.expect("set");
        assert_eq!(s.ttl("p").await.expect("ttl"), Ttl::Persistent);
        s.set("e", "v", SetMode::Always, Some(Duration::from_secs(10))).await.expect("set");
        match s.ttl("e").await.expect("ttl") {
            Ttl::Expires(left) => {
                assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(8), "{left:?}")
            }
            other => panic!("expected an expiry, got {other:?}"),
        }
        assert!(s.expire("p", Duration::from_millis(1500)).await.expect("expire"));
        match s.ttl("p").await.expect("ttl") {
            Ttl::Expires(left) => assert!(left <= Duration::from_millis(1500), "{left:?}"),
            other => panic!("expected an expiry, got {other:?}"),
        }
    }

    pub async fn expire_on_a_missing_key_is_false(s: State) {
        assert!(!s.expire("nothing", SHORT).await.expect("expire"));
        assert!(!s.exists("nothing").await.expect("exists"));
    }

    pub async fn expire_removes_a_hash_after_its_ttl(s: State) {
        s.hset("h", &[("a", "1"), ("b", "2")]).await.expect("hset");
        assert!(s.expire("h", SHORT).await.expect("expire"));
        assert_eq!(s.hget("h", "a").await.expect("hget").as_deref(), Some("1"));
        let gone = eventually(PATIENCE, || async { s.hgetall("h").await.expect("hgetall").is_empty() }).await;
        assert!(gone, "an expired hash kept its fields");
        assert!(!s.exists("h").await.expect("exists"));
        // A hash written after expiry starts empty, not with the old fields.
        s.hset("h", &[("c", "3")]).await.expect("hset");
        assert_eq!(s.hgetall("h").await.expect("hgetall"), vec![("c".to_owned(), "3".to_owned())]);
    }

    pub async fn incrby_counts_and_refuses_non_integers(s: State) {
        assert_eq!(s.incrby("n", 5).await.expect("incrby"), 5);
        assert_eq!(s.incrby("n", -7).await.expect("incrby"), -2);
        assert_eq!(s.get("n").await.expect("get").as_deref(), Some("-2"));
        s.set("text", "abc", SetMode::Always, None).await.expect("set");
        assert!(is_other(s.incrby("text", 1).await), "INCRBY on text must be an error");
        assert_eq!(s.get("text").await.expect("get").as_deref(), Some("abc"));
        s.set("big", &i64::MAX.to_string(), SetMode::Always, None).await.expect("set");
        assert!(is_other(s.incrby("big", 1).await), "overflow must be an error");
        // INCRBY keeps an expiry.
        s.set("t", "1", SetMode::Always, Some(Duration::from_secs(10))).await.expect("set");
        s.incrby("t", 1).await.expect("incrby");
        assert!(matches!(s.ttl("t").await.expect("ttl"), Ttl::Expires(_)));
    }

    pub async fn del_counts_existing_keys_of_any_kind(s: State) {
        s.set("a", "1", SetMode::Always, None).await.expect("set");
        s.hset("b", &[("f", "v")]).await.expect("hset");
        s.rpush("c", &["x"]).await.expect("rpush");
        s.zadd("d", &[(1.0, "m")]).await.expect("zadd");
        s.sadd("e", &["m"]).await.expect("sadd");
        assert_eq!(s.del(&["a", "b", "c", "d", "e", "missing"]).await.expect("del"), 5);
        for key in ["a", "b", "c", "d", "e"] {
            assert!(!s.exists(key).await.expect("exists"), "{key} survived del");
        }
        assert_eq!(s.del(&["a"]).await.expect("del"), 0);
        assert_eq!(s.del(&[]).await.expect("del"), 0);
    }

    pub async fn hash_fields_read_write_and_delete(s: State) {
        assert_eq!(s.hget("h", "a").await.expect("hget"), None);
        assert!(s.hgetall("h").await.expect("hgetall").is_empty());
        s.hset("h", &[("a", "1"), ("b", "2")]).await.expect("hset");
        assert!(s.exists("h").await.expect("exists"));
        assert_eq!(s.hget("h", "a").await.expect("hget").as_deref(), Some("1"));
        assert_eq!(s.hget("h", "zz").await.expect("hget"), None);
        assert_eq!(
            s.hmget("h", &["b", "zz", "a"]).await.expect("hmget"),
            vec![Some("2".to_owned()), None, Some("1".to_owned())]
        );
        assert_eq!(s.hmget("missing", &["a"]).await.expect("hmget"), vec![None]);
        let mut all = s.hgetall("h").await.expect("hgetall");
        all.sort();
        assert_eq!(all, vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        assert_eq!(s.hdel("h", &["a", "zz"]).await.expect("hdel"), 1);
        assert_eq!(s.hget("h", "a").await.expect("hget"), None);
        assert_eq!(s.hdel("missing", &["a"]).await.expect("hdel"), 0);
    }

    pub async fn hset_writes_only_the_given_fields(s: State) {
        s.hset("h", &[("a", "1"), ("b", "2")]).await.expect("hset");
        s.hset("h", &[("b", "3"), ("c", "4")]).await.expect("hset");
        let mut all = s.hgetall("h").await.expect("hgetall");
        all.sort();
        let want: Vec<(String, String)> =
            [("a", "1"), ("b", "3"), ("c", "4")].iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        assert_eq!(all, want);
    }

    pub async fn hsetnx_writes_only_absent_fields(s: State) {
        assert!(s.hsetnx("h", "a", "1").await.expect("hsetnx"));
        assert!(!s.hsetnx("h", "a", "2").await.expect("hsetnx"));
        assert_eq!(s.hget("h", "a").await.expect("hget").as_deref(), Some("1"));
    }

    pub async fn hincrby_counts_and_refuses_non_integers(s: State) {
        assert_eq!(s.hincrby("h", "n", 2).await.expect("hincrby"), 2);
        assert_eq!(s.hincrby("h", "n", 3).await.expect("hincrby"), 5);
        assert_eq!(s.hincrby("h", "n", -10).await.expect("hincrby"), -5);
        assert_eq!(s.hget("h", "n").await.expect("hget").as_deref(), Some("-5"));
        s.hset("h", &[("t", "x1")]).await.expect("hset");
        assert!(is_other(s.hincrby("h", "t", 1).await), "HINCRBY on text must be an error");
        assert_eq!(s.hget("h", "t").await.expect("hget").as_deref(), Some("x1"));
    }

    pub async fn emptied_containers_vanish(s: State) {
        s.hset("h", &[("a", "1")]).await.expect("hset");
        s.hdel("h", &["a"]).await.expect("hdel");
        s.zadd("z1", &[(1.0, "a")]).await.expect("zadd");
        s.zrem("z1", &["a"]).await.expect("zrem");
        s.zadd("z2", &[(1.0, "a"), (2.0, "b")]).await.expect("zadd");
        assert_eq!(s.zremrange_by_score("z2", 0.0, 5.0).await.expect("zremrange"), 2);
        s.rpush("l1", &["a", "b"]).await.expect("rpush");
        s.lpop("l1", 5).await.expect("lpop");
        s.rpush("l2", &["a", "b"]).await.expect("rpush");
        s.ltrim("l2", 5, 10).await.expect("ltrim");
        s.rpush("l3", &["a", "a"]).await.expect("rpush");
        s.lrem("l3", 0, "a").await.expect("lrem");
        s.sadd("s", &["a"]).await.expect("sadd");
        s.srem("s", &["a"]).await.expect("srem");
        for key in ["h", "z1", "z2", "l1", "l2", "l3", "s"] {
            assert!(!s.exists(key).await.expect("exists"), "emptied {key} still exists");
            assert_eq!(s.ttl(key).await.expect("ttl"), Ttl::Missing);
        }
        // A vanished key can be reused as another kind.
        s.set("h", "now a string", SetMode::Always, None).await.expect("set");
        assert_eq!(s.get("h").await.expect("get").as_deref(), Some("now a string"));
    }

    pub async fn wrong_kind_of_value_is_wrong_type(s: State) {
        s.set("str", "v", SetMode::Always, None).await.expect("set");
        assert!(is_wrong_type(s.hget("str", "f").await));
        assert!(is_wrong_type(s.hgetall("str").await));
        assert!(is_wrong_type(s.hset("str", &[("f", "v")]).await));
        assert!(is_wrong_type(s.hincrby("str", "f", 1).await));
        assert!(is_wrong_type(s.zadd("str", &[(1.0, "m")]).await));
        assert!(is_wrong_type(s.zrange_by_score("str", 0.0, 1.0, None).await));
        assert!(is_wrong_type(s.rpush("str", &["x"]).await));
        assert!(is_wrong_type(s.lrange("str", 0, -1).await));
        assert!(is_wrong_type(s.sadd("str", &["x"]).await));
        assert!(is_wrong_type(s.smembers("str").await));
        s.hset("hash", &[("f", "v")]).await.expect("hset");
        assert!(is_wrong_type(s.get("hash").await));
        assert!(is_wrong_type(s.incrby("hash", 1).await));
        assert!(is_wrong_type(s.llen("hash").await));
        assert!(is_wrong_type(s.scard("hash").await));
        assert!(is_wrong_type(s.zcard("hash").await));
        assert!(is_wrong_type(s.lock_renew("hash", "me", Duration::from_secs(1)).await));
        // The failed calls changed nothing.
        assert_eq!(s.get("str").await.expect("get").as_deref(), Some("v"));
        assert_eq!(s.hget("hash", "f").await.expect("hget").as_deref(), Some("v"));
        // SET replaces a value of any kind.
        assert!(s.set("hash", "s", SetMode::Always, None).await.expect("set"));
        assert_eq!(s.get("hash").await.expect("get").as_deref(), Some("s"));
    }

    pub async fn hcas_expected_absent_present_mismatch_and_delete(s: State) {
        assert!(!s.hcas("h", "f", Some("x"), Some("y")).await.expect("hcas"), "cas on a missing key");
        assert!(!s.exists("h").await.expect("exists"));
        assert!(s.hcas("h", "f", None, Some("1")).await.expect("hcas"), "expected absent, was absent");
        assert_eq!(s.hget("h", "f").await.expect("hget").as_deref(), Some("1"));
        assert!(!s.hcas("h", "f", None, Some("9")).await.expect("hcas"), "expected absent, was present");
        assert!(!s.hcas("h", "f", Some("2"), Some("9")).await.expect("hcas"), "mismatch");
        assert_eq!(s.hget("h", "f").await.expect("hget").as_deref(), Some("1"));
        assert!(s.hcas("h", "f", Some("1"), Some("2")).await.expect("hcas"), "match");
        assert_eq!(s.hget("h", "f").await.expect("hget").as_deref(), Some("2"));
        // Empty text is a value, not absence.
        assert!(!s.hcas("h", "f", Some(""), Some("3")).await.expect("hcas"));
        assert!(s.hcas("h", "f", Some("2"), None).await.expect("hcas"), "delete on match");
        assert_eq!(s.hget("h", "f").await.expect("hget"), None);
        assert!(!s.exists("h").await.expect("exists"), "the only field was deleted");
        s.set("str", "v", SetMode::Always, None).await.expect("set");
        assert!(is_wrong_type(s.hcas("str", "f", None, Some("1")).await));
    }

    pub async fn zset_orders_by_score_then_member(s: State) {
        let added = s.zadd("z", &[(2.0, "b"), (1.0, "z"), (1.0, "a"), (3.5, "c"), (-1.0, "neg")]).await;
        assert_eq!(added.expect("zadd"), 5);
        let all = s.zrange_by_score("z", f64::NEG_INFINITY, f64::INFINITY, None).await.expect("zrange");
        let want = vec![
            ("neg".to_owned(), -1.0),
            ("a".to_owned(), 1.0),
            ("z".to_owned(), 1.0),
            ("b".to_owned(), 2.0),
            ("c".to_owned(), 3.5),
        ];
        assert_eq!(all, want);
        // Re-adding moves a member without counting it as new.
        assert_eq!(s.zadd("z", &[(0.5, "c"), (9.0, "d")]).await.expect("zadd"), 1);
        let members: Vec<String> = s
            .zrange_by_score("z", f64::NEG_INFINITY, f64::INFINITY, None)
            .await
            .expect("zrange")
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(members, strings(&["neg", "c", "a", "z", "b", "d"]));
        assert_eq!(s.zcard("z").await.expect("zcard"), 6);
    }

    pub async fn zrange_by_score_bounds_are_inclusive_with_limit(s: State) {
        let names: Vec<String> = (1..=10).map(|i| format!("m{i:02}")).collect();
        let members: Vec<(f64, &str)> = names.iter().enumerate().map(|(i, n)| ((i + 1) as f64, n.as_str())).collect();
        s.zadd("z", &members).await.expect("zadd");
        let got = |r: Vec<(String, f64)>| r.into_iter().map(|(m, _)| m).collect::<Vec<_>>();
        assert_eq!(
            got(s.zrange_by_score("z", 3.0, 6.0, None).await.expect("zrange")),
            strings(&["m03", "m04", "m05", "m06"])
        );
        assert_eq!(
            got(s.zrange_by_score("z", 3.0, 6.0, Some((1, 2))).await.expect("zrange")),
            strings(&["m04", "m05"])
        );
        assert_eq!(
            got(s.zrange_by_score("z", 9.0, f64::INFINITY, Some((0, 100))).await.expect("zrange")),
            strings(&["m09", "m10"])
        );
        assert!(s.zrange_by_score("z", 3.0, 6.0, Some((0, 0))).await.expect("zrange").is_empty());
        assert!(s.zrange_by_score("z", 3.0, 6.0, Some((10, 5))).await.expect("zrange").is_empty());
        assert!(s.zrange_by_score("z", 6.0, 3.0, None).await.expect("zrange").is_empty());
        assert!(s.zrange_by_score("z", 3.5, 3.9, None).await.expect("zrange").is_empty());
        assert!(s.zrange_by_score("missing", 0.0, 10.0, None).await.expect("zrange").is_empty());
        s.zadd("f", &[(1.25, "x")]).await.expect("zadd");
        assert_eq!(s.zrange_by_score("f", 1.25, 1.25, None).await.expect("zrange"), vec![("x".to_owned(), 1.25)]);
    }

    pub async fn zset_updates_rank_and_removal(s: State) {
        s.zadd("z", &[(10.0, "a"), (20.0, "b"), (30.0, "c"), (40.0, "d")]).await.expect("zadd");
        assert_eq!(s.zscore("z", "b").await.expect("zscore"), Some(20.0));
        assert_eq!(s.zscore("z", "nope").await.expect("zscore"), None);
        assert_eq!(s.zscore("missing", "a").await.expect("zscore"), None);
        assert_eq!(s.zrank("z", "a").await.expect("zrank"), Some(0));
        assert_eq!(s.zrank("z", "c").await.expect("zrank"), Some(2));
        assert_eq!(s.zrank("z", "nope").await.expect("zrank"), None);
        assert_eq!(s.zrem("z", &["a", "nope"]).await.expect("zrem"), 1);
        assert_eq!(s.zrank("z", "c").await.expect("zrank"), Some(1));
        assert_eq!(s.zremrange_by_score("z", 20.0, 30.0).await.expect("zremrange"), 2);
        assert_eq!(s.zcard("z").await.expect("zcard"), 1);
        assert_eq!(s.zcard("missing").await.expect("zcard"), 0);
        assert_eq!(s.zremrange_by_score("missing", 0.0, 1.0).await.expect("zremrange"), 0);
    }

    pub async fn list_push_pop_and_negative_ranges(s: State) {
        assert_eq!(s.rpush("l", &["a", "b", "c"]).await.expect("rpush"), 3);
        assert_eq!(s.rpush("l", &["d", "e"]).await.expect("rpush"), 5);
        assert_eq!(s.llen("l").await.expect("llen"), 5);
        assert_eq!(s.lrange("l", 0, -1).await.expect("lrange"), strings(&["a", "b", "c", "d", "e"]));
        assert_eq!(s.lrange("l", -2, -1).await.expect("lrange"), strings(&["d", "e"]));
        assert_eq!(s.lrange("l", 1, 2).await.expect("lrange"), strings(&["b", "c"]));
        assert_eq!(s.lrange("l", -100, 100).await.expect("lrange"), strings(&["a", "b", "c", "d", "e"]));
        assert_eq!(s.lrange("l", 0, -4).await.expect("lrange"), strings(&["a", "b"]));
        assert!(s.lrange("l", 3, 1).await.expect("lrange").is_empty());
        assert!(s.lrange("l", 10, 20).await.expect("lrange").is_empty());
        assert!(s.lrange("l", -1, -2).await.expect("lrange").is_empty());
        assert!(s.lrange("missing", 0, -1).await.expect("lrange").is_empty());
        assert_eq!(s.lpop("l", 2).await.expect("lpop"), strings(&["a", "b"]));
        assert_eq!(s.lpop("l", 10).await.expect("lpop"), strings(&["c", "d", "e"]));
        assert!(!s.exists("l").await.expect("exists"));
        assert!(s.lpop("l", 1).await.expect("lpop").is_empty());
        assert_eq!(s.llen("missing").await.expect("llen"), 0);
    }

    pub async fn ltrim_with_negative_indices(s: State) {
        s.rpush("l", &["1", "2", "3", "4", "5", "6"]).await.expect("rpush");
        s.ltrim("l", 1, -2).await.expect("ltrim");
        assert_eq!(s.lrange("l", 0, -1).await.expect("lrange"), strings(&["2", "3", "4", "5"]));
        s.ltrim("l", -3, -1).await.expect("ltrim");
        assert_eq!(s.lrange("l", 0, -1).await.expect("lrange"), strings(&["3", "4", "5"]));
        s.ltrim("l", 0, 100).await.expect("ltrim");
        assert_eq!(s.llen("l").await.expect("llen"), 3);
        s.ltrim("l", 2, 1).await.expect("ltrim");
        assert!(!s.exists("l").await.expect("exists"));
        s.ltrim("missing", 0, 1).await.expect("ltrim on a missing key");
    }

    pub async fn lrem_from_head_tail_and_all(s: State) {
        s.rpush("l", &["a", "b", "a", "c", "a", "b", "a"]).await.expect("rpush");
        assert_eq!(s.lrem("l", 2, "a").await.expect("lrem"), 2);
        assert_eq!(s.lrange("l", 0, -1).await.expect("lrange"), strings(&["b", "c", "a", "b", "a"]));
        assert_eq!(s.lrem("l", -1, "a").await.expect("lrem"), 1);
        assert_eq!(s.lrange("l", 0, -1).await.expect("lrange"), strings(&["b", "c", "a", "b"]));
        assert_eq!(s.lrem("l", 0, "b").await.expect("lrem"), 2);
        assert_eq!(s.lrange("l", 0, -1).await.expect("lrange"), strings(&["c", "a"]));
        assert_eq!(s.lrem("l", 0, "zz").await.expect("lrem"), 0);
        assert_eq!(s.lrem("missing", 0, "a").await.expect("lrem"), 0);
    }

    pub async fn sets_add_remove_and_members(s: State) {
        assert_eq!(s.sadd("s", &["a", "b", "c"]).await.expect("sadd"), 3);
        assert_eq!(s.sadd("s", &["c", "d"]).await.expect("sadd"), 1);
        assert_eq!(s.srem("s", &["a", "zz"]).await.expect("srem"), 1);
        assert_eq!(sorted(s.smembers("s").await.expect("smembers")), strings(&["b", "c", "d"]));
        assert!(s.sismember("s", "b").await.expect("sismember"));
        assert!(!s.sismember("s", "a").await.expect("sismember"));
        assert_eq!(s.scard("s").await.expect("scard"), 3);
        assert!(s.smembers("missing").await.expect("smembers").is_empty());
        assert_eq!(s.scard("missing").await.expect("scard"), 0);
        assert!(!s.sismember("missing", "a").await.expect("sismember"));
    }

    pub async fn lock_is_held_by_its_owner_only(s: State) {
        let lease = Duration::from_secs(10);
        assert!(!s.lock_renew("lock", "a", lease).await.expect("renew"), "renew of a free lock");
        assert!(!s.lock_release("lock", "a").await.expect("release"), "release of a free lock");
        assert!(s.lock_acquire("lock", "a", lease).await.expect("acquire"));
        assert!(!s.lock_acquire("lock", "b", lease).await.expect("acquire"));
        assert!(!s.lock_acquire("lock", "a", lease).await.expect("acquire"), "not reentrant");
        assert!(!s.lock_renew("lock", "b", lease).await.expect("renew"));
        assert!(s.lock_renew("lock", "a", lease).await.expect("renew"));
        assert!(!s.lock_release("lock", "b").await.expect("release"));
        assert!(s.exists("lock").await.expect("exists"), "a stranger released the lock");
        assert!(s.lock_release("lock", "a").await.expect("release"));
        assert!(s.lock_acquire("lock", "b", lease).await.expect("acquire"));
    }

    pub async fn lock_lease_expiry_lets_another_owner_in(s: State) {
        let lease = Duration::from_millis(600);
        assert!(s.lock_acquire("lock", "a", lease).await.expect("acquire"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s.lock_renew("lock", "a", lease).await.expect("renew"));
        // Past the first lease, still inside the renewed one.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(!s.lock_acquire("lock", "b", lease).await.expect("acquire"), "renewal did not extend");
        let taken = eventually(PATIENCE, || async { s.lock_acquire("lock", "b", lease).await.expect("acquire") }).await;
        assert!(taken, "a lapsed lease kept the lock");
        assert!(!s.lock_renew("lock", "a", lease).await.expect("renew"), "the old owner renewed");
        assert!(!s.lock_release("lock", "a").await.expect("release"), "the old owner released");
    }

    pub async fn eval_runs_the_append_script_atomically(s: State) {
        for (i, id) in ["m1", "m2", "m3"].iter().enumerate() {
            let seq = s.eval(&APPEND_MESSAGE, &[META, MSGS], &[id]).await.expect("eval");
            assert_eq!(seq, ScriptValue::Int(i as i64 + 1));
        }
        assert_eq!(s.hget(META, "seq").await.expect("hget").as_deref(), Some("3"));
        let msgs = s.zrange_by_score(MSGS, f64::NEG_INFINITY, f64::INFINITY, None).await.expect("zrange");
        let want = vec![("m1".to_owned(), 1.0), ("m2".to_owned(), 2.0), ("m3".to_owned(), 3.0)];
        assert_eq!(msgs, want);
    }

    pub async fn eval_refuses_keys_of_different_hash_tags(s: State) {
        let r = s.eval(&APPEND_MESSAGE, &["{c:1}:meta", "{c:2}:msgs"], &["m"]).await;
        assert!(matches!(r, Err(BackendError::CrossSlot(_))), "got {r:?}");
        assert!(!s.exists("{c:1}:meta").await.expect("exists"), "a refused script wrote");
        let r = s.eval(&APPEND_MESSAGE, &["plain:meta", "plain:msgs"], &["m"]).await;
        assert!(matches!(r, Err(BackendError::CrossSlot(_))), "untagged keys are separate slots: {r:?}");
    }

    pub async fn eval_reports_wrong_type(s: State) {
        s.set(META, "not a hash", SetMode::Always, None).await.expect("set");
        let r = s.eval(&APPEND_MESSAGE, &[META, MSGS], &["m"]).await;
        assert!(is_wrong_type(r), "expected WrongType");
        assert!(!s.exists(MSGS).await.expect("exists"));
    }

    pub async fn concurrent_hincrby_loses_no_increment(s: State) {
        const TASKS: usize = 16;
        const EACH: usize = 50;
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    for _ in 0..EACH {
                        s.hincrby("counter", "n", 1).await.expect("hincrby");
                        s.incrby("plain", 1).await.expect("incrby");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
        let total = (TASKS * EACH).to_string();
        assert_eq!(s.hget("counter", "n").await.expect("hget"), Some(total.clone()));
        assert_eq!(s.get("plain").await.expect("get"), Some(total));
    }

    pub async fn concurrent_eval_loses_no_message(s: State) {
        const TASKS: usize = 8;
        const EACH: usize = 25;
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EACH {
                        let id = format!("t{t}-{i}");
                        let seq = s.eval(&APPEND_MESSAGE, &[META, MSGS], &[&id]).await.expect("eval");
                        seqs.push(seq.as_int().expect("an integer seq"));
                    }
                    seqs
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for seq in h.await.expect("task") {
                assert!(seen.insert(seq), "seq {seq} handed out twice");
            }
        }
        let n = (TASKS * EACH) as i64;
        assert_eq!(seen, (1..=n).collect::<HashSet<_>>());
        assert_eq!(s.zcard(MSGS).await.expect("zcard"), n as u64);
    }
}

/// The [`RouteTable`](frontdesk_core::pubsub::RouteTable) cases.
pub mod route_cases {
    use std::sync::Arc;
    use std::time::Duration;

    use frontdesk_core::keys;
    use frontdesk_core::pubsub::{Route, RouteTable};
    use frontdesk_core::state::StateStore;

    use super::eventually;

    type State = Arc<dyn StateStore>;

    fn route(conn_id: &str, node_id: u16) -> Route {
        Route { conn_id: conn_id.to_owned(), node_id }
    }

    pub async fn route_add_and_lookup(s: State) {
        let routes = RouteTable::new(s, Duration::from_secs(30));
        assert!(routes.lookup("u1").await.expect("lookup").is_empty());
        routes.add("u1", "c2", 4).await.expect("add");
        routes.add("u1", "c1", 3).await.expect("add");
        routes.add("u2", "c9", 9).await.expect("add");
        assert_eq!(routes.lookup("u1").await.expect("lookup"), vec![route("c1", 3), route("c2", 4)]);
        // Adding again refreshes, and may move the connection.
        routes.add("u1", "c1", 5).await.expect("add");
        assert_eq!(routes.lookup("u1").await.expect("lookup"), vec![route("c1", 5), route("c2", 4)]);
        assert_eq!(routes.lookup("u2").await.expect("lookup"), vec![route("c9", 9)]);
    }

    pub async fn route_remove_forgets_one_connection(s: State) {
        let routes = RouteTable::new(s.clone(), Duration::from_secs(30));
        routes.add("u", "c1", 1).await.expect("add");
        routes.add("u", "c2", 2).await.expect("add");
        routes.remove("u", "c1").await.expect("remove");
        assert_eq!(routes.lookup("u").await.expect("lookup"), vec![route("c2", 2)]);
        routes.remove("u", "c2").await.expect("remove");
        assert!(routes.lookup("u").await.expect("lookup").is_empty());
        assert!(!s.exists(&keys::route("u")).await.expect("exists"), "an empty route table entry stayed");
        routes.remove("nobody", "c").await.expect("removing an unknown route");
    }

    pub async fn route_nodes_are_distinct(s: State) {
        let routes = RouteTable::new(s, Duration::from_secs(30));
        routes.add("u", "c1", 7).await.expect("add");
        routes.add("u", "c2", 3).await.expect("add");
        routes.add("u", "c3", 7).await.expect("add");
        assert_eq!(routes.nodes("u").await.expect("nodes"), vec![3, 7]);
        assert!(routes.nodes("nobody").await.expect("nodes").is_empty());
    }

    pub async fn route_entries_lapse_without_refresh(s: State) {
        let routes = RouteTable::new(s.clone(), Duration::from_millis(300));
        routes.add("u", "c1", 1).await.expect("add");
        assert_eq!(routes.lookup("u").await.expect("lookup"), vec![route("c1", 1)]);
        let lapsed =
            eventually(Duration::from_secs(3), || async { routes.lookup("u").await.expect("lookup").is_empty() }).await;
        assert!(lapsed, "a route outlived its lease");
        let cleaned =
            eventually(Duration::from_secs(3), || async { !s.exists(&keys::route("u")).await.expect("exists") }).await;
        assert!(cleaned, "a lapsed user's routes stayed in the store");
    }
}

/// Node-id leasing cases ([`NodeLease`](frontdesk_core::lease::NodeLease)).
pub mod lease_cases {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use frontdesk_core::keys;
    use frontdesk_core::lease::NodeLease;
    use frontdesk_core::state::{SetMode, StateStore};

    use super::eventually;

    type State = Arc<dyn StateStore>;

    async fn lease(s: &State, owner: &str, lease: Duration) -> (NodeLease, Arc<AtomicBool>) {
        let valid = Arc::new(AtomicBool::new(false));
        let held = NodeLease::acquire(s.clone(), owner.to_owned(), lease, valid.clone()).await.expect("acquire");
        assert!(valid.load(Ordering::Acquire), "a fresh lease is valid");
        (held, valid)
    }

    pub async fn concurrent_leases_get_distinct_node_ids(s: State) {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { lease(&s, &format!("owner-{i}"), Duration::from_secs(10)).await.0 })
            })
            .collect();
        let mut leases = Vec::new();
        for h in handles {
            leases.push(h.await.expect("task"));
        }
        let ids: HashSet<u16> = leases.iter().map(NodeLease::node_id).collect();
        assert_eq!(ids.len(), 50, "two owners got the same node id");
        for l in leases {
            l.release().await.expect("release");
        }
    }

    pub async fn released_lease_can_be_taken_again(s: State) {
        let (held, _valid) = lease(&s, "first", Duration::from_secs(10)).await;
        let key = keys::node_lease(held.node_id());
        assert!(!s.lock_acquire(&key, "second", Duration::from_secs(10)).await.expect("acquire"));
        held.release().await.expect("release");
        assert!(s.lock_acquire(&key, "second", Duration::from_secs(10)).await.expect("acquire"));
    }

    pub async fn stolen_lease_clears_validity_until_regained(s: State) {
        let (held, valid) = lease(&s, "owner", Duration::from_millis(300)).await;
        let key = keys::node_lease(held.node_id());
        // Renewals keep it: wait past several leases.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(valid.load(Ordering::Acquire), "a renewed lease went invalid");
        // Another node takes the id, as if ours had lapsed while we could not renew.
        s.set(&key, "thief", SetMode::Always, Some(Duration::from_secs(10))).await.expect("set");
        let cleared = eventually(Duration::from_secs(3), || async { !valid.load(Ordering::Acquire) }).await;
        assert!(cleared, "the owner kept issuing ids after its lease was taken");
        s.del(&[&key]).await.expect("del");
        let regained = eventually(Duration::from_secs(3), || async { valid.load(Ordering::Acquire) }).await;
        assert!(regained, "the owner did not take its free id back");
        held.release().await.expect("release");
        assert!(!s.exists(&key).await.expect("exists"));
    }
}

/// SPEC §7 cases: an "old" and a "new" release's definition of one stored object.
pub mod schema_cases {
    use std::sync::Arc;

    use frontdesk_core::object;
    use frontdesk_core::state::StateStore;
    use serde::{Deserialize, Serialize};

    type State = Arc<dyn StateStore>;

    const KEY: &str = "{a:1}:agent";

    /// The object as the older release defines it.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OldAgent {
        pub id: u64,
        pub name: String,
        pub status: String,
    }

    /// The same object one additive release later.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct NewAgent {
        pub id: u64,
        pub name: String,
        pub status: String,
        #[serde(default = "default_priority")]
        pub priority: u32,
        #[serde(default)]
        pub tags: Vec<String>,
    }

    fn default_priority() -> u32 {
        5
    }

    fn old() -> OldAgent {
        OldAgent { id: 42, name: "Ada".into(), status: "online".into() }
    }

    fn new() -> NewAgent {
        NewAgent {
            id: 42,
            name: "Ada".into(),
            status: "online".into(),
            priority: 9,
            tags: vec!["vip".into(), "fr".into()],
        }
    }

    pub async fn new_reader_fills_defaults_for_old_objects(s: State) {
        object::save(&*s, KEY, &old()).await.expect("save");
        let read: NewAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        let want = NewAgent { priority: 5, tags: Vec::new(), ..new() };
        assert_eq!(read, want);
    }

    /// `load_fields`: a narrower view read with one `HMGET` of its fields equals the same
    /// view read from the whole hash; a missing object is `None`, not a default.
    pub async fn narrow_reader_reads_only_its_fields(s: State) {
        assert_eq!(object::load_fields::<OldAgent>(&*s, KEY, &["id", "name", "status"]).await.expect("load"), None);
        object::save(&*s, KEY, &new()).await.expect("save");
        let narrow: OldAgent =
            object::load_fields(&*s, KEY, &["id", "name", "status"]).await.expect("load").expect("present");
        assert_eq!(narrow, old());
        // Fields it does not ask for are not read (a missing one takes its default).
        let partial: NewAgent =
            object::load_fields(&*s, KEY, &["id", "name", "status", "missing"]).await.expect("load").expect("present");
        assert_eq!(partial, NewAgent { priority: 5, tags: Vec::new(), ..new() });
    }

    pub async fn old_reader_ignores_new_fields(s: State) {
        object::save(&*s, KEY, &new()).await.expect("save");
        let read: OldAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        assert_eq!(read, old());
    }

    pub async fn old_writer_keeps_new_fields(s: State) {
        object::save(&*s, KEY, &new()).await.expect("save");
        let mut o: OldAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        o.status = "away".into();
        object::save(&*s, KEY, &o).await.expect("save");
        let read: NewAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        assert_eq!(read, NewAgent { status: "away".into(), ..new() });
    }

    pub async fn old_writer_of_changes_keeps_new_fields(s: State) {
        object::save(&*s, KEY, &new()).await.expect("save");
        let before: OldAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        // Meanwhile a newer node changes a field the old node also knows.
        s.hset(KEY, &[("status", "busy")]).await.expect("hset");
        let after = OldAgent { name: "Ada L.".into(), ..before.clone() };
        object::save_changes(&*s, KEY, &before, &after).await.expect("save_changes");
        let read: NewAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        assert_eq!(read, NewAgent { name: "Ada L.".into(), status: "busy".into(), ..new() });
    }

    pub async fn new_writer_writes_every_field(s: State) {
        object::save(&*s, KEY, &old()).await.expect("save");
        object::save(&*s, KEY, &new()).await.expect("save");
        let mut fields = s.hgetall(KEY).await.expect("hgetall");
        fields.sort();
        let want: Vec<(String, String)> =
            [("id", "42"), ("name", "Ada"), ("priority", "9"), ("status", "online"), ("tags", r#"["vip","fr"]"#)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        assert_eq!(fields, want);
        let read: NewAgent = object::load(&*s, KEY).await.expect("load").expect("present");
        assert_eq!(read, new());
    }
}

/// The [`PubSub`](frontdesk_core::pubsub::PubSub) cases.
pub mod pubsub_cases {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use frontdesk_core::pubsub::{PubSub, Subscription};

    type Bus = Arc<dyn PubSub>;

    /// The next message, failing the test if none comes within 5 s.
    async fn next(sub: &mut Subscription) -> Bytes {
        tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("no message within 5 s")
            .expect("subscription closed")
    }

    async fn quiet(sub: &mut Subscription) -> bool {
        tokio::time::timeout(Duration::from_millis(200), sub.recv()).await.is_err()
    }

    pub async fn publish_reaches_every_subscriber_of_its_channel_only(bus: Bus) {
        let mut a1 = bus.subscribe("a").await.expect("subscribe");
        let mut a2 = bus.subscribe("a").await.expect("subscribe");
        let mut b = bus.subscribe("b").await.expect("subscribe");
        bus.publish("a", Bytes::from_static(b"to a")).await.expect("publish");
        assert_eq!(next(&mut a1).await, "to a");
        assert_eq!(next(&mut a2).await, "to a");
        assert!(quiet(&mut b).await, "a message for a reached b");
        bus.publish("b", Bytes::from_static(b"to b")).await.expect("publish");
        assert_eq!(next(&mut b).await, "to b");
        assert!(quiet(&mut a1).await, "a message for b reached a");
    }

    pub async fn order_from_one_publisher_is_kept(bus: Bus) {
        let mut sub = bus.subscribe("c").await.expect("subscribe");
        for i in 0..500u32 {
            bus.publish("c", Bytes::from(i.to_string())).await.expect("publish");
        }
        for i in 0..500u32 {
            assert_eq!(next(&mut sub).await, Bytes::from(i.to_string()));
        }
    }

    pub async fn dropping_a_subscription_unsubscribes(bus: Bus) {
        let first = bus.subscribe("c").await.expect("subscribe");
        drop(first);
        bus.publish("c", Bytes::from_static(b"nobody listens")).await.expect("publish to no one");
        let mut second = bus.subscribe("c").await.expect("subscribe again");
        let keep = bus.subscribe("c").await.expect("subscribe");
        drop(keep);
        bus.publish("c", Bytes::from_static(b"m")).await.expect("publish");
        assert_eq!(next(&mut second).await, "m");
        assert!(quiet(&mut second).await, "a dropped subscription left a duplicate behind");
    }

    pub async fn subscriber_sees_only_messages_after_subscribing(bus: Bus) {
        bus.publish("c", Bytes::from_static(b"before")).await.expect("publish");
        let mut sub = bus.subscribe("c").await.expect("subscribe");
        bus.publish("c", Bytes::from_static(b"after")).await.expect("publish");
        assert_eq!(next(&mut sub).await, "after");
    }

    pub async fn many_channels_stay_apart(bus: Bus) {
        let names: Vec<String> = (0..40).map(|i| format!("ch{i}")).collect();
        let mut subs = Vec::new();
        for name in &names {
            subs.push(bus.subscribe(name).await.expect("subscribe"));
        }
        for name in &names {
            bus.publish(name, Bytes::from(name.clone())).await.expect("publish");
        }
        for name in &names {
            bus.publish(name, Bytes::from_static(b"end")).await.expect("publish");
        }
        for (name, sub) in names.iter().zip(subs.iter_mut()) {
            assert_eq!(next(sub).await, Bytes::from(name.clone()), "on {name}");
            assert_eq!(next(sub).await, "end", "{name} received another channel's message");
        }
    }

    pub async fn slow_subscriber_does_not_block_publisher(bus: Bus) {
        const N: u32 = 3000;
        let mut slow = bus.subscribe("c").await.expect("subscribe");
        let mut fast = bus.subscribe("c").await.expect("subscribe");
        let reader = tokio::spawn(async move {
            let mut last = None;
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), fast.recv()).await {
                let n: u32 = std::str::from_utf8(&m).expect("utf-8").parse().expect("number");
                assert!(last.is_none_or(|l| n > l), "fast subscriber saw {n} after {last:?}");
                last = Some(n);
                if n == N - 1 {
                    break;
                }
            }
            last
        });
        let publishing = async {
            for i in 0..N {
                bus.publish("c", Bytes::from(i.to_string())).await.expect("publish");
            }
        };
        tokio::time::timeout(Duration::from_secs(20), publishing)
            .await
            .expect("a subscriber that never reads blocked the publisher");
        // The slow one kept what fitted in its buffer, in order, starting at the first.
        let mut got: Vec<u32> = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), slow.recv()).await {
            got.push(std::str::from_utf8(&m).expect("utf-8").parse().expect("number"));
        }
        assert_eq!(got.first(), Some(&0), "the slow subscriber lost the oldest messages");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "slow subscriber's messages out of order");
        assert!(got.len() < N as usize, "nothing was dropped: the test did not outrun the buffer");
        assert!(reader.await.expect("reader").is_some(), "the reading subscriber got nothing");
    }
}
