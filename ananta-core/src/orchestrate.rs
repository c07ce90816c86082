//! Orchestration runs on the Hub: a prompt is split into a plan of tasks
//! ([`Decomposer`](crate::Decomposer)), each task is matched to the agent that fits it best
//! ([`AgentMatcher`](crate::matching::AgentMatcher)), and the plan runs as a
//! [`Pipeline`] — durably.
//!
//! # Runs on the board
//!
//! A run is a task on the board (tagged [`RUN_TAG`], its description the prompt), and every
//! task of its plan is a task too (tagged [`NODE_TAG`], its title the plan's id for it,
//! [`Task::run_id`] pointing at the run and [`Task::depends_on`] at the tasks it needs). The
//! run's task logs the plan and the assignments before anything runs; a task's output is
//! logged on it before the task counts as done and before anything that depends on it starts.
//! Everything goes through the [`TaskStore`](crate::TaskStore) trait, so this works on every
//! store.
//!
//! # Agents
//!
//! A task goes to a node agent ([`Hub::add_node_agent`]: a
//! [`TextAgent`](crate::pipeline::TextAgent), a [`ShellAgent`](crate::pipeline::ShellAgent) or
//! your own [`NodeAgent`]), or to an agent connected with [`Hub::register_agent`] (a local
//! [`Worker`](crate::Worker) or a remote one): that one works on the run's board task itself,
//! through [`Hub::run`], so its steps are stored on the task; the dependencies' outputs are
//! added to the task's description first. A step that needs a human's approval fails the
//! task (its proposal stays on it, with the reasons).
//!
//! A Hub that stopped mid-run (a crash, a kill) leaves the run `in_progress`. A Hub started
//! on the same store finds it with [`Hub::unfinished_runs`] and finishes it with
//! [`Hub::resume_run`]: finished tasks are not run again (their stored outputs are handed on),
//! tasks that were running are run again, the rest run as planned.
//!
//! # Events
//!
//! Besides the board's own events (`task_created`, `task_updated`), a run publishes
//! `run_started`, `node_started`, `node_retried`, `node_completed`, `node_failed`,
//! `node_cancelled` and `run_finished` on the Hub's [`EventBus`](crate::event::EventBus).
//!
//! ```
//! use std::sync::Arc;
//! use ananta_core::agent::AgentCard;
//! use ananta_core::decompose::{Plan, PlannedTask};
//! use ananta_core::orchestrate::RunOptions;
//! use ananta_core::pipeline::{NodeAgent, NodeInput, NodeOutput};
//! use ananta_core::{AgentError, AgentId, CancellationToken, Hub, TaskStore};
//!
//! struct Upper;
//! #[async_trait::async_trait]
//! impl NodeAgent for Upper {
//!     async fn run(&self, input: NodeInput, _: CancellationToken) -> Result<NodeOutput, AgentError> {
//!         Ok(NodeOutput::text(input.description.to_uppercase()))
//!     }
//! }
//!
//! // `store` is any TaskStore, e.g. ananta_store::MemoryStore::new().
//! async fn greet(store: Arc<dyn TaskStore>) -> Result<(), Box<dyn std::error::Error>> {
//!     let hub = Hub::builder().store(store).build()?;
//!     let card = AgentCard::in_process(AgentId::new("shouter")?).description("says things loudly");
//!     hub.add_node_agent(card, Arc::new(Upper)).await?;
//!     let task = PlannedTask {
//!         id: "greet".into(), description: "say hello".into(),
//!         dependencies: vec![], priority: None, agent_hint: None,
//!     };
//!     let plan = Plan { reasoning: String::new(), tasks: vec![task] };
//!     let result = hub.run_plan("Greet loudly", plan, RunOptions::default()).await?;
//!     assert_eq!(result.outcome.output, "SAY HELLO");
//!
//!     // After a restart, on the same store:
//!     for run in hub.unfinished_runs().await? {
//!         hub.resume_run(run.id, RunOptions::default()).await?;
//!     }
//!     Ok(())
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decompose::{Plan, PlannedTask};
use crate::error::{AgentError, DecomposeError, Error, RegistryError, StoreError};
use crate::event::EventKind;
use crate::hub::Hub;
use crate::ids::{AgentId, TaskId};
use crate::log::{Direction, LogEntry, LogQuery};
use crate::matching::MatchReason;
use crate::pipeline::{
    NodeAgent, NodeInput, NodeOutput, Pipeline, PipelineError, PipelineObserver, PipelineOptions,
    PlanOutcome, agent_error, shell_output,
};
use crate::steps::StepLimits;
use crate::task::{MAX_TITLE_LEN, NewTask, Task, TaskFilter, TaskStatus, TaskUpdate};
use tokio_util::sync::CancellationToken;

