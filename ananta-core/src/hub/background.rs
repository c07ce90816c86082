//! [`Hub::start_run`]: the autonomous loop started in the background, for hosts and the HTTP
//! route `POST /tasks/{id}/run` that answer at once and report progress as events.

use super::Hub;
use crate::error::Error;
use crate::event::EventKind;
use crate::ids::TaskId;
use crate::steps::StepLimits;
use crate::task::TaskStatus;

impl Hub {
    /// Starts [`Hub::run`] on `task_id` in the background and returns at once. Progress comes
    /// as events ([`EventKind::StepProposed`], [`EventKind::LlmDelta`], …) and the end as
    /// [`EventKind::TaskRunFinished`] with the report. `limits.cancel` (or
    /// [`Hub::stop_run`]) stops it.
    ///
    /// Refused, before anything starts, when the task does not exist, has no agent, is
    /// finished (`done`, `failed`, `cancelled`: reopen it first) or already runs in this
    /// process ([`Error::RunInProgress`]).
    pub async fn start_run(&self, task_id: TaskId, limits: StepLimits) -> Result<(), Error> {
        let task = self.inner.store.get_task(task_id).await?;
        if task.assigned_agent.is_none() {
            return Err(Error::NotAssigned(task_id));
        }
        if task.status != TaskStatus::InProgress {
            task.status
                .check_transition(task_id, TaskStatus::InProgress)?;
        }
        {
            let mut runs = self
                .inner
                .task_runs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if runs.contains_key(&task_id) {
                return Err(Error::RunInProgress(task_id));
            }
            runs.insert(task_id, limits.cancel.clone());
        }
        let hub = self.clone();
        tokio::spawn(async move {
            let result = hub.run(task_id, &limits).await;
            hub.inner
                .task_runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&task_id);
            let (report, error) = match result {
                Ok(report) => (report, None),
                Err(e) => {
                    tracing::warn!(task = %task_id, error = %e, "a background run failed");
                    (e.report, Some(e.error.to_string()))
                }
            };
            hub.publish(EventKind::TaskRunFinished {
                task_id,
                report: Box::new(report),
                error,
            });
        });
        Ok(())
    }

    /// Cancels the background run of `task_id` in this process; `false` when none runs.
    pub fn stop_run(&self, task_id: TaskId) -> bool {
        let runs = self
            .inner
            .task_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match runs.get(&task_id) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether a background run of `task_id` is going on in this process.
    pub fn is_running(&self, task_id: TaskId) -> bool {
        self.inner
            .task_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&task_id)
    }
}
