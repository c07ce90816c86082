//! The Hub's step loop: assignment, forwarding propose and execute to the assigned agent,
//! approvals, the autonomous run and the task's log.

use std::sync::Arc;

use serde_json::json;

use super::Hub;
use crate::agent::{AgentClient, AgentStatus, ExecuteRequest, ProposeRequest};
use crate::error::{AgentError, Error, ExecError};
use crate::event::EventKind;
use crate::feedback::{Feedback, FeedbackKind, push_bounded};
use crate::ids::{AgentId, TaskId};
use crate::log::{Direction, LogEntry, LogQuery};
use crate::task::{Proposal, Proposed, StepRecord, Task, TaskStatus, TaskUpdate};
use crate::worker::output_payload;

impl Hub {
    /// Assigns a task to a registered agent that is not offline.
    pub async fn assign(&self, task_id: TaskId, agent: &AgentId) -> Result<Task, Error> {
        let info = self.inner.registry.get(agent.clone()).await?;
        if info.status == AgentStatus::Offline {
            return Err(Error::AgentOffline(agent.clone()));
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
        self.publish(EventKind::TaskAssigned {
            task_id,
            agent: agent.clone(),
        });
        self.publish(EventKind::TaskUpdated {
            task: Box::new(task.clone()),
        });
        Ok(task)
    }

    /// The assigned agent and its client, refusing offline agents (or, when the hub was
    /// built with [`HubBuilder::reassign_offline`], handing the task to the best-matching
    /// online agent).
    pub(super) async fn assigned(
        &self,
        task: &Task,
    ) -> Result<(AgentId, Arc<dyn AgentClient>), Error> {
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
            self.assign(task.id, &next).await?;
            let client = self.client(&next)?;
            return Ok((next, client));
        }
        let client = self.client(&agent)?;
        Ok((agent, client))
    }

    /// The task as stored now when [`Hub::assigned`] handed it to another agent.
    pub(super) async fn reread_if_reassigned(
        &self,
        task: Task,
        agent: &AgentId,
    ) -> Result<Task, Error> {
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
    pub(super) async fn apply(&self, task: &Task, update: TaskUpdate) -> Result<Task, Error> {
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
        self.update_fresh(task_id, |current| {
            let mut update = TaskUpdate::default();
            if current.status == TaskStatus::Proposing {
                update.status = Some(TaskStatus::InProgress);
            }
            if proposal.is_some()
                && (current.status.is_active() || current.status == TaskStatus::Todo)
            {
                update.proposal = Some(proposal.clone());
            }
            (update != TaskUpdate::default()).then_some(update)
        })
        .await
        .map(|(task, _)| task)
    }

    /// Applies the update `change` makes of the task as stored now, fenced by that version and
    /// retried a few times when another writer got there first; `None` from `change` leaves
    /// the task as it is. Returns the task and whether it changed; publishes nothing (see
    /// [`Hub::modify`]).
    async fn update_fresh(
        &self,
        task_id: TaskId,
        change: impl Fn(&Task) -> Option<TaskUpdate>,
    ) -> Result<(Task, bool), Error> {
        let mut attempts = 0;
        loop {
            let current = self.inner.store.get_task(task_id).await?;
            let Some(update) = change(&current) else {
                return Ok((current, false));
            };
            match self
                .inner
                .store
                .update_task(task_id, update, Some(current.version))
                .await
            {
                Err(crate::error::StoreError::VersionConflict { .. }) if attempts < 5 => {
                    attempts += 1;
                }
                other => return Ok((other?, true)),
            }
        }
    }

    /// [`Hub::update_fresh`], then the changed task is published.
    pub(crate) async fn modify(
        &self,
        task_id: TaskId,
        change: impl Fn(&Task) -> Option<TaskUpdate>,
    ) -> Result<Task, Error> {
        let (task, changed) = self.update_fresh(task_id, change).await?;
        if changed {
            self.publish(EventKind::TaskUpdated {
                task: Box::new(task.clone()),
            });
        }
        Ok(task)
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
        // The model reads the rejection before it proposes again.
        let command = task
            .proposal
            .as_ref()
            .map(|p| p.command.clone())
            .unwrap_or_default();
        let answer = task
            .proposal
            .as_ref()
            .map(|p| p.raw.clone())
            .unwrap_or_default();
        let mut feedback = task.feedback.clone();
        let why = if reason.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", reason.trim())
        };
        push_bounded(
            &mut feedback,
            Feedback::new(
                task.steps.len(),
                FeedbackKind::Rejected,
                answer,
                format!("A human rejected `{command}`{why}. It did not run. Choose another way."),
            ),
        );
        let update = TaskUpdate {
            status: Some(TaskStatus::InProgress),
            proposal: Some(None),
            feedback: Some(feedback),
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

    /// Log entries, e.g. `LogQuery::task(id).limit(50)`.
    pub async fn logs(&self, query: LogQuery) -> Result<Vec<crate::log::LogEntry>, Error> {
        Ok(self.inner.store.logs(query).await?)
    }
}
