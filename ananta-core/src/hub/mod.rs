//! The Hub: task board, templates, agent registry, assignment, forwarding of steps to the
//! assigned agent, per-task logs and events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::broadcast;

use crate::agent::AgentClient;
use crate::decompose::Decomposer;
use crate::error::Error;
use crate::event::{Event, EventBus, EventKind};
use crate::ids::{AgentId, TaskId, TemplateId};
use crate::log::LogEntry;
use crate::matching::AgentMatcher;
use crate::pipeline::NodeAgent;
use crate::registry::AgentRegistry;
use crate::store::TaskStore;
use crate::task::{NewTask, Task, TaskFilter, TaskStatus, TaskUpdate};
use crate::template::{NewTemplate, Template, TemplateUpdate};

mod agents;
mod background;
mod builder;
mod run;
mod steps;

pub use builder::HubBuilder;

/// The clients of the agents registered in this process, by name.
type Clients = Arc<RwLock<HashMap<AgentId, Arc<dyn AgentClient>>>>;

/// The agents a Hub can hand a run's tasks to, by name.
pub(crate) type NodeAgents = Arc<RwLock<HashMap<AgentId, Arc<dyn NodeAgent>>>>;

pub(crate) struct HubInner {
    pub(crate) store: Arc<dyn TaskStore>,
    pub(crate) registry: Arc<dyn AgentRegistry>,
    clients: Clients,
    pub(crate) events: EventBus,
    reassign_offline: bool,
    pub(crate) decomposer: Option<Arc<dyn Decomposer>>,
    pub(crate) matcher: AgentMatcher,
    pub(crate) node_agents: NodeAgents,
    /// Runs this process is executing right now (a second start of one is refused).
    pub(crate) active_runs: Mutex<HashSet<TaskId>>,
    /// Background step loops ([`Hub::start_run`]) and their cancellation.
    pub(crate) task_runs: Mutex<HashMap<TaskId, tokio_util::sync::CancellationToken>>,
}

/// The brain and memory of Ananta: keeps the task board, templates and agents, and forwards
/// each task's steps to the agent it is assigned to.
///
/// Cheap to clone (shared state). Every change is stored first, then logged (per task, in the
/// store) and published as an [`Event`].
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Starts building a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// Subscribes to the hub's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The store behind the hub.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.inner.store
    }

    /// The registry behind the hub.
    pub fn registry(&self) -> &Arc<dyn AgentRegistry> {
        &self.inner.registry
    }

    pub(crate) fn publish(&self, kind: EventKind) {
        self.inner.events.publish(kind);
    }

    pub(crate) async fn log(&self, entry: LogEntry) {
        // A failing log write must not fail the step that already happened; it is traced.
        if let Err(e) = self.inner.store.append_log(entry).await {
            tracing::warn!(error = %e, "could not append a log entry");
        }
    }

    // ---- tasks ------------------------------------------------------------------------

    /// Creates a task.
    pub async fn create_task(&self, new: NewTask) -> Result<Task, Error> {
        let task = new.into_task()?;
        let task = self.inner.store.create_task(task).await?;
        self.publish(EventKind::TaskCreated {
            task: Box::new(task.clone()),
        });
        Ok(task)
    }

    /// Reads a task.
    pub async fn get_task(&self, id: TaskId) -> Result<Task, Error> {
        Ok(self.inner.store.get_task(id).await?)
    }

    /// Lists tasks.
    pub async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, Error> {
        Ok(self.inner.store.list_tasks(filter).await?)
    }

    /// Changes a task (status changes follow the transition table; with `expected_version`,
    /// a concurrent change makes it fail with a version conflict).
    pub async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, Error> {
        if let Some(Some(agent)) = &update.assigned_agent {
            self.inner.registry.get(agent.clone()).await?;
        }
        let task = self
            .inner
            .store
            .update_task(id, update, expected_version)
            .await?;
        self.publish(EventKind::TaskUpdated {
            task: Box::new(task.clone()),
        });
        Ok(task)
    }

    /// Moves a task to `status`.
    pub async fn set_status(&self, id: TaskId, status: TaskStatus) -> Result<Task, Error> {
        self.update_task(id, TaskUpdate::status(status), None).await
    }

    /// Deletes a task (its logs stay).
    pub async fn delete_task(&self, id: TaskId) -> Result<(), Error> {
        self.inner.store.delete_task(id).await?;
        self.publish(EventKind::TaskDeleted { task_id: id });
        Ok(())
    }

    // ---- templates --------------------------------------------------------------------

    /// Creates a template (validated: syntax, and every placeholder a task variable or a default).
    pub async fn create_template(&self, new: NewTemplate) -> Result<Template, Error> {
        let template = new.into_template()?;
        Ok(self.inner.store.create_template(template).await?)
    }

    /// Reads a template.
    pub async fn get_template(&self, id: TemplateId) -> Result<Template, Error> {
        Ok(self.inner.store.get_template(id).await?)
    }

    /// All templates.
    pub async fn list_templates(&self) -> Result<Vec<Template>, Error> {
        Ok(self.inner.store.list_templates().await?)
    }

    /// Changes a template.
    pub async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, Error> {
        Ok(self.inner.store.update_template(id, update).await?)
    }

    /// Deletes a template; refused while a task uses it.
    pub async fn delete_template(&self, id: TemplateId) -> Result<(), Error> {
        Ok(self.inner.store.delete_template(id).await?)
    }
}
