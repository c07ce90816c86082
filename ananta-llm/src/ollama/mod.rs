//! Ollama's native API: `/api/chat` (NDJSON streaming, JSON-schema `format`, tools),
//! `/api/embed` and `/api/tags`.

use ananta_core::llm::{ChatRequest, ChatResponse, ChatStream, ProviderHealth};
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;
use serde_json::Value;

use crate::http::{HttpConfig, Transport, http_builder_methods, strip_suffixes};

mod stream;
#[cfg(test)]
mod tests;
mod wire;

use stream::decode_stream;
use wire::{
    ChatBody, EmbedBody, WireFunction, WireOptions, WireTool, parse_chat_response,
    parse_embeddings, parse_tags, wire_messages,
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
