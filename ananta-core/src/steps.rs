//! The autonomous step loop shared by [`Worker::run`](crate::Worker::run) and
//! [`Hub::run`](crate::Hub::run).
//!
//! Each turn asks the model for the next action. A command runs and becomes a step; an answer
//! that cannot run (unreadable, denied by the gate, rejected by a human, the same command
//! again) is fed back to the model as a [`Feedback`](crate::feedback::Feedback) and the loop
//! goes on. When the model says it is finished, the task's acceptance checks run
//! ([`crate::verify`]); only passing checks end the run as [`StopReason::Done`]. Every turn
//! counts against `max_steps`, so a model that never gets it right still stops.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{AgentError, Error, ExecError, ProposalError};
use crate::feedback::FeedbackKind;
use crate::task::{Proposal, Proposed, StepRecord, TokenUsage};
use crate::verify::Verification;

/// Budgets, cancellation and the choices of an autonomous run.
#[derive(Debug, Clone)]
pub struct StepLimits {
    /// Most turns in this run: executed steps plus answers fed back to the model.
    pub max_steps: u32,
    /// Most tokens (prompt + completion, as reported by the provider) in this run. Answers
    /// that could not be read are not counted (their usage does not come back with the parse
    /// error); `max_steps` bounds them.
    pub max_tokens: Option<u64>,
    /// Cancels the run; a running command's process group is killed.
    pub cancel: CancellationToken,
    /// Whether a model's "finished" on a task without acceptance checks counts as `done`
    /// (default `false`: the run stops [`StopReason::Unverified`] and a Hub moves the task to
    /// `review`).
    pub trust_model: bool,
    /// How long a command held for a human waits inside the run for `Hub::approve` or
    /// `Hub::reject` (default 10 minutes). `None` stops the run with
    /// [`StopReason::AwaitingApproval`] at once, as before this existed. A [`Worker::run`]
    /// (no Hub) always stops there.
    ///
    /// [`Worker::run`]: crate::Worker::run
    pub approval_wait: Option<Duration>,
    /// Whether a command the gate denies ends the run with its error (default `false`: the
    /// denial is fed back to the model, which chooses another way).
    pub stop_on_denial: bool,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            max_steps: 10,
            max_tokens: None,
            cancel: CancellationToken::new(),
            trust_model: false,
            approval_wait: Some(Duration::from_secs(600)),
            stop_on_denial: false,
        }
    }
}

impl StepLimits {
    /// At most `max_steps` turns, no token budget.
    pub fn steps(max_steps: u32) -> Self {
        Self {
            max_steps,
            ..Self::default()
        }
    }

    /// Sets a token budget.
    pub fn max_tokens(mut self, tokens: u64) -> Self {
        self.max_tokens = Some(tokens);
        self
    }

    /// Uses this cancellation token.
    pub fn cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Trusts the model's "finished" on tasks without checks (see [`StepLimits::trust_model`]).
    pub fn trust_model(mut self, trust: bool) -> Self {
        self.trust_model = trust;
        self
    }

    /// How long a held command waits for a human inside the run; `None` stops the run instead.
    pub fn approval_wait(mut self, wait: Option<Duration>) -> Self {
        self.approval_wait = wait;
        self
    }

