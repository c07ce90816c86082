//! The autonomous step loop shared by [`Worker::run`](crate::Worker::run) and
//! [`Hub::run`](crate::Hub::run).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{AgentError, Error, ExecError};
use crate::task::{Proposal, Proposed, StepRecord, TokenUsage};

/// Budgets and cancellation of an autonomous run.
#[derive(Debug, Clone)]
pub struct StepLimits {
    /// Most steps (executed commands) in this run.
    pub max_steps: u32,
    /// Most tokens (prompt + completion, as reported by the provider) in this run.
    pub max_tokens: Option<u64>,
    /// Cancels the run; a running command's process group is killed.
    pub cancel: CancellationToken,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            max_steps: 10,
            max_tokens: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl StepLimits {
    /// At most `max_steps` steps, no token budget.
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
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// The model said the task is done.
    Done {
        /// Its summary.
        summary: String,
    },
    /// The step budget was used up.
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
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepReport {
    /// Why it stopped.
    pub stop: StopReason,
    /// Steps executed in this run.
    pub steps: u32,
    /// Tokens used in this run (those the provider reported).
    pub usage: TokenUsage,
}

/// One side of the loop: where proposals come from and where executed steps go.
pub(crate) trait StepDriver {
    async fn propose(&mut self) -> Result<Proposed, Error>;
    async fn execute(&mut self, proposal: Proposal) -> Result<StepRecord, Error>;
}

/// propose → execute until done, a budget, or cancellation.
pub(crate) async fn drive<D: StepDriver>(
    driver: &mut D,
    limits: &StepLimits,
) -> Result<StepReport, Error> {
    let mut report = StepReport {
        stop: StopReason::StepBudget,
        steps: 0,
        usage: TokenUsage::default(),
    };
    loop {
        if limits.cancel.is_cancelled() {
            report.stop = StopReason::Cancelled;
            return Ok(report);
        }
        if report.steps >= limits.max_steps {
            report.stop = StopReason::StepBudget;
            return Ok(report);
        }
        if limits
            .max_tokens
            .is_some_and(|max| report.usage.total() >= max)
        {
            report.stop = StopReason::TokenBudget;
            return Ok(report);
        }
        let proposed = tokio::select! {
            biased;
            () = limits.cancel.cancelled() => {
                report.stop = StopReason::Cancelled;
                return Ok(report);
            }
            p = driver.propose() => p?,
        };
        match proposed {
            Proposed::Done(completion) => {
                if let Some(u) = completion.usage {
                    report.usage.add(u);
                }
                report.stop = StopReason::Done {
                    summary: completion.summary,
                };
                return Ok(report);
            }
            Proposed::Command(proposal) => {
                if let Some(u) = proposal.usage {
                    report.usage.add(u);
                }
                tokio::select! {
                    biased;
                    () = limits.cancel.cancelled() => {
                        report.stop = StopReason::Cancelled;
                        return Ok(report);
                    }
                    step = driver.execute(proposal) => match step {
                        Ok(_) => {}
                        Err(Error::Exec(ExecError::NeedsApproval { reasons }))
                        | Err(Error::Agent(AgentError::Exec(ExecError::NeedsApproval {
                            reasons,
                        }))) => {
                            report.stop = StopReason::AwaitingApproval { reasons };
                            return Ok(report);
                        }
                        Err(e) => return Err(e),
                    }
                }
                report.steps += 1;
            }
        }
    }
}
