//! Acceptance checks: how a task proves it is finished.
//!
//! A task may carry [`checks`](crate::Task::checks): shell commands (`test -f notes/hello.txt`,
//! `cargo test`) that must all exit 0 before the task counts as `done`. When the model says the
//! task is finished, the loop runs them in the task's workspace through the same executor,
//! gate and sandbox as every step. The result is a [`Verification`] stored on the task as its
//! evidence. A failed check is fed back to the model; a task without checks ends in
//! [`TaskStatus::Review`](crate::TaskStatus::Review) ("unverified") unless the host trusts the
//! model ([`StepLimits::trust_model`](crate::StepLimits::trust_model)).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;
use crate::exec::{ExecOutcome, head_tail};

/// Most checks on one task.
pub const MAX_CHECKS: usize = 32;
/// Most bytes of one check command.
pub const MAX_CHECK_LEN: usize = 4 * 1024;
/// Characters of each stream of a check kept as evidence.
const EVIDENCE_CHARS: usize = 2_000;

/// Checks the acceptance commands a caller gives.
pub fn validate_checks(checks: &[String]) -> Result<(), InvalidInput> {
    if checks.len() > MAX_CHECKS {
        return Err(InvalidInput::new(
            "checks",
            format!("more than {MAX_CHECKS} checks"),
        ));
    }
    if let Some(bad) = checks.iter().find(|c| c.trim().is_empty()) {
        return Err(InvalidInput::new(
            "checks",
            format!("check {bad:?} is blank"),
        ));
    }
    if checks
        .iter()
        .any(|c| c.len() > MAX_CHECK_LEN || c.contains('\0'))
    {
        return Err(InvalidInput::new(
            "checks",
            format!("a check is longer than {MAX_CHECK_LEN} bytes or holds a NUL byte"),
        ));
    }
    Ok(())
}

/// The checks `task` must pass: its own, then its template's (without repeats).
pub fn checks_of(task: &crate::Task, template: Option<&crate::Template>) -> Vec<String> {
    let mut checks = task.checks.clone();
    for check in template.map(|t| t.checks.as_slice()).unwrap_or_default() {
        if !checks.contains(check) {
            checks.push(check.clone());
        }
    }
    checks
}

/// What one acceptance check did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// The check's command.
    pub command: String,
    /// Whether it passed (ran and exited 0).
    pub passed: bool,
    /// Its exit code (`None` when it did not run or was killed).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Head and tail of its stdout, then stderr; or why it could not run.
    #[serde(default)]
    pub output: String,
    /// How long it ran.
    #[serde(default)]
    pub duration_ms: u64,
}

impl CheckResult {
    /// The result of a check that ran.
    pub fn from_outcome(command: impl Into<String>, outcome: &ExecOutcome) -> Self {
        let mut output = head_tail(&outcome.stdout, EVIDENCE_CHARS);
        let stderr = head_tail(&outcome.stderr, EVIDENCE_CHARS);
        if !stderr.trim().is_empty() {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str(&stderr);
        }
        if outcome.timed_out {
            output.push_str("\n(timed out)");
        }
        Self {
            command: command.into(),
            passed: outcome.exit_code == Some(0) && !outcome.timed_out,
            exit_code: outcome.exit_code,
            output,
            duration_ms: outcome.duration_ms,
        }
    }

    /// The result of a check that could not run (the gate refused it, the executor failed).
    pub fn not_run(command: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            passed: false,
            exit_code: None,
            output: why.into(),
            duration_ms: 0,
        }
    }
}

/// The evidence stored on a task when the model said it was finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    /// Whether every check passed (`false` when there were no checks: unverified).
    pub passed: bool,
    /// Each check's result, in order (empty: the task had no checks).
    pub checks: Vec<CheckResult>,
    /// The model's own summary.
    #[serde(default)]
    pub summary: String,
    /// When the checks ran.
    pub at: DateTime<Utc>,
}

impl Verification {
    /// The verification of a task whose `checks` produced `results`.
    pub fn new(summary: impl Into<String>, checks: Vec<CheckResult>) -> Self {
        Self {
            passed: !checks.is_empty() && checks.iter().all(|c| c.passed),
            checks,
            summary: summary.into(),
            at: Utc::now(),
        }
    }

    /// Whether the task had no checks at all.
    pub fn is_unverified(&self) -> bool {
        self.checks.is_empty()
    }

    /// What the model reads when a check failed: each failed check with its exit code and output.
    pub fn failure_text(&self) -> String {
        let mut text =
            String::from("You said the task is finished, but its acceptance checks failed:\n");
        for check in self.checks.iter().filter(|c| !c.passed) {
            let code = check
                .exit_code
                .map_or_else(|| "did not run".to_string(), |c| format!("exit {c}"));
            text.push_str(&format!("- `{}` ({code})", check.command));
            let output = check.output.trim();
            if !output.is_empty() {
                text.push_str(":\n");
                text.push_str(output);
            }
            text.push('\n');
        }
        text.push_str("Fix this, then say you are finished again.");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_needs_at_least_one_check_and_all_passing() {
        let ok = ExecOutcome {
            exit_code: Some(0),
            ..ExecOutcome::default()
        };
        let bad = ExecOutcome {
            exit_code: Some(1),
            stderr: "no such file".into(),
            ..ExecOutcome::default()
        };
        assert!(!Verification::new("s", vec![]).passed);
        assert!(Verification::new("s", vec![CheckResult::from_outcome("true", &ok)]).passed);
        let failed = Verification::new(
            "s",
            vec![
                CheckResult::from_outcome("true", &ok),
                CheckResult::from_outcome("test -f x", &bad),
            ],
        );
        assert!(!failed.passed);
        let text = failed.failure_text();
        assert!(text.contains("`test -f x` (exit 1)"), "{text}");
        assert!(text.contains("no such file"), "{text}");
        assert!(
            !text.contains("`true`"),
            "passing checks are not repeated: {text}"
        );
    }

    #[test]
    fn timed_out_check_fails() {
        let slow = ExecOutcome {
            exit_code: Some(0),
            timed_out: true,
            ..ExecOutcome::default()
        };
        assert!(!CheckResult::from_outcome("sleep 9", &slow).passed);
    }

    #[test]
    fn validation() {
        assert!(validate_checks(&["test -f a".into()]).is_ok());
        assert!(validate_checks(&[" ".into()]).is_err());
        assert!(validate_checks(&vec!["true".to_string(); MAX_CHECKS + 1]).is_err());
        assert!(validate_checks(&["a\0b".into()]).is_err());
    }
}
