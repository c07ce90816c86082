//! What the SQL backends share: the schema-version check and migration on open, the
//! conversions between domain values and column values, and how a database failure reaches an
//! agent registry's caller.

use ananta_core::error::{RegistryError, StoreError};
use ananta_core::ids::TaskId;
use chrono::{DateTime, Utc};
use diesel::backend::Backend;
use diesel::migration::MigrationSource;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// Refuses a database whose applied migrations include one `migrations` does not know (it
/// was written by newer code), then applies the pending ones when `run`, or refuses a
/// database with pending ones when not. `target` names the database in errors.
pub(crate) fn migrate<DB: Backend>(
    conn: &mut impl MigrationHarness<DB>,
    migrations: EmbeddedMigrations,
    target: &str,
    run: bool,
) -> Result<(), StoreError> {
    let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| {
        StoreError::Backend(format!("{target}: migrations: {e}"))
    };
    let known: Vec<String> = MigrationSource::<DB>::migrations(&migrations)
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
        return Err(StoreError::IncompatibleSchema(format!(
            "{target}: the database has schema version {unknown}, which this version of ananta-store does not know (it knows up to {}); it was written by newer code",
            known.last().map(String::as_str).unwrap_or("none")
        )));
    }
    if run {
        conn.run_pending_migrations(migrations)
            .map_err(migration_error)?;
    } else if applied.len() < known.len() {
        return Err(StoreError::IncompatibleSchema(format!(
            "{target}: {} migration(s) pending and automatic migration is off",
            known.len() - applied.len()
        )));
    }
    Ok(())
}

/// A time as stored in a column: microseconds since the Unix epoch.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A counter read from a `BIGINT` column (never negative in practice).
pub(crate) fn count_to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A counter for a `BIGINT` column.
pub(crate) fn i64_of(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput(format!("{n} is out of range")))
}

/// A task id read from a column.
pub(crate) fn parse_task_id(id: &str) -> Result<TaskId, StoreError> {
    id.parse()
        .map_err(|e| StoreError::Corrupt(format!("task id {id:?} in the database: {e}")))
}

/// A failure of the database under an [`AgentRegistry`](ananta_core::registry::AgentRegistry),
/// as the registry reports it.
pub(crate) fn registry_error(e: StoreError) -> RegistryError {
    RegistryError::Backend(e.to_string())
}
