//! [`PostgresStore`]: a [`TaskStore`] on a PostgreSQL server, shared by any number of hubs.

mod migrate;
mod notify;
mod prepared;
mod registry;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use ananta_core::error::StoreError;
use ananta_core::ids::{AgentId, TaskId, TemplateId};
use ananta_core::log::{LogEntry, LogQuery};
use ananta_core::store::{Claim, TaskStore, validate_lease};
use ananta_core::task::{StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use ananta_core::template::{Template, TemplateUpdate};
use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text};
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

/// A [`TaskStore`] on a PostgreSQL server: several hubs (processes, machines) can share one
/// board. The client is pure Rust (`diesel-async` on `tokio-postgres`); no libpq is needed.
///
/// - **Rows**: each task, template, step and log entry is kept as JSONB in `data`, with copies
///   of the fields the store looks up by (status, priority, assignment, template, lease, fence,
///   version) in indexed columns. Every write updates both in the same statement, so they
///   never disagree; reads use `data` alone.
/// - **Changes** (`update_task`, `append_step`, `renew`, `release`, …) run in one transaction:
///   the task row is locked (`SELECT … FOR UPDATE`), the rule of [`TaskStore`] is applied to
///   it in Rust, and the result is written back, so concurrent changes of one task are
///   serialized and a stale fencing token is always detected.
/// - **Claims** are one statement that picks the claimable tasks in claim order, skipping rows
///   other claimers hold at that moment (`FOR UPDATE SKIP LOCKED`), and takes them, expired
///   leases included: many claimers on many hubs never get the same task and never wait on
///   each other. [`claim_many`](TaskStore::claim_many) takes a batch in the same statement.
/// - **Wake-ups**: when a task becomes claimable (created or updated into `todo`, released to
///   `todo`) the store sends `NOTIFY ananta_tasks` with the commit; idle claimers wait with
///   [`wait_for_work`](Self::wait_for_work) or a [`WorkSignal`] instead of polling.
/// - The schema is migrated on connect ([`POSTGRES_MIGRATIONS`]) under an advisory lock, so
///   hubs starting together do not race; a database written by newer code is refused with
///   [`StoreError::IncompatibleSchema`]. An unreachable server fails with
///   [`StoreError::Unavailable`] within [`PostgresOptions::connect_timeout`].
///
/// Lease expiry uses the clocks of the hubs (like every backend): keep them in sync.
/// It follows the rules of [`TaskStore`] and passes the [`conformance`](crate#conformance-suite)
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

