//! The hub's router: the original Ananta's hub API over a [`Hub`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::auth::{Auth, LoginRequest, LoginResponse, RateBucket};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalBody};
use super::hub_ctx::HubCtx;
use super::openapi::{self, HUB_ROUTES};
use super::server::{ClientIp, HttpOptions, finish, login_answer};
use super::types::{
    AssignBody, CommandBody, HealthResponse, HubSettings, HubStepBody, LogsQuery, PatchQuery,
    RegisterRequest, RegisterResponse, RejectBody, RotateResponse, TasksQuery,
};
use crate::agent::{AgentCard, AgentEndpoint, AgentInfo, AgentStatus};
use crate::error::Error;
use crate::hub::Hub;
use crate::ids::{AgentId, TaskId, TemplateId};
use crate::log::{LogEntry, LogQuery};
use crate::task::{NewTask, Proposed, StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use crate::template::{NewTemplate, Template, TemplateUpdate};

/// Builds the hub's router: [`hub_router`] with authentication and options.
///
/// ```
/// use std::sync::Arc;
/// use ananta_core::http::{Auth, HttpOptions, HubApi};
/// # fn demo(store: Arc<dyn ananta_core::TaskStore>) -> Result<(), Box<dyn std::error::Error>> {
/// let hub = ananta_core::Hub::builder().store(store).build()?;
/// let auth = Auth::builder().token(Some("s3cret".into())).build()?;
/// let api = HubApi::new(hub).auth(auth).options(HttpOptions::named("hub"));
/// let router: axum::Router = api.router();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HubApi {
    ctx: HubCtx,
}

impl std::fmt::Debug for HubApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubApi")
            .field("name", &self.ctx.options.name)
            .finish_non_exhaustive()
    }
}

impl HubApi {
    /// The API of `hub`, open (no token: see [`Auth::open`]) with default options.
    pub fn new(hub: Hub) -> Self {
        Self {
            ctx: HubCtx {
                hub,
                auth: Auth::open(),
                options: HttpOptions::named("hub"),
                settings: Arc::new(RwLock::new(HubSettings::default())),
                client: {
                    crate::tls::install_default_provider();
                    reqwest::Client::new()
                },
                document: Arc::new(openapi::openapi_document("Ananta hub", HUB_ROUTES)),
            },
        }
    }

