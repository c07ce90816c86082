//! `PostgresStore`: the conformance suites (tasks and agents), exclusive claims under heavy
//! concurrency from separate stores, one registry shared by several hubs, `LISTEN`/`NOTIFY`
//! wake-ups, schema checks and upgrades, and clear connection errors.
//!
//! The server comes from `ANANTA_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); each
//! test works in a database of its own, created for it and dropped afterwards (even when the
//! test fails), so tests run in parallel and leave nothing behind. Without `ANANTA_PG_URL` the
//! tests that need a server print `NOT RUN` and pass, unless `ANANTA_REQUIRE_PG=1`.
#![cfg(all(feature = "postgres", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ananta_core::agent::{AgentCard, AgentStatus};
use ananta_core::error::{RegistryError, StoreError};
use ananta_core::ids::AgentId;
use ananta_core::registry::AgentRegistry;
use ananta_core::store::TaskStore;
use ananta_core::task::{NewTask, TaskFilter, TaskStatus};
use ananta_store::{PostgresOptions, PostgresStore};
use ananta_store::{conformance, registry_conformance};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use pg_support::{TestDb, server, with_database};

mod pg_support;

fn small() -> PostgresOptions {
    PostgresOptions::default()
        .pool_size(4)
        .connect_timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_conformance() {
    let Some(admin) = server("passes_conformance") else {
        return;
    };
    // A database per case; all are dropped when the test ends, passed or failed.
    let dbs: Arc<Mutex<Vec<TestDb>>> = Arc::default();
    let started = Instant::now();
    conformance::run_all(|| {
        let admin = admin.clone();
        let dbs = dbs.clone();
        async move {
            let db = TestDb::create(&admin).await;
            let store = PostgresStore::connect_with(&db.url, small()).await.unwrap();
            dbs.lock().unwrap().push(db);
            store
        }
    })
    .await;
    eprintln!(
        "conformance: {} cases in {:?}",
        conformance::CASES.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_registry_conformance() {
    let Some(admin) = server("passes_registry_conformance") else {
        return;
    };
    // A database per case; all are dropped when the test ends, passed or failed.
    let dbs: Arc<Mutex<Vec<TestDb>>> = Arc::default();
    let started = Instant::now();
    registry_conformance::run_all(|| {
        let admin = admin.clone();
        let dbs = dbs.clone();
        async move {
            let db = TestDb::create(&admin).await;
            let store = PostgresStore::connect_with(&db.url, small()).await.unwrap();
            dbs.lock().unwrap().push(db);
            store
        }
    })
    .await;
    eprintln!(
        "registry conformance: {} cases in {:?}",
        registry_conformance::CASES.len(),
        started.elapsed()
    );
}

/// Two hubs (stores with pools of their own) on one database see one registry; registering the
/// same new agent from both at once counts once, and the other's change bumps the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hubs_share_one_registry() {
    let Some(admin) = server("hubs_share_one_registry") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    let a = PostgresStore::connect_with(&db.url, small()).await.unwrap();
    let b = PostgresStore::connect_with(&db.url, small()).await.unwrap();
    let name = AgentId::new("worker-1").unwrap();
    let card = AgentCard::in_process(name.clone()).description("runs cargo");

    // The same first registration from both hubs at once, many times over: one insert wins,
    // the other registers over it (same card: version 1 both times).
    for round in 0..10 {
        let (x, y) = tokio::join!(a.register(card.clone()), b.register(card.clone()));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!((x.card_version, y.card_version), (1, 1), "round {round}");
        assert_eq!(x.registered_at, y.registered_at, "round {round}");
        b.deregister(name.clone()).await.unwrap();
    }

    a.register(card.clone()).await.unwrap();
    let changed = b
        .register(card.clone().description("runs cargo and docker"))
        .await
        .unwrap();
    assert_eq!(changed.card_version, 2);
    assert_eq!(a.get(name.clone()).await.unwrap(), changed);
    a.set_status(name.clone(), AgentStatus::Offline)
        .await
        .unwrap();
    assert!(matches!(
        b.best_match("cargo".into(), 1).await,
        Err(RegistryError::NoCandidate(_))
    ));
    let beat = b.heartbeat(name.clone()).await.unwrap();
    assert_eq!(a.list().await.unwrap(), vec![beat]);
}

/// A database written before the registry existed (only the first migration applied) gets
/// the `agents` table on connect, and keeps its tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_registry_gets_the_agents_table() {
    let Some(admin) = server("a_database_from_before_the_registry_gets_the_agents_table") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    let store = PostgresStore::connect_with(&db.url, small()).await.unwrap();
    let task = store
        .create_task(NewTask::new("from before").into_task().unwrap())
        .await
        .unwrap();
    drop(store);
    // Take the database back to the schema of the first release, as its `down.sql` does.
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query(include_str!(
        "../migrations/postgres/2026-11-23-000000_agents/down.sql"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let removed = diesel::sql_query(
        "DELETE FROM __diesel_schema_migrations WHERE version = '20261123000000'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(removed, 1, "the registry's migration was recorded");

    let err = PostgresStore::connect_with(&db.url, small().run_migrations(false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema(ref m) if m.contains("pending")),
        "{err:?}"
    );
    let store = PostgresStore::connect_with(&db.url, small()).await.unwrap();
    assert_eq!(store.get_task(task.id).await.unwrap().title, "from before");
    assert!(store.list().await.unwrap().is_empty());
    let info = store
        .register(AgentCard::in_process(AgentId::new("w1").unwrap()))
        .await
        .unwrap();
    assert_eq!(info.card_version, 1);
    assert_eq!(store.get(AgentId::new("w1").unwrap()).await.unwrap(), info);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_are_exclusive() {
    let Some(admin) = server("concurrent_claims_are_exclusive") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    for _ in 0..3 {
        let store = PostgresStore::connect_with(&db.url, small()).await.unwrap();
        conformance::concurrent_claims(Arc::new(store)).await;
        // Start the next round on an empty board.
        let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
        diesel::sql_query("TRUNCATE tasks CASCADE")
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// 10,000 tasks, 8 claimers each with a store (and pool) of its own, half claiming in
/// batches of 16 and half one at a time: every task is claimed exactly once and ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_tasks_eight_claimers_no_double_claims() {
    const TASKS: usize = 10_000;
    const CLAIMERS: usize = 8;
    let Some(admin) = server("ten_thousand_tasks_eight_claimers_no_double_claims") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    let setup = PostgresStore::connect_with(&db.url, PostgresOptions::default().pool_size(16))
        .await
        .unwrap();
    let started = Instant::now();
    futures::stream::iter(0..TASKS)
        .map(|i| {
            let store = setup.clone();
            async move {
                store
                    .create_task(
                        NewTask::new(format!("task {i}"))
                            .status(TaskStatus::Todo)
                            .into_task()
                            .unwrap(),
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!("created {TASKS} tasks in {:?}", started.elapsed());

    let mut stores = Vec::new();
    for _ in 0..CLAIMERS {
        stores.push(
            PostgresStore::connect_with(&db.url, PostgresOptions::default().pool_size(2))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for (n, store) in stores.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let me = AgentId::new(format!("claimer-{n}")).unwrap();
            let batch = n % 2 == 0;
            let mut claimed = Vec::new();
            loop {
                let claims = if batch {
                    store
                        .claim_many(me.clone(), Duration::from_secs(600), 16)
                        .await
                        .unwrap()
                } else {
                    store
                        .claim(me.clone(), Duration::from_secs(600))
                        .await
                        .unwrap()
                        .into_iter()
                        .collect()
                };
                // Nothing left that no other claimer holds: everything is taken.
                if claims.is_empty() {
                    break;
                }
                for claim in claims {
                    claimed.push(claim.task_id);
                    let done = store.release(claim, TaskStatus::Done).await.unwrap();
                    assert_eq!(done.status, TaskStatus::Done);
                }
            }
            (batch, claimed)
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        let (batch, claimed) = handle.await.unwrap();
        eprintln!(
            "claimer ({}) took {} tasks",
            if batch { "claim_many 16" } else { "claim" },
            claimed.len()
        );
        all.extend(claimed);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} claims + releases by {CLAIMERS} claimers in {elapsed:?} ({:.0} tasks/s)",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64()
    );

    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a task was claimed twice");
    assert_eq!(all.len(), TASKS, "claims");
    let tasks = setup.list_tasks(TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.len(), TASKS);
    for task in &tasks {
        assert_eq!(task.status, TaskStatus::Done, "{}", task.id);
        assert_eq!(task.fence, 1, "{} was claimed more than once", task.id);
        assert!(unique.contains(&task.id), "{} was lost", task.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_wakes_when_a_task_becomes_claimable() {
    let Some(admin) = server("a_waiter_wakes_when_a_task_becomes_claimable") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    let store = PostgresStore::connect_with(&db.url, small()).await.unwrap();
    // A second hub creates the work.
    let other = PostgresStore::connect_with(&db.url, small()).await.unwrap();

    // Nothing happens: the wait times out.
    assert!(
        !store
            .wait_for_work(Duration::from_millis(200))
            .await
            .unwrap()
    );

    // A task that is not claimable (backlog) wakes nobody.
    let mut signal = store.work_signal().await.unwrap();
    let task = other
        .create_task(NewTask::new("later").into_task().unwrap())
        .await
        .unwrap();
    assert!(!signal.wait(Duration::from_millis(300)).await);

    // Created as `todo`: the waiter wakes at once.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let woke = store.wait_for_work(Duration::from_secs(10)).await.unwrap();
            (woke, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let created_at = Instant::now();
    other
        .create_task(
            NewTask::new("now")
                .status(TaskStatus::Todo)
                .into_task()
                .unwrap(),
        )
        .await
        .unwrap();
    let (woke, at) = waiter.await.unwrap();
    assert!(woke);
    let latency = at.saturating_duration_since(created_at);
    eprintln!("woke {latency:?} after the task was created");
    assert!(latency < Duration::from_secs(1), "{latency:?}");

    // Moved into `todo` by an update, while the holder of the signal was busy: the next wait
    // returns at once.
    let mut signal = store.work_signal().await.unwrap();
    other
        .update_task(
            task.id,
            ananta_core::task::TaskUpdate {
                status: Some(TaskStatus::Todo),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waited = Instant::now();
    assert!(signal.wait(Duration::from_secs(5)).await);
    assert!(waited.elapsed() < Duration::from_millis(100));

    // Released back to `todo`: wakes too.
    let claim = other
        .claim(AgentId::new("w").unwrap(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let mut signal = store.work_signal().await.unwrap();
    other.release(claim, TaskStatus::Todo).await.unwrap();
    assert!(signal.wait(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Nothing listens on port 1.
    let started = Instant::now();
    let err = PostgresStore::connect_with(
        "postgres://postgres@127.0.0.1:1/ananta",
        PostgresOptions::default().connect_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("127.0.0.1:1")),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));

    // A server that accepts the connection but never answers: the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let err = PostgresStore::connect_with(
        &format!("postgres://postgres:secret@127.0.0.1:{port}/ananta"),
        PostgresOptions::default().connect_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains("no answer")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A malformed URL is the caller's mistake.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:notaport/x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput(_) | StoreError::Unavailable(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_database_is_reported() {
    let Some(admin) = server("a_missing_database_is_reported") else {
        return;
    };
    let url = with_database(&admin, "ananta_no_such_database");
    let err = PostgresStore::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Backend(ref m) if m.contains("does not exist")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(admin) = server("a_newer_schema_is_refused") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    drop(PostgresStore::connect(&db.url).await.unwrap());
    // Record a migration this code does not know, as a newer version would have.
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = PostgresStore::connect(&db.url).await.unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema(ref m) if m.contains("newer")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_off_needs_a_migrated_database() {
    let Some(admin) = server("migrations_off_needs_a_migrated_database") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    let err = PostgresStore::connect_with(&db.url, small().run_migrations(false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema(ref m) if m.contains("pending")),
        "{err:?}"
    );
    drop(PostgresStore::connect(&db.url).await.unwrap());
    PostgresStore::connect_with(&db.url, small().run_migrations(false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hubs_connecting_at_once_migrate_once() {
    let Some(admin) = server("hubs_connecting_at_once_migrate_once") else {
        return;
    };
    let db = TestDb::create(&admin).await;
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::connect_with(&url, small()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    // They share one board.
    let task = stores[0]
        .create_task(NewTask::new("shared").into_task().unwrap())
        .await
        .unwrap();
    assert_eq!(stores[5].get_task(task.id).await.unwrap().title, "shared");
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
