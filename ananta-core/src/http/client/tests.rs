use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{HubClient, RemoteAgent};
use crate::agent::AgentInfo;
use crate::agent::{AgentClient, ExecuteRequest, ProposeRequest};
use crate::error::Error;
use crate::error::{AgentError, ExecError};
use crate::exec::ExecOutcome;
use crate::http::error::ApiError;
use crate::http::types::{IDEMPOTENCY_HEADER, RegisterRequest, RegisterResponse};
use crate::http::types::{WorkerExecuteBody, WorkerProposeBody};
use crate::ids::AgentId;
use crate::task::{NewTask, Proposal, Task};
use crate::task::{Proposed, StepRecord};

/// One request the test server saw.
#[derive(Debug, Clone)]
struct Seen {
    auth: Option<String>,
    key: Option<String>,
    body: Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn record(&self, headers: &AxumHeaders, body: Value) -> usize {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut seen = self.0.lock().unwrap();
        seen.push(Seen {
            auth: header("authorization"),
            key: header(IDEMPOTENCY_HEADER),
            body,
            at: Instant::now(),
        });
        seen.len()
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// How many requests carried each idempotency key.
    fn keys(&self) -> HashMap<String, usize> {
        let mut keys = HashMap::new();
        for seen in self.all() {
            *keys.entry(seen.key.unwrap_or_default()).or_default() += 1;
        }
        keys
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn task() -> Task {
    NewTask::new("List the files").into_task().unwrap()
}

/// A fixed time, so fixtures compare equal after a round trip.
fn at(seconds: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
}

fn proposal() -> Proposal {
    let mut p = Proposal::new("look around", "ls -la");
    p.proposed_at = at(0);
    p.raw = r#"{"reason":"look around","command":"ls -la"}"#.into();
    p.agent = Some(AgentId::new("w1").unwrap());
    p.needs_approval = vec!["lists files".into()];
    p
}

fn step() -> StepRecord {
    StepRecord {
        index: 1,
        agent: Some(AgentId::new("w1").unwrap()),
        prompt: "List the files".into(),
        proposal: Some(proposal()),
        command: "ls -la".into(),
        outcome: ExecOutcome {
            exit_code: Some(0),
            stdout: "a.txt\n".into(),
            duration_ms: 3,
            ..Default::default()
        },
        started_at: at(1),
        finished_at: at(2),
    }
}

fn execute_request(command: Option<&str>) -> ExecuteRequest {
    ExecuteRequest {
        task: task(),
        command: command.map(str::to_owned),
        approved: false,
    }
}

fn agent(base: &str) -> RemoteAgent {
    RemoteAgent::new(base, Some("secret".into())).unwrap()
}

/// A worker whose propose and execute answer as given, recording every request.
async fn worker(
    recorder: Recorder,
    propose: fn(usize) -> Response,
    execute: fn(usize, &Value) -> Response,
) -> String {
    let on_propose = {
        let recorder = recorder.clone();
        move |headers: AxumHeaders, axum::Json(body): axum::Json<Value>| async move {
            let n = recorder.record(&headers, body);
            propose(n)
        }
    };
    let on_execute = move |headers: AxumHeaders, axum::Json(body): axum::Json<Value>| async move {
        let n = recorder.record(&headers, body.clone());
        execute(n, &body)
    };
    serve(
        Router::new()
            .route("/step/propose", post(on_propose))
            .route("/step/execute", post(on_execute)),
    )
    .await
}

fn ok_propose(_: usize) -> Response {
    axum::Json(Proposed::Command(proposal())).into_response()
}

fn ok_execute(_: usize, _: &Value) -> Response {
    axum::Json(step()).into_response()
}

fn api(error: impl Into<Error>) -> Response {
    ApiError::from(error.into()).into_response()
}

#[test]
fn urls_are_checked_and_trimmed() {
    let a = RemoteAgent::new("http://127.0.0.1:5001//", None).unwrap();
    assert_eq!(a.base_url(), "http://127.0.0.1:5001");
    assert_eq!(
        RemoteAgent::new("https://w.example/api/", None)
            .unwrap()
            .base_url(),
        "https://w.example/api"
    );
    for bad in ["ftp://x", "not a url", "", "http://h:1/?q=1", "file:///tmp"] {
        let e = RemoteAgent::new(bad, None).unwrap_err();
        assert!(matches!(e, AgentError::Unreachable(_)), "{bad}: {e}");
    }
    assert!(HubClient::new("mailto:x@y", None).is_err());
    assert_eq!(
        HubClient::new("http://hub:5000/", None).unwrap().url(),
        "http://hub:5000"
    );
}

#[test]
fn debug_hides_secrets() {
    let a = RemoteAgent::new("http://w:1", Some("topsecret".into())).unwrap();
    let text = format!("{a:?}");
    assert!(!text.contains("topsecret"), "{text}");
    assert!(text.contains("token_set: true"), "{text}");
    let h = HubClient::new("http://h:1", Some("hubsecret".into())).unwrap();
    let text = format!("{h:?}");
    assert!(!text.contains("hubsecret"), "{text}");
    assert!(text.contains("credential_set: true"), "{text}");
    let none = RemoteAgent::new("http://w:1", Some(String::new())).unwrap();
    assert!(!none.token_is_set());
}

#[tokio::test]
async fn propose_round_trip_with_bearer_token() {
    let recorder = Recorder::default();
    let base = worker(recorder.clone(), ok_propose, ok_execute).await;
    let agent = agent(&base);
    let task = task();
    let proposed = agent
        .propose(ProposeRequest {
            task: task.clone(),
            template: None,
        })
        .await
        .unwrap();
    assert_eq!(proposed, Proposed::Command(proposal()));
    let seen = recorder.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer secret"));
    assert_eq!(seen[0].key, None, "propose sends no idempotency key");
    // The worker's route reads the body as {task, template}.
    let body: WorkerProposeBody = serde_json::from_value(seen[0].body.clone()).unwrap();
    assert_eq!(body.task, Some(task));
}

#[tokio::test]
async fn execute_round_trip_with_a_fresh_key_per_call() {
    let recorder = Recorder::default();
    let base = worker(recorder.clone(), ok_propose, ok_execute).await;
    let agent = agent(&base);
    let record = agent
        .execute(execute_request(Some("ls -la")))
        .await
        .unwrap();
    assert_eq!(record, step());
    agent.execute(execute_request(None)).await.unwrap();
    let seen = recorder.all();
    assert_eq!(seen.len(), 2);
    let body: WorkerExecuteBody = serde_json::from_value(seen[0].body.clone()).unwrap();
    assert_eq!(body.command.as_deref(), Some("ls -la"));
    assert!(!body.approved);
    let keys: Vec<String> = seen.iter().map(|s| s.key.clone().unwrap()).collect();
    for key in &keys {
        key.parse::<ulid::Ulid>().unwrap();
    }
    assert_ne!(keys[0], keys[1]);
    assert_eq!(seen[1].auth.as_deref(), Some("Bearer secret"));
}

#[tokio::test]
async fn execute_is_retried_after_503_with_the_same_key() {
    let recorder = Recorder::default();
    let base = worker(recorder.clone(), ok_propose, |n, _| {
        if n == 1 {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "busy").into_response()
        } else {
            ok_execute(n, &Value::Null)
        }
    })
    .await;
    let record = agent(&base).execute(execute_request(None)).await.unwrap();
    assert_eq!(record.command, "ls -la");
    let keys = recorder.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys.values().copied().collect::<Vec<_>>(), vec![2]);
}

#[tokio::test]
async fn execute_waits_while_the_first_attempt_is_in_progress() {
    let recorder = Recorder::default();
    let base = worker(recorder.clone(), ok_propose, |n, _| {
        if n == 1 {
            ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this key is still running",
            )
            .into_response()
        } else {
            ok_execute(n, &Value::Null)
        }
    })
    .await;
    agent(&base).execute(execute_request(None)).await.unwrap();
    let keys = recorder.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys.values().sum::<usize>(), 2);
}

