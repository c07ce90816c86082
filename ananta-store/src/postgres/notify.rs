//! Wake-ups through `LISTEN`/`NOTIFY`: one listening connection per store, fanned out to any
//! number of waiters through a `watch` channel counting the notifications.

use std::time::Duration;

use ananta_core::error::StoreError;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures::StreamExt;
use tokio::sync::watch;

use super::{NOTIFY_CHANNEL, establish, map_db};

/// How often the listener checks that its connection still works when nothing arrives.
const HEALTH_CHECK: Duration = Duration::from_secs(30);
/// Longest pause between attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Fires when a task may have become claimable; from
/// [`PostgresStore::work_signal`](super::PostgresStore::work_signal).
///
/// A signal remembers events between waits: an event that arrives while its holder is busy
/// (claiming, working) makes the next [`wait`](Self::wait) return at once. Cheap to create;
/// each holder should have its own.
#[derive(Debug, Clone)]
pub struct WorkSignal {
    rx: watch::Receiver<u64>,
}

impl WorkSignal {
    pub(super) fn new(mut rx: watch::Receiver<u64>) -> Self {
        rx.mark_unchanged();
        Self { rx }
    }

    /// Waits until a task may have become claimable since the signal was taken or last
    /// fired (`true`), or `timeout` passes (`false`). A `true` is also given after the
    /// listening connection was lost and re-established, as notifications may have been
    /// missed meanwhile. If the listener has stopped for good, this waits out `timeout` and
    /// gives `false`: callers fall back to polling.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.rx.changed()).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Err(_) => false,
        }
    }
}

/// Opens the listening connection and starts the task that serves it.
pub(super) async fn start(
    url: String,
    target: String,
    timeout: Duration,
) -> Result<watch::Receiver<u64>, StoreError> {
    let conn = listen(&url, &target, timeout).await?;
    let (tx, rx) = watch::channel(0_u64);
    tokio::spawn(serve(conn, url, target, timeout, tx));
    Ok(rx)
}

async fn listen(
    url: &str,
    target: &str,
    timeout: Duration,
) -> Result<AsyncPgConnection, StoreError> {
    let mut conn = establish(url, target, timeout).await?;
    conn.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await
        .map_err(map_db)?;
    Ok(conn)
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|n| *n = n.wrapping_add(1));
}

/// Forwards notifications until every receiver is gone; reconnects when the connection is
/// lost (waking the waiters, who may have missed notifications meanwhile).
async fn serve(
    mut conn: AsyncPgConnection,
    url: String,
    target: String,
    timeout: Duration,
    tx: watch::Sender<u64>,
) {
    loop {
        // Serve the connection until it breaks.
        loop {
            let healthy = {
                let mut stream = std::pin::pin!(conn.notifications_stream());
                loop {
                    tokio::select! {
                        () = tx.closed() => return,
                        item = stream.next() => match item {
                            Some(Ok(_)) => bump(&tx),
                            Some(Err(e)) => {
                                tracing::warn!(%target, error = %e, "the store's listening connection failed");
                                break false;
                            }
                            None => break false,
                        },
                        // Quiet for a while (the timer restarts with every notification).
                        () = tokio::time::sleep(HEALTH_CHECK) => break true,
                    }
                }
            };
            if !healthy {
                break;
            }
            // Quiet for a while: make sure the connection still works.
            match tokio::time::timeout(timeout, conn.batch_execute("SELECT 1")).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%target, error = %e, "the store's listening connection failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!(%target, "the store's listening connection stopped answering");
                    break;
                }
            }
        }
        // Reconnect, with growing pauses.
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            match listen(&url, &target, timeout).await {
                Ok(new) => {
                    conn = new;
                    tracing::info!(%target, "the store's listening connection is back");
                    bump(&tx);
                    break;
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "reconnecting the store's listener failed");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
