//! The claim engine's SQL: claiming with `FOR UPDATE SKIP LOCKED`, and releasing one or many
//! claims fenced by their tokens.

use ananta_core::error::StoreError;
use ananta_core::store::Claim;
use ananta_core::task::{Task, TaskStatus};
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Jsonb, Text};
use diesel_async::AsyncPgConnection;

use super::*;

#[derive(QueryableByName)]
pub(super) struct Claimed {
    #[diesel(sql_type = Text)]
    pub(super) id: String,
    #[diesel(sql_type = Integer)]
    pub(super) priority: i32,
    #[diesel(sql_type = BigInt)]
    pub(super) token: i64,
}

/// Settings of every pooled connection. Bitmap scans are off: on a queue table the
/// statistics lag far behind the data, and with them PostgreSQL estimated a handful of
/// claimable tasks where there were tens of thousands, and chose to read all of them through
/// a bitmap and sort them, for every claim, instead of reading the first few in index order
/// (a claim took milliseconds instead of microseconds). The store's other statements are
/// served as well by plain index scans.
pub(super) async fn session_setup(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel_async::SimpleAsyncConnection::batch_execute(conn, "SET enable_bitmapscan = off").await
}

/// [`TaskStore::release`] inside a transaction, the general way: lock the row, apply
/// [`rules::release`], save. For the claims the one-statement form left alone (it already ran
/// for them and changed nothing), so this path reports exactly what is wrong. A rule broken
/// is `Ok(Err(_))`; a database error aborts the transaction (`Err`).
pub(super) async fn release_general(
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
pub(super) fn release_many_sql() -> String {
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
pub(super) struct ReleasedRow {
    #[diesel(sql_type = Text)]
    pub(super) id: String,
    #[diesel(sql_type = Jsonb)]
    pub(super) data: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    pub(super) steps: serde_json::Value,
}

impl ReleasedRow {
    pub(super) fn into_task(self) -> Result<Task, StoreError> {
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
pub(super) fn claim_sql() -> String {
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
