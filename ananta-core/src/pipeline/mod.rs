//! Running a [`Plan`] as a pipeline: independent tasks in parallel up to a limit, each task
//! given the outputs of its dependencies (fitted into a context budget, cut with a marker),
//! retries of transient failures with backoff, a per-task timeout, a failure policy,
//! cancellation that reaches the running agents, and a trace per task.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! use std::sync::Arc;
//! use ananta_core::decompose::{Plan, PlannedTask};
//! use ananta_core::pipeline::{NodeAgent, NodeInput, NodeOutput, Pipeline, PipelineOptions};
//! use ananta_core::{AgentError, AgentId, CancellationToken};
//!
//! struct Echo;
//! #[async_trait::async_trait]
//! impl NodeAgent for Echo {
//!     async fn run(&self, input: NodeInput, _: CancellationToken) -> Result<NodeOutput, AgentError> {
//!         Ok(NodeOutput::text(format!("[{}]", input.description)))
//!     }
//! }
//! let task = |id: &str, deps: &[&str]| PlannedTask {
//!     id: id.into(), description: id.into(),
//!     dependencies: deps.iter().map(|d| d.to_string()).collect(), priority: None, agent_hint: None,
//! };
//! let plan = Plan { reasoning: String::new(), tasks: vec![task("a", &[]), task("b", &["a"])] };
//! let mut pipeline = Pipeline::new(PipelineOptions::default());
//! for t in &plan.tasks {
//!     pipeline.assign(&t.id, AgentId::new("echo")?, 1.0, Arc::new(Echo));
//! }
//! let outcome = pipeline.run(&plan).await?;
//! assert_eq!(outcome.output, "[b]");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::decompose::Plan;
use crate::error::AgentError;
use crate::ids::AgentId;
use crate::task::TokenUsage;

mod agents;
mod scheduler;
#[cfg(test)]
mod tests;

pub use agents::{ShellAgent, TextAgent};
pub(crate) use agents::{agent_error, shell_output};

/// What a task of the plan is given to work on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeInput {
    /// The planned task's id.
    pub task_id: String,
    /// What to do.
    pub description: String,
    /// The outputs of its dependencies, fitted into the context budget (empty without any).
    pub context: String,
}

/// What a task produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NodeOutput {
    /// The text handed to the tasks that depend on it.
    pub text: String,
    /// Tokens used, when known.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

impl NodeOutput {
    /// An output of `text` with no usage.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            usage: None,
        }
    }
}

/// An agent as a pipeline sees it: works on one task's input, honours `cancel`.
#[async_trait]
pub trait NodeAgent: Send + Sync {
    /// Works on `input`; should stop (and stop its processes) when `cancel` fires.
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError>;
}

/// Watches a run's tasks as they go. [`Hub::orchestrate`](crate::Hub::orchestrate) uses one
/// to keep the board and the event bus up to date and to store each output before the tasks
/// that depend on it start. Every method has a default that does nothing.
///
/// The methods are awaited on the task's own path, so a slow observer slows that task (and
/// only that task).
#[async_trait]
pub trait PipelineObserver: Send + Sync {
    /// The task's first attempt is about to start.
    async fn started(&self, _task_id: &str, _agent: &AgentId) {}

    /// The task failed transiently after `attempt` attempts and will be tried again after
    /// `delay`.
    async fn retried(&self, _task_id: &str, _attempt: u32, _error: &AgentError, _delay: Duration) {}

    /// The task produced `output` after `attempts` attempts. It counts as done, and the tasks
    /// that depend on it may start, only once this returns `Ok`; an error fails the task (for
    /// example when its output could not be stored).
    async fn completed(
        &self,
        _task_id: &str,
        _output: &NodeOutput,
        _attempts: u32,
    ) -> Result<(), crate::Error> {
        Ok(())
    }

    /// The task failed for good with `error`.
    async fn failed(&self, _task_id: &str, _error: &str) {}

    /// The task was cancelled while it ran (the run was cancelled, failed fast, or used up its
    /// budget).
    async fn cancelled(&self, _task_id: &str) {}
}

/// What happens when a task fails for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Cancel every running task and start no other (the default).
    #[default]
    FailFast,
    /// Skip the tasks that depend on the failed one, finish the independent branches.
    FinishIndependent,
}

/// Limits of a whole run; when one is reached the run stops cleanly with
/// [`PipelineError::BudgetExceeded`] and the partial trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Budget {
    /// Agent calls (attempts) over all tasks.
    #[serde(default)]
    pub max_calls: Option<u64>,
    /// Tokens (prompt + completion) over all tasks, as the agents report them.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Wall-clock time of the run.
    #[serde(default)]
    pub max_duration: Option<Duration>,
}

/// How a pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Tasks running at once (at least 1; default 4).
    pub parallelism: usize,
    /// Characters of dependency output a task is given (default 8,000); longer outputs are
    /// cut in the middle with a marker, never silently dropped.
    pub context_budget: usize,
    /// Retries of a task after a transient failure (default 2).
    pub retries: u32,
    /// The first retry's delay, doubled for each further one (default 200 ms).
    pub backoff: Duration,
    /// Longest one attempt of a task may take (default none).
    pub task_timeout: Option<Duration>,
    /// What a failure does to the rest.
    pub failure: FailurePolicy,
    /// Cancels the whole run; running agents see it through their token.
    pub cancel: CancellationToken,
    /// Limits of the run.
    pub budget: Budget,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            parallelism: 4,
            context_budget: 8_000,
            retries: 2,
            backoff: Duration::from_millis(200),
            task_timeout: None,
            failure: FailurePolicy::FailFast,
            cancel: CancellationToken::new(),
            budget: Budget::default(),
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NodeStatus {
    /// It produced its output.
    Done,
    /// It failed for good.
    Failed {
        /// The last error.
        error: String,
    },
    /// It was cancelled while running.
    Cancelled,
    /// It never ran (a dependency failed, or the run stopped first).
    Skipped,
}

