//! Tasks and templates as rows: loading and saving a task with its steps, and the template
//! lookups the store's operations share.

use ananta_core::error::StoreError;
use ananta_core::ids::{TaskId, TemplateId};
use ananta_core::task::{StepRecord, Task};
use ananta_core::template::Template;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use self::schema::{task_steps, tasks, templates};
use super::*;
use crate::sql::{i64_of, micros};

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding a row: {e}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("unreadable {what} row: {e}")))
}

/// Loads a task and its steps.
pub(super) fn load_task(conn: &mut SqliteConnection, id: TaskId) -> Result<Task, StoreError> {
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

pub(super) fn load_steps(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Vec<StepRecord>, StoreError> {
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
pub(super) fn save_task(
    conn: &mut SqliteConnection,
    task: &Task,
    insert: bool,
) -> Result<(), StoreError> {
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
pub(super) struct UpdateTaskRow {
    pub(super) id: String,
    pub(super) status: &'static str,
    pub(super) priority: i32,
    pub(super) assigned: Option<String>,
    pub(super) lease_agent: Option<String>,
    pub(super) lease_token: Option<i64>,
    pub(super) lease_expires: Option<i64>,
    pub(super) version: i64,
    pub(super) data: String,
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
pub(super) fn set_template(conn: &mut SqliteConnection, task: &Task) -> Result<(), StoreError> {
    diesel::update(tasks::table.find(task.id.to_string()))
        .set(tasks::template_id.eq(task.template_id.map(|t| t.to_string())))
        .execute(conn)
        .map_err(map_db)?;
    Ok(())
}

pub(super) fn template_exists(
    conn: &mut SqliteConnection,
    id: TemplateId,
) -> Result<bool, StoreError> {
    diesel::select(diesel::dsl::exists(templates::table.find(id.to_string())))
        .get_result(conn)
        .map_err(map_db)
}

pub(super) fn load_template(
    conn: &mut SqliteConnection,
    id: TemplateId,
) -> Result<Template, StoreError> {
    let data: Option<String> = templates::table
        .find(id.to_string())
        .select(templates::data)
        .get_result(conn)
        .optional()
        .map_err(map_db)?;
    from_json("template", &data.ok_or(StoreError::TemplateNotFound(id))?)
}

pub(super) fn name_taken(
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
