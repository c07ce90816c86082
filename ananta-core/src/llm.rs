//! The [`LlmProvider`] trait: chat completion, streaming, structured output, embeddings, health.

use std::pin::Pin;
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
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
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
}

impl ChatRequest {
    /// A request with these messages and provider defaults for everything else.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
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
}

impl ProviderHealth {
    /// A reachable provider with these models.
    pub fn up(latency: Duration, models: Vec<String>) -> Self {
        Self {
            reachable: true,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            models,
        }
    }
}

/// A chat model behind some API.
///
/// Implementations live in `ananta-llm` (scripted provider for demos and tests; HTTP providers
/// follow), and `MockLlmProvider` with feature `mocks`. Use it as `Arc<dyn LlmProvider>`.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// A short name for logs ("ollama", "openai", "scripted").
    fn name(&self) -> &str;

    /// Completes the conversation in one answer. When `request.response_format` is set, the
    /// answer is JSON text that the provider asked the server to fit to the schema.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Completes the conversation as a stream of chunks.
    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError>;

    /// Embeds each input text; one vector per input, in order.
    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError>;

    /// Checks that the server is reachable and lists its models.
    async fn health(&self) -> Result<ProviderHealth, LlmError>;
}
