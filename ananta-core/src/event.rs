//! Events the Hub publishes at every step, on a [`tokio::sync::broadcast`] bus.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::agent::{AgentInfo, AgentStatus};
use crate::feedback::Feedback;
use crate::ids::{AgentId, TaskId};
use crate::task::{Proposed, StepRecord, Task, TaskStatus};
use crate::verify::Verification;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A task was created.
    TaskCreated {
        /// The new task.
        task: Box<Task>,
    },
    /// A task changed (fields or status).
    TaskUpdated {
        /// The task after the change.
        task: Box<Task>,
    },
    /// A task was deleted.
    TaskDeleted {
        /// Its id.
        task_id: TaskId,
    },
    /// A task was assigned to an agent.
    TaskAssigned {
        /// The task.
        task_id: TaskId,
        /// The agent.
        agent: AgentId,
    },
    /// An agent proposed a step (or said the task is done).
    StepProposed {
        /// The task.
        task_id: TaskId,
        /// The answer.
        proposed: Box<Proposed>,
    },
    /// A step was executed.
    StepExecuted {
        /// The task.
        task_id: TaskId,
        /// The record of the step.
        step: Box<StepRecord>,
    },
    /// An answer of the model was fed back to it instead of run (unreadable, denied, rejected,
    /// repeated, or a failed acceptance check).
    StepFeedback {
        /// The task.
        task_id: TaskId,
        /// What the model is told.
        feedback: Box<Feedback>,
    },
    /// The acceptance checks of a task ran because its agent said it was finished.
    TaskVerified {
        /// The task.
        task_id: TaskId,
        /// The evidence (`passed: false` with no checks means unverified).
        verification: Box<Verification>,
    },
    /// A piece of the model's answer while it streams in (in-process workers).
    LlmDelta {
        /// The task.
        task_id: TaskId,
        /// The step being proposed.
        step: u32,
        /// The new text.
        text: String,
    },
    /// A piece of a running command's output (in-process workers; at most
    /// [`PROGRESS_OUTPUT_CAP`](crate::worker::PROGRESS_OUTPUT_CAP) characters a step).
    CommandOutput {
        /// The task.
        task_id: TaskId,
        /// The step running.
        step: u32,
        /// Which stream.
        stream: crate::exec::OutputStream,
        /// The new text.
        text: String,
    },
    /// A task's background step loop ([`Hub::start_run`](crate::Hub::start_run), `POST
    /// /tasks/{id}/run`) ended.
    TaskRunFinished {
        /// The task.
        task_id: TaskId,
        /// What the run did and why it stopped.
        report: Box<crate::steps::StepReport>,
        /// The error that ended it, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An agent registered (or re-registered).
    AgentRegistered {
        /// The agent.
        agent: Box<AgentInfo>,
    },
    /// An agent went online or offline.
    AgentStatusChanged {
        /// The agent.
        agent: AgentId,
        /// Its new status.
        status: AgentStatus,
    },
    /// An orchestration run started, or was resumed by a restarted Hub.
    RunStarted {
        /// The run's own task.
        run_id: TaskId,
        /// Tasks in its plan.
        tasks: usize,
        /// Of those, finished before (by the interrupted run); they are not run again.
        finished: usize,
        /// Whether this is a resumed run.
        resumed: bool,
    },
    /// An orchestration run ended.
    RunFinished {
        /// The run's own task.
        run_id: TaskId,
        /// Its final status: `done`, `failed` or `cancelled`.
        status: TaskStatus,
        /// Why it did not finish, when it did not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A task of a run started.
    NodeStarted {
        /// The run.
        run_id: TaskId,
        /// The task on the board.
        task_id: TaskId,
        /// Its id in the plan.
        node: String,
        /// The agent working on it.
        agent: AgentId,
    },
    /// A task of a run failed transiently and is tried again.
    NodeRetried {
        /// The run.
        run_id: TaskId,
        /// The task on the board.
        task_id: TaskId,
        /// Its id in the plan.
        node: String,
        /// Attempts made so far.
        attempt: u32,
        /// The error of the last attempt.
        error: String,
    },
    /// A task of a run finished; its output is stored.
    NodeCompleted {
        /// The run.
        run_id: TaskId,
        /// The task on the board.
        task_id: TaskId,
        /// Its id in the plan.
        node: String,
        /// Attempts it took.
        attempts: u32,
        /// Characters of its output.
        output_chars: usize,
    },
    /// A task of a run failed for good.
    NodeFailed {
        /// The run.
        run_id: TaskId,
        /// The task on the board.
        task_id: TaskId,
        /// Its id in the plan.
        node: String,
        /// The last error.
        error: String,
    },
    /// A running task of a run was cancelled.
    NodeCancelled {
        /// The run.
        run_id: TaskId,
        /// The task on the board.
        task_id: TaskId,
        /// Its id in the plan.
        node: String,
    },
}

impl EventKind {
    /// Whether the event is live progress (`llm_delta`, `command_output`): many, small, and
    /// not kept in any log.
    pub fn is_progress(&self) -> bool {
        matches!(self, Self::LlmDelta { .. } | Self::CommandOutput { .. })
    }

    /// The orchestration run the event belongs to: the run's own task for run events, the
    /// run of the task for node events.
    pub fn run_id(&self) -> Option<TaskId> {
        match self {
            Self::RunStarted { run_id, .. }
            | Self::RunFinished { run_id, .. }
            | Self::NodeStarted { run_id, .. }
            | Self::NodeRetried { run_id, .. }
            | Self::NodeCompleted { run_id, .. }
            | Self::NodeFailed { run_id, .. }
            | Self::NodeCancelled { run_id, .. } => Some(*run_id),
            _ => None,
        }
    }

    /// The task the event is about, when it is about one.
    pub fn task_id(&self) -> Option<crate::ids::TaskId> {
        match self {
            Self::TaskCreated { task } | Self::TaskUpdated { task } => Some(task.id),
            Self::TaskDeleted { task_id }
            | Self::TaskAssigned { task_id, .. }
            | Self::StepProposed { task_id, .. }
            | Self::StepExecuted { task_id, .. }
            | Self::StepFeedback { task_id, .. }
            | Self::LlmDelta { task_id, .. }
            | Self::TaskRunFinished { task_id, .. }
            | Self::CommandOutput { task_id, .. }
            | Self::TaskVerified { task_id, .. }
            | Self::NodeStarted { task_id, .. }
            | Self::NodeRetried { task_id, .. }
            | Self::NodeCompleted { task_id, .. }
            | Self::NodeFailed { task_id, .. }
            | Self::NodeCancelled { task_id, .. } => Some(*task_id),
            Self::RunStarted { run_id, .. } | Self::RunFinished { run_id, .. } => Some(*run_id),
            Self::AgentRegistered { .. } | Self::AgentStatusChanged { .. } => None,
        }
    }

    /// The event's type as written in JSON (`task_created`, `agent_status_changed`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::TaskCreated { .. } => "task_created",
            Self::TaskUpdated { .. } => "task_updated",
            Self::TaskDeleted { .. } => "task_deleted",
            Self::TaskAssigned { .. } => "task_assigned",
            Self::StepProposed { .. } => "step_proposed",
            Self::StepExecuted { .. } => "step_executed",
            Self::StepFeedback { .. } => "step_feedback",
            Self::LlmDelta { .. } => "llm_delta",
            Self::TaskRunFinished { .. } => "task_run_finished",
            Self::CommandOutput { .. } => "command_output",
            Self::TaskVerified { .. } => "task_verified",
            Self::AgentRegistered { .. } => "agent_registered",
            Self::AgentStatusChanged { .. } => "agent_status_changed",
            Self::RunStarted { .. } => "run_started",
            Self::RunFinished { .. } => "run_finished",
            Self::NodeStarted { .. } => "node_started",
            Self::NodeRetried { .. } => "node_retried",
            Self::NodeCompleted { .. } => "node_completed",
            Self::NodeFailed { .. } => "node_failed",
            Self::NodeCancelled { .. } => "node_cancelled",
        }
    }
}

