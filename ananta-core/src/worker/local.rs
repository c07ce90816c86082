//! [`Worker::run`]: the step loop on a task the caller holds in memory (no Hub, no store).

use std::time::Duration;

use chrono::Utc;

use super::Worker;
use crate::error::{AgentError, Error, ExecError};
use crate::exec::ExecRequest;
use crate::feedback::{Feedback, FeedbackKind, push_bounded};
use crate::ids::TaskId;
use crate::steps::{Approval, RunError, StepDriver, StepLimits, StepReport, drive};
use crate::task::{Proposal, Proposed, StepRecord, Task, TaskStatus};
use crate::template::Template;
use crate::verify::{CheckResult, Verification};

impl Worker {
    /// Works on `task` autonomously: propose → execute → feed the output back, until the task
    /// is finished and verified, a budget in `limits` is used up, `limits.cancel` fires, the
    /// model is stuck, or the gate holds a command for approval (the proposal then stays on
    /// `task` with its `needs_approval` reasons; run it with [`Worker::approve`]). Unreadable
    /// answers and denied commands are fed back to the model (see [`StepLimits`]).
    ///
    /// Steps, feedback and the verification evidence are written to `task` as they happen, so
    /// nothing is lost when it returns an error; the error carries the report. It does not
    /// change the task's status (a Hub does that).
    pub async fn run(
        &self,
        task: &mut Task,
        template: Option<&Template>,
        limits: &StepLimits,
    ) -> Result<StepReport, RunError> {
        let id = task.id;
        let mut driver = LocalDriver {
            worker: self,
            task,
            template,
        };
        let report = drive(&mut driver, limits).await?;
        if matches!(report.stop, crate::steps::StopReason::Done { .. })
            && let Err(error) = self.release_workspace(id, TaskStatus::Done).await
        {
            return Err(RunError {
                report,
                error: error.into(),
            });
        }
        Ok(report)
    }

    /// Runs `task`'s acceptance checks (its own and its template's) in its workspace, each
    /// through the gate (as approved: a `Deny` still refuses it) and the executor, and returns
    /// the evidence; `summary` is the model's. A task without checks gets an unverified result
    /// (`passed: false`, no checks).
    pub async fn verify(
        &self,
        task: &Task,
        template: Option<&Template>,
        summary: &str,
    ) -> Verification {
        let checks = crate::verify::checks_of(task, template);
        let mut results = Vec::with_capacity(checks.len());
        for check in &checks {
            results.push(self.run_check(task, check).await);
        }
        Verification::new(summary, results)
    }

    async fn run_check(&self, task: &Task, check: &str) -> CheckResult {
        // As approved: only the gate's `Deny` refuses a check.
        if let Some((_, refusal)) = self.gate_refusal(check, true) {
            return CheckResult::not_run(check, refusal.to_string());
        }
        let request = match self.exec_request(task, check.to_string()).await {
            Ok(r) => r,
            Err(e) => return CheckResult::not_run(check, e.to_string()),
        };
        match self.inner.executor.run(request, None).await {
            Ok(outcome) => CheckResult::from_outcome(check, &outcome),
            Err(e) => CheckResult::not_run(check, e.to_string()),
        }
    }

    /// The request that runs `command` for `task`, in the task's workspace (created on first
    /// use).
    pub(super) async fn exec_request(
        &self,
        task: &Task,
        command: String,
    ) -> Result<ExecRequest, AgentError> {
        let request = ExecRequest::new(command);
        Ok(
            match self.inner.settings.workspaces.prepare(task.id).await? {
                Some(dir) => request.workspace(dir),
                None => request,
            },
        )
    }

    /// Where `task` runs: its own directory or worktree, or `None` for the executor's working
    /// directory ([`Workspaces::Shared`](super::Workspaces::Shared)).
    pub fn workspace_of(&self, task: TaskId) -> Option<std::path::PathBuf> {
        self.inner.settings.workspaces.path_of(task)
    }

    /// Removes `task`'s workspace now, whatever the cleanup policy (a worktree's branch stays).
    pub async fn remove_workspace(&self, task: TaskId) -> Result<(), AgentError> {
        self.inner.settings.workspaces.remove(task).await
    }

    /// Applies the cleanup policy to a task that reached `status`.
    pub(super) async fn release_workspace(
        &self,
        task: TaskId,
        status: TaskStatus,
    ) -> Result<(), AgentError> {
        if status == TaskStatus::Done
            && self.inner.settings.workspaces.cleanup_policy() == super::Cleanup::RemoveWhenDone
        {
            self.remove_workspace(task).await?;
        }
        Ok(())
    }
}

struct LocalDriver<'a> {
    worker: &'a Worker,
    task: &'a mut Task,
    template: Option<&'a Template>,
}

impl StepDriver for LocalDriver<'_> {
    async fn propose(&mut self) -> Result<Proposed, Error> {
        Ok(self.worker.propose(self.task, self.template).await?)
    }

    async fn execute(&mut self, proposal: Proposal) -> Result<StepRecord, Error> {
        self.task.proposal = Some(proposal);
        let step = match self.worker.execute(self.task, None).await {
            Ok(step) => step,
            Err(AgentError::Exec(ExecError::NeedsApproval { reasons })) => {
                // The proposal stays on the task, marked, for `Worker::approve`.
                if let Some(p) = &mut self.task.proposal {
                    p.needs_approval = reasons.clone();
                }
                return Err(AgentError::Exec(ExecError::NeedsApproval { reasons }).into());
            }
            Err(e) => return Err(e.into()),
        };
        self.task.proposal = None;
        self.task.steps.push(step.clone());
        self.task.updated_at = Utc::now();
        Ok(step)
    }

    async fn verify(&mut self, summary: &str) -> Result<Verification, Error> {
        let verification = self.worker.verify(self.task, self.template, summary).await;
        self.task.verification = Some(verification.clone());
        self.task.updated_at = Utc::now();
        Ok(verification)
    }

    async fn feed_back(
        &mut self,
        kind: FeedbackKind,
        answer: &str,
        message: String,
    ) -> Result<(), Error> {
        let entry = Feedback::new(self.task.steps.len(), kind, answer, message);
        push_bounded(&mut self.task.feedback, entry);
        self.task.proposal = None;
        self.task.updated_at = Utc::now();
        Ok(())
    }

    async fn await_approval(&mut self, _wait: Duration) -> Result<Approval, Error> {
        // Nobody can approve a task held only in this call's memory.
        Ok(Approval::Pending)
    }
}