/// The tag of a run's own task.
pub const RUN_TAG: &str = "ananta:run";
/// The tag of every task of a run's plan.
pub const NODE_TAG: &str = "ananta:node";
/// The log kind of the run record (plan and assignments) on a run's task.
pub const PLAN_LOG_KIND: &str = "run_plan";
/// The log kind of a task's stored output (on the task) and of the run's result (on the
/// run's task).
pub const OUTPUT_LOG_KIND: &str = "run_output";

/// How a run runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parallelism, context budget, retries, timeouts, failure policy, cancellation and
    /// budgets of the pipeline.
    pub pipeline: PipelineOptions,
    /// Tasks pinned to an agent, by the plan's task id (the agent must be one the hub can
    /// run, and online).
    pub pins: HashMap<String, AgentId>,
    /// Most steps (commands) a connected agent may take on one task (default 10).
    pub max_steps: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            pipeline: PipelineOptions::default(),
            pins: HashMap::new(),
            max_steps: 10,
        }
    }
}

impl RunOptions {
    /// At most `steps` steps per task for connected agents.
    pub fn max_steps(mut self, steps: u32) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// Runs with these pipeline options.
    pub fn pipeline(mut self, options: PipelineOptions) -> Self {
        self.pipeline = options;
        self
    }

    /// Pins the plan's task `task` to `agent`.
    pub fn pin(mut self, task: impl Into<String>, agent: AgentId) -> Self {
        self.pins.insert(task.into(), agent);
        self
    }
}

/// Who got a task of the plan, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Assignment {
    /// The plan's id of the task.
    pub node: String,
    /// The task on the board.
    pub task_id: TaskId,
    /// The agent.
    pub agent: AgentId,
    /// The match score (1 when pinned).
    pub score: f32,
    /// Why this agent.
    #[serde(flatten)]
    pub reason: MatchReason,
    /// Which embeddings were compared (`lexical`, a provider's name, or `none` when pinned).
    pub embedder: String,
}

/// What a run's task logs before anything runs: enough to resume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunRecord {
    /// The plan.
    pub plan: Plan,
    /// One per task of the plan, in plan order.
    pub assignments: Vec<Assignment>,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunResult {
    /// The run's task on the board.
    pub run_id: TaskId,
    /// The plan it ran.
    pub plan: Plan,
    /// Who did what.
    pub assignments: Vec<Assignment>,
    /// The final output, every task's output, and the trace.
    pub outcome: PlanOutcome,
    /// Whether it was resumed after an interruption.
    pub resumed: bool,
}