/// An event with its time and a sequence number (per bus, starting at 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Sequence number on this bus.
    pub seq: u64,
    /// When it was published.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A broadcast bus of [`Event`]s. Slow subscribers miss old events (they get
/// `RecvError::Lagged`) instead of slowing the Hub down.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl EventBus {
    /// A bus that buffers up to `capacity` events per subscriber (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            seq: Default::default(),
        }
    }

    /// Publishes an event; without subscribers it is dropped.
    pub fn publish(&self, kind: EventKind) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        // An error only means there is no subscriber right now.
        let _ = self.sender.send(Event {
            seq,
            at: Utc::now(),
            kind,
        });
    }

    /// A new subscriber that receives events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TaskId;

    #[test]
    fn numbered_events_and_slow_subscribers_lag_instead_of_blocking() {
        let bus = EventBus::new(2);
        bus.publish(EventKind::TaskDeleted {
            task_id: TaskId::new(),
        }); // nobody listens: dropped
        let mut rx = bus.subscribe();
        for _ in 0..5 {
            bus.publish(EventKind::TaskDeleted {
                task_id: TaskId::new(),
            });
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
        let seqs: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            seqs,
            [5, 6],
            "the newest events survive, numbered from the bus's start"
        );
    }

    #[test]
    fn events_serialize_with_a_type_tag() {
        let event = Event {
            seq: 1,
            at: Utc::now(),
            kind: EventKind::AgentStatusChanged {
                agent: crate::ids::AgentId::new("w1").unwrap(),
                status: AgentStatus::Offline,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "agent_status_changed");
        assert_eq!(event.kind.name(), "agent_status_changed");
        assert_eq!(event.kind.task_id(), None);
        assert_eq!(json["status"], "offline");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
