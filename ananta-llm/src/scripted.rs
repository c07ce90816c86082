//! A deterministic provider that answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ananta_core::llm::{
    ChatChunk, ChatRequest, ChatResponse, ChatStream, FinishReason, ProviderHealth,
};
use ananta_core::{LlmError, LlmProvider, TokenUsage};
use async_trait::async_trait;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    /// Answer with this text (usage is estimated, see [`ScriptedProvider`]).
    Text(String),
    /// Answer with exactly this response.
    Response(ChatResponse),
    /// Fail with this error.
    Error(LlmError),
}

impl From<&str> for ScriptedReply {
    fn from(text: &str) -> Self {
        Self::Text(text.to_string())
    }
}

impl From<String> for ScriptedReply {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<ChatResponse> for ScriptedReply {
    fn from(response: ChatResponse) -> Self {
        Self::Response(response)
    }
}

impl From<LlmError> for ScriptedReply {
    fn from(error: LlmError) -> Self {
        Self::Error(error)
    }
}

type ReplyFn = dyn Fn(&ChatRequest) -> Result<ChatResponse, LlmError> + Send + Sync;

enum Source {
    Queue {
        replies: VecDeque<ScriptedReply>,
        served: usize,
        repeat_last: Option<ScriptedReply>,
    },
    Function(Box<ReplyFn>),
}

/// A deterministic [`LlmProvider`] **for demos and tests**: it answers from a list of replies
/// (in order) or from a function of the request, records every request it got, streams by
/// cutting the answer into chunks, and never talks to a model.
///
/// - When the list runs out, `complete` fails with [`LlmError::Exhausted`] (or repeats the
///   last reply, with [`repeat_last`](Self::repeat_last)).
/// - Usage is reported as an estimate (one token per 4 bytes of prompt and answer) unless a
///   [`ScriptedReply::Response`] carries its own.
/// - `embed` returns deterministic 64-dimensional hashed bag-of-words vectors (unit length),
///   so texts sharing words are similar.
/// - [`latency`](Self::latency) delays every answer, to demo timeouts and cancellation.
///
/// Cheap to clone: clones share the script and the recorded requests.
#[derive(Clone)]
pub struct ScriptedProvider {
    source: Arc<Mutex<Source>>,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
    latency: Duration,
    chunk_size: usize,
    model: String,
}

impl std::fmt::Debug for ScriptedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedProvider")
            .field("model", &self.model)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl ScriptedProvider {
    /// Answers with `replies`, one per request, in order.
    pub fn new<I, R>(replies: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<ScriptedReply>,
    {
        Self::with_source(Source::Queue {
            replies: replies.into_iter().map(Into::into).collect(),
            served: 0,
            repeat_last: None,
        })
    }

    /// Answers every request with `f(request)`.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&ChatRequest) -> Result<ChatResponse, LlmError> + Send + Sync + 'static,
    {
        Self::with_source(Source::Function(Box::new(f)))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source: Arc::new(Mutex::new(source)),
            requests: Arc::new(Mutex::new(Vec::new())),
            latency: Duration::ZERO,
            chunk_size: 8,
            model: "scripted".to_string(),
        }
    }

    /// After the list runs out, keep answering with its last reply.
    pub fn repeat_last(self) -> Self {
        if let Source::Queue {
            replies,
            repeat_last,
            ..
        } = &mut *self.source.lock().unwrap_or_else(|p| p.into_inner())
        {
            *repeat_last = replies.back().cloned();
        }
        self
    }

    /// Waits this long before every answer.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Streams answers in chunks of this many characters (default 8, at least 1).
    pub fn chunk_size(mut self, chars: usize) -> Self {
        self.chunk_size = chars.max(1);
        self
    }

    /// The model name it reports (default `scripted`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many scripted replies are left (`None` for a function script).
    pub fn remaining(&self) -> Option<usize> {
        match &*self.source.lock().unwrap_or_else(|p| p.into_inner()) {
            Source::Queue { replies, .. } => Some(replies.len()),
            Source::Function(_) => None,
        }
    }

    async fn answer(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if request.messages.is_empty() {
            return Err(LlmError::InvalidRequest(
                "a chat request needs at least one message".into(),
            ));
        }
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let reply = {
            let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *source {
                Source::Function(f) => {
                    return f(request).map(|r| self.complete_response(request, r));
                }
                Source::Queue {
                    replies,
                    served,
                    repeat_last,
                } => match replies.pop_front() {
                    Some(reply) => {
                        *served += 1;
                        reply
                    }
                    None => match repeat_last {
                        Some(reply) => reply.clone(),
                        None => return Err(LlmError::Exhausted(*served)),
                    },
                },
            }
        };
        match reply {
            ScriptedReply::Text(text) => {
                Ok(self.complete_response(request, ChatResponse::text(text)))
            }
            ScriptedReply::Response(response) => Ok(self.complete_response(request, response)),
            ScriptedReply::Error(error) => Err(error),
        }
    }

    /// Fills in model, finish reason and estimated usage where the reply left them empty.
    fn complete_response(&self, request: &ChatRequest, mut response: ChatResponse) -> ChatResponse {
        if response.usage.is_none() {
            let prompt: usize = request.messages.iter().map(|m| m.content.len()).sum();
            response.usage = Some(TokenUsage {
                prompt_tokens: estimate_tokens(prompt),
                completion_tokens: estimate_tokens(response.content.len()),
            });
        }
        response.model.get_or_insert_with(|| self.model.clone());
        response.finish_reason.get_or_insert(FinishReason::Stop);
        response
    }
}

fn estimate_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX)
}

