//! The one error shape of the HTTP API, `{"error": {"code", "message", "details"?}}`, the
//! mapping of every [`Error`] to a status (the extractors that answer in it are in `extract`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{AgentError, Error, ExecError, LlmError, RegistryError, StoreError};

/// The body of every error response: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// What went wrong, inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    /// A stable, machine-readable code (`not_found`, `invalid_transition`, `command_denied`…).
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// Structured details, when the code has any (e.g. `reasons` of `approval_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// An error answer of the HTTP API: a status and an [`ErrorBody`].
///
/// Every [`Error`] converts into one with the right status (400/422 bad input, 401/403 auth,
/// 404 unknown id, 409 conflicts, 502/504 a forwarded agent failed or timed out, 503 an agent
/// offline or a store unavailable), so handlers just use `?`.
///
/// ```
/// use ananta_core::http::ApiError;
/// use ananta_core::{Error, StoreError, TaskId};
///
/// let e = ApiError::from(Error::Store(StoreError::TaskNotFound(TaskId::new())));
/// assert_eq!(e.status.as_u16(), 404);
/// assert_eq!(e.body.error.code, "not_found");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
    /// Seconds for a `Retry-After` header (rate limits, shutdown).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: ErrorInfo {
                    code: code.into(),
                    message: message.into(),
                    details: None,
                },
            },
            retry_after: None,
        }
    }

    /// Adds structured details.
    pub fn details(mut self, details: Value) -> Self {
        self.body.error.details = Some(details);
        self
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.body.error.code
    }

    /// 400 with this code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 `invalid_input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 `shutting_down`.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
        .retry_after(1)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.body.error.code,
            self.body.error.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn llm_status(e: &LlmError) -> StatusCode {
    match e {
        LlmError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        LlmError::InvalidRequest(_) | LlmError::ContextLengthExceeded(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn exec_error(e: ExecError) -> ApiError {
    let message = e.to_string();
    match e {
        ExecError::Denied { rule, reason } => {
            ApiError::new(StatusCode::FORBIDDEN, "command_denied", message)
                .details(json!({"rule": rule, "reason": reason}))
        }
        ExecError::NeedsApproval { reasons } => {
            ApiError::new(StatusCode::CONFLICT, "approval_required", message)
                .details(json!({"reasons": reasons}))
        }
        ExecError::InvalidRequest(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_command", message)
        }
        ExecError::Cancelled => ApiError::new(StatusCode::CONFLICT, "cancelled", message),
        ExecError::SandboxUnavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandbox_unavailable",
            message,
        ),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, "exec_failed", message),
    }
}

fn store_error(e: StoreError) -> ApiError {
    let message = e.to_string();
    match e {
        StoreError::TaskNotFound(_) | StoreError::TemplateNotFound(_) => {
            ApiError::not_found(message)
        }
        StoreError::AlreadyExists(_) => {
            ApiError::new(StatusCode::CONFLICT, "already_exists", message)
        }
        StoreError::VersionConflict {
            expected, actual, ..
        } => ApiError::new(StatusCode::CONFLICT, "version_conflict", message)
            .details(json!({"expected": expected, "actual": actual})),
        StoreError::InvalidTransition(t) => {
            ApiError::new(StatusCode::CONFLICT, "invalid_transition", message)
                .details(json!({"from": t.from, "to": t.to}))
        }
        StoreError::StaleClaim { .. } => {
            ApiError::new(StatusCode::CONFLICT, "stale_claim", message)
        }
        StoreError::InUse(_) => ApiError::new(StatusCode::CONFLICT, "in_use", message),
        StoreError::InvalidInput(_) => ApiError::invalid(message),
        StoreError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        )
        .retry_after(1),
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_error", message),
    }
}

