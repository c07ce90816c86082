//! [`TaskStore`] for [`PostgresStore`](super::PostgresStore).

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
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::*;

#[async_trait]
impl TaskStore for PostgresStore {
    async fn create_task(&self, task: Task) -> Result<Task, StoreError> {
        let task = rules::new_task(task)?;
        self.tx(move |c| {
            async move {
                let exists: bool =
                    diesel::select(diesel::dsl::exists(tasks::table.find(task.id.to_string())))
                        .get_result(c)
                        .await?;
                if exists {
                    return Err(StoreError::AlreadyExists(format!("task {}", task.id)).into());
                }
                if let Some(template) = task.template_id
                    && !template_exists(c, template).await?
                {
                    return Err(StoreError::TemplateNotFound(template).into());
                }
                save_task(c, &task, true)
                    .await
                    .map_err(|e| template_gone(e, task.template_id))?;
                for step in &task.steps {
                    insert_step(c, task.id, step).await?;
                }
                Ok(task)
            }
            .boxed()
        })
        .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.run(move |c| read_task(c, id).boxed()).await
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.run(move |c| {
            async move {
                let statuses: Vec<String> = filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect();
                let rows: Vec<TaskRow> = diesel::sql_query(format!(
                    "SELECT t.data, {STEPS} AS steps FROM tasks t \
                     WHERE (cardinality($1::text[]) = 0 OR t.status = ANY($1)) \
                       AND ($2::text IS NULL OR t.assigned_agent = $2) \
                       AND ($3::text IS NULL OR jsonb_exists(t.data -> 'tags', $3)) \
                     ORDER BY t.id \
                     LIMIT $4"
                ))
                .bind::<Array<Text>, _>(statuses)
                .bind::<Nullable<Text>, _>(filter.assigned_agent.as_ref().map(ToString::to_string))
                .bind::<Nullable<Text>, _>(filter.tag.clone())
                .bind::<Nullable<BigInt>, _>(limit_of(filter.limit))
                .load(c)
                .await
                .map_err(map_db)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let task = row.into_task()?;
                    // The SQL and the filter must agree; the filter decides.
                    if filter.matches(&task) {
                        out.push(task);
                    }
                }
                Ok(out)
            }
            .boxed()
        })
        .await
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError> {
        self.tx(move |c| {
            async move {
                let mut task = lock_task(c, id).await?;
                if let Some(Some(template)) = update.template_id
                    && !template_exists(c, template).await?
                {
                    return Err(StoreError::TemplateNotFound(template).into());
                }
                rules::update(&mut task, update, expected_version, Utc::now())?;
                save_task(c, &task, false)
                    .await
                    .map_err(|e| template_gone(e, task.template_id))?;
                Ok(task)
            }
            .boxed()
        })
        .await
    }

    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        self.run(move |c| {
            async move {
                let n = diesel::delete(tasks::table.find(id.to_string()))
                    .execute(c)
                    .await
                    .map_err(map_db)?;
                if n == 0 {
                    return Err(StoreError::TaskNotFound(id));
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }

    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError> {
        self.tx(move |c| {
            async move {
                let mut task = lock_task(c, id).await?;
                rules::append_step(&mut task, step, Utc::now())?;
                let step = task
                    .steps
                    .last()
                    .ok_or_else(|| StoreError::Backend("appended step missing".into()))?;
                insert_step(c, id, step).await?;
                save_task(c, &task, false).await?;
                Ok(task)
            }
            .boxed()
        })
        .await
    }

    async fn create_template(&self, template: Template) -> Result<Template, StoreError> {
        template
            .validate()
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        self.tx(move |c| {
            async move {
                if template_exists(c, template.id).await? {
                    return Err(
                        StoreError::AlreadyExists(format!("template {}", template.id)).into(),
                    );
                }
                if name_taken(c, &template.name, template.id).await? {
                    return Err(StoreError::AlreadyExists(format!(
                        "template named {:?}",
                        template.name
                    ))
                    .into());
                }
                diesel::insert_into(templates::table)
                    .values((
                        templates::id.eq(template.id.to_string()),
                        templates::name.eq(&template.name),
                        templates::created_at.eq(micros(template.created_at)),
                        templates::data.eq(to_json(&template)?),
                    ))
                    .execute(c)
                    .await?;
                Ok(template)
            }
            .boxed()
        })
        .await
    }

    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError> {
        self.run(move |c| {
            async move { load_template(c, id).await.map_err(TxError::into_store) }.boxed()
        })
        .await
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.run(|c| {
            async move {
                let rows: Vec<serde_json::Value> = templates::table
                    .order((templates::created_at.asc(), templates::id.asc()))
                    .select(templates::data)
                    .load(c)
                    .await
                    .map_err(map_db)?;
                rows.into_iter().map(|r| from_json("template", r)).collect()
            }
            .boxed()
        })
        .await
    }

    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError> {
        self.tx(move |c| {
            async move {
                let data: Option<serde_json::Value> = templates::table
                    .find(id.to_string())
                    .select(templates::data)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let mut template: Template =
                    from_json("template", data.ok_or(StoreError::TemplateNotFound(id))?)?;
                update
                    .apply(&mut template)
                    .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
                if name_taken(c, &template.name, id).await? {
                    return Err(StoreError::AlreadyExists(format!(
                        "template named {:?}",
                        template.name
                    ))
                    .into());
                }
                diesel::update(templates::table.find(id.to_string()))
                    .set((
                        templates::name.eq(&template.name),
                        templates::data.eq(to_json(&template)?),
                    ))
                    .execute(c)
                    .await?;
                Ok(template)
            }
            .boxed()
        })
        .await
    }

    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        self.tx(move |c| {
            async move {
                if !template_exists(c, id).await? {
                    return Err(StoreError::TemplateNotFound(id).into());
                }
                let user: Option<String> = tasks::table
                    .filter(tasks::template_id.eq(id.to_string()))
                    .select(tasks::id)
                    .first(c)
                    .await
                    .optional()?;
                if let Some(user) = user {
                    return Err(
                        StoreError::InUse(format!("template {id} is used by task {user}")).into(),
                    );
                }
                // A task that started using it meanwhile makes this fail with `InUse`
                // (the foreign key).
                diesel::delete(templates::table.find(id.to_string()))
                    .execute(c)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
    }

    async fn append_log(&self, mut entry: LogEntry) -> Result<LogEntry, StoreError> {
        self.run(move |c| {
            async move {
                entry.seq = 0;
                let seq: i64 = diesel::insert_into(schema::logs::table)
                    .values((
                        schema::logs::task_id.eq(entry.task_id.map(|t| t.to_string())),
                        schema::logs::data.eq(to_json(&entry)?),
                    ))
                    .returning(schema::logs::seq)
                    .get_result(c)
                    .await
                    .map_err(map_db)?;
                entry.seq = count_to_u64(seq);
                Ok(entry)
            }
            .boxed()
        })
        .await
    }

    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        use self::schema::logs;
        self.run(move |c| {
            async move {
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
                if let Some(limit) = limit_of(query.limit) {
                    q = q.limit(limit);
                }
                let rows: Vec<(i64, serde_json::Value)> = q.load(c).await.map_err(map_db)?;
                let mut out = rows
                    .into_iter()
                    .map(|(seq, data)| {
                        let mut entry: LogEntry = from_json("log", data)?;
                        entry.seq = count_to_u64(seq);
                        Ok(entry)
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                out.reverse();
                Ok(out)
            }
            .boxed()
        })
        .await
    }

    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError> {
        Ok(self.claim_many(agent, lease, 1).await?.pop())
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
        let now = Utc::now();
        let expires_at = rules::lease_end(now, lease)?;
        let patch = serde_json::json!({
            "status": TaskStatus::InProgress,
            "assigned_agent": agent,
            "updated_at": now,
        });
        let lease_base = serde_json::json!({ "agent": agent, "expires_at": expires_at });
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let who = agent.to_string();
        let mut rows: Vec<Claimed> = self
            .run(move |c| {
                async move {
                    prepared::ClaimStatement {
                        agent: who,
                        expires_at: micros(expires_at),
                        now: micros(now),
                        patch,
                        lease: lease_base,
                        limit,
                    }
                    .load(c)
                    .await
                    .map_err(map_db)
                }
                .boxed()
            })
            .await?;
        // RETURNING has no order: hand the claims out in claim order.
        rows.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        let claims = rows
            .into_iter()
            .map(|row| {
                let claim = Claim {
                    task_id: parse_task_id(&row.id)?,
                    agent: agent.clone(),
                    token: count_to_u64(row.token),
                    expires_at,
                };
                tracing::debug!(task = %claim.task_id, agent = %claim.agent, token = claim.token, "task claimed");
                Ok(claim)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(claims)
    }

    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        let lease = validate_lease(lease)?;
        self.tx(move |c| {
            async move {
                let mut task = lock_task(c, claim.task_id).await?;
                let expires_at = rules::lease_end(Utc::now(), lease)?;
                let claim = rules::renew(&mut task, claim, expires_at)?;
                save_task(c, &task, false).await?;
                Ok(claim)
            }
            .boxed()
        })
        .await
    }

    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        // The common case in one statement (one round trip instead of five): the claim is
        // current and the status change allowed. Anything else takes the general path,
        // which reports exactly what is wrong.
        if !status.is_active()
            && let Some(task) = self.release_fast(&claim, status).await?
        {
            return Ok(task);
        }
        self.tx(move |c| {
            async move {
                release_general(c, &claim, status)
                    .await?
                    .map_err(TxError::Store)
            }
            .boxed()
        })
        .await
    }

    async fn release_many(
        &self,
        releases: Vec<(Claim, TaskStatus)>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        if releases.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction, so one commit (one WAL flush) for the whole batch, and one
        // statement for every claim that is current and may move: the first claim on each
        // task, to a status a release may set. The rest (later claims on the same task, and
        // those the statement left alone) take the general path after it, in their order,
        // which gives each the answer a release one by one would have given.
        let mut seen = std::collections::HashSet::new();
        let mut statement = prepared::ReleaseManyStatement::new()?;
        let mut in_statement = Vec::with_capacity(releases.len());
        for (claim, status) in &releases {
            // Only a task's first claim in the batch: the statement runs before the general
            // path, so a later claim on a task must not overtake an earlier one.
            let take = seen.insert(claim.task_id) && !status.is_active();
            in_statement.push(take);
            if take {
                statement.push(claim, *status)?;
            }
        }
        self.tx(move |c| {
            async move {
                let rows: Vec<ReleasedRow> = if statement.is_empty() {
                    Vec::new()
                } else {
                    statement.load(c).await?
                };
                let mut released: std::collections::HashMap<String, Result<Task, StoreError>> =
                    rows.into_iter()
                        .map(|row| (row.id.clone(), row.into_task()))
                        .collect();
                let mut out = Vec::with_capacity(releases.len());
                for ((claim, status), in_statement) in releases.iter().zip(in_statement) {
                    let done = if in_statement {
                        released.remove(&claim.task_id.to_string())
                    } else {
                        None
                    };
                    match done {
                        Some(task) => out.push(task),
                        None => out.push(release_general(c, claim, *status).await?),
                    }
                }
                Ok(out)
            }
            .boxed()
        })
        .await
    }
}
