//! `OllamaProvider` against a mock server speaking Ollama's documented payloads.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "ollama")]

use std::time::Duration;

use ananta_core::llm::{ChatChunk, ChatMessage, ChatRequest, FinishReason, ToolCall, ToolSpec};
use ananta_core::{LlmError, LlmProvider, TokenUsage};
use ananta_llm::OllamaProvider;
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn provider(server: &MockServer) -> OllamaProvider {
    OllamaProvider::builder(server.uri())
        .model("llama3.2")
        .embedding_model("nomic-embed-text")
        .keep_alive("5m")
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn mount(server: &MockServer, verb: &str, endpoint: &str, response: ResponseTemplate) {
    Mock::given(method(verb))
        .and(path(endpoint))
        .respond_with(response)
        .mount(server)
        .await;
}

fn ndjson(lines: &[Value]) -> ResponseTemplate {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    ResponseTemplate::new(200).set_body_raw(body, "application/x-ndjson")
}

/// The JSON bodies of the requests the server received.
async fn sent_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json::<Value>().unwrap())
        .collect()
}

fn user(text: &str) -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user(text)])
}

fn streamed_line(content: &str) -> Value {
    json!({
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.385406455-07:00",
        "message": {"role": "assistant", "content": content, "images": null},
        "done": false
    })
}

fn final_line() -> Value {
    json!({
        "model": "llama3.2",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": ""},
        "done": true,
        "done_reason": "stop",
        "total_duration": 4_883_583_458u64,
        "load_duration": 1_334_875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342_546_000,
        "eval_count": 282,
        "eval_duration": 4_535_599_000u64
    })
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Country {
    name: String,
    capital: String,
    languages: Vec<String>,
}

#[tokio::test]
async fn chat_sends_the_documented_body_and_maps_the_answer() {
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/api/chat",
        ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3.2",
            "created_at": "2023-12-12T14:13:43.416799Z",
            "message": {"role": "assistant", "content": "{\"name\":\"Canada\",\"capital\":\"Ottawa\",\"languages\":[\"English\",\"French\"]}"},
            "done": true,
            "done_reason": "stop",
            "total_duration": 5_191_566_416u64,
            "load_duration": 2_154_458,
            "prompt_eval_count": 26,
            "prompt_eval_duration": 383_809_000,
            "eval_count": 298,
            "eval_duration": 4_799_921_000u64
        })),
    )
    .await;
    let request = ChatRequest::new(vec![
        ChatMessage::system("Answer in JSON."),
        ChatMessage::user("Tell me about Canada."),
    ])
    .temperature(0.0)
    .max_tokens(128)
    .stop(["</s>"])
    .json_schema_for::<Country>();
    let response = provider(&server).complete(request).await.unwrap();

    assert!(response.content.contains("Ottawa"));
    assert_eq!(response.model.as_deref(), Some("llama3.2"));
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        response.usage,
        Some(TokenUsage {
            prompt_tokens: 26,
            completion_tokens: 298
        })
    );
    assert!(response.tool_calls.is_empty());

    let bodies = sent_bodies(&server).await;
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["model"], "llama3.2");
    assert_eq!(body["stream"], false);
    assert_eq!(body["keep_alive"], "5m");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Tell me about Canada."}
        ])
    );
    assert_eq!(
        body["options"],
        json!({"temperature": 0.0, "num_predict": 128, "stop": ["</s>"]})
    );
    assert_eq!(body["format"]["type"], "object");
    assert_eq!(body["format"]["properties"]["capital"]["type"], "string");
    assert_eq!(body["format"]["properties"]["languages"]["type"], "array");
    let required = body["format"]["required"].as_array().unwrap();
    assert_eq!(required.len(), 3);
    assert!(body.get("tools").is_none());
}

#[tokio::test]
async fn plain_chat_omits_options_format_and_tools() {
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/api/chat",
        ResponseTemplate::new(200).set_body_json(json!({
            "model": "qwen2.5:0.5b",
            "message": {"role": "assistant", "content": "Hi!"},
            "done": true,
            "done_reason": "length",
            "eval_count": 2
        })),
    )
    .await;
    let llm = OllamaProvider::builder(format!("{}/", server.uri()))
        .build()
        .unwrap();
    let response = llm
        .complete(user("hello").model("qwen2.5:0.5b"))
        .await
        .unwrap();
    assert_eq!(response.content, "Hi!");
    assert_eq!(response.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        response.usage,
        Some(TokenUsage {
            prompt_tokens: 0,
            completion_tokens: 2
        })
    );
    let body = &sent_bodies(&server).await[0];
    assert_eq!(
        body,
        &json!({
            "model": "qwen2.5:0.5b",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": false
        })
    );
}

