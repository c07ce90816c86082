//! The worker's router: the original Ananta's worker API over a [`Worker`], with idempotent execution,
//! and the worker's side of registration (joining a hub, heartbeats, token rotation).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::auth::{Auth, LoginRequest, LoginResponse};
use super::client::HubClient;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::hub_routes::{log_query, merge};
use super::openapi::{self, WORKER_ROUTES};
use super::server::{ClientIp, HttpOptions, finish, login_answer};
use super::types::{
    HealthResponse, IDEMPOTENCY_HEADER, LogsQuery, RegisterRequest, RegisterResponse,
    RotateResponse, WorkerExecuteBody, WorkerProposeBody,
};
use crate::agent::{AgentClient, ExecuteRequest};
use crate::error::AgentError;
use crate::log::LogEntry;
use crate::task::{NewTask, Proposed, StepRecord, Task};
use crate::worker::{Worker, WorkerConfig};

/// How many execute results the worker remembers by idempotency key.
const REMEMBERED_KEYS: usize = 4096;

/// Builds the worker's router ([`worker_router`] with authentication and options) and joins a
/// hub.
///
/// ```
/// use ananta_core::http::{Auth, HttpOptions, WorkerApi};
/// # fn demo(worker: ananta_core::Worker) -> Result<(), Box<dyn std::error::Error>> {
/// let auth = Auth::builder().token(Some("worker-secret".into())).build()?;
/// let api = WorkerApi::new(worker).auth(auth).options(HttpOptions::named("alpha"));
/// let router: axum::Router = api.router();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkerApi {
    ctx: WorkerCtx,
}

#[derive(Clone)]
struct WorkerCtx {
    worker: Worker,
    auth: Auth,
    options: HttpOptions,
    document: Arc<Value>,
    idempotency: Arc<Mutex<Remembered>>,
    hub: Option<HubLink>,
}

#[derive(Clone)]
struct HubLink {
    client: HubClient,
    registration: Arc<Mutex<RegisterRequest>>,
    /// Held while a registration is sent, so a heartbeat never sends a token that a
    /// rotation has just replaced.
    sending: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Remembered {
    slots: HashMap<String, Slot>,
    order: VecDeque<String>,
}

#[derive(Clone)]
enum Slot {
    Running,
    Done(Box<Result<StepRecord, ApiError>>),
}

impl std::fmt::Debug for WorkerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerApi")
            .field("worker", self.ctx.worker.name())
            .finish_non_exhaustive()
    }
}

impl WorkerApi {
    /// The API of `worker`, open (no token) with default options.
    pub fn new(worker: Worker) -> Self {
        let name = worker.name().to_string();
        Self {
            ctx: WorkerCtx {
                worker,
                auth: Auth::open(),
                options: HttpOptions::named(name),
                document: Arc::new(openapi::openapi_document("Ananta worker", WORKER_ROUTES)),
                idempotency: Arc::default(),
                hub: None,
            },
        }
    }

    /// Authentication and roles; the system token is the one the hub must send.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.ctx.auth = auth;
        self
    }

    /// Limits, CORS, shutdown signal, name.
    pub fn options(mut self, options: HttpOptions) -> Self {
        self.ctx.options = options;
        self
    }

    /// The hub this worker registers with, and how: `registration` is sent (with the
    /// worker's current token filled in) on [`WorkerApi::join_hub`], on every heartbeat, and
    /// when the token rotates.
    pub fn hub(mut self, client: HubClient, registration: RegisterRequest) -> Self {
        self.ctx.hub = Some(HubLink {
            client,
            registration: Arc::new(Mutex::new(registration)),
            sending: Arc::default(),
        });
        self
    }

    /// The router. Logs a loud warning when the API is open (no `AGENT_TOKEN`).
    pub fn router(&self) -> Router {
        self.ctx.auth.warn_if_open("worker");
        let ctx = self.ctx.clone();
        let api = Router::new()
            .route("/health", get(health))
            .route("/openapi.json", get(document))
            .route("/login", post(login))
            .route("/rotate-token", post(rotate_token))
            .route("/config", get(get_config).post(set_config))
            .route("/step/propose", post(propose))
            .route("/step/execute", post(execute))
            .route("/logs", get(logs))
            .with_state(ctx.clone());
        finish(api, WORKER_ROUTES, ctx.auth.clone(), &ctx.options)
    }

    /// Registers with the hub (retrying with backoff while it is down), then sends the
    /// registration again as a heartbeat every interval the hub asked for, until `cancel`
    /// fires. A failed heartbeat is logged and tried again on the next tick; a hub that
    /// restarted learns the worker (and its token) again from it.
    ///
    /// Fails at once when no hub was configured or the hub refuses the credentials.
    pub async fn join_hub(&self, cancel: CancellationToken) -> Result<(), AgentError> {
        let Some(link) = self.ctx.hub.clone() else {
            return Err(AgentError::Rejected {
                status: 0,
                message: "no hub configured for this worker".into(),
            });
        };
        let first = {
            let _sending = link.sending.lock().await;
            let request = self.ctx.current_registration(&link);
            link.client
                .register_until_accepted(&request, &cancel)
                .await?
        };
        tracing::info!(hub = %link.client.url(), agent = %first.agent.card.name, "registered with the hub");
        let mut interval = Duration::from_secs(first.heartbeat_interval_secs.max(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(interval) => {}
            }
            let _sending = link.sending.lock().await;
            let request = self.ctx.current_registration(&link);
            match link.client.register(&request).await {
                Ok(RegisterResponse {
                    heartbeat_interval_secs,
                    ..
                }) => interval = Duration::from_secs(heartbeat_interval_secs.max(1)),
                Err(e) => tracing::warn!(hub = %link.client.url(), error = %e, "heartbeat failed"),
            }
        }
    }
}