#[tokio::test]
async fn execute_gives_up_after_the_configured_attempts() {
    let recorder = Recorder::default();
    let base = worker(recorder.clone(), ok_propose, |_, _| {
        ApiError::new(StatusCode::BAD_GATEWAY, "exec_failed", "spawn failed").into_response()
    })
    .await;
    let e = agent(&base)
        .execute_attempts(2)
        .execute(execute_request(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Rejected { status: 502, message } if message == "exec_failed: spawn failed"),
        "{e:?}"
    );
    assert_eq!(recorder.count(), 2);
    assert_eq!(recorder.keys().len(), 1);
}

/// The worker's refusals come back as the typed errors the worker had, and are not retried.
#[tokio::test]
async fn error_answers_map_to_typed_errors() {
    let recorder = Recorder::default();
    let base = worker(
        recorder.clone(),
        |_| ApiError::unauthorized("missing or wrong token").into_response(),
        |_, body| {
            let task: Task = serde_json::from_value(body["task"].clone()).unwrap();
            match body["command"].as_str().unwrap_or_default() {
                "denied" => api(ExecError::Denied {
                    rule: "rm-root".into(),
                    reason: "destroys the system".into(),
                }),
                "approval" => api(ExecError::NeedsApproval {
                    reasons: vec!["writes files".into(), "uses the network".into()],
                }),
                "invalid" => api(ExecError::InvalidRequest("empty command".into())),
                "sandbox" => api(ExecError::SandboxUnavailable("no landlock".into())),
                "none" => api(AgentError::NoCommand(task.id)),
                "unauthorized" => ApiError::unauthorized("wrong token").into_response(),
                "html" => (StatusCode::INTERNAL_SERVER_ERROR, "<html>oops</html>").into_response(),
                "garbage" => (StatusCode::OK, "not json").into_response(),
                other => ApiError::invalid(format!("unexpected {other}")).into_response(),
            }
        },
    )
    .await;
    let agent = agent(&base);
    let run = |command: &'static str| {
        let agent = agent.clone();
        async move {
            agent
                .execute(execute_request(Some(command)))
                .await
                .unwrap_err()
        }
    };

    match run("denied").await {
        AgentError::Exec(ExecError::Denied { rule, reason }) => {
            assert_eq!(rule, "rm-root");
            assert_eq!(reason, "destroys the system");
        }
        e => panic!("{e:?}"),
    }
    match run("approval").await {
        AgentError::Exec(ExecError::NeedsApproval { reasons }) => {
            assert_eq!(reasons, vec!["writes files", "uses the network"]);
        }
        e => panic!("{e:?}"),
    }
    match run("invalid").await {
        AgentError::Exec(ExecError::InvalidRequest(m)) => assert_eq!(m, "empty command"),
        e => panic!("{e:?}"),
    }
    match run("sandbox").await {
        AgentError::Exec(ExecError::SandboxUnavailable(m)) => assert_eq!(m, "no landlock"),
        e => panic!("{e:?}"),
    }
    assert!(matches!(run("none").await, AgentError::NoCommand(_)));
    match run("unauthorized").await {
        AgentError::Rejected { status, message } => {
            assert_eq!(status, 401);
            assert_eq!(message, "unauthorized: wrong token");
        }
        e => panic!("{e:?}"),
    }
    match run("html").await {
        AgentError::Rejected { status, message } => {
            assert_eq!(status, 500);
            assert!(message.contains("oops"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    match run("garbage").await {
        AgentError::Rejected { status, message } => {
            assert_eq!(status, 200);
            assert!(message.starts_with("invalid response: "), "{message}");
        }
        e => panic!("{e:?}"),
    }
    match run("other").await {
        AgentError::Rejected { status, message } => {
            assert_eq!(status, 422);
            assert_eq!(message, "invalid_input: unexpected other");
        }
        e => panic!("{e:?}"),
    }
    // None of these was sent twice (sandbox_unavailable is a 503 that no retry fixes).
    assert_eq!(recorder.count(), 9);
    assert_eq!(recorder.keys().len(), 9);

    let e = agent
        .propose(ProposeRequest {
            task: task(),
            template: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Rejected { status: 401, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_slow_worker_is_a_timeout() {
    let recorder = Recorder::default();
    let slow = {
        let recorder = recorder.clone();
        move |headers: AxumHeaders| async move {
            recorder.record(&headers, Value::Null);
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(step())
        }
    };
    let base = serve(
        Router::new()
            .route("/step/propose", post(slow.clone()))
            .route("/step/execute", post(slow)),
    )
    .await;
    let agent = agent(&base)
        .propose_timeout(Duration::from_millis(200))
        .execute_timeout(Duration::from_millis(200))
        .execute_attempts(2);
    let e = agent
        .propose(ProposeRequest {
            task: task(),
            template: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::Timeout(d) if d == Duration::from_millis(200)),
        "{e:?}"
    );
    assert_eq!(recorder.count(), 1, "propose is not retried");

    let e = agent.execute(execute_request(None)).await.unwrap_err();
    assert!(
        matches!(e, AgentError::Timeout(d) if d == Duration::from_millis(200)),
        "{e:?}"
    );
    // Both attempts of the execute call carried one key.
    let keys = recorder.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.values().any(|n| *n == 2), "{keys:?}");
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let agent = agent(&base).execute_attempts(1);
    let e = agent
        .propose(ProposeRequest {
            task: task(),
            template: None,
        })
        .await
        .unwrap_err();
    match &e {
        AgentError::Unreachable(m) => assert!(m.contains(&base), "{m}"),
        e => panic!("{e:?}"),
    }
    assert!(e.is_transient());
    assert!(matches!(
        agent.execute(execute_request(None)).await,
        Err(AgentError::Unreachable(_))
    ));
    assert!(matches!(
        agent.ping().await,
        Err(AgentError::Unreachable(_))
    ));
}

#[tokio::test]
async fn set_token_on_a_clone_changes_what_the_original_sends() {
    let recorder = Recorder::default();
    let base = worker(recorder.clone(), ok_propose, ok_execute).await;
    let original = agent(&base);
    let clone = original.clone();
    clone.set_token(Some("rotated".into()));
    assert!(original.token_is_set());
    original.execute(execute_request(None)).await.unwrap();
    clone.set_token(None);
    assert!(!original.token_is_set());
    original.execute(execute_request(None)).await.unwrap();
    let auth: Vec<Option<String>> = recorder.all().into_iter().map(|s| s.auth).collect();
    assert_eq!(auth, vec![Some("Bearer rotated".to_string()), None]);
}

#[tokio::test]
async fn ping_needs_an_ok_health() {
    let health = |status: &'static str| {
        Router::new().route(
            "/health",
            get(move || async move {
                axum::Json(json!({"status": status, "name": "w1", "role": "worker"}))
            }),
        )
    };
    let ok = RemoteAgent::new(serve(health("ok")).await, None).unwrap();
    ok.ping().await.unwrap();
    let answer = ok.health().await.unwrap();
    assert_eq!(
        (answer.name.as_str(), answer.role.as_str()),
        ("w1", "worker")
    );

    let sick = RemoteAgent::new(serve(health("degraded")).await, None).unwrap();
    assert!(matches!(
        sick.ping().await,
        Err(AgentError::Rejected { status: 200, .. })
    ));
    let missing = RemoteAgent::new(serve(Router::new()).await, None).unwrap();
    assert!(matches!(
        missing.ping().await,
        Err(AgentError::Rejected { status: 404, .. })
    ));
}

/// A hub whose `/register` answers with `answer(n)` for the n-th request (1-based).
async fn hub(recorder: Recorder, answer: fn(usize, RegisterRequest) -> Response) -> String {
    let on_register = move |headers: AxumHeaders, axum::Json(body): axum::Json<Value>| async move {
        let n = recorder.record(&headers, body.clone());
        let request: RegisterRequest = serde_json::from_value(body).unwrap();
        answer(n, request)
    };
    serve(Router::new().route("/register", post(on_register))).await
}

fn accepted(request: RegisterRequest, heartbeat_interval_secs: u64) -> Response {
    axum::Json(RegisterResponse {
        agent: AgentInfo::registered(None, request.card(), Utc::now()),
        heartbeat_interval_secs,
    })
    .into_response()
}

fn unavailable() -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "down").into_response()
}

fn registration() -> RegisterRequest {
    let mut request = RegisterRequest::new(AgentId::new("w1").unwrap(), "http://w1:5001");
    request.token = Some("worker-token".into());
    request
}

/// `register_until_accepted` without cancellation; the test fails if it takes over 3 s.
async fn register_within(client: &HubClient) -> Result<RegisterResponse, AgentError> {
    tokio::time::timeout(
        Duration::from_secs(3),
        client.register_until_accepted(&registration(), &CancellationToken::new()),
    )
    .await
    .expect("register_until_accepted did not return in time")
}

#[tokio::test]
async fn register_until_accepted_retries_while_the_hub_is_unavailable() {
    let recorder = Recorder::default();
    let base = hub(recorder.clone(), |n, request| {
        if n <= 2 {
            unavailable()
        } else {
            accepted(request, 30)
        }
    })
    .await;
    let client = HubClient::new(&base, Some("hub-token".into())).unwrap();
    let answer = register_within(&client).await.unwrap();
    assert_eq!(answer.agent.card.name.as_str(), "w1");
    assert_eq!(answer.heartbeat_interval_secs, 30);
    let seen = recorder.all();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some("Bearer hub-token"))
    );
    assert_eq!(seen[0].body["token"], "worker-token");
}

#[tokio::test]
async fn register_until_accepted_stops_at_once_on_401_and_422() {
    let recorder = Recorder::default();
    let base = hub(recorder.clone(), |_, _| {
        ApiError::unauthorized("wrong registration secret").into_response()
    })
    .await;
    let client = HubClient::new(&base, None).unwrap();
    let e = register_within(&client).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Rejected { status: 401, .. }),
        "{e:?}"
    );
    assert_eq!(recorder.count(), 1);
    assert_eq!(recorder.all()[0].auth, None);

    let recorder = Recorder::default();
    let base = hub(recorder.clone(), |_, _| {
        ApiError::invalid("agent url must be http(s)").into_response()
    })
    .await;
    let e = register_within(&HubClient::new(&base, None).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Rejected { status: 422, .. }),
        "{e:?}"
    );
    assert_eq!(recorder.count(), 1);
}

