//! [`RemoteAgent`]: a hub's handle on a worker behind HTTP.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, warn};

use super::transport::{
    DEFAULT_CONNECT_TIMEOUT, SharedSecret, backoffs, build_client, call, jitter, parse_base_url,
};
use crate::agent::{AgentClient, ExecuteRequest, ProposeRequest};
use crate::error::{AgentError, error_chain};
use crate::http::types::{HealthResponse, IDEMPOTENCY_HEADER};
use crate::task::{Proposed, StepRecord};

/// Default time for a propose call (the worker asks its LLM; small CPU models are slow).
const DEFAULT_PROPOSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time for an execute call (the worker runs a command).
const DEFAULT_EXECUTE_TIMEOUT: Duration = Duration::from_secs(900);
/// Default time for `GET /health`.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of attempts of one execute call.
const DEFAULT_EXECUTE_ATTEMPTS: u32 = 3;
/// First wait before an execute call is sent again; doubles per retry.
const EXECUTE_BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between two attempts of an execute call.
const EXECUTE_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// A hub's handle on a worker behind HTTP: an [`AgentClient`] that forwards propose and
/// execute to the worker's API at a base URL (the original Ananta's `agent_url`).
///
/// - `propose` is `POST {base}/step/propose` and is never retried (it costs LLM tokens);
/// - `execute` is `POST {base}/step/execute` with an `idempotency-key` header (a fresh ULID
///   per call, the same for each retry of it); it is retried, up to
///   [`execute_attempts`](Self::execute_attempts) times with jittered exponential backoff,
///   only when the request may not have reached the worker (connection error, timeout),
///   on 502/503/504, and on 409 `idempotency_in_progress` (the worker still runs the first
///   attempt). The worker answers a repeated key with the first attempt's result, so a
///   command never runs twice;
/// - `ping` is `GET {base}/health`.
///
/// The token (sent as `Authorization: Bearer <token>`) is shared by all clones, so a hub can
/// switch it with [`set_token`](Self::set_token) when the worker rotates it. `Debug` output
/// never shows it. Error answers map to typed errors as listed in the
/// [`http` module documentation](crate::http#errors-of-the-clients).
///
/// ```no_run
/// use std::time::Duration;
/// use ananta_core::http::RemoteAgent;
/// use ananta_core::{AgentClient, NewTask, Proposed};
/// use ananta_core::agent::{ExecuteRequest, ProposeRequest};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let agent = RemoteAgent::new("http://127.0.0.1:5001/", Some("worker-token".into()))?
///     .propose_timeout(Duration::from_secs(120))
///     .execute_attempts(3);
/// assert_eq!(agent.base_url(), "http://127.0.0.1:5001");
/// agent.ping().await?;
///
/// let mut task = NewTask::new("List the files").into_task()?;
/// let proposed = agent.propose(ProposeRequest { task: task.clone(), template: None }).await?;
/// if let Proposed::Command(proposal) = proposed {
///     task.proposal = Some(proposal);
///     let step = agent.execute(ExecuteRequest { task, command: None, approved: false }).await?;
///     tracing::info!(exit = ?step.outcome.exit_code, "ran {}", step.command);
/// }
///
/// // The worker rotated its token: every clone of `agent` sends the new one.
/// agent.set_token(Some("new-token".into()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteAgent {
    base_url: String,
    client: reqwest::Client,
    custom_client: bool,
    token: SharedSecret,
    propose_timeout: Duration,
    execute_timeout: Duration,
    ping_timeout: Duration,
    connect_timeout: Duration,
    execute_attempts: u32,
}

impl fmt::Debug for RemoteAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAgent")
            .field("base_url", &self.base_url)
            .field("token_set", &self.token.is_set())
            .field("propose_timeout", &self.propose_timeout)
            .field("execute_timeout", &self.execute_timeout)
            .field("ping_timeout", &self.ping_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("execute_attempts", &self.execute_attempts)
            .finish_non_exhaustive()
    }
}

