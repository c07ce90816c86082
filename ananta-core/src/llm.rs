//! The [`LlmProvider`] trait: chat completion, streaming, structured output, embeddings, health.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;
use crate::task::TokenUsage;

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user (or the agent feeding back command output).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call the model asked for (see [`ChatMessage::tool_result`]).
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// Tools the model asked to call in this (assistant) message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn new(role: Role, content: String) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content.into())
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content.into())
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content.into())
    }
}

impl ChatMessage {
    /// An assistant message that asks for tool calls (as returned in
    /// [`ChatResponse::tool_calls`]); send it back before the tool results.
    pub fn assistant_tool_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::new(Role::Assistant, content.into())
        }
    }

    /// The result of the tool call `call_id`, to send back to the model.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content.into())
        }
    }
}

/// A function the model may call ("tools" / function calling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The function's name (`[a-zA-Z0-9_-]`, at most 64 characters for OpenAI).
    pub name: String,
    /// What the function does; the model reads this to decide when to call it.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: schemars::Schema,
}

impl ToolSpec {
    /// A tool whose arguments are described by `T`'s JSON schema.
    pub fn for_type<T: JsonSchema>(
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters: schemars::schema_for!(T),
        }
    }
}

/// A call of a [`ToolSpec`] the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// The server's id for this call; echo it in [`ChatMessage::tool_result`].
    pub id: String,
    /// The function to call.
    pub name: String,
    /// The arguments as JSON text, exactly as the model wrote them (it may be invalid JSON).
    pub arguments: String,
}

impl ToolCall {
    /// Parses the arguments into `T`.
    pub fn parse_arguments<T: serde::de::DeserializeOwned>(&self) -> Result<T, LlmError> {
        serde_json::from_str(&self.arguments).map_err(|e| LlmError::SchemaMismatch {
            message: format!("arguments of tool call `{}`: {e}", self.name),
            raw: self.arguments.clone(),
        })
    }
}

/// Asks the model to answer with JSON matching a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// A short name for the schema (OpenAI requires one).
    pub name: String,
    /// The JSON schema, e.g. `schemars::schema_for!(T)`.
    pub schema: schemars::Schema,
    /// Ask the server to enforce the schema strictly where it can.
    pub strict: bool,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Model name; the provider's default when `None`.
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Maximum tokens to generate.
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Structured output: the answer must be JSON matching this schema.
    pub response_format: Option<JsonSchemaFormat>,
    /// Functions the model may call instead of answering with text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
}