/// The trace of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeTrace {
    /// The planned task's id.
    pub task_id: String,
    /// The agent it was given to.
    pub agent: AgentId,
    /// The agent's match score.
    pub score: f32,
    /// Attempts made (0 when it never ran).
    pub attempts: u32,
    /// Time from its first start to its end.
    pub duration_ms: u64,
    /// Tokens used over all attempts.
    pub tokens: TokenUsage,
    /// Characters of its output.
    pub output_chars: usize,
    /// Finished in an earlier run of the same plan (see [`Pipeline::finished`]): not run
    /// again here.
    #[serde(default)]
    pub resumed: bool,
    /// How it ended.
    #[serde(flatten)]
    pub status: NodeStatus,
}

/// A finished run: the final output (the sink tasks' outputs), every task's output, and the
/// trace in plan order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanOutcome {
    /// The output of the sink task, or the sinks' outputs each under a `## id` heading.
    pub output: String,
    /// Every finished task's output.
    pub outputs: BTreeMap<String, String>,
    /// Per task, in plan order.
    pub trace: Vec<NodeTrace>,
}

/// Why a run did not finish, with what it got done.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The plan is invalid.
    #[error("invalid plan: {}", .0.join("; "))]
    InvalidPlan(Vec<String>),
    /// A task has no agent assigned.
    #[error("task {0:?} has no agent")]
    Unassigned(String),
    /// A task failed for good.
    #[error("task {task:?} failed: {error}")]
    Failed {
        /// The task.
        task: String,
        /// Its last error.
        error: String,
        /// The partial outcome.
        partial: Box<PlanOutcome>,
    },
    /// A limit of the run's [`Budget`] was reached.
    #[error("the run's budget of {limit} was used up")]
    BudgetExceeded {
        /// `calls`, `tokens` or `time`.
        limit: String,
        /// The partial outcome.
        partial: Box<PlanOutcome>,
    },
    /// The run was cancelled.
    #[error("the run was cancelled")]
    Cancelled {
        /// The partial outcome.
        partial: Box<PlanOutcome>,
    },
}

struct Assigned {
    agent: AgentId,
    score: f32,
    worker: Arc<dyn NodeAgent>,
}

/// Runs plans; see the [module](self).
pub struct Pipeline {
    options: PipelineOptions,
    agents: HashMap<String, Assigned>,
    finished: HashMap<String, String>,
    observer: Option<Arc<dyn PipelineObserver>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("options", &self.options)
            .field("tasks", &self.agents.len())
            .field("finished", &self.finished.len())
            .finish_non_exhaustive()
    }
}

/// Fits the dependencies' outputs into `budget` characters: each gets an equal share of what
/// is left, cut in the middle with a marker when longer.
pub fn fit_context(parts: &[(String, String)], budget: usize) -> String {
    let mut out = String::new();
    let mut left = budget;
    for (i, (id, text)) in parts.iter().enumerate() {
        let share = left / (parts.len() - i);
        let fitted = crate::exec::head_tail(text, share.max(1));
        left = left.saturating_sub(fitted.chars().count());
        out.push_str(&format!("Output of task {id}:\n{fitted}\n\n"));
    }
    out.trim_end().to_string()
}

impl Pipeline {
    /// A pipeline with `options` and no agents yet.
    pub fn new(options: PipelineOptions) -> Self {
        Self {
            options,
            agents: HashMap::new(),
            finished: HashMap::new(),
            observer: None,
        }
    }

    /// Marks `task_id` as finished with `output` (by an earlier, interrupted run of the same
    /// plan): it is not run again, its output is handed to the tasks that depend on it, and
    /// its trace says `resumed`. It still needs an agent ([`assign`](Self::assign)) for the
    /// trace.
    pub fn finished(&mut self, task_id: &str, output: impl Into<String>) -> &mut Self {
        self.finished.insert(task_id.to_string(), output.into());
        self
    }

    /// Reports every task's progress to `observer`.
    pub fn observer(&mut self, observer: Arc<dyn PipelineObserver>) -> &mut Self {
        self.observer = Some(observer);
        self
    }

    /// Gives the task `task_id` to `worker` (named `agent`, matched with `score`).
    pub fn assign(
        &mut self,
        task_id: &str,
        agent: AgentId,
        score: f32,
        worker: Arc<dyn NodeAgent>,
    ) -> &mut Self {
        self.agents.insert(
            task_id.to_string(),
            Assigned {
                agent,
                score,
                worker,
            },
        );
        self
    }
    /// Runs `plan`: validates it, then starts each task when its dependencies are done (up
    /// to the parallelism), until every task ended or the run stops.
    pub async fn run(&self, plan: &Plan) -> Result<PlanOutcome, PipelineError> {
        scheduler::Scheduler::new(self, plan)?.run().await
    }
}
