#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The resilience wrappers (`Retry`, `Fallback`, `CircuitBreaker`, `ConcurrencyLimit`) and
//! their composition, against scripted, mocked and probing providers, in paused tokio time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ananta_core::llm::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, ChatStream, ProviderHealth,
};
use ananta_core::mocks::MockLlmProvider;
use ananta_core::{LlmError, LlmProvider};
use ananta_llm::{
    CircuitBreaker, CircuitBreakerPolicy, CircuitState, ConcurrencyLimit, Fallback, ProviderExt,
    Retry, RetryPolicy, ScriptedProvider, ScriptedReply,
};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::Instant;

fn hello() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user("hello")])
}

fn unreachable() -> LlmError {
    LlmError::Unreachable("connection refused".into())
}

fn server_error() -> LlmError {
    LlmError::Server {
        status: 503,
        message: "overloaded".into(),
    }
}

fn rejected() -> LlmError {
    LlmError::Rejected {
        status: 400,
        body: "bad request".into(),
    }
}

fn err(error: LlmError) -> ScriptedReply {
    ScriptedReply::Error(error)
}

/// A deterministic retry policy: no jitter, 1 s, 2 s, 4 s… between attempts.
fn fixed_policy() -> RetryPolicy {
    RetryPolicy::default()
        .jitter(false)
        .initial_delay(Duration::from_secs(1))
}

/// A provider failing with `error` forever that records when it was called.
fn failing_with_times(error: LlmError) -> (ScriptedProvider, Arc<Mutex<Vec<Instant>>>) {
    let times = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&times);
    let provider = ScriptedProvider::from_fn(move |_| {
        recorded.lock().unwrap().push(Instant::now());
        Err(error.clone())
    });
    (provider, times)
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// A provider that sleeps in every call and tracks how many calls run at once; its streams
/// yield `stream_items`.
struct Probe {
    delay: Duration,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stream_items: Vec<Result<ChatChunk, LlmError>>,
}

impl Probe {
    fn new(delay: Duration) -> Self {
        Self {
            delay,
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stream_items: vec![Ok(ChatChunk {
                delta: "streamed".into(),
                ..ChatChunk::default()
            })],
        }
    }

