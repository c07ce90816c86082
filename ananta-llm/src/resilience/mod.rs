//! Resilience wrappers: providers that wrap providers, composable like tower layers.
//!
//! - [`Retry`]: retries transient failures with exponential backoff and full jitter.
//! - [`Fallback`]: tries an ordered list of providers.
//! - [`CircuitBreaker`]: fails fast while a provider keeps failing.
//! - [`ConcurrencyLimit`]: at most N calls in flight.
//!
//! [`ProviderExt`] adds `.with_…` methods to every provider to stack them.

mod breaker;
mod fallback;
mod limit;
mod retry;

use std::sync::Arc;

use ananta_core::LlmProvider;

pub use breaker::{CircuitBreaker, CircuitBreakerPolicy, CircuitState};
pub use fallback::Fallback;
pub use limit::ConcurrencyLimit;
pub use retry::{Retry, RetryPolicy};

/// Stacks resilience wrappers on any provider; each `with_…` returns a provider again.
///
/// The recommended order, from the inside out:
///
/// 1. [`with_concurrency_limit`](Self::with_concurrency_limit) right around a provider, so
///    the limit counts real requests to that server;
/// 2. [`with_circuit_breaker`](Self::with_circuit_breaker) around each provider, so a dead
///    server is skipped fast;
/// 3. [`with_fallback`](Self::with_fallback) across the breakers, so a call moves on to the
///    next provider at once when one fails or its circuit is open;
/// 4. [`with_retry`](Self::with_retry) outermost, so a call that failed everywhere is retried
///    after a backoff. Retrying *outside* the breaker keeps retries from hammering a dead
///    server: once the circuit is open a retry fails fast, and its `retry_in` is honoured as
///    the minimum delay (the retry gives up if that exceeds its time budget).
///
/// ```
/// use std::time::Duration;
/// use ananta_core::{LlmError, LlmProvider};
/// use ananta_core::llm::{ChatMessage, ChatRequest};
/// use ananta_llm::{CircuitBreakerPolicy, ProviderExt, RetryPolicy, ScriptedProvider};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build()?.block_on(async {
/// // Stand-ins for e.g. `OpenAiProvider::builder(…).build()?` and `OllamaProvider`.
/// let primary = ScriptedProvider::new([LlmError::Unreachable("connection refused".into())])
///     .repeat_last();
/// let backup = ScriptedProvider::new(["from the backup"]).repeat_last();
///
/// let llm = primary
///     .clone()
///     .with_concurrency_limit(4)
///     .with_circuit_breaker(CircuitBreakerPolicy::default().failure_threshold(2))
///     .with_fallback(backup.clone().with_circuit_breaker(CircuitBreakerPolicy::default()))
///     .with_retry(RetryPolicy::default().max_elapsed(Duration::from_secs(30)));
///
/// for _ in 0..3 {
///     let answer = llm.complete(ChatRequest::new(vec![ChatMessage::user("hi")])).await?;
///     assert_eq!(answer.content, "from the backup");
/// }
/// // The primary's circuit opened after two failures: the third call skipped it.
/// assert_eq!(primary.requests().len(), 2);
/// assert_eq!(llm.name(), "fallback(scripted,scripted)");
/// # Ok::<(), LlmError>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ProviderExt: LlmProvider + Sized {
    /// Retries transient failures as `policy` says (see [`Retry`]).
    fn with_retry(self, policy: RetryPolicy) -> Retry<Self> {
        Retry::new(self, policy)
    }

    /// Fails fast while this provider keeps failing (see [`CircuitBreaker`]).
    fn with_circuit_breaker(self, policy: CircuitBreakerPolicy) -> CircuitBreaker<Self> {
        CircuitBreaker::new(self, policy)
    }

    /// Runs at most `limit` calls at once, at least 1 (see [`ConcurrencyLimit`]).
    fn with_concurrency_limit(self, limit: usize) -> ConcurrencyLimit<Self> {
        ConcurrencyLimit::new(self, limit)
    }

    /// Falls over to `next` when this provider fails (see [`Fallback`] for which errors fall
    /// over); on a [`Fallback`] use [`Fallback::then`] to extend the list instead.
    fn with_fallback(self, next: impl LlmProvider + 'static) -> Fallback
    where
        Self: 'static,
    {
        let first: Arc<dyn LlmProvider> = Arc::new(self);
        let second: Arc<dyn LlmProvider> = Arc::new(next);
        Fallback::from_non_empty(vec![first, second])
    }
}

impl<P: LlmProvider + Sized> ProviderExt for P {}