/// Why a run could not be started, resumed or finished.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestrateError {
    /// [`Hub::orchestrate`] needs a decomposer ([`HubBuilder::decomposer`](crate::HubBuilder::decomposer)).
    #[error("the hub has no decomposer; build it with HubBuilder::decomposer or use Hub::run_plan")]
    NoDecomposer,
    /// The prompt could not be split into a valid plan.
    #[error(transparent)]
    Decompose(#[from] DecomposeError),
    /// The plan is invalid (or its tasks do not fit on the board).
    #[error("invalid plan: {}", .0.join("; "))]
    InvalidPlan(Vec<String>),
    /// No agent could be chosen for a task (none online, or a pin that cannot be honoured).
    #[error("no agent for task {task:?}: {source}")]
    Match {
        /// The plan's task id.
        task: String,
        /// Why.
        source: RegistryError,
    },
    /// A task's agent is neither a node agent of this hub nor connected to it (not, or no
    /// longer, registered in this process). A resumed
    /// run stays unfinished: register the agent and resume again.
    #[error("task {task:?} is assigned to {agent}, which this hub cannot run")]
    NoNodeAgent {
        /// The plan's task id.
        task: String,
        /// The agent.
        agent: AgentId,
    },
    /// The task is not a run's task.
    #[error("task {0} is not an orchestration run")]
    NotARun(TaskId),
    /// The run already ended.
    #[error("run {run_id} already ended ({status})")]
    Ended {
        /// The run.
        run_id: TaskId,
        /// How it ended.
        status: TaskStatus,
    },
    /// This hub is running the run right now.
    #[error("run {0} is running in this hub")]
    Active(TaskId),
    /// The run's record (plan and assignments) is missing or unreadable: it stopped before
    /// it was stored. The run is marked failed.
    #[error("run {run_id} cannot be resumed: {reason}")]
    Unresumable {
        /// The run.
        run_id: TaskId,
        /// Why.
        reason: String,
    },
    /// The store, registry or input failed.
    #[error(transparent)]
    Hub(#[from] Error),
    /// The pipeline stopped: a task failed, the budget was used up, or the run was cancelled.
    /// The run's task is `failed` (or `cancelled`); the error carries the partial trace.
    #[error("run {run_id}: {source}")]
    Pipeline {
        /// The run.
        run_id: TaskId,
        /// What stopped it, with the partial outcome.
        source: PipelineError,
    },
}

impl From<StoreError> for OrchestrateError {
    fn from(e: StoreError) -> Self {
        Self::Hub(e.into())
    }
}

impl OrchestrateError {
    /// Whether trying again may succeed (a transient model or store failure).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Decompose(e) => e.is_transient(),
            Self::Hub(e) => e.is_transient(),
            Self::Match { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

impl Hub {
    /// Runs `prompt`: the hub's decomposer splits it into a plan, then
    /// [`run_plan`](Self::run_plan) runs it. See the [module](crate::orchestrate).
    pub async fn orchestrate(&self, prompt: &str) -> Result<RunResult, OrchestrateError> {
        self.orchestrate_with(prompt, RunOptions::default()).await
    }

    /// [`orchestrate`](Self::orchestrate) with options.
    pub async fn orchestrate_with(
        &self,
        prompt: &str,
        options: RunOptions,
    ) -> Result<RunResult, OrchestrateError> {
        let decomposer = self
            .inner
            .decomposer
            .clone()
            .ok_or(OrchestrateError::NoDecomposer)?;
        let plan = decomposer.decompose(prompt.to_string()).await?;
        self.run_plan(prompt, plan, options).await
    }

    /// Runs a plan (the caller's own, or a decomposer's): matches every task to an agent the
    /// hub can run (a pin in `options` first, then the task's `agent_hint` when it names such
    /// an agent, else the best match), puts the run and its tasks on the board, and runs the
    /// pipeline.
    ///
    /// On success the run's task is `done` and carries the output; when the pipeline stops,
    /// it is `failed` or `cancelled`, tasks that never ran are `cancelled`, and the error
    /// carries the partial trace.
    pub async fn run_plan(
        &self,
        prompt: &str,
        plan: Plan,
        options: RunOptions,
    ) -> Result<RunResult, OrchestrateError> {
        let problems = plan.structural_problems();
        if !problems.is_empty() {
            return Err(OrchestrateError::InvalidPlan(problems));
        }
        // Every task is matched before anything is stored: a run that cannot be staffed
        // leaves nothing behind.
        let mut chosen = Vec::with_capacity(plan.tasks.len());
        for t in &plan.tasks {
            let pinned = options.pins.get(&t.id).cloned().or_else(|| {
                t.agent_hint
                    .as_deref()
                    .and_then(|h| AgentId::new(h.trim()).ok())
                    .filter(|a| self.can_run(a))
            });
            let decision = self
                .inner
                .matcher
                .choose(&t.description, pinned)
                .await
                .map_err(|source| OrchestrateError::Match {
                    task: t.id.clone(),
                    source,
                })?;
            if !self.can_run(&decision.agent) {
                // The fallback agent is not one the hub can run.
                return Err(OrchestrateError::NoNodeAgent {
                    task: t.id.clone(),
                    agent: decision.agent,
                });
            }
            chosen.push(decision);
        }
        let mut run = NewTask::new(run_title(prompt))
            .description(prompt)
            .status(TaskStatus::InProgress)
            .tag(RUN_TAG)
            .into_task()
            .map_err(|e| OrchestrateError::Hub(e.into()))?;
        let active = ActiveRun::enter(self, run.id)?;
        let node_ids: HashMap<&str, TaskId> = plan
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), TaskId::new()))
            .collect();
        let mut nodes = Vec::with_capacity(plan.tasks.len());
        let mut assignments = Vec::with_capacity(plan.tasks.len());
        for (t, decision) in plan.tasks.iter().zip(chosen) {
            let node = node_task(t, run.id, &node_ids, &decision.agent)?;
            assignments.push(Assignment {
                node: t.id.clone(),
                task_id: node.id,
                agent: decision.agent,
                score: decision.score,
                reason: decision.reason,
                embedder: decision.embedder,
            });
            nodes.push(node);
        }
        // The run, then its record, then its tasks: a run interrupted in between can still
        // be resumed (missing tasks are created then).
        run = self.inner.store.create_task(run).await?;
        self.publish(EventKind::TaskCreated {
            task: Box::new(run.clone()),
        });
        let record = RunRecord { plan, assignments };
        let payload = serde_json::to_value(&record)
            .map_err(|e| OrchestrateError::Hub(Error::InvalidInput(e.to_string())))?;
        self.inner
            .store
            .append_log(LogEntry::new(Direction::Out, PLAN_LOG_KIND, payload).task(run.id))
            .await?;
        for node in nodes {
            let node = self.inner.store.create_task(node).await?;
            self.publish(EventKind::TaskCreated {
                task: Box::new(node),
            });
        }
        self.execute_run(active, record, HashMap::new(), options, false)
            .await
    }

    /// The runs on the board that have not ended (`in_progress` run tasks), oldest first,
    /// except those this hub is running: after a restart, the runs an earlier process left
    /// unfinished.
    ///
    /// The board cannot tell a run whose hub crashed from one that another live hub on the
    /// same store is running; resume runs from one hub (e.g. at its start).
    pub async fn unfinished_runs(&self) -> Result<Vec<Task>, OrchestrateError> {
        let mut runs = self
            .inner
            .store
            .list_tasks(TaskFilter {
                statuses: vec![TaskStatus::InProgress],
                tag: Some(RUN_TAG.into()),
                ..TaskFilter::default()
            })
            .await?;
        let active = self
            .inner
            .active_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        runs.retain(|r| !active.contains(&r.id));
        Ok(runs)
    }

    /// Finishes a run an earlier Hub left unfinished: its finished tasks are not run again
    /// (their stored outputs are handed on), tasks that were running are run again, the rest
    /// run as planned, by the agents recorded at the start (which must be registered with
    /// [`add_node_agent`](Self::add_node_agent) or connected with
    /// [`register_agent`](Self::register_agent) again).
    pub async fn resume_run(
        &self,
        run_id: TaskId,
        options: RunOptions,
    ) -> Result<RunResult, OrchestrateError> {
        let run = self.inner.store.get_task(run_id).await?;
        if !run.tags.iter().any(|t| t == RUN_TAG) {
            return Err(OrchestrateError::NotARun(run_id));
        }
        if run.status != TaskStatus::InProgress {
            return Err(OrchestrateError::Ended {
                run_id,
                status: run.status,
            });
        }
        let active = ActiveRun::enter(self, run_id)?;
        let record = match self.run_record(run_id).await {
            Ok(record) => record,
            Err(OrchestrateError::Unresumable { reason, .. }) => {
                return Err(self.unresumable(run_id, reason).await);
            }
            Err(e) => return Err(e),
        };
        let node_ids: HashMap<&str, TaskId> = record
            .assignments
            .iter()
            .map(|a| (a.node.as_str(), a.task_id))
            .collect();
        let mut finished = HashMap::new();
        for (t, a) in record.plan.tasks.iter().zip(&record.assignments) {
            let node = match self.inner.store.get_task(a.task_id).await {
                Ok(node) => node,
                Err(StoreError::TaskNotFound(_)) => {
                    // Interrupted while the tasks were being put on the board.
                    let node = node_task(t, run_id, &node_ids, &a.agent)?;
                    let node = self.inner.store.create_task(node).await?;
                    self.publish(EventKind::TaskCreated {
                        task: Box::new(node.clone()),
                    });
                    node
                }
                Err(e) => return Err(e.into()),
            };
            if node.status == TaskStatus::Done
                && let Some(output) = self.stored_output(node.id).await?
            {
                finished.insert(t.id.clone(), output);
            }
        }
        tracing::info!(run = %run_id, finished = finished.len(), tasks = record.plan.tasks.len(), "resuming a run");
        self.execute_run(active, record, finished, options, true)
            .await
    }

    /// A run's plan and assignments, as stored when it started (e.g. to show a run that
    /// another process runs). [`OrchestrateError::Unresumable`] when the run has none.
    pub async fn run_record(&self, run_id: TaskId) -> Result<RunRecord, OrchestrateError> {
        let entries = self.inner.store.logs(LogQuery::task(run_id)).await?;
        let unresumable = |reason: String| OrchestrateError::Unresumable { run_id, reason };
        let entry = entries
            .iter()
            .rev()
            .find(|e| e.kind == PLAN_LOG_KIND)
            .ok_or_else(|| unresumable("it stopped before its plan was stored".into()))?;
        let record: RunRecord = serde_json::from_value(entry.payload.clone())
            .map_err(|e| unresumable(format!("its record is unreadable: {e}")))?;
        let problems = record.plan.structural_problems();
        if !problems.is_empty() {
            return Err(unresumable(format!(
                "its plan is invalid: {}",
                problems.join("; ")
            )));
        }
        let lined_up = record.plan.tasks.len() == record.assignments.len()
            && record
                .plan
                .tasks
                .iter()
                .zip(&record.assignments)
                .all(|(t, a)| t.id == a.node);
        if !lined_up {
            return Err(unresumable("its assignments do not match its plan".into()));
        }
        Ok(record)
    }

    /// Whether a run's task can go to `agent`: a node agent, or an agent connected to this
    /// hub (which works on the board task itself).
    fn can_run(&self, agent: &AgentId) -> bool {
        self.node_agent(agent).is_some() || self.is_connected(agent)
    }

    /// The output stored on a run's task, if any.
    async fn stored_output(&self, task: TaskId) -> Result<Option<String>, OrchestrateError> {
        let entries = self.inner.store.logs(LogQuery::task(task)).await?;
        Ok(entries
            .iter()
            .rev()
            .find(|e| e.kind == OUTPUT_LOG_KIND)
            .and_then(|e| e.payload.get("text"))
            .and_then(|t| t.as_str())
            .map(str::to_string))
    }

    async fn unresumable(&self, run_id: TaskId, reason: String) -> OrchestrateError {
        self.end_run(run_id, TaskStatus::Failed, Some(reason.clone()))
            .await;
        OrchestrateError::Unresumable { run_id, reason }
    }

    /// Runs a recorded plan; `finished` holds the outputs of tasks done before.
    async fn execute_run(
        &self,
        active: ActiveRun,
        record: RunRecord,
        finished: HashMap<String, String>,
        options: RunOptions,
        resumed: bool,
    ) -> Result<RunResult, OrchestrateError> {
        let run_id = active.run_id;
        let mut pipeline = Pipeline::new(options.pipeline);
        let mut nodes = HashMap::new();
        for a in &record.assignments {
            let agent: Arc<dyn NodeAgent> = match self.node_agent(&a.agent) {
                Some(agent) => agent,
                None if self.is_connected(&a.agent) => Arc::new(BoardAgent {
                    hub: self.clone(),
                    task_id: a.task_id,
                    max_steps: options.max_steps.max(1),
                }),
                None => {
                    return Err(OrchestrateError::NoNodeAgent {
                        task: a.node.clone(),
                        agent: a.agent.clone(),
                    });
                }
            };
            pipeline.assign(&a.node, a.agent.clone(), a.score, agent);
            nodes.insert(a.node.clone(), a.task_id);
        }
        for (node, output) in &finished {
            pipeline.finished(node, output.as_str());
        }
        pipeline.observer(Arc::new(BoardObserver {
            hub: self.clone(),
            run_id,
            nodes: nodes.clone(),
        }));
        self.publish(EventKind::RunStarted {
            run_id,
            tasks: record.plan.tasks.len(),
            finished: finished.len(),
            resumed,
        });
        match pipeline.run(&record.plan).await {
            Ok(outcome) => {
                let payload = serde_json::json!({"output": outcome.output, "trace": outcome.trace});
                self.inner
                    .store
                    .append_log(
                        LogEntry::new(Direction::Out, OUTPUT_LOG_KIND, payload).task(run_id),
                    )
                    .await?;
                self.end_run(run_id, TaskStatus::Done, None).await;
                Ok(RunResult {
                    run_id,
                    plan: record.plan,
                    assignments: record.assignments,
                    outcome,
                    resumed,
                })
            }
            Err(source) => {
                let status = match source {
                    PipelineError::Cancelled { .. } => TaskStatus::Cancelled,
                    _ => TaskStatus::Failed,
                };
                // Tasks that never started will not run in this run.
                for task_id in nodes.values() {
                    if let Ok(node) = self.inner.store.get_task(*task_id).await
                        && node.status == TaskStatus::Backlog
                        && let Err(e) = self.set_node_status(node, TaskStatus::Cancelled).await
                    {
                        tracing::warn!(task = %task_id, error = %e, "could not cancel a task of a stopped run");
                    }
                }
                self.end_run(run_id, status, Some(source.to_string())).await;
                Err(OrchestrateError::Pipeline { run_id, source })
            }
        }
    }

    /// Moves the run's task to its final status (logged and published; a store failure is
    /// traced, and leaves the run resumable).
    async fn end_run(&self, run_id: TaskId, status: TaskStatus, error: Option<String>) {
        if let Some(error) = &error {
            self.log(
                LogEntry::new(Direction::Out, "error", serde_json::json!({"error": error}))
                    .task(run_id),
            )
            .await;
        }
        match self
            .inner
            .store
            .update_task(run_id, TaskUpdate::status(status), None)
            .await
        {
            Ok(task) => self.publish(EventKind::TaskUpdated {
                task: Box::new(task),
            }),
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e, "could not record the end of a run")
            }
        }
        self.publish(EventKind::RunFinished {
            run_id,
            status,
            error,
        });
    }

    /// Moves a run's task to `status`, through `todo` where the board does not allow the
    /// direct move (a finished task run again after a restart).
    async fn set_node_status(&self, node: Task, status: TaskStatus) -> Result<Task, Error> {
        let node = if node.status.can_transition_to(status) {
            node
        } else {
            self.move_to(node, TaskStatus::Todo).await?
        };
        self.move_to(node, status).await
    }
}

