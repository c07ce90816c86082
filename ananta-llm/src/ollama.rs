//! Ollama's native API: `/api/chat` (NDJSON streaming, JSON-schema `format`, tools),
//! `/api/embed` and `/api/tags`.

use std::pin::Pin;

use ananta_core::llm::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, ProviderHealth,
    Role, ToolCall,
};
use ananta_core::{LlmError, LlmProvider, TokenUsage};
use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{
    ByteStream, HttpConfig, Transport, excerpt, http_builder_methods, is_context_error, lines,
    strip_suffixes,
};

/// Endpoint paths that a URL taken from `OLLAMA_URL` may still carry (the original Ananta's default was
/// `http://localhost:11434/api/generate`); [`OllamaProvider::from_env`] strips them.
const URL_SUFFIXES: &[&str] = &[
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/tags",
    "/api",
];

/// The status given to an error that Ollama reports inside a successful (HTTP 200) response —
/// a `{"error": …}` body or stream line: the server failed while answering, so it is treated
/// like an HTTP 500 (a transient [`LlmError::Server`]).
const IN_BODY_ERROR_STATUS: u16 = 500;

/// An [`LlmProvider`] for [Ollama](https://ollama.com)'s native API.
///
/// - [`complete`](LlmProvider::complete) and [`complete_stream`](LlmProvider::complete_stream)
///   call `POST /api/chat`; streaming reads Ollama's NDJSON lines. A request's
///   `response_format` schema is sent as Ollama's `format` (structured outputs), its tools as
///   `tools`, its temperature, token limit and stop sequences as `options`.
/// - [`embed`](LlmProvider::embed) calls `POST /api/embed` with the embedding model.
/// - [`health`](LlmProvider::health) calls `GET /api/tags` and lists the installed models.
///
/// An error Ollama reports inside a successful response (a `{"error": …}` body or stream
/// line) is [`LlmError::Server`] with status 500, or [`LlmError::ContextLengthExceeded`] when
/// it says the prompt did not fit. A stream that ends without Ollama's final `done` line is
/// [`LlmError::InvalidResponse`]. Dropping a stream closes the connection, which stops the
/// generation.
///
/// Cheap to clone: clones share the HTTP client.
///
/// ```
/// use ananta_llm::OllamaProvider;
///
/// let llm = OllamaProvider::builder("http://localhost:11434")
///     .model("qwen2.5:0.5b")
///     .embedding_model("nomic-embed-text")
///     .keep_alive("10m")
///     .build()?;
/// assert_eq!(llm.model(), "qwen2.5:0.5b");
/// assert_eq!(llm.embedding_model(), "nomic-embed-text");
/// # Ok::<(), ananta_core::LlmError>(())
/// ```
#[derive(Clone)]
pub struct OllamaProvider {
    transport: Transport,
    model: String,
    embedding_model: String,
    keep_alive: Option<String>,
}

impl std::fmt::Debug for OllamaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaProvider")
            .field("base_url", &self.transport.base())
            .field("model", &self.model)
            .field("embedding_model", &self.embedding_model)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl OllamaProvider {
    /// Where a local Ollama listens by default.
    pub const DEFAULT_URL: &'static str = "http://localhost:11434";

    /// The chat model used when neither the builder nor the request names one.
    pub const DEFAULT_MODEL: &'static str = "llama3.2";

    /// A builder for a provider talking to the Ollama server at `base_url` (e.g.
    /// `http://localhost:11434`, without `/api`).
    pub fn builder(base_url: impl Into<String>) -> OllamaProviderBuilder {
        OllamaProviderBuilder {
            http: HttpConfig::new(base_url),
            model: Self::DEFAULT_MODEL.to_string(),
            embedding_model: None,
            keep_alive: None,
        }
    }

    /// A builder configured from the environment: the server from `OLLAMA_URL` (default
    /// [`DEFAULT_URL`](Self::DEFAULT_URL); an endpoint path such as `/api/generate`,
    /// `/api/chat` or `/api` at its end is removed) and the model from `OLLAMA_MODEL` (default
    /// [`DEFAULT_MODEL`](Self::DEFAULT_MODEL)). Adjust it further before calling
    /// [`build`](OllamaProviderBuilder::build).
    pub fn from_env() -> OllamaProviderBuilder {
        Self::builder_from_vars(
            std::env::var("OLLAMA_URL").ok(),
            std::env::var("OLLAMA_MODEL").ok(),
        )
    }

    /// [`from_env`](Self::from_env) with the variables' values handed in.
    fn builder_from_vars(url: Option<String>, model: Option<String>) -> OllamaProviderBuilder {
        let url = url.filter(|u| !u.trim().is_empty()).map_or_else(
            || Self::DEFAULT_URL.to_string(),
            |u| strip_suffixes(&u, URL_SUFFIXES),
        );
        let builder = Self::builder(url);
        match model
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
        {
            Some(model) => builder.model(model),
            None => builder,
        }
    }

    /// The base URL of the server, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.transport.base()
    }

    /// The default chat model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The model used by [`embed`](LlmProvider::embed).
    pub fn embedding_model(&self) -> &str {
        &self.embedding_model
    }

    /// The body of a `/api/chat` request.
    fn chat_body<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: bool,
    ) -> Result<ChatBody<'a>, LlmError> {
        request.validate()?;
        let model = request
            .model
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(&self.model);
        Ok(ChatBody {
            model,
            messages: wire_messages(&request.messages),
            stream,
            format: request.response_format.as_ref().map(|f| &f.schema),
            options: WireOptions {
                temperature: request.temperature,
                num_predict: request.max_tokens,
                stop: &request.stop,
            },
            keep_alive: self.keep_alive.as_deref(),
            tools: request
                .tools
                .iter()
                .map(|t| WireTool {
                    kind: "function",
                    function: WireFunction {
                        name: &t.name,
                        description: &t.description,
                        parameters: &t.parameters,
                    },
                })
                .collect(),
        })
    }
}

