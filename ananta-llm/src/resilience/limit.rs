//! [`ConcurrencyLimit`]: at most N calls in flight.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ananta_core::llm::{ChatChunk, ChatRequest, ChatResponse, ChatStream, ProviderHealth};
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Lets at most `limit` calls of a provider run at the same time (a local model server that
/// handles a few requests at once, an API's concurrency quota). Further callers wait in a
/// first-come, first-served queue; cancelling a waiting call just leaves the queue.
///
/// - `complete` and `embed` hold a slot until they return.
/// - `complete_stream` holds its slot until the returned stream has finished or is dropped.
/// - `health` is not limited, so health checks answer even while every slot is busy.
///
/// A `limit` of 0 would block every call forever, so it is raised to 1 (with a
/// `tracing::warn!`).
///
/// [`name`](LlmProvider::name) is the wrapped provider's name.
#[derive(Debug)]
pub struct ConcurrencyLimit<P> {
    inner: P,
    semaphore: Arc<Semaphore>,
    limit: usize,
}

impl<P> ConcurrencyLimit<P> {
    /// Wraps `inner`, letting at most `limit` calls run at once (at least 1).
    pub fn new(inner: P, limit: usize) -> Self {
        if limit == 0 {
            tracing::warn!("a concurrency limit of 0 would block every call; using 1");
        }
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner,
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The most calls that run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Calls running right now (open streams included).
    pub fn in_flight(&self) -> usize {
        self.limit
            .saturating_sub(self.semaphore.available_permits())
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Unwraps the provider.
    pub fn into_inner(self) -> P {
        self.inner
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, LlmError> {
        Arc::clone(&self.semaphore)
            .acquire_owned()
            .await
            .map_err(|_| LlmError::InvalidRequest("the concurrency limiter was closed".into()))
    }
}

/// Holds a slot until the stream ends or is dropped.
struct PermitStream {
    stream: ChatStream,
    permit: Option<OwnedSemaphorePermit>,
}

impl Stream for PermitStream {
    type Item = Result<ChatChunk, LlmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = std::task::ready!(this.stream.as_mut().poll_next(cx));
        if item.is_none() {
            this.permit = None;
        }
        Poll::Ready(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

#[async_trait]
impl<P: LlmProvider> LlmProvider for ConcurrencyLimit<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let _permit = self.acquire().await?;
        self.inner.complete(request).await
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let permit = self.acquire().await?;
        let stream = self.inner.complete_stream(request).await?;
        Ok(Box::pin(PermitStream {
            stream,
            permit: Some(permit),
        }))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        let _permit = self.acquire().await?;
        self.inner.embed(inputs).await
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScriptedProvider;

    #[test]
    fn a_zero_limit_is_raised_to_one() {
        let limited = ConcurrencyLimit::new(ScriptedProvider::new(["a"]), 0);
        assert_eq!(limited.limit(), 1);
        assert_eq!(limited.in_flight(), 0);
        assert_eq!(limited.name(), "scripted");
    }
}
