//! Errors: one enum per trait, plus the umbrella [`Error`].
//!
//! Every enum answers [`is_transient`](Error::is_transient): `true` means the same call may
//! succeed if it is simply tried again later (a timeout, a busy server, a lost race), `false`
//! means retrying the same input cannot help (bad input, not found, a refusal).

use std::time::Duration;

use crate::ids::{AgentId, ParseIdError, TaskId, TemplateId};
pub use crate::status::TransitionError;

/// A value a caller gave breaks a rule (a blank title, too many tags, a temperature out of
/// range): which field, and the message naming the rule. `?` turns it into
/// [`Error::InvalidInput`] or [`StoreError::InvalidInput`].
///
/// ```
/// use ananta_core::NewTask;
///
/// let err = NewTask::new("  ").into_task().unwrap_err();
/// assert_eq!(err.field, "title");
/// assert_eq!(err.to_string(), "title must not be empty");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    /// The field (or setting) that breaks the rule.
    pub field: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl InvalidInput {
    /// `field` breaks a rule, as `message` says.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl From<InvalidInput> for Error {
    fn from(e: InvalidInput) -> Self {
        Error::InvalidInput(e.message)
    }
}

impl From<InvalidInput> for StoreError {
    fn from(e: InvalidInput) -> Self {
        StoreError::InvalidInput(e.message)
    }
}

/// Failures of an [`LlmProvider`](crate::llm::LlmProvider).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The server could not be reached (connection refused, DNS, reset).
    #[error("LLM server unreachable: {0}")]
    Unreachable(String),
    /// The request took longer than allowed.
    #[error("LLM request timed out after {0:?}")]
    Timeout(Duration),
    /// The server asked us to slow down.
    #[error("LLM server rate-limited the request (retry after {retry_after:?})")]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The server failed (HTTP 5xx or equivalent).
    #[error("LLM server error {status}: {message}")]
    Server {
        /// HTTP status code or provider error code.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server rejected the request (HTTP 4xx other than 429).
    #[error("LLM request rejected with status {status}: {body}")]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The prompt does not fit the model's context window.
    #[error("prompt exceeds the model's context length: {0}")]
    ContextLengthExceeded(String),
    /// The answer could not be read (invalid, truncated, not the expected shape).
    #[error("invalid LLM response: {message}")]
    InvalidResponse {
        /// What was wrong.
        message: String,
        /// The raw text received, for diagnosis.
        raw: String,
    },
    /// The model's answer is not the JSON the request's schema asked for.
    #[error("LLM answer does not match the requested schema: {message}")]
    SchemaMismatch {
        /// What did not parse.
        message: String,
        /// The model's raw answer.
        raw: String,
    },
    /// A circuit breaker refused the call because the provider failed repeatedly.
    #[error("circuit open for {provider}: failing fast for another {retry_in:?}")]
    CircuitOpen {
        /// The provider behind the breaker.
        provider: String,
        /// When the breaker lets a trial call through.
        retry_in: Duration,
    },
    /// The provider does not offer this operation (e.g. embeddings).
    #[error("{provider} does not support {operation}")]
    Unsupported {
        /// Provider name.
        provider: String,
        /// The unsupported operation.
        operation: String,
    },
    /// A scripted or mock provider has no answer left.
    #[error("scripted provider exhausted after {0} responses")]
    Exhausted(usize),
    /// The request was invalid before it was sent.
    #[error("invalid LLM request: {0}")]
    InvalidRequest(String),
}

impl LlmError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_)
                | Self::Timeout(_)
                | Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::CircuitOpen { .. }
        )
    }

    /// How long the server asked us to wait before trying again, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            Self::CircuitOpen { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }
}

/// Failures of an [`Executor`](crate::exec::Executor). A command that runs and fails (non-zero
/// exit, killed on timeout) is *not* an error: it is an [`ExecOutcome`](crate::exec::ExecOutcome).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The request itself is unusable (empty command, NUL byte, missing working directory…).
    #[error("invalid command request: {0}")]
    InvalidRequest(String),
    /// The command was refused by policy and not run.
    #[error("command denied by rule {rule}: {reason}")]
    Denied {
        /// The rule that matched.
        rule: String,
        /// Why the rule refuses it.
        reason: String,
    },
    /// The command was not run: a human must approve it first.
    #[error("command needs approval: {}", reasons.join("; "))]
    NeedsApproval {
        /// Why, one reason per part of the command that needs a look.
        reasons: Vec<String>,
    },
    /// The process could not be started.
    #[error("failed to start command: {0}")]
    Spawn(String),
    /// An I/O error while supervising the process.
    #[error("I/O error while running command: {0}")]
    Io(String),
    /// The run was cancelled by the caller; the process group was killed.
    #[error("command cancelled")]
    Cancelled,
    /// A sandbox was required but this machine cannot provide it (the kernel lacks a feature
    /// the strict sandbox needs): the command was not run.
    #[error("sandbox unavailable, command not run: {0}")]
    SandboxUnavailable(String),
}

