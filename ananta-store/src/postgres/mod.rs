//! [`PostgresStore`]: a [`TaskStore`](ananta_core::store::TaskStore) on a PostgreSQL server, shared by any number of hubs.

use std::sync::Arc;
use std::time::Duration;

use ananta_core::error::StoreError;
use ananta_core::store::Claim;
use ananta_core::task::{Task, TaskStatus};
use diesel::prelude::*;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{OnceCell, watch};

pub use self::notify::WorkSignal;
use self::schema::{task_steps, tasks, templates};
use crate::rules;
use crate::sql::{count_to_u64, i64_of, micros, parse_task_id};

mod claims;
mod migrate;
mod notify;
mod prepared;
mod registry;
mod rows;
mod schema;
mod store;
#[cfg(test)]
mod tests;

use claims::*;
use rows::*;

/// The PostgreSQL schema's migrations, for hosts that migrate their databases themselves
/// (connect with [`PostgresOptions::run_migrations`] off, and run these with
/// `diesel_migrations`).
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The channel on which the store announces tasks that became claimable; the payload is the
/// task id.
pub(crate) const NOTIFY_CHANNEL: &str = "ananta_tasks";

/// How to connect a [`PostgresStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Most connections the store's pool opens (default 8). Connections are opened on demand;
    /// [`PostgresStore::wait_for_work`] uses one more, of its own.
    pub pool_size: u32,
    /// How long connecting to the server may take, and how long an operation waits for a free
    /// connection of the pool (default 10 s). Past it the operation fails with
    /// [`StoreError::Unavailable`].
    pub connect_timeout: Duration,
    /// Apply pending migrations on connect (default on). Off: the database must already be at
    /// this code's schema version ([`POSTGRES_MIGRATIONS`]), or connecting fails.
    pub run_migrations: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            run_migrations: true,
        }
    }
}

impl PostgresOptions {
    /// Sets the largest number of pooled connections (at least 1).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the connect timeout (also the longest wait for a pooled connection).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether connecting applies pending migrations.
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }
}

