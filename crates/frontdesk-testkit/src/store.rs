//! Contract suite of the durable store port (`frontdesk_core::store::Store`): what every
//! backend (SQLite, PostgreSQL) must do, written once and run against each.
//!
//! ```ignore
//! frontdesk_testkit::store_contract_tests!(make = async { fresh_migrated_store().await });
//! ```
//!
//! `make` is an async expression evaluated once per test. It yields either an
//! `Arc<dyn Store>` or a [`StoreFixture`] (a store plus whatever must outlive it, such as
//! the temporary directory of a SQLite file), already migrated, on an empty database.
//! Each case is a public `async fn` in [`cases`], so a backend's own tests can call one
//! directly too.

use std::any::Any;
use std::sync::Arc;

use frontdesk_core::store::Store;

#[doc(hidden)]
pub use tokio as __tokio;

/// A store under test and what must stay alive as long as it does.
pub struct StoreFixture {
    // Declared first so it is dropped first: the store's connections close before the
    // guard (e.g. a temporary directory) goes.
    store: Arc<dyn Store>,
    _guard: Option<Box<dyn Any + Send>>,
}

impl StoreFixture {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, _guard: None }
    }

    /// Keeps `guard` alive until the fixture is dropped, after the store.
    pub fn with_guard(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Self { store, _guard: Some(Box::new(guard)) }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

impl From<Arc<dyn Store>> for StoreFixture {
    fn from(store: Arc<dyn Store>) -> Self {
        Self::new(store)
    }
}

/// Expands to one `#[tokio::test]` per case of [`cases`], each on a fresh store from `make`.
#[macro_export]
macro_rules! store_contract_tests {
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            // Multi-threaded so that the concurrency cases really race.
            #[$crate::store::__tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "frontdesk_testkit::store::__tokio"
            )]
            async fn $case() {
                let fixture: $crate::store::StoreFixture = ::core::convert::Into::into($make.await);
                $crate::store::cases::$case(fixture.store()).await;
            }
        )*
    };
    (make = $make:expr $(,)?) => {
        $crate::store_contract_tests!(@cases $make;
            migrate_is_idempotent_and_lists_versions,
            ping_answers_and_kind_is_named,
            sites_insert_read_and_count,
            duplicate_site_id_is_a_conflict,
            site_settings_and_domains_round_trip_as_json,
            unicode_names_round_trip,
            agent_inserted_reads_back_equal,
            duplicate_email_in_another_case_and_site_is_a_conflict,
            duplicate_agent_id_is_a_conflict,
            agent_of_a_missing_site_is_refused,
            agent_read_is_scoped_to_its_site,
            agent_by_email_ignores_case,
            agents_are_listed_per_site_only,
            secret_keeps_the_first_value,
            secret_race_gives_everybody_one_value,
            secrets_are_separate_per_site_and_name,
            // agents, departments, sessions
            departments_round_trip_with_members_of_their_site_only,
            department_names_are_unique_per_site,
            agent_updates_apply_and_the_last_admin_stays,
            agent_preferences_merge_per_agent,
            refresh_tokens_rotate_once_and_revoke_by_session,
            // end agents, departments, sessions
            // chats
            chat_membership_is_recorded_and_read_back,
            chat_members_are_idempotent_and_in_order,
            // end chats
            // history
            history_batches_replay_without_changes,
            history_older_snapshots_never_win,
            history_transcripts_follow_seq_and_stay_in_their_site,
            history_search_finds_one_word_within_its_site,
            history_filters_select_their_chats,
            history_pages_have_no_gaps_or_duplicates,
            history_a_rebuild_keeps_one_message_per_client_message_id,
            history_a_late_job_never_undoes_a_rebuilds_seq,
            history_merged_transcripts_do_not_depend_on_job_order,
            search_ranks_the_chat_most_about_the_words_first,
            search_finds_words_spread_over_a_chats_messages,
            search_finds_a_long_chat_once_by_its_first_and_last_words,
            search_ranking_ignores_replayed_batches,
            search_takes_one_batch_across_many_chats_and_a_repeated_message_once,
            search_pages_follow_relevance_without_gaps_or_repeats,
            // end history
            // reports, retention, privacy
            reports_figures_match_a_hand_computed_fixture,
            reports_agent_time_sums_each_status_within_the_range,
            retention_deletes_exactly_the_chats_past_their_time,
            retention_anonymises_text_and_keeps_the_counts,
            erase_removes_a_visitor_of_its_site_only,
            site_settings_merge_and_the_audit_log_pages,
            // end reports, retention, privacy
            // offline messages
            offline_messages_replay_without_changes_and_page_newest_first,
            offline_messages_are_marked_handled_within_their_site,
            offline_messages_are_erased_per_visitor_and_swept_by_retention,
            // end offline messages
        );
    };
    ($make:expr $(,)?) => {
        $crate::store_contract_tests!(make = $make);
    };
}

