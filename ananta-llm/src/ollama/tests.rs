use ananta_core::TokenUsage;
use ananta_core::llm::{ChatChunk, ChatMessage, FinishReason, ToolCall, ToolSpec};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use super::stream::decode_stream;
use super::wire::{
    arguments_value, finish_reason, in_body_error, parse_chat_response, parse_embeddings,
    parse_tags, wire_messages,
};
use super::*;
use crate::http::ByteStream;

fn provider() -> OllamaProvider {
    OllamaProvider::builder("http://127.0.0.1:1")
        .model("m")
        .keep_alive("5m")
        .build()
        .unwrap()
}

fn body_json(provider: &OllamaProvider, request: &ChatRequest, stream: bool) -> Value {
    serde_json::to_value(provider.chat_body(request, stream).unwrap()).unwrap()
}

#[test]
fn minimal_body_omits_unset_fields() {
    let p = OllamaProvider::builder("http://127.0.0.1:1")
        .build()
        .unwrap();
    let request = ChatRequest::new(vec![ChatMessage::user("hi")]);
    assert_eq!(
        body_json(&p, &request, false),
        json!({
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": false,
        })
    );
}

#[test]
fn full_body() {
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        path: String,
    }
    let request = ChatRequest::new(vec![ChatMessage::system("s"), ChatMessage::user("u")])
        .model("other")
        .temperature(0.5)
        .max_tokens(64)
        .stop(["\n\n"])
        .json_schema_for::<Args>()
        .tool(ToolSpec::for_type::<Args>("read", "reads a file"));
    let body = body_json(&provider(), &request, true);
    assert_eq!(body["model"], "other");
    assert_eq!(body["stream"], true);
    assert_eq!(body["keep_alive"], "5m");
    assert_eq!(
        body["options"],
        json!({"temperature": 0.5, "num_predict": 64, "stop": ["\n\n"]})
    );
    assert_eq!(body["format"]["properties"]["path"]["type"], "string");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "read");
    assert_eq!(body["tools"][0]["function"]["description"], "reads a file");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["path"])
    );
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "s"})
    );
}

#[test]
fn tool_round_trip_messages() {
    let calls = vec![
        ToolCall {
            id: "call_a".into(),
            name: "read".into(),
            arguments: r#"{"path":"x"}"#.into(),
        },
        ToolCall {
            id: "call_b".into(),
            name: "broken".into(),
            arguments: "{not json".into(),
        },
    ];
    let messages = vec![
        ChatMessage::user("go"),
        ChatMessage::assistant_tool_calls("", calls),
        ChatMessage::tool_result("call_a", "file text"),
        ChatMessage::tool_result("call_unknown", "?"),
    ];
    let wire = serde_json::to_value(wire_messages(&messages)).unwrap();
    assert_eq!(
        wire[1]["tool_calls"],
        json!([
            {"id": "call_a", "function": {"name": "read", "arguments": {"path": "x"}}},
            {"id": "call_b", "function": {"name": "broken", "arguments": "{not json"}},
        ])
    );
    assert_eq!(
        wire[2],
        json!({"role": "tool", "content": "file text", "tool_name": "read", "tool_call_id": "call_a"})
    );
    assert_eq!(
        wire[3],
        json!({"role": "tool", "content": "?", "tool_call_id": "call_unknown"})
    );
    assert_eq!(arguments_value("  "), json!({}));
}

#[test]
fn invalid_requests() {
    let p = provider();
    assert!(matches!(
        p.chat_body(&ChatRequest::default(), false),
        Err(LlmError::InvalidRequest(_))
    ));
    let request = ChatRequest::new(vec![ChatMessage::user("u")]).temperature(f32::NAN);
    assert!(matches!(
        p.chat_body(&request, false),
        Err(LlmError::InvalidRequest(_))
    ));
    for builder in [
        OllamaProvider::builder("http://h").model(" "),
        OllamaProvider::builder("http://h").embedding_model(""),
        OllamaProvider::builder("not a url"),
    ] {
        assert!(matches!(builder.build(), Err(LlmError::InvalidRequest(_))));
    }
}

