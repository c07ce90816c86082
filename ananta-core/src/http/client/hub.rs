//! [`HubClient`]: a worker's registration with its hub, and the heartbeat.

use std::fmt;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::transport::{
    DEFAULT_CONNECT_TIMEOUT, Failure, SharedSecret, backoffs, build_client, call, jitter,
    parse_base_url,
};
use crate::error::{AgentError, error_chain};
use crate::http::types::{RegisterRequest, RegisterResponse};

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
    pub fn client(mut self, client: reqwest::Client) -> Self {
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
    /// Errors map like [`RemoteAgent`](super::RemoteAgent)'s: an error answer is [`AgentError::Rejected`] with
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
        let mut backoff = backoffs(REGISTER_BACKOFF_START, REGISTER_BACKOFF_CAP);
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
                    let next = backoff.next().unwrap_or(REGISTER_BACKOFF_CAP);
                    let delay = match failure.retry_after {
                        Some(wait) => wait.min(MAX_RETRY_AFTER),
                        None => jitter(next),
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
