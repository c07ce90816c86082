//! Task-store throughput: claim + complete per second, one claim per transaction and batched,
//! for `SqliteStore` with `Normal` and `Full` durability, next to the raw single-row insert rate
//! of the same database as the reference.
//!
//! - `*/unbatched`: one claimer, `claim` then `release(Done)`, one after the other: every write
//!   is its own transaction (its own fsync with `Full`).
//! - `*/batched`: 64 concurrent claimers on one store, each `claim_many(16)` then
//!   `release_many` of those 16 (one transaction each); group commit also merges the
//!   claimers' transactions.
//! - `*/raw_insert`: one-row `INSERT` transactions on a plain connection with the same pragmas.
//!
//! - `postgres/*` (when `ANANTA_PG_URL` names a server; a database of its own is created and
//!   dropped): `claim` + `release` with 1, 8 and 32 concurrent claimers on one store,
//!   `claim_many(16)` + `release_many` (two transactions per 16 tasks) with 32 claimers, the raw single-row insert rate, and the latency
//!   from creating a task to its claim by an idle claimer woken by `LISTEN`/`NOTIFY` (p50/p99,
//!   printed).
//!
//! Each iteration claims and completes one task; throughput is reported in tasks/s.
//! `cargo bench -p ananta-benches --bench store`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use ananta_core::{AgentId, NewTask, TaskStatus, TaskStore};
use ananta_store::{Durability, PostgresOptions, PostgresStore, SqliteOptions, SqliteStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

const LEASE: Duration = Duration::from_secs(600);

/// Creates `n` claimable tasks (rounded up to a multiple of `writers`) with `writers`
/// concurrent writers.
async fn fill<S: TaskStore + Clone + 'static>(store: &S, n: u64, writers: u64) {
    let mut handles = Vec::new();
    for chunk in 0..writers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..n.div_ceil(writers) {
                let task = NewTask::new(format!("bench {chunk}-{i}"))
                    .status(TaskStatus::Todo)
                    .into_task()
                    .unwrap();
                store.create_task(task).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

async fn unbatched(store: &SqliteStore, n: u64) -> Duration {
    let me = AgentId::new("bench").unwrap();
    let started = Instant::now();
    for _ in 0..n {
        let claim = store.claim(me.clone(), LEASE).await.unwrap().unwrap();
        store.release(claim, TaskStatus::Done).await.unwrap();
    }
    started.elapsed()
}

async fn batched(store: &SqliteStore) -> Duration {
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let me = AgentId::new(format!("bench-{c}")).unwrap();
            loop {
                let claims = store.claim_many(me.clone(), LEASE, 16).await.unwrap();
                if claims.is_empty() {
                    return;
                }
                let releases = claims.into_iter().map(|c| (c, TaskStatus::Done)).collect();
                for r in store.release_many(releases).await.unwrap() {
                    r.unwrap();
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (label, durability) in [
        ("sqlite_normal", Durability::Normal),
        ("sqlite_full", Durability::Full),
    ] {
        let mut group = c.benchmark_group(label);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(10));
        group.throughput(Throughput::Elements(1));
        group.bench_function("unbatched", |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let store =
                    SqliteStore::temporary_with(SqliteOptions::default().durability(durability))
                        .await
                        .unwrap();
                fill(&store, iters, 8).await;
                unbatched(&store, iters).await
            })
        });
        group.bench_function("batched", |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let store =
                    SqliteStore::temporary_with(SqliteOptions::default().durability(durability))
                        .await
                        .unwrap();
                fill(&store, iters, 8).await;
                batched(&store).await
            })
        });
        group.bench_function("raw_insert", |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("raw.db");
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                let sync = if durability == Durability::Full { "FULL" } else { "NORMAL" };
                conn.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT NOT NULL);"
                ))
                .unwrap();
                let started = Instant::now();
                for i in 0..iters {
                    conn.batch_execute(&format!("BEGIN IMMEDIATE; INSERT INTO t (data) VALUES ('row {i}'); COMMIT;"))
                        .unwrap();
                }
                started.elapsed()
            })
        });
        group.finish();
    }
}