/// The worker's router with every endpoint of the original Ananta's worker API, open (no token) and with
/// default options; see [`WorkerApi`] for authentication, options and joining a hub.
pub fn worker_router(worker: Worker) -> Router {
    WorkerApi::new(worker).router()
}

impl WorkerCtx {
    fn current_registration(&self, link: &HubLink) -> RegisterRequest {
        let mut request = link
            .registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        request.token = self.auth.token();
        request
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn health(State(ctx): State<WorkerCtx>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        name: ctx.worker.name().to_string(),
        role: "worker".into(),
    })
}

async fn document(State(ctx): State<WorkerCtx>) -> Json<Value> {
    Json((*ctx.document).clone())
}

async fn login(
    State(ctx): State<WorkerCtx>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(login_answer(&ctx.auth, ip, body).await?))
}

/// Makes a new token; with a hub, tells the hub first (a registration carrying it) and
/// switches only when the hub took it. Until then both tokens are accepted, so the hub's
/// requests in flight keep working.
async fn rotate_token(State(ctx): State<WorkerCtx>) -> ApiResult<Json<RotateResponse>> {
    let token = ctx.auth.begin_rotation();
    if let Some(link) = &ctx.hub {
        let _sending = link.sending.lock().await;
        let mut request = ctx.current_registration(link);
        request.token = Some(token.clone());
        if let Err(e) = link.client.register(&request).await {
            ctx.auth.abort_rotation();
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "hub_unreachable",
                format!("the hub did not take the new token, the old one stays: {e}"),
            ));
        }
        ctx.auth.finish_rotation();
    } else {
        ctx.auth.finish_rotation();
    }
    tracing::info!("the worker's AGENT_TOKEN was rotated");
    Ok(Json(RotateResponse { token }))
}

async fn get_config(State(ctx): State<WorkerCtx>) -> Json<WorkerConfig> {
    Json(ctx.worker.config())
}

async fn set_config(
    State(ctx): State<WorkerCtx>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<WorkerConfig>> {
    let next: WorkerConfig = merge(&ctx.worker.config(), patch)?;
    ctx.worker.set_config(next.clone())?;
    Ok(Json(next))
}

fn one_off_task(title: &str, description: &str) -> ApiResult<Task> {
    let title: String = title
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    NewTask::new(title)
        .description(description)
        .into_task()
        .map_err(ApiError::from)
}

async fn propose(
    State(ctx): State<WorkerCtx>,
    ApiJson(body): ApiJson<WorkerProposeBody>,
) -> ApiResult<Json<Proposed>> {
    let task = match (body.task, body.prompt) {
        (Some(task), _) => task,
        (None, Some(prompt)) => one_off_task(&prompt, &prompt)?,
        (None, None) => {
            return Err(ApiError::invalid(
                "give `task` (what a hub sends) or `prompt` (a one-off instruction)",
            ));
        }
    };
    Ok(Json(
        ctx.worker.propose(&task, body.template.as_ref()).await?,
    ))
}

async fn execute(
    State(ctx): State<WorkerCtx>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WorkerExecuteBody>,
) -> ApiResult<Json<StepRecord>> {
    let key = match headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= 200 => Some(k.trim().to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    "the idempotency key must be 1 to 200 visible ASCII characters",
                ));
            }
        },
    };
    let task = match body.task {
        Some(task) => task,
        None => {
            let Some(command) = body.command.as_deref() else {
                return Err(ApiError::invalid(
                    "give `command` (and optionally `task_id`), or `task` with a proposal",
                ));
            };
            let mut task = one_off_task("one-off command", command)?;
            if let Some(id) = body.task_id {
                task.id = id;
            }
            task
        }
    };
    let request = ExecuteRequest {
        task,
        command: body.command,
        approved: body.approved,
    };
    if let Some(key) = &key {
        let mut remembered = ctx.idempotency.lock().unwrap_or_else(|p| p.into_inner());
        match remembered.slots.get(key) {
            Some(Slot::Running) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    "a request with this idempotency key is still running; ask again",
                )
                .retry_after(1));
            }
            Some(Slot::Done(result)) => return (**result).clone().map(Json),
            None => {
                remembered.slots.insert(key.clone(), Slot::Running);
                remembered.order.push_back(key.clone());
                while remembered.order.len() > REMEMBERED_KEYS {
                    if let Some(old) = remembered.order.pop_front() {
                        remembered.slots.remove(&old);
                    }
                }
            }
        }
    }
    // The command runs to its end even when the caller goes away, and its result is kept
    // for the caller's retry.
    let worker = ctx.worker.clone();
    let remembered = ctx.idempotency.clone();
    let key_on_failure = key.clone();
    let run = tokio::spawn(async move {
        let result = AgentClient::execute(&worker, request)
            .await
            .map_err(ApiError::from);
        if let Some(key) = key {
            remembered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .slots
                .insert(key, Slot::Done(Box::new(result.clone())));
        }
        result
    });
    match run.await {
        Ok(result) => result.map(Json),
        Err(e) => {
            let error = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the step failed unexpectedly: {e}"),
            );
            if let Some(key) = key_on_failure {
                // Not left "running" forever: a retry gets the same answer.
                ctx.idempotency
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .slots
                    .insert(key, Slot::Done(Box::new(Err(error.clone()))));
            }
            Err(error)
        }
    }
}

async fn logs(
    State(ctx): State<WorkerCtx>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Json<Vec<LogEntry>> {
    Json(ctx.worker.logs(log_query(&q, None)))
}