    /// Authentication and roles.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.ctx.auth = auth;
        self
    }

    /// Limits, CORS, shutdown signal, name.
    pub fn options(mut self, options: HttpOptions) -> Self {
        self.ctx.options = options;
        self
    }

    /// How the hub watches its agents (`/config`).
    pub fn settings(self, settings: HubSettings) -> Self {
        *self.ctx.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
        self
    }

    /// The HTTP client used to reach workers (e.g. with custom TLS roots).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.ctx.client = client;
        self
    }

    /// The settings now in force.
    pub fn current_settings(&self) -> HubSettings {
        self.ctx.settings()
    }

    /// The router. Logs a loud warning when the API is open (no `AGENT_TOKEN`).
    pub fn router(&self) -> Router {
        self.ctx.auth.warn_if_open("hub");
        let ctx = self.ctx.clone();
        let api = Router::new()
            .route("/health", get(health))
            .route("/openapi.json", get(document))
            .route("/login", post(login))
            .route("/rotate-token", post(rotate_token))
            .route("/config", get(get_config).post(set_config))
            .route("/step/propose", post(step_propose))
            .route("/step/execute", post(step_execute))
            .route("/logs", get(logs))
            .route("/register", post(register))
            .route("/agents", get(list_agents))
            .route("/agents/{name}", get(get_agent).delete(delete_agent))
            .route("/templates", get(list_templates).post(create_template))
            .route(
                "/templates/{id}",
                get(get_template)
                    .patch(update_template)
                    .delete(delete_template),
            )
            .route("/tasks", get(list_tasks).post(create_task))
            .route(
                "/tasks/{id}",
                get(get_task).patch(update_task).delete(delete_task),
            )
            .route("/tasks/{id}/assign", post(assign))
            .route("/tasks/{id}/step/propose", post(task_propose))
            .route("/tasks/{id}/step/execute", post(task_execute))
            .route("/tasks/{id}/approve", post(approve))
            .route("/tasks/{id}/reject", post(reject))
            .route(
                "/tasks/{id}/run",
                post(super::run_routes::start_run).delete(super::run_routes::stop_run),
            )
            .route("/tasks/{id}/logs", get(task_logs))
            .route("/events", get(super::events::events))
            .with_state(ctx.clone());
        finish(api, HUB_ROUTES, ctx.auth.clone(), &ctx.options)
    }

    /// Watches the agents until `cancel` fires (spawn it): every `check_interval_secs`, an
    /// agent behind a URL that has not registered (heartbeated) for `offline_after_secs`, or
    /// whose `/health` does not answer, is marked offline (`AgentStatusChanged`); one that
    /// answers again is marked online.
    pub async fn monitor(&self, cancel: CancellationToken) {
        loop {
            let interval = Duration::from_secs(self.ctx.settings().check_interval_secs);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => { self.check_agents_once().await; }
            }
        }
    }

    /// One round of [`HubApi::monitor`]; returns each checked agent's status.
    pub async fn check_agents_once(&self) -> Vec<(AgentId, AgentStatus)> {
        let settings = self.ctx.settings();
        let hub = &self.ctx.hub;
        let agents = match hub.list_agents().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "agent monitor could not list agents");
                return Vec::new();
            }
        };
        let now = Utc::now();
        let checks = agents
            .into_iter()
            .filter(|a| matches!(a.card.endpoint, AgentEndpoint::Url(_)))
            .map(|a| {
                let ctx = self.ctx.clone();
                let settings = settings.clone();
                async move {
                    let silent = (now - a.last_seen).num_seconds().max(0).unsigned_abs();
                    let status = if silent > settings.offline_after_secs {
                        AgentStatus::Offline
                    } else {
                        match ctx.remote(&a.card, None) {
                            Ok(remote) => {
                                let remote = remote.ping_timeout(Duration::from_millis(
                                    settings.health_timeout_ms,
                                ));
                                match remote.health().await {
                                    Ok(h) if h.status == "ok" => AgentStatus::Online,
                                    _ => AgentStatus::Offline,
                                }
                            }
                            Err(_) => AgentStatus::Offline,
                        }
                    };
                    (a.card.name, a.status, status)
                }
            });
        let results = futures::future::join_all(checks).await;
        let mut out = Vec::new();
        for (name, before, status) in results {
            if before != status
                && let Err(e) = hub.set_agent_status(&name, status).await
            {
                tracing::warn!(agent = %name, error = %e, "could not record agent status");
            }
            out.push((name, status));
        }
        out
    }
}

/// The hub's router with every endpoint of the original Ananta's hub API, open (no token) and with
/// default options; see [`HubApi`] for authentication, options and agent monitoring.
pub fn hub_router(hub: Hub) -> Router {
    HubApi::new(hub).router()
}

type ApiResult<T> = Result<T, ApiError>;

async fn health(State(ctx): State<HubCtx>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        name: ctx.options.name.clone(),
        role: "hub".into(),
    })
}

async fn document(State(ctx): State<HubCtx>) -> Json<Value> {
    Json((*ctx.document).clone())
}

async fn login(
    State(ctx): State<HubCtx>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(login_answer(&ctx.auth, ip, body).await?))
}

async fn rotate_token(State(ctx): State<HubCtx>) -> ApiResult<Json<RotateResponse>> {
    let token = ctx.auth.begin_rotation();
    ctx.auth.finish_rotation();
    tracing::info!("the hub's AGENT_TOKEN was rotated");
    Ok(Json(RotateResponse { token }))
}

async fn get_config(State(ctx): State<HubCtx>) -> Json<HubSettings> {
    Json(ctx.settings())
}