/// The board task of the plan's task `t` in run `run_id` (not stored yet): titled with the
/// plan's id, waiting in the backlog, assigned to `agent`, its dependencies mapped through
/// `ids` (plan id → task id, which also gives its own id).
fn node_task(
    t: &PlannedTask,
    run_id: TaskId,
    ids: &HashMap<&str, TaskId>,
    agent: &AgentId,
) -> Result<Task, OrchestrateError> {
    let mut new = NewTask::new(t.id.as_str())
        .description(t.description.as_str())
        .status(TaskStatus::Backlog)
        .tag(NODE_TAG);
    if let Some(priority) = t.priority {
        new = new.priority(priority);
    }
    let mut node = new
        .into_task()
        .map_err(|e| OrchestrateError::InvalidPlan(vec![format!("task {:?}: {e}", t.id)]))?;
    node.id = *ids.get(t.id.as_str()).ok_or_else(|| {
        OrchestrateError::InvalidPlan(vec![format!("task {:?} has no board task", t.id)])
    })?;
    node.run_id = Some(run_id);
    node.depends_on = t
        .dependencies
        .iter()
        .filter_map(|d| ids.get(d.as_str()).copied())
        .collect();
    node.assigned_agent = Some(agent.clone());
    Ok(node)
}

/// A run's title: "Run: " and the prompt's first line, shortened.
fn run_title(prompt: &str) -> String {
    let first = prompt.lines().map(str::trim).find(|l| !l.is_empty());
    let Some(first) = first else {
        return "Run".into();
    };
    let mut title = String::from("Run: ");
    for c in first.chars() {
        if title.len() + c.len_utf8() > MAX_TITLE_LEN.min(120) {
            title.push('…');
            break;
        }
        title.push(c);
    }
    title
}