/// The cases of the suite. Each takes a fresh, migrated, empty store and panics on failure.
pub mod cases {
    use std::collections::HashSet;
    use std::sync::Arc;

    use frontdesk_core::error::BackendError;
    use frontdesk_core::id::{Id, IdGenerator};
    use frontdesk_core::store::{Agent, Role, SecretRef, Site, Store};
    use serde_json::json;
    use tokio::sync::Barrier;
    use tokio::task::JoinSet;

    const CREATED_AT: i64 = 1_767_225_600_000;

    fn ids() -> IdGenerator {
        IdGenerator::new(1).expect("node 1 is in range")
    }

    fn site(id: Id, name: &str) -> Site {
        Site {
            id,
            name: name.to_owned(),
            allowed_domains: vec!["example.com".to_owned()],
            settings: json!({ "autoAccept": false }),
            created_at: CREATED_AT,
        }
    }

    fn agent(id: Id, site_id: Id, email: &str) -> Agent {
        Agent {
            id,
            site_id,
            email: email.to_owned(),
            name: format!("Agent {id}"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned(),
            role: Role::Agent,
            max_chats: 5,
            priority: 0,
            created_at: CREATED_AT,
        }
    }

    /// Two sites, stored.
    async fn two_sites(store: &dyn Store, ids: &IdGenerator) -> (Site, Site) {
        let a = site(ids.next().expect("id"), "Site A");
        let b = site(ids.next().expect("id"), "Site B");
        store.insert_site(&a).await.expect("insert site A");
        store.insert_site(&b).await.expect("insert site B");
        (a, b)
    }

    fn assert_conflict(result: Result<(), BackendError>, mentions: &str) {
        match result {
            Err(BackendError::Conflict(msg)) => {
                assert!(msg.contains(mentions), "conflict message {msg:?} should mention {mentions:?}")
            }
            other => panic!("expected a Conflict mentioning {mentions:?}, got {other:?}"),
        }
    }

    pub async fn migrate_is_idempotent_and_lists_versions(store: Arc<dyn Store>) {
        let applied = store.applied_migrations().await.expect("applied migrations");
        assert!(applied.contains(&1), "the initial migration is recorded: {applied:?}");
        assert!(applied.windows(2).all(|w| w[0] < w[1]), "ascending and unique: {applied:?}");

        assert_eq!(store.migrate().await.expect("second migrate"), Vec::<i64>::new());
        assert_eq!(store.migrate().await.expect("third migrate"), Vec::<i64>::new());
        assert_eq!(store.applied_migrations().await.expect("applied again"), applied);
    }

    pub async fn ping_answers_and_kind_is_named(store: Arc<dyn Store>) {
        store.ping().await.expect("ping");
        assert!(matches!(store.kind(), "sqlite" | "postgres"), "kind {:?}", store.kind());
    }

    pub async fn sites_insert_read_and_count(store: Arc<dyn Store>) {
        let ids = ids();
        assert_eq!(store.site_count().await.expect("count"), 0);
        let (a, b) = two_sites(&*store, &ids).await;
        assert_eq!(store.site_count().await.expect("count"), 2);
        assert_eq!(store.site(a.id).await.expect("read A"), Some(a));
        assert_eq!(store.site(b.id).await.expect("read B"), Some(b));
        assert_eq!(store.site(ids.next().expect("id")).await.expect("read missing"), None);
    }

    pub async fn duplicate_site_id_is_a_conflict(store: Arc<dyn Store>) {
        let s = site(ids().next().expect("id"), "First");
        store.insert_site(&s).await.expect("insert");
        let again = Site { name: "Second".into(), ..s.clone() };
        assert_conflict(store.insert_site(&again).await, &s.id.to_string());
        assert_eq!(store.site(s.id).await.expect("read"), Some(s), "the first site is untouched");
    }

    pub async fn site_settings_and_domains_round_trip_as_json(store: Arc<dyn Store>) {
        let ids = ids();
        let s = Site {
            id: ids.next().expect("id"),
            name: "Settings".into(),
            allowed_domains: vec!["example.com".into(), "*.shop.example".into(), "bücher.example".into()],
            settings: json!({
                "businessHours": { "tz": "Europe/Berlin", "days": [1, 2, 3, 4, 5], "open": "09:00" },
                "maxQueue": 25,
                "autoAccept": true,
                "offlineForm": { "enabled": false, "fields": ["name", "email"] },
                "greeting": "Hallo \"Welt\" \\ 👋",
                "ratio": 0.5,
                "nothing": null,
                "big": 9_007_199_254_740_993u64,
            }),
            created_at: CREATED_AT,
        };
        store.insert_site(&s).await.expect("insert");
        assert_eq!(store.site(s.id).await.expect("read"), Some(s));

        let empty =
            Site { id: ids.next().expect("id"), allowed_domains: vec![], settings: json!({}), ..site(Id(0), "Empty") };
        store.insert_site(&empty).await.expect("insert empty");
        assert_eq!(store.site(empty.id).await.expect("read empty"), Some(empty));
    }

    pub async fn unicode_names_round_trip(store: Arc<dyn Store>) {
        let ids = ids();
        let s = site(ids.next().expect("id"), "Café Zürich — 東京支店 🚀");
        store.insert_site(&s).await.expect("insert site");
        let a = Agent {
            name: "Zoë Ångström-李雷 𝔘".into(), ..agent(ids.next().expect("id"), s.id, "zoe@example.com")
        };
        store.insert_agent(&a).await.expect("insert agent");
        assert_eq!(store.site(s.id).await.expect("read site").map(|s| s.name), Some(s.name));
        assert_eq!(store.agent(s.id, a.id).await.expect("read agent").map(|a| a.name), Some(a.name));
    }

    pub async fn agent_inserted_reads_back_equal(store: Arc<dyn Store>) {
        let ids = ids();
        let (s, _) = two_sites(&*store, &ids).await;
        let a = Agent {
            role: Role::Supervisor,
            max_chats: 12,
            priority: -3,
            ..agent(ids.next().expect("id"), s.id, "Mixed.Case@Example.com")
        };
        store.insert_agent(&a).await.expect("insert");
        let read = store.agent(s.id, a.id).await.expect("read");
        assert_eq!(read.as_ref().map(|a| a.email.as_str()), Some("Mixed.Case@Example.com"), "email kept as typed");
        assert_eq!(read, Some(a));
    }

    pub async fn duplicate_email_in_another_case_and_site_is_a_conflict(store: Arc<dyn Store>) {
        let ids = ids();
        let (a_site, b_site) = two_sites(&*store, &ids).await;
        store.insert_agent(&agent(ids.next().expect("id"), a_site.id, "ann@example.com")).await.expect("first");

        let same_site = agent(ids.next().expect("id"), a_site.id, "ann@example.com");
        assert_conflict(store.insert_agent(&same_site).await, "ann@example.com");

        let other_case_other_site = agent(ids.next().expect("id"), b_site.id, "ANN@Example.COM");
        assert_conflict(store.insert_agent(&other_case_other_site).await, "ANN@Example.COM");

        assert_eq!(store.agents(b_site.id).await.expect("list B"), vec![], "nothing half-inserted");
    }

    pub async fn duplicate_agent_id_is_a_conflict(store: Arc<dyn Store>) {
        let ids = ids();
        let (s, _) = two_sites(&*store, &ids).await;
        let a = agent(ids.next().expect("id"), s.id, "first@example.com");
        store.insert_agent(&a).await.expect("insert");
        let same_id = agent(a.id, s.id, "second@example.com");
        assert_conflict(store.insert_agent(&same_id).await, &a.id.to_string());
    }

    pub async fn agent_of_a_missing_site_is_refused(store: Arc<dyn Store>) {
        let ids = ids();
        let missing_site = ids.next().expect("id");
        let a = agent(ids.next().expect("id"), missing_site, "orphan@example.com");
        match store.insert_agent(&a).await {
            Err(BackendError::Conflict(msg)) => panic!("a missing site is not a conflict: {msg}"),
            Err(_) => {}
            Ok(()) => panic!("an agent of a site that does not exist was stored"),
        }
        assert_eq!(store.agent_by_email("orphan@example.com").await.expect("lookup"), None);
    }

    pub async fn agent_read_is_scoped_to_its_site(store: Arc<dyn Store>) {
        let ids = ids();
        let (a_site, b_site) = two_sites(&*store, &ids).await;
        let a = agent(ids.next().expect("id"), a_site.id, "scoped@example.com");
        store.insert_agent(&a).await.expect("insert");
        assert_eq!(store.agent(b_site.id, a.id).await.expect("read via B"), None);
        assert_eq!(store.agent(a_site.id, ids.next().expect("id")).await.expect("read missing"), None);
        assert_eq!(store.agent(a_site.id, a.id).await.expect("read via A"), Some(a));
    }

    pub async fn agent_by_email_ignores_case(store: Arc<dyn Store>) {
        let ids = ids();
        let (s, _) = two_sites(&*store, &ids).await;
        let a = agent(ids.next().expect("id"), s.id, "Bob.Smith@Example.org");
        store.insert_agent(&a).await.expect("insert");
        for probe in ["Bob.Smith@Example.org", "bob.smith@example.org", "BOB.SMITH@EXAMPLE.ORG"] {
            assert_eq!(store.agent_by_email(probe).await.expect("lookup"), Some(a.clone()), "{probe}");
        }
        assert_eq!(store.agent_by_email("bob.smith@example.com").await.expect("lookup"), None);
        assert_eq!(store.agent_by_email("").await.expect("lookup empty"), None);
    }

    pub async fn agents_are_listed_per_site_only(store: Arc<dyn Store>) {
        let ids = ids();
        let (a_site, b_site) = two_sites(&*store, &ids).await;
        let empty_site = site(ids.next().expect("id"), "Empty");
        store.insert_site(&empty_site).await.expect("insert empty site");

        let a1 = agent(ids.next().expect("id"), a_site.id, "a1@example.com");
        let b1 = agent(ids.next().expect("id"), b_site.id, "b1@example.com");
        let a2 = Agent { role: Role::Admin, ..agent(ids.next().expect("id"), a_site.id, "a2@example.com") };
        for x in [&a1, &b1, &a2] {
            store.insert_agent(x).await.expect("insert");
        }

        let mut in_a = store.agents(a_site.id).await.expect("list A");
        in_a.sort_by_key(|x| x.id);
        assert_eq!(in_a, vec![a1, a2]);
        assert_eq!(store.agents(b_site.id).await.expect("list B"), vec![b1]);
        assert_eq!(store.agents(empty_site.id).await.expect("list empty"), vec![]);
    }

    pub async fn secret_keeps_the_first_value(store: Arc<dyn Store>) {
        let key = SecretRef { site_id: None, name: "jwt-signing" };
        let first = store.secret_or_insert(key.clone(), b"first value").await.expect("first");
        assert_eq!(first, b"first value");
        let second = store.secret_or_insert(key, b"another value").await.expect("second");
        assert_eq!(second, b"first value");

        // Any bytes, not only text.
        let binary: Vec<u8> = (0..=255u8).collect();
        let key = SecretRef { site_id: None, name: "binary" };
        assert_eq!(store.secret_or_insert(key, &binary).await.expect("binary"), binary);
    }

    pub async fn secret_race_gives_everybody_one_value(store: Arc<dyn Store>) {
        const RACERS: usize = 20;
        let site_id = ids().next().expect("id");
        store.insert_site(&site(site_id, "Racing")).await.expect("insert site");
        let start = Arc::new(Barrier::new(RACERS));
        let mut tasks = JoinSet::new();
        for i in 0..RACERS {
            let store = store.clone();
            let start = start.clone();
            tasks.spawn(async move {
                let candidate = format!("candidate-{i}").into_bytes();
                start.wait().await;
                store
                    .secret_or_insert(SecretRef { site_id: Some(site_id), name: "message-mac" }, &candidate)
                    .await
                    .expect("secret_or_insert")
            });
        }
        let mut seen = HashSet::new();
        while let Some(result) = tasks.join_next().await {
            seen.insert(result.expect("task"));
        }
        assert_eq!(seen.len(), 1, "every caller gets the same value: {seen:?}");
        let winner = seen.into_iter().next().expect("one value");
        assert!(
            (0..RACERS).any(|i| winner == format!("candidate-{i}").into_bytes()),
            "the value is one of the candidates"
        );
        let later = store
            .secret_or_insert(SecretRef { site_id: Some(site_id), name: "message-mac" }, b"late")
            .await
            .expect("later");
        assert_eq!(later, winner);
    }

    pub async fn secrets_are_separate_per_site_and_name(store: Arc<dyn Store>) {
        let ids = ids();
        let (a, b) = two_sites(&*store, &ids).await;
        let keys = [
            (SecretRef { site_id: None, name: "key" }, b"installation key".as_slice()),
            (SecretRef { site_id: None, name: "other" }, b"installation other"),
            (SecretRef { site_id: Some(a.id), name: "key" }, b"site A key"),
            (SecretRef { site_id: Some(a.id), name: "other" }, b"site A other"),
            (SecretRef { site_id: Some(b.id), name: "key" }, b"site B key"),
        ];
        for (key, value) in &keys {
            assert_eq!(store.secret_or_insert(key.clone(), value).await.expect("insert"), *value, "{key:?}");
        }
        for (key, value) in &keys {
            let read = store.secret_or_insert(key.clone(), b"replacement").await.expect("read");
            assert_eq!(read, *value, "{key:?} kept its own value");
        }
    }

    // agents, departments, sessions
    mod agents;
    pub use agents::*;
    // end agents, departments, sessions

    // chats
    pub async fn chat_membership_is_recorded_and_read_back(store: Arc<dyn Store>) {
        let ids = ids();
        let (a, _) = two_sites(&*store, &ids).await;
        let (chat, visitor) = (ids.next().expect("id"), ids.next().expect("id"));
        assert_eq!(store.chat_membership(chat).await.expect("read"), None, "an unknown chat reads as None");
        store.insert_chat(chat, a.id, visitor, CREATED_AT).await.expect("insert chat");
        // Creating the same chat again (a retried request) changes nothing.
        store.insert_chat(chat, a.id, visitor, CREATED_AT + 5).await.expect("insert again");
        let m = store.chat_membership(chat).await.expect("read").expect("chat exists");
        assert_eq!(m, frontdesk_core::store::ChatMembership { site_id: a.id, visitor_id: visitor, agent_ids: vec![] });
        let r = store.add_chat_member(ids.next().expect("id"), ids.next().expect("id")).await;
        assert!(r.is_err(), "a member of a chat that does not exist is refused");
    }

    pub async fn chat_members_are_idempotent_and_in_order(store: Arc<dyn Store>) {
        let ids = ids();
        let (a, _) = two_sites(&*store, &ids).await;
        let (chat, visitor) = (ids.next().expect("id"), ids.next().expect("id"));
        let (first, second) = (ids.next().expect("id"), ids.next().expect("id"));
        store.insert_chat(chat, a.id, visitor, CREATED_AT).await.expect("insert chat");
        store.add_chat_member(chat, first).await.expect("add first");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.add_chat_member(chat, second).await.expect("add second");
        store.add_chat_member(chat, first).await.expect("add first again");
        let m = store.chat_membership(chat).await.expect("read").expect("chat exists");
        assert_eq!(m.agent_ids, vec![first, second]);
        // Another chat's members stay its own.
        let other = ids.next().expect("id");
        store.insert_chat(other, a.id, visitor, CREATED_AT).await.expect("insert other");
        assert_eq!(store.chat_membership(other).await.expect("read").expect("exists").agent_ids, vec![]);
    }
    // end chats

    // history
    mod history;
    pub use history::*;
    mod search;
    pub use search::*;
    // end history

    // reports, retention, privacy
    mod reports;
    pub use reports::*;
    // end reports, retention, privacy

    // offline messages
    mod offline;
    pub use offline::*;
    // end offline messages
}