impl ExecError {
    /// Whether retrying the same command later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Spawn(_) | Self::Io(_))
    }
}

/// Failures of a [`TaskStore`](crate::store::TaskStore).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No task with this id.
    #[error("task {0} not found")]
    TaskNotFound(TaskId),
    /// No template with this id.
    #[error("template {0} not found")]
    TemplateNotFound(TemplateId),
    /// An entity with this id already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Optimistic concurrency: the caller's version is not the stored one.
    #[error("version conflict on {id}: expected version {expected}, stored version is {actual}")]
    VersionConflict {
        /// The task.
        id: TaskId,
        /// The version the caller based its change on.
        expected: u64,
        /// The version in the store.
        actual: u64,
    },
    /// The requested status change is not in the transition table.
    #[error(transparent)]
    InvalidTransition(#[from] TransitionError),
    /// A claim's fencing token is no longer current (the lease expired and another agent took
    /// the task, or the claim was released).
    #[error("stale claim on {task}: token {token} is no longer current")]
    StaleClaim {
        /// The task.
        task: TaskId,
        /// The caller's outdated token.
        token: u64,
    },
    /// The entity is still referenced (e.g. a template used by a task).
    #[error("{0}")]
    InUse(String),
    /// The input was rejected (empty title, bad lease…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database file is damaged or not a database of this kind.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The database was written by a newer version of the code (or an unknown one).
    #[error("incompatible store schema: {0}")]
    IncompatibleSchema(String),
    /// The database cannot be written (a read-only file, directory or file system).
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// The backend is temporarily unavailable (busy, connection lost).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend failed in a way retrying will not fix.
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::VersionConflict { .. })
    }
}

/// Failures of an [`AgentRegistry`](crate::registry::AgentRegistry).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No agent with this id.
    #[error("agent {0} not found")]
    NotFound(AgentId),
    /// The agent card is invalid.
    #[error("invalid agent card: {0}")]
    InvalidCard(String),
    /// No agent is a candidate (none registered, none online).
    #[error("no agent available: {0}")]
    NoCandidate(String),
    /// Computing an embedding failed.
    #[error("embedding failed: {0}")]
    Embedding(#[from] LlmError),
    /// The backing store failed.
    #[error("registry backend error: {0}")]
    Backend(String),
}

impl RegistryError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Embedding(e) => e.is_transient(),
            Self::Backend(_) => true,
            _ => false,
        }
    }
}

/// Failures of a [`Decomposer`](crate::decompose::Decomposer).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecomposeError {
    /// The prompt is empty or unusable.
    #[error("invalid prompt: {0}")]
    InvalidPrompt(String),
    /// The model failed.
    #[error("decomposition failed: {0}")]
    Llm(#[from] LlmError),
    /// The plan is invalid and could not be repaired.
    #[error("invalid plan: {}", .problems.join("; "))]
    InvalidPlan {
        /// Every validation problem of the last plan.
        problems: Vec<String>,
        /// The last raw answer of the model.
        raw: String,
    },
}

impl DecomposeError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Llm(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// The model's answer could not be turned into a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// The answer was empty or whitespace.
    #[error("the model returned an empty answer")]
    Empty,
    /// The answer contains no command (prose, a refusal, JSON without `command`).
    #[error("the model's answer contains no command: {excerpt}")]
    NoCommand {
        /// The start of the answer, for the log.
        excerpt: String,
        /// The whole raw answer.
        raw: String,
    },
    /// The model called a tool that does not exist, or with arguments that do not fit it.
    #[error("the model's call of `{tool}` is invalid: {message}")]
    InvalidToolCall {
        /// The tool it called.
        tool: String,
        /// What is wrong.
        message: String,
        /// The call's raw arguments.
        raw: String,
    },
}

