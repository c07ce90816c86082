//! Orchestration runs on the Hub: a prompt is split into a plan of tasks
//! ([`Decomposer`](crate::Decomposer)), each task is matched to the agent that fits it best
//! ([`AgentMatcher`](crate::matching::AgentMatcher)), and the plan runs as a
//! [`Pipeline`](crate::pipeline::Pipeline) — durably.
//!
//! # Runs on the board
//!
//! A run is a task on the board (tagged [`RUN_TAG`], its description the prompt), and every
//! task of its plan is a task too (tagged [`NODE_TAG`], its title the plan's id for it,
//! [`Task::run_id`](crate::task::Task::run_id) pointing at the run and [`Task::depends_on`](crate::task::Task::depends_on) at the tasks it needs). The
//! run's task logs the plan and the assignments before anything runs; a task's output is
//! logged on it before the task counts as done and before anything that depends on it starts.
//! Everything goes through the [`TaskStore`](crate::TaskStore) trait, so this works on every
//! store.
//!
//! # Agents
//!
//! A task goes to a node agent ([`Hub::add_node_agent`](crate::hub::Hub::add_node_agent): a
//! [`TextAgent`](crate::pipeline::TextAgent), a [`ShellAgent`](crate::pipeline::ShellAgent) or
//! your own [`NodeAgent`](crate::pipeline::NodeAgent)), or to an agent connected with [`Hub::register_agent`](crate::hub::Hub::register_agent) (a local
//! [`Worker`](crate::Worker) or a remote one): that one works on the run's board task itself,
//! through [`Hub::run`](crate::hub::Hub::run), so its steps are stored on the task; the dependencies' outputs are
//! added to the task's description first. A step that needs a human's approval fails the
//! task (its proposal stays on it, with the reasons).
//!
//! A Hub that stopped mid-run (a crash, a kill) leaves the run `in_progress`. A Hub started
//! on the same store finds it with [`Hub::unfinished_runs`](crate::hub::Hub::unfinished_runs) and finishes it with
//! [`Hub::resume_run`](crate::hub::Hub::resume_run): finished tasks are not run again (their stored outputs are handed on),
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
//!
//! # In detail
//!
//! - **Planning**: `LlmDecomposer` asks the model for a plan with the plan's JSON schema, validates
//!   it (at least one task, unique ids, known dependencies, no cycles, no empty descriptions, a
//!   size limit) and sends an invalid plan back with its exact problems before giving up with a
//!   typed error. `Plan::waves`, `Plan::critical_path` and `Plan::table` show it.
//! - **Matching**: the Hub's `AgentMatcher` compares each task with the card of every online agent
//!   it can run (name, description, system prompt, tools, tags) by embedding similarity — the provider's
//!   embeddings (`HubBuilder::embeddings`, cached per card version) or the model-free
//!   `LexicalEmbedder` — with a threshold and fallback agent, pins (`RunOptions::pin`, or a plan's
//!   `agent_hint` naming an agent). `AgentRegistry::best_match` ranks with the same lexical
//!   embedder.
//! - **Running**: `Pipeline` runs independent tasks in parallel up to a limit; each task gets its
//!   dependencies' outputs as context within a budget (cut with a marker); transient failures are
//!   retried with backoff; per-task timeouts; fail-fast or finish-independent; cancellation that
//!   reaches the agents and their processes; budgets of calls, tokens and time. A one-task plan
//!   runs inline. Agents are node agents (`Hub::add_node_agent`: `TextAgent`s, LLM only;
//!   `ShellAgent`s, a Worker running commands; or your own `NodeAgent`), or Workers connected with
//!   `Hub::register_agent` (in-process or remote), which work on the run's board task itself, every
//!   step stored on it.
//! - **Durable runs**: the run and every planned task are tasks on the board (`Task::run_id`,
//!   `Task::depends_on`); the plan is stored before anything runs and each output before its task
//!   counts as done. A Hub restarted on the same store finds unfinished runs
//!   (`Hub::unfinished_runs`) and resumes them (`Hub::resume_run`): finished tasks are not run
//!   again, interrupted ones are.
//! - **Events**: `run_started`, `node_started`, `node_retried`, `node_completed`, `node_failed`,
//!   `node_cancelled`, `run_finished` on the Hub's bus (and on `GET /events`).

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decompose::Plan;
use crate::error::{DecomposeError, Error, RegistryError, StoreError};
use crate::ids::{AgentId, TaskId};
use crate::matching::MatchReason;
use crate::pipeline::{PipelineError, PipelineOptions, PlanOutcome};
use crate::task::TaskStatus;

mod board;
mod runs;

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
    /// [`Hub::orchestrate`](crate::hub::Hub::orchestrate) needs a decomposer ([`HubBuilder::decomposer`](crate::HubBuilder::decomposer)).
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
