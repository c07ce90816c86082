//! [`OpenAiProvider`]: any server that speaks the OpenAI chat-completions API.

use std::collections::BTreeMap;
use std::time::Instant;

use ananta_core::llm::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, ProviderHealth,
    Role, ToolCall,
};
use ananta_core::{LlmError, LlmProvider, TokenUsage};
use async_trait::async_trait;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{
    HttpConfig, Transport, error_message, excerpt, guard_line_length, http_builder_methods,
    is_context_error, strip_suffixes,
};

/// A provider for OpenAI's API and every server that copies it: LM Studio, llama.cpp's
/// `llama-server`, vLLM, LiteLLM, OpenRouter….
///
/// - chat: `POST {base}/chat/completions`, streamed as server-sent events with
///   `stream_options.include_usage`, so the last chunk carries the token usage;
/// - structured output: `response_format: {"type": "json_schema", …}` (with `strict` only when
///   the schema satisfies OpenAI's strict-mode rules, so other schemas are not rejected);
/// - tools: `tools` / `tool_calls`, with streamed call fragments assembled into whole calls;
/// - embeddings: `POST {base}/embeddings`; health and models: `GET {base}/models`.
///
/// ```no_run
/// use ananta_core::LlmProvider;
/// use ananta_core::llm::{ChatMessage, ChatRequest};
/// use ananta_llm::OpenAiProvider;
///
/// # async fn demo() -> Result<(), ananta_core::LlmError> {
/// // A llama.cpp server on this machine; `OpenAiProvider::openai(key)` for OpenAI itself.
/// let llm = OpenAiProvider::llama_cpp("http://127.0.0.1:8080/v1").build()?;
/// let answer = llm
///     .complete(ChatRequest::new(vec![ChatMessage::user("Say hello")]).max_tokens(16))
///     .await?;
/// println!("{}", answer.content);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    transport: Transport,
    name: String,
    model: Option<String>,
    embedding_model: Option<String>,
    include_usage: bool,
}

/// Builds an [`OpenAiProvider`]; start from [`OpenAiProvider::builder`] or a preset.
#[derive(Debug, Clone)]
pub struct OpenAiProviderBuilder {
    http: HttpConfig,
    name: String,
    model: Option<String>,
    embedding_model: Option<String>,
    include_usage: bool,
}

impl OpenAiProvider {
    /// OpenAI's own API.
    pub const OPENAI_URL: &'static str = "https://api.openai.com/v1";
    /// LM Studio's local server.
    pub const LM_STUDIO_URL: &'static str = "http://localhost:1234/v1";
    /// Model used by the [`OpenAiProvider::openai`] preset.
    pub const OPENAI_DEFAULT_MODEL: &'static str = "gpt-4o-mini";
    /// Embedding model used by the [`OpenAiProvider::openai`] preset.
    pub const OPENAI_DEFAULT_EMBEDDING_MODEL: &'static str = "text-embedding-3-small";

    /// A provider for the server at `base_url`, the URL the paths hang off (usually ending in
    /// `/v1`). A URL ending in `/chat/completions` is accepted and trimmed. No model is set: a
    /// request's [`ChatRequest::model`] or [`OpenAiProviderBuilder::model`] names it, and
    /// servers with one model (llama.cpp, LM Studio) use theirs when none is sent.
    pub fn builder(base_url: impl AsRef<str>) -> OpenAiProviderBuilder {
        let base = strip_suffixes(base_url.as_ref(), &["/chat/completions"]);
        OpenAiProviderBuilder {
            http: HttpConfig::new(base),
            name: "openai".to_string(),
            model: None,
            embedding_model: None,
            include_usage: true,
        }
    }

    /// OpenAI itself, with `gpt-4o-mini` and `text-embedding-3-small`.
    pub fn openai(api_key: impl Into<String>) -> OpenAiProviderBuilder {
        Self::builder(Self::OPENAI_URL)
            .api_key(api_key)
            .model(Self::OPENAI_DEFAULT_MODEL)
            .embedding_model(Self::OPENAI_DEFAULT_EMBEDDING_MODEL)
    }

    /// LM Studio's local server at `http://localhost:1234/v1` (it answers with the loaded
    /// model; set [`OpenAiProviderBuilder::model`] to pick another).
    pub fn lm_studio() -> OpenAiProviderBuilder {
        Self::builder(Self::LM_STUDIO_URL).name("lmstudio")
    }

    /// A llama.cpp `llama-server` (start it with `--embeddings` for embeddings; it serves the
    /// one model it was started with).
    pub fn llama_cpp(base_url: impl AsRef<str>) -> OpenAiProviderBuilder {
        Self::builder(base_url).name("llama.cpp")
    }

    /// A vLLM server; vLLM needs the served model's exact name.
    pub fn vllm(base_url: impl AsRef<str>, model: impl Into<String>) -> OpenAiProviderBuilder {
        Self::builder(base_url).name("vllm").model(model)
    }

