//! What the in-process HTTP tests share: a hub with a MemoryStore behind its router, an
//! in-process worker (scripted model, an executor that records instead of running, the
//! built-in command policy), and a live worker server on a loopback port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ananta_core::exec::{ExecOutcome, ExecRequest, OutputSink};
use ananta_core::http::{Auth, HttpOptions, HubApi, Role, WorkerApi, serve};
use ananta_core::llm::ChatResponse;
use ananta_core::{AgentId, CancellationToken, ExecError, Executor, Hub, Worker};
use ananta_exec::{CommandPolicy, PolicyMode};
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use tower::ServiceExt;

pub const HUB_TOKEN: &str = "hub-token-for-tests";

/// Records every command and answers success without running anything.
#[derive(Default, Clone)]
pub struct RecordingExecutor(pub Arc<Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl Executor for RecordingExecutor {
    async fn run(
        &self,
        request: ExecRequest,
        _output: Option<OutputSink>,
    ) -> Result<ExecOutcome, ExecError> {
        self.0.lock().unwrap().push(request.command.clone());
        Ok(ExecOutcome {
            exit_code: Some(0),
            stdout: format!("ran: {}\n", request.command),
            ..Default::default()
        })
    }
}

/// A worker whose model always proposes `echo hello`, gated by the built-in policy.
pub fn worker(name: &str, executor: RecordingExecutor) -> Worker {
    Worker::builder(AgentId::new(name).unwrap())
        .llm(Arc::new(ScriptedProvider::from_fn(|_| {
            Ok(ChatResponse::text(
                r#"{"reason": "greet", "command": "echo hello"}"#,
            ))
        })))
        .executor(Arc::new(executor))
        .gate(Arc::new(CommandPolicy::builtin().gate(PolicyMode::Approve)))
        .build()
        .unwrap()
}

pub struct TestHub {
    pub hub: Hub,
    pub api: HubApi,
    pub router: Router,
    pub auth: Auth,
    pub shutdown: CancellationToken,
    pub executed: RecordingExecutor,
    /// A live worker server (open, no token) the hub can register by URL.
    pub live_url: String,
    pub live_executed: RecordingExecutor,
    /// Stops the live worker server.
    pub live_shutdown: CancellationToken,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.live_shutdown.cancel();
    }
}

pub async fn test_hub() -> TestHub {
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let executed = RecordingExecutor::default();
    let w1 = worker("w1", executed.clone());
    hub.register_agent(w1.card(), Arc::new(w1)).await.unwrap();
    let auth = Auth::builder()
        .token(Some(HUB_TOKEN.into()))
        .jwt_secret("a-test-secret-that-is-long-enough-for-hs256")
        .user("alice", "alice-password", Role::User)
        .unwrap()
        .user("rita", "rita-password", Role::Reader)
        .unwrap()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let options = HttpOptions {
        shutdown: shutdown.clone(),
        ..HttpOptions::named("test-hub")
    };
    let api = HubApi::new(hub.clone()).auth(auth.clone()).options(options);
    let router = api.router();

    let live_executed = RecordingExecutor::default();
    let live_shutdown = CancellationToken::new();
    let live = WorkerApi::new(worker("live", live_executed.clone())).options(HttpOptions {
        shutdown: live_shutdown.clone(),
        ..HttpOptions::named("live")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        live.router(),
        live_shutdown.clone(),
        Duration::from_secs(1),
    ));
    TestHub {
        hub,
        api,
        router,
        auth,
        shutdown,
        executed,
        live_url,
        live_executed,
        live_shutdown,
    }
}

/// Sends one request through the router in-process.
pub async fn call(router: &Router, request: Request<Body>) -> Response<Body> {
    router.clone().oneshot(request).await.unwrap()
}

/// Sends a JSON request with the hub token; returns status and body JSON (Null when empty).
pub async fn json(
    router: &Router,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    json_as(router, method, path, body, Some(HUB_TOKEN)).await
}

pub async fn json_as(
    router: &Router,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    };
    let response = call(router, request).await;
    let status = response.status().as_u16();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        // An event stream does not end by itself: only its status counts here.
        return (status, serde_json::Value::Null);
    }
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap();
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    (status, value)
}
