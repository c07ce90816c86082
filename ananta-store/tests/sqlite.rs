//! `SqliteStore`: the conformance suites (tasks and agents), durability across reopen, schema
//! upgrades, group commit under concurrency, and clear errors for bad files and locations.
#![cfg(all(feature = "sqlite", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::agent::{AgentCard, AgentInfo, AgentStatus};
use ananta_core::error::{RegistryError, StoreError};
use ananta_core::ids::AgentId;
use ananta_core::registry::AgentRegistry;
use ananta_core::store::TaskStore;
use ananta_core::task::{NewTask, TaskStatus};
use ananta_store::{Durability, SQLITE_MIGRATIONS, SqliteOptions, SqliteStore};
use ananta_store::{conformance, registry_conformance};
use chrono::SubsecRound;
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_conformance() {
    conformance::run_all(|| async { SqliteStore::temporary().await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_conformance_with_full_durability() {
    conformance::run_all(|| async {
        SqliteStore::temporary_with(SqliteOptions::default().durability(Durability::Full))
            .await
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_registry_conformance() {
    registry_conformance::run_all(|| async { SqliteStore::temporary().await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_registry_conformance_with_full_durability() {
    registry_conformance::run_all(|| async {
        SqliteStore::temporary_with(SqliteOptions::default().durability(Durability::Full))
            .await
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_are_exclusive() {
    for _ in 0..3 {
        conformance::concurrent_claims(Arc::new(SqliteStore::temporary().await.unwrap())).await;
    }
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let task = store
        .create_task(
            NewTask::new("durable")
                .status(TaskStatus::Todo)
                .into_task()
                .unwrap(),
        )
        .await
        .unwrap();
    let claim = store
        .claim(AgentId::new("w1").unwrap(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store.release(claim, TaskStatus::Done).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    let back = store.get_task(task.id).await.unwrap();
    assert_eq!(back.status, TaskStatus::Done);
    assert_eq!(back.fence, 1);
}

/// An agent as stored with microsecond timestamps, for comparing agents across a reopen.
fn to_micros(mut info: AgentInfo) -> AgentInfo {
    info.last_seen = info.last_seen.trunc_subsecs(6);
    info.registered_at = info.registered_at.trunc_subsecs(6);
    info
}

#[tokio::test]
async fn agents_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let rust = AgentCard::in_process(AgentId::new("rust").unwrap())
        .description("runs cargo")
        .tool("cargo");
    store.register(rust.clone()).await.unwrap();
    let rust = store
        .register(rust.description("runs cargo build and cargo test"))
        .await
        .unwrap();
    assert_eq!(rust.card_version, 2);
    store
        .register(AgentCard::in_process(AgentId::new("docs").unwrap()).tag("markdown"))
        .await
        .unwrap();
    let docs = store
        .set_status(AgentId::new("docs").unwrap(), AgentStatus::Offline)
        .await
        .unwrap();
    store
        .register(AgentCard::in_process(AgentId::new("gone").unwrap()))
        .await
        .unwrap();
    store
        .deregister(AgentId::new("gone").unwrap())
        .await
        .unwrap();
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    let back = store.get(AgentId::new("rust").unwrap()).await.unwrap();
    assert_eq!(to_micros(back), to_micros(rust.clone()));
    let listed: Vec<AgentInfo> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(to_micros)
        .collect();
    assert_eq!(listed, vec![to_micros(docs), to_micros(rust)]);
    assert!(matches!(
        store.get(AgentId::new("gone").unwrap()).await,
        Err(RegistryError::NotFound(_))
    ));
    // The offline agent is still offline: only `rust` is a candidate.
    let best = store.best_match("cargo".into(), 5).await.unwrap();
    assert_eq!(best.len(), 1);
    assert_eq!(best[0].agent.as_str(), "rust");
}

/// A database written before the registry existed (only the first migration applied) gets
/// the `agents` table when opened, and keeps its tasks.
#[tokio::test]
async fn a_database_from_before_the_registry_gets_the_agents_table() {
    fn has_agents_table(conn: &mut SqliteConnection) -> bool {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agents')",
        ))
        .get_result(conn)
        .unwrap()
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let task = store
        .create_task(NewTask::new("from before").into_task().unwrap())
        .await
        .unwrap();
    drop(store);
    // Take the database back to the schema of the first release: revert every migration
    // after the first (their `down.sql`).
    {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        while conn.applied_migrations().unwrap().len() > 1 {
            conn.revert_last_migration(SQLITE_MIGRATIONS).unwrap();
        }
        assert!(!has_agents_table(&mut conn), "the old schema has no agents");
    }
    // Without automatic migration, the old database is refused, not used half-migrated.
    let err = SqliteStore::open_with(&path, SqliteOptions::default().run_migrations(false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema(ref m) if m.contains("pending")),
        "{err:?}"
    );

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get_task(task.id).await.unwrap().title, "from before");
    assert!(store.list().await.unwrap().is_empty());
    let info = store
        .register(AgentCard::in_process(AgentId::new("w1").unwrap()))
        .await
        .unwrap();
    assert_eq!(info.card_version, 1);
    drop(store);
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    assert!(has_agents_table(&mut conn));
    assert!(
        conn.pending_migrations(SQLITE_MIGRATIONS)
            .unwrap()
            .is_empty(),
        "every migration is applied"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a_u8; 64 * 1024]).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_database_with_a_damaged_page_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let store = SqliteStore::open(&path).await.unwrap();
    for i in 0..200 {
        store
            .create_task(
                NewTask::new(format!("task {i}"))
                    .description("x".repeat(500))
                    .into_task()
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    drop(store);
    // Let the writer thread close its connection (which checkpoints the WAL into the file).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8 * 4096, "{} bytes", bytes.len());
    // Overwrite the middle of the file (table and index pages), keep the header.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid - 8192..mid + 8192] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    let _ = std::fs::remove_file(path.with_extension("db-shm"));
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn a_read_only_location_is_refused_clearly() {
    // /proc does not take new files, even for root.
    let err = SqliteStore::open("/proc/ananta-test.db").await.unwrap_err();
    assert!(
        matches!(err, StoreError::ReadOnly(_) | StoreError::InvalidInput(_)),
        "{err:?}"
    );
    let err = SqliteStore::open("/nonexistent-dir/x/board.db")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidInput(ref m) if m.contains("does not exist")),
        "{err:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidInput(ref m) if m.contains("directory")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    drop(SqliteStore::open(&path).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Record a migration this code does not know, as a newer version would have.
    {
        use diesel::prelude::*;
        let mut conn = diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')",
        )
        .execute(&mut conn)
        .unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema(ref m) if m.contains("newer")),
        "{err:?}"
    );
}

#[tokio::test]
async fn migrations_off_needs_a_migrated_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let err = SqliteStore::open_with(&path, SqliteOptions::default().run_migrations(false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema(ref m) if m.contains("pending")),
        "{err:?}"
    );
    drop(SqliteStore::open(&path).await.unwrap());
    SqliteStore::open_with(&path, SqliteOptions::default().run_migrations(false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_merges_concurrent_writes() {
    let store = SqliteStore::temporary_with(SqliteOptions::default().durability(Durability::Full))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .create_task(NewTask::new(format!("t{i}")).into_task().unwrap())
                .await
                .unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let all = store.list_tasks(Default::default()).await.unwrap();
    assert_eq!(all.len(), 200);
}

/// 10,000 tasks, 8 claimers each with its own `SqliteStore` (own writer connection and
/// readers) on one file: every task is claimed and completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_tasks_eight_claimers_exactly_once() {
    const TASKS: usize = 10_000;
    const CLAIMERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let started = std::time::Instant::now();
    let mut creators = Vec::new();
    for chunk in 0..16 {
        let store = store.clone();
        creators.push(tokio::spawn(async move {
            for i in 0..TASKS / 16 {
                let t = NewTask::new(format!("task {chunk}-{i}"))
                    .status(TaskStatus::Todo)
                    .into_task()
                    .unwrap();
                store.create_task(t).await.unwrap();
            }
        }));
    }
    for c in creators {
        c.await.unwrap();
    }
    let created = started.elapsed();

    let started = std::time::Instant::now();
    let mut claimers = Vec::new();
    for n in 0..CLAIMERS {
        let store = SqliteStore::open(&path).await.unwrap();
        claimers.push(tokio::spawn(async move {
            let me = AgentId::new(format!("claimer-{n}")).unwrap();
            let mut done = Vec::new();
            loop {
                let batch = if n % 2 == 0 {
                    store
                        .claim_many(me.clone(), Duration::from_secs(600), 16)
                        .await
                } else {
                    store
                        .claim(me.clone(), Duration::from_secs(600))
                        .await
                        .map(|c| c.into_iter().collect())
                };
                let batch = match batch {
                    Ok(b) if b.is_empty() => return done,
                    Ok(b) => b,
                    Err(e) if e.is_transient() => continue,
                    Err(e) => panic!("claim failed: {e:?}"),
                };
                for claim in batch {
                    let id = claim.task_id;
                    loop {
                        match store.release(claim.clone(), TaskStatus::Done).await {
                            Ok(_) => break,
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("release failed: {e:?}"),
                        }
                    }
                    done.push(id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let claimed = started.elapsed();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, TASKS, "claims made (a double claim or a lost task)");
    assert_eq!(all.len(), TASKS, "distinct tasks claimed");
    let done = store
        .list_tasks(ananta_core::task::TaskFilter {
            statuses: vec![TaskStatus::Done],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), TASKS, "every task is done");
    assert!(
        done.iter().all(|t| t.fence == 1),
        "each task was claimed once"
    );
    eprintln!(
        "sqlite: created {TASKS} in {created:?}; {CLAIMERS} claimers claimed+completed them in {claimed:?} ({:.0}/s)",
        TASKS as f64 / claimed.as_secs_f64()
    );
}
