//! What both clients share: base URLs, the shared secret, one call with its timeout, the
//! mapping of answers and transport failures to typed errors, and the backoff between retries.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{AgentError, ExecError, ProposalError, error_chain, parse_retry_after};
use crate::http::error::{ErrorBody, ErrorInfo};
use crate::ids::TaskId;

/// Default time to open a connection.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many characters of a non-JSON error body go into an error message.
pub(super) const BODY_SNIPPET_CHARS: usize = 512;

/// A secret (token, credential) shared by all clones of a client, so it can be switched at
/// run time. An empty string counts as no secret.
#[derive(Clone, Default)]
pub(super) struct SharedSecret(Arc<RwLock<Option<String>>>);

impl SharedSecret {
    pub(super) fn new(secret: Option<String>) -> Self {
        Self(Arc::new(RwLock::new(secret.filter(|s| !s.is_empty()))))
    }

    pub(super) fn get(&self) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set(&self, secret: Option<String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = secret.filter(|s| !s.is_empty());
    }

    pub(super) fn is_set(&self) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Adds `Authorization: Bearer <secret>` (marked sensitive) when a secret is set.
    pub(super) fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match self.get() {
            Some(secret) => request.bearer_auth(secret),
            None => request,
        }
    }
}

/// Checks that `url` is an absolute http(s) URL with a host and no query or fragment, and
/// returns it without trailing slashes.
pub(super) fn parse_base_url(url: String, what: &str) -> Result<String, AgentError> {
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
pub(super) fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::install_default_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
}

/// Why a call failed, with what a retry decision needs.
#[derive(Debug)]
pub(super) struct Failure {
    /// The error the caller gets.
    pub(super) error: AgentError,
    /// The HTTP status, when the server answered.
    pub(super) status: Option<u16>,
    /// The error code of the server's [`ErrorBody`], when it sent one.
    pub(super) code: Option<String>,
    /// The server's `Retry-After`, in seconds.
    pub(super) retry_after: Option<Duration>,
    /// For a failure without an answer: whether the same request may be sent again (not for
    /// a request that could not even be built).
    pub(super) transport_retryable: bool,
}

impl Failure {
    /// Whether an execute call may be sent again with the same idempotency key: the request
    /// may not have reached the worker (connection error, timeout), a gateway or the worker
    /// is temporarily unavailable (502/503/504), or the worker is still running the first
    /// attempt with this key (409 `idempotency_in_progress`).
    pub(super) fn execute_retryable(&self) -> bool {
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
    pub(super) fn registration_retryable(&self) -> bool {
        match self.status {
            None => self.transport_retryable,
            Some(status) => status == 408 || status == 429 || (500..600).contains(&status),
        }
    }
}

/// Maps a `reqwest` failure (no usable answer) for the request `target` (`"POST <url>"`).
pub(super) fn transport_failure(e: reqwest::Error, target: &str, timeout: Duration) -> Failure {
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
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    parse_retry_after(header("retry-after-ms"), header("retry-after"))
}

/// `text` without `prefix` (the server's message repeats the error's own Display prefix).
pub(super) fn strip_prefix(text: String, prefix: &str) -> String {
    match text.strip_prefix(prefix) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// A string field of the error details.
pub(super) fn detail_str(details: Option<&Value>, field: &str) -> Option<String> {
    details?.get(field)?.as_str().map(str::to_owned)
}

/// The error a worker's or hub's error body stands for.
pub(super) fn map_error_info(status: u16, info: ErrorInfo, task: Option<TaskId>) -> AgentError {
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
        ("no_command", _) => {
            let raw = detail_str(details, "raw").unwrap_or_default();
            AgentError::Proposal(if raw.trim().is_empty() {
                ProposalError::Empty
            } else {
                ProposalError::NoCommand {
                    excerpt: raw.trim().chars().take(200).collect(),
                    raw,
                }
            })
        }
        _ => AgentError::Rejected {
            status,
            message: format!("{code}: {message}"),
        },
    }
}

/// The failure a non-2xx answer stands for; `body` may be anything.
pub(super) fn answer_failure(
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
pub(super) async fn call<T: DeserializeOwned>(
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
pub(super) fn jitter(max: Duration) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=millis))
}

/// Exponential backoffs before jitter: `start`, then doubling, at most `cap`; endless (the
/// caller counts its attempts).
pub(super) fn backoffs(start: Duration, cap: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(start)
        .with_max_delay(cap)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .map(move |delay| delay.min(cap))
}
