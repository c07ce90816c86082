//! The wire format of Ollama's API: request bodies as typed structs, answers and their parts,
//! and the mapping to Ananta's chat types.

use ananta_core::llm::{ChatMessage, ChatResponse, FinishReason, Role, ToolCall};
use ananta_core::{LlmError, TokenUsage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{excerpt, is_context_error};

/// The status given to an error that Ollama reports inside a successful (HTTP 200) response —
/// a `{"error": …}` body or stream line: the server failed while answering, so it is treated
/// like an HTTP 500 (a transient [`LlmError::Server`]).
pub(super) const IN_BODY_ERROR_STATUS: u16 = 500;

/// `POST /api/chat`.
#[derive(Debug, Serialize)]
pub(super) struct ChatBody<'a> {
    pub(super) model: &'a str,
    pub(super) messages: Vec<WireMessage<'a>>,
    pub(super) stream: bool,
    /// A JSON schema: Ollama constrains the answer to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) format: Option<&'a schemars::Schema>,
    #[serde(skip_serializing_if = "WireOptions::is_empty")]
    pub(super) options: WireOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) keep_alive: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<WireTool<'a>>,
}

/// A `/api/chat` answer, or one line of a streamed answer.
#[derive(Debug, Deserialize)]
pub(super) struct ChatLine {
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) message: Option<LineMessage>,
    #[serde(default)]
    pub(super) done: bool,
    #[serde(default)]
    pub(super) done_reason: Option<String>,
    #[serde(default)]
    pub(super) prompt_eval_count: Option<u64>,
    #[serde(default)]
    pub(super) eval_count: Option<u64>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

/// Ollama's model `options` that a [`ChatRequest`] can set.
#[derive(Debug, Serialize)]
pub(super) struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(super) stop: &'a [String],
}

impl WireOptions<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.temperature.is_none() && self.num_predict.is_none() && self.stop.is_empty()
    }
}

/// A chat message as Ollama reads it.
#[derive(Debug, Serialize)]
pub(super) struct WireMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<WireToolCall<'a>>,
    /// For a tool result: the function that produced it (Ollama matches results by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_name: Option<&'a str>,
    /// For a tool result: the call it answers (read by newer Ollama versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_call_id: Option<&'a str>,
}

/// A tool call of an assistant message sent back to Ollama.
#[derive(Debug, Serialize)]
pub(super) struct WireToolCall<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(super) id: &'a str,
    pub(super) function: WireCalledFunction<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct WireCalledFunction<'a> {
    pub(super) name: &'a str,
    /// An object, not JSON text as in OpenAI's API.
    pub(super) arguments: Value,
}

/// A tool offered to the model.
#[derive(Debug, Serialize)]
pub(super) struct WireTool<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct WireFunction<'a> {
    pub(super) name: &'a str,
    pub(super) description: &'a str,
    pub(super) parameters: &'a schemars::Schema,
}

/// `POST /api/embed`.
#[derive(Debug, Serialize)]
pub(super) struct EmbedBody<'a> {
    pub(super) model: &'a str,
    pub(super) input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) keep_alive: Option<&'a str>,
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// The messages in Ollama's shape. A tool result carries the name of the function it answers,
/// looked up from the assistant message that made the call.
pub(super) fn wire_messages(messages: &[ChatMessage]) -> Vec<WireMessage<'_>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let tool_call_id = message
                .tool_call_id
                .as_deref()
                .filter(|_| message.role == Role::Tool);
            let tool_name = tool_call_id.and_then(|id| {
                messages[..i]
                    .iter()
                    .rev()
                    .flat_map(|m| m.tool_calls.iter())
                    .find(|call| call.id == id)
                    .map(|call| call.name.as_str())
            });
            WireMessage {
                role: role_name(message.role),
                content: &message.content,
                tool_calls: message
                    .tool_calls
                    .iter()
                    .map(|call| WireToolCall {
                        id: &call.id,
                        function: WireCalledFunction {
                            name: &call.name,
                            arguments: arguments_value(&call.arguments),
                        },
                    })
                    .collect(),
                tool_name,
                tool_call_id,
            }
        })
        .collect()
}

