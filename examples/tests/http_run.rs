//! `POST /tasks/{id}/run` over a real socket: it answers at once, the run's progress (the
//! model's answer as it streams, the command's output) and its end arrive on `GET /events`,
//! a second start is refused while it runs, `DELETE` stops it, and bad bodies get typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::http::HubApi;
use ananta_core::llm::{ChatRequest, ChatResponse};
use ananta_core::{AgentId, CancellationToken, Hub, TaskStatus, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;
use futures::StreamExt;
use serde_json::{Value, json};

struct Server {
    base: String,
    client: reqwest::Client,
    hub: Hub,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A model that runs the command the task's title names, then says it is finished.
fn title_runner() -> ScriptedProvider {
    ScriptedProvider::from_fn(|request: &ChatRequest| {
        let task = &request.messages[1].content;
        let command = task
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("Task: ")
            .to_string();
        let answer = if request.messages.len() <= 2 {
            json!({"analysis": "run it", "next": {"run": command}}).to_string()
        } else {
            json!({"analysis": "ran it", "next": {"finish": "ran the command"}}).to_string()
        };
        Ok(ChatResponse::text(answer))
    })
    .chunk_size(6)
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let worker = Worker::builder(AgentId::new("w1").unwrap())
        .llm(Arc::new(title_runner()))
        .executor(Arc::new(
            ShellExecutor::new(dir.path()).timeout(Duration::from_secs(60)),
        ))
        .build()
        .unwrap();
    hub.register_worker(&worker).await.unwrap();
    let shutdown = CancellationToken::new();
    let router = HubApi::new(hub.clone()).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ananta_core::http::serve(
        listener,
        router,
        shutdown.clone(),
        Duration::from_secs(1),
    ));
    ananta_core::tls::install_default_provider();
    Server {
        base,
        client: reqwest::Client::new(),
        hub,
        shutdown,
        _dir: dir,
    }
}

impl Server {
    /// `POST` (start) or `DELETE` (stop) `/tasks/{id}/run`.
    async fn run(&self, method: reqwest::Method, id: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, &format!("/tasks/{id}/run"), body).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn assigned_task(&self, title: &str) -> String {
        let (status, task) = self
            .call(
                reqwest::Method::POST,
                "/tasks",
                Some(json!({"title": title, "checks": ["true"]})),
            )
            .await;
        assert_eq!(status, 201, "{task}");
        let id = task["id"].as_str().unwrap().to_string();
        let (status, _) = self
            .call(
                reqwest::Method::POST,
                &format!("/tasks/{id}/assign"),
                Some(json!({"agent": "w1"})),
            )
            .await;
        assert_eq!(status, 200);
        id
    }

    /// Reads the task's event stream until `until` is seen; returns all text read.
    async fn events_until<S, B>(&self, stream: &mut S, until: &str) -> String
    where
        S: futures::Stream<Item = reqwest::Result<B>> + Unpin,
        B: AsRef<[u8]>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut seen = String::new();
        while !seen.contains(until) {
            let chunk = tokio::time::timeout_at(deadline, stream.next())
                .await
                .unwrap_or_else(|_| panic!("no {until} in {seen}"))
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
        // The rest of the event that matched.
        while !seen.ends_with("\n\n") {
            let chunk = tokio::time::timeout_at(deadline, stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
        seen
    }
}

#[tokio::test]
async fn a_run_started_over_http_streams_its_progress_and_its_end() {
    let s = server().await;
    let id = s
        .assigned_task("echo started; sleep 1; echo finished")
        .await;
    let events = s
        .client
        .get(format!("{}/events?task_id={id}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();

    let (status, started) = s
        .run(reqwest::Method::POST, &id, Some(json!({"max_steps": 5})))
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["task_id"], id.as_str());
    assert_eq!(started["max_steps"], 5);
    assert!(s.hub.is_running(id.parse().unwrap()));

    // A second start while it runs is refused.
    let (status, err) = s.run(reqwest::Method::POST, &id, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("run_in_progress")),
        "{err}"
    );

    let seen = s
        .events_until(&mut stream, "event: task_run_finished")
        .await;
    let delta = seen.find("event: llm_delta").expect("the answer streamed");
    let output = seen
        .find("event: command_output")
        .expect("the output streamed");
    let executed = seen.find("event: step_executed").unwrap();
    assert!(delta < executed && output < executed, "{seen}");
    assert!(seen.contains("started"), "{seen}");
    let finished = &seen[seen.find("event: task_run_finished").unwrap()..];
    assert!(finished.contains(r#""reason":"done""#), "{finished}");

    let (_, task) = s
        .call(reqwest::Method::GET, &format!("/tasks/{id}"), None)
        .await;
    assert_eq!(task["status"], TaskStatus::Done.as_str());
    assert!(!s.hub.is_running(id.parse().unwrap()));
}

#[tokio::test]
async fn delete_stops_a_run_and_bad_requests_get_typed_errors() {
    let s = server().await;
    let id = s.assigned_task("sleep 30").await;
    let events = s
        .client
        .get(format!("{}/events?task_id={id}", s.base))
        .send()
        .await
        .unwrap();
    let mut stream = events.bytes_stream();
    let (status, _) = s.run(reqwest::Method::POST, &id, Some(json!({}))).await;
    assert_eq!(status, 202);
    s.events_until(&mut stream, "event: step_proposed").await;
    let (status, _) = s.run(reqwest::Method::DELETE, &id, None).await;
    assert_eq!(status, 204);
    let seen = s
        .events_until(&mut stream, "event: task_run_finished")
        .await;
    let finished = &seen[seen.find("event: task_run_finished").unwrap()..];
    assert!(finished.contains(r#""reason":"cancelled""#), "{finished}");

    let (status, err) = s.run(reqwest::Method::DELETE, &id, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("no_run"))
    );

    for (body, field) in [
        (json!({"max_steps": 0}), "max_steps"),
        (json!({"max_steps": 100000}), "max_steps"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"approval_wait_secs": 999999}), "approval_wait_secs"),
    ] {
        let (status, err) = s.run(reqwest::Method::POST, &id, Some(body)).await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["details"]["field"], field, "{err}");
    }
    let (status, err) = s
        .run(reqwest::Method::POST, &id, Some(json!({"max_step": 3})))
        .await;
    assert!((400..500).contains(&status), "{status} {err}");

    let (status, unassigned) = s
        .call(
            reqwest::Method::POST,
            "/tasks",
            Some(json!({"title": "nobody"})),
        )
        .await;
    assert_eq!(status, 201);
    let other = unassigned["id"].as_str().unwrap();
    let (status, err) = s
        .call(reqwest::Method::POST, &format!("/tasks/{other}/run"), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("not_assigned"))
    );
    let (status, err) = s
        .call(reqwest::Method::POST, "/tasks/T-nonsense/run", None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_id"))
    );
}
