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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::decompose::Plan;
use crate::error::AgentError;
use crate::ids::AgentId;
use crate::task::TokenUsage;

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
pub struct RunOutcome {
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
        partial: Box<RunOutcome>,
    },
    /// A limit of the run's [`Budget`] was reached.
    #[error("the run's budget of {limit} was used up")]
    BudgetExceeded {
        /// `calls`, `tokens` or `time`.
        limit: String,
        /// The partial outcome.
        partial: Box<RunOutcome>,
    },
    /// The run was cancelled.
    #[error("the run was cancelled")]
    Cancelled {
        /// The partial outcome.
        partial: Box<RunOutcome>,
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

struct Finished {
    id: String,
    attempts: u32,
    tokens: TokenUsage,
    duration: Duration,
    result: Result<NodeOutput, NodeEnd>,
}

/// Why a task ended without output.
enum NodeEnd {
    Failed(String),
    Cancelled,
    Budget(&'static str),
}

/// What the run has spent, shared by its tasks.
#[derive(Default)]
struct Spent {
    calls: std::sync::atomic::AtomicU64,
    tokens: std::sync::atomic::AtomicU64,
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

    /// Runs `plan`.
    pub async fn run(&self, plan: &Plan) -> Result<RunOutcome, PipelineError> {
        let problems = plan.structural_problems();
        if !problems.is_empty() {
            return Err(PipelineError::InvalidPlan(problems));
        }
        for t in &plan.tasks {
            if !self.agents.contains_key(&t.id) {
                return Err(PipelineError::Unassigned(t.id.clone()));
            }
        }
        let by_id: HashMap<&str, &crate::decompose::PlannedTask> =
            plan.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        let mut traces: HashMap<String, NodeTrace> = plan
            .tasks
            .iter()
            .filter_map(|t| {
                self.agents.get(&t.id).map(|a| {
                    (
                        t.id.clone(),
                        NodeTrace {
                            task_id: t.id.clone(),
                            agent: a.agent.clone(),
                            score: a.score,
                            attempts: 0,
                            duration_ms: 0,
                            tokens: TokenUsage::default(),
                            output_chars: 0,
                            resumed: false,
                            status: NodeStatus::Skipped,
                        },
                    )
                })
            })
            .collect();
        let mut outputs: BTreeMap<String, String> = BTreeMap::new();
        for (id, output) in &self.finished {
            if let Some(trace) = traces.get_mut(id) {
                trace.output_chars = output.chars().count();
                trace.resumed = true;
                trace.status = NodeStatus::Done;
                outputs.insert(id.clone(), output.clone());
            }
        }
        // Kahn's algorithm: a task is ready when its last dependency finished.
        let mut waiting_on: HashMap<&str, usize> = plan
            .tasks
            .iter()
            .map(|t| {
                let open = t
                    .dependencies
                    .iter()
                    .filter(|d| !outputs.contains_key(d.as_str()))
                    .count();
                (t.id.as_str(), open)
            })
            .collect();
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for t in &plan.tasks {
            for d in &t.dependencies {
                dependents
                    .entry(d.as_str())
                    .or_default()
                    .push(t.id.as_str());
            }
        }
        let mut ready: std::collections::VecDeque<&str> = plan
            .tasks
            .iter()
            .filter(|t| !outputs.contains_key(&t.id) && waiting_on[t.id.as_str()] == 0)
            .map(|t| t.id.as_str())
            .collect();
        let mut blocked: BTreeSet<String> = BTreeSet::new();
        let run_cancel = self.options.cancel.child_token();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut first_failure: Option<(String, String)> = None;
        let mut budget_hit: Option<&'static str> = None;
        let spent = Arc::new(Spent::default());
        let deadline = self
            .options
            .budget
            .max_duration
            .map(|d| tokio::time::Instant::now() + d);
        let parallelism = self.options.parallelism.max(1);
        // A one-task plan (without a time budget) runs on this task: no spawn, no scheduling.
        let inline = ready.len() == 1 && plan.tasks.len() == 1 && deadline.is_none();
        let mut ran_inline: Option<Finished> = None;
        loop {
            // Start what is ready (in the order it became ready), up to the limit.
            let starting = budget_hit.is_none()
                && (first_failure.is_none()
                    || self.options.failure == FailurePolicy::FinishIndependent);
            if starting {
                while running.len() < parallelism && !run_cancel.is_cancelled() {
                    let Some(id) = ready.pop_front() else {
                        break;
                    };
                    if blocked.contains(id) {
                        continue;
                    }
                    let task = by_id[id];
                    let parts: Vec<(String, String)> = task
                        .dependencies
                        .iter()
                        .map(|d| (d.clone(), outputs.get(d).cloned().unwrap_or_default()))
                        .collect();
                    let input = NodeInput {
                        task_id: task.id.clone(),
                        description: task.description.clone(),
                        context: fit_context(&parts, self.options.context_budget),
                    };
                    let Some(assigned) = self.agents.get(id) else {
                        continue;
                    };
                    let worker = assigned.worker.clone();
                    let options = self.options.clone();
                    let cancel = run_cancel.child_token();
                    tracing::debug!(task = %id, agent = %assigned.agent, "task started");
                    let node = run_node(
                        worker,
                        assigned.agent.clone(),
                        input,
                        options,
                        cancel,
                        spent.clone(),
                        self.observer.clone(),
                    );
                    if inline {
                        ran_inline = Some(node.await);
                    } else {
                        running.spawn(node);
                    }
                }
            }
            let joined = if let Some(finished) = ran_inline.take() {
                Some(Ok(finished))
            } else {
                match deadline {
                    Some(deadline) => tokio::select! {
                        joined = running.join_next() => joined,
                        () = tokio::time::sleep_until(deadline), if budget_hit.is_none() => {
                            budget_hit = Some("time");
                            run_cancel.cancel();
                            continue;
                        }
                    },
                    None => running.join_next().await,
                }
            };
            let Some(joined) = joined else {
                break;
            };
            let Ok(finished) = joined else {
                continue; // a panicked node task: its trace stays "skipped"
            };
            let Some(trace) = traces.get_mut(&finished.id) else {
                continue;
            };
            trace.attempts = finished.attempts;
            trace.tokens = finished.tokens;
            trace.duration_ms = finished.duration.as_millis().try_into().unwrap_or(u64::MAX);
            match finished.result {
                Ok(output) => {
                    trace.output_chars = output.text.chars().count();
                    trace.status = NodeStatus::Done;
                    outputs.insert(finished.id.clone(), output.text);
                    for next in dependents.get(finished.id.as_str()).into_iter().flatten() {
                        if let Some(n) = waiting_on.get_mut(next) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                ready.push_back(next);
                            }
                        }
                    }
                }
                Err(NodeEnd::Cancelled) => trace.status = NodeStatus::Cancelled,
                Err(NodeEnd::Budget(limit)) => {
                    trace.status = NodeStatus::Cancelled;
                    if budget_hit.is_none() {
                        budget_hit = Some(limit);
                        run_cancel.cancel();
                    }
                }
                Err(NodeEnd::Failed(error)) => {
                    trace.status = NodeStatus::Failed {
                        error: error.clone(),
                    };
                    if first_failure.is_none() {
                        first_failure = Some((finished.id.clone(), error));
                    }
                    match self.options.failure {
                        FailurePolicy::FailFast => run_cancel.cancel(),
                        FailurePolicy::FinishIndependent => {
                            // Everything downstream of the failed task is skipped.
                            let mut stack = vec![finished.id.clone()];
                            while let Some(failed) = stack.pop() {
                                for t in &plan.tasks {
                                    if t.dependencies.contains(&failed)
                                        && blocked.insert(t.id.clone())
                                    {
                                        stack.push(t.id.clone());
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if run_cancel.is_cancelled() && running.is_empty() {
                break;
            }
        }
        let trace: Vec<NodeTrace> = plan
            .tasks
            .iter()
            .filter_map(|t| traces.remove(&t.id))
            .collect();
        let sinks: Vec<&str> = plan
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .filter(|id| {
                !plan
                    .tasks
                    .iter()
                    .any(|t| t.dependencies.iter().any(|d| d == id))
            })
            .collect();
        let output = match sinks.as_slice() {
            [one] => outputs.get(*one).cloned().unwrap_or_default(),
            many => many
                .iter()
                .filter_map(|id| outputs.get(*id).map(|o| format!("## {id}\n{o}")))
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        let outcome = RunOutcome {
            output,
            outputs,
            trace,
        };
        if let Some(limit) = budget_hit {
            return Err(PipelineError::BudgetExceeded {
                limit: limit.to_string(),
                partial: Box::new(outcome),
            });
        }
        if let Some((task, error)) = first_failure {
            return Err(PipelineError::Failed {
                task,
                error,
                partial: Box::new(outcome),
            });
        }
        if self.options.cancel.is_cancelled() {
            return Err(PipelineError::Cancelled {
                partial: Box::new(outcome),
            });
        }
        Ok(outcome)
    }
}

/// How long a cancelled agent may take to stop before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// One task with its retries and timeout. The error's flag says it was cancelled.
async fn run_node(
    worker: Arc<dyn NodeAgent>,
    agent: AgentId,
    input: NodeInput,
    options: PipelineOptions,
    cancel: CancellationToken,
    spent: Arc<Spent>,
    observer: Option<Arc<dyn PipelineObserver>>,
) -> Finished {
    use std::sync::atomic::Ordering;
    let started = Instant::now();
    if let Some(observer) = &observer {
        observer.started(&input.task_id, &agent).await;
    }
    let mut tokens = TokenUsage::default();
    let mut attempts = 0;
    let budget = options.budget;
    let result = loop {
        if budget
            .max_calls
            .is_some_and(|max| spent.calls.fetch_add(1, Ordering::SeqCst) >= max)
        {
            break Err(NodeEnd::Budget("calls"));
        }
        if budget
            .max_tokens
            .is_some_and(|max| spent.tokens.load(Ordering::SeqCst) >= max)
        {
            break Err(NodeEnd::Budget("tokens"));
        }
        attempts += 1;
        let call = worker.run(input.clone(), cancel.clone());
        // The agent sees the cancellation through its token and gets a grace period to
        // stop its work (and its processes); only then is it dropped.
        let gave_up = async {
            cancel.cancelled().await;
            tokio::time::sleep(CANCEL_GRACE).await;
        };
        let answer = tokio::select! {
            () = gave_up => break Err(NodeEnd::Cancelled),
            answer = async {
                match options.task_timeout {
                    Some(limit) => tokio::time::timeout(limit, call)
                        .await
                        .unwrap_or(Err(AgentError::Timeout(limit))),
                    None => call.await,
                }
            } => answer,
        };
        match answer {
            Ok(output) => {
                if let Some(u) = output.usage {
                    tokens.add(u);
                    let used = spent
                        .tokens
                        .fetch_add(u.prompt_tokens + u.completion_tokens, Ordering::SeqCst)
                        + u.prompt_tokens
                        + u.completion_tokens;
                    if budget.max_tokens.is_some_and(|max| used > max) {
                        break Err(NodeEnd::Budget("tokens"));
                    }
                }
                if let Some(observer) = &observer
                    && let Err(e) = observer.completed(&input.task_id, &output, attempts).await
                {
                    break Err(NodeEnd::Failed(format!(
                        "its output could not be recorded: {e}"
                    )));
                }
                break Ok(output);
            }
            Err(_) if cancel.is_cancelled() => break Err(NodeEnd::Cancelled),
            Err(e) if e.is_transient() && attempts <= options.retries => {
                let delay = options.backoff * 2u32.saturating_pow(attempts - 1);
                tracing::info!(task = %input.task_id, attempt = attempts, error = %e, ?delay, "retrying a task");
                if let Some(observer) = &observer {
                    observer.retried(&input.task_id, attempts, &e, delay).await;
                }
                tokio::select! {
                    () = cancel.cancelled() => break Err(NodeEnd::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => break Err(NodeEnd::Failed(e.to_string())),
        }
    };
    if let Some(observer) = &observer {
        match &result {
            Ok(_) => {}
            Err(NodeEnd::Failed(error)) => observer.failed(&input.task_id, error).await,
            Err(NodeEnd::Cancelled | NodeEnd::Budget(_)) => {
                observer.cancelled(&input.task_id).await;
            }
        }
    }
    Finished {
        id: input.task_id,
        attempts,
        tokens,
        duration: started.elapsed(),
        result,
    }
}

/// A text agent: answers a task with text from its LLM, like the seed's researcher,
/// summariser and translator. Its specialisation is the system prompt; the task's context
/// (its dependencies' outputs) follows the description.
pub struct TextAgent {
    llm: Arc<dyn crate::llm::LlmProvider>,
    specialisation: String,
    model: Option<String>,
    max_tokens: Option<u32>,
}

impl std::fmt::Debug for TextAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextAgent")
            .field("llm", &self.llm.name())
            .field("specialisation", &self.specialisation)
            .finish_non_exhaustive()
    }
}

impl TextAgent {
    /// A text agent asking `llm`, specialised as `specialisation` (e.g. "You translate
    /// between German and English.").
    pub fn new(llm: Arc<dyn crate::llm::LlmProvider>, specialisation: impl Into<String>) -> Self {
        Self {
            llm,
            specialisation: specialisation.into(),
            model: None,
            max_tokens: None,
        }
    }

    /// The model to ask.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Answer token limit.
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = Some(tokens);
        self
    }
}

#[async_trait]
impl NodeAgent for TextAgent {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        use crate::llm::{ChatMessage, ChatRequest};
        let system = format!(
            "{}\nAnswer with the result of the task only, without preamble.",
            self.specialisation
        );
        let mut task = format!("Task: {}", input.description);
        if !input.context.is_empty() {
            task.push_str("\n\nResults of earlier tasks you may need:\n");
            task.push_str(&input.context);
        }
        let mut request =
            ChatRequest::new(vec![ChatMessage::system(system), ChatMessage::user(task)]);
        request.model = self.model.clone();
        request.max_tokens = self.max_tokens;
        let response = tokio::select! {
            () = cancel.cancelled() => return Err(AgentError::Cancelled),
            response = self.llm.complete(request) => response?,
        };
        Ok(NodeOutput {
            text: response.content.trim().to_string(),
            usage: response.usage,
        })
    }
}

/// A shell agent: a [`Worker`](crate::worker::Worker) works on the task on its own —
/// propose, run, feed the output back — until its model says it is done or `max_steps` are
/// used. The output is the model's summary and the last command's output. Cancelling stops
/// the worker and kills the running command's process group.
pub struct ShellAgent {
    worker: crate::worker::Worker,
    max_steps: u32,
}

impl std::fmt::Debug for ShellAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellAgent")
            .field("worker", self.worker.name())
            .field("max_steps", &self.max_steps)
            .finish()
    }
}

impl ShellAgent {
    /// A shell agent running `worker` for at most `max_steps` steps per task.
    pub fn new(worker: crate::worker::Worker, max_steps: u32) -> Self {
        Self {
            worker,
            max_steps: max_steps.max(1),
        }
    }
}

#[async_trait]
impl NodeAgent for ShellAgent {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        use crate::run::RunLimits;
        let title: String = input
            .description
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let mut description = input.description.clone();
        if !input.context.is_empty() {
            description.push_str("\n\nResults of earlier tasks:\n");
            description.push_str(&input.context);
        }
        let mut task = crate::task::NewTask::new(title)
            .description(description)
            .into_task()
            .map_err(|e| AgentError::Exec(crate::error::ExecError::InvalidRequest(e)))?;
        let limits = RunLimits {
            cancel,
            ..RunLimits::steps(self.max_steps)
        };
        let report = self
            .worker
            .run(&mut task, None, &limits)
            .await
            .map_err(agent_error)?;
        shell_output(report, task.steps.last())
    }
}

/// An error of a step loop as an agent's error (transient where the cause is).
pub(crate) fn agent_error(e: crate::error::Error) -> AgentError {
    match e {
        crate::error::Error::Agent(a) => a,
        crate::error::Error::Llm(l) => AgentError::Llm(l),
        crate::error::Error::Exec(x) => AgentError::Exec(x),
        other => AgentError::Rejected {
            status: 0,
            message: other.to_string(),
        },
    }
}

/// The output of a step loop that worked on a task: the model's summary and the last
/// command's output; an error unless the model said it was done.
pub(crate) fn shell_output(
    report: crate::run::RunReport,
    last_step: Option<&crate::task::StepRecord>,
) -> Result<NodeOutput, AgentError> {
    use crate::run::StopReason;
    let last = last_step
        .map(|s| s.outcome.summary_for_model(2_000))
        .unwrap_or_default();
    let text = match report.stop {
        StopReason::Done { summary } => format!("{summary}\n\n{last}").trim().to_string(),
        StopReason::Cancelled => return Err(AgentError::Cancelled),
        StopReason::AwaitingApproval { reasons } => {
            return Err(AgentError::Exec(crate::error::ExecError::NeedsApproval {
                reasons,
            }));
        }
        other => {
            return Err(AgentError::Rejected {
                status: 0,
                message: format!("the agent stopped before it was done: {other:?}"),
            });
        }
    };
    Ok(NodeOutput {
        text,
        usage: Some(report.usage),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::decompose::PlannedTask;

    fn task(id: &str, deps: &[&str]) -> PlannedTask {
        PlannedTask {
            id: id.into(),
            description: format!("do {id}"),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            priority: None,
            agent_hint: None,
        }
    }

    fn plan(tasks: Vec<PlannedTask>) -> Plan {
        Plan {
            reasoning: String::new(),
            tasks,
        }
    }

    /// Records the tokio task it runs on.
    struct WhereAmI(Mutex<Vec<Option<tokio::task::Id>>>);

    #[async_trait]
    impl NodeAgent for WhereAmI {
        async fn run(
            &self,
            input: NodeInput,
            _: CancellationToken,
        ) -> Result<NodeOutput, AgentError> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tokio::task::try_id());
            Ok(NodeOutput::text(input.task_id))
        }
    }

    #[tokio::test]
    async fn a_one_task_plan_runs_on_the_callers_task() {
        for (tasks, inline) in [
            (vec![task("only", &[])], true),
            (vec![task("a", &[]), task("b", &[])], false),
        ] {
            let probe = Arc::new(WhereAmI(Mutex::default()));
            let mut pipeline = Pipeline::new(PipelineOptions::default());
            for t in &tasks {
                pipeline.assign(
                    &t.id,
                    AgentId::new("probe").unwrap_or_else(|e| panic!("{e}")),
                    1.0,
                    probe.clone(),
                );
            }
            let plan = plan(tasks);
            let (caller, outcome) =
                tokio::spawn(async move { (tokio::task::id(), pipeline.run(&plan).await) })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            assert!(outcome.is_ok());
            let seen = probe.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            assert!(!seen.is_empty());
            assert_eq!(
                seen.iter().all(|id| *id == Some(caller)),
                inline,
                "inline: {inline}, caller {caller:?}, agents on {seen:?}"
            );
        }
    }

    /// Records what it saw; fails or sleeps as told per task.
    #[derive(Default)]
    struct Probe {
        running: AtomicUsize,
        max_running: AtomicUsize,
        events: Mutex<Vec<String>>,
        inputs: Mutex<HashMap<String, NodeInput>>,
        calls: Mutex<HashMap<String, u32>>,
        /// task → failures before success (transient), or u32::MAX for a permanent one.
        fail: HashMap<String, u32>,
        slow: HashMap<String, Duration>,
        cancelled: AtomicUsize,
    }

    #[async_trait]
    impl NodeAgent for Probe {
        async fn run(
            &self,
            input: NodeInput,
            cancel: CancellationToken,
        ) -> Result<NodeOutput, AgentError> {
            let id = input.task_id.clone();
            let call = {
                let mut calls = self.calls.lock().unwrap();
                let c = calls.entry(id.clone()).or_insert(0);
                *c += 1;
                *c
            };
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            self.events.lock().unwrap().push(format!("start {id}"));
            self.inputs
                .lock()
                .unwrap()
                .insert(id.clone(), input.clone());
            let wait = self
                .slow
                .get(&id)
                .copied()
                .unwrap_or(Duration::from_millis(20));
            let result = tokio::select! {
                () = cancel.cancelled() => {
                    self.cancelled.fetch_add(1, Ordering::SeqCst);
                    Err(AgentError::Cancelled)
                }
                () = tokio::time::sleep(wait) => {
                    match self.fail.get(&id) {
                        Some(&u32::MAX) => Err(AgentError::Rejected { status: 400, message: format!("{id} is broken") }),
                        Some(&n) if call <= n => Err(AgentError::Unreachable("flaky".into())),
                        _ => Ok(NodeOutput { text: format!("out:{id}"), usage: Some(TokenUsage { prompt_tokens: 3, completion_tokens: 2 }) }),
                    }
                }
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.events.lock().unwrap().push(format!("end {id}"));
            result
        }
    }

    fn pipeline(probe: &Arc<Probe>, plan: &Plan, options: PipelineOptions) -> Pipeline {
        let mut p = Pipeline::new(options);
        for t in &plan.tasks {
            p.assign(&t.id, AgentId::new("probe").unwrap(), 0.5, probe.clone());
        }
        p
    }

    #[tokio::test]
    async fn independent_tasks_overlap_dependants_wait_and_get_context() {
        let diamond = plan(vec![
            task("a", &[]),
            task("b", &[]),
            task("compare", &["a", "b"]),
        ]);
        let probe = Arc::new(Probe::default());
        let outcome = pipeline(&probe, &diamond, PipelineOptions::default())
            .run(&diamond)
            .await
            .unwrap();
        assert_eq!(outcome.output, "out:compare");
        assert_eq!(
            probe.max_running.load(Ordering::SeqCst),
            2,
            "a and b overlap"
        );
        let events = probe.events.lock().unwrap().clone();
        let pos = |e: &str| events.iter().position(|x| x == e).unwrap();
        assert!(
            pos("start compare") > pos("end a") && pos("start compare") > pos("end b"),
            "{events:?}"
        );
        let context = probe.inputs.lock().unwrap()["compare"].context.clone();
        assert!(
            context.contains("Output of task a:\nout:a") && context.contains("out:b"),
            "{context}"
        );
        assert!(
            outcome
                .trace
                .iter()
                .all(|t| t.status == NodeStatus::Done && t.attempts == 1)
        );
        assert_eq!(outcome.trace[2].tokens.completion_tokens, 2);

        // A parallelism of 1 runs one at a time.
        let probe = Arc::new(Probe::default());
        let options = PipelineOptions {
            parallelism: 1,
            ..PipelineOptions::default()
        };
        pipeline(&probe, &diamond, options)
            .run(&diamond)
            .await
            .unwrap();
        assert_eq!(probe.max_running.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_permanent_ones_follow_the_policy() {
        let chain = plan(vec![task("a", &[]), task("b", &["a"])]);
        let probe = Arc::new(Probe {
            fail: HashMap::from([("a".to_string(), 2)]),
            ..Probe::default()
        });
        let options = PipelineOptions {
            backoff: Duration::from_millis(1),
            ..PipelineOptions::default()
        };
        let outcome = pipeline(&probe, &chain, options).run(&chain).await.unwrap();
        assert_eq!(outcome.trace[0].attempts, 3);

        // Fail fast: the broken task cancels its slow sibling.
        let wide = plan(vec![
            task("broken", &[]),
            task("slow", &[]),
            task("after", &["slow"]),
        ]);
        let probe = Arc::new(Probe {
            fail: HashMap::from([("broken".to_string(), u32::MAX)]),
            slow: HashMap::from([("slow".to_string(), Duration::from_secs(30))]),
            ..Probe::default()
        });
        let err = pipeline(&probe, &wide, PipelineOptions::default())
            .run(&wide)
            .await
            .unwrap_err();
        let PipelineError::Failed {
            task: failed,
            partial,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(failed, "broken");
        assert_eq!(
            probe.cancelled.load(Ordering::SeqCst),
            1,
            "the slow sibling saw the cancel"
        );
        assert_eq!(partial.trace[1].status, NodeStatus::Cancelled);
        assert_eq!(partial.trace[2].status, NodeStatus::Skipped);

        // Finish the independent branches: the sibling's branch completes, dependants skip.
        let branches = plan(vec![
            task("broken", &[]),
            task("child", &["broken"]),
            task("other", &[]),
            task("next", &["other"]),
        ]);
        let probe = Arc::new(Probe {
            fail: HashMap::from([("broken".to_string(), u32::MAX)]),
            ..Probe::default()
        });
        let options = PipelineOptions {
            failure: FailurePolicy::FinishIndependent,
            ..PipelineOptions::default()
        };
        let err = pipeline(&probe, &branches, options)
            .run(&branches)
            .await
            .unwrap_err();
        let PipelineError::Failed { partial, .. } = err else {
            panic!("{err:?}")
        };
        let status: Vec<&NodeStatus> = partial.trace.iter().map(|t| &t.status).collect();
        assert!(matches!(status[0], NodeStatus::Failed { .. }));
        assert_eq!(status[1], &NodeStatus::Skipped);
        assert_eq!(
            (status[2], status[3]),
            (&NodeStatus::Done, &NodeStatus::Done)
        );
        assert_eq!(partial.outputs["next"], "out:next");
    }

    #[tokio::test]
    async fn cancellation_reaches_running_agents_and_timeouts_count() {
        let chain = plan(vec![task("long", &[]), task("later", &["long"])]);
        let probe = Arc::new(Probe {
            slow: HashMap::from([("long".to_string(), Duration::from_secs(30))]),
            ..Probe::default()
        });
        let options = PipelineOptions::default();
        let cancel = options.cancel.clone();
        let p = pipeline(&probe, &chain, options);
        let run = tokio::spawn(async move { p.run(&chain).await });
        while !probe
            .events
            .lock()
            .unwrap()
            .contains(&"start long".to_string())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        let err = run.await.unwrap().unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled { .. }), "{err:?}");
        assert_eq!(probe.cancelled.load(Ordering::SeqCst), 1);
        assert!(
            !probe
                .events
                .lock()
                .unwrap()
                .contains(&"start later".to_string())
        );

        let one = plan(vec![task("stuck", &[])]);
        let probe = Arc::new(Probe {
            slow: HashMap::from([("stuck".to_string(), Duration::from_secs(30))]),
            ..Probe::default()
        });
        let options = PipelineOptions {
            task_timeout: Some(Duration::from_millis(30)),
            retries: 1,
            backoff: Duration::from_millis(1),
            ..PipelineOptions::default()
        };
        let err = pipeline(&probe, &one, options).run(&one).await.unwrap_err();
        let PipelineError::Failed { error, partial, .. } = err else {
            panic!("{err:?}")
        };
        assert!(error.contains("did not answer within"), "{error}");
        assert_eq!(
            partial.trace[0].attempts, 2,
            "a timeout is transient: retried once"
        );
    }

    #[tokio::test]
    async fn budgets_stop_the_run_cleanly_with_the_partial_trace() {
        let chain = plan(vec![task("a", &[]), task("b", &["a"]), task("c", &["b"])]);
        // Calls: two allowed, the third task is refused.
        let probe = Arc::new(Probe::default());
        let options = PipelineOptions {
            budget: Budget {
                max_calls: Some(2),
                ..Budget::default()
            },
            ..PipelineOptions::default()
        };
        let err = pipeline(&probe, &chain, options)
            .run(&chain)
            .await
            .unwrap_err();
        let PipelineError::BudgetExceeded { limit, partial } = err else {
            panic!("{err:?}")
        };
        assert_eq!(limit, "calls");
        assert_eq!(partial.outputs.len(), 2);
        assert_eq!(partial.trace[2].attempts, 0);
        // Tokens: each task reports 5; a budget of 7 is passed by the second.
        let probe = Arc::new(Probe::default());
        let options = PipelineOptions {
            budget: Budget {
                max_tokens: Some(7),
                ..Budget::default()
            },
            ..PipelineOptions::default()
        };
        let err = pipeline(&probe, &chain, options)
            .run(&chain)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PipelineError::BudgetExceeded { ref limit, .. } if limit == "tokens"),
            "{err:?}"
        );
        // Time: a slow task is cancelled when the run's time is up.
        let slow = plan(vec![task("slow", &[])]);
        let probe = Arc::new(Probe {
            slow: HashMap::from([("slow".to_string(), Duration::from_secs(30))]),
            ..Probe::default()
        });
        let options = PipelineOptions {
            budget: Budget {
                max_duration: Some(Duration::from_millis(50)),
                ..Budget::default()
            },
            ..PipelineOptions::default()
        };
        let err = pipeline(&probe, &slow, options)
            .run(&slow)
            .await
            .unwrap_err();
        let PipelineError::BudgetExceeded { limit, partial } = err else {
            panic!("{err:?}")
        };
        assert_eq!(limit, "time");
        assert_eq!(partial.trace[0].status, NodeStatus::Cancelled);
        assert_eq!(
            probe.cancelled.load(Ordering::SeqCst),
            1,
            "the agent saw the cancel"
        );
    }

    #[test]
    fn context_is_fitted_with_a_marker_not_dropped() {
        let parts = vec![
            ("a".to_string(), "x".repeat(10_000)),
            ("b".to_string(), "short".to_string()),
        ];
        let fitted = fit_context(&parts, 1_000);
        assert!(
            fitted.contains("Output of task a:") && fitted.contains("Output of task b:\nshort")
        );
        assert!(fitted.chars().count() < 1_300, "{}", fitted.chars().count());
        assert!(
            fitted.contains("cut") || fitted.contains("…"),
            "a marker shows the cut"
        );
    }

    #[tokio::test]
    async fn bad_plans_and_missing_agents_are_refused() {
        let cyclic = plan(vec![task("a", &["b"]), task("b", &["a"])]);
        let p = Pipeline::new(PipelineOptions::default());
        assert!(matches!(
            p.run(&cyclic).await,
            Err(PipelineError::InvalidPlan(_))
        ));
        let ok = plan(vec![task("a", &[])]);
        assert!(matches!(
            p.run(&ok).await,
            Err(PipelineError::Unassigned(_))
        ));
    }
}
