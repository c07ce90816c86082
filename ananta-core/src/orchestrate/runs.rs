//! Running, resuming and reading orchestration runs: the Hub's side of [`super`].

use std::collections::HashMap;
use std::sync::Arc;

use super::board::{BoardAgent, BoardObserver};
use super::{
    Assignment, NODE_TAG, OUTPUT_LOG_KIND, OrchestrateError, PLAN_LOG_KIND, RUN_TAG, RunOptions,
    RunRecord, RunResult,
};
use crate::decompose::{Plan, PlannedTask};
use crate::error::{Error, StoreError};
use crate::event::EventKind;
use crate::hub::Hub;
use crate::ids::{AgentId, TaskId};
use crate::log::{Direction, LogEntry, LogQuery};
use crate::pipeline::{NodeAgent, Pipeline, PipelineError};
use crate::task::{MAX_TITLE_LEN, NewTask, Task, TaskFilter, TaskStatus, TaskUpdate};

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
    pub(super) fn can_run(&self, agent: &AgentId) -> bool {
        self.node_agent(agent).is_some() || self.is_connected(agent)
    }

    /// The output stored on a run's task, if any.
    pub(super) async fn stored_output(
        &self,
        task: TaskId,
    ) -> Result<Option<String>, OrchestrateError> {
        let entries = self.inner.store.logs(LogQuery::task(task)).await?;
        Ok(entries
            .iter()
            .rev()
            .find(|e| e.kind == OUTPUT_LOG_KIND)
            .and_then(|e| e.payload.get("text"))
            .and_then(|t| t.as_str())
            .map(str::to_string))
    }

    pub(super) async fn unresumable(&self, run_id: TaskId, reason: String) -> OrchestrateError {
        self.end_run(run_id, TaskStatus::Failed, Some(reason.clone()))
            .await;
        OrchestrateError::Unresumable { run_id, reason }
    }

    /// Runs a recorded plan; `finished` holds the outputs of tasks done before.
    pub(super) async fn execute_run(
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
    pub(super) async fn end_run(&self, run_id: TaskId, status: TaskStatus, error: Option<String>) {
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
    pub(super) async fn set_node_status(
        &self,
        node: Task,
        status: TaskStatus,
    ) -> Result<Task, Error> {
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
pub(super) fn node_task(
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
pub(super) fn run_title(prompt: &str) -> String {
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

/// Marks a run active in this hub for as long as it lives.
pub(super) struct ActiveRun {
    pub(super) hub: Hub,
    pub(super) run_id: TaskId,
}

impl ActiveRun {
    pub(super) fn enter(hub: &Hub, run_id: TaskId) -> Result<Self, OrchestrateError> {
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
