//! The one error shape of the HTTP API, `{"error": {"code", "message", "details"?}}`, the
//! mapping of every [`Error`] to a status, and extractors whose rejections use that shape.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
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
        AgentError::Proposal(_) => ApiError::new(StatusCode::BAD_GATEWAY, "no_command", message),
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
        }
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

/// A JSON body whose rejections are [`ApiError`]s: 400 malformed JSON, 413 too large, 415 not
/// JSON, 422 the wrong shape. An empty body reads as `T::default()` when `T` allows it
/// through [`OptionalBody`]; here it is a 400.
///
/// A body is read as JSON when the request says `application/json` (or `+json`) or says
/// nothing about its type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body reads as `T::default()` (for POSTs whose body is
/// optional, like `/tasks/{id}/step/propose`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalBody<T>(pub T);

async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    empty: Option<fn() -> T>,
) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let bytes = axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("unreadable_body", r.body_text())
            }
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(empty) = empty {
            return Ok(empty());
        }
        return Err(ApiError::bad_request(
            "missing_body",
            "this endpoint needs a JSON body",
        ));
    }
    if let Some(ct) = content_type {
        let mime = ct.split(';').next().unwrap_or_default().trim().to_string();
        let json = mime == "application/json" || mime.ends_with("+json");
        // curl -d sends form encoding by default; the body is still read as JSON when it
        // parses (the original Ananta accepted it), otherwise the type is the complaint.
        if !json && mime != "application/x-www-form-urlencoded" && !mime.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected an application/json body, got {mime}"),
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(format!("the body has the wrong shape: {e}")),
            _ => {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state, None).await.map(Self)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state, Some(T::default)).await.map(Self)
    }
}

/// A path parameter whose rejection is an [`ApiError`] (400 `invalid_id` for an id that does
/// not parse).
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|r: PathRejection| ApiError::bad_request("invalid_id", r.body_text()))
    }
}

/// A query string whose rejection is an [`ApiError`] (400 `invalid_query`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request("invalid_query", r.body_text()))
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
