//! [`MemoryStore`]: a [`TaskStore`] that keeps everything in process memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ananta_core::error::StoreError;
use ananta_core::ids::{AgentId, TaskId, TemplateId};
use ananta_core::log::{LogEntry, LogQuery};
use ananta_core::store::{Claim, TaskStore, validate_lease};
use ananta_core::task::{Lease, StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use ananta_core::template::{Template, TemplateUpdate};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A [`TaskStore`] held in memory: fast, shared between clones, gone when the process ends.
///
/// Cloning is cheap and every clone sees the same data (the state sits behind an
/// [`Arc`]`<`[`Mutex`]`>`). The lock is never held across an `.await`, and a lock poisoned by a
/// panicking thread is recovered (every change is computed on a copy and stored in one
/// assignment, so a panic cannot leave a half-applied change behind).
///
/// It follows the rules of [`TaskStore`] and passes the
/// [`conformance`](crate#conformance-suite) suite. Details of this backend:
///
/// - tasks are kept in id order (ids sort by creation time), so "oldest first" is id order;
/// - a stored task starts at `version` 1 and every successful change adds 1;
/// - log sequence numbers start at 1;
/// - time is the local clock ([`Utc::now`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    pub(crate) state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    tasks: BTreeMap<TaskId, Task>,
    templates: BTreeMap<TemplateId, Template>,
    /// Ascending by `seq` (appends only).
    logs: Vec<LogEntry>,
    last_seq: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lease_end(now: DateTime<Utc>, lease: chrono::Duration) -> Result<DateTime<Utc>, StoreError> {
    now.checked_add_signed(lease)
        .ok_or_else(|| StoreError::InvalidInput(format!("lease of {lease} ends out of range")))
}

/// Whether `agent` may claim `task` at `now` (see the rules of [`TaskStore`]).
fn is_claimable(task: &Task, agent: &AgentId, now: DateTime<Utc>) -> bool {
    let lease_live = task.lease.as_ref().is_some_and(|l| l.expires_at > now);
    match task.status {
        TaskStatus::Todo => !lease_live && task.assigned_agent.as_ref().is_none_or(|a| a == agent),
        TaskStatus::InProgress | TaskStatus::Proposing => task.lease.is_some() && !lease_live,
        _ => false,
    }
}

/// Whether `claim` is the current claim on `task`: its token is the task's current one and it
/// belongs to the lease holder. An expired lease that nobody took over is still current.
fn check_fence(task: &Task, claim: &Claim) -> Result<(), StoreError> {
    match &task.lease {
        Some(lease) if lease.token == claim.token && lease.agent == claim.agent => Ok(()),
        _ => Err(StoreError::StaleClaim {
            task: claim.task_id,
            token: claim.token,
        }),
    }
}

/// Bumps the version and the change time of a task that was just changed.
fn touch(task: &mut Task, now: DateTime<Utc>) {
    task.version += 1;
    task.updated_at = now;
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_task(&self, mut task: Task) -> Result<Task, StoreError> {
        task.validate().map_err(StoreError::InvalidInput)?;
        let mut state = self.lock();
        if state.tasks.contains_key(&task.id) {
            return Err(StoreError::AlreadyExists(format!("task {}", task.id)));
        }
        if let Some(template) = task.template_id
            && !state.templates.contains_key(&template)
        {
            return Err(StoreError::TemplateNotFound(template));
        }
        task.version = 1;
        state.tasks.insert(task.id, task.clone());
        tracing::debug!(task = %task.id, "task created");
        Ok(task)
    }

    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.lock()
            .tasks
            .get(&id)
            .cloned()
            .ok_or(StoreError::TaskNotFound(id))
    }

    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        let state = self.lock();
        Ok(state
            .tasks
            .values()
            .filter(|t| filter.matches(t))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError> {
        let mut state = self.lock();
        let current = state.tasks.get(&id).ok_or(StoreError::TaskNotFound(id))?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(StoreError::VersionConflict {
                id,
                expected,
                actual: current.version,
            });
        }
        if let Some(Some(template)) = update.template_id
            && !state.templates.contains_key(&template)
        {
            return Err(StoreError::TemplateNotFound(template));
        }
        let mut next = current.clone();
        update.apply(&mut next)?;
        touch(&mut next, Utc::now());
        state.tasks.insert(id, next.clone());
        Ok(next)
    }

    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        match self.lock().tasks.remove(&id) {
            Some(_) => Ok(()),
            None => Err(StoreError::TaskNotFound(id)),
        }
    }

    async fn append_step(&self, id: TaskId, mut step: StepRecord) -> Result<Task, StoreError> {
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(&id)
            .ok_or(StoreError::TaskNotFound(id))?;
        step.index = task
            .next_step_index()
            .ok_or_else(|| StoreError::InvalidInput(format!("task {id} has too many steps")))?;
        task.steps.push(step);
        task.proposal = None;
        touch(task, Utc::now());
        Ok(task.clone())
    }

    async fn create_template(&self, template: Template) -> Result<Template, StoreError> {
        template
            .validate()
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        let mut state = self.lock();
        if state.templates.contains_key(&template.id) {
            return Err(StoreError::AlreadyExists(format!(
                "template {}",
                template.id
            )));
        }
        if state.templates.values().any(|t| t.name == template.name) {
            return Err(StoreError::AlreadyExists(format!(
                "template named {:?}",
                template.name
            )));
        }
        state.templates.insert(template.id, template.clone());
        Ok(template)
    }

    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError> {
        self.lock()
            .templates
            .get(&id)
            .cloned()
            .ok_or(StoreError::TemplateNotFound(id))
    }

    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        let mut templates: Vec<Template> = self.lock().templates.values().cloned().collect();
        templates.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(templates)
    }

    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError> {
        let mut state = self.lock();
        let mut next = state
            .templates
            .get(&id)
            .cloned()
            .ok_or(StoreError::TemplateNotFound(id))?;
        update
            .apply(&mut next)
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        if state
            .templates
            .values()
            .any(|t| t.id != id && t.name == next.name)
        {
            return Err(StoreError::AlreadyExists(format!(
                "template named {:?}",
                next.name
            )));
        }
        state.templates.insert(id, next.clone());
        Ok(next)
    }

    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.templates.contains_key(&id) {
            return Err(StoreError::TemplateNotFound(id));
        }
        if let Some(user) = state.tasks.values().find(|t| t.template_id == Some(id)) {
            return Err(StoreError::InUse(format!(
                "template {id} is used by task {}",
                user.id
            )));
        }
        state.templates.remove(&id);
        Ok(())
    }

    async fn append_log(&self, mut entry: LogEntry) -> Result<LogEntry, StoreError> {
        let mut state = self.lock();
        state.last_seq += 1;
        entry.seq = state.last_seq;
        state.logs.push(entry.clone());
        Ok(entry)
    }

    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        Ok(query.select(&self.lock().logs))
    }

    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError> {
        let lease = validate_lease(lease)?;
        let mut state = self.lock();
        let now = Utc::now();
        let expires_at = lease_end(now, lease)?;
        // Highest priority first; among equals the oldest, i.e. the smallest id.
        let Some(task) = state
            .tasks
            .values_mut()
            .filter(|t| is_claimable(t, &agent, now))
            .max_by(|a, b| a.priority.cmp(&b.priority).then_with(|| b.id.cmp(&a.id)))
        else {
            return Ok(None);
        };
        let rescued = task.lease.as_ref().map(|l| l.agent.clone());
        task.fence += 1;
        task.lease = Some(Lease {
            agent: agent.clone(),
            token: task.fence,
            expires_at,
        });
        task.status = TaskStatus::InProgress;
        task.assigned_agent = Some(agent.clone());
        touch(task, now);
        tracing::debug!(
            task = %task.id,
            %agent,
            token = task.fence,
            rescued_from = ?rescued,
            "task claimed"
        );
        Ok(Some(Claim {
            task_id: task.id,
            agent,
            token: task.fence,
            expires_at,
        }))
    }

    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        let lease = validate_lease(lease)?;
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(&claim.task_id)
            .ok_or(StoreError::TaskNotFound(claim.task_id))?;
        check_fence(task, &claim)?;
        let now = Utc::now();
        let expires_at = lease_end(now, lease)?;
        // A lease renewal is a heartbeat, not a change of the task: version and updated_at stay,
        // so a caller holding the version across a long step is not fenced out by it.
        task.lease = Some(Lease {
            agent: claim.agent.clone(),
            token: claim.token,
            expires_at,
        });
        Ok(Claim {
            expires_at,
            ..claim
        })
    }

    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(&claim.task_id)
            .ok_or(StoreError::TaskNotFound(claim.task_id))?;
        check_fence(task, &claim)?;
        if matches!(status, TaskStatus::InProgress | TaskStatus::Proposing) {
            return Err(StoreError::InvalidInput(format!(
                "release must end the work: {status} would leave the task active without a lease"
            )));
        }
        task.status.check_transition(task.id, status)?;
        task.status = status;
        task.lease = None;
        if status == TaskStatus::Todo {
            task.assigned_agent = None;
        }
        touch(task, Utc::now());
        tracing::debug!(task = %task.id, agent = %claim.agent, token = claim.token, %status, "claim released");
        Ok(task.clone())
    }
}
