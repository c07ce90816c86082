//! The client side of the HTTP API: [`RemoteAgent`], through which a hub reaches a worker
//! behind HTTP, and [`HubClient`], through which a worker registers with its hub and keeps
//! its registration alive (the original Ananta's heartbeat).
//!
//! Both read the server's error body (`{"error": {"code", "message", "details"?}}`, see
//! [`ErrorBody`]) back into the [`AgentError`] the worker had, so a refusal on the worker is
//! the same typed refusal on the hub:
//!
//! | answer | error |
//! |---|---|
//! | `command_denied` (details `rule`, `reason`) | `AgentError::Exec(ExecError::Denied { rule, reason })` |
//! | `approval_required` (details `reasons`) | `AgentError::Exec(ExecError::NeedsApproval { reasons })` |
//! | `invalid_command` | `AgentError::Exec(ExecError::InvalidRequest(message))` |
//! | `sandbox_unavailable` | `AgentError::Exec(ExecError::SandboxUnavailable(message))` |
//! | `no_proposal` | `AgentError::NoCommand(task)`, the request's task |
//! | any other non-2xx, JSON or not | `AgentError::Rejected { status, message: "<code>: <message>" }` |
//! | a 2xx whose body does not parse | `AgentError::Rejected { status, message: "invalid response: …" }` |
//! | no answer within the configured time | `AgentError::Timeout(that time)` |
//! | connection refused, reset, DNS… | `AgentError::Unreachable(text naming the URL)` |

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::agent::{AgentClient, ExecuteRequest, ProposeRequest};
use crate::error::{AgentError, ExecError, error_chain, parse_retry_after};
use crate::http::error::{ErrorBody, ErrorInfo};
use crate::http::types::{HealthResponse, IDEMPOTENCY_HEADER, RegisterRequest, RegisterResponse};
use crate::ids::TaskId;
use crate::task::{Proposed, StepRecord};

/// Default time for a propose call (the worker asks its LLM; small CPU models are slow).
const DEFAULT_PROPOSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time for an execute call (the worker runs a command).
const DEFAULT_EXECUTE_TIMEOUT: Duration = Duration::from_secs(900);
/// Default time for `GET /health`.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to open a connection.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of attempts of one execute call.
const DEFAULT_EXECUTE_ATTEMPTS: u32 = 3;
/// First wait before an execute call is sent again; doubles per retry.
const EXECUTE_BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between two attempts of an execute call.
const EXECUTE_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Default time for one registration request.
const DEFAULT_HUB_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before a registration is sent again; doubles per retry.
const REGISTER_BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between two registration attempts (before a `Retry-After`).
const REGISTER_BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest `Retry-After` a registration honours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Shortest heartbeat period (a zero interval would spin).
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// At most this many characters of a non-JSON error body go into an error message.
const BODY_SNIPPET_CHARS: usize = 512;

/// A secret (token, credential) shared by all clones of a client, so it can be switched at
/// run time. An empty string counts as no secret.
#[derive(Clone, Default)]
struct SharedSecret(Arc<RwLock<Option<String>>>);

impl SharedSecret {
    fn new(secret: Option<String>) -> Self {
        Self(Arc::new(RwLock::new(secret.filter(|s| !s.is_empty()))))
    }

    fn get(&self) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, secret: Option<String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = secret.filter(|s| !s.is_empty());
    }

    fn is_set(&self) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Adds `Authorization: Bearer <secret>` (marked sensitive) when a secret is set.
    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match self.get() {
            Some(secret) => request.bearer_auth(secret),
            None => request,
        }
    }
}

/// Checks that `url` is an absolute http(s) URL with a host and no query or fragment, and
/// returns it without trailing slashes.
fn parse_base_url(url: String, what: &str) -> Result<String, AgentError> {
    let invalid = |why: &str| AgentError::Unreachable(format!("invalid {what} URL {url:?}: {why}"));
    let parsed = Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment"));
    }
    Ok(url.trim().trim_end_matches('/').to_string())
}

/// A `reqwest` client with this connect timeout.
fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::install_default_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
}

/// Why a call failed, with what a retry decision needs.
#[derive(Debug)]
struct Failure {
    /// The error the caller gets.
    error: AgentError,
    /// The HTTP status, when the server answered.
    status: Option<u16>,
    /// The error code of the server's [`ErrorBody`], when it sent one.
    code: Option<String>,
    /// The server's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
    /// For a failure without an answer: whether the same request may be sent again (not for
    /// a request that could not even be built).
    transport_retryable: bool,
}

impl Failure {
    /// Whether an execute call may be sent again with the same idempotency key: the request
    /// may not have reached the worker (connection error, timeout), a gateway or the worker
    /// is temporarily unavailable (502/503/504), or the worker is still running the first
    /// attempt with this key (409 `idempotency_in_progress`).
    fn execute_retryable(&self) -> bool {
        match self.status {
            None => self.transport_retryable,
            // A machine without the sandbox's kernel features will not grow them.
            Some(503) if self.code.as_deref() == Some("sandbox_unavailable") => false,
            Some(502..=504) => true,
            Some(409) => self.code.as_deref() == Some("idempotency_in_progress"),
            Some(_) => false,
        }
    }