/// A run's task worked on by an agent connected to the hub (a Worker registered with
/// [`Hub::register_agent`], in-process or remote): the board task gets the dependencies'
/// outputs in its description, then [`Hub::run`] drives propose → execute on it, so every
/// step is stored, logged and published on the task itself.
struct BoardAgent {
    hub: Hub,
    task_id: TaskId,
    max_steps: u32,
}

#[async_trait]
impl NodeAgent for BoardAgent {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        if !input.context.is_empty() {
            let description = format!(
                "{}\n\nResults of earlier tasks:\n{}",
                input.description, input.context
            );
            let update = TaskUpdate {
                description: Some(description),
                ..TaskUpdate::default()
            };
            self.hub
                .update_task(self.task_id, update, None)
                .await
                .map_err(agent_error)?;
        }
        let limits = StepLimits::steps(self.max_steps).cancel(cancel);
        let report = self
            .hub
            .run(self.task_id, &limits)
            .await
            .map_err(agent_error)?;
        let task = self.hub.get_task(self.task_id).await.map_err(agent_error)?;
        shell_output(report, task.steps.last())
    }
}

/// Marks a run active in this hub for as long as it lives.
struct ActiveRun {
    hub: Hub,
    run_id: TaskId,
}

impl ActiveRun {
    fn enter(hub: &Hub, run_id: TaskId) -> Result<Self, OrchestrateError> {
        let mut active = hub
            .inner
            .active_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !active.insert(run_id) {
            return Err(OrchestrateError::Active(run_id));
        }
        Ok(Self {
            hub: hub.clone(),
            run_id,
        })
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.hub
            .inner
            .active_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.run_id);
    }
}