/// A tool call's JSON-text arguments as the object Ollama expects; empty text is `{}`, text
/// that is not JSON is sent as a string.
pub(super) fn arguments_value(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

#[derive(Debug, Deserialize)]
pub(super) struct LineMessage {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<LineToolCall>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LineToolCall {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) function: LineFunction,
}

#[derive(Debug, Deserialize)]
pub(super) struct LineFunction {
    pub(super) name: String,
    #[serde(default)]
    pub(super) arguments: Value,
}

impl ChatLine {
    pub(super) fn usage(&self) -> Option<TokenUsage> {
        if self.prompt_eval_count.is_none() && self.eval_count.is_none() {
            return None;
        }
        Some(TokenUsage {
            prompt_tokens: self.prompt_eval_count.unwrap_or(0),
            completion_tokens: self.eval_count.unwrap_or(0),
        })
    }

    /// The text and tool calls of the line's message.
    pub(super) fn take_message(&mut self) -> (String, Vec<LineToolCall>) {
        match self.message.take() {
            Some(m) => (
                m.content.unwrap_or_default(),
                m.tool_calls.unwrap_or_default(),
            ),
            None => (String::new(), Vec::new()),
        }
    }
}

/// Why generation stopped, from Ollama's `done_reason`; a finished answer that does not say
/// (older servers) stopped normally.
pub(super) fn finish_reason(
    done: bool,
    done_reason: Option<&str>,
    tool_calls: bool,
) -> Option<FinishReason> {
    if tool_calls {
        return Some(FinishReason::ToolCalls);
    }
    match done_reason.map(str::trim) {
        Some("stop") => Some(FinishReason::Stop),
        Some("length") => Some(FinishReason::Length),
        Some("") | None => done.then_some(FinishReason::Stop),
        Some(other) => Some(FinishReason::Other(other.to_string())),
    }
}

/// Tool calls in Ollama's shape as [`ToolCall`]s; calls without an id get `call_<n>`, counting
/// from `first`.
pub(super) fn tool_calls(calls: Vec<LineToolCall>, first: usize) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, call)| ToolCall {
            id: call
                .id
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(|| format!("call_{}", first + i)),
            name: call.function.name,
            arguments: match call.function.arguments {
                Value::Null => "{}".to_string(),
                Value::String(text) => text,
                other => other.to_string(),
            },
        })
        .collect()
}

/// The error Ollama reported inside a successful response.
pub(super) fn in_body_error(error: &Value) -> LlmError {
    let message = match error {
        Value::String(text) => text.clone(),
        other => other
            .pointer("/message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_string),
    };
    let message = excerpt(message.trim());
    if is_context_error(&error.to_string()) {
        LlmError::ContextLengthExceeded(message)
    } else {
        LlmError::Server {
            status: IN_BODY_ERROR_STATUS,
            message,
        }
    }
}

pub(super) fn invalid(message: impl Into<String>, raw: &Value) -> LlmError {
    LlmError::InvalidResponse {
        message: message.into(),
        raw: excerpt(&raw.to_string()),
    }
}

/// Maps a non-streamed `/api/chat` answer.
pub(super) fn parse_chat_response(value: &Value) -> Result<ChatResponse, LlmError> {
    let mut line = ChatLine::deserialize(value)
        .map_err(|e| invalid(format!("unexpected /api/chat answer: {e}"), value))?;
    if let Some(error) = &line.error {
        return Err(in_body_error(error));
    }
    if line.message.is_none() {
        return Err(invalid("the /api/chat answer has no `message`", value));
    }
    let (content, calls) = line.take_message();
    let tool_calls = tool_calls(calls, 0);
    Ok(ChatResponse {
        content,
        model: line.model.take().filter(|m| !m.is_empty()),
        usage: line.usage(),
        finish_reason: finish_reason(true, line.done_reason.as_deref(), !tool_calls.is_empty()),
        tool_calls,
    })
}

/// `{"embeddings": [[…], …]}`, one vector per input.
#[derive(Debug, Deserialize)]
pub(super) struct EmbedAnswer {
    pub(super) embeddings: Vec<Vec<f32>>,
}

pub(super) fn parse_embeddings(value: &Value, inputs: usize) -> Result<Vec<Vec<f32>>, LlmError> {
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(in_body_error(error));
    }
    let answer = EmbedAnswer::deserialize(value)
        .map_err(|e| invalid(format!("unexpected /api/embed answer: {e}"), value))?;
    if answer.embeddings.len() != inputs {
        return Err(invalid(
            format!(
                "/api/embed returned {} embeddings for {inputs} inputs",
                answer.embeddings.len()
            ),
            value,
        ));
    }
    Ok(answer.embeddings)
}

/// `{"models": [{"name": …}, …]}`.
#[derive(Debug, Deserialize)]
pub(super) struct TagsAnswer {
    #[serde(default)]
    pub(super) models: Option<Vec<TagModel>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TagModel {
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) model: String,
}

pub(super) fn parse_tags(value: &Value) -> Result<Vec<String>, LlmError> {
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(in_body_error(error));
    }
    let answer = TagsAnswer::deserialize(value)
        .map_err(|e| invalid(format!("unexpected /api/tags answer: {e}"), value))?;
    Ok(answer
        .models
        .unwrap_or_default()
        .into_iter()
        .map(|m| if m.name.is_empty() { m.model } else { m.name })
        .filter(|name| !name.is_empty())
        .collect())
}
