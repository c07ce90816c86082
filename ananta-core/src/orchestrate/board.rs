//! The bridge between a run's pipeline and the board: connected Workers work on the run's
//! board tasks ([`BoardAgent`]), and every node's progress moves its board task and reaches
//! the event bus ([`BoardObserver`]).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::OUTPUT_LOG_KIND;
use crate::error::{AgentError, Error};
use crate::event::EventKind;
use crate::hub::Hub;
use crate::ids::{AgentId, TaskId};
use crate::log::{Direction, LogEntry};
use crate::pipeline::{
    NodeAgent, NodeInput, NodeOutput, PipelineObserver, agent_error, shell_output,
};
use crate::steps::StepLimits;
use crate::task::{TaskStatus, TaskUpdate};

/// A run's task worked on by an agent connected to the hub (a Worker registered with
/// [`Hub::register_agent`], in-process or remote): the board task gets the dependencies'
/// outputs in its description, then [`Hub::run`] drives propose → execute on it, so every
/// step is stored, logged and published on the task itself.
pub(super) struct BoardAgent {
    pub(super) hub: Hub,
    pub(super) task_id: TaskId,
    pub(super) max_steps: u32,
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
        // A plan's task that carries no acceptance checks passes on the model's "finished" as
        // its result; one with checks must pass them.
        let limits = StepLimits::steps(self.max_steps)
            .cancel(cancel)
            .trust_model(true);
        let report = self
            .hub
            .run(self.task_id, &limits)
            .await
            .map_err(|e| agent_error(e.error))?;
        let task = self.hub.get_task(self.task_id).await.map_err(agent_error)?;
        shell_output(report, task.steps.last())
    }
}

/// Keeps a run's tasks on the board in step with the pipeline, and publishes node events.
pub(super) struct BoardObserver {
    pub(super) hub: Hub,
    pub(super) run_id: TaskId,
    pub(super) nodes: HashMap<String, TaskId>,
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