    /// Configured from the environment, as the original Ananta was: `OPENAI_URL` (default OpenAI's
    /// API; the original Ananta's `…/v1/chat/completions` form is accepted), `OPENAI_API_KEY` (optional)
    /// and `OPENAI_MODEL` (optional; for OpenAI itself the preset's model otherwise).
    pub fn from_env() -> OpenAiProviderBuilder {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>) -> OpenAiProviderBuilder {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let url = var("OPENAI_URL").unwrap_or_else(|| Self::OPENAI_URL.to_string());
        let mut builder = Self::builder(&url);
        if builder.http.base_url == Self::OPENAI_URL {
            builder = builder
                .model(Self::OPENAI_DEFAULT_MODEL)
                .embedding_model(Self::OPENAI_DEFAULT_EMBEDDING_MODEL);
        }
        if let Some(key) = var("OPENAI_API_KEY") {
            builder = builder.api_key(key);
        }
        if let Some(model) = var("OPENAI_MODEL") {
            builder = builder.model(model);
        }
        builder
    }

    /// LM Studio configured from `LMSTUDIO_URL` (default `http://localhost:1234/v1`) and
    /// `LMSTUDIO_MODEL` (optional).
    pub fn lm_studio_from_env() -> OpenAiProviderBuilder {
        Self::lm_studio_from_vars(|name| std::env::var(name).ok())
    }

    fn lm_studio_from_vars(get: impl Fn(&str) -> Option<String>) -> OpenAiProviderBuilder {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let url = var("LMSTUDIO_URL").unwrap_or_else(|| Self::LM_STUDIO_URL.to_string());
        let mut builder = Self::builder(&url).name("lmstudio");
        if let Some(model) = var("LMSTUDIO_MODEL") {
            builder = builder.model(model);
        }
        builder
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.transport.base()
    }

    /// The default model, when one is set.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The JSON body of a chat request (exposed for debugging and for tests of the protocol).
    pub fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Value, LlmError> {
        request.validate()?;
        let mut body = Map::new();
        if let Some(model) = request.model.as_ref().or(self.model.as_ref()) {
            body.insert("model".into(), json!(model));
        }
        let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        body.insert("messages".into(), Value::Array(messages));
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(max) = request.max_tokens {
            body.insert("max_tokens".into(), json!(max));
        }
        if !request.stop.is_empty() {
            body.insert("stop".into(), json!(request.stop));
        }
        if let Some(format) = &request.response_format {
            let schema = format.schema.as_value();
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": schema_name(&format.name),
                        "schema": schema,
                        "strict": format.strict && strict_compatible(schema),
                    }
                }),
            );
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters.as_value(),
                        }
                    })
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        if stream {
            body.insert("stream".into(), json!(true));
            if self.include_usage {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        Ok(Value::Object(body))
    }
}

impl OpenAiProviderBuilder {
    http_builder_methods!();

    /// The default model (a request's [`ChatRequest::model`] overrides it).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The model for embeddings (default: the chat model).
    pub fn embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }

    /// The name the provider reports in logs ("openai", "lmstudio", "llama.cpp", "vllm").
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether streams ask for usage (`stream_options.include_usage`, default on); turn it
    /// off for old servers that reject the field.
    pub fn stream_usage(mut self, on: bool) -> Self {
        self.include_usage = on;
        self
    }

    /// Checks the settings and builds the provider.
    pub fn build(self) -> Result<OpenAiProvider, LlmError> {
        Ok(OpenAiProvider {
            transport: self.http.build()?,
            name: self.name,
            embedding_model: self.embedding_model.or_else(|| self.model.clone()),
            model: self.model,
            include_usage: self.include_usage,
        })
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.request_body(&request, false)?;
        let started = Instant::now();
        let response = self.transport.post("/chat/completions", &body).await?;
        let value: Value = self.transport.read_json(response, started).await?;
        response_from_json(value)
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let body = self.request_body(&request, true)?;
        let response = self.transport.post("/chat/completions", &body).await?;
        let events = guard_line_length(self.transport.body_stream(response)).eventsource();
        let state = StreamState {
            events: Some(Box::pin(events)),
            assembler: StreamAssembler::default(),
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            loop {
                let events = st.events.as_mut()?;
                let item = match events.next().await {
                    None => {
                        st.events = None;
                        st.assembler.finish(false).map(|r| (r, st))
                    }
                    Some(Err(e)) => {
                        st.events = None;
                        Some((Err(sse_error(e)), st))
                    }
                    Some(Ok(event)) => {
                        let data = event.data.trim();
                        if data == "[DONE]" {
                            st.events = None;
                            st.assembler.finish(true).map(|r| (r, st))
                        } else if data.is_empty() {
                            continue;
                        } else {
                            match st.assembler.push(data) {
                                Ok(Some(chunk)) => Some((Ok(chunk), st)),
                                Ok(None) => continue,
                                Err(e) => {
                                    st.events = None;
                                    Some((Err(e), st))
                                }
                            }
                        }
                    }
                };
                return item;
            }
        });
        Ok(Box::pin(stream))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = json!({ "input": inputs, "encoding_format": "float" });
        if let Some(model) = &self.embedding_model {
            body["model"] = json!(model);
        }
        let answer: EmbeddingsAnswer = self.transport.post_json("/embeddings", &body).await?;
        let mut data = answer.data;
        if data.len() != inputs.len() {
            return Err(LlmError::InvalidResponse {
                message: format!("asked for {} embeddings, got {}", inputs.len(), data.len()),
                raw: String::new(),
            });
        }
        data.sort_by_key(|d| d.index);
        if data.iter().enumerate().any(|(i, d)| d.index != i) {
            return Err(LlmError::InvalidResponse {
                message: "embedding indexes are not 0..n".into(),
                raw: String::new(),
            });
        }
        Ok(data.into_iter().map(|d| d.embedding).collect())
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        self.transport
            .health("/models", |models: ModelsAnswer| {
                Ok(models.data.into_iter().map(|m| m.id).collect())
            })
            .await
    }
}

type EventStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<eventsource_stream::Event, EventStreamError<LlmError>>>
            + Send,
    >,
>;

struct StreamState {
    events: Option<EventStream>,
    assembler: StreamAssembler,
}

fn sse_error(e: EventStreamError<LlmError>) -> LlmError {
    match e {
        EventStreamError::Transport(e) => e,
        EventStreamError::Utf8(e) => LlmError::InvalidResponse {
            message: format!("event stream is not UTF-8: {e}"),
            raw: String::new(),
        },
        EventStreamError::Parser(e) => LlmError::InvalidResponse {
            message: format!("not a server-sent event stream: {e}"),
            raw: String::new(),
        },
    }
}

/// Turns the events of a streamed completion into chunks: text deltas as they come, and one
/// last chunk with the finish reason, the usage and the assembled tool calls.
#[derive(Default)]
struct StreamAssembler {
    finish_reason: Option<FinishReason>,
    usage: Option<TokenUsage>,
    tool_calls: BTreeMap<u64, PartialToolCall>,
    finished: bool,
}

#[derive(Default)]
struct PartialToolCall {
    id: String,
    name: String,
    arguments: String,
}

impl StreamAssembler {
    /// One `data:` payload; a chunk when it carries text.
    fn push(&mut self, data: &str) -> Result<Option<ChatChunk>, LlmError> {
        // One pass straight into the chunk type: this runs once per token.
        let chunk: StreamChunk =
            serde_json::from_str(data).map_err(|e| LlmError::InvalidResponse {
                message: format!("unexpected stream chunk: {e}"),
                raw: excerpt(data),
            })?;
        if let Some(error) = chunk.error {
            let text = error.to_string();
            let message = error_message(&json!({ "error": error }).to_string());
            if is_context_error(&text) {
                return Err(LlmError::ContextLengthExceeded(message));
            }
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok());
            return Err(LlmError::Server {
                status: status.unwrap_or(500),
                message,
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let mut text = String::new();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    text.push_str(&content);
                }
                for call in delta.tool_calls {
                    let slot = self.tool_calls.entry(call.index).or_default();
                    if let Some(id) = call.id {
                        slot.id = id;
                    }
                    if let Some(f) = call.function {
                        if let Some(name) = f.name {
                            slot.name.push_str(&name);
                        }
                        if let Some(args) = f.arguments {
                            slot.arguments.push_str(&args);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(&reason));
            }
        }
        Ok((!text.is_empty()).then(|| ChatChunk {
            delta: text,
            ..ChatChunk::default()
        }))
    }

    /// The last chunk, once: at `[DONE]`, or at the end of the body when the answer had
    /// finished (some servers omit `[DONE]`); a body that ends mid-answer is an error.
    fn finish(&mut self, saw_done: bool) -> Option<Result<ChatChunk, LlmError>> {
        if self.finished {
            return None;
        }
        self.finished = true;
        if !saw_done && self.finish_reason.is_none() {
            return Some(Err(LlmError::InvalidResponse {
                message: "the event stream ended before the answer was complete (truncated)".into(),
                raw: String::new(),
            }));
        }
        let tool_calls: Vec<ToolCall> = std::mem::take(&mut self.tool_calls)
            .into_iter()
            .map(|(index, c)| ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{index}")
                } else {
                    c.id
                },
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        Some(Ok(ChatChunk {
            delta: String::new(),
            usage: self.usage,
            finish_reason: self.finish_reason.clone(),
            tool_calls,
        }))
    }
}

fn message_json(message: &ChatMessage) -> Value {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = Map::new();
    out.insert("role".into(), json!(role));
    if message.content.is_empty() && !message.tool_calls.is_empty() {
        out.insert("content".into(), Value::Null);
    } else {
        out.insert("content".into(), json!(message.content));
    }
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &message.tool_call_id {
        out.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(out)
}

/// OpenAI requires `^[a-zA-Z0-9_-]{1,64}$` for a schema's name.
fn schema_name(name: &str) -> String {
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
fn strict_compatible(schema: &Value) -> bool {
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

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" | "eos" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

fn response_from_json(value: Value) -> Result<ChatResponse, LlmError> {
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
struct CompletionAnswer {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    message: Option<AnswerMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
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
struct StreamChunk {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingData>,
}

#[derive(Deserialize)]
struct EmbeddingData {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ModelsAnswer {
    #[serde(default)]
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ananta_core::llm::ToolSpec;

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
}
