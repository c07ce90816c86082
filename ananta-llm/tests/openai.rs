//! `OpenAiProvider` against a fake server speaking the documented OpenAI protocol: request
//! shape, SSE streaming, tool calls, embeddings, health, and every failure a real server or
//! network produces.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use ananta_core::llm::{ChatChunk, ChatMessage, ChatRequest, FinishReason, ToolSpec};
use ananta_core::{LlmError, LlmProvider};
use ananta_llm::{
    CircuitBreakerPolicy, CircuitState, OpenAiProvider, ProviderExt, RetryPolicy, StructuredOutput,
};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{RawServer, Script, closed_port_url};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn provider(url: &str) -> OpenAiProvider {
    OpenAiProvider::builder(format!("{url}/v1"))
        .model("test-model")
        .timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn hello() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system("be brief"),
        ChatMessage::user("hello"),
    ])
}

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    })
}

fn sse(frames: &[Value], done: bool) -> String {
    let mut out = String::new();
    for f in frames {
        out.push_str(&format!("data: {f}\n\n"));
    }
    if done {
        out.push_str("data: [DONE]\n\n");
    }
    out
}

fn delta(text: &str) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "test-model",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
}

fn finish(reason: &str) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

fn usage(p: u64, c: u64) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "choices": [],
           "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
}

/// Serves `body` as the event stream of every chat request and collects what the provider
/// makes of it.
async fn stream_from(body: String) -> Vec<Result<ChatChunk, LlmError>> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&server)
        .await;
    provider(&server.uri())
        .complete_stream(hello())
        .await
        .unwrap()
        .collect()
        .await
}

#[tokio::test]
async fn complete_sends_the_documented_body_and_maps_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test"))
        .and(body_partial_json(json!({
            "model": "test-model",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
            "temperature": 0.0,
            "max_tokens": 5,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Hi!")))
        .expect(1)
        .mount(&server)
        .await;
    let llm = OpenAiProvider::builder(format!("{}/v1/", server.uri()))
        .model("test-model")
        .api_key("sk-test")
        .build()
        .unwrap();
    let answer = llm
        .complete(hello().temperature(0.0).max_tokens(5))
        .await
        .unwrap();
    assert_eq!(answer.content, "Hi!");
    assert_eq!(answer.model.as_deref(), Some("test-model"));
    assert_eq!(answer.finish_reason, Some(FinishReason::Stop));
    let usage = answer.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 3));
}

#[tokio::test]
async fn request_model_overrides_the_default_and_no_key_sends_no_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "other"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .mount(&server)
        .await;
    let llm = provider(&server.uri());
    llm.complete(hello().model("other")).await.unwrap();
    let received = server.received_requests().await.unwrap();
    assert!(received[0].headers.get("authorization").is_none());
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
struct Step {
    reason: String,
    command: String,
}

#[tokio::test]
async fn structured_output_sends_the_schema_and_parses_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({
            "response_format": {"type": "json_schema", "json_schema": {"name": "Step", "strict": true}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            r#"{"reason": "look around", "command": "ls -la"}"#,
        )))
        .mount(&server)
        .await;
    let llm = provider(&server.uri());
    let step: Step = llm.complete_json(hello()).await.unwrap();
    assert_eq!(step.command, "ls -la");
    let sent: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    let schema = &sent["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["required"], json!(["reason", "command"]));
}

#[tokio::test]
async fn structured_output_that_does_not_parse_carries_the_raw_text() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("I would run ls")))
        .mount(&server)
        .await;
    let err = provider(&server.uri())
        .complete_json::<Step>(hello())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::SchemaMismatch { raw, .. } if raw == "I would run ls"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn streaming_yields_deltas_then_usage() {
    let server = MockServer::start().await;
    let body = sse(
        &[
            delta("Hel"),
            delta("lo"),
            delta(" world"),
            finish("stop"),
            usage(9, 3),
        ],
        true,
    );
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&server)
        .await;
    let mut stream = provider(&server.uri())
        .complete_stream(hello())
        .await
        .unwrap();
    let mut deltas = Vec::new();
    let mut last = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if !chunk.delta.is_empty() {
            deltas.push(chunk.delta.clone());
        }
        last = Some(chunk);
    }
    assert_eq!(deltas, ["Hel", "lo", " world"]);
    let last = last.unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    assert_eq!(last.usage.unwrap().total(), 12);
}