/// How a failure of a forwarded agent is answered.
fn agent_error(e: AgentError) -> ApiError {
    let message = e.to_string();
    match e {
        AgentError::Exec(e) => exec_error(e),
        AgentError::Llm(l) => ApiError::new(llm_status(&l), "llm_failed", message),
        AgentError::Proposal(p) => {
            let raw = match &p {
                crate::error::ProposalError::NoCommand { raw, .. }
                | crate::error::ProposalError::InvalidToolCall { raw, .. } => raw.clone(),
                crate::error::ProposalError::Empty => String::new(),
            };
            // The raw answer goes along so a Hub can feed it back to the model.
            ApiError::new(StatusCode::BAD_GATEWAY, "no_command", message)
                .details(json!({"raw": raw}))
        }
        AgentError::Template(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "template_error", message)
        }
        AgentError::NoCommand(_) => ApiError::new(StatusCode::CONFLICT, "no_proposal", message),
        AgentError::Unreachable(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "agent_unreachable", message)
        }
        AgentError::Rejected { status, .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "agent_rejected", message)
                .details(json!({"agent_status": status}))
        }
        AgentError::Timeout(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "agent_timeout", message)
        }
        AgentError::Cancelled => ApiError::new(StatusCode::CONFLICT, "cancelled", message),
        AgentError::Workspace(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "workspace_unavailable",
            message,
        ),
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Store(e) => store_error(e),
            Error::Registry(RegistryError::NotFound(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, "agent_not_found", message)
            }
            Error::Registry(RegistryError::InvalidCard(_)) => ApiError::invalid(message),
            Error::Registry(RegistryError::NoCandidate(_)) => {
                ApiError::new(StatusCode::CONFLICT, "no_candidate", message)
            }
            Error::Registry(RegistryError::Embedding(l)) => {
                ApiError::new(llm_status(&l), "embedding_failed", message)
            }
            Error::Registry(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_error", message)
            }
            Error::Agent(e) => agent_error(e),
            Error::Exec(e) => exec_error(e),
            Error::Llm(l) => ApiError::new(llm_status(&l), "llm_failed", message),
            Error::Decompose(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "decompose_failed", message)
            }
            Error::Template(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "template_error", message)
            }
            Error::Transition(t) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", message)
                    .details(json!({"from": t.from, "to": t.to}))
            }
            Error::InvalidId(_) => ApiError::bad_request("invalid_id", message),
            Error::NotAssigned(_) => ApiError::new(StatusCode::CONFLICT, "not_assigned", message),
            Error::AgentOffline(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "agent_offline", message)
            }
            Error::AgentNotConnected(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "agent_not_connected",
                message,
            ),
            Error::InvalidInput(_) => ApiError::invalid(message),
            Error::Cancelled => ApiError::new(StatusCode::CONFLICT, "cancelled", message),
            Error::RunInProgress(_) => {
                ApiError::new(StatusCode::CONFLICT, "run_in_progress", message)
            }
        }
    }
}

impl From<crate::error::InvalidInput> for ApiError {
    fn from(e: crate::error::InvalidInput) -> Self {
        ApiError::invalid(e.message)
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        agent_error(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        store_error(e)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        Error::Registry(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TaskId;
    use crate::task::TaskStatus;

    #[test]
    fn statuses_of_core_errors() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                StoreError::TaskNotFound(TaskId::new()).into(),
                404,
                "not_found",
            ),
            (
                StoreError::VersionConflict {
                    id: TaskId::new(),
                    expected: 1,
                    actual: 2,
                }
                .into(),
                409,
                "version_conflict",
            ),
            (
                Error::Transition(crate::error::TransitionError {
                    task: TaskId::new(),
                    from: TaskStatus::Done,
                    to: TaskStatus::Failed,
                }),
                409,
                "invalid_transition",
            ),
            (
                ExecError::Denied {
                    rule: "rm".into(),
                    reason: "destroys".into(),
                }
                .into(),
                403,
                "command_denied",
            ),
            (
                ExecError::NeedsApproval {
                    reasons: vec!["writes".into()],
                }
                .into(),
                409,
                "approval_required",
            ),
            (
                AgentError::Unreachable("refused".into()).into(),
                502,
                "agent_unreachable",
            ),
            (
                AgentError::Timeout(std::time::Duration::from_secs(1)).into(),
                504,
                "agent_timeout",
            ),
            (
                Error::AgentOffline(crate::ids::AgentId::new("w").unwrap()),
                503,
                "agent_offline",
            ),
            (Error::InvalidInput("x".into()), 422, "invalid_input"),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error.clone());
            assert_eq!(api.status.as_u16(), status, "{error}");
            assert_eq!(api.code(), code, "{error}");
        }
    }
}