    /// Whether a registration may be sent again: the hub is down or overloaded (no answer,
    /// 408, 429, 5xx). A 401/403/422 (wrong secret, bad card) will not fix itself.
    fn registration_retryable(&self) -> bool {
        match self.status {
            None => self.transport_retryable,
            Some(status) => status == 408 || status == 429 || (500..600).contains(&status),
        }
    }
}

/// Maps a `reqwest` failure (no usable answer) for the request `target` (`"POST <url>"`).
fn transport_failure(e: reqwest::Error, target: &str, timeout: Duration) -> Failure {
    let builder = e.is_builder();
    let connect = e.is_connect();
    let timed_out = e.is_timeout();
    // The target already names the URL; reqwest would repeat it.
    let text = error_chain(&e.without_url());
    let error = if builder {
        AgentError::Unreachable(format!("cannot build the request {target}: {text}"))
    } else if connect {
        // Refused, no route, DNS, or the connect timeout: the request never left.
        AgentError::Unreachable(format!("{target}: {text}"))
    } else if timed_out {
        AgentError::Timeout(timeout)
    } else {
        AgentError::Unreachable(format!("{target}: {text}"))
    };
    Failure {
        error,
        status: None,
        code: None,
        retry_after: None,
        transport_retryable: !builder,
    }
}

/// The server's requested delay: `retry-after-ms`, then `Retry-After` as seconds or an HTTP
/// date ([`parse_retry_after`]).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    parse_retry_after(header("retry-after-ms"), header("retry-after"))
}

/// `text` without `prefix` (the server's message repeats the error's own Display prefix).
fn strip_prefix(text: String, prefix: &str) -> String {
    match text.strip_prefix(prefix) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// A string field of the error details.
fn detail_str(details: Option<&Value>, field: &str) -> Option<String> {
    details?.get(field)?.as_str().map(str::to_owned)
}

/// The error a worker's or hub's error body stands for.
fn map_error_info(status: u16, info: ErrorInfo, task: Option<TaskId>) -> AgentError {
    let ErrorInfo {
        code,
        message,
        details,
    } = info;
    let details = details.as_ref();
    match (code.as_str(), task) {
        ("command_denied", _) => AgentError::Exec(ExecError::Denied {
            rule: detail_str(details, "rule").unwrap_or_default(),
            reason: detail_str(details, "reason").unwrap_or(message),
        }),
        ("approval_required", _) => {
            let reasons: Vec<String> = details
                .and_then(|d| d.get("reasons"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let reasons = if reasons.is_empty() {
                vec![message]
            } else {
                reasons
            };
            AgentError::Exec(ExecError::NeedsApproval { reasons })
        }
        ("invalid_command", _) => AgentError::Exec(ExecError::InvalidRequest(strip_prefix(
            message,
            "invalid command request: ",
        ))),
        ("sandbox_unavailable", _) => AgentError::Exec(ExecError::SandboxUnavailable(
            strip_prefix(message, "sandbox unavailable, command not run: "),
        )),
        ("no_proposal", Some(task)) => AgentError::NoCommand(task),
        _ => AgentError::Rejected {
            status,
            message: format!("{code}: {message}"),
        },
    }
}

/// The failure a non-2xx answer stands for; `body` may be anything.
fn answer_failure(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    task: Option<TaskId>,
) -> Failure {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => {
            let code = parsed.error.code.clone();
            Failure {
                error: map_error_info(status, parsed.error, task),
                status: Some(status),
                code: Some(code),
                retry_after,
                transport_retryable: false,
            }
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("HTTP {status} with an empty body")
            } else {
                let mut snippet: String = text.chars().take(BODY_SNIPPET_CHARS).collect();
                if snippet.len() < text.len() {
                    snippet.push('…');
                }
                snippet
            };
            Failure {
                error: AgentError::Rejected { status, message },
                status: Some(status),
                code: None,
                retry_after,
                transport_retryable: false,
            }
        }
    }
}

/// Sends `request` with `timeout` and reads a 2xx answer as `T`; `target` (`"POST <url>"`)
/// names the request in errors, `task` is the task a `no_proposal` answer is about.
async fn call<T: DeserializeOwned>(
    request: RequestBuilder,
    target: &str,
    timeout: Duration,
    task: Option<TaskId>,
) -> Result<T, Failure> {
    let response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_failure(e, target, timeout))?;
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_failure(e, target, timeout))?;
    if !(200..300).contains(&status) {
        return Err(answer_failure(status, &body, wait, task));
    }
    serde_json::from_slice(&body).map_err(|e| Failure {
        error: AgentError::Rejected {
            status,
            message: format!("invalid response: {e}"),
        },
        status: Some(status),
        code: None,
        retry_after: None,
        transport_retryable: false,
    })
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=millis))
}

/// `start · 2^retry`, at most `cap`.
fn exponential(start: Duration, retry: u32, cap: Duration) -> Duration {
    start
        .saturating_mul(2u32.saturating_pow(retry.min(31)))
        .min(cap)
}