#[tokio::test]
async fn streaming_concatenates_deltas_and_reports_usage_last() {
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/api/chat",
        ndjson(&[
            streamed_line("The"),
            streamed_line(" sky"),
            streamed_line(" is"),
            streamed_line(" blue."),
            final_line(),
        ]),
    )
    .await;
    let stream = provider(&server)
        .complete_stream(user("Why is the sky blue?"))
        .await
        .unwrap();
    let chunks: Vec<ChatChunk> = stream.map(Result::unwrap).collect().await;

    let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "The sky is blue.");
    assert_eq!(chunks.len(), 5);
    assert!(
        chunks[..4]
            .iter()
            .all(|c| c.usage.is_none() && c.finish_reason.is_none())
    );
    let last = chunks.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        last.usage,
        Some(TokenUsage {
            prompt_tokens: 26,
            completion_tokens: 282
        })
    );
    let body = &sent_bodies(&server).await[0];
    assert_eq!(body["stream"], true);
    assert_eq!(body["keep_alive"], "5m");
}

#[tokio::test]
async fn a_stream_without_its_done_line_is_truncated() {
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/api/chat",
        ndjson(&[streamed_line("The"), streamed_line(" sky")]),
    )
    .await;
    let results: Vec<_> = provider(&server)
        .complete_stream(user("q"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(results.len(), 3);
    assert_eq!(results[1].as_ref().unwrap().delta, " sky");
    let err = results[2].as_ref().unwrap_err();
    assert!(
        matches!(err, LlmError::InvalidResponse { message, .. } if message.contains("truncated")),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_malformed_line_fails_the_stream_with_its_raw_text() {
    let server = MockServer::start().await;
    let body = format!(
        "{}\n{{\"message\": {{\"content\": \"broken\n{}\n",
        streamed_line("ok"),
        final_line()
    );
    mount(
        &server,
        "POST",
        "/api/chat",
        ResponseTemplate::new(200).set_body_raw(body, "application/x-ndjson"),
    )
    .await;
    let results: Vec<_> = provider(&server)
        .complete_stream(user("q"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(results.len(), 2, "nothing after the error: {results:?}");
    assert_eq!(results[0].as_ref().unwrap().delta, "ok");
    assert!(matches!(
        &results[1],
        Err(LlmError::InvalidResponse { raw, .. }) if raw == "{\"message\": {\"content\": \"broken"
    ));
}

#[tokio::test]
async fn errors_inside_successful_responses() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(wiremock::matchers::body_partial_json(
            json!({"stream": false}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"error": "llama runner process has terminated: signal: killed"}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(wiremock::matchers::body_partial_json(
            json!({"stream": true}),
        ))
        .respond_with(ndjson(&[
            streamed_line("Once"),
            json!({"error": "an error was encountered while running the model: unexpected EOF"}),
            final_line(),
        ]))
        .mount(&server)
        .await;
    let llm = provider(&server);

    let err = llm.complete(user("q")).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Server { message, .. } if message.contains("terminated")),
        "{err:?}"
    );
    assert!(err.is_transient());

    let results: Vec<_> = llm
        .complete_stream(user("q"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(results.len(), 2, "nothing after the error: {results:?}");
    assert_eq!(results[0].as_ref().unwrap().delta, "Once");
    assert!(matches!(
        &results[1],
        Err(LlmError::Server { message, .. }) if message.contains("unexpected EOF")
    ));
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/api/chat",
        ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3.2",
            "created_at": "2024-07-22T20:33:28.123648Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{
                    "function": {
                        "name": "get_current_weather",
                        "arguments": {"format": "celsius", "location": "Paris, FR"}
                    }
                }]
            },
            "done_reason": "stop",
            "done": true,
            "total_duration": 885_095_291,
            "load_duration": 3_753_500,
            "prompt_eval_count": 122,
            "prompt_eval_duration": 328_493_000,
            "eval_count": 33,
            "eval_duration": 552_222_000
        })),
    )
    .await;
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Weather {
        location: String,
        format: String,
    }
    let tool = ToolSpec::for_type::<Weather>(
        "get_current_weather",
        "Get the current weather for a location",
    );
    let llm = provider(&server);
    let response = llm
        .complete(user("What is the weather today in Paris?").tool(tool.clone()))
        .await
        .unwrap();
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(response.tool_calls.len(), 1);
    let call = &response.tool_calls[0];
    assert_eq!(call.name, "get_current_weather");
    assert_eq!(call.id, "call_0");
    let args: Value = serde_json::from_str(&call.arguments).unwrap();
    assert_eq!(args, json!({"format": "celsius", "location": "Paris, FR"}));

    // Send the call and its result back.
    let follow_up = ChatRequest::new(vec![
        ChatMessage::user("What is the weather today in Paris?"),
        ChatMessage::assistant_tool_calls("", response.tool_calls.clone()),
        ChatMessage::tool_result(call.id.clone(), "22 degrees celsius"),
    ])
    .tool(tool);
    llm.complete(follow_up).await.unwrap();

    let bodies = sent_bodies(&server).await;
    assert_eq!(
        bodies[0]["tools"],
        json!([{
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather for a location",
                "parameters": bodies[0]["tools"][0]["function"]["parameters"].clone()
            }
        }])
    );
    let parameters = &bodies[0]["tools"][0]["function"]["parameters"];
    assert_eq!(parameters["properties"]["location"]["type"], "string");
    let messages = &bodies[1]["messages"];
    assert_eq!(
        messages[1],
        json!({
            "role": "assistant",
            "content": "",
            "tool_calls": [{
                "id": "call_0",
                "function": {
                    "name": "get_current_weather",
                    "arguments": {"format": "celsius", "location": "Paris, FR"}
                }
            }]
        })
    );
    assert_eq!(
        messages[2],
        json!({
            "role": "tool",
            "content": "22 degrees celsius",
            "tool_name": "get_current_weather",
            "tool_call_id": "call_0"
        })
    );
}