#[tokio::test]
async fn register_until_accepted_returns_cancelled() {
    let recorder = Recorder::default();
    let base = hub(recorder.clone(), |_, _| unavailable()).await;
    let client = HubClient::new(&base, None).unwrap();
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        })
    };
    let e = tokio::time::timeout(
        Duration::from_secs(3),
        client.register_until_accepted(&registration(), &cancel),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(e, AgentError::Cancelled), "{e:?}");
    assert!(recorder.count() >= 1);
    canceller.await.unwrap();

    // Also while the hub cannot be reached at all.
    let down = HubClient::new(format!("http://127.0.0.1:{}", closed_port()), None).unwrap();
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    assert!(matches!(
        down.register_until_accepted(&registration(), &cancelled)
            .await,
        Err(AgentError::Cancelled)
    ));
}

#[tokio::test]
async fn register_maps_429_and_unreachable() {
    let recorder = Recorder::default();
    let base = hub(recorder.clone(), |_, _| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down").into_response()
    })
    .await;
    let e = HubClient::new(&base, None)
        .unwrap()
        .register(&registration())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Rejected { status: 429, .. }),
        "{e:?}"
    );
    let down = HubClient::new(format!("http://127.0.0.1:{}", closed_port()), None).unwrap();
    assert!(matches!(
        down.register(&registration()).await,
        Err(AgentError::Unreachable(_))
    ));
}

