//! The [`Executor`] trait: run one shell command under limits and report what happened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ExecError;

/// One command to run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExecRequest {
    /// The shell script, run with `sh -c`.
    pub command: String,
    /// Working directory; the executor's default when `None`.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables, on top of the executor's allowlisted ones.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Timeout; the executor's default when `None`.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    #[serde(with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// The task's own workspace: the working directory when `cwd` is `None`, and, in a
    /// sandbox, the only place the command may write. An executor refuses a workspace outside
    /// its own working directory; `None` uses the executor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
}

impl ExecRequest {
    /// A request for `command` with the executor's defaults.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }

    /// Confines the command to a workspace (see [`ExecRequest::workspace`]).
    pub fn workspace(mut self, workspace: impl Into<PathBuf>) -> Self {
        self.workspace = Some(workspace.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Durations as fractional seconds on the wire.
mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            None => Ok(None),
            Some(secs) => Duration::try_from_secs_f64(secs)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What became of a command that ran.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExecOutcome {
    /// Exit code, when the process exited normally.
    pub exit_code: Option<i32>,
    /// Signal number, when the process was killed by a signal.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Standard output (invalid UTF-8 replaced by U+FFFD), at most the executor's cap.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, same rules.
    #[serde(default)]
    pub stderr: String,
    /// Whether stdout was cut at the cap.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the cap.
    #[serde(default)]
    pub stderr_truncated: bool,
    /// Whether the command was killed because it ran past its timeout.
    #[serde(default)]
    pub timed_out: bool,
    /// Wall-clock run time in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

impl ExecOutcome {
    /// Exit code 0, not timed out, not signalled.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.signal.is_none()
    }

    /// A short text of the outcome for a model: status line, stdout and stderr, each cut to
    /// `budget` characters (head and tail kept, with a marker saying how much was cut).
    pub fn summary_for_model(&self, budget: usize) -> String {
        let status = if self.timed_out {
            "timed out (killed)".to_string()
        } else if let Some(code) = self.exit_code {
            format!("exit code {code}")
        } else if let Some(sig) = self.signal {
            format!("killed by signal {sig}")
        } else {
            "unknown status".to_string()
        };
        let mut text = format!("[{status}]\n");
        if !self.stdout.is_empty() {
            text.push_str("stdout:\n");
            text.push_str(&head_tail(&self.stdout, budget));
            if self.stdout_truncated {
                text.push_str("\n[stdout was truncated at the executor's byte cap]");
            }
            text.push('\n');
        }
        if !self.stderr.is_empty() {
            text.push_str("stderr:\n");
            text.push_str(&head_tail(&self.stderr, budget));
            if self.stderr_truncated {
                text.push_str("\n[stderr was truncated at the executor's byte cap]");
            }
            text.push('\n');
        }
        if self.stdout.is_empty() && self.stderr.is_empty() {
            text.push_str("(no output)\n");
        }
        text
    }
}

/// Keeps the head and the tail of `text` within `budget` characters, with a marker in between
/// saying how many characters were cut.
pub fn head_tail(text: &str, budget: usize) -> String {
    let total = text.chars().count();
    if total <= budget {
        return text.to_string();
    }
    let head_len = budget / 2;
    let tail_len = budget - head_len;
    let head: String = text.chars().take(head_len).collect();
    let tail: String = text.chars().skip(total - tail_len).collect();
    format!(
        "{head}\n[… {} characters cut …]\n{tail}",
        total - head_len - tail_len
    )
}

/// What a [`CommandGate`] decides about a command before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Run it.
    Allow,
    /// Run it only once a human approved it (see `Hub::approve`).
    NeedsApproval {
        /// Why, one reason per part of the command that needs a look.
        reasons: Vec<String>,
    },
    /// Never run it.
    Deny {
        /// The rule that forbids it.
        rule: String,
        /// Why.
        reason: String,
    },
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }

    /// Whether this is [`Decision::Deny`].
    pub fn is_deny(&self) -> bool {
        matches!(self, Self::Deny { .. })
    }
}

/// Decides whether a command may run, needs a human's approval, or is refused.
///
/// A [`Worker`](crate::worker::Worker) with a gate asks it before every command it runs:
/// a refused command fails with [`ExecError::Denied`], one that needs approval with
/// [`ExecError::NeedsApproval`] (a Hub then leaves the task `blocked` until
/// `Hub::approve` or `Hub::reject`). `ananta_exec::CommandPolicy` is the parsing policy
/// that implements it; a closure `Fn(&str) -> Decision` does too.
///
/// ```
/// use ananta_core::exec::{CommandGate, Decision};
///
/// let gate = |command: &str| {
///     if command.starts_with("rm ") {
///         Decision::NeedsApproval { reasons: vec!["removes files".into()] }
///     } else {
///         Decision::Allow
///     }
/// };
/// assert_eq!(gate.decide("ls"), Decision::Allow);
/// ```
pub trait CommandGate: Send + Sync {
    /// The decision for `command` (a whole shell script).
    fn decide(&self, command: &str) -> Decision;
}

impl<F> CommandGate for F
where
    F: Fn(&str) -> Decision + Send + Sync,
{
    fn decide(&self, command: &str) -> Decision {
        self(command)
    }
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of output, streamed while the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Where it came from.
    pub stream: OutputStream,
    /// The raw bytes (may split UTF-8 sequences).
    pub data: Vec<u8>,
}

/// Where an executor streams output chunks; a full or closed channel never blocks the command.
pub type OutputSink = tokio::sync::mpsc::Sender<OutputChunk>;

/// Runs shell commands.
///
/// Implementations: `ananta_exec::ShellExecutor` (real processes), `MockExecutor` (feature
/// `testing`). A command that runs and fails is an `Ok(ExecOutcome)`; `Err` means it could not be
/// run or supervised at all.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `request`, streaming output chunks to `output` when given.
    async fn run(
        &self,
        request: ExecRequest,
        output: Option<OutputSink>,
    ) -> Result<ExecOutcome, ExecError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tail_marks_what_it_cuts() {
        assert_eq!(head_tail("short", 10), "short");
        let long: String = "a".repeat(50) + &"z".repeat(50);
        let cut = head_tail(&long, 20);
        assert!(cut.starts_with("aaaaaaaaaa\n[… 80 characters cut …]\n"));
        assert!(cut.ends_with("zzzzzzzzzz"));
        // multi-byte characters are never split
        let cut = head_tail(&"é".repeat(30), 10);
        assert!(cut.contains("20 characters cut"));
    }

    #[test]
    fn summary_names_status_and_truncation() {
        let outcome = ExecOutcome {
            exit_code: Some(2),
            stderr: "boom".into(),
            stderr_truncated: true,
            ..ExecOutcome::default()
        };
        let s = outcome.summary_for_model(100);
        assert!(s.contains("exit code 2") && s.contains("boom") && s.contains("truncated"));
        assert!(!outcome.success());
        let timed = ExecOutcome {
            timed_out: true,
            ..ExecOutcome::default()
        };
        assert!(timed.summary_for_model(10).contains("timed out"));
    }
}
