//! [`MemoryStore`]: a [`TaskStore`] that keeps everything in process memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ananta_core::error::StoreError;
use ananta_core::ids::{AgentId, TaskId, TemplateId};
use ananta_core::log::{LogEntry, LogQuery};
use ananta_core::store::{Claim, TaskStore, validate_lease};
use ananta_core::task::{StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use ananta_core::template::{Template, TemplateUpdate};
use async_trait::async_trait;
use chrono::Utc;

use crate::rules;

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

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create_task(&self, task: Task) -> Result<Task, StoreError> {
        let task = rules::new_task(task)?;
        let mut state = self.lock();
        if state.tasks.contains_key(&task.id) {
            return Err(StoreError::AlreadyExists(format!("task {}", task.id)));
        }
        if let Some(template) = task.template_id
            && !state.templates.contains_key(&template)
        {
            return Err(StoreError::TemplateNotFound(template));
        }
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
        if let Some(Some(template)) = update.template_id
            && !state.templates.contains_key(&template)
        {
            return Err(StoreError::TemplateNotFound(template));
        }
        let mut next = current.clone();
        rules::update(&mut next, update, expected_version, Utc::now())?;
        state.tasks.insert(id, next.clone());
        Ok(next)
    }

    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        match self.lock().tasks.remove(&id) {
            Some(_) => Ok(()),
            None => Err(StoreError::TaskNotFound(id)),
        }
    }

    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError> {
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(&id)
            .ok_or(StoreError::TaskNotFound(id))?;
        let mut next = task.clone();
        rules::append_step(&mut next, step, Utc::now())?;
        *task = next.clone();
        Ok(next)
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
        let expires_at = rules::lease_end(now, lease)?;
        let Some(task) = state
            .tasks
            .values_mut()
            .filter(|t| rules::is_claimable(t, &agent, now))
            .min_by(|a, b| rules::claim_order(a, b))
        else {
            return Ok(None);
        };
        Ok(Some(rules::claim(task, agent, expires_at, now)))
    }

    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        let lease = validate_lease(lease)?;
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(&claim.task_id)
            .ok_or(StoreError::TaskNotFound(claim.task_id))?;
        let expires_at = rules::lease_end(Utc::now(), lease)?;
        rules::renew(task, claim, expires_at)
    }

    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        let mut state = self.lock();
        let task = state
            .tasks
            .get_mut(&claim.task_id)
            .ok_or(StoreError::TaskNotFound(claim.task_id))?;
        let mut next = task.clone();
        rules::release(&mut next, &claim, status, Utc::now())?;
        *task = next.clone();
        Ok(next)
    }
}
