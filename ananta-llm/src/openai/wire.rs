//! The wire format of the chat-completions API: request bodies as typed structs, answers and
//! their parts, and the mapping to Ananta's chat types.

use ananta_core::llm::{ChatMessage, ChatRequest, ChatResponse, FinishReason, Role, ToolCall};
use ananta_core::{LlmError, TokenUsage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::excerpt;

/// The body of `POST {base}/chat/completions`.
#[derive(Serialize)]
pub(super) struct ChatBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

impl<'a> ChatBody<'a> {
    /// The body for `request` (checked first), asking `default_model` when the request names
    /// none; streamed with the usage on the last chunk when `include_usage`.
    pub(super) fn new(
        request: &'a ChatRequest,
        default_model: Option<&'a str>,
        stream: bool,
        include_usage: bool,
    ) -> Result<Self, LlmError> {
        request.validate()?;
        Ok(Self {
            model: request.model.as_deref().or(default_model),
            messages: request.messages.iter().map(WireMessage::from).collect(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            stop: &request.stop,
            response_format: request.response_format.as_ref().map(|format| {
                let schema = format.schema.as_value();
                ResponseFormat {
                    kind: "json_schema",
                    json_schema: WireSchema {
                        name: schema_name(&format.name),
                        schema,
                        strict: format.strict && strict_compatible(schema),
                    },
                }
            }),
            tools: request
                .tools
                .iter()
                .map(|t| WireTool {
                    kind: "function",
                    function: WireToolFunction {
                        name: &t.name,
                        description: &t.description,
                        parameters: t.parameters.as_value(),
                    },
                })
                .collect(),
            stream,
            stream_options: (stream && include_usage).then_some(StreamOptions {
                include_usage: true,
            }),
        })
    }
}

/// One message of the conversation.
#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    role: &'static str,
    /// `null` for an assistant message that only calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for WireMessage<'a> {
    fn from(message: &'a ChatMessage) -> Self {
        let role = match message.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let only_calls = message.content.is_empty() && !message.tool_calls.is_empty();
        Self {
            role,
            content: (!only_calls).then_some(message.content.as_str()),
            tool_calls: message
                .tool_calls
                .iter()
                .map(|c| WireCall {
                    id: &c.id,
                    kind: "function",
                    function: WireCalledFunction {
                        name: &c.name,
                        arguments: &c.arguments,
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

/// A tool call the assistant made, sent back in the history.
#[derive(Serialize)]
pub(super) struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCalledFunction<'a>,
}

#[derive(Serialize)]
pub(super) struct WireCalledFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// `response_format: {"type": "json_schema", "json_schema": {…}}`.
#[derive(Serialize)]
pub(super) struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: WireSchema<'a>,
}

#[derive(Serialize)]
pub(super) struct WireSchema<'a> {
    name: String,
    schema: &'a Value,
    strict: bool,
}

/// A tool offered to the model.
#[derive(Serialize)]
pub(super) struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireToolFunction<'a>,
}

#[derive(Serialize)]
pub(super) struct WireToolFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Serialize)]
pub(super) struct StreamOptions {
    include_usage: bool,
}

/// OpenAI requires `^[a-zA-Z0-9_-]{1,64}$` for a schema's name.
pub(super) fn schema_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "answer".to_string()
    } else {
        cleaned
    }
}

/// Whether OpenAI's strict structured-output mode accepts `schema`: every object lists all its
/// properties as required and forbids additional ones. Other schemas are sent non-strict
/// (OpenAI would reject them with strict on; local servers enforce the schema either way).
pub(super) fn strict_compatible(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                if map.get("additionalProperties") != Some(&Value::Bool(false)) {
                    return false;
                }
                let required: Vec<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if props.keys().any(|k| !required.contains(&k.as_str())) {
                    return false;
                }
            }
            map.values().all(strict_compatible)
        }
        Value::Array(items) => items.iter().all(strict_compatible),
        _ => true,
    }
}

pub(super) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" | "eos" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

pub(super) fn response_from_json(value: Value) -> Result<ChatResponse, LlmError> {
    let raw = || excerpt(&value.to_string());
    let answer: CompletionAnswer =
        serde_json::from_value(value.clone()).map_err(|e| LlmError::InvalidResponse {
            message: format!("unexpected completion: {e}"),
            raw: raw(),
        })?;
    let choice = answer
        .choices
        .into_iter()
        .find(|c| c.index == 0)
        .ok_or_else(|| LlmError::InvalidResponse {
            message: "the completion has no choices".into(),
            raw: raw(),
        })?;
    let message = choice.message.unwrap_or_default();
    let tool_calls = message
        .tool_calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: c.id.unwrap_or_else(|| format!("call_{i}")),
            name: c
                .function
                .as_ref()
                .and_then(|f| f.name.clone())
                .unwrap_or_default(),
            arguments: c.function.and_then(|f| f.arguments).unwrap_or_default(),
        })
        .collect();
    Ok(ChatResponse {
        content: message.content.unwrap_or_default(),
        model: answer.model,
        usage: answer.usage.map(Into::into),
        finish_reason: choice.finish_reason.as_deref().map(finish_reason),
        tool_calls,
    })
}

#[derive(Deserialize)]
pub(super) struct CompletionAnswer {
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) choices: Vec<Choice>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(super) struct Choice {
    #[serde(default)]
    pub(super) index: u64,
    #[serde(default)]
    pub(super) message: Option<AnswerMessage>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct AnswerMessage {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
pub(super) struct WireToolCall {
    #[serde(default)]
    pub(super) index: u64,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<WireFunction>,
}

#[derive(Deserialize)]
pub(super) struct WireFunction {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Usage {
    #[serde(default)]
    pub(super) prompt_tokens: u64,
    #[serde(default)]
    pub(super) completion_tokens: u64,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StreamChunk {
    #[serde(default)]
    pub(super) error: Option<Value>,
    #[serde(default)]
    pub(super) choices: Vec<StreamChoice>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(super) struct StreamChoice {
    #[serde(default)]
    pub(super) index: u64,
    #[serde(default)]
    pub(super) delta: Option<Delta>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Delta {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
pub(super) struct EmbeddingsAnswer {
    pub(super) data: Vec<EmbeddingData>,
}

#[derive(Deserialize)]
pub(super) struct EmbeddingData {
    #[serde(default)]
    pub(super) index: usize,
    pub(super) embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub(super) struct ModelsAnswer {
    #[serde(default)]
    pub(super) data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
pub(super) struct ModelEntry {
    pub(super) id: String,
}
