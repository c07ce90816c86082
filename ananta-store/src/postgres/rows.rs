//! Tasks and templates as rows: reading, locking and saving a task with its steps, and the
//! template lookups the store's operations share.

use ananta_core::error::StoreError;
use ananta_core::ids::{TaskId, TemplateId};
use ananta_core::task::{StepRecord, Task, TaskStatus};
use ananta_core::template::Template;
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::*;

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Backend(format!("encoding a row: {e}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Corrupt(format!("unreadable {what} row: {e}")))
}

pub(super) fn limit_of(n: Option<usize>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// A task's steps as one JSON array, read in the same statement (and so the same snapshot)
/// as the task.
pub(super) const STEPS: &str = "COALESCE((SELECT jsonb_agg(s.data ORDER BY s.idx) FROM task_steps s \
                     WHERE s.task_id = t.id), '[]'::jsonb)";

#[derive(QueryableByName)]
pub(super) struct TaskRow {
    #[diesel(sql_type = Jsonb)]
    pub(super) data: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    pub(super) steps: serde_json::Value,
}

impl TaskRow {
    pub(super) fn into_task(self) -> Result<Task, StoreError> {
        let mut task: Task = from_json("task", self.data)?;
        task.steps = from_json("step", self.steps)?;
        Ok(task)
    }
}

/// Reads a task with its steps, in one statement.
pub(super) async fn read_task(
    conn: &mut AsyncPgConnection,
    id: TaskId,
) -> Result<Task, StoreError> {
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
pub(super) async fn lock_task(conn: &mut AsyncPgConnection, id: TaskId) -> Result<Task, TxError> {
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
pub(super) async fn save_task(
    conn: &mut AsyncPgConnection,
    task: &Task,
    insert: bool,
) -> Result<(), TxError> {
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
pub(super) async fn announce(conn: &mut AsyncPgConnection, id: TaskId) -> Result<(), TxError> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(NOTIFY_CHANNEL)
        .bind::<Text, _>(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn insert_step(
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

pub(super) async fn template_exists(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
) -> Result<bool, TxError> {
    Ok(
        diesel::select(diesel::dsl::exists(templates::table.find(id.to_string())))
            .get_result(conn)
            .await?,
    )
}

pub(super) async fn load_template(
    conn: &mut AsyncPgConnection,
    id: TemplateId,
) -> Result<Template, TxError> {
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

pub(super) async fn name_taken(
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
pub(super) fn template_gone(e: TxError, template: Option<TemplateId>) -> TxError {
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
