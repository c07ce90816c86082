//! [`CircuitBreaker`]: fails fast while a provider keeps failing.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use ananta_core::llm::{ChatChunk, ChatRequest, ChatResponse, ChatStream, ProviderHealth};
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;
use futures::Stream;
use tokio::time::Instant;

/// When a [`CircuitBreaker`] opens and for how long.
///
/// ```
/// use std::time::Duration;
/// use ananta_llm::CircuitBreakerPolicy;
///
/// let policy = CircuitBreakerPolicy::default().failure_threshold(3).open_for(Duration::from_secs(10));
/// assert_eq!(policy.failure_threshold, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitBreakerPolicy {
    /// Consecutive failures that open the circuit (default 5; `0` is treated as `1`).
    pub failure_threshold: u32,
    /// How long the circuit stays open before a trial call (default 60 s).
    pub open_for: Duration,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

impl CircuitBreakerPolicy {
    /// The default policy: open after 5 consecutive failures, for 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many consecutive failures open the circuit (`0` is treated as `1`).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// Sets how long the circuit stays open before a trial call.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }
}

/// The state of a [`CircuitBreaker`], for observability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls fail fast with [`LlmError::CircuitOpen`].
    Open {
        /// Time left until a trial call is let through.
        retry_in: Duration,
    },
    /// The next call (exactly one) is a trial: success closes the circuit, failure re-opens
    /// it. Other calls fail fast until the trial has finished.
    HalfOpen,
}

/// Stands in for an `open_for` too long to add to the clock: about 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
struct Cell {
    phase: Phase,
    /// Bumped on every transition, so results of calls admitted before it are ignored.
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    provider: String,
    policy: CircuitBreakerPolicy,
    cell: Mutex<Cell>,
}

/// The right to make one call, from [`Shared::admit`]. Dropped without a result (the caller
/// was cancelled), a trial frees the half-open slot for the next caller.
struct Ticket {
    shared: Arc<Shared>,
    generation: u64,
    trial: bool,
    settled: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cell> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn threshold(&self) -> u32 {
        self.policy.failure_threshold.max(1)
    }

    fn state(&self) -> CircuitState {
        match self.lock().phase {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { until } => {
                let now = Instant::now();
                if now < until {
                    CircuitState::Open {
                        retry_in: until - now,
                    }
                } else {
                    CircuitState::HalfOpen
                }
            }
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn admit(self: &Arc<Self>) -> Result<Ticket, LlmError> {
        let mut cell = self.lock();
        let trial = match cell.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(self.open_error(until - now));
                }
                cell.phase = Phase::HalfOpen {
                    trial_in_flight: true,
                };
                cell.generation += 1;
                tracing::info!(
                    provider = %self.provider,
                    "circuit half-open, letting a trial call through"
                );
                true
            }
            Phase::HalfOpen {
                trial_in_flight: false,
            } => {
                cell.phase = Phase::HalfOpen {
                    trial_in_flight: true,
                };
                true
            }
            Phase::HalfOpen {
                trial_in_flight: true,
            } => return Err(self.open_error(Duration::ZERO)),
        };
        Ok(Ticket {
            shared: Arc::clone(self),
            generation: cell.generation,
            trial,
            settled: false,
        })
    }

    fn open_error(&self, retry_in: Duration) -> LlmError {
        LlmError::CircuitOpen {
            provider: self.provider.clone(),
            retry_in,
        }
    }

    fn open(&self, cell: &mut Cell, error: &LlmError) {
        let now = Instant::now();
        let until = now
            .checked_add(self.policy.open_for)
            .unwrap_or_else(|| now + FAR_FUTURE);
        cell.phase = Phase::Open { until };
        cell.generation += 1;
        tracing::warn!(
            provider = %self.provider,
            open_for = ?self.policy.open_for,
            error = %error,
            "circuit opened, failing fast"
        );
    }

    /// Records the outcome of a call admitted in `generation`; returns the generation after.
    fn record(&self, generation: u64, failure: Option<&LlmError>) -> u64 {
        let mut cell = self.lock();
        if cell.generation != generation {
            return cell.generation;
        }
        match (cell.phase, failure) {
            (Phase::Closed { .. }, None) => cell.phase = Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, Some(error)) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold() {
                    self.open(&mut cell, error);
                } else {
                    cell.phase = Phase::Closed { failures };
                }
            }
            (Phase::HalfOpen { .. }, None) => {
                cell.phase = Phase::Closed { failures: 0 };
                cell.generation += 1;
                tracing::info!(provider = %self.provider, "circuit closed, the trial call succeeded");
            }
            (Phase::HalfOpen { .. }, Some(error)) => self.open(&mut cell, error),
            (Phase::Open { .. }, _) => {}
        }
        cell.generation
    }

    /// Records the outcome of a stream opened while closed in `generation`; ignored unless the
    /// circuit is still closed in that generation.
    fn record_stream(&self, generation: u64, failure: Option<&LlmError>) {
        let closed = {
            let cell = self.lock();
            cell.generation == generation && matches!(cell.phase, Phase::Closed { .. })
        };
        if closed {
            self.record(generation, failure);
        }
    }

    /// A trial that ended without a result: let the next caller probe.
    fn abandon_trial(&self, generation: u64) {
        let mut cell = self.lock();
        if cell.generation == generation
            && matches!(
                cell.phase,
                Phase::HalfOpen {
                    trial_in_flight: true
                }
            )
        {
            cell.phase = Phase::HalfOpen {
                trial_in_flight: false,
            };
        }
    }
}