#[tokio::test]
async fn tool_calls_are_offered_and_returned() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({
            "tools": [{"type": "function", "function": {"name": "read_file", "description": "Reads a file"}}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_abc", "type": "function",
                    "function": {"name": "read_file", "arguments": "{\"path\": \"README.md\"}"}}]}}]
        })))
        .mount(&server)
        .await;
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct ReadFile {
        path: String,
    }
    let llm = provider(&server.uri());
    let request = hello().tool(ToolSpec::for_type::<ReadFile>("read_file", "Reads a file"));
    let answer = llm.complete(request).await.unwrap();
    assert_eq!(answer.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(answer.content, "");
    let call = &answer.tool_calls[0];
    assert_eq!(
        (call.id.as_str(), call.name.as_str()),
        ("call_abc", "read_file")
    );
    assert_eq!(
        call.parse_arguments::<ReadFile>().unwrap().path,
        "README.md"
    );

    // The follow-up conversation carries the call and its result in OpenAI's shape.
    let follow_up = ChatRequest::new(vec![
        ChatMessage::user("read it"),
        ChatMessage::assistant_tool_calls("", answer.tool_calls.clone()),
        ChatMessage::tool_result("call_abc", "# Ananta"),
    ]);
    llm.complete(follow_up.tool(ToolSpec::for_type::<ReadFile>("read_file", "Reads a file")))
        .await
        .unwrap();
    let sent: Value = server.received_requests().await.unwrap()[1]
        .body_json()
        .unwrap();
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "content": "# Ananta", "tool_call_id": "call_abc"})
    );
}

#[tokio::test]
async fn streamed_tool_call_fragments_arrive_whole() {
    let frame = |v: Value| json!({"choices": [{"index": 0, "delta": v, "finish_reason": null}]});
    let body = sse(
        &[
            frame(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "grep", "arguments": ""}}]}),
            ),
            frame(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pattern\":"}}]}),
            ),
            frame(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"TODO\"}"}}]})),
            finish("tool_calls"),
        ],
        true,
    );
    let chunks = stream_from(body).await;
    let last = chunks.last().unwrap().as_ref().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(last.tool_calls.len(), 1);
    assert_eq!(last.tool_calls[0].arguments, r#"{"pattern":"TODO"}"#);
}

