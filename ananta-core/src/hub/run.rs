//! [`Hub::run`]: the autonomous step loop on a stored task, with verification, feedback and
//! approvals inside the run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::Hub;
use crate::agent::ExecuteRequest;
use crate::error::Error;
use crate::event::EventKind;
use crate::feedback::{Feedback, FeedbackKind, push_bounded};
use crate::ids::TaskId;
use crate::log::{Direction, LogEntry};
use crate::steps::{Approval, RunError, StepDriver, StepLimits, StepReport, StopReason, drive};
use crate::task::{Proposal, Proposed, StepRecord, TaskStatus, TaskUpdate};
use crate::verify::{CheckResult, Verification};

/// How often a wait for a human re-reads the task when no event arrives (another Hub on the
/// same store may have decided).
const APPROVAL_POLL: Duration = Duration::from_secs(1);

impl Hub {
    /// Runs a task autonomously through its assigned agent: propose → execute, every step
    /// stored, logged and published, until the run stops (see [`StopReason`]).
    ///
    /// - The agent says it is finished: the task's acceptance checks run through the agent
    ///   (its executor, gate and sandbox) and the evidence is stored on the task
    ///   ([`Task::verification`](crate::Task::verification)). All pass → `done`. One fails → the failure is fed back and
    ///   the loop goes on. No checks → `review` (unverified), or `done` with
    ///   [`StepLimits::trust_model`].
    /// - Unreadable answers, denied commands, rejected and repeated commands are fed back to the
    ///   model ([`Task::feedback`](crate::Task::feedback)) within the budget; a model that repeats itself after being
    ///   told stops as [`StopReason::Stuck`] and the task is `failed`.
    /// - A command held for a human waits inside the run for [`Hub::approve`] or
    ///   [`Hub::reject`] up to [`StepLimits::approval_wait`], then goes on with the same budget.
    /// - The budget used up after a failed check: `failed`. Otherwise a budget or cancellation
    ///   leaves the task `in_progress` for another run.
    ///
    /// On an error (the LLM or the store failing), the error carries what the run did.
    pub async fn run(&self, task_id: TaskId, limits: &StepLimits) -> Result<StepReport, RunError> {
        let mut driver = HubDriver {
            hub: self,
            task_id,
            held: None,
        };
        let report = drive(&mut driver, limits).await?;
        match self.finish_run(task_id, &report).await {
            Ok(()) => Ok(report),
            Err(error) => Err(RunError { report, error }),
        }
    }

    /// Moves the task to the status its run's end stands for, and logs it.
    async fn finish_run(&self, task_id: TaskId, report: &StepReport) -> Result<(), Error> {
        let failed_check = report
            .verification
            .as_ref()
            .is_some_and(|v| !v.passed && !v.is_unverified());
        let (status, why) = match &report.stop {
            StopReason::Done { summary } => (TaskStatus::Done, summary.clone()),
            StopReason::Unverified { summary } => (
                TaskStatus::Review,
                format!("unverified (the task has no acceptance checks): {summary}"),
            ),
            StopReason::Stuck { command } => (
                TaskStatus::Failed,
                format!("stuck: the model kept proposing `{command}`"),
            ),
            StopReason::StepBudget | StopReason::TokenBudget if failed_check => (
                TaskStatus::Failed,
                "the budget ran out while an acceptance check still failed".to_string(),
            ),
            _ => return Ok(()),
        };
        let task = self.inner.store.get_task(task_id).await?;
        let task = self.move_to(task, status).await?;
        // The agent may clean up the task's workspace; a failure there is logged, not fatal.
        if let Some(agent) = &task.assigned_agent
            && let Ok(client) = self.client(agent)
            && let Err(e) = client.release(task_id, status).await
        {
            tracing::warn!(task = %task_id, agent = %agent, error = %e, "the agent could not release the task");
        }
        self.log(
            LogEntry::new(
                Direction::Out,
                "status",
                json!({
                    "status": status,
                    "summary": why,
                    "verified": report.verification.as_ref().map(|v| v.passed),
                }),
            )
            .task(task_id),
        )
        .await;
        Ok(())
    }

