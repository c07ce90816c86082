//! [`SqliteStore`]: a durable [`TaskStore`] in one SQLite file.

mod registry;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ananta_core::error::StoreError;
use ananta_core::ids::{AgentId, TaskId, TemplateId};
use ananta_core::log::{LogEntry, LogQuery};
use ananta_core::store::{Claim, TaskStore, validate_lease};
use ananta_core::task::{StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use ananta_core::template::{Template, TemplateUpdate};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};

use self::schema::{logs, task_steps, tasks, templates};
use self::writer::Writer;
use crate::rules;
use crate::sql::{count_to_u64, i64_of, micros, parse_task_id};

/// The SQLite schema's migrations, for hosts that migrate their databases themselves (open
/// with [`SqliteOptions::run_migrations`] off, and run these with `diesel_migrations`).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// What a committed write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: a committed write survives a crash of the process (the
    /// default). A power loss or OS crash may lose the last commits, never corrupts the file.
    #[default]
    Normal,
    /// WAL with `synchronous=FULL`: a committed write also survives a power loss. Every commit
    /// waits for the disk; throughput comes from group commit (one writer merges the writes
    /// waiting at that moment into one transaction).
    Full,
}

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// What a committed write survives (default [`Durability::Normal`]).
    pub durability: Durability,
    /// Reader connections for concurrent reads (default 4).
    pub readers: u32,
    /// How long a connection waits for a lock held by another process (default 5 s).
    pub busy_timeout: Duration,
    /// Apply pending migrations on open (default on). Off: the database must already be at
    /// this code's schema version ([`SQLITE_MIGRATIONS`]), or opening fails.
    pub run_migrations: bool,
    /// Most writes merged into one transaction (default 512).
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            run_migrations: true,
            max_batch: 512,
        }
    }
}

impl SqliteOptions {
    /// Sets the durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the number of reader connections (at least 1).
    pub fn readers(mut self, readers: u32) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Whether opening applies pending migrations.
    pub fn run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }
}

/// A [`TaskStore`] in one SQLite file: durable, embedded, no server and no system library
/// (SQLite is compiled in).
///
/// - **Writes** go to one writer thread that owns the only writing connection. It takes every
///   write waiting at that moment and runs them in one `BEGIN IMMEDIATE` transaction, and
///   answers each caller only after the commit (*group commit*). Under load this turns many
///   small transactions into few, which is what makes [`Durability::Full`] fast without
///   weakening it. A write refused by the rules (a stale claim, a forbidden move, an unknown
///   id) changes nothing and does not affect the others; a database error in the middle of a
///   write rolls back the writes of its transaction, which then fail with
///   [`StoreError::Unavailable`] saying so.
/// - **Reads** use a small pool of read-only connections; WAL lets them run while a write
///   commits.
/// - Blocking database work never runs on the async runtime's threads.
/// - The schema is migrated on open ([`SQLITE_MIGRATIONS`]); a database written by newer code
///   is refused with [`StoreError::IncompatibleSchema`], a damaged file with
///   [`StoreError::Corrupt`], a read-only location with [`StoreError::ReadOnly`].
///
/// It follows the rules of [`TaskStore`] and passes the [`conformance`](crate#conformance-suite)
/// suite. Cheap to clone; clones share the connections.
///
/// ```
/// use ananta_core::store::TaskStore;
/// use ananta_core::task::NewTask;
/// use ananta_store::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("board.db");
/// let store = SqliteStore::open(&path).await?;
/// let task = store.create_task(NewTask::new("survive a restart").into_task()?).await?;
/// drop(store);
///
/// let reopened = SqliteStore::open(&path).await?;
/// assert_eq!(reopened.get_task(task.id).await?.title, "survive a restart");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Pool<ConnectionManager<SqliteConnection>>,
    /// For [`SqliteStore::temporary`]: the directory removed when the store is dropped.
    _temp_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ReaderSetup {
    busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA query_only = ON;",
            self.busy_timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating it if needed) the database at `path`.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the store panicked: {e}")))?
    }

    fn open_blocking(path: PathBuf, options: SqliteOptions) -> Result<Self, StoreError> {
        check_location(&path)?;
        let url = path
            .to_str()
            .ok_or_else(|| StoreError::InvalidInput(format!("path {path:?} is not UTF-8")))?
            .to_string();
        let mut conn = SqliteConnection::establish(&url).map_err(|e| open_error(&path, &e))?;
        let synchronous = match options.durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        // `temp_store = MEMORY`: statement journals and sorts stay in memory instead of
        // temporary files.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
            options.busy_timeout.as_millis()
        ))
        .map_err(|e| db_error(&path, e))?;
        check_integrity(&path, &mut conn)?;
        crate::sql::migrate(
            &mut conn,
            SQLITE_MIGRATIONS,
            &path.display().to_string(),
            options.run_migrations,
        )?;

        let readers = Pool::builder()
            .max_size(options.readers.max(1))
            .min_idle(Some(0))
            .connection_customizer(Box::new(ReaderSetup {
                busy_timeout: options.busy_timeout,
            }))
            .build(ConnectionManager::<SqliteConnection>::new(url))
            .map_err(|e| StoreError::Unavailable(format!("{}: readers: {e}", path.display())))?;
        let writer = Writer::start(conn, options.max_batch.max(1))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                readers,
                _temp_dir: None,
            }),
        })
    }

    /// A store in a new temporary directory that is removed when the last clone is dropped:
    /// for tests and demos.
    pub async fn temporary() -> Result<Self, StoreError> {
        Self::temporary_with(SqliteOptions::default()).await
    }

    /// [`SqliteStore::temporary`] with options.
    pub async fn temporary_with(options: SqliteOptions) -> Result<Self, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("ananta-sqlite-")
            .tempdir()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot create a temporary directory: {e}"))
            })?;
        let store = Self::open_with(dir.path().join("ananta.db"), options).await?;
        let inner = Arc::try_unwrap(store.inner)
            .map_err(|_| StoreError::Backend("a new store is shared already".into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                _temp_dir: Some(dir),
                ..inner
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.inner.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(format!("no reader connection: {e}")))?;
            // One read transaction: a task and its steps come from the same snapshot.
            conn.transaction(|c| f(c).map_err(TxError::Store))
                .map_err(TxError::into_store)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a read panicked: {e}")))?
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.run(f).await
    }
}

