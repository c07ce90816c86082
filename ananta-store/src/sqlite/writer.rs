//! The writer thread: owns the one writing connection and commits the writes waiting at each
//! moment together (group commit).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use ananta_core::error::StoreError;
use diesel::RunQueryDsl;
use diesel::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use super::map_db;

/// Tells a caller how its write ended, once the transaction holding it has committed (or not).
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write, run in the batch's transaction. Returns its error, if any (for the batch to
/// judge), and how to tell its caller.
type Job = Box<dyn FnOnce(&mut SqliteConnection) -> (Option<StoreError>, Finish) + Send>;

diesel::define_sql_function! {
    /// SQLite's count of rows changed on this connection so far.
    fn total_changes() -> diesel::sql_types::BigInt;
}

/// Handle to the writer thread; the thread stops when the last handle is dropped (after
/// finishing what was queued).
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// Closes the queue and waits for the thread to finish the queued writes and close its
    /// connection, so the file is released when the store is dropped (a reopen right after
    /// does not find it locked).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

impl Writer {
    pub(crate) fn start(mut conn: SqliteConnection, max_batch: usize) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ananta-sqlite-writer".into())
            .spawn(move || {
                let mut batch = std::collections::VecDeque::new();
                while let Some(first) = next_job(&rx) {
                    batch.push_back(first);
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(job) => batch.push_back(job),
                            Err(_) => break,
                        }
                    }
                    // Writes a rolled-back batch did not reach stay queued for the next one.
                    while !batch.is_empty() {
                        if !run_batch(&mut conn, &mut batch) {
                            // After a panic the connection's transaction state cannot be
                            // trusted: stop, so every later write fails with `Unavailable`.
                            tracing::error!("the store's writer stopped after a panic");
                            return;
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the next batch and returns its result once the batch has committed.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn: &mut SqliteConnection| {
            let result = f(conn);
            let error = result.as_ref().err().cloned();
            let finish = Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            }) as Finish;
            (error, finish)
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closing".into()))?
            .send(job)
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
        rx.await.map_err(|_| {
            StoreError::Unavailable("the store's writer stopped before answering".into())
        })?
    }
}

/// How long the writer keeps looking for the next write before it sleeps: waking a sleeping
/// thread costs far more than a write (tens to hundreds of µs on virtual machines), and a busy
/// Hub sends its next write within this window.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// The next write: taken at once when one is waiting, else looked for during [`SPIN`], else
/// waited for. `None` when every handle is gone.
fn next_job(rx: &mpsc::Receiver<Job>) -> Option<Job> {
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < SPIN => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// Runs one batch in one transaction; false when a write panicked (the batch is rolled back).
///
/// The writes run one after the other without savepoints (a savepoint per write cost a
/// copy of every page it touched). That is safe because every write checks what it needs
/// before it changes anything: a write that fails having changed nothing (a broken rule, a
/// stale claim, one statement SQLite undid) leaves the others alone. A write that fails
/// after it changed rows (a database error midway) cannot be undone alone: the batch is
/// rolled back, the writes before it fail with an error that says so, and those after it
/// stay in `batch` for the next transaction.
fn run_batch(conn: &mut SqliteConnection, batch: &mut std::collections::VecDeque<Job>) -> bool {
    let mut finishers: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut panicked = false;
    // The write that failed midway, and where its finisher is.
    let mut broken: Option<(StoreError, usize)> = None;
    let outcome = conn.immediate_transaction::<_, diesel::result::Error, _>(|c| {
        while let Some(job) = batch.pop_front() {
            let before = diesel::select(total_changes()).get_result::<i64>(c);
            match std::panic::catch_unwind(AssertUnwindSafe(|| job(c))) {
                Ok((error, finish)) => {
                    finishers.push(finish);
                    if let Some(e) = error {
                        let after = diesel::select(total_changes()).get_result::<i64>(c);
                        if !matches!((&before, &after), (Ok(b), Ok(a)) if a == b) {
                            broken = Some((e, finishers.len() - 1));
                            return Err(diesel::result::Error::RollbackTransaction);
                        }
                    }
                }
                Err(_) => {
                    // Its answer channel is dropped: its caller gets `Unavailable`.
                    panicked = true;
                    return Err(diesel::result::Error::RollbackTransaction);
                }
            }
        }
        Ok(())
    });
    let mut broken_at = None;
    let commit = match (outcome, panicked, broken) {
        (_, true, _) => Err(StoreError::Unavailable(
            "a write in the same batch panicked; the batch was rolled back".into(),
        )),
        (_, false, Some((e, at))) => {
            tracing::error!(error = %e, writes = finishers.len(), "a write failed midway; its batch was rolled back");
            broken_at = Some(at);
            Err(StoreError::Unavailable(format!(
                "a write in the same batch failed midway ({e}); the batch was rolled back"
            )))
        }
        (Ok(()), false, None) => Ok(()),
        (Err(e), false, None) => {
            let e = map_db(e);
            tracing::error!(error = %e, writes = finishers.len(), "committing a batch of writes failed");
            Err(e)
        }
    };
    for (i, finish) in finishers.into_iter().enumerate() {
        // The write that failed midway answers with its own error.
        finish(if broken_at == Some(i) {
            Ok(())
        } else {
            commit.clone()
        });
    }
    !panicked
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::{Connection, SimpleConnection};

    fn writer(dir: &tempfile::TempDir) -> (Writer, String) {
        let path = dir.path().join("w.db").to_str().unwrap().to_string();
        let mut conn = SqliteConnection::establish(&path).unwrap();
        conn.batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL);")
            .unwrap();
        (Writer::start(conn, 64).unwrap(), path)
    }

    fn insert(v: i64) -> impl FnOnce(&mut SqliteConnection) -> Result<(), StoreError> {
        move |c| {
            c.batch_execute(&format!("INSERT INTO t (v) VALUES ({v})"))
                .map_err(map_db)
        }
    }

    fn rows(path: &str) -> Vec<i64> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            v: i64,
        }
        let mut conn = SqliteConnection::establish(path).unwrap();
        diesel::sql_query("SELECT v FROM t ORDER BY v")
            .load::<Row>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| r.v)
            .collect()
    }

    /// Holds the writer for a moment, so that the writes sent meanwhile form one batch.
    async fn in_one_batch<T: Send + 'static>(
        w: &Writer,
        writes: Vec<futures::future::BoxFuture<'_, T>>,
    ) -> Vec<T> {
        let hold = w.run(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        });
        let (held, results) = tokio::join!(hold, async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            futures::future::join_all(writes).await
        });
        held.unwrap();
        results
    }

    #[tokio::test]
    async fn a_write_failing_before_it_changes_anything_leaves_its_batch_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = writer(&dir);
        let results = in_one_batch(
            &w,
            vec![
                Box::pin(w.run(insert(1))),
                Box::pin(w.run(|_| Err::<(), _>(StoreError::InvalidInput("no".into())))),
                Box::pin(w.run(insert(2))),
            ],
        )
        .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(&results[1], Err(StoreError::InvalidInput(m)) if m == "no"));
        drop(w);
        assert_eq!(rows(&path), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_write_failing_midway_rolls_back_what_ran_with_it_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = writer(&dir);
        let results = in_one_batch(
            &w,
            vec![
                Box::pin(w.run(insert(1))),
                Box::pin(w.run(|c| {
                    insert(2)(c)?;
                    Err::<(), _>(StoreError::Backend("disk trouble".into()))
                })),
                Box::pin(w.run(insert(3))),
            ],
        )
        .await;
        assert!(
            matches!(&results[1], Err(StoreError::Backend(m)) if m == "disk trouble"),
            "the failing write gets its own error: {results:?}"
        );
        assert!(
            matches!(&results[0], Err(StoreError::Unavailable(m)) if m.contains("failed midway")),
            "a write before it in the batch was rolled back and says so: {results:?}"
        );
        assert!(
            results[2].is_ok(),
            "a write after it runs in the next transaction: {results:?}"
        );
        // The writer goes on with the next batch.
        w.run(insert(4)).await.unwrap();
        drop(w);
        assert_eq!(
            rows(&path),
            vec![3, 4],
            "nothing of the rolled-back batch stays"
        );
    }
}