#[tokio::test]
async fn embeddings_come_back_in_input_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(body_partial_json(
            json!({"model": "embed-model", "input": ["a", "b", "c"]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 2, "embedding": [0.0, 0.0, 1.0]},
                {"object": "embedding", "index": 0, "embedding": [1.0, 0.0, 0.0]},
                {"object": "embedding", "index": 1, "embedding": [0.0, 1.0, 0.0]}
            ],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}
        })))
        .mount(&server)
        .await;
    let llm = OpenAiProvider::builder(format!("{}/v1", server.uri()))
        .model("chat-model")
        .embedding_model("embed-model")
        .build()
        .unwrap();
    let vectors = llm
        .embed(vec!["a".into(), "b".into(), "c".into()])
        .await
        .unwrap();
    assert_eq!(
        vectors,
        vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0]
        ]
    );
    assert!(llm.embed(Vec::new()).await.unwrap().is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn embeddings_with_a_missing_vector_are_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"index": 0, "embedding": [1.0]}]
        })))
        .mount(&server)
        .await;
    let err = provider(&server.uri())
        .embed(vec!["a".into(), "b".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn health_lists_models_and_reports_an_unreachable_server() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"id": "smollm2", "object": "model"}, {"id": "nomic-embed", "object": "model"}]
        })))
        .mount(&server)
        .await;
    let health = provider(&server.uri()).health().await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.models, ["smollm2", "nomic-embed"]);

    let down = provider(&closed_port_url()).health().await.unwrap();
    assert!(!down.reachable);
    assert!(down.error.is_some());
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "2")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
                ),
        )
        .mount(&server)
        .await;
    let err = provider(&server.uri()).complete(hello()).await.unwrap_err();
    assert!(
        matches!(err, LlmError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn http_errors_map_to_typed_errors() {
    type Check = fn(&LlmError) -> bool;
    let cases: Vec<(u16, Value, Check)> = vec![
        (500, json!({"error": {"message": "boom"}}), |e| {
            matches!(e, LlmError::Server { status: 500, message } if message == "boom")
                && e.is_transient()
        }),
        (503, json!("overloaded"), |e| {
            matches!(e, LlmError::Server { status: 503, .. })
        }),
        (
            401,
            json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}),
            |e| {
                matches!(e, LlmError::Rejected { status: 401, body } if body.contains("API key"))
                    && !e.is_transient()
            },
        ),
        (
            404,
            json!({"error": {"message": "model `nope` not found"}}),
            |e| matches!(e, LlmError::Rejected { status: 404, .. }),
        ),
        (
            400,
            json!({"error": {"message": "This model's maximum context length is 4096 tokens.", "code": "context_length_exceeded"}}),
            |e| matches!(e, LlmError::ContextLengthExceeded(_)) && !e.is_transient(),
        ),
    ];
    for (status, body, check) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        let llm = provider(&server.uri());
        let err = llm.complete(hello()).await.unwrap_err();
        assert!(check(&err), "status {status}: {err:?}");
        // The streaming path maps the same way.
        let err = llm.complete_stream(hello()).await.err().unwrap();
        assert!(check(&err), "stream, status {status}: {err:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let err = provider(&closed_port_url())
        .complete(hello())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let llm = OpenAiProvider::builder(format!("{}/v1", server.uri()))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = llm.complete(hello()).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = llm.complete_stream(hello()).await.err().unwrap();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn a_stream_that_stalls_mid_answer_times_out() {
    let raw = RawServer::start(
        "text/event-stream",
        Script::ThenStall(vec![format!("data: {}\n\n", delta("partial"))]),
    )
    .await;
    let mut stream = provider(&raw.url()).complete_stream(hello()).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().delta, "partial");
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(err, LlmError::Timeout(d) if d == Duration::from_millis(500)),
        "{err:?}"
    );
    assert!(stream.next().await.is_none(), "nothing after the error");
}

#[tokio::test]
async fn a_stream_cut_mid_answer_is_a_truncation_error() {
    // The connection closes in the middle of the body.
    let raw = RawServer::start(
        "text/event-stream",
        Script::ThenClose(vec![format!("data: {}\n\n", delta("half an ans"))]),
    )
    .await;
    let mut stream = provider(&raw.url()).complete_stream(hello()).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().delta, "half an ans");
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, LlmError::InvalidResponse { .. }), "{err:?}");
    assert!(!err.is_transient());

    // The body ends cleanly but without a finish reason or [DONE]: also truncated.
    let chunks = stream_from(sse(&[delta("half")], false)).await;
    let err = chunks.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(err, LlmError::InvalidResponse { message, .. } if message.contains("truncated")),
        "{err:?}"
    );
}

#[tokio::test]
async fn dropping_a_stream_closes_the_connection() {
    let mut raw = RawServer::start(
        "text/event-stream",
        Script::Forever {
            part: format!("data: {}\n\n", delta("tok ")),
            every: Duration::from_millis(20),
        },
    )
    .await;
    let mut stream = provider(&raw.url()).complete_stream(hello()).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().delta, "tok ");
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), raw.closed.recv())
        .await
        .expect("the server noticed the closed connection")
        .unwrap();
}