/// Fails early, with a clear error, where SQLite would only say "unable to open database file".
fn check_location(path: &Path) -> Result<(), StoreError> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Err(StoreError::InvalidInput(
            "a SqliteStore needs a file path (an in-memory database cannot be shared by its connections)".into(),
        ));
    }
    if path.is_dir() {
        return Err(StoreError::InvalidInput(format!(
            "{} is a directory",
            path.display()
        )));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                StoreError::ReadOnly(format!("{}: {e}", path.display()))
            }
            std::io::ErrorKind::NotFound => StoreError::InvalidInput(format!(
                "{}: the directory does not exist",
                path.display()
            )),
            _ => StoreError::Unavailable(format!("{}: {e}", path.display())),
        }),
    }
}

fn check_integrity(path: &Path, conn: &mut SqliteConnection) -> Result<(), StoreError> {
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        quick_check: String,
    }
    let rows: Vec<Check> = diesel::sql_query("PRAGMA quick_check")
        .load(conn)
        .map_err(|e| db_error(path, e))?;
    match rows.first() {
        Some(row) if row.quick_check == "ok" => Ok(()),
        Some(row) => Err(StoreError::Corrupt(format!(
            "{}: integrity check failed: {}",
            path.display(),
            row.quick_check
        ))),
        None => Err(StoreError::Corrupt(format!(
            "{}: integrity check gave no answer",
            path.display()
        ))),
    }
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
    use diesel::result::{DatabaseErrorKind, Error};
    let text = e.to_string();
    match &e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::AlreadyExists(text)
        }
        _ if is_busy(&text) => StoreError::Unavailable(text),
        _ if is_corrupt(&text) => StoreError::Corrupt(text),
        _ if text.contains("readonly") || text.contains("read-only") => StoreError::ReadOnly(text),
        _ => StoreError::Backend(text),
    }
}

fn is_busy(text: &str) -> bool {
    text.contains("database is locked") || text.contains("database is busy")
}

fn is_corrupt(text: &str) -> bool {
    text.contains("not a database") || text.contains("malformed") || text.contains("corrupt")
}

fn db_error(path: &Path, e: diesel::result::Error) -> StoreError {
    match map_db(e) {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{}: {m}", path.display())),
        StoreError::ReadOnly(m) => StoreError::ReadOnly(format!("{}: {m}", path.display())),
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{}: {m}", path.display())),
        other => other,
    }
}