impl ChatRequest {
    /// A request with these messages and provider defaults for everything else.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// Checks what every provider refuses alike: no messages, a temperature that is not a
    /// finite number of at least 0, a token limit of 0.
    ///
    /// ```
    /// use ananta_core::llm::{ChatMessage, ChatRequest};
    ///
    /// assert!(ChatRequest::new(vec![ChatMessage::user("hi")]).validate().is_ok());
    /// assert!(ChatRequest::new(vec![]).validate().is_err());
    /// assert!(ChatRequest::new(vec![ChatMessage::user("hi")]).temperature(-1.0).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), crate::error::LlmError> {
        use crate::error::LlmError;
        if self.messages.is_empty() {
            return Err(LlmError::InvalidRequest(
                "a chat request needs at least one message".into(),
            ));
        }
        if let Some(t) = self.temperature
            && (!t.is_finite() || t < 0.0)
        {
            return Err(LlmError::InvalidRequest(format!(
                "temperature must be a finite number of at least 0, not {t}"
            )));
        }
        if self.max_tokens == Some(0) {
            return Err(LlmError::InvalidRequest(
                "max_tokens must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the token limit of the answer.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Offers a function the model may call.
    pub fn tool(mut self, tool: ToolSpec) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds stop sequences.
    pub fn stop(mut self, stop: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.stop.extend(stop.into_iter().map(Into::into));
        self
    }

    /// Asks for JSON output matching `schema`.
    pub fn json_schema(mut self, name: impl Into<String>, schema: schemars::Schema) -> Self {
        self.response_format = Some(JsonSchemaFormat {
            name: name.into(),
            schema,
            strict: true,
        });
        self
    }

    /// Asks for JSON output matching `T`'s schema.
    pub fn json_schema_for<T: JsonSchema>(self) -> Self {
        let name = T::schema_name().into_owned();
        self.json_schema(name, schemars::schema_for!(T))
    }
}

/// Why the model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It hit the token limit.
    Length,
    /// It wants to call a tool.
    ToolCalls,
    /// The server filtered the answer.
    ContentFilter,
    /// Anything else the server reported.
    Other(String),
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The answer text.
    pub content: String,
    /// The model that answered, when known.
    pub model: Option<String>,
    /// Token usage, when reported.
    pub usage: Option<TokenUsage>,
    /// Why generation stopped, when reported.
    pub finish_reason: Option<FinishReason>,
    /// Tool calls the model asked for (with [`FinishReason::ToolCalls`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl ChatResponse {
    /// A response with just this text.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Text added by this chunk.
    pub delta: String,
    /// Usage, usually only on the last chunk.
    pub usage: Option<TokenUsage>,
    /// Set on the last chunk.
    pub finish_reason: Option<FinishReason>,
    /// Complete tool calls; providers assemble streamed call fragments and emit each call
    /// once, whole, usually on the last chunk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// A streamed answer. Dropping it stops the generation.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, LlmError>> + Send>>;

/// What [`LlmProvider::health`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderHealth {
    /// Whether the server answered.
    pub reachable: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// Models the server offers, when it lists them.
    pub models: Vec<String>,
    /// Why the server is not reachable, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProviderHealth {
    /// A reachable provider with these models.
    pub fn up(latency: Duration, models: Vec<String>) -> Self {
        Self {
            reachable: true,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            models,
            error: None,
        }
    }

    /// An unreachable provider: the check failed after `latency` with `error`.
    pub fn down(latency: Duration, error: impl Into<String>) -> Self {
        Self {
            reachable: false,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            models: Vec::new(),
            error: Some(error.into()),
        }
    }
}

/// A chat model behind some API.
///
/// Implementations live in `ananta-llm` (Ollama, OpenAI-compatible servers, a scripted provider
/// for demos and tests, and resilience wrappers), and `MockLlmProvider` with feature `testing`.
/// Use it as `Arc<dyn LlmProvider>`; `Arc<P>` and `Box<P>` implement it too.
///
/// Only [`name`](Self::name) and [`complete`](Self::complete) are required: streaming falls
/// back to one chunk holding the whole answer, [`embed`](Self::embed) answers
/// [`LlmError::Unsupported`], and [`health`](Self::health) reports reachable without asking
/// anything. An in-process or custom model implements the two and overrides what it offers:
///
/// ```
/// use ananta_core::llm::{ChatRequest, ChatResponse, LlmProvider};
/// use ananta_core::error::LlmError;
/// use futures::StreamExt;
///
/// struct Echo;
/// #[async_trait::async_trait]
/// impl LlmProvider for Echo {
///     fn name(&self) -> &str { "echo" }
///     async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
///         let last = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
///         Ok(ChatResponse::text(last))
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let request = ChatRequest::new(vec![ananta_core::llm::ChatMessage::user("hi")]);
/// let mut stream = Echo.complete_stream(request).await?;
/// assert_eq!(stream.next().await.transpose()?.map(|c| c.delta).as_deref(), Some("hi"));
/// assert!(matches!(Echo.embed(vec!["x".into()]).await, Err(LlmError::Unsupported { .. })));
/// assert!(Echo.health().await?.reachable);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// A short name for logs ("ollama", "openai", "scripted").
    fn name(&self) -> &str;

    /// Completes the conversation in one answer. When `request.response_format` is set, the
    /// answer is JSON text that the provider asked the server to fit to the schema.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Completes the conversation as a stream of chunks. By default: [`complete`](Self::complete),
    /// then its whole answer as one chunk.
    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let response = self.complete(request).await?;
        let chunk = ChatChunk {
            delta: response.content,
            usage: response.usage,
            finish_reason: response.finish_reason.or(Some(FinishReason::Stop)),
            tool_calls: response.tool_calls,
        };
        Ok(Box::pin(futures::stream::iter([Ok(chunk)])))
    }

    /// Embeds each input text; one vector per input, in order. By default
    /// [`LlmError::Unsupported`].
    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        let _ = inputs;
        Err(LlmError::Unsupported {
            provider: self.name().to_string(),
            operation: "embeddings".into(),
        })
    }

    /// Checks that the server is reachable and lists its models. An unreachable server is
    /// `Ok` with [`ProviderHealth::reachable`] false; `Err` means it answered with an error.
    /// By default reachable, with no models listed and nothing asked (an in-process model is
    /// always there).
    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        Ok(ProviderHealth::up(Duration::ZERO, Vec::new()))
    }
}

macro_rules! forward_provider {
    ($ty:ty) => {
        #[async_trait]
        impl<P: LlmProvider + ?Sized> LlmProvider for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
                (**self).complete(request).await
            }
            async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
                (**self).complete_stream(request).await
            }
            async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
                (**self).embed(inputs).await
            }
            async fn health(&self) -> Result<ProviderHealth, LlmError> {
                (**self).health().await
            }
        }
    };
}

forward_provider!(Arc<P>);
forward_provider!(Box<P>);
