//! Migrating on connect: diesel's (blocking) migration harness, on the async connection
//! through `AsyncConnectionWrapper`, on a blocking thread, under an advisory lock.

use ananta_core::error::StoreError;
use diesel::RunQueryDsl;
use diesel::connection::Connection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

use super::{POSTGRES_MIGRATIONS, TxError};

/// The key of the transaction-scoped advisory lock held while checking and migrating the
/// schema ("ananta" in ASCII, then 1), so that hubs connecting at once migrate one at a time.
const MIGRATION_LOCK: i64 = 0x616e_616e_7461_0001;

type Wrapper = AsyncConnectionWrapper<AsyncPgConnection>;

/// Checks the schema of the database behind `conn` and, when `run`, applies the pending
/// migrations; hands the connection back.
pub(super) async fn migrate(
    conn: AsyncPgConnection,
    target: String,
    run: bool,
) -> Result<AsyncPgConnection, StoreError> {
    tokio::task::spawn_blocking(move || {
        let mut conn = Wrapper::from(conn);
        conn.transaction(|c| migrate_locked(c, &target, run))
            .map_err(TxError::into_store)?;
        Ok(conn.into_inner())
    })
    .await
    .map_err(|e| StoreError::Backend(format!("migrating the store panicked: {e}")))?
}

fn migrate_locked(conn: &mut Wrapper, target: &str, run: bool) -> Result<(), TxError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(conn)?;
    let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| {
        TxError::Store(StoreError::Backend(format!("{target}: migrations: {e}")))
    };
    let known: Vec<String> = MigrationSource::<Pg>::migrations(&POSTGRES_MIGRATIONS)
        .map_err(migration_error)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied: Vec<String> = conn
        .applied_migrations()
        .map_err(migration_error)?
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        return Err(TxError::Store(StoreError::IncompatibleSchema(format!(
            "{target}: the database has schema version {unknown}, which this version of ananta-store does not know (it knows up to {}); it was written by newer code",
            known.last().map(String::as_str).unwrap_or("none")
        ))));
    }
    if run {
        conn.run_pending_migrations(POSTGRES_MIGRATIONS)
            .map_err(migration_error)?;
    } else if applied.len() < known.len() {
        return Err(TxError::Store(StoreError::IncompatibleSchema(format!(
            "{target}: {} migration(s) pending and automatic migration is off",
            known.len() - applied.len()
        ))));
    }
    Ok(())
}
