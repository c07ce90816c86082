//! What the step loop tells the model when an answer did not become a step.
//!
//! An unreadable answer, a command the gate denied, a command a human rejected, a repeated
//! command or a failed acceptance check does not end the run: it becomes a [`Feedback`] on the
//! task, which the next prompt shows after the step it followed, and the model tries again
//! within the run's budget.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most feedback entries kept on a task (older ones are dropped first).
pub const MAX_FEEDBACK: usize = 64;

/// Why an answer was fed back instead of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// The answer held no command the parser could read (prose, cut off, an empty fence).
    Unreadable,
    /// The gate denied the command.
    Denied,
    /// A human rejected the command.
    Rejected,
    /// The same command again, right after it ran with nothing changed in between.
    Repeated,
    /// The model said the task is finished, but an acceptance check failed.
    CheckFailed,
}

impl FeedbackKind {
    /// The snake_case name used in JSON, logs and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Denied => "denied",
            Self::Rejected => "rejected",
            Self::Repeated => "repeated",
            Self::CheckFailed => "check_failed",
        }
    }
}

/// One answer that was fed back to the model instead of becoming a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Feedback {
    /// How many steps the task had when it happened (the prompt shows it after that step).
    pub after_step: u32,
    /// Why the answer was not run.
    pub kind: FeedbackKind,
    /// The model's answer as it came (empty when unknown).
    #[serde(default)]
    pub answer: String,
    /// What the model is told.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl Feedback {
    /// Feedback of `kind` after `after_step` steps.
    pub fn new(
        after_step: usize,
        kind: FeedbackKind,
        answer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            after_step: u32::try_from(after_step).unwrap_or(u32::MAX),
            kind,
            answer: answer.into(),
            message: message.into(),
            at: Utc::now(),
        }
    }
}

/// Appends `entry` to `list`, dropping the oldest beyond [`MAX_FEEDBACK`].
pub(crate) fn push_bounded(list: &mut Vec<Feedback>, entry: Feedback) {
    list.push(entry);
    if list.len() > MAX_FEEDBACK {
        let extra = list.len() - MAX_FEEDBACK;
        list.drain(..extra);
    }
}