type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A [`TaskStore`](ananta_core::store::TaskStore) on a PostgreSQL server: several hubs (processes, machines) can share one
/// board. The client is pure Rust (`diesel-async` on `tokio-postgres`); no libpq is needed.
///
/// - **Rows**: each task, template, step and log entry is kept as JSONB in `data`, with copies
///   of the fields the store looks up by (status, priority, assignment, template, lease, fence,
///   version) in indexed columns. Every write updates both in the same statement, so they
///   never disagree; reads use `data` alone.
/// - **Changes** (`update_task`, `append_step`, `renew`, `release`, …) run in one transaction:
///   the task row is locked (`SELECT … FOR UPDATE`), the rule of [`TaskStore`](ananta_core::store::TaskStore) is applied to
///   it in Rust, and the result is written back, so concurrent changes of one task are
///   serialized and a stale fencing token is always detected.
/// - **Claims** are one statement that picks the claimable tasks in claim order, skipping rows
///   other claimers hold at that moment (`FOR UPDATE SKIP LOCKED`), and takes them, expired
///   leases included: many claimers on many hubs never get the same task and never wait on
///   each other. [`claim_many`](ananta_core::store::TaskStore::claim_many) takes a batch in the same statement.
/// - **Wake-ups**: when a task becomes claimable (created or updated into `todo`, released to
///   `todo`) the store sends `NOTIFY ananta_tasks` with the commit; idle claimers wait with
///   [`wait_for_work`](Self::wait_for_work) or a [`WorkSignal`] instead of polling.
/// - The schema is migrated on connect ([`POSTGRES_MIGRATIONS`]) under an advisory lock, so
///   hubs starting together do not race; a database written by newer code is refused with
///   [`StoreError::IncompatibleSchema`]. An unreachable server fails with
///   [`StoreError::Unavailable`] within [`PostgresOptions::connect_timeout`].
///
/// Lease expiry uses the clocks of the hubs (like every backend): keep them in sync.
/// It follows the rules of [`TaskStore`](ananta_core::store::TaskStore) and passes the [`conformance`](crate#conformance-suite)
/// suite. Cheap to clone; clones share the pool.
///
/// ```no_run
/// use std::time::Duration;
/// use ananta_core::ids::AgentId;
/// use ananta_core::store::TaskStore;
/// use ananta_core::task::{NewTask, TaskStatus};
/// use ananta_store::{PostgresOptions, PostgresStore};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect_with(
///     "postgres://ananta@db.internal:5432/ananta",
///     PostgresOptions::default().pool_size(16),
/// )
/// .await?;
/// store
///     .create_task(NewTask::new("index the docs").status(TaskStatus::Todo).into_task()?)
///     .await?;
///
/// let me = AgentId::new("worker-1")?;
/// loop {
///     let mut signal = store.work_signal().await?;
///     match store.claim(me.clone(), Duration::from_secs(60)).await? {
///         Some(claim) => {
///             // … do the work, renewing the claim now and then …
///             store.release(claim, TaskStatus::Done).await?;
///         }
///         // Nothing to do: sleep until a task becomes claimable (or 30 s pass).
///         None => {
///             signal.wait(Duration::from_secs(30)).await;
///         }
///     }
/// #   break;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection URL.
    url: String,
    /// The URL without password or parameters, for messages.
    target: String,
    options: PostgresOptions,
    pool: Pool,
    /// The notification listener, started on first use.
    listener: OnceCell<watch::Receiver<u64>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.inner.target)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// default options, migrating its schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to the database at `url`.
    ///
    /// Fails with [`StoreError::Unavailable`] when the server cannot be reached (or does not
    /// answer within [`PostgresOptions::connect_timeout`]), [`StoreError::InvalidInput`] for a
    /// malformed URL, [`StoreError::Backend`] when the server refuses (authentication, missing
    /// database), and [`StoreError::IncompatibleSchema`] for a database written by newer code.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let target = redact(url);
        let timeout = options.connect_timeout;
        let conn = establish(url, &target, timeout).await?;
        let conn = migrate::migrate(conn, target.clone(), options.run_migrations).await?;

        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        // A connection whose server went away fails its next query with `Unavailable` and is
        // then dropped by the pool; checking every connection before each use would cost a
        // round trip per operation.
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(move |url| {
            let url = url.to_string();
            async move {
                let mut conn = tokio::time::timeout(timeout, AsyncPgConnection::establish(&url))
                    .await
                    .unwrap_or_else(|_| {
                        Err(diesel::ConnectionError::BadConnection(format!(
                            "no answer within {timeout:?}"
                        )))
                    })?;
                session_setup(&mut conn)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        let pool = bb8::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .build_unchecked(manager);
        // The migrating connection becomes the pool's first one (when the pool is full, it
        // is simply closed).
        let mut conn = conn;
        session_setup(&mut conn).await.map_err(map_db)?;
        let _ = pool.add(conn);
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_string(),
                target,
                options,
                pool,
                listener: OnceCell::new(),
            }),
        })
    }

    /// Starts listening for tasks that become claimable, and returns a signal that fires for
    /// every such event from now on (see [`WorkSignal`]). The first call opens the store's
    /// listening connection (one per store, shared by every signal and clone); later calls are
    /// cheap.
    ///
    /// To never miss a wake-up, take the signal *before* looking for work: a task created
    /// between a claim that found nothing and the wait still wakes the waiter.
    pub async fn work_signal(&self) -> Result<WorkSignal, StoreError> {
        let inner = &self.inner;
        let rx = inner
            .listener
            .get_or_try_init(|| {
                notify::start(
                    inner.url.clone(),
                    inner.target.clone(),
                    inner.options.connect_timeout,
                )
            })
            .await?;
        Ok(WorkSignal::new(rx.clone()))
    }

    /// Waits until a task becomes claimable (`Ok(true)`) or `timeout` passes (`Ok(false)`),
    /// using PostgreSQL's `LISTEN`/`NOTIFY` on a dedicated connection instead of polling.
    ///
    /// A `true` means "try to claim now", not that a claim will succeed: another claimer may
    /// be faster, and a lost listening connection also wakes waiters (notifications may have
    /// been missed while it was down). Expired leases are not announced (nothing changes in
    /// the database when a lease runs out), so keep `timeout` at most about a lease long.
    /// Only events after the call count; see [`work_signal`](Self::work_signal) to never miss
    /// one.
    pub async fn wait_for_work(&self, timeout: Duration) -> Result<bool, StoreError> {
        let mut signal = self.work_signal().await?;
        Ok(signal.wait(timeout).await)
    }

    /// [`TaskStore::release`] as one statement: the same changes as [`rules::release`], made
    /// only when `claim` holds the task's current lease and the task may move to `status`.
    /// `None` when the statement changed nothing (the caller then takes the general path).
    async fn release_fast(
        &self,
        claim: &Claim,
        status: TaskStatus,
    ) -> Result<Option<Task>, StoreError> {
        let mut statement = prepared::ReleaseManyStatement::new()?;
        statement.push(claim, status)?;
        let row: Option<ReleasedRow> = self
            .run(move |c| {
                async move { statement.get_result(c).await.optional().map_err(map_db) }.boxed()
            })
            .await?;
        match row {
            Some(row) => {
                let task = row.into_task()?;
                tracing::debug!(task = %task.id, agent = %claim.agent, token = claim.token, %status, "claim released");
                Ok(Some(task))
            }
            None => Ok(None),
        }
    }

    /// The server and database this store is connected to (without the password).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Runs `f` in a transaction on a pooled connection.
    async fn tx<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> BoxFuture<'r, Result<T, TxError>>
            + Send
            + 'static,
    {
        let mut conn = self.conn().await?;
        let conn: &mut AsyncPgConnection = &mut conn;
        conn.transaction(async move |c| f(c).await)
            .await
            .map_err(TxError::into_store)
    }

    /// Runs `f` on a pooled connection, outside a transaction (for single statements).
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> BoxFuture<'r, Result<T, StoreError>>,
    {
        let mut conn = self.conn().await?;
        f(&mut conn).await
    }

    async fn conn(
        &self,
    ) -> Result<
        bb8::PooledConnection<'_, AsyncDieselConnectionManager<AsyncPgConnection>>,
        StoreError,
    > {
        self.inner.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(PoolError::ConnectionError(e)) => {
                connect_error(&self.inner.target, &e)
            }
            bb8::RunError::User(PoolError::QueryError(e)) => map_db(e),
            bb8::RunError::TimedOut => StoreError::Unavailable(format!(
                "{}: no database connection within {:?}",
                self.inner.target, self.inner.options.connect_timeout
            )),
        })
    }
}