/// Builds an [`OllamaProvider`]; see [`OllamaProvider::builder`] and
/// [`OllamaProvider::from_env`].
pub struct OllamaProviderBuilder {
    http: HttpConfig,
    model: String,
    embedding_model: Option<String>,
    keep_alive: Option<String>,
}

impl std::fmt::Debug for OllamaProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaProviderBuilder")
            .field("base_url", &self.http.base_url)
            .field("model", &self.model)
            .field("embedding_model", &self.embedding_model)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl OllamaProviderBuilder {
    /// The default chat model (default `llama3.2`); a request's own `model` overrides it.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The model [`embed`](LlmProvider::embed) uses (default: the chat model), e.g.
    /// `nomic-embed-text`.
    pub fn embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }

    /// How long Ollama keeps the model loaded after a request, sent as `keep_alive` with
    /// every request: a duration such as `"5m"` or `"1h"`, `"0"` to unload at once, `"-1"`
    /// to keep it loaded. Unset (or empty), the server's default applies.
    pub fn keep_alive(mut self, keep_alive: impl Into<String>) -> Self {
        self.keep_alive = Some(keep_alive.into());
        self
    }

    http_builder_methods!();

    /// Checks the settings and builds the provider. Nothing is sent to the server.
    ///
    /// # Errors
    ///
    /// [`LlmError::InvalidRequest`] for an unusable base URL, header or timeout, or an empty
    /// model name.
    pub fn build(self) -> Result<OllamaProvider, LlmError> {
        let model = self.model.trim().to_string();
        if model.is_empty() {
            return Err(LlmError::InvalidRequest(
                "the model name must not be empty".into(),
            ));
        }
        let embedding_model = match self.embedding_model {
            None => model.clone(),
            Some(m) if m.trim().is_empty() => {
                return Err(LlmError::InvalidRequest(
                    "the embedding model name must not be empty".into(),
                ));
            }
            Some(m) => m.trim().to_string(),
        };
        let keep_alive = self
            .keep_alive
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        Ok(OllamaProvider {
            transport: self.http.build()?,
            model,
            embedding_model,
            keep_alive,
        })
    }
}

#[async_trait]
impl LlmProvider for OllamaProvider {
    fn name(&self) -> &str {
        "ollama"
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.chat_body(&request, false)?;
        let value: Value = self.transport.post_json("/api/chat", &body).await?;
        parse_chat_response(&value)
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let body = self.chat_body(&request, true)?;
        let response = self.transport.post("/api/chat", &body).await?;
        Ok(decode_stream(self.transport.body_stream(response)))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let body = EmbedBody {
            model: &self.embedding_model,
            input: &inputs,
            keep_alive: self.keep_alive.as_deref(),
        };
        let value: Value = self.transport.post_json("/api/embed", &body).await?;
        parse_embeddings(&value, inputs.len())
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        self.transport
            .health("/api/tags", |value: Value| parse_tags(&value))
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies.

/// `POST /api/chat`.
#[derive(Debug, Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    /// A JSON schema: Ollama constrains the answer to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a schemars::Schema>,
    #[serde(skip_serializing_if = "WireOptions::is_empty")]
    options: WireOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
}

/// Ollama's model `options` that a [`ChatRequest`] can set.
#[derive(Debug, Serialize)]
struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
}

impl WireOptions<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none() && self.num_predict.is_none() && self.stop.is_empty()
    }
}

/// A chat message as Ollama reads it.
#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    /// For a tool result: the function that produced it (Ollama matches results by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
    /// For a tool result: the call it answers (read by newer Ollama versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

/// A tool call of an assistant message sent back to Ollama.
#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    function: WireCalledFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireCalledFunction<'a> {
    name: &'a str,
    /// An object, not JSON text as in OpenAI's API.
    arguments: Value,
}

