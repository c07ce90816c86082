//! The Hub: task board, templates, agent registry, assignment, forwarding of steps to the
//! assigned agent, per-task logs and events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::agent::{
    AgentCard, AgentClient, AgentInfo, AgentStatus, ExecuteRequest, ProposeRequest,
};
use crate::decompose::Decomposer;
use crate::error::{AgentError, Error, ExecError};
use crate::event::{Event, EventBus, EventKind};
use crate::ids::{AgentId, TaskId, TemplateId};
use crate::llm::LlmProvider;
use crate::log::{Direction, LogEntry, LogQuery};
use crate::matching::AgentMatcher;
use crate::pipeline::NodeAgent;
use crate::registry::{AgentRegistry, InMemoryRegistry};
use crate::steps::{StepDriver, StepLimits, StepReport, StopReason, drive};
use crate::store::TaskStore;
use crate::task::{
    NewTask, Proposal, Proposed, StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate,
};
use crate::template::{NewTemplate, Template, TemplateUpdate};
use crate::worker::output_payload;

/// Builds a [`Hub`].
#[derive(Default)]
pub struct HubBuilder {
    store: Option<Arc<dyn TaskStore>>,
    registry: Option<Arc<dyn AgentRegistry>>,
    event_capacity: Option<usize>,
    reassign_offline: bool,
    decomposer: Option<Arc<dyn Decomposer>>,
    embeddings: Option<Arc<dyn LlmProvider>>,
    match_threshold: Option<f32>,
    fallback_agent: Option<AgentId>,
}

