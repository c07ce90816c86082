//! Per-task logs: the original Ananta's `terminal_log.jsonl` entries.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, TaskId};

/// Whether an entry records something going into an agent (a prompt, a command) or coming
/// out (a proposal, command output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the agent / the shell.
    In,
    /// Out of the agent / the shell.
    Out,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogEntry {
    /// Position in the store's log, assigned on append (0 before). Strictly increasing.
    #[serde(default)]
    pub seq: u64,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The agent involved.
    #[serde(default)]
    pub agent: Option<AgentId>,
    /// The task involved.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// The step index (1-based) the entry belongs to.
    #[serde(default)]
    pub step: Option<u32>,
    /// In or out.
    pub direction: Direction,
    /// What kind of entry (`prompt`, `proposal`, `command`, `output`, `error`, `status`).
    pub kind: String,
    /// The content.
    pub payload: serde_json::Value,
}

impl LogEntry {
    /// A new entry stamped now.
    pub fn new(direction: Direction, kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            seq: 0,
            timestamp: Utc::now(),
            agent: None,
            task_id: None,
            step: None,
            direction,
            kind: kind.into(),
            payload,
        }
    }

    /// Sets the task.
    pub fn task(mut self, task: TaskId) -> Self {
        self.task_id = Some(task);
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: Option<AgentId>) -> Self {
        self.agent = agent;
        self
    }

    /// Sets the step.
    pub fn step(mut self, step: u32) -> Self {
        self.step = Some(step);
        self
    }
}

/// Which log entries to read. Results are in ascending `seq` order; with a `limit`, the
/// *latest* `limit` entries that match (like the original Ananta's `/logs?limit=`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LogQuery {
    /// Only entries of this task.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// Only entries with `seq` below this (for paging backwards).
    #[serde(default)]
    pub before_seq: Option<u64>,
    /// At most this many entries (the latest ones).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl LogQuery {
    /// All entries of one task.
    pub fn task(task: TaskId) -> Self {
        Self {
            task_id: Some(task),
            ..Self::default()
        }
    }

    /// Limits the result to the latest `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Applies the query to entries held in ascending `seq` order: the latest `limit` matching
    /// entries, still ascending. In-memory logs (the Worker's, `MemoryStore`) read through it.
    pub fn select<'a, I>(&self, entries: I) -> Vec<LogEntry>
    where
        I: IntoIterator<Item = &'a LogEntry>,
        I::IntoIter: DoubleEndedIterator,
    {
        let mut out: Vec<LogEntry> = entries
            .into_iter()
            .rev()
            .filter(|e| self.matches(e))
            .take(self.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Whether `entry` passes the filters (ignoring `limit`).
    pub fn matches(&self, entry: &LogEntry) -> bool {
        self.task_id.is_none_or(|t| entry.task_id == Some(t))
            && self.before_seq.is_none_or(|b| entry.seq < b)
    }
}
