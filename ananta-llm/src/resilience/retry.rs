//! [`Retry`]: retries transient failures with exponential backoff and full jitter.

use std::future::Future;
use std::time::Duration;

use ananta_core::llm::{ChatRequest, ChatResponse, ChatStream, ProviderHealth};
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

/// How [`Retry`] retries: attempt and time budgets and the backoff schedule.
///
/// The schedule is exponential (`initial_delay`, then `× factor` per retry, capped at
/// `max_delay`). With [`jitter`](Self::jitter) on (the default) every sleep is *full jitter*:
/// a uniformly random duration in `[0, backoff]`, which spreads out clients that failed
/// together. When the error carries a server delay ([`LlmError::retry_after`]: a
/// `Retry-After`, or a circuit breaker's `retry_in`), the sleep is at least that long, even
/// beyond `max_delay`.
///
/// Two budgets bound the whole call: at most [`max_attempts`](Self::max_attempts) attempts
/// (the first one included) and no sleep that would end after
/// [`max_elapsed`](Self::max_elapsed) since the first attempt started; when the next sleep
/// does not fit, [`Retry`] returns the last error at once instead of sleeping.
///
/// ```
/// use std::time::Duration;
/// use ananta_llm::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .max_attempts(6)
///     .max_elapsed(Duration::from_secs(20))
///     .initial_delay(Duration::from_millis(200));
/// assert_eq!(policy.max_attempts, 6);
/// assert_eq!(policy.max_delay, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (default 4; `0` is treated as `1`).
    pub max_attempts: u32,
    /// Time budget from the start of the first attempt (default 60 s): a sleep that would end
    /// later is not started.
    pub max_elapsed: Duration,
    /// Backoff before the first retry (default 500 ms).
    pub initial_delay: Duration,
    /// Upper bound of the exponential backoff (default 30 s). A server's `Retry-After` may be
    /// longer and is honoured anyway.
    pub max_delay: Duration,
    /// Growth of the backoff per retry (default 2.0; values below 1.0 count as 1.0).
    pub factor: f32,
    /// Full jitter: sleep a random duration in `[0, backoff]` (default `true`). Turn it off
    /// for deterministic delays in tests.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(60),
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The default policy: 4 attempts within 60 s, backoff 500 ms × 2ⁿ up to 30 s, full
    /// jitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of attempts, the first one included (`0` is treated as `1`).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the time budget of the whole call, sleeps included.
    pub fn max_elapsed(mut self, budget: Duration) -> Self {
        self.max_elapsed = budget;
        self
    }

    /// Sets the backoff before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the upper bound of the exponential backoff.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the growth of the backoff per retry (values below 1.0 count as 1.0).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// Turns full jitter on or off.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// A policy that never retries: one attempt.
    pub fn no_retry() -> Self {
        Self::default().max_attempts(1)
    }

    /// The backoff before each retry, before jitter: `initial_delay × factorⁿ`, capped at
    /// `max_delay`. Endless; [`Retry`] stops it with its budgets.
    pub(crate) fn backoffs(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let max_delay = self.max_delay;
        ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(max_delay)
            .with_factor(self.factor.max(1.0))
            .without_max_times()
            .build()
            .map(move |delay| delay.min(max_delay))
    }

    /// The sleep before a retry: `backoff` (or a uniformly random part of it with jitter), but
    /// at least the server's delay.
    pub(crate) fn sleep_for(&self, backoff: Duration, retry_after: Option<Duration>) -> Duration {
        let delay = if self.jitter {
            Duration::try_from_secs_f64(backoff.as_secs_f64() * fastrand::f64()).unwrap_or(backoff)
        } else {
            backoff
        };
        retry_after.map_or(delay, |server| delay.max(server))
    }
}

