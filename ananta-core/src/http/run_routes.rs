//! `POST /tasks/{id}/run` and `DELETE /tasks/{id}/run`: the autonomous loop on the hub, started
//! and stopped over HTTP; its progress streams on `GET /events`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::ApiError;
use super::extract::{ApiPath, OptionalBody};
use super::hub_ctx::HubCtx;
use super::hub_routes::task_id;
use super::types::{RunBody, RunStartedResponse};

/// Starts the run and answers 202 at once.
pub(super) async fn start_run(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    OptionalBody(body): OptionalBody<RunBody>,
) -> Result<(StatusCode, Json<RunStartedResponse>), ApiError> {
    let task = task_id(&id)?;
    let limits = body.limits().map_err(|e| {
        ApiError::invalid(e.to_string()).details(serde_json::json!({"field": e.field}))
    })?;
    let max_steps = limits.max_steps;
    ctx.hub.start_run(task, limits).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunStartedResponse {
            task_id: task,
            max_steps,
            events: format!("/events?task_id={task}"),
        }),
    ))
}

/// Cancels the run: 204, or 404 `no_run` when none runs here.
pub(super) async fn stop_run(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let task = task_id(&id)?;
    if ctx.hub.stop_run(task) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_run",
            format!("task {task} has no run going on in this hub"),
        ))
    }
}
