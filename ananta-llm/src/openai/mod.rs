//! [`OpenAiProvider`]: any server that speaks the OpenAI chat-completions API.

use std::time::Instant;

use ananta_core::llm::{ChatRequest, ChatResponse, ChatStream, ProviderHealth};
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::http::{HttpConfig, Transport, guard_line_length, http_builder_methods, strip_suffixes};

mod stream;
#[cfg(test)]
mod tests;
mod wire;

use stream::{StreamAssembler, StreamState, sse_error};
use wire::{ChatBody, EmbeddingsAnswer, ModelsAnswer, response_from_json};

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
        let body = ChatBody::new(request, self.model.as_deref(), stream, self.include_usage)?;
        serde_json::to_value(body).map_err(|e| LlmError::InvalidRequest(e.to_string()))
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