    /// Ends the run at a denied command instead of feeding the denial back.
    pub fn stop_on_denial(mut self, stop: bool) -> Self {
        self.stop_on_denial = stop;
        self
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The model said the task is finished and every acceptance check passed (or the task
    /// had none and [`StepLimits::trust_model`] was set).
    Done {
        /// Its summary.
        summary: String,
    },
    /// The model said the task is finished, but the task has no acceptance checks to prove
    /// it: a human should look (a Hub moves the task to `review`).
    Unverified {
        /// Its summary.
        summary: String,
    },
    /// The turn budget was used up.
    StepBudget,
    /// The token budget was used up.
    TokenBudget,
    /// The run was cancelled.
    Cancelled,
    /// The proposed command waits for a human's approval (the task stays `blocked` with its
    /// proposal until `Hub::approve` or `Hub::reject`).
    AwaitingApproval {
        /// Why it needs approval.
        reasons: Vec<String>,
    },
    /// The model kept proposing the command it had just run, after being told it changes
    /// nothing (a Hub fails the task).
    Stuck {
        /// The repeated command.
        command: String,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepReport {
    /// Why it stopped.
    pub stop: StopReason,
    /// Steps executed in this run (approved ones included).
    pub steps: u32,
    /// Answers fed back to the model instead of run (see [`crate::feedback`]).
    #[serde(default)]
    pub fed_back: u32,
    /// Tokens used in this run (those the provider reported).
    pub usage: TokenUsage,
    /// The evidence of the last time the model said it was finished in this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl StepReport {
    fn new() -> Self {
        Self {
            stop: StopReason::StepBudget,
            steps: 0,
            fed_back: 0,
            usage: TokenUsage::default(),
            verification: None,
        }
    }

    /// Turns taken: steps plus answers fed back.
    pub fn turns(&self) -> u32 {
        self.steps.saturating_add(self.fed_back)
    }
}

/// A run that ended with an error, with what it did before.
#[derive(Debug, thiserror::Error)]
#[error("run stopped after {} step(s): {error}", report.steps)]
pub struct RunError {
    /// What the run did before the error (its `stop` is the budget it had not reached).
    pub report: StepReport,
    /// The error.
    #[source]
    pub error: Error,
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        e.error
    }
}

/// How a wait for a human's decision ended.
pub(crate) enum Approval {
    /// Approved and executed.
    Executed,
    /// Rejected; the rejection is already on the task as feedback.
    Rejected,
    /// No decision in time, or the driver cannot wait: the run stops.
    Pending,
    /// The task left the loop (cancelled or failed by someone else).
    Abandoned,
}

/// One side of the loop: where proposals come from and where steps, feedback and evidence go.
pub(crate) trait StepDriver {
    async fn propose(&mut self) -> Result<Proposed, Error>;
    async fn execute(&mut self, proposal: Proposal) -> Result<StepRecord, Error>;
    /// Runs the task's checks, stores the evidence and returns it.
    async fn verify(&mut self, summary: &str) -> Result<Verification, Error>;
    /// Stores feedback for the model (and drops a pending proposal).
    async fn feed_back(
        &mut self,
        kind: FeedbackKind,
        answer: &str,
        message: String,
    ) -> Result<(), Error>;
    /// Waits up to `wait` for a human's decision on the held command.
    async fn await_approval(&mut self, wait: Duration) -> Result<Approval, Error>;
}

/// What the model reads when its answer could not be read.
pub(crate) fn unreadable_message(error: &ProposalError) -> String {
    match error {
        ProposalError::Empty => "Your answer was empty. Answer with exactly one action.".into(),
        ProposalError::InvalidToolCall { tool, message, .. } => {
            format!(
                "Your call of `{tool}` could not be used: {message}. Call one tool with valid arguments."
            )
        }
        ProposalError::NoCommand { raw, .. } => {
            let raw = raw.trim();
            let problem = if raw.contains('{') && crate::parse::first_object(raw).is_none() {
                "it was cut off before the JSON object closed; keep the answer short"
            } else if raw.contains("```") {
                "its code block holds no runnable command (tag shell blocks ```sh and Python blocks ```python)"
            } else {
                "it holds no command"
            };
            format!("Your answer could not be used: {problem}. Answer with exactly one action.")
        }
    }
}

fn unreadable(error: &Error) -> Option<(&str, String)> {
    let proposal = match error {
        Error::Agent(AgentError::Proposal(p)) => p,
        _ => return None,
    };
    let raw = match proposal {
        ProposalError::NoCommand { raw, .. } | ProposalError::InvalidToolCall { raw, .. } => {
            raw.as_str()
        }
        ProposalError::Empty => "",
    };
    Some((raw, unreadable_message(proposal)))
}

fn denial(error: &Error) -> Option<(&str, &str)> {
    match error {
        Error::Exec(ExecError::Denied { rule, reason })
        | Error::Agent(AgentError::Exec(ExecError::Denied { rule, reason })) => {
            Some((rule, reason))
        }
        _ => None,
    }
}

fn needs_approval(error: &Error) -> Option<&[String]> {
    match error {
        Error::Exec(ExecError::NeedsApproval { reasons })
        | Error::Agent(AgentError::Exec(ExecError::NeedsApproval { reasons })) => Some(reasons),
        _ => None,
    }
}

/// The loop's memory of the last executed command, for repeat detection.
#[derive(Default)]
struct Repeats {
    last: Option<String>,
    warned: bool,
}

/// Turns until done, a budget, cancellation, or an error (which carries the report).
pub(crate) async fn drive<D: StepDriver>(
    driver: &mut D,
    limits: &StepLimits,
) -> Result<StepReport, RunError> {
    let mut report = StepReport::new();
    match turns(driver, limits, &mut report).await {
        Ok(()) => Ok(report),
        Err(error) => Err(RunError { report, error }),
    }
}

async fn turns<D: StepDriver>(
    driver: &mut D,
    limits: &StepLimits,
    report: &mut StepReport,
) -> Result<(), Error> {
    let mut repeats = Repeats::default();
    loop {
        if limits.cancel.is_cancelled() {
            report.stop = StopReason::Cancelled;
            return Ok(());
        }
        if report.turns() >= limits.max_steps {
            report.stop = StopReason::StepBudget;
            return Ok(());
        }
        if limits
            .max_tokens
            .is_some_and(|max| report.usage.total() >= max)
        {
            report.stop = StopReason::TokenBudget;
            return Ok(());
        }
        let proposed = tokio::select! {
            biased;
            () = limits.cancel.cancelled() => {
                report.stop = StopReason::Cancelled;
                return Ok(());
            }
            p = driver.propose() => p,
        };
        let proposed = match proposed {
            Ok(p) => p,
            Err(e) => match unreadable(&e) {
                Some((raw, message)) => {
                    driver
                        .feed_back(FeedbackKind::Unreadable, raw, message)
                        .await?;
                    report.fed_back += 1;
                    continue;
                }
                None => return Err(e),
            },
        };
        let proposal = match proposed {
            Proposed::Done(completion) => {
                if let Some(u) = completion.usage {
                    report.usage.add(u);
                }
                let verification = tokio::select! {
                    biased;
                    () = limits.cancel.cancelled() => {
                        report.stop = StopReason::Cancelled;
                        return Ok(());
                    }
                    v = driver.verify(&completion.summary) => v?,
                };
                let passed = verification.passed;
                let unverified = verification.is_unverified();
                let failure = verification.failure_text();
                report.verification = Some(verification);
                let summary = completion.summary;
                if passed || (unverified && limits.trust_model) {
                    report.stop = StopReason::Done { summary };
                    return Ok(());
                }
                if unverified {
                    report.stop = StopReason::Unverified { summary };
                    return Ok(());
                }
                driver
                    .feed_back(FeedbackKind::CheckFailed, &completion.raw, failure)
                    .await?;
                report.fed_back += 1;
                continue;
            }
            Proposed::Command(proposal) => proposal,
        };
        if let Some(u) = proposal.usage {
            report.usage.add(u);
        }
        if repeats.last.as_deref() == Some(proposal.command.as_str()) {
            if repeats.warned {
                report.stop = StopReason::Stuck {
                    command: proposal.command,
                };
                return Ok(());
            }
            repeats.warned = true;
            let message = format!(
                "You proposed `{}` just before and saw what came of it; the same again \
                 changes nothing. Do something different, or say you are finished.",
                proposal.command
            );
            driver
                .feed_back(FeedbackKind::Repeated, &proposal.raw, message)
                .await?;
            report.fed_back += 1;
            continue;
        }
        let command = proposal.command.clone();
        let raw = proposal.raw.clone();
        let step = tokio::select! {
            biased;
            () = limits.cancel.cancelled() => {
                report.stop = StopReason::Cancelled;
                return Ok(());
            }
            step = driver.execute(proposal) => step,
        };
        match step {
            Ok(_) => {
                report.steps += 1;
                if repeats.last.as_deref() != Some(command.as_str()) {
                    repeats = Repeats {
                        last: Some(command),
                        warned: false,
                    };
                }
            }
            Err(e) => {
                if let Some((rule, reason)) = denial(&e) {
                    if limits.stop_on_denial {
                        return Err(e);
                    }
                    let message = format!(
                        "`{command}` was denied by the policy ({rule}): {reason}. \
                         It did not run. Choose another way."
                    );
                    driver
                        .feed_back(FeedbackKind::Denied, &raw, message)
                        .await?;
                    report.fed_back += 1;
                    // The same denied command again is a repeat too.
                    if repeats.last.as_deref() != Some(command.as_str()) {
                        repeats = Repeats {
                            last: Some(command),
                            warned: false,
                        };
                    }
                    continue;
                }
                let Some(reasons) = needs_approval(&e).map(<[String]>::to_vec) else {
                    return Err(e);
                };
                let Some(wait) = limits.approval_wait else {
                    report.stop = StopReason::AwaitingApproval { reasons };
                    return Ok(());
                };
                let decided = tokio::select! {
                    biased;
                    () = limits.cancel.cancelled() => {
                        report.stop = StopReason::Cancelled;
                        return Ok(());
                    }
                    d = driver.await_approval(wait) => d?,
                };
                match decided {
                    Approval::Executed => report.steps += 1,
                    Approval::Rejected => report.fed_back += 1,
                    Approval::Pending => {
                        report.stop = StopReason::AwaitingApproval { reasons };
                        return Ok(());
                    }
                    Approval::Abandoned => {
                        report.stop = StopReason::Cancelled;
                        return Ok(());
                    }
                }
            }
        }
    }
}