/// Waits until the recorder has seen `n` requests (at most 4 s).
async fn wait_for(recorder: &Recorder, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(4);
    while recorder.count() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} requests",
            recorder.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn heartbeat_loop_keeps_registering_until_cancelled() {
    let recorder = Recorder::default();
    // The first heartbeat fails: the loop goes on.
    let base = hub(recorder.clone(), |n, request| {
        if n == 1 {
            unavailable()
        } else {
            accepted(request, 30)
        }
    })
    .await;
    let client = HubClient::new(&base, Some("old".into())).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(client.clone().heartbeat_loop(
        registration(),
        Duration::from_millis(50),
        cancel.clone(),
    ));
    wait_for(&recorder, 2).await;
    client.set_credential(Some("new".into()));
    let switched = recorder.count();
    wait_for(&recorder, switched + 2).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .unwrap()
        .unwrap();
    let stopped_at = recorder.count();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(recorder.count(), stopped_at, "no heartbeat after cancel");
    let seen = recorder.all();
    assert!(seen.iter().all(|s| s.body["name"] == "w1"));
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer old"));
    assert_eq!(seen.last().unwrap().auth.as_deref(), Some("Bearer new"));
}

#[tokio::test]
async fn heartbeat_loop_follows_a_shorter_hub_interval() {
    let recorder = Recorder::default();
    let base = hub(recorder.clone(), |_, request| accepted(request, 1)).await;
    let client = HubClient::new(&base, None).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(client.heartbeat_loop(
        registration(),
        Duration::from_millis(1500),
        cancel.clone(),
    ));
    wait_for(&recorder, 2).await;
    cancel.cancel();
    handle.await.unwrap();
    let seen = recorder.all();
    let gap = seen[1].at - seen[0].at;
    assert!(gap < Duration::from_millis(1400), "{gap:?}");
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
}
