//! A task's status and the one table of the moves between statuses. A leaf of the crate:
//! [`TaskStatus`] and [`TransitionError`] depend on nothing but ids, so the task model and the
//! errors can both use them.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::TaskId;

/// Where a task stands on the board.
///
/// The original Ananta's board columns are `backlog`, `todo`, `in_progress` and `done`; Ananta adds
/// `proposing` (an agent is asking its LLM for the next step), `blocked` (waiting on something
/// outside, e.g. a human), `review` (the agent says it finished but no acceptance check proved
/// it; a human decides), `failed` and `cancelled`.
///
/// # Transition table
///
/// Staying in the same status is always allowed (a no-op). Otherwise:
///
/// | from          | allowed targets                                                  |
/// |---------------|------------------------------------------------------------------|
/// | `backlog`     | `todo`, `in_progress`, `cancelled`                               |
/// | `todo`        | `backlog`, `in_progress`, `proposing`, `blocked`, `cancelled`    |
/// | `in_progress` | `todo`, `proposing`, `blocked`, `review`, `done`, `failed`, `cancelled` |
/// | `proposing`   | `todo`, `in_progress`, `blocked`, `review`, `done`, `failed`, `cancelled` |
/// | `blocked`     | `todo`, `in_progress`, `failed`, `cancelled`                     |
/// | `review`      | `todo`, `in_progress` (reopen), `done`, `failed`, `cancelled`    |
/// | `done`        | `todo` (reopen)                                                  |
/// | `failed`      | `todo` (retry), `cancelled`                                      |
/// | `cancelled`   | `backlog`, `todo` (reopen)                                       |
///
/// [`TaskStatus::can_transition_to`] is the one place this table lives; every store and the
/// Hub go through [`TaskStatus::check_transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not yet planned.
    #[default]
    Backlog,
    /// Planned, ready to be picked up.
    Todo,
    /// An agent works on it.
    InProgress,
    /// An agent is asking its LLM for the next step.
    Proposing,
    /// Waiting on something outside (a human approval, another task).
    Blocked,
    /// The agent says it finished, but no acceptance check verified it: a human accepts it
    /// (`done`), sends it back (`todo`, `in_progress`) or fails it.
    Review,
    /// Finished successfully.
    Done,
    /// Finished unsuccessfully.
    Failed,
    /// Abandoned.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in board order.
    pub const ALL: [TaskStatus; 9] = [
        Self::Backlog,
        Self::Todo,
        Self::InProgress,
        Self::Proposing,
        Self::Blocked,
        Self::Review,
        Self::Done,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The snake_case name used in JSON and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Backlog => "backlog",
            Self::Todo => "todo",
            Self::InProgress => "in_progress",
            Self::Proposing => "proposing",
            Self::Blocked => "blocked",
            Self::Review => "review",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the table allows moving from `self` to `to` (see the type's docs).
    pub const fn can_transition_to(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        if self as u8 == to as u8 {
            return true;
        }
        matches!(
            (self, to),
            (Backlog, Todo | InProgress | Cancelled)
                | (Todo, Backlog | InProgress | Proposing | Blocked | Cancelled)
                | (
                    InProgress,
                    Todo | Proposing | Blocked | Review | Done | Failed | Cancelled
                )
                | (
                    Proposing,
                    Todo | InProgress | Blocked | Review | Done | Failed | Cancelled
                )
                | (Blocked, Todo | InProgress | Failed | Cancelled)
                | (Review, Todo | InProgress | Done | Failed | Cancelled)
                | (Done, Todo)
                | (Failed, Todo | Cancelled)
                | (Cancelled, Backlog | Todo)
        )
    }

    /// Checks a transition of `task`, returning a typed error when the table forbids it.
    pub fn check_transition(self, task: TaskId, to: TaskStatus) -> Result<(), TransitionError> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(TransitionError {
                task,
                from: self,
                to,
            })
        }
    }

    /// `in_progress`, `proposing` or `blocked`: an agent holds or may hold the task.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::InProgress | Self::Proposing | Self::Blocked)
    }

    /// `done`, `failed` or `cancelled`.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown task status {s:?}"))
    }
}

/// A status change that the transition table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task}: cannot move from {from} to {to}")]
pub struct TransitionError {
    /// The task.
    pub task: TaskId,
    /// Current status.
    pub from: TaskStatus,
    /// Requested status.
    pub to: TaskStatus,
}
