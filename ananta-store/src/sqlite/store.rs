//! [`TaskStore`] for [`SqliteStore`](super::SqliteStore).

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

use self::schema::{logs, task_steps, tasks, templates};
use super::*;
use crate::rules;
use crate::sql::{count_to_u64, micros};

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
