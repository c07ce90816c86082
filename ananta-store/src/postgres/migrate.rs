//! Migrating on connect: diesel's (blocking) migration harness, on the async connection
//! through `AsyncConnectionWrapper`, on a blocking thread, under an advisory lock.

use ananta_core::error::StoreError;
use diesel::RunQueryDsl;
use diesel::connection::Connection;
use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

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
    crate::sql::migrate(conn, POSTGRES_MIGRATIONS, target, run).map_err(TxError::Store)
}