#[test]
fn response_mapping() {
    let value = json!({
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello!"},
        "done": true,
        "done_reason": "length",
        "prompt_eval_count": 26,
        "eval_count": 298
    });
    let response = parse_chat_response(&value).unwrap();
    assert_eq!(response.content, "Hello!");
    assert_eq!(response.model.as_deref(), Some("llama3.2"));
    assert_eq!(response.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        response.usage,
        Some(TokenUsage {
            prompt_tokens: 26,
            completion_tokens: 298
        })
    );
    let value = json!({"message": {"role": "assistant", "content": null}, "done": true});
    let response = parse_chat_response(&value).unwrap();
    assert_eq!(response.content, "");
    assert_eq!(response.usage, None);
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    assert!(matches!(
        parse_chat_response(&json!({"done": true})),
        Err(LlmError::InvalidResponse { .. })
    ));
    assert!(matches!(
        parse_chat_response(&json!([1, 2])),
        Err(LlmError::InvalidResponse { .. })
    ));
}

#[test]
fn finish_reasons() {
    assert_eq!(
        finish_reason(true, Some("stop"), false),
        Some(FinishReason::Stop)
    );
    assert_eq!(
        finish_reason(true, Some("stop"), true),
        Some(FinishReason::ToolCalls)
    );
    assert_eq!(
        finish_reason(true, Some("unload"), false),
        Some(FinishReason::Other("unload".into()))
    );
    assert_eq!(finish_reason(true, None, false), Some(FinishReason::Stop));
    assert_eq!(finish_reason(false, None, false), None);
}

#[test]
fn tool_calls_get_ids_and_json_text() {
    let value = json!({
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
            {"id": "srv_1", "function": {"index": 1, "name": "noop"}},
            {"function": {"name": "raw", "arguments": "{\"a\":1}"}}
        ]},
        "done": true,
        "done_reason": "stop"
    });
    let response = parse_chat_response(&value).unwrap();
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    let calls = response.tool_calls;
    assert_eq!(calls[0].id, "call_0");
    assert_eq!(calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris", "days": 2}));
    assert_eq!(
        (calls[1].id.as_str(), calls[1].arguments.as_str()),
        ("srv_1", "{}")
    );
    assert_eq!(
        (calls[2].id.as_str(), calls[2].arguments.as_str()),
        ("call_2", "{\"a\":1}")
    );
}

#[test]
fn errors_in_successful_bodies() {
    let e = parse_chat_response(&json!({"error": "model runner crashed"})).unwrap_err();
    assert!(
        matches!(&e, LlmError::Server { status: 500, message } if message == "model runner crashed")
    );
    assert!(e.is_transient());
    let e = in_body_error(&json!({"message": "the input length exceeds the context length"}));
    assert!(matches!(e, LlmError::ContextLengthExceeded(m) if m.contains("exceeds")));
    assert!(matches!(
        parse_embeddings(&json!({"error": "boom"}), 1),
        Err(LlmError::Server { .. })
    ));
}

#[test]
fn embeddings_and_tags() {
    let value = json!({"model": "e", "embeddings": [[0.1, 0.2], [0.3, 0.4]]});
    assert_eq!(
        parse_embeddings(&value, 2).unwrap(),
        vec![vec![0.1f32, 0.2], vec![0.3, 0.4]]
    );
    assert!(matches!(
        parse_embeddings(&value, 3),
        Err(LlmError::InvalidResponse { message, .. }) if message.contains("2 embeddings for 3")
    ));
    assert!(matches!(
        parse_embeddings(&json!({"model": "e"}), 1),
        Err(LlmError::InvalidResponse { .. })
    ));
    let tags = json!({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}, {"model": "qwen2.5:0.5b"}]});
    assert_eq!(
        parse_tags(&tags).unwrap(),
        ["llama3.2:latest", "qwen2.5:0.5b"]
    );
    assert!(parse_tags(&json!({"models": null})).unwrap().is_empty());
}