fn open_error(path: &Path, e: &diesel::ConnectionError) -> StoreError {
    let text = e.to_string();
    if is_corrupt(&text) {
        StoreError::Corrupt(format!("{}: {text}", path.display()))
    } else {
        StoreError::Unavailable(format!("{}: {text}", path.display()))
    }
}

// ---- rows ----

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding a row: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("unreadable {what} row: {e}")))
}

/// Loads a task and its steps.
fn load_task(conn: &mut SqliteConnection, id: TaskId) -> Result<Task, StoreError> {
    // `get_result`, not `first`: a `LIMIT ?` makes SQLite prepare the statement again for
    // every call (it plans with the bound limit), and a primary key finds one row anyway.
    let data: Option<String> = tasks::table
        .find(id.to_string())
        .select(tasks::data)
        .get_result(conn)
        .optional()
        .map_err(map_db)?;
    let data = data.ok_or(StoreError::TaskNotFound(id))?;
    let mut task: Task = from_json("task", &data)?;
    task.steps = load_steps(conn, &id.to_string())?;
    Ok(task)
}

fn load_steps(conn: &mut SqliteConnection, id: &str) -> Result<Vec<StepRecord>, StoreError> {
    let rows: Vec<String> = task_steps::table
        .filter(task_steps::task_id.eq(id))
        .order(task_steps::idx.asc())
        .select(task_steps::data)
        .load(conn)
        .map_err(map_db)?;
    rows.iter().map(|r| from_json("step", r)).collect()
}

/// Writes a task's row (not its steps) from the task: the JSON and every indexed column but,
/// on update, `template_id` (see [`set_template`]).
fn save_task(conn: &mut SqliteConnection, task: &Task, insert: bool) -> Result<(), StoreError> {
    let mut body = task.clone();
    body.steps = Vec::new();
    let data = to_json(&body)?;
    let id = task.id.to_string();
    let status = task.status.as_str();
    let priority = task.priority as i32;
    let assigned = task.assigned_agent.as_ref().map(ToString::to_string);
    let lease_agent = task.lease.as_ref().map(|l| l.agent.to_string());
    let lease_token = task.lease.as_ref().map(|l| i64_of(l.token)).transpose()?;
    let lease_expires = task.lease.as_ref().map(|l| micros(l.expires_at));
    let version = i64_of(task.version)?;
    if insert {
        let values = (
            tasks::id.eq(&id),
            tasks::status.eq(status),
            tasks::priority.eq(priority),
            tasks::assigned_agent.eq(assigned),
            tasks::template_id.eq(task.template_id.map(|t| t.to_string())),
            tasks::lease_agent.eq(lease_agent),
            tasks::lease_token.eq(lease_token),
            tasks::lease_expires_at.eq(lease_expires),
            tasks::version.eq(version),
            tasks::data.eq(data),
        );
        diesel::insert_into(tasks::table)
            .values(values)
            .execute(conn)
            .map_err(map_db)?;
    } else {
        UpdateTaskRow {
            id,
            status,
            priority,
            assigned,
            lease_agent,
            lease_token,
            lease_expires,
            version,
            data,
        }
        .execute(conn)
        .map_err(map_db)?;
    }
    Ok(())
}