// ---- rows ----

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Backend(format!("encoding a row: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Corrupt(format!("unreadable {what} row: {e}")))
}

fn limit_of(n: Option<usize>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// A task's steps as one JSON array, read in the same statement (and so the same snapshot)
/// as the task.
const STEPS: &str = "COALESCE((SELECT jsonb_agg(s.data ORDER BY s.idx) FROM task_steps s \
                     WHERE s.task_id = t.id), '[]'::jsonb)";

#[derive(QueryableByName)]
struct TaskRow {
    #[diesel(sql_type = Jsonb)]
    data: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    steps: serde_json::Value,
}

impl TaskRow {
    fn into_task(self) -> Result<Task, StoreError> {
        let mut task: Task = from_json("task", self.data)?;
        task.steps = from_json("step", self.steps)?;
        Ok(task)
    }
}

/// Reads a task with its steps, in one statement.
async fn read_task(conn: &mut AsyncPgConnection, id: TaskId) -> Result<Task, StoreError> {
    let row: Option<TaskRow> = diesel::sql_query(format!(
        "SELECT t.data, {STEPS} AS steps FROM tasks t WHERE t.id = $1"
    ))
    .bind::<Text, _>(id.to_string())
    .get_result(conn)
    .await
    .optional()
    .map_err(map_db)?;
    row.ok_or(StoreError::TaskNotFound(id))?.into_task()
}

/// Locks a task's row for the rest of the transaction and reads it with its steps. The steps
/// are read after the lock is held, so they include every step committed before.
async fn lock_task(conn: &mut AsyncPgConnection, id: TaskId) -> Result<Task, TxError> {
    let data: Option<serde_json::Value> = tasks::table
        .find(id.to_string())
        .select(tasks::data)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let data = data.ok_or(StoreError::TaskNotFound(id))?;
    let mut task: Task = from_json("task", data)?;
    let steps: Vec<serde_json::Value> = task_steps::table
        .filter(task_steps::task_id.eq(id.to_string()))
        .order(task_steps::idx.asc())
        .select(task_steps::data)
        .load(conn)
        .await?;
    task.steps = steps
        .into_iter()
        .map(|s| from_json("step", s))
        .collect::<Result<_, _>>()?;
    Ok(task)
}

/// Writes a task's row (not its steps) from the task: the JSON and every indexed column.
async fn save_task(conn: &mut AsyncPgConnection, task: &Task, insert: bool) -> Result<(), TxError> {
    let mut body = task.clone();
    body.steps = Vec::new();
    let data = to_json(&body)?;
    let id = task.id.to_string();
    let values = (
        tasks::status.eq(task.status.as_str()),
        tasks::priority.eq(task.priority as i32),
        tasks::assigned_agent.eq(task.assigned_agent.as_ref().map(ToString::to_string)),
        tasks::template_id.eq(task.template_id.map(|t| t.to_string())),
        tasks::lease_agent.eq(task.lease.as_ref().map(|l| l.agent.to_string())),
        tasks::lease_token.eq(task.lease.as_ref().map(|l| i64_of(l.token)).transpose()?),
        tasks::lease_expires_at.eq(task.lease.as_ref().map(|l| micros(l.expires_at))),
        tasks::fence.eq(i64_of(task.fence)?),
        tasks::version.eq(i64_of(task.version)?),
        tasks::data.eq(data),
    );
    if insert {
        diesel::insert_into(tasks::table)
            .values((tasks::id.eq(&id), values))
            .execute(conn)
            .await?;
    } else {
        diesel::update(tasks::table.find(&id))
            .set(values)
            .execute(conn)
            .await?;
    }
    if task.status == TaskStatus::Todo {
        announce(conn, task.id).await?;
    }
    Ok(())
}

/// Tells listeners (on commit) that a task may have become claimable.
async fn announce(conn: &mut AsyncPgConnection, id: TaskId) -> Result<(), TxError> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(NOTIFY_CHANNEL)
        .bind::<Text, _>(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_step(
    conn: &mut AsyncPgConnection,
    id: TaskId,
    step: &StepRecord,
) -> Result<(), TxError> {
    diesel::insert_into(task_steps::table)
        .values((
            task_steps::task_id.eq(id.to_string()),
            task_steps::idx.eq(i32::try_from(step.index).unwrap_or(i32::MAX)),
            task_steps::data.eq(to_json(step)?),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

async fn template_exists(conn: &mut AsyncPgConnection, id: TemplateId) -> Result<bool, TxError> {
    Ok(
        diesel::select(diesel::dsl::exists(templates::table.find(id.to_string())))
            .get_result(conn)
            .await?,
    )
}

async fn load_template(conn: &mut AsyncPgConnection, id: TemplateId) -> Result<Template, TxError> {
    let data: Option<serde_json::Value> = templates::table
        .find(id.to_string())
        .select(templates::data)
        .first(conn)
        .await
        .optional()?;
    Ok(from_json(
        "template",
        data.ok_or(StoreError::TemplateNotFound(id))?,
    )?)
}

async fn name_taken(
    conn: &mut AsyncPgConnection,
    name: &str,
    except: TemplateId,
) -> Result<bool, TxError> {
    Ok(diesel::select(diesel::dsl::exists(
        templates::table
            .filter(templates::name.eq(name))
            .filter(templates::id.ne(except.to_string())),
    ))
    .get_result(conn)
    .await?)
}

/// A foreign-key failure while writing a task means its template is gone (deleted
/// concurrently, after the check).
fn template_gone(e: TxError, template: Option<TemplateId>) -> TxError {
    match (e, template) {
        (
            TxError::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _,
            )),
            Some(t),
        ) => TxError::Store(StoreError::TemplateNotFound(t)),
        (e, _) => e,
    }
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Integer)]
    priority: i32,
    #[diesel(sql_type = BigInt)]
    token: i64,
}

/// Settings of every pooled connection. Bitmap scans are off: on a queue table the
/// statistics lag far behind the data, and with them PostgreSQL estimated a handful of
/// claimable tasks where there were tens of thousands, and chose to read all of them through
/// a bitmap and sort them, for every claim, instead of reading the first few in index order
/// (a claim took milliseconds instead of microseconds). The store's other statements are
/// served as well by plain index scans.
async fn session_setup(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel_async::SimpleAsyncConnection::batch_execute(conn, "SET enable_bitmapscan = off").await
}

/// [`TaskStore::release`] inside a transaction, the general way: lock the row, apply
/// [`rules::release`], save. For the claims the one-statement form left alone (it already ran
/// for them and changed nothing), so this path reports exactly what is wrong. A rule broken
/// is `Ok(Err(_))`; a database error aborts the transaction (`Err`).
async fn release_general(
    c: &mut AsyncPgConnection,
    claim: &Claim,
    status: TaskStatus,
) -> Result<Result<Task, StoreError>, TxError> {
    let mut task = match lock_task(c, claim.task_id).await {
        Ok(task) => task,
        Err(TxError::Store(e)) => return Ok(Err(e)),
        Err(e) => return Err(e),
    };
    if let Err(e) = rules::release(&mut task, claim, status, Utc::now()) {
        return Ok(Err(e));
    }
    save_task(c, &task, false).await?;
    Ok(Ok(task))
}

/// The release statement, of [`TaskStore::release_many`] and (with one claim) of
/// [`PostgresStore::release_fast`]: the same changes as [`rules::release`] for many claims at
/// once, given as parallel arrays (`$1` task ids, `$2` tokens, `$3` agents, `$4` new
/// statuses, `$5` the statuses each task may leave, comma-separated; `$6` the time as JSON).
/// Each task whose claim is current and whose move is allowed is released; the others are
/// left alone. Returns the released tasks with their steps.
fn release_many_sql() -> String {
    let todo = TaskStatus::Todo.as_str();
    format!(
        "WITH r AS ( \
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
             AS r(id, token, agent, status, from_statuses)), \
         upd AS ( \
           UPDATE tasks t SET \
             status = r.status, \
             assigned_agent = CASE WHEN r.status = '{todo}' THEN NULL ELSE t.assigned_agent END, \
             lease_agent = NULL, lease_token = NULL, lease_expires_at = NULL, \
             version = t.version + 1, \
             data = t.data || jsonb_build_object('status', r.status, 'lease', NULL::jsonb, \
                                'version', t.version + 1, 'updated_at', $6::jsonb) \
                    || CASE WHEN r.status = '{todo}' \
                            THEN jsonb_build_object('assigned_agent', NULL::jsonb) \
                            ELSE '{{}}'::jsonb END \
           FROM r \
           WHERE t.id = r.id AND t.lease_token = r.token AND t.lease_agent = r.agent \
             AND t.status = ANY(string_to_array(r.from_statuses, ',')) \
           RETURNING t.id, t.status, t.data), \
         note AS (SELECT pg_notify('{NOTIFY_CHANNEL}', id) FROM upd WHERE status = '{todo}') \
       SELECT t.id, t.data, {STEPS} AS steps FROM upd t WHERE (SELECT count(*) FROM note) >= 0"
    )
}

#[derive(QueryableByName)]
struct ReleasedRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Jsonb)]
    data: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    steps: serde_json::Value,
}