/// FNV-1a, for deterministic hashed embeddings.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const EMBEDDING_DIM: usize = 64;

fn embed_text(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; EMBEDDING_DIM];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = fnv1a(word.to_lowercase().as_bytes());
        let slot = usize::try_from(h % EMBEDDING_DIM as u64).unwrap_or(0);
        v[slot] += if h & (1 << 63) == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[async_trait]
impl LlmProvider for ScriptedProvider {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.answer(&request).await
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let response = self.answer(&request).await?;
        let chars: Vec<char> = response.content.chars().collect();
        let mut chunks: Vec<Result<ChatChunk, LlmError>> = chars
            .chunks(self.chunk_size)
            .map(|c| {
                Ok(ChatChunk {
                    delta: c.iter().collect(),
                    ..ChatChunk::default()
                })
            })
            .collect();
        chunks.push(Ok(ChatChunk {
            delta: String::new(),
            usage: response.usage,
            finish_reason: response.finish_reason,
            tool_calls: response.tool_calls,
        }));
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        Ok(inputs.iter().map(|t| embed_text(t)).collect())
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        Ok(ProviderHealth::up(Duration::ZERO, vec![self.model.clone()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ananta_core::llm::ChatMessage;
    use futures::StreamExt;

    fn req(text: &str) -> ChatRequest {
        ChatRequest::new(vec![ChatMessage::user(text)])
    }

    #[tokio::test]
    async fn answers_in_order_then_exhausts() {
        let llm = ScriptedProvider::new(["one", "two"]);
        assert_eq!(llm.complete(req("a")).await.unwrap().content, "one");
        assert_eq!(llm.remaining(), Some(1));
        let second = llm.complete(req("bb")).await.unwrap();
        assert_eq!(second.content, "two");
        assert_eq!(
            second.usage,
            Some(TokenUsage {
                prompt_tokens: 1,
                completion_tokens: 1
            })
        );
        assert!(matches!(
            llm.complete(req("c")).await,
            Err(LlmError::Exhausted(2))
        ));
        let seen: Vec<String> = llm
            .requests()
            .iter()
            .map(|r| r.messages[0].content.clone())
            .collect();
        assert_eq!(seen, ["a", "bb", "c"]);
    }

    #[tokio::test]
    async fn repeat_last_errors_and_functions() {
        let llm = ScriptedProvider::new(["x"]).repeat_last();
        for _ in 0..3 {
            assert_eq!(llm.complete(req("q")).await.unwrap().content, "x");
        }
        let failing = ScriptedProvider::new([ScriptedReply::Error(LlmError::Timeout(
            Duration::from_secs(1),
        ))]);
        assert!(matches!(
            failing.complete(req("q")).await,
            Err(LlmError::Timeout(_))
        ));
        let echo = ScriptedProvider::from_fn(|r| {
            Ok(ChatResponse::text(r.messages[0].content.to_uppercase()))
        });
        assert_eq!(echo.complete(req("hi")).await.unwrap().content, "HI");
        assert!(matches!(
            echo.complete(ChatRequest::default()).await,
            Err(LlmError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn streams_in_chunks_with_usage_last() {
        let llm = ScriptedProvider::new(["héllo wörld, streaming"]).chunk_size(5);
        let chunks: Vec<ChatChunk> = llm
            .complete_stream(req("q"))
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        let text: String = chunks.iter().map(|c| c.delta.as_str()).collect();
        assert_eq!(text, "héllo wörld, streaming");
        assert_eq!(chunks[0].delta, "héllo");
        let last = chunks.last().unwrap();
        assert!(last.usage.is_some() && last.finish_reason == Some(FinishReason::Stop));
    }

    #[tokio::test]
    async fn embeddings_are_deterministic_and_similar_for_shared_words() {
        let llm = ScriptedProvider::new(Vec::<String>::new());
        let v = llm
            .embed(vec![
                "cargo test rust".into(),
                "rust cargo test".into(),
                "write docs".into(),
            ])
            .await
            .unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!((dot(&v[0], &v[1]) - 1.0).abs() < 1e-5);
        assert!(dot(&v[0], &v[2]) < 0.9);
        assert_eq!(llm.health().await.unwrap().models, ["scripted"]);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_answers() {
        let llm = ScriptedProvider::new(["late"]).latency(Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        llm.complete(req("q")).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