    fn streaming(items: Vec<Result<ChatChunk, LlmError>>) -> Self {
        Self {
            stream_items: items,
            ..Self::new(Duration::ZERO)
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn work(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl LlmProvider for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    async fn complete(&self, _request: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.work().await;
        Ok(ChatResponse::text("done"))
    }

    async fn complete_stream(&self, _request: ChatRequest) -> Result<ChatStream, LlmError> {
        self.work().await;
        Ok(Box::pin(futures::stream::iter(self.stream_items.clone())))
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        self.work().await;
        Ok(inputs.iter().map(|_| vec![1.0]).collect())
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        Ok(ProviderHealth::up(Duration::ZERO, vec!["probe".into()]))
    }
}

// ---------------------------------------------------------------------------------- Retry

#[tokio::test(start_paused = true)]
async fn retry_recovers_after_transient_failures() {
    let llm = ScriptedProvider::new([
        err(unreachable()),
        err(LlmError::Timeout(Duration::from_secs(30))),
        err(server_error()),
        "finally".into(),
    ]);
    let retry = llm.clone().with_retry(RetryPolicy::default());
    assert_eq!(retry.name(), "scripted");
    let answer = retry.complete(hello()).await.unwrap();
    assert_eq!(answer.content, "finally");
    assert_eq!(llm.requests().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_a_permanent_error() {
    let llm = ScriptedProvider::new([err(rejected()), "never".into()]);
    let started = Instant::now();
    let result = Retry::new(llm.clone(), RetryPolicy::default())
        .complete(hello())
        .await;
    assert!(matches!(
        result,
        Err(LlmError::Rejected { status: 400, .. })
    ));
    assert_eq!(llm.requests().len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_stops_at_max_attempts_and_returns_the_last_error() {
    let llm = ScriptedProvider::new([
        err(LlmError::Unreachable("first".into())),
        err(LlmError::Unreachable("second".into())),
        err(LlmError::Unreachable("third".into())),
        "too late".into(),
    ]);
    let result = llm
        .clone()
        .with_retry(RetryPolicy::default().max_attempts(3))
        .complete(hello())
        .await;
    assert!(matches!(result, Err(LlmError::Unreachable(m)) if m == "third"));
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_backs_off_exponentially_without_jitter() {
    let (llm, times) = failing_with_times(unreachable());
    let result = llm
        .with_retry(fixed_policy().max_attempts(5))
        .complete(hello())
        .await;
    assert!(matches!(result, Err(LlmError::Unreachable(_))));
    let secs: Vec<u64> = gaps(&times.lock().unwrap())
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [1, 2, 4, 8]);
}

#[tokio::test(start_paused = true)]
async fn full_jitter_stays_within_zero_and_the_backoff() {
    let mut all_gaps = Vec::new();
    for _ in 0..30 {
        let (llm, times) = failing_with_times(unreachable());
        let policy = RetryPolicy::default()
            .initial_delay(Duration::from_secs(1))
            .max_attempts(4);
        assert!(llm.with_retry(policy).complete(hello()).await.is_err());
        let gaps = gaps(&times.lock().unwrap());
        assert_eq!(gaps.len(), 3);
        for (retry, gap) in gaps.iter().enumerate() {
            let backoff = Duration::from_secs(1 << retry);
            assert!(
                *gap <= backoff,
                "retry {retry}: slept {gap:?} > {backoff:?}"
            );
        }
        all_gaps.extend(gaps);
    }
    // Random, not the plain backoff: some sleeps are shorter than half the backoff.
    assert!(all_gaps.iter().any(|g| *g < Duration::from_millis(500)));
    assert!(all_gaps.iter().any(|g| *g > Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn retry_honours_the_servers_retry_after() {
    let llm = ScriptedProvider::new([
        err(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        }),
        "ok".into(),
    ]);
    let started = Instant::now();
    let answer = llm
        .clone()
        .with_retry(RetryPolicy::default().initial_delay(Duration::from_millis(10)))
        .complete(hello())
        .await
        .unwrap();
    assert_eq!(answer.content, "ok");
    assert_eq!(llm.requests().len(), 2);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(7), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "waited {elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_honours_retry_after_beyond_max_delay() {
    let llm = ScriptedProvider::new([
        err(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(45)),
        }),
        "ok".into(),
    ]);
    let started = Instant::now();
    llm.with_retry(RetryPolicy::default().max_delay(Duration::from_secs(5)))
        .complete(hello())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(45));
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_when_retry_after_exceeds_the_budget() {
    let llm = ScriptedProvider::new([
        err(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(120)),
        }),
        "ok".into(),
    ]);
    let started = Instant::now();
    let result = llm
        .clone()
        .with_retry(RetryPolicy::default().max_elapsed(Duration::from_secs(60)))
        .complete(hello())
        .await;
    assert!(matches!(result, Err(LlmError::RateLimited { .. })));
    assert_eq!(llm.requests().len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO, "must not sleep in vain");
}

#[tokio::test(start_paused = true)]
async fn retry_never_starts_a_sleep_that_ends_after_the_budget() {
    let (llm, times) = failing_with_times(server_error());
    let started = Instant::now();
    let result = llm
        .with_retry(
            fixed_policy()
                .initial_delay(Duration::from_secs(4))
                .max_attempts(10)
                .max_elapsed(Duration::from_secs(10)),
        )
        .complete(hello())
        .await;
    assert!(matches!(result, Err(LlmError::Server { status: 503, .. })));
    // Attempt at 0 s, sleep 4 s, attempt at 4 s; the next sleep (8 s) would end at 12 s.
    assert_eq!(times.lock().unwrap().len(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn retry_reopens_a_stream_but_passes_errors_inside_it_through() {
    let llm = ScriptedProvider::new([err(unreachable()), "hello world".into()]);
    let stream = llm
        .clone()
        .with_retry(fixed_policy())
        .complete_stream(hello())
        .await
        .unwrap();
    let text: String = stream.map(|c| c.unwrap().delta).collect().await;
    assert_eq!(text, "hello world");
    assert_eq!(llm.requests().len(), 2);

    let probe = Arc::new(Probe::streaming(vec![
        Ok(ChatChunk {
            delta: "partial".into(),
            ..ChatChunk::default()
        }),
        Err(server_error()),
    ]));
    let items: Vec<_> = Arc::clone(&probe)
        .with_retry(fixed_policy())
        .complete_stream(hello())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    assert!(matches!(items[1], Err(LlmError::Server { .. })));
    assert_eq!(probe.calls(), 1, "an open stream is not retried");
}

#[tokio::test(start_paused = true)]
async fn retry_retries_embeddings_but_not_health() {
    let mut mock = MockLlmProvider::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    mock.expect_name().return_const("mock".to_string());
    mock.expect_embed().times(2).returning(move |inputs| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(LlmError::Timeout(Duration::from_secs(1)))
        } else {
            Ok(inputs.iter().map(|_| vec![0.5]).collect())
        }
    });
    mock.expect_health()
        .times(1)
        .returning(|| Err(server_error()));
    let retry = mock.with_retry(fixed_policy());
    assert_eq!(retry.embed(vec!["a".into()]).await.unwrap(), [vec![0.5]]);
    assert!(matches!(retry.health().await, Err(LlmError::Server { .. })));
}

// ------------------------------------------------------------------------------- Fallback

fn shared(provider: &ScriptedProvider) -> Arc<dyn LlmProvider> {
    Arc::new(provider.clone())
}

#[tokio::test]
async fn fallback_uses_the_second_provider_when_the_first_is_unreachable() {
    let primary = ScriptedProvider::new([err(unreachable())]);
    let backup = ScriptedProvider::new(["from the backup"]);
    let fallback = Fallback::new([shared(&primary), shared(&backup)]).unwrap();
    assert_eq!(fallback.name(), "fallback(scripted,scripted)");
    let answer = fallback.complete(hello()).await.unwrap();
    assert_eq!(answer.content, "from the backup");
    assert_eq!(primary.requests().len(), 1);
    assert_eq!(backup.requests().len(), 1);
}

#[tokio::test]
async fn fallback_does_not_fall_over_on_an_invalid_request_or_schema_mismatch() {
    for error in [
        LlmError::InvalidRequest("no messages".into()),
        LlmError::SchemaMismatch {
            message: "not JSON".into(),
            raw: "hi".into(),
        },
    ] {
        let primary = ScriptedProvider::new([err(error)]);
        let backup = ScriptedProvider::new(["unused"]);
        let result = Fallback::new([shared(&primary), shared(&backup)])
            .unwrap()
            .complete(hello())
            .await;
        assert!(matches!(
            result,
            Err(LlmError::InvalidRequest(_) | LlmError::SchemaMismatch { .. })
        ));
        assert!(backup.requests().is_empty());
    }
}

#[tokio::test]
async fn fallback_returns_the_last_error_when_all_fail() {
    let first = ScriptedProvider::new([err(unreachable())]);
    let second = ScriptedProvider::new([err(rejected())]);
    let third = ScriptedProvider::new([err(server_error())]);
    let fallback = first
        .clone()
        .with_fallback(second.clone())
        .then(third.clone());
    assert_eq!(fallback.providers().len(), 3);
    let result = fallback.complete(hello()).await;
    assert!(matches!(result, Err(LlmError::Server { status: 503, .. })));
    for provider in [&first, &second, &third] {
        assert_eq!(provider.requests().len(), 1);
    }
}

#[tokio::test]
async fn fallback_predicate_is_configurable() {
    let primary = ScriptedProvider::new([err(rejected())]);
    let backup = ScriptedProvider::new(["unused"]);
    let result = primary
        .clone()
        .with_fallback(backup.clone())
        .fallback_when(LlmError::is_transient)
        .complete(hello())
        .await;
    assert!(matches!(result, Err(LlmError::Rejected { .. })));
    assert!(backup.requests().is_empty());
}

#[tokio::test]
async fn fallback_needs_a_provider() {
    assert!(matches!(
        Fallback::new(Vec::new()),
        Err(LlmError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn fallback_falls_over_while_opening_streams_and_embeds() {
    let primary = ScriptedProvider::new([err(unreachable())]);
    let backup = ScriptedProvider::new(["streamed by the backup"]);
    let fallback = primary.clone().with_fallback(backup.clone());
    let text: String = fallback
        .complete_stream(hello())
        .await
        .unwrap()
        .map(|c| c.unwrap().delta)
        .collect()
        .await;
    assert_eq!(text, "streamed by the backup");

    let mut broken = MockLlmProvider::new();
    broken.expect_name().return_const("broken".to_string());
    broken
        .expect_embed()
        .times(1)
        .returning(|_| Err(unreachable()));
    let fallback = broken.with_fallback(Probe::new(Duration::ZERO));
    assert_eq!(fallback.name(), "fallback(broken,probe)");
    assert_eq!(fallback.embed(vec!["x".into()]).await.unwrap(), [vec![1.0]]);
}

#[tokio::test]
async fn fallback_health_reports_the_first_reachable_provider_or_the_last() {
    let mut down = MockLlmProvider::new();
    down.expect_name().return_const("down".to_string());
    down.expect_health()
        .returning(|| Ok(ProviderHealth::down(Duration::ZERO, "connection refused")));
    let fallback = down.with_fallback(Probe::new(Duration::ZERO));
    let health = fallback.health().await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.models, ["probe"]);

    let mut down = MockLlmProvider::new();
    down.expect_name().return_const("down".to_string());
    down.expect_health()
        .returning(|| Ok(ProviderHealth::down(Duration::ZERO, "connection refused")));
    let mut failing = MockLlmProvider::new();
    failing.expect_name().return_const("failing".to_string());
    failing.expect_health().returning(|| {
        Err(LlmError::Rejected {
            status: 401,
            body: "no key".into(),
        })
    });
    let result = down.with_fallback(failing).health().await;
    assert!(matches!(
        result,
        Err(LlmError::Rejected { status: 401, .. })
    ));
}

// -------------------------------------------------------------------------- CircuitBreaker

fn always_unreachable() -> ScriptedProvider {
    ScriptedProvider::new([err(unreachable())]).repeat_last()
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_after_five_consecutive_transient_failures_and_fails_fast() {
    let mut mock = MockLlmProvider::new();
    mock.expect_name().return_const("flaky".to_string());
    mock.expect_complete()
        .times(5)
        .returning(|_| Err(unreachable()));
    let breaker = mock.with_circuit_breaker(CircuitBreakerPolicy::default());
    for _ in 0..5 {
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(matches!(
            breaker.complete(hello()).await,
            Err(LlmError::Unreachable(_))
        ));
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Open {
            retry_in: Duration::from_secs(60)
        }
    );
    tokio::time::advance(Duration::from_secs(15)).await;
    // The mock allows exactly five calls: these must not reach it.
    for _ in 0..3 {
        match breaker.complete(hello()).await {
            Err(LlmError::CircuitOpen { provider, retry_in }) => {
                assert_eq!(provider, "flaky");
                assert_eq!(retry_in, Duration::from_secs(45));
            }
            other => panic!("expected CircuitOpen, got {other:?}"),
        }
    }
    assert!(matches!(
        breaker.embed(vec!["x".into()]).await,
        Err(LlmError::CircuitOpen { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn breaker_half_opens_after_open_for_and_closes_on_success() {
    let llm = ScriptedProvider::new(
        std::iter::repeat_with(|| err(unreachable()))
            .take(5)
            .chain(["recovered".into(), "again".into()]),
    );
    let breaker = llm
        .clone()
        .with_circuit_breaker(CircuitBreakerPolicy::default());
    for _ in 0..5 {
        assert!(breaker.complete(hello()).await.is_err());
    }
    assert!(matches!(
        breaker.complete(hello()).await,
        Err(LlmError::CircuitOpen { .. })
    ));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(
        breaker.complete(hello()).await.unwrap().content,
        "recovered"
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.complete(hello()).await.unwrap().content, "again");
    assert_eq!(llm.requests().len(), 7);
}

#[tokio::test(start_paused = true)]
async fn breaker_lets_exactly_one_trial_through_while_half_open() {
    let llm = ScriptedProvider::new(
        std::iter::repeat_with(|| err(unreachable()))
            .take(5)
            .chain(["trial ok".into()]),
    )
    .latency(Duration::from_secs(2));
    let breaker =
        Arc::new(llm.clone().with_circuit_breaker(
            CircuitBreakerPolicy::default().open_for(Duration::from_secs(30)),
        ));
    for _ in 0..5 {
        assert!(breaker.complete(hello()).await.is_err());
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    let trial = tokio::spawn({
        let breaker = Arc::clone(&breaker);
        async move { breaker.complete(hello()).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(llm.requests().len(), 6, "the trial is in flight");
    for _ in 0..3 {
        assert!(matches!(
            breaker.complete(hello()).await,
            Err(LlmError::CircuitOpen { .. })
        ));
    }
    assert_eq!(llm.requests().len(), 6, "concurrent callers fail fast");
    assert_eq!(trial.await.unwrap().unwrap().content, "trial ok");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_reopens_when_the_trial_fails() {
    let llm = always_unreachable();
    let breaker = llm.clone().with_circuit_breaker(
        CircuitBreakerPolicy::default()
            .failure_threshold(2)
            .open_for(Duration::from_secs(10)),
    );
    for _ in 0..2 {
        assert!(breaker.complete(hello()).await.is_err());
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(
        breaker.complete(hello()).await,
        Err(LlmError::Unreachable(_))
    ));
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(
        breaker.state(),
        CircuitState::Open {
            retry_in: Duration::from_secs(10)
        }
    );
    assert!(matches!(
        breaker.complete(hello()).await,
        Err(LlmError::CircuitOpen { .. })
    ));
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_does_not_trip_the_breaker_and_resets_the_count() {
    let llm = ScriptedProvider::new([err(rejected())]).repeat_last();
    let breaker = llm
        .clone()
        .with_circuit_breaker(CircuitBreakerPolicy::default());
    for _ in 0..10 {
        assert!(matches!(
            breaker.complete(hello()).await,
            Err(LlmError::Rejected { .. })
        ));
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(llm.requests().len(), 10);

    // 4 transient, 1 permanent, 4 transient: never 5 in a row.
    let script = std::iter::repeat_with(|| err(unreachable()))
        .take(4)
        .chain([err(rejected())])
        .chain(std::iter::repeat_with(|| err(unreachable())).take(4));
    let breaker =
        ScriptedProvider::new(script).with_circuit_breaker(CircuitBreakerPolicy::default());
    for _ in 0..9 {
        assert!(breaker.complete(hello()).await.is_err());
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_counts_failures_inside_streams_and_skips_health() {
    let probe = Arc::new(Probe::streaming(vec![Err(LlmError::Timeout(
        Duration::from_secs(5),
    ))]));
    let breaker = Arc::clone(&probe)
        .with_circuit_breaker(CircuitBreakerPolicy::default().failure_threshold(2));
    for _ in 0..2 {
        let items: Vec<_> = breaker
            .complete_stream(hello())
            .await
            .unwrap()
            .collect()
            .await;
        assert!(matches!(items[..], [Err(LlmError::Timeout(_))]));
    }
    assert!(matches!(breaker.state(), CircuitState::Open { .. }));
    assert!(matches!(
        breaker.complete_stream(hello()).await,
        Err(LlmError::CircuitOpen { .. })
    ));
    assert_eq!(probe.calls(), 2);
    assert!(breaker.health().await.unwrap().reachable, "health bypasses");
    assert_eq!(breaker.name(), "probe");
}

#[tokio::test(start_paused = true)]
async fn a_stream_counts_when_it_ends_not_when_it_opens() {
    for consume in [true, false] {
        let llm = ScriptedProvider::new([err(unreachable()), "ok".into(), err(unreachable())]);
        let breaker =
            llm.with_circuit_breaker(CircuitBreakerPolicy::default().failure_threshold(2));
        assert!(breaker.complete_stream(hello()).await.is_err());
        let stream = breaker.complete_stream(hello()).await.unwrap();
        if consume {
            let text: String = stream.map(|c| c.unwrap().delta).collect().await;
            assert_eq!(text, "ok");
        } else {
            drop(stream);
        }
        assert!(breaker.complete_stream(hello()).await.is_err());
        let expected_closed = consume; // a clean end resets the count; an early drop does not
        assert_eq!(breaker.state() == CircuitState::Closed, expected_closed);
    }
}

// ------------------------------------------------------------------------ ConcurrencyLimit

#[tokio::test(start_paused = true)]
async fn concurrency_limit_keeps_at_most_n_calls_in_flight() {
    let probe = Arc::new(Probe::new(Duration::from_secs(1)));
    let limited = Arc::clone(&probe).with_concurrency_limit(2);
    assert_eq!(limited.limit(), 2);
    let started = Instant::now();
    let results = futures::future::join_all((0..5).map(|_| limited.complete(hello()))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(probe.calls(), 5);
    assert_eq!(probe.max_in_flight.load(Ordering::SeqCst), 2);
    // Three waves of at most two calls.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(limited.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_holds_its_slot_until_dropped() {
    let limited = Arc::new(ConcurrencyLimit::new(Probe::new(Duration::ZERO), 1));
    let stream = limited.complete_stream(hello()).await.unwrap();
    assert_eq!(limited.in_flight(), 1);
    let waiting = tokio::time::timeout(Duration::from_secs(5), limited.complete(hello())).await;
    assert!(waiting.is_err(), "the second call must wait for the stream");

    let second = tokio::spawn({
        let limited = Arc::clone(&limited);
        async move { limited.complete(hello()).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!second.is_finished());
    drop(stream);
    assert_eq!(second.await.unwrap().unwrap().content, "done");
    assert_eq!(limited.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_finished_stream_releases_its_slot() {
    let limited = ConcurrencyLimit::new(Probe::new(Duration::ZERO), 1);
    let mut stream = limited.complete_stream(hello()).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().delta, "streamed");
    assert_eq!(limited.in_flight(), 1);
    assert!(stream.next().await.is_none());
    assert_eq!(
        limited.in_flight(),
        0,
        "released before the stream is dropped"
    );
    assert_eq!(limited.complete(hello()).await.unwrap().content, "done");
    drop(stream);
}

#[tokio::test(start_paused = true)]
async fn a_zero_limit_is_raised_to_one_and_health_is_not_limited() {
    let limited = ConcurrencyLimit::new(Probe::new(Duration::ZERO), 0);
    assert_eq!(limited.limit(), 1);
    let _stream = limited.complete_stream(hello()).await.unwrap();
    assert!(limited.health().await.unwrap().reachable);
    assert_eq!(limited.name(), "probe");
}

// ----------------------------------------------------------------------------- Composition

#[tokio::test(start_paused = true)]
async fn retry_over_fallback_over_breakers() {
    let primary = always_unreachable();
    let backup = ScriptedProvider::new([err(server_error()), "backup 1".into(), "backup 2".into()]);
    let breaker_policy = CircuitBreakerPolicy::default().failure_threshold(2);
    let llm: CircuitBreaker<ScriptedProvider> =
        primary.clone().with_circuit_breaker(breaker_policy.clone());
    let llm = llm
        .with_fallback(backup.clone().with_circuit_breaker(breaker_policy))
        .with_retry(fixed_policy());

    let started = Instant::now();
    // Attempt 1: primary fails (1/2), backup 503 → the fallback returns the backup's 503,
    // which is transient → retry after 1 s. Attempt 2: primary fails (2/2, opens), backup ok.
    assert_eq!(llm.complete(hello()).await.unwrap().content, "backup 1");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(primary.requests().len(), 2);
    assert_eq!(backup.requests().len(), 2);

    // The primary's circuit is open: it is skipped without being called.
    assert_eq!(llm.complete(hello()).await.unwrap().content, "backup 2");
    assert_eq!(primary.requests().len(), 2);
    assert_eq!(backup.requests().len(), 3);
    let fallback = llm.inner();
    assert_eq!(fallback.name(), "fallback(scripted,scripted)");
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_fast_when_every_circuit_is_open() {
    let primary = always_unreachable();
    let policy = CircuitBreakerPolicy::default()
        .failure_threshold(1)
        .open_for(Duration::from_secs(120));
    let llm = primary
        .clone()
        .with_circuit_breaker(policy)
        .with_retry(fixed_policy().max_elapsed(Duration::from_secs(60)));
    let started = Instant::now();
    // Attempt 1 fails and opens the circuit; attempt 2 after 1 s gets CircuitOpen with
    // retry_in ≈ 119 s, beyond the 60 s budget: give up at once.
    let result = llm.complete(hello()).await;
    assert!(matches!(result, Err(LlmError::CircuitOpen { .. })));
    assert_eq!(primary.requests().len(), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}