/// Retries the calls of a provider that fail with a transient error
/// ([`LlmError::is_transient`]: unreachable, timeout, rate-limited, 5xx, circuit open), as
/// described by a [`RetryPolicy`]. Permanent errors (a rejected request, a schema mismatch…)
/// are returned at once.
///
/// - `complete` and `embed` are retried as a whole.
/// - `complete_stream` retries only *opening* the stream; an error inside a stream that is
///   already open is passed through to the caller (chunks may have been consumed, so a retry
///   could not be transparent).
/// - `health` is not retried: a health check reports the current state, and an unreachable
///   server is already an `Ok` answer.
///
/// Every retry is logged with `tracing::warn!` (provider, operation, attempt, delay, error),
/// and so is giving up. Sleeps use `tokio::time`, so paused-time tests run instantly.
///
/// [`name`](LlmProvider::name) is the wrapped provider's name, so logs stay stable however
/// the provider is wrapped.
#[derive(Debug, Clone)]
pub struct Retry<P> {
    inner: P,
    policy: RetryPolicy,
}

impl<P> Retry<P> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: P, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Unwraps the provider.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<P: LlmProvider> Retry<P> {
    /// Runs `call` until it succeeds, fails permanently, or a budget is spent.
    async fn run<T, F, Fut>(&self, operation: &'static str, mut call: F) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, LlmError>> + Send,
    {
        let started = Instant::now();
        let max_attempts = self.policy.max_attempts.max(1);
        let mut backoffs = self.policy.backoffs();
        let mut attempt: u32 = 1;
        loop {
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !error.is_transient() {
                return Err(error);
            }
            if attempt >= max_attempts {
                if attempt == 1 {
                    return Err(error);
                }
                tracing::warn!(
                    provider = self.inner.name(),
                    operation,
                    attempts = attempt,
                    error = %error,
                    "LLM call failed, no attempts left"
                );
                return Err(error);
            }
            let backoff = backoffs.next().unwrap_or(self.policy.max_delay);
            let delay = self.policy.sleep_for(backoff, error.retry_after());
            let elapsed = started.elapsed();
            if elapsed.saturating_add(delay) > self.policy.max_elapsed {
                tracing::warn!(
                    provider = self.inner.name(),
                    operation,
                    attempts = attempt,
                    ?elapsed,
                    ?delay,
                    budget = ?self.policy.max_elapsed,
                    error = %error,
                    "LLM call failed, the next retry would exceed the time budget"
                );
                return Err(error);
            }
            tracing::warn!(
                provider = self.inner.name(),
                operation,
                attempt,
                ?delay,
                error = %error,
                "transient LLM failure, retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

#[async_trait]
impl<P: LlmProvider> LlmProvider for Retry<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.run("complete", || self.inner.complete(request.clone()))
            .await
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        self.run("complete_stream", || {
            self.inner.complete_stream(request.clone())
        })
        .await
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        self.run("embed", || self.inner.embed(inputs.clone())).await
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_grow_exponentially_up_to_the_cap() {
        let policy = RetryPolicy::default()
            .initial_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(10));
        let delays: Vec<u64> = policy.backoffs().take(6).map(|d| d.as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_factor_below_one_counts_as_one_and_initial_is_capped() {
        let flat = RetryPolicy::default()
            .initial_delay(Duration::from_secs(2))
            .factor(0.1);
        assert!(flat.backoffs().take(4).all(|d| d == Duration::from_secs(2)));
        let capped = RetryPolicy::default()
            .initial_delay(Duration::from_secs(5))
            .max_delay(Duration::from_secs(1));
        assert_eq!(capped.backoffs().next(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn full_jitter_stays_within_the_backoff_and_honours_the_server() {
        let policy = RetryPolicy::default();
        let backoff = Duration::from_secs(4);
        let samples: Vec<Duration> = (0..500).map(|_| policy.sleep_for(backoff, None)).collect();
        assert!(samples.iter().all(|d| *d <= backoff));
        assert!(samples.iter().any(|d| *d < backoff / 2));
        assert!(samples.iter().any(|d| *d > backoff / 2));
        let server = Duration::from_secs(9);
        assert!(policy.sleep_for(backoff, Some(server)) >= server);
        let fixed = policy.jitter(false);
        assert_eq!(fixed.sleep_for(backoff, None), backoff);
        assert_eq!(
            fixed.sleep_for(backoff, Some(Duration::from_secs(1))),
            backoff
        );
    }
}