/// `claimers` concurrent loops of claim (or `claim_many(batch)`) + release until none is left.
async fn drain_pg(store: &PostgresStore, claimers: usize, batch: usize) -> Duration {
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..claimers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let me = AgentId::new(format!("bench-{c}")).unwrap();
            loop {
                let claims = if batch > 1 {
                    store.claim_many(me.clone(), LEASE, batch).await.unwrap()
                } else {
                    store
                        .claim(me.clone(), LEASE)
                        .await
                        .unwrap()
                        .into_iter()
                        .collect()
                };
                if claims.is_empty() {
                    return;
                }
                if batch > 1 {
                    let releases = claims.into_iter().map(|c| (c, TaskStatus::Done)).collect();
                    for r in store.release_many(releases).await.unwrap() {
                        r.unwrap();
                    }
                } else {
                    for claim in claims {
                        store.release(claim, TaskStatus::Done).await.unwrap();
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

/// A database of its own on the bench server, dropped at the end.
struct BenchDb {
    admin: String,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(admin: &str) -> Self {
        use diesel_async::{AsyncConnection, AsyncPgConnection};
        let name = format!("ananta_bench_{:016x}", fastrand::u64(..));
        let mut conn = AsyncPgConnection::establish(admin).await.unwrap();
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(format!("CREATE DATABASE {name}")),
            &mut conn,
        )
        .await
        .unwrap();
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Self {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn drop_now(self) {
        use diesel_async::{AsyncConnection, AsyncPgConnection};
        let mut conn = AsyncPgConnection::establish(&self.admin).await.unwrap();
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )),
            &mut conn,
        )
        .await
        .unwrap();
    }
}

fn postgres(c: &mut Criterion) {
    let Some(admin) = std::env::var("ANANTA_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("postgres benches not run: ANANTA_PG_URL is not set");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(BenchDb::create(&admin));
    let store = rt
        .block_on(PostgresStore::connect_with(
            &db.url,
            PostgresOptions::default().pool_size(32),
        ))
        .unwrap();
    let mut group = c.benchmark_group("postgres");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1));
    for (name, claimers, batch) in [
        ("unbatched/1", 1, 1),
        ("unbatched/8", 8, 1),
        ("unbatched/32", 32, 1),
        ("batched/32", 32, 16),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    fill(&store, iters, 16).await;
                    drain_pg(&store, claimers, batch).await
                }
            })
        });
    }
    group.bench_function("raw_insert", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let url = db.url.clone();
            async move {
                use diesel_async::{AsyncConnection, AsyncPgConnection};
                let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
                diesel_async::RunQueryDsl::execute(diesel::sql_query(
                    "CREATE TABLE IF NOT EXISTS raw (id BIGSERIAL PRIMARY KEY, data TEXT NOT NULL)",
                ), &mut conn).await
                .unwrap();
                let started = Instant::now();
                for i in 0..iters {
                    diesel_async::RunQueryDsl::execute(
                        diesel::sql_query(format!("INSERT INTO raw (data) VALUES ('row {i}')")),
                        &mut conn,
                    )
                    .await
                    .unwrap();
                }
                started.elapsed()
            }
        })
    });
    group.finish();

    // Enqueue-to-claim latency with an idle claimer woken by LISTEN/NOTIFY: the producer
    // notes when it created each task, the claimer when it got it.
    let mut latencies = rt.block_on(async {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        const N: usize = 300;
        let created: Arc<Mutex<HashMap<ananta_core::TaskId, Instant>>> = Arc::default();
        let claimer = store.clone();
        let mut signal = claimer.work_signal().await.unwrap();
        let seen_created = created.clone();
        let waiter = tokio::spawn(async move {
            let me = AgentId::new("latency").unwrap();
            let mut latencies = Vec::new();
            while latencies.len() < N {
                signal.wait(Duration::from_secs(5)).await;
                let claims = claimer.claim_many(me.clone(), LEASE, 16).await.unwrap();
                let now = Instant::now();
                for claim in &claims {
                    let at = seen_created.lock().unwrap().get(&claim.task_id).copied();
                    if let Some(at) = at {
                        latencies.push(now - at);
                    }
                }
                let releases = claims.into_iter().map(|c| (c, TaskStatus::Done)).collect();
                claimer.release_many(releases).await.unwrap();
            }
            latencies
        });
        for i in 0..N {
            let task = NewTask::new(format!("latency {i}"))
                .status(TaskStatus::Todo)
                .into_task()
                .unwrap();
            // Noted before the insert commits, so the latency includes the insert.
            created.lock().unwrap().insert(task.id, Instant::now());
            store.create_task(task).await.unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        waiter.await.unwrap()
    });
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "postgres enqueue-to-claim latency with LISTEN/NOTIFY wake-ups over {} tasks: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        pick(0.5),
        pick(0.99),
        latencies[latencies.len() - 1]
    );
    rt.block_on(async {
        drop(store);
        db.drop_now().await;
    });
}

criterion_group!(benches, sqlite, postgres);
criterion_main!(benches);