/// Whether an error counts as a failure of the provider: only transient ones do.
fn is_failure(error: &LlmError) -> bool {
    error.is_transient()
}

impl Ticket {
    /// Records the call's outcome; returns the breaker's generation afterwards.
    fn settle<T>(mut self, result: &Result<T, LlmError>) -> u64 {
        self.settled = true;
        let failure = result.as_ref().err().filter(|e| is_failure(e));
        self.shared.record(self.generation, failure)
    }

    /// Records the outcome of opening a stream. A failure counts at once, and so does a
    /// trial's success (it closes the circuit); a normal call's success is left to the stream
    /// (see [`BreakerStream`]). Returns the generation the stream reports to.
    fn settle_stream_opening<T>(mut self, result: &Result<T, LlmError>) -> u64 {
        if result.is_ok() && !self.trial {
            self.settled = true;
            return self.generation;
        }
        self.settle(result)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            self.shared.abandon_trial(self.generation);
        }
    }
}

/// A circuit breaker around one provider: after
/// [`failure_threshold`](CircuitBreakerPolicy::failure_threshold) consecutive failures the
/// circuit *opens* and every call fails fast with [`LlmError::CircuitOpen`] (with the time
/// left as `retry_in`) **without calling the provider**. After
/// [`open_for`](CircuitBreakerPolicy::open_for) it is *half-open*: exactly one trial call goes
/// through (concurrent callers meanwhile get `CircuitOpen` with a zero `retry_in`); its
/// success closes the circuit, its failure opens it for another `open_for`.
///
/// Only transient errors ([`LlmError::is_transient`]) count as failures. A permanent error
/// such as a 400 [`LlmError::Rejected`] means the server is up and answered, so for the
/// breaker it is a success and resets the count. Results of calls that started before a
/// transition (e.g. slow calls finishing after the circuit opened) are ignored.
///
/// - `complete` and `embed` are guarded and counted.
/// - `complete_stream`: opening the stream is guarded, and a failure to open counts. An open
///   stream counts when it ends: its first error counts like a call's error (a failure if
///   transient), a clean end counts as a success; a stream dropped early does not count. Only
///   a half-open trial counts as soon as the stream opens, so a long stream does not keep
///   other callers waiting for the verdict. Stream results count only while the circuit is
///   still closed as it was when the stream opened.
/// - `health` bypasses the breaker (it is neither refused nor counted), so health checks see
///   the server's real state while the circuit is open.
///
/// State transitions are logged (`warn` when opening, `info` otherwise); [`state`](Self::state)
/// reports the current state. Time is `tokio::time`, so paused-time tests work.
///
/// [`name`](LlmProvider::name) is the wrapped provider's name, and so is the `provider` of
/// `CircuitOpen`.
#[derive(Debug)]
pub struct CircuitBreaker<P> {
    inner: P,
    shared: Arc<Shared>,
}