/// The wait before retry number `retry` (0-based) of an execute call: 200 ms · 2^retry, at
/// most 5 s, the upper half jittered; a longer `Retry-After` (within the cap) wins.
fn execute_delay(retry: u32, retry_after: Option<Duration>) -> Duration {
    let base = exponential(EXECUTE_BACKOFF_START, retry, EXECUTE_BACKOFF_CAP);
    let delay = base / 2 + jitter(base / 2);
    match retry_after {
        Some(wait) => delay.max(wait.min(EXECUTE_BACKOFF_CAP)),
        None => delay,
    }
}

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
/// [module documentation](crate::http::remote).
///
/// ```no_run
/// use std::time::Duration;
/// use ananta_core::http::RemoteAgent;
/// use ananta_core::{AgentClient, ExecuteRequest, NewTask, ProposeRequest, Proposed};
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
    /// a client given with [`with_client`](Self::with_client) keeps its own setting.
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
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
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
        loop {
            let builder = self
                .token
                .authorize(self.client.post(&url))
                .header(IDEMPOTENCY_HEADER, &key)
                .json(&request);
            match call(builder, &target, self.execute_timeout, Some(task)).await {
                Ok(step) => return Ok(step),
                Err(failure) if attempt < attempts && failure.execute_retryable() => {
                    let delay = execute_delay(attempt - 1, failure.retry_after);
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

/// A worker's client of its hub: registration (`POST {hub}/register`) and the heartbeat,
/// which — as in the original Ananta — is the same registration sent again on an interval.
///
/// The credential (the hub's `AGENT_TOKEN` or a user's JWT, sent as a Bearer token) is
/// shared by all clones and can be switched with [`set_credential`](Self::set_credential).
/// `Debug` output never shows it, nor anything of a [`RegisterRequest`].
///
/// ```no_run
/// use std::time::Duration;
/// use ananta_core::http::{HubClient, RegisterRequest};
/// use ananta_core::{AgentId, CancellationToken};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = HubClient::new("http://hub:5000", Some("hub-token".into()))?;
/// let request = RegisterRequest::new(AgentId::new("w1")?, "http://w1:5001");
/// let cancel = CancellationToken::new();
/// let answer = hub.register_until_accepted(&request, &cancel).await?;
/// let interval = Duration::from_secs(answer.heartbeat_interval_secs.max(1));
/// tokio::spawn(hub.clone().heartbeat_loop(request, interval, cancel.clone()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HubClient {
    url: String,
    client: reqwest::Client,
    credential: SharedSecret,
    timeout: Duration,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("url", &self.url)
            .field("credential_set", &self.credential.is_set())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client of the hub at `hub_url` (an http(s) URL; trailing `/` are dropped), sending
    /// `credential` (the hub's `AGENT_TOKEN` or a user JWT) as a Bearer token when given.
    ///
    /// Fails with [`AgentError::Unreachable`] when the URL is not an http(s) URL with a host
    /// (or has a query or fragment), or the HTTP client cannot be built.
    pub fn new(hub_url: impl Into<String>, credential: Option<String>) -> Result<Self, AgentError> {
        let url = parse_base_url(hub_url.into(), "hub")?;
        let client = build_client(DEFAULT_CONNECT_TIMEOUT)
            .map_err(|e| AgentError::Unreachable(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            url,
            client,
            credential: SharedSecret::new(credential),
            timeout: DEFAULT_HUB_TIMEOUT,
        })
    }

    /// Time for one registration request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this `reqwest` client (shared connection pool, proxies, TLS settings).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Replaces the credential for this client and every clone of it (`None` or an empty
    /// string: send no `Authorization` header).
    pub fn set_credential(&self, credential: Option<String>) {
        self.credential.set(credential);
    }

    /// The hub's base URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn try_register(&self, request: &RegisterRequest) -> Result<RegisterResponse, Failure> {
        let url = format!("{}/register", self.url);
        let target = format!("POST {url}");
        let builder = self
            .credential
            .authorize(self.client.post(&url))
            .json(request);
        call(builder, &target, self.timeout, None).await
    }

    /// `POST {hub}/register` once.
    ///
    /// Errors map like [`RemoteAgent`]'s: an error answer is [`AgentError::Rejected`] with
    /// its status (429 included), no answer is [`AgentError::Unreachable`] or
    /// [`AgentError::Timeout`]. Callers treat 5xx, 429 and no answer as transient.
    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, AgentError> {
        self.try_register(request).await.map_err(|f| f.error)
    }

    /// Registers, retrying while the hub is down or busy (no answer, 408, 429, 5xx) with
    /// exponential backoff (250 ms, doubling, at most 10 s, full jitter; a `Retry-After` in
    /// seconds is honoured, up to 5 minutes). Each failed attempt is logged at `warn`.
    ///
    /// Stops at once with the error on any other answer, e.g. 401/403/422 (a wrong secret
    /// or a bad card will not fix itself), and with [`AgentError::Cancelled`] when `cancel`
    /// fires (also during a request or a wait).
    pub async fn register_until_accepted(
        &self,
        request: &RegisterRequest,
        cancel: &CancellationToken,
    ) -> Result<RegisterResponse, AgentError> {
        let mut retry: u32 = 0;
        loop {
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(AgentError::Cancelled),
                outcome = self.try_register(request) => outcome,
            };
            match outcome {
                Ok(answer) => {
                    if retry > 0 {
                        info!(hub = %self.url, agent = %request.name, attempts = retry + 1, "registered with the hub");
                    }
                    return Ok(answer);
                }
                Err(failure) if failure.registration_retryable() => {
                    let delay = match failure.retry_after {
                        Some(wait) => wait.min(MAX_RETRY_AFTER),
                        None => jitter(exponential(
                            REGISTER_BACKOFF_START,
                            retry,
                            REGISTER_BACKOFF_CAP,
                        )),
                    };
                    retry = retry.saturating_add(1);
                    warn!(
                        hub = %self.url,
                        agent = %request.name,
                        attempt = retry,
                        error = %failure.error,
                        retry_in = ?delay,
                        "registration with the hub failed; retrying"
                    );
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return Err(AgentError::Cancelled),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(failure) => {
                    warn!(
                        hub = %self.url,
                        agent = %request.name,
                        attempt = retry + 1,
                        error = %failure.error,
                        "the hub refused the registration; not retrying"
                    );
                    return Err(failure.error);
                }
            }
        }
    }

    /// The heartbeat: sends `request` again every `interval` until `cancel` fires (the first
    /// one an interval after the start — register first, e.g. with
    /// [`register_until_accepted`](Self::register_until_accepted)).
    ///
    /// When the hub answers a `heartbeat_interval_secs` shorter than `interval`, that period
    /// is used instead (the hub marks an agent offline when it stays silent for longer). A
    /// failed heartbeat is logged at `warn` and the loop goes on with the next tick.
    pub async fn heartbeat_loop(
        self,
        request: RegisterRequest,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let interval = interval.max(MIN_HEARTBEAT);
        let mut period = interval;
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                outcome = self.try_register(&request) => outcome,
            };
            match outcome {
                Ok(answer) => {
                    let hub_period = Duration::from_secs(answer.heartbeat_interval_secs);
                    period = if !hub_period.is_zero() && hub_period < interval {
                        hub_period
                    } else {
                        interval
                    };
                    debug!(hub = %self.url, agent = %request.name, next_in = ?period, "heartbeat sent");
                }
                Err(failure) => warn!(
                    hub = %self.url,
                    agent = %request.name,
                    error = %failure.error,
                    retry_in = ?period,
                    "heartbeat (re-registration) failed; trying again at the next tick"
                ),
            }
        }
        debug!(hub = %self.url, agent = %request.name, "heartbeat loop stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    use axum::Router;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::agent::AgentInfo;
    use crate::error::Error;
    use crate::exec::ExecOutcome;
    use crate::http::error::ApiError;
    use crate::http::types::{WorkerExecuteBody, WorkerProposeBody};
    use crate::ids::AgentId;
    use crate::task::{NewTask, Proposal, Task};

    /// One request the test server saw.
    #[derive(Debug, Clone)]
    struct Seen {
        auth: Option<String>,
        key: Option<String>,
        body: Value,
        at: Instant,
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Seen>>>);

    impl Recorder {
        fn record(&self, headers: &AxumHeaders, body: Value) -> usize {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let mut seen = self.0.lock().unwrap();
            seen.push(Seen {
                auth: header("authorization"),
                key: header(IDEMPOTENCY_HEADER),
                body,
                at: Instant::now(),
            });
            seen.len()
        }

        fn all(&self) -> Vec<Seen> {
            self.0.lock().unwrap().clone()
        }

        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }

        /// How many requests carried each idempotency key.
        fn keys(&self) -> HashMap<String, usize> {
            let mut keys = HashMap::new();
            for seen in self.all() {
                *keys.entry(seen.key.unwrap_or_default()).or_default() += 1;
            }
            keys
        }
    }

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    }

    fn task() -> Task {
        NewTask::new("List the files").into_task().unwrap()
    }

    /// A fixed time, so fixtures compare equal after a round trip.
    fn at(seconds: i64) -> chrono::DateTime<Utc> {
        chrono::DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
    }

    fn proposal() -> Proposal {
        let mut p = Proposal::new("look around", "ls -la");
        p.proposed_at = at(0);
        p.raw = r#"{"reason":"look around","command":"ls -la"}"#.into();
        p.agent = Some(AgentId::new("w1").unwrap());
        p.needs_approval = vec!["lists files".into()];
        p
    }

    fn step() -> StepRecord {
        StepRecord {
            index: 1,
            agent: Some(AgentId::new("w1").unwrap()),
            prompt: "List the files".into(),
            proposal: Some(proposal()),
            command: "ls -la".into(),
            outcome: ExecOutcome {
                exit_code: Some(0),
                stdout: "a.txt\n".into(),
                duration_ms: 3,
                ..Default::default()
            },
            started_at: at(1),
            finished_at: at(2),
        }
    }

    fn execute_request(command: Option<&str>) -> ExecuteRequest {
        ExecuteRequest {
            task: task(),
            command: command.map(str::to_owned),
            approved: false,
        }
    }

    fn agent(base: &str) -> RemoteAgent {
        RemoteAgent::new(base, Some("secret".into())).unwrap()
    }

    /// A worker whose propose and execute answer as given, recording every request.
    async fn worker(
        recorder: Recorder,
        propose: fn(usize) -> Response,
        execute: fn(usize, &Value) -> Response,
    ) -> String {
        let on_propose = {
            let recorder = recorder.clone();
            move |headers: AxumHeaders, axum::Json(body): axum::Json<Value>| async move {
                let n = recorder.record(&headers, body);
                propose(n)
            }
        };
        let on_execute = move |headers: AxumHeaders, axum::Json(body): axum::Json<Value>| async move {
            let n = recorder.record(&headers, body.clone());
            execute(n, &body)
        };
        serve(
            Router::new()
                .route("/step/propose", post(on_propose))
                .route("/step/execute", post(on_execute)),
        )
        .await
    }

    fn ok_propose(_: usize) -> Response {
        axum::Json(Proposed::Command(proposal())).into_response()
    }

    fn ok_execute(_: usize, _: &Value) -> Response {
        axum::Json(step()).into_response()
    }

    fn api(error: impl Into<Error>) -> Response {
        ApiError::from(error.into()).into_response()
    }

    #[test]
    fn urls_are_checked_and_trimmed() {
        let a = RemoteAgent::new("http://127.0.0.1:5001//", None).unwrap();
        assert_eq!(a.base_url(), "http://127.0.0.1:5001");
        assert_eq!(
            RemoteAgent::new("https://w.example/api/", None)
                .unwrap()
                .base_url(),
            "https://w.example/api"
        );
        for bad in ["ftp://x", "not a url", "", "http://h:1/?q=1", "file:///tmp"] {
            let e = RemoteAgent::new(bad, None).unwrap_err();
            assert!(matches!(e, AgentError::Unreachable(_)), "{bad}: {e}");
        }
        assert!(HubClient::new("mailto:x@y", None).is_err());
        assert_eq!(
            HubClient::new("http://hub:5000/", None).unwrap().url(),
            "http://hub:5000"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let a = RemoteAgent::new("http://w:1", Some("topsecret".into())).unwrap();
        let text = format!("{a:?}");
        assert!(!text.contains("topsecret"), "{text}");
        assert!(text.contains("token_set: true"), "{text}");
        let h = HubClient::new("http://h:1", Some("hubsecret".into())).unwrap();
        let text = format!("{h:?}");
        assert!(!text.contains("hubsecret"), "{text}");
        assert!(text.contains("credential_set: true"), "{text}");
        let none = RemoteAgent::new("http://w:1", Some(String::new())).unwrap();
        assert!(!none.token_is_set());
    }

    #[tokio::test]
    async fn propose_round_trip_with_bearer_token() {
        let recorder = Recorder::default();
        let base = worker(recorder.clone(), ok_propose, ok_execute).await;
        let agent = agent(&base);
        let task = task();
        let proposed = agent
            .propose(ProposeRequest {
                task: task.clone(),
                template: None,
            })
            .await
            .unwrap();
        assert_eq!(proposed, Proposed::Command(proposal()));
        let seen = recorder.all();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].auth.as_deref(), Some("Bearer secret"));
        assert_eq!(seen[0].key, None, "propose sends no idempotency key");
        // The worker's route reads the body as {task, template}.
        let body: WorkerProposeBody = serde_json::from_value(seen[0].body.clone()).unwrap();
        assert_eq!(body.task, Some(task));
    }

    #[tokio::test]
    async fn execute_round_trip_with_a_fresh_key_per_call() {
        let recorder = Recorder::default();
        let base = worker(recorder.clone(), ok_propose, ok_execute).await;
        let agent = agent(&base);
        let record = agent
            .execute(execute_request(Some("ls -la")))
            .await
            .unwrap();
        assert_eq!(record, step());
        agent.execute(execute_request(None)).await.unwrap();
        let seen = recorder.all();
        assert_eq!(seen.len(), 2);
        let body: WorkerExecuteBody = serde_json::from_value(seen[0].body.clone()).unwrap();
        assert_eq!(body.command.as_deref(), Some("ls -la"));
        assert!(!body.approved);
        let keys: Vec<String> = seen.iter().map(|s| s.key.clone().unwrap()).collect();
        for key in &keys {
            key.parse::<ulid::Ulid>().unwrap();
        }
        assert_ne!(keys[0], keys[1]);
        assert_eq!(seen[1].auth.as_deref(), Some("Bearer secret"));
    }

    #[tokio::test]
    async fn execute_is_retried_after_503_with_the_same_key() {
        let recorder = Recorder::default();
        let base = worker(recorder.clone(), ok_propose, |n, _| {
            if n == 1 {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "busy")
                    .into_response()
            } else {
                ok_execute(n, &Value::Null)
            }
        })
        .await;
        let record = agent(&base).execute(execute_request(None)).await.unwrap();
        assert_eq!(record.command, "ls -la");
        let keys = recorder.keys();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys.values().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[tokio::test]
    async fn execute_waits_while_the_first_attempt_is_in_progress() {
        let recorder = Recorder::default();
        let base = worker(recorder.clone(), ok_propose, |n, _| {
            if n == 1 {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    "a request with this key is still running",
                )
                .into_response()
            } else {
                ok_execute(n, &Value::Null)
            }
        })
        .await;
        agent(&base).execute(execute_request(None)).await.unwrap();
        let keys = recorder.keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.values().sum::<usize>(), 2);
    }

    #[tokio::test]
    async fn execute_gives_up_after_the_configured_attempts() {
        let recorder = Recorder::default();
        let base = worker(recorder.clone(), ok_propose, |_, _| {
            ApiError::new(StatusCode::BAD_GATEWAY, "exec_failed", "spawn failed").into_response()
        })
        .await;
        let e = agent(&base)
            .execute_attempts(2)
            .execute(execute_request(None))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Rejected { status: 502, message } if message == "exec_failed: spawn failed"),
            "{e:?}"
        );
        assert_eq!(recorder.count(), 2);
        assert_eq!(recorder.keys().len(), 1);
    }

    /// The worker's refusals come back as the typed errors the worker had, and are not retried.
    #[tokio::test]
    async fn error_answers_map_to_typed_errors() {
        let recorder = Recorder::default();
        let base = worker(
            recorder.clone(),
            |_| ApiError::unauthorized("missing or wrong token").into_response(),
            |_, body| {
                let task: Task = serde_json::from_value(body["task"].clone()).unwrap();
                match body["command"].as_str().unwrap_or_default() {
                    "denied" => api(ExecError::Denied {
                        rule: "rm-root".into(),
                        reason: "destroys the system".into(),
                    }),
                    "approval" => api(ExecError::NeedsApproval {
                        reasons: vec!["writes files".into(), "uses the network".into()],
                    }),
                    "invalid" => api(ExecError::InvalidRequest("empty command".into())),
                    "sandbox" => api(ExecError::SandboxUnavailable("no landlock".into())),
                    "none" => api(AgentError::NoCommand(task.id)),
                    "unauthorized" => ApiError::unauthorized("wrong token").into_response(),
                    "html" => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "<html>oops</html>").into_response()
                    }
                    "garbage" => (StatusCode::OK, "not json").into_response(),
                    other => ApiError::invalid(format!("unexpected {other}")).into_response(),
                }
            },
        )
        .await;
        let agent = agent(&base);
        let run = |command: &'static str| {
            let agent = agent.clone();
            async move {
                agent
                    .execute(execute_request(Some(command)))
                    .await
                    .unwrap_err()
            }
        };

        match run("denied").await {
            AgentError::Exec(ExecError::Denied { rule, reason }) => {
                assert_eq!(rule, "rm-root");
                assert_eq!(reason, "destroys the system");
            }
            e => panic!("{e:?}"),
        }
        match run("approval").await {
            AgentError::Exec(ExecError::NeedsApproval { reasons }) => {
                assert_eq!(reasons, vec!["writes files", "uses the network"]);
            }
            e => panic!("{e:?}"),
        }
        match run("invalid").await {
            AgentError::Exec(ExecError::InvalidRequest(m)) => assert_eq!(m, "empty command"),
            e => panic!("{e:?}"),
        }
        match run("sandbox").await {
            AgentError::Exec(ExecError::SandboxUnavailable(m)) => assert_eq!(m, "no landlock"),
            e => panic!("{e:?}"),
        }
        assert!(matches!(run("none").await, AgentError::NoCommand(_)));
        match run("unauthorized").await {
            AgentError::Rejected { status, message } => {
                assert_eq!(status, 401);
                assert_eq!(message, "unauthorized: wrong token");
            }
            e => panic!("{e:?}"),
        }
        match run("html").await {
            AgentError::Rejected { status, message } => {
                assert_eq!(status, 500);
                assert!(message.contains("oops"), "{message}");
            }
            e => panic!("{e:?}"),
        }
        match run("garbage").await {
            AgentError::Rejected { status, message } => {
                assert_eq!(status, 200);
                assert!(message.starts_with("invalid response: "), "{message}");
            }
            e => panic!("{e:?}"),
        }
        match run("other").await {
            AgentError::Rejected { status, message } => {
                assert_eq!(status, 422);
                assert_eq!(message, "invalid_input: unexpected other");
            }
            e => panic!("{e:?}"),
        }
        // None of these was sent twice (sandbox_unavailable is a 503 that no retry fixes).
        assert_eq!(recorder.count(), 9);
        assert_eq!(recorder.keys().len(), 9);

        let e = agent
            .propose(ProposeRequest {
                task: task(),
                template: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Rejected { status: 401, .. }),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_worker_is_a_timeout() {
        let recorder = Recorder::default();
        let slow = {
            let recorder = recorder.clone();
            move |headers: AxumHeaders| async move {
                recorder.record(&headers, Value::Null);
                tokio::time::sleep(Duration::from_secs(3)).await;
                axum::Json(step())
            }
        };
        let base = serve(
            Router::new()
                .route("/step/propose", post(slow.clone()))
                .route("/step/execute", post(slow)),
        )
        .await;
        let agent = agent(&base)
            .propose_timeout(Duration::from_millis(200))
            .execute_timeout(Duration::from_millis(200))
            .execute_attempts(2);
        let e = agent
            .propose(ProposeRequest {
                task: task(),
                template: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, AgentError::Timeout(d) if d == Duration::from_millis(200)),
            "{e:?}"
        );
        assert_eq!(recorder.count(), 1, "propose is not retried");

        let e = agent.execute(execute_request(None)).await.unwrap_err();
        assert!(
            matches!(e, AgentError::Timeout(d) if d == Duration::from_millis(200)),
            "{e:?}"
        );
        // Both attempts of the execute call carried one key.
        let keys = recorder.keys();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.values().any(|n| *n == 2), "{keys:?}");
    }

    /// A port nobody listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let base = format!("http://127.0.0.1:{}", closed_port());
        let agent = agent(&base).execute_attempts(1);
        let e = agent
            .propose(ProposeRequest {
                task: task(),
                template: None,
            })
            .await
            .unwrap_err();
        match &e {
            AgentError::Unreachable(m) => assert!(m.contains(&base), "{m}"),
            e => panic!("{e:?}"),
        }
        assert!(e.is_transient());
        assert!(matches!(
            agent.execute(execute_request(None)).await,
            Err(AgentError::Unreachable(_))
        ));
        assert!(matches!(
            agent.ping().await,
            Err(AgentError::Unreachable(_))
        ));
    }

    #[tokio::test]
    async fn set_token_on_a_clone_changes_what_the_original_sends() {
        let recorder = Recorder::default();
        let base = worker(recorder.clone(), ok_propose, ok_execute).await;
        let original = agent(&base);
        let clone = original.clone();
        clone.set_token(Some("rotated".into()));
        assert!(original.token_is_set());
        original.execute(execute_request(None)).await.unwrap();
        clone.set_token(None);
        assert!(!original.token_is_set());
        original.execute(execute_request(None)).await.unwrap();
        let auth: Vec<Option<String>> = recorder.all().into_iter().map(|s| s.auth).collect();
        assert_eq!(auth, vec![Some("Bearer rotated".to_string()), None]);
    }

    #[tokio::test]
    async fn ping_needs_an_ok_health() {
        let health = |status: &'static str| {
            Router::new().route(
                "/health",
                get(move || async move {
                    axum::Json(json!({"status": status, "name": "w1", "role": "worker"}))
                }),
            )
        };
        let ok = RemoteAgent::new(serve(health("ok")).await, None).unwrap();
        ok.ping().await.unwrap();
        let answer = ok.health().await.unwrap();
        assert_eq!(
            (answer.name.as_str(), answer.role.as_str()),
            ("w1", "worker")
        );

        let sick = RemoteAgent::new(serve(health("degraded")).await, None).unwrap();
        assert!(matches!(
            sick.ping().await,
            Err(AgentError::Rejected { status: 200, .. })
        ));
        let missing = RemoteAgent::new(serve(Router::new()).await, None).unwrap();
        assert!(matches!(
            missing.ping().await,
            Err(AgentError::Rejected { status: 404, .. })
        ));
    }

    /// A hub whose `/register` answers with `answer(n)` for the n-th request (1-based).
    async fn hub(recorder: Recorder, answer: fn(usize, RegisterRequest) -> Response) -> String {
        let on_register = move |headers: AxumHeaders, axum::Json(body): axum::Json<Value>| async move {
            let n = recorder.record(&headers, body.clone());
            let request: RegisterRequest = serde_json::from_value(body).unwrap();
            answer(n, request)
        };
        serve(Router::new().route("/register", post(on_register))).await
    }

    fn accepted(request: RegisterRequest, heartbeat_interval_secs: u64) -> Response {
        axum::Json(RegisterResponse {
            agent: AgentInfo::registered(None, request.card(), Utc::now()),
            heartbeat_interval_secs,
        })
        .into_response()
    }

    fn unavailable() -> Response {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "down").into_response()
    }

    fn registration() -> RegisterRequest {
        let mut request = RegisterRequest::new(AgentId::new("w1").unwrap(), "http://w1:5001");
        request.token = Some("worker-token".into());
        request
    }

    /// `register_until_accepted` without cancellation; the test fails if it takes over 3 s.
    async fn register_within(client: &HubClient) -> Result<RegisterResponse, AgentError> {
        tokio::time::timeout(
            Duration::from_secs(3),
            client.register_until_accepted(&registration(), &CancellationToken::new()),
        )
        .await
        .expect("register_until_accepted did not return in time")
    }

    #[tokio::test]
    async fn register_until_accepted_retries_while_the_hub_is_unavailable() {
        let recorder = Recorder::default();
        let base = hub(recorder.clone(), |n, request| {
            if n <= 2 {
                unavailable()
            } else {
                accepted(request, 30)
            }
        })
        .await;
        let client = HubClient::new(&base, Some("hub-token".into())).unwrap();
        let answer = register_within(&client).await.unwrap();
        assert_eq!(answer.agent.card.name.as_str(), "w1");
        assert_eq!(answer.heartbeat_interval_secs, 30);
        let seen = recorder.all();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter()
                .all(|s| s.auth.as_deref() == Some("Bearer hub-token"))
        );
        assert_eq!(seen[0].body["token"], "worker-token");
    }

    #[tokio::test]
    async fn register_until_accepted_stops_at_once_on_401_and_422() {
        let recorder = Recorder::default();
        let base = hub(recorder.clone(), |_, _| {
            ApiError::unauthorized("wrong registration secret").into_response()
        })
        .await;
        let client = HubClient::new(&base, None).unwrap();
        let e = register_within(&client).await.unwrap_err();
        assert!(
            matches!(&e, AgentError::Rejected { status: 401, .. }),
            "{e:?}"
        );
        assert_eq!(recorder.count(), 1);
        assert_eq!(recorder.all()[0].auth, None);

        let recorder = Recorder::default();
        let base = hub(recorder.clone(), |_, _| {
            ApiError::invalid("agent url must be http(s)").into_response()
        })
        .await;
        let e = register_within(&HubClient::new(&base, None).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Rejected { status: 422, .. }),
            "{e:?}"
        );
        assert_eq!(recorder.count(), 1);
    }

    #[tokio::test]
    async fn register_until_accepted_returns_cancelled() {
        let recorder = Recorder::default();
        let base = hub(recorder.clone(), |_, _| unavailable()).await;
        let client = HubClient::new(&base, None).unwrap();
        let cancel = CancellationToken::new();
        let canceller = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                cancel.cancel();
            })
        };
        let e = tokio::time::timeout(
            Duration::from_secs(3),
            client.register_until_accepted(&registration(), &cancel),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert!(matches!(e, AgentError::Cancelled), "{e:?}");
        assert!(recorder.count() >= 1);
        canceller.await.unwrap();

        // Also while the hub cannot be reached at all.
        let down = HubClient::new(format!("http://127.0.0.1:{}", closed_port()), None).unwrap();
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        assert!(matches!(
            down.register_until_accepted(&registration(), &cancelled)
                .await,
            Err(AgentError::Cancelled)
        ));
    }

    #[tokio::test]
    async fn register_maps_429_and_unreachable() {
        let recorder = Recorder::default();
        let base = hub(recorder.clone(), |_, _| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
                .into_response()
        })
        .await;
        let e = HubClient::new(&base, None)
            .unwrap()
            .register(&registration())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Rejected { status: 429, .. }),
            "{e:?}"
        );
        let down = HubClient::new(format!("http://127.0.0.1:{}", closed_port()), None).unwrap();
        assert!(matches!(
            down.register(&registration()).await,
            Err(AgentError::Unreachable(_))
        ));
    }

    /// Waits until the recorder has seen `n` requests (at most 4 s).
    async fn wait_for(recorder: &Recorder, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(4);
        while recorder.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests",
                recorder.count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn heartbeat_loop_keeps_registering_until_cancelled() {
        let recorder = Recorder::default();
        // The first heartbeat fails: the loop goes on.
        let base = hub(recorder.clone(), |n, request| {
            if n == 1 {
                unavailable()
            } else {
                accepted(request, 30)
            }
        })
        .await;
        let client = HubClient::new(&base, Some("old".into())).unwrap();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(client.clone().heartbeat_loop(
            registration(),
            Duration::from_millis(50),
            cancel.clone(),
        ));
        wait_for(&recorder, 2).await;
        client.set_credential(Some("new".into()));
        let switched = recorder.count();
        wait_for(&recorder, switched + 2).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), handle)
            .await
            .unwrap()
            .unwrap();
        let stopped_at = recorder.count();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(recorder.count(), stopped_at, "no heartbeat after cancel");
        let seen = recorder.all();
        assert!(seen.iter().all(|s| s.body["name"] == "w1"));
        assert_eq!(seen[0].auth.as_deref(), Some("Bearer old"));
        assert_eq!(seen.last().unwrap().auth.as_deref(), Some("Bearer new"));
    }

    #[tokio::test]
    async fn heartbeat_loop_follows_a_shorter_hub_interval() {
        let recorder = Recorder::default();
        let base = hub(recorder.clone(), |_, request| accepted(request, 1)).await;
        let client = HubClient::new(&base, None).unwrap();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(client.heartbeat_loop(
            registration(),
            Duration::from_millis(1500),
            cancel.clone(),
        ));
        wait_for(&recorder, 2).await;
        cancel.cancel();
        handle.await.unwrap();
        let seen = recorder.all();
        let gap = seen[1].at - seen[0].at;
        assert!(gap < Duration::from_millis(1400), "{gap:?}");
        assert!(gap >= Duration::from_millis(900), "{gap:?}");
    }
}
