//! The writer thread: owns the one writing connection and commits the writes waiting at each
//! moment together (group commit).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use ananta_core::error::StoreError;
use diesel::connection::Connection;
use diesel::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use super::{TxError, map_db};

/// Tells a caller how its write ended, once the transaction holding it has committed (or not).
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write. Given `alone = false` it runs in its own savepoint inside the batch's
/// transaction; alone in its batch it runs in the transaction itself (a savepoint would only
/// cost two more statements). Returns whether it succeeded, and how to tell its caller.
type Job = Box<dyn FnOnce(&mut SqliteConnection, bool) -> (bool, Finish) + Send>;

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
                while let Some(first) = next_job(&rx) {
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    if !run_batch(&mut conn, batch) {
                        // After a panic the connection's transaction state cannot be trusted:
                        // stop, so every later write fails with `Unavailable` instead.
                        tracing::error!("the store's writer stopped after a panic");
                        return;
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
        let job: Job = Box::new(move |conn: &mut SqliteConnection, alone: bool| {
            let result = if alone {
                f(conn)
            } else {
                // A savepoint: a failing write is undone alone, the batch goes on.
                conn.transaction(|c| f(c).map_err(TxError::Store))
                    .map_err(TxError::into_store)
            };
            let ok = result.is_ok();
            let finish = Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            }) as Finish;
            (ok, finish)
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
fn run_batch(conn: &mut SqliteConnection, batch: Vec<Job>) -> bool {
    let mut finishers: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut panicked = false;
    let alone = batch.len() == 1;
    // A lone write that failed: its transaction is rolled back, which is all it needs.
    let mut failed_alone = false;
    let outcome = conn.immediate_transaction::<_, diesel::result::Error, _>(|c| {
        for job in batch {
            match std::panic::catch_unwind(AssertUnwindSafe(|| job(c, alone))) {
                Ok((ok, finish)) => {
                    finishers.push(finish);
                    if alone && !ok {
                        failed_alone = true;
                        return Err(diesel::result::Error::RollbackTransaction);
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
    let commit = match (outcome, panicked) {
        (_, true) => Err(StoreError::Unavailable(
            "a write in the same batch panicked; the batch was rolled back".into(),
        )),
        (Ok(()), false) => Ok(()),
        // Rolled back on purpose; the write reports its own error.
        (Err(diesel::result::Error::RollbackTransaction), false) if failed_alone => Ok(()),
        (Err(e), false) => {
            let e = map_db(e);
            tracing::error!(error = %e, writes = finishers.len(), "committing a batch of writes failed");
            Err(e)
        }
    };
    for finish in finishers {
        finish(commit.clone());
    }
    !panicked
}