/// Keeps a run's tasks on the board in step with the pipeline, and publishes node events.
struct BoardObserver {
    hub: Hub,
    run_id: TaskId,
    nodes: HashMap<String, TaskId>,
}

impl BoardObserver {
    async fn move_node(&self, node: &str, status: TaskStatus) -> Option<TaskId> {
        let task_id = *self.nodes.get(node)?;
        let result = match self.hub.inner.store.get_task(task_id).await {
            Ok(task) => self.hub.set_node_status(task, status).await.map(|_| ()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(task = %task_id, %status, error = %e, "could not move a task of a run");
        }
        Some(task_id)
    }
}

#[async_trait]
impl PipelineObserver for BoardObserver {
    async fn started(&self, node: &str, agent: &AgentId) {
        if let Some(task_id) = self.move_node(node, TaskStatus::InProgress).await {
            self.hub.publish(EventKind::NodeStarted {
                run_id: self.run_id,
                task_id,
                node: node.to_string(),
                agent: agent.clone(),
            });
        }
    }

    async fn retried(&self, node: &str, attempt: u32, error: &AgentError, delay: Duration) {
        let Some(task_id) = self.nodes.get(node).copied() else {
            return;
        };
        self.hub
            .log(
                LogEntry::new(
                    Direction::Out,
                    "error",
                    serde_json::json!({
                        "error": error.to_string(),
                        "attempt": attempt,
                        "retry_in_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    }),
                )
                .task(task_id),
            )
            .await;
        self.hub.publish(EventKind::NodeRetried {
            run_id: self.run_id,
            task_id,
            node: node.to_string(),
            attempt,
            error: error.to_string(),
        });
    }

    async fn completed(&self, node: &str, output: &NodeOutput, attempts: u32) -> Result<(), Error> {
        let Some(task_id) = self.nodes.get(node).copied() else {
            return Ok(());
        };
        // The output first: a task that is `done` always has its output stored.
        let payload = serde_json::json!({
            "text": output.text,
            "usage": output.usage,
            "attempts": attempts,
        });
        self.hub
            .inner
            .store
            .append_log(LogEntry::new(Direction::Out, OUTPUT_LOG_KIND, payload).task(task_id))
            .await?;
        let task = self.hub.inner.store.get_task(task_id).await?;
        self.hub.set_node_status(task, TaskStatus::Done).await?;
        self.hub.publish(EventKind::NodeCompleted {
            run_id: self.run_id,
            task_id,
            node: node.to_string(),
            attempts,
            output_chars: output.text.chars().count(),
        });
        Ok(())
    }

    async fn failed(&self, node: &str, error: &str) {
        if let Some(task_id) = self.move_node(node, TaskStatus::Failed).await {
            self.hub
                .log(
                    LogEntry::new(Direction::Out, "error", serde_json::json!({"error": error}))
                        .task(task_id),
                )
                .await;
            self.hub.publish(EventKind::NodeFailed {
                run_id: self.run_id,
                task_id,
                node: node.to_string(),
                error: error.to_string(),
            });
        }
    }

    async fn cancelled(&self, node: &str) {
        if let Some(task_id) = self.move_node(node, TaskStatus::Cancelled).await {
            self.hub.publish(EventKind::NodeCancelled {
                run_id: self.run_id,
                task_id,
                node: node.to_string(),
            });
        }
    }
}

/// The outputs of a finished run's tasks, read back from the board (by the plan's task id).
impl RunResult {
    /// The run's tasks on the board, by the plan's task id.
    pub fn tasks(&self) -> BTreeMap<&str, TaskId> {
        self.assignments
            .iter()
            .map(|a| (a.node.as_str(), a.task_id))
            .collect()
    }
}