impl RemoteAgent {
    /// A client of the worker at `base_url` (an http(s) URL; trailing `/` are dropped),
    /// sending `token` as a Bearer token when given (an empty token counts as none).
    ///
    /// Fails with [`AgentError::Unreachable`] when the URL is not an http(s) URL with a host
    /// (or has a query or fragment), or the HTTP client cannot be built.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Result<Self, AgentError> {
        let base_url = parse_base_url(base_url.into(), "agent")?;
        let client = build_client(DEFAULT_CONNECT_TIMEOUT)
            .map_err(|e| AgentError::Unreachable(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            base_url,
            client,
            custom_client: false,
            token: SharedSecret::new(token),
            propose_timeout: DEFAULT_PROPOSE_TIMEOUT,
            execute_timeout: DEFAULT_EXECUTE_TIMEOUT,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            execute_attempts: DEFAULT_EXECUTE_ATTEMPTS,
        })
    }

    /// Time for a whole propose call, until the body is read (default 300 s).
    pub fn propose_timeout(mut self, timeout: Duration) -> Self {
        self.propose_timeout = timeout;
        self
    }

    /// Time for one attempt of an execute call (default 900 s).
    pub fn execute_timeout(mut self, timeout: Duration) -> Self {
        self.execute_timeout = timeout;
        self
    }

    /// Time for `GET /health` (default 5 s).
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// Time to open a connection (default 5 s). It configures the client this agent built;
    /// a client given with [`client`](Self::client) keeps its own setting.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        if !self.custom_client {
            match build_client(timeout) {
                Ok(client) => self.client = client,
                Err(e) => warn!(
                    agent = %self.base_url,
                    error = %error_chain(&e),
                    "cannot rebuild the HTTP client; keeping the previous connect timeout"
                ),
            }
        }
        self
    }

    /// How many times one execute call is sent at most (default 3; 0 counts as 1).
    pub fn execute_attempts(mut self, attempts: u32) -> Self {
        self.execute_attempts = attempts.max(1);
        self
    }

    /// Uses this `reqwest` client (shared connection pool, proxies, TLS settings). Its own
    /// connect timeout applies; the per-call timeouts of this agent still do.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self.custom_client = true;
        self
    }

    /// Replaces the token for this agent and every clone of it (`None` or an empty string:
    /// send no `Authorization` header).
    pub fn set_token(&self, token: Option<String>) {
        self.token.set(token);
    }

    /// Whether a token is sent.
    pub fn token_is_set(&self) -> bool {
        self.token.is_set()
    }

    /// The worker's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET {base}/health`: the worker's answer, which must be 200 with `status: "ok"`
    /// (anything else is [`AgentError::Rejected`]).
    pub async fn health(&self) -> Result<HealthResponse, AgentError> {
        let url = self.url("/health");
        let target = format!("GET {url}");
        let request = self.token.authorize(self.client.get(&url));
        let health: HealthResponse = call(request, &target, self.ping_timeout, None)
            .await
            .map_err(|f| f.error)?;
        if health.status != "ok" {
            return Err(AgentError::Rejected {
                status: 200,
                message: format!("unhealthy: status {:?}", health.status),
            });
        }
        Ok(health)
    }
}

#[async_trait]
impl AgentClient for RemoteAgent {
    async fn propose(&self, request: ProposeRequest) -> Result<Proposed, AgentError> {
        let url = self.url("/step/propose");
        let target = format!("POST {url}");
        let task = request.task.id;
        let builder = self.token.authorize(self.client.post(&url)).json(&request);
        let result = call(builder, &target, self.propose_timeout, Some(task)).await;
        if let Err(failure) = &result {
            debug!(agent = %self.base_url, %task, error = %failure.error, "remote propose failed");
        }
        result.map_err(|f| f.error)
    }

    async fn execute(&self, request: ExecuteRequest) -> Result<StepRecord, AgentError> {
        let url = self.url("/step/execute");
        let target = format!("POST {url}");
        let task = request.task.id;
        let key = ulid::Ulid::new().to_string();
        let attempts = self.execute_attempts.max(1);
        let mut attempt = 1;
        let mut backoff = backoffs(EXECUTE_BACKOFF_START, EXECUTE_BACKOFF_CAP);
        loop {
            let builder = self
                .token
                .authorize(self.client.post(&url))
                .header(IDEMPOTENCY_HEADER, &key)
                .json(&request);
            match call(builder, &target, self.execute_timeout, Some(task)).await {
                Ok(step) => return Ok(step),
                Err(failure) if attempt < attempts && failure.execute_retryable() => {
                    let delay = execute_delay(
                        backoff.next().unwrap_or(EXECUTE_BACKOFF_CAP),
                        failure.retry_after,
                    );
                    warn!(
                        agent = %self.base_url,
                        %task,
                        idempotency_key = %key,
                        attempt,
                        error = %failure.error,
                        retry_in = ?delay,
                        "remote execute failed; retrying with the same idempotency key"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(failure) => {
                    debug!(
                        agent = %self.base_url,
                        %task,
                        idempotency_key = %key,
                        attempt,
                        error = %failure.error,
                        "remote execute failed"
                    );
                    return Err(failure.error);
                }
            }
        }
    }

    async fn ping(&self) -> Result<(), AgentError> {
        self.health().await.map(|_| ())
    }
}

/// The wait before an execute call is sent again, from its backoff (200 ms, doubling, at most
/// 5 s): the upper half jittered; a longer `Retry-After` (within the cap) wins.
fn execute_delay(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    let delay = backoff / 2 + jitter(backoff / 2);
    match retry_after {
        Some(wait) => delay.max(wait.min(EXECUTE_BACKOFF_CAP)),
        None => delay,
    }
}