impl<P: LlmProvider> CircuitBreaker<P> {
    /// Wraps `inner`; the circuit starts closed.
    pub fn new(inner: P, policy: CircuitBreakerPolicy) -> Self {
        let shared = Arc::new(Shared {
            provider: inner.name().to_string(),
            policy,
            cell: Mutex::new(Cell {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
            }),
        });
        Self { inner, shared }
    }
}

impl<P> CircuitBreaker<P> {
    /// The current state. An open circuit whose `open_for` has passed reports
    /// [`CircuitState::HalfOpen`]: the next call is the trial.
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }

    /// The policy.
    pub fn policy(&self) -> &CircuitBreakerPolicy {
        &self.shared.policy
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

/// Reports how an open stream ends, once: its first error (a failure if transient, a success
/// otherwise, as for calls) or its clean end (a success). A stream dropped early reports
/// nothing.
struct BreakerStream {
    stream: ChatStream,
    shared: Arc<Shared>,
    generation: u64,
    reported: bool,
}

impl Stream for BreakerStream {
    type Item = Result<ChatChunk, LlmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = std::task::ready!(this.stream.as_mut().poll_next(cx));
        if !this.reported {
            match &item {
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    this.reported = true;
                    let failure = Some(error).filter(|e| is_failure(e));
                    this.shared.record_stream(this.generation, failure);
                }
                None => {
                    this.reported = true;
                    this.shared.record_stream(this.generation, None);
                }
            }
        }
        Poll::Ready(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

#[async_trait]
impl<P: LlmProvider> LlmProvider for CircuitBreaker<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let ticket = self.shared.admit()?;
        let result = self.inner.complete(request).await;
        ticket.settle(&result);
        result
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let ticket = self.shared.admit()?;
        let result = self.inner.complete_stream(request).await;
        let generation = ticket.settle_stream_opening(&result);
        let stream = result?;
        Ok(Box::pin(BreakerStream {
            stream,
            shared: Arc::clone(&self.shared),
            generation,
            reported: false,
        }))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        let ticket = self.shared.admit()?;
        let result = self.inner.embed(inputs).await;
        ticket.settle(&result);
        result
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(threshold: u32) -> Arc<Shared> {
        Arc::new(Shared {
            provider: "p".into(),
            policy: CircuitBreakerPolicy::default()
                .failure_threshold(threshold)
                .open_for(Duration::from_secs(10)),
            cell: Mutex::new(Cell {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
            }),
        })
    }

    fn transient() -> Result<(), LlmError> {
        Err(LlmError::Unreachable("down".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn stale_results_are_ignored() {
        let breaker = shared(1);
        let slow = breaker.admit().unwrap();
        breaker.admit().unwrap().settle(&transient());
        assert!(matches!(breaker.state(), CircuitState::Open { .. }));
        // A call admitted while closed succeeds after the circuit opened: still open.
        slow.settle(&Ok(()));
        assert!(matches!(breaker.state(), CircuitState::Open { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_frees_the_half_open_slot() {
        let breaker = shared(1);
        breaker.admit().unwrap().settle(&transient());
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = breaker.admit().unwrap();
        assert!(matches!(
            breaker.admit(),
            Err(LlmError::CircuitOpen { retry_in, .. }) if retry_in.is_zero()
        ));
        drop(trial);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        breaker.admit().unwrap().settle(&Ok(()));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_open_for_does_not_overflow_the_clock() {
        let breaker = Arc::new(Shared {
            provider: "p".into(),
            policy: CircuitBreakerPolicy::default()
                .failure_threshold(1)
                .open_for(Duration::MAX),
            cell: Mutex::new(Cell {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
            }),
        });
        breaker.admit().unwrap().settle(&transient());
        assert!(
            matches!(breaker.state(), CircuitState::Open { retry_in } if retry_in >= FAR_FUTURE)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_threshold_counts_as_one() {
        let breaker = shared(0);
        breaker.admit().unwrap().settle(&transient());
        assert_eq!(
            breaker.state(),
            CircuitState::Open {
                retry_in: Duration::from_secs(10)
            }
        );
    }
}
