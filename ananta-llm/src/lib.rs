//! # ananta-llm — LLM providers for Ananta
//!
//! Implementations of [`ananta_core::LlmProvider`]. Today this crate ships the
//! [`ScriptedProvider`]: a deterministic provider **for demos and tests** that answers from a
//! script instead of a model. HTTP providers (Ollama, OpenAI-compatible servers) and resilience
//! wrappers follow, each behind its own cargo feature.
//!
//! ```
//! use ananta_core::{ChatMessage, ChatRequest, LlmProvider};
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
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod scripted;

pub use scripted::{ScriptedProvider, ScriptedReply};
