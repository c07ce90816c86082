//! The scheduler of one pipeline run: Kahn's algorithm over the plan (a task is queued when
//! its last dependency finished), at most `parallelism` tasks at a time, each task's retries
//! and timeout in [`run_node`], the failure policy, budgets and cancellation.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    FailurePolicy, NodeAgent, NodeInput, NodeStatus, NodeTrace, Pipeline, PipelineError,
    PipelineObserver, PipelineOptions, PlanOutcome, fit_context,
};
use crate::decompose::{Plan, PlannedTask};
use crate::error::AgentError;
use crate::ids::AgentId;
use crate::task::TokenUsage;

/// A task that ended, as its [`run_node`] reports it.
struct Finished {
    id: String,
    attempts: u32,
    tokens: TokenUsage,
    duration: Duration,
    result: Result<super::NodeOutput, NodeEnd>,
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

/// The state of one run of a plan.
pub(super) struct Scheduler<'p> {
    pipeline: &'p Pipeline,
    plan: &'p Plan,
    by_id: HashMap<&'p str, &'p PlannedTask>,
    traces: HashMap<&'p str, NodeTrace>,
    outputs: BTreeMap<String, String>,
    /// Per task, how many of its dependencies have not finished.
    waiting_on: HashMap<&'p str, usize>,
    /// Per task, the tasks that depend on it. A task without an entry is a sink.
    dependents: HashMap<&'p str, Vec<&'p str>>,
    /// Tasks whose dependencies are done, in the order they became ready.
    ready: VecDeque<&'p str>,
    /// Tasks downstream of a failed task (never started).
    blocked: HashSet<&'p str>,
    cancel: CancellationToken,
    running: JoinSet<Finished>,
    first_failure: Option<(String, String)>,
    budget_hit: Option<&'static str>,
    spent: Arc<Spent>,
    deadline: Option<tokio::time::Instant>,
    /// A one-task plan (without a time budget) runs on the caller's task: no spawn.
    inline: bool,
}

impl<'p> Scheduler<'p> {
    /// Checks `plan` and that every task has an agent, and sets up the run.
    pub(super) fn new(pipeline: &'p Pipeline, plan: &'p Plan) -> Result<Self, PipelineError> {
        let problems = plan.structural_problems();
        if !problems.is_empty() {
            return Err(PipelineError::InvalidPlan(problems));
        }
        let mut traces = HashMap::with_capacity(plan.tasks.len());
        for t in &plan.tasks {
            let Some(assigned) = pipeline.agents.get(&t.id) else {
                return Err(PipelineError::Unassigned(t.id.clone()));
            };
            traces.insert(
                t.id.as_str(),
                NodeTrace {
                    task_id: t.id.clone(),
                    agent: assigned.agent.clone(),
                    score: assigned.score,
                    attempts: 0,
                    duration_ms: 0,
                    tokens: TokenUsage::default(),
                    output_chars: 0,
                    resumed: false,
                    status: NodeStatus::Skipped,
                },
            );
        }
        let mut outputs = BTreeMap::new();
        for (id, output) in &pipeline.finished {
            if let Some(trace) = traces.get_mut(id.as_str()) {
                trace.output_chars = output.chars().count();
                trace.resumed = true;
                trace.status = NodeStatus::Done;
                outputs.insert(id.clone(), output.clone());
            }
        }
        let mut waiting_on = HashMap::with_capacity(plan.tasks.len());
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for t in &plan.tasks {
            let open = t
                .dependencies
                .iter()
                .filter(|d| !outputs.contains_key(d.as_str()))
                .count();
            waiting_on.insert(t.id.as_str(), open);
            for d in &t.dependencies {
                dependents
                    .entry(d.as_str())
                    .or_default()
                    .push(t.id.as_str());
            }
        }
        let ready: VecDeque<&str> = plan
            .tasks
            .iter()
            .filter(|t| !outputs.contains_key(&t.id) && waiting_on[t.id.as_str()] == 0)
            .map(|t| t.id.as_str())
            .collect();
        let options = &pipeline.options;
        let deadline = options
            .budget
            .max_duration
            .map(|d| tokio::time::Instant::now() + d);
        Ok(Self {
            pipeline,
            plan,
            by_id: plan.tasks.iter().map(|t| (t.id.as_str(), t)).collect(),
            inline: ready.len() == 1 && plan.tasks.len() == 1 && deadline.is_none(),
            traces,
            outputs,
            waiting_on,
            dependents,
            ready,
            blocked: HashSet::new(),
            cancel: options.cancel.child_token(),
            running: JoinSet::new(),
            first_failure: None,
            budget_hit: None,
            spent: Arc::new(Spent::default()),
            deadline,
        })
    }

    /// Runs the plan to its end and reports it.
    pub(super) async fn run(mut self) -> Result<PlanOutcome, PipelineError> {
        loop {
            let ran_inline = self.start_ready().await;
            let joined = match ran_inline {
                Some(finished) => Some(Ok(finished)),
                None => match self.deadline {
                    Some(deadline) => tokio::select! {
                        joined = self.running.join_next() => joined,
                        () = tokio::time::sleep_until(deadline), if self.budget_hit.is_none() => {
                            self.budget_hit = Some("time");
                            self.cancel.cancel();
                            continue;
                        }
                    },
                    None => self.running.join_next().await,
                },
            };
            let Some(joined) = joined else {
                break;
            };
            // A panicked node task: its trace stays "skipped".
            if let Ok(finished) = joined {
                self.record(finished);
            }
            if self.cancel.is_cancelled() && self.running.is_empty() {
                break;
            }
        }
        self.finish()
    }