    /// Runs the task's acceptance checks through its agent and stores the evidence.
    async fn verify_task(&self, task_id: TaskId, summary: &str) -> Result<Verification, Error> {
        let task = self.inner.store.get_task(task_id).await?;
        let template = match task.template_id {
            Some(id) => Some(self.inner.store.get_template(id).await?),
            None => None,
        };
        let checks = crate::verify::checks_of(&task, template.as_ref());
        let mut results = Vec::with_capacity(checks.len());
        if !checks.is_empty() {
            let (agent, client) = self.assigned(&task).await?;
            let task = self.reread_if_reassigned(task, &agent).await?;
            for check in &checks {
                let request = ExecuteRequest {
                    task: task.clone(),
                    command: Some(check.clone()),
                    // Checks come from the host, the template or the plan, not the model: the
                    // gate's `NeedsApproval` does not hold them (its `Deny` still does).
                    approved: true,
                };
                results.push(match client.execute(request).await {
                    Ok(step) => CheckResult::from_outcome(check, &step.outcome),
                    Err(e) => CheckResult::not_run(check, e.to_string()),
                });
            }
        }
        let verification = Verification::new(summary, results);
        let stored = verification.clone();
        self.modify(task_id, |_| {
            Some(TaskUpdate {
                verification: Some(Some(stored.clone())),
                ..TaskUpdate::default()
            })
        })
        .await?;
        self.log(
            LogEntry::new(
                Direction::Out,
                "verification",
                serde_json::to_value(&verification).unwrap_or_default(),
            )
            .task(task_id),
        )
        .await;
        self.publish(EventKind::TaskVerified {
            task_id,
            verification: Box::new(verification.clone()),
        });
        Ok(verification)
    }

    /// Stores feedback for the model on the task and drops its pending proposal.
    async fn feed_back(
        &self,
        task_id: TaskId,
        kind: FeedbackKind,
        answer: &str,
        message: String,
    ) -> Result<(), Error> {
        let task = self
            .modify(task_id, |task| {
                let entry = Feedback::new(task.steps.len(), kind, answer, message.clone());
                let mut list = task.feedback.clone();
                push_bounded(&mut list, entry);
                Some(TaskUpdate {
                    feedback: Some(list),
                    proposal: Some(None),
                    ..TaskUpdate::default()
                })
            })
            .await?;
        let Some(entry) = task.feedback.last().cloned() else {
            return Ok(());
        };
        self.log(
            LogEntry::new(
                Direction::In,
                "feedback",
                json!({"kind": kind.as_str(), "message": entry.message}),
            )
            .task(task_id),
        )
        .await;
        self.publish(EventKind::StepFeedback {
            task_id,
            feedback: Box::new(entry),
        });
        Ok(())
    }

    /// Waits up to `wait` for a human's decision on the held proposal (known by when it was
    /// proposed: an approved step keeps its proposal, also when the command was edited).
    async fn await_decision(
        &self,
        task_id: TaskId,
        held: Option<DateTime<Utc>>,
        wait: Duration,
    ) -> Result<Approval, Error> {
        let mut events = self.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            let task = self.inner.store.get_task(task_id).await?;
            let executed = task.steps.iter().rev().any(|step| {
                step.proposal
                    .as_ref()
                    .is_some_and(|p| Some(p.proposed_at) == held)
            });
            if executed {
                return Ok(Approval::Executed);
            }
            if task.status.is_terminal() || task.status == TaskStatus::Review {
                return Ok(Approval::Abandoned);
            }
            if task.proposal.is_none() && task.status != TaskStatus::Blocked {
                return Ok(Approval::Rejected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Approval::Pending);
            }
            let wake = deadline.min(now + APPROVAL_POLL);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                event = events.recv() => {
                    if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        tokio::time::sleep_until(wake).await;
                    }
                }
            }
        }
    }
}

struct HubDriver<'a> {
    hub: &'a Hub,
    task_id: TaskId,
    /// When the proposal last sent to execution was made, to recognise it once approved.
    held: Option<DateTime<Utc>>,
}

impl StepDriver for HubDriver<'_> {
    async fn propose(&mut self) -> Result<Proposed, Error> {
        self.hub.propose(self.task_id).await
    }

    async fn execute(&mut self, proposal: Proposal) -> Result<StepRecord, Error> {
        // The proposal is already stored on the task by `propose`.
        self.held = Some(proposal.proposed_at);
        self.hub.execute(self.task_id, None).await
    }

    async fn verify(&mut self, summary: &str) -> Result<Verification, Error> {
        self.hub.verify_task(self.task_id, summary).await
    }

    async fn feed_back(
        &mut self,
        kind: FeedbackKind,
        answer: &str,
        message: String,
    ) -> Result<(), Error> {
        self.hub
            .feed_back(self.task_id, kind, answer, message)
            .await
    }

    async fn await_approval(&mut self, wait: Duration) -> Result<Approval, Error> {
        self.hub.await_decision(self.task_id, self.held, wait).await
    }
}