impl HubBuilder {
    /// Where tasks, templates and logs live (required; e.g. `ananta_store::MemoryStore`).
    pub fn store(mut self, store: Arc<dyn TaskStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The agent registry (default: [`InMemoryRegistry`]).
    pub fn registry(mut self, registry: Arc<dyn AgentRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Events buffered per subscriber before a slow one starts missing them (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = Some(capacity);
        self
    }

    /// When a task's agent is offline, hand the task to the best-matching online agent
    /// instead of failing the step with [`Error::AgentOffline`] (default: off).
    pub fn reassign_offline(mut self, on: bool) -> Self {
        self.reassign_offline = on;
        self
    }

    /// How [`Hub::orchestrate`] splits a prompt into a plan (e.g. an
    /// [`LlmDecomposer`](crate::decompose::LlmDecomposer)); without one, only [`Hub::run_plan`] runs.
    pub fn decomposer(mut self, decomposer: Arc<dyn Decomposer>) -> Self {
        self.decomposer = Some(decomposer);
        self
    }

    /// Match a run's tasks to agents with `provider`'s embeddings (the built-in lexical
    /// embedder stands in when it offers none or fails; see [`AgentMatcher`]).
    pub fn embeddings(mut self, provider: Arc<dyn LlmProvider>) -> Self {
        self.embeddings = Some(provider);
        self
    }

    /// Below this similarity a run's task goes to the fallback agent (default 0.1).
    pub fn match_threshold(mut self, threshold: f32) -> Self {
        self.match_threshold = Some(threshold);
        self
    }

    /// The agent a run's task goes to when no agent reaches the match threshold (default:
    /// the best match anyway).
    pub fn fallback_agent(mut self, agent: AgentId) -> Self {
        self.fallback_agent = Some(agent);
        self
    }

    /// Builds the hub; fails without a store.
    pub fn build(self) -> Result<Hub, Error> {
        let store = self
            .store
            .ok_or_else(|| Error::InvalidInput("Hub needs a TaskStore".into()))?;
        let registry = self
            .registry
            .unwrap_or_else(|| Arc::new(InMemoryRegistry::new()));
        let node_agents: NodeAgents = Arc::default();
        let clients: Clients = Arc::default();
        let (runnable, connected) = (node_agents.clone(), clients.clone());
        let mut matcher = AgentMatcher::new(registry.clone()).candidates(move |info| {
            runnable
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&info.card.name)
                || connected
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&info.card.name)
        });
        if let Some(provider) = self.embeddings {
            matcher = matcher.embeddings(provider);
        }
        if let Some(threshold) = self.match_threshold {
            matcher = matcher.threshold(threshold);
        }
        if let Some(agent) = self.fallback_agent {
            matcher = matcher.fallback(agent);
        }
        Ok(Hub {
            inner: Arc::new(HubInner {
                store,
                registry,
                clients,
                events: EventBus::new(self.event_capacity.unwrap_or(1024)),
                reassign_offline: self.reassign_offline,
                decomposer: self.decomposer,
                matcher,
                node_agents,
                active_runs: Mutex::default(),
            }),
        })
    }
}

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

    // ---- agents -----------------------------------------------------------------------

    /// Registers an agent and the client that reaches it (an in-process `Worker`, or a
    /// remote client). Registering a known name again updates its card and client, and counts
    /// as a heartbeat: the agent is online and was last seen now.
    ///
    /// Publishes `AgentRegistered` when the agent is new or its card changed, and
    /// `AgentStatusChanged` when it was offline before.
    pub async fn register_agent(
        &self,
        card: AgentCard,
        client: Arc<dyn AgentClient>,
    ) -> Result<AgentInfo, Error> {
        let (before, info) = self.register_card(card).await?;
        self.inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.card.name.clone(), client);
        self.announce(before.as_ref(), &info);
        Ok(info)
    }

    /// Registers an in-process `worker` in one call: its [card](crate::worker::Worker::card) (its
    /// specialisation as the description matching reads) and the worker itself as the client
    /// the Hub forwards steps to.
    ///
    /// ```
    /// # async fn demo(hub: ananta_core::Hub, worker: ananta_core::Worker) -> Result<(), ananta_core::Error> {
    /// let info = hub.register_worker(&worker).await?;
    /// assert_eq!(&info.card.name, worker.name());
    /// # Ok(()) }
    /// ```
    pub async fn register_worker(
        &self,
        worker: &crate::worker::Worker,
    ) -> Result<AgentInfo, Error> {
        self.register_agent(worker.card(), Arc::new(worker.clone()))
            .await
    }

    /// Registers `card`, returning the agent as it was before (if known) and as it is now.
    async fn register_card(
        &self,
        card: AgentCard,
    ) -> Result<(Option<AgentInfo>, AgentInfo), Error> {
        let before = match self.inner.registry.get(card.name.clone()).await {
            Ok(info) => Some(info),
            Err(crate::error::RegistryError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let info = self.inner.registry.register(card).await?;
        Ok((before, info))
    }

    /// Publishes `AgentRegistered` for a new or changed card, `AgentStatusChanged` for an
    /// agent that was not online before.
    fn announce(&self, before: Option<&AgentInfo>, info: &AgentInfo) {
        if before.is_none_or(|b| b.card_version != info.card_version) {
            tracing::info!(agent = %info.card.name, version = info.card_version, "agent registered");
            self.publish(EventKind::AgentRegistered {
                agent: Box::new(info.clone()),
            });
        }
        if before.is_some_and(|b| b.status != AgentStatus::Online) {
            tracing::info!(agent = %info.card.name, "agent is back online");
            self.publish(EventKind::AgentStatusChanged {
                agent: info.card.name.clone(),
                status: AgentStatus::Online,
            });
        }
    }

    /// Registers an agent that works on the tasks of orchestration runs
    /// ([`Hub::orchestrate`]): a [`TextAgent`](crate::pipeline::TextAgent), a
    /// [`ShellAgent`](crate::pipeline::ShellAgent) or any other [`NodeAgent`]. Its card is
    /// what tasks are matched against (name, description, system prompt as its
    /// specialisation, tools, tags). Registering a known name again replaces its card and
    /// agent. Only agents registered this way, or with [`register_agent`](Self::register_agent)
    /// in this process (they work on the run's board task themselves), and online, are
    /// matched to a run's tasks.
    pub async fn add_node_agent(
        &self,
        card: AgentCard,
        agent: Arc<dyn NodeAgent>,
    ) -> Result<AgentInfo, Error> {
        let (before, info) = self.register_card(card).await?;
        self.inner
            .node_agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.card.name.clone(), agent);
        self.announce(before.as_ref(), &info);
        Ok(info)
    }

    /// The agent registered with [`add_node_agent`](Self::add_node_agent) under `id`.
    pub fn node_agent(&self, id: &AgentId) -> Option<Arc<dyn NodeAgent>> {
        self.inner
            .node_agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Whether the hub holds a client for the agent (registered in this process).
    pub fn is_connected(&self, id: &AgentId) -> bool {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Removes an agent.
    pub async fn deregister_agent(&self, id: AgentId) -> Result<(), Error> {
        self.inner.registry.deregister(id.clone()).await?;
        self.inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.inner
            .node_agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        Ok(())
    }

    /// All agents.
    pub async fn list_agents(&self) -> Result<Vec<AgentInfo>, Error> {
        Ok(self.inner.registry.list().await?)
    }

    /// Reads one agent.
    pub async fn get_agent(&self, id: AgentId) -> Result<AgentInfo, Error> {
        Ok(self.inner.registry.get(id).await?)
    }

    /// Sets an agent's liveness; publishes `AgentStatusChanged` when it changed.
    pub async fn set_agent_status(
        &self,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<AgentInfo, Error> {
        let before = self.inner.registry.get(id.clone()).await?.status;
        let info = self.inner.registry.set_status(id.clone(), status).await?;
        if before != status {
            tracing::info!(agent = %id, ?status, "agent status changed");
            self.publish(EventKind::AgentStatusChanged { agent: id, status });
        }
        Ok(info)
    }

    /// Pings every connected agent once and records who answered (online) and who did not
    /// (offline). Returns each agent's new status.
    pub async fn check_agents(&self, timeout: Duration) -> Vec<(AgentId, AgentStatus)> {
        let clients: Vec<(AgentId, Arc<dyn AgentClient>)> = self
            .inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        let checks = clients.into_iter().map(|(id, client)| async move {
            let alive = matches!(
                tokio::time::timeout(timeout, client.ping()).await,
                Ok(Ok(()))
            );
            (
                id,
                if alive {
                    AgentStatus::Online
                } else {
                    AgentStatus::Offline
                },
            )
        });
        let results = futures::future::join_all(checks).await;
        for (id, status) in &results {
            if let Err(e) = self.set_agent_status(id.clone(), *status).await {
                tracing::warn!(agent = %id, error = %e, "could not record agent status");
            }
        }
        results
    }

    /// Checks agents every `interval` until `cancel` fires (spawn it on the runtime).
    pub async fn monitor_agents(
        &self,
        interval: Duration,
        timeout: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => { self.check_agents(timeout).await; }
            }
        }
    }

    fn client(&self, agent: &AgentId) -> Result<Arc<dyn AgentClient>, Error> {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned()
            .ok_or_else(|| Error::AgentNotConnected(agent.clone()))
    }

    /// Assigns a task to a registered agent that is not offline.
    pub async fn assign(&self, task_id: TaskId, agent: AgentId) -> Result<Task, Error> {
        let info = self.inner.registry.get(agent.clone()).await?;
        if info.status == AgentStatus::Offline {
            return Err(Error::AgentOffline(agent));
        }
        let update = TaskUpdate {
            assigned_agent: Some(Some(agent.clone())),
            ..TaskUpdate::default()
        };
        let task = self.inner.store.update_task(task_id, update, None).await?;
        self.log(
            LogEntry::new(Direction::In, "assign", json!({"agent": agent}))
                .task(task_id)
                .agent(Some(agent.clone())),
        )
        .await;
        self.publish(EventKind::TaskAssigned { task_id, agent });
        self.publish(EventKind::TaskUpdated {
            task: Box::new(task.clone()),
        });
        Ok(task)
    }

    /// The assigned agent and its client, refusing offline agents (or, when the hub was
    /// built with [`HubBuilder::reassign_offline`], handing the task to the best-matching
    /// online agent).
    async fn assigned(&self, task: &Task) -> Result<(AgentId, Arc<dyn AgentClient>), Error> {
        let agent = task
            .assigned_agent
            .clone()
            .ok_or(Error::NotAssigned(task.id))?;
        let info = self.inner.registry.get(agent.clone()).await?;
        if info.status == AgentStatus::Offline || !self.is_connected(&agent) {
            if !self.inner.reassign_offline {
                return Err(if info.status == AgentStatus::Offline {
                    Error::AgentOffline(agent)
                } else {
                    Error::AgentNotConnected(agent)
                });
            }
            let text = format!("{} {}", task.title, task.description);
            let candidates = self.inner.registry.best_match(text, 8).await?;
            let Some(next) = candidates
                .into_iter()
                .map(|m| m.agent)
                .find(|a| *a != agent && self.is_connected(a))
            else {
                return Err(Error::AgentOffline(agent));
            };
            tracing::info!(task = %task.id, from = %agent, to = %next, "reassigning a task away from an offline agent");
            self.assign(task.id, next.clone()).await?;
            let client = self.client(&next)?;
            return Ok((next, client));
        }
        let client = self.client(&agent)?;
        Ok((agent, client))
    }

    /// The task as stored now when [`Hub::assigned`] handed it to another agent.
    async fn reread_if_reassigned(&self, task: Task, agent: &AgentId) -> Result<Task, Error> {
        if task.assigned_agent.as_ref() == Some(agent) {
            Ok(task)
        } else {
            Ok(self.inner.store.get_task(task.id).await?)
        }
    }

    /// Moves `task` to `status` (fenced by its version) unless it is there already.
    pub(crate) async fn move_to(&self, task: Task, status: TaskStatus) -> Result<Task, Error> {
        if task.status == status {
            return Ok(task);
        }
        self.apply(&task, TaskUpdate::status(status)).await
    }

    /// Applies `update` to `task`, fenced by the version it was read at, and publishes the
    /// result.
    async fn apply(&self, task: &Task, update: TaskUpdate) -> Result<Task, Error> {
        let updated = self
            .inner
            .store
            .update_task(task.id, update, Some(task.version))
            .await?;
        self.publish(EventKind::TaskUpdated {
            task: Box::new(updated.clone()),
        });
        Ok(updated)
    }

    /// Asks the assigned agent for the next step. A proposed command is stored on the task as
    /// its pending proposal; a "done" answer is returned without changing the task (a caller
    /// or [`Hub::run`] decides to close it). The task is `proposing` while the agent thinks,
    /// and `in_progress` afterwards, also when the agent failed.
    pub async fn propose(&self, task_id: TaskId) -> Result<Proposed, Error> {
        let task = self.inner.store.get_task(task_id).await?;
        let (agent, client) = self.assigned(&task).await?;
        let task = self.reread_if_reassigned(task, &agent).await?;
        let template = match task.template_id {
            Some(id) => Some(self.inner.store.get_template(id).await?),
            None => None,
        };
        let task = self.move_to(task, TaskStatus::InProgress).await?;
        let task = self.move_to(task, TaskStatus::Proposing).await?;
        let step = task.next_step_index().unwrap_or(u32::MAX);
        self.log(
            LogEntry::new(
                Direction::In,
                "propose",
                json!({"template_id": task.template_id}),
            )
            .task(task_id)
            .agent(Some(agent.clone()))
            .step(step),
        )
        .await;
        let result = client.propose(ProposeRequest { task, template }).await;
        let proposal = match &result {
            Ok(Proposed::Command(p)) => Some(p.clone()),
            _ => None,
        };
        let stored = self.finish_proposing(task_id, proposal).await;
        let payload = match &result {
            Ok(Proposed::Command(p)) => {
                json!({"reason": p.reason, "command": p.command, "usage": p.usage})
            }
            Ok(Proposed::Done(c)) => json!({"done": true, "summary": c.summary, "usage": c.usage}),
            Err(e) => json!({"error": e.to_string()}),
        };
        let kind = if result.is_ok() { "proposal" } else { "error" };
        self.log(
            LogEntry::new(Direction::Out, kind, payload)
                .task(task_id)
                .agent(Some(agent))
                .step(step),
        )
        .await;
        let proposed = result?;
        let stored = stored?;
        self.publish(EventKind::StepProposed {
            task_id,
            proposed: Box::new(proposed.clone()),
        });
        self.publish(EventKind::TaskUpdated {
            task: Box::new(stored),
        });
        Ok(proposed)
    }

    /// After the agent answered: stores the proposal (if any) and moves the task from
    /// `proposing` back to `in_progress`. The agent may have thought for minutes, so the task
    /// is re-read instead of fenced by the version from before the call; a concurrent change
    /// (a human blocked or cancelled it) wins over the status change, and a task that has
    /// left the active statuses does not take the proposal.
    async fn finish_proposing(
        &self,
        task_id: TaskId,
        proposal: Option<Proposal>,
    ) -> Result<Task, Error> {
        let mut attempts = 0;
        loop {
            let current = self.inner.store.get_task(task_id).await?;
            let mut update = TaskUpdate::default();
            if current.status == TaskStatus::Proposing {
                update.status = Some(TaskStatus::InProgress);
            }
            if proposal.is_some()
                && (current.status.is_active() || current.status == TaskStatus::Todo)
            {
                update.proposal = Some(proposal.clone());
            }
            if update == TaskUpdate::default() {
                return Ok(current);
            }
            match self
                .inner
                .store
                .update_task(task_id, update, Some(current.version))
                .await
            {
                Err(crate::error::StoreError::VersionConflict { .. }) if attempts < 5 => {
                    attempts += 1
                }
                other => return Ok(other?),
            }
        }
    }

    /// Lets the assigned agent execute `command`, or the task's pending proposal when `None`.
    /// The step is appended to the task's history (which clears the proposal) and logged.
    ///
    /// When the agent's gate holds the command for a human, nothing runs: the task moves to
    /// `blocked` with the proposal waiting (its `needs_approval` holds the reasons), the
    /// request is logged (`approval_required`), and the call fails with
    /// [`ExecError::NeedsApproval`]; [`Hub::approve`] or [`Hub::reject`] goes on from there.
    pub async fn execute(
        &self,
        task_id: TaskId,
        command: Option<String>,
    ) -> Result<StepRecord, Error> {
        self.execute_step(task_id, command, false).await
    }

    /// Approves the command a task waits on and runs it (`command` replaces it when the human
    /// edited it). The decision is logged (`approval`). Fails with
    /// [`Error::InvalidInput`] when the task waits on no approval; a gate's `Deny` still
    /// refuses an edited command.
    pub async fn approve(
        &self,
        task_id: TaskId,
        command: Option<String>,
    ) -> Result<StepRecord, Error> {
        let task = self.waiting_for_approval(task_id).await?;
        let waiting = task.proposal.as_ref().map(|p| p.command.clone());
        self.log(
            LogEntry::new(
                Direction::In,
                "approval",
                json!({
                    "approved": true,
                    "command": command.clone().or(waiting),
                    "edited": command.is_some(),
                }),
            )
            .task(task_id),
        )
        .await;
        self.execute_step(task_id, command, true).await
    }

    /// Rejects the command a task waits on: the proposal is dropped and the task goes back to
    /// `in_progress` (its agent proposes again on the next step). The decision and `reason`
    /// are logged (`approval`).
    pub async fn reject(&self, task_id: TaskId, reason: impl Into<String>) -> Result<Task, Error> {
        let task = self.waiting_for_approval(task_id).await?;
        let reason = reason.into();
        self.log(
            LogEntry::new(
                Direction::In,
                "approval",
                json!({
                    "approved": false,
                    "command": task.proposal.as_ref().map(|p| p.command.clone()),
                    "reason": reason,
                }),
            )
            .task(task_id),
        )
        .await;
        let update = TaskUpdate {
            status: Some(TaskStatus::InProgress),
            proposal: Some(None),
            ..TaskUpdate::default()
        };
        self.apply(&task, update).await
    }

    /// The task, when it is `blocked` on a proposal that needs approval.
    async fn waiting_for_approval(&self, task_id: TaskId) -> Result<Task, Error> {
        let task = self.inner.store.get_task(task_id).await?;
        let waiting = task.status == TaskStatus::Blocked
            && task
                .proposal
                .as_ref()
                .is_some_and(|p| !p.needs_approval.is_empty());
        if waiting {
            Ok(task)
        } else {
            Err(Error::InvalidInput(format!(
                "task {task_id} is not waiting for an approval"
            )))
        }
    }

    /// Holds the task for a human: `blocked`, with the command (the proposal, or the one
    /// given) waiting and the gate's reasons on it.
    async fn hold_for_approval(
        &self,
        task_id: TaskId,
        command: Option<String>,
        reasons: &[String],
    ) -> Result<(), Error> {
        let task = self.inner.store.get_task(task_id).await?;
        let mut proposal = match (task.proposal.clone(), command) {
            (Some(mut p), Some(c)) => {
                p.command = c;
                p
            }
            (Some(p), None) => p,
            (None, Some(c)) => Proposal::new("given directly", c),
            (None, None) => return Err(AgentError::NoCommand(task_id).into()),
        };
        proposal.needs_approval = reasons.to_vec();
        let update = TaskUpdate {
            status: Some(TaskStatus::Blocked),
            proposal: Some(Some(proposal.clone())),
            ..TaskUpdate::default()
        };
        self.apply(&task, update).await?;
        self.log(
            LogEntry::new(
                Direction::Out,
                "approval_required",
                json!({"command": proposal.command, "reasons": reasons}),
            )
            .task(task_id),
        )
        .await;
        Ok(())
    }

    async fn execute_step(
        &self,
        task_id: TaskId,
        command: Option<String>,
        approved: bool,
    ) -> Result<StepRecord, Error> {
        let task = self.inner.store.get_task(task_id).await?;
        if let Some(c) = &command {
            if c.trim().is_empty() {
                return Err(ExecError::InvalidRequest("the command is empty".into()).into());
            }
        } else if task.proposal.is_none() {
            return Err(AgentError::NoCommand(task_id).into());
        }
        let (agent, client) = self.assigned(&task).await?;
        let task = self.reread_if_reassigned(task, &agent).await?;
        let task = self.move_to(task, TaskStatus::InProgress).await?;
        let index = task.next_step_index().unwrap_or(u32::MAX);
        let shown = command
            .clone()
            .or_else(|| task.proposal.as_ref().map(|p| p.command.clone()));
        self.log(
            LogEntry::new(
                Direction::In,
                "command",
                json!({"command": shown, "edited": command.is_some()}),
            )
            .task(task_id)
            .agent(Some(agent.clone()))
            .step(index),
        )
        .await;
        let result = client
            .execute(ExecuteRequest {
                task,
                command: command.clone(),
                approved,
            })
            .await;
        let step = match result {
            Ok(step) => step,
            Err(AgentError::Exec(ExecError::NeedsApproval { reasons })) => {
                self.hold_for_approval(task_id, command, &reasons).await?;
                return Err(ExecError::NeedsApproval { reasons }.into());
            }
            Err(e) => {
                self.log(
                    LogEntry::new(Direction::Out, "error", json!({"error": e.to_string()}))
                        .task(task_id)
                        .agent(Some(agent))
                        .step(index),
                )
                .await;
                return Err(e.into());
            }
        };
        let stored = self.inner.store.append_step(task_id, step).await?;
        let step = stored.steps.last().cloned().ok_or_else(|| {
            Error::Store(crate::error::StoreError::Backend(
                "appended step missing from the task".into(),
            ))
        })?;
        self.log(
            LogEntry::new(Direction::Out, "output", output_payload(&step.outcome))
                .task(task_id)
                .agent(Some(agent))
                .step(step.index),
        )
        .await;
        self.publish(EventKind::StepExecuted {
            task_id,
            step: Box::new(step.clone()),
        });
        self.publish(EventKind::TaskUpdated {
            task: Box::new(stored),
        });
        Ok(step)
    }

    /// Runs a task autonomously through its assigned agent: propose → execute, every step
    /// stored, logged and published, until the agent says it is done (the task then moves to
    /// `done`), a budget in `limits` is used up, or `limits.cancel` fires (the task stays
    /// `in_progress`).
    pub async fn run(&self, task_id: TaskId, limits: &StepLimits) -> Result<StepReport, Error> {
        let mut driver = HubDriver { hub: self, task_id };
        let report = drive(&mut driver, limits).await?;
        if let StopReason::Done { summary } = &report.stop {
            let task = self.inner.store.get_task(task_id).await?;
            self.move_to(task, TaskStatus::Done).await?;
            self.log(
                LogEntry::new(
                    Direction::Out,
                    "status",
                    json!({"status": "done", "summary": summary}),
                )
                .task(task_id),
            )
            .await;
        }
        Ok(report)
    }

    /// Log entries, e.g. `LogQuery::task(id).limit(50)`.
    pub async fn logs(&self, query: LogQuery) -> Result<Vec<crate::log::LogEntry>, Error> {
        Ok(self.inner.store.logs(query).await?)
    }
}

struct HubDriver<'a> {
    hub: &'a Hub,
    task_id: TaskId,
}

impl StepDriver for HubDriver<'_> {
    async fn propose(&mut self) -> Result<Proposed, Error> {
        self.hub.propose(self.task_id).await
    }

    async fn execute(&mut self, _proposal: Proposal) -> Result<StepRecord, Error> {
        // The proposal is already stored on the task by `propose`.
        self.hub.execute(self.task_id, None).await
    }
}
