use ananta_core::llm::{ChatMessage, FinishReason, ToolCall, ToolSpec};
use serde::Deserialize;

use super::wire::{WireMessage, schema_name, strict_compatible};
use super::*;

fn provider() -> OpenAiProvider {
    OpenAiProvider::builder("http://127.0.0.1:9/v1/chat/completions")
        .model("m")
        .build()
        .unwrap()
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Strict {
    a: String,
    b: Vec<u32>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[allow(dead_code)]
struct Loose {
    a: Option<String>,
}

#[test]
fn environment_like_the_original() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let p = OpenAiProvider::from_vars(vars(&[])).build().unwrap();
    assert_eq!(p.base_url(), OpenAiProvider::OPENAI_URL);
    assert_eq!(p.model(), Some(OpenAiProvider::OPENAI_DEFAULT_MODEL));
    let p = OpenAiProvider::from_vars(vars(&[
        ("OPENAI_URL", "https://api.openai.com/v1/chat/completions"),
        ("OPENAI_API_KEY", "sk-x"),
        ("OPENAI_MODEL", "gpt-x"),
    ]))
    .build()
    .unwrap();
    assert_eq!(p.base_url(), "https://api.openai.com/v1");
    assert_eq!(p.model(), Some("gpt-x"));
    let p = OpenAiProvider::from_vars(vars(&[("OPENAI_URL", "http://gpu:8000/v1")]))
        .build()
        .unwrap();
    assert_eq!((p.base_url(), p.model()), ("http://gpu:8000/v1", None));
    let p = OpenAiProvider::lm_studio_from_vars(vars(&[]))
        .build()
        .unwrap();
    assert_eq!(
        (p.base_url(), p.name()),
        ("http://localhost:1234/v1", "lmstudio")
    );
    let p = OpenAiProvider::lm_studio_from_vars(vars(&[(
        "LMSTUDIO_URL",
        "http://host.docker.internal:1234/v1/",
    )]))
    .build()
    .unwrap();
    assert_eq!(p.base_url(), "http://host.docker.internal:1234/v1");
}

#[test]
fn debug_hides_the_key() {
    let builder = OpenAiProvider::openai("sk-secret-1");
    assert!(!format!("{builder:?}").contains("sk-secret-1"));
    assert!(!format!("{:?}", builder.build().unwrap()).contains("sk-secret-1"));
}

#[test]
fn original_url_form_is_trimmed() {
    assert_eq!(provider().base_url(), "http://127.0.0.1:9/v1");
}

#[test]
fn body_has_every_field() {
    let request = ChatRequest::new(vec![ChatMessage::system("s"), ChatMessage::user("u")])
        .temperature(0.5)
        .max_tokens(7)
        .stop(["\n\n"])
        .json_schema_for::<Strict>()
        .tool(ToolSpec::for_type::<Loose>("look", "looks"));
    let body = provider().request_body(&request, true).unwrap();
    assert_eq!(body["model"], "m");
    assert_eq!(body["messages"][1], json!({"role": "user", "content": "u"}));
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["max_tokens"], 7);
    assert_eq!(body["stop"], json!(["\n\n"]));
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "Strict");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(body["tools"][0]["function"]["name"], "look");
    let loose = ChatRequest::new(vec![ChatMessage::user("u")]).json_schema_for::<Loose>();
    let body = provider().request_body(&loose, false).unwrap();
    assert_eq!(body["response_format"]["json_schema"]["strict"], false);
    assert!(body.get("stream").is_none());
}

#[test]
fn tool_messages_round_trip() {
    let calls = vec![ToolCall {
        id: "c1".into(),
        name: "look".into(),
        arguments: "{}".into(),
    }];
    let message_json = |m: &ChatMessage| serde_json::to_value(WireMessage::from(m)).unwrap();
    let m = message_json(&ChatMessage::assistant_tool_calls("", calls));
    assert_eq!(m["content"], Value::Null);
    assert_eq!(m["tool_calls"][0]["function"]["name"], "look");
    let r = message_json(&ChatMessage::tool_result("c1", "42"));
    assert_eq!(
        r,
        json!({"role": "tool", "content": "42", "tool_call_id": "c1"})
    );
}

#[test]
fn bad_requests_are_refused_before_sending() {
    assert!(matches!(
        provider().request_body(&ChatRequest::default(), false),
        Err(LlmError::InvalidRequest(_))
    ));
    let r = ChatRequest::new(vec![ChatMessage::user("u")]).temperature(f32::NAN);
    assert!(matches!(
        provider().request_body(&r, false),
        Err(LlmError::InvalidRequest(_))
    ));
}

#[test]
fn schema_names_are_sanitised() {
    assert_eq!(schema_name("Array_of_Foo<Bar>"), "Array_of_Foo_Bar_");
    assert_eq!(schema_name(""), "answer");
    assert_eq!(schema_name(&"x".repeat(100)).len(), 64);
}

#[test]
fn assembler_joins_tool_call_fragments() {
    let mut a = StreamAssembler::default();
    let frames = [
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"look","arguments":"{\"pa"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"/\"}"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
    ];
    for f in frames {
        assert!(a.push(f).unwrap().is_none());
    }
    let last = a.finish(true).unwrap().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(last.usage.unwrap().total(), 7);
    assert_eq!(last.tool_calls[0].id, "call_a");
    assert_eq!(last.tool_calls[0].arguments, r#"{"path":"/"}"#);
    assert!(a.finish(true).is_none());
}

#[test]
fn strictness_check() {
    assert!(strict_compatible(schemars::schema_for!(Strict).as_value()));
    assert!(!strict_compatible(schemars::schema_for!(Loose).as_value()));
}