#[test]
fn env_urls_lose_their_endpoint() {
    let url = |v: Option<&str>| {
        let builder = OllamaProvider::builder_from_vars(v.map(str::to_string), None);
        builder.build().unwrap().base_url().to_string()
    };
    assert_eq!(url(None), "http://localhost:11434");
    assert_eq!(url(Some("  ")), "http://localhost:11434");
    assert_eq!(url(Some("http://h:11434/api/generate")), "http://h:11434");
    assert_eq!(url(Some("http://h:11434/api/chat/")), "http://h:11434");
    assert_eq!(url(Some("http://h:11434/api")), "http://h:11434");
    assert_eq!(url(Some("https://proxy/ollama/")), "https://proxy/ollama");
    let p = OllamaProvider::builder_from_vars(None, Some(" qwen2.5:0.5b ".into()))
        .build()
        .unwrap();
    assert_eq!(
        (p.model(), p.embedding_model()),
        ("qwen2.5:0.5b", "qwen2.5:0.5b")
    );
    let p = OllamaProvider::builder_from_vars(None, Some(String::new()))
        .build()
        .unwrap();
    assert_eq!(p.model(), OllamaProvider::DEFAULT_MODEL);
}

fn byte_stream(chunks: &[&'static str]) -> ByteStream {
    let chunks: Vec<Result<Bytes, LlmError>> = chunks
        .iter()
        .map(|c| Ok(Bytes::from_static(c.as_bytes())))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn collect(chunks: &[&'static str]) -> Vec<Result<ChatChunk, LlmError>> {
    decode_stream(byte_stream(chunks)).collect().await
}

#[tokio::test]
async fn stream_decoding() {
    let got = collect(&[
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n{\"mess",
        "age\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hmm\"},\"done\":false}\n",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}\n",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":2}\n",
        "{\"ignored\": \"after done\"}\n",
    ])
    .await;
    let chunks: Vec<ChatChunk> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0].delta, "Hel");
    assert_eq!(chunks[1].delta, "lo");
    let last = &chunks[2];
    assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(last.tool_calls[0].name, "f");
    assert_eq!(
        last.usage,
        Some(TokenUsage {
            prompt_tokens: 3,
            completion_tokens: 2
        })
    );
}

#[tokio::test]
async fn stream_failures_end_the_stream() {
    let got = collect(&["{\"message\":{\"content\":\"a\"},\"done\":false}\n"]).await;
    assert_eq!(got.len(), 2);
    assert!(
        matches!(&got[1], Err(LlmError::InvalidResponse { message, .. }) if message.contains("truncated"))
    );

    let got =
        collect(&["{\"message\":{\"content\":\"a\"},\"done\":false}\n{oops\n{\"done\":true}\n"])
            .await;
    assert_eq!(got.len(), 2);
    assert!(matches!(&got[1], Err(LlmError::InvalidResponse { raw, .. }) if raw == "{oops"));

    let got = collect(&[
        "{\"error\":\"an error was encountered while running the model\"}\n{\"done\":true}\n",
    ])
    .await;
    assert_eq!(got.len(), 1);
    assert!(matches!(&got[0], Err(LlmError::Server { status: 500, .. })));

    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(
            b"{\"message\":{\"content\":\"a\"},\"done\":false}\n",
        )),
        Err(LlmError::Timeout(std::time::Duration::from_secs(1))),
    ]));
    let got: Vec<_> = decode_stream(failing).collect().await;
    assert_eq!(got.len(), 2);
    assert!(matches!(got[1], Err(LlmError::Timeout(_))));
}

#[test]
fn debug_hides_the_api_key() {
    let builder = OllamaProvider::builder("http://h").api_key("secret-key");
    assert!(!format!("{builder:?}").contains("secret-key"));
    let p = builder.build().unwrap();
    assert!(!format!("{p:?}").contains("secret-key"));
}