/// Opens one connection, within `timeout`.
pub(crate) async fn establish(
    url: &str,
    target: &str,
    timeout: Duration,
) -> Result<AsyncPgConnection, StoreError> {
    match tokio::time::timeout(timeout, AsyncPgConnection::establish(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(target, &e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {target}: no answer within {timeout:?}"
        ))),
    }
}

/// Maps a failure to connect: the server refusing us (credentials, missing database) is not
/// transient; everything else (refused, reset, timed out, shutting down) is.
fn connect_error(target: &str, e: &diesel::ConnectionError) -> StoreError {
    let text = e.to_string();
    let message = format!("cannot connect to PostgreSQL at {target}: {text}");
    match e {
        diesel::ConnectionError::InvalidConnectionUrl(_) => StoreError::InvalidInput(message),
        _ if text.contains("invalid connection string")
            || text.contains("invalid configuration")
            || text.contains("unexpected EOF parsing") =>
        {
            StoreError::InvalidInput(message)
        }
        _ if text.contains("authentication")
            || text.contains("pg_hba.conf")
            || text.contains("does not exist")
            || text.contains("permission denied") =>
        {
            StoreError::Backend(message)
        }
        _ => StoreError::Unavailable(message),
    }
}

/// `url` without its password and parameters, for messages.
fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(a connection string)".to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// A store error carried through diesel's transaction API.
#[derive(Debug)]
pub(crate) enum TxError {
    Store(StoreError),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    pub(crate) fn into_store(self) -> StoreError {
        match self {
            TxError::Store(e) => e,
            TxError::Db(e) => map_db(e),
        }
    }
}

/// Maps a database error of a running store.
pub(crate) fn map_db(e: diesel::result::Error) -> StoreError {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    let text = e.to_string();
    match &e {
        Error::DatabaseError(Kind::UniqueViolation, _) => StoreError::AlreadyExists(text),
        Error::DatabaseError(Kind::ForeignKeyViolation, _) => StoreError::InUse(text),
        Error::DatabaseError(
            Kind::SerializationFailure | Kind::ClosedConnection | Kind::UnableToSendCommand,
            _,
        ) => StoreError::Unavailable(text),
        Error::DatabaseError(Kind::ReadOnlyTransaction, _) => StoreError::ReadOnly(text),
        Error::DeserializationError(_) => StoreError::Corrupt(text),
        Error::BrokenTransactionManager => StoreError::Unavailable(text),
        _ if text.contains("read-only transaction") => StoreError::ReadOnly(text),
        _ if is_transient(&text) => StoreError::Unavailable(text),
        _ => StoreError::Backend(text),
    }
}

fn is_transient(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "deadlock detected",
        "could not serialize",
        "connection",
        "terminating",
        "timed out",
        "timeout",
        "the database system is",
        "too many clients",
        "server closed",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}