    /// Starts what is ready (in the order it became ready), up to the parallelism. A one-task
    /// plan's only task runs right here, and its end is returned.
    async fn start_ready(&mut self) -> Option<Finished> {
        let options = &self.pipeline.options;
        let starting = self.budget_hit.is_none()
            && (self.first_failure.is_none()
                || options.failure == FailurePolicy::FinishIndependent);
        if !starting {
            return None;
        }
        let parallelism = options.parallelism.max(1);
        while self.running.len() < parallelism && !self.cancel.is_cancelled() {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            if self.blocked.contains(id) {
                continue;
            }
            let Some(assigned) = self.pipeline.agents.get(id) else {
                continue;
            };
            let task = self.by_id[id];
            let parts: Vec<(String, String)> = task
                .dependencies
                .iter()
                .map(|d| (d.clone(), self.outputs.get(d).cloned().unwrap_or_default()))
                .collect();
            let input = NodeInput {
                task_id: task.id.clone(),
                description: task.description.clone(),
                context: fit_context(&parts, options.context_budget),
            };
            tracing::debug!(task = %id, agent = %assigned.agent, "task started");
            let node = run_node(
                assigned.worker.clone(),
                assigned.agent.clone(),
                input,
                options.clone(),
                self.cancel.child_token(),
                self.spent.clone(),
                self.pipeline.observer.clone(),
            );
            if self.inline {
                return Some(node.await);
            }
            self.running.spawn(node);
        }
        None
    }

    /// Records how a task ended and what follows: its dependants become ready, or the failure
    /// policy and budgets act.
    fn record(&mut self, finished: Finished) {
        let Some(id) = self.by_id.get(finished.id.as_str()).map(|t| t.id.as_str()) else {
            return;
        };
        let Some(trace) = self.traces.get_mut(id) else {
            return;
        };
        trace.attempts = finished.attempts;
        trace.tokens = finished.tokens;
        trace.duration_ms = finished.duration.as_millis().try_into().unwrap_or(u64::MAX);
        match finished.result {
            Ok(output) => {
                trace.output_chars = output.text.chars().count();
                trace.status = NodeStatus::Done;
                self.outputs.insert(finished.id, output.text);
                for &next in self.dependents.get(id).into_iter().flatten() {
                    if let Some(n) = self.waiting_on.get_mut(next) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.ready.push_back(next);
                        }
                    }
                }
            }
            Err(NodeEnd::Cancelled) => trace.status = NodeStatus::Cancelled,
            Err(NodeEnd::Budget(limit)) => {
                trace.status = NodeStatus::Cancelled;
                if self.budget_hit.is_none() {
                    self.budget_hit = Some(limit);
                    self.cancel.cancel();
                }
            }
            Err(NodeEnd::Failed(error)) => {
                trace.status = NodeStatus::Failed {
                    error: error.clone(),
                };
                if self.first_failure.is_none() {
                    self.first_failure = Some((finished.id, error));
                }
                match self.pipeline.options.failure {
                    FailurePolicy::FailFast => self.cancel.cancel(),
                    FailurePolicy::FinishIndependent => self.block_downstream_of(id),
                }
            }
        }
    }

    /// Marks everything downstream of the failed task `failed` as never to start.
    fn block_downstream_of(&mut self, failed: &'p str) {
        let mut stack = vec![failed];
        while let Some(task) = stack.pop() {
            for &next in self.dependents.get(task).into_iter().flatten() {
                if self.blocked.insert(next) {
                    stack.push(next);
                }
            }
        }
    }

    /// The outcome: the sinks' output, every output, the trace in plan order; an error with
    /// the partial outcome when a budget, a failure or a cancellation stopped the run.
    fn finish(mut self) -> Result<PlanOutcome, PipelineError> {
        let trace: Vec<NodeTrace> = self
            .plan
            .tasks
            .iter()
            .filter_map(|t| self.traces.remove(t.id.as_str()))
            .collect();
        let sinks: Vec<&str> = self
            .plan
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .filter(|id| !self.dependents.contains_key(id))
            .collect();
        let output = match sinks.as_slice() {
            [one] => self.outputs.get(*one).cloned().unwrap_or_default(),
            many => many
                .iter()
                .filter_map(|id| self.outputs.get(*id).map(|o| format!("## {id}\n{o}")))
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        let outcome = PlanOutcome {
            output,
            outputs: self.outputs,
            trace,
        };
        if let Some(limit) = self.budget_hit {
            return Err(PipelineError::BudgetExceeded {
                limit: limit.to_string(),
                partial: Box::new(outcome),
            });
        }
        if let Some((task, error)) = self.first_failure {
            return Err(PipelineError::Failed {
                task,
                error,
                partial: Box::new(outcome),
            });
        }
        if self.pipeline.options.cancel.is_cancelled() {
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