#[tokio::test]
async fn malformed_json_is_an_invalid_response_with_the_raw_text() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("{\"choices\": [", "application/json"),
        )
        .mount(&server)
        .await;
    let err = provider(&server.uri()).complete(hello()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::InvalidResponse { raw, .. } if raw == "{\"choices\": ["),
        "{err:?}"
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"choices": []})))
        .mount(&server)
        .await;
    let err = provider(&server.uri()).complete(hello()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::InvalidResponse { message, .. } if message.contains("no choices")),
        "{err:?}"
    );

    let body = format!("data: {}\n\ndata: {{not json\n\n", delta("a"));
    let chunks = stream_from(body).await;
    assert_eq!(chunks.len(), 2);
    assert!(matches!(&chunks[1], Err(LlmError::InvalidResponse { raw, .. }) if raw == "{not json"));
}

#[tokio::test]
async fn an_error_event_inside_a_stream_is_reported() {
    let body = format!(
        "data: {}\n\ndata: {}\n\n",
        delta("a"),
        json!({"error": {"message": "model overloaded", "code": 503}})
    );
    let chunks = stream_from(body).await;
    assert!(
        matches!(&chunks[1], Err(LlmError::Server { status: 503, message }) if message == "model overloaded"),
        "{chunks:?}"
    );
}

#[tokio::test]
async fn empty_conversation_is_refused_before_sending() {
    let server = MockServer::start().await;
    let err = provider(&server.uri())
        .complete(ChatRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidRequest(_)));
    assert!(server.received_requests().await.unwrap().is_empty());
}

// ---- resilience over real HTTP failures ----

#[tokio::test]
async fn retry_recovers_from_a_500_and_honours_retry_after_on_429() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "warming up"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("third time lucky")))
        .mount(&server)
        .await;
    let llm = provider(&server.uri()).with_retry(
        RetryPolicy::default()
            .initial_delay(Duration::from_millis(10))
            .max_elapsed(Duration::from_secs(10)),
    );
    let started = Instant::now();
    let answer = llm.complete(hello()).await.unwrap();
    assert_eq!(answer.content, "third time lucky");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
}

#[tokio::test]
async fn retry_does_not_repeat_a_permanent_http_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "bad field"}})),
        )
        .mount(&server)
        .await;
    let err = provider(&server.uri())
        .with_retry(RetryPolicy::default().initial_delay(Duration::from_millis(10)))
        .complete(hello())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn fallback_takes_over_when_the_primary_refuses_connections() {
    let backup = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("from the backup")))
        .mount(&backup)
        .await;
    let llm = provider(&closed_port_url()).with_fallback(provider(&backup.uri()));
    assert_eq!(
        llm.complete(hello()).await.unwrap().content,
        "from the backup"
    );
    // Streams fall over while opening, too.
    let server_down = provider(&closed_port_url()).with_fallback(provider(&backup.uri()));
    assert!(server_down.complete_stream(hello()).await.is_ok());
}

#[tokio::test]
async fn circuit_breaker_opens_on_a_failing_server_and_half_opens_later() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(5)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("back")))
        .mount(&server)
        .await;
    let open_for = Duration::from_millis(300);
    let llm = provider(&server.uri())
        .with_circuit_breaker(CircuitBreakerPolicy::default().open_for(open_for));
    for _ in 0..5 {
        let err = llm.complete(hello()).await.unwrap_err();
        assert!(
            matches!(err, LlmError::Server { status: 503, .. }),
            "{err:?}"
        );
    }
    assert!(matches!(llm.state(), CircuitState::Open { .. }));
    // Open: fails fast, the server sees nothing.
    let err = llm.complete(hello()).await.unwrap_err();
    assert!(matches!(err, LlmError::CircuitOpen { .. }), "{err:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
    // After open_for, one trial call goes through; it succeeds and closes the circuit.
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    assert_eq!(llm.state(), CircuitState::HalfOpen);
    assert_eq!(llm.complete(hello()).await.unwrap().content, "back");
    assert_eq!(llm.state(), CircuitState::Closed);
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
}