/// Failures of an [`AgentClient`](crate::agent::AgentClient): what reaching an agent and
/// letting it work can go wrong with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent's LLM failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The agent's executor failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The model's answer had no usable command.
    #[error(transparent)]
    Proposal(#[from] ProposalError),
    /// The task's template could not be rendered.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// There is no command to execute (none given, no proposal on the task).
    #[error("no command to execute for task {0}: propose a step first or pass a command")]
    NoCommand(TaskId),
    /// The agent could not be reached.
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    /// The agent refused the request.
    #[error("agent rejected the request ({status}): {message}")]
    Rejected {
        /// Status code of the refusal.
        status: u16,
        /// The agent's message.
        message: String,
    },
    /// The call was cancelled.
    #[error("agent call cancelled")]
    Cancelled,
    /// The agent did not answer in time.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The task's workspace (its directory or git worktree) could not be prepared or removed.
    #[error("task workspace: {0}")]
    Workspace(String),
}

impl AgentError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Llm(e) => e.is_transient(),
            Self::Exec(e) => e.is_transient(),
            Self::Unreachable(_) | Self::Timeout(_) => true,
            _ => false,
        }
    }
}

/// A template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template's acceptance checks break a rule (blank, too many, too long).
    #[error("template checks: {0}")]
    InvalidChecks(String),
    /// `{{` without `}}`, or a placeholder that is not an identifier.
    #[error("template syntax error at byte {position}: {message}")]
    Syntax {
        /// Byte offset in the template text.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// Placeholders with no value.
    #[error("unknown template variable(s): {}", .0.join(", "))]
    UnknownVariables(Vec<String>),
    /// The template is invalid in another way (empty name…).
    #[error("invalid template: {0}")]
    Invalid(String),
}

/// The umbrella error of the Hub and the Worker.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`LlmError`].
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// See [`ExecError`].
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// See [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// See [`RegistryError`].
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// See [`DecomposeError`].
    #[error(transparent)]
    Decompose(#[from] DecomposeError),
    /// See [`AgentError`].
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// See [`TemplateError`].
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// See [`TransitionError`].
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// See [`ParseIdError`].
    #[error(transparent)]
    InvalidId(#[from] ParseIdError),
    /// The task has no assigned agent.
    #[error("task {0} is not assigned to an agent")]
    NotAssigned(TaskId),
    /// The agent is known to be offline.
    #[error("agent {0} is offline")]
    AgentOffline(AgentId),
    /// The assigned agent is registered but has no client to reach it.
    #[error("agent {0} is not connected")]
    AgentNotConnected(AgentId),
    /// The request is invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The task's step loop already runs in this process ([`Hub::start_run`](crate::Hub::start_run)).
    #[error("task {0} is already running")]
    RunInProgress(TaskId),
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Llm(e) => e.is_transient(),
            Self::Exec(e) => e.is_transient(),
            Self::Store(e) => e.is_transient(),
            Self::Registry(e) => e.is_transient(),
            Self::Decompose(e) => e.is_transient(),
            Self::Agent(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Shorthand for `Result<T, ananta_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `e` and its sources, joined with `: ` (a source whose text the message already holds is
/// left out), for error messages that keep the cause a bare `Display` would drop.
///
/// ```
/// let io = std::io::Error::other("disk full");
/// assert_eq!(ananta_core::error::error_chain(&io), "disk full");
/// ```
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

/// The delay a server asked for, from the values of its `retry-after-ms` and `Retry-After`
/// headers: milliseconds first, then `Retry-After` as seconds (at most a day) or an HTTP date
/// (a date in the past is no wait). Unreadable values are ignored.
///
/// ```
/// use std::time::Duration;
/// use ananta_core::error::parse_retry_after;
///
/// assert_eq!(parse_retry_after(None, Some("7")), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after(Some("250"), Some("9")), Some(Duration::from_millis(250)));
/// assert_eq!(parse_retry_after(None, Some("soon")), None);
/// ```
pub fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        assert!(LlmError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(LlmError::RateLimited { retry_after: None }.is_transient());
        assert!(
            !LlmError::Rejected {
                status: 400,
                body: String::new()
            }
            .is_transient()
        );
        assert!(!LlmError::ContextLengthExceeded(String::new()).is_transient());
        assert!(ExecError::Spawn("EAGAIN".into()).is_transient());
        assert!(!ExecError::InvalidRequest("empty".into()).is_transient());
        assert!(StoreError::Unavailable("busy".into()).is_transient());
        assert!(!StoreError::TaskNotFound(TaskId::new()).is_transient());
        assert!(Error::from(AgentError::from(LlmError::Unreachable("x".into()))).is_transient());
        assert!(!Error::NotAssigned(TaskId::new()).is_transient());
        assert!(!DecomposeError::InvalidPrompt(String::new()).is_transient());
        assert!(RegistryError::Embedding(LlmError::Timeout(Duration::ZERO)).is_transient());
    }
}
