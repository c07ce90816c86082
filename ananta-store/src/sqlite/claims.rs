//! The claim engine: which tasks an agent may claim, claiming them in one write
//! transaction, and releasing claims fenced by their tokens.

use ananta_core::error::StoreError;
use ananta_core::ids::AgentId;
use ananta_core::store::Claim;
use ananta_core::task::{Task, TaskStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use self::schema::tasks;
use super::*;
use crate::rules;
use crate::sql::{micros, parse_task_id};

/// The ids of up to `n` tasks `agent` may claim at `now`, in claim order (the SQL form of
/// [`rules::is_claimable`] and [`rules::claim_order`]). Two indexed queries instead of one
/// with `OR` (which SQLite answers with a scan of the whole table): `todo` tasks walk the claim
/// index in order; expired leases come from the lease index, which only holds leased rows.
pub(super) fn claimable(
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
pub(super) fn first_rows<Q>(
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

pub(super) fn claim_in(
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
pub(super) fn release_in(
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
