//! HTTP for the Hub and the Worker (feature `http`): axum routers with the seed's API,
//! authentication, the remote-agent client, registration and heartbeats, server-sent events
//! and an OpenAPI document.

pub mod error;
pub mod types;

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, ErrorInfo, OptionalBody};
pub use types::{
    HealthResponse, IDEMPOTENCY_HEADER, RegisterRequest, RegisterResponse, WorkerExecuteBody,
    WorkerProposeBody,
};
