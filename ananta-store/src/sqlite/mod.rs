//! [`SqliteStore`]: a durable [`TaskStore`](ananta_core::store::TaskStore) in one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ananta_core::error::StoreError;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};

use self::writer::Writer;

mod claims;
mod registry;
mod rows;
mod schema;
mod store;
mod writer;

use claims::*;
use rows::*;

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

/// A [`TaskStore`](ananta_core::store::TaskStore) in one SQLite file: durable, embedded, no server and no system library
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
/// It follows the rules of [`TaskStore`](ananta_core::store::TaskStore) and passes the [`conformance`](crate#conformance-suite)
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
