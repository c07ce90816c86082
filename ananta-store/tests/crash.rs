//! Crash safety of the durable stores: a child process creates and completes tasks and prints
//! an acknowledgement after each committed write; the parent kills it with SIGKILL at a random
//! moment, reopens the store and checks that every acknowledged write is there and the
//! database is consistent. 20 rounds per backend: SQLite (one file), and PostgreSQL (a database
//! of its own on the server in `ANANTA_PG_URL`; `NOT RUN` without it unless
//! `ANANTA_REQUIRE_PG=1`). A test without the libtest harness: the same binary is the parent,
//! and the child when `ANANTA_CRASH_CHILD` is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[cfg(all(feature = "postgres", feature = "testing"))]
mod pg_support;

use std::sync::Arc;

use ananta_core::store::TaskStore;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("ANANTA_CRASH_CHILD") {
        Ok(target) => runtime.block_on(child(target)),
        Err(_) => runtime.block_on(async {
            #[cfg(feature = "sqlite")]
            {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("crash.db");
                parent("sqlite", format!("sqlite:{}", path.display())).await;
            }
            #[cfg(all(feature = "postgres", feature = "testing"))]
            if let Some(admin) = pg_support::server("crash test (postgres)") {
                let db = pg_support::TestDb::create(&admin).await;
                parent("postgres", format!("postgres:{}", db.url)).await;
            }
        }),
    }
}

/// Opens the store a target names: `sqlite:<path>` or `postgres:<url>`.
async fn open(target: &str) -> Arc<dyn TaskStore> {
    if let Some(path) = target.strip_prefix("sqlite:") {
        #[cfg(feature = "sqlite")]
        return Arc::new(ananta_store::SqliteStore::open(path).await.unwrap());
        #[cfg(not(feature = "sqlite"))]
        panic!("built without sqlite: {path}");
    }
    if let Some(url) = target.strip_prefix("postgres:") {
        #[cfg(feature = "postgres")]
        return Arc::new(ananta_store::PostgresStore::connect(url).await.unwrap());
        #[cfg(not(feature = "postgres"))]
        panic!("built without postgres: {url}");
    }
    panic!("unknown target {target}")
}

async fn child(target: String) {
    use std::io::Write;
    use std::time::Duration;

    use ananta_core::ids::AgentId;
    use ananta_core::task::{NewTask, TaskStatus};

    let store = open(&target).await;
    let me = AgentId::new(format!("child-{}", std::process::id())).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let task = store
            .create_task(
                NewTask::new(format!("crash {i}"))
                    .status(TaskStatus::Todo)
                    .into_task()
                    .unwrap(),
            )
            .await
            .unwrap();
        writeln!(out, "created {}", task.id).unwrap();
        out.flush().unwrap();
        if let Some(claim) = store
            .claim(me.clone(), Duration::from_secs(3600))
            .await
            .unwrap()
        {
            let id = claim.task_id;
            store.release(claim, TaskStatus::Done).await.unwrap();
            writeln!(out, "done {id}").unwrap();
            out.flush().unwrap();
        }
    }
}

async fn parent(backend: &str, target: String) {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use ananta_core::ids::TaskId;
    use ananta_core::task::{TaskFilter, TaskStatus};

    let exe = std::env::current_exe().unwrap();
    let mut state = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    let mut created_all = BTreeSet::new();
    let mut done_all = BTreeSet::new();
    for round in 1..=20 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = Duration::from_millis(50 + (state >> 33) % 400);
        let mut child = Command::new(&exe)
            .env("ANANTA_CRASH_CHILD", &target)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(kill_after);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Only whole lines count: a line cut by the kill was not acknowledged.
        let lines = reader.join().unwrap();
        let (mut created, mut done) = (0, 0);
        for line in &lines {
            if let Some(id) = line.strip_prefix("created ") {
                created_all.insert(id.parse::<TaskId>().unwrap());
                created += 1;
            } else if let Some(id) = line.strip_prefix("done ") {
                done_all.insert(id.parse::<TaskId>().unwrap());
                done += 1;
            }
        }

        let store = open(&target).await;
        for id in &created_all {
            let task = store
                .get_task(*id)
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged task {id} is gone: {e}"));
            if done_all.contains(id) {
                assert_eq!(
                    task.status,
                    TaskStatus::Done,
                    "round {round}: acknowledged completion of {id} lost"
                );
            }
            // Consistent: an active task holds a lease, a finished one does not.
            match task.status {
                TaskStatus::InProgress => assert!(
                    task.lease.is_some(),
                    "round {round}: {id} in progress without a lease"
                ),
                TaskStatus::Done | TaskStatus::Todo => assert!(
                    task.lease.is_none(),
                    "round {round}: {id} {} with a lease",
                    task.status
                ),
                other => panic!("round {round}: {id} in unexpected status {other}"),
            }
        }
        let listed = store.list_tasks(TaskFilter::default()).await.unwrap();
        assert!(
            listed.len() >= created_all.len(),
            "round {round}: list lost tasks"
        );
        drop(store);
        #[cfg(feature = "sqlite")]
        if let Some(path) = target.strip_prefix("sqlite:") {
            sqlite_integrity(path, round);
        }
        println!(
            "{backend} round {round:2}: killed after {kill_after:?}; {created} created and {done} completed acknowledged this round; all {} + {} present",
            created_all.len(),
            done_all.len()
        );
    }
    assert!(
        created_all.len() > 20,
        "the child made progress: {} tasks",
        created_all.len()
    );
}

#[cfg(feature = "sqlite")]
fn sqlite_integrity(path: &str, round: u32) {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let mut conn = diesel::sqlite::SqliteConnection::establish(path).unwrap();
    diesel::sql_query("PRAGMA busy_timeout = 5000")
        .execute(&mut conn)
        .unwrap();
    let check: Vec<Check> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        check[0].integrity_check, "ok",
        "round {round}: integrity check"
    );
}