#[tokio::test]
async fn streamed_tool_calls_arrive_on_the_last_chunk() {
    let server = MockServer::start().await;
    let call_line = json!({
        "model": "llama3.2",
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "read_file", "arguments": {"path": "Cargo.toml"}}}
        ]},
        "done": false
    });
    mount(
        &server,
        "POST",
        "/api/chat",
        ndjson(&[call_line, final_line()]),
    )
    .await;
    let chunks: Vec<ChatChunk> = provider(&server)
        .complete_stream(user("q"))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        chunks[0].tool_calls,
        vec![ToolCall {
            id: "call_0".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"Cargo.toml"}"#.into(),
        }]
    );
}

#[tokio::test]
async fn embed_keeps_order_and_checks_the_count() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/embed"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "nomic-embed-text",
            "embeddings": [[0.010071029, -0.0017594862, 0.05007221], [-0.0098027075, 0.06042469, 0.025257962]],
            "total_duration": 14_143_917,
            "load_duration": 1_019_500,
            "prompt_eval_count": 8
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let llm = provider(&server);
    let vectors = llm
        .embed(vec![
            "Why is the sky blue?".into(),
            "Why is the grass green?".into(),
        ])
        .await
        .unwrap();
    let expected = [
        [0.010_071_029, -0.001_759_486_2, 0.050_072_21],
        [-0.009_802_707_5, 0.060_424_69, 0.025_257_962],
    ];
    assert_eq!(vectors.len(), 2);
    for (got, want) in vectors.iter().zip(expected) {
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} != {want:?}");
        }
    }
    assert_eq!(
        sent_bodies(&server).await[0],
        json!({
            "model": "nomic-embed-text",
            "input": ["Why is the sky blue?", "Why is the grass green?"],
            "keep_alive": "5m"
        })
    );

    // One vector for three inputs.
    mount(
        &server,
        "POST",
        "/api/embed",
        ResponseTemplate::new(200).set_body_json(json!({"embeddings": [[0.5]]})),
    )
    .await;
    let err = llm
        .embed(vec!["a".into(), "b".into(), "c".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn embedding_nothing_sends_nothing() {
    let server = MockServer::start().await;
    let llm = provider(&server);
    assert!(llm.embed(Vec::new()).await.unwrap().is_empty());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn health_lists_the_installed_models() {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        "/api/tags",
        ResponseTemplate::new(200).set_body_json(json!({
            "models": [
                {
                    "name": "deepseek-r1:latest",
                    "model": "deepseek-r1:latest",
                    "modified_at": "2025-05-10T08:06:48.639712648-07:00",
                    "size": 4_683_075_271u64,
                    "digest": "0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163",
                    "details": {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"], "parameter_size": "7.6B", "quantization_level": "Q4_K_M"}
                },
                {
                    "name": "llama3.2:latest",
                    "model": "llama3.2:latest",
                    "modified_at": "2025-05-04T17:37:44.706015396-07:00",
                    "size": 2_019_393_189u64,
                    "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                    "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}
                }
            ]
        })),
    )
    .await;
    let health = provider(&server).health().await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.error, None);
    assert_eq!(health.models, ["deepseek-r1:latest", "llama3.2:latest"]);
}

#[tokio::test]
async fn health_of_a_closed_port_is_down_not_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let llm = OllamaProvider::builder(format!("http://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let health = llm.health().await.unwrap();
    assert!(!health.reachable);
    assert!(health.models.is_empty());
    assert!(health.error.is_some());

    let err = llm.complete(user("q")).await.unwrap_err();
    assert!(matches!(err, LlmError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn health_reports_an_http_error_as_an_error() {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        "/api/tags",
        ResponseTemplate::new(403).set_body_string("forbidden"),
    )
    .await;
    let err = provider(&server).health().await.unwrap_err();
    assert!(
        matches!(err, LlmError::Rejected { status: 403, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn http_errors_are_typed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(wiremock::matchers::body_partial_json(
            json!({"model": "nope"}),
        ))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": "model \"nope\" not found, try pulling it first"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(wiremock::matchers::body_partial_json(
            json!({"model": "crashy"}),
        ))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": "llama runner process has terminated"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .and(wiremock::matchers::body_partial_json(
            json!({"model": "small"}),
        ))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": "the input length exceeds the context length"})),
        )
        .mount(&server)
        .await;
    mount(
        &server,
        "POST",
        "/api/embed",
        ResponseTemplate::new(400)
            .set_body_json(json!({"error": "the input length exceeds the context length"})),
    )
    .await;
    let llm = provider(&server);

    let err = llm.complete(user("q").model("nope")).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Rejected { status: 404, body } if body.contains("not found, try pulling it first")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    // A streamed request fails the same way, before any chunk.
    let err = match llm.complete_stream(user("q").model("nope")).await {
        Err(e) => e,
        Ok(_) => panic!("a 404 must fail the stream request"),
    };
    assert!(
        matches!(err, LlmError::Rejected { status: 404, .. }),
        "{err:?}"
    );

    let err = llm.complete(user("q").model("crashy")).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Server { status: 500, message } if message == "llama runner process has terminated"),
        "{err:?}"
    );
    assert!(err.is_transient());

    let err = llm.complete(user("q").model("small")).await.unwrap_err();
    assert!(matches!(err, LlmError::ContextLengthExceeded(_)), "{err:?}");
    let err = llm.embed(vec!["long".into()]).await.unwrap_err();
    assert!(matches!(err, LlmError::ContextLengthExceeded(_)), "{err:?}");
}

#[tokio::test]
async fn invalid_requests_are_not_sent() {
    let server = MockServer::start().await;
    let llm = provider(&server);
    let err = llm.complete(ChatRequest::default()).await.unwrap_err();
    assert!(matches!(err, LlmError::InvalidRequest(_)), "{err:?}");
    assert!(llm.complete_stream(ChatRequest::default()).await.is_err());
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(llm.name(), "ollama");
}

/// Set in the child process that [`from_env_reads_the_environment`] starts.
const CHILD_FLAG: &str = "ANANTA_OLLAMA_FROM_ENV_CHILD";

/// Environment variables are process-wide and tests run in parallel threads, so this test
/// re-runs itself in a child process with the variables set there, instead of changing the
/// environment of this one.
#[test]
fn from_env_reads_the_environment() {
    if std::env::var_os(CHILD_FLAG).is_some() {
        let llm = OllamaProvider::from_env().build().unwrap();
        assert_eq!(llm.base_url(), "http://ollama.example:11434");
        assert_eq!(llm.model(), "qwen2.5:0.5b");
        assert_eq!(llm.embedding_model(), "qwen2.5:0.5b");
        let llm = OllamaProvider::from_env()
            .embedding_model("nomic-embed-text")
            .build()
            .unwrap();
        assert_eq!(llm.embedding_model(), "nomic-embed-text");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "from_env_reads_the_environment",
            "--test-threads=1",
        ])
        .env(CHILD_FLAG, "1")
        .env("OLLAMA_URL", "http://ollama.example:11434/api/generate")
        .env("OLLAMA_MODEL", "qwen2.5:0.5b")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