/// `UPDATE tasks SET <every column but template_id> WHERE id = ?`, written out so that the
/// connection keeps it prepared: diesel never caches its own `UPDATE` statements, and
/// preparing one again for every write cost more than running it. Leaving out the one
/// column with a foreign key spares SQLite a foreign-key check and a statement journal per
/// write; [`set_template`] writes it when it changes.
#[derive(diesel::query_builder::QueryId)]
struct UpdateTaskRow {
    id: String,
    status: &'static str,
    priority: i32,
    assigned: Option<String>,
    lease_agent: Option<String>,
    lease_token: Option<i64>,
    lease_expires: Option<i64>,
    version: i64,
    data: String,
}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for UpdateTaskRow {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Integer, Nullable, Text};
        out.push_sql("UPDATE tasks SET status = ");
        out.push_bind_param::<Text, _>(&self.status)?;
        out.push_sql(", priority = ");
        out.push_bind_param::<Integer, _>(&self.priority)?;
        out.push_sql(", assigned_agent = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.assigned)?;
        out.push_sql(", lease_agent = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.lease_agent)?;
        out.push_sql(", lease_token = ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.lease_token)?;
        out.push_sql(", lease_expires_at = ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.lease_expires)?;
        out.push_sql(", version = ");
        out.push_bind_param::<BigInt, _>(&self.version)?;
        out.push_sql(", data = ");
        out.push_bind_param::<Text, _>(&self.data)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(&self.id)?;
        Ok(())
    }
}

impl RunQueryDsl<SqliteConnection> for UpdateTaskRow {}

/// Writes a task's `template_id` column from the task (after [`save_task`] when the template
/// changed).
fn set_template(conn: &mut SqliteConnection, task: &Task) -> Result<(), StoreError> {
    diesel::update(tasks::table.find(task.id.to_string()))
        .set(tasks::template_id.eq(task.template_id.map(|t| t.to_string())))
        .execute(conn)
        .map_err(map_db)?;
    Ok(())
}

fn template_exists(conn: &mut SqliteConnection, id: TemplateId) -> Result<bool, StoreError> {
    diesel::select(diesel::dsl::exists(templates::table.find(id.to_string())))
        .get_result(conn)
        .map_err(map_db)
}

fn load_template(conn: &mut SqliteConnection, id: TemplateId) -> Result<Template, StoreError> {
    let data: Option<String> = templates::table
        .find(id.to_string())
        .select(templates::data)
        .get_result(conn)
        .optional()
        .map_err(map_db)?;
    from_json("template", &data.ok_or(StoreError::TemplateNotFound(id))?)
}

fn name_taken(
    conn: &mut SqliteConnection,
    name: &str,
    except: TemplateId,
) -> Result<bool, StoreError> {
    diesel::select(diesel::dsl::exists(
        templates::table
            .filter(templates::name.eq(name))
            .filter(templates::id.ne(except.to_string())),
    ))
    .get_result(conn)
    .map_err(map_db)
}

/// The ids of up to `n` tasks `agent` may claim at `now`, in claim order (the SQL form of
/// [`rules::is_claimable`] and [`rules::claim_order`]). Two indexed queries instead of one
/// with `OR` (which SQLite answers with a scan of the whole table): `todo` tasks walk the claim
/// index in order; expired leases come from the lease index, which only holds leased rows.
fn claimable(
    conn: &mut SqliteConnection,
    agent: &AgentId,
    now: DateTime<Utc>,
    n: i64,
) -> Result<Vec<String>, StoreError> {
    let now = micros(now);
    let agent = agent.to_string();
    let todo = tasks::table
        .filter(tasks::status.eq(TaskStatus::Todo.as_str()))
        .filter(
            tasks::lease_expires_at
                .is_null()
                .or(tasks::lease_expires_at.le(now)),
        )
        .filter(
            tasks::assigned_agent
                .is_null()
                .or(tasks::assigned_agent.eq(agent)),
        )
        .order((tasks::priority.desc(), tasks::id.asc()))
        .select((tasks::id, tasks::priority));
    let todo = first_rows(todo, conn, n)?;
    let rescue = tasks::table
        .filter(tasks::lease_expires_at.le(now))
        .filter(tasks::lease_token.is_not_null())
        // Two `=` instead of `IN (…)`: diesel keeps statements with `IN` binds unprepared.
        .filter(
            tasks::status
                .eq(TaskStatus::InProgress.as_str())
                .or(tasks::status.eq(TaskStatus::Proposing.as_str())),
        )
        .order((tasks::priority.desc(), tasks::id.asc()))
        .select((tasks::id, tasks::priority));
    let rescue = first_rows(rescue, conn, n)?;
    let mut all = todo;
    all.extend(rescue);
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    Ok(all.into_iter().map(|(id, _)| id).collect())
}

/// The first `n` rows of `query`, read one by one (SQLite stops there). Not `LIMIT ?`: with a
/// bound limit SQLite prepares the statement again for every call.
fn first_rows<Q>(
    query: Q,
    conn: &mut SqliteConnection,
    n: i64,
) -> Result<Vec<(String, i32)>, StoreError>
where
    Q: diesel::query_dsl::LoadQuery<'static, SqliteConnection, (String, i32)>,
{
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    query
        .load_iter::<(String, i32), diesel::connection::DefaultLoadingMode>(conn)
        .map_err(map_db)?
        .take(n)
        .map(|row| row.map_err(map_db))
        .collect()
}

fn claim_in(
    conn: &mut SqliteConnection,
    agent: &AgentId,
    lease: chrono::Duration,
    max: usize,
) -> Result<Vec<Claim>, StoreError> {
    let now = Utc::now();
    let expires_at = rules::lease_end(now, lease)?;
    let n = i64::try_from(max).unwrap_or(i64::MAX);
    let mut claims = Vec::new();
    for id in claimable(conn, agent, now, n)? {
        let mut task = load_task(conn, parse_task_id(&id)?)?;
        // The SQL and the rules must agree; the rules decide.
        if !rules::is_claimable(&task, agent, now) {
            continue;
        }
        let claim = rules::claim(&mut task, agent.clone(), expires_at, now);
        save_task(conn, &task, false)?;
        claims.push(claim);
    }
    Ok(claims)
}

/// [`TaskStore::release`] on the writer's connection.
fn release_in(
    conn: &mut SqliteConnection,
    claim: &Claim,
    status: TaskStatus,
    now: DateTime<Utc>,
) -> Result<Task, StoreError> {
    let mut task = load_task(conn, claim.task_id)?;
    rules::release(&mut task, claim, status, now)?;
    save_task(conn, &task, false)?;
    Ok(task)
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create_task(&self, task: Task) -> Result<Task, StoreError> {
        let task = rules::new_task(task)?;
        self.write(move |conn| {
            let exists: bool =
                diesel::select(diesel::dsl::exists(tasks::table.find(task.id.to_string())))
                    .get_result(conn)
                    .map_err(map_db)?;
            if exists {
                return Err(StoreError::AlreadyExists(format!("task {}", task.id)));
            }
            if let Some(template) = task.template_id
                && !template_exists(conn, template)?
            {
                return Err(StoreError::TemplateNotFound(template));
            }
            save_task(conn, &task, true)?;
            for step in &task.steps {
                diesel::insert_into(task_steps::table)
                    .values((
                        task_steps::task_id.eq(task.id.to_string()),
                        task_steps::idx.eq(i32::try_from(step.index).unwrap_or(i32::MAX)),
                        task_steps::data.eq(to_json(step)?),
                    ))
                    .execute(conn)
                    .map_err(map_db)?;
            }
            Ok(task)
        })
        .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.read(move |conn| load_task(conn, id)).await
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.read(move |conn| {
            let mut query = tasks::table
                .select((tasks::id, tasks::data))
                .order(tasks::id.asc())
                .into_boxed();
            if !filter.statuses.is_empty() {
                query =
                    query.filter(tasks::status.eq_any(filter.statuses.iter().map(|s| s.as_str())));
            }
            if let Some(agent) = &filter.assigned_agent {
                query = query.filter(tasks::assigned_agent.eq(agent.to_string()));
            }
            if filter.tag.is_none()
                && let Some(limit) = filter.limit
            {
                query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let rows: Vec<(String, String)> = query.load(conn).map_err(map_db)?;
            let mut out = Vec::new();
            for (id, data) in rows {
                if out.len() >= filter.limit.unwrap_or(usize::MAX) {
                    break;
                }
                let mut task: Task = from_json("task", &data)?;
                if !filter.matches(&task) {
                    continue;
                }
                task.steps = load_steps(conn, &id)?;
                out.push(task);
            }
            Ok(out)
        })
        .await
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError> {
        self.write(move |conn| {
            let mut task = load_task(conn, id)?;
            if let Some(Some(template)) = update.template_id
                && !template_exists(conn, template)?
            {
                return Err(StoreError::TemplateNotFound(template));
            }
            let template_changed = update.template_id.is_some();
            rules::update(&mut task, update, expected_version, Utc::now())?;
            save_task(conn, &task, false)?;
            if template_changed {
                set_template(conn, &task)?;
            }
            Ok(task)
        })
        .await
    }

    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        self.write(move |conn| {
            let n = diesel::delete(tasks::table.find(id.to_string()))
                .execute(conn)
                .map_err(map_db)?;
            if n == 0 {
                return Err(StoreError::TaskNotFound(id));
            }
            Ok(())
        })
        .await
    }

    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError> {
        self.write(move |conn| {
            let mut task = load_task(conn, id)?;
            rules::append_step(&mut task, step, Utc::now())?;
            let step = task
                .steps
                .last()
                .ok_or_else(|| StoreError::Backend("appended step missing".into()))?;
            diesel::insert_into(task_steps::table)
                .values((
                    task_steps::task_id.eq(id.to_string()),
                    task_steps::idx.eq(i32::try_from(step.index).unwrap_or(i32::MAX)),
                    task_steps::data.eq(to_json(step)?),
                ))
                .execute(conn)
                .map_err(map_db)?;
            save_task(conn, &task, false)?;
            Ok(task)
        })
        .await
    }

    async fn create_template(&self, template: Template) -> Result<Template, StoreError> {
        template
            .validate()
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        self.write(move |conn| {
            if template_exists(conn, template.id)? {
                return Err(StoreError::AlreadyExists(format!(
                    "template {}",
                    template.id
                )));
            }
            if name_taken(conn, &template.name, template.id)? {
                return Err(StoreError::AlreadyExists(format!(
                    "template named {:?}",
                    template.name
                )));
            }
            diesel::insert_into(templates::table)
                .values((
                    templates::id.eq(template.id.to_string()),
                    templates::name.eq(&template.name),
                    templates::created_at.eq(micros(template.created_at)),
                    templates::data.eq(to_json(&template)?),
                ))
                .execute(conn)
                .map_err(map_db)?;
            Ok(template)
        })
        .await
    }

    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError> {
        self.read(move |conn| load_template(conn, id)).await
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.read(|conn| {
            let rows: Vec<String> = templates::table
                .order((templates::created_at.asc(), templates::id.asc()))
                .select(templates::data)
                .load(conn)
                .map_err(map_db)?;
            rows.iter().map(|r| from_json("template", r)).collect()
        })
        .await
    }

    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError> {
        self.write(move |conn| {
            let mut template = load_template(conn, id)?;
            update
                .apply(&mut template)
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
            if name_taken(conn, &template.name, id)? {
                return Err(StoreError::AlreadyExists(format!(
                    "template named {:?}",
                    template.name
                )));
            }
            diesel::update(templates::table.find(id.to_string()))
                .set((
                    templates::name.eq(&template.name),
                    templates::data.eq(to_json(&template)?),
                ))
                .execute(conn)
                .map_err(map_db)?;
            Ok(template)
        })
        .await
    }

    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        self.write(move |conn| {
            if !template_exists(conn, id)? {
                return Err(StoreError::TemplateNotFound(id));
            }
            let user: Option<String> = tasks::table
                .filter(tasks::template_id.eq(id.to_string()))
                .select(tasks::id)
                .first(conn)
                .optional()
                .map_err(map_db)?;
            if let Some(user) = user {
                return Err(StoreError::InUse(format!(
                    "template {id} is used by task {user}"
                )));
            }
            diesel::delete(templates::table.find(id.to_string()))
                .execute(conn)
                .map_err(map_db)?;
            Ok(())
        })
        .await
    }

    async fn append_log(&self, mut entry: LogEntry) -> Result<LogEntry, StoreError> {
        self.write(move |conn| {
            entry.seq = 0;
            let seq: i64 = diesel::insert_into(logs::table)
                .values((
                    logs::task_id.eq(entry.task_id.map(|t| t.to_string())),
                    logs::data.eq(to_json(&entry)?),
                ))
                .returning(logs::seq)
                .get_result(conn)
                .map_err(map_db)?;
            entry.seq = count_to_u64(seq);
            Ok(entry)
        })
        .await
    }

    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |conn| {
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
            if let Some(limit) = query.limit {
                q = q.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let rows: Vec<(i64, String)> = q.load(conn).map_err(map_db)?;
            let mut out = rows
                .iter()
                .map(|(seq, data)| {
                    let mut entry: LogEntry = from_json("log", data)?;
                    entry.seq = count_to_u64(*seq);
                    Ok(entry)
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError> {
        let lease = validate_lease(lease)?;
        self.write(move |conn| Ok(claim_in(conn, &agent, lease, 1)?.pop()))
            .await
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
        self.write(move |conn| claim_in(conn, &agent, lease, max))
            .await
    }

    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        let lease = validate_lease(lease)?;
        self.write(move |conn| {
            let mut task = load_task(conn, claim.task_id)?;
            let expires_at = rules::lease_end(Utc::now(), lease)?;
            let claim = rules::renew(&mut task, claim, expires_at)?;
            save_task(conn, &task, false)?;
            Ok(claim)
        })
        .await
    }

    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        self.write(move |conn| release_in(conn, &claim, status, Utc::now()))
            .await
    }

    async fn release_many(
        &self,
        releases: Vec<(Claim, TaskStatus)>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        if releases.is_empty() {
            return Ok(Vec::new());
        }
        // One write, so one transaction. A release checks everything before its only change,
        // one UPDATE, which SQLite applies whole or not at all: a refused one changes nothing.
        self.write(move |conn| {
            let now = Utc::now();
            Ok(releases
                .into_iter()
                .map(|(claim, status)| release_in(conn, &claim, status, now))
                .collect())
        })
        .await
    }
}
