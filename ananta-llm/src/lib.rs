//! # ananta-llm — LLM providers for Ananta
//!
//! Implementations of [`ananta_core::LlmProvider`]:
//!
//! - [`OllamaProvider`] (feature `ollama`): Ollama's native API — NDJSON streaming, JSON-schema
//!   `format`, `/api/embed`, `/api/tags`.
//! - [`OpenAiProvider`] (feature `openai`): any OpenAI-compatible server — OpenAI, LM Studio,
//!   llama.cpp's `llama-server`, vLLM — with SSE streaming, `json_schema` structured output,
//!   tool calls and `/embeddings`.
//! - Resilience wrappers that are providers themselves and compose like tower layers:
//!   [`Retry`], [`Fallback`], [`CircuitBreaker`], [`ConcurrencyLimit`].
//! - [`StructuredOutput::complete_json`]: typed JSON answers from any provider.
//! - [`ScriptedProvider`]: a deterministic provider **for demos and tests** that answers from a
//!   script instead of a model.
//!
//! ```
//! use ananta_core::LlmProvider;
//! use ananta_core::llm::{ChatMessage, ChatRequest};
//! use ananta_llm::ScriptedProvider;
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let llm = ScriptedProvider::new([r#"{"reason": "look", "command": "ls"}"#]);
//! let answer = llm.complete(ChatRequest::new(vec![ChatMessage::user("list files")])).await?;
//! assert!(answer.content.contains("ls"));
//! assert_eq!(llm.requests().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Configuration from the environment
//!
//! `from_env()` reads the original Ananta's variables: `OLLAMA_URL` (default `http://localhost:11434`;
//! the original Ananta's `…/api/generate` form is accepted) and `OLLAMA_MODEL`; `OPENAI_URL` (default OpenAI;
//! `…/chat/completions` is accepted), `OPENAI_API_KEY` and `OPENAI_MODEL`;
//! `OpenAiProvider::lm_studio_from_env()` reads `LMSTUDIO_URL` (default
//! `http://localhost:1234/v1`) and `LMSTUDIO_MODEL`. `Worker::builder(..).structured_output(true)`
//! makes servers that support JSON-schema output (llama.cpp, Ollama, OpenAI, LM Studio, vLLM)
//! answer every step in the shape the Worker reads.
//!
//! # Feature flags
#![doc = document_features::document_features!()]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "http")]
mod http;
mod json;
#[cfg(feature = "ollama")]
mod ollama;
#[cfg(feature = "openai")]
mod openai;
mod resilience;
mod scripted;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use json::{StructuredOutput, parse_structured};
#[cfg(feature = "ollama")]
#[cfg_attr(docsrs, doc(cfg(feature = "ollama")))]
pub use ollama::{OllamaProvider, OllamaProviderBuilder};
#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub use openai::{OpenAiProvider, OpenAiProviderBuilder};
pub use resilience::{
    CircuitBreaker, CircuitBreakerPolicy, CircuitState, ConcurrencyLimit, Fallback, ProviderExt,
    Retry, RetryPolicy,
};
pub use scripted::{ScriptedProvider, ScriptedReply};
