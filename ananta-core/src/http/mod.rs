//! HTTP for the Hub and the Worker (feature `http`): axum routers with the original Ananta's API,
//! authentication and roles, the remote-agent client, registration and heartbeats,
//! server-sent events and an OpenAPI document.
//!
//! - [`hub_router`] / [`HubApi`]: every endpoint of the original Ananta's hub (tasks, templates,
//!   assignment, forwarded steps, logs, `/register`, `/agents`, `/events`), plus approvals;
//!   [`HubApi::monitor`] marks agents offline after missed heartbeats or failed health checks.
//! - [`worker_router`] / [`WorkerApi`]: the original Ananta's worker (`/step/propose`, `/step/execute`
//!   with idempotency keys, `/logs`, `/config`); [`WorkerApi::join_hub`] registers and
//!   heartbeats.
//! - [`RemoteAgent`]: the [`AgentClient`](crate::AgentClient) a hub reaches a worker through,
//!   with the worker's token, timeouts and safe retries.
//! - [`Auth`]: `AGENT_TOKEN` (constant-time), users with argon2 hashes logging in for a JWT
//!   with a role, token rotation, rate limits.
//! - [`serve`] with graceful shutdown on [`shutdown_signal`].
//!
//! Every error is `{"error": {"code", "message", "details"?}}` ([`ApiError`]) with a fitting
//! status; `GET /openapi.json` describes the whole API ([`openapi_document`]).
//!
//! # What the API does
//!
//! - **Routes**: every endpoint of the original Ananta (`/health`, `/config`, `/step/propose`,
//!   `/step/execute`, `/logs`, `/register`, `/agents`, `/templates…`, `/tasks…`,
//!   `/tasks/{id}/assign|step/propose|step/execute|logs`, `/events`) plus
//!   `/tasks/{id}/approve|reject`, `/login`, `/rotate-token` and `/openapi.json` (OpenAPI 3,
//!   generated with `schemars` from the types the handlers use; `HUB_ROUTES` / `WORKER_ROUTES`
//!   list them with the access each needs).
//! - **Errors**: always `{"error": {"code", "message", "details"?}}`: 400 malformed, 401/403 auth,
//!   404 unknown id, 409 invalid transition, version conflict or `approval_required` (the task
//!   waits, blocked, for `/approve` or `/reject`), 403 `command_denied`, 413 too large, 415 not
//!   JSON, 422 wrong shape, 429 rate limited, 502/504 a forwarded worker failed or timed out, 503
//!   agent offline or shutting down.
//! - **Auth**: with `AGENT_TOKEN` set, every route but `/health` and `/login` needs `Authorization: Bearer <token>` (or `?token=`), compared in constant time; without it
//!   the server logs a loud warning and is open to anyone who reaches it. Users
//!   (`INITIAL_ADMIN_PASSWORD`, argon2 hashes) `POST /login` for a JWT (HS256, `SECRET_KEY`) with
//!   a role: `admin` changes config, templates and tokens; `user` creates and drives tasks;
//!   `reader` reads. `POST /rotate-token` on a worker makes a new token, tells its hub, then
//!   switches.
//! - **Workers**: register with `POST /register` (the hub checks their `/health` first; a
//!   `REGISTRATION_SECRET` may stand in for the hub token), retry with backoff while the hub is
//!   down, and send the registration again as their heartbeat. The hub marks an agent offline
//!   after missed heartbeats or a failed health check (`agent_status_changed` event) and never
//!   forwards to it (503 `agent_offline`, or `HubBuilder::reassign_offline`). Execute requests
//!   carry an `idempotency-key` the worker remembers, so a retried request never runs a command
//!   twice.
//! - **Operations**: `GET /events` (server-sent events, `?task_id=`), `GET
//!   /tasks/{id}/logs?follow=true` (the log live), graceful shutdown on SIGTERM/SIGINT, a 1 MiB
//!   body limit, a request timeout, CORS (`CORS_ORIGINS`), rate limits on `/login` and
//!   `/register`, an `x-request-id` on every answer and in the trace.
//!
//! # Authentication
//!
//! Authentication and roles of the HTTP API: the system token (`AGENT_TOKEN`, full admin
//! access, rotatable), user logins with argon2-hashed passwords that yield HS256 JWTs carrying a
//! [`Role`], the registration secret of `POST /register`, and per-client-IP rate limits.
//!
//! Routers ask [`Auth::authorize`] with the [`Access`] a route needs; the answer is either the
//! [`Principal`] who made the request or an [`ApiError`] (401 without valid credentials, 403
//! with a role that is too low). Without a system token the server runs in the original Ananta's insecure
//! mode: every route is open ([`Auth::is_open`], [`Auth::warn_if_open`]).
//!
//! # Routes and OpenAPI
//!
//! The route tables of both roles and the OpenAPI document built from them.
//!
//! Each table lists every endpoint with its method, path, the access it needs, and the types
//! of its query, body and answer. The authentication middleware reads the access from it, and
//! the OpenAPI document's schemas are generated with `schemars` from the same types the
//! handlers (de)serialize, so the three cannot drift apart.
//!
//! # Errors of the clients
//!
//! [`RemoteAgent`] and [`HubClient`] read the server's error body back into the
//! [`AgentError`](crate::error::AgentError) the worker had, so a refusal on the worker is the
//! same typed refusal on the hub:
//!
//! | answer | error |
//! |---|---|
//! | `command_denied` (details `rule`, `reason`) | `AgentError::Exec(ExecError::Denied { rule, reason })` |
//! | `approval_required` (details `reasons`) | `AgentError::Exec(ExecError::NeedsApproval { reasons })` |
//! | `invalid_command` | `AgentError::Exec(ExecError::InvalidRequest(message))` |
//! | `sandbox_unavailable` | `AgentError::Exec(ExecError::SandboxUnavailable(message))` |
//! | `no_proposal` | `AgentError::NoCommand(task)`, the request's task |
//! | any other non-2xx, JSON or not | `AgentError::Rejected { status, message: "<code>: <message>" }` |
//! | a 2xx whose body does not parse | `AgentError::Rejected { status, message: "invalid response: …" }` |
//! | no answer within the configured time | `AgentError::Timeout(that time)` |
//! | connection refused, reset, DNS… | `AgentError::Unreachable(text naming the URL)` |
//!
//! # Serving
//!
//! ```no_run
//! use std::sync::Arc;
//! use ananta_core::http::{Auth, HttpOptions, HubApi, serve, shutdown_signal};
//! use ananta_core::{CancellationToken, Hub};
//! # async fn demo(store: Arc<dyn ananta_core::TaskStore>) -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::builder().store(store).build()?;
//! let shutdown = CancellationToken::new();
//! let options = HttpOptions { shutdown: shutdown.clone(), ..HttpOptions::named("hub") };
//! let api = HubApi::new(hub).auth(Auth::from_env()?).options(options);
//! tokio::spawn({ let api = api.clone(); let c = shutdown.clone(); async move { api.monitor(c).await } });
//! tokio::spawn({ let s = shutdown.clone(); async move { shutdown_signal().await; s.cancel() } });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! serve(listener, api.router(), shutdown, std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod error;
mod events;
mod extract;
mod hub_ctx;
mod hub_routes;
mod openapi;
mod run_routes;
mod server;
mod types;
mod worker_routes;

pub use auth::{
    Access, Auth, AuthBuilder, AuthError, LoginRequest, LoginResponse, Principal, RateBucket, Role,
};
pub use client::{HubClient, RemoteAgent};
pub use error::{ApiError, ErrorBody, ErrorInfo};
pub use extract::{ApiJson, ApiPath, ApiQuery, OptionalBody};
pub use hub_routes::{HubApi, hub_router};
pub use openapi::{HUB_ROUTES, RouteSpec, WORKER_ROUTES, openapi_document};
pub use server::{Cors, HttpOptions, serve, shutdown_signal};
pub use types::{
    AssignBody, CommandBody, EventsQuery, HealthResponse, HubSettings, HubStepBody,
    IDEMPOTENCY_HEADER, LogsQuery, PatchQuery, RegisterRequest, RegisterResponse, RejectBody,
    RotateResponse, RunBody, RunStartedResponse, TasksQuery, WorkerExecuteBody, WorkerProposeBody,
};
pub use worker_routes::{WorkerApi, worker_router};