impl ReleasedRow {
    fn into_task(self) -> Result<Task, StoreError> {
        TaskRow {
            data: self.data,
            steps: self.steps,
        }
        .into_task()
    }
}

/// The claim statement: picks up to `$6` tasks `$1` may claim at `$3` (the SQL form of
/// [`rules::is_claimable`]) in claim order ([`rules::claim_order`]), skipping rows other
/// transactions hold, and takes them as [`rules::claim`] does: in progress, assigned to the
/// claimer, a new fencing token (`fence + 1`), a lease until `$2`, the next version, and the
/// same changes merged into `data` (`$4`: status, assignee and change time; `$5`: the lease
/// without its token).
///
/// Three arms, each its own `SELECT … FOR UPDATE SKIP LOCKED` on an index made for it (see
/// the `claim_indexes` migration): unassigned `todo` tasks (`tasks_open`, whose predicate the
/// arm repeats word for word so that no other index competes), `todo` tasks assigned to the
/// claimer (`tasks_mine`), and expired leases (`tasks_rescue`). Each stops after `$6` rows in
/// claim order; the final `LIMIT` takes the first `$6` of all three. Rows an arm locked but
/// the final `LIMIT` leaves out are unlocked when the statement's transaction ends.
fn claim_sql() -> String {
    let todo = TaskStatus::Todo.as_str();
    let in_progress = TaskStatus::InProgress.as_str();
    let proposing = TaskStatus::Proposing.as_str();
    format!(
        "UPDATE tasks SET \
             status = '{in_progress}', \
             assigned_agent = $1, \
             lease_agent = $1, \
             lease_token = fence + 1, \
             lease_expires_at = $2, \
             fence = fence + 1, \
             version = version + 1, \
             data = data || $4 || jsonb_build_object( \
                 'fence', fence + 1, \
                 'version', version + 1, \
                 'lease', $5 || jsonb_build_object('token', fence + 1)) \
         WHERE id IN ( \
             WITH open AS ( \
                 SELECT id, priority FROM tasks \
                 WHERE (status = '{todo}' AND assigned_agent IS NULL) IS TRUE \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= $3) \
                 ORDER BY priority DESC, id \
                 LIMIT $6 \
                 FOR UPDATE SKIP LOCKED), \
             mine AS ( \
                 SELECT id, priority FROM tasks \
                 WHERE status = '{todo}' AND assigned_agent = $1 \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= $3) \
                 ORDER BY priority DESC, id \
                 LIMIT $6 \
                 FOR UPDATE SKIP LOCKED), \
             rescue AS ( \
                 SELECT id, priority FROM tasks \
                 WHERE status IN ('{in_progress}', '{proposing}') \
                   AND lease_token IS NOT NULL AND lease_expires_at <= $3 \
                 ORDER BY priority DESC, id \
                 LIMIT $6 \
                 FOR UPDATE SKIP LOCKED) \
             SELECT id FROM ( \
                 SELECT * FROM open UNION ALL SELECT * FROM mine \
                 UNION ALL SELECT * FROM rescue) c \
             ORDER BY priority DESC, id \
             LIMIT $6) \
         RETURNING id, priority, lease_token AS token"
    )
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn create_task(&self, task: Task) -> Result<Task, StoreError> {
        let task = rules::new_task(task)?;
        self.tx(move |c| {
            async move {
                let exists: bool =
                    diesel::select(diesel::dsl::exists(tasks::table.find(task.id.to_string())))
                        .get_result(c)
                        .await?;
                if exists {
                    return Err(StoreError::AlreadyExists(format!("task {}", task.id)).into());
                }
                if let Some(template) = task.template_id
                    && !template_exists(c, template).await?
                {
                    return Err(StoreError::TemplateNotFound(template).into());
                }
                save_task(c, &task, true)
                    .await
                    .map_err(|e| template_gone(e, task.template_id))?;
                for step in &task.steps {
                    insert_step(c, task.id, step).await?;
                }
                Ok(task)
            }
            .boxed()
        })
        .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.run(move |c| read_task(c, id).boxed()).await
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.run(move |c| {
            async move {
                let statuses: Vec<String> = filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect();
                let rows: Vec<TaskRow> = diesel::sql_query(format!(
                    "SELECT t.data, {STEPS} AS steps FROM tasks t \
                     WHERE (cardinality($1::text[]) = 0 OR t.status = ANY($1)) \
                       AND ($2::text IS NULL OR t.assigned_agent = $2) \
                       AND ($3::text IS NULL OR jsonb_exists(t.data -> 'tags', $3)) \
                     ORDER BY t.id \
                     LIMIT $4"
                ))
                .bind::<Array<Text>, _>(statuses)
                .bind::<Nullable<Text>, _>(filter.assigned_agent.as_ref().map(ToString::to_string))
                .bind::<Nullable<Text>, _>(filter.tag.clone())
                .bind::<Nullable<BigInt>, _>(limit_of(filter.limit))
                .load(c)
                .await
                .map_err(map_db)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let task = row.into_task()?;
                    // The SQL and the filter must agree; the filter decides.
                    if filter.matches(&task) {
                        out.push(task);
                    }
                }
                Ok(out)
            }
            .boxed()
        })
        .await
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError> {
        self.tx(move |c| {
            async move {
                let mut task = lock_task(c, id).await?;
                if let Some(Some(template)) = update.template_id
                    && !template_exists(c, template).await?
                {
                    return Err(StoreError::TemplateNotFound(template).into());
                }
                rules::update(&mut task, update, expected_version, Utc::now())?;
                save_task(c, &task, false)
                    .await
                    .map_err(|e| template_gone(e, task.template_id))?;
                Ok(task)
            }
            .boxed()
        })
        .await
    }

    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        self.run(move |c| {
            async move {
                let n = diesel::delete(tasks::table.find(id.to_string()))
                    .execute(c)
                    .await
                    .map_err(map_db)?;
                if n == 0 {
                    return Err(StoreError::TaskNotFound(id));
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }

    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError> {
        self.tx(move |c| {
            async move {
                let mut task = lock_task(c, id).await?;
                rules::append_step(&mut task, step, Utc::now())?;
                let step = task
                    .steps
                    .last()
                    .ok_or_else(|| StoreError::Backend("appended step missing".into()))?;
                insert_step(c, id, step).await?;
                save_task(c, &task, false).await?;
                Ok(task)
            }
            .boxed()
        })
        .await
    }

    async fn create_template(&self, template: Template) -> Result<Template, StoreError> {
        template
            .validate()
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        self.tx(move |c| {
            async move {
                if template_exists(c, template.id).await? {
                    return Err(
                        StoreError::AlreadyExists(format!("template {}", template.id)).into(),
                    );
                }
                if name_taken(c, &template.name, template.id).await? {
                    return Err(StoreError::AlreadyExists(format!(
                        "template named {:?}",
                        template.name
                    ))
                    .into());
                }
                diesel::insert_into(templates::table)
                    .values((
                        templates::id.eq(template.id.to_string()),
                        templates::name.eq(&template.name),
                        templates::created_at.eq(micros(template.created_at)),
                        templates::data.eq(to_json(&template)?),
                    ))
                    .execute(c)
                    .await?;
                Ok(template)
            }
            .boxed()
        })
        .await
    }

    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError> {
        self.run(move |c| {
            async move { load_template(c, id).await.map_err(TxError::into_store) }.boxed()
        })
        .await
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.run(|c| {
            async move {
                let rows: Vec<serde_json::Value> = templates::table
                    .order((templates::created_at.asc(), templates::id.asc()))
                    .select(templates::data)
                    .load(c)
                    .await
                    .map_err(map_db)?;
                rows.into_iter().map(|r| from_json("template", r)).collect()
            }
            .boxed()
        })
        .await
    }

    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError> {
        self.tx(move |c| {
            async move {
                let data: Option<serde_json::Value> = templates::table
                    .find(id.to_string())
                    .select(templates::data)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let mut template: Template =
                    from_json("template", data.ok_or(StoreError::TemplateNotFound(id))?)?;
                update
                    .apply(&mut template)
                    .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
                if name_taken(c, &template.name, id).await? {
                    return Err(StoreError::AlreadyExists(format!(
                        "template named {:?}",
                        template.name
                    ))
                    .into());
                }
                diesel::update(templates::table.find(id.to_string()))
                    .set((
                        templates::name.eq(&template.name),
                        templates::data.eq(to_json(&template)?),
                    ))
                    .execute(c)
                    .await?;
                Ok(template)
            }
            .boxed()
        })
        .await
    }

    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        self.tx(move |c| {
            async move {
                if !template_exists(c, id).await? {
                    return Err(StoreError::TemplateNotFound(id).into());
                }
                let user: Option<String> = tasks::table
                    .filter(tasks::template_id.eq(id.to_string()))
                    .select(tasks::id)
                    .first(c)
                    .await
                    .optional()?;
                if let Some(user) = user {
                    return Err(
                        StoreError::InUse(format!("template {id} is used by task {user}")).into(),
                    );
                }
                // A task that started using it meanwhile makes this fail with `InUse`
                // (the foreign key).
                diesel::delete(templates::table.find(id.to_string()))
                    .execute(c)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
    }

    async fn append_log(&self, mut entry: LogEntry) -> Result<LogEntry, StoreError> {
        self.run(move |c| {
            async move {
                entry.seq = 0;
                let seq: i64 = diesel::insert_into(schema::logs::table)
                    .values((
                        schema::logs::task_id.eq(entry.task_id.map(|t| t.to_string())),
                        schema::logs::data.eq(to_json(&entry)?),
                    ))
                    .returning(schema::logs::seq)
                    .get_result(c)
                    .await
                    .map_err(map_db)?;
                entry.seq = count_to_u64(seq);
                Ok(entry)
            }
            .boxed()
        })
        .await
    }

    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        use self::schema::logs;
        self.run(move |c| {
            async move {
                let mut q = logs::table
                    .select((logs::seq, logs::data))
                    .order(logs::seq.desc())
                    .into_boxed();
                if let Some(task) = query.task_id {
                    q = q.filter(logs::task_id.eq(task.to_string()));
                }
                if let Some(before) = query.before_seq {
                    q = q.filter(logs::seq.lt(i64::try_from(before).unwrap_or(i64::MAX)));
                }
                if let Some(limit) = limit_of(query.limit) {
                    q = q.limit(limit);
                }
                let rows: Vec<(i64, serde_json::Value)> = q.load(c).await.map_err(map_db)?;
                let mut out = rows
                    .into_iter()
                    .map(|(seq, data)| {
                        let mut entry: LogEntry = from_json("log", data)?;
                        entry.seq = count_to_u64(seq);
                        Ok(entry)
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                out.reverse();
                Ok(out)
            }
            .boxed()
        })
        .await
    }

    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError> {
        Ok(self.claim_many(agent, lease, 1).await?.pop())
    }

    async fn claim_many(
        &self,
        agent: AgentId,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let lease = validate_lease(lease)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let expires_at = rules::lease_end(now, lease)?;
        let patch = serde_json::json!({
            "status": TaskStatus::InProgress,
            "assigned_agent": agent,
            "updated_at": now,
        });
        let lease_base = serde_json::json!({ "agent": agent, "expires_at": expires_at });
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let who = agent.to_string();
        let mut rows: Vec<Claimed> = self
            .run(move |c| {
                async move {
                    prepared::ClaimStatement {
                        agent: who,
                        expires_at: micros(expires_at),
                        now: micros(now),
                        patch,
                        lease: lease_base,
                        limit,
                    }
                    .load(c)
                    .await
                    .map_err(map_db)
                }
                .boxed()
            })
            .await?;
        // RETURNING has no order: hand the claims out in claim order.
        rows.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        let claims = rows
            .into_iter()
            .map(|row| {
                let claim = Claim {
                    task_id: parse_task_id(&row.id)?,
                    agent: agent.clone(),
                    token: count_to_u64(row.token),
                    expires_at,
                };
                tracing::debug!(task = %claim.task_id, agent = %claim.agent, token = claim.token, "task claimed");
                Ok(claim)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(claims)
    }

    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        let lease = validate_lease(lease)?;
        self.tx(move |c| {
            async move {
                let mut task = lock_task(c, claim.task_id).await?;
                let expires_at = rules::lease_end(Utc::now(), lease)?;
                let claim = rules::renew(&mut task, claim, expires_at)?;
                save_task(c, &task, false).await?;
                Ok(claim)
            }
            .boxed()
        })
        .await
    }

    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        // The common case in one statement (one round trip instead of five): the claim is
        // current and the status change allowed. Anything else takes the general path,
        // which reports exactly what is wrong.
        if !status.is_active()
            && let Some(task) = self.release_fast(&claim, status).await?
        {
            return Ok(task);
        }
        self.tx(move |c| {
            async move {
                release_general(c, &claim, status)
                    .await?
                    .map_err(TxError::Store)
            }
            .boxed()
        })
        .await
    }

    async fn release_many(
        &self,
        releases: Vec<(Claim, TaskStatus)>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        if releases.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction, so one commit (one WAL flush) for the whole batch, and one
        // statement for every claim that is current and may move: the first claim on each
        // task, to a status a release may set. The rest (later claims on the same task, and
        // those the statement left alone) take the general path after it, in their order,
        // which gives each the answer a release one by one would have given.
        let mut seen = std::collections::HashSet::new();
        let mut statement = prepared::ReleaseManyStatement::new()?;
        let mut in_statement = Vec::with_capacity(releases.len());
        for (claim, status) in &releases {
            // Only a task's first claim in the batch: the statement runs before the general
            // path, so a later claim on a task must not overtake an earlier one.
            let take = seen.insert(claim.task_id) && !status.is_active();
            in_statement.push(take);
            if take {
                statement.push(claim, *status)?;
            }
        }
        self.tx(move |c| {
            async move {
                let rows: Vec<ReleasedRow> = if statement.is_empty() {
                    Vec::new()
                } else {
                    statement.load(c).await?
                };
                let mut released: std::collections::HashMap<String, Result<Task, StoreError>> =
                    rows.into_iter()
                        .map(|row| (row.id.clone(), row.into_task()))
                        .collect();
                let mut out = Vec::with_capacity(releases.len());
                for ((claim, status), in_statement) in releases.iter().zip(in_statement) {
                    let done = if in_statement {
                        released.remove(&claim.task_id.to_string())
                    } else {
                        None
                    };
                    match done {
                        Some(task) => out.push(task),
                        None => out.push(release_general(c, claim, *status).await?),
                    }
                }
                Ok(out)
            }
            .boxed()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_and_parameters() {
        assert_eq!(
            redact("postgres://me:secret@db:5432/board?sslmode=disable&password=x"),
            "postgres://me@db:5432/board"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("host=db password=x"), "(a connection string)");
    }
}
