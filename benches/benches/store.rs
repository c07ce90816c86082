//! Task-store throughput: claim + complete per second, one claim per transaction and batched,
//! for `SqliteStore` with `Normal` and `Full` durability, next to the raw single-row insert rate
//! of the same database as the reference.
//!
//! - `*/unbatched`: one claimer, `claim` then `release(Done)`, one after the other: every write
//!   is its own transaction (its own fsync with `Full`).
//! - `*/batched`: 64 concurrent claimers on one store, each `claim_many(16)` then releasing:
//!   group commit merges the waiting writes into few transactions.
//! - `*/raw_insert`: one-row `INSERT` transactions on a plain connection with the same pragmas.
//!
//! Each iteration claims and completes one task; throughput is reported in tasks/s.
//! `cargo bench -p ananta-benches --bench store`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ananta_core::{AgentId, NewTask, TaskStatus, TaskStore};
use ananta_store::{Durability, SqliteOptions, SqliteStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

const LEASE: Duration = Duration::from_secs(600);

async fn fill(store: &SqliteStore, n: u64) {
    let mut handles = Vec::new();
    for chunk in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..n.div_ceil(8) {
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
                let releases = claims
                    .into_iter()
                    .map(|claim| store.release(claim, TaskStatus::Done));
                for r in futures::future::join_all(releases).await {
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
                fill(&store, iters).await;
                unbatched(&store, iters).await
            })
        });
        group.bench_function("batched", |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let store =
                    SqliteStore::temporary_with(SqliteOptions::default().durability(durability))
                        .await
                        .unwrap();
                fill(&store, iters).await;
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

criterion_group!(benches, sqlite);
criterion_main!(benches);