/// Applies the fields present in `patch` to `current` (a JSON merge of one level).
pub(crate) fn merge<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: Value,
) -> ApiResult<T> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    let mut value = serde_json::to_value(current)
        .map_err(|e| ApiError::invalid(format!("cannot read the current settings: {e}")))?;
    if let Value::Object(fields) = &mut value {
        for (key, v) in patch {
            if !fields.contains_key(&key) {
                return Err(ApiError::invalid(format!("unknown setting {key:?}")));
            }
            fields.insert(key, v);
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid settings: {e}")))
}

async fn set_config(
    State(ctx): State<HubCtx>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<HubSettings>> {
    let mut guard = ctx.settings.write().unwrap_or_else(|p| p.into_inner());
    let next: HubSettings = merge(&*guard, patch)?;
    next.validate()?;
    *guard = next.clone();
    Ok(Json(next))
}

fn need_task(task_id: Option<TaskId>) -> ApiResult<TaskId> {
    task_id.ok_or_else(|| {
        ApiError::invalid("a hub runs steps of tasks: give `task_id` (or use /tasks/{id}/step/…)")
    })
}

async fn step_propose(
    State(ctx): State<HubCtx>,
    ApiJson(body): ApiJson<HubStepBody>,
) -> ApiResult<Json<Proposed>> {
    Ok(Json(ctx.hub.propose(need_task(body.task_id)?).await?))
}

async fn step_execute(
    State(ctx): State<HubCtx>,
    ApiJson(body): ApiJson<HubStepBody>,
) -> ApiResult<Json<StepRecord>> {
    let id = need_task(body.task_id)?;
    Ok(Json(ctx.hub.execute(id, body.command).await?))
}

pub(crate) fn log_query(q: &LogsQuery, task: Option<TaskId>) -> LogQuery {
    LogQuery {
        task_id: task.or(q.task_id),
        before_seq: q.before_seq,
        limit: Some(q.limit.unwrap_or(100).min(10_000)),
    }
}

async fn logs(
    State(ctx): State<HubCtx>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Vec<LogEntry>>> {
    Ok(Json(ctx.hub.logs(log_query(&q, None)).await?))
}

async fn register(
    State(ctx): State<HubCtx>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    body: Result<ApiJson<RegisterRequest>, ApiError>,
) -> ApiResult<Json<RegisterResponse>> {
    ctx.auth.check_rate(RateBucket::Register, ip)?;
    // Credentials first: a caller without them learns nothing about the body's shape.
    let secret = body
        .as_ref()
        .ok()
        .and_then(|b| b.0.registration_secret.as_deref());
    ctx.auth.check_registration(&headers, uri.query(), secret)?;
    let ApiJson(body) = body?;
    let agent = ctx.connect(body.card(), body.token.clone()).await?;
    Ok(Json(RegisterResponse {
        agent,
        heartbeat_interval_secs: ctx.settings().heartbeat_interval_secs,
    }))
}

fn agent_id(name: &str) -> ApiResult<AgentId> {
    AgentId::new(name).map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
}

async fn list_agents(State(ctx): State<HubCtx>) -> ApiResult<Json<Vec<AgentInfo>>> {
    Ok(Json(ctx.hub.list_agents().await?))
}

async fn get_agent(
    State(ctx): State<HubCtx>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<AgentInfo>> {
    Ok(Json(ctx.hub.get_agent(&agent_id(&name)?).await?))
}

async fn delete_agent(
    State(ctx): State<HubCtx>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ctx.hub.deregister_agent(&agent_id(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn template_id(raw: &str) -> ApiResult<TemplateId> {
    raw.parse()
        .map_err(|e: crate::ids::ParseIdError| ApiError::bad_request("invalid_id", e.to_string()))
}

pub(super) fn task_id(raw: &str) -> ApiResult<TaskId> {
    raw.parse()
        .map_err(|e: crate::ids::ParseIdError| ApiError::bad_request("invalid_id", e.to_string()))
}

async fn list_templates(State(ctx): State<HubCtx>) -> ApiResult<Json<Vec<Template>>> {
    Ok(Json(ctx.hub.list_templates().await?))
}

async fn create_template(
    State(ctx): State<HubCtx>,
    ApiJson(new): ApiJson<NewTemplate>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    Ok((
        StatusCode::CREATED,
        Json(ctx.hub.create_template(new).await?),
    ))
}

async fn get_template(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Template>> {
    Ok(Json(ctx.hub.get_template(template_id(&id)?).await?))
}

async fn update_template(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    ApiJson(update): ApiJson<TemplateUpdate>,
) -> ApiResult<Json<Template>> {
    Ok(Json(
        ctx.hub.update_template(template_id(&id)?, update).await?,
    ))
}

async fn delete_template(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ctx.hub.delete_template(template_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tasks(
    State(ctx): State<HubCtx>,
    ApiQuery(q): ApiQuery<TasksQuery>,
) -> ApiResult<Json<Vec<Task>>> {
    let mut filter = TaskFilter::default();
    if let Some(list) = &q.status {
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let status: TaskStatus = serde_json::from_value(Value::String(name.to_string()))
                .map_err(|_| {
                    ApiError::bad_request("invalid_query", format!("unknown status {name:?}"))
                })?;
            filter.statuses.push(status);
        }
    }
    filter.assigned_agent = q.agent;
    filter.tag = q.tag;
    filter.limit = q.limit;
    Ok(Json(ctx.hub.list_tasks(filter).await?))
}

async fn create_task(
    State(ctx): State<HubCtx>,
    ApiJson(new): ApiJson<NewTask>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    if let Some(template) = new.template_id {
        ctx.hub.get_template(template).await.map_err(|e| match e {
            Error::Store(crate::error::StoreError::TemplateNotFound(id)) => {
                ApiError::invalid(format!("template {id} does not exist"))
            }
            other => other.into(),
        })?;
    }
    Ok((StatusCode::CREATED, Json(ctx.hub.create_task(new).await?)))
}

async fn get_task(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Task>> {
    Ok(Json(ctx.hub.get_task(task_id(&id)?).await?))
}

async fn update_task(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PatchQuery>,
    ApiJson(update): ApiJson<TaskUpdate>,
) -> ApiResult<Json<Task>> {
    let id = task_id(&id)?;
    update.validate()?;
    Ok(Json(
        ctx.hub.update_task(id, update, q.expected_version).await?,
    ))
}

async fn delete_task(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ctx.hub.delete_task(task_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

async fn assign(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AssignBody>,
) -> ApiResult<Json<Task>> {
    let id = task_id(&id)?;
    ctx.hub.get_task(id).await?;
    let agent = match (body.agent, body.agent_url) {
        (Some(agent), _) => {
            if let Some(token) = body.token {
                // A new token for a known worker: reconnect it with that token.
                let info = ctx.hub.get_agent(&agent).await?;
                ctx.connect(info.card, Some(token)).await?;
            }
            agent
        }
        (None, Some(url)) => {
            let url = normalize_url(&url);
            let known = ctx.hub.list_agents().await?.into_iter().find(
                |a| matches!(&a.card.endpoint, AgentEndpoint::Url(u) if normalize_url(u) == url),
            );
            match known {
                Some(info) => {
                    if body.token.is_some() || !ctx.hub.is_connected(&info.card.name) {
                        ctx.connect(info.card.clone(), body.token).await?;
                    }
                    info.card.name
                }
                None => {
                    // The original Ananta's way: any worker URL with its token. Ask it who it is.
                    let mut card = AgentCard::in_process(agent_id("unnamed")?);
                    card.endpoint = AgentEndpoint::Url(url.clone());
                    card.validate().map_err(Error::from)?;
                    let remote = ctx.remote(&card, body.token.clone())?;
                    let health = ctx.check_health(&remote).await?;
                    card.name = AgentId::new(health.name.trim()).map_err(|_| {
                        ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "agent_unnamed",
                            format!("the worker at {url} reports no usable name on /health"),
                        )
                    })?;
                    ctx.hub
                        .register_agent(card.clone(), Arc::new(remote))
                        .await?;
                    card.name
                }
            }
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "give `agent` (a registered name) or `agent_url` (with `token`)",
            ));
        }
    };
    Ok(Json(ctx.hub.assign(id, &agent).await?))
}

async fn task_propose(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    OptionalBody(_body): OptionalBody<Value>,
) -> ApiResult<Json<Proposed>> {
    Ok(Json(ctx.hub.propose(task_id(&id)?).await?))
}

async fn task_execute(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    OptionalBody(body): OptionalBody<CommandBody>,
) -> ApiResult<Json<StepRecord>> {
    Ok(Json(ctx.hub.execute(task_id(&id)?, body.command).await?))
}

async fn approve(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    OptionalBody(body): OptionalBody<CommandBody>,
) -> ApiResult<Json<StepRecord>> {
    Ok(Json(ctx.hub.approve(task_id(&id)?, body.command).await?))
}

async fn reject(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    OptionalBody(body): OptionalBody<RejectBody>,
) -> ApiResult<Json<Task>> {
    Ok(Json(ctx.hub.reject(task_id(&id)?, body.reason).await?))
}

async fn task_logs(
    State(ctx): State<HubCtx>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    let id = task_id(&id)?;
    ctx.hub.get_task(id).await?;
    if q.follow {
        return Ok(super::events::follow_logs(ctx, id, q).into_response());
    }
    Ok(Json(ctx.hub.logs(log_query(&q, Some(id))).await?).into_response())
}