/// A tool offered to the model.
#[derive(Debug, Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a schemars::Schema,
}

/// `POST /api/embed`.
#[derive(Debug, Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// The messages in Ollama's shape. A tool result carries the name of the function it answers,
/// looked up from the assistant message that made the call.
fn wire_messages(messages: &[ChatMessage]) -> Vec<WireMessage<'_>> {
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
fn arguments_value(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// A `/api/chat` answer, or one line of a streamed answer.
#[derive(Debug, Deserialize)]
struct ChatLine {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<LineToolCall>>,
}

#[derive(Debug, Deserialize)]
struct LineToolCall {
    #[serde(default)]
    id: Option<String>,
    function: LineFunction,
}

#[derive(Debug, Deserialize)]
struct LineFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

impl ChatLine {
    fn usage(&self) -> Option<TokenUsage> {
        if self.prompt_eval_count.is_none() && self.eval_count.is_none() {
            return None;
        }
        Some(TokenUsage {
            prompt_tokens: self.prompt_eval_count.unwrap_or(0),
            completion_tokens: self.eval_count.unwrap_or(0),
        })
    }

    /// The text and tool calls of the line's message.
    fn take_message(&mut self) -> (String, Vec<LineToolCall>) {
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
fn finish_reason(done: bool, done_reason: Option<&str>, tool_calls: bool) -> Option<FinishReason> {
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
fn tool_calls(calls: Vec<LineToolCall>, first: usize) -> Vec<ToolCall> {
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
fn in_body_error(error: &Value) -> LlmError {
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

fn invalid(message: impl Into<String>, raw: &Value) -> LlmError {
    LlmError::InvalidResponse {
        message: message.into(),
        raw: excerpt(&raw.to_string()),
    }
}

/// Maps a non-streamed `/api/chat` answer.
fn parse_chat_response(value: &Value) -> Result<ChatResponse, LlmError> {
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

type LineStream = Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

/// What the NDJSON decoder keeps between lines.
struct StreamState {
    lines: LineStream,
    /// Tool calls seen so far; emitted together on the final chunk.
    tool_calls: Vec<ToolCall>,
}

/// Decodes a streamed `/api/chat` answer: one chunk per line that adds text, then a final
/// chunk (from the `done` line) with usage, finish reason and the tool calls. Ends after the
/// final chunk or the first error.
fn decode_stream(body: ByteStream) -> ChatStream {
    let state = StreamState {
        lines: lines(body),
        tool_calls: Vec::new(),
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            let line = match st.lines.next().await {
                Some(Ok(line)) => line,
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let err = LlmError::InvalidResponse {
                        message: "the stream was truncated: it ended before Ollama's final \
                                  `done` line"
                            .into(),
                        raw: String::new(),
                    };
                    return Some((Err(err), None));
                }
            };
            let mut parsed: ChatLine = match serde_json::from_str(&line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    let err = LlmError::InvalidResponse {
                        message: format!("unreadable line in the /api/chat stream: {e}"),
                        raw: excerpt(&line),
                    };
                    return Some((Err(err), None));
                }
            };
            if let Some(error) = &parsed.error {
                return Some((Err(in_body_error(error)), None));
            }
            let (delta, calls) = parsed.take_message();
            let first = st.tool_calls.len();
            st.tool_calls.extend(tool_calls(calls, first));
            if parsed.done {
                let tool_calls = std::mem::take(&mut st.tool_calls);
                let chunk = ChatChunk {
                    delta,
                    usage: parsed.usage(),
                    finish_reason: finish_reason(
                        true,
                        parsed.done_reason.as_deref(),
                        !tool_calls.is_empty(),
                    ),
                    tool_calls,
                };
                return Some((Ok(chunk), None));
            }
            // Lines without text (a thinking model's reasoning, a tool call) add nothing yet.
            if !delta.is_empty() {
                let chunk = ChatChunk {
                    delta,
                    ..ChatChunk::default()
                };
                return Some((Ok(chunk), Some(st)));
            }
        }
    }))
}

/// `{"embeddings": [[…], …]}`, one vector per input.
#[derive(Debug, Deserialize)]
struct EmbedAnswer {
    embeddings: Vec<Vec<f32>>,
}

fn parse_embeddings(value: &Value, inputs: usize) -> Result<Vec<Vec<f32>>, LlmError> {
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
struct TagsAnswer {
    #[serde(default)]
    models: Option<Vec<TagModel>>,
}

#[derive(Debug, Deserialize)]
struct TagModel {
    #[serde(default)]
    name: String,
    #[serde(default)]
    model: String,
}

fn parse_tags(value: &Value) -> Result<Vec<String>, LlmError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ananta_core::llm::ToolSpec;
    use bytes::Bytes;
    use serde_json::json;

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

        let got = collect(&[
            "{\"message\":{\"content\":\"a\"},\"done\":false}\n{oops\n{\"done\":true}\n",
        ])
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
}
